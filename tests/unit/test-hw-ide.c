/*
 * tests/unit/test-hw-ide.c — the IDE hard disk through its registers only:
 * reset values, IDENTIFY, PIO and DMA reads and writes on both channels,
 * multiple mode, LBA48, errors, hostile PRD tables, soft reset, nIEN, and
 * read-only disks whose image must not change by a single byte.
 */
#include "tests/unit/hw-test.h"

#define IMG_SECTORS 8192
#define IMG_SIZE    (IMG_SECTORS * 512)
#define PRD_ADDR    0x1000
#define BUF_ADDR    0x100000

static const uint16_t cmd_base[2] = { 0x1f0, 0x170 };
static const uint16_t ctl_base[2] = { 0x3f6, 0x376 };

static struct hwt T;

static void setup(void)
{
    hwt_init(&T);
}

static void teardown(void)
{
    hwt_fini(&T);
}

static uint8_t alt(int bus)
{
    return inb(&T, ctl_base[bus]);
}

/* Issue an LBA28 command to drive `unit` of `bus`. */
static void ata_cmd(int bus, int unit, uint32_t lba, uint8_t count, uint8_t cmd)
{
    uint16_t b = cmd_base[bus];
    outb(&T, b + 6, 0xe0 | unit << 4 | ((lba >> 24) & 0x0f));
    outb(&T, b + 2, count);
    outb(&T, b + 3, lba);
    outb(&T, b + 4, lba >> 8);
    outb(&T, b + 5, lba >> 16);
    outb(&T, b + 7, cmd);
}

static void wait_not_busy(int bus)
{
    hwt_wait(&T, !(alt(bus) & 0x80));
}

/* Read `n` PIO blocks of `sectors_per_block` sectors into buf. */
static void pio_read(int bus, uint8_t *buf, int sectors, int per_block)
{
    for (int s = 0; s < sectors; s += per_block) {
        wait_not_busy(bus);
        /* reading the status acknowledges the interrupt */
        ck_assert_int_eq(inb(&T, cmd_base[bus] + 7), 0x58);
        for (int i = 0; i < MIN(per_block, sectors - s) * 256; i++) {
            uint16_t w = inw(&T, cmd_base[bus]);
            buf[(s * 512) + 2 * i] = w;
            buf[(s * 512) + 2 * i + 1] = w >> 8;
        }
    }
}

static void check_pattern(const uint8_t *buf, uint64_t off, size_t len)
{
    for (size_t i = 0; i < len; i++)
        ck_assert_msg(buf[i] == hwt_pat(off + i), "byte %zu: %02x != %02x",
                      i, buf[i], hwt_pat(off + i));
}

START_TEST(reset_registers)
{
    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    /* master present */
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x00);
    ck_assert_uint_eq(inb(&T, 0x1f2), 0x01);
    ck_assert_uint_eq(inb(&T, 0x1f3), 0x01);
    ck_assert_uint_eq(inb(&T, 0x1f4), 0x00);
    ck_assert_uint_eq(inb(&T, 0x1f5), 0x00);
    ck_assert_uint_eq(inb(&T, 0x1f6), 0xa0);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    ck_assert_uint_eq(inw(&T, 0x1f1), 0x0100);
    ck_assert_uint_eq(inl(&T, 0x1f4), 0xffffffff);
    ck_assert_uint_eq(inb(&T, 0x1f0), 0x00);      /* a word access, no DRQ */
    ck_assert_uint_eq(inw(&T, 0x1f0), 0x0000);
    ck_assert_uint_eq(inw(&T, 0x3f6), 0xff50);
    /* missing slave: error/status 0, signature 0xff/0xff */
    outb(&T, 0x1f6, 0xb0);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x00);
    ck_assert_uint_eq(inb(&T, 0x1f4), 0xff);
    ck_assert_uint_eq(inb(&T, 0x1f5), 0xff);
    ck_assert_uint_eq(inb(&T, 0x1f6), 0xb0);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x00);
    ck_assert_uint_eq(inb(&T, 0x3f6), 0x00);
    /* commands to the missing slave are ignored */
    outb(&T, 0x1f7, 0xec);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x00);
    ck_assert_int_eq(T.raises[14], 0);
    /* empty secondary channel reads 0 everywhere */
    for (int r = 1; r < 8; r++)
        ck_assert_uint_eq(inb(&T, 0x170 + r), 0);
    /* a command to an empty channel aborts with an interrupt, as in QEMU,
     * but the registers still read 0 */
    outb(&T, 0x177, 0xec);
    ck_assert_uint_eq(inb(&T, 0x177), 0);
    ck_assert_int_eq(T.raises[15], 1);
}
END_TEST

static void identify_check(int bus, int unit, const char *serial)
{
    uint16_t id[256];
    char str[41];

    outb(&T, cmd_base[bus] + 6, 0xa0 | unit << 4);
    int before = T.raises[14 + bus];
    outb(&T, cmd_base[bus] + 7, 0xec);
    /* IDENTIFY completes synchronously: IRQ and DRQ at once */
    ck_assert_int_eq(T.raises[14 + bus], before + 1);
    ck_assert_uint_eq(alt(bus), 0x58);
    for (int i = 0; i < 256; i++)
        id[i] = inw(&T, cmd_base[bus]);
    ck_assert_uint_eq(inb(&T, cmd_base[bus] + 7), 0x50);
    ck_assert(!T.level[14 + bus]);
    ck_assert_uint_eq(inw(&T, cmd_base[bus]), 0);  /* DRQ clear again */

    ck_assert_uint_eq(id[0], 0x0040);
    ck_assert_uint_eq(id[1], 8);        /* cylinders for 4 MiB */
    ck_assert_uint_eq(id[3], 16);
    ck_assert_uint_eq(id[6], 63);
    for (int i = 0; i < 10; i++) {
        str[2 * i] = id[10 + i] >> 8;
        str[2 * i + 1] = id[10 + i];
    }
    str[20] = 0;
    ck_assert_str_eq(str, serial);
    for (int i = 0; i < 4; i++) {
        str[2 * i] = id[23 + i] >> 8;
        str[2 * i + 1] = id[23 + i];
    }
    str[8] = 0;
    ck_assert_str_eq(str, "2.5+    ");
    for (int i = 0; i < 20; i++) {
        str[2 * i] = id[27 + i] >> 8;
        str[2 * i + 1] = id[27 + i];
    }
    str[40] = 0;
    ck_assert_str_eq(str, "QEMU HARDDISK                           ");
    ck_assert_uint_eq(id[47], 0x8010);
    ck_assert_uint_eq(id[49], 0x0b00);
    ck_assert_uint_eq(id[57] | id[58] << 16, 8 * 16 * 63);
    ck_assert_uint_eq(id[59], 0x0110);
    ck_assert_uint_eq(id[60] | id[61] << 16, IMG_SECTORS);
    ck_assert_uint_eq(id[83], 0x7400);
    ck_assert_uint_eq(id[85], 0x4021);
    ck_assert_uint_eq(id[88], 0x203f);
    ck_assert_uint_eq(id[93], 0x6001);
    ck_assert_uint_eq(id[100], IMG_SECTORS);
    ck_assert_uint_eq(id[169], 1);
}

START_TEST(identify_all_slots)
{
    for (int i = 0; i < 4; i++)
        hwt_attach(&T, i, false, IMG_SIZE, NULL);
    identify_check(0, 0, "QM00001             ");
    identify_check(0, 1, "QM00002             ");
    identify_check(1, 0, "QM00003             ");
    identify_check(1, 1, "QM00004             ");
}
END_TEST

/* IDENTIFY's capacity words, read as the guest does. */
static uint64_t identify_sectors(int bus, int unit, uint32_t *lba28)
{
    uint16_t id[256];

    outb(&T, cmd_base[bus] + 6, 0xa0 | unit << 4);
    outb(&T, cmd_base[bus] + 7, 0xec);
    ck_assert_uint_eq(alt(bus), 0x58);
    for (int i = 0; i < 256; i++)
        id[i] = inw(&T, cmd_base[bus]);
    ck_assert_uint_eq(inb(&T, cmd_base[bus] + 7), 0x50);
    *lba28 = id[60] | (uint32_t)id[61] << 16;
    ck_assert_uint_eq(id[1], 8);        /* CHS geometry stays as it was */
    return id[100] | (uint64_t)id[101] << 16 | (uint64_t)id[102] << 32 |
           (uint64_t)id[103] << 48;
}

/* A disk grown while the guest runs (blk_truncate): IDENTIFY, already seen
 * once, reports the new size, and the new sectors can be read. */
START_TEST(resize_at_run_time)
{
    struct error *err = NULL;
    uint32_t lba28;
    uint8_t buf[512];

    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    ck_assert_uint_eq(identify_sectors(0, 0, &lba28), IMG_SECTORS);
    ck_assert_uint_eq(lba28, IMG_SECTORS);
    ata_cmd(0, 0, 3 * IMG_SECTORS - 1, 1, 0x20);
    wait_not_busy(0);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);        /* out of range: ERR */
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x04);        /* ABRT, as QEMU */

    ck_assert_int_eq(blk_truncate(T.blk[0], 3 * (uint64_t)IMG_SIZE, &err), 0);
    ck_assert_uint_eq(identify_sectors(0, 0, &lba28), 3 * IMG_SECTORS);
    ck_assert_uint_eq(lba28, 3 * IMG_SECTORS);
    ata_cmd(0, 0, 3 * IMG_SECTORS - 1, 1, 0x20);
    hwt_wait(&T, T.level[14]);
    pio_read(0, buf, 1, 1);
    for (int i = 0; i < 512; i++)
        ck_assert_uint_eq(buf[i], 0);               /* the grown part reads zero */
}
END_TEST

START_TEST(read_sectors_pio)
{
    uint8_t buf[3 * 512];

    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    ata_cmd(0, 0, 5, 3, 0x20);
    /* QEMU answers BSY first and raises the IRQ when the read is done */
    ck_assert_uint_eq(alt(0), 0xd0);
    ck_assert_int_eq(T.raises[14], 0);
    hwt_wait(&T, T.level[14]);
    pio_read(0, buf, 1, 1);
    /* the next sector is read after the first block is consumed */
    hwt_wait(&T, T.raises[14] == 2);
    pio_read(0, buf + 512, 1, 1);
    hwt_wait(&T, T.raises[14] == 3);
    pio_read(0, buf + 1024, 1, 1);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    check_pattern(buf, 5 * 512, sizeof(buf));
    /* LBA registers advanced past the transfer */
    ck_assert_uint_eq(inb(&T, 0x1f3), 8);
    ck_assert_uint_eq(inb(&T, 0x1f2), 0);
    /* 32-bit data port on the secondary master */
    hwt_attach(&T, 2, false, IMG_SIZE, NULL);
    ata_cmd(1, 0, 100, 1, 0x20);
    hwt_wait(&T, T.level[15]);
    for (int i = 0; i < 128; i++) {
        uint32_t v = inl(&T, 0x170);
        memcpy(buf + 4 * i, &v, 4);
    }
    check_pattern(buf, 100 * 512, 512);
    ck_assert_uint_eq(inb(&T, 0x177), 0x50);
}
END_TEST

START_TEST(write_sectors_pio)
{
    uint8_t buf[1024];

    hwt_attach(&T, 1, false, IMG_SIZE, NULL);
    ata_cmd(0, 1, 20, 2, 0x30);
    ck_assert_uint_eq(alt(0), 0x58);        /* DRQ for the first block, no IRQ */
    ck_assert_int_eq(T.raises[14], 0);
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < 256; i++)
            outw(&T, 0x1f0, 0xa500 + s * 256 + i);
        hwt_wait(&T, T.raises[14] == s + 1);
        wait_not_busy(0);
        inb(&T, 0x1f7);
    }
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    hwt_file_read(T.img[1], 20 * 512, buf, sizeof(buf));
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < 256; i++)
            ck_assert_uint_eq(buf[s * 512 + 2 * i] | buf[s * 512 + 2 * i + 1] << 8,
                              (uint16_t)(0xa500 + s * 256 + i));
    /* neighbours untouched */
    hwt_file_read(T.img[1], 19 * 512, buf, 512);
    check_pattern(buf, 19 * 512, 512);
    hwt_file_read(T.img[1], 22 * 512, buf, 512);
    check_pattern(buf, 22 * 512, 512);
}
END_TEST

START_TEST(multiple_mode)
{
    uint8_t buf[8 * 512];

    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    /* invalid block sizes are refused */
    ata_cmd(0, 0, 0, 3, 0xc6);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x04);
    ata_cmd(0, 0, 0, 32, 0xc6);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    ata_cmd(0, 0, 0, 4, 0xc6);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x00);

    ata_cmd(0, 0, 40, 8, 0xc4);         /* READ MULTIPLE: 2 blocks of 4 */
    hwt_wait(&T, T.level[14]);
    pio_read(0, buf, 4, 4);
    hwt_wait(&T, T.level[14]);
    pio_read(0, buf + 2048, 4, 4);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    check_pattern(buf, 40 * 512, sizeof(buf));

    ata_cmd(0, 0, 60, 6, 0xc5);         /* WRITE MULTIPLE: 4 + 2 sectors */
    for (int i = 0; i < 4 * 256; i++)
        outw(&T, 0x1f0, 0x1111);
    hwt_wait(&T, T.level[14]);
    wait_not_busy(0);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x58);
    for (int i = 0; i < 2 * 256; i++)
        outw(&T, 0x1f0, 0x2222);
    hwt_wait(&T, T.level[14]);
    wait_not_busy(0);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    hwt_file_read(T.img[0], 60 * 512, buf, 6 * 512);
    ck_assert_uint_eq(buf[0], 0x11);
    ck_assert_uint_eq(buf[4 * 512], 0x22);
    ck_assert_uint_eq(buf[6 * 512 - 1], 0x22);

    /* multiple mode off: READ MULTIPLE aborts */
    ata_cmd(0, 0, 0, 0, 0xc6);
    ata_cmd(0, 0, 0, 1, 0xc4);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x04);
}
END_TEST

START_TEST(lba48)
{
    uint8_t buf[512];

    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    /* sector 0x1234 through the HOB registers, count 0x0001 */
    outb(&T, 0x1f6, 0x40);
    outb(&T, 0x1f2, 0x00);
    outb(&T, 0x1f2, 0x01);
    outb(&T, 0x1f3, 0x00);
    outb(&T, 0x1f3, 0x34);
    outb(&T, 0x1f4, 0x00);
    outb(&T, 0x1f4, 0x12);
    outb(&T, 0x1f5, 0x00);
    outb(&T, 0x1f5, 0x00);
    /* HOB reads the previous values */
    outb(&T, 0x3f6, 0x80);
    ck_assert_uint_eq(inb(&T, 0x1f3), 0x00);
    outb(&T, 0x3f6, 0x00);
    ck_assert_uint_eq(inb(&T, 0x1f3), 0x34);
    outb(&T, 0x1f7, 0x24);
    hwt_wait(&T, T.level[14]);
    pio_read(0, buf, 1, 1);
    check_pattern(buf, 0x1234 * 512, 512);
    ck_assert_uint_eq(inb(&T, 0x1f3), 0x35);

    /* READ NATIVE MAX ADDRESS EXT */
    outb(&T, 0x1f6, 0x40);
    outb(&T, 0x1f7, 0x27);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    ck_assert_uint_eq(inb(&T, 0x1f3) | inb(&T, 0x1f4) << 8, IMG_SECTORS - 1);
}
END_TEST

/* One PRD table at PRD_ADDR: `n` entries of (addr, count, eot on last). */
static void set_prds(const uint32_t *addr, const uint32_t *count, int n, bool eot)
{
    for (int i = 0; i < n; i++) {
        hwt_writel(&T, PRD_ADDR + 8 * i, addr[i]);
        hwt_writel(&T, PRD_ADDR + 8 * i + 4,
                   (count[i] & 0xffff) | ((eot && i == n - 1) ? 0x80000000u : 0));
    }
}

/* Start the engine and wait until the transfer stopped; BM status. */
static uint8_t run_dma(int bus, bool to_memory)
{
    uint16_t bm = BMDMA_BASE + 8 * bus;
    outb(&T, bm + 2, 0x06);
    outl(&T, bm + 4, PRD_ADDR);
    outb(&T, bm, to_memory ? 0x09 : 0x01);
    hwt_wait(&T, (inb(&T, bm + 2) & 0x04) || !(inb(&T, bm + 2) & 0x01));
    uint8_t st = inb(&T, bm + 2);
    outb(&T, bm, 0x00);
    outb(&T, bm + 2, 0x06);     /* clear INT and ERR */
    return st;
}

START_TEST(dma_read_write)
{
    uint8_t *buf = malloc(64 * 1024);

    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    hwt_attach(&T, 3, false, IMG_SIZE, NULL);
    hwt_enable_bmdma(&T);
    for (int bus = 0; bus < 2; bus++) {
        int unit = bus;         /* primary master, secondary slave */
        uint32_t addr[2] = { BUF_ADDR, BUF_ADDR + 0x10000 };
        uint32_t cnt[2] = { 0x200, 0x400 };

        /* READ DMA of 3 sectors into two PRDs */
        set_prds(addr, cnt, 2, true);
        ata_cmd(bus, unit, 7, 3, 0xc8);
        ck_assert_uint_eq(alt(bus), 0x58);      /* waits for the engine */
        ck_assert_uint_eq(run_dma(bus, true), 0x04);
        ck_assert_uint_eq(inb(&T, cmd_base[bus] + 7), 0x50);
        ck_assert_int_eq(machine_mem_read(T.m, BUF_ADDR, buf, 512), 0);
        check_pattern(buf, 7 * 512, 512);
        ck_assert_int_eq(machine_mem_read(T.m, BUF_ADDR + 0x10000, buf, 1024), 0);
        check_pattern(buf, 8 * 512, 1024);

        /* WRITE DMA EXT of 128 sectors from a zero-count (64 KiB) PRD */
        for (int i = 0; i < 65536; i++)
            buf[i] = (uint8_t)(i * 3 + bus);
        ck_assert_int_eq(machine_mem_write(T.m, BUF_ADDR, buf, 65536), 0);
        uint32_t a1 = BUF_ADDR, c1 = 0;
        set_prds(&a1, &c1, 1, true);
        outb(&T, cmd_base[bus] + 6, 0x40 | unit << 4);
        outb(&T, cmd_base[bus] + 2, 0);
        outb(&T, cmd_base[bus] + 2, 128);
        for (int r = 3; r <= 5; r++) {
            outb(&T, cmd_base[bus] + r, 0);
            outb(&T, cmd_base[bus] + r, r == 3 ? 200 : 0);
        }
        outb(&T, cmd_base[bus] + 7, 0x35);
        ck_assert_uint_eq(run_dma(bus, false), 0x04);
        ck_assert_uint_eq(inb(&T, cmd_base[bus] + 7), 0x50);
        uint8_t *img = malloc(65536);
        hwt_file_read(T.img[bus * 3], 200 * 512, img, 65536);
        ck_assert_int_eq(memcmp(img, buf, 65536), 0);
        free(img);
    }
    ck_assert_int_ge(T.raises[14], 2);
    ck_assert_int_ge(T.raises[15], 2);
    free(buf);
}
END_TEST

START_TEST(dma_prd_lengths)
{
    uint8_t buf[512];

    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    hwt_enable_bmdma(&T);
    /* longer PRDs: active stays set, IRQ raised -> 0x05 */
    uint32_t a = BUF_ADDR, c = 0x1000;
    set_prds(&a, &c, 1, true);
    ata_cmd(0, 0, 1, 1, 0xc8);
    ck_assert_uint_eq(run_dma(0, true), 0x05);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    ck_assert_int_eq(machine_mem_read(T.m, BUF_ADDR, buf, 512), 0);
    check_pattern(buf, 512, 512);

    /* shorter PRDs: engine stops, no interrupt -> 0x00 */
    c = 0x200;
    set_prds(&a, &c, 1, true);
    int before = T.raises[14];
    ata_cmd(0, 0, 1, 2, 0xc8);
    ck_assert_uint_eq(run_dma(0, true), 0x00);
    ck_assert_int_eq(T.raises[14], before);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    /* nothing moved: the registers still name the whole request */
    ck_assert_uint_eq(inb(&T, 0x1f2), 2);
    ck_assert_uint_eq(inb(&T, 0x1f3), 1);
}
END_TEST

START_TEST(dma_hostile)
{
    uint8_t *ram = malloc(65536);

    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    hwt_enable_bmdma(&T);

    /* PRD table outside RAM: entries read as zero (64 KiB at 0, no EOT);
     * the engine walks at most one page of them and finishes. */
    outl(&T, BMDMA_BASE + 4, 0xf0000000);
    ata_cmd(0, 0, 0, 1, 0xc8);
    outb(&T, BMDMA_BASE, 0x09);
    hwt_wait(&T, inb(&T, BMDMA_BASE + 2) & 0x04);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    outb(&T, BMDMA_BASE, 0);
    outb(&T, BMDMA_BASE + 2, 0x06);

    /* data buffer outside RAM: nothing lands anywhere, command completes */
    uint32_t a = 0xfebf0000, c = 0x200;
    set_prds(&a, &c, 1, true);
    ata_cmd(0, 0, 0, 1, 0xc8);
    ck_assert_uint_eq(run_dma(0, true), 0x04);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);

    /* a buffer straddling the end of RAM is not written */
    uint64_t end = machine_ram_size(T.m);
    memset(ram, 0x5a, 512);
    ck_assert_int_eq(machine_mem_write(T.m, end - 256, ram, 256), 0);
    a = end - 256;
    set_prds(&a, &c, 1, true);
    ata_cmd(0, 0, 0, 1, 0xc8);
    ck_assert_uint_eq(run_dma(0, true), 0x04);
    ck_assert_int_eq(machine_mem_read(T.m, end - 256, ram, 256), 0);
    for (int i = 0; i < 256; i++)
        ck_assert_uint_eq(ram[i], 0x5a);

    /* table without EOT, all 64 KiB entries, shorter than 512 entries:
     * the transfer ends when the command is satisfied */
    for (int i = 0; i < 512; i++) {
        hwt_writel(&T, PRD_ADDR + 8 * i, BUF_ADDR);
        hwt_writel(&T, PRD_ADDR + 8 * i + 4, 0);
    }
    ata_cmd(0, 0, 0, 0, 0xc8);      /* 256 sectors = 2 entries */
    ck_assert_uint_eq(run_dma(0, true), 0x05);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);

    /* bus master disabled: memory is not touched */
    hwt_cfg_write(&T, 1, 1, 0x04, 2, 0x0001);
    memset(ram, 0x77, 512);
    ck_assert_int_eq(machine_mem_write(T.m, BUF_ADDR, ram, 512), 0);
    a = BUF_ADDR;
    set_prds(&a, &c, 1, true);
    ata_cmd(0, 0, 3, 1, 0xc8);
    run_dma(0, true);
    ck_assert_int_eq(machine_mem_read(T.m, BUF_ADDR, ram, 512), 0);
    ck_assert_uint_eq(ram[0], 0x77);
    ck_assert_uint_eq(ram[511], 0x77);
    free(ram);
}
END_TEST

START_TEST(bmdma_registers)
{
    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    hwt_enable_bmdma(&T);
    ck_assert_uint_eq(inb(&T, BMDMA_BASE), 0x00);
    ck_assert_uint_eq(inb(&T, BMDMA_BASE + 1), 0xff);
    ck_assert_uint_eq(inb(&T, BMDMA_BASE + 2), 0x00);
    ck_assert_uint_eq(inb(&T, BMDMA_BASE + 3), 0xff);
    ck_assert_uint_eq(inw(&T, BMDMA_BASE), 0xffff);
    ck_assert_uint_eq(inl(&T, BMDMA_BASE), 0xffffffff);
    outl(&T, BMDMA_BASE + 4, 0x12345677);
    ck_assert_uint_eq(inl(&T, BMDMA_BASE + 4), 0x12345674);
    ck_assert_uint_eq(inw(&T, BMDMA_BASE + 6), 0x1234);
    outb(&T, BMDMA_BASE + 2, 0x66);
    ck_assert_uint_eq(inb(&T, BMDMA_BASE + 2), 0x60);
    outb(&T, BMDMA_BASE, 0xff);
    ck_assert_uint_eq(inb(&T, BMDMA_BASE), 0x09);
    ck_assert_uint_eq(inb(&T, BMDMA_BASE + 2), 0x61);
    outb(&T, BMDMA_BASE, 0x00);
    ck_assert_uint_eq(inb(&T, BMDMA_BASE + 2), 0x60);
    /* every interrupt latches BM INT, even for PIO commands */
    outb(&T, 0x1f7, 0xec);
    ck_assert_uint_eq(inb(&T, BMDMA_BASE + 2), 0x64);
    outb(&T, BMDMA_BASE + 2, 0x04);
    ck_assert_uint_eq(inb(&T, BMDMA_BASE + 2), 0x00);
}
END_TEST

START_TEST(errors)
{
    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    hwt_enable_bmdma(&T);
    /* unknown opcode */
    ata_cmd(0, 0, 0, 1, 0x55);
    ck_assert_uint_eq(alt(0), 0x41);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x04);
    ck_assert_int_eq(T.raises[14], 1);
    /* ATAPI-only opcodes on a hard disk */
    ata_cmd(0, 0, 0, 1, 0xa0);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    ata_cmd(0, 0, 0, 1, 0xa1);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    /* LBA past the end: ABRT, as QEMU reports it */
    ata_cmd(0, 0, IMG_SECTORS, 1, 0x20);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x04);
    ata_cmd(0, 0, IMG_SECTORS, 1, 0x30);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x58);
    for (int i = 0; i < 256; i++)
        outw(&T, 0x1f0, 0);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x04);
    uint32_t a = BUF_ADDR, c = 0x200;
    set_prds(&a, &c, 1, true);
    ata_cmd(0, 0, IMG_SECTORS, 1, 0xc8);
    ck_assert_uint_eq(run_dma(0, true), 0x04);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x04);
    /* a command while DRQ is set is ignored, as are task-file writes */
    ata_cmd(0, 0, 0, 1, 0x30);
    outb(&T, 0x1f3, 0x99);
    ck_assert_uint_eq(inb(&T, 0x1f3), 0x00);
    outb(&T, 0x1f7, 0xec);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x58);
    /* reads of the data port while the host should write give 0 */
    ck_assert_uint_eq(inw(&T, 0x1f0), 0);
    /* CHS addressing with a zero-sector geometry does not fault */
    ata_cmd(0, 0, 0, 0, 0x91);
    outb(&T, 0x1f6, 0xa0);
    outb(&T, 0x1f2, 0);
    outb(&T, 0x1f7, 0x91);
    outb(&T, 0x1f7, 0x20);
    hwt_settle(&T);
}
END_TEST

START_TEST(housekeeping)
{
    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    static const uint8_t nops[] = { 0x10, 0x70, 0x94, 0x95, 0x96, 0x97, 0x99,
                                    0xe0, 0xe1, 0xe2, 0xe3, 0xe6, 0x40, 0x42 };
    for (size_t i = 0; i < sizeof(nops); i++) {
        int before = T.raises[14];
        ata_cmd(0, 0, 0, 1, nops[i]);
        ck_assert_msg(inb(&T, 0x3f6) == 0x50 || inb(&T, 0x3f6) == 0x40,
                      "cmd %02x status %02x", nops[i], inb(&T, 0x3f6));
        ck_assert_uint_eq(inb(&T, 0x1f1), 0);
        ck_assert_int_eq(T.raises[14], before + 1);
    }
    /* CHECK POWER MODE: count 0xff = active/idle */
    ata_cmd(0, 0, 0, 0, 0xe5);
    ck_assert_uint_eq(inb(&T, 0x1f2), 0xff);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    /* FLUSH CACHE completes asynchronously */
    ata_cmd(0, 0, 0, 0, 0xe7);
    ck_assert_uint_eq(alt(0), 0xc0);
    hwt_wait(&T, !(alt(0) & 0x80));
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    ata_cmd(0, 0, 0, 0, 0xea);
    hwt_wait(&T, !(alt(0) & 0x80));
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    /* SET FEATURES: write cache off/on shows in IDENTIFY word 85 */
    outb(&T, 0x1f1, 0x82);
    outb(&T, 0x1f7, 0xef);
    hwt_wait(&T, !(alt(0) & 0x80));
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    outb(&T, 0x1f7, 0xec);
    uint16_t id[256];
    for (int i = 0; i < 256; i++)
        id[i] = inw(&T, 0x1f0);
    ck_assert_uint_eq(id[85], 0x4001);
    outb(&T, 0x1f1, 0x03);          /* transfer mode UDMA2 */
    outb(&T, 0x1f2, 0x42);
    outb(&T, 0x1f7, 0xef);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    outb(&T, 0x1f7, 0xec);
    for (int i = 0; i < 256; i++)
        id[i] = inw(&T, 0x1f0);
    ck_assert_uint_eq(id[88], 0x043f);
    outb(&T, 0x1f1, 0x77);          /* unknown feature */
    outb(&T, 0x1f7, 0xef);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x04);
    /* EXECUTE DEVICE DIAGNOSTIC */
    outb(&T, 0x1f7, 0x90);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x01);
    ck_assert_uint_eq(inb(&T, 0x1f2), 0x01);
    /* INITIALIZE DEVICE PARAMETERS then a CHS read: C/H/S = 0/1/1 with
     * 4 heads x 17 sectors is sector 17 */
    outb(&T, 0x1f6, 0xa3);
    outb(&T, 0x1f2, 17);
    outb(&T, 0x1f7, 0x91);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    outb(&T, 0x1f6, 0xa1);
    outb(&T, 0x1f2, 1);
    outb(&T, 0x1f3, 1);
    outb(&T, 0x1f4, 0);
    outb(&T, 0x1f5, 0);
    outb(&T, 0x1f7, 0x20);
    hwt_wait(&T, T.level[14]);
    uint8_t buf[512];
    pio_read(0, buf, 1, 1);
    check_pattern(buf, 17 * 512, 512);
    /* DEVICE RESET is for packet devices */
    outb(&T, 0x1f7, 0x08);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
}
END_TEST

START_TEST(soft_reset_and_nien)
{
    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    hwt_attach(&T, 1, false, IMG_SIZE, NULL);
    /* nIEN: completions raise no interrupt */
    outb(&T, 0x3f6, 0x02);
    ata_cmd(0, 0, 0, 1, 0xec);
    ck_assert_int_eq(T.raises[14], 0);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x58);
    /* SRST: BSY at once, diagnostics after the write */
    outb(&T, 0x3f6, 0x04);
    ck_assert_uint_eq(alt(0) & 0x80, 0x80);
    outb(&T, 0x3f6, 0x00);
    hwt_wait(&T, !(alt(0) & 0x80));
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x01);
    ck_assert_uint_eq(inb(&T, 0x1f2), 0x01);
    ck_assert_uint_eq(inb(&T, 0x1f6), 0xa0);
    ck_assert_uint_eq(inw(&T, 0x1f0), 0);      /* PIO halted */
    ck_assert_int_ge(T.raises[14], 1);
    outb(&T, 0x1f6, 0xb0);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    /* a PIO read in flight at SRST is dropped */
    ata_cmd(0, 0, 0, 1, 0x20);
    outb(&T, 0x3f6, 0x04);
    outb(&T, 0x3f6, 0x00);
    hwt_settle(&T);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    ck_assert_uint_eq(inw(&T, 0x1f0), 0);
    /* machine reset */
    ata_cmd(0, 0, 0, 1, 0xec);
    machine_reset(T.m);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x00);
    ck_assert(!machine_irq_level(T.m, 14));
}
END_TEST

START_TEST(trim)
{
    uint8_t buf[512];

    hwt_attach(&T, 0, false, IMG_SIZE, "discard=unmap");
    hwt_enable_bmdma(&T);
    /* one range: sectors 100-103 */
    memset(buf, 0, sizeof(buf));
    buf[0] = 100;
    buf[6] = 4;
    ck_assert_int_eq(machine_mem_write(T.m, BUF_ADDR, buf, 512), 0);
    uint32_t a = BUF_ADDR, c = 512;
    set_prds(&a, &c, 1, true);
    outb(&T, 0x1f1, 0x01);
    ata_cmd(0, 0, 0, 1, 0x06);
    ck_assert_uint_eq(run_dma(0, false), 0x04);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    hwt_file_read(T.img[0], 100 * 512, buf, 512);
    ck_assert_uint_eq(buf[0], 0);
    /* a range past the end aborts */
    memset(buf, 0, sizeof(buf));
    buf[0] = 0xff;
    buf[1] = 0x1f;
    buf[6] = 2;
    ck_assert_int_eq(machine_mem_write(T.m, BUF_ADDR, buf, 512), 0);
    outb(&T, 0x1f1, 0x01);
    ata_cmd(0, 0, 0, 1, 0x06);
    ck_assert_uint_eq(run_dma(0, false), 0x04);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x04);
    /* DSM without the TRIM bit aborts */
    outb(&T, 0x1f1, 0x00);
    ata_cmd(0, 0, 0, 1, 0x06);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
}
END_TEST

/* Every write path on a read-only disk: DRDY|ERR, ABRT, an interrupt,
 * and not one byte of the image changed. */
static void expect_rejected(int *irqs)
{
    ck_assert_uint_eq(alt(0), 0x41);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x04);
    ck_assert_int_eq(T.raises[14], ++*irqs);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    /* no data phase */
    outw(&T, 0x1f0, 0xdead);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
}

START_TEST(read_only_rejects_writes)
{
    int irqs = 0;
    uint8_t buf[512];

    hwt_attach(&T, 0, false, IMG_SIZE, "read-only=on,discard=unmap");
    uint64_t hash = hwt_file_hash(T.img[0]);
    hwt_enable_bmdma(&T);
    memset(buf, 0xee, sizeof(buf));
    ck_assert_int_eq(machine_mem_write(T.m, BUF_ADDR, buf, 512), 0);
    uint32_t a = BUF_ADDR, c = 512;
    set_prds(&a, &c, 1, true);

    static const uint8_t pio_writes[] = { 0x30, 0x31, 0x34, 0x3c, 0xc5, 0x39 };
    for (size_t i = 0; i < sizeof(pio_writes); i++) {
        outb(&T, 0x1f6, 0x40);
        outb(&T, 0x1f2, 1);
        outb(&T, 0x1f7, pio_writes[i]);
        expect_rejected(&irqs);
    }
    static const uint8_t dma_writes[] = { 0xca, 0xcb, 0x35 };
    for (size_t i = 0; i < sizeof(dma_writes); i++) {
        ata_cmd(0, 0, 0, 1, dma_writes[i]);
        expect_rejected(&irqs);
        /* starting the engine afterwards moves nothing */
        outl(&T, BMDMA_BASE + 4, PRD_ADDR);
        outb(&T, BMDMA_BASE, 0x01);
        hwt_settle(&T);
        outb(&T, BMDMA_BASE, 0x00);
        outb(&T, BMDMA_BASE + 2, 0x06);
    }
    outb(&T, 0x1f1, 0x01);          /* TRIM */
    ata_cmd(0, 0, 0, 1, 0x06);
    expect_rejected(&irqs);

    /* reads still work */
    ata_cmd(0, 0, 9, 1, 0x20);
    hwt_wait(&T, T.level[14]);
    pio_read(0, buf, 1, 1);
    check_pattern(buf, 9 * 512, 512);
    ata_cmd(0, 0, 0, 0, 0xe7);      /* flush is harmless */
    hwt_wait(&T, !(alt(0) & 0x80));
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);

    blk_drain(T.blk[0]);
    ck_assert_uint_eq(hwt_file_hash(T.img[0]), hash);
}
END_TEST

START_TEST(read_only_at_run_time)
{
    struct error *err = NULL;
    int irqs = 0;

    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    ck_assert_int_eq(blk_set_read_only(T.blk[0], true, &err), 0);
    uint64_t hash = hwt_file_hash(T.img[0]);
    ata_cmd(0, 0, 0, 1, 0x30);
    expect_rejected(&irqs);
    ck_assert_uint_eq(hwt_file_hash(T.img[0]), hash);

    ck_assert_int_eq(blk_set_read_only(T.blk[0], false, &err), 0);
    ata_cmd(0, 0, 0, 1, 0x30);
    ck_assert_uint_eq(alt(0), 0x58);
    for (int i = 0; i < 256; i++)
        outw(&T, 0x1f0, 0x4242);
    hwt_wait(&T, !(alt(0) & 0x80));
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    uint8_t b;
    hwt_file_read(T.img[0], 0, &b, 1);
    ck_assert_uint_eq(b, 0x42);

    /* the mode flips in the middle of the data phase: the write is
     * refused by the backend and reported as ABRT */
    inb(&T, 0x1f7);
    ata_cmd(0, 0, 1, 1, 0x30);
    ck_assert_uint_eq(alt(0), 0x58);
    ck_assert_int_eq(blk_set_read_only(T.blk[0], true, &err), 0);
    hash = hwt_file_hash(T.img[0]);
    int before = T.raises[14];
    for (int i = 0; i < 256; i++)
        outw(&T, 0x1f0, 0x4343);
    hwt_wait(&T, !(alt(0) & 0x80));
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x04);
    ck_assert_int_eq(T.raises[14], before + 1);
    ck_assert_uint_eq(hwt_file_hash(T.img[0]), hash);
}
END_TEST

static ssize_t eio_preadv(void *opaque, int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    return -EIO;
}

START_TEST(io_error)
{
    struct error *err = NULL;
    static const struct bdrv_io_hooks hooks = { .preadv = eio_preadv };
    struct bdrv_open_opts o;

    T.img[0] = hwt_make_image(T.dir, "eio.raw", IMG_SIZE);
    bdrv_open_opts_init(&o);
    o.driver = strdup("raw");
    o.file = calloc(1, sizeof(*o.file));
    bdrv_open_opts_init(o.file);
    o.file->driver = strdup("file");
    o.file->filename = strdup(T.img[0]);
    o.file->io_hooks = &hooks;
    T.blk[0] = blk_open(T.loop, &o, NULL, &err);
    ck_assert_msg(T.blk[0] != NULL, "%s", err ? err->msg : "?");
    bdrv_open_opts_free(&o);
    struct disk_spec spec;
    disk_spec_init(&spec);
    spec.index = 0;
    ck_assert_int_eq(machine_attach_disk(T.m, &spec, T.blk[0], &err), 0);
    disk_spec_free(&spec);
    hwt_enable_bmdma(&T);

    ata_cmd(0, 0, 0, 1, 0x20);
    hwt_wait(&T, T.level[14]);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x04);

    uint32_t a = BUF_ADDR, c = 512;
    set_prds(&a, &c, 1, true);
    ata_cmd(0, 0, 0, 1, 0xc8);
    ck_assert_uint_eq(run_dma(0, true), 0x04);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    ck_assert_uint_eq(inb(&T, 0x1f1), 0x04);
}
END_TEST

START_TEST(attach_errors)
{
    struct error *err = NULL;
    struct disk_spec spec;

    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    disk_spec_init(&spec);
    spec.index = 0;
    ck_assert_int_eq(machine_attach_disk(T.m, &spec, T.blk[0], &err), -EBUSY);
    ck_assert_ptr_nonnull(err);
    error_free(err);
    err = NULL;
    spec.index = 7;
    ck_assert_int_eq(machine_attach_disk(T.m, &spec, T.blk[0], &err), -EINVAL);
    error_free(err);
    err = NULL;
    ck_assert_int_eq(machine_detach_disk(T.m, "nope", &err), -ENOENT);
    error_free(err);
    err = NULL;
    ck_assert_int_eq(machine_detach_disk(T.m, "ide0-hd0", &err), 0);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x00);    /* channel empty again */
}
END_TEST

START_TEST(spec_serial_and_cache)
{
    struct error *err = NULL;
    struct disk_spec spec;
    uint16_t id[256];

    T.img[2] = hwt_make_image(T.dir, "s.raw", IMG_SIZE);
    struct bdrv_node *bs = bdrv_open_file(T.img[2], "raw", false, &err);
    ck_assert_ptr_nonnull(bs);
    T.blk[2] = blk_new(T.loop, bs, NULL);
    bdrv_unref(bs);
    disk_spec_init(&spec);
    spec.index = 2;
    spec.serial = strdup("DISKDM-SERIAL-123");
    spec.id = strdup("boot");
    spec.cache = CACHE_WRITETHROUGH;
    ck_assert_int_eq(machine_attach_disk(T.m, &spec, T.blk[2], &err), 0);
    /* the same id twice is refused */
    spec.index = 3;
    ck_assert_int_eq(machine_attach_disk(T.m, &spec, T.blk[2], &err), -EEXIST);
    error_free(err);
    err = NULL;
    disk_spec_free(&spec);
    outb(&T, 0x176, 0xa0);
    outb(&T, 0x177, 0xec);
    for (int i = 0; i < 256; i++)
        id[i] = inw(&T, 0x170);
    char str[21];
    for (int i = 0; i < 10; i++) {
        str[2 * i] = id[10 + i] >> 8;
        str[2 * i + 1] = id[10 + i];
    }
    str[20] = 0;
    ck_assert_str_eq(str, "DISKDM-SERIAL-123   ");
    ck_assert_uint_eq(id[85], 0x4001);          /* no write cache */
    ck_assert_int_eq(machine_detach_disk(T.m, "boot", &err), 0);
}
END_TEST

START_TEST(geometry_from_mbr)
{
    struct error *err = NULL;
    uint16_t id[256];
    uint8_t mbr[512] = { 0 };

    /* one partition ending at head 3, sector 32: QEMU takes 4 heads and
     * 32 sectors per track (observed: 128/4/32 for 8 MiB) */
    T.img[0] = hwt_make_image(T.dir, "mbr.raw", 8 << 20);
    mbr[0x1be + 4] = 0x83;
    mbr[0x1be + 5] = 3;
    mbr[0x1be + 6] = 32;
    mbr[0x1be + 12] = 0xe8;
    mbr[0x1be + 13] = 0x03;
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    int fd = open(T.img[0], O_WRONLY);
    ck_assert_int_eq(full_pwrite(fd, mbr, 512, 0), 512);
    close(fd);
    struct bdrv_node *bs = bdrv_open_file(T.img[0], "raw", true, &err);
    ck_assert_ptr_nonnull(bs);
    T.blk[0] = blk_new(T.loop, bs, NULL);
    bdrv_unref(bs);
    struct disk_spec spec;
    disk_spec_init(&spec);
    spec.index = 0;
    ck_assert_int_eq(machine_attach_disk(T.m, &spec, T.blk[0], &err), 0);
    disk_spec_free(&spec);
    outb(&T, 0x1f7, 0xec);
    for (int i = 0; i < 256; i++)
        id[i] = inw(&T, 0x1f0);
    ck_assert_uint_eq(id[1], 128);
    ck_assert_uint_eq(id[3], 4);
    ck_assert_uint_eq(id[6], 32);
    ck_assert_uint_eq(id[57], 0x4000);
}
END_TEST

static void smart(uint8_t feature, uint8_t sector, uint8_t lcyl, uint8_t hcyl)
{
    outb(&T, 0x1f1, feature);
    outb(&T, 0x1f3, sector);
    outb(&T, 0x1f4, lcyl);
    outb(&T, 0x1f5, hcyl);
    outb(&T, 0x1f7, 0xb0);
}

START_TEST(smart_commands)
{
    uint8_t buf[512];

    hwt_attach(&T, 0, false, IMG_SIZE, NULL);
    /* without the key in the cylinder registers: abort */
    smart(0xda, 0, 0, 0);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    smart(0xda, 0, 0x4f, 0xc2);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    ck_assert_uint_eq(inb(&T, 0x1f4), 0x4f);
    ck_assert_uint_eq(inb(&T, 0x1f5), 0xc2);
    smart(0xd0, 0, 0x4f, 0xc2);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x58);
    for (int i = 0; i < 256; i++) {
        uint16_t w = inw(&T, 0x1f0);
        buf[2 * i] = w;
        buf[2 * i + 1] = w >> 8;
    }
    uint8_t sum = 0;
    for (int i = 0; i < 512; i++)
        sum += buf[i];
    ck_assert_uint_eq(sum, 0);
    ck_assert_uint_eq(buf[2], 0x01);
    ck_assert_uint_eq(buf[2 + 6 * 12], 190);
    /* a self-test shows in the log */
    smart(0xd4, 1, 0x4f, 0xc2);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
    smart(0xd5, 6, 0x4f, 0xc2);
    for (int i = 0; i < 256; i++) {
        uint16_t w = inw(&T, 0x1f0);
        buf[2 * i] = w;
        buf[2 * i + 1] = w >> 8;
    }
    ck_assert_uint_eq(buf[508], 1);
    ck_assert_uint_eq(buf[2], 1);
    /* disabled: everything but ENABLE aborts */
    smart(0xd9, 0, 0x4f, 0xc2);
    smart(0xda, 0, 0x4f, 0xc2);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x41);
    smart(0xd8, 0, 0x4f, 0xc2);
    ck_assert_uint_eq(inb(&T, 0x1f7), 0x50);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("hw-ide");
    TCase *tc = tcase_create("ide");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, reset_registers);
    tcase_add_test(tc, identify_all_slots);
    tcase_add_test(tc, resize_at_run_time);
    tcase_add_test(tc, read_sectors_pio);
    tcase_add_test(tc, write_sectors_pio);
    tcase_add_test(tc, multiple_mode);
    tcase_add_test(tc, lba48);
    tcase_add_test(tc, dma_read_write);
    tcase_add_test(tc, dma_prd_lengths);
    tcase_add_test(tc, dma_hostile);
    tcase_add_test(tc, bmdma_registers);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, housekeeping);
    tcase_add_test(tc, soft_reset_and_nien);
    tcase_add_test(tc, trim);
    tcase_add_test(tc, read_only_rejects_writes);
    tcase_add_test(tc, read_only_at_run_time);
    tcase_add_test(tc, io_error);
    tcase_add_test(tc, attach_errors);
    tcase_add_test(tc, spec_serial_and_cache);
    tcase_add_test(tc, geometry_from_mbr);
    tcase_add_test(tc, smart_commands);
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
