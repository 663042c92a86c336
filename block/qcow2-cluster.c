/*
 * block/qcow2-cluster.c — guest offset to host cluster mapping for qcow2:
 * the L2 table cache, reads (data, zero, backing, compressed), writes with
 * cluster allocation and copy-on-write, write-zeroes, discard and block
 * status. Metadata is guarded by bs->lock; reads and writes of clusters
 * that are already allocated run outside it.
 *
 * Write ordering (each step is a completed pwrite before the next starts,
 * so a process killed at any point leaves a consistent image, at worst with
 * leaked clusters): the new cluster's refcount is on disk and flushed when
 * the cluster is reserved (qcow2-refcount.c); then guest data and the
 * copy-on-write areas are written; then the L2 entry; only then is the old
 * cluster's refcount dropped. A new L2 table is written before the L1
 * entry that points to it. Against power loss the refcounts are safe (they
 * were flushed before any L2 entry can name the cluster); guest data and
 * L2 entries become durable together at the guest's next flush, as with
 * QEMU's writeback cache: an unflushed write may be lost, but a flushed
 * image is consistent.
 */
#include "block/qcow2.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

/* ------------------------------------------------------------------ */
/* Metadata cache                                                      */
/* ------------------------------------------------------------------ */

static int cache_find(struct qcow2_cache *c, uint64_t off, bool *hit);

int qcow2_cache_init(struct qcow2_cache *c, unsigned nb_tables, uint32_t table_size)
{
    unsigned sets = 1;
    while (sets * QCOW2_CACHE_WAYS < nb_tables) {
        sets <<= 1;
    }
    c->sets = sets;
    c->table_size = table_size;
    c->clock = 0;
    c->mem = calloc((size_t)sets * QCOW2_CACHE_WAYS, table_size);
    c->offset = calloc((size_t)sets * QCOW2_CACHE_WAYS, sizeof(uint64_t));
    c->stamp = calloc((size_t)sets * QCOW2_CACHE_WAYS, sizeof(uint64_t));
    c->dirty = calloc((size_t)sets * QCOW2_CACHE_WAYS, sizeof(bool));
    if (!c->mem || !c->offset || !c->stamp || !c->dirty) {
        qcow2_cache_free(c);
        return -ENOMEM;
    }
    return 0;
}

void qcow2_cache_free(struct qcow2_cache *c)
{
    free(c->mem);
    free(c->offset);
    free(c->stamp);
    free(c->dirty);
    c->mem = NULL;
    c->offset = c->stamp = NULL;
    c->dirty = NULL;
}

/* Write slot `i` back if it holds changes (lazy refcounts). */
static int slot_writeback(struct qcow2_cache *c, unsigned i)
{
    if (!c->dirty[i] || !c->offset[i]) {
        return 0;
    }
    int ret = bdrv_pwrite(c->file, c->offset[i], c->mem + (size_t)i * c->table_size,
                          c->table_size, 0);
    if (ret == 0) {
        c->dirty[i] = false;
    }
    return ret;
}

int qcow2_cache_writeback(struct qcow2_cache *c)
{
    int ret = 0;
    for (unsigned i = 0; c->dirty && i < c->sets * QCOW2_CACHE_WAYS; i++) {
        int r = slot_writeback(c, i);
        ret = ret ? ret : r;
    }
    return ret;
}

void qcow2_cache_mark_dirty(struct qcow2_cache *c, uint64_t off)
{
    bool hit;
    int i = cache_find(c, off, &hit);
    if (hit) {
        c->dirty[i] = true;
    }
}

static unsigned cache_set(const struct qcow2_cache *c, uint64_t off)
{
    uint64_t k = off / c->table_size;
    k ^= k >> 17;
    return (unsigned)(k & (c->sets - 1)) * QCOW2_CACHE_WAYS;
}

static int cache_find(struct qcow2_cache *c, uint64_t off, bool *hit)
{
    unsigned base = cache_set(c, off);
    unsigned victim = base;
    for (unsigned i = base; i < base + QCOW2_CACHE_WAYS; i++) {
        if (c->offset[i] == off) {
            *hit = true;
            return (int)i;
        }
        if (c->stamp[i] < c->stamp[victim]) {
            victim = i;
        }
    }
    *hit = false;
    return (int)victim;
}

uint8_t *qcow2_cache_get(struct qcow2_state *s, struct qcow2_cache *c,
                         uint64_t off, int *ret)
{
    bool hit;
    int i = cache_find(c, off, &hit);
    uint8_t *t = c->mem + (size_t)i * c->table_size;
    c->stamp[i] = ++c->clock;
    if (hit) {
        return t;
    }
    /* A deferred change in the victim goes to the file first. */
    int w = slot_writeback(c, (unsigned)i);
    if (w < 0) {
        *ret = w;
        return NULL;
    }
    /* The slot loses its name before its bytes change and gets the new
     * one after: what the lock-free reader of read-only images relies on. */
    __atomic_store_n(&c->offset[i], 0, __ATOMIC_RELEASE);
    c->dirty[i] = false;
    if (off + c->table_size > s->file_len) {
        *ret = -EIO;
        return NULL;
    }
    int r = bdrv_pread(s->file, off, t, c->table_size);
    if (r < 0) {
        *ret = r;
        return NULL;
    }
    __atomic_store_n(&c->offset[i], off, __ATOMIC_RELEASE);
    return t;
}

void qcow2_cache_put(struct qcow2_cache *c, uint64_t off, const void *data)
{
    bool hit;
    int i = cache_find(c, off, &hit);
    if (!hit && slot_writeback(c, (unsigned)i) < 0) {
        /* Lost: the dirty bit is set, so the next open repairs it. */
        log_error("qcow2: could not write back a refcount block at %#" PRIx64,
                  c->offset[i]);
    }
    c->dirty[i] = false;
    __atomic_store_n(&c->offset[i], 0, __ATOMIC_RELEASE);
    memcpy(c->mem + (size_t)i * c->table_size, data, c->table_size);
    __atomic_store_n(&c->offset[i], off, __ATOMIC_RELEASE);
    c->stamp[i] = ++c->clock;
}

void qcow2_cache_drop(struct qcow2_cache *c, uint64_t off)
{
    bool hit;
    int i = cache_find(c, off, &hit);
    if (hit) {
        c->offset[i] = 0;
        c->stamp[i] = 0;
        c->dirty[i] = false;
    }
}

/* ------------------------------------------------------------------ */
/* Mapping                                                             */
/* ------------------------------------------------------------------ */

enum qcow2_ctype qcow2_classify(const struct qcow2_state *s, uint64_t l2e)
{
    if (l2e & QCOW2_OFLAG_COMPRESSED) {
        return QCOW2_C_COMPRESSED;
    }
    /* With a data file, host offset 0 is a cluster (marked by COPIED). */
    bool host = (l2e & QCOW2_L2E_OFFSET_MASK) || (s->data && (l2e & QCOW2_OFLAG_COPIED));
    if ((l2e & QCOW2_OFLAG_ZERO) && !s->ext_l2) {   /* reserved in extended entries */
        return host ? QCOW2_C_ZERO_ALLOC : QCOW2_C_ZERO_PLAIN;
    }
    return host ? QCOW2_C_NORMAL : QCOW2_C_UNALLOCATED;
}

void qcow2_compressed_range(const struct qcow2_state *s, uint64_t l2e,
                            uint64_t *first, uint64_t *nb)
{
    uint64_t coff = l2e & s->coffset_mask;
    uint64_t nsec = ((l2e >> s->csize_shift) & s->csize_mask) + 1;
    uint64_t end = (coff & ~511ull) + nsec * 512;
    *first = coff >> s->cluster_bits;
    *nb = ((end - 1) >> s->cluster_bits) - *first + 1;
}

/* The L2 table for l1 index `i`, or NULL (unallocated: *ret = 0). With
 * `cached_only`, a cache miss is -EAGAIN instead of a read. */
static uint8_t *l2_table_ex(struct qcow2_state *s, uint64_t i, uint64_t *l2_off, int *ret,
                            bool cached_only)
{
    *ret = 0;
    if (i >= s->l1_size) {
        return NULL;
    }
    uint64_t off = s->l1[i] & QCOW2_L1E_OFFSET_MASK;
    if (!off) {
        return NULL;
    }
    if (off & s->cluster_mask) {
        qcow2_signal_corruption(s, "L2 table offset %#" PRIx64 " is not cluster aligned",
                                off);
        *ret = -EIO;
        return NULL;
    }
    if (off + s->cluster_size > s->file_len) {
        qcow2_signal_corruption(s, "L2 table at %#" PRIx64 " lies beyond the end of the file",
                                off);
        *ret = -EIO;
        return NULL;
    }
    *l2_off = off;
    if (cached_only) {
        bool hit;
        int slot = cache_find(&s->l2_cache, off, &hit);
        if (!hit) {
            *ret = -EAGAIN;
            return NULL;
        }
        s->l2_cache.stamp[slot] = ++s->l2_cache.clock;
        return s->l2_cache.mem + (size_t)slot * s->l2_cache.table_size;
    }
    return qcow2_cache_get(s, &s->l2_cache, off, ret);
}

uint8_t *qcow2_l2_table(struct qcow2_state *s, uint64_t i, uint64_t *l2_off, int *ret)
{
    return l2_table_ex(s, i, l2_off, ret, false);
}

/*
 * Mapping of the run starting at guest `off`: same type and, for data,
 * contiguous on the host, inside one L2 table, at most `bytes` long.
 * Caller holds bs->lock.
 */
static int get_mapping_ex(struct qcow2_state *s, uint64_t off, uint64_t bytes,
                          enum qcow2_ctype *type, uint64_t *l2e_out, uint64_t *pn,
                          bool cached_only)
{
    uint64_t in = off & s->cluster_mask;
    uint64_t l2_index = (off >> s->cluster_bits) & (s->l2_size - 1);
    uint64_t l1_index = off >> (s->cluster_bits + s->l2_bits);
    uint64_t max_cl = MIN(s->l2_size - l2_index, (in + bytes + s->cluster_mask) >> s->cluster_bits);
    uint64_t l2_off;
    int ret;

    uint8_t *t = l2_table_ex(s, l1_index, &l2_off, &ret, cached_only);
    if (!t) {
        if (ret < 0) {
            return ret;
        }
        *type = QCOW2_C_UNALLOCATED;
        *l2e_out = 0;
        *pn = MIN(bytes, (max_cl << s->cluster_bits) - in);
        return 0;
    }
    if (s->ext_l2) {
        return qcow2_get_mapping_sc(s, t, l2_index, max_cl, off, bytes, type, l2e_out, pn);
    }
    uint64_t e0 = qcow2_be64(t + l2_index * 8);
    enum qcow2_ctype t0 = qcow2_classify(s, e0);
    uint64_t h0 = e0 & QCOW2_L2E_OFFSET_MASK;
    if ((t0 == QCOW2_C_NORMAL || t0 == QCOW2_C_ZERO_ALLOC) && (h0 & s->cluster_mask)) {
        qcow2_signal_corruption(s, "cluster offset %#" PRIx64 " is not cluster aligned", h0);
        return -EIO;
    }
    uint64_t i = 1;
    if (t0 != QCOW2_C_COMPRESSED) {
        for (; i < max_cl; i++) {
            uint64_t e = qcow2_be64(t + (l2_index + i) * 8);
            if (qcow2_classify(s, e) != t0 ||
                ((e ^ e0) & QCOW2_OFLAG_COPIED) ||
                (t0 == QCOW2_C_NORMAL && (e & QCOW2_L2E_OFFSET_MASK) != h0 + (i << s->cluster_bits))) {
                break;
            }
        }
    }
    *type = t0;
    *l2e_out = e0;
    *pn = MIN(bytes, (i << s->cluster_bits) - in);
    return 0;
}

static int get_mapping(struct qcow2_state *s, uint64_t off, uint64_t bytes,
                       enum qcow2_ctype *type, uint64_t *l2e_out, uint64_t *pn)
{
    return get_mapping_ex(s, off, bytes, type, l2e_out, pn, false);
}

/* ------------------------------------------------------------------ */
/* Reads                                                               */
/* ------------------------------------------------------------------ */


/* The part [off, off+len) of an iovec array, into out[] (at most max). */
int qcow2_iov_slice(const struct iovec *iov, int iovcnt, size_t off, size_t len,
                     struct iovec *out, int max)
{
    int n = 0;
    for (int i = 0; i < iovcnt && len > 0; i++) {
        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        if (n == max) {
            return -1;
        }
        size_t l = MIN(iov[i].iov_len - off, len);
        out[n].iov_base = (char *)iov[i].iov_base + off;
        out[n].iov_len = l;
        n++;
        len -= l;
        off = 0;
    }
    return n;
}

/* Run `fn` on a sub-iovec, spilling to the heap only for huge vectors. */
struct slice {
    struct iovec stack[QCOW2_IOV_STACK];
    struct iovec *v;
    int n;
};
static int slice_make(struct slice *sl, const struct iovec *iov, int iovcnt,
                      size_t off, size_t len)
{
    sl->v = sl->stack;
    sl->n = qcow2_iov_slice(iov, iovcnt, off, len, sl->stack, QCOW2_IOV_STACK);
    if (sl->n < 0) {
        sl->v = malloc(sizeof(struct iovec) * (size_t)iovcnt);
        if (!sl->v) {
            return -ENOMEM;
        }
        sl->n = qcow2_iov_slice(iov, iovcnt, off, len, sl->v, iovcnt);
    }
    return 0;
}
static void slice_done(struct slice *sl)
{
    if (sl->v != sl->stack) {
        free(sl->v);
    }
}

static int decompress(struct qcow2_state *s, const uint8_t *in, size_t in_len,
                      uint8_t *out)
{
    if (s->compression == QCOW2_COMPRESS_ZLIB) {
        z_stream z;
        memset(&z, 0, sizeof(z));
        if (inflateInit2(&z, -12) != Z_OK) {
            return -ENOMEM;
        }
        z.next_in = (Bytef *)in;
        z.avail_in = (uInt)in_len;
        z.next_out = out;
        z.avail_out = s->cluster_size;
        int r = inflate(&z, Z_FINISH);
        inflateEnd(&z);
        if ((r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK) && z.avail_out == 0) {
            return 0;
        }
        return -EIO;
    }
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!d) {
        return -ENOMEM;
    }
    ZSTD_inBuffer ib = { in, in_len, 0 };
    ZSTD_outBuffer ob = { out, s->cluster_size, 0 };
    int ret = 0;
    while (ob.pos < ob.size) {
        size_t before_in = ib.pos, before_out = ob.pos;
        size_t r = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(r)) {
            ret = -EIO;
            break;
        }
        if (ib.pos == before_in && ob.pos == before_out) {
            ret = -EIO;     /* input exhausted before the cluster was full */
            break;
        }
    }
    ZSTD_freeDCtx(d);
    return ret;
}

/* The whole guest cluster behind compressed entry `l2e`, into `out`. */
int qcow2_read_compressed(struct qcow2_state *s, uint64_t l2e, uint8_t *out)
{
    uint64_t coff = l2e & s->coffset_mask;
    uint64_t nsec = ((l2e >> s->csize_shift) & s->csize_mask) + 1;
    uint64_t clen = nsec * 512 - (coff & 511);
    uint64_t flen = s->file_len;
    if (coff >= flen) {
        log_error("qcow2 '%s': compressed cluster at %#" PRIx64 " lies beyond the "
                  "end of the file", s->bs->filename, coff);
        return -EIO;
    }
    clen = MIN(clen, flen - coff);
    uint8_t *buf = malloc(clen);
    if (!buf) {
        return -ENOMEM;
    }
    int ret = bdrv_pread(s->file, coff, buf, clen);
    if (ret == 0) {
        ret = decompress(s, buf, clen, out);
        if (ret == -EIO) {
            log_error("qcow2 '%s': cannot decompress cluster at %#" PRIx64,
                      s->bs->filename, coff);
        }
    }
    free(buf);
    return ret;
}

/* Guest bytes [off, off+len) from the backing chain; zeroes past its end. */
int qcow2_read_backing(struct bdrv_node *bs, uint64_t off, uint64_t len,
                        const struct iovec *iov, int iovcnt, size_t iov_off)
{
    uint64_t have = 0;
    if (bs->backing) {
        int64_t blen = bdrv_getlength(bs->backing);
        if (blen < 0) {
            return (int)blen;
        }
        if (off < (uint64_t)blen) {
            have = MIN(len, (uint64_t)blen - off);
        }
    }
    if (have) {
        struct slice sl;
        int ret = slice_make(&sl, iov, iovcnt, iov_off, have);
        if (ret < 0) {
            return ret;
        }
        ret = bdrv_preadv(bs->backing, off, sl.v, sl.n);
        slice_done(&sl);
        if (ret < 0) {
            return ret;
        }
    }
    if (have < len) {
        iov_memset(iov, iovcnt, iov_off + have, 0, len - have);
    }
    return 0;
}

static int read_host(struct qcow2_state *s, uint64_t host, uint64_t n,
                     const struct iovec *iov, int iovcnt, size_t iov_off, bool nowait)
{
    struct bdrv_node *node = qcow2_data_node(s);
    if (!s->data && host + n > s->file_len) {
        log_error("qcow2 '%s': data cluster at %#" PRIx64 " lies beyond the end of "
                  "the file", s->bs->filename, host);
        return -EIO;
    }
    if (iov_off == 0 && n == iov_size(iov, iovcnt)) {
        /* The whole request in one run: no slicing. */
        return nowait ? bdrv_preadv_nowait(node, host, iov, iovcnt)
                      : bdrv_preadv(node, host, iov, iovcnt);
    }
    struct slice sl;
    int ret = slice_make(&sl, iov, iovcnt, iov_off, n);
    if (ret < 0) {
        return ret;
    }
    ret = nowait ? bdrv_preadv_nowait(node, host, sl.v, sl.n)
                 : bdrv_preadv(node, host, sl.v, sl.n);
    slice_done(&sl);
    return ret;
}

int qcow2_co_preadv(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                    const struct iovec *iov, int iovcnt, unsigned flags)
{
    struct qcow2_state *s = bs->opaque;
    uint64_t done = 0;
    uint8_t *cbuf = NULL;
    int ret = 0;

    bool lock = s->writable;    /* a read-only image frees nothing */
    if (lock) {
        pthread_rwlock_rdlock(&s->io_lock);
    }
    while (done < bytes) {
        uint64_t cur = offset + done, n, l2e;
        enum qcow2_ctype type;

        if (cur >= s->size) {   /* the aligned tail past the end */
            iov_memset(iov, iovcnt, done, 0, bytes - done);
            break;
        }
        pthread_mutex_lock(&bs->lock);
        ret = get_mapping(s, cur, MIN(bytes - done, s->size - cur), &type, &l2e, &n);
        pthread_mutex_unlock(&bs->lock);
        if (ret < 0) {
            break;
        }
        switch (type) {
        case QCOW2_C_NORMAL:
            ret = read_host(s, (l2e & QCOW2_L2E_OFFSET_MASK) + (cur & s->cluster_mask),
                            n, iov, iovcnt, done, false);
            break;
        case QCOW2_C_ZERO_PLAIN:
        case QCOW2_C_ZERO_ALLOC:
            iov_memset(iov, iovcnt, done, 0, n);
            break;
        case QCOW2_C_UNALLOCATED:
            ret = qcow2_read_backing(bs, cur, n, iov, iovcnt, done);
            break;
        case QCOW2_C_COMPRESSED:
            if (!cbuf && !(cbuf = malloc(s->cluster_size))) {
                ret = -ENOMEM;
                break;
            }
            ret = qcow2_read_compressed(s, l2e, cbuf);
            if (ret == 0) {
                iov_from_buf(iov, iovcnt, done, cbuf + (cur & s->cluster_mask), n);
            }
            break;
        }
        if (ret < 0) {
            break;
        }
        done += n;
    }
    if (lock) {
        pthread_rwlock_unlock(&s->io_lock);
    }
    free(cbuf);
    return ret;
}

static int preadv_nowait_locked(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                                const struct iovec *iov, int iovcnt);

/*
 * Mapping of the cluster at `off` in a read-only image without taking
 * bs->lock. Its tables never change, so a cache slot that names the
 * table's offset both before and after the entry is read held that
 * table's bytes (a refill clears the name first, and a refill with the
 * same table brings the same bytes). A miss, or anything odd, is -EAGAIN:
 * the locked path then does the work and reports errors.
 */
static int lookup_ro_nolock(struct qcow2_state *s, uint64_t off, uint64_t bytes,
                            enum qcow2_ctype *type, uint64_t *l2e_out, uint64_t *pn)
{
    uint64_t in = off & s->cluster_mask;
    uint64_t l1_index = off >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_index = (off >> s->cluster_bits) & (s->l2_size - 1);
    if (s->ext_l2) {
        return -EAGAIN;     /* subclusters: the locked path */
    }
    *pn = MIN(bytes, s->cluster_size - in);
    uint64_t l2_off = l1_index < s->l1_size ? s->l1[l1_index] & QCOW2_L1E_OFFSET_MASK : 0;
    if (!l2_off) {
        *type = QCOW2_C_UNALLOCATED;
        *l2e_out = 0;
        return 0;
    }
    struct qcow2_cache *c = &s->l2_cache;
    unsigned base = cache_set(c, l2_off);
    for (unsigned i = base; i < base + QCOW2_CACHE_WAYS; i++) {
        if (__atomic_load_n(&c->offset[i], __ATOMIC_ACQUIRE) != l2_off) {
            continue;
        }
        const uint64_t *p = (const uint64_t *)(c->mem + (size_t)i * c->table_size) + l2_index;
        uint64_t e = __builtin_bswap64(__atomic_load_n(p, __ATOMIC_RELAXED));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&c->offset[i], __ATOMIC_RELAXED) != l2_off) {
            return -EAGAIN;
        }
        *type = qcow2_classify(s, e);
        if ((*type == QCOW2_C_NORMAL || *type == QCOW2_C_ZERO_ALLOC) &&
            (e & QCOW2_L2E_OFFSET_MASK & s->cluster_mask)) {
            return -EAGAIN;
        }
        *l2e_out = e;
        return 0;
    }
    return -EAGAIN;
}

int qcow2_preadv_nowait(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                        const struct iovec *iov, int iovcnt)
{
    struct qcow2_state *s = bs->opaque;
    /* A read-only image frees nothing: no need for io_lock. */
    bool lock = s->writable;
    if (lock && pthread_rwlock_tryrdlock(&s->io_lock) != 0) {
        return -EAGAIN;
    }
    int ret = preadv_nowait_locked(bs, offset, bytes, iov, iovcnt);
    if (lock) {
        pthread_rwlock_unlock(&s->io_lock);
    }
    return ret;
}

/*
 * Asynchronous read of a read-only image straight to the file child
 * (io_uring there): only a request inside one data cluster whose L2 table
 * is cached. Nothing in a read-only image is ever freed, so no lock has to
 * be held until completion. Anything else: -ENOTSUP (worker path).
 */
int qcow2_aio_submit(struct bdrv_node *bs, struct bdrv_aio *aio)
{
    struct qcow2_state *s = bs->opaque;
    enum qcow2_ctype type;
    uint64_t l2e, n;
    if (aio->write || s->writable || aio->offset >= s->size ||
        lookup_ro_nolock(s, aio->offset, aio->bytes, &type, &l2e, &n) < 0 ||
        type != QCOW2_C_NORMAL || n != aio->bytes) {
        return -ENOTSUP;
    }
    uint64_t host = (l2e & QCOW2_L2E_OFFSET_MASK) + (aio->offset & s->cluster_mask);
    if (!s->data && host + n > s->file_len) {
        return -ENOTSUP;    /* the synchronous path reports it */
    }
    uint64_t offset = aio->offset;
    aio->offset = host;
    int ret = bdrv_aio_submit(qcow2_data_node(s), aio);
    if (ret < 0) {
        aio->offset = offset;
    }
    return ret;
}

static int preadv_nowait_locked(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                                const struct iovec *iov, int iovcnt)
{
    struct qcow2_state *s = bs->opaque;
    uint64_t done = 0;

    while (done < bytes) {
        uint64_t cur = offset + done, n, l2e;
        enum qcow2_ctype type;
        int ret;

        if (cur >= s->size) {
            iov_memset(iov, iovcnt, done, 0, bytes - done);
            break;
        }
        if (!s->writable) {
            ret = lookup_ro_nolock(s, cur, MIN(bytes - done, s->size - cur), &type, &l2e, &n);
        } else {
            if (pthread_mutex_trylock(&bs->lock) != 0) {
                return -EAGAIN;
            }
            /* Only cache hits: a miss would read the file under the lock. */
            ret = get_mapping_ex(s, cur, MIN(bytes - done, s->size - cur), &type, &l2e,
                                 &n, true);
            pthread_mutex_unlock(&bs->lock);
        }
        if (ret < 0) {
            return ret;
        }
        switch (type) {
        case QCOW2_C_NORMAL:
            ret = read_host(s, (l2e & QCOW2_L2E_OFFSET_MASK) + (cur & s->cluster_mask),
                            n, iov, iovcnt, done, true);
            break;
        case QCOW2_C_ZERO_PLAIN:
        case QCOW2_C_ZERO_ALLOC:
            iov_memset(iov, iovcnt, done, 0, n);
            break;
        case QCOW2_C_UNALLOCATED:
            if (bs->backing) {
                return -EAGAIN;
            }
            iov_memset(iov, iovcnt, done, 0, n);
            break;
        default:
            return -EAGAIN;
        }
        if (ret < 0) {
            return ret;
        }
        done += n;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Writes                                                              */
/* ------------------------------------------------------------------ */

/* Write L2 entry `index` (and with extended entries its bitmap `bm`). */
int qcow2_write_l2_entry_bm(struct qcow2_state *s, uint64_t l2_off, uint8_t *table,
                             uint64_t index, uint64_t e, uint64_t bm)
{
    uint8_t b[16];
    qcow2_put_be64(b, e);
    qcow2_put_be64(b + 8, bm);
    int ret = bdrv_pwrite(s->file, l2_off + index * s->l2e_size, b, s->l2e_size, 0);
    if (ret == 0) {
        memcpy(table + index * s->l2e_size, b, s->l2e_size);
    } else {
        qcow2_cache_drop(&s->l2_cache, l2_off);
    }
    return ret;
}

static int write_l2_entry(struct qcow2_state *s, uint64_t l2_off, uint8_t *table,
                          uint64_t index, uint64_t e)
{
    return qcow2_write_l2_entry_bm(s, l2_off, table, index, e,
                             s->ext_l2 && e ? QCOW2_BM_ALLOC_ALL : 0);
}

/* Drop this image's reference to the host cluster(s) behind `l2e`. */
static int free_l2e(struct qcow2_state *s, uint64_t l2e)
{
    if (s->data && qcow2_classify(s, l2e) != QCOW2_C_COMPRESSED) {
        return 0;   /* the data file's clusters are not refcounted */
    }
    switch (qcow2_classify(s, l2e)) {
    case QCOW2_C_NORMAL:
    case QCOW2_C_ZERO_ALLOC:
        return qcow2_free_clusters(s, l2e & QCOW2_L2E_OFFSET_MASK, s->cluster_size);
    case QCOW2_C_COMPRESSED: {
        uint64_t first, nb;
        qcow2_compressed_range(s, l2e, &first, &nb);
        return qcow2_free_clusters(s, first << s->cluster_bits, nb << s->cluster_bits);
    }
    default:
        return 0;
    }
}

/* Free the cluster(s) behind a replaced entry later, once no transfer
 * holding io_lock shared can still use them. */
int qcow2_add_pending(struct qcow2_state *s, uint64_t l2e)
{
    if (s->nb_pending == s->cap_pending) {
        unsigned cap = s->cap_pending ? s->cap_pending * 2 : 64;
        uint64_t *p = realloc(s->pending, cap * sizeof(*p));
        if (!p) {
            return 0;   /* leaked, not lost: refcount stays too high */
        }
        s->pending = p;
        s->cap_pending = cap;
    }
    s->pending[s->nb_pending++] = l2e;
    return 0;
}

int qcow2_l2_fix_copied(struct qcow2_state *s, uint8_t *t)
{
    int changed = 0;
    for (uint32_t j = 0; j < s->l2_size; j++) {
        uint64_t e = qcow2_l2_get(s, t, j), rc;
        enum qcow2_ctype ty = qcow2_classify(s, e);
        if (ty != QCOW2_C_NORMAL && ty != QCOW2_C_ZERO_ALLOC) {
            continue;
        }
        int ret = qcow2_get_refcount(s, (e & QCOW2_L2E_OFFSET_MASK) >> s->cluster_bits, &rc);
        if (ret < 0) {
            return ret;
        }
        uint64_t ne = (e & ~QCOW2_OFLAG_COPIED) | (rc == 1 ? QCOW2_OFLAG_COPIED : 0);
        if (ne != e) {
            qcow2_put_be64(t + (uint64_t)j * s->l2e_size, ne);
            changed = 1;
        }
    }
    return changed;
}

/*
 * A writable (COPIED) L2 table for l1 index `i`: allocates a new one or
 * copies a shared one, then points the L1 entry at it. Caller holds lock.
 */
uint8_t *qcow2_l2_table_for_write(struct qcow2_state *s, uint64_t i,
                                   uint64_t *l2_off, int *ret)
{
    uint64_t l1e = s->l1[i];
    uint64_t old = l1e & QCOW2_L1E_OFFSET_MASK;
    if (old && (l1e & QCOW2_OFLAG_COPIED)) {
        return qcow2_l2_table(s, i, l2_off, ret);
    }
    uint8_t *src = s->zero_cluster;
    if (old) {
        uint64_t o;
        src = qcow2_l2_table(s, i, &o, ret);
        if (!src) {
            return NULL;
        }
        memcpy(s->cow_buf, src, s->cluster_size);
        src = s->cow_buf;
        /* The copy is ours alone: its COPIED flags must say which of its
         * clusters are (a shared table's flags need not be accurate). */
        int r = s->data ? 0 : qcow2_l2_fix_copied(s, s->cow_buf);
        if (r < 0) {
            *ret = r;
            return NULL;
        }
    }
    bool fresh;
    int64_t n = qcow2_alloc_cluster(s, &fresh);
    if (n < 0) {
        *ret = (int)n;
        return NULL;
    }
    if (!(fresh && src == s->zero_cluster)) {
        *ret = bdrv_pwrite(s->file, (uint64_t)n, src, s->cluster_size, 0);
        if (*ret < 0) {
            return NULL;
        }
    }
    qcow2_cache_put(&s->l2_cache, (uint64_t)n, src);
    uint8_t b[8];
    qcow2_put_be64(b, (uint64_t)n | QCOW2_OFLAG_COPIED);
    *ret = bdrv_pwrite(s->file, s->l1_offset + i * 8, b, 8, 0);
    if (*ret < 0) {
        return NULL;
    }
    s->l1[i] = (uint64_t)n | QCOW2_OFLAG_COPIED;
    if (old) {
        qcow2_cache_drop(&s->l2_cache, old);
        *ret = qcow2_free_clusters(s, old, s->cluster_size);
        if (*ret < 0) {
            return NULL;
        }
    }
    *l2_off = (uint64_t)n;
    return qcow2_cache_get(s, &s->l2_cache, (uint64_t)n, ret);
}

static const uint8_t *cow_source(struct bdrv_node *bs, enum qcow2_ctype type,
                                 uint64_t start, uint8_t *buf, int *ret);

/*
 * External data file: write [cur, cur+n) (inside one cluster) at its
 * guest offset there; a cluster not mapped yet is completed from what it
 * read as before (backing file or zeroes), then mapped. Caller holds the
 * lock.
 */
static int data_write(struct bdrv_node *bs, uint64_t cur, uint64_t n,
                      const struct iovec *iov, int iovcnt, size_t iov_off)
{
    struct qcow2_state *s = bs->opaque;
    uint64_t l1_index = cur >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_index = (cur >> s->cluster_bits) & (s->l2_size - 1);
    uint64_t start = cur & ~s->cluster_mask;
    uint64_t cend = MIN(start + s->cluster_size, s->size);
    uint64_t head = cur - start, tail = cend > cur + n ? cend - cur - n : 0;
    uint64_t l2_off;
    int ret;

    uint8_t *t = qcow2_l2_table_for_write(s, l1_index, &l2_off, &ret);
    if (!t) {
        return ret;
    }
    uint64_t e = qcow2_l2_get(s, t, l2_index);
    enum qcow2_ctype type = qcow2_classify(s, e);
    if (type == QCOW2_C_COMPRESSED) {
        qcow2_signal_corruption(s, "compressed cluster in an image with a data file");
        return -EIO;
    }
    if ((e & QCOW2_L2E_OFFSET_MASK) && (e & QCOW2_L2E_OFFSET_MASK) != start) {
        qcow2_signal_corruption(s, "cluster at %#" PRIx64 " maps to %#" PRIx64 " in the "
                                "data file", start, (uint64_t)(e & QCOW2_L2E_OFFSET_MASK));
        return -EIO;
    }
    const uint8_t *fill = s->zero_cluster;
    if (type == QCOW2_C_NORMAL) {
        head = tail = 0;            /* mapped already: in place */
    } else if (type == QCOW2_C_UNALLOCATED && (head || tail)) {
        const uint8_t *src = cow_source(bs, type, start, s->cow_buf, &ret);
        if (ret < 0) {
            return ret;
        }
        fill = src ? src : s->zero_cluster;
    }
    struct iovec v[QCOW2_IOV_STACK + 2];
    int cnt = 0;
    if (head) {
        v[cnt++] = (struct iovec){ (void *)fill, head };
    }
    int m = qcow2_iov_slice(iov, iovcnt, iov_off, n, v + cnt, QCOW2_IOV_STACK);
    if (m < 0) {
        uint8_t *g = malloc(head + n + tail);
        if (!g) {
            return -ENOMEM;
        }
        memcpy(g, fill, head);
        iov_to_buf(iov, iovcnt, iov_off, g + head, n);
        memcpy(g + head + n, fill + head + n, tail);
        ret = bdrv_pwrite(s->data, cur - head, g, head + n + tail, 0);
        free(g);
    } else {
        cnt += m;
        if (tail) {
            v[cnt++] = (struct iovec){ (void *)(fill + head + n), tail };
        }
        ret = bdrv_pwritev(s->data, cur - head, v, cnt, 0);
    }
    if (ret < 0 || e == (start | QCOW2_OFLAG_COPIED)) {
        return ret;
    }
    return write_l2_entry(s, l2_off, t, l2_index, start | QCOW2_OFLAG_COPIED);
}

/*
 * Write [cur, cur+n) (inside one cluster) into a newly allocated cluster,
 * filling the rest of it from what the guest saw there before. Caller
 * holds the lock.
 */
static int alloc_write(struct bdrv_node *bs, uint64_t cur, uint64_t n,
                       const struct iovec *iov, int iovcnt, size_t iov_off)
{
    struct qcow2_state *s = bs->opaque;
    uint64_t l1_index = cur >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_index = (cur >> s->cluster_bits) & (s->l2_size - 1);
    uint64_t start = cur & ~s->cluster_mask;
    uint64_t head = cur - start, tail = s->cluster_size - head - n;
    uint64_t l2_off;
    int ret;

    if (s->data) {
        return data_write(bs, cur, n, iov, iovcnt, iov_off);
    }
    uint8_t *t = qcow2_l2_table_for_write(s, l1_index, &l2_off, &ret);
    if (!t) {
        return ret;
    }
    uint64_t l2e = qcow2_be64(t + l2_index * 8);
    enum qcow2_ctype type = qcow2_classify(s, l2e);
    uint64_t rc = 0;
    if (type == QCOW2_C_NORMAL && (l2e & QCOW2_OFLAG_COPIED) &&
        qcow2_get_refcount(s, (l2e & QCOW2_L2E_OFFSET_MASK) >> s->cluster_bits, &rc) == 0 &&
        rc == 1) {
        /* Ours alone after all (its L2 table was shared): in place. */
        struct slice sl;
        ret = slice_make(&sl, iov, iovcnt, iov_off, n);
        if (ret == 0) {
            ret = bdrv_pwritev(s->file, (l2e & QCOW2_L2E_OFFSET_MASK) + head,
                               sl.v, sl.n, 0);
            slice_done(&sl);
        }
        return ret;
    }
    bool reuse = type == QCOW2_C_ZERO_ALLOC && (l2e & QCOW2_OFLAG_COPIED) &&
                 qcow2_get_refcount(s, (l2e & QCOW2_L2E_OFFSET_MASK) >> s->cluster_bits,
                                    &rc) == 0 && rc == 1;
    bool fresh = false;
    uint64_t host;
    if (reuse) {
        host = l2e & QCOW2_L2E_OFFSET_MASK;
    } else {
        int64_t h = qcow2_alloc_cluster(s, &fresh);
        if (h < 0) {
            return (int)h;
        }
        host = (uint64_t)h;
    }

    /* What the rest of the cluster held. */
    const uint8_t *fill = s->zero_cluster;
    bool fill_zero = true;
    if (head || tail) {
        switch (type) {
        case QCOW2_C_UNALLOCATED:
            if (bs->backing) {
                struct iovec v = { s->cow_buf, s->cluster_size };
                ret = qcow2_read_backing(bs, start, MIN(s->cluster_size, s->size - start),
                                   &v, 1, 0);
                if (ret < 0) {
                    return ret;
                }
                if (s->size - start < s->cluster_size) {
                    memset(s->cow_buf + (s->size - start), 0,
                           s->cluster_size - (s->size - start));
                }
                fill = s->cow_buf;
                fill_zero = false;
            }
            break;
        case QCOW2_C_NORMAL:
            ret = bdrv_pread(s->file, l2e & QCOW2_L2E_OFFSET_MASK, s->cow_buf,
                             s->cluster_size);
            if (ret < 0) {
                return ret;
            }
            fill = s->cow_buf;
            fill_zero = false;
            break;
        case QCOW2_C_COMPRESSED:
            ret = qcow2_read_compressed(s, l2e, s->cow_buf);
            if (ret < 0) {
                return ret;
            }
            fill = s->cow_buf;
            fill_zero = false;
            break;
        default:
            break;
        }
    }

    /* Data (and copy-on-write areas) first ... */
    struct iovec v[QCOW2_IOV_STACK + 2];
    int cnt = 0;
    uint64_t wstart = host + head;
    if (head && !(fill_zero && fresh)) {
        v[cnt].iov_base = (void *)fill;
        v[cnt].iov_len = head;
        cnt++;
        wstart = host;
    }
    int m = qcow2_iov_slice(iov, iovcnt, iov_off, n, v + cnt, QCOW2_IOV_STACK);
    if (m < 0) {
        /* Too many pieces: gather them into the copy buffer's image. */
        uint8_t *b = malloc(s->cluster_size);
        if (!b) {
            return -ENOMEM;
        }
        memcpy(b, fill, s->cluster_size);
        iov_to_buf(iov, iovcnt, iov_off, b + head, n);
        ret = bdrv_pwrite(s->file, host, b, s->cluster_size, 0);
        free(b);
    } else {
        cnt += m;
        if (tail && !(fill_zero && fresh)) {
            v[cnt].iov_base = (void *)(fill + head + n);
            v[cnt].iov_len = tail;
            cnt++;
        }
        ret = bdrv_pwritev(s->file, wstart, v, cnt, 0);
    }
    if (ret < 0) {
        return ret;
    }
    /* ... then the L2 entry ... */
    ret = write_l2_entry(s, l2_off, t, l2_index, host | QCOW2_OFLAG_COPIED);
    if (ret < 0) {
        return ret;
    }
    /* ... and only then the old cluster's reference goes (later: a read
     * holding io_lock shared may still be using it). */
    if (!reuse && (type == QCOW2_C_NORMAL || type == QCOW2_C_COMPRESSED ||
                   type == QCOW2_C_ZERO_ALLOC)) {
        return qcow2_add_pending(s, l2e);
    }
    return 0;
}

/*
 * What an unallocated or plain-zero cluster at guest `start` reads as,
 * for copy-on-write: NULL for zeroes, else `buf` filled from the backing
 * chain. Caller holds the lock.
 */
static const uint8_t *cow_source(struct bdrv_node *bs, enum qcow2_ctype type,
                                 uint64_t start, uint8_t *buf, int *ret)
{
    struct qcow2_state *s = bs->opaque;
    *ret = 0;
    if (type != QCOW2_C_UNALLOCATED || !bs->backing) {
        return NULL;
    }
    uint64_t have = MIN(s->cluster_size, s->size - start);
    struct iovec v = { buf, have };
    *ret = qcow2_read_backing(bs, start, have, &v, 1, 0);
    if (have < s->cluster_size) {
        memset(buf + have, 0, s->cluster_size - have);
    }
    return *ret < 0 ? NULL : buf;
}

/*
 * Allocating write over several clusters that map nothing yet
 * (unallocated or plain zero, so nothing is freed): contiguous clusters
 * from the pool, one write for the data with the copy-on-write head and
 * tail, then one write for the L2 entries. Returns bytes written (at
 * least one cluster's worth, at most `n`), 0 when the run is not such a
 * case (use alloc_write), or -errno. Caller holds the lock.
 */
static int64_t alloc_write_run(struct bdrv_node *bs, uint64_t cur, uint64_t n,
                               const struct iovec *iov, int iovcnt, size_t iov_off)
{
    struct qcow2_state *s = bs->opaque;
    uint64_t l1_index = cur >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_index = (cur >> s->cluster_bits) & (s->l2_size - 1);
    uint64_t start = cur & ~s->cluster_mask, head = cur - start;
    uint64_t ncl = (head + n + s->cluster_mask) >> s->cluster_bits;
    uint64_t l2_off;
    int ret;

    ncl = MIN(ncl, s->l2_size - l2_index);
    if (ncl < 2 || s->ext_l2 || s->data) {
        return 0;
    }
    uint8_t *t = qcow2_l2_table_for_write(s, l1_index, &l2_off, &ret);
    if (!t) {
        return ret;
    }
    uint64_t k = 0;
    enum qcow2_ctype first = QCOW2_C_UNALLOCATED, last = QCOW2_C_UNALLOCATED;
    for (; k < ncl; k++) {
        enum qcow2_ctype ty = qcow2_classify(s, qcow2_be64(t + (l2_index + k) * 8));
        if (ty != QCOW2_C_UNALLOCATED && ty != QCOW2_C_ZERO_PLAIN) {
            break;
        }
        if (k == 0) {
            first = ty;
        }
        last = ty;
    }
    if (k < 2) {
        return 0;
    }
    if (s->pool_next == s->pool_end) {
        bool fresh;
        int64_t h = qcow2_alloc_cluster(s, &fresh);     /* refills the pool */
        if (h < 0) {
            return h;
        }
        s->pool_next--;     /* give it back: it starts the run below */
    }
    k = MIN(k, s->pool_end - s->pool_next);
    last = qcow2_classify(s, qcow2_be64(t + (l2_index + k - 1) * 8));
    uint64_t host = s->pool_next << s->cluster_bits;
    bool fresh = s->pool_fresh;
    s->pool_next += k;

    uint64_t wlen = MIN(head + n, k << s->cluster_bits) - head;
    uint64_t tail = (k << s->cluster_bits) - head - wlen;
    const uint8_t *hsrc = NULL, *tsrc = NULL;
    if (head) {
        hsrc = cow_source(bs, first, start, s->cow_buf, &ret);
        if (ret < 0) {
            return ret;
        }
    }
    if (tail) {
        uint64_t tstart = start + ((k - 1) << s->cluster_bits);
        tsrc = cow_source(bs, last, tstart, s->cow_buf2, &ret);
        if (ret < 0) {
            return ret;
        }
    }
    struct iovec v[QCOW2_IOV_STACK + 2];
    int cnt = 0;
    uint64_t wstart = host + head;
    if (head && (hsrc || !fresh)) {
        v[cnt++] = (struct iovec){ (void *)(hsrc ? hsrc : s->zero_cluster), head };
        wstart = host;
    }
    int m = qcow2_iov_slice(iov, iovcnt, iov_off, wlen, v + cnt, QCOW2_IOV_STACK);
    if (m < 0) {
        s->pool_next -= k;  /* too many pieces: one cluster at a time */
        return 0;
    }
    cnt += m;
    if (tail && (tsrc || !fresh)) {
        uint64_t in_last = s->cluster_size - tail;
        v[cnt++] = (struct iovec){ (void *)((tsrc ? tsrc : s->zero_cluster) + in_last), tail };
    }
    ret = bdrv_pwritev(s->file, wstart, v, cnt, 0);
    if (ret < 0) {
        return ret;
    }
    for (uint64_t i = 0; i < k; i++) {
        qcow2_put_be64(s->l2_batch + i * 8, (host + (i << s->cluster_bits)) | QCOW2_OFLAG_COPIED);
    }
    ret = bdrv_pwrite(s->file, l2_off + l2_index * 8, s->l2_batch, k * 8, 0);
    if (ret < 0) {
        qcow2_cache_drop(&s->l2_cache, l2_off);
        return ret;
    }
    memcpy(t + l2_index * 8, s->l2_batch, k * 8);
    return (int64_t)wlen;
}

void qcow2_reclaim(struct qcow2_state *s)
{
    for (unsigned i = 0; i < s->nb_pending; i++) {
        if (free_l2e(s, s->pending[i]) < 0) {
            break;      /* the rest stay allocated: leaks */
        }
    }
    s->nb_pending = 0;
}

/* Free pending clusters if nothing else is using io_lock right now. */
static void try_reclaim(struct bdrv_node *bs)
{
    struct qcow2_state *s = bs->opaque;
    if (pthread_rwlock_trywrlock(&s->io_lock) == 0) {
        pthread_mutex_lock(&bs->lock);
        qcow2_reclaim(s);
        pthread_mutex_unlock(&bs->lock);
        pthread_rwlock_unlock(&s->io_lock);
    }
}

int qcow2_co_pwritev(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                     const struct iovec *iov, int iovcnt, unsigned flags)
{
    struct qcow2_state *s = bs->opaque;
    uint64_t done = 0;
    int ret = 0;

    if (s->incompat & QCOW2_INCOMPAT_CORRUPT) {
        return -EIO;    /* marked corrupt while open: writes stop */
    }
    if (offset >= s->size) {
        return 0;       /* the aligned tail of an unaligned size */
    }
    bytes = MIN(bytes, s->size - offset);
    uint64_t keep = s->data_raw ? QCOW2_AUTOCLEAR_DATA_RAW : 0;
    if (s->autoclear & ~keep) {
        /* Reopened read-write: bitmaps are ours no more (a raw data file
         * stays raw). */
        pthread_mutex_lock(&bs->lock);
        uint8_t z[8];
        qcow2_put_be64(z, s->autoclear & keep);
        ret = (s->autoclear & ~keep) ? qcow2_write_header_field(s, QH_AUTOCLEAR, z, 8) : 0;
        if (ret == 0) {
            s->autoclear &= keep;
        }
        pthread_mutex_unlock(&bs->lock);
        if (ret < 0) {
            return ret;
        }
    }
    pthread_rwlock_rdlock(&s->io_lock);
    while (done < bytes) {
        uint64_t cur = offset + done, n, l2e;
        enum qcow2_ctype type;

        pthread_mutex_lock(&bs->lock);
        ret = get_mapping(s, cur, bytes - done, &type, &l2e, &n);
        /* In place only when neither the cluster nor its L2 table is
         * shared (both COPIED); anything else goes through copy-on-write. */
        if (ret == 0 && type == QCOW2_C_NORMAL && (l2e & QCOW2_OFLAG_COPIED) &&
            (s->l1[cur >> (s->cluster_bits + s->l2_bits)] & QCOW2_OFLAG_COPIED)) {
            pthread_mutex_unlock(&bs->lock);
            struct slice sl;
            ret = slice_make(&sl, iov, iovcnt, done, n);
            if (ret == 0) {
                ret = bdrv_pwritev(qcow2_data_node(s), (l2e & QCOW2_L2E_OFFSET_MASK) +
                                   (cur & s->cluster_mask), sl.v, sl.n, 0);
                slice_done(&sl);
            }
        } else {
            bool batched = false;
            if (ret == 0 && (type == QCOW2_C_UNALLOCATED || type == QCOW2_C_ZERO_PLAIN)) {
                int64_t w = alloc_write_run(bs, cur, n, iov, iovcnt, done);
                if (w < 0) {
                    ret = (int)w;
                } else if (w > 0) {
                    n = (uint64_t)w;
                    batched = true;
                }
            }
            if (ret == 0 && !batched) {
                n = MIN(bytes - done, s->cluster_size - (cur & s->cluster_mask));
                ret = s->ext_l2 ? qcow2_ext_write(bs, cur, n, iov, iovcnt, done)
                                : alloc_write(bs, cur, n, iov, iovcnt, done);
            }
            pthread_mutex_unlock(&bs->lock);
        }
        if (ret < 0) {
            break;
        }
        done += n;
    }
    pthread_rwlock_unlock(&s->io_lock);
    if (__atomic_load_n(&s->nb_pending, __ATOMIC_RELAXED) >= 64) {
        try_reclaim(bs);
    }
    if (ret < 0) {
        return ret;
    }
    if (flags & BDRV_REQ_FUA) {
        ret = bdrv_flush(qcow2_data_node(s));
        if (ret == 0 && s->data) {
            ret = bdrv_flush(s->file);
        }
    }
    return ret;
}

/*
 * Change the L2 entries of the whole clusters in [offset, offset+bytes):
 * CHANGE_ZERO sets the zero flag (keeping the allocation when !unmap),
 * CHANGE_DISCARD deallocates (leaving a zero flag over a backing file in
 * v3), CHANGE_EMPTY deallocates. Caller holds the lock.
 */

int qcow2_change_clusters(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                           enum change_mode mode, bool unmap)
{
    struct qcow2_state *s = bs->opaque;
    for (uint64_t cur = offset; cur < offset + bytes; cur += s->cluster_size) {
        uint64_t l1_index = cur >> (s->cluster_bits + s->l2_bits);
        uint64_t l2_index = (cur >> s->cluster_bits) & (s->l2_size - 1);
        uint64_t l2_off;
        int ret;

        uint8_t *t = qcow2_l2_table(s, l1_index, &l2_off, &ret);
        if (ret < 0) {
            return ret;
        }
        uint64_t old = t ? qcow2_l2_get(s, t, l2_index) : 0;
        uint64_t obm = t ? qcow2_l2_bitmap(s, t, l2_index) : 0, bm = 0;
        enum qcow2_ctype type = qcow2_classify(s, old);
        uint64_t e;
        if (!t && mode != CHANGE_ZERO) {
            /* No L2 table: the rest of its range is unallocated too. */
            uint64_t next = (l1_index + 1) << (s->cluster_bits + s->l2_bits);
            cur = MAX(cur, next - s->cluster_size);
            continue;
        }
        if (s->ext_l2 && type == QCOW2_C_NORMAL && mode == CHANGE_ZERO && !unmap) {
            /* Keep our cluster, every subcluster reading as zeroes. */
            uint64_t rc = 0;
            bool owned = s->data ||
                         ((old & QCOW2_OFLAG_COPIED) &&
                          qcow2_get_refcount(s, (old & QCOW2_L2E_OFFSET_MASK) >>
                                             s->cluster_bits, &rc) == 0 && rc == 1);
            e = owned ? old : 0;
            bm = QCOW2_BM_ZERO_ALL;
        } else if (s->ext_l2 && mode != CHANGE_EMPTY) {
            e = 0;
            bool reads_zero = type == QCOW2_C_UNALLOCATED && !bs->backing &&
                              !(obm & QCOW2_BM_ALLOC_ALL);
            bm = bs->backing || (mode == CHANGE_ZERO && !reads_zero) ? QCOW2_BM_ZERO_ALL : 0;
        } else if (mode == CHANGE_EMPTY) {
            e = 0;
        } else if (mode == CHANGE_ZERO) {
            if (type == QCOW2_C_NORMAL && (old & QCOW2_OFLAG_COPIED) && !unmap) {
                e = old | QCOW2_OFLAG_ZERO;
            } else if (type == QCOW2_C_ZERO_ALLOC && !unmap) {
                e = old;
            } else if (type == QCOW2_C_UNALLOCATED && !bs->backing) {
                e = 0;      /* already reads as zeroes */
            } else {
                e = QCOW2_OFLAG_ZERO;
            }
        } else {
            e = (s->version >= 3 && bs->backing) ? QCOW2_OFLAG_ZERO : 0;
        }
        if (e == old && bm == obm) {
            continue;
        }
        t = qcow2_l2_table_for_write(s, l1_index, &l2_off, &ret);
        if (!t) {
            return ret;
        }
        ret = qcow2_write_l2_entry_bm(s, l2_off, t, l2_index, e, bm);
        if (ret < 0) {
            return ret;
        }
        if ((e & QCOW2_L2E_OFFSET_MASK) != (old & QCOW2_L2E_OFFSET_MASK) ||
            type == QCOW2_C_COMPRESSED) {
            ret = free_l2e(s, old);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

int qcow2_write_zero_buffers(struct bdrv_node *bs, uint64_t from, uint64_t to)
{
    struct qcow2_state *s = bs->opaque;
    while (from < to) {
        struct iovec v = { s->zero_cluster, MIN(to - from, s->cluster_size) };
        int ret = qcow2_co_pwritev(bs, from, v.iov_len, &v, 1, 0);
        if (ret < 0) {
            return ret;
        }
        from += v.iov_len;
    }
    return 0;
}

int qcow2_co_pwrite_zeroes(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                           unsigned flags)
{
    struct qcow2_state *s = bs->opaque;
    if (s->incompat & QCOW2_INCOMPAT_CORRUPT) {
        return -EIO;
    }
    if (s->version < 3) {
        return -ENOTSUP;
    }
    if (s->data_raw) {
        /* The data file must read as the guest sees it: real zeroes. */
        int ret = qcow2_write_zero_buffers(bs, offset, MIN(offset + bytes, s->size));
        if (ret == 0 && (flags & BDRV_REQ_FUA)) {
            ret = bdrv_flush(s->data);
        }
        return ret;
    }
    if (s->ext_l2) {
        int ret = qcow2_ext_pwrite_zeroes(bs, offset, MIN(offset + bytes, s->size), flags);
        if (ret == 0 && (flags & BDRV_REQ_FUA)) {
            ret = bdrv_flush(s->file);
        }
        return ret;
    }
    uint64_t end = MIN(offset + bytes, s->size);
    uint64_t a = qcow2_align_up(s, offset);
    uint64_t b = end == s->size ? qcow2_align_up(s, end) : end & ~s->cluster_mask;
    int ret = 0;

    if (a >= b) {
        a = b = end;    /* no whole cluster: all of it is a partial piece */
    }
    /* Partial clusters at either end: write real zeroes. */
    ret = qcow2_write_zero_buffers(bs, offset, MIN(a, end));
    if (ret == 0 && b < end && b >= a) {
        ret = qcow2_write_zero_buffers(bs, b, end);
    }
    if (ret == 0 && a < b) {
        pthread_rwlock_wrlock(&s->io_lock);
        pthread_mutex_lock(&bs->lock);
        qcow2_reclaim(s);
        ret = qcow2_change_clusters(bs, a, b - a, CHANGE_ZERO, flags & BDRV_REQ_MAY_UNMAP);
        pthread_mutex_unlock(&bs->lock);
        pthread_rwlock_unlock(&s->io_lock);
    }
    if (ret == 0 && (flags & BDRV_REQ_FUA)) {
        ret = bdrv_flush(s->file);
    }
    return ret;
}

int qcow2_co_pdiscard(struct bdrv_node *bs, uint64_t offset, uint64_t bytes)
{
    struct qcow2_state *s = bs->opaque;
    uint64_t end = MIN(offset + bytes, s->size);
    uint64_t a = qcow2_align_up(s, offset);
    uint64_t b = end == s->size ? qcow2_align_up(s, end) : end & ~s->cluster_mask;
    if (a >= b || s->data_raw) {
        return 0;       /* advisory: partial clusters (and raw data) stay */
    }
    if (s->incompat & QCOW2_INCOMPAT_CORRUPT) {
        return -EIO;
    }
    pthread_rwlock_wrlock(&s->io_lock);
    pthread_mutex_lock(&bs->lock);
    qcow2_reclaim(s);
    int ret = qcow2_change_clusters(bs, a, b - a, CHANGE_DISCARD, true);
    pthread_mutex_unlock(&bs->lock);
    pthread_rwlock_unlock(&s->io_lock);
    return ret;
}

int qcow2_co_block_status(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                          uint64_t *pnum, uint64_t *map, struct bdrv_node **file)
{
    struct qcow2_state *s = bs->opaque;
    uint64_t n, l2e;
    enum qcow2_ctype type;

    if (offset >= s->size) {
        *pnum = bytes;
        return BDRV_BLOCK_ZERO;
    }
    pthread_mutex_lock(&bs->lock);
    int ret = get_mapping(s, offset, MIN(bytes, s->size - offset), &type, &l2e, &n);
    pthread_mutex_unlock(&bs->lock);
    if (ret < 0) {
        return ret;
    }
    *pnum = n;
    switch (type) {
    case QCOW2_C_NORMAL:
        *map = (l2e & QCOW2_L2E_OFFSET_MASK) + (offset & s->cluster_mask);
        *file = qcow2_data_node(s);
        return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
    case QCOW2_C_ZERO_PLAIN:
    case QCOW2_C_ZERO_ALLOC:
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_ALLOCATED;
    case QCOW2_C_COMPRESSED:
        return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED;
    default:
        return bs->backing ? 0 : BDRV_BLOCK_ZERO;
    }
}

int qcow2_make_empty(struct bdrv_node *bs)
{
    struct qcow2_state *s = bs->opaque;
    pthread_rwlock_wrlock(&s->io_lock);
    pthread_mutex_lock(&bs->lock);
    qcow2_reclaim(s);
    int ret = qcow2_change_clusters(bs, 0, qcow2_align_up(s, s->size), CHANGE_EMPTY, true);
    pthread_mutex_unlock(&bs->lock);
    pthread_rwlock_unlock(&s->io_lock);
    return ret ? ret : bdrv_flush(s->file);
}
