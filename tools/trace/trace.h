/*
 * tools/trace/trace.h — diskdm-trace's shared types: a parsed trace (steps,
 * disks, masks), the entries a replay records or an expected file holds,
 * and the helpers parse.c (trace syntax) and expect.c (masks, comparison,
 * expected files) give trace.c (the replayer and main).
 */
#ifndef DISKDM_TOOLS_TRACE_H
#define DISKDM_TOOLS_TRACE_H

#include "util/util.h"

#define PROG "diskdm-trace"
#define MAX_DIFFS 25
#define MAX_REPLY (64u << 20)   /* longest reply line accepted */

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
    STEP_WAIT_IRQ,      /* !wait irq raise|lower N: until that line arrives */
};

struct byte_range {
    size_t first, last;         /* inclusive */
};

struct step {
    enum step_kind kind;
    int line;                   /* 1-based line in the trace */
    char *text;                 /* the trace line, the step's name in reports */
    char *send;                 /* CMD, RAW, POLL: the bytes sent (no '\n');
                                 * WAIT_IRQ: the IRQ line awaited */
    size_t send_len;
    /* POLL */
    uint64_t poll_mask, poll_value;
    bool poll_ne;
    unsigned poll_timeout_ms;   /* also WAIT_IRQ's */
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

/* parse.c: allocation that exits on failure, and the trace syntax */
void *trace_xrealloc(void *p, size_t n);
char *trace_xstrdup(const char *s);
char *trace_xasprintf(const char *fmt, ...) PRINTF_FMT(1, 2);
void trace_strv_push(char ***v, size_t *n, char *s);
/* A whole string as a number, base 0; 0 or -EINVAL. */
int trace_parse_num(const char *s, uint64_t *out);
/* Parse `text` (modified in place) into *t; errors are printed with the
 * trace's file name and line. 0 or -EINVAL. */
int trace_parse(struct trace *t, char *text);
void trace_free(struct trace *t);

/* expect.c: replies, masks, comparison and expected files */
/* The value of an "OK 0x..." reply; 0 or -EINVAL. */
int trace_value_reply(const char *reply, uint64_t *v);
/* "OK 0x" and the bytes in hex, as the protocol's `read` replies. */
char *trace_hex_encode(const uint8_t *buf, size_t len);
/* The reply with the step's !mask applied (malloc'd). */
char *trace_mask_reply(const struct step *st, const char *reply);
bool trace_reply_matches(const char *want, const char *got);
int trace_cmp_str(const void *a, const void *b);
void trace_entries_free(struct entry_list *l);
/* Compare a replay with the expected entries, printing a diff; 0 = same. */
int trace_compare(const struct trace *t, struct entry_list *got,
                  struct entry_list *want, const char *expected_path);
int trace_expected_write(const char *path, const struct trace *t,
                         const struct entry_list *l);
int trace_expected_parse(const char *path, char *text, struct entry_list *l);
/* A whole file, NUL-terminated (malloc'd), or NULL with errno set. */
char *trace_read_file(const char *path);

#endif
