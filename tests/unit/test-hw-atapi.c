/*
 * tests/unit/test-hw-atapi.c — the ATAPI CD-ROM through its registers:
 * IDENTIFY PACKET, packet commands with PIO (byte count limit) and DMA,
 * sense data, media change via blk_insert/blk_eject, guest eject with the
 * medium locked, and DATA PROTECT for writes to read-only media.
 */
#include "tests/unit/hw-test.h"

#define CD_SECTORS  64
#define CD_SIZE     (CD_SECTORS * 2048)
#define PRD_ADDR    0x1000
#define BUF_ADDR    0x200000

static struct hwt T;

/* The CD is the secondary slave: base 0x170, IRQ 15, select 0xb0. */
#define BASE 0x170
#define ALT  0x376
#define IRQ  15

static void setup(void)
{
    hwt_init(&T);
}

static void teardown(void)
{
    hwt_fini(&T);
}

static void cd_attach(uint64_t size, const char *opts)
{
    hwt_attach(&T, 3, true, size, opts ? opts : "read-only=on");
}

static void wait_not_busy(void)
{
    hwt_wait(&T, !(inb(&T, ALT) & 0x80));
}

/* Send a packet; the device asks for it with DRQ and CoD. */
static void send_packet(const uint8_t *cdb, uint16_t bcl, bool dma)
{
    outb(&T, BASE + 6, 0xb0);
    outb(&T, BASE + 1, dma ? 1 : 0);
    outb(&T, BASE + 4, bcl);
    outb(&T, BASE + 5, bcl >> 8);
    outb(&T, BASE + 7, 0xa0);
    ck_assert_uint_eq(inb(&T, ALT), 0x58);
    ck_assert_uint_eq(inb(&T, BASE + 2), 0x01);
    for (int i = 0; i < 6; i++)
        outw(&T, BASE, cdb[2 * i] | cdb[2 * i + 1] << 8);
}

/* PIO data phase: returns the bytes received; *blocks counts DRQ blocks. */
static int pio_reply(uint8_t *buf, int max, int *blocks)
{
    int got = 0;

    if (blocks)
        *blocks = 0;
    for (;;) {
        wait_not_busy();
        uint8_t st = inb(&T, BASE + 7);
        if (!(st & 0x08))
            break;
        ck_assert_uint_eq(inb(&T, BASE + 2) & 3, 0x02);     /* I/O, data */
        int n = inb(&T, BASE + 4) | inb(&T, BASE + 5) << 8;
        for (int i = 0; i < n / 2; i++) {
            uint16_t w = inw(&T, BASE);
            if (got + 1 < max) {
                buf[got] = w;
                buf[got + 1] = w >> 8;
            }
            got += 2;
        }
        if (blocks)
            (*blocks)++;
    }
    return got;
}

/* Run a non-data or PIO-data command; returns status, fills buf. */
static uint8_t atapi_pio(const uint8_t *cdb, uint16_t bcl, uint8_t *buf, int max,
                         int *len)
{
    uint8_t scratch[4];
    send_packet(cdb, bcl, false);
    int n = pio_reply(buf ? buf : scratch, buf ? max : 0, NULL);
    if (len)
        *len = n;
    return inb(&T, BASE + 7);
}

static void request_sense(uint8_t *key, uint8_t *asc)
{
    uint8_t cdb[12] = { 0x03, 0, 0, 0, 18 };
    uint8_t buf[18];
    int len;

    ck_assert_uint_eq(atapi_pio(cdb, 18, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 18);
    ck_assert_uint_eq(buf[0], 0xf0);
    *key = buf[2];
    *asc = buf[12];
}

static void expect_check(const uint8_t *cdb, uint8_t key, uint8_t asc)
{
    uint8_t k, a;
    ck_assert_uint_eq(atapi_pio(cdb, 2048, NULL, 0, NULL), 0x41);
    ck_assert_uint_eq(inb(&T, BASE + 1), key << 4);
    ck_assert_uint_eq(inb(&T, BASE + 2), 0x03);
    request_sense(&k, &a);
    ck_assert_uint_eq(k, key);
    ck_assert_uint_eq(a, asc);
}

static const uint8_t tur[12] = { 0x00 };

START_TEST(identify)
{
    uint16_t id[256];

    cd_attach(CD_SIZE, NULL);
    outb(&T, BASE + 6, 0xb0);
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x50);
    ck_assert_uint_eq(inb(&T, BASE + 4), 0x14);
    ck_assert_uint_eq(inb(&T, BASE + 5), 0xeb);
    /* IDENTIFY DEVICE aborts and leaves the packet signature */
    outb(&T, BASE + 7, 0xec);
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x41);
    ck_assert_uint_eq(inb(&T, BASE + 1), 0x04);
    ck_assert_uint_eq(inb(&T, BASE + 4), 0x14);
    ck_assert_uint_eq(inb(&T, BASE + 5), 0xeb);
    /* ATA data commands are not for packet devices */
    outb(&T, BASE + 7, 0xc8);
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x41);
    outb(&T, BASE + 7, 0x20);
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x41);
    outb(&T, BASE + 7, 0xa1);
    ck_assert_int_ge(T.raises[IRQ], 1);
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x58);
    for (int i = 0; i < 256; i++)
        id[i] = inw(&T, BASE);
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x50);
    ck_assert_uint_eq(id[0], 0x85c0);
    ck_assert_uint_eq(id[10], 0x514d);          /* "QM" */
    ck_assert_uint_eq(id[13], 0x3420);          /* "4 " of QM00004 */
    ck_assert_uint_eq(id[27], 0x5145);          /* "QE" */
    ck_assert_uint_eq(id[29], 0x2044);          /* " D" */
    ck_assert_uint_eq(id[49], 0x0300);
    ck_assert_uint_eq(id[88], 0x203f);
}
END_TEST

START_TEST(basic_commands)
{
    uint8_t buf[64];
    int len;

    cd_attach(CD_SIZE, NULL);
    uint8_t k, a;
    request_sense(&k, &a);
    ck_assert_uint_eq(k, 0);                    /* NO SENSE at power-on */
    int before = T.raises[IRQ];
    ck_assert_uint_eq(atapi_pio(tur, 0, NULL, 0, NULL), 0x50);
    ck_assert_uint_eq(inb(&T, BASE + 1), 0);
    ck_assert_uint_eq(inb(&T, BASE + 2), 0x03);
    ck_assert_int_eq(T.raises[IRQ], before + 1);

    uint8_t inq[12] = { 0x12, 0, 0, 0, 96 };
    ck_assert_uint_eq(atapi_pio(inq, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 36);
    ck_assert_uint_eq(buf[0], 0x05);
    ck_assert_uint_eq(buf[1], 0x80);
    ck_assert_uint_eq(buf[3], 0x21);
    ck_assert_uint_eq(buf[4], 31);
    ck_assert_int_eq(memcmp(buf + 8, "QEMU    QEMU DVD-ROM    2.5+", 28), 0);
    /* VPD: supported pages; an unknown page is an invalid field */
    uint8_t vpd[12] = { 0x12, 1, 0x00, 0, 96 };
    ck_assert_uint_eq(atapi_pio(vpd, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 6);
    ck_assert_uint_eq(buf[5], 0x83);
    uint8_t vpd_bad[12] = { 0x12, 1, 0x42, 0, 96 };
    expect_check(vpd_bad, 0x05, 0x24);
    /* sense other than UNIT ATTENTION persists, as in QEMU */
    request_sense(&k, &a);
    ck_assert_uint_eq(k, 5);

    uint8_t cap[12] = { 0x25 };
    ck_assert_uint_eq(atapi_pio(cap, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 8);
    ck_assert_uint_eq(buf[3], CD_SECTORS - 1);
    ck_assert_uint_eq(buf[6], 0x08);

    uint8_t ms[12] = { 0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 64 };
    ck_assert_uint_eq(atapi_pio(ms, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 30);
    ck_assert_uint_eq(buf[1], 28);
    ck_assert_uint_eq(buf[8], 0x2a);
    ck_assert_uint_eq(buf[14], 0x29);
    uint8_t ms_saved[12] = { 0x5a, 0, 0xea, 0, 0, 0, 0, 0, 64 };
    expect_check(ms_saved, 0x05, 0x39);

    uint8_t unknown[12] = { 0xff };
    expect_check(unknown, 0x05, 0x20);

    uint8_t di[12] = { 0x51, 0, 0, 0, 0, 0, 0, 0, 34 };
    ck_assert_uint_eq(atapi_pio(di, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 34);
    ck_assert_uint_eq(buf[2], 0x0e);

    uint8_t gc[12] = { 0x46, 0, 0, 0, 0, 0, 0, 0, 32 };
    ck_assert_uint_eq(atapi_pio(gc, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 20);
    ck_assert_uint_eq(buf[3], 16);
    ck_assert_uint_eq(buf[7], 0x08);            /* current profile CD-ROM */
    ck_assert_uint_eq(buf[13], 0x10);
    ck_assert_uint_eq(buf[17], 0x08);
    ck_assert_uint_eq(buf[18], 1);

    /* READ DVD STRUCTURE: a CD has none, but the list of structures */
    uint8_t dvd0[12] = { 0xad, 0, 0, 0, 0, 0, 0, 0x00, 0x08, 0x04 };
    expect_check(dvd0, 0x05, 0x30);
    uint8_t dvdff[12] = { 0xad, 0, 0, 0, 0, 0, 0, 0xff, 0x08, 0x04 };
    ck_assert_uint_eq(atapi_pio(dvdff, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 20);
    ck_assert_uint_eq(buf[1], 18);
    ck_assert_uint_eq(buf[16], 0x04);

    /* zero-length reply: the allocation length wins */
    uint8_t inq0[12] = { 0x12, 0, 0, 0, 0 };
    ck_assert_uint_eq(atapi_pio(inq0, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 0);

    /* byte count limit 0 on a PIO data command: ATA-level abort */
    send_packet(inq, 0, false);
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x41);
    ck_assert_uint_eq(inb(&T, BASE + 1), 0x04);

    /* overlapped packets are refused */
    outb(&T, BASE + 1, 0x02);
    outb(&T, BASE + 7, 0xa0);
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x41);
}
END_TEST

START_TEST(read_toc)
{
    uint8_t buf[64];
    int len;

    cd_attach(CD_SIZE, NULL);
    uint8_t toc[12] = { 0x43, 0, 0, 0, 0, 0, 0, 0, 64, 0 };
    ck_assert_uint_eq(atapi_pio(toc, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 20);
    ck_assert_uint_eq(buf[1], 18);
    ck_assert_uint_eq(buf[5], 0x14);
    ck_assert_uint_eq(buf[14], 0xaa);
    ck_assert_uint_eq(buf[19], CD_SECTORS);
    uint8_t toc_msf[12] = { 0x43, 2, 0, 0, 0, 0, 0, 0, 64, 0 };
    ck_assert_uint_eq(atapi_pio(toc_msf, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_uint_eq(buf[10], 2);              /* 00:02:00 = LBA 0 */
    ck_assert_uint_eq(buf[19], (CD_SECTORS + 150) % 75);
    uint8_t toc1[12] = { 0x43, 0, 0, 0, 0, 0, 0, 0, 64, 0x40 };
    ck_assert_uint_eq(atapi_pio(toc1, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 12);
    ck_assert_uint_eq(buf[1], 0x0a);
    uint8_t toc2[12] = { 0x43, 0, 0, 0, 0, 0, 1, 0, 64, 0x80 };
    ck_assert_uint_eq(atapi_pio(toc2, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 48);
    ck_assert_uint_eq(buf[7], 0xa0);
    uint8_t toc_bad[12] = { 0x43, 0, 0, 0, 0, 0, 5, 0, 64, 0 };
    expect_check(toc_bad, 0x05, 0x24);
    uint8_t toc_fmt3[12] = { 0x43, 0, 0, 0, 0, 0, 0, 0, 64, 0xc0 };
    expect_check(toc_fmt3, 0x05, 0x24);
}
END_TEST

static void check_cd_data(const uint8_t *buf, uint32_t lba, size_t len)
{
    for (size_t i = 0; i < len; i++)
        ck_assert_msg(buf[i] == hwt_pat((uint64_t)lba * 2048 + i),
                      "byte %zu", i);
}

START_TEST(read_pio)
{
    uint8_t *buf = malloc(8 * 2048);
    int len, blocks;

    cd_attach(CD_SIZE, NULL);
    uint8_t rd[12] = { 0x28, 0, 0, 0, 0, 3, 0, 0, 2 };
    send_packet(rd, 0xfffe, false);
    len = pio_reply(buf, 8 * 2048, &blocks);
    ck_assert_int_eq(len, 4096);
    ck_assert_int_eq(blocks, 1);                /* one block, refilled inside */
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x50);
    ck_assert_uint_eq(inb(&T, BASE + 2), 0x03);
    check_cd_data(buf, 3, 4096);

    /* byte count limit 1000: 1000 + 1000 + 48 per sector */
    send_packet(rd, 1000, false);
    len = pio_reply(buf, 8 * 2048, &blocks);
    ck_assert_int_eq(len, 4096);
    ck_assert_int_eq(blocks, 5);                /* 1000 x 4 + 96 */
    check_cd_data(buf, 3, 4096);

    /* READ(12), odd limit rounded down */
    uint8_t rd12[12] = { 0xa8, 0, 0, 0, 0, 60, 0, 0, 0, 4 };
    send_packet(rd12, 2049, false);
    len = pio_reply(buf, 8 * 2048, &blocks);
    ck_assert_int_eq(len, 8192);
    check_cd_data(buf, 60, 8192);

    /* past the end, and a zero count */
    uint8_t oor[12] = { 0x28, 0, 0, 0, 0, 63, 0, 0, 2 };
    expect_check(oor, 0x05, 0x21);
    uint8_t oor12[12] = { 0xa8, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2 };
    expect_check(oor12, 0x05, 0x21);
    uint8_t zero[12] = { 0x28, 0, 0, 0, 0, 3, 0, 0, 0 };
    ck_assert_uint_eq(atapi_pio(zero, 2048, NULL, 0, NULL), 0x50);
    free(buf);
}
END_TEST

START_TEST(read_cd_raw)
{
    uint8_t *buf = malloc(2 * 2352);
    int len, blocks;

    cd_attach(CD_SIZE, NULL);
    /* READ CD, user data only: like READ(10) */
    uint8_t user[12] = { 0xbe, 0, 0, 0, 0, 7, 0, 0, 1, 0x10 };
    send_packet(user, 0xfffe, false);
    ck_assert_int_eq(pio_reply(buf, 2352, &blocks), 2048);
    check_cd_data(buf, 7, 2048);
    /* everything: sync, header (MSF of LBA 7 = 00:02:07, mode 1), data, zero ECC */
    uint8_t raw[12] = { 0xbe, 0, 0, 0, 0, 7, 0, 0, 2, 0xf8 };
    send_packet(raw, 0xfffe, false);
    len = pio_reply(buf, 2 * 2352, &blocks);
    ck_assert_int_eq(len, 2 * 2352);
    ck_assert_int_eq(blocks, 1);        /* one DRQ block, refilled inside */
    ck_assert_uint_eq(buf[0], 0x00);
    ck_assert_uint_eq(buf[1], 0xff);
    ck_assert_uint_eq(buf[10], 0xff);
    ck_assert_uint_eq(buf[11], 0x00);
    ck_assert_uint_eq(buf[12], 0);
    ck_assert_uint_eq(buf[13], 2);
    ck_assert_uint_eq(buf[14], 7);
    ck_assert_uint_eq(buf[15], 1);
    check_cd_data(buf + 16, 7, 2048);
    ck_assert_uint_eq(buf[2351], 0);
    ck_assert_uint_eq(buf[2352 + 14], 8);
    check_cd_data(buf + 2352 + 16, 8, 2048);
    /* nothing requested, or a bad transfer request */
    uint8_t none[12] = { 0xbe, 0, 0, 0, 0, 7, 0, 0, 1, 0x00 };
    ck_assert_uint_eq(atapi_pio(none, 2048, NULL, 0, NULL), 0x50);
    uint8_t bad[12] = { 0xbe, 0, 0, 0, 0, 7, 0, 0, 1, 0x18 };
    expect_check(bad, 0x05, 0x24);
    /* past the end: the backend refuses, reported as out of range */
    uint8_t oor[12] = { 0xbe, 0, 0, 0, 0x10, 0, 0, 0, 1, 0x10 };
    send_packet(oor, 2048, false);
    wait_not_busy();
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x41);
    ck_assert_uint_eq(inb(&T, BASE + 1), 0x50);
    free(buf);
}
END_TEST

START_TEST(read_dma)
{
    uint8_t *buf = malloc(3 * 2048);

    cd_attach(CD_SIZE, NULL);
    hwt_enable_bmdma(&T);
    hwt_writel(&T, PRD_ADDR, BUF_ADDR);
    hwt_writel(&T, PRD_ADDR + 4, 0x80000000u | (3 * 2048));
    uint8_t rd[12] = { 0x28, 0, 0, 0, 0, 10, 0, 0, 3 };
    send_packet(rd, 0, true);
    outl(&T, BMDMA_BASE + 8 + 4, PRD_ADDR);
    outb(&T, BMDMA_BASE + 8, 0x09);
    hwt_wait(&T, inb(&T, BMDMA_BASE + 10) & 0x04);
    ck_assert_uint_eq(inb(&T, BMDMA_BASE + 10), 0x04);
    outb(&T, BMDMA_BASE + 8, 0);
    outb(&T, BMDMA_BASE + 10, 0x04);
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x50);
    ck_assert_uint_eq(inb(&T, BASE + 2), 0x03);
    ck_assert_int_eq(machine_mem_read(T.m, BUF_ADDR, buf, 3 * 2048), 0);
    check_cd_data(buf, 10, 3 * 2048);

    /* a reply (INQUIRY) by DMA */
    uint8_t inq[12] = { 0x12, 0, 0, 0, 36 };
    send_packet(inq, 0, true);
    outb(&T, BMDMA_BASE + 8, 0x09);
    hwt_wait(&T, inb(&T, BMDMA_BASE + 10) & 0x04);
    ck_assert_int_eq(machine_mem_read(T.m, BUF_ADDR, buf, 36), 0);
    ck_assert_int_eq(memcmp(buf + 8, "QEMU", 4), 0);
    outb(&T, BMDMA_BASE + 8, 0);
    free(buf);
}
END_TEST

START_TEST(empty_drive)
{
    uint8_t buf[64];
    int len;

    cd_attach(0, NULL);
    expect_check(tur, 0x02, 0x3a);
    uint8_t cap[12] = { 0x25 };
    expect_check(cap, 0x02, 0x3a);
    uint8_t rd[12] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 1 };
    expect_check(rd, 0x02, 0x3a);
    /* INQUIRY works without a medium */
    uint8_t inq[12] = { 0x12, 0, 0, 0, 36 };
    ck_assert_uint_eq(atapi_pio(inq, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 36);
    /* GET EVENT STATUS NOTIFICATION: no medium */
    uint8_t gesn[12] = { 0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8 };
    ck_assert_uint_eq(atapi_pio(gesn, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 8);
    ck_assert_uint_eq(buf[2], 0x04);
    ck_assert_uint_eq(buf[5], 0x00);
    uint8_t gesn_async[12] = { 0x4a, 0, 0, 0, 0x10, 0, 0, 0, 8 };
    expect_check(gesn_async, 0x05, 0x24);
    /* GET CONFIGURATION: no current profile */
    uint8_t gc[12] = { 0x46, 0, 0, 0, 0, 0, 0, 0, 32 };
    ck_assert_uint_eq(atapi_pio(gc, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_uint_eq(buf[7], 0x00);
}
END_TEST

START_TEST(media_change)
{
    struct error *err = NULL;
    uint8_t buf[64];
    uint8_t k, a;
    int len;

    cd_attach(0, NULL);
    char *iso = hwt_make_image(T.dir, "new.iso", CD_SIZE);
    struct bdrv_node *bs = bdrv_open_file(iso, "raw", true, &err);
    ck_assert_ptr_nonnull(bs);
    int before = T.raises[IRQ];
    ck_assert_int_eq(blk_insert(T.blk[3], bs, &err), 0);
    bdrv_unref(bs);
    ck_assert_int_eq(T.raises[IRQ], before + 1);

    /* the medium is reported gone once, then changed */
    expect_check(tur, 0x02, 0x3a);
    ck_assert_uint_eq(atapi_pio(tur, 0, NULL, 0, NULL), 0x41);
    ck_assert_uint_eq(inb(&T, BASE + 1), 0x60);
    /* UNIT ATTENTION stays until REQUEST SENSE */
    ck_assert_uint_eq(atapi_pio(tur, 0, NULL, 0, NULL), 0x01);
    ck_assert_uint_eq(inb(&T, BASE + 1), 0x60);
    request_sense(&k, &a);
    ck_assert_uint_eq(k, 0x06);
    ck_assert_uint_eq(a, 0x28);
    ck_assert_uint_eq(atapi_pio(tur, 0, NULL, 0, NULL), 0x50);
    uint8_t gesn[12] = { 0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8 };
    ck_assert_uint_eq(atapi_pio(gesn, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_uint_eq(buf[4], 0x02);            /* new media */
    ck_assert_uint_eq(buf[5], 0x02);            /* present */
    ck_assert_uint_eq(atapi_pio(gesn, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_uint_eq(buf[4], 0x00);
    uint8_t cap[12] = { 0x25 };
    ck_assert_uint_eq(atapi_pio(cap, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_uint_eq(buf[3], CD_SECTORS - 1);

    blk_eject(T.blk[3]);
    expect_check(tur, 0x02, 0x3a);
    free(iso);
}
END_TEST

START_TEST(guest_eject)
{
    uint8_t buf[64];
    int len;

    cd_attach(CD_SIZE, NULL);
    uint8_t lock[12] = { 0x1e, 0, 0, 0, 1 };
    uint8_t unlock[12] = { 0x1e, 0, 0, 0, 0 };
    uint8_t eject[12] = { 0x1b, 0, 0, 0, 0x02 };
    uint8_t load[12] = { 0x1b, 0, 0, 0, 0x03 };
    ck_assert_uint_eq(atapi_pio(lock, 0, NULL, 0, NULL), 0x50);
    expect_check(eject, 0x02, 0x53);
    uint8_t ms[12] = { 0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 64 };
    ck_assert_uint_eq(atapi_pio(ms, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_uint_eq(buf[14] & 0x02, 0x02);    /* locked */
    ck_assert_uint_eq(atapi_pio(unlock, 0, NULL, 0, NULL), 0x50);
    ck_assert_uint_eq(atapi_pio(eject, 0, NULL, 0, NULL), 0x50);
    expect_check(tur, 0x02, 0x3a);
    uint8_t gesn[12] = { 0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8 };
    ck_assert_uint_eq(atapi_pio(gesn, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_uint_eq(buf[5], 0x01);            /* tray open */
    ck_assert_uint_eq(atapi_pio(load, 0, NULL, 0, NULL), 0x50);
    ck_assert_uint_eq(atapi_pio(tur, 0, NULL, 0, NULL), 0x50);
    /* power condition: no tray movement */
    uint8_t pwr[12] = { 0x1b, 0, 0, 0, 0x22 };
    ck_assert_uint_eq(atapi_pio(pwr, 0, NULL, 0, NULL), 0x50);
    ck_assert_uint_eq(atapi_pio(tur, 0, NULL, 0, NULL), 0x50);
}
END_TEST

/* What the machine's owner heard of tray moves. */
struct tray_log {
    int calls;
    struct blk_backend *blk;
    bool open;
};

static void tray_moved(void *opaque, struct blk_backend *blk, bool open)
{
    struct tray_log *l = opaque;

    l->calls++;
    l->blk = blk;
    l->open = open;
}

/* The owner hears of every tray the guest moves, as the command completes;
 * not of a refused eject, a second eject, power conditions or the host's
 * own insert and eject. */
START_TEST(tray_observer)
{
    struct tray_log l = { 0 };
    uint8_t lock[12] = { 0x1e, 0, 0, 0, 1 };
    uint8_t unlock[12] = { 0x1e, 0, 0, 0, 0 };
    uint8_t eject[12] = { 0x1b, 0, 0, 0, 0x02 };
    uint8_t load[12] = { 0x1b, 0, 0, 0, 0x03 };
    uint8_t pwr[12] = { 0x1b, 0, 0, 0, 0x22 };

    cd_attach(CD_SIZE, NULL);
    machine_set_tray_observer(T.m, tray_moved, &l);
    ck_assert_uint_eq(atapi_pio(lock, 0, NULL, 0, NULL), 0x50);
    expect_check(eject, 0x02, 0x53);
    ck_assert_int_eq(l.calls, 0);
    ck_assert_uint_eq(atapi_pio(unlock, 0, NULL, 0, NULL), 0x50);
    ck_assert_uint_eq(atapi_pio(eject, 0, NULL, 0, NULL), 0x50);
    ck_assert_int_eq(l.calls, 1);
    ck_assert_ptr_eq(l.blk, T.blk[3]);
    ck_assert(l.open);
    ck_assert(blk_dev_is_tray_open(T.blk[3]));
    ck_assert_uint_eq(atapi_pio(eject, 0, NULL, 0, NULL), 0x50);
    ck_assert_uint_eq(atapi_pio(pwr, 0, NULL, 0, NULL), 0x50);
    ck_assert_int_eq(l.calls, 1);
    ck_assert_uint_eq(atapi_pio(load, 0, NULL, 0, NULL), 0x50);
    ck_assert_int_eq(l.calls, 2);
    ck_assert(!l.open);
    blk_eject(T.blk[3]);
    ck_assert_int_eq(l.calls, 2);
    machine_set_tray_observer(T.m, NULL, NULL);
}
END_TEST

/* A host eject request while the guest holds the medium locked: an
 * interrupt, then GET EVENT STATUS reports "eject requested" once; a
 * forced request also unlocks, so the guest's eject then succeeds. */
START_TEST(host_eject_request)
{
    uint8_t buf[64];
    int len;
    uint8_t lock[12] = { 0x1e, 0, 0, 0, 1 };
    uint8_t eject[12] = { 0x1b, 0, 0, 0, 0x02 };
    uint8_t gesn[12] = { 0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8 };

    cd_attach(CD_SIZE, NULL);
    ck_assert_uint_eq(atapi_pio(lock, 0, NULL, 0, NULL), 0x50);
    ck_assert(blk_dev_is_medium_locked(T.blk[3]));
    int raises = T.raises[IRQ];
    blk_dev_eject_request(T.blk[3], false);
    ck_assert_int_eq(T.raises[IRQ], raises + 1);
    ck_assert(blk_dev_is_medium_locked(T.blk[3]));
    ck_assert_uint_eq(atapi_pio(gesn, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_int_eq(len, 8);
    ck_assert_uint_eq(buf[4], 0x01);            /* eject requested */
    ck_assert_uint_eq(buf[5], 0x02);            /* medium present */
    ck_assert_uint_eq(atapi_pio(gesn, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_uint_eq(buf[4], 0x00);            /* reported once */
    expect_check(eject, 0x02, 0x53);            /* still locked */

    blk_dev_eject_request(T.blk[3], true);
    ck_assert(!blk_dev_is_medium_locked(T.blk[3]));
    ck_assert_uint_eq(atapi_pio(gesn, 2048, buf, sizeof(buf), &len), 0x50);
    ck_assert_uint_eq(buf[4], 0x01);
    ck_assert_uint_eq(atapi_pio(eject, 0, NULL, 0, NULL), 0x50);
    ck_assert(blk_dev_is_tray_open(T.blk[3]));
}
END_TEST

START_TEST(read_only_data_protect)
{
    cd_attach(CD_SIZE, NULL);
    uint64_t hash = hwt_file_hash(T.img[3]);
    static const uint8_t ops[] = { 0x2a, 0xaa, 0x2e };
    for (size_t i = 0; i < sizeof(ops); i++) {
        uint8_t w[12] = { ops[i], 0, 0, 0, 0, 1, 0, 0, 1 };
        int before = T.raises[IRQ];
        send_packet(w, 2048, false);
        ck_assert_int_eq(T.raises[IRQ], before + 1);
        ck_assert_uint_eq(inb(&T, BASE + 7), 0x41);
        ck_assert_uint_eq(inb(&T, BASE + 1), 0x70);
        /* no data phase: writes to the data port go nowhere */
        outw(&T, BASE, 0xdead);
        ck_assert_uint_eq(inb(&T, BASE + 7), 0x41);
        uint8_t k, a;
        request_sense(&k, &a);
        ck_assert_uint_eq(k, 0x07);
        ck_assert_uint_eq(a, 0x27);
    }
    hwt_settle(&T);
    ck_assert_uint_eq(hwt_file_hash(T.img[3]), hash);
}
END_TEST

START_TEST(writable_medium_has_no_writes)
{
    cd_attach(CD_SIZE, "read-only=off");
    uint8_t w[12] = { 0x2a, 0, 0, 0, 0, 1, 0, 0, 1 };
    expect_check(w, 0x05, 0x20);
}
END_TEST

static ssize_t eio_preadv(void *opaque, int fd, const struct iovec *iov, int iovcnt,
                          off_t off)
{
    return -EIO;
}

START_TEST(medium_error)
{
    struct error *err = NULL;
    static const struct bdrv_io_hooks hooks = { .preadv = eio_preadv };
    struct bdrv_open_opts o;

    cd_attach(0, NULL);
    char *iso = hwt_make_image(T.dir, "bad.iso", CD_SIZE);
    bdrv_open_opts_init(&o);
    o.driver = strdup("raw");
    o.read_only = (struct opt_bool){ .set = true, .value = true };
    o.file = calloc(1, sizeof(*o.file));
    bdrv_open_opts_init(o.file);
    o.file->driver = strdup("file");
    o.file->filename = strdup(iso);
    o.file->io_hooks = &hooks;
    struct bdrv_node *bs = bdrv_open(&o, &err);
    ck_assert_msg(bs != NULL, "%s", err ? err->msg : "?");
    bdrv_open_opts_free(&o);
    ck_assert_int_eq(blk_insert(T.blk[3], bs, &err), 0);
    bdrv_unref(bs);
    /* consume the media change reports */
    expect_check(tur, 0x02, 0x3a);
    expect_check(tur, 0x06, 0x28);
    /* an unreadable sector: MEDIUM ERROR / UNRECOVERED READ ERROR */
    uint8_t rd[12] = { 0x28, 0, 0, 0, 0, 1, 0, 0, 1 };
    send_packet(rd, 2048, false);
    wait_not_busy();
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x41);
    ck_assert_uint_eq(inb(&T, BASE + 1), 0x30);
    uint8_t k, a;
    request_sense(&k, &a);
    ck_assert_uint_eq(k, 0x03);
    ck_assert_uint_eq(a, 0x11);
    /* and by DMA */
    hwt_enable_bmdma(&T);
    hwt_writel(&T, PRD_ADDR, BUF_ADDR);
    hwt_writel(&T, PRD_ADDR + 4, 0x80000800u);
    send_packet(rd, 0, true);
    outl(&T, BMDMA_BASE + 8 + 4, PRD_ADDR);
    outb(&T, BMDMA_BASE + 8, 0x09);
    hwt_wait(&T, !(inb(&T, BMDMA_BASE + 10) & 0x01));
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x41);
    ck_assert_uint_eq(inb(&T, BASE + 1), 0x30);
    outb(&T, BMDMA_BASE + 8, 0);
    free(iso);
}
END_TEST

START_TEST(resets)
{
    cd_attach(CD_SIZE, NULL);
    /* DEVICE RESET: status 0, signature */
    outb(&T, BASE + 6, 0xb0);
    outb(&T, BASE + 4, 0x55);
    outb(&T, BASE + 7, 0x08);
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x00);
    ck_assert_uint_eq(inb(&T, BASE + 4), 0x14);
    ck_assert_uint_eq(inb(&T, BASE + 5), 0xeb);
    /* DEVICE RESET is taken even with DRQ pending */
    outb(&T, BASE + 7, 0xa0);
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x58);
    outb(&T, BASE + 7, 0x08);
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x00);
    /* SRST: packet devices end with status 0, error 1 */
    outb(&T, ALT, 0x04);
    outb(&T, ALT, 0x00);
    hwt_wait(&T, inb(&T, ALT) != 0x80 && !(inb(&T, ALT) & 0x80));
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x00);
    ck_assert_uint_eq(inb(&T, BASE + 1), 0x01);
    /* EXECUTE DEVICE DIAGNOSTIC likewise, without an interrupt */
    int before = T.raises[IRQ];
    outb(&T, BASE + 7, 0x90);
    ck_assert_uint_eq(inb(&T, BASE + 7), 0x00);
    ck_assert_int_eq(T.raises[IRQ], before);
    ck_assert_uint_eq(atapi_pio(tur, 0, NULL, 0, NULL), 0x50);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("hw-atapi");
    TCase *tc = tcase_create("atapi");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, identify);
    tcase_add_test(tc, basic_commands);
    tcase_add_test(tc, read_toc);
    tcase_add_test(tc, read_pio);
    tcase_add_test(tc, read_dma);
    tcase_add_test(tc, read_cd_raw);
    tcase_add_test(tc, empty_drive);
    tcase_add_test(tc, media_change);
    tcase_add_test(tc, guest_eject);
    tcase_add_test(tc, tray_observer);
    tcase_add_test(tc, host_eject_request);
    tcase_add_test(tc, read_only_data_protect);
    tcase_add_test(tc, writable_medium_has_no_writes);
    tcase_add_test(tc, medium_error);
    tcase_add_test(tc, resets);
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
