/*
 * tests/unit/test-qcow2.c — the qcow2 driver through the block layer API,
 * with qemu-img and qemu-io as oracles: images they make across the option
 * matrix read back as `qemu-img convert -O raw` does; images diskdm writes
 * pass `qemu-img check` and `qemu-img compare`; backing chains, snapshot=on,
 * commit, crash consistency, dirty/corrupt/feature bits and hostile images.
 */
#include "tests/unit/qcow2-test.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <time.h>

static void setup(void)
{
    dir = bt_tmpdir();
}

static char *open_err(const char *name, const char *extra, int *errnum)
{
    char *s = NULL;
    ck_assert_int_ge(asprintf(&s, "driver=qcow2,file.filename=%s/%s%s%s", dir, name,
                              extra[0] ? "," : "", extra), 0);
    struct error *err = NULL;
    struct bdrv_node *bs = bt_open(s, &err);
    ck_assert_msg(bs == NULL, "open '%s' should have failed", s);
    ck_assert_ptr_nonnull(err);
    char *msg = strdup(err->msg);
    if (errnum) {
        *errnum = err->errnum;
    }
    error_free(err);
    free(s);
    return msg;
}

/* Data at scattered offsets, zero clusters in both forms, partial clusters. */
#define QIO_WRITES \
    "-c 'write -P 0x11 0 4k' -c 'write -P 0x22 1020k 70k' -c 'write -P 0x33 3000k 1k' " \
    "-c 'write -P 0x44 5m 1m' -c 'write -z 5m 64k' -c 'write -z -u 5632k 128k' " \
    "-c 'write -P 0x55 7m 513' -c 'write -P 0x66 8191k 1k'"

static void check_qemu_image(const char *opts)
{
    ck_assert_int_eq(sh("rm -f q.qcow2 ref.raw && qemu-img create -q -f qcow2 -o '%s' q.qcow2 8M "
                        "&& qemu-io -f qcow2 " QIO_WRITES " q.qcow2 "
                        "&& qemu-img convert -f qcow2 -O raw q.qcow2 ref.raw", opts), 0);
    struct bdrv_node *bs = open_fmt("q.qcow2", "read-only=on");
    assert_same_as_raw(bs, "ref.raw");
    bdrv_unref(bs);
}

START_TEST(test_read_qemu_matrix)
{
    static const char *const matrix[] = {
        "compat=0.10,cluster_size=65536",
        "compat=0.10,cluster_size=512",
        "compat=1.1,cluster_size=65536",
        "compat=1.1,cluster_size=512,refcount_bits=1",
        "compat=1.1,cluster_size=4096,refcount_bits=64",
        "compat=1.1,cluster_size=2M,refcount_bits=8",
        "compat=1.1,lazy_refcounts=on,refcount_bits=32",
        "compat=1.1,preallocation=metadata",
        "compat=1.1,preallocation=falloc,cluster_size=4096",
        "compat=1.1,preallocation=full",
        "compat=0.10,preallocation=metadata,cluster_size=16384",
    };
    for (size_t i = 0; i < ARRAY_SIZE(matrix); i++) {
        check_qemu_image(matrix[i]);
    }
}
END_TEST

START_TEST(test_read_compressed)
{
    static const char *const types[] = { "zlib", "zstd" };
    for (int cs = 0; cs < 2; cs++) {
        for (size_t t = 0; t < ARRAY_SIZE(types); t++) {
            ck_assert_int_eq(sh("rm -f c.qcow2 src.raw ref.raw && "
                                "head -c 3M /dev/urandom > src.raw && "
                                "yes diskdm | head -c 3M >> src.raw && "
                                "truncate -s 8M src.raw && "
                                "qemu-img convert -q -c -f raw -O qcow2 -o compression_type=%s,"
                                "cluster_size=%s src.raw c.qcow2 && "
                                "qemu-io -f qcow2 -c 'write -P 0x77 6m 3k' c.qcow2 && "
                                "qemu-img convert -f qcow2 -O raw c.qcow2 ref.raw",
                                types[t], cs ? "4096" : "65536"), 0);
            struct bdrv_node *bs = open_fmt("c.qcow2", "read-only=on");
            assert_same_as_raw(bs, "ref.raw");
            bdrv_unref(bs);
            /* Overwriting part of a compressed cluster rewrites it whole. */
            bs = open_fmt("c.qcow2", "");
            uint8_t buf[1000];
            memset(buf, 0x99, sizeof(buf));
            ck_assert_int_eq(bdrv_pwrite(bs, 3 * 1048576 + 12345, buf, sizeof(buf), 0), 0);
            bdrv_unref(bs);
            ck_assert_int_eq(sh("dd if=/dev/zero bs=1 count=0 2>/dev/null; "
                                "printf '%%1000s' | tr ' ' '\\231' | dd of=ref.raw bs=1 "
                                "seek=%d conv=notrunc 2>/dev/null", 3 * 1048576 + 12345), 0);
            ck_assert_int_eq(sh("qemu-img check -q c.qcow2"), 0);
            ck_assert_int_eq(sh("qemu-img compare -q -f qcow2 -F raw c.qcow2 ref.raw"), 0);
        }
    }
}
END_TEST

START_TEST(test_backing_chain_read)
{
    ck_assert_int_eq(sh("qemu-img create -q -f raw base.raw 8M && "
                        "qemu-io -f raw -c 'write -P 0xa1 0 8M' base.raw && "
                        "qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2 && "
                        "qemu-io -f qcow2 -c 'write -P 0xb2 1m 100k' -c 'write -z 4m 64k' mid.qcow2 && "
                        "mkdir sub && qemu-img create -q -f qcow2 -b ../mid.qcow2 -F qcow2 "
                        "-o cluster_size=4096 sub/top.qcow2 && "
                        "qemu-io -f qcow2 -c 'write -P 0xc3 1050k 4k' -c 'write -P 0xc4 6m 3k' "
                        "sub/top.qcow2 && "
                        "qemu-img convert -f qcow2 -O raw sub/top.qcow2 ref.raw"), 0);
    struct bdrv_node *bs = open_fmt("sub/top.qcow2", "read-only=on");
    assert_same_as_raw(bs, "ref.raw");
    /* Backing files are read-only; depth says where the data comes from. */
    struct bdrv_node *mid = bdrv_backing_child(bs);
    ck_assert_ptr_nonnull(mid);
    ck_assert(bdrv_is_read_only(mid));
    ck_assert_str_eq(bdrv_driver_name(bdrv_backing_child(mid)), "raw");
    uint64_t pnum, map;
    int depth;
    int st = bdrv_block_status(bs, 6 << 20, 4096, &pnum, &map, &depth);
    ck_assert_int_ge(st, 0);
    ck_assert_int_eq(depth, 0);
    st = bdrv_block_status(bs, 1 << 20, 4096, &pnum, &map, &depth);
    ck_assert_int_eq(depth, 1);
    ck_assert(st & BDRV_BLOCK_DATA);
    st = bdrv_block_status(bs, 4 << 20, 4096, &pnum, &map, &depth);
    ck_assert_int_eq(depth, 1);
    ck_assert(st & BDRV_BLOCK_ZERO);
    st = bdrv_block_status(bs, 7 << 20, 4096, &pnum, &map, &depth);
    ck_assert_int_eq(depth, 2);
    struct bdrv_info info;
    bdrv_get_info(bs, &info);
    ck_assert_str_eq(info.backing_filename, "../mid.qcow2");
    ck_assert_str_eq(info.backing_format, "qcow2");
    ck_assert_uint_eq(info.cluster_size, 4096);
    bdrv_unref(bs);
}
END_TEST

/* ---- writes by diskdm, checked by qemu-img ---------------------------- */

struct mirror {
    struct bdrv_node *bs;
    int ref;        /* raw file with the expected contents */
    uint64_t size;
};

static void apply_random_ops(struct mirror *m, unsigned seed, int nops, uint32_t max_len)
{
    uint8_t *buf = malloc(max_len), *rb = malloc(max_len), *z = calloc(1, max_len);
    for (int i = 0; i < nops; i++) {
        uint64_t off = ((uint64_t)rand_r(&seed) * 4099) % m->size;
        uint32_t len = 1 + (uint32_t)rand_r(&seed) % max_len;
        len = (uint32_t)MIN((uint64_t)len, m->size - off);
        int op = rand_r(&seed) % 10;
        if (op < 7) {
            memset(buf, (int)(seed & 0xff) | 1, len);
            buf[0] = (uint8_t)i;
            ck_assert_int_eq(bdrv_pwrite(m->bs, off, buf, len, 0), 0);
            ck_assert_int_eq(full_pwrite(m->ref, buf, len, off), (ssize_t)len);
        } else if (op < 9) {
            ck_assert_int_eq(bdrv_pwrite_zeroes(m->bs, off, len,
                                                op == 8 ? BDRV_REQ_MAY_UNMAP : 0), 0);
            ck_assert_int_eq(full_pwrite(m->ref, z, len, off), (ssize_t)len);
        } else {
            /* Discard: content unspecified afterwards; read what it is. */
            ck_assert_int_eq(bdrv_pdiscard(m->bs, off, len), 0);
            ck_assert_int_eq(bdrv_pread(m->bs, off, rb, len), 0);
            ck_assert_int_eq(full_pwrite(m->ref, rb, len, off), (ssize_t)len);
        }
        if (i % 16 == 0) {
            ck_assert_int_eq(bdrv_pread(m->bs, off, rb, len), 0);
            ck_assert_int_eq(full_pread(m->ref, buf, len, off), (ssize_t)len);
            ck_assert(!memcmp(rb, buf, len));
        }
    }
    free(buf);
    free(rb);
    free(z);
}

static void write_and_check_opts(const char *create, bool backing, unsigned seed,
                                 const char *open_opts);

static void write_and_check(const char *create, bool backing, unsigned seed)
{
    write_and_check_opts(create, backing, seed, "discard=unmap");
}

static void write_and_check_opts(const char *create, bool backing, unsigned seed,
                                 const char *open_opts)
{
    ck_assert_int_eq(sh("rm -f w.qcow2 ref.raw b.qcow2 b.raw"), 0);
    if (backing) {
        ck_assert_int_eq(sh("qemu-img create -q -f qcow2 b.qcow2 6M && "
                            "qemu-io -f qcow2 -c 'write -P 0x5a 0 6M' b.qcow2 && "
                            "qemu-img convert -f qcow2 -O raw b.qcow2 ref.raw && "
                            "truncate -s 8M ref.raw"), 0);
    } else {
        ck_assert_int_eq(sh("truncate -s 8M ref.raw"), 0);
    }
    char *p = path("w.qcow2");
    struct bdrv_create_opts co = { .size = 8 << 20 };
    char compat[8] = "", bf[16] = "";
    unsigned cs = 0, rb = 0;
    sscanf(create, "%7[^,],%u,%u", compat, &cs, &rb);
    co.compat = compat;
    co.cluster_size = cs;
    co.refcount_bits = rb;
    if (backing) {
        strcpy(bf, "b.qcow2");
        co.backing_file = bf;
        co.backing_format = "qcow2";
    }
    struct error *err = NULL;
    int ret = bdrv_create("qcow2", p, &co, &err);
    ck_assert_msg(ret == 0, "create %s: %s", create, err ? err->msg : "?");
    struct mirror m = { .bs = open_fmt("w.qcow2", open_opts), .size = 8 << 20 };
    char *rp = path("ref.raw");
    m.ref = open(rp, O_RDWR);
    ck_assert_int_ge(m.ref, 0);
    apply_random_ops(&m, seed, 300, 3 * 65536);
    assert_same_as_raw(m.bs, "ref.raw");
    bdrv_unref(m.bs);
    close(m.ref);
    ck_assert_msg(sh("qemu-img check -q w.qcow2") == 0, "qemu-img check failed for %s", create);
    ck_assert_msg(sh("qemu-img compare -q -f qcow2 -F raw w.qcow2 ref.raw") == 0,
                  "qemu-img compare differs for %s", create);
    free(p);
    free(rp);
}

START_TEST(test_write_matrix)
{
    static const char *const matrix[] = {
        "1.1,0,0", "0.10,0,0", "1.1,512,1", "1.1,512,64", "1.1,4096,2",
        "1.1,2097152,4", "0.10,1024,16", "1.1,16384,32", "1.1,65536,8",
    };
    for (size_t i = 0; i < ARRAY_SIZE(matrix); i++) {
        write_and_check(matrix[i], false, 7 + (unsigned)i);
    }
}
END_TEST

START_TEST(test_write_cache_modes)
{
    /* O_DIRECT underneath: 8-byte metadata updates become aligned
     * read-modify-writes in the checking layer. */
    write_and_check_opts("1.1,65536,16", true, 21, "discard=unmap,cache=none");
    write_and_check_opts("1.1,4096,16", false, 22, "discard=unmap,cache=directsync");
    write_and_check_opts("1.1,512,16", false, 23, "discard=unmap,cache=writethrough");
}
END_TEST

START_TEST(test_write_over_backing)
{
    write_and_check("1.1,65536,16", true, 3);
    write_and_check("1.1,4096,16", true, 4);
    write_and_check("0.10,65536,16", true, 5);
}
END_TEST

START_TEST(test_internal_snapshots)
{
    /* Clusters shared with an internal snapshot (refcount 2, no COPIED
     * flag) are copied on write; the snapshot keeps its data. */
    ck_assert_int_eq(sh("rm -f i.qcow2 && "
                        "qemu-img create -q -f qcow2 -o cluster_size=4096 i.qcow2 4M && "
                        "qemu-io -f qcow2 -c 'write -P 0x11 0 4M' i.qcow2 && "
                        "qemu-img snapshot -c snap1 i.qcow2 && "
                        "qemu-io -f qcow2 -c 'write -P 0x12 1m 64k' i.qcow2 && "
                        "qemu-img snapshot -c snap2 i.qcow2"), 0);
    struct bdrv_node *bs = open_fmt("i.qcow2", "discard=unmap");
    uint8_t b[10000];
    memset(b, 0x13, sizeof(b));
    ck_assert_int_eq(bdrv_pwrite(bs, 1000, b, sizeof(b), 0), 0);
    ck_assert_int_eq(bdrv_pwrite(bs, (1 << 20) + 5000, b, sizeof(b), 0), 0);
    ck_assert_int_eq(bdrv_pwrite_zeroes(bs, 2 << 20, 64 << 10, BDRV_REQ_MAY_UNMAP), 0);
    ck_assert_int_eq(bdrv_pdiscard(bs, 3 << 20, 64 << 10), 0);
    struct bdrv_check_result res;
    ck_assert_int_eq(bdrv_check(bs, &res, 0, NULL), 0);
    ck_assert_uint_eq(res.corruptions + res.leaks, 0);
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img check -q i.qcow2"), 0);
    ck_assert_int_eq(sh("qemu-io -f qcow2 -c 'read -P 0x11 0 1000' -c 'read -P 0x13 1000 10000' "
                        "-c 'read -P 0x12 1m 5000' -c 'read -P 0x13 1053576 10000' "
                        "-c 'read -P 0 2m 64k' i.qcow2 > r.out && ! grep -q failed r.out"), 0);
    /* The snapshots still hold what they held. */
    ck_assert_int_eq(sh("qemu-img convert -f qcow2 -O raw -l snapshot.name=snap1 i.qcow2 s1.raw && "
                        "qemu-io -f raw -c 'read -P 0x11 0 4M' s1.raw > r1.out && "
                        "! grep -q failed r1.out && "
                        "qemu-img convert -f qcow2 -O raw -l snapshot.name=snap2 i.qcow2 s2.raw && "
                        "qemu-io -f raw -c 'read -P 0x12 1m 64k' -c 'read -P 0x11 0 1m' s2.raw "
                        "> r2.out && ! grep -q failed r2.out"), 0);
}
END_TEST

START_TEST(test_create_matrix)
{
    static const struct bdrv_create_opts cases[] = {
        { .size = 1 << 30 },
        { .size = 100 << 20, .compat = "0.10" },
        { .size = 10 << 20, .lazy_refcounts = true, .refcount_bits = 1 },
        { .size = 10 << 20, .cluster_size = 512, .prealloc = PREALLOC_METADATA },
        { .size = 10 << 20, .prealloc = PREALLOC_FALLOC },
        { .size = 10 << 20, .cluster_size = 2 << 20, .prealloc = PREALLOC_FULL },
        { .size = 0 },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char *p = path("n.qcow2");
        struct error *err = NULL;
        ck_assert_int_eq(bdrv_create("qcow2", p, &cases[i], &err), 0);
        ck_assert_msg(sh("qemu-img check -q n.qcow2") == 0, "case %zu", i);
        ck_assert_int_eq(sh("qemu-img info n.qcow2 | grep -q 'virtual size: .*(%" PRIu64
                            " bytes)'", cases[i].size), 0);
        if (cases[i].prealloc) {
            ck_assert_int_eq(sh("qemu-img map --output=json n.qcow2 | grep -q '\"data\": true'"), 0);
        }
        if (cases[i].lazy_refcounts) {
            ck_assert_int_eq(sh("qemu-img info n.qcow2 | grep -q 'lazy refcounts: true'"), 0);
        }
        free(p);
    }
    /* A 1 GiB default image has qemu-img's layout. */
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 qi.qcow2 1G"), 0);
    char *p = path("n.qcow2");
    struct bdrv_create_opts co = { .size = 1 << 30 };
    ck_assert_int_eq(bdrv_create("qcow2", p, &co, NULL), 0);
    ck_assert_int_eq(sh("cmp n.qcow2 qi.qcow2"), 0);
    free(p);
}
END_TEST

START_TEST(test_resize)
{
    /* 512-byte clusters: one L2 table maps 32 KiB, so growing needs a
     * bigger L1 table (several clusters). */
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -o cluster_size=512 g.qcow2 1M && "
                        "qemu-io -f qcow2 -c 'write -P 0x61 0 1M' g.qcow2"), 0);
    struct bdrv_node *bs = open_fmt("g.qcow2", "");
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_truncate(bs, 1000, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "Invalid image size 1000 (a multiple of 512 up to 2^56)");
    error_free(err);
    err = NULL;
    ck_assert_int_eq(bdrv_truncate(bs, 64 << 20, &err), 0);
    ck_assert_int_eq(bdrv_getlength(bs), 64 << 20);
    uint8_t b[4096];
    memset(b, 0x62, sizeof(b));
    ck_assert_int_eq(bdrv_pwrite(bs, 60 << 20, b, sizeof(b), 0), 0);
    ck_assert_int_eq(bdrv_pread(bs, (1 << 20) - 512, b, 1024), 0);
    ck_assert_uint_eq(b[0], 0x61);
    ck_assert_uint_eq(b[600], 0);
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img check -q g.qcow2 && "
                        "qemu-img info g.qcow2 | grep -q '(67108864 bytes)' && "
                        "qemu-io -f qcow2 -c 'read -P 0x61 0 1M' -c 'read -P 0x62 60m 4k' "
                        "-c 'read -P 0 2m 1m' g.qcow2 > r.out && ! grep -q failed r.out && "
                        "[ $(grep -c '^read' r.out) = 3 ]"), 0);
}
END_TEST

START_TEST(test_create_errors)
{
    char *p = path("e.qcow2");
    static const struct { struct bdrv_create_opts o; const char *msg; } cases[] = {
        { { .size = 1 << 20, .cluster_size = 1000 },
          "Cluster size must be a power of two between 512 and 2048k" },
        { { .size = 1 << 20, .cluster_size = 4 << 20 },
          "Cluster size must be a power of two between 512 and 2048k" },
        { { .size = 1 << 20, .refcount_bits = 3 },
          "Refcount width must be a power of two and may not exceed 64 bits" },
        { { .size = 1 << 20, .refcount_bits = 128 },
          "Refcount width must be a power of two and may not exceed 64 bits" },
        { { .size = 1 << 20, .compat = "0.10", .refcount_bits = 8 },
          "Different refcount widths than 16 bits require compatibility level 1.1 or "
          "above (use version=v3 or greater)" },
        { { .size = 1 << 20, .compat = "0.10", .lazy_refcounts = true },
          "Lazy refcounts only supported with compatibility level 1.1 and above "
          "(use version=v3 or greater)" },
        { { .size = 1 << 20, .compat = "2.0" }, "Invalid compatibility level: '2.0'" },
        { { .size = 1000 }, "Image size must be a multiple of 512 bytes" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct error *err = NULL;
        ck_assert_int_lt(bdrv_create("qcow2", p, &cases[i].o, &err), 0);
        ck_assert_ptr_nonnull(err);
        ck_assert_str_eq(err->msg, cases[i].msg);
        error_free(err);
    }
    free(p);
}
END_TEST

/* ---- header rules ------------------------------------------------------ */

static void fresh(const char *opts)
{
    ck_assert_int_eq(sh("rm -f h.qcow2 && qemu-img create -q -f qcow2 %s h.qcow2 64M && "
                        "qemu-io -f qcow2 -c 'write -P 1 0 64k' h.qcow2", opts), 0);
}

static void expect_open_error(const char *extra, const char *needle, int errnum)
{
    int en = 0;
    char *msg = open_err("h.qcow2", extra, &en);
    ck_assert_msg(strstr(msg, needle), "message '%s' lacks '%s'", msg, needle);
    if (errnum) {
        ck_assert_int_eq(en, errnum);
    }
    free(msg);
}

START_TEST(test_feature_bits)
{
    /* Unknown incompatible bit: refused, naming the bit. */
    fresh("");
    poke64("h.qcow2", 72, 1ull << 5);
    expect_open_error("read-only=on", "unsupported qcow2 feature(s): incompatible bit 5",
                      ENOTSUP);
    /* Named through the feature table when it has a name: the table's
     * entry for bit 4 renamed to bit 5. */
    fresh("");
    poke64("h.qcow2", 72, 1ull << 5);
    {
        char *p = path("h.qcow2");
        int fd = open(p, O_RDWR);
        uint8_t c0[4096];
        ck_assert_int_eq(full_pread(fd, c0, sizeof(c0), 0), (ssize_t)sizeof(c0));
        uint8_t *n = memmem(c0, sizeof(c0), "extended L2 entries", 19);
        ck_assert_ptr_nonnull(n);
        uint8_t bit = 5;
        ck_assert_int_eq(full_pwrite(fd, &bit, 1, n - 1 - c0), 1);
        close(fd);
        free(p);
    }
    expect_open_error("read-only=on",
                      "unsupported qcow2 feature(s): incompatible bit 5 (extended L2 entries)",
                      ENOTSUP);
    /* Corrupt: read-only only. */
    fresh("");
    poke64("h.qcow2", 72, 1ull << 1);
    expect_open_error("", "Image is corrupt; cannot be opened read/write", EACCES);
    struct bdrv_node *bs = open_fmt("h.qcow2", "read-only=on");
    uint8_t b[16];
    ck_assert_int_eq(bdrv_pread(bs, 0, b, sizeof(b)), 0);
    ck_assert_uint_eq(b[0], 1);
    bdrv_unref(bs);
    /* Unknown autoclear bits are cleared by a read-write open; unknown
     * compatible bits stay. */
    fresh("");
    poke64("h.qcow2", 88, (1ull << 7) | 1);
    poke64("h.qcow2", 80, 1ull << 9);
    bs = open_fmt("h.qcow2", "read-only=on");
    bdrv_unref(bs);
    ck_assert_uint_eq(peek64("h.qcow2", 88), (1ull << 7) | 1);
    bs = open_fmt("h.qcow2", "");
    bdrv_unref(bs);
    ck_assert_uint_eq(peek64("h.qcow2", 88), 0);
    ck_assert_uint_eq(peek64("h.qcow2", 80), 1ull << 9);
    ck_assert_int_eq(sh("qemu-img check -q h.qcow2"), 0);
}
END_TEST

START_TEST(test_extensions)
{
    /* An unknown header extension (before the end marker) survives
     * diskdm's writes byte for byte, and qemu-img is still happy. */
    fresh("");
    ck_assert_uint_eq(peek64("h.qcow2", 504), 0);   /* end marker after the feature table */
    poke32("h.qcow2", 504, 0x12345678);
    poke32("h.qcow2", 508, 5);
    poke("h.qcow2", 512, "abcde\0\0\0", 8);
    struct bdrv_node *bs = open_fmt("h.qcow2", "");
    uint8_t b[70000];
    memset(b, 0x44, sizeof(b));
    ck_assert_int_eq(bdrv_pwrite(bs, 5 << 20, b, sizeof(b), 0), 0);
    ck_assert_int_eq(bdrv_truncate(bs, 128 << 20, NULL), 0);
    bdrv_unref(bs);
    ck_assert_uint_eq(peek64("h.qcow2", 504), 0x1234567800000005ull);
    ck_assert_uint_eq(peek64("h.qcow2", 512), 0x6162636465000000ull);
    ck_assert_int_eq(sh("qemu-img check -q h.qcow2"), 0);

    /* No backing-format extension: the backing file's format is probed.
     * (The extension's type is overwritten, so it becomes unknown.) */
    ck_assert_int_eq(sh("rm -f bb.qcow2 && qemu-img create -q -f qcow2 bb.qcow2 64M && "
                        "qemu-io -f qcow2 -c 'write -P 0x71 1m 64k' bb.qcow2"), 0);
    fresh("-b bb.qcow2 -F qcow2");
    ck_assert_uint_eq(peek64("h.qcow2", 112) >> 32, 0xe2792acaull);
    poke32("h.qcow2", 112, 0x0badf00d);
    bs = open_fmt("h.qcow2", "read-only=on");
    struct bdrv_info info;
    bdrv_get_info(bs, &info);
    ck_assert_ptr_null(info.backing_format);
    ck_assert_str_eq(bdrv_driver_name(bdrv_backing_child(bs)), "qcow2");
    ck_assert_int_eq(bdrv_pread(bs, 1 << 20, b, 512), 0);
    ck_assert_uint_eq(b[0], 0x71);
    bdrv_unref(bs);
}
END_TEST

static int open_auto_ro(void *arg)
{
    struct error *err = NULL;
    struct bdrv_node *bs = bt_open(arg, &err);
    BT_CHECK(bs, "open: %s", err ? err->msg : "?");
    BT_CHECK(bdrv_is_read_only(bs) && bdrv_is_auto_degraded(bs), "not degraded");
    uint8_t b[512];
    BT_CHECK(bdrv_pread(bs, 9 << 20, b, sizeof(b)) == 0 && b[0] == 0x2b, "read");
    bdrv_unref(bs);
    return 0;
}

START_TEST(test_dirty_repair)
{
    /* A writer with lazy refcounts killed mid-way leaves the dirty bit. */
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -o lazy_refcounts=on h.qcow2 64M && "
                        "qemu-io -f qcow2 -c 'write -P 0x2a 0 1m' -c 'write -P 0x2b 8m 3m' "
                        "-c 'sigraise 9' h.qcow2; true"), 0);
    ck_assert(peek64("h.qcow2", 72) & 1);
    /* Read-only: opens as it is. */
    struct bdrv_node *bs = open_fmt("h.qcow2", "read-only=on");
    struct bdrv_info info;
    bdrv_get_info(bs, &info);
    ck_assert(info.dirty);
    bdrv_unref(bs);
    ck_assert(peek64("h.qcow2", 72) & 1);
    /* auto-read-only on a file we cannot write: degrades, no repair. */
    ck_assert_int_eq(sh("chmod 0444 h.qcow2"), 0);
    char *s = NULL;
    ck_assert_int_ge(asprintf(&s, "driver=qcow2,file.filename=%s/h.qcow2,auto-read-only=on", dir), 0);
    ck_assert_int_eq(bt_as_nobody(open_auto_ro, s), 0);
    free(s);
    ck_assert(peek64("h.qcow2", 72) & 1);
    ck_assert_int_eq(sh("chmod 0644 h.qcow2"), 0);
    /* Read-write: repaired, bit cleared, data intact. */
    bs = open_fmt("h.qcow2", "");
    bdrv_get_info(bs, &info);
    ck_assert(!info.dirty);
    uint8_t b[512];
    ck_assert_int_eq(bdrv_pread(bs, 9 << 20, b, sizeof(b)), 0);
    ck_assert_uint_eq(b[0], 0x2b);
    ck_assert_int_eq(bdrv_pwrite(bs, 20 << 20, b, sizeof(b), 0), 0);
    bdrv_unref(bs);
    ck_assert_uint_eq(peek64("h.qcow2", 72) & 1, 0);
    ck_assert_int_eq(sh("qemu-img check -q h.qcow2"), 0);
}
END_TEST

static void poke16(const char *name, long off, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    poke(name, off, b, 2);
}

START_TEST(test_check_repair)
{
    fresh("");
    uint64_t rb = peek64("h.qcow2", (long)peek64("h.qcow2", 48));
    uint64_t l2 = peek64("h.qcow2", (long)peek64("h.qcow2", 40)) & 0x00fffffffffffe00ull;
    uint64_t data = peek64("h.qcow2", (long)l2) & 0x00fffffffffffe00ull;
    /* A leak: a cluster past the data counted as used. */
    ck_assert_int_eq(sh("truncate -s 640K h.qcow2"), 0);
    poke16("h.qcow2", (long)(rb + 2 * 9), 1);
    ck_assert_int_eq(sh("qemu-img check h.qcow2"), 3);
    struct bdrv_node *bs = open_fmt("h.qcow2", "read-only=on");
    struct bdrv_check_result res;
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_check(bs, &res, 0, &err), 0);
    ck_assert_uint_eq(res.leaks, 1);
    ck_assert_uint_eq(res.corruptions, 0);
    ck_assert_uint_eq(res.allocated_clusters, 1);
    ck_assert_uint_eq(res.total_clusters, 1024);
    /* qemu-img's end offset counts the leaked cluster 9 too. */
    ck_assert_uint_eq(res.image_end_offset, 10 * 65536);
    ck_assert_int_eq(bdrv_check(bs, &res, BDRV_FIX_LEAKS, &err), -EPERM);
    ck_assert_ptr_nonnull(strstr(err->msg, "h.qcow2': Block node is read-only"));
    error_free(err);
    bdrv_unref(bs);
    /* Leaks fixed read-write. */
    bs = open_fmt("h.qcow2", "");
    ck_assert_int_eq(bdrv_check(bs, &res, BDRV_FIX_LEAKS, NULL), 0);
    ck_assert_uint_eq(res.leaks, 0);
    ck_assert_uint_eq(res.leaks_fixed, 1);
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img check -q h.qcow2"), 0);
    /* A corruption: the data cluster's refcount is 0. Leaks-only repair
     * leaves it; errors repair fixes it. */
    poke16("h.qcow2", (long)(rb + 2 * (data >> 16)), 0);
    ck_assert_int_eq(sh("qemu-img check h.qcow2"), 2);
    bs = open_fmt("h.qcow2", "read-only=on");
    /* As qemu-img: the refcount and the data cluster's COPIED flag. */
    ck_assert_int_eq(bdrv_check(bs, &res, 0, NULL), 0);
    ck_assert_uint_eq(res.corruptions, 2);
    bdrv_unref(bs);
    bs = open_fmt("h.qcow2", "");
    ck_assert_int_eq(bdrv_check(bs, &res, BDRV_FIX_LEAKS, NULL), 0);
    ck_assert_uint_eq(res.corruptions_fixed, 0);
    ck_assert_uint_eq(res.corruptions, 2);
    ck_assert_int_eq(bdrv_check(bs, &res, BDRV_FIX_LEAKS | BDRV_FIX_ERRORS, NULL), 0);
    ck_assert_uint_eq(res.corruptions, 0);
    ck_assert_uint_eq(res.corruptions_fixed, 1);
    ck_assert_int_eq(bdrv_check(bs, &res, 0, NULL), 0);
    ck_assert_uint_eq(res.corruptions + res.leaks, 0);
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img check -q h.qcow2"), 0);
    /* raw has nothing to check. */
    ck_assert_int_eq(sh("truncate -s 1M r.raw"), 0);
    char *rp = path("r.raw");
    bs = bdrv_open_file(rp, "raw", true, NULL);
    ck_assert_int_eq(bdrv_check(bs, &res, 0, NULL), -ENOTSUP);
    bdrv_unref(bs);
    free(rp);
}
END_TEST

START_TEST(test_hostile_images)
{
    /* Truncated header. */
    ck_assert_int_eq(sh("printf 'QFI\\373\\0\\0\\0\\3' > h.qcow2"), 0);
    expect_open_error("read-only=on", "qcow2 header is truncated", EINVAL);
    /* Bad magic through the qcow2 driver. */
    ck_assert_int_eq(sh("head -c 4096 /dev/zero > h.qcow2"), 0);
    expect_open_error("read-only=on", "is not in qcow2 format", EINVAL);
    /* Version. */
    fresh("");
    poke32("h.qcow2", 4, 4);
    expect_open_error("read-only=on", "unsupported qcow2 version 4", ENOTSUP);
    /* Cluster bits. */
    fresh("");
    poke32("h.qcow2", 20, 30);
    expect_open_error("read-only=on", "unsupported cluster size: 2^30", EINVAL);
    /* L1 table beyond the end of the file, and unaligned. */
    fresh("");
    poke64("h.qcow2", 40, 1ull << 40);
    expect_open_error("read-only=on", "L1 table (offset 0x10000000000, 1 entries) is "
                      "unaligned or lies beyond the end of the file", EINVAL);
    fresh("");
    poke64("h.qcow2", 40, 3 * 65536 + 512);
    expect_open_error("read-only=on", "is unaligned or lies beyond the end of the file", EINVAL);
    /* L1 size too large for memory, and too small for the size. */
    fresh("");
    poke32("h.qcow2", 36, 0x10000000);
    expect_open_error("read-only=on", "active L1 table too large", EFBIG);
    fresh("");
    poke64("h.qcow2", 24, 1ull << 40);
    expect_open_error("read-only=on", "L1 table is too small for the image size", EINVAL);
    /* Huge sizes. */
    fresh("");
    poke64("h.qcow2", 24, 1ull << 62);
    expect_open_error("read-only=on", "image size too big", EFBIG);
    /* Refcount table beyond the file, too large, unaligned. */
    fresh("");
    poke64("h.qcow2", 48, 1ull << 40);
    expect_open_error("read-only=on", "reference count table (offset 0x10000000000, 1 "
                      "clusters) is unaligned or lies beyond the end of the file", EINVAL);
    fresh("");
    poke32("h.qcow2", 56, 1000000);
    expect_open_error("read-only=on", "reference count table too large", EFBIG);
    fresh("");
    poke64("h.qcow2", 48, 65536 + 8);
    expect_open_error("read-only=on", "reference count table (offset 0x10008", EINVAL);
    /* Refcount order. */
    fresh("");
    poke32("h.qcow2", 96, 7);
    expect_open_error("read-only=on", "reference count entry width too large", EINVAL);
    /* Header length. */
    fresh("");
    poke32("h.qcow2", 100, 50);
    expect_open_error("read-only=on", "invalid qcow2 header length 50", EINVAL);
    /* Encryption. */
    fresh("");
    poke32("h.qcow2", 32, 1);
    expect_open_error("read-only=on", "encrypted qcow2 images are not supported", ENOTSUP);
    /* Backing file name too long / outside cluster 0. */
    ck_assert_int_eq(sh("truncate -s 64M base.raw"), 0);
    fresh("-b base.raw -F raw");
    poke32("h.qcow2", 16, 1024);
    expect_open_error("read-only=on", "backing file name too long (1024 bytes; at most 1023)",
                      EINVAL);
    poke64("h.qcow2", 8, 70000);
    expect_open_error("read-only=on", "invalid backing file offset", EINVAL);
    /* Extension longer than the header cluster. */
    fresh("");
    poke32("h.qcow2", 116, 100000);
    expect_open_error("read-only=on", "header extension 0x6803f857 is too long", EINVAL);

    /* L2 table and data clusters outside the file: the open works, the
     * read fails with EIO, nothing crashes. */
    fresh("");
    uint64_t l1 = peek64("h.qcow2", 40);
    poke64("h.qcow2", (long)l1, (1ull << 63) | (1ull << 40));
    struct bdrv_node *bs = open_fmt("h.qcow2", "read-only=on");
    uint8_t b[4096];
    ck_assert_int_eq(bdrv_pread(bs, 0, b, sizeof(b)), -EIO);
    bdrv_unref(bs);
    /* Read-write, the image is marked corrupt and writes stop. */
    ck_assert_uint_eq(peek64("h.qcow2", 72) & 2, 0);
    bs = open_fmt("h.qcow2", "");
    ck_assert_int_eq(bdrv_pread(bs, 0, b, sizeof(b)), -EIO);
    ck_assert_int_eq(bdrv_pwrite(bs, 1 << 20, b, sizeof(b), 0), -EIO);
    bdrv_unref(bs);
    ck_assert_uint_eq(peek64("h.qcow2", 72) & 2, 2);
    expect_open_error("", "Image is corrupt; cannot be opened read/write", EACCES);
    fresh("");
    l1 = peek64("h.qcow2", 40);
    uint64_t l2 = peek64("h.qcow2", (long)l1) & 0x00fffffffffffe00ull;
    poke64("h.qcow2", (long)l2, (1ull << 63) | (1ull << 40));
    bs = open_fmt("h.qcow2", "read-only=on");
    ck_assert_int_eq(bdrv_pread(bs, 0, b, sizeof(b)), -EIO);
    bdrv_unref(bs);
    poke64("h.qcow2", (long)l2, (1ull << 63) | (5 * 65536 + 512));
    bs = open_fmt("h.qcow2", "read-only=on");
    ck_assert_int_eq(bdrv_pread(bs, 0, b, sizeof(b)), -EIO);
    bdrv_unref(bs);
    /* A compressed cluster that does not decompress. */
    poke64("h.qcow2", (long)l2, (1ull << 62) | (4ull << 54) | (4 * 65536 + 100));
    bs = open_fmt("h.qcow2", "read-only=on");
    ck_assert_int_eq(bdrv_pread(bs, 0, b, sizeof(b)), -EIO);
    bdrv_unref(bs);
}
END_TEST

START_TEST(test_backing_errors)
{
    /* a -> b -> a */
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -u -b b.qcow2 -F qcow2 a.qcow2 1M && "
                        "qemu-img create -q -f qcow2 -u -b a.qcow2 -F qcow2 b.qcow2 1M"), 0);
    int en = 0;
    char *msg = open_err("a.qcow2", "read-only=on", &en);
    ck_assert_msg(strstr(msg, "Backing file loop:") && strstr(msg, "b.qcow2") &&
                  strstr(msg, "a.qcow2"), "%s", msg);
    ck_assert_int_eq(en, ELOOP);
    free(msg);
    /* An image that is its own backing file. */
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -u -b t.qcow2 -F qcow2 s.qcow2 1M"), 0);
    poke("s.qcow2", (long)peek64("s.qcow2", 8), "s", 1);
    msg = open_err("s.qcow2", "read-only=on", &en);
    ck_assert_msg(strstr(msg, "Backing file loop:"), "%s", msg);
    free(msg);
    /* Too deep: 70 images. */
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 d0.qcow2 1M && for i in $(seq 1 70); do "
                        "qemu-img create -q -f qcow2 -u -b d$((i-1)).qcow2 -F qcow2 d$i.qcow2 1M "
                        "|| exit 1; done"), 0);
    msg = open_err("d70.qcow2", "read-only=on", &en);
    ck_assert_msg(strstr(msg, "Backing chain too deep (more than 64 images)"), "%s", msg);
    free(msg);
    /* 20 is fine and reads through. */
    struct bdrv_node *bs = open_fmt("d20.qcow2", "read-only=on");
    uint8_t b[512];
    ck_assert_int_eq(bdrv_pread(bs, 0, b, sizeof(b)), 0);
    bdrv_unref(bs);
    /* Missing backing file. */
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -u -b nothere.qcow2 -F qcow2 m.qcow2 1M"), 0);
    msg = open_err("m.qcow2", "read-only=on", &en);
    ck_assert_msg(strstr(msg, "Could not open backing file") && strstr(msg, "nothere.qcow2"),
                  "%s", msg);
    free(msg);
    /* backing=null opens without it. */
    bs = open_fmt("m.qcow2", "read-only=on,backing=null");
    bdrv_unref(bs);
}
END_TEST

/* ---- snapshot=on ------------------------------------------------------- */

static int count_overlays(const char *tmpdir)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d))) {
        char link[300], target[PATH_MAX];
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len < 0) {
            continue;
        }
        target[len] = 0;
        if (!strncmp(target, tmpdir, strlen(tmpdir)) && strstr(target, "/vl.") &&
            strstr(target, "(deleted)")) {
            n++;
        }
    }
    closedir(d);
    return n;
}

START_TEST(test_snapshot_mode)
{
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 s.qcow2 16M && "
                        "qemu-io -f qcow2 -c 'write -P 0x31 0 16M' s.qcow2 && "
                        "mkdir tmp"), 0);
    char *img = path("s.qcow2"), *tmp = path("tmp");
    setenv("TMPDIR", tmp, 1);
    struct bt_snapshot before;
    bt_snap(img, &before);
    struct bdrv_node *bs = open_fmt("s.qcow2", "snapshot=on");
    ck_assert(!bdrv_is_read_only(bs));
    ck_assert_int_eq(bt_write_fds(img), 0);
    ck_assert_int_ge(count_overlays(tmp), 1);
    ck_assert_int_eq(sh("[ -z \"$(ls tmp)\" ]"), 0);
    uint8_t b[70000], r[70000];
    memset(b, 0x77, sizeof(b));
    ck_assert_int_eq(bdrv_pwrite(bs, 100000, b, sizeof(b), 0), 0);
    ck_assert_int_eq(bdrv_pread(bs, 100000 - 1, r, sizeof(r)), 0);
    ck_assert_uint_eq(r[0], 0x31);
    ck_assert_uint_eq(r[1], 0x77);
    ck_assert_uint_eq(r[sizeof(r) - 1], 0x77);
    ck_assert_int_eq(bdrv_flush(bs), 0);
    bdrv_unref(bs);
    ck_assert(bt_unchanged(img, &before));
    ck_assert_int_eq(count_overlays(tmp), 0);
    /* Forced read-only underneath still takes snapshot writes. */
    bs = open_fmt("s.qcow2", "snapshot=on,force-read-only=on");
    ck_assert_int_eq(bdrv_pwrite(bs, 0, b, 512, 0), 0);
    ck_assert_int_eq(bt_write_fds(img), 0);
    bdrv_unref(bs);
    ck_assert(bt_unchanged(img, &before));
    /* TMPDIR=/tmp means /var/tmp. */
    setenv("TMPDIR", "/tmp", 1);
    bs = open_fmt("s.qcow2", "snapshot=on");
    ck_assert_int_ge(count_overlays("/var/tmp/"), 1);
    bdrv_unref(bs);
    unsetenv("TMPDIR");
    free(before.data);
    free(img);
    free(tmp);
}
END_TEST

/* ---- commit ------------------------------------------------------------ */

static void progress_cb(void *opaque, uint64_t done, uint64_t total)
{
    uint64_t *last = opaque;
    ck_assert_uint_ge(done, *last);
    ck_assert_uint_le(done, total);
    *last = done;
}

static void make_chain(void)
{
    ck_assert_int_eq(sh("rm -f base.qcow2 top.qcow2 && "
                        "qemu-img create -q -f qcow2 base.qcow2 16M && "
                        "qemu-io -f qcow2 -c 'write -P 0x10 0 16M' base.qcow2 && "
                        "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 && "
                        "qemu-io -f qcow2 -c 'write -P 0x20 1m 100k' -c 'write -z 3m 128k' "
                        "-c 'write -P 0x21 5000k 3k' top.qcow2"), 0);
}

START_TEST(test_commit)
{
    make_chain();
    struct bdrv_node *top = open_fmt("top.qcow2", "");
    uint8_t b[9000];
    memset(b, 0x30, sizeof(b));
    ck_assert_int_eq(bdrv_pwrite(top, 10000000, b, sizeof(b), 0), 0);
    ck_assert_int_eq(sh("qemu-img convert -U -f qcow2 -O raw top.qcow2 expect.raw"), 0);
    struct bdrv_node *base = bdrv_backing_child(top);
    ck_assert(bdrv_is_read_only(base));
    uint64_t last = 0;
    struct error *err = NULL;
    int ret = bdrv_commit(top, NULL, true, progress_cb, &last, &err);
    ck_assert_msg(ret == 0, "%s", err ? err->msg : "?");
    ck_assert_uint_eq(last, 16 << 20);
    /* Back to read-only, no write descriptor left. */
    ck_assert(bdrv_is_read_only(base));
    char *bp = path("base.qcow2");
    ck_assert_int_eq(bt_write_fds(bp), 0);
    /* The top is empty and still reads the same, now through the base. */
    assert_same_as_raw(top, "expect.raw");
    uint64_t pnum, map;
    int depth;
    bdrv_block_status(top, 1 << 20, 4096, &pnum, &map, &depth);
    ck_assert_int_eq(depth, 1);
    bdrv_unref(top);
    ck_assert_int_eq(sh("qemu-img check -q base.qcow2 && qemu-img check -q top.qcow2"), 0);
    ck_assert_int_eq(sh("qemu-img compare -q -f qcow2 -F raw base.qcow2 expect.raw"), 0);
    ck_assert_int_eq(sh("qemu-img map --output=json top.qcow2 | grep -v '\"depth\": 1' | "
                        "grep -q '\"depth\": 0' && exit 1 || exit 0"), 0);
    free(bp);

    /* Without emptying: top keeps its clusters. */
    make_chain();
    top = open_fmt("top.qcow2", "");
    ck_assert_int_eq(bdrv_commit(top, NULL, false, NULL, NULL, NULL), 0);
    bdrv_unref(top);
    ck_assert_int_eq(sh("qemu-img convert -f qcow2 -O raw top.qcow2 expect.raw && "
                        "qemu-img compare -q -f qcow2 -F raw base.qcow2 expect.raw && "
                        "qemu-img map --output=json top.qcow2 | grep -q '\"depth\": 0'"), 0);
}
END_TEST

START_TEST(test_commit_chain)
{
    /* raw <- mid <- top: committing top into the raw base takes the
     * clusters of both layers above it; mid and top stay as they were. */
    ck_assert_int_eq(sh("qemu-img create -q -f raw base.raw 8M && "
                        "qemu-io -f raw -c 'write -P 0xa1 0 8M' base.raw && "
                        "qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2 && "
                        "qemu-io -f qcow2 -c 'write -P 0xb2 1m 100k' -c 'write -z 4m 64k' "
                        "mid.qcow2 && "
                        "qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 && "
                        "qemu-io -f qcow2 -c 'write -P 0xc3 1050k 4k' -c 'write -P 0xc4 6m 3k' "
                        "top.qcow2 && qemu-img convert -f qcow2 -O raw top.qcow2 expect.raw && "
                        "md5sum mid.qcow2 top.qcow2 > before.md5"), 0);
    struct bdrv_node *top = open_fmt("top.qcow2", "read-only=on");
    struct bdrv_node *mid = bdrv_backing_child(top);
    struct bdrv_node *base = bdrv_backing_child(mid);
    struct error *err = NULL;
    /* Not in the chain; emptying a read-only top. */
    ck_assert_int_eq(bdrv_commit(mid, top, false, NULL, NULL, &err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err->msg, "is not in the backing chain of"));
    error_free(err);
    err = NULL;
    ck_assert_int_eq(bdrv_commit(top, base, true, NULL, NULL, &err), -EPERM);
    ck_assert_ptr_nonnull(strstr(err->msg, "Block node is read-only"));
    error_free(err);
    err = NULL;
    int ret = bdrv_commit(top, base, false, NULL, NULL, &err);
    ck_assert_msg(ret == 0, "%s", err ? err->msg : "?");
    ck_assert(bdrv_is_read_only(base));
    bdrv_unref(top);
    ck_assert_int_eq(sh("cmp base.raw expect.raw && md5sum -c --quiet before.md5"), 0);
}
END_TEST

static int commit_as_nobody(void *arg)
{
    struct error *err = NULL;
    struct bdrv_open_opts o;
    char *s = arg;
    if (bdrv_open_opts_parse(s, &o, &err) < 0) {
        return 2;
    }
    struct bdrv_node *top = bdrv_open(&o, &err);
    bdrv_open_opts_free(&o);
    BT_CHECK(top, "open: %s", err ? err->msg : "?");
    int ret = bdrv_commit(top, NULL, true, NULL, NULL, &err);
    BT_CHECK(ret == -EACCES, "commit returned %d", ret);
    BT_CHECK(err && strstr(err->msg, "base.qcow2"), "message: %s", err ? err->msg : "");
    BT_CHECK(bdrv_is_read_only(bdrv_backing_child(top)), "base not read-only");
    error_free(err);
    bdrv_unref(top);
    return 0;
}

START_TEST(test_commit_refused)
{
    make_chain();
    char *bp = path("base.qcow2"), *tp = path("top.qcow2");
    struct bt_snapshot b0, t0;
    bt_snap(bp, &b0);
    /* Forced read-only base. */
    struct bdrv_node *top = open_fmt("top.qcow2", "backing.force-read-only=on");
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_commit(top, NULL, true, NULL, NULL, &err), -EACCES);
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(strstr(err->msg, "forced read-only"), "%s", err->msg);
    error_free(err);
    ck_assert(bdrv_is_read_only(bdrv_backing_child(top)));
    bdrv_unref(top);
    ck_assert(bt_unchanged(bp, &b0));
    /* Unwritable base file (mode 0444, unprivileged user). */
    ck_assert_int_eq(sh("chmod 0444 base.qcow2 && chmod 0666 top.qcow2"), 0);
    free(b0.data);
    bt_snap(bp, &b0);
    bt_snap(tp, &t0);
    char *s = NULL;
    ck_assert_int_ge(asprintf(&s, "driver=qcow2,file.filename=%s,locking=off", tp), 0);
    ck_assert_int_eq(bt_as_nobody(commit_as_nobody, s), 0);
    ck_assert(bt_unchanged(bp, &b0));
    ck_assert_int_eq(sh("qemu-img check -q top.qcow2 && qemu-img check -q base.qcow2"), 0);
    free(s);
    free(b0.data);
    free(t0.data);
    free(bp);
    free(tp);
}
END_TEST

/* ---- crash consistency and threads ------------------------------------- */

static void writer_forever(const char *name, unsigned seed)
{
    struct bdrv_node *bs = open_fmt(name, "discard=unmap");
    uint8_t *buf = malloc(200000);
    memset(buf, 0x42, 200000);
    for (;;) {
        uint64_t off = ((uint64_t)rand_r(&seed) * 4099) % ((64 << 20) - 200000);
        uint32_t len = 1 + (uint32_t)rand_r(&seed) % 200000;
        int op = rand_r(&seed) % 8;
        if (op == 0) {
            bdrv_pdiscard(bs, off, len);
        } else if (op == 1) {
            bdrv_pwrite_zeroes(bs, off, len, BDRV_REQ_MAY_UNMAP);
        } else {
            bdrv_pwrite(bs, off, buf, len, 0);
        }
    }
}

START_TEST(test_crash_consistency)
{
    static const char *const kinds[] = { "-o cluster_size=65536", "-o cluster_size=512,refcount_bits=1",
                                         "-o cluster_size=4096 -b b.qcow2 -F qcow2" };
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 b.qcow2 64M && "
                        "qemu-io -f qcow2 -c 'write -P 3 0 64M' b.qcow2"), 0);
    unsigned seed = (unsigned)time(NULL);
    for (int run = 0; run < 24; run++) {
        ck_assert_int_eq(sh("rm -f k.qcow2 && qemu-img create -q -f qcow2 %s k.qcow2 64M",
                            kinds[run % 3]), 0);
        fflush(NULL);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            writer_forever("k.qcow2", seed + (unsigned)run);
            _exit(0);
        }
        struct timespec ts = { 0, (long)(20 + rand_r(&seed) % 100) * 1000000 };
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        int rc = sh("qemu-img check k.qcow2 > check.out 2>&1");
        ck_assert_msg(rc == 0 || rc == 3, "run %d (%s, seed %u): qemu-img check exit %d",
                      run, kinds[run % 3], seed + (unsigned)run, rc);
        if (rc == 3) {
            ck_assert_int_eq(sh("qemu-img check -q -r leaks k.qcow2"), 0);
        }
    }
}
END_TEST

struct thr {
    struct bdrv_node *bs;
    int idx;
};

static void *thread_io(void *arg)
{
    struct thr *t = arg;
    uint8_t buf[12288], rb[12288];
    unsigned seed = (unsigned)t->idx;
    for (int i = 0; i < 400; i++) {
        /* Each thread owns every 4th 256 KiB stripe. */
        uint64_t stripe = ((uint64_t)rand_r(&seed) % 16) * 4 + (uint64_t)t->idx;
        uint64_t off = stripe * 262144 + (uint64_t)rand_r(&seed) % (262144 - sizeof(buf));
        memset(buf, (uint8_t)(t->idx * 16 + i % 16), sizeof(buf));
        if (bdrv_pwrite(t->bs, off, buf, sizeof(buf), 0) < 0 ||
            bdrv_pread(t->bs, off, rb, sizeof(rb)) < 0 || memcmp(buf, rb, sizeof(buf))) {
            return (void *)1;
        }
    }
    return NULL;
}

START_TEST(test_threads)
{
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -o cluster_size=4096 t.qcow2 16M"), 0);
    struct bdrv_node *bs = open_fmt("t.qcow2", "");
    pthread_t th[4];
    struct thr a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct thr){ bs, i };
        pthread_create(&th[i], NULL, thread_io, &a[i]);
    }
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        ck_assert_ptr_null(r);
    }
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img check -q t.qcow2"), 0);
}
END_TEST

/* ---- many requests in flight through the block backend ----------------- */

#define SLOTS 256
#define SLOT 16384

struct aio_req {
    int *pending;
    int ret;
    uint8_t buf[8192];
};

static void aio_done(void *opaque, int ret)
{
    struct aio_req *r = opaque;
    r->ret = ret;
    (*r->pending)--;
}

START_TEST(test_backend_inflight)
{
    ck_assert_int_eq(sh("head -c 4M /dev/urandom > b.raw && "
                        "qemu-img create -q -f qcow2 -o cluster_size=4096 "
                        "-b b.raw -F raw q.qcow2 4M"), 0);
    ck_assert_int_eq(sh("cp b.raw ref.raw"), 0);
    struct error *err = NULL;
    struct event_loop *loop = ev_loop_new(&err);
    ck_assert_ptr_nonnull(loop);
    struct bdrv_open_opts o;
    char *s = NULL;
    ck_assert_int_ge(asprintf(&s, "driver=qcow2,file.filename=%s/q.qcow2,discard=unmap", dir), 0);
    ck_assert_int_eq(bdrv_open_opts_parse(s, &o, &err), 0);
    struct blk_backend *blk = blk_open(loop, &o, NULL, &err);
    ck_assert_msg(blk != NULL, "%s", err ? err->msg : "?");
    bdrv_open_opts_free(&o);
    free(s);
    char *rp = path("ref.raw");
    int ref = open(rp, O_RDWR);
    ck_assert_int_ge(ref, 0);
    static struct aio_req reqs[64];
    uint64_t written[SLOTS] = { 0 };    /* offset+1 of the last write per slot */
    uint8_t pat[SLOTS];                 /* and its byte */
    int slot_of[64];
    unsigned seed = 11;
    for (int round = 0; round < 30; round++) {
        int pending = 0;
        bool used[SLOTS] = { false };
        for (int i = 0; i < 64; i++) {
            int slot;
            do {
                slot = rand_r(&seed) % SLOTS;
            } while (used[slot]);
            used[slot] = true;
            struct aio_req *r = &reqs[i];
            r->pending = &pending;
            r->ret = 1;
            struct iovec iov = { r->buf, 4096 + (size_t)(rand_r(&seed) % 8) * 512 };
            if (i % 2 && written[slot]) {
                /* Read back a slot written in an earlier round. */
                pending++;
                iov.iov_len = 4096;
                slot_of[i] = slot;
                ck_assert_int_eq(blk_aio_preadv(blk, written[slot] - 1, &iov, 1, aio_done, r), 0);
                continue;
            }
            uint64_t off = (uint64_t)slot * SLOT + (uint64_t)(rand_r(&seed) % 16) * 512;
            slot_of[i] = -1;
            pat[slot] = (uint8_t)(round * 64 + i);
            memset(r->buf, pat[slot], iov.iov_len);
            ck_assert_int_eq(full_pwrite(ref, r->buf, iov.iov_len, off), (ssize_t)iov.iov_len);
            written[slot] = off + 1;
            pending++;
            ck_assert_int_eq(blk_aio_pwritev(blk, off, &iov, 1, 0, aio_done, r), 0);
        }
        while (pending) {
            ev_run_once(loop, -1);
        }
        for (int i = 0; i < 64; i++) {
            ck_assert_int_eq(reqs[i].ret, 0);
            for (int k = 0; slot_of[i] >= 0 && k < 4096; k++) {
                ck_assert_uint_eq(reqs[i].buf[k], pat[slot_of[i]]);
            }
        }
    }
    blk_free(blk);
    ev_loop_free(loop);
    close(ref);
    free(rp);
    ck_assert_int_eq(sh("qemu-img check -q q.qcow2 && "
                        "qemu-img compare -q -f qcow2 -F raw q.qcow2 ref.raw"), 0);
}
END_TEST

START_TEST(test_backend_cold_reads)
{
    /* Read-only image out of the page cache: reads leave the fast path
     * (io_uring or workers), 64 at a time; every byte checked. */
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 c.qcow2 16M && "
                        "qemu-io -f qcow2 -c 'write -P 0x3c 0 16M' c.qcow2"), 0);
    char *p = path("c.qcow2");
    int fd = open(p, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fdatasync(fd), 0);
    ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    close(fd);
    struct error *err = NULL;
    struct event_loop *loop = ev_loop_new(&err);
    struct bdrv_open_opts o;
    char *s = NULL;
    ck_assert_int_ge(asprintf(&s, "driver=qcow2,file.filename=%s,read-only=on", p), 0);
    ck_assert_int_eq(bdrv_open_opts_parse(s, &o, &err), 0);
    struct blk_backend *blk = blk_open(loop, &o, NULL, &err);
    ck_assert_msg(blk != NULL, "%s", err ? err->msg : "?");
    bdrv_open_opts_free(&o);
    static struct aio_req reqs[64];
    int pending = 0;
    for (int i = 0; i < 64; i++) {
        reqs[i].pending = &pending;
        reqs[i].ret = 1;
        memset(reqs[i].buf, 0, sizeof(reqs[i].buf));
        struct iovec iov = { reqs[i].buf, 4096 };
        pending++;
        ck_assert_int_eq(blk_aio_preadv(blk, (uint64_t)i * 250000 & ~4095ull, &iov, 1,
                                        aio_done, &reqs[i]), 0);
    }
    while (pending) {
        ev_run_once(loop, -1);
    }
    for (int i = 0; i < 64; i++) {
        ck_assert_int_eq(reqs[i].ret, 0);
        for (int k = 0; k < 4096; k++) {
            ck_assert_uint_eq(reqs[i].buf[k], 0x3c);
        }
    }
    blk_free(blk);
    ev_loop_free(loop);
    free(s);
    free(p);
}
END_TEST

/* Amend and backing-file changes reach qcow2 through its vtable
 * (bdrv_qcow2_ops.amend / .change_backing_file); qemu-img sees them. */
START_TEST(test_amend_vtable)
{
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 b.qcow2 1M"), 0);
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -o compat=1.1 v.qcow2 1M"), 0);
    struct bdrv_node *bs = open_fmt("v.qcow2", "");
    struct bdrv_amend_opts ao = { .lazy_refcounts = { .set = true, .value = true } };
    ck_assert_int_eq(bdrv_amend(bs, &ao, NULL), 0);
    ck_assert_int_eq(bdrv_change_backing_file(bs, "b.qcow2", "qcow2", NULL), 0);
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img info v.qcow2 | grep -q '^    lazy refcounts: true'"), 0);
    ck_assert_int_eq(sh("qemu-img info v.qcow2 | grep -qx 'backing file: b.qcow2'"), 0);
    ck_assert_int_eq(sh("qemu-img check -q v.qcow2"), 0);
}
END_TEST

static Suite *qcow2_suite(void)
{
    Suite *s = suite_create("qcow2");
    TCase *tc = tcase_create("read");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_read_qemu_matrix);
    tcase_add_test(tc, test_read_compressed);
    tcase_add_test(tc, test_backing_chain_read);
    suite_add_tcase(s, tc);

    tc = tcase_create("write");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_write_matrix);
    tcase_add_test(tc, test_write_over_backing);
    tcase_add_test(tc, test_write_cache_modes);
    tcase_add_test(tc, test_create_matrix);
    tcase_add_test(tc, test_create_errors);
    tcase_add_test(tc, test_resize);
    tcase_add_test(tc, test_internal_snapshots);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_backend_inflight);
    tcase_add_test(tc, test_backend_cold_reads);
    suite_add_tcase(s, tc);

    tc = tcase_create("header");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_feature_bits);
    tcase_add_test(tc, test_extensions);
    tcase_add_test(tc, test_dirty_repair);
    tcase_add_test(tc, test_check_repair);
    tcase_add_test(tc, test_hostile_images);
    tcase_add_test(tc, test_backing_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("chain");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_snapshot_mode);
    tcase_add_test(tc, test_commit);
    tcase_add_test(tc, test_commit_refused);
    tcase_add_test(tc, test_commit_chain);
    tcase_add_test(tc, test_crash_consistency);
    tcase_add_test(tc, test_amend_vtable);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test-qcow2", LOG_ERROR);
    /* qemu-img and qemu-io are the oracles: without them nothing is tested. */
    if (system("command -v qemu-img >/dev/null && command -v qemu-io >/dev/null") != 0) {
        fprintf(stderr, "missing peer: qemu-img/qemu-io\n");
        return 77;
    }
    return bt_run(qcow2_suite());
}
