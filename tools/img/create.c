/*
 * tools/img/create.c — `diskdm-img create`: make a new image of a given
 * format and virtual size (or the size of its backing file), printing
 * qemu-img's "Formatting ..." line.
 */
#include "tools/img/img.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The "Formatting" line lists options in qemu-img's order. */
static void print_formatting(const char *filename, const char *fmt,
                             const struct bdrv_create_opts *co, const char *prealloc)
{
    printf("Formatting '%s', fmt=%s", filename, fmt);
    if (!strcmp(fmt, "qcow2")) {
        printf(" cluster_size=%" PRIu32 " extended_l2=%s",
               co->cluster_size ? co->cluster_size : 65536, co->extended_l2 ? "on" : "off");
        if (prealloc) {
            printf(" preallocation=%s", prealloc);
        }
        printf(" compression_type=zlib size=%" PRIu64, co->size);
        if (co->backing_file) {
            printf(" backing_file=%s", co->backing_file);
        }
        if (co->backing_format) {
            printf(" backing_fmt=%s", co->backing_format);
        }
        if (co->compat) {
            printf(" compat=%s", co->compat);
        }
        if (co->data_file) {
            printf(" data_file=%s", co->data_file);
        }
        if (co->data_file_raw) {
            printf(" data_file_raw=on");
        }
        printf(" lazy_refcounts=%s refcount_bits=%u", co->lazy_refcounts ? "on" : "off",
               co->refcount_bits ? co->refcount_bits : 16);
    } else {
        printf(" size=%" PRIu64, co->size);
        if (prealloc) {
            printf(" preallocation=%s", prealloc);
        }
    }
    printf("\n");
    fflush(stdout);
}

int img_cmd_create(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = "raw", *prealloc = NULL;
    char *optstr = NULL, *backing = NULL, *backing_fmt = NULL;
    struct bdrv_create_opts co = { 0 };
    bool unsafe = false, quiet = false;
    int c, ret = IMG_EXIT_FAIL;

    optind = 1;
    opterr = 0;         /* img_bad_option_at says it, as qemu-img does */
    while ((c = getopt_long(argc, argv, ":f:o:b:F:uqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'o':
            if (optstr) {   /* qemu-img joins repeated -o */
                char *j = NULL;
                if (asprintf(&j, "%s,%s", optstr, optarg) < 0) {
                    goto out;
                }
                free(optstr);
                optstr = j;
            } else {
                optstr = strdup(optarg);
            }
            break;
        case 'b':
            free(backing);
            backing = strdup(optarg);
            break;
        case 'F':
            free(backing_fmt);
            backing_fmt = strdup(optarg);
            break;
        case 'u':
            unsafe = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'h':
            ret = img_cmd_help("create");
            goto out;
        default:
            ret = img_bad_option_at(argv, c);
            goto out;
        }
    }
    if (optstr && (!strcmp(optstr, "help") || !strcmp(optstr, "?"))) {
        if (!img_format_known(fmt)) {
            ret = img_error("Unknown file format '%s'", fmt);
            goto out;
        }
        img_print_create_help(fmt);
        ret = 0;
        goto out;
    }
    if (optind >= argc) {
        ret = img_usage_error("Expecting image file name");
        goto out;
    }
    const char *filename = argv[optind++];
    if (!img_format_known(fmt)) {
        ret = img_error("Unknown file format '%s'", fmt);
        goto out;
    }
    /* qemu-img create names the file before every option error. */
    char *pfx = NULL;
    if (asprintf(&pfx, "%s: ", filename) < 0) {
        ret = img_error("Out of memory");
        goto out;
    }
    int perr = optstr ? img_parse_create_opts_in(optstr, fmt, &co, &prealloc, &backing,
                                                 &backing_fmt, pfx, NULL) : 0;
    free(pfx);
    if (perr) {
        goto out;
    }
    bool size_given = co.size != 0;
    if (optind < argc) {
        if (img_parse_size(argv[optind], &co.size) < 0) {
            fprintf(stderr, "diskdm-img: Invalid image size specified. You may use k, M, G, "
                    "T, P or E suffixes for\n"
                    "diskdm-img: kilobytes, megabytes, gigabytes, terabytes, petabytes "
                    "and exabytes.\n");
            goto out;
        }
        if (co.size > INT64_MAX) {
            ret = img_error("Image size must be less than 8 EiB!");
            goto out;
        }
        size_given = true;
        optind++;
    }
    if (optind < argc) {
        ret = img_usage_error("Invalid parameter '%s'", argv[optind]);
        goto out;
    }
    if (backing && strcmp(fmt, "qcow2")) {
        ret = img_error("%s: Backing file not supported for file format '%s'", filename, fmt);
        goto out;
    }
    if (backing && !backing_fmt) {
        /* As qemu-img 7.2: the backing format must be said. */
        struct bdrv_node *b = img_open(backing, NULL, true, true);
        fprintf(stderr, "diskdm-img: %s: Backing file specified without backing format\n",
                filename);
        if (b) {
            fprintf(stderr, "Detected format of %s.\n", bdrv_driver_name(b));
            bdrv_unref(b);
        }
        goto out;
    }
    if (backing_fmt && !backing) {
        ret = img_error("%s: Backing format given without a backing file", filename);
        goto out;
    }
    if (backing && (!unsafe || !size_given)) {
        /* The backing file must open, and gives the size when none is
         * given. With -u and a size, it need not exist. */
        struct bdrv_open_opts o;
        struct error *err = NULL;
        bdrv_open_opts_init(&o);
        o.driver = strdup(backing_fmt);
        /* A relative backing name is relative to the new image. */
        const char *slash = strrchr(filename, '/');
        if (backing[0] != '/' && slash) {
            if (asprintf(&o.filename, "%.*s%s", (int)(slash - filename + 1), filename,
                         backing) < 0) {
                o.filename = NULL;
            }
        } else {
            o.filename = strdup(backing);
        }
        o.read_only = (struct opt_bool){ true, true };
        o.auto_read_only = (struct opt_bool){ true, false };
        o.force_share = true;
        o.no_backing = true;
        struct bdrv_node *b = bdrv_open(&o, &err);
        bdrv_open_opts_free(&o);
        if (!b) {
            fprintf(stderr, "diskdm-img: %s: %s\nCould not open backing image.\n",
                    filename, err->msg);
            error_free(err);
            goto out;
        }
        if (!size_given) {
            co.size = (uint64_t)bdrv_getlength(b);
            size_given = true;
        }
        bdrv_unref(b);
    }
    if (!size_given) {
        ret = img_error("%s: Image creation needs a size parameter", filename);
        goto out;
    }
    co.backing_file = backing;
    co.backing_format = backing_fmt;
    if (!quiet) {
        print_formatting(filename, fmt, &co, prealloc);
    }
    struct error *err = NULL;
    if (!strcmp(fmt, "qcow2")) {
        /* Whole sectors, as qemu-img (the line above shows the size given). */
        co.size = ROUND_UP(co.size, BDRV_SECTOR_SIZE);
    }
    if (bdrv_create(fmt, filename, &co, &err) < 0) {
        ret = img_error("%s: %s", filename, err->msg);
        error_free(err);
        goto out;
    }
    ret = 0;
out:
    free(optstr);
    free(backing);
    free(backing_fmt);
    free((char *)co.data_file);     /* strdup'd by img_parse_create_opts */
    return ret;
}
