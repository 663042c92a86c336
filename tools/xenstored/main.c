/*
 * tools/xenstored/main.c — diskdm-xenstored's command line: listening
 * sockets (toolstack, read-only, per-domain), pid file, log file, and a
 * clean shutdown on SIGINT/SIGTERM/SIGHUP. Runs in the foreground.
 */
#include "tools/xenstored/xenstored.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
"Usage: diskdm-xenstored --socket PATH [options]\n"
"\n"
"A xenstore daemon speaking the Xen wire protocol on Unix sockets, for\n"
"hosts without a hypervisor. Point clients at it with XENSTORED_PATH=PATH.\n"
"\n"
"  -s, --socket PATH          toolstack socket (privileged, as dom0)\n"
"  -r, --ro-socket PATH       read-only toolstack socket\n"
"  -D, --domain-socket ID:PATH  clients on PATH act as domain ID\n"
"  -p, --pidfile FILE         write the pid once the sockets listen\n"
"  -l, --log FILE             log to FILE instead of stderr\n"
"  -v, --verbose              more messages (twice: every request)\n"
"  -h, --help                 this text\n");
}

struct xsd_domain_socket {
    uint32_t domid;
    const char *path;
};

/* Written whole under a temporary name, then renamed: whoever sees the
 * file sees the pid, and the sockets already listen. */
static int xsd_write_pidfile(const char *path, struct error **errp)
{
    char *tmp = xsd_alloc(strlen(path) + 8);
    sprintf(tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "we");
    int ret = 0;
    if (!f) {
        ret = -errno;
        goto out;
    }
    if (fprintf(f, "%ld\n", (long)getpid()) < 0) {
        ret = -EIO;
    }
    if (fclose(f) != 0 && ret == 0) {
        ret = -errno;
    }
    if (ret == 0 && rename(tmp, path) < 0) {
        ret = -errno;
    }
    if (ret < 0) {
        unlink(tmp);
    }
out:
    if (ret < 0) {
        error_setg_errno(errp, -ret, "cannot write pid file '%s'", path);
    }
    free(tmp);
    return ret;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "socket", required_argument, NULL, 's' },
        { "ro-socket", required_argument, NULL, 'r' },
        { "domain-socket", required_argument, NULL, 'D' },
        { "pidfile", required_argument, NULL, 'p' },
        { "log", required_argument, NULL, 'l' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *sock = NULL, *ro_sock = NULL, *pidfile = NULL, *logfile = NULL;
    struct xsd_domain_socket *dsocks = NULL;
    size_t ndsocks = 0;
    int verbose = 0;
    int opt;

    log_init(argv[0], LOG_WARN);
    while ((opt = getopt_long(argc, argv, "s:r:D:p:l:vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': sock = optarg; break;
        case 'r': ro_sock = optarg; break;
        case 'p': pidfile = optarg; break;
        case 'l': logfile = optarg; break;
        case 'v': verbose++; break;
        case 'h': usage(stdout); return 0;
        case 'D': {
            char *colon = strchr(optarg, ':');
            uint32_t domid;
            if (colon) {
                *colon = '\0';
            }
            if (!colon || !colon[1] || xsd_parse_domid(optarg, &domid) < 0 ||
                domid == 0 || domid == XSD_DOMID_SELF) {
                fprintf(stderr, "%s: --domain-socket expects DOMID:PATH with "
                        "a domain id from 1 to 65535\n", log_progname());
                return 2;
            }
            dsocks = xsd_realloc(dsocks, (ndsocks + 1) * sizeof(*dsocks));
            dsocks[ndsocks++] = (struct xsd_domain_socket){ domid, colon + 1 };
            break;
        }
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", log_progname(),
                argv[optind]);
        return 2;
    }
    if (!sock) {
        fprintf(stderr, "%s: --socket PATH is required\n", log_progname());
        usage(stderr);
        return 2;
    }
    log_init(argv[0], verbose >= 2 ? LOG_DEBUG : verbose ? LOG_INFO : LOG_WARN);
    if (logfile) {
        int ret = log_set_file(logfile);
        if (ret < 0) {
            fprintf(stderr, "%s: cannot open log file '%s': %s\n",
                    log_progname(), logfile, strerror(-ret));
            return 1;
        }
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        fprintf(stderr, "%s: signalfd: %s\n", log_progname(), strerror(errno));
        return 1;
    }

    struct xsd_server srv;
    struct error *err = NULL;
    int rc = 1;
    xsd_server_init(&srv);
    if (xsd_listen(&srv, sock, 0, true, &err) < 0) {
        goto out_server;
    }
    if (ro_sock && xsd_listen(&srv, ro_sock, 0, false, &err) < 0) {
        goto out_server;
    }
    for (size_t i = 0; i < ndsocks; i++) {
        if (xsd_listen(&srv, dsocks[i].path, dsocks[i].domid, true, &err) < 0) {
            goto out_server;
        }
    }
    if (pidfile && xsd_write_pidfile(pidfile, &err) < 0) {
        goto out_server;
    }
    log_info("listening on %s", sock);
    rc = xsd_run(&srv, sfd) < 0 ? 1 : 0;
    log_info("exiting after %llu requests", (unsigned long long)srv.requests);
    if (pidfile) {
        unlink(pidfile);
    }
out_server:
    if (err) {
        error_report_err(err);
    }
    xsd_server_destroy(&srv);
    close(sfd);
    free(dsocks);
    return rc;
}
