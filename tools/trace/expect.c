/*
 * tools/trace/expect.c — what diskdm-trace compares: replies with the
 * trace's masks applied, '?' wildcards, IRQ lines per step, the readable
 * diff, and the expected file's format (read and written).
 */
#include "tools/trace/trace.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int trace_value_reply(const char *reply, uint64_t *v)
{
    if (strncmp(reply, "OK 0x", 5)) {
        return -EINVAL;
    }
    return trace_parse_num(reply + 3, v);
}

char *trace_hex_encode(const uint8_t *buf, size_t len)
{
    char *s = trace_xrealloc(NULL, 5 + 2 * len + 1);
    strcpy(s, "OK 0x");
    for (size_t i = 0; i < len; i++) {
        sprintf(s + 5 + 2 * i, "%02x", buf[i]);
    }
    return s;
}

/* ------------------------------------------------------------------ */
/* Masks and comparison                                                */
/* ------------------------------------------------------------------ */

/* Apply the step's masks to a reply: masked bytes of an "OK 0x<hex>"
 * payload become '?', masked bits of a value are cleared and noted. */
char *trace_mask_reply(const struct step *st, const char *reply)
{
    if (!reply) {
        /* The target went away before answering this step. */
        return trace_xstrdup("(no reply)");
    }
    if (!st || (!st->nranges && !st->mask_bits)) {
        return trace_xstrdup(reply);
    }
    if (st->mask_bits) {
        uint64_t v;
        if (trace_value_reply(reply, &v)) {
            return trace_xstrdup(reply);
        }
        int digits = (int)strlen(reply) - 5;
        return trace_xasprintf("OK 0x%0*" PRIx64 " (masked 0x%" PRIx64 ")", digits,
                         v & ~st->mask_bits, st->mask_bits);
    }
    char *s = trace_xstrdup(reply);
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
bool trace_reply_matches(const char *want, const char *got)
{
    for (; *want && *got; want++, got++) {
        if (*want != '?' && *want != *got) {
            return false;
        }
    }
    return !*want && !*got;
}

/*
 * Print a mismatched reply pair; long ones (sector data) only around the
 * first difference, so a diff stays readable.
 */
static void print_reply_diff(const char *want, const char *got)
{
    enum { SHOW = 96, BEFORE = 24 };
    size_t lw = strlen(want), lg = strlen(got);
    if (lw <= SHOW && lg <= SHOW) {
        fprintf(stderr, "    expected: %s\n    got:      %s\n", want, got);
        return;
    }
    size_t i = 0;
    while (i < lw && i < lg && (want[i] == '?' || want[i] == got[i])) {
        i++;
    }
    size_t from = i > BEFORE ? i - BEFORE : 0;
    if (!strncmp(want, "OK 0x", 5) && i >= 5) {
        fprintf(stderr, "    first difference at data byte %zu (expected %zu bytes, got %zu)\n",
                (i - 5) / 2, (lw - 5) / 2, lg >= 5 ? (lg - 5) / 2 : 0);
    } else {
        fprintf(stderr, "    first difference at character %zu (expected %zu characters, got %zu)\n",
                i, lw, lg);
    }
    fprintf(stderr, "    expected: %s%.*s%s\n", from ? "..." : "", SHOW,
            want + MIN(from, lw), from + SHOW < lw ? "..." : "");
    fprintf(stderr, "    got:      %s%.*s%s\n", from ? "..." : "", SHOW,
            got + MIN(from, lg), from + SHOW < lg ? "..." : "");
}

int trace_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void trace_entries_free(struct entry_list *l)
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
int trace_compare(const struct trace *t, struct entry_list *got,
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
        char *masked = trace_mask_reply(g->step, g->reply);
        bool irq_same = g->nirqs == w->nirqs;
        for (size_t j = 0; irq_same && j < g->nirqs; j++) {
            irq_same = !strcmp(g->irqs[j], w->irqs[j]);
        }
        bool reply_same = trace_reply_matches(w->reply, masked);
        if (!reply_same || !irq_same) {
            diffs++;
            fprintf(stderr, "%s:%d: %s\n", t->path, g->line, g->text);
            if (!reply_same) {
                print_reply_diff(w->reply, masked);
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
int trace_expected_write(const char *path, const struct trace *t,
                          const struct entry_list *l)
{
    char *tmp = trace_xasprintf("%s.tmp", path);
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
        char *masked = trace_mask_reply(e->step, e->reply);
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

char *trace_read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }
    char *buf = trace_xrealloc(NULL, sb.st_size + 1);
    ssize_t n = full_read(fd, buf, sb.st_size);
    close(fd);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

int trace_expected_parse(const char *path, char *text, struct entry_list *l)
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
            l->v = trace_xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
            cur = &l->v[l->n++];
            *cur = (struct entry){ .line = n, .text = trace_xstrdup(end + 1) };
            continue;
        }
        if (!cur) {
            fprintf(stderr, PROG ": %s:%d: reply outside an entry\n", path, lineno);
            return -EINVAL;
        }
        if (cur->reply) {
            trace_strv_push(&cur->irqs, &cur->nirqs, cur->reply);
        }
        cur->reply = trace_xstrdup(line);
    }
    for (size_t i = 0; i < l->n; i++) {
        if (!l->v[i].reply) {
            fprintf(stderr, PROG ": %s: entry '@%d %s' has no reply\n", path,
                    l->v[i].line, l->v[i].text);
            return -EINVAL;
        }
        if (l->v[i].nirqs > 1) {
            qsort(l->v[i].irqs, l->v[i].nirqs, sizeof(char *), trace_cmp_str);
        }
    }
    return 0;
}
