/*
 * tests/fuzz/fuzz-xl-cfg.c — xl domain config files (xen/xl-cfg.c) from
 * untrusted text: the input is a config file, or with a NUL byte the file
 * then KEY=VALUE overrides. Every input must parse or fail with a message
 * naming a place; a failed text adds no settings; what parses must give
 * well-formed settings and, through xen_xl_domain_from_cfg, disks with a
 * vdev and a format.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xen/xen.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_settings(const struct xen_cfg *cfg)
{
    for (size_t i = 0; i < cfg->n; i++) {
        const struct xen_cfg_setting *s = &cfg->settings[i];

        if (!s->key || !*s->key || !s->source || s->line < 1 || s->col < 1 ||
            (!s->is_list && s->n != 1) || xen_cfg_find(cfg, s->key) == NULL)
            abort();
        for (size_t k = 0; k < s->n; k++)
            if (!s->items[k].str || s->items[k].line < s->line)
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(data, 0, size);
    size_t flen = nul ? (size_t)(nul - text) : size;
    struct xen_cfg cfg = { 0 };
    struct xen_xl_domain d;
    struct error *err = NULL;
    size_t before;

    if (xen_cfg_parse(&cfg, "fuzz.cfg", text, flen, &err) < 0) {
        if (!err || !err->msg || strncmp(err->msg, "fuzz.cfg:", 9) || cfg.n)
            abort();
        error_free(err);
        err = NULL;
    }
    check_settings(&cfg);
    /* the rest, split at NUL bytes, as KEY=VALUE overrides */
    for (size_t off = flen + 1; nul && off <= size;) {
        const char *p = text + off;
        const char *next = memchr(p, 0, size - off);
        size_t len = next ? (size_t)(next - p) : size - off;

        before = cfg.n;
        if (xen_cfg_parse(&cfg, "command line", p, len, &err) < 0) {
            if (!err || !err->msg || cfg.n != before)
                abort();
            error_free(err);
            err = NULL;
        }
        off += len + 1;
    }
    check_settings(&cfg);

    if (xen_xl_domain_from_cfg(&cfg, &d, &err) == 0) {
        if (err)
            abort();
        for (size_t i = 0; i < d.ndisks; i++)
            if (!d.disks[i].vdev || !d.disks[i].format || !d.disk_lines[i])
                abort();
        if (d.ndm_args && d.dm_args[d.ndm_args])
            abort();
        xen_xl_domain_free(&d);
    } else {
        if (!err || !err->msg || d.ndisks || d.name)
            abort();
        error_free(err);
    }
    xen_cfg_free(&cfg);
    return 0;
}
