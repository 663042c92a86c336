/*
 * hw/virtio-blk-req.c — the virtio-blk device proper, independent of its
 * transport: feature and config space, and the request path (chains from
 * hw/virtio-ring.c decoded into IN/OUT/FLUSH/GET_ID/DISCARD/WRITE_ZEROES,
 * submitted to the asynchronous block backend, completed out of order).
 * Read-only is decided per request from the backend, never cached.
 */
#include "hw/virtio.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define VIRTIO_BLK_HDR_SIZE     16
#define VIRTIO_BLK_DWZ_SIZE     16      /* one discard/write-zeroes segment */
/* QEMU's default limits (BDRV_REQUEST_MAX_SECTORS), one segment each. */
#define VBLK_MAX_DWZ_SECTORS    0x3fffffu
#define VBLK_SIZE_MAX           (1u << 20)

struct vblk_req {
    struct vblk *s;
    struct vblk_req *next;      /* free list */
    uint64_t gen;               /* device generation at submission */
    unsigned q;
    struct vq_elem elem;
    uint8_t *status;            /* the status byte in guest RAM */
    struct iovec *data;         /* payload, headers and status cut off */
    unsigned data_num, data_cap;
};

struct vblk {
    struct event_loop *loop;
    struct blk_backend *blk;
    char serial[VIRTIO_BLK_ID_BYTES];
    unsigned num_queues;
    const struct virtio_mem *mem;
    const struct vblk_transport_ops *ops;
    void *opaque;

    uint64_t guest_features;
    struct virtqueue vqs[VBLK_MAX_QUEUES];
    uint64_t gen;               /* bumped by reset: older requests are stale */
    bool broken;                /* driver broke a ring; until reset */
    uint8_t wce;                /* config `writeback` */
    unsigned inflight;
    struct vblk_req *free_reqs;
    bool in_kick;               /* vblk_kick is running */
    uint32_t kick_pending;      /* queues kicked meanwhile */
};

/* ------------------------------------------------------------------ */
/* Features and config space                                           */
/* ------------------------------------------------------------------ */

uint64_t vblk_host_features(struct vblk *s)
{
    uint64_t f = 1ull << VIRTIO_BLK_F_SIZE_MAX | 1ull << VIRTIO_BLK_F_SEG_MAX |
                 1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH |
                 1ull << VIRTIO_BLK_F_TOPOLOGY | 1ull << VIRTIO_BLK_F_CONFIG_WCE |
                 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES |
                 1ull << VIRTIO_RING_F_INDIRECT_DESC |
                 1ull << VIRTIO_RING_F_EVENT_IDX | 1ull << VIRTIO_F_VERSION_1;

    if (s->num_queues > 1)
        f |= 1ull << VIRTIO_BLK_F_MQ;
    if (blk_is_read_only(s->blk))
        f |= 1ull << VIRTIO_BLK_F_RO;
    return f;
}

static void apply_ring_features(struct vblk *s)
{
    for (unsigned q = 0; q < s->num_queues; q++) {
        s->vqs[q].event_idx = s->guest_features >> VIRTIO_RING_F_EVENT_IDX & 1;
        s->vqs[q].indirect = s->guest_features >> VIRTIO_RING_F_INDIRECT_DESC & 1;
    }
}

void vblk_set_guest_features(struct vblk *s, uint64_t features)
{
    /* RO is informational: a driver acking it changes nothing. */
    s->guest_features = features;
    apply_ring_features(s);
}

uint64_t vblk_guest_features(const struct vblk *s)
{
    return s->guest_features;
}

unsigned vblk_num_queues(const struct vblk *s)
{
    return s->num_queues;
}

struct virtqueue *vblk_queue(struct vblk *s, unsigned q)
{
    return q < s->num_queues ? &s->vqs[q] : NULL;
}

unsigned vblk_inflight(const struct vblk *s)
{
    return s->inflight;
}

static uint64_t capacity_sectors(struct vblk *s)
{
    int64_t len = blk_getlength(s->blk);

    return len > 0 ? (uint64_t)len / BDRV_SECTOR_SIZE : 0;
}

static void fill_config(struct vblk *s, uint8_t *c)
{
    uint64_t sectors = capacity_sectors(s);
    uint64_t cyls = sectors / (16 * 63);
    uint8_t *p;

    memset(c, 0, VBLK_CONFIG_SIZE);
#define PUT16(off, v) do { uint16_t v_ = htole16(v); memcpy(c + (off), &v_, 2); } while (0)
#define PUT32(off, v) do { uint32_t v_ = htole32(v); memcpy(c + (off), &v_, 4); } while (0)
    p = c;
    uint64_t cap = htole64(sectors);
    memcpy(p, &cap, 8);
    PUT32(8, VBLK_SIZE_MAX);
    PUT32(12, VIRTQ_DEFAULT_SIZE - 2);          /* seg_max */
    PUT16(16, cyls > 65535 ? 65535 : cyls < 1 ? 1 : cyls);
    c[18] = 16;                                 /* heads */
    c[19] = 63;                                 /* sectors per track */
    PUT32(20, BDRV_SECTOR_SIZE);                /* blk_size */
    /* topology (24-31): 512-byte physical blocks, no alignment hints */
    c[32] = s->wce;
    PUT16(34, s->num_queues);
    PUT32(36, VBLK_MAX_DWZ_SECTORS);            /* max_discard_sectors */
    PUT32(40, 1);                               /* max_discard_seg */
    PUT32(44, 1);                               /* discard_sector_alignment */
    PUT32(48, VBLK_MAX_DWZ_SECTORS);            /* max_write_zeroes_sectors */
    PUT32(52, 1);                               /* max_write_zeroes_seg */
    c[56] = 1;                                  /* write_zeroes_may_unmap */
#undef PUT16
#undef PUT32
}

uint32_t vblk_config_read(struct vblk *s, unsigned off, unsigned size)
{
    uint8_t c[VBLK_CONFIG_SIZE];
    uint32_t v = 0;

    if (size > 4 || off + size > VBLK_CONFIG_SIZE)
        return UINT32_MAX;
    fill_config(s, c);
    for (unsigned i = 0; i < size; i++)
        v |= (uint32_t)c[off + i] << (8 * i);
    return v;
}

void vblk_config_write(struct vblk *s, unsigned off, unsigned size,
                       uint32_t val)
{
    /* Only `writeback` is writable (VIRTIO_BLK_F_CONFIG_WCE). */
    if (off <= 32 && off + size > 32)
        s->wce = (val >> (8 * (32 - off))) & 1;
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

static struct vblk_req *req_get(struct vblk *s)
{
    struct vblk_req *r = s->free_reqs;

    if (r) {
        s->free_reqs = r->next;
        return r;
    }
    r = calloc(1, sizeof(*r));
    if (r)
        r->s = s;
    return r;
}

static void req_put(struct vblk_req *r)
{
    r->next = r->s->free_reqs;
    r->s->free_reqs = r;
}

static void set_broken(struct vblk *s)
{
    if (s->broken)
        return;
    s->broken = true;
    if (s->ops->needs_reset)
        s->ops->needs_reset(s->opaque);
}

/*
 * Status byte, used entry, interrupt. used.len is the whole device-writable
 * length, as QEMU reports it. A request from before a reset touches nothing.
 */
static void req_complete(struct vblk_req *r, uint8_t status)
{
    struct vblk *s = r->s;
    struct virtqueue *vq = &s->vqs[r->q];

    if (r->gen == s->gen) {
        *r->status = status;
        if (vq_push(vq, s->mem, r->elem.head, (uint32_t)r->elem.in_len) < 0)
            set_broken(s);
        else if (vq_need_notify(vq, s->mem) && s->ops->notify_queue)
            s->ops->notify_queue(s->opaque, r->q);
    }
    req_put(r);
}

static void req_done(void *opaque, int ret)
{
    struct vblk_req *r = opaque;

    r->s->inflight--;
    req_complete(r, ret < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
}

/* Copy `len` bytes at `skip` of the iovec list into buf; bytes copied. */
static size_t iov_gather(const struct iovec *iov, unsigned n, size_t skip,
                         void *buf, size_t len)
{
    size_t done = 0;

    for (unsigned i = 0; i < n && done < len; i++) {
        size_t l = iov[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        size_t c = MIN(l - skip, len - done);
        memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + skip, c);
        done += c;
        skip = 0;
    }
    return done;
}

/* r->data = bytes [skip, skip+len) of iov[0..n). */
static int req_set_data(struct vblk_req *r, const struct iovec *iov,
                        unsigned n, size_t skip, size_t len)
{
    r->data_num = 0;
    for (unsigned i = 0; i < n && len; i++) {
        size_t l = iov[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        if (r->data_num == r->data_cap) {
            unsigned cap = r->data_cap ? 2 * r->data_cap : 8;
            struct iovec *d = realloc(r->data, cap * sizeof(*d));
            if (!d)
                return -ENOMEM;
            r->data = d;
            r->data_cap = cap;
        }
        size_t c = MIN(l - skip, len);
        r->data[r->data_num++] = (struct iovec){
            .iov_base = (uint8_t *)iov[i].iov_base + skip, .iov_len = c };
        len -= c;
        skip = 0;
    }
    return 0;
}

static bool sector_range_ok(struct vblk *s, uint64_t sector, uint64_t bytes)
{
    uint64_t total = capacity_sectors(s);

    if (bytes % BDRV_SECTOR_SIZE)
        return false;
    return sector <= total && bytes / BDRV_SECTOR_SIZE <= total - sector;
}

/* Submit, or complete at once on a synchronous refusal. */
static void req_submitted(struct vblk_req *r, int ret)
{
    if (ret < 0) {
        req_complete(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    r->s->inflight++;
}

static void handle_rw(struct vblk *s, struct vblk_req *r, bool is_write,
                      uint64_t sector)
{
    struct vq_elem *e = &r->elem;
    size_t len = is_write ? e->out_len - VIRTIO_BLK_HDR_SIZE : e->in_len - 1;
    int ret;

    if (!sector_range_ok(s, sector, len)) {
        req_complete(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    if (is_write && blk_is_read_only(s->blk)) {
        req_complete(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    if (len == 0) {
        req_complete(r, VIRTIO_BLK_S_OK);
        return;
    }
    if (is_write)
        ret = req_set_data(r, e->iov, e->out_num, VIRTIO_BLK_HDR_SIZE, len);
    else
        ret = req_set_data(r, e->iov + e->out_num, e->in_num, 0, len);
    if (ret < 0) {
        req_complete(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    if (is_write)
        ret = blk_aio_pwritev(s->blk, sector * BDRV_SECTOR_SIZE, r->data,
                              (int)r->data_num, s->wce ? 0 : BDRV_REQ_FUA,
                              req_done, r);
    else
        ret = blk_aio_preadv(s->blk, sector * BDRV_SECTOR_SIZE, r->data,
                             (int)r->data_num, req_done, r);
    req_submitted(r, ret);
}

static void handle_get_id(struct vblk *s, struct vblk_req *r)
{
    struct vq_elem *e = &r->elem;
    size_t len = MIN(e->in_len - 1, VIRTIO_BLK_ID_BYTES), done = 0;

    /* The serial, NUL-padded to the 20 bytes (or the buffer's length). */
    for (unsigned i = e->out_num; i < e->out_num + e->in_num && done < len; i++) {
        size_t c = MIN(e->iov[i].iov_len, len - done);
        memcpy(e->iov[i].iov_base, s->serial + done, c);
        done += c;
    }
    req_complete(r, VIRTIO_BLK_S_OK);
}

static void handle_dwz(struct vblk *s, struct vblk_req *r, bool zeroes)
{
    struct vq_elem *e = &r->elem;
    uint8_t seg[VIRTIO_BLK_DWZ_SIZE];
    uint64_t sector;
    uint32_t nsect, flags;
    int ret;

    if (e->out_len - VIRTIO_BLK_HDR_SIZE > VIRTIO_BLK_DWZ_SIZE) {
        req_complete(r, VIRTIO_BLK_S_UNSUPP);     /* one segment only */
        return;
    }
    if (iov_gather(e->iov, e->out_num, VIRTIO_BLK_HDR_SIZE, seg,
                   sizeof(seg)) != sizeof(seg)) {
        req_complete(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    memcpy(&sector, seg, 8);
    memcpy(&nsect, seg + 8, 4);
    memcpy(&flags, seg + 12, 4);
    sector = le64toh(sector);
    nsect = le32toh(nsect);
    flags = le32toh(flags);
    if (nsect > VBLK_MAX_DWZ_SECTORS ||
        !sector_range_ok(s, sector, (uint64_t)nsect * BDRV_SECTOR_SIZE)) {
        req_complete(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    /* Unknown flags, and UNMAP on a discard, are unsupported (5.2.6.2). */
    if (flags & ~(zeroes ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0u)) {
        req_complete(r, VIRTIO_BLK_S_UNSUPP);
        return;
    }
    if (blk_is_read_only(s->blk)) {
        req_complete(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    if (nsect == 0) {
        req_complete(r, VIRTIO_BLK_S_OK);
        return;
    }
    if (zeroes)
        ret = blk_aio_pwrite_zeroes(s->blk, sector * BDRV_SECTOR_SIZE,
                                    (uint64_t)nsect * BDRV_SECTOR_SIZE,
                                    (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)
                                        ? BDRV_REQ_MAY_UNMAP : 0,
                                    req_done, r);
    else
        ret = blk_aio_pdiscard(s->blk, sector * BDRV_SECTOR_SIZE,
                               (uint64_t)nsect * BDRV_SECTOR_SIZE, req_done, r);
    req_submitted(r, ret);
}

static void handle_request(struct vblk *s, struct vblk_req *r)
{
    struct vq_elem *e = &r->elem;
    const struct iovec *last;
    uint8_t hdr[VIRTIO_BLK_HDR_SIZE];
    uint32_t type;
    uint64_t sector;

    /* Without a whole header and a writable status byte there is nothing
     * to answer into: the driver broke the protocol (QEMU does the same). */
    if (e->out_len < VIRTIO_BLK_HDR_SIZE || e->in_len < 1) {
        req_put(r);
        set_broken(s);
        return;
    }
    last = &e->iov[e->out_num + e->in_num - 1];
    r->status = (uint8_t *)last->iov_base + last->iov_len - 1;
    iov_gather(e->iov, e->out_num, 0, hdr, sizeof(hdr));
    memcpy(&type, hdr, 4);
    memcpy(&sector, hdr + 8, 8);
    type = le32toh(type);
    sector = le64toh(sector);

    switch (type) {
    case VIRTIO_BLK_T_IN:
        handle_rw(s, r, false, sector);
        break;
    case VIRTIO_BLK_T_OUT:
        handle_rw(s, r, true, sector);
        break;
    case VIRTIO_BLK_T_FLUSH:
        /* Nothing can be dirty on a read-only drive: nothing to flush. */
        if (blk_is_read_only(s->blk))
            req_complete(r, VIRTIO_BLK_S_OK);
        else
            req_submitted(r, blk_aio_flush(s->blk, req_done, r));
        break;
    case VIRTIO_BLK_T_GET_ID:
        handle_get_id(s, r);
        break;
    case VIRTIO_BLK_T_DISCARD:
        handle_dwz(s, r, false);
        break;
    case VIRTIO_BLK_T_WRITE_ZEROES:
        handle_dwz(s, r, true);
        break;
    default:
        req_complete(r, VIRTIO_BLK_S_UNSUPP);
        break;
    }
}

void vblk_needs_reset(struct vblk *s)
{
    set_broken(s);
}

/* Take and handle everything available on queue q. */
static void kick_queue(struct vblk *s, unsigned q)
{
    struct virtqueue *vq;
    uint64_t gen = s->gen;

    if (s->broken)
        return;
    vq = &s->vqs[q];
    if (!vq->ready)
        return;             /* notify before setup: nothing to look at */
    if (!vq_usable(vq, s->mem)) {
        set_broken(s);      /* rings outside RAM, or a bad size */
        return;
    }
    for (;;) {
        struct vblk_req *r = req_get(s);
        int ret;

        if (!r)
            return;
        ret = vq_pop(vq, s->mem, &r->elem);
        if (ret <= 0) {
            req_put(r);
            if (ret == -EIO) {
                set_broken(s);
                return;
            }
            if (ret < 0)
                return;
            /* Empty: publish avail_event, then look once more for a
             * driver that added entries meanwhile. */
            vq_update_avail_event(vq, s->mem);
            r = req_get(s);
            if (!r)
                return;
            ret = vq_pop(vq, s->mem, &r->elem);
            if (ret <= 0) {
                req_put(r);
                if (ret == -EIO)
                    set_broken(s);
                return;
            }
        }
        r->q = q;
        r->gen = s->gen;
        handle_request(s, r);
        /* The interrupt a completion sent may have reset the device. */
        if (s->broken || s->gen != gen || !vq->ready)
            return;
    }
}

/*
 * A completion's MSI-X message is a memory write the driver aims, possibly
 * at this device's own notify register: a kick from inside a kick only
 * marks the queue, and the outer call takes it, so nothing recurses.
 */
void vblk_kick(struct vblk *s, unsigned q)
{
    if (q >= s->num_queues)
        return;
    s->kick_pending |= 1u << q;
    if (s->in_kick)
        return;
    s->in_kick = true;
    while (s->kick_pending) {
        unsigned next = (unsigned)__builtin_ctz(s->kick_pending);
        s->kick_pending &= ~(1u << next);
        kick_queue(s, next);
    }
    s->in_kick = false;
}

void vblk_start(struct vblk *s)
{
    apply_ring_features(s);
    for (unsigned q = 0; q < s->num_queues; q++)
        vblk_kick(s, q);
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */
/* ------------------------------------------------------------------ */

static void vblk_ro_changed(void *opaque, bool read_only)
{
    struct vblk *s = opaque;

    (void)read_only;
    if (s->ops->notify_config)
        s->ops->notify_config(s->opaque);
}

static void vblk_resized(void *opaque)
{
    struct vblk *s = opaque;

    if (s->ops->notify_config)
        s->ops->notify_config(s->opaque);
}

static const struct blk_dev_ops vblk_dev_ops = {
    .read_only_changed = vblk_ro_changed,
    .resized = vblk_resized,
};

void vblk_reset(struct vblk *s)
{
    s->gen++;
    s->broken = false;
    s->guest_features = 0;
    s->wce = 1;
    for (unsigned q = 0; q < s->num_queues; q++)
        vq_reset(&s->vqs[q]);
}

struct vblk *vblk_new(struct event_loop *loop, const struct vblk_config *cfg,
                      struct error **errp)
{
    struct vblk *s;

    if (cfg->num_queues < 1 || cfg->num_queues > VBLK_MAX_QUEUES) {
        error_setg(errp, "virtio-blk: num-queues %u out of range (1 to %d)",
                   cfg->num_queues, VBLK_MAX_QUEUES);
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        error_setg_errno(errp, ENOMEM, "virtio-blk");
        return NULL;
    }
    s->loop = loop;
    s->blk = cfg->blk;
    s->num_queues = cfg->num_queues;
    s->mem = cfg->mem;
    s->ops = cfg->ops;
    s->opaque = cfg->opaque;
    if (cfg->serial)
        memcpy(s->serial, cfg->serial,
               strnlen(cfg->serial, sizeof(s->serial)));
    vblk_reset(s);
    blk_set_dev_ops(s->blk, &vblk_dev_ops, s);
    return s;
}

void vblk_free(struct vblk *s)
{
    if (!s)
        return;
    /* Completions still reference s: let them run (they are stale). */
    s->gen++;
    blk_drain(s->blk);
    for (int i = 0; s->inflight && i < 1000; i++)
        ev_run_once(s->loop, 10);
    blk_set_dev_ops(s->blk, NULL, NULL);
    if (s->inflight)
        return;     /* a backend that never completes: leak, never reuse */
    while (s->free_reqs) {
        struct vblk_req *r = s->free_reqs;
        s->free_reqs = r->next;
        vq_elem_free(&r->elem);
        free(r->data);
        free(r);
    }
    free(s);
}
