/*
 * tools/img/convert.c — `diskdm-img convert`: copy one or more images
 * (concatenated) into a new or existing image of any format. Worker
 * threads keep several large requests in flight (reads overlap; writes
 * go in guest order unless -W); block status skips holes and zeroes so a
 * zero-initialised target is only written where there is data.
 */
#include "tools/img/img.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define CONV_CHUNK (1u << 20)       /* bytes one request moves at most: small
                                     * enough to stay in the CPU cache between
                                     * the read and the write */
#define CONV_MAX_WORKERS 16
#define CONV_MAX_DEPTH 64

enum seg_kind { SEG_DATA, SEG_ZERO, SEG_SKIP };

/* One run handed to a worker. */
struct conv_seg {
    struct bdrv_node *src;
    uint64_t src_off, dst_off, len;
    enum seg_kind kind;
    int host_fd;                /* offload: where the data lives, or -1 */
    uint64_t host_off;
    const uint8_t *host_data;   /* the same bytes mapped, or NULL */
    uint64_t seq;               /* place in the write order */
};

/* The last block status answer, reused for the requests it covers (one
 * lseek pair per request on a raw file is measurable). */
struct conv_status {
    bool valid;
    int src_idx;
    uint64_t off, end;          /* source offsets it covers */
    int st, depth;
    uint64_t map;
};

struct conv_state {
    struct bdrv_node **src;
    uint64_t *src_len;
    int nb_src;
    uint64_t total;
    struct bdrv_node *dst;
    bool target_zero;           /* unwritten target ranges read as zeroes */
    bool target_has_backing;    /* copy only what the source's top holds */
    uint64_t sparse;            /* zero granule to skip; 0 = write all */
    /*
     * Copy offload (copy_file_range) from the files holding the source
     * data straight into a raw target's file, without a trip through
     * user space: fds[src][depth] is the protocol file of the layer at
     * that depth (-1: not a plain file), dst_fd the target's file.
     */
    bool offload;
    int (*fds)[CONV_MAX_DEPTH];
    /*
     * The same files mapped read-only (NULL: not mapped): data runs in
     * them are written to the target straight from the mapping, which
     * saves copying every byte into a buffer first. Only for a source
     * that is locked against writers (no -U) and read through the page
     * cache, and only inside the file's size when the copy starts.
     */
    struct conv_map {
        const uint8_t *p;
        uint64_t size;
    } (*maps)[CONV_MAX_DEPTH];
    int dst_fd;
    /* -c: the target's cluster size; data runs are widened to whole
     * clusters and each cluster is written compressed. 0 = off. */
    uint64_t compress_cs;
    /* Without -W, requests are written in the order they were handed out,
     * so a target that allocates as it goes (qcow2) gets its clusters in
     * guest order, as qemu-img's. */
    bool in_order;
    bool salvage;               /* --salvage: unreadable sectors become zeroes */
    struct img_ratelimit *limit;    /* -r, or NULL */

    pthread_mutex_t lock;       /* protects what follows */
    pthread_cond_t turn;        /* write_seq moved on, or an error */
    uint64_t next_seq;          /* given to the next request handed out */
    uint64_t write_seq;         /* the request whose turn it is to write */
    struct conv_status status;
    uint64_t cursor;            /* next virtual offset to hand out */
    int src_idx;
    uint64_t src_base;          /* virtual offset where src[src_idx] starts */
    int err;                    /* first error, -errno */
    uint64_t err_off;
    bool err_write;
    uint64_t done;
    struct img_progress prog;
};

/* Next run to copy, decided by the source's block status. false at the
 * end or after an error. */
static bool next_seg(struct conv_state *s, struct conv_seg *seg)
{
    pthread_mutex_lock(&s->lock);
    bool got = false;
    while (!s->err && s->cursor < s->total) {
        while (s->cursor >= s->src_base + s->src_len[s->src_idx]) {
            s->src_base += s->src_len[s->src_idx];
            s->src_idx++;
        }
        struct bdrv_node *src = s->src[s->src_idx];
        uint64_t soff = s->cursor - s->src_base;
        uint64_t max = MIN((uint64_t)CONV_CHUNK, s->src_len[s->src_idx] - soff);
        uint64_t pnum = 0, map;
        int depth, st;
        struct conv_status *cs = &s->status;
        if (!cs->valid || cs->src_idx != s->src_idx || soff < cs->off || soff >= cs->end) {
            /* Ask about everything left: the answer is the first run. */
            st = bdrv_block_status(src, soff, s->src_len[s->src_idx] - soff, &pnum, &map,
                                   &depth);
            if (st < 0 || pnum == 0) {
                s->err = st < 0 ? st : -EIO;
                s->err_off = s->cursor;
                cs->valid = false;
                break;
            }
            *cs = (struct conv_status){ .valid = true, .src_idx = s->src_idx, .off = soff,
                                        .end = soff + pnum, .st = st, .depth = depth,
                                        .map = map };
        }
        st = cs->st;
        depth = cs->depth;
        map = cs->map + (soff - cs->off);
        pnum = MIN(cs->end - soff, max);
        seg->src = src;
        seg->src_off = soff;
        seg->dst_off = s->cursor;
        seg->len = pnum;
        seg->host_fd = -1;
        seg->host_data = NULL;
        if (depth >= 0 && depth < CONV_MAX_DEPTH &&
            (st & BDRV_BLOCK_OFFSET_VALID) && (st & BDRV_BLOCK_DATA)) {
            const struct conv_map *m = &s->maps[s->src_idx][depth];
            if (s->offload) {
                seg->host_fd = s->fds[s->src_idx][depth];
            }
            seg->host_off = map;
            if (m->p && map <= m->size && pnum <= m->size - map) {
                seg->host_data = m->p + map;
            }
        }
        if (s->target_has_backing && depth != 0) {
            seg->kind = SEG_SKIP;
        } else if (depth < 0 || ((st & BDRV_BLOCK_ZERO) && !(st & BDRV_BLOCK_DATA))) {
            seg->kind = SEG_ZERO;
        } else {
            seg->kind = SEG_DATA;
        }
        if (s->compress_cs && seg->kind == SEG_DATA) {
            /* Whole clusters: the part before the run was skipped (it
             * reads as zeroes), the part after it is taken along. */
            uint64_t cs = s->compress_cs;
            uint64_t a = seg->dst_off & ~(cs - 1);
            uint64_t b = MIN(ROUND_UP(seg->dst_off + pnum, cs), s->src_len[s->src_idx]);
            seg->src_off -= seg->dst_off - a;
            seg->dst_off = a;
            seg->len = b - a;
            pnum = b - s->cursor;
        }
        s->cursor += pnum;
        if (seg->kind == SEG_SKIP || (seg->kind == SEG_ZERO && s->target_zero)) {
            /* Nothing to do: account for it here and look further. */
            s->done += pnum;
            img_progress_update(&s->prog, s->done, s->total);
            continue;
        }
        seg->seq = s->next_seq++;
        got = true;
        break;
    }
    pthread_mutex_unlock(&s->lock);
    return got;
}

/* Wait until request `seq` may write (at once with -W). false when an
 * error elsewhere ends the copy. */
static bool wait_turn(struct conv_state *s, uint64_t seq)
{
    pthread_mutex_lock(&s->lock);
    while (s->in_order && s->write_seq != seq && !s->err) {
        pthread_cond_wait(&s->turn, &s->lock);
    }
    bool ok = !s->err;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

/* Write buf to dst_off, leaving out (or writing as zeroes) the granules
 * of `sparse` bytes that are all zero. */
static int write_sparse(struct conv_state *s, uint64_t dst_off, const uint8_t *buf,
                        uint64_t len)
{
    if (!s->sparse) {
        return bdrv_pwrite(s->dst, dst_off, buf, len, 0);
    }
    uint64_t i = 0;
    while (i < len) {
        uint64_t g = MIN(s->sparse - (dst_off + i) % s->sparse, len - i);
        bool z = all_zero(buf + i, g);
        uint64_t j = i + g;
        while (j < len) {
            uint64_t g2 = MIN(s->sparse, len - j);
            if (all_zero(buf + j, g2) != z) {
                break;
            }
            j += g2;
        }
        int ret = 0;
        if (!z) {
            ret = bdrv_pwrite(s->dst, dst_off + i, buf + i, j - i, 0);
        } else if (!s->target_zero) {
            ret = bdrv_pwrite_zeroes(s->dst, dst_off + i, j - i, 0);
        }
        if (ret < 0) {
            return ret;
        }
        i = j;
    }
    return 0;
}

/* copy_file_range the whole segment; -ENOTSUP when the kernel or the
 * file systems cannot (the caller then copies through a buffer). */
static int offload_copy(struct conv_state *s, const struct conv_seg *seg)
{
    loff_t in = (loff_t)seg->host_off, out = (loff_t)seg->dst_off;
    uint64_t left = seg->len;
    while (left) {
        ssize_t n = copy_file_range(seg->host_fd, &in, s->dst_fd, &out, left, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                errno == EOPNOTSUPP || errno == EBADF) {
                return left == seg->len ? -ENOTSUP : -errno;
            }
            return -errno;
        }
        if (n == 0) {
            return -EIO;    /* the source file ends early */
        }
        left -= (uint64_t)n;
    }
    return 0;
}

/*
 * Is copy_file_range into this file worth it? Only where the file system
 * shares the blocks or copies on the server (XFS, btrfs, bcachefs, NFS,
 * SMB, OCFS2). Elsewhere (ext4, tmpfs) the kernel copies through a pipe
 * of a few pages at a time, slower than two threads doing pread/pwrite.
 */
static bool offload_pays(int fd)
{
    struct statfs sf;
    if (fstatfs(fd, &sf) < 0) {
        return false;
    }
    switch ((unsigned long)sf.f_type) {
    case 0x58465342UL:  /* XFS */
    case 0x9123683eUL:  /* btrfs */
    case 0xca451a4eUL:  /* bcachefs */
    case 0x6969UL:      /* NFS */
    case 0xfe534d42UL:  /* SMB2 */
    case 0xff534d42UL:  /* CIFS */
    case 0x7461636fUL:  /* OCFS2 */
        return true;
    default:
        return false;
    }
}

/* Write a run of whole clusters compressed, each that compresses. */
static int write_compressed(struct conv_state *s, uint64_t dst_off, const uint8_t *buf,
                            uint64_t len)
{
    for (uint64_t k = 0; k < len; k += s->compress_cs) {
        uint64_t n = MIN(s->compress_cs, len - k);
        if (all_zero(buf + k, n)) {
            continue;       /* a new image without backing reads zeroes */
        }
        int ret = bdrv_write_compressed(s->dst, dst_off + k, buf + k, n);
        if (ret == -ENOTSUP) {
            ret = bdrv_pwrite(s->dst, dst_off + k, buf + k, n, 0);
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* --salvage: read the run again sector by sector; what cannot be read
 * is copied as zeroes, with a warning naming the offset (as qemu-img). */
static int salvage_read(struct conv_state *s, const struct conv_seg *seg, uint8_t *buf)
{
    for (uint64_t k = 0; k < seg->len; k += BDRV_SECTOR_SIZE) {
        uint64_t n = MIN((uint64_t)BDRV_SECTOR_SIZE, seg->len - k);
        int r = bdrv_pread(seg->src, seg->src_off + k, buf + k, n);
        if (r < 0) {
            memset(buf + k, 0, n);
            pthread_mutex_lock(&s->lock);
            fprintf(stderr, "diskdm-img: warning: error while reading offset %" PRIu64
                    ": %s\n", seg->dst_off + k, strerror(-r));
            pthread_mutex_unlock(&s->lock);
        }
    }
    return 0;
}

static void *conv_worker(void *opaque)
{
    struct conv_state *s = opaque;
    uint8_t *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, CONV_CHUNK + 2 * s->compress_cs)) {
        pthread_mutex_lock(&s->lock);
        s->err = s->err ? s->err : -ENOMEM;
        pthread_mutex_unlock(&s->lock);
        return NULL;
    }
    struct conv_seg seg;
    while (next_seg(s, &seg)) {
        int ret;
        bool wr = true;
        ret = -ENOTSUP;
        if (s->limit) {
            img_ratelimit_wait(s->limit, seg.len);
        }
        if (seg.kind != SEG_DATA || seg.host_fd >= 0 || seg.host_data) {
            /* Nothing to read first: wait for the turn to write now. */
            if (!wait_turn(s, seg.seq)) {
                goto next;
            }
        }
        if (seg.kind == SEG_DATA && seg.host_fd >= 0) {
            ret = offload_copy(s, &seg);
            if (ret == -ENOTSUP) {
                pthread_mutex_lock(&s->lock);
                s->offload = false;
                pthread_mutex_unlock(&s->lock);
            }
        }
        if (ret != -ENOTSUP) {
            /* done (or failed) by the offload */
        } else if (seg.kind == SEG_ZERO) {
            ret = bdrv_pwrite_zeroes(s->dst, seg.dst_off, seg.len, 0);
        } else if (seg.host_data) {
            ret = write_sparse(s, seg.dst_off, seg.host_data, seg.len);
        } else {
            ret = bdrv_pread(seg.src, seg.src_off, buf, seg.len);
            if (ret < 0 && s->salvage) {
                ret = salvage_read(s, &seg, buf);
            }
            wr = false;
            if (ret == 0 && !wait_turn(s, seg.seq)) {
                goto next;
            }
            if (ret == 0) {
                wr = true;
                ret = s->compress_cs ? write_compressed(s, seg.dst_off, buf, seg.len)
                                     : write_sparse(s, seg.dst_off, buf, seg.len);
            }
        }
    next:
        pthread_mutex_lock(&s->lock);
        if (ret < 0 && !s->err) {
            s->err = ret;
            s->err_off = seg.dst_off;
            s->err_write = wr;
        }
        s->done += seg.len;
        img_progress_update(&s->prog, s->done, s->total);
        if (s->write_seq == seg.seq) {
            s->write_seq++;
        }
        pthread_cond_broadcast(&s->turn);
        pthread_mutex_unlock(&s->lock);
    }
    free(buf);
    return NULL;
}

static int run_copy(struct conv_state *s, unsigned nb_workers)
{
    pthread_t th[CONV_MAX_WORKERS];
    unsigned started = 0;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->turn, NULL);
    for (unsigned i = 0; i < nb_workers; i++) {
        if (pthread_create(&th[i], NULL, conv_worker, s)) {
            break;
        }
        started++;
    }
    if (!started) {
        conv_worker(s);
    }
    for (unsigned i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_cond_destroy(&s->turn);
    pthread_mutex_destroy(&s->lock);
    return s->err;
}

/* Does a qcow2 layer keep its data in an external data file? Block
 * status maps into that file, not into the file child. */
static bool external_data(struct bdrv_node *n)
{
    struct bdrv_qcow2_info qi;
    bdrv_get_qcow2_info(n, &qi);
    return qi.valid && qi.data_file;
}

/* The plain files under each source's layers, read-only (-1 where a
 * layer is not in a plain file, keeps its data elsewhere, or is open
 * already). */
static void open_source_files(struct conv_state *s)
{
    for (int i = 0; i < s->nb_src; i++) {
        int d = 0;
        for (struct bdrv_node *n = s->src[i]; n && d < CONV_MAX_DEPTH;
             n = bdrv_backing_child(n), d++) {
            struct bdrv_node *sf = bdrv_file_child(n);
            if (s->fds[i][d] < 0 && sf && !strcmp(bdrv_driver_name(sf), "file") &&
                !external_data(n)) {
                s->fds[i][d] = open(bdrv_filename(sf), O_RDONLY | O_CLOEXEC);
            }
        }
    }
}

/* Map the source files whole; a file that cannot be mapped is read
 * through the block layer as before. */
static void map_sources(struct conv_state *s)
{
    open_source_files(s);
    for (int i = 0; i < s->nb_src; i++) {
        for (int d = 0; d < CONV_MAX_DEPTH; d++) {
            struct stat st;
            if (s->fds[i][d] < 0 || fstat(s->fds[i][d], &st) < 0 || !S_ISREG(st.st_mode) ||
                st.st_size <= 0) {
                continue;
            }
            void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, s->fds[i][d], 0);
            if (p == MAP_FAILED) {
                continue;
            }
            s->maps[i][d] = (struct conv_map){ p, (uint64_t)st.st_size };
        }
    }
}

/*
 * --bitmaps: persistent dirty bitmaps are not copied here, so a source
 * that has some (qcow2 v3 autoclear bit 0, "bitmaps extension valid") is
 * refused rather than converted without them; one without any converts.
 */
static int check_bitmaps(struct bdrv_node *src, const char *name)
{
    struct bdrv_qcow2_info qi;
    bdrv_get_qcow2_info(src, &qi);
    if (strcmp(bdrv_driver_name(src), "qcow2") || !qi.valid) {
        return img_error("Source lacks bitmap support");
    }
    uint8_t hdr[96];
    struct bdrv_node *f = bdrv_file_child(src);
    if (!strcmp(qi.compat, "1.1") && f && bdrv_pread(f, 0, hdr, sizeof(hdr)) == 0 &&
        (hdr[95] & 1)) {
        return img_error("'%s' has persistent bitmaps: copying them is not supported",
                         name);
    }
    return 0;
}

int img_cmd_convert(int argc, char **argv)
{
    enum { OPT_IMAGE_OPTS = 256, OPT_TARGET_IS_ZERO, OPT_TARGET_IMAGE_OPTS, OPT_SALVAGE,
           OPT_BITMAPS };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "target-image-opts", no_argument, NULL, OPT_TARGET_IMAGE_OPTS },
        { "target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO },
        { "force-share", no_argument, NULL, 'U' },
        { "salvage", no_argument, NULL, OPT_SALVAGE },
        { "bitmaps", no_argument, NULL, OPT_BITMAPS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_fmt = "raw", *prealloc = NULL;
    char *optstr = NULL, *backing = NULL, *backing_fmt = NULL;
    bool compress = false, progress = false, no_create = false, target_is_zero = false,
         quiet = false;
    struct img_open_flags sfl = { .read_only = true };
    /* The target is written with cache=unsafe unless -t says otherwise,
     * as qemu-img convert does. */
    struct img_open_flags tfl = { .read_only = false, .has_cache = true,
                                  .cache = CACHE_UNSAFE };
    /* As many requests in flight as there are CPUs (two at least, four at
     * most): the copy is bound by the kernel copying pages, and more
     * threads than CPUs only contend for the target file. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t sparse = 4096, workers = (uint64_t)MAX(2, MIN(4, ncpu)), rate = 0;
    bool sparse_given = false, out_of_order = false, copy_range = false, salvage = false,
         bitmaps = false;
    int c, ret = IMG_EXIT_FAIL;

    optind = 1;
    opterr = 0;         /* img_bad_option_at says it, as qemu-img does */
    while ((c = getopt_long(argc, argv, ":hf:O:B:F:co:l:S:pt:T:qnm:WUCr:",
                            longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'O':
            out_fmt = optarg;
            break;
        case 'B':
            free(backing);
            backing = strdup(optarg);
            break;
        case 'F':
            free(backing_fmt);
            backing_fmt = strdup(optarg);
            break;
        case 'c':
            compress = true;
            break;
        case 'o':
            if (optstr) {
                char *j = NULL;
                if (asprintf(&j, "%s,%s", optstr, optarg) < 0) {
                    goto out;
                }
                free(optstr);
                optstr = j;
            } else {
                optstr = strdup(optarg);
            }
            break;
        case 'S':
            if (img_parse_size(optarg, &sparse) < 0 || sparse > (1u << 30) ||
                sparse % BDRV_SECTOR_SIZE) {
                ret = img_error("Invalid buffer size for sparse output specified. Valid "
                                "sizes are multiples of 512 up to 1073741824. Select 0 to "
                                "disable sparse detection (fully allocates output).");
                goto out;
            }
            sparse_given = true;
            break;
        case 'p':
            progress = true;
            break;
        case 't':
            if (img_parse_cache(optarg, &tfl.cache) < 0) {
                goto out;
            }
            break;
        case 'T':
            if (img_parse_cache(optarg, &sfl.cache) < 0) {
                goto out;
            }
            sfl.has_cache = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'n':
            no_create = true;
            break;
        case 'm':
            if (parse_uint(optarg, &workers) < 0 || workers < 1 || workers > 16) {
                ret = img_error("Invalid number of coroutines. Allowed number of "
                                "coroutines is between 1 and 16");
                goto out;
            }
            break;
        case 'W':
            out_of_order = true;
            break;
        case 'C':
            /* Copy offloading is used where it helps anyway; -C only
             * brings qemu-img's checks of what cannot go with it. */
            copy_range = true;
            break;
        case OPT_SALVAGE:
            salvage = true;
            break;
        case OPT_BITMAPS:
            bitmaps = true;
            break;
        case 'U':
            sfl.force_share = true;
            break;
        case 'l':
            ret = img_error("Snapshots are not supported by convert");
            goto out;
        case 'r':
            if (img_parse_rate(optarg, &rate) < 0) {
                goto out;
            }
            break;
        case OPT_IMAGE_OPTS:
            sfl.image_opts = true;
            break;
        case OPT_TARGET_IMAGE_OPTS:
            tfl.image_opts = true;
            break;
        case OPT_TARGET_IS_ZERO:
            target_is_zero = true;
            break;
        case 'h':
            ret = img_cmd_help("convert");
            goto out;
        default:
            ret = img_bad_option_at(argv, c);
            goto out;
        }
    }
    int nb_src = argc - optind - 1;
    if (nb_src < 1) {
        img_print_synopsis(stderr, "convert");
        ret = img_usage_error("Must specify image file name");
        goto out;
    }
    const char *out_name = argv[argc - 1];
    if (target_is_zero && !no_create) {
        ret = img_error("--target-is-zero requires use of -n flag");
        goto out;
    }
    if (tfl.image_opts && !no_create) {
        ret = img_error("--target-image-opts requires use of -n flag");
        goto out;
    }
    if (!img_format_known(out_fmt)) {
        ret = img_error("Unknown file format '%s'", out_fmt);
        goto out;
    }
    if (copy_range && compress) {
        ret = img_error("Cannot enable copy offloading when -c is used");
        goto out;
    }
    if (copy_range && sparse_given) {
        ret = img_error("Cannot enable copy offloading when -S is used");
        goto out;
    }
    if (bitmaps && strcmp(out_fmt, "qcow2")) {
        ret = img_error("Format driver '%s' does not support bitmaps", out_fmt);
        goto out;
    }
    if (compress && strcmp(out_fmt, "qcow2")) {
        ret = img_error("Compression not supported for this file format");
        goto out;
    }
    if (optstr && (!strcmp(optstr, "help") || !strcmp(optstr, "?"))) {
        img_print_create_help(out_fmt);
        ret = 0;
        goto out;
    }
    struct bdrv_create_opts co = { 0 };
    /* qemu-img convert names the target before the errors its format
     * driver raises, not before the option parser's own. */
    char *pfx = NULL;
    if (asprintf(&pfx, "%s: error while converting %s: ", out_name, out_fmt) < 0) {
        ret = img_error("Out of memory");
        goto out;
    }
    int perr = optstr ? img_parse_create_opts_in(optstr, out_fmt, &co, &prealloc, &backing,
                                                 &backing_fmt, NULL, pfx) : 0;
    free(pfx);
    if (perr) {
        goto out;
    }
    if (backing && strcmp(out_fmt, "qcow2")) {
        ret = img_error("Backing file not supported for file format '%s'", out_fmt);
        goto out;
    }
    if (backing && no_create) {
        ret = img_error("Specifying backing image makes no sense when not creating "
                        "target image");
        goto out;
    }

    if (compress && (no_create || backing || nb_src > 1)) {
        ret = img_error("Compressed output needs a new image without backing file, "
                        "from one source image");
        goto out;
    }
    struct conv_state s = { .nb_src = nb_src, .sparse = sparse, .dst_fd = -1 };
    s.src = calloc((size_t)nb_src, sizeof(*s.src));
    s.src_len = calloc((size_t)nb_src, sizeof(*s.src_len));
    s.fds = malloc((size_t)nb_src * sizeof(*s.fds));
    if (s.fds) {
        memset(s.fds, 0xff, (size_t)nb_src * sizeof(*s.fds));    /* all -1 */
    }
    s.maps = calloc((size_t)nb_src, sizeof(*s.maps));
    if (!s.src || !s.src_len || !s.fds || !s.maps) {
        img_error("Out of memory");
        goto out_free_src;
    }
    for (int i = 0; i < nb_src; i++) {
        s.src[i] = img_open_ex(argv[optind + i], fmt, &sfl);
        if (!s.src[i]) {
            goto out_free_src;
        }
        int64_t l = bdrv_getlength(s.src[i]);
        if (l < 0) {
            img_error("Could not get size of '%s': %s", argv[optind + i], strerror((int)-l));
            goto out_free_src;
        }
        s.src_len[i] = (uint64_t)l;
        s.total += (uint64_t)l;
        if (bitmaps && check_bitmaps(s.src[i], argv[optind + i]) != 0) {
            goto out_free_src;
        }
    }

    if (!no_create) {
        if (backing && !backing_fmt) {
            struct bdrv_node *b = img_open(backing, NULL, true, true);
            if (!b) {
                goto out_free_src;
            }
            backing_fmt = strdup(bdrv_driver_name(b));
            bdrv_unref(b);
        }
        /* qcow2 sizes are whole sectors: qemu-img rounds up too. */
        co.size = strcmp(out_fmt, "qcow2") ? s.total : ROUND_UP(s.total, BDRV_SECTOR_SIZE);
        co.backing_file = backing;
        co.backing_format = backing_fmt;
        struct error *err = NULL;
        if (bdrv_create(out_fmt, out_name, &co, &err) < 0) {
            img_error("%s: error while converting %s: %s", out_name, out_fmt, err->msg);
            error_free(err);
            goto out_free_src;
        }
    }
    s.dst = img_open_ex(out_name, tfl.image_opts ? NULL : out_fmt, &tfl);
    if (!s.dst) {
        goto out_free_src;
    }
    if (no_create) {
        int64_t l = bdrv_getlength(s.dst);
        if (l >= 0 && (uint64_t)l < s.total) {
            img_error("Output image is too small (%" PRIu64 " < %" PRIu64 ")",
                      (uint64_t)l, s.total);
            goto out_unref_dst;
        }
    }
    /*
     * Copy offload: a new raw target in a plain file, page-cache I/O on
     * both sides, and no -S (copy_file_range copies zeroes inside data
     * runs as they are; holes and zero clusters are still skipped).
     */
    bool src_cached = !sfl.has_cache || (sfl.cache != CACHE_NONE &&
                                         sfl.cache != CACHE_DIRECTSYNC);
    if (src_cached && !sfl.force_share && !compress) {
        map_sources(&s);
    }
    if (!no_create && !strcmp(out_fmt, "raw") && !sparse_given &&
        tfl.cache != CACHE_NONE && tfl.cache != CACHE_DIRECTSYNC && src_cached) {
        struct bdrv_node *fc = bdrv_file_child(s.dst);
        if (fc && !strcmp(bdrv_driver_name(fc), "file")) {
            s.dst_fd = open(bdrv_filename(fc), O_WRONLY | O_CLOEXEC);
        }
        if (s.dst_fd >= 0 && !offload_pays(s.dst_fd)) {
            close(s.dst_fd);
            s.dst_fd = -1;
        }
        if (s.dst_fd >= 0) {
            open_source_files(&s);
        }
        s.offload = s.dst_fd >= 0;
    }
    if (compress) {
        struct bdrv_info di;
        bdrv_get_info(s.dst, &di);
        s.compress_cs = di.cluster_size ? di.cluster_size : 65536;
        s.offload = false;
    }
    s.target_has_backing = backing != NULL;
    /* Write order only shapes targets that allocate as they go: a raw
     * target's layout is its offsets, so it is written out of order. */
    s.salvage = salvage;
    s.in_order = !out_of_order && strcmp(bdrv_driver_name(s.dst), "raw");
    struct img_ratelimit limit;
    img_ratelimit_init(&limit, rate);
    s.limit = rate ? &limit : NULL;
    /* A new image without backing reads as zeroes everywhere; an existing
     * one only when the user says so. */
    s.target_zero = no_create ? target_is_zero : !backing;
    img_progress_init(&s.prog, progress && !quiet);
    int r = run_copy(&s, (unsigned)workers);
    img_ratelimit_destroy(&limit);
    if (r == 0 && s.dst_fd >= 0 && tfl.cache != CACHE_UNSAFE && fdatasync(s.dst_fd) < 0) {
        img_progress_end(&s.prog);
        img_error("Could not flush '%s': %s", out_name, strerror(errno));
        goto out_unref_dst;
    }
    if (r == 0) {
        r = bdrv_flush(s.dst);
        if (r < 0) {
            img_error("Could not flush '%s': %s", out_name, strerror(-r));
            goto out_unref_dst;
        }
    } else {
        img_progress_end(&s.prog);
        img_error("error while %s at byte %" PRIu64 ": %s",
                  s.err_write ? "writing" : "reading", s.err_off, strerror(-r));
        goto out_unref_dst;
    }
    img_progress_end(&s.prog);
    ret = 0;
out_unref_dst:
    bdrv_unref(s.dst);
out_free_src:
    free((char *)co.data_file);     /* strdup'd by img_parse_create_opts */
    if (s.dst_fd >= 0) {
        close(s.dst_fd);
    }
    for (int i = 0; s.fds && i < nb_src; i++) {
        for (int d = 0; d < CONV_MAX_DEPTH; d++) {
            if (s.fds[i][d] >= 0) {
                close(s.fds[i][d]);
            }
            if (s.maps && s.maps[i][d].p) {
                munmap((void *)s.maps[i][d].p, s.maps[i][d].size);
            }
        }
    }
    free(s.fds);
    free(s.maps);
    for (int i = 0; s.src && i < nb_src; i++) {
        if (s.src[i]) {
            bdrv_unref(s.src[i]);
        }
    }
    free(s.src);
    free(s.src_len);
out:
    free(optstr);
    free(backing);
    free(backing_fmt);
    return ret;
}
