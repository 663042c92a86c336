/*
 * hw/ide-ata.c — ATA commands: the 256-entry command table, IDENTIFY,
 * PIO and DMA sector transfers, TRIM, flush and the housekeeping
 * commands. Sequencing and register values follow QEMU 7.2's hw/ide so
 * guest traces compare equal; writes to a read-only disk abort up front.
 */
#include "hw/ide-int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HD_OK       (1u << IDE_HD)
#define CD_OK       (1u << IDE_CD)
#define ALL_OK      (HD_OK | CD_OK)
#define SET_DSC     (1u << 8)

#define DSM_TRIM    0x01

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = v;
    p[1] = v >> 8;
}

/* ATA strings: space padded, bytes swapped within each word. */
static void padstr(uint8_t *str, const char *src, int len)
{
    for (int i = 0; i < len; i++)
        str[i ^ 1] = *src ? *src++ : ' ';
}

/* ------------------------------------------------------------------ */
/* Geometry and IDENTIFY                                               */
/* ------------------------------------------------------------------ */

/* Heads/sectors from an MBR partition ending on a cylinder boundary. */
static bool guess_disk_lchs(struct ide_drive *s, unsigned *cyls,
                            unsigned *heads, unsigned *secs)
{
    uint8_t buf[512];

    if (blk_pread(s->blk, 0, buf, sizeof(buf)) < 0)
        return false;
    if (buf[510] != 0x55 || buf[511] != 0xaa)
        return false;
    for (int i = 0; i < 4; i++) {
        const uint8_t *p = buf + 0x1be + 16 * i;
        uint32_t nr_sects = p[12] | p[13] << 8 | p[14] << 16 | (uint32_t)p[15] << 24;
        unsigned h = p[5] + 1, sec = p[6] & 63;
        uint64_t c;

        if (!nr_sects || !p[5] || !sec)
            continue;
        c = s->nb_sectors / (h * sec);
        if (c < 1 || c > 16383)
            continue;
        *heads = h;
        *secs = sec;
        *cyls = c;
        return true;
    }
    return false;
}

void ide_geometry_guess(struct ide_drive *s)
{
    unsigned c, h, sec;

    if (guess_disk_lchs(s, &c, &h, &sec) && h <= 16) {
        s->cylinders = c;
        s->heads = h;
        s->sectors = sec;
        return;
    }
    c = s->nb_sectors / (16 * 63);
    s->cylinders = c > 16383 ? 16383 : c < 2 ? 2 : c;
    s->heads = 16;
    s->sectors = 63;
}

void ide_identify(struct ide_drive *s)
{
    uint8_t *p = (uint8_t *)s->identify;
    uint64_t oldsize;

    if (s->identify_set)
        goto fill_buffer;
    memset(p, 0, 512);
    put_le16(p + 0 * 2, 0x0040);
    put_le16(p + 1 * 2, s->cylinders);
    put_le16(p + 3 * 2, s->heads);
    put_le16(p + 4 * 2, 512 * s->sectors);
    put_le16(p + 5 * 2, 512);
    put_le16(p + 6 * 2, s->sectors);
    padstr(p + 10 * 2, s->serial, 20);
    put_le16(p + 20 * 2, 3);            /* buffer type */
    put_le16(p + 21 * 2, 512);          /* cache size in sectors */
    put_le16(p + 22 * 2, 4);            /* ecc bytes */
    padstr(p + 23 * 2, s->version, 8);
    padstr(p + 27 * 2, s->model, 40);
    put_le16(p + 47 * 2, 0x8000 | MAX_MULT_SECTORS);
    put_le16(p + 48 * 2, 1);            /* dword I/O */
    put_le16(p + 49 * 2, (1 << 11) | (1 << 9) | (1 << 8));  /* DMA, LBA, IORDY */
    put_le16(p + 51 * 2, 0x200);        /* PIO transfer cycle */
    put_le16(p + 52 * 2, 0x200);        /* DMA transfer cycle */
    put_le16(p + 53 * 2, 1 | (1 << 1) | (1 << 2));  /* words 54-58, 64-70, 88 */
    put_le16(p + 54 * 2, s->cylinders);
    put_le16(p + 55 * 2, s->heads);
    put_le16(p + 56 * 2, s->sectors);
    oldsize = (uint64_t)s->cylinders * s->heads * s->sectors;
    put_le16(p + 57 * 2, oldsize);
    put_le16(p + 58 * 2, oldsize >> 16);
    if (s->mult_sectors)
        put_le16(p + 59 * 2, 0x100 | s->mult_sectors);
    /* words 60-61 and 100-103, the capacity: ide_identify_size */
    put_le16(p + 62 * 2, 0x07);         /* single word dma0-2 */
    put_le16(p + 63 * 2, 0x07);         /* mdma0-2 */
    put_le16(p + 64 * 2, 0x03);         /* pio3-4 */
    put_le16(p + 65 * 2, 120);
    put_le16(p + 66 * 2, 120);
    put_le16(p + 67 * 2, 120);
    put_le16(p + 68 * 2, 120);
    put_le16(p + 69 * 2, 1 << 14);      /* zeroes after TRIM */
    put_le16(p + 80 * 2, 0xf0);         /* ATA-4 to ATA-7 */
    put_le16(p + 81 * 2, 0x16);
    put_le16(p + 82 * 2, (1 << 14) | (1 << 5) | 1);     /* SMART, write cache */
    put_le16(p + 83 * 2, (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10));
    put_le16(p + 84 * 2, 1 << 14);
    put_le16(p + 85 * 2, (1 << 14) | (s->wce ? 1 << 5 : 0) | 1);
    put_le16(p + 86 * 2, (1 << 13) | (1 << 12) | (1 << 10));
    put_le16(p + 87 * 2, 1 << 14);
    put_le16(p + 88 * 2, 0x3f | (1 << 13));     /* udma0-5, udma5 selected */
    put_le16(p + 93 * 2, 1 | (1 << 14) | 0x2000);
    put_le16(p + 106 * 2, 0x6000);      /* one logical sector per physical */
    put_le16(p + 169 * 2, 1);           /* TRIM */
    s->identify_set = true;
    ide_identify_size(s);

fill_buffer:
    memcpy(s->io_buffer, p, 512);
}

/* After a resize: the capacity words of IDENTIFY data the guest has seen
 * already (the CHS geometry stays, as on QEMU). */
void ide_identify_size(struct ide_drive *s)
{
    uint8_t *p = (uint8_t *)s->identify;

    if (!s->identify_set)
        return;
    put_le16(p + 60 * 2, s->nb_sectors);
    put_le16(p + 61 * 2, s->nb_sectors >> 16);
    put_le16(p + 100 * 2, s->nb_sectors);
    put_le16(p + 101 * 2, s->nb_sectors >> 16);
    put_le16(p + 102 * 2, s->nb_sectors >> 32);
    put_le16(p + 103 * 2, s->nb_sectors >> 48);
}

void ide_atapi_identify(struct ide_drive *s)
{
    uint8_t *p = (uint8_t *)s->identify;

    if (s->identify_set)
        goto fill_buffer;
    memset(p, 0, 512);
    /* removable ATAPI CD-ROM, 12-byte packets, 50 us DRQ */
    put_le16(p + 0 * 2, (2 << 14) | (5 << 8) | (1 << 7) | (2 << 5));
    padstr(p + 10 * 2, s->serial, 20);
    put_le16(p + 20 * 2, 3);
    put_le16(p + 21 * 2, 512);
    put_le16(p + 22 * 2, 4);
    padstr(p + 23 * 2, s->version, 8);
    padstr(p + 27 * 2, s->model, 40);
    put_le16(p + 48 * 2, 1);
    put_le16(p + 49 * 2, 1 << 9 | 1 << 8);      /* LBA and DMA */
    put_le16(p + 53 * 2, 7);
    put_le16(p + 62 * 2, 7);
    put_le16(p + 63 * 2, 7);
    put_le16(p + 64 * 2, 3);
    put_le16(p + 65 * 2, 0xb4);
    put_le16(p + 66 * 2, 0xb4);
    put_le16(p + 67 * 2, 0x12c);
    put_le16(p + 68 * 2, 0xb4);
    put_le16(p + 71 * 2, 30);
    put_le16(p + 72 * 2, 30);
    put_le16(p + 80 * 2, 0x1e);         /* ATAPI-1 to ATAPI-4 */
    put_le16(p + 88 * 2, 0x3f | (1 << 13));
    s->identify_set = true;

fill_buffer:
    memcpy(s->io_buffer, p, 512);
}

/* ------------------------------------------------------------------ */
/* Addressing                                                          */
/* ------------------------------------------------------------------ */

/* The count registers become one number: 0 means 256 (or 65536). */
static void lba48_transform(struct ide_drive *s, bool lba48)
{
    s->lba48 = lba48;
    if (!lba48) {
        if (!s->nsector)
            s->nsector = 256;
    } else if (!s->nsector && !s->hob_nsector) {
        s->nsector = 65536;
    } else {
        s->nsector = (uint32_t)s->hob_nsector << 8 | (s->nsector & 0xff);
    }
}

int64_t ide_get_sector(struct ide_drive *s)
{
    if (s->select & ATA_DEV_LBA) {
        if (s->lba48)
            return (int64_t)s->hob_hcyl << 40 | (int64_t)s->hob_lcyl << 32 |
                   (int64_t)s->hob_sector << 24 | (int64_t)s->hcyl << 16 |
                   (int64_t)s->lcyl << 8 | s->sector;
        return (int64_t)(s->select & ATA_DEV_LBA_MSB) << 24 |
               s->hcyl << 16 | s->lcyl << 8 | s->sector;
    }
    return ((int64_t)(s->hcyl << 8 | s->lcyl) * s->heads + (s->select & ATA_DEV_HS))
           * s->sectors + (s->sector - 1);
}

void ide_set_sector(struct ide_drive *s, int64_t sector_num)
{
    if (s->select & ATA_DEV_LBA) {
        if (s->lba48) {
            s->sector = sector_num;
            s->lcyl = sector_num >> 8;
            s->hcyl = sector_num >> 16;
            s->hob_sector = sector_num >> 24;
            s->hob_lcyl = sector_num >> 32;
            s->hob_hcyl = sector_num >> 40;
        } else {
            s->select = (s->select & ~ATA_DEV_LBA_MSB) |
                        ((sector_num >> 24) & ATA_DEV_LBA_MSB);
            s->hcyl = sector_num >> 16;
            s->lcyl = sector_num >> 8;
            s->sector = sector_num;
        }
    } else if (s->heads && s->sectors) {
        /* A guest may program 0 sectors per track: then CHS stays put. */
        unsigned cyl = sector_num / (s->heads * s->sectors);
        unsigned r = sector_num % (s->heads * s->sectors);
        s->hcyl = cyl >> 8;
        s->lcyl = cyl;
        s->select = (s->select & ~ATA_DEV_HS) | ((r / s->sectors) & ATA_DEV_HS);
        s->sector = (r % s->sectors) + 1;
    }
}

static bool sect_range_ok(struct ide_drive *s, int64_t sector, uint64_t n)
{
    uint64_t total = s->nb_sectors;

    return sector >= 0 && (uint64_t)sector <= total && n <= total - sector;
}

/* Error of a PIO command: QEMU reports range and I/O errors as ABRT. */
static void ide_rw_error(struct ide_drive *s)
{
    ide_abort_command(s);
    ide_set_irq(s->bus);
}

/* ------------------------------------------------------------------ */
/* PIO sectors                                                         */
/* ------------------------------------------------------------------ */

static void sector_read_done(struct ide_drive *s, int ret)
{
    uint32_t n;

    s->status &= ~BUSY_STAT;
    if (ret < 0) {
        ide_rw_error(s);
        return;
    }
    n = MIN(s->nsector, (uint32_t)s->req_nb_sectors);
    ide_set_sector(s, ide_get_sector(s) + n);
    s->nsector -= n;
    ide_transfer_start(s, 0, n * 512, END_SECTOR_READ);
    ide_set_irq(s->bus);
}

void ide_sector_read(struct ide_drive *s)
{
    int64_t sector_num;
    uint32_t n;

    s->status = READY_STAT | SEEK_STAT;
    s->error = 0;
    sector_num = ide_get_sector(s);
    n = s->nsector;
    if (n == 0) {
        ide_transfer_stop(s);
        return;
    }
    s->status |= BUSY_STAT;
    n = MIN(n, (uint32_t)s->req_nb_sectors);
    if (!sect_range_ok(s, sector_num, n)) {
        ide_rw_error(s);
        return;
    }
    ide_pio_read(s, sector_num * 512, 0, n * 512, sector_read_done);
}

static void sector_write_done(struct ide_drive *s, int ret)
{
    uint32_t n;

    s->status &= ~BUSY_STAT;
    if (ret < 0) {
        ide_rw_error(s);
        return;
    }
    n = MIN(s->nsector, (uint32_t)s->req_nb_sectors);
    s->nsector -= n;
    ide_set_sector(s, ide_get_sector(s) + n);
    if (s->nsector == 0) {
        ide_transfer_stop(s);
    } else {
        uint32_t n1 = MIN(s->nsector, (uint32_t)s->req_nb_sectors);
        ide_transfer_start(s, 0, n1 * 512, END_SECTOR_WRITE);
    }
    ide_set_irq(s->bus);
}

void ide_sector_write(struct ide_drive *s)
{
    int64_t sector_num;
    uint32_t n;

    s->status = READY_STAT | SEEK_STAT | BUSY_STAT;
    sector_num = ide_get_sector(s);
    n = MIN(s->nsector, (uint32_t)s->req_nb_sectors);
    if (!sect_range_ok(s, sector_num, n)) {
        ide_rw_error(s);
        return;
    }
    ide_pio_write(s, sector_num * 512, 0, n * 512, sector_write_done);
}

/* ------------------------------------------------------------------ */
/* DMA                                                                 */
/* ------------------------------------------------------------------ */

static void ide_set_inactive(struct ide_drive *s, bool more)
{
    s->dma_inflight = false;
    bmdma_set_inactive(s->bus, more);
}

static void ide_dma_error(struct ide_drive *s)
{
    ide_abort_command(s);
    ide_set_inactive(s, false);
    ide_set_irq(s->bus);
}

struct dma_req {
    struct ide_drive *s;
    unsigned gen;
};

static void dma_req_complete(void *opaque, int ret)
{
    struct dma_req *r = opaque;
    struct ide_drive *s = r->s;

    if (r->gen == s->gen && s->dma_cb) {
        s->dma_inflight = false;
        s->dma_cb(s, ret);
    }
    free(r);
}

static struct dma_req *dma_req_new(struct ide_drive *s)
{
    struct dma_req *r = malloc(sizeof(*r));

    if (r) {
        r->s = s;
        r->gen = s->gen;
        s->dma_inflight = true;
    }
    return r;
}

/* TRIM: the DMA'd buffer holds 8-byte entries (48-bit LBA, 16-bit count),
 * discarded one after the other. */
struct trim_req {
    struct ide_drive *s;
    unsigned gen;
    uint8_t *buf;
    size_t len, pos;
};

static void trim_next(void *opaque, int ret);

static void trim_finish(struct trim_req *t, int ret)
{
    struct ide_drive *s = t->s;
    bool current = t->gen == s->gen;

    free(t->buf);
    free(t);
    if (current && s->dma_cb) {
        s->dma_inflight = false;
        s->dma_cb(s, ret);
    }
}

static void trim_next(void *opaque, int ret)
{
    struct trim_req *t = opaque;
    struct ide_drive *s = t->s;

    while (ret == 0 && t->pos + 8 <= t->len) {
        const uint8_t *e = t->buf + t->pos;
        uint64_t entry = 0;

        for (int i = 0; i < 8; i++)
            entry |= (uint64_t)e[i] << (8 * i);
        t->pos += 8;
        uint64_t sector = entry & 0x0000ffffffffffffull;
        uint16_t count = entry >> 48;
        if (!count)
            continue;
        if (t->gen != s->gen)
            break;
        if (!sect_range_ok(s, sector, count)) {
            ret = -EINVAL;
            break;
        }
        ret = blk_aio_pdiscard(s->blk, sector * 512, (uint64_t)count * 512,
                               trim_next, t);
        if (ret == 0)
            return;
    }
    trim_finish(t, ret);
}

static void ide_dma_cb(struct ide_drive *s, int ret)
{
    struct ide_bus *bus = s->bus;
    bool stay_active = false;
    int64_t sector_num;
    uint32_t n;
    int32_t prep;
    int iovcnt;

    if (ret < 0) {
        ide_dma_error(s);
        return;
    }
    if (s->io_buffer_size > s->nsector * 512)
        stay_active = true;     /* PRDs longer than the transfer */
    n = s->sg_bytes >> 9;
    sector_num = ide_get_sector(s);
    if (n > 0) {
        sector_num += n;
        ide_set_sector(s, sector_num);
        s->nsector -= n;
    }
    s->sg_bytes = 0;

    if (s->nsector == 0) {
        s->status = READY_STAT | SEEK_STAT;
        ide_set_irq(bus);
        ide_set_inactive(s, stay_active);
        return;
    }

    n = s->nsector;
    s->io_buffer_index = 0;
    s->io_buffer_size = n * 512;
    prep = bmdma_prepare_buf(bus, s->io_buffer_size, &iovcnt,
                             s->dma_cmd != IDE_DMA_READ);
    if (prep < (int32_t)(n * 512)) {
        /* PRDs shorter than the transfer: nothing moves, the engine stops
         * without an interrupt (QEMU 7.2). */
        s->status = READY_STAT | SEEK_STAT;
        ide_set_inactive(s, false);
        return;
    }
    prep &= ~511;
    /* Trim the list to whole sectors. */
    {
        size_t left = prep;
        int i;
        for (i = 0; i < iovcnt && left; i++) {
            if (bus->iov[i].iov_len > left)
                bus->iov[i].iov_len = left;
            left -= bus->iov[i].iov_len;
        }
        iovcnt = i;
    }
    s->sg_bytes = prep;

    if ((s->dma_cmd == IDE_DMA_READ || s->dma_cmd == IDE_DMA_WRITE) &&
        !sect_range_ok(s, sector_num, prep >> 9)) {
        ide_dma_error(s);
        return;
    }

    if (s->dma_cmd == IDE_DMA_TRIM) {
        struct trim_req *t = calloc(1, sizeof(*t));
        uint8_t *buf = malloc(prep);

        if (!t || !buf) {
            free(t);
            free(buf);
            ide_dma_error(s);
            return;
        }
        iov_to_buf(bus->iov, iovcnt, 0, buf, prep);
        *t = (struct trim_req){ .s = s, .gen = s->gen, .buf = buf, .len = prep };
        s->dma_inflight = true;
        trim_next(t, 0);
        return;
    }

    struct dma_req *r = dma_req_new(s);
    if (!r) {
        ide_dma_error(s);
        return;
    }
    if (s->dma_cmd == IDE_DMA_READ)
        ret = blk_aio_preadv(s->blk, sector_num * 512, bus->iov, iovcnt,
                             dma_req_complete, r);
    else
        ret = blk_aio_pwritev(s->blk, sector_num * 512, bus->iov, iovcnt, 0,
                              dma_req_complete, r);
    if (ret < 0) {
        free(r);
        s->dma_inflight = false;
        ide_dma_error(s);
    }
}

static void ide_sector_start_dma(struct ide_drive *s, enum ide_dma_cmd cmd)
{
    s->status = READY_STAT | SEEK_STAT | DRQ_STAT;
    s->io_buffer_size = 0;
    s->sg_bytes = 0;
    s->dma_cmd = cmd;
    bmdma_start_dma(s->bus, s, ide_dma_cb);
}

void ide_dma_cancel(struct ide_drive *s)
{
    struct bmdma *bm = &s->bus->bm;

    if (bm->dma_drive != s)
        return;
    /* The request in flight, if any, is dropped by the generation bump
     * of the reset that follows. */
    bm->dma_cb = NULL;
    bm->dma_drive = NULL;
    bm->status &= ~BM_STATUS_DMAING;
    s->dma_inflight = false;
}

/* ------------------------------------------------------------------ */
/* Commands                                                            */
/* ------------------------------------------------------------------ */

static bool read_only(struct ide_drive *s)
{
    /* Asked on every command: the mode can change while the guest runs. */
    return blk_is_read_only(s->blk);
}

static bool cmd_nop(struct ide_drive *s, uint8_t cmd)
{
    return true;
}

static bool cmd_data_set_management(struct ide_drive *s, uint8_t cmd)
{
    if (s->feature == DSM_TRIM && s->present) {
        if (read_only(s)) {
            ide_abort_command(s);
            return true;
        }
        ide_sector_start_dma(s, IDE_DMA_TRIM);
        return false;
    }
    ide_abort_command(s);
    return true;
}

static bool cmd_device_reset(struct ide_drive *s, uint8_t cmd)
{
    ide_transfer_halt(s);
    ide_dma_cancel(s);
    ide_reset_drive(s);
    s->status = 0;
    return false;
}

static bool cmd_identify(struct ide_drive *s, uint8_t cmd)
{
    if (s->present && s->kind != IDE_CD) {
        ide_identify(s);
        s->status = READY_STAT | SEEK_STAT;
        ide_transfer_start(s, 0, 512, END_STOP);
        ide_set_irq(s->bus);
        return false;
    }
    if (s->kind == IDE_CD)
        ide_set_signature(s);
    ide_abort_command(s);
    return true;
}

static bool cmd_identify_packet(struct ide_drive *s, uint8_t cmd)
{
    ide_atapi_identify(s);
    s->status = READY_STAT | SEEK_STAT;
    ide_transfer_start(s, 0, 512, END_STOP);
    ide_set_irq(s->bus);
    return false;
}

static bool cmd_packet(struct ide_drive *s, uint8_t cmd)
{
    return ide_cmd_packet(s);
}

static bool cmd_verify(struct ide_drive *s, uint8_t cmd)
{
    lba48_transform(s, cmd == 0x42);
    return true;
}

static bool cmd_set_multiple_mode(struct ide_drive *s, uint8_t cmd)
{
    uint32_t n = s->nsector & 0xff;

    if (n != 0 && (n > MAX_MULT_SECTORS || (n & (n - 1)) != 0))
        ide_abort_command(s);
    else
        s->mult_sectors = n;
    return true;
}

static bool cmd_read_multiple(struct ide_drive *s, uint8_t cmd)
{
    if (!s->present || !s->mult_sectors) {
        ide_abort_command(s);
        return true;
    }
    lba48_transform(s, cmd == 0x29);
    s->req_nb_sectors = s->mult_sectors;
    ide_sector_read(s);
    return false;
}

static bool cmd_write_multiple(struct ide_drive *s, uint8_t cmd)
{
    uint32_t n;

    if (!s->present || !s->mult_sectors || read_only(s)) {
        ide_abort_command(s);
        return true;
    }
    lba48_transform(s, cmd == 0x39);
    s->req_nb_sectors = s->mult_sectors;
    n = MIN(s->nsector, (uint32_t)s->req_nb_sectors);
    s->status = SEEK_STAT | READY_STAT;
    ide_transfer_start(s, 0, 512 * n, END_SECTOR_WRITE);
    return false;
}

static bool cmd_read_pio(struct ide_drive *s, uint8_t cmd)
{
    if (s->kind == IDE_CD) {
        ide_set_signature(s);
        ide_abort_command(s);
        return true;
    }
    if (!s->present) {
        ide_abort_command(s);
        return true;
    }
    lba48_transform(s, cmd == 0x24);
    s->req_nb_sectors = 1;
    ide_sector_read(s);
    return false;
}

static bool cmd_write_pio(struct ide_drive *s, uint8_t cmd)
{
    /* Read-only: abort before the data phase, so nothing is written. */
    if (!s->present || read_only(s)) {
        ide_abort_command(s);
        return true;
    }
    lba48_transform(s, cmd == 0x34);
    s->req_nb_sectors = 1;
    s->status = SEEK_STAT | READY_STAT;
    ide_transfer_start(s, 0, 512, END_SECTOR_WRITE);
    return false;
}

static bool cmd_read_dma(struct ide_drive *s, uint8_t cmd)
{
    if (!s->present) {
        ide_abort_command(s);
        return true;
    }
    lba48_transform(s, cmd == 0x25);
    ide_sector_start_dma(s, IDE_DMA_READ);
    return false;
}

static bool cmd_write_dma(struct ide_drive *s, uint8_t cmd)
{
    if (!s->present || read_only(s)) {
        ide_abort_command(s);
        return true;
    }
    lba48_transform(s, cmd == 0x35);
    ide_sector_start_dma(s, IDE_DMA_WRITE);
    return false;
}

static void flush_done(struct ide_drive *s, int ret)
{
    if (ret < 0) {
        ide_rw_error(s);
        return;
    }
    s->status = READY_STAT | SEEK_STAT;
    ide_set_irq(s->bus);
}

static bool cmd_flush_cache(struct ide_drive *s, uint8_t cmd)
{
    if (!s->present) {
        flush_done(s, 0);
        return false;
    }
    s->status |= BUSY_STAT;
    ide_flush(s, flush_done);
    return false;
}

static bool cmd_seek(struct ide_drive *s, uint8_t cmd)
{
    return true;
}

static bool cmd_read_native_max(struct ide_drive *s, uint8_t cmd)
{
    if (s->nb_sectors == 0) {
        ide_abort_command(s);
        return true;
    }
    lba48_transform(s, cmd == 0x27);
    ide_set_sector(s, s->nb_sectors - 1);
    return true;
}

static bool cmd_check_power_mode(struct ide_drive *s, uint8_t cmd)
{
    s->nsector = 0xff;      /* active or idle */
    return true;
}

static bool cmd_set_features(struct ide_drive *s, uint8_t cmd)
{
    uint8_t *id = (uint8_t *)s->identify;

    if (!s->present) {
        ide_abort_command(s);
        return true;
    }
    switch (s->feature) {
    case 0x02:      /* write cache enable */
        s->wce = true;
        put_le16(id + 85 * 2, (1 << 14) | (1 << 5) | 1);
        return true;
    case 0x82:      /* write cache disable: flush what is cached */
        s->wce = false;
        put_le16(id + 85 * 2, (1 << 14) | 1);
        s->status |= BUSY_STAT;
        ide_flush(s, flush_done);
        return false;
    case 0xcc: case 0x66: case 0xaa: case 0x55: case 0x05: case 0x85:
    case 0x69: case 0x67: case 0x96: case 0x9a: case 0x42: case 0xc2:
        return true;
    case 0x03: {    /* set transfer mode */
        uint8_t val = s->nsector & 0x07;

        switch ((s->nsector & 0xff) >> 3) {
        case 0x00:
        case 0x01:
            put_le16(id + 62 * 2, 0x07);
            put_le16(id + 63 * 2, 0x07);
            put_le16(id + 88 * 2, 0x3f);
            return true;
        case 0x02:
            put_le16(id + 62 * 2, 0x07 | (1 << (val + 8)));
            put_le16(id + 63 * 2, 0x07);
            put_le16(id + 88 * 2, 0x3f);
            return true;
        case 0x04:
            put_le16(id + 62 * 2, 0x07);
            put_le16(id + 63 * 2, 0x07 | (1 << (val + 8)));
            put_le16(id + 88 * 2, 0x3f);
            return true;
        case 0x08:
            put_le16(id + 62 * 2, 0x07);
            put_le16(id + 63 * 2, 0x07);
            put_le16(id + 88 * 2, 0x3f | (1 << (val + 8)));
            return true;
        }
        break;
    }
    }
    ide_abort_command(s);
    return true;
}

static bool cmd_exec_dev_diagnostic(struct ide_drive *s, uint8_t cmd)
{
    ide_set_signature(s);
    /* The error register holds the diagnostic code, not an error. */
    s->error = 0x01;
    if (s->kind == IDE_CD) {
        s->status = 0;
    } else {
        s->status = READY_STAT | SEEK_STAT;
        ide_set_irq(s->bus);
    }
    return false;
}

static bool cmd_specify(struct ide_drive *s, uint8_t cmd)
{
    if (s->present && s->kind != IDE_CD) {
        s->heads = (s->select & ATA_DEV_HS) + 1;
        s->sectors = s->nsector & 0xff;
        ide_set_irq(s->bus);
    } else {
        ide_abort_command(s);
    }
    return true;
}

/* SMART: a healthy disk with QEMU's attribute table. */
static const uint8_t smart_attributes[][12] = {
    /* id, flags, hflags, value, worst, raw (6 bytes), threshold */
    { 0x01, 0x03, 0x00, 0x64, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06 },
    { 0x03, 0x03, 0x00, 0x64, 0x64, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 },
    { 0x04, 0x02, 0x00, 0x64, 0x64, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14 },
    { 0x05, 0x03, 0x00, 0x64, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x24 },
    { 0x09, 0x03, 0x00, 0x64, 0x64, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 },
    { 0x0c, 0x03, 0x00, 0x64, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 },
    { 190,  0x03, 0x00, 0x45, 0x45, 0x1f, 0x00, 0x1f, 0x1f, 0x00, 0x00, 0x32 },
};

static void smart_checksum(uint8_t *buf)
{
    uint8_t sum = 0;

    for (int n = 0; n < 511; n++)
        sum += buf[n];
    buf[511] = 0x100 - sum;
}

static bool smart_reply(struct ide_drive *s)
{
    smart_checksum(s->io_buffer);
    s->status = READY_STAT | SEEK_STAT;
    ide_transfer_start(s, 0, 512, END_STOP);
    ide_set_irq(s->bus);
    return false;
}

static bool cmd_smart(struct ide_drive *s, uint8_t cmd)
{
    uint8_t *buf = s->io_buffer;
    int n;

    if (s->hcyl != 0xc2 || s->lcyl != 0x4f)
        goto abort_cmd;
    if (!s->smart_enabled && s->feature != 0xd8)
        goto abort_cmd;
    switch (s->feature) {
    case 0xd9:      /* disable */
        s->smart_enabled = false;
        return true;
    case 0xd8:      /* enable */
        s->smart_enabled = true;
        return true;
    case 0xd2:      /* attribute autosave */
        if (s->sector == 0x00)
            s->smart_autosave = false;
        else if (s->sector == 0xf1)
            s->smart_autosave = true;
        else
            goto abort_cmd;
        return true;
    case 0xda:      /* return status: threshold not exceeded */
        s->hcyl = 0xc2;
        s->lcyl = 0x4f;
        return true;
    case 0xd1:      /* read thresholds */
        memset(buf, 0, 512);
        buf[0] = 0x01;
        for (n = 0; n < (int)ARRAY_SIZE(smart_attributes); n++) {
            buf[2 + n * 12] = smart_attributes[n][0];
            buf[3 + n * 12] = smart_attributes[n][11];
        }
        return smart_reply(s);
    case 0xd0:      /* read data */
        memset(buf, 0, 512);
        buf[0] = 0x01;
        for (n = 0; n < (int)ARRAY_SIZE(smart_attributes); n++)
            memcpy(buf + 2 + n * 12, smart_attributes[n], 11);
        buf[362] = 0x02 | (s->smart_autosave ? 0x80 : 0x00);
        buf[363] = s->smart_selftest_count == 0 ? 0 :
                   s->smart_selftest_data[3 + (s->smart_selftest_count - 1) * 24];
        buf[364] = 0x20;
        buf[365] = 0x01;
        buf[367] = (1 << 4) | (1 << 3) | 1;
        buf[368] = 0x03;
        buf[369] = 0x00;
        buf[370] = 0x01;
        buf[372] = 0x02;
        buf[373] = 0x36;
        buf[374] = 0x01;
        return smart_reply(s);
    case 0xd5:      /* read log */
        memset(buf, 0, 512);
        buf[0] = 0x01;
        if (s->sector == 0x01) {
            /* summary error log: no errors */
        } else if (s->sector == 0x06) {
            buf[508] = s->smart_selftest_count;
            if (s->smart_selftest_count)
                memcpy(buf + 2, s->smart_selftest_data + 2, 504);
        } else {
            goto abort_cmd;
        }
        return smart_reply(s);
    case 0xd4:      /* execute off-line / self-test */
        if (s->sector > 2)
            goto abort_cmd;
        if (++s->smart_selftest_count > 21)
            s->smart_selftest_count = 1;
        n = 2 + (s->smart_selftest_count - 1) * 24;
        s->smart_selftest_data[n] = s->sector;
        s->smart_selftest_data[n + 1] = 0x00;   /* finished without error */
        s->smart_selftest_data[n + 2] = 0x34;   /* power-on hours */
        s->smart_selftest_data[n + 3] = 0x12;
        return true;
    }
abort_cmd:
    ide_abort_command(s);
    return true;
}

typedef bool ide_cmd_fn(struct ide_drive *s, uint8_t cmd);

/* Which drive kinds take each opcode; SET_DSC adds DSC to a clean finish. */
static const struct {
    ide_cmd_fn *handler;
    unsigned flags;
} ide_cmd_table[256] = {
    [0x06] = { cmd_data_set_management, HD_OK },
    [0x08] = { cmd_device_reset, CD_OK },
    [0x10] = { cmd_nop, HD_OK | SET_DSC },              /* RECALIBRATE */
    [0x20] = { cmd_read_pio, ALL_OK },                  /* READ SECTORS */
    [0x21] = { cmd_read_pio, HD_OK },
    [0x24] = { cmd_read_pio, HD_OK },                   /* READ SECTORS EXT */
    [0x25] = { cmd_read_dma, HD_OK },                   /* READ DMA EXT */
    [0x27] = { cmd_read_native_max, HD_OK | SET_DSC },
    [0x29] = { cmd_read_multiple, HD_OK },              /* READ MULTIPLE EXT */
    [0x30] = { cmd_write_pio, HD_OK },                  /* WRITE SECTORS */
    [0x31] = { cmd_write_pio, HD_OK },
    [0x34] = { cmd_write_pio, HD_OK },                  /* WRITE SECTORS EXT */
    [0x35] = { cmd_write_dma, HD_OK },                  /* WRITE DMA EXT */
    [0x39] = { cmd_write_multiple, HD_OK },             /* WRITE MULTIPLE EXT */
    [0x3c] = { cmd_write_pio, HD_OK },                  /* WRITE VERIFY */
    [0x40] = { cmd_verify, HD_OK | SET_DSC },           /* READ VERIFY */
    [0x41] = { cmd_verify, HD_OK | SET_DSC },
    [0x42] = { cmd_verify, HD_OK | SET_DSC },           /* READ VERIFY EXT */
    [0x70] = { cmd_seek, HD_OK | SET_DSC },
    [0x90] = { cmd_exec_dev_diagnostic, ALL_OK },
    [0x91] = { cmd_specify, HD_OK | SET_DSC },          /* INITIALIZE DEVICE PARAMETERS */
    [0x94] = { cmd_nop, HD_OK },                        /* STANDBY IMMEDIATE */
    [0x95] = { cmd_nop, HD_OK },                        /* IDLE IMMEDIATE */
    [0x96] = { cmd_nop, HD_OK },                        /* STANDBY */
    [0x97] = { cmd_nop, HD_OK },                        /* IDLE */
    [0x98] = { cmd_check_power_mode, HD_OK | SET_DSC },
    [0x99] = { cmd_nop, HD_OK },                        /* SLEEP */
    [0xa0] = { cmd_packet, CD_OK },
    [0xa1] = { cmd_identify_packet, CD_OK },
    [0xb0] = { cmd_smart, HD_OK | SET_DSC },
    [0xc4] = { cmd_read_multiple, HD_OK },
    [0xc5] = { cmd_write_multiple, HD_OK },
    [0xc6] = { cmd_set_multiple_mode, HD_OK | SET_DSC },
    [0xc8] = { cmd_read_dma, HD_OK },
    [0xc9] = { cmd_read_dma, HD_OK },
    [0xca] = { cmd_write_dma, HD_OK },
    [0xcb] = { cmd_write_dma, HD_OK },
    [0xe0] = { cmd_nop, HD_OK },                        /* STANDBY IMMEDIATE */
    [0xe1] = { cmd_nop, HD_OK },                        /* IDLE IMMEDIATE */
    [0xe2] = { cmd_nop, HD_OK },                        /* STANDBY */
    [0xe3] = { cmd_nop, HD_OK },                        /* IDLE */
    [0xe5] = { cmd_check_power_mode, HD_OK | SET_DSC },
    [0xe6] = { cmd_nop, HD_OK },                        /* SLEEP */
    [0xe7] = { cmd_flush_cache, ALL_OK },
    [0xea] = { cmd_flush_cache, HD_OK },                /* FLUSH CACHE EXT */
    [0xec] = { cmd_identify, ALL_OK },
    [0xef] = { cmd_set_features, ALL_OK | SET_DSC },
    [0xf5] = { cmd_nop, HD_OK | SET_DSC },              /* SECURITY FREEZE LOCK */
    [0xf8] = { cmd_read_native_max, HD_OK | SET_DSC },
};

void ide_exec_cmd(struct ide_bus *bus, uint8_t val)
{
    struct ide_drive *s = ide_active(bus);

    /* A missing slave ignores commands. */
    if (s != &bus->drives[0] && !s->present)
        return;
    /* Only DEVICE RESET to a packet device is taken while busy. */
    if ((s->status & (BUSY_STAT | DRQ_STAT)) &&
        (val != 0x08 || s->kind != IDE_CD))
        return;
    if (!ide_cmd_table[val].handler ||
        !(ide_cmd_table[val].flags & (1u << s->kind))) {
        ide_abort_command(s);
        ide_set_irq(bus);
        return;
    }

    s->status = READY_STAT | BUSY_STAT;
    s->error = 0;
    s->io_buffer_index = 0;
    if (ide_cmd_table[val].handler(s, val)) {
        s->status &= ~BUSY_STAT;
        assert(!!s->error == !!(s->status & ERR_STAT));
        if ((ide_cmd_table[val].flags & SET_DSC) && !s->error)
            s->status |= SEEK_STAT;
        ide_set_irq(bus);
    }
}
