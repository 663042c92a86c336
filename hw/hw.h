/*
 * hw/hw.h — the emulated machine, laid out like QEMU's `-machine pc
 * -nodefaults`: guest RAM, port I/O and MMIO dispatch, IRQ lines (ISA IRQs
 * as IOAPIC GSIs), the i440FX/PIIX3 PCI chipset, IDE with ATAPI and
 * bus-master DMA, and virtio-blk. Transports (hw/qtest.c, Xen ioreq) call
 * the guest-access functions below; devices reach their disks only through
 * block backends.
 */
#ifndef DISKDM_HW_H
#define DISKDM_HW_H

#include "block/block.h"

struct machine;

struct machine_config {
    uint64_t ram_size;          /* bytes; 0 = 128 MiB */
};

struct machine *machine_new(struct event_loop *loop,
                            const struct machine_config *cfg,
                            struct error **errp);
/* Detaches every device (draining its backend); backends stay the caller's. */
void machine_free(struct machine *m);

/*
 * Attach a disk described by `spec` (interface, index/bus/unit, media,
 * serial) backed by `blk` (may be empty for a CD-ROM). IDE drives go to
 * their channel/unit; virtio drives to the next free PCI slot from 00:02.0.
 * Errors: slot taken, unknown interface, bad index. The machine does not
 * own `blk`.
 */
int machine_attach_disk(struct machine *m, const struct disk_spec *spec,
                        struct blk_backend *blk, struct error **errp);
/* Detach by drive id (spec->id or the generated one, e.g. "ide0-hd0"). */
int machine_detach_disk(struct machine *m, const char *id, struct error **errp);

/* Guest access: what a transport delivers. Unclaimed ports read all ones
 * (as QEMU does: 0xff / 0xffff / 0xffffffff) and ignore writes. */
uint32_t machine_pio_read(struct machine *m, uint16_t port, unsigned size);
void machine_pio_write(struct machine *m, uint16_t port, unsigned size,
                       uint32_t val);

/*
 * Guest-physical memory: RAM, MMIO (PCI BARs, MSI window) and unassigned
 * space (reads zero, as QEMU's unassigned memory does; writes dropped).
 * The BIOS window 0xc0000-0xfffff is ROM until the guest maps RAM there
 * with the i440FX's PAM registers, as on QEMU's pc: writes are dropped
 * and reads return zero. QEMU shows its SeaBIOS image at 0xe0000-0xfffff
 * and 0xfffc0000-0xffffffff; diskdm has none and reads zero (traces mask
 * those bytes). Little endian. Returns 0, or -EFAULT only for accesses
 * that wrap the address space.
 */
int machine_mem_read(struct machine *m, uint64_t addr, void *buf, size_t len);
int machine_mem_write(struct machine *m, uint64_t addr, const void *buf,
                      size_t len);
uint64_t machine_ram_size(const struct machine *m);

/*
 * IRQ observation for the transport: called whenever an IOAPIC input
 * (GSI) changes level, sometimes also with the level it already had (a
 * device setting its pin again, as QEMU's do: observers counting edges
 * compare with the previous level), and for MSI messages (gsi = -1, with
 * the address and data written by the device).
 */
typedef void machine_irq_fn(void *opaque, int gsi, bool level);
typedef void machine_msi_fn(void *opaque, uint64_t addr, uint32_t data);
void machine_set_irq_observer(struct machine *m, machine_irq_fn *irq,
                              machine_msi_fn *msi, void *opaque);
bool machine_irq_level(const struct machine *m, int gsi);

/*
 * Removable media, for the machine's owner: called when the guest moves a
 * CD-ROM tray (START STOP UNIT with LoEj set, opening or closing it), with
 * the drive's backend and where the tray is now. Not called for moves the
 * host makes itself (blk_insert/blk_eject). The owner may look at the
 * backend but must not detach the drive from inside the call. As QEMU's
 * DEVICE_TRAY_MOVED event: the owner learns of an eject at once, without
 * polling blk_dev_is_tray_open.
 */
typedef void machine_tray_fn(void *opaque, struct blk_backend *blk, bool open);
void machine_set_tray_observer(struct machine *m, machine_tray_fn *fn,
                               void *opaque);

/* System reset: every device to its power-on state. */
void machine_reset(struct machine *m);

/*
 * qtest transport (hw/qtest.c): QEMU 7.2's text protocol over a pair of
 * fds (stdio, or a connected Unix socket), dispatched from the event loop.
 * Malformed lines get an error reply instead of aborting. `on_close` runs
 * when the peer hangs up.
 */
struct qtest_server;
struct qtest_server *qtest_server_new(struct machine *m, struct event_loop *loop,
                                      int in_fd, int out_fd,
                                      ev_fn *on_close, void *opaque,
                                      struct error **errp);
void qtest_server_free(struct qtest_server *qs);
/* Handle one request line (without '\n') as if it had arrived; replies
 * go to out_fd. For unit tests and fuzzing. */
void qtest_handle_line(struct qtest_server *qs, const char *line);

/*
 * vhost-user-blk back end (hw/vhost-user-blk.c): the virtio-blk request
 * path of the PCI device, driven by a vhost-user front end (QEMU's
 * vhost-user-blk-pci) over a connected Unix socket. One front end at a
 * time; when it goes away the device forgets it (after the requests in
 * flight finish) and `on_close` runs, so the caller can accept the next.
 */
struct vub;
typedef void vub_close_fn(void *opaque);
struct vub_config {
    struct blk_backend *blk;    /* not owned */
    const char *serial;         /* GET_ID; NULL = empty */
    unsigned num_queues;        /* 0 = 1 */
    vub_close_fn *on_close;
    void *opaque;
};
struct vub *vub_new(struct event_loop *loop, const struct vub_config *cfg,
                    struct error **errp);
/* Serve a connected socket (taken over; closed on disconnect or free).
 * -EBUSY while another front end is connected. */
int vub_attach(struct vub *v, int fd, struct error **errp);
bool vub_connected(const struct vub *v);
void vub_free(struct vub *v);

#endif
