/*
 * tests/fuzz/fuzz-common.h — pieces the device fuzzers share: a scratch
 * 1 MiB image made once per process (libFuzzer runs many inputs in one)
 * and removed at exit, and reading the input as little-endian fields.
 */
#ifndef DISKDM_FUZZ_COMMON_H
#define DISKDM_FUZZ_COMMON_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fuzz_env {
    char dir[64];
    char img[96];
};

static struct fuzz_env fuzz_env_state;

static inline void fuzz_env_cleanup(void)
{
    unlink(fuzz_env_state.img);
    rmdir(fuzz_env_state.dir);
}

/* The process's scratch image, made on first use in a directory named
 * after `tmpl` (a mkdtemp template). */
static inline struct fuzz_env *fuzz_env_get(const char *tmpl)
{
    static bool ready;
    struct fuzz_env *env = &fuzz_env_state;
    if (ready) {
        return env;
    }
    snprintf(env->dir, sizeof(env->dir), "%s", tmpl);
    if (!mkdtemp(env->dir)) {
        abort();
    }
    snprintf(env->img, sizeof(env->img), "%s/v.img", env->dir);
    int fd = open(env->img, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 1 << 20) < 0) {
        abort();
    }
    close(fd);
    atexit(fuzz_env_cleanup);
    ready = true;
    return env;
}

/* Bytes of the input, consumed front to back; zeros once it runs out. */
struct input {
    const uint8_t *p;
    size_t left;
};

static inline uint64_t take(struct input *in, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        uint8_t b = 0;
        if (in->left) {
            b = *in->p++;
            in->left--;
        }
        v |= (uint64_t)b << (8 * i);
    }
    return v;
}

#endif
