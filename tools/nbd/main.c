/*
 * tools/nbd/main.c — diskdm-nbd: export a disk image over NBD with
 * qemu-nbd's command line. Parses options into typed config, opens the
 * export, binds the listening sockets, optionally daemonizes, and runs the
 * event loop until the last client leaves (or forever with -t).
 */
#include "tools/nbd/export.h"
#include "tools/nbd/server.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libnbd.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROG "diskdm-nbd"
#define VERSION "0.1"

struct nbd_cli {
    const char *file;
    const char *port;
    const char *bind;
    const char *socket;
    unsigned shared;
    bool persistent;
    const char *export_name;
    const char *description;
    uint64_t offset;
    int partition;
    const char *format;
    bool read_only;
    bool snapshot;
    const char *load_snapshot;
    enum cache_mode cache;
    enum discard_mode discard;
    enum detect_zeroes_mode detect_zeroes;
    int aio;                    /* bdrv_open_opts.aio value */
    bool image_opts;
    const char *tls_creds;
    const char *tls_authz;
    const char *tls_hostname;
    bool fork;
    const char *pid_file;
    bool list;
    bool allocation_depth;
    int verbose;
    const char *connect_dev;
    const char *disconnect_dev;
    unsigned handshake_limit;   /* seconds */
    bool no_zero_copy;
    struct nbd_objects *objects;
};

static void usage(void)
{
    printf(
"Usage: " PROG " [OPTIONS] FILE\n"
"  or:  " PROG " -L [OPTIONS]\n"
"Export FILE (a disk image) over the NBD protocol.\n"
"\n"
"  -h, --help                display this help and exit\n"
"  -V, --version             output version information and exit\n"
"\n"
"Connection properties:\n"
"  -p, --port=PORT           port to listen on (default 10809)\n"
"  -b, --bind=IFACE          interface to bind to (default 0.0.0.0)\n"
"  -k, --socket=PATH         path to the unix socket\n"
"  -e, --shared=NUM          device can be shared by NUM clients (default 1;\n"
"                            0 = unlimited)\n"
"  -t, --persistent          don't exit on the last connection\n"
"  -v, --verbose             display extra debugging information\n"
"  -x, --export-name=NAME    expose export by name (default is empty string)\n"
"  -D, --description=TEXT    export a human-readable description\n"
"      --handshake-limit=N   drop clients that take over N seconds to negotiate\n"
"                            (default 10; 0 = no limit)\n"
"\n"
"Exposing part of the image:\n"
"  -o, --offset=OFFSET       offset into the image\n"
"  -P, --partition=NUM       only expose partition NUM (MBR or GPT)\n"
"  -A, --allocation-depth    expose the allocation depth (qemu:allocation-depth)\n"
"\n"
"General purpose options:\n"
"  -L, --list                list exports available from another NBD server\n"
"  --object type,id=ID,...   define an object: secret, tls-creds-x509,\n"
"                            tls-creds-psk, authz-simple\n"
"  --tls-creds=ID            use id of an earlier --object to provide TLS\n"
"  --tls-authz=ID            id of an authz-simple object to check clients with\n"
"  --tls-hostname=HOSTNAME   override hostname used to check x509 certificate\n"
"                            (with -L)\n"
"  -T, --trace [file=]FILE   debug log of protocol events (to FILE)\n"
"  --fork                    fork off the server process and exit the parent\n"
"                            once the server is running\n"
"  --pid-file=PATH           store the server's process ID in the given file\n"
"\n"
"Kernel NBD client support:\n"
"  -c, --connect=DEV         connect FILE to the local NBD device DEV\n"
"  -d, --disconnect          disconnect the specified device\n"
"\n"
"Block device options:\n"
"  -f, --format=FORMAT       set image format (raw, qcow2, ...)\n"
"  -r, --read-only           export read-only (the image is never opened for\n"
"                            writing)\n"
"  -s, --snapshot            use FILE as an external snapshot, create a temporary\n"
"                            file with backing_file=FILE, redirect the write to\n"
"                            the temporary one\n"
"  -l, --load-snapshot=SNAPSHOT_PARAM\n"
"                            load an internal snapshot inside FILE and export it\n"
"                            as a read-only device\n"
"  -n, --nocache             disable host cache\n"
"      --cache=MODE          set cache mode (none, writeback, writethrough,\n"
"                            directsync, unsafe)\n"
"      --aio=MODE            set AIO mode (threads, native, io_uring)\n"
"      --discard=MODE        set discard mode (ignore, unmap)\n"
"      --detect-zeroes=MODE  set detect-zeroes mode (off, on, unmap)\n"
"      --image-opts          treat FILE as a full set of image options\n"
"      --no-zero-copy        never splice reads from the image file\n");
}

static int enum_index(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], s) == 0) {
            return i;
        }
    }
    return -1;
}

static void die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
    exit(2);
}

enum {
    OPT_OBJECT = 256, OPT_TLS_CREDS, OPT_TLS_AUTHZ, OPT_TLS_HOSTNAME, OPT_FORK,
    OPT_PID_FILE, OPT_CACHE, OPT_AIO, OPT_DISCARD, OPT_DETECT_ZEROES,
    OPT_IMAGE_OPTS, OPT_HANDSHAKE, OPT_NO_ZERO_COPY,
};

static void parse_args(int argc, char **argv, struct nbd_cli *c)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "bind", required_argument, NULL, 'b' },
        { "port", required_argument, NULL, 'p' },
        { "socket", required_argument, NULL, 'k' },
        { "offset", required_argument, NULL, 'o' },
        { "read-only", no_argument, NULL, 'r' },
        { "allocation-depth", no_argument, NULL, 'A' },
        { "connect", required_argument, NULL, 'c' },
        { "disconnect", no_argument, NULL, 'd' },
        { "list", no_argument, NULL, 'L' },
        { "snapshot", no_argument, NULL, 's' },
        { "load-snapshot", required_argument, NULL, 'l' },
        { "nocache", no_argument, NULL, 'n' },
        { "cache", required_argument, NULL, OPT_CACHE },
        { "aio", required_argument, NULL, OPT_AIO },
        { "discard", required_argument, NULL, OPT_DISCARD },
        { "detect-zeroes", required_argument, NULL, OPT_DETECT_ZEROES },
        { "shared", required_argument, NULL, 'e' },
        { "format", required_argument, NULL, 'f' },
        { "persistent", no_argument, NULL, 't' },
        { "verbose", no_argument, NULL, 'v' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "export-name", required_argument, NULL, 'x' },
        { "description", required_argument, NULL, 'D' },
        { "tls-creds", required_argument, NULL, OPT_TLS_CREDS },
        { "tls-authz", required_argument, NULL, OPT_TLS_AUTHZ },
        { "tls-hostname", required_argument, NULL, OPT_TLS_HOSTNAME },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "trace", required_argument, NULL, 'T' },
        { "fork", no_argument, NULL, OPT_FORK },
        { "pid-file", required_argument, NULL, OPT_PID_FILE },
        { "partition", required_argument, NULL, 'P' },
        { "handshake-limit", required_argument, NULL, OPT_HANDSHAKE },
        { "no-zero-copy", no_argument, NULL, OPT_NO_ZERO_COPY },
        { NULL, 0, NULL, 0 },
    };
    static const char *const aio_names[] = { "threads", "native", "io_uring", NULL };
    uint64_t u;
    int opt, i;
    struct error *err = NULL;

    while ((opt = getopt_long(argc, argv, "hVb:o:p:rsnc:dvk:e:f:tl:x:T:D:ALP:",
                              longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            usage();
            exit(0);
        case 'V':
            printf(PROG " " VERSION "\n");
            exit(0);
        case 'b': c->bind = optarg; break;
        case 'p':
            if (parse_uint(optarg, &u) < 0 || u == 0 || u > 65535) {
                die_usage("Invalid port number '%s'", optarg);
            }
            c->port = optarg;
            break;
        case 'k': c->socket = optarg; break;
        case 'o':
            if (parse_size(optarg, &u) < 0) {
                die_usage("Invalid offset '%s'", optarg);
            }
            c->offset = u;
            break;
        case 'P':
            if (parse_uint(optarg, &u) < 0 || u < 1 || u > 128) {
                die_usage("Invalid partition '%s'", optarg);
            }
            c->partition = (int)u;
            break;
        case 'r': c->read_only = true; break;
        case 'A': c->allocation_depth = true; break;
        case 'c': c->connect_dev = optarg; break;
        case 'd': c->disconnect_dev = ""; break;
        case 'L': c->list = true; break;
        case 's': c->snapshot = true; break;
        case 'l': c->load_snapshot = optarg; c->read_only = true; break;
        case 'n': c->cache = CACHE_NONE; break;
        case OPT_CACHE:
            i = enum_index(cache_mode_names, optarg);
            if (i < 0) {
                die_usage("Invalid cache mode '%s'", optarg);
            }
            c->cache = i;
            break;
        case OPT_AIO:
            /* "native" (Linux AIO, O_DIRECT only) maps to the block layer's
             * automatic choice: io_uring where the kernel allows it. */
            i = enum_index(aio_names, optarg);
            if (i < 0) {
                die_usage("Invalid aio mode '%s'", optarg);
            }
            c->aio = i == 0 ? AIO_THREADS : i == 2 ? AIO_IO_URING : AIO_AUTO;
            break;
        case OPT_DISCARD:
            i = enum_index(discard_mode_names, optarg);
            if (i < 0) {
                die_usage("Invalid discard mode '%s'", optarg);
            }
            c->discard = (!strcmp(optarg, "on") || !strcmp(optarg, "unmap"))
                         ? DISCARD_UNMAP : DISCARD_IGNORE;
            break;
        case OPT_DETECT_ZEROES:
            i = enum_index(detect_zeroes_names, optarg);
            if (i < 0) {
                die_usage("Invalid detect-zeroes mode '%s'", optarg);
            }
            c->detect_zeroes = i;
            break;
        case 'e':
            if (parse_uint(optarg, &u) < 0 || u > 0xffff) {
                die_usage("Invalid shared device number '%s'", optarg);
            }
            c->shared = (unsigned)u;
            break;
        case 'f': c->format = optarg; break;
        case 't': c->persistent = true; break;
        case 'v': c->verbose++; break;
        case OPT_OBJECT:
            if (nbd_objects_add(c->objects, optarg, &err) < 0) {
                fprintf(stderr, PROG ": --object: %s\n", err->msg);
                exit(2);
            }
            break;
        case 'x': c->export_name = optarg; break;
        case 'D': c->description = optarg; break;
        case OPT_TLS_CREDS: c->tls_creds = optarg; break;
        case OPT_TLS_AUTHZ: c->tls_authz = optarg; break;
        case OPT_TLS_HOSTNAME: c->tls_hostname = optarg; break;
        case OPT_IMAGE_OPTS: c->image_opts = true; break;
        case 'T':
            c->verbose = 2;
            if (!strncmp(optarg, "file=", 5) && log_set_file(optarg + 5) < 0) {
                die_usage("cannot open trace file '%s'", optarg + 5);
            }
            break;
        case OPT_FORK: c->fork = true; break;
        case OPT_PID_FILE: c->pid_file = optarg; break;
        case OPT_HANDSHAKE:
            if (parse_uint(optarg, &u) < 0 || u > 3600) {
                die_usage("Invalid handshake limit '%s'", optarg);
            }
            c->handshake_limit = (unsigned)u;
            break;
        case OPT_NO_ZERO_COPY: c->no_zero_copy = true; break;
        default:
            fprintf(stderr, "Try '" PROG " --help' for more information.\n");
            exit(2);
        }
    }
    if (c->list) {
        if (optind < argc) {
            die_usage("List mode is incompatible with a file name ('%s')",
                      argv[optind]);
        }
        return;
    }
    if (c->disconnect_dev) {
        if (optind != argc - 1) {
            die_usage("%s", "-d needs the device to disconnect");
        }
        c->disconnect_dev = argv[optind];
        return;
    }
    if (optind != argc - 1) {
        die_usage("%s", optind >= argc ? "Expected exactly one FILE argument"
                                       : "Too many arguments");
    }
    c->file = argv[optind];
    if (c->socket && (c->port || c->bind)) {
        die_usage("%s", "-k is incompatible with -p and -b");
    }
    if (c->snapshot && c->read_only) {
        die_usage("%s", "-s and -r cannot be used together");
    }
    if (c->tls_authz && !c->tls_creds) {
        die_usage("%s", "--tls-authz is not permitted without --tls-creds");
    }
    if (c->tls_hostname) {
        die_usage("%s", "--tls-hostname is only permitted with --list");
    }
    if (c->image_opts && c->format) {
        die_usage("%s", "--image-opts and --format are mutually exclusive");
    }
}

/* ------------------------------------------------------------------ */
/* -L: list another server's exports (through libnbd)                  */
/* ------------------------------------------------------------------ */

struct list_ctx {
    char **names;
    char **descs;
    size_t n;
};

static int list_cb(void *opaque, const char *name, const char *desc)
{
    struct list_ctx *l = opaque;
    l->names = realloc(l->names, (l->n + 1) * sizeof(char *));
    l->descs = realloc(l->descs, (l->n + 1) * sizeof(char *));
    if (!l->names || !l->descs) {
        abort();
    }
    l->names[l->n] = strdup(name);
    l->descs[l->n] = strdup(desc);
    l->n++;
    return 0;
}

static int ctx_cb(void *opaque, const char *name)
{
    struct list_ctx *l = opaque;
    l->names = realloc(l->names, (l->n + 1) * sizeof(char *));
    if (!l->names) {
        abort();
    }
    l->names[l->n++] = strdup(name);
    return 0;
}

static int list_exports(const struct nbd_cli *c)
{
    struct nbd_handle *h = nbd_create();
    struct list_ctx l = { 0 };
    int ret = 1;
    if (!h) {
        fprintf(stderr, PROG ": %s\n", nbd_get_error());
        return 1;
    }
    nbd_set_opt_mode(h, true);
    nbd_set_full_info(h, true);
    if (c->tls_creds) {
        struct error *err = NULL;
        if (nbd_tls_client_setup(c->objects, c->tls_creds, h, &err) < 0) {
            error_report_err(err);
            goto out;
        }
        if (c->tls_hostname) {
            fprintf(stderr, PROG ": --tls-hostname: warning: this libnbd checks "
                    "the certificate against the host connected to\n");
        }
    }
    int rc;
    if (c->socket) {
        rc = nbd_connect_unix(h, c->socket);
    } else {
        char port[16];
        snprintf(port, sizeof(port), "%s", c->port ? c->port : "10809");
        rc = nbd_connect_tcp(h, c->bind ? c->bind : "localhost", port);
    }
    if (rc < 0) {
        fprintf(stderr, PROG ": %s\n", nbd_get_error());
        goto out;
    }
    if (nbd_opt_list(h, (nbd_list_callback){ .callback = list_cb, .user_data = &l }) < 0) {
        fprintf(stderr, PROG ": %s\n", nbd_get_error());
        goto out;
    }
    printf("exports available: %zu\n", l.n);
    for (size_t i = 0; i < l.n; i++) {
        printf(" export: '%s'\n", l.names[i]);
        if (l.descs[i][0]) {
            printf("  description: %s\n", l.descs[i]);
        }
        if (nbd_set_export_name(h, l.names[i]) < 0 || nbd_opt_info(h) < 0) {
            continue;
        }
        static const struct { uint64_t bit; const char *name; } fl[] = {
            { NBD_FLAG_READ_ONLY, "readonly" }, { NBD_FLAG_SEND_FLUSH, "flush" },
            { NBD_FLAG_SEND_FUA, "fua" }, { NBD_FLAG_ROTATIONAL, "rotational" },
            { NBD_FLAG_SEND_TRIM, "trim" }, { NBD_FLAG_SEND_WRITE_ZEROES, "zeroes" },
            { NBD_FLAG_SEND_DF, "df" }, { NBD_FLAG_CAN_MULTI_CONN, "multi" },
            { NBD_FLAG_SEND_RESIZE, "resize" }, { NBD_FLAG_SEND_CACHE, "cache" },
            { NBD_FLAG_SEND_FAST_ZERO, "fast-zero" },
        };
        printf("  size:  %" PRId64 "\n", nbd_get_size(h));
        uint64_t flags = NBD_FLAG_HAS_FLAGS |
            (nbd_is_read_only(h) == 1 ? NBD_FLAG_READ_ONLY : 0) |
            (nbd_can_flush(h) == 1 ? NBD_FLAG_SEND_FLUSH : 0) |
            (nbd_can_fua(h) == 1 ? NBD_FLAG_SEND_FUA : 0) |
            (nbd_is_rotational(h) == 1 ? NBD_FLAG_ROTATIONAL : 0) |
            (nbd_can_trim(h) == 1 ? NBD_FLAG_SEND_TRIM : 0) |
            (nbd_can_zero(h) == 1 ? NBD_FLAG_SEND_WRITE_ZEROES : 0) |
            (nbd_can_df(h) == 1 ? NBD_FLAG_SEND_DF : 0) |
            (nbd_can_multi_conn(h) == 1 ? NBD_FLAG_CAN_MULTI_CONN : 0) |
            (nbd_can_cache(h) == 1 ? NBD_FLAG_SEND_CACHE : 0) |
            (nbd_can_fast_zero(h) == 1 ? NBD_FLAG_SEND_FAST_ZERO : 0);
        printf("  flags: 0x%" PRIx64 " (", flags);
        for (size_t j = 0; j < ARRAY_SIZE(fl); j++) {
            if (flags & fl[j].bit) {
                printf(" %s", fl[j].name);
            }
        }
        printf(" )\n");
        int64_t mn = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
        int64_t pr = nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED);
        int64_t mx = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
        if (mn > 0) {
            printf("  min block: %" PRId64 "\n  opt block: %" PRId64
                   "\n  max block: %" PRId64 "\n", mn, pr, mx);
        }
        struct list_ctx ctx = { 0 };
        if (nbd_opt_list_meta_context(h, (nbd_context_callback){
                .callback = ctx_cb, .user_data = &ctx }) >= 0) {
            printf("  available meta contexts: %zu\n", ctx.n);
            for (size_t j = 0; j < ctx.n; j++) {
                printf("   %s\n", ctx.names[j]);
                free(ctx.names[j]);
            }
            free(ctx.names);
        }
    }
    nbd_opt_abort(h);
    ret = 0;
out:
    for (size_t i = 0; i < l.n; i++) {
        free(l.names[i]);
        free(l.descs[i]);
    }
    free(l.names);
    free(l.descs);
    nbd_close(h);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Listening sockets                                                   */
/* ------------------------------------------------------------------ */

static int listen_unix(const char *path, struct error **errp)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path)) {
        error_setg(errp, "socket path '%s' is too long", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot create a socket");
        return -errno;
    }
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
        int e = errno;
        error_setg_errno(errp, e, "cannot listen on %s", path);
        close(fd);
        return -e;
    }
    return fd;
}

static int listen_tcp(const char *host, const char *port, int *fds, int max,
                      struct error **errp)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_ADDRCONFIG };
    struct addrinfo *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        error_setg(errp, "cannot resolve '%s' port %s: %s", host ? host : "*",
                   port, gai_strerror(rc));
        return -EINVAL;
    }
    int n = 0, last_err = 0;
    for (struct addrinfo *a = res; a && n < max; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last_err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (a->ai_family == AF_INET6) {
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        }
        if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, 128) < 0) {
            last_err = errno;
            close(fd);
            continue;
        }
        fds[n++] = fd;
    }
    freeaddrinfo(res);
    if (n == 0) {
        error_setg_errno(errp, last_err ? last_err : EADDRNOTAVAIL,
                         "cannot listen on %s port %s", host ? host : "0.0.0.0",
                         port);
        return -EADDRNOTAVAIL;
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* Running                                                             */
/* ------------------------------------------------------------------ */

struct run_state {
    struct event_loop *loop;
    int sigfd;
};

static void on_signal(void *opaque, uint32_t events)
{
    struct run_state *rs = opaque;
    struct signalfd_siginfo si;
    if (read(rs->sigfd, &si, sizeof(si)) == sizeof(si)) {
        log_debug("signal %u: shutting down", si.ssi_signo);
    }
    ev_stop(rs->loop);
}

static int write_pid_file(const char *path, struct error **errp)
{
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || full_write(fd, buf, len) < 0) {
        error_setg_errno(errp, errno, "cannot write pid file %s", path);
        if (fd >= 0) {
            close(fd);
        }
        return -EIO;
    }
    close(fd);
    return 0;
}

static int build_open_opts(const struct nbd_cli *c, struct bdrv_open_opts *o,
                           struct error **errp)
{
    if (c->image_opts) {
        if (bdrv_open_opts_parse(c->file, o, errp) < 0) {
            return -EINVAL;
        }
    } else {
        bdrv_open_opts_init(o);
        o->filename = strdup(c->file);
        if (c->format) {
            o->driver = strdup(c->format);
        }
        o->cache = c->cache;
        o->discard = c->discard;
        o->detect_zeroes = c->detect_zeroes;
        o->aio = c->aio;
    }
    if (c->read_only) {
        /* ro-forced: never O_RDWR, at any layer */
        o->read_only = (struct opt_bool){ true, true };
        o->auto_read_only = (struct opt_bool){ true, false };
        o->force_read_only = true;
    }
    if (c->snapshot) {
        o->snapshot = true;
    }
    return 0;
}

/* Everything after option parsing; `ready_fd` (if >= 0) gets one byte once
 * clients can connect (--fork). Returns the exit status. */
static int serve(struct nbd_cli *c, int ready_fd)
{
    struct error *err = NULL;
    int status = 1;
    struct nbd_tls_creds *tls = NULL;
    struct nbd_blk_export ex = { .blk = NULL };
    struct bdrv_open_opts oo;
    struct nbd_server *srv = NULL;
    int lfds[8];
    int nl = 0;
    struct run_state rs = { .sigfd = -1 };
    bool opts_made = false;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (c->load_snapshot) {
        error_setg(&err, "internal snapshots (-l %s) are not supported",
                   c->load_snapshot);
        goto out;
    }
    if (c->tls_creds) {
        tls = nbd_tls_creds_load(c->objects, c->tls_creds, c->tls_authz, &err);
        if (!tls) {
            goto out;
        }
    }
    rs.loop = ev_loop_new(&err);
    if (!rs.loop) {
        goto out;
    }
    if (build_open_opts(c, &oo, &err) < 0) {
        goto out_loop;
    }
    opts_made = true;
    struct nbd_export_cfg ec = {
        .name = c->export_name ? c->export_name : "",
        .description = c->description,
        .partition = c->partition,
        .offset = c->offset,
        .multi_conn = c->shared != 1,
        .allocation_depth = c->allocation_depth,
        .zero_copy = !c->no_zero_copy && !tls,
        .cache = oo.cache,
    };
    int dev_fd = -1;
    if (c->connect_dev) {
        /* fail early, before touching the image, when there is no device */
        dev_fd = nbd_kernel_open(c->connect_dev, &err);
        if (dev_fd < 0) {
            goto out_opts;
        }
    }
    if (nbd_blk_export_open(&ex, rs.loop, &oo, &ec, &err) < 0) {
        error_prepend(&err, "Failed to blk_new_open '%s'", c->file);
        if (dev_fd >= 0) {
            close(dev_fd);
        }
        goto out_opts;
    }
    if (c->connect_dev) {
        /* the kernel is the only client: no listening socket */
    } else if (c->socket) {
        int fd = listen_unix(c->socket, &err);
        if (fd < 0) {
            goto out_export;
        }
        lfds[nl++] = fd;
    } else {
        int n = listen_tcp(c->bind ? c->bind : "0.0.0.0",
                           c->port ? c->port : "10809", lfds, 8, &err);
        if (n < 0) {
            goto out_export;
        }
        nl = n;
    }
    struct nbd_server_cfg sc = {
        .exp = &ex.exp,
        .pol = {
            .tls_available = tls != NULL,
            .tls_required = tls != NULL,
            .max_inflight = 64,
            .max_buffered = 64u << 20,
        },
        .tls = tls,
        .max_clients = c->shared,
        .persistent = c->persistent,
        /* only when the export has a file to splice from: otherwise
         * the per-read map would buy nothing */
        .zero_copy = ec.zero_copy && ex.zc_fd >= 0,
        .handshake_limit_ms = c->handshake_limit * 1000,
    };
    srv = nbd_server_new(rs.loop, &sc);
    if (!srv) {
        error_setg(&err, "Out of memory");
        goto out_listen;
    }
    for (int i = 0; i < nl; i++) {
        if (nbd_server_add_listener(srv, lfds[i]) < 0) {
            error_setg(&err, "cannot watch the listening socket");
            goto out_listen;
        }
        lfds[i] = -1;
    }
    if (c->connect_dev) {
        int sfd;
        if (nbd_kernel_attach(dev_fd, c->connect_dev, ex.size,
                              nbd_export_tx_flags(&ex.exp, false), &sfd, &err) < 0 ||
            nbd_server_add_client(srv, sfd, true) < 0) {
            if (!err) {
                error_setg(&err, "cannot serve %s", c->connect_dev);
            }
            goto out_server;
        }
    }
    rs.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (rs.sigfd >= 0) {
        ev_fd_add(rs.loop, rs.sigfd, EPOLLIN, on_signal, &rs);
    }
    if (c->pid_file && write_pid_file(c->pid_file, &err) < 0) {
        goto out_server;
    }
    log_debug("serving %s (%" PRIu64 " bytes%s)", c->file, ex.size,
              ex.exp.read_only ? ", read-only" : "");
    if (ready_fd >= 0) {
        char ok = 0;
        if (write(ready_fd, &ok, 1) != 1) {
            /* the parent is gone; keep serving */
        }
        close(ready_fd);
        ready_fd = -1;
        int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (nullfd >= 0) {
            dup2(nullfd, 0);
            dup2(nullfd, 1);
            close(nullfd);
        }
    }
    ev_run(rs.loop);
    status = 0;

    if (c->pid_file) {
        unlink(c->pid_file);
    }
out_server:
    if (rs.sigfd >= 0) {
        ev_fd_remove(rs.loop, rs.sigfd);
        close(rs.sigfd);
    }
    nbd_server_free(srv);
out_listen:
    for (int i = 0; i < nl; i++) {
        if (lfds[i] >= 0) {
            close(lfds[i]);
        }
    }
    if (c->socket && nl > 0) {
        unlink(c->socket);
    }
out_export:
    nbd_blk_export_close(&ex);
out_opts:
    if (opts_made) {
        bdrv_open_opts_free(&oo);
    }
out_loop:
    ev_loop_free(rs.loop);
out:
    nbd_tls_creds_free(tls);
    if (err) {
        error_report_err(err);
        status = 1;
    }
    return status;
}

/* --fork: the parent waits until the child can serve, then exits with
 * success; the child's error messages go to the same stderr. */
static int serve_forked(struct nbd_cli *c)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        fprintf(stderr, PROG ": pipe: %s\n", strerror(errno));
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, PROG ": fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        close(p[0]);
        setsid();
        exit(serve(c, p[1]));
    }
    close(p[1]);
    char b;
    ssize_t n;
    do {
        n = read(p[0], &b, 1);
    } while (n < 0 && errno == EINTR);
    close(p[0]);
    if (n == 1) {
        return 0;
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : 1;
}

int main(int argc, char **argv)
{
    struct nbd_cli c = {
        .shared = 1,
        .cache = CACHE_WRITEBACK,
        .discard = DISCARD_IGNORE,
        .detect_zeroes = DETECT_ZEROES_OFF,
        .handshake_limit = 10,
    };
    log_init(PROG, LOG_WARN);
    c.objects = nbd_objects_new();
    parse_args(argc, argv, &c);
    if (c.verbose) {
        log_init(PROG, c.verbose > 1 ? LOG_DEBUG : LOG_INFO);
    }
    int status;
    if (c.list) {
        status = list_exports(&c);
    } else if (c.disconnect_dev) {
        struct error *err = NULL;
        status = 0;
        if (nbd_kernel_disconnect(c.disconnect_dev, &err) < 0) {
            error_report_err(err);
            status = 1;
        } else {
            printf("%s disconnected\n", c.disconnect_dev);
        }
    } else if (c.fork) {
        status = serve_forked(&c);
    } else {
        status = serve(&c, -1);
    }
    nbd_objects_free(c.objects);
    return status;
}
