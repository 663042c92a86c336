/*
 * block/commit.c — commit: copy what the layers above a base image hold
 * into the base (qemu-img commit, and later live commit in the device
 * model). The base is reopened read-write only for the copy and put back
 * read-only afterwards, whether the copy worked or not.
 */
#include "block/block-int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#define COMMIT_CHUNK (1u << 20)

/* Depth of `base` below `top`, or -1 when it is not in top's chain. */
static int chain_depth(struct bdrv_node *top, struct bdrv_node *base)
{
    int d = 0;
    for (struct bdrv_node *n = top; n; n = n->backing, d++) {
        if (n == base) {
            return d;
        }
    }
    return -1;
}

/* Copy every run allocated above base (depth < base_depth) into base. */
static int copy_above(struct bdrv_node *top, struct bdrv_node *base, int base_depth,
                      uint64_t len, void (*progress)(void *, uint64_t, uint64_t),
                      void *opaque, uint8_t *buf)
{
    uint64_t off = 0;
    while (off < len) {
        uint64_t pnum = 0, map;
        int depth;
        int st = bdrv_block_status(top, off, MIN(len - off, COMMIT_CHUNK), &pnum,
                                   &map, &depth);
        if (st < 0) {
            return st;
        }
        if (pnum == 0) {
            return -EIO;
        }
        int ret = 0;
        if (depth >= 0 && depth < base_depth) {
            if ((st & BDRV_BLOCK_ZERO) && !(st & BDRV_BLOCK_DATA)) {
                ret = bdrv_pwrite_zeroes(base, off, pnum, 0);
            } else {
                ret = bdrv_pread(top, off, buf, pnum);
                if (ret == 0) {
                    ret = bdrv_pwrite(base, off, buf, pnum, 0);
                }
            }
        }
        if (ret < 0) {
            return ret;
        }
        off += pnum;
        if (progress) {
            progress(opaque, off, len);
        }
    }
    return 0;
}

int bdrv_commit(struct bdrv_node *top, struct bdrv_node *base, bool empty_top,
                void (*progress)(void *, uint64_t, uint64_t), void *opaque,
                struct error **errp)
{
    if (!top->backing) {
        error_setg(errp, "'%s' has no backing file to commit into", top->filename);
        return -EINVAL;
    }
    if (!base) {
        base = top->backing;
    }
    int base_depth = chain_depth(top, base);
    if (base_depth <= 0) {
        error_setg(errp, "'%s' is not in the backing chain of '%s'", base->filename,
                   top->filename);
        return -EINVAL;
    }
    if (empty_top && top->read_only) {
        error_setg(errp, "Cannot empty '%s': Block node is read-only", top->filename);
        return -EPERM;
    }
    if (empty_top && !top->drv->make_empty) {
        error_setg(errp, "Format '%s' cannot be emptied", top->drv->name);
        return -ENOTSUP;
    }
    int64_t len = bdrv_getlength(top), blen = bdrv_getlength(base);
    if (len < 0 || blen < 0) {
        int r = len < 0 ? (int)len : (int)blen;
        error_setg_errno(errp, -r, "Could not get the image sizes");
        return r;
    }
    uint8_t *buf = malloc(COMMIT_CHUNK);
    if (!buf) {
        error_setg(errp, "Out of memory");
        return -ENOMEM;
    }

    /* Refused (forced read-only, not writable): nothing has changed. */
    bool was_ro = base->read_only;
    int ret = 0;
    if (was_ro) {
        ret = bdrv_reopen_read_only(base, false, errp);
        if (ret < 0) {
            free(buf);
            return ret;
        }
    }
    if ((uint64_t)blen < (uint64_t)len) {
        ret = bdrv_truncate(base, (uint64_t)len, errp);
        if (ret < 0) {
            error_prepend(errp, "Could not resize '%s'", base->filename);
            goto out_reopen;
        }
    }
    ret = copy_above(top, base, base_depth, (uint64_t)len, progress, opaque, buf);
    if (ret == 0) {
        ret = bdrv_flush(base);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not commit '%s' into '%s'", top->filename,
                         base->filename);
        goto out_reopen;
    }
    if (empty_top) {
        ret = top->drv->make_empty(top);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not empty '%s'", top->filename);
        }
    }

out_reopen:
    if (was_ro) {
        struct error *err = NULL;
        int r = bdrv_reopen_read_only(base, true, &err);
        if (r < 0 && ret == 0) {
            ret = r;
            error_propagate(errp, err);
        } else {
            error_free(err);
        }
    }
    free(buf);
    return ret;
}
