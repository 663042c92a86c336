/*
 * util/event-loop.c — the process's event loop: epoll fd handlers, one-shot
 * timers in a min-heap, and calls deferred from any thread through an eventfd.
 * Block backends, devices and transports all complete their work here.
 */
#include "util/util.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define EV_BATCH 64     /* epoll events taken per wait */
/* While ev_soon work is queued the loop skips epoll_wait, except on every
 * this many iterations, so fds are still served under a stream of it. */
#define EV_SOON_POLL_EVERY 32

/*
 * A registered fd. epoll's data.ptr points here, so an entry removed while
 * its event is pending in the current batch must stay allocated until the
 * batch is done: removal clears `fn` and parks the entry on the dead list.
 */
struct ev_fd_entry {
    int fd;
    uint32_t events;
    ev_fd_fn *fn;               /* NULL once removed */
    void *opaque;
    struct ev_fd_entry *next_dead;
};

struct ev_timer {
    uint64_t deadline;          /* clock_ns() */
    uint64_t seq;               /* ties broken in order of creation */
    size_t heap_index;
    ev_fn *fn;
    void *opaque;
};

struct defer_call {
    ev_fn *fn;
    void *opaque;
};

/* A growable array of deferred calls; its storage is reused between batches
 * so that deferring allocates only while the queue grows. */
struct defer_vec {
    struct defer_call *v;
    size_t n, cap;
};

struct event_loop {
    int epfd;
    int wake_fd;                        /* eventfd: deferred calls, ev_stop */

    struct ev_fd_entry **fds;           /* indexed by fd number */
    size_t fds_cap;
    struct ev_fd_entry *dead;           /* removed while dispatching */
    int depth;                          /* nesting of ev_run_once */

    struct ev_timer **heap;             /* min-heap on (deadline, seq) */
    size_t nheap, heap_cap;
    uint64_t timer_seq;

    pthread_mutex_t defer_lock;         /* guards the three fields below */
    struct defer_vec defer_q;           /* filled by ev_defer */
    struct defer_vec defer_spare;       /* emptied storage kept for reuse */
    /* wake_fd written, not yet drained; read without the lock to look
     * for deferred calls on iterations that skip epoll_wait. */
    atomic_bool wake_pending;

    struct ev_soon *soon_head, **soon_tail;     /* FIFO of ev_soon */
    uint64_t soon_gen;                  /* bumped when a batch starts */
    unsigned soon_skips;                /* epoll_wait calls skipped in a row */

    atomic_bool stop;
};

uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

bool ev_inline_allowed(const struct ev_inline *p, uint64_t now)
{
    return now >= p->resume_ns;
}

bool ev_inline_record(struct ev_inline *p, uint64_t start, uint64_t end)
{
    if (!p->last_ns) {
        p->budget_ns = (int64_t)EV_INLINE_BUDGET_NS;   /* a fresh start */
    } else if (start > p->last_ns) {
        p->budget_ns += (int64_t)((start - p->last_ns) / EV_INLINE_SHARE);
        if (p->budget_ns > (int64_t)EV_INLINE_BUDGET_NS) {
            p->budget_ns = (int64_t)EV_INLINE_BUDGET_NS;
        }
    }
    p->last_ns = start;
    uint64_t took = end > start ? end - start : 0;
    if (took <= EV_INLINE_SLOW_NS) {
        return false;
    }
    p->budget_ns -= (int64_t)took;
    if (p->budget_ns >= 0) {
        return false;
    }
    /* Earn the overdraft back (EV_INLINE_SHARE times its length) before
     * running here again; the budget is then empty. */
    p->resume_ns = end + (uint64_t)(-p->budget_ns) * EV_INLINE_SHARE;
    p->last_ns = p->resume_ns;
    p->budget_ns = 0;
    return true;
}

struct event_loop *ev_loop_new(struct error **errp)
{
    struct event_loop *loop = calloc(1, sizeof(*loop));
    if (!loop) {
        error_setg_errno(errp, ENOMEM, "Cannot allocate event loop");
        return NULL;
    }
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        error_setg_errno(errp, errno, "epoll_create1");
        goto out_free_loop;
    }
    loop->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (loop->wake_fd < 0) {
        error_setg_errno(errp, errno, "eventfd");
        goto out_close_epfd;
    }
    /* data.ptr == NULL marks the wake-up eventfd: no entry is ever NULL. */
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wake_fd, &ev) < 0) {
        error_setg_errno(errp, errno, "epoll_ctl");
        goto out_close_wake;
    }
    pthread_mutex_init(&loop->defer_lock, NULL);
    atomic_init(&loop->stop, false);
    atomic_init(&loop->wake_pending, false);
    loop->soon_tail = &loop->soon_head;
    return loop;

out_close_wake:
    close(loop->wake_fd);
out_close_epfd:
    close(loop->epfd);
out_free_loop:
    free(loop);
    return NULL;
}

static void free_dead(struct event_loop *loop)
{
    while (loop->dead) {
        struct ev_fd_entry *e = loop->dead;
        loop->dead = e->next_dead;
        free(e);
    }
}

/* Pending deferred calls and timers are dropped, not run. */
void ev_loop_free(struct event_loop *loop)
{
    if (!loop) {
        return;
    }
    assert(loop->depth == 0);
    for (size_t i = 0; i < loop->fds_cap; i++) {
        free(loop->fds[i]);
    }
    free(loop->fds);
    free_dead(loop);
    for (size_t i = 0; i < loop->nheap; i++) {
        free(loop->heap[i]);
    }
    free(loop->heap);
    free(loop->defer_q.v);
    free(loop->defer_spare.v);
    pthread_mutex_destroy(&loop->defer_lock);
    close(loop->wake_fd);
    close(loop->epfd);
    free(loop);
}

/* ------------------------------------------------------------------ */
/* fd handlers                                                         */
/* ------------------------------------------------------------------ */

static struct ev_fd_entry *fd_lookup(struct event_loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->fds_cap) {
        return NULL;
    }
    return loop->fds[fd];
}

int ev_fd_add(struct event_loop *loop, int fd, uint32_t events,
              ev_fd_fn *fn, void *opaque)
{
    if (fd < 0 || !fn) {
        return -EINVAL;
    }
    if (fd_lookup(loop, fd)) {
        return -EEXIST;
    }
    if ((size_t)fd >= loop->fds_cap) {
        size_t cap = MAX(loop->fds_cap * 2, (size_t)fd + 1);
        cap = MAX(cap, 64);
        struct ev_fd_entry **fds = realloc(loop->fds, cap * sizeof(*fds));
        if (!fds) {
            return -ENOMEM;
        }
        memset(fds + loop->fds_cap, 0, (cap - loop->fds_cap) * sizeof(*fds));
        loop->fds = fds;
        loop->fds_cap = cap;
    }
    struct ev_fd_entry *e = calloc(1, sizeof(*e));
    if (!e) {
        return -ENOMEM;
    }
    e->fd = fd;
    e->events = events;
    e->fn = fn;
    e->opaque = opaque;
    struct epoll_event ev = { .events = events, .data.ptr = e };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int ret = -errno;
        free(e);
        return ret;
    }
    loop->fds[fd] = e;
    return 0;
}

int ev_fd_modify(struct event_loop *loop, int fd, uint32_t events)
{
    struct ev_fd_entry *e = fd_lookup(loop, fd);
    if (!e) {
        return -ENOENT;
    }
    if (e->events == events) {
        return 0;
    }
    struct epoll_event ev = { .events = events, .data.ptr = e };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
        return -errno;
    }
    e->events = events;
    return 0;
}

void ev_fd_remove(struct event_loop *loop, int fd)
{
    struct ev_fd_entry *e = fd_lookup(loop, fd);
    if (!e) {
        return;
    }
    /* EBADF here means the caller closed the fd first; the kernel already
     * dropped it from the epoll set then, so nothing is left to undo. */
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    loop->fds[fd] = NULL;
    e->fn = NULL;
    if (loop->depth > 0) {
        e->next_dead = loop->dead;
        loop->dead = e;
    } else {
        free(e);
    }
}

/* ------------------------------------------------------------------ */
/* Timers                                                              */
/* ------------------------------------------------------------------ */

static bool timer_before(const struct ev_timer *a, const struct ev_timer *b)
{
    return a->deadline < b->deadline ||
           (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_set(struct event_loop *loop, size_t i, struct ev_timer *t)
{
    loop->heap[i] = t;
    t->heap_index = i;
}

static void heap_sift_up(struct event_loop *loop, size_t i)
{
    struct ev_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent])) {
            break;
        }
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_sift_down(struct event_loop *loop, size_t i)
{
    struct ev_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->nheap) {
            break;
        }
        if (child + 1 < loop->nheap &&
            timer_before(loop->heap[child + 1], loop->heap[child])) {
            child++;
        }
        if (!timer_before(loop->heap[child], t)) {
            break;
        }
        heap_set(loop, i, loop->heap[child]);
        i = child;
    }
    heap_set(loop, i, t);
}

static void heap_remove(struct event_loop *loop, struct ev_timer *t)
{
    size_t i = t->heap_index;
    assert(i < loop->nheap && loop->heap[i] == t);
    struct ev_timer *last = loop->heap[--loop->nheap];
    if (last != t) {
        heap_set(loop, i, last);
        heap_sift_down(loop, i);
        heap_sift_up(loop, last->heap_index);
    }
}

struct ev_timer *ev_timer_add(struct event_loop *loop, uint64_t ms,
                              ev_fn *fn, void *opaque)
{
    if (loop->nheap == loop->heap_cap) {
        size_t cap = MAX(loop->heap_cap * 2, 16);
        struct ev_timer **heap = realloc(loop->heap, cap * sizeof(*heap));
        if (!heap) {
            return NULL;
        }
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    struct ev_timer *t = malloc(sizeof(*t));
    if (!t) {
        return NULL;
    }
    uint64_t delta = ms > UINT64_MAX / 2000000 ? UINT64_MAX / 2 : ms * 1000000;
    t->deadline = clock_ns() + delta;
    t->seq = loop->timer_seq++;
    t->fn = fn;
    t->opaque = opaque;
    loop->heap[loop->nheap++] = t;
    heap_sift_up(loop, loop->nheap - 1);
    return t;
}

void ev_timer_cancel(struct event_loop *loop, struct ev_timer *t)
{
    if (!t) {
        return;
    }
    heap_remove(loop, t);
    free(t);
}

/*
 * Fire the timers due now. A timer added by one of these callbacks waits
 * for the next pass even with ms == 0, so a timer that re-arms itself
 * cannot starve the fds.
 */
static int run_timers(struct event_loop *loop)
{
    if (loop->nheap == 0) {
        return 0;       /* no clock read when no timer is armed */
    }
    uint64_t now = clock_ns();
    uint64_t seq_limit = loop->timer_seq;
    int ran = 0;
    while (loop->nheap > 0) {
        struct ev_timer *t = loop->heap[0];
        if (t->deadline > now || t->seq >= seq_limit) {
            break;
        }
        heap_remove(loop, t);
        ev_fn *fn = t->fn;
        void *opaque = t->opaque;
        free(t);
        fn(opaque);
        ran++;
    }
    return ran;
}

/* Milliseconds epoll may sleep: the caller's limit, shortened to the next
 * timer's deadline (rounded up so the timer is due when we wake). */
static int wait_timeout(struct event_loop *loop, int timeout_ms)
{
    if (loop->nheap == 0 || timeout_ms == 0) {
        return timeout_ms;
    }
    uint64_t now = clock_ns();
    uint64_t deadline = loop->heap[0]->deadline;
    if (deadline <= now) {
        return 0;
    }
    uint64_t ms = DIV_ROUND_UP(deadline - now, 1000000);
    if (ms > INT32_MAX) {
        ms = INT32_MAX;
    }
    if (timeout_ms < 0 || (uint64_t)timeout_ms > ms) {
        return (int)ms;
    }
    return timeout_ms;
}

/* ------------------------------------------------------------------ */
/* Deferred calls                                                      */
/* ------------------------------------------------------------------ */

static void wake(struct event_loop *loop)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: the loop wakes anyway. */
    ssize_t n = write(loop->wake_fd, &one, sizeof(one));
    (void)n;
}

int ev_defer(struct event_loop *loop, ev_fn *fn, void *opaque)
{
    pthread_mutex_lock(&loop->defer_lock);
    struct defer_vec *q = &loop->defer_q;
    if (q->n == q->cap) {
        size_t cap = MAX(q->cap * 2, 64);
        struct defer_call *v = realloc(q->v, cap * sizeof(*v));
        if (!v) {
            pthread_mutex_unlock(&loop->defer_lock);
            return -ENOMEM;
        }
        q->v = v;
        q->cap = cap;
    }
    q->v[q->n++] = (struct defer_call){ fn, opaque };
    /* One eventfd write per batch: later callers see the wake pending. */
    bool need_wake = !atomic_load_explicit(&loop->wake_pending, memory_order_relaxed);
    atomic_store_explicit(&loop->wake_pending, true, memory_order_relaxed);
    pthread_mutex_unlock(&loop->defer_lock);
    if (need_wake) {
        wake(loop);
    }
    return 0;
}

/*
 * Drain the eventfd, then take the whole queue at once and run it without
 * the lock. Calls deferred meanwhile go to the fresh queue and set off a
 * new wake-up, so they run at the next iteration. The order matters:
 * reading the eventfd after taking the queue could swallow the wake-up of
 * a call deferred in between.
 */
static int run_deferred(struct event_loop *loop)
{
    uint64_t cnt;
    ssize_t n = read(loop->wake_fd, &cnt, sizeof(cnt));
    (void)n;

    pthread_mutex_lock(&loop->defer_lock);
    struct defer_vec batch = loop->defer_q;
    loop->defer_q = loop->defer_spare;
    loop->defer_q.n = 0;
    loop->defer_spare = (struct defer_vec){ NULL, 0, 0 };
    atomic_store_explicit(&loop->wake_pending, false, memory_order_relaxed);
    pthread_mutex_unlock(&loop->defer_lock);

    size_t count = batch.n;
    for (size_t i = 0; i < count; i++) {
        batch.v[i].fn(batch.v[i].opaque);
    }

    /* Keep the storage for the next swap unless a nested run already did. */
    pthread_mutex_lock(&loop->defer_lock);
    if (!loop->defer_spare.v) {
        batch.n = 0;
        loop->defer_spare = batch;
        batch.v = NULL;
    }
    pthread_mutex_unlock(&loop->defer_lock);
    free(batch.v);
    return (int)count;
}

/* ------------------------------------------------------------------ */
/* Work queued on the loop's thread                                    */
/* ------------------------------------------------------------------ */

void ev_soon_init(struct ev_soon *s, ev_fn *fn, void *opaque)
{
    *s = (struct ev_soon){ .fn = fn, .opaque = opaque };
}

void ev_soon(struct event_loop *loop, struct ev_soon *s)
{
    if (s->pprev) {
        return;
    }
    s->gen = loop->soon_gen;
    s->next = NULL;
    s->pprev = loop->soon_tail;
    *loop->soon_tail = s;
    loop->soon_tail = &s->next;
}

void ev_soon_cancel(struct event_loop *loop, struct ev_soon *s)
{
    if (!s->pprev) {
        return;
    }
    *s->pprev = s->next;
    if (s->next) {
        s->next->pprev = s->pprev;
    } else {
        loop->soon_tail = s->pprev;
    }
    s->next = NULL;
    s->pprev = NULL;
}

/*
 * Run the entries queued before this call. They are taken off the shared
 * list one at a time (not as a detached batch) so that a nested
 * ev_run_once, or an ev_soon_cancel from a callback, sees a consistent
 * list; the generation stamp tells the old entries from new ones.
 */
static int run_soon(struct event_loop *loop)
{
    uint64_t gen = loop->soon_gen++;
    int ran = 0;
    struct ev_soon *s;
    while ((s = loop->soon_head) && s->gen <= gen) {
        ev_soon_cancel(loop, s);
        s->fn(s->opaque);
        ran++;
    }
    return ran;
}

/* ------------------------------------------------------------------ */
/* Running                                                             */
/* ------------------------------------------------------------------ */

int ev_run_once(struct event_loop *loop, int timeout_ms)
{
    struct epoll_event events[EV_BATCH];
    int n = 0;
    bool wake_seen = false;
    if (loop->soon_head && ++loop->soon_skips < EV_SOON_POLL_EVERY) {
        /* Ready work and no sleeping: the fds can wait a few iterations,
         * calls deferred from other threads need not. */
        wake_seen = atomic_load_explicit(&loop->wake_pending, memory_order_relaxed);
    } else {
        loop->soon_skips = 0;
        n = epoll_wait(loop->epfd, events, EV_BATCH,
                       loop->soon_head ? 0 : wait_timeout(loop, timeout_ms));
        if (n < 0) {
            n = 0;      /* EINTR: a signal; timers may still be due */
        }
    }

    int ran = 0;
    loop->depth++;
    for (int i = 0; i < n; i++) {
        struct ev_fd_entry *e = events[i].data.ptr;
        if (!e) {
            wake_seen = true;
            continue;
        }
        if (e->fn) {
            e->fn(e->opaque, events[i].events);
            ran++;
        }
    }
    ran += run_timers(loop);
    if (wake_seen) {
        ran += run_deferred(loop);
    }
    if (loop->soon_head) {
        ran += run_soon(loop);
    }
    if (--loop->depth == 0) {
        free_dead(loop);
    }
    return ran;
}

void ev_run(struct event_loop *loop)
{
    while (!atomic_load(&loop->stop)) {
        ev_run_once(loop, -1);
    }
    atomic_store(&loop->stop, false);
}

/* Also safe from other threads and signal handlers: a flag and a write. */
void ev_stop(struct event_loop *loop)
{
    atomic_store(&loop->stop, true);
    wake(loop);
}
