/*
 * hw/qtest.c — the qtest transport: QEMU 7.2's line protocol (port I/O,
 * guest memory, IRQ interception) over a pair of fds, delivering guest
 * accesses to the machine. Replies are byte-for-byte QEMU's; lines QEMU
 * would abort on get a `FAIL ...` reply here instead.
 */
#include "hw/hw.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Longest request line accepted (a 16 MiB `write` is 32 MiB of hex). */
#define QTEST_MAX_LINE      (40u << 20)
/* Largest read/write/b64read/b64write/memset size accepted. */
#define QTEST_MAX_SIZE      (16u << 20)
#define QTEST_MAX_MEMSET    (1ull << 30)
#define QTEST_MAX_WORDS     8
#define QTEST_NUM_GSI       24

/* Devices `irq_intercept_in/out` accepts, by QEMU's QOM paths. */
enum qtest_dev { QTEST_DEV_NONE, QTEST_DEV_IOAPIC, QTEST_DEV_HOST_BRIDGE };

static const struct {
    const char *path;
    enum qtest_dev dev;
} qtest_devices[] = {
    { "ioapic", QTEST_DEV_IOAPIC },
    { "/machine/i440fx/ioapic", QTEST_DEV_IOAPIC },
    { "i440fx", QTEST_DEV_HOST_BRIDGE },
    { "/machine/i440fx", QTEST_DEV_HOST_BRIDGE },
};

struct qtest_server {
    struct machine *m;
    struct event_loop *loop;
    int in_fd, out_fd;          /* in_fd -1: lines come from qtest_handle_line only */
    ev_fn *on_close;
    void *opaque;
    bool watching;              /* in_fd registered with the loop */
    struct ev_timer *read_timer;    /* in_fd epoll refuses: next read, or NULL */
    bool closed;                /* EOF or error seen; on_close ran */
    bool out_broken;            /* a write failed: drop further output */
    bool discarding;            /* skipping the rest of an overlong line */
    char *buf;                  /* bytes of the incomplete line */
    size_t len, cap;
    enum qtest_dev intercept;   /* the device of the first irq_intercept */
    bool intercept_gsi;         /* irq_intercept_in ioapic: report GSI levels */
    /* Per GSI, the level last passed to the intercepted input, as QEMU's
     * qtest keeps it: an int, because set_irq_in passes any int through
     * (7 after 1 is reported as a second raise). All 0 at start. */
    int level[QTEST_NUM_GSI];
};

/* ------------------------------------------------------------------ */
/* Output                                                              */
/* ------------------------------------------------------------------ */

static void qtest_close(struct qtest_server *qs)
{
    if (qs->closed) {
        return;
    }
    qs->closed = true;
    if (qs->watching) {
        ev_fd_remove(qs->loop, qs->in_fd);
        qs->watching = false;
    }
    if (qs->on_close) {
        qs->on_close(qs->opaque);
    }
}

static void qtest_send(struct qtest_server *qs, const char *s, size_t len)
{
    if (qs->out_broken) {
        return;
    }
    if (log_enabled(LOG_DEBUG)) {
        log_debug("qtest: reply %.*s", (int)(len && s[len - 1] == '\n' ? len - 1 : len), s);
    }
    ssize_t n = full_write(qs->out_fd, s, len);
    if (n < 0) {
        log_warn("qtest: cannot write a reply: %s", strerror((int)-n));
        qs->out_broken = true;
        qtest_close(qs);
    }
}

static void qtest_sendf(struct qtest_server *qs, const char *fmt, ...) PRINTF_FMT(2, 3);
static void qtest_sendf(struct qtest_server *qs, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n < sizeof(small)) {
        qtest_send(qs, small, n);
        return;
    }
    char *big = malloc(n + 1);
    if (!big) {
        qtest_send(qs, "FAIL out of memory\n", 19);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, n + 1, fmt, ap);
    va_end(ap);
    qtest_send(qs, big, n);
    free(big);
}

/* ------------------------------------------------------------------ */
/* IRQ observation                                                     */
/* ------------------------------------------------------------------ */

/*
 * An intercepted IOAPIC input was set to `level`, by a device or by
 * set_irq_in: as in QEMU, the last setter wins and a line goes out when
 * the value differs from the previous one.
 */
static void qtest_irq_input(struct qtest_server *qs, int gsi, int level)
{
    if (!qs->intercept_gsi || qs->level[gsi] == level) {
        return;
    }
    qs->level[gsi] = level;
    qtest_sendf(qs, "IRQ %s %d\n", level ? "raise" : "lower", gsi);
}

/*
 * Called by the machine whenever a GSI changes level, also from inside a
 * request (then the line goes out before that request's reply, as QEMU
 * orders it) and from completions on the event loop.
 */
static void qtest_irq(void *opaque, int gsi, bool level)
{
    struct qtest_server *qs = opaque;
    if (gsi >= 0 && gsi < QTEST_NUM_GSI)
        qtest_irq_input(qs, gsi, level);
}

/* MSI messages are not reported: QEMU's ioapic interception does not see
 * them either. */
static void qtest_msi(void *opaque, uint64_t addr, uint32_t data)
{
}

/* ------------------------------------------------------------------ */
/* Parsing helpers                                                     */
/* ------------------------------------------------------------------ */

/* A whole word as a number, base 0 as strtoull (so "-1" wraps, as in QEMU). */
static bool qtest_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!*s || *s == ' ' || *s == '\t') {
        return false;
    }
    errno = 0;
    *out = strtoull(s, &end, 0);
    return !errno && !*end;
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const uint8_t *in, size_t len)
{
    char *out = malloc(DIV_ROUND_UP(len, 3) * 4 + 1);
    size_t o = 0;
    if (!out) {
        return NULL;
    }
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        if (i + 2 < len) {
            v |= in[i + 2];
        }
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
    }
    out[o] = 0;
    return out;
}

/* Lenient like GLib's decoder: characters outside the alphabet are
 * skipped, '=' ends the data. Returns the decoded length. */
static size_t b64_decode(const char *in, uint8_t *out, size_t max)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t n = 0;
    for (; *in && *in != '='; in++) {
        const char *p = strchr(b64_alphabet, *in);
        if (!p || !*in) {
            continue;
        }
        acc = (acc << 6) | (uint32_t)(p - b64_alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n < max) {
                out[n] = acc >> bits;
            }
            n++;
        }
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* Commands                                                            */
/* ------------------------------------------------------------------ */

struct qtest_cmd;
typedef void qtest_cmd_fn(struct qtest_server *qs, const struct qtest_cmd *cmd,
                          char **w, int nw);

/* One protocol command: its name, how many arguments it needs (extra
 * ones are ignored, as QEMU does), its access width where it has one. */
struct qtest_cmd {
    const char *name;
    int nargs;
    unsigned size;
    qtest_cmd_fn *fn;
};

/* Parse argument `i` as a number; on failure reply and return false. */
static bool arg_u64(struct qtest_server *qs, char **w, int i, uint64_t *v)
{
    if (qtest_parse_u64(w[i], v)) {
        return true;
    }
    qtest_sendf(qs, "FAIL invalid number '%s'\n", w[i]);
    return false;
}

static bool arg_size(struct qtest_server *qs, char **w, int i, uint64_t max,
                     bool zero_ok, uint64_t *v)
{
    if (!arg_u64(qs, w, i, v)) {
        return false;
    }
    if (!*v && !zero_ok) {
        qtest_sendf(qs, "FAIL invalid size 0\n");
        return false;
    }
    if (*v > max) {
        qtest_sendf(qs, "FAIL size %s too large\n", w[i]);
        return false;
    }
    return true;
}

static bool arg_port(struct qtest_server *qs, char **w, uint16_t *port)
{
    uint64_t v;
    if (!arg_u64(qs, w, 1, &v)) {
        return false;
    }
    if (v > 0xffff) {
        qtest_sendf(qs, "FAIL port '%s' out of range\n", w[1]);
        return false;
    }
    *port = v;
    return true;
}

static void cmd_out(struct qtest_server *qs, const struct qtest_cmd *c, char **w, int nw)
{
    uint16_t port;
    uint64_t v;
    if (!arg_port(qs, w, &port) || !arg_u64(qs, w, 2, &v)) {
        return;
    }
    machine_pio_write(qs->m, port, c->size, (uint32_t)v);
    qtest_send(qs, "OK\n", 3);
}

static void cmd_in(struct qtest_server *qs, const struct qtest_cmd *c, char **w, int nw)
{
    uint16_t port;
    if (!arg_port(qs, w, &port)) {
        return;
    }
    uint32_t v = machine_pio_read(qs->m, port, c->size);
    if (c->size < 4) {
        v &= (1u << (8 * c->size)) - 1;
    }
    qtest_sendf(qs, "OK 0x%04x\n", v);
}

static bool mem_access(struct qtest_server *qs, int ret)
{
    if (ret < 0) {
        qtest_sendf(qs, "FAIL address range wraps\n");
        return false;
    }
    return true;
}

static void cmd_write_n(struct qtest_server *qs, const struct qtest_cmd *c, char **w, int nw)
{
    uint64_t addr, v;
    uint8_t buf[8];
    if (!arg_u64(qs, w, 1, &addr) || !arg_u64(qs, w, 2, &v)) {
        return;
    }
    for (unsigned i = 0; i < c->size; i++) {
        buf[i] = v >> (8 * i);
    }
    if (mem_access(qs, machine_mem_write(qs->m, addr, buf, c->size))) {
        qtest_send(qs, "OK\n", 3);
    }
}

static void cmd_read_n(struct qtest_server *qs, const struct qtest_cmd *c, char **w, int nw)
{
    uint64_t addr, v = 0;
    uint8_t buf[8];
    if (!arg_u64(qs, w, 1, &addr) ||
        !mem_access(qs, machine_mem_read(qs->m, addr, buf, c->size))) {
        return;
    }
    for (unsigned i = 0; i < c->size; i++) {
        v |= (uint64_t)buf[i] << (8 * i);
    }
    qtest_sendf(qs, "OK 0x%016" PRIx64 "\n", v);
}

static void cmd_read(struct qtest_server *qs, const struct qtest_cmd *c, char **w, int nw)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t addr, len;
    if (!arg_u64(qs, w, 1, &addr) || !arg_size(qs, w, 2, QTEST_MAX_SIZE, false, &len)) {
        return;
    }
    uint8_t *data = malloc(len);
    char *out = malloc(2 * len + 7);
    if (!data || !out) {
        qtest_sendf(qs, "FAIL out of memory\n");
        goto out_free;
    }
    if (!mem_access(qs, machine_mem_read(qs->m, addr, data, len))) {
        goto out_free;
    }
    memcpy(out, "OK 0x", 5);
    for (uint64_t i = 0; i < len; i++) {
        out[5 + 2 * i] = hex[data[i] >> 4];
        out[6 + 2 * i] = hex[data[i] & 15];
    }
    out[5 + 2 * len] = '\n';
    qtest_send(qs, out, 6 + 2 * len);
out_free:
    free(out);
    free(data);
}

static void cmd_b64read(struct qtest_server *qs, const struct qtest_cmd *c, char **w, int nw)
{
    uint64_t addr, len;
    if (!arg_u64(qs, w, 1, &addr) || !arg_size(qs, w, 2, QTEST_MAX_SIZE, true, &len)) {
        return;
    }
    uint8_t *data = malloc(len ? len : 1);
    char *enc = NULL;
    if (!data) {
        qtest_sendf(qs, "FAIL out of memory\n");
        return;
    }
    if (mem_access(qs, machine_mem_read(qs->m, addr, data, len))) {
        enc = b64_encode(data, len);
        if (enc) {
            qtest_sendf(qs, "OK %s\n", enc);
        } else {
            qtest_sendf(qs, "FAIL out of memory\n");
        }
    }
    free(enc);
    free(data);
}

/*
 * write ADDR SIZE 0xDATA: QEMU skips the first two characters of DATA
 * without looking at them, zero-fills short data, drops an odd last
 * nibble and ignores data beyond SIZE. Non-hex digits are refused here
 * (QEMU would store garbage).
 */
static void cmd_write(struct qtest_server *qs, const struct qtest_cmd *c, char **w, int nw)
{
    uint64_t addr, len;
    if (!arg_u64(qs, w, 1, &addr) || !arg_size(qs, w, 2, QTEST_MAX_SIZE, true, &len)) {
        return;
    }
    const char *hex = w[3];
    size_t hlen = strlen(hex);
    if (hlen < 3) {
        qtest_send(qs, "ERR invalid argument size\n", 26);
        return;
    }
    hex += 2;
    hlen -= 2;
    for (size_t i = 0; i < hlen; i++) {
        if (hex_nibble(hex[i]) < 0) {
            qtest_sendf(qs, "FAIL invalid hex data\n");
            return;
        }
    }
    uint8_t *data = calloc(1, len ? len : 1);
    if (!data) {
        qtest_sendf(qs, "FAIL out of memory\n");
        return;
    }
    for (uint64_t i = 0; i < len && 2 * i + 1 < hlen; i++) {
        data[i] = hex_nibble(hex[2 * i]) << 4 | hex_nibble(hex[2 * i + 1]);
    }
    if (mem_access(qs, machine_mem_write(qs->m, addr, data, len))) {
        qtest_send(qs, "OK\n", 3);
    }
    free(data);
}

static void cmd_b64write(struct qtest_server *qs, const struct qtest_cmd *c, char **w, int nw)
{
    uint64_t addr, len;
    if (!arg_u64(qs, w, 1, &addr) || !arg_size(qs, w, 2, QTEST_MAX_SIZE, true, &len)) {
        return;
    }
    if (strlen(w[3]) < 3) {
        qtest_send(qs, "ERR invalid argument size\n", 26);
        return;
    }
    uint8_t *data = calloc(1, len ? len : 1);
    if (!data) {
        qtest_sendf(qs, "FAIL out of memory\n");
        return;
    }
    /* QEMU writes what decoded, up to SIZE; a length mismatch is only logged */
    size_t n = b64_decode(w[3], data, len);
    if (n != len) {
        log_debug("qtest: b64write: %zu bytes decoded, %" PRIu64 " expected", n, len);
    }
    if (mem_access(qs, machine_mem_write(qs->m, addr, data, MIN((uint64_t)n, len)))) {
        qtest_send(qs, "OK\n", 3);
    }
    free(data);
}

static void cmd_memset(struct qtest_server *qs, const struct qtest_cmd *c, char **w, int nw)
{
    uint64_t addr, len, v;
    if (!arg_u64(qs, w, 1, &addr) || !arg_size(qs, w, 2, QTEST_MAX_MEMSET, true, &len) ||
        !arg_u64(qs, w, 3, &v)) {
        return;
    }
    uint8_t chunk[4096];
    memset(chunk, (uint8_t)v, sizeof(chunk));
    if (len && addr + len - 1 < addr) {
        qtest_sendf(qs, "FAIL address range wraps\n");
        return;
    }
    for (uint64_t done = 0; done < len;) {
        size_t n = MIN((uint64_t)sizeof(chunk), len - done);
        if (!mem_access(qs, machine_mem_write(qs->m, addr + done, chunk, n))) {
            return;
        }
        done += n;
    }
    qtest_send(qs, "OK\n", 3);
}

static void cmd_endianness(struct qtest_server *qs, const struct qtest_cmd *c, char **w, int nw)
{
    qtest_send(qs, "OK little\n", 10);
}

/*
 * irq_intercept_in/out PATH. Only the first intercept takes effect; a
 * later one on the same device answers OK, on another device FAIL, as in
 * QEMU. Intercepting the IOAPIC's inputs reports GSI levels.
 */
static void cmd_irq_intercept(struct qtest_server *qs, const struct qtest_cmd *c,
                              char **w, int nw)
{
    enum qtest_dev dev = QTEST_DEV_NONE;
    for (size_t i = 0; i < ARRAY_SIZE(qtest_devices); i++) {
        if (!strcmp(w[1], qtest_devices[i].path)) {
            dev = qtest_devices[i].dev;
        }
    }
    if (dev == QTEST_DEV_NONE) {
        qtest_sendf(qs, "FAIL Unknown device\n");
        return;
    }
    if (qs->intercept != QTEST_DEV_NONE) {
        if (qs->intercept != dev) {
            qtest_sendf(qs, "FAIL IRQ intercept already enabled\n");
        } else {
            qtest_send(qs, "OK\n", 3);
        }
        return;
    }
    qs->intercept = dev;
    qs->intercept_gsi = dev == QTEST_DEV_IOAPIC && !strcmp(c->name, "irq_intercept_in");
    qtest_send(qs, "OK\n", 3);
}

/*
 * set_irq_in PATH NAME NUM LEVEL: drive an input of the IOAPIC (the one
 * device here with inputs; NAME `unnamed-gpio-in`, NUM its pin 0-23).
 * Nothing in diskdm consumes IOAPIC inputs (there is no CPU), so what the
 * guest can see is only what QEMU's qtest shows: the IRQ line when the
 * inputs are intercepted. QEMU aborts on other names, pins or a level that
 * is not an int; here they get FAIL.
 */
static void cmd_set_irq_in(struct qtest_server *qs, const struct qtest_cmd *c,
                           char **w, int nw)
{
    enum qtest_dev dev = QTEST_DEV_NONE;
    uint64_t pin;
    long long level;
    char *end;

    for (size_t i = 0; i < ARRAY_SIZE(qtest_devices); i++) {
        if (!strcmp(w[1], qtest_devices[i].path)) {
            dev = qtest_devices[i].dev;
        }
    }
    if (dev == QTEST_DEV_NONE) {
        qtest_sendf(qs, "FAIL Unknown device\n");
        return;
    }
    if (!arg_u64(qs, w, 3, &pin)) {
        return;
    }
    errno = 0;
    level = strtoll(w[4], &end, 0);
    if (errno || *end || !*w[4] || level < INT_MIN || level > INT_MAX) {
        qtest_sendf(qs, "FAIL invalid number '%s'\n", w[4]);
        return;
    }
    if (dev != QTEST_DEV_IOAPIC || strcmp(w[2], "unnamed-gpio-in") ||
        pin >= QTEST_NUM_GSI) {
        qtest_sendf(qs, "FAIL no input %s %s on %s\n", w[2], w[3], w[1]);
        return;
    }
    qtest_irq_input(qs, (int)pin, (int)level);
    qtest_send(qs, "OK\n", 3);
}

static const struct qtest_cmd qtest_cmds[] = {
    { "outb", 2, 1, cmd_out },
    { "outw", 2, 2, cmd_out },
    { "outl", 2, 4, cmd_out },
    { "inb", 1, 1, cmd_in },
    { "inw", 1, 2, cmd_in },
    { "inl", 1, 4, cmd_in },
    { "writeb", 2, 1, cmd_write_n },
    { "writew", 2, 2, cmd_write_n },
    { "writel", 2, 4, cmd_write_n },
    { "writeq", 2, 8, cmd_write_n },
    { "readb", 1, 1, cmd_read_n },
    { "readw", 1, 2, cmd_read_n },
    { "readl", 1, 4, cmd_read_n },
    { "readq", 1, 8, cmd_read_n },
    { "read", 2, 0, cmd_read },
    { "b64read", 2, 0, cmd_b64read },
    { "write", 3, 0, cmd_write },
    { "b64write", 3, 0, cmd_b64write },
    { "memset", 3, 0, cmd_memset },
    { "endianness", 0, 0, cmd_endianness },
    { "irq_intercept_in", 1, 0, cmd_irq_intercept },
    { "irq_intercept_out", 1, 0, cmd_irq_intercept },
    { "set_irq_in", 4, 0, cmd_set_irq_in },
};

/*
 * One request. QEMU splits on single spaces and asserts on anything odd;
 * here the same oddities get a reply: empty line, empty words (double,
 * leading or trailing spaces), control characters (a trailing CR), NUL
 * bytes, missing arguments.
 */
static void qtest_handle(struct qtest_server *qs, const char *line, size_t len)
{
    char *copy;
    char *w[QTEST_MAX_WORDS + 1];
    int nw = 0;

    if (log_enabled(LOG_DEBUG)) {
        log_debug("qtest: request %.*s", (int)MIN(len, (size_t)200), line);
    }
    if (len == 0) {
        qtest_sendf(qs, "FAIL empty line\n");
        return;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = line[i];
        if (ch < 0x20 || ch == 0x7f) {
            qtest_sendf(qs, "FAIL malformed line: control character 0x%02x\n", ch);
            return;
        }
    }
    copy = strndup(line, len);
    if (!copy) {
        qtest_sendf(qs, "FAIL out of memory\n");
        return;
    }
    for (char *p = copy;;) {
        char *sp = strchr(p, ' ');
        if (nw < QTEST_MAX_WORDS) {
            w[nw++] = p;
        }
        if (!sp) {
            break;
        }
        *sp = 0;
        p = sp + 1;
    }
    w[nw] = NULL;
    for (int i = 0; i < nw; i++) {
        if (!*w[i]) {
            qtest_sendf(qs, "FAIL malformed line: empty word (stray space)\n");
            goto out_free;
        }
    }
    const struct qtest_cmd *cmd = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(qtest_cmds); i++) {
        if (!strcmp(w[0], qtest_cmds[i].name)) {
            cmd = &qtest_cmds[i];
            break;
        }
    }
    if (!cmd) {
        qtest_sendf(qs, "FAIL Unknown command '%s'\n", w[0]);
        goto out_free;
    }
    if (nw - 1 < cmd->nargs) {
        qtest_sendf(qs, "FAIL missing argument: %s takes %d\n", cmd->name, cmd->nargs);
        goto out_free;
    }
    cmd->fn(qs, cmd, w, nw);
out_free:
    free(copy);
}

void qtest_handle_line(struct qtest_server *qs, const char *line)
{
    qtest_handle(qs, line, strlen(line));
}

/* ------------------------------------------------------------------ */
/* Input                                                               */
/* ------------------------------------------------------------------ */

/* Take in `n` bytes: run every complete line, keep the rest. */
static void qtest_feed(struct qtest_server *qs, const char *data, size_t n)
{
    while (n && !qs->closed) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        if (qs->discarding) {
            /* the overlong line was answered already; skip to its end */
        } else if (qs->len + take > QTEST_MAX_LINE) {
            qtest_sendf(qs, "FAIL line too long\n");
            qs->discarding = true;
            qs->len = 0;
        } else if (!nl || qs->len) {
            if (qs->len + take > qs->cap) {
                size_t cap = MAX(qs->cap * 2, qs->len + take);
                char *b = realloc(qs->buf, cap);
                if (!b) {
                    qtest_sendf(qs, "FAIL out of memory\n");
                    qs->discarding = true;
                    qs->len = 0;
                    goto next;
                }
                qs->buf = b;
                qs->cap = cap;
            }
            memcpy(qs->buf + qs->len, data, take);
            qs->len += take;
            if (nl) {
                size_t l = qs->len;
                qs->len = 0;
                qtest_handle(qs, qs->buf, l);
            }
        } else {
            qtest_handle(qs, data, take);
        }
next:
        if (!nl) {
            break;
        }
        qs->discarding = false;
        data += take + 1;
        n -= take + 1;
    }
}

static bool qtest_read_some(struct qtest_server *qs)
{
    char buf[65536];
    ssize_t n = read(qs->in_fd, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        return true;
    }
    if (n <= 0) {
        if (n < 0) {
            log_warn("qtest: read error: %s", strerror(errno));
        }
        qtest_close(qs);
        return false;
    }
    qtest_feed(qs, buf, n);
    return !qs->closed;
}

static void qtest_readable(void *opaque, uint32_t events)
{
    qtest_read_some(opaque);
}

/* in_fd that epoll refuses (a regular file, /dev/null): read it one chunk
 * per loop iteration from a zero-delay timer, which qtest_server_free can
 * cancel (a deferred call could not be). */
static void qtest_read_timer(void *opaque)
{
    struct qtest_server *qs = opaque;
    qs->read_timer = NULL;
    if (qtest_read_some(qs)) {
        qs->read_timer = ev_timer_add(qs->loop, 0, qtest_read_timer, qs);
    }
}

struct qtest_server *qtest_server_new(struct machine *m, struct event_loop *loop,
                                      int in_fd, int out_fd,
                                      ev_fn *on_close, void *opaque,
                                      struct error **errp)
{
    struct qtest_server *qs = calloc(1, sizeof(*qs));
    if (!qs) {
        error_setg_errno(errp, ENOMEM, "qtest");
        return NULL;
    }
    *qs = (struct qtest_server){
        .m = m, .loop = loop, .in_fd = in_fd, .out_fd = out_fd,
        .on_close = on_close, .opaque = opaque,
    };
    if (in_fd >= 0) {
        int ret = ev_fd_add(loop, in_fd, EPOLLIN, qtest_readable, qs);
        if (ret == -EPERM) {
            qs->read_timer = ev_timer_add(loop, 0, qtest_read_timer, qs);
            ret = qs->read_timer ? 0 : -ENOMEM;
        } else if (ret == 0) {
            qs->watching = true;
        }
        if (ret < 0) {
            error_setg_errno(errp, -ret, "qtest: cannot watch fd %d", in_fd);
            free(qs);
            return NULL;
        }
    }
    machine_set_irq_observer(m, qtest_irq, qtest_msi, qs);
    return qs;
}

void qtest_server_free(struct qtest_server *qs)
{
    if (!qs) {
        return;
    }
    machine_set_irq_observer(qs->m, NULL, NULL, NULL);
    if (qs->watching) {
        ev_fd_remove(qs->loop, qs->in_fd);
    }
    if (qs->read_timer) {
        ev_timer_cancel(qs->loop, qs->read_timer);
    }
    free(qs->buf);
    free(qs);
}
