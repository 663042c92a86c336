/*
 * tests/unit/test-util-opts.c — option-string splitting, the scalar parsers
 * and typed option structs, including every error message.
 */
#include "util/util.h"

#include <check.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

/* ------------------------------------------------------------------ */
/* opts_split                                                          */
/* ------------------------------------------------------------------ */

static void split_ok(const char *str, const char *implied, size_t n,
                     const char *const *kv)
{
    struct kvlist l;
    struct error *err = NULL;
    ck_assert_msg(opts_split(str, implied, &l, &err) == 0, "split '%s'", str);
    ck_assert_ptr_null(err);
    ck_assert_msg(l.n == n, "'%s': %zu elements, want %zu", str, l.n, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(l.v[i].key, kv[2 * i]);
        ck_assert_str_eq(l.v[i].value, kv[2 * i + 1]);
    }
    kvlist_free(&l);
    ck_assert_ptr_null(l.v);
}

static void split_err(const char *str, const char *implied, const char *msg)
{
    struct kvlist l;
    struct error *err = NULL;
    ck_assert_int_eq(opts_split(str, implied, &l, &err), -EINVAL);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err->msg, msg);
    ck_assert_uint_eq(l.n, 0);
    error_free(err);
}

START_TEST(test_split)
{
    split_ok("", NULL, 0, NULL);
    split_ok("a=b", NULL, 1, (const char *[]){ "a", "b" });
    split_ok("a=b,c=d", NULL, 2, (const char *[]){ "a", "b", "c", "d" });
    split_ok("a=b,", NULL, 1, (const char *[]){ "a", "b" });
    split_ok("a=", NULL, 1, (const char *[]){ "a", "" });
    split_ok("a=,b=1", NULL, 2, (const char *[]){ "a", "", "b", "1" });
    split_ok("a=b=c", NULL, 1, (const char *[]){ "a", "b=c" });
    split_ok("file=a,,b,format=raw", NULL, 2,
             (const char *[]){ "file", "a,b", "format", "raw" });
    split_ok("file=a,,,,b", NULL, 1, (const char *[]){ "file", "a,,b" });
    split_ok("file=a,,,b=c", NULL, 2, (const char *[]){ "file", "a,", "b", "c" });
    split_ok("file=,,", NULL, 1, (const char *[]){ "file", "," });
    split_ok("a=1,,,", NULL, 1, (const char *[]){ "a", "1," });
    split_ok("a=1,a=2", NULL, 2, (const char *[]){ "a", "1", "a", "2" });
    /* Implied key: only the first element may omit "key=". */
    split_ok("disk.qcow2,format=qcow2", "file", 2,
             (const char *[]){ "file", "disk.qcow2", "format", "qcow2" });
    split_ok("x,,y=z,format=raw", "file", 2,
             (const char *[]){ "file", "x,y=z", "format", "raw" });
    split_ok("file=d.img", "file", 1, (const char *[]){ "file", "d.img" });
    split_ok("a=b", "file", 1, (const char *[]){ "a", "b" });
}
END_TEST

START_TEST(test_split_errors)
{
    split_err("disk.img", NULL, "Expected '=' after parameter 'disk.img'");
    split_err("a=b,readonly", NULL, "Expected '=' after parameter 'readonly'");
    split_err("a=b,readonly", "file", "Expected '=' after parameter 'readonly'");
    split_err("x,y", "file", "Expected '=' after parameter 'y'");
    split_err("a=b,,c,d", NULL, "Expected '=' after parameter 'd'");
    split_err("=x", NULL, "Expected parameter name before '='");
    split_err("a=1,=x", "file", "Expected parameter name before '='");
    split_err(",a=1", NULL, "Expected '=' after parameter ''");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Scalars                                                             */
/* ------------------------------------------------------------------ */

START_TEST(test_parse_bool)
{
    static const char *const yes[] = { "on", "true", "yes" };
    static const char *const no[] = { "off", "false", "no" };
    bool b;
    for (size_t i = 0; i < 3; i++) {
        b = false;
        ck_assert_int_eq(parse_bool(yes[i], &b), 0);
        ck_assert(b);
        b = true;
        ck_assert_int_eq(parse_bool(no[i], &b), 0);
        ck_assert(!b);
    }
    static const char *const bad[] = { "", "On", "ON", "1", "0", "y", "onn", " on" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        b = true;
        ck_assert_int_eq(parse_bool(bad[i], &b), -EINVAL);
        ck_assert(b);
    }
}
END_TEST

START_TEST(test_parse_uint)
{
    static const struct { const char *s; uint64_t v; } good[] = {
        { "0", 0 }, { "42", 42 }, { "0x10", 16 }, { "0X1f", 31 }, { "010", 8 },
        { "18446744073709551615", UINT64_MAX }, { "0xffffffffffffffff", UINT64_MAX },
    };
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        uint64_t v = 1234;
        ck_assert_msg(parse_uint(good[i].s, &v) == 0, "'%s'", good[i].s);
        ck_assert_uint_eq(v, good[i].v);
    }
    static const char *const bad[] = { "", "-1", "+1", " 1", "1 ", "1a", "0x",
                                       "08", "1K", "1.5", "x" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        uint64_t v = 1234;
        ck_assert_msg(parse_uint(bad[i], &v) == -EINVAL, "'%s'", bad[i]);
        ck_assert_uint_eq(v, 1234);
    }
    uint64_t v = 1234;
    ck_assert_int_eq(parse_uint("18446744073709551616", &v), -ERANGE);
    ck_assert_int_eq(parse_uint("0x10000000000000000", &v), -ERANGE);
    ck_assert_uint_eq(v, 1234);
}
END_TEST

START_TEST(test_parse_size)
{
    static const struct { const char *s; uint64_t v; } good[] = {
        { "0", 0 }, { "512", 512 }, { "2B", 2 }, { "2b", 2 },
        { "1K", 1024 }, { "1k", 1024 }, { "64K", 65536 },
        { "1M", 1ull << 20 }, { "1m", 1ull << 20 }, { "1G", 1ull << 30 },
        { "1T", 1ull << 40 }, { "1P", 1ull << 50 }, { "1E", 1ull << 60 },
        { "15E", 15ull << 60 }, { "1.5G", 1610612736 }, { "1.5k", 1536 },
        { "0.5K", 512 }, { "0.25M", 262144 }, { "2.5T", 5ull << 39 },
        { "15.5E", 31ull << 59 }, { "1.K", 1024 }, { "1.", 1 },
        { "0.0001K", 0 }, { "0.0005K", 1 },         /* 0.512 rounds up */
        { "1.00000000000000000000000000000000000000000000001K", 1024 },
        { "0x1000", 4096 }, { "0X10", 16 },
        { "18446744073709551615", UINT64_MAX }, { "007", 7 },
    };
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        uint64_t v = 1234;
        ck_assert_msg(parse_size(good[i].s, &v) == 0, "'%s'", good[i].s);
        ck_assert_msg(v == good[i].v, "'%s': %llu, want %llu", good[i].s,
                      (unsigned long long)v, (unsigned long long)good[i].v);
    }
    static const char *const bad[] = {
        "", "K", "-1", "-1K", "- 1", "+1", " 1", "1 ", "1X", "1KB", "1KK", "1Ki",
        "0.5", "1.5B", "1.5b", ".5G", "1.5e3G", "0x10K", "0x1.5", "0x", "1,5G",
        "1G ", "abc",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        uint64_t v = 1234;
        ck_assert_msg(parse_size(bad[i], &v) == -EINVAL, "'%s'", bad[i]);
        ck_assert_uint_eq(v, 1234);
    }
    static const char *const range[] = {
        "16E", "17E", "18446744073709551616", "16384P", "99999999999999999999",
        "15.99999999999999999999999E", "18446744073709551615K",
    };
    for (size_t i = 0; i < ARRAY_SIZE(range); i++) {
        uint64_t v = 1234;
        ck_assert_msg(parse_size(range[i], &v) == -ERANGE, "'%s'", range[i]);
        ck_assert_uint_eq(v, 1234);
    }
}
END_TEST

/* ------------------------------------------------------------------ */
/* Typed structs                                                       */
/* ------------------------------------------------------------------ */

enum color { COLOR_RED, COLOR_GREEN, COLOR_BLUE };
static const char *const color_names[] = { "red", "green", "blue", NULL };

struct test_opts {
    char *name;
    bool flag;
    bool flag_set;
    uint64_t size;
    uint64_t count;
    int color;
    bool color_set;
    char *other;
};

static const struct opt_field test_fields[] = {
    { "name", OPT_STRING, offsetof(struct test_opts, name), OPT_NO_SET, NULL },
    { "flag", OPT_BOOL, offsetof(struct test_opts, flag),
      offsetof(struct test_opts, flag_set), NULL },
    { "size", OPT_SIZE, offsetof(struct test_opts, size), OPT_NO_SET, NULL },
    { "count", OPT_UINT, offsetof(struct test_opts, count), OPT_NO_SET, NULL },
    { "color", OPT_ENUM, offsetof(struct test_opts, color),
      offsetof(struct test_opts, color_set), color_names },
    { "other", OPT_STRING, offsetof(struct test_opts, other), OPT_NO_SET, NULL },
    { NULL },
};

START_TEST(test_opts_parse)
{
    struct test_opts o = { .color = COLOR_GREEN, .count = 7 };
    struct error *err = NULL;
    ck_assert_int_eq(opts_parse("disk,,1.img,flag=off,size=1.5M,color=blue",
                                "name", test_fields, &o, &err), 0);
    ck_assert_ptr_null(err);
    ck_assert_str_eq(o.name, "disk,1.img");
    ck_assert(!o.flag);
    ck_assert(o.flag_set);
    ck_assert_uint_eq(o.size, 1572864);
    ck_assert_uint_eq(o.count, 7);          /* untouched default */
    ck_assert_int_eq(o.color, COLOR_BLUE);
    ck_assert(o.color_set);
    ck_assert_ptr_null(o.other);
    opts_free(test_fields, &o);
    ck_assert_ptr_null(o.name);

    struct test_opts p = { 0 };
    ck_assert_int_eq(opts_parse("count=0x20,flag=yes,color=red", NULL,
                                test_fields, &p, &err), 0);
    ck_assert_uint_eq(p.count, 32);
    ck_assert(p.flag && p.flag_set);
    ck_assert_int_eq(p.color, COLOR_RED);
    ck_assert(p.color_set);
    ck_assert_ptr_null(p.name);
    opts_free(test_fields, &p);

    /* Nothing given: nothing set. */
    struct test_opts q = { 0 };
    ck_assert_int_eq(opts_parse("", NULL, test_fields, &q, &err), 0);
    ck_assert(!q.flag_set && !q.color_set);
    opts_free(test_fields, &q);
}
END_TEST

static void parse_err(const char *str, const char *implied, const char *msg)
{
    struct test_opts o = { 0 };
    struct error *err = NULL;
    ck_assert_msg(opts_parse(str, implied, test_fields, &o, &err) == -EINVAL,
                  "'%s' accepted", str);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err->msg, msg);
    error_free(err);
    opts_free(test_fields, &o);      /* frees what was set before the error */
}

START_TEST(test_opts_errors)
{
    parse_err("bogus=1", NULL, "Invalid parameter 'bogus'");
    parse_err("name=a,Flag=on", NULL, "Invalid parameter 'Flag'");
    parse_err("flag=1", NULL, "Parameter 'flag' expects 'on' or 'off'");
    parse_err("flag=", NULL, "Parameter 'flag' expects 'on' or 'off'");
    parse_err("size=1X", NULL, "Parameter 'size' expects a size (e.g. 64K, 1G): '1X'");
    parse_err("size=-1", NULL, "Parameter 'size' expects a size (e.g. 64K, 1G): '-1'");
    parse_err("size=16E", NULL, "Parameter 'size' expects a size (e.g. 64K, 1G): '16E'");
    parse_err("size=", NULL, "Parameter 'size' expects a size (e.g. 64K, 1G): ''");
    parse_err("count=ten", NULL, "Parameter 'count' expects a number: 'ten'");
    parse_err("count=-3", NULL, "Parameter 'count' expects a number: '-3'");
    parse_err("color=Red", NULL,
              "Parameter 'color' expects one of red, green, blue: 'Red'");
    parse_err("color=", NULL, "Parameter 'color' expects one of red, green, blue: ''");
    parse_err("name=a,name=b", NULL, "Parameter 'name' given twice");
    parse_err("x.img,name=b", "name", "Parameter 'name' given twice");
    parse_err("flag=on,size=1K,flag=off", NULL, "Parameter 'flag' given twice");
    parse_err("name=a,other=b,bad=c", NULL, "Invalid parameter 'bad'");
    parse_err("x.img", NULL, "Expected '=' after parameter 'x.img'");
}
END_TEST

START_TEST(test_opts_apply_rest)
{
    struct kvlist kv, rest;
    struct error *err = NULL;
    ck_assert_int_eq(opts_split("name=n,file.driver=file,flag=on,cache.direct=on",
                                NULL, &kv, &err), 0);
    struct test_opts o = { 0 };
    ck_assert_int_eq(opts_apply(&kv, test_fields, &o, &rest, &err), 0);
    ck_assert_ptr_null(err);
    ck_assert_str_eq(o.name, "n");
    ck_assert(o.flag);
    ck_assert_uint_eq(rest.n, 2);
    ck_assert_str_eq(rest.v[0].key, "file.driver");
    ck_assert_str_eq(rest.v[0].value, "file");
    ck_assert_str_eq(rest.v[1].key, "cache.direct");
    ck_assert_str_eq(rest.v[1].value, "on");
    kvlist_free(&rest);
    opts_free(test_fields, &o);

    /* Without `rest`, the same list fails on the first unknown key. */
    struct test_opts p = { 0 };
    ck_assert_int_eq(opts_apply(&kv, test_fields, &p, NULL, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "Invalid parameter 'file.driver'");
    error_freep(&err);
    opts_free(test_fields, &p);

    /* A failure after unknown keys leaves `rest` empty. */
    struct kvlist kv2;
    ck_assert_int_eq(opts_split("zz=1,flag=maybe", NULL, &kv2, &err), 0);
    struct test_opts q = { 0 };
    ck_assert_int_eq(opts_apply(&kv2, test_fields, &q, &rest, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "Parameter 'flag' expects 'on' or 'off'");
    ck_assert_uint_eq(rest.n, 0);
    ck_assert_ptr_null(rest.v);
    error_freep(&err);
    opts_free(test_fields, &q);
    kvlist_free(&kv2);
    kvlist_free(&kv);

    /* A NULL errp is allowed. */
    struct test_opts r = { 0 };
    ck_assert_int_eq(opts_parse("nope=1", NULL, test_fields, &r, NULL), -EINVAL);
    opts_free(test_fields, &r);
}
END_TEST

static Suite *opts_suite(void)
{
    Suite *s = suite_create("util-opts");
    TCase *tc = tcase_create("split");
    tcase_add_test(tc, test_split);
    tcase_add_test(tc, test_split_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("scalar");
    tcase_add_test(tc, test_parse_bool);
    tcase_add_test(tc, test_parse_uint);
    tcase_add_test(tc, test_parse_size);
    suite_add_tcase(s, tc);
    tc = tcase_create("struct");
    tcase_add_test(tc, test_opts_parse);
    tcase_add_test(tc, test_opts_errors);
    tcase_add_test(tc, test_opts_apply_rest);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(opts_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
