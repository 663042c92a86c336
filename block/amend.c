/*
 * block/amend.c — in-place changes to an image's format metadata
 * (qemu-img rebase's backing-file rewrite, qemu-img amend, info's format
 * facts, compressed cluster writes): the checking layer's rules in front
 * of the driver's handler.
 */
#include "block/block-int.h"

#include <errno.h>
#include <string.h>

static bool is_qcow2(const struct bdrv_node *bs)
{
    return bs->drv == &bdrv_qcow2_ops;
}

/* One error rule per layer: a message exactly when it failed. */
static int finish(int ret, struct error *err, struct bdrv_node *bs, const char *what,
                  struct error **errp)
{
    if (ret < 0 && !err) {
        error_setg_errno(&err, -ret, "Could not %s '%s'", what, bs->filename);
    }
    if (ret >= 0 && err) {
        error_free(err);
        err = NULL;
    }
    error_propagate(errp, err);
    return ret;
}

int bdrv_change_backing_file(struct bdrv_node *bs, const char *backing_file,
                             const char *backing_fmt, struct error **errp)
{
    if (!bs || !bs->drv) {
        error_setg(errp, "No medium");
        return -ENOMEDIUM;
    }
    if (bs->read_only) {
        error_setg(errp, "Cannot change the backing file of '%s': Block node is read-only",
                   bs->filename);
        return -EPERM;
    }
    struct error *err = NULL;
    int ret;
    if (bs->drv->change_backing_file) {
        ret = bs->drv->change_backing_file(bs, backing_file, backing_fmt, &err);
    } else {
        error_setg(&err, "Format driver '%s' does not support backing files",
                   bs->drv->name);
        ret = -ENOTSUP;
    }
    return finish(ret, err, bs, "change the backing file of", errp);
}

int bdrv_amend(struct bdrv_node *bs, const struct bdrv_amend_opts *opts,
               struct error **errp)
{
    if (!bs || !bs->drv) {
        error_setg(errp, "No medium");
        return -ENOMEDIUM;
    }
    if (!bs->drv->amend) {
        error_setg(errp, "Format driver '%s' does not support option amendment",
                   bs->drv->name);
        return -ENOTSUP;
    }
    if (bs->read_only) {
        error_setg(errp, "Cannot amend '%s': Block node is read-only", bs->filename);
        return -EPERM;
    }
    struct error *err = NULL;
    int ret = bs->drv->amend(bs, opts, &err);
    return finish(ret, err, bs, "amend", errp);
}

void bdrv_get_qcow2_info(struct bdrv_node *bs, struct bdrv_qcow2_info *qi)
{
    memset(qi, 0, sizeof(*qi));
    if (bs && is_qcow2(bs)) {
        qcow2_get_format_info(bs, qi);
    }
}

int bdrv_write_compressed(struct bdrv_node *bs, uint64_t offset, const void *buf,
                          uint64_t bytes)
{
    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    if (bs->read_only) {
        return -EPERM;
    }
    if (!is_qcow2(bs)) {
        return -ENOTSUP;
    }
    if (bytes == 0 || offset > bs->total_size || bytes > bs->total_size - offset) {
        return -EINVAL;
    }
    int ret = qcow2_write_compressed(bs, offset, buf, bytes);
    if (ret == 0) {
        __atomic_add_fetch(&bs->stats.wr_ops, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&bs->stats.wr_bytes, bytes, __ATOMIC_RELAXED);
    }
    return ret;
}
