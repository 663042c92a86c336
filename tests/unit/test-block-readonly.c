/*
 * tests/unit/test-block-readonly.c — the read-only contract of DESIGN.md,
 * row by row, and its rules: which descriptors exist, what writes return,
 * auto-read-only for an unprivileged user, inheritance, reopen.
 */
#include "tests/unit/block-test.h"

#include <sched.h>
#include <sys/mount.h>

#define IMG_SIZE (1 << 20)

static char *dir, *img;

static void setup(void)
{
    dir = bt_tmpdir();
    img = bt_image(dir, "disk.raw", IMG_SIZE, 1);
}

static void teardown(void)
{
    bt_rmtree(dir);
    free(img);
    free(dir);
}

/* Row rw: O_RDWR, writes succeed. */
START_TEST(test_rw_row)
{
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s", img);
    ck_assert(!bdrv_is_read_only(bs));
    ck_assert(!bdrv_is_read_only(bdrv_file_child(bs)));
    ck_assert_int_ge(bt_write_fds(img), 1);
    uint8_t buf[512], back[512];
    memset(buf, 0xab, sizeof(buf));
    ck_assert_int_eq(bdrv_pwrite(bs, 4096, buf, sizeof(buf), 0), 0);
    ck_assert_int_eq(bdrv_pread(bs, 4096, back, sizeof(back)), 0);
    ck_assert_mem_eq(buf, back, sizeof(buf));
    bdrv_unref(bs);
    ck_assert_int_eq(bt_write_fds(img), 0);
}
END_TEST

/* Row ro-forced on a writable file: no write descriptor, every write
 * -EPERM, truncate -EACCES, image bytes and mtime unchanged. */
START_TEST(test_forced_ro_row)
{
    struct bt_snapshot snap;
    bt_snap(img, &snap);
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,force-read-only=on", img);
    ck_assert(bdrv_is_read_only(bs));
    ck_assert(bdrv_is_force_read_only(bs));
    ck_assert(bdrv_is_read_only(bdrv_file_child(bs)));
    ck_assert(bdrv_is_force_read_only(bdrv_file_child(bs)));
    ck_assert_int_eq(bt_write_fds(img), 0);
    int rd, wr;
    bt_count_fds(img, &rd, &wr);
    ck_assert_int_ge(rd, 1);

    uint8_t buf[4096] = { 0x55 };
    ck_assert_int_eq(bdrv_pwrite(bs, 0, buf, sizeof(buf), 0), -EPERM);
    ck_assert_int_eq(bdrv_pwrite(bs, 0, buf, sizeof(buf), BDRV_REQ_FUA), -EPERM);
    ck_assert_int_eq(bdrv_pwrite_zeroes(bs, 0, 4096, 0), -EPERM);
    ck_assert_int_eq(bdrv_pdiscard(bs, 0, 4096), -EPERM);
    /* The protocol node refuses too: no layer below can be written. */
    ck_assert_int_eq(bdrv_pwrite(bdrv_file_child(bs), 0, buf, 512, 0), -EPERM);
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_truncate(bs, 4096, &err), -EACCES);
    ck_assert_str_eq(err->msg, "Image is read-only");
    error_free(err);
    ck_assert_int_eq(bdrv_flush(bs), 0);
    ck_assert_int_eq(bdrv_pread(bs, 0, buf, sizeof(buf)), 0);

    struct bdrv_stats st;
    bdrv_get_stats(bs, &st);
    ck_assert_uint_eq(st.rejected_writes, 5);
    ck_assert_uint_eq(st.wr_ops, 0);
    ck_assert_int_eq(bt_write_fds(img), 0);
    bdrv_unref(bs);
    ck_assert(bt_unchanged(img, &snap));
    free(snap.data);
}
END_TEST

/* Row snapshot: the image opens like a backing file (O_RDONLY), writes go
 * to a temporary overlay and succeed, the image stays byte for byte and
 * mtime unchanged. */
START_TEST(test_snapshot_row)
{
    struct bt_snapshot snap;
    bt_snap(img, &snap);
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,snapshot=on", img);
    ck_assert(!bdrv_is_read_only(bs));
    ck_assert_int_eq(bt_write_fds(img), 0);
    uint8_t buf[4096], back[4096];
    memset(buf, 0xcd, sizeof(buf));
    ck_assert_int_eq(bdrv_pwrite(bs, 8192, buf, sizeof(buf), 0), 0);
    ck_assert_int_eq(bdrv_pread(bs, 8192, back, sizeof(back)), 0);
    ck_assert_mem_eq(buf, back, sizeof(buf));
    ck_assert_int_eq(bdrv_pread(bs, 0, back, 16), 0);
    ck_assert_uint_eq(back[1], 8);      /* the image's own bytes below */
    ck_assert_int_eq(bdrv_flush(bs), 0);
    ck_assert_int_eq(bt_write_fds(img), 0);
    bdrv_unref(bs);
    ck_assert(bt_unchanged(img, &snap));
    free(snap.data);

    /* The drive spec's snapshot mode gives the same. */
    struct disk_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.file = img;
    spec.format = "raw";
    spec.access = DISK_ACCESS_SNAPSHOT;
    struct bdrv_open_opts o;
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_open_opts_from_spec(&spec, &o, &err), 0);
    bs = bdrv_open(&o, &err);
    ck_assert_msg(bs != NULL, "%s", err ? err->msg : "?");
    ck_assert_int_eq(bdrv_pwrite(bs, 0, buf, 512, 0), 0);
    ck_assert_int_eq(bt_write_fds(img), 0);
    bdrv_unref(bs);
    bdrv_open_opts_free(&o);
    bt_snap(img, &snap);
    ck_assert_uint_eq(snap.data[1], 8);
    free(snap.data);
}
END_TEST

/* read-only=on without force: also O_RDONLY only. */
START_TEST(test_read_only_plain)
{
    struct bdrv_node *bs = bt_open_ok("%s,read-only=on,driver=raw", img);
    ck_assert(bdrv_is_read_only(bs));
    ck_assert(!bdrv_is_force_read_only(bs));
    ck_assert_int_eq(bt_write_fds(img), 0);
    ck_assert_int_eq(bdrv_pwrite(bs, 0, "x", 1, 0), -EPERM);
    bdrv_unref(bs);
}
END_TEST

/* Row auto on a writable file: read-write, not degraded. */
START_TEST(test_auto_writable)
{
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,auto-read-only=on", img);
    ck_assert(!bdrv_is_read_only(bs));
    ck_assert(!bdrv_is_auto_degraded(bs));
    ck_assert_int_ge(bt_write_fds(img), 1);
    bdrv_unref(bs);
}
END_TEST

/* EROFS: in a child with its own mount namespace, the image directory is
 * bind-mounted read-only over itself. auto-read-only degrades, a plain
 * read-write open fails naming the file. Without the privilege to make
 * a mount namespace the case says so and does nothing. */
static int erofs_child(void *arg)
{
    const char *path = arg;
    if (unshare(CLONE_NEWNS) < 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount(dir, dir, NULL, MS_BIND, NULL) < 0 ||
        mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0) {
        fprintf(stderr, "no private read-only mount (%s): EROFS case not run\n",
                strerror(errno));
        return 0;
    }
    struct error *err = NULL;
    char s[PATH_MAX + 64], want[PATH_MAX + 64];
    snprintf(s, sizeof(s), "driver=raw,file.filename=%s,auto-read-only=on", path);
    struct bdrv_node *bs = bt_open(s, &err);
    BT_CHECK(bs, "open: %s", err ? err->msg : "?");
    BT_CHECK(bdrv_is_read_only(bs) && bdrv_is_auto_degraded(bs), "not degraded");
    BT_CHECK(bt_write_fds(path) == 0, "write descriptor exists");
    bdrv_unref(bs);
    snprintf(s, sizeof(s), "driver=raw,file.filename=%s", path);
    bs = bt_open(s, &err);
    BT_CHECK(!bs, "read-write open on a read-only filesystem succeeded");
    snprintf(want, sizeof(want), "Could not open '%s': Read-only file system", path);
    BT_CHECK(!strcmp(err->msg, want), "message '%s'", err->msg);
    BT_CHECK(err->errnum == EROFS, "errnum %d", err->errnum);
    error_free(err);
    return 0;
}

START_TEST(test_erofs_auto)
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        _exit(erofs_child(img));
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
END_TEST

/* The unprivileged cases run in a child as uid 65534 on a 0444 file. */
static int nobody_auto(void *arg)
{
    const char *path = arg;
    struct error *err = NULL;
    char s[PATH_MAX + 64];
    snprintf(s, sizeof(s), "driver=raw,file.filename=%s,auto-read-only=on", path);
    struct bdrv_node *bs = bt_open(s, &err);
    BT_CHECK(bs, "open: %s", err ? err->msg : "?");
    BT_CHECK(bdrv_is_read_only(bs), "not read-only");
    BT_CHECK(bdrv_is_auto_degraded(bs), "not reported degraded");
    BT_CHECK(bdrv_is_auto_degraded(bdrv_file_child(bs)), "file not degraded");
    BT_CHECK(bt_write_fds(path) == 0, "write descriptor exists");
    BT_CHECK(bdrv_pwrite(bs, 0, "x", 1, 0) == -EPERM, "write not refused");
    uint8_t b;
    BT_CHECK(bdrv_pread(bs, 1, &b, 1) == 0 && b == 8, "read");
    /* Reopening read-write cannot work either; the node stays as it was. */
    int ret = bdrv_reopen_read_only(bs, false, &err);
    BT_CHECK(ret == -EACCES, "reopen rw gave %d", ret);
    BT_CHECK(err && strstr(err->msg, "Permission denied"), "msg %s", err ? err->msg : "");
    error_free(err);
    BT_CHECK(bdrv_is_read_only(bs) && bt_write_fds(path) == 0, "node changed");
    BT_CHECK(bdrv_pread(bs, 1, &b, 1) == 0 && b == 8, "read after failed reopen");
    bdrv_unref(bs);
    return 0;
}

static int nobody_rw(void *arg)
{
    const char *path = arg;
    struct error *err = NULL;
    char s[PATH_MAX + 64], want[PATH_MAX + 64];
    snprintf(s, sizeof(s), "driver=raw,file.filename=%s", path);
    struct bdrv_node *bs = bt_open(s, &err);
    BT_CHECK(!bs, "read-write open of a 0444 file succeeded");
    snprintf(want, sizeof(want), "Could not open '%s': Permission denied", path);
    BT_CHECK(!strcmp(err->msg, want), "message '%s'", err->msg);
    BT_CHECK(err->errnum == EACCES, "errnum %d", err->errnum);
    error_free(err);
    return 0;
}

static int nobody_ro(void *arg)
{
    const char *path = arg;
    struct error *err = NULL;
    char s[PATH_MAX + 64];
    snprintf(s, sizeof(s), "driver=raw,file.filename=%s,read-only=on", path);
    struct bdrv_node *bs = bt_open(s, &err);
    BT_CHECK(bs, "open: %s", err ? err->msg : "?");
    BT_CHECK(!bdrv_is_auto_degraded(bs), "degraded without auto");
    bdrv_unref(bs);
    return 0;
}

START_TEST(test_nobody_0444)
{
    ck_assert_int_eq(chmod(img, 0444), 0);
    struct bt_snapshot snap;
    bt_snap(img, &snap);
    ck_assert_int_eq(bt_as_nobody(nobody_auto, img), 0);
    ck_assert_int_eq(bt_as_nobody(nobody_rw, img), 0);
    ck_assert_int_eq(bt_as_nobody(nobody_ro, img), 0);
    ck_assert(bt_unchanged(img, &snap));
    free(snap.data);
}
END_TEST

/* Reopen both ways: going read-only drops every write descriptor. */
START_TEST(test_reopen_both_ways)
{
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s", img);
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_pwrite(bs, 0, "abc", 3, 0), 0);
    ck_assert_int_eq(bdrv_reopen_read_only(bs, true, &err), 0);
    ck_assert_ptr_null(err);
    ck_assert(bdrv_is_read_only(bs));
    ck_assert(bdrv_is_read_only(bdrv_file_child(bs)));
    ck_assert_int_eq(bt_write_fds(img), 0);
    ck_assert_int_eq(bdrv_pwrite(bs, 0, "x", 1, 0), -EPERM);
    char b[3];
    ck_assert_int_eq(bdrv_pread(bs, 0, b, 3), 0);
    ck_assert_mem_eq(b, "abc", 3);

    ck_assert_int_eq(bdrv_reopen_read_only(bs, false, &err), 0);
    ck_assert(!bdrv_is_read_only(bs));
    ck_assert_int_ge(bt_write_fds(img), 1);
    ck_assert_int_eq(bdrv_pwrite(bs, 0, "xyz", 3, 0), 0);
    /* Same mode again is a no-op. */
    ck_assert_int_eq(bdrv_reopen_read_only(bs, false, &err), 0);
    bdrv_unref(bs);
}
END_TEST

/* A forced-read-only node refuses read-write with -EACCES, unchanged. */
START_TEST(test_reopen_forced_refused)
{
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,force-read-only=on", img);
    struct error *err = NULL;
    char want[PATH_MAX + 80];
    ck_assert_int_eq(bdrv_reopen_read_only(bs, false, &err), -EACCES);
    snprintf(want, sizeof(want),
             "Could not reopen '%s' read-write: the image is forced read-only", img);
    ck_assert_str_eq(err->msg, want);
    error_free(err);
    ck_assert(bdrv_is_read_only(bs) && bdrv_is_force_read_only(bs));
    ck_assert(bdrv_is_read_only(bdrv_file_child(bs)));
    ck_assert_int_eq(bt_write_fds(img), 0);
    ck_assert_int_eq(bdrv_pwrite(bs, 0, "x", 1, 0), -EPERM);
    bdrv_unref(bs);
}
END_TEST

/* Children inherit read-only and auto-read-only unless set on them. */
START_TEST(test_inheritance)
{
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,read-only=on", img);
    ck_assert(bdrv_is_read_only(bdrv_file_child(bs)));
    bdrv_unref(bs);

    /* Explicit on the child wins: a read-write file under a read-only
     * format (the guest still cannot write through the format node). */
    bs = bt_open_ok("driver=raw,file.filename=%s,read-only=on,file.read-only=off", img);
    ck_assert(bdrv_is_read_only(bs));
    ck_assert(!bdrv_is_read_only(bdrv_file_child(bs)));
    ck_assert_int_eq(bdrv_pwrite(bs, 0, "x", 1, 0), -EPERM);
    bdrv_unref(bs);

    /* A read-only child under a read-write parent cannot work. */
    int errnum = 0;
    char *msg = bt_open_fail("driver=raw,file.filename=%s,file.read-only=on", img, &errnum);
    ck_assert_ptr_nonnull(strstr(msg, "Block node is read-only"));
    free(msg);

    /* ... unless the parent may degrade. */
    bs = bt_open_ok("driver=raw,file.filename=%s,file.read-only=on,auto-read-only=on", img);
    ck_assert(bdrv_is_read_only(bs));
    ck_assert(bdrv_is_auto_degraded(bs));
    bdrv_unref(bs);

    /* force-read-only travels down even against the child's own option. */
    bs = bt_open_ok("driver=raw,file.filename=%s,force-read-only=on,file.read-only=off", img);
    ck_assert(bdrv_is_force_read_only(bdrv_file_child(bs)));
    ck_assert(bdrv_is_read_only(bdrv_file_child(bs)));
    ck_assert_int_eq(bt_write_fds(img), 0);
    bdrv_unref(bs);
}
END_TEST

/* force-share only with read-only; conflicting read-only options. */
START_TEST(test_force_share_rules)
{
    char *msg = bt_open_fail("driver=raw,file.filename=%s,force-share=on", img, NULL);
    ck_assert_str_eq(msg, "force-share=on can only be used with read-only images");
    free(msg);
    msg = bt_open_fail("driver=raw,file.filename=%s,file.force-share=on", img, NULL);
    ck_assert_str_eq(msg, "force-share=on can only be used with read-only images");
    free(msg);
    msg = bt_open_fail("driver=raw,file.filename=%s,force-read-only=on,read-only=off", img, NULL);
    ck_assert_str_eq(msg, "force-read-only=on conflicts with read-only=off");
    free(msg);
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,force-share=on,read-only=on", img);
    bdrv_unref(bs);
    bs = bt_open_ok("driver=raw,file.filename=%s,force-share=on,force-read-only=on", img);
    bdrv_unref(bs);
}
END_TEST

/* The drive spec's access modes map onto the contract's rows. */
START_TEST(test_spec_access_modes)
{
    struct disk_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.file = img;
    spec.format = "raw";
    struct bdrv_open_opts o;
    struct error *err = NULL;

    spec.access = DISK_ACCESS_RO_FORCED;
    ck_assert_int_eq(bdrv_open_opts_from_spec(&spec, &o, &err), 0);
    struct bdrv_node *bs = bdrv_open(&o, &err);
    ck_assert_ptr_nonnull(bs);
    ck_assert(bdrv_is_force_read_only(bs));
    ck_assert_int_eq(bt_write_fds(img), 0);
    bdrv_unref(bs);
    bdrv_open_opts_free(&o);

    spec.access = DISK_ACCESS_AUTO;
    ck_assert_int_eq(bdrv_open_opts_from_spec(&spec, &o, &err), 0);
    ck_assert(o.auto_read_only.set && o.auto_read_only.value);
    bs = bdrv_open(&o, &err);
    ck_assert(!bdrv_is_read_only(bs));
    bdrv_unref(bs);
    bdrv_open_opts_free(&o);

    spec.access = DISK_ACCESS_RW;
    ck_assert_int_eq(bdrv_open_opts_from_spec(&spec, &o, &err), 0);
    ck_assert(o.read_only.set && !o.read_only.value && !o.auto_read_only.value);
    bdrv_open_opts_free(&o);

    spec.access = (enum disk_access)42;
    ck_assert_int_eq(bdrv_open_opts_from_spec(&spec, &o, &err), -EINVAL);
    ck_assert_ptr_nonnull(err);
    error_free(err);
    err = NULL;

    spec.access = DISK_ACCESS_RW;
    spec.format = "vhdx";
    ck_assert_int_eq(bdrv_open_opts_from_spec(&spec, &o, &err), -ENOTSUP);
    ck_assert_str_eq(err->msg, "Unknown driver 'vhdx'");
    error_free(err);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Backing files (qcow2 overlays made by qemu-img)                     */
/* ------------------------------------------------------------------ */

static char *make_overlay(void)
{
    char *ov = NULL, *cmd = NULL;
    ck_assert_int_ge(asprintf(&ov, "%s/top.qcow2", dir), 0);
    ck_assert_int_ge(asprintf(&cmd, "qemu-img create -q -f qcow2 -F raw -b '%s' '%s'", img, ov), 0);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
    return ov;
}

/* A backing file opens read-only (auto-read-only off) under a writable
 * overlay: no write descriptor to it, and it stays unchanged. */
START_TEST(test_backing_read_only)
{
    char *ov = make_overlay();
    struct bt_snapshot snap;
    bt_snap(img, &snap);
    struct bdrv_node *bs = bt_open_ok("driver=qcow2,file.filename=%s", ov);
    ck_assert(!bdrv_is_read_only(bs));
    struct bdrv_node *base = bdrv_backing_child(bs);
    ck_assert_ptr_nonnull(base);
    ck_assert(bdrv_is_read_only(base));
    ck_assert(!bdrv_is_auto_degraded(base));
    ck_assert_int_eq(bt_write_fds(img), 0);
    ck_assert_int_ge(bt_write_fds(ov), 1);
    uint8_t buf[4096];
    memset(buf, 0x99, sizeof(buf));
    ck_assert_int_eq(bdrv_pwrite(bs, 0, buf, sizeof(buf), 0), 0);
    ck_assert_int_eq(bdrv_pwrite(base, 0, buf, sizeof(buf), 0), -EPERM);
    uint64_t pnum, map;
    int depth = -2;
    ck_assert_int_ge(bdrv_block_status(bs, 65536, 65536, &pnum, &map, &depth), 0);
    ck_assert_int_eq(depth, 1);     /* from the backing file */
    ck_assert_int_ge(bdrv_block_status(bs, 0, 4096, &pnum, &map, &depth), 0);
    ck_assert_int_eq(depth, 0);
    bdrv_unref(bs);
    ck_assert(bt_unchanged(img, &snap));
    free(snap.data);
    free(ov);
}
END_TEST

/* Forced read-only reaches the backing file too. */
START_TEST(test_backing_forced)
{
    char *ov = make_overlay();
    struct bdrv_node *bs = bt_open_ok("driver=qcow2,file.filename=%s,force-read-only=on", ov);
    ck_assert(bdrv_is_force_read_only(bs));
    ck_assert(bdrv_is_force_read_only(bdrv_file_child(bs)));
    ck_assert(bdrv_is_force_read_only(bdrv_backing_child(bs)));
    ck_assert_int_eq(bt_write_fds(img), 0);
    ck_assert_int_eq(bt_write_fds(ov), 0);
    ck_assert_int_eq(bdrv_pwrite(bs, 0, "x", 1, 0), -EPERM);
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_reopen_read_only(bdrv_backing_child(bs), false, &err), -EACCES);
    error_free(err);
    bdrv_unref(bs);
    free(ov);
}
END_TEST

/* An unprivileged user with a writable overlay over a 0444 base: the base
 * is opened read-only without trying O_RDWR, so the open works. */
static int nobody_overlay(void *arg)
{
    const char *ov = arg;
    struct error *err = NULL;
    char s[PATH_MAX + 64];
    snprintf(s, sizeof(s), "driver=qcow2,file.filename=%s", ov);
    struct bdrv_node *bs = bt_open(s, &err);
    BT_CHECK(bs, "open: %s", err ? err->msg : "?");
    BT_CHECK(!bdrv_is_read_only(bs), "overlay read-only");
    BT_CHECK(bdrv_is_read_only(bdrv_backing_child(bs)), "base writable");
    BT_CHECK(bdrv_pwrite(bs, 512, "abc", 3, 0) == 0, "overlay write");
    BT_CHECK(bt_write_fds(img) == 0, "write descriptor to the base");
    bdrv_unref(bs);
    return 0;
}

START_TEST(test_backing_nobody)
{
    char *ov = make_overlay();
    ck_assert_int_eq(chmod(img, 0444), 0);
    if (geteuid() == 0) {
        ck_assert_int_eq(chown(ov, NOBODY, NOBODY), 0);
    }
    struct bt_snapshot snap;
    bt_snap(img, &snap);
    ck_assert_int_eq(bt_as_nobody(nobody_overlay, ov), 0);
    ck_assert(bt_unchanged(img, &snap));
    free(snap.data);
    free(ov);
}
END_TEST

static Suite *readonly_suite(void)
{
    Suite *s = suite_create("block-readonly");
    TCase *tc = tcase_create("contract");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_rw_row);
    tcase_add_test(tc, test_forced_ro_row);
    tcase_add_test(tc, test_read_only_plain);
    tcase_add_test(tc, test_auto_writable);
    tcase_add_test(tc, test_nobody_0444);
    tcase_add_test(tc, test_snapshot_row);
    tcase_add_test(tc, test_erofs_auto);
    tcase_add_test(tc, test_spec_access_modes);
    suite_add_tcase(s, tc);

    tc = tcase_create("rules");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_reopen_both_ways);
    tcase_add_test(tc, test_reopen_forced_refused);
    tcase_add_test(tc, test_inheritance);
    tcase_add_test(tc, test_force_share_rules);
    suite_add_tcase(s, tc);

    tc = tcase_create("backing");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_backing_read_only);
    tcase_add_test(tc, test_backing_forced);
    tcase_add_test(tc, test_backing_nobody);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test-block-readonly", LOG_ERROR);
    return bt_run(readonly_suite());
}
