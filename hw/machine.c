/*
 * hw/machine.c — the emulated pc: guest RAM, port I/O and MMIO dispatch,
 * IRQ lines (IOAPIC GSIs) with their observer, the MSI window, reset, and
 * attaching disks to controllers. Transports call the machine_* functions
 * of hw/hw.h; devices use the private API of hw/hw-int.h.
 */
#include "hw/hw-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define DEFAULT_RAM_SIZE    (128ull << 20)
/* QEMU's pc puts RAM above this address at 4 GiB instead. */
#define LOWMEM_LIMIT        0xe0000000ull
#define HIGHMEM_BASE        0x100000000ull
#define MSI_WINDOW_BASE     0xfee00000ull
#define MSI_WINDOW_SIZE     0x100000ull
#define NUM_GSI             24
/* The BIOS/option-ROM window, cut into the i440FX's PAM segments. */
#define PAM_BASE            0xc0000ull
#define PAM_END             0x100000ull
#define PAM_SEG16_END       0xf0000ull      /* 16 KiB segments below, one of 64 KiB above */
#define MAX_REGIONS         128
#define MAX_DRIVES          32

struct attached_drive {
    char id[64];
    enum disk_if iface;
    int bus, unit;
    struct virtio_pci *virtio;      /* DISK_IF_VIRTIO */
    bool used;
};

struct machine {
    struct event_loop *loop;
    uint8_t *ram;
    uint64_t ram_size;
    uint64_t lowmem;                /* RAM at [0, lowmem) */
    uint64_t highmem;               /* RAM at [4G, 4G + highmem) */
    uint8_t pam[MACHINE_PAM_SEGMENTS];  /* MACHINE_PAM_* bits per segment */

    struct io_region *regions[MAX_REGIONS];
    unsigned nregions;
    unsigned long map_seq;

    struct irq_line *lines;
    bool gsi_level[NUM_GSI];
    machine_irq_fn *irq_obs;
    machine_msi_fn *msi_obs;
    void *obs_opaque;
    machine_tray_fn *tray_obs;
    void *tray_opaque;

    struct io_region msi_region;
    struct pci_bus *pci;
    struct piix_chipset *chipset;
    struct ide_controller *ide;
    struct attached_drive drives[MAX_DRIVES];
};

/* ------------------------------------------------------------------ */
/* Regions                                                             */
/* ------------------------------------------------------------------ */

int machine_io_map(struct machine *m, enum io_space space, struct io_region *r,
                   uint64_t base)
{
    if (r->mapped)
        machine_io_unmap(m, r);
    if (m->nregions == MAX_REGIONS)
        return -ENOSPC;
    r->base = base;
    r->space = space;
    r->mapped = true;
    r->seq = ++m->map_seq;
    m->regions[m->nregions++] = r;
    return 0;
}

void machine_io_unmap(struct machine *m, struct io_region *r)
{
    if (!r->mapped)
        return;
    for (unsigned i = 0; i < m->nregions; i++) {
        if (m->regions[i] == r) {
            m->regions[i] = m->regions[--m->nregions];
            break;
        }
    }
    r->mapped = false;
}

/* The region serving `addr`: highest priority, then the latest mapped. */
static struct io_region *find_region(struct machine *m, enum io_space space,
                                     uint64_t addr)
{
    struct io_region *best = NULL;

    for (unsigned i = 0; i < m->nregions; i++) {
        struct io_region *r = m->regions[i];
        if (r->space != space || addr < r->base || addr - r->base >= r->size)
            continue;
        if (!best || r->priority > best->priority ||
            (r->priority == best->priority && r->seq > best->seq))
            best = r;
    }
    return best;
}

/* Lowest region start above addr in `space` (for unassigned runs). */
static uint64_t next_region_start(struct machine *m, enum io_space space,
                                  uint64_t addr)
{
    uint64_t next = UINT64_MAX;

    for (unsigned i = 0; i < m->nregions; i++) {
        struct io_region *r = m->regions[i];
        if (r->space == space && r->base > addr && r->base < next)
            next = r->base;
    }
    return next;
}

static unsigned region_max(const struct io_region *r)
{
    if (r->space == IO_SPACE_PIO)
        return 4;
    return r->max_access ? r->max_access : 4;
}

/*
 * One access of 1/2/4/8 bytes. Accesses that straddle a region's end or
 * exceed its widest access are split in halves, as the memory core of
 * QEMU splits them; bytes nobody claims read as all ones (ports) or zero
 * (memory, as QEMU's unassigned memory reads).
 */
static uint64_t io_read(struct machine *m, enum io_space space, uint64_t addr,
                        unsigned size)
{
    struct io_region *r = find_region(m, space, addr);

    if (r && addr - r->base + size <= r->size && size <= region_max(r)) {
        uint64_t v = r->read ? r->read(r->opaque, addr - r->base, size)
                             : (space == IO_SPACE_PIO ? UINT64_MAX : 0);
        return size == 8 ? v : v & ((1ull << (size * 8)) - 1);
    }
    if (size == 1)
        return space == IO_SPACE_PIO ? 0xff : 0;   /* unclaimed byte */
    unsigned half = size / 2;
    uint64_t lo = io_read(m, space, addr, half);
    uint64_t hi = io_read(m, space, addr + half, half);
    return lo | hi << (half * 8);
}

static void io_write(struct machine *m, enum io_space space, uint64_t addr,
                     unsigned size, uint64_t val)
{
    struct io_region *r = find_region(m, space, addr);

    if (r && addr - r->base + size <= r->size && size <= region_max(r)) {
        if (r->write)
            r->write(r->opaque, addr - r->base, size,
                     size == 8 ? val : val & ((1ull << (size * 8)) - 1));
        return;
    }
    if (size == 1)
        return;
    unsigned half = size / 2;
    io_write(m, space, addr, half, val);
    io_write(m, space, addr + half, half, val >> (half * 8));
}

uint32_t machine_pio_read(struct machine *m, uint16_t port, unsigned size)
{
    if (size != 1 && size != 2 && size != 4)
        return UINT32_MAX;
    return (uint32_t)io_read(m, IO_SPACE_PIO, port, size);
}

void machine_pio_write(struct machine *m, uint16_t port, unsigned size,
                       uint32_t val)
{
    if (size != 1 && size != 2 && size != 4)
        return;
    io_write(m, IO_SPACE_PIO, port, size, val);
}

/* ------------------------------------------------------------------ */
/* Guest memory                                                        */
/* ------------------------------------------------------------------ */

/* The PAM segment holding addr (in the window) and where it ends. */
static unsigned pam_segment(uint64_t addr, uint64_t *end)
{
    if (addr >= PAM_SEG16_END) {
        *end = PAM_END;
        return 0;
    }
    unsigned i = (addr - PAM_BASE) / 0x4000;
    *end = PAM_BASE + (i + 1) * 0x4000ull;
    return i + 1;
}

/*
 * Host pointer and contiguous length for RAM at addr, or NULL. `access`
 * (MACHINE_PAM_READ and/or MACHINE_PAM_WRITE) says how the caller will
 * use it: in the BIOS window RAM shows only where the PAM registers let
 * it, elsewhere the window is ROM (reads zero, writes dropped).
 */
static uint8_t *ram_at(struct machine *m, uint64_t addr, uint64_t *avail,
                       unsigned access)
{
    if (addr >= PAM_BASE && addr < PAM_END && addr < m->lowmem) {
        uint64_t end;
        unsigned seg = pam_segment(addr, &end);
        if ((m->pam[seg] & access) != access)
            return NULL;
        *avail = MIN(end, m->lowmem) - addr;
        return m->ram + addr;
    }
    if (addr < m->lowmem) {
        *avail = (addr < PAM_BASE ? MIN(PAM_BASE, m->lowmem) : m->lowmem) - addr;
        return m->ram + addr;
    }
    if (addr >= HIGHMEM_BASE && addr - HIGHMEM_BASE < m->highmem) {
        *avail = m->highmem - (addr - HIGHMEM_BASE);
        return m->ram + m->lowmem + (addr - HIGHMEM_BASE);
    }
    return NULL;
}

/* Where the unassigned (or ROM) run at addr ends at the latest. */
static uint64_t next_ram_start(struct machine *m, uint64_t addr)
{
    if (addr >= PAM_BASE && addr < PAM_END && addr < m->lowmem) {
        uint64_t end;
        pam_segment(addr, &end);
        return MIN(end, m->lowmem);
    }
    if (m->highmem && addr < HIGHMEM_BASE)
        return HIGHMEM_BASE;
    return UINT64_MAX;
}

/* Widest naturally aligned access at addr within len and the region. */
static unsigned mmio_chunk(const struct io_region *r, uint64_t addr, size_t len)
{
    unsigned max = region_max(r);
    uint64_t room = r->base + r->size - addr;

    for (unsigned s = 8; s > 1; s /= 2) {
        if (s <= max && s <= len && s <= room && !(addr & (s - 1)))
            return s;
    }
    return 1;
}

static int mem_access(struct machine *m, uint64_t addr, uint8_t *buf,
                      size_t len, bool is_write)
{
    if (len && addr + len - 1 < addr)
        return -EFAULT;
    while (len) {
        uint64_t avail = 0;
        uint8_t *p = ram_at(m, addr, &avail,
                            is_write ? MACHINE_PAM_WRITE : MACHINE_PAM_READ);
        size_t n;

        if (p) {
            n = MIN(len, avail);
            if (is_write)
                memcpy(p, buf, n);
            else
                memcpy(buf, p, n);
        } else {
            struct io_region *r = find_region(m, IO_SPACE_MMIO, addr);
            if (r) {
                n = mmio_chunk(r, addr, len);
                if (is_write) {
                    uint64_t v = 0;
                    for (size_t i = 0; i < n; i++)
                        v |= (uint64_t)buf[i] << (8 * i);
                    io_write(m, IO_SPACE_MMIO, addr, n, v);
                } else {
                    uint64_t v = io_read(m, IO_SPACE_MMIO, addr, n);
                    for (size_t i = 0; i < n; i++)
                        buf[i] = v >> (8 * i);
                }
            } else {
                uint64_t end = MIN(next_region_start(m, IO_SPACE_MMIO, addr),
                                   next_ram_start(m, addr));
                /* end is exclusive: UINT64_MAX cannot bound the last byte */
                uint64_t run = end - addr;
                n = (run && run < len) ? run : len;
                if (!is_write)
                    memset(buf, 0, n);
            }
        }
        addr += n;
        buf += n;
        len -= n;
    }
    return 0;
}

int machine_mem_read(struct machine *m, uint64_t addr, void *buf, size_t len)
{
    return mem_access(m, addr, buf, len, false);
}

int machine_mem_write(struct machine *m, uint64_t addr, const void *buf,
                      size_t len)
{
    return mem_access(m, addr, (uint8_t *)buf, len, true);
}

void *machine_ram_ptr(struct machine *m, uint64_t addr, size_t len)
{
    const unsigned access = MACHINE_PAM_READ | MACHINE_PAM_WRITE;
    uint64_t avail, done;
    uint8_t *p = ram_at(m, addr, &avail, access);

    if (!p)
        return NULL;
    /* RAM pieces split at the BIOS window still lie end to end in ram[]. */
    for (done = avail; done < len; done += avail) {
        if (ram_at(m, addr + done, &avail, access) != p + done)
            return NULL;
    }
    return p;
}

/*
 * Copy between guest RAM at [addr, addr+len) and `buf` (to RAM when
 * `to_ram`), through whatever the PAM registers let `access` reach. The
 * whole range is checked first, so that a fault copies nothing.
 */
static int dma_copy(struct machine *m, uint64_t addr, uint8_t *buf, size_t len,
                    bool to_ram)
{
    const unsigned access = to_ram ? MACHINE_PAM_WRITE : MACHINE_PAM_READ;

    if (len && addr + len - 1 < addr)
        return -EFAULT;
    for (uint64_t a = addr, left = len; left;) {
        uint64_t avail = 0;
        if (!ram_at(m, a, &avail, access))
            return -EFAULT;
        uint64_t n = MIN(left, avail);
        a += n;
        left -= n;
    }
    while (len) {
        uint64_t avail = 0;
        uint8_t *p = ram_at(m, addr, &avail, access);
        size_t n = MIN(len, avail);
        if (to_ram)
            memcpy(p, buf, n);
        else
            memcpy(buf, p, n);
        buf += n;
        addr += n;
        len -= n;
    }
    return 0;
}

int machine_dma_read(struct machine *m, uint64_t addr, void *buf, size_t len)
{
    return dma_copy(m, addr, buf, len, false);
}

int machine_dma_write(struct machine *m, uint64_t addr, const void *buf,
                      size_t len)
{
    /* not written through: dma_copy only reads `buf` when to_ram */
    return dma_copy(m, addr, (uint8_t *)buf, len, true);
}

void machine_set_pam(struct machine *m, unsigned seg, unsigned mode)
{
    if (seg < MACHINE_PAM_SEGMENTS)
        m->pam[seg] = mode & (MACHINE_PAM_READ | MACHINE_PAM_WRITE);
}

uint64_t machine_ram_size(const struct machine *m)
{
    return m->ram_size;
}

struct event_loop *machine_event_loop(struct machine *m)
{
    return m->loop;
}

struct pci_bus *machine_pci_bus(struct machine *m)
{
    return m->pci;
}

/* ------------------------------------------------------------------ */
/* IRQs and MSI                                                        */
/* ------------------------------------------------------------------ */

/* Recompute a GSI's level; tell the observer when it changed, or always
 * with `repeat` (a driver set its line again to the level it had). */
static void gsi_update(struct machine *m, int gsi, bool repeat)
{
    bool level = false;

    if (gsi < 0 || gsi >= NUM_GSI)
        return;
    for (struct irq_line *l = m->lines; l; l = l->next) {
        if (l->gsi == gsi && l->level)
            level = true;
    }
    if (level != m->gsi_level[gsi] || repeat) {
        m->gsi_level[gsi] = level;
        if (m->irq_obs)
            m->irq_obs(m->obs_opaque, gsi, level);
    }
}

void machine_irq_line_init(struct machine *m, struct irq_line *l, int gsi)
{
    l->m = m;
    l->gsi = gsi;
    l->level = false;
    l->next = m->lines;
    m->lines = l;
}

void machine_irq_line_destroy(struct irq_line *l)
{
    struct machine *m = l->m;

    if (!m)
        return;
    for (struct irq_line **pp = &m->lines; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    l->m = NULL;
    gsi_update(m, l->gsi, false);
}

void irq_line_set(struct irq_line *l, bool level)
{
    if (l->level == level)
        return;
    l->level = level;
    gsi_update(l->m, l->gsi, false);
}

void irq_line_drive(struct irq_line *l, bool level)
{
    l->level = level;
    gsi_update(l->m, l->gsi, true);
}

void irq_line_connect(struct irq_line *l, int gsi)
{
    int old = l->gsi;

    if (old == gsi)
        return;
    l->gsi = gsi;
    gsi_update(l->m, old, false);
    gsi_update(l->m, gsi, false);
}

bool machine_irq_level(const struct machine *m, int gsi)
{
    return gsi >= 0 && gsi < NUM_GSI && m->gsi_level[gsi];
}

void machine_set_irq_observer(struct machine *m, machine_irq_fn *irq,
                              machine_msi_fn *msi, void *opaque)
{
    m->irq_obs = irq;
    m->msi_obs = msi;
    m->obs_opaque = opaque;
}

void machine_set_tray_observer(struct machine *m, machine_tray_fn *fn,
                               void *opaque)
{
    m->tray_obs = fn;
    m->tray_opaque = opaque;
}

void machine_tray_moved(struct machine *m, struct blk_backend *blk, bool open)
{
    if (m->tray_obs)
        m->tray_obs(m->tray_opaque, blk, open);
}

void machine_msi_write(struct machine *m, uint64_t addr, uint32_t data)
{
    uint8_t b[4] = { data, data >> 8, data >> 16, data >> 24 };
    machine_mem_write(m, addr, b, 4);
}

/* The LAPIC's MSI window: 32-bit writes are interrupt messages. */
static uint64_t msi_read(void *opaque, uint64_t off, unsigned size)
{
    return 0;
}

static void msi_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
    struct machine *m = opaque;

    if (m->msi_obs)
        m->msi_obs(m->obs_opaque, MSI_WINDOW_BASE + off, (uint32_t)val);
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */
/* ------------------------------------------------------------------ */

struct machine *machine_new(struct event_loop *loop,
                            const struct machine_config *cfg,
                            struct error **errp)
{
    struct machine *m = calloc(1, sizeof(*m));
    uint64_t size = cfg && cfg->ram_size ? cfg->ram_size : DEFAULT_RAM_SIZE;

    if (!m) {
        error_setg_errno(errp, ENOMEM, "cannot allocate the machine");
        return NULL;
    }
    if (size > (1ull << 40) || size < (1ull << 20)) {
        error_setg(errp, "RAM size %llu out of range (1 MiB to 1 TiB)",
                   (unsigned long long)size);
        errno = EINVAL;
        goto out_free;
    }
    m->loop = loop;
    m->ram_size = size;
    m->lowmem = MIN(size, LOWMEM_LIMIT);
    m->highmem = size - m->lowmem;
    /* Untouched pages cost nothing: the kernel hands out zero pages. */
    m->ram = mmap(NULL, size, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m->ram == MAP_FAILED) {
        error_setg_errno(errp, errno, "cannot map %llu bytes of guest RAM",
                         (unsigned long long)size);
        goto out_free;
    }

    m->msi_region = (struct io_region){
        .name = "msi", .read = msi_read, .write = msi_write, .opaque = m,
        .size = MSI_WINDOW_SIZE, .max_access = 4,
    };
    machine_io_map(m, IO_SPACE_MMIO, &m->msi_region, MSI_WINDOW_BASE);

    m->pci = pci_bus_new(m);
    if (!m->pci)
        goto out_unmap;
    m->chipset = piix_chipset_new(m, m->pci);
    if (!m->chipset)
        goto out_free_bus;
    m->ide = ide_controller_new(m, m->pci);
    if (!m->ide)
        goto out_free_chipset;
    return m;

out_free_chipset:
    piix_chipset_free(m->chipset);
out_free_bus:
    pci_bus_free(m->pci);
out_unmap:
    error_setg_errno(errp, ENOMEM, "cannot create the machine's devices");
    munmap(m->ram, size);
out_free:
    free(m);
    return NULL;
}

void machine_free(struct machine *m)
{
    if (!m)
        return;
    for (int i = 0; i < MAX_DRIVES; i++) {
        if (m->drives[i].used && m->drives[i].virtio)
            virtio_blk_pci_free(m->drives[i].virtio);
    }
    ide_controller_free(m->ide);
    piix_chipset_free(m->chipset);
    pci_bus_free(m->pci);
    munmap(m->ram, m->ram_size);
    free(m);
}

void machine_reset(struct machine *m)
{
    pci_bus_reset(m->pci);
}

/* ------------------------------------------------------------------ */
/* Disks                                                               */
/* ------------------------------------------------------------------ */

static struct attached_drive *find_drive(struct machine *m, const char *id)
{
    for (int i = 0; i < MAX_DRIVES; i++) {
        if (m->drives[i].used && !strcmp(m->drives[i].id, id))
            return &m->drives[i];
    }
    return NULL;
}

static bool ide_slot_used(struct machine *m, int bus, int unit)
{
    for (int i = 0; i < MAX_DRIVES; i++) {
        struct attached_drive *d = &m->drives[i];
        if (d->used && d->iface == DISK_IF_IDE && d->bus == bus && d->unit == unit)
            return true;
    }
    return false;
}

int machine_attach_disk(struct machine *m, const struct disk_spec *spec,
                        struct blk_backend *blk, struct error **errp)
{
    struct attached_drive *slot = NULL;
    int bus = spec->bus, unit = spec->unit, ret;

    for (int i = 0; i < MAX_DRIVES; i++) {
        if (!m->drives[i].used) {
            slot = &m->drives[i];
            break;
        }
    }
    if (!slot) {
        error_setg(errp, "too many drives");
        return -ENOSPC;
    }
    if (spec->id && find_drive(m, spec->id)) {
        error_setg(errp, "duplicate drive id '%s'", spec->id);
        return -EEXIST;
    }

    switch (spec->iface) {
    case DISK_IF_IDE:
        if (bus < 0 || unit < 0) {
            if (spec->index >= 0) {
                bus = spec->index / 2;
                unit = spec->index % 2;
            } else {
                /* First free slot, as QEMU does for drives without index. */
                for (int i = 0; i < 4 && bus < 0; i++) {
                    if (!ide_slot_used(m, i / 2, i % 2)) {
                        bus = i / 2;
                        unit = i % 2;
                    }
                }
                if (bus < 0) {
                    error_setg(errp, "no free IDE slot");
                    return -ENOSPC;
                }
            }
        }
        if (bus < 0 || bus > 1 || unit < 0 || unit > 1) {
            error_setg(errp, "IDE drive index out of range (bus %d, unit %d)",
                       bus, unit);
            return -EINVAL;
        }
        if (ide_slot_used(m, bus, unit)) {
            error_setg(errp, "IDE bus %d unit %d is already in use", bus, unit);
            return -EBUSY;
        }
        ret = ide_attach(m->ide, bus, unit, spec, blk, errp);
        if (ret < 0)
            return ret;
        slot->iface = DISK_IF_IDE;
        slot->bus = bus;
        slot->unit = unit;
        if (spec->id)
            snprintf(slot->id, sizeof(slot->id), "%s", spec->id);
        else
            snprintf(slot->id, sizeof(slot->id), "ide%d-%s%d", bus,
                     spec->media == DISK_MEDIA_CDROM ? "cd" : "hd", unit);
        slot->used = true;
        return 0;
    case DISK_IF_VIRTIO: {
        /* Like QEMU's -device without addr=: the first free slot. */
        int pci_slot = pci_bus_free_slot(m->pci, 2);
        if (pci_slot < 0) {
            error_setg(errp, "no free PCI slot for virtio-blk");
            return pci_slot;
        }
        slot->virtio = virtio_blk_pci_new(m, m->pci, pci_slot, spec, blk, errp);
        if (!slot->virtio)
            return -EINVAL;
        slot->iface = DISK_IF_VIRTIO;
        slot->bus = 0;
        slot->unit = pci_slot;
        if (spec->id)
            snprintf(slot->id, sizeof(slot->id), "%s", spec->id);
        else
            snprintf(slot->id, sizeof(slot->id), "virtio%d", spec->unit >= 0
                     ? spec->unit : pci_slot - 2);
        slot->used = true;
        return 0;
    }
    }
    error_setg(errp, "unknown drive interface");
    return -EINVAL;
}

int machine_detach_disk(struct machine *m, const char *id, struct error **errp)
{
    struct attached_drive *d = find_drive(m, id);

    if (!d) {
        error_setg(errp, "no drive with id '%s'", id);
        return -ENOENT;
    }
    if (d->iface == DISK_IF_IDE)
        ide_detach(m->ide, d->bus, d->unit);
    if (d->virtio)
        virtio_blk_pci_free(d->virtio);
    d->virtio = NULL;
    d->used = false;
    return 0;
}
