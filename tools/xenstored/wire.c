/*
 * tools/xenstored/wire.c — the server object and its connections: message
 * framing on the byte stream (16-byte header, payload up to
 * XENSTORE_PAYLOAD_MAX), queued replies and watch events, listening Unix
 * sockets and the single-threaded poll loop that serves every client.
 */
#include "tools/xenstored/xenstored.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Server                                                              */
/* ------------------------------------------------------------------ */

void xsd_server_init(struct xsd_server *srv)
{
    memset(srv, 0, sizeof(*srv));
    xsd_store_init(&srv->store);
    srv->quota = (struct xsd_quota){
        .nodes = 1000, .value_size = 2048, .watches = 128,
        .transactions = 10, .perms = 5,
    };
    struct xsd_perm owner = { .domid = 0, .perm = XSD_PERM_NONE };
    struct xsd_perms perms = { .p = &owner, .n = 1 };
    xsd_perms_copy(&srv->special_perms[0], &perms);
    xsd_perms_copy(&srv->special_perms[1], &perms);
    /* Dom0 is there from the start, as with a real hypervisor. */
    struct xsd_domain *d0 = xsd_alloc(sizeof(*d0));
    d0->domid = 0;
    d0->target = XSD_NO_TARGET;
    srv->domains = d0;
}

void xsd_server_destroy(struct xsd_server *srv)
{
    while (srv->conns) {
        xsd_conn_free(srv->conns);
    }
    for (size_t i = 0; i < srv->nlisteners; i++) {
        close(srv->listeners[i].fd);
        unlink(srv->listeners[i].path);
        free(srv->listeners[i].path);
    }
    free(srv->listeners);
    srv->listeners = NULL;
    srv->nlisteners = 0;
    while (srv->domains) {
        struct xsd_domain *d = srv->domains;
        srv->domains = d->next;
        free(d);
    }
    xsd_perms_clear(&srv->special_perms[0]);
    xsd_perms_clear(&srv->special_perms[1]);
    xsd_store_destroy(&srv->store);
}

struct xsd_domain *xsd_domain_find(struct xsd_server *srv, uint32_t domid)
{
    for (struct xsd_domain *d = srv->domains; d; d = d->next) {
        if (d->domid == domid) {
            return d;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

struct xsd_conn *xsd_conn_new(struct xsd_server *srv, int fd, uint32_t domid,
                              bool can_write)
{
    struct xsd_conn *c = xsd_alloc(sizeof(*c));
    c->srv = srv;
    c->fd = fd;
    c->domid = domid;
    c->can_write = can_write;
    c->body = xsd_alloc(XENSTORE_PAYLOAD_MAX + 1);
    c->next_txn_id = 1;
    c->next = srv->conns;
    if (srv->conns) {
        srv->conns->prev = c;
    }
    srv->conns = c;
    return c;
}

void xsd_conn_free(struct xsd_conn *c)
{
    struct xsd_server *srv = c->srv;
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        srv->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    if (c->fd >= 0) {
        close(c->fd);
        srv->accept_paused = false;
    }
    xsd_watch_clear(c);
    while (c->txns) {
        struct xsd_txn *t = c->txns;
        c->txns = t->next;
        xsd_txn_free(t);
    }
    free(c->body);
    free(c->out);
    free(c);
}

uint32_t xsd_conn_target(struct xsd_conn *c)
{
    struct xsd_domain *d = c->domid ? xsd_domain_find(c->srv, c->domid) : NULL;
    return d ? d->target : XSD_NO_TARGET;
}

void xsd_conn_home(const struct xsd_conn *c, char *buf, size_t size)
{
    snprintf(buf, size, "/local/domain/%u", c->domid);
}

static void xsd_conn_kill(struct xsd_conn *c, const char *why)
{
    if (!c->dead) {
        log_info("dropping client (dom%u): %s", c->domid, why);
    }
    c->dead = true;
}

/* Append one message to the output queue. */
static void xsd_queue(struct xsd_conn *c, uint32_t type, uint32_t req_id,
                      uint32_t tx_id, const void *data, size_t len)
{
    if (c->dead) {
        return;
    }
    if (c->out_len - c->out_off + len > XSD_OUT_HARD_LIMIT) {
        xsd_conn_kill(c, "too much unread output");
        return;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
    }
    size_t need = c->out_len + sizeof(struct xsd_sockmsg) + len;
    if (need > c->out_cap) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
            need = c->out_len + sizeof(struct xsd_sockmsg) + len;
        }
        if (need > c->out_cap) {
            c->out_cap = MAX(need, c->out_cap * 2);
            c->out = xsd_realloc(c->out, c->out_cap);
        }
    }
    struct xsd_sockmsg hdr = {
        .type = type, .req_id = req_id, .tx_id = tx_id, .len = (uint32_t)len,
    };
    memcpy(c->out + c->out_len, &hdr, sizeof(hdr));
    if (len) {
        memcpy(c->out + c->out_len + sizeof(hdr), data, len);
    }
    c->out_len += sizeof(hdr) + len;
}

const char *xsd_errno_name(int err)
{
    for (size_t i = 0; i < ARRAY_SIZE(xsd_errors); i++) {
        if (xsd_errors[i].errnum == err) {
            return xsd_errors[i].errstring;
        }
    }
    return "EINVAL";
}

void xsd_reply(struct xsd_conn *c, uint32_t type, const void *data, size_t len)
{
    if (len > XENSTORE_PAYLOAD_MAX) {
        xsd_reply_error(c, E2BIG);
        return;
    }
    xsd_queue(c, type, c->req.req_id, c->req.tx_id, data, len);
}

void xsd_reply_error(struct xsd_conn *c, int err)
{
    const char *name = xsd_errno_name(err);
    xsd_queue(c, XS_ERROR, c->req.req_id, c->req.tx_id, name, strlen(name) + 1);
}

void xsd_reply_ok(struct xsd_conn *c)
{
    xsd_reply(c, c->req.type, "OK", 3);
}

void xsd_send_event(struct xsd_conn *c, const char *path, const char *token)
{
    size_t plen = strlen(path) + 1, tlen = strlen(token) + 1;
    if (plen + tlen > XENSTORE_PAYLOAD_MAX) {
        return;     /* cannot be framed; xenstored drops these too */
    }
    char *buf = xsd_alloc(plen + tlen);
    memcpy(buf, path, plen);
    memcpy(buf + plen, token, tlen);
    xsd_queue(c, XS_WATCH_EVENT, 0, 0, buf, plen + tlen);
    free(buf);
}

int xsd_conn_input(struct xsd_conn *c, const void *data, size_t len)
{
    const char *p = data;
    while (!c->dead) {
        if (c->hdr_used < sizeof(c->hdr)) {
            if (len == 0) {
                break;
            }
            size_t n = MIN(len, sizeof(c->hdr) - c->hdr_used);
            memcpy((char *)&c->hdr + c->hdr_used, p, n);
            c->hdr_used += n;
            p += n;
            len -= n;
            if (c->hdr_used < sizeof(c->hdr)) {
                break;
            }
            if (c->hdr.len > XENSTORE_PAYLOAD_MAX) {
                log_warn("client (dom%u) sent a %u-byte payload", c->domid,
                         c->hdr.len);
                xsd_conn_kill(c, "payload too long");
                return -EPROTO;
            }
            c->body_used = 0;
        }
        size_t n = MIN(len, c->hdr.len - c->body_used);
        if (n) {
            memcpy(c->body + c->body_used, p, n);
            c->body_used += n;
            p += n;
            len -= n;
        }
        if (c->body_used < c->hdr.len) {
            break;
        }
        c->body[c->hdr.len] = '\0';
        c->req = c->hdr;
        c->hdr_used = 0;
        xsd_handle_request(c);
    }
    return c->dead ? -EPROTO : 0;
}

int xsd_conn_flush(struct xsd_conn *c)
{
    if (c->fd < 0) {
        return 0;
    }
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return 0;
            }
            int err = errno;
            xsd_conn_kill(c, strerror(err));
            return -err;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Sockets and the loop                                                */
/* ------------------------------------------------------------------ */

int xsd_listen(struct xsd_server *srv, const char *path, uint32_t domid,
               bool can_write, struct error **errp)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(addr.sun_path)) {
        error_setg(errp, "socket path '%s' is too long (at most %zu bytes)",
                   path, sizeof(addr.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    strcpy(addr.sun_path, path);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        int err = errno;
        error_setg_errno(errp, err, "cannot create a socket");
        return -err;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        /* Replace a stale socket, never a live daemon's or another file. */
        if (!S_ISSOCK(st.st_mode)) {
            error_setg(errp, "'%s' exists and is not a socket", path);
            close(fd);
            return -EEXIST;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&addr,
                                  sizeof(addr)) == 0) {
            close(probe);
            close(fd);
            error_setg(errp, "'%s' is in use by a running daemon", path);
            return -EADDRINUSE;
        }
        if (probe >= 0) {
            close(probe);
        }
        unlink(path);
    }
    mode_t old = umask(0077);
    int ret = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (ret < 0 || listen(fd, 64) < 0) {
        int err = errno;
        error_setg_errno(errp, err, "cannot listen on '%s'", path);
        close(fd);
        return -err;
    }
    srv->listeners = xsd_realloc(srv->listeners,
                                 (srv->nlisteners + 1) * sizeof(*srv->listeners));
    srv->listeners[srv->nlisteners++] = (struct xsd_listener){
        .fd = fd, .path = xsd_strdup(path), .domid = domid,
        .can_write = can_write,
    };
    return 0;
}

static void xsd_accept(struct xsd_server *srv, const struct xsd_listener *l)
{
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* The listener stays readable: stop polling it (no busy
                 * loop) until a client goes away. */
                log_warn("accept on %s: %s; waiting for a client to close",
                         l->path, strerror(errno));
                srv->accept_paused = true;
            } else if (errno != EAGAIN && errno != EWOULDBLOCK &&
                       errno != EINTR && errno != ECONNABORTED) {
                log_warn("accept on %s: %s", l->path, strerror(errno));
            }
            return;
        }
        xsd_conn_new(srv, fd, l->domid, l->can_write);
        log_debug("client connected on %s (dom%u)", l->path, l->domid);
    }
}

static void xsd_conn_read(struct xsd_conn *c)
{
    char buf[65536];
    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            xsd_conn_kill(c, strerror(errno));
        }
        return;
    }
    if (n == 0) {
        if (c->hdr_used > 0) {
            xsd_conn_kill(c, "closed in the middle of a message");
        } else {
            log_debug("client (dom%u) closed", c->domid);
            c->dead = true;
        }
        return;
    }
    xsd_conn_input(c, buf, (size_t)n);
}

int xsd_run(struct xsd_server *srv, int stop_fd)
{
    struct pollfd *pfd = NULL;
    struct xsd_conn **conns = NULL;
    size_t cap = 0;
    int ret = 0;

    for (;;) {
        size_t nconns = 0;
        for (struct xsd_conn *c = srv->conns; c; c = c->next) {
            nconns++;
        }
        size_t n = 1 + srv->nlisteners + nconns;
        if (n > cap) {
            cap = n * 2;
            pfd = xsd_realloc(pfd, cap * sizeof(*pfd));
            conns = xsd_realloc(conns, cap * sizeof(*conns));
        }
        size_t i = 0;
        pfd[i++] = (struct pollfd){ .fd = stop_fd, .events = POLLIN };
        for (size_t l = 0; l < srv->nlisteners; l++) {
            pfd[i++] = (struct pollfd){
                .fd = srv->accept_paused ? -1 : srv->listeners[l].fd,
                .events = POLLIN,
            };
        }
        size_t first_conn = i;
        for (struct xsd_conn *c = srv->conns; c; c = c->next) {
            short ev = 0;
            size_t pending = c->out_len - c->out_off;
            /* A client that does not read its replies is not served more. */
            if (pending < XSD_OUT_SOFT_LIMIT) {
                ev |= POLLIN;
            }
            if (pending) {
                ev |= POLLOUT;
            }
            conns[i - first_conn] = c;
            pfd[i++] = (struct pollfd){ .fd = c->fd, .events = ev };
        }

        if (poll(pfd, (nfds_t)i, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            ret = -errno;
            log_error("poll: %s", strerror(errno));
            break;
        }
        if (pfd[0].revents) {
            break;
        }
        for (size_t l = 0; l < srv->nlisteners; l++) {
            if (pfd[1 + l].revents & POLLIN) {
                xsd_accept(srv, &srv->listeners[l]);
            }
        }
        for (size_t k = first_conn; k < i; k++) {
            struct xsd_conn *c = conns[k - first_conn];
            if (c->dead) {
                continue;
            }
            if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                xsd_conn_read(c);
            }
        }
        /* Replies go out now rather than after another round of poll. */
        struct xsd_conn *c = srv->conns;
        while (c) {
            struct xsd_conn *next = c->next;
            if (!c->dead && c->out_len > c->out_off) {
                xsd_conn_flush(c);
            }
            if (c->dead) {
                xsd_conn_free(c);
            }
            c = next;
        }
    }
    free(pfd);
    free(conns);
    return ret;
}
