/*
 * tests/unit/test-xenstored-proto.c — diskdm-xenstored's request handling
 * through its wire protocol, in process: byte streams go into a
 * connection and the framed replies and watch events that come out are
 * checked, error strings included. Covers paths, permissions, watches,
 * transactions, quotas, domains and malformed framing.
 */
#include "tools/xenstored/store.c"
#include "tools/xenstored/txn.c"
#include "tools/xenstored/watch.c"
#include "tools/xenstored/ops.c"
#include "tools/xenstored/wire.c"

#include <check.h>
#include <stdlib.h>

/* A literal with embedded NULs and its length without the final NUL. */
#define S(x) x, sizeof(x) - 1

struct msg {
    uint32_t type, req_id, tx_id, len;
    char data[XENSTORE_PAYLOAD_MAX + 1];
};

static struct xsd_server srv;

static void setup(void)
{
    log_init("test-xenstored-proto", LOG_WARN);
    xsd_server_init(&srv);
}

static void teardown(void)
{
    xsd_server_destroy(&srv);
}

static struct xsd_conn *dom0(void)
{
    return xsd_conn_new(&srv, -1, 0, true);
}

static void send_raw(struct xsd_conn *c, uint32_t type, uint32_t req_id,
                     uint32_t tx, const void *data, size_t len)
{
    struct xsd_sockmsg h = { type, req_id, tx, (uint32_t)len };
    char buf[sizeof(h) + XENSTORE_PAYLOAD_MAX];
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), data, len);
    ck_assert_int_eq(xsd_conn_input(c, buf, sizeof(h) + len), 0);
}

/* Take the next queued message; false if there is none. */
static bool pop(struct xsd_conn *c, struct msg *m)
{
    if (c->out_off == c->out_len) {
        return false;
    }
    ck_assert_uint_ge(c->out_len - c->out_off, sizeof(struct xsd_sockmsg));
    memcpy(m, c->out + c->out_off, sizeof(struct xsd_sockmsg));
    ck_assert_uint_le(m->len, XENSTORE_PAYLOAD_MAX);
    memcpy(m->data, c->out + c->out_off + sizeof(struct xsd_sockmsg), m->len);
    m->data[m->len] = '\0';
    c->out_off += sizeof(struct xsd_sockmsg) + m->len;
    return true;
}

/* Send a request, return its reply (skipping nothing: the reply must be
 * the first message unless events are expected by the caller). */
static struct msg req(struct xsd_conn *c, uint32_t type, uint32_t tx,
                      const void *data, size_t len)
{
    struct msg m;
    send_raw(c, type, 77, tx, data, len);
    ck_assert_msg(pop(c, &m), "no reply to type %u", type);
    ck_assert_uint_eq(m.req_id, 77);
    ck_assert_uint_eq(m.tx_id, tx);
    return m;
}

static void expect_ok(struct xsd_conn *c, uint32_t type, uint32_t tx,
                      const void *data, size_t len)
{
    struct msg m = req(c, type, tx, data, len);
    ck_assert_msg(m.type == type, "type %u: got type %u '%s'", type, m.type,
                  m.data);
    ck_assert_uint_eq(m.len, 3);
    ck_assert_str_eq(m.data, "OK");
}

static void expect_err(struct xsd_conn *c, uint32_t type, uint32_t tx,
                       const void *data, size_t len, const char *err)
{
    struct msg m = req(c, type, tx, data, len);
    ck_assert_msg(m.type == XS_ERROR, "type %u: wanted %s, got type %u",
                  type, err, m.type);
    ck_assert_uint_eq(m.len, strlen(err) + 1);
    ck_assert_str_eq(m.data, err);
}

static void expect_reply(struct xsd_conn *c, uint32_t type, uint32_t tx,
                         const void *data, size_t len, const void *want,
                         size_t wlen)
{
    struct msg m = req(c, type, tx, data, len);
    ck_assert_msg(m.type == type, "type %u: got type %u '%s'", type, m.type,
                  m.data);
    ck_assert_uint_eq(m.len, wlen);
    ck_assert(memcmp(m.data, want, wlen) == 0);
}

static void write_key(struct xsd_conn *c, const char *path, const char *val)
{
    char buf[XENSTORE_PAYLOAD_MAX];
    size_t pl = strlen(path) + 1, vl = strlen(val);
    memcpy(buf, path, pl);
    memcpy(buf + pl, val, vl);
    expect_ok(c, XS_WRITE, 0, buf, pl + vl);
}

static void expect_event(struct xsd_conn *c, const char *path, const char *token)
{
    struct msg m;
    ck_assert_msg(pop(c, &m), "no event for %s", path);
    ck_assert_uint_eq(m.type, XS_WATCH_EVENT);
    ck_assert_uint_eq(m.req_id, 0);
    ck_assert_uint_eq(m.tx_id, 0);
    ck_assert_str_eq(m.data, path);
    ck_assert_str_eq(m.data + strlen(path) + 1, token);
    ck_assert_uint_eq(m.len, strlen(path) + strlen(token) + 2);
}

static void expect_nothing(struct xsd_conn *c)
{
    struct msg m;
    ck_assert_msg(!pop(c, &m), "unexpected message type %u '%s'", m.type, m.data);
}

static struct xsd_conn *as_domain(uint32_t domid)
{
    struct xsd_conn *c = dom0();
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "domain%c%u", 0, domid);
    expect_ok(c, XS_CONTROL, 0, buf, (size_t)n + 1);
    return c;
}

static uint32_t txn_start(struct xsd_conn *c)
{
    struct msg m = req(c, XS_TRANSACTION_START, 0, S("\0"));
    ck_assert_uint_eq(m.type, XS_TRANSACTION_START);
    ck_assert_uint_eq(m.len, strlen(m.data) + 1);
    return (uint32_t)strtoul(m.data, NULL, 10);
}

/* ------------------------------------------------------------------ */

START_TEST(test_read_write)
{
    struct xsd_conn *c = dom0();
    expect_err(c, XS_READ, 0, S("/foo\0"), "ENOENT");
    write_key(c, "/foo", "bar");
    expect_reply(c, XS_READ, 0, S("/foo\0"), S("bar"));
    /* Values are binary and may be empty. */
    expect_ok(c, XS_WRITE, 0, S("/bin\0a\0b"));
    expect_reply(c, XS_READ, 0, S("/bin\0"), S("a\0b"));
    expect_ok(c, XS_WRITE, 0, S("/empty\0"));
    expect_reply(c, XS_READ, 0, S("/empty\0"), "", 0);
    /* Implicit parents, created empty and listed in creation order. */
    write_key(c, "/a/b/c", "1");
    write_key(c, "/a/b/a", "2");
    expect_reply(c, XS_READ, 0, S("/a/b\0"), "", 0);
    expect_reply(c, XS_DIRECTORY, 0, S("/a/b\0"), S("c\0a\0"));
    expect_reply(c, XS_DIRECTORY, 0, S("/a/b/c\0"), "", 0);
    expect_reply(c, XS_DIRECTORY, 0, S("/\0"), S("tool\0foo\0bin\0empty\0a\0"));
    expect_reply(c, XS_DIRECTORY, 0, S("/tool\0"), S("xenstored\0"));
    /* Relative paths live below /local/domain/0 for the toolstack. */
    write_key(c, "rel", "x");
    expect_reply(c, XS_READ, 0, S("/local/domain/0/rel\0"), S("x"));
    /* MKDIR creates, or leaves an existing node alone. */
    expect_ok(c, XS_MKDIR, 0, S("/m/n\0"));
    expect_ok(c, XS_MKDIR, 0, S("/foo\0"));
    expect_reply(c, XS_READ, 0, S("/foo\0"), S("bar"));
    expect_reply(c, XS_DIRECTORY, 0, S("/m\0"), S("n\0"));
    expect_nothing(c);
}
END_TEST

START_TEST(test_rm)
{
    struct xsd_conn *c = dom0();
    write_key(c, "/a/b/c", "1");
    write_key(c, "/a/d", "2");
    expect_ok(c, XS_RM, 0, S("/a/b\0"));
    expect_err(c, XS_READ, 0, S("/a/b/c\0"), "ENOENT");
    expect_reply(c, XS_DIRECTORY, 0, S("/a\0"), S("d\0"));
    /* Missing node: fine if its parent exists, else ENOENT. */
    expect_ok(c, XS_RM, 0, S("/a/zz\0"));
    expect_err(c, XS_RM, 0, S("/q/zz\0"), "ENOENT");
    expect_err(c, XS_RM, 0, S("/\0"), "EINVAL");
    expect_ok(c, XS_RM, 0, S("/a\0"));
    expect_reply(c, XS_DIRECTORY, 0, S("/\0"), S("tool\0"));
}
END_TEST

START_TEST(test_paths)
{
    struct xsd_conn *c = dom0();
    expect_err(c, XS_WRITE, 0, S("/a//b\0v"), "EINVAL");
    expect_err(c, XS_WRITE, 0, S("/a/\0v"), "EINVAL");
    expect_err(c, XS_WRITE, 0, S("/a b\0v"), "EINVAL");
    expect_err(c, XS_WRITE, 0, S("/a.b\0v"), "EINVAL");
    expect_err(c, XS_READ, 0, S("/a/\0"), "EINVAL");
    expect_err(c, XS_MKDIR, 0, S("//\0"), "EINVAL");
    expect_err(c, XS_RM, 0, S("/x//\0"), "EINVAL");
    write_key(c, "/A-z_0@9", "ok");
    /* 3072 bytes is the longest absolute path. */
    char path[XENSTORE_ABS_PATH_MAX + 2];
    memset(path, 'x', sizeof(path));
    path[0] = '/';
    path[XENSTORE_ABS_PATH_MAX] = '\0';
    expect_ok(c, XS_MKDIR, 0, path, XENSTORE_ABS_PATH_MAX + 1);
    path[XENSTORE_ABS_PATH_MAX] = 'x';
    path[XENSTORE_ABS_PATH_MAX + 1] = '\0';
    expect_err(c, XS_MKDIR, 0, path, XENSTORE_ABS_PATH_MAX + 2, "EINVAL");
    /* Arguments must be NUL-terminated strings, exactly as many as needed. */
    expect_err(c, XS_READ, 0, S("/foo"), "EINVAL");
    expect_err(c, XS_READ, 0, S("/foo\0/bar\0"), "EINVAL");
    expect_err(c, XS_READ, 0, "", 0, "EINVAL");
    expect_err(c, XS_WRITE, 0, S("/nonul"), "EINVAL");
    expect_err(c, XS_WATCH, 0, S("/a\0"), "EINVAL");
    expect_err(c, XS_DIRECTORY_PART, 0, S("/a\0"), "EINVAL");
}
END_TEST

START_TEST(test_unknown_and_ids)
{
    struct xsd_conn *c = dom0();
    expect_err(c, XS_TYPE_COUNT, 0, S("x\0"), "ENOSYS");
    expect_err(c, 0xffff, 0, "", 0, "ENOSYS");
    expect_err(c, XS_WATCH_EVENT, 0, S("/a\0t\0"), "ENOSYS");
    expect_err(c, XS_ERROR, 0, S("EINVAL\0"), "ENOSYS");
    /* Replies echo req_id and tx_id; an unknown transaction is ENOENT. */
    send_raw(c, XS_READ, 0xdeadbeef, 0, S("/tool\0"));
    struct msg m;
    ck_assert(pop(c, &m));
    ck_assert_uint_eq(m.type, XS_READ);
    ck_assert_uint_eq(m.req_id, 0xdeadbeef);
    expect_err(c, XS_READ, 42, S("/tool\0"), "ENOENT");
    expect_reply(c, XS_GET_DOMAIN_PATH, 0, S("7\0"), S("/local/domain/7\0"));
    expect_err(c, XS_GET_DOMAIN_PATH, 0, S("x7\0"), "EINVAL");
    expect_err(c, XS_GET_DOMAIN_PATH, 0, S("70000\0"), "EINVAL");
    expect_err(c, XS_CONTROL, 0, S("frobnicate\0"), "EINVAL");
}
END_TEST

START_TEST(test_directory_part)
{
    struct xsd_conn *c = dom0();
    char want[16384];
    size_t wlen = 0;
    for (int i = 0; i < 300; i++) {
        char p[64];
        int n = snprintf(p, sizeof(p), "/big/child-number-%04d", i);
        expect_ok(c, XS_MKDIR, 0, p, (size_t)n + 1);
        memcpy(want + wlen, p + 5, (size_t)n - 4);
        wlen += (size_t)n - 4;
    }
    ck_assert_uint_gt(wlen, XENSTORE_PAYLOAD_MAX);
    expect_err(c, XS_DIRECTORY, 0, S("/big\0"), "E2BIG");

    char got[16384];
    size_t glen = 0;
    char gen0[32] = "";
    for (int rounds = 0;; rounds++) {
        ck_assert_int_lt(rounds, 10);
        char a[64];
        int n = snprintf(a, sizeof(a), "/big%c%zu", 0, glen);
        struct msg m = req(c, XS_DIRECTORY_PART, 0, a, (size_t)n + 1);
        ck_assert_uint_eq(m.type, XS_DIRECTORY_PART);
        size_t gl = strlen(m.data) + 1;
        if (!gen0[0]) {
            strcpy(gen0, m.data);
        }
        ck_assert_str_eq(m.data, gen0);
        size_t body = m.len - gl;
        bool last = body > 0 && (body == 1 || m.data[m.len - 2] == '\0');
        if (last) {
            body--;
        }
        memcpy(got + glen, m.data + gl, body);
        glen += body;
        if (last) {
            break;
        }
    }
    ck_assert_uint_eq(glen, wlen);
    ck_assert(memcmp(got, want, wlen) == 0);
    /* Past the end: generation plus an empty string. */
    struct msg m = req(c, XS_DIRECTORY_PART, 0, S("/big\00099999\0"));
    ck_assert_uint_eq(m.len, strlen(gen0) + 2);
}
END_TEST

START_TEST(test_permissions)
{
    struct xsd_conn *c = dom0();
    struct xsd_conn *d5 = as_domain(5);
    struct xsd_conn *d6 = as_domain(6);
    write_key(c, "/local/domain/5/name", "five");
    write_key(c, "/local/domain/6/secret", "six");
    expect_ok(c, XS_SET_PERMS, 0, S("/local/domain/5\0n5\0"));
    expect_ok(c, XS_SET_PERMS, 0, S("/local/domain/6\0n6\0"));
    expect_ok(c, XS_SET_PERMS, 0, S("/local/domain/6/secret\0n6\0"));
    expect_reply(c, XS_GET_PERMS, 0, S("/local/domain/6/secret\0"), S("n6\0"));

    /* Nodes made before the chmod keep dom0's "n0": unreadable to 5. */
    expect_err(d5, XS_READ, 0, S("/local/domain/5/name\0"), "EACCES");
    expect_err(d5, XS_READ, 0, S("/local/domain/6/secret\0"), "EACCES");
    expect_err(d5, XS_DIRECTORY, 0, S("/local/domain/6\0"), "EACCES");
    expect_err(d5, XS_WRITE, 0, S("/local/domain/6/secret\0x"), "EACCES");
    expect_err(d5, XS_RM, 0, S("/local/domain/6/secret\0"), "EACCES");
    /* A missing node below an unreadable parent is EACCES, not ENOENT. */
    expect_err(d5, XS_READ, 0, S("/local/domain/6/nothing\0"), "EACCES");
    expect_err(d5, XS_READ, 0, S("/tool/nothing\0"), "EACCES");
    expect_reply(d6, XS_READ, 0, S("/local/domain/6/secret\0"), S("six"));

    /* A domain owns what it creates; relative paths are below its home. */
    expect_ok(d5, XS_WRITE, 0, S("data/x\0hello"));
    expect_reply(c, XS_READ, 0, S("/local/domain/5/data/x\0"), S("hello"));
    expect_reply(d5, XS_GET_PERMS, 0, S("data/x\0"), S("n5\0"));
    expect_err(d6, XS_READ, 0, S("/local/domain/5/data/x\0"), "EACCES");
    expect_err(d5, XS_WRITE, 0, S("/local/domain/6/x\0v"), "EACCES");
    expect_err(d5, XS_WRITE, 0, S("/toplevel\0v"), "EACCES");

    /* Grant 6 read access; the entry for 6 wins over the default. */
    expect_ok(d5, XS_SET_PERMS, 0, S("data/x\0n5\0r6\0"));
    expect_reply(d6, XS_READ, 0, S("/local/domain/5/data/x\0"), S("hello"));
    expect_err(d6, XS_WRITE, 0, S("/local/domain/5/data/x\0v"), "EACCES");
    expect_err(d6, XS_SET_PERMS, 0, S("/local/domain/5/data/x\0n6\0"), "EACCES");
    /* Children inherit the parent's permissions at creation. */
    expect_ok(d5, XS_WRITE, 0, S("data/x/y\0v"));
    expect_reply(c, XS_GET_PERMS, 0, S("/local/domain/5/data/x/y\0"), S("n5\0r6\0"));
    expect_ok(c, XS_MKDIR, 0, S("/local/domain/5/data/x/z\0"));
    expect_reply(c, XS_GET_PERMS, 0, S("/local/domain/5/data/x/z\0"), S("n5\0r6\0"));
    /* Only the toolstack changes owners. */
    expect_err(d5, XS_SET_PERMS, 0, S("data/x\0n6\0"), "EPERM");
    expect_ok(c, XS_SET_PERMS, 0, S("/local/domain/5/data/x\0b6\0"));
    expect_reply(d6, XS_GET_PERMS, 0, S("/local/domain/5/data/x\0"), S("b6\0"));
    /* Malformed permission lists. */
    expect_err(c, XS_SET_PERMS, 0, S("/local/domain/5\0"), "EINVAL");
    expect_err(c, XS_SET_PERMS, 0, S("/local/domain/5\0x5\0"), "EINVAL");
    expect_err(c, XS_SET_PERMS, 0, S("/local/domain/5\0r\0"), "EINVAL");
    expect_err(c, XS_SET_PERMS, 0, S("/local/domain/5\0r5x\0"), "EINVAL");
    expect_err(c, XS_SET_PERMS, 0, S("/local/domain/5\0r99999\0"), "EINVAL");
    expect_err(c, XS_SET_PERMS, 0, S("/missing\0n0\0"), "ENOENT");

    /* Toolstack-only requests. */
    expect_err(d5, XS_CONTROL, 0, S("domain\0007\0"), "EACCES");
    expect_err(d5, XS_INTRODUCE, 0, S("7\0001\0001\0"), "EACCES");
    expect_err(d5, XS_RELEASE, 0, S("7\0"), "EACCES");
    expect_err(d5, XS_IS_DOMAIN_INTRODUCED, 0, S("7\0"), "EACCES");
    expect_reply(d5, XS_GET_DOMAIN_PATH, 0, S("5\0"), S("/local/domain/5\0"));
    expect_err(c, XS_CONTROL, 0, S("domain\0000\0"), "EINVAL");
    expect_err(c, XS_CONTROL, 0, S("domain\0abc\0"), "EINVAL");
}
END_TEST

START_TEST(test_ro_socket)
{
    struct xsd_conn *ro = xsd_conn_new(&srv, -1, 0, false);
    expect_reply(ro, XS_READ, 0, S("/tool\0"), "", 0);
    expect_err(ro, XS_WRITE, 0, S("/x\0v"), "EACCES");
    expect_err(ro, XS_MKDIR, 0, S("/tool/x\0"), "EACCES");
    expect_err(ro, XS_RM, 0, S("/tool\0"), "EACCES");
}
END_TEST

START_TEST(test_watches)
{
    struct xsd_conn *c = dom0();
    struct xsd_conn *w = dom0();
    expect_ok(w, XS_WATCH, 0, S("/a\0tok\0"));
    expect_event(w, "/a", "tok");
    expect_err(w, XS_WATCH, 0, S("/a\0tok\0"), "EEXIST");
    expect_ok(w, XS_WATCH, 0, S("/a\0tok2\0"));
    expect_event(w, "/a", "tok2");
    expect_ok(w, XS_UNWATCH, 0, S("/a\0tok2\0"));
    expect_err(w, XS_UNWATCH, 0, S("/a\0tok2\0"), "ENOENT");
    expect_err(w, XS_WATCH, 0, S("/a//b\0t\0"), "EINVAL");

    write_key(c, "/a", "1");
    expect_event(w, "/a", "tok");
    write_key(c, "/a/b/c", "1");            /* descendants fire too */
    expect_event(w, "/a/b/c", "tok");
    write_key(c, "/other", "1");
    expect_nothing(w);
    expect_ok(c, XS_MKDIR, 0, S("/a/m\0"));
    expect_event(w, "/a/m", "tok");
    expect_ok(c, XS_MKDIR, 0, S("/a/m\0"));  /* already there: no event */
    expect_nothing(w);
    expect_ok(c, XS_SET_PERMS, 0, S("/a/m\0n0\0r3\0"));
    expect_event(w, "/a/m", "tok");

    /* RM fires for every deleted node a watch is on. */
    expect_ok(w, XS_WATCH, 0, S("/a/b/c\0deep\0"));
    expect_event(w, "/a/b/c", "deep");
    expect_ok(w, XS_WATCH, 0, S("/a/b\0mid\0"));
    expect_event(w, "/a/b", "mid");
    expect_ok(c, XS_RM, 0, S("/a\0"));
    expect_event(w, "/a/b/c", "deep");
    expect_event(w, "/a/b", "mid");
    expect_event(w, "/a", "tok");
    expect_nothing(w);
    expect_nothing(c);

    /* Relative watches report relative paths. */
    expect_ok(w, XS_WATCH, 0, S("dev\0rel\0"));
    expect_event(w, "dev", "rel");
    write_key(c, "/local/domain/0/dev/x", "1");
    expect_event(w, "dev/x", "rel");
    expect_ok(w, XS_RESET_WATCHES, 0, "", 0);
    write_key(c, "/local/domain/0/dev/y", "1");
    expect_nothing(w);
}
END_TEST

START_TEST(test_watch_permissions)
{
    struct xsd_conn *c = dom0();
    struct xsd_conn *d5 = as_domain(5);
    write_key(c, "/local/domain/6/secret", "x");
    expect_ok(c, XS_SET_PERMS, 0, S("/local/domain/6\0n6\0"));
    expect_ok(c, XS_SET_PERMS, 0, S("/local/domain/6/secret\0n6\0"));
    /* Watching is allowed; events for unreadable nodes are not sent. */
    expect_ok(d5, XS_WATCH, 0, S("/local/domain/6\0spy\0"));
    expect_event(d5, "/local/domain/6", "spy");
    write_key(c, "/local/domain/6/secret", "y");
    expect_nothing(d5);
    /* Losing access still tells the watcher (old permissions count). */
    expect_ok(c, XS_SET_PERMS, 0, S("/local/domain/6/secret\0n6\0r5\0"));
    expect_event(d5, "/local/domain/6/secret", "spy");
    expect_ok(c, XS_SET_PERMS, 0, S("/local/domain/6/secret\0n6\0"));
    expect_event(d5, "/local/domain/6/secret", "spy");
    write_key(c, "/local/domain/6/secret", "z");
    expect_nothing(d5);
    /* Special events go only to those allowed by their permissions. */
    expect_ok(d5, XS_WATCH, 0, S("@introduceDomain\0i\0"));
    expect_event(d5, "@introduceDomain", "i");
    expect_ok(c, XS_INTRODUCE, 0, S("9\0001234\0003\0"));
    expect_nothing(d5);
    expect_err(d5, XS_GET_PERMS, 0, S("@introduceDomain\0"), "EACCES");
    expect_err(c, XS_GET_PERMS, 0, S("@nothing\0"), "EINVAL");
    expect_ok(c, XS_SET_PERMS, 0, S("@introduceDomain\0n0\0r5\0"));
    expect_reply(d5, XS_GET_PERMS, 0, S("@introduceDomain\0"), S("n0\0r5\0"));
    expect_reply(c, XS_GET_PERMS, 0, S("@introduceDomain\0"), S("n0\0r5\0"));
    expect_ok(c, XS_INTRODUCE, 0, S("10\0001234\0003\0"));
    expect_event(d5, "@introduceDomain", "i");
    expect_err(d5, XS_SET_PERMS, 0, S("@introduceDomain\0b5\0"), "EACCES");
    expect_err(c, XS_SET_PERMS, 0, S("@bogus\0b5\0"), "EINVAL");
}
END_TEST

START_TEST(test_domains)
{
    struct xsd_conn *c = dom0();
    expect_ok(c, XS_WATCH, 0, S("@introduceDomain\0in\0"));
    expect_event(c, "@introduceDomain", "in");
    expect_ok(c, XS_WATCH, 0, S("@releaseDomain\0out\0"));
    expect_event(c, "@releaseDomain", "out");
    expect_reply(c, XS_IS_DOMAIN_INTRODUCED, 0, S("3\0"), S("F\0"));
    expect_reply(c, XS_IS_DOMAIN_INTRODUCED, 0, S("0\0"), S("T\0"));
    send_raw(c, XS_INTRODUCE, 1, 0, S("3\0004096\0007\0"));
    expect_event(c, "@introduceDomain", "in");
    struct msg m;
    ck_assert(pop(c, &m));
    ck_assert_uint_eq(m.type, XS_INTRODUCE);
    expect_reply(c, XS_IS_DOMAIN_INTRODUCED, 0, S("3\0"), S("T\0"));
    expect_ok(c, XS_INTRODUCE, 0, S("3\0004096\0007\0"));     /* same page */
    expect_err(c, XS_INTRODUCE, 0, S("3\0008192\0007\0"), "EINVAL");
    expect_err(c, XS_INTRODUCE, 0, S("4\0004096\0000\0"), "EINVAL");
    expect_err(c, XS_INTRODUCE, 0, S("4\0004096\0"), "EINVAL");
    expect_err(c, XS_INTRODUCE, 0, S("0\0004096\0001\0"), "EINVAL");
    expect_ok(c, XS_RESUME, 0, S("3\0"));
    expect_err(c, XS_RESUME, 0, S("4\0"), "ENOENT");
    /* The event is queued before the reply to the request causing it. */
    send_raw(c, XS_RELEASE, 2, 0, S("3\0"));
    expect_event(c, "@releaseDomain", "out");
    ck_assert(pop(c, &m));
    ck_assert_uint_eq(m.type, XS_RELEASE);
    ck_assert_uint_eq(m.req_id, 2);
    expect_reply(c, XS_IS_DOMAIN_INTRODUCED, 0, S("3\0"), S("F\0"));
    expect_err(c, XS_RELEASE, 0, S("3\0"), "ENOENT");
    expect_nothing(c);

    /* Releasing a domain removes the nodes it owns, with watch events. */
    struct xsd_conn *w = dom0();
    write_key(c, "/local/domain/4/device/vbd/768/state", "4");
    write_key(c, "/local/domain/4/name", "four");
    write_key(c, "/backend/vbd/4/768/mode", "r");
    expect_ok(c, XS_SET_PERMS, 0, S("/local/domain/4/device\0n4\0"));
    expect_ok(c, XS_SET_PERMS, 0, S("/local/domain/4/device/vbd\0n4\0"));
    expect_ok(c, XS_SET_PERMS, 0, S("/backend/vbd/4/768\0n4\0"));
    expect_ok(w, XS_INTRODUCE, 0, S("4\0001\0001\0"));
    expect_event(c, "@introduceDomain", "in");
    expect_ok(w, XS_WATCH, 0, S("/local/domain/4/device/vbd/768/state\0st\0"));
    expect_event(w, "/local/domain/4/device/vbd/768/state", "st");
    send_raw(c, XS_RELEASE, 3, 0, S("4\0"));
    expect_event(c, "@releaseDomain", "out");
    ck_assert(pop(c, &m));
    ck_assert_uint_eq(m.type, XS_RELEASE);
    expect_event(w, "/local/domain/4/device/vbd/768/state", "st");
    expect_nothing(w);
    expect_err(c, XS_READ, 0, S("/local/domain/4/device\0"), "ENOENT");
    expect_err(c, XS_READ, 0, S("/backend/vbd/4/768/mode\0"), "ENOENT");
    expect_reply(c, XS_READ, 0, S("/local/domain/4/name\0"), S("four"));
    expect_reply(c, XS_DIRECTORY, 0, S("/local/domain/4\0"), S("name\0"));
    expect_reply(c, XS_DIRECTORY, 0, S("/backend/vbd/4\0"), "", 0);
    expect_err(c, XS_RELEASE, 0, S("0\0"), "EINVAL");
    expect_err(c, XS_RELEASE, 0, S("x\0"), "EINVAL");
    expect_nothing(c);
}
END_TEST

START_TEST(test_set_target)
{
    struct xsd_conn *c = dom0();
    struct xsd_conn *stub = as_domain(8);
    write_key(c, "/local/domain/3/disk", "d");
    expect_ok(c, XS_SET_PERMS, 0, S("/local/domain/3/disk\0n3\0"));
    expect_err(stub, XS_READ, 0, S("/local/domain/3/disk\0"), "EACCES");
    expect_err(c, XS_SET_TARGET, 0, S("8\0003\0"), "ENOENT");
    expect_ok(c, XS_INTRODUCE, 0, S("3\0001\0001\0"));
    expect_ok(c, XS_INTRODUCE, 0, S("8\0002\0001\0"));
    expect_err(c, XS_SET_TARGET, 0, S("8\0"), "EINVAL");
    expect_ok(c, XS_SET_TARGET, 0, S("8\0003\0"));
    expect_reply(stub, XS_READ, 0, S("/local/domain/3/disk\0"), S("d"));
}
END_TEST

START_TEST(test_transactions)
{
    struct xsd_conn *a = dom0();
    struct xsd_conn *b = dom0();
    write_key(a, "/cnt", "0");
    uint32_t t = txn_start(a);
    ck_assert_uint_ne(t, 0);
    expect_reply(a, XS_READ, t, S("/cnt\0"), S("0"));
    expect_ok(a, XS_WRITE, t, S("/cnt\0001"));
    expect_ok(a, XS_WRITE, t, S("/new/node\0n"));
    /* Not visible outside until the commit. */
    expect_reply(b, XS_READ, 0, S("/cnt\0"), S("0"));
    expect_err(b, XS_READ, 0, S("/new/node\0"), "ENOENT");
    expect_reply(a, XS_READ, t, S("/new/node\0"), S("n"));
    expect_err(a, XS_TRANSACTION_START, t, S("\0"), "EBUSY");
    expect_ok(a, XS_TRANSACTION_END, t, S("T\0"));
    expect_reply(b, XS_READ, 0, S("/cnt\0"), S("1"));
    expect_reply(b, XS_READ, 0, S("/new/node\0"), S("n"));
    expect_err(a, XS_TRANSACTION_END, t, S("T\0"), "ENOENT");
    expect_err(a, XS_TRANSACTION_END, 0, S("T\0"), "ENOENT");

    /* Conflict: a node read in the transaction changed meanwhile. */
    t = txn_start(a);
    expect_reply(a, XS_READ, t, S("/cnt\0"), S("1"));
    write_key(b, "/cnt", "5");
    expect_ok(a, XS_WRITE, t, S("/cnt\0002"));
    expect_err(a, XS_TRANSACTION_END, t, S("T\0"), "EAGAIN");
    expect_reply(b, XS_READ, 0, S("/cnt\0"), S("5"));
    /* Unrelated changes do not conflict. */
    t = txn_start(a);
    expect_reply(a, XS_READ, t, S("/cnt\0"), S("5"));
    write_key(b, "/elsewhere", "1");
    expect_ok(a, XS_WRITE, t, S("/cnt\0006"));
    expect_ok(a, XS_TRANSACTION_END, t, S("T\0"));
    expect_reply(b, XS_READ, 0, S("/cnt\0"), S("6"));
    /* Siblings created meanwhile do not conflict with a changed node. */
    write_key(b, "/p/a", "1");
    t = txn_start(a);
    expect_ok(a, XS_WRITE, t, S("/p/a\0002"));
    write_key(b, "/p/b", "1");
    expect_ok(a, XS_TRANSACTION_END, t, S("T\0"));
    expect_reply(b, XS_READ, 0, S("/p/a\0"), S("2"));
    /* A node deleted and re-created meanwhile conflicts too. */
    t = txn_start(a);
    expect_reply(a, XS_READ, t, S("/cnt\0"), S("6"));
    expect_ok(b, XS_RM, 0, S("/cnt\0"));
    write_key(b, "/cnt", "6");
    expect_err(a, XS_TRANSACTION_END, t, S("T\0"), "EAGAIN");
    /* Abort discards; a bad argument is EINVAL and ends nothing. */
    t = txn_start(a);
    expect_ok(a, XS_RM, t, S("/cnt\0"));
    expect_err(a, XS_READ, t, S("/cnt\0"), "ENOENT");
    expect_err(a, XS_TRANSACTION_END, t, S("X\0"), "EINVAL");
    expect_ok(a, XS_TRANSACTION_END, t, S("F\0"));
    expect_reply(b, XS_READ, 0, S("/cnt\0"), S("6"));
    /* Ids are per connection. */
    t = txn_start(a);
    expect_err(b, XS_READ, t, S("/cnt\0"), "ENOENT");
}
END_TEST

START_TEST(test_transaction_watches)
{
    struct xsd_conn *a = dom0();
    struct xsd_conn *w = dom0();
    expect_ok(w, XS_WATCH, 0, S("/t\0tok\0"));
    expect_event(w, "/t", "tok");
    uint32_t t = txn_start(a);
    expect_ok(a, XS_WRITE, t, S("/t/x\0001"));
    expect_ok(a, XS_MKDIR, t, S("/t/y\0"));
    expect_nothing(w);
    expect_ok(a, XS_TRANSACTION_END, t, S("T\0"));
    expect_event(w, "/t/x", "tok");
    expect_event(w, "/t/y", "tok");
    expect_nothing(w);
    /* A failed commit sends nothing. */
    t = txn_start(a);
    expect_reply(a, XS_READ, t, S("/t/x\0"), S("1"));
    expect_ok(a, XS_WRITE, t, S("/t/x\0002"));
    write_key(dom0(), "/t/x", "3");
    expect_event(w, "/t/x", "tok");
    expect_err(a, XS_TRANSACTION_END, t, S("T\0"), "EAGAIN");
    expect_nothing(w);
    /* Watches work inside a transaction's id: WATCH ignores it. */
    t = txn_start(a);
    expect_ok(a, XS_WATCH, t, S("/u\0in-tx\0"));
    expect_event(a, "/u", "in-tx");
    expect_ok(a, XS_TRANSACTION_END, t, S("F\0"));
}
END_TEST

START_TEST(test_quotas)
{
    struct xsd_conn *c = dom0();
    struct xsd_conn *d = as_domain(5);
    expect_ok(c, XS_MKDIR, 0, S("/local/domain/5\0"));
    expect_ok(c, XS_SET_PERMS, 0, S("/local/domain/5\0n5\0"));

    /* Values: 2048 bytes for a domain, none beyond the payload for dom0. */
    char buf[XENSTORE_PAYLOAD_MAX];
    memcpy(buf, "v\0", 2);
    memset(buf + 2, 'x', sizeof(buf) - 2);
    expect_ok(d, XS_WRITE, 0, buf, 2 + 2048);
    expect_err(d, XS_WRITE, 0, buf, 2 + 2049, "ENOSPC");
    expect_ok(c, XS_WRITE, 0, buf, sizeof(buf));

    /* Permission lists: 5 entries. */
    expect_ok(d, XS_SET_PERMS, 0, S("v\0n5\0r1\0r2\0r3\0r4\0"));
    expect_err(d, XS_SET_PERMS, 0, S("v\0n5\0r1\0r2\0r3\0r4\0r6\0"), "ENOSPC");

    /* Watches: 128 per connection, then E2BIG. */
    for (int i = 0; i < 128; i++) {
        int n = snprintf(buf, sizeof(buf), "w%c%d", 0, i);
        expect_ok(d, XS_WATCH, 0, buf, (size_t)n + 1);
        struct msg m;
        ck_assert(pop(d, &m));
    }
    expect_err(d, XS_WATCH, 0, S("w\0one-more\0"), "E2BIG");
    expect_ok(d, XS_RESET_WATCHES, 0, "", 0);

    /* Transactions: 10 open at once. */
    for (int i = 0; i < 10; i++) {
        txn_start(d);
    }
    expect_err(d, XS_TRANSACTION_START, 0, S("\0"), "ENOSPC");
    expect_ok(d, XS_RESET_WATCHES, 0, "", 0);
    txn_start(d);
    expect_ok(d, XS_RESET_WATCHES, 0, "", 0);

    /* Nodes: 1000 owned by the domain (the home node and "v" count). */
    for (int i = 2; i < 1000; i++) {
        int n = snprintf(buf, sizeof(buf), "n%d", i);
        expect_ok(d, XS_MKDIR, 0, buf, (size_t)n + 1);
    }
    expect_err(d, XS_MKDIR, 0, S("one-more\0"), "ENOSPC");
    expect_err(d, XS_WRITE, 0, S("one/more\0x"), "ENOSPC");
    expect_ok(d, XS_RM, 0, S("n2\0"));
    expect_err(d, XS_MKDIR, 0, S("two/more\0"), "ENOSPC");
    expect_ok(d, XS_MKDIR, 0, S("one-more\0"));
    /* Inside a transaction the count is checked as well. */
    expect_ok(d, XS_RM, 0, S("n3\0"));
    uint32_t t = txn_start(d);
    expect_ok(d, XS_MKDIR, t, S("in-tx\0"));
    expect_err(d, XS_MKDIR, t, S("in-tx-2\0"), "ENOSPC");
    expect_ok(d, XS_TRANSACTION_END, t, S("T\0"));
    /* The toolstack is not limited. */
    expect_ok(c, XS_MKDIR, 0, S("/local/domain/5/by-dom0\0"));
}
END_TEST

START_TEST(test_framing)
{
    struct xsd_conn *c = dom0();
    /* One byte at a time, two requests back to back. */
    char buf[64];
    struct xsd_sockmsg h1 = { XS_WRITE, 1, 0, 6 };
    struct xsd_sockmsg h2 = { XS_READ, 2, 0, 3 };
    size_t n = 0;
    memcpy(buf + n, &h1, sizeof(h1)); n += sizeof(h1);
    memcpy(buf + n, "/k\0val", 6); n += 6;
    memcpy(buf + n, &h2, sizeof(h2)); n += sizeof(h2);
    memcpy(buf + n, "/k\0", 3); n += 3;
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(xsd_conn_input(c, buf + i, 1), 0);
    }
    struct msg m;
    ck_assert(pop(c, &m));
    ck_assert_uint_eq(m.req_id, 1);
    ck_assert_str_eq(m.data, "OK");
    ck_assert(pop(c, &m));
    ck_assert_uint_eq(m.req_id, 2);
    ck_assert_uint_eq(m.len, 3);
    ck_assert_str_eq(m.data, "val");

    /* An empty payload completes with the header. */
    struct xsd_sockmsg h3 = { XS_RESET_WATCHES, 3, 0, 0 };
    ck_assert_int_eq(xsd_conn_input(c, &h3, sizeof(h3)), 0);
    ck_assert(pop(c, &m));
    ck_assert_str_eq(m.data, "OK");

    /* A payload over 4096 bytes drops the client. */
    struct xsd_sockmsg big = { XS_READ, 4, 0, XENSTORE_PAYLOAD_MAX + 1 };
    ck_assert_int_eq(xsd_conn_input(c, &big, sizeof(big)), -EPROTO);
    ck_assert(c->dead);
    struct xsd_conn *c2 = dom0();
    struct xsd_sockmsg huge = { XS_WRITE, 5, 0, 0xffffffffu };
    ck_assert_int_eq(xsd_conn_input(c2, &huge, sizeof(huge)), -EPROTO);
    /* Exactly 4096 is fine. */
    struct xsd_conn *c3 = dom0();
    char *max = calloc(1, XENSTORE_PAYLOAD_MAX);
    memcpy(max, "/max", 5);
    expect_ok(c3, XS_WRITE, 0, max, XENSTORE_PAYLOAD_MAX);
    struct msg r = req(c3, XS_READ, 0, S("/max\0"));
    ck_assert_uint_eq(r.len, XENSTORE_PAYLOAD_MAX - 5);
    free(max);
}
END_TEST

static Suite *xenstored_suite(void)
{
    Suite *s = suite_create("xenstored-proto");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_read_write);
    tcase_add_test(tc, test_rm);
    tcase_add_test(tc, test_paths);
    tcase_add_test(tc, test_unknown_and_ids);
    tcase_add_test(tc, test_directory_part);
    suite_add_tcase(s, tc);
    tc = tcase_create("permissions");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_permissions);
    tcase_add_test(tc, test_ro_socket);
    tcase_add_test(tc, test_set_target);
    tcase_add_test(tc, test_quotas);
    suite_add_tcase(s, tc);
    tc = tcase_create("watches");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_watches);
    tcase_add_test(tc, test_watch_permissions);
    tcase_add_test(tc, test_domains);
    suite_add_tcase(s, tc);
    tc = tcase_create("transactions");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_transactions);
    tcase_add_test(tc, test_transaction_watches);
    suite_add_tcase(s, tc);
    tc = tcase_create("framing");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_framing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(xenstored_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
