/*
 * tools/img/check.c — `diskdm-img check`: qemu-img check's report (text or
 * JSON with its keys) and exit codes over bdrv_check: 0 clean, 1 the check
 * itself failed, 2 corruptions, 3 leaks only, 63 format without checks.
 */
#include "tools/img/img.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#define CHECK_EXIT_CORRUPT 2
#define CHECK_EXIT_LEAKS 3
#define CHECK_EXIT_UNSUPPORTED 63

struct check_report {
    struct bdrv_check_result r;
    uint64_t fragmented;
    uint64_t check_errors;
    uint64_t leaks_fixed, corruptions_fixed;
};

/*
 * Fragmented clusters as qemu-img counts them: walking the guest clusters
 * in order, one whose host offset does not follow the previous one's.
 * The node's own block status gives the host offsets.
 */
static uint64_t count_fragmented(struct bdrv_node *bs, uint32_t cluster_size)
{
    int64_t len = bdrv_getlength(bs);
    uint64_t off = 0, next = 0, frag = 0;
    if (len < 0 || !cluster_size) {
        return 0;
    }
    while (off < (uint64_t)len) {
        uint64_t pnum = 0, map = 0;
        int depth;
        int st = bdrv_block_status(bs, off, (uint64_t)len - off, &pnum, &map, &depth);
        if (st < 0 || pnum == 0) {
            break;
        }
        if (depth == 0 && (st & BDRV_BLOCK_OFFSET_VALID) && (st & BDRV_BLOCK_DATA)) {
            /* A run contiguous in the file: only its first cluster can
             * be out of place. */
            if (next && map != next) {
                frag++;
            }
            next = map + pnum;
        }
        off += pnum;
    }
    return frag;
}

static void print_human(const struct check_report *c, bool quiet)
{
    if (quiet) {
        return;
    }
    const struct bdrv_check_result *r = &c->r;
    if (!r->corruptions && !r->leaks && !c->check_errors) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions) {
            printf("\n%" PRIu64 " errors were found on the image.\n"
                   "Data may be corrupted, or further writes to the image may "
                   "corrupt it.\n", r->corruptions);
        }
        if (r->leaks) {
            printf("\n%" PRIu64 " leaked clusters were found on the image.\n"
                   "This means waste of disk space, but no harm to data.\n", r->leaks);
        }
        if (c->check_errors) {
            printf("\n%" PRIu64 " internal errors have occurred during the check.\n",
                   c->check_errors);
        }
    }
    if (r->total_clusters && r->allocated_clusters) {
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, "
               "%0.2f%% compressed clusters\n", r->allocated_clusters, r->total_clusters,
               (double)r->allocated_clusters * 100.0 / (double)r->total_clusters,
               (double)c->fragmented * 100.0 / (double)r->allocated_clusters, 0.0);
    }
    if (r->image_end_offset) {
        printf("Image end offset: %" PRIu64 "\n", r->image_end_offset);
    }
}

/* qemu-img leaves out the counters that are zero. */
static void add_nonzero(struct json_object *o, const char *key, uint64_t v)
{
    if (v) {
        json_object_object_add(o, key, json_object_new_int64((int64_t)v));
    }
}

static void print_json(const struct check_report *c, const char *filename,
                       const char *format)
{
    const struct bdrv_check_result *r = &c->r;
    struct json_object *o = json_object_new_object();
    add_nonzero(o, "image-end-offset", r->image_end_offset);
    add_nonzero(o, "total-clusters", r->total_clusters);
    add_nonzero(o, "corruptions", r->corruptions);
    json_object_object_add(o, "check-errors", json_object_new_int64((int64_t)c->check_errors));
    add_nonzero(o, "leaks", r->leaks);
    add_nonzero(o, "leaks-fixed", c->leaks_fixed);
    add_nonzero(o, "corruptions-fixed", c->corruptions_fixed);
    add_nonzero(o, "allocated-clusters", r->allocated_clusters);
    add_nonzero(o, "fragmented-clusters", c->fragmented);
    json_object_object_add(o, "filename", json_object_new_string(filename));
    json_object_object_add(o, "format", json_object_new_string(format));
    img_json_print(o);
    json_object_put(o);
}

int img_cmd_check(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "repair", required_argument, NULL, 'r' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "force-share", no_argument, NULL, 'U' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool json = false, quiet = false;
    struct img_open_flags fl = { .read_only = true };
    unsigned fix = 0;
    int c;

    optind = 1;
    opterr = 0;         /* img_bad_option_at says it, as qemu-img does */
    while ((c = getopt_long(argc, argv, ":hf:r:T:qU", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'r':
            fl.read_only = false;
            if (!strcmp(optarg, "leaks")) {
                fix = BDRV_FIX_LEAKS;
            } else if (!strcmp(optarg, "all")) {
                fix = BDRV_FIX_LEAKS | BDRV_FIX_ERRORS;
            } else {
                img_print_synopsis(stderr, "check");
                return img_usage_error("Unknown option value for -r (expecting 'leaks' "
                                       "or 'all'): %s", optarg);
            }
            break;
        case 'T':
            if (img_parse_cache(optarg, &fl.cache) < 0) {
                return IMG_EXIT_FAIL;
            }
            fl.has_cache = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            fl.force_share = true;
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
            return img_cmd_help("check");
        default:
            return img_bad_option_at(argv, c);
        }
    }
    if (optind != argc - 1) {
        img_print_synopsis(stderr, "check");
        return img_usage_error("Expecting one image file name");
    }
    if (fix && fl.force_share) {
        return img_error("Cannot use -U with -r");
    }
    const char *filename = argv[optind];
    struct bdrv_node *bs = img_open_ex(filename, fmt, &fl);
    if (!bs) {
        return IMG_EXIT_FAIL;
    }

    struct check_report rep = { 0 };
    struct error *err = NULL;
    int ret = bdrv_check(bs, &rep.r, fix | BDRV_CHECK_REPORT, &err);
    if (ret == -ENOTSUP) {
        img_error("This image format does not support checks");
        error_free(err);
        bdrv_unref(bs);
        return CHECK_EXIT_UNSUPPORTED;
    }
    if (ret < 0) {
        img_error("Check failed: %s", err ? err->msg : strerror(-ret));
        error_free(err);
        bdrv_unref(bs);
        return IMG_EXIT_FAIL;
    }
    if (fix && (rep.r.leaks_fixed || rep.r.corruptions_fixed)) {
        rep.leaks_fixed = rep.r.leaks_fixed;
        rep.corruptions_fixed = rep.r.corruptions_fixed;
        if (!json && !quiet) {
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %" PRIu64 " leaked clusters\n    %" PRIu64 " corruptions\n\n"
                   "Double checking the fixed image now...\n",
                   rep.leaks_fixed, rep.corruptions_fixed);
        }
        ret = bdrv_check(bs, &rep.r, BDRV_CHECK_REPORT, &err);
        if (ret < 0) {
            img_error("Check failed: %s", err ? err->msg : strerror(-ret));
            error_free(err);
            bdrv_unref(bs);
            return IMG_EXIT_FAIL;
        }
    }
    struct bdrv_info info;
    bdrv_get_info(bs, &info);
    rep.fragmented = count_fragmented(bs, info.cluster_size);
    if (json) {
        print_json(&rep, filename, info.format);
    } else {
        print_human(&rep, quiet);
    }
    bdrv_unref(bs);
    if (rep.check_errors) {
        return IMG_EXIT_FAIL;
    }
    if (rep.r.corruptions) {
        return CHECK_EXIT_CORRUPT;
    }
    if (rep.r.leaks) {
        return CHECK_EXIT_LEAKS;
    }
    return 0;
}
