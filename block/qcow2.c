/*
 * block/qcow2.c — the qcow2 format driver: probing, header and extension
 * parsing, the read-only / dirty / corrupt rules at open, the backing
 * chain (resolved relative to the image, loops refused) and the vtable.
 * Cluster mapping and I/O live in qcow2-cluster.c, refcounts in
 * qcow2-refcount.c, creation in qcow2-create.c.
 */
#include "block/qcow2.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int qcow2_probe(const uint8_t *buf, size_t len, const char *filename)
{
    if (len >= 8 && qcow2_be32(buf) == QCOW2_MAGIC) {
        uint32_t v = qcow2_be32(buf + QH_VERSION);
        if (v == 2 || v == 3) {
            return 100;
        }
    }
    return 0;
}

int qcow2_write_header_field(struct qcow2_state *s, unsigned off,
                             const void *buf, size_t len)
{
    int ret = bdrv_pwrite(s->file, off, buf, len, 0);
    if (ret < 0) {
        return ret;
    }
    return bdrv_flush(s->file);
}

int qcow2_set_incompat(struct qcow2_state *s, uint64_t incompat)
{
    uint8_t b[8];
    qcow2_put_be64(b, incompat);
    int ret = qcow2_write_header_field(s, QH_INCOMPAT, b, 8);
    if (ret == 0) {
        s->incompat = incompat;
    }
    return ret;
}

void qcow2_signal_corruption(struct qcow2_state *s, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0) {
        msg = NULL;
    }
    va_end(ap);
    if (s->writable && !(s->incompat & QCOW2_INCOMPAT_CORRUPT)) {
        /* As QEMU: stop writing and say so in the header, so the damage
         * cannot spread; `check -r all` (or qemu-img) repairs. */
        log_error("qcow2 '%s': marking image as corrupt: %s", s->bs->filename,
                  msg ? msg : "?");
        qcow2_set_incompat(s, s->incompat | QCOW2_INCOMPAT_CORRUPT);
        s->incompat |= QCOW2_INCOMPAT_CORRUPT;
    } else {
        log_error("qcow2 '%s': %s", s->bs->filename, msg ? msg : "?");
    }
    free(msg);
}

/* Name of a feature bit from the image's feature-name table, or NULL. */
static const char *feature_name(struct qcow2_state *s, unsigned type,
                                unsigned bit, char out[47])
{
    for (unsigned i = 0; i < s->nb_exts; i++) {
        struct qcow2_ext *e = &s->exts[i];
        if (e->type != QCOW2_EXT_FEATURE_NAMES) {
            continue;
        }
        for (uint32_t o = 0; o + 48 <= e->len; o += 48) {
            if (e->data[o] == type && e->data[o + 1] == bit) {
                memcpy(out, e->data + o + 2, 46);
                out[46] = '\0';
                return out;
            }
        }
    }
    return NULL;
}

static void free_state(struct qcow2_state *s)
{
    for (unsigned i = 0; i < s->nb_exts; i++) {
        free(s->exts[i].data);
    }
    free(s->exts);
    s->exts = NULL;
    s->nb_exts = 0;
    qcow2_free_snapshots(s);
    free(s->backing_file);
    free(s->backing_fmt);
    free(s->full_backing_file);
    free(s->data_file);
    free(s->full_data_file);
    s->data_file = s->full_data_file = NULL;
    if (s->data) {
        bdrv_unref(s->data);
        s->data = NULL;
    }
    free(s->l1);
    free(s->rt);
    free(s->zero_cluster);
    free(s->cow_buf);
    free(s->cow_buf2);
    free(s->l2_batch);
    s->cow_buf = s->cow_buf2 = s->l2_batch = NULL;
    s->backing_file = s->backing_fmt = s->full_backing_file = NULL;
    s->l1 = NULL;
    s->rt = NULL;
    s->zero_cluster = NULL;
    qcow2_cache_free(&s->l2_cache);
    qcow2_cache_free(&s->rb_cache);
    free(s->pending);
    s->pending = NULL;
    s->nb_pending = s->cap_pending = 0;
    if (s->io_lock_ready) {
        pthread_rwlock_destroy(&s->io_lock);
        s->io_lock_ready = false;
    }
}

/* Free deferred clusters and give back the pool; no I/O in flight. */
static void release_space(struct bdrv_node *bs)
{
    struct qcow2_state *s = bs->opaque;
    pthread_rwlock_wrlock(&s->io_lock);
    pthread_mutex_lock(&bs->lock);
    qcow2_reclaim(s);
    qcow2_pool_release(s);
    pthread_mutex_unlock(&bs->lock);
    pthread_rwlock_unlock(&s->io_lock);
    bdrv_flush(s->file);
}

/* Extensions from `start` to the end marker inside cluster 0. */
static int parse_extensions(struct qcow2_state *s, const uint8_t *c0,
                            size_t c0_len, uint64_t start, uint64_t end,
                            struct error **errp)
{
    uint64_t off = start;
    while (off + 8 <= end) {
        uint32_t type = qcow2_be32(c0 + off);
        uint32_t len = qcow2_be32(c0 + off + 4);
        off += 8;
        if (type == QCOW2_EXT_END) {
            return 0;
        }
        if (len > end - off) {
            error_setg(errp, "'%s': header extension 0x%08" PRIx32
                       " is too long (%" PRIu32 " bytes)",
                       s->bs->filename, type, len);
            return -EINVAL;
        }
        struct qcow2_ext *n = realloc(s->exts, (s->nb_exts + 1) * sizeof(*n));
        if (!n) {
            error_setg(errp, "Out of memory");
            return -ENOMEM;
        }
        s->exts = n;
        n = &s->exts[s->nb_exts];
        n->type = type;
        n->len = len;
        n->data = malloc(len + 1);
        if (!n->data) {
            error_setg(errp, "Out of memory");
            return -ENOMEM;
        }
        memcpy(n->data, c0 + off, len);
        n->data[len] = 0;
        s->nb_exts++;
        if (type == QCOW2_EXT_DATA_FILE) {
            free(s->data_file);
            s->data_file = strndup((char *)n->data, len);
            if (!s->data_file) {
                error_setg(errp, "Out of memory");
                return -ENOMEM;
            }
        }
        if (type == QCOW2_EXT_BACKING_FMT) {
            free(s->backing_fmt);
            s->backing_fmt = strndup((char *)n->data, len);
            if (!s->backing_fmt) {
                error_setg(errp, "Out of memory");
                return -ENOMEM;
            }
        }
        off += ROUND_UP((uint64_t)len, 8);
    }
    (void)c0_len;
    return 0;
}

/* Is [off, off+len) a cluster-aligned range inside the file? */
static bool table_ok(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    return (off & s->cluster_mask) == 0 && off != 0 &&
           off <= s->file_len && len <= s->file_len - off;
}

int qcow2_load_table(struct qcow2_state *s, uint64_t off, uint32_t entries,
                     uint64_t **out)
{
    uint64_t *t = calloc(entries ? entries : 1, 8);
    if (!t) {
        return -ENOMEM;
    }
    if (entries) {
        int ret = bdrv_pread(s->file, off, t, (size_t)entries * 8);
        if (ret < 0) {
            free(t);
            return ret;
        }
        for (uint32_t i = 0; i < entries; i++) {
            t[i] = __builtin_bswap64(t[i]);
        }
    }
    *out = t;
    return 0;
}

/* stat() identity of the protocol file under a node. */
static bool node_same_file(struct bdrv_node *n, const struct stat *st)
{
    struct stat nst;
    const char *fn = n->file ? n->file->filename : n->filename;
    if (!fn || stat(fn, &nst) < 0) {
        return false;
    }
    return nst.st_dev == st->st_dev && nst.st_ino == st->st_ino;
}

/* Whether name starts with a protocol prefix (nbd:, nbd+unix://, ...): a
 * ':' before any '/'. Such a name is not a path and never relative. */
static bool name_has_protocol(const char *name)
{
    size_t n = strcspn(name, ":/");
    return n > 0 && name[n] == ':';
}

/* A backing file's `name` resolved against the image's directory, as QEMU
 * does; an absolute path or a protocol name (nbd://...) stays as it is. */
static char *resolve_name(const struct bdrv_node *bs, const char *name)
{
    const char *self = bs->filename ? bs->filename : "";
    char *full = NULL;
    if (name[0] == '/' || !strchr(self, '/') || name_has_protocol(name) ||
        name_has_protocol(self)) {
        return strdup(name);
    }
    char *dup = strdup(self);
    if (dup && asprintf(&full, "%s/%s", dirname(dup), name) < 0) {
        full = NULL;
    }
    free(dup);
    return full;
}

/*
 * The external data file: a POSIX file opened read-only exactly when the
 * image is (or its file child degraded to read-only).
 */
static int open_data_file(struct qcow2_state *s, struct error **errp)
{
    struct bdrv_node *bs = s->bs;
    const char *fn = bs->filename ? bs->filename : "";
    if (!s->data_file || !s->data_file[0]) {
        error_setg(errp, "'%s': the image uses an external data file but names none", fn);
        return -EINVAL;
    }
    /* QEMU opens the name as it stands (relative to the working directory,
     * where qemu-img create put it), not against the image's directory as
     * it does backing files: follow it so both open the same file. */
    s->full_data_file = strdup(s->data_file);
    struct bdrv_open_opts o;
    bdrv_open_opts_init(&o);
    o.driver = strdup("file");
    o.filename = s->full_data_file ? strdup(s->full_data_file) : NULL;
    if (!o.driver || !o.filename) {
        bdrv_open_opts_free(&o);
        error_setg(errp, "Out of memory");
        return -ENOMEM;
    }
    o.read_only = (struct opt_bool){ .set = true,
                                     .value = bs->read_only || s->file->read_only };
    o.force_read_only = bs->force_read_only;
    o.cache = bs->cache;
    struct error *err = NULL;
    s->data = bdrv_open(&o, &err);
    bdrv_open_opts_free(&o);
    if (!s->data) {
        int ret = err && err->errnum ? -err->errnum : -EIO;
        error_setg(errp, "Could not open data file '%s' of '%s': %s", s->full_data_file, fn,
                   err ? err->msg : strerror(-ret));
        error_free(err);
        return ret;
    }
    return 0;
}

static int open_backing(struct qcow2_state *s, struct error **errp)
{
    struct bdrv_node *bs = s->bs;
    const char *name = s->backing_file;
    const char *self = bs->filename ? bs->filename : "";

    s->full_backing_file = resolve_name(bs, name);
    if (!s->full_backing_file) {
        error_setg(errp, "Out of memory");
        return -ENOMEM;
    }
    if (bs->opts.no_backing) {
        return 0;
    }

    /* Loops and runaway depth: compare with every image above us. */
    struct stat st;
    int depth = 0;
    for (struct bdrv_node *p = bs; p; p = p->parent) {
        if (p->drv == bs->drv || p->file) {
            depth++;
        }
    }
    if (stat(s->full_backing_file, &st) == 0) {
        for (struct bdrv_node *p = bs; p; p = p->parent) {
            if (p->role == BDRV_CHILD_FILE) {
                continue;
            }
            if (node_same_file(p, &st)) {
                error_setg(errp, "Backing file loop: '%s' has backing file '%s', "
                           "which is already in the chain as '%s'", self,
                           s->full_backing_file, p->filename ? p->filename : "?");
                return -ELOOP;
            }
        }
    }
    if (depth >= QCOW2_MAX_CHAIN_DEPTH) {
        error_setg(errp, "Backing chain too deep (more than %d images): '%s' "
                   "has backing file '%s'", QCOW2_MAX_CHAIN_DEPTH, self,
                   s->full_backing_file);
        return -ELOOP;
    }

    struct bdrv_open_opts o;
    bdrv_open_opts_init(&o);
    int ret = 0;
    if (bs->opts.backing) {
        ret = bdrv_open_opts_copy(&o, bs->opts.backing);
    }
    if (ret == 0 && !o.driver && s->backing_fmt) {
        o.driver = strdup(s->backing_fmt);
        if (!o.driver) {
            ret = -ENOMEM;
        }
    }
    if (ret < 0) {
        bdrv_open_opts_free(&o);
        error_setg(errp, "Out of memory");
        return ret;
    }
    ret = bdrv_open_child(bs, BDRV_CHILD_BACKING, &o,
                          o.filename ? NULL : s->full_backing_file, errp);
    bdrv_open_opts_free(&o);
    if (ret < 0) {
        error_prepend(errp, "Could not open backing file");
    }
    return ret;
}

static int report_unsupported(struct qcow2_state *s, uint64_t bits,
                              struct error **errp)
{
    char buf[512] = "";
    size_t n = 0;
    for (unsigned bit = 0; bit < 64; bit++) {
        if (!(bits & (1ull << bit))) {
            continue;
        }
        char name[47];
        const char *nm = feature_name(s, 0, bit, name);
        n += snprintf(buf + n, n < sizeof(buf) ? sizeof(buf) - n : 0,
                      "%sincompatible bit %u%s%s%s", n ? ", " : "", bit,
                      nm ? " (" : "", nm ? nm : "", nm ? ")" : "");
        if (n >= sizeof(buf)) {
            break;
        }
    }
    error_setg(errp, "'%s': unsupported qcow2 feature(s): %s",
               s->bs->filename, buf);
    return -ENOTSUP;
}

#define FAIL(err, ...) do { error_setg(errp, __VA_ARGS__); ret = (err); \
    bdrv_error_errnum(errp, -ret); goto out_free; } while (0)

static int qcow2_do_open(struct bdrv_node *bs, struct error **errp);

static int qcow2_open(struct bdrv_node *bs, struct error **errp)
{
    int ret = qcow2_do_open(bs, errp);
    if (ret < 0 && errp && *errp && !(*errp)->errnum) {
        bdrv_error_errnum(errp, -ret);
    }
    return ret;
}

static int qcow2_do_open(struct bdrv_node *bs, struct error **errp)
{
    struct qcow2_state *s = bs->opaque;
    uint8_t *c0 = NULL;
    int ret;

    s->bs = bs;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* Discard must not starve behind a steady stream of reads. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->io_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    s->io_lock_ready = true;
    ret = bdrv_open_child(bs, BDRV_CHILD_FILE, bs->opts.file, NULL, errp);
    if (ret < 0) {
        return ret;
    }
    s->file = bs->file;
    const char *fn = bs->filename;
    int64_t flen = bdrv_getlength(s->file);
    if (flen < 0) {
        error_setg_errno(errp, (int)-flen, "Could not get the size of '%s'", fn);
        return (int)flen;
    }
    s->file_len = (uint64_t)flen;

    uint8_t h[QCOW2_V3_HEADER_LEN + 8] = { 0 };
    if (s->file_len < QCOW2_V2_HEADER_LEN) {
        FAIL(-EINVAL, "'%s': qcow2 header is truncated (file is %" PRIu64 " bytes)",
             fn, s->file_len);
    }
    ret = bdrv_pread(s->file, 0, h, MIN(sizeof(h), s->file_len));
    if (ret < 0) {
        FAIL(ret, "Could not read the qcow2 header of '%s': %s", fn, strerror(-ret));
    }
    if (qcow2_be32(h) != QCOW2_MAGIC) {
        FAIL(-EINVAL, "'%s' is not in qcow2 format", fn);
    }
    s->version = qcow2_be32(h + QH_VERSION);
    if (s->version != 2 && s->version != 3) {
        FAIL(-ENOTSUP, "'%s': unsupported qcow2 version %" PRIu32, fn, s->version);
    }
    s->cluster_bits = qcow2_be32(h + QH_CLUSTER_BITS);
    if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        FAIL(-EINVAL, "'%s': unsupported cluster size: 2^%" PRIu32, fn, s->cluster_bits);
    }
    s->cluster_size = 1u << s->cluster_bits;
    s->cluster_mask = s->cluster_size - 1;
    s->l2_bits = s->cluster_bits - 3;
    s->l2_size = 1u << s->l2_bits;
    s->l2e_size = 8;
    s->size = qcow2_be64(h + QH_SIZE);
    uint64_t backing_off = qcow2_be64(h + QH_BACKING_OFFSET);
    uint32_t backing_len = qcow2_be32(h + QH_BACKING_SIZE);
    uint32_t crypt = qcow2_be32(h + QH_CRYPT);
    s->l1_size = qcow2_be32(h + QH_L1_SIZE);
    s->l1_offset = qcow2_be64(h + QH_L1_OFFSET);
    s->rt_offset = qcow2_be64(h + QH_RT_OFFSET);
    s->rt_clusters = qcow2_be32(h + QH_RT_CLUSTERS);
    s->nb_snapshots = qcow2_be32(h + QH_NB_SNAPSHOTS);
    s->snapshots_offset = qcow2_be64(h + QH_SNAPSHOTS_OFFSET);
    if (s->version == 2) {
        s->refcount_order = 4;
        s->header_length = QCOW2_V2_HEADER_LEN;
    } else {
        if (s->file_len < QCOW2_V3_HEADER_LEN) {
            FAIL(-EINVAL, "'%s': qcow2 header is truncated (file is %" PRIu64 " bytes)",
                 fn, s->file_len);
        }
        s->incompat = qcow2_be64(h + QH_INCOMPAT);
        s->compat = qcow2_be64(h + QH_COMPAT);
        s->autoclear = qcow2_be64(h + QH_AUTOCLEAR);
        s->refcount_order = qcow2_be32(h + QH_REFCOUNT_ORDER);
        s->header_length = qcow2_be32(h + QH_HEADER_LENGTH);
        if (s->header_length < QCOW2_V3_HEADER_LEN || (s->header_length & 7)) {
            FAIL(-EINVAL, "'%s': invalid qcow2 header length %" PRIu32, fn,
                 s->header_length);
        }
        if (s->header_length > s->cluster_size) {
            FAIL(-EINVAL, "'%s': qcow2 header exceeds the cluster size", fn);
        }
        if (s->header_length > QCOW2_V3_HEADER_LEN && s->file_len > QH_COMPRESSION_TYPE) {
            s->compression = h[QH_COMPRESSION_TYPE];
        }
    }
    if (s->refcount_order > 6) {
        FAIL(-EINVAL, "'%s': reference count entry width too large; may not "
             "exceed 64 bits", fn);
    }
    s->refcount_bits = 1u << s->refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ull << s->refcount_bits) - 1;
    s->rb_bits = s->cluster_bits + 3 - s->refcount_order;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1u << (s->cluster_bits - 8)) - 1;
    s->coffset_mask = (1ull << s->csize_shift) - 1;

    /* Cluster 0: header, extensions, backing file name. */
    size_t c0_len = MIN((uint64_t)s->cluster_size, s->file_len);
    c0 = calloc(1, s->cluster_size);
    if (!c0) {
        FAIL(-ENOMEM, "Out of memory");
    }
    ret = bdrv_pread(s->file, 0, c0, c0_len);
    if (ret < 0) {
        FAIL(ret, "Could not read the qcow2 header of '%s': %s", fn, strerror(-ret));
    }
    if (s->version == 3 && s->header_length > c0_len) {
        FAIL(-EINVAL, "'%s': qcow2 header is truncated (file is %" PRIu64 " bytes)",
             fn, s->file_len);
    }
    uint64_t ext_end = backing_off ? backing_off : c0_len;
    if (backing_off) {
        if (backing_off > s->cluster_size || backing_len > s->cluster_size - backing_off ||
            backing_off + backing_len > c0_len) {
            FAIL(-EINVAL, "'%s': invalid backing file offset", fn);
        }
        if (backing_len > QCOW2_MAX_BACKING_NAME) {
            FAIL(-EINVAL, "'%s': backing file name too long (%" PRIu32
                 " bytes; at most %d)", fn, backing_len, QCOW2_MAX_BACKING_NAME);
        }
        if (backing_len == 0 || memchr(c0 + backing_off, 0, backing_len)) {
            FAIL(-EINVAL, "'%s': invalid backing file name", fn);
        }
    }
    if (ext_end > c0_len) {
        ext_end = c0_len;
    }
    ret = parse_extensions(s, c0, c0_len, s->header_length, ext_end, errp);
    if (ret < 0) {
        goto out_free;
    }
    if (backing_off) {
        s->backing_file = strndup((char *)c0 + backing_off, backing_len);
        if (!s->backing_file) {
            FAIL(-ENOMEM, "Out of memory");
        }
    }
    free(c0);
    c0 = NULL;

    /* Feature bits. */
    if (s->incompat & ~QCOW2_INCOMPAT_SUPPORTED) {
        ret = report_unsupported(s, s->incompat & ~QCOW2_INCOMPAT_SUPPORTED, errp);
        goto out_free;
    }
    if (s->incompat & QCOW2_INCOMPAT_EXTL2) {
        /* 16-byte entries, 32 subclusters per data cluster. */
        s->ext_l2 = true;
        s->l2e_size = 16;
        s->l2_bits = s->cluster_bits - 4;
        s->l2_size = 1u << s->l2_bits;
        s->sc_bits = s->cluster_bits - 5;
    }
    if (crypt != 0) {
        FAIL(-ENOTSUP, "'%s': encrypted qcow2 images are not supported", fn);
    }
    if (s->compression > QCOW2_COMPRESS_ZSTD ||
        (s->compression != QCOW2_COMPRESS_ZLIB && !(s->incompat & QCOW2_INCOMPAT_COMPRESSION)) ||
        (s->compression == QCOW2_COMPRESS_ZLIB && (s->incompat & QCOW2_INCOMPAT_COMPRESSION))) {
        FAIL(-EINVAL, "'%s': invalid compression type %d", fn, (int)s->compression);
    }
    if ((s->incompat & QCOW2_INCOMPAT_CORRUPT) && !bs->read_only && !s->file->read_only) {
        FAIL(-EACCES, "'%s': Image is corrupt; cannot be opened read/write", fn);
    }

    /* Sizes and tables. */
    uint64_t l2_coverage = (uint64_t)s->cluster_size << s->l2_bits;
    if (s->size > (1ull << 56) || s->size > (uint64_t)INT64_MAX) {
        FAIL(-EFBIG, "'%s': image size too big (%" PRIu64 " bytes)", fn, s->size);
    }
    uint64_t l1_needed = DIV_ROUND_UP(s->size, l2_coverage);
    if ((uint64_t)s->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
        FAIL(-EFBIG, "'%s': active L1 table too large (%" PRIu32 " entries)", fn,
             s->l1_size);
    }
    if (s->l1_size < l1_needed) {
        FAIL(-EINVAL, "'%s': L1 table is too small for the image size", fn);
    }
    if (s->l1_size && !table_ok(s, s->l1_offset, (uint64_t)s->l1_size * 8)) {
        FAIL(-EINVAL, "'%s': L1 table (offset %#" PRIx64 ", %" PRIu32
             " entries) is unaligned or lies beyond the end of the file", fn,
             s->l1_offset, s->l1_size);
    }
    if ((uint64_t)s->rt_clusters << s->cluster_bits > QCOW2_MAX_RT_BYTES) {
        FAIL(-EFBIG, "'%s': reference count table too large (%" PRIu32 " clusters)",
             fn, s->rt_clusters);
    }
    if (s->rt_clusters == 0 ||
        !table_ok(s, s->rt_offset, (uint64_t)s->rt_clusters << s->cluster_bits)) {
        FAIL(-EINVAL, "'%s': reference count table (offset %#" PRIx64 ", %" PRIu32
             " clusters) is unaligned or lies beyond the end of the file", fn,
             s->rt_offset, s->rt_clusters);
    }
    if (s->nb_snapshots > 65536) {
        FAIL(-EFBIG, "'%s': too many snapshots (%" PRIu32 ")", fn, s->nb_snapshots);
    }
    if (s->nb_snapshots && (s->snapshots_offset & 7 || s->snapshots_offset >= s->file_len)) {
        FAIL(-EINVAL, "'%s': snapshot table offset is invalid", fn);
    }
    ret = qcow2_read_snapshots(s, errp);
    if (ret < 0) {
        goto out_free;
    }
    ret = qcow2_load_table(s, s->l1_offset, s->l1_size, &s->l1);
    if (ret < 0) {
        FAIL(ret, "Could not read the L1 table of '%s': %s", fn, strerror(-ret));
    }
    s->rt_entries = (uint32_t)(((uint64_t)s->rt_clusters << s->cluster_bits) / 8);
    ret = qcow2_load_table(s, s->rt_offset, s->rt_entries, &s->rt);
    if (ret < 0) {
        FAIL(ret, "Could not read the reference count table of '%s': %s", fn,
             strerror(-ret));
    }

    /* Caches: enough L2 tables to map the whole disk, up to 32 MiB. */
    uint64_t l2_tables = MAX(l1_needed, 1);
    uint64_t l2_bytes = MIN(l2_tables << s->cluster_bits, 32ull << 20);
    unsigned l2_nb = (unsigned)MAX(l2_bytes >> s->cluster_bits, 16);
    if (qcow2_cache_init(&s->l2_cache, l2_nb, s->cluster_size) < 0 ||
        qcow2_cache_init(&s->rb_cache, 16, s->cluster_size) < 0 ||
        !(s->zero_cluster = calloc(1, s->cluster_size)) ||
        !(s->cow_buf = malloc(s->cluster_size)) ||
        !(s->cow_buf2 = malloc(s->cluster_size)) ||
        !(s->l2_batch = malloc(s->cluster_size))) {
        FAIL(-ENOMEM, "Out of memory");
    }
    s->l2_cache.file = s->rb_cache.file = s->file;
    s->free_hint = 1;
    s->pool_batch = 1u << 20;
    bs->total_size = s->size;

    if (s->incompat & QCOW2_INCOMPAT_DATA_FILE) {
        ret = open_data_file(s, errp);
        if (ret < 0) {
            goto out_free;
        }
        s->data_raw = (s->autoclear & QCOW2_AUTOCLEAR_DATA_RAW) != 0;
    }
    if (s->backing_file) {
        ret = open_backing(s, errp);
        if (ret < 0) {
            goto out_free;
        }
    }

    /* A file child that auto-read-only degraded makes us read-only too
     * (the core follows it after open): no header updates then. */
    if (!bs->read_only && !s->file->read_only) {
        s->writable = true;
        uint64_t keep = s->data_raw ? QCOW2_AUTOCLEAR_DATA_RAW : 0;
        if (s->autoclear & ~keep) {
            /* We keep no bitmaps: whatever those bits vouch for is no
             * longer guaranteed once we write. A raw data file we keep
             * raw (writes and zeroes land in it at their guest offsets). */
            uint8_t z[8];
            qcow2_put_be64(z, s->autoclear & keep);
            ret = qcow2_write_header_field(s, QH_AUTOCLEAR, z, 8);
            if (ret < 0) {
                FAIL(ret, "Could not update the header of '%s': %s", fn, strerror(-ret));
            }
            s->autoclear &= keep;
        }
        if (s->incompat & QCOW2_INCOMPAT_DIRTY) {
            struct bdrv_check_result res;
            ret = qcow2_check_refcounts(s, BDRV_FIX_LEAKS | BDRV_FIX_ERRORS, &res, errp);
            if (ret < 0) {
                error_prepend(errp, "Could not repair dirty image '%s'", fn);
                goto out_free;
            }
            ret = qcow2_set_incompat(s, s->incompat & ~QCOW2_INCOMPAT_DIRTY);
            if (ret < 0) {
                FAIL(ret, "Could not update the header of '%s': %s", fn, strerror(-ret));
            }
        }
        s->lazy = (s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS) != 0;
    }
    return 0;

out_free:
    free(c0);
    free_state(s);
    return ret;
}

static void qcow2_close(struct bdrv_node *bs)
{
    struct qcow2_state *s = bs->opaque;
    if (s->writable) {
        release_space(bs);
    }
    if (s->lazy && qcow2_mark_clean(s) < 0) {
        log_error("qcow2 '%s': could not write deferred refcounts; the image stays "
                  "dirty and is repaired at the next read-write open", bs->filename);
    }
    free_state(s);
}

static int qcow2_check(struct bdrv_node *bs, struct bdrv_check_result *res,
                       unsigned fix, struct error **errp)
{
    struct qcow2_state *s = bs->opaque;
    pthread_rwlock_wrlock(&s->io_lock);
    pthread_mutex_lock(&bs->lock);
    if (s->writable) {
        /* Reserved clusters would count as leaks: give them back first. */
        qcow2_reclaim(s);
        qcow2_pool_release(s);
    }
    int ret = qcow2_cache_writeback(&s->rb_cache);    /* lazy refcounts */
    if (ret == 0) {
        ret = qcow2_check_refcounts(s, fix, res, errp);
    } else {
        error_setg_errno(errp, -ret, "Could not write the refcounts of '%s'", bs->filename);
    }
    pthread_mutex_unlock(&bs->lock);
    pthread_rwlock_unlock(&s->io_lock);
    return ret;
}

/*
 * Shrink as qemu-img resize --shrink does: the guest clusters past the
 * new end are discarded, L2 tables wholly past it freed (their L1 entries
 * cleared first), the size field written, and the file cut after its last
 * cluster in use.
 */
static int qcow2_shrink(struct bdrv_node *bs, uint64_t size, struct error **errp)
{
    struct qcow2_state *s = bs->opaque;
    int ret = qcow2_co_pdiscard(bs, size, s->size - size);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to discard cropped clusters");
        return ret;
    }
    uint64_t l2_coverage = (uint64_t)s->cluster_size << s->l2_bits;
    uint64_t need = DIV_ROUND_UP(size, l2_coverage);
    pthread_rwlock_wrlock(&s->io_lock);
    pthread_mutex_lock(&bs->lock);
    qcow2_reclaim(s);
    for (uint64_t i = need; i < s->l1_size && ret == 0; i++) {
        uint64_t l2 = s->l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (!l2) {
            continue;
        }
        uint8_t z[8] = { 0 };
        ret = bdrv_pwrite(s->file, s->l1_offset + i * 8, z, 8, 0);
        if (ret == 0) {
            ret = bdrv_flush(s->file);
        }
        if (ret == 0) {
            s->l1[i] = 0;
            qcow2_cache_drop(&s->l2_cache, l2);
            ret = qcow2_free_clusters(s, l2, s->cluster_size);
        }
    }
    if (ret == 0) {
        uint8_t b[8];
        qcow2_put_be64(b, size);
        ret = qcow2_write_header_field(s, QH_SIZE, b, 8);
    }
    if (ret == 0) {
        s->size = size;
        bs->total_size = size;
        qcow2_pool_release(s);
        uint64_t last = qcow2_align_up(s, s->file_len) >> s->cluster_bits, rc = 0;
        while (last > 1 && qcow2_get_refcount(s, last - 1, &rc) == 0 && rc == 0) {
            last--;
        }
        if (rc && (last << s->cluster_bits) < s->file_len &&
            bdrv_truncate(s->file, last << s->cluster_bits, NULL) == 0) {
            s->file_len = last << s->cluster_bits;
        }
    }
    pthread_mutex_unlock(&bs->lock);
    pthread_rwlock_unlock(&s->io_lock);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not shrink '%s'", bs->filename);
    }
    return ret;
}

/*
 * Change the virtual size (qemu-img resize). Growing: a bigger L1 table,
 * if needed, is written in new clusters before the header points to it;
 * the size field changes last. Shrinking: qcow2_shrink.
 */
static int qcow2_truncate(struct bdrv_node *bs, uint64_t size, struct error **errp)
{
    struct qcow2_state *s = bs->opaque;
    if (size < s->size) {
        if (size % BDRV_SECTOR_SIZE) {
            error_setg(errp, "Invalid image size %" PRIu64 " (a multiple of 512 up to 2^56)",
                       size);
            return -EINVAL;
        }
        return qcow2_shrink(bs, size, errp);
    }
    if (size % BDRV_SECTOR_SIZE || size > (1ull << 56)) {
        error_setg(errp, "Invalid image size %" PRIu64 " (a multiple of 512 up to 2^56)",
                   size);
        return -EINVAL;
    }
    uint64_t l2_coverage = (uint64_t)s->cluster_size << s->l2_bits;
    uint64_t need = DIV_ROUND_UP(size, l2_coverage);
    if (need * 8 > QCOW2_MAX_L1_BYTES) {
        error_setg(errp, "Image size too big for cluster size %" PRIu32, s->cluster_size);
        return -EFBIG;
    }
    int ret = 0;
    if (s->data) {
        /* The data file holds the guest's bytes at their offsets. */
        ret = bdrv_truncate(s->data, size, errp);
        if (ret < 0) {
            return ret;
        }
    }
    pthread_rwlock_wrlock(&s->io_lock);
    pthread_mutex_lock(&bs->lock);
    if (need > s->l1_size) {
        uint64_t bytes = qcow2_align_up(s, need * 8);
        uint64_t *nl1 = calloc(1, bytes);
        uint8_t *raw = calloc(1, bytes);
        int64_t off = nl1 && raw ? qcow2_alloc_clusters(s, bytes >> s->cluster_bits) : -ENOMEM;
        if (off >= 0) {
            memcpy(nl1, s->l1, (size_t)s->l1_size * 8);
            for (uint64_t i = 0; i < need; i++) {
                qcow2_put_be64(raw + i * 8, nl1[i]);
            }
            ret = bdrv_pwrite(s->file, (uint64_t)off, raw, bytes, 0);
            if (ret == 0) {
                ret = bdrv_flush(s->file);
            }
            uint8_t h[12];
            qcow2_put_be32(h, (uint32_t)need);
            qcow2_put_be64(h + 4, (uint64_t)off);
            if (ret == 0) {
                ret = qcow2_write_header_field(s, QH_L1_SIZE, h, 12);
            }
            if (ret == 0) {
                uint64_t old = s->l1_offset, old_len = (uint64_t)s->l1_size * 8;
                free(s->l1);
                s->l1 = nl1;
                nl1 = NULL;
                s->l1_offset = (uint64_t)off;
                s->l1_size = (uint32_t)need;
                if (old_len) {
                    ret = qcow2_free_clusters(s, old, old_len);
                }
            }
        } else {
            ret = (int)off;
        }
        free(nl1);
        free(raw);
    }
    if (ret == 0) {
        uint8_t b[8];
        qcow2_put_be64(b, size);
        ret = qcow2_write_header_field(s, QH_SIZE, b, 8);
    }
    if (ret == 0) {
        s->size = size;
        bs->total_size = size;
    }
    pthread_mutex_unlock(&bs->lock);
    pthread_rwlock_unlock(&s->io_lock);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not resize '%s'", bs->filename);
    }
    return ret;
}

/* Guest data in the external data file is made durable before the core
 * flushes the metadata that maps it. */
static int qcow2_flush(struct bdrv_node *bs)
{
    struct qcow2_state *s = bs->opaque;
    int ret = s->data ? bdrv_flush(s->data) : 0;
    if (ret == 0 && s->lazy) {
        /* Deferred refcounts go out; the dirty bit stays until close. */
        pthread_mutex_lock(&bs->lock);
        ret = qcow2_cache_writeback(&s->rb_cache);
        pthread_mutex_unlock(&bs->lock);
    }
    return ret;
}

static void qcow2_get_info(struct bdrv_node *bs, struct bdrv_info *info)
{
    struct qcow2_state *s = bs->opaque;
    info->dirty = (s->incompat & QCOW2_INCOMPAT_DIRTY) != 0;
    info->cluster_size = s->cluster_size;
    info->backing_filename = s->backing_file;
    info->full_backing_filename = s->full_backing_file;
    info->backing_format = s->backing_fmt;
}

static int qcow2_reopen_prepare(struct bdrv_reopen_state *rs, struct error **errp)
{
    struct qcow2_state *s = rs->bs->opaque;
    if (!rs->read_only && (s->incompat & QCOW2_INCOMPAT_CORRUPT)) {
        error_setg(errp, "'%s': Image is corrupt; cannot be opened read/write",
                   rs->bs->filename);
        return -EACCES;
    }
    if (rs->read_only && s->writable) {
        /* Hand reserved clusters back while the file is still writable;
         * harmless if the reopen is then aborted. */
        release_space(rs->bs);
        if (s->lazy) {
            int ret = qcow2_mark_clean(s);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Could not write the refcounts of '%s'",
                                 rs->bs->filename);
                return ret;
            }
        }
    }
    s->data_reopened = false;
    if (!rs->read_only && s->data && s->data->read_only) {
        int ret = bdrv_reopen_read_only(s->data, false, errp);
        if (ret < 0) {
            return ret;
        }
        s->data_reopened = true;
    }
    return 0;
}

static void qcow2_reopen_commit(struct bdrv_reopen_state *rs)
{
    struct qcow2_state *s = rs->bs->opaque;
    pthread_mutex_lock(&rs->bs->lock);
    if (rs->read_only) {
        s->writable = false;
        s->lazy = false;
    } else {
        s->writable = true;
        s->free_hint = 1;
        s->lazy = (s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS) != 0;
    }
    pthread_mutex_unlock(&rs->bs->lock);
    if (rs->read_only && s->data && !s->data->read_only) {
        /* The image is read-only now: so is its data file. */
        bdrv_reopen_read_only(s->data, true, NULL);
    }
    s->data_reopened = false;
}

static void qcow2_reopen_abort(struct bdrv_reopen_state *rs)
{
    struct qcow2_state *s = rs->bs->opaque;
    if (s->data_reopened) {
        bdrv_reopen_read_only(s->data, true, NULL);
        s->data_reopened = false;
    }
}

const struct bdrv_ops bdrv_qcow2_ops = {
    .name = "qcow2",
    .state_size = sizeof(struct qcow2_state),
    .thread_safe = true,
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .preadv = qcow2_co_preadv,
    .preadv_nowait = qcow2_preadv_nowait,
    .aio_submit = qcow2_aio_submit,
    .pwritev = qcow2_co_pwritev,
    .pwrite_zeroes = qcow2_co_pwrite_zeroes,
    .pdiscard = qcow2_co_pdiscard,
    .block_status = qcow2_co_block_status,
    .flush = qcow2_flush,
    .reopen_prepare = qcow2_reopen_prepare,
    .reopen_commit = qcow2_reopen_commit,
    .reopen_abort = qcow2_reopen_abort,
    .get_info = qcow2_get_info,
    .create = qcow2_create,
    .truncate = qcow2_truncate,
    .make_empty = qcow2_make_empty,
    .check = qcow2_check,
    .change_backing_file = qcow2_change_backing_file,
    .amend = qcow2_amend,
    .snapshot_list = qcow2_snapshot_list,
    .snapshot_create = qcow2_snapshot_create,
    .snapshot_apply = qcow2_snapshot_apply,
    .snapshot_delete = qcow2_snapshot_delete,
};
