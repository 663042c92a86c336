/*
 * hw/piix.c — the i440FX host bridge (00:00.0), whose PAM registers
 * (0x59-0x5f) decide where the BIOS window shows RAM, and the PIIX3
 * PCI-to-ISA bridge (00:01.0), whose PIRQRC registers (0x60-0x63) route
 * PCI INTx to ISA IRQs, i.e. IOAPIC GSIs 0-15. Power-on bytes are QEMU 7.2's.
 */
#include "hw/hw-int.h"

#include <stdlib.h>
#include <string.h>

#define I440FX_PAM          0x59    /* PAM0-6: 0x59 high nibble, then two per byte */
#define I440FX_PAM_END      0x60
#define PIIX_PIRQRC         0x60
#define PIIX_NUM_PIRQ       4
#define PIRQ_DISABLED       0x80
#define NUM_ISA_IRQ         16

struct piix_chipset {
    struct machine *m;
    struct pci_device host;         /* 00:00.0 */
    struct pci_device isa;          /* 00:01.0 */
    unsigned pirq_count[PIIX_NUM_PIRQ];     /* functions asserting each PIRQ */
    struct irq_line isa_irq[NUM_ISA_IRQ];
};

/* ISA IRQ levels from the PIRQ levels and the routing registers. */
static void piix_update_irqs(struct piix_chipset *c)
{
    bool level[NUM_ISA_IRQ] = { false };

    for (int p = 0; p < PIIX_NUM_PIRQ; p++) {
        uint8_t r = c->isa.config[PIIX_PIRQRC + p];
        if (!(r & PIRQ_DISABLED) && c->pirq_count[p])
            level[r & 0x0f] = true;
    }
    for (int i = 0; i < NUM_ISA_IRQ; i++)
        irq_line_set(&c->isa_irq[i], level[i]);
}

/* INTx of slot S pin P drives PIRQ (P + S - 1) mod 4, as on QEMU's pc. */
static void piix_route_intx(void *opaque, struct pci_device *d, int pin,
                            bool level)
{
    struct piix_chipset *c = opaque;
    int pirq = (pin + (d->devfn >> 3) - 1) & 3;

    if (level)
        c->pirq_count[pirq]++;
    else if (c->pirq_count[pirq])
        c->pirq_count[pirq]--;
    piix_update_irqs(c);
}

/*
 * Machine access bits for a PAM nibble. Bit 0 (RE) maps reads to RAM, bit 1
 * (WE) writes. With RE alone a real chipset drops writes, but QEMU 7.2
 * enforces that read-only mapping for its CPU only: qtest writes and DMA
 * reach the RAM (observed). diskdm has no CPU, so RE means RAM both ways.
 */
static unsigned pam_access(unsigned nibble)
{
    if (nibble & 1)
        return MACHINE_PAM_READ | MACHINE_PAM_WRITE;
    return nibble & 2 ? MACHINE_PAM_WRITE : 0;
}

/*
 * The i440FX's PAM registers map the BIOS window (0xc0000-0xfffff) to RAM
 * or to the ROM per segment: 0x59 bits 5:4 hold 0xf0000-0xfffff, then
 * 0x5a low nibble 0xc0000, 0x5a high nibble 0xc4000, and so on up to
 * 0x5f's high nibble (0xec000).
 */
static void host_update_pam(struct piix_chipset *c)
{
    const uint8_t *cfg = c->host.config;

    machine_set_pam(c->m, 0, pam_access((cfg[I440FX_PAM] >> 4) & 3));
    for (unsigned seg = 1; seg < MACHINE_PAM_SEGMENTS; seg++) {
        uint8_t b = cfg[I440FX_PAM + 1 + (seg - 1) / 2];
        machine_set_pam(c->m, seg, pam_access((seg & 1 ? b : b >> 4) & 3));
    }
}

static void host_config_written(struct pci_device *d, uint32_t addr,
                                unsigned len)
{
    if (addr < I440FX_PAM_END && addr + len > I440FX_PAM)
        host_update_pam(d->opaque);
}

static void host_reset(struct pci_device *d)
{
    host_update_pam(d->opaque);
}

static const struct pci_device_ops host_ops = {
    .config_written = host_config_written,
    .reset = host_reset,
};

static void isa_config_written(struct pci_device *d, uint32_t addr, unsigned len)
{
    if (addr < PIIX_PIRQRC + PIIX_NUM_PIRQ && addr + len > PIIX_PIRQRC)
        piix_update_irqs(d->opaque);
}

static void isa_reset(struct pci_device *d)
{
    piix_update_irqs(d->opaque);
}

static const struct pci_device_ops isa_ops = {
    .config_written = isa_config_written,
    .reset = isa_reset,
};

struct piix_chipset *piix_chipset_new(struct machine *m, struct pci_bus *bus)
{
    struct piix_chipset *c = calloc(1, sizeof(*c));
    uint8_t *cfg;

    if (!c)
        return NULL;
    c->m = m;
    for (int i = 0; i < NUM_ISA_IRQ; i++)
        machine_irq_line_init(m, &c->isa_irq[i], i);

    pci_device_init(&c->host, bus, PCI_DEVFN(0, 0), 0x8086, 0x1237,
                    0x06000002, &host_ops, c);
    c->host.config[0x57] = 0x10;        /* DRAMC */
    c->host.config[0x72] = 0x02;        /* SMRAM */
    pci_device_realize(&c->host);
    host_update_pam(c);

    pci_device_init(&c->isa, bus, PCI_DEVFN(1, 0), 0x8086, 0x7000,
                    0x06010000, &isa_ops, c);
    cfg = c->isa.config;
    cfg[PCI_HEADER_TYPE] = 0x80;        /* multi-function */
    pci_set_word(cfg + PCI_STATUS, 0x0200);
    cfg[0x4c] = 0x4d;                   /* IORT */
    cfg[0x4e] = 0x03;                   /* XBCS */
    memset(cfg + PIIX_PIRQRC, PIRQ_DISABLED, PIIX_NUM_PIRQ);
    cfg[0x69] = 0x02;                   /* TOM */
    cfg[0x70] = 0x80;                   /* MBIRQ0 */
    cfg[0x76] = 0x0c;                   /* MBDMA0 */
    cfg[0x77] = 0x0c;                   /* MBDMA1 */
    cfg[0x78] = 0x02;                   /* PCSC */
    cfg[0xa0] = 0x08;                   /* SMIEN */
    cfg[0xa8] = 0x0f;                   /* APMC... */
    pci_device_realize(&c->isa);

    pci_bus_set_intx_route(bus, piix_route_intx, c);
    return c;
}

void piix_chipset_free(struct piix_chipset *c)
{
    if (!c)
        return;
    pci_device_unrealize(&c->isa);
    pci_device_unrealize(&c->host);
    for (int i = 0; i < NUM_ISA_IRQ; i++)
        machine_irq_line_destroy(&c->isa_irq[i]);
    free(c);
}
