/*
 * hw/virtio-pci.c — the PCI transport of virtio-blk, laid out as QEMU 7.2's
 * transitional virtio-blk-pci: legacy registers in BAR0 (I/O), MSI-X table
 * and PBA in BAR1, the modern common/ISR/device/notify structures in the
 * 64-bit BAR4, and the capability chain that points at them. Interrupts go
 * out as INTx (through PIIX3 PIRQ routing) or MSI-X messages. The request
 * path itself lives in hw/virtio-blk-req.c.
 */
#include "hw/hw-int.h"
#include "hw/virtio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define VIRTIO_PCI_VENDOR       0x1af4
#define VIRTIO_PCI_DEVICE_BLK   0x1001      /* transitional block device */
#define VIRTIO_PCI_SUBSYS_BLK   0x0002
#define VIRTIO_PCI_CLASS        0x01000000  /* mass storage, SCSI; rev 0 */

#define LEGACY_BAR              0
#define MSIX_BAR                1
#define MODERN_BAR              4
#define LEGACY_SIZE             0x80
#define MSIX_BAR_SIZE           0x1000
#define MSIX_PBA_OFFSET         0x800
#define MODERN_SIZE             0x4000

/* Modern structures inside BAR4, each 4 KiB, and their capabilities. */
#define MODERN_COMMON           0x0000
#define MODERN_ISR              0x1000
#define MODERN_DEVICE           0x2000
#define MODERN_NOTIFY           0x3000
#define MODERN_REGION_SIZE      0x1000
#define NOTIFY_MULTIPLIER       4

#define VIRTIO_PCI_CAP_COMMON   1
#define VIRTIO_PCI_CAP_NOTIFY   2
#define VIRTIO_PCI_CAP_ISR      3
#define VIRTIO_PCI_CAP_DEVICE   4
#define VIRTIO_PCI_CAP_PCI_CFG  5
#define CAP_COMMON_OFF          0x40
#define CAP_ISR_OFF             0x50
#define CAP_DEVICE_OFF          0x60
#define CAP_NOTIFY_OFF          0x70
#define CAP_PCI_CFG_OFF         0x84
#define CAP_MSIX_OFF            0x98
#define PCI_CFG_DATA            (CAP_PCI_CFG_OFF + 16)

#define MSIX_CTRL               (CAP_MSIX_OFF + 2)
#define MSIX_CTRL_ENABLE        0x8000
#define MSIX_CTRL_MASKALL       0x4000
#define MSIX_ENTRY_SIZE         16
#define MSIX_ENTRY_MASKED       1
#define MSIX_MAX_VECTORS        (VBLK_MAX_QUEUES + 1)

/* Legacy register offsets (virtio 0.9.5 over I/O). */
#define VIRTIO_PCI_HOST_FEATURES    0x00
#define VIRTIO_PCI_GUEST_FEATURES   0x04
#define VIRTIO_PCI_QUEUE_PFN        0x08
#define VIRTIO_PCI_QUEUE_NUM        0x0c
#define VIRTIO_PCI_QUEUE_SEL        0x0e
#define VIRTIO_PCI_QUEUE_NOTIFY     0x10
#define VIRTIO_PCI_STATUS           0x12
#define VIRTIO_PCI_ISR              0x13
#define VIRTIO_MSI_CONFIG_VECTOR    0x14
#define VIRTIO_MSI_QUEUE_VECTOR     0x16
#define VIRTIO_PCI_LEGACY_ALIGN     4096
#define VIRTIO_QUEUE_SEL_MAX        1024

struct virtio_pci {
    struct pci_device pci;
    struct machine *m;
    struct vblk *vblk;
    struct virtio_mem mem;
    struct io_region legacy, msix, modern;

    uint8_t status;
    uint8_t isr;
    uint8_t config_generation;
    uint16_t queue_sel;
    uint16_t msix_config;
    uint32_t dfselect, gfselect;
    uint32_t guest_features[2];     /* modern gfeature words */
    unsigned nvectors;
    uint8_t msix_table[MSIX_MAX_VECTORS * MSIX_ENTRY_SIZE];
    uint32_t msix_pending;          /* PBA bits */
    uint16_t msix_ctrl_seen;        /* control word at the last write */
};

static bool msix_enabled(const struct virtio_pci *v)
{
    return pci_get_word(v->pci.config + MSIX_CTRL) & MSIX_CTRL_ENABLE;
}

/* ------------------------------------------------------------------ */
/* Interrupts                                                          */
/* ------------------------------------------------------------------ */

static void update_intx(struct virtio_pci *v)
{
    pci_set_irq(&v->pci, !msix_enabled(v) && (v->isr & 3));
}

static bool msix_vector_masked(const struct virtio_pci *v, unsigned vec)
{
    return (pci_get_word(v->pci.config + MSIX_CTRL) & MSIX_CTRL_MASKALL) ||
           (v->msix_table[vec * MSIX_ENTRY_SIZE + 12] & MSIX_ENTRY_MASKED);
}

static void msix_send(struct virtio_pci *v, unsigned vec)
{
    const uint8_t *e = v->msix_table + vec * MSIX_ENTRY_SIZE;
    uint64_t addr = pci_get_long(e) | (uint64_t)pci_get_long(e + 4) << 32;

    pci_msi_send(&v->pci, addr, pci_get_long(e + 8));
}

static void msix_notify(struct virtio_pci *v, uint16_t vec)
{
    if (vec >= v->nvectors)
        return;
    if (msix_vector_masked(v, vec)) {
        v->msix_pending |= 1u << vec;
        return;
    }
    msix_send(v, vec);
}

/* After an unmask: deliver what became pending while masked. */
static void msix_deliver_pending(struct virtio_pci *v)
{
    if (!msix_enabled(v))
        return;
    for (unsigned vec = 0; vec < v->nvectors; vec++) {
        if ((v->msix_pending & (1u << vec)) && !msix_vector_masked(v, vec)) {
            v->msix_pending &= ~(1u << vec);
            msix_send(v, vec);
        }
    }
}

static void notify_vector(struct virtio_pci *v, uint16_t vec)
{
    if (msix_enabled(v)) {
        if (vec != VIRTIO_NO_VECTOR)
            msix_notify(v, vec);
    } else {
        update_intx(v);
    }
}

static void vp_notify_queue(void *opaque, unsigned q)
{
    struct virtio_pci *v = opaque;

    v->isr |= 1;
    notify_vector(v, vblk_queue(v->vblk, q)->vector);
}

static void vp_notify_config(void *opaque)
{
    struct virtio_pci *v = opaque;

    v->config_generation++;
    /* A driver that is not running reads the config when it starts. */
    if (!(v->status & VIRTIO_STATUS_DRIVER_OK))
        return;
    v->isr |= 2;
    notify_vector(v, v->msix_config);
}

static void vp_needs_reset(void *opaque)
{
    struct virtio_pci *v = opaque;

    v->status |= VIRTIO_STATUS_NEEDS_RESET;
    vp_notify_config(v);
}

static const struct vblk_transport_ops vp_transport_ops = {
    .notify_queue = vp_notify_queue,
    .notify_config = vp_notify_config,
    .needs_reset = vp_needs_reset,
};

/* Guest RAM as the function's DMA sees it: nothing without bus mastering. */
static void *vp_map(void *opaque, uint64_t gpa, size_t len)
{
    struct virtio_pci *v = opaque;

    if (!pci_bus_master_enabled(&v->pci))
        return NULL;
    return machine_ram_ptr(v->m, gpa, len);
}

static void vp_reset(struct virtio_pci *v)
{
    vblk_reset(v->vblk);
    v->status = 0;
    v->isr = 0;
    v->queue_sel = 0;
    v->msix_config = VIRTIO_NO_VECTOR;
    v->dfselect = v->gfselect = 0;
    v->guest_features[0] = v->guest_features[1] = 0;
    v->config_generation = 0;
    update_intx(v);
}

static void set_status(struct virtio_pci *v, uint8_t val)
{
    if (val == 0) {
        vp_reset(v);
        return;
    }
    v->status = val;
}

static uint16_t checked_vector(const struct virtio_pci *v, uint32_t val)
{
    return val < v->nvectors ? (uint16_t)val : VIRTIO_NO_VECTOR;
}

static struct virtqueue *selected_queue(struct virtio_pci *v)
{
    return vblk_queue(v->vblk, v->queue_sel);
}

/* ------------------------------------------------------------------ */
/* Legacy interface (BAR0)                                             */
/* ------------------------------------------------------------------ */

static unsigned legacy_config_base(const struct virtio_pci *v)
{
    return msix_enabled(v) ? 0x18 : 0x14;
}

/* Registers answer by offset whatever the access width, as QEMU's do. */
static uint64_t legacy_read(void *opaque, uint64_t off, unsigned size)
{
    struct virtio_pci *v = opaque;
    struct virtqueue *vq = selected_queue(v);
    unsigned base = legacy_config_base(v);
    uint8_t isr;

    if (off >= base)
        return vblk_config_read(v->vblk, off - base, size);
    switch (off) {
    case VIRTIO_PCI_HOST_FEATURES:
        return (uint32_t)vblk_host_features(v->vblk);
    case VIRTIO_PCI_GUEST_FEATURES:
        return (uint32_t)vblk_guest_features(v->vblk);
    case VIRTIO_PCI_QUEUE_PFN:
        return vq ? vq->desc / VIRTIO_PCI_LEGACY_ALIGN : 0;
    case VIRTIO_PCI_QUEUE_NUM:
        return vq ? vq->num : 0;
    case VIRTIO_PCI_QUEUE_SEL:
        return v->queue_sel;
    case VIRTIO_PCI_STATUS:
        return v->status;
    case VIRTIO_PCI_ISR:
        isr = v->isr;
        v->isr = 0;
        update_intx(v);
        return isr;
    case VIRTIO_MSI_CONFIG_VECTOR:
        return v->msix_config;
    case VIRTIO_MSI_QUEUE_VECTOR:
        return vq ? vq->vector : VIRTIO_NO_VECTOR;
    }
    return 0;
}

static void legacy_write(void *opaque, uint64_t off, unsigned size,
                         uint64_t val)
{
    struct virtio_pci *v = opaque;
    struct virtqueue *vq = selected_queue(v);
    unsigned base = legacy_config_base(v);
    uint64_t pa;

    if (off >= base) {
        vblk_config_write(v->vblk, off - base, size, (uint32_t)val);
        return;
    }
    switch (off) {
    case VIRTIO_PCI_GUEST_FEATURES:
        vblk_set_guest_features(v->vblk, (uint32_t)val &
                                vblk_host_features(v->vblk));
        break;
    case VIRTIO_PCI_QUEUE_PFN:
        pa = (uint64_t)(uint32_t)val * VIRTIO_PCI_LEGACY_ALIGN;
        if (pa == 0) {
            vp_reset(v);            /* legacy drivers reset this way */
            break;
        }
        if (!vq)
            break;
        vq->desc = pa;
        vq->avail = pa + 16 * (uint64_t)vq->num;
        vq->used = (vq->avail + 4 + 2 * (uint64_t)vq->num +
                    VIRTIO_PCI_LEGACY_ALIGN - 1) & ~(uint64_t)(VIRTIO_PCI_LEGACY_ALIGN - 1);
        vq->ready = true;
        break;
    case VIRTIO_PCI_QUEUE_SEL:
        if (val < VIRTIO_QUEUE_SEL_MAX)
            v->queue_sel = (uint16_t)val;
        break;
    case VIRTIO_PCI_QUEUE_NOTIFY:
        vblk_kick(v->vblk, (uint16_t)val);
        break;
    case VIRTIO_PCI_STATUS:
        set_status(v, (uint8_t)val);
        break;
    case VIRTIO_MSI_CONFIG_VECTOR:
        v->msix_config = checked_vector(v, (uint16_t)val);
        break;
    case VIRTIO_MSI_QUEUE_VECTOR:
        if (vq)
            vq->vector = checked_vector(v, (uint16_t)val);
        break;
    }
}

/* ------------------------------------------------------------------ */
/* Modern interface (BAR4)                                             */
/* ------------------------------------------------------------------ */

static uint32_t common_read(struct virtio_pci *v, uint64_t off)
{
    struct virtqueue *vq = selected_queue(v);
    uint64_t host = vblk_host_features(v->vblk);

    switch (off) {
    case 0x00: return v->dfselect;
    case 0x04: return v->dfselect < 2 ? (uint32_t)(host >> (32 * v->dfselect)) : 0;
    case 0x08: return v->gfselect;
    case 0x0c: return v->gfselect < 2 ? v->guest_features[v->gfselect] : 0;
    case 0x10: return v->msix_config;
    case 0x12: return vblk_num_queues(v->vblk);
    case 0x14: return v->status;
    case 0x15: return v->config_generation;
    case 0x16: return v->queue_sel;
    case 0x18: return vq ? vq->num : 0;
    case 0x1a: return vq ? vq->vector : VIRTIO_NO_VECTOR;
    case 0x1c: return vq ? vq->ready : 0;
    case 0x1e: return vq ? v->queue_sel : 0;   /* notify_off: one slot per queue */
    case 0x20: return vq ? (uint32_t)vq->desc : 0;
    case 0x24: return vq ? (uint32_t)(vq->desc >> 32) : 0;
    case 0x28: return vq ? (uint32_t)vq->avail : 0;
    case 0x2c: return vq ? (uint32_t)(vq->avail >> 32) : 0;
    case 0x30: return vq ? (uint32_t)vq->used : 0;
    case 0x34: return vq ? (uint32_t)(vq->used >> 32) : 0;
    }
    return 0;
}

static void set_addr_half(uint64_t *a, bool high, uint32_t val)
{
    if (high)
        *a = (*a & 0xffffffffull) | (uint64_t)val << 32;
    else
        *a = (*a & ~0xffffffffull) | val;
}

static void common_write(struct virtio_pci *v, uint64_t off, uint32_t val)
{
    struct virtqueue *vq = selected_queue(v);

    switch (off) {
    case 0x00: v->dfselect = val; return;
    case 0x08: v->gfselect = val; return;
    case 0x0c:
        /* Features are fixed once the driver said FEATURES_OK. */
        if (v->gfselect < 2 && !(v->status & VIRTIO_STATUS_FEATURES_OK)) {
            v->guest_features[v->gfselect] = val;
            vblk_set_guest_features(v->vblk,
                ((uint64_t)v->guest_features[1] << 32 | v->guest_features[0]) &
                vblk_host_features(v->vblk));
        }
        return;
    case 0x10: v->msix_config = checked_vector(v, val & 0xffff); return;
    case 0x14: set_status(v, (uint8_t)val); return;
    case 0x16:
        if (val < VIRTIO_QUEUE_SEL_MAX)
            v->queue_sel = (uint16_t)val;
        return;
    }
    if (!vq)
        return;
    switch (off) {
    case 0x18:
        /* A split ring's size is a power of two: anything else (or a
         * resize of a live queue) leaves the size and stops the device. */
        val &= 0xffff;
        if (val == vq->num)
            break;
        if (!vq->ready && val && !(val & (val - 1)) && val <= VIRTQ_MAX_SIZE)
            vq->num = (uint16_t)val;
        else
            vblk_needs_reset(v->vblk);
        break;
    case 0x1a: vq->vector = checked_vector(v, val & 0xffff); break;
    case 0x1c:
        /* Only 1 may be written (virtio 1.1, 4.1.4.3.2); QEMU agrees. */
        if ((val & 0xffff) == 1)
            vq->ready = true;
        else
            vblk_needs_reset(v->vblk);
        break;
    case 0x20: set_addr_half(&vq->desc, false, val); break;
    case 0x24: set_addr_half(&vq->desc, true, val); break;
    case 0x28: set_addr_half(&vq->avail, false, val); break;
    case 0x2c: set_addr_half(&vq->avail, true, val); break;
    case 0x30: set_addr_half(&vq->used, false, val); break;
    case 0x34: set_addr_half(&vq->used, true, val); break;
    }
}

static uint64_t modern_read(void *opaque, uint64_t off, unsigned size)
{
    struct virtio_pci *v = opaque;
    uint64_t rel = off % MODERN_REGION_SIZE;
    uint8_t isr;

    switch (off / MODERN_REGION_SIZE) {
    case MODERN_COMMON / MODERN_REGION_SIZE:
        return common_read(v, rel);
    case MODERN_ISR / MODERN_REGION_SIZE:
        if (rel)
            return 0;
        isr = v->isr;
        v->isr = 0;
        update_intx(v);
        return isr;
    case MODERN_DEVICE / MODERN_REGION_SIZE:
        return vblk_config_read(v->vblk, rel, size);
    }
    return 0;
}

static void modern_write(void *opaque, uint64_t off, unsigned size,
                         uint64_t val)
{
    struct virtio_pci *v = opaque;
    uint64_t rel = off % MODERN_REGION_SIZE;

    switch (off / MODERN_REGION_SIZE) {
    case MODERN_COMMON / MODERN_REGION_SIZE:
        common_write(v, rel, (uint32_t)val);
        break;
    case MODERN_DEVICE / MODERN_REGION_SIZE:
        vblk_config_write(v->vblk, rel, size, (uint32_t)val);
        break;
    case MODERN_NOTIFY / MODERN_REGION_SIZE:
        /* The offset names the queue; the value does not matter. */
        vblk_kick(v->vblk, rel / NOTIFY_MULTIPLIER);
        break;
    }
}

/* ------------------------------------------------------------------ */
/* MSI-X table and PBA (BAR1)                                          */
/* ------------------------------------------------------------------ */

static uint64_t msix_read(void *opaque, uint64_t off, unsigned size)
{
    struct virtio_pci *v = opaque;
    uint64_t val = 0;

    for (unsigned i = 0; i < size; i++) {
        uint64_t o = off + i;
        uint8_t b = 0;
        if (o < v->nvectors * MSIX_ENTRY_SIZE)
            b = v->msix_table[o];
        else if (o >= MSIX_PBA_OFFSET && o < MSIX_PBA_OFFSET + 4)
            b = v->msix_pending >> (8 * (o - MSIX_PBA_OFFSET));
        val |= (uint64_t)b << (8 * i);
    }
    return val;
}

static void msix_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
    struct virtio_pci *v = opaque;

    for (unsigned i = 0; i < size; i++) {
        uint64_t o = off + i;
        if (o >= v->nvectors * MSIX_ENTRY_SIZE)
            continue;
        /* Only the mask bit of Vector Control is defined. */
        uint8_t b = (uint8_t)(val >> (8 * i));
        if (o % MSIX_ENTRY_SIZE >= 12)
            b = o % MSIX_ENTRY_SIZE == 12 ? (b & MSIX_ENTRY_MASKED) : 0;
        v->msix_table[o] = b;
    }
    msix_deliver_pending(v);
}

/* ------------------------------------------------------------------ */
/* PCI config hooks                                                    */
/* ------------------------------------------------------------------ */

/* The PCI_CFG capability's window into BAR4 (virtio 1.1, 4.1.4.7.1). */
static bool pci_cfg_window(struct virtio_pci *v, uint32_t *off, unsigned *len)
{
    const uint8_t *cap = v->pci.config + CAP_PCI_CFG_OFF;

    *off = pci_get_long(cap + 8);
    *len = pci_get_long(cap + 12);
    return cap[4] == MODERN_BAR && (*len == 1 || *len == 2 || *len == 4) &&
           *off < MODERN_SIZE && *off + *len <= MODERN_SIZE &&
           !(*off & (*len - 1));
}

static bool overlaps_cfg_data(uint32_t addr, unsigned len)
{
    return addr < PCI_CFG_DATA + 4 && PCI_CFG_DATA < addr + len;
}

static uint32_t vp_config_read(struct pci_device *d, uint32_t addr, unsigned len)
{
    struct virtio_pci *v = d->opaque;
    uint32_t off, v32 = 0;
    unsigned wlen;

    if (overlaps_cfg_data(addr, len) && pci_cfg_window(v, &off, &wlen))
        pci_set_long(d->config + PCI_CFG_DATA, (uint32_t)modern_read(v, off, wlen));
    for (unsigned i = 0; i < len && addr + i < 256; i++)
        v32 |= (uint32_t)d->config[addr + i] << (8 * i);
    return v32;
}

static void vp_config_written(struct pci_device *d, uint32_t addr, unsigned len)
{
    struct virtio_pci *v = d->opaque;
    uint16_t ctrl = pci_get_word(d->config + MSIX_CTRL);
    uint32_t off;
    unsigned wlen;

    if (overlaps_cfg_data(addr, len) && pci_cfg_window(v, &off, &wlen)) {
        uint32_t val = pci_get_long(d->config + PCI_CFG_DATA);
        modern_write(v, off, wlen, wlen == 4 ? val : val & ((1u << (8 * wlen)) - 1));
    }
    if (ctrl != v->msix_ctrl_seen) {
        v->msix_ctrl_seen = ctrl;
        update_intx(v);             /* MSI-X on: INTx is no longer used */
        msix_deliver_pending(v);
    }
}

static void vp_pci_reset(struct pci_device *d)
{
    struct virtio_pci *v = d->opaque;

    for (unsigned vec = 0; vec < MSIX_MAX_VECTORS; vec++) {
        memset(v->msix_table + vec * MSIX_ENTRY_SIZE, 0, MSIX_ENTRY_SIZE);
        v->msix_table[vec * MSIX_ENTRY_SIZE + 12] = MSIX_ENTRY_MASKED;
    }
    v->msix_pending = 0;
    v->msix_ctrl_seen = pci_get_word(d->config + MSIX_CTRL);
    vp_reset(v);
}

static const struct pci_device_ops vp_pci_ops = {
    .config_read = vp_config_read,
    .config_written = vp_config_written,
    .reset = vp_pci_reset,
};

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */
/* ------------------------------------------------------------------ */

static void add_vendor_cap(struct pci_device *d, uint8_t off, uint8_t len,
                           uint8_t type, uint8_t bar, uint32_t bar_off,
                           uint32_t bar_len)
{
    uint8_t *c = d->config + off;

    pci_add_capability(d, PCI_CAP_ID_VNDR, off, len);
    c[2] = len;
    c[3] = type;
    c[4] = bar;
    pci_set_long(c + 8, bar_off);
    pci_set_long(c + 12, bar_len);
}

static void init_config(struct virtio_pci *v)
{
    struct pci_device *d = &v->pci;
    uint8_t *c = d->config;

    pci_set_word(c + PCI_SUBSYSTEM_ID, VIRTIO_PCI_SUBSYS_BLK);
    c[PCI_INTERRUPT_PIN] = 1;

    pci_register_bar(d, LEGACY_BAR, PCI_BAR_IO, LEGACY_SIZE, &v->legacy);
    pci_register_bar(d, MSIX_BAR, PCI_BAR_MEM32, MSIX_BAR_SIZE, &v->msix);
    pci_register_bar(d, MODERN_BAR, PCI_BAR_MEM64 | PCI_BAR_PREFETCH,
                     MODERN_SIZE, &v->modern);

    /* Added in reverse so the chain reads 0x98 -> 0x84 -> ... -> 0x40. */
    add_vendor_cap(d, CAP_COMMON_OFF, 16, VIRTIO_PCI_CAP_COMMON, MODERN_BAR,
                   MODERN_COMMON, MODERN_REGION_SIZE);
    add_vendor_cap(d, CAP_ISR_OFF, 16, VIRTIO_PCI_CAP_ISR, MODERN_BAR,
                   MODERN_ISR, MODERN_REGION_SIZE);
    add_vendor_cap(d, CAP_DEVICE_OFF, 16, VIRTIO_PCI_CAP_DEVICE, MODERN_BAR,
                   MODERN_DEVICE, MODERN_REGION_SIZE);
    add_vendor_cap(d, CAP_NOTIFY_OFF, 20, VIRTIO_PCI_CAP_NOTIFY, MODERN_BAR,
                   MODERN_NOTIFY, MODERN_REGION_SIZE);
    pci_set_long(c + CAP_NOTIFY_OFF + 16, NOTIFY_MULTIPLIER);
    add_vendor_cap(d, CAP_PCI_CFG_OFF, 20, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 0);
    /* The guest picks the window: bar, offset, length and data. */
    d->wmask[CAP_PCI_CFG_OFF + 4] = 0xff;
    memset(d->wmask + CAP_PCI_CFG_OFF + 8, 0xff, 12);

    pci_add_capability(d, PCI_CAP_ID_MSIX, CAP_MSIX_OFF, 12);
    pci_set_word(c + MSIX_CTRL, (uint16_t)(v->nvectors - 1));
    pci_set_long(c + CAP_MSIX_OFF + 4, MSIX_BAR);             /* table */
    pci_set_long(c + CAP_MSIX_OFF + 8, MSIX_PBA_OFFSET | MSIX_BAR);
    pci_set_word(d->wmask + MSIX_CTRL, MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL);
}

struct virtio_pci *virtio_blk_pci_new(struct machine *m, struct pci_bus *bus,
                                      int slot, const struct disk_spec *spec,
                                      struct blk_backend *blk,
                                      struct error **errp)
{
    struct virtio_pci *v = calloc(1, sizeof(*v));
    unsigned nq = spec->num_queues ? spec->num_queues : 1;
    int ret;

    if (!blk) {
        free(v);
        error_setg(errp, "virtio-blk needs a block backend");
        return NULL;
    }
    if (!v) {
        error_setg_errno(errp, ENOMEM, "virtio-blk");
        return NULL;
    }
    v->m = m;
    v->nvectors = nq + 1;       /* one per queue and one for config, as QEMU */
    v->mem = (struct virtio_mem){ .map = vp_map, .opaque = v };
    struct vblk_config cfg = {
        .blk = blk, .serial = spec->serial, .num_queues = nq,
        .mem = &v->mem, .ops = &vp_transport_ops, .opaque = v,
    };
    v->vblk = vblk_new(machine_event_loop(m), &cfg, errp);
    if (!v->vblk)
        goto out_free;

    v->legacy = (struct io_region){ .name = "virtio-pci-legacy",
        .read = legacy_read, .write = legacy_write, .opaque = v,
        .size = LEGACY_SIZE };
    v->msix = (struct io_region){ .name = "virtio-pci-msix",
        .read = msix_read, .write = msix_write, .opaque = v,
        .size = MSIX_BAR_SIZE, .max_access = 4 };
    v->modern = (struct io_region){ .name = "virtio-pci-modern",
        .read = modern_read, .write = modern_write, .opaque = v,
        .size = MODERN_SIZE, .max_access = 4 };

    pci_device_init(&v->pci, bus, PCI_DEVFN(slot, 0), VIRTIO_PCI_VENDOR,
                    VIRTIO_PCI_DEVICE_BLK, VIRTIO_PCI_CLASS, &vp_pci_ops, v);
    init_config(v);
    ret = pci_device_realize(&v->pci);
    if (ret < 0) {
        error_setg(errp, "PCI slot %d is already in use", slot);
        goto out_free_vblk;
    }
    vp_pci_reset(&v->pci);
    return v;

out_free_vblk:
    vblk_free(v->vblk);
out_free:
    free(v);
    return NULL;
}

void virtio_blk_pci_free(struct virtio_pci *v)
{
    if (!v)
        return;
    pci_device_unrealize(&v->pci);
    vblk_free(v->vblk);
    free(v);
}
