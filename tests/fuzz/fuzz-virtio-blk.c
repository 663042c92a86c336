/*
 * tests/fuzz/fuzz-virtio-blk.c — virtio-blk-pci against random ring
 * contents and register writes. Each input starts from a driver that has
 * set up two modern queues over a small writable or read-only disk; the
 * input's bytes are then operations: memory writes (rings, tables,
 * headers), legacy/modern/MSI-X/config-space writes and reads, notifies,
 * event-loop turns and read-only flips. The device must never crash, hang
 * or touch memory outside guest RAM (ASan watches the RAM mapping's ends).
 */
#include "hw/hw.h"
#include "tests/fuzz/fuzz-common.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RAM_SIZE    (2u << 20)
#define LEGACY      0xc000
#define MSIX        0xfe100000ull
#define MODERN      0xfe000000ull
#define RING0       0x10000u
#define RING1       0x20000u

static void cfg_write(struct machine *m, unsigned off, unsigned size, uint32_t v)
{
    machine_pio_write(m, 0xcf8, 4, 0x80001000u | (off & 0xfc));
    machine_pio_write(m, 0xcfc + (off & 3), size, v);
}

static void mem_w(struct machine *m, uint64_t a, uint64_t v, unsigned size)
{
    uint8_t b[8];
    for (unsigned i = 0; i < size; i++) {
        b[i] = v >> (8 * i);
    }
    machine_mem_write(m, a, b, size);
}

/* A driver that got as far as DRIVER_OK with two queues of 16 entries. */
static void driver_init(struct machine *m)
{
    cfg_write(m, 0x10, 4, LEGACY | 1);
    cfg_write(m, 0x14, 4, (uint32_t)MSIX);
    cfg_write(m, 0x20, 4, (uint32_t)MODERN);
    cfg_write(m, 0x04, 2, 7);
    mem_w(m, MODERN + 0x14, 3, 1);
    mem_w(m, MODERN + 0x08, 0, 4);
    mem_w(m, MODERN + 0x0c, 0x30006e00, 4);
    mem_w(m, MODERN + 0x08, 1, 4);
    mem_w(m, MODERN + 0x0c, 1, 4);
    mem_w(m, MODERN + 0x14, 0xb, 1);
    for (unsigned q = 0; q < 2; q++) {
        uint32_t base = q ? RING1 : RING0;
        mem_w(m, MODERN + 0x16, q, 2);
        mem_w(m, MODERN + 0x18, 16, 2);
        mem_w(m, MODERN + 0x20, base, 4);
        mem_w(m, MODERN + 0x28, base + 0x1000, 4);
        mem_w(m, MODERN + 0x30, base + 0x2000, 4);
        mem_w(m, MODERN + 0x1c, 1, 2);
    }
    mem_w(m, MODERN + 0x14, 0xf, 1);
}

static const unsigned sizes[4] = { 1, 2, 4, 8 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_env *env = fuzz_env_get("/tmp/fuzz-virtio.XXXXXX");
    struct error *err = NULL;
    struct input in = { data, size };
    char drive[256];

    struct event_loop *loop = ev_loop_new(&err);
    struct machine_config cfg = { .ram_size = RAM_SIZE };
    struct machine *m = loop ? machine_new(loop, &cfg, &err) : NULL;
    if (!m) {
        abort();
    }
    bool ro = take(&in, 1) & 1;
    snprintf(drive, sizeof(drive), "file=%s,format=raw,if=virtio,num-queues=2%s",
             env->img, ro ? ",readonly=on" : "");
    struct disk_spec spec;
    struct bdrv_open_opts o;
    struct blk_config bc = { 0 };
    if (disk_spec_parse_drive(drive, &spec, &err) || disk_spec_resolve(&spec, &err)) {
        abort();
    }
    bdrv_open_opts_init(&o);
    if (bdrv_open_opts_from_spec(&spec, &o, &err)) {
        abort();
    }
    struct blk_backend *blk = blk_open(loop, &o, &bc, &err);
    if (!blk || machine_attach_disk(m, &spec, blk, &err)) {
        abort();
    }
    bdrv_open_opts_free(&o);
    disk_spec_free(&spec);
    driver_init(m);

    for (unsigned steps = 0; in.left && steps < 4096; steps++) {
        uint8_t op = take(&in, 1);
        unsigned sz = sizes[(op >> 4) & 3];
        switch (op & 15) {
        case 0: case 1: case 2: {          /* bytes into the ring areas */
            uint32_t a = (op & 1 ? RING1 : RING0) + (take(&in, 2) & 0x2fff);
            unsigned n = take(&in, 1) & 31;
            uint8_t buf[32];
            for (unsigned i = 0; i < n; i++) {
                buf[i] = take(&in, 1);
            }
            machine_mem_write(m, a, buf, n);
            break;
        }
        case 3: {                           /* anywhere, including MMIO */
            uint64_t a = take(&in, 4);
            mem_w(m, a, take(&in, sz), sz);
            break;
        }
        case 4:
            mem_w(m, MODERN + (take(&in, 2) & 0x3fff), take(&in, sz), sz);
            break;
        case 5: {
            uint8_t b[8];
            machine_mem_read(m, MODERN + (take(&in, 2) & 0x3fff), b, sz);
            break;
        }
        case 6:
            machine_pio_write(m, LEGACY + (take(&in, 1) & 0x7f), sz > 4 ? 4 : sz,
                              take(&in, 4));
            break;
        case 7:
            machine_pio_read(m, LEGACY + (take(&in, 1) & 0x7f), sz > 4 ? 4 : sz);
            break;
        case 8:
            mem_w(m, MSIX + (take(&in, 2) & 0xfff), take(&in, 4), 4);
            break;
        case 9:
            cfg_write(m, take(&in, 1), sz > 4 ? 4 : sz, take(&in, 4));
            break;
        case 10: case 11:                   /* notify */
            mem_w(m, MODERN + 0x3000 + 4 * (take(&in, 1) & 3), 0, 2);
            break;
        case 12:
            machine_pio_write(m, LEGACY + 0x10, 2, take(&in, 1) & 3);
            break;
        case 13:
            ev_run_once(loop, 0);
            break;
        case 14:
            blk_set_read_only(blk, !blk_is_read_only(blk), NULL);
            break;
        case 15:
            if (take(&in, 1) == 0xff) {
                machine_reset(m);
            }
            break;
        }
    }
    for (int i = 0; i < 10; i++) {
        ev_run_once(loop, 0);
    }
    machine_free(m);
    blk_free(blk);
    ev_loop_free(loop);
    return 0;
}
