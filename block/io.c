/*
 * block/io.c — the checking layer in front of every driver call: range
 * checks, read-only enforcement, alignment (bounce buffers and
 * read-modify-write for cache=none), detect-zeroes, statistics, and block
 * status through the backing chain. Drivers see only checked requests.
 */
#include "block/block-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define STAT_ADD(bs, field, n) __atomic_fetch_add(&(bs)->stats.field, (n), __ATOMIC_RELAXED)
#define ZERO_CHUNK (1u << 20)

static void drv_lock(struct bdrv_node *bs)
{
    if (!bs->drv->thread_safe) {
        pthread_mutex_lock(&bs->lock);
    }
}

static void drv_unlock(struct bdrv_node *bs)
{
    if (!bs->drv->thread_safe) {
        pthread_mutex_unlock(&bs->lock);
    }
}

int64_t bdrv_getlength(struct bdrv_node *bs)
{
    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    if (bs->drv->getlength) {
        return bs->drv->getlength(bs);
    }
    return (int64_t)bs->total_size;
}

/* 0 when [offset, offset+bytes) lies inside the node, else -EINVAL. */
static int check_range(struct bdrv_node *bs, uint64_t offset, uint64_t bytes)
{
    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    if (bytes > BDRV_MAX_REQUEST) {
        return -EINVAL;
    }
    int64_t len = bdrv_getlength(bs);
    if (len < 0) {
        return (int)len;
    }
    if (offset > (uint64_t)len || bytes > (uint64_t)len - offset) {
        return -EINVAL;
    }
    return 0;
}

/* iov_size without the loop for the common single buffer. */
static inline uint64_t iov_bytes(const struct iovec *iov, int iovcnt)
{
    return iovcnt == 1 ? iov[0].iov_len : iov_size(iov, iovcnt);
}

static bool is_aligned(uint64_t v, uint32_t al)
{
    return (v & (al - 1)) == 0;
}

static bool iov_aligned(const struct iovec *iov, int iovcnt, uint32_t al)
{
    for (int i = 0; i < iovcnt; i++) {
        if (!is_aligned((uintptr_t)iov[i].iov_base, al) ||
            !is_aligned(iov[i].iov_len, al)) {
            return false;
        }
    }
    return true;
}

/* Buffer alignment used for bounce buffers: O_DIRECT wants at least the
 * request alignment, and 4096 is always enough. */
static void *bounce_alloc(size_t len)
{
    void *p = NULL;
    if (posix_memalign(&p, 4096, len ? len : 1) != 0) {
        return NULL;
    }
    return p;
}

static int drv_preadv(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                      const struct iovec *iov, int iovcnt)
{
    if (!bs->drv->preadv) {
        return -ENOTSUP;
    }
    drv_lock(bs);
    int ret = bs->drv->preadv(bs, offset, bytes, iov, iovcnt, 0);
    drv_unlock(bs);
    return ret;
}

static int drv_pwritev(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                       const struct iovec *iov, int iovcnt, unsigned flags)
{
    if (!bs->drv->pwritev) {
        return -ENOTSUP;
    }
    drv_lock(bs);
    int ret = bs->drv->pwritev(bs, offset, bytes, iov, iovcnt,
                               bs->supports_fua ? flags : flags & ~BDRV_REQ_FUA);
    drv_unlock(bs);
    if (ret == 0 && (flags & BDRV_REQ_FUA) && !bs->supports_fua) {
        ret = bdrv_flush(bs);
    }
    return ret;
}

/* A read the driver cannot take as it is: read the covering aligned range
 * into a bounce buffer and copy out the part asked for. */
static int bounce_preadv(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                         const struct iovec *iov, int iovcnt)
{
    uint32_t al = bs->request_alignment;
    uint64_t start = ROUND_DOWN(offset, al);
    uint64_t end = ROUND_UP(offset + bytes, al);
    uint8_t *buf = bounce_alloc(end - start);
    if (!buf) {
        return -ENOMEM;
    }
    struct iovec biov = { buf, end - start };
    int ret = drv_preadv(bs, start, end - start, &biov, 1);
    if (ret == 0) {
        iov_from_buf(iov, iovcnt, 0, buf + (offset - start), bytes);
    }
    free(buf);
    return ret;
}

/* A write the driver cannot take as it is: with the range locked against
 * other writes, read the partial head and tail blocks, merge, write the
 * aligned range. */
static int bounce_pwritev(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                          const struct iovec *iov, int iovcnt, unsigned flags)
{
    uint32_t al = bs->request_alignment;
    uint64_t start = ROUND_DOWN(offset, al);
    uint64_t end = ROUND_UP(offset + bytes, al);
    uint8_t *buf = bounce_alloc(end - start);
    int ret = 0;
    if (!buf) {
        return -ENOMEM;
    }
    bool rmw = start != offset || end != offset + bytes;
    if (rmw) {
        pthread_rwlock_wrlock(&bs->rmw_lock);
        if (start != offset) {
            struct iovec h = { buf, al };
            ret = drv_preadv(bs, start, al, &h, 1);
        }
        if (ret == 0 && end != offset + bytes && (end - al != start || start == offset)) {
            struct iovec t = { buf + (end - al - start), al };
            ret = drv_preadv(bs, end - al, al, &t, 1);
        }
    } else {
        pthread_rwlock_rdlock(&bs->rmw_lock);
    }
    if (ret == 0) {
        iov_to_buf(iov, iovcnt, 0, buf + (offset - start), bytes);
        struct iovec biov = { buf, end - start };
        ret = drv_pwritev(bs, start, end - start, &biov, 1, flags);
    }
    pthread_rwlock_unlock(&bs->rmw_lock);
    free(buf);
    return ret;
}

int bdrv_preadv(struct bdrv_node *bs, uint64_t offset,
                const struct iovec *iov, int iovcnt)
{
    uint64_t bytes = iov_bytes(iov, iovcnt);
    int ret = check_range(bs, offset, bytes);
    if (ret < 0) {
        return ret;
    }
    STAT_ADD(bs, rd_ops, 1);
    STAT_ADD(bs, rd_bytes, bytes);
    if (bytes == 0) {
        return 0;
    }
    uint32_t al = bs->request_alignment;
    if (al > 1 && (!is_aligned(offset, al) || !is_aligned(bytes, al) ||
                   !iov_aligned(iov, iovcnt, al))) {
        ret = bounce_preadv(bs, offset, bytes, iov, iovcnt);
    } else {
        ret = drv_preadv(bs, offset, bytes, iov, iovcnt);
    }
    if (ret < 0) {
        STAT_ADD(bs, errors, 1);
    }
    return ret;
}

int bdrv_preadv_nowait(struct bdrv_node *bs, uint64_t offset,
                       const struct iovec *iov, int iovcnt)
{
    if (!bs || !bs->drv || !bs->drv->preadv_nowait || !bs->drv->thread_safe) {
        return -EAGAIN;
    }
    uint64_t bytes = iov_bytes(iov, iovcnt);
    int ret = check_range(bs, offset, bytes);
    if (ret < 0) {
        return ret;
    }
    uint32_t al = bs->request_alignment;
    if (bytes == 0 || (al > 1 && (!is_aligned(offset, al) || !is_aligned(bytes, al) ||
                                  !iov_aligned(iov, iovcnt, al)))) {
        return -EAGAIN;
    }
    ret = bs->drv->preadv_nowait(bs, offset, bytes, iov, iovcnt);
    if (ret == -EAGAIN) {
        return ret;
    }
    STAT_ADD(bs, rd_ops, 1);
    STAT_ADD(bs, rd_bytes, bytes);
    if (ret < 0) {
        STAT_ADD(bs, errors, 1);
    }
    return ret;
}

int bdrv_aio_submit(struct bdrv_node *bs, struct bdrv_aio *aio)
{
    if (!bs || !bs->drv || !bs->drv->aio_submit || !bs->drv->thread_safe) {
        return -ENOTSUP;
    }
    uint32_t al = bs->request_alignment;
    if (aio->write) {
        /* Refusals, zero detection and read-modify-write belong to the
         * synchronous path, which does them in one place. */
        if (bs->read_only || bs->detect_zeroes != DETECT_ZEROES_OFF || al > 1) {
            return -ENOTSUP;
        }
    } else if (al > 1 && (!is_aligned(aio->offset, al) || !is_aligned(aio->bytes, al) ||
                          !iov_aligned(aio->iov, aio->iovcnt, al))) {
        return -ENOTSUP;
    }
    if (aio->bytes == 0 || check_range(bs, aio->offset, aio->bytes) < 0) {
        return -ENOTSUP;
    }
    struct bdrv_node *saved_top = aio->top;
    if (!aio->top) {
        aio->top = bs;
    }
    int ret = bs->drv->aio_submit(bs, aio);
    if (ret < 0) {
        aio->top = saved_top;
        return ret;
    }
    if (aio->write) {
        STAT_ADD(bs, wr_ops, 1);
        STAT_ADD(bs, wr_bytes, aio->bytes);
    } else {
        STAT_ADD(bs, rd_ops, 1);
        STAT_ADD(bs, rd_bytes, aio->bytes);
    }
    return 0;
}

void bdrv_aio_complete(struct bdrv_aio *aio, int ret)
{
    if (ret < 0 && aio->top) {
        STAT_ADD(aio->top, errors, 1);
    }
    aio->complete(aio, ret);
}

int bdrv_pread(struct bdrv_node *bs, uint64_t offset, void *buf, size_t bytes)
{
    struct iovec iov = { buf, bytes };
    return bdrv_preadv(bs, offset, &iov, 1);
}

static bool iov_is_zero(const struct iovec *iov, int iovcnt)
{
    for (int i = 0; i < iovcnt; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t n = iov[i].iov_len;
        if (n && (p[0] || memcmp(p, p + 1, n - 1))) {
            return false;
        }
    }
    return true;
}

static int do_pwrite_zeroes(struct bdrv_node *bs, uint64_t offset,
                            uint64_t bytes, unsigned flags);

int bdrv_pwritev(struct bdrv_node *bs, uint64_t offset,
                 const struct iovec *iov, int iovcnt, unsigned flags)
{
    uint64_t bytes = iov_bytes(iov, iovcnt);
    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    if (bs->read_only) {
        STAT_ADD(bs, rejected_writes, 1);
        return -EPERM;
    }
    int ret = check_range(bs, offset, bytes);
    if (ret < 0) {
        return ret;
    }
    STAT_ADD(bs, wr_ops, 1);
    STAT_ADD(bs, wr_bytes, bytes);
    if (bytes == 0) {
        return 0;
    }
    if (bs->detect_zeroes != DETECT_ZEROES_OFF && iov_is_zero(iov, iovcnt)) {
        unsigned zflags = flags & BDRV_REQ_FUA;
        if (bs->detect_zeroes == DETECT_ZEROES_UNMAP) {
            zflags |= BDRV_REQ_MAY_UNMAP;
        }
        ret = do_pwrite_zeroes(bs, offset, bytes, zflags);
        goto out;
    }
    uint32_t al = bs->request_alignment;
    if (al > 1) {
        if (!is_aligned(offset, al) || !is_aligned(bytes, al) ||
            !iov_aligned(iov, iovcnt, al)) {
            ret = bounce_pwritev(bs, offset, bytes, iov, iovcnt, flags);
        } else {
            pthread_rwlock_rdlock(&bs->rmw_lock);
            ret = drv_pwritev(bs, offset, bytes, iov, iovcnt, flags);
            pthread_rwlock_unlock(&bs->rmw_lock);
        }
    } else {
        ret = drv_pwritev(bs, offset, bytes, iov, iovcnt, flags);
    }
out:
    if (ret < 0) {
        STAT_ADD(bs, errors, 1);
    }
    return ret;
}

int bdrv_pwrite(struct bdrv_node *bs, uint64_t offset, const void *buf,
                size_t bytes, unsigned flags)
{
    struct iovec iov = { (void *)buf, bytes };
    return bdrv_pwritev(bs, offset, &iov, 1, flags);
}

/* Zeroes by writing buffers, for drivers (or ranges) without a native
 * write-zeroes. Goes through the bounce path as needed. */
static int write_zero_buffers(struct bdrv_node *bs, uint64_t offset,
                              uint64_t bytes, unsigned flags)
{
    size_t chunk = MIN(bytes, (uint64_t)ZERO_CHUNK);
    void *zero = bounce_alloc(chunk);
    int ret = 0;
    if (!zero) {
        return -ENOMEM;
    }
    memset(zero, 0, chunk);
    uint32_t al = bs->request_alignment;
    while (bytes > 0 && ret == 0) {
        uint64_t n = MIN(bytes, (uint64_t)chunk);
        struct iovec iov = { zero, n };
        if (al > 1 && (!is_aligned(offset, al) || !is_aligned(n, al))) {
            ret = bounce_pwritev(bs, offset, n, &iov, 1, flags & BDRV_REQ_FUA);
        } else {
            ret = drv_pwritev(bs, offset, n, &iov, 1, flags & BDRV_REQ_FUA);
        }
        offset += n;
        bytes -= n;
    }
    free(zero);
    return ret;
}

/* Write zeroes on a checked, writable range. */
static int do_pwrite_zeroes(struct bdrv_node *bs, uint64_t offset,
                            uint64_t bytes, unsigned flags)
{
    if (bs->discard != DISCARD_UNMAP) {
        flags &= ~BDRV_REQ_MAY_UNMAP;
    }
    uint32_t al = bs->request_alignment;
    uint64_t head = 0, tail = 0;
    if (al > 1) {
        /* Unaligned edges as buffers, the aligned middle natively. */
        head = MIN(bytes, ROUND_UP(offset, al) - offset);
        tail = (offset + bytes) & (al - 1);
        if (head + tail >= bytes) {
            return write_zero_buffers(bs, offset, bytes, flags);
        }
    }
    int ret = -ENOTSUP;
    if (bs->drv->pwrite_zeroes) {
        drv_lock(bs);
        if (al > 1) {
            pthread_rwlock_rdlock(&bs->rmw_lock);
        }
        ret = bs->drv->pwrite_zeroes(bs, offset + head, bytes - head - tail, flags);
        if (al > 1) {
            pthread_rwlock_unlock(&bs->rmw_lock);
        }
        drv_unlock(bs);
    }
    if (ret == -ENOTSUP && !(flags & BDRV_REQ_NO_FALLBACK)) {
        ret = write_zero_buffers(bs, offset + head, bytes - head - tail, flags);
    }
    if (ret == 0 && head) {
        ret = write_zero_buffers(bs, offset, head, flags);
    }
    if (ret == 0 && tail) {
        ret = write_zero_buffers(bs, offset + bytes - tail, tail, flags);
    }
    if (ret == 0 && (flags & BDRV_REQ_FUA) && !bs->supports_fua) {
        ret = bdrv_flush(bs);
    }
    return ret;
}

int bdrv_pwrite_zeroes(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                       unsigned flags)
{
    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    if (bs->read_only) {
        STAT_ADD(bs, rejected_writes, 1);
        return -EPERM;
    }
    if (bytes > BDRV_MAX_REQUEST) {
        /* Zeroing large ranges is common (convert, create): split. */
        while (bytes > 0) {
            uint64_t n = MIN(bytes, (uint64_t)BDRV_MAX_REQUEST);
            int ret = bdrv_pwrite_zeroes(bs, offset, n, flags);
            if (ret < 0) {
                return ret;
            }
            offset += n;
            bytes -= n;
        }
        return 0;
    }
    int ret = check_range(bs, offset, bytes);
    if (ret < 0) {
        return ret;
    }
    STAT_ADD(bs, zero_ops, 1);
    if (bytes == 0) {
        return 0;
    }
    ret = do_pwrite_zeroes(bs, offset, bytes, flags);
    if (ret < 0) {
        STAT_ADD(bs, errors, 1);
    }
    return ret;
}

int bdrv_pdiscard(struct bdrv_node *bs, uint64_t offset, uint64_t bytes)
{
    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    if (bs->read_only) {
        STAT_ADD(bs, rejected_writes, 1);
        return -EPERM;
    }
    int64_t len = bdrv_getlength(bs);
    if (len < 0) {
        return (int)len;
    }
    if (offset > (uint64_t)len || bytes > (uint64_t)len - offset) {
        return -EINVAL;
    }
    STAT_ADD(bs, discard_ops, 1);
    if (bs->discard != DISCARD_UNMAP || !bs->drv->pdiscard) {
        return 0;   /* advisory: ignored */
    }
    /* Only whole aligned blocks are discarded. */
    uint32_t al = bs->request_alignment;
    uint64_t start = ROUND_UP(offset, al), end = ROUND_DOWN(offset + bytes, al);
    int ret = 0;
    while (start < end && ret == 0) {
        uint64_t n = MIN(end - start, (uint64_t)BDRV_MAX_REQUEST & ~(uint64_t)(al - 1));
        drv_lock(bs);
        ret = bs->drv->pdiscard(bs, start, n);
        drv_unlock(bs);
        start += n;
    }
    if (ret == -ENOTSUP) {
        ret = 0;
    }
    if (ret < 0) {
        STAT_ADD(bs, errors, 1);
    }
    return ret;
}

int bdrv_flush(struct bdrv_node *bs)
{
    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    STAT_ADD(bs, flush_ops, 1);
    int ret = 0;
    if (bs->drv->flush) {
        drv_lock(bs);
        ret = bs->drv->flush(bs);
        drv_unlock(bs);
    }
    if (ret == 0 && bs->file) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        STAT_ADD(bs, errors, 1);
    }
    return ret;
}

int bdrv_truncate(struct bdrv_node *bs, uint64_t size, struct error **errp)
{
    if (!bs || !bs->drv) {
        error_setg(errp, "No medium");
        return -ENOMEDIUM;
    }
    if (bs->read_only) {
        STAT_ADD(bs, rejected_writes, 1);
        error_setg(errp, "Image is read-only");
        return -EACCES;
    }
    if (!bs->drv->truncate) {
        error_setg(errp, "Image format '%s' does not support resizing", bs->drv->name);
        return -ENOTSUP;
    }
    drv_lock(bs);
    int ret = bs->drv->truncate(bs, size, errp);
    drv_unlock(bs);
    return ret;
}

/*
 * Status at one layer, refined by the file child when the driver points
 * there, then looked up in the backing chain for what is not allocated.
 * `d` is the depth of `bs` below the node the caller asked about.
 */
static int status_rec(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                      uint64_t *pnum, uint64_t *map, int *depth, int d)
{
    uint64_t n = bytes, m = 0;
    struct bdrv_node *file = NULL;
    int ret;

    if (bs->drv->block_status) {
        drv_lock(bs);
        ret = bs->drv->block_status(bs, offset, bytes, &n, &m, &file);
        drv_unlock(bs);
        if (ret < 0) {
            return ret;
        }
        if (n == 0 || n > bytes) {
            return -EIO;    /* driver bug: no progress */
        }
    } else {
        ret = BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED;
    }

    if (ret & BDRV_BLOCK_ALLOCATED) {
        if ((ret & BDRV_BLOCK_OFFSET_VALID) && file && file != bs) {
            uint64_t n2 = 0, m2 = 0;
            int64_t flen = bdrv_getlength(file);
            if (flen > 0 && m < (uint64_t)flen) {
                int r2 = status_rec(file, m, MIN(n, (uint64_t)flen - m), &n2, &m2, NULL, 0);
                if (r2 >= 0 && n2 > 0) {
                    ret = (ret & ~(BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO)) |
                          (r2 & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO));
                    n = MIN(n, n2);
                }
            }
        }
        *pnum = n;
        *map = m;
        if (depth) {
            *depth = d;
        }
        return ret;
    }

    if (bs->backing && !(ret & BDRV_BLOCK_ZERO)) {
        int64_t blen = bdrv_getlength(bs->backing);
        if (blen > 0 && offset < (uint64_t)blen) {
            int r2 = status_rec(bs->backing, offset, MIN(n, (uint64_t)blen - offset),
                                pnum, map, depth, d + 1);
            if (r2 < 0) {
                return r2;
            }
            return r2 & ~BDRV_BLOCK_ALLOCATED;
        }
        /* Past the backing file's end: reads as zeroes. */
    }
    *pnum = n;
    *map = m;
    if (depth) {
        *depth = -1;
    }
    return (ret & ~BDRV_BLOCK_DATA) | BDRV_BLOCK_ZERO;
}

int bdrv_block_status(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                      uint64_t *pnum, uint64_t *map, int *depth)
{
    uint64_t dummy_map = 0, dummy_pnum = 0;
    if (!map) {
        map = &dummy_map;
    }
    if (!pnum) {
        pnum = &dummy_pnum;
    }
    *pnum = 0;
    if (depth) {
        *depth = -1;
    }
    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    int64_t len = bdrv_getlength(bs);
    if (len < 0) {
        return (int)len;
    }
    if (offset >= (uint64_t)len || bytes == 0) {
        return 0;
    }
    bytes = MIN(bytes, (uint64_t)len - offset);
    return status_rec(bs, offset, bytes, pnum, map, depth, 0);
}

void bdrv_get_stats(struct bdrv_node *bs, struct bdrv_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (!bs) {
        return;
    }
#define LOAD(f) st->f = __atomic_load_n(&bs->stats.f, __ATOMIC_RELAXED)
    LOAD(rd_ops); LOAD(wr_ops); LOAD(flush_ops); LOAD(zero_ops);
    LOAD(discard_ops); LOAD(rd_bytes); LOAD(wr_bytes); LOAD(errors);
    LOAD(rejected_writes);
#undef LOAD
}
