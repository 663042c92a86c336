/*
 * tests/unit/test-hw-pci.c — the PCI side of the machine: config space of
 * the three chipset functions as QEMU 7.2 shows them, mechanism #1 corner
 * cases, BAR sizing and mapping on the COMMAND bits, and (with a test
 * function on hw/hw-int.h's PCI API, the one virtio-blk builds on) 64-bit
 * and MMIO BARs, capabilities, INTx through PIIX3 PIRQ routing and MSI.
 */
#include "tests/unit/hw-test.h"
#include "hw/hw-int.h"

static struct hwt T;

static void setup(void)
{
    hwt_init(&T);
}

static void teardown(void)
{
    hwt_fini(&T);
}

/* Dwords 0x00-0x3c and the non-zero device registers, observed on
 * qemu-system-x86_64 7.2 -machine pc -nodefaults. */
static const uint32_t host_cfg[16] = {
    0x12378086, 0, 0x06000002, 0, 0, 0, 0, 0, 0, 0, 0, 0x11001af4, 0, 0, 0, 0,
};
static const uint32_t isa_cfg[16] = {
    0x70008086, 0x02000000, 0x06010000, 0x00800000, 0, 0, 0, 0, 0, 0, 0,
    0x11001af4, 0, 0, 0, 0,
};
static const uint32_t ide_cfg[16] = {
    0x70108086, 0x02800000, 0x01018000, 0, 0, 0, 0, 0, 0x00000001, 0, 0,
    0x11001af4, 0, 0, 0, 0,
};

START_TEST(config_space_values)
{
    for (int i = 0; i < 16; i++) {
        ck_assert_uint_eq(hwt_cfg_read(&T, 0, 0, 4 * i, 4), host_cfg[i]);
        ck_assert_uint_eq(hwt_cfg_read(&T, 1, 0, 4 * i, 4), isa_cfg[i]);
        ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 4 * i, 4), ide_cfg[i]);
    }
    ck_assert_uint_eq(hwt_cfg_read(&T, 0, 0, 0x54, 4), 0x10000000);
    ck_assert_uint_eq(hwt_cfg_read(&T, 0, 0, 0x70, 4), 0x00020000);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 0, 0x4c, 4), 0x0003004d);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 0, 0x60, 4), 0x80808080);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 0, 0x74, 4), 0x0c0c0000);
    /* sub-dword accesses at 0xcfc + n */
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 0x00, 2), 0x8086);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 0x02, 2), 0x7010);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 0x0a, 1), 0x01);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 0x0b, 1), 0x01);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 0, 0x0e, 1), 0x80);
}
END_TEST

START_TEST(absent_functions_and_mechanism)
{
    ck_assert_uint_eq(hwt_cfg_read(&T, 0, 1, 0, 4), 0xffffffff);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 2, 0, 4), 0xffffffff);
    ck_assert_uint_eq(hwt_cfg_read(&T, 2, 0, 0, 4), 0xffffffff);
    ck_assert_uint_eq(hwt_cfg_read(&T, 31, 7, 0, 2), 0xffff);
    /* writes to absent functions vanish */
    hwt_cfg_write(&T, 5, 0, 0x04, 2, 0x0007);
    ck_assert_uint_eq(hwt_cfg_read(&T, 5, 0, 0x04, 2), 0xffff);
    /* bus 1 does not exist */
    outl(&T, 0xcf8, 0x80010000);
    ck_assert_uint_eq(inl(&T, 0xcfc), 0xffffffff);
    /* enable bit clear */
    outl(&T, 0xcf8, 0x00000000);
    ck_assert_uint_eq(inl(&T, 0xcfc), 0xffffffff);
    ck_assert_uint_eq(inl(&T, 0xcf8), 0x00000000);
    /* the address register is dword-only; low bits OR into the offset */
    outl(&T, 0xcf8, 0x80000001);
    ck_assert_uint_eq(inl(&T, 0xcf8), 0x80000001);
    ck_assert_uint_eq(inl(&T, 0xcfc), 0x00123780);
    ck_assert_uint_eq(inb(&T, 0xcf8), 0);
    ck_assert_uint_eq(inw(&T, 0xcf8), 0);
    outb(&T, 0xcf8, 0x55);
    ck_assert_uint_eq(inl(&T, 0xcf8), 0x80000001);
    /* access running off the end of config space */
    outl(&T, 0xcf8, 0x800000fc);
    ck_assert_uint_eq(inl(&T, 0xcfc), 0);
    outl(&T, 0xcf8, 0x80000000);
    ck_assert_uint_eq(inw(&T, 0xcfe), 0x1237);
    ck_assert_uint_eq(inb(&T, 0xcff), 0x12);
}
END_TEST

START_TEST(write_masks)
{
    /* IDs, class and header are read-only */
    hwt_cfg_write(&T, 1, 1, 0x00, 4, 0);
    hwt_cfg_write(&T, 1, 1, 0x08, 4, 0);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 0x00, 4), 0x70108086);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 0x08, 4), 0x01018000);
    /* COMMAND: only I/O, memory, master, SERR, INTx-disable bits stick */
    hwt_cfg_write(&T, 1, 1, 0x04, 2, 0xffff);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 0x04, 2), 0x0507);
    /* STATUS: plain bits are read-only */
    hwt_cfg_write(&T, 1, 1, 0x06, 2, 0xffff);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 0x06, 2), 0x0280);
    /* interrupt line is writable, pin is not */
    hwt_cfg_write(&T, 1, 1, 0x3c, 2, 0xffff);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 0x3c, 2), 0x00ff);
    /* BAR0-3 are hard-wired to 0 */
    hwt_cfg_write(&T, 1, 1, 0x10, 4, 0xffffffff);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 0x10, 4), 0);
    /* machine reset restores power-on bytes */
    hwt_cfg_write(&T, 1, 0, 0x60, 1, 0x0b);
    machine_reset(T.m);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 0x04, 2), 0x0000);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 0x3c, 1), 0x00);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 0, 0x60, 1), 0x80);
}
END_TEST

START_TEST(bar_sizing_and_mapping)
{
    hwt_cfg_write(&T, 1, 1, 0x20, 4, 0xffffffff);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 0x20, 4), 0xfffffff1);
    hwt_cfg_write(&T, 1, 1, 0x20, 4, 0xc040);
    ck_assert_uint_eq(hwt_cfg_read(&T, 1, 1, 0x20, 4), 0xc041);
    /* not decoded until COMMAND.IO */
    ck_assert_uint_eq(inb(&T, 0xc041), 0xff);
    ck_assert_uint_eq(inl(&T, 0xc044), 0xffffffff);
    hwt_cfg_write(&T, 1, 1, 0x04, 2, 0x0001);
    outl(&T, 0xc044, 0x1234);
    ck_assert_uint_eq(inl(&T, 0xc044), 0x1234);
    ck_assert_uint_eq(inb(&T, 0xc041), 0xff);
    ck_assert_uint_eq(inb(&T, 0xc040), 0x00);
    /* moving the BAR moves the registers */
    hwt_cfg_write(&T, 1, 1, 0x20, 4, 0xd000);
    ck_assert_uint_eq(inl(&T, 0xc044), 0xffffffff);
    ck_assert_uint_eq(inl(&T, 0xd004), 0x1234);
    /* decode off again */
    hwt_cfg_write(&T, 1, 1, 0x04, 2, 0x0000);
    ck_assert_uint_eq(inl(&T, 0xd004), 0xffffffff);
    /* address 0 is never mapped */
    hwt_cfg_write(&T, 1, 1, 0x20, 4, 0);
    hwt_cfg_write(&T, 1, 1, 0x04, 2, 0x0001);
    ck_assert_uint_eq(inl(&T, 0x0004), 0xffffffff);
}
END_TEST

START_TEST(unassigned_and_ram)
{
    uint8_t buf[16];

    ck_assert_uint_eq(inb(&T, 0x80), 0xff);
    ck_assert_uint_eq(inw(&T, 0x80), 0xffff);
    ck_assert_uint_eq(inl(&T, 0x80), 0xffffffff);
    outl(&T, 0x80, 0);
    /* unassigned memory reads zero, as in QEMU */
    ck_assert_uint_eq(hwt_readl(&T, 0x10000000), 0);
    ck_assert_uint_eq(hwt_readl(&T, 0xfebf0000), 0);
    hwt_writel(&T, 0x10000000, 0x12345678);
    ck_assert_uint_eq(hwt_readl(&T, 0x10000000), 0);
    /* RAM up to its end; an access across the end is split */
    uint64_t end = machine_ram_size(T.m);
    ck_assert_uint_eq(end, 128u << 20);
    memset(buf, 0xab, sizeof(buf));
    ck_assert_int_eq(machine_mem_write(T.m, end - 8, buf, 16), 0);
    memset(buf, 0, sizeof(buf));
    ck_assert_int_eq(machine_mem_read(T.m, end - 8, buf, 16), 0);
    ck_assert_uint_eq(buf[7], 0xab);
    ck_assert_uint_eq(buf[8], 0x00);
    /* wrapping the address space */
    ck_assert_int_eq(machine_mem_read(T.m, UINT64_MAX - 3, buf, 8), -EFAULT);
    ck_assert_int_eq(machine_mem_write(T.m, UINT64_MAX, buf, 2), -EFAULT);
    /* bad access sizes */
    ck_assert_uint_eq(machine_pio_read(T.m, 0x1f7, 3), 0xffffffff);
}
END_TEST

/* The BIOS window is ROM until the i440FX's PAM registers map RAM there;
 * DMA helpers see the same mapping (ROM: -EFAULT, so nothing lands). */
START_TEST(bios_window_pam)
{
    uint32_t v = 0x11223344, r = 0xdeadbeef;
    uint8_t buf[8];

    machine_mem_write(T.m, 0xc0000, &v, 4);
    machine_mem_read(T.m, 0xc0000, &r, 4);
    ck_assert_uint_eq(r, 0);
    machine_mem_write(T.m, 0xbfffe, &v, 4);     /* straddles RAM and ROM */
    machine_mem_read(T.m, 0xbfffe, &r, 4);
    ck_assert_uint_eq(r, 0x3344);
    ck_assert_int_eq(machine_dma_write(T.m, 0xffff8, buf, 8), -EFAULT);
    ck_assert_int_eq(machine_dma_read(T.m, 0xf0000, buf, 8), -EFAULT);
    ck_assert_ptr_null(machine_ram_ptr(T.m, 0xbf000, 0x2000));
    ck_assert_ptr_nonnull(machine_ram_ptr(T.m, 0xbf000, 0x1000));

    /* 0x5a low nibble = 0xc0000-0xc3fff: RE (RAM both ways, as QEMU's
     * qtest and DMA see it), high nibble 0xc4000: WE only. */
    hwt_cfg_write(&T, 0, 0, 0x5a, 1, 0x21);
    machine_mem_write(T.m, 0xc0000, &v, 4);
    machine_mem_read(T.m, 0xc0000, &r, 4);
    ck_assert_uint_eq(r, v);
    machine_mem_write(T.m, 0xc4000, &v, 4);
    machine_mem_read(T.m, 0xc4000, &r, 4);
    ck_assert_uint_eq(r, 0);
    ck_assert_int_eq(machine_dma_write(T.m, 0xc4000, &v, 4), 0);
    ck_assert_int_eq(machine_dma_read(T.m, 0xc4000, buf, 4), -EFAULT);
    ck_assert_ptr_null(machine_ram_ptr(T.m, 0xc3000, 0x2000));
    ck_assert_ptr_nonnull(machine_ram_ptr(T.m, 0xbf000, 0x5000));
    hwt_cfg_write(&T, 0, 0, 0x5a, 1, 0x33);
    machine_mem_read(T.m, 0xc4000, &r, 4);
    ck_assert_uint_eq(r, v);                    /* the WE-only write landed */
    ck_assert_ptr_nonnull(machine_ram_ptr(T.m, 0xbf000, 0x9000));

    /* System reset puts the ROM back; the RAM keeps its bytes. */
    machine_reset(T.m);
    ck_assert_uint_eq(hwt_cfg_read(&T, 0, 0, 0x58, 4), 0);
    machine_mem_read(T.m, 0xc0000, &r, 4);
    ck_assert_uint_eq(r, 0);
    hwt_cfg_write(&T, 0, 0, 0x5a, 1, 0x03);
    machine_mem_read(T.m, 0xc0000, &r, 4);
    ck_assert_uint_eq(r, v);
    /* 0x59 bits 5:4: 0xf0000-0xfffff */
    hwt_cfg_write(&T, 0, 0, 0x59, 1, 0x30);
    ck_assert_int_eq(machine_dma_write(T.m, 0xffff8, buf, 8), 0);
}
END_TEST

START_TEST(ram_config)
{
    struct error *err = NULL;
    struct machine_config cfg = { .ram_size = 4096 };
    ck_assert_ptr_null(machine_new(T.loop, &cfg, &err));
    ck_assert_ptr_nonnull(err);
    error_free(err);
    err = NULL;
    /* above 3.5 GiB, RAM continues at 4 GiB */
    cfg.ram_size = 4ull << 30;
    struct machine *m = machine_new(T.loop, &cfg, &err);
    ck_assert_ptr_nonnull(m);
    uint8_t b = 0x42, r = 0;
    ck_assert_int_eq(machine_mem_write(m, 0x100000000ull + 100, &b, 1), 0);
    ck_assert_int_eq(machine_mem_read(m, 0x100000000ull + 100, &r, 1), 0);
    ck_assert_uint_eq(r, 0x42);
    ck_assert_int_eq(machine_mem_write(m, 0xe0000000ull + 100, &b, 1), 0);
    ck_assert_int_eq(machine_mem_read(m, 0xe0000000ull + 100, &r, 1), 0);
    ck_assert_uint_eq(r, 0);
    machine_free(m);
}
END_TEST

/* A test function at 00:05.0 with an I/O BAR, a 64-bit MMIO BAR, an
 * MSI-like capability and INTA. */
struct testdev {
    struct pci_device pci;
    struct io_region io, mem;
    uint32_t reg[16];
};

static uint64_t td_read(void *opaque, uint64_t off, unsigned size)
{
    struct testdev *d = opaque;
    return d->reg[(off / 4) % 16] >> (8 * (off % 4));
}

static void td_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
    struct testdev *d = opaque;
    d->reg[(off / 4) % 16] = val;
}

static void testdev_init(struct testdev *d)
{
    memset(d, 0, sizeof(*d));
    d->io = (struct io_region){ .name = "td-io", .read = td_read, .write = td_write,
                                .opaque = d, .size = 0x40 };
    d->mem = (struct io_region){ .name = "td-mem", .read = td_read, .write = td_write,
                                 .opaque = d, .size = 0x4000, .max_access = 8 };
}

START_TEST(device_api)
{
    static struct testdev d;
    struct pci_bus *bus = machine_pci_bus(T.m);

    testdev_init(&d);
    ck_assert_int_eq(pci_bus_free_slot(bus, 2), 2);
    pci_device_init(&d.pci, bus, PCI_DEVFN(2, 0), 0x1af4, 0x1001, 0x01000000,
                    NULL, &d);
    d.pci.config[PCI_INTERRUPT_PIN] = 1;
    pci_register_bar(&d.pci, 0, PCI_BAR_IO, 0x40, &d.io);
    pci_register_bar(&d.pci, 4, PCI_BAR_MEM64 | PCI_BAR_PREFETCH, 0x4000, &d.mem);
    ck_assert_uint_eq(pci_add_capability(&d.pci, PCI_CAP_ID_MSI, 0x40, 14), 0x40);
    ck_assert_uint_eq(pci_add_capability(&d.pci, PCI_CAP_ID_VNDR, 0x50, 16), 0x50);
    ck_assert_int_eq(pci_device_realize(&d.pci), 0);
    ck_assert_int_eq(pci_bus_free_slot(bus, 2), 3);
    ck_assert_int_eq(pci_device_realize(&d.pci), -EBUSY);
    ck_assert_uint_eq(hwt_cfg_read(&T, 2, 0, 0, 4), 0x10011af4);

    /* probes through mechanism #1 */
    hwt_cfg_write(&T, 2, 0, 0x10, 4, 0xffffffff);
    ck_assert_uint_eq(hwt_cfg_read(&T, 2, 0, 0x10, 4), 0xffffffc1);
    hwt_cfg_write(&T, 2, 0, 0x20, 4, 0xffffffff);
    hwt_cfg_write(&T, 2, 0, 0x24, 4, 0xffffffff);
    ck_assert_uint_eq(hwt_cfg_read(&T, 2, 0, 0x20, 4), 0xffffc00c);
    ck_assert_uint_eq(hwt_cfg_read(&T, 2, 0, 0x24, 4), 0xffffffff);
    /* capability list, read-only */
    ck_assert_uint_eq(hwt_cfg_read(&T, 2, 0, PCI_STATUS, 2) & 0x10, 0x10);
    ck_assert_uint_eq(hwt_cfg_read(&T, 2, 0, PCI_CAPABILITY_LIST, 1), 0x50);
    ck_assert_uint_eq(hwt_cfg_read(&T, 2, 0, 0x51, 1), 0x40);
    ck_assert_uint_eq(hwt_cfg_read(&T, 2, 0, 0x41, 1), 0x00);
    hwt_cfg_write(&T, 2, 0, 0x50, 4, 0);
    ck_assert_uint_eq(hwt_cfg_read(&T, 2, 0, 0x50, 1), PCI_CAP_ID_VNDR);

    /* 64-bit BAR above 4 GiB */
    hwt_cfg_write(&T, 2, 0, 0x20, 4, 0x0000000c);
    hwt_cfg_write(&T, 2, 0, 0x24, 4, 0x00000008);
    hwt_cfg_write(&T, 2, 0, 0x10, 4, 0xc100);
    hwt_cfg_write(&T, 2, 0, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    ck_assert_uint_eq(d.pci.bars[4].addr, 0x800000000ull);
    uint64_t q = 0x1122334455667788ull, r = 0;
    ck_assert_int_eq(machine_mem_write(T.m, 0x800000008ull, &q, 8), 0);
    ck_assert_int_eq(machine_mem_read(T.m, 0x800000008ull, &r, 8), 0);
    ck_assert_uint_eq(d.reg[2], 0x1122334455667788ull & 0xffffffff);
    outl(&T, 0xc104, 0xabcd);
    ck_assert_uint_eq(inl(&T, 0xc104), 0xabcd);
    /* 32-bit placement of the same BAR */
    hwt_cfg_write(&T, 2, 0, 0x24, 4, 0);
    hwt_cfg_write(&T, 2, 0, 0x20, 4, 0xfe000000);
    ck_assert_uint_eq(d.pci.bars[4].addr, 0xfe000000ull);
    ck_assert_uint_eq(hwt_readl(&T, 0xfe000004), 0xabcd);
    hwt_cfg_write(&T, 2, 0, PCI_COMMAND, 2, 0);
    ck_assert_uint_eq(hwt_readl(&T, 0xfe000004), 0);

    /* MSI needs bus mastering */
    pci_msi_send(&d.pci, 0xfee00000, 0x4021);
    ck_assert_int_eq(T.msis, 0);
    hwt_cfg_write(&T, 2, 0, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    pci_msi_send(&d.pci, 0xfee01000, 0x4022);
    ck_assert_int_eq(T.msis, 1);
    ck_assert_uint_eq(T.msi_addr, 0xfee01000);
    ck_assert_uint_eq(T.msi_data, 0x4022);

    /* INTA of slot 2 goes to PIRQB: routed nowhere until 0x61 says */
    pci_set_irq(&d.pci, true);
    ck_assert_uint_eq(hwt_cfg_read(&T, 2, 0, PCI_STATUS, 2) & 0x08, 0x08);
    ck_assert(!T.level[11]);
    hwt_cfg_write(&T, 1, 0, 0x61, 1, 0x0b);
    ck_assert(T.level[11]);
    /* PIRQA does not carry it */
    hwt_cfg_write(&T, 1, 0, 0x60, 1, 0x0a);
    ck_assert(!T.level[10]);
    /* INTx disable masks the pin */
    hwt_cfg_write(&T, 2, 0, PCI_COMMAND, 2, 0x0400);
    ck_assert(!T.level[11]);
    hwt_cfg_write(&T, 2, 0, PCI_COMMAND, 2, 0x0000);
    ck_assert(T.level[11]);
    /* rerouting moves the level */
    hwt_cfg_write(&T, 1, 0, 0x61, 1, 0x05);
    ck_assert(!T.level[11]);
    ck_assert(T.level[5]);
    pci_set_irq(&d.pci, false);
    ck_assert(!T.level[5]);
    ck_assert_uint_eq(hwt_cfg_read(&T, 2, 0, PCI_STATUS, 2) & 0x08, 0);
    pci_set_irq(&d.pci, true);
    hwt_cfg_write(&T, 1, 0, 0x61, 1, 0x85);     /* disabled */
    ck_assert(!T.level[5]);
    hwt_cfg_write(&T, 1, 0, 0x61, 1, 0x0e);     /* shares IDE's IRQ 14 */
    ck_assert(T.level[14]);
    /* reset drops INTx and the routing */
    machine_reset(T.m);
    ck_assert(!T.level[14]);
    ck_assert_uint_eq(hwt_cfg_read(&T, 2, 0, 0x20, 4), 0x0000000c);

    pci_device_unrealize(&d.pci);
    ck_assert_uint_eq(hwt_cfg_read(&T, 2, 0, 0, 4), 0xffffffff);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("hw-pci");
    TCase *tc = tcase_create("pci");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, config_space_values);
    tcase_add_test(tc, absent_functions_and_mechanism);
    tcase_add_test(tc, write_masks);
    tcase_add_test(tc, bar_sizing_and_mapping);
    tcase_add_test(tc, unassigned_and_ram);
    tcase_add_test(tc, ram_config);
    tcase_add_test(tc, bios_window_pam);
    tcase_add_test(tc, device_api);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
