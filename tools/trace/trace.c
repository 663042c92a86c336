/*
 * tools/trace/trace.c — diskdm-trace: replays a guest I/O trace (qtest
 * protocol lines plus replayer directives) against `diskdm -qtest stdio` or
 * `qemu-system-x86_64 ... -qtest stdio`, and records or compares the
 * replies. The trace syntax is in parse.c, masks and comparison in expect.c.
 */
#include "tools/trace/trace.h"

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
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
    uint8_t *buf = trace_xrealloc(NULL, CHUNK);
    int ret = 0;
    for (size_t i = 0; i < t->ndisks && !ret; i++) {
        struct trace_disk *d = &t->disks[i];
        if (!d->size) {
            continue;
        }
        d->path = trace_xasprintf("%s/disk%zu.img", dir, i);
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

/* The reply of an !image step, in the protocol's style. */
static char *image_step(const struct trace *t, const struct step *st)
{
    const struct trace_disk *d = &t->disks[st->disk];
    int fd = open(d->path, O_RDONLY | O_CLOEXEC);
    char *reply = NULL;
    if (fd < 0) {
        return trace_xasprintf("FAIL cannot open image: %s", strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        reply = trace_xasprintf("FAIL cannot stat image: %s", strerror(errno));
        goto out_close;
    }
    switch (st->kind) {
    case STEP_IMAGE_READ: {
        uint8_t *buf = trace_xrealloc(NULL, st->length);
        ssize_t n = full_pread(fd, buf, st->length, st->offset);
        reply = n < 0 ? trace_xasprintf("FAIL read: %s", strerror(-n))
                      : (size_t)n != st->length ? trace_xasprintf("FAIL short read: %zd bytes", n)
                      : trace_hex_encode(buf, st->length);
        free(buf);
        break;
    }
    case STEP_IMAGE_SAME: {
        enum { CHUNK = 65536 };
        uint8_t *want = trace_xrealloc(NULL, CHUNK), *got = trace_xrealloc(NULL, CHUNK);
        if ((uint64_t)sb.st_size != d->size) {
            reply = trace_xasprintf("FAIL image size is %jd, was %" PRIu64, (intmax_t)sb.st_size, d->size);
        }
        for (uint64_t off = 0; !reply && off < d->size; off += CHUNK) {
            size_t n = MIN((uint64_t)CHUNK, d->size - off);
            pattern_fill(d, off, want, n);
            ssize_t r = full_pread(fd, got, n, off);
            if (r != (ssize_t)n) {
                reply = trace_xasprintf("FAIL read at %" PRIu64 " failed", off);
            } else if (memcmp(want, got, n)) {
                size_t i = 0;
                while (want[i] == got[i]) {
                    i++;
                }
                reply = trace_xasprintf("FAIL image changed at offset %" PRIu64, off + i);
            }
        }
        free(want);
        free(got);
        if (!reply) {
            reply = trace_xstrdup("OK");
        }
        break;
    }
    case STEP_IMAGE_SHA256: {
        uint8_t *buf = trace_xrealloc(NULL, sb.st_size);
        uint8_t digest[32];
        char hex[65];
        if (full_pread(fd, buf, sb.st_size, 0) != sb.st_size ||
            gnutls_hash_fast(GNUTLS_DIG_SHA256, buf, sb.st_size, digest) < 0) {
            reply = trace_xstrdup("FAIL cannot hash image");
        } else {
            for (int i = 0; i < 32; i++) {
                sprintf(hex + 2 * i, "%02x", digest[i]);
            }
            reply = !strcmp(hex, st->sha256) ? trace_xstrdup("OK")
                                             : trace_xasprintf("FAIL sha256 is %s", hex);
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
    char *buf;                  /* received, not yet split into lines */
    size_t len, cap;
    unsigned timeout_ms;
    int sig_fd;                 /* signalfd for SIGINT/SIGTERM/SIGHUP, or -1 */
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
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        return e;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        /* QEMU does not exit when the channel closes: it must not outlive
         * the replayer, whatever ends it */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_UNBLOCK, &all, NULL);
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
    free(tg->buf);
    tg->buf = NULL;
    tg->len = tg->cap = 0;
    tg->pid = 0;
    return status;
}

/* Next line from the target (without '\n'), 0 = EOF, -ETIMEDOUT. */
static int target_read_line(struct target *tg, char **line)
{
    for (;;) {
        char *nl = tg->len ? memchr(tg->buf, '\n', tg->len) : NULL;
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
        if (tg->len == tg->cap) {
            if (tg->cap >= MAX_REPLY) {
                return -E2BIG;
            }
            tg->cap = tg->cap ? tg->cap * 2 : 65536;
            tg->buf = trace_xrealloc(tg->buf, tg->cap);
        }
        struct pollfd pfd[2] = {
            { .fd = tg->from_fd, .events = POLLIN },
            { .fd = tg->sig_fd, .events = POLLIN },
        };
        int r = poll(pfd, tg->sig_fd >= 0 ? 2 : 1, tg->timeout_ms);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return r < 0 ? -errno : -ETIMEDOUT;
        }
        if (tg->sig_fd >= 0 && (pfd[1].revents & POLLIN)) {
            return -EINTR;
        }
        ssize_t n = read(tg->from_fd, tg->buf + tg->len, tg->cap - tg->len);
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
    char *msg = trace_xrealloc(NULL, len + 1);
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
        } else if (ret == -EINTR) {
            return runner_fail(r, st, "interrupted by a signal");
        } else if (ret == -E2BIG) {
            return runner_fail(r, st, "reply longer than %u bytes", MAX_REPLY);
        } else if (ret < 0) {
            return runner_fail(r, st, "no reply within %u ms", r->tg.timeout_ms);
        }
        if (!strncmp(line, "IRQ ", 4)) {
            if (r->window >= 0) {
                struct entry *w = &r->got.v[r->window];
                trace_strv_push(&w->irqs, &w->nirqs, line);
            } else {
                trace_strv_push(&r->spare_irqs, &r->nspare, line);
            }
            continue;
        }
        *reply = line;
        return 0;
    }
}

static struct entry *new_entry(struct runner *r, const struct step *st)
{
    r->got.v = trace_xrealloc(r->got.v, (r->got.n + 1) * sizeof(*r->got.v));
    struct entry *e = &r->got.v[r->got.n++];
    *e = (struct entry){ .step = st, .line = st->line, .text = trace_xstrdup(st->text) };
    if (!r->grouped || !r->group_started) {
        r->window = r->got.n - 1;
        r->group_started = r->grouped;
    }
    return e;
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
        if (trace_value_reply(reply, &v)) {
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

/*
 * Wait, sending nothing, until the IRQ line st->send is in the current
 * window. For devices whose interrupt may follow the state a poll sees
 * (QEMU's legacy virtio can show ISR 1 before INTx rises).
 */
static int run_wait_irq(struct runner *r, const struct step *st)
{
    uint64_t deadline = clock_ns() + (uint64_t)st->poll_timeout_ms * 1000000;
    unsigned saved = r->tg.timeout_ms;
    int ret = 0;
    for (;;) {
        if (r->window >= 0) {
            const struct entry *w = &r->got.v[r->window];
            for (size_t i = 0; i < w->nirqs; i++) {
                if (!strcmp(w->irqs[i], st->send)) {
                    goto out;
                }
            }
        }
        uint64_t now = clock_ns();
        if (now >= deadline) {
            ret = runner_fail(r, st, "no '%s' within %u ms", st->send, st->poll_timeout_ms);
            goto out;
        }
        char *line = NULL;
        r->tg.timeout_ms = (deadline - now + 999999) / 1000000;
        int n = target_read_line(&r->tg, &line);
        if (n == 0) {
            ret = runner_fail(r, st, "the target closed the channel");
            goto out;
        } else if (n == -ETIMEDOUT) {
            continue;
        } else if (n < 0) {
            ret = runner_fail(r, st, "cannot read from the target: %s", strerror(-n));
            goto out;
        }
        if (strncmp(line, "IRQ ", 4) || r->window < 0) {
            ret = runner_fail(r, st, "unexpected line '%s'", line);
            free(line);
            goto out;
        }
        struct entry *w = &r->got.v[r->window];
        trace_strv_push(&w->irqs, &w->nirqs, line);
    }
out:
    r->tg.timeout_ms = saved;
    return ret;
}

static int run_pio(struct runner *r, const struct step *st, struct entry *e)
{
    size_t n = st->bytes / st->width;
    uint8_t *data = trace_xrealloc(NULL, st->bytes);
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
                e->reply = trace_xasprintf("FAIL access %zu: %s", i, reply);
            }
        } else if (trace_value_reply(reply, &v)) {
            e->reply = trace_xasprintf("FAIL access %zu: %s", i, reply);
        } else {
            for (unsigned b = 0; b < st->width; b++) {
                data[i * st->width + b] = v >> (8 * b);
            }
        }
        free(reply);
    }
    if (!ret && !e->reply) {
        e->reply = st->kind == STEP_PIO_OUT ? trace_xstrdup("OK") : trace_hex_encode(data, st->bytes);
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
        case STEP_WAIT_IRQ:
            ret = run_wait_irq(r, st);
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
        return trace_xasprintf("%.*s.expected", (int)(n - 6), trace);
    }
    return trace_xasprintf("%s.expected", trace);
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
            if (trace_parse_num(optarg, &v) || v == 0 || v > 3600) {
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
    struct runner r = { .trace = &t, .window = -1, .tg.sig_fd = -1 };
    struct entry_list want = { 0 };
    char *expected_path = expected_arg ? trace_xstrdup(expected_arg) : default_expected(trace_path);
    char *text = trace_read_file(trace_path);
    char **child_argv = NULL;
    size_t nchild = 0;
    char dir[] = "/tmp/diskdm-trace.XXXXXX";
    bool have_dir = false;

    signal(SIGPIPE, SIG_IGN);
    /* signals end the replay through the normal path, which stops the
     * target and removes the work directory */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGHUP);
    sigprocmask(SIG_BLOCK, &stop_set, NULL);
    r.tg.sig_fd = signalfd(-1, &stop_set, SFD_CLOEXEC | SFD_NONBLOCK);
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
        char *etext = trace_read_file(expected_path);
        if (!etext) {
            fprintf(stderr, PROG ": cannot read %s: %s (record it with --record)\n",
                    expected_path, strerror(errno));
            goto out;
        }
        int ret = trace_expected_parse(expected_path, etext, &want);
        free(etext);
        if (ret) {
            goto out;
        }
    }
    const char *tmpdir = getenv("TMPDIR");
    char *tmpl = trace_xasprintf("%s/diskdm-trace.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
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
        trace_strv_push(&child_argv, &nchild, trace_xstrdup(cmd[i]));
    }
    for (size_t i = 0; i < t.nargs; i++) {
        trace_strv_push(&child_argv, &nchild, trace_xstrdup(t.args[i]));
    }
    for (size_t i = 0; i < t.ndisks; i++) {
        const struct trace_disk *d = &t.disks[i];
        trace_strv_push(&child_argv, &nchild, trace_xstrdup("-drive"));
        trace_strv_push(&child_argv, &nchild,
                  d->path ? trace_xasprintf("file=%s,format=raw%s%s", d->path,
                                      *d->drive_opts ? "," : "", d->drive_opts)
                          : trace_xstrdup(d->drive_opts));
    }
    trace_strv_push(&child_argv, &nchild, NULL);
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
            trace_compare(&t, &gotp, &part, expected_path);
        }
        goto out;
    }
    for (size_t i = 0; i < r.got.n; i++) {
        if (r.got.v[i].nirqs > 1) {
            qsort(r.got.v[i].irqs, r.got.v[i].nirqs, sizeof(char *), trace_cmp_str);
        }
    }
    if (record) {
        status = trace_expected_write(expected_path, &t, &r.got) ? 1 : 0;
        if (!status) {
            printf("%s: %zu steps recorded from %s into %s\n", trace_path, r.got.n,
                   target_name, expected_path);
        }
    } else {
        status = trace_compare(&t, &r.got, &want, expected_path);
        if (!status) {
            printf("%s: %zu steps match %s against %s\n", trace_path, r.got.n,
                   expected_path, target_name);
        }
    }
out:
    if (have_dir) {
        remove_workdir(dir, &t);
    }
    if (r.tg.sig_fd >= 0) {
        close(r.tg.sig_fd);
    }
    for (size_t i = 0; i < nchild; i++) {
        free(child_argv[i]);
    }
    free(child_argv);
    for (size_t i = 0; i < r.nspare; i++) {
        free(r.spare_irqs[i]);
    }
    free(r.spare_irqs);
    trace_entries_free(&r.got);
    trace_entries_free(&want);
    trace_free(&t);
    free(text);
    free(expected_path);
    return status;
}
