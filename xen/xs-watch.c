/*
 * xen/xs-watch.c — the device model's life in xenstore: attach a domain's
 * disks at start, then follow the toolstack through watches: `mode` (dynamic
 * read-only), `params` (CD-ROM media), `online`/`state` (unplug) and new or
 * vanished vbds (block-attach/-detach). Runs on the util event loop.
 */
#include "xen/xen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <xenstore.h>

/* blkif `info` bits, written for the toolstack like a PV backend does. */
#define VDISK_CDROM     0x1
#define VDISK_REMOVABLE 0x2
#define VDISK_READONLY  0x4

#define TOKEN_VBDS "vbds"

/* One vbd the device model has attached. */
struct xen_vbd {
    struct xen_dm *dm;
    struct xen_vbd *next;
    struct xen_disk_cfg cfg;
    struct blk_backend *blk;
    bool read_only;         /* what the backend is now */
    char *cur_params;       /* params the medium came from (CD-ROM) */
    char token[24];         /* "vbd<devid>": our watch on the backend dir */
};

/* A vbd we refused: remembered so the reason is written once, and forgotten
 * when the toolstack removes it. */
struct xen_rejected {
    struct xen_rejected *next;
    int devid;
};

struct xen_dm {
    struct event_loop *loop;
    struct machine *m;
    struct xs_handle *xs;
    int domid;
    int fd;                 /* xs_fileno, -1 until registered */
    struct xen_vbd *vbds;
    struct xen_rejected *rejected;
    char vbd_dir[64];       /* /local/domain/<domid>/device/vbd */
    bool in_events;         /* re-entry guard: blk_drain runs the loop */
    bool events_paused;
};

/* ------------------------------------------------------------------ */
/* Small xenstore helpers                                               */
/* ------------------------------------------------------------------ */

static char *read_rel(struct xen_dm *dm, const char *dir, const char *key)
{
    char path[512];
    unsigned len;

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    return xs_read(dm->xs, XBT_NULL, path, &len);
}

static void write_rel(struct xen_dm *dm, const char *dir, const char *key,
                      const char *fmt, ...) PRINTF_FMT(4, 5);
static void write_rel(struct xen_dm *dm, const char *dir, const char *key,
                      const char *fmt, ...)
{
    char path[512], val[512];
    va_list ap;

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    if (!xs_write(dm->xs, XBT_NULL, path, val, strlen(val)))
        log_warn("xenstore write %s: %s", path, strerror(errno));
}

static void remember_rejected(struct xen_dm *dm, int devid)
{
    struct xen_rejected *r = calloc(1, sizeof(*r));

    if (!r)
        abort();
    r->devid = devid;
    r->next = dm->rejected;
    dm->rejected = r;
}

static void report_disk_error(struct xen_dm *dm, struct xen_vbd *v,
                              const char *msg)
{
    log_error("vbd %d: %s", v->cfg.devid, msg);
    if (xen_disk_write_error(dm->xs, v->cfg.be_path, msg) < 0)
        log_warn("cannot write hotplug-error for %s", v->cfg.be_path);
}

/* `info` and `sectors`: what the toolstack reads back after a change. */
static void write_disk_info(struct xen_dm *dm, struct xen_vbd *v)
{
    unsigned info = v->read_only ? VDISK_READONLY : 0;
    int64_t len = v->blk && blk_is_inserted(v->blk) ? blk_getlength(v->blk) : 0;

    if (v->cfg.spec.media == DISK_MEDIA_CDROM)
        info |= VDISK_CDROM | VDISK_REMOVABLE | VDISK_READONLY;
    write_rel(dm, v->cfg.be_path, "sectors", "%lld",
              (long long)(len > 0 ? len / BDRV_SECTOR_SIZE : 0));
    write_rel(dm, v->cfg.be_path, "info", "%u", info);
}

/* ------------------------------------------------------------------ */
/* Opening and attaching                                                */
/* ------------------------------------------------------------------ */

/*
 * The toolstack's `mode` is the one authority over a xenstore disk's
 * access, and it may change while the guest runs. So a mode=r disk is
 * opened read-only at every layer (O_RDONLY, never tried O_RDWR) but not
 * marked "forced": only a later mode=w may reopen it read-write, and only
 * the owner following `mode` calls blk_set_read_only.
 */
static void open_opts_for_mode(struct bdrv_open_opts *o, bool no_locking)
{
    for (; o; o = o->file) {
        if (o->force_read_only) {
            o->force_read_only = false;
            o->read_only.set = true;
            o->read_only.value = true;
            o->auto_read_only.set = true;
            o->auto_read_only.value = false;
        }
        if (no_locking)
            o->locking = LOCKING_OFF;
    }
}

struct bdrv_node *xen_open_image(const struct disk_spec *spec, bool no_locking,
                                 struct error **errp)
{
    struct bdrv_open_opts o;
    struct bdrv_node *bs = NULL;

    bdrv_open_opts_init(&o);
    if (bdrv_open_opts_from_spec(spec, &o, errp) == 0) {
        open_opts_for_mode(&o, no_locking);
        bs = bdrv_open(&o, errp);
    }
    bdrv_open_opts_free(&o);
    return bs;
}

static int vbd_open_attach(struct xen_dm *dm, struct xen_vbd *v,
                           struct error **errp)
{
    const struct disk_spec *spec = &v->cfg.spec;
    struct blk_config bc = { .werror = spec->werror, .rerror = spec->rerror };
    struct bdrv_node *bs = NULL;
    int ret;

    if (spec->file && *spec->file) {
        bs = xen_open_image(spec, v->cfg.no_locking, errp);
        if (!bs)
            return -EIO;
    }
    v->blk = blk_new(dm->loop, bs, &bc);
    if (bs)
        bdrv_unref(bs);
    ret = machine_attach_disk(dm->m, spec, v->blk, errp);
    if (ret < 0) {
        blk_free(v->blk);
        v->blk = NULL;
        return ret;
    }
    v->read_only = blk_is_read_only(v->blk) || spec->access != DISK_ACCESS_RW;
    v->cur_params = strdup(v->cfg.params ? v->cfg.params : "");
    snprintf(v->token, sizeof(v->token), "vbd%d", v->cfg.devid);
    log_info("vbd %d: %s attached (%s, %s)", v->cfg.devid, v->cfg.vdev,
             spec->file ? spec->file : "no medium",
             v->read_only ? "read-only" : "read-write");
    return 0;
}

static void vbd_free(struct xen_vbd *v)
{
    xen_disk_cfg_free(&v->cfg);
    free(v->cur_params);
    free(v);
}

/* Take a configuration the caller read; attach it or report why not. */
static int vbd_add(struct xen_dm *dm, struct xen_disk_cfg *cfg, bool hotplug,
                   struct error **errp)
{
    struct xen_vbd *v;
    struct error *err = NULL;

    if (cfg->kind == XEN_DISK_PV_ONLY) {
        log_info("vbd %d: %s is not an emulated disk (no specification=virtio); "
                 "left to a PV backend", cfg->devid, cfg->vdev);
        xen_disk_cfg_free(cfg);
        return 0;
    }
    if (cfg->kind == XEN_DISK_REJECTED) {
        log_error("vbd %d: not attached: %s", cfg->devid, cfg->error);
        if (cfg->linked && xen_disk_write_error(dm->xs, cfg->be_path, cfg->error) < 0)
            log_warn("cannot write hotplug-error for %s", cfg->be_path);
        remember_rejected(dm, cfg->devid);
        xen_disk_cfg_free(cfg);
        return 0;
    }

    v = calloc(1, sizeof(*v));
    if (!v)
        abort();
    v->dm = dm;
    v->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    if (vbd_open_attach(dm, v, &err) < 0) {
        int ret = err->errnum ? -err->errnum : -EIO;

        if (hotplug) {
            /* a failed block-attach fails that disk, not the domain */
            report_disk_error(dm, v, err->msg);
            error_free(err);
            remember_rejected(dm, v->cfg.devid);
            ret = 0;
        } else {
            /* the backend's own key needs no name; the domain's error does */
            xen_disk_write_error(dm->xs, v->cfg.be_path, err->msg);
            error_prepend(&err, "%s", v->cfg.vdev);
            error_propagate(errp, err);
        }
        vbd_free(v);
        return ret;
    }
    v->next = dm->vbds;
    dm->vbds = v;
    if (!xs_watch(dm->xs, v->cfg.be_path, v->token))
        log_warn("cannot watch %s: %s", v->cfg.be_path, strerror(errno));
    write_disk_info(dm, v);
    write_rel(dm, v->cfg.be_path, "hotplug-status", "connected");
    write_rel(dm, v->cfg.be_path, "state", "4");
    return 0;
}

/* Unplug: the device goes first (draining), then the image is closed. */
static void vbd_remove(struct xen_dm *dm, struct xen_vbd *v, bool write_closed)
{
    struct error *err = NULL;

    for (struct xen_vbd **pp = &dm->vbds; *pp; pp = &(*pp)->next) {
        if (*pp == v) {
            *pp = v->next;
            break;
        }
    }
    xs_unwatch(dm->xs, v->cfg.be_path, v->token);
    if (machine_detach_disk(dm->m, v->cfg.spec.id, &err) < 0) {
        log_warn("vbd %d: %s", v->cfg.devid, err->msg);
        error_free(err);
    }
    blk_free(v->blk);
    log_info("vbd %d: %s detached", v->cfg.devid, v->cfg.vdev);
    if (write_closed)
        write_rel(dm, v->cfg.be_path, "state", "6");
    vbd_free(v);
}

/* ------------------------------------------------------------------ */
/* Reacting to the toolstack                                            */
/* ------------------------------------------------------------------ */

/* `mode` changed (or the initial event): make the backend match. */
static void vbd_mode_changed(struct xen_dm *dm, struct xen_vbd *v, bool ack)
{
    char *mode = read_rel(dm, v->cfg.be_path, "mode");
    struct error *err = NULL;
    enum disk_access access;
    bool no_locking, want_ro;

    if (xen_parse_mode(mode, &access, &no_locking, &err) < 0) {
        /* Never writable by default: a live disk whose mode turns bad goes
         * read-only, and the reason is reported. */
        char *msg = strdup(err->msg);

        error_free(err);
        err = NULL;
        if (!v->read_only && blk_set_read_only(v->blk, true, &err) == 0) {
            v->read_only = true;
            log_warn("vbd %d: %s made read-only", v->cfg.devid, v->cfg.vdev);
        }
        if (err) {
            log_error("vbd %d: %s", v->cfg.devid, err->msg);
            error_free(err);
        }
        report_disk_error(dm, v, msg);
        free(msg);
        goto out_free;
    }
    want_ro = access != DISK_ACCESS_RW || v->cfg.spec.media == DISK_MEDIA_CDROM;
    if (want_ro != v->read_only) {
        if (blk_set_read_only(v->blk, want_ro, &err) < 0) {
            char msg[512];

            snprintf(msg, sizeof(msg), "mode change to %s failed: %s", mode,
                     err->msg);
            error_free(err);
            report_disk_error(dm, v, msg);
            goto out_free;
        }
        v->read_only = want_ro;
        log_info("vbd %d: %s is now %s", v->cfg.devid, v->cfg.vdev,
                 want_ro ? "read-only" : "read-write");
    }
    free(v->cfg.mode);
    v->cfg.mode = mode;
    mode = NULL;
    if (ack)
        write_disk_info(dm, v);
out_free:
    free(mode);
}

/* `params` on a CD-ROM: "" ejects, a new path inserts. */
static void vbd_params_changed(struct xen_dm *dm, struct xen_vbd *v, bool ack)
{
    char *params = read_rel(dm, v->cfg.be_path, "params");
    char *format = NULL, *path = NULL;
    struct error *err = NULL;
    struct bdrv_node *bs;
    struct disk_spec spec;

    if (!params)
        params = strdup("");
    if (!strcmp(params, v->cur_params))
        goto out_ack;
    if (v->cfg.spec.media != DISK_MEDIA_CDROM) {
        log_warn("vbd %d: params of hard disk %s changed; ignored until "
                 "re-attached", v->cfg.devid, v->cfg.vdev);
        goto out_free;
    }
    free(v->cur_params);
    v->cur_params = params;
    params = NULL;
    if (blk_is_inserted(v->blk)) {
        blk_eject(v->blk);
        log_info("vbd %d: %s medium ejected", v->cfg.devid, v->cfg.vdev);
    }
    if (xen_parse_params(v->cur_params, &format, &path, &err) < 0) {
        report_disk_error(dm, v, err->msg);
        error_free(err);
        goto out_ack;
    }
    if (!*path)
        goto out_ack;
    disk_spec_init(&spec);
    spec.file = path;
    spec.format = format ? format : strdup("raw");
    spec.media = DISK_MEDIA_CDROM;
    spec.access = DISK_ACCESS_RO_FORCED;
    path = format = NULL;
    bs = xen_open_image(&spec, false, &err);
    if (!bs) {
        report_disk_error(dm, v, err->msg);
        error_free(err);
    } else {
        if (blk_insert(v->blk, bs, &err) < 0) {
            report_disk_error(dm, v, err->msg);
            error_free(err);
        } else {
            log_info("vbd %d: %s medium inserted: %s", v->cfg.devid,
                     v->cfg.vdev, spec.file);
        }
        bdrv_unref(bs);
    }
    disk_spec_free(&spec);
out_ack:
    if (ack)
        write_disk_info(dm, v);
out_free:
    free(format);
    free(path);
    free(params);
}

/*
 * `resize` (bytes, from diskdm-xl block-resize): grow the image while the
 * guest runs. The device hears of it through blk_dev_ops.resized (virtio:
 * new capacity and a config interrupt; IDE: what IDENTIFY reports), and
 * the frontend through `sectors` and a rewritten `state`, as blkback
 * publishes a grown disk. Growing is a write to the image, so a read-only
 * disk is refused. The request key is removed either way; a failure is
 * in hotplug-error.
 */
static void vbd_resize_requested(struct xen_dm *dm, struct xen_vbd *v)
{
    char *req = read_rel(dm, v->cfg.be_path, "resize"), path[512];
    struct error *err = NULL;
    uint64_t size;

    if (!req)
        return;
    if (parse_uint(req, &size) < 0 || size == 0)
        error_setg(&err, "resize: invalid size '%s'", req);
    else if (v->cfg.spec.media == DISK_MEDIA_CDROM)
        error_setg(&err, "resize: a CD-ROM cannot be resized");
    else if (v->read_only)
        error_setg(&err, "resize: the disk is read-only (mode=%s); its image "
                   "is never changed", v->cfg.mode ? v->cfg.mode : "r");
    else if (blk_truncate(v->blk, size, &err) < 0)
        error_prepend(&err, "resize");
    if (err) {
        report_disk_error(dm, v, err->msg);
        error_free(err);
    } else {
        log_info("vbd %d: %s resized to %llu bytes", v->cfg.devid, v->cfg.vdev,
                 (unsigned long long)size);
        write_disk_info(dm, v);
        write_rel(dm, v->cfg.be_path, "state", "4");
    }
    snprintf(path, sizeof(path), "%s/resize", v->cfg.be_path);
    xs_rm(dm->xs, XBT_NULL, path);
    free(req);
}

/* online=0 with state=5 (Closing) is the toolstack's unplug request. */
static bool vbd_unplug_requested(struct xen_dm *dm, struct xen_vbd *v)
{
    char *online = read_rel(dm, v->cfg.be_path, "online");
    char *state = read_rel(dm, v->cfg.be_path, "state");
    bool unplug = online && state && !strcmp(online, "0") && !strcmp(state, "5");

    free(online);
    free(state);
    return unplug;
}

static struct xen_vbd *find_vbd(struct xen_dm *dm, int devid)
{
    for (struct xen_vbd *v = dm->vbds; v; v = v->next)
        if (v->cfg.devid == devid)
            return v;
    return NULL;
}

static bool is_rejected(struct xen_dm *dm, int devid)
{
    for (struct xen_rejected *r = dm->rejected; r; r = r->next)
        if (r->devid == devid)
            return true;
    return false;
}

static void backend_event(struct xen_dm *dm, struct xen_vbd *v, const char *path)
{
    size_t bl = strlen(v->cfg.be_path);
    const char *key;

    if (strncmp(path, v->cfg.be_path, bl) || (path[bl] && path[bl] != '/'))
        return;
    key = path[bl] ? path + bl + 1 : "";
    {
        /* The backend removed under us (a toolstack's forced removal): the
         * disk goes, and nothing is written back into the removed directory. */
        char *fe = read_rel(dm, v->cfg.be_path, "frontend");

        free(fe);
        if (!fe) {
            log_warn("vbd %d: backend %s removed; detaching %s", v->cfg.devid,
                     v->cfg.be_path, v->cfg.vdev);
            vbd_remove(dm, v, false);
            return;
        }
    }
    if (!strcmp(key, "online") || !strcmp(key, "state") || !*key) {
        if (vbd_unplug_requested(dm, v)) {
            vbd_remove(dm, v, true);
            return;
        }
    }
    if (!strcmp(key, "mode") || !*key)
        vbd_mode_changed(dm, v, *key != 0);
    if (!strcmp(key, "params") || !*key)
        vbd_params_changed(dm, v, *key != 0);
    if (!strcmp(key, "resize") || !*key)
        vbd_resize_requested(dm, v);
}

/*
 * Something under device/vbd changed: attach vbds we do not know yet (once
 * their backend says online=1 and state=1, the last keys a toolstack
 * writes) and drop those whose frontend vanished.
 */
static void vbd_dir_event(struct xen_dm *dm)
{
    unsigned num = 0;
    char **ents = xs_directory(dm->xs, XBT_NULL, dm->vbd_dir, &num);
    struct xen_vbd *v, *next;

    for (v = dm->vbds; v; v = next) {
        bool present = false;
        char name[16];

        next = v->next;
        snprintf(name, sizeof(name), "%d", v->cfg.devid);
        for (unsigned i = 0; ents && i < num; i++)
            if (!strcmp(ents[i], name))
                present = true;
        if (!present)
            vbd_remove(dm, v, false);
    }
    for (struct xen_rejected **pp = &dm->rejected; *pp;) {
        bool present = false;
        char name[16];

        snprintf(name, sizeof(name), "%d", (*pp)->devid);
        for (unsigned i = 0; ents && i < num; i++)
            if (!strcmp(ents[i], name))
                present = true;
        if (!present) {
            struct xen_rejected *r = *pp;

            *pp = r->next;
            free(r);
        } else {
            pp = &(*pp)->next;
        }
    }
    for (unsigned i = 0; ents && i < num; i++) {
        struct xen_disk_cfg cfg;
        struct error *err = NULL;
        char *online, *state, *be, fe[128];
        int devid = atoi(ents[i]);
        bool ready;

        if (find_vbd(dm, devid) || is_rejected(dm, devid))
            continue;
        /* wait until the toolstack has finished writing this vbd */
        snprintf(fe, sizeof(fe), "%s/%s", dm->vbd_dir, ents[i]);
        be = read_rel(dm, fe, "backend");
        if (!be)
            continue;
        online = read_rel(dm, be, "online");
        state = read_rel(dm, be, "state");
        ready = online && state && !strcmp(online, "1") && !strcmp(state, "1");
        free(online);
        free(state);
        free(be);
        if (!ready)
            continue;
        if (xen_disk_cfg_read(dm->xs, dm->domid, ents[i], &cfg, &err) < 0) {
            log_error("%s", err->msg);
            error_free(err);
            continue;
        }
        vbd_add(dm, &cfg, true, NULL);
    }
    free(ents);
}

/*
 * The guest opened a CD-ROM tray (START STOP UNIT): tell the toolstack the
 * way qemu-trad did, with `eject` in the frontend's eject key. The machine
 * calls this as the command completes, so nothing polls the drives.
 */
static void guest_tray_moved(void *opaque, struct blk_backend *blk, bool open)
{
    struct xen_dm *dm = opaque;
    struct xen_vbd *v;

    for (v = dm->vbds; v && v->blk != blk; v = v->next)
        ;
    if (!v || !open || !blk_is_inserted(blk))
        return;
    log_info("vbd %d: guest ejected the medium of %s", v->cfg.devid,
             v->cfg.vdev);
    write_rel(dm, v->cfg.fe_path, "eject", "eject");
}

static void xs_events(void *opaque, uint32_t events)
{
    struct xen_dm *dm = opaque;
    char **w;

    if (dm->in_events) {
        /* A handler is draining I/O and the loop came back here: hold the
         * fd off until that handler returns and reads the rest. */
        ev_fd_modify(dm->loop, dm->fd, 0);
        dm->events_paused = true;
        return;
    }
    dm->in_events = true;
    while ((w = xs_check_watch(dm->xs))) {
        const char *path = w[XS_WATCH_PATH], *token = w[XS_WATCH_TOKEN];

        if (!strcmp(token, TOKEN_VBDS)) {
            vbd_dir_event(dm);
        } else if (!strncmp(token, "vbd", 3)) {
            struct xen_vbd *v = find_vbd(dm, atoi(token + 3));

            if (v)
                backend_event(dm, v, path);
        }
        free(w);
    }
    dm->in_events = false;
    if (dm->events_paused) {
        dm->events_paused = false;
        ev_fd_modify(dm->loop, dm->fd, EPOLLIN);
    }
}

/* ------------------------------------------------------------------ */
/* Start and stop                                                       */
/* ------------------------------------------------------------------ */

static void dm_teardown(struct xen_dm *dm, bool write_closed)
{
    machine_set_tray_observer(dm->m, NULL, NULL);
    if (dm->fd >= 0)
        ev_fd_remove(dm->loop, dm->fd);
    while (dm->vbds)
        vbd_remove(dm, dm->vbds, write_closed);
    while (dm->rejected) {
        struct xen_rejected *r = dm->rejected;

        dm->rejected = r->next;
        free(r);
    }
    xs_close(dm->xs);
    free(dm);
}

struct xen_dm *xen_dm_start(struct event_loop *loop, struct machine *m,
                            int domid, struct error **errp)
{
    struct xen_dm *dm = calloc(1, sizeof(*dm));
    struct xen_disk_cfg *disks = NULL;
    struct error *err = NULL;
    size_t n = 0, i = 0;

    if (!dm)
        abort();
    dm->loop = loop;
    dm->m = m;
    dm->domid = domid;
    dm->fd = -1;
    snprintf(dm->vbd_dir, sizeof(dm->vbd_dir), "/local/domain/%d/device/vbd", domid);
    dm->xs = xs_open(0);
    if (!dm->xs) {
        const char *p = getenv("XENSTORED_PATH");

        error_setg_errno(errp, errno, "cannot connect to xenstore at %s",
                         p ? p : "the default socket");
        free(dm);
        return NULL;
    }
    if (xen_disks_read(dm->xs, domid, &disks, &n, &err) < 0)
        goto out_teardown;
    for (i = 0; i < n; i++)
        if (vbd_add(dm, &disks[i], false, &err) < 0)
            goto out_teardown;
    free(disks);
    disks = NULL;

    if (!xs_watch(dm->xs, dm->vbd_dir, TOKEN_VBDS)) {
        error_setg_errno(&err, errno, "cannot watch %s", dm->vbd_dir);
        goto out_teardown;
    }
    dm->fd = xs_fileno(dm->xs);
    if (dm->fd < 0 || ev_fd_add(loop, dm->fd, EPOLLIN, xs_events, dm) < 0) {
        dm->fd = -1;
        error_setg(&err, "cannot poll the xenstore connection");
        goto out_teardown;
    }
    machine_set_tray_observer(m, guest_tray_moved, dm);
    if (xen_dm_write_state(dm->xs, domid, "running", NULL) < 0) {
        error_setg_errno(&err, errno, "cannot write device-model state");
        goto out_teardown;
    }
    log_info("domain %d: %zu disk(s) attached, state running", domid,
             xen_dm_disk_count(dm));
    return dm;

out_teardown:
    for (; disks && i < n; i++)
        xen_disk_cfg_free(&disks[i]);
    free(disks);
    error_prepend(&err, "domain %d", domid);
    xen_dm_write_state(dm->xs, domid, "error", err->msg);
    error_propagate(errp, err);
    dm_teardown(dm, false);
    return NULL;
}

void xen_dm_free(struct xen_dm *dm)
{
    if (dm)
        dm_teardown(dm, false);
}

size_t xen_dm_disk_count(const struct xen_dm *dm)
{
    size_t n = 0;

    for (const struct xen_vbd *v = dm->vbds; v; v = v->next)
        n++;
    return n;
}
