/*
 * util/thread-pool.c — runs blocking work (file I/O for the block layer) on
 * worker threads started on demand, and completes it on the event loop's
 * thread. Workers beyond need exit after an idle timeout.
 *
 * Completions go through the pool's own eventfd registered on the loop
 * rather than through ev_defer: tpool_free can then remove that handler and
 * run the pending `done` calls itself, leaving nothing queued in the loop
 * that still points at the freed pool. Either way a batch of completions
 * costs one eventfd write and one wake-up of the loop.
 */
#include "util/util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define TPOOL_IDLE_MS_DEFAULT 10000

struct thread_pool {
    struct event_loop *loop;
    int done_fd;                    /* eventfd: completions to run */
    unsigned max_threads;

    pthread_mutex_t lock;           /* guards everything below */
    pthread_cond_t work_cond;       /* work queued, or stopping */
    pthread_cond_t idle_cond;       /* all work finished, or a worker exited */
    struct tpool_req *work_head, **work_tail;
    struct tpool_req *done_head, **done_tail;
    bool done_signalled;            /* done_fd written since last drain */
    unsigned nthreads;              /* alive workers */
    unsigned idle;                  /* workers waiting for work */
    unsigned queued;                /* on the work list */
    unsigned running;               /* being worked on */
    unsigned idle_ms;
    bool stopping;
    bool waiting;                   /* tpool_free waits on idle_cond */
};

static void tpool_run_done(struct thread_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    struct tpool_req *req = pool->done_head;
    pool->done_head = NULL;
    pool->done_tail = &pool->done_head;
    pool->done_signalled = false;
    pthread_mutex_unlock(&pool->lock);

    while (req) {
        /* `done` may free or reuse req: read the link first. */
        struct tpool_req *next = req->next;
        tpool_done_fn *done = req->done;
        void *opaque = req->opaque;
        int ret = req->ret;
        if (req->owned) {
            free(req);
        }
        if (done) {
            done(opaque, ret);
        }
        req = next;
    }
}

static void tpool_done_event(void *opaque, uint32_t events)
{
    struct thread_pool *pool = opaque;
    uint64_t cnt;
    ssize_t n = read(pool->done_fd, &cnt, sizeof(cnt));
    (void)n;
    tpool_run_done(pool);
}

static void *tpool_worker(void *opaque)
{
    struct thread_pool *pool = opaque;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->work_head && !pool->stopping) {
            struct timespec deadline;
            clock_gettime(CLOCK_MONOTONIC, &deadline);
            deadline.tv_sec += pool->idle_ms / 1000;
            deadline.tv_nsec += (long)(pool->idle_ms % 1000) * 1000000;
            if (deadline.tv_nsec >= 1000000000) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000;
            }
            pool->idle++;
            int rc = pthread_cond_timedwait(&pool->work_cond, &pool->lock, &deadline);
            pool->idle--;
            if (rc == ETIMEDOUT && !pool->work_head) {
                goto out_exit;
            }
        }
        if (!pool->work_head) {
            goto out_exit;          /* stopping, nothing left */
        }
        struct tpool_req *req = pool->work_head;
        pool->work_head = req->next;
        if (!pool->work_head) {
            pool->work_tail = &pool->work_head;
        }
        pool->queued--;
        pool->running++;
        pthread_mutex_unlock(&pool->lock);

        req->ret = req->work ? req->work(req->opaque) : 0;

        pthread_mutex_lock(&pool->lock);
        req->next = NULL;
        *pool->done_tail = req;
        pool->done_tail = &req->next;
        bool signal = !pool->done_signalled;
        pool->done_signalled = true;
        pool->running--;
        if (pool->waiting && pool->running == 0 && pool->queued == 0) {
            pthread_cond_broadcast(&pool->idle_cond);
        }
        if (signal) {
            /* Written without the lock: the loop thread it wakes takes
             * the lock at once, and would otherwise wait for it (two more
             * futex calls and a context switch per completion). Safe, as
             * tpool_free closes done_fd only once every worker has exited,
             * which takes the lock again first. A write after tpool_free
             * or a nested run has collected the request is a spurious
             * wake-up, never a lost one: done_signalled was set with the
             * request queued. */
            pthread_mutex_unlock(&pool->lock);
            uint64_t one = 1;
            ssize_t n = write(pool->done_fd, &one, sizeof(one));
            (void)n;
            pthread_mutex_lock(&pool->lock);
        }
    }

out_exit:
    pool->nthreads--;
    if (pool->waiting) {
        pthread_cond_broadcast(&pool->idle_cond);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* Called with the lock held. Workers run with every signal blocked so that
 * signals reach the main thread. */
static int tpool_spawn(struct thread_pool *pool)
{
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_t tid;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&tid, &attr, tpool_worker, pool);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        return -rc;
    }
    pool->nthreads++;
    return 0;
}

struct thread_pool *tpool_new(struct event_loop *loop, unsigned max_threads,
                              struct error **errp)
{
    struct thread_pool *pool = calloc(1, sizeof(*pool));
    if (!pool) {
        error_setg_errno(errp, ENOMEM, "Cannot allocate thread pool");
        return NULL;
    }
    pool->loop = loop;
    pool->max_threads = max_threads ? max_threads : 1;
    pool->idle_ms = TPOOL_IDLE_MS_DEFAULT;
    pool->work_tail = &pool->work_head;
    pool->done_tail = &pool->done_head;
    pool->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (pool->done_fd < 0) {
        error_setg_errno(errp, errno, "eventfd");
        goto out_free_pool;
    }
    int ret = ev_fd_add(loop, pool->done_fd, EPOLLIN, tpool_done_event, pool);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Cannot watch thread pool eventfd");
        goto out_close_fd;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_condattr_t cattr;
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&pool->work_cond, &cattr);
    pthread_cond_init(&pool->idle_cond, &cattr);
    pthread_condattr_destroy(&cattr);
    return pool;

out_close_fd:
    close(pool->done_fd);
out_free_pool:
    free(pool);
    return NULL;
}

static int tpool_enqueue(struct thread_pool *pool, struct tpool_req *req,
                         tpool_work_fn *work, tpool_done_fn *done, void *opaque,
                         bool owned)
{
    req->next = NULL;
    req->work = work;
    req->done = done;
    req->opaque = opaque;
    req->ret = 0;
    req->owned = owned;

    pthread_mutex_lock(&pool->lock);
    /* Start a worker when the queue would outgrow the idle ones. */
    if (pool->queued + 1 > pool->idle && pool->nthreads < pool->max_threads) {
        int ret = tpool_spawn(pool);
        if (ret < 0 && pool->nthreads == 0) {
            pthread_mutex_unlock(&pool->lock);
            return -EAGAIN;
        }
    }
    *pool->work_tail = req;
    pool->work_tail = &req->next;
    pool->queued++;
    if (pool->idle > 0) {
        pthread_cond_signal(&pool->work_cond);
    }
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

int tpool_submit_req(struct thread_pool *pool, struct tpool_req *req,
                     tpool_work_fn *work, tpool_done_fn *done, void *opaque)
{
    return tpool_enqueue(pool, req, work, done, opaque, false);
}

int tpool_submit(struct thread_pool *pool, tpool_work_fn *work,
                 tpool_done_fn *done, void *opaque)
{
    struct tpool_req *req = malloc(sizeof(*req));
    if (!req) {
        return -ENOMEM;
    }
    if (tpool_enqueue(pool, req, work, done, opaque, true) < 0) {
        free(req);
        return -ENOMEM;     /* no thread could be started: out of resources */
    }
    return 0;
}

void tpool_set_idle_timeout(struct thread_pool *pool, unsigned ms)
{
    pthread_mutex_lock(&pool->lock);
    pool->idle_ms = ms;
    /* Waiting workers pick the new timeout up on their next wait. */
    pthread_cond_broadcast(&pool->work_cond);
    pthread_mutex_unlock(&pool->lock);
}

unsigned tpool_thread_count(struct thread_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    unsigned n = pool->nthreads;
    pthread_mutex_unlock(&pool->lock);
    return n;
}

/*
 * Must run on the loop's thread, outside this pool's own `done` callbacks.
 * A `done` call may submit more work; that is waited for too.
 */
void tpool_free(struct thread_pool *pool)
{
    if (!pool) {
        return;
    }
    pthread_mutex_lock(&pool->lock);
    pool->waiting = true;
    for (;;) {
        while (pool->queued > 0 || pool->running > 0) {
            pthread_cond_wait(&pool->idle_cond, &pool->lock);
        }
        if (!pool->done_head) {
            break;
        }
        pthread_mutex_unlock(&pool->lock);
        tpool_run_done(pool);
        pthread_mutex_lock(&pool->lock);
    }
    pool->stopping = true;
    pthread_cond_broadcast(&pool->work_cond);
    while (pool->nthreads > 0) {
        pthread_cond_wait(&pool->idle_cond, &pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);

    ev_fd_remove(pool->loop, pool->done_fd);
    close(pool->done_fd);
    pthread_cond_destroy(&pool->work_cond);
    pthread_cond_destroy(&pool->idle_cond);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}
