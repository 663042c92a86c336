/*
 * tools/xl/xl.c — diskdm-xl, a toolstack stand-in for hosts without libxl:
 * turns xl disk specs into the xenstore layout libxl writes (frontend and
 * backend keys with their permissions), starts `diskdm --domid N` and waits
 * for it, and drives a running domain's disks through the same keys a real
 * toolstack would write (online/state, params, mode).
 */
#include "xen/xen.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

#define DEFAULT_TIMEOUT_S 30

struct xl_ctx {
    struct xs_handle *xs;
    const char *diskdm;     /* device model binary */
    bool diskdm_from_flag;  /* --diskdm given: a config file does not override it */
    bool verbose;           /* -v */
    bool dry_run;           /* create -n: print the keys instead of writing them */
    int timeout_ms;
};

/* A disk ready to be written: the parsed spec plus where it goes. */
struct xl_vbd {
    struct xen_xl_disk disk;
    int devid;
    char *fe_path, *be_path;
    const char *be_type;    /* "phy", "qdisk", "standalone" (backend `type`) */
};

static void usage(FILE *f)
{
    fprintf(f,
"Usage: diskdm-xl [-v] [--diskdm PATH] [--timeout SECS] COMMAND ARGS...\n"
"\n"
"  create [-f] FILE [KEY=VALUE...] [--domid N] [-n] [--no-start] [--dm-log FILE]\n"
"         [--disk SPEC]... [-- DISKDM-ARGS...]\n"
"                                 create a domain from an xl config file\n"
"  create --domid N [--no-start] [--dm-log FILE] --disk SPEC [--disk SPEC]...\n"
"         [-- DISKDM-ARGS...]     write the domain's disks, start diskdm, wait\n"
"  list                           domains created by diskdm-xl\n"
"  destroy N                      stop diskdm and remove the domain's keys\n"
"  block-attach N SPEC...         add a disk to a domain\n"
"  block-detach N VDEV|DEVID      unplug a disk\n"
"  block-list N                   list a domain's disks\n"
"  block-set-mode N VDEV r|w      make a live disk read-only or read-write\n"
"  block-resize N VDEV SIZE       grow a live disk's image to SIZE (K, M, G, T)\n"
"  cd-insert N VDEV TARGET        insert a CD-ROM image\n"
"  cd-eject N VDEV                eject the CD-ROM\n"
"\n"
"SPEC is xl's disk syntax: target,format,vdev,access or key=value\n"
"(format=, vdev=, access=ro|r|rw|w, devtype=cdrom, specification=, target=).\n"
"The xenstore daemon is found through XENSTORED_PATH as with the xenstore tools.\n");
}

static void die(const char *fmt, ...) PRINTF_FMT(1, 2) __attribute__((noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "diskdm-xl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void die_usage(const char *fmt, ...) PRINTF_FMT(1, 2) __attribute__((noreturn));
static void die_usage(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "diskdm-xl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'diskdm-xl --help'.\n");
    exit(2);
}

static int parse_domid(const char *s)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v >= 0x7ff0)
        die_usage("invalid domain id '%s'", s);
    return (int)v;
}

static uint64_t now_ms(void)
{
    return clock_ns() / 1000000;
}

/* ------------------------------------------------------------------ */
/* xenstore helpers                                                     */
/* ------------------------------------------------------------------ */

static char *xread(struct xl_ctx *c, const char *fmt, ...) PRINTF_FMT(2, 3);
static char *xread(struct xl_ctx *c, const char *fmt, ...)
{
    char path[512];
    unsigned len;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    return xs_read(c->xs, XBT_NULL, path, &len);
}

static bool xwrite_t(struct xl_ctx *c, xs_transaction_t t, const char *dir,
                     const char *key, const char *val)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    if (c->dry_run) {
        printf("%s = \"%s\"\n", path, val);
        return true;
    }
    return xs_write(c->xs, t, path, val, strlen(val));
}

/* Removal before a rewrite; nothing to show in a dry run. */
static void xrm_t(struct xl_ctx *c, xs_transaction_t t, const char *path)
{
    if (!c->dry_run)
        xs_rm(c->xs, t, path);
}

static void xrm(struct xl_ctx *c, const char *fmt, ...) PRINTF_FMT(2, 3);
static void xrm(struct xl_ctx *c, const char *fmt, ...)
{
    char path[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    xs_rm(c->xs, XBT_NULL, path);
}

static bool set_perms(struct xl_ctx *c, xs_transaction_t t, const char *path,
                      unsigned owner, unsigned reader)
{
    struct xs_permissions p[2] = {
        { .id = owner, .perms = XS_PERM_NONE },
        { .id = reader, .perms = XS_PERM_READ },
    };

    if (c->dry_run) {
        printf("%s (n%u,r%u)\n", path, owner, reader);
        return true;
    }
    return xs_mkdir(c->xs, t, path) && xs_set_permissions(c->xs, t, path, p, 2);
}

static bool dm_running(struct xl_ctx *c, int domid)
{
    char *s = xread(c, "/local/domain/0/device-model/%d/state", domid);
    bool r = s && !strcmp(s, "running");

    free(s);
    return r;
}

static bool domain_exists(struct xl_ctx *c, int domid)
{
    char *s = xread(c, "/local/domain/%d/domid", domid);

    free(s);
    return s != NULL;
}

/*
 * Wait until `check` returns non-zero, re-checking on every event under
 * `watch_path` (and every 200 ms, in case the watch itself is refused).
 * If `child` > 0 and it exits first, returns -ECHILD with *status set.
 */
typedef int wait_check_fn(struct xl_ctx *c, void *opaque);
static int wait_for(struct xl_ctx *c, const char *watch_path, wait_check_fn *check,
                    void *opaque, pid_t child, int *status)
{
    uint64_t deadline = now_ms() + c->timeout_ms;
    bool watching = xs_watch(c->xs, watch_path, "diskdm-xl-wait");
    int fd = xs_fileno(c->xs), r;

    for (;;) {
        char **w;
        uint64_t now;
        struct pollfd pfd = { .fd = fd, .events = POLLIN };

        r = check(c, opaque);
        if (r)
            break;
        if (child > 0 && waitpid(child, status, WNOHANG) == child) {
            r = -ECHILD;
            break;
        }
        now = now_ms();
        if (now >= deadline) {
            r = -ETIMEDOUT;
            break;
        }
        poll(&pfd, 1, (int)MIN(deadline - now, 200));
        if (pfd.revents & (POLLHUP | POLLERR | POLLNVAL))
            fd = -1;            /* connection gone: poll becomes a plain wait */
        while (pfd.revents & POLLIN && (w = xs_check_watch(c->xs)))
            free(w);
    }
    if (watching)
        xs_unwatch(c->xs, watch_path, "diskdm-xl-wait");
    return r;
}

/* Run `fn` inside a transaction, retrying on EAGAIN like libxl does. */
typedef bool txn_fn(struct xl_ctx *c, xs_transaction_t t, void *opaque);
static void in_transaction(struct xl_ctx *c, txn_fn *fn, void *opaque,
                           const char *what)
{
    if (c->dry_run) {
        if (!fn(c, XBT_NULL, opaque))
            die("%s: %s", what, strerror(errno));
        return;
    }
    for (int tries = 0; tries < 32; tries++) {
        xs_transaction_t t = xs_transaction_start(c->xs);

        if (t == XBT_NULL)
            die("%s: xenstore transaction: %s", what, strerror(errno));
        if (!fn(c, t, opaque)) {
            int e = errno;

            xs_transaction_end(c->xs, t, true);
            die("%s: %s", what, strerror(e));
        }
        if (xs_transaction_end(c->xs, t, false))
            return;
        if (errno != EAGAIN)
            die("%s: xenstore transaction: %s", what, strerror(errno));
    }
    die("%s: xenstore transaction kept conflicting", what);
}

/* ------------------------------------------------------------------ */
/* Disks: spec -> libxl layout                                          */
/* ------------------------------------------------------------------ */

/* `where` ("guest.cfg:3:10: ") prefixes the messages of a disk from a file. */
static void vbd_from_spec(struct xl_vbd *v, int domid, const char *where)
{
    struct xen_xl_disk *d = &v->disk;
    const char *dir;

    v->devid = xen_vdev_devid(d->vdev, NULL, NULL);
    if (v->devid < 0)
        die("%sInvalid or unsupported virtual disk identifier %s", where, d->vdev);
    if (strcmp(d->format, "raw") && strcmp(d->format, "qcow2") &&
        strcmp(d->format, "empty"))
        die("%sdisk %s: format %s is not supported by diskdm (raw or qcow2)",
            where, d->vdev, d->format);
    if (d->backend_domname && strcmp(d->backend_domname, "0") &&
        strcmp(d->backend_domname, "Domain-0"))
        die("%sdisk %s: only dom0 backends are supported (backend=%s)", where,
            d->vdev, d->backend_domname);
    if (d->backendtype && !strcmp(d->backendtype, "tap"))
        die("%sdisk %s: backendtype tap is not supported", where, d->vdev);
    if (d->backendtype && !strcmp(d->backendtype, "phy") &&
        (strcmp(d->format, "raw") || d->is_cdrom))
        die("%sdisk %s: the phy backend takes raw disks only", where, d->vdev);

    /* libxl: raw disks go to the vbd backend, HVM CD-ROMs and other
     * formats to qdisk. */
    if (d->backendtype && !strcmp(d->backendtype, "standalone")) {
        v->be_type = "standalone";
        dir = "vbd";
    } else if ((d->backendtype && !strcmp(d->backendtype, "phy")) ||
               (!d->backendtype && !strcmp(d->format, "raw") && !d->is_cdrom)) {
        v->be_type = "phy";
        dir = "vbd";
    } else {
        v->be_type = "qdisk";
        dir = "qdisk";
    }
    v->fe_path = xen_frontend_path(domid, v->devid);
    v->be_path = xen_backend_path(dir, domid, v->devid);
}

static void vbd_free(struct xl_vbd *v)
{
    xen_xl_disk_free(&v->disk);
    free(v->fe_path);
    free(v->be_path);
}

static void parse_vbd(struct xl_vbd *v, const char *const *parts, int n, int domid)
{
    struct error *err = NULL;

    memset(v, 0, sizeof(*v));
    if (xen_xl_disk_parse(parts, n, "command line", &v->disk, &err) < 0) {
        fprintf(stderr, "diskdm-xl: %s\n", err->msg);
        error_free(err);
        exit(1);
    }
    vbd_from_spec(v, domid, "");
}

static char *params_for(const struct xl_vbd *v, const char *target)
{
    const struct xen_xl_disk *d = &v->disk;
    char *p;

    if (!target || !*target || !strcmp(d->format, "empty"))
        return strdup("");
    if (!strcmp(v->be_type, "phy"))
        return strdup(target);
    if (asprintf(&p, "%s:%s", !strcmp(d->format, "raw") ? "aio" : d->format,
                 target) < 0)
        abort();
    return p;
}

struct write_vbd_args {
    const struct xl_vbd *v;
    int domid;
};

/* One vbd as libxl__device_disk_add + libxl__device_generic_add write it. */
static bool write_vbd(struct xl_ctx *c, xs_transaction_t t, void *opaque)
{
    const struct write_vbd_args *a = opaque;
    const struct xl_vbd *v = a->v;
    const struct xen_xl_disk *d = &v->disk;
    char domid_s[16], devid_s[16];
    char *params = params_for(v, d->target);
    const char *devtype = d->is_cdrom ? "cdrom" : "disk";
    bool ok;

    snprintf(domid_s, sizeof(domid_s), "%d", a->domid);
    snprintf(devid_s, sizeof(devid_s), "%d", v->devid);
    xrm_t(c, t, v->fe_path);
    xrm_t(c, t, v->be_path);
    ok = set_perms(c, t, v->fe_path, a->domid, 0) &&
         set_perms(c, t, v->be_path, 0, a->domid) &&
         xwrite_t(c, t, v->be_path, "frontend", v->fe_path) &&
         xwrite_t(c, t, v->be_path, "frontend-id", domid_s) &&
         xwrite_t(c, t, v->be_path, "online", "1") &&
         xwrite_t(c, t, v->be_path, "removable", d->removable ? "1" : "0") &&
         xwrite_t(c, t, v->be_path, "bootable", "1") &&
         xwrite_t(c, t, v->be_path, "dev", d->vdev) &&
         xwrite_t(c, t, v->be_path, "type", v->be_type) &&
         xwrite_t(c, t, v->be_path, "mode", d->readwrite ? "w" : "r") &&
         xwrite_t(c, t, v->be_path, "device-type", devtype) &&
         xwrite_t(c, t, v->be_path, "params", params) &&
         (d->specification == XEN_XL_SPEC_UNSET ||
          xwrite_t(c, t, v->be_path, "specification",
                   d->specification == XEN_XL_SPEC_VIRTIO ? "virtio" : "xen")) &&
         (!d->script || xwrite_t(c, t, v->be_path, "script", d->script)) &&
         (d->discard_enable < 0 ||
          xwrite_t(c, t, v->be_path, "discard-enable", d->discard_enable ? "1" : "0")) &&
         xwrite_t(c, t, v->fe_path, "backend", v->be_path) &&
         xwrite_t(c, t, v->fe_path, "backend-id", "0") &&
         xwrite_t(c, t, v->fe_path, "virtual-device", devid_s) &&
         xwrite_t(c, t, v->fe_path, "device-type", devtype) &&
         xwrite_t(c, t, v->fe_path, "trusted", "1") &&
         /* state last: a device model attaches once it reads state=1 */
         xwrite_t(c, t, v->fe_path, "state", "1") &&
         xwrite_t(c, t, v->be_path, "state", "1");
    free(params);
    return ok;
}

/* ------------------------------------------------------------------ */
/* create / destroy                                                     */
/* ------------------------------------------------------------------ */

struct create_args {
    int domid;
    const char *name;       /* NULL: "dom<domid>" */
    struct xl_vbd *vbds;
    size_t n;
};

static bool write_domain(struct xl_ctx *c, xs_transaction_t t, void *opaque)
{
    struct create_args *a = opaque;
    char dom[64], path[128], val[32];

    snprintf(dom, sizeof(dom), "/local/domain/%d", a->domid);
    if (!c->dry_run) {
        /* a concurrent create may have taken the id since we looked */
        char *other;
        unsigned len;

        snprintf(path, sizeof(path), "%s/domid", dom);
        other = xs_read(c->xs, t, path, &len);
        free(other);
        if (other) {
            errno = EEXIST;
            return false;
        }
    }
    if (!set_perms(c, t, dom, 0, a->domid))
        return false;
    snprintf(val, sizeof(val), "%d", a->domid);
    if (!xwrite_t(c, t, dom, "domid", val))
        return false;
    snprintf(val, sizeof(val), "dom%d", a->domid);
    if (!xwrite_t(c, t, dom, "name", a->name ? a->name : val))
        return false;
    /* what `list` shows: the domains this toolstack made */
    snprintf(path, sizeof(path), "/libxl/%d", a->domid);
    if (!xwrite_t(c, t, path, "toolstack", "diskdm-xl"))
        return false;
    /* the guest owns its device directory, as with libxl */
    snprintf(path, sizeof(path), "%s/device", dom);
    if (!set_perms(c, t, path, a->domid, 0))
        return false;
    snprintf(path, sizeof(path), "%s/device/vbd", dom);
    if (!set_perms(c, t, path, a->domid, 0))
        return false;
    snprintf(path, sizeof(path), "/local/domain/0/device-model/%d", a->domid);
    xrm_t(c, t, path);
    if (!c->dry_run && !xs_mkdir(c->xs, t, path))
        return false;
    for (size_t i = 0; i < a->n; i++) {
        struct write_vbd_args w = { .v = &a->vbds[i], .domid = a->domid };

        if (!write_vbd(c, t, &w))
            return false;
    }
    return true;
}

static int check_dm_state(struct xl_ctx *c, void *opaque)
{
    int domid = *(int *)opaque;
    char *s = xread(c, "/local/domain/0/device-model/%d/state", domid);
    int r = 0;

    if (s && !strcmp(s, "running"))
        r = 1;
    else if (s && !strcmp(s, "error"))
        r = -EIO;
    free(s);
    return r;
}

static void remove_domain_keys(struct xl_ctx *c, int domid)
{
    xrm(c, "/local/domain/%d", domid);
    xrm(c, "/local/domain/0/backend/vbd/%d", domid);
    xrm(c, "/local/domain/0/backend/qdisk/%d", domid);
    xrm(c, "/local/domain/0/device-model/%d", domid);
    xrm(c, "/libxl/%d", domid);
}

/* Is `pid` a live diskdm? A zombie or another program does not count. */
static bool is_live_diskdm(pid_t pid)
{
    char path[64], buf[512];
    FILE *f;
    bool live = false;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return false;
    if (fgets(buf, sizeof(buf), f)) {
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');

        live = open && close && close[1] == ' ' && close[2] != 'Z' &&
               close[2] != 'X' && !strncmp(open + 1, "diskdm)", 7);
    }
    fclose(f);
    return live;
}

static void stop_dm(struct xl_ctx *c, int domid)
{
    char *s = xread(c, "/local/domain/%d/image/device-model-pid", domid);
    pid_t pid = s ? (pid_t)atoi(s) : 0;
    uint64_t deadline;

    free(s);
    if (pid <= 0 || !is_live_diskdm(pid))
        return;
    kill(pid, SIGTERM);
    deadline = now_ms() + c->timeout_ms;
    while (is_live_diskdm(pid) && now_ms() < deadline) {
        waitpid(pid, NULL, WNOHANG);    /* reaps it if it is our child */
        nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000000 }, NULL);
    }
    if (is_live_diskdm(pid)) {
        fprintf(stderr, "diskdm-xl: device model %d did not stop; killing it\n",
                (int)pid);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

/* SIGTERM, then SIGKILL after the timeout; reaped. */
static void stop_child(struct xl_ctx *c, pid_t pid)
{
    uint64_t deadline = now_ms() + c->timeout_ms;

    kill(pid, SIGTERM);
    while (waitpid(pid, NULL, WNOHANG) == 0) {
        if (now_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            break;
        }
        nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000000 }, NULL);
    }
}

/* diskdm next to this program, else "diskdm" from PATH; malloc'ed. */
static char *find_diskdm(void)
{
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 16);
    char *slash;

    if (n > 0) {
        path[n] = 0;
        slash = strrchr(path, '/');
        if (slash) {
            strcpy(slash + 1, "diskdm");
            if (access(path, X_OK) == 0)
                return strdup(path);
        }
    }
    return strdup("diskdm");
}

static pid_t spawn_dm(struct xl_ctx *c, int domid, const char *dm_log,
                      char **extra, int nextra)
{
    char domid_s[16];
    char **argv = calloc(nextra + 4, sizeof(*argv));
    pid_t pid;
    int i = 0;

    snprintf(domid_s, sizeof(domid_s), "%d", domid);
    argv[i++] = (char *)"diskdm";
    argv[i++] = (char *)"--domid";
    argv[i++] = domid_s;
    for (int k = 0; k < nextra; k++)
        argv[i++] = extra[k];
    argv[i] = NULL;

    pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int out = dm_log ? open(dm_log, O_WRONLY | O_CREAT | O_APPEND, 0644)
                         : open("/dev/null", O_WRONLY);

        if (in < 0 || out < 0) {
            fprintf(stderr, "diskdm-xl: %s: %s\n", dm_log ? dm_log : "/dev/null",
                    strerror(errno));
            _exit(127);
        }
        setsid();
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        close(in);
        close(out);
        execv(c->diskdm, argv);
        if (!strchr(c->diskdm, '/'))
            execvp(c->diskdm, argv);
        fprintf(stderr, "diskdm-xl: cannot run %s: %s\n", c->diskdm, strerror(errno));
        _exit(127);
    }
    free(argv);
    return pid;
}

/* After state=running: a disk the device model refused fails the create. */
static int check_hotplug(struct xl_ctx *c, const struct xl_vbd *v)
{
    char *st = xread(c, "%s/hotplug-status", v->be_path);
    char *msg = xread(c, "%s/hotplug-error", v->be_path);
    int r = 0;

    if (st && !strcmp(st, "error")) {
        fprintf(stderr, "diskdm-xl: disk %s: %s\n", v->disk.vdev,
                msg ? msg : "device model reported an error");
        r = -1;
    }
    free(st);
    free(msg);
    return r;
}

/* The smallest domain id above 0 with no /local/domain/<id>. */
static int next_free_domid(struct xl_ctx *c)
{
    unsigned n = 0;
    char **ents = xs_directory(c->xs, XBT_NULL, "/local/domain", &n);

    for (int id = 1; id < 0x7ff0; id++) {
        bool used = false;

        for (unsigned i = 0; ents && i < n && !used; i++) {
            char *end;
            long v = strtol(ents[i], &end, 10);

            used = !*end && end != ents[i] && v == id;
        }
        if (!used) {
            free(ents);
            return id;
        }
    }
    free(ents);
    die("no free domain id");
}

/* As libxl: two domains may not share a name. */
static void check_name_free(struct xl_ctx *c, const char *name)
{
    unsigned n = 0;
    char **ents = xs_directory(c->xs, XBT_NULL, "/local/domain", &n);

    for (unsigned i = 0; ents && i < n; i++) {
        char *other = xread(c, "/local/domain/%s/name", ents[i]);
        bool same = other && !strcmp(other, name);

        free(other);
        if (same) {
            free(ents);
            die("domain with name \"%s\" already exists", name);
        }
    }
    free(ents);
}

#define MAX_CFG_BYTES (1 << 20)

/* The whole config file, NUL-terminated; *len excludes the NUL. */
static char *read_cfg_file(const char *file, size_t *len)
{
    FILE *f = fopen(file, "r");
    char *buf;
    size_t n;

    if (!f)
        die("%s: %s", file, strerror(errno));
    buf = malloc(MAX_CFG_BYTES + 1);
    n = fread(buf, 1, MAX_CFG_BYTES + 1, f);
    if (ferror(f))
        die("%s: %s", file, strerror(errno));
    fclose(f);
    if (n > MAX_CFG_BYTES)
        die("%s: larger than %d bytes; not a domain config file", file, MAX_CFG_BYTES);
    buf[n] = 0;
    *len = n;
    return buf;
}

static void die_err(struct error *err) __attribute__((noreturn));
static void die_err(struct error *err)
{
    fprintf(stderr, "diskdm-xl: %s\n", err->msg);
    error_free(err);
    exit(1);
}

/*
 * The config file and KEY=VALUE overrides (each read as one more line of
 * the file, so a later key wins, as with xl) into *dom.
 */
static void load_domain_cfg(struct xl_ctx *c, const char *file,
                            const char *const *overrides, size_t nover,
                            struct xen_xl_domain *dom)
{
    struct xen_cfg cfg = { 0 };
    struct error *err = NULL;
    const char *what = file ? file : "command line";

    if (file) {
        size_t len;
        char *text = read_cfg_file(file, &len);

        int r;

        fprintf(stderr, "Parsing config from %s\n", file);
        r = xen_cfg_parse(&cfg, file, text, len, &err);
        free(text);
        if (r < 0)
            goto out_die;
    }
    for (size_t i = 0; i < nover; i++)
        if (xen_cfg_parse(&cfg, "command line", overrides[i], strlen(overrides[i]),
                          &err) < 0)
            goto out_die;
    if (xen_xl_domain_from_cfg(&cfg, dom, &err) < 0)
        goto out_die;
    xen_cfg_free(&cfg);
    if (!dom->name || !*dom->name)
        die("%s: domain name must be specified (name = \"...\")", what);
    if (c->verbose && dom->nignored) {
        fprintf(stderr, "diskdm-xl: %s: ignoring settings that do not concern "
                "disks:", what);
        for (size_t i = 0; i < dom->nignored; i++)
            fprintf(stderr, "%s %s", i ? "," : "", dom->ignored[i]);
        fputc('\n', stderr);
    }
    return;

out_die:
    xen_cfg_free(&cfg);
    die_err(err);
}

static int cmd_create(struct xl_ctx *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "domid", required_argument, NULL, 'd' },
        { "disk", required_argument, NULL, 'k' },
        { "no-start", no_argument, NULL, 'N' },
        { "dm-log", required_argument, NULL, 'l' },
        { "dry-run", no_argument, NULL, 'n' },
        { NULL, 0, NULL, 0 },
    };
    struct create_args a = { .domid = -1 };
    struct xen_xl_domain dom = { 0 };
    const char **specs = calloc(argc, sizeof(*specs));
    const char **overrides = calloc(argc, sizeof(*overrides));
    const char *dm_log = NULL, *file = NULL;
    char **dm_argv;
    bool no_start = false, from_cfg;
    size_t nspecs = 0, nover = 0, ndm = 0;
    int opt, status = 0, r, ret = 0;
    pid_t pid;
    char pidbuf[16];

    optind = 0;             /* 0: glibc re-reads the optstring mode ("-") */
    /* "-": FILE and KEY=VALUE may sit among the options; "--" ends them */
    while ((opt = getopt_long(argc, argv, "-f:n", opts, NULL)) != -1) {
        switch (opt) {
        case 'd': a.domid = parse_domid(optarg); break;
        case 'k': specs[nspecs++] = optarg; break;
        case 'N': no_start = true; break;
        case 'l': dm_log = optarg; break;
        case 'n': c->dry_run = true; break;
        case 'f':
            if (file)
                die_usage("create: more than one config file");
            file = optarg;
            break;
        case 1:
            if (strchr(optarg, '='))
                overrides[nover++] = optarg;
            else if (!file)
                file = optarg;
            else
                die_usage("create: unexpected argument '%s'", optarg);
            break;
        default: die_usage("create: bad option");
        }
    }
    from_cfg = file || nover;
    if (a.domid < 0 && !from_cfg)
        die_usage("create: --domid N is required");
    if (a.domid == 0)
        die_usage("create: domain 0 is the toolstack's own domain");

    if (from_cfg) {
        load_domain_cfg(c, file, overrides, nover, &dom);
        a.name = dom.name;
        if (dom.dm_override && !c->diskdm_from_flag)
            c->diskdm = dom.dm_override;
    }
    if (a.domid < 0)
        a.domid = next_free_domid(c);

    a.vbds = calloc(dom.ndisks + nspecs + 1, sizeof(*a.vbds));
    for (size_t i = 0; i < dom.ndisks; i++) {
        char where[320];

        a.vbds[i].disk = dom.disks[i];
        memset(&dom.disks[i], 0, sizeof(dom.disks[i]));
        snprintf(where, sizeof(where), "%s: ", dom.disk_lines[i]);
        vbd_from_spec(&a.vbds[i], a.domid, where);
    }
    for (size_t i = 0; i < nspecs; i++)
        parse_vbd(&a.vbds[dom.ndisks + i], &specs[i], 1, a.domid);
    a.n = dom.ndisks + nspecs;
    for (size_t i = 0; i < a.n; i++)
        for (size_t j = 0; j < i; j++)
            if (a.vbds[j].devid == a.vbds[i].devid)
                die("disk %s: virtual device %s is given twice",
                    a.vbds[i].disk.vdev, a.vbds[j].disk.vdev);
    if (domain_exists(c, a.domid))
        die("domain %d already exists", a.domid);
    if (a.name)
        check_name_free(c, a.name);
    in_transaction(c, write_domain, &a, "writing the domain's disks");
    if (c->dry_run)
        goto out_free_vbds;
    if (no_start)
        goto out_created;

    /* the device model's arguments: the file's, then those after "--" */
    dm_argv = calloc(dom.ndm_args + (size_t)(argc - optind) + 1, sizeof(*dm_argv));
    for (size_t i = 0; i < dom.ndm_args; i++)
        dm_argv[ndm++] = dom.dm_args[i];
    for (int i = optind; i < argc; i++)
        dm_argv[ndm++] = argv[i];
    fflush(stdout);
    pid = spawn_dm(c, a.domid, dm_log, dm_argv, (int)ndm);
    free(dm_argv);
    snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);
    {
        char path[96];

        snprintf(path, sizeof(path), "/local/domain/%d/image/device-model-pid", a.domid);
        if (!xs_write(c->xs, XBT_NULL, path, pidbuf, strlen(pidbuf)))
            die("xenstore write %s: %s", path, strerror(errno));
    }
    {
        char watch[96];

        snprintf(watch, sizeof(watch), "/local/domain/0/device-model/%d", a.domid);
        r = wait_for(c, watch, check_dm_state, &a.domid, pid, &status);
    }
    if (r == 1) {
        for (size_t i = 0; i < a.n; i++)
            if (check_hotplug(c, &a.vbds[i]) < 0)
                ret = 1;
    } else {
        char *msg = xread(c, "/local/domain/0/device-model/%d/error", a.domid);

        if (r == -ECHILD)
            fprintf(stderr, "diskdm-xl: device model for domain %d exited "
                    "(%s %d)%s%s\n", a.domid,
                    WIFSIGNALED(status) ? "signal" : "status",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                    msg ? ": " : "", msg ? msg : "");
        else if (r == -EIO)
            fprintf(stderr, "diskdm-xl: device model for domain %d failed: %s\n",
                    a.domid, msg ? msg : "(no message)");
        else
            fprintf(stderr, "diskdm-xl: device model for domain %d did not "
                    "report running within %d s\n", a.domid, c->timeout_ms / 1000);
        free(msg);
        ret = 1;
    }
    if (ret) {
        /* as libxl does: a domain that failed to start is destroyed; the
         * device model is our child, whatever its name */
        if (r != -ECHILD)
            stop_child(c, pid);
        remove_domain_keys(c, a.domid);
    }
out_created:
    /* xl names the id it chose; so do we, once the domain stands */
    if (!ret && from_cfg)
        printf("Domain %d (%s) created\n", a.domid, a.name);
out_free_vbds:
    for (size_t i = 0; i < a.n; i++)
        vbd_free(&a.vbds[i]);
    free(a.vbds);
    free(specs);
    free(overrides);
    xen_xl_domain_free(&dom);
    return ret;
}

struct list_row {
    int domid;
    char *name, *state;
    unsigned disks;
};

static int cmp_rows(const void *x, const void *y)
{
    const struct list_row *a = x, *b = y;

    return (a->domid > b->domid) - (a->domid < b->domid);
}

/*
 * The domains this toolstack created (marked /libxl/<id>/toolstack), by
 * id: name, what the device model last reported (or "exited" when its
 * process is gone, "-" before it reported), and the number of vbds.
 */
static int cmd_list(struct xl_ctx *c, int argc, char **argv)
{
    struct list_row *rows;
    unsigned n = 0, nrows = 0;
    char **ents;

    (void)argv;
    if (argc != 1)
        die_usage("list: takes no arguments");
    ents = xs_directory(c->xs, XBT_NULL, "/local/domain", &n);
    rows = calloc(n + 1, sizeof(*rows));
    for (unsigned i = 0; ents && i < n; i++) {
        char *end, *mark, *pid, *st, dir[64], **vbds;
        long id = strtol(ents[i], &end, 10);
        unsigned nvbd = 0;
        struct list_row *row;

        if (*end || end == ents[i] || id <= 0)
            continue;
        mark = xread(c, "/libxl/%ld/toolstack", id);
        if (!mark || strcmp(mark, "diskdm-xl")) {
            free(mark);
            continue;
        }
        free(mark);
        row = &rows[nrows++];
        row->domid = (int)id;
        row->name = xread(c, "/local/domain/%ld/name", id);
        st = xread(c, "/local/domain/0/device-model/%ld/state", id);
        pid = xread(c, "/local/domain/%ld/image/device-model-pid", id);
        if (pid && !is_live_diskdm((pid_t)atoi(pid)) && (!st || strcmp(st, "error"))) {
            free(st);
            st = strdup("exited");
        }
        free(pid);
        row->state = st;
        snprintf(dir, sizeof(dir), "/local/domain/%ld/device/vbd", id);
        vbds = xs_directory(c->xs, XBT_NULL, dir, &nvbd);
        row->disks = vbds ? nvbd : 0;
        free(vbds);
    }
    free(ents);
    qsort(rows, nrows, sizeof(*rows), cmp_rows);
    printf("%-40s %5s %-10s %5s\n", "Name", "ID", "DM state", "Disks");
    for (unsigned i = 0; i < nrows; i++) {
        printf("%-40s %5d %-10s %5u\n", rows[i].name ? rows[i].name : "-",
               rows[i].domid, rows[i].state ? rows[i].state : "-", rows[i].disks);
        free(rows[i].name);
        free(rows[i].state);
    }
    free(rows);
    return 0;
}

static int cmd_destroy(struct xl_ctx *c, int argc, char **argv)
{
    int domid;

    if (argc != 2)
        die_usage("destroy: expected a domain id");
    domid = parse_domid(argv[1]);
    if (!domain_exists(c, domid))
        die("domain %d does not exist", domid);
    stop_dm(c, domid);
    remove_domain_keys(c, domid);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Commands on a running domain                                         */
/* ------------------------------------------------------------------ */

/* A disk that exists: its devid and both paths. */
struct xl_dev {
    int devid;
    char *vdev;
    char *fe_path, *be_path;
};

static void find_dev(struct xl_ctx *c, int domid, const char *name, struct xl_dev *d)
{
    if (!domain_exists(c, domid))
        die("domain %d does not exist", domid);
    d->devid = xen_vdev_devid(name, NULL, NULL);
    if (d->devid < 0)
        die("Invalid or unsupported virtual disk identifier %s", name);
    d->fe_path = xen_frontend_path(domid, d->devid);
    d->be_path = xread(c, "%s/backend", d->fe_path);
    if (!d->be_path) {
        free(d->fe_path);
        die("device %s is not attached to domain %d", name, domid);
    }
    d->vdev = xread(c, "%s/dev", d->be_path);
    if (!d->vdev)
        d->vdev = strdup(name);
}

static void free_dev(struct xl_dev *d)
{
    free(d->vdev);
    free(d->fe_path);
    free(d->be_path);
}

/* Backend acknowledgement: `key` appeared, or hotplug-error did. */
struct ack_wait {
    const char *be_path;
    const char *key;
};

static int check_ack(struct xl_ctx *c, void *opaque)
{
    struct ack_wait *w = opaque;
    char *v = xread(c, "%s/%s", w->be_path, w->key);
    char *e = xread(c, "%s/hotplug-error", w->be_path);
    int r = e ? -EIO : v ? 1 : 0;

    free(v);
    free(e);
    return r;
}

static int wait_ack(struct xl_ctx *c, int domid, const char *be_path,
                    const char *key, const char *what)
{
    struct ack_wait w = { .be_path = be_path, .key = key };
    int r;

    if (!dm_running(c, domid))
        return 0;       /* nobody to wait for: the keys are the change */
    r = wait_for(c, be_path, check_ack, &w, 0, NULL);
    if (r == -EIO) {
        char *e = xread(c, "%s/hotplug-error", be_path);

        fprintf(stderr, "diskdm-xl: %s: %s\n", what, e ? e : "failed");
        free(e);
        return 1;
    }
    if (r < 0) {
        fprintf(stderr, "diskdm-xl: %s: device model did not respond within %d s\n",
                what, c->timeout_ms / 1000);
        return 1;
    }
    return 0;
}

static int cmd_block_attach(struct xl_ctx *c, int argc, char **argv)
{
    struct write_vbd_args w;
    struct xl_vbd v;
    bool exists;
    char *fe;
    int domid, ret;

    if (argc < 3)
        die_usage("block-attach: expected a domain id and a disk spec");
    domid = parse_domid(argv[1]);
    parse_vbd(&v, (const char *const *)argv + 2, argc - 2, domid);
    if (!domain_exists(c, domid))
        die("domain %d does not exist", domid);
    fe = xread(c, "%s/backend", v.fe_path);
    exists = fe != NULL;
    free(fe);
    if (exists)
        die("device %s (%d) is already attached to domain %d", v.disk.vdev,
            v.devid, domid);
    w.v = &v;
    w.domid = domid;
    in_transaction(c, write_vbd, &w, "writing the disk");
    ret = 0;
    /* only emulated disks get an answer from the device model */
    if (!strncmp(v.disk.vdev, "hd", 2) || !strncmp(v.disk.vdev, "vd", 2) ||
        v.disk.specification == XEN_XL_SPEC_VIRTIO) {
        char what[64];

        snprintf(what, sizeof(what), "block-attach %s", v.disk.vdev);
        ret = wait_ack(c, domid, v.be_path, "hotplug-status", what);
    }
    vbd_free(&v);
    return ret;
}

struct detach_args {
    const char *be_path;
};

static bool write_closing(struct xl_ctx *c, xs_transaction_t t, void *opaque)
{
    struct detach_args *a = opaque;

    return xwrite_t(c, t, a->be_path, "online", "0") &&
           xwrite_t(c, t, a->be_path, "state", "5");
}

static int check_closed(struct xl_ctx *c, void *opaque)
{
    struct detach_args *a = opaque;
    char *s = xread(c, "%s/state", a->be_path);
    int r = !s || !strcmp(s, "6");

    free(s);
    return r;
}

static int cmd_block_detach(struct xl_ctx *c, int argc, char **argv)
{
    struct detach_args a;
    struct xl_dev d;
    int domid, ret = 0;

    if (argc != 3)
        die_usage("block-detach: expected a domain id and a device");
    domid = parse_domid(argv[1]);
    find_dev(c, domid, argv[2], &d);
    a.be_path = d.be_path;
    in_transaction(c, write_closing, &a, "unplugging the disk");
    if (dm_running(c, domid) &&
        wait_for(c, d.be_path, check_closed, &a, 0, NULL) != 1) {
        fprintf(stderr, "diskdm-xl: block-detach %s: device model did not close "
                "the disk within %d s; removing it anyway\n", d.vdev,
                c->timeout_ms / 1000);
        ret = 1;
    }
    xs_rm(c->xs, XBT_NULL, d.fe_path);
    xs_rm(c->xs, XBT_NULL, d.be_path);
    free_dev(&d);
    return ret;
}

static int cmd_block_list(struct xl_ctx *c, int argc, char **argv)
{
    char dir[64];
    char **ents;
    unsigned n = 0;
    int domid;

    if (argc != 2)
        die_usage("block-list: expected a domain id");
    domid = parse_domid(argv[1]);
    if (!domain_exists(c, domid))
        die("domain %d does not exist", domid);
    snprintf(dir, sizeof(dir), "/local/domain/%d/device/vbd", domid);
    ents = xs_directory(c->xs, XBT_NULL, dir, &n);
    printf("%-6s %-10s %-6s %-5s %-6s %-10s %s\n", "Vdev", "Devid", "Type",
           "Mode", "Media", "Status", "Params");
    for (unsigned i = 0; ents && i < n; i++) {
        char *be = xread(c, "%s/%s/backend", dir, ents[i]);
        char *vdev = be ? xread(c, "%s/dev", be) : NULL;
        char *type = be ? xread(c, "%s/type", be) : NULL;
        char *mode = be ? xread(c, "%s/mode", be) : NULL;
        char *media = be ? xread(c, "%s/device-type", be) : NULL;
        char *st = be ? xread(c, "%s/hotplug-status", be) : NULL;
        char *params = be ? xread(c, "%s/params", be) : NULL;

        printf("%-6s %-10s %-6s %-5s %-6s %-10s %s\n", vdev ? vdev : "-",
               ents[i], type ? type : "-", mode ? mode : "-",
               media ? media : "-", st ? st : "-", params ? params : "-");
        free(be); free(vdev); free(type); free(mode); free(media); free(st);
        free(params);
    }
    free(ents);
    return 0;
}

/* Write one backend key after clearing the acknowledgement keys. */
static int change_and_wait(struct xl_ctx *c, int domid, const struct xl_dev *d,
                           const char *key, const char *val, const char *ack,
                           const char *what)
{
    char path[512];

    xrm(c, "%s/%s", d->be_path, ack);
    xrm(c, "%s/hotplug-error", d->be_path);
    snprintf(path, sizeof(path), "%s/%s", d->be_path, key);
    if (!xs_write(c->xs, XBT_NULL, path, val, strlen(val)))
        die("xenstore write %s: %s", path, strerror(errno));
    return wait_ack(c, domid, d->be_path, ack, what);
}

static void require_cdrom(struct xl_ctx *c, const struct xl_dev *d)
{
    char *t = xread(c, "%s/device-type", d->be_path);
    bool cd = t && !strcmp(t, "cdrom");

    free(t);
    if (!cd)
        die("%s is not a CD-ROM drive", d->vdev);
}

static int cmd_cd_insert(struct xl_ctx *c, int argc, char **argv)
{
    struct xl_dev d;
    struct xl_vbd v;
    char *spec, *cur, *params, what[64];
    const char *parts[1];
    int domid, ret = 0;

    if (argc != 4)
        die_usage("cd-insert: expected a domain id, a device and a target");
    domid = parse_domid(argv[1]);
    find_dev(c, domid, argv[2], &d);
    require_cdrom(c, &d);
    /* xl builds the same spec for cd-insert */
    if (asprintf(&spec, "vdev=%s,access=r,devtype=cdrom,target=%s", d.vdev,
                 argv[3]) < 0)
        abort();
    parts[0] = spec;
    parse_vbd(&v, parts, 1, domid);
    v.be_type = "qdisk";
    params = params_for(&v, v.disk.target);
    snprintf(what, sizeof(what), "cd-insert %s", d.vdev);
    cur = xread(c, "%s/params", d.be_path);
    /* libxl ejects first, then inserts, so the guest sees the change */
    if (cur && *cur)
        ret = change_and_wait(c, domid, &d, "params", "", "sectors", what);
    if (!ret)
        ret = change_and_wait(c, domid, &d, "params", params, "sectors", what);
    free(cur);
    free(params);
    free(spec);
    vbd_free(&v);
    free_dev(&d);
    return ret;
}

static int cmd_cd_eject(struct xl_ctx *c, int argc, char **argv)
{
    struct xl_dev d;
    char what[64];
    int domid, ret;

    if (argc != 3)
        die_usage("cd-eject: expected a domain id and a device");
    domid = parse_domid(argv[1]);
    find_dev(c, domid, argv[2], &d);
    require_cdrom(c, &d);
    snprintf(what, sizeof(what), "cd-eject %s", d.vdev);
    ret = change_and_wait(c, domid, &d, "params", "", "sectors", what);
    free_dev(&d);
    return ret;
}

static int cmd_block_set_mode(struct xl_ctx *c, int argc, char **argv)
{
    struct xl_dev d;
    const char *mode;
    char what[64], *info;
    int domid, ret;

    if (argc != 4)
        die_usage("block-set-mode: expected a domain id, a device and r or w");
    domid = parse_domid(argv[1]);
    if (!strcmp(argv[3], "r") || !strcmp(argv[3], "ro"))
        mode = "r";
    else if (!strcmp(argv[3], "w") || !strcmp(argv[3], "rw"))
        mode = "w";
    else
        die_usage("block-set-mode: mode must be r or w, not '%s'", argv[3]);
    find_dev(c, domid, argv[2], &d);
    snprintf(what, sizeof(what), "block-set-mode %s %s", d.vdev, mode);
    ret = change_and_wait(c, domid, &d, "mode", mode, "info", what);
    info = ret || !dm_running(c, domid) ? NULL : xread(c, "%s/info", d.be_path);
    if (info && ((atoi(info) & 4) != 0) != (mode[0] == 'r')) {
        fprintf(stderr, "diskdm-xl: %s: the device model kept the disk %s\n",
                what, atoi(info) & 4 ? "read-only" : "read-write");
        ret = 1;
    }
    free(info);
    free_dev(&d);
    return ret;
}

/* The device model took the resize request away, or reported an error. */
static int check_resized(struct xl_ctx *c, void *opaque)
{
    const struct xl_dev *d = opaque;
    char *req = xread(c, "%s/resize", d->be_path);
    char *e = xread(c, "%s/hotplug-error", d->be_path);
    int r = e ? -EIO : req ? 0 : 1;

    free(req);
    free(e);
    return r;
}

/*
 * Growing an image is a write to it, so a disk the toolstack gave the
 * guest read-only (mode=r) is refused here and again by the device model.
 * The request is the backend's `resize` key (bytes); the device model
 * grows the image, tells the guest's device, publishes the new `sectors`
 * and removes the key, or writes hotplug-error.
 */
static int cmd_block_resize(struct xl_ctx *c, int argc, char **argv)
{
    struct xl_dev d;
    uint64_t size;
    char what[64], val[32], path[512], *mode, *type, *sectors;
    int domid, r, ret = 0;

    if (argc != 4)
        die_usage("block-resize: expected a domain id, a device and a size");
    domid = parse_domid(argv[1]);
    if (parse_size(argv[3], &size) < 0 || size == 0)
        die_usage("block-resize: invalid size '%s'", argv[3]);
    if (size % 512)
        die_usage("block-resize: size %s is not a multiple of 512 bytes", argv[3]);
    find_dev(c, domid, argv[2], &d);
    snprintf(what, sizeof(what), "block-resize %s", d.vdev);
    type = xread(c, "%s/device-type", d.be_path);
    mode = xread(c, "%s/mode", d.be_path);
    if (type && !strcmp(type, "cdrom"))
        die("%s: a CD-ROM cannot be resized", what);
    if (!mode || mode[0] != 'w')
        die("%s: the disk is read-only (mode=%s); its image is never changed",
            what, mode ? mode : "missing");
    free(type);
    free(mode);
    if (!dm_running(c, domid))
        die("%s: no device model is running for domain %d", what, domid);
    xrm(c, "%s/hotplug-error", d.be_path);
    snprintf(path, sizeof(path), "%s/resize", d.be_path);
    snprintf(val, sizeof(val), "%llu", (unsigned long long)size);
    if (!xs_write(c->xs, XBT_NULL, path, val, strlen(val)))
        die("xenstore write %s: %s", path, strerror(errno));
    r = wait_for(c, d.be_path, check_resized, &d, 0, NULL);
    if (r == -EIO) {
        char *e = xread(c, "%s/hotplug-error", d.be_path);

        fprintf(stderr, "diskdm-xl: %s: %s\n", what, e ? e : "failed");
        free(e);
        ret = 1;
    } else if (r < 0) {
        fprintf(stderr, "diskdm-xl: %s: device model did not respond within %d s\n",
                what, c->timeout_ms / 1000);
        ret = 1;
    }
    xrm(c, "%s/resize", d.be_path);
    sectors = ret ? NULL : xread(c, "%s/sectors", d.be_path);
    if (!ret && (!sectors || strtoull(sectors, NULL, 10) != size / 512)) {
        fprintf(stderr, "diskdm-xl: %s: the device model reports %s sectors\n",
                what, sectors ? sectors : "no");
        ret = 1;
    }
    free(sectors);
    free_dev(&d);
    return ret;
}

/* ------------------------------------------------------------------ */

static const struct {
    const char *name;
    int (*fn)(struct xl_ctx *c, int argc, char **argv);
} commands[] = {
    { "create", cmd_create },
    { "list", cmd_list },
    { "destroy", cmd_destroy },
    { "block-attach", cmd_block_attach },
    { "block-detach", cmd_block_detach },
    { "block-list", cmd_block_list },
    { "block-set-mode", cmd_block_set_mode },
    { "block-resize", cmd_block_resize },
    { "cd-insert", cmd_cd_insert },
    { "cd-eject", cmd_cd_eject },
};

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "diskdm", required_argument, NULL, 'm' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { "verbose", no_argument, NULL, 'v' },
        { NULL, 0, NULL, 0 },
    };
    struct xl_ctx c = { .timeout_ms = DEFAULT_TIMEOUT_S * 1000 };
    char *found = NULL;
    int opt, ret;

    log_init("diskdm-xl", LOG_WARN);
    c.diskdm = getenv("DISKDM");
    while ((opt = getopt_long(argc, argv, "+hv", opts, NULL)) != -1) {
        switch (opt) {
        case 'm': c.diskdm = optarg; c.diskdm_from_flag = true; break;
        case 'v': c.verbose = true; break;
        case 't': {
            char *end;
            long s = strtol(optarg, &end, 10);

            if (*end || s <= 0 || s > 3600)
                die_usage("invalid timeout '%s'", optarg);
            c.timeout_ms = (int)s * 1000;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    if (!c.diskdm || !*c.diskdm)
        c.diskdm = found = find_diskdm();
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
        if (strcmp(argv[optind], commands[i].name))
            continue;
        c.xs = xs_open(0);
        if (!c.xs) {
            const char *p = getenv("XENSTORED_PATH");

            die("cannot connect to xenstore at %s: %s",
                p ? p : "the default socket", strerror(errno));
        }
        ret = commands[i].fn(&c, argc - optind, argv + optind);
        xs_close(c.xs);
        free(found);
        return ret;
    }
    die_usage("unknown command '%s'", argv[optind]);
}
