/*
 * tests/unit/test-xenstored-libxs.c — diskdm-xenstored against the real
 * libxenstore client: each test forks a daemon serving a socket in a
 * private temp dir (XENSTORED_PATH points there), then talks to it with
 * xs_* calls: read-modify-write transactions from 8 concurrent clients,
 * conflicts, watches, large directories, guest permissions and quotas.
 */
#include "tools/xenstored/store.c"
#include "tools/xenstored/txn.c"
#include "tools/xenstored/watch.c"
#include "tools/xenstored/ops.c"
#include "tools/xenstored/wire.c"

#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <xenstore.h>

static char tmpdir[64];
static char sock_path[128];
static int stop_pipe = -1;
static pid_t server_pid = -1;

static void server_child(int stop_fd, int ready_fd)
{
    struct xsd_server srv;
    struct error *err = NULL;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    xsd_server_init(&srv);
    if (xsd_listen(&srv, sock_path, 0, true, &err) < 0) {
        error_report_err(err);
        _exit(1);
    }
    if (write(ready_fd, "r", 1) != 1) {
        _exit(1);
    }
    close(ready_fd);
    int rc = xsd_run(&srv, stop_fd);
    xsd_server_destroy(&srv);
    _exit(rc ? 1 : 0);
}

static void setup(void)
{
    log_init("test-xenstored-libxs", LOG_WARN);
    strcpy(tmpdir, "/tmp/diskdm-xsd.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(sock_path, sizeof(sock_path), "%s/sock", tmpdir);
    setenv("XENSTORED_PATH", sock_path, 1);

    int stop[2], ready[2];
    ck_assert_int_eq(pipe(stop), 0);
    ck_assert_int_eq(pipe(ready), 0);
    server_pid = fork();
    ck_assert_int_ge(server_pid, 0);
    if (server_pid == 0) {
        close(stop[1]);
        close(ready[0]);
        server_child(stop[0], ready[1]);
    }
    close(stop[0]);
    close(ready[1]);
    stop_pipe = stop[1];
    char c;
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    close(ready[0]);
}

static void teardown(void)
{
    int status;
    close(stop_pipe);           /* the daemon exits when this closes */
    ck_assert_int_eq(waitpid(server_pid, &status, 0), server_pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    rmdir(tmpdir);
}

static struct xs_handle *open_dom0(void)
{
    struct xs_handle *h = xs_open(0);
    ck_assert_ptr_nonnull(h);
    return h;
}

/* A connection that declared itself domain `domid` (CONTROL "domain"). */
static struct xs_handle *open_domain(unsigned domid)
{
    struct xs_handle *h = open_dom0();
    char id[16];
    int n = snprintf(id, sizeof(id), "%u", domid);
    char *r = xs_control_command(h, "domain", id, (unsigned)n + 1);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r, "OK");
    free(r);
    return h;
}

static void check_read(struct xs_handle *h, xs_transaction_t t,
                       const char *path, const char *want)
{
    unsigned len;
    char *v = xs_read(h, t, path, &len);
    ck_assert_msg(v, "read %s: %s", path, strerror(errno));
    ck_assert_str_eq(v, want);
    ck_assert_uint_eq(len, strlen(want));
    free(v);
}

/* ------------------------------------------------------------------ */

#define CLIENTS 8
#define ROUNDS 1000

struct counter_client {
    pthread_t thread;
    unsigned retries;
    int failed;     /* errno of an unexpected failure, or 0 */
};

static void *counter_thread(void *opaque)
{
    struct counter_client *cl = opaque;
    struct xs_handle *h = xs_open(0);
    if (!h) {
        cl->failed = errno;
        return NULL;
    }
    for (int i = 0; i < ROUNDS && !cl->failed;) {
        xs_transaction_t t = xs_transaction_start(h);
        if (t == XBT_NULL) {
            cl->failed = errno;
            break;
        }
        unsigned len;
        char *v = xs_read(h, t, "/counter", &len);
        if (!v) {
            cl->failed = errno;
            xs_transaction_end(h, t, true);
            break;
        }
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "%lu", strtoul(v, NULL, 10) + 1);
        free(v);
        if (!xs_write(h, t, "/counter", buf, (unsigned)n)) {
            cl->failed = errno;
            xs_transaction_end(h, t, true);
            break;
        }
        if (xs_transaction_end(h, t, false)) {
            i++;
        } else if (errno == EAGAIN) {
            cl->retries++;
        } else {
            cl->failed = errno;
        }
    }
    xs_close(h);
    return NULL;
}

START_TEST(test_counter_contention)
{
    struct xs_handle *h = open_dom0();
    ck_assert(xs_write(h, XBT_NULL, "/counter", "0", 1));
    struct counter_client cl[CLIENTS];
    memset(cl, 0, sizeof(cl));
    for (int i = 0; i < CLIENTS; i++) {
        ck_assert_int_eq(pthread_create(&cl[i].thread, NULL, counter_thread,
                                        &cl[i]), 0);
    }
    unsigned retries = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(cl[i].thread, NULL);
        ck_assert_msg(cl[i].failed == 0, "client %d: %s", i,
                      strerror(cl[i].failed));
        retries += cl[i].retries;
    }
    char want[16];
    snprintf(want, sizeof(want), "%d", CLIENTS * ROUNDS);
    check_read(h, XBT_NULL, "/counter", want);
    printf("counter: %d commits, %u EAGAIN retries\n", CLIENTS * ROUNDS, retries);
    xs_close(h);
}
END_TEST

START_TEST(test_conflict)
{
    struct xs_handle *a = open_dom0();
    struct xs_handle *b = open_dom0();
    ck_assert(xs_write(a, XBT_NULL, "/k", "1", 1));
    xs_transaction_t t = xs_transaction_start(a);
    ck_assert_uint_ne(t, XBT_NULL);
    check_read(a, t, "/k", "1");
    ck_assert(xs_write(b, XBT_NULL, "/k", "2", 1));
    ck_assert(xs_write(a, t, "/k", "3", 1));
    errno = 0;
    ck_assert(!xs_transaction_end(a, t, false));
    ck_assert_int_eq(errno, EAGAIN);
    check_read(b, XBT_NULL, "/k", "2");
    /* Aborting is always fine. */
    t = xs_transaction_start(a);
    ck_assert(xs_rm(a, t, "/k"));
    ck_assert(xs_transaction_end(a, t, true));
    check_read(b, XBT_NULL, "/k", "2");
    xs_close(a);
    xs_close(b);
}
END_TEST

static void expect_watch(struct xs_handle *h, const char *path, const char *token)
{
    unsigned num;
    char **vec = xs_read_watch(h, &num);
    ck_assert_ptr_nonnull(vec);
    ck_assert_uint_eq(num, 2);
    ck_assert_str_eq(vec[XS_WATCH_PATH], path);
    ck_assert_str_eq(vec[XS_WATCH_TOKEN], token);
    free(vec);
}

START_TEST(test_watches)
{
    struct xs_handle *w = open_dom0();
    struct xs_handle *c = open_dom0();
    ck_assert(xs_watch(w, "/dev", "tok"));
    expect_watch(w, "/dev", "tok");
    ck_assert(!xs_watch(w, "/dev", "tok"));
    ck_assert_int_eq(errno, EEXIST);
    ck_assert(xs_write(c, XBT_NULL, "/dev/vbd/768/mode", "w", 1));
    expect_watch(w, "/dev/vbd/768/mode", "tok");
    ck_assert(xs_mkdir(c, XBT_NULL, "/dev/vbd/832"));
    expect_watch(w, "/dev/vbd/832", "tok");
    struct xs_permissions perms[2] = {
        { .id = 0, .perms = XS_PERM_NONE }, { .id = 3, .perms = XS_PERM_READ },
    };
    ck_assert(xs_set_permissions(c, XBT_NULL, "/dev/vbd/832", perms, 2));
    expect_watch(w, "/dev/vbd/832", "tok");
    ck_assert(xs_watch(w, "/dev/vbd/768/mode", "mode"));
    expect_watch(w, "/dev/vbd/768/mode", "mode");
    ck_assert(xs_rm(c, XBT_NULL, "/dev/vbd"));
    expect_watch(w, "/dev/vbd/768/mode", "mode");
    expect_watch(w, "/dev/vbd", "tok");
    /* Transactions deliver their events at commit. */
    xs_transaction_t t = xs_transaction_start(c);
    ck_assert(xs_write(c, t, "/dev/tx", "1", 1));
    ck_assert(xs_transaction_end(c, t, false));
    expect_watch(w, "/dev/tx", "tok");
    ck_assert(xs_unwatch(w, "/dev", "tok"));
    ck_assert(!xs_unwatch(w, "/dev", "tok"));
    ck_assert_int_eq(errno, ENOENT);
    xs_close(w);
    xs_close(c);
}
END_TEST

START_TEST(test_big_directory)
{
    struct xs_handle *h = open_dom0();
    xs_transaction_t t = xs_transaction_start(h);
    for (int i = 0; i < 400; i++) {
        char p[64];
        snprintf(p, sizeof(p), "/big/a-rather-long-child-name-%03d", i);
        ck_assert(xs_mkdir(h, t, p));
    }
    ck_assert(xs_transaction_end(h, t, false));
    /* The reply exceeds 4096 bytes: libxenstore falls back to
     * DIRECTORY_PART after E2BIG. */
    unsigned num = 0;
    char **list = xs_directory(h, XBT_NULL, "/big", &num);
    ck_assert_ptr_nonnull(list);
    ck_assert_uint_eq(num, 400);
    for (unsigned i = 0; i < num; i++) {
        char want[64];
        snprintf(want, sizeof(want), "a-rather-long-child-name-%03u", i);
        ck_assert_str_eq(list[i], want);
    }
    free(list);
    xs_close(h);
}
END_TEST

START_TEST(test_domain_permissions)
{
    struct xs_handle *c = open_dom0();
    struct xs_handle *d5 = open_domain(5);
    struct xs_permissions own6 = { .id = 6, .perms = XS_PERM_NONE };
    struct xs_permissions own5 = { .id = 5, .perms = XS_PERM_NONE };
    ck_assert(xs_write(c, XBT_NULL, "/local/domain/6/secret", "s", 1));
    ck_assert(xs_set_permissions(c, XBT_NULL, "/local/domain/6/secret", &own6, 1));
    ck_assert(xs_mkdir(c, XBT_NULL, "/local/domain/5"));
    ck_assert(xs_set_permissions(c, XBT_NULL, "/local/domain/5", &own5, 1));

    unsigned len;
    errno = 0;
    ck_assert_ptr_null(xs_read(d5, XBT_NULL, "/local/domain/6/secret", &len));
    ck_assert_int_eq(errno, EACCES);
    errno = 0;
    ck_assert(!xs_write(d5, XBT_NULL, "/local/domain/6/secret", "x", 1));
    ck_assert_int_eq(errno, EACCES);
    /* Its own home is writable, relative paths included. */
    ck_assert(xs_write(d5, XBT_NULL, "device/vbd/768/state", "1", 1));
    check_read(c, XBT_NULL, "/local/domain/5/device/vbd/768/state", "1");
    char *path = xs_get_domain_path(d5, 5);
    ck_assert_str_eq(path, "/local/domain/5");
    free(path);
    unsigned n;
    struct xs_permissions *p = xs_get_permissions(c, XBT_NULL,
                                                  "/local/domain/5/device", &n);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(p[0].id, 5);
    free(p);
    /* Toolstack-only calls. */
    errno = 0;
    ck_assert(!xs_introduce_domain(d5, 7, 1, 1));
    ck_assert_int_eq(errno, EACCES);
    ck_assert(xs_introduce_domain(c, 7, 1, 1));
    ck_assert(xs_is_domain_introduced(c, 7));
    /* Quotas: 10 open transactions per guest connection. */
    xs_transaction_t t[10];
    for (int i = 0; i < 10; i++) {
        t[i] = xs_transaction_start(d5);
        ck_assert_uint_ne(t[i], XBT_NULL);
    }
    errno = 0;
    ck_assert_uint_eq(xs_transaction_start(d5), XBT_NULL);
    ck_assert_int_eq(errno, ENOSPC);
    for (int i = 0; i < 10; i++) {
        ck_assert(xs_transaction_end(d5, t[i], true));
    }
    xs_close(d5);
    xs_close(c);
}
END_TEST

static Suite *libxs_suite(void)
{
    Suite *s = suite_create("xenstored-libxs");
    TCase *tc = tcase_create("libxenstore");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_counter_contention);
    tcase_add_test(tc, test_conflict);
    tcase_add_test(tc, test_watches);
    tcase_add_test(tc, test_big_directory);
    tcase_add_test(tc, test_domain_permissions);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(libxs_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
