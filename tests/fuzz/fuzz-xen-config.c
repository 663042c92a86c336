/*
 * tests/fuzz/fuzz-xen-config.c — xen/'s parsers of untrusted text: xl disk
 * specs (split at NUL bytes into the parts xl joins), backend `params` and
 * `mode`, and vdev names. Every input must parse or fail with a message;
 * a parsed spec must name a vdev and have a known format.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xen/xen.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    const char *parts[16];
    int nparts = 0;
    struct error *err = NULL;
    struct xen_xl_disk disk;
    char *fmt, *path;
    enum disk_access access;
    bool nolock;

    memcpy(buf, data, size);
    buf[size] = 0;
    for (size_t i = 0; i <= size && nparts < 16;) {
        parts[nparts++] = buf + i;
        i += strlen(buf + i) + 1;
    }

    if (xen_xl_disk_parse(parts, nparts, "fuzz", &disk, &err) == 0) {
        if (!err && disk.vdev && disk.format)
            xen_vdev_devid(disk.vdev, NULL, NULL);
        else
            abort();
        xen_xl_disk_free(&disk);
    } else if (!err || !err->msg) {
        abort();
    }
    error_free(err);
    err = NULL;

    if (xen_parse_params(buf, &fmt, &path, &err) == 0) {
        if (!path)
            abort();
        free(fmt);
        free(path);
    } else if (!err) {
        abort();
    }
    error_free(err);
    err = NULL;

    if (xen_parse_mode(buf, &access, &nolock, &err) == 0) {
        if (access != DISK_ACCESS_RW && access != DISK_ACCESS_RO_FORCED)
            abort();
    } else if (!err) {
        abort();
    }
    error_free(err);

    int disk_no, part;
    int devid = xen_vdev_devid(buf, &disk_no, &part);
    if (devid < 0 && devid != -EINVAL)
        abort();
    free(buf);
    return 0;
}
