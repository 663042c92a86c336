/*
 * util/opts.c — QEMU-style option strings ("key=value,key2=value2") split
 * into key/value lists, scalar parsers, and a table-driven fill of typed
 * option structs. Command-line and config strings become structs here.
 */
#include "util/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Splitting                                                           */
/* ------------------------------------------------------------------ */

void kvlist_free(struct kvlist *l)
{
    if (!l) {
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].key);
        free(l->v[i].value);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Append, taking ownership of key and value (freed on failure). */
static int kvlist_push(struct kvlist *l, char *key, char *value)
{
    struct kv *v = realloc(l->v, (l->n + 1) * sizeof(*v));
    if (!v) {
        free(key);
        free(value);
        return -ENOMEM;
    }
    l->v = v;
    l->v[l->n++] = (struct kv){ key, value };
    return 0;
}

/* Read a value up to a lone ',' or the end; ",," yields ','. */
static char *read_value(const char **pp)
{
    const char *p = *pp;
    size_t len = 0;
    for (const char *q = p; *q; q++, len++) {
        if (*q == ',') {
            if (q[1] != ',') {
                break;
            }
            q++;
        }
    }
    char *out = malloc(len + 1);
    if (!out) {
        return NULL;
    }
    size_t i = 0;
    while (*p) {
        if (*p == ',') {
            if (p[1] != ',') {
                break;
            }
            p++;
        }
        out[i++] = *p++;
    }
    out[i] = '\0';
    *pp = p;
    return out;
}

int opts_split(const char *str, const char *implied_key, struct kvlist *out,
               struct error **errp)
{
    const char *p = str;
    bool first = true;
    int ret;

    out->v = NULL;
    out->n = 0;
    while (*p) {
        size_t klen = strcspn(p, "=,");
        char *key, *value;
        if (p[klen] != '=') {
            if (!first || !implied_key) {
                error_setg(errp, "Expected '=' after parameter '%.*s'", (int)klen, p);
                ret = -EINVAL;
                goto out_free_list;
            }
            key = strdup(implied_key);
            value = read_value(&p);
        } else {
            if (klen == 0) {
                error_setg(errp, "Expected parameter name before '='");
                ret = -EINVAL;
                goto out_free_list;
            }
            key = strndup(p, klen);
            p += klen + 1;
            value = read_value(&p);
        }
        if (!key || !value) {
            free(key);
            free(value);
            ret = -ENOMEM;
            error_setg_errno(errp, ENOMEM, "Cannot parse options");
            goto out_free_list;
        }
        ret = kvlist_push(out, key, value);
        if (ret < 0) {
            error_setg_errno(errp, ENOMEM, "Cannot parse options");
            goto out_free_list;
        }
        if (*p == ',') {
            p++;
        }
        first = false;
    }
    return 0;

out_free_list:
    kvlist_free(out);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Scalars                                                             */
/* ------------------------------------------------------------------ */

int parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "on") || !strcmp(s, "true") || !strcmp(s, "yes")) {
        *out = true;
        return 0;
    }
    if (!strcmp(s, "off") || !strcmp(s, "false") || !strcmp(s, "no")) {
        *out = false;
        return 0;
    }
    return -EINVAL;
}

/* strtoull without its leniencies: no whitespace, no sign, all consumed
 * unless `end` is given. */
static int strict_strtou64(const char *s, int base, const char **end, uint64_t *out)
{
    if (!isdigit((unsigned char)s[0])) {
        return -EINVAL;
    }
    char *e;
    errno = 0;
    unsigned long long v = strtoull(s, &e, base);
    if (errno == ERANGE) {
        return -ERANGE;
    }
    if (e == s || (!end && *e)) {
        return -EINVAL;
    }
    if (end) {
        *end = e;
    }
    *out = v;
    return 0;
}

int parse_uint(const char *s, uint64_t *out)
{
    return strict_strtou64(s, 0, NULL, out);
}

static uint64_t suffix_mul(char c)
{
    switch (toupper((unsigned char)c)) {
    case 'B': return 1;
    case 'K': return 1ull << 10;
    case 'M': return 1ull << 20;
    case 'G': return 1ull << 30;
    case 'T': return 1ull << 40;
    case 'P': return 1ull << 50;
    case 'E': return 1ull << 60;
    default: return 0;
    }
}

/*
 * Sizes as QEMU reads them: a decimal integer, optionally a fraction, then
 * an optional suffix (case-insensitive); a fraction needs a suffix above B.
 * Hexadecimal "0x..." is allowed without fraction or suffix. The result is
 * exact, rounding half a byte up.
 */
int parse_size(const char *s, uint64_t *out)
{
    const char *p;
    uint64_t val;
    int ret = strict_strtou64(s, 10, &p, &val);
    if (ret < 0) {
        return ret;
    }
    if (val == 0 && (*p == 'x' || *p == 'X')) {
        ret = strict_strtou64(s, 16, &p, &val);
        if (ret < 0) {
            return ret;
        }
        if (*p) {
            return -EINVAL;
        }
        *out = val;
        return 0;
    }

    /* Fraction as 64-bit fixed point: frac / 2^64. */
    uint64_t frac = 0;
    if (*p == '.') {
        p++;
        size_t ndig = strspn(p, "0123456789");
        if (ndig > 0) {
            /* Digits past the 40th cannot change a 64-bit fraction. */
            size_t keep = MIN(ndig, 40);
            char buf[44];
            buf[0] = '0';
            buf[1] = '.';
            memcpy(buf + 2, p, keep);
            buf[keep + 2] = '\0';
            long double f = strtold(buf, NULL) * 18446744073709551616.0L;
            frac = f >= 18446744073709551615.0L ? UINT64_MAX : (uint64_t)f;
            p += ndig;
        }
    }

    uint64_t mul = 1;
    if (*p) {
        mul = suffix_mul(*p);
        if (mul == 0 || p[1]) {
            return -EINVAL;
        }
    }
    if (mul == 1 && frac != 0) {
        return -EINVAL;
    }
    unsigned __int128 total = (unsigned __int128)val * mul;
    unsigned __int128 part = (unsigned __int128)frac * mul;
    total += (part + ((unsigned __int128)1 << 63)) >> 64;
    if (total > UINT64_MAX) {
        return -ERANGE;
    }
    *out = (uint64_t)total;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Typed structs                                                       */
/* ------------------------------------------------------------------ */

static const struct opt_field *find_field(const struct opt_field *fields,
                                          const char *name)
{
    for (const struct opt_field *f = fields; f->name; f++) {
        if (!strcmp(f->name, name)) {
            return f;
        }
    }
    return NULL;
}

/* "A, B, C" for the enum error message. */
static char *join_choices(const char *const *choices)
{
    size_t len = 1;
    for (const char *const *c = choices; *c; c++) {
        len += strlen(*c) + 2;
    }
    char *s = malloc(len);
    if (!s) {
        return NULL;
    }
    s[0] = '\0';
    for (const char *const *c = choices; *c; c++) {
        if (c != choices) {
            strcat(s, ", ");
        }
        strcat(s, *c);
    }
    return s;
}

static int apply_one(const struct opt_field *f, const char *value, void *out,
                     struct error **errp)
{
    char *base = out;
    int ret;

    switch (f->type) {
    case OPT_STRING: {
        char *copy = strdup(value);
        if (!copy) {
            error_setg_errno(errp, ENOMEM, "Parameter '%s'", f->name);
            return -ENOMEM;
        }
        char **slot = (char **)(base + f->offset);
        free(*slot);
        *slot = copy;
        break;
    }
    case OPT_BOOL:
        ret = parse_bool(value, (bool *)(base + f->offset));
        if (ret < 0) {
            error_setg(errp, "Parameter '%s' expects 'on' or 'off'", f->name);
            return -EINVAL;
        }
        break;
    case OPT_SIZE: {
        uint64_t v;
        if (parse_size(value, &v) < 0) {
            error_setg(errp, "Parameter '%s' expects a size (e.g. 64K, 1G): '%s'",
                       f->name, value);
            return -EINVAL;
        }
        *(uint64_t *)(base + f->offset) = v;
        break;
    }
    case OPT_UINT: {
        uint64_t v;
        if (parse_uint(value, &v) < 0) {
            error_setg(errp, "Parameter '%s' expects a number: '%s'", f->name, value);
            return -EINVAL;
        }
        *(uint64_t *)(base + f->offset) = v;
        break;
    }
    case OPT_ENUM:
        for (int i = 0; f->choices[i]; i++) {
            if (!strcmp(f->choices[i], value)) {
                *(int *)(base + f->offset) = i;
                goto out_set;
            }
        }
        char *list = join_choices(f->choices);
        error_setg(errp, "Parameter '%s' expects one of %s: '%s'", f->name,
                   list ? list : "?", value);
        free(list);
        return -EINVAL;
    }
out_set:
    if (f->set_offset != OPT_NO_SET) {
        *(bool *)(base + f->set_offset) = true;
    }
    return 0;
}

/*
 * Fields are applied in the order given; on failure the fields applied so
 * far stay in *out (strings owned by it), so opts_free is always the
 * cleanup.
 */
int opts_apply(const struct kvlist *kv, const struct opt_field *fields,
               void *out, struct kvlist *rest, struct error **errp)
{
    size_t nfields = 0;
    while (fields[nfields].name) {
        nfields++;
    }
    bool seen[nfields + 1];
    memset(seen, 0, sizeof(seen));
    if (rest) {
        rest->v = NULL;
        rest->n = 0;
    }
    int ret = 0;

    for (size_t i = 0; i < kv->n; i++) {
        const char *key = kv->v[i].key;
        const char *value = kv->v[i].value;
        const struct opt_field *f = find_field(fields, key);
        if (!f) {
            if (!rest) {
                error_setg(errp, "Invalid parameter '%s'", key);
                ret = -EINVAL;
                goto out_free_rest;
            }
            char *k = strdup(key), *v = strdup(value);
            if (!k || !v || kvlist_push(rest, k, v) < 0) {
                if (!k || !v) {
                    free(k);
                    free(v);
                }
                error_setg_errno(errp, ENOMEM, "Cannot parse options");
                ret = -ENOMEM;
                goto out_free_rest;
            }
            continue;
        }
        size_t idx = f - fields;
        if (seen[idx]) {
            error_setg(errp, "Parameter '%s' given twice", key);
            ret = -EINVAL;
            goto out_free_rest;
        }
        seen[idx] = true;
        ret = apply_one(f, value, out, errp);
        if (ret < 0) {
            goto out_free_rest;
        }
    }
    return 0;

out_free_rest:
    kvlist_free(rest);
    return ret;
}

int opts_parse(const char *str, const char *implied_key,
               const struct opt_field *fields, void *out, struct error **errp)
{
    struct kvlist kv;
    int ret = opts_split(str, implied_key, &kv, errp);
    if (ret < 0) {
        return ret;
    }
    ret = opts_apply(&kv, fields, out, NULL, errp);
    kvlist_free(&kv);
    return ret;
}

void opts_free(const struct opt_field *fields, void *out)
{
    char *base = out;
    for (const struct opt_field *f = fields; f->name; f++) {
        if (f->type == OPT_STRING) {
            char **slot = (char **)(base + f->offset);
            free(*slot);
            *slot = NULL;
        }
    }
}
