/*
 * tools/img/dd.c — `diskdm-img dd`: copy part of an image into a new image
 * with dd's operands (if=, of=, bs=, count=, skip=), sizes computed as
 * qemu-img dd computes them.
 */
#include "tools/img/img.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DD_CHUNK (4u << 20)

int img_cmd_dd(int argc, char **argv)
{
    enum { OPT_IMAGE_OPTS = 256 };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_fmt = "raw", *in_name = NULL, *out_name = NULL;
    uint64_t bs = 512, count = 0, skip = 0;
    bool has_count = false, has_skip = false;
    struct img_open_flags fl = { .read_only = true };
    int c;

    optind = 1;
    opterr = 0;         /* img_bad_option_at says it, as qemu-img does */
    while ((c = getopt_long(argc, argv, ":hf:O:U", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'O':
            out_fmt = optarg;
            break;
        case 'U':
            fl.force_share = true;
            break;
        case OPT_IMAGE_OPTS:
            fl.image_opts = true;
            break;
        case 'h':
            return img_cmd_help("dd");
        default:
            return img_bad_option_at(argv, c);
        }
    }
    for (int i = optind; i < argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '=');
        if (!eq) {
            return img_error("unrecognized operand %s", a);
        }
        size_t kl = (size_t)(eq - a);
        const char *v = eq + 1;
        if (kl == 2 && !strncmp(a, "if", 2)) {
            in_name = v;
        } else if (kl == 2 && !strncmp(a, "of", 2)) {
            out_name = v;
        } else if (kl == 2 && !strncmp(a, "bs", 2)) {
            if (img_parse_size(v, &bs) < 0 || bs == 0 || bs > INT32_MAX) {
                return img_error("Invalid bs specified. Must be between 1 and 2147483647.");
            }
        } else if (kl == 5 && !strncmp(a, "count", 5)) {
            if (img_parse_size(v, &count) < 0 || count > INT64_MAX) {
                return img_error("invalid number: '%s'", v);
            }
            has_count = true;
        } else if (kl == 4 && !strncmp(a, "skip", 4)) {
            if (img_parse_size(v, &skip) < 0 || skip > INT64_MAX) {
                return img_error("invalid number: '%s'", v);
            }
            has_skip = true;
        } else {
            return img_error("unrecognized operand %.*s", (int)kl, a);
        }
    }
    if (!in_name || !out_name) {
        return img_error("Must specify both input and output files");
    }
    if (!img_format_known(out_fmt)) {
        return img_error("Unknown file format '%s'", out_fmt);
    }
    struct bdrv_node *in = img_open_ex(in_name, fmt, &fl);
    if (!in) {
        return IMG_EXIT_FAIL;
    }
    int ret = IMG_EXIT_FAIL;
    struct bdrv_node *out = NULL;
    uint8_t *buf = NULL;
    int64_t l = bdrv_getlength(in);
    if (l < 0) {
        img_error("Failed to get size for '%s'", in_name);
        goto out_unref_in;
    }
    uint64_t size = (uint64_t)l, pos = 0;
    if (has_count && count <= INT64_MAX / bs && count * bs < size) {
        size = count * bs;
    }
    if (has_skip) {
        if (skip > INT64_MAX / bs || size < skip * bs) {
            /* As qemu-img: said, then an empty output. */
            img_error("%s: cannot skip to specified offset", in_name);
            pos = size;
        } else {
            pos = skip * bs;
        }
    }
    struct bdrv_create_opts co = { .size = size - pos };
    struct error *err = NULL;
    if (bdrv_create(out_fmt, out_name, &co, &err) < 0) {
        img_error("%s: error while creating output image: %s", out_name, err->msg);
        error_free(err);
        goto out_unref_in;
    }
    struct img_open_flags ofl = { .read_only = false, .has_cache = true,
                                  .cache = CACHE_UNSAFE };
    out = img_open_ex(out_name, out_fmt, &ofl);
    if (!out) {
        goto out_unref_in;
    }
    buf = malloc(DD_CHUNK);
    if (!buf) {
        img_error("Out of memory");
        goto out_unref_out;
    }
    for (uint64_t off = pos; off < size;) {
        uint64_t n = MIN((uint64_t)DD_CHUNK, size - off);
        int r = bdrv_pread(in, off, buf, n);
        if (r < 0) {
            img_error("error while reading from input image file: %s", strerror(-r));
            goto out_unref_out;
        }
        r = bdrv_pwrite(out, off - pos, buf, n, 0);
        if (r < 0) {
            img_error("error while writing to output image file: %s", strerror(-r));
            goto out_unref_out;
        }
        off += n;
    }
    if (bdrv_flush(out) < 0) {
        img_error("Could not flush '%s'", out_name);
        goto out_unref_out;
    }
    ret = 0;
out_unref_out:
    free(buf);
    bdrv_unref(out);
out_unref_in:
    bdrv_unref(in);
    return ret;
}
