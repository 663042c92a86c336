/*
 * tools/nbd/mem-export.h — an in-memory NBD export for the engine's unit
 * tests and fuzzer: data in a buffer, allocation tracked per 4 KiB block,
 * completions either immediate or held until the test releases them (to
 * exercise out-of-order replies and sessions freed mid-request).
 */
#ifndef DISKDM_NBD_MEM_EXPORT_H
#define DISKDM_NBD_MEM_EXPORT_H

#include "tools/nbd/nbd-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MEMX_BLOCK 4096u

struct memx_pending {
    nbd_done_fn *cb;
    void *opaque;
    int ret;
};

struct memx {
    struct nbd_export exp;
    uint8_t *data;
    bool *alloc;                /* per MEMX_BLOCK */
    bool hold;                  /* queue completions instead of running them */
    struct memx_pending pend[256];
    unsigned npend;
    int fail_errno;             /* non-zero: every data op fails with it */
};

static int memx_done(struct memx *m, int ret, nbd_done_fn *cb, void *opaque)
{
    if (m->fail_errno) {
        ret = -m->fail_errno;
    }
    if (m->hold && m->npend < 256) {
        m->pend[m->npend++] = (struct memx_pending){ cb, opaque, ret };
    } else {
        cb(opaque, ret);
    }
    return 0;
}

/* Complete held operation i (0 = oldest). */
static void memx_release(struct memx *m, unsigned i)
{
    struct memx_pending p = m->pend[i];
    memmove(&m->pend[i], &m->pend[i + 1], (m->npend - i - 1) * sizeof(p));
    m->npend--;
    p.cb(p.opaque, p.ret);
}

static void memx_mark(struct memx *m, uint64_t off, uint64_t len, bool on)
{
    for (uint64_t b = off / MEMX_BLOCK; b * MEMX_BLOCK < off + len; b++) {
        m->alloc[b] = on;
    }
}

static int memx_read(void *o, uint64_t off, void *buf, uint32_t len,
                     nbd_done_fn *cb, void *cbo)
{
    struct memx *m = o;
    memcpy(buf, m->data + off, len);
    return memx_done(m, 0, cb, cbo);
}

static int memx_write(void *o, uint64_t off, const void *buf, uint32_t len,
                      unsigned flags, nbd_done_fn *cb, void *cbo)
{
    struct memx *m = o;
    memcpy(m->data + off, buf, len);
    memx_mark(m, off, len, true);
    return memx_done(m, 0, cb, cbo);
}

static int memx_flush(void *o, nbd_done_fn *cb, void *cbo)
{
    return memx_done(o, 0, cb, cbo);
}

static int memx_trim(void *o, uint64_t off, uint32_t len, unsigned flags,
                     nbd_done_fn *cb, void *cbo)
{
    struct memx *m = o;
    memset(m->data + off, 0, len);
    return memx_done(m, 0, cb, cbo);
}

static int memx_zero(void *o, uint64_t off, uint32_t len, unsigned flags,
                     nbd_done_fn *cb, void *cbo)
{
    struct memx *m = o;
    if (flags & NBD_CMD_FLAG_FAST_ZERO) {
        return memx_done(m, -ENOTSUP, cb, cbo);
    }
    memset(m->data + off, 0, len);
    return memx_done(m, 0, cb, cbo);
}

static int memx_cache(void *o, uint64_t off, uint32_t len, nbd_done_fn *cb,
                      void *cbo)
{
    return memx_done(o, 0, cb, cbo);
}

/* Unallocated blocks are holes reading as zero; allocated ones are data at
 * depth 1. */
static int memx_status(void *o, uint64_t off, uint32_t len,
                       struct nbd_extent *ext, unsigned max, unsigned *n,
                       bool want_fd, nbd_done_fn *cb, void *cbo)
{
    struct memx *m = o;
    uint64_t pos = off, end = off + len;
    unsigned k = 0;
    while (pos < end && k < max) {
        bool a = m->alloc[pos / MEMX_BLOCK];
        uint64_t next = MIN(end, (pos / MEMX_BLOCK + 1) * MEMX_BLOCK);
        while (next < end && m->alloc[next / MEMX_BLOCK] == a) {
            next = MIN(end, next + MEMX_BLOCK);
        }
        ext[k++] = (struct nbd_extent){
            .len = next - pos,
            .flags = a ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO,
            .depth = a ? 1 : 0,
            .fd = -1,
        };
        pos = next;
    }
    *n = k;
    return memx_done(m, 0, cb, cbo);
}

static const struct nbd_export_ops memx_ops = {
    .read = memx_read, .write = memx_write, .flush = memx_flush,
    .trim = memx_trim, .write_zeroes = memx_zero, .cache = memx_cache,
    .block_status = memx_status,
};

static void memx_init(struct memx *m, uint64_t size, bool read_only)
{
    memset(m, 0, sizeof(*m));
    m->data = calloc(1, size);
    m->alloc = calloc(DIV_ROUND_UP(size, MEMX_BLOCK) + 1, sizeof(bool));
    m->exp = (struct nbd_export){
        .name = "", .size = size, .read_only = read_only, .can_fast_zero = true,
        .allocation_depth = true, .min_block = 1, .ops = &memx_ops, .opaque = m,
    };
}

static void memx_free(struct memx *m)
{
    free(m->data);
    free(m->alloc);
}

#endif
