/*
 * tools/nbd/export.c — the block-backend glue behind an NBD export: opens
 * the image through the block layer, serves a window of it (-o, -P) with
 * blk_aio_* requests, and reports block status; raw images over a plain
 * file also offer a read-only descriptor for zero-copy sends.
 */
#include "tools/nbd/export.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Operations                                                          */
/* ------------------------------------------------------------------ */

static int ex_read(void *opaque, uint64_t off, void *buf, uint32_t len,
                   nbd_done_fn *cb, void *cb_opaque)
{
    struct nbd_blk_export *ex = opaque;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    return blk_aio_preadv(ex->blk, ex->base + off, &iov, 1, cb, cb_opaque);
}

static int ex_write(void *opaque, uint64_t off, const void *buf, uint32_t len,
                    unsigned flags, nbd_done_fn *cb, void *cb_opaque)
{
    struct nbd_blk_export *ex = opaque;
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    unsigned bf = (flags & NBD_CMD_FLAG_FUA) ? BDRV_REQ_FUA : 0;
    return blk_aio_pwritev(ex->blk, ex->base + off, &iov, 1, bf, cb, cb_opaque);
}

static int ex_flush(void *opaque, nbd_done_fn *cb, void *cb_opaque)
{
    struct nbd_blk_export *ex = opaque;
    return blk_aio_flush(ex->blk, cb, cb_opaque);
}

/* TRIM with FUA: discard, then flush. */
struct trim_fua {
    struct nbd_blk_export *ex;
    nbd_done_fn *cb;
    void *cb_opaque;
};

static void trim_flushed(void *opaque, int ret)
{
    struct trim_fua *t = opaque;
    nbd_done_fn *cb = t->cb;
    void *cbo = t->cb_opaque;
    free(t);
    cb(cbo, ret);
}

static void trim_discarded(void *opaque, int ret)
{
    struct trim_fua *t = opaque;
    if (ret == 0) {
        ret = blk_aio_flush(t->ex->blk, trim_flushed, t);
        if (ret == 0) {
            return;
        }
    }
    trim_flushed(t, ret);
}

static int ex_trim(void *opaque, uint64_t off, uint32_t len, unsigned flags,
                   nbd_done_fn *cb, void *cb_opaque)
{
    struct nbd_blk_export *ex = opaque;
    if (!(flags & NBD_CMD_FLAG_FUA)) {
        return blk_aio_pdiscard(ex->blk, ex->base + off, len, cb, cb_opaque);
    }
    struct trim_fua *t = malloc(sizeof(*t));
    if (!t) {
        return -ENOMEM;
    }
    *t = (struct trim_fua){ ex, cb, cb_opaque };
    int rc = blk_aio_pdiscard(ex->blk, ex->base + off, len, trim_discarded, t);
    if (rc < 0) {
        free(t);
    }
    return rc;
}

static int ex_write_zeroes(void *opaque, uint64_t off, uint32_t len,
                           unsigned flags, nbd_done_fn *cb, void *cb_opaque)
{
    struct nbd_blk_export *ex = opaque;
    unsigned bf = 0;
    if (flags & NBD_CMD_FLAG_FUA) {
        bf |= BDRV_REQ_FUA;
    }
    if (!(flags & NBD_CMD_FLAG_NO_HOLE)) {
        bf |= BDRV_REQ_MAY_UNMAP;
    }
    if (flags & NBD_CMD_FLAG_FAST_ZERO) {
        bf |= BDRV_REQ_NO_FALLBACK;
    }
    return blk_aio_pwrite_zeroes(ex->blk, ex->base + off, len, bf, cb, cb_opaque);
}

/* Completes on the next loop iteration, as every export operation may. */
struct deferred_done {
    nbd_done_fn *cb;
    void *cb_opaque;
    int ret;
};

static void deferred_run(void *opaque)
{
    struct deferred_done *d = opaque;
    d->cb(d->cb_opaque, d->ret);
    free(d);
}

static int complete_later(struct nbd_blk_export *ex, int ret, nbd_done_fn *cb,
                          void *cb_opaque)
{
    struct deferred_done *d = malloc(sizeof(*d));
    if (!d) {
        return -ENOMEM;
    }
    *d = (struct deferred_done){ cb, cb_opaque, ret };
    int rc = ev_defer(ex->loop, deferred_run, d);
    if (rc < 0) {
        free(d);
    }
    return rc;
}

static int ex_cache(void *opaque, uint64_t off, uint32_t len,
                    nbd_done_fn *cb, void *cb_opaque)
{
    struct nbd_blk_export *ex = opaque;
    /* Advisory: a readahead hint where the file is known, else nothing. */
    if (ex->zc_fd >= 0) {
        posix_fadvise(ex->zc_fd, ex->base + off, len, POSIX_FADV_WILLNEED);
    }
    return complete_later(ex, 0, cb, cb_opaque);
}

/*
 * Block status of a read-only export is looked up for a long span at once
 * and data runs are kept: READs of a sequential reader then find their run
 * in the cache instead of asking the file system (two lseeks per request
 * for raw) or walking L2 tables again. Holes and zeroes are not kept: some
 * other program may still write into a raw file we export read-only, and
 * a stale "data" answer only costs a read of what is there, while a stale
 * "zero" one would answer zeroes for its new data.
 */
#define BS_CACHE_SPAN   (256ull << 20)
/* Readahead hint size beyond a request (see ex_readahead). */
#define RA_AHEAD        (8ull << 20)

static int bs_lookup(struct nbd_blk_export *ex, uint64_t off, uint64_t want,
                     uint64_t *pnum, uint64_t *map, int *depth)
{
    if (!ex->bs_cached) {
        return bdrv_block_status(ex->root, off, want, pnum, map, depth);
    }
    for (unsigned i = 0; i < NBD_BS_CACHE_SLOTS; i++) {
        const struct nbd_bs_cache *c = &ex->bsc[i];
        if (off >= c->off && off - c->off < c->len) {
            uint64_t skip = off - c->off;
            *pnum = MIN(c->len - skip, want);
            *map = c->map + skip;
            *depth = c->depth;
            return c->ret;
        }
    }
    uint64_t span = MAX(want, MIN(BS_CACHE_SPAN, ex->base + ex->size - off));
    uint64_t n = 0, m = 0;
    int d = 0;
    int ret = bdrv_block_status(ex->root, off, span, &n, &m, &d);
    if (ret >= 0 && n > 0 && (ret & BDRV_BLOCK_DATA) && !(ret & BDRV_BLOCK_ZERO)) {
        ex->bsc[ex->bsc_next] = (struct nbd_bs_cache){
            .off = off, .len = n, .ret = ret, .map = m, .depth = d,
        };
        ex->bsc_next = (ex->bsc_next + 1) % NBD_BS_CACHE_SLOTS;
    }
    *pnum = MIN(n, want);
    *map = m;
    *depth = d;
    return ret;
}

/*
 * Spliced reads happen later on the event loop: ask the kernel to start
 * reading what is not cached yet, so that a cold page cache blocks the loop
 * less. A reader going on sequentially asks again only when it passes the
 * end of its window, RA_AHEAD at a time: one system call per few megabytes
 * rather than one per request.
 */
static void ex_readahead(struct nbd_blk_export *ex, int fd, uint64_t off,
                         uint64_t len)
{
    uint64_t end = off + len;
    struct nbd_ra_window *w = NULL;
    for (unsigned i = 0; i < NBD_RA_SLOTS; i++) {
        if (ex->ra[i].end && off >= ex->ra[i].start && off <= ex->ra[i].end) {
            w = &ex->ra[i];
            break;
        }
    }
    if (w && end <= w->end) {
        return;
    }
    uint64_t from = w ? w->end : off;
    if (!w) {
        w = &ex->ra[ex->ra_next];
        ex->ra_next = (ex->ra_next + 1) % NBD_RA_SLOTS;
        w->start = off;
    }
    w->end = end + RA_AHEAD;
    posix_fadvise(fd, from, w->end - from, POSIX_FADV_WILLNEED);
}

/* Block status: runs on a worker for formats with metadata, inline for raw. */
struct bs_job {
    struct nbd_blk_export *ex;
    uint64_t off;
    uint32_t len;
    struct nbd_extent *ext;
    unsigned max;
    unsigned *n;
    bool want_fd;
    nbd_done_fn *cb;
    void *cb_opaque;
};

static int bs_collect(struct bs_job *j)
{
    struct nbd_blk_export *ex = j->ex;
    uint64_t pos = 0;
    unsigned n = 0;
    while (pos < j->len && n < j->max) {
        uint64_t pnum = 0, map = 0;
        int depth = 0;
        uint64_t want = j->len - pos;
        int ret = bs_lookup(ex, ex->base + j->off + pos, want, &pnum, &map,
                            &depth);
        if (ret < 0) {
            if (n > 0) {
                break;      /* report what is known */
            }
            return ret;
        }
        if (pnum == 0) {
            break;
        }
        pnum = MIN(pnum, want);
        struct nbd_extent e = {
            .len = pnum,
            .flags = ((ret & BDRV_BLOCK_DATA) ? 0 : NBD_STATE_HOLE) |
                     ((ret & BDRV_BLOCK_ZERO) ? NBD_STATE_ZERO : 0),
            .depth = depth < 0 ? 0 : (uint32_t)depth + 1,
            .fd = -1,
        };
        /* only this node's own data lives in the descriptor's file */
        if (j->want_fd && ex->zc_fd >= 0 && depth == 0 &&
            (ret & BDRV_BLOCK_DATA) && !(ret & BDRV_BLOCK_ZERO)) {
            if (ret & BDRV_BLOCK_OFFSET_VALID) {
                e.fd = ex->zc_fd;
                e.foff = map;
            } else if (ex->zc_identity) {
                e.fd = ex->zc_fd;
                e.foff = ex->base + j->off + pos;
            }
        }
        if (e.fd >= 0) {
            ex_readahead(ex, e.fd, e.foff, e.len);
        }
        struct nbd_extent *prev = n ? &j->ext[n - 1] : NULL;
        if (prev && prev->flags == e.flags && prev->depth == e.depth &&
            prev->fd == e.fd && (e.fd < 0 || prev->foff + prev->len == e.foff) &&
            prev->len + e.len <= UINT32_MAX) {
            prev->len += e.len;
        } else {
            j->ext[n++] = e;
        }
        pos += pnum;
    }
    *j->n = n;
    return 0;
}

static int bs_work(void *opaque)
{
    return bs_collect(opaque);
}

static void bs_finish(void *opaque, int ret)
{
    struct bs_job *j = opaque;
    nbd_done_fn *cb = j->cb;
    void *cbo = j->cb_opaque;
    free(j);
    cb(cbo, ret);
}

static int ex_block_status(void *opaque, uint64_t off, uint32_t len,
                           struct nbd_extent *ext, unsigned max, unsigned *n,
                           bool want_fd, nbd_done_fn *cb, void *cb_opaque)
{
    struct nbd_blk_export *ex = opaque;
    struct bs_job *j = malloc(sizeof(*j));
    if (!j) {
        return -ENOMEM;
    }
    *j = (struct bs_job){ ex, off, len, ext, max, n, want_fd, cb, cb_opaque };
    *n = 0;
    if (ex->bs_inline) {
        /* raw: a seek or two on a file; cheaper than a thread hop */
        int ret = bs_collect(j);
        free(j);
        cb(cb_opaque, ret);
        return 0;
    }
    int rc = tpool_submit(ex->pool, bs_work, bs_finish, j);
    if (rc < 0) {
        free(j);
    }
    return rc;
}

static const struct nbd_export_ops blk_export_ops = {
    .read = ex_read,
    .write = ex_write,
    .flush = ex_flush,
    .trim = ex_trim,
    .write_zeroes = ex_write_zeroes,
    .cache = ex_cache,
    .block_status = ex_block_status,
};

/* ------------------------------------------------------------------ */
/* Open / close                                                        */
/* ------------------------------------------------------------------ */

/*
 * A second, read-only descriptor on the image file lets reads be spliced
 * to the socket without passing through user space: for raw images, and
 * for clusters of a read-only qcow2 image itself (its backing files and
 * compressed clusters still go through the block layer). A writable qcow2
 * image could move a cluster between block status and the send, so it
 * never takes this path.
 */
static void setup_zero_copy(struct nbd_blk_export *ex, enum cache_mode cache)
{
    ex->zc_fd = -1;
    if (cache == CACHE_NONE || cache == CACHE_DIRECTSYNC) {
        return;     /* O_DIRECT data is not in the page cache */
    }
    const char *drv = bdrv_driver_name(ex->root);
    struct bdrv_node *file = bdrv_file_child(ex->root);
    if (!drv || !file || strcmp(bdrv_driver_name(file), "file") != 0) {
        return;
    }
    bool raw = strcmp(drv, "raw") == 0;
    if (!raw && !(strcmp(drv, "qcow2") == 0 && bdrv_is_force_read_only(ex->root))) {
        return;
    }
    int fd = open(bdrv_filename(file), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return;
    }
    ex->zc_fd = fd;
    ex->zc_identity = raw;
}

int nbd_blk_export_open(struct nbd_blk_export *ex, struct event_loop *loop,
                        const struct bdrv_open_opts *opts,
                        const struct nbd_export_cfg *cfg, struct error **errp)
{
    memset(ex, 0, sizeof(*ex));
    ex->zc_fd = -1;
    ex->loop = loop;
    struct blk_config bc = { .werror = ERROR_ACTION_REPORT,
                             .rerror = ERROR_ACTION_REPORT };
    ex->blk = blk_open(loop, opts, &bc, errp);
    if (!ex->blk) {
        return -EIO;
    }
    ex->root = blk_root(ex->blk);
    ex->pool = tpool_new(loop, 4, errp);
    if (!ex->pool) {
        blk_free(ex->blk);
        return -ENOMEM;
    }
    int64_t len = blk_getlength(ex->blk);
    if (len < 0) {
        error_setg_errno(errp, (int)-len, "cannot get the image size");
        goto out_free;
    }
    /* raw status is a seek or two; a read-only image's metadata is only
     * ever read, so its lock is never held long */
    ex->bs_inline = strcmp(bdrv_driver_name(ex->root), "raw") == 0 ||
                    blk_is_read_only(ex->blk);
    /* inline too, so the cache is only touched by the loop thread */
    ex->bs_cached = blk_is_read_only(ex->blk);
    uint64_t pstart = 0;
    if (cfg->partition) {
        uint64_t psize;
        if (nbd_find_partition(ex->blk, cfg->partition, &pstart, &psize, errp) < 0) {
            goto out_free;
        }
        len = pstart + psize;
    }
    ex->base = pstart + cfg->offset;
    if (ex->base > (uint64_t)len) {
        error_setg(errp, "offset %" PRIu64 " is beyond the end of the image",
                   cfg->offset);
        goto out_free;
    }
    ex->size = (uint64_t)len - ex->base;
    if (cfg->has_size) {
        if (cfg->size > ex->size) {
            error_setg(errp, "the export window ends beyond the image");
            goto out_free;
        }
        ex->size = cfg->size;
    }
    if (cfg->zero_copy) {
        setup_zero_copy(ex, cfg->cache);
    }
    uint32_t align = bdrv_request_alignment(ex->root);
    ex->exp = (struct nbd_export){
        .name = cfg->name,
        .description = cfg->description,
        .size = ex->size,
        .read_only = blk_is_read_only(ex->blk),
        .multi_conn = cfg->multi_conn,
        .can_fast_zero = true,
        .allocation_depth = cfg->allocation_depth,
        .min_block = align > 1 && align <= 65536 ? align : 1,
        .ops = &blk_export_ops,
        .opaque = ex,
    };
    return 0;

out_free:
    tpool_free(ex->pool);
    blk_free(ex->blk);
    ex->blk = NULL;
    return -EINVAL;
}

void nbd_blk_export_close(struct nbd_blk_export *ex)
{
    if (!ex->blk) {
        return;
    }
    blk_drain(ex->blk);
    tpool_free(ex->pool);
    blk_free(ex->blk);
    ex->blk = NULL;
    if (ex->zc_fd >= 0) {
        close(ex->zc_fd);
        ex->zc_fd = -1;
    }
}
