/*
 * tests/fuzz/fuzz-qcow2-open.c — libFuzzer target for the qcow2 open path:
 * the input is an image file (header, extensions, L1, refcount table, L2
 * tables, compressed clusters, extended L2 entries, the snapshot table).
 * It is opened read-only and read at a few places with block status,
 * then opened read-write (dirty-bit repair, allocation, discard, a
 * snapshot created, applied and deleted). Anything but a clean error is a
 * finding. Images naming an external data file are skipped: the name
 * could be any file on this machine (opened for writing, or a FIFO that
 * blocks the open).
 */
#include "block/block.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static struct bdrv_node *open_memfd(int fd, bool rw)
{
    char s[128];
    snprintf(s, sizeof(s), "driver=qcow2,file.filename=/proc/self/fd/%d,read-only=%s,"
             "backing=null,locking=off,discard=unmap", fd, rw ? "off" : "on");
    struct bdrv_open_opts o;
    struct error *err = NULL;
    if (bdrv_open_opts_parse(s, &o, &err) < 0) {
        abort();
    }
    struct bdrv_node *bs = bdrv_open(&o, &err);
    bdrv_open_opts_free(&o);
    if (!bs && (!err || !err->msg || !err->msg[0])) {
        abort();    /* a failed open must say why */
    }
    error_free(err);
    return bs;
}

static void exercise(struct bdrv_node *bs, bool rw)
{
    static uint8_t buf[65536];
    int64_t len = bdrv_getlength(bs);
    if (len <= 0) {
        return;
    }
    uint64_t offs[] = { 0, (uint64_t)len / 3, (uint64_t)len / 2, (uint64_t)len - 1 };
    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        uint64_t off = offs[i] & ~511ull;
        size_t n = (size_t)MIN((uint64_t)sizeof(buf), (uint64_t)len - off);
        bdrv_pread(bs, off, buf, n);
        uint64_t pnum, map;
        int depth;
        bdrv_block_status(bs, off, n, &pnum, &map, &depth);
        if (rw) {
            memset(buf, 0xa5, 1000);
            bdrv_pwrite(bs, off, buf, MIN(n, 1000), 0);
            bdrv_pwrite_zeroes(bs, off, n, BDRV_REQ_MAY_UNMAP);
            bdrv_pdiscard(bs, off, n);
        }
    }
    struct bdrv_snapshot *l = NULL;
    int n = bdrv_snapshot_list(bs, &l, NULL);
    if (n > 0) {
        bdrv_snapshot_list_free(l, n);
    }
    if (rw) {
        bdrv_snapshot_create(bs, "fz", NULL);
        bdrv_snapshot_apply(bs, "1", NULL);
        bdrv_snapshot_delete(bs, "fz", NULL);
        bdrv_pwrite(bs, 0, buf, 512, 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        log_init("fuzz-qcow2-open", LOG_ERROR);
        log_set_file("/dev/null");   /* hostile images log a lot */
        init = true;
    }
    if (size >= 80 && (data[79] & 4)) {
        return 0;   /* incompatible bit 2: an external data file */
    }
    int fd = memfd_create("fuzz-qcow2", 0);
    if (fd < 0) {
        abort();
    }
    if (full_pwrite(fd, data, size, 0) != (ssize_t)size) {
        abort();
    }
    struct bdrv_node *bs = open_memfd(fd, false);
    if (bs) {
        exercise(bs, false);
        bdrv_unref(bs);
    }
    bs = open_memfd(fd, true);
    if (bs) {
        exercise(bs, true);
        bdrv_unref(bs);
    }
    close(fd);
    return 0;
}
