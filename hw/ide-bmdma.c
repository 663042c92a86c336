/*
 * hw/ide-bmdma.c — the PIIX bus-master DMA engine behind BAR4: command,
 * status and PRD pointer registers per channel, and the PRD walker that
 * turns a guest's descriptor table into an iovec over guest RAM. The
 * walker never touches memory outside RAM: such buffers read as zero and
 * swallow writes, like unassigned memory in QEMU.
 */
#include "hw/ide-int.h"

#include <string.h>

/* Source of zeroes for DMA from outside RAM. */
static const uint8_t zero_buf[65536];

void bmdma_reset(struct bmdma *bm)
{
    *bm = (struct bmdma){ 0 };
}

void bmdma_start_dma(struct ide_bus *bus, struct ide_drive *s, ide_dma_cb_fn *cb)
{
    struct bmdma *bm = &bus->bm;

    bm->dma_cb = cb;
    bm->dma_drive = s;
    s->dma_cb = cb;
    bm->cur_prd_last = false;
    bm->cur_prd_addr = 0;
    bm->cur_prd_len = 0;
    if (bm->status & BM_STATUS_DMAING)
        cb(s, 0);
}

void bmdma_set_inactive(struct ide_bus *bus, bool more)
{
    struct bmdma *bm = &bus->bm;

    bm->dma_cb = NULL;
    bm->dma_drive = NULL;
    if (more)
        bm->status |= BM_STATUS_DMAING;
    else
        bm->status &= ~BM_STATUS_DMAING;
}

/* Next PRD into cur_prd_*; false at the end of the table. The table is
 * cut at one page, so a table without EOT cannot run on. */
static bool next_prd(struct ide_bus *bus)
{
    struct bmdma *bm = &bus->bm;
    uint8_t b[8];
    uint32_t size;

    if (bm->cur_prd_last || bm->cur_addr - bm->addr >= BMDMA_PAGE_SIZE)
        return false;
    if (!ide_bm_enabled(bus) ||
        machine_dma_read(bus->ctrl->m, bm->cur_addr, b, 8) < 0)
        memset(b, 0, sizeof(b));
    bm->cur_addr += 8;
    bm->cur_prd_addr = b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24;
    size = b[4] | b[5] << 8 | b[6] << 16 | (uint32_t)b[7] << 24;
    bm->cur_prd_len = size & 0xfffe;
    if (bm->cur_prd_len == 0)
        bm->cur_prd_len = 0x10000;      /* 0 means 64 KiB */
    bm->cur_prd_last = size & 0x80000000u;
    return true;
}

int32_t bmdma_prepare_buf(struct ide_bus *bus, int32_t limit, int *iovcnt,
                          bool to_device)
{
    struct bmdma *bm = &bus->bm;
    struct ide_drive *s = bm->dma_drive;
    int32_t sg_size = 0;
    int n = 0;

    s->io_buffer_size = 0;
    for (;;) {
        if (bm->cur_prd_len == 0 && !next_prd(bus))
            break;
        uint32_t l = bm->cur_prd_len;
        /* Consume PRDs beyond the transfer, but put no bytes for them. */
        uint32_t sg_len = MIN((uint32_t)(limit - sg_size), l);
        if (sg_len && n < IDE_MAX_IOV) {
            void *p = NULL;
            if (ide_bm_enabled(bus))
                p = machine_ram_ptr(bus->ctrl->m, bm->cur_prd_addr, sg_len);
            if (!p)
                p = to_device ? (void *)zero_buf : bus->sink;
            bus->iov[n].iov_base = p;
            bus->iov[n].iov_len = sg_len;
            n++;
            sg_size += sg_len;
        }
        bm->cur_prd_addr += l;
        bm->cur_prd_len = 0;
        s->io_buffer_size += l;
    }
    *iovcnt = n;
    return sg_size;
}

int bmdma_rw_buf(struct ide_bus *bus, bool is_write)
{
    struct bmdma *bm = &bus->bm;
    struct ide_drive *s = bm->dma_drive;
    struct machine *m = bus->ctrl->m;

    for (;;) {
        int32_t l = (int32_t)s->io_buffer_size - (int32_t)s->io_buffer_index;
        if (l <= 0)
            break;
        if (bm->cur_prd_len == 0 && !next_prd(bus))
            return 0;
        if ((uint32_t)l > bm->cur_prd_len)
            l = bm->cur_prd_len;
        uint8_t *buf = s->io_buffer + s->io_buffer_index;
        if (is_write) {
            if (ide_bm_enabled(bus))
                machine_dma_write(m, bm->cur_prd_addr, buf, l);
        } else if (!ide_bm_enabled(bus) ||
                   machine_dma_read(m, bm->cur_prd_addr, buf, l) < 0) {
            memset(buf, 0, l);
        }
        bm->cur_prd_addr += l;
        bm->cur_prd_len -= l;
        s->io_buffer_index += l;
    }
    return 1;
}

/* ------------------------------------------------------------------ */
/* Registers                                                           */
/* ------------------------------------------------------------------ */

static void bmdma_cmd_writeb(struct ide_bus *bus, uint8_t val)
{
    struct bmdma *bm = &bus->bm;

    if ((val & BM_CMD_START) != (bm->cmd & BM_CMD_START)) {
        if (!(val & BM_CMD_START)) {
            /* A request in flight still completes; the engine stops. */
            bm->status &= ~BM_STATUS_DMAING;
        } else {
            bm->cur_addr = bm->addr;
            if (!(bm->status & BM_STATUS_DMAING)) {
                bm->status |= BM_STATUS_DMAING;
                if (bm->dma_cb && bm->dma_drive && !bm->dma_drive->dma_inflight)
                    bm->dma_cb(bm->dma_drive, 0);
            }
        }
    }
    bm->cmd = val & (BM_CMD_START | BM_CMD_READ);
}

static void bmdma_status_writeb(struct bmdma *bm, uint8_t val)
{
    bm->status = (val & 0x60) | (bm->status & BM_STATUS_DMAING) |
                 (bm->status & ~val & (BM_STATUS_ERROR | BM_STATUS_INT));
}

static uint64_t all_ones(unsigned size)
{
    return size >= 8 ? UINT64_MAX : (1ull << (size * 8)) - 1;
}

static uint64_t bmdma_read(void *opaque, uint64_t off, unsigned size)
{
    struct ide_controller *c = opaque;
    struct bmdma *bm = &c->bus[off >= 8].bm;
    unsigned reg = off & 7;

    if (reg < 4) {
        if (size != 1 || reg + size > 4)
            return all_ones(size);
        return reg == 0 ? bm->cmd : reg == 2 ? bm->status : 0xff;
    }
    if (reg + size > 8)
        return all_ones(size);
    return (bm->addr >> ((reg - 4) * 8)) & all_ones(size);
}

static void bmdma_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
    struct ide_controller *c = opaque;
    struct ide_bus *bus = &c->bus[off >= 8];
    struct bmdma *bm = &bus->bm;
    unsigned reg = off & 7;

    if (reg < 4) {
        if (size != 1)
            return;
        if (reg == 0)
            bmdma_cmd_writeb(bus, val);
        else if (reg == 2)
            bmdma_status_writeb(bm, val);
        return;
    }
    if (reg + size > 8)
        return;
    unsigned shift = (reg - 4) * 8;
    uint32_t mask = (uint32_t)all_ones(size);
    bm->addr &= ~(mask << shift);
    bm->addr |= ((uint32_t)(val & mask) << shift) & ~3u;
}

const struct io_region ide_bmdma_region_template = {
    .name = "piix-bmdma",
    .read = bmdma_read,
    .write = bmdma_write,
    .size = 16,
};
