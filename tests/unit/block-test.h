/*
 * tests/unit/block-test.h — helpers shared by the block layer's unit
 * tests: temporary images, opening from option strings, scanning this
 * process's descriptors, and running a check as an unprivileged user.
 */
#ifndef DISKDM_BLOCK_TEST_H
#define DISKDM_BLOCK_TEST_H

#include "block/block.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOBODY 65534

/* A private directory everyone may enter (the unprivileged child must). */
static inline char *bt_tmpdir(void)
{
    char *d = strdup("/tmp/diskdm-block-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d));
    ck_assert_int_eq(chmod(d, 0755), 0);
    return d;
}

static inline void bt_rmtree(const char *dir)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Create dir/name of `size` bytes, byte i = (i * 7 + seed) & 0xff. */
static inline char *bt_image(const char *dir, const char *name, size_t size, int seed)
{
    char *path = NULL;
    ck_assert_int_ge(asprintf(&path, "%s/%s", dir, name), 0);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    uint8_t *buf = malloc(size ? size : 1);
    for (size_t i = 0; i < size; i++) {
        buf[i] = (uint8_t)(i * 7 + seed);
    }
    ck_assert_int_eq(full_pwrite(fd, buf, size, 0), (ssize_t)size);
    free(buf);
    close(fd);
    return path;
}

/* Open from an option string; on failure *errp holds the message. */
static inline struct bdrv_node *bt_open(const char *str, struct error **errp)
{
    struct bdrv_open_opts o;
    int ret = bdrv_open_opts_parse(str, &o, errp);
    if (ret < 0) {
        return NULL;
    }
    struct bdrv_node *bs = bdrv_open(&o, errp);
    bdrv_open_opts_free(&o);
    return bs;
}

static inline struct bdrv_node *bt_open_ok(const char *fmt, const char *path)
{
    char *s = NULL;
    ck_assert_int_ge(asprintf(&s, fmt, path), 0);
    struct error *err = NULL;
    struct bdrv_node *bs = bt_open(s, &err);
    ck_assert_msg(bs != NULL, "open '%s': %s", s, err ? err->msg : "?");
    free(s);
    return bs;
}

/* Open expected to fail: returns the message (caller frees). */
static inline char *bt_open_fail(const char *fmt, const char *path, int *errnum)
{
    char *s = NULL;
    ck_assert_int_ge(asprintf(&s, fmt, path), 0);
    struct error *err = NULL;
    struct bdrv_node *bs = bt_open(s, &err);
    ck_assert_msg(bs == NULL, "open '%s' should have failed", s);
    ck_assert_ptr_nonnull(err);
    char *msg = strdup(err->msg);
    if (errnum) {
        *errnum = err->errnum;
    }
    error_free(err);
    free(s);
    return msg;
}

/* Count this process's descriptors on `path` by access mode; *with_flag
 * (if not NULL) counts those that also have `flag` (e.g. O_DIRECT). */
static inline void bt_count_fds_flag(const char *path, int *rd, int *wr,
                                     unsigned long flag, int *with_flag)
{
    char real[PATH_MAX];
    ck_assert_ptr_nonnull(realpath(path, real));
    *rd = *wr = 0;
    if (with_flag) {
        *with_flag = 0;
    }
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char link[300], target[PATH_MAX];
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n < 0) {
            continue;
        }
        target[n] = 0;
        if (strcmp(target, real)) {
            continue;
        }
        char info[300], line[256];
        snprintf(info, sizeof(info), "/proc/self/fdinfo/%s", e->d_name);
        FILE *f = fopen(info, "r");
        if (!f) {
            continue;
        }
        unsigned long flags = 0;
        while (fgets(line, sizeof(line), f)) {
            if (sscanf(line, "flags: %lo", &flags) == 1) {
                break;
            }
        }
        fclose(f);
        if ((flags & O_ACCMODE) == O_RDONLY) {
            (*rd)++;
        } else {
            (*wr)++;
        }
        if (with_flag && (flags & flag) == flag) {
            (*with_flag)++;
        }
    }
    closedir(d);
}

static inline void bt_count_fds(const char *path, int *rd, int *wr)
{
    bt_count_fds_flag(path, rd, wr, 0, NULL);
}

static inline int bt_write_fds(const char *path)
{
    int rd, wr;
    bt_count_fds(path, &rd, &wr);
    return wr;
}

/*
 * Run fn(arg) in a child that dropped to uid/gid 65534 (root ignores file
 * modes, so the unprivileged cases need it); returns fn's exit status
 * (0 = pass). Checks inside fn report with fprintf and return 1. Run by
 * an ordinary user the child is unprivileged already and keeps its ids.
 */
static inline int bt_as_nobody(int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (geteuid() == 0 &&
            (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
             setresuid(NOBODY, NOBODY, NOBODY) < 0)) {
            perror("drop privileges");
            _exit(99);
        }
        _exit(fn(arg));
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st), "child killed by signal %d", WTERMSIG(st));
    return WEXITSTATUS(st);
}

#define BT_CHECK(cond, ...) do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__); \
            fprintf(stderr, "\n"); \
            return 1; \
        } \
    } while (0)

/* md5-free change detection: whole-file compare plus mtime. */
struct bt_snapshot {
    uint8_t *data;
    size_t len;
    struct timespec mtime;
};

static inline void bt_snap(const char *path, struct bt_snapshot *s)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    s->len = st.st_size;
    s->mtime = st.st_mtim;
    s->data = malloc(s->len ? s->len : 1);
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(full_pread(fd, s->data, s->len, 0), (ssize_t)s->len);
    close(fd);
}

static inline bool bt_unchanged(const char *path, const struct bt_snapshot *s)
{
    struct bt_snapshot now;
    bt_snap(path, &now);
    bool same = now.len == s->len && !memcmp(now.data, s->data, s->len) &&
                now.mtime.tv_sec == s->mtime.tv_sec && now.mtime.tv_nsec == s->mtime.tv_nsec;
    free(now.data);
    return same;
}

static inline int bt_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
