/*
 * tests/fuzz/fuzz-nbd-server.c — libFuzzer target for diskdm-nbd's protocol
 * engine: the input is what a client sends (handshake, options, requests),
 * split at arbitrary points; an in-memory export answers. The first byte
 * picks the policy (TLS required, held completions, read-only).
 */
#include "tools/nbd/handshake.c"
#include "tools/nbd/session.c"
#include "tools/nbd/transmission.c"
#include "tools/nbd/mem-export.h"

static void drain(struct nbd_session *s)
{
    struct nbd_seg *seg;
    while ((seg = nbd_session_out(s)) != NULL) {
        /* touch every byte the connection layer would send */
        volatile char sink = 0;
        if (seg->kind == NBD_SEG_MEM) {
            for (size_t i = seg->done; i < seg->len; i++) {
                sink ^= seg->ptr[i];
            }
        }
        (void)sink;
        nbd_session_out_sent(s, seg->len - seg->done);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t mode = data[0];
    data++;
    size--;
    struct memx m;
    memx_init(&m, 1 << 20, mode & 4);
    m.hold = mode & 2;
    m.exp.description = "fuzz";
    struct nbd_policy pol = {
        .tls_available = mode & 1, .tls_required = mode & 1,
        .max_inflight = 1 + (mode >> 4), .max_buffered = 4 << 20,
    };
    struct nbd_session *s = nbd_session_new(&m.exp, &pol, NULL, NULL);
    size_t pos = 0;
    unsigned step = 0;
    while (pos < size) {
        unsigned w = nbd_session_wants(s);
        if (w & NBD_WANT_CLOSE) {
            break;
        }
        if (w & NBD_WANT_TLS) {
            nbd_session_tls_done(s, (step & 1) == 0);
        }
        drain(s);
        if (m.npend && (step % 3 == 0 || !(nbd_session_wants(s) & NBD_WANT_READ))) {
            memx_release(&m, step % m.npend);
            step++;
            continue;
        }
        void *buf;
        size_t room = nbd_session_rbuf(s, &buf);
        if (room == 0) {
            if (!m.npend) {
                break;
            }
            continue;
        }
        /* chunk sizes vary so messages arrive split at every point */
        size_t n = MIN(room, MIN(size - pos, (size_t)(1 + (step * 7) % 61)));
        memcpy(buf, data + pos, n);
        pos += n;
        step++;
        nbd_session_rdone(s, n);
    }
    drain(s);
    if (step & 1) {
        nbd_session_eof(s);
    }
    /* free with held completions still pending, then release them */
    nbd_session_free(s);
    while (m.npend) {
        memx_release(&m, 0);
    }
    memx_free(&m);
    return 0;
}
