/*
 * tests/bench/bench-blk.c — random I/O at queue depth 1, either through
 * the block backend's asynchronous API (one request in flight, completion
 * on the event loop) or with plain pread/pwrite on the same file (the
 * ceiling), or both interleaved in slices (-m pair), which compares them
 * under the same machine load: the fair ratio on a shared, noisy host.
 *
 * Prints one line: "MODE OPS SECONDS IOPS", or for pair
 * "pair OPS CEILING_IOPS BACKEND_IOPS RATIO". -S goes sequentially (what
 * qemu-img bench does) instead of to random offsets; -w writes instead of
 * reading; -B lets the backend block the loop (blk_config.may_block, as
 * a tool may); -a picks the file node's aio= mode. BENCH_DEBUG=1 in the
 * environment shows the block layer's debug messages (writes handed off
 * because they blocked, say).
 *
 * Usage: bench-blk [-m blk|pread|pair] [-S] [-w] [-B] [-c COUNT] [-s SIZE]
 *                  [-t CACHE] [-a auto|threads|io_uring] FILE
 */
#include "block/block.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAIR_SLICES 20      /* alternations in -m pair */

struct bench {
    /* what to run */
    const char *file, *cache, *aio;
    uint64_t size, nblocks;
    bool sequential, write, may_block;
    /* set up by bench_open */
    struct event_loop *loop;
    struct blk_backend *blk;
    int fd;
    void *buf;
    uint64_t blk_seed, fd_seed;     /* each side walks its own sequence */
};

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

static int open_blk(struct bench *b)
{
    struct error *err = NULL;
    b->loop = ev_loop_new(&err);
    if (!b->loop) {
        error_report_err(err);
        return -1;
    }
    char *s = NULL;
    if (asprintf(&s, "driver=raw,file.filename=%s,read-only=%s,cache=%s,aio=%s",
                 b->file, b->write ? "off" : "on", b->cache, b->aio) < 0) {
        return -1;
    }
    struct bdrv_open_opts o;
    if (bdrv_open_opts_parse(s, &o, &err) < 0) {
        free(s);
        error_report_err(err);
        return -1;
    }
    struct blk_config cfg = { .may_block = b->may_block };
    b->blk = blk_open(b->loop, &o, &cfg, &err);
    bdrv_open_opts_free(&o);
    free(s);
    if (!b->blk) {
        error_report_err(err);
        return -1;
    }
    return 0;
}

static int open_fd(struct bench *b)
{
    b->fd = open(b->file, b->write ? O_RDWR : O_RDONLY);
    if (b->fd < 0) {
        perror("bench-blk: open");
        return -1;
    }
    return 0;
}

/* Seconds for `n` requests through the backend, or < 0 on failure. */
static double blk_ops(struct bench *b, uint64_t n)
{
    struct iovec iov = { b->buf, b->size };
    struct qd1 q;
    uint64_t t0 = clock_ns();
    for (uint64_t i = 0; i < n; i++) {
        uint64_t off = (next_block(&b->blk_seed, b->sequential) % b->nblocks) * b->size;
        q.done = 0;
        int r = b->write ? blk_aio_pwritev(b->blk, off, &iov, 1, 0, qd1_done, &q)
                         : blk_aio_preadv(b->blk, off, &iov, 1, qd1_done, &q);
        if (r < 0) {
            fprintf(stderr, "bench-blk: submit failed: %s\n", strerror(-r));
            return -1;
        }
        while (!q.done) {
            ev_run_once(b->loop, -1);
        }
        if (q.ret < 0) {
            fprintf(stderr, "bench-blk: I/O failed: %s\n", strerror(-q.ret));
            return -1;
        }
    }
    return (clock_ns() - t0) / 1e9;
}

/* Seconds for `n` plain pread/pwrite calls, or < 0 on failure. */
static double fd_ops(struct bench *b, uint64_t n)
{
    uint64_t t0 = clock_ns();
    for (uint64_t i = 0; i < n; i++) {
        uint64_t off = (next_block(&b->fd_seed, b->sequential) % b->nblocks) * b->size;
        ssize_t r = b->write ? pwrite(b->fd, b->buf, b->size, off)
                             : pread(b->fd, b->buf, b->size, off);
        if (r != (ssize_t)b->size) {
            perror("bench-blk: pread/pwrite");
            return -1;
        }
    }
    return (clock_ns() - t0) / 1e9;
}

static const char *suffix(const struct bench *b, char *out, size_t len)
{
    snprintf(out, len, "%s%s%s", b->write ? "-write" : "", b->sequential ? "-seq" : "",
             b->may_block ? "-block" : "");
    return out;
}

int main(int argc, char **argv)
{
    const char *mode = "blk";
    struct bench b = { .cache = "writeback", .aio = "auto", .size = 4096, .fd = -1 };
    uint64_t count = 100000;
    int c;
    log_init("bench-blk", getenv("BENCH_DEBUG") ? LOG_DEBUG : LOG_WARN);
    while ((c = getopt(argc, argv, "m:c:s:t:a:SwB")) != -1) {
        switch (c) {
        case 'w':
            b.write = true;
            break;
        case 'B':
            b.may_block = true;
            break;
        case 'S':
            b.sequential = true;
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
            if (parse_size(optarg, &b.size) < 0 || !b.size || b.size > (1u << 24)) {
                fprintf(stderr, "bench-blk: bad size '%s'\n", optarg);
                return 2;
            }
            break;
        case 't':
            b.cache = optarg;
            break;
        case 'a':
            b.aio = optarg;
            break;
        default:
            return 2;
        }
    }
    bool run_blk = !strcmp(mode, "blk") || !strcmp(mode, "pair");
    bool run_fd = !strcmp(mode, "pread") || !strcmp(mode, "pair");
    if (optind != argc - 1 || (!run_blk && !run_fd)) {
        fprintf(stderr, "usage: bench-blk [-m blk|pread|pair] [-S] [-w] [-B] [-c COUNT] "
                "[-s SIZE] [-t CACHE] [-a AIO] FILE\n");
        return 2;
    }
    b.file = argv[optind];
    int fd = open(b.file, O_RDONLY);
    if (fd < 0) {
        perror("bench-blk: open");
        return 1;
    }
    off_t len = lseek(fd, 0, SEEK_END);
    close(fd);
    b.nblocks = (uint64_t)len / b.size;
    if (!b.nblocks) {
        fprintf(stderr, "bench-blk: file smaller than one request\n");
        return 1;
    }
    if (posix_memalign(&b.buf, 4096, b.size)) {
        return 1;
    }
    memset(b.buf, 0, b.size);
    b.blk_seed = b.fd_seed = b.sequential ? 0 : 0x9e3779b97f4a7c15ULL;
    if ((run_blk && open_blk(&b) < 0) || (run_fd && open_fd(&b) < 0)) {
        return 1;
    }

    char sfx[32];
    suffix(&b, sfx, sizeof(sfx));
    int ret = 0;
    if (run_blk && run_fd) {
        /* Slices alternate, and alternate which side goes first, so both
         * see the same share of whatever else the machine is doing. */
        uint64_t slice = MAX(count / PAIR_SLICES, 1);
        double t_fd = 0, t_blk = 0;
        for (unsigned i = 0; i < PAIR_SLICES; i++) {
            double a, d;
            if (i % 2) {
                d = blk_ops(&b, slice);
                a = fd_ops(&b, slice);
            } else {
                a = fd_ops(&b, slice);
                d = blk_ops(&b, slice);
            }
            if (a < 0 || d < 0) {
                return 1;
            }
            t_fd += a;
            t_blk += d;
        }
        uint64_t n = slice * PAIR_SLICES;
        printf("pair%s %" PRIu64 " %.0f %.0f %.3f\n", sfx, n, n / t_fd, n / t_blk,
               t_fd / t_blk);
    } else {
        double secs = run_blk ? blk_ops(&b, count) : fd_ops(&b, count);
        if (secs < 0) {
            return 1;
        }
        printf("%s%s %" PRIu64 " %.3f %.0f\n", run_blk ? "blk" : (b.write ? "pwrite" : "pread"),
               run_blk ? sfx : (b.sequential ? "-seq" : ""), count, secs, count / secs);
    }
    if (b.blk) {
        blk_free(b.blk);
        ev_loop_free(b.loop);
    }
    if (b.fd >= 0) {
        close(b.fd);
    }
    free(b.buf);
    return ret;
}
