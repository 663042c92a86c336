/*
 * tests/unit/test-block-nbd-client.c — the nbd driver's concurrency,
 * request timeout and QEMU option form (block/nbd.c, block/options.c):
 * servers that stop answering (a Python oldstyle server that never
 * replies, nbdkit's delay filter), 16 reads a server answers only once
 * all are in (last first), 64 requests in flight against an nbdkit whose
 * answers come back out of order, and server.* options
 * against qemu-nbd and diskdm-nbd with every error they can draw.
 */
#include "tests/unit/block-test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>

#define IMG_SIZE (4 << 20)

static char *dir, *img;
/* Every server pid a test started, for main to stop whatever a failed
 * test left running. */
static char pid_list[PATH_MAX];

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

static const char *build_dir(void)
{
    const char *b = getenv("BUILD");
    return b ? b : "build";
}

/* Whether pid still runs (a zombie waiting for init to reap it does not). */
static bool alive(int pid)
{
    char path[64], stat[256];
    if (kill(pid, 0) != 0) {
        return false;
    }
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return false;
    }
    size_t n = fread(stat, 1, sizeof(stat) - 1, f);
    fclose(f);
    stat[n] = 0;
    const char *p = strrchr(stat, ')');
    return !(p && p[1] == ' ' && p[2] == 'Z');
}

/* Run a shell command that starts a server writing dir/NAME.pid, and wait
 * for the pid file (written once the server listens). */
static void server_start(const char *name, const char *fmt, ...)
{
    char cmd[4096], pid[PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    /* Servers keep no descriptor of ours (a pipe reader would wait). */
    char full[4200];
    snprintf(full, sizeof(full), "exec </dev/null >/dev/null 2>>%s/%s.log; %s", dir, name,
             cmd);
    ck_assert_msg(system(full) == 0, "could not start %s: %s", name, cmd);
    snprintf(pid, sizeof(pid), "%s/%s.pid", dir, name);
    for (int i = 0; i < 200 && access(pid, F_OK) != 0; i++) {
        usleep(25000);
    }
    ck_assert_msg(access(pid, F_OK) == 0, "%s did not start: %s", name, cmd);
    FILE *f = fopen(pid, "r"), *l = fopen(pid_list, "a");
    int n = 0;
    if (f && l && fscanf(f, "%d", &n) == 1) {
        fprintf(l, "%d\n", n);
    }
    if (f) {
        fclose(f);
    }
    if (l) {
        fclose(l);
    }
}

/* Stop what the tests left running (a failed test skips its own stop). */
static void stop_leftovers(void)
{
    FILE *l = fopen(pid_list, "r");
    int pid;
    while (l && fscanf(l, "%d", &pid) == 1) {
        if (pid > 1 && alive(pid) && kill(pid, SIGTERM) == 0) {
            usleep(100000);
            kill(pid, SIGKILL);
        }
    }
    if (l) {
        fclose(l);
    }
    unlink(pid_list);
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
    for (int i = 0; i < 200 && alive(pid); i++) {
        usleep(25000);
    }
    if (alive(pid)) {
        kill(pid, SIGKILL);
    }
    unlink(path);
}

/*
 * A server that stops answering without closing: it takes connections
 * and, in mode "oldstyle", sends an oldstyle handshake for a 1 MiB
 * writable export and then never reads or replies; in mode "mute" it
 * sends nothing at all.
 */
static const char hostile_py[] =
    "import os, socket, struct, sys, time\n"
    "sock, pidfile, mode = sys.argv[1:4]\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.bind(sock)\n"
    "s.listen(8)\n"
    "with open(pidfile + '.tmp', 'w') as f:\n"
    "    f.write(str(os.getpid()))\n"
    "os.rename(pidfile + '.tmp', pidfile)\n"
    "held = []\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    held.append(c)\n"
    "    if mode in ('oldstyle', 'gather'):\n"
    "        c.sendall(b'NBDMAGIC' + struct.pack('>QQI', 0x00420281861253, 1 << 20, 5)\n"
    "                  + bytes(124))\n"
    "    if mode != 'gather':\n"
    "        continue\n"
    "    # answer nothing until 16 reads are in, then all of them, last first\n"
    "    f = c.makefile('rb')\n"
    "    got = []\n"
    "    while True:\n"
    "        hdr = f.read(28)\n"
    "        if len(hdr) < 28:\n"
    "            break\n"
    "        magic, flags, typ, handle, off, n = struct.unpack('>IHHQQI', hdr)\n"
    "        if typ == 2:\n"
    "            break\n"
    "        got.append((handle, off, n))\n"
    "        if len(got) < 16:\n"
    "            continue\n"
    "        for handle, off, n in reversed(got):\n"
    "            data = bytes(((off + i) * 7 + 3) & 255 for i in range(n))\n"
    "            c.sendall(struct.pack('>IIQ', 0x67446698, 0, handle) + data)\n"
    "        got = []\n"
    "    c.close()\n";

static void hostile_start(const char *mode)
{
    char py[PATH_MAX];
    snprintf(py, sizeof(py), "%s/hostile.py", dir);
    FILE *f = fopen(py, "w");
    ck_assert_ptr_nonnull(f);
    fputs(hostile_py, f);
    fclose(f);
    server_start("h", "python3 %s %s/h.sock %s/h.pid %s &",
                 py, dir, dir, mode);
}

/* How many lines of `path` contain `needle`. */
static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return 0;
    }
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        n += strstr(line, needle) != NULL;
    }
    fclose(f);
    return n;
}

/* The node gives up on a silent server: the request fails ETIMEDOUT, later
 * ones EIO at once, the message naming the server is logged once, and
 * closing does not wait for the server. */
static void expect_timeout(struct bdrv_node *bs, const char *log, const char *server)
{
    uint8_t buf[4096];
    ck_assert_int_eq(bdrv_pread(bs, 0, buf, sizeof(buf)), -ETIMEDOUT);
    ck_assert_int_eq(bdrv_pread(bs, 4096, buf, sizeof(buf)), -EIO);
    ck_assert_int_eq(bdrv_pread(bs, 0, buf, sizeof(buf)), -EIO);
    if (!bdrv_is_read_only(bs)) {
        memset(buf, 0x5a, sizeof(buf));
        ck_assert_int_eq(bdrv_pwrite(bs, 0, buf, sizeof(buf), 0), -EIO);
    }
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "NBD server %s did not answer within", server);
    ck_assert_int_eq(count_lines(log, want), 1);
    bdrv_unref(bs);
}

START_TEST(test_timeout_silent_server)
{
    char log[PATH_MAX], name[PATH_MAX + 32];
    snprintf(log, sizeof(log), "%s/log", dir);
    ck_assert_int_eq(log_set_file(log), 0);
    hostile_start("oldstyle");
    struct bdrv_node *bs = bt_open_ok(
        "driver=nbd,filename=nbd+unix:///?socket=%s/h.sock&timeout=1", dir);
    snprintf(name, sizeof(name), "nbd+unix://?socket=%s/h.sock", dir);
    ck_assert_str_eq(bdrv_filename(bs), name);
    ck_assert_int_eq(bdrv_getlength(bs), 1 << 20);
    expect_timeout(bs, log, name);
    server_stop("h");
}
END_TEST

/* The same through the option form, and a write that is never answered. */
START_TEST(test_timeout_option_form_write)
{
    char log[PATH_MAX], name[PATH_MAX + 32];
    snprintf(log, sizeof(log), "%s/log", dir);
    ck_assert_int_eq(log_set_file(log), 0);
    hostile_start("oldstyle");
    struct bdrv_node *bs = bt_open_ok(
        "driver=nbd,server.type=unix,server.path=%s/h.sock,timeout=1.5", dir);
    snprintf(name, sizeof(name), "nbd+unix://?socket=%s/h.sock", dir);
    ck_assert_str_eq(bdrv_filename(bs), name);
    uint8_t buf[65536];
    memset(buf, 1, sizeof(buf));
    ck_assert_int_eq(bdrv_pwrite(bs, 0, buf, sizeof(buf), 0), -ETIMEDOUT);
    ck_assert_int_eq(bdrv_flush(bs), -EIO);
    ck_assert_int_eq(bdrv_pread(bs, 0, buf, 512), -EIO);
    snprintf(name + strlen(name), sizeof(name) - strlen(name), " did not answer");
    ck_assert_int_eq(count_lines(log, name), 1);
    bdrv_unref(bs);
    server_stop("h");
}
END_TEST

/* Many callers waiting on the silent server all return, one ETIMEDOUT at
 * least and the rest ETIMEDOUT or EIO. */
struct waiter {
    struct bdrv_node *bs;
    int idx, ret;
};

static void *waiter_run(void *opaque)
{
    struct waiter *w = opaque;
    uint8_t buf[4096];
    w->ret = bdrv_pread(w->bs, (uint64_t)w->idx * 4096, buf, sizeof(buf));
    return NULL;
}

/* A read whose data must be the image pattern (seed 3); ret -EILSEQ if not. */
static void *waiter_check_run(void *opaque)
{
    struct waiter *w = opaque;
    uint8_t buf[4096];
    uint64_t off = (uint64_t)w->idx * 4096;
    w->ret = bdrv_pread(w->bs, off, buf, sizeof(buf));
    for (size_t i = 0; w->ret == 0 && i < sizeof(buf); i++) {
        if (buf[i] != (uint8_t)((off + i) * 7 + 3)) {
            w->ret = -EILSEQ;
        }
    }
    return NULL;
}

START_TEST(test_timeout_many_waiting)
{
    char log[PATH_MAX];
    snprintf(log, sizeof(log), "%s/log", dir);
    ck_assert_int_eq(log_set_file(log), 0);
    hostile_start("oldstyle");
    struct bdrv_node *bs = bt_open_ok(
        "driver=nbd,filename=nbd+unix:///?socket=%s/h.sock&timeout=1", dir);
    struct waiter w[16];
    pthread_t th[16];
    for (int i = 0; i < 16; i++) {
        w[i] = (struct waiter){ .bs = bs, .idx = i };
        ck_assert_int_eq(pthread_create(&th[i], NULL, waiter_run, &w[i]), 0);
    }
    int timed_out = 0;
    for (int i = 0; i < 16; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(w[i].ret == -ETIMEDOUT || w[i].ret == -EIO, "ret %d", w[i].ret);
        timed_out += w[i].ret == -ETIMEDOUT;
    }
    ck_assert_int_ge(timed_out, 1);
    ck_assert_int_eq(count_lines(log, "did not answer within"), 1);
    bdrv_unref(bs);
    server_stop("h");
}
END_TEST

/*
 * A server that answers nothing until 16 reads have arrived, then answers
 * them last first: only a client with the 16 in flight at once gets its
 * data (one that sends a request at a time times out), and each reply
 * must land in its own caller's buffer.
 */
START_TEST(test_sixteen_in_flight_reversed)
{
    hostile_start("gather");
    struct bdrv_node *bs = bt_open_ok(
        "driver=nbd,filename=nbd+unix:///?socket=%s/h.sock&timeout=20", dir);
    struct waiter w[16];
    pthread_t th[16];
    for (int i = 0; i < 16; i++) {
        w[i] = (struct waiter){ .bs = bs, .idx = i * 3 };
        ck_assert_int_eq(pthread_create(&th[i], NULL, waiter_check_run, &w[i]), 0);
    }
    for (int i = 0; i < 16; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(w[i].ret == 0, "read %d: %d", i, w[i].ret);
    }
    bdrv_unref(bs);
    server_stop("h");
}
END_TEST

/* nbdkit answering reads after a minute: same outcome over newstyle. */
START_TEST(test_timeout_nbdkit_delay)
{
    char log[PATH_MAX], name[PATH_MAX + 32];
    snprintf(log, sizeof(log), "%s/log", dir);
    ck_assert_int_eq(log_set_file(log), 0);
    server_start("k", "nbdkit -U %s/k.sock -P %s/k.pid --filter=delay memory 1M "
                 "delay-read=60 delay-write=60", dir, dir);
    struct bdrv_node *bs = bt_open_ok(
        "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=%s/k.sock,"
        "file.timeout=1", dir);
    snprintf(name, sizeof(name), "nbd+unix://?socket=%s/k.sock", dir);
    ck_assert_str_eq(bdrv_filename(bdrv_file_child(bs)), name);
    expect_timeout(bs, log, name);
    server_stop("k");
}
END_TEST

/* A server that takes the connection and never says a word: the open
 * fails with ETIMEDOUT instead of hanging. */
START_TEST(test_handshake_timeout)
{
    hostile_start("mute");
    char uri[PATH_MAX + 64];
    snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s/h.sock&timeout=1", dir);
    int errnum = 0;
    char *msg = bt_open_fail("driver=nbd,filename=%s", uri, &errnum);
    char want[PATH_MAX * 2];
    snprintf(want, sizeof(want), "Could not open 'nbd+unix:///?socket=%s/h.sock': the "
             "server did not finish the handshake within 1 s", dir);
    ck_assert_str_eq(msg, want);
    ck_assert_int_eq(errnum, ETIMEDOUT);
    free(msg);
    server_stop("h");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Many requests in flight                                              */
/* ------------------------------------------------------------------ */

#define NTHREADS 64
#define REGION (IMG_SIZE / NTHREADS)

struct worker {
    struct bdrv_node *bs;
    int idx;
    int failures;
};

static bool region_ok(const uint8_t *buf, uint64_t off, size_t len, int seed)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != (uint8_t)((off + i) * 7 + seed)) {
            return false;
        }
    }
    return true;
}

/* Each worker owns one region: reads it in pieces of varied size, then
 * (every fourth worker) rewrites it with another pattern and reads back. */
static void *worker_run(void *opaque)
{
    struct worker *w = opaque;
    uint64_t base = (uint64_t)w->idx * REGION;
    uint8_t *buf = malloc(REGION);
    for (uint64_t off = 0; off < REGION;) {
        size_t n = MIN((size_t)(4096 << (w->idx + off / 4096) % 4), (size_t)(REGION - off));
        if (bdrv_pread(w->bs, base + off, buf, n) < 0 || !region_ok(buf, base + off, n, 3)) {
            w->failures++;
        }
        off += n;
    }
    if (w->idx % 4 == 0) {
        for (size_t i = 0; i < REGION; i++) {
            buf[i] = (uint8_t)((base + i) * 7 + 11);
        }
        if (bdrv_pwrite(w->bs, base, buf, REGION, 0) < 0) {
            w->failures++;
        }
        memset(buf, 0, REGION);
        if (bdrv_pread(w->bs, base, buf, REGION) < 0 || !region_ok(buf, base, REGION, 11)) {
            w->failures++;
        }
    }
    free(buf);
    return NULL;
}

static void run_workers(struct bdrv_node *bs)
{
    struct worker w[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){ .bs = bs, .idx = i };
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(w[i].failures == 0, "worker %d: %d failures", i, w[i].failures);
    }
}

/*
 * 64 callers at once against an nbdkit whose every request sleeps a time
 * that depends on its offset, run in parallel: replies come back out of
 * order and each must land in its own caller's buffer.
 */
START_TEST(test_concurrent_out_of_order)
{
    server_start("k", "nbdkit -U %s/k.sock -P %s/k.pid eval "
                 "thread_model='echo parallel' "
                 "get_size='echo %d' "
                 "can_write='exit 0' "
                 "pread='sleep 0.0$(( ($4 / 4096) %% 7 )); "
                 "dd if=%s skip=$4 count=$3 iflag=skip_bytes,count_bytes status=none' "
                 "pwrite='sleep 0.0$(( ($4 / 4096) %% 5 )); "
                 "dd of=%s seek=$4 oflag=seek_bytes conv=notrunc status=none'",
                 dir, dir, IMG_SIZE, img, img);
    struct bdrv_node *bs = bt_open_ok("driver=nbd,filename=nbd+unix:///?socket=%s/k.sock",
                                      dir);
    run_workers(bs);
    /* Every fourth region now holds the second pattern, the file too. */
    uint8_t buf[4096];
    ck_assert_int_eq(bdrv_pread(bs, 4 * REGION, buf, sizeof(buf)), 0);
    ck_assert(region_ok(buf, 4 * REGION, sizeof(buf), 11));
    ck_assert_int_eq(bdrv_pread(bs, 5 * REGION, buf, sizeof(buf)), 0);
    ck_assert(region_ok(buf, 5 * REGION, sizeof(buf), 3));
    bdrv_unref(bs);
    server_stop("k");
    FILE *f = fopen(img, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 8 * REGION + 100, SEEK_SET), 0);
    ck_assert_int_eq(fread(buf, 1, 16, f), 16);
    fclose(f);
    ck_assert(region_ok(buf, 8 * REGION + 100, 16, 11));
}
END_TEST

/* A request larger than the server's maximum goes out as several
 * commands at once (nbdkit's blocksize filter caps requests at 64 KiB). */
START_TEST(test_split_request)
{
    server_start("k", "nbdkit -U %s/k.sock -P %s/k.pid --filter=blocksize-policy file %s "
                 "blocksize-maximum=65536 blocksize-preferred=4096 blocksize-minimum=512 "
                 "blocksize-error-policy=error", dir, dir, img);
    struct bdrv_node *bs = bt_open_ok("driver=nbd,filename=nbd+unix:///?socket=%s/k.sock",
                                      dir);
    uint8_t *buf = malloc(1 << 20);
    ck_assert_int_eq(bdrv_pread(bs, 65536, buf, 1 << 20), 0);
    ck_assert(region_ok(buf, 65536, 1 << 20, 3));
    for (size_t i = 0; i < (1 << 20); i++) {
        buf[i] = (uint8_t)((65536 + i) * 7 + 9);
    }
    ck_assert_int_eq(bdrv_pwrite(bs, 65536, buf, 1 << 20, 0), 0);
    memset(buf, 0, 1 << 20);
    ck_assert_int_eq(bdrv_pread(bs, 65536, buf, 1 << 20), 0);
    ck_assert(region_ok(buf, 65536, 1 << 20, 9));
    free(buf);
    bdrv_unref(bs);
    server_stop("k");
}
END_TEST

/* ------------------------------------------------------------------ */
/* The server.* option form                                             */
/* ------------------------------------------------------------------ */

/* A TCP port nothing listens on right now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Open `opts` and `uri`: same node name, same data. */
static void same_as_uri(const char *opts, const char *uri, const char *want_name)
{
    struct bdrv_node *a = bt_open_ok("%s", opts);
    char *s = NULL;
    ck_assert_int_ge(asprintf(&s, "driver=nbd,filename=%s", uri), 0);
    struct bdrv_node *b = bt_open_ok("%s", s);
    free(s);
    ck_assert_str_eq(bdrv_driver_name(a), "nbd");
    ck_assert_str_eq(bdrv_filename(a), bdrv_filename(b));
    ck_assert_str_eq(bdrv_filename(a), want_name);
    ck_assert_int_eq(bdrv_getlength(a), IMG_SIZE);
    uint8_t buf[8192];
    ck_assert_int_eq(bdrv_pread(a, 12345 & ~511, buf, sizeof(buf)), 0);
    ck_assert(region_ok(buf, 12345 & ~511, sizeof(buf), 3));
    bdrv_unref(a);
    bdrv_unref(b);
}

static void option_form_against(const char *server)
{
    int port = free_port();
    char tcp[64];
    snprintf(tcp, sizeof(tcp), "%d", port);
    if (!strcmp(server, "qemu-nbd")) {
        server_start("u", "qemu-nbd -r -t -e 4 -f raw -x exp -k %s/u.sock --fork "
                     "--pid-file=%s/u.pid %s", dir, dir, img);
        server_start("t", "qemu-nbd -r -t -e 4 -f raw -x exp -b 127.0.0.1 -p %d --fork "
                     "--pid-file=%s/t.pid %s", port, dir, img);
    } else {
        server_start("u", "%s/diskdm-nbd -r -t -e 4 -f raw -x exp -k %s/u.sock --fork "
                     "--pid-file=%s/u.pid %s", build_dir(), dir, dir, img);
        server_start("t", "%s/diskdm-nbd -r -t -e 4 -f raw -x exp -b 127.0.0.1 -p %d --fork "
                     "--pid-file=%s/t.pid %s", build_dir(), port, dir, img);
    }
    char opts[PATH_MAX * 2], uri[PATH_MAX * 2], name[PATH_MAX * 2];
    snprintf(opts, sizeof(opts), "driver=nbd,server.type=unix,server.path=%s/u.sock,"
             "export=exp,read-only=on", dir);
    snprintf(uri, sizeof(uri), "nbd+unix:///exp?socket=%s/u.sock,read-only=on", dir);
    snprintf(name, sizeof(name), "nbd+unix:///exp?socket=%s/u.sock", dir);
    same_as_uri(opts, uri, name);
    snprintf(opts, sizeof(opts), "driver=nbd,server.type=inet,server.host=127.0.0.1,"
             "server.port=%d,export=exp,read-only=on,timeout=5", port);
    snprintf(uri, sizeof(uri), "nbd://127.0.0.1:%d/exp,read-only=on", port);
    snprintf(name, sizeof(name), "nbd://127.0.0.1:%d/exp", port);
    same_as_uri(opts, uri, name);

    /* Under a format node, the format probed over the NBD child. */
    struct bdrv_node *bs = bt_open_ok("file.driver=nbd,file.server.type=unix,"
                                      "file.server.path=%s/u.sock,file.export=exp,"
                                      "read-only=on", dir);
    ck_assert_str_eq(bdrv_driver_name(bs), "raw");
    snprintf(name, sizeof(name), "nbd+unix:///exp?socket=%s/u.sock", dir);
    ck_assert_str_eq(bdrv_filename(bdrv_file_child(bs)), name);
    bdrv_unref(bs);
    server_stop("t");
    server_stop("u");
}

START_TEST(test_option_form_qemu_nbd)
{
    option_form_against("qemu-nbd");
}
END_TEST

START_TEST(test_option_form_diskdm_nbd)
{
    option_form_against("diskdm-nbd");
}
END_TEST

/* The node name matches what qemu-img prints for the option form. */
START_TEST(test_option_form_name_like_qemu)
{
    server_start("u", "qemu-nbd -r -t -f raw -k %s/u.sock --fork --pid-file=%s/u.pid %s",
                 dir, dir, img);
    char cmd[PATH_MAX * 2], line[PATH_MAX * 2];
    snprintf(cmd, sizeof(cmd), "qemu-img info --image-opts "
             "driver=nbd,server.type=unix,server.path=%s/u.sock", dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), p));
    pclose(p);
    line[strcspn(line, "\n")] = 0;
    struct bdrv_node *bs = bt_open_ok("driver=nbd,server.type=unix,server.path=%s/u.sock,"
                                      "read-only=on", dir);
    ck_assert_str_eq(line + strlen("image: "), bdrv_filename(bs));
    bdrv_unref(bs);
    server_stop("u");
}
END_TEST

/* Every combination the option parser refuses, with its message. */
START_TEST(test_option_form_errors)
{
    static const struct {
        const char *opts, *msg;
    } cases[] = {
        { "driver=nbd,server.type=unix,export=e",
          "Parameter 'server.path' is missing" },
        { "driver=nbd,server.type=unix,server.path=",
          "Parameter 'server.path' is missing" },
        { "driver=nbd,server.type=inet,export=e",
          "Parameter 'server.host' is missing" },
        { "driver=nbd,server.type=vsock,server.path=/x",
          "Parameter 'server.type' expects one of unix, inet: 'vsock'" },
        { "driver=nbd,server.path=/x",
          "Parameter 'server.type' is missing" },
        { "driver=nbd,export=e",
          "Parameter 'server.type' is missing" },
        { "driver=nbd,server.type=inet,server.host=h,server.port=abc",
          "Parameter 'server.port' expects a port number (1-65535): 'abc'" },
        { "driver=nbd,server.type=inet,server.host=h,server.port=0",
          "Parameter 'server.port' expects a port number (1-65535): '0'" },
        { "driver=nbd,server.type=inet,server.host=h,server.port=65536",
          "Parameter 'server.port' expects a port number (1-65535): '65536'" },
        { "driver=nbd,server.type=inet,server.host=h,server.port=-1",
          "Parameter 'server.port' expects a port number (1-65535): '-1'" },
        { "driver=nbd,server.type=unix,server.path=/x,server.host=h",
          "Parameter 'server.host' is not valid with server.type=unix" },
        { "driver=nbd,server.type=unix,server.path=/x,server.port=1",
          "Parameter 'server.port' is not valid with server.type=unix" },
        { "driver=nbd,server.type=inet,server.host=h,server.path=/x",
          "Parameter 'server.path' is not valid with server.type=inet" },
        { "driver=nbd,filename=nbd://h/e,server.type=unix,server.path=/x",
          "An NBD URI ('filename') cannot be combined with 'server.*'" },
        { "driver=nbd,filename=nbd://h/e,export=e",
          "An NBD URI ('filename') cannot be combined with 'export'" },
        { "driver=raw,file.driver=nbd,file.filename=nbd://h/e,file.server.type=inet",
          "An NBD URI ('file.filename') cannot be combined with 'file.server.*'" },
        { "driver=raw,server.type=unix,server.path=/x",
          "Block driver 'raw' does not support the option 'server.type'" },
        { "driver=file,filename=/x,timeout=1",
          "Block driver 'file' does not support the option 'timeout'" },
        { "filename=/x,timeout=1",
          "Parameter 'timeout' needs an NBD export (an nbd:// URI or server.* options)" },
        { "driver=raw,file.driver=nbd,file.server.type=tcp,file.server.host=h",
          "Parameter 'file.server.type' expects one of unix, inet: 'tcp'" },
        { "driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=h,"
          "file.server.port=x1",
          "Parameter 'file.server.port' expects a port number (1-65535): 'x1'" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct bdrv_open_opts o;
        struct error *err = NULL;
        ck_assert_msg(bdrv_open_opts_parse(cases[i].opts, &o, &err) < 0,
                      "'%s' was accepted", cases[i].opts);
        ck_assert_ptr_nonnull(err);
        ck_assert_msg(!strcmp(err->msg, cases[i].msg), "'%s': got '%s', want '%s'",
                      cases[i].opts, err->msg, cases[i].msg);
        error_free(err);
    }
}
END_TEST

/* Open what a -drive spec names, as diskdm does. */
static struct bdrv_node *open_drive(const char *drive)
{
    struct disk_spec spec;
    struct bdrv_open_opts o;
    struct error *err = NULL;
    ck_assert_msg(disk_spec_parse_drive(drive, &spec, &err) == 0, "%s: %s", drive,
                  err ? err->msg : "?");
    ck_assert_int_eq(bdrv_open_opts_from_spec(&spec, &o, &err), 0);
    struct bdrv_node *bs = bdrv_open(&o, &err);
    ck_assert_msg(bs != NULL, "%s: %s", drive, err ? err->msg : "?");
    bdrv_open_opts_free(&o);
    disk_spec_free(&spec);
    return bs;
}

/* -drive takes the same keys: driver=nbd with server.*, or under file. */
START_TEST(test_drive_option_form)
{
    int port = free_port();
    server_start("u", "%s/diskdm-nbd -t -e 4 -f raw -x exp -k %s/u.sock --fork "
                 "--pid-file=%s/u.pid %s", build_dir(), dir, dir, img);
    /* a copy: the read-write server holds the image's write lock */
    char *img2 = bt_image(dir, "copy.raw", IMG_SIZE, 3);
    server_start("t", "qemu-nbd -r -t -e 4 -f raw -x exp -b 127.0.0.1 -p %d --fork "
                 "--pid-file=%s/t.pid %s", port, dir, img2);
    free(img2);
    char drive[PATH_MAX * 2], name[PATH_MAX * 2];
    snprintf(name, sizeof(name), "nbd+unix:///exp?socket=%s/u.sock", dir);

    snprintf(drive, sizeof(drive), "driver=nbd,server.type=unix,server.path=%s/u.sock,"
             "export=exp,if=virtio,timeout=5", dir);
    struct bdrv_node *bs = open_drive(drive);
    ck_assert_str_eq(bdrv_driver_name(bs), "nbd");
    ck_assert_str_eq(bdrv_filename(bs), name);
    ck_assert(!bdrv_is_read_only(bs));
    uint8_t buf[4096];
    ck_assert_int_eq(bdrv_pread(bs, 4096, buf, sizeof(buf)), 0);
    ck_assert(region_ok(buf, 4096, sizeof(buf), 3));
    bdrv_unref(bs);

    snprintf(drive, sizeof(drive), "format=raw,file.driver=nbd,file.server.type=unix,"
             "file.server.path=%s/u.sock,file.export=exp,read-only=on", dir);
    bs = open_drive(drive);
    ck_assert_str_eq(bdrv_driver_name(bs), "raw");
    ck_assert_str_eq(bdrv_filename(bdrv_file_child(bs)), name);
    ck_assert(bdrv_is_read_only(bs));
    bdrv_unref(bs);

    snprintf(drive, sizeof(drive), "file.server.type=inet,file.server.host=127.0.0.1,"
             "file.server.port=%d,file.export=exp,auto-read-only=on", port);
    bs = open_drive(drive);
    snprintf(name, sizeof(name), "nbd://127.0.0.1:%d/exp", port);
    ck_assert_str_eq(bdrv_filename(bdrv_file_child(bs)), name);
    ck_assert(bdrv_is_read_only(bs));   /* qemu-nbd -r: degraded */
    ck_assert_int_eq(bdrv_pread(bs, 8192, buf, sizeof(buf)), 0);
    ck_assert(region_ok(buf, 8192, sizeof(buf), 3));
    bdrv_unref(bs);

    /* timeout on a URI given as the file */
    snprintf(drive, sizeof(drive), "file=nbd+unix:///exp?socket=%s/u.sock,timeout=3", dir);
    bs = open_drive(drive);
    snprintf(name, sizeof(name), "nbd+unix:///exp?socket=%s/u.sock", dir);
    ck_assert_str_eq(bdrv_filename(bdrv_file_child(bs)), name);
    bdrv_unref(bs);
    server_stop("t");
    server_stop("u");
}
END_TEST

START_TEST(test_drive_option_form_errors)
{
    static const struct {
        const char *drive, *msg;
    } cases[] = {
        { "driver=nbd,server.type=unix", "Parameter 'server.path' is missing" },
        { "driver=nbd,server.type=inet,server.host=h,server.port=x",
          "Parameter 'server.port' expects a port number (1-65535): 'x'" },
        { "file.server.type=ipx,file.server.path=/x",
          "Parameter 'file.server.type' expects one of unix, inet: 'ipx'" },
        { "file=a.img,server.type=unix,server.path=/x",
          "'file' cannot be combined with 'server.*' or 'export'" },
        { "driver=nbd,format=raw,server.type=unix,server.path=/x",
          "Cannot specify both 'driver' and 'format'" },
        { "driver=raw,file=a.img", "Parameter 'driver' expects 'nbd' (the format is "
          "format=): 'raw'" },
        { "server.type=unix,file.server.path=/x", "Invalid parameter 'file.server.path'" },
        { "file=a.img,timeout=3", "Parameter 'timeout' needs an NBD export (an nbd:// URI "
          "or server.* options)" },
        { "file=a.img,server.bogus=1", "Invalid parameter 'server.bogus'" },
        { "export=e", "Parameter 'server.type' is missing" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct disk_spec spec;
        struct error *err = NULL;
        ck_assert_msg(disk_spec_parse_drive(cases[i].drive, &spec, &err) < 0,
                      "'%s' was accepted", cases[i].drive);
        ck_assert_ptr_nonnull(err);
        ck_assert_msg(!strcmp(err->msg, cases[i].msg), "'%s': got '%s', want '%s'",
                      cases[i].drive, err->msg, cases[i].msg);
        error_free(err);
    }
}
END_TEST

/* A bad timeout is refused at open, in either form. */
START_TEST(test_bad_timeout)
{
    static const char *const bad[] = { "abc", "-1", "", "1e9", "nan", "2s" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char s[PATH_MAX + 128], want[128];
        snprintf(want, sizeof(want), "Parameter 'timeout' expects a number of seconds "
                 "(0 = no limit): '%s'", bad[i]);
        snprintf(s, sizeof(s), "driver=nbd,filename=nbd+unix:///?socket=%s/none.sock&"
                 "timeout=%s", dir, bad[i]);
        char *msg = bt_open_fail("%s", s, NULL);
        ck_assert_str_eq(msg, want);
        free(msg);
        if (!bad[i][0]) {
            continue;   /* an empty option value is the parser's business */
        }
        snprintf(s, sizeof(s), "driver=nbd,server.type=unix,server.path=%s/none.sock,"
                 "timeout=%s", dir, bad[i]);
        msg = bt_open_fail("%s", s, NULL);
        ck_assert_str_eq(msg, want);
        free(msg);
    }
}
END_TEST

/* timeout=0 means no limit: an answered request works as usual. */
START_TEST(test_timeout_zero)
{
    server_start("k", "nbdkit -r -U %s/k.sock -P %s/k.pid file %s", dir, dir, img);
    struct bdrv_node *bs = bt_open_ok(
        "driver=nbd,server.type=unix,server.path=%s/k.sock,timeout=0,read-only=on", dir);
    uint8_t buf[4096];
    ck_assert_int_eq(bdrv_pread(bs, 8192, buf, sizeof(buf)), 0);
    ck_assert(region_ok(buf, 8192, sizeof(buf), 3));
    bdrv_unref(bs);
    server_stop("k");
}
END_TEST

/* ------------------------------------------------------------------ */
/* reconnect-delay                                                      */
/* ------------------------------------------------------------------ */

#define RC_READERS 4

struct rc_reader {
    struct bdrv_node *bs;
    int idx;
    volatile int *stop;
    int reads, failures, first_err;
};

/* Read the reader's 64 KiB regions over and over, checking every byte,
 * until told to stop. */
static void *rc_reader_run(void *opaque)
{
    struct rc_reader *r = opaque;
    uint8_t buf[65536];
    for (int i = 0; !*r->stop || i < 32; i++) {
        uint64_t off = ((uint64_t)(i * RC_READERS + r->idx) * sizeof(buf)) % IMG_SIZE;
        int ret = bdrv_pread(r->bs, off, buf, sizeof(buf));
        if (ret < 0 || !region_ok(buf, off, sizeof(buf), 3)) {
            if (!r->failures++) {
                r->first_err = ret;
            }
        }
        r->reads++;
    }
    return NULL;
}

/*
 * The server (started by `cmd`, a format taking dir, dir, img) is
 * stopped and started again on the same socket while readers stream
 * reads through a node with reconnect-delay: every read returns the
 * image's data, and the node writes on the new connection.
 */
static void reconnect_during_reads(const char *cmd)
{
    char opts[PATH_MAX + 128];
    server_start("s", cmd, dir, dir, img);
    snprintf(opts, sizeof(opts), "driver=nbd,filename=nbd+unix:///?socket=%s/s.sock"
             "&reconnect-delay=20&timeout=20", dir);
    struct bdrv_node *bs = bt_open_ok("%s", opts);
    char name[PATH_MAX + 32];
    snprintf(name, sizeof(name), "nbd+unix://?socket=%s/s.sock", dir);
    ck_assert_str_eq(bdrv_filename(bs), name);
    volatile int stop = 0;
    struct rc_reader r[RC_READERS];
    pthread_t th[RC_READERS];
    for (int i = 0; i < RC_READERS; i++) {
        r[i] = (struct rc_reader){ .bs = bs, .idx = i, .stop = &stop };
        ck_assert_int_eq(pthread_create(&th[i], NULL, rc_reader_run, &r[i]), 0);
    }
    for (int round = 0; round < 1; round++) {
        usleep(100000);
        server_stop("s");
        usleep(200000);     /* requests meanwhile wait */
        server_start("s", cmd, dir, dir, img);
    }
    stop = 1;
    for (int i = 0; i < RC_READERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(r[i].failures == 0, "reader %d: %d of %d reads failed (first %d)",
                      i, r[i].failures, r[i].reads, r[i].first_err);
    }
    uint8_t buf[4096];
    memset(buf, 0xa5, sizeof(buf));
    ck_assert_int_eq(bdrv_pwrite(bs, 8192, buf, sizeof(buf), 0), 0);
    ck_assert_int_eq(bdrv_flush(bs), 0);
    memset(buf, 0, sizeof(buf));
    ck_assert_int_eq(bdrv_pread(bs, 8192, buf, sizeof(buf)), 0);
    ck_assert_int_eq(buf[0], 0xa5);
    ck_assert_int_eq(buf[4095], 0xa5);
    bdrv_unref(bs);
    server_stop("s");
}

START_TEST(test_reconnect_diskdm_nbd)
{
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof(cmd), "%s/diskdm-nbd -t -e 8 -f raw -k %%s/s.sock --fork "
             "--pid-file=%%s/s.pid %%s", build_dir());
    reconnect_during_reads(cmd);
}
END_TEST

START_TEST(test_reconnect_qemu_nbd)
{
    reconnect_during_reads("qemu-nbd -t -e 8 -f raw -k %s/s.sock --fork "
                           "--pid-file=%s/s.pid %s");
}
END_TEST

/* Start diskdm-nbd on dir/s.sock with extra options, for file f. */
static void rc_server(const char *extra, const char *f)
{
    server_start("s", "%s/diskdm-nbd -t %s -f raw -k %s/s.sock --fork --pid-file=%s/s.pid %s",
                 build_dir(), extra, dir, dir, f);
}

/* Without reconnect-delay (or with 0) a restarted server does not help:
 * the first request after the drop and every later one fail with EIO. */
START_TEST(test_reconnect_delay_zero)
{
    static const char *const q[] = { "", "&reconnect-delay=0" };
    for (size_t i = 0; i < ARRAY_SIZE(q); i++) {
        char opts[PATH_MAX + 128];
        uint8_t buf[4096];
        rc_server("", img);
        snprintf(opts, sizeof(opts),
                 "driver=nbd,filename=nbd+unix:///?socket=%s/s.sock%s", dir, q[i]);
        struct bdrv_node *bs = bt_open_ok("%s", opts);
        ck_assert_int_eq(bdrv_pread(bs, 0, buf, sizeof(buf)), 0);
        server_stop("s");
        rc_server("", img);
        ck_assert_int_eq(bdrv_pread(bs, 0, buf, sizeof(buf)), -EIO);
        ck_assert_int_eq(bdrv_pread(bs, 0, buf, sizeof(buf)), -EIO);
        bdrv_unref(bs);
        server_stop("s");
    }
}
END_TEST

/*
 * The export is not the one the node opened after the restart: another
 * size, or read-only under a writable node. The error is logged once and
 * requests fail with EIO, also once the right export is back.
 */
static void reconnect_changed(const char *extra, const char *file, const char *want_fmt)
{
    char log[PATH_MAX], opts[PATH_MAX + 128], want[PATH_MAX + 256];
    uint8_t buf[4096];
    snprintf(log, sizeof(log), "%s/log", dir);
    unlink(log);
    ck_assert_int_eq(log_set_file(log), 0);
    rc_server("", img);
    snprintf(opts, sizeof(opts),
             "driver=nbd,filename=nbd+unix:///?socket=%s/s.sock&reconnect-delay=10", dir);
    struct bdrv_node *bs = bt_open_ok("%s", opts);
    ck_assert_int_eq(bdrv_pread(bs, 0, buf, sizeof(buf)), 0);
    server_stop("s");
    rc_server(extra, file);
    ck_assert_int_eq(bdrv_pread(bs, 0, buf, sizeof(buf)), -EIO);
    server_stop("s");
    rc_server("", img);
    ck_assert_int_eq(bdrv_pread(bs, 0, buf, sizeof(buf)), -EIO);
    snprintf(want, sizeof(want), want_fmt, dir);
    ck_assert_int_eq(count_lines(log, want), 1);
    bdrv_unref(bs);
    server_stop("s");
}

START_TEST(test_reconnect_size_changed)
{
    char *small = bt_image(dir, "small.raw", IMG_SIZE / 2, 3);
    reconnect_changed("", small, "NBD server nbd+unix://?socket=%s/s.sock: the export is "
                      "2097152 bytes after reconnecting, the node 4194304; requests on "
                      "it fail");
    free(small);
}
END_TEST

START_TEST(test_reconnect_became_read_only)
{
    reconnect_changed("-r", img, "NBD server nbd+unix://?socket=%s/s.sock: the export is "
                      "read-only after reconnecting, the node writable; requests on it "
                      "fail");
}
END_TEST

/* A server that does not come back: requests fail with EIO once
 * reconnect-delay has passed, and the option form works alike. */
START_TEST(test_reconnect_server_gone)
{
    char opts[PATH_MAX + 128];
    uint8_t buf[4096];
    rc_server("", img);
    snprintf(opts, sizeof(opts), "driver=nbd,server.type=unix,server.path=%s/s.sock,"
             "reconnect-delay=0.5", dir);
    struct bdrv_node *bs = bt_open_ok("%s", opts);
    char name[PATH_MAX + 32];
    snprintf(name, sizeof(name), "nbd+unix://?socket=%s/s.sock", dir);
    ck_assert_str_eq(bdrv_filename(bs), name);
    ck_assert_int_eq(bdrv_pread(bs, 0, buf, sizeof(buf)), 0);
    server_stop("s");
    ck_assert_int_eq(bdrv_pread(bs, 0, buf, sizeof(buf)), -EIO);
    ck_assert_int_eq(bdrv_pwrite(bs, 0, buf, sizeof(buf), 0), -EIO);
    bdrv_unref(bs);
}
END_TEST

/* -drive takes reconnect-delay too, with a URI as the file and with
 * server.*: a read after the server restarted returns the data. */
START_TEST(test_reconnect_drive)
{
    char drive[2][PATH_MAX + 128];
    snprintf(drive[0], sizeof(drive[0]), "file=nbd+unix:///?socket=%s/s.sock,"
             "reconnect-delay=10,format=raw", dir);
    snprintf(drive[1], sizeof(drive[1]), "driver=nbd,server.type=unix,"
             "server.path=%s/s.sock,reconnect-delay=10,timeout=10", dir);
    for (int i = 0; i < 2; i++) {
        uint8_t buf[4096];
        rc_server("", img);
        struct bdrv_node *bs = open_drive(drive[i]);
        ck_assert_int_eq(bdrv_pread(bs, 4096, buf, sizeof(buf)), 0);
        server_stop("s");
        rc_server("", img);
        memset(buf, 0, sizeof(buf));
        ck_assert_int_eq(bdrv_pread(bs, 4096, buf, sizeof(buf)), 0);
        ck_assert(region_ok(buf, 4096, sizeof(buf), 3));
        bdrv_unref(bs);
        server_stop("s");
    }
}
END_TEST

/* A bad reconnect-delay is refused at open, in either form. */
START_TEST(test_bad_reconnect_delay)
{
    static const char *const bad[] = { "abc", "-1", "1e9", "2s" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char s[PATH_MAX + 128], want[128];
        snprintf(want, sizeof(want), "Parameter 'reconnect-delay' expects a number of "
                 "seconds (0 = no reconnecting): '%s'", bad[i]);
        snprintf(s, sizeof(s), "driver=nbd,filename=nbd+unix:///?socket=%s/none.sock&"
                 "reconnect-delay=%s", dir, bad[i]);
        char *msg = bt_open_fail("%s", s, NULL);
        ck_assert_str_eq(msg, want);
        free(msg);
        snprintf(s, sizeof(s), "driver=nbd,server.type=unix,server.path=%s/none.sock,"
                 "reconnect-delay=%s", dir, bad[i]);
        msg = bt_open_fail("%s", s, NULL);
        ck_assert_str_eq(msg, want);
        free(msg);
    }
}
END_TEST

int main(void)
{
    log_init("test-block-nbd-client", LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("block-nbd-client");
    TCase *tc = tcase_create("nbd-client");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_timeout_silent_server);
    tcase_add_test(tc, test_timeout_option_form_write);
    tcase_add_test(tc, test_timeout_many_waiting);
    tcase_add_test(tc, test_sixteen_in_flight_reversed);
    tcase_add_test(tc, test_timeout_nbdkit_delay);
    tcase_add_test(tc, test_handshake_timeout);
    tcase_add_test(tc, test_concurrent_out_of_order);
    tcase_add_test(tc, test_split_request);
    tcase_add_test(tc, test_option_form_qemu_nbd);
    tcase_add_test(tc, test_option_form_diskdm_nbd);
    tcase_add_test(tc, test_option_form_name_like_qemu);
    tcase_add_test(tc, test_option_form_errors);
    tcase_add_test(tc, test_bad_timeout);
    tcase_add_test(tc, test_drive_option_form);
    tcase_add_test(tc, test_drive_option_form_errors);
    tcase_add_test(tc, test_timeout_zero);
    tcase_add_test(tc, test_reconnect_diskdm_nbd);
    tcase_add_test(tc, test_reconnect_qemu_nbd);
    tcase_add_test(tc, test_reconnect_delay_zero);
    tcase_add_test(tc, test_reconnect_size_changed);
    tcase_add_test(tc, test_reconnect_became_read_only);
    tcase_add_test(tc, test_reconnect_server_gone);
    tcase_add_test(tc, test_bad_reconnect_delay);
    tcase_add_test(tc, test_reconnect_drive);
    suite_add_tcase(s, tc);
    snprintf(pid_list, sizeof(pid_list), "/tmp/diskdm-nbd-client-%d.pids", (int)getpid());
    int ret = bt_run(s);
    stop_leftovers();
    return ret;
}
