/*
 * tests/unit/qcow2-test.h — helpers shared by the qcow2 unit tests: the
 * test directory, shell commands run in it, opening an image there as
 * qcow2, comparing a node with a raw reference, and poking header bytes.
 * The including file defines setup() (it sets `dir`).
 */
#ifndef DISKDM_QCOW2_TEST_H
#define DISKDM_QCOW2_TEST_H

#include "tests/unit/block-test.h"

#include <inttypes.h>
#include <stdarg.h>

static char *dir;

static inline void teardown(void)
{
    bt_rmtree(dir);
    free(dir);
}

/* Run a shell command (in the test dir); returns its exit status. */
static inline int sh(const char *fmt, ...) PRINTF_FMT(1, 2);
static inline int sh(const char *fmt, ...)
{
    char *cmd = NULL, *full = NULL;
    va_list ap;
    va_start(ap, fmt);
    ck_assert_int_ge(vasprintf(&cmd, fmt, ap), 0);
    va_end(ap);
    ck_assert_int_ge(asprintf(&full, "cd '%s' && ( %s ) >>log 2>&1", dir, cmd), 0);
    int st = system(full);
    free(cmd);
    free(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static inline char *path(const char *name)
{
    char *p = NULL;
    ck_assert_int_ge(asprintf(&p, "%s/%s", dir, name), 0);
    return p;
}

static inline struct bdrv_node *open_fmt(const char *name, const char *extra)
{
    char *s = NULL;
    ck_assert_int_ge(asprintf(&s, "driver=qcow2,file.filename=%s/%s%s%s", dir, name,
                              extra[0] ? "," : "", extra), 0);
    struct error *err = NULL;
    struct bdrv_node *bs = bt_open(s, &err);
    ck_assert_msg(bs != NULL, "open '%s': %s", s, err ? err->msg : "?");
    free(s);
    return bs;
}

/* Every byte of `bs` equals the raw file `ref`. */
static inline void assert_same_as_raw(struct bdrv_node *bs, const char *ref)
{
    char *rp = path(ref);
    int fd = open(rp, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    int64_t len = bdrv_getlength(bs);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_int_eq(len, st.st_size);
    size_t chunk = 1 << 20;
    uint8_t *a = malloc(chunk), *b = malloc(chunk);
    for (int64_t off = 0; off < len; off += chunk) {
        size_t n = MIN((int64_t)chunk, len - off);
        ck_assert_int_eq(bdrv_pread(bs, off, a, n), 0);
        ck_assert_int_eq(full_pread(fd, b, n, off), (ssize_t)n);
        if (memcmp(a, b, n)) {
            size_t i = 0;
            while (a[i] == b[i]) {
                i++;
            }
            ck_abort_msg("%s differs from %s at byte %" PRId64 ": %02x vs %02x",
                         bdrv_filename(bs), ref, off + (int64_t)i, a[i], b[i]);
        }
    }
    free(a);
    free(b);
    close(fd);
    free(rp);
}

static inline void poke(const char *name, long off, const void *data, size_t len)
{
    char *p = path(name);
    int fd = open(p, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(full_pwrite(fd, data, len, off), (ssize_t)len);
    close(fd);
    free(p);
}
static inline void poke64(const char *name, long off, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(v >> (56 - 8 * i));
    }
    poke(name, off, b, 8);
}
static inline void poke32(const char *name, long off, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    poke(name, off, b, 4);
}
static inline uint64_t peek64(const char *name, long off)
{
    char *p = path(name);
    int fd = open(p, O_RDONLY);
    uint8_t b[8];
    ck_assert_int_eq(full_pread(fd, b, 8, off), 8);
    close(fd);
    free(p);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | b[i];
    }
    return v;
}

#endif
