/*
 * tools/nbd/handshake.c — the fixed newstyle handshake: greeting, client
 * flags, and option haggling (EXPORT_NAME, ABORT, LIST, STARTTLS, INFO, GO,
 * STRUCTURED_REPLY, LIST/SET_META_CONTEXT) up to the switch into
 * transmission. Works on the session's input buffer; replies are queued.
 */
#include "tools/nbd/nbd-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTX_ALLOC_ID    1
#define CTX_DEPTH_ID    2
static const char ctx_alloc_name[] = "base:allocation";
static const char ctx_depth_name[] = "qemu:allocation-depth";

static const char *opt_name(uint32_t opt)
{
    switch (opt) {
    case NBD_OPT_EXPORT_NAME: return "EXPORT_NAME";
    case NBD_OPT_ABORT: return "ABORT";
    case NBD_OPT_LIST: return "LIST";
    case NBD_OPT_STARTTLS: return "STARTTLS";
    case NBD_OPT_INFO: return "INFO";
    case NBD_OPT_GO: return "GO";
    case NBD_OPT_STRUCTURED_REPLY: return "STRUCTURED_REPLY";
    case NBD_OPT_LIST_META_CONTEXT: return "LIST_META_CONTEXT";
    case NBD_OPT_SET_META_CONTEXT: return "SET_META_CONTEXT";
    case NBD_OPT_EXTENDED_HEADERS: return "EXTENDED_HEADERS";
    default: return "unknown";
    }
}

void nbd_hs_start(struct nbd_session *s)
{
    char g[18];
    nbd_put64(g, NBD_MAGIC);
    nbd_put64(g + 8, NBD_IHAVEOPT);
    nbd_put16(g + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    nbd_out_bytes(s, g, sizeof(g));
}

uint16_t nbd_tx_flags(const struct nbd_session *s)
{
    return nbd_export_tx_flags(s->exp, s->sr);
}

uint16_t nbd_export_tx_flags(const struct nbd_export *e, bool sr)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                 NBD_FLAG_SEND_CACHE;
    if (e->read_only) {
        f |= NBD_FLAG_READ_ONLY;
    } else {
        f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
        if (e->can_fast_zero) {
            f |= NBD_FLAG_SEND_FAST_ZERO;
        }
    }
    if (sr) {
        f |= NBD_FLAG_SEND_DF;
    }
    if (e->multi_conn) {
        f |= NBD_FLAG_CAN_MULTI_CONN;
    }
    return f;
}

/* Queue one option reply with `len` bytes of data. */
static void reply(struct nbd_session *s, uint32_t type, const void *data,
                  uint32_t len)
{
    char h[20];
    nbd_put64(h, NBD_REP_MAGIC);
    nbd_put32(h + 8, s->opt);
    nbd_put32(h + 12, type);
    nbd_put32(h + 16, len);
    nbd_out_bytes(s, h, sizeof(h));
    nbd_out_bytes(s, data, len);
}

static void reply_err(struct nbd_session *s, uint32_t type, const char *fmt, ...)
    PRINTF_FMT(3, 4);
static void reply_err(struct nbd_session *s, uint32_t type, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0) {
        n = 0;
    }
    n = MIN(n, (int)sizeof(msg) - 1);
    log_debug("option %s: %s", opt_name(s->opt), msg);
    reply(s, type, msg, n);
}

static bool name_matches(const struct nbd_session *s, const char *name,
                         uint32_t len)
{
    return strlen(s->exp->name) == len && memcmp(s->exp->name, name, len) == 0;
}

static void enter_transmission(struct nbd_session *s)
{
    s->tflags = nbd_tx_flags(s);
    s->state = NBD_ST_REQ_HDR;
    log_debug("client entered transmission (flags 0x%x%s)", s->tflags,
              s->sr ? ", structured replies" : "");
}

static void opt_export_name(struct nbd_session *s)
{
    if (!name_matches(s, s->opt_buf, s->opt_len)) {
        nbd_session_fatal(s, "EXPORT_NAME asked for an unknown export");
        return;
    }
    s->tflags = nbd_tx_flags(s);
    char r[10 + 124] = { 0 };
    nbd_put64(r, s->exp->size);
    nbd_put16(r + 8, s->tflags);
    nbd_out_bytes(s, r, s->no_zeroes ? 10 : sizeof(r));
    enter_transmission(s);
}

static void opt_list(struct nbd_session *s)
{
    if (s->opt_len != 0) {
        reply_err(s, NBD_REP_ERR_INVALID, "LIST takes no data");
        return;
    }
    const char *name = s->exp->name;
    const char *desc = s->exp->description ? s->exp->description : "";
    size_t nl = strlen(name), dl = strlen(desc);
    char *d = malloc(4 + nl + dl);
    if (!d) {
        abort();
    }
    nbd_put32(d, nl);
    memcpy(d + 4, name, nl);
    memcpy(d + 4 + nl, desc, dl);
    reply(s, NBD_REP_SERVER, d, 4 + nl + dl);
    free(d);
    reply(s, NBD_REP_ACK, NULL, 0);
}

static void opt_starttls(struct nbd_session *s)
{
    if (s->opt_len != 0) {
        reply_err(s, NBD_REP_ERR_INVALID, "STARTTLS takes no data");
    } else if (!s->pol->tls_available) {
        reply_err(s, NBD_REP_ERR_POLICY, "TLS is not configured on this server");
    } else if (s->tls_active) {
        reply_err(s, NBD_REP_ERR_INVALID, "TLS is already active");
    } else {
        reply(s, NBD_REP_ACK, NULL, 0);
        s->state = NBD_ST_TLS;
    }
}

static void info_reply(struct nbd_session *s, uint16_t type, const void *d,
                       size_t len)
{
    char buf[2 + NBD_MAX_STRING];
    nbd_put16(buf, type);
    memcpy(buf + 2, d, len);
    reply(s, NBD_REP_INFO, buf, 2 + len);
}

static void opt_info_go(struct nbd_session *s)
{
    const char *p = s->opt_buf;
    uint32_t len = s->opt_len;
    if (len < 6) {
        reply_err(s, NBD_REP_ERR_INVALID, "%s data too short", opt_name(s->opt));
        return;
    }
    uint32_t nl = nbd_get32(p);
    if (nl > len - 6) {
        reply_err(s, NBD_REP_ERR_INVALID, "export name length %u too long", nl);
        return;
    }
    const char *name = p + 4;
    uint16_t nreq = nbd_get16(p + 4 + nl);
    if ((uint64_t)4 + nl + 2 + 2 * (uint64_t)nreq != len) {
        reply_err(s, NBD_REP_ERR_INVALID, "%s data length does not match its "
                  "%u information requests", opt_name(s->opt), nreq);
        return;
    }
    if (nl > NBD_MAX_STRING) {
        reply_err(s, NBD_REP_ERR_INVALID, "export name longer than %d bytes",
                  NBD_MAX_STRING);
        return;
    }
    if (!name_matches(s, name, nl)) {
        reply_err(s, NBD_REP_ERR_UNKNOWN, "export '%.*s' not present",
                  (int)MIN(nl, 256u), name);
        return;
    }
    bool want_name = false, want_desc = false;
    for (unsigned i = 0; i < nreq; i++) {
        uint16_t t = nbd_get16(p + 4 + nl + 2 + 2 * i);
        want_name |= t == NBD_INFO_NAME;
        want_desc |= t == NBD_INFO_DESCRIPTION;
    }
    const struct nbd_export *e = s->exp;
    char b[12];
    nbd_put64(b, e->size);
    nbd_put16(b + 8, nbd_tx_flags(s));
    info_reply(s, NBD_INFO_EXPORT, b, 10);
    if (want_name) {
        info_reply(s, NBD_INFO_NAME, e->name, strlen(e->name));
    }
    if (want_desc && e->description) {
        info_reply(s, NBD_INFO_DESCRIPTION, e->description,
                   MIN(strlen(e->description), (size_t)NBD_MAX_STRING));
    }
    nbd_put32(b, e->min_block ? e->min_block : 1);
    nbd_put32(b + 4, MAX(NBD_PREF_BLOCK, e->min_block));
    nbd_put32(b + 8, NBD_MAX_BLOCK);
    info_reply(s, NBD_INFO_BLOCK_SIZE, b, 12);
    reply(s, NBD_REP_ACK, NULL, 0);
    if (s->opt == NBD_OPT_GO) {
        enter_transmission(s);
    }
}

static void opt_structured_reply(struct nbd_session *s)
{
    if (s->opt_len != 0) {
        reply_err(s, NBD_REP_ERR_INVALID, "STRUCTURED_REPLY takes no data");
    } else if (s->sr) {
        reply_err(s, NBD_REP_ERR_INVALID, "structured replies already negotiated");
    } else {
        s->sr = true;
        reply(s, NBD_REP_ACK, NULL, 0);
    }
}

static void meta_reply(struct nbd_session *s, uint32_t id, const char *name)
{
    char b[4 + 64];
    size_t nl = strlen(name);
    nbd_put32(b, id);
    memcpy(b + 4, name, nl);
    reply(s, NBD_REP_META_CONTEXT, b, 4 + nl);
}

/* Does LIST query `q` (a namespace "base:" or a full name) cover `name`? */
static bool query_covers(const char *q, uint32_t ql, const char *name)
{
    size_t nl = strlen(name);
    if (ql == nl && memcmp(q, name, nl) == 0) {
        return true;
    }
    /* "ns:" alone selects the whole namespace when listing */
    return ql > 0 && q[ql - 1] == ':' && memchr(q, ':', ql) == q + ql - 1 &&
           ql < nl && memcmp(q, name, ql) == 0;
}

static void opt_meta_context(struct nbd_session *s)
{
    bool set = s->opt == NBD_OPT_SET_META_CONTEXT;
    const char *p = s->opt_buf;
    uint32_t len = s->opt_len;
    if (!s->sr) {
        reply_err(s, NBD_REP_ERR_INVALID, "%s needs structured replies first",
                  opt_name(s->opt));
        return;
    }
    if (len < 8) {
        reply_err(s, NBD_REP_ERR_INVALID, "%s data too short", opt_name(s->opt));
        return;
    }
    uint32_t nl = nbd_get32(p);
    if (nl > len - 8 || nl > NBD_MAX_STRING) {
        reply_err(s, NBD_REP_ERR_INVALID, "export name length %u too long", nl);
        return;
    }
    const char *name = p + 4;
    uint32_t nq = nbd_get32(p + 4 + nl);
    /* Validate every query's framing before acting on any. */
    uint32_t pos = 8 + nl;
    for (uint32_t i = 0; i < nq; i++) {
        if (len - pos < 4) {
            reply_err(s, NBD_REP_ERR_INVALID, "query %u truncated", i);
            return;
        }
        uint32_t ql = nbd_get32(p + pos);
        if (ql > len - pos - 4 || ql > NBD_MAX_STRING) {
            reply_err(s, NBD_REP_ERR_INVALID, "query %u length %u too long", i, ql);
            return;
        }
        pos += 4 + ql;
    }
    if (pos != len) {
        reply_err(s, NBD_REP_ERR_INVALID, "%u bytes after the last query",
                  len - pos);
        return;
    }
    if (!name_matches(s, name, nl)) {
        reply_err(s, NBD_REP_ERR_UNKNOWN, "export '%.*s' not present",
                  (int)MIN(nl, 256u), name);
        return;
    }
    bool alloc = false, depth = false;
    bool have_depth = s->exp->allocation_depth;
    if (!set && nq == 0) {
        alloc = true;
        depth = have_depth;
    }
    pos = 8 + nl;
    for (uint32_t i = 0; i < nq; i++) {
        uint32_t ql = nbd_get32(p + pos);
        const char *q = p + pos + 4;
        pos += 4 + ql;
        if (set) {
            alloc |= ql == strlen(ctx_alloc_name) && !memcmp(q, ctx_alloc_name, ql);
            depth |= have_depth && ql == strlen(ctx_depth_name) &&
                     !memcmp(q, ctx_depth_name, ql);
        } else {
            alloc |= query_covers(q, ql, ctx_alloc_name);
            depth |= have_depth && query_covers(q, ql, ctx_depth_name);
        }
    }
    if (alloc) {
        meta_reply(s, CTX_ALLOC_ID, ctx_alloc_name);
    }
    if (depth) {
        meta_reply(s, CTX_DEPTH_ID, ctx_depth_name);
    }
    if (set) {
        s->ctx_alloc = alloc ? CTX_ALLOC_ID : 0;
        s->ctx_depth = depth ? CTX_DEPTH_ID : 0;
    }
    reply(s, NBD_REP_ACK, NULL, 0);
}

static void handle_option(struct nbd_session *s)
{
    log_debug("option %s (%u), %u bytes", opt_name(s->opt), s->opt, s->opt_len);
    if (s->opt == NBD_OPT_ABORT) {
        reply(s, NBD_REP_ACK, NULL, 0);
        s->state = NBD_ST_DEAD;
        s->closing = true;
        return;
    }
    if (s->pol->tls_required && !s->tls_active && s->opt != NBD_OPT_STARTTLS) {
        if (s->opt == NBD_OPT_EXPORT_NAME) {
            nbd_session_fatal(s, "EXPORT_NAME before the required TLS");
        } else {
            reply_err(s, NBD_REP_ERR_TLS_REQD, "TLS is required before option %s",
                      opt_name(s->opt));
        }
        return;
    }
    switch (s->opt) {
    case NBD_OPT_EXPORT_NAME: opt_export_name(s); break;
    case NBD_OPT_LIST: opt_list(s); break;
    case NBD_OPT_STARTTLS: opt_starttls(s); break;
    case NBD_OPT_INFO:
    case NBD_OPT_GO: opt_info_go(s); break;
    case NBD_OPT_STRUCTURED_REPLY: opt_structured_reply(s); break;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT: opt_meta_context(s); break;
    default:
        reply_err(s, NBD_REP_ERR_UNSUP, "option %u not supported", s->opt);
        break;
    }
}

bool nbd_hs_step(struct nbd_session *s)
{
    const char *in = s->ibuf + s->ipos;
    switch (s->state) {
    case NBD_ST_CLIENT_FLAGS: {
        if (s->ilen < 4) {
            return false;
        }
        uint32_t cf = nbd_get32(in);
        s->ipos += 4;
        s->ilen -= 4;
        if (!(cf & NBD_FLAG_C_FIXED_NEWSTYLE)) {
            nbd_session_fatal(s, "client does not speak fixed newstyle");
            return false;
        }
        if (cf & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
            nbd_session_fatal(s, "unknown client flags");
            return false;
        }
        s->no_zeroes = cf & NBD_FLAG_C_NO_ZEROES;
        s->state = NBD_ST_OPT_HDR;
        return true;
    }
    case NBD_ST_OPT_HDR: {
        if (s->ilen < NBD_OPT_HDR_LEN) {
            return false;
        }
        uint64_t magic = nbd_get64(in);
        s->opt = nbd_get32(in + 8);
        s->opt_len = nbd_get32(in + 12);
        s->ipos += NBD_OPT_HDR_LEN;
        s->ilen -= NBD_OPT_HDR_LEN;
        s->opt_got = 0;
        if (magic != NBD_IHAVEOPT) {
            nbd_session_fatal(s, "bad option magic");
            return false;
        }
        if (s->opt_len > NBD_MAX_OPT_LEN) {
            if (s->opt_len > NBD_MAX_OPT_DISCARD || s->opt == NBD_OPT_EXPORT_NAME) {
                nbd_session_fatal(s, "option data far too long");
                return false;
            }
            s->state = NBD_ST_OPT_DISCARD;
            return true;
        }
        free(s->opt_buf);
        s->opt_buf = malloc(s->opt_len + 1);
        if (!s->opt_buf) {
            abort();
        }
        s->state = NBD_ST_OPT_DATA;
        return true;
    }
    case NBD_ST_OPT_DATA:
    case NBD_ST_OPT_DISCARD: {
        uint32_t take = MIN((size_t)(s->opt_len - s->opt_got), s->ilen);
        if (s->state == NBD_ST_OPT_DATA) {
            memcpy(s->opt_buf + s->opt_got, in, take);
        }
        s->opt_got += take;
        s->ipos += take;
        s->ilen -= take;
        if (s->opt_got < s->opt_len) {
            return false;
        }
        if (s->state == NBD_ST_OPT_DISCARD) {
            s->state = NBD_ST_OPT_HDR;
            reply_err(s, NBD_REP_ERR_TOO_BIG, "option data of %u bytes is too long",
                      s->opt_len);
            return true;
        }
        s->opt_buf[s->opt_len] = 0;
        s->state = NBD_ST_OPT_HDR;
        handle_option(s);
        free(s->opt_buf);
        s->opt_buf = NULL;
        return s->state != NBD_ST_DEAD;
    }
    default:
        return false;
    }
}
