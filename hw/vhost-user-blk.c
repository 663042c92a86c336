/*
 * hw/vhost-user-blk.c — virtio-blk as a vhost-user back end: the front end
 * (QEMU's vhost-user-blk-pci) hands us guest RAM as memfd regions and the
 * queues as kick/call eventfds over a Unix socket; the rings and requests
 * are walked by the same code as the PCI device (hw/virtio-blk-req.c).
 */
#include "hw/hw.h"
#include "hw/virtio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Message types (vhost-user specification, "Front-end message types"). */
enum {
    VU_GET_FEATURES = 1, VU_SET_FEATURES = 2, VU_SET_OWNER = 3,
    VU_RESET_OWNER = 4, VU_SET_MEM_TABLE = 5, VU_SET_LOG_BASE = 6,
    VU_SET_LOG_FD = 7, VU_SET_VRING_NUM = 8, VU_SET_VRING_ADDR = 9,
    VU_SET_VRING_BASE = 10, VU_GET_VRING_BASE = 11, VU_SET_VRING_KICK = 12,
    VU_SET_VRING_CALL = 13, VU_SET_VRING_ERR = 14,
    VU_GET_PROTOCOL_FEATURES = 15, VU_SET_PROTOCOL_FEATURES = 16,
    VU_GET_QUEUE_NUM = 17, VU_SET_VRING_ENABLE = 18,
    VU_SET_BACKEND_REQ_FD = 21, VU_GET_CONFIG = 24,
    VU_SET_CONFIG = 25, VU_RESET_DEVICE = 34,
};

/* Back-end message types, sent on the front end's back-end channel. */
#define VU_BACKEND_CONFIG_CHANGE_MSG 2

#define VU_FLAG_VERSION         0x1u
#define VU_FLAG_REPLY           0x4u
#define VU_FLAG_NEED_REPLY      0x8u
#define VU_HDR_SIZE             12
#define VU_MAX_PAYLOAD          4096
#define VU_MAX_FDS              8
#define VU_MAX_REGIONS          8
#define VU_VRING_NOFD           0x100u
#define VU_VRING_IDX_MASK       0xffu
#define VU_CONFIG_HDR_SIZE      12
#define VU_F_PROTOCOL_FEATURES  30

/* Protocol features we speak. */
#define VU_PROTO_F_MQ           0
#define VU_PROTO_F_REPLY_ACK    3
#define VU_PROTO_F_BACKEND_REQ  5
#define VU_PROTO_F_CONFIG       9
#define VU_PROTO_FEATURES       (1ull << VU_PROTO_F_MQ | \
                                 1ull << VU_PROTO_F_REPLY_ACK | \
                                 1ull << VU_PROTO_F_BACKEND_REQ | \
                                 1ull << VU_PROTO_F_CONFIG)

struct vub_region {
    uint64_t gpa, size, uva;
    uint8_t *host;              /* gpa maps here */
    void *mmap_base;            /* what to munmap */
    size_t mmap_len;
};

struct vub_queue {
    int kick_fd, call_fd, err_fd;   /* -1 = none */
    bool enabled;               /* SET_VRING_ENABLE (or implied by kick) */
    bool addr_ok;               /* ring addresses translated to gpas */
    bool started;
};

struct vub {
    struct event_loop *loop;
    struct blk_backend *blk;
    char *serial;
    unsigned num_queues;
    vub_close_fn *on_close;
    void *opaque;

    /* Per connection. */
    int fd;                     /* -1: no front end */
    int backend_fd;             /* SET_BACKEND_REQ_FD channel, -1 = none */
    bool in_msg;                /* a message is being handled */
    bool hangup;                /* the peer went away during it */
    struct vblk *vblk;
    struct virtio_mem mem;
    uint64_t features, proto_features;
    struct vub_region regions[VU_MAX_REGIONS];
    unsigned nregions;
    struct vub_queue queues[VBLK_MAX_QUEUES];
    int msg_fds[VU_MAX_FDS];
    unsigned msg_nfds;
};

static void *vub_map(void *opaque, uint64_t gpa, size_t len)
{
    struct vub *v = opaque;

    /* The whole of [gpa, gpa+len) inside one region, without overflow. */
    for (unsigned i = 0; i < v->nregions; i++) {
        struct vub_region *r = &v->regions[i];
        if (gpa >= r->gpa && gpa - r->gpa <= r->size &&
            len <= r->size - (gpa - r->gpa))
            return r->host + (gpa - r->gpa);
    }
    return NULL;
}

static int uva_to_gpa(struct vub *v, uint64_t uva, uint64_t *gpa)
{
    for (unsigned i = 0; i < v->nregions; i++) {
        struct vub_region *r = &v->regions[i];
        if (uva >= r->uva && uva - r->uva < r->size) {
            *gpa = r->gpa + (uva - r->uva);
            return 0;
        }
    }
    return -EFAULT;
}

/* ------------------------------------------------------------------ */
/* Transport side of the request path: call eventfds                   */
/* ------------------------------------------------------------------ */

static void vub_notify_queue(void *opaque, unsigned q)
{
    struct vub *v = opaque;
    uint64_t one = 1;

    if (v->queues[q].call_fd >= 0 &&
        write(v->queues[q].call_fd, &one, sizeof(one)) < 0)
        log_msg(LOG_DEBUG, "vhost-user-blk: call eventfd: %s", strerror(errno));
}

static void vub_needs_reset(void *opaque)
{
    struct vub *v = opaque;

    /* No status register here: the driver's ring is broken and the queue
     * stops; signal the error eventfd of every queue that has one. */
    log_msg(LOG_WARN, "vhost-user-blk: the driver broke a ring; queues stopped");
    for (unsigned q = 0; q < v->num_queues; q++) {
        uint64_t one = 1;
        if (v->queues[q].err_fd >= 0 &&
            write(v->queues[q].err_fd, &one, sizeof(one)) < 0)
            log_msg(LOG_DEBUG, "vhost-user-blk: err eventfd: %s", strerror(errno));
    }
}

/*
 * The device's config changed (read-only flip, resize): tell the front end
 * with CONFIG_CHANGE_MSG on its back-end channel, when it negotiated both
 * BACKEND_REQ and CONFIG and gave us the channel. No reply is asked for,
 * so the loop never waits on the front end. QEMU 7.2 then reads the
 * config again and interrupts the guest only when the capacity changed;
 * a read-only flip reaches the guest as IOERR on its writes either way.
 */
static void vub_notify_config(void *opaque)
{
    struct vub *v = opaque;
    uint32_t hdr[3] = { VU_BACKEND_CONFIG_CHANGE_MSG, VU_FLAG_VERSION, 0 };

    if (v->backend_fd < 0 ||
        !(v->proto_features >> VU_PROTO_F_BACKEND_REQ & 1) ||
        !(v->proto_features >> VU_PROTO_F_CONFIG & 1))
        return;
    /* A 12-byte message on a stream socket: written whole or not at all
     * unless the peer stopped reading, which drops the channel. */
    if (send(v->backend_fd, hdr, sizeof(hdr), MSG_NOSIGNAL | MSG_DONTWAIT) !=
        (ssize_t)sizeof(hdr)) {
        log_msg(LOG_WARN, "vhost-user-blk: back-end channel: %s; config "
                "changes are no longer announced", strerror(errno));
        close(v->backend_fd);
        v->backend_fd = -1;
    }
}

static const struct vblk_transport_ops vub_transport_ops = {
    .notify_queue = vub_notify_queue,
    .notify_config = vub_notify_config,
    .needs_reset = vub_needs_reset,
};

/* ------------------------------------------------------------------ */
/* Queues                                                              */
/* ------------------------------------------------------------------ */

static void kick_ready(void *opaque, uint32_t events);

struct kick_ctx {
    struct vub *v;
    unsigned q;
};

/* One context per queue, kept beside the device for the fd callback. */
static struct kick_ctx *kick_ctx(struct vub *v, unsigned q);

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void queue_stop(struct vub *v, unsigned q)
{
    struct vub_queue *uq = &v->queues[q];
    struct virtqueue *vq = vblk_queue(v->vblk, q);

    if (uq->kick_fd >= 0)
        ev_fd_remove(v->loop, uq->kick_fd);
    uq->started = false;
    if (vq)
        vq->ready = false;
}

/* Start the queue once it has addresses, a kick fd and is enabled. */
static void queue_maybe_start(struct vub *v, unsigned q)
{
    struct vub_queue *uq = &v->queues[q];
    struct virtqueue *vq = vblk_queue(v->vblk, q);
    uint8_t *used;

    if (uq->started || !vq || !uq->addr_ok || uq->kick_fd < 0 || !uq->enabled)
        return;
    used = vub_map(v, vq->used, 4);
    if (!used)
        return;
    /* The used index lives in guest memory across front ends; last_avail
     * came from SET_VRING_BASE. */
    vq->used_idx = (uint16_t)(used[2] | used[3] << 8);
    vq->signalled_valid = false;
    vq->inflight = 0;
    vq->ready = true;
    uq->started = true;
    if (ev_fd_add(v->loop, uq->kick_fd, EPOLLIN, kick_ready, kick_ctx(v, q)) < 0) {
        log_msg(LOG_ERROR, "vhost-user-blk: watching kick eventfd failed");
        uq->started = false;
        vq->ready = false;
        return;
    }
    vblk_start(v->vblk);
}

static void kick_ready(void *opaque, uint32_t events)
{
    struct kick_ctx *k = opaque;
    struct vub *v = k->v;
    uint64_t cnt;

    (void)events;
    if (read(v->queues[k->q].kick_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
        log_msg(LOG_DEBUG, "vhost-user-blk: kick eventfd: %s", strerror(errno));
    vblk_kick(v->vblk, k->q);
}

/* Wait until no request is in flight (their buffers are in guest RAM). */
static void drain(struct vub *v)
{
    if (v->fd >= 0)
        ev_fd_modify(v->loop, v->fd, 0);
    blk_drain(v->blk);
    for (int i = 0; v->vblk && vblk_inflight(v->vblk) && i < 6000; i++)
        ev_run_once(v->loop, 10);
    if (v->fd >= 0 && !v->hangup)
        ev_fd_modify(v->loop, v->fd, EPOLLIN);
}

static void unmap_regions(struct vub *v)
{
    for (unsigned i = 0; i < v->nregions; i++)
        munmap(v->regions[i].mmap_base, v->regions[i].mmap_len);
    v->nregions = 0;
}

/* ------------------------------------------------------------------ */
/* Messages                                                            */
/* ------------------------------------------------------------------ */

struct vu_msg {
    uint32_t request, flags, size;
    union {
        uint64_t u64;
        struct { uint32_t index, num; } state;
        struct {
            uint32_t index, flags;
            uint64_t desc, used, avail, log;
        } addr;
        struct {
            uint32_t nregions, padding;
            struct {
                uint64_t gpa, size, uva, mmap_offset;
            } regions[VU_MAX_REGIONS];
        } mem;
        struct {
            uint32_t offset, size, flags;
            uint8_t data[VU_MAX_PAYLOAD - VU_CONFIG_HDR_SIZE];
        } config;
        uint8_t raw[VU_MAX_PAYLOAD];
    } p;
} __attribute__((packed));     /* the payload follows the 12-byte header */

static int take_fd(struct vub *v)
{
    if (!v->msg_nfds)
        return -1;
    int fd = v->msg_fds[0];
    memmove(v->msg_fds, v->msg_fds + 1, --v->msg_nfds * sizeof(int));
    return fd;
}

static void drop_fds(struct vub *v)
{
    while (v->msg_nfds)
        close(v->msg_fds[--v->msg_nfds]);
}

static int send_reply(struct vub *v, struct vu_msg *m, uint32_t size)
{
    m->flags = VU_FLAG_VERSION | VU_FLAG_REPLY;
    m->size = size;
    return full_write(v->fd, m, VU_HDR_SIZE + size) < 0 ? -EIO : 0;
}

static int recv_msg(struct vub *v, struct vu_msg *m)
{
    char cbuf[CMSG_SPACE(VU_MAX_FDS * sizeof(int))];
    struct iovec iov = { .iov_base = m, .iov_len = VU_HDR_SIZE };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
    ssize_t n;

    do {
        n = recvmsg(v->fd, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -EPIPE;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        unsigned nfd = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int fds[VU_MAX_FDS];
        memcpy(fds, CMSG_DATA(c), nfd * sizeof(int));
        for (unsigned i = 0; i < nfd; i++) {
            if (v->msg_nfds < VU_MAX_FDS)
                v->msg_fds[v->msg_nfds++] = fds[i];
            else
                close(fds[i]);
        }
    }
    if (n < VU_HDR_SIZE && full_read(v->fd, (uint8_t *)m + n, VU_HDR_SIZE - n) !=
                               (ssize_t)(VU_HDR_SIZE - n))
        return -EPIPE;
    if ((m->flags & 3) != VU_FLAG_VERSION || m->size > VU_MAX_PAYLOAD) {
        log_msg(LOG_ERROR, "vhost-user-blk: bad message header (request %u, "
                "flags %#x, size %u)", m->request, m->flags, m->size);
        return -EPROTO;
    }
    if (m->size && full_read(v->fd, &m->p, m->size) != (ssize_t)m->size)
        return -EPIPE;
    return 0;
}

static int set_mem_table(struct vub *v, struct vu_msg *m)
{
    uint32_t n = m->p.mem.nregions;
    int ret = 0;

    if (n > VU_MAX_REGIONS || m->size < 8 + 32 * n || v->msg_nfds != n) {
        log_msg(LOG_ERROR, "vhost-user-blk: SET_MEM_TABLE with %u regions and "
                "%u fds", n, v->msg_nfds);
        return -EINVAL;
    }
    /* Requests in flight point into the old table. */
    drain(v);
    unmap_regions(v);
    for (uint32_t i = 0; i < n; i++) {
        int fd = take_fd(v);
        uint64_t size = m->p.mem.regions[i].size;
        uint64_t off = m->p.mem.regions[i].mmap_offset;
        struct vub_region *r = &v->regions[v->nregions];
        void *p;

        if (!size || off + size < off || off + size > SIZE_MAX) {
            close(fd);
            ret = -EINVAL;
            continue;
        }
        /* Pages of a shared mapping past the end of the file fault with
         * SIGBUS when touched, and ring or buffer addresses in them come
         * from the front end. */
        struct stat st = { 0 };
        if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < off + size) {
            log_msg(LOG_ERROR, "vhost-user-blk: region %u (offset %llu, %llu "
                    "bytes) runs past the end of its file (%lld bytes)", i,
                    (unsigned long long)off, (unsigned long long)size,
                    (long long)st.st_size);
            close(fd);
            ret = -EINVAL;
            continue;
        }
        p = mmap(NULL, off + size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED) {
            log_msg(LOG_ERROR, "vhost-user-blk: mmap of a %llu-byte region: %s",
                    (unsigned long long)size, strerror(errno));
            ret = -errno;
            continue;
        }
        *r = (struct vub_region){
            .gpa = m->p.mem.regions[i].gpa, .size = size,
            .uva = m->p.mem.regions[i].uva, .host = (uint8_t *)p + off,
            .mmap_base = p, .mmap_len = off + size,
        };
        v->nregions++;
    }
    return ret;
}

static int set_vring_addr(struct vub *v, struct vu_msg *m)
{
    unsigned q = m->p.addr.index;
    struct virtqueue *vq = vblk_queue(v->vblk, q);
    uint64_t desc, used, avail;

    if (!vq)
        return -EINVAL;
    v->queues[q].addr_ok = false;
    /* Ring addresses come as the front end's virtual addresses. */
    if (uva_to_gpa(v, m->p.addr.desc, &desc) < 0 ||
        uva_to_gpa(v, m->p.addr.used, &used) < 0 ||
        uva_to_gpa(v, m->p.addr.avail, &avail) < 0) {
        log_msg(LOG_ERROR, "vhost-user-blk: queue %u rings outside the memory "
                "table", q);
        return -EFAULT;
    }
    vq->desc = desc;
    vq->used = used;
    vq->avail = avail;
    v->queues[q].addr_ok = true;
    queue_maybe_start(v, q);
    return 0;
}

static int set_vring_fd(struct vub *v, struct vu_msg *m)
{
    unsigned q = (unsigned)(m->p.u64 & VU_VRING_IDX_MASK);
    int fd = (m->p.u64 & VU_VRING_NOFD) ? -1 : take_fd(v);
    struct vub_queue *uq;

    if (q >= v->num_queues) {
        if (fd >= 0)
            close(fd);
        return -EINVAL;
    }
    uq = &v->queues[q];
    switch (m->request) {
    case VU_SET_VRING_KICK:
        queue_stop(v, q);
        close_fd(&uq->kick_fd);
        uq->kick_fd = fd;
        /* Without protocol features a ring runs as soon as it is kicked. */
        if (!(v->features >> VU_F_PROTOCOL_FEATURES & 1))
            uq->enabled = true;
        queue_maybe_start(v, q);
        break;
    case VU_SET_VRING_CALL:
        close_fd(&uq->call_fd);
        uq->call_fd = fd;
        break;
    default:
        close_fd(&uq->err_fd);
        uq->err_fd = fd;
        break;
    }
    return 0;
}

static int get_config(struct vub *v, struct vu_msg *m)
{
    uint32_t off = m->p.config.offset, size = m->p.config.size;

    if (size > sizeof(m->p.config.data) || off > sizeof(m->p.config.data) - size)
        return -EINVAL;
    memset(m->p.config.data, 0, size);
    /* Past the fields we have the front end reads zeros, as it sizes the
     * request by its own struct virtio_blk_config. */
    for (uint32_t i = 0; i < size; i++) {
        if (off + i < VBLK_CONFIG_SIZE)
            m->p.config.data[i] = (uint8_t)vblk_config_read(v->vblk, off + i, 1);
    }
    return send_reply(v, m, VU_CONFIG_HDR_SIZE + size);
}

static bool any_started(const struct vub *v)
{
    for (unsigned q = 0; q < v->num_queues; q++) {
        if (v->queues[q].started)
            return true;
    }
    return false;
}

/* The payload a request is read from; the rest of `m` is whatever the
 * last message left there. */
static uint32_t payload_min(uint32_t request)
{
    switch (request) {
    case VU_SET_FEATURES:
    case VU_SET_PROTOCOL_FEATURES:
    case VU_SET_VRING_KICK:
    case VU_SET_VRING_CALL:
    case VU_SET_VRING_ERR:
        return sizeof(uint64_t);
    case VU_SET_VRING_NUM:
    case VU_SET_VRING_BASE:
    case VU_GET_VRING_BASE:
    case VU_SET_VRING_ENABLE:
        return 2 * sizeof(uint32_t);
    case VU_SET_VRING_ADDR:
        return 2 * sizeof(uint32_t) + 4 * sizeof(uint64_t);
    case VU_SET_MEM_TABLE:
        return 2 * sizeof(uint32_t);
    case VU_GET_CONFIG:
    case VU_SET_CONFIG:
        return VU_CONFIG_HDR_SIZE;
    default:
        return 0;
    }
}

/* Handle one message: -EPIPE, -EPROTO and -EIO drop the connection. */
static int handle_msg(struct vub *v, struct vu_msg *m)
{
    bool ack = (m->flags & VU_FLAG_NEED_REPLY) &&
               (v->proto_features >> VU_PROTO_F_REPLY_ACK & 1);
    int ret = 0;

    log_debug("vhost-user-blk: request %u, flags %#x, %u bytes, %u fds",
              m->request, m->flags, m->size, v->msg_nfds);
    if (m->size < payload_min(m->request)) {
        /* A front end that gets its own message sizes wrong cannot be
         * answered sensibly (GET_VRING_BASE waits for a reply). */
        log_msg(LOG_ERROR, "vhost-user-blk: request %u with a %u-byte payload "
                "(%u expected)", m->request, m->size, payload_min(m->request));
        return -EPROTO;
    }
    switch (m->request) {
    case VU_GET_FEATURES:
        m->p.u64 = vblk_host_features(v->vblk) | 1ull << VU_F_PROTOCOL_FEATURES;
        return send_reply(v, m, 8);
    case VU_SET_FEATURES:
        /* Features come first when the front end (re)starts the device: a
         * ring the last driver broke is forgotten then. */
        if (!any_started(v))
            vblk_reset(v->vblk);
        v->features = m->p.u64;
        vblk_set_guest_features(v->vblk, m->p.u64 & ~(1ull << VU_F_PROTOCOL_FEATURES));
        break;
    case VU_GET_PROTOCOL_FEATURES:
        m->p.u64 = VU_PROTO_FEATURES;
        return send_reply(v, m, 8);
    case VU_SET_PROTOCOL_FEATURES:
        v->proto_features = m->p.u64 & VU_PROTO_FEATURES;
        break;
    case VU_GET_QUEUE_NUM:
        m->p.u64 = v->num_queues;
        return send_reply(v, m, 8);
    case VU_SET_OWNER:
        break;
    case VU_RESET_OWNER:
    case VU_RESET_DEVICE:
        drain(v);
        for (unsigned q = 0; q < v->num_queues; q++)
            queue_stop(v, q);
        vblk_reset(v->vblk);
        break;
    case VU_SET_MEM_TABLE:
        ret = set_mem_table(v, m);
        break;
    case VU_SET_VRING_NUM:
        if (!vblk_queue(v->vblk, m->p.state.index) || !m->p.state.num ||
            m->p.state.num > VIRTQ_MAX_SIZE ||
            (m->p.state.num & (m->p.state.num - 1)))
            ret = -EINVAL;
        else
            vblk_queue(v->vblk, m->p.state.index)->num = (uint16_t)m->p.state.num;
        break;
    case VU_SET_VRING_ADDR:
        ret = set_vring_addr(v, m);
        break;
    case VU_SET_VRING_BASE:
        if (!vblk_queue(v->vblk, m->p.state.index))
            ret = -EINVAL;
        else
            vblk_queue(v->vblk, m->p.state.index)->last_avail =
                (uint16_t)m->p.state.num;
        break;
    case VU_GET_VRING_BASE: {
        unsigned q = m->p.state.index;
        if (!vblk_queue(v->vblk, q)) {
            /* The front end waits for an answer we cannot give. */
            log_msg(LOG_ERROR, "vhost-user-blk: GET_VRING_BASE for queue %u", q);
            return -EPROTO;
        }
        /* Stop taking requests, let those taken finish into the used ring,
         * then the avail index we stopped at is exact. */
        queue_stop(v, q);
        drain(v);
        v->queues[q].enabled = false;
        close_fd(&v->queues[q].kick_fd);
        m->p.state.num = vblk_queue(v->vblk, q)->last_avail;
        return send_reply(v, m, 8);
    }
    case VU_SET_VRING_KICK:
    case VU_SET_VRING_CALL:
    case VU_SET_VRING_ERR:
        ret = set_vring_fd(v, m);
        break;
    case VU_SET_VRING_ENABLE:
        if (m->p.state.index >= v->num_queues) {
            ret = -EINVAL;
            break;
        }
        v->queues[m->p.state.index].enabled = m->p.state.num != 0;
        if (m->p.state.num)
            queue_maybe_start(v, m->p.state.index);
        else
            queue_stop(v, m->p.state.index);
        break;
    case VU_SET_BACKEND_REQ_FD: {
        int fd = take_fd(v);

        if (fd < 0 || !(v->proto_features >> VU_PROTO_F_BACKEND_REQ & 1)) {
            log_msg(LOG_ERROR, "vhost-user-blk: SET_BACKEND_REQ_FD %s",
                    fd < 0 ? "without a file descriptor"
                           : "without BACKEND_REQ negotiated");
            if (fd >= 0)
                close(fd);
            ret = -EINVAL;
            break;
        }
        close_fd(&v->backend_fd);
        v->backend_fd = fd;
        break;
    }
    case VU_GET_CONFIG:
        ret = get_config(v, m);
        if (ret != -EINVAL)
            return ret;
        m->p.config.size = 0;       /* an empty payload says it failed */
        return send_reply(v, m, VU_CONFIG_HDR_SIZE);
    case VU_SET_CONFIG:
        if (m->p.config.size > 4 || m->size < VU_CONFIG_HDR_SIZE + m->p.config.size) {
            ret = -EINVAL;
        } else {
            uint32_t val = 0;
            for (uint32_t i = 0; i < m->p.config.size; i++)
                val |= (uint32_t)m->p.config.data[i] << (8 * i);
            vblk_config_write(v->vblk, m->p.config.offset, m->p.config.size, val);
        }
        break;
    case VU_SET_LOG_BASE:
    case VU_SET_LOG_FD:
    default:
        log_msg(LOG_WARN, "vhost-user-blk: request %u not supported", m->request);
        ret = -ENOTSUP;
        break;
    }
    drop_fds(v);
    if (ack) {
        m->p.u64 = ret < 0 ? 1 : 0;
        return send_reply(v, m, 8);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Connection                                                          */
/* ------------------------------------------------------------------ */

static struct kick_ctx *kick_ctx(struct vub *v, unsigned q)
{
    /* Stored after the device, one per queue (see vub_new). */
    return (struct kick_ctx *)(v + 1) + q;
}

static void disconnect(struct vub *v)
{
    if (v->fd < 0)
        return;
    ev_fd_remove(v->loop, v->fd);
    v->hangup = true;
    for (unsigned q = 0; q < v->num_queues; q++)
        queue_stop(v, q);
    /* Buffers of requests in flight are in guest RAM: keep it mapped until
     * the block layer is done with them. */
    vblk_free(v->vblk);
    v->vblk = NULL;
    for (unsigned q = 0; q < v->num_queues; q++) {
        close_fd(&v->queues[q].kick_fd);
        close_fd(&v->queues[q].call_fd);
        close_fd(&v->queues[q].err_fd);
    }
    close_fd(&v->backend_fd);
    drop_fds(v);
    unmap_regions(v);
    close(v->fd);
    v->fd = -1;
    log_msg(LOG_INFO, "vhost-user-blk: front end disconnected");
    if (v->on_close)
        v->on_close(v->opaque);
}

static void sock_ready(void *opaque, uint32_t events)
{
    struct vub *v = opaque;
    struct vu_msg m;
    int ret;

    (void)events;
    if (v->in_msg)
        return;
    v->in_msg = true;
    ret = recv_msg(v, &m);
    if (!ret)
        ret = handle_msg(v, &m);
    drop_fds(v);
    v->in_msg = false;
    if (ret == -EPIPE || ret == -EPROTO || ret == -EIO)
        disconnect(v);
}

int vub_attach(struct vub *v, int fd, struct error **errp)
{
    struct vblk_config cfg = {
        .blk = v->blk, .serial = v->serial, .num_queues = v->num_queues,
        .mem = &v->mem, .ops = &vub_transport_ops, .opaque = v,
    };
    int ret;

    if (v->fd >= 0) {
        error_setg(errp, "vhost-user-blk: a front end is already connected");
        return -EBUSY;
    }
    v->vblk = vblk_new(v->loop, &cfg, errp);
    if (!v->vblk)
        return -ENOMEM;
    ret = ev_fd_add(v->loop, fd, EPOLLIN, sock_ready, v);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "vhost-user-blk: watching the socket");
        vblk_free(v->vblk);
        v->vblk = NULL;
        return ret;
    }
    v->fd = fd;
    v->hangup = false;
    v->features = v->proto_features = 0;
    for (unsigned q = 0; q < v->num_queues; q++)
        v->queues[q] = (struct vub_queue){ .kick_fd = -1, .call_fd = -1,
                                           .err_fd = -1 };
    return 0;
}

bool vub_connected(const struct vub *v)
{
    return v->fd >= 0;
}

struct vub *vub_new(struct event_loop *loop, const struct vub_config *cfg,
                    struct error **errp)
{
    unsigned nq = cfg->num_queues ? cfg->num_queues : 1;
    struct vub *v;

    if (nq > VBLK_MAX_QUEUES) {
        error_setg(errp, "vhost-user-blk: num-queues %u out of range (1 to %d)",
                   nq, VBLK_MAX_QUEUES);
        return NULL;
    }
    v = calloc(1, sizeof(*v) + nq * sizeof(struct kick_ctx));
    if (!v) {
        error_setg_errno(errp, ENOMEM, "vhost-user-blk");
        return NULL;
    }
    v->loop = loop;
    v->blk = cfg->blk;
    v->num_queues = nq;
    v->on_close = cfg->on_close;
    v->opaque = cfg->opaque;
    v->fd = -1;
    v->backend_fd = -1;
    v->mem = (struct virtio_mem){ .map = vub_map, .opaque = v };
    if (cfg->serial && !(v->serial = strdup(cfg->serial))) {
        free(v);
        error_setg_errno(errp, ENOMEM, "vhost-user-blk");
        return NULL;
    }
    for (unsigned q = 0; q < nq; q++)
        *kick_ctx(v, q) = (struct kick_ctx){ .v = v, .q = q };
    return v;
}

void vub_free(struct vub *v)
{
    if (!v)
        return;
    v->on_close = NULL;
    disconnect(v);
    free(v->serial);
    free(v);
}
