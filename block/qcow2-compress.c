/*
 * block/qcow2-compress.c — compressed cluster writes (qemu-img convert -c)
 * into unallocated clusters of a qcow2 image: raw deflate (window 2^12),
 * one compressed cluster per host cluster, so the unwritten tail of each
 * host cluster stays a hole in the file and only the compressed bytes
 * take space. Data first, L2 entry last.
 */
#include "block/qcow2.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Deflate one cluster into out (cs bytes); compressed length, or 0 when
 * it does not get smaller. */
static size_t deflate_cluster(const uint8_t *in, size_t cs, uint8_t *out)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        return 0;
    }
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)cs;
    z.next_out = out;
    z.avail_out = (uInt)(cs - 1);   /* not smaller than the cluster: give up */
    int r = deflate(&z, Z_FINISH);
    size_t n = cs - 1 - z.avail_out;
    deflateEnd(&z);
    return r == Z_STREAM_END ? n : 0;
}

/* The L2 table for l1 index i, made (zeroed) when the image has none yet.
 * Caller holds bs->lock. */
static uint8_t *l2_for_compressed(struct qcow2_state *s, uint64_t i, uint64_t *l2_off,
                                  int *ret)
{
    uint64_t l1e = s->l1[i];
    if (l1e & QCOW2_L1E_OFFSET_MASK) {
        if (!(l1e & QCOW2_OFLAG_COPIED)) {
            *ret = -ENOTSUP;        /* shared with a snapshot */
            return NULL;
        }
        *l2_off = l1e & QCOW2_L1E_OFFSET_MASK;
        return qcow2_cache_get(s, &s->l2_cache, *l2_off, ret);
    }
    bool fresh;
    int64_t n = qcow2_alloc_cluster(s, &fresh);
    if (n < 0) {
        *ret = (int)n;
        return NULL;
    }
    if (!fresh) {
        *ret = bdrv_pwrite(s->file, (uint64_t)n, s->zero_cluster, s->cluster_size, 0);
        if (*ret < 0) {
            return NULL;
        }
    }
    qcow2_cache_put(&s->l2_cache, (uint64_t)n, s->zero_cluster);
    uint8_t b[8];
    qcow2_put_be64(b, (uint64_t)n | QCOW2_OFLAG_COPIED);
    *ret = bdrv_pwrite(s->file, s->l1_offset + i * 8, b, 8, 0);
    if (*ret < 0) {
        return NULL;
    }
    s->l1[i] = (uint64_t)n | QCOW2_OFLAG_COPIED;
    *l2_off = (uint64_t)n;
    return qcow2_cache_get(s, &s->l2_cache, (uint64_t)n, ret);
}

int qcow2_write_compressed(struct bdrv_node *bs, uint64_t offset, const void *buf,
                           uint64_t bytes)
{
    struct qcow2_state *s = bs->opaque;
    size_t cs = s->cluster_size;
    if ((offset & s->cluster_mask) || bytes > cs ||
        (bytes < cs && offset + bytes != s->size) ||
        s->compression != QCOW2_COMPRESS_ZLIB) {
        return -ENOTSUP;
    }
    uint8_t *in = malloc(cs), *out = malloc(cs);
    int ret = -ENOMEM;
    if (!in || !out) {
        goto out_free;
    }
    memcpy(in, buf, bytes);
    memset(in + bytes, 0, cs - bytes);
    size_t clen = deflate_cluster(in, cs, out);
    if (!clen) {
        ret = -ENOTSUP;
        goto out_free;
    }

    pthread_rwlock_rdlock(&s->io_lock);
    pthread_mutex_lock(&bs->lock);
    uint64_t c = offset >> s->cluster_bits;
    uint64_t i = c >> s->l2_bits, j = c & (s->l2_size - 1);
    uint64_t l2_off = 0;
    uint8_t *t = NULL;
    ret = s->writable && !s->data ? 0 : -ENOTSUP;    /* none in a data file */
    if (ret == 0 && i >= s->l1_size) {
        ret = -EINVAL;
    }
    if (ret == 0) {
        t = l2_for_compressed(s, i, &l2_off, &ret);
    }
    if (t && (qcow2_l2_get(s, t, j) || qcow2_l2_bitmap(s, t, j))) {
        ret = -ENOTSUP;             /* already allocated: write it normally */
        t = NULL;
    }
    if (t) {
        bool fresh;
        int64_t host = qcow2_alloc_cluster(s, &fresh);
        if (host < 0) {
            ret = (int)host;
        } else {
            ret = bdrv_pwrite(s->file, (uint64_t)host, out, clen, 0);
            /* nb of 512-byte sectors spanned, minus one */
            uint64_t nsec = (clen + 511) / 512 - 1;
            uint64_t e = QCOW2_OFLAG_COMPRESSED | (nsec << s->csize_shift) |
                         ((uint64_t)host & s->coffset_mask);
            uint8_t be[16] = { 0 };     /* an extended entry's bitmap stays 0 */
            qcow2_put_be64(be, e);
            /* The table may have moved in the cache meanwhile. */
            if (ret == 0) {
                t = qcow2_cache_get(s, &s->l2_cache, l2_off, &ret);
            }
            if (ret == 0 && t) {
                ret = bdrv_pwrite(s->file, l2_off + j * s->l2e_size, be, s->l2e_size, 0);
                if (ret == 0) {
                    memcpy(t + j * s->l2e_size, be, s->l2e_size);   /* write-through */
                }
            }
            if (ret < 0) {
                /* Nothing points at it: give the cluster back. */
                qcow2_free_clusters(s, (uint64_t)host, cs);
            }
        }
    }
    pthread_mutex_unlock(&bs->lock);
    pthread_rwlock_unlock(&s->io_lock);
out_free:
    free(in);
    free(out);
    return ret;
}
