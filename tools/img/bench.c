/*
 * tools/img/bench.c — `diskdm-img bench`: time a run of fixed-size reads
 * or writes at a fixed step, as qemu-img bench does. Depth 1 issues the
 * requests one after the other on this thread (no hand-off latency);
 * depth N keeps N requests in flight from N threads.
 */
#include "tools/img/img.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_MAX_DEPTH 1024

struct bench {
    struct bdrv_node *bs;
    bool write;
    uint64_t count, bufsize, step, start, image_size;
    uint64_t flush_interval;
    atomic_uint_fast64_t next;      /* next request number to issue */
    atomic_int err;                 /* first error, -errno */
    pthread_mutex_t flush_lock;
    int pattern;
};

/* One issuer: take request numbers until none are left. */
static void *bench_worker(void *opaque)
{
    struct bench *b = opaque;
    uint8_t *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, b->bufsize)) {
        int zero = 0;
        atomic_compare_exchange_strong(&b->err, &zero, -ENOMEM);
        return NULL;
    }
    memset(buf, b->pattern, b->bufsize);
    for (;;) {
        uint64_t i = atomic_fetch_add(&b->next, 1);
        if (i >= b->count || atomic_load(&b->err)) {
            break;
        }
        uint64_t off = (b->start + i * b->step) % b->image_size;
        int ret;
        if (off + b->bufsize > b->image_size) {
            ret = -EIO;     /* past the end: what qemu-img bench reports */
        } else {
            ret = b->write ? bdrv_pwrite(b->bs, off, buf, b->bufsize, 0)
                           : bdrv_pread(b->bs, off, buf, b->bufsize);
        }
        if (ret == 0 && b->flush_interval && (i + 1) % b->flush_interval == 0) {
            /* One flush at a time, as qemu-img bench drains before it. */
            pthread_mutex_lock(&b->flush_lock);
            ret = bdrv_flush(b->bs);
            pthread_mutex_unlock(&b->flush_lock);
        }
        if (ret < 0) {
            int zero = 0;
            atomic_compare_exchange_strong(&b->err, &zero, ret);
            break;
        }
    }
    free(buf);
    return NULL;
}

int img_cmd_bench(int argc, char **argv)
{
    enum { OPT_PATTERN = 256, OPT_FLUSH, OPT_NO_DRAIN, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "flush-interval", required_argument, NULL, OPT_FLUSH },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "pattern", required_argument, NULL, OPT_PATTERN },
        { "no-drain", no_argument, NULL, OPT_NO_DRAIN },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    uint64_t count = 75000, depth = 64, bufsize = 4096, step = 0, start = 0,
             flush_interval = 0, pattern = 0;
    bool write = false, quiet = false, native_aio = false;
    struct img_open_flags fl = { .read_only = true };
    int c;

    optind = 1;
    opterr = 0;         /* img_bad_option_at says it, as qemu-img does */
    while ((c = getopt_long(argc, argv, ":hc:d:f:ni:o:qs:S:t:wU", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (parse_uint(optarg, &count) < 0 || count == 0 || count > INT32_MAX) {
                return img_error("Invalid request count specified");
            }
            break;
        case 'd':
            if (parse_uint(optarg, &depth) < 0 || depth == 0 || depth > BENCH_MAX_DEPTH) {
                return img_error("Invalid queue depth specified");
            }
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'n':
            native_aio = true;
            break;
        case 'i':
            /* The engine is the block layer's choice; qemu-img's names
             * are accepted, and native needs O_DIRECT as there. */
            if (!strcmp(optarg, "native")) {
                native_aio = true;
            } else if (strcmp(optarg, "threads") && strcmp(optarg, "io_uring")) {
                return img_error("Invalid aio option: %s", optarg);
            }
            break;
        case 'o':
            if (img_parse_size(optarg, &start) < 0 || start > INT64_MAX) {
                return img_error("Invalid offset specified");
            }
            break;
        case 'q':
            quiet = true;
            break;
        case 's':
            if (img_parse_size(optarg, &bufsize) < 0 || bufsize == 0 ||
                bufsize > (1u << 30)) {
                return img_error("Invalid buffer size specified");
            }
            break;
        case 'S':
            if (img_parse_size(optarg, &step) < 0 || step > INT64_MAX) {
                return img_error("Invalid step size specified");
            }
            break;
        case 't':
            if (img_parse_cache(optarg, &fl.cache) < 0) {
                return IMG_EXIT_FAIL;
            }
            fl.has_cache = true;
            break;
        case 'w':
            write = true;
            fl.read_only = false;
            break;
        case 'U':
            fl.force_share = true;
            break;
        case OPT_PATTERN:
            if (parse_uint(optarg, &pattern) < 0 || pattern > 0xff) {
                return img_error("Invalid pattern byte specified");
            }
            break;
        case OPT_FLUSH:
            if (parse_uint(optarg, &flush_interval) < 0 || flush_interval > INT32_MAX) {
                return img_error("Invalid flush interval specified");
            }
            break;
        case OPT_NO_DRAIN:
            break;          /* flushes wait for nothing here: no queue to drain */
        case OPT_IMAGE_OPTS:
            fl.image_opts = true;
            break;
        case 'h':
            return img_cmd_help("bench");
        default:
            return img_bad_option_at(argv, c);
        }
    }
    if (optind != argc - 1) {
        img_print_synopsis(stderr, "bench");
        return img_usage_error("Expecting one image file name");
    }
    if (flush_interval && !write) {
        return img_error("--flush-interval is only available in write tests");
    }
    /* --pattern in a read test and --no-drain without --flush-interval
     * are accepted and do nothing, as in qemu-img 7.2. */
    if (fl.force_share && write) {
        return img_error("Could not open '%s': force-share=on can only be used with "
                         "read-only images", argv[optind]);
    }
    if (native_aio && (!fl.has_cache || (fl.cache != CACHE_NONE &&
                                          fl.cache != CACHE_DIRECTSYNC))) {
        return img_error("Could not open '%s': aio=native was specified, but it requires "
                         "cache.direct=on, which was not specified.", argv[optind]);
    }
    if (!step) {
        step = bufsize;
    }
    const char *filename = argv[optind];
    struct bdrv_node *bs = img_open_ex(filename, fmt, &fl);
    if (!bs) {
        return IMG_EXIT_FAIL;
    }
    int ret = IMG_EXIT_FAIL;
    int64_t len = bdrv_getlength(bs);
    if (len <= 0) {
        img_error("Could not get the size of '%s'", filename);
        goto out_unref;
    }
    struct bench b = {
        .bs = bs, .write = write, .count = count, .bufsize = bufsize, .step = step,
        .start = start, .image_size = (uint64_t)len, .flush_interval = flush_interval,
        .pattern = (int)pattern,
    };
    atomic_init(&b.next, 0);
    atomic_init(&b.err, 0);
    pthread_mutex_init(&b.flush_lock, NULL);
    if (!quiet) {
        printf("Sending %" PRIu64 " %s requests, %" PRIu64 " bytes each, %" PRIu64
               " in parallel (starting at offset %" PRIu64 ", step size %" PRIu64 ")\n",
               count, write ? "write" : "read", bufsize, depth, start, step);
        if (flush_interval) {
            printf("Sending flush every %" PRIu64 " requests\n", flush_interval);
        }
        fflush(stdout);
    }
    uint64_t t0 = clock_ns();
    unsigned nthreads = (unsigned)MIN(depth, count);
    pthread_t *th = nthreads > 1 ? calloc(nthreads, sizeof(*th)) : NULL;
    unsigned started = 0;
    for (unsigned i = 0; th && i < nthreads; i++) {
        if (pthread_create(&th[i], NULL, bench_worker, &b)) {
            break;
        }
        started++;
    }
    if (!started) {
        bench_worker(&b);
    }
    for (unsigned i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
    }
    free(th);
    int err = atomic_load(&b.err);
    if (err == 0 && flush_interval) {
        err = bdrv_flush(bs);
    }
    uint64_t t1 = clock_ns();
    pthread_mutex_destroy(&b.flush_lock);
    if (err < 0) {
        img_error("Failed request: %s", strerror(-err));
        goto out_unref;
    }
    if (!quiet) {
        printf("Run completed in %.3f seconds.\n", (double)(t1 - t0) / 1e9);
    }
    ret = 0;
out_unref:
    bdrv_unref(bs);
    return ret;
}
