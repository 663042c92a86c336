/*
 * tools/img/measure.c — `diskdm-img measure`: how big a file an image of a
 * given size (or converted from a given image) needs, as qemu-img's
 * formulas compute it: "required" for the data there is, "fully
 * allocated" for every cluster.
 */
#include "tools/img/img.h"

#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Refcount table and blocks to count `clusters` clusters plus themselves:
 * the fixed point where no further metadata is needed. */
static uint64_t refcount_metadata_size(uint64_t clusters, uint64_t cs, unsigned order)
{
    uint64_t per_table_cluster = cs / 8;
    uint64_t per_block = cs * 8 / (1u << order);
    uint64_t table = 0, blocks = 0, n = 0, last;
    do {
        last = n;
        blocks = DIV_ROUND_UP(clusters + table + blocks, per_block);
        table = DIV_ROUND_UP(blocks, per_table_cluster);
        n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cs;
}

/* Bytes of a qcow2 file with every cluster of `size` allocated. */
static uint64_t qcow2_full_size(uint64_t size, uint64_t cs, unsigned order)
{
    uint64_t aligned = ROUND_UP(size, cs);
    uint64_t meta = cs;                                 /* header */
    uint64_t nl2e = ROUND_UP(aligned / cs, cs / 8);
    meta += nl2e * 8;                                   /* L2 tables */
    uint64_t nl1e = ROUND_UP(nl2e * 8 / cs, cs / 8);
    meta += nl1e * 8;                                   /* L1 table */
    meta += refcount_metadata_size((meta + aligned) / cs, cs, order);
    return meta + aligned;
}

/* Bytes of guest data the source holds, counted in whole clusters of
 * `cs`, zero and unallocated ranges left out. -1 on error. */
static int64_t allocated_data(struct bdrv_node *bs, uint64_t len, uint64_t cs)
{
    uint64_t required = 0;
    for (uint64_t off = 0; off < len;) {
        uint64_t pnum = 0, map;
        int depth;
        int st = bdrv_block_status(bs, off, len - off, &pnum, &map, &depth);
        if (st < 0 || pnum == 0) {
            return -1;
        }
        if (depth >= 0 && !(st & BDRV_BLOCK_ZERO) && (st & BDRV_BLOCK_DATA)) {
            /* Count to the end of the cluster, and skip there. */
            pnum = ROUND_UP(off + pnum, cs) - off;
            required += off % cs + pnum;
        }
        off += pnum;
    }
    return (int64_t)required;
}

int img_cmd_measure(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256, OPT_SIZE, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "size", required_argument, NULL, OPT_SIZE },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_fmt = "raw", *optstr = NULL, *prealloc = NULL;
    bool json = false, has_size = false;
    uint64_t size = 0;
    struct img_open_flags fl = { .read_only = true };
    int c;

    optind = 1;
    opterr = 0;         /* img_bad_option_at says it, as qemu-img does */
    while ((c = getopt_long(argc, argv, ":hf:O:o:l:U", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'O':
            out_fmt = optarg;
            break;
        case 'o':
            optstr = optarg;
            break;
        case 'U':
            fl.force_share = true;
            break;
        case 'l':
            return img_error("Snapshots are not supported by measure");
        case OPT_IMAGE_OPTS:
            fl.image_opts = true;
            break;
        case OPT_SIZE:
            if (img_parse_size(optarg, &size) < 0 || size > INT64_MAX) {
                fprintf(stderr, "diskdm-img: Invalid image size specified. You may use k, "
                        "M, G, T, P or E suffixes for\ndiskdm-img: kilobytes, megabytes, "
                        "gigabytes, terabytes, petabytes and exabytes.\n");
                return IMG_EXIT_FAIL;
            }
            has_size = true;
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
            return img_cmd_help("measure");
        default:
            return img_bad_option_at(argv, c);
        }
    }
    const char *filename = optind < argc ? argv[optind] : NULL;
    if (optind + 1 < argc) {
        return img_usage_error("Invalid parameter '%s'", argv[optind + 1]);
    }
    if (filename && has_size) {
        return img_error("--size N cannot be used together with a filename.");
    }
    if (!filename && !has_size) {
        return img_error("Either --size N or one filename must be specified.");
    }
    if (!img_format_known(out_fmt) || !strcmp(out_fmt, "file")) {
        return img_error("Block driver '%s' does not support size measurement", out_fmt);
    }
    bool qcow2 = !strcmp(out_fmt, "qcow2");
    struct bdrv_create_opts co = { 0 };
    char *bf = NULL, *bfmt = NULL;
    if (optstr) {
        int r = img_parse_create_opts(optstr, out_fmt, &co, &prealloc, &bf, &bfmt);
        if (r) {
            free(bf);
            free(bfmt);
            free((char *)co.data_file);
            return r;
        }
    }
    bool has_backing = bf != NULL;
    free(bf);
    free(bfmt);
    free((char *)co.data_file);     /* strdup'd by img_parse_create_opts; unused here */
    co.data_file = NULL;
    uint64_t cs = co.cluster_size ? co.cluster_size : 65536;
    unsigned order = (unsigned)__builtin_ctz(co.refcount_bits ? co.refcount_bits : 16);
    bool v3 = !co.compat || strcmp(co.compat, "0.10");

    struct bdrv_node *bs = NULL;
    uint64_t data = 0;
    bool bitmaps = false;
    if (filename) {
        bs = img_open_ex(filename, fmt, &fl);
        if (!bs) {
            return IMG_EXIT_FAIL;
        }
        int64_t l = bdrv_getlength(bs);
        if (l < 0) {
            bdrv_unref(bs);
            return img_error("Could not get the size of '%s'", filename);
        }
        size = (uint64_t)l;
        if (qcow2) {
            if (has_backing) {
                data = ROUND_UP(size, cs);
            } else {
                int64_t d = allocated_data(bs, size, cs);
                if (d < 0) {
                    bdrv_unref(bs);
                    return img_error("Unable to get block status of '%s'", filename);
                }
                data = (uint64_t)d;
            }
            /* Both ends could carry persistent bitmaps (none are copied). */
            struct bdrv_qcow2_info qi;
            bdrv_get_qcow2_info(bs, &qi);
            bitmaps = v3 && qi.valid && !strcmp(qi.compat, "1.1");
        }
        bdrv_unref(bs);
    }
    uint64_t required, full;
    if (qcow2) {
        full = qcow2_full_size(size, cs, order);
        required = full - ROUND_UP(size, cs) + data;
    } else {
        required = full = ROUND_UP(size, BDRV_SECTOR_SIZE);
    }
    if (json) {
        struct json_object *o = json_object_new_object();
        if (bitmaps) {
            json_object_object_add(o, "bitmaps", json_object_new_int64(0));
        }
        json_object_object_add(o, "required", json_object_new_int64((int64_t)required));
        json_object_object_add(o, "fully-allocated", json_object_new_int64((int64_t)full));
        img_json_print(o);
        json_object_put(o);
    } else {
        printf("required size: %" PRIu64 "\nfully allocated size: %" PRIu64 "\n", required,
               full);
        if (bitmaps) {
            printf("bitmaps size: 0\n");
        }
    }
    return 0;
}
