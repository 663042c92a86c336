/*
 * tests/fuzz/fuzz-qtest.c — random qtest command streams against a fresh
 * machine with two IDE disks (the first read-only when the input starts
 * with '!', writable with discard=unmap otherwise), an ATAPI CD-ROM with
 * media and an empty one, laid out as the traces in tests/traces/ expect:
 * the transport and every device behind it must answer without crashing,
 * hanging or touching memory outside RAM.
 */
#include "hw/hw.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libFuzzer keeps one process for many inputs: the images and the null
 * output are made once. */
struct fuzz_env {
    char dir[64];
    char hd[96], hd1[96], cd[96];
    int null_fd;
};

static struct fuzz_env env;

static void env_cleanup(void)
{
    unlink(env.hd);
    unlink(env.hd1);
    unlink(env.cd);
    rmdir(env.dir);
}

static struct fuzz_env *env_get(void)
{
    static bool ready;
    if (ready) {
        return &env;
    }
    strcpy(env.dir, "/tmp/fuzz-qtest.XXXXXX");
    if (!mkdtemp(env.dir)) {
        abort();
    }
    snprintf(env.hd, sizeof(env.hd), "%s/hd.img", env.dir);
    snprintf(env.hd1, sizeof(env.hd1), "%s/hd1.img", env.dir);
    snprintf(env.cd, sizeof(env.cd), "%s/cd.img", env.dir);
    const char *files[] = { env.hd, env.hd1, env.cd };
    const off_t sizes[] = { 4 << 20, 1 << 20, 4 << 20 };
    for (int i = 0; i < 3; i++) {
        int fd = open(files[i], O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || ftruncate(fd, sizes[i]) < 0) {
            abort();
        }
        close(fd);
    }
    env.null_fd = open("/dev/null", O_WRONLY);
    if (env.null_fd < 0) {
        abort();
    }
    atexit(env_cleanup);
    ready = true;
    return &env;
}

static struct blk_backend *attach(struct event_loop *loop, struct machine *m,
                                  const char *drive)
{
    struct error *err = NULL;
    struct disk_spec spec;
    struct bdrv_open_opts o;
    struct blk_backend *blk = NULL;
    struct blk_config bc = { 0 };
    if (disk_spec_parse_drive(drive, &spec, &err) || disk_spec_resolve(&spec, &err)) {
        abort();
    }
    bdrv_open_opts_init(&o);
    if (spec.file && *spec.file) {
        if (bdrv_open_opts_from_spec(&spec, &o, &err)) {
            abort();
        }
        blk = blk_open(loop, &o, &bc, &err);
    } else {
        blk = blk_new(loop, NULL, &bc);
    }
    if (!blk || machine_attach_disk(m, &spec, blk, &err)) {
        abort();
    }
    bdrv_open_opts_free(&o);
    disk_spec_free(&spec);
    return blk;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_env *env = env_get();
    struct error *err = NULL;
    char drive[256];
    struct blk_backend *blks[4];

    struct event_loop *loop = ev_loop_new(&err);
    struct machine_config cfg = { .ram_size = 2 << 20 };
    struct machine *m = loop ? machine_new(loop, &cfg, &err) : NULL;
    if (!m) {
        abort();
    }
    bool ro = size && data[0] == '!';
    snprintf(drive, sizeof(drive), "file=%s,format=raw,if=ide,index=0%s", env->hd,
             ro ? ",readonly=on" : ",discard=unmap");
    blks[0] = attach(loop, m, drive);
    snprintf(drive, sizeof(drive), "file=%s,format=raw,if=ide,index=1", env->hd1);
    blks[1] = attach(loop, m, drive);
    snprintf(drive, sizeof(drive), "file=%s,format=raw,if=ide,index=2,media=cdrom", env->cd);
    blks[2] = attach(loop, m, drive);
    blks[3] = attach(loop, m, "if=ide,index=3,media=cdrom");
    struct qtest_server *qs = qtest_server_new(m, loop, -1, env->null_fd, NULL, NULL, &err);
    if (!qs) {
        abort();
    }
    qtest_handle_line(qs, "irq_intercept_in ioapic");

    /* one request per input line; completions run between requests */
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    for (char *line = text, *next; line; line = next) {
        char *nl = memchr(line, '\n', size - (line - text));
        next = nl ? nl + 1 : NULL;
        if (nl) {
            *nl = 0;
        }
        qtest_handle_line(qs, line);
        ev_run_once(loop, 0);
        if (!next || next >= text + size) {
            break;
        }
    }
    free(text);

    qtest_server_free(qs);
    machine_free(m);
    for (int i = 0; i < 4; i++) {
        blk_free(blks[i]);
    }
    ev_loop_free(loop);
    return 0;
}
