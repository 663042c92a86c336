/*
 * tests/unit/test-qcow2-ext.c — qcow2 features beyond the base format:
 * extended L2 entries (subclusters), external data files, internal
 * snapshots and lazy refcounts (crash and repair), with
 * qemu-img and qemu-io as oracles for images either side makes.
 */
#include "tests/unit/qcow2-test.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>

static void setup(void)
{
    dir = bt_tmpdir();
    /* A data file's relative name is opened from the working directory,
     * as QEMU opens it. */
    ck_assert_int_eq(chdir(dir), 0);
}

/* ---- extended L2 entries ------------------------------------------------ */

/* Scattered writes, most of them smaller than a cluster or unaligned to
 * subclusters, zeroes both allocated and not. */
#define QIO_SC_WRITES \
    "-c 'write -P 0x11 0 4k' -c 'write -P 0x22 1020k 70k' -c 'write -P 0x33 3000k 1k' " \
    "-c 'write -P 0x44 5m 1m' -c 'write -z 5m 64k' -c 'write -z -u 5632k 128k' " \
    "-c 'write -P 0x55 7m 513' -c 'write -P 0x66 8191k 1k' -c 'write -P 0x77 6m 2k' " \
    "-c 'write -z 6146k 2k' -c 'write -P 0x78 6150k 3000' -c 'write -z 1030k 4k'"

START_TEST(test_extl2_read_qemu)
{
    static const char *const matrix[] = {
        "extended_l2=on",
        "extended_l2=on,cluster_size=16384",
        "extended_l2=on,cluster_size=2M,refcount_bits=8",
        "extended_l2=on,cluster_size=128k,lazy_refcounts=on",
        "extended_l2=on,preallocation=metadata",
    };
    for (size_t i = 0; i < ARRAY_SIZE(matrix); i++) {
        for (int backing = 0; backing < 2; backing++) {
            if (backing && strstr(matrix[i], "prealloc")) {
                ck_assert_int_eq(sh("rm -f b.qcow2 && qemu-img create -q -f qcow2 b.qcow2 8M && "
                                    "qemu-io -f qcow2 -c 'write -P 0x5a 0 8M' b.qcow2"), 0);
            } else if (backing) {
                ck_assert_int_eq(sh("rm -f b.qcow2 && qemu-img create -q -f qcow2 b.qcow2 6M && "
                                    "qemu-io -f qcow2 -c 'write -P 0x5a 0 6M' b.qcow2"), 0);
            }
            ck_assert_int_eq(sh("rm -f q.qcow2 ref.raw && qemu-img create -q -f qcow2 -o '%s' "
                                "%s q.qcow2 8M && qemu-io -f qcow2 " QIO_SC_WRITES " q.qcow2 && "
                                "qemu-img convert -f qcow2 -O raw q.qcow2 ref.raw", matrix[i],
                                backing ? "-b b.qcow2 -F qcow2" : ""), 0);
            struct bdrv_node *bs = open_fmt("q.qcow2", "read-only=on");
            assert_same_as_raw(bs, "ref.raw");
            bdrv_unref(bs);
        }
    }
}
END_TEST

START_TEST(test_extl2_block_status)
{
    /* 64 KiB clusters: 2 KiB subclusters. One subcluster written in the
     * middle of a cluster over a backing file. */
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 b.qcow2 1M && "
                        "qemu-io -f qcow2 -c 'write -P 0x5a 0 1M' b.qcow2 && "
                        "qemu-img create -q -f qcow2 -o extended_l2=on -b b.qcow2 -F qcow2 "
                        "q.qcow2 1M && qemu-io -f qcow2 -c 'write -P 1 68k 2k' "
                        "-c 'write -z 72k 4k' q.qcow2"), 0);
    struct bdrv_node *bs = open_fmt("q.qcow2", "read-only=on");
    uint64_t pnum, map;
    int depth;
    int st = bdrv_block_status(bs, 64 << 10, 64 << 10, &pnum, &map, &depth);
    ck_assert_int_ge(st, 0);
    ck_assert(!(st & BDRV_BLOCK_ALLOCATED));
    ck_assert_uint_eq(pnum, 4 << 10);
    st = bdrv_block_status(bs, 68 << 10, 64 << 10, &pnum, &map, &depth);
    ck_assert(st & BDRV_BLOCK_ALLOCATED);
    ck_assert(st & BDRV_BLOCK_DATA);
    ck_assert_uint_eq(pnum, 2 << 10);
    st = bdrv_block_status(bs, 70 << 10, 64 << 10, &pnum, &map, &depth);
    ck_assert(!(st & BDRV_BLOCK_ALLOCATED));
    ck_assert_uint_eq(pnum, 2 << 10);
    st = bdrv_block_status(bs, 72 << 10, 64 << 10, &pnum, &map, &depth);
    ck_assert(st & BDRV_BLOCK_ALLOCATED);
    ck_assert(st & BDRV_BLOCK_ZERO);
    ck_assert_uint_eq(pnum, 4 << 10);
    /* The rest of the cluster and the next cluster (no entry): backing. */
    st = bdrv_block_status(bs, 76 << 10, 1 << 20, &pnum, &map, &depth);
    ck_assert(!(st & BDRV_BLOCK_ALLOCATED));
    ck_assert_uint_ge(pnum, 52 << 10);
    bdrv_unref(bs);
}
END_TEST

struct mirror {
    struct bdrv_node *bs;
    int ref;
    uint64_t size;
};

static void apply_random_ops(struct mirror *m, unsigned seed, int nops, uint32_t max_len)
{
    uint8_t *buf = malloc(max_len), *rb = malloc(max_len), *z = calloc(1, max_len);
    for (int i = 0; i < nops; i++) {
        uint64_t off = ((uint64_t)rand_r(&seed) * 4099) % m->size;
        uint32_t len = 1 + (uint32_t)rand_r(&seed) % max_len;
        if (rand_r(&seed) % 2) {
            len = 1 + len % 5000;   /* mostly inside one cluster */
        }
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
            ck_assert_int_eq(bdrv_pdiscard(m->bs, off, len), 0);
            ck_assert_int_eq(bdrv_pread(m->bs, off, rb, len), 0);
            ck_assert_int_eq(full_pwrite(m->ref, rb, len, off), (ssize_t)len);
        }
        if (i % 8 == 0) {
            ck_assert_int_eq(bdrv_pread(m->bs, off, rb, len), 0);
            ck_assert_int_eq(full_pread(m->ref, buf, len, off), (ssize_t)len);
            ck_assert_msg(!memcmp(rb, buf, len), "op %d at %" PRIu64 "+%u", i, off, len);
        }
    }
    free(buf);
    free(rb);
    free(z);
}

/* diskdm creates and writes; qemu-img check and compare judge. With
 * `qemu_first`, qemu-io wrote into the image before. */
static void extl2_write_check(uint32_t cs, bool backing, bool qemu_first, unsigned seed)
{
    ck_assert_int_eq(sh("rm -f w.qcow2 ref.raw b.qcow2"), 0);
    if (backing) {
        ck_assert_int_eq(sh("qemu-img create -q -f qcow2 b.qcow2 6M && "
                            "qemu-io -f qcow2 -c 'write -P 0x5a 0 6M' b.qcow2"), 0);
    }
    char *p = path("w.qcow2");
    struct bdrv_create_opts co = { .size = 8 << 20, .cluster_size = cs, .extended_l2 = true };
    if (backing) {
        co.backing_file = "b.qcow2";
        co.backing_format = "qcow2";
    }
    struct error *err = NULL;
    int ret = bdrv_create("qcow2", p, &co, &err);
    ck_assert_msg(ret == 0, "create: %s", err ? err->msg : "?");
    if (qemu_first) {
        ck_assert_int_eq(sh("qemu-io -f qcow2 " QIO_SC_WRITES " w.qcow2"), 0);
    }
    ck_assert_int_eq(sh("qemu-img convert -f qcow2 -O raw w.qcow2 ref.raw"), 0);
    struct mirror m = { .bs = open_fmt("w.qcow2", "discard=unmap"), .size = 8 << 20 };
    char *rp = path("ref.raw");
    m.ref = open(rp, O_RDWR);
    ck_assert_int_ge(m.ref, 0);
    apply_random_ops(&m, seed, 300, 3 * cs);
    assert_same_as_raw(m.bs, "ref.raw");
    struct bdrv_check_result res;
    ck_assert_int_eq(bdrv_check(m.bs, &res, 0, NULL), 0);
    ck_assert_uint_eq(res.corruptions + res.leaks, 0);
    bdrv_unref(m.bs);
    close(m.ref);
    ck_assert_msg(sh("qemu-img check -q w.qcow2") == 0, "qemu-img check failed (cs %u)", cs);
    ck_assert_msg(sh("qemu-img compare -q -f qcow2 -F raw w.qcow2 ref.raw") == 0,
                  "qemu-img compare differs (cs %u)", cs);
    free(p);
    free(rp);
}

START_TEST(test_extl2_write)
{
    extl2_write_check(65536, false, false, 1);
    extl2_write_check(16384, false, true, 2);
    extl2_write_check(65536, true, false, 3);
    extl2_write_check(32768, true, true, 4);
    extl2_write_check(1 << 20, true, false, 5);
}
END_TEST

START_TEST(test_extl2_subcluster_alloc)
{
    /* A 2 KiB write into an empty 64 KiB cluster over a backing file
     * allocates one subcluster: the rest still reads from the backing
     * file, and qemu-img map says so. */
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 b.qcow2 1M && "
                        "qemu-io -f qcow2 -c 'write -P 0x5a 0 1M' b.qcow2 && "
                        "qemu-img create -q -f qcow2 -o extended_l2=on -b b.qcow2 -F qcow2 "
                        "w.qcow2 1M"), 0);
    struct bdrv_node *bs = open_fmt("w.qcow2", "");
    uint8_t b[3000];
    memset(b, 7, sizeof(b));
    ck_assert_int_eq(bdrv_pwrite(bs, (64 << 10) + 2048, b, 2048, 0), 0);
    /* Unaligned: two subclusters, completed from the backing file. */
    ck_assert_int_eq(bdrv_pwrite(bs, (128 << 10) + 1000, b, 3000, 0), 0);
    /* Zeroes on whole subclusters of an allocated cluster: zero bits. */
    ck_assert_int_eq(bdrv_pwrite_zeroes(bs, (64 << 10) + 8192, 4096, 0), 0);
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img check -q w.qcow2"), 0);
    ck_assert_int_eq(sh("qemu-io -f qcow2 -c 'read -P 0x5a 64k 2k' -c 'read -P 7 66k 2k' "
                        "-c 'read -P 0x5a 68k 4k' -c 'read -P 0 72k 4k' "
                        "-c 'read -P 0x5a 76k 52k' -c 'read -P 0x5a 128k 1000' "
                        "-c 'read -P 7 132072 3000' -c 'read -P 0x5a 135072 96' "
                        "w.qcow2 > r.out && ! grep -q -e failed -e error r.out"), 0);
    /* qemu-img map: 66k..68k allocated in the top (depth 0), the rest of
     * the cluster from the backing file (depth 1). */
    ck_assert_int_eq(sh("qemu-img map --output=json w.qcow2 > map.json && "
                        "grep -q '\"start\": 67584, \"length\": 2048, \"depth\": 0' map.json && "
                        "grep -q '\"start\": 0, \"length\": 67584, \"depth\": 1' map.json"),
                     0);
    /* The L2 entry of cluster 1: bitmap alloc bit 1, zero bits 4-5. */
    uint64_t l1 = peek64("w.qcow2", 40);
    uint64_t l2 = peek64("w.qcow2", (long)l1) & 0x00fffffffffffe00ull;
    ck_assert_uint_eq(peek64("w.qcow2", (long)(l2 + 16 + 8)), (0x30ull << 32) | 0x2);
}
END_TEST

START_TEST(test_extl2_create_errors)
{
    char *p = path("e.qcow2");
    struct error *err = NULL;
    struct bdrv_create_opts co = { .size = 1 << 20, .cluster_size = 8192, .extended_l2 = true };
    ck_assert_int_eq(bdrv_create("qcow2", p, &co, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "Extended L2 entries are only supported with cluster sizes "
                     "of at least 16384 bytes");
    error_free(err);
    err = NULL;
    co.cluster_size = 0;
    co.compat = "0.10";
    ck_assert_int_eq(bdrv_create("qcow2", p, &co, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "Extended L2 entries are only supported with compatibility "
                     "level 1.1 and above (use version=v3 or greater)");
    error_free(err);
    /* Preallocation with a backing file needs subclusters. */
    err = NULL;
    co.compat = NULL;
    co.prealloc = PREALLOC_METADATA;
    co.backing_file = "b.qcow2";
    co.backing_format = "qcow2";
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 b.qcow2 1M && "
                        "qemu-io -f qcow2 -c 'write -P 9 0 1M' b.qcow2"), 0);
    ck_assert_int_eq(bdrv_create("qcow2", p, &co, &err), 0);
    ck_assert_int_eq(sh("qemu-img check -q e.qcow2 && qemu-io -f qcow2 -c 'read -P 9 0 1M' "
                        "e.qcow2 > r.out && ! grep -q failed r.out"), 0);
    free(p);
}
END_TEST

START_TEST(test_extl2_hostile)
{
    /* Cluster 0 allocated, cluster 1 not: give cluster 1 an allocation
     * bit (no host cluster), then cluster 0 both bits for subcluster 3. */
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -o extended_l2=on h.qcow2 1M && "
                        "qemu-io -f qcow2 -c 'write -P 1 0 64k' h.qcow2"), 0);
    uint64_t l1 = peek64("h.qcow2", 40);
    uint64_t l2 = peek64("h.qcow2", (long)l1) & 0x00fffffffffffe00ull;
    poke64("h.qcow2", (long)(l2 + 16 + 8), 1);
    struct bdrv_node *bs = open_fmt("h.qcow2", "read-only=on");
    uint8_t b[512];
    ck_assert_int_eq(bdrv_pread(bs, 0, b, sizeof(b)), 0);
    ck_assert_int_eq(bdrv_pread(bs, 64 << 10, b, sizeof(b)), -EIO);
    struct bdrv_check_result res;
    ck_assert_int_eq(bdrv_check(bs, &res, 0, NULL), 0);
    ck_assert_uint_eq(res.corruptions, 1);
    bdrv_unref(bs);
    poke64("h.qcow2", (long)(l2 + 16 + 8), 0);
    poke64("h.qcow2", (long)(l2 + 8), (1ull << 35) | 0xffffffffull);
    bs = open_fmt("h.qcow2", "read-only=on");
    ck_assert_int_eq(bdrv_pread(bs, 6 << 10, b, sizeof(b)), -EIO);
    bdrv_unref(bs);
    /* Read-write: writes stop there and the image is marked corrupt. */
    bs = open_fmt("h.qcow2", "");
    ck_assert_int_eq(bdrv_pwrite(bs, 100, b, sizeof(b), 0), -EIO);
    bdrv_unref(bs);
    ck_assert_uint_eq(peek64("h.qcow2", 72) & 2, 2);
}
END_TEST

/* ---- external data file ------------------------------------------------ */

START_TEST(test_data_file_read_qemu)
{
    static const char *const matrix[] = {
        "data_file=d.raw",
        "data_file=d.raw,data_file_raw=on",
        "data_file=d.raw,cluster_size=4096,refcount_bits=1",
        "data_file=d.raw,preallocation=metadata,cluster_size=512",
        "data_file=d.raw,extended_l2=on",
        "data_file=d.raw,data_file_raw=on,extended_l2=on,cluster_size=16384",
    };
    for (size_t i = 0; i < ARRAY_SIZE(matrix); i++) {
        ck_assert_int_eq(sh("rm -f q.qcow2 d.raw ref.raw && qemu-img create -q -f qcow2 -o '%s' "
                            "q.qcow2 8M && qemu-io -f qcow2 " QIO_SC_WRITES " q.qcow2 && "
                            "qemu-img convert -f qcow2 -O raw q.qcow2 ref.raw", matrix[i]), 0);
        struct bdrv_node *bs = open_fmt("q.qcow2", "read-only=on");
        assert_same_as_raw(bs, "ref.raw");
        bdrv_unref(bs);
    }
    /* Over a backing file. */
    ck_assert_int_eq(sh("rm -f q.qcow2 d.raw ref.raw && qemu-img create -q -f qcow2 b.qcow2 6M && "
                        "qemu-io -f qcow2 -c 'write -P 0x5a 0 6M' b.qcow2 && "
                        "qemu-img create -q -f qcow2 -o data_file=d.raw -b b.qcow2 -F qcow2 "
                        "q.qcow2 8M && qemu-io -f qcow2 " QIO_SC_WRITES " q.qcow2 && "
                        "qemu-img convert -f qcow2 -O raw q.qcow2 ref.raw"), 0);
    struct bdrv_node *bs = open_fmt("q.qcow2", "read-only=on");
    assert_same_as_raw(bs, "ref.raw");
    bdrv_unref(bs);
}
END_TEST

static void data_file_write_check(uint32_t cs, bool raw, bool backing, bool ext,
                                  unsigned seed)
{
    ck_assert_int_eq(sh("rm -f w.qcow2 wd.raw ref.raw b.qcow2"), 0);
    if (backing) {
        ck_assert_int_eq(sh("qemu-img create -q -f qcow2 b.qcow2 6M && "
                            "qemu-io -f qcow2 -c 'write -P 0x5a 0 6M' b.qcow2"), 0);
    }
    char *p = path("w.qcow2");
    struct bdrv_create_opts co = { .size = 8 << 20, .cluster_size = cs,
                                   .data_file = "wd.raw", .data_file_raw = raw,
                                   .extended_l2 = ext };
    if (backing) {
        co.backing_file = "b.qcow2";
        co.backing_format = "qcow2";
    }
    struct error *err = NULL;
    int ret = bdrv_create("qcow2", p, &co, &err);
    ck_assert_msg(ret == 0, "create: %s", err ? err->msg : "?");
    ck_assert_int_eq(sh("qemu-img check -q w.qcow2 && "
                        "qemu-img convert -f qcow2 -O raw w.qcow2 ref.raw"), 0);
    struct mirror m = { .bs = open_fmt("w.qcow2", "discard=unmap"), .size = 8 << 20 };
    char *rp = path("ref.raw");
    m.ref = open(rp, O_RDWR);
    ck_assert_int_ge(m.ref, 0);
    apply_random_ops(&m, seed, 300, 3 * cs);
    assert_same_as_raw(m.bs, "ref.raw");
    struct bdrv_check_result res;
    ck_assert_int_eq(bdrv_check(m.bs, &res, 0, NULL), 0);
    ck_assert_uint_eq(res.corruptions + res.leaks, 0);
    bdrv_unref(m.bs);
    close(m.ref);
    ck_assert_msg(sh("qemu-img check -q w.qcow2") == 0, "qemu-img check failed (cs %u)", cs);
    ck_assert_msg(sh("qemu-img compare -q -f qcow2 -F raw w.qcow2 ref.raw") == 0,
                  "qemu-img compare differs (cs %u)", cs);
    if (raw) {
        /* The data file alone is the disk, and stays flagged so. */
        ck_assert_int_eq(sh("cmp wd.raw ref.raw"), 0);
        ck_assert_uint_eq(peek64("w.qcow2", 88), 2);
    }
    free(p);
    free(rp);
}

START_TEST(test_data_file_write)
{
    data_file_write_check(65536, false, false, false, 11);
    data_file_write_check(4096, true, false, false, 12);
    data_file_write_check(65536, false, true, false, 13);
    data_file_write_check(512, false, false, false, 14);
    /* With subclusters too. */
    data_file_write_check(65536, false, true, true, 15);
    data_file_write_check(16384, true, false, true, 16);
}
END_TEST

START_TEST(test_data_file_modes)
{
    /* Image and data file in a directory the process is not in: the name
     * is opened as it stands (relative to the working directory), as QEMU
     * does, not against the image's directory as a backing file's is. */
    ck_assert_int_eq(sh("mkdir sub && qemu-img create -q -f qcow2 -o data_file=sub/d.raw "
                        "sub/m.qcow2 1M && qemu-io -f qcow2 -c 'write -P 7 0 64k' sub/m.qcow2"), 0);
    char *dp = path("sub/d.raw");
    struct bdrv_node *bs = open_fmt("sub/m.qcow2", "read-only=on");
    ck_assert_int_eq(bt_write_fds(dp), 0);
    uint8_t b[4096];
    ck_assert_int_eq(bdrv_pread(bs, 0, b, sizeof(b)), 0);
    ck_assert_uint_eq(b[100], 7);
    ck_assert_int_eq(bdrv_pwrite(bs, 0, b, sizeof(b), 0), -EPERM);
    ck_assert_int_eq(bt_write_fds(dp), 0);
    /* Reopened read-write, the data file follows; and back. */
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_reopen_read_only(bs, false, &err), 0);
    ck_assert_int_gt(bt_write_fds(dp), 0);
    memset(b, 8, sizeof(b));
    ck_assert_int_eq(bdrv_pwrite(bs, 4096, b, sizeof(b), 0), 0);
    ck_assert_int_eq(bdrv_reopen_read_only(bs, true, &err), 0);
    ck_assert_int_eq(bt_write_fds(dp), 0);
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img check -q sub/m.qcow2 && qemu-io -f qcow2 "
                        "-c 'read -P 7 0 4k' -c 'read -P 8 4k 4k' -c 'read -P 7 8k 56k' "
                        "sub/m.qcow2 > r.out && ! grep -q failed r.out"), 0);
    /* Opened read-write: the data file is writable too. */
    bs = open_fmt("sub/m.qcow2", "");
    ck_assert_int_gt(bt_write_fds(dp), 0);
    struct bdrv_qcow2_info qi = { 0 };
    bdrv_get_qcow2_info(bs, &qi);
    ck_assert_str_eq(qi.data_file, "sub/d.raw");
    ck_assert(!qi.data_file_raw);
    bdrv_unref(bs);
    /* A missing data file: a clear error. */
    ck_assert_int_eq(sh("rm sub/d.raw"), 0);
    char *s = NULL;
    ck_assert_int_ge(asprintf(&s, "driver=qcow2,file.filename=%s/sub/m.qcow2", dir), 0);
    bs = bt_open(s, &err);
    ck_assert_ptr_null(bs);
    ck_assert_msg(strstr(err->msg, "Could not open data file '") && strstr(err->msg, "sub/d.raw"),
                  "%s", err->msg);
    error_free(err);
    err = NULL;
    /* The feature bit without a name. */
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 sub/n.qcow2 1M"), 0);
    poke64("sub/n.qcow2", 72, 1ull << 2);
    free(s);
    ck_assert_int_ge(asprintf(&s, "driver=qcow2,file.filename=%s/sub/n.qcow2", dir), 0);
    bs = bt_open(s, &err);
    ck_assert_ptr_null(bs);
    ck_assert_msg(strstr(err->msg, "the image uses an external data file but names none"),
                  "%s", err->msg);
    error_free(err);
    free(s);
    free(dp);
}
END_TEST

START_TEST(test_data_file_create_errors)
{
    static const struct {
        struct bdrv_create_opts co;
        const char *msg;
    } cases[] = {
        { { .size = 1 << 20, .compat = "0.10", .data_file = "d.raw" },
          "External data files are only supported with compatibility level 1.1 and above "
          "(use version=v3 or greater)" },
        { { .size = 1 << 20, .data_file_raw = true }, "data-file-raw requires data-file" },
        { { .size = 1 << 20, .data_file = "d.raw", .data_file_raw = true,
            .backing_file = "b.qcow2" },
          "Backing file and data-file-raw cannot be used at the same time" },
    };
    char *p = path("e.qcow2");
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct error *err = NULL;
        ck_assert_int_eq(bdrv_create("qcow2", p, &cases[i].co, &err), -EINVAL);
        ck_assert_str_eq(err->msg, cases[i].msg);
        error_free(err);
    }
    free(p);
}
END_TEST

/* ---- internal snapshots ------------------------------------------------ */

static void snapshot_cycle(const char *create_opts, unsigned seed)
{
    ck_assert_int_eq(sh("rm -f i.qcow2 orig.raw ref.raw s.raw && "
                        "qemu-img create -q -f qcow2 -o %s i.qcow2 8M && "
                        "qemu-io -f qcow2 " QIO_SC_WRITES " i.qcow2 && "
                        "qemu-img convert -f qcow2 -O raw i.qcow2 orig.raw && cp orig.raw ref.raw",
                        create_opts), 0);
    struct bdrv_node *bs = open_fmt("i.qcow2", "discard=unmap");
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_snapshot_create(bs, "a", &err), 0);
    /* Writes after it copy the shared clusters: the snapshot keeps them. */
    struct mirror m = { .bs = bs, .size = 8 << 20 };
    char *rp = path("ref.raw");
    m.ref = open(rp, O_RDWR);
    ck_assert_int_ge(m.ref, 0);
    apply_random_ops(&m, seed, 200, 200000);
    close(m.ref);
    assert_same_as_raw(bs, "ref.raw");
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img check -q i.qcow2"), 0);
    ck_assert_int_eq(sh("qemu-img compare -q -f qcow2 -F raw i.qcow2 ref.raw"), 0);
    ck_assert_int_eq(sh("qemu-img convert -f qcow2 -O raw -l snapshot.name=a i.qcow2 s.raw && "
                        "cmp s.raw orig.raw"), 0);
    /* A second one, then back to the first, then both gone. */
    bs = open_fmt("i.qcow2", "discard=unmap");
    ck_assert_int_eq(bdrv_snapshot_create(bs, "b", &err), 0);
    ck_assert_int_eq(bdrv_snapshot_apply(bs, "a", &err), 0);
    assert_same_as_raw(bs, "orig.raw");
    uint8_t b[5000];
    memset(b, 0x3c, sizeof(b));
    ck_assert_int_eq(bdrv_pwrite(bs, 12345, b, sizeof(b), 0), 0);
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img check -q i.qcow2"), 0);
    ck_assert_int_eq(sh("qemu-img convert -f qcow2 -O raw -l snapshot.name=b i.qcow2 s.raw && "
                        "cmp s.raw ref.raw"), 0);
    bs = open_fmt("i.qcow2", "discard=unmap");
    ck_assert_int_eq(bdrv_snapshot_delete(bs, "a", &err), 0);
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img check -q i.qcow2"), 0);
    bs = open_fmt("i.qcow2", "discard=unmap");
    ck_assert_int_eq(bdrv_snapshot_delete(bs, "b", &err), 0);
    struct bdrv_snapshot *l;
    ck_assert_int_eq(bdrv_snapshot_list(bs, &l, &err), 0);
    /* Everything is ours alone again: writes go in place. */
    ck_assert_int_eq(bdrv_pwrite(bs, 12345, b, 100, 0), 0);
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img check -q i.qcow2 && qemu-img snapshot -l i.qcow2 > l.out && "
                        "! test -s l.out"), 0);
    ck_assert_int_eq(sh("qemu-io -f qcow2 -c 'read -P 0x3c 12345 5000' i.qcow2 > r.out && "
                        "! grep -q failed r.out"), 0);
    free(rp);
}

START_TEST(test_snapshot_cycle)
{
    snapshot_cycle("cluster_size=4096", 31);
    snapshot_cycle("cluster_size=65536,refcount_bits=4", 32);
    snapshot_cycle("extended_l2=on,cluster_size=32768", 33);
    snapshot_cycle("compat=0.10,cluster_size=16384", 34);
}
END_TEST

START_TEST(test_snapshot_qemu_made)
{
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -o cluster_size=8192 i.qcow2 4M && "
                        "qemu-io -f qcow2 -c 'write -P 1 0 4M' i.qcow2 && "
                        "qemu-img snapshot -c one i.qcow2 && "
                        "qemu-io -f qcow2 -c 'write -P 2 1M 100k' -c 'write -z 3M 64k' i.qcow2 && "
                        "qemu-img snapshot -c two i.qcow2 && "
                        "qemu-io -f qcow2 -c 'write -P 3 5000 3000' i.qcow2 && "
                        "qemu-img convert -O raw i.qcow2 top.raw && "
                        "qemu-img convert -O raw -l snapshot.name=two i.qcow2 two.raw"), 0);
    struct bdrv_node *bs = open_fmt("i.qcow2", "");
    assert_same_as_raw(bs, "top.raw");
    struct bdrv_snapshot *l = NULL;
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_snapshot_list(bs, &l, &err), 2);
    ck_assert_str_eq(l[0].id, "1");
    ck_assert_str_eq(l[0].name, "one");
    ck_assert_str_eq(l[1].id, "2");
    ck_assert_str_eq(l[1].name, "two");
    ck_assert_uint_eq(l[1].disk_size, 4 << 20);
    ck_assert_uint_eq(l[1].vm_state_size, 0);
    bdrv_snapshot_list_free(l, 2);
    /* Apply by ID, delete by name. */
    ck_assert_int_eq(bdrv_snapshot_apply(bs, "2", &err), 0);
    assert_same_as_raw(bs, "two.raw");
    ck_assert_int_eq(bdrv_snapshot_delete(bs, "one", &err), 0);
    ck_assert_int_eq(bdrv_snapshot_delete(bs, "one", &err), -ENOENT);
    ck_assert_str_eq(err->msg, "Could not delete snapshot 'one': snapshot not found");
    error_free(err);
    err = NULL;
    ck_assert_int_eq(bdrv_snapshot_apply(bs, "nosuch", &err), -ENOENT);
    ck_assert_str_eq(err->msg, "Could not apply snapshot 'nosuch': Failed to load snapshot: "
                     "No such file or directory");
    error_free(err);
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img check -q i.qcow2 && "
                        "qemu-img compare -q -f qcow2 -F raw i.qcow2 two.raw"), 0);
}
END_TEST

START_TEST(test_snapshot_refused)
{
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 i.qcow2 1M && "
                        "qemu-img snapshot -c one i.qcow2"), 0);
    struct bdrv_node *bs = open_fmt("i.qcow2", "read-only=on");
    struct error *err = NULL;
    struct bdrv_snapshot *l = NULL;
    ck_assert_int_eq(bdrv_snapshot_list(bs, &l, &err), 1);
    bdrv_snapshot_list_free(l, 1);
    ck_assert_int_eq(bdrv_snapshot_create(bs, "x", &err), -EACCES);
    ck_assert_msg(strstr(err->msg, "Could not create snapshot 'x': '") &&
                  strstr(err->msg, "' is read-only"), "%s", err->msg);
    error_free(err);
    err = NULL;
    ck_assert_int_eq(bdrv_snapshot_apply(bs, "one", &err), -EACCES);
    error_free(err);
    err = NULL;
    ck_assert_int_eq(bdrv_snapshot_delete(bs, "one", &err), -EACCES);
    error_free(err);
    err = NULL;
    bdrv_unref(bs);
    /* One-bit refcounts cannot count a second reference. */
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -o refcount_bits=1 r.qcow2 1M && "
                        "qemu-io -f qcow2 -c 'write -P 1 0 64k' r.qcow2"), 0);
    bs = open_fmt("r.qcow2", "");
    ck_assert_int_eq(bdrv_snapshot_create(bs, "x", &err), -ERANGE);
    ck_assert_str_eq(err->msg, "Could not create snapshot 'x': refcount overflow "
                     "(refcount_bits too small)");
    error_free(err);
    err = NULL;
    /* An external data file: refused. */
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -o data_file=d.raw d.qcow2 1M"), 0);
    bs = open_fmt("d.qcow2", "");
    ck_assert_int_eq(bdrv_snapshot_create(bs, "x", &err), -ENOTSUP);
    error_free(err);
    bdrv_unref(bs);
    ck_assert_int_eq(sh("qemu-img check -q d.qcow2"), 0);
}
END_TEST

static void expect_snap_open_error(const char *needle, int errnum)
{
    char *s = NULL;
    ck_assert_int_ge(asprintf(&s, "driver=qcow2,file.filename=%s/h.qcow2,read-only=on", dir), 0);
    struct error *err = NULL;
    struct bdrv_node *bs = bt_open(s, &err);
    ck_assert_ptr_null(bs);
    ck_assert_msg(strstr(err->msg, needle), "message '%s' lacks '%s'", err->msg, needle);
    ck_assert_int_eq(err->errnum, errnum);
    error_free(err);
    free(s);
}

static uint64_t fresh_snap(void)
{
    ck_assert_int_eq(sh("rm -f h.qcow2 && qemu-img create -q -f qcow2 h.qcow2 1M && "
                        "qemu-io -f qcow2 -c 'write -P 1 0 64k' h.qcow2 && "
                        "qemu-img snapshot -c one h.qcow2"), 0);
    return peek64("h.qcow2", 64);
}

START_TEST(test_snapshot_hostile)
{
    uint64_t t = fresh_snap();
    poke64("h.qcow2", (long)t, peek64("h.qcow2", (long)t) + 8);
    expect_snap_open_error("snapshot 0: L1 table (offset", EINVAL);
    t = fresh_snap();
    poke64("h.qcow2", (long)t, 1ull << 50);
    expect_snap_open_error("is unaligned or lies beyond the end of the file", EINVAL);
    t = fresh_snap();
    poke32("h.qcow2", (long)t + 8, 0x10000000);
    expect_snap_open_error("snapshot 0: L1 table too large (268435456 entries)", EFBIG);
    t = fresh_snap();
    poke32("h.qcow2", (long)t + 36, 5000);
    expect_snap_open_error("snapshot 0 has too much extra data (5000 bytes)", EFBIG);
    t = fresh_snap();
    poke32("h.qcow2", 60, 40);
    expect_snap_open_error("snapshot table entry 1 lies beyond the end of the file", EINVAL);
    t = fresh_snap();
    poke64("h.qcow2", 64, t + 4);
    expect_snap_open_error("snapshot table offset is invalid", EINVAL);
    t = fresh_snap();
    poke32("h.qcow2", 60, 70000);
    expect_snap_open_error("too many snapshots (70000)", EFBIG);
}
END_TEST

/* ---- lazy refcounts ----------------------------------------------------- */

START_TEST(test_lazy_clean_close)
{
    ck_assert_int_eq(sh("qemu-img create -q -f qcow2 -o lazy_refcounts=on,cluster_size=4096 "
                        "l.qcow2 16M"), 0);
    struct bdrv_node *bs = open_fmt("l.qcow2", "discard=unmap");
    ck_assert_uint_eq(peek64("l.qcow2", 72) & 1, 0);   /* not before a write */
    uint8_t b[100000];
    memset(b, 0x61, sizeof(b));
    ck_assert_int_eq(bdrv_pwrite(bs, 5000, b, sizeof(b), 0), 0);
    ck_assert_uint_eq(peek64("l.qcow2", 72) & 1, 1);   /* dirty while open */
    ck_assert_int_eq(bdrv_flush(bs), 0);
    ck_assert_uint_eq(peek64("l.qcow2", 72) & 1, 1);
    ck_assert_int_eq(bdrv_pdiscard(bs, 1 << 20, 1 << 20), 0);
    bdrv_unref(bs);
    ck_assert_uint_eq(peek64("l.qcow2", 72) & 1, 0);   /* clean after close */
    ck_assert_int_eq(sh("qemu-img check -q l.qcow2 && qemu-io -f qcow2 "
                        "-c 'read -P 0x61 5000 100000' l.qcow2 > r.out && "
                        "! grep -q failed r.out"), 0);
    /* Reopened read-only while dirty: the refcounts are written first. */
    bs = open_fmt("l.qcow2", "");
    ck_assert_int_eq(bdrv_pwrite(bs, 9 << 20, b, sizeof(b), 0), 0);
    ck_assert_uint_eq(peek64("l.qcow2", 72) & 1, 1);
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_reopen_read_only(bs, true, &err), 0);
    ck_assert_uint_eq(peek64("l.qcow2", 72) & 1, 0);
    ck_assert_int_eq(sh("qemu-img check -q -U l.qcow2"), 0);
    bdrv_unref(bs);
}
END_TEST

/* Writes `A` at [0, 1 MiB), flushes, says so on `fd`, then writes
 * elsewhere until killed. */
static void lazy_writer(const char *name, int fd, unsigned seed)
{
    struct bdrv_node *bs = open_fmt(name, "discard=unmap");
    uint8_t *buf = malloc(200000);
    memset(buf, 'A', 200000);
    for (uint64_t off = 0; off < (1 << 20); off += 131072) {
        if (bdrv_pwrite(bs, off, buf, 131072, 0) < 0) {
            _exit(1);
        }
    }
    if (bdrv_flush(bs) < 0 || write(fd, "f", 1) != 1) {
        _exit(1);
    }
    memset(buf, 0x42, 200000);
    for (int i = 0;; i++) {
        uint64_t off = (1 << 20) + ((uint64_t)rand_r(&seed) * 4099) % ((30 << 20) - 200000);
        uint32_t len = 1 + (uint32_t)rand_r(&seed) % 200000;
        int op = rand_r(&seed) % 8;
        if (op == 0) {
            bdrv_pdiscard(bs, off, len);
        } else if (op == 1) {
            bdrv_pwrite_zeroes(bs, off, len, BDRV_REQ_MAY_UNMAP);
        } else {
            bdrv_pwrite(bs, off, buf, len, 0);
        }
        if (i % 16 == 15) {
            bdrv_flush(bs);
        }
    }
}

START_TEST(test_lazy_crash)
{
    static const char *const kinds[] = {
        "lazy_refcounts=on,cluster_size=65536",
        "lazy_refcounts=on,cluster_size=4096,refcount_bits=4",
        "lazy_refcounts=on,cluster_size=16384,extended_l2=on",
    };
    unsigned seed = (unsigned)time(NULL);
    for (int run = 0; run < 12; run++) {
        ck_assert_int_eq(sh("rm -f k.qcow2 && qemu-img create -q -f qcow2 -o %s k.qcow2 32M",
                            kinds[run % 3]), 0);
        int pfd[2];
        ck_assert_int_eq(pipe(pfd), 0);
        fflush(NULL);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(pfd[0]);
            lazy_writer("k.qcow2", pfd[1], seed + (unsigned)run);
            _exit(0);
        }
        close(pfd[1]);
        char c;
        ck_assert_int_eq(read(pfd[0], &c, 1), 1);     /* the flushed part is in */
        close(pfd[0]);
        struct timespec ts = { 0, (long)(rand_r(&seed) % 100) * 1000000 };
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        ck_assert_msg(peek64("k.qcow2", 72) & 1, "run %d: dirty bit not set", run);
        /* The next read-write open repairs; after it qemu-img finds the
         * image clean, and what was flushed is there. */
        struct bdrv_node *bs = open_fmt("k.qcow2", "");
        bdrv_unref(bs);
        ck_assert_uint_eq(peek64("k.qcow2", 72) & 1, 0);
        ck_assert_msg(sh("qemu-img check -q k.qcow2") == 0, "run %d (%s, seed %u): check",
                      run, kinds[run % 3], seed + (unsigned)run);
        ck_assert_int_eq(sh("qemu-io -f qcow2 -c 'read -P 0x41 0 1M' k.qcow2 > r.out && "
                            "! grep -q failed r.out"), 0);
    }
}
END_TEST

static Suite *qcow2_ext_suite(void)
{
    Suite *s = suite_create("qcow2-ext");
    TCase *tc = tcase_create("extl2");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_extl2_read_qemu);
    tcase_add_test(tc, test_extl2_block_status);
    tcase_add_test(tc, test_extl2_write);
    tcase_add_test(tc, test_extl2_subcluster_alloc);
    tcase_add_test(tc, test_extl2_create_errors);
    tcase_add_test(tc, test_extl2_hostile);
    suite_add_tcase(s, tc);
    tc = tcase_create("data-file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_data_file_read_qemu);
    tcase_add_test(tc, test_data_file_write);
    tcase_add_test(tc, test_data_file_modes);
    tcase_add_test(tc, test_data_file_create_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("snapshots");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_snapshot_cycle);
    tcase_add_test(tc, test_snapshot_qemu_made);
    tcase_add_test(tc, test_snapshot_refused);
    tcase_add_test(tc, test_snapshot_hostile);
    suite_add_tcase(s, tc);
    tc = tcase_create("lazy-refcounts");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_lazy_clean_close);
    tcase_add_test(tc, test_lazy_crash);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test-qcow2-ext", LOG_ERROR);
    if (system("command -v qemu-img >/dev/null && command -v qemu-io >/dev/null") != 0) {
        fprintf(stderr, "missing peer: qemu-img/qemu-io\n");
        return 77;
    }
    return bt_run(qcow2_ext_suite());
}
