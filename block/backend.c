/*
 * block/backend.c — the block backend, the one handle devices and tools
 * hold: asynchronous requests run on the worker pool (page-cached reads
 * and writes inline while they do not block), complete on the event loop,
 * and pass the error policy, counters, dynamic read-only and removable
 * media on the way.
 */
#include "block/block-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BLK_POOL_THREADS 8
#define BLK_IOV_INLINE 4
#define BLK_FREE_CACHE 64

enum blk_req_type { REQ_READ, REQ_WRITE, REQ_FLUSH, REQ_DISCARD, REQ_ZERO };

struct blk_req {
    struct blk_backend *blk;
    enum blk_req_type type;
    uint64_t offset, bytes;
    unsigned flags;
    struct iovec *iov;
    int iovcnt;
    struct iovec iov_inline[BLK_IOV_INLINE];
    blk_complete_fn *cb;
    void *opaque;
    int ret;
    bool rejected;          /* refused as a write to a read-only backend */
    struct blk_req *next;   /* on the waiting, held or free list */
    struct bdrv_aio aio;    /* when it went to the kernel without a worker */
};

struct blk_backend {
    struct event_loop *loop;
    struct bdrv_node *root;         /* NULL: no medium */
    struct blk_config cfg;
    struct thread_pool *pool;       /* made on first use */

    const struct blk_dev_ops *dev_ops;
    void *dev_opaque;

    /* Everything below belongs to the loop thread. */
    unsigned inflight;              /* submitted, completion not yet run */
    struct blk_req *wait_head, **wait_tail;     /* over max_inflight */
    struct blk_req *held_head, **held_tail;     /* failed under "stop" */
    /* Completed on the loop thread itself (fast-path reads, refusals):
     * run as one batch at the loop's next iteration through ev_soon,
     * which costs no allocation, syscall or clock read. */
    struct blk_req *ready_head, **ready_tail;
    struct ev_soon ready_soon;
    /* The batch being completed: shared, not local, so that a callback
     * which drains (and so waits for these) completes them itself. */
    struct blk_req *batch_head;
    unsigned batch_depth;           /* run_batch calls on the stack */
    bool free_pending;              /* blk_free called from inside one */
    bool stopped;
    struct blk_req *free_list;
    unsigned nfree;
    /* Writes the root cannot start without a worker (qcow2's, say) are
     * done on the loop thread while they keep landing in the page cache
     * quickly; this budgets the ones that block (a flush for metadata
     * ordering, a read from the backing file, dirty-page throttling, a
     * lock a worker holds). */
    struct ev_inline inline_policy;
    struct blk_stats stats;
};

static void run_ready(void *opaque);

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */
/* ------------------------------------------------------------------ */

struct blk_backend *blk_new(struct event_loop *loop, struct bdrv_node *root,
                            const struct blk_config *cfg)
{
    struct blk_backend *blk = calloc(1, sizeof(*blk));
    if (!blk) {
        return NULL;
    }
    blk->loop = loop;
    blk->root = root;
    if (root) {
        bdrv_ref(root);
    }
    if (cfg) {
        blk->cfg = *cfg;
    }
    blk->wait_tail = &blk->wait_head;
    blk->held_tail = &blk->held_head;
    blk->ready_tail = &blk->ready_head;
    ev_soon_init(&blk->ready_soon, run_ready, blk);
    return blk;
}

struct blk_backend *blk_open(struct event_loop *loop,
                             const struct bdrv_open_opts *opts,
                             const struct blk_config *cfg, struct error **errp)
{
    struct bdrv_node *bs = bdrv_open(opts, errp);
    if (!bs) {
        return NULL;
    }
    struct blk_backend *blk = blk_new(loop, bs, cfg);
    bdrv_unref(bs);     /* the backend holds its own reference */
    if (!blk) {
        error_setg(errp, "Out of memory");
    }
    return blk;
}

static void req_free(struct blk_req *req)
{
    struct blk_backend *blk = req->blk;
    if (req->iov != req->iov_inline) {
        free(req->iov);
    }
    if (blk->nfree < BLK_FREE_CACHE) {
        req->next = blk->free_list;
        blk->free_list = req;
        blk->nfree++;
    } else {
        free(req);
    }
}

static void blk_destroy(struct blk_backend *blk);

void blk_free(struct blk_backend *blk)
{
    if (!blk) {
        return;
    }
    blk_drain(blk);
    if (blk->batch_depth) {
        /* Called from a completion callback: the batch being run still
         * uses the backend, which goes when that run ends. */
        blk->free_pending = true;
        return;
    }
    blk_destroy(blk);
}

static void blk_destroy(struct blk_backend *blk)
{
    ev_soon_cancel(blk->loop, &blk->ready_soon);
    /* Requests held by the "stop" policy complete with their error. */
    while (blk->held_head) {
        struct blk_req *req = blk->held_head;
        blk->held_head = req->next;
        req->cb(req->opaque, req->ret);
        req_free(req);
    }
    if (blk->pool) {
        tpool_free(blk->pool);
    }
    while (blk->free_list) {
        struct blk_req *req = blk->free_list;
        blk->free_list = req->next;
        free(req);
    }
    bdrv_unref(blk->root);
    free(blk);
}

void blk_set_dev_ops(struct blk_backend *blk, const struct blk_dev_ops *ops,
                     void *opaque)
{
    blk->dev_ops = ops;
    blk->dev_opaque = opaque;
}

bool blk_dev_is_tray_open(const struct blk_backend *blk)
{
    return blk->dev_ops && blk->dev_ops->is_tray_open &&
           blk->dev_ops->is_tray_open(blk->dev_opaque);
}

bool blk_dev_is_medium_locked(const struct blk_backend *blk)
{
    return blk->dev_ops && blk->dev_ops->is_locked &&
           blk->dev_ops->is_locked(blk->dev_opaque);
}

void blk_dev_eject_request(struct blk_backend *blk, bool force)
{
    if (blk->dev_ops && blk->dev_ops->eject_request) {
        blk->dev_ops->eject_request(blk->dev_opaque, force);
    }
}

void blk_dev_resized(struct blk_backend *blk)
{
    if (blk->dev_ops && blk->dev_ops->resized) {
        blk->dev_ops->resized(blk->dev_opaque);
    }
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

static struct blk_req *req_alloc(struct blk_backend *blk)
{
    struct blk_req *req = blk->free_list;
    if (req) {
        blk->free_list = req->next;
        blk->nfree--;
    } else if (!(req = malloc(sizeof(*req)))) {
        return NULL;
    }
    /* The fields every request path reads; the callers set the rest, and
     * aio only when it is used. */
    req->blk = blk;
    req->flags = 0;
    req->iovcnt = 0;
    req->ret = 0;
    req->rejected = false;
    req->next = NULL;
    return req;
}

/* Runs on a worker. */
static int req_work(void *opaque)
{
    struct blk_req *req = opaque;
    struct bdrv_node *bs = req->blk->root;
    switch (req->type) {
    case REQ_READ:
        return bdrv_preadv(bs, req->offset, req->iov, req->iovcnt);
    case REQ_WRITE:
        return bdrv_pwritev(bs, req->offset, req->iov, req->iovcnt, req->flags);
    case REQ_FLUSH:
        return bdrv_flush(bs);
    case REQ_DISCARD:
        return bdrv_pdiscard(bs, req->offset, req->bytes);
    case REQ_ZERO:
        return bdrv_pwrite_zeroes(bs, req->offset, req->bytes, req->flags);
    }
    return -EINVAL;
}

static void count(struct blk_backend *blk, struct blk_req *req, int ret)
{
    struct blk_stats *st = &blk->stats;
    switch (req->type) {
    case REQ_READ:
        st->rd_ops++;
        st->rd_bytes += ret == 0 ? req->bytes : 0;
        break;
    case REQ_WRITE:
        st->wr_ops++;
        st->wr_bytes += ret == 0 ? req->bytes : 0;
        break;
    case REQ_FLUSH:
        st->flush_ops++;
        break;
    case REQ_DISCARD:
        st->discard_ops++;
        break;
    case REQ_ZERO:
        st->zero_ops++;
        break;
    }
    if (req->rejected) {
        st->rejected_writes++;
    } else if (ret < 0) {
        st->errors++;
    }
}

static void start_req(struct blk_req *req);

/* Start requests that waited for a free slot. */
static void start_waiting(struct blk_backend *blk)
{
    while (blk->wait_head &&
           (!blk->cfg.max_inflight || blk->inflight < blk->cfg.max_inflight)) {
        struct blk_req *req = blk->wait_head;
        blk->wait_head = req->next;
        if (!blk->wait_head) {
            blk->wait_tail = &blk->wait_head;
        }
        req->next = NULL;
        start_req(req);
    }
}

/* On the loop thread: policy, counters, callback. */
static void req_complete(struct blk_req *req)
{
    struct blk_backend *blk = req->blk;
    int ret = req->ret;
    blk->inflight--;

    /* A write refused because the node turned read-only while it waited
     * (held by "stop", then resumed) is a refusal, not an I/O error: no
     * policy applies, and it is never held again. */
    if (ret == -EPERM && req->type != REQ_READ && req->type != REQ_FLUSH &&
        blk->root && bdrv_is_read_only(blk->root)) {
        req->rejected = true;
    }
    if (ret < 0 && !req->rejected) {
        enum error_action act = req->type == REQ_READ ? blk->cfg.rerror : blk->cfg.werror;
        if (act == ERROR_ACTION_STOP || (act == ERROR_ACTION_ENOSPC && ret == -ENOSPC)) {
            /* Held until blk_resume retries it; the device sees nothing. */
            count(blk, req, ret);
            blk->stopped = true;
            *blk->held_tail = req;
            blk->held_tail = &req->next;
            req->next = NULL;
            log_warn("I/O error on '%s' (%s), stopping the disk",
                     blk->root ? bdrv_filename(blk->root) : "", strerror(-ret));
            start_waiting(blk);
            return;
        }
        count(blk, req, ret);
        if (act == ERROR_ACTION_IGNORE) {
            ret = 0;
        }
    } else {
        count(blk, req, ret);
    }
    blk_complete_fn *cb = req->cb;
    void *opaque = req->opaque;
    req_free(req);
    start_waiting(blk);
    cb(opaque, ret);
}

/* Complete the current batch; what callbacks add to the ready list waits
 * for the next loop iteration (so long chains cannot starve the fds). */
static void run_batch(struct blk_backend *blk)
{
    blk->batch_depth++;
    while (blk->batch_head) {
        struct blk_req *req = blk->batch_head;
        blk->batch_head = req->next;
        req->next = NULL;
        req_complete(req);
    }
    if (--blk->batch_depth == 0 && blk->free_pending) {
        blk_destroy(blk);
    }
}

static void take_ready(struct blk_backend *blk)
{
    struct blk_req **tail = &blk->batch_head;
    while (*tail) {
        tail = &(*tail)->next;
    }
    *tail = blk->ready_head;
    blk->ready_head = NULL;
    blk->ready_tail = &blk->ready_head;
}

static void run_ready(void *opaque)
{
    struct blk_backend *blk = opaque;
    take_ready(blk);
    run_batch(blk);
}

/* Complete `req` (ret already set) at the loop's next iteration. */
static void complete_later(struct blk_req *req)
{
    struct blk_backend *blk = req->blk;
    *blk->ready_tail = req;
    blk->ready_tail = &req->next;
    req->next = NULL;
    ev_soon(blk->loop, &blk->ready_soon);
}

static void req_aio_done(struct bdrv_aio *aio, int ret)
{
    struct blk_req *req = (struct blk_req *)((char *)aio - offsetof(struct blk_req, aio));
    req->ret = ret;
    req_complete(req);
}

static void req_done(void *opaque, int ret)
{
    struct blk_req *req = opaque;
    req->ret = ret;
    req_complete(req);
}

/* Do writes to `bs` end in the page cache of local files, with nothing
 * (O_DIRECT, a flush per write, fault-injection hooks that may block, a
 * network peer whose requests should overlap, aio=threads asked for)
 * that argues for a worker? */
static bool writes_to_page_cache(const struct bdrv_node *bs)
{
    for (int depth = 0; bs; depth++) {
        if ((bs->cache != CACHE_WRITEBACK && bs->cache != CACHE_UNSAFE) ||
            bs->opts.io_hooks || depth > 16) {
            return false;
        }
        if (bs->drv == &bdrv_file_ops) {
            return bs->opts.aio == AIO_AUTO;
        }
        if (bs->drv != &bdrv_raw_ops && bs->drv != &bdrv_qcow2_ops) {
            return false;
        }
        /* A partial-cluster write may read the backing chain. */
        if (bs->backing && !writes_to_page_cache(bs->backing)) {
            return false;
        }
        bs = bs->file;
    }
    return false;
}

/* A plain write the node could not start without a worker: done here
 * and now if inline_policy allows it (then true, req->ret set). */
static bool write_inline(struct blk_backend *blk, struct blk_req *req)
{
    if (req->type != REQ_WRITE || req->flags || !writes_to_page_cache(blk->root)) {
        return false;
    }
    uint64_t t0 = clock_ns();
    if (!ev_inline_allowed(&blk->inline_policy, t0)) {
        return false;
    }
    req->ret = req_work(req);
    ev_inline_record(&blk->inline_policy, t0, clock_ns());
    return true;
}

static void start_req(struct blk_req *req)
{
    struct blk_backend *blk = req->blk;
    blk->inflight++;
    if (req->rejected) {
        goto defer;
    }
    if (!blk->root) {
        req->ret = -ENOMEDIUM;
        goto defer;
    }
    if (req->type == REQ_READ && !blk->cfg.may_block) {
        /* Fast path: a page-cache hit costs one syscall on this thread.
         * (Allowed to block, the plain read below is cheaper still.) */
        int r = bdrv_preadv_nowait(blk->root, req->offset, req->iov, req->iovcnt);
        if (r != -EAGAIN) {
            req->ret = r;
            goto defer;
        }
    }
    if (blk->cfg.may_block) {
        /* Blocking is allowed: no worker or kernel thread to hand off to
         * and wake up from, which costs more than a page-cached write. */
        req->ret = req_work(req);
        goto defer;
    }
    if ((req->type == REQ_READ || req->type == REQ_WRITE) && !req->flags) {
        /* Straight to the kernel (io_uring) where the node allows it. */
        req->aio = (struct bdrv_aio){
            .loop = blk->loop, .write = req->type == REQ_WRITE,
            .offset = req->offset, .bytes = req->bytes,
            .iov = req->iov, .iovcnt = req->iovcnt, .complete = req_aio_done,
        };
        if (bdrv_aio_submit(blk->root, &req->aio) == 0) {
            return;
        }
    }
    if (write_inline(blk, req)) {
        goto defer;
    }
    if (!blk->pool) {
        blk->pool = tpool_new(blk->loop, BLK_POOL_THREADS, NULL);
        if (!blk->pool) {
            req->ret = -ENOMEM;
            goto defer;
        }
    }
    if (tpool_submit(blk->pool, req_work, req_done, req) == 0) {
        return;
    }
    req->ret = -ENOMEM;
defer:
    complete_later(req);
}

static void submit(struct blk_req *req)
{
    struct blk_backend *blk = req->blk;
    if (blk->cfg.max_inflight && blk->inflight >= blk->cfg.max_inflight) {
        *blk->wait_tail = req;
        blk->wait_tail = &req->next;
        return;
    }
    start_req(req);
}

static int check_request(struct blk_backend *blk, uint64_t offset, uint64_t bytes)
{
    if (!blk->root) {
        return -ENOMEDIUM;
    }
    int64_t len = bdrv_getlength(blk->root);
    if (len < 0) {
        return (int)len;
    }
    if (offset > (uint64_t)len || bytes > (uint64_t)len - offset ||
        bytes > BDRV_MAX_REQUEST) {
        return -EINVAL;
    }
    return 0;
}

static int new_rw(struct blk_backend *blk, enum blk_req_type type, uint64_t offset,
                  const struct iovec *iov, int iovcnt, unsigned flags,
                  blk_complete_fn *cb, void *opaque)
{
    if (iovcnt < 0) {
        return -EINVAL;
    }
    uint64_t bytes = iovcnt == 1 ? iov[0].iov_len : iov_size(iov, iovcnt);
    int ret = check_request(blk, offset, bytes);
    if (ret < 0) {
        return ret;
    }
    struct blk_req *req = req_alloc(blk);
    if (!req) {
        return -ENOMEM;
    }
    req->iov = req->iov_inline;
    if (iovcnt > BLK_IOV_INLINE && !(req->iov = malloc(iovcnt * sizeof(*iov)))) {
        req->iov = req->iov_inline;
        req_free(req);
        return -ENOMEM;
    }
    if (iovcnt == 1) {
        req->iov[0] = iov[0];
    } else {
        memcpy(req->iov, iov, iovcnt * sizeof(*iov));
    }
    req->iovcnt = iovcnt;
    req->type = type;
    req->offset = offset;
    req->bytes = bytes;
    req->flags = flags;
    req->cb = cb;
    req->opaque = opaque;
    if (type == REQ_WRITE && bdrv_is_read_only(blk->root)) {
        req->rejected = true;
        req->ret = -EPERM;
    }
    submit(req);
    return 0;
}

int blk_aio_preadv(struct blk_backend *blk, uint64_t offset,
                   const struct iovec *iov, int iovcnt,
                   blk_complete_fn *cb, void *opaque)
{
    return new_rw(blk, REQ_READ, offset, iov, iovcnt, 0, cb, opaque);
}

int blk_aio_pwritev(struct blk_backend *blk, uint64_t offset,
                    const struct iovec *iov, int iovcnt, unsigned flags,
                    blk_complete_fn *cb, void *opaque)
{
    return new_rw(blk, REQ_WRITE, offset, iov, iovcnt, flags, cb, opaque);
}

static int new_other(struct blk_backend *blk, enum blk_req_type type, uint64_t offset,
                     uint64_t bytes, unsigned flags, blk_complete_fn *cb, void *opaque)
{
    int ret = type == REQ_FLUSH ? (blk->root ? 0 : -ENOMEDIUM)
                                : check_request(blk, offset, bytes);
    if (ret < 0) {
        return ret;
    }
    struct blk_req *req = req_alloc(blk);
    if (!req) {
        return -ENOMEM;
    }
    req->iov = req->iov_inline;
    req->type = type;
    req->offset = offset;
    req->bytes = bytes;
    req->flags = flags;
    req->cb = cb;
    req->opaque = opaque;
    if (type != REQ_FLUSH && bdrv_is_read_only(blk->root)) {
        req->rejected = true;
        req->ret = -EPERM;
    }
    submit(req);
    return 0;
}

int blk_aio_flush(struct blk_backend *blk, blk_complete_fn *cb, void *opaque)
{
    return new_other(blk, REQ_FLUSH, 0, 0, 0, cb, opaque);
}

int blk_aio_pdiscard(struct blk_backend *blk, uint64_t offset, uint64_t bytes,
                     blk_complete_fn *cb, void *opaque)
{
    return new_other(blk, REQ_DISCARD, offset, bytes, 0, cb, opaque);
}

int blk_aio_pwrite_zeroes(struct blk_backend *blk, uint64_t offset,
                          uint64_t bytes, unsigned flags,
                          blk_complete_fn *cb, void *opaque)
{
    return new_other(blk, REQ_ZERO, offset, bytes, flags, cb, opaque);
}

/* ------------------------------------------------------------------ */
/* Synchronous forms                                                   */
/* ------------------------------------------------------------------ */

int blk_pread(struct blk_backend *blk, uint64_t offset, void *buf, size_t bytes)
{
    int ret = check_request(blk, offset, bytes);
    if (ret < 0) {
        return ret;
    }
    ret = bdrv_pread(blk->root, offset, buf, bytes);
    blk->stats.rd_ops++;
    if (ret < 0) {
        blk->stats.errors++;
    } else {
        blk->stats.rd_bytes += bytes;
    }
    return ret;
}

int blk_pwrite(struct blk_backend *blk, uint64_t offset, const void *buf,
               size_t bytes, unsigned flags)
{
    int ret = check_request(blk, offset, bytes);
    if (ret < 0) {
        return ret;
    }
    blk->stats.wr_ops++;
    if (bdrv_is_read_only(blk->root)) {
        blk->stats.rejected_writes++;
        return -EPERM;
    }
    ret = bdrv_pwrite(blk->root, offset, buf, bytes, flags);
    if (ret < 0) {
        blk->stats.errors++;
    } else {
        blk->stats.wr_bytes += bytes;
    }
    return ret;
}

int blk_flush(struct blk_backend *blk)
{
    if (!blk->root) {
        return -ENOMEDIUM;
    }
    blk->stats.flush_ops++;
    int ret = bdrv_flush(blk->root);
    if (ret < 0) {
        blk->stats.errors++;
    }
    return ret;
}

/* ------------------------------------------------------------------ */
/* State                                                               */
/* ------------------------------------------------------------------ */

void blk_drain(struct blk_backend *blk)
{
    while (blk->inflight > 0 || blk->wait_head) {
        if (blk->batch_head || blk->ready_head) {
            /* Ours to complete, possibly from inside a completion. */
            take_ready(blk);
            run_batch(blk);
            continue;
        }
        ev_run_once(blk->loop, -1);
    }
}

unsigned blk_inflight(const struct blk_backend *blk)
{
    unsigned n = blk->inflight;
    for (struct blk_req *r = blk->wait_head; r; r = r->next) {
        n++;
    }
    return n;
}

int64_t blk_getlength(struct blk_backend *blk)
{
    return blk->root ? bdrv_getlength(blk->root) : -ENOMEDIUM;
}

bool blk_is_read_only(const struct blk_backend *blk)
{
    return blk->root ? bdrv_is_read_only(blk->root) : true;
}

bool blk_is_inserted(const struct blk_backend *blk)
{
    return blk->root != NULL;
}

struct bdrv_node *blk_root(struct blk_backend *blk)
{
    return blk->root;
}

int blk_set_read_only(struct blk_backend *blk, bool read_only,
                      struct error **errp)
{
    if (!blk->root) {
        error_setg(errp, "No medium");
        return -ENOMEDIUM;
    }
    /* Requests queued so far finish under the old mode. */
    blk_drain(blk);
    if (bdrv_is_read_only(blk->root) == read_only) {
        return 0;
    }
    int ret = bdrv_reopen_read_only(blk->root, read_only, errp);
    if (ret < 0) {
        return ret;
    }
    if (blk->dev_ops && blk->dev_ops->read_only_changed) {
        blk->dev_ops->read_only_changed(blk->dev_opaque, read_only);
    }
    return 0;
}

int blk_insert(struct blk_backend *blk, struct bdrv_node *root,
               struct error **errp)
{
    blk_drain(blk);
    if (root) {
        bdrv_ref(root);
    }
    struct bdrv_node *old = blk->root;
    blk->root = root;
    bdrv_unref(old);
    if (blk->dev_ops && blk->dev_ops->media_changed) {
        blk->dev_ops->media_changed(blk->dev_opaque, root != NULL);
    }
    return 0;
}

void blk_eject(struct blk_backend *blk)
{
    blk_insert(blk, NULL, NULL);
}

bool blk_is_stopped(const struct blk_backend *blk)
{
    return blk->stopped;
}

void blk_resume(struct blk_backend *blk)
{
    struct blk_req *req = blk->held_head;
    blk->held_head = NULL;
    blk->held_tail = &blk->held_head;
    blk->stopped = false;
    while (req) {
        struct blk_req *next = req->next;
        req->next = NULL;
        req->ret = 0;
        submit(req);
        req = next;
    }
}

void blk_get_stats(const struct blk_backend *blk, struct blk_stats *st)
{
    *st = blk->stats;
}
