/*
 * tools/xenstored/watch.c — watches of each connection and the delivery
 * of WATCH_EVENT messages when nodes change: matching by path and
 * ancestry, the reader's permission check, relative event paths, and
 * events held back until a transaction commits.
 */
#include "tools/xenstored/xenstored.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool xsd_special_path(const char *path)
{
    return path[0] == '@';
}

static const struct xsd_perms *xsd_special_perms(struct xsd_server *srv,
                                                 const char *path)
{
    if (xsd_path_is_child(path, "@introduceDomain")) {
        return &srv->special_perms[0];
    }
    if (xsd_path_is_child(path, "@releaseDomain")) {
        return &srv->special_perms[1];
    }
    return NULL;
}

static bool xsd_watch_permitted(struct xsd_server *srv, struct xsd_conn *c,
                                const char *path,
                                const struct xsd_perms *const *perms,
                                unsigned nperms)
{
    if (xsd_conn_privileged(c)) {
        return true;
    }
    uint32_t target = xsd_conn_target(c);
    if (xsd_special_path(path)) {
        const struct xsd_perms *sp = xsd_special_perms(srv, path);
        return sp && (xsd_perm_for(sp, c->domid, target, false, true) &
                      XSD_PERM_READ);
    }
    for (unsigned i = 0; i < nperms; i++) {
        if (perms[i] && (xsd_perm_for(perms[i], c->domid, target, false, true) &
                         XSD_PERM_READ)) {
            return true;
        }
    }
    return false;
}

/* The path an event reports to this watch. */
static const char *xsd_event_path(const struct xsd_conn *c,
                                  const struct xsd_watch *w, const char *path,
                                  char *home, size_t size)
{
    if (!w->relative) {
        return path;
    }
    xsd_conn_home(c, home, size);
    size_t len = strlen(home);
    if (strncmp(path, home, len) == 0) {
        path += len;
        if (*path == '/') {
            path++;
        }
    }
    return path;
}

void xsd_fire(struct xsd_server *srv, struct xsd_conn *origin, const char *path,
              bool exact, const struct xsd_perms *const *perms, unsigned nperms)
{
    if (origin && origin->cur_txn) {
        xsd_txn_queue_event(origin->cur_txn, path, exact, perms, nperms);
        return;
    }
    for (struct xsd_conn *c = srv->conns; c; c = c->next) {
        if (c->dead || !c->watches) {
            continue;
        }
        if (!xsd_watch_permitted(srv, c, path, perms, nperms)) {
            continue;
        }
        for (struct xsd_watch *w = c->watches; w; w = w->next) {
            bool match = exact ? strcmp(path, w->path) == 0
                               : xsd_path_is_child(path, w->path);
            if (match) {
                char home[32];
                xsd_send_event(c, xsd_event_path(c, w, path, home, sizeof(home)),
                               w->token);
            }
        }
    }
}

void xsd_fire_queued(struct xsd_server *srv, struct xsd_txn *t)
{
    for (size_t i = 0; i < t->nevents; i++) {
        struct xsd_queued_event *ev = &t->events[i];
        const struct xsd_perms *perms[3] = { NULL, NULL, NULL };
        for (unsigned j = 0; j < ev->nperms; j++) {
            perms[j] = &ev->perms[j];
        }
        xsd_fire(srv, NULL, ev->path, ev->exact, perms, ev->nperms);
    }
}

static char *xsd_watch_canonical(struct xsd_conn *c, const char *path,
                                 bool *relative)
{
    *relative = false;
    if (path[0] == '@') {
        return strlen(path) > XENSTORE_REL_PATH_MAX ? NULL : xsd_strdup(path);
    }
    char *canon;
    if (path[0] == '/') {
        canon = xsd_strdup(path);
    } else {
        char home[32];
        xsd_conn_home(c, home, sizeof(home));
        canon = xsd_alloc(strlen(home) + strlen(path) + 2);
        sprintf(canon, "%s/%s", home, path);
        *relative = true;
    }
    if (!xsd_path_valid(canon, xsd_conn_privileged(c))) {
        free(canon);
        return NULL;
    }
    return canon;
}

int xsd_watch_add(struct xsd_conn *c, const char *path, const char *token)
{
    bool relative;
    char *canon = xsd_watch_canonical(c, path, &relative);
    if (!canon) {
        return -EINVAL;
    }
    for (struct xsd_watch *w = c->watches; w; w = w->next) {
        if (strcmp(w->path, canon) == 0 && strcmp(w->token, token) == 0) {
            free(canon);
            return -EEXIST;
        }
    }
    if (!xsd_conn_privileged(c) && c->nwatches >= c->srv->quota.watches) {
        free(canon);
        return -E2BIG;
    }
    struct xsd_watch *w = xsd_alloc(sizeof(*w));
    w->path = canon;
    w->token = xsd_strdup(token);
    w->relative = relative;
    /* Append: events for one change go out in the order watches were set. */
    struct xsd_watch **pp = &c->watches;
    while (*pp) {
        pp = &(*pp)->next;
    }
    *pp = w;
    c->nwatches++;
    return 0;
}

static void xsd_watch_free(struct xsd_watch *w)
{
    free(w->path);
    free(w->token);
    free(w);
}

int xsd_watch_remove(struct xsd_conn *c, const char *path, const char *token)
{
    bool relative;
    char *canon = xsd_watch_canonical(c, path, &relative);
    if (!canon) {
        return -ENOENT;     /* no watch can have an invalid path */
    }
    for (struct xsd_watch **pp = &c->watches; *pp; pp = &(*pp)->next) {
        struct xsd_watch *w = *pp;
        if (strcmp(w->path, canon) == 0 && strcmp(w->token, token) == 0) {
            *pp = w->next;
            xsd_watch_free(w);
            c->nwatches--;
            free(canon);
            return 0;
        }
    }
    free(canon);
    return -ENOENT;
}

void xsd_watch_clear(struct xsd_conn *c)
{
    while (c->watches) {
        struct xsd_watch *w = c->watches;
        c->watches = w->next;
        xsd_watch_free(w);
    }
    c->nwatches = 0;
}
