/*
 * hw/ide-core.c — the PIIX3 IDE function (00:01.1) and its two legacy
 * channels: task-file registers, the PIO data port, device control (nIEN,
 * SRST), interrupts, asynchronous backend requests, reset and attaching
 * drives. Commands are in ide-ata.c and atapi.c, DMA in ide-bmdma.c.
 */
#include "hw/ide-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint16_t legacy_cmd_base[2] = { 0x1f0, 0x170 };
static const uint16_t legacy_ctl_base[2] = { 0x3f6, 0x376 };
static const int legacy_irq[2] = { 14, 15 };

struct machine *ide_machine(struct ide_drive *s)
{
    return s->bus->ctrl->m;
}

struct ide_drive *ide_active(struct ide_bus *bus)
{
    return &bus->drives[bus->unit];
}

static bool bus_empty(struct ide_bus *bus)
{
    return !bus->drives[0].present && !bus->drives[1].present;
}

/* QEMU reads 0 from the error/status of an empty channel or missing slave. */
static bool reads_absent(struct ide_bus *bus, struct ide_drive *s)
{
    return bus_empty(bus) || (s != &bus->drives[0] && !s->present);
}

/* ------------------------------------------------------------------ */
/* Interrupts                                                          */
/* ------------------------------------------------------------------ */

/* The pin is set on every event, as QEMU's IDE does (see irq_line_drive). */
void ide_set_irq(struct ide_bus *bus)
{
    if (bus->cmd & IDE_CTRL_DISABLE_IRQ)
        return;
    /* The PIIX latches every interrupt in the bus-master status. */
    bus->bm.status |= BM_STATUS_INT;
    irq_line_drive(&bus->irq, true);
}

static void ide_lower_irq(struct ide_bus *bus)
{
    irq_line_drive(&bus->irq, false);
}

bool ide_bm_enabled(struct ide_bus *bus)
{
    return pci_bus_master_enabled(&bus->ctrl->pci);
}

/* ------------------------------------------------------------------ */
/* PIO transfers                                                       */
/* ------------------------------------------------------------------ */

void ide_transfer_start(struct ide_drive *s, uint32_t off, uint32_t size,
                        enum ide_end end_fn)
{
    s->data_pos = off;
    s->data_end = off + size;
    if (!(s->status & ERR_STAT))
        s->status |= DRQ_STAT;
    s->end_fn = end_fn;
}

void ide_transfer_halt(struct ide_drive *s)
{
    s->end_fn = END_STOP;
    s->data_pos = s->data_end = 0;
    s->status &= ~DRQ_STAT;
}

void ide_transfer_stop(struct ide_drive *s)
{
    ide_transfer_halt(s);
}

static void dummy_transfer_stop(struct ide_drive *s)
{
    s->data_pos = s->data_end = 0;
    memset(s->io_buffer, 0xff, 4);
}

void ide_abort_command(struct ide_drive *s)
{
    ide_transfer_stop(s);
    s->status = READY_STAT | ERR_STAT;
    s->error = ABRT_ERR;
}

void ide_end_transfer(struct ide_drive *s)
{
    switch (s->end_fn) {
    case END_DUMMY:
        dummy_transfer_stop(s);
        break;
    case END_STOP:
        ide_transfer_stop(s);
        break;
    case END_SECTOR_READ:
        ide_sector_read(s);
        break;
    case END_SECTOR_WRITE:
        ide_sector_write(s);
        break;
    case END_ATAPI_CMD:
        ide_atapi_cmd(s);
        break;
    case END_ATAPI_REPLY:
        ide_atapi_cmd_reply_end(s);
        break;
    }
}

/* True while the drive sends data to the host (reads of the data port). */
static bool pio_to_host(const struct ide_drive *s)
{
    return s->end_fn == END_SECTOR_READ || s->end_fn == END_STOP ||
           s->end_fn == END_ATAPI_REPLY || s->end_fn == END_DUMMY;
}

static uint32_t data_read(struct ide_bus *bus, unsigned size)
{
    struct ide_drive *s = ide_active(bus);
    uint32_t v = 0;

    /* Reads without DRQ, or while the host should be writing, give 0. */
    if (!(s->status & DRQ_STAT) || !pio_to_host(s))
        return 0;
    if (s->data_pos + size > s->data_end)
        return 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint32_t)s->io_buffer[s->data_pos + i] << (8 * i);
    s->data_pos += size;
    if (s->data_pos >= s->data_end) {
        s->status &= ~DRQ_STAT;
        ide_end_transfer(s);
    }
    return v;
}

static void data_write(struct ide_bus *bus, unsigned size, uint32_t val)
{
    struct ide_drive *s = ide_active(bus);

    if (!(s->status & DRQ_STAT) || pio_to_host(s))
        return;
    if (s->data_pos + size > s->data_end)
        return;
    for (unsigned i = 0; i < size; i++)
        s->io_buffer[s->data_pos + i] = val >> (8 * i);
    s->data_pos += size;
    if (s->data_pos >= s->data_end) {
        s->status &= ~DRQ_STAT;
        ide_end_transfer(s);
    }
}

/* ------------------------------------------------------------------ */
/* Task file                                                           */
/* ------------------------------------------------------------------ */

static uint8_t ioport_read(struct ide_bus *bus, unsigned reg)
{
    struct ide_drive *s = ide_active(bus);
    bool hob = bus->cmd & IDE_CTRL_HOB;

    switch (reg) {
    case 1:
        if (reads_absent(bus, s))
            return 0;
        return hob ? s->hob_feature : s->error;
    case 2:
        if (bus_empty(bus))
            return 0;
        return hob ? s->hob_nsector : (uint8_t)s->nsector;
    case 3:
        if (bus_empty(bus))
            return 0;
        return hob ? s->hob_sector : s->sector;
    case 4:
        if (bus_empty(bus))
            return 0;
        return hob ? s->hob_lcyl : s->lcyl;
    case 5:
        if (bus_empty(bus))
            return 0;
        return hob ? s->hob_hcyl : s->hcyl;
    case 6:
        if (bus_empty(bus))
            return 0;
        return s->select;
    default:
        ide_lower_irq(bus);
        if (reads_absent(bus, s))
            return 0;
        return s->status;
    }
}

static void clear_hob(struct ide_bus *bus)
{
    bus->cmd &= ~IDE_CTRL_HOB;
}

static void ioport_write(struct ide_bus *bus, unsigned reg, uint8_t val)
{
    struct ide_drive *s = ide_active(bus);
    struct ide_drive *d0 = &bus->drives[0], *d1 = &bus->drives[1];

    /* Task-file writes are ignored while the selected drive is busy. */
    if (reg != 7 && (s->status & (BUSY_STAT | DRQ_STAT)))
        return;

    switch (reg) {
    case 0:
        break;
    case 1:
        clear_hob(bus);
        d0->hob_feature = d0->feature;
        d1->hob_feature = d1->feature;
        d0->feature = d1->feature = val;
        break;
    case 2:
        clear_hob(bus);
        d0->hob_nsector = d0->nsector;
        d1->hob_nsector = d1->nsector;
        d0->nsector = d1->nsector = val;
        break;
    case 3:
        clear_hob(bus);
        d0->hob_sector = d0->sector;
        d1->hob_sector = d1->sector;
        d0->sector = d1->sector = val;
        break;
    case 4:
        clear_hob(bus);
        d0->hob_lcyl = d0->lcyl;
        d1->hob_lcyl = d1->lcyl;
        d0->lcyl = d1->lcyl = val;
        break;
    case 5:
        clear_hob(bus);
        d0->hob_hcyl = d0->hcyl;
        d1->hob_hcyl = d1->hcyl;
        d0->hcyl = d1->hcyl = val;
        break;
    case 6:
        clear_hob(bus);
        d0->select = d1->select = val | ATA_DEV_ALWAYS_ON;
        bus->unit = (val & ATA_DEV_SELECT) ? 1 : 0;
        break;
    default:
        clear_hob(bus);
        ide_lower_irq(bus);
        ide_exec_cmd(bus, val);
        break;
    }
}

/*
 * The command block (8 ports). Like QEMU's port lists: the data port
 * takes 16/32-bit accesses, and a byte access there moves a whole word
 * (QEMU 7.2 observed); the others take bytes, a 16-bit access to them is
 * two byte accesses, a 32-bit one reads all ones.
 */
static uint64_t cmd_region_read(void *opaque, uint64_t off, unsigned size)
{
    struct ide_bus *bus = opaque;

    if (off == 0)
        return data_read(bus, size == 1 ? 2 : size);
    if (size == 1)
        return ioport_read(bus, off);
    if (size == 2)
        return ioport_read(bus, off) | ioport_read(bus, off + 1) << 8;
    return UINT32_MAX;
}

static void cmd_region_write(void *opaque, uint64_t off, unsigned size,
                             uint64_t val)
{
    struct ide_bus *bus = opaque;

    if (off == 0) {
        data_write(bus, size == 1 ? 2 : size, (uint32_t)val);
    } else if (size == 1) {
        ioport_write(bus, off, val);
    } else if (size == 2) {
        ioport_write(bus, off, val);
        ioport_write(bus, off + 1, val >> 8);
    }
}

static uint64_t ctl_region_read(void *opaque, uint64_t off, unsigned size)
{
    struct ide_bus *bus = opaque;
    struct ide_drive *s = ide_active(bus);

    /* Alternate status: no side effect on the interrupt. */
    return reads_absent(bus, s) ? 0 : s->status;
}

/* SRST completes after the write, as QEMU's bottom half does. */
static void srst_complete(void *opaque)
{
    struct ide_bus *bus = opaque;

    bus->srst_timer = NULL;
    for (int i = 0; i < 2; i++) {
        struct ide_drive *s = &bus->drives[i];

        s->status |= BUSY_STAT;
        ide_transfer_halt(s);
        ide_dma_cancel(s);
        ide_reset_drive(s);
        /* EXECUTE DEVICE DIAGNOSTIC results */
        ide_set_signature(s);
        s->error = 0x01;
        if (s->kind == IDE_CD) {
            s->status = 0;
        } else {
            s->status = READY_STAT | SEEK_STAT;
            ide_set_irq(bus);
        }
    }
    bus->cmd &= ~IDE_CTRL_RESET;
}

static void ctl_region_write(void *opaque, uint64_t off, unsigned size,
                             uint64_t val)
{
    struct ide_bus *bus = opaque;

    if (!(bus->cmd & IDE_CTRL_RESET) && (val & IDE_CTRL_RESET)) {
        bus->drives[0].status |= BUSY_STAT;
        bus->drives[1].status |= BUSY_STAT;
        if (!bus->srst_timer)
            bus->srst_timer = ev_timer_add(machine_event_loop(bus->ctrl->m), 0,
                                           srst_complete, bus);
    }
    bus->cmd = val;
}

/* ------------------------------------------------------------------ */
/* Backend requests                                                    */
/* ------------------------------------------------------------------ */

struct ide_req {
    struct ide_drive *s;
    unsigned gen;
    bool is_read;
    uint32_t buf_off, len;
    ide_aio_done_fn *done;
    uint8_t data[];
};

static void ide_req_complete(void *opaque, int ret)
{
    struct ide_req *r = opaque;
    struct ide_drive *s = r->s;

    if (r->gen == s->gen) {
        s->aio_inflight = false;
        if (r->is_read && ret == 0 && r->len)
            memcpy(s->io_buffer + r->buf_off, r->data, r->len);
        r->done(s, ret);
    }
    free(r);
}

static struct ide_req *ide_req_new(struct ide_drive *s, bool is_read,
                                   uint32_t buf_off, uint32_t len,
                                   ide_aio_done_fn *done)
{
    struct ide_req *r = malloc(sizeof(*r) + len);

    if (!r)
        return NULL;
    *r = (struct ide_req){ .s = s, .gen = s->gen, .is_read = is_read,
                           .buf_off = buf_off, .len = len, .done = done };
    s->aio_inflight = true;
    return r;
}

static void ide_req_fail_now(void *opaque)
{
    struct ide_drive *s = opaque;
    ide_aio_done_fn *done = s->fail_done;

    s->fail_timer = NULL;
    s->aio_inflight = false;
    done(s, s->fail_ret);
}

static void ide_cancel_failed(struct ide_drive *s)
{
    if (s->fail_timer) {
        ev_timer_cancel(machine_event_loop(ide_machine(s)), s->fail_timer);
        s->fail_timer = NULL;
    }
}

/* A request the backend refused at submission fails on the next loop
 * iteration, so the guest sees the same ordering as for any completion. */
static void ide_req_failed(struct ide_req *r, int ret)
{
    struct ide_drive *s = r->s;
    ide_aio_done_fn *done = r->done;

    free(r);
    ide_cancel_failed(s);
    s->fail_ret = ret;
    s->fail_done = done;
    s->fail_timer = ev_timer_add(machine_event_loop(ide_machine(s)), 0,
                                 ide_req_fail_now, s);
    if (!s->fail_timer) {
        s->aio_inflight = false;
        done(s, ret);
    }
}

void ide_pio_read(struct ide_drive *s, uint64_t offset, uint32_t buf_off,
                  uint32_t len, ide_aio_done_fn *done)
{
    struct ide_req *r = ide_req_new(s, true, buf_off, len, done);
    struct iovec iov;
    int ret;

    if (!r) {
        done(s, -ENOMEM);
        return;
    }
    iov = (struct iovec){ .iov_base = r->data, .iov_len = len };
    ret = blk_aio_preadv(s->blk, offset, &iov, 1, ide_req_complete, r);
    if (ret < 0)
        ide_req_failed(r, ret);
}

void ide_pio_write(struct ide_drive *s, uint64_t offset, uint32_t buf_off,
                   uint32_t len, ide_aio_done_fn *done)
{
    struct ide_req *r = ide_req_new(s, false, buf_off, len, done);
    struct iovec iov;
    int ret;

    if (!r) {
        done(s, -ENOMEM);
        return;
    }
    memcpy(r->data, s->io_buffer + buf_off, len);
    iov = (struct iovec){ .iov_base = r->data, .iov_len = len };
    ret = blk_aio_pwritev(s->blk, offset, &iov, 1, 0, ide_req_complete, r);
    if (ret < 0)
        ide_req_failed(r, ret);
}

void ide_flush(struct ide_drive *s, ide_aio_done_fn *done)
{
    struct ide_req *r = ide_req_new(s, false, 0, 0, done);
    int ret;

    if (!r) {
        done(s, -ENOMEM);
        return;
    }
    ret = blk_aio_flush(s->blk, ide_req_complete, r);
    if (ret < 0)
        ide_req_failed(r, ret);
}

/* ------------------------------------------------------------------ */
/* Reset                                                               */
/* ------------------------------------------------------------------ */

void ide_set_signature(struct ide_drive *s)
{
    s->select &= ~ATA_DEV_HS;
    s->nsector = 1;
    s->sector = 1;
    if (s->kind == IDE_CD) {
        s->lcyl = 0x14;
        s->hcyl = 0xeb;
    } else if (s->present) {
        s->lcyl = 0;
        s->hcyl = 0;
    } else {
        s->lcyl = 0xff;
        s->hcyl = 0xff;
    }
}

void ide_reset_drive(struct ide_drive *s)
{
    /* Requests in flight finish in the backend; their results are dropped. */
    s->gen++;
    s->aio_inflight = false;
    ide_cancel_failed(s);
    s->mult_sectors = MAX_MULT_SECTORS;
    s->feature = s->error = 0;
    s->nsector = s->sector = s->lcyl = s->hcyl = 0;
    s->hob_feature = s->hob_nsector = s->hob_sector = 0;
    s->hob_lcyl = s->hob_hcyl = 0;
    s->select = ATA_DEV_ALWAYS_ON;
    s->status = READY_STAT | SEEK_STAT;
    s->lba48 = false;
    s->sense_key = s->asc = 0;
    s->cdrom_changed = 0;
    s->packet_transfer_size = 0;
    s->elementary_transfer_size = 0;
    s->io_buffer_index = s->io_buffer_size = 0;
    s->cd_sector_size = 0;
    s->atapi_dma = false;
    s->dma_cmd = IDE_DMA_NONE;
    s->dma_inflight = false;
    s->end_fn = END_DUMMY;
    dummy_transfer_stop(s);
    ide_set_signature(s);
}

static void ide_bus_reset(struct ide_bus *bus)
{
    if (bus->srst_timer) {
        ev_timer_cancel(machine_event_loop(bus->ctrl->m), bus->srst_timer);
        bus->srst_timer = NULL;
    }
    bus->unit = 0;
    bus->cmd = 0;
    ide_reset_drive(&bus->drives[0]);
    ide_reset_drive(&bus->drives[1]);
    bmdma_reset(&bus->bm);
    ide_lower_irq(bus);
}

void ide_controller_reset(struct ide_controller *c)
{
    ide_bus_reset(&c->bus[0]);
    ide_bus_reset(&c->bus[1]);
}

static void ide_pci_reset(struct pci_device *d)
{
    ide_controller_reset(d->opaque);
}

static const struct pci_device_ops ide_pci_ops = {
    .reset = ide_pci_reset,
};

/* ------------------------------------------------------------------ */
/* Drives                                                              */
/* ------------------------------------------------------------------ */

static void cd_media_changed(void *opaque, bool loaded)
{
    ide_cd_media_changed(opaque, loaded);
}

static bool cd_is_tray_open(void *opaque)
{
    struct ide_drive *s = opaque;
    return s->tray_open;
}

static bool cd_is_locked(void *opaque)
{
    struct ide_drive *s = opaque;
    return s->tray_locked;
}

/* As QEMU: the GET EVENT STATUS media event reports "eject requested"
 * (once, while the tray is closed), with an interrupt to make the guest
 * look; a forced request also lifts PREVENT MEDIUM REMOVAL. */
static void cd_eject_request(void *opaque, bool force)
{
    struct ide_drive *s = opaque;

    s->eject_request = true;
    if (force)
        s->tray_locked = false;
    ide_set_irq(s->bus);
}

static void hd_resized(void *opaque)
{
    struct ide_drive *s = opaque;
    int64_t len = blk_getlength(s->blk);

    s->nb_sectors = len > 0 ? (uint64_t)len / 512 : 0;
    ide_identify_size(s);
}

static const struct blk_dev_ops ide_cd_dev_ops = {
    .media_changed = cd_media_changed,
    .is_tray_open = cd_is_tray_open,
    .is_locked = cd_is_locked,
    .eject_request = cd_eject_request,
};

static const struct blk_dev_ops ide_hd_dev_ops = {
    .resized = hd_resized,
};

int ide_attach(struct ide_controller *c, int busno, int unit,
               const struct disk_spec *spec, struct blk_backend *blk,
               struct error **errp)
{
    struct ide_bus *bus = &c->bus[busno];
    struct ide_drive *s = &bus->drives[unit];
    int64_t len;

    if (s->present) {
        error_setg(errp, "IDE bus %d unit %d is already in use", busno, unit);
        return -EBUSY;
    }
    if (!blk) {
        error_setg(errp, "IDE drive needs a block backend");
        return -EINVAL;
    }
    s->kind = spec->media == DISK_MEDIA_CDROM ? IDE_CD : IDE_HD;
    len = blk_is_inserted(blk) ? blk_getlength(blk) : 0;
    if (s->kind == IDE_HD && (!blk_is_inserted(blk) || len < 0)) {
        error_setg(errp, "IDE hard disk needs a medium");
        return -ENOMEDIUM;
    }
    s->blk = blk;
    s->present = true;
    s->nb_sectors = len > 0 ? (uint64_t)len / 512 : 0;
    if (spec->serial && spec->serial[0])
        snprintf(s->serial, sizeof(s->serial), "%s", spec->serial);
    else
        snprintf(s->serial, sizeof(s->serial), "QM%05d", busno * 2 + unit + 1);
    snprintf(s->model, sizeof(s->model), "%s",
             s->kind == IDE_CD ? "QEMU DVD-ROM" : "QEMU HARDDISK");
    snprintf(s->version, sizeof(s->version), "2.5+");
    s->wce = spec->cache != CACHE_WRITETHROUGH && spec->cache != CACHE_DIRECTSYNC;
    s->identify_set = false;
    s->smart_enabled = s->smart_autosave = true;
    s->smart_selftest_count = 0;
    memset(s->smart_selftest_data, 0, sizeof(s->smart_selftest_data));
    s->tray_open = s->tray_locked = false;
    s->new_media = s->eject_request = false;
    if (s->kind == IDE_HD)
        ide_geometry_guess(s);
    blk_set_dev_ops(blk, s->kind == IDE_CD ? &ide_cd_dev_ops : &ide_hd_dev_ops, s);
    /* Power-on state: the signature depends on presence and kind. */
    ide_reset_drive(s);
    return 0;
}

int ide_detach(struct ide_controller *c, int busno, int unit)
{
    struct ide_bus *bus = &c->bus[busno];
    struct ide_drive *s = &bus->drives[unit];

    if (!s->present)
        return -ENOENT;
    blk_set_dev_ops(s->blk, NULL, NULL);
    blk_drain(s->blk);
    if (bus->bm.dma_drive == s) {
        bus->bm.dma_cb = NULL;
        bus->bm.dma_drive = NULL;
    }
    s->present = false;
    s->blk = NULL;
    s->kind = IDE_HD;
    ide_reset_drive(s);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Controller                                                          */
/* ------------------------------------------------------------------ */

struct ide_controller *ide_controller_new(struct machine *m, struct pci_bus *pbus)
{
    struct ide_controller *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->m = m;
    for (int b = 0; b < 2; b++) {
        struct ide_bus *bus = &c->bus[b];

        bus->ctrl = c;
        bus->index = b;
        bus->sink = malloc(65536);
        if (!bus->sink)
            goto out_free;
        for (int u = 0; u < 2; u++) {
            struct ide_drive *s = &bus->drives[u];
            s->bus = bus;
            s->unit = u;
            s->io_buffer = calloc(1, IDE_BUFFER_SIZE);
            if (!s->io_buffer)
                goto out_free;
        }
        machine_irq_line_init(m, &bus->irq, legacy_irq[b]);
        bus->cmd_region = (struct io_region){
            .name = "ide", .read = cmd_region_read, .write = cmd_region_write,
            .opaque = bus, .size = 8,
        };
        bus->ctl_region = (struct io_region){
            .name = "ide-ctl", .read = ctl_region_read, .write = ctl_region_write,
            .opaque = bus, .size = 1,
        };
        machine_io_map(m, IO_SPACE_PIO, &bus->cmd_region, legacy_cmd_base[b]);
        machine_io_map(m, IO_SPACE_PIO, &bus->ctl_region, legacy_ctl_base[b]);
    }

    pci_device_init(&c->pci, pbus, PCI_DEVFN(1, 1), 0x8086, 0x7010,
                    0x01018000, &ide_pci_ops, c);
    pci_set_word(c->pci.config + PCI_STATUS, 0x0280);
    c->bmdma_region = ide_bmdma_region_template;
    c->bmdma_region.opaque = c;
    pci_register_bar(&c->pci, 4, PCI_BAR_IO, 16, &c->bmdma_region);
    if (pci_device_realize(&c->pci) < 0)
        goto out_free;
    ide_controller_reset(c);
    return c;

out_free:
    ide_controller_free(c);
    return NULL;
}

void ide_controller_free(struct ide_controller *c)
{
    if (!c)
        return;
    for (int b = 0; b < 2; b++) {
        struct ide_bus *bus = &c->bus[b];

        for (int u = 0; u < 2; u++) {
            if (bus->drives[u].present)
                ide_detach(c, b, u);
        }
        if (bus->srst_timer)
            ev_timer_cancel(machine_event_loop(c->m), bus->srst_timer);
        if (bus->ctrl) {
            machine_io_unmap(c->m, &bus->cmd_region);
            machine_io_unmap(c->m, &bus->ctl_region);
            machine_irq_line_destroy(&bus->irq);
        }
        for (int u = 0; u < 2; u++)
            free(bus->drives[u].io_buffer);
        free(bus->sink);
    }
    pci_device_unrealize(&c->pci);
    free(c);
}
