/*
 * tools/nbd/export.h — an NBD export over a block backend (export.c), and
 * the partition table reader behind -P (partition.c).
 */
#ifndef DISKDM_NBD_EXPORT_H
#define DISKDM_NBD_EXPORT_H

#include "block/block.h"
#include "tools/nbd/nbd-int.h"

#include <inttypes.h>

struct nbd_export_cfg {
    const char *name;
    const char *description;
    int partition;              /* -P N: export partition N (0 = whole disk) */
    uint64_t offset;            /* window start in the image or partition (-o) */
    uint64_t size;              /* window length when has_size */
    bool has_size;
    bool multi_conn;            /* more than one client may connect */
    bool allocation_depth;      /* -A */
    bool zero_copy;             /* allow splice from the image file */
    enum cache_mode cache;
};

/* A block status answer remembered by a read-only export (nothing can
 * change the image under it), so that the READs that follow skip the
 * lookup. */
struct nbd_bs_cache {
    uint64_t off, len;          /* node offsets; len 0 = unused */
    int ret;                    /* BDRV_BLOCK_* */
    uint64_t map;               /* protocol offset of `off` if OFFSET_VALID */
    int depth;
};

/* A readahead window already requested on the zero-copy descriptor. */
struct nbd_ra_window {
    uint64_t start, end;        /* file offsets; end 0 = unused */
};

#define NBD_BS_CACHE_SLOTS  4   /* one per sequential reader, a few readers */
#define NBD_RA_SLOTS        4

struct nbd_blk_export {
    struct nbd_export exp;      /* what sessions see; opaque = this */
    struct event_loop *loop;
    struct blk_backend *blk;
    struct bdrv_node *root;
    struct thread_pool *pool;   /* block status for formats with metadata */
    uint64_t base, size;
    bool bs_inline;             /* block status is cheap: run it inline */
    int zc_fd;                  /* read-only fd of the raw file, or -1 */
    bool zc_identity;           /* raw: file offset == node offset */
    bool bs_cached;             /* read-only: block status answers are kept */
    struct nbd_bs_cache bsc[NBD_BS_CACHE_SLOTS];
    unsigned bsc_next;          /* slot replaced next */
    struct nbd_ra_window ra[NBD_RA_SLOTS];
    unsigned ra_next;
};

int nbd_blk_export_open(struct nbd_blk_export *ex, struct event_loop *loop,
                        const struct bdrv_open_opts *opts,
                        const struct nbd_export_cfg *cfg, struct error **errp);
void nbd_blk_export_close(struct nbd_blk_export *ex);

/*
 * Find partition `num` (1-based; MBR primaries 1-4 and logical 5+, or GPT
 * entries) of the disk behind `blk`: byte offset and length. 0 or -errno
 * with a message.
 */
int nbd_find_partition(struct blk_backend *blk, int num, uint64_t *offset,
                       uint64_t *size, struct error **errp);

#endif
