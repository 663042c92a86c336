/*
 * tools/img/img.c — diskdm-img's main: picks the subcommand from a table
 * (one file per subcommand) and holds the helpers they share.
 */
#include "tools/img/img.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct img_cmd img_cmds[] = {
    { "create", img_cmd_create,
      "create [-f FMT] [-o OPTIONS] FILENAME SIZE" },
    { "info", img_cmd_info,
      "info [-f FMT] [--output=human|json] [-U] FILENAME" },
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
    fprintf(out, "\n");
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

struct bdrv_node *img_open(const char *filename, const char *fmt, bool read_only,
                           bool force_share)
{
    struct bdrv_open_opts o;
    struct error *err = NULL;
    bdrv_open_opts_init(&o);
    o.filename = strdup(filename);
    o.driver = fmt ? strdup(fmt) : NULL;
    o.read_only = (struct opt_bool){ true, read_only };
    o.auto_read_only = (struct opt_bool){ true, false };
    o.force_share = force_share;
    struct bdrv_node *bs = bdrv_open(&o, &err);
    bdrv_open_opts_free(&o);
    if (!bs) {
        img_error("Could not open '%s': %s", filename, err->msg);
        error_free(err);
    }
    return bs;
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
    for (size_t i = 0; i < ARRAY_SIZE(img_cmds); i++) {
        if (!strcmp(argv[1], img_cmds[i].name)) {
            return img_cmds[i].run(argc - 1, argv + 1);
        }
    }
    return img_usage_error("Command not found: %s", argv[1]);
}
