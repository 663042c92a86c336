/*
 * tests/bench/bench-qcow2.c — 4K requests at queue depth 1 through the
 * block backend (asynchronous API, completion on the event loop), for any
 * format: random reads, sequential reads (what qemu-img bench does),
 * random or sequential overwrites (qemu-img bench -w), or first-write
 * allocation (one request every STEP bytes on a fresh image, like
 * qemu-img bench -w -S).
 * Prints one line: "MODE FORMAT OPS SECONDS IOPS".
 *
 * Usage: bench-qcow2 [-m read|seq|write|seqw|alloc] [-f FMT] [-c COUNT] [-s SIZE]
 *                    [-S STEP] FILE
 */
#include "block/block.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

struct qd1 {
    int done;
    int ret;
};

static void qd1_done(void *opaque, int ret)
{
    struct qd1 *q = opaque;
    q->done = 1;
    q->ret = ret;
}

int main(int argc, char **argv)
{
    const char *mode = "read", *fmt = "qcow2";
    uint64_t count = 100000, size = 4096, step = 65536;
    int c;

    log_init("bench-qcow2", LOG_WARN);
    while ((c = getopt(argc, argv, "m:f:c:s:S:")) != -1) {
        uint64_t *dst = c == 'c' ? &count : c == 's' ? &size : &step;
        switch (c) {
        case 'm':
            mode = optarg;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'c':
        case 's':
        case 'S':
            if (parse_size(optarg, dst) < 0 || !*dst) {
                fprintf(stderr, "bench-qcow2: bad number '%s'\n", optarg);
                return 2;
            }
            break;
        default:
            return 2;
        }
    }
    if (optind != argc - 1 || (strcmp(mode, "read") && strcmp(mode, "write") &&
                               strcmp(mode, "alloc") && strcmp(mode, "seq") &&
                               strcmp(mode, "seqw"))) {
        fprintf(stderr, "usage: bench-qcow2 [-m read|seq|write|seqw|alloc] [-f FMT] [-c COUNT] "
                "[-s SIZE] [-S STEP] FILE\n");
        return 2;
    }
    bool writing = !strcmp(mode, "write") || !strcmp(mode, "alloc") || !strcmp(mode, "seqw");
    bool sequential = !strcmp(mode, "seq") || !strcmp(mode, "seqw");
    struct error *err = NULL;
    struct event_loop *loop = ev_loop_new(&err);
    if (!loop) {
        error_report_err(err);
        return 1;
    }
    char *s = NULL;
    if (asprintf(&s, "driver=%s,file.filename=%s,read-only=%s", fmt, argv[optind],
                 writing ? "off" : "on") < 0) {
        return 1;
    }
    struct bdrv_open_opts o;
    if (bdrv_open_opts_parse(s, &o, &err) < 0) {
        error_report_err(err);
        return 1;
    }
    free(s);
    struct blk_backend *blk = blk_open(loop, &o, NULL, &err);
    bdrv_open_opts_free(&o);
    if (!blk) {
        error_report_err(err);
        return 1;
    }
    uint64_t len = (uint64_t)blk_getlength(blk), nblocks = len / size;
    if (!strcmp(mode, "alloc")) {
        count = MIN(count, len / step);
    }
    void *buf = NULL;
    if (!nblocks || posix_memalign(&buf, 4096, size)) {
        fprintf(stderr, "bench-qcow2: image smaller than one request\n");
        return 1;
    }
    memset(buf, 0x5a, size);
    struct iovec iov = { buf, size };
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    struct qd1 q;
    uint64_t t0 = clock_ns();
    for (uint64_t i = 0; i < count; i++) {
        uint64_t off = !strcmp(mode, "alloc") ? i * step :
                       sequential ? (i % nblocks) * size :
                       (next_rand(&seed) % nblocks) * size;
        q.done = 0;
        int r = writing ? blk_aio_pwritev(blk, off, &iov, 1, 0, qd1_done, &q)
                        : blk_aio_preadv(blk, off, &iov, 1, qd1_done, &q);
        if (r < 0) {
            fprintf(stderr, "bench-qcow2: submit failed: %s\n", strerror(-r));
            return 1;
        }
        while (!q.done) {
            ev_run_once(loop, -1);
        }
        if (q.ret < 0) {
            fprintf(stderr, "bench-qcow2: request failed: %s\n", strerror(-q.ret));
            return 1;
        }
    }
    if (writing && blk_flush(blk) < 0) {
        fprintf(stderr, "bench-qcow2: flush failed\n");
        return 1;
    }
    double secs = (double)(clock_ns() - t0) / 1e9;
    printf("%s %s %" PRIu64 " %.3f %.0f\n", mode, fmt, count, secs, (double)count / secs);
    blk_free(blk);
    ev_loop_free(loop);
    free(buf);
    return 0;
}
