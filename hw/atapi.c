/*
 * hw/atapi.c — the ATAPI CD-ROM: PACKET command phases, the SCSI/MMC
 * command table, PIO replies cut by the byte-count limit, DMA, sense data
 * and media change reporting. Values and sequencing follow QEMU 7.2's
 * hw/ide/atapi.c; writes to read-only media answer DATA PROTECT.
 */
#include "hw/ide-int.h"

#include <errno.h>
#include <string.h>

/* Sense keys */
#define NO_SENSE            0x00
#define NOT_READY           0x02
#define MEDIUM_ERROR        0x03
#define ILLEGAL_REQUEST     0x05
#define UNIT_ATTENTION      0x06
#define DATA_PROTECT        0x07

/* Additional sense codes */
#define ASC_UNRECOVERED_READ_ERROR          0x11
#define ASC_ILLEGAL_OPCODE                  0x20
#define ASC_LOGICAL_BLOCK_OOR               0x21
#define ASC_INV_FIELD_IN_CMD_PACKET         0x24
#define ASC_WRITE_PROTECTED                 0x27
#define ASC_MEDIUM_MAY_HAVE_CHANGED         0x28
#define ASC_SAVING_PARAMETERS_NOT_SUPPORTED 0x39
#define ASC_MEDIUM_NOT_PRESENT              0x3a
#define ASC_INCOMPATIBLE_FORMAT             0x30
#define ASC_DATA_PHASE_ERROR                0x4b
#define ASC_MEDIA_REMOVAL_PREVENTED         0x53

/* Command flags */
#define ALLOW_UA        0x01    /* runs despite a pending UNIT ATTENTION */
#define CHECK_READY     0x02    /* NOT READY without a medium */
#define NONDATA         0x04    /* no data phase: byte count limit may be 0 */

#define MMC_PROFILE_CD_ROM      0x0008
#define MMC_PROFILE_DVD_ROM     0x0010
#define CD_MAX_SECTORS          (80ull * 60 * 75 * 2048 / 512)

static void stw_be(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static void stl_be(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}
static uint16_t lduw_be(const uint8_t *p) { return p[0] << 8 | p[1]; }
static uint32_t ldl_be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

static bool media_present(struct ide_drive *s)
{
    return !s->tray_open && s->nb_sectors > 0;
}

static int byte_count_limit(struct ide_drive *s)
{
    return s->lcyl | s->hcyl << 8;
}

/* ------------------------------------------------------------------ */
/* Completion                                                          */
/* ------------------------------------------------------------------ */

static void atapi_cmd_ok(struct ide_drive *s)
{
    s->error = 0;
    s->status = READY_STAT | SEEK_STAT;
    s->nsector = (s->nsector & ~7) | ATAPI_INT_REASON_IO | ATAPI_INT_REASON_CD;
    ide_transfer_stop(s);
    ide_set_irq(s->bus);
}

static void atapi_cmd_error(struct ide_drive *s, int sense_key, int asc)
{
    s->error = sense_key << 4;
    s->status = READY_STAT | ERR_STAT;
    s->nsector = (s->nsector & ~7) | ATAPI_INT_REASON_IO | ATAPI_INT_REASON_CD;
    s->sense_key = sense_key;
    s->asc = asc;
    ide_set_irq(s->bus);
}

static void atapi_io_error(struct ide_drive *s, int ret)
{
    if (ret == -ENOMEDIUM)
        atapi_cmd_error(s, NOT_READY, ASC_MEDIUM_NOT_PRESENT);
    else if (ret == -EINVAL)
        atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_LOGICAL_BLOCK_OOR);
    else
        atapi_cmd_error(s, MEDIUM_ERROR, ASC_UNRECOVERED_READ_ERROR);
}

static void lba_to_msf(uint8_t *buf, int lba);

/* A raw 2352-byte mode 1 sector around the 2048 data bytes at buf + 16:
 * sync pattern, header, and EDC/ECC left zero (as QEMU does). */
static void cd_data_to_raw(uint8_t *buf, int lba)
{
    buf[0] = 0x00;
    memset(buf + 1, 0xff, 10);
    buf[11] = 0x00;
    lba_to_msf(buf + 12, lba);
    buf[15] = 0x01;
    memset(buf + 16 + 2048, 0, 288);
}

/* A pending UNIT ATTENTION fails every command that does not allow it. */
static void atapi_cmd_check_status(struct ide_drive *s)
{
    s->error = MC_ERR | (UNIT_ATTENTION << 4);
    s->status = ERR_STAT;
    s->nsector = 0;
    ide_set_irq(s->bus);
}

/* ------------------------------------------------------------------ */
/* Data phase                                                          */
/* ------------------------------------------------------------------ */

static void cd_read_sector_done(struct ide_drive *s, int ret)
{
    if (ret < 0) {
        atapi_io_error(s, ret);
        return;
    }
    if (s->cd_sector_size == 2352)
        cd_data_to_raw(s->io_buffer, s->lba);
    s->lba++;
    s->io_buffer_index = 0;
    s->status &= ~BUSY_STAT;
    ide_atapi_cmd_reply_end(s);
}

static int cd_read_sector(struct ide_drive *s)
{
    if (s->cd_sector_size != ATAPI_SECTOR_SIZE && s->cd_sector_size != 2352)
        return -EINVAL;
    s->status |= BUSY_STAT;
    ide_pio_read(s, (uint64_t)s->lba * ATAPI_SECTOR_SIZE,
                 s->cd_sector_size == 2352 ? 16 : 0, ATAPI_SECTOR_SIZE,
                 cd_read_sector_done);
    return 0;
}

/* Refill in the middle of a DRQ block: only a synchronous read keeps the
 * block consistent (as in QEMU). */
static int cd_read_sector_sync(struct ide_drive *s)
{
    bool raw = s->cd_sector_size == 2352;
    int ret = blk_pread(s->blk, (uint64_t)s->lba * ATAPI_SECTOR_SIZE,
                        s->io_buffer + (raw ? 16 : 0), ATAPI_SECTOR_SIZE);
    if (ret < 0)
        return ret;
    if (raw)
        cd_data_to_raw(s->io_buffer, s->lba);
    s->lba++;
    s->io_buffer_index = 0;
    return 0;
}

void ide_atapi_cmd_reply_end(struct ide_drive *s)
{
    int size;

    while (s->packet_transfer_size > 0) {
        if (s->lba != -1 && s->io_buffer_index >= (uint32_t)s->cd_sector_size) {
            if (!s->elementary_transfer_size) {
                int ret = cd_read_sector(s);
                if (ret < 0)
                    atapi_io_error(s, ret);
                return;
            }
            int ret = cd_read_sector_sync(s);
            if (ret < 0) {
                atapi_io_error(s, ret);
                return;
            }
        }
        if (s->elementary_transfer_size > 0) {
            /* the rest of the current DRQ block */
            size = s->cd_sector_size - s->io_buffer_index;
            if (size > s->elementary_transfer_size)
                size = s->elementary_transfer_size;
        } else {
            /* a new DRQ block, announced with an interrupt */
            int bcl;

            s->nsector = (s->nsector & ~7) | ATAPI_INT_REASON_IO;
            ide_set_irq(s->bus);
            bcl = byte_count_limit(s);
            size = s->packet_transfer_size > 0x7fffffff ? 0x7fffffff
                                                        : s->packet_transfer_size;
            if (size > bcl) {
                if (bcl & 1)
                    bcl--;
                size = bcl;
            }
            s->lcyl = size;
            s->hcyl = size >> 8;
            s->elementary_transfer_size = size;
            /* at most one sector per block */
            if (s->lba != -1 && size > (int)(s->cd_sector_size - s->io_buffer_index))
                size = s->cd_sector_size - s->io_buffer_index;
        }
        if (size <= 0 || s->io_buffer_index + size > IDE_BUFFER_SIZE) {
            /* a byte count limit of 1 rounds to 0: nothing can move */
            atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
            return;
        }
        s->packet_transfer_size -= size;
        s->elementary_transfer_size -= size;
        s->io_buffer_index += size;
        ide_transfer_start(s, s->io_buffer_index - size, size, END_ATAPI_REPLY);
        return;
    }
    atapi_cmd_ok(s);
}

static void atapi_dma_cb(struct ide_drive *s, int ret);

static void atapi_dma_read_done(struct ide_drive *s, int ret)
{
    s->dma_inflight = false;
    atapi_dma_cb(s, ret);
}

static void atapi_dma_cb(struct ide_drive *s, int ret)
{
    struct ide_bus *bus = s->bus;
    int n;

    if (ret < 0) {
        atapi_io_error(s, ret);
        bmdma_set_inactive(bus, false);
        return;
    }
    if (s->io_buffer_size > 0) {
        if (s->lba != -1) {
            if (s->cd_sector_size == 2352) {
                cd_data_to_raw(s->io_buffer, s->lba);
                s->lba++;
            } else {
                s->lba += s->io_buffer_size / ATAPI_SECTOR_SIZE;
            }
        }
        s->packet_transfer_size -= s->io_buffer_size;
        if (bmdma_rw_buf(bus, true) == 0) {
            /* PRD table ended first: no interrupt */
            bmdma_set_inactive(bus, false);
            return;
        }
    }
    if (s->packet_transfer_size <= 0) {
        s->status = READY_STAT | SEEK_STAT;
        s->nsector = (s->nsector & ~7) | ATAPI_INT_REASON_IO | ATAPI_INT_REASON_CD;
        ide_set_irq(bus);
        bmdma_set_inactive(bus, false);
        return;
    }
    s->io_buffer_index = 0;
    if (s->cd_sector_size == 2352) {
        n = 1;
        s->io_buffer_size = 2352;
    } else {
        n = s->packet_transfer_size / ATAPI_SECTOR_SIZE;
        if (n > IDE_DMA_BUF_SECTORS / 4)
            n = IDE_DMA_BUF_SECTORS / 4;
        s->io_buffer_size = n * ATAPI_SECTOR_SIZE;
    }
    s->dma_inflight = true;
    ide_pio_read(s, (uint64_t)s->lba * ATAPI_SECTOR_SIZE,
                 s->cd_sector_size == 2352 ? 16 : 0, n * ATAPI_SECTOR_SIZE,
                 atapi_dma_read_done);
}

static void atapi_start_dma(struct ide_drive *s)
{
    bmdma_start_dma(s->bus, s, atapi_dma_cb);
}

/* Send `size` bytes of io_buffer, at most what the host allowed. */
static void atapi_cmd_reply(struct ide_drive *s, int size, int max_size)
{
    if (size > max_size)
        size = max_size;
    s->lba = -1;
    s->packet_transfer_size = size;
    s->io_buffer_size = size;
    s->elementary_transfer_size = 0;
    if (s->atapi_dma) {
        s->status = READY_STAT | SEEK_STAT | DRQ_STAT;
        atapi_start_dma(s);
    } else {
        s->status = READY_STAT | SEEK_STAT;
        s->io_buffer_index = 0;
        ide_atapi_cmd_reply_end(s);
    }
}

static void atapi_cmd_read(struct ide_drive *s, uint32_t lba, uint32_t nb_sectors,
                           int sector_size)
{
    s->lba = lba;
    s->packet_transfer_size = (int64_t)nb_sectors * sector_size;
    s->cd_sector_size = sector_size;
    if (s->atapi_dma) {
        s->io_buffer_size = 0;
        s->status = READY_STAT | SEEK_STAT | DRQ_STAT | BUSY_STAT;
        atapi_start_dma(s);
    } else {
        s->elementary_transfer_size = 0;
        s->io_buffer_index = sector_size;
        ide_atapi_cmd_reply_end(s);
    }
}

/* ------------------------------------------------------------------ */
/* Commands                                                            */
/* ------------------------------------------------------------------ */

static void cmd_test_unit_ready(struct ide_drive *s, uint8_t *buf)
{
    atapi_cmd_ok(s);
}

static void cmd_request_sense(struct ide_drive *s, uint8_t *buf)
{
    int max_len = buf[4];

    memset(buf, 0, 18);
    buf[0] = 0x70 | (1 << 7);
    buf[2] = s->sense_key;
    buf[7] = 10;
    buf[12] = s->asc;
    if (s->sense_key == UNIT_ATTENTION)
        s->sense_key = NO_SENSE;
    atapi_cmd_reply(s, 18, max_len);
}

static void padstr8(uint8_t *buf, int len, const char *src)
{
    for (int i = 0; i < len; i++)
        buf[i] = *src ? *src++ : ' ';
}

static void cmd_inquiry(struct ide_drive *s, uint8_t *buf)
{
    uint8_t page_code = buf[2];
    int max_len = buf[4];
    unsigned idx = 0, size_idx, preamble_len;

    if (buf[1] & 0x01) {
        /* vital product data */
        preamble_len = 4;
        size_idx = 3;
        buf[idx++] = 0x05;
        buf[idx++] = page_code;
        buf[idx++] = 0x00;
        idx++;
        switch (page_code) {
        case 0x00:
            buf[idx++] = 0x00;
            buf[idx++] = 0x83;
            break;
        case 0x83:
            if (idx + 24 > (unsigned)max_len) {
                atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_DATA_PHASE_ERROR);
                return;
            }
            buf[idx++] = 0x02;
            buf[idx++] = 0x00;
            buf[idx++] = 0x00;
            buf[idx++] = 20;
            padstr8(buf + idx, 20, s->serial);
            idx += 20;
            if (idx + 72 > (unsigned)max_len)
                break;
            buf[idx++] = 0x02;
            buf[idx++] = 0x01;
            buf[idx++] = 0x00;
            buf[idx++] = 68;
            padstr8(buf + idx, 8, "ATA");
            idx += 8;
            padstr8(buf + idx, 40, s->model);
            idx += 40;
            padstr8(buf + idx, 20, s->serial);
            idx += 20;
            break;
        default:
            atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
            return;
        }
    } else {
        preamble_len = 5;
        size_idx = 4;
        buf[0] = 0x05;      /* CD-ROM */
        buf[1] = 0x80;      /* removable */
        buf[2] = 0x00;
        buf[3] = 0x21;      /* ATAPI-2 response format */
        buf[5] = buf[6] = buf[7] = 0;
        padstr8(buf + 8, 8, "QEMU");
        padstr8(buf + 16, 16, "QEMU DVD-ROM");
        padstr8(buf + 32, 4, s->version);
        idx = 36;
    }
    buf[size_idx] = idx - preamble_len;
    atapi_cmd_reply(s, idx, max_len);
}

static void cmd_get_configuration(struct ide_drive *s, uint8_t *buf)
{
    int max_len;
    uint32_t len;

    if (buf[2] != 0 || buf[3] != 0) {
        atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
        return;
    }
    max_len = lduw_be(buf + 7);
    if (max_len > 512)
        max_len = 512;
    memset(buf, 0, MAX(max_len, 20));
    if (media_present(s))
        stw_be(buf + 6, s->nb_sectors > CD_MAX_SECTORS ? MMC_PROFILE_DVD_ROM
                                                       : MMC_PROFILE_CD_ROM);
    buf[10] = 0x02 | 0x01;      /* persistent and current */
    len = 12;
    static const uint16_t profiles[] = { MMC_PROFILE_DVD_ROM, MMC_PROFILE_CD_ROM };
    for (unsigned i = 0; i < 2; i++) {
        uint8_t *p = buf + 12 + 4 * i;
        stw_be(p, profiles[i]);
        p[2] = p[0] == buf[6] && p[1] == buf[7];
        buf[11] += 4;
        len += 4;
    }
    stl_be(buf, len - 4);
    atapi_cmd_reply(s, len, max_len);
}

static void cmd_get_event_status_notification(struct ide_drive *s, uint8_t *buf)
{
    unsigned max_len = lduw_be(buf + 7), used_len;
    uint8_t polled = buf[1], class = buf[4];

    if (!(polled & 0x01)) {
        /* only polling is supported */
        atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
        return;
    }
    buf[3] = 1 << 4;            /* supported: media class */
    buf[2] = 0;
    if (class & (1 << 4)) {
        uint8_t event_code = 0, media_status = 0;

        buf[2] = 4;             /* media class */
        if (s->tray_open)
            media_status = 1;
        else if (blk_is_inserted(s->blk))
            media_status = 2;
        if (media_status != 1) {
            if (s->new_media) {
                event_code = 2;
                s->new_media = false;
            } else if (s->eject_request) {
                event_code = 1;
                s->eject_request = false;
            }
        }
        buf[4] = event_code;
        buf[5] = media_status;
        buf[6] = buf[7] = 0;
        used_len = 8;
    } else {
        buf[2] = 0x80;          /* no event available */
        used_len = 4;
    }
    stw_be(buf, used_len - 4);
    atapi_cmd_reply(s, used_len, max_len);
}

static void cmd_read_disc_information(struct ide_drive *s, uint8_t *buf)
{
    uint8_t type = buf[1] & 7;
    uint32_t max_len = lduw_be(buf + 7);

    if (type != 0) {
        atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
        return;
    }
    memset(buf, 0, 34);
    buf[1] = 32;
    buf[2] = 0xe;       /* last session complete, disc finalized */
    buf[3] = 1;         /* first track */
    buf[4] = 1;         /* sessions */
    buf[5] = 1;
    buf[6] = 1;
    buf[7] = 0x20;      /* unrestricted use */
    atapi_cmd_reply(s, 34, max_len);
}

static void cmd_mode_sense(struct ide_drive *s, uint8_t *buf)
{
    int max_len = lduw_be(buf + 7);
    int action = buf[2] >> 6, code = buf[2] & 0x3f;

    if (action == 3) {
        atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_SAVING_PARAMETERS_NOT_SUPPORTED);
        return;
    }
    if (action != 0)
        goto error_cmd;
    switch (code) {
    case 0x01:      /* error recovery */
        memset(buf, 0, 16);
        stw_be(buf, 16 - 2);
        buf[2] = 0x70;
        buf[8] = 0x01;
        buf[9] = 16 - 10;
        buf[11] = 0x05;
        atapi_cmd_reply(s, 16, max_len);
        return;
    case 0x0e:      /* audio control */
        /* Only these bytes are set; the rest is whatever the buffer held,
         * exactly as QEMU answers. */
        memset(buf, 0, 8);
        stw_be(buf, 24 - 2);
        buf[2] = 0x70;
        buf[8] = 0x0e;
        buf[9] = 24 - 10;
        buf[17] = buf[19] = buf[21] = buf[23] = 0;
        atapi_cmd_reply(s, 24, max_len);
        return;
    case 0x2a:      /* capabilities */
        memset(buf, 0, 30);
        stw_be(buf, 30 - 2);
        buf[2] = 0x70;
        buf[8] = 0x2a;
        buf[9] = 30 - 10;
        buf[10] = 0x3b;         /* read CD-R/RW, DVD-ROM/R/RAM */
        buf[12] = 0x71;         /* audio play, ... */
        buf[13] = 3 << 5;
        buf[14] = (1 << 0) | (1 << 3) | (1 << 5);
        if (s->tray_locked)
            buf[14] |= 1 << 1;
        stw_be(buf + 16, 704);  /* 4x */
        buf[19] = 2;
        stw_be(buf + 20, 512);
        stw_be(buf + 22, 704);
        atapi_cmd_reply(s, 30, max_len);
        return;
    }
error_cmd:
    atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
}

static void cmd_read_cdvd_capacity(struct ide_drive *s, uint8_t *buf)
{
    uint64_t total = s->nb_sectors >> 2;

    stl_be(buf, total - 1);
    stl_be(buf + 4, ATAPI_SECTOR_SIZE);
    atapi_cmd_reply(s, 8, 8);
}

static void cmd_read(struct ide_drive *s, uint8_t *buf)
{
    uint64_t total = s->nb_sectors >> 2;
    uint32_t nb_sectors = buf[0] == 0x28 ? lduw_be(buf + 7) : ldl_be(buf + 6);
    uint32_t lba;

    if (nb_sectors == 0) {
        atapi_cmd_ok(s);
        return;
    }
    lba = ldl_be(buf + 2);
    if (lba >= total || (uint64_t)lba + nb_sectors > total) {
        atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_LOGICAL_BLOCK_OOR);
        return;
    }
    atapi_cmd_read(s, lba, nb_sectors, ATAPI_SECTOR_SIZE);
}

static void cmd_read_cd(struct ide_drive *s, uint8_t *buf)
{
    uint32_t nb_sectors = buf[6] << 16 | buf[7] << 8 | buf[8];
    uint32_t lba = ldl_be(buf + 2);
    uint8_t transfer_request = buf[9] & 0xf8;

    if (nb_sectors == 0 || transfer_request == 0x00) {
        atapi_cmd_ok(s);
        return;
    }
    /* a data transfer after all: the byte count limit must allow it */
    if (!s->atapi_dma && !byte_count_limit(s)) {
        ide_abort_command(s);
        return;
    }
    switch (transfer_request) {
    case 0x10:      /* user data */
        atapi_cmd_read(s, lba, nb_sectors, ATAPI_SECTOR_SIZE);
        return;
    case 0xf8:      /* everything: raw sectors */
        atapi_cmd_read(s, lba, nb_sectors, 2352);
        return;
    }
    atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
}

static void cmd_write(struct ide_drive *s, uint8_t *buf)
{
    /* The reason this device model exists: read-only media refuse writes
     * with DATA PROTECT / WRITE PROTECTED before any data moves. */
    if (blk_is_read_only(s->blk))
        atapi_cmd_error(s, DATA_PROTECT, ASC_WRITE_PROTECTED);
    else
        atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_ILLEGAL_OPCODE);
}

static void cmd_seek(struct ide_drive *s, uint8_t *buf)
{
    uint64_t total = s->nb_sectors >> 2;

    if (ldl_be(buf + 2) >= total) {
        atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_LOGICAL_BLOCK_OOR);
        return;
    }
    atapi_cmd_ok(s);
}

static void cmd_start_stop_unit(struct ide_drive *s, uint8_t *buf)
{
    bool start = buf[4] & 1, loej = buf[4] & 2;

    if (buf[4] & 0xf0) {
        /* power conditions: nothing to do */
        atapi_cmd_ok(s);
        return;
    }
    if (loej) {
        if (!start && !s->tray_open && s->tray_locked) {
            atapi_cmd_error(s, blk_is_inserted(s->blk) ? NOT_READY : ILLEGAL_REQUEST,
                            ASC_MEDIA_REMOVAL_PREVENTED);
            return;
        }
        /* The tray moves; the medium stays in the backend, as in QEMU. */
        if (s->tray_open == start) {
            s->tray_open = !start;
            atapi_cmd_ok(s);
            machine_tray_moved(s->bus->ctrl->m, s->blk, s->tray_open);
            return;
        }
    }
    atapi_cmd_ok(s);
}

static void cmd_prevent_allow_medium_removal(struct ide_drive *s, uint8_t *buf)
{
    s->tray_locked = buf[4] & 1;
    atapi_cmd_ok(s);
}

static void lba_to_msf(uint8_t *buf, int lba)
{
    lba += 150;
    buf[0] = (lba / 75) / 60;
    buf[1] = (lba / 75) % 60;
    buf[2] = lba % 75;
}

static int cdrom_read_toc(int nb_sectors, uint8_t *buf, int msf, int start_track)
{
    uint8_t *q;

    if (start_track > 1 && start_track != 0xaa)
        return -1;
    q = buf + 2;
    *q++ = 1;
    *q++ = 1;
    if (start_track <= 1) {
        *q++ = 0;
        *q++ = 0x14;    /* ADR, control */
        *q++ = 1;       /* track */
        *q++ = 0;
        if (msf) {
            *q++ = 0;
            lba_to_msf(q, 0);
            q += 3;
        } else {
            stl_be(q, 0);
            q += 4;
        }
    }
    *q++ = 0;           /* lead out */
    *q++ = 0x16;
    *q++ = 0xaa;
    *q++ = 0;
    if (msf) {
        *q++ = 0;
        lba_to_msf(q, nb_sectors);
        q += 3;
    } else {
        stl_be(q, nb_sectors);
        q += 4;
    }
    stw_be(buf, q - buf - 2);
    return q - buf;
}

static int cdrom_read_toc_raw(int nb_sectors, uint8_t *buf, int msf)
{
    static const uint8_t points[3] = { 0xa0, 0xa1, 0xa2 };
    uint8_t *q = buf + 2;

    *q++ = 1;
    *q++ = 1;
    for (int i = 0; i < 3; i++) {
        *q++ = 1;       /* session */
        *q++ = 0x14;    /* data track */
        *q++ = 0;
        *q++ = points[i];
        *q++ = 0;
        *q++ = 0;
        *q++ = 0;
        if (i < 2) {
            *q++ = 0;
            *q++ = 1;   /* first / last track */
            *q++ = 0;
            *q++ = 0;
        } else if (msf) {
            *q++ = 0;
            lba_to_msf(q, nb_sectors);
            q += 3;
        } else {
            stl_be(q, nb_sectors);
            q += 4;
        }
    }
    *q++ = 1;
    *q++ = 0x14;
    *q++ = 0;
    *q++ = 1;           /* point: track 1 */
    *q++ = 0;
    *q++ = 0;
    *q++ = 0;
    if (msf) {
        *q++ = 0;
        lba_to_msf(q, 0);
        q += 3;
    } else {
        memset(q, 0, 4);
        q += 4;
    }
    stw_be(buf, q - buf - 2);
    return q - buf;
}

static void cmd_read_toc_pma_atip(struct ide_drive *s, uint8_t *buf)
{
    int max_len = lduw_be(buf + 7);
    int format = buf[9] >> 6, msf = (buf[1] >> 1) & 1, start_track = buf[6];
    int total = (int)(s->nb_sectors >> 2);
    int len;

    switch (format) {
    case 0:
        len = cdrom_read_toc(total, buf, msf, start_track);
        if (len < 0)
            break;
        atapi_cmd_reply(s, len, max_len);
        return;
    case 1:
        memset(buf, 0, 12);
        buf[1] = 0x0a;
        buf[2] = 0x01;
        buf[3] = 0x01;
        atapi_cmd_reply(s, 12, max_len);
        return;
    case 2:
        len = cdrom_read_toc_raw(total, buf, msf);
        atapi_cmd_reply(s, len, max_len);
        return;
    }
    atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
}

/* DVD structures of a DVD-ROM; <0 is -ASC for ILLEGAL REQUEST. */
static int dvd_read_structure(struct ide_drive *s, int format, uint8_t *buf)
{
    uint64_t total = s->nb_sectors >> 2;

    switch (format) {
    case 0x00:      /* physical format (layer 0: the packet was cleared) */
        if (total == 0)
            return -ASC_MEDIUM_NOT_PRESENT;
        buf[4] = 1;         /* DVD-ROM, part version 1 */
        buf[5] = 0xf;       /* 120 mm */
        buf[6] = 1;         /* one layer, read-only */
        buf[7] = 0;
        stl_be(buf + 8, 0);
        stl_be(buf + 12, total - 1);
        stl_be(buf + 16, total - 1);
        stw_be(buf, 2048 + 2);
        return 2048 + 4;
    case 0x01:      /* copyright: none */
        buf[4] = 0;
        buf[5] = 0;
        stw_be(buf, 4 + 2);
        return 4 + 4;
    case 0x04:      /* manufacturing information */
        stw_be(buf, 2048 + 2);
        return 2048 + 4;
    case 0xff:      /* the structures above */
        buf[4] = 0x00;
        buf[5] = 0x40;
        stw_be(buf + 6, 2048 + 4);
        buf[8] = 0x01;
        buf[9] = 0x40;
        stw_be(buf + 10, 4 + 4);
        buf[12] = 0x03;
        buf[13] = 0x40;
        stw_be(buf + 14, 188 + 4);
        buf[16] = 0x04;
        buf[17] = 0x40;
        stw_be(buf + 18, 2048 + 4);
        stw_be(buf, 16 + 2);
        return 16 + 4;
    }
    return -ASC_INV_FIELD_IN_CMD_PACKET;
}

static void cmd_read_dvd_structure(struct ide_drive *s, uint8_t *buf)
{
    int media = buf[1], format = buf[7];
    int max_len = lduw_be(buf + 8);
    int ret;

    if (format < 0xff) {
        if (media_present(s) && s->nb_sectors <= CD_MAX_SECTORS) {
            atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_INCOMPATIBLE_FORMAT);
            return;
        }
        if (!media_present(s)) {
            atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
            return;
        }
    }
    memset(buf, 0, MIN(max_len, IDE_BUFFER_SIZE));
    if ((format < 0x80 || format == 0xff) && media == 0) {
        ret = dvd_read_structure(s, format, buf);
        if (ret < 0)
            atapi_cmd_error(s, ILLEGAL_REQUEST, -ret);
        else
            atapi_cmd_reply(s, ret, max_len);
        return;
    }
    atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
}

static void cmd_set_speed(struct ide_drive *s, uint8_t *buf)
{
    atapi_cmd_ok(s);
}

static void cmd_mechanism_status(struct ide_drive *s, uint8_t *buf)
{
    int max_len = lduw_be(buf + 8);

    memset(buf, 0, 8);
    buf[5] = 1;
    atapi_cmd_reply(s, 8, max_len);
}

typedef void atapi_cmd_fn(struct ide_drive *s, uint8_t *buf);

static const struct {
    atapi_cmd_fn *handler;
    unsigned flags;
} atapi_cmd_table[256] = {
    [0x00] = { cmd_test_unit_ready, CHECK_READY | NONDATA },
    [0x03] = { cmd_request_sense, ALLOW_UA },
    [0x12] = { cmd_inquiry, ALLOW_UA },
    [0x1b] = { cmd_start_stop_unit, NONDATA },
    [0x1e] = { cmd_prevent_allow_medium_removal, NONDATA },
    [0x25] = { cmd_read_cdvd_capacity, CHECK_READY },
    [0x28] = { cmd_read, CHECK_READY },                 /* READ(10) */
    [0x2a] = { cmd_write, CHECK_READY | NONDATA },      /* WRITE(10) */
    [0x2b] = { cmd_seek, CHECK_READY | NONDATA },
    [0x2e] = { cmd_write, CHECK_READY | NONDATA },      /* WRITE AND VERIFY(10) */
    [0x43] = { cmd_read_toc_pma_atip, CHECK_READY },
    [0x46] = { cmd_get_configuration, ALLOW_UA },
    [0x4a] = { cmd_get_event_status_notification, ALLOW_UA },
    [0x51] = { cmd_read_disc_information, CHECK_READY },
    [0x5a] = { cmd_mode_sense, 0 },                     /* MODE SENSE(10) */
    [0xa8] = { cmd_read, CHECK_READY },                 /* READ(12) */
    [0xaa] = { cmd_write, CHECK_READY | NONDATA },      /* WRITE(12) */
    [0xad] = { cmd_read_dvd_structure, CHECK_READY },
    [0xbb] = { cmd_set_speed, NONDATA },
    [0xbd] = { cmd_mechanism_status, 0 },
    [0xbe] = { cmd_read_cd, CHECK_READY | NONDATA },    /* data is conditional */
};

void ide_atapi_cmd(struct ide_drive *s)
{
    uint8_t *buf = s->io_buffer;
    uint8_t op = buf[0];
    unsigned flags = atapi_cmd_table[op].flags;

    if (s->sense_key == UNIT_ATTENTION && !(flags & ALLOW_UA)) {
        atapi_cmd_check_status(s);
        return;
    }
    /* After a media change, report the medium gone once, then changed. */
    if (!(flags & ALLOW_UA) && !s->tray_open && blk_is_inserted(s->blk) &&
        s->cdrom_changed) {
        if (s->cdrom_changed == 1) {
            atapi_cmd_error(s, NOT_READY, ASC_MEDIUM_NOT_PRESENT);
            s->cdrom_changed = 2;
        } else {
            atapi_cmd_error(s, UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED);
            s->cdrom_changed = 0;
        }
        return;
    }
    if ((flags & CHECK_READY) && (!media_present(s) || !blk_is_inserted(s->blk))) {
        atapi_cmd_error(s, NOT_READY, ASC_MEDIUM_NOT_PRESENT);
        return;
    }
    /* A PIO data command with byte count limit 0 aborts at the ATA level. */
    if (atapi_cmd_table[op].handler && !(flags & NONDATA) &&
        !s->atapi_dma && !byte_count_limit(s)) {
        ide_abort_command(s);
        return;
    }
    if (atapi_cmd_table[op].handler) {
        atapi_cmd_table[op].handler(s, buf);
        return;
    }
    atapi_cmd_error(s, ILLEGAL_REQUEST, ASC_ILLEGAL_OPCODE);
}

bool ide_cmd_packet(struct ide_drive *s)
{
    /* overlapped commands are not supported */
    if (s->feature & 0x02) {
        ide_abort_command(s);
        return true;
    }
    s->status = READY_STAT | SEEK_STAT;
    s->atapi_dma = s->feature & 1;
    if (s->atapi_dma)
        s->dma_cmd = IDE_DMA_ATAPI;
    s->nsector = 1;
    ide_transfer_start(s, 0, ATAPI_PACKET_SIZE, END_ATAPI_CMD);
    return false;
}

void ide_cd_media_changed(struct ide_drive *s, bool load)
{
    int64_t len = 0;

    s->tray_open = !load;
    if (blk_is_inserted(s->blk)) {
        len = blk_getlength(s->blk);
        if (len < 0)
            len = 0;
    }
    s->nb_sectors = (uint64_t)len / 512;
    /* Guests see the medium gone, then a UNIT ATTENTION (ide_atapi_cmd). */
    s->cdrom_changed = 1;
    s->new_media = true;
    s->eject_request = false;
    ide_set_irq(s->bus);
}
