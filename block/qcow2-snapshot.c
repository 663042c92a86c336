/*
 * block/qcow2-snapshot.c — internal snapshots: the snapshot table (read
 * and validated at open, rewritten whole into new clusters on a change),
 * and create / apply / delete with the reference counting that makes
 * later writes copy the clusters a snapshot shares (no COPIED flag).
 */
#include "block/qcow2.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SNAP_HEADER_LEN 40
#define SNAP_EXTRA_WRITTEN 24   /* vm state size, disk size, icount */

void qcow2_free_snapshots(struct qcow2_state *s)
{
    for (uint32_t i = 0; s->snaps && i < s->nb_snapshots; i++) {
        free(s->snaps[i].id);
        free(s->snaps[i].name);
        free(s->snaps[i].extra);
    }
    free(s->snaps);
    s->snaps = NULL;
}

static char *read_string(struct qcow2_state *s, uint64_t off, uint32_t len, int *ret)
{
    char *p = malloc((size_t)len + 1);
    if (!p) {
        *ret = -ENOMEM;
        return NULL;
    }
    *ret = len ? bdrv_pread(s->file, off, p, len) : 0;
    if (*ret < 0) {
        free(p);
        return NULL;
    }
    p[len] = '\0';
    return p;
}

int qcow2_read_snapshots(struct qcow2_state *s, struct error **errp)
{
    const char *fn = s->bs->filename ? s->bs->filename : "";
    uint64_t off = s->snapshots_offset;
    int ret = 0;

    s->snapshots_size = 0;
    if (!s->nb_snapshots) {
        return 0;
    }
    s->snaps = calloc(s->nb_snapshots, sizeof(*s->snaps));
    if (!s->snaps) {
        error_setg(errp, "Out of memory");
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snaps[i];
        uint8_t h[SNAP_HEADER_LEN];
        off = ROUND_UP(off, 8);
        if (off + SNAP_HEADER_LEN > s->file_len) {
            error_setg(errp, "'%s': snapshot table entry %" PRIu32 " lies beyond the end "
                       "of the file", fn, i);
            return -EINVAL;
        }
        ret = bdrv_pread(s->file, off, h, sizeof(h));
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not read the snapshot table of '%s'", fn);
            return ret;
        }
        sn->l1_offset = qcow2_be64(h);
        sn->l1_size = qcow2_be32(h + 8);
        uint32_t id_len = qcow2_be16(h + 12), name_len = qcow2_be16(h + 14);
        sn->date_sec = qcow2_be32(h + 16);
        sn->date_nsec = qcow2_be32(h + 20);
        sn->vm_clock_nsec = qcow2_be64(h + 24);
        sn->vm_state_size = qcow2_be32(h + 32);
        uint32_t extra_len = qcow2_be32(h + 36);
        if (extra_len > QCOW2_MAX_SNAPSHOT_EXTRA) {
            error_setg(errp, "'%s': snapshot %" PRIu32 " has too much extra data (%" PRIu32
                       " bytes)", fn, i, extra_len);
            return -EFBIG;
        }
        uint64_t end = off + SNAP_HEADER_LEN + extra_len + id_len + name_len;
        if (end > s->file_len) {
            error_setg(errp, "'%s': snapshot table entry %" PRIu32 " lies beyond the end "
                       "of the file", fn, i);
            return -EINVAL;
        }
        if (end - s->snapshots_offset > QCOW2_MAX_SNAPSHOTS_BYTES) {
            error_setg(errp, "'%s': snapshot table too large", fn);
            return -EFBIG;
        }
        if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
            error_setg(errp, "'%s': snapshot %" PRIu32 ": L1 table too large (%" PRIu32
                       " entries)", fn, i, sn->l1_size);
            return -EFBIG;
        }
        if ((sn->l1_offset & s->cluster_mask) ||
            sn->l1_offset + (uint64_t)sn->l1_size * 8 > s->file_len ||
            (sn->l1_size && !sn->l1_offset)) {
            error_setg(errp, "'%s': snapshot %" PRIu32 ": L1 table (offset %#" PRIx64 ", %"
                       PRIu32 " entries) is unaligned or lies beyond the end of the file",
                       fn, i, sn->l1_offset, sn->l1_size);
            return -EINVAL;
        }
        sn->extra_len = extra_len;
        if (extra_len) {
            sn->extra = malloc(extra_len);
            if (!sn->extra) {
                error_setg(errp, "Out of memory");
                return -ENOMEM;
            }
            ret = bdrv_pread(s->file, off + SNAP_HEADER_LEN, sn->extra, extra_len);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Could not read the snapshot table of '%s'", fn);
                return ret;
            }
        }
        sn->disk_size = s->size;
        sn->icount = UINT64_MAX;
        if (extra_len >= 8) {
            sn->vm_state_size = qcow2_be64(sn->extra);
        }
        if (extra_len >= 16) {
            sn->disk_size = qcow2_be64(sn->extra + 8);
        }
        if (extra_len >= 24) {
            sn->icount = qcow2_be64(sn->extra + 16);
        }
        uint64_t p = off + SNAP_HEADER_LEN + extra_len;
        sn->id = read_string(s, p, id_len, &ret);
        if (sn->id) {
            sn->name = read_string(s, p + id_len, name_len, &ret);
        }
        if (!sn->name) {
            error_setg_errno(errp, -ret, "Could not read the snapshot table of '%s'", fn);
            return ret;
        }
        off = end;
    }
    s->snapshots_size = ROUND_UP(off, 8) - s->snapshots_offset;
    return 0;
}

int qcow2_snapshot_list(struct bdrv_node *bs, struct bdrv_snapshot **list,
                        struct error **errp)
{
    struct qcow2_state *s = bs->opaque;
    pthread_mutex_lock(&bs->lock);
    uint32_t n = s->nb_snapshots;
    struct bdrv_snapshot *l = n ? calloc(n, sizeof(*l)) : NULL;
    int ret = n && !l ? -ENOMEM : (int)n;
    for (uint32_t i = 0; l && i < n; i++) {
        const struct qcow2_snapshot *sn = &s->snaps[i];
        l[i] = (struct bdrv_snapshot){
            .id = strdup(sn->id), .name = strdup(sn->name),
            .vm_state_size = sn->vm_state_size, .date_sec = sn->date_sec,
            .date_nsec = sn->date_nsec, .vm_clock_nsec = sn->vm_clock_nsec,
            .icount = sn->icount, .disk_size = sn->disk_size,
        };
        if (!l[i].id || !l[i].name) {
            ret = -ENOMEM;
        }
    }
    pthread_mutex_unlock(&bs->lock);
    if (ret < 0) {
        bdrv_snapshot_list_free(l, (int)n);
        error_setg(errp, "Out of memory");
        return ret;
    }
    *list = l;
    return ret;
}

/* ---- reference counting ------------------------------------------- */

/* One reference more (addend 1) or less (-1) on each cluster of
 * [off, off+len). */
static int ref_update(struct qcow2_state *s, uint64_t off, uint64_t len, int addend)
{
    if (addend < 0) {
        return qcow2_free_clusters(s, off, len);
    }
    for (uint64_t c = off >> s->cluster_bits;
         c < (off + len + s->cluster_mask) >> s->cluster_bits; c++) {
        uint64_t rc;
        int ret = qcow2_get_refcount(s, c, &rc);
        if (ret < 0) {
            return ret;
        }
        if (rc == 0) {
            qcow2_signal_corruption(s, "cluster %" PRIu64 " is in use but its refcount "
                                    "is 0", c);
            return -EIO;
        }
        if (rc >= s->refcount_max) {
            return -ERANGE;     /* refcount_bits too narrow for another snapshot */
        }
        ret = qcow2_set_refcount(s, c, rc + 1);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* Every L2 table and data cluster an L1 table (host-endian copy) leads to
 * gets `addend` references. */
static int walk_l1(struct qcow2_state *s, const uint64_t *l1, uint32_t l1_size, int addend)
{
    uint8_t *buf = malloc(s->cluster_size);
    int ret = buf ? 0 : -ENOMEM;
    for (uint32_t i = 0; i < l1_size && ret == 0; i++) {
        uint64_t l2 = l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (!l2) {
            continue;
        }
        if ((l2 & s->cluster_mask) || l2 + s->cluster_size > s->file_len) {
            qcow2_signal_corruption(s, "L2 table offset %#" PRIx64 " is invalid", l2);
            ret = -EIO;
            break;
        }
        ret = bdrv_pread(s->file, l2, buf, s->cluster_size);
        for (uint32_t j = 0; j < s->l2_size && ret == 0; j++) {
            uint64_t e = qcow2_l2_get(s, buf, j);
            switch (qcow2_classify(s, e)) {
            case QCOW2_C_NORMAL:
            case QCOW2_C_ZERO_ALLOC:
                ret = ref_update(s, e & QCOW2_L2E_OFFSET_MASK, s->cluster_size, addend);
                break;
            case QCOW2_C_COMPRESSED: {
                uint64_t first, nb;
                qcow2_compressed_range(s, e, &first, &nb);
                ret = ref_update(s, first << s->cluster_bits, nb << s->cluster_bits, addend);
                break;
            }
            default:
                break;
            }
        }
        if (ret == 0) {
            ret = ref_update(s, l2, s->cluster_size, addend);
        }
    }
    free(buf);
    return ret;
}

/* The COPIED flags of the active L1 and its L2 tables made to say
 * exactly "refcount is 1". */
static int fix_copied(struct qcow2_state *s)
{
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l2 = s->l1[i] & QCOW2_L1E_OFFSET_MASK, rc;
        if (!l2) {
            continue;
        }
        int ret = qcow2_get_refcount(s, l2 >> s->cluster_bits, &rc);
        if (ret < 0) {
            return ret;
        }
        uint64_t want = (s->l1[i] & ~QCOW2_OFLAG_COPIED) | (rc == 1 ? QCOW2_OFLAG_COPIED : 0);
        if (want != s->l1[i]) {
            uint8_t b[8];
            qcow2_put_be64(b, want);
            ret = bdrv_pwrite(s->file, s->l1_offset + (uint64_t)i * 8, b, 8, 0);
            if (ret < 0) {
                return ret;
            }
            s->l1[i] = want;
        }
        uint8_t *t = qcow2_cache_get(s, &s->l2_cache, l2, &ret);
        if (!t) {
            return ret;
        }
        ret = qcow2_l2_fix_copied(s, t);
        if (ret > 0) {
            ret = bdrv_pwrite(s->file, l2, t, s->cluster_size, 0);
        }
        if (ret < 0) {
            qcow2_cache_drop(&s->l2_cache, l2);     /* may be half changed */
            return ret;
        }
    }
    return 0;
}

/* An L1 table (host-endian) written big-endian at `off`, `n` entries of
 * a `cap`-entry area (the rest zero). */
static int write_l1(struct qcow2_state *s, uint64_t off, const uint64_t *l1, uint32_t n,
                    uint32_t cap)
{
    if (!cap) {
        return 0;
    }
    uint8_t *b = calloc(cap, 8);
    if (!b) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        qcow2_put_be64(b + (uint64_t)i * 8, l1[i]);
    }
    int ret = bdrv_pwrite(s->file, off, b, (size_t)cap * 8, 0);
    free(b);
    return ret;
}

/* Forget every cached L2 table (tables were freed or replaced). */
static void l2_cache_clear(struct qcow2_state *s)
{
    struct qcow2_cache *c = &s->l2_cache;
    memset(c->offset, 0, (size_t)c->sets * QCOW2_CACHE_WAYS * sizeof(*c->offset));
}

/* ---- the table ----------------------------------------------------- */

/*
 * Write `snaps` (n entries) as the new table: into new clusters, then
 * the header points at it, then the old table's clusters go. A crash
 * leaves the old table or the new one, never a mix.
 */
static int write_table(struct qcow2_state *s, struct qcow2_snapshot *snaps, uint32_t n)
{
    uint64_t size = 0;
    for (uint32_t i = 0; i < n; i++) {
        size += ROUND_UP(SNAP_HEADER_LEN + (uint64_t)snaps[i].extra_len +
                         strlen(snaps[i].id) + strlen(snaps[i].name), 8);
    }
    uint8_t *buf = calloc(1, MAX(size, 1));
    if (!buf) {
        return -ENOMEM;
    }
    uint64_t p = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct qcow2_snapshot *sn = &snaps[i];
        size_t il = strlen(sn->id), nl = strlen(sn->name);
        uint8_t *h = buf + p;
        qcow2_put_be64(h, sn->l1_offset);
        qcow2_put_be32(h + 8, sn->l1_size);
        qcow2_put_be16(h + 12, (uint16_t)il);
        qcow2_put_be16(h + 14, (uint16_t)nl);
        qcow2_put_be32(h + 16, sn->date_sec);
        qcow2_put_be32(h + 20, sn->date_nsec);
        qcow2_put_be64(h + 24, sn->vm_clock_nsec);
        qcow2_put_be32(h + 32, (uint32_t)MIN(sn->vm_state_size, UINT32_MAX));
        qcow2_put_be32(h + 36, sn->extra_len);
        if (sn->extra_len) {
            memcpy(h + SNAP_HEADER_LEN, sn->extra, sn->extra_len);
        }
        memcpy(h + SNAP_HEADER_LEN + sn->extra_len, sn->id, il);
        memcpy(h + SNAP_HEADER_LEN + sn->extra_len + il, sn->name, nl);
        p += ROUND_UP(SNAP_HEADER_LEN + (uint64_t)sn->extra_len + il + nl, 8);
    }
    int64_t off = 0;
    int ret = 0;
    if (n) {
        off = qcow2_alloc_clusters(s, DIV_ROUND_UP(size, s->cluster_size));
        ret = off < 0 ? (int)off : bdrv_pwrite(s->file, (uint64_t)off, buf, size, 0);
    }
    free(buf);
    if (ret == 0) {
        ret = bdrv_flush(s->file);
    }
    if (ret < 0) {
        return ret;
    }
    uint8_t hdr[12];
    qcow2_put_be32(hdr, n);
    qcow2_put_be64(hdr + 4, (uint64_t)off);
    ret = qcow2_write_header_field(s, QH_NB_SNAPSHOTS, hdr, sizeof(hdr));
    if (ret < 0) {
        return ret;
    }
    uint64_t old_off = s->snapshots_offset, old_size = s->snapshots_size;
    if (s->nb_snapshots && old_size) {
        ret = qcow2_free_clusters(s, old_off, old_size);  /* a failure only leaks */
    }
    if (snaps != s->snaps) {
        free(s->snaps);     /* the entries' strings moved to `snaps` */
    }
    s->snaps = snaps;
    s->nb_snapshots = n;
    s->snapshots_offset = (uint64_t)off;
    s->snapshots_size = size;
    return 0;
}

/* Index of the snapshot with this ID (when `by_id`) or else name; -1. */
static int find_snapshot(const struct qcow2_state *s, const char *name, bool by_id)
{
    for (uint32_t i = 0; by_id && i < s->nb_snapshots; i++) {
        if (!strcmp(s->snaps[i].id, name)) {
            return (int)i;
        }
    }
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        if (!strcmp(s->snaps[i].name, name)) {
            return (int)i;
        }
    }
    return -1;
}

/* Common entry: writable, no data file, nothing in flight, pool given
 * back (its clusters would count as leaks). Takes the locks. */
static int snap_enter(struct bdrv_node *bs, const char *what, const char *name,
                      struct error **errp)
{
    struct qcow2_state *s = bs->opaque;
    if (!s->writable || (s->incompat & QCOW2_INCOMPAT_CORRUPT)) {
        error_setg(errp, "Could not %s snapshot '%s': '%s' is read-only", what, name,
                   bs->filename);
        return -EACCES;
    }
    if (s->data) {
        error_setg(errp, "Could not %s snapshot '%s': internal snapshots are not "
                   "supported with an external data file", what, name);
        return -ENOTSUP;
    }
    pthread_rwlock_wrlock(&s->io_lock);
    pthread_mutex_lock(&bs->lock);
    qcow2_reclaim(s);
    qcow2_pool_release(s);
    int ret = bdrv_flush(s->file);
    if (ret < 0) {
        pthread_mutex_unlock(&bs->lock);
        pthread_rwlock_unlock(&s->io_lock);
        error_setg_errno(errp, -ret, "Could not %s snapshot '%s'", what, name);
    }
    return ret;
}

static int snap_leave(struct bdrv_node *bs, int ret, const char *what, const char *name,
                      struct error **errp)
{
    struct qcow2_state *s = bs->opaque;
    if (ret == 0) {
        ret = bdrv_flush(s->file);
    }
    pthread_mutex_unlock(&bs->lock);
    pthread_rwlock_unlock(&s->io_lock);
    if (ret < 0) {
        error_setg(errp, "Could not %s snapshot '%s': %s", what, name,
                   ret == -ERANGE ? "refcount overflow (refcount_bits too small)"
                                  : strerror(-ret));
    }
    return ret;
}

int qcow2_snapshot_create(struct bdrv_node *bs, const char *name, struct error **errp)
{
    struct qcow2_state *s = bs->opaque;
    if (strlen(name) > UINT16_MAX) {
        error_setg(errp, "Could not create snapshot '%.20s...': name too long", name);
        return -EINVAL;
    }
    int ret = snap_enter(bs, "create", name, errp);
    if (ret < 0) {
        return ret;
    }
    struct qcow2_snapshot *snaps = NULL;
    char id[16];
    if (s->nb_snapshots >= 65536) {
        ret = -EFBIG;
        goto out;
    }
    /* A new ID: one above the highest numeric one, as qemu-img does. */
    unsigned long max_id = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        unsigned long v = strtoul(s->snaps[i].id, NULL, 10);
        max_id = MAX(max_id, v);
    }
    snprintf(id, sizeof(id), "%lu", max_id + 1);

    /* 1. A copy of the active L1 table. */
    uint64_t l1_bytes = (uint64_t)s->l1_size * 8;
    int64_t l1_off = 0;
    if (s->l1_size) {
        l1_off = qcow2_alloc_clusters(s, DIV_ROUND_UP(l1_bytes, s->cluster_size));
        if (l1_off < 0) {
            ret = (int)l1_off;
            goto out;
        }
        ret = write_l1(s, (uint64_t)l1_off, s->l1, s->l1_size, s->l1_size);
        if (ret < 0) {
            goto out;
        }
    }
    /* 2. Everything it leads to gets a reference more; the active
     * tables' COPIED flags go where that made a cluster shared. */
    ret = walk_l1(s, s->l1, s->l1_size, 1);
    if (ret == 0) {
        ret = fix_copied(s);
    }
    if (ret < 0) {
        goto out;
    }
    /* 3. The table with the new entry; the header last. */
    snaps = calloc(s->nb_snapshots + 1, sizeof(*snaps));
    if (!snaps) {
        ret = -ENOMEM;
        goto out;
    }
    if (s->nb_snapshots) {
        memcpy(snaps, s->snaps, s->nb_snapshots * sizeof(*snaps));
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct qcow2_snapshot *sn = &snaps[s->nb_snapshots];
    *sn = (struct qcow2_snapshot){
        .l1_offset = (uint64_t)l1_off, .l1_size = s->l1_size,
        .id = strdup(id), .name = strdup(name),
        .date_sec = (uint32_t)now.tv_sec, .date_nsec = (uint32_t)now.tv_nsec,
        .disk_size = s->size, .icount = 0,
        .extra_len = SNAP_EXTRA_WRITTEN, .extra = calloc(1, SNAP_EXTRA_WRITTEN),
    };
    if (!sn->id || !sn->name || !sn->extra) {
        free(sn->id);
        free(sn->name);
        free(sn->extra);
        ret = -ENOMEM;
        goto out;
    }
    qcow2_put_be64(sn->extra + 8, s->size);
    ret = write_table(s, snaps, s->nb_snapshots + 1);
    if (ret == 0) {
        snaps = NULL;   /* the state owns it now */
    } else {
        free(sn->id);
        free(sn->name);
        free(sn->extra);
    }
out:
    free(snaps);
    return snap_leave(bs, ret, "create", name, errp);
}

int qcow2_snapshot_apply(struct bdrv_node *bs, const char *name, struct error **errp)
{
    struct qcow2_state *s = bs->opaque;
    int ret = snap_enter(bs, "apply", name, errp);
    if (ret < 0) {
        return ret;
    }
    uint64_t *sl1 = NULL, *old = NULL;
    int idx = find_snapshot(s, name, true);
    if (idx < 0) {
        ret = -ENOENT;
        goto out;
    }
    const struct qcow2_snapshot *sn = &s->snaps[idx];
    uint64_t l2_coverage = (uint64_t)s->cluster_size << s->l2_bits;
    if (DIV_ROUND_UP(sn->disk_size, l2_coverage) > sn->l1_size || sn->disk_size > (1ull << 56)) {
        qcow2_signal_corruption(s, "snapshot '%s': L1 table too small for its disk size",
                                sn->name);
        ret = -EIO;
        goto out;
    }
    ret = qcow2_load_table(s, sn->l1_offset, sn->l1_size, &sl1);
    if (ret < 0) {
        goto out;
    }
    /* 1. The snapshot's clusters get the active image's reference. */
    ret = walk_l1(s, sl1, sn->l1_size, 1);
    if (ret < 0) {
        goto out;
    }
    /* 2. Its L1 table becomes the active one (a larger table elsewhere). */
    uint32_t old_size = s->l1_size;
    uint64_t old_off = s->l1_offset;
    old = s->l1;
    uint32_t new_size = MAX(sn->l1_size, s->l1_size);
    uint64_t *nl1 = calloc(MAX(new_size, 1), 8);
    if (!nl1) {
        old = NULL;
        ret = -ENOMEM;
        goto out;
    }
    memcpy(nl1, sl1, (size_t)sn->l1_size * 8);
    if (new_size > s->l1_size) {
        int64_t off = qcow2_alloc_clusters(s, DIV_ROUND_UP((uint64_t)new_size * 8,
                                                           s->cluster_size));
        ret = off < 0 ? (int)off : write_l1(s, (uint64_t)off, nl1, new_size, new_size);
        if (ret == 0) {
            ret = bdrv_flush(s->file);
        }
        if (ret == 0) {
            uint8_t hdr[12];
            qcow2_put_be32(hdr, new_size);
            qcow2_put_be64(hdr + 4, (uint64_t)off);
            ret = qcow2_write_header_field(s, QH_L1_SIZE, hdr, sizeof(hdr));
        }
        if (ret < 0) {
            free(nl1);
            old = NULL;
            goto out;
        }
        s->l1_offset = (uint64_t)off;
        s->l1_size = new_size;
        if (old_size) {
            qcow2_free_clusters(s, old_off, (uint64_t)old_size * 8);   /* else a leak */
        }
    } else {
        ret = write_l1(s, s->l1_offset, nl1, new_size, new_size);
        if (ret < 0) {
            free(nl1);
            old = NULL;
            goto out;
        }
    }
    s->l1 = nl1;
    l2_cache_clear(s);
    /* 3. What the old active table led to loses that reference. */
    ret = walk_l1(s, old, old_size, -1);
    if (ret == 0 && sn->disk_size != s->size) {
        uint8_t b[8];
        qcow2_put_be64(b, sn->disk_size);
        ret = qcow2_write_header_field(s, QH_SIZE, b, 8);
        if (ret == 0) {
            s->size = sn->disk_size;
            bs->total_size = s->size;
        }
    }
    if (ret == 0) {
        ret = fix_copied(s);
    }
out:
    free(sl1);
    free(old);
    if (ret == -ENOENT) {
        pthread_mutex_unlock(&bs->lock);
        pthread_rwlock_unlock(&s->io_lock);
        error_setg(errp, "Could not apply snapshot '%s': Failed to load snapshot: %s", name,
                   strerror(ENOENT));
        return ret;
    }
    return snap_leave(bs, ret, "apply", name, errp);
}

int qcow2_snapshot_delete(struct bdrv_node *bs, const char *name, struct error **errp)
{
    struct qcow2_state *s = bs->opaque;
    int ret = snap_enter(bs, "delete", name, errp);
    if (ret < 0) {
        return ret;
    }
    uint64_t *sl1 = NULL;
    struct qcow2_snapshot gone = { 0 };
    int idx = find_snapshot(s, name, false);
    if (idx < 0) {
        pthread_mutex_unlock(&bs->lock);
        pthread_rwlock_unlock(&s->io_lock);
        error_setg(errp, "Could not delete snapshot '%s': snapshot not found", name);
        return -ENOENT;
    }
    ret = qcow2_load_table(s, s->snaps[idx].l1_offset, s->snaps[idx].l1_size,
                           &sl1);
    if (ret < 0) {
        goto out;
    }
    /* 1. The table without it (a crash after this only leaks). */
    uint32_t n = s->nb_snapshots - 1;
    struct qcow2_snapshot *snaps = calloc(MAX(n, 1), sizeof(*snaps));
    if (!snaps) {
        ret = -ENOMEM;
        goto out;
    }
    gone = s->snaps[idx];
    memcpy(snaps, s->snaps, (size_t)idx * sizeof(*snaps));
    memcpy(snaps + idx, s->snaps + idx + 1, (size_t)(n - (uint32_t)idx) * sizeof(*snaps));
    ret = write_table(s, snaps, n);
    if (ret < 0) {
        free(snaps);
        gone = (struct qcow2_snapshot){ 0 };
        goto out;
    }
    /* 2. Its clusters lose its reference; its L1 table goes. */
    ret = walk_l1(s, sl1, gone.l1_size, -1);
    if (ret == 0 && gone.l1_size) {
        ret = qcow2_free_clusters(s, gone.l1_offset, (uint64_t)gone.l1_size * 8);
    }
    l2_cache_clear(s);
    /* 3. Clusters only the active image uses now are COPIED again. */
    if (ret == 0) {
        ret = fix_copied(s);
    }
out:
    free(sl1);
    free(gone.id);
    free(gone.name);
    free(gone.extra);
    return snap_leave(bs, ret, "delete", name, errp);
}
