/*
 * hw/piix.c — the i440FX host bridge (00:00.0) and the PIIX3 PCI-to-ISA
 * bridge (00:01.0), whose PIRQRC registers (0x60-0x63) route PCI INTx to
 * ISA IRQs, i.e. IOAPIC GSIs 0-15. Power-on bytes are QEMU 7.2's.
 */
#include "hw/hw-int.h"

#include <stdlib.h>
#include <string.h>

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
                    0x06000002, NULL, c);
    c->host.config[0x57] = 0x10;        /* DRAMC */
    c->host.config[0x72] = 0x02;        /* SMRAM */
    pci_device_realize(&c->host);

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
