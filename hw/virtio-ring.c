/*
 * hw/virtio-ring.c — split virtqueues as the device sees them: taking
 * descriptor chains (direct and indirect) off the available ring, putting
 * completions on the used ring, and interrupt suppression (NO_INTERRUPT,
 * EVENT_IDX). Every guest address goes through struct virtio_mem, so a
 * hostile ring can only make vq_pop fail, never reach outside guest RAM.
 */
#include "hw/virtio.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define VRING_DESC_F_NEXT       1
#define VRING_DESC_F_WRITE      2
#define VRING_DESC_F_INDIRECT   4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_DESC_SIZE         16

/* Ring fields are little endian and may sit at any address a hostile
 * driver chooses: load and store through memcpy. */
static uint16_t ld16(const void *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return le16toh(v);
}

static uint32_t ld32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static uint64_t ld64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

static void st16(void *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, 2);
}

static void st32(void *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static size_t avail_size(uint16_t num)
{
    return 4 + 2 * (size_t)num + 2;     /* flags, idx, ring, used_event */
}

static size_t used_size(uint16_t num)
{
    return 4 + 8 * (size_t)num + 2;     /* flags, idx, ring, avail_event */
}

void vq_reset(struct virtqueue *vq)
{
    *vq = (struct virtqueue){ .num = VIRTQ_DEFAULT_SIZE,
                              .vector = VIRTIO_NO_VECTOR };
}

static uint8_t *map_avail(const struct virtqueue *vq, const struct virtio_mem *mem)
{
    return mem->map(mem->opaque, vq->avail, avail_size(vq->num));
}

static uint8_t *map_used(const struct virtqueue *vq, const struct virtio_mem *mem)
{
    return mem->map(mem->opaque, vq->used, used_size(vq->num));
}

bool vq_usable(const struct virtqueue *vq, const struct virtio_mem *mem)
{
    if (!vq->ready || !vq->num || (vq->num & (vq->num - 1)) ||
        vq->num > VIRTQ_MAX_SIZE || !vq->desc)
        return false;
    return mem->map(mem->opaque, vq->desc, VRING_DESC_SIZE * (size_t)vq->num) &&
           map_avail(vq, mem) && map_used(vq, mem);
}

static int elem_add(struct vq_elem *e, void *base, size_t len)
{
    unsigned n = e->out_num + e->in_num;

    if (n == e->iov_cap) {
        unsigned cap = e->iov_cap ? 2 * e->iov_cap : 8;
        struct iovec *iov = realloc(e->iov, cap * sizeof(*iov));
        if (!iov)
            return -ENOMEM;
        e->iov = iov;
        e->iov_cap = cap;
    }
    e->iov[n] = (struct iovec){ .iov_base = base, .iov_len = len };
    return 0;
}

/*
 * Walk the chain starting at `head` in the queue's table. Bounds: at most
 * `num` descriptors in the main table and at most the table's entries in
 * an indirect one, which catches loops without remembering visited slots.
 */
static int walk_chain(struct virtqueue *vq, const struct virtio_mem *mem,
                      uint16_t head, struct vq_elem *e)
{
    const uint8_t *table = mem->map(mem->opaque, vq->desc,
                                    VRING_DESC_SIZE * (size_t)vq->num);
    unsigned max = vq->num, count = 0, i = head;
    bool in_indirect = false;

    if (!table)
        return -EIO;
    for (;;) {
        const uint8_t *d = table + VRING_DESC_SIZE * (size_t)i;
        uint64_t addr = ld64(d);
        uint32_t len = ld32(d + 8);
        uint16_t flags = ld16(d + 12), next = ld16(d + 14);
        void *p;
        int ret;

        if (++count > max)
            return -EIO;                /* loop, or longer than allowed */
        if (flags & VRING_DESC_F_INDIRECT) {
            /* Only the head may point at a table, and tables don't nest. */
            if (in_indirect || count != 1 || !vq->indirect || len == 0 ||
                len % VRING_DESC_SIZE || len / VRING_DESC_SIZE > VIRTQ_MAX_SIZE)
                return -EIO;
            table = mem->map(mem->opaque, addr, len);
            if (!table)
                return -EIO;
            in_indirect = true;
            max = len / VRING_DESC_SIZE;
            count = 0;
            i = 0;
            continue;
        }
        if (len == 0)
            return -EIO;
        p = mem->map(mem->opaque, addr, len);
        if (!p)
            return -EIO;
        if (flags & VRING_DESC_F_WRITE) {
            ret = elem_add(e, p, len);
            e->in_num++;
            e->in_len += len;
        } else {
            if (e->in_num)
                return -EIO;            /* readable after writable */
            ret = elem_add(e, p, len);
            e->out_num++;
            e->out_len += len;
        }
        if (ret < 0)
            return ret;
        if (!(flags & VRING_DESC_F_NEXT))
            return 0;
        if (next >= max)
            return -EIO;
        i = next;
    }
}

int vq_pop(struct virtqueue *vq, const struct virtio_mem *mem,
           struct vq_elem *e)
{
    uint8_t *avail = map_avail(vq, mem);
    uint16_t avail_idx, head;
    int ret;

    if (!avail)
        return -EIO;
    avail_idx = ld16(avail + 2);
    if (avail_idx == vq->last_avail)
        return 0;
    /* The driver cannot have published more entries than the ring has. */
    if ((uint16_t)(avail_idx - vq->last_avail) > vq->num)
        return -EIO;
    /* Read the ring entry only after the index that covers it. */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    head = ld16(avail + 4 + 2 * (size_t)(vq->last_avail & (vq->num - 1)));
    if (head >= vq->num)
        return -EIO;
    e->head = head;
    e->out_num = e->in_num = 0;
    e->out_len = e->in_len = 0;
    ret = walk_chain(vq, mem, head, e);
    if (ret < 0)
        return ret;
    vq->last_avail++;
    vq->inflight++;
    return 1;
}

int vq_push(struct virtqueue *vq, const struct virtio_mem *mem, uint16_t head,
            uint32_t len)
{
    uint8_t *used = map_used(vq, mem);
    uint8_t *ent;

    if (vq->inflight)
        vq->inflight--;
    if (!used)
        return -EIO;
    ent = used + 4 + 8 * (size_t)(vq->used_idx & (vq->num - 1));
    st32(ent, head);
    st32(ent + 4, len);
    /* The entry must be visible before the index that publishes it. */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    vq->used_idx++;
    st16(used + 2, vq->used_idx);
    return 0;
}

bool vq_need_notify(struct virtqueue *vq, const struct virtio_mem *mem)
{
    uint8_t *avail = map_avail(vq, mem);
    uint16_t old, new, event;
    bool valid;

    if (!avail)
        return false;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!vq->event_idx)
        return !(ld16(avail) & VRING_AVAIL_F_NO_INTERRUPT);
    old = vq->signalled_used;
    new = vq->used_idx;
    valid = vq->signalled_valid;
    vq->signalled_used = new;
    vq->signalled_valid = true;
    event = ld16(avail + 4 + 2 * (size_t)vq->num);
    /* virtio 1.1, 2.6.7.2: notify when used_event lies in [old, new). */
    return !valid || (uint16_t)(new - event - 1) < (uint16_t)(new - old);
}

void vq_update_avail_event(struct virtqueue *vq, const struct virtio_mem *mem)
{
    uint8_t *used;

    if (!vq->event_idx)
        return;
    used = map_used(vq, mem);
    if (used)
        st16(used + 4 + 8 * (size_t)vq->num, vq->last_avail);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

void vq_elem_free(struct vq_elem *e)
{
    free(e->iov);
    e->iov = NULL;
    e->iov_cap = 0;
}
