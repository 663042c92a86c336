/*
 * block/file.c — the `file` protocol driver: POSIX files and block
 * devices. Opens O_RDONLY whenever the node is read-only, degrades on
 * auto-read-only, takes QEMU-compatible OFD locks, and does the syscalls
 * (through replaceable hooks, for fault injection) for the layers above.
 */
#include "block/block-int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* QEMU's lock byte layout: 100 + permission held, 200 + permission not
 * shared. Each byte is locked F_RDLCK; a conflict shows as another open
 * file description holding the byte. */
#define LOCK_PERM_BASE 100
#define LOCK_SHARED_BASE 200

/* io_uring requests in flight per node; beyond, the worker path. */
#define RING_DEPTH 64

/* Whether the kernel takes RWF_NOWAIT on buffered writes to this file
 * (ext4 refuses them with EOPNOTSUPP; XFS and btrfs take them). */
enum nowait_writes { NOWAIT_UNTRIED, NOWAIT_TAKEN, NOWAIT_REFUSED };

/* The node's io_uring, set up on first use for the loop that asked. */
struct file_ring {
    struct io_uring ring;
    struct event_loop *loop;
    int efd;                /* eventfd the ring signals completions on */
    unsigned inflight;
    struct ev_timer *retry; /* a failed submit is retried from here */
};

struct file_state {
    int fd;                 /* data descriptor: O_RDONLY iff read-only */
    int lock_fd;            /* O_RDONLY, carries the OFD locks; -1 = none */
    bool is_bdev;
    bool use_direct;
    unsigned locked_perm;   /* permission bytes we hold */
    unsigned locked_unshared;   /* "not shared" bytes we hold */
    const struct bdrv_io_hooks *hooks;
    struct file_ring *ring; /* NULL until the first aio request */
    bool ring_unusable;     /* setting one up failed: worker path only */

    /* Writes done on the loop thread, completed at its next iteration. */
    enum nowait_writes nowait_writes;
    struct ev_inline inline_policy; /* without RWF_NOWAIT: may they block? */
    struct event_loop *done_loop;
    struct ev_soon done_soon;
    struct file_aio *done_head, **done_tail;
};

/* ------------------------------------------------------------------ */
/* Syscalls through the hooks                                          */
/* ------------------------------------------------------------------ */

static ssize_t sys_preadv(struct file_state *s, const struct iovec *iov, int cnt, off_t off)
{
    if (s->hooks && s->hooks->preadv) {
        return s->hooks->preadv(s->hooks->opaque, s->fd, iov, cnt, off);
    }
    /* One buffer: pread spares the kernel copying in the iovec, which is
     * measurable against a page-cache hit. */
    ssize_t n = cnt == 1 ? pread(s->fd, iov[0].iov_base, iov[0].iov_len, off)
                         : preadv(s->fd, iov, cnt, off);
    return n < 0 ? -errno : n;
}

static ssize_t sys_pwritev(struct file_state *s, const struct iovec *iov, int cnt, off_t off)
{
    if (s->hooks && s->hooks->pwritev) {
        return s->hooks->pwritev(s->hooks->opaque, s->fd, iov, cnt, off);
    }
    ssize_t n = cnt == 1 ? pwrite(s->fd, iov[0].iov_base, iov[0].iov_len, off)
                         : pwritev(s->fd, iov, cnt, off);
    return n < 0 ? -errno : n;
}

static int sys_fdatasync(struct file_state *s)
{
    if (s->hooks && s->hooks->fdatasync) {
        return s->hooks->fdatasync(s->hooks->opaque, s->fd);
    }
    return fdatasync(s->fd) < 0 ? -errno : 0;
}

static int sys_fallocate(struct file_state *s, int mode, off_t off, off_t len)
{
    if (s->hooks && s->hooks->fallocate) {
        return s->hooks->fallocate(s->hooks->opaque, s->fd, mode, off, len);
    }
    return fallocate(s->fd, mode, off, len) < 0 ? -errno : 0;
}

static int sys_ftruncate(struct file_state *s, off_t len)
{
    if (s->hooks && s->hooks->ftruncate) {
        return s->hooks->ftruncate(s->hooks->opaque, s->fd, len);
    }
    return ftruncate(s->fd, len) < 0 ? -errno : 0;
}

/* Hooks report errors as -errno (or -1 with errno set, as a libc call
 * would); normalise to -errno. */
static ssize_t norm(ssize_t r)
{
    if (r == -1 && errno > 1) {
        return -errno;
    }
    return r;
}

/* ------------------------------------------------------------------ */
/* Locks                                                               */
/* ------------------------------------------------------------------ */

static int lock_byte(int fd, off_t byte, short type)
{
    struct flock fl = {
        .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1,
    };
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* Is `byte` locked by another open file description? 1 yes, 0 no, -errno. */
static int byte_taken(int fd, off_t byte)
{
    struct flock fl = {
        .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1,
    };
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        return -errno;
    }
    return fl.l_type != F_UNLCK;
}

/* Hold exactly the bytes for `perm` and `unshared`. */
static int apply_locks(struct file_state *s, unsigned perm, unsigned unshared)
{
    if (s->lock_fd < 0) {
        return 0;
    }
    for (unsigned i = 0; i < BDRV_PERM_COUNT; i++) {
        unsigned bit = BDRV_PERM(i);
        int r = lock_byte(s->lock_fd, LOCK_PERM_BASE + i, (perm & bit) ? F_RDLCK : F_UNLCK);
        if (r == 0) {
            r = lock_byte(s->lock_fd, LOCK_SHARED_BASE + i,
                          (unshared & bit) ? F_RDLCK : F_UNLCK);
        }
        if (r < 0) {
            return r;
        }
    }
    s->locked_perm = perm;
    s->locked_unshared = unshared;
    return 0;
}

/* Would `perm`/`unshared` conflict with other processes' locks? The
 * messages are QEMU's, so either program's user reads the same words. */
static int check_locks(struct file_state *s, unsigned perm, unsigned unshared,
                       const char *filename, struct error **errp)
{
    if (s->lock_fd < 0) {
        return 0;
    }
    for (unsigned i = 0; i < BDRV_PERM_COUNT; i++) {
        unsigned bit = BDRV_PERM(i);
        if (perm & bit) {
            int r = byte_taken(s->lock_fd, LOCK_SHARED_BASE + i);
            if (r != 0) {
                goto conflict_perm;
            }
            continue;
        conflict_perm:
            if (r < 0) {
                error_setg_errno(errp, -r, "Could not open '%s': Failed to check lock", filename);
                return r;
            }
            error_setg(errp, "Failed to get \"%s\" lock\n"
                       "Is another process using the image [%s]?",
                       bdrv_perm_name(i), filename);
            bdrv_error_errnum(errp, EAGAIN);
            return -EAGAIN;
        }
    }
    for (unsigned i = 0; i < BDRV_PERM_COUNT; i++) {
        unsigned bit = BDRV_PERM(i);
        if (unshared & bit) {
            int r = byte_taken(s->lock_fd, LOCK_PERM_BASE + i);
            if (r < 0) {
                error_setg_errno(errp, -r, "Could not open '%s': Failed to check lock", filename);
                return r;
            }
            if (r) {
                error_setg(errp, "Failed to get shared \"%s\" lock\n"
                           "Is another process using the image [%s]?",
                           bdrv_perm_name(i), filename);
                bdrv_error_errnum(errp, EAGAIN);
                return -EAGAIN;
            }
        }
    }
    return 0;
}

/* Take the locks for the node's mode: apply, then check (QEMU's order, so
 * two processes racing both see each other). */
static int take_locks(struct bdrv_node *bs, struct file_state *s, bool read_only,
                      struct error **errp)
{
    unsigned perm, shared;
    bdrv_node_perms(bs, read_only, &perm, &shared);
    unsigned old_perm = s->locked_perm, old_unshared = s->locked_unshared;
    int r = apply_locks(s, perm, BDRV_PERM_ALL & ~shared);
    if (r < 0) {
        if (bs->opts.locking == LOCKING_AUTO && (r == -EINVAL || r == -ENOTSUP || r == -ENOLCK)) {
            /* Filesystem without OFD locks: go on unlocked, as QEMU's auto. */
            close(s->lock_fd);
            s->lock_fd = -1;
            return 0;
        }
        error_setg_errno(errp, -r, "Could not open '%s': Failed to lock byte", bs->filename);
        apply_locks(s, old_perm, old_unshared);
        return r;
    }
    r = check_locks(s, perm, BDRV_PERM_ALL & ~shared, bs->filename, errp);
    if (r < 0) {
        apply_locks(s, old_perm, old_unshared);
    }
    return r;
}

/* ------------------------------------------------------------------ */
/* Open, close, reopen                                                 */
/* ------------------------------------------------------------------ */

static int open_flags(struct bdrv_node *bs, bool read_only)
{
    int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    if (bs->cache == CACHE_NONE || bs->cache == CACHE_DIRECTSYNC) {
        flags |= O_DIRECT;
    }
    return flags;
}

static bool is_no_write_access(int err)
{
    return err == EACCES || err == EROFS || err == EPERM;
}

/* Smallest O_DIRECT alignment the descriptor accepts. */
static uint32_t probe_alignment(struct file_state *s)
{
    if (s->is_bdev) {
        int ss = 0;
        if (ioctl(s->fd, BLKSSZGET, &ss) == 0 && ss > 0) {
            return (uint32_t)ss;
        }
        return 4096;
    }
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, 4096) != 0) {
        return 4096;
    }
    uint32_t al = 4096;
    for (uint32_t a = 512; a < 4096; a *= 2) {
        if (pread(s->fd, buf, a, 0) >= 0 || errno != EINVAL) {
            al = a;
            break;
        }
    }
    free(buf);
    return al;
}

static int64_t fd_length(struct file_state *s)
{
    if (s->is_bdev) {
        uint64_t size = 0;
        if (ioctl(s->fd, BLKGETSIZE64, &size) < 0) {
            return -errno;
        }
        return (int64_t)size;
    }
    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return st.st_size;
}

static int file_open(struct bdrv_node *bs, struct error **errp)
{
    struct file_state *s = bs->opaque;
    struct stat st;
    s->fd = -1;
    s->lock_fd = -1;
    s->hooks = bs->opts.io_hooks;

    if (stat(bs->filename, &st) < 0) {
        error_setg_errno(errp, errno, "Could not open '%s'", bs->filename);
        return -errno;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        /* QEMU's wording; a directory maps to -EISDIR. */
        int err = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        error_setg(errp, "'file' driver requires '%s' to be a regular file", bs->filename);
        bdrv_error_errnum(errp, err);
        return -err;
    }
    s->is_bdev = S_ISBLK(st.st_mode);
    s->use_direct = bs->cache == CACHE_NONE || bs->cache == CACHE_DIRECTSYNC;

    /* Read-only is decided: O_RDWR is never tried on a read-only node. */
    s->fd = open(bs->filename, open_flags(bs, bs->read_only));
    if (s->fd < 0 && !bs->read_only && bs->auto_read_only && is_no_write_access(errno)) {
        bs->read_only = true;
        bs->auto_degraded = true;
        s->fd = open(bs->filename, open_flags(bs, true));
    }
    if (s->fd < 0) {
        int err = errno;
        error_setg_errno(errp, err, "Could not open '%s'", bs->filename);
        return -err;
    }

    int ret;
    int64_t len = fd_length(s);
    if (len < 0) {
        ret = (int)len;
        error_setg_errno(errp, -ret, "Could not get the size of '%s'", bs->filename);
        goto out_close_fd;
    }
    bs->total_size = (uint64_t)len;
    bs->request_alignment = s->use_direct ? probe_alignment(s) : 1;
    bs->supports_fua = true;

    if (bs->opts.locking != LOCKING_OFF) {
        s->lock_fd = open(bs->filename, O_RDONLY | O_CLOEXEC);
        if (s->lock_fd < 0) {
            ret = -errno;
            error_setg_errno(errp, -ret, "Could not open '%s' for locking", bs->filename);
            goto out_close_fd;
        }
        ret = take_locks(bs, s, bs->read_only, errp);
        if (ret < 0) {
            goto out_close_lock;
        }
    }
    return 0;

out_close_lock:
    if (s->lock_fd >= 0) {
        close(s->lock_fd);
    }
out_close_fd:
    close(s->fd);
    return ret;
}

static void ring_free(struct file_state *s);

static void file_close(struct bdrv_node *bs)
{
    struct file_state *s = bs->opaque;
    ring_free(s);
    if (s->done_loop) {
        /* The core closes a node only with nothing in flight. */
        ev_soon_cancel(s->done_loop, &s->done_soon);
    }
    if (s->lock_fd >= 0) {
        close(s->lock_fd);     /* drops every OFD lock it carried */
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
}

struct file_reopen {
    int new_fd;
    unsigned old_perm, old_unshared;
};

static int file_reopen_prepare(struct bdrv_reopen_state *rs, struct error **errp)
{
    struct bdrv_node *bs = rs->bs;
    struct file_state *s = bs->opaque;
    struct file_reopen *r = calloc(1, sizeof(*r));
    if (!r) {
        error_setg(errp, "Out of memory");
        return -ENOMEM;
    }
    r->old_perm = s->locked_perm;
    r->old_unshared = s->locked_unshared;
    r->new_fd = open(bs->filename, open_flags(bs, rs->read_only));
    if (r->new_fd < 0) {
        int err = errno;
        error_setg_errno(errp, err, "Could not reopen '%s' %s", bs->filename,
                         rs->read_only ? "read-only" : "read-write");
        free(r);
        return -err;
    }
    /* Gaining write permission must not collide with another process;
     * losing it is done at commit, when the write descriptor goes. */
    if (!rs->read_only && s->lock_fd >= 0) {
        int ret = take_locks(bs, s, false, errp);
        if (ret < 0) {
            close(r->new_fd);
            free(r);
            return ret;
        }
    }
    rs->opaque = r;
    return 0;
}

static void file_reopen_commit(struct bdrv_reopen_state *rs)
{
    struct file_state *s = rs->bs->opaque;
    struct file_reopen *r = rs->opaque;
    close(s->fd);
    s->fd = r->new_fd;
    if (rs->read_only && s->lock_fd >= 0) {
        unsigned perm, shared;
        bdrv_node_perms(rs->bs, true, &perm, &shared);
        apply_locks(s, perm, BDRV_PERM_ALL & ~shared);
    }
    free(r);
    rs->opaque = NULL;
}

static void file_reopen_abort(struct bdrv_reopen_state *rs)
{
    struct file_state *s = rs->bs->opaque;
    struct file_reopen *r = rs->opaque;
    close(r->new_fd);
    apply_locks(s, r->old_perm, r->old_unshared);
    free(r);
    rs->opaque = NULL;
}

/* ------------------------------------------------------------------ */
/* I/O                                                                 */
/* ------------------------------------------------------------------ */

/* Advance an iovec array (a private copy) by n bytes. */
static void iov_advance(struct iovec **iov, int *cnt, size_t n)
{
    while (n > 0 && *cnt > 0) {
        if (n < (*iov)->iov_len) {
            (*iov)->iov_base = (char *)(*iov)->iov_base + n;
            (*iov)->iov_len -= n;
            return;
        }
        n -= (*iov)->iov_len;
        (*iov)++;
        (*cnt)--;
    }
}

#define IOV_STACK 16

static int file_preadv(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                       const struct iovec *iov, int iovcnt, unsigned flags)
{
    struct file_state *s = bs->opaque;
    ssize_t n = norm(sys_preadv(s, iov, iovcnt, offset));
    if (n == (ssize_t)bytes) {
        return 0;           /* the common case: one call, no copy */
    }
    if (n < 0 && n != -EINTR && n != -EAGAIN) {
        return (int)n;
    }
    struct iovec stack[IOV_STACK], *copy = stack;
    if (iovcnt > IOV_STACK && !(copy = malloc(iovcnt * sizeof(*copy)))) {
        return -ENOMEM;
    }
    memcpy(copy, iov, iovcnt * sizeof(*copy));
    struct iovec *cur = copy;
    int cnt = iovcnt;
    uint64_t done = n > 0 ? (uint64_t)n : 0;
    iov_advance(&cur, &cnt, done);
    int ret = 0;
    while (done < bytes) {
        n = norm(sys_preadv(s, cur, cnt, offset + done));
        if (n == -EINTR || n == -EAGAIN) {
            continue;
        }
        if (n < 0) {
            ret = (int)n;
            break;
        }
        if (n == 0) {
            /* End of file. Past the real end (an unaligned tail under
             * O_DIRECT, or a file truncated behind us) reads as zeroes;
             * before it, the short transfer is an error. */
            int64_t len = fd_length(s);
            if (len >= 0 && offset + done >= (uint64_t)len) {
                iov_memset(cur, cnt, 0, 0, bytes - done);
            } else {
                ret = -EIO;
            }
            break;
        }
        done += n;
        iov_advance(&cur, &cnt, n);
    }
    if (copy != stack) {
        free(copy);
    }
    return ret;
}

static int file_preadv_nowait(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                              const struct iovec *iov, int iovcnt)
{
    struct file_state *s = bs->opaque;
    if ((s->hooks && s->hooks->preadv) || s->use_direct) {
        return -EAGAIN;     /* hooks and O_DIRECT always take the full path */
    }
    ssize_t n = preadv2(s->fd, iov, iovcnt, offset, RWF_NOWAIT);
    if (n == (ssize_t)bytes) {
        return 0;
    }
    if (n < 0 && errno != EAGAIN && errno != EOPNOTSUPP && errno != EINTR) {
        return -errno;
    }
    return -EAGAIN;
}

static int file_pwritev(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                        const struct iovec *iov, int iovcnt, unsigned flags);

static bool flush_each_write(struct bdrv_node *bs)
{
    return bs->cache == CACHE_WRITETHROUGH || bs->cache == CACHE_DIRECTSYNC;
}

/* ------------------------------------------------------------------ */
/* io_uring                                                            */
/* ------------------------------------------------------------------ */

/* One request on the ring; a short transfer is resubmitted for the rest. */
struct file_aio {
    struct bdrv_aio *aio;
    struct bdrv_node *bs;
    uint64_t done;
    struct iovec *cur;      /* into iov[], advanced past what is done */
    int cnt;
    int ret;                /* done on the loop thread: its result */
    struct file_aio *next;  /* on the done list */
    struct iovec iov[];
};

static void ring_queue(struct file_state *s, struct file_aio *fa, struct io_uring_sqe *sqe)
{
    uint64_t off = fa->aio->offset + fa->done;
    if (fa->aio->write) {
        io_uring_prep_writev(sqe, s->fd, fa->cur, fa->cnt, off);
    } else {
        io_uring_prep_readv(sqe, s->fd, fa->cur, fa->cnt, off);
    }
    io_uring_sqe_set_data(sqe, fa);
}

static void ring_submit(struct file_ring *r);

static void ring_retry(void *opaque)
{
    struct file_ring *r = opaque;
    r->retry = NULL;
    ring_submit(r);
}

/* Submit what is queued. Should the kernel refuse for now (EAGAIN, EBUSY:
 * not expected with our depth), the entries stay queued and a timer tries
 * again, so no request waits for unrelated traffic. */
static void ring_submit(struct file_ring *r)
{
    int n;
    do {
        n = io_uring_submit(&r->ring);
    } while (n == -EINTR);
    if (n < 0 && !r->retry) {
        log_warn("io_uring submit failed: %s; retrying", strerror(-n));
        r->retry = ev_timer_add(r->loop, 1, ring_retry, r);
    }
}

static void ring_finish(struct file_state *s, struct file_aio *fa, int ret)
{
    s->ring->inflight--;
    struct bdrv_aio *aio = fa->aio;
    free(fa);
    bdrv_aio_complete(aio, ret);
}

static void ring_event(void *opaque, uint32_t events)
{
    struct bdrv_node *bs = opaque;
    struct file_state *s = bs->opaque;
    struct file_ring *r = s->ring;
    uint64_t cnt;
    ssize_t rd = read(r->efd, &cnt, sizeof(cnt));
    (void)rd;
    bool resubmit = false;
    struct io_uring_cqe *cqe;
    /* Each completion is taken off the ring before its callback runs. A
     * callback may submit, or even run the loop (a drain): the eventfd is
     * then re-signalled while completions remain, so the nested run
     * comes back here for them. */
    while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
        struct file_aio *fa = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        if (!fa) {
            continue;   /* a no-op filling a slot we could not use */
        }
        uint64_t want = fa->aio->bytes - fa->done;
        int ret = 1;    /* 1: not finished yet */
        if (res == -EINTR || res == -EAGAIN) {
            res = 0;
            goto requeue;
        }
        if (res < 0) {
            ret = res;
        } else if ((uint64_t)res == want) {
            ret = 0;
        } else if (res == 0) {
            if (fa->aio->write) {
                ret = -EIO;     /* no progress */
            } else {
                int64_t len = fd_length(s);
                if (len >= 0 && fa->aio->offset + fa->done >= (uint64_t)len) {
                    iov_memset(fa->cur, fa->cnt, 0, 0, want);
                    ret = 0;
                } else {
                    ret = -EIO;
                }
            }
        }
        if (ret != 1) {
            if (resubmit) {
                ring_submit(r);
                resubmit = false;
            }
            if (io_uring_cq_ready(&r->ring)) {
                uint64_t one = 1;
                ssize_t w = write(r->efd, &one, sizeof(one));
                (void)w;
            }
            ring_finish(s, fa, ret);
            /* The callback may have closed the node (last reference). */
            return;
        }
    requeue:
        fa->done += res;
        iov_advance(&fa->cur, &fa->cnt, res);
        struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
        if (!sqe) {
            /* Cannot happen: this request's own slot just freed up. */
            abort();
        }
        ring_queue(s, fa, sqe);
        resubmit = true;
    }
    if (resubmit) {
        ring_submit(r);
    }
}

static int ring_setup(struct bdrv_node *bs, struct file_state *s, struct event_loop *loop)
{
    struct file_ring *r = calloc(1, sizeof(*r));
    if (!r) {
        return -ENOMEM;
    }
    int ret = io_uring_queue_init(RING_DEPTH, &r->ring, 0);
    if (ret < 0) {
        goto out_free;
    }
    r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->efd < 0) {
        ret = -errno;
        goto out_exit_ring;
    }
    ret = io_uring_register_eventfd(&r->ring, r->efd);
    if (ret < 0) {
        goto out_close_efd;
    }
    r->loop = loop;
    ret = ev_fd_add(loop, r->efd, EPOLLIN, ring_event, bs);
    if (ret < 0) {
        goto out_close_efd;
    }
    s->ring = r;
    return 0;

out_close_efd:
    close(r->efd);
out_exit_ring:
    io_uring_queue_exit(&r->ring);
out_free:
    free(r);
    return ret;
}

static void ring_free(struct file_state *s)
{
    struct file_ring *r = s->ring;
    if (!r) {
        return;
    }
    /* The core closes a node only with nothing in flight. */
    ev_timer_cancel(r->loop, r->retry);
    ev_fd_remove(r->loop, r->efd);
    io_uring_queue_exit(&r->ring);
    close(r->efd);
    free(r);
    s->ring = NULL;
}

static struct file_aio *aio_new(struct bdrv_node *bs, struct bdrv_aio *aio,
                                uint64_t done, bool copy_iov)
{
    int cnt = copy_iov ? aio->iovcnt : 0;
    struct file_aio *fa = malloc(sizeof(*fa) + cnt * sizeof(struct iovec));
    if (!fa) {
        return NULL;
    }
    fa->aio = aio;
    fa->bs = bs;
    fa->done = 0;
    fa->ret = 0;
    fa->next = NULL;
    fa->cur = fa->iov;
    fa->cnt = cnt;
    if (cnt) {
        memcpy(fa->iov, aio->iov, cnt * sizeof(struct iovec));
        fa->done = done;
        iov_advance(&fa->cur, &fa->cnt, done);
    }
    return fa;
}

/* Queue a request on the node's ring (set up on first use), `done` bytes
 * of it already transferred. */
static int ring_start(struct bdrv_node *bs, struct file_state *s, struct bdrv_aio *aio,
                      uint64_t done)
{
    if (!s->ring) {
        int ret = ring_setup(bs, s, aio->loop);
        if (ret < 0) {
            s->ring_unusable = true;
            log_debug("'%s': no io_uring (%s); using worker threads", bs->filename,
                      strerror(-ret));
            return -ENOTSUP;
        }
    }
    struct file_ring *r = s->ring;
    if (r->loop != aio->loop) {
        return -ENOTSUP;
    }
    if (r->inflight >= RING_DEPTH) {
        return -EAGAIN;
    }
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) {
        return -EAGAIN;
    }
    struct file_aio *fa = aio_new(bs, aio, done, true);
    if (!fa) {
        /* The entry we took stays empty: make it a no-op. */
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data(sqe, NULL);
        return -EAGAIN;
    }
    ring_queue(s, fa, sqe);
    r->inflight++;
    ring_submit(r);
    return 0;
}

/* At the loop's next iteration: complete a write done on its thread. One
 * per run, with the next one queued first: the callback may run the loop
 * (a drain waits for the others) or close the node. */
static void inline_done(void *opaque)
{
    struct file_state *s = opaque;
    struct file_aio *fa = s->done_head;
    if (!fa) {
        return;
    }
    s->done_head = fa->next;
    if (!s->done_head) {
        s->done_tail = &s->done_head;
    } else {
        ev_soon(s->done_loop, &s->done_soon);
    }
    struct bdrv_aio *aio = fa->aio;
    int ret = fa->ret;
    free(fa);
    bdrv_aio_complete(aio, ret);
}

/* Queue a write done on the loop thread for completion at the loop's
 * next iteration (aio_submit never completes from inside the call). */
static int inline_finish(struct file_state *s, struct file_aio *fa, int ret)
{
    fa->ret = ret;
    *s->done_tail = fa;
    s->done_tail = &fa->next;
    ev_soon(s->done_loop, &s->done_soon);
    return 0;
}

/*
 * A buffered write in the page cache costs a few microseconds, less than
 * handing it to another thread (io_uring gives buffered writes that
 * cannot be done without blocking to its kernel workers, as it does all
 * of ext4's) and being woken up by its completion. So a write is done on
 * the loop thread when it will not block: with RWF_NOWAIT where the
 * kernel takes that, else as long as such writes keep being fast (see
 * struct ev_inline: the loop blocks in them for ~3% of its time at
 * most). Returns 0 when done (completion queued), 1 when the
 * write is to be handed off (nothing written), or -errno as aio_submit.
 */
static int write_inline(struct bdrv_node *bs, struct file_state *s, struct bdrv_aio *aio)
{
    if (s->use_direct) {
        return 1;       /* O_DIRECT waits for the device */
    }
    if (!s->done_loop) {
        s->done_loop = aio->loop;
        ev_soon_init(&s->done_soon, inline_done, s);
        s->done_tail = &s->done_head;
    } else if (s->done_loop != aio->loop) {
        return 1;
    }
    uint64_t t0 = 0;
    if (s->nowait_writes == NOWAIT_REFUSED) {
        t0 = clock_ns();
        if (!ev_inline_allowed(&s->inline_policy, t0)) {
            return 1;
        }
    }
    /* Allocated first: once written, the request must complete here. */
    struct file_aio *fa = aio_new(bs, aio, 0, false);
    if (!fa) {
        return -EAGAIN;
    }
    if (s->nowait_writes != NOWAIT_REFUSED) {
        ssize_t n = pwritev2(s->fd, aio->iov, aio->iovcnt, aio->offset, RWF_NOWAIT);
        if (n == (ssize_t)aio->bytes) {
            s->nowait_writes = NOWAIT_TAKEN;
            return inline_finish(s, fa, 0);
        }
        if (n > 0) {
            /* The rest would block: the ring does it, or failing that
             * (nothing else may take a request half done) this thread. */
            s->nowait_writes = NOWAIT_TAKEN;
            if (!s->ring_unusable && ring_start(bs, s, aio, (uint64_t)n) == 0) {
                free(fa);
                return 0;
            }
            int ret = file_pwritev(bs, aio->offset, aio->bytes, aio->iov, aio->iovcnt, 0);
            return inline_finish(s, fa, ret);
        }
        if (n < 0 && (errno == EOPNOTSUPP || errno == ENOSYS)) {
            /* Not for this file, ever: stop paying a syscall to ask. */
            s->nowait_writes = NOWAIT_REFUSED;
            t0 = clock_ns();
        } else {
            /* Would block, or failed: the full path does it and judges
             * any error as every other write's. */
            free(fa);
            return 1;
        }
    }
    int ret = file_pwritev(bs, aio->offset, aio->bytes, aio->iov, aio->iovcnt, 0);
    uint64_t t1 = clock_ns();
    if (ev_inline_record(&s->inline_policy, t0, t1)) {
        log_debug("'%s': page-cache writes blocked (the last for %" PRIu64 " us); "
                  "handing them off for a while", bs->filename, (t1 - t0) / 1000);
    }
    return inline_finish(s, fa, ret);
}

static int file_aio_submit(struct bdrv_node *bs, struct bdrv_aio *aio)
{
    struct file_state *s = bs->opaque;
    if (bs->opts.aio == AIO_THREADS || s->hooks || (aio->write && flush_each_write(bs))) {
        return -ENOTSUP;
    }
    if (aio->write && bs->opts.aio == AIO_AUTO) {
        int ret = write_inline(bs, s, aio);
        if (ret <= 0) {
            return ret;
        }
    }
    if (s->ring_unusable) {
        return -ENOTSUP;
    }
    return ring_start(bs, s, aio, 0);
}

static int file_flush(struct bdrv_node *bs)
{
    struct file_state *s = bs->opaque;
    if (bs->cache == CACHE_UNSAFE) {
        return 0;
    }
    int r;
    do {
        r = norm(sys_fdatasync(s));
    } while (r == -EINTR);
    return r;
}

static int file_pwritev(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                        const struct iovec *iov, int iovcnt, unsigned flags)
{
    struct file_state *s = bs->opaque;
    ssize_t n = norm(sys_pwritev(s, iov, iovcnt, offset));
    int ret = 0;
    if (n != (ssize_t)bytes) {
        if (n < 0 && n != -EINTR && n != -EAGAIN) {
            return (int)n;
        }
        struct iovec stack[IOV_STACK], *copy = stack;
        if (iovcnt > IOV_STACK && !(copy = malloc(iovcnt * sizeof(*copy)))) {
            return -ENOMEM;
        }
        memcpy(copy, iov, iovcnt * sizeof(*copy));
        struct iovec *cur = copy;
        int cnt = iovcnt;
        uint64_t done = n > 0 ? (uint64_t)n : 0;
        iov_advance(&cur, &cnt, done);
        while (done < bytes) {
            n = norm(sys_pwritev(s, cur, cnt, offset + done));
            if (n == -EINTR || n == -EAGAIN) {
                continue;
            }
            if (n < 0) {
                ret = (int)n;
                break;
            }
            if (n == 0) {
                ret = -EIO;     /* no progress: a short write is an error */
                break;
            }
            done += n;
            iov_advance(&cur, &cnt, n);
        }
        if (copy != stack) {
            free(copy);
        }
    }
    if (ret == 0 && offset + bytes > bs->total_size && !s->is_bdev) {
        /* Only an aligned tail block under O_DIRECT can get here. */
        bs->total_size = offset + bytes;
    }
    if (ret == 0 && ((flags & BDRV_REQ_FUA) || flush_each_write(bs))) {
        ret = file_flush(bs);
    }
    return ret;
}

static int file_pwrite_zeroes(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                              unsigned flags)
{
    struct file_state *s = bs->opaque;
    int r;
    if (s->is_bdev) {
        uint64_t range[2] = { offset, bytes };
        if ((flags & BDRV_REQ_MAY_UNMAP) || ioctl(s->fd, BLKZEROOUT, range) < 0) {
            return -ENOTSUP;
        }
        r = 0;
    } else if (flags & BDRV_REQ_MAY_UNMAP) {
        /* A punched hole reads as zeroes. */
        r = norm(sys_fallocate(s, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               offset, bytes));
        if (r == -EOPNOTSUPP || r == -ENOTSUP) {
            r = norm(sys_fallocate(s, FALLOC_FL_ZERO_RANGE, offset, bytes));
        }
    } else {
        r = norm(sys_fallocate(s, FALLOC_FL_ZERO_RANGE, offset, bytes));
    }
    if (r == -EOPNOTSUPP || r == -EINVAL) {
        return -ENOTSUP;
    }
    if (r == 0 && ((flags & BDRV_REQ_FUA) || flush_each_write(bs))) {
        r = file_flush(bs);
    }
    return r;
}

static int file_pdiscard(struct bdrv_node *bs, uint64_t offset, uint64_t bytes)
{
    struct file_state *s = bs->opaque;
    if (s->is_bdev) {
        uint64_t range[2] = { offset, bytes };
        return ioctl(s->fd, BLKDISCARD, range) < 0 ? -ENOTSUP : 0;
    }
    int r = norm(sys_fallocate(s, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               offset, bytes));
    return (r == -EOPNOTSUPP) ? -ENOTSUP : r;
}

static int file_truncate(struct bdrv_node *bs, uint64_t size, struct error **errp)
{
    struct file_state *s = bs->opaque;
    if (s->is_bdev) {
        if (size > bs->total_size) {
            error_setg(errp, "Cannot grow device files");
            return -EINVAL;
        }
        return 0;
    }
    int r = norm(sys_ftruncate(s, size));
    if (r < 0) {
        error_setg_errno(errp, -r, "Failed to resize '%s'", bs->filename);
        return r;
    }
    bs->total_size = size;
    return 0;
}

static int file_block_status(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                             uint64_t *pnum, uint64_t *map, struct bdrv_node **file)
{
    struct file_state *s = bs->opaque;
    *map = offset;
    *file = bs;
    *pnum = bytes;
    if (s->is_bdev) {
        return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
    }
    off_t data = lseek(s->fd, offset, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) {
            /* Nothing but a hole to the end of the file. */
            return BDRV_BLOCK_ZERO | BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
        }
        /* No SEEK_DATA here: everything is data. */
        return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
    }
    if ((uint64_t)data > offset) {
        *pnum = MIN(bytes, (uint64_t)data - offset);
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
    }
    off_t hole = lseek(s->fd, offset, SEEK_HOLE);
    if (hole > (off_t)offset) {
        *pnum = MIN(bytes, (uint64_t)hole - offset);
    }
    return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
}

static int64_t file_get_allocated_size(struct bdrv_node *bs)
{
    struct file_state *s = bs->opaque;
    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return (int64_t)st.st_blocks * 512;
}

static int file_create(const char *filename, const struct bdrv_create_opts *opts,
                       struct error **errp)
{
    int fd = open(filename, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int err = errno;
        error_setg_errno(errp, err, "Could not create '%s'", filename);
        return -err;
    }
    int ret = 0;
    if (ftruncate(fd, opts->size) < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not resize file '%s'", filename);
        goto out_close;
    }
    if (opts->prealloc == PREALLOC_FALLOC && opts->size) {
        ret = -posix_fallocate(fd, 0, opts->size);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not preallocate data for '%s'", filename);
            goto out_close;
        }
    } else if (opts->prealloc == PREALLOC_FULL) {
        static const uint8_t zero[65536];
        for (uint64_t off = 0; off < opts->size; off += sizeof(zero)) {
            ssize_t n = full_pwrite(fd, zero, MIN(sizeof(zero), opts->size - off), off);
            if (n < 0) {
                ret = (int)n;
                error_setg_errno(errp, -ret, "Could not write zeroes to '%s'", filename);
                goto out_close;
            }
        }
    }
    if (fsync(fd) < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not sync '%s'", filename);
    }
out_close:
    close(fd);
    return ret;
}

const struct bdrv_ops bdrv_file_ops = {
    .name = "file",
    .state_size = sizeof(struct file_state),
    .is_protocol = true,
    .thread_safe = true,
    .open = file_open,
    .close = file_close,
    .preadv = file_preadv,
    .preadv_nowait = file_preadv_nowait,
    .aio_submit = file_aio_submit,
    .pwritev = file_pwritev,
    .pwrite_zeroes = file_pwrite_zeroes,
    .pdiscard = file_pdiscard,
    .flush = file_flush,
    .truncate = file_truncate,
    .block_status = file_block_status,
    .get_allocated_size = file_get_allocated_size,
    .reopen_prepare = file_reopen_prepare,
    .reopen_commit = file_reopen_commit,
    .reopen_abort = file_reopen_abort,
    .create = file_create,
};
