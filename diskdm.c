/*
 * diskdm.c — the device model's main, kept short: config source (-drive
 * options) -> disk specs -> block nodes -> devices on the machine ->
 * transport (qtest on stdio or a Unix socket). Runs until the transport
 * closes or a signal arrives.
 */
#include "xen/xen.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define PROG "diskdm"
#define VERSION "0.1"

/* What the command line asked for. Strings point into argv. */
struct dm_config {
    uint64_t ram_size;          /* 0 = machine default */
    const char **drives;        /* -drive values, in order */
    size_t ndrives;
    const char *qtest;          /* "stdio", "unix:PATH" or NULL */
    const char *pidfile;
    int domid;                  /* --domid: disks from xenstore; -1 = none */
    bool verbose;
};

/* Everything main() sets up, torn down in reverse. */
struct dm {
    struct event_loop *loop;
    struct machine *machine;
    struct disk_spec *specs;
    struct blk_backend **blks;
    size_t ndisks;
    struct qtest_server *qtest;
    struct xen_dm *xen;         /* --domid: the domain's disks and watches */
    int qtest_fd;               /* socket for unix:, -1 for stdio */
    int signal_fd;
};

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " [-m SIZE] [-drive OPTS]... [-qtest stdio|unix:PATH] [--pidfile FILE] [-v]\n"
"The diskdm device model: guest disks on an emulated PC (IDE/ATAPI on PIIX3,\n"
"virtio-blk), driven through the qtest protocol.\n"
"  -m SIZE           guest RAM (default 128M)\n"
"  -drive OPTS       a disk, with QEMU's keys: file=, format=, if=ide|virtio,\n"
"                    index=, bus=, unit=, media=disk|cdrom, readonly=on|off,\n"
"                    auto-read-only=, snapshot=, cache=, werror=, rerror=, discard=\n"
"  -qtest stdio      serve the qtest protocol on stdin/stdout\n"
"  -qtest unix:PATH  connect to the Unix socket PATH and serve it there\n"
"  --domid N         also attach domain N's disks from xenstore and follow them\n"
"  --pidfile FILE    write the process id to FILE once running\n"
"  -v                verbose log (repeat for debug)\n"
"  -h, --help        this help;  -V, --version  the version\n");
}

static void die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry '" PROG " -h'.\n");
    exit(2);
}

/* Both QEMU's single-dash spelling and the double-dash one are accepted. */
static bool opt_is(const char *arg, const char *name)
{
    if (arg[0] == '-' && arg[1] == '-') {
        arg++;
    }
    return !strcmp(arg, name);
}

static void parse_args(int argc, char **argv, struct dm_config *cfg)
{
    int verbosity = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_next = i + 1 < argc;
        if (opt_is(a, "-h") || opt_is(a, "-help")) {
            usage(stdout);
            exit(0);
        } else if (opt_is(a, "-V") || opt_is(a, "-version")) {
            printf(PROG " " VERSION "\n");
            exit(0);
        } else if (opt_is(a, "-v")) {
            verbosity++;
        } else if (opt_is(a, "-m") || opt_is(a, "-drive") || opt_is(a, "-qtest") ||
                   opt_is(a, "-pidfile") || opt_is(a, "-domid")) {
            if (!has_next) {
                die_usage("option '%s' needs an argument", a);
            }
            const char *v = argv[++i];
            if (opt_is(a, "-m")) {
                bool bare = *v && strspn(v, "0123456789") == strlen(v);
                if (parse_size(v, &cfg->ram_size) ||
                    (bare && cfg->ram_size > (64ull << 10))) {
                    die_usage("-m: expected a RAM size from 1M to 64G, not '%s'", v);
                }
                /* QEMU takes a bare number as MiB */
                if (bare) {
                    cfg->ram_size <<= 20;
                }
                if (cfg->ram_size < (1u << 20) || cfg->ram_size > (64ull << 30)) {
                    die_usage("-m: expected a RAM size from 1M to 64G, not '%s'", v);
                }
            } else if (opt_is(a, "-drive")) {
                cfg->drives = realloc(cfg->drives, (cfg->ndrives + 1) * sizeof(*cfg->drives));
                if (!cfg->drives) {
                    fprintf(stderr, PROG ": out of memory\n");
                    exit(1);
                }
                cfg->drives[cfg->ndrives++] = v;
            } else if (opt_is(a, "-qtest")) {
                if (strcmp(v, "stdio") && (strncmp(v, "unix:", 5) || !v[5])) {
                    die_usage("-qtest: expected 'stdio' or 'unix:PATH', not '%s'", v);
                }
                cfg->qtest = v;
            } else if (opt_is(a, "-domid")) {
                char *end;
                long id = strtol(v, &end, 10);
                if (!*v || *end || id < 1 || id >= 0x7ff0) {
                    die_usage("--domid: expected a domain id from 1 to 32751, not '%s'", v);
                }
                cfg->domid = (int)id;
            } else {
                cfg->pidfile = v;
            }
        } else if (a[0] == '-') {
            die_usage("unknown option '%s'", a);
        } else {
            die_usage("unexpected argument '%s'", a);
        }
    }
    cfg->verbose = verbosity > 0;
    log_init(PROG, verbosity >= 2 ? LOG_DEBUG : verbosity ? LOG_INFO : LOG_WARN);
}

/* -drive strings -> typed disk specs. */
static int make_specs(struct dm *dm, const struct dm_config *cfg, struct error **errp)
{
    dm->specs = calloc(cfg->ndrives ? cfg->ndrives : 1, sizeof(*dm->specs));
    dm->blks = calloc(cfg->ndrives ? cfg->ndrives : 1, sizeof(*dm->blks));
    if (!dm->specs || !dm->blks) {
        error_setg_errno(errp, ENOMEM, "disks");
        return -ENOMEM;
    }
    for (size_t i = 0; i < cfg->ndrives; i++) {
        int ret = disk_spec_parse_drive(cfg->drives[i], &dm->specs[i], errp);
        dm->ndisks = i + 1;
        if (!ret) {
            ret = disk_spec_resolve(&dm->specs[i], errp);
        }
        if (ret) {
            error_prepend(errp, "-drive %s", cfg->drives[i]);
            return ret;
        }
    }
    return 0;
}

/* Disk specs -> block backends -> devices on the machine. */
static int attach_disks(struct dm *dm, const struct dm_config *cfg, struct error **errp)
{
    for (size_t i = 0; i < dm->ndisks; i++) {
        const struct disk_spec *spec = &dm->specs[i];
        struct blk_config bcfg = { .werror = spec->werror, .rerror = spec->rerror };
        int ret;
        if (spec->file && *spec->file) {
            struct bdrv_open_opts opts;
            bdrv_open_opts_init(&opts);
            ret = bdrv_open_opts_from_spec(spec, &opts, errp);
            if (!ret) {
                dm->blks[i] = blk_open(dm->loop, &opts, &bcfg, errp);
                ret = dm->blks[i] ? 0 : -EIO;
            }
            bdrv_open_opts_free(&opts);
        } else {
            dm->blks[i] = blk_new(dm->loop, NULL, &bcfg);
            ret = dm->blks[i] ? 0 : -ENOMEM;
            if (ret) {
                error_setg(errp, "out of memory");
            }
        }
        if (!ret) {
            ret = machine_attach_disk(dm->machine, spec, dm->blks[i], errp);
        }
        if (ret) {
            error_prepend(errp, "-drive %s", cfg->drives[i]);
            return ret;
        }
        log_info("drive %s attached (%s)", spec->file && *spec->file ? spec->file : "(empty)",
                 disk_access_name(spec->access));
    }
    return 0;
}

static void transport_closed(void *opaque)
{
    struct dm *dm = opaque;
    log_info("qtest channel closed");
    ev_stop(dm->loop);
}

/* Like QEMU's `-qtest unix:PATH`, diskdm is the client: it connects. */
static int connect_unix(const char *path, struct error **errp)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path)) {
        error_setg(errp, "-qtest unix:%s: path too long", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "socket");
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        error_setg_errno(errp, e, "-qtest unix:%s: cannot connect", path);
        close(fd);
        return -e;
    }
    return fd;
}

static int open_transport(struct dm *dm, const struct dm_config *cfg, struct error **errp)
{
    int in_fd = 0, out_fd = 1;
    if (!cfg->qtest) {
        log_info("no -qtest transport: waiting for a signal");
        return 0;
    }
    if (!strncmp(cfg->qtest, "unix:", 5)) {
        dm->qtest_fd = connect_unix(cfg->qtest + 5, errp);
        if (dm->qtest_fd < 0) {
            return dm->qtest_fd;
        }
        in_fd = out_fd = dm->qtest_fd;
    }
    dm->qtest = qtest_server_new(dm->machine, dm->loop, in_fd, out_fd,
                                 transport_closed, dm, errp);
    return dm->qtest ? 0 : -EIO;
}

static void on_signal(void *opaque, uint32_t events)
{
    struct dm *dm = opaque;
    struct signalfd_siginfo si;
    if (read(dm->signal_fd, &si, sizeof(si)) == sizeof(si)) {
        log_info("signal %u: shutting down", si.ssi_signo);
    }
    ev_stop(dm->loop);
}

static int watch_signals(struct dm *dm, struct error **errp)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    dm->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (dm->signal_fd < 0) {
        error_setg_errno(errp, errno, "signalfd");
        return -errno;
    }
    int ret = ev_fd_add(dm->loop, dm->signal_fd, EPOLLIN, on_signal, dm);
    if (ret) {
        error_setg_errno(errp, -ret, "cannot watch signals");
    }
    return ret;
}

static int write_pidfile(const char *path, struct error **errp)
{
    char buf[32];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (fd < 0 || full_write(fd, buf, n) != n) {
        error_setg_errno(errp, errno, "--pidfile %s", path);
        if (fd >= 0) {
            close(fd);
        }
        return -EIO;
    }
    close(fd);
    return 0;
}

static void dm_teardown(struct dm *dm, const struct dm_config *cfg)
{
    qtest_server_free(dm->qtest);
    xen_dm_free(dm->xen);
    if (dm->qtest_fd >= 0) {
        close(dm->qtest_fd);
    }
    if (dm->machine) {
        machine_free(dm->machine);
    }
    for (size_t i = 0; i < dm->ndisks; i++) {
        if (dm->blks && dm->blks[i]) {
            blk_free(dm->blks[i]);
        }
        disk_spec_free(&dm->specs[i]);
    }
    free(dm->blks);
    free(dm->specs);
    if (dm->signal_fd >= 0) {
        ev_fd_remove(dm->loop, dm->signal_fd);
        close(dm->signal_fd);
    }
    ev_loop_free(dm->loop);
}

int main(int argc, char **argv)
{
    struct dm_config cfg = { .domid = -1 };
    struct dm dm = { .qtest_fd = -1, .signal_fd = -1 };
    struct error *err = NULL;
    bool pidfile_written = false;
    int status = 1;

    log_init(PROG, LOG_WARN);
    parse_args(argc, argv, &cfg);

    dm.loop = ev_loop_new(&err);
    if (!dm.loop) {
        goto out;
    }
    if (watch_signals(&dm, &err) || make_specs(&dm, &cfg, &err)) {
        goto out;
    }
    struct machine_config mcfg = { .ram_size = cfg.ram_size };
    dm.machine = machine_new(dm.loop, &mcfg, &err);
    if (!dm.machine || attach_disks(&dm, &cfg, &err) || open_transport(&dm, &cfg, &err)) {
        goto out;
    }
    if (cfg.domid >= 0 && !(dm.xen = xen_dm_start(dm.loop, dm.machine, cfg.domid, &err))) {
        goto out;
    }
    if (cfg.pidfile) {
        if (write_pidfile(cfg.pidfile, &err)) {
            goto out;
        }
        pidfile_written = true;
    }
    ev_run(dm.loop);
    status = 0;
out:
    if (err) {
        error_report_err(err);
    }
    if (dm.loop) {
        dm_teardown(&dm, &cfg);
    }
    if (pidfile_written) {
        unlink(cfg.pidfile);
    }
    free(cfg.drives);
    return status;
}
