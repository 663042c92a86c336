/*
 * tests/unit/test-block-nbd.c — the nbd protocol driver (block/nbd.c)
 * against real servers: nbdkit read-only and read-write, qemu-nbd, and
 * diskdm-nbd exporting a qcow2 file that the block layer probes over NBD.
 * A read-only export degrades an auto-read-only node and is refused
 * otherwise ("NBD export is read-only", EACCES); block status passes
 * through; a server that goes away turns requests into EIO, not hangs.
 */
#include "tests/unit/block-test.h"

#include <signal.h>

#define IMG_SIZE (4 << 20)

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

/* Run a shell command that daemonizes a server writing dir/NAME.pid. */
static void server_start(const char *name, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    ck_assert_msg(system(cmd) == 0, "could not start %s: %s", name, cmd);
}

static void server_stop(const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s.pid", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) {
        return;
    }
    int pid = 0;
    ck_assert_int_eq(fscanf(f, "%d", &pid), 1);
    fclose(f);
    kill(pid, SIGTERM);
    for (int i = 0; i < 100 && kill(pid, 0) == 0; i++) {
        usleep(50000);
    }
    unlink(path);
}

static void check_pattern(struct bdrv_node *bs, uint64_t off, size_t len, int seed)
{
    uint8_t *buf = malloc(len);
    ck_assert_int_eq(bdrv_pread(bs, off, buf, len), 0);
    for (size_t i = 0; i < len; i++) {
        ck_assert_uint_eq(buf[i], (uint8_t)((off + i) * 7 + seed));
    }
    free(buf);
}

START_TEST(test_nbdkit_read_only)
{
    server_start("k", "nbdkit -r -U %s/k.sock -P %s/k.pid file %s", dir, dir, img);
    struct bt_snapshot snap;
    bt_snap(img, &snap);

    /* auto-read-only: the node degrades to read-only */
    struct bdrv_node *bs = bt_open_ok(
        "driver=nbd,filename=nbd+unix:///?socket=%s/k.sock,auto-read-only=on", dir);
    ck_assert(bdrv_is_read_only(bs));
    ck_assert(bdrv_is_auto_degraded(bs));
    ck_assert_int_eq(bdrv_getlength(bs), IMG_SIZE);
    check_pattern(bs, 12345, 100000, 3);
    uint8_t b[512] = { 0 };
    ck_assert_int_eq(bdrv_pwrite(bs, 0, b, sizeof(b), 0), -EPERM);
    bdrv_unref(bs);

    /* without it: refused */
    int errnum = 0;
    char *msg = bt_open_fail("driver=nbd,filename=nbd+unix:///?socket=%s/k.sock", dir,
                             &errnum);
    ck_assert_str_eq(msg, "NBD export is read-only");
    ck_assert_int_eq(errnum, EACCES);
    free(msg);

    /* read-only asked for: fine, and a raw format probed on top */
    char uri[PATH_MAX + 64];
    snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s/k.sock", dir);
    bs = bdrv_open_file(uri, NULL, true, NULL);
    ck_assert_ptr_nonnull(bs);
    ck_assert_str_eq(bdrv_driver_name(bs), "raw");
    ck_assert_str_eq(bdrv_driver_name(bdrv_file_child(bs)), "nbd");
    check_pattern(bs, IMG_SIZE - 4096, 4096, 3);
    bdrv_unref(bs);
    server_stop("k");
    ck_assert(bt_unchanged(img, &snap));
    free(snap.data);
}
END_TEST

START_TEST(test_nbdkit_read_write)
{
    server_start("k", "nbdkit -U %s/k.sock -P %s/k.pid file %s", dir, dir, img);
    struct bdrv_node *bs = bt_open_ok(
        "driver=nbd,filename=nbd+unix:///?socket=%s/k.sock", dir);
    ck_assert(!bdrv_is_read_only(bs));
    uint8_t w[65536];
    memset(w, 0x5a, sizeof(w));
    ck_assert_int_eq(bdrv_pwrite(bs, 1 << 20, w, sizeof(w), BDRV_REQ_FUA), 0);
    ck_assert_int_eq(bdrv_pwrite_zeroes(bs, 2 << 20, 65536, 0), 0);
    ck_assert_int_eq(bdrv_flush(bs), 0);
    uint8_t r[65536];
    ck_assert_int_eq(bdrv_pread(bs, 1 << 20, r, sizeof(r)), 0);
    ck_assert(memcmp(r, w, sizeof(r)) == 0);
    ck_assert_int_eq(bdrv_pread(bs, 2 << 20, r, sizeof(r)), 0);
    for (size_t i = 0; i < sizeof(r); i++) {
        ck_assert_uint_eq(r[i], 0);
    }
    ck_assert_int_eq(bdrv_pread(bs, IMG_SIZE - 10, r, 20), -EINVAL);
    bdrv_unref(bs);
    server_stop("k");
    /* the writes reached the file */
    int fd = open(img, O_RDONLY);
    ck_assert_int_eq(full_pread(fd, r, 4, 1 << 20), 4);
    close(fd);
    ck_assert_uint_eq(r[0], 0x5a);
}
END_TEST

START_TEST(test_qemu_nbd_and_block_status)
{
    /* a sparse image: data only at 1M */
    char *sparse = NULL;
    ck_assert_int_ge(asprintf(&sparse, "%s/sparse.raw", dir), 0);
    int fd = open(sparse, O_RDWR | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_eq(ftruncate(fd, IMG_SIZE), 0);
    uint8_t w[65536];
    memset(w, 1, sizeof(w));
    ck_assert_int_eq(full_pwrite(fd, w, sizeof(w), 1 << 20), (ssize_t)sizeof(w));
    close(fd);
    server_start("q", "qemu-nbd -r -t -f raw -k %s/q.sock --fork --pid-file=%s/q.pid %s",
                 dir, dir, sparse);
    struct bdrv_node *bs = bt_open_ok(
        "driver=nbd,filename=nbd+unix:///?socket=%s/q.sock,auto-read-only=on", dir);
    ck_assert(bdrv_is_read_only(bs));
    uint64_t pnum = 0, map = 0;
    int depth = 0;
    int ret = bdrv_block_status(bs, 0, IMG_SIZE, &pnum, &map, &depth);
    ck_assert_int_ge(ret, 0);
    ck_assert(ret & BDRV_BLOCK_ZERO);
    ck_assert(!(ret & BDRV_BLOCK_DATA));
    ck_assert_uint_eq(pnum, 1 << 20);
    ret = bdrv_block_status(bs, 1 << 20, IMG_SIZE - (1 << 20), &pnum, &map, &depth);
    ck_assert(ret & BDRV_BLOCK_DATA);
    ck_assert_uint_eq(pnum, 65536);

    /* the server goes away: an error, not a hang */
    server_stop("q");
    uint8_t r[512];
    ck_assert_int_eq(bdrv_pread(bs, 0, r, sizeof(r)), -EIO);
    bdrv_unref(bs);
    free(sparse);
}
END_TEST

START_TEST(test_qcow2_over_diskdm_nbd)
{
    char *q = NULL;
    ck_assert_int_ge(asprintf(&q, "%s/d.qcow2", dir), 0);
    char cmd[PATH_MAX * 2];
    snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 %s 8M && "
             "qemu-io -f qcow2 -c 'write -P 0x77 3M 64k' %s >/dev/null", q, q);
    ck_assert_int_eq(system(cmd), 0);
    const char *build = getenv("BUILD");
    server_start("d", "%s/diskdm-nbd -r -t -f raw -k %s/d.sock --fork --pid-file=%s/d.pid %s",
                 build ? build : "build", dir, dir, q);
    char uri[PATH_MAX + 64];
    snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s/d.sock", dir);
    struct bdrv_node *bs = bdrv_open_file(uri, NULL, true, NULL);
    ck_assert_ptr_nonnull(bs);
    ck_assert_str_eq(bdrv_driver_name(bs), "qcow2");
    ck_assert_int_eq(bdrv_getlength(bs), 8 << 20);
    uint8_t r[65536];
    ck_assert_int_eq(bdrv_pread(bs, 3 << 20, r, sizeof(r)), 0);
    ck_assert_uint_eq(r[0], 0x77);
    ck_assert_uint_eq(r[65535], 0x77);
    bdrv_unref(bs);

    /* With the format named, the protocol child is still NBD, not a file
     * called "nbd+unix:..." */
    bs = bdrv_open_file(uri, "qcow2", true, NULL);
    ck_assert_ptr_nonnull(bs);
    ck_assert_str_eq(bdrv_driver_name(bs), "qcow2");
    ck_assert_str_eq(bdrv_driver_name(bdrv_file_child(bs)), "nbd");
    ck_assert_int_eq(bdrv_pread(bs, 3 << 20, r, sizeof(r)), 0);
    ck_assert_uint_eq(r[0], 0x77);
    bdrv_unref(bs);
    server_stop("d");
    free(q);
}
END_TEST

/* The first line of `qemu-img info URI` without its "image: " prefix. */
static char *qemu_img_name(const char *uri)
{
    char cmd[PATH_MAX * 2], line[PATH_MAX * 2];
    snprintf(cmd, sizeof(cmd), "qemu-img info '%s'", uri);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), p));
    pclose(p);
    line[strcspn(line, "\n")] = 0;
    ck_assert_msg(!strncmp(line, "image: ", 7), "%s", line);
    return strdup(line + 7);
}

/* A node's name is the one QEMU gives the same export, for each URI form
 * (an empty export drops the path: nbd+unix://?socket=...). */
START_TEST(test_filename_like_qemu)
{
    const char *build = getenv("BUILD");
    server_start("d", "%s/diskdm-nbd -r -t -e 0 -f raw -k %s/d.sock --fork --pid-file=%s/d.pid %s",
                 build ? build : "build", dir, dir, img);
    server_start("x", "%s/diskdm-nbd -r -t -e 0 -x exp -f raw -k %s/x.sock --fork "
                 "--pid-file=%s/x.pid %s", build ? build : "build", dir, dir, img);
    const char *forms[][2] = {
        { "nbd+unix:///?socket=%s/d.sock", "nbd+unix://?socket=%s/d.sock" },
        { "nbd+unix://?socket=%s/d.sock", "nbd+unix://?socket=%s/d.sock" },
        { "nbd+unix:///exp?socket=%s/x.sock", "nbd+unix:///exp?socket=%s/x.sock" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(forms); i++) {
        char uri[PATH_MAX + 64], want[PATH_MAX + 64];
        snprintf(uri, sizeof(uri), forms[i][0], dir);
        snprintf(want, sizeof(want), forms[i][1], dir);
        struct bdrv_node *bs = bdrv_open_file(uri, NULL, true, NULL);
        ck_assert_ptr_nonnull(bs);
        ck_assert_str_eq(bdrv_filename(bs), want);
        char *q = qemu_img_name(uri);
        ck_assert_str_eq(bdrv_filename(bs), q);
        free(q);
        bdrv_unref(bs);
    }
    server_stop("x");
    server_stop("d");
}
END_TEST

START_TEST(test_bad_uri)
{
    int errnum = 0;
    char *msg = bt_open_fail("driver=nbd,filename=%s", "/not/a/uri", &errnum);
    ck_assert_msg(strstr(msg, "is not an NBD URI") != NULL, "%s", msg);
    free(msg);
    msg = bt_open_fail("driver=nbd,filename=nbd+unix:///?socket=%s/none.sock", dir, &errnum);
    ck_assert_msg(strstr(msg, "Could not open") != NULL, "%s", msg);
    free(msg);
}
END_TEST

int main(void)
{
    log_init("test-block-nbd", LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("block-nbd");
    TCase *tc = tcase_create("nbd");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_nbdkit_read_only);
    tcase_add_test(tc, test_nbdkit_read_write);
    tcase_add_test(tc, test_qemu_nbd_and_block_status);
    tcase_add_test(tc, test_qcow2_over_diskdm_nbd);
    tcase_add_test(tc, test_filename_like_qemu);
    tcase_add_test(tc, test_bad_uri);
    suite_add_tcase(s, tc);
    return bt_run(s);
}
