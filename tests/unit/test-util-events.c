/*
 * tests/unit/test-util-events.c — the event loop (fd handlers, timers,
 * deferred calls, stopping) and the worker pool, through util/util.h.
 */
#include "util/util.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static struct event_loop *new_loop(void)
{
    struct error *err = NULL;
    struct event_loop *loop = ev_loop_new(&err);
    ck_assert_ptr_null(err);
    ck_assert_ptr_nonnull(loop);
    return loop;
}

static void make_pipe(int p[2])
{
    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
}

/* ------------------------------------------------------------------ */
/* fd handlers                                                         */
/* ------------------------------------------------------------------ */

struct fd_ctx {
    struct event_loop *loop;
    int fd;
    int calls;
    uint32_t last_events;
    struct fd_ctx *other;       /* removed by this handler, if set */
    bool remove_self;
};

static void fd_cb(void *opaque, uint32_t events)
{
    struct fd_ctx *c = opaque;
    char buf[64];
    c->calls++;
    c->last_events = events;
    if (events & EPOLLIN) {
        ssize_t n = read(c->fd, buf, sizeof(buf));
        (void)n;
    }
    if (c->other) {
        ev_fd_remove(c->loop, c->other->fd);
    }
    if (c->remove_self) {
        ev_fd_remove(c->loop, c->fd);
    }
}

START_TEST(test_fd_basic)
{
    struct event_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    struct fd_ctx c = { .loop = loop, .fd = p[0] };
    ck_assert_int_eq(ev_fd_add(loop, p[0], EPOLLIN, fd_cb, &c), 0);
    ck_assert_int_eq(ev_run_once(loop, 0), 0);
    ck_assert_int_eq(write(p[1], "x", 1), 1);
    ck_assert_int_eq(ev_run_once(loop, -1), 1);
    ck_assert_int_eq(c.calls, 1);
    ck_assert(c.last_events & EPOLLIN);
    ck_assert_int_eq(ev_run_once(loop, 0), 0);

    /* Modify to no events: data stays unread and nothing fires. */
    ck_assert_int_eq(ev_fd_modify(loop, p[0], 0), 0);
    ck_assert_int_eq(write(p[1], "y", 1), 1);
    ck_assert_int_eq(ev_run_once(loop, 0), 0);
    ck_assert_int_eq(ev_fd_modify(loop, p[0], EPOLLIN), 0);
    ck_assert_int_eq(ev_run_once(loop, 0), 1);
    ck_assert_int_eq(c.calls, 2);

    /* Hang-up is reported. */
    close(p[1]);
    ck_assert_int_eq(ev_run_once(loop, 0), 1);
    ck_assert(c.last_events & EPOLLHUP);

    ev_fd_remove(loop, p[0]);
    ck_assert_int_eq(ev_run_once(loop, 0), 0);
    ev_fd_remove(loop, p[0]);           /* unknown fd: no-op */
    close(p[0]);
    ev_loop_free(loop);
}
END_TEST

START_TEST(test_fd_errors)
{
    struct event_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    struct fd_ctx c = { .loop = loop, .fd = p[0] };
    ck_assert_int_eq(ev_fd_add(loop, p[0], EPOLLIN, fd_cb, &c), 0);
    ck_assert_int_eq(ev_fd_add(loop, p[0], EPOLLIN, fd_cb, &c), -EEXIST);
    ck_assert_int_eq(ev_fd_modify(loop, p[1], EPOLLOUT), -ENOENT);
    ck_assert_int_eq(ev_fd_modify(loop, 100000, EPOLLOUT), -ENOENT);
    ck_assert_int_eq(ev_fd_add(loop, -1, EPOLLIN, fd_cb, &c), -EINVAL);
    ck_assert_int_eq(ev_fd_add(loop, 4000, EPOLLIN, fd_cb, &c), -EBADF);

    /* epoll refuses regular files. */
    char path[] = "/tmp/diskdm-ev-XXXXXX";
    int f = mkstemp(path);
    ck_assert_int_ge(f, 0);
    unlink(path);
    ck_assert_int_eq(ev_fd_add(loop, f, EPOLLIN, fd_cb, &c), -EPERM);
    close(f);

    /* A loop freed with handlers still registered releases them. */
    close(p[0]);
    close(p[1]);
    ev_loop_free(loop);
    ev_loop_free(NULL);
}
END_TEST

/* Both fds are ready in the same epoll batch; whichever handler runs first
 * removes the other, whose pending event must then not be delivered. */
START_TEST(test_fd_remove_other_in_batch)
{
    struct event_loop *loop = new_loop();
    int a[2], b[2];
    make_pipe(a);
    make_pipe(b);
    struct fd_ctx ca = { .loop = loop, .fd = a[0] };
    struct fd_ctx cb = { .loop = loop, .fd = b[0] };
    ca.other = &cb;
    cb.other = &ca;
    ck_assert_int_eq(ev_fd_add(loop, a[0], EPOLLIN, fd_cb, &ca), 0);
    ck_assert_int_eq(ev_fd_add(loop, b[0], EPOLLIN, fd_cb, &cb), 0);
    ck_assert_int_eq(write(a[1], "x", 1), 1);
    ck_assert_int_eq(write(b[1], "x", 1), 1);
    ck_assert_int_eq(ev_run_once(loop, -1), 1);
    ck_assert_int_eq(ca.calls + cb.calls, 1);
    /* The survivor removed itself from nothing; it can still fire. */
    struct fd_ctx *alive = ca.calls ? &ca : &cb;
    alive->other = NULL;
    ck_assert_int_eq(write(alive == &ca ? a[1] : b[1], "y", 1), 1);
    ck_assert_int_eq(ev_run_once(loop, 0), 1);
    ck_assert_int_eq(alive->calls, 2);
    ck_assert_int_eq(ca.calls + cb.calls, 2);
    close(a[0]); close(a[1]); close(b[0]); close(b[1]);
    ev_loop_free(loop);
}
END_TEST

/* The removed fd's number is reused by a new registration inside the same
 * batch: the stale event must not reach the new handler. */
struct reuse_ctx {
    struct event_loop *loop;
    int victim_fd;
    int new_pipe[2];
    struct fd_ctx fresh;
    int calls;
};

static void reuse_cb(void *opaque, uint32_t events)
{
    struct reuse_ctx *r = opaque;
    r->calls++;
    ev_fd_remove(r->loop, r->victim_fd);
    close(r->victim_fd);
    /* Force the new pipe's read end onto the freed number. */
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    if (p[0] != r->victim_fd) {
        ck_assert_int_eq(dup3(p[0], r->victim_fd, O_CLOEXEC), r->victim_fd);
        close(p[0]);
    }
    r->new_pipe[0] = r->victim_fd;
    r->new_pipe[1] = p[1];
    r->fresh.loop = r->loop;
    r->fresh.fd = r->new_pipe[0];
    ck_assert_int_eq(ev_fd_add(r->loop, r->new_pipe[0], EPOLLIN, fd_cb, &r->fresh), 0);
}

START_TEST(test_fd_remove_reuse_in_batch)
{
    struct event_loop *loop = new_loop();
    int a[2], b[2];
    make_pipe(a);
    make_pipe(b);
    struct reuse_ctx ra = { .loop = loop, .victim_fd = b[0] };
    struct reuse_ctx rb = { .loop = loop, .victim_fd = a[0] };
    ck_assert_int_eq(ev_fd_add(loop, a[0], EPOLLIN, reuse_cb, &ra), 0);
    ck_assert_int_eq(ev_fd_add(loop, b[0], EPOLLIN, reuse_cb, &rb), 0);
    ck_assert_int_eq(write(a[1], "x", 1), 1);
    ck_assert_int_eq(write(b[1], "x", 1), 1);
    ck_assert_int_eq(ev_run_once(loop, -1), 1);
    struct reuse_ctx *ran = ra.calls ? &ra : &rb;
    ck_assert_int_eq(ra.calls + rb.calls, 1);
    ck_assert_int_eq(ran->fresh.calls, 0);
    ck_assert_int_eq(ran->new_pipe[0], ran->victim_fd);  /* number reused */
    int survivor = ran == &ra ? a[0] : b[0];
    ev_fd_remove(loop, survivor);
    close(survivor);
    /* The new registration works normally afterwards. */
    ck_assert_int_eq(write(ran->new_pipe[1], "z", 1), 1);
    ck_assert_int_eq(ev_run_once(loop, 0), 1);
    ck_assert_int_eq(ran->fresh.calls, 1);
    ev_fd_remove(loop, ran->new_pipe[0]);
    close(ran->new_pipe[0]);
    close(ran->new_pipe[1]);
    close(a[1]);
    close(b[1]);
    ev_loop_free(loop);
}
END_TEST

START_TEST(test_fd_remove_self)
{
    struct event_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    struct fd_ctx c = { .loop = loop, .fd = p[0], .remove_self = true };
    ck_assert_int_eq(ev_fd_add(loop, p[0], EPOLLIN, fd_cb, &c), 0);
    ck_assert_int_eq(write(p[1], "xy", 2), 2);
    ck_assert_int_eq(ev_run_once(loop, -1), 1);
    ck_assert_int_eq(write(p[1], "z", 1), 1);
    ck_assert_int_eq(ev_run_once(loop, 0), 0);
    ck_assert_int_eq(c.calls, 1);
    /* Can be added again after removal. */
    c.remove_self = false;
    ck_assert_int_eq(ev_fd_add(loop, p[0], EPOLLIN, fd_cb, &c), 0);
    ck_assert_int_eq(ev_run_once(loop, 0), 1);
    close(p[0]);
    close(p[1]);
    ev_loop_free(loop);
}
END_TEST

/* A handler runs the loop again (as a synchronous drain would); a handler
 * in the inner run removes an fd whose event is pending in the outer
 * batch. Nothing may run twice or touch freed memory. */
struct nest_ctx {
    struct event_loop *loop;
    int fds[3];
    int calls[3];
    int inner_ran;
    bool nesting;
    bool nested_once;
};

static void nest_cb(void *opaque, uint32_t events);

struct nest_arg {
    struct nest_ctx *c;
    int i;
};

static void nest_cb(void *opaque, uint32_t events)
{
    struct nest_arg *a = opaque;
    struct nest_ctx *c = a->c;
    char buf[8];
    ssize_t n = read(c->fds[a->i], buf, sizeof(buf));
    (void)n;
    c->calls[a->i]++;
    if (c->nesting) {
        /* Inner run: remove every other registered fd. */
        for (int j = 0; j < 3; j++) {
            if (j != a->i) {
                ev_fd_remove(c->loop, c->fds[j]);
            }
        }
        return;
    }
    if (c->nested_once) {
        return;     /* a stale event in the outer batch, see below */
    }
    c->nested_once = true;
    c->nesting = true;
    c->inner_ran = ev_run_once(c->loop, 0);
    c->nesting = false;
}

START_TEST(test_fd_nested_run)
{
    struct event_loop *loop = new_loop();
    struct nest_ctx c = { .loop = loop };
    struct nest_arg args[3];
    int wr[3];
    for (int i = 0; i < 3; i++) {
        int p[2];
        make_pipe(p);
        c.fds[i] = p[0];
        wr[i] = p[1];
        args[i] = (struct nest_arg){ &c, i };
        ck_assert_int_eq(ev_fd_add(loop, p[0], EPOLLIN, nest_cb, &args[i]), 0);
        ck_assert_int_eq(write(p[1], "x", 1), 1);
    }
    int outer_ran = ev_run_once(loop, -1);
    /* The outer handler ran once; the inner run ran one handler, which
     * removed the outer's fd and the third one: the third never runs. The
     * inner one's fd may see its (now stale) event again from the outer
     * batch, as with any level-triggered nested loop. */
    ck_assert_int_eq(c.inner_ran, 1);
    int ones = 0, zeros = 0;
    for (int i = 0; i < 3; i++) {
        ones += c.calls[i] >= 1;
        zeros += c.calls[i] == 0;
    }
    ck_assert_int_eq(ones, 2);
    ck_assert_int_eq(zeros, 1);
    ck_assert_int_eq(c.calls[0] + c.calls[1] + c.calls[2], outer_ran + 1);
    for (int i = 0; i < 3; i++) {
        ev_fd_remove(loop, c.fds[i]);
        close(c.fds[i]);
        close(wr[i]);
    }
    ev_loop_free(loop);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Timers                                                              */
/* ------------------------------------------------------------------ */

struct order_log {
    int v[64];
    int n;
};

struct timer_arg {
    struct order_log *log;
    int id;
};

static void log_cb(void *opaque)
{
    struct timer_arg *a = opaque;
    a->log->v[a->log->n++] = a->id;
}

START_TEST(test_timer_order)
{
    struct event_loop *loop = new_loop();
    struct order_log log = { .n = 0 };
    struct timer_arg args[7];
    static const uint64_t ms[7] = { 30, 10, 20, 10, 0, 25, 5 };
    struct ev_timer *t[7];
    for (int i = 0; i < 7; i++) {
        args[i] = (struct timer_arg){ &log, i };
        t[i] = ev_timer_add(loop, ms[i], log_cb, &args[i]);
        ck_assert_ptr_nonnull(t[i]);
    }
    ev_timer_cancel(loop, t[5]);
    ev_timer_cancel(loop, NULL);
    while (log.n < 6) {
        ev_run_once(loop, -1);
    }
    static const int want[6] = { 4, 6, 1, 3, 2, 0 };
    ck_assert_int_eq(log.n, 6);
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(log.v[i], want[i]);
    }
    ck_assert_int_eq(ev_run_once(loop, 0), 0);
    ev_loop_free(loop);
}
END_TEST

/* Many timers with random-ish deadlines come out sorted (heap check). */
struct heap_ctx {
    int last;
    int fired;
    int bad;
    int deadlines[200];
    int idx[200];
};
struct heap_arg {
    struct heap_ctx *h;
    int i;
};

static void heap_cb(void *opaque)
{
    struct heap_arg *a = opaque;
    int d = a->h->deadlines[a->i];
    if (d < a->h->last) {
        a->h->bad++;
    }
    a->h->last = d;
    a->h->fired++;
}

START_TEST(test_timer_heap)
{
    struct event_loop *loop = new_loop();
    struct heap_ctx h = { .last = -1 };
    struct heap_arg args[200];
    struct ev_timer *t[200];
    for (int i = 0; i < 200; i++) {
        h.deadlines[i] = (i * 37) % 23;
        args[i] = (struct heap_arg){ &h, i };
        t[i] = ev_timer_add(loop, h.deadlines[i], heap_cb, &args[i]);
    }
    int cancelled = 0;
    for (int i = 0; i < 200; i += 7) {
        ev_timer_cancel(loop, t[i]);
        cancelled++;
    }
    while (h.fired < 200 - cancelled) {
        ev_run_once(loop, -1);
    }
    ck_assert_int_eq(h.bad, 0);
    ck_assert_int_eq(ev_run_once(loop, 0), 0);
    ev_loop_free(loop);
}
END_TEST

struct rearm_ctx {
    struct event_loop *loop;
    int fired;
};

static void rearm_cb(void *opaque)
{
    struct rearm_ctx *r = opaque;
    r->fired++;
    ev_timer_add(r->loop, 0, rearm_cb, r);
}

/* A timer re-arming itself at 0 ms runs once per iteration, not forever. */
START_TEST(test_timer_rearm_zero)
{
    struct event_loop *loop = new_loop();
    struct rearm_ctx r = { loop, 0 };
    ev_timer_add(loop, 0, rearm_cb, &r);
    ck_assert_int_eq(ev_run_once(loop, 0), 1);
    ck_assert_int_eq(r.fired, 1);
    ck_assert_int_eq(ev_run_once(loop, -1), 1);
    ck_assert_int_eq(r.fired, 2);
    ev_loop_free(loop);    /* drops the pending timer */
}
END_TEST

/* A loop blocked with timeout -1 wakes up for its timer. */
START_TEST(test_timer_wakes_wait)
{
    struct event_loop *loop = new_loop();
    struct order_log log = { .n = 0 };
    struct timer_arg a = { &log, 7 };
    ev_timer_add(loop, 5, log_cb, &a);
    uint64_t start = clock_ns();
    while (log.n == 0) {
        ev_run_once(loop, -1);
    }
    ck_assert_uint_ge(clock_ns() - start, 5000000);
    ev_loop_free(loop);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Deferred calls                                                      */
/* ------------------------------------------------------------------ */

#define DEFER_THREADS 4
#define DEFER_CALLS 10000

struct defer_rec {
    struct defer_state *st;
    int thread;
    int seq;
};

struct defer_state {
    struct event_loop *loop;
    pthread_t loop_thread;
    struct defer_rec recs[DEFER_THREADS][DEFER_CALLS];
    int next_seq[DEFER_THREADS];
    int total;
    int out_of_order;
    int wrong_thread;
    int dup;
    pthread_barrier_t start;
};

static void defer_cb(void *opaque)
{
    struct defer_rec *r = opaque;
    struct defer_state *st = r->st;
    if (!pthread_equal(pthread_self(), st->loop_thread)) {
        st->wrong_thread++;
    }
    if (r->seq != st->next_seq[r->thread]) {
        st->out_of_order++;
    }
    if (r->seq == -1) {
        st->dup++;
    }
    st->next_seq[r->thread] = r->seq + 1;
    r->seq = -1;
    st->total++;
}

struct defer_thread_arg {
    struct defer_state *st;
    int thread;
};

static void *defer_thread(void *opaque)
{
    struct defer_thread_arg *a = opaque;
    pthread_barrier_wait(&a->st->start);
    for (int i = 0; i < DEFER_CALLS; i++) {
        struct defer_rec *r = &a->st->recs[a->thread][i];
        r->st = a->st;
        r->thread = a->thread;
        r->seq = i;
        ck_assert_int_eq(ev_defer(a->st->loop, defer_cb, r), 0);
    }
    return NULL;
}

START_TEST(test_defer_threads)
{
    struct defer_state *st = calloc(1, sizeof(*st));
    st->loop = new_loop();
    st->loop_thread = pthread_self();
    pthread_barrier_init(&st->start, NULL, DEFER_THREADS);
    pthread_t tids[DEFER_THREADS];
    struct defer_thread_arg args[DEFER_THREADS];
    for (int i = 0; i < DEFER_THREADS; i++) {
        args[i] = (struct defer_thread_arg){ st, i };
        ck_assert_int_eq(pthread_create(&tids[i], NULL, defer_thread, &args[i]), 0);
    }
    while (st->total < DEFER_THREADS * DEFER_CALLS) {
        ev_run_once(st->loop, -1);
    }
    for (int i = 0; i < DEFER_THREADS; i++) {
        pthread_join(tids[i], NULL);
    }
    ck_assert_int_eq(ev_run_once(st->loop, 0), 0);
    ck_assert_int_eq(st->total, DEFER_THREADS * DEFER_CALLS);
    ck_assert_int_eq(st->out_of_order, 0);
    ck_assert_int_eq(st->wrong_thread, 0);
    ck_assert_int_eq(st->dup, 0);
    for (int i = 0; i < DEFER_THREADS; i++) {
        ck_assert_int_eq(st->next_seq[i], DEFER_CALLS);
    }
    pthread_barrier_destroy(&st->start);
    ev_loop_free(st->loop);
    free(st);
}
END_TEST

struct chain_ctx {
    struct event_loop *loop;
    struct order_log log;
    int depth;
};

static void chain_cb(void *opaque)
{
    struct chain_ctx *c = opaque;
    c->log.v[c->log.n++] = c->depth;
    if (c->depth++ < 3) {
        ck_assert_int_eq(ev_defer(c->loop, chain_cb, c), 0);
    }
}

/* A call deferred by a deferred call runs at the next iteration. */
START_TEST(test_defer_from_callback)
{
    struct chain_ctx c = { .loop = new_loop() };
    ck_assert_int_eq(ev_defer(c.loop, chain_cb, &c), 0);
    for (int i = 1; i <= 4; i++) {
        ck_assert_int_eq(ev_run_once(c.loop, -1), 1);
        ck_assert_int_eq(c.log.n, i);
    }
    ck_assert_int_eq(ev_run_once(c.loop, 0), 0);
    ev_loop_free(c.loop);
}
END_TEST

/* ------------------------------------------------------------------ */
/* ev_run / ev_stop                                                    */
/* ------------------------------------------------------------------ */

static void stop_cb(void *opaque)
{
    ev_stop(opaque);
}

static void *stop_thread(void *opaque)
{
    usleep(2000);
    ev_stop(opaque);
    return NULL;
}

START_TEST(test_run_stop)
{
    struct event_loop *loop = new_loop();
    ev_timer_add(loop, 1, stop_cb, loop);
    ev_run(loop);
    /* A stop from another thread wakes a loop with nothing else to do. */
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, stop_thread, loop), 0);
    ev_run(loop);
    pthread_join(tid, NULL);
    /* A stop before ev_run makes it return at once. */
    ev_stop(loop);
    ev_run(loop);
    ev_loop_free(loop);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Worker pool                                                         */
/* ------------------------------------------------------------------ */

struct pool_state {
    struct event_loop *loop;
    struct thread_pool *pool;
    pthread_t loop_thread;
    int done_order[256];
    int ndone;
    int wrong_ret;
    int done_wrong_thread;
    int work_on_loop_thread;
    int resubmit;           /* done submits this many more */
    struct pool_item *items;
};

struct pool_item {
    struct pool_state *st;
    struct tpool_req req;
    int id;
    unsigned sleep_us;
};

static int item_work(void *opaque)
{
    struct pool_item *it = opaque;
    if (pthread_equal(pthread_self(), it->st->loop_thread)) {
        __atomic_add_fetch(&it->st->work_on_loop_thread, 1, __ATOMIC_RELAXED);
    }
    if (it->sleep_us) {
        usleep(it->sleep_us);
    }
    return it->id * 3;
}

static void item_done(void *opaque, int ret)
{
    struct pool_item *it = opaque;
    struct pool_state *st = it->st;
    if (ret != it->id * 3) {
        st->wrong_ret++;
    }
    if (!pthread_equal(pthread_self(), st->loop_thread)) {
        st->done_wrong_thread++;
    }
    st->done_order[st->ndone++] = it->id;
    if (st->resubmit > 0) {
        st->resubmit--;
        struct pool_item *next = &st->items[it->id + 100];
        *next = (struct pool_item){ st, .id = it->id + 100, .sleep_us = 500 };
        ck_assert_int_eq(tpool_submit(st->pool, item_work, item_done, next), 0);
    }
}

static void pool_setup(struct pool_state *st, unsigned max_threads)
{
    struct error *err = NULL;
    memset(st, 0, sizeof(*st));
    st->loop = new_loop();
    st->loop_thread = pthread_self();
    st->pool = tpool_new(st->loop, max_threads, &err);
    ck_assert_ptr_null(err);
    ck_assert_ptr_nonnull(st->pool);
    st->items = calloc(256, sizeof(*st->items));
}

static void pool_teardown(struct pool_state *st)
{
    tpool_free(st->pool);
    ev_loop_free(st->loop);
    free(st->items);
}

/* One worker: done calls come back in submission order, on the loop. */
START_TEST(test_pool_order)
{
    struct pool_state st;
    pool_setup(&st, 1);
    ck_assert_uint_eq(tpool_thread_count(st.pool), 0);   /* lazily started */
    for (int i = 0; i < 100; i++) {
        st.items[i] = (struct pool_item){ &st, .id = i };
        if (i % 2) {
            ck_assert_int_eq(tpool_submit(st.pool, item_work, item_done, &st.items[i]), 0);
        } else {
            ck_assert_int_eq(tpool_submit_req(st.pool, &st.items[i].req, item_work,
                                              item_done, &st.items[i]), 0);
        }
    }
    ck_assert_uint_eq(tpool_thread_count(st.pool), 1);
    while (st.ndone < 100) {
        ev_run_once(st.loop, -1);
    }
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(st.done_order[i], i);
    }
    ck_assert_int_eq(st.wrong_ret, 0);
    ck_assert_int_eq(st.done_wrong_thread, 0);
    ck_assert_int_eq(st.work_on_loop_thread, 0);
    ck_assert_int_eq(ev_run_once(st.loop, 0), 0);
    pool_teardown(&st);
}
END_TEST

/* Several workers, never more than max_threads; all done calls run once. */
START_TEST(test_pool_parallel)
{
    struct pool_state st;
    pool_setup(&st, 4);
    for (int i = 0; i < 64; i++) {
        st.items[i] = (struct pool_item){ &st, .id = i, .sleep_us = 200 };
        ck_assert_int_eq(tpool_submit_req(st.pool, &st.items[i].req, item_work,
                                          item_done, &st.items[i]), 0);
    }
    ck_assert_uint_le(tpool_thread_count(st.pool), 4);
    while (st.ndone < 64) {
        ev_run_once(st.loop, -1);
    }
    bool seen[64] = { false };
    for (int i = 0; i < 64; i++) {
        ck_assert(!seen[st.done_order[i]]);
        seen[st.done_order[i]] = true;
    }
    ck_assert_int_eq(st.wrong_ret, 0);
    ck_assert_int_eq(st.done_wrong_thread, 0);
    pool_teardown(&st);
}
END_TEST

/* tpool_free without running the loop: it waits for the work, runs every
 * done call (including work submitted by a done call), then returns. */
START_TEST(test_pool_free_drains)
{
    struct pool_state st;
    pool_setup(&st, 3);
    st.resubmit = 5;
    for (int i = 0; i < 40; i++) {
        st.items[i] = (struct pool_item){ &st, .id = i, .sleep_us = 300 };
        ck_assert_int_eq(tpool_submit(st.pool, item_work, item_done, &st.items[i]), 0);
    }
    tpool_free(st.pool);
    ck_assert_int_eq(st.ndone, 45);
    ck_assert_int_eq(st.wrong_ret, 0);
    ck_assert_int_eq(st.done_wrong_thread, 0);
    /* Nothing of the pool is left in the loop. */
    ck_assert_int_eq(ev_run_once(st.loop, 0), 0);
    ev_loop_free(st.loop);
    free(st.items);
}
END_TEST

/* Idle workers exit; a later submission starts a worker again. */
START_TEST(test_pool_idle_exit)
{
    struct pool_state st;
    pool_setup(&st, 2);
    tpool_set_idle_timeout(st.pool, 5);
    st.items[0] = (struct pool_item){ &st, .id = 0 };
    ck_assert_int_eq(tpool_submit(st.pool, item_work, item_done, &st.items[0]), 0);
    while (st.ndone < 1) {
        ev_run_once(st.loop, -1);
    }
    while (tpool_thread_count(st.pool) > 0) {
        usleep(1000);
    }
    st.items[1] = (struct pool_item){ &st, .id = 1 };
    ck_assert_int_eq(tpool_submit(st.pool, item_work, item_done, &st.items[1]), 0);
    ck_assert_uint_eq(tpool_thread_count(st.pool), 1);
    while (st.ndone < 2) {
        ev_run_once(st.loop, -1);
    }
    ck_assert_int_eq(st.wrong_ret, 0);
    pool_teardown(&st);
}
END_TEST

/* The pool's handler coexists with other fds and deferred calls. */
static void count_cb(void *opaque)
{
    (*(int *)opaque)++;
}

START_TEST(test_pool_with_defer)
{
    struct pool_state st;
    pool_setup(&st, 2);
    int deferred = 0;
    for (int i = 0; i < 10; i++) {
        st.items[i] = (struct pool_item){ &st, .id = i };
        ck_assert_int_eq(tpool_submit(st.pool, item_work, item_done, &st.items[i]), 0);
        ck_assert_int_eq(ev_defer(st.loop, count_cb, &deferred), 0);
    }
    while (st.ndone < 10 || deferred < 10) {
        ev_run_once(st.loop, -1);
    }
    ck_assert_int_eq(deferred, 10);
    pool_teardown(&st);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Work queued on the loop's thread (ev_soon)                          */
/* ------------------------------------------------------------------ */

struct soon_ctx {
    struct event_loop *loop;
    struct ev_soon soon;
    int *log, *n;
    int id;
    int requeue;                /* times to queue itself again */
    struct soon_ctx *cancel;    /* cancelled by this callback, if set */
};

static void soon_cb(void *opaque)
{
    struct soon_ctx *c = opaque;
    c->log[(*c->n)++] = c->id;
    if (c->cancel) {
        ev_soon_cancel(c->loop, &c->cancel->soon);
    }
    if (c->requeue > 0) {
        c->requeue--;
        ev_soon(c->loop, &c->soon);
    }
}

START_TEST(test_soon_order_cancel)
{
    struct event_loop *loop = new_loop();
    int log[16], n = 0;
    struct soon_ctx c[4];
    for (int i = 0; i < 4; i++) {
        c[i] = (struct soon_ctx){ .loop = loop, .log = log, .n = &n, .id = i };
        ev_soon_init(&c[i].soon, soon_cb, &c[i]);
    }
    c[0].requeue = 1;
    c[1].cancel = &c[2];
    ev_soon(loop, &c[0].soon);
    ev_soon(loop, &c[1].soon);
    ev_soon(loop, &c[1].soon);      /* already queued: no second run */
    ev_soon(loop, &c[2].soon);
    ev_soon(loop, &c[3].soon);
    ev_soon_cancel(loop, &c[3].soon);
    ck_assert(!ev_soon_pending(&c[3].soon));
    ck_assert_int_eq(n, 0);         /* never inside the queuing call */

    /* 2 is cancelled by 1 before its turn; 0's re-queue waits a pass. */
    ck_assert_int_eq(ev_run_once(loop, -1), 2);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(log[0], 0);
    ck_assert_int_eq(log[1], 1);
    ck_assert(ev_soon_pending(&c[0].soon));
    ck_assert_int_eq(ev_run_once(loop, -1), 1);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(log[2], 0);
    ck_assert_int_eq(ev_run_once(loop, 0), 0);

    /* Queued then cancelled last: the tail is repaired for the next one. */
    ev_soon(loop, &c[3].soon);
    ev_soon_cancel(loop, &c[3].soon);
    ev_soon(loop, &c[1].soon);
    c[1].cancel = NULL;
    ck_assert_int_eq(ev_run_once(loop, -1), 1);
    ck_assert_int_eq(log[3], 1);

    ev_soon(loop, &c[0].soon);      /* dropped, not run, by ev_loop_free */
    ev_loop_free(loop);
    ck_assert_int_eq(n, 4);
}
END_TEST

static void deferred_flag(void *opaque)
{
    *(int *)opaque = 1;
}

/* An entry that re-queues itself forever neither starves the fds nor
 * deferred calls. */
START_TEST(test_soon_no_starvation)
{
    struct event_loop *loop = new_loop();
    int log[4], n = 0;
    struct soon_ctx c = { .loop = loop, .log = log, .n = &n, .requeue = 1 << 30 };
    ev_soon_init(&c.soon, soon_cb, &c);
    int p[2];
    make_pipe(p);
    struct fd_ctx f = { .loop = loop, .fd = p[0] };
    ck_assert_int_eq(ev_fd_add(loop, p[0], EPOLLIN, fd_cb, &f), 0);
    ck_assert_int_eq(write(p[1], "x", 1), 1);
    int deferred = 0;
    ck_assert_int_eq(ev_defer(loop, deferred_flag, &deferred), 0);
    ev_soon(loop, &c.soon);
    for (int i = 0; i < 100 && (!f.calls || !deferred); i++) {
        n = 0;
        ev_run_once(loop, -1);
    }
    ck_assert_int_eq(f.calls, 1);
    ck_assert_int_eq(deferred, 1);
    ev_fd_remove(loop, p[0]);
    ev_soon_cancel(loop, &c.soon);
    close(p[0]);
    close(p[1]);
    ev_loop_free(loop);
}
END_TEST

/* The inline-work budget: fast runs never hand off; a slow run spends
 * its length from the budget; overdrawn, the work is handed off until
 * EV_INLINE_SHARE times the overdraft has passed, then runs here again. */
START_TEST(test_inline_budget)
{
    struct ev_inline p = { 0 };
    const uint64_t ms = 1000 * 1000, k = EV_INLINE_SHARE;
    const uint64_t bank = EV_INLINE_BUDGET_NS;
    uint64_t t = 1000 * ms;
    ck_assert(ev_inline_allowed(&p, t));
    for (int i = 0; i < 1000; i++, t += 10000) {
        ck_assert(!ev_inline_record(&p, t, t + 5000));     /* 5 us each */
    }
    ck_assert(ev_inline_allowed(&p, t));
    /* Blocked for all but 2 ms of the bank: fine. */
    ck_assert(!ev_inline_record(&p, t, t + bank - 2 * ms));
    t += bank - 2 * ms;
    ck_assert(ev_inline_allowed(&p, t));
    /* 5 ms more right away: 3 ms over, less what the last run earned. */
    ck_assert(ev_inline_record(&p, t, t + 5 * ms));
    t += 5 * ms;
    ck_assert(!ev_inline_allowed(&p, t));
    uint64_t back = t + (3 * ms - (bank - 2 * ms) / k) * k;
    ck_assert(!ev_inline_allowed(&p, back - 1));
    ck_assert(ev_inline_allowed(&p, back));
    /* Back with an empty budget: the next slow run hands off at once,
     * a fast one does not. */
    ck_assert(!ev_inline_record(&p, back, back + 5000));
    ck_assert(ev_inline_record(&p, back + 10000, back + 10000 + 2 * ms));
    ck_assert(!ev_inline_allowed(&p, back + 10000 + 2 * ms + (k - 1) * ms));
}
END_TEST

static Suite *events_suite(void)
{
    Suite *s = suite_create("util-events");
    TCase *tc = tcase_create("fd");
    tcase_add_test(tc, test_fd_basic);
    tcase_add_test(tc, test_fd_errors);
    tcase_add_test(tc, test_fd_remove_other_in_batch);
    tcase_add_test(tc, test_fd_remove_reuse_in_batch);
    tcase_add_test(tc, test_fd_remove_self);
    tcase_add_test(tc, test_fd_nested_run);
    suite_add_tcase(s, tc);

    tc = tcase_create("timer");
    tcase_add_test(tc, test_timer_order);
    tcase_add_test(tc, test_timer_heap);
    tcase_add_test(tc, test_timer_rearm_zero);
    tcase_add_test(tc, test_timer_wakes_wait);
    suite_add_tcase(s, tc);

    tc = tcase_create("defer");
    tcase_add_test(tc, test_defer_threads);
    tcase_add_test(tc, test_defer_from_callback);
    tcase_add_test(tc, test_run_stop);
    suite_add_tcase(s, tc);

    tc = tcase_create("soon");
    tcase_add_test(tc, test_soon_order_cancel);
    tcase_add_test(tc, test_soon_no_starvation);
    tcase_add_test(tc, test_inline_budget);
    suite_add_tcase(s, tc);

    tc = tcase_create("pool");
    tcase_add_test(tc, test_pool_order);
    tcase_add_test(tc, test_pool_parallel);
    tcase_add_test(tc, test_pool_free_drains);
    tcase_add_test(tc, test_pool_idle_exit);
    tcase_add_test(tc, test_pool_with_defer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(events_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
