/*
 * tools/vhost/main.c — diskdm-vhost: serve one drive (the same options as
 * diskdm's -drive) as a vhost-user-blk back end on a Unix socket, one front
 * end at a time, and take read-only changes on a control socket.
 */
#include "block/block.h"
#include "hw/hw.h"
#include "tools/vhost/vhost.h"
#include "util/util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define PROG "diskdm-vhost"

struct vhost_main {
    struct event_loop *loop;
    struct blk_backend *blk;
    struct vub *vub;
    struct vhost_xen *xen;      /* --domid */
    int listen_fd;
    int control_fd;             /* listening; -1 = none */
    const char *socket_path, *control_path;
    bool quit;
};

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " --socket PATH --drive OPTIONS [--control PATH] [-v]\n"
"       " PROG " --socket PATH --domid N [--vdev NAME] [--control PATH] [-v]\n"
"Serve a drive as a vhost-user-blk back end (QEMU: -chardev socket,path=PATH\n"
"-device vhost-user-blk-pci,chardev=...).\n"
"  --socket PATH      listen here; one front end at a time, the next after it leaves\n"
"  --drive OPTIONS    as diskdm -drive: file=, format=, readonly=, snapshot=,\n"
"                     auto-read-only=, cache=, werror=, rerror=, discard=,\n"
"                     detect-zeroes=, serial=, num-queues=\n"
"  --domid N          the disk from domain N's xenstore vbds (libxl layout),\n"
"                     following its `mode` (r/w) while the guest runs\n"
"  --vdev NAME        which vbd (e.g. vda); default: the first emulated disk\n"
"  --control PATH     accept `readonly on|off` lines here (answers `ok` or\n"
"                     `error: ...`)\n"
"  -v, --verbose      log more (twice: debug)\n");
}

static int listen_unix(const char *path, struct error **errp)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        error_setg(errp, "%s: socket path too long", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "socket");
        return -errno;
    }
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
        int e = errno;
        error_setg_errno(errp, e, "%s", path);
        close(fd);
        return -e;
    }
    return fd;
}

static void accept_front_end(void *opaque, uint32_t events)
{
    struct vhost_main *vm = opaque;
    struct error *err = NULL;
    int fd;

    (void)events;
    fd = accept4(vm->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (vub_attach(vm->vub, fd, &err) < 0) {
        log_warn("%s", err->msg);
        error_free(err);
        close(fd);
        return;
    }
    log_info("front end connected");
}

/* One control connection: read a line, act, answer, close. */
static void control_request(struct vhost_main *vm, int fd)
{
    char line[128];
    size_t n = 0;
    struct error *err = NULL;
    char reply[256];

    while (n < sizeof(line) - 1) {
        ssize_t r = read(fd, line + n, 1);
        if (r <= 0 || line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    if (!strcmp(line, "readonly on") || !strcmp(line, "readonly off")) {
        bool ro = !strcmp(line, "readonly on");
        if (blk_set_read_only(vm->blk, ro, &err) < 0) {
            snprintf(reply, sizeof(reply), "error: %s\n", err->msg);
            error_free(err);
        } else {
            log_info("drive is now %s", ro ? "read-only" : "read-write");
            snprintf(reply, sizeof(reply), "ok\n");
        }
    } else if (!strcmp(line, "info")) {
        snprintf(reply, sizeof(reply), "readonly %s\nconnected %s\n",
                 blk_is_read_only(vm->blk) ? "on" : "off",
                 vub_connected(vm->vub) ? "yes" : "no");
    } else {
        snprintf(reply, sizeof(reply), "error: unknown command '%s'\n", line);
    }
    if (full_write(fd, reply, strlen(reply)) < 0)
        log_debug("control reply: %s", strerror(errno));
}

static void accept_control(void *opaque, uint32_t events)
{
    struct vhost_main *vm = opaque;
    int fd;

    (void)events;
    fd = accept4(vm->control_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    control_request(vm, fd);
    close(fd);
}

static int open_drive(struct vhost_main *vm, const char *drive,
                      struct disk_spec *spec, struct error **errp)
{
    struct bdrv_open_opts opts;
    struct blk_config bcfg;
    int ret;

    char *str = NULL;

    /* A virtio drive (num-queues applies); the user's keys come after. */
    bool has_if = !strncmp(drive, "if=", 3) || strstr(drive, ",if=");
    if (asprintf(&str, "%s%s", has_if ? "" : "if=virtio,", drive) < 0) {
        error_setg_errno(errp, ENOMEM, "--drive");
        return -ENOMEM;
    }
    ret = disk_spec_parse_drive(str, spec, errp);
    free(str);
    if (ret < 0)
        return ret;
    if (!spec->file || !*spec->file) {
        error_setg(errp, "--drive needs file=");
        return -EINVAL;
    }
    bcfg = (struct blk_config){ .werror = spec->werror, .rerror = spec->rerror };
    bdrv_open_opts_init(&opts);
    ret = bdrv_open_opts_from_spec(spec, &opts, errp);
    if (!ret) {
        vm->blk = blk_open(vm->loop, &opts, &bcfg, errp);
        ret = vm->blk ? 0 : -EIO;
    }
    bdrv_open_opts_free(&opts);
    return ret;
}

static void on_signal(void *opaque, uint32_t events)
{
    struct vhost_main *vm = opaque;
    (void)events;
    vm->quit = true;
    ev_stop(vm->loop);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "socket", required_argument, NULL, 's' },
        { "drive", required_argument, NULL, 'd' },
        { "control", required_argument, NULL, 'c' },
        { "domid", required_argument, NULL, 'D' },
        { "vdev", required_argument, NULL, 'V' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { 0 }
    };
    struct vhost_main vm = { .listen_fd = -1, .control_fd = -1 };
    const char *drive = NULL, *vdev = NULL;
    int domid = -1;
    struct disk_spec spec;
    struct error *err = NULL;
    int verbose = 0, c, sig_fd = -1;
    sigset_t sigs;
    int status = 1;

    disk_spec_init(&spec);
    while ((c = getopt_long_only(argc, argv, "v", longopts, NULL)) != -1) {
        switch (c) {
        case 's': vm.socket_path = optarg; break;
        case 'd': drive = optarg; break;
        case 'c': vm.control_path = optarg; break;
        case 'v': verbose++; break;
        case 'V': vdev = optarg; break;
        case 'D': {
            uint64_t n;
            if (parse_uint(optarg, &n) < 0 || n > 0x7fef) {
                fprintf(stderr, PROG ": --domid: invalid domain id '%s'\n", optarg);
                return 2;
            }
            domid = (int)n;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || !vm.socket_path || !drive == (domid < 0) ||
        (vdev && domid < 0)) {
        fprintf(stderr, PROG ": %s\n", optind != argc ? "unexpected argument" :
                !vm.socket_path ? "--socket is required" :
                drive && domid >= 0 ? "--drive and --domid exclude each other" :
                vdev && domid < 0 ? "--vdev needs --domid" :
                "--drive or --domid is required");
        usage(stderr);
        return 2;
    }
    log_init(PROG, verbose >= 2 ? LOG_DEBUG : verbose ? LOG_INFO : LOG_WARN);
    signal(SIGPIPE, SIG_IGN);

    vm.loop = ev_loop_new(&err);
    if (!vm.loop)
        goto out_err;
    if (domid >= 0) {
        vm.xen = vhost_xen_open(vm.loop, domid, vdev, &err);
        if (!vm.xen)
            goto out_free_loop;
        vm.blk = vhost_xen_blk(vm.xen);
    } else if (open_drive(&vm, drive, &spec, &err) < 0) {
        error_prepend(&err, "--drive %s", drive);
        goto out_free_loop;
    }
    vm.vub = vub_new(vm.loop, &(struct vub_config){
                         .blk = vm.blk,
                         .serial = vm.xen ? vhost_xen_serial(vm.xen) : spec.serial,
                         .num_queues = spec.num_queues }, &err);
    if (!vm.vub)
        goto out_free_blk;
    vm.listen_fd = listen_unix(vm.socket_path, &err);
    if (vm.listen_fd < 0) {
        error_prepend(&err, "--socket");
        goto out_free_vub;
    }
    ev_fd_add(vm.loop, vm.listen_fd, EPOLLIN, accept_front_end, &vm);
    if (vm.control_path) {
        vm.control_fd = listen_unix(vm.control_path, &err);
        if (vm.control_fd < 0) {
            error_prepend(&err, "--control");
            goto out_close_listen;
        }
        ev_fd_add(vm.loop, vm.control_fd, EPOLLIN, accept_control, &vm);
    }
    /* SIGINT/SIGTERM end the loop (and tidy up) through a signalfd. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (sig_fd >= 0)
        ev_fd_add(vm.loop, sig_fd, EPOLLIN, on_signal, &vm);
    ev_run(vm.loop);
    status = 0;
    if (sig_fd >= 0) {
        ev_fd_remove(vm.loop, sig_fd);
        close(sig_fd);
    }
    if (vm.control_fd >= 0) {
        ev_fd_remove(vm.loop, vm.control_fd);
        close(vm.control_fd);
        unlink(vm.control_path);
    }
out_close_listen:
    ev_fd_remove(vm.loop, vm.listen_fd);
    close(vm.listen_fd);
    unlink(vm.socket_path);
out_free_vub:
    vub_free(vm.vub);
out_free_blk:
    if (vm.xen)
        vhost_xen_free(vm.xen);     /* frees the backend too */
    else
        blk_free(vm.blk);
out_free_loop:
    ev_loop_free(vm.loop);
out_err:
    disk_spec_free(&spec);
    if (err) {
        fprintf(stderr, PROG ": %s\n", err->msg);
        error_free(err);
        status = 1;
    }
    return status;
}
