/*
 * tests/unit/test-block-backend.c — the block backend: asynchronous
 * completion on the event loop, many requests in flight completing out of
 * order, error policies (report, ignore, stop, enospc), counters, writes
 * to a read-only backend, dynamic read-only, removable media.
 */
#include "tests/unit/block-test.h"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#define IMG_SIZE (1 << 20)

static char *dir, *img;
static struct event_loop *loop;

static void setup(void)
{
    dir = bt_tmpdir();
    img = bt_image(dir, "disk.raw", IMG_SIZE, 9);
    struct error *err = NULL;
    loop = ev_loop_new(&err);
    ck_assert_ptr_nonnull(loop);
}

static void teardown(void)
{
    ev_loop_free(loop);
    bt_rmtree(dir);
    free(img);
    free(dir);
}

static uint8_t pat(size_t i)
{
    return (uint8_t)(i * 7 + 9);
}

struct done {
    int calls;
    int ret;
    int order;          /* completion sequence number */
    int *seq;
    bool *in_submit;    /* set while the submitting call runs */
    bool called_in_submit;
};

static void done_cb(void *opaque, int ret)
{
    struct done *d = opaque;
    d->calls++;
    d->ret = ret;
    if (d->seq) {
        d->order = (*d->seq)++;
    }
    if (d->in_submit && *d->in_submit) {
        d->called_in_submit = true;
    }
}

static struct blk_backend *open_blk(const char *fmt, const struct blk_config *cfg,
                                    const struct bdrv_io_hooks *hooks)
{
    char s[PATH_MAX + 128];
    snprintf(s, sizeof(s), fmt, img);
    struct bdrv_open_opts o;
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_open_opts_parse(s, &o, &err), 0);
    o.io_hooks = hooks;
    struct blk_backend *blk = blk_open(loop, &o, cfg, &err);
    ck_assert_msg(blk != NULL, "blk_open: %s", err ? err->msg : "?");
    bdrv_open_opts_free(&o);
    return blk;
}

START_TEST(test_async_read_write)
{
    struct blk_backend *blk = open_blk("driver=raw,file.filename=%s", NULL, NULL);
    ck_assert_int_eq(blk_getlength(blk), IMG_SIZE);
    uint8_t buf[4096];
    bool in_submit = true;
    struct done d = { .in_submit = &in_submit };
    struct iovec iov = { buf, sizeof(buf) };
    ck_assert_int_eq(blk_aio_preadv(blk, 8192, &iov, 1, done_cb, &d), 0);
    in_submit = false;
    ck_assert_int_eq(d.calls, 0);    /* never from inside the submit */
    blk_drain(blk);
    ck_assert_int_eq(d.calls, 1);
    ck_assert(!d.called_in_submit);
    ck_assert_int_eq(d.ret, 0);
    for (size_t i = 0; i < sizeof(buf); i++) {
        ck_assert_uint_eq(buf[i], pat(8192 + i));
    }

    memset(buf, 0x77, sizeof(buf));
    struct done w = { 0 };
    in_submit = true;
    w.in_submit = &in_submit;
    ck_assert_int_eq(blk_aio_pwritev(blk, 0, &iov, 1, BDRV_REQ_FUA, done_cb, &w), 0);
    in_submit = false;
    struct done f = { 0 }, z = { 0 }, dc = { 0 };
    ck_assert_int_eq(blk_aio_flush(blk, done_cb, &f), 0);
    ck_assert_int_eq(blk_aio_pwrite_zeroes(blk, 65536, 65536, 0, done_cb, &z), 0);
    ck_assert_int_eq(blk_aio_pdiscard(blk, 131072, 65536, done_cb, &dc), 0);
    blk_drain(blk);
    ck_assert(!w.called_in_submit);
    ck_assert_int_eq(w.ret | f.ret | z.ret | dc.ret, 0);
    ck_assert_int_eq(blk_pread(blk, 0, buf, 1), 0);
    ck_assert_uint_eq(buf[0], 0x77);
    ck_assert_int_eq(blk_pread(blk, 65536, buf, 1), 0);
    ck_assert_uint_eq(buf[0], 0);

    /* Bad ranges fail at once, without a callback. */
    struct done bad = { 0 };
    ck_assert_int_eq(blk_aio_preadv(blk, IMG_SIZE, &iov, 1, done_cb, &bad), -EINVAL);
    ck_assert_int_eq(blk_aio_pwrite_zeroes(blk, IMG_SIZE - 1, 2, 0, done_cb, &bad), -EINVAL);
    ck_assert_int_eq(blk_pread(blk, IMG_SIZE, buf, 1), -EINVAL);
    ck_assert_int_eq(bad.calls, 0);

    struct blk_stats st;
    blk_get_stats(blk, &st);
    ck_assert_uint_eq(st.rd_ops, 3);
    ck_assert_uint_eq(st.rd_bytes, 4098);
    ck_assert_uint_eq(st.wr_ops, 1);
    ck_assert_uint_eq(st.wr_bytes, 4096);
    ck_assert_uint_eq(st.flush_ops, 1);
    ck_assert_uint_eq(st.zero_ops, 1);
    ck_assert_uint_eq(st.discard_ops, 1);
    ck_assert_uint_eq(st.errors, 0);
    blk_free(blk);
}
END_TEST

/* may_block: requests run on the loop thread, yet complete from the loop,
 * never inside the submitting call, in submission order, with the same
 * checks and counters as the default path. */
START_TEST(test_may_block)
{
    struct blk_config cfg = { .may_block = true };
    struct blk_backend *blk = open_blk("driver=raw,file.filename=%s", &cfg, NULL);
    enum { N = 8 };
    uint8_t bufs[N][4096];
    struct iovec iov[N];
    struct done d[N];
    bool in_submit = true;
    int seq = 0;
    memset(d, 0, sizeof(d));
    for (int i = 0; i < N; i++) {
        d[i].seq = &seq;
        d[i].in_submit = &in_submit;
        iov[i] = (struct iovec){ bufs[i], sizeof(bufs[i]) };
        if (i % 2) {
            memset(bufs[i], 0x40 + i, sizeof(bufs[i]));
            ck_assert_int_eq(blk_aio_pwritev(blk, i * 4096, &iov[i], 1, 0, done_cb, &d[i]), 0);
        } else {
            ck_assert_int_eq(blk_aio_preadv(blk, i * 4096, &iov[i], 1, done_cb, &d[i]), 0);
        }
        ck_assert_int_eq(d[i].calls, 0);
    }
    struct done f = { .seq = &seq, .in_submit = &in_submit };
    ck_assert_int_eq(blk_aio_flush(blk, done_cb, &f), 0);
    in_submit = false;
    blk_drain(blk);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(d[i].calls, 1);
        ck_assert(!d[i].called_in_submit);
        ck_assert_int_eq(d[i].ret, 0);
        ck_assert_int_eq(d[i].order, i);
        if (!(i % 2)) {
            ck_assert_uint_eq(bufs[i][4095], pat(i * 4096 + 4095));
        }
    }
    ck_assert_int_eq(f.ret, 0);
    ck_assert_int_eq(f.order, N);
    uint8_t b;
    ck_assert_int_eq(blk_pread(blk, 3 * 4096 + 17, &b, 1), 0);
    ck_assert_uint_eq(b, 0x43);
    struct blk_stats st;
    blk_get_stats(blk, &st);
    ck_assert_uint_eq(st.rd_ops, N / 2 + 1);
    ck_assert_uint_eq(st.wr_ops, N / 2);
    ck_assert_uint_eq(st.flush_ops, 1);
    ck_assert_uint_eq(st.errors, 0);
    blk_free(blk);

    /* Writes to a read-only backend are still refused, and counted so. */
    blk = open_blk("driver=raw,file.filename=%s,read-only=on", &cfg, NULL);
    struct done w = { 0 };
    ck_assert_int_eq(blk_aio_pwritev(blk, 0, &iov[0], 1, 0, done_cb, &w), 0);
    ck_assert_int_eq(w.calls, 0);
    blk_drain(blk);
    ck_assert_int_eq(w.ret, -EPERM);
    blk_get_stats(blk, &st);
    ck_assert_uint_eq(st.rejected_writes, 1);
    blk_free(blk);
}
END_TEST

/* Plain page-cache writes in the default mode (done on the loop thread
 * where they do not block): completed from the loop, never inside the
 * submitting call, in submission order, data in place, counted; an error
 * from the kernel reaches the callback (EFBIG past RLIMIT_FSIZE). */
START_TEST(test_default_writes)
{
    struct blk_backend *blk = open_blk("driver=raw,file.filename=%s", NULL, NULL);
    enum { N = 16 };
    uint8_t bufs[N][4096];
    struct iovec iov[N];
    struct done d[N];
    bool in_submit = true;
    int seq = 0;
    memset(d, 0, sizeof(d));
    for (int round = 0; round < 2; round++) {
        seq = 0;
        for (int i = 0; i < N; i++) {
            d[i] = (struct done){ .seq = &seq, .in_submit = &in_submit };
            iov[i] = (struct iovec){ bufs[i], sizeof(bufs[i]) };
            memset(bufs[i], 0x20 + i + round, sizeof(bufs[i]));
            in_submit = true;
            ck_assert_int_eq(blk_aio_pwritev(blk, (uint64_t)(N - i) * 8192, &iov[i], 1, 0,
                                             done_cb, &d[i]), 0);
            in_submit = false;
            ck_assert_int_eq(d[i].calls, 0);
            if (round) {
                blk_drain(blk);     /* one at a time, as at queue depth 1 */
                ck_assert_int_eq(d[i].calls, 1);
            }
        }
        blk_drain(blk);
        for (int i = 0; i < N; i++) {
            ck_assert_int_eq(d[i].calls, 1);
            ck_assert(!d[i].called_in_submit);
            ck_assert_int_eq(d[i].ret, 0);
            ck_assert_int_eq(d[i].order, i);
            uint8_t b[2];
            ck_assert_int_eq(blk_pread(blk, (uint64_t)(N - i) * 8192 + 4094, b, 2), 0);
            ck_assert_uint_eq(b[0], 0x20 + i + round);
            ck_assert_uint_eq(b[1], 0x20 + i + round);
        }
    }

    struct rlimit old, small = { .rlim_cur = 65536, .rlim_max = RLIM_INFINITY };
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    small.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    struct done e = { 0 }, ok = { 0 };
    ck_assert_int_eq(blk_aio_pwritev(blk, 131072, &iov[0], 1, 0, done_cb, &e), 0);
    ck_assert_int_eq(blk_aio_pwritev(blk, 0, &iov[1], 1, 0, done_cb, &ok), 0);
    ck_assert_int_eq(e.calls, 0);
    blk_drain(blk);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    ck_assert_int_eq(e.calls, 1);
    ck_assert_int_eq(e.ret, -EFBIG);
    ck_assert_int_eq(ok.ret, 0);

    struct blk_stats st;
    blk_get_stats(blk, &st);
    ck_assert_uint_eq(st.wr_ops, 2 * N + 2);
    ck_assert_uint_eq(st.wr_bytes, (2 * N + 1) * 4096);
    ck_assert_uint_eq(st.errors, 1);
    blk_free(blk);
}
END_TEST

/* Many requests in flight at once (more than the io_uring holds), every
 * one completing exactly once, whichever way they reach the kernel. */
static const char *const inflight_modes[] = {
    "driver=raw,file.filename=%s",
    "driver=raw,file.filename=%s,aio=threads",
    "driver=raw,file.filename=%s,aio=io_uring",
    "driver=raw,file.filename=%s,cache=none",
    "driver=raw,file.filename=%s,cache=none,aio=threads",
    "driver=raw,file.filename=%s,cache=writethrough",
};

START_TEST(test_many_inflight)
{
    for (unsigned limit = 0; limit <= 3; limit += 3) {
        struct blk_config cfg = { .max_inflight = limit };
        struct blk_backend *blk = open_blk(inflight_modes[_i], &cfg, NULL);
        enum { N = 200 };
        uint8_t (*bufs)[512] = NULL;
        ck_assert_int_eq(posix_memalign((void **)&bufs, 4096, N * 512), 0);
        struct done d[N];
        struct iovec iov[N];
        int seq = 0;
        memset(d, 0, sizeof(d));
        for (int i = 0; i < N; i++) {
            d[i].seq = &seq;
            iov[i] = (struct iovec){ bufs[i], 512 };
            if (i % 2) {
                memset(bufs[i], i, 512);
                ck_assert_int_eq(blk_aio_pwritev(blk, i * 4096, &iov[i], 1, 0, done_cb, &d[i]), 0);
            } else {
                ck_assert_int_eq(blk_aio_preadv(blk, i * 4096, &iov[i], 1, done_cb, &d[i]), 0);
            }
        }
        ck_assert_uint_ge(blk_inflight(blk), 1);
        blk_drain(blk);
        ck_assert_uint_eq(blk_inflight(blk), 0);
        for (int i = 0; i < N; i++) {
            ck_assert_int_eq(d[i].calls, 1);
            ck_assert_int_eq(d[i].ret, 0);
            if (!(i % 2)) {
                ck_assert_uint_eq(bufs[i][0], pat(i * 4096));
            }
        }
        for (int i = 1; i < N; i += 2) {
            uint8_t b;
            ck_assert_int_eq(blk_pread(blk, i * 4096 + 511, &b, 1), 0);
            ck_assert_uint_eq(b, (uint8_t)i);
        }
        /* The node counted what went past it, by whatever path. */
        struct bdrv_stats nst;
        bdrv_get_stats(blk_root(blk), &nst);
        ck_assert_uint_ge(nst.rd_ops, N / 2);
        ck_assert_uint_ge(nst.wr_ops, N / 2);
        free(bufs);
        blk_free(blk);
    }
}
END_TEST

/* A completion callback that drains (as a device reset or a mode change
 * would) gets every other request finished, not a hang. */
struct drain_ctx {
    struct blk_backend *blk;
    int calls;
    int drained_left;   /* in flight right after the nested drain */
};

static void drain_cb(void *opaque, int ret)
{
    struct drain_ctx *c = opaque;
    if (c->calls++ == 0) {
        blk_drain(c->blk);
        c->drained_left = (int)blk_inflight(c->blk);
    }
}

static void free_cb(void *opaque, int ret)
{
    struct drain_ctx *c = opaque;
    if (c->calls++ == 0) {
        blk_free(c->blk);   /* the rest complete first, then it goes */
        c->drained_left = 0;
    }
}

/* Freeing the backend from one of its completion callbacks. */
START_TEST(test_free_in_callback)
{
    static const char *const modes[] = {
        "driver=raw,file.filename=%s",
        "driver=raw,file.filename=%s,aio=io_uring",
        "driver=raw,file.filename=%s",      /* writes on the loop thread */
    };
    for (size_t m = 0; m < ARRAY_SIZE(modes); m++) {
        struct blk_backend *blk = open_blk(modes[m], NULL, NULL);
        enum { N = 32 };
        static uint8_t bufs[N][512];
        struct iovec iov[N];
        struct drain_ctx c = { .blk = blk, .drained_left = -1 };
        for (int i = 0; i < N; i++) {
            iov[i] = (struct iovec){ bufs[i], 512 };
            int r = m == 0 ? blk_aio_preadv(blk, i * 512, &iov[i], 1, free_cb, &c)
                           : blk_aio_pwritev(blk, i * 512, &iov[i], 1, 0, free_cb, &c);
            ck_assert_int_eq(r, 0);
        }
        while (c.calls < N) {
            ev_run_once(loop, 1000);
        }
        ck_assert_int_eq(c.calls, N);
    }
}
END_TEST

START_TEST(test_drain_in_callback)
{
    static const char *const modes[] = {
        "driver=raw,file.filename=%s",                  /* page-cache fast path */
        "driver=raw,file.filename=%s,aio=io_uring",     /* writes on the ring */
        "driver=raw,file.filename=%s",                  /* writes on the loop thread */
    };
    for (size_t m = 0; m < ARRAY_SIZE(modes); m++) {
        struct blk_backend *blk = open_blk(modes[m], NULL, NULL);
        enum { N = 32 };
        static uint8_t bufs[N][512];
        struct iovec iov[N];
        struct drain_ctx c = { .blk = blk, .drained_left = -1 };
        for (int i = 0; i < N; i++) {
            iov[i] = (struct iovec){ bufs[i], 512 };
            int r = m == 0 ? blk_aio_preadv(blk, i * 512, &iov[i], 1, drain_cb, &c)
                           : blk_aio_pwritev(blk, i * 512, &iov[i], 1, 0, drain_cb, &c);
            ck_assert_int_eq(r, 0);
        }
        blk_drain(blk);
        ck_assert_int_eq(c.calls, N);
        ck_assert_int_eq(c.drained_left, 0);
        blk_free(blk);
    }
}
END_TEST

/* Out of order: the first read is held in its worker until the second
 * has completed on the loop. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
};

static ssize_t gated_preadv(void *opaque, int fd, const struct iovec *iov, int cnt, off_t off)
{
    struct gate *g = opaque;
    if (off == 0) {
        pthread_mutex_lock(&g->lock);
        while (!g->open) {
            pthread_cond_wait(&g->cond, &g->lock);
        }
        pthread_mutex_unlock(&g->lock);
    }
    ssize_t n = preadv(fd, iov, cnt, off);
    return n < 0 ? -errno : n;
}

static void open_gate_cb(void *opaque, int ret)
{
    struct done *d = opaque;
    struct gate *g = (struct gate *)d->in_submit;   /* smuggled */
    d->in_submit = NULL;
    done_cb(d, ret);
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_signal(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

START_TEST(test_out_of_order)
{
    struct gate g = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false };
    struct bdrv_io_hooks hooks = { .preadv = gated_preadv, .opaque = &g };
    struct blk_backend *blk = open_blk("driver=raw,file.filename=%s", NULL, &hooks);
    uint8_t a[512], b[512];
    struct iovec ia = { a, 512 }, ib = { b, 512 };
    int seq = 0;
    struct done da = { .seq = &seq }, db = { .seq = &seq, .in_submit = (bool *)&g };
    ck_assert_int_eq(blk_aio_preadv(blk, 0, &ia, 1, done_cb, &da), 0);
    ck_assert_int_eq(blk_aio_preadv(blk, 4096, &ib, 1, open_gate_cb, &db), 0);
    blk_drain(blk);
    ck_assert_int_eq(da.calls, 1);
    ck_assert_int_eq(db.calls, 1);
    ck_assert_int_eq(db.order, 0);
    ck_assert_int_eq(da.order, 1);
    ck_assert_uint_eq(a[0], pat(0));
    ck_assert_uint_eq(b[0], pat(4096));
    blk_free(blk);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Error policies                                                      */
/* ------------------------------------------------------------------ */

struct fault {
    int read_err, write_err;
};

static ssize_t f_preadv(void *opaque, int fd, const struct iovec *iov, int cnt, off_t off)
{
    struct fault *f = opaque;
    if (f->read_err) {
        return -f->read_err;
    }
    ssize_t n = preadv(fd, iov, cnt, off);
    return n < 0 ? -errno : n;
}

static ssize_t f_pwritev(void *opaque, int fd, const struct iovec *iov, int cnt, off_t off)
{
    struct fault *f = opaque;
    if (f->write_err) {
        return -f->write_err;
    }
    ssize_t n = pwritev(fd, iov, cnt, off);
    return n < 0 ? -errno : n;
}

START_TEST(test_policy_report_ignore)
{
    struct fault f = { EIO, ENOSPC };
    struct bdrv_io_hooks hooks = { .preadv = f_preadv, .pwritev = f_pwritev, .opaque = &f };
    struct blk_config cfg = { .rerror = ERROR_ACTION_REPORT, .werror = ERROR_ACTION_IGNORE };
    struct blk_backend *blk = open_blk("driver=raw,file.filename=%s", &cfg, &hooks);
    uint8_t buf[512];
    struct iovec iov = { buf, sizeof(buf) };
    struct done r = { 0 }, w = { 0 };
    ck_assert_int_eq(blk_aio_preadv(blk, 0, &iov, 1, done_cb, &r), 0);
    ck_assert_int_eq(blk_aio_pwritev(blk, 0, &iov, 1, 0, done_cb, &w), 0);
    blk_drain(blk);
    ck_assert_int_eq(r.ret, -EIO);
    ck_assert_int_eq(w.ret, 0);     /* ignored, but counted */
    struct blk_stats st;
    blk_get_stats(blk, &st);
    ck_assert_uint_eq(st.errors, 2);
    ck_assert(!blk_is_stopped(blk));
    blk_free(blk);
}
END_TEST

START_TEST(test_policy_stop_resume)
{
    struct fault f = { 0, EIO };
    struct bdrv_io_hooks hooks = { .preadv = f_preadv, .pwritev = f_pwritev, .opaque = &f };
    struct blk_config cfg = { .werror = ERROR_ACTION_STOP };
    struct blk_backend *blk = open_blk("driver=raw,file.filename=%s", &cfg, &hooks);
    uint8_t buf[512];
    memset(buf, 0x3c, sizeof(buf));
    struct iovec iov = { buf, sizeof(buf) };
    struct done w = { 0 };
    ck_assert_int_eq(blk_aio_pwritev(blk, 0, &iov, 1, 0, done_cb, &w), 0);
    blk_drain(blk);
    ck_assert_int_eq(w.calls, 0);       /* held, the device sees nothing */
    ck_assert(blk_is_stopped(blk));
    f.write_err = 0;
    blk_resume(blk);
    ck_assert(!blk_is_stopped(blk));
    blk_drain(blk);
    ck_assert_int_eq(w.calls, 1);
    ck_assert_int_eq(w.ret, 0);
    uint8_t b;
    ck_assert_int_eq(blk_pread(blk, 0, &b, 1), 0);
    ck_assert_uint_eq(b, 0x3c);

    /* Still failing at blk_free: the callback gets the error. */
    f.write_err = EIO;
    struct done w2 = { 0 };
    ck_assert_int_eq(blk_aio_pwritev(blk, 0, &iov, 1, 0, done_cb, &w2), 0);
    blk_drain(blk);
    ck_assert_int_eq(w2.calls, 0);
    blk_free(blk);
    ck_assert_int_eq(w2.calls, 1);
    ck_assert_int_eq(w2.ret, -EIO);
}
END_TEST

/* Stopped on a write error, then made read-only: resuming refuses the
 * held write with -EPERM instead of stopping again. */
START_TEST(test_policy_stop_then_read_only)
{
    struct fault f = { 0, EIO };
    struct bdrv_io_hooks hooks = { .preadv = f_preadv, .pwritev = f_pwritev, .opaque = &f };
    struct blk_config cfg = { .werror = ERROR_ACTION_STOP };
    struct blk_backend *blk = open_blk("driver=raw,file.filename=%s", &cfg, &hooks);
    uint8_t buf[512] = { 0 };
    struct iovec iov = { buf, sizeof(buf) };
    struct done w = { 0 };
    ck_assert_int_eq(blk_aio_pwritev(blk, 0, &iov, 1, 0, done_cb, &w), 0);
    blk_drain(blk);
    ck_assert(blk_is_stopped(blk));
    struct error *err = NULL;
    ck_assert_int_eq(blk_set_read_only(blk, true, &err), 0);
    blk_resume(blk);
    blk_drain(blk);
    ck_assert_int_eq(w.calls, 1);
    ck_assert_int_eq(w.ret, -EPERM);
    ck_assert(!blk_is_stopped(blk));
    struct blk_stats st;
    blk_get_stats(blk, &st);
    ck_assert_uint_eq(st.rejected_writes, 1);
    blk_free(blk);
}
END_TEST

START_TEST(test_policy_enospc)
{
    struct fault f = { 0, ENOSPC };
    struct bdrv_io_hooks hooks = { .preadv = f_preadv, .pwritev = f_pwritev, .opaque = &f };
    struct blk_config cfg = { .werror = ERROR_ACTION_ENOSPC };
    struct blk_backend *blk = open_blk("driver=raw,file.filename=%s", &cfg, &hooks);
    uint8_t buf[512] = { 0 };
    struct iovec iov = { buf, sizeof(buf) };
    struct done w = { 0 }, w2 = { 0 };
    ck_assert_int_eq(blk_aio_pwritev(blk, 0, &iov, 1, 0, done_cb, &w), 0);
    blk_drain(blk);
    ck_assert(blk_is_stopped(blk));
    ck_assert_int_eq(w.calls, 0);
    f.write_err = EIO;      /* other errors are reported */
    ck_assert_int_eq(blk_aio_pwritev(blk, 512, &iov, 1, 0, done_cb, &w2), 0);
    blk_drain(blk);
    ck_assert_int_eq(w2.ret, -EIO);
    f.write_err = 0;
    blk_resume(blk);
    blk_drain(blk);
    ck_assert_int_eq(w.ret, 0);
    blk_free(blk);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Read-only                                                           */
/* ------------------------------------------------------------------ */

struct dev {
    int ro_calls, media_calls;
    bool last_ro, last_loaded;
};

static void dev_ro_changed(void *opaque, bool ro)
{
    struct dev *d = opaque;
    d->ro_calls++;
    d->last_ro = ro;
}

static void dev_media_changed(void *opaque, bool loaded)
{
    struct dev *d = opaque;
    d->media_calls++;
    d->last_loaded = loaded;
}

static const struct blk_dev_ops dev_ops = {
    .read_only_changed = dev_ro_changed,
    .media_changed = dev_media_changed,
};

START_TEST(test_read_only_backend)
{
    struct bt_snapshot snap;
    bt_snap(img, &snap);
    /* Even with werror=ignore a refused write is an error to the guest. */
    struct blk_config cfg = { .werror = ERROR_ACTION_IGNORE };
    struct blk_backend *blk = open_blk("driver=raw,file.filename=%s,force-read-only=on",
                                       &cfg, NULL);
    ck_assert(blk_is_read_only(blk));
    uint8_t buf[512] = { 1 };
    struct iovec iov = { buf, sizeof(buf) };
    struct done w = { 0 }, z = { 0 }, dc = { 0 }, r = { 0 };
    ck_assert_int_eq(blk_aio_pwritev(blk, 0, &iov, 1, 0, done_cb, &w), 0);
    ck_assert_int_eq(blk_aio_pwrite_zeroes(blk, 0, 512, 0, done_cb, &z), 0);
    ck_assert_int_eq(blk_aio_pdiscard(blk, 0, 512, done_cb, &dc), 0);
    ck_assert_int_eq(blk_aio_preadv(blk, 0, &iov, 1, done_cb, &r), 0);
    ck_assert_int_eq(w.calls, 0);
    blk_drain(blk);
    ck_assert_int_eq(w.ret, -EPERM);
    ck_assert_int_eq(z.ret, -EPERM);
    ck_assert_int_eq(dc.ret, -EPERM);
    ck_assert_int_eq(r.ret, 0);
    ck_assert_int_eq(blk_pwrite(blk, 0, buf, 1, 0), -EPERM);
    struct blk_stats st;
    blk_get_stats(blk, &st);
    ck_assert_uint_eq(st.rejected_writes, 4);
    ck_assert_uint_eq(st.errors, 0);
    ck_assert_int_eq(bt_write_fds(img), 0);

    struct error *err = NULL;
    ck_assert_int_eq(blk_set_read_only(blk, false, &err), -EACCES);
    ck_assert_ptr_nonnull(err);
    error_free(err);
    ck_assert(blk_is_read_only(blk));
    blk_free(blk);
    ck_assert(bt_unchanged(img, &snap));
    free(snap.data);
}
END_TEST

/* Dynamic read-only: queued writes finish under the old mode, later ones
 * see the new one; the write descriptor goes and comes back. */
START_TEST(test_dynamic_read_only)
{
    struct blk_backend *blk = open_blk("driver=raw,file.filename=%s", NULL, NULL);
    struct dev dev = { 0 };
    blk_set_dev_ops(blk, &dev_ops, &dev);
    enum { N = 16 };
    uint8_t buf[N][512];
    struct iovec iov[N];
    struct done d[N];
    memset(d, 0, sizeof(d));
    for (int i = 0; i < N; i++) {
        memset(buf[i], 0xa0 + i, 512);
        iov[i] = (struct iovec){ buf[i], 512 };
        ck_assert_int_eq(blk_aio_pwritev(blk, i * 512, &iov[i], 1, 0, done_cb, &d[i]), 0);
    }
    struct error *err = NULL;
    ck_assert_int_eq(blk_set_read_only(blk, true, &err), 0);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(d[i].calls, 1);
        ck_assert_int_eq(d[i].ret, 0);
    }
    ck_assert(blk_is_read_only(blk));
    ck_assert_int_eq(dev.ro_calls, 1);
    ck_assert(dev.last_ro);
    ck_assert_int_eq(bt_write_fds(img), 0);
    struct done late = { 0 };
    ck_assert_int_eq(blk_aio_pwritev(blk, 0, &iov[0], 1, 0, done_cb, &late), 0);
    blk_drain(blk);
    ck_assert_int_eq(late.ret, -EPERM);
    uint8_t b;
    ck_assert_int_eq(blk_pread(blk, 15 * 512, &b, 1), 0);
    ck_assert_uint_eq(b, 0xa0 + 15);

    ck_assert_int_eq(blk_set_read_only(blk, false, &err), 0);
    ck_assert_int_eq(dev.ro_calls, 2);
    ck_assert(!dev.last_ro);
    ck_assert_int_ge(bt_write_fds(img), 1);
    struct done again = { 0 };
    ck_assert_int_eq(blk_aio_pwritev(blk, 0, &iov[1], 1, 0, done_cb, &again), 0);
    blk_drain(blk);
    ck_assert_int_eq(again.ret, 0);
    blk_free(blk);
}
END_TEST

START_TEST(test_insert_eject)
{
    struct blk_backend *blk = blk_new(loop, NULL, NULL);
    struct dev dev = { 0 };
    blk_set_dev_ops(blk, &dev_ops, &dev);
    ck_assert(!blk_is_inserted(blk));
    ck_assert_int_eq(blk_getlength(blk), -ENOMEDIUM);
    uint8_t buf[512];
    struct iovec iov = { buf, sizeof(buf) };
    struct done d = { 0 };
    ck_assert_int_eq(blk_aio_preadv(blk, 0, &iov, 1, done_cb, &d), -ENOMEDIUM);
    ck_assert_int_eq(blk_aio_flush(blk, done_cb, &d), -ENOMEDIUM);

    struct error *err = NULL;
    struct bdrv_node *bs = bdrv_open_file(img, "raw", true, &err);
    ck_assert_ptr_nonnull(bs);
    ck_assert_int_eq(blk_insert(blk, bs, &err), 0);
    bdrv_unref(bs);     /* the backend holds its own reference */
    ck_assert(blk_is_inserted(blk));
    ck_assert_int_eq(dev.media_calls, 1);
    ck_assert(dev.last_loaded);
    ck_assert_int_eq(blk_aio_preadv(blk, 0, &iov, 1, done_cb, &d), 0);
    blk_drain(blk);
    ck_assert_int_eq(d.ret, 0);
    ck_assert_ptr_eq(blk_root(blk), bs);

    blk_eject(blk);
    ck_assert(!blk_is_inserted(blk));
    ck_assert_int_eq(dev.media_calls, 2);
    ck_assert(!dev.last_loaded);
    ck_assert_int_eq(blk_pread(blk, 0, buf, 1), -ENOMEDIUM);
    blk_free(blk);
}
END_TEST

static Suite *backend_suite(void)
{
    Suite *s = suite_create("block-backend");
    TCase *tc = tcase_create("async");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_async_read_write);
    tcase_add_test(tc, test_may_block);
    tcase_add_test(tc, test_default_writes);
    tcase_add_loop_test(tc, test_many_inflight, 0, ARRAY_SIZE(inflight_modes));
    tcase_add_test(tc, test_out_of_order);
    tcase_add_test(tc, test_drain_in_callback);
    tcase_add_test(tc, test_free_in_callback);
    suite_add_tcase(s, tc);

    tc = tcase_create("policy");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_policy_report_ignore);
    tcase_add_test(tc, test_policy_stop_resume);
    tcase_add_test(tc, test_policy_enospc);
    tcase_add_test(tc, test_policy_stop_then_read_only);
    suite_add_tcase(s, tc);

    tc = tcase_create("read-only");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_read_only_backend);
    tcase_add_test(tc, test_dynamic_read_only);
    tcase_add_test(tc, test_insert_eject);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test-block-backend", LOG_ERROR);
    return bt_run(backend_suite());
}
