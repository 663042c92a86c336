/*
 * block/snapshot.c — internal snapshots (qemu-img snapshot): the checking
 * layer in front of the format driver's snapshot handlers.
 */
#include "block/block-int.h"

#include <errno.h>
#include <stdlib.h>

enum snap_op { SNAP_CREATE, SNAP_APPLY, SNAP_DELETE };

static int snapshot_op(struct bdrv_node *bs, enum snap_op op, const char *name,
                       struct error **errp)
{
    static const char *const what[] = { "create", "apply", "delete" };
    if (!bs || !bs->drv) {
        error_setg(errp, "No medium");
        return -ENOMEDIUM;
    }
    if (!name || !name[0]) {
        error_setg(errp, "Could not %s snapshot: no name given", what[op]);
        return -EINVAL;
    }
    if (bs->read_only) {
        error_setg(errp, "Could not %s snapshot '%s': '%s' is read-only", what[op], name,
                   bs->filename);
        return -EACCES;
    }
    int (*fn)(struct bdrv_node *, const char *, struct error **) =
        op == SNAP_CREATE ? bs->drv->snapshot_create :
        op == SNAP_APPLY ? bs->drv->snapshot_apply : bs->drv->snapshot_delete;
    if (!fn) {
        error_setg(errp, "Could not %s snapshot '%s': format '%s' has no internal snapshots",
                   what[op], name, bs->drv->name);
        return -ENOTSUP;
    }
    struct error *err = NULL;
    int ret = fn(bs, name, &err);
    if (ret < 0 && !err) {
        error_setg_errno(&err, -ret, "Could not %s snapshot '%s'", what[op], name);
    }
    if (ret >= 0 && err) {
        error_free(err);
        err = NULL;
    }
    error_propagate(errp, err);
    return ret;
}

int bdrv_snapshot_list(struct bdrv_node *bs, struct bdrv_snapshot **list,
                       struct error **errp)
{
    *list = NULL;
    if (!bs || !bs->drv) {
        error_setg(errp, "No medium");
        return -ENOMEDIUM;
    }
    if (!bs->drv->snapshot_list) {
        return 0;       /* as qemu-img: a format without snapshots lists none */
    }
    struct error *err = NULL;
    int ret = bs->drv->snapshot_list(bs, list, &err);
    if (ret < 0 && !err) {
        error_setg_errno(&err, -ret, "Could not list the snapshots of '%s'", bs->filename);
    }
    if (ret >= 0 && err) {
        error_free(err);
        err = NULL;
    }
    error_propagate(errp, err);
    return ret;
}

void bdrv_snapshot_list_free(struct bdrv_snapshot *list, int n)
{
    for (int i = 0; i < n; i++) {
        free(list[i].id);
        free(list[i].name);
    }
    free(list);
}

int bdrv_snapshot_create(struct bdrv_node *bs, const char *name, struct error **errp)
{
    return snapshot_op(bs, SNAP_CREATE, name, errp);
}

int bdrv_snapshot_apply(struct bdrv_node *bs, const char *name, struct error **errp)
{
    return snapshot_op(bs, SNAP_APPLY, name, errp);
}

int bdrv_snapshot_delete(struct bdrv_node *bs, const char *name, struct error **errp)
{
    return snapshot_op(bs, SNAP_DELETE, name, errp);
}
