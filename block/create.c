/*
 * block/create.c — image creation: finds the format driver and lets it
 * make the file (raw and qcow2 create their protocol file through the
 * file driver).
 */
#include "block/block-int.h"

#include <errno.h>

int bdrv_create(const char *format, const char *filename,
                const struct bdrv_create_opts *opts, struct error **errp)
{
    const struct bdrv_ops *drv = bdrv_find_driver(format);
    if (!drv) {
        error_setg(errp, "Unknown file format '%s'", format);
        return -ENOTSUP;
    }
    if (!drv->create) {
        error_setg(errp, "Format driver '%s' does not support image creation", format);
        return -ENOTSUP;
    }
    struct error *err = NULL;
    int ret = drv->create(filename, opts, &err);
    if (ret < 0 && !err) {
        error_setg_errno(&err, -ret, "Could not create '%s'", filename);
    }
    /* One error rule per layer: a message exactly when it failed. */
    if (ret >= 0 && err) {
        error_free(err);
        err = NULL;
    }
    error_propagate(errp, err);
    return ret;
}
