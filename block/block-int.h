/*
 * block/block-int.h — private to block/: the driver vtable (struct bdrv_ops),
 * the node structure every driver sees, and the core helpers drivers use to
 * open children and do I/O on them. Only files in block/ include this.
 */
#ifndef DISKDM_BLOCK_INT_H
#define DISKDM_BLOCK_INT_H

#include "block/block.h"

#include <pthread.h>

/* Bytes a format probe gets (less when the file is shorter). */
#define BDRV_PROBE_BUF_SIZE 2048

/* Largest single request the checking layer passes to a driver. */
#define BDRV_MAX_REQUEST (1u << 30)

/* Permission bits, numbered as QEMU numbers them: the file driver locks
 * byte 100+bit for each permission held and 200+bit for each not shared. */
enum bdrv_perm_bit {
    BDRV_PERM_CONSISTENT_READ = 0,
    BDRV_PERM_WRITE = 1,
    BDRV_PERM_WRITE_UNCHANGED = 2,
    BDRV_PERM_RESIZE = 3,
    BDRV_PERM_GRAPH_MOD = 4,
    BDRV_PERM_COUNT = 5,
};
#define BDRV_PERM(bit) (1u << (bit))
#define BDRV_PERM_ALL ((1u << BDRV_PERM_COUNT) - 1)

/* How a child relates to its parent; decides option inheritance. */
enum bdrv_child_role {
    BDRV_CHILD_NONE,        /* a root node */
    BDRV_CHILD_FILE,        /* protocol child of a format (or filter) node */
    BDRV_CHILD_BACKING,     /* backing file of a format node */
};

/*
 * One reopen in flight for one node (see bdrv_reopen_read_only). The core
 * fills bs and read_only; the driver may keep what prepare built in
 * `opaque` (e.g. a new file descriptor) until commit or abort.
 */
struct bdrv_reopen_state {
    struct bdrv_node *bs;
    bool read_only;         /* the mode asked for */
    void *opaque;           /* driver's, from prepare to commit/abort */
};

/*
 * An asynchronous read or write (see bdrv_ops.aio_submit). The submitter
 * fills everything but `top`; the iovec array must stay valid until
 * `complete`. A format driver may adjust `offset` before passing the
 * request down (and must restore it if the child refuses).
 */
struct bdrv_aio {
    struct event_loop *loop;    /* completion runs on this loop's thread */
    bool write;
    uint64_t offset, bytes;
    const struct iovec *iov;
    int iovcnt;
    void (*complete)(struct bdrv_aio *aio, int ret);    /* 0 or -errno */
    struct bdrv_node *top;      /* core: the node it was first submitted to */
};

/*
 * A driver. Every member except `name` and `state_size` may be NULL; the
 * note on each says what the core does then.
 *
 * General guarantees on entry to the I/O members (preadv .. block_status),
 * all given by block/io.c, the one checking layer:
 *   - `offset` and `bytes` lie inside [0, getlength) (truncate excepted);
 *     bytes is > 0 and <= BDRV_MAX_REQUEST.
 *   - offset, bytes and every iovec base and length are multiples of
 *     bs->request_alignment (bounce buffers and read-modify-write are done
 *     by the core, so drivers never see an unaligned request). When the
 *     size itself is not aligned, the last aligned block of a request may
 *     reach past the end; reads there return zeroes.
 *   - read-only is already enforced: pwritev, pwrite_zeroes, pdiscard and
 *     truncate are never called on a node with bs->read_only set.
 *   - statistics are already counted.
 *   - if `thread_safe` is false the core holds bs->lock around the call;
 *     otherwise calls may arrive concurrently from worker threads.
 * I/O members return 0 on success (the whole request done) or -errno.
 * Short transfers are never success: drivers turn them into -EIO.
 */
struct bdrv_ops {
    const char *name;           /* "file", "raw", "qcow2", "nbd" */
    size_t state_size;          /* bytes of bs->opaque, zeroed by the core
                                 * before open, freed by it after close */

    /* A protocol driver opens bs->filename itself (file, nbd); a format
     * driver sits over a `file` child that it opens with bdrv_open_child. */
    bool is_protocol;
    /* May the core call I/O members concurrently? If false it serialises
     * them with bs->lock (a format driver with non-thread-safe metadata). */
    bool thread_safe;

    /*
     * Format probing, when no driver is given. Called by the core with the
     * first min(BDRV_PROBE_BUF_SIZE, file length) bytes of the file
     * (`len` may be 0) and the file name (for extension hints; may be
     * NULL). Returns a score: 0 = not this format, 1 = could be (raw),
     * 100 = certain (magic matched). Must not keep `buf`. NULL: the driver
     * is never chosen by probing.
     */
    int (*probe)(const uint8_t *buf, size_t len, const char *filename);

    /*
     * Open. Called by the core after it allocated bs->opaque and filled
     * bs->filename, bs->opts (the node's own options, owned by the core),
     * bs->read_only, bs->auto_read_only, bs->force_read_only, bs->cache,
     * bs->discard, bs->detect_zeroes and bs->probed. A format driver opens
     * its file child with bdrv_open_child(bs, BDRV_CHILD_FILE, ...) and
     * its backing chain with BDRV_CHILD_BACKING; the core unrefs children
     * after close (and after a failed open), drivers never do.
     *
     * read-only rules: a node with read_only set must never open anything
     * writable. A protocol driver with auto_read_only set that cannot get
     * write access (EACCES, EROFS, EPERM; or an NBD server exporting
     * read-only) sets bs->read_only and bs->auto_degraded and succeeds; a
     * format driver whose file child degraded is handled by the core.
     *
     * The driver must set bs->total_size (bytes; the core answers
     * getlength from it when `getlength` is NULL) and may raise
     * bs->request_alignment (default 1). Returns 0, or -errno with *errp
     * set (message names the file). On failure `close` is not called: the
     * driver frees what it built itself.
     */
    int (*open)(struct bdrv_node *bs, struct error **errp);

    /* Release everything open built. Called once, by the last
     * bdrv_unref, after every request finished; children still open. */
    void (*close)(struct bdrv_node *bs);

    /*
     * Reads and writes. `flags` carries BDRV_REQ_FUA for writes (the
     * driver makes the data durable before returning, or the core flushes
     * afterwards if the driver lacks `supports_fua`). preadv NULL: every
     * read fails -ENOTSUP. pwritev NULL: writes fail -ENOTSUP.
     */
    int (*preadv)(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                  const struct iovec *iov, int iovcnt, unsigned flags);
    int (*pwritev)(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                   const struct iovec *iov, int iovcnt, unsigned flags);

    /*
     * Optional fast path: try a read without blocking (page-cache hit),
     * on the caller's thread (the event loop's). Returns 0 when the whole
     * read was done, -EAGAIN when it would block or only part was
     * available (the core then retries with preadv on a worker), or
     * another -errno. Same entry guarantees as preadv; never takes locks
     * that I/O on workers may hold for long.
     */
    int (*preadv_nowait)(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                         const struct iovec *iov, int iovcnt);

    /*
     * Optional asynchronous read or write without a worker thread (the
     * file driver's io_uring). Called on aio->loop's thread with the usual
     * entry guarantees, and only for plain requests: no FUA, no
     * detect-zeroes, aligned, node writable for writes. Returns 0 when
     * started (the driver then calls bdrv_aio_complete exactly once, on
     * the loop's thread, never from inside this call), or -ENOTSUP /
     * -EAGAIN when the caller should use the worker path instead (not
     * possible here, or too many in flight). A node that started aio on a
     * loop must be released before that loop is freed.
     */
    int (*aio_submit)(struct bdrv_node *bs, struct bdrv_aio *aio);

    /*
     * Write zeroes. BDRV_REQ_MAY_UNMAP allows deallocating (the core only
     * passes it with discard=unmap); BDRV_REQ_NO_FALLBACK asks for
     * -ENOTSUP rather than a slow path. NULL or -ENOTSUP without
     * NO_FALLBACK: the core writes zero buffers through pwritev.
     */
    int (*pwrite_zeroes)(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                         unsigned flags);

    /* Discard (advisory). Only called with discard=unmap; NULL or
     * -ENOTSUP: the core reports success (the data stays). */
    int (*pdiscard)(struct bdrv_node *bs, uint64_t offset, uint64_t bytes);

    /* Make completed writes durable. The core calls it for bdrv_flush
     * and, for a format node, then flushes the file child itself.
     * NULL: nothing to do at this layer. */
    int (*flush)(struct bdrv_node *bs);

    /* Current virtual size; NULL: the core returns bs->total_size. */
    int64_t (*getlength)(struct bdrv_node *bs);

    /* Bytes allocated on the host for this node and below, or -ENOTSUP.
     * NULL: the core asks the file child, or returns -ENOTSUP. */
    int64_t (*get_allocated_size)(struct bdrv_node *bs);

    /* Resize to `size` (bytes). Never called on a read-only node (the
     * core answers -EACCES "Image is read-only"). The driver updates
     * bs->total_size. Returns 0 or -errno with *errp set. */
    int (*truncate)(struct bdrv_node *bs, uint64_t size, struct error **errp);

    /*
     * Allocation status of [offset, offset+bytes) at this layer only.
     * Returns a mask of BDRV_BLOCK_* for the first run and its length in
     * *pnum (0 < *pnum <= bytes). A run not ALLOCATED here is looked up by
     * the core in the backing child (depth + 1); a run ALLOCATED with
     * OFFSET_VALID and *file set to a child is refined by the core with
     * that child's status at *map (so a format driver need not know about
     * holes in its file). *file and *map are only read with OFFSET_VALID.
     * NULL: the core answers DATA | ALLOCATED for the whole range, without
     * OFFSET_VALID (it cannot know where the data lives).
     */
    int (*block_status)(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                        uint64_t *pnum, uint64_t *map,
                        struct bdrv_node **file);

    /*
     * Reopen read-only <-> read-write, in three steps across every node
     * involved (the node and its file children, top down). prepare builds
     * what the new mode needs without giving up the old (e.g. opens a new
     * descriptor with the new flags, takes new lock bytes) and may fail
     * with -errno and *errp set; then either commit (every prepare
     * succeeded: switch over, release the old; cannot fail) or abort
     * (undo prepare; cannot fail). Called on the loop thread with no
     * request in flight on the node; going read-only, the core has
     * flushed first. The core itself refuses read-write for a forced-
     * read-only node with -EACCES before calling anything, and updates
     * bs->read_only after commit. NULL prepare: the node needs no change
     * of its own (a format over a file).
     */
    int (*reopen_prepare)(struct bdrv_reopen_state *rs, struct error **errp);
    void (*reopen_commit)(struct bdrv_reopen_state *rs);
    void (*reopen_abort)(struct bdrv_reopen_state *rs);

    /* Fill what `info` shows beyond what the core fills (filename,
     * format, virtual_size, actual_size, read_only): dirty, cluster_size,
     * backing names. Strings must point into the driver's state. */
    void (*get_info)(struct bdrv_node *bs, struct bdrv_info *info);

    /*
     * Create an image: `filename` is created (or truncated) with
     * `opts->size` bytes of virtual size. Format drivers create the file
     * with bdrv_create("file", ...), then open it with bdrv_open_file and
     * write metadata through the node. Returns 0 or -errno with *errp set.
     */
    int (*create)(const char *filename, const struct bdrv_create_opts *opts,
                  struct error **errp);

    /*
     * Make the image empty: every cluster unallocated, so reads fall
     * through to the backing file (qemu-img commit's last step). Called by
     * bdrv_commit on a read-write node with no request in flight. Returns
     * 0 or -errno. NULL: emptying is not supported (-ENOTSUP).
     */
    int (*make_empty)(struct bdrv_node *bs);

    /*
     * Consistency check behind bdrv_check (block/check.c): fill *res,
     * repairing what `fix` (BDRV_FIX_*) asks; the core has checked that a
     * fixing node is read-write. Called with no request in flight.
     * Returns 0 or -errno with *errp set. NULL: -ENOTSUP.
     */
    int (*check)(struct bdrv_node *bs, struct bdrv_check_result *res, unsigned fix,
                 struct error **errp);

    /*
     * Rewrite the backing file name and format stored in the image
     * (NULL backing_file: none) behind bdrv_change_backing_file
     * (block/amend.c); the core has checked the node is read-write.
     * Called with no request in flight. Returns 0 or -errno with *errp
     * set. NULL: the core uses the format's built-in handler if it has
     * one (block/amend.c), else -ENOTSUP.
     */
    int (*change_backing_file)(struct bdrv_node *bs, const char *backing_file,
                               const char *backing_fmt, struct error **errp);

    /*
     * Change format options in place behind bdrv_amend; same entry rules
     * as change_backing_file. NULL: as change_backing_file.
     */
    int (*amend)(struct bdrv_node *bs, const struct bdrv_amend_opts *opts,
                 struct error **errp);

    /*
     * Internal snapshots behind bdrv_snapshot_* (block/snapshot.c): the
     * core has checked the node is read-write for create/apply/delete.
     * list returns the count. 0 or -errno with *errp set. NULL: -ENOTSUP.
     */
    int (*snapshot_list)(struct bdrv_node *bs, struct bdrv_snapshot **list,
                         struct error **errp);
    int (*snapshot_create)(struct bdrv_node *bs, const char *name, struct error **errp);
    int (*snapshot_apply)(struct bdrv_node *bs, const char *name, struct error **errp);
    int (*snapshot_delete)(struct bdrv_node *bs, const char *name, struct error **errp);
};

/* Statistics, updated atomically by the checking layer. */
struct bdrv_node_stats {
    uint64_t rd_ops, wr_ops, flush_ops, zero_ops, discard_ops;
    uint64_t rd_bytes, wr_bytes;
    uint64_t errors, rejected_writes;
};

/*
 * A node of the graph. The core owns every member; drivers read them and
 * may write only those marked "driver".
 */
struct bdrv_node {
    const struct bdrv_ops *drv;
    void *opaque;                   /* driver state, drv->state_size bytes */
    int refcnt;

    char *filename;                 /* protocol filename (file child's for a format) */
    struct bdrv_open_opts opts;     /* the options this node was opened with
                                     * (after inheritance), owned */
    enum bdrv_child_role role;

    struct bdrv_node *file;         /* protocol child or NULL */
    struct bdrv_node *backing;      /* backing child or NULL */
    struct bdrv_node *parent;       /* weak: the node that opened us, or NULL */

    /* Access mode, decided once at open (and by reopen). */
    bool read_only;                 /* driver (open, auto-read-only only) */
    bool auto_read_only;
    bool force_read_only;
    bool auto_degraded;             /* driver: auto-read-only made us ro */
    bool probed;                    /* format was guessed by probing */

    enum cache_mode cache;
    enum discard_mode discard;
    enum detect_zeroes_mode detect_zeroes;

    uint64_t total_size;            /* driver: virtual size in bytes */
    uint32_t request_alignment;     /* driver: power of two, >= 1 */
    bool supports_fua;              /* driver: honours BDRV_REQ_FUA itself */

    /* Held by the core around I/O members when !drv->thread_safe. A
     * driver that is thread_safe may use it for its own metadata. */
    pthread_mutex_t lock;
    /* With request_alignment > 1: aligned writes hold it shared, the
     * read-modify-write of an unaligned write holds it exclusive, so no
     * write is lost between the read and the write back. */
    pthread_rwlock_t rmw_lock;

    struct bdrv_node_stats stats;
};

/* The driver table (block/node.c), NULL-terminated: add new drivers there. */
extern const struct bdrv_ops *const bdrv_drivers[];
const struct bdrv_ops *bdrv_find_driver(const char *name);

/* Drivers in this folder. */
extern const struct bdrv_ops bdrv_file_ops;
extern const struct bdrv_ops bdrv_raw_ops;
extern const struct bdrv_ops bdrv_qcow2_ops;    /* block/qcow2.c */
/* qcow2's backing-file change and amend (block/qcow2-amend.c; the vtable's
 * change_backing_file and amend), and the format facts and compressed
 * writes block/amend.c asks a qcow2 node for directly. */
int qcow2_change_backing_file(struct bdrv_node *bs, const char *backing_file,
                              const char *backing_fmt, struct error **errp);
int qcow2_amend(struct bdrv_node *bs, const struct bdrv_amend_opts *opts,
                struct error **errp);
void qcow2_get_format_info(struct bdrv_node *bs, struct bdrv_qcow2_info *qi);
/* qcow2 compressed cluster writes (block/qcow2-compress.c). */
int qcow2_write_compressed(struct bdrv_node *bs, uint64_t offset, const void *buf,
                           uint64_t bytes);
extern const struct bdrv_ops bdrv_nbd_ops;      /* block/nbd.c (libnbd client) */

/*
 * snapshot=on (block/qcow2-overlay.c): wrap `image`, opened like a backing
 * file, in a temporary qcow2 overlay (created in $TMPDIR, /var/tmp when
 * that is /tmp, and unlinked at once) that takes the writes. Returns the
 * overlay with one reference (it holds its own on `image`) or NULL with
 * *errp set. Called by the open path when opts.snapshot is set.
 */
struct bdrv_node *bdrv_open_temp_overlay(struct bdrv_node *image,
                                         struct error **errp);

/*
 * Open a child of `parent` (for use inside a driver's open). `opts` are
 * the child's own options (may be NULL: defaults); the core applies the
 * inheritance rules for `role` (read-only and auto-read-only copied from
 * the parent unless set on the child; a backing child defaults to
 * read-only with auto-read-only off; force-read-only, cache, locking and
 * io hooks travel down) and stores the child in parent->file or
 * parent->backing. `filename` overrides opts->filename when not NULL
 * (backing files resolved by the format driver). Returns 0 or -errno with
 * *errp set.
 */
int bdrv_open_child(struct bdrv_node *parent, enum bdrv_child_role role,
                    const struct bdrv_open_opts *opts, const char *filename,
                    struct error **errp);

/* Probe a format from the first bytes of `file`. Returns the best driver
 * (raw when nothing else matches) or NULL with *errp set. */
const struct bdrv_ops *bdrv_probe_format(struct bdrv_node *file,
                                         struct error **errp);
/* The best scoring format driver for a buffer (helper for raw's sector 0
 * guard); NULL when only raw matches. */
const struct bdrv_ops *bdrv_probe_buf(const uint8_t *buf, size_t len,
                                      const char *filename);

/*
 * Sync I/O a driver does on its children (file or backing) through the
 * checking layer: same as the public bdrv_* calls. Reads past the child's
 * end are an error (-EINVAL); use bdrv_getlength first.
 */

/* Fast-path read through the checking layer: 0, -EAGAIN (would block;
 * retry with bdrv_preadv on a worker) or -errno. Loop thread only. */
int bdrv_preadv_nowait(struct bdrv_node *bs, uint64_t offset,
                       const struct iovec *iov, int iovcnt);

/* Start an asynchronous read or write through the checking layer:
 * 0 when started, -ENOTSUP/-EAGAIN when the caller must use the
 * synchronous path (on a worker) instead. Loop thread only. */
int bdrv_aio_submit(struct bdrv_node *bs, struct bdrv_aio *aio);
/* For drivers: finish an aio request (statistics, then aio->complete). */
void bdrv_aio_complete(struct bdrv_aio *aio, int ret);

/* Copy options (deep; strings and child options duplicated). */
int bdrv_open_opts_copy(struct bdrv_open_opts *dst,
                        const struct bdrv_open_opts *src);

/* Permissions a node takes on its protocol file: CONSISTENT_READ, plus
 * WRITE and RESIZE when writable; shared: everything except what a
 * writer or a non-sharing reader must keep to itself. Used by file.c. */
void bdrv_node_perms(const struct bdrv_node *bs, bool read_only,
                     unsigned *perm, unsigned *shared);

/* Record the errno an open-path message maps to (no-op without one). */
static inline void bdrv_error_errnum(struct error **errp, int errnum)
{
    if (errp && *errp) {
        (*errp)->errnum = errnum;
    }
}

/* Name of a permission bit as QEMU prints it ("write", "resize", ...). */
const char *bdrv_perm_name(unsigned bit);

#endif
