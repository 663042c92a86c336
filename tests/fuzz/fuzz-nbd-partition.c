/*
 * tests/fuzz/fuzz-nbd-partition.c — diskdm-nbd's -P lookup (MBR primary
 * and logical partitions, GPT) over an image whose first bytes are the
 * input: the first two bytes give the disk's size in 64 KiB units beyond
 * the input, so tables may point past the data or past the disk. A found
 * partition must lie inside the disk; a miss must say why.
 */
#include "tools/nbd/partition.c"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* libFuzzer keeps one process for many inputs: one image file, rewritten. */
struct fuzz_env {
    char dir[64];
    char img[96];
    struct event_loop *loop;
};

static struct fuzz_env env;

static void env_cleanup(void)
{
    unlink(env.img);
    rmdir(env.dir);
}

static struct fuzz_env *env_get(void)
{
    static bool ready;
    struct error *err = NULL;
    if (ready) {
        return &env;
    }
    strcpy(env.dir, "/tmp/fuzz-partition.XXXXXX");
    if (!mkdtemp(env.dir)) {
        abort();
    }
    snprintf(env.img, sizeof(env.img), "%s/p.img", env.dir);
    env.loop = ev_loop_new(&err);
    if (!env.loop) {
        abort();
    }
    atexit(env_cleanup);
    ready = true;
    return &env;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_env *e = env_get();
    struct error *err = NULL;
    struct bdrv_open_opts o;
    char opts[160];

    if (size < 2) {
        return 0;
    }
    uint64_t disk = (size - 2) + (uint64_t)(data[0] | data[1] << 8) * 65536;
    int fd = open(e->img, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || (size > 2 && write(fd, data + 2, size - 2) != (ssize_t)(size - 2)) ||
        ftruncate(fd, (off_t)disk) < 0) {
        abort();
    }
    close(fd);
    snprintf(opts, sizeof(opts), "driver=raw,file.filename=%s,read-only=on", e->img);
    if (bdrv_open_opts_parse(opts, &o, &err)) {
        abort();
    }
    struct blk_backend *blk = blk_open(e->loop, &o, NULL, &err);
    bdrv_open_opts_free(&o);
    if (!blk) {
        abort();
    }
    static const int nums[] = { 0, 1, 2, 4, 5, 6, 9, 128, 129 };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        uint64_t off = 0, len = 0;
        int rc = nbd_find_partition(blk, nums[i], &off, &len, &err);
        if (rc == 0) {
            if (err || len == 0 || off > disk || len > disk - off) {
                abort();
            }
        } else if (!err || !err->msg) {
            abort();
        }
        error_free(err);
        err = NULL;
    }
    blk_free(blk);
    return 0;
}
