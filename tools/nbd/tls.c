/*
 * tools/nbd/tls.c — `--object` values (secret, tls-creds-x509,
 * tls-creds-psk, authz-simple) and GnuTLS server credentials and sessions
 * for STARTTLS, with QEMU's file layout in the credentials directory.
 */
#include "tools/nbd/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gnutls/x509.h>
#include <libnbd.h>

struct nbd_object {
    char *type;
    char *id;
    struct kvlist props;        /* everything but qom-type and id */
};

struct nbd_objects {
    struct nbd_object *v;
    size_t n;
};

struct nbd_tls_creds {
    bool psk;
    gnutls_certificate_credentials_t x509;
    gnutls_psk_server_credentials_t pskc;
    gnutls_dh_params_t dh;
    bool verify_peer;
    char *authz_identity;       /* NULL = anyone the credentials admit */
    char *priority;
};

struct nbd_objects *nbd_objects_new(void)
{
    return calloc(1, sizeof(struct nbd_objects));
}

void nbd_objects_free(struct nbd_objects *o)
{
    if (!o) {
        return;
    }
    for (size_t i = 0; i < o->n; i++) {
        free(o->v[i].type);
        free(o->v[i].id);
        kvlist_free(&o->v[i].props);
    }
    free(o->v);
    free(o);
}

static const char *prop(const struct nbd_object *ob, const char *key)
{
    for (size_t i = 0; i < ob->props.n; i++) {
        if (strcmp(ob->props.v[i].key, key) == 0) {
            return ob->props.v[i].value;
        }
    }
    return NULL;
}

int nbd_objects_add(struct nbd_objects *o, const char *str, struct error **errp)
{
    static const char *const types[] = {
        "secret", "tls-creds-x509", "tls-creds-psk", "authz-simple", NULL,
    };
    struct kvlist kv = { 0 };
    int rc = opts_split(str, "qom-type", &kv, errp);
    if (rc < 0) {
        return rc;
    }
    struct nbd_object ob = { 0 };
    struct kvlist rest = { 0 };
    for (size_t i = 0; i < kv.n; i++) {
        if (strcmp(kv.v[i].key, "qom-type") == 0) {
            ob.type = strdup(kv.v[i].value);
        } else if (strcmp(kv.v[i].key, "id") == 0) {
            ob.id = strdup(kv.v[i].value);
        } else {
            struct kv *nv = realloc(rest.v, (rest.n + 1) * sizeof(*nv));
            if (!nv) {
                abort();
            }
            rest.v = nv;
            rest.v[rest.n].key = strdup(kv.v[i].key);
            rest.v[rest.n].value = strdup(kv.v[i].value);
            rest.n++;
        }
    }
    kvlist_free(&kv);
    ob.props = rest;
    bool known = false;
    for (int i = 0; ob.type && types[i]; i++) {
        known |= strcmp(ob.type, types[i]) == 0;
    }
    if (!ob.type || !known) {
        error_setg(errp, "invalid object type '%s'", ob.type ? ob.type : "");
        rc = -EINVAL;
    } else if (!ob.id) {
        error_setg(errp, "Parameter 'id' is missing");
        rc = -EINVAL;
    } else {
        for (size_t i = 0; i < o->n; i++) {
            if (strcmp(o->v[i].id, ob.id) == 0) {
                error_setg(errp, "attempt to add duplicate property '%s'", ob.id);
                rc = -EINVAL;
            }
        }
    }
    if (rc < 0) {
        free(ob.type);
        free(ob.id);
        kvlist_free(&ob.props);
        return rc;
    }
    struct nbd_object *nv = realloc(o->v, (o->n + 1) * sizeof(*nv));
    if (!nv) {
        abort();
    }
    o->v = nv;
    o->v[o->n++] = ob;
    return 0;
}

static const struct nbd_object *find(const struct nbd_objects *o, const char *id)
{
    for (size_t i = 0; i < o->n; i++) {
        if (strcmp(o->v[i].id, id) == 0) {
            return &o->v[i];
        }
    }
    return NULL;
}

/* The text of a secret object (data= or file=); caller frees. */
static char *secret_value(const struct nbd_objects *o, const char *id,
                          struct error **errp)
{
    const struct nbd_object *s = find(o, id);
    if (!s || strcmp(s->type, "secret") != 0) {
        error_setg(errp, "No secret with id '%s'", id);
        return NULL;
    }
    const char *data = prop(s, "data"), *file = prop(s, "file");
    if (data) {
        return strdup(data);
    }
    if (!file) {
        error_setg(errp, "secret '%s' needs data= or file=", id);
        return NULL;
    }
    FILE *f = fopen(file, "re");
    if (!f) {
        error_setg_errno(errp, errno, "Unable to read %s", file);
        return NULL;
    }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    return strdup(buf);
}

static bool file_exists(const char *path)
{
    FILE *f = fopen(path, "re");
    if (f) {
        fclose(f);
    }
    return f != NULL;
}

static int load_x509(struct nbd_tls_creds *c, const struct nbd_objects *o,
                     const struct nbd_object *ob, const char *dir,
                     struct error **errp)
{
    char ca[4096], cert[4096], key[4096], dh[4096];
    snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
    snprintf(cert, sizeof(cert), "%s/server-cert.pem", dir);
    snprintf(key, sizeof(key), "%s/server-key.pem", dir);
    snprintf(dh, sizeof(dh), "%s/dh-params.pem", dir);
    const char *vp = prop(ob, "verify-peer");
    c->verify_peer = true;
    if (vp && parse_bool(vp, &c->verify_peer) < 0) {
        error_setg(errp, "Parameter 'verify-peer' expects 'on' or 'off'");
        return -EINVAL;
    }
    int rc = gnutls_certificate_allocate_credentials(&c->x509);
    if (rc < 0) {
        error_setg(errp, "Cannot allocate credentials: %s", gnutls_strerror(rc));
        return -ENOMEM;
    }
    const char *files[] = { ca, cert, key };
    for (int i = 0; i < 3; i++) {
        if (!file_exists(files[i])) {
            error_setg_errno(errp, errno, "Unable to access credentials %s",
                             files[i]);
            return -ENOENT;
        }
    }
    rc = gnutls_certificate_set_x509_trust_file(c->x509, ca, GNUTLS_X509_FMT_PEM);
    if (rc < 0) {
        error_setg(errp, "Cannot load CA certificate %s: %s", ca, gnutls_strerror(rc));
        return -EINVAL;
    }
    char *pw = NULL;
    const char *pwid = prop(ob, "passwordid");
    if (pwid) {
        struct error *err = NULL;
        pw = secret_value(o, pwid, &err);
        if (!pw) {
            error_propagate(errp, err);
            return -EINVAL;
        }
    }
    rc = gnutls_certificate_set_x509_key_file2(c->x509, cert, key,
                                               GNUTLS_X509_FMT_PEM, pw, 0);
    free(pw);
    if (rc < 0) {
        error_setg(errp, "Cannot load certificate '%s' & key '%s': %s", cert,
                   key, gnutls_strerror(rc));
        return -EINVAL;
    }
    if (file_exists(dh)) {
        gnutls_datum_t d;
        if (gnutls_load_file(dh, &d) == 0) {
            gnutls_dh_params_init(&c->dh);
            rc = gnutls_dh_params_import_pkcs3(c->dh, &d, GNUTLS_X509_FMT_PEM);
            gnutls_free(d.data);
            if (rc < 0) {
                error_setg(errp, "Cannot load DH parameters %s: %s", dh,
                           gnutls_strerror(rc));
                return -EINVAL;
            }
            gnutls_certificate_set_dh_params(c->x509, c->dh);
        }
    }
    return 0;
}

static int load_psk(struct nbd_tls_creds *c, const char *dir, struct error **errp)
{
    char keys[4096];
    snprintf(keys, sizeof(keys), "%s/keys.psk", dir);
    if (!file_exists(keys)) {
        error_setg_errno(errp, errno, "Unable to access credentials %s", keys);
        return -ENOENT;
    }
    int rc = gnutls_psk_allocate_server_credentials(&c->pskc);
    if (rc < 0) {
        error_setg(errp, "Cannot allocate credentials: %s", gnutls_strerror(rc));
        return -ENOMEM;
    }
    rc = gnutls_psk_set_server_credentials_file(c->pskc, keys);
    if (rc < 0) {
        error_setg(errp, "Cannot set PSK server credentials from %s: %s", keys,
                   gnutls_strerror(rc));
        return -EINVAL;
    }
    c->psk = true;
    return 0;
}

struct nbd_tls_creds *nbd_tls_creds_load(struct nbd_objects *o, const char *id,
                                         const char *authz_id,
                                         struct error **errp)
{
    const struct nbd_object *ob = find(o, id);
    if (!ob) {
        error_setg(errp, "No TLS credentials with id '%s'", id);
        return NULL;
    }
    bool x509 = strcmp(ob->type, "tls-creds-x509") == 0;
    if (!x509 && strcmp(ob->type, "tls-creds-psk") != 0) {
        error_setg(errp, "Object with id '%s' is not TLS credentials", id);
        return NULL;
    }
    const char *ep = prop(ob, "endpoint");
    if (!ep || strcmp(ep, "server") != 0) {
        error_setg(errp, "Expecting TLS credentials with a server endpoint");
        return NULL;
    }
    const char *dir = prop(ob, "dir");
    if (!dir) {
        error_setg(errp, "TLS credentials '%s' need dir=", id);
        return NULL;
    }
    struct nbd_tls_creds *c = calloc(1, sizeof(*c));
    if (!c) {
        abort();
    }
    const char *prio = prop(ob, "priority");
    if (asprintf(&c->priority, "%s%s", prio ? prio : "NORMAL",
                 x509 ? "" : ":+ECDHE-PSK:+DHE-PSK:+PSK") < 0) {
        abort();
    }
    int rc = x509 ? load_x509(c, o, ob, dir, errp) : load_psk(c, dir, errp);
    if (rc < 0) {
        nbd_tls_creds_free(c);
        return NULL;
    }
    if (authz_id) {
        const struct nbd_object *az = find(o, authz_id);
        const char *ident = az ? prop(az, "identity") : NULL;
        if (!az || strcmp(az->type, "authz-simple") != 0 || !ident) {
            error_setg(errp, "No authz-simple object with id '%s' and an identity",
                       authz_id);
            nbd_tls_creds_free(c);
            return NULL;
        }
        c->authz_identity = strdup(ident);
    }
    return c;
}

void nbd_tls_creds_free(struct nbd_tls_creds *c)
{
    if (!c) {
        return;
    }
    if (c->x509) {
        gnutls_certificate_free_credentials(c->x509);
    }
    if (c->pskc) {
        gnutls_psk_free_server_credentials(c->pskc);
    }
    if (c->dh) {
        gnutls_dh_params_deinit(c->dh);
    }
    free(c->authz_identity);
    free(c->priority);
    free(c);
}

int nbd_tls_session_new(struct nbd_tls_creds *c, gnutls_session_t *out,
                        gnutls_pull_func pull, gnutls_push_func push,
                        void *opaque)
{
    gnutls_session_t s;
    int rc = gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK);
    if (rc < 0) {
        log_warn("TLS session: %s", gnutls_strerror(rc));
        return -ENOMEM;
    }
    const char *err = NULL;
    rc = gnutls_priority_set_direct(s, c->priority, &err);
    if (rc >= 0) {
        rc = c->psk ? gnutls_credentials_set(s, GNUTLS_CRD_PSK, c->pskc)
                    : gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, c->x509);
    }
    if (rc < 0) {
        log_warn("TLS session: %s", gnutls_strerror(rc));
        gnutls_deinit(s);
        return -EINVAL;
    }
    if (!c->psk && c->verify_peer) {
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
    }
    gnutls_transport_set_ptr(s, opaque);
    gnutls_transport_set_pull_function(s, pull);
    gnutls_transport_set_push_function(s, push);
    *out = s;
    return 0;
}

int nbd_tls_check_authz(struct nbd_tls_creds *c, gnutls_session_t sess)
{
    char *ident = NULL;
    if (!c->psk && c->verify_peer) {
        unsigned status = 0;
        if (gnutls_certificate_verify_peers2(sess, &status) < 0 || status != 0) {
            log_info("client certificate did not verify");
            return -EPERM;
        }
    }
    if (!c->authz_identity) {
        return 0;
    }
    if (c->psk) {
        const char *u = gnutls_psk_server_get_username(sess);
        ident = u ? strdup(u) : NULL;
    } else {
        unsigned n = 0;
        const gnutls_datum_t *certs = gnutls_certificate_get_peers(sess, &n);
        gnutls_x509_crt_t crt;
        if (certs && n > 0 && gnutls_x509_crt_init(&crt) == 0) {
            gnutls_datum_t dn;
            if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0 &&
                gnutls_x509_crt_get_dn2(crt, &dn) == 0) {
                ident = strndup((const char *)dn.data, dn.size);
                gnutls_free(dn.data);
            }
            gnutls_x509_crt_deinit(crt);
        }
    }
    bool ok = ident && strcmp(ident, c->authz_identity) == 0;
    if (!ok) {
        log_info("identity '%s' is not allowed by --tls-authz",
                 ident ? ident : "(none)");
    }
    free(ident);
    return ok ? 0 : -EPERM;
}

int nbd_tls_client_setup(struct nbd_objects *o, const char *id,
                         struct nbd_handle *h, struct error **errp)
{
    const struct nbd_object *ob = find(o, id);
    if (!ob) {
        error_setg(errp, "No TLS credentials with id '%s'", id);
        return -ENOENT;
    }
    bool x509 = strcmp(ob->type, "tls-creds-x509") == 0;
    if (!x509 && strcmp(ob->type, "tls-creds-psk") != 0) {
        error_setg(errp, "Object with id '%s' is not TLS credentials", id);
        return -EINVAL;
    }
    const char *ep = prop(ob, "endpoint");
    if (ep && strcmp(ep, "client") != 0) {
        error_setg(errp, "Expecting TLS credentials with a client endpoint");
        return -EINVAL;
    }
    const char *dir = prop(ob, "dir");
    if (!dir) {
        error_setg(errp, "TLS credentials '%s' need dir=", id);
        return -EINVAL;
    }
    int rc = nbd_set_tls(h, LIBNBD_TLS_REQUIRE);
    if (rc == 0 && x509) {
        /* the same file names as QEMU's client credentials */
        rc = nbd_set_tls_certificates(h, dir);
        const char *vp = prop(ob, "verify-peer");
        bool v = true;
        if (rc == 0 && vp && parse_bool(vp, &v) == 0) {
            rc = nbd_set_tls_verify_peer(h, v);
        }
    } else if (rc == 0) {
        char keys[4096];
        snprintf(keys, sizeof(keys), "%s/keys.psk", dir);
        const char *user = prop(ob, "username");
        rc = nbd_set_tls_psk_file(h, keys);
        if (rc == 0 && user) {
            rc = nbd_set_tls_username(h, user);
        }
    }
    if (rc < 0) {
        error_setg(errp, "%s", nbd_get_error());
        return -EINVAL;
    }
    return 0;
}
