/*
 * tools/xenstored/store.c — the committed node tree of diskdm-xenstored:
 * a path-keyed hash map of nodes, path validation, permission lists and
 * the per-domain node counts the quota is checked against.
 */
#include "tools/xenstored/xenstored.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Allocation                                                          */
/* ------------------------------------------------------------------ */

static void xsd_oom(size_t size)
{
    log_error("out of memory allocating %zu bytes", size);
    abort();
}

void *xsd_alloc(size_t size)
{
    void *p = calloc(1, size ? size : 1);
    if (!p) {
        xsd_oom(size);
    }
    return p;
}

void *xsd_realloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q) {
        xsd_oom(size);
    }
    return q;
}

char *xsd_strdup(const char *s)
{
    return xsd_memdup(s, strlen(s));
}

void *xsd_memdup(const void *p, size_t len)
{
    char *q = xsd_alloc(len + 1);
    if (len) {
        memcpy(q, p, len);
    }
    return q;
}

/* ------------------------------------------------------------------ */
/* Hash map                                                            */
/* ------------------------------------------------------------------ */

struct xsd_map_entry {
    struct xsd_map_entry *next;
    uint64_t hash;
    char *key;
    void *val;
};

static uint64_t xsd_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull;   /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

void xsd_map_init(struct xsd_map *m)
{
    m->nbuckets = 64;
    m->buckets = xsd_alloc(m->nbuckets * sizeof(*m->buckets));
    m->count = 0;
}

static struct xsd_map_entry **xsd_map_slot(const struct xsd_map *m,
                                           const char *key, uint64_t h)
{
    struct xsd_map_entry **pp = &m->buckets[h & (m->nbuckets - 1)];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0)) {
        pp = &(*pp)->next;
    }
    return pp;
}

void *xsd_map_get(const struct xsd_map *m, const char *key)
{
    struct xsd_map_entry *e = *xsd_map_slot(m, key, xsd_hash(key));
    return e ? e->val : NULL;
}

static void xsd_map_grow(struct xsd_map *m)
{
    size_t n = m->nbuckets * 2;
    struct xsd_map_entry **b = xsd_alloc(n * sizeof(*b));
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct xsd_map_entry *e = m->buckets[i];
        while (e) {
            struct xsd_map_entry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

void *xsd_map_put(struct xsd_map *m, const char *key, void *val)
{
    uint64_t h = xsd_hash(key);
    struct xsd_map_entry **pp = xsd_map_slot(m, key, h);
    if (*pp) {
        void *old = (*pp)->val;
        (*pp)->val = val;
        return old;
    }
    struct xsd_map_entry *e = xsd_alloc(sizeof(*e));
    e->hash = h;
    e->key = xsd_strdup(key);
    e->val = val;
    *pp = e;
    if (++m->count > m->nbuckets) {
        xsd_map_grow(m);
    }
    return NULL;
}

void *xsd_map_remove(struct xsd_map *m, const char *key)
{
    struct xsd_map_entry **pp = xsd_map_slot(m, key, xsd_hash(key));
    struct xsd_map_entry *e = *pp;
    if (!e) {
        return NULL;
    }
    void *val = e->val;
    *pp = e->next;
    free(e->key);
    free(e);
    m->count--;
    return val;
}

void xsd_map_foreach(const struct xsd_map *m, xsd_map_fn *fn, void *opaque)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        for (struct xsd_map_entry *e = m->buckets[i]; e; e = e->next) {
            fn(opaque, e->key, e->val);
        }
    }
}

void xsd_map_destroy(struct xsd_map *m, void (*free_val)(void *))
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct xsd_map_entry *e = m->buckets[i];
        while (e) {
            struct xsd_map_entry *next = e->next;
            if (free_val) {
                free_val(e->val);
            }
            free(e->key);
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = NULL;
    m->nbuckets = m->count = 0;
}

/* ------------------------------------------------------------------ */
/* Nodes                                                               */
/* ------------------------------------------------------------------ */

struct xsd_node *xsd_node_new(const char *path, const struct xsd_perms *perms)
{
    struct xsd_node *n = xsd_alloc(sizeof(*n));
    n->path = xsd_strdup(path);
    n->value = xsd_alloc(1);
    xsd_perms_copy(&n->perms, perms);
    return n;
}

struct xsd_node *xsd_node_dup(const struct xsd_node *src)
{
    struct xsd_node *n = xsd_alloc(sizeof(*n));
    n->path = xsd_strdup(src->path);
    n->value = xsd_memdup(src->value, src->vlen);
    n->vlen = src->vlen;
    xsd_perms_copy(&n->perms, &src->perms);
    n->children = src->childlen ? xsd_memdup(src->children, src->childlen) : NULL;
    n->childlen = src->childlen;
    n->gen = src->gen;
    return n;
}

void xsd_node_free(struct xsd_node *n)
{
    if (!n) {
        return;
    }
    free(n->path);
    free(n->value);
    xsd_perms_clear(&n->perms);
    free(n->children);
    free(n);
}

void xsd_node_set_value(struct xsd_node *n, const void *val, uint32_t len)
{
    free(n->value);
    n->value = xsd_memdup(val, len);
    n->vlen = len;
}

void xsd_node_add_child(struct xsd_node *n, const char *name)
{
    size_t len = strlen(name) + 1;
    n->children = xsd_realloc(n->children, n->childlen + len);
    memcpy(n->children + n->childlen, name, len);
    n->childlen += len;
}

void xsd_node_remove_child(struct xsd_node *n, const char *name)
{
    uint32_t off = 0;
    while (off < n->childlen) {
        size_t len = strlen(n->children + off) + 1;
        if (strcmp(n->children + off, name) == 0) {
            memmove(n->children + off, n->children + off + len,
                    n->childlen - off - len);
            n->childlen -= len;
            return;
        }
        off += len;
    }
}

/* ------------------------------------------------------------------ */
/* Permissions                                                         */
/* ------------------------------------------------------------------ */

void xsd_perms_copy(struct xsd_perms *dst, const struct xsd_perms *src)
{
    dst->n = src->n;
    dst->p = xsd_alloc(src->n * sizeof(*dst->p));
    memcpy(dst->p, src->p, src->n * sizeof(*dst->p));
}

void xsd_perms_clear(struct xsd_perms *p)
{
    free(p->p);
    p->p = NULL;
    p->n = 0;
}

int xsd_perms_parse(const char *strings, uint32_t count, struct xsd_perms *out)
{
    static const char letters[] = "nrwb";   /* index == permission bits */
    if (count == 0) {
        return -EINVAL;
    }
    struct xsd_perm *p = xsd_alloc(count * sizeof(*p));
    const char *s = strings;
    for (uint32_t i = 0; i < count; i++) {
        const char *l = *s ? strchr(letters, *s) : NULL;
        if (!l || xsd_parse_domid(s + 1, &p[i].domid) < 0) {
            free(p);
            return -EINVAL;
        }
        p[i].perm = (uint32_t)(l - letters);
        s += strlen(s) + 1;
    }
    out->p = p;
    out->n = count;
    return 0;
}

char *xsd_perms_format(const struct xsd_perms *p, uint32_t *len)
{
    static const char letters[] = "nrwb";
    char *buf = xsd_alloc(p->n * 8 + 1);
    size_t off = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        off += (size_t)sprintf(buf + off, "%c%u", letters[p->p[i].perm & 3],
                               p->p[i].domid) + 1;
    }
    *len = (uint32_t)off;
    return buf;
}

uint32_t xsd_perm_for(const struct xsd_perms *p, uint32_t domid,
                      uint32_t target, bool privileged, bool can_write)
{
    uint32_t mask = XSD_PERM_READ | XSD_PERM_WRITE | XSD_PERM_OWNER;
    if (!can_write) {
        mask &= ~XSD_PERM_WRITE;
    }
    if (privileged || p->p[0].domid == domid || p->p[0].domid == target) {
        return mask;
    }
    for (uint32_t i = 1; i < p->n; i++) {
        if (p->p[i].domid == domid || p->p[i].domid == target) {
            return p->p[i].perm & mask;
        }
    }
    return p->p[0].perm & mask;
}

/* ------------------------------------------------------------------ */
/* Paths                                                               */
/* ------------------------------------------------------------------ */

bool xsd_path_valid(const char *path, bool privileged)
{
    size_t len = strlen(path);
    if (path[0] != '/' || len > XENSTORE_ABS_PATH_MAX) {
        return false;
    }
    if (len > 1 && path[len - 1] == '/') {
        return false;
    }
    if (strstr(path, "//")) {
        return false;
    }
    if (strspn(path, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789-/_@") != len) {
        return false;
    }
    if (!privileged) {
        /* Unprivileged clients get the relative limit below their home. */
        size_t local = 0;
        unsigned domid;
        int off = -1;
        if (sscanf(path, "/local/domain/%5u/%n", &domid, &off) == 1 && off > 0) {
            local = (size_t)off;
        }
        if (len - local > XENSTORE_REL_PATH_MAX) {
            return false;
        }
    }
    return true;
}

char *xsd_path_parent(const char *path)
{
    const char *slash = strrchr(path + 1, '/');
    if (!slash) {
        return xsd_strdup("/");
    }
    return xsd_memdup(path, (size_t)(slash - path));
}

const char *xsd_path_basename(const char *path)
{
    return strrchr(path, '/') + 1;
}

bool xsd_path_is_child(const char *path, const char *ancestor)
{
    size_t len = strlen(ancestor);
    if (strcmp(ancestor, "/") == 0) {
        return path[0] == '/';
    }
    if (strncmp(path, ancestor, len) != 0) {
        return false;
    }
    return path[len] == '/' || path[len] == '\0';
}

int xsd_parse_domid(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    if (!*s) {
        return -EINVAL;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return -EINVAL;
        }
        v = v * 10 + (uint32_t)(*s - '0');
        if (v > XSD_DOMID_MAX) {
            return -EINVAL;
        }
    }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The committed store                                                 */
/* ------------------------------------------------------------------ */

void xsd_owner_adjust(struct xsd_owner_count **v, size_t *n, uint32_t domid,
                      int64_t delta)
{
    for (size_t i = 0; i < *n; i++) {
        if ((*v)[i].domid == domid) {
            (*v)[i].count += delta;
            return;
        }
    }
    *v = xsd_realloc(*v, (*n + 1) * sizeof(**v));
    (*v)[*n].domid = domid;
    (*v)[*n].count = delta;
    (*n)++;
}

int64_t xsd_store_owner_count(const struct xsd_store *s, uint32_t domid)
{
    for (size_t i = 0; i < s->nowners; i++) {
        if (s->owners[i].domid == domid) {
            return s->owners[i].count;
        }
    }
    return 0;
}

void xsd_store_init(struct xsd_store *s)
{
    static const char *const initial[] = { "/", "/tool", "/tool/xenstored" };
    struct xsd_perm owner = { .domid = 0, .perm = XSD_PERM_NONE };
    struct xsd_perms perms = { .p = &owner, .n = 1 };

    memset(s, 0, sizeof(*s));
    xsd_map_init(&s->nodes);
    for (size_t i = 0; i < ARRAY_SIZE(initial); i++) {
        struct xsd_node *n = xsd_node_new(initial[i], &perms);
        if (i + 1 < ARRAY_SIZE(initial)) {
            xsd_node_add_child(n, xsd_path_basename(initial[i + 1]));
        }
        xsd_store_set(s, n);
    }
}

static void xsd_node_free_void(void *n)
{
    xsd_node_free(n);
}

void xsd_store_destroy(struct xsd_store *s)
{
    xsd_map_destroy(&s->nodes, xsd_node_free_void);
    free(s->owners);
    s->owners = NULL;
    s->nowners = 0;
}

struct xsd_node *xsd_store_lookup(const struct xsd_store *s, const char *path)
{
    return xsd_map_get(&s->nodes, path);
}

void xsd_store_set(struct xsd_store *s, struct xsd_node *n)
{
    n->gen = ++s->gen;
    xsd_owner_adjust(&s->owners, &s->nowners, n->perms.p[0].domid, 1);
    struct xsd_node *old = xsd_map_put(&s->nodes, n->path, n);
    if (old) {
        xsd_owner_adjust(&s->owners, &s->nowners, old->perms.p[0].domid, -1);
        xsd_node_free(old);
    }
}

void xsd_store_delete(struct xsd_store *s, const char *path)
{
    struct xsd_node *old = xsd_map_remove(&s->nodes, path);
    if (old) {
        xsd_owner_adjust(&s->owners, &s->nowners, old->perms.p[0].domid, -1);
        xsd_node_free(old);
    }
}
