/*
 * tests/unit/test-xen-xl-cfg.c — xl domain config files (xen/xl-cfg.c):
 * the xl.cfg syntax, overrides, the settings diskdm-xl takes from them,
 * and every parse error with its exact message and place.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xen/xen.h"

static void parse_ok(struct xen_cfg *cfg, const char *text)
{
    struct error *err = NULL;
    int r = xen_cfg_parse(cfg, "g.cfg", text, strlen(text), &err);

    ck_assert_msg(r == 0, "%s: %s", text, err ? err->msg : "?");
    ck_assert_ptr_null(err);
}

/* `text` (len bytes) fails with exactly `msg` and adds nothing. */
static void fails_n(const char *text, size_t len, const char *msg)
{
    struct xen_cfg cfg = { 0 };
    struct error *err = NULL;

    parse_ok(&cfg, "before = 1\n");
    ck_assert_int_eq(xen_cfg_parse(&cfg, "g.cfg", text, len, &err), -EINVAL);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err->msg, msg);
    ck_assert_int_eq(err->errnum, EINVAL);
    ck_assert_uint_eq(cfg.n, 1);
    error_free(err);
    xen_cfg_free(&cfg);
}

static void fails(const char *text, const char *msg)
{
    fails_n(text, strlen(text), msg);
}

static const char *str_of(const struct xen_cfg *cfg, const char *key)
{
    const struct xen_cfg_setting *s = xen_cfg_find(cfg, key);

    ck_assert_msg(s && !s->is_list && s->n == 1, "%s", key);
    return s->items[0].str;
}

START_TEST(syntax)
{
    struct xen_cfg cfg = { 0 };
    const struct xen_cfg_setting *s;

    parse_ok(&cfg,
             "# a guest\n"
             "name = \"guest\"   # trailing comment\n"
             "\n"
             "memory=512; vcpus = 2\r\n"
             "kernel = '/boot/vmlinuz'\n"
             "esc = \"a\\tb\\n\\\\\\\"\\'\\x41\\101\\7\"\n"
             "disk = [ 'a,raw,hda',\n"
             "         # comment inside\n"
             "         \"b,raw,hdb,ro\",\n"
             "       ]\n"
             "empty = []\n"
             "n = 0x1F\n"
             "dotted.key_2 = 1.5\n"
             "tail = 'x'");
    ck_assert_str_eq(str_of(&cfg, "name"), "guest");
    ck_assert_str_eq(str_of(&cfg, "memory"), "512");
    ck_assert(xen_cfg_find(&cfg, "memory")->items[0].is_number);
    ck_assert(!xen_cfg_find(&cfg, "name")->items[0].is_number);
    ck_assert_str_eq(str_of(&cfg, "vcpus"), "2");
    ck_assert_str_eq(str_of(&cfg, "kernel"), "/boot/vmlinuz");
    ck_assert_str_eq(str_of(&cfg, "esc"), "a\tb\n\\\"'AA\a");
    ck_assert_str_eq(str_of(&cfg, "n"), "0x1F");
    ck_assert_str_eq(str_of(&cfg, "dotted.key_2"), "1.5");
    ck_assert_str_eq(str_of(&cfg, "tail"), "x");
    s = xen_cfg_find(&cfg, "disk");
    ck_assert(s->is_list);
    ck_assert_uint_eq(s->n, 2);
    ck_assert_str_eq(s->items[0].str, "a,raw,hda");
    ck_assert_int_eq(s->items[0].line, 7);
    ck_assert_int_eq(s->items[0].col, 10);
    ck_assert_str_eq(s->items[1].str, "b,raw,hdb,ro");
    ck_assert_int_eq(s->items[1].line, 9);
    ck_assert_int_eq(s->line, 7);
    ck_assert_int_eq(s->col, 1);
    ck_assert_int_eq(s->vcol, 8);
    ck_assert_str_eq(s->source, "g.cfg");
    s = xen_cfg_find(&cfg, "empty");
    ck_assert(s->is_list);
    ck_assert_uint_eq(s->n, 0);
    ck_assert_ptr_null(xen_cfg_find(&cfg, "nosuch"));
    xen_cfg_free(&cfg);

    /* an empty text, blank lines and comments only */
    parse_ok(&cfg, "");
    parse_ok(&cfg, "\n\n  # nothing\n;;\n");
    ck_assert_uint_eq(cfg.n, 0);
    xen_cfg_free(&cfg);
}
END_TEST

START_TEST(overrides)
{
    struct xen_cfg cfg = { 0 };
    struct error *err = NULL;

    parse_ok(&cfg, "name = 'a'\nmemory = 1\nname = 'b'\n");
    ck_assert_str_eq(str_of(&cfg, "name"), "b");
    /* KEY=VALUE after the file: one more line, the last one wins */
    ck_assert_int_eq(xen_cfg_parse(&cfg, "command line", "name=\"c\"", 8, &err), 0);
    ck_assert_str_eq(str_of(&cfg, "name"), "c");
    ck_assert_str_eq(xen_cfg_find(&cfg, "name")->source, "command line");
    ck_assert_int_eq(xen_cfg_parse(&cfg, "command line", "name=c", 6, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "command line:1:6: config parsing error: expected "
                     "a value after 'name =', not 'c' (strings need quotes)");
    error_free(err);
    ck_assert_str_eq(str_of(&cfg, "name"), "c");
    xen_cfg_free(&cfg);
}
END_TEST

START_TEST(errors)
{
    fails("name = \"guest\n", "g.cfg:1:8: config parsing error: unterminated string");
    fails("a = 1\nname = 'guest", "g.cfg:2:8: config parsing error: unterminated string");
    fails("name = 'ab\\\ncd'", "g.cfg:1:8: config parsing error: unterminated string");
    fails("name = 'ab\\", "g.cfg:1:8: config parsing error: unterminated string");
    fails_n("name = 'a\0b'", 12, "g.cfg:1:10: config parsing error: a NUL byte in a string");
    fails("name = 'a\\x00'", "g.cfg:1:10: config parsing error: a NUL byte in a string");
    fails("name = 'a\\0'", "g.cfg:1:10: config parsing error: a NUL byte in a string");
    fails("name = 'a\\xg'", "g.cfg:1:10: config parsing error: invalid escape sequence '\\x'");
    fails("name = 'a\\q'", "g.cfg:1:10: config parsing error: invalid escape sequence '\\q'");
    fails("name = 'a\\\x01'", "g.cfg:1:10: config parsing error: invalid escape sequence");
    fails("name\n= 'x'", "g.cfg:1:5: config parsing error: expected '=' after 'name'");
    fails("name 'x'", "g.cfg:1:6: config parsing error: expected '=' after 'name'");
    fails("name", "g.cfg:1:5: config parsing error: expected '=' after 'name'");
    fails("name =\n", "g.cfg:1:7: config parsing error: expected a value after 'name ='");
    fails("name = ;", "g.cfg:1:8: config parsing error: expected a value after 'name ='");
    fails("name = # none", "g.cfg:1:14: config parsing error: expected a value after 'name ='");
    fails("name = guest", "g.cfg:1:8: config parsing error: expected a value after "
          "'name =', not 'g' (strings need quotes)");
    fails("name = \xc3\xa9", "g.cfg:1:8: config parsing error: expected a value after 'name ='");
    fails("disk = [ , ]", "g.cfg:1:10: config parsing error: expected a value after '['");
    fails("disk = [ 'a', , ]", "g.cfg:1:15: config parsing error: expected a value after ','");
    fails("disk = [ 'a', x ]", "g.cfg:1:15: config parsing error: expected a value after "
          "',', not 'x' (strings need quotes)");
    fails("disk = [ [ 'a' ] ]", "g.cfg:1:10: config parsing error: a list inside a list");
    fails("disk = [ 'a',\n 'b',\n", "g.cfg:1:8: config parsing error: unterminated list (no ']')");
    fails("disk = [ 'a'", "g.cfg:1:8: config parsing error: unterminated list (no ']')");
    fails("disk = [", "g.cfg:1:8: config parsing error: unterminated list (no ']')");
    fails("disk = [ 'a' 'b' ]", "g.cfg:1:14: config parsing error: expected ',' or ']' in the list");
    fails("disk = [ 'a\n' ]", "g.cfg:1:10: config parsing error: unterminated string");
    fails("name = 'a' 'b'", "g.cfg:1:12: config parsing error: expected the end of the "
          "line after the value of 'name'");
    fails("name = 'a' = 3", "g.cfg:1:12: config parsing error: expected the end of the "
          "line after the value of 'name'");
    fails("= 3", "g.cfg:1:1: config parsing error: expected a setting name, not '='");
    fails("a = 1\n  9lives = 1", "g.cfg:2:3: config parsing error: expected a setting name, not '9'");
    fails("\x01 = 1", "g.cfg:1:1: config parsing error: expected a setting name");
    fails_n("a = 1\n\0", 7, "g.cfg:2:1: config parsing error: expected a setting name");
}
END_TEST

/* from_cfg(text) fails with exactly `msg`. */
static void domain_fails(const char *text, const char *msg)
{
    struct xen_cfg cfg = { 0 };
    struct xen_xl_domain d;
    struct error *err = NULL;

    parse_ok(&cfg, text);
    ck_assert_int_eq(xen_xl_domain_from_cfg(&cfg, &d, &err), -EINVAL);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err->msg, msg);
    ck_assert_uint_eq(d.ndisks, 0);
    ck_assert_ptr_null(d.name);
    error_free(err);
    xen_cfg_free(&cfg);
}

START_TEST(domain_settings)
{
    struct xen_cfg cfg = { 0 };
    struct xen_xl_domain d;
    struct error *err = NULL;

    parse_ok(&cfg,
             "name = 'guest'\n"
             "memory = 512\n"
             "vif = [ 'bridge=xenbr0' ]\n"
             "disk = [ '/img/a.raw,raw,hda,rw',\n"
             "         'format=raw, vdev=hdb, access=ro, target=/img/b.raw',\n"
             "         '/img/c.raw,raw,hdd',\n"
             "         ',,hdc,cdrom' ]\n"
             "memory = 1024\n"
             "device_model_args = [ '-qtest', 'unix:/tmp/q.sock' ]\n"
             "device_model_args_hvm = [ '-v' ]\n"
             "device_model_override = '/opt/diskdm'\n"
             "vcpus = 2\n");
    ck_assert_int_eq(xen_xl_domain_from_cfg(&cfg, &d, &err), 0);
    ck_assert_ptr_null(err);
    ck_assert_str_eq(d.name, "guest");
    ck_assert_uint_eq(d.ndisks, 4);
    ck_assert_str_eq(d.disks[0].target, "/img/a.raw");
    ck_assert_str_eq(d.disks[0].vdev, "hda");
    ck_assert(d.disks[0].readwrite);
    ck_assert_str_eq(d.disks[1].vdev, "hdb");
    ck_assert(!d.disks[1].readwrite);
    /* access left out: xl's default, rw */
    ck_assert_str_eq(d.disks[2].vdev, "hdd");
    ck_assert(d.disks[2].readwrite);
    ck_assert(d.disks[3].is_cdrom);
    ck_assert(!d.disks[3].readwrite);
    ck_assert_str_eq(d.disks[3].format, "empty");
    ck_assert_str_eq(d.disk_lines[0], "g.cfg:4:10");
    ck_assert_str_eq(d.disk_lines[3], "g.cfg:7:10");
    ck_assert_uint_eq(d.ndm_args, 3);
    ck_assert_str_eq(d.dm_args[0], "-qtest");
    ck_assert_str_eq(d.dm_args[1], "unix:/tmp/q.sock");
    ck_assert_str_eq(d.dm_args[2], "-v");
    ck_assert_ptr_null(d.dm_args[3]);
    ck_assert_str_eq(d.dm_override, "/opt/diskdm");
    ck_assert_uint_eq(d.nignored, 3);
    ck_assert_str_eq(d.ignored[0], "memory");
    ck_assert_str_eq(d.ignored[1], "vif");
    ck_assert_str_eq(d.ignored[2], "vcpus");
    xen_xl_domain_free(&d);
    xen_cfg_free(&cfg);

    /* nothing at all is a valid (if useless) config */
    ck_assert_int_eq(xen_xl_domain_from_cfg(&cfg, &d, &err), 0);
    ck_assert_ptr_null(d.name);
    ck_assert_uint_eq(d.ndisks, 0);
    xen_xl_domain_free(&d);
}
END_TEST

START_TEST(domain_errors)
{
    const char *D = "g.cfg:2:10: config parsing error in disk specification: ";
    char msg[256];

    domain_fails("name = 3", "g.cfg:1:8: config parsing error: 'name' must be a string");
    domain_fails("name = ['a']", "g.cfg:1:8: config parsing error: 'name' must be a string");
    domain_fails("disk = '/a,raw,hda'", "g.cfg:1:8: config parsing error: 'disk' must be "
                 "a list of disk specs");
    domain_fails("disk = [ '/a,raw,hda', 3 ]", "g.cfg:1:24: config parsing error: 'disk' "
                 "must be a list of disk specs");
    domain_fails("device_model_args = '-v'", "g.cfg:1:21: config parsing error: "
                 "'device_model_args' must be a list of strings");
    domain_fails("device_model_args_hvm = [ '-v', 2 ]", "g.cfg:1:33: config parsing "
                 "error: 'device_model_args_hvm' must be a list of strings");
    domain_fails("device_model_override = [ '/x' ]", "g.cfg:1:25: config parsing "
                 "error: 'device_model_override' must be a string");
    /* disk specs: xl's messages, placed in the file */
    snprintf(msg, sizeof(msg), "%sunknown value for access: near `rx' in `/a,raw,hda,rx'", D);
    domain_fails("name = 'g'\ndisk = [ '/a,raw,hda,rx' ]", msg);
    snprintf(msg, sizeof(msg), "%sunknown parameter: near `colour=red' in "
             "`colour=red,/a,,hda'", D);
    domain_fails("name = 'g'\ndisk = [ 'colour=red,/a,,hda' ]", msg);
    snprintf(msg, sizeof(msg), "%sempty value for access (leave access out for rw) "
             "in `/a,raw,hda,,discard'", D);
    domain_fails("name = 'g'\ndisk = [ '/a,raw,hda,,discard' ]", msg);
    snprintf(msg, sizeof(msg), "%sempty value for access (leave access out for rw) "
             "in `vdev=hda,access=,target=/a'", D);
    domain_fails("name = 'g'\ndisk = [ 'vdev=hda,access=,target=/a' ]", msg);
    snprintf(msg, sizeof(msg), "%sno vdev specified in `/a'", D);
    domain_fails("name = 'g'\ndisk = [ '/a' ]", msg);
    /* the second disk is the bad one: its own place */
    domain_fails("disk = [ '/a,raw,hda',\n  '/b,raw,hdb,maybe' ]",
                 "g.cfg:2:3: config parsing error in disk specification: unknown "
                 "value for access: near `maybe' in `/b,raw,hdb,maybe'");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("xen-xl-cfg");
    TCase *tc = tcase_create("parse");

    tcase_add_test(tc, syntax);
    tcase_add_test(tc, overrides);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, domain_settings);
    tcase_add_test(tc, domain_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
