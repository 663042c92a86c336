/*
 * tools/img/rebase.c — `diskdm-img rebase`: point an overlay at another
 * backing file. Safe mode first copies into the overlay every range whose
 * content would change (old chain vs new backing), so the guest-visible
 * data stays the same; -u only rewrites the name; -b "" flattens.
 */
#include "tools/img/img.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REBASE_CHUNK (1u << 20)
#define REBASE_GRAIN 65536u

/* Read [off, off+n) of `bs` (NULL or past its end: zeroes). */
static int read_or_zero(struct bdrv_node *bs, int64_t len, uint64_t off, uint8_t *buf,
                        uint64_t n)
{
    memset(buf, 0, n);
    if (!bs || off >= (uint64_t)len) {
        return 0;
    }
    return bdrv_pread(bs, off, buf, MIN(n, (uint64_t)len - off));
}

/* Copy into `top` what reads differently through `nb` than through its
 * current chain. */
static int copy_differences(struct bdrv_node *top, struct bdrv_node *nb,
                            struct img_progress *prog, const char **what)
{
    int64_t len = bdrv_getlength(top);
    int64_t nlen = nb ? bdrv_getlength(nb) : 0;
    if (len < 0 || nlen < 0) {
        *what = "get the image sizes";
        return len < 0 ? (int)len : (int)nlen;
    }
    uint8_t *a = malloc(REBASE_CHUNK), *b = malloc(REBASE_CHUNK);
    int ret = 0;
    if (!a || !b) {
        ret = -ENOMEM;
        *what = "allocate buffers";
        goto out_free;
    }
    for (uint64_t off = 0; off < (uint64_t)len;) {
        uint64_t pnum = 0, map;
        int depth;
        int st = bdrv_block_status(top, off, MIN((uint64_t)len - off, REBASE_CHUNK), &pnum,
                                   &map, &depth);
        if (st < 0 || pnum == 0) {
            ret = st < 0 ? st : -EIO;
            *what = "read the allocation status";
            goto out_free;
        }
        if (depth != 0) {
            ret = bdrv_pread(top, off, a, pnum);
            if (ret == 0) {
                ret = read_or_zero(nb, nlen, off, b, pnum);
            }
            if (ret < 0) {
                *what = "read the old and new backing data";
                goto out_free;
            }
            for (uint64_t i = 0; i < pnum;) {
                uint64_t g = MIN(REBASE_GRAIN - (off + i) % REBASE_GRAIN, pnum - i);
                if (memcmp(a + i, b + i, g)) {
                    ret = bdrv_pwrite(top, off + i, a + i, g, 0);
                    if (ret < 0) {
                        *what = "write to the image";
                        goto out_free;
                    }
                }
                i += g;
            }
        }
        off += pnum;
        img_progress_update(prog, off, (uint64_t)len);
    }
    ret = bdrv_flush(top);
    if (ret < 0) {
        *what = "flush the image";
    }
out_free:
    free(a);
    free(b);
    return ret;
}

int img_cmd_rebase(int argc, char **argv)
{
    enum { OPT_IMAGE_OPTS = 256 };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *new_name = NULL, *new_fmt = NULL;
    bool unsafe = false, progress = false, quiet = false;
    struct img_open_flags fl = { .read_only = false };
    struct img_open_flags bfl = { .read_only = true,
                                  .what = "Could not open new backing file" };
    int c;

    optind = 1;
    opterr = 0;         /* img_bad_option_at says it, as qemu-img does */
    while ((c = getopt_long(argc, argv, ":hf:F:b:upt:T:qU", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'F':
            new_fmt = optarg;
            break;
        case 'b':
            new_name = optarg;
            break;
        case 'u':
            unsafe = true;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 't':
            if (img_parse_cache(optarg, &fl.cache) < 0) {
                return IMG_EXIT_FAIL;
            }
            fl.has_cache = true;
            break;
        case 'T':
            if (img_parse_cache(optarg, &bfl.cache) < 0) {
                return IMG_EXIT_FAIL;
            }
            bfl.has_cache = true;
            break;
        case 'U':
            bfl.force_share = true;
            break;
        case OPT_IMAGE_OPTS:
            fl.image_opts = true;
            break;
        case 'h':
            return img_cmd_help("rebase");
        default:
            return img_bad_option_at(argv, c);
        }
    }
    if (optind != argc - 1) {
        img_print_synopsis(stderr, "rebase");
        return img_usage_error("Expecting one image file name");
    }
    if (!unsafe && !new_name) {
        img_print_synopsis(stderr, "rebase");
        return img_usage_error("Must specify backing file (-b) or use unsafe mode (-u)");
    }
    const char *filename = argv[optind];
    if (new_name && !new_name[0]) {
        new_name = NULL;
        new_fmt = NULL;
    }
    /* -u never reads the old chain: do not even open it. */
    fl.no_backing = unsafe;
    struct bdrv_node *top = img_open_ex(filename, fmt, &fl);
    if (!top) {
        return IMG_EXIT_FAIL;
    }
    int ret = IMG_EXIT_FAIL;
    char *resolved = NULL;
    struct bdrv_node *nb = NULL;
    if (new_name) {
        /* A relative name is relative to the image, as it is stored. */
        const char *slash = strrchr(filename, '/');
        if (new_name[0] != '/' && slash && !fl.image_opts) {
            if (asprintf(&resolved, "%.*s%s", (int)(slash - filename + 1), filename,
                         new_name) < 0) {
                resolved = NULL;
            }
        } else {
            resolved = strdup(new_name);
        }
        if (!resolved) {
            img_error("Out of memory");
            goto out_unref;
        }
    }
    if (new_name && !unsafe) {
        nb = img_open_ex(resolved, new_fmt, &bfl);
        if (!nb) {
            goto out_unref;
        }
        if (!new_fmt) {
            new_fmt = bdrv_driver_name(nb);
        }
    }
    if (new_name && !new_fmt) {
        img_error("Could not change the backing file to '%s': backing format must be "
                  "specified", new_name);
        goto out_unref;
    }
    if (!unsafe) {
        struct img_progress prog;
        img_progress_init(&prog, progress && !quiet);
        const char *what = "";
        int r = copy_differences(top, nb, &prog, &what);
        img_progress_end(&prog);
        if (r < 0) {
            img_error("Could not rebase '%s': could not %s: %s", filename, what,
                      strerror(-r));
            goto out_unref;
        }
    }
    struct error *err = NULL;
    if (bdrv_change_backing_file(top, new_name, new_fmt, &err) < 0) {
        img_error("Could not change the backing file to '%s': %s", new_name ? new_name : "",
                  err->msg);
        error_free(err);
        goto out_unref;
    }
    ret = 0;
out_unref:
    if (nb) {
        bdrv_unref(nb);
    }
    bdrv_unref(top);
    free(resolved);
    return ret;
}
