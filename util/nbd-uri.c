/*
 * util/nbd-uri.c — QEMU's NBD address keys (server.type, server.path,
 * server.host, server.port, export, timeout, reconnect-delay) as the
 * nbd+unix:// or nbd://
 * URI the block layer's nbd driver opens; shared by the block option
 * parser and -drive, so both name and reach the export alike. Also the
 * legacy nbd:unix:PATH / nbd:HOST:PORT filenames, turned into that URI.
 */
#include "util/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const nbd_uri_key_names[] = {
    "server.type", "server.path", "server.host", "server.port", "export", "timeout",
    "reconnect-delay",
};

int nbd_uri_key(const char *key)
{
    for (size_t i = 0; i < ARRAY_SIZE(nbd_uri_key_names); i++) {
        if (!strcmp(key, nbd_uri_key_names[i])) {
            return (int)i;
        }
    }
    return -1;
}

bool nbd_uri_is_nbd(const char *s)
{
    return s && (!strncmp(s, "nbd://", 6) || !strncmp(s, "nbds://", 7) ||
                 !strncmp(s, "nbd+unix://", 11) || !strncmp(s, "nbds+unix://", 12));
}

/* Append s to the string *out (length *len), %-escaping what a URI
 * component cannot hold; `keep` are extra characters left as they are. */
static int uri_append(char **out, size_t *len, const char *s, const char *keep)
{
    size_t n = strlen(s);
    char *p = realloc(*out, *len + 3 * n + 1);
    if (!p) {
        return -ENOMEM;
    }
    *out = p;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c) || (c && strchr(keep, c))) {
            p[(*len)++] = (char)c;
        } else {
            *len += (size_t)sprintf(p + *len, "%%%02X", c);
        }
    }
    p[*len] = 0;
    return 0;
}

/* Whether s is a TCP port number, 1..65535. */
static bool is_port(const char *s)
{
    char *end;
    if (*s < '0' || *s > '9') {
        return false;
    }
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    return !*end && !errno && v >= 1 && v <= 65535;
}

int nbd_uri_add_param(char **uri, const char *name, const char *val)
{
    size_t len = strlen(*uri);
    if (!val) {
        return 0;
    }
    if (uri_append(uri, &len, strchr(*uri, '?') ? "&" : "?", "?&") < 0 ||
        uri_append(uri, &len, name, "") < 0 || uri_append(uri, &len, "=", "=") < 0 ||
        uri_append(uri, &len, val, "") < 0) {
        return -ENOMEM;
    }
    return 0;
}

int nbd_uri_from_keys(const char *const keys[NBD_URI_NKEYS], const char *prefix,
                      char **out, struct error **errp)
{
    const char *type = keys[0], *path = keys[1], *host = keys[2], *port = keys[3];
    const char *export = keys[4], *timeout = keys[5], *delay = keys[6];
    char *uri = NULL;
    size_t len = 0;

    *out = NULL;
    if (!type) {
        error_setg(errp, "Parameter '%sserver.type' is missing", prefix);
        return -EINVAL;
    }
    if (!strcmp(type, "unix")) {
        if (host || port) {
            error_setg(errp, "Parameter '%sserver.%s' is not valid with server.type=unix",
                       prefix, host ? "host" : "port");
            return -EINVAL;
        }
        if (!path || !path[0]) {
            error_setg(errp, "Parameter '%sserver.path' is missing", prefix);
            return -EINVAL;
        }
        if (uri_append(&uri, &len, "nbd+unix:///", "+:/") < 0 ||
            uri_append(&uri, &len, export ? export : "", "/") < 0 ||
            uri_append(&uri, &len, "?socket=", "?=") < 0 ||
            uri_append(&uri, &len, path, "/") < 0) {
            goto nomem;
        }
    } else if (!strcmp(type, "inet")) {
        if (path) {
            error_setg(errp, "Parameter '%sserver.path' is not valid with server.type=inet",
                       prefix);
            return -EINVAL;
        }
        if (!host || !host[0]) {
            error_setg(errp, "Parameter '%sserver.host' is missing", prefix);
            return -EINVAL;
        }
        if (port && !is_port(port)) {
            error_setg(errp, "Parameter '%sserver.port' expects a port number "
                       "(1-65535): '%s'", prefix, port);
            return -EINVAL;
        }
        bool v6 = strchr(host, ':') != NULL;
        if (uri_append(&uri, &len, v6 ? "nbd://[" : "nbd://", ":/[") < 0 ||
            uri_append(&uri, &len, host, v6 ? ":" : "") < 0 ||
            uri_append(&uri, &len, v6 ? "]:" : ":", "]:") < 0 ||
            uri_append(&uri, &len, port ? port : "10809", "") < 0 ||
            uri_append(&uri, &len, "/", "/") < 0 ||
            uri_append(&uri, &len, export ? export : "", "/") < 0) {
            goto nomem;
        }
    } else {
        error_setg(errp, "Parameter '%sserver.type' expects one of unix, inet: '%s'",
                   prefix, type);
        return -EINVAL;
    }
    if (nbd_uri_add_param(&uri, "timeout", timeout) < 0 ||
        nbd_uri_add_param(&uri, "reconnect-delay", delay) < 0) {
        goto nomem;
    }
    *out = uri;
    return 0;
nomem:
    free(uri);
    error_setg(errp, "Out of memory");
    return -ENOMEM;
}

bool nbd_uri_is_legacy(const char *s)
{
    return s && !strncmp(s, "nbd:", 4) && strncmp(s, "nbd:/", 5);
}

int nbd_uri_from_legacy(const char *s, char **out, struct error **errp)
{
    const char *keys[NBD_URI_NKEYS] = { NULL };
    char *spec = strdup(s + 4), *export = NULL;
    int ret;

    *out = NULL;
    if (!spec) {
        error_setg(errp, "Out of memory");
        return -ENOMEM;
    }
    /* QEMU splits at the first ":exportname=": a socket path or host can
     * hold colons, an export name anything. */
    char *e = strstr(spec, ":exportname=");
    if (e) {
        *e = 0;
        export = e + strlen(":exportname=");
        keys[4] = export;
    }
    if (!strncmp(spec, "unix:", 5)) {
        keys[0] = "unix";
        keys[1] = spec + 5;
        if (!keys[1][0]) {
            error_setg(errp, "NBD server address missing (nbd:unix:PATH)");
            ret = -EINVAL;
            goto out;
        }
    } else {
        char *colon = strrchr(spec, ':');
        if (!spec[0]) {
            error_setg(errp, "NBD server address missing");
            ret = -EINVAL;
            goto out;
        }
        if (!colon || colon == spec || (spec[0] == '[' && colon[-1] != ']')) {
            error_setg(errp, "error parsing address '%s' (nbd:HOST:PORT)", spec);
            ret = -EINVAL;
            goto out;
        }
        *colon = 0;
        keys[0] = "inet";
        keys[3] = colon + 1;
        if (!is_port(keys[3])) {
            error_setg(errp, "'%s' is not a port number (1-65535)", keys[3]);
            ret = -EINVAL;
            goto out;
        }
        /* [v6addr] brackets are the URI's own. */
        size_t n = strlen(spec);
        if (spec[0] == '[' && n > 2 && spec[n - 1] == ']') {
            spec[n - 1] = 0;
            keys[2] = spec + 1;
        } else {
            keys[2] = spec;
        }
    }
    ret = nbd_uri_from_keys(keys, "", out, errp);
out:
    free(spec);
    return ret;
}
