/*
 * xen/xl-disk.c — xl's disk specification syntax (docs/misc/
 * xl-disk-configuration.txt), read the way xl reads it: positional
 * target,format,vdev,access, key=value parameters, the deprecated
 * "fmt:target" and "vdev:devtype" shapes, and xl's error wording.
 * diskdm-xl turns the result into the libxl xenstore layout.
 */
#include "xen/xen.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parser state across the parts of one disk spec. */
struct xl_parse {
    struct xen_xl_disk *disk;
    const char *source;
    const char *spec;       /* the part being read, for messages */
    bool had_depr_prefix;
    bool access_set;
    struct error *err;      /* first error; later ones are dropped */
};

static void xl_err(struct xl_parse *xp, const char *erroneous, const char *message)
{
    if (xp->err)
        return;
    error_setg(&xp->err, "%s: config parsing error in disk specification: %s"
               "%s%s%s in `%s'", xp->source, message,
               erroneous ? ": near `" : "", erroneous ? erroneous : "",
               erroneous ? "'" : "", xp->spec);
    xp->err->errnum = EINVAL;
}

/* Strings may be given once; an empty earlier value may be replaced. */
static void save_string(struct xl_parse *xp, const char *what, char **slot,
                        const char *value)
{
    if (*slot && **slot) {
        char msg[64];

        snprintf(msg, sizeof(msg), "%s respecified", what);
        xl_err(xp, value, msg);
        return;
    }
    free(*slot);
    *slot = strdup(value);
}

static void set_format(struct xl_parse *xp, const char *str)
{
    static const char *const formats[] = { "raw", "qcow", "qcow2", "vhd",
                                           "empty", "qed" };
    const char *f = NULL;

    if (!*str)
        f = "raw";
    for (size_t i = 0; !f && i < ARRAY_SIZE(formats); i++)
        if (!strcmp(str, formats[i]))
            f = formats[i];
    if (!f) {
        xl_err(xp, str, "unknown value for format");
        return;
    }
    if (xp->disk->format && strcmp(xp->disk->format, f)) {
        xl_err(xp, str, "format respecified");
        return;
    }
    xp->disk->format = f;
}

/*
 * xl's default access is rw, and that default applies only when a spec
 * says nothing about access. An access given but empty ("access=" or an
 * empty fourth field) is refused rather than read as writable.
 */
static void set_access(struct xl_parse *xp, const char *str)
{
    if (!strcmp(str, "r") || !strcmp(str, "ro"))
        xp->disk->readwrite = false;
    else if (!strcmp(str, "rw") || !strcmp(str, "w"))
        xp->disk->readwrite = true;
    else if (!*str)
        xl_err(xp, NULL, "empty value for access (leave access out for rw)");
    else
        xl_err(xp, str, "unknown value for access");
}

static void set_backendtype(struct xl_parse *xp, const char *str)
{
    static const char *const types[] = { "phy", "tap", "qdisk", "standalone" };
    const char *t = NULL;

    for (size_t i = 0; !t && i < ARRAY_SIZE(types); i++)
        if (!strcmp(str, types[i]))
            t = types[i];
    if (!t) {
        xl_err(xp, str, "unknown value for backendtype");
        return;
    }
    if (xp->disk->backendtype && strcmp(xp->disk->backendtype, t)) {
        xl_err(xp, str, "backend respecified");
        return;
    }
    xp->disk->backendtype = t;
}

static void set_specification(struct xl_parse *xp, const char *str)
{
    enum xen_xl_spec s;

    if (!strcmp(str, "xen"))
        s = XEN_XL_SPEC_XEN;
    else if (!strcmp(str, "virtio"))
        s = XEN_XL_SPEC_VIRTIO;
    else {
        xl_err(xp, str, "unknown value for specification");
        return;
    }
    if (xp->disk->specification != XEN_XL_SPEC_UNSET && xp->disk->specification != s) {
        xl_err(xp, str, "specification respecified");
        return;
    }
    xp->disk->specification = s;
}

/* "vdev:devtype" in a positional slot (deprecated). Returns true if taken. */
static bool vdev_and_devtype(struct xl_parse *xp, char *str)
{
    char *colon = strrchr(str, ':');

    if (!colon)
        return false;
    *colon++ = 0;
    save_string(xp, "vdev", &xp->disk->vdev, str);
    if (!strcmp(colon, "cdrom"))
        xp->disk->is_cdrom = true;
    else if (!strcmp(colon, "disk"))
        xp->disk->is_cdrom = false;
    else
        xl_err(xp, colon, "unknown deprecated type");
    return true;
}

/* Returns false when parsing must stop. */
static bool positional(struct xl_parse *xp, char *tok)
{
    struct xen_xl_disk *d = xp->disk;

    if (xp->err) {
        /* earlier errors may just lead to later ones */
    } else if (!d->target) {
        save_string(xp, "target", &d->target, tok);
    } else if (!xp->had_depr_prefix && !d->format) {
        if (!*d->target && vdev_and_devtype(xp, tok))
            d->format = "empty";
        else
            set_format(xp, tok);
    } else if (!d->vdev) {
        if (!vdev_and_devtype(xp, tok))
            save_string(xp, "vdev", &d->vdev, tok);
    } else if (!xp->access_set) {
        xp->access_set = true;
        set_access(xp, tok);
    } else {
        xl_err(xp, tok, "too many positional parameters");
        return false;
    }
    return true;
}

static bool word_in(const char *w, size_t n, const char *const *list, size_t nl)
{
    for (size_t i = 0; i < nl; i++)
        if (strlen(list[i]) == n && !strncmp(w, list[i], n))
            return true;
    return false;
}

/*
 * "word:" before a target: a deprecated format/script/backend prefix.
 * Returns the characters consumed, 0 if this is not a prefix, -1 on error.
 */
static int depr_prefix(struct xl_parse *xp, const char *p)
{
    static const char *const fmts[] = { "raw", "qcow", "qcow2", "vhd" };
    static const char *const scripts[] = { "iscsi", "nbd", "enbd", "drbd" };
    static const char *const ignored[] = { "tapdisk", "tap", "tap2", "aio",
                                           "ioemu", "file", "phy" };
    size_t n = 0;
    char word[32];
    char next;

    if (!islower((unsigned char)p[0]))
        return 0;
    while (islower((unsigned char)p[n]) || isdigit((unsigned char)p[n]))
        n++;
    if (p[n] != ':')
        return 0;
    next = p[n + 1];
    snprintf(word, sizeof(word), "%.*s", (int)MIN(n, sizeof(word) - 1), p);
    if (next == '/') {
        if (word_in(p, n, fmts, ARRAY_SIZE(fmts))) {
            xp->had_depr_prefix = true;
            set_format(xp, word);
            return (int)n + 1;
        }
        if (word_in(p, n, scripts, ARRAY_SIZE(scripts))) {
            char script[48];

            xp->had_depr_prefix = true;
            snprintf(script, sizeof(script), "block-%s", word);
            save_string(xp, "script", &xp->disk->script, script);
            return (int)n + 1;
        }
        if (word_in(p, n, ignored, ARRAY_SIZE(ignored))) {
            xp->had_depr_prefix = true;
            return (int)n + 1;
        }
    }
    if (next == 0 || next == '/' ||
        (!islower((unsigned char)next) && !isdigit((unsigned char)next))) {
        char tok[40];

        snprintf(tok, sizeof(tok), "%s:", word);
        xl_err(xp, tok, "unknown deprecated disk prefix");
        return -1;
    }
    return 0;
}

/* key=value. Returns false when parsing must stop. */
static bool key_value(struct xl_parse *xp, char *tok)
{
    struct xen_xl_disk *d = xp->disk;
    char *eq = strchr(tok, '='), *val = eq + 1;
    static const char *const ignored[] = { "colo-host", "colo-port",
                                           "colo-export", "active-disk",
                                           "hidden-disk" };

    *eq = 0;
    if (!strcmp(tok, "format")) {
        set_format(xp, val);
    } else if (!strcmp(tok, "devtype")) {
        if (!strcmp(val, "cdrom"))
            d->is_cdrom = true;
        else if (!strcmp(val, "disk"))
            d->is_cdrom = false;
        else {
            *eq = '=';
            xl_err(xp, tok, "unknown value for type");
        }
    } else if (!strcmp(tok, "access")) {
        set_access(xp, val);
    } else if (!strcmp(tok, "backend")) {
        save_string(xp, "backend", &d->backend_domname, val);
    } else if (!strcmp(tok, "backendtype")) {
        set_backendtype(xp, val);
    } else if (!strcmp(tok, "specification")) {
        set_specification(xp, val);
    } else if (!strcmp(tok, "vdev")) {
        save_string(xp, "vdev", &d->vdev, val);
    } else if (!strcmp(tok, "script")) {
        save_string(xp, "script", &d->script, val);
    } else if (!strcmp(tok, "grant_usage") && (!strcmp(val, "0") || !strcmp(val, "1"))) {
        /* accepted; the emulated path has no grants */
    } else if (word_in(tok, strlen(tok), ignored, ARRAY_SIZE(ignored))) {
        /* COLO settings: accepted and unused */
    } else {
        bool keyword = islower((unsigned char)tok[0]);

        for (const char *c = tok; *c; c++)
            if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) && *c != '-')
                keyword = false;
        *eq = '=';
        xl_err(xp, tok, keyword ? "unknown parameter" : "bad disk syntax");
        return keyword;
    }
    return true;
}

static void parse_part(struct xl_parse *xp, const char *part)
{
    char *buf = strdup(part), *p = buf;

    xp->spec = part;
    while (*p && !xp->err) {
        char *tok, *comma;
        int n;

        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        if (!strncmp(p, "target=", 7)) {
            size_t len = strlen(p + 7);

            if (len && p[7 + len - 1] == ',')
                p[7 + len - 1] = 0;
            save_string(xp, "target", &xp->disk->target, p + 7);
            break;
        }
        n = depr_prefix(xp, p);
        if (n < 0)
            break;
        if (n > 0) {
            p += n;
            continue;
        }
        tok = p;
        comma = strchr(p, ',');
        if (comma) {
            *comma = 0;
            p = comma + 1;
        } else {
            p += strlen(p);
        }
        if (strchr(tok, '=')) {
            if (!key_value(xp, tok))
                break;
        } else if (!strcmp(tok, "cdrom")) {
            xp->disk->is_cdrom = true;
        } else if (!strcmp(tok, "discard") || !strcmp(tok, "no-discard")) {
            xp->disk->discard_enable = !strcmp(tok, "discard");
        } else if (!strcmp(tok, "direct-io-safe") || !strcmp(tok, "colo") ||
                   !strcmp(tok, "no-colo") || !strcmp(tok, "trusted") ||
                   !strcmp(tok, "untrusted")) {
            /* flags with no meaning for an emulated disk */
        } else if (!positional(xp, tok)) {
            break;
        }
    }
    free(buf);
}

int xen_xl_disk_parse(const char *const *parts, int nparts, const char *source,
                      struct xen_xl_disk *disk, struct error **errp)
{
    struct xl_parse xp = { .disk = disk, .source = source, .spec = "" };

    memset(disk, 0, sizeof(*disk));
    disk->readwrite = true;
    disk->discard_enable = -1;
    for (int i = 0; i < nparts && !xp.err; i++)
        parse_part(&xp, parts[i]);
    if (!xp.err) {
        if (!disk->format)
            disk->format = "raw";
        if (disk->is_cdrom) {
            disk->removable = true;
            disk->readwrite = false;
            if (!disk->target || !*disk->target)
                disk->format = "empty";
        }
        if (!disk->vdev)
            xl_err(&xp, NULL, "no vdev specified");
        else if (!disk->target && !disk->removable)
            xl_err(&xp, NULL, "no target specified (and device not removable)");
    }
    if (xp.err) {
        xen_xl_disk_free(disk);
        error_propagate(errp, xp.err);
        return -EINVAL;
    }
    return 0;
}

void xen_xl_disk_free(struct xen_xl_disk *disk)
{
    free(disk->target);
    free(disk->vdev);
    free(disk->script);
    free(disk->backend_domname);
    memset(disk, 0, sizeof(*disk));
}
