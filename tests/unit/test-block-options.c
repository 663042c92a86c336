/*
 * tests/unit/test-block-options.c — typed open options: parsing option
 * strings (keys, child keys, booleans, sizes, enumerations), the errors
 * with their exact messages, and options from a drive spec.
 */
#include "tests/unit/block-test.h"

static void parse_ok(const char *str, struct bdrv_open_opts *o)
{
    struct error *err = NULL;
    int r = bdrv_open_opts_parse(str, o, &err);
    ck_assert_msg(r == 0, "parse '%s': %s", str, err ? err->msg : "?");
    ck_assert_ptr_null(err);
}

static void parse_fail(const char *str, const char *msg)
{
    struct bdrv_open_opts o;
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_open_opts_parse(str, &o, &err), -EINVAL);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err->msg, msg);
    error_free(err);
}

START_TEST(test_plain_filename)
{
    struct bdrv_open_opts o;
    parse_ok("/images/disk.raw", &o);
    ck_assert_str_eq(o.filename, "/images/disk.raw");
    ck_assert_ptr_null(o.driver);
    ck_assert(!o.read_only.set);
    ck_assert_int_eq(o.cache, CACHE_WRITEBACK);
    ck_assert_int_eq(o.locking, LOCKING_AUTO);
    bdrv_open_opts_free(&o);
}
END_TEST

START_TEST(test_all_keys)
{
    struct bdrv_open_opts o;
    parse_ok("driver=raw,file.filename=/x,,y,file.locking=off,read-only=on,"
             "auto-read-only=off,force-read-only=on,cache=none,discard=unmap,"
             "detect-zeroes=unmap,locking=on,force-share=on,offset=1M,size=64K,"
             "backing=null", &o);
    ck_assert_str_eq(o.driver, "raw");
    ck_assert_ptr_null(o.filename);
    ck_assert_str_eq(o.file->filename, "/x,y");
    ck_assert_int_eq(o.file->locking, LOCKING_OFF);
    ck_assert(o.read_only.set && o.read_only.value);
    ck_assert(o.auto_read_only.set && !o.auto_read_only.value);
    ck_assert(o.force_read_only);
    ck_assert_int_eq(o.cache, CACHE_NONE);
    ck_assert_int_eq(o.discard, DISCARD_UNMAP);
    ck_assert_int_eq(o.detect_zeroes, DETECT_ZEROES_UNMAP);
    ck_assert_int_eq(o.locking, LOCKING_ON);
    ck_assert(o.force_share);
    ck_assert_uint_eq(o.offset, 1048576);
    ck_assert(o.has_size);
    ck_assert_uint_eq(o.size, 65536);
    ck_assert(o.no_backing);
    bdrv_open_opts_free(&o);

    parse_ok("file=/a.img,cache.direct=on,discard=on,backing.driver=raw", &o);
    ck_assert_str_eq(o.file->filename, "/a.img");
    ck_assert_int_eq(o.cache, CACHE_NONE);
    ck_assert_int_eq(o.discard, DISCARD_UNMAP);
    ck_assert_str_eq(o.backing->driver, "raw");
    bdrv_open_opts_free(&o);

    parse_ok("filename=/a,aio=threads,file.aio=io_uring", &o);
    ck_assert_int_eq(o.aio, AIO_THREADS);
    ck_assert_int_eq(o.file->aio, AIO_IO_URING);
    bdrv_open_opts_free(&o);

    parse_ok("filename=/a,cache=writethrough,cache.direct=on", &o);
    ck_assert_int_eq(o.cache, CACHE_DIRECTSYNC);
    bdrv_open_opts_free(&o);
    parse_ok("filename=/a,cache.no-flush=on", &o);
    ck_assert_int_eq(o.cache, CACHE_UNSAFE);
    bdrv_open_opts_free(&o);
    parse_ok("filename=/a,cache=unsafe,cache.no-flush=off,discard=ignore", &o);
    ck_assert_int_eq(o.cache, CACHE_WRITEBACK);
    ck_assert_int_eq(o.discard, DISCARD_IGNORE);
    bdrv_open_opts_free(&o);
    /* The first element may be the filename. */
    parse_ok("/a.img,read-only=on", &o);
    ck_assert_str_eq(o.filename, "/a.img");
    ck_assert(o.read_only.value);
    bdrv_open_opts_free(&o);
}
END_TEST

START_TEST(test_errors)
{
    parse_fail("filename=/a,colour=blue", "Invalid parameter 'colour'");
    parse_fail("filename=/a,file.colour=blue", "Invalid parameter 'file.colour'");
    parse_fail("filename=/a,read-only=maybe", "Parameter 'read-only' expects 'on' or 'off'");
    parse_fail("filename=/a,size=12Q",
               "Parameter 'size' expects a size (e.g. 64K, 1G): '12Q'");
    parse_fail("filename=/a,offset=-1",
               "Parameter 'offset' expects a size (e.g. 64K, 1G): '-1'");
    parse_fail("filename=/a,cache=fast",
               "Parameter 'cache' expects one of writeback, none, writethrough, "
               "directsync, unsafe: 'fast'");
    parse_fail("filename=/a,locking=maybe",
               "Parameter 'locking' expects one of auto, on, off: 'maybe'");
    parse_fail("filename=/a,discard=trim",
               "Parameter 'discard' expects one of ignore, unmap, off, on: 'trim'");
    parse_fail("filename=/a,detect-zeroes=yes",
               "Parameter 'detect-zeroes' expects one of off, on, unmap: 'yes'");
    parse_fail("filename=/a,aio=native",
               "Parameter 'aio' expects one of auto, threads, io_uring: 'native'");
    parse_fail("filename=/a,read-only=on,read-only=off", "Parameter 'read-only' given twice");
    parse_fail("filename=/a,force-share=on",
               "force-share=on can only be used with read-only images");
    parse_fail("filename=/a,force-share=on,read-only=off",
               "force-share=on can only be used with read-only images");
    parse_fail("filename=/a,force-read-only=on,read-only=off",
               "force-read-only=on conflicts with read-only=off");
}
END_TEST

START_TEST(test_from_spec)
{
    struct disk_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.file = "/d.img";
    spec.access = DISK_ACCESS_SNAPSHOT;
    spec.cache = CACHE_NONE;
    spec.discard = DISCARD_UNMAP;
    spec.detect_zeroes = DETECT_ZEROES_ON;
    struct bdrv_open_opts o;
    struct error *err = NULL;
    ck_assert_int_eq(bdrv_open_opts_from_spec(&spec, &o, &err), 0);
    ck_assert_str_eq(o.filename, "/d.img");
    ck_assert_ptr_null(o.driver);
    ck_assert(o.snapshot);
    ck_assert_int_eq(o.cache, CACHE_NONE);
    ck_assert_int_eq(o.discard, DISCARD_UNMAP);
    ck_assert_int_eq(o.detect_zeroes, DETECT_ZEROES_ON);
    bdrv_open_opts_free(&o);

    spec.file = NULL;
    ck_assert_int_eq(bdrv_open_opts_from_spec(&spec, &o, &err), -ENOMEDIUM);
    ck_assert_str_eq(err->msg, "The drive has no image file");
    error_free(err);
}
END_TEST

static Suite *options_suite(void)
{
    Suite *s = suite_create("block-options");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_plain_filename);
    tcase_add_test(tc, test_all_keys);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_from_spec);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test-block-options", LOG_ERROR);
    return bt_run(options_suite());
}
