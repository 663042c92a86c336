/*
 * xen/dm-state.c — what the device model tells the toolstack through
 * xenstore: its own state (libxl waits for "running") and, per disk, the
 * hotplug-status / hotplug-error pair libxl's hotplug scripts use.
 */
#include "xen/xen.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <xenstore.h>

static int write_str(struct xs_handle *xs, xs_transaction_t t, const char *dir,
                     const char *key, const char *val)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    if (!xs_write(xs, t, path, val, strlen(val)))
        return -errno;
    return 0;
}

/*
 * Both keys in one transaction, so a toolstack watching `state` sees the
 * message as soon as it sees "error". Retried on EAGAIN like every client.
 */
static int write_pair(struct xs_handle *xs, const char *dir, const char *k1,
                      const char *v1, const char *k2, const char *v2)
{
    for (int tries = 0; tries < 16; tries++) {
        xs_transaction_t t = xs_transaction_start(xs);
        int ret;

        if (t == XBT_NULL)
            return -errno;
        /* the message first: whoever watches the first key reads both */
        ret = k2 ? write_str(xs, t, dir, k2, v2) : 0;
        if (!ret)
            ret = write_str(xs, t, dir, k1, v1);
        if (ret < 0) {
            xs_transaction_end(xs, t, true);
            return ret;
        }
        if (xs_transaction_end(xs, t, false))
            return 0;
        if (errno != EAGAIN)
            return -errno;
    }
    return -EAGAIN;
}

int xen_dm_write_state(struct xs_handle *xs, int domid, const char *state,
                       const char *message)
{
    char dir[64];

    snprintf(dir, sizeof(dir), "/local/domain/0/device-model/%d", domid);
    return write_pair(xs, dir, "state", state, message ? "error" : NULL, message);
}

int xen_disk_write_error(struct xs_handle *xs, const char *be_path,
                         const char *message)
{
    return write_pair(xs, be_path, "hotplug-status", "error", "hotplug-error",
                      message);
}
