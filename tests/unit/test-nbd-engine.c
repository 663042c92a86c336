/*
 * tests/unit/test-nbd-engine.c — diskdm-nbd's protocol engine through its
 * session interface with an in-memory export: exact handshake bytes and
 * option replies, TLS policy, structured reads with HOLE chunks, block
 * status for both meta contexts, errors, out-of-order replies, back
 * pressure, and sessions freed with requests still running.
 */
#include "tools/nbd/handshake.c"
#include "tools/nbd/session.c"
#include "tools/nbd/transmission.c"
#include "tools/nbd/mem-export.h"

#include <check.h>

#define SIZE (1u << 20)

static struct memx m;
static struct nbd_policy pol;
static struct nbd_session *s;
static uint8_t out[4 << 20];
static size_t out_len, out_pos;
static bool hold_output;        /* feed() leaves the output queued */

static void setup(void)
{
    memx_init(&m, SIZE, false);
    m.exp.name = "disk0";
    m.exp.description = "memory disk";
    pol = (struct nbd_policy){ .max_inflight = 16, .max_buffered = 64 << 20 };
    out_len = out_pos = 0;
    hold_output = false;
    s = NULL;
}

static void teardown(void)
{
    nbd_session_free(s);
    while (m.npend) {
        memx_release(&m, 0);
    }
    memx_free(&m);
}

/* Move up to max bytes of queued output into out[] (as a short send). */
static void drain_upto(size_t max)
{
    struct nbd_seg *seg;
    while (max > 0 && (seg = nbd_session_out(s)) != NULL) {
        size_t n = MIN(seg->len - seg->done, max);
        max -= n;
        ck_assert_uint_le(out_len + n, sizeof(out));
        if (seg->kind == NBD_SEG_MEM) {
            memcpy(out + out_len, seg->ptr + seg->done, n);
        } else {
            ck_assert_int_eq(seg->kind, NBD_SEG_ZERO);
            memset(out + out_len, 0, n);
        }
        out_len += n;
        nbd_session_out_sent(s, n);
    }
}

static void drain(void)
{
    drain_upto(SIZE_MAX);
}

static void feed(const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        void *buf;
        size_t room = nbd_session_rbuf(s, &buf);
        ck_assert_uint_gt(room, 0);
        size_t n = MIN(room, len);
        memcpy(buf, p, n);
        nbd_session_rdone(s, n);
        p += n;
        len -= n;
    }
    if (!hold_output) {
        drain();
    }
}

static const uint8_t *take(size_t n)
{
    ck_assert_msg(out_pos + n <= out_len, "wanted %zu bytes, have %zu", n,
                  out_len - out_pos);
    const uint8_t *p = out + out_pos;
    out_pos += n;
    return p;
}

static void start(void)
{
    s = nbd_session_new(&m.exp, &pol, NULL, NULL);
    drain();
    const uint8_t *g = take(18);
    ck_assert(memcmp(g, "NBDMAGICIHAVEOPT\0\3", 18) == 0);
    uint8_t f[4];
    nbd_put32(f, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    feed(f, 4);
}

static void send_opt(uint32_t opt, const void *data, uint32_t len)
{
    uint8_t h[16];
    nbd_put64(h, NBD_IHAVEOPT);
    nbd_put32(h + 8, opt);
    nbd_put32(h + 12, len);
    feed(h, 16);
    if (len) {
        feed(data, len);
    }
}

/* Next option reply: checks option and type, returns data and length. */
static const uint8_t *expect_rep(uint32_t opt, uint32_t type, uint32_t *len)
{
    const uint8_t *h = take(20);
    ck_assert_uint_eq(nbd_get64(h), NBD_REP_MAGIC);
    ck_assert_uint_eq(nbd_get32(h + 8), opt);
    ck_assert_msg(nbd_get32(h + 12) == type, "reply type 0x%x, wanted 0x%x",
                  nbd_get32(h + 12), type);
    *len = nbd_get32(h + 16);
    return take(*len);
}

static void sr_and_meta(bool depth)
{
    uint32_t l;
    send_opt(NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    expect_rep(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, &l);
    uint8_t q[128];
    size_t n = 0;
    nbd_put32(q, 5);
    memcpy(q + 4, "disk0", 5);
    nbd_put32(q + 9, depth ? 2 : 1);
    n = 13;
    nbd_put32(q + n, 15);
    memcpy(q + n + 4, "base:allocation", 15);
    n += 19;
    if (depth) {
        nbd_put32(q + n, 21);
        memcpy(q + n + 4, "qemu:allocation-depth", 21);
        n += 25;
    }
    send_opt(NBD_OPT_SET_META_CONTEXT, q, n);
    const uint8_t *d = expect_rep(NBD_OPT_SET_META_CONTEXT, NBD_REP_META_CONTEXT, &l);
    ck_assert_uint_eq(nbd_get32(d), 1);
    ck_assert(l == 19 && memcmp(d + 4, "base:allocation", 15) == 0);
    if (depth) {
        d = expect_rep(NBD_OPT_SET_META_CONTEXT, NBD_REP_META_CONTEXT, &l);
        ck_assert_uint_eq(nbd_get32(d), 2);
    }
    expect_rep(NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK, &l);
}

static uint16_t go(void)
{
    uint8_t b[4 + 5 + 2 + 6];
    nbd_put32(b, 5);
    memcpy(b + 4, "disk0", 5);
    nbd_put16(b + 9, 3);
    nbd_put16(b + 11, NBD_INFO_NAME);
    nbd_put16(b + 13, NBD_INFO_DESCRIPTION);
    nbd_put16(b + 15, NBD_INFO_BLOCK_SIZE);
    send_opt(NBD_OPT_GO, b, sizeof(b));
    uint32_t l;
    const uint8_t *d = expect_rep(NBD_OPT_GO, NBD_REP_INFO, &l);
    ck_assert_uint_eq(l, 12);
    ck_assert_uint_eq(nbd_get16(d), NBD_INFO_EXPORT);
    ck_assert_uint_eq(nbd_get64(d + 2), SIZE);
    uint16_t flags = nbd_get16(d + 10);
    d = expect_rep(NBD_OPT_GO, NBD_REP_INFO, &l);
    ck_assert(l == 7 && nbd_get16(d) == NBD_INFO_NAME && !memcmp(d + 2, "disk0", 5));
    d = expect_rep(NBD_OPT_GO, NBD_REP_INFO, &l);
    ck_assert(l == 13 && nbd_get16(d) == NBD_INFO_DESCRIPTION &&
              !memcmp(d + 2, "memory disk", 11));
    d = expect_rep(NBD_OPT_GO, NBD_REP_INFO, &l);
    ck_assert(l == 14 && nbd_get16(d) == NBD_INFO_BLOCK_SIZE);
    ck_assert_uint_eq(nbd_get32(d + 2), 1);
    ck_assert_uint_eq(nbd_get32(d + 6), 4096);
    ck_assert_uint_eq(nbd_get32(d + 10), 32 << 20);
    expect_rep(NBD_OPT_GO, NBD_REP_ACK, &l);
    ck_assert(nbd_session_in_transmission(s));
    return flags;
}

static void request(uint16_t type, uint16_t flags, uint64_t cookie,
                    uint64_t off, uint32_t len, const void *payload)
{
    uint8_t r[28];
    nbd_put32(r, NBD_REQUEST_MAGIC);
    nbd_put16(r + 4, flags);
    nbd_put16(r + 6, type);
    nbd_put64(r + 8, cookie);
    nbd_put64(r + 16, off);
    nbd_put32(r + 24, len);
    feed(r, 28);
    if (payload) {
        feed(payload, len);
    }
}

static void expect_simple(uint64_t cookie, uint32_t err)
{
    const uint8_t *h = take(16);
    ck_assert_uint_eq(nbd_get32(h), NBD_SIMPLE_REPLY_MAGIC);
    ck_assert_msg(nbd_get32(h + 4) == err, "error %u, wanted %u", nbd_get32(h + 4), err);
    ck_assert_uint_eq(nbd_get64(h + 8), cookie);
}

/* Next chunk header: returns type, flags and payload. */
static const uint8_t *expect_chunk(uint64_t cookie, uint16_t *type,
                                   uint16_t *flags, uint32_t *len)
{
    const uint8_t *h = take(20);
    ck_assert_uint_eq(nbd_get32(h), NBD_STRUCTURED_REPLY_MAGIC);
    *flags = nbd_get16(h + 4);
    *type = nbd_get16(h + 6);
    ck_assert_uint_eq(nbd_get64(h + 8), cookie);
    *len = nbd_get32(h + 16);
    return take(*len);
}

START_TEST(test_options)
{
    start();
    uint32_t l;
    send_opt(99, "xy", 2);
    const uint8_t *d = expect_rep(99, NBD_REP_ERR_UNSUP, &l);
    ck_assert(l == 23 && memcmp(d, "option 99 not supported", 23) == 0);
    send_opt(NBD_OPT_LIST, NULL, 0);
    d = expect_rep(NBD_OPT_LIST, NBD_REP_SERVER, &l);
    ck_assert(l == 4 + 5 + 11 && nbd_get32(d) == 5 && !memcmp(d + 4, "disk0memory disk", 16));
    expect_rep(NBD_OPT_LIST, NBD_REP_ACK, &l);
    send_opt(NBD_OPT_STARTTLS, NULL, 0);
    d = expect_rep(NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY, &l);
    ck_assert(memcmp(d, "TLS is not configured on this server", l) == 0);
    uint8_t b[10];
    nbd_put32(b, 4);
    memcpy(b + 4, "nope", 4);
    nbd_put16(b + 8, 0);
    send_opt(NBD_OPT_INFO, b, 10);
    d = expect_rep(NBD_OPT_INFO, NBD_REP_ERR_UNKNOWN, &l);
    ck_assert(memcmp(d, "export 'nope' not present", l) == 0);
    nbd_put32(b, 0);
    nbd_put32(b + 4, 0);
    send_opt(NBD_OPT_LIST_META_CONTEXT, b, 8);
    d = expect_rep(NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_INVALID, &l);
    ck_assert(memcmp(d, "LIST_META_CONTEXT needs structured replies first", l) == 0);
    /* listing all contexts of the export: both, since -A is on */
    send_opt(NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    expect_rep(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, &l);
    nbd_put32(b, 5);
    memcpy(b + 4, "disk0", 5);
    uint8_t q[13];
    memcpy(q, b, 9);
    nbd_put32(q + 9, 0);
    send_opt(NBD_OPT_LIST_META_CONTEXT, q, 13);
    d = expect_rep(NBD_OPT_LIST_META_CONTEXT, NBD_REP_META_CONTEXT, &l);
    ck_assert(l == 19 && !memcmp(d + 4, "base:allocation", 15));
    d = expect_rep(NBD_OPT_LIST_META_CONTEXT, NBD_REP_META_CONTEXT, &l);
    ck_assert(l == 25 && !memcmp(d + 4, "qemu:allocation-depth", 21));
    expect_rep(NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK, &l);
    send_opt(NBD_OPT_ABORT, NULL, 0);
    expect_rep(NBD_OPT_ABORT, NBD_REP_ACK, &l);
    ck_assert_uint_eq(nbd_session_wants(s), NBD_WANT_CLOSE);
}
END_TEST

START_TEST(test_tls_required)
{
    pol.tls_available = pol.tls_required = true;
    start();
    uint32_t l;
    send_opt(NBD_OPT_LIST, NULL, 0);
    const uint8_t *d = expect_rep(NBD_OPT_LIST, NBD_REP_ERR_TLS_REQD, &l);
    ck_assert(memcmp(d, "TLS is required before option LIST", l) == 0);
    send_opt(NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    expect_rep(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_TLS_REQD, &l);
    send_opt(NBD_OPT_STARTTLS, NULL, 0);
    expect_rep(NBD_OPT_STARTTLS, NBD_REP_ACK, &l);
    ck_assert_uint_eq(nbd_session_wants(s), NBD_WANT_TLS);
    nbd_session_tls_done(s, true);
    ck_assert(nbd_session_wants(s) & NBD_WANT_READ);
    send_opt(NBD_OPT_STARTTLS, NULL, 0);
    d = expect_rep(NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, &l);
    ck_assert(memcmp(d, "TLS is already active", l) == 0);
    sr_and_meta(false);
    go();
}
END_TEST

START_TEST(test_export_name_before_tls_drops)
{
    pol.tls_available = pol.tls_required = true;
    start();
    send_opt(NBD_OPT_EXPORT_NAME, "disk0", 5);
    ck_assert_uint_eq(out_pos, out_len);
    ck_assert_uint_eq(nbd_session_wants(s), NBD_WANT_CLOSE);
}
END_TEST

START_TEST(test_read_holes_and_status)
{
    start();
    sr_and_meta(true);
    uint16_t fl = go();
    ck_assert_uint_eq(fl, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                      NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_TRIM |
                      NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO |
                      NBD_FLAG_SEND_DF);
    static uint8_t data[8192];
    memset(data, 0xab, sizeof(data));
    request(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 1, 8192, 8192, data);
    expect_simple(1, 0);
    /* [0,8K) hole, [8K,16K) data, [16K,32K) hole */
    request(NBD_CMD_READ, 0, 2, 0, 32768, NULL);
    uint16_t type, flags;
    uint32_t l;
    const uint8_t *d = expect_chunk(2, &type, &flags, &l);
    ck_assert(type == NBD_REPLY_TYPE_OFFSET_HOLE && flags == 0 && l == 12);
    ck_assert(nbd_get64(d) == 0 && nbd_get32(d + 8) == 8192);
    d = expect_chunk(2, &type, &flags, &l);
    ck_assert(type == NBD_REPLY_TYPE_OFFSET_DATA && flags == 0 && l == 8 + 8192);
    ck_assert(nbd_get64(d) == 8192 && d[8] == 0xab && d[8 + 8191] == 0xab);
    d = expect_chunk(2, &type, &flags, &l);
    ck_assert(type == NBD_REPLY_TYPE_OFFSET_HOLE && flags == NBD_REPLY_FLAG_DONE);
    ck_assert(nbd_get64(d) == 16384 && nbd_get32(d + 8) == 16384);
    /* DF: one data chunk with the zeros filled in */
    request(NBD_CMD_READ, NBD_CMD_FLAG_DF, 3, 4096, 8192, NULL);
    d = expect_chunk(3, &type, &flags, &l);
    ck_assert(type == NBD_REPLY_TYPE_OFFSET_DATA && flags == NBD_REPLY_FLAG_DONE);
    ck_assert(l == 8 + 8192 && nbd_get64(d) == 4096 && d[8] == 0 && d[8 + 4096] == 0xab);
    /* block status: one chunk per context, the last one DONE */
    request(NBD_CMD_BLOCK_STATUS, 0, 4, 0, 32768, NULL);
    d = expect_chunk(4, &type, &flags, &l);
    ck_assert(type == NBD_REPLY_TYPE_BLOCK_STATUS && flags == 0 && l == 4 + 3 * 8);
    ck_assert_uint_eq(nbd_get32(d), 1);
    ck_assert(nbd_get32(d + 4) == 8192 && nbd_get32(d + 8) == 3);
    ck_assert(nbd_get32(d + 12) == 8192 && nbd_get32(d + 16) == 0);
    ck_assert(nbd_get32(d + 20) == 16384 && nbd_get32(d + 24) == 3);
    d = expect_chunk(4, &type, &flags, &l);
    ck_assert(type == NBD_REPLY_TYPE_BLOCK_STATUS && flags == NBD_REPLY_FLAG_DONE);
    ck_assert(nbd_get32(d) == 2 && l == 4 + 3 * 8);
    ck_assert(nbd_get32(d + 8) == 0 && nbd_get32(d + 16) == 1);
    request(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 5, 0, 32768, NULL);
    d = expect_chunk(5, &type, &flags, &l);
    ck_assert(l == 12);
    d = expect_chunk(5, &type, &flags, &l);
    ck_assert(l == 12 && flags == NBD_REPLY_FLAG_DONE);
    /* errors under structured replies: an ERROR chunk with a message */
    request(NBD_CMD_READ, 0, 6, SIZE - 1, 2, NULL);
    d = expect_chunk(6, &type, &flags, &l);
    ck_assert(type == NBD_REPLY_TYPE_ERROR && flags == NBD_REPLY_FLAG_DONE);
    ck_assert_uint_eq(nbd_get32(d), NBD_EINVAL);
    ck_assert(memcmp(d + 6, "request beyond the end of the export", nbd_get16(d + 4)) == 0);
    request(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 7, 0, 4096, NULL);
    expect_simple(7, NBD_ENOTSUP);
    ck_assert_uint_eq(out_pos, out_len);
}
END_TEST

/* Block status replies overtake queued read data, never a reply that is
 * partly sent, and keep their own order. */
START_TEST(test_status_ahead_of_reads)
{
    start();
    sr_and_meta(false);
    go();
    static uint8_t data[8192];
    memset(data, 0xcd, sizeof(data));
    request(NBD_CMD_WRITE, 0, 1, 0, 8192, data);
    expect_simple(1, 0);
    hold_output = true;
    request(NBD_CMD_READ, 0, 2, 0, 8192, NULL);
    request(NBD_CMD_READ, 0, 3, 4096, 4096, NULL);
    drain_upto(10);                     /* reply 2 is on the wire */
    request(NBD_CMD_BLOCK_STATUS, 0, 4, 0, 16384, NULL);
    request(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 5, 8192, 8192, NULL);
    hold_output = false;
    drain();
    uint16_t type, flags;
    uint32_t l;
    const uint8_t *d = expect_chunk(2, &type, &flags, &l);
    ck_assert(type == NBD_REPLY_TYPE_OFFSET_DATA && flags == NBD_REPLY_FLAG_DONE);
    ck_assert(l == 8 + 8192 && d[8] == 0xcd && d[8 + 8191] == 0xcd);
    d = expect_chunk(4, &type, &flags, &l);
    ck_assert(type == NBD_REPLY_TYPE_BLOCK_STATUS && flags == NBD_REPLY_FLAG_DONE);
    ck_assert(l == 4 + 2 * 8 && nbd_get32(d) == 1);
    ck_assert(nbd_get32(d + 4) == 8192 && nbd_get32(d + 8) == 0);
    ck_assert(nbd_get32(d + 12) == 8192 && nbd_get32(d + 16) == 3);
    d = expect_chunk(5, &type, &flags, &l);
    ck_assert(type == NBD_REPLY_TYPE_BLOCK_STATUS && flags == NBD_REPLY_FLAG_DONE);
    ck_assert(l == 12 && nbd_get32(d + 4) == 8192 && nbd_get32(d + 8) == 3);
    d = expect_chunk(3, &type, &flags, &l);
    ck_assert(type == NBD_REPLY_TYPE_OFFSET_DATA && flags == NBD_REPLY_FLAG_DONE);
    ck_assert(l == 8 + 4096 && nbd_get64(d) == 4096 && d[8] == 0xcd);
    ck_assert_uint_eq(out_pos, out_len);
}
END_TEST

START_TEST(test_read_only_errors)
{
    m.exp.read_only = true;
    start();
    go();
    static uint8_t data[512];
    request(NBD_CMD_WRITE, 0, 1, 0, 512, data);
    expect_simple(1, NBD_EPERM);
    request(NBD_CMD_TRIM, 0, 2, 0, 512, NULL);
    expect_simple(2, NBD_EPERM);
    request(NBD_CMD_WRITE_ZEROES, 0, 3, 0, 512, NULL);
    expect_simple(3, NBD_EPERM);
    request(NBD_CMD_READ, 0, 4, SIZE, 1, NULL);
    expect_simple(4, NBD_EINVAL);
    request(NBD_CMD_READ, NBD_CMD_FLAG_DF, 5, 0, 1, NULL);
    expect_simple(5, NBD_EINVAL);       /* DF without structured replies */
    request(NBD_CMD_BLOCK_STATUS, 0, 6, 0, 1, NULL);
    expect_simple(6, NBD_EINVAL);
    request(NBD_CMD_READ, 0, 7, 0, (32 << 20) + 1, NULL);
    expect_simple(7, NBD_EINVAL);
    request(NBD_CMD_FLUSH, 0, 8, 0, 0, NULL);
    expect_simple(8, 0);
    ck_assert_uint_eq(out_pos, out_len);
    ck_assert_uint_eq(m.data[0], 0);
}
END_TEST

START_TEST(test_write_errors)
{
    start();
    go();
    static uint8_t data[1024];
    request(NBD_CMD_WRITE, 0, 1, SIZE - 512, 1024, data);
    expect_simple(1, NBD_ENOSPC);
    request(NBD_CMD_WRITE_ZEROES, 0, 2, UINT64_MAX - 10, 100, NULL);
    expect_simple(2, NBD_ENOSPC);
    request(77, 0, 3, 0, 0, NULL);
    expect_simple(3, NBD_EINVAL);
    m.fail_errno = EIO;
    request(NBD_CMD_FLUSH, 0, 4, 0, 0, NULL);
    expect_simple(4, NBD_EIO);
    m.fail_errno = 0;
    request(NBD_CMD_WRITE, 0, 5, 0, (32 << 20) + 1, NULL);
    ck_assert_uint_eq(nbd_session_wants(s), NBD_WANT_CLOSE);
}
END_TEST

START_TEST(test_out_of_order_and_backpressure)
{
    pol.max_inflight = 3;
    start();
    go();
    m.hold = true;
    for (int i = 0; i < 5; i++) {
        request(NBD_CMD_READ, 0, 100 + i, i * 512, 512, NULL);
    }
    /* 3 running, the other 2 wait in the input buffer */
    ck_assert_uint_eq(m.npend, 3);
    ck_assert(!(nbd_session_wants(s) & NBD_WANT_READ));
    memx_release(&m, 2);
    drain();
    expect_simple(102, 0);
    take(512);
    ck_assert_uint_eq(m.npend, 3);      /* the 4th started */
    memx_release(&m, 0);
    memx_release(&m, 0);
    memx_release(&m, 0);
    drain();
    expect_simple(100, 0);
    take(512);
    expect_simple(101, 0);
    take(512);
    expect_simple(103, 0);
    take(512);
    ck_assert_uint_eq(m.npend, 1);
    /* free with a request still running: its completion is harmless */
    nbd_session_free(s);
    s = NULL;
    memx_release(&m, 0);
}
END_TEST

START_TEST(test_bad_magic_and_flags)
{
    s = nbd_session_new(&m.exp, &pol, NULL, NULL);
    drain();
    take(18);
    uint8_t f[4];
    nbd_put32(f, NBD_FLAG_C_FIXED_NEWSTYLE | 0x10);
    feed(f, 4);
    ck_assert_uint_eq(nbd_session_wants(s), NBD_WANT_CLOSE);
    nbd_session_free(s);
    out_len = out_pos = 0;
    start();
    go();
    uint8_t r[28] = { 0 };
    feed(r, 28);
    ck_assert_uint_eq(nbd_session_wants(s), NBD_WANT_CLOSE);
}
END_TEST

/* The kernel's client: no handshake, simple replies from the first byte. */
START_TEST(test_skip_handshake)
{
    s = nbd_session_new(&m.exp, &pol, NULL, NULL);
    nbd_session_skip_handshake(s);
    drain();
    ck_assert_uint_eq(out_len, 0);      /* no greeting */
    ck_assert(nbd_session_in_transmission(s));
    static uint8_t data[4096];
    memset(data, 0x11, sizeof(data));
    request(NBD_CMD_WRITE, 0, 1, 4096, 4096, data);
    expect_simple(1, 0);
    request(NBD_CMD_READ, 0, 2, 4096, 4096, NULL);
    expect_simple(2, 0);
    ck_assert_uint_eq(take(4096)[100], 0x11);
    ck_assert_uint_eq(nbd_export_tx_flags(&m.exp, false),
                      NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                      NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_TRIM |
                      NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO);
}
END_TEST

int main(void)
{
    log_init("test-nbd-engine", LOG_ERROR);
    Suite *su = suite_create("nbd-engine");
    TCase *tc = tcase_create("engine");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_options);
    tcase_add_test(tc, test_tls_required);
    tcase_add_test(tc, test_export_name_before_tls_drops);
    tcase_add_test(tc, test_read_holes_and_status);
    tcase_add_test(tc, test_status_ahead_of_reads);
    tcase_add_test(tc, test_read_only_errors);
    tcase_add_test(tc, test_write_errors);
    tcase_add_test(tc, test_out_of_order_and_backpressure);
    tcase_add_test(tc, test_bad_magic_and_flags);
    tcase_add_test(tc, test_skip_handshake);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
