/*
 * tools/img/img.h — shared by diskdm-img's subcommands: the command table
 * entry, and helpers for opening images and printing sizes the way
 * qemu-img does.
 */
#ifndef DISKDM_IMG_H
#define DISKDM_IMG_H

#include "block/block.h"

/* Exit codes: 0 success, 1 failure, 2 usage error (as every diskdm program). */
#define IMG_EXIT_FAIL 1
#define IMG_EXIT_USAGE 2

/* One subcommand. `run` gets argv with argv[0] = the subcommand name and
 * returns the process exit code. */
struct img_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *synopsis;       /* for --help */
};

int img_cmd_create(int argc, char **argv);
int img_cmd_info(int argc, char **argv);

/* Print "diskdm-img: MSG" and return IMG_EXIT_USAGE / IMG_EXIT_FAIL. */
int img_usage_error(const char *fmt, ...) PRINTF_FMT(1, 2);
int img_error(const char *fmt, ...) PRINTF_FMT(1, 2);

/*
 * Open an image as qemu-img does for a tool: `fmt` NULL probes; read_only
 * opens without any write descriptor; force_share (-U) shares everything.
 * On failure prints "diskdm-img: Could not open 'FILE': why" and returns
 * NULL.
 */
struct bdrv_node *img_open(const char *filename, const char *fmt, bool read_only,
                           bool force_share);

/* "1 GiB", "4 KiB", "1.5 GiB": qemu's size_to_str (three significant
 * digits, binary units). Returns buf. */
char *img_size_to_str(uint64_t size, char *buf, size_t len);

/* A size argument with qemu-img's suffixes; -1 on bad input. */
int img_parse_size(const char *s, uint64_t *out);

#endif
