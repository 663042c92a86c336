/*
 * tools/nbd/server.h — the listening server (conn.c): accepts clients on
 * its sockets, runs one session per connection on the event loop with a
 * non-blocking socket, and optionally wraps connections in TLS (tls.c).
 */
#ifndef DISKDM_NBD_SERVER_H
#define DISKDM_NBD_SERVER_H

#include "tools/nbd/nbd-int.h"

#include <gnutls/gnutls.h>

/* ---- tls.c ---- */
struct nbd_tls_creds;

/* `--object` values this program understands, kept by id. */
struct nbd_objects;
struct nbd_objects *nbd_objects_new(void);
void nbd_objects_free(struct nbd_objects *o);
/* Parse and record one --object value. */
int nbd_objects_add(struct nbd_objects *o, const char *str, struct error **errp);
/* Load the credentials object `id` (tls-creds-x509 or tls-creds-psk,
 * endpoint=server) and, if authz_id is not NULL, the authz-simple object. */
struct nbd_tls_creds *nbd_tls_creds_load(struct nbd_objects *o, const char *id,
                                         const char *authz_id,
                                         struct error **errp);
void nbd_tls_creds_free(struct nbd_tls_creds *c);
/* -L: set up a libnbd handle with client credentials object `id`
 * (endpoint=client; x509 dir with ca-cert.pem, client-cert.pem,
 * client-key.pem, or psk dir with keys.psk and username=). */
struct nbd_handle;
int nbd_tls_client_setup(struct nbd_objects *o, const char *id,
                         struct nbd_handle *h, struct error **errp);
/* A non-blocking server-side session whose transport is `pull`/`push`
 * called with `opaque`. 0 or -errno. */
int nbd_tls_session_new(struct nbd_tls_creds *c, gnutls_session_t *out,
                        gnutls_pull_func pull, gnutls_push_func push,
                        void *opaque);
/* After the handshake: does the peer pass --tls-authz? 0 or -EPERM. */
int nbd_tls_check_authz(struct nbd_tls_creds *c, gnutls_session_t sess);

/* ---- conn.c ---- */
struct nbd_server;

struct nbd_server_cfg {
    const struct nbd_export *exp;
    struct nbd_policy pol;
    struct nbd_tls_creds *tls;      /* NULL = no TLS */
    unsigned max_clients;           /* 0 = unlimited */
    bool persistent;                /* -t: keep running without clients */
    bool zero_copy;                 /* splice reads where the export allows */
    unsigned handshake_limit_ms;    /* 0 = none */
};

struct nbd_server *nbd_server_new(struct event_loop *loop,
                                  const struct nbd_server_cfg *cfg);
/* Start accepting on a listening socket (the server owns it afterwards). */
int nbd_server_add_listener(struct nbd_server *srv, int fd);
/* Serve an already connected socket; with `transmission` the client
 * skips the handshake (the kernel's NBD client). */
int nbd_server_add_client(struct nbd_server *srv, int fd, bool transmission);
/* Close every connection and listener. */
void nbd_server_free(struct nbd_server *srv);
unsigned nbd_server_clients(const struct nbd_server *srv);

/* ---- kernel.c: -c / -d ---- */
/* Open /dev/nbdN: fd, or -errno with "Failed to open DEV: why". */
int nbd_kernel_open(const char *dev, struct error **errp);
/* Give the device a socket (takes dev_fd); *server_fd is the end to serve. */
int nbd_kernel_attach(int dev_fd, const char *dev, uint64_t size,
                      uint16_t tflags, int *server_fd, struct error **errp);
int nbd_kernel_disconnect(const char *dev, struct error **errp);

#endif
