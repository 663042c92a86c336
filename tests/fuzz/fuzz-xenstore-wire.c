/*
 * tests/fuzz/fuzz-xenstore-wire.c — libFuzzer target for diskdm-xenstored's
 * message handling. The input is a series of chunks, each "selector byte,
 * length byte, bytes", fed to one of three clients (toolstack, guest
 * domain 5, read-only) so requests interleave and split anywhere. After
 * every input the output framing and the tree's parent/child links are
 * checked; a dropped client is replaced by a fresh one.
 */
#include "tools/xenstored/store.c"
#include "tools/xenstored/txn.c"
#include "tools/xenstored/watch.c"
#include "tools/xenstored/ops.c"
#include "tools/xenstored/wire.c"

#include <stdlib.h>

#define FUZZ_CLIENTS 3

static struct xsd_conn *fuzz_client(struct xsd_server *srv, int which)
{
    static const uint32_t domid[FUZZ_CLIENTS] = { 0, 5, 0 };
    static const bool can_write[FUZZ_CLIENTS] = { true, true, false };
    return xsd_conn_new(srv, -1, domid[which], can_write[which]);
}

/* Every queued message is framed and within the payload limit. */
static void fuzz_check_output(struct xsd_conn *c)
{
    size_t off = c->out_off;
    while (off < c->out_len) {
        struct xsd_sockmsg h;
        if (c->out_len - off < sizeof(h)) {
            abort();
        }
        memcpy(&h, c->out + off, sizeof(h));
        if (h.len > XENSTORE_PAYLOAD_MAX || c->out_len - off - sizeof(h) < h.len) {
            abort();
        }
        off += sizeof(h) + h.len;
    }
    c->out_off = c->out_len = 0;
}

/* Each node's parent exists and lists it; each listed child exists. */
static void fuzz_check_node(void *opaque, const char *path, void *val)
{
    const struct xsd_store *s = opaque;
    const struct xsd_node *n = val;
    if (strcmp(n->path, path) != 0 || n->perms.n == 0) {
        abort();
    }
    for (uint32_t off = 0; off < n->childlen; off += strlen(n->children + off) + 1) {
        char child[XENSTORE_ABS_PATH_MAX + 64];
        snprintf(child, sizeof(child), "%s/%s", strcmp(path, "/") ? path : "",
                 n->children + off);
        if (!xsd_store_lookup(s, child)) {
            abort();
        }
    }
    if (strcmp(path, "/") == 0) {
        return;
    }
    char *parent = xsd_path_parent(path);
    const struct xsd_node *p = xsd_store_lookup(s, parent);
    free(parent);
    if (!p) {
        abort();
    }
    const char *base = xsd_path_basename(path);
    bool listed = false;
    for (uint32_t off = 0; off < p->childlen; off += strlen(p->children + off) + 1) {
        listed |= strcmp(p->children + off, base) == 0;
    }
    if (!listed) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__ubsan_default_options(void);

/* Undefined behaviour is a finding too: stop at the first report. */
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct xsd_server srv;
    struct xsd_conn *clients[FUZZ_CLIENTS];

    log_init("fuzz-xenstore-wire", LOG_ERROR);
    xsd_server_init(&srv);
    for (int i = 0; i < FUZZ_CLIENTS; i++) {
        clients[i] = fuzz_client(&srv, i);
    }
    while (size >= 2) {
        int which = data[0] % FUZZ_CLIENTS;
        size_t len = MIN((size_t)data[1], size - 2);
        xsd_conn_input(clients[which], data + 2, len);
        data += 2 + len;
        size -= 2 + len;
        for (int i = 0; i < FUZZ_CLIENTS; i++) {
            fuzz_check_output(clients[i]);
            if (clients[i]->dead) {
                xsd_conn_free(clients[i]);
                clients[i] = fuzz_client(&srv, i);
            }
        }
    }
    xsd_map_foreach(&srv.store.nodes, fuzz_check_node, &srv.store);
    xsd_server_destroy(&srv);
    return 0;
}
