/*
 * hw/pci.c — PCI bus 0 behind configuration mechanism #1 (0xcf8/0xcfc):
 * config space per function with write and write-1-to-clear masks, BAR
 * sizing and mapping on the COMMAND decode bits, INTx, bus mastering and
 * MSI. Address rules follow QEMU's pci core so BAR probes read the same.
 */
#include "hw/hw-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_ADDR_PORT    0xcf8
#define CONFIG_DATA_PORT    0xcfc
#define CONFIG_ENABLE       0x80000000u

struct pci_bus {
    struct machine *m;
    struct pci_device *devs[256];
    uint32_t config_addr;
    pci_intx_route_fn *route;
    void *route_opaque;
    struct io_region addr_region, data_region;
};

struct machine *pci_bus_machine(struct pci_bus *bus)
{
    return bus->m;
}

/* ------------------------------------------------------------------ */
/* Config space                                                        */
/* ------------------------------------------------------------------ */

static uint16_t pci_command(const struct pci_device *d)
{
    return pci_get_word(d->config + PCI_COMMAND);
}

/* Where BAR n should be mapped now, or PCI_BAR_UNMAPPED (QEMU's rules). */
static uint64_t bar_address(const struct pci_device *d, int n)
{
    const struct pci_bar *b = &d->bars[n];
    const uint8_t *reg = d->config + PCI_BASE_ADDRESS_0 + 4 * n;
    uint16_t cmd = pci_command(d);
    uint64_t addr, last;

    if (b->type & PCI_BAR_IO) {
        if (!(cmd & PCI_COMMAND_IO))
            return PCI_BAR_UNMAPPED;
        addr = pci_get_long(reg) & ~(b->size - 1);
        last = addr + b->size - 1;
        if (last <= addr || last >= UINT32_MAX || addr == 0)
            return PCI_BAR_UNMAPPED;
        return addr;
    }
    if (!(cmd & PCI_COMMAND_MEMORY))
        return PCI_BAR_UNMAPPED;
    addr = pci_get_long(reg);
    if (b->type & PCI_BAR_MEM64)
        addr |= (uint64_t)pci_get_long(reg + 4) << 32;
    addr &= ~(b->size - 1);
    last = addr + b->size - 1;
    if (last <= addr || last == PCI_BAR_UNMAPPED || addr == 0)
        return PCI_BAR_UNMAPPED;
    if (!(b->type & PCI_BAR_MEM64) && last >= UINT32_MAX)
        return PCI_BAR_UNMAPPED;
    return addr;
}

static void update_mappings(struct pci_device *d)
{
    struct machine *m = d->bus->m;

    for (int n = 0; n < 6; n++) {
        struct pci_bar *b = &d->bars[n];
        uint64_t addr;

        if (!b->size || !b->region)
            continue;
        addr = d->realized ? bar_address(d, n) : PCI_BAR_UNMAPPED;
        if (addr == b->addr)
            continue;
        machine_io_unmap(m, b->region);
        b->addr = addr;
        if (addr != PCI_BAR_UNMAPPED) {
            b->region->priority = 1;
            machine_io_map(m, (b->type & PCI_BAR_IO) ? IO_SPACE_PIO : IO_SPACE_MMIO,
                           b->region, addr);
        }
    }
}

/* The level on the function's pin as the bus sees it. */
static bool intx_out(const struct pci_device *d)
{
    return d->intx_level && !(pci_command(d) & PCI_COMMAND_INTX_DISABLE);
}

static void route_intx(struct pci_device *d, bool level)
{
    int pin = d->config[PCI_INTERRUPT_PIN];

    if (pin && d->bus->route)
        d->bus->route(d->bus->route_opaque, d, pin - 1, level);
}

uint32_t pci_config_read(struct pci_device *d, uint32_t addr, unsigned len)
{
    uint32_t v = 0;

    if (d->ops && d->ops->config_read)
        return d->ops->config_read(d, addr, len);
    for (unsigned i = 0; i < len && addr + i < 256; i++)
        v |= (uint32_t)d->config[addr + i] << (8 * i);
    return v;
}

static bool overlaps(uint32_t a, unsigned len, uint32_t b, unsigned blen)
{
    return a < b + blen && b < a + len;
}

void pci_config_write(struct pci_device *d, uint32_t addr, uint32_t val,
                      unsigned len)
{
    bool irq_before = intx_out(d);
    uint32_t v = val;

    for (unsigned i = 0; i < len && addr + i < 256; i++, v >>= 8) {
        uint8_t wm = d->wmask[addr + i], w1c = d->w1cmask[addr + i];
        d->config[addr + i] = (d->config[addr + i] & ~wm) | (v & wm);
        d->config[addr + i] &= ~(v & w1c);
    }
    if (overlaps(addr, len, PCI_BASE_ADDRESS_0, 24) ||
        overlaps(addr, len, PCI_COMMAND, 1))
        update_mappings(d);
    if (overlaps(addr, len, PCI_COMMAND, 2) && intx_out(d) != irq_before)
        route_intx(d, intx_out(d));
    if (d->ops && d->ops->config_written)
        d->ops->config_written(d, addr, len);
}

/* ------------------------------------------------------------------ */
/* Mechanism #1                                                        */
/* ------------------------------------------------------------------ */

static uint64_t cfg_addr_read(void *opaque, uint64_t off, unsigned size)
{
    struct pci_bus *bus = opaque;

    /* Only whole-register reads see the address (QEMU reads 0 else). */
    return (off == 0 && size == 4) ? bus->config_addr : 0;
}

static void cfg_addr_write(void *opaque, uint64_t off, unsigned size,
                           uint64_t val)
{
    struct pci_bus *bus = opaque;

    if (off == 0 && size == 4)
        bus->config_addr = (uint32_t)val;
}

/* The function and register the address register plus port offset name. */
static struct pci_device *cfg_target(struct pci_bus *bus, uint64_t off,
                                     uint32_t *reg)
{
    uint32_t a = bus->config_addr | (uint32_t)off;

    if (!(bus->config_addr & CONFIG_ENABLE) || ((a >> 16) & 0xff) != 0)
        return NULL;
    *reg = a & 0xff;
    return bus->devs[(a >> 8) & 0xff];
}

static uint64_t cfg_data_read(void *opaque, uint64_t off, unsigned size)
{
    uint32_t reg;
    struct pci_device *d = cfg_target(opaque, off, &reg);

    if (!d)
        return UINT32_MAX;
    return pci_config_read(d, reg, MIN(size, 256 - reg));
}

static void cfg_data_write(void *opaque, uint64_t off, unsigned size,
                           uint64_t val)
{
    uint32_t reg;
    struct pci_device *d = cfg_target(opaque, off, &reg);

    if (d)
        pci_config_write(d, reg, (uint32_t)val, MIN(size, 256 - reg));
}

struct pci_bus *pci_bus_new(struct machine *m)
{
    struct pci_bus *bus = calloc(1, sizeof(*bus));

    if (!bus)
        return NULL;
    bus->m = m;
    bus->addr_region = (struct io_region){
        .name = "pci-conf-idx", .read = cfg_addr_read, .write = cfg_addr_write,
        .opaque = bus, .size = 4,
    };
    bus->data_region = (struct io_region){
        .name = "pci-conf-data", .read = cfg_data_read, .write = cfg_data_write,
        .opaque = bus, .size = 4,
    };
    machine_io_map(m, IO_SPACE_PIO, &bus->addr_region, CONFIG_ADDR_PORT);
    machine_io_map(m, IO_SPACE_PIO, &bus->data_region, CONFIG_DATA_PORT);
    return bus;
}

void pci_bus_free(struct pci_bus *bus)
{
    if (!bus)
        return;
    for (int i = 0; i < 256; i++) {
        if (bus->devs[i])
            pci_device_unrealize(bus->devs[i]);
    }
    machine_io_unmap(bus->m, &bus->addr_region);
    machine_io_unmap(bus->m, &bus->data_region);
    free(bus);
}

void pci_bus_set_intx_route(struct pci_bus *bus, pci_intx_route_fn *fn,
                            void *opaque)
{
    bus->route = fn;
    bus->route_opaque = opaque;
}

int pci_bus_free_slot(struct pci_bus *bus, int first)
{
    for (int slot = first; slot < 32; slot++) {
        if (!bus->devs[PCI_DEVFN(slot, 0)])
            return slot;
    }
    return -ENOSPC;
}

static void device_reset(struct pci_device *d)
{
    bool was = intx_out(d);

    memcpy(d->config, d->reset_config, sizeof(d->config));
    d->intx_level = false;
    if (was)
        route_intx(d, false);
    update_mappings(d);
    if (d->ops && d->ops->reset)
        d->ops->reset(d);
}

void pci_bus_reset(struct pci_bus *bus)
{
    bus->config_addr = 0;
    for (int i = 0; i < 256; i++) {
        if (bus->devs[i])
            device_reset(bus->devs[i]);
    }
}

/* ------------------------------------------------------------------ */
/* Devices                                                             */
/* ------------------------------------------------------------------ */

void pci_device_init(struct pci_device *d, struct pci_bus *bus, uint8_t devfn,
                     uint16_t vendor, uint16_t device, uint32_t class_rev,
                     const struct pci_device_ops *ops, void *opaque)
{
    memset(d, 0, sizeof(*d));
    d->bus = bus;
    d->devfn = devfn;
    d->ops = ops;
    d->opaque = opaque;
    pci_set_word(d->config + PCI_VENDOR_ID, vendor);
    pci_set_word(d->config + PCI_DEVICE_ID, device);
    pci_set_long(d->config + PCI_REVISION_ID, class_rev);
    /* Every QEMU device carries the Red Hat/Qumranet subsystem IDs. */
    pci_set_word(d->config + PCI_SUBSYSTEM_VENDOR_ID, 0x1af4);
    pci_set_word(d->config + PCI_SUBSYSTEM_ID, 0x1100);

    d->wmask[0x0c] = 0xff;                      /* cache line size */
    d->wmask[PCI_INTERRUPT_LINE] = 0xff;
    pci_set_word(d->wmask + PCI_COMMAND,
                 PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
                 PCI_COMMAND_INTX_DISABLE | PCI_COMMAND_SERR);
    /* parity, target/master aborts, system error, detected parity */
    pci_set_word(d->w1cmask + PCI_STATUS, 0xf900);
    memset(d->wmask + 0x40, 0xff, 256 - 0x40);
    for (int n = 0; n < 6; n++)
        d->bars[n].addr = PCI_BAR_UNMAPPED;
}

int pci_device_realize(struct pci_device *d)
{
    if (d->bus->devs[d->devfn])
        return -EBUSY;
    memcpy(d->reset_config, d->config, sizeof(d->config));
    d->bus->devs[d->devfn] = d;
    d->realized = true;
    return 0;
}

void pci_device_unrealize(struct pci_device *d)
{
    if (!d->realized)
        return;
    if (intx_out(d))
        route_intx(d, false);
    d->intx_level = false;
    d->realized = false;
    update_mappings(d);
    d->bus->devs[d->devfn] = NULL;
}

void pci_register_bar(struct pci_device *d, int n, uint8_t type,
                      uint64_t size, struct io_region *region)
{
    uint8_t *reg = d->config + PCI_BASE_ADDRESS_0 + 4 * n;
    uint64_t mask = ~(size - 1);

    d->bars[n] = (struct pci_bar){ .size = size, .type = type,
                                   .region = region, .addr = PCI_BAR_UNMAPPED };
    pci_set_long(reg, type);
    pci_set_long(d->wmask + PCI_BASE_ADDRESS_0 + 4 * n,
                 (uint32_t)mask & ((type & PCI_BAR_IO) ? ~3u : ~15u));
    if (type & PCI_BAR_MEM64) {
        pci_set_long(reg + 4, 0);
        pci_set_long(d->wmask + PCI_BASE_ADDRESS_0 + 4 * (n + 1),
                     (uint32_t)(mask >> 32));
    }
}

uint8_t pci_add_capability(struct pci_device *d, uint8_t id, uint8_t offset,
                           uint8_t size)
{
    d->config[offset] = id;
    d->config[offset + 1] = d->config[PCI_CAPABILITY_LIST];
    d->config[PCI_CAPABILITY_LIST] = offset;
    d->config[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
    memset(d->wmask + offset, 0, size);
    return offset;
}

void pci_set_irq(struct pci_device *d, bool level)
{
    bool before = intx_out(d);

    d->intx_level = level;
    if (level)
        d->config[PCI_STATUS] |= PCI_STATUS_INTERRUPT;
    else
        d->config[PCI_STATUS] &= ~PCI_STATUS_INTERRUPT;
    if (intx_out(d) != before)
        route_intx(d, intx_out(d));
}

bool pci_bus_master_enabled(const struct pci_device *d)
{
    return pci_command(d) & PCI_COMMAND_MASTER;
}

void pci_msi_send(struct pci_device *d, uint64_t addr, uint32_t data)
{
    if (pci_bus_master_enabled(d))
        machine_msi_write(d->bus->m, addr, data);
}
