/*
 * block/qcow2-create.c — making a new qcow2 image: compat 0.10 (v2) or 1.1
 * (v3), any cluster size and refcount width, lazy refcounts, a backing
 * file with its format, and preallocation (metadata, falloc, full). The
 * layout follows qemu-img: header, refcount table, refcount blocks, L1
 * table, then (preallocated) L2 tables and data clusters.
 */
#include "block/qcow2.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* The feature-name table qemu-img writes (type, bit, name). */
static const struct { uint8_t type, bit; const char *name; } feature_names[] = {
    { 0, 0, "dirty bit" },
    { 0, 1, "corrupt bit" },
    { 0, 2, "external data file" },
    { 0, 3, "compression type" },
    { 0, 4, "extended L2 entries" },
    { 1, 0, "lazy refcounts" },
    { 2, 0, "bitmaps" },
    { 2, 1, "raw external data" },
};

static size_t add_ext(uint8_t *buf, size_t off, size_t cap, uint32_t type,
                      const void *data, uint32_t len)
{
    size_t need = 8 + ROUND_UP((size_t)len, 8);
    if (off + need > cap) {
        return 0;
    }
    qcow2_put_be32(buf + off, type);
    qcow2_put_be32(buf + off + 4, len);
    memcpy(buf + off + 8, data, len);
    return need;
}

/* Refcount entry `i` of a block in `b` set to 1 (width 1 << order). */
static void rb_set_one(uint8_t *b, unsigned order, uint64_t i)
{
    unsigned bits = 1u << order;
    if (bits < 8) {
        b[i / (8 / bits)] |= (uint8_t)(1u << ((i % (8 / bits)) * bits));
    } else {
        b[i * (bits / 8) + bits / 8 - 1] = 1;
    }
}

/* The external data file, made as qemu-img does: a sparse raw file of
 * the virtual size, at the name as given (relative to the working
 * directory, which is also where the image's opener looks for it). */
static int create_data_file(const struct bdrv_create_opts *opts, struct error **errp)
{
    struct bdrv_create_opts fo = { .size = opts->size };
    if (opts->prealloc == PREALLOC_FALLOC || opts->prealloc == PREALLOC_FULL) {
        fo.prealloc = opts->prealloc;
    }
    return bdrv_create("file", opts->data_file, &fo, errp);
}

int qcow2_create(const char *filename, const struct bdrv_create_opts *opts,
                 struct error **errp)
{
    uint64_t cs = opts->cluster_size ? opts->cluster_size : 65536;
    unsigned rbits = opts->refcount_bits ? opts->refcount_bits : 16;
    unsigned version = 3;
    int ret;

    if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1))) {
        error_setg(errp, "Cluster size must be a power of two between 512 and 2048k");
        return -EINVAL;
    }
    if (rbits > 64 || (rbits & (rbits - 1))) {
        error_setg(errp, "Refcount width must be a power of two and may not exceed 64 bits");
        return -EINVAL;
    }
    if (opts->compat && (!strcmp(opts->compat, "0.10") || !strcmp(opts->compat, "v2"))) {
        version = 2;
    } else if (opts->compat && strcmp(opts->compat, "1.1") && strcmp(opts->compat, "v3")) {
        error_setg(errp, "Invalid compatibility level: '%s'", opts->compat);
        return -EINVAL;
    }
    if (version == 2 && rbits != 16) {
        error_setg(errp, "Different refcount widths than 16 bits require compatibility "
                   "level 1.1 or above (use version=v3 or greater)");
        return -EINVAL;
    }
    if (version == 2 && opts->lazy_refcounts) {
        error_setg(errp, "Lazy refcounts only supported with compatibility level 1.1 "
                   "and above (use version=v3 or greater)");
        return -EINVAL;
    }
    if (version == 2 && opts->extended_l2) {
        error_setg(errp, "Extended L2 entries are only supported with compatibility "
                   "level 1.1 and above (use version=v3 or greater)");
        return -EINVAL;
    }
    if (version == 2 && opts->data_file) {
        error_setg(errp, "External data files are only supported with compatibility "
                   "level 1.1 and above (use version=v3 or greater)");
        return -EINVAL;
    }
    if (opts->data_file_raw && !opts->data_file) {
        error_setg(errp, "data-file-raw requires data-file");
        return -EINVAL;
    }
    if (opts->data_file_raw && opts->backing_file) {
        error_setg(errp, "Backing file and data-file-raw cannot be used at the same time");
        return -EINVAL;
    }
    if (opts->data_file && !opts->data_file[0]) {
        error_setg(errp, "data-file must not be empty");
        return -EINVAL;
    }
    if (opts->extended_l2 && cs < 16384) {
        error_setg(errp, "Extended L2 entries are only supported with cluster sizes "
                   "of at least 16384 bytes");
        return -EINVAL;
    }
    if (opts->size % 512) {
        error_setg(errp, "Image size must be a multiple of 512 bytes");
        return -EINVAL;
    }
    if (opts->size > (1ull << 56)) {
        error_setg(errp, "Image size too big (%" PRIu64 " bytes)", opts->size);
        return -EFBIG;
    }
    if (opts->backing_file && strlen(opts->backing_file) > QCOW2_MAX_BACKING_NAME) {
        error_setg(errp, "Backing file name too long (at most %d bytes)",
                   QCOW2_MAX_BACKING_NAME);
        return -EINVAL;
    }
    if (opts->prealloc != PREALLOC_OFF && opts->backing_file && !opts->extended_l2) {
        error_setg(errp, "Backing file and preallocation can only be used at the same "
                   "time if extended_l2 is on");
        return -EINVAL;
    }

    unsigned cbits = (unsigned)__builtin_ctzll(cs);
    unsigned order = (unsigned)__builtin_ctz(rbits);
    unsigned l2e_size = opts->extended_l2 ? 16 : 8;
    uint64_t l2_entries = cs / l2e_size;
    uint64_t data_cl = DIV_ROUND_UP(opts->size, cs);
    uint64_t l1_size = DIV_ROUND_UP(data_cl, l2_entries);
    if (l1_size * 8 > QCOW2_MAX_L1_BYTES) {
        error_setg(errp, "Image size too big for cluster size %" PRIu64, cs);
        return -EFBIG;
    }
    uint64_t l1_cl = DIV_ROUND_UP(l1_size * 8, cs);   /* none for size 0 */
    /* A raw data file is mapped whole from the start (as qemu-img). */
    bool prealloc = opts->prealloc != PREALLOC_OFF || opts->data_file_raw;
    bool ext_data = opts->data_file != NULL;
    /* Clusters in the image file: data lives in the data file if any. */
    uint64_t img_data_cl = prealloc && !ext_data ? data_cl : 0;
    uint64_t meta = 1 + l1_cl + (prealloc ? l1_size : 0) + img_data_cl;
    uint64_t per_block = cs * 8 / rbits;
    uint64_t rt = 1, rb = 1;
    for (int i = 0; i < 32; i++) {
        uint64_t nrb = DIV_ROUND_UP(meta + rt + rb, per_block);
        uint64_t nrt = DIV_ROUND_UP(nrb * 8, cs);
        if (nrb == rb && nrt == rt) {
            break;
        }
        rb = nrb;
        rt = nrt;
    }
    if ((rt << cbits) > QCOW2_MAX_RT_BYTES) {
        error_setg(errp, "Image size too big for cluster size %" PRIu64, cs);
        return -EFBIG;
    }
    uint64_t rt_off = cs, rb_off = rt_off + rt * cs, l1_off = rb_off + rb * cs;
    uint64_t l2_off = l1_off + l1_cl * cs, data_off = l2_off + l1_size * cs;
    uint64_t total = 1 + rt + rb + l1_cl + (prealloc ? l1_size : 0) + img_data_cl;
    uint64_t file_len = prealloc ? total * cs : l1_size ? l1_off + l1_size * 8 : l1_off;

    struct bdrv_create_opts fo = { .size = prealloc ? file_len : 0 };
    if (!ext_data && (opts->prealloc == PREALLOC_FALLOC || opts->prealloc == PREALLOC_FULL)) {
        fo.prealloc = opts->prealloc;
    }
    if (ext_data && (ret = create_data_file(opts, errp)) < 0) {
        return ret;
    }
    ret = bdrv_create("file", filename, &fo, errp);
    if (ret < 0) {
        return ret;
    }
    struct bdrv_node *f = bdrv_open_file(filename, "file", false, errp);
    if (!f) {
        return -EIO;
    }
    uint8_t *buf = calloc(1, cs);
    uint8_t *tbl = NULL;
    if (!buf) {
        ret = -ENOMEM;
        goto out_close;
    }
    ret = bdrv_truncate(f, file_len, errp);
    if (ret < 0) {
        goto out_free;
    }

    /* Cluster 0: header, extensions, backing file name. */
    size_t hlen = version == 3 ? QCOW2_HEADER_LEN_WRITTEN : QCOW2_V2_HEADER_LEN;
    qcow2_put_be32(buf, QCOW2_MAGIC);
    qcow2_put_be32(buf + QH_VERSION, version);
    qcow2_put_be32(buf + QH_CLUSTER_BITS, cbits);
    qcow2_put_be64(buf + QH_SIZE, opts->size);
    qcow2_put_be32(buf + QH_L1_SIZE, (uint32_t)l1_size);
    qcow2_put_be64(buf + QH_L1_OFFSET, l1_size ? l1_off : 0);
    qcow2_put_be64(buf + QH_RT_OFFSET, rt_off);
    qcow2_put_be32(buf + QH_RT_CLUSTERS, (uint32_t)rt);
    if (version == 3) {
        qcow2_put_be64(buf + QH_COMPAT, opts->lazy_refcounts ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0);
        qcow2_put_be64(buf + QH_INCOMPAT, (opts->extended_l2 ? QCOW2_INCOMPAT_EXTL2 : 0) |
                                          (ext_data ? QCOW2_INCOMPAT_DATA_FILE : 0));
        qcow2_put_be64(buf + QH_AUTOCLEAR, opts->data_file_raw ? QCOW2_AUTOCLEAR_DATA_RAW : 0);
        qcow2_put_be32(buf + QH_REFCOUNT_ORDER, order);
        qcow2_put_be32(buf + QH_HEADER_LENGTH, (uint32_t)hlen);
    }
    size_t off = hlen, cap = cs - 8;
    size_t blen = opts->backing_file ? strlen(opts->backing_file) : 0;
    cap -= blen;
    if (opts->backing_file && opts->backing_format) {
        size_t n = add_ext(buf, off, cap, QCOW2_EXT_BACKING_FMT, opts->backing_format,
                           (uint32_t)strlen(opts->backing_format));
        if (!n) {
            error_setg(errp, "Backing file name and format do not fit in the header "
                       "cluster");
            ret = -EINVAL;
            goto out_free;
        }
        off += n;
    }
    if (ext_data) {
        size_t n = add_ext(buf, off, cap, QCOW2_EXT_DATA_FILE, opts->data_file,
                           (uint32_t)strlen(opts->data_file));
        if (!n) {
            error_setg(errp, "Data file name does not fit in the header cluster");
            ret = -EINVAL;
            goto out_free;
        }
        off += n;
    }
    if (version == 3) {
        uint8_t ft[ARRAY_SIZE(feature_names) * 48];
        memset(ft, 0, sizeof(ft));
        for (size_t i = 0; i < ARRAY_SIZE(feature_names); i++) {
            ft[i * 48] = feature_names[i].type;
            ft[i * 48 + 1] = feature_names[i].bit;
            strncpy((char *)ft + i * 48 + 2, feature_names[i].name, 46);
        }
        /* Optional: left out when a small cluster has no room for it. */
        off += add_ext(buf, off, cap, QCOW2_EXT_FEATURE_NAMES, ft, sizeof(ft));
    }
    off += 8;       /* end-of-extensions marker: already zero */
    if (blen) {
        if (off + blen > cs) {
            error_setg(errp, "Backing file name does not fit in the header cluster");
            ret = -EINVAL;
            goto out_free;
        }
        qcow2_put_be64(buf + QH_BACKING_OFFSET, off);
        qcow2_put_be32(buf + QH_BACKING_SIZE, (uint32_t)blen);
        memcpy(buf + off, opts->backing_file, blen);
    }
    /* The header goes last (below) so a half-made image is not qcow2. */

    /* Refcount table and blocks: every cluster of the layout is in use. */
    tbl = calloc(rt, cs);
    if (!tbl) {
        ret = -ENOMEM;
        goto out_free;
    }
    for (uint64_t i = 0; i < rb; i++) {
        qcow2_put_be64(tbl + i * 8, rb_off + i * cs);
    }
    ret = bdrv_pwrite(f, rt_off, tbl, rt * cs, 0);
    if (ret < 0) {
        goto out_io;
    }
    uint8_t *blk = tbl;     /* reused, one cluster at a time */
    for (uint64_t i = 0; i < rb; i++) {
        memset(blk, 0, cs);
        for (uint64_t c = i * per_block; c < MIN((i + 1) * per_block, total); c++) {
            rb_set_one(blk, order, c - i * per_block);
        }
        ret = bdrv_pwrite(f, rb_off + i * cs, blk, cs, 0);
        if (ret < 0) {
            goto out_io;
        }
    }

    /* With preallocation: L2 tables mapping the data clusters in order.
     * The L1 table is written either way, empty ones too, so the file's
     * allocated blocks (`actual-size`) are qemu-img's. */
    if (prealloc && l1_size) {
        for (uint64_t i = 0; i < l1_size; i++) {
            memset(blk, 0, cs);
            for (uint64_t j = 0; j < l2_entries && i * l2_entries + j < data_cl; j++) {
                /* Extended entries: bitmap 0, so the preallocated
                 * subclusters still read from the backing file. */
                uint64_t g = (i * l2_entries + j) * cs;     /* guest offset */
                qcow2_put_be64(blk + j * l2e_size, (ext_data ? g : data_off + g) |
                               QCOW2_OFLAG_COPIED);
            }
            ret = bdrv_pwrite(f, l2_off + i * cs, blk, cs, 0);
            if (ret < 0) {
                goto out_io;
            }
        }
    }
    if (l1_size) {
        uint8_t *l1 = calloc(l1_cl, cs);
        if (!l1) {
            ret = -ENOMEM;
            goto out_io;
        }
        for (uint64_t i = 0; prealloc && i < l1_size; i++) {
            qcow2_put_be64(l1 + i * 8, (l2_off + i * cs) | QCOW2_OFLAG_COPIED);
        }
        ret = bdrv_pwrite(f, l1_off, l1, l1_size * 8, 0);
        free(l1);
        if (ret < 0) {
            goto out_io;
        }
    }
    ret = bdrv_flush(f);
    if (ret == 0) {
        ret = bdrv_pwrite(f, 0, buf, cs, 0);
    }
    if (ret == 0) {
        ret = bdrv_flush(f);
    }
out_io:
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write the qcow2 metadata of '%s'",
                         filename);
    }
out_free:
    free(tbl);
    free(buf);
out_close:
    bdrv_unref(f);
    return ret;
}
