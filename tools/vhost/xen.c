/*
 * tools/vhost/xen.c — diskdm-vhost --domid: one vbd of a domain, read from
 * the libxl layout in xenstore, opened as its `mode` says, and kept in step
 * with `mode` while the guest runs (the device's writes then fail or
 * succeed; see xen/xs-watch.c for the same rule inside diskdm).
 */
#include "tools/vhost/vhost.h"
#include "xen/xen.h"
#include "util/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <xenstore.h>

struct vhost_xen {
    struct event_loop *loop;
    struct xs_handle *xs;
    int fd;                     /* xs_fileno, -1 until watched */
    struct blk_backend *blk;
    struct xen_disk_cfg cfg;
    char *mode_path;            /* <backend>/mode */
    bool read_only;
};

static void mode_changed(struct vhost_xen *x)
{
    char *mode = xs_read(x->xs, XBT_NULL, x->mode_path, NULL);
    struct error *err = NULL;
    enum disk_access access;
    bool no_locking, want_ro = true;

    if (xen_parse_mode(mode, &access, &no_locking, &err) < 0) {
        log_warn("vbd %d: %s; made read-only", x->cfg.devid, err->msg);
        error_free(err);
        err = NULL;
    } else {
        want_ro = access != DISK_ACCESS_RW;
    }
    if (want_ro != x->read_only) {
        if (blk_set_read_only(x->blk, want_ro, &err) < 0) {
            log_error("vbd %d: mode change to %s failed: %s", x->cfg.devid,
                      mode ? mode : "(none)", err->msg);
            error_free(err);
        } else {
            x->read_only = want_ro;
            log_info("vbd %d: %s is now %s", x->cfg.devid, x->cfg.vdev,
                     want_ro ? "read-only" : "read-write");
        }
    }
    free(mode);
}

static void xs_events(void *opaque, uint32_t events)
{
    struct vhost_xen *x = opaque;
    unsigned int n;
    char **vec;

    (void)events;
    vec = xs_read_watch(x->xs, &n);
    if (!vec) {
        log_error("xenstore connection lost; the drive keeps its mode");
        ev_fd_remove(x->loop, x->fd);
        x->fd = -1;
        return;
    }
    free(vec);
    mode_changed(x);
}

static int pick_disk(struct vhost_xen *x, int domid, const char *vdev,
                     struct error **errp)
{
    struct xen_disk_cfg *disks = NULL;
    size_t n = 0, found = SIZE_MAX;
    int ret = xen_disks_read(x->xs, domid, &disks, &n, errp);

    if (ret < 0)
        return ret;
    for (size_t i = 0; i < n && found == SIZE_MAX; i++) {
        if (vdev ? disks[i].vdev && !strcmp(disks[i].vdev, vdev)
                 : disks[i].kind == XEN_DISK_EMULATED &&
                   disks[i].spec.media == DISK_MEDIA_DISK)
            found = i;
    }
    if (found == SIZE_MAX) {
        error_setg(errp, "domain %d has no %s%s", domid, vdev ? "disk " : "disk",
                   vdev ? vdev : "");
        ret = -ENOENT;
    } else if (disks[found].kind != XEN_DISK_EMULATED) {
        error_setg(errp, "domain %d disk %s: %s", domid, disks[found].vdev,
                   disks[found].error ? disks[found].error : "not an emulated disk");
        ret = -EINVAL;
    } else if (!disks[found].spec.file || !*disks[found].spec.file) {
        error_setg(errp, "domain %d disk %s has no medium", domid, disks[found].vdev);
        ret = -ENOMEDIUM;
    } else {
        x->cfg = disks[found];
        memset(&disks[found], 0, sizeof(disks[found]));
    }
    for (size_t i = 0; i < n; i++) {
        if (i != found || ret < 0)
            xen_disk_cfg_free(&disks[i]);
    }
    free(disks);
    return ret;
}

struct vhost_xen *vhost_xen_open(struct event_loop *loop, int domid,
                                 const char *vdev, struct error **errp)
{
    struct vhost_xen *x = calloc(1, sizeof(*x));
    struct blk_config bc;
    struct bdrv_node *bs;

    if (!x) {
        error_setg_errno(errp, ENOMEM, "--domid");
        return NULL;
    }
    x->loop = loop;
    x->fd = -1;
    x->xs = xs_open(0);
    if (!x->xs) {
        const char *p = getenv("XENSTORED_PATH");
        error_setg_errno(errp, errno, "cannot connect to xenstore at %s",
                         p ? p : "the default socket");
        goto out_free;
    }
    if (pick_disk(x, domid, vdev, errp) < 0)
        goto out_close_xs;
    bs = xen_open_image(&x->cfg.spec, x->cfg.no_locking, errp);
    if (!bs) {
        error_prepend(errp, "domain %d disk %s", domid, x->cfg.vdev);
        goto out_free_cfg;
    }
    bc = (struct blk_config){ .werror = x->cfg.spec.werror,
                              .rerror = x->cfg.spec.rerror };
    x->blk = blk_new(loop, bs, &bc);
    bdrv_unref(bs);
    if (!x->blk) {
        error_setg_errno(errp, ENOMEM, "--domid");
        goto out_free_cfg;
    }
    x->read_only = blk_is_read_only(x->blk) ||
                   x->cfg.spec.access != DISK_ACCESS_RW;
    if (asprintf(&x->mode_path, "%s/mode", x->cfg.be_path) < 0) {
        x->mode_path = NULL;
        error_setg_errno(errp, ENOMEM, "--domid");
        goto out_free_blk;
    }
    if (!xs_watch(x->xs, x->mode_path, "mode")) {
        error_setg_errno(errp, errno, "cannot watch %s", x->mode_path);
        goto out_free_path;
    }
    x->fd = xs_fileno(x->xs);
    if (x->fd < 0 || ev_fd_add(loop, x->fd, EPOLLIN, xs_events, x) < 0) {
        x->fd = -1;
        error_setg(errp, "cannot poll the xenstore connection");
        goto out_free_path;
    }
    log_info("vbd %d: %s (%s, %s)", x->cfg.devid, x->cfg.vdev, x->cfg.spec.file,
             x->read_only ? "read-only" : "read-write");
    return x;

out_free_path:
    free(x->mode_path);
out_free_blk:
    blk_free(x->blk);
out_free_cfg:
    xen_disk_cfg_free(&x->cfg);
out_close_xs:
    xs_close(x->xs);
out_free:
    free(x);
    return NULL;
}

struct blk_backend *vhost_xen_blk(struct vhost_xen *x)
{
    return x->blk;
}

const char *vhost_xen_serial(struct vhost_xen *x)
{
    return x->cfg.spec.serial;
}

void vhost_xen_free(struct vhost_xen *x)
{
    if (!x)
        return;
    if (x->fd >= 0)
        ev_fd_remove(x->loop, x->fd);
    blk_free(x->blk);
    xs_close(x->xs);
    free(x->mode_path);
    xen_disk_cfg_free(&x->cfg);
    free(x);
}
