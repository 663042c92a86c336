/*
 * tests/unit/test-hw-virtio.c — virtio-blk-pci through its registers and
 * guest memory only (machine_pio_* / machine_mem_*), over real raw images:
 * config space, legacy and modern set-up, every request type, read-only
 * disks (fixed and changed at run time) whose image must not change, MSI-X
 * with masking, several queues, reset with requests in flight, detach, and
 * hostile rings.
 */
#include "tests/unit/hw-test.h"
#include "hw/hw-int.h"

#define IMG_SECTORS 8192
#define IMG_SIZE    (IMG_SECTORS * 512)
#define SLOT        2
#define LEGACY      0xc000
#define MSIX        0xfe100000ull
#define MODERN      0xfe000000ull
#define ISR         (MODERN + 0x1000)
#define DEVCFG      (MODERN + 0x2000)
#define NOTIFY      (MODERN + 0x3000)
#define RING        0x100000ull     /* queue q at RING + q * 0x10000 */
#define DATA        0x400000ull
#define MSI_ADDR    0x300000ull     /* MSI-X messages land in RAM */

#define F_NEXT      1
#define F_WRITE     2
#define F_INDIRECT  4

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WZ 13

static struct hwt T;
static uint16_t qsize[4];
static uint16_t avail_idx[4];
static uint16_t next_desc[4];

static void setup(void)
{
    hwt_init(&T);
    memset(qsize, 0, sizeof(qsize));
    memset(avail_idx, 0, sizeof(avail_idx));
    memset(next_desc, 0, sizeof(next_desc));
}

static void teardown(void)
{
    hwt_fini(&T);
}

static void wr(uint64_t a, const void *b, size_t n)
{
    ck_assert_int_eq(machine_mem_write(T.m, a, b, n), 0);
}

static void rd(uint64_t a, void *b, size_t n)
{
    ck_assert_int_eq(machine_mem_read(T.m, a, b, n), 0);
}

static void w8(uint64_t a, uint8_t v) { wr(a, &v, 1); }
static void w16(uint64_t a, uint16_t v) { wr(a, &v, 2); }
static void w32(uint64_t a, uint32_t v) { wr(a, &v, 4); }
static uint8_t r8(uint64_t a) { uint8_t v; rd(a, &v, 1); return v; }
static uint16_t r16(uint64_t a) { uint16_t v; rd(a, &v, 2); return v; }
static uint32_t r32(uint64_t a) { uint32_t v; rd(a, &v, 4); return v; }

static void attach_blk(unsigned nq, const char *serial);

/* Attach a virtio disk (num_queues, read-only or not) and map its BARs. */
static void attach(bool ro, unsigned nq, const char *serial)
{
    struct error *err = NULL;
    struct bdrv_open_opts o;
    char *str = NULL;

    T.img[0] = hwt_make_image(T.dir, "v.raw", IMG_SIZE);
    ck_assert_int_ge(asprintf(&str, "driver=raw,file.filename=%s%s", T.img[0],
                              ro ? ",read-only=on" : ",discard=unmap"), 0);
    ck_assert_int_eq(bdrv_open_opts_parse(str, &o, &err), 0);
    free(str);
    T.blk[0] = blk_open(T.loop, &o, NULL, &err);
    ck_assert_msg(T.blk[0] != NULL, "blk_open: %s", err ? err->msg : "?");
    bdrv_open_opts_free(&o);
    attach_blk(nq, serial);
}

/* Put T.blk[0] on the bus as a virtio disk and map its BARs. */
static void attach_blk(unsigned nq, const char *serial)
{
    struct error *err = NULL;
    struct disk_spec spec;
    disk_spec_init(&spec);
    spec.iface = DISK_IF_VIRTIO;
    spec.num_queues = nq;
    spec.serial = serial ? strdup(serial) : NULL;
    ck_assert_int_eq(machine_attach_disk(T.m, &spec, T.blk[0], &err), 0);
    disk_spec_free(&spec);

    hwt_cfg_write(&T, SLOT, 0, 0x10, 4, LEGACY | 1);
    hwt_cfg_write(&T, SLOT, 0, 0x14, 4, (uint32_t)MSIX);
    hwt_cfg_write(&T, SLOT, 0, 0x20, 4, (uint32_t)MODERN);
    hwt_cfg_write(&T, SLOT, 0, 0x24, 4, 0);
    hwt_cfg_write(&T, SLOT, 0, 0x04, 2, 0x0007);
    hwt_cfg_write(&T, 1, 0, 0x61, 1, 11);       /* PIRQB -> IRQ 11 */
}

static uint64_t desc_base(int q) { return RING + q * 0x10000ull; }
static uint64_t avail_base(int q) { return desc_base(q) + 0x4000; }
static uint64_t used_base(int q) { return desc_base(q) + 0x8000; }

/* Modern driver init with `features` (low word; VERSION_1 always). */
static void modern_init(uint32_t features, unsigned nq, uint16_t size)
{
    w8(MODERN + 0x14, 0);
    w8(MODERN + 0x14, 1);
    w8(MODERN + 0x14, 3);
    w32(MODERN + 0x08, 0);
    w32(MODERN + 0x0c, features);
    w32(MODERN + 0x08, 1);
    w32(MODERN + 0x0c, 1);
    w8(MODERN + 0x14, 0x0b);
    ck_assert_uint_eq(r8(MODERN + 0x14), 0x0b);
    for (unsigned q = 0; q < nq; q++) {
        uint8_t zero[0x10000] = { 0 };
        wr(desc_base(q), zero, sizeof(zero));
        w16(MODERN + 0x16, q);
        if (size)
            w16(MODERN + 0x18, size);
        qsize[q] = r16(MODERN + 0x18);
        w32(MODERN + 0x20, (uint32_t)desc_base(q));
        w32(MODERN + 0x24, 0);
        w32(MODERN + 0x28, (uint32_t)avail_base(q));
        w32(MODERN + 0x2c, 0);
        w32(MODERN + 0x30, (uint32_t)used_base(q));
        w32(MODERN + 0x34, 0);
        w16(MODERN + 0x1c, 1);
        avail_idx[q] = 0;
        next_desc[q] = 0;
    }
    w8(MODERN + 0x14, 0x0f);
}

static void set_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
    uint8_t d[16];
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
    wr(table + 16 * i, d, 16);
}

static void publish(int q, uint16_t head)
{
    w16(avail_base(q) + 4 + 2 * (avail_idx[q] % qsize[q]), head);
    avail_idx[q]++;
    w16(avail_base(q) + 2, avail_idx[q]);
}

static void kick(int q)
{
    w16(NOTIFY + 4 * q, q);
}

/* Per-request scratch: header, status byte, data at fixed places. */
static uint64_t hdr_addr(int n) { return 0x200000 + 32 * n; }
static uint64_t st_addr(int n) { return 0x210000 + n; }

/*
 * Queue a request of `type` on `q` (n = scratch slot): header, optional
 * payload (readable for OUT/DISCARD/WZ, writable otherwise), status.
 */
static uint16_t queue_req(int q, int n, uint32_t type, uint64_t sector,
                          uint64_t data, uint32_t len, bool data_out)
{
    uint8_t h[16] = { 0 };
    uint16_t d = next_desc[q];
    uint64_t table = desc_base(q);

    memcpy(h, &type, 4);
    memcpy(h + 8, &sector, 8);
    wr(hdr_addr(n), h, 16);
    w8(st_addr(n), 0xff);
    set_desc(table, d, hdr_addr(n), 16, F_NEXT, d + 1);
    if (len) {
        set_desc(table, d + 1, data, len, F_NEXT | (data_out ? 0 : F_WRITE), d + 2);
        set_desc(table, d + 2, st_addr(n), 1, F_WRITE, 0);
        next_desc[q] = (d + 3) % qsize[q];
    } else {
        set_desc(table, d + 1, st_addr(n), 1, F_WRITE, 0);
        next_desc[q] = (d + 2) % qsize[q];
    }
    publish(q, d);
    return d;
}

static void wait_used(int q, uint16_t idx)
{
    hwt_wait(&T, r16(used_base(q) + 2) == idx);
}

static uint8_t dwz_req(int n, uint32_t type, uint64_t sector, uint32_t nsect,
                       uint32_t flags)
{
    uint8_t seg[16];
    memcpy(seg, &sector, 8);
    memcpy(seg + 8, &nsect, 4);
    memcpy(seg + 12, &flags, 4);
    wr(DATA + 0x100000 + 16 * n, seg, 16);
    queue_req(0, n, type, 0, DATA + 0x100000 + 16 * n, 16, true);
    uint16_t want = avail_idx[0];
    kick(0);
    wait_used(0, want);
    return r8(st_addr(n));
}

/* ------------------------------------------------------------------ */

START_TEST(pci_identity_and_caps)
{
    attach(false, 0, NULL);
    ck_assert_uint_eq(hwt_cfg_read(&T, SLOT, 0, 0x00, 4), 0x10011af4);
    ck_assert_uint_eq(hwt_cfg_read(&T, SLOT, 0, 0x08, 4), 0x01000000);
    ck_assert_uint_eq(hwt_cfg_read(&T, SLOT, 0, 0x2c, 4), 0x00021af4);
    ck_assert_uint_eq(hwt_cfg_read(&T, SLOT, 0, 0x3d, 1), 1);
    ck_assert_uint_eq(hwt_cfg_read(&T, SLOT, 0, 0x34, 1), 0x98);
    /* the chain QEMU builds */
    static const uint8_t chain[][2] = {
        { 0x98, 0x11 }, { 0x84, 0x09 }, { 0x70, 0x09 }, { 0x60, 0x09 },
        { 0x50, 0x09 }, { 0x40, 0x09 },
    };
    uint8_t p = 0x98;
    for (size_t i = 0; i < ARRAY_SIZE(chain); i++) {
        ck_assert_uint_eq(p, chain[i][0]);
        ck_assert_uint_eq(hwt_cfg_read(&T, SLOT, 0, p, 1), chain[i][1]);
        p = hwt_cfg_read(&T, SLOT, 0, p + 1, 1);
    }
    ck_assert_uint_eq(p, 0);
    ck_assert_uint_eq(hwt_cfg_read(&T, SLOT, 0, 0x70 + 16, 4), 4);
    ck_assert_uint_eq(hwt_cfg_read(&T, SLOT, 0, 0x9a, 2), 1);    /* 2 vectors */
    /* BAR sizing */
    hwt_cfg_write(&T, SLOT, 0, 0x04, 2, 0);
    hwt_cfg_write(&T, SLOT, 0, 0x20, 4, 0xffffffff);
    ck_assert_uint_eq(hwt_cfg_read(&T, SLOT, 0, 0x20, 4), 0xffffc00c);
    hwt_cfg_write(&T, SLOT, 0, 0x10, 4, 0xffffffff);
    ck_assert_uint_eq(hwt_cfg_read(&T, SLOT, 0, 0x10, 4), 0xffffff81);
    hwt_cfg_write(&T, SLOT, 0, 0x14, 4, 0xffffffff);
    ck_assert_uint_eq(hwt_cfg_read(&T, SLOT, 0, 0x14, 4), 0xfffff000);
}
END_TEST

START_TEST(modern_read_write_flush_get_id)
{
    attach(false, 1, "SERIAL-42");
    modern_init(1u << 9, 1, 0);
    ck_assert_uint_eq(r32(DEVCFG), IMG_SECTORS);
    ck_assert_uint_eq(r32(DEVCFG + 20), 512);

    /* OUT 8 sectors at 100, then read them back */
    uint8_t buf[4096], back[4096];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 3 + 1);
    wr(DATA, buf, sizeof(buf));
    queue_req(0, 0, T_OUT, 100, DATA, 4096, true);
    kick(0);
    wait_used(0, 1);
    ck_assert_uint_eq(r8(st_addr(0)), 0);
    ck_assert_uint_eq(r32(used_base(0) + 8), 1);       /* used.len */
    hwt_file_read(T.img[0], 100 * 512, back, sizeof(back));
    ck_assert_mem_eq(back, buf, sizeof(buf));

    memset(back, 0, sizeof(back));
    wr(DATA + 0x10000, back, sizeof(back));
    queue_req(0, 1, T_IN, 100, DATA + 0x10000, 4096, false);
    kick(0);
    wait_used(0, 2);
    ck_assert_uint_eq(r8(st_addr(1)), 0);
    ck_assert_uint_eq(r32(used_base(0) + 16), 4097);
    rd(DATA + 0x10000, back, sizeof(back));
    ck_assert_mem_eq(back, buf, sizeof(buf));

    queue_req(0, 2, T_FLUSH, 0, 0, 0, false);
    kick(0);
    wait_used(0, 3);
    ck_assert_uint_eq(r8(st_addr(2)), 0);

    uint8_t id[24];
    memset(id, 0xee, sizeof(id));
    wr(DATA, id, sizeof(id));
    queue_req(0, 3, T_GET_ID, 0, DATA, 20, false);
    kick(0);
    wait_used(0, 4);
    ck_assert_uint_eq(r8(st_addr(3)), 0);
    rd(DATA, id, sizeof(id));
    ck_assert_mem_eq(id, "SERIAL-42\0\0\0\0\0\0\0\0\0\0\0\xee\xee\xee\xee", 24);

    /* unknown type */
    queue_req(0, 4, 0x55, 0, 0, 0, false);
    kick(0);
    wait_used(0, 5);
    ck_assert_uint_eq(r8(st_addr(4)), 2);
}
END_TEST

START_TEST(discard_and_write_zeroes)
{
    uint8_t b[512], z[512] = { 0 };

    attach(false, 1, NULL);
    modern_init(1u << 13 | 1u << 14, 1, 0);
    ck_assert_uint_eq(dwz_req(0, T_WZ, 10, 2, 0), 0);
    hwt_file_read(T.img[0], 10 * 512, b, 512);
    ck_assert_mem_eq(b, z, 512);
    hwt_file_read(T.img[0], 11 * 512, b, 512);
    ck_assert_mem_eq(b, z, 512);
    hwt_file_read(T.img[0], 12 * 512, b, 1);
    ck_assert_uint_eq(b[0], hwt_pat(12 * 512));
    ck_assert_uint_eq(dwz_req(1, T_WZ, 20, 1, 1), 0);
    ck_assert_uint_eq(dwz_req(2, T_DISCARD, 30, 8, 0), 0);
    /* UNMAP on discard, unknown flags, past the end, over the limit */
    ck_assert_uint_eq(dwz_req(3, T_DISCARD, 30, 8, 1), 2);
    ck_assert_uint_eq(dwz_req(4, T_WZ, 30, 8, 2), 2);
    ck_assert_uint_eq(dwz_req(5, T_WZ, IMG_SECTORS - 1, 2, 0), 1);
    ck_assert_uint_eq(dwz_req(6, T_DISCARD, 0, 0x400000, 0), 1);
}
END_TEST

/* Every write-type request on a read-only disk: IOERR, never submitted. */
static void expect_writes_refused(int base)
{
    struct blk_stats st;
    uint8_t buf[1024];

    memset(buf, 0x42, sizeof(buf));
    wr(DATA, buf, sizeof(buf));
    queue_req(0, base, T_OUT, 0, DATA, 1024, true);
    uint16_t want = avail_idx[0];
    kick(0);
    wait_used(0, want);
    ck_assert_uint_eq(r8(st_addr(base)), 1);
    ck_assert_uint_eq(dwz_req(base + 1, T_DISCARD, 0, 8, 0), 1);
    ck_assert_uint_eq(dwz_req(base + 2, T_WZ, 0, 8, 1), 1);
    ck_assert_uint_eq(dwz_req(base + 3, T_WZ, 0, 8, 0), 1);
    queue_req(0, base + 4, T_FLUSH, 0, 0, 0, false);
    want = avail_idx[0];
    kick(0);
    wait_used(0, want);
    ck_assert_uint_eq(r8(st_addr(base + 4)), 0);
    blk_get_stats(T.blk[0], &st);
    ck_assert_uint_eq(st.wr_ops + st.zero_ops + st.discard_ops, 0);
    ck_assert_uint_eq(st.rejected_writes, 0);
}

START_TEST(read_only_disk)
{
    attach(true, 1, NULL);
    uint64_t hash = hwt_file_hash(T.img[0]);
    w32(MODERN + 0x00, 0);
    ck_assert_uint_eq(r32(MODERN + 0x04) & (1u << 5), 1u << 5);
    ck_assert_uint_eq(machine_pio_read(T.m, LEGACY, 4) & (1u << 5), 1u << 5);
    modern_init(1u << 5 | 1u << 9 | 1u << 13 | 1u << 14, 1, 0);
    expect_writes_refused(0);
    /* reads still work */
    queue_req(0, 9, T_IN, 1, DATA, 512, false);
    kick(0);
    wait_used(0, avail_idx[0]);
    ck_assert_uint_eq(r8(st_addr(9)), 0);
    ck_assert_uint_eq(r8(DATA + 3), hwt_pat(512 + 3));
    hwt_settle(&T);
    ck_assert_uint_eq(hwt_file_hash(T.img[0]), hash);
}
END_TEST

START_TEST(read_only_at_run_time)
{
    struct error *err = NULL;

    attach(false, 1, NULL);
    /* MSI-X: config vector 0, queue vector 1 */
    w32(MSIX + 0, (uint32_t)MSI_ADDR);
    w32(MSIX + 8, 0x1111);
    w32(MSIX + 12, 0);
    w32(MSIX + 16, (uint32_t)MSI_ADDR + 16);
    w32(MSIX + 24, 0x2222);
    w32(MSIX + 28, 0);
    hwt_cfg_write(&T, SLOT, 0, 0x9a, 2, 0x8000);
    modern_init(1u << 9 | 1u << 13 | 1u << 14, 1, 0);
    w16(MODERN + 0x10, 0);
    w16(MODERN + 0x16, 0);
    w16(MODERN + 0x1a, 1);
    uint8_t gen = r8(MODERN + 0x15);
    w32(MODERN + 0x00, 0);
    ck_assert_uint_eq(r32(MODERN + 0x04) & (1u << 5), 0);

    ck_assert_int_eq(blk_set_read_only(T.blk[0], true, &err), 0);
    /* config-change interrupt: MSI-X vector 0, ISR bit 1, new generation */
    ck_assert_uint_eq(r32(MSI_ADDR), 0x1111);
    ck_assert_uint_eq(r8(ISR) & 2, 2);
    ck_assert_uint_ne(r8(MODERN + 0x15), gen);
    ck_assert_uint_eq(r32(MODERN + 0x04) & (1u << 5), 1u << 5);
    uint64_t hash = hwt_file_hash(T.img[0]);
    expect_writes_refused(0);
    ck_assert_uint_eq(r32(MSI_ADDR + 16), 0x2222);
    hwt_settle(&T);
    ck_assert_uint_eq(hwt_file_hash(T.img[0]), hash);

    ck_assert_int_eq(blk_set_read_only(T.blk[0], false, &err), 0);
    uint8_t buf[512];
    memset(buf, 0x77, sizeof(buf));
    wr(DATA, buf, sizeof(buf));
    queue_req(0, 20, T_OUT, 5, DATA, 512, true);
    kick(0);
    wait_used(0, avail_idx[0]);
    ck_assert_uint_eq(r8(st_addr(20)), 0);
    hwt_file_read(T.img[0], 5 * 512, buf, 1);
    ck_assert_uint_eq(buf[0], 0x77);
}
END_TEST

/* Live resize (blk_truncate): the capacity in device config grows, the
 * driver gets a config interrupt, and the new sectors can be written. A
 * shrink, an unaligned size and a read-only disk are refused with the
 * image untouched. */
START_TEST(resize_at_run_time)
{
    struct error *err = NULL;
    struct stat sb;

    attach(false, 1, NULL);
    w32(MSIX + 0, (uint32_t)MSI_ADDR);
    w32(MSIX + 8, 0x1111);
    w32(MSIX + 12, 0);
    hwt_cfg_write(&T, SLOT, 0, 0x9a, 2, 0x8000);
    modern_init(1u << 9 | 1u << 13 | 1u << 14, 1, 0);
    w16(MODERN + 0x10, 0);
    ck_assert_uint_eq(r32(DEVCFG + 0), IMG_SECTORS);
    ck_assert_uint_eq(r32(DEVCFG + 4), 0);
    uint8_t gen = r8(MODERN + 0x15);

    ck_assert_int_eq(blk_truncate(T.blk[0], IMG_SIZE - 512, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "Shrinking a disk in use is not supported "
                     "(4193792 bytes is less than the current 4194304)");
    error_free(err);
    err = NULL;
    ck_assert_int_eq(blk_truncate(T.blk[0], IMG_SIZE + 100, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "New size 4194404 is not a multiple of 512 bytes");
    error_free(err);
    err = NULL;
    ck_assert_uint_eq(r8(ISR) & 2, 0);
    ck_assert_uint_eq(r32(MSI_ADDR), 0);

    ck_assert_int_eq(blk_truncate(T.blk[0], 2 * IMG_SIZE, &err), 0);
    ck_assert_uint_eq(r32(DEVCFG + 0), 2 * IMG_SECTORS);
    ck_assert_uint_eq(r32(MSI_ADDR), 0x1111);
    ck_assert_uint_eq(r8(ISR) & 2, 2);
    ck_assert_uint_ne(r8(MODERN + 0x15), gen);
    ck_assert_int_eq(stat(T.img[0], &sb), 0);
    ck_assert_int_eq(sb.st_size, 2 * IMG_SIZE);

    /* the last new sector takes a write */
    uint8_t buf[512];
    memset(buf, 0x5a, sizeof(buf));
    wr(DATA, buf, sizeof(buf));
    queue_req(0, 3, T_OUT, 2 * IMG_SECTORS - 1, DATA, 512, true);
    kick(0);
    wait_used(0, avail_idx[0]);
    ck_assert_uint_eq(r8(st_addr(3)), 0);
    hwt_file_read(T.img[0], 2 * (uint64_t)IMG_SIZE - 512, buf, 1);
    ck_assert_uint_eq(buf[0], 0x5a);

    /* growing an image is a write: a read-only disk is refused */
    ck_assert_int_eq(blk_set_read_only(T.blk[0], true, &err), 0);
    uint64_t hash = hwt_file_hash(T.img[0]);
    ck_assert_int_eq(blk_truncate(T.blk[0], 4 * IMG_SIZE, &err), -EACCES);
    ck_assert_str_eq(err->msg, "Image is read-only");
    error_free(err);
    ck_assert_uint_eq(r32(DEVCFG + 0), 2 * IMG_SECTORS);
    ck_assert_int_eq(stat(T.img[0], &sb), 0);
    ck_assert_int_eq(sb.st_size, 2 * IMG_SIZE);
    ck_assert_uint_eq(hwt_file_hash(T.img[0]), hash);
}
END_TEST

START_TEST(legacy_with_msix_and_intx)
{
    attach(false, 1, NULL);
    /* INTx first: MSI-X off, device config at 0x14 */
    outb(&T, LEGACY + 0x12, 0);
    outb(&T, LEGACY + 0x12, 3);
    outl(&T, LEGACY + 0x04, 1u << 9);
    outw(&T, LEGACY + 0x0e, 0);
    ck_assert_uint_eq(inw(&T, LEGACY + 0x0c), 256);
    qsize[0] = 256;
    uint8_t zero[0x3000] = { 0 };
    wr(RING, zero, sizeof(zero));
    outl(&T, LEGACY + 0x08, RING >> 12);
    outb(&T, LEGACY + 0x12, 7);
    ck_assert_uint_eq(inl(&T, LEGACY + 0x14), IMG_SECTORS);
    /* legacy layout: avail at +0x1000, used at +0x2000 */
    set_desc(RING, 0, hdr_addr(0), 16, F_NEXT, 1);
    set_desc(RING, 1, DATA, 512, F_NEXT | F_WRITE, 2);
    set_desc(RING, 2, st_addr(0), 1, F_WRITE, 0);
    uint8_t h[16] = { 0 };
    h[8] = 7;
    wr(hdr_addr(0), h, 16);
    w16(RING + 0x1004, 0);
    w16(RING + 0x1002, 1);
    outw(&T, LEGACY + 0x10, 0);
    hwt_wait(&T, T.level[11]);
    ck_assert_uint_eq(r16(RING + 0x2002), 1);
    ck_assert_uint_eq(r8(DATA), hwt_pat(7 * 512));
    ck_assert_uint_eq(inb(&T, LEGACY + 0x13), 1);
    ck_assert(!T.level[11]);
    ck_assert_uint_eq(inb(&T, LEGACY + 0x13), 0);

    /* MSI-X on: vectors at 0x14/0x16, config moves to 0x18 */
    hwt_cfg_write(&T, SLOT, 0, 0x9a, 2, 0x8000);
    ck_assert_uint_eq(inl(&T, LEGACY + 0x18), IMG_SECTORS);
    outw(&T, LEGACY + 0x16, 1);
    ck_assert_uint_eq(inw(&T, LEGACY + 0x16), 1);
    outw(&T, LEGACY + 0x14, 9);
    ck_assert_uint_eq(inw(&T, LEGACY + 0x14), 0xffff);
    w32(MSIX + 16, (uint32_t)MSI_ADDR);
    w32(MSIX + 24, 0xabcd);
    w32(MSIX + 28, 1);                          /* masked */
    set_desc(RING, 3, hdr_addr(0), 16, F_NEXT, 4);
    set_desc(RING, 4, DATA, 512, F_NEXT | F_WRITE, 5);
    set_desc(RING, 5, st_addr(0), 1, F_WRITE, 0);
    w16(RING + 0x1006, 3);
    w16(RING + 0x1002, 2);
    outw(&T, LEGACY + 0x10, 0);
    hwt_wait(&T, r16(RING + 0x2002) == 2);
    /* masked: pending bit in the PBA, nothing sent, no INTx */
    ck_assert_uint_eq(r32(MSI_ADDR), 0);
    ck_assert_uint_eq(r32(MSIX + 0x800), 2);
    ck_assert(!T.level[11]);
    w32(MSIX + 28, 0);                          /* unmask: delivered */
    ck_assert_uint_eq(r32(MSI_ADDR), 0xabcd);
    ck_assert_uint_eq(r32(MSIX + 0x800), 0);
    /* the function mask holds every vector until it is cleared */
    hwt_cfg_write(&T, SLOT, 0, 0x9a, 2, 0xc000);
    w32(MSI_ADDR, 0);
    w16(RING + 0x1008, 0);
    w16(RING + 0x1002, 3);
    outw(&T, LEGACY + 0x10, 0);
    hwt_wait(&T, r16(RING + 0x2002) == 3);
    ck_assert_uint_eq(r32(MSI_ADDR), 0);
    ck_assert_uint_eq(r32(MSIX + 0x800), 2);
    hwt_cfg_write(&T, SLOT, 0, 0x9a, 2, 0x8000);
    ck_assert_uint_eq(r32(MSI_ADDR), 0xabcd);
    ck_assert_uint_eq(r32(MSIX + 0x800), 0);
    /* without bus mastering the rings are out of reach: no DMA, and the
     * device asks for a reset */
    hwt_cfg_write(&T, SLOT, 0, 0x04, 2, 0x0003);
    w16(RING + 0x100a, 0);
    w16(RING + 0x1002, 4);
    outw(&T, LEGACY + 0x10, 0);
    hwt_settle(&T);
    ck_assert_uint_eq(r16(RING + 0x2002), 3);
    ck_assert_uint_eq(inb(&T, LEGACY + 0x12) & 0x40, 0x40);
    hwt_cfg_write(&T, SLOT, 0, 0x04, 2, 0x0007);

    /* PFN 0 resets */
    outl(&T, LEGACY + 0x08, 0);
    ck_assert_uint_eq(inb(&T, LEGACY + 0x12), 0);
    ck_assert_uint_eq(inl(&T, LEGACY + 0x08), 0);
}
END_TEST

START_TEST(multiqueue_indirect_many_in_flight)
{
    attach(false, 4, NULL);
    ck_assert_uint_eq(hwt_cfg_read(&T, SLOT, 0, 0x9a, 2), 4);  /* 5 vectors */
    ck_assert_uint_eq(r16(MODERN + 0x12), 4);
    ck_assert_uint_eq(r16(DEVCFG + 34), 4);
    modern_init(1u << 28, 4, 64);
    ck_assert_uint_eq(qsize[3], 64);
    /* 32 reads of 4 KiB per queue, half of them through indirect tables */
    for (int q = 0; q < 4; q++) {
        for (int k = 0; k < 32; k++) {
            int n = q * 32 + k;
            uint64_t sector = (uint64_t)n * 8 + 1;
            uint8_t h[16] = { 0 };
            memcpy(h + 8, &sector, 8);
            wr(hdr_addr(n), h, 16);
            w8(st_addr(n), 0xff);
            uint64_t data = DATA + (uint64_t)n * 4096;
            if (k & 1) {
                uint64_t tbl = 0x380000 + n * 64;
                set_desc(tbl, 0, hdr_addr(n), 16, F_NEXT, 1);
                set_desc(tbl, 1, data, 2048, F_NEXT | F_WRITE, 2);
                set_desc(tbl, 2, data + 2048, 2048, F_NEXT | F_WRITE, 3);
                set_desc(tbl, 3, st_addr(n), 1, F_WRITE, 0);
                set_desc(desc_base(q), next_desc[q], tbl, 64, F_INDIRECT, 0);
                publish(q, next_desc[q]);
                next_desc[q]++;
            } else {
                uint16_t d = next_desc[q];
                set_desc(desc_base(q), d, hdr_addr(n), 16, F_NEXT, d + 1);
                set_desc(desc_base(q), d + 1, data, 4096, F_NEXT | F_WRITE, d + 2);
                set_desc(desc_base(q), d + 2, st_addr(n), 1, F_WRITE, 0);
                publish(q, d);
                next_desc[q] += 3;
            }
        }
        kick(q);
    }
    for (int q = 0; q < 4; q++)
        wait_used(q, 32);
    for (int n = 0; n < 128; n++) {
        uint64_t off = ((uint64_t)n * 8 + 1) * 512;
        ck_assert_uint_eq(r8(st_addr(n)), 0);
        ck_assert_uint_eq(r8(DATA + (uint64_t)n * 4096 + 4095), hwt_pat(off + 4095));
        ck_assert_uint_eq(r8(DATA + (uint64_t)n * 4096 + 9), hwt_pat(off + 9));
    }
}
END_TEST

START_TEST(reset_drops_late_completions)
{
    attach(false, 1, NULL);
    modern_init(0, 1, 0);
    for (int n = 0; n < 16; n++)
        queue_req(0, n, T_IN, n * 8, DATA + n * 4096ull, 4096, false);
    kick(0);
    /* Reset before the loop ran any completion. */
    w8(MODERN + 0x14, 0);
    hwt_settle(&T);
    ck_assert_uint_eq(blk_inflight(T.blk[0]), 0);
    ck_assert_uint_eq(r16(used_base(0) + 2), 0);
    for (int n = 0; n < 16; n++)
        ck_assert_uint_eq(r8(st_addr(n)), 0xff);
    /* and the device works again */
    modern_init(0, 1, 0);
    queue_req(0, 0, T_IN, 3, DATA, 512, false);
    kick(0);
    wait_used(0, 1);
    ck_assert_uint_eq(r8(st_addr(0)), 0);
}
END_TEST

START_TEST(detach_and_free_with_requests_in_flight)
{
    struct error *err = NULL;

    attach(false, 1, NULL);
    modern_init(0, 1, 0);
    for (int n = 0; n < 16; n++)
        queue_req(0, n, T_IN, n * 8, DATA + n * 4096ull, 4096, false);
    kick(0);
    ck_assert_int_eq(machine_detach_disk(T.m, "nope", &err), -ENOENT);
    error_free(err);
    err = NULL;
    ck_assert_int_eq(machine_detach_disk(T.m, "virtio0", &err), 0);
    ck_assert_uint_eq(hwt_cfg_read(&T, SLOT, 0, 0, 4), 0xffffffff);
    ck_assert_uint_eq(blk_inflight(T.blk[0]), 0);
    /* machine_free with requests in flight: the teardown */
    attach_blk(1, NULL);
    modern_init(0, 1, 0);
    queue_req(0, 0, T_IN, 0, DATA, 4096, false);
    kick(0);
}
END_TEST

/* A hostile ring sets DEVICE_NEEDS_RESET (0x40) with a config interrupt. */
static void expect_needs_reset(void)
{
    ck_assert_uint_eq(r8(MODERN + 0x14), 0x4f);
    ck_assert_uint_eq(r8(ISR) & 2, 2);
}

START_TEST(hostile_rings)
{
    attach(false, 1, NULL);
    uint64_t hash = hwt_file_hash(T.img[0]);

    /* notify before setup, and for queues that do not exist */
    w8(MODERN + 0x14, 0);
    w8(MODERN + 0x14, 3);
    kick(0);
    w16(NOTIFY + 4 * 3, 3);
    w16(NOTIFY + 0xffc, 0);
    ck_assert_uint_eq(r8(MODERN + 0x14), 3);

    /* queue sizes that are not powers of two (or too big) keep the old
     * size and stop the device until reset */
    static const uint16_t bad_sizes[] = { 100, 2048, 0, 3 };
    for (size_t i = 0; i < ARRAY_SIZE(bad_sizes); i++) {
        w8(MODERN + 0x14, 0);
        w8(MODERN + 0x14, 7);
        w16(MODERN + 0x16, 0);
        w16(MODERN + 0x18, bad_sizes[i]);
        ck_assert_uint_eq(r16(MODERN + 0x18), 256);
        ck_assert_uint_eq(r8(MODERN + 0x14), 0x47);
        ck_assert_uint_eq(r8(ISR) & 2, 2);
    }
    /* so does disabling a queue through queue_enable */
    modern_init(0, 1, 8);
    w16(MODERN + 0x1c, 0);
    expect_needs_reset();
    /* and resizing a live queue */
    modern_init(0, 1, 8);
    w16(MODERN + 0x18, 16);
    ck_assert_uint_eq(r16(MODERN + 0x18), 8);
    expect_needs_reset();

    /* loop */
    modern_init(1u << 28, 1, 8);
    set_desc(desc_base(0), 0, hdr_addr(0), 16, F_NEXT, 1);
    set_desc(desc_base(0), 1, DATA, 512, F_NEXT | F_WRITE, 0);
    publish(0, 0);
    kick(0);
    expect_needs_reset();
    /* broken: ignores notifications until reset */
    kick(0);
    ck_assert_uint_eq(r16(used_base(0) + 2), 0);

    /* a data buffer outside RAM (RAM is 128 MiB) */
    modern_init(1u << 28, 1, 8);
    queue_req(0, 0, T_IN, 0, 0x10000000, 512, false);
    kick(0);
    expect_needs_reset();
    /* a buffer that straddles the end of RAM */
    modern_init(1u << 28, 1, 8);
    queue_req(0, 0, T_IN, 0, 0x8000000 - 256, 512, false);
    kick(0);
    expect_needs_reset();

    /* used ring outside RAM */
    modern_init(1u << 28, 1, 8);
    w32(MODERN + 0x30, 0x7fffff0);
    queue_req(0, 0, T_IN, 0, DATA, 512, false);
    kick(0);
    expect_needs_reset();

    /* nested indirect tables */
    modern_init(1u << 28, 1, 8);
    set_desc(0x390000, 0, 0x391000, 32, F_INDIRECT, 0);
    set_desc(desc_base(0), 0, 0x390000, 16, F_INDIRECT, 0);
    publish(0, 0);
    kick(0);
    expect_needs_reset();

    /* indirect not negotiated */
    modern_init(0, 1, 8);
    set_desc(0x390000, 0, hdr_addr(0), 16, F_NEXT, 1);
    set_desc(0x390000, 1, st_addr(0), 1, F_WRITE, 0);
    set_desc(desc_base(0), 0, 0x390000, 32, F_INDIRECT, 0);
    publish(0, 0);
    kick(0);
    expect_needs_reset();

    /* an indirect table of 1025 entries */
    modern_init(1u << 28, 1, 8);
    set_desc(desc_base(0), 0, 0x390000, 1025 * 16, F_INDIRECT, 0);
    publish(0, 0);
    kick(0);
    expect_needs_reset();

    /* header shorter than 16 bytes */
    modern_init(0, 1, 8);
    set_desc(desc_base(0), 0, hdr_addr(0), 15, F_NEXT, 1);
    set_desc(desc_base(0), 1, st_addr(0), 1, F_WRITE, 0);
    publish(0, 0);
    kick(0);
    expect_needs_reset();

    /* status not device-writable */
    modern_init(0, 1, 8);
    set_desc(desc_base(0), 0, hdr_addr(0), 16, F_NEXT, 1);
    set_desc(desc_base(0), 1, st_addr(0), 1, 0, 0);
    publish(0, 0);
    kick(0);
    expect_needs_reset();

    /* request-level errors keep the device running */
    modern_init(0, 1, 16);
    queue_req(0, 0, T_IN, 0, DATA, 100, false);
    queue_req(0, 1, T_OUT, 0, DATA, 600, true);
    queue_req(0, 2, T_IN, IMG_SECTORS - 1, DATA, 1024, false);
    kick(0);
    wait_used(0, 3);
    queue_req(0, 3, T_OUT, UINT64_MAX / 512, DATA, 512, true);
    queue_req(0, 4, T_IN, UINT64_MAX, DATA, 512, false);
    kick(0);
    wait_used(0, 5);
    for (int n = 0; n < 5; n++)
        ck_assert_uint_eq(r8(st_addr(n)), 1);
    ck_assert_uint_eq(r8(MODERN + 0x14), 0x0f);
    hwt_settle(&T);
    ck_assert_uint_eq(hwt_file_hash(T.img[0]), hash);
}
END_TEST

START_TEST(pci_cfg_window_and_event_idx)
{
    attach(false, 1, NULL);
    /* bar 4, offset 0x14 (device_status), length 1 */
    hwt_cfg_write(&T, SLOT, 0, 0x88, 1, 4);
    hwt_cfg_write(&T, SLOT, 0, 0x8c, 4, 0x14);
    hwt_cfg_write(&T, SLOT, 0, 0x90, 4, 1);
    hwt_cfg_write(&T, SLOT, 0, 0x94, 1, 0x03);
    ck_assert_uint_eq(r8(MODERN + 0x14), 3);
    w8(MODERN + 0x14, 0x01);
    ck_assert_uint_eq(hwt_cfg_read(&T, SLOT, 0, 0x94, 1), 0x01);
    /* unaligned window: nothing happens */
    hwt_cfg_write(&T, SLOT, 0, 0x8c, 4, 0x15);
    hwt_cfg_write(&T, SLOT, 0, 0x90, 4, 2);
    hwt_cfg_write(&T, SLOT, 0, 0x94, 2, 0xffff);
    ck_assert_uint_eq(r8(MODERN + 0x14), 1);

    /* EVENT_IDX with INTx: used_event decides */
    modern_init(1u << 29, 1, 0);
    queue_req(0, 0, T_IN, 0, DATA, 512, false);
    kick(0);
    hwt_wait(&T, T.level[11]);
    ck_assert_uint_eq(r8(ISR), 1);
    ck_assert_uint_eq(r16(used_base(0) + 4 + 8 * 256), 1);   /* avail_event */
    w16(avail_base(0) + 4 + 2 * 256, 5);                      /* used_event */
    int raises = T.raises[11];
    for (int n = 1; n < 5; n++) {
        queue_req(0, n, T_IN, n, DATA, 512, false);
        kick(0);
        wait_used(0, n + 1);
    }
    ck_assert_int_eq(T.raises[11], raises);
    queue_req(0, 5, T_IN, 5, DATA, 512, false);
    kick(0);
    wait_used(0, 6);
    hwt_wait(&T, T.level[11]);
    ck_assert_int_eq(T.raises[11], raises + 1);
}
END_TEST

static ssize_t eio_preadv(void *opaque, int fd, const struct iovec *iov,
                          int iovcnt, off_t off)
{
    return -EIO;
}

/* A backend error completes the request with IOERR; the device goes on. */
START_TEST(backend_error_and_write_cache)
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
    attach_blk(1, NULL);
    modern_init(1u << 9 | 1u << 11, 1, 0);

    queue_req(0, 0, T_IN, 0, DATA, 512, false);
    kick(0);
    wait_used(0, 1);
    ck_assert_uint_eq(r8(st_addr(0)), 1);
    ck_assert_uint_eq(r8(MODERN + 0x14), 0x0f);

    /* CONFIG_WCE: writeback reads 1, the driver turns it off, writes
     * still land, and a reset turns it back on */
    ck_assert_uint_eq(r8(DEVCFG + 32), 1);
    w8(DEVCFG + 32, 0);
    ck_assert_uint_eq(r8(DEVCFG + 32), 0);
    uint8_t buf[512];
    memset(buf, 0x5c, sizeof(buf));
    wr(DATA, buf, sizeof(buf));
    queue_req(0, 1, T_OUT, 9, DATA, 512, true);
    kick(0);
    wait_used(0, 2);
    ck_assert_uint_eq(r8(st_addr(1)), 0);
    hwt_file_read(T.img[0], 9 * 512, buf, 1);
    ck_assert_uint_eq(buf[0], 0x5c);
    w8(MODERN + 0x14, 0);
    ck_assert_uint_eq(r8(DEVCFG + 32), 1);
    /* other config bytes are read-only */
    w32(DEVCFG, 0x1234);
    ck_assert_uint_eq(r32(DEVCFG), IMG_SECTORS);
}
END_TEST

/*
 * MSI-X messages aimed at the device itself: at its notify register (a
 * kick from inside a completion) and at its status register (a reset from
 * inside a completion). Nothing recurses, nothing is processed twice.
 */
START_TEST(msix_aimed_at_the_device)
{
    attach(false, 1, NULL);
    hwt_cfg_write(&T, SLOT, 0, 0x9a, 2, 0x8000);
    w32(MSIX + 16, (uint32_t)(MODERN + 0x3000));
    w32(MSIX + 24, 0);
    w32(MSIX + 28, 0);
    modern_init(0, 1, 256);
    w16(MODERN + 0x16, 0);
    w16(MODERN + 0x1a, 1);
    /* 60 requests that complete at once (unknown type): each completion
     * kicks queue 0 again */
    for (int n = 0; n < 60; n++)
        queue_req(0, n, 0x77, 0, 0, 0, false);
    kick(0);
    ck_assert_uint_eq(r16(used_base(0) + 2), 60);
    for (int n = 0; n < 60; n++)
        ck_assert_uint_eq(r8(st_addr(n)), 2);

    /* now at the status register: the first completion resets */
    w32(MSIX + 16, (uint32_t)(MODERN + 0x14));
    for (int n = 0; n < 10; n++)
        queue_req(0, n, 0x77, 0, 0, 0, false);
    for (int n = 0; n < 10; n++)
        w8(st_addr(n), 0xff);
    kick(0);
    ck_assert_uint_eq(r8(MODERN + 0x14), 0);
    ck_assert_uint_eq(r16(used_base(0) + 2), 61);
    ck_assert_uint_eq(r8(st_addr(0)), 2);
    ck_assert_uint_eq(r8(st_addr(1)), 0xff);
}
END_TEST

START_TEST(attach_errors)
{
    struct error *err = NULL;
    struct disk_spec spec;

    attach(false, 1, NULL);
    disk_spec_init(&spec);
    spec.iface = DISK_IF_VIRTIO;
    spec.num_queues = 17;
    ck_assert_int_lt(machine_attach_disk(T.m, &spec, T.blk[0], &err), 0);
    ck_assert_str_eq(err->msg, "virtio-blk: num-queues 17 out of range (1 to 16)");
    error_free(err);
    err = NULL;
    spec.num_queues = 1;
    ck_assert_int_lt(machine_attach_disk(T.m, &spec, NULL, &err), 0);
    ck_assert_str_eq(err->msg, "virtio-blk needs a block backend");
    error_free(err);
    disk_spec_free(&spec);
    /* nothing left behind at 00:03.0 */
    ck_assert_uint_eq(hwt_cfg_read(&T, 3, 0, 0, 4), 0xffffffff);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("hw-virtio");
    TCase *tc = tcase_create("virtio-blk");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, pci_identity_and_caps);
    tcase_add_test(tc, modern_read_write_flush_get_id);
    tcase_add_test(tc, discard_and_write_zeroes);
    tcase_add_test(tc, read_only_disk);
    tcase_add_test(tc, read_only_at_run_time);
    tcase_add_test(tc, resize_at_run_time);
    tcase_add_test(tc, legacy_with_msix_and_intx);
    tcase_add_test(tc, multiqueue_indirect_many_in_flight);
    tcase_add_test(tc, reset_drops_late_completions);
    tcase_add_test(tc, detach_and_free_with_requests_in_flight);
    tcase_add_test(tc, hostile_rings);
    tcase_add_test(tc, pci_cfg_window_and_event_idx);
    tcase_add_test(tc, backend_error_and_write_cache);
    tcase_add_test(tc, msix_aimed_at_the_device);
    tcase_add_test(tc, attach_errors);
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
