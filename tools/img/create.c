/*
 * tools/img/create.c — `diskdm-img create`: make a new image of a given
 * format and virtual size, printing qemu-img's "Formatting ..." line.
 */
#include "tools/img/img.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const prealloc_names[] = { "off", "metadata", "falloc", "full" };

/* -o key=value[,key=value]: the creation options this tool knows. */
static int parse_create_opts(const char *str, struct bdrv_create_opts *co,
                             const char **prealloc)
{
    struct kvlist kv = { 0 };
    struct error *err = NULL;
    if (opts_split(str, NULL, &kv, &err) < 0) {
        int r = img_error("Invalid option list: %s", err->msg);
        error_free(err);
        return r;
    }
    int ret = 0;
    for (size_t i = 0; i < kv.n && ret == 0; i++) {
        const char *k = kv.v[i].key, *v = kv.v[i].value;
        if (!strcmp(k, "size")) {
            if (img_parse_size(v, &co->size) < 0) {
                ret = img_error("Parameter 'size' expects a size (e.g. 64K, 1G): '%s'", v);
            }
        } else if (!strcmp(k, "preallocation")) {
            size_t j;
            for (j = 0; j < ARRAY_SIZE(prealloc_names); j++) {
                if (!strcmp(v, prealloc_names[j])) {
                    break;
                }
            }
            if (j == ARRAY_SIZE(prealloc_names)) {
                ret = img_error("Parameter 'preallocation' expects one of off, metadata, "
                                "falloc, full: '%s'", v);
            } else {
                co->prealloc = j;
                *prealloc = prealloc_names[j];
            }
        } else {
            ret = img_error("Invalid parameter '%s'", k);
        }
    }
    kvlist_free(&kv);
    return ret;
}

int img_cmd_create(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = "raw", *optstr = NULL, *prealloc = NULL;
    struct bdrv_create_opts co = { 0 };
    bool size_from_opts = false;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "+f:o:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'o':
            optstr = optarg;
            break;
        case 'q':
            break;
        case 'h':
            printf("Usage: diskdm-img create [-f FMT] [-o OPTIONS] FILENAME [SIZE]\n");
            return 0;
        default:
            return IMG_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        return img_usage_error("Expecting image file name");
    }
    const char *filename = argv[optind++];
    if (optstr) {
        int r = parse_create_opts(optstr, &co, &prealloc);
        if (r) {
            return r;
        }
        size_from_opts = co.size != 0;
    }
    if (optind < argc) {
        if (img_parse_size(argv[optind], &co.size) < 0) {
            fprintf(stderr, "diskdm-img: Invalid image size specified. You may use k, M, G, "
                    "T, P or E suffixes for\n"
                    "diskdm-img: kilobytes, megabytes, gigabytes, terabytes, petabytes "
                    "and exabytes.\n");
            return IMG_EXIT_FAIL;
        }
        if (co.size > INT64_MAX) {
            return img_error("Image size must be less than 8 EiB!");
        }
        optind++;
    } else if (!size_from_opts) {
        return img_error("Image creation needs a size parameter");
    }
    if (optind < argc) {
        return img_usage_error("Invalid parameter '%s'", argv[optind]);
    }

    bool known = false;
    for (const char *const *n = bdrv_driver_names(); *n; n++) {
        known |= !strcmp(*n, fmt);
    }
    if (!known) {
        return img_error("Unknown file format '%s'", fmt);
    }
    printf("Formatting '%s', fmt=%s size=%" PRIu64 "%s%s\n", filename, fmt, co.size,
           prealloc ? " preallocation=" : "", prealloc ? prealloc : "");
    fflush(stdout);
    struct error *err = NULL;
    if (bdrv_create(fmt, filename, &co, &err) < 0) {
        int r = img_error("%s", err->msg);
        error_free(err);
        return r;
    }
    return 0;
}
