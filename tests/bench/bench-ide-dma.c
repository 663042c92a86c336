/*
 * tests/bench/bench-ide-dma.c — the IDE DMA path in process: 64 KiB READ
 * DMA EXT commands driven through the machine's registers (task file,
 * PRD table, bus-master start, wait for the interrupt) against a
 * page-cached raw image, versus plain pread of the same bytes. Prints
 * sectors/s for both and the ratio.
 *
 * Usage: bench-ide-dma [-n COMMANDS] [-s IMAGE_MIB] [-d DIR]
 */
#include "tests/bench/bench-hw.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#define XFER        65536
#define SECTORS     (XFER / 512)
#define PRD_ADDR    0x1000
#define BUF_ADDR    0x100000
#define BM          0xc000

struct bench {
    struct event_loop *loop;
    struct machine *m;
    bool irq;
};

static void on_irq(void *opaque, int gsi, bool level)
{
    struct bench *b = opaque;
    if (gsi == 14 && level)
        b->irq = true;
}

int main(int argc, char **argv)
{
    uint64_t count = 20000, mib = 256;
    const char *dir = "/var/tmp";
    struct error *err = NULL;
    struct bench b = { 0 };
    int c;

    log_init("bench-ide-dma", LOG_WARN);
    while ((c = getopt(argc, argv, "n:s:d:")) != -1) {
        switch (c) {
        case 'n': count = strtoull(optarg, NULL, 0); break;
        case 's': mib = strtoull(optarg, NULL, 0); break;
        case 'd': dir = optarg; break;
        default:
            fprintf(stderr, "usage: bench-ide-dma [-n COMMANDS] [-s IMAGE_MIB] [-d DIR]\n");
            return 2;
        }
    }
    if (!count || mib < 1 || mib > 65536) {
        fprintf(stderr, "bench-ide-dma: bad -n or -s\n");
        return 2;
    }

    char path[4096];
    int fd = bench_make_image("bench-ide-dma", dir, mib, path, sizeof(path));
    uint64_t nxfer = (mib << 20) / XFER;
    struct blk_backend *blk;

    b.loop = ev_loop_new(&err);
    if (!b.loop)
        bench_die("bench-ide-dma", "event loop", err);
    b.m = bench_machine("bench-ide-dma", b.loop, path, DISK_IF_IDE, &blk);
    machine_set_irq_observer(b.m, on_irq, NULL, &b);

    /* BMDMA at 0xc000, I/O decode and bus mastering; one 64 KiB PRD. */
    bench_cfg_write(b.m, 0x0920, 4, BM | 1);
    bench_cfg_write(b.m, 0x0904, 2, 0x0005);
    uint8_t prd[8] = { BUF_ADDR & 0xff, (BUF_ADDR >> 8) & 0xff,
                       (BUF_ADDR >> 16) & 0xff, BUF_ADDR >> 24, 0, 0, 0, 0x80 };
    machine_mem_write(b.m, PRD_ADDR, prd, sizeof(prd));
    machine_pio_write(b.m, BM + 4, 4, PRD_ADDR);

    uint64_t t0 = clock_ns(), bad = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t lba = (i % nxfer) * SECTORS;
        machine_pio_write(b.m, 0x1f6, 1, 0x40);
        machine_pio_write(b.m, 0x1f2, 1, 0);
        machine_pio_write(b.m, 0x1f2, 1, SECTORS);
        for (int r = 0; r < 3; r++) {
            machine_pio_write(b.m, 0x1f3 + r, 1, (lba >> (24 + 8 * r)) & 0xff);
            machine_pio_write(b.m, 0x1f3 + r, 1, (lba >> (8 * r)) & 0xff);
        }
        b.irq = false;
        machine_pio_write(b.m, 0x1f7, 1, 0x25);
        machine_pio_write(b.m, BM, 1, 0x09);
        while (!b.irq)
            ev_run_once(b.loop, 1000);
        if (machine_pio_read(b.m, 0x1f7, 1) != 0x50)
            bad++;
        machine_pio_write(b.m, BM, 1, 0x00);
        machine_pio_write(b.m, BM + 2, 1, 0x04);
    }
    uint64_t t1 = clock_ns();

    uint8_t *buf = malloc(XFER);
    uint64_t t2 = clock_ns();
    for (uint64_t i = 0; i < count; i++)
        full_pread(fd, buf, XFER, (off_t)((i % nxfer) * XFER));
    uint64_t t3 = clock_ns();

    /* The last transfer landed in guest RAM: check it. */
    uint64_t last = ((count - 1) % nxfer) * XFER;
    uint8_t *guest = malloc(XFER);
    machine_mem_read(b.m, BUF_ADDR, guest, XFER);
    full_pread(fd, buf, XFER, (off_t)last);
    if (memcmp(guest, buf, XFER) || bad) {
        fprintf(stderr, "bench-ide-dma: data mismatch or %" PRIu64 " failed commands\n", bad);
        unlink(path);
        return 1;
    }

    double dma_s = (t1 - t0) / 1e9, pread_s = (t3 - t2) / 1e9;
    double dma_rate = count * SECTORS / dma_s, pread_rate = count * SECTORS / pread_s;
    printf("ide-dma  64KiB READ DMA EXT: %" PRIu64 " cmds in %.3f s = %.0f sectors/s (%.0f MiB/s)\n",
           count, dma_s, dma_rate, dma_rate * 512 / 1048576);
    printf("pread    64KiB             : %" PRIu64 " reads in %.3f s = %.0f sectors/s (%.0f MiB/s)\n",
           count, pread_s, pread_rate, pread_rate * 512 / 1048576);
    printf("ratio ide-dma/pread: %.2f\n", dma_rate / pread_rate);

    machine_free(b.m);
    blk_free(blk);
    ev_loop_free(b.loop);
    close(fd);
    unlink(path);
    free(buf);
    free(guest);
    return 0;
}
