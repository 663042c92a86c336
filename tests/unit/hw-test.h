/*
 * tests/unit/hw-test.h — helpers for the machine's unit tests: a machine
 * with raw images in a temp dir, port and memory shorthands, an IRQ
 * recorder, and waiting on the event loop for asynchronous completions.
 * Devices are driven only through machine_pio_* / machine_mem_*.
 */
#ifndef DISKDM_HW_TEST_H
#define DISKDM_HW_TEST_H

#include "hw/hw.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct hwt {
    char *dir;
    struct event_loop *loop;
    struct machine *m;
    struct blk_backend *blk[4];
    char *img[4];
    int raises[24];             /* IRQ raise events per GSI */
    bool level[24];
    int msis;
    uint64_t msi_addr;
    uint32_t msi_data;
};

static inline void hwt_irq(void *opaque, int gsi, bool level)
{
    struct hwt *t = opaque;
    if (gsi >= 0 && gsi < 24) {
        if (level && !t->level[gsi])
            t->raises[gsi]++;
        t->level[gsi] = level;
    }
}

static inline void hwt_msi(void *opaque, uint64_t addr, uint32_t data)
{
    struct hwt *t = opaque;
    t->msis++;
    t->msi_addr = addr;
    t->msi_data = data;
}

/* Byte `off` of the image: a pattern that differs per sector. */
static inline uint8_t hwt_pat(uint64_t off)
{
    return (uint8_t)((off >> 9) * 13 + (off & 511) * 7 + 1);
}

static inline char *hwt_make_image(const char *dir, const char *name, size_t size)
{
    char *path = NULL;
    ck_assert_int_ge(asprintf(&path, "%s/%s", dir, name), 0);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    uint8_t *buf = malloc(size);
    for (size_t i = 0; i < size; i++)
        buf[i] = hwt_pat(i);
    ck_assert_int_eq(full_pwrite(fd, buf, size, 0), (ssize_t)size);
    free(buf);
    close(fd);
    return path;
}

/* FNV-1a of a whole file, to prove an image did not change. */
static inline uint64_t hwt_file_hash(const char *path)
{
    uint64_t h = 1469598103934665603ull;
    uint8_t buf[65536];
    ssize_t n;
    off_t off = 0;
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    while ((n = full_pread(fd, buf, sizeof(buf), off)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 1099511628211ull;
        off += n;
    }
    close(fd);
    return h;
}

static inline void hwt_file_read(const char *path, uint64_t off, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(full_pread(fd, buf, len, off), (ssize_t)len);
    close(fd);
}

static inline void hwt_init(struct hwt *t)
{
    struct error *err = NULL;
    memset(t, 0, sizeof(*t));
    t->dir = strdup("/tmp/diskdm-hw-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
    t->loop = ev_loop_new(&err);
    ck_assert_ptr_nonnull(t->loop);
    struct machine_config cfg = { .ram_size = 0 };
    t->m = machine_new(t->loop, &cfg, &err);
    ck_assert_msg(t->m != NULL, "machine_new: %s", err ? err->msg : "?");
    machine_set_irq_observer(t->m, hwt_irq, hwt_msi, t);
}

/*
 * Attach drive `index` (0..3) over a new raw image of `sectors` sectors
 * (0 = an empty CD-ROM). `opts` is appended to the open options
 * ("read-only=on", "discard=unmap").
 */
static inline void hwt_attach(struct hwt *t, int index, bool cdrom,
                              uint64_t size, const char *opts)
{
    struct error *err = NULL;
    struct bdrv_open_opts o;
    char name[32], *str = NULL;

    if (size) {
        snprintf(name, sizeof(name), "disk%d.raw", index);
        t->img[index] = hwt_make_image(t->dir, name, size);
        ck_assert_int_ge(asprintf(&str, "driver=raw,file.filename=%s%s%s",
                                  t->img[index], opts && *opts ? "," : "",
                                  opts ? opts : ""), 0);
        ck_assert_int_eq(bdrv_open_opts_parse(str, &o, &err), 0);
        t->blk[index] = blk_open(t->loop, &o, NULL, &err);
        ck_assert_msg(t->blk[index] != NULL, "blk_open: %s", err ? err->msg : "?");
        bdrv_open_opts_free(&o);
        free(str);
    } else {
        t->blk[index] = blk_new(t->loop, NULL, NULL);
        ck_assert_ptr_nonnull(t->blk[index]);
    }
    struct disk_spec spec;
    disk_spec_init(&spec);
    spec.iface = DISK_IF_IDE;
    spec.index = index;
    spec.bus = index / 2;
    spec.unit = index % 2;
    spec.media = cdrom ? DISK_MEDIA_CDROM : DISK_MEDIA_DISK;
    ck_assert_int_eq(machine_attach_disk(t->m, &spec, t->blk[index], &err), 0);
    disk_spec_free(&spec);
}

static inline void hwt_fini(struct hwt *t)
{
    machine_free(t->m);
    for (int i = 0; i < 4; i++) {
        if (t->blk[i])
            blk_free(t->blk[i]);
        free(t->img[i]);
    }
    ev_loop_free(t->loop);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    ck_assert_int_eq(system(cmd), 0);
    free(t->dir);
}

#define outb(t, p, v) machine_pio_write((t)->m, (p), 1, (v))
#define outw(t, p, v) machine_pio_write((t)->m, (p), 2, (v))
#define outl(t, p, v) machine_pio_write((t)->m, (p), 4, (v))
#define inb(t, p) machine_pio_read((t)->m, (p), 1)
#define inw(t, p) machine_pio_read((t)->m, (p), 2)
#define inl(t, p) machine_pio_read((t)->m, (p), 4)

static inline void hwt_writel(struct hwt *t, uint64_t addr, uint32_t v)
{
    uint8_t b[4] = { v, v >> 8, v >> 16, v >> 24 };
    ck_assert_int_eq(machine_mem_write(t->m, addr, b, 4), 0);
}

static inline uint32_t hwt_readl(struct hwt *t, uint64_t addr)
{
    uint8_t b[4];
    ck_assert_int_eq(machine_mem_read(t->m, addr, b, 4), 0);
    return b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24;
}

/* Run the loop until `cond` holds (bounded: a stuck device fails). */
#define hwt_wait(t, cond) do {                                          \
        int n_ = 0;                                                     \
        while (!(cond) && n_++ < 500)                                   \
            ev_run_once((t)->loop, 10);                                 \
        ck_assert_msg((cond), "timed out waiting for " #cond);          \
    } while (0)

/* Run the loop until nothing is pending for a while. */
static inline void hwt_settle(struct hwt *t)
{
    for (int i = 0; i < 20; i++)
        ev_run_once(t->loop, 5);
}

/* PCI config access through mechanism #1. */
static inline uint32_t hwt_cfg_read(struct hwt *t, int dev, int fn, int off, int size)
{
    outl(t, 0xcf8, 0x80000000u | dev << 11 | fn << 8 | (off & 0xfc));
    return machine_pio_read(t->m, 0xcfc + (off & 3), size);
}

static inline void hwt_cfg_write(struct hwt *t, int dev, int fn, int off, int size,
                                 uint32_t v)
{
    outl(t, 0xcf8, 0x80000000u | dev << 11 | fn << 8 | (off & 0xfc));
    machine_pio_write(t->m, 0xcfc + (off & 3), size, v);
}

#define BMDMA_BASE 0xc000

/* Give the IDE function its bus-master BAR and enable I/O + bus master. */
static inline void hwt_enable_bmdma(struct hwt *t)
{
    hwt_cfg_write(t, 1, 1, 0x20, 4, BMDMA_BASE | 1);
    hwt_cfg_write(t, 1, 1, 0x04, 2, 0x0005);
}

#endif
