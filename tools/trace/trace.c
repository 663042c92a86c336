/*
 * tools/trace/trace.c — diskdm-trace: replays a guest I/O trace (qtest
 * protocol lines plus replayer directives) against `diskdm -qtest stdio` or
 * `qemu-system-x86_64 ... -qtest stdio`, and records or compares the
 * replies. Masks come from the trace (`!mask`) and the expected file (`?`).
 */
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <gnutls/crypto.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROG "diskdm-trace"
#define MAX_DIFFS 25

/* ------------------------------------------------------------------ */
/* The parsed trace                                                    */
/* ------------------------------------------------------------------ */

enum step_kind {
    STEP_CMD,           /* a protocol line, sent verbatim */
    STEP_RAW,           /* !raw "...": any bytes, e.g. malformed lines */
    STEP_POLL,          /* !poll: repeat a read until a condition holds */
    STEP_PIO_IN,        /* !pio inX PORT BYTES: one entry for a data block */
    STEP_PIO_OUT,       /* !pio outX PORT BYTES fill|ramp V */
    STEP_IMAGE_READ,    /* !image N read OFF LEN: bytes of the image file */
    STEP_IMAGE_SAME,    /* !image N unchanged: file still holds its pattern */
    STEP_IMAGE_SHA256,  /* !image N sha256 HEX */
    STEP_WINDOW_BEGIN,  /* !window begin: following steps share one IRQ window */
    STEP_WINDOW_END,    /* !window end */
};

struct byte_range {
    size_t first, last;         /* inclusive */
};

struct step {
    enum step_kind kind;
    int line;                   /* 1-based line in the trace */
    char *text;                 /* the trace line, the step's name in reports */
    char *send;                 /* CMD, RAW, POLL: the bytes sent (no '\n') */
    size_t send_len;
    /* POLL */
    uint64_t poll_mask, poll_value;
    bool poll_ne;
    unsigned poll_timeout_ms;
    /* PIO */
    unsigned width;             /* 1, 2, 4 */
    unsigned port;
    size_t bytes;
    bool ramp;                  /* out: byte i = value + i, else fill */
    uint8_t value;
    /* IMAGE */
    unsigned disk;
    uint64_t offset, length;
    char *sha256;
    /* masks from a preceding !mask directive */
    struct byte_range *ranges;
    size_t nranges;
    uint64_t mask_bits;
};

enum pattern { PATTERN_ZERO, PATTERN_SEQ, PATTERN_FILL };

struct trace_disk {
    char *drive_opts;           /* what goes to -drive besides file= */
    uint64_t size;              /* 0 = no medium */
    enum pattern pattern;
    uint8_t fill;
    char *path;                 /* image file in the work dir */
};

struct trace {
    const char *path;
    bool diskdm_only;
    struct step *steps;
    size_t nsteps;
    struct trace_disk *disks;
    size_t ndisks;
    char **args;                /* !args: extra arguments for the target */
    size_t nargs;
};

/* One compared unit: a step's reply and the IRQ lines in its window. */
struct entry {
    const struct step *step;    /* NULL when read from an expected file */
    int line;
    char *text;
    char **irqs;
    size_t nirqs;
    char *reply;
};

struct entry_list {
    struct entry *v;
    size_t n;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(1);
    }
    return p;
}

static char *xstrdup(const char *s)
{
    return strcpy(xrealloc(NULL, strlen(s) + 1), s);
}

static char *xasprintf(const char *fmt, ...) PRINTF_FMT(1, 2);
static char *xasprintf(const char *fmt, ...)
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

static void strv_push(char ***v, size_t *n, char *s)
{
    *v = xrealloc(*v, (*n + 1) * sizeof(**v));
    (*v)[(*n)++] = s;
}

/* Number with base 0, the whole string. */
static int parse_num(const char *s, uint64_t *out)
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
    char *buf = xrealloc(NULL, strlen(s) + 1);
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
    char *copy = xstrdup(s), *save = NULL;
    int ret = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        uint64_t a, b;
        char *dash = strchr(tok, '-');
        if (dash) {
            *dash = 0;
        }
        if (parse_num(tok, &a) || (dash ? parse_num(dash + 1, &b) : (b = a, 0)) ||
            b < a) {
            ret = -EINVAL;
            break;
        }
        st->ranges = xrealloc(st->ranges, (st->nranges + 1) * sizeof(*st->ranges));
        st->ranges[st->nranges++] = (struct byte_range){ a, b };
    }
    free(copy);
    return ret;
}

static int parse_disk(struct trace *t, int line, const char *opts)
{
    struct trace_disk d = { .pattern = PATTERN_SEQ };
    char *copy = xstrdup(opts), *save = NULL;
    char *pass = xstrdup("");
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
            } else if (!parse_num(p, &v) && v <= 0xff) {
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
            char *n = xasprintf("%s%s%s", pass, *pass ? "," : "", tok);
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
    t->disks = xrealloc(t->disks, (t->ndisks + 1) * sizeof(*t->disks));
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
    if (parse_num(mask, &st->poll_mask) || parse_num(val, &st->poll_value) ||
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
    if (n < 3 || parse_num(port, &p) || p > 0xffff || parse_num(bytes, &b) ||
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
            parse_num(val, &v) || v > 0xff) {
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
    if (n < 2 || parse_num(num, &d) || d >= t->ndisks) {
        return parse_fail(t, st->line, "!image: expected the number of a !disk given above");
    }
    st->disk = d;
    if (!strcmp(what, "unchanged") && n == 2) {
        st->kind = STEP_IMAGE_SAME;
    } else if (!strcmp(what, "read") && n == 4 && !parse_num(a, &st->offset) &&
               !parse_num(b, &st->length) && st->length > 0 && st->length <= 65536) {
        st->kind = STEP_IMAGE_READ;
    } else if (!strcmp(what, "sha256") && n == 3 && strlen(a) == 64) {
        st->kind = STEP_IMAGE_SHA256;
        st->sha256 = xstrdup(a);
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

static void trace_free(struct trace *t)
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
static int trace_parse(struct trace *t, char *text)
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
        struct step st = { .line = lineno, .text = xstrdup(p) };
        if (*p != '!') {
            st.kind = STEP_CMD;
            st.send = xstrdup(p);
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
                char *copy = xstrdup(args), *s2 = NULL;
                for (char *a = strtok_r(copy, " \t", &s2); a; a = strtok_r(NULL, " \t", &s2)) {
                    strv_push(&t->args, &t->nargs, xstrdup(a));
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
                } else if (!strcmp(kind, "bits") && !parse_num(spec, &bits)) {
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
            } else if (!strcmp(word, "pio")) {
                ret = parse_pio(t, &st, args);
            } else if (!strcmp(word, "image")) {
                ret = parse_image(t, &st, args);
            } else {
                ret = parse_fail(t, lineno, "unknown directive '!%s'", word);
            }
        }
        if (have_mask && st.kind != STEP_POLL && st.kind != STEP_WINDOW_BEGIN &&
            st.kind != STEP_WINDOW_END) {
            st.ranges = pending.ranges;
            st.nranges = pending.nranges;
            st.mask_bits = pending.mask_bits;
            pending = (struct step){ 0 };
            have_mask = false;
        }
        t->steps = xrealloc(t->steps, (t->nsteps + 1) * sizeof(*t->steps));
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

/* ------------------------------------------------------------------ */
/* Images                                                              */
/* ------------------------------------------------------------------ */

/* seq: each 512-byte sector starts with its number (le64), then bytes
 * that depend on sector and offset, so misplaced sectors are visible. */
static void pattern_fill(const struct trace_disk *d, uint64_t off, uint8_t *buf,
                         size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint64_t o = off + i, sector = o >> 9;
        unsigned in = o & 511;
        switch (d->pattern) {
        case PATTERN_ZERO: buf[i] = 0; break;
        case PATTERN_FILL: buf[i] = d->fill; break;
        case PATTERN_SEQ:
            buf[i] = in < 8 ? (uint8_t)(sector >> (8 * in))
                            : (uint8_t)(in + sector * 7);
            break;
        }
    }
}

static int disks_create(struct trace *t, const char *dir)
{
    enum { CHUNK = 65536 };
    uint8_t *buf = xrealloc(NULL, CHUNK);
    int ret = 0;
    for (size_t i = 0; i < t->ndisks && !ret; i++) {
        struct trace_disk *d = &t->disks[i];
        if (!d->size) {
            continue;
        }
        d->path = xasprintf("%s/disk%zu.img", dir, i);
        int fd = open(d->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            ret = -errno;
            fprintf(stderr, PROG ": cannot create %s: %s\n", d->path, strerror(errno));
            break;
        }
        for (uint64_t off = 0; off < d->size; off += CHUNK) {
            size_t n = MIN((uint64_t)CHUNK, d->size - off);
            pattern_fill(d, off, buf, n);
            ssize_t w = full_pwrite(fd, buf, n, off);
            if (w < 0) {
                fprintf(stderr, PROG ": cannot write %s: %s\n", d->path, strerror(-w));
                ret = w;
                break;
            }
        }
        close(fd);
    }
    free(buf);
    return ret;
}

static char *hex_encode(const uint8_t *buf, size_t len)
{
    char *s = xrealloc(NULL, 5 + 2 * len + 1);
    strcpy(s, "OK 0x");
    for (size_t i = 0; i < len; i++) {
        sprintf(s + 5 + 2 * i, "%02x", buf[i]);
    }
    return s;
}

/* The reply of an !image step, in the protocol's style. */
static char *image_step(const struct trace *t, const struct step *st)
{
    const struct trace_disk *d = &t->disks[st->disk];
    int fd = open(d->path, O_RDONLY | O_CLOEXEC);
    char *reply = NULL;
    if (fd < 0) {
        return xasprintf("FAIL cannot open image: %s", strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        reply = xasprintf("FAIL cannot stat image: %s", strerror(errno));
        goto out_close;
    }
    switch (st->kind) {
    case STEP_IMAGE_READ: {
        uint8_t *buf = xrealloc(NULL, st->length);
        ssize_t n = full_pread(fd, buf, st->length, st->offset);
        reply = n < 0 ? xasprintf("FAIL read: %s", strerror(-n))
                      : (size_t)n != st->length ? xasprintf("FAIL short read: %zd bytes", n)
                      : hex_encode(buf, st->length);
        free(buf);
        break;
    }
    case STEP_IMAGE_SAME: {
        enum { CHUNK = 65536 };
        uint8_t *want = xrealloc(NULL, CHUNK), *got = xrealloc(NULL, CHUNK);
        if ((uint64_t)sb.st_size != d->size) {
            reply = xasprintf("FAIL image size is %jd, was %" PRIu64, (intmax_t)sb.st_size, d->size);
        }
        for (uint64_t off = 0; !reply && off < d->size; off += CHUNK) {
            size_t n = MIN((uint64_t)CHUNK, d->size - off);
            pattern_fill(d, off, want, n);
            ssize_t r = full_pread(fd, got, n, off);
            if (r != (ssize_t)n) {
                reply = xasprintf("FAIL read at %" PRIu64 " failed", off);
            } else if (memcmp(want, got, n)) {
                size_t i = 0;
                while (want[i] == got[i]) {
                    i++;
                }
                reply = xasprintf("FAIL image changed at offset %" PRIu64, off + i);
            }
        }
        free(want);
        free(got);
        if (!reply) {
            reply = xstrdup("OK");
        }
        break;
    }
    case STEP_IMAGE_SHA256: {
        uint8_t *buf = xrealloc(NULL, sb.st_size);
        uint8_t digest[32];
        char hex[65];
        if (full_pread(fd, buf, sb.st_size, 0) != sb.st_size ||
            gnutls_hash_fast(GNUTLS_DIG_SHA256, buf, sb.st_size, digest) < 0) {
            reply = xstrdup("FAIL cannot hash image");
        } else {
            for (int i = 0; i < 32; i++) {
                sprintf(hex + 2 * i, "%02x", digest[i]);
            }
            reply = !strcmp(hex, st->sha256) ? xstrdup("OK")
                                             : xasprintf("FAIL sha256 is %s", hex);
        }
        free(buf);
        break;
    }
    default:
        abort();
    }
out_close:
    close(fd);
    return reply;
}

/* ------------------------------------------------------------------ */
/* The target process                                                  */
/* ------------------------------------------------------------------ */

struct target {
    pid_t pid;
    int to_fd, from_fd;
    char buf[1 << 16];
    size_t len;
    unsigned timeout_ms;
    bool verbose;
    bool eof;
};

static int target_start(struct target *tg, char **argv)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0) {
        return -errno;
    }
    if (pipe2(out, O_CLOEXEC) < 0) {
        int e = -errno;
        close(in[0]);
        close(in[1]);
        return e;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        return e;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        fprintf(stderr, PROG ": cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    tg->pid = pid;
    tg->to_fd = in[1];
    tg->from_fd = out[0];
    tg->len = 0;
    tg->eof = false;
    return 0;
}

/* Close the channel, give the target a moment to exit (diskdm does on
 * EOF; QEMU does not), then terminate it. Returns its wait status. */
static int target_stop(struct target *tg)
{
    int status = 0;
    if (tg->pid <= 0) {
        return 0;
    }
    close(tg->to_fd);
    for (int i = 0; i < 50; i++) {
        if (waitpid(tg->pid, &status, WNOHANG) == tg->pid) {
            goto out_close;
        }
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
    kill(tg->pid, SIGTERM);
    for (int i = 0; i < 200; i++) {
        if (waitpid(tg->pid, &status, WNOHANG) == tg->pid) {
            goto out_close;
        }
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
    kill(tg->pid, SIGKILL);
    waitpid(tg->pid, &status, 0);
out_close:
    close(tg->from_fd);
    tg->pid = 0;
    return status;
}

/* Next line from the target (without '\n'), 0 = EOF, -ETIMEDOUT. */
static int target_read_line(struct target *tg, char **line)
{
    for (;;) {
        char *nl = memchr(tg->buf, '\n', tg->len);
        if (nl) {
            size_t n = nl - tg->buf;
            *line = strndup(tg->buf, n);
            memmove(tg->buf, nl + 1, tg->len - n - 1);
            tg->len -= n + 1;
            if (tg->verbose) {
                fprintf(stderr, "< %s\n", *line);
            }
            return 1;
        }
        if (tg->eof) {
            return 0;
        }
        if (tg->len == sizeof(tg->buf)) {
            return -E2BIG;
        }
        struct pollfd pfd = { .fd = tg->from_fd, .events = POLLIN };
        int r = poll(&pfd, 1, tg->timeout_ms);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return r < 0 ? -errno : -ETIMEDOUT;
        }
        ssize_t n = read(tg->from_fd, tg->buf + tg->len, sizeof(tg->buf) - tg->len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            tg->eof = true;
        } else {
            tg->len += n;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Running a trace                                                     */
/* ------------------------------------------------------------------ */

struct runner {
    struct trace *trace;
    struct target tg;
    struct entry_list got;
    ssize_t window;             /* entry IRQ lines go to; -1 = none yet */
    bool grouped;               /* inside !window begin/end */
    bool group_started;         /* the group's first entry exists */
    char **spare_irqs;          /* IRQ lines seen before any entry */
    size_t nspare;
};

static int runner_fail(struct runner *r, const struct step *st, const char *fmt, ...)
    PRINTF_FMT(3, 4);
static int runner_fail(struct runner *r, const struct step *st, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROG ": %s:%d: %s: ", r->trace->path, st->line, st->text);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return -EIO;
}

/*
 * Send one line and wait for its reply. IRQ lines before the reply go to
 * the current window (the last step that produced an entry).
 */
static int transact(struct runner *r, const struct step *st, const char *data,
                    size_t len, char **reply)
{
    char *msg = xrealloc(NULL, len + 1);
    memcpy(msg, data, len);
    msg[len] = '\n';
    if (r->tg.verbose) {
        fprintf(stderr, "> %.*s\n", (int)len, data);
    }
    ssize_t w = full_write(r->tg.to_fd, msg, len + 1);
    free(msg);
    if (w == -EPIPE) {
        return runner_fail(r, st, "the target closed the channel before replying");
    } else if (w < 0) {
        return runner_fail(r, st, "cannot send to the target: %s", strerror(-w));
    }
    for (;;) {
        char *line = NULL;
        int ret = target_read_line(&r->tg, &line);
        if (ret == 0) {
            return runner_fail(r, st, "the target closed the channel before replying");
        } else if (ret < 0) {
            return runner_fail(r, st, "no reply within %u ms", r->tg.timeout_ms);
        }
        if (!strncmp(line, "IRQ ", 4)) {
            if (r->window >= 0) {
                struct entry *w = &r->got.v[r->window];
                strv_push(&w->irqs, &w->nirqs, line);
            } else {
                strv_push(&r->spare_irqs, &r->nspare, line);
            }
            continue;
        }
        *reply = line;
        return 0;
    }
}

static struct entry *new_entry(struct runner *r, const struct step *st)
{
    r->got.v = xrealloc(r->got.v, (r->got.n + 1) * sizeof(*r->got.v));
    struct entry *e = &r->got.v[r->got.n++];
    *e = (struct entry){ .step = st, .line = st->line, .text = xstrdup(st->text) };
    if (!r->grouped || !r->group_started) {
        r->window = r->got.n - 1;
        r->group_started = r->grouped;
    }
    return e;
}

static int parse_value_reply(const char *reply, uint64_t *v)
{
    if (strncmp(reply, "OK 0x", 5)) {
        return -EINVAL;
    }
    return parse_num(reply + 3, v);
}

static int run_poll(struct runner *r, const struct step *st)
{
    uint64_t start = clock_ns();
    for (;;) {
        char *reply;
        uint64_t v;
        int ret = transact(r, st, st->send, st->send_len, &reply);
        if (ret) {
            return ret;
        }
        if (parse_value_reply(reply, &v)) {
            ret = runner_fail(r, st, "reply '%s' is not a value", reply);
            free(reply);
            return ret;
        }
        bool eq = (v & st->poll_mask) == st->poll_value;
        if (eq != st->poll_ne) {
            free(reply);
            return 0;
        }
        if (clock_ns() - start > (uint64_t)st->poll_timeout_ms * 1000000) {
            ret = runner_fail(r, st, "condition not met within %u ms (last reply '%s')",
                              st->poll_timeout_ms, reply);
            free(reply);
            return ret;
        }
        free(reply);
        nanosleep(&(struct timespec){ 0, 500 * 1000 }, NULL);
    }
}

static int run_pio(struct runner *r, const struct step *st, struct entry *e)
{
    size_t n = st->bytes / st->width;
    uint8_t *data = xrealloc(NULL, st->bytes);
    char cmd[64];
    int ret = 0;
    for (size_t i = 0; i < n && !e->reply; i++) {
        char *reply;
        uint64_t v = 0;
        if (st->kind == STEP_PIO_OUT) {
            for (unsigned b = 0; b < st->width; b++) {
                size_t at = i * st->width + b;
                uint8_t byte = st->ramp ? (uint8_t)(st->value + at) : st->value;
                v |= (uint64_t)byte << (8 * b);
            }
            snprintf(cmd, sizeof(cmd), "out%c 0x%x 0x%" PRIx64,
                     "bw?l"[st->width - 1], st->port, v);
        } else {
            snprintf(cmd, sizeof(cmd), "in%c 0x%x", "bw?l"[st->width - 1], st->port);
        }
        ret = transact(r, st, cmd, strlen(cmd), &reply);
        if (ret) {
            break;
        }
        if (st->kind == STEP_PIO_OUT) {
            if (strcmp(reply, "OK")) {
                e->reply = xasprintf("FAIL access %zu: %s", i, reply);
            }
        } else if (parse_value_reply(reply, &v)) {
            e->reply = xasprintf("FAIL access %zu: %s", i, reply);
        } else {
            for (unsigned b = 0; b < st->width; b++) {
                data[i * st->width + b] = v >> (8 * b);
            }
        }
        free(reply);
    }
    if (!ret && !e->reply) {
        e->reply = st->kind == STEP_PIO_OUT ? xstrdup("OK") : hex_encode(data, st->bytes);
    }
    free(data);
    return ret;
}

static int trace_run(struct runner *r)
{
    struct trace *t = r->trace;
    for (size_t i = 0; i < t->nsteps; i++) {
        const struct step *st = &t->steps[i];
        struct entry *e;
        int ret = 0;
        switch (st->kind) {
        case STEP_POLL:
            ret = run_poll(r, st);
            break;
        case STEP_CMD:
        case STEP_RAW:
            e = new_entry(r, st);
            ret = transact(r, st, st->send, st->send_len, &e->reply);
            break;
        case STEP_PIO_IN:
        case STEP_PIO_OUT:
            ret = run_pio(r, st, new_entry(r, st));
            break;
        case STEP_IMAGE_READ:
        case STEP_IMAGE_SAME:
        case STEP_IMAGE_SHA256:
            e = new_entry(r, st);
            e->reply = image_step(t, st);
            break;
        case STEP_WINDOW_BEGIN:
            r->grouped = true;
            r->group_started = false;
            break;
        case STEP_WINDOW_END:
            r->grouped = false;
            break;
        }
        if (ret) {
            return ret;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Masks and comparison                                                */
/* ------------------------------------------------------------------ */

/* Apply the step's masks to a reply: masked bytes of an "OK 0x<hex>"
 * payload become '?', masked bits of a value are cleared and noted. */
static char *apply_masks(const struct step *st, const char *reply)
{
    if (!st || (!st->nranges && !st->mask_bits)) {
        return xstrdup(reply);
    }
    if (st->mask_bits) {
        uint64_t v;
        if (parse_value_reply(reply, &v)) {
            return xstrdup(reply);
        }
        int digits = (int)strlen(reply) - 5;
        return xasprintf("OK 0x%0*" PRIx64 " (masked 0x%" PRIx64 ")", digits,
                         v & ~st->mask_bits, st->mask_bits);
    }
    char *s = xstrdup(reply);
    size_t len = strlen(s);
    if (strncmp(s, "OK 0x", 5)) {
        return s;
    }
    for (size_t i = 0; i < st->nranges; i++) {
        for (size_t b = st->ranges[i].first; b <= st->ranges[i].last; b++) {
            size_t at = 5 + 2 * b;
            if (at + 1 >= len + 1) {
                break;
            }
            s[at] = '?';
            if (at + 1 < len) {
                s[at + 1] = '?';
            }
        }
    }
    return s;
}

/* Literal comparison, where '?' in `want` stands for any character. */
static bool reply_matches(const char *want, const char *got)
{
    for (; *want && *got; want++, got++) {
        if (*want != '?' && *want != *got) {
            return false;
        }
    }
    return !*want && !*got;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void entry_list_free(struct entry_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        struct entry *e = &l->v[i];
        free(e->text);
        free(e->reply);
        for (size_t j = 0; j < e->nirqs; j++) {
            free(e->irqs[j]);
        }
        free(e->irqs);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void print_irqs(FILE *f, const char *label, const struct entry *e)
{
    fprintf(f, "    %s", label);
    if (!e->nirqs) {
        fprintf(f, " (none)");
    }
    for (size_t i = 0; i < e->nirqs; i++) {
        fprintf(f, "%s%s", i ? ", " : " ", e->irqs[i]);
    }
    fputc('\n', f);
}

/* Compare recorded entries with the expected ones; print a readable diff. */
static int compare(const struct trace *t, struct entry_list *got,
                   struct entry_list *want, const char *expected_path)
{
    int diffs = 0;
    size_t n = MIN(got->n, want->n);
    for (size_t i = 0; i < n && diffs < MAX_DIFFS; i++) {
        struct entry *g = &got->v[i], *w = &want->v[i];
        if (strcmp(g->text, w->text)) {
            fprintf(stderr, "%s:%d: step %zu is '%s' but %s has '%s' there: re-record it\n",
                    t->path, g->line, i + 1, g->text, expected_path, w->text);
            return 1;
        }
        char *masked = apply_masks(g->step, g->reply);
        bool irq_same = g->nirqs == w->nirqs;
        for (size_t j = 0; irq_same && j < g->nirqs; j++) {
            irq_same = !strcmp(g->irqs[j], w->irqs[j]);
        }
        bool reply_same = reply_matches(w->reply, masked);
        if (!reply_same || !irq_same) {
            diffs++;
            fprintf(stderr, "%s:%d: %s\n", t->path, g->line, g->text);
            if (!reply_same) {
                fprintf(stderr, "    expected: %s\n    got:      %s\n", w->reply, masked);
            }
            if (!irq_same) {
                print_irqs(stderr, "expected IRQs:", w);
                print_irqs(stderr, "got IRQs:     ", g);
            }
        }
        free(masked);
    }
    if (got->n != want->n && diffs < MAX_DIFFS) {
        fprintf(stderr, "%s: %zu steps ran, %s has %zu\n", t->path, got->n,
                expected_path, want->n);
        diffs++;
    }
    if (diffs) {
        fprintf(stderr, "%s: %d difference%s from %s\n", t->path, diffs,
                diffs == 1 ? "" : "s", expected_path);
    }
    return diffs ? 1 : 0;
}

/* Expected file: '#' comments; "@LINE STEP" opens an entry; the lines that
 * follow are its IRQ lines (sorted) and, last, its reply. */
static int expected_write(const char *path, const struct trace *t,
                          const struct entry_list *l)
{
    char *tmp = xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "we");
    if (!f) {
        fprintf(stderr, PROG ": cannot create %s: %s\n", tmp, strerror(errno));
        free(tmp);
        return -errno;
    }
    const char *base = strrchr(t->path, '/');
    fprintf(f, "# Expected replies for %s, written by diskdm-trace --record.\n",
            base ? base + 1 : t->path);
    fprintf(f, "# '@LINE STEP', then the step's IRQ lines (sorted), then its reply;\n"
               "# '?' matches any character. Masks belong in the trace (!mask).\n");
    for (size_t i = 0; i < l->n; i++) {
        const struct entry *e = &l->v[i];
        char *masked = apply_masks(e->step, e->reply);
        fprintf(f, "@%d %s\n", e->line, e->text);
        for (size_t j = 0; j < e->nirqs; j++) {
            fprintf(f, "%s\n", e->irqs[j]);
        }
        fprintf(f, "%s\n", masked);
        free(masked);
    }
    int ret = 0;
    if (fclose(f) != 0 || rename(tmp, path) < 0) {
        ret = -errno;
        fprintf(stderr, PROG ": cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return ret;
}

static char *read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }
    char *buf = xrealloc(NULL, sb.st_size + 1);
    ssize_t n = full_read(fd, buf, sb.st_size);
    close(fd);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

static int expected_parse(const char *path, char *text, struct entry_list *l)
{
    struct entry *cur = NULL;
    int lineno = 0;
    for (char *line = text, *next; line && *line; line = next) {
        char *nl = strchr(line, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl) {
            *nl = 0;
        }
        lineno++;
        if (line[0] == '#') {
            continue;
        }
        if (line[0] == '@') {
            char *end;
            long n = strtol(line + 1, &end, 10);
            if (*end != ' ') {
                fprintf(stderr, PROG ": %s:%d: bad entry header\n", path, lineno);
                return -EINVAL;
            }
            l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
            cur = &l->v[l->n++];
            *cur = (struct entry){ .line = n, .text = xstrdup(end + 1) };
            continue;
        }
        if (!cur) {
            fprintf(stderr, PROG ": %s:%d: reply outside an entry\n", path, lineno);
            return -EINVAL;
        }
        if (cur->reply) {
            strv_push(&cur->irqs, &cur->nirqs, cur->reply);
        }
        cur->reply = xstrdup(line);
    }
    for (size_t i = 0; i < l->n; i++) {
        if (!l->v[i].reply) {
            fprintf(stderr, PROG ": %s: entry '@%d %s' has no reply\n", path,
                    l->v[i].line, l->v[i].text);
            return -EINVAL;
        }
        if (l->v[i].nirqs > 1) {
            qsort(l->v[i].irqs, l->v[i].nirqs, sizeof(char *), cmp_str);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " [--record] [--expected FILE] [--timeout S] [--target qemu|diskdm]\n"
"                    [-v] TRACE -- COMMAND [ARGS...]\n"
"Replays the guest I/O trace TRACE against COMMAND, which must speak the qtest\n"
"protocol on stdin/stdout (diskdm -qtest stdio, or qemu-system-x86_64 -machine pc\n"
"-nodefaults -qtest stdio -display none). The trace's disks are created in a\n"
"temporary directory and passed to COMMAND as -drive options. Replies are\n"
"compared with FILE (default: TRACE with .trace replaced by .expected), or\n"
"written there with --record. Exit status: 0 match, 1 difference or failure,\n"
"2 usage, 77 the trace does not run on this target.\n");
}

static char *default_expected(const char *trace)
{
    size_t n = strlen(trace);
    if (n > 6 && !strcmp(trace + n - 6, ".trace")) {
        return xasprintf("%.*s.expected", (int)(n - 6), trace);
    }
    return xasprintf("%s.expected", trace);
}

static void remove_workdir(const char *dir, const struct trace *t)
{
    for (size_t i = 0; i < t->ndisks; i++) {
        if (t->disks[i].path) {
            unlink(t->disks[i].path);
        }
    }
    rmdir(dir);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "record", no_argument, NULL, 'r' },
        { "expected", required_argument, NULL, 'e' },
        { "timeout", required_argument, NULL, 't' },
        { "target", required_argument, NULL, 'T' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool record = false, verbose = false;
    const char *expected_arg = NULL, *target_name = NULL;
    unsigned timeout_s = 10;
    int c;
    while ((c = getopt_long(argc, argv, "+ve:t:h", longopts, NULL)) != -1) {
        uint64_t v;
        switch (c) {
        case 'r': record = true; break;
        case 'e': expected_arg = optarg; break;
        case 't':
            if (parse_num(optarg, &v) || v == 0 || v > 3600) {
                fprintf(stderr, PROG ": --timeout: expected seconds (1-3600), not '%s'\n", optarg);
                return 2;
            }
            timeout_s = v;
            break;
        case 'T':
            if (strcmp(optarg, "qemu") && strcmp(optarg, "diskdm")) {
                fprintf(stderr, PROG ": --target: 'qemu' or 'diskdm', not '%s'\n", optarg);
                return 2;
            }
            target_name = optarg;
            break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 >= argc || strcmp(argv[optind + 1], "--") || optind + 2 >= argc) {
        fprintf(stderr, PROG ": expected TRACE -- COMMAND [ARGS...]\n");
        usage(stderr);
        return 2;
    }
    const char *trace_path = argv[optind];
    char **cmd = argv + optind + 2;
    int ncmd = argc - optind - 2;
    if (!target_name) {
        const char *base = strrchr(cmd[0], '/');
        base = base ? base + 1 : cmd[0];
        target_name = !strncmp(base, "qemu", 4) ? "qemu" : "diskdm";
    }

    int status = 1;
    struct trace t = { .path = trace_path };
    struct runner r = { .trace = &t, .window = -1 };
    struct entry_list want = { 0 };
    char *expected_path = expected_arg ? xstrdup(expected_arg) : default_expected(trace_path);
    char *text = read_file(trace_path);
    char **child_argv = NULL;
    size_t nchild = 0;
    char dir[] = "/tmp/diskdm-trace.XXXXXX";
    bool have_dir = false;

    signal(SIGPIPE, SIG_IGN);
    if (!text) {
        fprintf(stderr, PROG ": cannot read %s: %s\n", trace_path, strerror(errno));
        goto out;
    }
    if (trace_parse(&t, text)) {
        goto out;
    }
    if (t.diskdm_only && !strcmp(target_name, "qemu")) {
        printf("%s: !target diskdm: not replayed against QEMU\n", trace_path);
        status = 77;
        goto out;
    }
    if (!record) {
        char *etext = read_file(expected_path);
        if (!etext) {
            fprintf(stderr, PROG ": cannot read %s: %s (record it with --record)\n",
                    expected_path, strerror(errno));
            goto out;
        }
        int ret = expected_parse(expected_path, etext, &want);
        free(etext);
        if (ret) {
            goto out;
        }
    }
    const char *tmpdir = getenv("TMPDIR");
    char *tmpl = xasprintf("%s/diskdm-trace.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (strlen(tmpl) < sizeof(dir)) {
        strcpy(dir, tmpl);
    }
    free(tmpl);
    if (!mkdtemp(dir)) {
        fprintf(stderr, PROG ": cannot create a work directory: %s\n", strerror(errno));
        goto out;
    }
    have_dir = true;
    if (disks_create(&t, dir)) {
        goto out;
    }

    for (int i = 0; i < ncmd; i++) {
        strv_push(&child_argv, &nchild, xstrdup(cmd[i]));
    }
    for (size_t i = 0; i < t.nargs; i++) {
        strv_push(&child_argv, &nchild, xstrdup(t.args[i]));
    }
    for (size_t i = 0; i < t.ndisks; i++) {
        const struct trace_disk *d = &t.disks[i];
        strv_push(&child_argv, &nchild, xstrdup("-drive"));
        strv_push(&child_argv, &nchild,
                  d->path ? xasprintf("file=%s,format=raw%s%s", d->path,
                                      *d->drive_opts ? "," : "", d->drive_opts)
                          : xstrdup(d->drive_opts));
    }
    strv_push(&child_argv, &nchild, NULL);
    if (verbose) {
        fprintf(stderr, "+");
        for (size_t i = 0; child_argv[i]; i++) {
            fprintf(stderr, " %s", child_argv[i]);
        }
        fputc('\n', stderr);
    }

    r.tg.timeout_ms = timeout_s * 1000;
    r.tg.verbose = verbose;
    int ret = target_start(&r.tg, child_argv);
    if (ret) {
        fprintf(stderr, PROG ": cannot start %s: %s\n", cmd[0], strerror(-ret));
        goto out;
    }
    ret = trace_run(&r);
    int wstatus = target_stop(&r.tg);
    if (ret) {
        if (WIFSIGNALED(wstatus) && WTERMSIG(wstatus) != SIGTERM) {
            fprintf(stderr, PROG ": %s was killed by signal %d\n", cmd[0], WTERMSIG(wstatus));
        } else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus)) {
            fprintf(stderr, PROG ": %s exited with status %d\n", cmd[0], WEXITSTATUS(wstatus));
        }
        /* show what did match up to the failure */
        if (!record && r.got.n) {
            struct entry_list part = { want.v, MIN(want.n, r.got.n) };
            struct entry_list gotp = { r.got.v, part.n };
            compare(&t, &gotp, &part, expected_path);
        }
        goto out;
    }
    for (size_t i = 0; i < r.got.n; i++) {
        if (r.got.v[i].nirqs > 1) {
            qsort(r.got.v[i].irqs, r.got.v[i].nirqs, sizeof(char *), cmp_str);
        }
    }
    if (record) {
        status = expected_write(expected_path, &t, &r.got) ? 1 : 0;
        if (!status) {
            printf("%s: %zu steps recorded from %s into %s\n", trace_path, r.got.n,
                   target_name, expected_path);
        }
    } else {
        status = compare(&t, &r.got, &want, expected_path);
        if (!status) {
            printf("%s: %zu steps match %s against %s\n", trace_path, r.got.n,
                   expected_path, target_name);
        }
    }
out:
    if (have_dir) {
        remove_workdir(dir, &t);
    }
    for (size_t i = 0; i < nchild; i++) {
        free(child_argv[i]);
    }
    free(child_argv);
    for (size_t i = 0; i < r.nspare; i++) {
        free(r.spare_irqs[i]);
    }
    free(r.spare_irqs);
    entry_list_free(&r.got);
    entry_list_free(&want);
    trace_free(&t);
    free(text);
    free(expected_path);
    return status;
}
