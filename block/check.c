/*
 * block/check.c — bdrv_check, the entry point of qemu-img-style
 * consistency checks: the checking layer's rules (fixing needs a writable
 * node, one error rule) in front of the format driver's check.
 */
#include "block/block-int.h"

#include <errno.h>
#include <string.h>

int bdrv_check(struct bdrv_node *bs, struct bdrv_check_result *res, unsigned fix,
               struct error **errp)
{
    memset(res, 0, sizeof(*res));
    if (!bs || !bs->drv) {
        error_setg(errp, "No medium");
        return -ENOMEDIUM;
    }
    if (!bs->drv->check) {
        error_setg(errp, "This image format does not support checks");
        return -ENOTSUP;
    }
    if ((fix & (BDRV_FIX_LEAKS | BDRV_FIX_ERRORS)) && bs->read_only) {
        error_setg(errp, "Cannot repair '%s': Block node is read-only", bs->filename);
        return -EPERM;
    }
    struct error *err = NULL;
    int ret = bs->drv->check(bs, res, fix, &err);
    if (ret < 0 && !err) {
        error_setg_errno(&err, -ret, "Could not check '%s'", bs->filename);
    }
    if (ret >= 0 && err) {
        error_free(err);
        err = NULL;
    }
    error_propagate(errp, err);
    return ret;
}
