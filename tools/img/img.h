/*
 * tools/img/img.h — shared by diskdm-img's subcommands: the command table
 * entry, and helpers for opening images, progress, JSON and sizes the way
 * qemu-img does them.
 */
#ifndef DISKDM_IMG_H
#define DISKDM_IMG_H

#include "block/block.h"

#include <pthread.h>
#include <stdio.h>

struct json_object;

/* Exit codes: 0 success, 1 failure. Usage errors also exit 1, as
 * qemu-img's do, so scripts written for qemu-img see the same codes. */
#define IMG_EXIT_FAIL 1
#define IMG_EXIT_USAGE 1

/* One subcommand. `run` gets argv with argv[0] = the subcommand name and
 * returns the process exit code. */
struct img_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *synopsis;       /* for --help and usage errors */
    /* The subcommand does not take --object (qemu-img bench); the others
     * get theirs checked and taken out of argv by main() before `run`. */
    bool no_object;
};

int img_cmd_create(int argc, char **argv);
int img_cmd_info(int argc, char **argv);
int img_cmd_check(int argc, char **argv);
int img_cmd_commit(int argc, char **argv);
int img_cmd_convert(int argc, char **argv);
int img_cmd_map(int argc, char **argv);
int img_cmd_compare(int argc, char **argv);
int img_cmd_rebase(int argc, char **argv);
int img_cmd_resize(int argc, char **argv);
int img_cmd_measure(int argc, char **argv);
int img_cmd_bench(int argc, char **argv);
int img_cmd_amend(int argc, char **argv);
int img_cmd_dd(int argc, char **argv);
int img_cmd_snapshot(int argc, char **argv);

/* Print "diskdm-img: MSG" and return IMG_EXIT_USAGE / IMG_EXIT_FAIL. */
int img_usage_error(const char *fmt, ...) PRINTF_FMT(1, 2);
int img_error(const char *fmt, ...) PRINTF_FMT(1, 2);
/* Print "Usage: diskdm-img SYNOPSIS" of subcommand `name` to `out`. */
void img_print_synopsis(FILE *out, const char *name);
/* --help of a subcommand: its synopsis; returns 0. */
int img_cmd_help(const char *name);
/* An option getopt refused: getopt already said why; add the hint. */
int img_bad_option(void);
/* An option getopt (with opterr = 0 and the option string starting with
 * ':') refused as `c` ('?' or ':'): qemu-img's "unrecognized
 * option 'X'" or "missing argument for option 'X'", and the hint. */
int img_bad_option_at(char **argv, int c);

/* How a subcommand opens an image. */
struct img_open_flags {
    bool read_only;
    bool force_share;           /* -U */
    bool image_opts;            /* --image-opts: filename is an option string */
    bool no_backing;            /* do not open the backing chain */
    bool has_cache;
    enum cache_mode cache;      /* -t / -T */
    const char *what;           /* message prefix; NULL = "Could not open" */
};

/*
 * Open an image as qemu-img does for a tool: `fmt` NULL probes. On
 * failure prints "diskdm-img: Could not open 'FILE': why" and returns
 * NULL.
 */
struct bdrv_node *img_open_ex(const char *filename, const char *fmt,
                              const struct img_open_flags *fl);
struct bdrv_node *img_open(const char *filename, const char *fmt, bool read_only,
                           bool force_share);

/* -t/-T argument: a cache mode name; -1 (message printed) when unknown. */
int img_parse_cache(const char *s, enum cache_mode *out);

/* "1 GiB", "4 KiB", "1.5 GiB": qemu's size_to_str (three significant
 * digits, binary units). Returns buf. */
char *img_size_to_str(uint64_t size, char *buf, size_t len);

/* A size argument with qemu-img's suffixes; -1 on bad input. */
int img_parse_size(const char *s, uint64_t *out);

/* -p: a percentage on stdout, redrawn in place, only when stdout is a
 * terminal; silent otherwise. */
struct img_progress {
    bool on;
    int last;                   /* last hundredth of a percent shown */
};
void img_progress_init(struct img_progress *p, bool wanted);
void img_progress_update(struct img_progress *p, uint64_t done, uint64_t total);
void img_progress_cb(void *opaque, uint64_t done, uint64_t total);
void img_progress_end(struct img_progress *p);

/* Check every --object in argv (argv[0] is the subcommand) as qemu-img
 * does and take them out, updating *argc. Returns -1 when the subcommand
 * should run, else the exit code (0 after a help listing). */
int img_objects_take(int *argc, char **argv);

/* -r: a rate limit in bytes per second with qemu-img's suffixes, 0 = no
 * limit. -1 after printing qemu-img's message. */
int img_parse_rate(const char *s, uint64_t *out);

/* Keeps a copy at or below `rate` bytes per second on average: each
 * caller waits until the bytes let through before it have had their
 * time. Safe to share between threads. */
struct img_ratelimit {
    pthread_mutex_t lock;
    uint64_t rate;              /* bytes per second; 0 = unlimited */
    uint64_t start_ns;
    uint64_t sent;              /* bytes let through so far */
};
void img_ratelimit_init(struct img_ratelimit *rl, uint64_t rate);
void img_ratelimit_wait(struct img_ratelimit *rl, uint64_t bytes);
void img_ratelimit_destroy(struct img_ratelimit *rl);

/* Print a JSON value laid out as qemu-img does (four-space indents). */
void img_json_print(struct json_object *v);

/* Open an option list "-o k=v,..." into the creation options qemu-img
 * knows for `fmt`. Returns 0 or prints and returns IMG_EXIT_FAIL.
 * *prealloc gets the preallocation name given (NULL = none); *backing
 * and *backing_fmt (may be NULL) get malloc'd copies for the caller. */
int img_parse_create_opts(const char *str, const char *fmt,
                          struct bdrv_create_opts *co, const char **prealloc,
                          char **backing, char **backing_fmt);
/* The same, printing errors as qemu-img does for that command: `all`
 * (e.g. "FILE: ") before each, `drv` (e.g. "FILE: error while converting
 * qcow2: ") before those the format driver raises; NULL for none. */
int img_parse_create_opts_in(const char *str, const char *fmt,
                             struct bdrv_create_opts *co, const char **prealloc,
                             char **backing, char **backing_fmt,
                             const char *all, const char *drv);
/* "-o help" for `fmt`. */
void img_print_create_help(const char *fmt);
/* Is `fmt` a driver the block layer knows? */
bool img_format_known(const char *fmt);

#endif
