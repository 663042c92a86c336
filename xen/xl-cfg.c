/*
 * xen/xl-cfg.c — xl domain config files (xl.cfg(5) syntax: `key = value`
 * with "strings", 'strings', numbers and [lists], # comments) read into
 * typed settings, and the settings diskdm-xl acts on (name, disk, the
 * device model's path and arguments) picked out of them.
 */
#include "xen/xen.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reader state over one text. */
struct cfg_lex {
    const char *source;
    const char *p, *end;
    int line, col;          /* of *p, both from 1; col counts bytes */
    struct error *err;
};

static void lex_err_at(struct cfg_lex *lx, int line, int col, const char *fmt, ...)
    PRINTF_FMT(4, 5);
static void lex_err_at(struct cfg_lex *lx, int line, int col, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    if (lx->err)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    error_setg(&lx->err, "%s:%d:%d: config parsing error: %s", lx->source, line,
               col, msg);
    lx->err->errnum = EINVAL;
}

static int peek(const struct cfg_lex *lx)
{
    return lx->p < lx->end ? (unsigned char)*lx->p : -1;
}

static void advance(struct cfg_lex *lx)
{
    if (*lx->p == '\n') {
        lx->line++;
        lx->col = 1;
    } else {
        lx->col++;
    }
    lx->p++;
}

/* Blanks and comments; newlines too when `newlines` (inside a list). */
static void skip_blanks(struct cfg_lex *lx, bool newlines)
{
    for (;;) {
        int c = peek(lx);

        if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n')) {
            advance(lx);
        } else if (c == '#') {
            while (peek(lx) != -1 && peek(lx) != '\n')
                advance(lx);
        } else {
            return;
        }
    }
}

static bool is_ident_start(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident(int c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9') || c == '.';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * A quoted string at lx->p, either quote. Backslash escapes as in C
 * (\n \t \r \\ \" \' \xHH and octal); a string ends on its line. NUL bytes
 * are refused: the value becomes a C string and a xenstore value.
 */
static char *read_string(struct cfg_lex *lx)
{
    int q = peek(lx), line = lx->line, col = lx->col;
    size_t cap = 64, n = 0;
    char *s = malloc(cap);

    advance(lx);
    for (;;) {
        int c = peek(lx), ecol = lx->col, v;

        if (c == -1 || c == '\n') {
            lex_err_at(lx, line, col, "unterminated string");
            goto out_free;
        }
        advance(lx);
        if (c == q)
            break;
        if (c == 0) {
            lex_err_at(lx, lx->line, ecol, "a NUL byte in a string");
            goto out_free;
        }
        if (c == '\\') {
            int e = peek(lx);

            if (e != -1 && e != '\n')
                advance(lx);
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case '\\': case '"': case '\'': c = e; break;
            case 'x':
                if (hexval(peek(lx)) < 0) {
                    lex_err_at(lx, lx->line, ecol, "invalid escape sequence '\\x'");
                    goto out_free;
                }
                v = 0;
                for (int k = 0; k < 2 && hexval(peek(lx)) >= 0; k++) {
                    v = v * 16 + hexval(peek(lx));
                    advance(lx);
                }
                c = v;
                break;
            default:
                if (e >= '0' && e <= '7') {
                    v = e - '0';
                    for (int k = 0; k < 2 && peek(lx) >= '0' && peek(lx) <= '7'; k++) {
                        v = v * 8 + peek(lx) - '0';
                        advance(lx);
                    }
                    c = v & 0xff;
                    break;
                }
                if (e == -1 || e == '\n') {
                    lex_err_at(lx, line, col, "unterminated string");
                } else if (e >= 0x21 && e < 0x7f) {
                    lex_err_at(lx, lx->line, ecol, "invalid escape sequence '\\%c'", e);
                } else {
                    lex_err_at(lx, lx->line, ecol, "invalid escape sequence");
                }
                goto out_free;
            }
            if (c == 0) {
                lex_err_at(lx, lx->line, ecol, "a NUL byte in a string");
                goto out_free;
            }
        }
        if (n + 2 > cap)
            s = realloc(s, cap *= 2);
        s[n++] = (char)c;
    }
    s[n] = 0;
    return s;

out_free:
    free(s);
    return NULL;
}

/* A number: a digit, then digits, letters, '.' (xl keeps 0x10, 1.5, 512M). */
static char *read_number(struct cfg_lex *lx)
{
    const char *start = lx->p;

    while (is_ident(peek(lx)))
        advance(lx);
    return strndup(start, (size_t)(lx->p - start));
}

/* A string or a number; false with lx->err set if there is none. */
static bool read_atom(struct cfg_lex *lx, struct xen_cfg_item *it, const char *after)
{
    int c = peek(lx);

    it->line = lx->line;
    it->col = lx->col;
    if (c == '"' || c == '\'') {
        it->is_number = false;
        it->str = read_string(lx);
        return it->str != NULL;
    }
    if (c >= '0' && c <= '9') {
        it->is_number = true;
        it->str = read_number(lx);
        return true;
    }
    if (c == '[')
        lex_err_at(lx, lx->line, lx->col, "a list inside a list");
    else if (c == -1 || c == '\n' || c == ';')
        lex_err_at(lx, lx->line, lx->col, "expected a value after %s", after);
    else if (is_ident(c) || c == '/' || c == '-')
        /* most likely a bare word meant as a string */
        lex_err_at(lx, lx->line, lx->col, "expected a value after %s, not '%c' "
                   "(strings need quotes)", after, c);
    else
        lex_err_at(lx, lx->line, lx->col, "expected a value after %s", after);
    return false;
}

static void value_free(struct xen_cfg_setting *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->items[i].str);
    free(s->items);
    s->items = NULL;
    s->n = 0;
}

static void push_item(struct xen_cfg_setting *s, const struct xen_cfg_item *it)
{
    s->items = realloc(s->items, (s->n + 1) * sizeof(*s->items));
    s->items[s->n++] = *it;
}

/* [ atom, atom, ... ] over any number of lines, a trailing comma allowed. */
static bool read_list(struct cfg_lex *lx, struct xen_cfg_setting *s)
{
    int line = lx->line, col = lx->col;

    advance(lx);            /* '[' */
    for (;;) {
        struct xen_cfg_item it;
        int c;

        skip_blanks(lx, true);
        if (peek(lx) == ']')
            break;
        if (peek(lx) == -1) {
            lex_err_at(lx, line, col, "unterminated list (no ']')");
            return false;
        }
        if (!read_atom(lx, &it, s->n ? "','" : "'['"))
            return false;
        push_item(s, &it);
        skip_blanks(lx, true);
        c = peek(lx);
        if (c == ',') {
            advance(lx);
        } else if (c == -1) {
            lex_err_at(lx, line, col, "unterminated list (no ']')");
            return false;
        } else if (c != ']') {
            lex_err_at(lx, lx->line, lx->col, "expected ',' or ']' in the list");
            return false;
        }
    }
    advance(lx);            /* ']' */
    return true;
}

/* One `key = value` at lx->p (an identifier start). */
static bool read_setting(struct cfg_lex *lx, struct xen_cfg_setting *s)
{
    const char *start = lx->p;
    char after[80];

    memset(s, 0, sizeof(*s));
    s->line = lx->line;
    s->col = lx->col;
    while (is_ident(peek(lx)))
        advance(lx);
    s->key = strndup(start, (size_t)(lx->p - start));
    skip_blanks(lx, false);
    if (peek(lx) != '=') {
        lex_err_at(lx, lx->line, lx->col, "expected '=' after '%s'", s->key);
        return false;
    }
    advance(lx);
    skip_blanks(lx, false);
    s->vline = lx->line;
    s->vcol = lx->col;
    if (peek(lx) == '[') {
        s->is_list = true;
        if (!read_list(lx, s))
            return false;
    } else {
        struct xen_cfg_item it;

        snprintf(after, sizeof(after), "'%s ='", s->key);
        if (!read_atom(lx, &it, after))
            return false;
        push_item(s, &it);
    }
    skip_blanks(lx, false);
    if (peek(lx) != -1 && peek(lx) != '\n' && peek(lx) != ';') {
        lex_err_at(lx, lx->line, lx->col, "expected the end of the line after "
                   "the value of '%s'", s->key);
        return false;
    }
    return true;
}

static void setting_free(struct xen_cfg_setting *s)
{
    value_free(s);
    free(s->key);
    free(s->source);
}

int xen_cfg_parse(struct xen_cfg *cfg, const char *source, const char *text,
                  size_t len, struct error **errp)
{
    struct cfg_lex lx = { .source = source, .p = text, .end = text + len,
                          .line = 1, .col = 1 };
    size_t first = cfg->n;

    for (;;) {
        struct xen_cfg_setting s;
        int c;

        skip_blanks(&lx, false);
        c = peek(&lx);
        if (c == -1)
            break;
        if (c == '\n' || c == ';') {
            advance(&lx);
            continue;
        }
        if (!is_ident_start(c)) {
            if (c >= 0x21 && c < 0x7f)
                lex_err_at(&lx, lx.line, lx.col, "expected a setting name, not '%c'", c);
            else
                lex_err_at(&lx, lx.line, lx.col, "expected a setting name");
            break;
        }
        if (!read_setting(&lx, &s)) {
            setting_free(&s);
            break;
        }
        s.source = strdup(source);
        cfg->settings = realloc(cfg->settings, (cfg->n + 1) * sizeof(*cfg->settings));
        cfg->settings[cfg->n++] = s;
    }
    if (lx.err) {
        /* all or nothing: a text that fails adds no settings */
        while (cfg->n > first)
            setting_free(&cfg->settings[--cfg->n]);
        error_propagate(errp, lx.err);
        return -EINVAL;
    }
    return 0;
}

const struct xen_cfg_setting *xen_cfg_find(const struct xen_cfg *cfg, const char *key)
{
    for (size_t i = cfg->n; i-- > 0;)
        if (!strcmp(cfg->settings[i].key, key))
            return &cfg->settings[i];
    return NULL;
}

void xen_cfg_free(struct xen_cfg *cfg)
{
    for (size_t i = 0; i < cfg->n; i++)
        setting_free(&cfg->settings[i]);
    free(cfg->settings);
    memset(cfg, 0, sizeof(*cfg));
}

/* ------------------------------------------------------------------ */
/* The settings diskdm-xl acts on                                       */
/* ------------------------------------------------------------------ */

static void type_err(struct error **errp, const struct xen_cfg_setting *s,
                     int line, int col, const char *what)
{
    error_setg(errp, "%s:%d:%d: config parsing error: '%s' %s", s->source, line,
               col, s->key, what);
    (*errp)->errnum = EINVAL;
}

/* A single string. */
static int get_string(const struct xen_cfg_setting *s, char **out,
                      struct error **errp)
{
    if (s->is_list || s->items[0].is_number) {
        type_err(errp, s, s->vline, s->vcol, "must be a string");
        return -EINVAL;
    }
    free(*out);
    *out = strdup(s->items[0].str);
    return 0;
}

/* A list of strings, appended to *v. */
static int get_string_list(const struct xen_cfg_setting *s, char ***v, size_t *n,
                           struct error **errp)
{
    if (!s->is_list) {
        type_err(errp, s, s->vline, s->vcol, "must be a list of strings");
        return -EINVAL;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->items[i].is_number) {
            type_err(errp, s, s->items[i].line, s->items[i].col,
                     "must be a list of strings");
            return -EINVAL;
        }
    }
    *v = realloc(*v, (*n + s->n + 1) * sizeof(**v));
    for (size_t i = 0; i < s->n; i++)
        (*v)[(*n)++] = strdup(s->items[i].str);
    (*v)[*n] = NULL;
    return 0;
}

static int get_disks(const struct xen_cfg_setting *s, struct xen_xl_domain *d,
                     struct error **errp)
{
    if (!s->is_list) {
        type_err(errp, s, s->vline, s->vcol, "must be a list of disk specs");
        return -EINVAL;
    }
    d->disks = calloc(s->n ? s->n : 1, sizeof(*d->disks));
    d->disk_lines = calloc(s->n ? s->n : 1, sizeof(*d->disk_lines));
    for (size_t i = 0; i < s->n; i++) {
        const struct xen_cfg_item *it = &s->items[i];
        const char *part = it->str;
        char where[300];
        int r;

        if (it->is_number) {
            type_err(errp, s, it->line, it->col, "must be a list of disk specs");
            return -EINVAL;
        }
        snprintf(where, sizeof(where), "%s:%d:%d", s->source, it->line, it->col);
        r = xen_xl_disk_parse(&part, 1, where, &d->disks[i], errp);
        if (r < 0)
            return r;
        d->disk_lines[i] = strdup(where);
        d->ndisks++;
    }
    return 0;
}

int xen_xl_domain_from_cfg(const struct xen_cfg *cfg, struct xen_xl_domain *d,
                           struct error **errp)
{
    static const char *const dm_arg_keys[] = { "device_model_args",
                                               "device_model_args_hvm" };
    const struct xen_cfg_setting *s;
    int r = 0;

    memset(d, 0, sizeof(*d));
    if ((s = xen_cfg_find(cfg, "name")) && (r = get_string(s, &d->name, errp)) < 0)
        goto out_free;
    if ((s = xen_cfg_find(cfg, "disk")) && (r = get_disks(s, d, errp)) < 0)
        goto out_free;
    for (size_t i = 0; i < ARRAY_SIZE(dm_arg_keys); i++)
        if ((s = xen_cfg_find(cfg, dm_arg_keys[i])) &&
            (r = get_string_list(s, &d->dm_args, &d->ndm_args, errp)) < 0)
            goto out_free;
    if ((s = xen_cfg_find(cfg, "device_model_override")) &&
        (r = get_string(s, &d->dm_override, errp)) < 0)
        goto out_free;

    /* everything else is about memory, CPUs, network, boot...: noted once */
    for (size_t i = 0; i < cfg->n; i++) {
        const char *k = cfg->settings[i].key;
        bool used = !strcmp(k, "name") || !strcmp(k, "disk") ||
                    !strcmp(k, "device_model_override");
        bool seen = false;

        for (size_t j = 0; j < ARRAY_SIZE(dm_arg_keys); j++)
            used = used || !strcmp(k, dm_arg_keys[j]);
        for (size_t j = 0; j < d->nignored; j++)
            seen = seen || !strcmp(k, d->ignored[j]);
        if (used || seen)
            continue;
        d->ignored = realloc(d->ignored, (d->nignored + 1) * sizeof(*d->ignored));
        d->ignored[d->nignored++] = strdup(k);
    }
    return 0;

out_free:
    xen_xl_domain_free(d);
    return r;
}

void xen_xl_domain_free(struct xen_xl_domain *d)
{
    for (size_t i = 0; i < d->ndisks; i++) {
        xen_xl_disk_free(&d->disks[i]);
        free(d->disk_lines[i]);
    }
    free(d->disks);
    free(d->disk_lines);
    for (size_t i = 0; i < d->ndm_args; i++)
        free(d->dm_args[i]);
    free(d->dm_args);
    for (size_t i = 0; i < d->nignored; i++)
        free(d->ignored[i]);
    free(d->ignored);
    free(d->name);
    free(d->dm_override);
    memset(d, 0, sizeof(*d));
}
