/*
 * tools/trace/parse.c — the trace syntax of diskdm-trace: protocol lines,
 * comments and the replayer directives (!disk, !poll, !pio, !image,
 * !mask, !raw, !window, !target, !args), parsed once into typed steps.
 */
#include "tools/trace/trace.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

void *trace_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(1);
    }
    return p;
}

char *trace_xstrdup(const char *s)
{
    return strcpy(trace_xrealloc(NULL, strlen(s) + 1), s);
}

char *trace_xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(1);
    }
    va_end(ap);
    return s;
}

void trace_strv_push(char ***v, size_t *n, char *s)
{
    *v = trace_xrealloc(*v, (*n + 1) * sizeof(**v));
    (*v)[(*n)++] = s;
}

/* Number with base 0, the whole string. */
int trace_parse_num(const char *s, uint64_t *out)
{
    char *end;
    if (!*s || *s == '-' || *s == '+') {
        return -EINVAL;
    }
    errno = 0;
    *out = strtoull(s, &end, 0);
    return (errno || *end) ? -EINVAL : 0;
}

/* Sizes for !disk: a number with an optional K/M/G suffix (1024-based). */
static int parse_disk_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    uint64_t v = strtoull(s, &end, 0);
    if (errno || end == s) {
        return -EINVAL;
    }
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    }
    if (*end || v > (UINT64_MAX >> shift)) {
        return -EINVAL;
    }
    *out = v << shift;
    return 0;
}

static int parse_fail(const struct trace *t, int line, const char *fmt, ...)
    PRINTF_FMT(3, 4);
static int parse_fail(const struct trace *t, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROG ": %s:%d: ", t->path, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return -EINVAL;
}

/* ------------------------------------------------------------------ */
/* Trace parsing                                                       */
/* ------------------------------------------------------------------ */

/* "!raw" takes one C-style quoted string: \n \r \t \\ \" \xHH. */
static int parse_quoted(const char *s, char **out, size_t *len)
{
    size_t n = 0;
    char *buf = trace_xrealloc(NULL, strlen(s) + 1);
    if (*s++ != '"') {
        goto out_free;
    }
    while (*s && *s != '"') {
        char c = *s++;
        if (c == '\\') {
            c = *s++;
            switch (c) {
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case '\\': case '"': break;
            case 'x': {
                char hex[3] = { s[0], s[0] ? s[1] : 0, 0 };
                char *end;
                c = (char)strtoul(hex, &end, 16);
                if (end != hex + 2) {
                    goto out_free;
                }
                s += 2;
                break;
            }
            default:
                goto out_free;
            }
        }
        buf[n++] = c;
    }
    if (*s != '"' || s[1]) {
        goto out_free;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
out_free:
    free(buf);
    return -EINVAL;
}

/* "20-39,46-53,60" */
static int parse_ranges(const char *s, struct step *st)
{
    char *copy = trace_xstrdup(s), *save = NULL;
    int ret = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        uint64_t a, b;
        char *dash = strchr(tok, '-');
        if (dash) {
            *dash = 0;
        }
        if (trace_parse_num(tok, &a) || (dash ? trace_parse_num(dash + 1, &b) : (b = a, 0)) ||
            b < a) {
            ret = -EINVAL;
            break;
        }
        st->ranges = trace_xrealloc(st->ranges, (st->nranges + 1) * sizeof(*st->ranges));
        st->ranges[st->nranges++] = (struct byte_range){ a, b };
    }
    free(copy);
    return ret;
}

static int parse_disk(struct trace *t, int line, const char *opts)
{
    struct trace_disk d = { .pattern = PATTERN_SEQ };
    char *copy = trace_xstrdup(opts), *save = NULL;
    char *pass = trace_xstrdup("");
    int ret = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (!strncmp(tok, "size=", 5)) {
            if (parse_disk_size(tok + 5, &d.size) || d.size == 0) {
                ret = parse_fail(t, line, "bad disk size '%s'", tok + 5);
                break;
            }
        } else if (!strncmp(tok, "pattern=", 8)) {
            const char *p = tok + 8;
            uint64_t v;
            if (!strcmp(p, "seq")) {
                d.pattern = PATTERN_SEQ;
            } else if (!strcmp(p, "zero")) {
                d.pattern = PATTERN_ZERO;
            } else if (!trace_parse_num(p, &v) && v <= 0xff) {
                d.pattern = PATTERN_FILL;
                d.fill = v;
            } else {
                ret = parse_fail(t, line, "bad pattern '%s' (seq, zero or a byte value)", p);
                break;
            }
        } else if (!strncmp(tok, "file=", 5)) {
            ret = parse_fail(t, line, "!disk creates its own image; no file=");
            break;
        } else {
            char *n = trace_xasprintf("%s%s%s", pass, *pass ? "," : "", tok);
            free(pass);
            pass = n;
        }
    }
    free(copy);
    if (ret) {
        free(pass);
        return ret;
    }
    d.drive_opts = pass;
    t->disks = trace_xrealloc(t->disks, (t->ndisks + 1) * sizeof(*t->disks));
    t->disks[t->ndisks++] = d;
    return 0;
}

static unsigned width_of(const char *op, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(op, prefix, n) || strlen(op) != n + 1) {
        return 0;
    }
    switch (op[n]) {
    case 'b': return 1;
    case 'w': return 2;
    case 'l': return 4;
    }
    return 0;
}

/* "!poll CMD mask M ==|!= V [timeout MS]" */
static int parse_poll(struct trace *t, struct step *st, const char *args)
{
    const char *m = strstr(args, " mask ");
    char op[3], extra[16];
    char mask[32], val[32];
    unsigned ms = 2000;
    int n;
    if (!m) {
        return parse_fail(t, st->line, "!poll needs 'mask M == V'");
    }
    n = sscanf(m, " mask %31s %2s %31s %15s %u", mask, op, val, extra, &ms);
    if (n != 3 && !(n == 5 && !strcmp(extra, "timeout"))) {
        return parse_fail(t, st->line, "!poll: expected 'CMD mask M ==|!= V [timeout MS]'");
    }
    if (trace_parse_num(mask, &st->poll_mask) || trace_parse_num(val, &st->poll_value) ||
        (strcmp(op, "==") && strcmp(op, "!="))) {
        return parse_fail(t, st->line, "!poll: bad mask, operator or value");
    }
    st->poll_ne = !strcmp(op, "!=");
    st->poll_timeout_ms = ms;
    st->send_len = m - args;
    st->send = strndup(args, st->send_len);
    return 0;
}

/* "!pio inX PORT BYTES" or "!pio outX PORT BYTES fill|ramp V" */
static int parse_pio(struct trace *t, struct step *st, const char *args)
{
    char op[8], port[32], bytes[32], how[8], val[32];
    uint64_t p, b, v = 0;
    int n = sscanf(args, "%7s %31s %31s %7s %31s", op, port, bytes, how, val);
    if (n < 3 || trace_parse_num(port, &p) || p > 0xffff || trace_parse_num(bytes, &b) ||
        b == 0 || b > (1u << 20)) {
        return parse_fail(t, st->line, "!pio: expected 'inX|outX PORT BYTES ...'");
    }
    st->port = p;
    st->bytes = b;
    if ((st->width = width_of(op, "in"))) {
        st->kind = STEP_PIO_IN;
        if (n != 3) {
            return parse_fail(t, st->line, "!pio in: trailing arguments");
        }
    } else if ((st->width = width_of(op, "out"))) {
        st->kind = STEP_PIO_OUT;
        if (n != 5 || (strcmp(how, "fill") && strcmp(how, "ramp")) ||
            trace_parse_num(val, &v) || v > 0xff) {
            return parse_fail(t, st->line, "!pio out: expected 'fill|ramp BYTE'");
        }
        st->ramp = !strcmp(how, "ramp");
        st->value = v;
    } else {
        return parse_fail(t, st->line, "!pio: unknown access '%s'", op);
    }
    if (b % st->width) {
        return parse_fail(t, st->line, "!pio: %" PRIu64 " bytes is not a multiple of the access width", b);
    }
    return 0;
}

/* "!image N unchanged | read OFF LEN | sha256 HEX" */
static int parse_image(struct trace *t, struct step *st, const char *args)
{
    char num[16], what[16], a[80], b[32];
    uint64_t d;
    int n = sscanf(args, "%15s %15s %79s %31s", num, what, a, b);
    if (n < 2 || trace_parse_num(num, &d) || d >= t->ndisks) {
        return parse_fail(t, st->line, "!image: expected the number of a !disk given above");
    }
    st->disk = d;
    if (!strcmp(what, "unchanged") && n == 2) {
        st->kind = STEP_IMAGE_SAME;
    } else if (!strcmp(what, "read") && n == 4 && !trace_parse_num(a, &st->offset) &&
               !trace_parse_num(b, &st->length) && st->length > 0 && st->length <= 65536) {
        st->kind = STEP_IMAGE_READ;
    } else if (!strcmp(what, "sha256") && n == 3 && strlen(a) == 64) {
        st->kind = STEP_IMAGE_SHA256;
        st->sha256 = trace_xstrdup(a);
    } else {
        return parse_fail(t, st->line, "!image: expected 'unchanged', 'read OFF LEN' or 'sha256 HEX'");
    }
    if (!t->disks[d].size) {
        return parse_fail(t, st->line, "!image: disk %" PRIu64 " has no image", d);
    }
    return 0;
}

static void step_free(struct step *st)
{
    free(st->text);
    free(st->send);
    free(st->sha256);
    free(st->ranges);
}

void trace_free(struct trace *t)
{
    for (size_t i = 0; i < t->nsteps; i++) {
        step_free(&t->steps[i]);
    }
    free(t->steps);
    for (size_t i = 0; i < t->ndisks; i++) {
        free(t->disks[i].drive_opts);
        free(t->disks[i].path);
    }
    free(t->disks);
    for (size_t i = 0; i < t->nargs; i++) {
        free(t->args[i]);
    }
    free(t->args);
}

/*
 * Parse a trace from `text`. Lines: blank or '#' comments; '!' directives;
 * anything else is a protocol line sent as written.
 */
int trace_parse(struct trace *t, char *text)
{
    struct step pending = { 0 };    /* masks waiting for their step */
    bool have_mask = false, in_window = false;
    int lineno = 0;
    int ret = 0;
    char *save = NULL;
    /* strtok_r would merge empty lines and lose numbering: split by hand */
    for (char *line = text; line && !ret; line = save) {
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl) {
            *nl = 0;
        } else if (!*line) {
            break;
        }
        lineno++;
        const char *p = line;
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (!*p || *p == '#') {
            continue;
        }
        struct step st = { .line = lineno, .text = trace_xstrdup(p) };
        if (*p != '!') {
            st.kind = STEP_CMD;
            st.send = trace_xstrdup(p);
            st.send_len = strlen(p);
            /* a trailing blank or CR would be invisible in the trace:
             * such lines must be written with !raw */
            size_t n = strlen(p);
            if (p[n - 1] == ' ' || p[n - 1] == '\r' || p[n - 1] == '\t') {
                ret = parse_fail(t, lineno, "trailing whitespace; use !raw \"...\" for such lines");
            }
        } else {
            char word[16];
            int off = 0;
            sscanf(p + 1, "%15s%n", word, &off);
            const char *args = p + 1 + off;
            while (*args == ' ') {
                args++;
            }
            if (!strcmp(word, "target")) {
                if (!strcmp(args, "diskdm")) {
                    t->diskdm_only = true;
                } else if (strcmp(args, "any")) {
                    ret = parse_fail(t, lineno, "!target: 'diskdm' or 'any'");
                }
                step_free(&st);
                continue;
            } else if (!strcmp(word, "disk")) {
                ret = parse_disk(t, lineno, args);
                step_free(&st);
                continue;
            } else if (!strcmp(word, "args")) {
                char *copy = trace_xstrdup(args), *s2 = NULL;
                for (char *a = strtok_r(copy, " \t", &s2); a; a = strtok_r(NULL, " \t", &s2)) {
                    trace_strv_push(&t->args, &t->nargs, trace_xstrdup(a));
                }
                free(copy);
                step_free(&st);
                continue;
            } else if (!strcmp(word, "mask")) {
                char kind[8], spec[256];
                uint64_t bits;
                if (sscanf(args, "%7s %255s", kind, spec) != 2) {
                    ret = parse_fail(t, lineno, "!mask: expected 'bytes RANGES' or 'bits M'");
                } else if (!strcmp(kind, "bytes")) {
                    if (parse_ranges(spec, &pending)) {
                        ret = parse_fail(t, lineno, "!mask bytes: bad range list '%s'", spec);
                    }
                } else if (!strcmp(kind, "bits") && !trace_parse_num(spec, &bits)) {
                    pending.mask_bits |= bits;
                } else {
                    ret = parse_fail(t, lineno, "!mask: expected 'bytes RANGES' or 'bits M'");
                }
                have_mask = true;
                step_free(&st);
                continue;
            } else if (!strcmp(word, "raw")) {
                st.kind = STEP_RAW;
                if (parse_quoted(args, &st.send, &st.send_len) ||
                    memchr(st.send, '\n', st.send_len)) {
                    ret = parse_fail(t, lineno, "!raw: expected one quoted string without \\n");
                }
            } else if (!strcmp(word, "poll")) {
                st.kind = STEP_POLL;
                ret = parse_poll(t, &st, args);
            } else if (!strcmp(word, "window")) {
                if (!strcmp(args, "begin") || !strcmp(args, "end")) {
                    st.kind = !strcmp(args, "begin") ? STEP_WINDOW_BEGIN : STEP_WINDOW_END;
                    if ((st.kind == STEP_WINDOW_BEGIN) == in_window) {
                        ret = parse_fail(t, lineno, "!window %s without %s", args,
                                         in_window ? "an end" : "a begin");
                    }
                    in_window = st.kind == STEP_WINDOW_BEGIN;
                } else {
                    ret = parse_fail(t, lineno, "!window: 'begin' or 'end'");
                }
            } else if (!strcmp(word, "wait")) {
                char what[8], level[8], extra[16];
                unsigned gsi, ms = 2000;
                int n = sscanf(args, "%7s %7s %u %15s %u", what, level, &gsi, extra, &ms);
                st.kind = STEP_WAIT_IRQ;
                st.poll_timeout_ms = ms;
                if ((n != 3 && !(n == 5 && !strcmp(extra, "timeout"))) ||
                    strcmp(what, "irq") || (strcmp(level, "raise") && strcmp(level, "lower"))) {
                    ret = parse_fail(t, lineno, "!wait: expected 'irq raise|lower N [timeout MS]'");
                } else {
                    st.send = trace_xasprintf("IRQ %s %u", level, gsi);
                    st.send_len = strlen(st.send);
                }
            } else if (!strcmp(word, "pio")) {
                ret = parse_pio(t, &st, args);
            } else if (!strcmp(word, "image")) {
                ret = parse_image(t, &st, args);
            } else {
                ret = parse_fail(t, lineno, "unknown directive '!%s'", word);
            }
        }
        if (have_mask && st.kind != STEP_POLL && st.kind != STEP_WINDOW_BEGIN &&
            st.kind != STEP_WINDOW_END && st.kind != STEP_WAIT_IRQ) {
            st.ranges = pending.ranges;
            st.nranges = pending.nranges;
            st.mask_bits = pending.mask_bits;
            pending = (struct step){ 0 };
            have_mask = false;
        }
        t->steps = trace_xrealloc(t->steps, (t->nsteps + 1) * sizeof(*t->steps));
        t->steps[t->nsteps++] = st;
    }
    if (!ret && have_mask) {
        ret = parse_fail(t, lineno, "!mask at the end applies to nothing");
    }
    if (!ret && in_window) {
        ret = parse_fail(t, lineno, "!window begin without an end");
    }
    free(pending.ranges);
    return ret;
}
