/*
 * block/nbd.c — the nbd protocol driver: a node backed by an NBD export,
 * reached through libnbd from an nbd://, nbds://, nbd+unix:// or
 * nbds+unix:// URI. A read-only export makes the node read-only when
 * auto-read-only is on and is refused otherwise; block status passes
 * base:allocation through; a dropped connection fails requests with EIO.
 */
#include "block/block-int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <libnbd.h>
#include <stdlib.h>
#include <string.h>

struct nbd_client_state {
    struct nbd_handle *h;
    bool can_flush, can_fua, can_trim, can_zero, can_fast_zero;
    bool has_alloc;             /* base:allocation was negotiated */
};

/* libnbd's errno for the last failure on this thread, as -errno; a broken
 * connection becomes -EIO. */
static int nbd_client_err(void)
{
    int e = nbd_get_errno();
    if (e == 0 || e == ENOTCONN || e == ESHUTDOWN || e == EPIPE ||
        e == ECONNRESET) {
        return -EIO;
    }
    return -e;
}

static bool nbd_client_is_uri(const char *s)
{
    return s && (!strncmp(s, "nbd://", 6) || !strncmp(s, "nbds://", 7) ||
                 !strncmp(s, "nbd+unix://", 11) || !strncmp(s, "nbds+unix://", 12));
}

/* A formatted string in new memory, or NULL. */
static char *__attribute__((format(printf, 1, 2))) nbd_client_printf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

/* One %XX escape of a URI component, or -1. */
static int nbd_client_hex(const char *p)
{
    int v = 0;
    for (int i = 0; i < 2; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= c - '0';
        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            v |= (c | 0x20) - 'a' + 10;
        } else {
            return -1;
        }
    }
    return v;
}

/* The first n bytes of s with %XX escapes decoded (malformed escapes kept). */
static char *nbd_client_unescape(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    if (!out) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        int v;
        if (s[i] == '%' && i + 2 < n &&
            (v = nbd_client_hex(s + i + 1)) > 0) {
            *o++ = (char)v;
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = 0;
    return out;
}

/*
 * The node's name as QEMU prints it for the same export:
 * "nbd+unix:///EXPORT?socket=PATH", "nbd+unix://?socket=PATH" when the
 * export name is empty, "nbd://HOST:PORT/EXPORT" or "nbd://HOST:PORT"
 * (the port always written, 10809 when the URI has none). NULL for forms
 * QEMU has no such name for (TLS schemes, IPv6 hosts, odd URIs): the node
 * then keeps the URI as given.
 */
static char *nbd_client_canon_name(const char *uri)
{
    bool is_unix = !strncmp(uri, "nbd+unix://", 11);
    if (!is_unix && strncmp(uri, "nbd://", 6)) {
        return NULL;
    }
    const char *auth = uri + (is_unix ? 11 : 6);
    size_t alen = strcspn(auth, "/?#");
    const char *path = auth + alen;
    size_t plen = *path == '/' ? strcspn(path, "?#") : 0;
    const char *query = path + plen;
    if (*query == '#' || (*query == '?' && strchr(query, '#'))) {
        return NULL;
    }
    char *export = plen > 1 ? nbd_client_unescape(path + 1, plen - 1) : strdup("");
    char *name = NULL;
    if (!export) {
        return NULL;
    }
    if (is_unix) {
        const char *sock = NULL;
        for (const char *q = *query == '?' ? query + 1 : ""; *q;) {
            size_t n = strcspn(q, "&");
            if (!strncmp(q, "socket=", 7)) {
                sock = q + 7;
                char *path_s = nbd_client_unescape(sock, n - 7);
                if (path_s && alen == 0) {
                    if (*export) {
                        name = nbd_client_printf("nbd+unix:///%s?socket=%s",
                                                       export, path_s);
                    } else {
                        name = nbd_client_printf("nbd+unix://?socket=%s", path_s);
                    }
                }
                free(path_s);
                break;
            }
            q += n + (q[n] == '&');
        }
    } else if (*query == 0 && alen > 0 && auth[0] != '[') {
        const char *colon = memchr(auth, ':', alen);
        size_t hlen = colon ? (size_t)(colon - auth) : alen;
        const char *port = colon ? colon + 1 : "10809";
        int portlen = colon ? (int)(alen - hlen - 1) : 5;
        if (hlen > 0 && portlen > 0) {
            if (*export) {
                name = nbd_client_printf("nbd://%.*s:%.*s/%s", (int)hlen, auth,
                                               portlen, port, export);
            } else {
                name = nbd_client_printf("nbd://%.*s:%.*s", (int)hlen, auth,
                                               portlen, port);
            }
        }
    }
    free(export);
    return name;
}

static int nbd_client_open(struct bdrv_node *bs, struct error **errp)
{
    struct nbd_client_state *s = bs->opaque;
    if (!nbd_client_is_uri(bs->filename)) {
        error_setg(errp, "'%s' is not an NBD URI (nbd://host[:port]/export or "
                   "nbd+unix:///export?socket=PATH)", bs->filename ? bs->filename : "");
        return -EINVAL;
    }
    s->h = nbd_create();
    if (!s->h) {
        error_setg(errp, "%s: %s", bs->filename, nbd_get_error());
        return -ENOMEM;
    }
    int ret;
    if (nbd_add_meta_context(s->h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
        nbd_connect_uri(s->h, bs->filename) < 0) {
        ret = nbd_client_err();
        error_setg(errp, "Could not open '%s': %s", bs->filename, nbd_get_error());
        bdrv_error_errnum(errp, -ret);
        goto out_close;
    }
    int64_t size = nbd_get_size(s->h);
    if (size < 0) {
        ret = nbd_client_err();
        error_setg(errp, "'%s': %s", bs->filename, nbd_get_error());
        goto out_close;
    }
    if (nbd_is_read_only(s->h) == 1 && !bs->read_only) {
        if (!bs->auto_read_only) {
            error_setg(errp, "NBD export is read-only");
            bdrv_error_errnum(errp, EACCES);
            ret = -EACCES;
            goto out_close;
        }
        bs->read_only = true;
        bs->auto_degraded = true;
    }
    s->can_flush = nbd_can_flush(s->h) == 1;
    s->can_fua = nbd_can_fua(s->h) == 1;
    s->can_trim = nbd_can_trim(s->h) == 1;
    s->can_zero = nbd_can_zero(s->h) == 1;
    s->can_fast_zero = nbd_can_fast_zero(s->h) == 1;
    s->has_alloc = nbd_can_meta_context(s->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
    bs->total_size = (uint64_t)size;
    char *canon = nbd_client_canon_name(bs->filename);
    if (canon) {
        free(bs->filename);
        bs->filename = canon;
    }
    bs->supports_fua = s->can_fua;
    int64_t minb = nbd_get_block_size(s->h, LIBNBD_SIZE_MINIMUM);
    if (minb > 1 && minb <= 65536 && !(minb & (minb - 1))) {
        bs->request_alignment = (uint32_t)minb;
    }
    return 0;

out_close:
    nbd_close(s->h);
    s->h = NULL;
    return ret;
}

static void nbd_client_close(struct bdrv_node *bs)
{
    struct nbd_client_state *s = bs->opaque;
    if (s->h) {
        nbd_shutdown(s->h, 0);
        nbd_close(s->h);
        s->h = NULL;
    }
}

/* Requests larger than the server's maximum are split. */
static uint64_t nbd_client_chunk(struct nbd_client_state *s)
{
    int64_t maxb = nbd_get_block_size(s->h, LIBNBD_SIZE_MAXIMUM);
    return maxb > 0 ? MIN((uint64_t)maxb, 32u << 20) : 32u << 20;
}

static int nbd_client_preadv(struct bdrv_node *bs, uint64_t offset,
                             uint64_t bytes, const struct iovec *iov,
                             int iovcnt, unsigned flags)
{
    struct nbd_client_state *s = bs->opaque;
    uint64_t chunk = nbd_client_chunk(s);
    for (int i = 0; i < iovcnt; i++) {
        uint64_t done = 0;
        while (done < iov[i].iov_len) {
            uint64_t n = MIN(iov[i].iov_len - done, chunk);
            if (nbd_pread(s->h, (char *)iov[i].iov_base + done, n, offset, 0) < 0) {
                return nbd_client_err();
            }
            done += n;
            offset += n;
        }
    }
    return 0;
}

static int nbd_client_pwritev(struct bdrv_node *bs, uint64_t offset,
                              uint64_t bytes, const struct iovec *iov,
                              int iovcnt, unsigned flags)
{
    struct nbd_client_state *s = bs->opaque;
    uint64_t chunk = nbd_client_chunk(s);
    uint32_t fl = (flags & BDRV_REQ_FUA) && s->can_fua ? LIBNBD_CMD_FLAG_FUA : 0;
    for (int i = 0; i < iovcnt; i++) {
        uint64_t done = 0;
        while (done < iov[i].iov_len) {
            uint64_t n = MIN(iov[i].iov_len - done, chunk);
            if (nbd_pwrite(s->h, (const char *)iov[i].iov_base + done, n, offset,
                           fl) < 0) {
                return nbd_client_err();
            }
            done += n;
            offset += n;
        }
    }
    return 0;
}

static int nbd_client_pwrite_zeroes(struct bdrv_node *bs, uint64_t offset,
                                    uint64_t bytes, unsigned flags)
{
    struct nbd_client_state *s = bs->opaque;
    if (!s->can_zero || ((flags & BDRV_REQ_NO_FALLBACK) && !s->can_fast_zero)) {
        return -ENOTSUP;
    }
    uint32_t fl = 0;
    if (!(flags & BDRV_REQ_MAY_UNMAP)) {
        fl |= LIBNBD_CMD_FLAG_NO_HOLE;
    }
    if (flags & BDRV_REQ_NO_FALLBACK) {
        fl |= LIBNBD_CMD_FLAG_FAST_ZERO;
    }
    if ((flags & BDRV_REQ_FUA) && s->can_fua) {
        fl |= LIBNBD_CMD_FLAG_FUA;
    }
    while (bytes > 0) {
        uint64_t n = MIN(bytes, (uint64_t)1 << 30);
        if (nbd_zero(s->h, n, offset, fl) < 0) {
            return nbd_client_err();
        }
        offset += n;
        bytes -= n;
    }
    return 0;
}

static int nbd_client_pdiscard(struct bdrv_node *bs, uint64_t offset,
                               uint64_t bytes)
{
    struct nbd_client_state *s = bs->opaque;
    if (!s->can_trim) {
        return -ENOTSUP;
    }
    while (bytes > 0) {
        uint64_t n = MIN(bytes, (uint64_t)1 << 30);
        if (nbd_trim(s->h, n, offset, 0) < 0) {
            return nbd_client_err();
        }
        offset += n;
        bytes -= n;
    }
    return 0;
}

static int nbd_client_flush(struct bdrv_node *bs)
{
    struct nbd_client_state *s = bs->opaque;
    if (!s->can_flush) {
        return 0;
    }
    return nbd_flush(s->h, 0) < 0 ? nbd_client_err() : 0;
}

struct nbd_client_extent {
    uint64_t len;
    uint32_t flags;
    bool got;
};

static int nbd_client_extent_cb(void *opaque, const char *meta, uint64_t offset,
                                uint32_t *entries, size_t nr, int *error)
{
    struct nbd_client_extent *e = opaque;
    if (strcmp(meta, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0 && nr >= 2 && !e->got) {
        e->len = entries[0];
        e->flags = entries[1];
        e->got = true;
    }
    return 0;
}

static int nbd_client_block_status(struct bdrv_node *bs, uint64_t offset,
                                   uint64_t bytes, uint64_t *pnum,
                                   uint64_t *map, struct bdrv_node **file)
{
    struct nbd_client_state *s = bs->opaque;
    *map = offset;
    *file = bs;
    *pnum = bytes;
    if (!s->has_alloc) {
        return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
    }
    struct nbd_client_extent e = { 0 };
    uint64_t ask = MIN(bytes, (uint64_t)UINT32_MAX & ~(uint64_t)511);
    if (nbd_block_status(s->h, ask, offset,
                         (nbd_extent_callback){ .callback = nbd_client_extent_cb,
                                                .user_data = &e },
                         LIBNBD_CMD_FLAG_REQ_ONE) < 0) {
        return nbd_client_err();
    }
    if (!e.got || e.len == 0) {
        return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
    }
    *pnum = MIN(e.len, bytes);
    int ret = BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
    if (!(e.flags & LIBNBD_STATE_HOLE)) {
        ret |= BDRV_BLOCK_DATA;
    }
    if (e.flags & LIBNBD_STATE_ZERO) {
        ret |= BDRV_BLOCK_ZERO;
    }
    return ret;
}

const struct bdrv_ops bdrv_nbd_ops = {
    .name = "nbd",
    .state_size = sizeof(struct nbd_client_state),
    .is_protocol = true,
    /* one libnbd handle: libnbd serialises calls on it itself */
    .thread_safe = true,
    .open = nbd_client_open,
    .close = nbd_client_close,
    .preadv = nbd_client_preadv,
    .pwritev = nbd_client_pwritev,
    .pwrite_zeroes = nbd_client_pwrite_zeroes,
    .pdiscard = nbd_client_pdiscard,
    .flush = nbd_client_flush,
    .block_status = nbd_client_block_status,
};
