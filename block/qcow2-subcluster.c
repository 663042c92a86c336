/*
 * block/qcow2-subcluster.c — extended L2 entries (incompatible bit 4): 32
 * subclusters per data cluster, each allocated or reading as zeroes on
 * its own. Mapping runs of subclusters, writes that allocate subclusters
 * instead of copying the whole cluster, and zeroes down to a subcluster.
 */
#include "block/qcow2.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/*
 * What subcluster `sc` of an extended entry reads as: NORMAL (from the
 * host cluster), ZERO_PLAIN or UNALLOCATED (backing, else zeroes).
 */
static enum qcow2_ctype sc_state(uint64_t bm, unsigned sc)
{
    if (bm & (1ull << sc)) {
        return QCOW2_C_NORMAL;
    }
    return (bm & (1ull << (32 + sc))) ? QCOW2_C_ZERO_PLAIN : QCOW2_C_UNALLOCATED;
}

/* An extended entry the format forbids: -EIO (and the corrupt bit). */
static int qcow2_check_ext_entry(struct qcow2_state *s, uint64_t e, uint64_t bm)
{
    enum qcow2_ctype ty = qcow2_classify(s, e);
    uint64_t host = e & QCOW2_L2E_OFFSET_MASK;
    if (ty == QCOW2_C_COMPRESSED) {
        return 0;   /* its bitmap is reserved: ignored */
    }
    if (host & s->cluster_mask) {
        qcow2_signal_corruption(s, "cluster offset %#" PRIx64 " is not cluster aligned", host);
        return -EIO;
    }
    if (ty == QCOW2_C_UNALLOCATED && (bm & QCOW2_BM_ALLOC_ALL)) {
        qcow2_signal_corruption(s, "subcluster allocation bitmap %#" PRIx64 " set for an "
                                "unallocated cluster", bm);
        return -EIO;
    }
    if (bm & (bm >> 32) & QCOW2_BM_ALLOC_ALL) {
        qcow2_signal_corruption(s, "subcluster allocation bitmap %#" PRIx64 " has "
                                "subclusters both allocated and zero", bm);
        return -EIO;
    }
    return 0;
}

/* Whether the NORMAL cluster behind `e` is this image's alone, so it can
 * be changed in place (a data file's clusters are never shared). */
static bool cluster_owned(struct qcow2_state *s, uint64_t e)
{
    uint64_t rc = 0;
    return s->data || ((e & QCOW2_OFLAG_COPIED) &&
                       qcow2_get_refcount(s, (e & QCOW2_L2E_OFFSET_MASK) >> s->cluster_bits,
                                          &rc) == 0 && rc == 1);
}

/*
 * get_mapping_ex for extended L2 entries: a run of subclusters in the
 * same state; it continues into following entries whose subclusters are
 * all in that state (and, for data, contiguous on the host).
 */
int qcow2_get_mapping_sc(struct qcow2_state *s, const uint8_t *t, uint64_t l2_index,
                          uint64_t max_cl, uint64_t off, uint64_t bytes,
                          enum qcow2_ctype *type, uint64_t *l2e_out, uint64_t *pn)
{
    uint64_t in = off & s->cluster_mask;
    uint64_t e0 = qcow2_l2_get(s, t, l2_index), bm0 = qcow2_l2_bitmap(s, t, l2_index);
    int ret = qcow2_check_ext_entry(s, e0, bm0);
    if (ret < 0) {
        return ret;
    }
    *l2e_out = e0;
    if (qcow2_classify(s, e0) == QCOW2_C_COMPRESSED) {
        *type = QCOW2_C_COMPRESSED;
        *pn = MIN(bytes, s->cluster_size - in);
        return 0;
    }
    unsigned sc = (unsigned)(in >> s->sc_bits), j = sc + 1;
    enum qcow2_ctype st = sc_state(bm0, sc);
    while (j < QCOW2_SUBCLUSTERS && sc_state(bm0, j) == st) {
        j++;
    }
    *type = st;
    uint64_t len = ((uint64_t)j << s->sc_bits) - in;
    if (j == QCOW2_SUBCLUSTERS) {
        uint64_t h0 = e0 & QCOW2_L2E_OFFSET_MASK;
        uint64_t all = st == QCOW2_C_NORMAL ? QCOW2_BM_ALLOC_ALL :
                       st == QCOW2_C_ZERO_PLAIN ? QCOW2_BM_ZERO_ALL : 0;
        for (uint64_t i = 1; i < max_cl && len < bytes; i++) {
            uint64_t e = qcow2_l2_get(s, t, l2_index + i);
            uint64_t bm = qcow2_l2_bitmap(s, t, l2_index + i);
            if (qcow2_classify(s, e) == QCOW2_C_COMPRESSED || bm != all ||
                qcow2_check_ext_entry(s, e, bm) < 0 ||
                (st == QCOW2_C_NORMAL &&
                 ((e & QCOW2_L2E_OFFSET_MASK) != h0 + (i << s->cluster_bits) ||
                  ((e ^ e0) & QCOW2_OFLAG_COPIED)))) {
                break;
            }
            len += s->cluster_size;
        }
    }
    *pn = MIN(bytes, len);
    return 0;
}

/*
 * Extended L2: what guest [start+a, start+b) of the cluster whose entry is
 * (e, bm) reads as, into `buf` (subclusters not allocated: zeroes or the
 * backing chain; allocated ones: the host cluster). Caller holds the lock.
 */
static int sc_fill(struct bdrv_node *bs, uint64_t start, uint64_t e, uint64_t bm,
                   uint64_t a, uint64_t b, uint8_t *buf)
{
    struct qcow2_state *s = bs->opaque;
    while (a < b) {
        unsigned sc = (unsigned)(a >> s->sc_bits);
        enum qcow2_ctype st = sc_state(bm, sc);
        uint64_t n = MIN(b, (uint64_t)(sc + 1) << s->sc_bits) - a;
        int ret = 0;
        if (st == QCOW2_C_NORMAL) {
            ret = bdrv_pread(qcow2_data_node(s), (e & QCOW2_L2E_OFFSET_MASK) + a, buf, n);
        } else if (st == QCOW2_C_ZERO_PLAIN || !bs->backing || start + a >= s->size) {
            memset(buf, 0, n);
        } else {
            uint64_t have = MIN(n, s->size - (start + a));
            struct iovec v = { buf, have };
            ret = qcow2_read_backing(bs, start + a, have, &v, 1, 0);
            memset(buf + have, 0, n - have);
        }
        if (ret < 0) {
            return ret;
        }
        buf += n;
        a += n;
    }
    return 0;
}

/*
 * Write [cur, cur+n) (inside one cluster) of an image with extended L2
 * entries, unless it is an in-place write to allocated subclusters. A
 * cluster that is ours alone (or none yet) gets only the subclusters
 * written, each partly written one completed from what it read as
 * before; a shared or compressed cluster is copied whole. Data first,
 * then the entry. Caller holds the lock.
 */
int qcow2_ext_write(struct bdrv_node *bs, uint64_t cur, uint64_t n,
                     const struct iovec *iov, int iovcnt, size_t iov_off)
{
    struct qcow2_state *s = bs->opaque;
    uint64_t l1_index = cur >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_index = (cur >> s->cluster_bits) & (s->l2_size - 1);
    uint64_t start = cur & ~s->cluster_mask, in = cur - start;
    uint64_t l2_off;
    int ret;

    uint8_t *t = qcow2_l2_table_for_write(s, l1_index, &l2_off, &ret);
    if (!t) {
        return ret;
    }
    uint64_t e = qcow2_l2_get(s, t, l2_index), bm = qcow2_l2_bitmap(s, t, l2_index);
    ret = qcow2_check_ext_entry(s, e, bm);
    if (ret < 0) {
        return ret;
    }
    enum qcow2_ctype ty = qcow2_classify(s, e);
    uint64_t host = e & QCOW2_L2E_OFFSET_MASK;
    bool owned = ty == QCOW2_C_NORMAL && cluster_owned(s, e);

    if (owned || ty == QCOW2_C_UNALLOCATED) {
        unsigned sc0 = (unsigned)(in >> s->sc_bits);
        unsigned sc1 = (unsigned)((in + n - 1) >> s->sc_bits);
        uint64_t a = (uint64_t)sc0 << s->sc_bits, b = (uint64_t)(sc1 + 1) << s->sc_bits;
        uint64_t head = (bm >> sc0) & 1 ? 0 : in - a;
        uint64_t tail = (bm >> sc1) & 1 ? 0 : b - in - n;
        if (!owned && s->data) {
            host = start;       /* a data file maps guest offsets 1:1 */
        } else if (!owned) {
            bool fresh;
            int64_t h = qcow2_alloc_cluster(s, &fresh);
            if (h < 0) {
                return (int)h;
            }
            host = (uint64_t)h;
        }
        if (head && (ret = sc_fill(bs, start, e, bm, in - head, in, s->cow_buf)) < 0) {
            return ret;
        }
        if (tail && (ret = sc_fill(bs, start, e, bm, in + n, in + n + tail,
                                   s->cow_buf2)) < 0) {
            return ret;
        }
        struct iovec v[QCOW2_IOV_STACK + 2];
        int cnt = 0;
        if (head) {
            v[cnt++] = (struct iovec){ s->cow_buf, head };
        }
        int m = qcow2_iov_slice(iov, iovcnt, iov_off, n, v + cnt, QCOW2_IOV_STACK);
        if (m < 0) {
            /* Too many pieces: gather them behind the head. */
            uint8_t *g = malloc(head + n + tail);
            if (!g) {
                return -ENOMEM;
            }
            memcpy(g, s->cow_buf, head);
            iov_to_buf(iov, iovcnt, iov_off, g + head, n);
            memcpy(g + head + n, s->cow_buf2, tail);
            ret = bdrv_pwrite(qcow2_data_node(s), host + in - head, g, head + n + tail, 0);
            free(g);
        } else {
            cnt += m;
            if (tail) {
                v[cnt++] = (struct iovec){ s->cow_buf2, tail };
            }
            ret = bdrv_pwritev(qcow2_data_node(s), host + in - head, v, cnt, 0);
        }
        if (ret < 0) {
            return ret;
        }
        uint64_t touched = qcow2_sc_mask(sc0, sc1 - sc0 + 1);
        uint64_t nbm = (bm | touched) & ~(touched << 32);
        uint64_t ne = host | QCOW2_OFLAG_COPIED;
        if (ne == e && nbm == bm) {
            return 0;
        }
        return qcow2_write_l2_entry_bm(s, l2_off, t, l2_index, ne, nbm);
    }

    /* Shared or compressed: a new cluster with everything in it. */
    if (s->data) {
        qcow2_signal_corruption(s, "compressed cluster in an image with a data file");
        return -EIO;
    }
    if (ty == QCOW2_C_COMPRESSED) {
        ret = qcow2_read_compressed(s, e, s->cow_buf);
    } else {
        ret = sc_fill(bs, start, e, bm, 0, s->cluster_size, s->cow_buf);
    }
    if (ret < 0) {
        return ret;
    }
    iov_to_buf(iov, iovcnt, iov_off, s->cow_buf + in, n);
    bool fresh;
    int64_t h = qcow2_alloc_cluster(s, &fresh);
    if (h < 0) {
        return (int)h;
    }
    ret = bdrv_pwrite(s->file, (uint64_t)h, s->cow_buf, s->cluster_size, 0);
    if (ret < 0) {
        return ret;
    }
    ret = qcow2_write_l2_entry_bm(s, l2_off, t, l2_index, (uint64_t)h | QCOW2_OFLAG_COPIED,
                            QCOW2_BM_ALLOC_ALL);
    if (ret < 0) {
        return ret;
    }
    return qcow2_add_pending(s, e);
}

/*
 * Extended L2: the whole subclusters of [cur, cur+n) (inside one cluster)
 * read as zeroes by their zero bits. 1 when the cluster is shared or
 * compressed (the caller writes zeroes instead). Caller holds the lock.
 */
static int ext_zero_subclusters(struct bdrv_node *bs, uint64_t cur, uint64_t n)
{
    struct qcow2_state *s = bs->opaque;
    uint64_t l1_index = cur >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_index = (cur >> s->cluster_bits) & (s->l2_size - 1);
    uint64_t in = cur & s->cluster_mask, l2_off;
    int ret;

    uint8_t *t = qcow2_l2_table(s, l1_index, &l2_off, &ret);
    if (ret < 0) {
        return ret;
    }
    uint64_t e = t ? qcow2_l2_get(s, t, l2_index) : 0;
    uint64_t bm = t ? qcow2_l2_bitmap(s, t, l2_index) : 0;
    if ((ret = qcow2_check_ext_entry(s, e, bm)) < 0) {
        return ret;
    }
    enum qcow2_ctype ty = qcow2_classify(s, e);
    if (ty == QCOW2_C_COMPRESSED || (ty == QCOW2_C_NORMAL && !cluster_owned(s, e))) {
        return 1;
    }
    unsigned sc0 = (unsigned)(in >> s->sc_bits);
    uint64_t m = qcow2_sc_mask(sc0, (unsigned)(n >> s->sc_bits));
    uint64_t nbm = (bm & ~m) | (m << 32);
    if (nbm == bm || (ty == QCOW2_C_UNALLOCATED && !bs->backing && !(bm & QCOW2_BM_ALLOC_ALL))) {
        return 0;   /* reads as zeroes already */
    }
    t = qcow2_l2_table_for_write(s, l1_index, &l2_off, &ret);
    if (!t) {
        return ret;
    }
    return qcow2_write_l2_entry_bm(s, l2_off, t, l2_index, qcow2_l2_get(s, t, l2_index), nbm);
}

/* qcow2_co_pwrite_zeroes with extended L2 entries: down to subclusters. */
int qcow2_ext_pwrite_zeroes(struct bdrv_node *bs, uint64_t offset, uint64_t end,
                             unsigned flags)
{
    struct qcow2_state *s = bs->opaque;
    uint64_t sc_mask = (1ull << s->sc_bits) - 1;
    uint64_t a = (offset + sc_mask) & ~sc_mask;
    uint64_t b = end == s->size ? qcow2_align_up(s, end) : end & ~sc_mask;
    uint64_t later[2][2];
    unsigned nb_later = 0;
    int ret = 0;

    if (a >= b) {
        return qcow2_write_zero_buffers(bs, offset, end);
    }
    ret = qcow2_write_zero_buffers(bs, offset, a);
    if (ret == 0 && b < end) {
        ret = qcow2_write_zero_buffers(bs, b, end);
    }
    if (ret < 0) {
        return ret;
    }
    pthread_rwlock_wrlock(&s->io_lock);
    pthread_mutex_lock(&bs->lock);
    qcow2_reclaim(s);
    for (uint64_t cur = a; cur < b && ret >= 0;) {
        uint64_t n = MIN(b, (cur & ~s->cluster_mask) + s->cluster_size) - cur;
        if (n == s->cluster_size) {
            ret = qcow2_change_clusters(bs, cur, n, CHANGE_ZERO, flags & BDRV_REQ_MAY_UNMAP);
        } else {
            ret = ext_zero_subclusters(bs, cur, n);
            if (ret == 1) {     /* only the first and last cluster are partial */
                later[nb_later][0] = cur;
                later[nb_later][1] = MIN(cur + n, end);
                nb_later++;
                ret = 0;
            }
        }
        cur += n;
    }
    pthread_mutex_unlock(&bs->lock);
    pthread_rwlock_unlock(&s->io_lock);
    for (unsigned i = 0; i < nb_later && ret == 0; i++) {
        ret = qcow2_write_zero_buffers(bs, later[i][0], later[i][1]);
    }
    return ret;
}
