/*
 * tools/nbd/transmission.c — the transmission phase: request parsing and
 * checking, dispatch to the export's asynchronous operations, and simple
 * or structured replies (DATA/HOLE chunks for reads, BLOCK_STATUS for the
 * negotiated meta contexts). Replies go out in completion order.
 */
#include "tools/nbd/nbd-int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_MAX_EXTENTS   64      /* map pieces per READ before plain reads */
#define BS_MAX_EXTENTS     4096    /* descriptors per BLOCK_STATUS reply */

int nbd_errno_to_wire(int err)
{
    switch (err) {
    case 0: return 0;
    case EPERM: case EACCES: case EROFS: return NBD_EPERM;
    case EIO: return NBD_EIO;
    case ENOMEM: return NBD_ENOMEM;
    case ENOSPC: case EFBIG: case EDQUOT: return NBD_ENOSPC;
    case EOVERFLOW: return NBD_EOVERFLOW;
    case ENOTSUP: return NBD_ENOTSUP;
    case ESHUTDOWN: return NBD_ESHUTDOWN;
    default: return NBD_EINVAL;
    }
}

static const char *cmd_name(uint16_t type)
{
    static const char *const names[] = {
        "READ", "WRITE", "DISC", "FLUSH", "TRIM", "CACHE", "WRITE_ZEROES",
        "BLOCK_STATUS",
    };
    return type < ARRAY_SIZE(names) ? names[type] : "unknown";
}

/* ------------------------------------------------------------------ */
/* Replies                                                             */
/* ------------------------------------------------------------------ */

static void simple_reply(struct nbd_session *s, struct nbd_req *r, int err)
{
    char h[NBD_SIMPLE_REPLY_LEN];
    nbd_put32(h, NBD_SIMPLE_REPLY_MAGIC);
    nbd_put32(h + 4, nbd_errno_to_wire(-err));
    nbd_put64(h + 8, r->cookie);
    nbd_out_msg(s, h, sizeof(h));
}

static void chunk_hdr(char *h, struct nbd_req *r, uint16_t flags, uint16_t type,
                      uint32_t len)
{
    nbd_put32(h, NBD_STRUCTURED_REPLY_MAGIC);
    nbd_put16(h + 4, flags);
    nbd_put16(h + 6, type);
    nbd_put64(h + 8, r->cookie);
    nbd_put32(h + 16, len);
}

/* Final ERROR chunk with a message (structured replies). */
static void error_chunk(struct nbd_session *s, struct nbd_req *r, int err,
                        const char *msg)
{
    size_t ml = strlen(msg);
    char b[NBD_CHUNK_HDR_LEN + 6 + 128];
    ml = MIN(ml, (size_t)128);
    chunk_hdr(b, r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, 6 + ml);
    nbd_put32(b + 20, nbd_errno_to_wire(-err));
    nbd_put16(b + 24, ml);
    memcpy(b + 26, msg, ml);
    nbd_out_msg(s, b, NBD_CHUNK_HDR_LEN + 6 + ml);
}

/* An error for any command: READ and BLOCK_STATUS under structured
 * replies get an ERROR chunk, everything else a simple reply. */
static void reply_error(struct nbd_session *s, struct nbd_req *r, int err,
                        const char *msg)
{
    log_debug("%s at %" PRIu64 "+%u: %s", cmd_name(r->type), r->off, r->len, msg);
    if (s->sr && (r->type == NBD_CMD_READ || r->type == NBD_CMD_BLOCK_STATUS)) {
        error_chunk(s, r, err, msg);
    } else {
        simple_reply(s, r, err);
    }
}

/* ------------------------------------------------------------------ */
/* Commands without data                                               */
/* ------------------------------------------------------------------ */

static void generic_done(void *opaque, int ret)
{
    struct nbd_req *r = opaque;
    struct nbd_session *s = r->s;
    if (!s->freed) {
        if (ret < 0) {
            char msg[96];
            snprintf(msg, sizeof(msg), "%s failed: %s", cmd_name(r->type),
                     strerror(-ret));
            reply_error(s, r, ret, msg);
        } else {
            simple_reply(s, r, 0);
        }
        nbd_session_notify(s);
    }
    nbd_req_unref(r);
}

/* ------------------------------------------------------------------ */
/* READ                                                                */
/* ------------------------------------------------------------------ */

static bool ext_is_zero(const struct nbd_extent *e)
{
    return e->flags & NBD_STATE_ZERO;
}

/* Queue the pieces of [ext[a], ext[b]) as payload segments. */
static void queue_pieces(struct nbd_session *s, struct nbd_req *r, unsigned a,
                         unsigned b, uint64_t pos)
{
    for (unsigned i = a; i < b; i++) {
        const struct nbd_extent *e = &r->ext[i];
        if (ext_is_zero(e)) {
            nbd_out_seg(s, NBD_SEG_ZERO, e->len, NULL);
        } else if (e->fd >= 0) {
            struct nbd_seg *seg = nbd_out_seg(s, NBD_SEG_FD, e->len, r);
            seg->fd = e->fd;
            seg->foff = e->foff;
        } else {
            struct nbd_seg *seg = nbd_out_seg(s, NBD_SEG_MEM, e->len, r);
            seg->ptr = r->buf + pos;
        }
        pos += e->len;
    }
}

static void read_reply(struct nbd_session *s, struct nbd_req *r)
{
    if (r->err < 0) {
        char msg[96];
        snprintf(msg, sizeof(msg), "read failed: %s", strerror(-r->err));
        reply_error(s, r, r->err, msg);
        return;
    }
    if (!s->sr) {
        simple_reply(s, r, 0);
        queue_pieces(s, r, 0, r->n_ext, 0);
        return;
    }
    char h[NBD_CHUNK_HDR_LEN + 12];
    if (r->len == 0) {
        chunk_hdr(h, r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0);
        nbd_out_msg(s, h, NBD_CHUNK_HDR_LEN);
        return;
    }
    if (r->flags & NBD_CMD_FLAG_DF) {
        chunk_hdr(h, r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, 8 + r->len);
        nbd_put64(h + 20, r->off);
        nbd_out_msg(s, h, 28);
        queue_pieces(s, r, 0, r->n_ext, 0);
        return;
    }
    /* One HOLE chunk per zero run, one DATA chunk per run of data pieces. */
    uint64_t pos = 0;
    unsigned i = 0;
    while (i < r->n_ext) {
        unsigned j = i;
        uint64_t run = 0;
        bool zero = ext_is_zero(&r->ext[i]);
        while (j < r->n_ext && ext_is_zero(&r->ext[j]) == zero) {
            run += r->ext[j].len;
            j++;
        }
        uint16_t fl = j == r->n_ext ? NBD_REPLY_FLAG_DONE : 0;
        if (zero) {
            chunk_hdr(h, r, fl, NBD_REPLY_TYPE_OFFSET_HOLE, 12);
            nbd_put64(h + 20, r->off + pos);
            nbd_put32(h + 28, run);
            nbd_out_msg(s, h, 32);
        } else {
            chunk_hdr(h, r, fl, NBD_REPLY_TYPE_OFFSET_DATA, 8 + run);
            nbd_put64(h + 20, r->off + pos);
            nbd_out_msg(s, h, 28);
            queue_pieces(s, r, i, j, pos);
        }
        pos += run;
        i = j;
    }
}

static void read_done(void *opaque, int ret)
{
    struct nbd_req *r = opaque;
    struct nbd_session *s = r->s;
    if (ret < 0 && r->err == 0) {
        r->err = ret;
    }
    if (--r->pending == 0 && !s->freed) {
        read_reply(s, r);
        nbd_session_notify(s);
    }
    nbd_req_unref(r);
}

/* The map is known (or not wanted): read what must be read. Holds the
 * request's dispatch reference. */
static void read_mapped(void *opaque, int ret)
{
    struct nbd_req *r = opaque;
    struct nbd_session *s = r->s;
    const struct nbd_export *e = s->exp;

    if (ret < 0) {
        r->n_ext = 0;       /* no map: read everything */
    }
    uint64_t covered = 0;
    for (unsigned i = 0; i < r->n_ext; i++) {
        covered += r->ext[i].len;
    }
    if (covered < r->len) {
        if (!r->ext) {
            r->ext = calloc(1, sizeof(*r->ext));
            if (!r->ext) {
                abort();
            }
        }
        struct nbd_extent *x = &r->ext[r->n_ext++];
        x->len = r->len - covered;
        x->flags = 0;
        x->fd = -1;
    }
    r->pending = 1;         /* this builder */
    uint64_t pos = 0;
    unsigned i = 0;
    while (i < r->n_ext && !s->freed) {
        const struct nbd_extent *x = &r->ext[i];
        if (ext_is_zero(x) || x->fd >= 0) {
            pos += x->len;
            i++;
            continue;
        }
        /* merge neighbouring pieces that need reading into one read */
        uint64_t run = 0;
        unsigned j = i;
        while (j < r->n_ext && !ext_is_zero(&r->ext[j]) && r->ext[j].fd < 0) {
            run += r->ext[j].len;
            j++;
        }
        if (!r->buf && !nbd_req_alloc_buf(r)) {
            if (r->err == 0) {
                r->err = -ENOMEM;
            }
            break;
        }
        r->refs++;
        r->pending++;
        int rc = e->ops->read(e->opaque, r->off + pos, r->buf + pos, run,
                              read_done, r);
        if (rc < 0) {
            read_done(r, rc);
        }
        pos += run;
        i = j;
    }
    read_done(r, 0);
}

static void do_read(struct nbd_session *s, struct nbd_req *r)
{
    const struct nbd_export *e = s->exp;
    bool want_holes = s->sr && !(r->flags & NBD_CMD_FLAG_DF);
    if (r->len == 0 || (!want_holes && !s->zero_copy)) {
        read_mapped(r, 0);
        return;
    }
    r->ext = calloc(READ_MAX_EXTENTS + 1, sizeof(*r->ext));
    if (!r->ext) {
        abort();
    }
    int rc = e->ops->block_status(e->opaque, r->off, r->len, r->ext,
                                  READ_MAX_EXTENTS, &r->n_ext, s->zero_copy,
                                  read_mapped, r);
    if (rc < 0) {
        read_mapped(r, rc);
    }
}

/* ------------------------------------------------------------------ */
/* BLOCK_STATUS                                                        */
/* ------------------------------------------------------------------ */

/* Append one context's descriptors, merging runs with the same value. */
static size_t bs_descriptors(struct nbd_req *r, bool depth, char *out,
                             unsigned max)
{
    unsigned n = 0;
    uint64_t run = 0;
    uint32_t val = 0;
    for (unsigned i = 0; i <= r->n_ext; i++) {
        uint32_t v = 0;
        if (i < r->n_ext) {
            v = depth ? r->ext[i].depth : r->ext[i].flags &
                (NBD_STATE_HOLE | NBD_STATE_ZERO);
        }
        if (i == r->n_ext || (run > 0 && v != val) ||
            run + r->ext[i].len > UINT32_MAX) {
            if (run > 0 && n < max) {
                nbd_put32(out + 8 * n, run);
                nbd_put32(out + 8 * n + 4, val);
                n++;
            }
            run = 0;
            if (i == r->n_ext || n == max) {
                break;
            }
        }
        val = v;
        run += r->ext[i].len;
    }
    return n;
}

static void bs_done(void *opaque, int ret)
{
    struct nbd_req *r = opaque;
    struct nbd_session *s = r->s;
    if (s->freed) {
        nbd_req_unref(r);
        return;
    }
    if (ret == 0 && r->n_ext == 0) {
        ret = -EIO;
    }
    if (ret < 0) {
        char msg[96];
        snprintf(msg, sizeof(msg), "block status failed: %s", strerror(-ret));
        reply_error(s, r, ret, msg);
    } else {
        unsigned max = (r->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : BS_MAX_EXTENTS;
        uint32_t ids[2] = { s->ctx_alloc, s->ctx_depth };
        int last = ids[1] ? 1 : 0;
        for (int c = 0; c < 2; c++) {
            if (!ids[c]) {
                continue;
            }
            char *b = malloc(NBD_CHUNK_HDR_LEN + 4 + 8 * (size_t)max);
            if (!b) {
                abort();
            }
            size_t n = bs_descriptors(r, c == 1, b + NBD_CHUNK_HDR_LEN + 4, max);
            size_t len = 4 + 8 * n;
            chunk_hdr(b, r, c == last ? NBD_REPLY_FLAG_DONE : 0,
                      NBD_REPLY_TYPE_BLOCK_STATUS, len);
            nbd_put32(b + NBD_CHUNK_HDR_LEN, ids[c]);
            nbd_out_msg_urgent(s, b, NBD_CHUNK_HDR_LEN + len);
            free(b);
        }
    }
    nbd_session_notify(s);
    nbd_req_unref(r);
}

static void do_block_status(struct nbd_session *s, struct nbd_req *r)
{
    const struct nbd_export *e = s->exp;
    unsigned max = (r->flags & NBD_CMD_FLAG_REQ_ONE) ? 16 : BS_MAX_EXTENTS;
    r->ext = calloc(max, sizeof(*r->ext));
    if (!r->ext) {
        abort();
    }
    int rc = e->ops->block_status(e->opaque, r->off, r->len, r->ext, max,
                                  &r->n_ext, false, bs_done, r);
    if (rc < 0) {
        bs_done(r, rc);
    }
}

/* ------------------------------------------------------------------ */
/* Dispatch                                                            */
/* ------------------------------------------------------------------ */

/* 0 when the request may run, else -errno with *msg set. */
static int check_request(struct nbd_session *s, struct nbd_req *r,
                         const char **msg)
{
    uint16_t allowed = NBD_CMD_FLAG_FUA;
    bool writes = false, bounded = true;
    switch (r->type) {
    case NBD_CMD_READ:
        if (s->sr) {
            allowed |= NBD_CMD_FLAG_DF;
        }
        break;
    case NBD_CMD_WRITE:
    case NBD_CMD_TRIM:
        writes = true;
        break;
    case NBD_CMD_WRITE_ZEROES:
        writes = true;
        allowed |= NBD_CMD_FLAG_NO_HOLE;
        if (s->tflags & NBD_FLAG_SEND_FAST_ZERO) {
            allowed |= NBD_CMD_FLAG_FAST_ZERO;
        }
        break;
    case NBD_CMD_FLUSH:
        bounded = false;
        break;
    case NBD_CMD_CACHE:
        break;
    case NBD_CMD_BLOCK_STATUS:
        allowed |= NBD_CMD_FLAG_REQ_ONE;
        break;
    default:
        *msg = "unknown command";
        return -EINVAL;
    }
    if (r->flags & ~allowed) {
        *msg = "unsupported command flags";
        return -EINVAL;
    }
    if (writes && s->exp->read_only) {
        *msg = "export is read-only";
        return -EPERM;
    }
    if (r->type == NBD_CMD_READ && r->len > NBD_MAX_BLOCK) {
        *msg = "request larger than the maximum block size";
        return -EINVAL;
    }
    if (bounded && (r->off > s->exp->size || r->len > s->exp->size - r->off)) {
        *msg = "request beyond the end of the export";
        return writes ? -ENOSPC : -EINVAL;
    }
    if (r->type == NBD_CMD_BLOCK_STATUS) {
        if (!s->sr || (!s->ctx_alloc && !s->ctx_depth)) {
            *msg = "no meta context negotiated";
            return -EINVAL;
        }
        if (r->len == 0) {
            *msg = "block status of zero bytes";
            return -EINVAL;
        }
    }
    return 0;
}

static void dispatch(struct nbd_session *s, struct nbd_req *r)
{
    const struct nbd_export *e = s->exp;
    const char *msg = NULL;
    int rc = check_request(s, r, &msg);
    if (rc < 0) {
        reply_error(s, r, rc, msg);
        nbd_req_unref(r);
        return;
    }
    switch (r->type) {
    case NBD_CMD_READ:
        do_read(s, r);
        return;
    case NBD_CMD_BLOCK_STATUS:
        do_block_status(s, r);
        return;
    case NBD_CMD_WRITE:
        rc = e->ops->write(e->opaque, r->off, r->buf, r->len,
                           r->flags & NBD_CMD_FLAG_FUA, generic_done, r);
        break;
    case NBD_CMD_FLUSH:
        rc = e->ops->flush(e->opaque, generic_done, r);
        break;
    case NBD_CMD_TRIM:
        rc = e->ops->trim(e->opaque, r->off, r->len,
                          r->flags & NBD_CMD_FLAG_FUA, generic_done, r);
        break;
    case NBD_CMD_WRITE_ZEROES:
        rc = e->ops->write_zeroes(e->opaque, r->off, r->len, r->flags,
                                  generic_done, r);
        break;
    case NBD_CMD_CACHE:
        rc = e->ops->cache(e->opaque, r->off, r->len, generic_done, r);
        break;
    }
    if (rc < 0) {
        generic_done(r, rc);
    }
}

void nbd_tx_payload_done(struct nbd_session *s)
{
    struct nbd_req *r = s->cur;
    s->cur = NULL;
    s->state = NBD_ST_REQ_HDR;
    dispatch(s, r);
}

bool nbd_tx_step(struct nbd_session *s)
{
    const char *in = s->ibuf + s->ipos;
    if (s->state == NBD_ST_REQ_PAYLOAD) {
        struct nbd_req *r = s->cur;
        size_t take = MIN(s->ilen, (size_t)(r->len - s->pay_got));
        if (take == 0) {
            return false;
        }
        memcpy(r->buf + s->pay_got, in, take);
        s->pay_got += take;
        s->ipos += take;
        s->ilen -= take;
        if (s->pay_got == r->len) {
            nbd_tx_payload_done(s);
        }
        return true;
    }
    if (s->ilen < NBD_REQ_LEN) {
        return false;
    }
    uint32_t magic = nbd_get32(in);
    if (magic != NBD_REQUEST_MAGIC) {
        nbd_session_fatal(s, "bad request magic");
        return false;
    }
    struct nbd_req *r = calloc(1, sizeof(*r));
    if (!r) {
        abort();
    }
    r->s = s;
    r->refs = 1;
    r->flags = nbd_get16(in + 4);
    r->type = nbd_get16(in + 6);
    r->cookie = nbd_get64(in + 8);
    r->off = nbd_get64(in + 16);
    r->len = nbd_get32(in + 24);
    s->ipos += NBD_REQ_LEN;
    s->ilen -= NBD_REQ_LEN;
    s->inflight++;

    if (r->type == NBD_CMD_DISC) {
        log_debug("client sent DISC");
        s->state = NBD_ST_DEAD;
        s->closing = true;
        s->ilen = 0;
        nbd_req_unref(r);
        return false;
    }
    if (r->type == NBD_CMD_WRITE) {
        if (r->len > NBD_MAX_BLOCK) {
            /* Its payload cannot be skipped cheaply: the spec allows
             * dropping the connection. */
            nbd_req_unref(r);
            nbd_session_fatal(s, "WRITE larger than the maximum block size");
            return false;
        }
        if (!nbd_req_alloc_buf(r)) {
            abort();
        }
        s->cur = r;
        s->pay_got = 0;
        s->state = NBD_ST_REQ_PAYLOAD;
        if (r->len == 0) {
            nbd_tx_payload_done(s);
        }
        return true;
    }
    dispatch(s, r);
    return true;
}
