/*
 * tests/bench/bench-hw.h — set-up shared by the in-process device
 * benchmarks (bench-ide-dma, bench-virtio): a page-cached image file, a
 * machine with that image as one read-only raw disk, PCI config writes.
 * Failures print `PROG: what: why` and exit 1.
 */
#ifndef DISKDM_BENCH_HW_H
#define DISKDM_BENCH_HW_H

#include "hw/hw.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void bench_die(const char *prog, const char *what,
                             struct error *err)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, err ? err->msg : "failed");
    exit(1);
}

/*
 * A real (not sparse) image of `mib` MiB in `dir`, named into `path`, read
 * once so that it sits in the page cache. Returns its descriptor; the
 * caller unlinks `path` when done.
 */
static inline int bench_make_image(const char *prog, const char *dir,
                                   uint64_t mib, char *path, size_t path_size)
{
    uint8_t *chunk = malloc(1 << 20);
    int fd;

    snprintf(path, path_size, "%s/%s-XXXXXX", dir, prog);
    fd = mkstemp(path);
    if (fd < 0 || !chunk) {
        fprintf(stderr, "%s: cannot create an image in %s\n", prog, dir);
        exit(1);
    }
    for (size_t i = 0; i < (1 << 20); i++)
        chunk[i] = (uint8_t)(i * 7 + 3);
    for (uint64_t i = 0; i < mib; i++) {
        if (full_pwrite(fd, chunk, 1 << 20, (off_t)(i << 20)) != 1 << 20) {
            perror("write image");
            unlink(path);
            exit(1);
        }
    }
    for (uint64_t i = 0; i < mib; i++)
        full_pread(fd, chunk, 1 << 20, (off_t)(i << 20));
    free(chunk);
    return fd;
}

/* A machine with the image at `path` attached read-only as `iface` (IDE:
 * primary master; virtio: the first free slot); the backend in *blkp, for the caller to free after the
 * machine. */
static inline struct machine *bench_machine(const char *prog,
                                            struct event_loop *loop,
                                            const char *path,
                                            enum disk_if iface,
                                            struct blk_backend **blkp)
{
    struct error *err = NULL;
    struct bdrv_open_opts o;
    struct disk_spec ds;
    struct machine *m;
    char *spec = NULL;

    m = machine_new(loop, NULL, &err);
    if (!m)
        bench_die(prog, "machine", err);
    if (asprintf(&spec, "driver=raw,file.filename=%s,read-only=on", path) < 0)
        exit(1);
    if (bdrv_open_opts_parse(spec, &o, &err) < 0)
        bench_die(prog, "options", err);
    free(spec);
    *blkp = blk_open(loop, &o, NULL, &err);
    if (!*blkp)
        bench_die(prog, path, err);
    bdrv_open_opts_free(&o);
    disk_spec_init(&ds);
    ds.iface = iface;
    if (iface == DISK_IF_IDE)
        ds.index = 0;
    if (machine_attach_disk(m, &ds, *blkp, &err) < 0)
        bench_die(prog, "attach", err);
    disk_spec_free(&ds);
    return m;
}

/* A PCI config write through 0xcf8/0xcfc; addr = bus/dev/fn/register. */
static inline void bench_cfg_write(struct machine *m, uint32_t addr,
                                   unsigned size, uint32_t v)
{
    machine_pio_write(m, 0xcf8, 4, 0x80000000u | (addr & ~3u));
    machine_pio_write(m, 0xcfc + (addr & 3), size, v);
}

#endif
