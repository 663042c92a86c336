/*
 * block/qcow2-amend.c — in-place qcow2 header changes: the backing file
 * name and format (qemu-img rebase), compat 0.10 <-> 1.1 and lazy
 * refcounts (qemu-img amend), and the facts `info` shows. Cluster 0 is
 * rebuilt whole: header, extensions (unknown ones kept), backing name.
 */
#include "block/qcow2.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The feature-name table qemu-img writes for v3 images (type, bit, name). */
static const struct { uint8_t type, bit; const char *name; } amend_feature_names[] = {
    { 0, 0, "dirty bit" },
    { 0, 1, "corrupt bit" },
    { 0, 2, "external data file" },
    { 0, 3, "compression type" },
    { 0, 4, "extended L2 entries" },
    { 1, 0, "lazy refcounts" },
    { 2, 0, "bitmaps" },
    { 2, 1, "raw external data" },
};

/* What the new cluster 0 says. */
struct header_plan {
    uint32_t version;
    uint64_t compat;
    const char *backing_file;   /* NULL none */
    const char *backing_fmt;    /* NULL none */
};

static size_t put_ext(uint8_t *buf, size_t off, size_t cap, uint32_t type,
                      const void *data, uint32_t len)
{
    size_t need = 8 + ROUND_UP((size_t)len, 8);
    if (off + need > cap) {
        return 0;
    }
    qcow2_put_be32(buf + off, type);
    qcow2_put_be32(buf + off + 4, len);
    memcpy(buf + off + 8, data, len);
    return need;
}

/*
 * Rebuild cluster 0 from the state and `plan`, write it, and update the
 * state to match. Caller holds io_lock exclusive and bs->lock.
 */
static int rewrite_header(struct qcow2_state *s, const struct header_plan *plan,
                          struct error **errp)
{
    uint32_t cs = s->cluster_size;
    uint8_t *buf = calloc(1, cs);
    uint8_t *old = malloc(QCOW2_HEADER_LEN_WRITTEN);
    int ret = -ENOMEM;
    if (!buf || !old) {
        error_setg(errp, "Out of memory");
        goto out_free;
    }
    /* The fields we do not change come from the file as it is. */
    memset(old, 0, QCOW2_HEADER_LEN_WRITTEN);
    ret = bdrv_pread(s->file, 0, old, MIN(s->header_length, QCOW2_HEADER_LEN_WRITTEN));
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read the header of '%s'", s->bs->filename);
        goto out_free;
    }
    uint32_t hlen;
    if (plan->version == 2) {
        hlen = QCOW2_V2_HEADER_LEN;
        memcpy(buf, old, QCOW2_V2_HEADER_LEN);
    } else if (s->version == 3) {
        hlen = s->header_length;
        memcpy(buf, old, MIN(hlen, QCOW2_HEADER_LEN_WRITTEN));
        if (hlen > QCOW2_HEADER_LEN_WRITTEN) {
            ret = bdrv_pread(s->file, QCOW2_HEADER_LEN_WRITTEN, buf + QCOW2_HEADER_LEN_WRITTEN,
                             hlen - QCOW2_HEADER_LEN_WRITTEN);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Could not read the header of '%s'",
                                 s->bs->filename);
                goto out_free;
            }
        }
    } else {
        /* Upgrade: the v3 fields start out clean. */
        hlen = QCOW2_HEADER_LEN_WRITTEN;
        memcpy(buf, old, QCOW2_V2_HEADER_LEN);
        qcow2_put_be32(buf + QH_REFCOUNT_ORDER, 4);
        qcow2_put_be32(buf + QH_HEADER_LENGTH, hlen);
    }
    qcow2_put_be32(buf + QH_VERSION, plan->version);
    if (plan->version == 3) {
        qcow2_put_be64(buf + QH_COMPAT, plan->compat);
    }
    qcow2_put_be64(buf + QH_BACKING_OFFSET, 0);
    qcow2_put_be32(buf + QH_BACKING_SIZE, 0);

    size_t blen = plan->backing_file ? strlen(plan->backing_file) : 0;
    if (blen > QCOW2_MAX_BACKING_NAME) {
        error_setg(errp, "Backing file name too long");
        ret = -EINVAL;
        goto out_free;
    }
    size_t cap = cs - 8 - blen, off = hlen, n;
    bool have_features = false;
    ret = -ENOSPC;
    if (plan->backing_file && plan->backing_fmt) {
        n = put_ext(buf, off, cap, QCOW2_EXT_BACKING_FMT, plan->backing_fmt,
                    (uint32_t)strlen(plan->backing_fmt));
        if (!n) {
            goto out_nospace;
        }
        off += n;
    }
    for (unsigned i = 0; i < s->nb_exts; i++) {
        const struct qcow2_ext *e = &s->exts[i];
        if (e->type == QCOW2_EXT_BACKING_FMT ||
            (e->type == QCOW2_EXT_FEATURE_NAMES && plan->version == 2)) {
            continue;
        }
        have_features |= e->type == QCOW2_EXT_FEATURE_NAMES;
        n = put_ext(buf, off, cap, e->type, e->data, e->len);
        if (!n) {
            goto out_nospace;
        }
        off += n;
    }
    if (plan->version == 3 && !have_features) {
        uint8_t ft[ARRAY_SIZE(amend_feature_names) * 48];
        memset(ft, 0, sizeof(ft));
        for (size_t i = 0; i < ARRAY_SIZE(amend_feature_names); i++) {
            ft[i * 48] = amend_feature_names[i].type;
            ft[i * 48 + 1] = amend_feature_names[i].bit;
            strncpy((char *)ft + i * 48 + 2, amend_feature_names[i].name, 46);
        }
        /* Optional: left out when a small cluster has no room for it. */
        off += put_ext(buf, off, cap, QCOW2_EXT_FEATURE_NAMES, ft, sizeof(ft));
    }
    off += 8;   /* end marker, already zero */
    if (blen) {
        qcow2_put_be64(buf + QH_BACKING_OFFSET, off);
        qcow2_put_be32(buf + QH_BACKING_SIZE, (uint32_t)blen);
        memcpy(buf + off, plan->backing_file, blen);
    }
    ret = bdrv_pwrite(s->file, 0, buf, cs, 0);
    if (ret == 0) {
        ret = bdrv_flush(s->file);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write the header of '%s'", s->bs->filename);
        goto out_free;
    }

    /* The state follows the file. */
    char *nb = plan->backing_file ? strdup(plan->backing_file) : NULL;
    char *nf = plan->backing_file && plan->backing_fmt ? strdup(plan->backing_fmt) : NULL;
    char *full = NULL;
    if (nb) {
        if (nb[0] == '/' || !strchr(s->bs->filename, '/')) {
            full = strdup(nb);
        } else {
            char *dup = strdup(s->bs->filename);
            if (dup && asprintf(&full, "%s/%s", dirname(dup), nb) < 0) {
                full = NULL;
            }
            free(dup);
        }
    }
    free(s->backing_file);
    free(s->backing_fmt);
    free(s->full_backing_file);
    s->backing_file = nb;
    s->backing_fmt = nf;
    s->full_backing_file = full;
    unsigned keep = 0;
    for (unsigned i = 0; i < s->nb_exts; i++) {
        struct qcow2_ext *e = &s->exts[i];
        if (e->type == QCOW2_EXT_BACKING_FMT ||
            (e->type == QCOW2_EXT_FEATURE_NAMES && plan->version == 2)) {
            free(e->data);
        } else {
            s->exts[keep++] = *e;
        }
    }
    s->nb_exts = keep;
    if (plan->version == 3 && s->version == 2) {
        s->incompat = s->autoclear = 0;
        s->refcount_order = 4;
    }
    s->version = plan->version;
    s->header_length = hlen;
    s->compat = plan->version == 3 ? plan->compat : 0;
    ret = 0;
    goto out_free;

out_nospace:
    error_setg(errp, "Header extensions and backing file name do not fit in the header "
               "cluster of '%s'", s->bs->filename);
out_free:
    free(old);
    free(buf);
    return ret;
}

static void lock_all(struct bdrv_node *bs)
{
    struct qcow2_state *s = bs->opaque;
    pthread_rwlock_wrlock(&s->io_lock);
    pthread_mutex_lock(&bs->lock);
}

static void unlock_all(struct bdrv_node *bs)
{
    struct qcow2_state *s = bs->opaque;
    pthread_mutex_unlock(&bs->lock);
    pthread_rwlock_unlock(&s->io_lock);
}

static int need_writable(struct qcow2_state *s, struct error **errp)
{
    if (!s->writable) {
        error_setg(errp, "'%s' is not open for writing (read-only or corrupt)",
                   s->bs->filename);
        return -EACCES;
    }
    return 0;
}

int qcow2_change_backing_file(struct bdrv_node *bs, const char *backing_file,
                              const char *backing_fmt, struct error **errp)
{
    struct qcow2_state *s = bs->opaque;
    if (backing_file && !backing_file[0]) {
        backing_file = NULL;
    }
    lock_all(bs);
    int ret = need_writable(s, errp);
    if (ret == 0) {
        struct header_plan plan = {
            .version = s->version, .compat = s->compat,
            .backing_file = backing_file, .backing_fmt = backing_fmt,
        };
        ret = rewrite_header(s, &plan, errp);
    }
    unlock_all(bs);
    return ret;
}

/*
 * Before going to v2: zero clusters have no v2 encoding. Preallocated
 * ones are filled with zeroes and keep their cluster; plain ones become
 * unallocated, which reads as zeroes when there is no backing file.
 */
static int expand_zero_clusters(struct qcow2_state *s, struct error **errp)
{
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l2_off = s->l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (!l2_off) {
            continue;
        }
        int ret = 0;
        uint8_t *tbl = qcow2_cache_get(s, &s->l2_cache, l2_off, &ret);
        if (!tbl) {
            error_setg_errno(errp, -ret, "Could not read an L2 table of '%s'",
                             s->bs->filename);
            return ret;
        }
        for (uint32_t j = 0; j < s->l2_size; j++) {
            uint64_t e = qcow2_be64(tbl + j * 8);
            enum qcow2_ctype t = qcow2_classify(s, e);
            if (t != QCOW2_C_ZERO_PLAIN && t != QCOW2_C_ZERO_ALLOC) {
                continue;
            }
            uint64_t ne = 0;
            if (t == QCOW2_C_ZERO_ALLOC) {
                uint64_t host = e & QCOW2_L2E_OFFSET_MASK;
                ret = bdrv_pwrite(s->file, host, s->zero_cluster, s->cluster_size, 0);
                if (ret < 0) {
                    error_setg_errno(errp, -ret, "Could not write zeroes in '%s'",
                                     s->bs->filename);
                    return ret;
                }
                ne = e & ~QCOW2_OFLAG_ZERO;
            } else if (s->backing_file) {
                error_setg(errp, "Cannot downgrade '%s': zero clusters over a backing file",
                           s->bs->filename);
                return -ENOTSUP;
            }
            uint8_t be[8];
            qcow2_put_be64(be, ne);
            ret = bdrv_pwrite(s->file, l2_off + (uint64_t)j * 8, be, 8, 0);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Could not write an L2 table of '%s'",
                                 s->bs->filename);
                return ret;
            }
            /* Write-through cache: keep the cached copy equal to the file. */
            memcpy(tbl + j * 8, be, 8);
        }
    }
    int ret = bdrv_flush(s->file);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not flush '%s'", s->bs->filename);
    }
    return ret;
}

int qcow2_amend(struct bdrv_node *bs, const struct bdrv_amend_opts *opts,
                struct error **errp)
{
    struct qcow2_state *s = bs->opaque;
    uint32_t version = s->version;
    if (opts->compat) {
        if (!strcmp(opts->compat, "0.10") || !strcmp(opts->compat, "v2")) {
            version = 2;
        } else if (!strcmp(opts->compat, "1.1") || !strcmp(opts->compat, "v3")) {
            version = 3;
        } else {
            error_setg(errp, "Unknown compatibility level %s", opts->compat);
            return -EINVAL;
        }
    }
    uint64_t compat = version == 3 ? (s->version == 3 ? s->compat : 0) : 0;
    if (opts->lazy_refcounts.set) {
        if (opts->lazy_refcounts.value && version < 3) {
            error_setg(errp, "Lazy refcounts only supported with compatibility level 1.1 "
                       "and above (use compat=1.1 or greater)");
            return -EINVAL;
        }
        if (opts->lazy_refcounts.value) {
            compat |= QCOW2_COMPAT_LAZY_REFCOUNTS;
        } else {
            compat &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
        }
    }
    lock_all(bs);
    int ret = need_writable(s, errp);
    if (ret == 0 && s->lazy) {
        /* Deferred refcounts out first: the image may stop being lazy. */
        ret = qcow2_mark_clean(s);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not write the refcounts of '%s'",
                             s->bs->filename);
        }
    }
    if (ret == 0 && version == 2 && s->version == 3) {
        if (s->refcount_order != 4) {
            error_setg(errp, "compat=0.10 requires refcount_bits=16");
            ret = -ENOTSUP;
        } else if (s->nb_snapshots) {
            error_setg(errp, "Cannot downgrade '%s': it has internal snapshots",
                       s->bs->filename);
            ret = -ENOTSUP;
        } else if (s->incompat & ~QCOW2_INCOMPAT_DIRTY) {
            error_setg(errp, "Cannot downgrade '%s': incompatible features in use",
                       s->bs->filename);
            ret = -ENOTSUP;
        } else {
            ret = expand_zero_clusters(s, errp);
        }
    }
    if (ret == 0 && (version != s->version || compat != s->compat)) {
        struct header_plan plan = {
            .version = version, .compat = compat,
            .backing_file = s->backing_file, .backing_fmt = s->backing_fmt,
        };
        /* rewrite_header frees the state's strings: plan keeps copies. */
        char *bf = s->backing_file ? strdup(s->backing_file) : NULL;
        char *bfmt = s->backing_fmt ? strdup(s->backing_fmt) : NULL;
        plan.backing_file = bf;
        plan.backing_fmt = bfmt;
        ret = rewrite_header(s, &plan, errp);
        free(bf);
        free(bfmt);
    }
    s->lazy = s->writable && (s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS);
    unlock_all(bs);
    return ret;
}

void qcow2_get_format_info(struct bdrv_node *bs, struct bdrv_qcow2_info *qi)
{
    struct qcow2_state *s = bs->opaque;
    qi->valid = true;
    qi->compat = s->version == 2 ? "0.10" : "1.1";
    qi->lazy_refcounts = (s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS) != 0;
    qi->refcount_bits = s->refcount_bits;
    qi->corrupt = (s->incompat & QCOW2_INCOMPAT_CORRUPT) != 0;
    qi->extended_l2 = (s->incompat & QCOW2_INCOMPAT_EXTL2) != 0;
    qi->compression_type = s->compression == QCOW2_COMPRESS_ZSTD ? "zstd" : "zlib";
    qi->data_file = s->data ? s->data_file : NULL;
    qi->data_file_raw = s->data_raw;
}
