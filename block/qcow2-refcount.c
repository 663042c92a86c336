/*
 * block/qcow2-refcount.c — qcow2 reference counts: reading and writing
 * entries of any width (1..64 bits), refcount blocks and growing the
 * refcount table, the cluster allocator with its pre-reserved pool, and
 * the consistency check that recounts every reference (used to repair a
 * dirty image at open). Everything here runs under bs->lock.
 */
#include "block/qcow2.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Entries                                                             */
/* ------------------------------------------------------------------ */

static uint64_t rb_get(const struct qcow2_state *s, const uint8_t *t, uint64_t i)
{
    switch (s->refcount_order) {
    case 0: return (t[i / 8] >> (i % 8)) & 1;
    case 1: return (t[i / 4] >> (2 * (i % 4))) & 3;
    case 2: return (t[i / 2] >> (4 * (i % 2))) & 15;
    case 3: return t[i];
    case 4: return qcow2_be16(t + i * 2);
    case 5: return qcow2_be32(t + i * 4);
    default: return qcow2_be64(t + i * 8);
    }
}

/* Store entry i; returns the byte offset and length that changed. */
static void rb_put(const struct qcow2_state *s, uint8_t *t, uint64_t i, uint64_t v,
                   uint64_t *boff, uint32_t *blen)
{
    unsigned bits = s->refcount_bits;
    if (bits < 8) {
        unsigned per = 8 / bits;
        unsigned shift = (unsigned)(i % per) * bits;
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << shift);
        t[i / per] = (uint8_t)((t[i / per] & ~mask) | ((v << shift) & mask));
        *boff = i / per;
        *blen = 1;
        return;
    }
    switch (bits) {
    case 8: t[i] = (uint8_t)v; break;
    case 16: qcow2_put_be16(t + i * 2, (uint16_t)v); break;
    case 32: qcow2_put_be32(t + i * 4, (uint32_t)v); break;
    default: qcow2_put_be64(t + i * 8, v); break;
    }
    *boff = i * (bits / 8);
    *blen = bits / 8;
}

int qcow2_grow_file(struct qcow2_state *s, uint64_t len)
{
    if (len <= s->file_len) {
        return 0;
    }
    int ret = bdrv_truncate(s->file, len, NULL);
    if (ret == 0) {
        s->file_len = len;
    }
    return ret;
}

/* In use according to the metadata recount of a running repair? */
static bool check_busy(const struct qcow2_state *s, uint64_t c)
{
    return s->check_refs && c < s->check_nb && s->check_refs[c];
}
static void check_mark(struct qcow2_state *s, uint64_t c)
{
    if (s->check_refs && c < s->check_nb) {
        s->check_refs[c]++;
    }
}

static int grow_table(struct qcow2_state *s, uint64_t cluster);

/*
 * A new refcount block for table index `idx`, placed inside the range it
 * describes (all of which is free, having had no block) and counting
 * itself. `avoid` is the cluster the caller is about to set.
 */
static int alloc_block(struct qcow2_state *s, uint64_t idx, uint64_t avoid)
{
    uint64_t first = idx << s->rb_bits, per = 1ull << s->rb_bits;
    uint64_t k = first;
    while (k < first + per && (k == avoid || check_busy(s, k))) {
        k++;
    }
    if (k == first + per) {
        return -ENOSPC;
    }
    int ret = qcow2_grow_file(s, (k + 1) << s->cluster_bits);
    if (ret < 0) {
        return ret;
    }
    uint8_t *b = calloc(1, s->cluster_size);
    if (!b) {
        return -ENOMEM;
    }
    uint64_t bo;
    uint32_t bl;
    rb_put(s, b, k - first, 1, &bo, &bl);
    uint64_t off = k << s->cluster_bits;
    ret = bdrv_pwrite(s->file, off, b, s->cluster_size, 0);
    if (ret == 0) {
        qcow2_cache_put(&s->rb_cache, off, b);
        uint8_t e[8];
        qcow2_put_be64(e, off);
        ret = bdrv_pwrite(s->file, s->rt_offset + idx * 8, e, 8, 0);
    }
    free(b);
    if (ret < 0) {
        return ret;
    }
    s->rt[idx] = off;
    check_mark(s, k);
    return 0;
}

/* The refcount block holding `cluster`; NULL (and 0) when it has none
 * and !alloc. */
static uint8_t *block_for(struct qcow2_state *s, uint64_t cluster, bool alloc, int *ret)
{
    uint64_t idx = cluster >> s->rb_bits;
    *ret = 0;
    if (idx >= s->rt_entries) {
        if (!alloc) {
            return NULL;
        }
        *ret = grow_table(s, cluster);
        if (*ret < 0) {
            return NULL;
        }
    }
    uint64_t off = s->rt[idx] & QCOW2_RT_OFFSET_MASK;
    if (!off) {
        if (!alloc) {
            return NULL;
        }
        *ret = alloc_block(s, idx, cluster);
        if (*ret < 0) {
            return NULL;
        }
        off = s->rt[idx] & QCOW2_RT_OFFSET_MASK;
    }
    if ((off & s->cluster_mask) || off + s->cluster_size > s->file_len) {
        qcow2_signal_corruption(s, "refcount block at %#" PRIx64 " is unaligned or "
                                "beyond the end of the file", off);
        *ret = -EIO;
        return NULL;
    }
    return qcow2_cache_get(s, &s->rb_cache, off, ret);
}

int qcow2_get_refcount(struct qcow2_state *s, uint64_t cluster, uint64_t *rc)
{
    int ret;
    uint8_t *t = block_for(s, cluster, false, &ret);
    *rc = t ? rb_get(s, t, cluster & ((1ull << s->rb_bits) - 1)) : 0;
    return ret;
}

/*
 * Refcount changes not yet written: a byte range of one block. Runs of
 * changes to the same block (the allocator's pool refill) go out in one
 * write; anything that touches another block writes the pending range
 * first, so the write-through cache never holds unwritten data when it
 * evicts.
 */
struct rc_batch {
    uint64_t block;     /* host offset of the block, 0 = nothing pending */
    uint64_t lo, hi;    /* changed bytes [lo, hi) inside it */
};

/* Lazy refcounts: the dirty bit goes on disk before the first refcount
 * change is held back. */
static int mark_dirty(struct qcow2_state *s)
{
    if (s->incompat & QCOW2_INCOMPAT_DIRTY) {
        return 0;
    }
    int ret = bdrv_flush(s->file);
    return ret < 0 ? ret : qcow2_set_incompat(s, s->incompat | QCOW2_INCOMPAT_DIRTY);
}

int qcow2_mark_clean(struct qcow2_state *s)
{
    int ret = qcow2_cache_writeback(&s->rb_cache);
    if (ret == 0) {
        ret = bdrv_flush(s->file);
    }
    if (ret == 0 && (s->incompat & QCOW2_INCOMPAT_DIRTY)) {
        ret = qcow2_set_incompat(s, s->incompat & ~QCOW2_INCOMPAT_DIRTY);
    }
    return ret;
}

static int batch_flush(struct qcow2_state *s, struct rc_batch *b)
{
    if (!b->block) {
        return 0;
    }
    int ret = 0;
    uint8_t *t = qcow2_cache_get(s, &s->rb_cache, b->block, &ret);
    if (t && s->lazy && (ret = mark_dirty(s)) == 0) {
        qcow2_cache_mark_dirty(&s->rb_cache, b->block);
        b->block = 0;
        return 0;
    }
    if (t && ret == 0) {
        ret = bdrv_pwrite(s->file, b->block + b->lo, t + b->lo, b->hi - b->lo, 0);
    }
    if (ret < 0) {
        qcow2_cache_drop(&s->rb_cache, b->block);
    }
    b->block = 0;
    return ret;
}

static int set_refcount_batched(struct qcow2_state *s, uint64_t cluster, uint64_t rc,
                                struct rc_batch *b)
{
    int ret;
    if (rc > s->refcount_max) {
        return -ERANGE;
    }
    uint64_t idx = cluster >> s->rb_bits;
    uint64_t off = idx < s->rt_entries ? s->rt[idx] & QCOW2_RT_OFFSET_MASK : 0;
    if (b->block && b->block != off) {
        ret = batch_flush(s, b);
        if (ret < 0) {
            return ret;
        }
    }
    uint8_t *t = block_for(s, cluster, rc != 0, &ret);
    if (!t) {
        return ret;
    }
    off = s->rt[idx] & QCOW2_RT_OFFSET_MASK;
    if (b->block && b->block != off) {     /* block_for placed a new block */
        ret = batch_flush(s, b);
        if (ret < 0) {
            return ret;
        }
        t = block_for(s, cluster, rc != 0, &ret);
        if (!t) {
            return ret;
        }
    }
    uint64_t bo;
    uint32_t bl;
    rb_put(s, t, cluster & ((1ull << s->rb_bits) - 1), rc, &bo, &bl);
    if (!b->block) {
        b->block = off;
        b->lo = bo;
        b->hi = bo + bl;
    } else {
        b->lo = MIN(b->lo, bo);
        b->hi = MAX(b->hi, bo + bl);
    }
    if (rc == 0 && cluster < s->free_hint) {
        s->free_hint = cluster;
    }
    return 0;
}

int qcow2_set_refcount(struct qcow2_state *s, uint64_t cluster, uint64_t rc)
{
    struct rc_batch b = { 0 };
    int ret = set_refcount_batched(s, cluster, rc, &b);
    int r2 = batch_flush(s, &b);
    return ret < 0 ? ret : r2;
}

/*
 * Grow the refcount table so it has an entry for `cluster`'s block. The
 * new table and the blocks that count it go past everything the old table
 * covers and past the end of the file; the header switches to the new
 * table in one write, then the old table's clusters are freed.
 */
static int grow_table(struct qcow2_state *s, uint64_t cluster)
{
    uint64_t cov = (uint64_t)s->rt_entries << s->rb_bits;
    uint64_t p = MAX(cov, qcow2_align_up(s, s->file_len) >> s->cluster_bits);
    p = MAX(p, cluster + 1);
    if (s->check_refs) {
        p = MAX(p, s->check_nb);
    }
    uint64_t T = 1, B = 1, entries = 0;
    for (int iter = 0; iter < 16; iter++) {
        uint64_t last = p + T + B - 1;
        uint64_t need = MAX(cluster >> s->rb_bits, last >> s->rb_bits) + 1;
        entries = need + need / 2;
        uint64_t nT = DIV_ROUND_UP(entries * 8, s->cluster_size);
        uint64_t nB = ((p + nT + B - 1) >> s->rb_bits) - (p >> s->rb_bits) + 1;
        if (nT == T && nB == B) {
            break;
        }
        T = nT;
        B = nB;
    }
    entries = (T << s->cluster_bits) / 8;
    if ((T << s->cluster_bits) > QCOW2_MAX_RT_BYTES || entries > UINT32_MAX) {
        return -EFBIG;
    }
    uint64_t *nt = calloc(entries, 8);
    uint8_t *blk = calloc(1, s->cluster_size);
    uint8_t *raw = calloc(T, s->cluster_size);
    int ret = -ENOMEM;
    if (!nt || !blk || !raw) {
        goto out_free;
    }
    memcpy(nt, s->rt, (size_t)s->rt_entries * 8);
    ret = qcow2_grow_file(s, (p + T + B) << s->cluster_bits);
    if (ret < 0) {
        goto out_free;
    }
    /* Blocks at p+T.., counting [p, p+T+B). */
    uint64_t b0 = p >> s->rb_bits;
    for (uint64_t j = 0; j < B; j++) {
        uint64_t idx = b0 + j, first = idx << s->rb_bits;
        memset(blk, 0, s->cluster_size);
        for (uint64_t c = MAX(first, p); c < MIN(first + (1ull << s->rb_bits), p + T + B); c++) {
            uint64_t bo;
            uint32_t bl;
            rb_put(s, blk, c - first, 1, &bo, &bl);
        }
        uint64_t off = (p + T + j) << s->cluster_bits;
        ret = bdrv_pwrite(s->file, off, blk, s->cluster_size, 0);
        if (ret < 0) {
            goto out_free;
        }
        nt[idx] = off;
    }
    for (uint64_t i = 0; i < entries; i++) {
        qcow2_put_be64(raw + i * 8, nt[i]);
    }
    ret = bdrv_pwrite(s->file, p << s->cluster_bits, raw, T << s->cluster_bits, 0);
    if (ret == 0) {
        ret = bdrv_flush(s->file);
    }
    if (ret < 0) {
        goto out_free;
    }
    uint8_t h[12];
    qcow2_put_be64(h, p << s->cluster_bits);
    qcow2_put_be32(h + 8, (uint32_t)T);
    ret = qcow2_write_header_field(s, QH_RT_OFFSET, h, 12);
    if (ret < 0) {
        goto out_free;
    }
    uint64_t old_off = s->rt_offset, old_clusters = s->rt_clusters;
    free(s->rt);
    s->rt = nt;
    nt = NULL;
    s->rt_entries = (uint32_t)entries;
    s->rt_offset = p << s->cluster_bits;
    s->rt_clusters = (uint32_t)T;
    for (uint64_t c = p; c < p + T + B; c++) {
        check_mark(s, c);
    }
    ret = qcow2_free_clusters(s, old_off, old_clusters << s->cluster_bits);

out_free:
    free(nt);
    free(blk);
    free(raw);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Allocation                                                          */
/* ------------------------------------------------------------------ */

/* Reserve a run of free clusters (refcount 1 each, flushed) as the pool. */
static int pool_refill(struct qcow2_state *s)
{
    /* 1 MiB at first, doubling while allocation goes on, up to 64 MiB
     * (and 4096 clusters): fewer flushes, at most that much leaked by a
     * crash. */
    uint64_t want = MAX(1, MIN(4096, s->pool_batch >> s->cluster_bits));
    s->pool_batch = MIN(s->pool_batch * 2, 64ull << 20);
    uint64_t c = s->free_hint, rc;
    struct rc_batch b = { 0 };
    int ret;

    for (;; c++) {
        ret = qcow2_get_refcount(s, c, &rc);
        if (ret < 0) {
            return ret;
        }
        if (rc == 0 && !check_busy(s, c)) {
            break;
        }
    }
    uint64_t start = c, n = 0;
    bool fresh = (start << s->cluster_bits) >= s->file_len;
    while (n < want) {
        /* Setting one refcount may place a new refcount block or table
         * right after it: re-check each cluster before taking it. */
        ret = qcow2_get_refcount(s, start + n, &rc);
        if (ret < 0) {
            return ret;
        }
        if (rc != 0 || check_busy(s, start + n)) {
            break;
        }
        ret = set_refcount_batched(s, start + n, 1, &b);
        if (ret < 0) {
            batch_flush(s, &b);
            return ret;
        }
        check_mark(s, start + n);
        n++;
    }
    ret = batch_flush(s, &b);
    if (ret < 0) {
        return ret;
    }
    if (n == 0) {
        return -EIO;
    }
    ret = qcow2_grow_file(s, (start + n) << s->cluster_bits);
    if (ret == 0 && !s->lazy) {
        /* Refcounts durable before any L2 entry names these clusters;
         * with lazy refcounts the dirty bit covers it instead. */
        ret = bdrv_flush(s->file);
    }
    if (ret < 0) {
        return ret;
    }
    s->pool_next = start;
    s->pool_end = start + n;
    s->pool_fresh = fresh;
    s->free_hint = start + n;
    return 0;
}

int64_t qcow2_alloc_cluster(struct qcow2_state *s, bool *fresh)
{
    if (s->pool_next == s->pool_end) {
        int ret = pool_refill(s);
        if (ret < 0) {
            return ret;
        }
    }
    *fresh = s->pool_fresh;
    return (int64_t)(s->pool_next++ << s->cluster_bits);
}

void qcow2_pool_release(struct qcow2_state *s)
{
    uint64_t from = s->pool_next, to = s->pool_end;
    bool at_end = (to << s->cluster_bits) >= s->file_len;
    struct rc_batch b = { 0 };
    for (uint64_t c = from; c < to; c++) {
        if (set_refcount_batched(s, c, 0, &b) < 0) {
            at_end = false;
            break;
        }
    }
    if (batch_flush(s, &b) < 0) {
        at_end = false;
    }
    s->pool_next = s->pool_end = 0;
    if (at_end && from < to) {
        /* Nothing lies past the pool: give the file its old end back. */
        if (bdrv_truncate(s->file, from << s->cluster_bits, NULL) == 0) {
            s->file_len = from << s->cluster_bits;
        }
    }
}

int qcow2_free_clusters(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    for (uint64_t c = off >> s->cluster_bits;
         c < (off + len + s->cluster_mask) >> s->cluster_bits; c++) {
        uint64_t rc;
        int ret = qcow2_get_refcount(s, c, &rc);
        if (ret < 0) {
            return ret;
        }
        if (rc == 0) {
            qcow2_signal_corruption(s, "freeing cluster %" PRIu64 " whose refcount is 0", c);
            return -EIO;
        }
        ret = qcow2_set_refcount(s, c, rc - 1);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Check and repair                                                    */
/* ------------------------------------------------------------------ */

struct recount {
    struct qcow2_state *s;
    uint32_t *refs;
    uint64_t nb;
    uint64_t outside;       /* references past the end of the file */
    uint64_t end;           /* end of the last referenced cluster */
    uint64_t allocated;     /* guest clusters mapped by the active L1 */
    uint64_t bad_bitmaps;   /* extended L2 bitmaps the format forbids */
    bool active;            /* counting the active L1 (not a snapshot's) */
};

static void count(struct recount *r, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = r->s;
    if (len == 0) {
        return;
    }
    r->end = MAX(r->end, qcow2_align_up(s, off + len));
    for (uint64_t c = off >> s->cluster_bits; c <= (off + len - 1) >> s->cluster_bits; c++) {
        if (c >= r->nb) {
            r->outside++;
        } else if (r->refs[c] < UINT32_MAX) {
            r->refs[c]++;
        }
    }
}

/* An L1 table and everything it points to. */
static int count_l1(struct recount *r, uint64_t l1_off, uint32_t l1_size, uint8_t *buf)
{
    struct qcow2_state *s = r->s;
    count(r, l1_off, (uint64_t)l1_size * 8);
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t e;
        int ret = bdrv_pread(s->file, l1_off + (uint64_t)i * 8, &e, 8);
        if (ret < 0) {
            return ret;
        }
        uint64_t l2 = __builtin_bswap64(e) & QCOW2_L1E_OFFSET_MASK;
        if (!l2) {
            continue;
        }
        count(r, l2, s->cluster_size);
        if ((l2 & s->cluster_mask) || l2 + s->cluster_size > s->file_len) {
            r->outside++;
            continue;
        }
        ret = bdrv_pread(s->file, l2, buf, s->cluster_size);
        if (ret < 0) {
            return ret;
        }
        for (uint32_t j = 0; j < s->l2_size; j++) {
            uint64_t l2e = qcow2_be64(buf + (uint64_t)j * s->l2e_size);
            enum qcow2_ctype t = qcow2_classify(s, l2e);
            if (s->ext_l2 && t != QCOW2_C_COMPRESSED) {
                uint64_t bm = qcow2_be64(buf + (uint64_t)j * 16 + 8);
                if ((t == QCOW2_C_UNALLOCATED && (bm & QCOW2_BM_ALLOC_ALL)) ||
                    (bm & (bm >> 32) & QCOW2_BM_ALLOC_ALL)) {
                    r->bad_bitmaps++;
                }
            }
            if (r->active && (t == QCOW2_C_NORMAL || t == QCOW2_C_ZERO_ALLOC ||
                              t == QCOW2_C_COMPRESSED)) {
                r->allocated++;
            }
            switch (t) {
            case QCOW2_C_NORMAL:
            case QCOW2_C_ZERO_ALLOC:
                if (!s->data) {     /* the data file is not refcounted */
                    count(r, l2e & QCOW2_L2E_OFFSET_MASK, s->cluster_size);
                }
                break;
            case QCOW2_C_COMPRESSED: {
                uint64_t first, nb;
                qcow2_compressed_range(s, l2e, &first, &nb);
                count(r, first << s->cluster_bits, nb << s->cluster_bits);
                break;
            }
            default:
                break;
            }
        }
    }
    return 0;
}

static int count_snapshots(struct recount *r, uint8_t *buf)
{
    struct qcow2_state *s = r->s;
    uint64_t off = s->snapshots_offset, start = off;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        uint8_t h[40];
        off = ROUND_UP(off, 8);
        if (off + sizeof(h) > s->file_len) {
            return -EIO;
        }
        int ret = bdrv_pread(s->file, off, h, sizeof(h));
        if (ret < 0) {
            return ret;
        }
        uint64_t l1 = qcow2_be64(h);
        uint32_t l1_size = qcow2_be32(h + 8);
        off += sizeof(h) + qcow2_be32(h + 36) + qcow2_be16(h + 12) + qcow2_be16(h + 14);
        if ((uint64_t)l1_size * 8 > QCOW2_MAX_L1_BYTES ||
            l1 + (uint64_t)l1_size * 8 > s->file_len) {
            return -EIO;
        }
        ret = count_l1(r, l1, l1_size, buf);
        if (ret < 0) {
            return ret;
        }
    }
    count(r, start, ROUND_UP(off, 8) - start);
    return 0;
}

/*
 * The COPIED flag of every active L1 and L2 entry must say exactly
 * "refcount is 1", as qemu-img check demands: counted as a corruption
 * each, and with BDRV_FIX_ERRORS rewritten to match the (already
 * repaired) refcount.
 */
static int check_copied_flags(struct qcow2_state *s, unsigned fix,
                              struct bdrv_check_result *res, uint8_t *buf)
{
    bool repair = fix & BDRV_FIX_ERRORS, report = fix & BDRV_CHECK_REPORT;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l1e = s->l1[i], l2 = l1e & QCOW2_L1E_OFFSET_MASK, rc;
        if (!l2 || (l2 & s->cluster_mask) || l2 + s->cluster_size > s->file_len) {
            continue;       /* counted by the recount already */
        }
        int ret = qcow2_get_refcount(s, l2 >> s->cluster_bits, &rc);
        if (ret < 0) {
            continue;
        }
        if ((rc == 1) != !!(l1e & QCOW2_OFLAG_COPIED)) {
            if (report) {
                fprintf(stderr, "%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu32
                        " l1_entry=%" PRIx64 " refcount=%" PRIu64 "\n",
                        repair ? "Repairing" : "ERROR", i, l1e, rc);
            }
            if (repair) {
                uint8_t e[8];
                l1e = rc == 1 ? l1e | QCOW2_OFLAG_COPIED : l1e & ~QCOW2_OFLAG_COPIED;
                qcow2_put_be64(e, l1e);
                ret = bdrv_pwrite(s->file, s->l1_offset + (uint64_t)i * 8, e, 8, 0);
                if (ret < 0) {
                    return ret;
                }
                s->l1[i] = l1e;
                res->corruptions_fixed++;
            } else {
                res->corruptions++;
            }
        }
        ret = bdrv_pread(s->file, l2, buf, s->cluster_size);
        if (ret < 0) {
            return ret;
        }
        unsigned dirty = 0;
        for (uint32_t j = 0; j < s->l2_size; j++) {
            uint64_t l2e = qcow2_be64(buf + (uint64_t)j * s->l2e_size);
            enum qcow2_ctype t = qcow2_classify(s, l2e);
            if ((t != QCOW2_C_NORMAL && t != QCOW2_C_ZERO_ALLOC) || s->data) {
                continue;
            }
            if (qcow2_get_refcount(s, (l2e & QCOW2_L2E_OFFSET_MASK) >> s->cluster_bits,
                                   &rc) < 0) {
                continue;
            }
            if ((rc == 1) == !!(l2e & QCOW2_OFLAG_COPIED)) {
                continue;
            }
            if (report) {
                fprintf(stderr, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64
                        " refcount=%" PRIu64 "\n", repair ? "Repairing" : "ERROR", l2e, rc);
            }
            if (repair) {
                qcow2_put_be64(buf + (uint64_t)j * s->l2e_size, rc == 1 ? l2e | QCOW2_OFLAG_COPIED :
                               l2e & ~QCOW2_OFLAG_COPIED);
                dirty++;
            } else {
                res->corruptions++;
            }
        }
        if (dirty) {
            qcow2_cache_drop(&s->l2_cache, l2);
            ret = bdrv_pwrite(s->file, l2, buf, s->cluster_size, 0);
            if (ret < 0) {
                return ret;
            }
            res->corruptions_fixed += dirty;
        }
    }
    return 0;
}

int qcow2_check_refcounts(struct qcow2_state *s, unsigned fix,
                          struct bdrv_check_result *res, struct error **errp)
{
    bool repair = fix & (BDRV_FIX_LEAKS | BDRV_FIX_ERRORS);
    bool report = fix & BDRV_CHECK_REPORT;
    uint64_t highest = 0;   /* one past the last cluster counted or referenced */
    struct recount r = { .s = s };
    uint8_t *buf = NULL;
    int ret;

    memset(res, 0, sizeof(*res));
    if (repair) {
        qcow2_pool_release(s);
    }
    r.nb = qcow2_align_up(s, s->file_len) >> s->cluster_bits;
    if (r.nb > (1ull << 28)) {
        error_setg(errp, "'%s': image too large to check", s->bs->filename);
        return -EFBIG;
    }
    r.refs = calloc(r.nb ? r.nb : 1, sizeof(uint32_t));
    buf = malloc(s->cluster_size);
    if (!r.refs || !buf) {
        ret = -ENOMEM;
        error_setg(errp, "Out of memory");
        goto out_free;
    }
    count(&r, 0, s->cluster_size);
    r.active = true;
    ret = count_l1(&r, s->l1_offset, s->l1_size, buf);
    r.active = false;
    res->allocated_clusters = r.allocated;
    res->total_clusters = DIV_ROUND_UP(s->size, s->cluster_size);
    if (ret == 0 && s->nb_snapshots) {
        ret = count_snapshots(&r, buf);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "'%s': cannot read the image metadata",
                         s->bs->filename);
        goto out_free;
    }
    count(&r, s->rt_offset, (uint64_t)s->rt_clusters << s->cluster_bits);
    for (uint32_t i = 0; i < s->rt_entries; i++) {
        uint64_t b = s->rt[i] & QCOW2_RT_OFFSET_MASK;
        if (b) {
            count(&r, b, s->cluster_size);
        }
    }
    res->corruptions += r.outside + r.bad_bitmaps;
    res->image_end_offset = r.end;
    if (r.outside && repair) {
        error_setg(errp, "'%s': metadata points past the end of the file; "
                   "cannot repair", s->bs->filename);
        ret = -EIO;
        goto out_free;
    }

    /* Compare, and with `repair` make the stored counts match. The
     * allocator must not hand out a cluster the recount found in use. */
    if (repair) {
        s->check_refs = r.refs;
        s->check_nb = r.nb;
    }
    /* Only the clusters inside the file are compared, as qemu-img does:
     * past its end only stale counts can exist, and they are harmless
     * (the allocator skips clusters whose count is not 0). */
    for (uint64_t c = 0; c < r.nb; c++) {
        uint64_t rc, want = r.refs[c];
        ret = qcow2_get_refcount(s, c, &rc);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "'%s': cannot read refcounts", s->bs->filename);
            goto out_unset;
        }
        if (rc || want) {
            highest = c + 1;
        }
        if (rc == want) {
            continue;
        }
        bool corrupt = rc < want;
        bool fixing = fix & (corrupt ? BDRV_FIX_ERRORS : BDRV_FIX_LEAKS);
        if (report) {
            fprintf(stderr, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64
                    "\n", fixing ? "Repairing" : corrupt ? "ERROR" : "Leaked", c, rc, want);
        }
        if (!fixing) {
            if (corrupt) {
                res->corruptions++;
            } else {
                res->leaks++;
            }
        }
        if (fixing) {
            ret = qcow2_set_refcount(s, c, MIN(want, s->refcount_max));
            if (ret < 0) {
                error_setg_errno(errp, -ret, "'%s': cannot write refcounts",
                                 s->bs->filename);
                goto out_unset;
            }
            if (corrupt) {
                res->corruptions_fixed++;
            } else {
                res->leaks_fixed++;
            }
        }
    }
    /* qemu-img's end offset covers every cluster with a count, leaked
     * ones included (as they were before any repair). */
    res->image_end_offset = MAX(res->image_end_offset, highest << s->cluster_bits);
    ret = check_copied_flags(s, fix, res, buf);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "'%s': cannot check the COPIED flags",
                         s->bs->filename);
        goto out_unset;
    }
    if (repair) {
        ret = bdrv_flush(s->file);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "'%s': flush failed", s->bs->filename);
        }
    }
    s->free_hint = 1;

out_unset:
    s->check_refs = NULL;
    s->check_nb = 0;
out_free:
    free(r.refs);
    free(buf);
    return ret;
}

int64_t qcow2_alloc_clusters(struct qcow2_state *s, uint64_t n)
{
    /* Past everything: the pool goes back first so the run starts at the
     * end of the file. */
    qcow2_pool_release(s);
    uint64_t start = qcow2_align_up(s, s->file_len) >> s->cluster_bits, rc, i;
    struct rc_batch b = { 0 };
    int ret;
retry:
    for (i = 0; i < n; i++) {
        ret = qcow2_get_refcount(s, start + i, &rc);
        if (ret < 0) {
            return ret;
        }
        if (rc) {
            if (b.block || i) {
                /* A refcount block landed inside the run: undo, move on. */
                for (uint64_t j = 0; j < i; j++) {
                    set_refcount_batched(s, start + j, 0, &b);
                }
                batch_flush(s, &b);
            }
            start += i + 1;
            goto retry;
        }
        ret = set_refcount_batched(s, start + i, 1, &b);
        if (ret < 0) {
            batch_flush(s, &b);
            return ret;
        }
    }
    ret = batch_flush(s, &b);
    if (ret == 0) {
        ret = qcow2_grow_file(s, (start + n) << s->cluster_bits);
    }
    if (ret == 0) {
        ret = bdrv_flush(s->file);
    }
    return ret < 0 ? ret : (int64_t)(start << s->cluster_bits);
}
