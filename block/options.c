/*
 * block/options.c — typed open options: parsing QEMU-style option strings
 * ("driver=raw,file.filename=x,read-only=on") and turning a guest disk's
 * drive spec into options. Parsed once here; the layers below see structs.
 * QEMU's NBD keys (server.type, server.path/host/port, export, timeout)
 * become the nbd:// or nbd+unix:// URI the nbd driver opens.
 */
#include "block/block-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const cache_names[] = {
    [CACHE_WRITEBACK] = "writeback", [CACHE_NONE] = "none",
    [CACHE_WRITETHROUGH] = "writethrough", [CACHE_DIRECTSYNC] = "directsync",
    [CACHE_UNSAFE] = "unsafe", NULL,
};
static const char *const discard_names[] = { "ignore", "unmap", "off", "on", NULL };
static const char *const detect_zeroes_choices[] = { "off", "on", "unmap", NULL };
static const char *const locking_names[] = { "auto", "on", "off", NULL };
static const char *const aio_names[] = { "auto", "threads", "io_uring", NULL };

void bdrv_open_opts_init(struct bdrv_open_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->cache = CACHE_WRITEBACK;
    o->discard = DISCARD_IGNORE;
    o->detect_zeroes = DETECT_ZEROES_OFF;
    o->locking = LOCKING_AUTO;
}

void bdrv_open_opts_free(struct bdrv_open_opts *o)
{
    if (!o) {
        return;
    }
    free(o->driver);
    free(o->filename);
    if (o->file) {
        bdrv_open_opts_free(o->file);
        free(o->file);
    }
    if (o->backing) {
        bdrv_open_opts_free(o->backing);
        free(o->backing);
    }
    o->driver = o->filename = NULL;
    o->file = o->backing = NULL;
}

static int bad_choice(const char *key, const char *val, const char *const *choices,
                      struct error **errp)
{
    char list[256] = "";
    for (size_t i = 0; choices[i]; i++) {
        if (i) {
            strncat(list, ", ", sizeof(list) - strlen(list) - 1);
        }
        strncat(list, choices[i], sizeof(list) - strlen(list) - 1);
    }
    error_setg(errp, "Parameter '%s' expects one of %s: '%s'", key, list, val);
    return -EINVAL;
}

static int find_choice(const char *const *choices, const char *val)
{
    for (int i = 0; choices[i]; i++) {
        if (!strcmp(choices[i], val)) {
            return i;
        }
    }
    return -1;
}

static int get_bool(const char *key, const char *val, bool *out, struct error **errp)
{
    if (parse_bool(val, out) < 0) {
        error_setg(errp, "Parameter '%s' expects 'on' or 'off'", key);
        return -EINVAL;
    }
    return 0;
}

static int get_size(const char *key, const char *val, uint64_t *out, struct error **errp)
{
    if (parse_size(val, out) < 0) {
        error_setg(errp, "Parameter '%s' expects a size (e.g. 64K, 1G): '%s'", key, val);
        return -EINVAL;
    }
    return 0;
}

static int set_string(char **dst, const char *val)
{
    free(*dst);
    *dst = strdup(val);
    return *dst ? 0 : -ENOMEM;
}

static struct bdrv_open_opts *child_opts(struct bdrv_open_opts **slot)
{
    if (!*slot) {
        *slot = malloc(sizeof(**slot));
        if (*slot) {
            bdrv_open_opts_init(*slot);
        }
    }
    return *slot;
}

/*
 * QEMU's NBD keys for one level of the options, gathered while parsing:
 * they become that level's filename (an NBD URI, util/nbd-uri.c) once
 * every key is known, so the node and its name are the URI form's.
 */
struct nbd_keys {
    struct nbd_keys *next;
    struct bdrv_open_opts *o;
    char *prefix;               /* "file." etc., for messages */
    char *first;                /* the first NBD key given, as written */
    char *keys[NBD_URI_NKEYS];  /* in nbd_uri_key's order */
};

static void nbd_keys_free(struct nbd_keys *k)
{
    while (k) {
        struct nbd_keys *next = k->next;
        free(k->prefix);
        free(k->first);
        for (int i = 0; i < NBD_URI_NKEYS; i++) {
            free(k->keys[i]);
        }
        free(k);
        k = next;
    }
}

/* Remember an NBD key of `o`; 0, 1 when `key` is not one, or -ENOMEM. */
static int nbd_key(struct nbd_keys **list, struct bdrv_open_opts *o, const char *key,
                   const char *full, const char *val)
{
    int i = nbd_uri_key(key);
    if (i < 0) {
        return 1;
    }
    struct nbd_keys *k = *list;
    while (k && k->o != o) {
        k = k->next;
    }
    if (!k) {
        k = calloc(1, sizeof(*k));
        if (!k) {
            return -ENOMEM;
        }
        k->o = o;
        k->prefix = strndup(full, strlen(full) - strlen(key));
        k->first = strdup(full);
        k->next = *list;
        *list = k;
        if (!k->prefix || !k->first) {
            return -ENOMEM;
        }
    }
    return set_string(&k->keys[i], val);
}

/* Turn one level's NBD keys into its filename (see struct nbd_keys). */
static int nbd_keys_apply(struct nbd_keys *k, struct error **errp)
{
    struct bdrv_open_opts *o = k->o;
    const char *pre = k->prefix, *timeout = k->keys[5], *delay = k->keys[6];
    bool server = k->keys[0] || k->keys[1] || k->keys[2] || k->keys[3];
    bool export = k->keys[4] != NULL;

    if (o->driver && strcmp(o->driver, "nbd")) {
        error_setg(errp, "Block driver '%s' does not support the option '%s'",
                   o->driver, k->first);
        return -EINVAL;
    }
    if (o->filename && (server || export)) {
        error_setg(errp, "An NBD URI ('%sfilename') cannot be combined with "
                   "'%s%s'", pre, pre, server ? "server.*" : "export");
        return -EINVAL;
    }
    if (o->filename && !nbd_uri_is_nbd(o->filename)) {
        error_setg(errp, "Parameter '%s' needs an NBD export (an nbd:// URI or "
                   "server.* options)", k->first);
        return -EINVAL;
    }
    if (o->filename) {
        /* timeout= and reconnect-delay= with a URI: they travel in the query */
        if (nbd_uri_add_param(&o->filename, "timeout", timeout) < 0 ||
            nbd_uri_add_param(&o->filename, "reconnect-delay", delay) < 0) {
            error_setg(errp, "Out of memory");
            return -ENOMEM;
        }
        return 0;
    }
    if (!server && !export) {
        return 0;   /* timeout/delay alone: the open path reports the missing file */
    }
    return nbd_uri_from_keys((const char *const *)k->keys, pre, &o->filename, errp);
}

/* Apply one key (relative to `o`); `full` is the key as written, for
 * messages. NBD keys are gathered in *nbd (see nbd_keys_apply). */
static int apply_key(struct bdrv_open_opts *o, const char *key, const char *full,
                     const char *val, struct nbd_keys **nbd, struct error **errp)
{
    bool b;
    int i;

    if (!strncmp(key, "file.", 5) || !strncmp(key, "backing.", 8)) {
        bool is_file = key[0] == 'f';
        struct bdrv_open_opts *c = child_opts(is_file ? &o->file : &o->backing);
        if (!c) {
            error_setg(errp, "Out of memory");
            return -ENOMEM;
        }
        return apply_key(c, key + (is_file ? 5 : 8), full, val, nbd, errp);
    }
    int r = nbd_key(nbd, o, key, full, val);
    if (r <= 0) {
        return r;
    }
    if (!strcmp(key, "driver")) {
        return set_string(&o->driver, val);
    }
    if (!strcmp(key, "filename")) {
        return set_string(&o->filename, val);
    }
    if (!strcmp(key, "file")) {
        /* -drive style shorthand for file.filename */
        struct bdrv_open_opts *c = child_opts(&o->file);
        return c ? set_string(&c->filename, val) : -ENOMEM;
    }
    if (!strcmp(key, "backing")) {
        if (!strcmp(val, "null") || !val[0]) {
            o->no_backing = true;
            return 0;
        }
        struct bdrv_open_opts *c = child_opts(&o->backing);
        return c ? set_string(&c->filename, val) : -ENOMEM;
    }
    if (!strcmp(key, "read-only") || !strcmp(key, "readonly")) {
        if (get_bool(full, val, &b, errp) < 0) {
            return -EINVAL;
        }
        o->read_only = (struct opt_bool){ true, b };
        return 0;
    }
    if (!strcmp(key, "auto-read-only")) {
        if (get_bool(full, val, &b, errp) < 0) {
            return -EINVAL;
        }
        o->auto_read_only = (struct opt_bool){ true, b };
        return 0;
    }
    if (!strcmp(key, "force-read-only")) {
        return get_bool(full, val, &o->force_read_only, errp);
    }
    if (!strcmp(key, "snapshot")) {
        return get_bool(full, val, &o->snapshot, errp);
    }
    if (!strcmp(key, "force-share")) {
        return get_bool(full, val, &o->force_share, errp);
    }
    if (!strcmp(key, "cache")) {
        if ((i = find_choice(cache_names, val)) < 0) {
            return bad_choice(full, val, cache_names, errp);
        }
        o->cache = (enum cache_mode)i;
        return 0;
    }
    if (!strcmp(key, "cache.direct")) {
        if (get_bool(full, val, &b, errp) < 0) {
            return -EINVAL;
        }
        if (b) {
            o->cache = o->cache == CACHE_WRITETHROUGH ? CACHE_DIRECTSYNC : CACHE_NONE;
        } else if (o->cache == CACHE_NONE) {
            o->cache = CACHE_WRITEBACK;
        } else if (o->cache == CACHE_DIRECTSYNC) {
            o->cache = CACHE_WRITETHROUGH;
        }
        return 0;
    }
    if (!strcmp(key, "cache.no-flush")) {
        if (get_bool(full, val, &b, errp) < 0) {
            return -EINVAL;
        }
        if (b) {
            o->cache = CACHE_UNSAFE;
        } else if (o->cache == CACHE_UNSAFE) {
            o->cache = CACHE_WRITEBACK;
        }
        return 0;
    }
    if (!strcmp(key, "discard")) {
        if ((i = find_choice(discard_names, val)) < 0) {
            return bad_choice(full, val, discard_names, errp);
        }
        o->discard = (i == 1 || i == 3) ? DISCARD_UNMAP : DISCARD_IGNORE;
        return 0;
    }
    if (!strcmp(key, "detect-zeroes")) {
        if ((i = find_choice(detect_zeroes_choices, val)) < 0) {
            return bad_choice(full, val, detect_zeroes_choices, errp);
        }
        o->detect_zeroes = (enum detect_zeroes_mode)i;
        return 0;
    }
    if (!strcmp(key, "locking")) {
        if ((i = find_choice(locking_names, val)) < 0) {
            return bad_choice(full, val, locking_names, errp);
        }
        o->locking = i == 0 ? LOCKING_AUTO : i == 1 ? LOCKING_ON : LOCKING_OFF;
        return 0;
    }
    if (!strcmp(key, "aio")) {
        if ((i = find_choice(aio_names, val)) < 0) {
            return bad_choice(full, val, aio_names, errp);
        }
        o->aio = i == 0 ? AIO_AUTO : i == 1 ? AIO_THREADS : AIO_IO_URING;
        return 0;
    }
    if (!strcmp(key, "offset")) {
        return get_size(full, val, &o->offset, errp);
    }
    if (!strcmp(key, "size")) {
        o->has_size = true;
        return get_size(full, val, &o->size, errp);
    }
    error_setg(errp, "Invalid parameter '%s'", full);
    return -EINVAL;
}

/* Combinations that are wrong whatever the layers below say. */
static int check_conflicts(const struct bdrv_open_opts *o, struct error **errp)
{
    if (o->force_read_only && o->read_only.set && !o->read_only.value) {
        error_setg(errp, "force-read-only=on conflicts with read-only=off");
        return -EINVAL;
    }
    bool ro = o->force_read_only || (o->read_only.set && o->read_only.value);
    if (o->force_share && !ro) {
        error_setg(errp, "force-share=on can only be used with read-only images");
        return -EINVAL;
    }
    if (o->snapshot && o->force_read_only) {
        /* snapshot writes go to an overlay: allowed, the image stays ro */
    }
    return 0;
}

int bdrv_open_opts_parse(const char *str, struct bdrv_open_opts *o,
                         struct error **errp)
{
    bdrv_open_opts_init(o);
    if (!strchr(str, '=')) {
        o->filename = strdup(str);
        return o->filename ? 0 : -ENOMEM;
    }
    struct kvlist kv = { 0 };
    struct nbd_keys *nbd = NULL;
    int ret = opts_split(str, "filename", &kv, errp);
    if (ret < 0) {
        return ret;
    }
    for (size_t i = 0; i < kv.n && ret == 0; i++) {
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(kv.v[i].key, kv.v[j].key)) {
                error_setg(errp, "Parameter '%s' given twice", kv.v[i].key);
                ret = -EINVAL;
                break;
            }
        }
        if (ret == 0) {
            ret = apply_key(o, kv.v[i].key, kv.v[i].key, kv.v[i].value, &nbd, errp);
        }
        if (ret == -ENOMEM) {
            error_setg(errp, "Out of memory");
        }
    }
    kvlist_free(&kv);
    /* The list is in reverse order of first use: apply the first level
     * named first so the message names the outermost mistake. */
    struct nbd_keys *rev = NULL;
    while (nbd) {
        struct nbd_keys *k = nbd;
        nbd = k->next;
        k->next = rev;
        rev = k;
    }
    for (struct nbd_keys *k = rev; k && ret == 0; k = k->next) {
        ret = nbd_keys_apply(k, errp);
    }
    nbd_keys_free(rev);
    if (ret == 0) {
        ret = check_conflicts(o, errp);
    }
    if (ret < 0) {
        bdrv_open_opts_free(o);
    }
    return ret;
}

int bdrv_open_opts_from_spec(const struct disk_spec *spec,
                             struct bdrv_open_opts *o, struct error **errp)
{
    bdrv_open_opts_init(o);
    if (!spec->file || !spec->file[0]) {
        error_setg(errp, "The drive has no image file");
        return -ENOMEDIUM;
    }
    o->filename = strdup(spec->file);
    if (spec->format && spec->format[0]) {
        if (!bdrv_find_driver(spec->format)) {
            error_setg(errp, "Unknown driver '%s'", spec->format);
            bdrv_open_opts_free(o);
            return -ENOTSUP;
        }
        o->driver = strdup(spec->format);
    }
    switch (spec->access) {
    case DISK_ACCESS_RW:
        o->read_only = (struct opt_bool){ true, false };
        o->auto_read_only = (struct opt_bool){ true, false };
        break;
    case DISK_ACCESS_RO_FORCED:
        o->read_only = (struct opt_bool){ true, true };
        o->auto_read_only = (struct opt_bool){ true, false };
        o->force_read_only = true;
        break;
    case DISK_ACCESS_AUTO:
        o->read_only = (struct opt_bool){ true, false };
        o->auto_read_only = (struct opt_bool){ true, true };
        break;
    case DISK_ACCESS_SNAPSHOT:
        o->snapshot = true;
        break;
    default:
        /* A missing or unknown mode never means writable. */
        error_setg(errp, "Unknown access mode %d for '%s'", (int)spec->access, spec->file);
        bdrv_open_opts_free(o);
        return -EINVAL;
    }
    o->cache = spec->cache;
    o->discard = spec->discard;
    o->detect_zeroes = spec->detect_zeroes;
    return 0;
}
