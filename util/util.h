/*
 * util/util.h — what every layer of diskdm shares: errors with messages,
 * logging, full-transfer I/O helpers, QEMU-style option strings, the drive
 * specification every config source produces, and the event loop with its
 * worker pool. Nothing here includes a higher layer.
 */
#ifndef DISKDM_UTIL_H
#define DISKDM_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#define ROUND_UP(n, d) (DIV_ROUND_UP(n, d) * (d))
#define ROUND_DOWN(n, d) ((n) / (d) * (d))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define PRINTF_FMT(a, b) __attribute__((format(printf, a, b)))

/* ------------------------------------------------------------------ */
/* Errors (util/error.c)                                               */
/* ------------------------------------------------------------------ */

/*
 * An error message set by open and configuration paths exactly when they
 * fail (they also return -errno). `errp` may be NULL: the message is then
 * dropped. Setting an error into a non-NULL *errp that already holds one is
 * a bug and aborts.
 */
struct error {
    int errnum;     /* positive errno the failure maps to, or 0 */
    char *msg;      /* human-readable, no trailing newline */
};

void error_setg(struct error **errp, const char *fmt, ...) PRINTF_FMT(2, 3);
/* Like error_setg, appending ": strerror(errnum)" and recording errnum. */
void error_setg_errno(struct error **errp, int errnum, const char *fmt, ...)
    PRINTF_FMT(3, 4);
/* Prefix an existing message: "prefix: old". No-op if errp or *errp NULL. */
void error_prepend(struct error **errp, const char *fmt, ...) PRINTF_FMT(2, 3);
/* Move src into *dst (freeing src if dst is NULL or already set). */
void error_propagate(struct error **dst, struct error *src);
void error_free(struct error *err);
void error_freep(struct error **errp);
/* Print "prog: msg" on stderr and free the error. */
void error_report_err(struct error *err);
#define ERROR_AUTO __attribute__((cleanup(error_freep)))

/* ------------------------------------------------------------------ */
/* Logging (util/log.c)                                                */
/* ------------------------------------------------------------------ */

/*
 * Process-wide, set once by main() before any thread starts: the program
 * name every message is prefixed with and the level below which messages
 * are dropped. Messages go to stderr, or to the file set by log_set_file.
 */
enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_init(const char *progname, enum log_level level);
int log_set_file(const char *path);   /* 0 or -errno */
const char *log_progname(void);
bool log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) PRINTF_FMT(2, 3);
void log_vmsg(enum log_level level, const char *fmt, va_list ap);
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* ------------------------------------------------------------------ */
/* Full transfers (util/fullio.c)                                      */
/* ------------------------------------------------------------------ */

/*
 * These loop over short transfers and EINTR. Reads return the number of
 * bytes transferred, which is less than `len` only at end of file (0 at
 * EOF), or -errno. Writes return `len` or -errno; a write that makes no
 * progress returns -EIO. EAGAIN is returned as -EAGAIN (non-blocking fds).
 * On a non-blocking fd, -EAGAIN means nothing was transferred; once some
 * bytes have moved, full_read/full_write wait (poll) for the rest, so a
 * message is never split. An error after partial progress returns -errno.
 */
ssize_t full_pread(int fd, void *buf, size_t len, off_t off);
ssize_t full_pwrite(int fd, const void *buf, size_t len, off_t off);
ssize_t full_preadv(int fd, const struct iovec *iov, int iovcnt, off_t off);
ssize_t full_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off);
ssize_t full_read(int fd, void *buf, size_t len);
ssize_t full_write(int fd, const void *buf, size_t len);

/* Total length of an iovec array. */
size_t iov_size(const struct iovec *iov, int iovcnt);
/* Copy between a flat buffer and an iovec array, starting `offset` bytes
 * into the iovec; returns bytes copied. */
size_t iov_to_buf(const struct iovec *iov, int iovcnt, size_t offset,
                  void *buf, size_t len);
size_t iov_from_buf(const struct iovec *iov, int iovcnt, size_t offset,
                    const void *buf, size_t len);
void iov_memset(const struct iovec *iov, int iovcnt, size_t offset, int c,
                size_t len);

/* ------------------------------------------------------------------ */
/* Option strings (util/opts.c)                                        */
/* ------------------------------------------------------------------ */

/*
 * QEMU-style "key=value,key2=value2": ",," inside a value stands for one
 * comma. A first element without '=' takes `implied_key` when given
 * ("file.qcow2" -> file=file.qcow2), else is an error.
 */
struct kv {
    char *key;
    char *value;
};
struct kvlist {
    struct kv *v;
    size_t n;
};
int opts_split(const char *str, const char *implied_key, struct kvlist *out,
               struct error **errp);
void kvlist_free(struct kvlist *l);

/* Scalar parsers; 0 or -EINVAL/-ERANGE, no message. */
int parse_bool(const char *s, bool *out);          /* on/off/true/false/yes/no */
int parse_uint(const char *s, uint64_t *out);      /* base 0: 0x.., 0.., decimal */
int parse_size(const char *s, uint64_t *out);      /* bytes; suffixes B K M G T P E
                                                    * (powers of 1024), k too;
                                                    * fractions like 1.5G */

enum opt_type {
    OPT_STRING,     /* char *, strdup'd; free with opts_free */
    OPT_BOOL,       /* bool */
    OPT_SIZE,       /* uint64_t, parse_size */
    OPT_UINT,       /* uint64_t, parse_uint */
    OPT_ENUM,       /* int: index into `choices` */
};

/*
 * A field of a typed options struct. `set_offset`, when not OPT_NO_SET,
 * names a bool in the struct set to true when the key was given, so
 * callers can tell "off" from "not said".
 */
#define OPT_NO_SET ((size_t)-1)
struct opt_field {
    const char *name;
    enum opt_type type;
    size_t offset;
    size_t set_offset;
    const char *const *choices;     /* OPT_ENUM: NULL-terminated */
};

/*
 * Parse `str` into the struct at `out` following `fields` (terminated by a
 * field with name NULL). Errors, each with a message:
 *   "Invalid parameter 'KEY'", "Parameter 'KEY' expects 'on' or 'off'",
 *   "Parameter 'KEY' expects a size (e.g. 64K, 1G): 'VAL'",
 *   "Parameter 'KEY' expects a number: 'VAL'",
 *   "Parameter 'KEY' expects one of A, B, C: 'VAL'",
 *   "Parameter 'KEY' given twice".
 */
int opts_parse(const char *str, const char *implied_key,
               const struct opt_field *fields, void *out, struct error **errp);
/* Same, from an already split list; unknown keys are errors unless
 * `allow_unknown`, in which case they stay in *rest (may be NULL).
 * That is: with rest == NULL unknown keys are errors; otherwise *rest is
 * initialised here and receives copies of them (left empty on failure).
 * String fields must start NULL or malloc'd. On failure the fields set so
 * far stay in *out: opts_free is the cleanup either way. */
int opts_apply(const struct kvlist *kv, const struct opt_field *fields,
               void *out, struct kvlist *rest, struct error **errp);
void opts_free(const struct opt_field *fields, void *out);

/* ------------------------------------------------------------------ */
/* Drive specifications (util/drive.c)                                 */
/* ------------------------------------------------------------------ */

/* Shared enumerations: parsed at the edge, obeyed by block/ and hw/. */
enum cache_mode {
    CACHE_WRITEBACK,    /* default: page cache, flush on guest flush */
    CACHE_NONE,         /* O_DIRECT, flush on guest flush */
    CACHE_WRITETHROUGH, /* page cache, every write followed by a flush */
    CACHE_DIRECTSYNC,   /* O_DIRECT + every write flushed */
    CACHE_UNSAFE,       /* page cache, flushes ignored */
};
extern const char *const cache_mode_names[];    /* NULL-terminated */

enum discard_mode { DISCARD_IGNORE, DISCARD_UNMAP };
extern const char *const discard_mode_names[];  /* "ignore","unmap" (+"off","on" aliases) */

enum detect_zeroes_mode { DETECT_ZEROES_OFF, DETECT_ZEROES_ON, DETECT_ZEROES_UNMAP };
extern const char *const detect_zeroes_names[];

enum error_action { ERROR_ACTION_REPORT, ERROR_ACTION_IGNORE, ERROR_ACTION_STOP,
                    ERROR_ACTION_ENOSPC };
extern const char *const error_action_names[];  /* report, ignore, stop, enospc */

enum disk_if { DISK_IF_IDE, DISK_IF_VIRTIO };
enum disk_media { DISK_MEDIA_DISK, DISK_MEDIA_CDROM };

/*
 * How an image is opened; see DESIGN.md "The read-only contract".
 */
enum disk_access {
    DISK_ACCESS_RW,         /* read-write; open fails if not writable */
    DISK_ACCESS_RO_FORCED,  /* O_RDONLY at every layer; never reopened rw */
    DISK_ACCESS_AUTO,       /* rw, degrading to ro when not writable */
    DISK_ACCESS_SNAPSHOT,   /* image ro, writes to a temporary overlay */
};

/*
 * One guest disk, from `-drive` or from xenstore. Strings are owned
 * (free with disk_spec_free). -1 means "not given" for the numbers.
 */
struct disk_spec {
    char *file;             /* image path; NULL or "" = no medium (cdrom) */
    char *format;           /* "raw", "qcow2", ...; NULL = probe */
    enum disk_if iface;
    int index;              /* IDE: 0..3 = bus*2+unit; -1 = unset */
    int bus, unit;          /* -1 = unset; resolved by disk_spec_resolve */
    enum disk_media media;
    enum disk_access access;
    enum cache_mode cache;
    enum discard_mode discard;
    enum detect_zeroes_mode detect_zeroes;
    enum error_action werror, rerror;
    char *serial;           /* NULL = device default */
    char *id;               /* NULL = generated */
    unsigned num_queues;    /* virtio; 0 = default (1) */
};

/*
 * Parse a `-drive` value (QEMU keys: file, format, if, index, bus, unit,
 * media, readonly/read-only, auto-read-only, snapshot, cache, werror,
 * rerror, discard, detect-zeroes, serial, id, num-queues; and QEMU's NBD
 * form, driver=nbd with server.*, export and timeout, or those under
 * "file.", which become the export's URI in `file`). Fills *spec
 * (zeroed first) or fails with a message naming the bad key or value.
 */
int disk_spec_parse_drive(const char *str, struct disk_spec *spec,
                          struct error **errp);
/* Fill bus/unit from index (and index from bus/unit), check ranges. */
int disk_spec_resolve(struct disk_spec *spec, struct error **errp);
/*
 * Notes on the two above: on failure *spec is left as after
 * disk_spec_init (nothing to free). Access: readonly/read-only=on and
 * media=cdrom give DISK_ACCESS_RO_FORCED, which wins over snapshot=on
 * (SNAPSHOT), which wins over auto-read-only=on (AUTO). Defaults follow
 * QEMU: werror=enospc, rerror=report, cache=writeback. A unit without a
 * bus is on bus 0; a spec without unit keeps bus/unit/index -1 until
 * disk_spec_assign_slots. Virtio: bus 0 only, index == unit.
 */

/*
 * Give every spec of a command line its slot, in order, as QEMU does: a
 * spec with no unit takes the first free one from its bus (bus 0 when not
 * given) onwards. Fails on two specs in one slot ("drive with bus=B,
 * unit=U (index=I) exists"), on no free slot, and on duplicate ids; a
 * missing id becomes QEMU's default name (ide0-hd0, ide1-cd1, virtio0).
 * Every spec must have been through disk_spec_resolve.
 */
int disk_spec_assign_slots(struct disk_spec *specs, size_t n, struct error **errp);
void disk_spec_init(struct disk_spec *spec);   /* defaults, all unset */
void disk_spec_free(struct disk_spec *spec);
const char *disk_access_name(enum disk_access a);

/* ------------------------------------------------------------------ */
/* Event loop (util/event-loop.c)                                      */
/* ------------------------------------------------------------------ */

/*
 * One event loop per process, run by the main thread: fd handlers (epoll),
 * one-shot timers, and deferred calls. Only ev_defer may be called from
 * other threads; everything else belongs to the loop's thread.
 */
struct event_loop;
struct ev_timer;

typedef void ev_fd_fn(void *opaque, uint32_t events);  /* EPOLLIN/OUT/ERR/HUP */
typedef void ev_fn(void *opaque);

struct event_loop *ev_loop_new(struct error **errp);
void ev_loop_free(struct event_loop *loop);

int ev_fd_add(struct event_loop *loop, int fd, uint32_t events,
              ev_fd_fn *fn, void *opaque);             /* 0 or -errno */
int ev_fd_modify(struct event_loop *loop, int fd, uint32_t events);
void ev_fd_remove(struct event_loop *loop, int fd);    /* safe inside callbacks */

/* Run fn once after `ms` milliseconds. Cancel before it fires, or not at all. */
struct ev_timer *ev_timer_add(struct event_loop *loop, uint64_t ms,
                              ev_fn *fn, void *opaque);
void ev_timer_cancel(struct event_loop *loop, struct ev_timer *t);

/* Thread-safe: queue fn to run on the loop's thread at its next iteration.
 * Returns 0 or -ENOMEM. Calls run in the order they were deferred. */
int ev_defer(struct event_loop *loop, ev_fn *fn, void *opaque);

/*
 * Work the loop's own thread queues for the loop's next iteration: no
 * allocation, no syscall, no clock read (unlike a zero-delay timer or
 * ev_defer). The caller embeds the struct, sets it up once with
 * ev_soon_init and keeps it alive while queued. Loop thread only. Entries
 * run in the order queued; one queued by a running entry waits for the
 * next iteration. While entries are queued, ev_run_once does not sleep
 * and looks at the fds only every few iterations (so they cannot starve).
 */
struct ev_soon {
    struct ev_soon *next, **pprev;      /* pprev NULL: not queued */
    uint64_t gen;                       /* iteration it was queued in */
    ev_fn *fn;
    void *opaque;
};
void ev_soon_init(struct ev_soon *s, ev_fn *fn, void *opaque);
void ev_soon(struct event_loop *loop, struct ev_soon *s);  /* no-op if queued */
void ev_soon_cancel(struct event_loop *loop, struct ev_soon *s);
static inline bool ev_soon_pending(const struct ev_soon *s)
{
    return s->pprev != NULL;
}

/*
 * Whether work that usually takes microseconds but may block (a write to
 * the page cache) runs on a loop thread rather than being handed to a
 * worker and back, which costs more than the work itself. Blocking is
 * budgeted: a run longer than EV_INLINE_SLOW_NS spends its whole length
 * from a budget earned at 1/EV_INLINE_SHARE of the wall time (at most
 * EV_INLINE_BUDGET_NS banked); overdrawn, the work goes to workers until
 * the overdraft is earned back. So the loop spends at most about 3% of
 * its time blocked in such work, in stalls no longer than one run (page-
 * cache writes on ext4 block for 1-10 ms now and then, more while the
 * file is being written back). Loop thread only; embed and
 * zero-initialise.
 */
#define EV_INLINE_SLOW_NS (1000 * 1000ULL)
#define EV_INLINE_BUDGET_NS (20 * 1000 * 1000ULL)
#define EV_INLINE_SHARE 32
struct ev_inline {
    int64_t budget_ns;
    uint64_t last_ns;       /* when the budget was last topped up */
    uint64_t resume_ns;     /* handed off until then */
};
/* May the work run here now? `now` from clock_ns(). */
bool ev_inline_allowed(const struct ev_inline *p, uint64_t now);
/* Account for a run from `start` to `end` (clock_ns()). Returns true when
 * it overdrew the budget (work is handed off for a while from now on). */
bool ev_inline_record(struct ev_inline *p, uint64_t start, uint64_t end);

/* Wait up to timeout_ms (-1 = forever, 0 = poll) and dispatch what is
 * ready, deferred calls and ev_soon entries included. Returns the number
 * of callbacks run. */
int ev_run_once(struct event_loop *loop, int timeout_ms);
/* Run until ev_stop. */
void ev_run(struct event_loop *loop);
/* Make ev_run return after the current iteration. Thread-safe, and safe
 * in a signal handler (a flag and an eventfd write). */
void ev_stop(struct event_loop *loop);

uint64_t clock_ns(void);    /* CLOCK_MONOTONIC */

/* ------------------------------------------------------------------ */
/* Worker pool (util/thread-pool.c)                                    */
/* ------------------------------------------------------------------ */

/*
 * Runs blocking work on worker threads; `done` is called on the event
 * loop's thread with work's return value. tpool_free waits for all
 * submitted work and runs the pending `done` calls first.
 * Workers start on demand up to max_threads (0 means 1) and exit after an
 * idle timeout. Submitting is thread-safe; `done` calls run in the order
 * the work finished (submission order with one thread). tpool_free runs
 * on the loop's thread, never inside one of the pool's own `done` calls;
 * work submitted by a `done` call it runs is waited for too. A completion
 * costs one eventfd write and one loop wake-up per batch.
 */
struct thread_pool;
typedef int tpool_work_fn(void *opaque);
typedef void tpool_done_fn(void *opaque, int ret);

struct thread_pool *tpool_new(struct event_loop *loop, unsigned max_threads,
                              struct error **errp);
void tpool_free(struct thread_pool *pool);
int tpool_submit(struct thread_pool *pool, tpool_work_fn *work,
                 tpool_done_fn *done, void *opaque);   /* 0 or -ENOMEM */

/*
 * Allocation-free submission for hot paths: the caller embeds a struct
 * tpool_req (e.g. in its per-request state) and keeps it alive and
 * untouched from tpool_submit_req until `done` has been called; `done` may
 * free or reuse it. The fields are private to the pool. Returns 0, or
 * -EAGAIN when no worker thread exists and none can be started.
 */
struct tpool_req {
    struct tpool_req *next;
    tpool_work_fn *work;
    tpool_done_fn *done;
    void *opaque;
    int ret;
    bool owned;             /* allocated by tpool_submit */
};
int tpool_submit_req(struct thread_pool *pool, struct tpool_req *req,
                     tpool_work_fn *work, tpool_done_fn *done, void *opaque);

/* Idle workers exit after this long without work (default 10000 ms). */
void tpool_set_idle_timeout(struct thread_pool *pool, unsigned ms);
/* Worker threads currently alive (for tests and statistics). */
unsigned tpool_thread_count(struct thread_pool *pool);

/* ------------------------------------------------------------------ */
/* NBD addresses (util/nbd-uri.c)                                      */
/* ------------------------------------------------------------------ */

/*
 * QEMU's NBD keys, in this order: server.type, server.path, server.host,
 * server.port, export, timeout, reconnect-delay. nbd_uri_key gives a key's index (the key
 * without any "file." prefix) or -1.
 */
#define NBD_URI_NKEYS 7
int nbd_uri_key(const char *key);
/* Whether s starts with nbd://, nbds://, nbd+unix:// or nbds+unix://. */
bool nbd_uri_is_nbd(const char *s);
/*
 * The URI for the keys (NULL: not given): nbd+unix:///EXPORT?socket=PATH
 * or nbd://HOST:PORT/EXPORT (port 10809 by default), plus ?timeout=T and
 * reconnect-delay=D.
 * Messages name the keys with `prefix` ("" or "file."): a missing
 * server.type, server.path (unix) or server.host (inet), another type, a
 * port not 1-65535, host or port with unix, path with inet. Returns 0 with
 * *uri malloc'd, or -errno with *errp set.
 */
int nbd_uri_from_keys(const char *const keys[NBD_URI_NKEYS], const char *prefix,
                      char **uri, struct error **errp);
/* Add NAME=VAL to an NBD URI's query (nothing when val is NULL). 0 or -ENOMEM. */
int nbd_uri_add_param(char **uri, const char *name, const char *val);
/* Whether s is QEMU's legacy NBD filename: nbd:unix:PATH or nbd:HOST:PORT,
 * either with an optional :exportname=NAME (but not an nbd:// URI). */
bool nbd_uri_is_legacy(const char *s);
/*
 * The URI a legacy NBD filename names (the same URI QEMU shows for it):
 * nbd:unix:PATH[:exportname=E] -> nbd+unix:///E?socket=PATH and
 * nbd:HOST:PORT[:exportname=E] -> nbd://HOST:PORT/E. Returns 0 with *uri
 * malloc'd, or -EINVAL with *errp saying what is malformed.
 */
int nbd_uri_from_legacy(const char *s, char **uri, struct error **errp);

#endif
