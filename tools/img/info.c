/*
 * tools/img/info.c — `diskdm-img info`: format, virtual and disk size of
 * an image, as text like qemu-img's or as JSON with qemu-img's keys.
 */
#include "tools/img/img.h"

#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

static void print_human(const struct bdrv_info *in, const struct bdrv_qcow2_info *qi)
{
    char a[32], b[32];
    printf("image: %s\n", in->filename);
    printf("file format: %s\n", in->format);
    printf("virtual size: %s (%" PRIu64 " bytes)\n",
           img_size_to_str(in->virtual_size, a, sizeof(a)), in->virtual_size);
    if (in->actual_size >= 0) {
        printf("disk size: %s\n", img_size_to_str((uint64_t)in->actual_size, b, sizeof(b)));
    } else {
        printf("disk size: unavailable\n");
    }
    if (in->encrypted) {
        printf("encrypted: yes\n");
    }
    if (in->cluster_size) {
        printf("cluster_size: %" PRIu32 "\n", in->cluster_size);
    }
    if (in->backing_filename) {
        printf("backing file: %s", in->backing_filename);
        if (in->full_backing_filename && strcmp(in->full_backing_filename, in->backing_filename)) {
            printf(" (actual path: %s)", in->full_backing_filename);
        }
        printf("\n");
        if (in->backing_format) {
            printf("backing file format: %s\n", in->backing_format);
        }
    }
    if (qi->valid) {
        bool v3 = !strcmp(qi->compat, "1.1");
        printf("Format specific information:\n");
        printf("    compat: %s\n", qi->compat);
        printf("    compression type: %s\n", qi->compression_type);
        if (v3) {
            printf("    lazy refcounts: %s\n", qi->lazy_refcounts ? "true" : "false");
        }
        printf("    refcount bits: %u\n", qi->refcount_bits);
        if (qi->data_file) {
            printf("    data file: %s\n", qi->data_file);
            printf("    data file raw: %s\n", qi->data_file_raw ? "true" : "false");
        }
        if (v3) {
            printf("    corrupt: %s\n", qi->corrupt ? "true" : "false");
            printf("    extended l2: %s\n", qi->extended_l2 ? "true" : "false");
        }
    }
}

static struct json_object *format_specific(const struct bdrv_qcow2_info *qi)
{
    bool v3 = !strcmp(qi->compat, "1.1");
    struct json_object *d = json_object_new_object();
    json_object_object_add(d, "compat", json_object_new_string(qi->compat));
    json_object_object_add(d, "compression-type", json_object_new_string(qi->compression_type));
    if (v3) {
        json_object_object_add(d, "lazy-refcounts", json_object_new_boolean(qi->lazy_refcounts));
    }
    json_object_object_add(d, "refcount-bits", json_object_new_int64(qi->refcount_bits));
    if (qi->data_file) {
        json_object_object_add(d, "data-file", json_object_new_string(qi->data_file));
        json_object_object_add(d, "data-file-raw", json_object_new_boolean(qi->data_file_raw));
    }
    if (v3) {
        json_object_object_add(d, "corrupt", json_object_new_boolean(qi->corrupt));
        json_object_object_add(d, "extended-l2", json_object_new_boolean(qi->extended_l2));
    }
    struct json_object *fs = json_object_new_object();
    json_object_object_add(fs, "type", json_object_new_string("qcow2"));
    json_object_object_add(fs, "data", d);
    return fs;
}

/* `has_dirty`: qemu-img leaves dirty-flag out when the format cannot say
 * (raw over an NBD export: the NBD client has no image info). */
static struct json_object *info_json(const struct bdrv_info *in,
                                     const struct bdrv_qcow2_info *qi, bool has_dirty)
{
    struct json_object *o = json_object_new_object();
    if (!o) {
        return NULL;
    }
    /* Key order as qemu-img prints it (its dictionary's order). */
    if (in->backing_filename && in->backing_format) {
        json_object_object_add(o, "backing-filename-format",
                               json_object_new_string(in->backing_format));
    }
    json_object_object_add(o, "virtual-size", json_object_new_int64((int64_t)in->virtual_size));
    json_object_object_add(o, "filename", json_object_new_string(in->filename));
    if (in->cluster_size) {
        json_object_object_add(o, "cluster-size", json_object_new_int64(in->cluster_size));
    }
    json_object_object_add(o, "format", json_object_new_string(in->format));
    if (in->actual_size >= 0) {
        json_object_object_add(o, "actual-size", json_object_new_int64(in->actual_size));
    }
    if (in->encrypted) {
        json_object_object_add(o, "encrypted", json_object_new_boolean(1));
    }
    if (qi->valid) {
        json_object_object_add(o, "format-specific", format_specific(qi));
    }
    if (in->backing_filename) {
        if (in->full_backing_filename) {
            json_object_object_add(o, "full-backing-filename",
                                   json_object_new_string(in->full_backing_filename));
        }
        json_object_object_add(o, "backing-filename",
                               json_object_new_string(in->backing_filename));
    }
    if (has_dirty) {
        json_object_object_add(o, "dirty-flag", json_object_new_boolean(in->dirty));
    }
    return o;
}

/* Is there only raw between the node and an NBD client under it? */
static bool raw_over_nbd(struct bdrv_node *n)
{
    while (n && !strcmp(bdrv_driver_name(n), "raw")) {
        n = bdrv_file_child(n);
    }
    return n && !strcmp(bdrv_driver_name(n), "nbd");
}

/* Is the node, or the protocol node under it, an NBD client? */
static bool over_nbd(struct bdrv_node *n)
{
    for (; n; n = bdrv_file_child(n)) {
        if (!strcmp(bdrv_driver_name(n), "nbd")) {
            return true;
        }
    }
    return false;
}

int img_cmd_info(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256, OPT_CHAIN, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "backing-chain", no_argument, NULL, OPT_CHAIN },
        { "force-share", no_argument, NULL, 'U' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool json = false, chain = false;
    struct img_open_flags fl = { .read_only = true };
    int c;

    optind = 1;
    opterr = 0;         /* img_bad_option_at says it, as qemu-img does */
    while ((c = getopt_long(argc, argv, ":f:Uh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'U':
            fl.force_share = true;
            break;
        case OPT_CHAIN:
            chain = true;
            break;
        case OPT_IMAGE_OPTS:
            fl.image_opts = true;
            break;
        case OPT_OUTPUT:
            if (!strcmp(optarg, "json")) {
                json = true;
            } else if (!strcmp(optarg, "human")) {
                json = false;
            } else {
                return img_usage_error("--output must be used with human or json as argument.");
            }
            break;
        case 'h':
            return img_cmd_help("info");
        default:
            return img_bad_option_at(argv, c);
        }
    }
    if (optind != argc - 1) {
        img_print_synopsis(stderr, "info");
        return img_usage_error("Expecting one image file name");
    }
    const char *filename = argv[optind];
    /* As qemu-img: the backing chain is only opened to be shown, so an
     * image whose backing file is missing still gets its info. */
    fl.no_backing = !chain;
    struct bdrv_node *bs = img_open_ex(filename, fmt, &fl);
    if (!bs) {
        return IMG_EXIT_FAIL;
    }
    struct json_object *arr = chain && json ? json_object_new_array() : NULL;
    int ret = 0;
    for (struct bdrv_node *n = bs; n; n = chain ? bdrv_backing_child(n) : NULL) {
        struct bdrv_info info;
        struct bdrv_qcow2_info qi;
        bdrv_get_info(n, &info);
        bdrv_get_qcow2_info(n, &qi);
        /* qemu-img shows the top's name as given (backing files by the
         * name they were opened with), but an NBD export by its node's
         * name: nbd+unix://?socket=P, nbd://H:PORT/E, whatever was typed;
         * with --image-opts the node's file name, not the option string. */
        if (n == bs && !over_nbd(n) && !fl.image_opts) {
            info.filename = filename;
        }
        if (json) {
            struct json_object *o = info_json(&info, &qi, !raw_over_nbd(n));
            if (!o) {
                ret = img_error("Out of memory");
                break;
            }
            if (arr) {
                json_object_array_add(arr, o);
            } else {
                img_json_print(o);
                json_object_put(o);
            }
        } else {
            if (n != bs) {
                printf("\n");
            }
            print_human(&info, &qi);
        }
    }
    if (arr) {
        img_json_print(arr);
        json_object_put(arr);
    }
    bdrv_unref(bs);
    return ret;
}
