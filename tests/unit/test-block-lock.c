/*
 * tests/unit/test-block-lock.c — image locking between two diskdm
 * processes (fork): QEMU's OFD byte layout, a second writer refused with
 * QEMU's message, readers sharing, force-share, locking=off, and locks
 * following a reopen.
 */
#include "tests/unit/block-test.h"

static char *dir, *img;

static void setup(void)
{
    dir = bt_tmpdir();
    img = bt_image(dir, "disk.raw", 65536, 5);
}

static void teardown(void)
{
    bt_rmtree(dir);
    free(img);
    free(dir);
}

/* In a child process: open `opts` (with %s = image) and report how it
 * went: exit 0 opened, 1 failed with `want` as message, 2 anything else. */
struct try_open {
    const char *opts;
    const char *want;   /* printf format with the image name twice; NULL = must open */
};

static int child_try(void *arg)
{
    const struct try_open *t = arg;
    char s[PATH_MAX * 2], want[PATH_MAX * 3];
    snprintf(s, sizeof(s), t->opts, img);
    struct error *err = NULL;
    struct bdrv_node *bs = bt_open(s, &err);
    if (!t->want) {
        BT_CHECK(bs, "open '%s' failed: %s", s, err ? err->msg : "?");
        bdrv_unref(bs);
        return 0;
    }
    BT_CHECK(!bs, "open '%s' succeeded", s);
    snprintf(want, sizeof(want), t->want, img);
    BT_CHECK(!strcmp(err->msg, want), "message '%s', want '%s'", err->msg, want);
    BT_CHECK(err->errnum == EAGAIN, "errnum %d", err->errnum);
    error_free(err);
    return 0;
}

static int in_child(int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        _exit(fn(arg));
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

#define WRITE_LOCKED "Failed to get \"write\" lock\n" \
                     "Is another process using the image [%s]?"
#define SHARED_LOCKED "Failed to get shared \"write\" lock\n" \
                      "Is another process using the image [%s]?"

static void expect(const char *opts, const char *want)
{
    struct try_open t = { opts, want };
    ck_assert_msg(in_child(child_try, &t) == 0, "child for '%s'", opts);
}

START_TEST(test_writer_excludes)
{
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s", img);
    expect("driver=raw,file.filename=%s", WRITE_LOCKED);
    expect("driver=raw,file.filename=%s,read-only=on", SHARED_LOCKED);
    expect("driver=raw,file.filename=%s,force-read-only=on", SHARED_LOCKED);
    expect("driver=raw,file.filename=%s,read-only=on,force-share=on", NULL);
    expect("driver=raw,file.filename=%s,locking=off", NULL);
    bdrv_unref(bs);
    expect("driver=raw,file.filename=%s", NULL);
}
END_TEST

START_TEST(test_readers_share)
{
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,read-only=on", img);
    expect("driver=raw,file.filename=%s,read-only=on", NULL);
    /* A reader that does not share write keeps writers out. */
    expect("driver=raw,file.filename=%s", WRITE_LOCKED);
    bdrv_unref(bs);

    bs = bt_open_ok("driver=raw,file.filename=%s,read-only=on,force-share=on", img);
    expect("driver=raw,file.filename=%s", NULL);
    bdrv_unref(bs);
}
END_TEST

START_TEST(test_locking_off)
{
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s,locking=off", img);
    expect("driver=raw,file.filename=%s", NULL);
    bdrv_unref(bs);
}
END_TEST

/* Locks follow reopen: going read-only lets readers in (writers still
 * not), going back read-write is refused while another reader holds the
 * image, and the node stays read-only. */
static int hold_reader(void *arg)
{
    int *fds = arg;     /* [0] read end: parent says go; [1] write end: ready */
    char s[PATH_MAX + 64];
    snprintf(s, sizeof(s), "driver=raw,file.filename=%s,read-only=on", img);
    struct error *err = NULL;
    struct bdrv_node *bs = bt_open(s, &err);
    char c = bs ? 'y' : 'n';
    if (write(fds[1], &c, 1) != 1) {
        return 2;
    }
    if (read(fds[0], &c, 1) != 1) {
        return 2;
    }
    bdrv_unref(bs);
    return bs ? 0 : 1;
}

START_TEST(test_reopen_locks)
{
    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s", img);
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_reopen_read_only(bs, true, &err), 0);
    expect("driver=raw,file.filename=%s,read-only=on", NULL);
    expect("driver=raw,file.filename=%s", WRITE_LOCKED);

    int to_child[2], to_parent[2];
    ck_assert_int_eq(pipe(to_child), 0);
    ck_assert_int_eq(pipe(to_parent), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fds[2] = { to_child[0], to_parent[1] };
        _exit(hold_reader(fds));
    }
    char c;
    ck_assert_int_eq(read(to_parent[0], &c, 1), 1);
    ck_assert_int_eq(c, 'y');
    ck_assert_int_eq(bdrv_reopen_read_only(bs, false, &err), -EAGAIN);
    char want[PATH_MAX * 3];
    snprintf(want, sizeof(want), WRITE_LOCKED, img);
    ck_assert_str_eq(err->msg, want);
    error_freep(&err);
    ck_assert(bdrv_is_read_only(bs));
    ck_assert_int_eq(bt_write_fds(img), 0);
    ck_assert_int_eq(write(to_child[1], "x", 1), 1);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* The reader is gone: now it works, and excludes others again. */
    ck_assert_int_eq(bdrv_reopen_read_only(bs, false, &err), 0);
    expect("driver=raw,file.filename=%s", WRITE_LOCKED);
    bdrv_unref(bs);
    close(to_child[0]); close(to_child[1]);
    close(to_parent[0]); close(to_parent[1]);
}
END_TEST

/* Which of QEMU's lock bytes (100..104, 200..204) someone holds, as a
 * string "100,101,...". Another open file description sees OFD locks
 * even in the same process. */
static void held_bytes(char *out, size_t len)
{
    int fd = open(img, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    out[0] = 0;
    for (int base = 100; base <= 200; base += 100) {
        for (int i = 0; i < 5; i++) {
            struct flock fl = {
                .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = base + i, .l_len = 1,
            };
            ck_assert_int_eq(fcntl(fd, F_OFD_GETLK, &fl), 0);
            if (fl.l_type != F_UNLCK) {
                size_t n = strlen(out);
                snprintf(out + n, len - n, "%s%d", n ? "," : "", base + i);
            }
        }
    }
    close(fd);
}

static void expect_bytes(const char *opts, const char *want)
{
    struct bdrv_node *bs = bt_open_ok(opts, img);
    char got[128];
    held_bytes(got, sizeof(got));
    ck_assert_msg(!strcmp(got, want), "%s: holds %s, want %s", opts, got, want);
    bdrv_unref(bs);
    held_bytes(got, sizeof(got));
    ck_assert_str_eq(got, "");
}

/* The byte layout QEMU uses (block-notes.md): writer 100,101,103,201,203;
 * reader 100,201,203; force-share reader 100. */
START_TEST(test_lock_bytes)
{
    expect_bytes("driver=raw,file.filename=%s", "100,101,103,201,203");
    expect_bytes("driver=raw,file.filename=%s,read-only=on", "100,201,203");
    expect_bytes("driver=raw,file.filename=%s,force-read-only=on", "100,201,203");
    expect_bytes("driver=raw,file.filename=%s,read-only=on,force-share=on", "100");
    expect_bytes("driver=raw,file.filename=%s,locking=off", "");

    struct bdrv_node *bs = bt_open_ok("driver=raw,file.filename=%s", img);
    struct error *err = NULL;
    char got[128];
    ck_assert_int_eq(bdrv_reopen_read_only(bs, true, &err), 0);
    held_bytes(got, sizeof(got));
    ck_assert_str_eq(got, "100,201,203");
    ck_assert_int_eq(bdrv_reopen_read_only(bs, false, &err), 0);
    held_bytes(got, sizeof(got));
    ck_assert_str_eq(got, "100,101,103,201,203");
    bdrv_unref(bs);
}
END_TEST

static Suite *lock_suite(void)
{
    Suite *s = suite_create("block-lock");
    TCase *tc = tcase_create("lock");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_lock_bytes);
    tcase_add_test(tc, test_writer_excludes);
    tcase_add_test(tc, test_readers_share);
    tcase_add_test(tc, test_locking_off);
    tcase_add_test(tc, test_reopen_locks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test-block-lock", LOG_ERROR);
    return bt_run(lock_suite());
}
