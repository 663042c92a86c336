/*
 * tools/nbd/session.c — the core of one client's NBD session: the input
 * buffer the connection layer reads into, the output queue it drains, and
 * request lifetimes. Parsing is handed to handshake.c or transmission.c
 * according to the session's state; no system call is made here.
 */
#include "tools/nbd/nbd-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void session_process(struct nbd_session *s);

struct nbd_session *nbd_session_new(const struct nbd_export *exp,
                                    const struct nbd_policy *pol,
                                    void (*wakeup)(void *opaque), void *opaque)
{
    struct nbd_session *s = calloc(1, sizeof(*s));
    if (!s) {
        return NULL;
    }
    s->ibuf = malloc(NBD_IBUF_SIZE);
    if (!s->ibuf) {
        free(s);
        return NULL;
    }
    s->exp = exp;
    s->pol = pol;
    s->wakeup = wakeup;
    s->wakeup_opaque = opaque;
    s->state = NBD_ST_CLIENT_FLAGS;
    nbd_hs_start(s);
    return s;
}

static void session_destroy(struct nbd_session *s)
{
    for (unsigned i = 0; i < s->nbufs; i++) {
        free(s->bufs[i].p);
    }
    free(s->ibuf);
    free(s);
}

static void out_drop_all(struct nbd_session *s)
{
    struct nbd_seg *seg = s->out_head;
    s->out_head = s->out_tail = NULL;
    s->out_bytes = 0;
    while (seg) {
        struct nbd_seg *next = seg->next;
        if (seg->owner) {
            nbd_req_unref(seg->owner);
        }
        if (seg->kind == NBD_SEG_MEM && seg->ptr != seg->inline_buf && !seg->owner) {
            free((void *)seg->ptr);
        }
        free(seg);
        seg = next;
    }
}

void nbd_session_free(struct nbd_session *s)
{
    if (!s) {
        return;
    }
    s->state = NBD_ST_DEAD;
    s->in_callback = true;      /* no notifications while tearing down */
    out_drop_all(s);
    free(s->opt_buf);
    s->opt_buf = NULL;
    if (s->cur) {
        struct nbd_req *r = s->cur;
        s->cur = NULL;
        nbd_req_unref(r);
    }
    s->freed = true;
    if (s->inflight == 0) {
        session_destroy(s);
    }
    /* else: the last request to finish destroys the session */
}

/* ------------------------------------------------------------------ */
/* Output queue                                                        */
/* ------------------------------------------------------------------ */

static struct nbd_seg *seg_new(enum nbd_seg_kind kind, size_t len,
                               struct nbd_req *owner)
{
    struct nbd_seg *seg = calloc(1, sizeof(*seg));
    if (!seg) {
        abort();
    }
    seg->kind = kind;
    seg->len = len;
    seg->fd = -1;
    seg->owner = owner;
    if (owner) {
        owner->refs++;
    }
    return seg;
}

/* A memory segment holding a copy of data (inline when small). */
static struct nbd_seg *seg_copy(const void *data, size_t len)
{
    struct nbd_seg *seg = seg_new(NBD_SEG_MEM, len, NULL);
    if (len <= sizeof(seg->inline_buf)) {
        memcpy(seg->inline_buf, data, len);
        seg->ptr = seg->inline_buf;
    } else {
        char *p = malloc(len);
        if (!p) {
            abort();
        }
        memcpy(p, data, len);
        seg->ptr = p;
    }
    return seg;
}

static void seg_append(struct nbd_session *s, struct nbd_seg *seg)
{
    if (s->out_tail) {
        s->out_tail->next = seg;
    } else {
        s->out_head = seg;
    }
    s->out_tail = seg;
    s->out_bytes += seg->len;
}

struct nbd_seg *nbd_out_seg(struct nbd_session *s, enum nbd_seg_kind kind,
                            size_t len, struct nbd_req *owner)
{
    struct nbd_seg *seg = seg_new(kind, len, owner);
    seg_append(s, seg);
    return seg;
}

void nbd_out_bytes(struct nbd_session *s, const void *data, size_t len)
{
    if (len == 0) {
        return;
    }
    seg_append(s, seg_copy(data, len));
}

void nbd_out_msg(struct nbd_session *s, const void *data, size_t len)
{
    struct nbd_seg *seg = seg_copy(data, len);
    seg->msg_start = true;
    seg_append(s, seg);
}

/* The last segment of the message that `seg` is part of. */
static struct nbd_seg *msg_end(struct nbd_seg *seg)
{
    while (seg->next && !seg->next->msg_start) {
        seg = seg->next;
    }
    return seg;
}

void nbd_out_msg_urgent(struct nbd_session *s, const void *data, size_t len)
{
    struct nbd_seg *seg = seg_copy(data, len);
    seg->msg_start = true;
    seg->urgent = true;
    if (!s->out_head) {
        seg_append(s, seg);
        return;
    }
    /* after the message on the wire now, and after earlier urgent ones */
    struct nbd_seg *at = msg_end(s->out_head);
    while (at->next && at->next->urgent) {
        at = msg_end(at->next);
    }
    if (at == s->out_tail) {
        seg_append(s, seg);
        return;
    }
    seg->next = at->next;
    at->next = seg;
    s->out_bytes += len;
}

struct nbd_seg *nbd_session_out(struct nbd_session *s)
{
    return s->dead_now ? NULL : s->out_head;
}

void nbd_session_out_sent(struct nbd_session *s, size_t n)
{
    s->in_callback = true;
    while (n > 0 && s->out_head) {
        struct nbd_seg *seg = s->out_head;
        size_t left = seg->len - seg->done;
        size_t take = MIN(left, n);
        seg->done += take;
        n -= take;
        s->out_bytes -= take;
        if (seg->done < seg->len) {
            break;
        }
        s->out_head = seg->next;
        if (!s->out_head) {
            s->out_tail = NULL;
        }
        if (seg->kind == NBD_SEG_MEM && seg->ptr != seg->inline_buf && !seg->owner) {
            free((void *)seg->ptr);
        }
        if (seg->owner) {
            nbd_req_unref(seg->owner);
        }
        free(seg);
    }
    s->in_callback = false;
    session_process(s);
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

bool nbd_req_alloc_buf(struct nbd_req *r)
{
    struct nbd_session *s = r->s;
    uint32_t need = r->len ? r->len : 1;
    for (unsigned i = 0; i < s->nbufs; i++) {
        if (s->bufs[i].len >= need && s->bufs[i].len / 2 <= need) {
            r->buf = s->bufs[i].p;
            r->buf_size = s->bufs[i].len;
            s->bufs[i] = s->bufs[--s->nbufs];
            s->buffered += r->buf_size;
            return true;
        }
    }
    r->buf = malloc(need);
    if (!r->buf) {
        return false;
    }
    r->buf_size = need;
    s->buffered += need;
    return true;
}

static void buf_release(struct nbd_session *s, char *p, uint32_t len)
{
    if (s->freed || len > NBD_BUF_CACHE_MAX || len < 4096) {
        free(p);
        return;
    }
    if (s->nbufs == NBD_BUF_CACHE) {
        free(s->bufs[0].p);     /* keep the most recent ones */
        s->bufs[0] = s->bufs[--s->nbufs];
    }
    s->bufs[s->nbufs].p = p;
    s->bufs[s->nbufs].len = len;
    s->nbufs++;
}

void nbd_req_unref(struct nbd_req *r)
{
    if (--r->refs > 0) {
        return;
    }
    struct nbd_session *s = r->s;
    if (r->buf) {
        s->buffered -= r->buf_size;
        buf_release(s, r->buf, r->buf_size);
    }
    free(r->ext);
    free(r);
    s->inflight--;
    if (s->freed) {
        if (s->inflight == 0) {
            session_destroy(s);
        }
        return;
    }
    nbd_session_notify(s);
}

void nbd_session_notify(struct nbd_session *s)
{
    if (s->freed || s->in_callback) {
        return;     /* the caller re-evaluates when it returns */
    }
    session_process(s);
    if (s->wakeup) {
        s->wakeup(s->wakeup_opaque);
    }
}

void nbd_session_fatal(struct nbd_session *s, const char *why)
{
    log_info("client dropped: %s", why);
    s->state = NBD_ST_DEAD;
    s->closing = true;
    s->dead_now = true;
    s->ilen = 0;
}

/* ------------------------------------------------------------------ */
/* Input                                                               */
/* ------------------------------------------------------------------ */

static bool session_paused(const struct nbd_session *s)
{
    if (s->state != NBD_ST_REQ_HDR) {
        return false;
    }
    return s->inflight >= s->pol->max_inflight ||
           s->buffered >= s->pol->max_buffered;
}

static void session_process(struct nbd_session *s)
{
    if (s->processing || s->freed) {
        return;
    }
    s->processing = true;
    for (;;) {
        bool progress = false;
        switch (s->state) {
        case NBD_ST_CLIENT_FLAGS:
        case NBD_ST_OPT_HDR:
        case NBD_ST_OPT_DATA:
        case NBD_ST_OPT_DISCARD:
            progress = nbd_hs_step(s);
            break;
        case NBD_ST_REQ_HDR:
            progress = !session_paused(s) && nbd_tx_step(s);
            break;
        case NBD_ST_REQ_PAYLOAD:
            progress = nbd_tx_step(s);
            break;
        case NBD_ST_TLS:
        case NBD_ST_DEAD:
            break;
        }
        if (!progress) {
            break;
        }
    }
    if (s->ilen == 0) {
        s->ipos = 0;
    }
    s->processing = false;
}

size_t nbd_session_rbuf(struct nbd_session *s, void **buf)
{
    s->direct = NULL;
    if (s->closing || s->state == NBD_ST_DEAD || s->state == NBD_ST_TLS) {
        return 0;
    }
    if (s->state == NBD_ST_REQ_PAYLOAD && s->ilen == 0) {
        uint32_t left = s->cur->len - s->pay_got;
        if (left >= 4096) {
            s->direct = s->cur->buf + s->pay_got;
            *buf = s->direct;
            return left;
        }
    }
    if (s->ipos + s->ilen == NBD_IBUF_SIZE && s->ipos > 0) {
        memmove(s->ibuf, s->ibuf + s->ipos, s->ilen);
        s->ipos = 0;
    }
    size_t room = NBD_IBUF_SIZE - s->ipos - s->ilen;
    *buf = s->ibuf + s->ipos + s->ilen;
    return room;
}

void nbd_session_rdone(struct nbd_session *s, size_t n)
{
    s->in_callback = true;
    if (s->direct) {
        s->direct = NULL;
        s->pay_got += n;
        if (s->pay_got == s->cur->len) {
            nbd_tx_payload_done(s);
        }
    } else {
        s->ilen += n;
    }
    s->in_callback = false;
    session_process(s);
}

void nbd_session_eof(struct nbd_session *s)
{
    /* Requests already received are answered and flushed; a peer that
     * really vanished makes the sends fail, which closes too. */
    if (s->state != NBD_ST_DEAD) {
        if (s->state == NBD_ST_REQ_PAYLOAD || s->state == NBD_ST_OPT_DATA ||
            s->state == NBD_ST_OPT_DISCARD || s->ilen > 0) {
            log_debug("client closed the connection mid-message");
        }
        s->state = NBD_ST_DEAD;
    }
    s->closing = true;
    s->ilen = 0;
}

unsigned nbd_session_wants(struct nbd_session *s)
{
    unsigned w = 0;
    if (s->dead_now) {
        return NBD_WANT_CLOSE;
    }
    if (s->out_head) {
        w |= NBD_WANT_WRITE;
    } else if (s->state == NBD_ST_TLS) {
        w |= NBD_WANT_TLS;
    } else if (s->closing && s->inflight == 0) {
        w |= NBD_WANT_CLOSE;
    }
    if (!s->closing && s->state != NBD_ST_DEAD && s->state != NBD_ST_TLS) {
        void *dummy;
        /* rbuf has no side effects beyond compaction */
        if (nbd_session_rbuf(s, &dummy) > 0 && !session_paused(s)) {
            w |= NBD_WANT_READ;
        } else if (s->state == NBD_ST_REQ_PAYLOAD) {
            w |= NBD_WANT_READ;
        }
    }
    return w;
}

size_t nbd_session_take_pretls(struct nbd_session *s, void *buf, size_t len)
{
    size_t n = MIN(len, s->ilen);
    memcpy(buf, s->ibuf + s->ipos, n);
    s->ipos += n;
    s->ilen -= n;
    if (s->ilen == 0) {
        s->ipos = 0;
    }
    return n;
}

void nbd_session_tls_done(struct nbd_session *s, bool ok)
{
    if (!ok) {
        nbd_session_fatal(s, "TLS handshake failed");
        return;
    }
    /* Anything negotiated in plaintext is forgotten (spec: STARTTLS). */
    s->tls_active = true;
    s->sr = false;
    s->ctx_alloc = s->ctx_depth = 0;
    s->ipos = s->ilen = 0;
    s->state = NBD_ST_OPT_HDR;
}

void nbd_session_skip_handshake(struct nbd_session *s)
{
    out_drop_all(s);
    s->tflags = nbd_tx_flags(s);
    s->state = NBD_ST_REQ_HDR;
}

bool nbd_session_in_transmission(const struct nbd_session *s)
{
    return s->tflags != 0;
}

void nbd_session_set_zero_copy(struct nbd_session *s, bool on)
{
    s->zero_copy = on;
}
