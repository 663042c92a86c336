/*
 * tests/unit/test-block-io.c — I/O through the checking layer: bounds,
 * cache=none alignment with bounce buffers, write-zeroes, discard, block
 * status, raw windows and probing's sector-0 guard, creation, fault
 * injection through the io hooks, and the open errors with their messages.
 */
#include "tests/unit/block-test.h"

#include <sys/mman.h>

#define IMG_SIZE (1 << 20)

static char *dir, *img;

static void setup(void)
{
    dir = bt_tmpdir();
    img = bt_image(dir, "disk.raw", IMG_SIZE, 3);
}

static void teardown(void)
{
    bt_rmtree(dir);
    free(img);
    free(dir);
}

static uint8_t pat(size_t i)
{
    return (uint8_t)(i * 7 + 3);
}

START_TEST(test_read_write_bounds)
{
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s", img);
    ck_assert_int_eq(bdrv_getlength(bs), IMG_SIZE);
    uint8_t buf[8192];
    ck_assert_int_eq(bdrv_pread(bs, 1000, buf, 5000), 0);
    for (size_t i = 0; i < 5000; i++) {
        ck_assert_uint_eq(buf[i], pat(1000 + i));
    }
    /* Past the end, or straddling it: -EINVAL, nothing done. */
    ck_assert_int_eq(bdrv_pread(bs, IMG_SIZE, buf, 1), -EINVAL);
    ck_assert_int_eq(bdrv_pread(bs, IMG_SIZE - 10, buf, 11), -EINVAL);
    ck_assert_int_eq(bdrv_pwrite(bs, IMG_SIZE - 10, buf, 11, 0), -EINVAL);
    ck_assert_int_eq(bdrv_pwrite_zeroes(bs, IMG_SIZE, 512, 0), -EINVAL);
    ck_assert_int_eq(bdrv_pdiscard(bs, IMG_SIZE - 1, 2), -EINVAL);
    ck_assert_int_eq(bdrv_pread(bs, IMG_SIZE, buf, 0), 0);
    /* iovec reads gather correctly. */
    uint8_t a[100], b[300];
    struct iovec iov[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
    ck_assert_int_eq(bdrv_preadv(bs, 7, iov, 2), 0);
    ck_assert_uint_eq(a[0], pat(7));
    ck_assert_uint_eq(b[299], pat(7 + 399));
    memset(buf, 0x11, 4096);
    ck_assert_int_eq(bdrv_pwrite(bs, IMG_SIZE - 4096, buf, 4096, BDRV_REQ_FUA), 0);
    ck_assert_int_eq(bdrv_flush(bs), 0);
    struct bdrv_stats st;
    bdrv_get_stats(bs, &st);
    ck_assert_uint_eq(st.rd_ops, 3);
    ck_assert_uint_eq(st.rd_bytes, 5400);
    ck_assert_uint_eq(st.wr_ops, 1);
    ck_assert_uint_eq(st.wr_bytes, 4096);
    ck_assert_uint_ge(st.flush_ops, 1);
    bdrv_unref(bs);
}
END_TEST

/* cache=none: O_DIRECT needs alignment; the core bounces unaligned
 * requests (buffer, offset and length) and does read-modify-write. */
START_TEST(test_cache_none_bounce)
{
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,cache=none", img);
    ck_assert_uint_ge(bdrv_request_alignment(bs), 512);
    int rd, wr, direct;
    bt_count_fds_flag(img, &rd, &wr, O_DIRECT, &direct);
    ck_assert_int_eq(wr, 1);
    ck_assert_int_eq(direct, 1);    /* the data descriptor; the lock one is not */
    uint8_t *raw = malloc(10000);
    uint8_t *buf = raw + 1;     /* misaligned buffer */
    ck_assert_int_eq(bdrv_pread(bs, 3, buf, 1001), 0);
    for (size_t i = 0; i < 1001; i++) {
        ck_assert_uint_eq(buf[i], pat(3 + i));
    }
    memset(buf, 0xee, 700);
    ck_assert_int_eq(bdrv_pwrite(bs, 4000, buf, 700, 0), 0);
    ck_assert_int_eq(bdrv_pread(bs, 3990, buf, 720), 0);
    for (size_t i = 0; i < 720; i++) {
        uint8_t want = (i >= 10 && i < 710) ? 0xee : pat(3990 + i);
        ck_assert_uint_eq(buf[i], want);
    }
    /* Aligned buffers pass straight through. */
    void *al = NULL;
    ck_assert_int_eq(posix_memalign(&al, 4096, 8192), 0);
    memset(al, 0x42, 8192);
    ck_assert_int_eq(bdrv_pwrite(bs, 8192, al, 8192, 0), 0);
    ck_assert_int_eq(bdrv_pwrite_zeroes(bs, 8192 + 100, 5000, 0), 0);
    ck_assert_int_eq(bdrv_pread(bs, 8192, al, 8192), 0);
    for (size_t i = 0; i < 8192; i++) {
        ck_assert_uint_eq(((uint8_t *)al)[i], (i >= 100 && i < 5100) ? 0 : 0x42);
    }
    free(al);
    free(raw);
    bdrv_unref(bs);
}
END_TEST

START_TEST(test_zeroes_discard_status)
{
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,discard=unmap", img);
    uint64_t pnum = 0, map = 0;
    int depth = 7;
    int r = bdrv_block_status(bs, 0, IMG_SIZE, &pnum, &map, &depth);
    ck_assert_int_ge(r, 0);
    ck_assert(r & BDRV_BLOCK_DATA);
    ck_assert(r & BDRV_BLOCK_ALLOCATED);
    ck_assert_int_eq(depth, 0);
    ck_assert_uint_eq(pnum, IMG_SIZE);

    /* Punch the middle: a hole reads as zeroes and shows as ZERO. */
    ck_assert_int_eq(bdrv_pwrite_zeroes(bs, 256 * 1024, 256 * 1024, BDRV_REQ_MAY_UNMAP), 0);
    r = bdrv_block_status(bs, 256 * 1024, IMG_SIZE, &pnum, &map, &depth);
    ck_assert(r & BDRV_BLOCK_ZERO);
    ck_assert(!(r & BDRV_BLOCK_DATA));
    ck_assert(r & BDRV_BLOCK_OFFSET_VALID);
    ck_assert_uint_eq(map, 256 * 1024);
    ck_assert_uint_eq(pnum, 256 * 1024);
    uint8_t buf[4096];
    ck_assert_int_eq(bdrv_pread(bs, 300 * 1024, buf, sizeof(buf)), 0);
    for (size_t i = 0; i < sizeof(buf); i++) {
        ck_assert_uint_eq(buf[i], 0);
    }
    /* Discard (advisory) of another range; then data resumes. */
    ck_assert_int_eq(bdrv_pdiscard(bs, 0, 64 * 1024), 0);
    r = bdrv_block_status(bs, 0, IMG_SIZE, &pnum, &map, NULL);
    ck_assert(r & BDRV_BLOCK_ZERO);
    r = bdrv_block_status(bs, 512 * 1024, IMG_SIZE, &pnum, &map, NULL);
    ck_assert(r & BDRV_BLOCK_DATA);
    ck_assert_uint_eq(pnum, 512 * 1024);
    /* At the end: nothing. */
    ck_assert_int_eq(bdrv_block_status(bs, IMG_SIZE, 1, &pnum, &map, NULL), 0);
    ck_assert_uint_eq(pnum, 0);
    /* Unaligned zeroes without unmap. */
    ck_assert_int_eq(bdrv_pwrite_zeroes(bs, 700000, 3333, 0), 0);
    ck_assert_int_eq(bdrv_pread(bs, 699999, buf, 3335), 0);
    ck_assert_uint_eq(buf[0], pat(699999));
    ck_assert_uint_eq(buf[1], 0);
    ck_assert_uint_eq(buf[3333], 0);
    ck_assert_uint_eq(buf[3334], pat(699999 + 3334));
    struct bdrv_stats st;
    bdrv_get_stats(bs, &st);
    ck_assert_uint_eq(st.zero_ops, 2);
    ck_assert_uint_eq(st.discard_ops, 1);
    bdrv_unref(bs);
}
END_TEST

/* discard=ignore (the default): discard succeeds and leaves the data. */
START_TEST(test_discard_ignored)
{
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s", img);
    ck_assert_int_eq(bdrv_pdiscard(bs, 0, 65536), 0);
    uint8_t b;
    ck_assert_int_eq(bdrv_pread(bs, 5, &b, 1), 0);
    ck_assert_uint_eq(b, pat(5));
    bdrv_unref(bs);
}
END_TEST

START_TEST(test_detect_zeroes)
{
    struct bdrv_node *bs = bt_open_ok(
        "driver=raw,file.filename=%s,detect-zeroes=unmap,discard=unmap", img);
    uint8_t *zero = calloc(1, 65536);
    ck_assert_int_eq(bdrv_pwrite(bs, 65536, zero, 65536, 0), 0);
    uint64_t pnum, map;
    int r = bdrv_block_status(bs, 65536, 65536, &pnum, &map, NULL);
    ck_assert(r & BDRV_BLOCK_ZERO);
    struct bdrv_stats st;
    bdrv_get_stats(bs, &st);
    ck_assert_uint_eq(st.wr_ops, 1);
    free(zero);
    bdrv_unref(bs);
}
END_TEST

START_TEST(test_raw_window)
{
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,offset=4096,size=8192", img);
    ck_assert_int_eq(bdrv_getlength(bs), 8192);
    uint8_t b[2];
    ck_assert_int_eq(bdrv_pread(bs, 0, b, 2), 0);
    ck_assert_uint_eq(b[0], pat(4096));
    ck_assert_int_eq(bdrv_pread(bs, 8191, b, 2), -EINVAL);
    ck_assert_int_eq(bdrv_pwrite(bs, 8190, "zz", 2, 0), 0);
    ck_assert_int_eq(bdrv_pread(bdrv_file_child(bs), 4096 + 8190, b, 2), 0);
    ck_assert_mem_eq(b, "zz", 2);
    uint64_t pnum, map;
    int r = bdrv_block_status(bs, 100, 1000, &pnum, &map, NULL);
    ck_assert(r & BDRV_BLOCK_OFFSET_VALID);
    ck_assert_uint_eq(map, 4196);
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_truncate(bs, 4096, &err), -ENOTSUP);
    error_free(err);
    bdrv_unref(bs);

    char *msg = bt_open_fail("driver=raw,file.filename=%s,offset=1M,size=1", img, NULL);
    ck_assert_str_eq(msg, "The sum of offset (1048576) and size (1) has to be smaller or "
                     "equal to the  actual size of the containing file (1048576)");
    free(msg);
}
END_TEST

/* A probed raw image must not let a write make it look like qcow2. */
START_TEST(test_probe_guard)
{
    struct bdrv_node *bs = bt_open_ok("%s", img);
    ck_assert_str_eq(bdrv_driver_name(bs), "raw");
    ck_assert_str_eq(bdrv_driver_name(bdrv_file_child(bs)), "file");
    /* Without a qcow2 driver registered nothing probes better than raw;
     * with it, this write must fail. Either way sector 0 stays sane. */
    uint8_t sec[512];
    memset(sec, 0, sizeof(sec));
    memcpy(sec, "QFI\xfb\0\0\0\3", 8);
    int r = bdrv_pwrite(bs, 0, sec, sizeof(sec), 0);
    bool have_qcow2 = false;
    for (const char *const *n = bdrv_driver_names(); *n; n++) {
        have_qcow2 |= !strcmp(*n, "qcow2");
    }
    if (have_qcow2) {
        ck_assert_int_eq(r, -EPERM);
        /* Partial writes are checked merged with what is on disk. */
        ck_assert_int_eq(bdrv_pwrite(bs, 4, "\0\0\0\3", 4, 0), 0);
        r = bdrv_pwrite(bs, 0, "QFI\xfb", 4, 0);
        ck_assert_int_eq(r, -EPERM);
        uint8_t b[4];
        ck_assert_int_eq(bdrv_pread(bs, 0, b, 4), 0);
        ck_assert_uint_eq(b[0], pat(0));
    } else {
        ck_assert_int_eq(r, 0);
    }
    /* Ordinary writes to sector 0 are fine. */
    ck_assert_int_eq(bdrv_pwrite(bs, 0, "hello", 5, 0), 0);
    bdrv_unref(bs);
    /* With the format named, there is no restriction. */
    bs = bt_open_ok("driver=raw,file.filename=%s", img);
    ck_assert_int_eq(bdrv_pwrite(bs, 0, sec, sizeof(sec), 0), 0);
    bdrv_unref(bs);
}
END_TEST

START_TEST(test_create_truncate_info)
{
    char *path = NULL;
    ck_assert_int_ge(asprintf(&path, "%s/new.raw", dir), 0);
    struct bdrv_create_opts co = { .size = 3 * 1024 * 1024 };
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_create("raw", path, &co, &err), 0);
    ck_assert_ptr_null(err);
    struct bdrv_node *bs = bdrv_open_file(path, "raw", false, &err);
    ck_assert_ptr_nonnull(bs);
    ck_assert_int_eq(bdrv_getlength(bs), 3 * 1024 * 1024);
    struct bdrv_info info;
    bdrv_get_info(bs, &info);
    ck_assert_str_eq(info.format, "raw");
    ck_assert_uint_eq(info.virtual_size, 3 * 1024 * 1024);
    ck_assert_int_eq(info.actual_size, 0);
    ck_assert(!info.dirty && !info.read_only);
    ck_assert_int_eq(bdrv_truncate(bs, 1024 * 1024, &err), 0);
    ck_assert_int_eq(bdrv_getlength(bs), 1024 * 1024);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 1024 * 1024);
    bdrv_unref(bs);

    co.prealloc = PREALLOC_FALLOC;
    ck_assert_int_eq(bdrv_create("raw", path, &co, &err), 0);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_ge((long long)st.st_blocks * 512, 3 * 1024 * 1024);

    ck_assert_int_eq(bdrv_create("vmdk", path, &co, &err), -ENOTSUP);
    ck_assert_str_eq(err->msg, "Unknown file format 'vmdk'");
    error_freep(&err);
    char *bad = NULL;
    ck_assert_int_ge(asprintf(&bad, "%s/nodir/x.raw", dir), 0);
    ck_assert_int_eq(bdrv_create("raw", bad, &co, &err), -ENOENT);
    char *want = NULL;
    ck_assert_int_ge(asprintf(&want, "Could not create '%s': No such file or directory", bad), 0);
    ck_assert_str_eq(err->msg, want);
    error_freep(&err);
    free(want);
    free(bad);
    free(path);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Open errors                                                         */
/* ------------------------------------------------------------------ */

START_TEST(test_open_errors)
{
    int errnum = 0;
    char *want = NULL, *msg;
    char *missing = NULL;
    ck_assert_int_ge(asprintf(&missing, "%s/missing.raw", dir), 0);

    msg = bt_open_fail("%s", missing, &errnum);
    ck_assert_int_ge(asprintf(&want, "Could not open '%s': No such file or directory", missing), 0);
    ck_assert_str_eq(msg, want);
    ck_assert_int_eq(errnum, ENOENT);
    free(msg);
    free(want);

    msg = bt_open_fail("driver=raw,file.filename=%s", dir, &errnum);
    ck_assert_int_ge(asprintf(&want, "'file' driver requires '%s' to be a regular file", dir), 0);
    ck_assert_str_eq(msg, want);
    ck_assert_int_eq(errnum, EISDIR);
    free(msg);
    free(want);

    msg = bt_open_fail("driver=vpc,file.filename=%s", img, &errnum);
    ck_assert_str_eq(msg, "Unknown driver 'vpc'");
    ck_assert_int_eq(errnum, ENOTSUP);
    free(msg);

    msg = bt_open_fail("driver=raw,file.driver=gluster,file.filename=%s", img, &errnum);
    ck_assert_str_eq(msg, "Unknown driver 'gluster'");
    free(msg);

    struct error *err = NULL;
    ck_assert_ptr_null(bdrv_open_file(missing, "raw", true, &err));
    ck_assert_int_eq(err->errnum, ENOENT);
    error_free(err);
    free(missing);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Fault injection                                                     */
/* ------------------------------------------------------------------ */

struct fault {
    int read_err, write_err, sync_err, falloc_err;
    bool short_read, short_write;
    int calls;
    int syncs;
};

static ssize_t f_preadv(void *opaque, int fd, const struct iovec *iov, int cnt, off_t off)
{
    struct fault *f = opaque;
    f->calls++;
    if (f->read_err) {
        return -f->read_err;
    }
    if (f->short_read) {
        /* Half now, then end-of-file although the file goes on. */
        if (f->calls > 1) {
            return 0;
        }
        struct iovec one = { iov[0].iov_base, iov[0].iov_len / 2 };
        ssize_t n = preadv(fd, &one, 1, off);
        return n < 0 ? -errno : n;
    }
    ssize_t n = preadv(fd, iov, cnt, off);
    return n < 0 ? -errno : n;
}

static ssize_t f_pwritev(void *opaque, int fd, const struct iovec *iov, int cnt, off_t off)
{
    struct fault *f = opaque;
    f->calls++;
    if (f->write_err) {
        return -f->write_err;
    }
    if (f->short_write) {
        if (f->calls > 1) {
            return 0;   /* no progress */
        }
        struct iovec one = { iov[0].iov_base, iov[0].iov_len / 2 };
        ssize_t n = pwritev(fd, &one, 1, off);
        return n < 0 ? -errno : n;
    }
    ssize_t n = pwritev(fd, iov, cnt, off);
    return n < 0 ? -errno : n;
}

static int f_fdatasync(void *opaque, int fd)
{
    struct fault *f = opaque;
    f->syncs++;
    return f->sync_err ? -f->sync_err : 0;
}

static int f_fallocate(void *opaque, int fd, int mode, off_t off, off_t len)
{
    struct fault *f = opaque;
    return f->falloc_err ? -f->falloc_err : 0;
}

static struct bdrv_node *open_hooked(struct bdrv_io_hooks *hooks, struct fault *f,
                                     const char *cache)
{
    *hooks = (struct bdrv_io_hooks){
        .preadv = f_preadv, .pwritev = f_pwritev, .fdatasync = f_fdatasync,
        .fallocate = f_fallocate, .opaque = f,
    };
    struct bdrv_open_opts o;
    struct error *err = NULL;
    char s[PATH_MAX + 64];
    snprintf(s, sizeof(s), "driver=raw,file.filename=%s,cache=%s", img, cache);
    ck_assert_int_eq(bdrv_open_opts_parse(s, &o, &err), 0);
    o.io_hooks = hooks;
    struct bdrv_node *bs = bdrv_open(&o, &err);
    ck_assert_ptr_nonnull(bs);
    bdrv_open_opts_free(&o);
    return bs;
}

START_TEST(test_fault_injection)
{
    struct fault f = { 0 };
    struct bdrv_io_hooks hooks;
    struct bdrv_node *bs = open_hooked(&hooks, &f, "writeback");
    uint8_t buf[4096];

    f.read_err = EIO;
    ck_assert_int_eq(bdrv_pread(bs, 0, buf, sizeof(buf)), -EIO);
    f.read_err = 0;
    f.short_read = true;
    f.calls = 0;
    ck_assert_int_eq(bdrv_pread(bs, 0, buf, sizeof(buf)), -EIO);
    f.short_read = false;
    ck_assert_int_eq(bdrv_pread(bs, 0, buf, sizeof(buf)), 0);

    f.write_err = ENOSPC;
    ck_assert_int_eq(bdrv_pwrite(bs, 0, buf, sizeof(buf), 0), -ENOSPC);
    f.write_err = EIO;
    ck_assert_int_eq(bdrv_pwrite(bs, 0, buf, sizeof(buf), 0), -EIO);
    f.write_err = 0;
    f.short_write = true;
    f.calls = 0;
    ck_assert_int_eq(bdrv_pwrite(bs, 0, buf, sizeof(buf), 0), -EIO);
    f.short_write = false;

    f.sync_err = EIO;
    ck_assert_int_eq(bdrv_flush(bs), -EIO);
    ck_assert_int_eq(bdrv_pwrite(bs, 0, buf, sizeof(buf), BDRV_REQ_FUA), -EIO);
    f.sync_err = 0;

    /* fallocate failing for real falls back to writing zero buffers; an
     * I/O error there reaches the caller. */
    f.falloc_err = EOPNOTSUPP;
    ck_assert_int_eq(bdrv_pwrite_zeroes(bs, 0, 8192, 0), 0);
    f.falloc_err = EIO;
    ck_assert_int_eq(bdrv_pwrite_zeroes(bs, 0, 8192, 0), -EIO);
    f.falloc_err = 0;

    struct bdrv_stats st;
    bdrv_get_stats(bs, &st);
    ck_assert_uint_ge(st.errors, 7);
    bdrv_unref(bs);
}
END_TEST

/* writethrough flushes every write: a failing sync fails the write. */
START_TEST(test_writethrough_sync_error)
{
    struct fault f = { .sync_err = EIO };
    struct bdrv_io_hooks hooks;
    struct bdrv_node *bs = open_hooked(&hooks, &f, "writethrough");
    ck_assert_int_eq(bdrv_pwrite(bs, 0, "abc", 3, 0), -EIO);
    bdrv_unref(bs);
    /* unsafe ignores flushes altogether. */
    bs = open_hooked(&hooks, &f, "unsafe");
    ck_assert_int_eq(bdrv_pwrite(bs, 0, "abc", 3, 0), 0);
    ck_assert_int_eq(bdrv_flush(bs), 0);
    bdrv_unref(bs);
}
END_TEST

/* Flushes per cache mode: writeback only on request, writethrough after
 * every write, unsafe never; FUA always durable. */
START_TEST(test_cache_mode_flushes)
{
    static const struct { const char *cache; int per_write, per_flush, per_fua; } modes[] = {
        { "writeback", 0, 1, 1 },
        { "writethrough", 1, 1, 1 },
        { "unsafe", 0, 0, 0 },
    };
    for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
        struct fault f = { 0 };
        struct bdrv_io_hooks hooks;
        struct bdrv_node *bs = open_hooked(&hooks, &f, modes[i].cache);
        ck_assert_int_eq(bdrv_pwrite(bs, 0, "a", 1, 0), 0);
        ck_assert_int_eq(f.syncs, modes[i].per_write);
        f.syncs = 0;
        ck_assert_int_eq(bdrv_flush(bs), 0);
        ck_assert_int_eq(f.syncs, modes[i].per_flush);
        f.syncs = 0;
        ck_assert_int_eq(bdrv_pwrite(bs, 0, "a", 1, BDRV_REQ_FUA), 0);
        ck_assert_int_ge(f.syncs, modes[i].per_fua);
        bdrv_unref(bs);
    }
}
END_TEST

/* Going read-only flushes first; a failing flush leaves the node as it
 * was, still writable. */
START_TEST(test_reopen_flush_fails)
{
    struct fault f = { 0 };
    struct bdrv_io_hooks hooks;
    struct bdrv_node *bs = open_hooked(&hooks, &f, "writeback");
    ck_assert_int_eq(bdrv_pwrite(bs, 0, "a", 1, 0), 0);
    f.sync_err = EIO;
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_reopen_read_only(bs, true, &err), -EIO);
    char *want = NULL;
    ck_assert_int_ge(asprintf(&want, "Could not flush '%s' before reopening read-only: "
                              "Input/output error", img), 0);
    ck_assert_str_eq(err->msg, want);
    free(want);
    error_free(err);
    ck_assert(!bdrv_is_read_only(bs));
    ck_assert_int_ge(bt_write_fds(img), 1);
    f.sync_err = 0;
    err = NULL;
    ck_assert_int_eq(bdrv_reopen_read_only(bs, true, &err), 0);
    ck_assert_int_eq(bt_write_fds(img), 0);
    bdrv_unref(bs);
}
END_TEST

static Suite *io_suite(void)
{
    Suite *s = suite_create("block-io");
    TCase *tc = tcase_create("io");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_read_write_bounds);
    tcase_add_test(tc, test_cache_none_bounce);
    tcase_add_test(tc, test_zeroes_discard_status);
    tcase_add_test(tc, test_discard_ignored);
    tcase_add_test(tc, test_detect_zeroes);
    tcase_add_test(tc, test_raw_window);
    tcase_add_test(tc, test_probe_guard);
    tcase_add_test(tc, test_create_truncate_info);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_fault_injection);
    tcase_add_test(tc, test_writethrough_sync_error);
    tcase_add_test(tc, test_cache_mode_flushes);
    tcase_add_test(tc, test_reopen_flush_fails);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test-block-io", LOG_ERROR);
    return bt_run(io_suite());
}
