/*
 * hw/ide-int.h — private to the IDE files: the drive and channel state
 * shared by the register interface (ide-core.c), the ATA commands
 * (ide-ata.c), bus-master DMA (ide-bmdma.c) and ATAPI (atapi.c). State
 * and sequencing mirror QEMU 7.2's hw/ide so guest-visible registers match.
 */
#ifndef DISKDM_HW_IDE_INT_H
#define DISKDM_HW_IDE_INT_H

#include "hw/hw-int.h"

/* Status register */
#define ERR_STAT        0x01
#define DRQ_STAT        0x08
#define SEEK_STAT       0x10
#define READY_STAT      0x40
#define BUSY_STAT       0x80

/* Error register */
#define ABRT_ERR        0x04
#define MC_ERR          0x20
#define UNC_ERR         0x40

/* Device control */
#define IDE_CTRL_RESET          0x04
#define IDE_CTRL_DISABLE_IRQ    0x02
#define IDE_CTRL_HOB            0x80

/* Device/head */
#define ATA_DEV_SELECT          0x10
#define ATA_DEV_LBA             0x40
#define ATA_DEV_LBA_MSB         0x0f
#define ATA_DEV_HS              0x0f
#define ATA_DEV_ALWAYS_ON       0xa0

/* ATAPI interrupt reason (sector count register) */
#define ATAPI_INT_REASON_CD     0x01
#define ATAPI_INT_REASON_IO     0x02

/* BMDMA */
#define BM_STATUS_DMAING        0x01
#define BM_STATUS_ERROR         0x02
#define BM_STATUS_INT           0x04
#define BM_CMD_START            0x01
#define BM_CMD_READ             0x08
#define BMDMA_PAGE_SIZE         4096

#define MAX_MULT_SECTORS        16
#define IDE_DMA_BUF_SECTORS     256
#define IDE_BUFFER_SIZE         (IDE_DMA_BUF_SECTORS * 512 + 4)
#define ATAPI_SECTOR_SIZE       2048
#define ATAPI_PACKET_SIZE       12
#define IDE_MAX_IOV             1024

enum ide_kind { IDE_HD, IDE_CD };

/* What runs when the current PIO data block has been transferred. */
enum ide_end {
    END_DUMMY,          /* nothing transferred yet (power-on) */
    END_STOP,           /* last block of the command */
    END_SECTOR_READ,    /* next READ SECTORS/MULTIPLE block */
    END_SECTOR_WRITE,   /* write the block just received */
    END_ATAPI_CMD,      /* a 12-byte packet arrived */
    END_ATAPI_REPLY,    /* next ATAPI data block */
};

enum ide_dma_cmd { IDE_DMA_NONE, IDE_DMA_READ, IDE_DMA_WRITE, IDE_DMA_TRIM,
                   IDE_DMA_ATAPI };

struct ide_bus;
struct ide_drive;
typedef void ide_dma_cb_fn(struct ide_drive *s, int ret);
typedef void ide_aio_done_fn(struct ide_drive *s, int ret);

struct ide_drive {
    struct ide_bus *bus;
    int unit;
    bool present;
    enum ide_kind kind;
    struct blk_backend *blk;
    char serial[21], model[41], version[9];
    bool wce;                   /* write cache enabled (IDENTIFY word 85) */
    uint64_t nb_sectors;        /* 512-byte sectors */
    unsigned cylinders, heads, sectors;     /* CHS translation in use */

    /* Task file; writes go to both drives of a channel. */
    uint8_t feature, error, sector, lcyl, hcyl, select, status;
    uint32_t nsector;           /* up to 65536 after lba48_transform */
    uint8_t hob_feature, hob_nsector, hob_sector, hob_lcyl, hob_hcyl;
    bool lba48;
    int mult_sectors, req_nb_sectors;

    /* PIO engine: data_pos..data_end in io_buffer. */
    uint8_t *io_buffer;
    uint32_t data_pos, data_end;
    enum ide_end end_fn;
    uint32_t io_buffer_index, io_buffer_size;

    uint16_t identify[256];
    bool identify_set;

    /* SMART (kept across resets, as in QEMU) */
    bool smart_enabled, smart_autosave;
    int smart_selftest_count;
    uint8_t smart_selftest_data[512];

    /* DMA */
    enum ide_dma_cmd dma_cmd;
    ide_dma_cb_fn *dma_cb;
    bool dma_inflight;
    uint32_t sg_bytes;          /* bytes of the submitted DMA chunk */

    /* Asynchronous requests started before a reset are ignored on
     * completion: each carries the generation it was issued in. */
    unsigned gen;
    bool aio_inflight;
    /* A request the backend refused at submission (e.g. no medium)
     * completes from the loop, as QEMU's do: */
    struct ev_timer *fail_timer;
    int fail_ret;
    ide_aio_done_fn *fail_done;

    /* ATAPI */
    uint8_t sense_key, asc;
    int cdrom_changed;
    bool tray_open, tray_locked;
    bool new_media, eject_request;
    int64_t lba;
    int64_t packet_transfer_size;
    int elementary_transfer_size;
    int cd_sector_size;
    bool atapi_dma;
};

struct bmdma {
    uint8_t cmd, status;
    uint32_t addr;
    uint32_t cur_addr;
    uint32_t cur_prd_addr, cur_prd_len;
    bool cur_prd_last;
    ide_dma_cb_fn *dma_cb;      /* armed by a DMA command */
    struct ide_drive *dma_drive;
};

struct ide_bus {
    struct ide_controller *ctrl;
    int index;
    struct ide_drive drives[2];
    int unit;                   /* selected drive */
    uint8_t cmd;                /* device control register */
    struct irq_line irq;
    struct bmdma bm;
    struct io_region cmd_region, ctl_region;
    struct ev_timer *srst_timer;
    struct iovec iov[IDE_MAX_IOV];
    uint8_t *sink;              /* DMA to addresses outside RAM lands here */
};

struct ide_controller {
    struct machine *m;
    struct pci_device pci;
    struct io_region bmdma_region;
    struct ide_bus bus[2];
};

/* ide-core.c */
struct ide_drive *ide_active(struct ide_bus *bus);
void ide_set_irq(struct ide_bus *bus);
void ide_transfer_start(struct ide_drive *s, uint32_t off, uint32_t size,
                        enum ide_end end_fn);
void ide_transfer_stop(struct ide_drive *s);
void ide_transfer_halt(struct ide_drive *s);
void ide_abort_command(struct ide_drive *s);
void ide_set_signature(struct ide_drive *s);
void ide_reset_drive(struct ide_drive *s);
void ide_end_transfer(struct ide_drive *s);
/* Read [offset, offset+len) into io_buffer + buf_off via a bounce buffer,
 * or write io_buffer + buf_off there; `done` runs on the loop unless the
 * drive was reset meanwhile (then the result is dropped). */
void ide_pio_read(struct ide_drive *s, uint64_t offset, uint32_t buf_off,
                  uint32_t len, ide_aio_done_fn *done);
void ide_pio_write(struct ide_drive *s, uint64_t offset, uint32_t buf_off,
                   uint32_t len, ide_aio_done_fn *done);
void ide_flush(struct ide_drive *s, ide_aio_done_fn *done);
bool ide_bm_enabled(struct ide_bus *bus);
struct machine *ide_machine(struct ide_drive *s);

/* ide-ata.c */
void ide_exec_cmd(struct ide_bus *bus, uint8_t val);
void ide_sector_read(struct ide_drive *s);
void ide_sector_write(struct ide_drive *s);
void ide_identify_size(struct ide_drive *s);
void ide_identify(struct ide_drive *s);
void ide_geometry_guess(struct ide_drive *s);
void ide_dma_cancel(struct ide_drive *s);
int64_t ide_get_sector(struct ide_drive *s);
void ide_set_sector(struct ide_drive *s, int64_t sector_num);

/* ide-bmdma.c */
extern const struct io_region ide_bmdma_region_template;
void bmdma_reset(struct bmdma *bm);
void bmdma_start_dma(struct ide_bus *bus, struct ide_drive *s, ide_dma_cb_fn *cb);
void bmdma_set_inactive(struct ide_bus *bus, bool more);
/* Gather PRDs into bus->iov for up to `limit` bytes. Returns the bytes in
 * the list (<= limit) and sets *iovcnt; s->io_buffer_size gets the bytes
 * the PRDs described. Memory outside RAM reads as zero and absorbs writes,
 * as unassigned memory does. */
int32_t bmdma_prepare_buf(struct ide_bus *bus, int32_t limit, int *iovcnt,
                          bool to_device);
/* Copy io_buffer[io_buffer_index, io_buffer_size) to (is_write) or from
 * the PRD buffers; 0 when the PRD table ended first, else 1. */
int bmdma_rw_buf(struct ide_bus *bus, bool is_write);

/* atapi.c */
void ide_atapi_cmd(struct ide_drive *s);
void ide_atapi_cmd_reply_end(struct ide_drive *s);
void ide_atapi_identify(struct ide_drive *s);
bool ide_cmd_packet(struct ide_drive *s);
void ide_cd_media_changed(struct ide_drive *s, bool load);

#endif
