/*
 * tools/xenstored/txn.c — views of the store for requests, and
 * transactions: private copies of every node a transaction touches, the
 * generation each had when first seen, and at commit a per-node conflict
 * check (any such node changed meanwhile means EAGAIN) before the copies
 * replace the committed nodes.
 */
#include "tools/xenstored/xenstored.h"

#include <stdlib.h>
#include <string.h>

struct xsd_txn_entry {
    struct xsd_node *node;  /* the transaction's copy; NULL = absent */
    uint64_t base_gen;      /* committed generation when first seen, 0 = absent */
    bool modified;
};

static void xsd_txn_entry_free(void *p)
{
    struct xsd_txn_entry *e = p;
    xsd_node_free(e->node);
    free(e);
}

struct xsd_txn *xsd_txn_new(uint32_t id)
{
    struct xsd_txn *t = xsd_alloc(sizeof(*t));
    t->id = id;
    xsd_map_init(&t->entries);
    return t;
}

void xsd_txn_free(struct xsd_txn *t)
{
    if (!t) {
        return;
    }
    xsd_map_destroy(&t->entries, xsd_txn_entry_free);
    free(t->deltas);
    for (size_t i = 0; i < t->nevents; i++) {
        free(t->events[i].path);
        for (unsigned j = 0; j < t->events[i].nperms; j++) {
            xsd_perms_clear(&t->events[i].perms[j]);
        }
    }
    free(t->events);
    free(t);
}

/* The transaction's entry for `path`, snapshotting the committed node on
 * first access. */
static struct xsd_txn_entry *xsd_txn_entry(struct xsd_view *v, const char *path)
{
    struct xsd_txn_entry *e = xsd_map_get(&v->txn->entries, path);
    if (!e) {
        const struct xsd_node *n = xsd_store_lookup(v->store, path);
        e = xsd_alloc(sizeof(*e));
        e->node = n ? xsd_node_dup(n) : NULL;
        e->base_gen = n ? n->gen : 0;
        xsd_map_put(&v->txn->entries, path, e);
    }
    return e;
}

const struct xsd_node *xsd_view_get(struct xsd_view *v, const char *path)
{
    if (!v->txn) {
        return xsd_store_lookup(v->store, path);
    }
    return xsd_txn_entry(v, path)->node;
}

const struct xsd_node *xsd_view_peek(struct xsd_view *v, const char *path)
{
    if (v->txn) {
        struct xsd_txn_entry *e = xsd_map_get(&v->txn->entries, path);
        if (e) {
            return e->node;
        }
    }
    return xsd_store_lookup(v->store, path);
}

struct xsd_node *xsd_view_get_mut(struct xsd_view *v, const char *path)
{
    if (!v->txn) {
        struct xsd_node *n = xsd_store_lookup(v->store, path);
        if (n) {
            n->gen = ++v->store->gen;
        }
        return n;
    }
    struct xsd_txn_entry *e = xsd_txn_entry(v, path);
    if (e->node) {
        e->modified = true;
    }
    return e->node;
}

void xsd_view_add(struct xsd_view *v, struct xsd_node *n)
{
    if (!v->txn) {
        xsd_store_set(v->store, n);
        return;
    }
    struct xsd_txn_entry *e = xsd_txn_entry(v, n->path);
    xsd_node_free(e->node);
    e->node = n;
    e->modified = true;
    xsd_owner_adjust(&v->txn->deltas, &v->txn->ndeltas, n->perms.p[0].domid, 1);
}

void xsd_view_remove(struct xsd_view *v, const char *path)
{
    if (!v->txn) {
        xsd_store_delete(v->store, path);
        return;
    }
    struct xsd_txn_entry *e = xsd_txn_entry(v, path);
    if (e->node) {
        xsd_owner_adjust(&v->txn->deltas, &v->txn->ndeltas,
                         e->node->perms.p[0].domid, -1);
        xsd_node_free(e->node);
        e->node = NULL;
        e->modified = true;
    }
}

void xsd_view_set_perms(struct xsd_view *v, struct xsd_node *n,
                        const struct xsd_perms *perms)
{
    struct xsd_owner_count **counts = v->txn ? &v->txn->deltas : &v->store->owners;
    size_t *ncounts = v->txn ? &v->txn->ndeltas : &v->store->nowners;
    xsd_owner_adjust(counts, ncounts, n->perms.p[0].domid, -1);
    xsd_perms_clear(&n->perms);
    xsd_perms_copy(&n->perms, perms);
    xsd_owner_adjust(counts, ncounts, n->perms.p[0].domid, 1);
}

int64_t xsd_view_owner_count(struct xsd_view *v, uint32_t domid)
{
    int64_t n = xsd_store_owner_count(v->store, domid);
    if (v->txn) {
        n += xsd_txn_delta(v->txn, domid);
    }
    return n;
}

int64_t xsd_txn_delta(const struct xsd_txn *t, uint32_t domid)
{
    for (size_t i = 0; i < t->ndeltas; i++) {
        if (t->deltas[i].domid == domid) {
            return t->deltas[i].count;
        }
    }
    return 0;
}

void xsd_txn_queue_event(struct xsd_txn *t, const char *path, bool exact,
                         const struct xsd_perms *const *perms, unsigned nperms)
{
    t->events = xsd_realloc(t->events, (t->nevents + 1) * sizeof(*t->events));
    struct xsd_queued_event *ev = &t->events[t->nevents++];
    memset(ev, 0, sizeof(*ev));
    ev->path = xsd_strdup(path);
    ev->exact = exact;
    for (unsigned i = 0; i < nperms && ev->nperms < ARRAY_SIZE(ev->perms); i++) {
        if (perms[i]) {
            xsd_perms_copy(&ev->perms[ev->nperms++], perms[i]);
        }
    }
}

struct xsd_check_ctx {
    const struct xsd_store *store;
    int ret;
};

static void xsd_txn_check_one(void *opaque, const char *path, void *val)
{
    struct xsd_check_ctx *ctx = opaque;
    struct xsd_txn_entry *e = val;
    const struct xsd_node *n = xsd_store_lookup(ctx->store, path);
    if ((n ? n->gen : 0) != e->base_gen) {
        ctx->ret = -EAGAIN;
    }
}

int xsd_txn_check(struct xsd_txn *t, const struct xsd_store *s)
{
    struct xsd_check_ctx ctx = { .store = s, .ret = 0 };
    xsd_map_foreach(&t->entries, xsd_txn_check_one, &ctx);
    return ctx.ret;
}

static void xsd_txn_apply_one(void *opaque, const char *path, void *val)
{
    struct xsd_store *s = opaque;
    struct xsd_txn_entry *e = val;
    if (!e->modified) {
        return;
    }
    if (e->node) {
        xsd_store_set(s, e->node);
        e->node = NULL;
    } else {
        xsd_store_delete(s, path);
    }
    e->modified = false;
}

void xsd_txn_apply(struct xsd_txn *t, struct xsd_store *s)
{
    xsd_map_foreach(&t->entries, xsd_txn_apply_one, s);
}
