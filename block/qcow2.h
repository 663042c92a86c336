/*
 * block/qcow2.h — private to the qcow2 driver: on-disk constants, the
 * per-node state, and the functions the qcow2*.c files share (header and
 * open in qcow2.c, L1/L2 and data in qcow2-cluster.c, refcounts and
 * allocation in qcow2-refcount.c, extended L2 entries in
 * qcow2-subcluster.c, internal snapshots in qcow2-snapshot.c, creation in
 * qcow2-create.c, the snapshot=on overlay in qcow2-overlay.c, header
 * rewrites in qcow2-amend.c, compressed writes in qcow2-compress.c).
 *
 * Locking: bs->lock guards all metadata (tables, caches, allocator);
 * io_lock (see below) keeps clusters alive under unlocked data transfers.
 */
#ifndef DISKDM_QCOW2_H
#define DISKDM_QCOW2_H

#include "block/block-int.h"

#define QCOW2_MAGIC 0x514649fbu     /* "QFI\xfb" */
#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_V3_HEADER_LEN 104     /* minimum header_length for v3 */
#define QCOW2_HEADER_LEN_WRITTEN 112 /* with the compression type byte */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_CHAIN_DEPTH 64
/* Sanity caps on tables read into memory (as QEMU: 32 MiB L1, 8 MiB
 * refcount table). */
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_RT_BYTES (8u << 20)

/* Header field offsets (big-endian). */
#define QH_VERSION          4
#define QH_BACKING_OFFSET   8
#define QH_BACKING_SIZE     16
#define QH_CLUSTER_BITS     20
#define QH_SIZE             24
#define QH_CRYPT            32
#define QH_L1_SIZE          36
#define QH_L1_OFFSET        40
#define QH_RT_OFFSET        48
#define QH_RT_CLUSTERS      56
#define QH_NB_SNAPSHOTS     60
#define QH_SNAPSHOTS_OFFSET 64
#define QH_INCOMPAT         72
#define QH_COMPAT           80
#define QH_AUTOCLEAR        88
#define QH_REFCOUNT_ORDER   96
#define QH_HEADER_LENGTH    100
#define QH_COMPRESSION_TYPE 104

/* Feature bits. */
#define QCOW2_INCOMPAT_DIRTY        (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT      (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE    (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION  (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2        (1ull << 4)
#define QCOW2_INCOMPAT_SUPPORTED    (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | \
                                     QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_EXTL2 | \
                                     QCOW2_INCOMPAT_DATA_FILE)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_RAW    (1ull << 1)

/* Header extension types. */
#define QCOW2_EXT_END           0x00000000u
#define QCOW2_EXT_BACKING_FMT   0xe2792acau
#define QCOW2_EXT_FEATURE_NAMES 0x6803f857u
#define QCOW2_EXT_DATA_FILE     0x44415441u     /* "DATA" */

/* L1 / L2 entry bits. */
#define QCOW2_OFLAG_COPIED      (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED  (1ull << 62)
#define QCOW2_OFLAG_ZERO        (1ull << 0)
#define QCOW2_L1E_OFFSET_MASK   0x00fffffffffffe00ull
#define QCOW2_L2E_OFFSET_MASK   0x00fffffffffffe00ull
#define QCOW2_RT_OFFSET_MASK    0xfffffffffffffe00ull

/* Extended L2 entries: a second word per entry, subcluster x allocated
 * (bit x) or reading as zeroes (bit 32 + x). */
#define QCOW2_SUBCLUSTERS       32
#define QCOW2_BM_ALLOC_ALL      0x00000000ffffffffull
#define QCOW2_BM_ZERO_ALL       0xffffffff00000000ull

enum qcow2_compression { QCOW2_COMPRESS_ZLIB = 0, QCOW2_COMPRESS_ZSTD = 1 };

/* What a guest cluster maps to, decoded from its L2 entry. */
enum qcow2_ctype {
    QCOW2_C_UNALLOCATED,    /* from backing, else zeroes */
    QCOW2_C_ZERO_PLAIN,     /* zero flag, no host cluster */
    QCOW2_C_ZERO_ALLOC,     /* zero flag with a preallocated host cluster */
    QCOW2_C_NORMAL,         /* data at host offset */
    QCOW2_C_COMPRESSED,     /* compressed descriptor */
};

/* One entry of the internal snapshot table. */
struct qcow2_snapshot {
    uint64_t l1_offset;
    uint32_t l1_size;
    char *id, *name;                /* NUL-terminated copies */
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;
    uint64_t icount;                /* UINT64_MAX: not recorded */
    uint32_t extra_len;             /* extra data kept verbatim past what we know */
    uint8_t *extra;
};
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024
#define QCOW2_MAX_SNAPSHOTS_BYTES (64u << 20)

/* A header extension kept verbatim so a rewrite preserves it. */
struct qcow2_ext {
    uint32_t type;
    uint32_t len;
    uint8_t *data;
};

/*
 * A small set-associative cache of one-cluster metadata tables (L2 tables
 * or refcount blocks), write-through: a changed entry is written to the
 * file at once, so the cache never holds dirty data and eviction is free.
 * The one exception: refcount blocks of an image written with lazy
 * refcounts (dirty bit set) are written back on eviction and flush
 * (`dirty` per slot, `file` to write them to). Protected by the node's
 * lock.
 */
#define QCOW2_CACHE_WAYS 4
struct qcow2_cache {
    unsigned sets;          /* power of two */
    uint32_t table_size;    /* bytes per table (the cluster size) */
    uint8_t *mem;           /* sets * WAYS tables */
    uint64_t *offset;       /* host offset per slot, 0 = empty */
    uint64_t *stamp;        /* LRU clock per slot */
    uint64_t clock;
    bool *dirty;            /* per slot: changed, not yet written */
    struct bdrv_node *file;
};

struct qcow2_state {
    struct bdrv_node *bs;
    struct bdrv_node *file;

    /* Header, decoded. */
    uint32_t version;
    uint32_t cluster_bits;
    uint32_t cluster_size;
    uint64_t cluster_mask;          /* cluster_size - 1 */
    uint32_t l2_bits;               /* log2(entries per L2 table) */
    uint32_t l2_size;               /* entries per L2 table */
    bool ext_l2;                    /* extended L2 entries (16 bytes each) */
    uint32_t l2e_size;              /* bytes per L2 entry: 8 or 16 */
    uint32_t sc_bits;               /* log2(subcluster size) when ext_l2 */
    uint64_t size;                  /* virtual size */
    uint32_t l1_size;
    uint64_t l1_offset;
    uint64_t rt_offset;
    uint32_t rt_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t snapshots_size;        /* bytes of the table */
    struct qcow2_snapshot *snaps;   /* nb_snapshots entries */
    uint64_t incompat, compat, autoclear;
    uint32_t refcount_order;
    uint32_t refcount_bits;
    uint64_t refcount_max;
    uint32_t rb_bits;               /* log2(entries per refcount block) */
    uint32_t header_length;
    enum qcow2_compression compression;
    uint32_t csize_shift, csize_mask;   /* compressed descriptor fields */
    uint64_t coffset_mask;

    char *backing_file;             /* as stored, NUL-terminated; NULL none */
    char *backing_fmt;              /* from the extension; NULL none */
    char *full_backing_file;        /* resolved against the image's dir */
    /*
     * External data file (incompatible bit 2): guest clusters live at
     * their guest offset in `data`, outside the refcounts; `data` is
     * opened read-only exactly when the image is. With `data_raw` (the
     * autoclear bit) the data file alone is a valid raw image too.
     */
    char *data_file;                /* name as stored; NULL none */
    char *full_data_file;           /* resolved against the image's dir */
    struct bdrv_node *data;
    bool data_raw;
    bool data_reopened;             /* made writable by a reopen in progress */
    struct qcow2_ext *exts;         /* every extension, in order */
    unsigned nb_exts;

    uint64_t *l1;                   /* host-endian copy of the L1 table */
    uint64_t *rt;                   /* host-endian copy of the refcount table */
    uint32_t rt_entries;            /* rt_clusters * cluster_size / 8 */

    struct qcow2_cache l2_cache;
    struct qcow2_cache rb_cache;

    /*
     * Clusters reserved for allocation: their refcount is already 1 on
     * disk (and flushed), so handing one out needs no refcount write. A
     * crash leaks the unused ones; close gives them back.
     */
    uint64_t pool_next, pool_end;   /* cluster indices [next, end) */
    uint64_t pool_batch;            /* bytes the next refill reserves */
    bool pool_fresh;                /* pool lies in a hole made by
                                     * extending the file: reads as zeroes */
    uint64_t free_hint;             /* first cluster index that may be free */
    uint64_t file_len;              /* the file's length as we know it */

    /* During check/repair: reference counts computed from the metadata;
     * the allocator then treats clusters with a count as in use. */
    uint32_t *check_refs;
    uint64_t check_nb;

    /*
     * Data I/O on allocated clusters runs outside bs->lock but holds
     * io_lock shared, from the mapping lookup to the end of the transfer;
     * whatever makes a cluster free (discard, write-zeroes, emptying)
     * holds it exclusive. So a cluster is never freed, and reallocated
     * elsewhere, under a transfer still using it. Copy-on-write replaces
     * a cluster while holding it shared, so its old cluster goes on the
     * `pending` list and is freed later under the exclusive lock (a crash
     * meanwhile only leaks it). Order: io_lock before bs->lock.
     */
    pthread_rwlock_t io_lock;
    bool io_lock_ready;
    uint64_t *pending;              /* L2 entries whose clusters to free */
    unsigned nb_pending, cap_pending;

    uint8_t *zero_cluster;          /* one cluster of zeroes, read-only use */
    uint8_t *cow_buf;               /* one cluster, used under the lock */
    uint8_t *cow_buf2;              /* another (tail of a multi-cluster write) */
    uint8_t *l2_batch;              /* new L2 entries of a multi-cluster write */
    bool writable;                  /* opened read-write and header clean */
    /* Lazy refcounts (compat bit) on a writable image: refcount block
     * changes stay in the cache until flush, close or eviction; the dirty
     * bit is set before the first one is deferred, so a crash is repaired
     * at the next read-write open. */
    bool lazy;
};

/* ---- byte order ---------------------------------------------------- */
static inline uint64_t qcow2_be64(const void *p)
{
    uint64_t v;
    __builtin_memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}
static inline uint32_t qcow2_be32(const void *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}
static inline uint16_t qcow2_be16(const void *p)
{
    uint16_t v;
    __builtin_memcpy(&v, p, 2);
    return __builtin_bswap16(v);
}
static inline void qcow2_put_be64(void *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    __builtin_memcpy(p, &v, 8);
}
static inline void qcow2_put_be32(void *p, uint32_t v)
{
    v = __builtin_bswap32(v);
    __builtin_memcpy(p, &v, 4);
}
static inline void qcow2_put_be16(void *p, uint16_t v)
{
    v = __builtin_bswap16(v);
    __builtin_memcpy(p, &v, 2);
}

static inline uint64_t qcow2_align_up(const struct qcow2_state *s, uint64_t v)
{
    return (v + s->cluster_mask) & ~s->cluster_mask;
}

/* Where guest data lives: the external data file, else the image. */
static inline struct bdrv_node *qcow2_data_node(const struct qcow2_state *s)
{
    return s->data ? s->data : s->file;
}

/* Entry `i` of an L2 table and, with extended entries, its bitmap. */
static inline uint64_t qcow2_l2_get(const struct qcow2_state *s, const uint8_t *t, uint64_t i)
{
    return qcow2_be64(t + i * s->l2e_size);
}
static inline uint64_t qcow2_l2_bitmap(const struct qcow2_state *s, const uint8_t *t,
                                       uint64_t i)
{
    return s->ext_l2 ? qcow2_be64(t + i * 16 + 8) : 0;
}
/* Mask of subclusters [first, first+n) in the allocation half. */
static inline uint64_t qcow2_sc_mask(unsigned first, unsigned n)
{
    return (n >= 32 ? 0xffffffffull : ((1ull << n) - 1)) << first;
}

/* ---- qcow2.c ------------------------------------------------------- */
/* A table of `entries` big-endian u64 at `off`, host-endian in *out
 * (at least one entry allocated; the caller frees it). */
int qcow2_load_table(struct qcow2_state *s, uint64_t off, uint32_t entries,
                     uint64_t **out);
/* Write header field(s) in place at `off` (big-endian bytes in buf). */
int qcow2_write_header_field(struct qcow2_state *s, unsigned off,
                             const void *buf, size_t len);
int qcow2_set_incompat(struct qcow2_state *s, uint64_t incompat);
/* Metadata found inconsistent: log it and, on a writable image, set the
 * corrupt bit so nothing more is written. Caller holds bs->lock. */
void qcow2_signal_corruption(struct qcow2_state *s, const char *fmt, ...) PRINTF_FMT(2, 3);

/* ---- qcow2-cluster.c ----------------------------------------------- */
int qcow2_cache_init(struct qcow2_cache *c, unsigned nb_tables, uint32_t table_size);
void qcow2_cache_free(struct qcow2_cache *c);
/* Table at host offset `off` (loaded on a miss); NULL with *ret set. */
uint8_t *qcow2_cache_get(struct qcow2_state *s, struct qcow2_cache *c,
                         uint64_t off, int *ret);
/* A freshly written table: put `data` into the cache under `off`. */
void qcow2_cache_put(struct qcow2_cache *c, uint64_t off, const void *data);
void qcow2_cache_drop(struct qcow2_cache *c, uint64_t off);
/* Lazy refcounts: the block at `off` (cached) changed; written later. */
void qcow2_cache_mark_dirty(struct qcow2_cache *c, uint64_t off);
/* Write every changed table back (flush of the file is the caller's). */
int qcow2_cache_writeback(struct qcow2_cache *c);

int qcow2_co_preadv(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                    const struct iovec *iov, int iovcnt, unsigned flags);
int qcow2_preadv_nowait(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                        const struct iovec *iov, int iovcnt);
int qcow2_aio_submit(struct bdrv_node *bs, struct bdrv_aio *aio);
int qcow2_co_pwritev(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                     const struct iovec *iov, int iovcnt, unsigned flags);
int qcow2_co_pwrite_zeroes(struct bdrv_node *bs, uint64_t offset,
                           uint64_t bytes, unsigned flags);
int qcow2_co_pdiscard(struct bdrv_node *bs, uint64_t offset, uint64_t bytes);
int qcow2_make_empty(struct bdrv_node *bs);
/* Free the pending clusters; caller holds io_lock exclusive and bs->lock. */
void qcow2_reclaim(struct qcow2_state *s);
int qcow2_co_block_status(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                          uint64_t *pnum, uint64_t *map, struct bdrv_node **file);
/* Decode an L2 entry. */
enum qcow2_ctype qcow2_classify(const struct qcow2_state *s, uint64_t l2e);
/* Host clusters a compressed descriptor spans: first and count. */
void qcow2_compressed_range(const struct qcow2_state *s, uint64_t l2e,
                            uint64_t *first, uint64_t *nb);

/* Shared with qcow2-subcluster.c (all: caller holds bs->lock). */
#define QCOW2_IOV_STACK 32
/* Up to `max` iovecs for bytes [off, off+len) of iov; -1 when more. */
int qcow2_iov_slice(const struct iovec *iov, int iovcnt, size_t off, size_t len,
                    struct iovec *out, int max);
/* L2 table for l1 index `i`, or NULL (unallocated: *ret = 0). */
uint8_t *qcow2_l2_table(struct qcow2_state *s, uint64_t i, uint64_t *l2_off, int *ret);
/* A writable (COPIED) L2 table for l1 index `i` (allocated or copied). */
uint8_t *qcow2_l2_table_for_write(struct qcow2_state *s, uint64_t i, uint64_t *l2_off,
                                  int *ret);
/* The COPIED flag of every allocated entry of L2 table `t` (in memory)
 * set to "refcount is 1": 1 when one changed, 0 when none, or -errno. */
int qcow2_l2_fix_copied(struct qcow2_state *s, uint8_t *t);
/* Write L2 entry `index` and, with extended entries, its bitmap. */
int qcow2_write_l2_entry_bm(struct qcow2_state *s, uint64_t l2_off, uint8_t *table,
                            uint64_t index, uint64_t e, uint64_t bm);
/* Free the cluster(s) behind a replaced entry once transfers are done. */
int qcow2_add_pending(struct qcow2_state *s, uint64_t l2e);
int qcow2_read_compressed(struct qcow2_state *s, uint64_t l2e, uint8_t *out);
/* Guest bytes from the backing chain (zeroes past its end). */
int qcow2_read_backing(struct bdrv_node *bs, uint64_t off, uint64_t len,
                       const struct iovec *iov, int iovcnt, size_t iov_off);
enum change_mode { CHANGE_ZERO, CHANGE_DISCARD, CHANGE_EMPTY };
int qcow2_change_clusters(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                          enum change_mode mode, bool unmap);
/* Real zeroes written over [from, to) through the write path (no locks held). */
int qcow2_write_zero_buffers(struct bdrv_node *bs, uint64_t from, uint64_t to);

/* ---- qcow2-refcount.c (lazy refcounts) ----------------------------- */
/* Deferred refcounts written and flushed, then the dirty bit cleared.
 * Caller holds bs->lock (or is opening/closing). */
int qcow2_mark_clean(struct qcow2_state *s);

/* ---- qcow2-subcluster.c -------------------------------------------- */
int qcow2_get_mapping_sc(struct qcow2_state *s, const uint8_t *t, uint64_t l2_index,
                         uint64_t max_cl, uint64_t off, uint64_t bytes,
                         enum qcow2_ctype *type, uint64_t *l2e_out, uint64_t *pn);
int qcow2_ext_write(struct bdrv_node *bs, uint64_t cur, uint64_t n,
                    const struct iovec *iov, int iovcnt, size_t iov_off);
/* Write-zeroes with extended entries; takes the locks itself. */
int qcow2_ext_pwrite_zeroes(struct bdrv_node *bs, uint64_t offset, uint64_t end,
                            unsigned flags);

/* ---- qcow2-refcount.c ---------------------------------------------- */
int qcow2_get_refcount(struct qcow2_state *s, uint64_t cluster, uint64_t *rc);
int qcow2_set_refcount(struct qcow2_state *s, uint64_t cluster, uint64_t rc);
/* Hand out one cluster (refcount already 1 on disk); host offset or -errno. */
int64_t qcow2_alloc_cluster(struct qcow2_state *s, bool *fresh);
/* Host offset of `n` contiguous new clusters (refcount 1 each), or -errno. */
int64_t qcow2_alloc_clusters(struct qcow2_state *s, uint64_t n);
/* Drop one reference to each host cluster of [off, off+len). */
int qcow2_free_clusters(struct qcow2_state *s, uint64_t off, uint64_t len);
/* Give back the unused pool (on close and before a check). */
void qcow2_pool_release(struct qcow2_state *s);
/* Extend the file to at least `len` bytes. */
int qcow2_grow_file(struct qcow2_state *s, uint64_t len);

/* Recount every reference; `fix` (BDRV_FIX_*) makes the refcounts
 * match. Caller holds io_lock exclusive (or is opening the image). */
int qcow2_check_refcounts(struct qcow2_state *s, unsigned fix,
                          struct bdrv_check_result *res, struct error **errp);

/* ---- qcow2-snapshot.c ---------------------------------------------- */
/* Read and validate the snapshot table (open). */
int qcow2_read_snapshots(struct qcow2_state *s, struct error **errp);
void qcow2_free_snapshots(struct qcow2_state *s);
int qcow2_snapshot_list(struct bdrv_node *bs, struct bdrv_snapshot **list,
                        struct error **errp);
int qcow2_snapshot_create(struct bdrv_node *bs, const char *name, struct error **errp);
int qcow2_snapshot_apply(struct bdrv_node *bs, const char *name, struct error **errp);
int qcow2_snapshot_delete(struct bdrv_node *bs, const char *name, struct error **errp);

/* ---- qcow2-create.c ------------------------------------------------ */
int qcow2_create(const char *filename, const struct bdrv_create_opts *opts,
                 struct error **errp);

#endif
