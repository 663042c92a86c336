/*
 * block/node.c — the node graph: opening a node (driver choice, format
 * probing, option inheritance, the read-only decision), references,
 * reopen read-only <-> read-write as prepare/commit/abort, info, and the
 * driver table. I/O on nodes goes through block/io.c.
 */
#include "block/block-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Every driver, for lookup by name and for probing. Add new drivers here. */
const struct bdrv_ops *const bdrv_drivers[] = {
    &bdrv_file_ops,
    &bdrv_raw_ops,
    &bdrv_qcow2_ops,
    &bdrv_nbd_ops,
    NULL,
};

const struct bdrv_ops *bdrv_find_driver(const char *name)
{
    for (size_t i = 0; bdrv_drivers[i]; i++) {
        if (!strcmp(bdrv_drivers[i]->name, name)) {
            return bdrv_drivers[i];
        }
    }
    return NULL;
}

/* The name list is derived from the driver table once per process. */
static const char *driver_names[ARRAY_SIZE(bdrv_drivers)];
static pthread_once_t driver_names_once = PTHREAD_ONCE_INIT;

static void fill_driver_names(void)
{
    for (size_t i = 0; bdrv_drivers[i]; i++) {
        driver_names[i] = bdrv_drivers[i]->name;
    }
}

const char *const *bdrv_driver_names(void)
{
    pthread_once(&driver_names_once, fill_driver_names);
    return driver_names;
}

const char *bdrv_perm_name(unsigned bit)
{
    static const char *const names[BDRV_PERM_COUNT] = {
        [BDRV_PERM_CONSISTENT_READ] = "consistent read",
        [BDRV_PERM_WRITE] = "write",
        [BDRV_PERM_WRITE_UNCHANGED] = "write unchanged",
        [BDRV_PERM_RESIZE] = "resize",
        [BDRV_PERM_GRAPH_MOD] = "change children",
    };
    return bit < BDRV_PERM_COUNT ? names[bit] : "unknown";
}

void bdrv_node_perms(const struct bdrv_node *bs, bool read_only,
                     unsigned *perm, unsigned *shared)
{
    /* Like a QEMU guest device: a writer takes write and resize and shares
     * neither; a reader shares everything but write and resize unless
     * force-share, in which case it shares everything. */
    *perm = BDRV_PERM(BDRV_PERM_CONSISTENT_READ);
    *shared = BDRV_PERM_ALL & ~(BDRV_PERM(BDRV_PERM_WRITE) | BDRV_PERM(BDRV_PERM_RESIZE));
    if (!read_only) {
        *perm |= BDRV_PERM(BDRV_PERM_WRITE) | BDRV_PERM(BDRV_PERM_RESIZE);
    } else if (bs->opts.force_share) {
        /* Like qemu-img -U: byte 100 only. */
        *shared = BDRV_PERM_ALL;
    }
}

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

static char *strdup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int bdrv_open_opts_copy(struct bdrv_open_opts *dst,
                        const struct bdrv_open_opts *src)
{
    *dst = *src;
    dst->driver = strdup_or_null(src->driver);
    dst->filename = strdup_or_null(src->filename);
    dst->file = NULL;
    dst->backing = NULL;
    if ((src->driver && !dst->driver) || (src->filename && !dst->filename)) {
        goto out_free;
    }
    if (src->file) {
        dst->file = calloc(1, sizeof(*dst->file));
        if (!dst->file || bdrv_open_opts_copy(dst->file, src->file) < 0) {
            free(dst->file);
            dst->file = NULL;
            goto out_free;
        }
    }
    if (src->backing) {
        dst->backing = calloc(1, sizeof(*dst->backing));
        if (!dst->backing || bdrv_open_opts_copy(dst->backing, src->backing) < 0) {
            free(dst->backing);
            dst->backing = NULL;
            goto out_free;
        }
    }
    return 0;

out_free:
    bdrv_open_opts_free(dst);
    return -ENOMEM;
}

/* ------------------------------------------------------------------ */
/* Probing                                                             */
/* ------------------------------------------------------------------ */

const struct bdrv_ops *bdrv_probe_buf(const uint8_t *buf, size_t len,
                                      const char *filename)
{
    const struct bdrv_ops *best = NULL;
    int best_score = 1;     /* raw's score: anything better is a format */
    for (size_t i = 0; bdrv_drivers[i]; i++) {
        const struct bdrv_ops *d = bdrv_drivers[i];
        if (!d->probe || d == &bdrv_raw_ops) {
            continue;
        }
        int score = d->probe(buf, len, filename);
        if (score > best_score) {
            best = d;
            best_score = score;
        }
    }
    return best;
}

const struct bdrv_ops *bdrv_probe_format(struct bdrv_node *file,
                                         struct error **errp)
{
    uint8_t buf[BDRV_PROBE_BUF_SIZE];
    int64_t len = bdrv_getlength(file);
    if (len < 0) {
        error_setg_errno(errp, (int)-len, "Could not determine size of '%s'",
                         file->filename);
        return NULL;
    }
    size_t n = MIN((uint64_t)len, sizeof(buf));
    int ret = bdrv_pread(file, 0, buf, n);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read image for determining its format");
        return NULL;
    }
    const struct bdrv_ops *d = bdrv_probe_buf(buf, n, file->filename);
    return d ? d : &bdrv_raw_ops;
}

/* ------------------------------------------------------------------ */
/* Open and close                                                      */
/* ------------------------------------------------------------------ */

static struct bdrv_node *node_alloc(const struct bdrv_ops *drv)
{
    struct bdrv_node *bs = calloc(1, sizeof(*bs));
    if (!bs) {
        return NULL;
    }
    if (drv->state_size) {
        bs->opaque = calloc(1, drv->state_size);
        if (!bs->opaque) {
            free(bs);
            return NULL;
        }
    }
    bs->drv = drv;
    bs->refcnt = 1;
    bs->request_alignment = 1;
    pthread_mutex_init(&bs->lock, NULL);
    pthread_rwlock_init(&bs->rmw_lock, NULL);
    return bs;
}

/* Free a node whose driver is closed (or never opened) and children. */
static void node_free(struct bdrv_node *bs)
{
    if (bs->backing) {
        bdrv_unref(bs->backing);
    }
    if (bs->file) {
        bdrv_unref(bs->file);
    }
    bdrv_open_opts_free(&bs->opts);
    pthread_mutex_destroy(&bs->lock);
    pthread_rwlock_destroy(&bs->rmw_lock);
    free(bs->filename);
    free(bs->opaque);
    free(bs);
}

void bdrv_ref(struct bdrv_node *bs)
{
    __atomic_fetch_add(&bs->refcnt, 1, __ATOMIC_RELAXED);
}

void bdrv_unref(struct bdrv_node *bs)
{
    if (!bs) {
        return;
    }
    if (__atomic_sub_fetch(&bs->refcnt, 1, __ATOMIC_ACQ_REL) > 0) {
        return;
    }
    if (bs->drv->close) {
        bs->drv->close(bs);
    }
    node_free(bs);
}

/* Apply the inheritance rules for `role` to the child's options `o`
 * (modified in place) from the parent's effective options. */
static void inherit_opts(struct bdrv_open_opts *o, const struct bdrv_node *parent,
                         enum bdrv_child_role role)
{
    if (!parent) {
        return;
    }
    const struct bdrv_open_opts *p = &parent->opts;
    if (role == BDRV_CHILD_BACKING) {
        if (!o->read_only.set) {
            o->read_only = (struct opt_bool){ true, true };
        }
        if (!o->auto_read_only.set) {
            o->auto_read_only = (struct opt_bool){ true, false };
        }
    } else {
        if (!o->read_only.set) {
            o->read_only = (struct opt_bool){ true, parent->read_only };
        }
        if (!o->auto_read_only.set) {
            o->auto_read_only = (struct opt_bool){ true, parent->auto_read_only };
        }
    }
    /* Forced read-only reaches every layer, backing files included. */
    if (parent->force_read_only) {
        o->force_read_only = true;
        o->read_only = (struct opt_bool){ true, true };
        o->auto_read_only = (struct opt_bool){ true, false };
    }
    /* Enumerations are inherited when the child left them at default. */
    if (o->cache == CACHE_WRITEBACK) {
        o->cache = p->cache;
    }
    if (role == BDRV_CHILD_FILE) {
        if (o->discard == DISCARD_IGNORE) {
            o->discard = p->discard;
        }
    }
    /* -U reaches the whole chain (a backing file is read-only anyway). */
    o->force_share |= p->force_share;
    if (o->locking == LOCKING_AUTO) {
        o->locking = p->locking;
    }
    if (o->aio == AIO_AUTO) {
        o->aio = p->aio;
    }
    if (!o->io_hooks) {
        o->io_hooks = p->io_hooks;
    }
}

/*
 * Open one node with its children. `opts` are the node's own options,
 * already inherited; ownership of them stays with the caller. `probed`
 * marks a format chosen by probing. `file_override` is an already open
 * protocol node (probing opened it first) that becomes the file child.
 */
static struct bdrv_node *open_node(const struct bdrv_ops *drv,
                                   const struct bdrv_open_opts *opts,
                                   struct bdrv_node *parent,
                                   enum bdrv_child_role role,
                                   struct bdrv_node *file_override,
                                   bool probed, struct error **errp)
{
    struct bdrv_node *bs = node_alloc(drv);
    if (!bs) {
        error_setg(errp, "Out of memory");
        bdrv_unref(file_override);
        return NULL;
    }
    if (bdrv_open_opts_copy(&bs->opts, opts) < 0) {
        error_setg(errp, "Out of memory");
        bdrv_unref(file_override);
        free(bs->opaque);
        free(bs);
        return NULL;
    }
    bs->role = role;
    bs->parent = parent;
    bs->force_read_only = opts->force_read_only;
    bs->read_only = bs->force_read_only ||
                    (opts->read_only.set && opts->read_only.value);
    bs->auto_read_only = opts->auto_read_only.set && opts->auto_read_only.value;
    bs->cache = opts->cache;
    bs->discard = opts->discard;
    bs->detect_zeroes = opts->detect_zeroes;
    bs->probed = probed;
    bs->file = file_override;

    const char *fname = opts->filename;
    if (!fname && opts->file) {
        fname = opts->file->filename;
    }
    if (file_override) {
        fname = file_override->filename;
    }
    bs->filename = strdup(fname ? fname : "");

    if (opts->force_read_only && opts->read_only.set && !opts->read_only.value) {
        error_setg(errp, "force-read-only=on conflicts with read-only=off");
        goto out_free;
    }
    if (opts->force_share && !bs->read_only) {
        error_setg(errp, "force-share=on can only be used with read-only images");
        goto out_free;
    }
    if (drv->is_protocol && !fname) {
        error_setg(errp, "The '%s' driver requires a filename", drv->name);
        goto out_free;
    }

    int ret = drv->open(bs, errp);
    if (ret < 0) {
        goto out_free;
    }
    /* A format over a file that auto-read-only degraded follows it. */
    if (!drv->is_protocol && bs->file && bs->file->read_only && !bs->read_only) {
        if (bs->auto_read_only) {
            bs->read_only = true;
            bs->auto_degraded = true;
        } else {
            error_setg(errp, "Could not open '%s' read-write: Block node is read-only",
                       bs->filename);
            if (drv->close) {
                drv->close(bs);
            }
            goto out_free;
        }
    }
    return bs;

out_free:
    node_free(bs);
    return NULL;
}

static int resolve_driver(const char *name, const struct bdrv_ops **drv,
                          struct error **errp)
{
    *drv = bdrv_find_driver(name);
    if (!*drv) {
        error_setg(errp, "Unknown driver '%s'", name);
        bdrv_error_errnum(errp, ENOTSUP);
        return -ENOTSUP;
    }
    return 0;
}

/* The protocol driver a bare filename names: nbd://, nbds://, nbd+unix://,
 * nbds+unix:// and the legacy nbd:... forms are NBD exports; anything else
 * is a POSIX file (./nbd:x names a file). */
static const char *protocol_for_filename(const char *filename)
{
    return nbd_uri_is_legacy(filename) || nbd_uri_is_nbd(filename) ? "nbd" : "file";
}

/* A legacy nbd:... filename becomes the URI QEMU names it by (and which
 * the nbd driver opens); anything else is left alone. */
static int legacy_nbd_to_uri(char **filename, struct error **errp)
{
    char *uri;
    if (!nbd_uri_is_legacy(*filename)) {
        return 0;
    }
    int ret = nbd_uri_from_legacy(*filename, &uri, errp);
    if (ret < 0) {
        return ret;
    }
    free(*filename);
    *filename = uri;
    return 0;
}

/* Open `opts` (the node's own, not yet inherited) as a child of parent
 * (NULL for a root). */
static struct bdrv_node *open_inherit(const struct bdrv_open_opts *in,
                                      struct bdrv_node *parent,
                                      enum bdrv_child_role role,
                                      const char *filename_override,
                                      struct error **errp)
{
    struct bdrv_open_opts o;
    struct bdrv_node *bs = NULL;
    const struct bdrv_ops *drv = NULL;

    if (bdrv_open_opts_copy(&o, in) < 0) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    if (filename_override) {
        free(o.filename);
        o.filename = strdup(filename_override);
    }
    if (legacy_nbd_to_uri(&o.filename, errp) < 0 ||
        (o.file && legacy_nbd_to_uri(&o.file->filename, errp) < 0)) {
        goto out;
    }
    inherit_opts(&o, parent, role);
    if (o.snapshot) {
        /* The image opens like a backing file; a temporary qcow2 overlay
         * (block/qcow2-overlay.c) takes the writes. */
        o.snapshot = false;
        o.read_only = (struct opt_bool){ true, true };
        o.auto_read_only = (struct opt_bool){ true, false };
        struct bdrv_node *img = open_inherit(&o, parent, role, NULL, errp);
        if (img) {
            bs = bdrv_open_temp_overlay(img, errp);
            bdrv_unref(img);
            if (bs) {
                bs->parent = parent;
                bs->role = role;
            }
        }
        goto out;
    }

    if (o.driver) {
        if (resolve_driver(o.driver, &drv, errp) < 0) {
            goto out;
        }
        if (drv->is_protocol && !o.filename && o.file && o.file->filename) {
            o.filename = strdup(o.file->filename);
        }
        bs = open_node(drv, &o, parent, role, NULL, false, errp);
        goto out;
    }

    /* No driver: open the protocol layer and probe what format it holds.
     * The format node is the probed driver over that file node. */
    if (!o.filename && !(o.file && (o.file->filename || o.file->driver))) {
        error_setg(errp, "A filename or driver is needed");
        goto out;
    }
    struct bdrv_open_opts fo;
    if (o.file) {
        if (bdrv_open_opts_copy(&fo, o.file) < 0) {
            error_setg(errp, "Out of memory");
            goto out;
        }
    } else {
        bdrv_open_opts_init(&fo);
    }
    if (!fo.filename && o.filename) {
        fo.filename = strdup(o.filename);
    }
    if (!fo.driver) {
        fo.driver = strdup(protocol_for_filename(fo.filename));
    }
    /* The file node's parent is the format node not yet made: inherit
     * from a stand-in with this node's effective flags. */
    struct bdrv_node standin = {
        .opts = o,
        .read_only = o.force_read_only || (o.read_only.set && o.read_only.value),
        .auto_read_only = o.auto_read_only.set && o.auto_read_only.value,
        .force_read_only = o.force_read_only,
    };
    if (o.force_share && !standin.read_only) {
        error_setg(errp, "force-share=on can only be used with read-only images");
        bdrv_open_opts_free(&fo);
        goto out;
    }
    struct bdrv_node *file = open_inherit(&fo, &standin, BDRV_CHILD_FILE, NULL, errp);
    bdrv_open_opts_free(&fo);
    if (!file) {
        goto out;
    }
    drv = bdrv_probe_format(file, errp);
    if (!drv) {
        bdrv_unref(file);
        goto out;
    }
    if (drv->is_protocol) {
        bs = file;
        goto out;
    }
    bs = open_node(drv, &o, parent, role, file, drv == &bdrv_raw_ops, errp);
    if (bs) {
        file->parent = bs;
    }

out:
    bdrv_open_opts_free(&o);
    return bs;
}

int bdrv_open_child(struct bdrv_node *parent, enum bdrv_child_role role,
                    const struct bdrv_open_opts *opts, const char *filename,
                    struct error **errp)
{
    struct bdrv_node **slot = role == BDRV_CHILD_BACKING ? &parent->backing : &parent->file;
    if (*slot) {
        return 0;       /* probing already opened the file child */
    }
    struct bdrv_open_opts def;
    bdrv_open_opts_init(&def);
    if (!opts) {
        opts = &def;
    }
    const char *fname = filename;
    if (!fname && !opts->filename && role == BDRV_CHILD_FILE) {
        fname = parent->opts.filename;
    }
    struct bdrv_open_opts o;
    if (bdrv_open_opts_copy(&o, opts) < 0) {
        error_setg(errp, "Out of memory");
        return -ENOMEM;
    }
    /* A file child with nothing said is an NBD export or a POSIX file,
     * by its name. */
    if (role == BDRV_CHILD_FILE && !o.driver) {
        o.driver = strdup(protocol_for_filename(fname ? fname : o.filename));
    }
    struct error *err = NULL;
    struct bdrv_node *child = open_inherit(&o, parent, role, fname, &err);
    bdrv_open_opts_free(&o);
    if (!child) {
        int ret = err && err->errnum ? -err->errnum : -EINVAL;
        error_propagate(errp, err);
        return ret;
    }
    child->parent = parent;
    *slot = child;
    return 0;
}

struct bdrv_node *bdrv_open(const struct bdrv_open_opts *opts, struct error **errp)
{
    struct error *err = NULL;
    struct bdrv_node *bs = open_inherit(opts, NULL, BDRV_CHILD_NONE, NULL, &err);
    if (!bs) {
        if (!err) {
            error_setg(&err, "Could not open image");
        }
        error_propagate(errp, err);
        return NULL;
    }
    /* As QEMU: only a writable probed raw image gets the warning. */
    if (bs->probed && !bs->read_only) {
        log_warn("Image format was not specified for '%s' and probing guessed raw.\n"
                 "         Automatically detecting the format is dangerous for raw images, "
                 "write operations on block 0 will be restricted.\n"
                 "         Specify the 'raw' format explicitly to remove the restrictions.",
                 bs->filename);
    }
    return bs;
}

struct bdrv_node *bdrv_open_file(const char *filename, const char *format,
                                 bool read_only, struct error **errp)
{
    struct bdrv_open_opts o;
    bdrv_open_opts_init(&o);
    o.filename = strdup(filename);
    o.driver = format ? strdup(format) : NULL;
    o.read_only = (struct opt_bool){ true, read_only };
    struct bdrv_node *bs = bdrv_open(&o, errp);
    bdrv_open_opts_free(&o);
    return bs;
}

/* ------------------------------------------------------------------ */
/* Accessors                                                           */
/* ------------------------------------------------------------------ */

bool bdrv_is_read_only(const struct bdrv_node *bs) { return bs->read_only; }
bool bdrv_is_force_read_only(const struct bdrv_node *bs) { return bs->force_read_only; }
bool bdrv_is_auto_degraded(const struct bdrv_node *bs) { return bs->auto_degraded; }
const char *bdrv_driver_name(const struct bdrv_node *bs) { return bs->drv->name; }
const char *bdrv_filename(const struct bdrv_node *bs) { return bs->filename; }
struct bdrv_node *bdrv_file_child(struct bdrv_node *bs) { return bs->file; }
struct bdrv_node *bdrv_backing_child(struct bdrv_node *bs) { return bs->backing; }

uint32_t bdrv_request_alignment(const struct bdrv_node *bs)
{
    uint32_t al = bs->request_alignment;
    if (bs->file) {
        al = MAX(al, bdrv_request_alignment(bs->file));
    }
    return al;
}

void bdrv_get_info(struct bdrv_node *bs, struct bdrv_info *info)
{
    memset(info, 0, sizeof(*info));
    info->filename = bs->filename;
    info->format = bs->drv->name;
    int64_t len = bdrv_getlength(bs);
    info->virtual_size = len > 0 ? (uint64_t)len : 0;
    info->read_only = bs->read_only;
    info->actual_size = -1;
    if (bs->drv->get_allocated_size) {
        info->actual_size = bs->drv->get_allocated_size(bs);
    } else if (bs->file && bs->file->drv->get_allocated_size) {
        info->actual_size = bs->file->drv->get_allocated_size(bs->file);
    }
    if (info->actual_size < 0) {
        info->actual_size = -1;
    }
    if (bs->drv->get_info) {
        bs->drv->get_info(bs, info);
    }
}

/* ------------------------------------------------------------------ */
/* Reopen                                                              */
/* ------------------------------------------------------------------ */

#define REOPEN_MAX_DEPTH 16

int bdrv_reopen_read_only(struct bdrv_node *bs, bool read_only,
                          struct error **errp)
{
    struct bdrv_reopen_state rs[REOPEN_MAX_DEPTH];
    int n = 0, ret = 0;

    /* The node and its file children, top down. */
    for (struct bdrv_node *b = bs; b && n < REOPEN_MAX_DEPTH; b = b->file) {
        if (!read_only && b->force_read_only) {
            error_setg(errp, "Could not reopen '%s' read-write: the image is forced read-only",
                       b->filename);
            return -EACCES;
        }
        rs[n++] = (struct bdrv_reopen_state){ .bs = b, .read_only = read_only };
    }
    if (bs->read_only == read_only) {
        bool all_same = true;
        for (int i = 0; i < n; i++) {
            all_same &= rs[i].bs->read_only == read_only;
        }
        if (all_same) {
            return 0;
        }
    }
    if (read_only) {
        ret = bdrv_flush(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not flush '%s' before reopening read-only",
                             bs->filename);
            return ret;
        }
    }
    int prepared = 0;
    for (; prepared < n; prepared++) {
        struct bdrv_reopen_state *r = &rs[prepared];
        if (r->bs->drv->reopen_prepare) {
            ret = r->bs->drv->reopen_prepare(r, errp);
            if (ret < 0) {
                break;
            }
        }
    }
    if (ret < 0) {
        for (int i = prepared - 1; i >= 0; i--) {
            if (rs[i].bs->drv->reopen_abort) {
                rs[i].bs->drv->reopen_abort(&rs[i]);
            }
        }
        return ret;
    }
    for (int i = 0; i < n; i++) {
        if (rs[i].bs->drv->reopen_commit) {
            rs[i].bs->drv->reopen_commit(&rs[i]);
        }
        rs[i].bs->read_only = read_only;
        rs[i].bs->auto_degraded = false;
        rs[i].bs->opts.read_only = (struct opt_bool){ true, read_only };
    }
    return 0;
}
