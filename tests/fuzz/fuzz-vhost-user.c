/*
 * tests/fuzz/fuzz-vhost-user.c — the vhost-user-blk back end's message
 * parser and the rings it then walks, driven over its socket by a hostile
 * front end. The input is operations: messages (any request number, flags,
 * size and payload, with a memfd or eventfds attached on demand), writes
 * into the guest memory behind the memfd, kicks, event-loop turns and
 * hang-ups (the back end then takes a new connection).
 */
#include "hw/hw.h"
#include "tests/fuzz/fuzz-common.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define MEM_SIZE    (256u << 10)
#define MSG_MAX     (12 + 4096)

struct front {
    struct event_loop *loop;
    struct vub *v;
    int fd;                     /* our end, -1 after a hang-up */
    int memfd;
    int efd[4];                 /* kick/call/err candidates */
    uint8_t *mem;
};

static void turn(struct front *f, int n)
{
    for (int i = 0; i < n; i++) {
        ev_run_once(f->loop, 0);
    }
}

/* Replies are read and dropped so the back end never blocks writing. */
static void drain_replies(struct front *f)
{
    char buf[8192];
    while (f->fd >= 0 && recv(f->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
    }
}

static void connect_front(struct front *f)
{
    struct error *err = NULL;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        abort();
    }
    if (vub_attach(f->v, sv[0], &err) < 0) {
        abort();
    }
    f->fd = sv[1];
}

/*
 * One message: request byte, flags byte (version bit forced unless the
 * top bit asks for raw flags), fd selector byte, 16-bit size (under 512
 * unless its top bit asks for any 15-bit size, so most headers are good),
 * payload. The payload is sent whole (zero-padded) so the back end never
 * waits for bytes that will not come; a size over the limit sends the
 * header only.
 */
static void op_message(struct front *f, struct input *in)
{
    static uint8_t buf[MSG_MAX];
    uint32_t req = (uint32_t)take(in, 1);
    uint8_t fl = (uint8_t)take(in, 1);
    uint8_t fdsel = (uint8_t)take(in, 1);
    uint32_t size = (uint32_t)take(in, 2);
    size = (size & 0x8000) ? (size & 0x7fff) : (size & 0x1ff);
    uint32_t flags = (fl & 0x80) ? (fl & 0x7f) : (0x1u | (fl & 0x0c));
    uint32_t body = size <= 4096 ? size : 0;

    memcpy(buf, &req, 4);
    memcpy(buf + 4, &flags, 4);
    memcpy(buf + 8, &size, 4);
    memset(buf + 12, 0, body);
    for (uint32_t i = 0; i < body && in->left; i++) {
        buf[12 + i] = (uint8_t)take(in, 1);
    }

    /* fd selector: bit 0 memfd, bits 1-3 eventfds, bits 4-5 extra memfds */
    int fds[8], nfds = 0;
    if (fdsel & 1) {
        fds[nfds++] = f->memfd;
    }
    for (int i = 0; i < 3; i++) {
        if (fdsel & (2 << i)) {
            fds[nfds++] = f->efd[i];
        }
    }
    for (int i = 0; i < ((fdsel >> 4) & 3); i++) {
        fds[nfds++] = f->memfd;
    }
    char cbuf[CMSG_SPACE(8 * sizeof(int))];
    struct iovec iov = { .iov_base = buf, .iov_len = 12 + body };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (nfds) {
        memset(cbuf, 0, sizeof(cbuf));
        mh.msg_control = cbuf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    if (sendmsg(f->fd, &mh, MSG_NOSIGNAL) != (ssize_t)(12 + body)) {
        abort();
    }
    /* the back end reads one message per wake-up */
    for (int i = 0; i < 3 && vub_connected(f->v); i++) {
        turn(f, 1);
        drain_replies(f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_env *e = fuzz_env_get("/tmp/fuzz-vhost.XXXXXX");
    struct error *err = NULL;
    struct input in = { data, size };
    struct front f = { .fd = -1 };
    struct bdrv_open_opts o;
    char opts[160];
    bool ro = size && (data[0] & 1);

    log_init("fuzz-vhost-user", LOG_ERROR);
    f.loop = ev_loop_new(&err);
    if (!f.loop) {
        abort();
    }
    snprintf(opts, sizeof(opts), "driver=raw,file.filename=%s%s", e->img,
             ro ? ",read-only=on" : "");
    if (bdrv_open_opts_parse(opts, &o, &err)) {
        abort();
    }
    struct blk_backend *blk = blk_open(f.loop, &o, NULL, &err);
    bdrv_open_opts_free(&o);
    if (!blk) {
        abort();
    }
    f.v = vub_new(f.loop, &(struct vub_config){ .blk = blk, .serial = "fz",
                  .num_queues = 2 }, &err);
    f.memfd = memfd_create("guest", MFD_CLOEXEC);
    if (!f.v || f.memfd < 0 || ftruncate(f.memfd, MEM_SIZE) < 0) {
        abort();
    }
    f.mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f.memfd, 0);
    if (f.mem == MAP_FAILED) {
        abort();
    }
    for (int i = 0; i < 4; i++) {
        f.efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (f.efd[i] < 0) {
            abort();
        }
    }
    connect_front(&f);
    take(&in, 1);

    while (in.left) {
        uint8_t op = (uint8_t)take(&in, 1);
        if (!vub_connected(f.v)) {
            /* the back end dropped us: a new front end connects */
            if (f.fd >= 0) {
                close(f.fd);
            }
            connect_front(&f);
        }
        switch (op & 7) {
        case 0: case 1: case 2: case 3:
            op_message(&f, &in);
            break;
        case 4: {           /* guest memory: 18-bit offset, length, bytes */
            uint32_t off = (uint32_t)take(&in, 3) & (MEM_SIZE - 1);
            uint32_t len = (uint32_t)take(&in, 1);
            for (uint32_t i = 0; i < len && off + i < MEM_SIZE && in.left; i++) {
                f.mem[off + i] = (uint8_t)take(&in, 1);
            }
            break;
        }
        case 5: {           /* kick through one of the eventfds */
            uint64_t one = 1;
            if (write(f.efd[(op >> 3) % 3], &one, 8) != 8) {
                /* counter saturated: nothing to do */
            }
            turn(&f, 2);
            drain_replies(&f);
            break;
        }
        case 6:
            turn(&f, 1 + (op >> 3));
            drain_replies(&f);
            break;
        case 7:             /* hang up mid-stream */
            close(f.fd);
            f.fd = -1;
            turn(&f, 2);
            if (vub_connected(f.v)) {
                abort();
            }
            break;
        }
    }

    vub_free(f.v);
    if (f.fd >= 0) {
        close(f.fd);
    }
    blk_free(blk);
    ev_loop_free(f.loop);
    munmap(f.mem, MEM_SIZE);
    close(f.memfd);
    for (int i = 0; i < 4; i++) {
        close(f.efd[i]);
    }
    return 0;
}
