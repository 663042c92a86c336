/*
 * block/nbd.c — the nbd protocol driver: a node backed by an NBD export,
 * reached through libnbd from an nbd://, nbds://, nbd+unix:// or
 * nbds+unix:// URI (block/options.c turns QEMU's server.* options into
 * one). Many requests are in flight at once on the one connection: callers
 * issue libnbd aio commands, one waiting caller at a time drives the
 * socket for all, and a watchdog thread per node enforces the deadlines.
 * A request not answered within `timeout` seconds fails with ETIMEDOUT and
 * drops the connection; later requests then fail with EIO, or with
 * `reconnect-delay` wait that long for a new connection to the same export
 * (requests the drop failed are sent once more on it).
 * A read-only export makes the node read-only when auto-read-only is on
 * and is refused otherwise; block status passes base:allocation through.
 */
#include "block/block-int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <libnbd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* Seconds a request (and the handshake) may take when the node does not
 * say; 0 in the options means no limit. */
#define NBD_CLIENT_DEFAULT_TIMEOUT 30

/*
 * The libnbd commands one caller waits for together (a request split at
 * the server's maximum size, or a single command). Lives on the caller's
 * stack; linked in the node's list while commands are out, so the watchdog
 * can find overdue ones. Members below `next` are under the node's mu.
 */
struct nbd_client_batch {
    struct nbd_client_state *s;
    struct nbd_client_batch *next, **pprev;
    uint64_t deadline;          /* clock_ns(); 0 = none */
    unsigned pending;           /* commands whose free callback has not run */
    int err;                    /* first failure, positive errno */
    bool timed_out;             /* the watchdog gave up on it */
    bool lost;                  /* failed because the connection went */
    unsigned gen;               /* s->gen when it started */
    struct nbd_client_batch *wake_next; /* in s->to_wake */
    bool wake_queued;
    pthread_cond_t cond;        /* signalled when pending drops to 0, or
                                 * to hand the caller the lead */
};

struct nbd_client_state {
    struct nbd_handle *h;
    bool can_flush, can_fua, can_trim, can_zero, can_fast_zero;
    bool has_alloc;             /* base:allocation was negotiated */
    uint64_t chunk;             /* largest command we send */
    uint64_t timeout_ns;        /* per request; 0 = none */
    uint64_t reconnect_ns;      /* how long requests wait for a reconnection */
    char *uri;                  /* what we connect to (reconnections too) */

    struct bdrv_node *bs;       /* for messages: bs->filename */
    int wake_fd;                /* eventfd: the watchdog's (deadline, stop) */
    int kick_fd;                /* eventfd: the leader's (bytes left to send) */
    pthread_t watchdog;
    bool watchdog_running;

    pthread_mutex_t mu;         /* protects what follows and every batch */
    struct nbd_client_batch *batches;   /* waiting callers */
    uint64_t poll_deadline;     /* when the watchdog wakes by itself; 0 = never */
    bool dead;                  /* connection gone: fail fast with EIO */
    int fd;                     /* the socket, for the watchdog; -1 once h is
                                 * being replaced */
    unsigned gen;               /* connections made so far */
    bool reconnecting;          /* a caller is making a new connection */
    bool broken;                /* the export changed: no more reconnecting */
    uint64_t next_try;          /* no reconnection attempt before (clock_ns()) */
    pthread_cond_t reconn_cond; /* a reconnection ended, or a batch left
                                 * while the connection is dead */
    bool leading;               /* a caller drives the socket */
    pthread_t leader;           /* which, while leading */
    /* Batches the leader completed while inside libnbd: woken once it is
     * out, so they do not wake only to wait for the handle's lock. */
    struct nbd_client_batch *to_wake;
    bool said_gone;             /* the loss of the connection was logged */
    bool closing;               /* close: a disconnect is no news */
    bool stopping;              /* close: the watchdog exits */
};

/* libnbd's errno for the last failure on this thread, as -errno; a broken
 * connection becomes -EIO. */
static int nbd_client_errno_map(int e)
{
    if (e == 0 || e == ENOTCONN || e == ESHUTDOWN || e == EPIPE ||
        e == ECONNRESET) {
        return -EIO;
    }
    return -e;
}

static int nbd_client_err(void)
{
    return nbd_client_errno_map(nbd_get_errno());
}
/* A formatted string in new memory, or NULL. */
static char *__attribute__((format(printf, 1, 2))) nbd_client_printf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

/* One %XX escape of a URI component, or -1. */
static int nbd_client_hex(const char *p)
{
    int v = 0;
    for (int i = 0; i < 2; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= c - '0';
        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            v |= (c | 0x20) - 'a' + 10;
        } else {
            return -1;
        }
    }
    return v;
}

/* The first n bytes of s with %XX escapes decoded (malformed escapes kept). */
static char *nbd_client_unescape(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    if (!out) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        int v;
        if (s[i] == '%' && i + 2 < n &&
            (v = nbd_client_hex(s + i + 1)) > 0) {
            *o++ = (char)v;
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = 0;
    return out;
}

/*
 * The node's name as QEMU prints it for the same export:
 * "nbd+unix:///EXPORT?socket=PATH", "nbd+unix://?socket=PATH" when the
 * export name is empty, "nbd://HOST:PORT/EXPORT" or "nbd://HOST:PORT"
 * (the port always written, 10809 when the URI has none). NULL for forms
 * QEMU has no such name for (TLS schemes, IPv6 hosts, odd URIs): the node
 * then keeps the URI as given.
 */
static char *nbd_client_canon_name(const char *uri)
{
    bool is_unix = !strncmp(uri, "nbd+unix://", 11);
    if (!is_unix && strncmp(uri, "nbd://", 6)) {
        return NULL;
    }
    const char *auth = uri + (is_unix ? 11 : 6);
    size_t alen = strcspn(auth, "/?#");
    const char *path = auth + alen;
    size_t plen = *path == '/' ? strcspn(path, "?#") : 0;
    const char *query = path + plen;
    if (*query == '#' || (*query == '?' && strchr(query, '#'))) {
        return NULL;
    }
    char *export = plen > 1 ? nbd_client_unescape(path + 1, plen - 1) : strdup("");
    char *name = NULL;
    if (!export) {
        return NULL;
    }
    if (is_unix) {
        const char *sock = NULL;
        for (const char *q = *query == '?' ? query + 1 : ""; *q;) {
            size_t n = strcspn(q, "&");
            if (!strncmp(q, "socket=", 7)) {
                sock = q + 7;
                char *path_s = nbd_client_unescape(sock, n - 7);
                if (path_s && alen == 0) {
                    if (*export) {
                        name = nbd_client_printf("nbd+unix:///%s?socket=%s",
                                                       export, path_s);
                    } else {
                        name = nbd_client_printf("nbd+unix://?socket=%s", path_s);
                    }
                }
                free(path_s);
                break;
            }
            q += n + (q[n] == '&');
        }
    } else if (*query == 0 && alen > 0 && auth[0] != '[') {
        const char *colon = memchr(auth, ':', alen);
        size_t hlen = colon ? (size_t)(colon - auth) : alen;
        const char *port = colon ? colon + 1 : "10809";
        int portlen = colon ? (int)(alen - hlen - 1) : 5;
        if (hlen > 0 && portlen > 0) {
            if (*export) {
                name = nbd_client_printf("nbd://%.*s:%.*s/%s", (int)hlen, auth,
                                               portlen, port, export);
            } else {
                name = nbd_client_printf("nbd://%.*s:%.*s", (int)hlen, auth,
                                               portlen, port);
            }
        }
    }
    free(export);
    return name;
}


/* Parse SECONDS (a `name=` value of n bytes at v) into *ns. */
static int nbd_client_secs(const char *name, const char *hint, const char *v,
                           size_t n, uint64_t *ns, struct error **errp)
{
    char val[64];
    snprintf(val, sizeof(val), "%.*s", (int)MIN(n, sizeof(val) - 1), v);
    char *end;
    errno = 0;
    double secs = strtod(val, &end);
    if (!val[0] || *end || errno || !isfinite(secs) || secs < 0 || secs > 1e6 ||
        n >= sizeof(val)) {
        error_setg(errp, "Parameter '%s' expects a number of seconds%s: '%.*s'",
                   name, hint, (int)n, v);
        return -EINVAL;
    }
    *ns = (uint64_t)(secs * 1e9 + 0.5);
    return 0;
}

/*
 * Take `timeout=SECONDS` and `reconnect-delay=SECONDS` out of the URI's
 * query (libnbd does not know them, and QEMU's name for the export has
 * none). *clean gets the URI without them; *timeout_ns and *delay_ns the
 * values, or the defaults when absent (30 s, 0).
 */
static int nbd_client_take_params(const char *uri, char **clean, uint64_t *timeout_ns,
                                  uint64_t *delay_ns, struct error **errp)
{
    *timeout_ns = (uint64_t)NBD_CLIENT_DEFAULT_TIMEOUT * 1000000000u;
    *delay_ns = 0;
    const char *q = strchr(uri, '?');
    size_t qend = q ? strcspn(q, "#") : 0;
    char *out = malloc(strlen(uri) + 1);
    if (!out) {
        error_setg(errp, "Out of memory");
        return -ENOMEM;
    }
    if (!q) {
        strcpy(out, uri);
        *clean = out;
        return 0;
    }
    size_t n = (size_t)(q - uri);
    memcpy(out, uri, n);
    char sep = '?';
    for (const char *p = q + 1; p < q + qend;) {
        size_t len = strcspn(p, "&#");
        if (len >= 8 && !strncmp(p, "timeout=", 8)) {
            if (nbd_client_secs("timeout", " (0 = no limit)", p + 8, len - 8,
                                timeout_ns, errp) < 0) {
                free(out);
                return -EINVAL;
            }
        } else if (len >= 16 && !strncmp(p, "reconnect-delay=", 16)) {
            if (nbd_client_secs("reconnect-delay", " (0 = no reconnecting)", p + 16,
                                len - 16, delay_ns, errp) < 0) {
                free(out);
                return -EINVAL;
            }
        } else if (len > 0) {
            out[n++] = sep;
            memcpy(out + n, p, len);
            n += len;
            sep = '&';
        }
        p += len + (p[len] == '&');
    }
    strcpy(out + n, q + qend);
    *clean = out;
    return 0;
}

static void nbd_client_wake(struct nbd_client_state *s)
{
    uint64_t one = 1;
    if (write(s->wake_fd, &one, sizeof(one)) < 0) {
        /* the counter is already non-zero: the watchdog will wake anyway */
    }
}

/* Runs when a command finished (possibly with an error). */
static int nbd_client_cmd_done(void *opaque, int *error)
{
    struct nbd_client_batch *b = opaque;
    if (*error) {
        pthread_mutex_lock(&b->s->mu);
        if (!b->err) {
            b->err = *error;
        }
        pthread_mutex_unlock(&b->s->mu);
    }
    return 1;   /* retire the command */
}

/* Runs exactly once per command issued, last, also when issuing failed:
 * after it libnbd no longer touches the batch or the buffers. */
static void nbd_client_cmd_free(void *opaque)
{
    struct nbd_client_batch *b = opaque;
    struct nbd_client_state *s = b->s;
    pthread_mutex_lock(&s->mu);
    if (--b->pending == 0) {
        if (s->leading && pthread_equal(s->leader, pthread_self())) {
            if (!b->wake_queued) {
                b->wake_queued = true;
                b->wake_next = s->to_wake;
                s->to_wake = b;
            }
        } else {
            pthread_cond_signal(&b->cond);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

static nbd_completion_callback nbd_client_cb(struct nbd_client_batch *b)
{
    return (nbd_completion_callback){ .callback = nbd_client_cmd_done,
                                      .user_data = b,
                                      .free = nbd_client_cmd_free };
}

static int nbd_client_await_reconnect(struct nbd_client_state *s);

/* Start a batch: -EIO at once when the connection is gone (or, with
 * reconnect-delay, when no new one comes within it). */
static int nbd_client_batch_start(struct nbd_client_state *s,
                                  struct nbd_client_batch *b)
{
    *b = (struct nbd_client_batch){ .s = s };
    pthread_mutex_lock(&s->mu);
    if (s->dead && nbd_client_await_reconnect(s) < 0) {
        pthread_mutex_unlock(&s->mu);
        return -EIO;
    }
    b->gen = s->gen;
    pthread_cond_init(&b->cond, NULL);
    if (s->timeout_ns) {
        b->deadline = clock_ns() + s->timeout_ns;
    }
    b->next = s->batches;
    b->pprev = &s->batches;
    if (s->batches) {
        s->batches->pprev = &b->next;
    }
    s->batches = b;
    /* The watchdog must know of a deadline earlier than the one it sleeps
     * until (with one timeout for all, only when it sleeps without one). */
    bool wake = b->deadline && (!s->poll_deadline || b->deadline < s->poll_deadline);
    if (wake) {
        s->poll_deadline = b->deadline;
    }
    pthread_mutex_unlock(&s->mu);
    if (wake) {
        nbd_client_wake(s);
    }
    return 0;
}

/* Count a command about to be issued (its free callback uncounts it). */
static void nbd_client_batch_add(struct nbd_client_batch *b)
{
    pthread_mutex_lock(&b->s->mu);
    b->pending++;
    pthread_mutex_unlock(&b->s->mu);
}

/* Note why issuing a command failed (libnbd's error is this thread's). */
static void nbd_client_batch_fail(struct nbd_client_batch *b)
{
    int e = nbd_get_errno();
    pthread_mutex_lock(&b->s->mu);
    if (!b->err) {
        b->err = e ? e : EIO;
    }
    pthread_mutex_unlock(&b->s->mu);
}

/* Poll events for libnbd's socket in its current direction. */
static short nbd_client_events(struct nbd_handle *h)
{
    unsigned dir = nbd_aio_get_direction(h);
    short ev = 0;
    if (dir & LIBNBD_AIO_DIRECTION_READ) {
        ev |= POLLIN;
    }
    if (dir & LIBNBD_AIO_DIRECTION_WRITE) {
        ev |= POLLOUT;
    }
    return ev;
}

/* Tell libnbd what the socket is ready for. */
static void nbd_client_notify(struct nbd_handle *h, short revents)
{
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        nbd_aio_notify_read(h);
    }
    if ((revents & POLLOUT) && nbd_aio_get_direction(h) & LIBNBD_AIO_DIRECTION_WRITE) {
        nbd_aio_notify_write(h);
    }
}

static void nbd_client_drain(int fd)
{
    uint64_t v;
    if (read(fd, &v, sizeof(v)) < 0) {
        /* nothing to drain */
    }
}

/* The connection is gone (libnbd failed every command in flight). */
static void nbd_client_gone(struct nbd_client_state *s)
{
    pthread_mutex_lock(&s->mu);
    s->dead = true;
    bool say = !s->said_gone && !s->closing;
    s->said_gone = true;
    pthread_mutex_unlock(&s->mu);
    if (say && s->reconnect_ns) {
        log_warn("NBD server %s closed the connection; reconnecting (requests "
                 "wait up to %.3g s)", s->bs->filename, (double)s->reconnect_ns / 1e9);
    } else if (say) {
        log_warn("NBD server %s closed the connection; requests on it fail",
                 s->bs->filename);
    }
}

/* Wake the batches the leader completed. Called under mu. */
static void nbd_client_flush_wakes(struct nbd_client_state *s)
{
    while (s->to_wake) {
        struct nbd_client_batch *b = s->to_wake;
        s->to_wake = b->wake_next;
        b->wake_queued = false;
        pthread_cond_signal(&b->cond);
    }
}

/*
 * Drive the socket for every caller until batch b is complete: send what
 * libnbd has queued, read replies (their callbacks complete other
 * callers' batches too). Only the leader does this, so a reply wakes one
 * thread, the one that then needs it most often. An overdue request
 * ends it through the watchdog, which shuts the socket down.
 */
static void nbd_client_lead(struct nbd_client_state *s, struct nbd_client_batch *b)
{
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool done = b->pending == 0;
        pthread_mutex_unlock(&s->mu);
        if (done) {
            return;
        }
        struct pollfd pfd[2] = {
            { .fd = s->kick_fd, .events = POLLIN },
            { .fd = nbd_aio_get_fd(s->h) },
        };
        if (pfd[1].fd >= 0) {
            pfd[1].events = nbd_client_events(s->h);
        }
        /* Without a socket libnbd has already failed every command; the
         * timeout only guards against waiting on a count gone wrong. */
        if (poll(pfd, 2, pfd[1].fd >= 0 ? -1 : 100) < 0) {
            continue;   /* EINTR */
        }
        if (pfd[0].revents & POLLIN) {
            nbd_client_drain(s->kick_fd);
        }
        if (pfd[1].fd >= 0 && pfd[1].revents) {
            nbd_client_notify(s->h, pfd[1].revents);
        }
        /* before the wakes: a woken caller sees why its commands failed */
        if (nbd_aio_is_dead(s->h) || nbd_aio_is_closed(s->h)) {
            nbd_client_gone(s);
        }
        pthread_mutex_lock(&s->mu);
        nbd_client_flush_wakes(s);
        pthread_mutex_unlock(&s->mu);
    }
}

/* With nobody leading, wake a caller whose batch is still pending to take
 * the lead (it may be waiting for one). Called under mu. */
static void nbd_client_handoff(struct nbd_client_state *s, struct nbd_client_batch *skip)
{
    for (struct nbd_client_batch *o = s->batches; o; o = o->next) {
        if (o != skip && o->pending) {
            pthread_cond_signal(&o->cond);
            return;
        }
    }
}

/*
 * Wait for every command of the batch; returns 0 or -errno. One waiting
 * caller at a time leads (drives the socket); the others sleep until
 * their batch completes or the lead is handed to them.
 */
static int nbd_client_batch_wait(struct nbd_client_batch *b)
{
    struct nbd_client_state *s = b->s;
    /* libnbd sends a command from the caller's thread while the socket
     * takes it; what is left is the leader's to send, and it may be
     * waiting for replies only. */
    if (nbd_aio_get_direction(s->h) & LIBNBD_AIO_DIRECTION_WRITE) {
        uint64_t one = 1;
        if (write(s->kick_fd, &one, sizeof(one)) < 0) {
            /* already kicked */
        }
    }
    pthread_mutex_lock(&s->mu);
    while (b->pending) {
        if (!s->leading) {
            s->leading = true;
            s->leader = pthread_self();
            pthread_mutex_unlock(&s->mu);
            nbd_client_lead(s, b);
            pthread_mutex_lock(&s->mu);
            s->leading = false;
            continue;
        }
        pthread_cond_wait(&b->cond, &s->mu);
    }
    if (b->err && !s->dead && !b->timed_out) {
        /* commands refused at once on a connection nobody has seen end
         * (the batch is still listed, so s->h stays) */
        pthread_mutex_unlock(&s->mu);
        if (nbd_aio_is_dead(s->h) || nbd_aio_is_closed(s->h)) {
            nbd_client_gone(s);
        }
        pthread_mutex_lock(&s->mu);
    }
    if (!s->leading) {
        nbd_client_handoff(s, b);
    }
    if (b->wake_queued) {
        /* completed by the leader before we waited: off its list */
        struct nbd_client_batch **pp = &s->to_wake;
        while (*pp != b) {
            pp = &(*pp)->wake_next;
        }
        *pp = b->wake_next;
    }
    *b->pprev = b->next;
    if (b->next) {
        b->next->pprev = b->pprev;
    }
    int ret = b->timed_out ? -ETIMEDOUT : b->err ? nbd_client_errno_map(b->err) : 0;
    if (b->err && b->err != EIO && nbd_client_errno_map(b->err) == -EIO && !s->dead &&
        s->reconnect_ns) {
        /* The connection failed the batch (ENOTCONN, EPIPE...) before the
         * leader saw it end, or the server is shutting down (qemu-nbd
         * answers what is in flight with ESHUTDOWN when stopped): leave
         * it now, and send this again on the next connection. */
        s->dead = true;
        if (s->fd >= 0) {
            shutdown(s->fd, SHUT_RDWR);
        }
    }
    b->lost = ret < 0 && !b->timed_out && s->reconnect_ns &&
              (s->dead || s->gen != b->gen);
    if (s->dead) {
        pthread_cond_broadcast(&s->reconn_cond);   /* one batch fewer on it */
    }
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&b->cond);
    return ret;
}

/*
 * The watchdog: gives up on the connection when a batch is overdue (the
 * server stopped answering but kept the socket open): the socket is shut
 * down and every batch on it fails with ETIMEDOUT, overdue or not (they
 * all wait on the silent server) — unless a reconnection will re-send
 * them, in which case libnbd fails them as lost when the leader reads the
 * end of the connection.
 */
static void *nbd_client_watchdog(void *opaque)
{
    struct nbd_client_state *s = opaque;

    for (;;) {
        bool expired = false;
        uint64_t next = 0, now = clock_ns();
        pthread_mutex_lock(&s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        for (struct nbd_client_batch *b = s->batches; b; b = b->next) {
            if (!b->deadline || b->timed_out) {
                continue;
            }
            if (b->deadline <= now) {
                b->timed_out = true;
                expired = true;
            } else if (!next || b->deadline < next) {
                next = b->deadline;
            }
        }
        bool kill = expired && !s->dead;
        if (kill) {
            s->dead = true;
            s->said_gone = true;
            for (struct nbd_client_batch *b = s->batches; b && !s->reconnect_ns; b = b->next) {
                b->timed_out = b->timed_out || b->pending > 0;
            }
        }
        if (expired && !s->leading) {
            /* someone must read the end of the connection */
            nbd_client_handoff(s, NULL);
        }
        s->poll_deadline = next;
        if (kill) {
            /* logged before the requests fail; the socket is shut down
             * under mu, as a reconnection sets s->fd to -1 before closing it */
            log_error("NBD server %s did not answer within %.3g s; connection "
                      "dropped, requests on it %s", s->bs->filename,
                      (double)s->timeout_ns / 1e9,
                      s->reconnect_ns ? "wait for a reconnection" : "fail");
            if (s->fd >= 0) {
                shutdown(s->fd, SHUT_RDWR);
            }
        }
        pthread_mutex_unlock(&s->mu);
        struct pollfd pfd = { .fd = s->wake_fd, .events = POLLIN };
        int timeout_ms = -1;
        if (next) {
            uint64_t left = next > now ? next - now : 0;
            timeout_ms = (int)MIN(left / 1000000 + 1, (uint64_t)INT32_MAX);
        }
        if (poll(&pfd, 1, timeout_ms) > 0) {
            nbd_client_drain(s->wake_fd);
        }
    }
    return NULL;
}

/* Run the handshake libnbd started on h to its end, by the deadline
 * (clock_ns(); 0 = none). */
static int nbd_client_handshake(struct nbd_client_state *s, struct nbd_handle *h,
                                uint64_t deadline, const char *name, struct error **errp)
{
    while (nbd_aio_is_connecting(h) == 1) {
        struct pollfd pfd = { .fd = nbd_aio_get_fd(h) };
        if (pfd.fd < 0) {
            break;
        }
        pfd.events = nbd_client_events(h);
        int timeout_ms = -1;
        if (deadline) {
            uint64_t now = clock_ns();
            if (now >= deadline) {
                error_setg(errp, "Could not open '%s': the server did not finish "
                           "the handshake within %.3g s", name,
                           (double)s->timeout_ns / 1e9);
                bdrv_error_errnum(errp, ETIMEDOUT);
                return -ETIMEDOUT;
            }
            timeout_ms = (int)MIN((deadline - now) / 1000000 + 1, (uint64_t)INT32_MAX);
        }
        int n = poll(&pfd, 1, timeout_ms);
        if (n < 0 && errno != EINTR) {
            int e = errno;
            error_setg(errp, "Could not open '%s': poll: %s", name, strerror(e));
            return -e;
        }
        if (n > 0) {
            int r = 0;
            if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
                r = nbd_aio_notify_read(h);
            } else if (pfd.revents & POLLOUT) {
                r = nbd_aio_notify_write(h);
            }
            if (r < 0) {
                int ret = nbd_client_err();
                error_setg(errp, "Could not open '%s': %s", name, nbd_get_error());
                bdrv_error_errnum(errp, -ret);
                return ret;
            }
        }
    }
    if (nbd_aio_is_ready(h) != 1) {
        error_setg(errp, "Could not open '%s': the connection closed during the "
                   "handshake", name);
        bdrv_error_errnum(errp, EIO);
        return -EIO;
    }
    return 0;
}

/* A new handle connected to s->uri with the handshake done by the
 * deadline, in *hp; or -errno with *errp set. */
static int nbd_client_connect(struct nbd_client_state *s, uint64_t deadline,
                              struct nbd_handle **hp, struct error **errp)
{
    struct nbd_handle *h = nbd_create();
    int ret;
    *hp = NULL;
    if (!h) {
        error_setg(errp, "%s: %s", s->uri, nbd_get_error());
        return -ENOMEM;
    }
    if (nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
        nbd_aio_connect_uri(h, s->uri) < 0) {
        ret = nbd_client_err();
        error_setg(errp, "Could not open '%s': %s", s->uri, nbd_get_error());
        bdrv_error_errnum(errp, -ret);
        nbd_close(h);
        return ret;
    }
    ret = nbd_client_handshake(s, h, deadline, s->uri, errp);
    if (ret < 0) {
        nbd_close(h);
        return ret;
    }
    *hp = h;
    return 0;
}

/*
 * One try at a new connection for a dead one (called without mu, by the
 * one caller reconnecting, while no batch uses the old handle). 0 when
 * it replaced s->h, -EAGAIN when the server is not back yet, -EIO when
 * the export is no longer the one the node opened.
 */
static int nbd_client_reconnect_once(struct nbd_client_state *s, uint64_t until)
{
    uint64_t now = clock_ns();
    uint64_t deadline = s->timeout_ns ? MIN(now + s->timeout_ns, until) : until;
    struct nbd_handle *h;
    struct error *err = NULL;
    if (nbd_client_connect(s, deadline, &h, &err) < 0) {
        log_debug("NBD server %s: reconnecting: %s", s->bs->filename,
                  err ? err->msg : "failed");
        error_free(err);
        return -EAGAIN;
    }
    int64_t size = nbd_get_size(h);
    const char *why = NULL;
    if (size < 0 || (uint64_t)size != s->bs->total_size) {
        log_error("NBD server %s: the export is %" PRId64 " bytes after "
                  "reconnecting, the node %" PRIu64 "; requests on it fail",
                  s->bs->filename, size, s->bs->total_size);
        why = "size";
    } else if (!s->bs->read_only && nbd_is_read_only(h) == 1) {
        log_error("NBD server %s: the export is read-only after reconnecting, "
                  "the node writable; requests on it fail", s->bs->filename);
        why = "read-only";
    }
    if (why) {
        nbd_close(h);
        pthread_mutex_lock(&s->mu);
        s->broken = true;
        pthread_mutex_unlock(&s->mu);
        return -EIO;
    }
    struct nbd_handle *old = s->h;
    pthread_mutex_lock(&s->mu);
    s->fd = -1;     /* the watchdog no longer shuts the old socket down */
    pthread_mutex_unlock(&s->mu);
    nbd_close(old);
    pthread_mutex_lock(&s->mu);
    s->h = h;
    s->fd = nbd_aio_get_fd(h);
    s->gen++;
    s->dead = false;
    s->said_gone = false;
    pthread_mutex_unlock(&s->mu);
    log_info("NBD server %s: reconnected", s->bs->filename);
    return 0;
}

/* Wait on reconn_cond until the deadline (clock_ns()). Called under mu. */
static void nbd_client_reconn_wait(struct nbd_client_state *s, uint64_t deadline)
{
    struct timespec ts = { .tv_sec = (time_t)(deadline / 1000000000u),
                           .tv_nsec = (long)(deadline % 1000000000u) };
    pthread_cond_timedwait(&s->reconn_cond, &s->mu, &ts);
}

/*
 * The connection is dead: wait up to reconnect-delay for a new one,
 * making it when nobody else is (once every batch on the old one is
 * done). 0 with the connection back, -EIO otherwise. Called under mu.
 */
static int nbd_client_await_reconnect(struct nbd_client_state *s)
{
    if (!s->reconnect_ns) {
        return -EIO;
    }
    uint64_t until = clock_ns() + s->reconnect_ns;
    while (s->dead) {
        uint64_t now = clock_ns();
        if (s->broken || s->closing || now >= until) {
            return -EIO;
        }
        if (s->reconnecting || s->batches || now < s->next_try) {
            nbd_client_reconn_wait(s, s->reconnecting || s->batches
                                          ? until : MIN(s->next_try, until));
            continue;
        }
        s->reconnecting = true;
        pthread_mutex_unlock(&s->mu);
        int r = nbd_client_reconnect_once(s, until);
        pthread_mutex_lock(&s->mu);
        s->reconnecting = false;
        pthread_cond_broadcast(&s->reconn_cond);
        if (r == -EAGAIN) {
            /* the server is not back yet: the next try in a while */
            s->next_try = clock_ns() + 100000000u;
        }
    }
    return 0;
}

static int nbd_client_start_watchdog(struct bdrv_node *bs, struct error **errp)
{
    struct nbd_client_state *s = bs->opaque;
    sigset_t all, old;
    sigfillset(&all);
    /* Signals belong to the program's own threads. */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&s->watchdog, NULL, nbd_client_watchdog, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        error_setg(errp, "'%s': cannot start the NBD watchdog thread: %s",
                   bs->filename, strerror(e));
        return -e;
    }
    s->watchdog_running = true;
    return 0;
}

static void nbd_client_stop_watchdog(struct nbd_client_state *s)
{
    if (!s->watchdog_running) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_mutex_unlock(&s->mu);
    nbd_client_wake(s);
    pthread_join(s->watchdog, NULL);
    s->watchdog_running = false;
}

static int nbd_client_open(struct bdrv_node *bs, struct error **errp)
{
    struct nbd_client_state *s = bs->opaque;
    char *uri = NULL;
    int ret;

    if (!nbd_uri_is_nbd(bs->filename)) {
        error_setg(errp, "'%s' is not an NBD URI (nbd://host[:port]/export or "
                   "nbd+unix:///export?socket=PATH)", bs->filename ? bs->filename : "");
        return -EINVAL;
    }
    ret = nbd_client_take_params(bs->filename, &uri, &s->timeout_ns,
                                 &s->reconnect_ns, errp);
    if (ret < 0) {
        return ret;
    }
    s->bs = bs;
    s->uri = uri;
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->wake_fd < 0 || s->kick_fd < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "'%s': eventfd", uri);
        goto out_fds;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);    /* clock_ns()'s */
    pthread_cond_init(&s->reconn_cond, &ca);
    pthread_condattr_destroy(&ca);
    ret = nbd_client_connect(s, s->timeout_ns ? clock_ns() + s->timeout_ns : 0,
                             &s->h, errp);
    if (ret < 0) {
        goto out_mutex;
    }
    s->fd = nbd_aio_get_fd(s->h);
    int64_t size = nbd_get_size(s->h);
    if (size < 0) {
        ret = nbd_client_err();
        error_setg(errp, "'%s': %s", uri, nbd_get_error());
        goto out_close;
    }
    if (nbd_is_read_only(s->h) == 1 && !bs->read_only) {
        if (!bs->auto_read_only) {
            error_setg(errp, "NBD export is read-only");
            bdrv_error_errnum(errp, EACCES);
            ret = -EACCES;
            goto out_close;
        }
        bs->read_only = true;
        bs->auto_degraded = true;
    }
    s->can_flush = nbd_can_flush(s->h) == 1;
    s->can_fua = nbd_can_fua(s->h) == 1;
    s->can_trim = nbd_can_trim(s->h) == 1;
    s->can_zero = nbd_can_zero(s->h) == 1;
    s->can_fast_zero = nbd_can_fast_zero(s->h) == 1;
    s->has_alloc = nbd_can_meta_context(s->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
    int64_t maxb = nbd_get_block_size(s->h, LIBNBD_SIZE_MAXIMUM);
    s->chunk = maxb > 0 ? MIN((uint64_t)maxb, 32u << 20) : 32u << 20;
    bs->total_size = (uint64_t)size;
    /* The node's name: QEMU's for the export, else the URI without our
     * own parameters. s->uri stays for reconnections. */
    char *canon = nbd_client_canon_name(uri);
    free(bs->filename);
    bs->filename = canon ? canon : strdup(uri);
    if (!bs->filename) {
        error_setg(errp, "Out of memory");
        ret = -ENOMEM;
        goto out_close;
    }
    bs->supports_fua = s->can_fua;
    int64_t minb = nbd_get_block_size(s->h, LIBNBD_SIZE_MINIMUM);
    if (minb > 1 && minb <= 65536 && !(minb & (minb - 1))) {
        bs->request_alignment = (uint32_t)minb;
    }
    ret = nbd_client_start_watchdog(bs, errp);
    if (ret < 0) {
        goto out_close;
    }
    return 0;

out_close:
    nbd_close(s->h);
    s->h = NULL;
out_mutex:
    pthread_cond_destroy(&s->reconn_cond);
    pthread_mutex_destroy(&s->mu);
out_fds:
    if (s->wake_fd >= 0) {
        close(s->wake_fd);
    }
    if (s->kick_fd >= 0) {
        close(s->kick_fd);
    }
    free(uri);
    s->uri = NULL;
    return ret;
}

static void nbd_client_close(struct bdrv_node *bs)
{
    struct nbd_client_state *s = bs->opaque;
    if (!s->h) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    bool dead = s->dead;
    s->closing = true;
    pthread_mutex_unlock(&s->mu);
    if (!dead) {
        /* Queue NBD_CMD_DISC without waiting: a server that stopped
         * answering must not hold up the close. */
        nbd_aio_disconnect(s->h, 0);
    }
    nbd_client_stop_watchdog(s);
    nbd_close(s->h);
    s->h = NULL;
    pthread_cond_destroy(&s->reconn_cond);
    pthread_mutex_destroy(&s->mu);
    close(s->wake_fd);
    close(s->kick_fd);
    free(s->uri);
    s->uri = NULL;
}

/* Reads and writes: one command per chunk, all in flight together. */
static int nbd_client_rw_once(struct nbd_client_state *s, struct nbd_client_batch *bp,
                              bool write, uint64_t offset, const struct iovec *iov,
                              int iovcnt, uint32_t fl)
{
    struct nbd_client_batch b;
    int ret = nbd_client_batch_start(s, &b);
    if (ret < 0) {
        return ret;
    }
    for (int i = 0; i < iovcnt; i++) {
        for (uint64_t done = 0; done < iov[i].iov_len;) {
            uint64_t n = MIN(iov[i].iov_len - done, s->chunk);
            char *p = (char *)iov[i].iov_base + done;
            nbd_client_batch_add(&b);
            int64_t c = write ? nbd_aio_pwrite(s->h, p, n, offset, nbd_client_cb(&b), fl)
                              : nbd_aio_pread(s->h, p, n, offset, nbd_client_cb(&b), 0);
            if (c < 0) {
                nbd_client_batch_fail(&b);
                goto wait;
            }
            done += n;
            offset += n;
        }
    }
wait:
    ret = nbd_client_batch_wait(&b);
    bp->lost = b.lost;
    return ret;
}

/*
 * Requests the loss of the connection failed are sent once more, on the
 * next connection (with reconnect-delay; NBD writes, trims and zeroes are
 * idempotent, as QEMU also assumes).
 */
static int nbd_client_rw(struct bdrv_node *bs, bool write, uint64_t offset,
                         const struct iovec *iov, int iovcnt, uint32_t fl)
{
    struct nbd_client_state *s = bs->opaque;
    struct nbd_client_batch b = { 0 };
    int ret = nbd_client_rw_once(s, &b, write, offset, iov, iovcnt, fl);
    if (ret < 0 && b.lost) {
        ret = nbd_client_rw_once(s, &b, write, offset, iov, iovcnt, fl);
    }
    return ret;
}

static int nbd_client_preadv(struct bdrv_node *bs, uint64_t offset,
                             uint64_t bytes, const struct iovec *iov,
                             int iovcnt, unsigned flags)
{
    return nbd_client_rw(bs, false, offset, iov, iovcnt, 0);
}

static int nbd_client_pwritev(struct bdrv_node *bs, uint64_t offset,
                              uint64_t bytes, const struct iovec *iov,
                              int iovcnt, unsigned flags)
{
    struct nbd_client_state *s = bs->opaque;
    uint32_t fl = (flags & BDRV_REQ_FUA) && s->can_fua ? LIBNBD_CMD_FLAG_FUA : 0;
    return nbd_client_rw(bs, true, offset, iov, iovcnt, fl);
}

enum nbd_client_cmd { NBD_CLIENT_ZERO, NBD_CLIENT_TRIM };

/* Write zeroes or trim, in commands of at most 1 GiB, all in flight. */
static int nbd_client_range_once(struct nbd_client_state *s, bool *lost,
                                 enum nbd_client_cmd cmd, uint64_t offset,
                                 uint64_t bytes, uint32_t fl)
{
    struct nbd_client_batch b;
    int ret = nbd_client_batch_start(s, &b);
    if (ret < 0) {
        return ret;
    }
    while (bytes > 0) {
        uint64_t n = MIN(bytes, (uint64_t)1 << 30);
        nbd_client_batch_add(&b);
        int64_t c = cmd == NBD_CLIENT_ZERO
                        ? nbd_aio_zero(s->h, n, offset, nbd_client_cb(&b), fl)
                        : nbd_aio_trim(s->h, n, offset, nbd_client_cb(&b), fl);
        if (c < 0) {
            nbd_client_batch_fail(&b);
            break;
        }
        offset += n;
        bytes -= n;
    }
    ret = nbd_client_batch_wait(&b);
    *lost = b.lost;
    return ret;
}

static int nbd_client_range(struct nbd_client_state *s, enum nbd_client_cmd cmd,
                            uint64_t offset, uint64_t bytes, uint32_t fl)
{
    bool lost = false;
    int ret = nbd_client_range_once(s, &lost, cmd, offset, bytes, fl);
    if (ret < 0 && lost) {
        ret = nbd_client_range_once(s, &lost, cmd, offset, bytes, fl);
    }
    return ret;
}

static int nbd_client_pwrite_zeroes(struct bdrv_node *bs, uint64_t offset,
                                    uint64_t bytes, unsigned flags)
{
    struct nbd_client_state *s = bs->opaque;
    if (!s->can_zero || ((flags & BDRV_REQ_NO_FALLBACK) && !s->can_fast_zero)) {
        return -ENOTSUP;
    }
    uint32_t fl = 0;
    if (!(flags & BDRV_REQ_MAY_UNMAP)) {
        fl |= LIBNBD_CMD_FLAG_NO_HOLE;
    }
    if (flags & BDRV_REQ_NO_FALLBACK) {
        fl |= LIBNBD_CMD_FLAG_FAST_ZERO;
    }
    if ((flags & BDRV_REQ_FUA) && s->can_fua) {
        fl |= LIBNBD_CMD_FLAG_FUA;
    }
    return nbd_client_range(s, NBD_CLIENT_ZERO, offset, bytes, fl);
}

static int nbd_client_pdiscard(struct bdrv_node *bs, uint64_t offset,
                               uint64_t bytes)
{
    struct nbd_client_state *s = bs->opaque;
    if (!s->can_trim) {
        return -ENOTSUP;
    }
    return nbd_client_range(s, NBD_CLIENT_TRIM, offset, bytes, 0);
}

static int nbd_client_flush(struct bdrv_node *bs)
{
    struct nbd_client_state *s = bs->opaque;
    if (!s->can_flush) {
        return 0;
    }
    int ret = 0;
    for (int tries = 0; tries < 2; tries++) {
        struct nbd_client_batch b;
        ret = nbd_client_batch_start(s, &b);
        if (ret < 0) {
            return ret;
        }
        nbd_client_batch_add(&b);
        if (nbd_aio_flush(s->h, nbd_client_cb(&b), 0) < 0) {
            nbd_client_batch_fail(&b);
        }
        ret = nbd_client_batch_wait(&b);
        if (ret >= 0 || !b.lost) {
            break;
        }
    }
    return ret;
}

struct nbd_client_extent {
    uint64_t len;
    uint32_t flags;
    bool got;
};

/* Runs on the leading caller's thread; the caller reads the result only after the
 * batch's last free callback (under the node's mu). */
static int nbd_client_extent_cb(void *opaque, const char *meta, uint64_t offset,
                                uint32_t *entries, size_t nr, int *error)
{
    struct nbd_client_extent *e = opaque;
    if (strcmp(meta, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0 && nr >= 2 && !e->got) {
        e->len = entries[0];
        e->flags = entries[1];
        e->got = true;
    }
    return 0;
}

static int nbd_client_block_status(struct bdrv_node *bs, uint64_t offset,
                                   uint64_t bytes, uint64_t *pnum,
                                   uint64_t *map, struct bdrv_node **file)
{
    struct nbd_client_state *s = bs->opaque;
    *map = offset;
    *file = bs;
    *pnum = bytes;
    if (!s->has_alloc) {
        return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
    }
    struct nbd_client_extent e = { 0 };
    uint64_t ask = MIN(bytes, (uint64_t)UINT32_MAX & ~(uint64_t)511);
    int ret = 0;
    for (int tries = 0; tries < 2; tries++) {
        struct nbd_client_batch b;
        e = (struct nbd_client_extent){ 0 };
        ret = nbd_client_batch_start(s, &b);
        if (ret < 0) {
            return ret;
        }
        nbd_client_batch_add(&b);
        if (nbd_aio_block_status(s->h, ask, offset,
                                 (nbd_extent_callback){ .callback = nbd_client_extent_cb,
                                                        .user_data = &e },
                                 nbd_client_cb(&b), LIBNBD_CMD_FLAG_REQ_ONE) < 0) {
            nbd_client_batch_fail(&b);
        }
        ret = nbd_client_batch_wait(&b);
        if (ret >= 0 || !b.lost) {
            break;
        }
    }
    if (ret < 0) {
        return ret;
    }
    if (!e.got || e.len == 0) {
        return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
    }
    *pnum = MIN(e.len, bytes);
    ret = BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
    if (!(e.flags & LIBNBD_STATE_HOLE)) {
        ret |= BDRV_BLOCK_DATA;
    }
    if (e.flags & LIBNBD_STATE_ZERO) {
        ret |= BDRV_BLOCK_ZERO;
    }
    return ret;
}

const struct bdrv_ops bdrv_nbd_ops = {
    .name = "nbd",
    .state_size = sizeof(struct nbd_client_state),
    .is_protocol = true,
    /* callers issue libnbd aio commands concurrently and drive the socket
     * in turn */
    .thread_safe = true,
    .open = nbd_client_open,
    .close = nbd_client_close,
    .preadv = nbd_client_preadv,
    .pwritev = nbd_client_pwritev,
    .pwrite_zeroes = nbd_client_pwrite_zeroes,
    .pdiscard = nbd_client_pdiscard,
    .flush = nbd_client_flush,
    .block_status = nbd_client_block_status,
};
