/*
 * tools/img/amend.c — `diskdm-img amend`: change qcow2 options in place
 * (compat=0.10|1.1, lazy_refcounts=on|off) through bdrv_amend.
 */
#include "tools/img/img.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Options only creation takes: qemu-img refuses them here by name. */
static const char *const create_only[] = {
    "size", "cluster_size", "preallocation", "refcount_bits", "backing_file",
    "backing_fmt", "extended_l2", "compression_type", "encryption", "data_file",
};

static int parse_amend_opts(const char *str, struct bdrv_amend_opts *ao, char **compat)
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
        bool b;
        if (!strcmp(k, "compat")) {
            free(*compat);
            *compat = strdup(v);
            ao->compat = *compat;
        } else if (!strcmp(k, "lazy_refcounts")) {
            if (parse_bool(v, &b) < 0) {
                ret = img_error("Parameter 'lazy_refcounts' expects 'on' or 'off'");
            } else {
                ao->lazy_refcounts = (struct opt_bool){ true, b };
            }
        } else {
            bool known = false;
            for (size_t j = 0; j < ARRAY_SIZE(create_only); j++) {
                known |= !strcmp(k, create_only[j]);
            }
            ret = img_error("Invalid parameter '%s'%s", k,
                            known ? "\nThis option is only supported for image creation" : "");
        }
    }
    kvlist_free(&kv);
    return ret;
}

int img_cmd_amend(int argc, char **argv)
{
    enum { OPT_IMAGE_OPTS = 256, OPT_FORCE };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force", no_argument, NULL, OPT_FORCE },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *optstr = NULL;
    struct img_open_flags fl = { .read_only = false };
    int c;

    optind = 1;
    opterr = 0;         /* img_bad_option_at says it, as qemu-img does */
    while ((c = getopt_long(argc, argv, ":ho:f:t:pq", longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            optstr = optarg;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 't':
            if (img_parse_cache(optarg, &fl.cache) < 0) {
                return IMG_EXIT_FAIL;
            }
            fl.has_cache = true;
            break;
        case 'p':
        case 'q':
        case OPT_FORCE:
            break;
        case OPT_IMAGE_OPTS:
            fl.image_opts = true;
            break;
        case 'h':
            return img_cmd_help("amend");
        default:
            return img_bad_option_at(argv, c);
        }
    }
    if (!optstr) {
        img_print_synopsis(stderr, "amend");
        return img_usage_error("Must specify options (-o)");
    }
    if (optind != argc - 1) {
        img_print_synopsis(stderr, "amend");
        return img_usage_error("Expecting one image file name");
    }
    const char *filename = argv[optind];
    struct bdrv_node *bs = img_open_ex(filename, fmt, &fl);
    if (!bs) {
        return IMG_EXIT_FAIL;
    }
    int ret = IMG_EXIT_FAIL;
    char *compat = NULL;
    struct bdrv_amend_opts ao = { 0 };
    if (strcmp(bdrv_driver_name(bs), "qcow2")) {
        img_error("Format driver '%s' does not support option amendment",
                  bdrv_driver_name(bs));
        goto out_unref;
    }
    if (!strcmp(optstr, "help") || !strcmp(optstr, "?")) {
        printf("Amend options for 'qcow2':\n"
               "  compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])\n"
               "  lazy_refcounts=<bool (on/off)> - Postpone refcount updates\n");
        ret = 0;
        goto out_unref;
    }
    if (parse_amend_opts(optstr, &ao, &compat)) {
        goto out_unref;
    }
    struct error *err = NULL;
    if (bdrv_amend(bs, &ao, &err) < 0) {
        img_error("%s", err->msg);
        error_free(err);
        goto out_unref;
    }
    ret = 0;
out_unref:
    free(compat);
    bdrv_unref(bs);
    return ret;
}
