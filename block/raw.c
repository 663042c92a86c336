/*
 * block/raw.c — the `raw` format driver: the guest sees the file child's
 * bytes, optionally through an offset=/size= window. A raw format guessed
 * by probing refuses writes that would make sector 0 look like another
 * format (QEMU's rule), so a guest cannot turn its disk into a qcow2
 * pointing at host files.
 */
#include "block/block-int.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

struct raw_state {
    uint64_t offset;        /* window start in the file child */
    uint64_t size;          /* window length */
    bool has_window;        /* offset= or size= given: no resize */
};

static int raw_probe(const uint8_t *buf, size_t len, const char *filename)
{
    return 1;   /* anything can be raw; every real format scores higher */
}

static int raw_open(struct bdrv_node *bs, struct error **errp)
{
    struct raw_state *s = bs->opaque;
    int ret = bdrv_open_child(bs, BDRV_CHILD_FILE, bs->opts.file, NULL, errp);
    if (ret < 0) {
        return ret;
    }
    int64_t flen = bdrv_getlength(bs->file);
    if (flen < 0) {
        error_setg_errno(errp, (int)-flen, "Could not get the size of '%s'", bs->filename);
        return (int)flen;
    }
    s->offset = bs->opts.offset;
    s->has_window = bs->opts.offset || bs->opts.has_size;
    if (s->offset > (uint64_t)flen) {
        error_setg(errp, "The sum of offset (%" PRIu64 ") and size (0) has to be smaller "
                   "or equal to the  actual size of the containing file (%" PRId64 ")",
                   s->offset, flen);
        return -EINVAL;
    }
    s->size = bs->opts.has_size ? bs->opts.size : (uint64_t)flen - s->offset;
    if (s->size > (uint64_t)flen - s->offset) {
        error_setg(errp, "The sum of offset (%" PRIu64 ") and size (%" PRIu64 ") has to be "
                   "smaller or equal to the  actual size of the containing file (%" PRId64 ")",
                   s->offset, s->size, flen);
        return -EINVAL;
    }
    bs->total_size = s->size;
    bs->supports_fua = true;    /* the file child honours it */
    return 0;
}

static int64_t raw_getlength(struct bdrv_node *bs)
{
    struct raw_state *s = bs->opaque;
    if (s->has_window) {
        return (int64_t)s->size;
    }
    /* Follow the file, which may have been resized underneath. */
    return bdrv_getlength(bs->file);
}

static int raw_preadv(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                      const struct iovec *iov, int iovcnt, unsigned flags)
{
    struct raw_state *s = bs->opaque;
    return bdrv_preadv(bs->file, s->offset + offset, iov, iovcnt);
}

static int raw_preadv_nowait(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                             const struct iovec *iov, int iovcnt)
{
    struct raw_state *s = bs->opaque;
    return bdrv_preadv_nowait(bs->file, s->offset + offset, iov, iovcnt);
}

static int raw_aio_submit(struct bdrv_node *bs, struct bdrv_aio *aio)
{
    struct raw_state *s = bs->opaque;
    if (aio->write && bs->probed && aio->offset < BDRV_SECTOR_SIZE) {
        return -ENOTSUP;    /* the sector 0 guard runs on the sync path */
    }
    uint64_t offset = aio->offset;
    aio->offset += s->offset;
    int ret = bdrv_aio_submit(bs->file, aio);
    if (ret < 0) {
        aio->offset = offset;
    }
    return ret;
}

/* Would the write make sector 0 probe as another format? Caller holds
 * bs->lock so the check and the write see the same sector. */
static int check_sector0(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                         const struct iovec *iov, int iovcnt)
{
    uint8_t sec[BDRV_SECTOR_SIZE];
    uint64_t n = MIN((uint64_t)BDRV_SECTOR_SIZE, bs->total_size);
    memset(sec, 0, sizeof(sec));
    if (offset > 0 || bytes < n) {
        int ret = raw_preadv(bs, 0, n, &(struct iovec){ sec, n }, 1, 0);
        if (ret < 0) {
            return ret;
        }
    }
    iov_to_buf(iov, iovcnt, 0, sec + offset, MIN(bytes, n - offset));
    const struct bdrv_ops *d = bdrv_probe_buf(sec, n, NULL);
    if (d) {
        log_warn("refusing a write to sector 0 of probed raw image '%s': it would "
                 "make the image look like %s", bs->filename, d->name);
        return -EPERM;
    }
    return 0;
}

static int raw_pwritev(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                       const struct iovec *iov, int iovcnt, unsigned flags)
{
    struct raw_state *s = bs->opaque;
    if (bs->probed && offset < BDRV_SECTOR_SIZE) {
        pthread_mutex_lock(&bs->lock);
        int ret = check_sector0(bs, offset, bytes, iov, iovcnt);
        if (ret == 0) {
            ret = bdrv_pwritev(bs->file, s->offset + offset, iov, iovcnt, flags);
        }
        pthread_mutex_unlock(&bs->lock);
        return ret;
    }
    return bdrv_pwritev(bs->file, s->offset + offset, iov, iovcnt, flags);
}

static int raw_pwrite_zeroes(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                             unsigned flags)
{
    struct raw_state *s = bs->opaque;
    return bdrv_pwrite_zeroes(bs->file, s->offset + offset, bytes, flags);
}

static int raw_pdiscard(struct bdrv_node *bs, uint64_t offset, uint64_t bytes)
{
    struct raw_state *s = bs->opaque;
    return bdrv_pdiscard(bs->file, s->offset + offset, bytes);
}

static int raw_truncate(struct bdrv_node *bs, uint64_t size, struct error **errp)
{
    struct raw_state *s = bs->opaque;
    if (s->has_window) {
        error_setg(errp, "Cannot resize a raw image with an offset or size window");
        return -ENOTSUP;
    }
    int ret = bdrv_truncate(bs->file, size, errp);
    if (ret == 0) {
        bs->total_size = size;
        s->size = size;
    }
    return ret;
}

static int raw_block_status(struct bdrv_node *bs, uint64_t offset, uint64_t bytes,
                            uint64_t *pnum, uint64_t *map, struct bdrv_node **file)
{
    struct raw_state *s = bs->opaque;
    *pnum = bytes;
    *map = s->offset + offset;
    *file = bs->file;
    return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
}

static int raw_create(const char *filename, const struct bdrv_create_opts *opts,
                      struct error **errp)
{
    if (opts->backing_file) {
        error_setg(errp, "Format 'raw' does not support backing files");
        return -ENOTSUP;
    }
    return bdrv_file_ops.create(filename, opts, errp);
}

const struct bdrv_ops bdrv_raw_ops = {
    .name = "raw",
    .state_size = sizeof(struct raw_state),
    .thread_safe = true,
    .probe = raw_probe,
    .open = raw_open,
    .getlength = raw_getlength,
    .preadv = raw_preadv,
    .preadv_nowait = raw_preadv_nowait,
    .aio_submit = raw_aio_submit,
    .pwritev = raw_pwritev,
    .pwrite_zeroes = raw_pwrite_zeroes,
    .pdiscard = raw_pdiscard,
    .truncate = raw_truncate,
    .block_status = raw_block_status,
    .create = raw_create,
};
