/*
 * tests/unit/test-util-fullio.c — the full-transfer helpers over pipes,
 * socketpairs and files: short transfers, EINTR, EAGAIN, end of file,
 * write errors; and the iovec copy helpers.
 */
#include "util/util.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static void fill_pattern(unsigned char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (unsigned char)((i * 31 + seed) ^ (i >> 8));
    }
}

static int temp_file(void)
{
    char path[] = "/tmp/diskdm-fullio-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    return fd;
}

/* ------------------------------------------------------------------ */
/* Pipes and sockets: short transfers                                  */
/* ------------------------------------------------------------------ */

struct dribble {
    int fd;
    const unsigned char *data;
    size_t len;
    size_t chunk;
    bool close_after;
};

/* Writes `data` in small pieces, so that every read comes back short. */
static void *dribble_writer(void *opaque)
{
    struct dribble *d = opaque;
    for (size_t off = 0; off < d->len; off += d->chunk) {
        size_t n = MIN(d->chunk, d->len - off);
        ck_assert_int_eq(write(d->fd, d->data + off, n), (ssize_t)n);
        usleep(50);
    }
    if (d->close_after) {
        close(d->fd);
    }
    return NULL;
}

START_TEST(test_read_short_pieces)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    unsigned char data[3000], got[3000];
    fill_pattern(data, sizeof(data), 1);
    struct dribble d = { p[1], data, sizeof(data), 7, true };
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, dribble_writer, &d), 0);
    ck_assert_int_eq(full_read(p[0], got, 1000), 1000);
    ck_assert_int_eq(full_read(p[0], got + 1000, 2000), 2000);
    ck_assert_mem_eq(got, data, sizeof(data));
    /* Writer closed: end of file. */
    ck_assert_int_eq(full_read(p[0], got, 10), 0);
    pthread_join(tid, NULL);
    close(p[0]);
}
END_TEST

START_TEST(test_read_eof_short)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(write(p[1], "0123456789", 10), 10);
    close(p[1]);
    char buf[100];
    ck_assert_int_eq(full_read(p[0], buf, sizeof(buf)), 10);
    ck_assert_mem_eq(buf, "0123456789", 10);
    ck_assert_int_eq(full_read(p[0], buf, sizeof(buf)), 0);
    ck_assert_int_eq(full_read(p[0], buf, 0), 0);
    close(p[0]);
}
END_TEST

struct drain {
    int fd;
    unsigned char *buf;
    size_t len;
    size_t chunk;
};

/* Reads in small pieces, so that the writer's writes come back short. */
static void *drain_reader(void *opaque)
{
    struct drain *d = opaque;
    size_t off = 0;
    while (off < d->len) {
        ssize_t n = read(d->fd, d->buf + off, MIN(d->chunk, d->len - off));
        ck_assert_int_gt(n, 0);
        off += n;
    }
    return NULL;
}

START_TEST(test_write_short_socket)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    size_t len = 1 << 20;
    unsigned char *data = malloc(len), *got = malloc(len);
    fill_pattern(data, len, 2);
    struct drain d = { sv[1], got, len, 1000 };
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, drain_reader, &d), 0);
    ck_assert_int_eq(full_write(sv[0], data, len), (ssize_t)len);
    pthread_join(tid, NULL);
    ck_assert_mem_eq(got, data, len);
    free(data);
    free(got);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_write_errors)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(full_write(p[1], "abc", 3), -EPIPE);
    close(p[1]);
    ck_assert_int_eq(full_write(p[1], "abc", 3), -EBADF);
    char c;
    ck_assert_int_eq(full_read(p[0], &c, 1), -EBADF);
    ck_assert_int_eq(full_write(1000, "abc", 0), 0);     /* nothing to do */
}
END_TEST

/* ------------------------------------------------------------------ */
/* EINTR                                                               */
/* ------------------------------------------------------------------ */

/* Written by the handler in the interrupted thread, read by the main one. */
static int signals_seen;

static void on_signal(int sig)
{
    int saved = errno;
    __atomic_add_fetch(&signals_seen, 1, __ATOMIC_SEQ_CST);
    errno = saved;
}

static int seen(void)
{
    return __atomic_load_n(&signals_seen, __ATOMIC_SEQ_CST);
}

/* Handler without SA_RESTART: blocked reads and writes fail with EINTR. */
static void install_handler(void)
{
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    __atomic_store_n(&signals_seen, 0, __ATOMIC_SEQ_CST);
}

/* Wait until thread `tid` sleeps in the kernel (state S in /proc). */
static void wait_sleeping(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    for (;;) {
        FILE *f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        char line[512];
        char *ok = fgets(line, sizeof(line), f);
        fclose(f);
        ck_assert_ptr_nonnull(ok);
        char *close_paren = strrchr(line, ')');
        if (close_paren && close_paren[2] == 'S') {
            return;
        }
        usleep(100);
    }
}

struct eintr_reader {
    int fd;
    unsigned char buf[20];
    ssize_t ret;
    pid_t tid;
    volatile int started;
};

static void *eintr_read_thread(void *opaque)
{
    struct eintr_reader *r = opaque;
    r->tid = (pid_t)syscall(SYS_gettid);
    __atomic_store_n(&r->started, 1, __ATOMIC_RELEASE);
    r->ret = full_read(r->fd, r->buf, sizeof(r->buf));
    return NULL;
}

START_TEST(test_read_eintr)
{
    install_handler();
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    struct eintr_reader r = { .fd = p[0] };
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, eintr_read_thread, &r), 0);
    while (!__atomic_load_n(&r.started, __ATOMIC_ACQUIRE)) {
        usleep(100);
    }
    /* Half the data; wait until it is consumed and the reader blocks for
     * the rest, then interrupt it twice. */
    ck_assert_int_eq(write(p[1], "0123456789", 10), 10);
    int avail;
    do {
        usleep(100);
        ck_assert_int_eq(ioctl(p[0], FIONREAD, &avail), 0);
    } while (avail > 0);
    for (int i = 0; i < 2; i++) {
        wait_sleeping(r.tid);
        pthread_kill(tid, SIGUSR1);
        while (seen() < i + 1) {
            usleep(100);
        }
    }
    ck_assert_int_eq(write(p[1], "abcdefghij", 10), 10);
    pthread_join(tid, NULL);
    ck_assert_int_eq(r.ret, 20);
    ck_assert_mem_eq(r.buf, "0123456789abcdefghij", 20);
    ck_assert_int_eq(seen(), 2);
    close(p[0]);
    close(p[1]);
}
END_TEST

struct eintr_writer {
    int fd;
    const unsigned char *data;
    size_t len;
    ssize_t ret;
    pid_t tid;
    volatile int started;
};

static void *eintr_write_thread(void *opaque)
{
    struct eintr_writer *w = opaque;
    w->tid = (pid_t)syscall(SYS_gettid);
    __atomic_store_n(&w->started, 1, __ATOMIC_RELEASE);
    w->ret = full_write(w->fd, w->data, w->len);
    return NULL;
}

/* A writer blocked on a full pipe is interrupted between reads: its
 * writes come back short or with EINTR, and every byte still arrives. */
START_TEST(test_write_eintr)
{
    install_handler();
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    size_t len = 512 * 1024;
    unsigned char *data = malloc(len), *got = malloc(len);
    fill_pattern(data, len, 3);
    struct eintr_writer w = { .fd = p[1], .data = data, .len = len };
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, eintr_write_thread, &w), 0);
    while (!__atomic_load_n(&w.started, __ATOMIC_ACQUIRE)) {
        usleep(100);
    }
    size_t off = 0;
    int sent = 0;
    while (off < len) {
        if (sent < 5) {
            wait_sleeping(w.tid);       /* blocked: the pipe is full */
            pthread_kill(tid, SIGUSR1);
            sent++;
            while (seen() < sent) {
                usleep(100);
            }
        }
        ssize_t n = read(p[0], got + off, MIN((size_t)3000, len - off));
        ck_assert_int_gt(n, 0);
        off += n;
    }
    pthread_join(tid, NULL);
    ck_assert_int_eq(w.ret, (ssize_t)len);
    ck_assert_mem_eq(got, data, len);
    ck_assert_int_eq(seen(), 5);
    free(data);
    free(got);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Non-blocking fds                                                    */
/* ------------------------------------------------------------------ */

START_TEST(test_nonblocking)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_NONBLOCK), 0);
    char buf[64];
    /* Nothing there: -EAGAIN, nothing consumed. */
    ck_assert_int_eq(full_read(p[0], buf, 10), -EAGAIN);

    /* Part of a message there: the rest is waited for. */
    ck_assert_int_eq(write(p[1], "01234", 5), 5);
    unsigned char rest[] = "56789";
    struct dribble d = { p[1], rest, 5, 1, false };
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, dribble_writer, &d), 0);
    ck_assert_int_eq(full_read(p[0], buf, 10), 10);
    ck_assert_mem_eq(buf, "0123456789", 10);
    pthread_join(tid, NULL);

    /* Fill the pipe: a write with no room at all is -EAGAIN. */
    static char big[1 << 16];
    ssize_t n;
    while ((n = write(p[1], big, sizeof(big))) > 0) {
    }
    ck_assert_int_eq(full_write(p[1], "x", 1), -EAGAIN);
    /* Drain it, then a large write that outgrows the pipe completes. */
    while (read(p[0], big, sizeof(big)) > 0) {
    }
    size_t len = 300 * 1024;
    unsigned char *data = malloc(len), *got = malloc(len);
    fill_pattern(data, len, 4);
    int fl = fcntl(p[0], F_GETFL);
    fcntl(p[0], F_SETFL, fl & ~O_NONBLOCK);
    struct drain dr = { p[0], got, len, 5000 };
    ck_assert_int_eq(pthread_create(&tid, NULL, drain_reader, &dr), 0);
    ck_assert_int_eq(full_write(p[1], data, len), (ssize_t)len);
    pthread_join(tid, NULL);
    ck_assert_mem_eq(got, data, len);
    free(data);
    free(got);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */

START_TEST(test_file_pread_pwrite)
{
    int fd = temp_file();
    unsigned char data[10000], got[20000];
    fill_pattern(data, sizeof(data), 5);
    ck_assert_int_eq(full_pwrite(fd, data, sizeof(data), 100), (ssize_t)sizeof(data));
    /* The hole before reads as zeroes; reading past the end is short. */
    memset(got, 0xaa, sizeof(got));
    ck_assert_int_eq(full_pread(fd, got, sizeof(got), 0), 10100);
    for (int i = 0; i < 100; i++) {
        ck_assert_uint_eq(got[i], 0);
    }
    ck_assert_mem_eq(got + 100, data, sizeof(data));
    ck_assert_uint_eq(got[10100], 0xaa);
    ck_assert_int_eq(full_pread(fd, got, 50, 10100), 0);
    ck_assert_int_eq(full_pread(fd, got, 50, 1 << 30), 0);
    ck_assert_int_eq(full_pread(fd, got, 60, 10050), 50);
    ck_assert_mem_eq(got, data + 9950, 50);
    ck_assert_int_eq(full_pread(fd, got, 0, 0), 0);
    ck_assert_int_eq(full_pread(-1, got, 10, 0), -EBADF);
    ck_assert_int_eq(full_pwrite(-1, got, 10, 0), -EBADF);
    ck_assert_int_eq(full_pread(fd, got, 10, -1), -EINVAL);
    close(fd);

    /* A read-only descriptor refuses writes. */
    fd = open("/dev/null", O_RDONLY);
    ck_assert_int_eq(full_pwrite(fd, data, 10, 0), -EBADF);
    close(fd);
    /* Pipes cannot seek. */
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(full_pread(p[0], got, 10, 0), -ESPIPE);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(test_file_vectored)
{
    int fd = temp_file();
    unsigned char a[3000], b[0], c[5000], d[1];
    fill_pattern(a, sizeof(a), 6);
    fill_pattern(c, sizeof(c), 7);
    d[0] = 0x5a;
    struct iovec wv[] = {
        { a, sizeof(a) }, { b, 0 }, { c, sizeof(c) }, { d, 1 },
    };
    ck_assert_uint_eq(iov_size(wv, 4), 8001);
    ck_assert_int_eq(full_pwritev(fd, wv, 4, 512), 8001);

    unsigned char flat[8001];
    ck_assert_int_eq(full_pread(fd, flat, sizeof(flat), 512), 8001);
    ck_assert_mem_eq(flat, a, sizeof(a));
    ck_assert_mem_eq(flat + 3000, c, sizeof(c));
    ck_assert_uint_eq(flat[8000], 0x5a);

    /* Read back through differently cut buffers; the last ones lie past
     * the end of the file, so the read stops short in the middle of one. */
    unsigned char r1[100], r2[4000], r3[4000], r4[500];
    memset(r3, 0xee, sizeof(r3));
    memset(r4, 0xee, sizeof(r4));
    struct iovec rv[] = {
        { r1, sizeof(r1) }, { NULL, 0 }, { r2, sizeof(r2) }, { r3, sizeof(r3) },
        { r4, sizeof(r4) },
    };
    ck_assert_int_eq(full_preadv(fd, rv, 5, 512), 8001);
    ck_assert_mem_eq(r1, flat, 100);
    ck_assert_mem_eq(r2, flat + 100, 4000);
    ck_assert_mem_eq(r3, flat + 4100, 3901);
    ck_assert_uint_eq(r3[3901], 0xee);
    ck_assert_uint_eq(r4[0], 0xee);
    /* The caller's vector is not modified. */
    ck_assert_ptr_eq(rv[2].iov_base, r2);
    ck_assert_uint_eq(rv[2].iov_len, sizeof(r2));

    ck_assert_int_eq(full_preadv(fd, rv, 0, 0), 0);
    ck_assert_int_eq(full_preadv(fd, rv, -1, 0), -EINVAL);
    ck_assert_int_eq(full_pwritev(fd, rv, 100000, 0), -EINVAL);
    ck_assert_int_eq(full_preadv(-1, rv, 5, 0), -EBADF);
    close(fd);
}
END_TEST

/* A file size limit makes pwrite stop short, then fail with EFBIG; the
 * helper reports the error rather than the short count. */
START_TEST(test_file_short_write_then_error)
{
    int fd = temp_file();
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit saved, rl;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    rl = saved;
    rl.rlim_cur = 1000;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    unsigned char data[3000];
    fill_pattern(data, sizeof(data), 8);
    ck_assert_int_eq(full_pwrite(fd, data, sizeof(data), 0), -EFBIG);
    struct iovec v[] = { { data, 600 }, { data + 600, 600 } };
    ck_assert_int_eq(full_pwritev(fd, v, 2, 0), -EFBIG);
    ck_assert_int_eq(full_write(fd, data, 500), 500);   /* at 0: fits */
    ck_assert_int_eq(full_write(fd, data, 1000), -EFBIG);
    /* What did fit is there. */
    unsigned char got[1000];
    ck_assert_int_eq(full_pread(fd, got, sizeof(got), 0), 1000);
    ck_assert_mem_eq(got, data, 500);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
    close(fd);
}
END_TEST

/* ------------------------------------------------------------------ */
/* iovec helpers                                                       */
/* ------------------------------------------------------------------ */

START_TEST(test_iov_helpers)
{
    char a[3], b[0], c[5], d[2];
    struct iovec v[] = { { a, 3 }, { b, 0 }, { c, 5 }, { d, 2 } };
    ck_assert_uint_eq(iov_size(v, 4), 10);
    ck_assert_uint_eq(iov_size(v, 0), 0);

    ck_assert_uint_eq(iov_from_buf(v, 4, 0, "0123456789", 10), 10);
    ck_assert_mem_eq(a, "012", 3);
    ck_assert_mem_eq(c, "34567", 5);
    ck_assert_mem_eq(d, "89", 2);

    char out[16];
    memset(out, 0, sizeof(out));
    ck_assert_uint_eq(iov_to_buf(v, 4, 2, out, 5), 5);
    ck_assert_str_eq(out, "23456");
    memset(out, 0, sizeof(out));
    ck_assert_uint_eq(iov_to_buf(v, 4, 7, out, 16), 3);     /* clipped at end */
    ck_assert_str_eq(out, "789");
    ck_assert_uint_eq(iov_to_buf(v, 4, 10, out, 5), 0);
    ck_assert_uint_eq(iov_to_buf(v, 4, 50, out, 5), 0);
    ck_assert_uint_eq(iov_to_buf(v, 4, 3, out, 0), 0);

    ck_assert_uint_eq(iov_from_buf(v, 4, 4, "ABCDEFGHIJ", 10), 6);
    ck_assert_mem_eq(a, "012", 3);
    ck_assert_mem_eq(c, "3ABCD", 5);
    ck_assert_mem_eq(d, "EF", 2);

    iov_memset(v, 4, 2, '-', 4);
    ck_assert_mem_eq(a, "01-", 3);
    ck_assert_mem_eq(c, "---CD", 5);
    iov_memset(v, 4, 9, '+', 100);
    ck_assert_mem_eq(d, "E+", 2);
}
END_TEST

static Suite *fullio_suite(void)
{
    Suite *s = suite_create("util-fullio");
    TCase *tc = tcase_create("stream");
    tcase_add_test(tc, test_read_short_pieces);
    tcase_add_test(tc, test_read_eof_short);
    tcase_add_test(tc, test_write_short_socket);
    tcase_add_test(tc, test_write_errors);
    tcase_add_test(tc, test_read_eintr);
    tcase_add_test(tc, test_write_eintr);
    tcase_add_test(tc, test_nonblocking);
    suite_add_tcase(s, tc);
    tc = tcase_create("file");
    tcase_add_test(tc, test_file_pread_pwrite);
    tcase_add_test(tc, test_file_vectored);
    tcase_add_test(tc, test_file_short_write_then_error);
    tcase_add_test(tc, test_iov_helpers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fullio_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
