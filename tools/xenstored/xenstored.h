/*
 * tools/xenstored/xenstored.h — private interfaces of diskdm-xenstored: the
 * node store and its transactional views (store.c, txn.c), watches
 * (watch.c), request handlers (ops.c) and connections (wire.c).
 * Only files in tools/xenstored/ (and its tests) include this.
 */
#ifndef DISKDM_XENSTORED_H
#define DISKDM_XENSTORED_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <xen/io/xs_wire.h>

#include "util/util.h"

/* Permission bits; a node's permission list names them by letter:
 * n = none, r = read, w = write, b = both. OWNER is never stored. */
#define XSD_PERM_NONE  0u
#define XSD_PERM_READ  1u
#define XSD_PERM_WRITE 2u
#define XSD_PERM_BOTH  (XSD_PERM_READ | XSD_PERM_WRITE)
#define XSD_PERM_OWNER 4u

#define XSD_DOMID_MAX  0xffffu
#define XSD_DOMID_SELF 0x7ff0u

struct xsd_perm {
    uint32_t domid;
    uint32_t perm;          /* XSD_PERM_* */
};

/* p[0] is the owner and the access everyone not listed gets. n >= 1. */
struct xsd_perms {
    struct xsd_perm *p;
    uint32_t n;
};

/*
 * One node. `children` holds the child names in creation order, each
 * followed by a NUL (exactly the DIRECTORY reply); `value` is binary and
 * NUL-terminated beyond `vlen` for convenience. `gen` changes whenever the
 * node is written in the committed store; 0 means "does not exist".
 */
struct xsd_node {
    char *path;
    char *value;
    uint32_t vlen;
    struct xsd_perms perms;
    char *children;
    uint32_t childlen;
    uint64_t gen;
};

/* Allocation that cannot fail (the daemon aborts on exhaustion). */
void *xsd_alloc(size_t size);               /* zeroed */
void *xsd_realloc(void *p, size_t size);
char *xsd_strdup(const char *s);
void *xsd_memdup(const void *p, size_t len); /* plus a NUL byte */

/* ------------------------------------------------------------------ */
/* String-keyed hash map (store.c)                                     */
/* ------------------------------------------------------------------ */
struct xsd_map_entry;
struct xsd_map {
    struct xsd_map_entry **buckets;
    size_t nbuckets;
    size_t count;
};
typedef void xsd_map_fn(void *opaque, const char *key, void *val);

void xsd_map_init(struct xsd_map *m);
void *xsd_map_get(const struct xsd_map *m, const char *key);
/* Insert or replace; returns the previous value (or NULL). Key copied. */
void *xsd_map_put(struct xsd_map *m, const char *key, void *val);
void *xsd_map_remove(struct xsd_map *m, const char *key);
/* fn must not modify the map. */
void xsd_map_foreach(const struct xsd_map *m, xsd_map_fn *fn, void *opaque);
void xsd_map_destroy(struct xsd_map *m, void (*free_val)(void *));

/* ------------------------------------------------------------------ */
/* Nodes, paths, permissions (store.c)                                 */
/* ------------------------------------------------------------------ */
struct xsd_node *xsd_node_new(const char *path, const struct xsd_perms *perms);
struct xsd_node *xsd_node_dup(const struct xsd_node *n);
void xsd_node_free(struct xsd_node *n);
void xsd_node_set_value(struct xsd_node *n, const void *val, uint32_t len);
void xsd_node_add_child(struct xsd_node *n, const char *name);
void xsd_node_remove_child(struct xsd_node *n, const char *name);

void xsd_perms_copy(struct xsd_perms *dst, const struct xsd_perms *src);
void xsd_perms_clear(struct xsd_perms *p);
/* "n0\0r5\0" strings, `count` of them; 0 or -EINVAL. */
int xsd_perms_parse(const char *strings, uint32_t count, struct xsd_perms *out);
/* Returns a malloc'd "n0\0r5\0" and its length. */
char *xsd_perms_format(const struct xsd_perms *p, uint32_t *len);

/*
 * What a client gets on a node: privileged clients and the owner get
 * everything (READ|WRITE|OWNER), others their entry or p[0]'s access.
 * `target` (or XSD_DOMID_MAX+1 for none) is honoured like the client's
 * own domid. WRITE is masked off when `can_write` is false.
 */
uint32_t xsd_perm_for(const struct xsd_perms *p, uint32_t domid,
                      uint32_t target, bool privileged, bool can_write);

/*
 * A canonical path: starts with '/', no "//", no trailing '/', only
 * [A-Za-z0-9/_@-], at most XENSTORE_ABS_PATH_MAX bytes, and for
 * unprivileged clients at most XENSTORE_REL_PATH_MAX bytes beyond
 * "/local/domain/N/".
 */
bool xsd_path_valid(const char *path, bool privileged);
/* Parent of a valid non-root path, malloc'd ("/" for "/a"). */
char *xsd_path_parent(const char *path);
const char *xsd_path_basename(const char *path);
/* Is `path` equal to or below `ancestor`? */
bool xsd_path_is_child(const char *path, const char *ancestor);
/* Decimal domid, no sign or junk, <= XSD_DOMID_MAX; 0 or -EINVAL. */
int xsd_parse_domid(const char *s, uint32_t *out);

/* ------------------------------------------------------------------ */
/* The committed store (store.c)                                       */
/* ------------------------------------------------------------------ */
struct xsd_owner_count {
    uint32_t domid;
    int64_t count;
};

struct xsd_store {
    struct xsd_map nodes;           /* path -> struct xsd_node * */
    uint64_t gen;                   /* last generation handed out */
    struct xsd_owner_count *owners; /* nodes per owning domain */
    size_t nowners;
};

/* Creates "/", "/tool" and "/tool/xenstored", owned by dom0 with "n0". */
void xsd_store_init(struct xsd_store *s);
void xsd_store_destroy(struct xsd_store *s);
struct xsd_node *xsd_store_lookup(const struct xsd_store *s, const char *path);
/* Insert a node whose path is absent, or replace the present one; takes
 * ownership and gives the node a new generation. */
void xsd_store_set(struct xsd_store *s, struct xsd_node *n);
void xsd_store_delete(struct xsd_store *s, const char *path);
int64_t xsd_store_owner_count(const struct xsd_store *s, uint32_t domid);
void xsd_owner_adjust(struct xsd_owner_count **v, size_t *n, uint32_t domid,
                      int64_t delta);

/* ------------------------------------------------------------------ */
/* Views and transactions (txn.c)                                      */
/* ------------------------------------------------------------------ */
struct xsd_txn;

/* Requests see the store either directly or through a transaction. */
struct xsd_view {
    struct xsd_store *store;
    struct xsd_txn *txn;            /* NULL: the committed store */
};

/* NULL if absent. The pointer stays valid until the node is changed
 * through the view. Inside a transaction the first access snapshots the
 * node (or its absence) for the conflict check at commit. */
const struct xsd_node *xsd_view_get(struct xsd_view *v, const char *path);
/* Like xsd_view_get, but never snapshots: for looks that must not make a
 * transaction conflict (permissions of a watch event's parent). */
const struct xsd_node *xsd_view_peek(struct xsd_view *v, const char *path);
/* Existing node, to be changed in place; NULL if absent. */
struct xsd_node *xsd_view_get_mut(struct xsd_view *v, const char *path);
/* Add a node whose path is absent; takes ownership. */
void xsd_view_add(struct xsd_view *v, struct xsd_node *n);
/* Remove one node (children are the caller's business). */
void xsd_view_remove(struct xsd_view *v, const char *path);
/* Replace the permissions of a node got with get_mut, keeping counts. */
void xsd_view_set_perms(struct xsd_view *v, struct xsd_node *n,
                        const struct xsd_perms *perms);
int64_t xsd_view_owner_count(struct xsd_view *v, uint32_t domid);

/* A watch event held back until its transaction commits. */
struct xsd_queued_event {
    char *path;
    bool exact;
    struct xsd_perms perms[3];
    unsigned nperms;
};

struct xsd_txn {
    struct xsd_txn *next;           /* connection's list */
    uint32_t id;
    struct xsd_map entries;         /* path -> struct xsd_txn_entry * */
    struct xsd_owner_count *deltas; /* node count changes per owner */
    size_t ndeltas;
    struct xsd_queued_event *events;
    size_t nevents;
};

struct xsd_txn *xsd_txn_new(uint32_t id);
void xsd_txn_free(struct xsd_txn *t);
void xsd_txn_queue_event(struct xsd_txn *t, const char *path, bool exact,
                         const struct xsd_perms *const *perms, unsigned nperms);
/* 0, or -EAGAIN when a node the transaction saw has changed since. */
int xsd_txn_check(struct xsd_txn *t, const struct xsd_store *s);
/* Change in node count for `domid` if the transaction commits. */
int64_t xsd_txn_delta(const struct xsd_txn *t, uint32_t domid);
/* Apply a checked transaction to the store (consumes its changes). */
void xsd_txn_apply(struct xsd_txn *t, struct xsd_store *s);

/* ------------------------------------------------------------------ */
/* Server and connections (wire.c)                                     */
/* ------------------------------------------------------------------ */
struct xsd_watch {
    struct xsd_watch *next;
    char *path;             /* canonical, or "@..." */
    char *token;
    bool relative;          /* events report paths relative to the
                             * connection's /local/domain/N */
};

struct xsd_domain {
    struct xsd_domain *next;
    uint32_t domid;
    uint64_t gfn;
    uint32_t target;        /* XSD_NO_TARGET if none */
};
#define XSD_NO_TARGET (XSD_DOMID_MAX + 1)

struct xsd_quota {
    unsigned nodes;         /* per owning domain */
    unsigned value_size;    /* bytes per value */
    unsigned watches;       /* per connection */
    unsigned transactions;  /* open per connection */
    unsigned perms;         /* entries per node */
};

struct xsd_listener {
    int fd;
    char *path;
    uint32_t domid;         /* identity of accepted clients */
    bool can_write;
};

struct xsd_conn;

struct xsd_server {
    struct xsd_store store;
    struct xsd_conn *conns;
    struct xsd_domain *domains;     /* introduced domains (dom0 always) */
    struct xsd_perms special_perms[2]; /* @introduceDomain, @releaseDomain */
    struct xsd_quota quota;
    struct xsd_listener *listeners;
    size_t nlisteners;
    uint64_t requests;              /* handled, for the log */
    bool accept_paused;             /* out of fds: wait for a client to go */
};

/* Output above this stops reading the client's requests. */
#define XSD_OUT_SOFT_LIMIT (256u * 1024)
/* Output above this (a client that never reads its events) drops it. */
#define XSD_OUT_HARD_LIMIT (16u * 1024 * 1024)

struct xsd_conn {
    struct xsd_conn *prev, *next;
    struct xsd_server *srv;
    int fd;                 /* -1: in-process (tests, fuzzing) */
    uint32_t domid;         /* 0: the privileged toolstack */
    bool can_write;
    bool dead;              /* protocol violation or I/O error: drop */

    /* Request being received. */
    struct xsd_sockmsg hdr;
    size_t hdr_used;
    char *body;             /* XENSTORE_PAYLOAD_MAX + 1 bytes */
    size_t body_used;

    /* Replies and events not yet written. */
    char *out;
    size_t out_off, out_len, out_cap;

    struct xsd_watch *watches;
    unsigned nwatches;
    struct xsd_txn *txns;
    unsigned ntxns;
    uint32_t next_txn_id;

    /* The request being handled. */
    struct xsd_sockmsg req;
    struct xsd_txn *cur_txn;
};

void xsd_server_init(struct xsd_server *srv);
void xsd_server_destroy(struct xsd_server *srv);
struct xsd_domain *xsd_domain_find(struct xsd_server *srv, uint32_t domid);

struct xsd_conn *xsd_conn_new(struct xsd_server *srv, int fd, uint32_t domid,
                              bool can_write);
/* Unlinks, closes the fd, frees watches and transactions. */
void xsd_conn_free(struct xsd_conn *c);
/* Feed received bytes; complete requests are handled at once. Returns
 * 0, or -EPROTO after a framing error (the connection is then dead). */
int xsd_conn_input(struct xsd_conn *c, const void *data, size_t len);
/* Write queued output to the fd: 0, or -errno (the connection is dead). */
int xsd_conn_flush(struct xsd_conn *c);
static inline bool xsd_conn_privileged(const struct xsd_conn *c)
{
    return c->domid == 0;
}
uint32_t xsd_conn_target(struct xsd_conn *c);
/* "/local/domain/<domid>" */
void xsd_conn_home(const struct xsd_conn *c, char *buf, size_t size);

/* Queue a reply to the request being handled (type and ids echoed). A
 * reply over XENSTORE_PAYLOAD_MAX becomes an E2BIG error. */
void xsd_reply(struct xsd_conn *c, uint32_t type, const void *data, size_t len);
void xsd_reply_error(struct xsd_conn *c, int err);      /* positive errno */
void xsd_reply_ok(struct xsd_conn *c);
void xsd_send_event(struct xsd_conn *c, const char *path, const char *token);
const char *xsd_errno_name(int err);

/* Listening sockets and the poll loop. */
int xsd_listen(struct xsd_server *srv, const char *path, uint32_t domid,
               bool can_write, struct error **errp);
/* Runs until a byte arrives on stop_fd (or it closes). 0 or -errno. */
int xsd_run(struct xsd_server *srv, int stop_fd);

/* ------------------------------------------------------------------ */
/* Watches (watch.c) and requests (ops.c)                              */
/* ------------------------------------------------------------------ */
/*
 * Report a change of `path`. `exact` fires only watches on that very path;
 * otherwise watches on the path or any ancestor fire. A watcher must be
 * able to read the node by one of `perms` (its new or old permissions or
 * its parent's); privileged watchers always can. Inside a transaction of
 * `origin` the event waits for the commit.
 */
void xsd_fire(struct xsd_server *srv, struct xsd_conn *origin, const char *path,
              bool exact, const struct xsd_perms *const *perms, unsigned nperms);
void xsd_fire_queued(struct xsd_server *srv, struct xsd_txn *t);
int xsd_watch_add(struct xsd_conn *c, const char *path, const char *token);
int xsd_watch_remove(struct xsd_conn *c, const char *path, const char *token);
void xsd_watch_clear(struct xsd_conn *c);

/* Handle the complete request in c->req / c->body. */
void xsd_handle_request(struct xsd_conn *c);

#endif
