/*
 * tools/img/resize.c — `diskdm-img resize`: grow or (with --shrink) shrink
 * an image's virtual size, to an absolute size or by +/- a delta.
 */
#include "tools/img/img.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int bad_size(void)
{
    return img_error("Parameter 'size' expects a non-negative number below 2^64\n"
                     "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, "
                     "tera-, peta-\nand exabytes, respectively.");
}

int img_cmd_resize(int argc, char **argv)
{
    enum { OPT_SHRINK = 256, OPT_PREALLOC, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "shrink", no_argument, NULL, OPT_SHRINK },
        { "preallocation", required_argument, NULL, OPT_PREALLOC },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool shrink = false, quiet = false;
    struct img_open_flags fl = { .read_only = false };

    /* A negative size ("-1G") looks like an option: take the last
     * argument out before getopt sees it, as qemu-img does. */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            return img_cmd_help("resize");
        }
    }
    if (argc < 3) {
        img_print_synopsis(stderr, "resize");
        return img_usage_error("Not enough arguments");
    }
    const char *size_arg = argv[argc - 1];
    argc--;
    if (argc > 1 && !strcmp(argv[argc - 1], "--")) {
        argc--;     /* "resize f -- -1G" */
    }
    int c;
    optind = 1;
    opterr = 0;         /* img_bad_option_at says it, as qemu-img does */
    while ((c = getopt_long(argc, argv, ":f:hq", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case OPT_SHRINK:
            shrink = true;
            break;
        case OPT_PREALLOC:
            if (strcmp(optarg, "off")) {
                return img_error("Unsupported preallocation mode '%s' for resize", optarg);
            }
            break;
        case OPT_IMAGE_OPTS:
            fl.image_opts = true;
            break;
        case 'h':
            return img_cmd_help("resize");
        default:
            return img_bad_option_at(argv, c);
        }
    }
    if (optind != argc - 1) {
        img_print_synopsis(stderr, "resize");
        return img_usage_error("Expecting image file name and size");
    }
    const char *filename = argv[optind];
    int sign = 0;
    const char *num = size_arg;
    if (*num == '+' || *num == '-') {
        sign = *num == '+' ? 1 : -1;
        num++;
    }
    uint64_t n;
    if (img_parse_size(num, &n) < 0 || n > INT64_MAX) {
        return bad_size();
    }

    struct bdrv_node *bs = img_open_ex(filename, fmt, &fl);
    if (!bs) {
        return IMG_EXIT_FAIL;
    }
    int ret = IMG_EXIT_FAIL;
    int64_t cur = bdrv_getlength(bs);
    if (cur < 0) {
        img_error("Could not get the size of '%s': %s", filename, strerror((int)-cur));
        goto out_unref;
    }
    uint64_t want = n;
    if (sign > 0) {
        want = (uint64_t)cur + n;
    } else if (sign < 0) {
        if (n > (uint64_t)cur) {
            img_error("New image size must be positive");
            goto out_unref;
        }
        want = (uint64_t)cur - n;
    }
    if (want == 0 && sign < 0) {
        img_error("New image size must be positive");
        goto out_unref;
    }
    if (want < (uint64_t)cur && !shrink) {
        img_error("Use the --shrink option to perform a shrink operation.");
        fprintf(stderr, "diskdm-img: warning: Shrinking an image will delete all data "
                "beyond the shrunken image's end. Before performing such an operation, "
                "make sure there is no important data there.\n");
        goto out_unref;
    }
    struct error *err = NULL;
    if (bdrv_truncate(bs, want, &err) < 0) {
        img_error("%s", err->msg);
        error_free(err);
        goto out_unref;
    }
    if (bdrv_flush(bs) < 0) {
        img_error("Could not flush '%s'", filename);
        goto out_unref;
    }
    if (!quiet) {
        printf("Image resized.\n");
    }
    ret = 0;
out_unref:
    bdrv_unref(bs);
    return ret;
}
