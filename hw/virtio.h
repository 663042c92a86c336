/*
 * hw/virtio.h — virtio-blk inside hw/, private to the folder: split
 * virtqueues (hw/virtio-ring.c), the block request path that walks them
 * (hw/virtio-blk-req.c), and the PCI transport (hw/virtio-pci.c). The ring
 * and request code know nothing of PCI: a transport hands them guest memory
 * through struct virtio_mem and is told about interrupts through
 * struct vblk_transport_ops, so another transport can drive the same path.
 */
#ifndef DISKDM_HW_VIRTIO_H
#define DISKDM_HW_VIRTIO_H

#include "block/block.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

/* Feature bits (virtio 1.1, 5.2.3 and 6). */
#define VIRTIO_BLK_F_SIZE_MAX       1
#define VIRTIO_BLK_F_SEG_MAX        2
#define VIRTIO_BLK_F_RO             5
#define VIRTIO_BLK_F_BLK_SIZE       6
#define VIRTIO_BLK_F_FLUSH          9
#define VIRTIO_BLK_F_TOPOLOGY       10
#define VIRTIO_BLK_F_CONFIG_WCE     11
#define VIRTIO_BLK_F_MQ             12
#define VIRTIO_BLK_F_DISCARD        13
#define VIRTIO_BLK_F_WRITE_ZEROES   14
#define VIRTIO_F_ANY_LAYOUT         27
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX     29
#define VIRTIO_F_VERSION_1          32

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE   0x01
#define VIRTIO_STATUS_DRIVER        0x02
#define VIRTIO_STATUS_DRIVER_OK     0x04
#define VIRTIO_STATUS_FEATURES_OK   0x08
#define VIRTIO_STATUS_NEEDS_RESET   0x40
#define VIRTIO_STATUS_FAILED        0x80

#define VIRTIO_NO_VECTOR            0xffff
/* Largest ring the device accepts, and the size it reports. */
#define VIRTQ_MAX_SIZE              1024
#define VIRTQ_DEFAULT_SIZE          256
#define VBLK_MAX_QUEUES             16

/*
 * Guest memory as the ring code sees it: `map` returns a host pointer to
 * [gpa, gpa+len) when all of it is guest RAM in one piece, else NULL. The
 * pointer stays valid while the device lives. Nothing else is ever touched.
 */
struct virtio_mem {
    void *(*map)(void *opaque, uint64_t gpa, size_t len);
    void *opaque;
};

/* ------------------------------------------------------------------ */
/* Split virtqueue (hw/virtio-ring.c)                                  */
/* ------------------------------------------------------------------ */

struct virtqueue {
    /* Set by the transport while the driver sets the queue up. */
    uint16_t num;               /* entries; a power of two <= VIRTQ_MAX_SIZE */
    uint64_t desc, avail, used; /* guest-physical ring addresses */
    bool ready;                 /* legacy PFN written / modern queue_enable */
    uint16_t vector;            /* MSI-X vector (transport's business) */
    /* Ring state, owned by hw/virtio-ring.c. */
    bool event_idx;             /* VIRTIO_RING_F_EVENT_IDX negotiated */
    bool indirect;              /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
    uint16_t last_avail;        /* next avail->ring slot to take (what a
                                 * vhost-user SET/GET_VRING_BASE moves) */
    uint16_t used_idx;          /* our copy of used->idx */
    uint16_t signalled_used;    /* used->idx at the last notification */
    bool signalled_valid;
    unsigned inflight;          /* taken, not yet pushed */
};

/* One request taken from the ring: descriptor-chain head and the buffers,
 * driver-readable ones (out) first, then device-writable ones (in). */
struct vq_elem {
    uint16_t head;
    unsigned out_num, in_num;
    size_t out_len, in_len;
    struct iovec *iov;          /* out_num + in_num entries */
    unsigned iov_cap;
};

/* Back to the power-on state (keeps nothing of the old setup). */
void vq_reset(struct virtqueue *vq);
/* Whether the queue can be used: ready, sized and its rings in RAM. */
bool vq_usable(const struct virtqueue *vq, const struct virtio_mem *mem);
/*
 * Take the next available chain into *e (growing e->iov as needed).
 * 1: got one; 0: ring empty; -EIO: the driver broke the ring (index past
 * the queue size, a loop, a chain longer than the queue, a buffer outside
 * RAM, nested indirect tables, a readable buffer after a writable one):
 * the device must ask for a reset. -ENOMEM: try later.
 */
int vq_pop(struct virtqueue *vq, const struct virtio_mem *mem,
           struct vq_elem *e);
/* Put `head` in the used ring with `len` bytes written. */
int vq_push(struct virtqueue *vq, const struct virtio_mem *mem, uint16_t head,
            uint32_t len);
/* After pushes: whether the driver wants an interrupt now (EVENT_IDX
 * used_event, or avail->flags NO_INTERRUPT). */
bool vq_need_notify(struct virtqueue *vq, const struct virtio_mem *mem);
/* With EVENT_IDX: tell the driver to kick at the next new entry. */
void vq_update_avail_event(struct virtqueue *vq, const struct virtio_mem *mem);
void vq_elem_free(struct vq_elem *e);

/* ------------------------------------------------------------------ */
/* virtio-blk request path (hw/virtio-blk-req.c)                       */
/* ------------------------------------------------------------------ */

#define VIRTIO_BLK_T_IN             0
#define VIRTIO_BLK_T_OUT            1
#define VIRTIO_BLK_T_FLUSH          4
#define VIRTIO_BLK_T_GET_ID         8
#define VIRTIO_BLK_T_DISCARD        11
#define VIRTIO_BLK_T_WRITE_ZEROES   13
#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1

#define VIRTIO_BLK_S_OK             0
#define VIRTIO_BLK_S_IOERR          1
#define VIRTIO_BLK_S_UNSUPP         2

#define VIRTIO_BLK_ID_BYTES         20
/* Bytes of struct virtio_blk_config up to write_zeroes_may_unmap. */
#define VBLK_CONFIG_SIZE            57

struct vblk;

/* What the request path asks of its transport (all on the loop thread). */
struct vblk_transport_ops {
    /* Queue `q` has new used entries and the driver wants to hear of it. */
    void (*notify_queue)(void *opaque, unsigned q);
    /* The config space changed (capacity, read-only): config interrupt. */
    void (*notify_config)(void *opaque);
    /* The driver broke a ring: set DEVICE_NEEDS_RESET and tell it. */
    void (*needs_reset)(void *opaque);
};

struct vblk_config {
    struct blk_backend *blk;    /* not owned */
    const char *serial;         /* GET_ID; NULL = empty */
    unsigned num_queues;        /* 1..VBLK_MAX_QUEUES */
    const struct virtio_mem *mem;
    const struct vblk_transport_ops *ops;
    void *opaque;
};

struct vblk *vblk_new(struct event_loop *loop, const struct vblk_config *cfg,
                      struct error **errp);
/* Waits for the requests in flight, then frees. */
void vblk_free(struct vblk *s);
/*
 * Device reset: queues back to power-on, negotiated features cleared.
 * Requests still in flight finish in the backend, but their completions
 * touch neither guest memory nor the (new) rings.
 */
void vblk_reset(struct vblk *s);

/* Features the device offers now (RO follows the backend). */
uint64_t vblk_host_features(struct vblk *s);
void vblk_set_guest_features(struct vblk *s, uint64_t features);
uint64_t vblk_guest_features(const struct vblk *s);
unsigned vblk_num_queues(const struct vblk *s);
struct virtqueue *vblk_queue(struct vblk *s, unsigned q);
/* The driver set DRIVER_OK / (re)enabled a queue: look at the rings. */
void vblk_start(struct vblk *s);
/* The driver did something no device state can follow (a queue size that
 * is not a power of two): stop until reset, DEVICE_NEEDS_RESET. */
void vblk_needs_reset(struct vblk *s);
/* Queue notification (kick): take and submit everything available. */
void vblk_kick(struct vblk *s, unsigned q);

/* Device config space, little endian. Reads past the end give ~0. */
uint32_t vblk_config_read(struct vblk *s, unsigned off, unsigned size);
void vblk_config_write(struct vblk *s, unsigned off, unsigned size,
                       uint32_t val);

/* Requests in flight (submitted, not completed), over all queues. */
unsigned vblk_inflight(const struct vblk *s);

#endif
