/*
 * tests/unit/test-util-error.c — error messages (set, prefix, propagate,
 * report) and leveled logging to stderr or a file.
 */
#include "util/util.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

START_TEST(test_setg)
{
    struct error *err = NULL;
    error_setg(&err, "bad %s %d", "thing", 42);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err->msg, "bad thing 42");
    ck_assert_int_eq(err->errnum, 0);
    error_freep(&err);
    ck_assert_ptr_null(err);

    error_setg_errno(&err, ENOENT, "Could not open '%s'", "x.img");
    ck_assert_str_eq(err->msg, "Could not open 'x.img': No such file or directory");
    ck_assert_int_eq(err->errnum, ENOENT);
    error_freep(&err);

    /* A negative errno is taken as its magnitude. */
    error_setg_errno(&err, -EACCES, "open");
    ck_assert_str_eq(err->msg, "open: Permission denied");
    ck_assert_int_eq(err->errnum, EACCES);
    error_freep(&err);

    /* NULL errp: the message is dropped. */
    error_setg(NULL, "ignored %d", 1);
    error_setg_errno(NULL, EIO, "ignored");
    error_free(NULL);
    error_freep(&err);
}
END_TEST

START_TEST(test_set_twice_aborts)
{
    struct error *err = NULL;
    error_setg(&err, "first");
    error_setg(&err, "second");
}
END_TEST

START_TEST(test_prepend)
{
    struct error *err = NULL;
    error_setg_errno(&err, ENOSPC, "write");
    error_prepend(&err, "Could not resize '%s'", "base.qcow2");
    ck_assert_str_eq(err->msg, "Could not resize 'base.qcow2': write: No space left on device");
    ck_assert_int_eq(err->errnum, ENOSPC);
    error_prepend(&err, "hda");
    ck_assert_str_eq(err->msg,
                     "hda: Could not resize 'base.qcow2': write: No space left on device");
    error_freep(&err);

    error_prepend(&err, "nothing to prefix");
    ck_assert_ptr_null(err);
    error_prepend(NULL, "nothing to prefix");
}
END_TEST

START_TEST(test_propagate)
{
    struct error *dst = NULL, *src = NULL;
    error_setg(&src, "inner");
    error_propagate(&dst, src);
    ck_assert_ptr_eq(dst, src);
    ck_assert_str_eq(dst->msg, "inner");

    /* dst already set: the first error stays, the second is freed. */
    struct error *second = NULL;
    error_setg(&second, "second");
    error_propagate(&dst, second);
    ck_assert_str_eq(dst->msg, "inner");

    /* NULL dst frees src (leak checkers see it). */
    struct error *third = NULL;
    error_setg(&third, "third");
    error_propagate(NULL, third);
    error_propagate(&dst, NULL);
    ck_assert_str_eq(dst->msg, "inner");
    error_free(dst);
}
END_TEST

static int fails_with_error(struct error **errp)
{
    error_setg(errp, "scoped");
    return -EINVAL;
}

START_TEST(test_auto)
{
    ERROR_AUTO struct error *err = NULL;
    ck_assert_int_eq(fails_with_error(&err), -EINVAL);
    ck_assert_str_eq(err->msg, "scoped");
    /* Freed at scope exit. */
}
END_TEST

/* Capture what a call writes to stderr. */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    char path[] = "/tmp/diskdm-err-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    static char buf[4096];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    ck_assert_int_ge(n, 0);
    buf[n] = '\0';
    close(fd);
    return buf;
}

static void report_one(void *arg)
{
    struct error *err = NULL;
    error_setg(&err, "drive 'hda': %s", (const char *)arg);
    error_report_err(err);
    error_report_err(NULL);
}

START_TEST(test_report)
{
    log_init("/usr/local/bin/diskdm-img", LOG_WARN);
    ck_assert_str_eq(log_progname(), "diskdm-img");
    ck_assert_str_eq(capture_stderr(report_one, "missing file"),
                     "diskdm-img: drive 'hda': missing file\n");
}
END_TEST

static void log_some(void *arg)
{
    log_error("e %d", 1);
    log_warn("w %s", "two");
    log_info("i");
    log_debug("d");
}

START_TEST(test_log_levels)
{
    log_init("diskdm", LOG_WARN);
    ck_assert(log_enabled(LOG_ERROR));
    ck_assert(log_enabled(LOG_WARN));
    ck_assert(!log_enabled(LOG_INFO));
    ck_assert_str_eq(capture_stderr(log_some, NULL),
                     "diskdm: error: e 1\ndiskdm: warning: w two\n");
    log_init("diskdm", LOG_DEBUG);
    ck_assert_str_eq(capture_stderr(log_some, NULL),
                     "diskdm: error: e 1\ndiskdm: warning: w two\n"
                     "diskdm: info: i\ndiskdm: debug: d\n");
    log_init("diskdm", LOG_ERROR);
    ck_assert_str_eq(capture_stderr(log_some, NULL), "diskdm: error: e 1\n");
}
END_TEST

START_TEST(test_log_file)
{
    char dir[] = "/tmp/diskdm-log-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/missing/log", dir);
    ck_assert_int_eq(log_set_file(path), -ENOENT);

    snprintf(path, sizeof(path), "%s/log", dir);
    log_init("diskdm", LOG_INFO);
    ck_assert_int_eq(log_set_file(path), 0);
    /* Nothing reaches stderr once a file is set. */
    ck_assert_str_eq(capture_stderr(log_some, NULL), "");
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    static const char *const want[] = {
        "diskdm: error: e 1\n", "diskdm: warning: w two\n", "diskdm: info: i\n",
    };
    for (int i = 0; i < 3; i++) {
        ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
        /* "SECONDS.MMM " then the message. */
        char *sp = strchr(line, ' ');
        ck_assert_ptr_nonnull(sp);
        ck_assert_int_eq(sp - line > 4 && line[sp - line - 4] == '.', 1);
        ck_assert_str_eq(sp + 1, want[i]);
    }
    ck_assert_ptr_null(fgets(line, sizeof(line), f));
    fclose(f);
    unlink(path);
    rmdir(dir);
}
END_TEST

static Suite *error_suite(void)
{
    Suite *s = suite_create("util-error");
    TCase *tc = tcase_create("error");
    tcase_add_test(tc, test_setg);
    tcase_add_test_raise_signal(tc, test_set_twice_aborts, SIGABRT);
    tcase_add_test(tc, test_prepend);
    tcase_add_test(tc, test_propagate);
    tcase_add_test(tc, test_auto);
    tcase_add_test(tc, test_report);
    suite_add_tcase(s, tc);
    tc = tcase_create("log");
    tcase_add_test(tc, test_log_levels);
    tcase_add_test(tc, test_log_file);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(error_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
