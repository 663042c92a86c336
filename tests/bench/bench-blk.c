/*
 * tests/bench/bench-blk.c — random reads at queue depth 1, either through
 * the block backend's asynchronous API (one request in flight, completion
 * on the event loop) or with plain pread on the same file (the ceiling).
 * Prints one line: "MODE OPS SECONDS IOPS". -S goes sequentially (what
 * qemu-img bench does) instead of to random offsets; -w writes (pwrite for
 * the ceiling) instead of reading; -B lets the backend block the loop
 * (blk_config.may_block, as a tool may).
 *
 * Usage: bench-blk [-m blk|pread] [-S] [-w] [-B] [-c COUNT] [-s SIZE] [-t CACHE]
 *                  [-a auto|threads|io_uring] FILE
 */
#include "block/block.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Offsets: 0, 1, 2, ... when sequential, else xorshift64* (cheap and
 * reproducible). */
static uint64_t next_block(uint64_t *s, bool sequential)
{
    if (sequential) {
        return (*s)++;
    }
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

static int run_blk(const char *file, const char *cache, const char *aio, uint64_t count, size_t size,
                   uint64_t nblocks, bool sequential, bool write, bool may_block)
{
    struct error *err = NULL;
    struct event_loop *loop = ev_loop_new(&err);
    if (!loop) {
        error_report_err(err);
        return 1;
    }
    char *s = NULL;
    if (asprintf(&s, "driver=raw,file.filename=%s,read-only=%s,cache=%s,aio=%s",
                 file, write ? "off" : "on", cache, aio) < 0) {
        return 1;
    }
    struct bdrv_open_opts o;
    if (bdrv_open_opts_parse(s, &o, &err) < 0) {
        error_report_err(err);
        return 1;
    }
    struct blk_config cfg = { .may_block = may_block };
    struct blk_backend *blk = blk_open(loop, &o, &cfg, &err);
    bdrv_open_opts_free(&o);
    free(s);
    if (!blk) {
        error_report_err(err);
        return 1;
    }
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, size)) {
        return 1;
    }
    struct iovec iov = { buf, size };
    uint64_t seed = sequential ? 0 : 0x9e3779b97f4a7c15ULL;
    struct qd1 q;
    uint64_t t0 = clock_ns();
    for (uint64_t i = 0; i < count; i++) {
        uint64_t off = (next_block(&seed, sequential) % nblocks) * size;
        q.done = 0;
        int r = write ? blk_aio_pwritev(blk, off, &iov, 1, 0, qd1_done, &q)
                      : blk_aio_preadv(blk, off, &iov, 1, qd1_done, &q);
        if (r < 0) {
            fprintf(stderr, "bench-blk: submit failed: %s\n", strerror(-r));
            return 1;
        }
        while (!q.done) {
            ev_run_once(loop, -1);
        }
        if (q.ret < 0) {
            fprintf(stderr, "bench-blk: I/O failed: %s\n", strerror(-q.ret));
            return 1;
        }
    }
    double secs = (clock_ns() - t0) / 1e9;
    printf("blk%s%s%s %" PRIu64 " %.3f %.0f\n", write ? "-write" : "",
           sequential ? "-seq" : "", may_block ? "-block" : "", count, secs, count / secs);
    blk_free(blk);
    ev_loop_free(loop);
    free(buf);
    return 0;
}

static int run_pread(const char *file, uint64_t count, size_t size, uint64_t nblocks,
                     bool sequential, bool write)
{
    int fd = open(file, write ? O_RDWR : O_RDONLY);
    if (fd < 0) {
        perror("bench-blk: open");
        return 1;
    }
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, size)) {
        return 1;
    }
    uint64_t seed = sequential ? 0 : 0x9e3779b97f4a7c15ULL;
    uint64_t t0 = clock_ns();
    for (uint64_t i = 0; i < count; i++) {
        uint64_t off = (next_block(&seed, sequential) % nblocks) * size;
        ssize_t n = write ? pwrite(fd, buf, size, off) : pread(fd, buf, size, off);
        if (n != (ssize_t)size) {
            perror("bench-blk: pread/pwrite");
            return 1;
        }
    }
    double secs = (clock_ns() - t0) / 1e9;
    printf("%s%s %" PRIu64 " %.3f %.0f\n", write ? "pwrite" : "pread",
           sequential ? "-seq" : "", count, secs, count / secs);
    close(fd);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = "blk", *cache = "writeback", *aio = "auto";
    uint64_t count = 100000;
    uint64_t size = 4096;
    bool sequential = false, write = false, may_block = false;
    int c;
    log_init("bench-blk", LOG_WARN);
    while ((c = getopt(argc, argv, "m:c:s:t:a:SwB")) != -1) {
        switch (c) {
        case 'w':
            write = true;
            break;
        case 'B':
            may_block = true;
            break;
        case 'S':
            sequential = true;
            break;
        case 'm':
            mode = optarg;
            break;
        case 'c':
            if (parse_uint(optarg, &count) < 0 || !count) {
                fprintf(stderr, "bench-blk: bad count '%s'\n", optarg);
                return 2;
            }
            break;
        case 's':
            if (parse_size(optarg, &size) < 0 || !size || size > (1u << 24)) {
                fprintf(stderr, "bench-blk: bad size '%s'\n", optarg);
                return 2;
            }
            break;
        case 't':
            cache = optarg;
            break;
        case 'a':
            aio = optarg;
            break;
        default:
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: bench-blk [-m blk|pread] [-S] [-w] [-B] [-c COUNT] [-s SIZE] [-t CACHE] [-a AIO] FILE\n");
        return 2;
    }
    const char *file = argv[optind];
    int fd = open(file, O_RDONLY);
    if (fd < 0) {
        perror("bench-blk: open");
        return 1;
    }
    off_t len = lseek(fd, 0, SEEK_END);
    close(fd);
    uint64_t nblocks = (uint64_t)len / size;
    if (!nblocks) {
        fprintf(stderr, "bench-blk: file smaller than one request\n");
        return 1;
    }
    if (!strcmp(mode, "blk")) {
        return run_blk(file, cache, aio, count, size, nblocks, sequential, write, may_block);
    }
    if (!strcmp(mode, "pread")) {
        return run_pread(file, count, size, nblocks, sequential, write);
    }
    fprintf(stderr, "bench-blk: unknown mode '%s'\n", mode);
    return 2;
}
