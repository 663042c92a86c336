/*
 * tools/img/img.c — diskdm-img's main: dispatches the subcommand from a table
 * (one file per subcommand) and holds the helpers they share: opening
 * images, progress, qemu-img's JSON layout, creation options.
 */
#include "tools/img/img.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const struct img_cmd img_cmds[] = {
    { "amend", img_cmd_amend,
      "amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force] "
      "-o options filename" },
    { "bench", img_cmd_bench, .no_object = true, .synopsis =
      "bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] "
      "[--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] "
      "[-t cache] [-w] [-U] filename" },
    { "check", img_cmd_check,
      "check [--object objectdef] [--image-opts] [-q] [-f fmt] [--output=ofmt] "
      "[-r [leaks | all]] [-T src_cache] [-U] filename" },
    { "commit", img_cmd_commit,
      "commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] [-b base] "
      "[-r rate_limit] [-d] [-p] filename" },
    { "compare", img_cmd_compare,
      "compare [--object objectdef] [--image-opts] [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] "
      "[-s] [-U] filename1 filename2" },
    { "convert", img_cmd_convert,
      "convert [--object objectdef] [--image-opts] [--target-image-opts] [--target-is-zero] "
      "[-U] [-C] [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] "
      "[-B backing_file [-F backing_fmt]] [-o options] [-S sparse_size] [-r rate_limit] "
      "[-m num_coroutines] [-W] filename [filename2 [...]] output_filename" },
    { "create", img_cmd_create,
      "create [--object objectdef] [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] "
      "[-o options] filename [size]" },
    { "dd", img_cmd_dd,
      "dd [--object objectdef] [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] "
      "[count=blocks] [skip=blocks] if=input of=output" },
    { "info", img_cmd_info,
      "info [--object objectdef] [--image-opts] [-f fmt] [--output=ofmt] [--backing-chain] "
      "[-U] filename" },
    { "map", img_cmd_map,
      "map [--object objectdef] [--image-opts] [-f fmt] [--start-offset=offset] "
      "[--max-length=len] [--output=ofmt] [-U] filename" },
    { "measure", img_cmd_measure,
      "measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [--object objectdef] "
      "[--image-opts] [-f fmt] [-U] filename]" },
    { "rebase", img_cmd_rebase,
      "rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] [-t cache] "
      "[-T src_cache] [-p] [-u] -b backing_file [-F backing_fmt] filename" },
    { "resize", img_cmd_resize,
      "resize [--object objectdef] [--image-opts] [-f fmt] [--preallocation=prealloc] [-q] "
      "[--shrink] filename [+ | -]size" },
    { "snapshot", img_cmd_snapshot,
      "snapshot [--object objectdef] [--image-opts] [-U] [-q] "
      "[-l | -a snapshot | -c snapshot | -d snapshot] filename" },
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: diskdm-img COMMAND [OPTIONS]\n\nCommands:\n");
    for (size_t i = 0; i < ARRAY_SIZE(img_cmds); i++) {
        fprintf(out, "  %s\n", img_cmds[i].synopsis);
    }
    fprintf(out, "\nSupported formats:");
    for (const char *const *n = bdrv_driver_names(); *n; n++) {
        fprintf(out, " %s", *n);
    }
    fprintf(out, "\n\nSee diskdm-img(1) for the meaning of each option.\n");
}

void img_print_synopsis(FILE *out, const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(img_cmds); i++) {
        if (!strcmp(img_cmds[i].name, name)) {
            fprintf(out, "Usage: diskdm-img %s\n", img_cmds[i].synopsis);
        }
    }
}

int img_cmd_help(const char *name)
{
    img_print_synopsis(stdout, name);
    return 0;
}

int img_bad_option(void)
{
    fprintf(stderr, "Try 'diskdm-img --help' for more information\n");
    return IMG_EXIT_USAGE;
}

int img_bad_option_at(char **argv, int c)
{
    char shortopt[3] = { '-', (char)optopt, '\0' };
    const char *what = optopt > 0 && optopt < 256 && argv[optind - 1][1] != '-'
                       ? shortopt : argv[optind - 1];
    fprintf(stderr, "diskdm-img: %s '%s'\n",
            c == ':' ? "missing argument for option" : "unrecognized option", what);
    return img_bad_option();
}

int img_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "diskdm-img: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'diskdm-img --help' for more information\n");
    va_end(ap);
    return IMG_EXIT_USAGE;
}

int img_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "diskdm-img: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return IMG_EXIT_FAIL;
}

struct bdrv_node *img_open_ex(const char *filename, const char *fmt,
                              const struct img_open_flags *fl)
{
    struct bdrv_open_opts o;
    struct error *err = NULL;
    bdrv_open_opts_init(&o);
    if (fl->image_opts) {
        if (bdrv_open_opts_parse(filename, &o, &err) < 0) {
            img_error("Could not open '%s': %s", filename, err->msg);
            error_free(err);
            bdrv_open_opts_free(&o);
            return NULL;
        }
    } else {
        o.filename = strdup(filename);
        o.driver = fmt ? strdup(fmt) : NULL;
    }
    if (!o.read_only.set) {
        o.read_only = (struct opt_bool){ true, fl->read_only };
    }
    if (!o.auto_read_only.set) {
        o.auto_read_only = (struct opt_bool){ true, false };
    }
    o.force_share |= fl->force_share;
    o.no_backing |= fl->no_backing;
    if (fl->has_cache) {
        o.cache = fl->cache;
    }
    struct bdrv_node *bs = bdrv_open(&o, &err);
    bdrv_open_opts_free(&o);
    if (!bs) {
        img_error("%s '%s': %s", fl->what ? fl->what : "Could not open", filename, err->msg);
        error_free(err);
    }
    return bs;
}

struct bdrv_node *img_open(const char *filename, const char *fmt, bool read_only,
                           bool force_share)
{
    struct img_open_flags fl = { .read_only = read_only, .force_share = force_share };
    return img_open_ex(filename, fmt, &fl);
}

int img_parse_rate(const char *s, uint64_t *out)
{
    if (img_parse_size(s, out) < 0 || *out > INT64_MAX) {
        img_error("Invalid rate limit specified. You may use k, M, G, T, P or E suffixes for");
        img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return -1;
    }
    return 0;
}

void img_ratelimit_init(struct img_ratelimit *rl, uint64_t rate)
{
    pthread_mutex_init(&rl->lock, NULL);
    rl->rate = rate;
    rl->start_ns = clock_ns();
    rl->sent = 0;
}

void img_ratelimit_wait(struct img_ratelimit *rl, uint64_t bytes)
{
    if (!rl->rate) {
        return;
    }
    pthread_mutex_lock(&rl->lock);
    /* This request may start once what went before it has had its time
     * at `rate`; the first one goes at once. */
    uint64_t due = rl->start_ns + (uint64_t)((double)rl->sent * 1e9 / (double)rl->rate);
    rl->sent += bytes;
    pthread_mutex_unlock(&rl->lock);
    uint64_t now = clock_ns();
    if (due > now) {
        uint64_t d = due - now;
        struct timespec ts = { (time_t)(d / 1000000000u), (long)(d % 1000000000u) };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
    }
}

void img_ratelimit_destroy(struct img_ratelimit *rl)
{
    pthread_mutex_destroy(&rl->lock);
}

int img_parse_cache(const char *s, enum cache_mode *out)
{
    for (int i = 0; cache_mode_names[i]; i++) {
        if (!strcmp(cache_mode_names[i], s)) {
            *out = (enum cache_mode)i;
            return 0;
        }
    }
    img_error("Invalid cache option: %s", s);
    return -1;
}

char *img_size_to_str(uint64_t size, char *buf, size_t len)
{
    static const char *const suffixes[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
    /* Pick the unit so the number shown is below 1000 (0.977 KiB, not
     * 1000 B), as qemu does. */
    double v = (double)size * 1.024;
    int i = 0;
    while (v >= 1024.0 && i + 1 < (int)ARRAY_SIZE(suffixes)) {
        v /= 1024.0;
        i++;
    }
    double div = (double)(1ULL << (i * 10));
    snprintf(buf, len, "%0.3g %sB", (double)size / div, suffixes[i]);
    return buf;
}

int img_parse_size(const char *s, uint64_t *out)
{
    if (!*s || *s == '-') {
        return -1;
    }
    return parse_size(s, out) < 0 ? -1 : 0;
}

void img_progress_init(struct img_progress *p, bool wanted)
{
    p->on = wanted && isatty(STDOUT_FILENO);
    p->last = -1;
    img_progress_update(p, 0, 1);
}

void img_progress_update(struct img_progress *p, uint64_t done, uint64_t total)
{
    if (!p->on) {
        return;
    }
    int now = total ? (int)((double)done * 10000.0 / (double)total) : 10000;
    if (now == p->last) {
        return;
    }
    p->last = now;
    printf("    (%d.%02d/100%%)\r", now / 100, now % 100);
    fflush(stdout);
}

void img_progress_cb(void *opaque, uint64_t done, uint64_t total)
{
    img_progress_update(opaque, done, total);
}

void img_progress_end(struct img_progress *p)
{
    if (p->on) {
        img_progress_update(p, 1, 1);
        printf("\n");
    }
}

/* qemu's pretty printer: four-space indents, "key": value, arrays and
 * objects opened on the same line. */
static void json_print_value(struct json_object *v, int depth)
{
    enum json_type t = json_object_get_type(v);
    if (t == json_type_object) {
        bool first = true;
        printf("{");
        json_object_object_foreach(v, key, val) {
            printf("%s\n%*s\"%s\": ", first ? "" : ",", (depth + 1) * 4, "", key);
            json_print_value(val, depth + 1);
            first = false;
        }
        printf("\n%*s}", depth * 4, "");
    } else if (t == json_type_array) {
        size_t n = json_object_array_length(v);
        printf("[");
        for (size_t i = 0; i < n; i++) {
            printf("%s\n%*s", i ? "," : "", (depth + 1) * 4, "");
            json_print_value(json_object_array_get_idx(v, i), depth + 1);
        }
        printf("\n%*s]", depth * 4, "");
    } else {
        fputs(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
                                             JSON_C_TO_STRING_NOSLASHESCAPE), stdout);
    }
}

void img_json_print(struct json_object *v)
{
    json_print_value(v, 0);
    printf("\n");
}

bool img_format_known(const char *fmt)
{
    for (const char *const *n = bdrv_driver_names(); *n; n++) {
        if (!strcmp(*n, fmt)) {
            return true;
        }
    }
    return false;
}

static const char *const prealloc_names[] = { "off", "metadata", "falloc", "full" };

void img_print_create_help(const char *fmt)
{
    bool q = !strcmp(fmt, "qcow2");
    printf("Supported options:\n");
    if (q) {
        printf("  backing_file=<str>     - File name of a base image\n");
        printf("  backing_fmt=<str>      - Image format of the base image\n");
        printf("  cluster_size=<size>    - qcow2 cluster size\n");
        printf("  compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])\n");
        printf("  data_file=<str>        - File name of an external data file\n");
        printf("  data_file_raw=<bool (on/off)> - The external data file must stay valid as a "
               "raw data file\n");
        printf("  extended_l2=<bool (on/off)> - Extended L2 tables\n");
        printf("  lazy_refcounts=<bool (on/off)> - Postpone refcount updates\n");
        printf("  preallocation=<str>    - Preallocation mode (allowed values: off, "
               "metadata, falloc, full)\n");
        printf("  refcount_bits=<num>    - Width of a reference count entry in bits\n");
    } else {
        printf("  preallocation=<str>    - Preallocation mode (allowed values: off, "
               "falloc, full)\n");
    }
    printf("  size=<size>            - Virtual disk size\n");
}

/* An option error with qemu-img's prefix for where it arose: `all`
 * before every message, `drv` before those the format driver raises. */
static int PRINTF_FMT(4, 5) opt_error(const char *all, const char *drv, bool is_drv,
                                      const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    int ret = img_error("%s%s%s", all ? all : "", is_drv && drv ? drv : "",
                        n < 0 ? "Out of memory" : msg);
    free(msg);
    return ret;
}

int img_parse_create_opts_in(const char *str, const char *fmt,
                             struct bdrv_create_opts *co, const char **prealloc,
                             char **backing, char **backing_fmt,
                             const char *all, const char *drv)
{
    struct kvlist kv = { 0 };
    struct error *err = NULL;
    bool q = fmt && !strcmp(fmt, "qcow2");
    if (opts_split(str, NULL, &kv, &err) < 0) {
        int r = opt_error(all, drv, false, "Invalid option list: %s", err->msg);
        error_free(err);
        return r;
    }
    int ret = 0;
    for (size_t i = 0; i < kv.n && ret == 0; i++) {
        const char *k = kv.v[i].key, *v = kv.v[i].value;
        uint64_t n;
        bool b;
        if (!strcmp(k, "size")) {
            if (img_parse_size(v, &co->size) < 0) {
                ret = opt_error(all, drv, false,
                                "Parameter 'size' expects a non-negative number below 2^64\n"
                                "Optional suffix k, M, G, T, P or E means kilo-, mega-, "
                                "giga-, tera-, peta-\nand exabytes, respectively.");
            }
        } else if (!strcmp(k, "preallocation")) {
            size_t j;
            for (j = 0; j < ARRAY_SIZE(prealloc_names); j++) {
                if (!strcmp(v, prealloc_names[j]) && (q || j != PREALLOC_METADATA)) {
                    break;
                }
            }
            if (j == ARRAY_SIZE(prealloc_names)) {
                ret = opt_error(all, drv, true,
                                "Parameter 'preallocation' does not accept value '%s'", v);
            } else {
                co->prealloc = j;
                *prealloc = prealloc_names[j];
            }
        } else if (q && !strcmp(k, "cluster_size")) {
            if (img_parse_size(v, &n) < 0 || n < 512 || n > (2u << 20) || (n & (n - 1))) {
                ret = opt_error(all, drv, true,
                                "Cluster size must be a power of two between 512 and "
                                "2048k");
            } else {
                co->cluster_size = (uint32_t)n;
            }
        } else if (q && !strcmp(k, "compat")) {
            if (!strcmp(v, "0.10") || !strcmp(v, "v2")) {
                co->compat = "0.10";
            } else if (!strcmp(v, "1.1") || !strcmp(v, "v3")) {
                co->compat = "1.1";
            } else {
                ret = opt_error(all, drv, true,
                                "Parameter 'version' does not accept value '%s'", v);
            }
        } else if (q && !strcmp(k, "lazy_refcounts")) {
            if (parse_bool(v, &b) < 0) {
                ret = opt_error(all, drv, false,
                                "Parameter 'lazy_refcounts' expects 'on' or 'off'");
            } else {
                co->lazy_refcounts = b;
            }
        } else if (q && !strcmp(k, "data_file")) {
            co->data_file = strdup(v);      /* lives as long as the command */
        } else if (q && !strcmp(k, "data_file_raw")) {
            if (parse_bool(v, &b) < 0) {
                ret = opt_error(all, drv, false,
                                "Parameter 'data_file_raw' expects 'on' or 'off'");
            } else {
                co->data_file_raw = b;
            }
        } else if (q && !strcmp(k, "extended_l2")) {
            if (parse_bool(v, &b) < 0) {
                ret = opt_error(all, drv, false,
                                "Parameter 'extended_l2' expects 'on' or 'off'");
            } else {
                co->extended_l2 = b;
            }
        } else if (q && !strcmp(k, "refcount_bits")) {
            if (parse_uint(v, &n) < 0 || n == 0 || n > 64 || (n & (n - 1))) {
                ret = opt_error(all, drv, true,
                                "Refcount width must be a power of two and may not "
                                "exceed 64 bits");
            } else {
                co->refcount_bits = (unsigned)n;
            }
        } else if (q && !strcmp(k, "backing_file") && backing) {
            free(*backing);
            *backing = strdup(v);
        } else if (q && !strcmp(k, "backing_fmt") && backing_fmt) {
            free(*backing_fmt);
            *backing_fmt = strdup(v);
        } else {
            ret = opt_error(all, drv, false, "Invalid parameter '%s'", k);
        }
    }
    if (ret == 0 && co->lazy_refcounts && co->compat && !strcmp(co->compat, "0.10")) {
        ret = opt_error(all, drv, true,
                        "Lazy refcounts only supported with compatibility level 1.1 "
                        "and above (use version=v3 or greater)");
    }
    if (ret == 0 && co->refcount_bits && co->refcount_bits != 16 && co->compat &&
        !strcmp(co->compat, "0.10")) {
        ret = opt_error(all, drv, true,
                        "Different refcount widths than 16 bits require compatibility "
                        "level 1.1 or above (use version=v3 or greater)");
    }
    kvlist_free(&kv);
    return ret;
}

int img_parse_create_opts(const char *str, const char *fmt,
                          struct bdrv_create_opts *co, const char **prealloc,
                          char **backing, char **backing_fmt)
{
    return img_parse_create_opts_in(str, fmt, co, prealloc, backing, backing_fmt, NULL, NULL);
}

int main(int argc, char **argv)
{
    log_init("diskdm-img", LOG_WARN);
    if (argc < 2) {
        return img_usage_error("Not enough arguments");
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("diskdm-img version 1.0 (qemu-img 7.2 compatible)\n");
        return 0;
    }
    opterr = 1;
    for (size_t i = 0; i < ARRAY_SIZE(img_cmds); i++) {
        if (!strcmp(argv[1], img_cmds[i].name)) {
            /* getopt names the program from argv[0] in its messages. */
            argv[1] = (char *)"diskdm-img";
            int n = argc - 1;
            if (!img_cmds[i].no_object) {
                int r = img_objects_take(&n, argv + 1);
                if (r >= 0) {
                    return r;
                }
            }
            return img_cmds[i].run(n, argv + 1);
        }
    }
    return img_usage_error("Command not found: %s", argv[1]);
}
