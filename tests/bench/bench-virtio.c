/*
 * tests/bench/bench-virtio.c — the virtio-blk request path in process: a
 * driver keeps 32 random 4 KiB reads in flight on one modern virtqueue
 * (descriptors, avail ring, notify, used ring, MSI-X) against a page-cached
 * 1 GiB raw image, versus the same reads with plain pread (QD1) and with
 * io_uring at QD32 on the same file, the ceiling. Prints requests/s for
 * each and the ratios.
 *
 * Usage: bench-virtio [-n REQUESTS] [-s IMAGE_MIB] [-q DEPTH] [-d DIR]
 */
#include "tests/bench/bench-hw.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <liburing.h>
#include <string.h>

#define BS          4096
#define MAX_DEPTH   128
#define LEGACY      0xc000
#define MSIX        0xfe100000ull
#define MODERN      0xfe000000ull
#define NOTIFY      (MODERN + 0x3000)
#define QSIZE       512
#define DESC        0x100000ull
#define AVAIL       0x104000ull
#define USED        0x108000ull
#define HDRS        0x200000ull
#define STATUS      0x210000ull
#define BUFS        0x1000000ull

struct bench {
    struct machine *m;
    uint64_t msis;
};

static void on_msi(void *opaque, uint64_t addr, uint32_t data)
{
    struct bench *b = opaque;
    b->msis++;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void mw(struct machine *m, uint64_t a, uint64_t v, unsigned size)
{
    machine_mem_write(m, a, &v, size);     /* little-endian host */
}

static uint64_t mr(struct machine *m, uint64_t a, unsigned size)
{
    uint64_t v = 0;
    machine_mem_read(m, a, &v, size);
    return v;
}

static void set_desc(struct machine *m, unsigned i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
    uint8_t d[16];
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
    machine_mem_write(m, DESC + 16 * i, d, 16);
}

/* A modern driver with MSI-X (messages to the LAPIC window) and one queue. */
static void driver_init(struct machine *m, unsigned depth)
{
    bench_cfg_write(m, 0x1010, 4, LEGACY | 1);
    bench_cfg_write(m, 0x1014, 4, (uint32_t)MSIX);
    bench_cfg_write(m, 0x1020, 4, (uint32_t)MODERN);
    bench_cfg_write(m, 0x1024, 4, 0);
    bench_cfg_write(m, 0x1004, 2, 7);
    mw(m, MSIX + 16, 0xfee00000, 4);
    mw(m, MSIX + 24, 0x41, 4);
    mw(m, MSIX + 28, 0, 4);
    bench_cfg_write(m, 0x109a, 2, 0x8000);
    mw(m, MODERN + 0x14, 3, 1);
    mw(m, MODERN + 0x08, 1, 4);
    mw(m, MODERN + 0x0c, 1, 4);             /* VERSION_1 */
    mw(m, MODERN + 0x14, 0xb, 1);
    mw(m, MODERN + 0x16, 0, 2);
    mw(m, MODERN + 0x18, QSIZE, 2);
    mw(m, MODERN + 0x1a, 1, 2);
    mw(m, MODERN + 0x20, DESC, 4);
    mw(m, MODERN + 0x28, AVAIL, 4);
    mw(m, MODERN + 0x30, USED, 4);
    mw(m, MODERN + 0x1c, 1, 2);
    mw(m, MODERN + 0x14, 0xf, 1);
    /* slot k: descriptors 3k..3k+2 = header, 4 KiB buffer, status */
    for (unsigned k = 0; k < depth; k++) {
        set_desc(m, 3 * k, HDRS + 16 * k, 16, 1, 3 * k + 1);
        set_desc(m, 3 * k + 1, BUFS + (uint64_t)BS * k, BS, 3, 3 * k + 2);
        set_desc(m, 3 * k + 2, STATUS + k, 1, 2, 0);
    }
}

static void submit(struct machine *m, unsigned slot, uint64_t sector,
                   uint16_t *avail_idx)
{
    mw(m, HDRS + 16 * slot + 8, sector, 8);
    mw(m, AVAIL + 4 + 2 * (*avail_idx % QSIZE), 3 * slot, 2);
    (*avail_idx)++;
    mw(m, AVAIL + 2, *avail_idx, 2);
}

static double bench_virtio(const char *path, uint64_t count, unsigned depth,
                           uint64_t nblocks, uint64_t *msis)
{
    struct error *err = NULL;
    struct bench b = { 0 };
    struct event_loop *loop = ev_loop_new(&err);

    struct blk_backend *blk;

    if (!loop)
        bench_die("bench-virtio", "event loop", err);
    b.m = bench_machine("bench-virtio", loop, path, DISK_IF_VIRTIO, &blk);
    machine_set_irq_observer(b.m, NULL, on_msi, &b);
    driver_init(b.m, depth);

    uint64_t seed = 0x9e3779b97f4a7c15ull, issued = 0, done = 0, bad = 0;
    uint16_t avail_idx = 0, used_seen = 0;
    uint64_t t0 = clock_ns();
    for (unsigned k = 0; k < depth && issued < count; k++, issued++)
        submit(b.m, k, (rnd(&seed) % nblocks) * (BS / 512), &avail_idx);
    mw(b.m, NOTIFY, 0, 2);
    while (done < count) {
        uint16_t used_idx = (uint16_t)mr(b.m, USED + 2, 2);
        if (used_idx == used_seen) {
            ev_run_once(loop, 100);
            continue;
        }
        for (; used_seen != used_idx; used_seen++) {
            unsigned slot = (unsigned)mr(b.m, USED + 4 + 8 * (used_seen % QSIZE), 4) / 3;
            if (mr(b.m, STATUS + slot, 1) != 0)
                bad++;
            done++;
            if (issued < count) {
                submit(b.m, slot, (rnd(&seed) % nblocks) * (BS / 512), &avail_idx);
                issued++;
            }
        }
        mw(b.m, NOTIFY, 0, 2);
    }
    double secs = (clock_ns() - t0) / 1e9;
    if (bad)
        fprintf(stderr, "bench-virtio: %" PRIu64 " requests failed\n", bad);
    *msis = b.msis;
    machine_free(b.m);
    blk_free(blk);
    ev_loop_free(loop);
    return bad ? 0 : count / secs;
}

static double bench_pread(int fd, uint64_t count, uint64_t nblocks)
{
    static uint8_t buf[BS] __attribute__((aligned(4096)));
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    uint64_t t0 = clock_ns();

    for (uint64_t i = 0; i < count; i++) {
        if (pread(fd, buf, BS, (off_t)((rnd(&seed) % nblocks) * BS)) != BS) {
            perror("bench-virtio: pread");
            exit(1);
        }
    }
    return count / ((clock_ns() - t0) / 1e9);
}

static double bench_uring(int fd, uint64_t count, unsigned depth, uint64_t nblocks)
{
    struct io_uring ring;
    uint8_t *bufs = aligned_alloc(4096, (size_t)depth * BS);
    uint64_t seed = 0x9e3779b97f4a7c15ull, issued = 0, done = 0;

    if (!bufs || io_uring_queue_init(depth, &ring, 0) < 0) {
        fprintf(stderr, "bench-virtio: io_uring unavailable\n");
        exit(1);
    }
    uint64_t t0 = clock_ns();
    for (unsigned k = 0; k < depth && issued < count; k++, issued++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        io_uring_prep_read(sqe, fd, bufs + (size_t)k * BS, BS,
                           (rnd(&seed) % nblocks) * BS);
        io_uring_sqe_set_data64(sqe, k);
    }
    io_uring_submit(&ring);
    while (done < count) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(&ring, &cqe) < 0 || cqe->res != BS) {
            fprintf(stderr, "bench-virtio: io_uring read failed\n");
            exit(1);
        }
        unsigned slot = (unsigned)io_uring_cqe_get_data64(cqe);
        io_uring_cqe_seen(&ring, cqe);
        done++;
        if (issued < count) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            io_uring_prep_read(sqe, fd, bufs + (size_t)slot * BS, BS,
                               (rnd(&seed) % nblocks) * BS);
            io_uring_sqe_set_data64(sqe, slot);
            issued++;
            io_uring_submit(&ring);
        }
    }
    double rate = count / ((clock_ns() - t0) / 1e9);
    io_uring_queue_exit(&ring);
    free(bufs);
    return rate;
}

int main(int argc, char **argv)
{
    uint64_t count = 200000, mib = 1024, msis = 0;
    unsigned depth = 32;
    const char *dir = "/var/tmp";
    int c;

    log_init("bench-virtio", LOG_WARN);
    while ((c = getopt(argc, argv, "n:s:q:d:")) != -1) {
        switch (c) {
        case 'n': count = strtoull(optarg, NULL, 0); break;
        case 's': mib = strtoull(optarg, NULL, 0); break;
        case 'q': depth = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'd': dir = optarg; break;
        default:
            fprintf(stderr, "usage: bench-virtio [-n REQUESTS] [-s IMAGE_MIB] [-q DEPTH] [-d DIR]\n");
            return 2;
        }
    }
    if (!count || mib < 1 || mib > 65536 || depth < 1 || depth > MAX_DEPTH) {
        fprintf(stderr, "bench-virtio: bad -n, -s or -q\n");
        return 2;
    }

    char path[4096];
    int fd = bench_make_image("bench-virtio", dir, mib, path, sizeof(path));
    uint64_t nblocks = (mib << 20) / BS;

    double pread_rate = bench_pread(fd, count, nblocks);
    double uring_rate = bench_uring(fd, count, depth, nblocks);
    double virtio_rate = bench_virtio(path, count, depth, nblocks, &msis);
    double ceiling = pread_rate > uring_rate ? pread_rate : uring_rate;

    printf("virtio-blk 4K random read QD%u: %" PRIu64 " requests, %.0f req/s (%" PRIu64 " MSI-X messages)\n",
           depth, count, virtio_rate, msis);
    printf("pread      4K random read QD1 : %.0f req/s\n", pread_rate);
    printf("io_uring   4K random read QD%u: %.0f req/s\n", depth, uring_rate);
    printf("ratio virtio/pread: %.2f\n", virtio_rate / pread_rate);
    printf("ratio virtio/io_uring: %.2f\n", virtio_rate / uring_rate);
    printf("ratio virtio/ceiling: %.2f\n", virtio_rate / ceiling);
    close(fd);
    unlink(path);
    return virtio_rate > 0 ? 0 : 1;
}
