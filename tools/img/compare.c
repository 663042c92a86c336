/*
 * tools/img/compare.c — `diskdm-img compare`: are two images' contents the
 * same? Exit 0 same, 1 different, 2 error (qemu-img's codes). -s also
 * requires the same size and the same allocation.
 */
#include "tools/img/img.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMP_EXIT_DIFFER 1
#define CMP_EXIT_ERROR 2
#define CMP_CHUNK (2u << 20)

static bool is_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

/* First differing 512-byte sector of two buffers, or -1. */
static int64_t first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    if (!memcmp(a, b, n)) {
        return -1;
    }
    for (size_t i = 0; i < n; i += BDRV_SECTOR_SIZE) {
        size_t m = MIN((size_t)BDRV_SECTOR_SIZE, n - i);
        if (memcmp(a + i, b + i, m)) {
            return (int64_t)i;
        }
    }
    return -1;
}

/* Status of one image at `off`: *zero when it surely reads as zeroes,
 * *alloc when some layer of its chain holds the range. */
static int status(struct bdrv_node *bs, uint64_t off, uint64_t bytes, uint64_t *pnum,
                  bool *zero, bool *alloc)
{
    uint64_t map;
    int depth;
    int st = bdrv_block_status(bs, off, bytes, pnum, &map, &depth);
    if (st < 0) {
        return st;
    }
    if (*pnum == 0) {
        return -EIO;
    }
    *alloc = depth >= 0;
    *zero = depth < 0 || ((st & BDRV_BLOCK_ZERO) && !(st & BDRV_BLOCK_DATA));
    return 0;
}

/* Is [off, end) of `bs` all zeroes? -1 error, 0 no (*where set), 1 yes. */
static int tail_is_zero(struct bdrv_node *bs, uint64_t off, uint64_t end, uint8_t *buf,
                        uint64_t *where)
{
    while (off < end) {
        uint64_t pnum;
        bool zero, alloc;
        if (status(bs, off, end - off, &pnum, &zero, &alloc) < 0) {
            return -1;
        }
        pnum = MIN(pnum, (uint64_t)CMP_CHUNK);
        if (!zero) {
            if (bdrv_pread(bs, off, buf, pnum) < 0) {
                return -1;
            }
            for (uint64_t i = 0; i < pnum; i += BDRV_SECTOR_SIZE) {
                if (!is_zero(buf + i, MIN((uint64_t)BDRV_SECTOR_SIZE, pnum - i))) {
                    *where = off + i;
                    return 0;
                }
            }
        }
        off += pnum;
    }
    return 1;
}

int img_cmd_compare(int argc, char **argv)
{
    enum { OPT_IMAGE_OPTS = 256 };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt1 = NULL, *fmt2 = NULL;
    bool strict = false, quiet = false, progress = false;
    struct img_open_flags fl = { .read_only = true };
    int c;

    optind = 1;
    opterr = 0;         /* img_bad_option_at says it, as qemu-img does */
    while ((c = getopt_long(argc, argv, ":hf:F:T:pqsU", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt1 = optarg;
            break;
        case 'F':
            fmt2 = optarg;
            break;
        case 'T':
            if (img_parse_cache(optarg, &fl.cache) < 0) {
                return CMP_EXIT_ERROR;
            }
            fl.has_cache = true;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 's':
            strict = true;
            break;
        case 'U':
            fl.force_share = true;
            break;
        case OPT_IMAGE_OPTS:
            fl.image_opts = true;
            break;
        case 'h':
            return img_cmd_help("compare");
        default:
            img_bad_option_at(argv, c);
            return CMP_EXIT_ERROR;
        }
    }
    if (optind != argc - 2) {
        img_print_synopsis(stderr, "compare");
        img_usage_error("Expecting two image file names");
        return CMP_EXIT_ERROR;
    }
    const char *f1 = argv[optind], *f2 = argv[optind + 1];
    int ret = CMP_EXIT_ERROR;
    uint8_t *b1 = NULL, *b2 = NULL;
    struct bdrv_node *bs1 = img_open_ex(f1, fmt1, &fl);
    if (!bs1) {
        return CMP_EXIT_ERROR;
    }
    struct bdrv_node *bs2 = img_open_ex(f2, fmt2, &fl);
    if (!bs2) {
        goto out_unref1;
    }
    b1 = malloc(CMP_CHUNK);
    b2 = malloc(CMP_CHUNK);
    if (!b1 || !b2) {
        img_error("Out of memory");
        goto out;
    }
    int64_t l1 = bdrv_getlength(bs1), l2 = bdrv_getlength(bs2);
    if (l1 < 0 || l2 < 0) {
        img_error("Can't get size of %s", l1 < 0 ? f1 : f2);
        goto out;
    }
    if (l1 != l2 && strict) {
        if (!quiet) {
            printf("Strict mode: Image size mismatch!\n");
        }
        ret = CMP_EXIT_DIFFER;
        goto out;
    }
    uint64_t common = (uint64_t)MIN(l1, l2), total = (uint64_t)MAX(l1, l2);
    struct img_progress prog;
    img_progress_init(&prog, progress && !quiet);
    for (uint64_t off = 0; off < common;) {
        uint64_t p1, p2;
        bool z1, z2, a1, a2;
        if (status(bs1, off, common - off, &p1, &z1, &a1) < 0) {
            img_error("Error while reading offset %" PRIu64 " of %s", off, f1);
            goto out;
        }
        if (status(bs2, off, common - off, &p2, &z2, &a2) < 0) {
            img_error("Error while reading offset %" PRIu64 " of %s", off, f2);
            goto out;
        }
        uint64_t n = MIN(MIN(p1, p2), (uint64_t)CMP_CHUNK);
        if (strict && a1 != a2) {
            img_progress_end(&prog);
            if (!quiet) {
                printf("Strict mode: Offset %" PRIu64 " block status mismatch!\n", off);
            }
            ret = CMP_EXIT_DIFFER;
            goto out;
        }
        if (!(z1 && z2)) {
            if (bdrv_pread(bs1, off, b1, n) < 0) {
                img_error("Error while reading offset %" PRIu64 " of %s", off, f1);
                goto out;
            }
            if (bdrv_pread(bs2, off, b2, n) < 0) {
                img_error("Error while reading offset %" PRIu64 " of %s", off, f2);
                goto out;
            }
            int64_t d = first_diff(b1, b2, n);
            if (d >= 0) {
                img_progress_end(&prog);
                if (!quiet) {
                    printf("Content mismatch at offset %" PRIu64 "!\n", off + (uint64_t)d);
                }
                ret = CMP_EXIT_DIFFER;
                goto out;
            }
        }
        off += n;
        img_progress_update(&prog, off, total);
    }
    if (l1 != l2) {
        if (!quiet) {
            printf("Warning: Image size mismatch!\n");
        }
        uint64_t where = 0;
        int z = tail_is_zero(l1 > l2 ? bs1 : bs2, common, total, b1, &where);
        if (z < 0) {
            img_error("Error while reading offset %" PRIu64 " of %s", common,
                      l1 > l2 ? f1 : f2);
            goto out;
        }
        if (z == 0) {
            img_progress_end(&prog);
            if (!quiet) {
                printf("Content mismatch at offset %" PRIu64 "!\n", where);
            }
            ret = CMP_EXIT_DIFFER;
            goto out;
        }
    }
    img_progress_end(&prog);
    if (!quiet) {
        printf("Images are identical.\n");
    }
    ret = 0;
out:
    free(b1);
    free(b2);
    bdrv_unref(bs2);
out_unref1:
    bdrv_unref(bs1);
    return ret;
}
