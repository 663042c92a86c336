/*
 * tests/unit/test-hw-vhost-user.c — the vhost-user-blk back end driven
 * through its socket as a front end would: negotiation, config, a memfd
 * memory table, a split ring in it, requests and their completions on the
 * call eventfd, read-only (fixed and at run time), and hostile messages.
 */
#include "hw-test.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#define MEM_SIZE    (1u << 20)
#define MEM_GPA     0x100000ull
#define MEM_UVA     0x7f1200000000ull
#define QSZ         8
#define DESC_OFF    0x0             /* ring layout inside guest memory */
#define AVAIL_OFF   0x1000
#define USED_OFF    0x2000
#define HDR_OFF     0x3000
#define DATA_OFF    0x10000
#define STATUS_OFF  0x4000

struct vt {
    struct hwt h;
    struct vub *v;
    int fd;                 /* our (front end) end */
    int memfd, kick, call, err;
    uint8_t *mem;
    int closed;
    uint16_t avail_idx;
};

struct msg {
    uint32_t request, flags, size;
    uint8_t payload[512];
} __attribute__((packed));

static void on_close(void *opaque)
{
    ((struct vt *)opaque)->closed++;
}

static void send_msg(struct vt *t, uint32_t req, uint32_t flags,
                     const void *payload, uint32_t size, const int *fds,
                     int nfds)
{
    struct msg m = { .request = req, .flags = 1 | flags, .size = size };
    char cbuf[CMSG_SPACE(8 * sizeof(int))];
    struct iovec iov = { .iov_base = &m, .iov_len = 12 + size };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

    if (size)
        memcpy(m.payload, payload, size);
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
    ck_assert_int_eq(sendmsg(t->fd, &mh, 0), (ssize_t)(12 + size));
    for (int i = 0; i < 3; i++)
        ev_run_once(t->h.loop, 0);
}

/* Read one reply; returns its payload size. */
static uint32_t recv_reply(struct vt *t, uint32_t req, void *payload)
{
    struct msg m;
    ck_assert_int_eq(full_read(t->fd, &m, 12), 12);
    ck_assert_uint_eq(m.request, req);
    ck_assert_uint_eq(m.flags, 0x5);
    ck_assert_uint_le(m.size, sizeof(m.payload));
    ck_assert_int_eq(full_read(t->fd, m.payload, m.size), (ssize_t)m.size);
    memcpy(payload, m.payload, m.size);
    return m.size;
}

static uint64_t get_u64(struct vt *t, uint32_t req)
{
    uint64_t v;
    send_msg(t, req, 0, NULL, 0, NULL, 0);
    ck_assert_uint_eq(recv_reply(t, req, &v), 8);
    return v;
}

/* Send with NEED_REPLY (REPLY_ACK negotiated); returns the ack value. */
static uint64_t acked(struct vt *t, uint32_t req, const void *p, uint32_t size,
                      const int *fds, int nfds)
{
    uint64_t v;
    send_msg(t, req, 0x8, p, size, fds, nfds);
    ck_assert_uint_eq(recv_reply(t, req, &v), 8);
    return v;
}

static void vt_init(struct vt *t, const char *opts)
{
    struct error *err = NULL;
    struct bdrv_open_opts o;
    char *str = NULL;
    int sv[2];

    memset(t, 0, sizeof(*t));
    hwt_init(&t->h);
    t->h.img[0] = hwt_make_image(t->h.dir, "disk.raw", 1 << 20);
    ck_assert_int_ge(asprintf(&str, "driver=raw,file.filename=%s%s%s", t->h.img[0],
                              opts ? "," : "", opts ? opts : ""), 0);
    ck_assert_int_eq(bdrv_open_opts_parse(str, &o, &err), 0);
    t->h.blk[0] = blk_open(t->h.loop, &o, NULL, &err);
    ck_assert_ptr_nonnull(t->h.blk[0]);
    bdrv_open_opts_free(&o);
    free(str);
    t->v = vub_new(t->h.loop, &(struct vub_config){ .blk = t->h.blk[0],
                   .serial = "vu-serial", .num_queues = 2,
                   .on_close = on_close, .opaque = t }, &err);
    ck_assert_ptr_nonnull(t->v);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert_int_eq(vub_attach(t->v, sv[0], &err), 0);
    t->fd = sv[1];
    t->memfd = memfd_create("guest", MFD_CLOEXEC);
    ck_assert_int_ge(t->memfd, 0);
    ck_assert_int_eq(ftruncate(t->memfd, MEM_SIZE), 0);
    t->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, t->memfd, 0);
    ck_assert_ptr_ne(t->mem, MAP_FAILED);
    t->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    t->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    t->err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

static void vt_fini(struct vt *t)
{
    vub_free(t->v);
    if (t->fd >= 0)
        close(t->fd);
    close(t->memfd);
    close(t->kick);
    close(t->call);
    close(t->err);
    munmap(t->mem, MEM_SIZE);
    hwt_fini(&t->h);
}

/* Features, protocol features with REPLY_ACK, owner, memory table. */
static void negotiate(struct vt *t)
{
    /* Without EVENT_IDX every completion interrupts. */
    uint64_t f = get_u64(t, 1) & ~(1ull << 29);
    send_msg(t, 2, 0, &f, 8, NULL, 0);
    uint64_t pf = get_u64(t, 15);
    send_msg(t, 16, 0, &pf, 8, NULL, 0);
    ck_assert_uint_eq(acked(t, 3, NULL, 0, NULL, 0), 0);
    struct { uint32_t n, pad; uint64_t gpa, size, uva, off; } mt = {
        1, 0, MEM_GPA, MEM_SIZE, MEM_UVA, 0 };
    ck_assert_uint_eq(acked(t, 5, &mt, sizeof(mt), &t->memfd, 1), 0);
}

static void setup_ring(struct vt *t)
{
    struct { uint32_t i, n; } st = { 0, QSZ };
    ck_assert_uint_eq(acked(t, 8, &st, 8, NULL, 0), 0);
    st.n = 0;
    ck_assert_uint_eq(acked(t, 10, &st, 8, NULL, 0), 0);
    struct { uint32_t i, fl; uint64_t desc, used, avail, log; } a = {
        0, 0, MEM_UVA + DESC_OFF, MEM_UVA + USED_OFF, MEM_UVA + AVAIL_OFF, 0 };
    ck_assert_uint_eq(acked(t, 9, &a, sizeof(a), NULL, 0), 0);
    uint64_t idx = 0;
    ck_assert_uint_eq(acked(t, 13, &idx, 8, &t->call, 1), 0);
    ck_assert_uint_eq(acked(t, 14, &idx, 8, &t->err, 1), 0);
    ck_assert_uint_eq(acked(t, 12, &idx, 8, &t->kick, 1), 0);
    st.n = 1;
    ck_assert_uint_eq(acked(t, 18, &st, 8, NULL, 0), 0);
}

static void put_desc(struct vt *t, unsigned i, uint64_t gpa, uint32_t len,
                     uint16_t flags, uint16_t next)
{
    uint8_t *d = t->mem + DESC_OFF + 16 * i;
    memcpy(d, &gpa, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
}

static uint16_t used_idx(struct vt *t)
{
    uint16_t v;
    memcpy(&v, t->mem + USED_OFF + 2, 2);
    return v;
}

/* One request (header, data, status) at `data_gpa`; returns the status
 * byte once completed, or -1 when nothing was completed. */
static int request(struct vt *t, uint32_t type, uint64_t sector,
                   uint64_t data_gpa, uint32_t len)
{
    uint8_t hdr[16] = { 0 };
    uint16_t old = used_idx(t), slot = t->avail_idx % QSZ, head = 0;
    uint64_t one = 1, cnt;

    memcpy(hdr, &type, 4);
    memcpy(hdr + 8, &sector, 8);
    memcpy(t->mem + HDR_OFF, hdr, 16);
    t->mem[STATUS_OFF] = 0xee;
    put_desc(t, 0, MEM_GPA + HDR_OFF, 16, 1, 1);
    put_desc(t, 1, data_gpa, len, 1 | (type == 0 ? 2 : 0), 2);
    put_desc(t, 2, MEM_GPA + STATUS_OFF, 1, 2, 0);
    memcpy(t->mem + AVAIL_OFF + 4 + 2 * slot, &head, 2);
    t->avail_idx++;
    memcpy(t->mem + AVAIL_OFF + 2, &t->avail_idx, 2);
    ck_assert_int_eq(write(t->kick, &one, 8), 8);
    for (int i = 0; i < 300 && used_idx(t) == old; i++)
        ev_run_once(t->h.loop, 10);
    if (used_idx(t) == old)
        return -1;
    ck_assert_int_eq(read(t->call, &cnt, 8), 8);   /* interrupt sent */
    return t->mem[STATUS_OFF];
}

START_TEST(negotiation_and_config)
{
    struct vt t;
    vt_init(&t, NULL);
    uint64_t f = get_u64(&t, 1);
    ck_assert(f >> 30 & 1);                         /* PROTOCOL_FEATURES */
    ck_assert(f >> 32 & 1);                         /* VERSION_1 */
    ck_assert(f >> 12 & 1);                         /* MQ: 2 queues */
    ck_assert(!(f >> 5 & 1));                       /* not RO */
    ck_assert(!(f >> 34 & 1));                      /* no packed ring */
    ck_assert_uint_eq(get_u64(&t, 15), 1u << 0 | 1u << 3 | 1u << 5 | 1u << 9);
    ck_assert_uint_eq(get_u64(&t, 17), 2);
    /* QEMU 7.2 asks for its 60-byte struct virtio_blk_config. */
    struct { uint32_t off, size, flags; uint8_t data[60]; } c = { 0, 60, 0 }, r;
    send_msg(&t, 24, 0, &c, sizeof(c), NULL, 0);
    ck_assert_uint_eq(recv_reply(&t, 24, &r), 72);
    ck_assert_uint_eq(r.size, 60);
    uint64_t cap;
    uint32_t seg_max, blk_size;
    memcpy(&cap, r.data, 8);
    memcpy(&seg_max, r.data + 12, 4);
    memcpy(&blk_size, r.data + 20, 4);
    ck_assert_uint_eq(cap, 2048);
    ck_assert_uint_eq(seg_max, 254);
    ck_assert_uint_eq(blk_size, 512);
    ck_assert_uint_eq(r.data[34], 2);               /* num_queues */
    ck_assert_uint_eq(r.data[59], 0);               /* past our fields */
    /* A config window past the payload limit gets an empty answer. */
    c.off = 4080;
    send_msg(&t, 24, 0, &c, sizeof(c), NULL, 0);
    ck_assert_uint_eq(recv_reply(&t, 24, &r), 12);
    ck_assert_uint_eq(r.size, 0);
    vt_fini(&t);
}
END_TEST

START_TEST(read_only_drive_offers_ro)
{
    struct vt t;
    vt_init(&t, "read-only=on");
    ck_assert(get_u64(&t, 1) >> 5 & 1);
    negotiate(&t);
    setup_ring(&t);
    uint64_t h = hwt_file_hash(t.h.img[0]);
    memset(t.mem + DATA_OFF, 0x77, 4096);
    ck_assert_int_eq(request(&t, 1, 8, MEM_GPA + DATA_OFF, 4096), 1); /* IOERR */
    ck_assert_int_eq(request(&t, 0, 0, MEM_GPA + DATA_OFF, 512), 0); /* reads */
    ck_assert_uint_eq(hwt_file_hash(t.h.img[0]), h);
    vt_fini(&t);
}
END_TEST

START_TEST(requests_through_the_ring)
{
    struct vt t;
    uint8_t buf[4096];
    vt_init(&t, NULL);
    negotiate(&t);
    setup_ring(&t);
    /* read sector 16 */
    ck_assert_int_eq(request(&t, 0, 16, MEM_GPA + DATA_OFF, 4096), 0);
    for (int i = 0; i < 4096; i++)
        ck_assert_uint_eq(t.mem[DATA_OFF + i], hwt_pat(16 * 512 + i));
    /* write sector 32, then the image has it */
    memset(t.mem + DATA_OFF, 0x5c, 4096);
    ck_assert_int_eq(request(&t, 1, 32, MEM_GPA + DATA_OFF, 4096), 0);
    hwt_file_read(t.h.img[0], 32 * 512, buf, 4096);
    for (int i = 0; i < 4096; i++)
        ck_assert_uint_eq(buf[i], 0x5c);
    /* past the end of the disk: IOERR */
    ck_assert_int_eq(request(&t, 1, 2047, MEM_GPA + DATA_OFF, 4096), 1);
    /* read-only at run time: writes IOERR, image unchanged; and back */
    ck_assert_int_eq(blk_set_read_only(t.h.blk[0], true, NULL), 0);
    uint64_t h = hwt_file_hash(t.h.img[0]);
    memset(t.mem + DATA_OFF, 0x11, 4096);
    ck_assert_int_eq(request(&t, 1, 64, MEM_GPA + DATA_OFF, 4096), 1);
    ck_assert_uint_eq(hwt_file_hash(t.h.img[0]), h);
    ck_assert_int_eq(blk_set_read_only(t.h.blk[0], false, NULL), 0);
    ck_assert_int_eq(request(&t, 1, 64, MEM_GPA + DATA_OFF, 4096), 0);
    hwt_file_read(t.h.img[0], 64 * 512, buf, 4096);
    ck_assert_uint_eq(buf[0], 0x11);
    /* GET_VRING_BASE stops the ring and says where it stopped */
    struct { uint32_t i, n; } st = { 0, 0 };
    send_msg(&t, 11, 0, &st, 8, NULL, 0);
    ck_assert_uint_eq(recv_reply(&t, 11, &st), 8);
    ck_assert_uint_eq(st.n, 5);             /* five requests taken */
    vt_fini(&t);
}
END_TEST

START_TEST(buffer_outside_the_memory_table)
{
    struct vt t;
    uint64_t cnt;
    vt_init(&t, NULL);
    negotiate(&t);
    setup_ring(&t);
    /* A data buffer that runs past the region's end: no access, no
     * completion, the error eventfd fires. */
    ck_assert_int_eq(request(&t, 0, 0, MEM_GPA + MEM_SIZE - 512, 4096), -1);
    ck_assert_int_eq(read(t.err, &cnt, 8), 8);
    /* The front end stops the device and starts it again (a guest
     * reboot): the broken ring is forgotten. */
    struct { uint32_t i, n; } st = { 0, 0 };
    send_msg(&t, 11, 0, &st, 8, NULL, 0);
    ck_assert_uint_eq(recv_reply(&t, 11, &st), 8);
    ck_assert_uint_eq(st.n, 0);             /* the bad chain was not taken */
    memset(t.mem, 0, 0x3000);
    t.avail_idx = 0;
    negotiate(&t);
    setup_ring(&t);
    ck_assert_int_eq(request(&t, 0, 0, MEM_GPA + DATA_OFF, 4096), 0);
    vt_fini(&t);
}
END_TEST

START_TEST(hostile_messages)
{
    struct vt t;
    vt_init(&t, NULL);
    negotiate(&t);
    /* two regions announced, one fd sent */
    struct { uint32_t n, pad; uint64_t r[8]; } mt = { 2, 0,
        { MEM_GPA, MEM_SIZE, MEM_UVA, 0, 0, MEM_SIZE, MEM_UVA + MEM_SIZE, 0 } };
    ck_assert_uint_eq(acked(&t, 5, &mt, sizeof(mt), &t.memfd, 1), 1);
    /* rings at addresses the table does not hold */
    struct { uint32_t i, fl; uint64_t desc, used, avail, log; } a = {
        0, 0, 0x1000, 0x2000, 0x3000, 0 };
    ck_assert_uint_eq(acked(&t, 9, &a, sizeof(a), NULL, 0), 1);
    a.i = 7;                                        /* no such queue */
    ck_assert_uint_eq(acked(&t, 9, &a, sizeof(a), NULL, 0), 1);
    struct { uint32_t i, n; } st = { 0, 3 };        /* not a power of two */
    ck_assert_uint_eq(acked(&t, 8, &st, 8, NULL, 0), 1);
    st.n = 2048;                                    /* too large */
    ck_assert_uint_eq(acked(&t, 8, &st, 8, NULL, 0), 1);
    ck_assert_uint_eq(acked(&t, 99, NULL, 0, NULL, 0), 1);  /* unknown */
    ck_assert_uint_eq(acked(&t, 6, NULL, 0, NULL, 0), 1);   /* no log */
    ck_assert_int_eq(t.closed, 0);
    /* a header with a bad version drops the front end */
    if (_i == 1) {
        /* ... as does a question about a queue that does not exist */
        st.i = 9;
        send_msg(&t, 11, 0, &st, 8, NULL, 0);
        ck_assert_int_eq(t.closed, 1);
        vt_fini(&t);
        return;
    }
    send_msg(&t, 1, 0x2, NULL, 0, NULL, 0);
    ck_assert_int_eq(t.closed, 1);
    ck_assert(!vub_connected(t.v));
    vt_fini(&t);
}
END_TEST

START_TEST(reconnect)
{
    struct vt t;
    int sv[2];
    vt_init(&t, NULL);
    negotiate(&t);
    setup_ring(&t);
    ck_assert_int_eq(request(&t, 0, 0, MEM_GPA + DATA_OFF, 512), 0);
    /* a second front end while the first is there */
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct error *err = NULL;
    ck_assert_int_eq(vub_attach(t.v, sv[0], &err), -EBUSY);
    ck_assert_str_eq(err->msg, "vhost-user-blk: a front end is already connected");
    error_free(err);
    /* the first goes away */
    close(t.fd);
    hwt_settle(&t.h);
    ck_assert_int_eq(t.closed, 1);
    ck_assert_int_eq(vub_attach(t.v, sv[0], NULL), 0);
    t.fd = sv[1];
    t.avail_idx = 0;
    memset(t.mem, 0, 0x3000);
    negotiate(&t);
    setup_ring(&t);
    ck_assert_int_eq(request(&t, 0, 1, MEM_GPA + DATA_OFF, 512), 0);
    ck_assert_uint_eq(t.mem[DATA_OFF], hwt_pat(512));
    vt_fini(&t);
}
END_TEST

/* No message waiting on the back-end channel `fd` (non-blocking peek; a
 * channel the back end closed is quiet too). */
static bool channel_quiet(int fd)
{
    uint8_t b;
    ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
    return n == 0 || (n < 0 && errno == EAGAIN);
}

/* Protocol features `pf`, then the back-end channel; returns our end. */
static int backend_channel(struct vt *t, uint64_t pf, uint64_t want_ack)
{
    int sv[2];

    uint64_t f = get_u64(t, 1);
    send_msg(t, 2, 0, &f, 8, NULL, 0);
    send_msg(t, 16, 0, &pf, 8, NULL, 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert_uint_eq(acked(t, 21, NULL, 0, &sv[1], 1), want_ack);
    close(sv[1]);
    return sv[0];
}

/* A read-only flip and a resize each send CONFIG_CHANGE_MSG (2, version
 * flag, no payload, no reply asked) on the back-end channel when the front
 * end negotiated BACKEND_REQ and CONFIG; nothing otherwise. A channel the
 * front end closed is dropped without a signal. */
START_TEST(config_change_on_the_backend_channel)
{
    struct error *err = NULL;
    uint32_t hdr[3];
    struct vt t;
    int ch;

    vt_init(&t, NULL);
    ch = backend_channel(&t, 1u << 3 | 1u << 5 | 1u << 9, 0);
    ck_assert(channel_quiet(ch));
    ck_assert_int_eq(blk_set_read_only(t.h.blk[0], true, &err), 0);
    ck_assert_int_eq(full_read(ch, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
    ck_assert_uint_eq(hdr[0], 2);
    ck_assert_uint_eq(hdr[1], 1);
    ck_assert_uint_eq(hdr[2], 0);
    ck_assert(channel_quiet(ch));
    ck_assert_int_eq(blk_set_read_only(t.h.blk[0], false, &err), 0);
    ck_assert_int_eq(full_read(ch, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
    ck_assert_uint_eq(hdr[0], 2);
    /* a resize: the new capacity is in GET_CONFIG */
    ck_assert_int_eq(blk_truncate(t.h.blk[0], 2 << 20, &err), 0);
    ck_assert_int_eq(full_read(ch, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
    ck_assert_uint_eq(hdr[0], 2);
    struct { uint32_t off, size, flags; uint8_t data[8]; } c = { 0, 8, 0 }, r;
    send_msg(&t, 24, 0, &c, sizeof(c), NULL, 0);
    ck_assert_uint_eq(recv_reply(&t, 24, &r), 20);
    uint64_t cap;
    memcpy(&cap, r.data, 8);
    ck_assert_uint_eq(cap, 4096);
    /* the front end closes its channel: dropped, no SIGPIPE */
    close(ch);
    ck_assert_int_eq(blk_set_read_only(t.h.blk[0], true, &err), 0);
    ck_assert_int_eq(blk_set_read_only(t.h.blk[0], false, &err), 0);
    ck_assert_int_eq(t.closed, 0);
    vt_fini(&t);

    /* CONFIG not negotiated: the channel is accepted but stays quiet;
     * BACKEND_REQ not negotiated: SET_BACKEND_REQ_FD fails */
    const struct { uint64_t pf, ack; } quiet[] = {
        { 1u << 3 | 1u << 5, 0 }, { 1u << 3 | 1u << 9, 1 },
    };
    for (unsigned i = 0; i < 2; i++) {
        vt_init(&t, NULL);
        ch = backend_channel(&t, quiet[i].pf, quiet[i].ack);
        ck_assert_int_eq(blk_set_read_only(t.h.blk[0], true, &err), 0);
        hwt_settle(&t.h);
        ck_assert(channel_quiet(ch));
        close(ch);
        vt_fini(&t);
    }
}
END_TEST

/* The whole log written since log_to_file(), as one string. */
static char *log_to_file(struct vt *t)
{
    char *path = NULL;
    ck_assert_int_ge(asprintf(&path, "%s/log", t->h.dir), 0);
    ck_assert_int_eq(log_set_file(path), 0);
    return path;
}

static bool log_has(const char *path, const char *line)
{
    char buf[8192];
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, line) != NULL;
}

/* A memory table whose region runs past the end of the memfd (found by
 * fuzz-vhost-user: rings placed there faulted the back end with SIGBUS)
 * is refused; the front end stays connected and can send a good one. */
START_TEST(region_past_end_of_file)
{
    struct vt t;
    vt_init(&t, NULL);
    char *log = log_to_file(&t);
    negotiate(&t);
    struct { uint32_t n, pad; uint64_t gpa, size, uva, off; } mt = {
        1, 0, MEM_GPA, 2 * MEM_SIZE, MEM_UVA, 0 };
    if (_i == 1) {
        mt.size = MEM_SIZE;             /* fits, but not from that offset */
        mt.off = 4096;
    }
    ck_assert_uint_eq(acked(&t, 5, &mt, sizeof(mt), &t.memfd, 1), 1);
    ck_assert(log_has(log, _i ? "vhost-user-blk: region 0 (offset 4096, 1048576 bytes) "
                                "runs past the end of its file (1048576 bytes)"
                              : "vhost-user-blk: region 0 (offset 0, 2097152 bytes) "
                                "runs past the end of its file (1048576 bytes)"));
    /* rings where the refused region would have put them */
    struct { uint32_t i, fl; uint64_t desc, used, avail, log; } a = {
        0, 0, MEM_UVA + MEM_SIZE, MEM_UVA + MEM_SIZE + 0x1000,
        MEM_UVA + MEM_SIZE + 0x2000, 0 };
    ck_assert_uint_eq(acked(&t, 9, &a, sizeof(a), NULL, 0), 1);
    ck_assert_int_eq(t.closed, 0);
    negotiate(&t);
    setup_ring(&t);
    ck_assert_int_eq(request(&t, 0, 0, MEM_GPA + DATA_OFF, 512), 0);
    free(log);
    vt_fini(&t);
}
END_TEST

/* Requests with a payload shorter than theirs (found by fuzz-vhost-user:
 * the fields were read from what the previous message left) drop the
 * front end. */
static const struct { uint32_t req, size, want; } short_msgs[] = {
    { 2, 4, 8 }, { 16, 0, 8 }, { 12, 7, 8 }, { 13, 0, 8 }, { 14, 0, 8 },
    { 8, 4, 8 }, { 10, 0, 8 }, { 11, 4, 8 }, { 18, 0, 8 }, { 9, 32, 40 },
    { 5, 4, 8 }, { 24, 8, 12 }, { 25, 0, 12 },
};

START_TEST(short_payloads)
{
    struct vt t;
    uint8_t zero[64] = { 0 };
    char want[128];
    vt_init(&t, NULL);
    char *log = log_to_file(&t);
    negotiate(&t);
    send_msg(&t, short_msgs[_i].req, 0, zero, short_msgs[_i].size, NULL, 0);
    ck_assert_int_eq(t.closed, 1);
    ck_assert(!vub_connected(t.v));
    snprintf(want, sizeof(want), "vhost-user-blk: request %u with a %u-byte "
             "payload (%u expected)", short_msgs[_i].req, short_msgs[_i].size,
             short_msgs[_i].want);
    ck_assert_msg(log_has(log, want), "no '%s' in the log", want);
    free(log);
    vt_fini(&t);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("hw-vhost-user");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, negotiation_and_config);
    tcase_add_test(tc, read_only_drive_offers_ro);
    tcase_add_test(tc, requests_through_the_ring);
    tcase_add_test(tc, buffer_outside_the_memory_table);
    tcase_add_loop_test(tc, hostile_messages, 0, 2);
    tcase_add_test(tc, reconnect);
    tcase_add_test(tc, config_change_on_the_backend_channel);
    tcase_add_loop_test(tc, region_past_end_of_file, 0, 2);
    tcase_add_loop_test(tc, short_payloads, 0,
                        (int)(sizeof(short_msgs) / sizeof(short_msgs[0])));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
