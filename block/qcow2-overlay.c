/*
 * block/qcow2-overlay.c — snapshot=on: the image, already open like a
 * backing file (read-only, auto-read-only off), gets a temporary qcow2
 * overlay that takes every write. The overlay file lives in $TMPDIR
 * (/var/tmp when that is /tmp or unset) and is unlinked as soon as it is
 * open, so nothing is left behind however the process ends.
 */
#include "block/qcow2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct bdrv_node *bdrv_open_temp_overlay(struct bdrv_node *image,
                                         struct error **errp)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir || !strcmp(dir, "/tmp")) {
        dir = "/var/tmp";
    }
    char *path = NULL;
    if (asprintf(&path, "%s/vl.XXXXXX", dir) < 0) {
        error_setg(errp, "Out of memory");
        return NULL;
    }
    int fd = mkstemp(path);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Could not create temporary overlay '%s'", path);
        free(path);
        return NULL;
    }
    close(fd);

    struct bdrv_node *ov = NULL;
    int64_t len = bdrv_getlength(image);
    if (len < 0) {
        error_setg_errno(errp, (int)-len, "Could not get the size of '%s'",
                         image->filename);
        goto out_unlink;
    }
    /* No backing name in the overlay: the open image node is attached
     * directly, so the name could neither go stale nor be too long. */
    struct bdrv_create_opts co = { .size = ROUND_UP((uint64_t)len, BDRV_SECTOR_SIZE) };
    if (bdrv_create("qcow2", path, &co, errp) < 0) {
        goto out_unlink;
    }
    struct bdrv_open_opts o;
    bdrv_open_opts_init(&o);
    o.driver = strdup("qcow2");
    o.filename = strdup(path);
    o.read_only = (struct opt_bool){ true, false };
    o.auto_read_only = (struct opt_bool){ true, false };
    o.cache = CACHE_UNSAFE;     /* a throw-away file: flushes buy nothing */
    o.no_backing = true;
    if (!o.driver || !o.filename) {
        error_setg(errp, "Out of memory");
    } else {
        ov = bdrv_open(&o, errp);
    }
    bdrv_open_opts_free(&o);
    if (ov) {
        bdrv_ref(image);
        ov->backing = image;
        image->parent = ov;
        image->role = BDRV_CHILD_BACKING;
    }

out_unlink:
    unlink(path);
    free(path);
    return ov;
}
