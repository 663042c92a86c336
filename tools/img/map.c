/*
 * tools/img/map.c — `diskdm-img map`: where each run of the virtual disk
 * comes from (which layer of the chain, data or zeroes, host offset), as
 * qemu-img map prints it in text or JSON.
 */
#include "tools/img/img.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

struct map_entry {
    uint64_t start, length;
    int depth;
    bool present, zero, data, has_offset;
    uint64_t offset;
    const char *filename;       /* node the data lives in (with has_offset) */
};

/* Runs qemu-img would print as one. */
static bool mergeable(const struct map_entry *a, const struct map_entry *b)
{
    if (a->start + a->length != b->start || a->depth != b->depth ||
        a->present != b->present || a->zero != b->zero || a->data != b->data ||
        a->has_offset != b->has_offset) {
        return false;
    }
    if (a->has_offset && (a->offset + a->length != b->offset ||
                          strcmp(a->filename, b->filename))) {
        return false;
    }
    return true;
}

static int dump_entry(const struct map_entry *e, bool json, bool *first)
{
    if (!json) {
        if (e->data && !e->has_offset) {
            return img_error("File contains external, encrypted or compressed clusters.");
        }
        if (e->data && !e->zero) {
            char a[24], b[24], c[24];
            /* "%#x" style: 0 stays "0", others get 0x. */
            snprintf(a, sizeof(a), e->start ? "0x%" PRIx64 : "%" PRIu64, e->start);
            snprintf(b, sizeof(b), e->length ? "0x%" PRIx64 : "%" PRIu64, e->length);
            uint64_t off = e->has_offset ? e->offset : 0;
            snprintf(c, sizeof(c), off ? "0x%" PRIx64 : "%" PRIu64, off);
            printf("%-16s%-16s%-16s%s\n", a, b, c, e->filename ? e->filename : "");
        }
        return 0;
    }
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "start", json_object_new_int64((int64_t)e->start));
    json_object_object_add(o, "length", json_object_new_int64((int64_t)e->length));
    json_object_object_add(o, "depth", json_object_new_int64(e->depth));
    json_object_object_add(o, "present", json_object_new_boolean(e->present));
    json_object_object_add(o, "zero", json_object_new_boolean(e->zero));
    json_object_object_add(o, "data", json_object_new_boolean(e->data));
    if (e->has_offset) {
        json_object_object_add(o, "offset", json_object_new_int64((int64_t)e->offset));
    }
    /* qemu-img's layout: one entry per line, "{ k: v, ...}". */
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_SPACED |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t n = strlen(s);
    if (n >= 2 && s[n - 2] == ' ' && s[n - 1] == '}') {
        n -= 2;
    }
    printf("%s%.*s}", *first ? "[" : ",\n", (int)n, s);
    *first = false;
    json_object_put(o);
    return 0;
}

static struct bdrv_node *node_at_depth(struct bdrv_node *bs, int depth)
{
    while (depth-- > 0 && bs) {
        bs = bdrv_backing_child(bs);
    }
    return bs;
}

int img_cmd_map(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256, OPT_START, OPT_MAXLEN, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "start-offset", required_argument, NULL, OPT_START },
        { "max-length", required_argument, NULL, OPT_MAXLEN },
        { "force-share", no_argument, NULL, 'U' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool json = false;
    struct img_open_flags fl = { .read_only = true };
    uint64_t start = 0, max_len = UINT64_MAX;
    int c;

    optind = 1;
    opterr = 0;         /* img_bad_option_at says it, as qemu-img does */
    while ((c = getopt_long(argc, argv, ":f:hU", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'U':
            fl.force_share = true;
            break;
        case OPT_IMAGE_OPTS:
            fl.image_opts = true;
            break;
        case OPT_START:
            if (img_parse_size(optarg, &start) < 0 || start > INT64_MAX) {
                return img_error("Invalid start offset specified! You may use k, M, G, T, "
                                 "P or E suffixes for");
            }
            break;
        case OPT_MAXLEN:
            if (img_parse_size(optarg, &max_len) < 0 || max_len > INT64_MAX) {
                return img_error("Invalid length specified! You may use k, M, G, T, P or "
                                 "E suffixes for");
            }
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
            return img_cmd_help("map");
        default:
            return img_bad_option_at(argv, c);
        }
    }
    if (optind != argc - 1) {
        img_print_synopsis(stderr, "map");
        return img_usage_error("Expecting one image file name");
    }
    const char *filename = argv[optind];
    struct bdrv_node *bs = img_open_ex(filename, fmt, &fl);
    if (!bs) {
        return IMG_EXIT_FAIL;
    }
    int64_t len = bdrv_getlength(bs);
    int ret = IMG_EXIT_FAIL;
    if (len < 0) {
        img_error("Could not get the size of '%s'", filename);
        goto out_unref;
    }
    int bottom = 0;
    for (struct bdrv_node *n = bdrv_backing_child(bs); n; n = bdrv_backing_child(n)) {
        bottom++;
    }
    uint64_t end = (uint64_t)len;
    if (start > end) {
        start = end;
    }
    if (max_len < end - start) {
        end = start + max_len;
    }
    if (!json) {
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    }
    bool first = true, have = false;
    struct map_entry cur = { 0 };
    for (uint64_t off = start; off < end;) {
        uint64_t pnum = 0, map = 0;
        int depth = 0;
        int st = bdrv_block_status(bs, off, end - off, &pnum, &map, &depth);
        if (st < 0 || pnum == 0) {
            img_error("Could not read the status of '%s' at %" PRIu64 ": %s", filename, off,
                      strerror(st < 0 ? -st : EIO));
            goto out_unref;
        }
        struct map_entry e = {
            .start = off, .length = pnum, .depth = depth < 0 ? bottom : depth,
            .present = depth >= 0,
            .zero = depth < 0 || (st & BDRV_BLOCK_ZERO),
            .data = depth >= 0 && (st & BDRV_BLOCK_DATA),
            .has_offset = depth >= 0 && (st & BDRV_BLOCK_OFFSET_VALID),
            .offset = map,
        };
        if (e.has_offset) {
            struct bdrv_node *n = node_at_depth(bs, e.depth);
            struct bdrv_qcow2_info qi = { 0 };
            e.filename = n ? bdrv_filename(n) : "";
            /* A qcow2 layer's data may live in its external data file,
             * named as it was opened (its stored name, as qemu-img shows). */
            if (n) {
                bdrv_get_qcow2_info(n, &qi);
            }
            if (qi.valid && qi.data_file) {
                e.filename = qi.data_file;
            }
        }
        if (have && mergeable(&cur, &e)) {
            cur.length += e.length;
        } else {
            if (have && dump_entry(&cur, json, &first)) {
                goto out_unref;
            }
            cur = e;
            have = true;
        }
        off += pnum;
    }
    if (have && dump_entry(&cur, json, &first)) {
        goto out_unref;
    }
    if (json) {
        printf("%s]\n", first ? "[" : "");
    }
    ret = 0;
out_unref:
    bdrv_unref(bs);
    return ret;
}
