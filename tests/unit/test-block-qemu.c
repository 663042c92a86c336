/*
 * tests/unit/test-block-qemu.c — image locks seen across diskdm and QEMU,
 * both directions: qemu-io (the real peer) against nodes opened here.
 * QEMU's tools share every permission they do not need (qemu-io holds
 * bytes 100/101 and unshares nothing); diskdm, like a guest device,
 * unshares write and resize.
 */
#include "tests/unit/block-test.h"

#include <signal.h>
#include <time.h>

static char *dir, *img;

static void setup(void)
{
    dir = bt_tmpdir();
    img = bt_image(dir, "disk.raw", 1 << 20, 2);
}

static void teardown(void)
{
    bt_rmtree(dir);
    free(img);
    free(dir);
}

static bool have_qemu_io(void)
{
    return system("command -v qemu-io >/dev/null 2>&1") == 0;
}

/* Does another process hold an OFD lock on byte `byte` of img? */
static bool proc_locks_has(const char *path, long byte)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    FILE *f = fopen("/proc/locks", "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    bool found = false;
    while (fgets(line, sizeof(line), f)) {
        unsigned maj, min;
        unsigned long ino;
        long start;
        char end[32];
        /* "1: OFDLCK ADVISORY  READ -1 fe:00:10954019 100 100" */
        char *p = strstr(line, "OFDLCK");
        if (!p) {
            continue;
        }
        if (sscanf(p, "OFDLCK %*s %*s %*s %x:%x:%lu %ld %31s", &maj, &min, &ino, &start, end) == 5 &&
            ino == st.st_ino && start <= byte && (strcmp(end, "EOF") == 0 || atol(end) >= byte)) {
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* Start `qemu-io ARGS... -c 'sleep 20000' img` and wait until it holds
 * byte 100. Returns its pid. */
static pid_t start_qemu_io(bool read_only)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        if (read_only) {
            execlp("qemu-io", "qemu-io", "-r", "-f", "raw", "-c", "sleep 20000", img, NULL);
        } else {
            execlp("qemu-io", "qemu-io", "-f", "raw", "-c", "sleep 20000", img, NULL);
        }
        _exit(127);
    }
    for (int i = 0; i < 1000 && !proc_locks_has(img, 100); i++) {
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    ck_assert_msg(proc_locks_has(img, 100), "qemu-io never took its lock");
    return pid;
}

static void stop(pid_t pid)
{
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
}

/* Run qemu-io once; returns its exit status and stderr in *err_out. */
static int run_qemu_io(const char *flags, const char *cmd, char **err_out)
{
    char *c = NULL, *errfile = NULL;
    ck_assert_int_ge(asprintf(&errfile, "%s/qemu-io.err", dir), 0);
    ck_assert_int_ge(asprintf(&c, "qemu-io %s -f raw -c '%s' '%s' >/dev/null 2>'%s'",
                              flags, cmd, img, errfile), 0);
    int st = system(c);
    struct stat sb;
    ck_assert_int_eq(stat(errfile, &sb), 0);
    char *buf = calloc(1, sb.st_size + 1);
    int fd = open(errfile, O_RDONLY);
    ck_assert_int_eq(full_read(fd, buf, sb.st_size), sb.st_size);
    close(fd);
    *err_out = buf;
    free(c);
    free(errfile);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* diskdm holds the image: QEMU's writer gets QEMU's own message. */
START_TEST(test_diskdm_writer_blocks_qemu)
{
    if (!have_qemu_io()) {
        ck_abort_msg("qemu-io missing");
    }
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s", img);
    char *err = NULL;
    ck_assert_int_ne(run_qemu_io("", "write 0 512", &err), 0);
    char *want = NULL;
    ck_assert_int_ge(asprintf(&want, "qemu-io: can't open device %s: Failed to get \"write\" lock\n"
                              "Is another process using the image [%s]?\n", img, img), 0);
    ck_assert_str_eq(err, want);
    free(err);
    free(want);
    /* A QEMU reader shares, and so may read alongside. */
    ck_assert_int_eq(run_qemu_io("-r", "read 0 512", &err), 0);
    free(err);
    bdrv_unref(bs);
    ck_assert_int_eq(run_qemu_io("", "write 0 512", &err), 0);
    free(err);
}
END_TEST

START_TEST(test_diskdm_reader_vs_qemu)
{
    struct bt_snapshot snap;
    bt_snap(img, &snap);
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,force-read-only=on", img);
    char *err = NULL;
    ck_assert_int_ne(run_qemu_io("", "write 0 512", &err), 0);
    ck_assert_ptr_nonnull(strstr(err, "Failed to get \"write\" lock"));
    free(err);
    ck_assert_int_eq(run_qemu_io("-r", "read 0 512", &err), 0);
    free(err);
    bdrv_unref(bs);
    ck_assert(bt_unchanged(img, &snap));
    free(snap.data);

    /* force-share: diskdm shares write, so QEMU may write. */
    bs = bt_open_ok("driver=raw,file.filename=%s,read-only=on,force-share=on", img);
    ck_assert_int_eq(run_qemu_io("", "write 0 512", &err), 0);
    free(err);
    bdrv_unref(bs);
}
END_TEST

/* QEMU holds the image: a diskdm writer (which will not share write) is
 * refused; a diskdm reader that shares may open. */
START_TEST(test_qemu_writer_blocks_diskdm)
{
    pid_t pid = start_qemu_io(false);
    int errnum = 0;
    char *msg = bt_open_fail("driver=raw,file.filename=%s", img, &errnum);
    char *want = NULL;
    ck_assert_int_ge(asprintf(&want, "Failed to get shared \"write\" lock\n"
                              "Is another process using the image [%s]?", img), 0);
    ck_assert_str_eq(msg, want);
    ck_assert_int_eq(errnum, EAGAIN);
    free(msg);
    msg = bt_open_fail("driver=raw,file.filename=%s,force-read-only=on", img, NULL);
    ck_assert_str_eq(msg, want);
    free(msg);
    free(want);
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,read-only=on,force-share=on", img);
    bdrv_unref(bs);
    stop(pid);
    bs = bt_open_ok("driver=raw,file.filename=%s", img);
    bdrv_unref(bs);
}
END_TEST

START_TEST(test_qemu_reader_shares)
{
    pid_t pid = start_qemu_io(true);
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s", img);
    /* ...and now a second QEMU writer is refused by diskdm's locks. */
    char *err = NULL;
    ck_assert_int_ne(run_qemu_io("", "write 0 512", &err), 0);
    ck_assert_ptr_nonnull(strstr(err, "Failed to get \"write\" lock"));
    free(err);
    bdrv_unref(bs);
    stop(pid);
}
END_TEST

static Suite *qemu_suite(void)
{
    Suite *s = suite_create("block-qemu");
    TCase *tc = tcase_create("locks");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_diskdm_writer_blocks_qemu);
    tcase_add_test(tc, test_diskdm_reader_vs_qemu);
    tcase_add_test(tc, test_qemu_writer_blocks_diskdm);
    tcase_add_test(tc, test_qemu_reader_shares);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test-block-qemu", LOG_ERROR);
    return bt_run(qemu_suite());
}
