/*
 * tools/nbd/conn.c — connections: accepts clients, moves bytes between each
 * non-blocking socket (or its TLS session) and the client's protocol
 * session, and closes it when the session is done. Every client has its own
 * bounded queues, so a slow or hostile one never holds up the others.
 */
#include "tools/nbd/server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUDGET     (4u << 20)  /* bytes per readiness event, for fairness */
#define WRITE_BUDGET    (8u << 20)
#define MAX_IOV         64
#define NBD_UNIX_SNDBUF (4 << 20)

static const char zero_page[65536];

struct nbd_conn {
    struct nbd_server *srv;
    struct nbd_conn *prev, *next;
    int fd;
    uint32_t events;            /* epoll interest now registered */
    struct nbd_session *s;
    gnutls_session_t tls;
    bool tls_handshaking;
    bool busy, dirty;           /* re-entrancy guard for conn_kick */
    bool dead;                  /* close when the guard is released */
    struct ev_timer *hs_timer;
};

struct nbd_server {
    struct event_loop *loop;
    struct nbd_server_cfg cfg;
    int *lfds;
    unsigned n_lfds;
    bool accepting;
    unsigned nclients;
    bool had_client;
    struct nbd_conn *conns;
};

static void conn_kick(struct nbd_conn *c);
static void server_update_accept(struct nbd_server *srv);

/* ------------------------------------------------------------------ */
/* Connection lifetime                                                 */
/* ------------------------------------------------------------------ */

static void conn_destroy(struct nbd_conn *c)
{
    struct nbd_server *srv = c->srv;
    ev_fd_remove(srv->loop, c->fd);
    if (c->hs_timer) {
        ev_timer_cancel(srv->loop, c->hs_timer);
    }
    nbd_session_free(c->s);
    if (c->tls) {
        gnutls_deinit(c->tls);
    }
    close(c->fd);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        srv->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    free(c);
    srv->nclients--;
    log_debug("client disconnected (%u left)", srv->nclients);
    if (srv->nclients == 0 && srv->had_client && !srv->cfg.persistent) {
        ev_stop(srv->loop);
    }
    server_update_accept(srv);
}

static void conn_close(struct nbd_conn *c)
{
    if (c->busy) {
        c->dead = true;
        return;
    }
    conn_destroy(c);
}

static void hs_timeout(void *opaque)
{
    struct nbd_conn *c = opaque;
    c->hs_timer = NULL;
    if (!nbd_session_in_transmission(c->s)) {
        log_info("client dropped: handshake took too long");
        conn_close(c);
    }
}

/* ------------------------------------------------------------------ */
/* TLS                                                                 */
/* ------------------------------------------------------------------ */

/* Bytes read as plaintext after STARTTLS belong to the TLS handshake. */
static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
    struct nbd_conn *c = ptr;
    size_t n = nbd_session_take_pretls(c->s, buf, len);
    if (n > 0) {
        return n;
    }
    ssize_t r = recv(c->fd, buf, len, 0);
    if (r < 0) {
        gnutls_transport_set_errno(c->tls, errno);
    }
    return r;
}

static ssize_t tls_push(gnutls_transport_ptr_t ptr, const void *buf, size_t len)
{
    struct nbd_conn *c = ptr;
    ssize_t r = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r < 0) {
        gnutls_transport_set_errno(c->tls, errno);
    }
    return r;
}

static void tls_step(struct nbd_conn *c)
{
    if (!c->tls) {
        if (nbd_tls_session_new(c->srv->cfg.tls, &c->tls, tls_pull, tls_push,
                                c) < 0) {
            nbd_session_tls_done(c->s, false);
            return;
        }
        c->tls_handshaking = true;
    }
    int rc = gnutls_handshake(c->tls);
    if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
        return;
    }
    c->tls_handshaking = false;
    if (rc < 0) {
        log_info("TLS handshake failed: %s", gnutls_strerror(rc));
        nbd_session_tls_done(c->s, false);
        return;
    }
    if (nbd_tls_check_authz(c->srv->cfg.tls, c->tls) < 0) {
        log_info("client refused by --tls-authz");
        nbd_session_tls_done(c->s, false);
        return;
    }
    nbd_session_set_zero_copy(c->s, false);
    nbd_session_tls_done(c->s, true);
}

/* ------------------------------------------------------------------ */
/* Reading and writing                                                 */
/* ------------------------------------------------------------------ */

/* Read what the socket has, as far as the session takes it; end of file
 * and errors are handed to the session. */
static void conn_read(struct nbd_conn *c)
{
    size_t budget = READ_BUDGET;
    while (budget > 0) {
        void *buf;
        size_t room = nbd_session_rbuf(c->s, &buf);
        if (room == 0) {
            return;
        }
        room = MIN(room, budget);
        ssize_t n;
        if (c->tls) {
            n = gnutls_record_recv(c->tls, buf, room);
            if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                return;
            }
            if (n < 0) {
                log_debug("TLS receive: %s", gnutls_strerror((int)n));
                nbd_session_eof(c->s);
                return;
            }
        } else {
            n = recv(c->fd, buf, room, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    return;
                }
                nbd_session_eof(c->s);
                return;
            }
        }
        if (n == 0) {
            nbd_session_eof(c->s);
            return;
        }
        nbd_session_rdone(c->s, n);
        budget -= MIN(budget, (size_t)n);
        if ((size_t)n < room && !(c->tls && gnutls_record_check_pending(c->tls))) {
            return;     /* drained the socket */
        }
    }
}

/* Send what can be sent without blocking. false = connection broken. */
static bool conn_write(struct nbd_conn *c)
{
    size_t budget = WRITE_BUDGET;
    while (budget > 0) {
        struct nbd_seg *seg = nbd_session_out(c->s);
        if (!seg) {
            return true;
        }
        ssize_t n;
        if (seg->kind == NBD_SEG_FD && !c->tls) {
            off_t off = seg->foff + seg->done;
            size_t len = MIN(seg->len - seg->done, (size_t)(4u << 20));
            n = sendfile(c->fd, seg->fd, &off, len);
            if (n == 0) {
                n = -1;
                errno = EIO;    /* the file shrank under us */
            }
        } else if (c->tls) {
            const void *p;
            size_t len = seg->len - seg->done;
            if (seg->kind == NBD_SEG_MEM) {
                p = seg->ptr + seg->done;
            } else if (seg->kind == NBD_SEG_ZERO) {
                p = zero_page;
                len = MIN(len, sizeof(zero_page));
            } else {
                /* never queued under TLS: zero copy is off there */
                errno = EIO;
                return false;
            }
            n = gnutls_record_send(c->tls, p, MIN(len, (size_t)16384));
            if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                return true;
            }
            if (n < 0) {
                log_debug("TLS send: %s", gnutls_strerror((int)n));
                return false;
            }
        } else {
            struct iovec iov[MAX_IOV];
            int cnt = 0;
            bool more = false;
            for (struct nbd_seg *g = seg; g && cnt < MAX_IOV; g = g->next) {
                if (g->kind == NBD_SEG_FD) {
                    more = true;
                    break;
                }
                size_t left = g->len - g->done;
                size_t skip = g->done;
                while (left > 0 && cnt < MAX_IOV) {
                    size_t l = left;
                    if (g->kind == NBD_SEG_MEM) {
                        iov[cnt].iov_base = (void *)(g->ptr + skip);
                    } else {
                        l = MIN(l, sizeof(zero_page));
                        iov[cnt].iov_base = (void *)zero_page;
                    }
                    iov[cnt++].iov_len = l;
                    left -= l;
                    skip += l;
                }
            }
            struct msghdr mh = { .msg_iov = iov, .msg_iovlen = cnt };
            n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT |
                        (more ? MSG_MORE : 0));
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return true;
            }
            log_debug("send: %s", strerror(errno));
            return false;
        }
        nbd_session_out_sent(c->s, n);
        budget -= MIN(budget, (size_t)n);
    }
    return true;
}

/* Register the interest the session (and TLS) needs now. */
static void conn_update(struct nbd_conn *c)
{
    unsigned w = nbd_session_wants(c->s);
    if (w & NBD_WANT_CLOSE) {
        conn_close(c);
        return;
    }
    uint32_t ev = 0;
    if (c->tls_handshaking) {
        ev = gnutls_record_get_direction(c->tls) ? EPOLLOUT : EPOLLIN;
    } else {
        if (w & NBD_WANT_READ) {
            ev |= EPOLLIN;
        }
        if (w & NBD_WANT_WRITE) {
            ev |= EPOLLOUT;
        }
    }
    if (ev != c->events) {
        ev_fd_modify(c->srv->loop, c->fd, ev);
        c->events = ev;
    }
}

/* Do everything possible now: TLS handshake, writes, reads, interest. */
static void conn_kick(struct nbd_conn *c)
{
    if (c->busy) {
        c->dirty = true;
        return;
    }
    c->busy = true;
    do {
        c->dirty = false;
        if (nbd_session_wants(c->s) & NBD_WANT_WRITE) {
            if (!conn_write(c)) {
                c->dead = true;
                break;
            }
        }
        /* STARTTLS's ACK is out: the handshake starts right away */
        if ((nbd_session_wants(c->s) & NBD_WANT_TLS) && !c->tls_handshaking) {
            tls_step(c);
            if (!c->tls_handshaking) {
                c->dirty = true;    /* finished (or failed) at once */
            }
        }
        conn_update(c);
    } while (c->dirty && !c->dead);
    c->busy = false;
    if (c->dead) {
        conn_destroy(c);
    }
}

static void conn_event(void *opaque, uint32_t events)
{
    struct nbd_conn *c = opaque;
    c->busy = true;
    if (c->tls_handshaking) {
        tls_step(c);
        if (events & (EPOLLHUP | EPOLLERR)) {
            c->dead = true;
        }
    } else {
        if (events & EPOLLOUT) {
            if (!conn_write(c)) {
                c->dead = true;
            }
        }
        if (!c->dead && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
            conn_read(c);
        }
        /* Peer gone both ways (or reset): nothing more can be delivered,
         * and level-triggered HUP would otherwise fire forever. */
        if (events & (EPOLLHUP | EPOLLERR)) {
            c->dead = true;
        }
    }
    c->busy = false;
    if (c->dead) {
        conn_destroy(c);
        return;
    }
    conn_kick(c);
}

static void session_wakeup(void *opaque)
{
    conn_kick(opaque);
}

/* ------------------------------------------------------------------ */
/* Accepting                                                           */
/* ------------------------------------------------------------------ */

static void accept_ready(void *opaque, uint32_t events);

static void server_update_accept(struct nbd_server *srv)
{
    bool want = srv->cfg.max_clients == 0 || srv->nclients < srv->cfg.max_clients;
    if (want == srv->accepting) {
        return;
    }
    for (unsigned i = 0; i < srv->n_lfds; i++) {
        ev_fd_modify(srv->loop, srv->lfds[i], want ? EPOLLIN : 0);
    }
    srv->accepting = want;
}

static int conn_new(struct nbd_server *srv, int fd, bool transmission)
{
    int one = 1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        ss.ss_family == AF_UNIX) {
        /* Unix sockets have no autotuning: a bigger buffer means
         * fewer wakeups per megabyte. TCP tunes its own. */
        int sndbuf = NBD_UNIX_SNDBUF;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    } else {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct nbd_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->srv = srv;
    c->fd = fd;
    c->s = nbd_session_new(srv->cfg.exp, &srv->cfg.pol, session_wakeup, c);
    if (!c->s) {
        free(c);
        close(fd);
        return -ENOMEM;
    }
    nbd_session_set_zero_copy(c->s, srv->cfg.zero_copy);
    if (transmission) {
        nbd_session_skip_handshake(c->s);
    }
    c->events = EPOLLOUT;
    int rc = ev_fd_add(srv->loop, fd, c->events, conn_event, c);
    if (rc < 0) {
        nbd_session_free(c->s);
        free(c);
        close(fd);
        return rc;
    }
    c->next = srv->conns;
    if (srv->conns) {
        srv->conns->prev = c;
    }
    srv->conns = c;
    srv->nclients++;
    srv->had_client = true;
    if (srv->cfg.handshake_limit_ms && !transmission) {
        c->hs_timer = ev_timer_add(srv->loop, srv->cfg.handshake_limit_ms,
                                   hs_timeout, c);
    }
    log_debug("client connected (%u now)", srv->nclients);
    server_update_accept(srv);
    conn_kick(c);
    return 0;
}

static void accept_ready(void *opaque, uint32_t events)
{
    struct nbd_server *srv = opaque;
    for (unsigned i = 0; i < srv->n_lfds && srv->accepting; i++) {
        int fd = accept4(srv->lfds[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                log_warn("accept: %s", strerror(errno));
            }
            continue;
        }
        conn_new(srv, fd, false);
    }
}

int nbd_server_add_client(struct nbd_server *srv, int fd, bool transmission)
{
    return conn_new(srv, fd, transmission);
}

struct nbd_server *nbd_server_new(struct event_loop *loop,
                                  const struct nbd_server_cfg *cfg)
{
    struct nbd_server *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        return NULL;
    }
    srv->loop = loop;
    srv->cfg = *cfg;
    srv->accepting = true;
    return srv;
}

int nbd_server_add_listener(struct nbd_server *srv, int fd)
{
    int *n = realloc(srv->lfds, (srv->n_lfds + 1) * sizeof(*n));
    if (!n) {
        return -ENOMEM;
    }
    srv->lfds = n;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int rc = ev_fd_add(srv->loop, fd, srv->accepting ? EPOLLIN : 0,
                       accept_ready, srv);
    if (rc < 0) {
        return rc;
    }
    srv->lfds[srv->n_lfds++] = fd;
    return 0;
}

unsigned nbd_server_clients(const struct nbd_server *srv)
{
    return srv->nclients;
}

void nbd_server_free(struct nbd_server *srv)
{
    if (!srv) {
        return;
    }
    srv->cfg.persistent = true;     /* no ev_stop from teardown */
    while (srv->conns) {
        conn_destroy(srv->conns);
    }
    for (unsigned i = 0; i < srv->n_lfds; i++) {
        ev_fd_remove(srv->loop, srv->lfds[i]);
        close(srv->lfds[i]);
    }
    free(srv->lfds);
    free(srv);
}
