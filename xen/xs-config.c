/*
 * xen/xs-config.c — a domain's disks from the xenstore layout libxl writes:
 * frontend device/vbd/<devid> and backend backend/{vbd,qdisk}/<domid>/<devid>
 * become `struct disk_spec`, the same struct `-drive` produces. Every
 * configuration problem becomes a reason not to attach, never a default.
 */
#include "xen/xen.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

/* ------------------------------------------------------------------ */
/* vdev names and the devid formula                                     */
/* ------------------------------------------------------------------ */

/*
 * Letters in bijective base 26 ("a" = 0, "z" = 25, "aa" = 26) followed by
 * an optional partition number. Returns the number of characters consumed
 * by the letters, or -1 when there are none or the value overflows.
 */
static int parse_disk_letters(const char *s, int *disk)
{
    long v = 0;
    int i = 0;

    while (s[i] >= 'a' && s[i] <= 'z') {
        v = v * 26 + (s[i] - 'a' + 1);
        if (v > (1L << 20))
            return -1;
        i++;
    }
    if (i == 0)
        return -1;
    *disk = (int)(v - 1);
    return i;
}

/* Partition digits: "" = 0; otherwise decimal without a leading zero. */
static int parse_partition(const char *s, int *part)
{
    long v = 0;

    if (!*s) {
        *part = 0;
        return 0;
    }
    if (s[0] == '0')
        return -1;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return -1;
        v = v * 10 + (*s - '0');
        if (v > 255)
            return -1;
    }
    *part = (int)v;
    return 0;
}

int xen_vdev_devid(const char *vdev, int *pdisk, int *ppart)
{
    int disk = 0, part = 0, n, devid;

    if (!vdev || !*vdev)
        return -EINVAL;
    if (isdigit((unsigned char)vdev[0])) {
        char *end;
        long v;

        errno = 0;
        v = strtol(vdev, &end, 10);
        if (errno || *end || v < 0 || v > INT_MAX)
            return -EINVAL;
        if (pdisk)
            *pdisk = -1;
        if (ppart)
            *ppart = -1;
        return (int)v;
    }

    if (!strncmp(vdev, "hd", 2)) {
        n = parse_disk_letters(vdev + 2, &disk);
        if (n < 0 || disk > 3 || parse_partition(vdev + 2 + n, &part) < 0 || part > 63)
            return -EINVAL;
        devid = disk < 2 ? (3 << 8) | (disk << 6) | part
                         : (22 << 8) | ((disk - 2) << 6) | part;
    } else if (!strncmp(vdev, "sd", 2)) {
        n = parse_disk_letters(vdev + 2, &disk);
        if (n < 0 || disk > 15 || parse_partition(vdev + 2 + n, &part) < 0 || part > 15)
            return -EINVAL;
        devid = (8 << 8) | (disk << 4) | part;
    } else if (!strncmp(vdev, "xvd", 3) || !strncmp(vdev, "vd", 2)) {
        const char *p = vdev + (vdev[0] == 'x' ? 3 : 2);
        int major = vdev[0] == 'x' ? 202 : 254;

        n = parse_disk_letters(p, &disk);
        if (n < 0 || parse_partition(p + n, &part) < 0)
            return -EINVAL;
        if (disk <= 15 && part <= 15)
            devid = (major << 8) | (disk << 4) | part;
        else if (vdev[0] == 'x' && disk < (1 << 20))
            devid = (1 << 28) | (disk << 8) | part;
        else
            return -EINVAL;
    } else {
        return -EINVAL;
    }
    if (pdisk)
        *pdisk = disk;
    if (ppart)
        *ppart = part;
    return devid;
}

/* ------------------------------------------------------------------ */
/* mode and params                                                      */
/* ------------------------------------------------------------------ */

int xen_parse_mode(const char *mode, enum disk_access *access,
                   bool *no_locking, struct error **errp)
{
    *no_locking = false;
    if (!mode) {
        error_setg(errp, "backend has no 'mode' key; a disk is never writable "
                   "by default");
        return -EINVAL;
    }
    if (!strcmp(mode, "r")) {
        *access = DISK_ACCESS_RO_FORCED;
    } else if (!strcmp(mode, "w")) {
        *access = DISK_ACCESS_RW;
    } else if (!strcmp(mode, "w!")) {
        *access = DISK_ACCESS_RW;
        *no_locking = true;
    } else {
        error_setg(errp, "unrecognised mode '%s' (expected r, w or w!); a disk "
                   "is never writable by default", mode);
        return -EINVAL;
    }
    return 0;
}

/* params prefixes and the format they stand for (NULL = from `format`). */
static const struct {
    const char *prefix;
    const char *format;
} params_prefixes[] = {
    { "aio", "raw" }, { "raw", "raw" }, { "file", "raw" }, { "phy", "raw" },
    { "qcow", "qcow" }, { "qcow2", "qcow2" }, { "vhd", "vhd" }, { "qed", "qed" },
    { "tap", NULL }, { "tap2", NULL },
};

int xen_parse_params(const char *params, char **format, char **path,
                     struct error **errp)
{
    const char *colon = strchr(params, ':');
    const char *fmt = NULL;
    size_t plen;

    *format = NULL;
    *path = NULL;
    if (colon) {
        bool word = colon > params;

        for (const char *c = params; c < colon; c++)
            if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c))
                word = false;
        if (word) {
            /* "fmt:path": the prefix must be one libxl or xend writes. */
            bool known = false;

            plen = colon - params;
            for (size_t i = 0; i < ARRAY_SIZE(params_prefixes); i++) {
                if (strlen(params_prefixes[i].prefix) == plen &&
                    !strncmp(params, params_prefixes[i].prefix, plen)) {
                    fmt = params_prefixes[i].format;
                    known = true;
                    break;
                }
            }
            if (!known) {
                error_setg(errp, "unknown format prefix '%.*s' in params '%s'",
                           (int)plen, params, params);
                return -EINVAL;
            }
            /* tap/tap2 carry the real format in a second prefix */
            if (!fmt)
                return xen_parse_params(colon + 1, format, path, errp);
            params = colon + 1;
        }
    }
    *path = strdup(params);
    *format = fmt ? strdup(fmt) : NULL;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Reading one vbd                                                      */
/* ------------------------------------------------------------------ */

char *xen_frontend_path(int domid, int devid)
{
    char *p;

    if (asprintf(&p, "/local/domain/%d/device/vbd/%d", domid, devid) < 0)
        abort();
    return p;
}

char *xen_backend_path(const char *type, int domid, int devid)
{
    char *p;

    if (asprintf(&p, "/local/domain/0/backend/%s/%d/%d", type, domid, devid) < 0)
        abort();
    return p;
}

/*
 * Read dir/key. Returns 0 with *val NULL when the key does not exist (or
 * we may not read it), -errno when xenstore fails.
 */
static int read_key(struct xs_handle *xs, const char *dir, const char *key,
                    char **val, struct error **errp)
{
    char path[512];
    unsigned len;

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    *val = xs_read(xs, XBT_NULL, path, &len);
    if (*val)
        return 0;
    if (errno == ENOENT || errno == EACCES || errno == EINVAL)
        return 0;
    error_setg_errno(errp, errno, "xenstore read %s", path);
    return -errno;
}

static void reject(struct xen_disk_cfg *d, const char *fmt, ...) PRINTF_FMT(2, 3);
static void reject(struct xen_disk_cfg *d, const char *fmt, ...)
{
    va_list ap;

    d->kind = XEN_DISK_REJECTED;
    free(d->error);
    va_start(ap, fmt);
    if (vasprintf(&d->error, fmt, ap) < 0)
        abort();
    va_end(ap);
}

/* The checks that tie a frontend to its backend, as qemu-trad did them. */
static int check_link(struct xs_handle *xs, int domid, struct xen_disk_cfg *d,
                      struct error **errp)
{
    char *want_vbd = xen_backend_path("vbd", domid, d->devid);
    char *want_qdisk = xen_backend_path("qdisk", domid, d->devid);
    char *befe = NULL, *feid = NULL;
    int ret;

    ret = read_key(xs, d->fe_path, "backend", &d->be_path, errp);
    if (ret < 0)
        goto out_free;
    if (!d->be_path) {
        reject(d, "frontend %s has no 'backend' key", d->fe_path);
        goto out_free;
    }
    if (strcmp(d->be_path, want_vbd) && strcmp(d->be_path, want_qdisk)) {
        reject(d, "frontend %s names backend %s, expected %s or %s",
               d->fe_path, d->be_path, want_vbd, want_qdisk);
        goto out_free;
    }
    ret = read_key(xs, d->be_path, "frontend", &befe, errp);
    if (ret < 0)
        goto out_free;
    if (!befe || strcmp(befe, d->fe_path)) {
        reject(d, "backend %s points to frontend %s, not %s", d->be_path,
               befe ? befe : "(none)", d->fe_path);
        goto out_free;
    }
    ret = read_key(xs, d->be_path, "frontend-id", &feid, errp);
    if (ret < 0)
        goto out_free;
    if (feid && atoi(feid) != domid) {
        reject(d, "backend %s has frontend-id %s, not %d", d->be_path, feid, domid);
        goto out_free;
    }
    d->linked = true;
out_free:
    free(befe);
    free(feid);
    free(want_vbd);
    free(want_qdisk);
    return ret;
}

/*
 * Trust: the frontend directory belongs to the guest (n<domid>), the backend
 * to dom0. So everything that decides access — mode, params, dev, format,
 * specification — is read from the backend, and the frontend is believed
 * only when the backend points back at it. The frontend's device-type is a
 * fallback that can only make a disk a (read-only) CD-ROM.
 */
int xen_disk_cfg_read(struct xs_handle *xs, int domid, const char *devid_name,
                      struct xen_disk_cfg *d, struct error **errp)
{
    char *devtype = NULL, *spec_name = NULL, *fmt_key = NULL, *discard = NULL;
    char *format = NULL, *path = NULL;
    struct error *perr = NULL;
    enum disk_access access;
    int disk, part, vdevid, ret;
    bool virtio, cdrom;
    char *end;
    long v;

    memset(d, 0, sizeof(*d));
    disk_spec_init(&d->spec);
    d->kind = XEN_DISK_EMULATED;
    errno = 0;
    v = strtol(devid_name, &end, 10);
    if (errno || *end || end == devid_name || v < 0 || v > INT_MAX) {
        d->devid = -1;
        if (asprintf(&d->fe_path, "/local/domain/%d/device/vbd/%s", domid,
                     devid_name) < 0)
            abort();
        reject(d, "vbd entry '%s' is not a device number", devid_name);
        return 0;
    }
    d->devid = (int)v;
    d->fe_path = xen_frontend_path(domid, d->devid);

    ret = check_link(xs, domid, d, errp);
    if (ret < 0 || d->kind == XEN_DISK_REJECTED)
        return ret;

    if ((ret = read_key(xs, d->be_path, "dev", &d->vdev, errp)) < 0 ||
        (ret = read_key(xs, d->be_path, "mode", &d->mode, errp)) < 0 ||
        (ret = read_key(xs, d->be_path, "params", &d->params, errp)) < 0 ||
        (ret = read_key(xs, d->be_path, "device-type", &devtype, errp)) < 0 ||
        (ret = read_key(xs, d->be_path, "specification", &spec_name, errp)) < 0 ||
        (ret = read_key(xs, d->be_path, "format", &fmt_key, errp)) < 0 ||
        (ret = read_key(xs, d->be_path, "discard-enable", &discard, errp)) < 0)
        goto out_free;
    if (!devtype && (ret = read_key(xs, d->fe_path, "device-type", &devtype, errp)) < 0)
        goto out_free;

    if (!d->vdev) {
        reject(d, "backend %s has no 'dev' key", d->be_path);
        goto out_free;
    }
    vdevid = xen_vdev_devid(d->vdev, &disk, &part);
    if (vdevid < 0) {
        reject(d, "Invalid or unsupported virtual disk identifier %s", d->vdev);
        goto out_free;
    }
    if (vdevid != d->devid) {
        reject(d, "vbd %d has dev %s, whose device number is %d", d->devid,
               d->vdev, vdevid);
        goto out_free;
    }
    if (!devtype || !strcmp(devtype, "disk")) {
        cdrom = false;
    } else if (!strcmp(devtype, "cdrom")) {
        cdrom = true;
    } else {
        reject(d, "unknown device-type '%s'", devtype);
        goto out_free;
    }
    if (spec_name && strcmp(spec_name, "xen") && strcmp(spec_name, "virtio")) {
        reject(d, "unknown specification '%s'", spec_name);
        goto out_free;
    }
    virtio = !strncmp(d->vdev, "vd", 2) || (spec_name && !strcmp(spec_name, "virtio"));
    if (!virtio && strncmp(d->vdev, "hd", 2)) {
        /* xvd and sd without virtio are for a PV backend, not emulated. */
        d->kind = XEN_DISK_PV_ONLY;
        goto out_free;
    }
    if (part != 0 && part != -1) {
        reject(d, "dev %s names a partition; only whole disks are emulated", d->vdev);
        goto out_free;
    }
    if (virtio && cdrom) {
        reject(d, "%s: a CD-ROM cannot be a virtio disk", d->vdev);
        goto out_free;
    }

    if (xen_parse_mode(d->mode, &access, &d->no_locking, &perr) < 0) {
        reject(d, "%s", perr->msg);
        error_free(perr);
        goto out_free;
    }
    if (!d->params && !cdrom) {
        reject(d, "backend %s has no 'params' key", d->be_path);
        goto out_free;
    }
    if (xen_parse_params(d->params ? d->params : "", &format, &path, &perr) < 0) {
        reject(d, "%s", perr->msg);
        error_free(perr);
        goto out_free;
    }
    if (!*path && !cdrom) {
        reject(d, "%s: a hard disk needs an image (params is empty)", d->vdev);
        goto out_free;
    }
    if (!format && fmt_key && *fmt_key)
        format = strdup(!strcmp(fmt_key, "aio") ? "raw" : fmt_key);
    if (!format)
        format = strdup("raw");     /* libxl's default; never probe */

    d->spec.iface = virtio ? DISK_IF_VIRTIO : DISK_IF_IDE;
    d->spec.index = virtio ? -1 : disk;
    d->spec.media = cdrom ? DISK_MEDIA_CDROM : DISK_MEDIA_DISK;
    /* CD media is read-only whatever the mode says. */
    d->spec.access = cdrom ? DISK_ACCESS_RO_FORCED : access;
    d->spec.file = *path ? path : NULL;
    if (!*path)
        free(path);
    path = NULL;
    d->spec.format = format;
    format = NULL;
    /* libxl's discard-enable: guest discards reach the image */
    if (discard && !strcmp(discard, "1"))
        d->spec.discard = DISCARD_UNMAP;
    if (asprintf(&d->spec.id, "vbd%d", d->devid) < 0)
        abort();
    if (disk_spec_resolve(&d->spec, &perr) < 0) {
        reject(d, "%s: %s", d->vdev, perr->msg);
        error_free(perr);
    }
out_free:
    free(devtype);
    free(spec_name);
    free(fmt_key);
    free(discard);
    free(format);
    free(path);
    return ret;
}

void xen_disk_cfg_free(struct xen_disk_cfg *d)
{
    free(d->fe_path);
    free(d->be_path);
    free(d->vdev);
    free(d->error);
    free(d->mode);
    free(d->params);
    disk_spec_free(&d->spec);
    memset(d, 0, sizeof(*d));
}

static int cmp_devid(const void *a, const void *b)
{
    const struct xen_disk_cfg *x = a, *y = b;

    return (x->devid > y->devid) - (x->devid < y->devid);
}

int xen_disks_read(struct xs_handle *xs, int domid, struct xen_disk_cfg **disks,
                   size_t *n, struct error **errp)
{
    char dir[64];
    char **ents;
    unsigned num = 0;
    struct xen_disk_cfg *out;
    int ret = 0;

    *disks = NULL;
    *n = 0;
    snprintf(dir, sizeof(dir), "/local/domain/%d/device/vbd", domid);
    ents = xs_directory(xs, XBT_NULL, dir, &num);
    if (!ents) {
        if (errno == ENOENT)
            return 0;
        error_setg_errno(errp, errno, "xenstore directory %s", dir);
        return -errno;
    }
    out = calloc(num ? num : 1, sizeof(*out));
    if (!out)
        abort();
    for (unsigned i = 0; i < num; i++) {
        ret = xen_disk_cfg_read(xs, domid, ents[i], &out[i], errp);
        if (ret < 0) {
            for (unsigned j = 0; j <= i; j++)
                xen_disk_cfg_free(&out[j]);
            free(out);
            free(ents);
            return ret;
        }
    }
    free(ents);
    qsort(out, num, sizeof(*out), cmp_devid);
    *disks = out;
    *n = num;
    return 0;
}
