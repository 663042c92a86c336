/*
 * tests/unit/test-xen-config.c — the pure parts of xen/: libxl's devid
 * formula, backend `mode` and `params`, and xl's disk spec syntax with its
 * exact error messages. Xenstore itself is exercised by tests/interop/xen-*.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xen/xen.h"

START_TEST(devid_formula)
{
    static const struct { const char *vdev; int devid; } cases[] = {
        { "hda", 768 }, { "hdb", 832 }, { "hdc", 5632 }, { "hdd", 5696 },
        { "hda1", 769 }, { "hdc63", 5632 + 63 },
        { "sda", 2048 }, { "sdb3", 2048 + 16 + 3 },
        { "xvda", 51712 }, { "xvdb", 51728 }, { "xvdq", 268439552 },
        { "xvdaa", (1 << 28) | (26 << 8) }, { "xvda16", (1 << 28) | 16 },
        { "vda", 254 << 8 }, { "vdb", (254 << 8) | 16 },
        { "768", 768 }, { "51712", 51712 },
        { "hde", -EINVAL }, { "hd", -EINVAL }, { "hda64", -EINVAL },
        { "hda01", -EINVAL }, { "sdq", -EINVAL }, { "vdq", -EINVAL },
        { "", -EINVAL }, { "xyz", -EINVAL }, { "12a", -EINVAL }, { "hdA", -EINVAL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(xen_vdev_devid(cases[i].vdev, NULL, NULL) == cases[i].devid,
                      "%s: got %d want %d", cases[i].vdev,
                      xen_vdev_devid(cases[i].vdev, NULL, NULL), cases[i].devid);
    int disk, part;
    ck_assert_int_eq(xen_vdev_devid("hdd", &disk, &part), 5696);
    ck_assert_int_eq(disk, 3);
    ck_assert_int_eq(part, 0);
}
END_TEST

START_TEST(mode_values)
{
    enum disk_access a;
    bool nolock;
    struct error *err = NULL;

    ck_assert_int_eq(xen_parse_mode("r", &a, &nolock, &err), 0);
    ck_assert_int_eq(a, DISK_ACCESS_RO_FORCED);
    ck_assert(!nolock);
    ck_assert_int_eq(xen_parse_mode("w", &a, &nolock, &err), 0);
    ck_assert_int_eq(a, DISK_ACCESS_RW);
    ck_assert(!nolock);
    ck_assert_int_eq(xen_parse_mode("w!", &a, &nolock, &err), 0);
    ck_assert_int_eq(a, DISK_ACCESS_RW);
    ck_assert(nolock);
    ck_assert_ptr_null(err);

    ck_assert_int_eq(xen_parse_mode(NULL, &a, &nolock, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "backend has no 'mode' key; a disk is never "
                     "writable by default");
    error_free(err);
    err = NULL;
    static const char *const bad[] = { "rw", "", "W", "ro", "w!!", "r ", "wr" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char want[200];

        ck_assert_int_eq(xen_parse_mode(bad[i], &a, &nolock, &err), -EINVAL);
        snprintf(want, sizeof(want), "unrecognised mode '%s' (expected r, w or "
                 "w!); a disk is never writable by default", bad[i]);
        ck_assert_str_eq(err->msg, want);
        error_free(err);
        err = NULL;
    }
}
END_TEST

static void check_params(const char *params, const char *fmt, const char *path)
{
    char *f, *p;
    struct error *err = NULL;

    ck_assert_int_eq(xen_parse_params(params, &f, &p, &err), 0);
    if (fmt)
        ck_assert_str_eq(f, fmt);
    else
        ck_assert_ptr_null(f);
    ck_assert_str_eq(p, path);
    free(f);
    free(p);
}

START_TEST(params_values)
{
    check_params("aio:/img/a.raw", "raw", "/img/a.raw");
    check_params("qcow2:/img/a.qcow2", "qcow2", "/img/a.qcow2");
    check_params("raw:/x", "raw", "/x");
    check_params("file:/x", "raw", "/x");
    check_params("phy:/dev/vg/lv", "raw", "/dev/vg/lv");
    check_params("tap:qcow2:/x", "qcow2", "/x");
    check_params("tap2:/x", NULL, "/x");
    check_params("/x", NULL, "/x");
    check_params("/dir:with:colons", NULL, "/dir:with:colons");
    check_params("qcow2:/a:b", "qcow2", "/a:b");
    check_params("", NULL, "");
    check_params("aio:", "raw", "");

    char *f, *p;
    struct error *err = NULL;
    ck_assert_int_eq(xen_parse_params("nbd:host:1234", &f, &p, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "unknown format prefix 'nbd' in params 'nbd:host:1234'");
    error_free(err);
}
END_TEST

static struct xen_xl_disk parse_ok(const char *spec)
{
    struct xen_xl_disk d;
    struct error *err = NULL;
    const char *parts[] = { spec };

    ck_assert_msg(xen_xl_disk_parse(parts, 1, "command line", &d, &err) == 0,
                  "%s: %s", spec, err ? err->msg : "?");
    return d;
}

static void parse_fails(const char *spec, const char *msg)
{
    struct xen_xl_disk d;
    struct error *err = NULL;
    const char *parts[] = { spec };
    char want[512];

    ck_assert_int_eq(xen_xl_disk_parse(parts, 1, "command line", &d, &err), -EINVAL);
    snprintf(want, sizeof(want),
             "command line: config parsing error in disk specification: %s in `%s'",
             msg, spec);
    ck_assert_str_eq(err->msg, want);
    error_free(err);
}

START_TEST(xl_equivalent_forms)
{
    /* the four equivalent spellings from xl-disk-configuration */
    static const char *const hd[] = {
        "/dev/vg/guest-volume,,hda",
        "/dev/vg/guest-volume,raw,hda,rw",
        "format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume",
        "raw:/dev/vg/guest-volume,hda,w",
    };
    for (size_t i = 0; i < 4; i++) {
        struct xen_xl_disk d = parse_ok(hd[i]);

        ck_assert_str_eq(d.target, "/dev/vg/guest-volume");
        ck_assert_str_eq(d.vdev, "hda");
        ck_assert_str_eq(d.format, "raw");
        ck_assert(d.readwrite);
        ck_assert(!d.is_cdrom);
        xen_xl_disk_free(&d);
    }
    static const char *const cd[] = {
        "/root/image.iso,,hdc,cdrom",
        "/root/image.iso,,hdc,devtype=cdrom",
        "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
        "raw:/root/image.iso,hdc:cdrom,ro",
    };
    for (size_t i = 0; i < 4; i++) {
        struct xen_xl_disk d = parse_ok(cd[i]);

        ck_assert_str_eq(d.target, "/root/image.iso");
        ck_assert_str_eq(d.vdev, "hdc");
        ck_assert(!d.readwrite);
        ck_assert(d.is_cdrom && d.removable);
        xen_xl_disk_free(&d);
    }
}
END_TEST

START_TEST(xl_other_forms)
{
    struct xen_xl_disk d = parse_ok("/img/a.qcow2,qcow2,hdb,r");
    ck_assert_str_eq(d.format, "qcow2");
    ck_assert(!d.readwrite);
    xen_xl_disk_free(&d);

    d = parse_ok(",,hdc,cdrom");
    ck_assert_str_eq(d.format, "empty");
    ck_assert_str_eq(d.target, "");
    xen_xl_disk_free(&d);

    d = parse_ok("vdev=hdc,devtype=cdrom");
    ck_assert_ptr_null(d.target);
    ck_assert_str_eq(d.format, "empty");
    xen_xl_disk_free(&d);

    d = parse_ok("/x,raw,xvda,w,specification=virtio");
    ck_assert_int_eq(d.specification, XEN_XL_SPEC_VIRTIO);
    xen_xl_disk_free(&d);

    d = parse_ok("/x,,hda,discard");
    ck_assert_int_eq(d.discard_enable, 1);
    xen_xl_disk_free(&d);
    d = parse_ok("/x,,hda,no-discard");
    ck_assert_int_eq(d.discard_enable, 0);
    xen_xl_disk_free(&d);
    d = parse_ok("/x,,hda");
    ck_assert_int_eq(d.discard_enable, -1);
    xen_xl_disk_free(&d);

    d = parse_ok("vdev=hda,target=/a,b,c,");
    ck_assert_str_eq(d.target, "/a,b,c");
    xen_xl_disk_free(&d);

    d = parse_ok("phy:/dev/sdb,hdb,r");
    ck_assert_str_eq(d.target, "/dev/sdb");
    ck_assert_str_eq(d.vdev, "hdb");
    ck_assert(!d.readwrite);
    xen_xl_disk_free(&d);

    /* xl block-attach passes several words: they read as one spec */
    const char *parts[] = { "/img/x", "raw", "hdb", "ro" };
    struct error *err = NULL;
    ck_assert_int_eq(xen_xl_disk_parse(parts, 4, "command line", &d, &err), 0);
    ck_assert_str_eq(d.vdev, "hdb");
    ck_assert(!d.readwrite);
    xen_xl_disk_free(&d);
}
END_TEST

START_TEST(xl_errors)
{
    parse_fails("/x,raw,hda,xx", "unknown value for access: near `xx'");
    parse_fails("access=maybe,vdev=hda,target=/x", "unknown value for access: near `maybe'");
    parse_fails("/x,qcow3,hda", "unknown value for format: near `qcow3'");
    parse_fails("/x", "no vdev specified");
    parse_fails("vdev=hda", "no target specified (and device not removable)");
    parse_fails("foo=bar,/x,,hda", "unknown parameter: near `foo=bar'");
    parse_fails("/x,raw,hda,w,extra", "too many positional parameters: near `extra'");
    parse_fails("devtype=floppy,vdev=hda,target=/x", "unknown value for type: near `devtype=floppy'");
    parse_fails("specification=scsi,vdev=hda,target=/x", "unknown value for specification: near `scsi'");
    parse_fails("backendtype=nfs,vdev=hda,target=/x", "unknown value for backendtype: near `nfs'");
    parse_fails("vdev=hda,vdev=hdb,target=/x", "vdev respecified: near `hdb'");
    parse_fails("xyz:/x,hda", "unknown deprecated disk prefix: near `xyz:'");
    parse_fails("format=raw,format=qcow2,vdev=hda,target=/x", "format respecified: near `qcow2'");
    parse_fails(",,hdc:floppy", "unknown deprecated type: near `floppy'");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("xen-config");
    TCase *tc = tcase_create("parse");

    tcase_add_test(tc, devid_formula);
    tcase_add_test(tc, mode_values);
    tcase_add_test(tc, params_values);
    tcase_add_test(tc, xl_equivalent_forms);
    tcase_add_test(tc, xl_other_forms);
    tcase_add_test(tc, xl_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
