/*
 * util/error.c — error messages that travel with -errno returns on open and
 * configuration paths. A message is set exactly when a function fails.
 */
#include "util/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) {
        abort();
    }
    return s;
}

static void error_set_msg(struct error **errp, int errnum, char *msg)
{
    if (!errp) {
        free(msg);
        return;
    }
    if (*errp) {
        fprintf(stderr, "error set twice: '%s' then '%s'\n", (*errp)->msg, msg);
        abort();
    }
    struct error *e = calloc(1, sizeof(*e));
    if (!e) {
        abort();
    }
    e->errnum = errnum;
    e->msg = msg;
    *errp = e;
}

void error_setg(struct error **errp, const char *fmt, ...)
{
    va_list ap;
    if (!errp) {
        return;
    }
    va_start(ap, fmt);
    char *msg = vformat(fmt, ap);
    va_end(ap);
    error_set_msg(errp, 0, msg);
}

void error_setg_errno(struct error **errp, int errnum, const char *fmt, ...)
{
    va_list ap;
    if (!errp) {
        return;
    }
    if (errnum < 0) {
        errnum = -errnum;
    }
    va_start(ap, fmt);
    char *head = vformat(fmt, ap);
    va_end(ap);
    char *msg = NULL;
    if (asprintf(&msg, "%s: %s", head, strerror(errnum)) < 0) {
        abort();
    }
    free(head);
    error_set_msg(errp, errnum, msg);
}

void error_prepend(struct error **errp, const char *fmt, ...)
{
    va_list ap;
    if (!errp || !*errp) {
        return;
    }
    va_start(ap, fmt);
    char *head = vformat(fmt, ap);
    va_end(ap);
    char *msg = NULL;
    if (asprintf(&msg, "%s: %s", head, (*errp)->msg) < 0) {
        abort();
    }
    free(head);
    free((*errp)->msg);
    (*errp)->msg = msg;
}

void error_propagate(struct error **dst, struct error *src)
{
    if (!src) {
        return;
    }
    if (!dst || *dst) {
        error_free(src);
        return;
    }
    *dst = src;
}

void error_free(struct error *err)
{
    if (err) {
        free(err->msg);
        free(err);
    }
}

void error_freep(struct error **errp)
{
    error_free(*errp);
    *errp = NULL;
}

void error_report_err(struct error *err)
{
    if (!err) {
        return;
    }
    fprintf(stderr, "%s: %s\n", log_progname(), err->msg);
    error_free(err);
}
