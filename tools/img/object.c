/*
 * tools/img/object.c — `--object` for the subcommands that take it, as
 * qemu-img checks it. The only object type is `secret` (no image format
 * here reads one), so the objects are checked, their ids kept for the
 * duplicate check, and nothing else is kept.
 */
#include "tools/img/img.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMG_MAX_OBJECTS 64

/* The ids of the secrets given so far, in order. */
struct img_objects {
    char *id[IMG_MAX_OBJECTS];
    int n;
};

static bool id_wellformed(const char *id)
{
    if (!((*id >= 'a' && *id <= 'z') || (*id >= 'A' && *id <= 'Z'))) {
        return false;
    }
    for (const char *p = id; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_')) {
            return false;
        }
    }
    return true;
}

static bool base64_ok(const char *s)
{
    for (const char *p = s; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '+' || *p == '/' || *p == '=')) {
            return false;
        }
    }
    return true;
}

static bool known(const struct img_objects *o, const char *id)
{
    for (int i = 0; i < o->n; i++) {
        if (!strcmp(o->id[i], id)) {
            return true;
        }
    }
    return false;
}

/* "TYPE,...,help": the object type's options are wanted; an element
 * without '=' after the first is otherwise not an option. */
static bool wants_help(const char *spec, char *type, size_t len)
{
    const char *p = spec;
    bool first = true, help = false;
    type[0] = '\0';
    while (*p) {
        size_t n = 0;
        while (p[n] && !(p[n] == ',' && p[n + 1] != ',')) {
            n += p[n] == ',' ? 2 : 1;
        }
        if (!first && ((n == 4 && !strncmp(p, "help", 4)) || (n == 1 && *p == '?'))) {
            help = true;
        } else if (first && !memchr(p, '=', n)) {
            snprintf(type, len, "%.*s", (int)n, p);
        } else if (n > 9 && !strncmp(p, "qom-type=", 9)) {
            snprintf(type, len, "%.*s", (int)(n - 9), p + 9);
        }
        first = false;
        p += n + (p[n] == ',');
    }
    return help;
}

/* One --object argument. -1: accepted; else the exit code (0 after a
 * help listing). */
static int object_add(struct img_objects *o, const char *spec)
{
    struct kvlist kv = { 0 };
    struct error *err = NULL;
    int ret = IMG_EXIT_FAIL;
    char htype[64];
    if (wants_help(spec, htype, sizeof(htype))) {
        if (!htype[0]) {
            return img_error("Parameter 'qom-type' is missing");
        }
        if (strcmp(htype, "secret")) {
            return img_error("Parameter 'qom-type' does not accept value '%s'", htype);
        }
        printf("secret options:\n  data=<string>\n  file=<string>\n"
               "  format=<QCryptoSecretFormat>\n  iv=<string>\n  keyid=<string>\n");
        return 0;
    }
    if (opts_split(spec, "qom-type", &kv, &err) < 0) {
        img_error("%s", err->msg);
        error_free(err);
        return IMG_EXIT_FAIL;
    }
    const char *type = NULL, *id = NULL, *data = NULL, *file = NULL, *format = "raw",
               *keyid = NULL, *unexpected = NULL;
    bool help = false;
    for (size_t i = 0; i < kv.n; i++) {
        const char *k = kv.v[i].key, *v = kv.v[i].value;
        if (!strcmp(k, "qom-type")) {
            if (!strcmp(v, "help")) {
                help = true;
            } else {
                type = v;
            }
        } else if (!strcmp(k, "id")) {
            id = v;
        }
    }
    if (help && !type) {
        printf("List of user creatable objects:\n  secret\n");
        ret = 0;
        goto out;
    }
    if (!type) {
        img_error("Parameter 'qom-type' is missing");
        goto out;
    }
    if (strcmp(type, "secret")) {
        img_error("Parameter 'qom-type' does not accept value '%s'", type);
        goto out;
    }
    if (!id) {
        img_error("Parameter 'id' is missing");
        goto out;
    }
    /* The properties in order, then the keys nobody knows. */
    for (size_t i = 0; i < kv.n; i++) {
        const char *k = kv.v[i].key, *v = kv.v[i].value;
        if (!strcmp(k, "format")) {
            if (strcmp(v, "raw") && strcmp(v, "base64")) {
                img_error("Parameter 'format' does not accept value '%s'", v);
                goto out;
            }
            format = v;
        } else if (!strcmp(k, "data")) {
            data = v;
        } else if (!strcmp(k, "file")) {
            file = v;
        } else if (!strcmp(k, "keyid")) {
            keyid = v;
        } else if (strcmp(k, "iv") && strcmp(k, "qom-type") && strcmp(k, "id") &&
                   !unexpected) {
            unexpected = k;
        }
    }
    if (unexpected) {
        img_error("Parameter '%s' is unexpected", unexpected);
        goto out;
    }
    if (!id_wellformed(id)) {
        img_error("Parameter 'id' expects an identifier\nIdentifiers consist of letters, "
                  "digits, '-', '.', '_', starting with a letter.");
        goto out;
    }
    if (known(o, id)) {
        img_error("attempt to add duplicate property '%s' to object (type 'container')", id);
        goto out;
    }
    if (data && file) {
        img_error("'file' and 'data' are mutually exclusive");
        goto out;
    }
    if (!data && !file) {
        img_error("Either 'file' or 'data' must be provided");
        goto out;
    }
    char *content = NULL;
    if (file) {
        FILE *f = fopen(file, "r");
        if (!f) {
            img_error("Unable to read %s: Failed to open file \u201c%s\u201d: %s", file, file,
                      strerror(errno));
            goto out;
        }
        size_t cap = 0, len = 0;
        size_t n;
        char chunk[4096];
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
            char *nc = realloc(content, cap = len + n + 1);
            if (!nc) {
                break;
            }
            content = nc;
            memcpy(content + len, chunk, n);
            len += n;
            content[len] = '\0';
        }
        fclose(f);
        (void)cap;
    }
    const char *value = file ? (content ? content : "") : data;
    bool bad64 = !strcmp(format, "base64") && !base64_ok(value);
    free(content);
    if (bad64) {
        img_error("Base64 data contains invalid characters");
        goto out;
    }
    if (keyid) {
        if (!strcmp(keyid, id)) {
            img_error("Secret with id '%s' has no data", keyid);
        } else if (!known(o, keyid)) {
            img_error("No secret with id '%s'", keyid);
        } else {
            img_error("Secret '%s': secrets encrypted with another secret (keyid) are not "
                      "supported", id);
        }
        goto out;
    }
    if (o->n == IMG_MAX_OBJECTS) {
        img_error("Too many objects (at most %d)", IMG_MAX_OBJECTS);
        goto out;
    }
    o->id[o->n] = strdup(id);
    if (!o->id[o->n]) {
        img_error("Out of memory");
        goto out;
    }
    o->n++;
    ret = -1;
out:
    kvlist_free(&kv);
    return ret;
}

int img_objects_take(int *argc, char **argv)
{
    struct img_objects o = { .n = 0 };
    int ret = -1, out = 1, i;
    for (i = 1; i < *argc && ret < 0; i++) {
        const char *a = argv[i], *spec = NULL;
        if (!strcmp(a, "--")) {
            break;
        }
        if (!strcmp(a, "--object")) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "diskdm-img: missing argument for option '--object'\n");
                ret = img_bad_option();
                break;
            }
            spec = argv[++i];
        } else if (!strncmp(a, "--object=", 9)) {
            spec = a + 9;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        ret = object_add(&o, spec);
    }
    /* Whatever follows "--" stays as it is. */
    for (; i < *argc; i++) {
        argv[out++] = argv[i];
    }
    if (ret < 0) {
        *argc = out;
        argv[out] = NULL;
    }
    for (int k = 0; k < o.n; k++) {
        free(o.id[k]);
    }
    return ret;
}
