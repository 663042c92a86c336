/*
 * tools/vhost/vhost.h — diskdm-vhost's pieces: main.c (options, sockets,
 * control commands) and xen.c (a disk from xenstore with --domid, and its
 * `mode` followed while the guest runs).
 */
#ifndef DISKDM_TOOLS_VHOST_H
#define DISKDM_TOOLS_VHOST_H

#include "block/block.h"

struct vhost_xen;

/*
 * Find vbd `vdev` of domain `domid` (NULL: its first emulated disk), open
 * it as its `mode` says (r: O_RDONLY but not forced, so a later w reopens
 * it), and watch `mode`: w makes the backend read-write, r read-only,
 * anything else read-only (never writable by default).
 */
struct vhost_xen *vhost_xen_open(struct event_loop *loop, int domid,
                                 const char *vdev, struct error **errp);
struct blk_backend *vhost_xen_blk(struct vhost_xen *x);
const char *vhost_xen_serial(struct vhost_xen *x);
/* Unwatches and frees the backend (after the device let go of it). */
void vhost_xen_free(struct vhost_xen *x);

#endif
