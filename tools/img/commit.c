/*
 * tools/img/commit.c — `diskdm-img commit`: copy an overlay's data into its
 * backing file (or a deeper base with -b) through bdrv_commit, which opens
 * the base read-write only for the copy.
 */
#include "tools/img/img.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

/* The node of top's chain that -b names: by the name stored in the image
 * above it, or by its own file name. */
static struct bdrv_node *find_base(struct bdrv_node *top, const char *name)
{
    for (struct bdrv_node *n = top; bdrv_backing_child(n); n = bdrv_backing_child(n)) {
        struct bdrv_node *b = bdrv_backing_child(n);
        struct bdrv_info info;
        bdrv_get_info(n, &info);
        if ((info.backing_filename && !strcmp(info.backing_filename, name)) ||
            (info.full_backing_filename && !strcmp(info.full_backing_filename, name)) ||
            !strcmp(bdrv_filename(b), name)) {
            return b;
        }
    }
    return NULL;
}

/* Progress and -r: the commit reports how far through the image it is
 * after each run it copies or passes over. */
struct commit_pace {
    struct img_progress prog;
    struct img_ratelimit limit;
    uint64_t last;              /* offset reported last */
};

static void commit_progress(void *opaque, uint64_t done, uint64_t total)
{
    struct commit_pace *p = opaque;
    img_progress_update(&p->prog, done, total);
    /* The rate paces the walk through the image, unallocated runs
     * included: the commit does not say which runs it copied. */
    img_ratelimit_wait(&p->limit, done - p->last);
    p->last = done;
}

int img_cmd_commit(int argc, char **argv)
{
    enum { OPT_IMAGE_OPTS = 256 };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *base_name = NULL;
    bool drop = false, progress = false, quiet = false;
    struct img_open_flags fl = { .read_only = false };
    uint64_t rate = 0;
    int c;

    optind = 1;
    opterr = 0;         /* img_bad_option_at says it, as qemu-img does */
    while ((c = getopt_long(argc, argv, ":f:ht:b:dpqr:", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 't':
            if (img_parse_cache(optarg, &fl.cache) < 0) {
                return IMG_EXIT_FAIL;
            }
            fl.has_cache = true;
            break;
        case 'b':
            base_name = optarg;
            drop = true;    /* -b implies -d, as in qemu-img */
            break;
        case 'd':
            drop = true;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'r':
            if (img_parse_rate(optarg, &rate) < 0) {
                return IMG_EXIT_FAIL;
            }
            break;
        case OPT_IMAGE_OPTS:
            fl.image_opts = true;
            break;
        case 'h':
            return img_cmd_help("commit");
        default:
            return img_bad_option_at(argv, c);
        }
    }
    if (optind != argc - 1) {
        img_print_synopsis(stderr, "commit");
        return img_usage_error("Expecting one image file name");
    }
    const char *filename = argv[optind];
    /* The top is only written when it is emptied afterwards. */
    fl.read_only = drop;
    struct bdrv_node *bs = img_open_ex(filename, fmt, &fl);
    if (!bs) {
        return IMG_EXIT_FAIL;
    }
    int ret = IMG_EXIT_FAIL;
    struct bdrv_node *base = NULL;
    if (!bdrv_backing_child(bs)) {
        img_error("Image does not have a backing file");
        goto out_unref;
    }
    if (base_name) {
        base = find_base(bs, base_name);
        if (!base) {
            img_error("Did not find '%s' in the backing chain of '%s'", base_name, filename);
            goto out_unref;
        }
    }
    struct commit_pace pace = { .last = 0 };
    img_progress_init(&pace.prog, progress && !quiet);
    img_ratelimit_init(&pace.limit, rate);
    struct error *err = NULL;
    int r = bdrv_commit(bs, base, !drop, commit_progress, &pace, &err);
    img_ratelimit_destroy(&pace.limit);
    img_progress_end(&pace.prog);
    if (r < 0) {
        img_error("%s", err->msg);
        error_free(err);
        goto out_unref;
    }
    if (!quiet) {
        printf("Image committed.\n");
    }
    ret = 0;
out_unref:
    bdrv_unref(bs);
    return ret;
}
