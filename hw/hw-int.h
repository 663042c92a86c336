/*
 * hw/hw-int.h — the machine's private API, shared by the files in hw/:
 * I/O regions and their dispatch, guest-memory DMA helpers, IRQ lines,
 * and the PCI bus that devices (PIIX3 IDE, virtio-blk) register on.
 * Nothing outside hw/ includes this header.
 */
#ifndef DISKDM_HW_INT_H
#define DISKDM_HW_INT_H

#include "hw/hw.h"

/* ------------------------------------------------------------------ */
/* I/O regions (hw/machine.c)                                          */
/* ------------------------------------------------------------------ */

enum io_space { IO_SPACE_PIO, IO_SPACE_MMIO };

/*
 * A device's window in port I/O or guest-physical space. The device owns
 * the struct (usually embedded in its state) and keeps it alive while it is
 * mapped. `read` and `write` get the offset from the region's base and the
 * access size (1, 2, 4 or, for MMIO with max_access 8, 8); an access that
 * crosses the region's end is split by the dispatcher, so the callbacks
 * always see off + size <= size of the region. Reads return the value in
 * the low `size` bytes.
 */
struct io_region {
    const char *name;
    uint64_t (*read)(void *opaque, uint64_t off, unsigned size);
    void (*write)(void *opaque, uint64_t off, unsigned size, uint64_t val);
    void *opaque;
    uint64_t size;
    unsigned max_access;    /* MMIO: widest access passed whole (0 = 4) */
    int priority;           /* higher wins where mappings overlap (PCI BARs: 1) */
    /* Set by machine_io_map; read-only for devices. */
    uint64_t base;
    bool mapped;
    enum io_space space;
    unsigned long seq;      /* mapping order, later wins among equals */
};

/* Map `r` at `base` (remapping if already mapped); unmap is idempotent. */
int machine_io_map(struct machine *m, enum io_space space, struct io_region *r,
                   uint64_t base);
void machine_io_unmap(struct machine *m, struct io_region *r);

/* ------------------------------------------------------------------ */
/* Guest memory for devices (DMA)                                      */
/* ------------------------------------------------------------------ */

/*
 * DMA helpers touch guest RAM only: 0, or -EFAULT (and nothing copied) when
 * any byte of [addr, addr+len) lies outside RAM. Devices turn -EFAULT into
 * their controller's error status.
 */
int machine_dma_read(struct machine *m, uint64_t addr, void *buf, size_t len);
int machine_dma_write(struct machine *m, uint64_t addr, const void *buf,
                      size_t len);
/* A host pointer for [addr, addr+len) when it lies wholly in one RAM block,
 * else NULL. For zero-copy iovecs; valid while the machine lives. */
void *machine_ram_ptr(struct machine *m, uint64_t addr, size_t len);

/*
 * The BIOS window 0xc0000-0xfffff, as the i440FX's PAM registers map it:
 * segment 0 is 0xf0000-0xfffff, segments 1-12 the 16 KiB pieces from
 * 0xc0000. Per segment, MACHINE_PAM_READ makes reads see RAM and
 * MACHINE_PAM_WRITE lets writes reach it; otherwise the access goes to
 * the ROM, which reads zero and drops writes (guest and DMA alike). At
 * power-on every segment is ROM. Set by hw/piix.c.
 */
#define MACHINE_PAM_SEGMENTS    13
#define MACHINE_PAM_READ        1u
#define MACHINE_PAM_WRITE       2u
void machine_set_pam(struct machine *m, unsigned seg, unsigned mode);

struct event_loop *machine_event_loop(struct machine *m);
/* The machine's PCI bus 0 (for devices such as virtio-blk to register). */
struct pci_bus *machine_pci_bus(struct machine *m);

/* ------------------------------------------------------------------ */
/* IRQ lines (hw/machine.c)                                            */
/* ------------------------------------------------------------------ */

/*
 * One driver of an IOAPIC input. Several lines may drive the same GSI (a
 * PCI interrupt routed to IRQ 14 next to IDE): the GSI's level is the OR of
 * its lines. The observer sees changes of that OR only.
 */
struct irq_line {
    struct machine *m;
    int gsi;                /* -1: not connected */
    bool level;
    struct irq_line *next;  /* machine's list */
};

void machine_irq_line_init(struct machine *m, struct irq_line *l, int gsi);
void machine_irq_line_destroy(struct irq_line *l);
void irq_line_set(struct irq_line *l, bool level);
/* Like irq_line_set, but the observer hears of it even when the level
 * does not change: for devices whose QEMU model sets its pin on every
 * event (the IDE channel lowers INTRQ on every command write), which
 * QEMU's qtest reports once set_irq_in has moved the pin meanwhile. */
void irq_line_drive(struct irq_line *l, bool level);
/* Move a line to another GSI (PIRQ routing), keeping its level. */
void irq_line_connect(struct irq_line *l, int gsi);

/* A guest moved a tray (see machine_set_tray_observer): tell the owner. */
void machine_tray_moved(struct machine *m, struct blk_backend *blk, bool open);

/* Deliver an MSI: a 32-bit write of `data` to `addr` (0xfee00000 window). */
void machine_msi_write(struct machine *m, uint64_t addr, uint32_t data);

/* ------------------------------------------------------------------ */
/* PCI (hw/pci.c)                                                      */
/* ------------------------------------------------------------------ */

#define PCI_VENDOR_ID           0x00
#define PCI_DEVICE_ID           0x02
#define PCI_COMMAND             0x04
#define  PCI_COMMAND_IO         0x0001
#define  PCI_COMMAND_MEMORY     0x0002
#define  PCI_COMMAND_MASTER     0x0004
#define  PCI_COMMAND_SERR       0x0100
#define  PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS              0x06
#define  PCI_STATUS_INTERRUPT   0x0008
#define  PCI_STATUS_CAP_LIST    0x0010
#define PCI_REVISION_ID         0x08
#define PCI_CLASS_PROG          0x09
#define PCI_CLASS_DEVICE        0x0a
#define PCI_HEADER_TYPE         0x0e
#define PCI_BASE_ADDRESS_0      0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID        0x2e
#define PCI_CAPABILITY_LIST     0x34
#define PCI_INTERRUPT_LINE      0x3c
#define PCI_INTERRUPT_PIN       0x3d

/* BAR type bits, as they appear in the BAR's low bits. */
#define PCI_BAR_IO              0x01
#define PCI_BAR_MEM32           0x00
#define PCI_BAR_MEM64           0x04
#define PCI_BAR_PREFETCH        0x08

#define PCI_CAP_ID_MSI          0x05
#define PCI_CAP_ID_VNDR         0x09
#define PCI_CAP_ID_MSIX         0x11

#define PCI_BAR_UNMAPPED        UINT64_MAX
#define PCI_DEVFN(slot, fn)     ((uint8_t)(((slot) << 3) | (fn)))

struct pci_bus;
struct pci_device;

/* Optional per-device hooks; all called on the loop thread. */
struct pci_device_ops {
    /* After the default config write of [addr, addr+len) (masks applied,
     * BARs remapped). For side effects such as PIRQ routing. */
    void (*config_written)(struct pci_device *d, uint32_t addr, unsigned len);
    /* Replace the default config read (e.g. live registers); NULL = bytes. */
    uint32_t (*config_read)(struct pci_device *d, uint32_t addr, unsigned len);
    /* System reset, after config space went back to its power-on bytes
     * and BARs were unmapped. */
    void (*reset)(struct pci_device *d);
};

struct pci_bar {
    uint64_t size;          /* 0 = no BAR; power of two */
    uint8_t type;           /* PCI_BAR_* */
    struct io_region *region;
    uint64_t addr;          /* where it is mapped, PCI_BAR_UNMAPPED if not */
};

/*
 * A PCI function. Devices embed it and fill config[] between
 * pci_device_init and pci_device_realize; realize snapshots the config
 * bytes as the power-on state and puts the function on the bus.
 */
struct pci_device {
    struct pci_bus *bus;
    uint8_t devfn;
    uint8_t config[256];
    uint8_t wmask[256];         /* guest-writable bits */
    uint8_t w1cmask[256];       /* write-1-to-clear bits */
    uint8_t reset_config[256];  /* power-on bytes */
    struct pci_bar bars[6];
    const struct pci_device_ops *ops;
    void *opaque;
    bool intx_level;            /* what the device asserts on its pin */
    bool realized;
};

/* Bus with the config mechanism #1 ports (0xcf8/0xcfc). INTx of a
 * function goes to `route(opaque, slot, pin, level)`; pin 0 = INTA. */
typedef void pci_intx_route_fn(void *opaque, struct pci_device *d, int pin,
                               bool level);
struct pci_bus *pci_bus_new(struct machine *m);
void pci_bus_free(struct pci_bus *bus);
void pci_bus_set_intx_route(struct pci_bus *bus, pci_intx_route_fn *fn,
                            void *opaque);
void pci_bus_reset(struct pci_bus *bus);
/* Lowest free slot >= `first` with function 0 free, or -ENOSPC. */
int pci_bus_free_slot(struct pci_bus *bus, int first);
struct machine *pci_bus_machine(struct pci_bus *bus);

/* Default masks, IDs and class; header type 0. */
void pci_device_init(struct pci_device *d, struct pci_bus *bus, uint8_t devfn,
                     uint16_t vendor, uint16_t device, uint32_t class_rev,
                     const struct pci_device_ops *ops, void *opaque);
/* -EBUSY if the devfn is taken. */
int pci_device_realize(struct pci_device *d);
/* Unmaps BARs, drops INTx, leaves the bus. */
void pci_device_unrealize(struct pci_device *d);

/* Declare BAR n (n+1 too for 64-bit) of `size` bytes served by `region`. */
void pci_register_bar(struct pci_device *d, int n, uint8_t type,
                      uint64_t size, struct io_region *region);
/* Add a capability of `size` bytes at `offset` (read-only to the guest
 * unless the device opens wmask bytes); returns offset. */
uint8_t pci_add_capability(struct pci_device *d, uint8_t id, uint8_t offset,
                           uint8_t size);

uint32_t pci_config_read(struct pci_device *d, uint32_t addr, unsigned len);
void pci_config_write(struct pci_device *d, uint32_t addr, uint32_t val,
                      unsigned len);

/* INTx on the function's interrupt pin (masked by COMMAND.INTX_DISABLE). */
void pci_set_irq(struct pci_device *d, bool level);
bool pci_bus_master_enabled(const struct pci_device *d);
/* MSI: a memory write by the function; dropped without bus mastering. */
void pci_msi_send(struct pci_device *d, uint64_t addr, uint32_t data);

static inline uint16_t pci_get_word(const uint8_t *p) { return p[0] | p[1] << 8; }
static inline uint32_t pci_get_long(const uint8_t *p)
{
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void pci_set_word(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static inline void pci_set_long(uint8_t *p, uint32_t v)
{
    p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}

/* ------------------------------------------------------------------ */
/* Chipset and devices                                                 */
/* ------------------------------------------------------------------ */

/* hw/piix.c: i440FX at 00:00.0, PIIX3 ISA at 00:01.0 (PIRQ routing). */
struct piix_chipset;
struct piix_chipset *piix_chipset_new(struct machine *m, struct pci_bus *bus);
void piix_chipset_free(struct piix_chipset *c);

/* hw/ide-core.c: PIIX3 IDE at 00:01.1 with both legacy channels. */
struct ide_controller;
struct ide_controller *ide_controller_new(struct machine *m,
                                          struct pci_bus *bus);
void ide_controller_free(struct ide_controller *c);
void ide_controller_reset(struct ide_controller *c);
/* Attach to bus 0/1, unit 0/1. -EBUSY slot taken. */
int ide_attach(struct ide_controller *c, int bus, int unit,
               const struct disk_spec *spec, struct blk_backend *blk,
               struct error **errp);
int ide_detach(struct ide_controller *c, int bus, int unit);

/* hw/virtio-pci.c: a transitional virtio-blk-pci function at `slot`.0
 * (spec: serial, num_queues). Free drains its requests in flight. */
struct virtio_pci;
struct virtio_pci *virtio_blk_pci_new(struct machine *m, struct pci_bus *bus,
                                      int slot, const struct disk_spec *spec,
                                      struct blk_backend *blk,
                                      struct error **errp);
void virtio_blk_pci_free(struct virtio_pci *v);

#endif
