/*
 * block/block.h — the block layer: a graph of nodes (a format node such as
 * raw or qcow2 over a protocol node such as file or nbd, plus backing
 * chains), one checking layer in front of every driver call, and the block
 * backend that devices and tools hold. Read-only is decided once at open
 * (see DESIGN.md "The read-only contract") and obeyed by every layer below.
 */
#ifndef DISKDM_BLOCK_H
#define DISKDM_BLOCK_H

#include "util/util.h"

#define BDRV_SECTOR_SIZE 512

struct bdrv_node;
struct blk_backend;

/* ------------------------------------------------------------------ */
/* Open options                                                        */
/* ------------------------------------------------------------------ */

/* A boolean that may be left unsaid (then inherited or defaulted). */
struct opt_bool {
    bool set;
    bool value;
};

/*
 * Replaceable system calls of the file driver, for fault injection in tests
 * (EIO, ENOSPC, short transfers). NULL members use the real call.
 */
struct bdrv_io_hooks {
    ssize_t (*preadv)(void *opaque, int fd, const struct iovec *iov, int iovcnt, off_t off);
    ssize_t (*pwritev)(void *opaque, int fd, const struct iovec *iov, int iovcnt, off_t off);
    int (*fdatasync)(void *opaque, int fd);
    int (*fallocate)(void *opaque, int fd, int mode, off_t off, off_t len);
    int (*ftruncate)(void *opaque, int fd, off_t len);
    void *opaque;
};

/*
 * Typed open options for one node and (through `file` / `backing`) its
 * children. Strings are owned by the struct (bdrv_open_opts_free).
 */
struct bdrv_open_opts {
    char *driver;               /* "raw", "qcow2", "file", "nbd"; NULL = probe format over file */
    char *filename;             /* protocol filename or URI (nbd://...) */
    struct bdrv_open_opts *file;    /* "file.*" options for the protocol child */
    struct bdrv_open_opts *backing; /* "backing.*" options; NULL = from the image */
    bool no_backing;            /* "backing=null": do not open a backing file */
    struct opt_bool read_only;
    struct opt_bool auto_read_only;
    bool force_read_only;       /* never opened for writing; reopen rw refused */
    bool snapshot;              /* writes go to a temporary qcow2 overlay */
    enum cache_mode cache;
    enum discard_mode discard;
    enum detect_zeroes_mode detect_zeroes;
    enum { LOCKING_AUTO, LOCKING_ON, LOCKING_OFF } locking;
    bool force_share;           /* share write permission; only with read-only */
    uint64_t offset;            /* raw: window start */
    uint64_t size;              /* raw: window length */
    bool has_size;
    const struct bdrv_io_hooks *io_hooks;   /* file: fault injection (tests) */
    /* file: how the backend's requests reach the kernel: io_uring where
     * the kernel allows it (auto), or always the worker threads. */
    enum { AIO_AUTO, AIO_THREADS, AIO_IO_URING } aio;
};

void bdrv_open_opts_init(struct bdrv_open_opts *o);
void bdrv_open_opts_free(struct bdrv_open_opts *o);   /* frees members, not o */
/* Parse QEMU-style "driver=raw,file.filename=x,read-only=on" (or a plain
 * filename when the string has no '='). Unknown keys are errors. */
int bdrv_open_opts_parse(const char *str, struct bdrv_open_opts *o,
                         struct error **errp);
/* Options for a guest disk from its drive spec (access mode, cache, ...). */
int bdrv_open_opts_from_spec(const struct disk_spec *spec,
                             struct bdrv_open_opts *o, struct error **errp);

/* ------------------------------------------------------------------ */
/* Nodes                                                               */
/* ------------------------------------------------------------------ */

/* Request flags */
#define BDRV_REQ_FUA            (1u << 0)   /* write: durable on completion */
#define BDRV_REQ_MAY_UNMAP      (1u << 1)   /* write-zeroes: may deallocate */
#define BDRV_REQ_NO_FALLBACK    (1u << 2)   /* write-zeroes: fail -ENOTSUP rather than write buffers */

/* block_status result bits */
#define BDRV_BLOCK_DATA         (1u << 0)   /* reads return data from this layer or below */
#define BDRV_BLOCK_ZERO         (1u << 1)   /* reads return zeroes */
#define BDRV_BLOCK_ALLOCATED    (1u << 2)   /* allocated in this node (not from backing) */
#define BDRV_BLOCK_OFFSET_VALID (1u << 3)   /* *map is the offset in the protocol file */

/*
 * Open a node graph. On success returns a node with one reference; on
 * failure NULL with *errp set (message names the file and the reason).
 * Errors map to: -ENOENT missing file, -EISDIR directory, -EACCES not
 * writable when read-write was asked, -EAGAIN lock held by another
 * process, -EINVAL bad option combinations, -ENOTSUP unknown driver.
 */
struct bdrv_node *bdrv_open(const struct bdrv_open_opts *opts, struct error **errp);
/* Convenience: open `filename` with `format` (NULL = probe) and flags. */
struct bdrv_node *bdrv_open_file(const char *filename, const char *format,
                                 bool read_only, struct error **errp);
void bdrv_ref(struct bdrv_node *bs);
void bdrv_unref(struct bdrv_node *bs);

/*
 * Synchronous I/O on a node, through the checking layer: bounds, read-only
 * (-EPERM for write, write-zeroes, discard), statistics. Safe to call from
 * worker threads. All return 0 or -errno.
 */
int bdrv_pread(struct bdrv_node *bs, uint64_t offset, void *buf, size_t bytes);
int bdrv_pwrite(struct bdrv_node *bs, uint64_t offset, const void *buf,
                size_t bytes, unsigned flags);
int bdrv_preadv(struct bdrv_node *bs, uint64_t offset,
                const struct iovec *iov, int iovcnt);
int bdrv_pwritev(struct bdrv_node *bs, uint64_t offset,
                 const struct iovec *iov, int iovcnt, unsigned flags);
int bdrv_pwrite_zeroes(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                       unsigned flags);
int bdrv_pdiscard(struct bdrv_node *bs, uint64_t offset, uint64_t bytes);
int bdrv_flush(struct bdrv_node *bs);
/* Resize; -EACCES "Image is read-only" on a read-only node. */
int bdrv_truncate(struct bdrv_node *bs, uint64_t size, struct error **errp);
int64_t bdrv_getlength(struct bdrv_node *bs);

/*
 * Status of [offset, offset+bytes): returns a mask of BDRV_BLOCK_* for the
 * first run, its length in *pnum (> 0 unless at the end), and the protocol
 * offset in *map when OFFSET_VALID. -errno on failure. `depth`, if not NULL,
 * gets the backing-chain depth the data comes from (0 = this node,
 * 1 = its backing, ...; -1 = unallocated anywhere).
 */
int bdrv_block_status(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                      uint64_t *pnum, uint64_t *map, int *depth);

bool bdrv_is_read_only(const struct bdrv_node *bs);
bool bdrv_is_force_read_only(const struct bdrv_node *bs);
/* True when auto-read-only degraded the node to read-only at open. */
bool bdrv_is_auto_degraded(const struct bdrv_node *bs);
const char *bdrv_driver_name(const struct bdrv_node *bs);  /* "raw", "qcow2", ... */
const char *bdrv_filename(const struct bdrv_node *bs);
struct bdrv_node *bdrv_file_child(struct bdrv_node *bs);     /* NULL if none */
struct bdrv_node *bdrv_backing_child(struct bdrv_node *bs);  /* NULL if none */
/* Request alignment the node needs (512 or 4096 with cache=none; else 1). */
uint32_t bdrv_request_alignment(const struct bdrv_node *bs);

/*
 * Reopen read-only <-> read-write, as prepare/commit/abort across the node
 * and its file child. Going read-only flushes first and drops every write
 * descriptor. A forced-read-only node refuses read-write with -EACCES and
 * stays as it was; on any failure the node is unchanged.
 */
int bdrv_reopen_read_only(struct bdrv_node *bs, bool read_only,
                          struct error **errp);

/*
 * Commit: copy every cluster allocated in `top` and the layers between it
 * and `base` (NULL = top's backing file) into `base`. The base is reopened
 * read-write for the copy and back to read-only afterwards, on success and
 * on failure; a forced-read-only or unwritable base refuses with -EACCES
 * and nothing changes. With `empty_top`, `top` (which must be writable) is
 * emptied afterwards, as qemu-img commit does without -d. `progress`, if
 * not NULL, gets (opaque, bytes done, total). 0 or -errno with *errp set.
 */
int bdrv_commit(struct bdrv_node *top, struct bdrv_node *base, bool empty_top,
                void (*progress)(void *opaque, uint64_t done, uint64_t total),
                void *opaque, struct error **errp);

/*
 * Consistency check, as qemu-img check: recount every reference to the
 * image's clusters and compare with the stored refcounts. `fix` is a mask
 * of BDRV_FIX_*; fixing needs a read-write node (-EPERM otherwise).
 * Returns 0 (the counts say what was found) or -errno with *errp set;
 * -ENOTSUP for formats without metadata to check (raw).
 */
struct bdrv_check_result {
    uint64_t corruptions;           /* refcount below the references: data at risk */
    uint64_t leaks;                 /* refcount above the references: wasted space */
    uint64_t corruptions_fixed;
    uint64_t leaks_fixed;
    uint64_t allocated_clusters;    /* guest clusters this image maps */
    uint64_t total_clusters;        /* guest clusters of the virtual size */
    uint64_t image_end_offset;      /* end of the last cluster in use */
};
#define BDRV_FIX_LEAKS  (1u << 0)
#define BDRV_FIX_ERRORS (1u << 1)
/* Not a fix: name each inconsistency on stderr in qemu-img check's words
 * ("Leaked cluster N refcount=R reference=0", ...), as qemu-img does. */
#define BDRV_CHECK_REPORT (1u << 2)
int bdrv_check(struct bdrv_node *bs, struct bdrv_check_result *res, unsigned fix,
               struct error **errp);

/*
 * Point the image at a new backing file (qemu-img rebase, and -u) or at
 * none (backing_file NULL): only the name and format stored in the image
 * change; the data and the node's open backing child are left alone.
 * Needs a read-write node (-EPERM otherwise); -ENOTSUP for formats
 * without backing files. 0 or -errno with *errp set.
 */
int bdrv_change_backing_file(struct bdrv_node *bs, const char *backing_file,
                             const char *backing_fmt, struct error **errp);

/* What qemu-img amend may change on an existing image. */
struct bdrv_amend_opts {
    const char *compat;             /* "0.10" or "1.1"; NULL = unchanged */
    struct opt_bool lazy_refcounts; /* unset = unchanged */
};
/*
 * Change format options in place (qemu-img amend). Needs a read-write
 * node; -ENOTSUP (message "Format driver 'raw' does not support option
 * amendment") for formats without amend. 0 or -errno with *errp set.
 */
int bdrv_amend(struct bdrv_node *bs, const struct bdrv_amend_opts *opts,
               struct error **errp);

/* One internal snapshot (qcow2), as `qemu-img snapshot -l` lists it. */
struct bdrv_snapshot {
    char *id, *name;
    uint64_t vm_state_size;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount;                /* UINT64_MAX: not recorded */
    uint64_t disk_size;
};
/*
 * Internal snapshots (block/snapshot.c). list: the node's snapshots in
 * table order, count returned (free with bdrv_snapshot_list_free).
 * create: a new snapshot of the current contents named `name`. apply:
 * the contents go back to snapshot `name` (an ID or a name). delete: the
 * first snapshot named `name` goes. create/apply/delete need a
 * read-write node (-EACCES otherwise); formats without snapshots give
 * -ENOTSUP. 0 (or the count) or -errno with *errp set.
 */
int bdrv_snapshot_list(struct bdrv_node *bs, struct bdrv_snapshot **list,
                       struct error **errp);
void bdrv_snapshot_list_free(struct bdrv_snapshot *list, int n);
int bdrv_snapshot_create(struct bdrv_node *bs, const char *name, struct error **errp);
int bdrv_snapshot_apply(struct bdrv_node *bs, const char *name, struct error **errp);
int bdrv_snapshot_delete(struct bdrv_node *bs, const char *name, struct error **errp);

/* Format-specific facts `info` shows under "Format specific information"
 * (qcow2 only for now). */
struct bdrv_qcow2_info {
    bool valid;                 /* false: not a qcow2 node */
    const char *compat;         /* "0.10" or "1.1" */
    bool lazy_refcounts;
    unsigned refcount_bits;
    bool corrupt;
    bool extended_l2;
    const char *compression_type;   /* "zlib" or "zstd" */
    const char *data_file;          /* external data file as stored; NULL none */
    bool data_file_raw;
};
void bdrv_get_qcow2_info(struct bdrv_node *bs, struct bdrv_qcow2_info *qi);

/*
 * Write one guest cluster compressed (qemu-img convert -c): `offset` is
 * cluster aligned, `bytes` the cluster size (or what is left up to the
 * virtual end), and the cluster must be unallocated. -ENOTSUP when the
 * format cannot, the range does not qualify or the data does not
 * compress (the caller then writes it normally); -EPERM on a read-only
 * node. 0 or -errno.
 */
int bdrv_write_compressed(struct bdrv_node *bs, uint64_t offset, const void *buf,
                          uint64_t bytes);

/* What `diskdm-img info` shows. Strings point into the node. */
struct bdrv_info {
    const char *filename;
    const char *format;
    uint64_t virtual_size;
    int64_t actual_size;        /* allocated bytes on the host, -1 unknown */
    bool read_only;
    bool dirty;
    bool encrypted;
    uint32_t cluster_size;      /* 0 = not applicable */
    const char *backing_filename;       /* as stored in the image; NULL = none */
    const char *full_backing_filename;  /* resolved path */
    const char *backing_format;
};
void bdrv_get_info(struct bdrv_node *bs, struct bdrv_info *info);

/* Counters kept by the checking layer for every node. */
struct bdrv_stats {
    uint64_t rd_ops, wr_ops, flush_ops, zero_ops, discard_ops;
    uint64_t rd_bytes, wr_bytes;
    uint64_t errors;            /* requests that failed with an error */
    uint64_t rejected_writes;   /* writes refused because read-only */
};
void bdrv_get_stats(struct bdrv_node *bs, struct bdrv_stats *st);

/* ------------------------------------------------------------------ */
/* Image creation                                                      */
/* ------------------------------------------------------------------ */

struct bdrv_create_opts {
    uint64_t size;
    const char *backing_file;       /* NULL = none */
    const char *backing_format;
    /* qcow2 */
    const char *compat;             /* "0.10" or "1.1"; NULL = 1.1 */
    uint32_t cluster_size;          /* 0 = 64 KiB */
    unsigned refcount_bits;         /* 0 = 16 */
    bool lazy_refcounts;
    enum { PREALLOC_OFF, PREALLOC_METADATA, PREALLOC_FALLOC, PREALLOC_FULL } prealloc;
    bool extended_l2;               /* qcow2: subclusters (16-byte L2 entries) */
    const char *data_file;          /* qcow2: external data file; NULL = none */
    bool data_file_raw;             /* qcow2: keep the data file a raw image */
};
/* Create `filename` as `format`; an existing file is truncated (as qemu-img does). */
int bdrv_create(const char *format, const char *filename,
                const struct bdrv_create_opts *opts, struct error **errp);
/* Names of known drivers, for --help and error messages. */
const char *const *bdrv_driver_names(void);

/* ------------------------------------------------------------------ */
/* Block backend: the one handle devices and tools hold                */
/* ------------------------------------------------------------------ */

/*
 * Completion callback: ret is 0 or -errno (after the error policy: with
 * ERROR_ACTION_IGNORE errors complete as 0). Always called on the event
 * loop's thread and never from inside the call that submitted the request.
 */
typedef void blk_complete_fn(void *opaque, int ret);

/* Notifications a device registers for (all optional, on the loop thread). */
struct blk_dev_ops {
    void (*media_changed)(void *opaque, bool loaded);   /* insert / eject */
    void (*read_only_changed)(void *opaque, bool read_only);
    void (*resized)(void *opaque);
    bool (*is_tray_open)(void *opaque);
    bool (*is_locked)(void *opaque);    /* guest locked the medium */
    /* The host asks the guest to give up the medium (an eject while the
     * guest holds it locked, as QEMU's `eject`): the device reports an
     * eject request to the guest; `force` also unlocks the tray. */
    void (*eject_request)(void *opaque, bool force);
};

struct blk_config {
    enum error_action werror, rerror;
    unsigned max_inflight;      /* 0 = no limit */
    /* The caller lets requests block the loop thread (a tool with nothing
     * else to serve, e.g. a benchmark): requests the page cache cannot
     * answer at once run synchronously on the loop thread instead of on a
     * worker or io_uring, which saves the hand-off. Completion still comes
     * from the loop, never inside the submitting call. */
    bool may_block;
};

/* Takes a reference to `root` (which may be NULL: an empty drive). */
struct blk_backend *blk_new(struct event_loop *loop, struct bdrv_node *root,
                            const struct blk_config *cfg);
/* Open `opts` and wrap the root in a backend. */
struct blk_backend *blk_open(struct event_loop *loop,
                             const struct bdrv_open_opts *opts,
                             const struct blk_config *cfg, struct error **errp);
/* Waits for requests in flight (running the loop), then drops the node. */
void blk_free(struct blk_backend *blk);

void blk_set_dev_ops(struct blk_backend *blk, const struct blk_dev_ops *ops,
                     void *opaque);
/* The device's tray state (dev_ops->is_tray_open; false without one): how
 * the layers above see that the guest opened a CD-ROM tray. */
bool blk_dev_is_tray_open(const struct blk_backend *blk);
/* Pass an eject request to the device (dev_ops->eject_request; nothing
 * without one). Typically when blk_dev_is_medium_locked says an eject
 * cannot happen yet. */
void blk_dev_eject_request(struct blk_backend *blk, bool force);
bool blk_dev_is_medium_locked(const struct blk_backend *blk);
/* Tell the device its medium changed size (dev_ops->resized; nothing
 * without one). blk_truncate calls it; so may an owner that saw the
 * image grow by other means. */
void blk_dev_resized(struct blk_backend *blk);

/*
 * Asynchronous requests. Return 0 when queued (cb will be called exactly
 * once), or -errno without calling cb (bad range: -EINVAL; no medium:
 * -ENOMEDIUM). Writes to a read-only backend complete with -EPERM through
 * cb and count as rejected. Requests run concurrently and may complete
 * out of order. The iovec array is copied; the buffers must stay valid
 * until cb.
 */
int blk_aio_preadv(struct blk_backend *blk, uint64_t offset,
                   const struct iovec *iov, int iovcnt,
                   blk_complete_fn *cb, void *opaque);
int blk_aio_pwritev(struct blk_backend *blk, uint64_t offset,
                    const struct iovec *iov, int iovcnt, unsigned flags,
                    blk_complete_fn *cb, void *opaque);
int blk_aio_flush(struct blk_backend *blk, blk_complete_fn *cb, void *opaque);
int blk_aio_pdiscard(struct blk_backend *blk, uint64_t offset, uint64_t bytes,
                     blk_complete_fn *cb, void *opaque);
int blk_aio_pwrite_zeroes(struct blk_backend *blk, uint64_t offset,
                          uint64_t bytes, unsigned flags,
                          blk_complete_fn *cb, void *opaque);

/* Synchronous forms for tools; same checks. 0 or -errno. */
int blk_pread(struct blk_backend *blk, uint64_t offset, void *buf, size_t bytes);
int blk_pwrite(struct blk_backend *blk, uint64_t offset, const void *buf,
               size_t bytes, unsigned flags);
int blk_flush(struct blk_backend *blk);

/* Run the event loop until no request is in flight. */
void blk_drain(struct blk_backend *blk);
unsigned blk_inflight(const struct blk_backend *blk);

int64_t blk_getlength(struct blk_backend *blk);     /* -ENOMEDIUM when empty */
bool blk_is_read_only(const struct blk_backend *blk);
bool blk_is_inserted(const struct blk_backend *blk);
struct bdrv_node *blk_root(struct blk_backend *blk);

/*
 * Dynamic read-only (xenstore `mode` changes): drains, then reopens the
 * root. Requests already queued finish under the old mode; later ones see
 * the new one. Calls dev_ops->read_only_changed on success.
 */
int blk_set_read_only(struct blk_backend *blk, bool read_only,
                      struct error **errp);

/*
 * Live resize (block/backend-resize.c): grow the medium to `size` bytes (a
 * multiple of 512) while a guest uses it, then tell the device
 * (dev_ops->resized). Requests in flight finish first. A read-only
 * backend is refused with -EACCES "Image is read-only" and its image left
 * untouched; shrinking with -EINVAL (the guest's data past the new end
 * would vanish under it); no medium -ENOMEDIUM. The same size is a no-op.
 */
int blk_truncate(struct blk_backend *blk, uint64_t size, struct error **errp);

/* Removable media: replace the root (NULL = eject). Calls media_changed. */
int blk_insert(struct blk_backend *blk, struct bdrv_node *root,
               struct error **errp);
void blk_eject(struct blk_backend *blk);

/* Error policy "stop": the backend holds failed requests until resumed. */
bool blk_is_stopped(const struct blk_backend *blk);
void blk_resume(struct blk_backend *blk);

struct blk_stats {
    uint64_t rd_ops, wr_ops, flush_ops, discard_ops, zero_ops;
    uint64_t rd_bytes, wr_bytes;
    uint64_t errors;
    uint64_t rejected_writes;
};
void blk_get_stats(const struct blk_backend *blk, struct blk_stats *st);

#endif
