/*
 * block/backend-resize.c — growing a backend's medium while a guest runs
 * (a toolstack's block-resize): checks, drain, truncate through the node
 * graph, then the device hears of the new size through dev_ops->resized.
 */
#include "block/block.h"

#include <errno.h>
#include <inttypes.h>

int blk_truncate(struct blk_backend *blk, uint64_t size, struct error **errp)
{
    struct bdrv_node *bs = blk_root(blk);
    int64_t len;
    int ret;

    if (!bs || !blk_is_inserted(blk)) {
        error_setg(errp, "No medium");
        return -ENOMEDIUM;
    }
    /* Growing an image is a write to it: a read-only disk never grows. */
    if (blk_is_read_only(blk)) {
        error_setg(errp, "Image is read-only");
        return -EACCES;
    }
    if (size % BDRV_SECTOR_SIZE) {
        error_setg(errp, "New size %" PRIu64 " is not a multiple of %d bytes",
                   size, BDRV_SECTOR_SIZE);
        return -EINVAL;
    }
    len = blk_getlength(blk);
    if (len < 0) {
        error_setg_errno(errp, (int)-len, "Cannot get the image size");
        return (int)len;
    }
    if (size < (uint64_t)len) {
        error_setg(errp, "Shrinking a disk in use is not supported "
                   "(%" PRIu64 " bytes is less than the current %" PRId64 ")",
                   size, len);
        return -EINVAL;
    }
    if (size == (uint64_t)len)
        return 0;
    blk_drain(blk);
    ret = bdrv_truncate(bs, size, errp);
    if (ret < 0)
        return ret;
    blk_dev_resized(blk);
    return 0;
}
