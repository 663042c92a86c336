/*
 * tools/xenstored/ops.c — one handler per xenstore request type, behind a
 * single dispatch table that checks privilege and resolves the
 * transaction id first. Handlers work on a view of the store (committed
 * or transactional), return 0 after replying or a positive errno that
 * becomes an ERROR reply, and report changes to watches.
 */
#include "tools/xenstored/xenstored.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Arguments                                                           */
/* ------------------------------------------------------------------ */

/* The payload when it is exactly one NUL-terminated string, else NULL. */
static const char *xsd_onearg(const struct xsd_conn *c)
{
    uint32_t len = c->req.len;
    if (len == 0 || memchr(c->body, '\0', len) != c->body + len - 1) {
        return NULL;
    }
    return c->body;
}

/* Number of NUL-terminated strings at the start of the payload. */
static unsigned xsd_count_strings(const struct xsd_conn *c)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < c->req.len; i++) {
        n += c->body[i] == '\0';
    }
    return n;
}

/* The i-th string of the payload (the caller counted them). */
static const char *xsd_nth_string(const struct xsd_conn *c, unsigned i)
{
    const char *s = c->body;
    while (i--) {
        s += strlen(s) + 1;
    }
    return s;
}

/* Relative paths are taken against the client's /local/domain/N. */
static char *xsd_canonical(const struct xsd_conn *c, const char *path)
{
    if (path[0] == '/' || path[0] == '@') {
        return xsd_strdup(path);
    }
    char home[32];
    xsd_conn_home(c, home, sizeof(home));
    char *p = xsd_alloc(strlen(home) + strlen(path) + 2);
    sprintf(p, "%s/%s", home, path);
    return p;
}

static struct xsd_view xsd_conn_view(struct xsd_conn *c)
{
    return (struct xsd_view){ .store = &c->srv->store, .txn = c->cur_txn };
}

static uint32_t xsd_perm(struct xsd_conn *c, const struct xsd_perms *p)
{
    return xsd_perm_for(p, c->domid, xsd_conn_target(c), xsd_conn_privileged(c),
                        c->can_write);
}

/* ------------------------------------------------------------------ */
/* Node access with permission checks                                  */
/* ------------------------------------------------------------------ */

/*
 * A client that may not read the nearest existing ancestor learns nothing
 * about what lies below it: ENOENT turns into EACCES there.
 */
static int xsd_errno_from_parents(struct xsd_conn *c, struct xsd_view *v,
                                  const char *path, int err, uint32_t perm)
{
    const struct xsd_node *n = NULL;
    char *p = xsd_strdup(path);
    while (strcmp(p, "/") != 0) {
        char *parent = xsd_path_parent(p);
        free(p);
        p = parent;
        n = xsd_view_get(v, p);
        if (n) {
            break;
        }
    }
    free(p);
    if (n && !(xsd_perm(c, &n->perms) & perm)) {
        return EACCES;
    }
    return err;
}

static const struct xsd_node *xsd_get_node(struct xsd_conn *c,
                                           struct xsd_view *v,
                                           const char *path, uint32_t perm,
                                           int *err)
{
    if (!xsd_path_valid(path, xsd_conn_privileged(c))) {
        *err = EINVAL;
        return NULL;
    }
    const struct xsd_node *n = xsd_view_get(v, path);
    if (n) {
        if ((xsd_perm(c, &n->perms) & perm) == perm) {
            return n;
        }
        *err = EACCES;
    } else {
        *err = ENOENT;
    }
    *err = xsd_errno_from_parents(c, v, path, *err, perm);
    return NULL;
}

/* Permissions of the parent of `path` (NULL for the root). */
static const struct xsd_perms *xsd_parent_perms(struct xsd_view *v,
                                                const char *path)
{
    if (strcmp(path, "/") == 0) {
        return NULL;
    }
    char *parent = xsd_path_parent(path);
    const struct xsd_node *n = xsd_view_peek(v, parent);
    free(parent);
    return n ? &n->perms : NULL;
}

/* How many nodes creating `path` adds (it and its missing ancestors). */
static unsigned xsd_missing_nodes(struct xsd_view *v, const char *path)
{
    unsigned n = 0;
    char *p = xsd_strdup(path);
    while (!xsd_view_get(v, p)) {
        n++;
        char *parent = xsd_path_parent(p);
        free(p);
        p = parent;
    }
    free(p);
    return n;
}

/* Create `path` and missing ancestors; new nodes inherit the parent's
 * permissions, and an unprivileged creator becomes their owner. */
static void xsd_construct(struct xsd_conn *c, struct xsd_view *v,
                          const char *path, const void *val, uint32_t vlen)
{
    char *pp = xsd_path_parent(path);
    struct xsd_node *parent = xsd_view_get_mut(v, pp);
    if (!parent) {
        xsd_construct(c, v, pp, "", 0);
        parent = xsd_view_get_mut(v, pp);
    }
    struct xsd_node *n = xsd_node_new(path, &parent->perms);
    if (!xsd_conn_privileged(c)) {
        n->perms.p[0].domid = c->domid;
    }
    xsd_node_set_value(n, val, vlen);
    xsd_node_add_child(parent, xsd_path_basename(path));
    free(pp);
    xsd_view_add(v, n);
}

static int xsd_create(struct xsd_conn *c, struct xsd_view *v, const char *path,
                      const void *val, uint32_t vlen)
{
    if (!xsd_conn_privileged(c)) {
        int64_t have = xsd_view_owner_count(v, c->domid);
        if (have + xsd_missing_nodes(v, path) > c->srv->quota.nodes) {
            return ENOSPC;
        }
    }
    xsd_construct(c, v, path, val, vlen);
    return 0;
}

static void xsd_fire_node(struct xsd_conn *c, struct xsd_view *v,
                          const char *path, bool exact,
                          const struct xsd_perms *extra)
{
    const struct xsd_node *n = xsd_view_peek(v, path);
    const struct xsd_perms *perms[3] = {
        n ? &n->perms : NULL, xsd_parent_perms(v, path), extra,
    };
    xsd_fire(c->srv, c, path, exact, perms, 3);
}

/* Delete `path` and everything below, children first. Each node fires
 * watches on exactly its path; the top one fires watches on ancestors. */
static void xsd_delete_tree(struct xsd_conn *c, struct xsd_view *v,
                            const char *path, bool top,
                            const struct xsd_perms *parent_perms)
{
    const struct xsd_node *n = xsd_view_get(v, path);
    if (!n) {
        return;
    }
    struct xsd_perms perms;
    xsd_perms_copy(&perms, &n->perms);
    uint32_t clen = n->childlen;
    char *children = clen ? xsd_memdup(n->children, clen) : NULL;
    for (uint32_t off = 0; off < clen; off += strlen(children + off) + 1) {
        char *child = xsd_alloc(strlen(path) + strlen(children + off) + 2);
        sprintf(child, "%s/%s", path, children + off);
        xsd_delete_tree(c, v, child, false, &perms);
        free(child);
    }
    free(children);
    const struct xsd_perms *fp[2] = { &perms, parent_perms };
    xsd_fire(c->srv, c, path, !top, fp, 2);
    xsd_view_remove(v, path);
    xsd_perms_clear(&perms);
}

/* ------------------------------------------------------------------ */
/* Handlers                                                            */
/* ------------------------------------------------------------------ */

/*
 * The node a one-path request names, in view `v`, if the caller has
 * `need` on it. *pathp gets the canonical path (the caller frees it; NULL
 * for a malformed request). NULL with *err set when there is no node:
 * EINVAL (not one argument), ENOENT, EACCES...
 */
static const struct xsd_node *xsd_arg_node(struct xsd_conn *c,
                                           struct xsd_view *v, uint32_t need,
                                           char **pathp, int *err)
{
    const char *arg = xsd_onearg(c);

    *pathp = NULL;
    *err = 0;
    if (!arg) {
        *err = EINVAL;
        return NULL;
    }
    *pathp = xsd_canonical(c, arg);
    return xsd_get_node(c, v, *pathp, need, err);
}

/* The permissions of a special watch path, or NULL for another name. */
static struct xsd_perms *xsd_special_name_perms(struct xsd_conn *c,
                                                const char *name)
{
    if (strcmp(name, "@introduceDomain") == 0) {
        return &c->srv->special_perms[0];
    }
    if (strcmp(name, "@releaseDomain") == 0) {
        return &c->srv->special_perms[1];
    }
    return NULL;
}

/* READ and DIRECTORY: a readable node's value, or its list of children. */
static int xsd_reply_node(struct xsd_conn *c, bool children)
{
    struct xsd_view v = xsd_conn_view(c);
    char *path;
    int err;
    const struct xsd_node *n = xsd_arg_node(c, &v, XSD_PERM_READ, &path, &err);
    if (n && children) {
        xsd_reply(c, XS_DIRECTORY, n->children, n->childlen);
    } else if (n) {
        xsd_reply(c, XS_READ, n->value, n->vlen);
    }
    free(path);
    return err;
}

static int xsd_op_read(struct xsd_conn *c)
{
    return xsd_reply_node(c, false);
}

static int xsd_op_directory(struct xsd_conn *c)
{
    return xsd_reply_node(c, true);
}

/* "path\0offset\0" -> "gen\0child\0child\0..." with one more NUL once the
 * list is complete; the client restarts if gen changes between parts. */
static int xsd_op_directory_part(struct xsd_conn *c)
{
    if (xsd_count_strings(c) != 2) {
        return EINVAL;
    }
    struct xsd_view v = xsd_conn_view(c);
    char *path = xsd_canonical(c, xsd_nth_string(c, 0));
    unsigned long off = strtoul(xsd_nth_string(c, 1), NULL, 10);
    int err = 0;
    const struct xsd_node *n = xsd_get_node(c, &v, path, XSD_PERM_READ, &err);
    free(path);
    if (!n) {
        return err;
    }
    char gen[24];
    size_t genlen = (size_t)snprintf(gen, sizeof(gen), "%llu",
                                     (unsigned long long)n->gen) + 1;
    char *buf = xsd_alloc(XENSTORE_PAYLOAD_MAX + 1);
    memcpy(buf, gen, genlen);
    size_t len = genlen;
    if (off >= n->childlen) {
        buf[len++] = '\0';
    } else {
        size_t max = XENSTORE_PAYLOAD_MAX - genlen - 1;
        size_t used = 0;
        const char *child = n->children + off;
        while (off + used < n->childlen) {
            size_t clen = strlen(child) + 1;
            if (used + clen > max) {
                break;
            }
            used += clen;
            child += clen;
        }
        memcpy(buf + len, n->children + off, used);
        len += used;
        if (off + used == n->childlen) {
            buf[len++] = '\0';
        }
    }
    xsd_reply(c, XS_DIRECTORY_PART, buf, len);
    free(buf);
    return 0;
}

static int xsd_op_get_perms(struct xsd_conn *c)
{
    const char *arg = xsd_onearg(c);
    if (!arg) {
        return EINVAL;
    }
    if (arg[0] == '@') {
        const struct xsd_perms *sp = xsd_special_name_perms(c, arg);
        if (!sp) {
            return EINVAL;
        }
        if (!(xsd_perm(c, sp) & XSD_PERM_READ)) {
            return EACCES;
        }
        uint32_t len;
        char *s = xsd_perms_format(sp, &len);
        xsd_reply(c, XS_GET_PERMS, s, len);
        free(s);
        return 0;
    }
    struct xsd_view v = xsd_conn_view(c);
    char *path = xsd_canonical(c, arg);
    int err = 0;
    const struct xsd_node *n = xsd_get_node(c, &v, path, XSD_PERM_READ, &err);
    free(path);
    if (!n) {
        return err;
    }
    uint32_t len;
    char *s = xsd_perms_format(&n->perms, &len);
    xsd_reply(c, XS_GET_PERMS, s, len);
    free(s);
    return 0;
}

static int xsd_op_write(struct xsd_conn *c)
{
    const char *nul = memchr(c->body, '\0', c->req.len);
    if (!nul) {
        return EINVAL;
    }
    uint32_t off = (uint32_t)(nul - c->body) + 1;
    const char *val = c->body + off;
    uint32_t vlen = c->req.len - off;

    struct xsd_view v = xsd_conn_view(c);
    char *path = xsd_canonical(c, c->body);
    int err = 0;
    const struct xsd_node *n = xsd_get_node(c, &v, path, XSD_PERM_WRITE, &err);
    if (!n && err != ENOENT) {
        goto out;
    }
    if (!xsd_conn_privileged(c) && vlen > c->srv->quota.value_size) {
        err = ENOSPC;
        goto out;
    }
    if (n) {
        xsd_node_set_value(xsd_view_get_mut(&v, path), val, vlen);
    } else {
        err = xsd_create(c, &v, path, val, vlen);
        if (err) {
            goto out;
        }
    }
    err = 0;
    xsd_fire_node(c, &v, path, false, NULL);
    xsd_reply_ok(c);
out:
    free(path);
    return err;
}

static int xsd_op_mkdir(struct xsd_conn *c)
{
    struct xsd_view v = xsd_conn_view(c);
    char *path;
    int err;
    const struct xsd_node *n = xsd_arg_node(c, &v, XSD_PERM_WRITE, &path, &err);
    if (!n) {
        if (err != ENOENT) {
            goto out;
        }
        err = xsd_create(c, &v, path, "", 0);
        if (err) {
            goto out;
        }
        xsd_fire_node(c, &v, path, false, NULL);
    }
    err = 0;
    xsd_reply_ok(c);
out:
    free(path);
    return err;
}

static int xsd_op_rm(struct xsd_conn *c)
{
    struct xsd_view v = xsd_conn_view(c);
    char *path;
    int err;
    const struct xsd_node *n = xsd_arg_node(c, &v, XSD_PERM_WRITE, &path, &err);
    if (!n) {
        if (err == ENOENT) {
            /* Removing what is not there is fine if the parent is. */
            char *parent = xsd_path_parent(path);
            if (xsd_view_get(&v, parent)) {
                err = 0;
                xsd_reply_ok(c);
            }
            free(parent);
        }
        goto out;
    }
    if (strcmp(path, "/") == 0) {
        err = EINVAL;
        goto out;
    }
    char *parent = xsd_path_parent(path);
    struct xsd_perms pperms;
    xsd_perms_copy(&pperms, &xsd_view_get(&v, parent)->perms);
    xsd_delete_tree(c, &v, path, true, &pperms);
    xsd_perms_clear(&pperms);
    xsd_node_remove_child(xsd_view_get_mut(&v, parent), xsd_path_basename(path));
    free(parent);
    xsd_reply_ok(c);
out:
    free(path);
    return err;
}

static int xsd_set_special_perms(struct xsd_conn *c, const char *name,
                                 const struct xsd_perms *perms)
{
    struct xsd_perms *sp = xsd_special_name_perms(c, name);
    if (!sp) {
        return EINVAL;
    }
    uint32_t need = XSD_PERM_WRITE | XSD_PERM_OWNER;
    if ((xsd_perm(c, sp) & need) != need) {
        return EACCES;
    }
    xsd_perms_clear(sp);
    xsd_perms_copy(sp, perms);
    xsd_reply_ok(c);
    return 0;
}

static int xsd_op_set_perms(struct xsd_conn *c)
{
    unsigned count = xsd_count_strings(c);
    if (count < 2) {
        return EINVAL;
    }
    uint32_t nperms = count - 1;
    if (!xsd_conn_privileged(c) && nperms > c->srv->quota.perms) {
        return ENOSPC;
    }
    struct xsd_perms perms;
    if (xsd_perms_parse(xsd_nth_string(c, 1), nperms, &perms) < 0) {
        return EINVAL;
    }
    int err = 0;
    char *path = NULL;
    if (c->body[0] == '@') {
        err = xsd_set_special_perms(c, c->body, &perms);
        goto out_perms;
    }
    struct xsd_view v = xsd_conn_view(c);
    path = xsd_canonical(c, c->body);
    const struct xsd_node *n = xsd_get_node(c, &v, path,
                                            XSD_PERM_WRITE | XSD_PERM_OWNER, &err);
    if (!n) {
        goto out_perms;
    }
    /* Only the toolstack may give a node away. */
    if (!xsd_conn_privileged(c) && perms.p[0].domid != n->perms.p[0].domid) {
        err = EPERM;
        goto out_perms;
    }
    struct xsd_perms old;
    xsd_perms_copy(&old, &n->perms);
    xsd_view_set_perms(&v, xsd_view_get_mut(&v, path), &perms);
    xsd_fire_node(c, &v, path, false, &old);
    xsd_perms_clear(&old);
    xsd_reply_ok(c);
out_perms:
    xsd_perms_clear(&perms);
    free(path);
    return err;
}

static int xsd_op_watch(struct xsd_conn *c)
{
    if (xsd_count_strings(c) != 2) {
        return EINVAL;
    }
    const char *path = xsd_nth_string(c, 0);
    const char *token = xsd_nth_string(c, 1);
    int ret = xsd_watch_add(c, path, token);
    if (ret < 0) {
        return -ret;
    }
    xsd_reply_ok(c);
    /* The first event comes at once: clients read the state then. */
    xsd_send_event(c, path, token);
    return 0;
}

static int xsd_op_unwatch(struct xsd_conn *c)
{
    if (xsd_count_strings(c) != 2) {
        return EINVAL;
    }
    int ret = xsd_watch_remove(c, xsd_nth_string(c, 0), xsd_nth_string(c, 1));
    if (ret < 0) {
        return -ret;
    }
    xsd_reply_ok(c);
    return 0;
}

static int xsd_op_transaction_start(struct xsd_conn *c)
{
    if (c->cur_txn) {
        return EBUSY;       /* no nesting */
    }
    if (!xsd_conn_privileged(c) && c->ntxns >= c->srv->quota.transactions) {
        return ENOSPC;
    }
    uint32_t id;
    for (;;) {
        id = c->next_txn_id++;
        if (id == 0) {
            continue;
        }
        struct xsd_txn *t = c->txns;
        while (t && t->id != id) {
            t = t->next;
        }
        if (!t) {
            break;
        }
    }
    struct xsd_txn *t = xsd_txn_new(id);
    t->next = c->txns;
    c->txns = t;
    c->ntxns++;
    char buf[16];
    int len = snprintf(buf, sizeof(buf), "%u", id);
    xsd_reply(c, XS_TRANSACTION_START, buf, (size_t)len + 1);
    return 0;
}

static int xsd_op_transaction_end(struct xsd_conn *c)
{
    const char *arg = xsd_onearg(c);
    if (!arg || (strcmp(arg, "T") != 0 && strcmp(arg, "F") != 0)) {
        return EINVAL;
    }
    struct xsd_txn *t = c->cur_txn;
    if (!t) {
        return ENOENT;
    }
    c->cur_txn = NULL;
    for (struct xsd_txn **pp = &c->txns; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    c->ntxns--;

    int err = 0;
    if (arg[0] == 'T') {
        struct xsd_store *s = &c->srv->store;
        if (xsd_txn_check(t, s) < 0) {
            err = EAGAIN;
            goto out;
        }
        if (!xsd_conn_privileged(c) && xsd_txn_delta(t, c->domid) > 0 &&
            xsd_store_owner_count(s, c->domid) + xsd_txn_delta(t, c->domid) >
            c->srv->quota.nodes) {
            err = ENOSPC;
            goto out;
        }
        xsd_txn_apply(t, s);
        xsd_fire_queued(c->srv, t);
    }
    xsd_reply_ok(c);
out:
    xsd_txn_free(t);
    return err;
}

static int xsd_op_introduce(struct xsd_conn *c)
{
    if (xsd_count_strings(c) < 3) {
        return EINVAL;
    }
    uint32_t domid, port;
    if (xsd_parse_domid(xsd_nth_string(c, 0), &domid) < 0 ||
        xsd_parse_domid(xsd_nth_string(c, 2), &port) < 0 || port == 0 ||
        domid == 0 || domid == XSD_DOMID_SELF) {
        return EINVAL;
    }
    uint64_t gfn = strtoull(xsd_nth_string(c, 1), NULL, 0);
    struct xsd_domain *d = xsd_domain_find(c->srv, domid);
    if (d) {
        /* Re-introducing the same domain is how its channel is reset. */
        if (d->gfn != gfn) {
            return EINVAL;
        }
        xsd_reply_ok(c);
        return 0;
    }
    d = xsd_alloc(sizeof(*d));
    d->domid = domid;
    d->gfn = gfn;
    d->target = XSD_NO_TARGET;
    d->next = c->srv->domains;
    c->srv->domains = d;
    xsd_fire(c->srv, NULL, "@introduceDomain", false, NULL, 0);
    xsd_reply_ok(c);
    return 0;
}

/* The introduced domain named by the one argument; domain 0 is EINVAL. */
static int xsd_domain_arg(struct xsd_conn *c, struct xsd_domain ***slot)
{
    const char *arg = xsd_onearg(c);
    uint32_t domid;
    if (!arg || xsd_parse_domid(arg, &domid) < 0 || domid == 0) {
        return EINVAL;
    }
    for (struct xsd_domain **pp = &c->srv->domains; *pp; pp = &(*pp)->next) {
        if ((*pp)->domid == domid) {
            *slot = pp;
            return 0;
        }
    }
    return ENOENT;
}

struct xsd_owned {
    uint32_t domid;
    char **paths;
    size_t n;
};

static void xsd_collect_owned(void *opaque, const char *path, void *val)
{
    struct xsd_owned *o = opaque;
    const struct xsd_node *n = val;
    if (n->perms.p[0].domid == o->domid && strcmp(path, "/") != 0) {
        o->paths = xsd_realloc(o->paths, (o->n + 1) * sizeof(*o->paths));
        o->paths[o->n++] = xsd_strdup(path);
    }
}

static int xsd_cmp_len(const void *a, const void *b)
{
    size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);
    return la < lb ? -1 : la > lb;
}

/* A released domain's nodes go with it (xenstored's default, without
 * --keep-orphans), each subtree removed from its top with watch events. */
static void xsd_remove_owned(struct xsd_conn *c, uint32_t domid)
{
    struct xsd_view v = { .store = &c->srv->store, .txn = NULL };
    struct xsd_owned o = { .domid = domid };
    xsd_map_foreach(&c->srv->store.nodes, xsd_collect_owned, &o);
    if (o.n > 1) {
        qsort(o.paths, o.n, sizeof(*o.paths), xsd_cmp_len);
    }
    for (size_t i = 0; i < o.n; i++) {
        const char *path = o.paths[i];
        if (xsd_view_get(&v, path)) {
            char *parent = xsd_path_parent(path);
            struct xsd_perms pperms;
            xsd_perms_copy(&pperms, &xsd_view_get(&v, parent)->perms);
            xsd_delete_tree(c, &v, path, true, &pperms);
            xsd_perms_clear(&pperms);
            xsd_node_remove_child(xsd_view_get_mut(&v, parent),
                                  xsd_path_basename(path));
            free(parent);
        }
        free(o.paths[i]);
    }
    free(o.paths);
}

static int xsd_op_release(struct xsd_conn *c)
{
    struct xsd_domain **pp;
    int err = xsd_domain_arg(c, &pp);
    if (err) {
        return err;
    }
    struct xsd_domain *d = *pp;
    uint32_t domid = d->domid;
    *pp = d->next;
    free(d);
    c->cur_txn = NULL;      /* this happens outside any transaction */
    xsd_remove_owned(c, domid);
    xsd_fire(c->srv, NULL, "@releaseDomain", false, NULL, 0);
    xsd_reply_ok(c);
    return 0;
}

static int xsd_op_resume(struct xsd_conn *c)
{
    struct xsd_domain **pp;
    int err = xsd_domain_arg(c, &pp);
    if (err) {
        return err;
    }
    xsd_reply_ok(c);
    return 0;
}

static int xsd_op_set_target(struct xsd_conn *c)
{
    uint32_t domid, target;
    if (xsd_count_strings(c) != 2 ||
        xsd_parse_domid(xsd_nth_string(c, 0), &domid) < 0 ||
        xsd_parse_domid(xsd_nth_string(c, 1), &target) < 0) {
        return EINVAL;
    }
    struct xsd_domain *d = xsd_domain_find(c->srv, domid);
    if (!d || !xsd_domain_find(c->srv, target)) {
        return ENOENT;
    }
    d->target = target;
    xsd_reply_ok(c);
    return 0;
}

static int xsd_op_is_domain_introduced(struct xsd_conn *c)
{
    const char *arg = xsd_onearg(c);
    uint32_t domid;
    if (!arg || xsd_parse_domid(arg, &domid) < 0) {
        return EINVAL;
    }
    bool yes = domid == XSD_DOMID_SELF || xsd_domain_find(c->srv, domid);
    xsd_reply(c, XS_IS_DOMAIN_INTRODUCED, yes ? "T" : "F", 2);
    return 0;
}

static int xsd_op_get_domain_path(struct xsd_conn *c)
{
    const char *arg = xsd_onearg(c);
    uint32_t domid;
    if (!arg || xsd_parse_domid(arg, &domid) < 0) {
        return EINVAL;
    }
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "/local/domain/%u", domid);
    xsd_reply(c, XS_GET_DOMAIN_PATH, buf, (size_t)len + 1);
    return 0;
}

static int xsd_op_reset_watches(struct xsd_conn *c)
{
    c->cur_txn = NULL;
    xsd_watch_clear(c);
    while (c->txns) {
        struct xsd_txn *t = c->txns;
        c->txns = t->next;
        xsd_txn_free(t);
    }
    c->ntxns = 0;
    xsd_reply_ok(c);
    return 0;
}

/*
 * CONTROL "domain\0<domid>\0": from now on this connection is domain
 * <domid> — unprivileged, relative paths below /local/domain/<domid>, its
 * own nodes and quotas. One way; lets tests act as a guest.
 */
static int xsd_op_control(struct xsd_conn *c)
{
    unsigned count = xsd_count_strings(c);
    if (count < 1) {
        return EINVAL;
    }
    const char *cmd = xsd_nth_string(c, 0);
    if (strcmp(cmd, "domain") == 0) {
        uint32_t domid;
        if (count != 2 || xsd_parse_domid(xsd_nth_string(c, 1), &domid) < 0 ||
            domid == 0 || domid == XSD_DOMID_SELF) {
            return EINVAL;
        }
        if (c->txns) {
            return EBUSY;
        }
        log_info("connection now acts as domain %u", domid);
        c->domid = domid;
        xsd_reply_ok(c);
        return 0;
    }
    return EINVAL;
}

/* ------------------------------------------------------------------ */
/* Dispatch                                                            */
/* ------------------------------------------------------------------ */

#define XSD_OP_PRIV  (1u << 0)      /* privileged clients only */
#define XSD_OP_NOTID (1u << 1)      /* ignores the transaction id */

struct xsd_op {
    const char *name;
    int (*fn)(struct xsd_conn *c);  /* 0 after replying, or an errno */
    unsigned flags;
};

static const struct xsd_op xsd_ops[XS_TYPE_COUNT] = {
    [XS_CONTROL] = { "CONTROL", xsd_op_control, XSD_OP_PRIV },
    [XS_DIRECTORY] = { "DIRECTORY", xsd_op_directory, 0 },
    [XS_READ] = { "READ", xsd_op_read, 0 },
    [XS_GET_PERMS] = { "GET_PERMS", xsd_op_get_perms, 0 },
    [XS_WATCH] = { "WATCH", xsd_op_watch, XSD_OP_NOTID },
    [XS_UNWATCH] = { "UNWATCH", xsd_op_unwatch, XSD_OP_NOTID },
    [XS_TRANSACTION_START] = { "TRANSACTION_START", xsd_op_transaction_start, 0 },
    [XS_TRANSACTION_END] = { "TRANSACTION_END", xsd_op_transaction_end, 0 },
    [XS_INTRODUCE] = { "INTRODUCE", xsd_op_introduce, XSD_OP_PRIV },
    [XS_RELEASE] = { "RELEASE", xsd_op_release, XSD_OP_PRIV },
    [XS_GET_DOMAIN_PATH] = { "GET_DOMAIN_PATH", xsd_op_get_domain_path, 0 },
    [XS_WRITE] = { "WRITE", xsd_op_write, 0 },
    [XS_MKDIR] = { "MKDIR", xsd_op_mkdir, 0 },
    [XS_RM] = { "RM", xsd_op_rm, 0 },
    [XS_SET_PERMS] = { "SET_PERMS", xsd_op_set_perms, 0 },
    [XS_WATCH_EVENT] = { "WATCH_EVENT", NULL, 0 },
    [XS_ERROR] = { "ERROR", NULL, 0 },
    [XS_IS_DOMAIN_INTRODUCED] = { "IS_DOMAIN_INTRODUCED",
                                  xsd_op_is_domain_introduced, XSD_OP_PRIV },
    [XS_RESUME] = { "RESUME", xsd_op_resume, XSD_OP_PRIV },
    [XS_SET_TARGET] = { "SET_TARGET", xsd_op_set_target, XSD_OP_PRIV },
    [XS_RESET_WATCHES] = { "RESET_WATCHES", xsd_op_reset_watches, 0 },
    [XS_DIRECTORY_PART] = { "DIRECTORY_PART", xsd_op_directory_part, 0 },
};

void xsd_handle_request(struct xsd_conn *c)
{
    uint32_t type = c->req.type;
    const struct xsd_op *op = type < XS_TYPE_COUNT ? &xsd_ops[type] : NULL;

    c->srv->requests++;
    if (log_enabled(LOG_DEBUG)) {
        log_debug("dom%u %s req %u tx %u len %u", c->domid,
                  op && op->name ? op->name : "unknown", c->req.req_id,
                  c->req.tx_id, c->req.len);
    }
    if (!op || !op->fn) {
        xsd_reply_error(c, ENOSYS);
        return;
    }
    if ((op->flags & XSD_OP_PRIV) && !xsd_conn_privileged(c)) {
        xsd_reply_error(c, EACCES);
        return;
    }
    c->cur_txn = NULL;
    if (!(op->flags & XSD_OP_NOTID) && c->req.tx_id != 0) {
        struct xsd_txn *t = c->txns;
        while (t && t->id != c->req.tx_id) {
            t = t->next;
        }
        if (!t) {
            xsd_reply_error(c, ENOENT);
            return;
        }
        c->cur_txn = t;
    }
    int err = op->fn(c);
    c->cur_txn = NULL;
    if (err) {
        xsd_reply_error(c, err);
    }
}
