/*
 * tests/unit/test-block-bdev.c — the file driver on a block device (a
 * loop device over a temporary file): size from the device, reads and
 * writes, zeroes and discard through the device ioctls, cache=none with
 * the device's sector size, read-only rules, no resizing. Needs root and
 * a free loop device; without them the cases say so and do nothing.
 */
#include "tests/unit/block-test.h"

#define DEV_SIZE (8 << 20)

/* Set up once in the runner's process (unchecked fixture), so the loop
 * device is detached even when a case fails. */
static char *dir, *backing_file;
static char dev[64];

static void attach(void)
{
    dev[0] = 0;
    if (geteuid() != 0) {
        return;
    }
    dir = bt_tmpdir();
    backing_file = bt_image(dir, "loop.img", DEV_SIZE, 4);
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "losetup -f --show '%s' 2>/dev/null", backing_file);
    FILE *p = popen(cmd, "r");
    if (p) {
        if (!fgets(dev, sizeof(dev), p)) {
            dev[0] = 0;
        }
        pclose(p);
    }
    dev[strcspn(dev, "\n")] = 0;
}

static void detach(void)
{
    if (dev[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "losetup -d '%s'", dev);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not detach %s\n", dev);
        }
    }
    if (dir) {
        bt_rmtree(dir);
    }
    free(backing_file);
    free(dir);
}

static bool have_dev(void)
{
    if (!dev[0]) {
        fprintf(stderr, "no loop device (needs root): block device cases not run\n");
        return false;
    }
    return true;
}

static uint8_t pat(size_t i)
{
    return (uint8_t)(i * 7 + 4);
}

START_TEST(test_bdev_io)
{
    if (!have_dev()) {
        return;
    }
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,discard=unmap", dev);
    ck_assert_int_eq(bdrv_getlength(bs), DEV_SIZE);
    uint8_t buf[4096];
    ck_assert_int_eq(bdrv_pread(bs, 4096 + 3, buf, 100), 0);
    ck_assert_uint_eq(buf[0], pat(4096 + 3));
    memset(buf, 0x5e, sizeof(buf));
    ck_assert_int_eq(bdrv_pwrite(bs, 65536, buf, sizeof(buf), BDRV_REQ_FUA), 0);
    ck_assert_int_eq(bdrv_pwrite_zeroes(bs, 1 << 20, 1 << 20, 0), 0);
    ck_assert_int_eq(bdrv_pread(bs, (1 << 20) + 12345, buf, 10), 0);
    ck_assert_uint_eq(buf[0], 0);
    ck_assert_uint_eq(buf[9], 0);
    ck_assert_int_eq(bdrv_pdiscard(bs, 4 << 20, 1 << 20), 0);
    ck_assert_int_eq(bdrv_flush(bs), 0);
    uint64_t pnum, map;
    int r = bdrv_block_status(bs, 0, DEV_SIZE, &pnum, &map, NULL);
    ck_assert(r & BDRV_BLOCK_DATA);
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_truncate(bs, DEV_SIZE * 2, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "Cannot grow device files");
    error_free(err);
    bdrv_unref(bs);
}
END_TEST

START_TEST(test_bdev_direct)
{
    if (!have_dev()) {
        return;
    }
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,cache=none", dev);
    ck_assert_uint_ge(bdrv_request_alignment(bs), 512);
    uint8_t *raw = malloc(5000), *buf = raw + 3;
    memset(buf, 0x21, 1000);
    ck_assert_int_eq(bdrv_pwrite(bs, 777, buf, 1000, 0), 0);
    ck_assert_int_eq(bdrv_pread(bs, 770, buf, 1010), 0);
    ck_assert_uint_eq(buf[6], pat(776));
    ck_assert_uint_eq(buf[7], 0x21);
    ck_assert_uint_eq(buf[1006], 0x21);
    ck_assert_uint_eq(buf[1007], pat(1777));
    free(raw);
    bdrv_unref(bs);
}
END_TEST

START_TEST(test_bdev_read_only)
{
    if (!have_dev()) {
        return;
    }
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,force-read-only=on", dev);
    ck_assert_int_eq(bt_write_fds(dev), 0);
    ck_assert_int_eq(bdrv_pwrite(bs, 0, "x", 1, 0), -EPERM);
    ck_assert_int_eq(bdrv_pwrite_zeroes(bs, 0, 512, 0), -EPERM);
    ck_assert_int_eq(bdrv_pdiscard(bs, 0, 512), -EPERM);
    bdrv_unref(bs);
    bs = bt_open_ok("driver=raw,file.filename=%s", dev);
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_reopen_read_only(bs, true, &err), 0);
    ck_assert_int_eq(bt_write_fds(dev), 0);
    ck_assert_int_eq(bdrv_reopen_read_only(bs, false, &err), 0);
    ck_assert_int_ge(bt_write_fds(dev), 1);
    bdrv_unref(bs);
}
END_TEST

static Suite *bdev_suite(void)
{
    Suite *s = suite_create("block-bdev");
    TCase *tc = tcase_create("bdev");
    tcase_add_unchecked_fixture(tc, attach, detach);
    tcase_add_test(tc, test_bdev_io);
    tcase_add_test(tc, test_bdev_direct);
    tcase_add_test(tc, test_bdev_read_only);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test-block-bdev", LOG_ERROR);
    return bt_run(bdev_suite());
}
