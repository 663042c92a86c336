/*
 * tools/nbd/nbd-int.h — what the files of diskdm-nbd share. The protocol
 * engine (session.c, handshake.c, transmission.c) does no I/O of its own:
 * the connection layer (conn.c) hands it socket bytes and drains its output
 * queue, and an export (export.c, or a memory export in the tests) serves
 * the data through the asynchronous `nbd_export_ops` table.
 */
#ifndef DISKDM_NBD_INT_H
#define DISKDM_NBD_INT_H

#include "util/util.h"
#include "tools/nbd/nbd-proto.h"

#include <stdbool.h>
#include <stdint.h>

/* ------------------------------------------------------------------ */
/* Exports                                                             */
/* ------------------------------------------------------------------ */

/*
 * One run of the export as block status sees it. `flags` are the
 * base:allocation bits (NBD_STATE_HOLE, NBD_STATE_ZERO); `depth` is the
 * qemu:allocation-depth value (0 unallocated, 1 this layer, 2 its backing...).
 * When `fd` >= 0 the run's bytes can be sent straight from that descriptor
 * at `foff` (zero-copy path); the descriptor belongs to the export.
 */
struct nbd_extent {
    uint64_t len;
    uint32_t flags;
    uint32_t depth;
    int fd;
    uint64_t foff;
};

/* Completion of an export operation: ret is 0 or -errno. */
typedef void nbd_done_fn(void *cb_opaque, int ret);

/*
 * The operations a session needs from its export. Offsets and lengths are
 * already checked against the export size. Each returns 0 when the
 * operation was started (then `cb` is called exactly once, possibly before
 * the submitting call returns) or -errno when it could not start (then `cb`
 * is never called). Buffers stay valid until `cb`.
 */
struct nbd_export_ops {
    int (*read)(void *opaque, uint64_t off, void *buf, uint32_t len,
                nbd_done_fn *cb, void *cb_opaque);
    /* `flags`: NBD_CMD_FLAG_FUA */
    int (*write)(void *opaque, uint64_t off, const void *buf, uint32_t len,
                 unsigned flags, nbd_done_fn *cb, void *cb_opaque);
    int (*flush)(void *opaque, nbd_done_fn *cb, void *cb_opaque);
    /* `flags`: NBD_CMD_FLAG_FUA */
    int (*trim)(void *opaque, uint64_t off, uint32_t len, unsigned flags,
                nbd_done_fn *cb, void *cb_opaque);
    /* `flags`: NBD_CMD_FLAG_FUA, NO_HOLE, FAST_ZERO (fail -ENOTSUP rather
     * than write slowly) */
    int (*write_zeroes)(void *opaque, uint64_t off, uint32_t len,
                        unsigned flags, nbd_done_fn *cb, void *cb_opaque);
    /* Advisory prefetch. */
    int (*cache)(void *opaque, uint64_t off, uint32_t len,
                 nbd_done_fn *cb, void *cb_opaque);
    /*
     * Describe [off, off+len) as up to `max` extents starting at `off`,
     * stored in ext[0..*n). On success *n >= 1 and the extents may cover
     * less than `len`, never more. `want_fd` asks for zero-copy sources.
     */
    int (*block_status)(void *opaque, uint64_t off, uint32_t len,
                        struct nbd_extent *ext, unsigned max, unsigned *n,
                        bool want_fd, nbd_done_fn *cb, void *cb_opaque);
};

/* What a session serves; owned by whoever made it, outlives sessions. */
struct nbd_export {
    const char *name;           /* "" is the default export */
    const char *description;    /* NULL = none */
    uint64_t size;
    bool read_only;
    bool multi_conn;            /* NBD_FLAG_CAN_MULTI_CONN */
    bool can_fast_zero;
    bool allocation_depth;      /* offer qemu:allocation-depth (-A) */
    uint32_t min_block;         /* 1 unless the backend needs alignment */
    const struct nbd_export_ops *ops;
    void *opaque;
};

/* Server-wide policy every session follows. */
struct nbd_policy {
    bool tls_available;         /* STARTTLS can be offered */
    bool tls_required;          /* refuse everything but STARTTLS/ABORT before TLS */
    unsigned max_inflight;      /* requests per client before reading pauses */
    size_t max_buffered;        /* payload + reply bytes per client before reading pauses */
};

/* ------------------------------------------------------------------ */
/* Sessions: one per client connection                                 */
/* ------------------------------------------------------------------ */

enum nbd_seg_kind {
    NBD_SEG_MEM,    /* ptr/len */
    NBD_SEG_ZERO,   /* len zero bytes */
    NBD_SEG_FD,     /* len bytes of fd from foff */
};

/* One piece of queued output. `owner` (a request) is released once sent. */
struct nbd_seg {
    struct nbd_seg *next;
    enum nbd_seg_kind kind;
    const char *ptr;
    size_t len;
    size_t done;                /* bytes of this segment already sent */
    int fd;
    uint64_t foff;
    struct nbd_req *owner;
    bool msg_start;             /* begins a transmission reply or chunk */
    bool urgent;                /* queued ahead of bulk replies (nbd_out_msg_urgent) */
    char inline_buf[32];        /* small headers live here */
};

/* What the connection layer should do next (nbd_session_wants). */
#define NBD_WANT_READ   (1u << 0)   /* input buffer has room, engine not paused */
#define NBD_WANT_WRITE  (1u << 1)   /* output queued */
#define NBD_WANT_TLS    (1u << 2)   /* output drained after STARTTLS: start the TLS handshake */
#define NBD_WANT_CLOSE  (1u << 3)   /* output drained and nothing more to do: close */

struct nbd_session;

/*
 * `wakeup` is called when asynchronous completions changed what the
 * session wants (new output, input resumable, close). Never called from
 * inside nbd_session_* calls made by the connection layer itself.
 */
struct nbd_session *nbd_session_new(const struct nbd_export *exp,
                                    const struct nbd_policy *pol,
                                    void (*wakeup)(void *opaque), void *opaque);
/* Drops the session; requests still running in the export keep it alive
 * until they complete (their replies are then discarded). */
void nbd_session_free(struct nbd_session *s);

unsigned nbd_session_wants(struct nbd_session *s);
/* Where the next incoming bytes go: up to the returned length at *buf
 * (0 = do not read now). */
size_t nbd_session_rbuf(struct nbd_session *s, void **buf);
/* `n` bytes were stored at the pointer rbuf gave; parses and dispatches. */
void nbd_session_rdone(struct nbd_session *s, size_t n);
/* The client closed its side (or the connection broke). */
void nbd_session_eof(struct nbd_session *s);
/* Queued output, oldest first; NULL when empty. */
struct nbd_seg *nbd_session_out(struct nbd_session *s);
/* `n` bytes from the head of the output queue were sent. */
void nbd_session_out_sent(struct nbd_session *s, size_t n);
/* Bytes that arrived before the TLS handshake and belong to it: copies up
 * to len of them to buf and returns how many. */
size_t nbd_session_take_pretls(struct nbd_session *s, void *buf, size_t len);
/* TLS handshake finished (ok) or failed (close). */
void nbd_session_tls_done(struct nbd_session *s, bool ok);
/* Go straight to transmission without a handshake (the kernel client):
 * drops the greeting and answers requests at once. */
void nbd_session_skip_handshake(struct nbd_session *s);
/* True once the session entered transmission; for logging. */
bool nbd_session_in_transmission(const struct nbd_session *s);
/* May the connection use NBD_SEG_FD segments (not under TLS)? */
void nbd_session_set_zero_copy(struct nbd_session *s, bool on);

/* ------------------------------------------------------------------ */
/* Engine internals shared by session.c, handshake.c, transmission.c   */
/* ------------------------------------------------------------------ */

enum nbd_state {
    NBD_ST_CLIENT_FLAGS,    /* waiting for the 4-byte client flags */
    NBD_ST_OPT_HDR,         /* waiting for an option header */
    NBD_ST_OPT_DATA,        /* reading option data into opt_buf */
    NBD_ST_OPT_DISCARD,     /* skipping oversized option data */
    NBD_ST_TLS,             /* STARTTLS acknowledged; handshake pending */
    NBD_ST_REQ_HDR,         /* transmission: waiting for a request header */
    NBD_ST_REQ_PAYLOAD,     /* reading a WRITE payload */
    NBD_ST_DEAD,            /* no more input is read */
};

#define NBD_IBUF_SIZE   (64 * 1024)
#define NBD_MAX_OPT_LEN (64 * 1024)          /* larger options: ERR_TOO_BIG */
#define NBD_MAX_OPT_DISCARD (16u << 20)      /* beyond this: disconnect */
#define NBD_BUF_CACHE   8                    /* buffers kept per session */
#define NBD_BUF_CACHE_MAX (4u << 20)         /* larger ones are not kept */

/* An in-flight transmission request. */
struct nbd_req {
    struct nbd_session *s;
    uint16_t flags, type;
    uint64_t cookie, off;
    uint32_t len;
    unsigned refs;              /* running ops + queued segments + builder */
    unsigned pending;           /* READ: data reads still running (+ builder) */
    int err;                    /* first -errno seen */
    char *buf;                  /* READ/WRITE data (nbd_buf_get) */
    uint32_t buf_size;          /* its allocated size */
    struct nbd_extent *ext;     /* READ map or BLOCK_STATUS extents */
    unsigned n_ext;
    uint32_t covered;           /* bytes ext[] covers */
    bool replied;               /* reply queued */
};

struct nbd_session {
    const struct nbd_export *exp;
    const struct nbd_policy *pol;
    void (*wakeup)(void *opaque);
    void *wakeup_opaque;

    enum nbd_state state;
    bool closing;               /* close once output drains (ABORT, DISC, fatal) */
    bool freed;                 /* nbd_session_free ran; waiting for requests */
    bool in_callback;           /* inside a call from the connection layer */
    bool processing;            /* session_process is running */
    bool dead_now;              /* fatal: close without flushing */
    bool zero_copy;

    /* input */
    char *ibuf;                 /* NBD_IBUF_SIZE bytes */
    size_t ipos, ilen;          /* unparsed bytes: ibuf[ipos .. ipos+ilen) */
    char *direct;               /* rbuf points here (large payload), or NULL */

    /* handshake */
    bool no_zeroes;
    bool tls_active;
    bool sr;                    /* structured replies negotiated */
    uint32_t ctx_alloc;         /* meta context ids; 0 = not selected */
    uint32_t ctx_depth;
    uint32_t opt;               /* option being read */
    uint32_t opt_len, opt_got;
    char *opt_buf;

    /* transmission */
    uint16_t tflags;
    struct nbd_req *cur;        /* request whose payload is being read */
    uint32_t pay_got;
    unsigned inflight;
    size_t buffered;            /* request buffers + queued output bytes */

    /* output queue */
    struct nbd_seg *out_head, *out_tail;
    size_t out_bytes;

    /* recently freed data buffers, reused so that the next request's
     * buffer is already mapped (page faults cost as much as a copy) */
    struct { char *p; uint32_t len; } bufs[NBD_BUF_CACHE];
    unsigned nbufs;
};

/* session.c */
struct nbd_seg *nbd_out_seg(struct nbd_session *s, enum nbd_seg_kind kind,
                            size_t len, struct nbd_req *owner);
/* Queue a copy of small data (<= 32 bytes inline, larger allocated). */
void nbd_out_bytes(struct nbd_session *s, const void *data, size_t len);
/* The same for the first piece of a transmission reply (or structured
 * chunk); segments queued after it until the next such piece are its
 * payload. */
void nbd_out_msg(struct nbd_session *s, const void *data, size_t len);
/*
 * A whole small reply or chunk that goes ahead of queued ones that have not
 * started yet (after the one being sent and earlier urgent ones): clients
 * such as nbdcopy wait for block status before they send more reads, and
 * would otherwise idle while megabytes of earlier read data drain. Replies
 * to different requests may go out in any order.
 */
void nbd_out_msg_urgent(struct nbd_session *s, const void *data, size_t len);
void nbd_session_fatal(struct nbd_session *s, const char *why);
void nbd_req_unref(struct nbd_req *r);
void nbd_session_notify(struct nbd_session *s);
/* A data buffer of at least len bytes for r (sets r->buf, r->buf_size and
 * counts it in s->buffered); false when out of memory. */
bool nbd_req_alloc_buf(struct nbd_req *r);

/* handshake.c */
void nbd_hs_start(struct nbd_session *s);       /* queue the greeting */
/* Parse from s->ibuf while in a handshake state; false = need more bytes. */
bool nbd_hs_step(struct nbd_session *s);
uint16_t nbd_tx_flags(const struct nbd_session *s);
/* Transmission flags of an export (with structured replies or not). */
uint16_t nbd_export_tx_flags(const struct nbd_export *e, bool sr);

/* transmission.c */
bool nbd_tx_step(struct nbd_session *s);
/* A payload finished arriving for s->cur. */
void nbd_tx_payload_done(struct nbd_session *s);
int nbd_errno_to_wire(int err);

#endif
