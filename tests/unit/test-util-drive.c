/*
 * tests/unit/test-util-drive.c — `-drive` strings into struct disk_spec:
 * every key, the access-mode rules, IDE/virtio slots, and every error.
 */
#include "util/util.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct disk_spec parse_ok(const char *str)
{
    struct disk_spec s;
    struct error *err = NULL;
    int ret = disk_spec_parse_drive(str, &s, &err);
    ck_assert_msg(ret == 0, "'%s': %s", str, err ? err->msg : "?");
    ck_assert_ptr_null(err);
    return s;
}

static void parse_err(const char *str, const char *msg)
{
    struct disk_spec s;
    struct error *err = NULL;
    ck_assert_msg(disk_spec_parse_drive(str, &s, &err) == -EINVAL, "'%s' accepted", str);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err->msg, msg);
    /* Left as after disk_spec_init. */
    ck_assert_ptr_null(s.file);
    ck_assert_ptr_null(s.format);
    ck_assert_ptr_null(s.id);
    ck_assert_ptr_null(s.serial);
    ck_assert_int_eq(s.index, -1);
    error_free(err);
}

START_TEST(test_defaults)
{
    struct disk_spec s;
    disk_spec_init(&s);
    ck_assert_ptr_null(s.file);
    ck_assert_int_eq(s.iface, DISK_IF_IDE);
    ck_assert_int_eq(s.index, -1);
    ck_assert_int_eq(s.bus, -1);
    ck_assert_int_eq(s.unit, -1);
    ck_assert_int_eq(s.media, DISK_MEDIA_DISK);
    ck_assert_int_eq(s.access, DISK_ACCESS_RW);
    ck_assert_int_eq(s.cache, CACHE_WRITEBACK);
    ck_assert_int_eq(s.discard, DISCARD_IGNORE);
    ck_assert_int_eq(s.detect_zeroes, DETECT_ZEROES_OFF);
    ck_assert_int_eq(s.werror, ERROR_ACTION_ENOSPC);
    ck_assert_int_eq(s.rerror, ERROR_ACTION_REPORT);
    ck_assert_uint_eq(s.num_queues, 0);
    disk_spec_free(&s);
    disk_spec_free(&s);         /* idempotent */

    s = parse_ok("file=d.img");
    ck_assert_str_eq(s.file, "d.img");
    ck_assert_ptr_null(s.format);
    ck_assert_int_eq(s.iface, DISK_IF_IDE);
    ck_assert_int_eq(s.access, DISK_ACCESS_RW);
    ck_assert_int_eq(s.werror, ERROR_ACTION_ENOSPC);
    ck_assert_int_eq(s.rerror, ERROR_ACTION_REPORT);
    ck_assert_int_eq(s.index, -1);      /* assigned later */
    ck_assert_ptr_null(s.id);
    disk_spec_free(&s);
}
END_TEST

START_TEST(test_all_keys)
{
    struct disk_spec s = parse_ok(
        "file=/x/a,,b.qcow2,format=qcow2,if=ide,index=3,media=disk,readonly=off,"
        "auto-read-only=off,snapshot=off,cache=none,werror=stop,rerror=ignore,"
        "discard=unmap,detect-zeroes=unmap,serial=SN 1,id=disk0");
    ck_assert_str_eq(s.file, "/x/a,b.qcow2");
    ck_assert_str_eq(s.format, "qcow2");
    ck_assert_int_eq(s.iface, DISK_IF_IDE);
    ck_assert_int_eq(s.index, 3);
    ck_assert_int_eq(s.bus, 1);
    ck_assert_int_eq(s.unit, 1);
    ck_assert_int_eq(s.media, DISK_MEDIA_DISK);
    ck_assert_int_eq(s.access, DISK_ACCESS_RW);
    ck_assert_int_eq(s.cache, CACHE_NONE);
    ck_assert_int_eq(s.werror, ERROR_ACTION_STOP);
    ck_assert_int_eq(s.rerror, ERROR_ACTION_IGNORE);
    ck_assert_int_eq(s.discard, DISCARD_UNMAP);
    ck_assert_int_eq(s.detect_zeroes, DETECT_ZEROES_UNMAP);
    ck_assert_str_eq(s.serial, "SN 1");
    ck_assert_str_eq(s.id, "disk0");
    disk_spec_free(&s);

    s = parse_ok("file=v.img,if=virtio,num-queues=4,format=raw");
    ck_assert_int_eq(s.iface, DISK_IF_VIRTIO);
    ck_assert_uint_eq(s.num_queues, 4);
    disk_spec_free(&s);
}
END_TEST

START_TEST(test_enum_values)
{
    static const struct { const char *v; enum cache_mode m; } caches[] = {
        { "writeback", CACHE_WRITEBACK }, { "none", CACHE_NONE },
        { "writethrough", CACHE_WRITETHROUGH }, { "directsync", CACHE_DIRECTSYNC },
        { "unsafe", CACHE_UNSAFE },
    };
    char buf[128];
    for (size_t i = 0; i < ARRAY_SIZE(caches); i++) {
        snprintf(buf, sizeof(buf), "file=a,cache=%s", caches[i].v);
        struct disk_spec s = parse_ok(buf);
        ck_assert_int_eq(s.cache, caches[i].m);
        ck_assert_str_eq(cache_mode_names[s.cache], caches[i].v);
        disk_spec_free(&s);
    }
    static const struct { const char *v; enum discard_mode m; } discards[] = {
        { "ignore", DISCARD_IGNORE }, { "off", DISCARD_IGNORE },
        { "unmap", DISCARD_UNMAP }, { "on", DISCARD_UNMAP },
    };
    for (size_t i = 0; i < ARRAY_SIZE(discards); i++) {
        snprintf(buf, sizeof(buf), "file=a,discard=%s", discards[i].v);
        struct disk_spec s = parse_ok(buf);
        ck_assert_int_eq(s.discard, discards[i].m);
        disk_spec_free(&s);
    }
    ck_assert_str_eq(discard_mode_names[DISCARD_IGNORE], "ignore");
    ck_assert_str_eq(discard_mode_names[DISCARD_UNMAP], "unmap");
    static const struct { const char *v; enum detect_zeroes_mode m; } dz[] = {
        { "off", DETECT_ZEROES_OFF }, { "on", DETECT_ZEROES_ON },
        { "unmap", DETECT_ZEROES_UNMAP },
    };
    for (size_t i = 0; i < ARRAY_SIZE(dz); i++) {
        snprintf(buf, sizeof(buf), "file=a,detect-zeroes=%s", dz[i].v);
        struct disk_spec s = parse_ok(buf);
        ck_assert_int_eq(s.detect_zeroes, dz[i].m);
        ck_assert_str_eq(detect_zeroes_names[s.detect_zeroes], dz[i].v);
        disk_spec_free(&s);
    }
    static const struct { const char *v; enum error_action a; } acts[] = {
        { "report", ERROR_ACTION_REPORT }, { "ignore", ERROR_ACTION_IGNORE },
        { "stop", ERROR_ACTION_STOP }, { "enospc", ERROR_ACTION_ENOSPC },
    };
    for (size_t i = 0; i < ARRAY_SIZE(acts); i++) {
        snprintf(buf, sizeof(buf), "file=a,werror=%s", acts[i].v);
        struct disk_spec s = parse_ok(buf);
        ck_assert_int_eq(s.werror, acts[i].a);
        ck_assert_str_eq(error_action_names[s.werror], acts[i].v);
        disk_spec_free(&s);
        if (acts[i].a == ERROR_ACTION_ENOSPC) {
            continue;
        }
        snprintf(buf, sizeof(buf), "file=a,rerror=%s", acts[i].v);
        s = parse_ok(buf);
        ck_assert_int_eq(s.rerror, acts[i].a);
        disk_spec_free(&s);
    }
    ck_assert_ptr_null(cache_mode_names[5]);
    ck_assert_ptr_null(discard_mode_names[4]);
    ck_assert_ptr_null(detect_zeroes_names[3]);
    ck_assert_ptr_null(error_action_names[4]);
}
END_TEST

static enum disk_access access_of(const char *str)
{
    struct disk_spec s = parse_ok(str);
    enum disk_access a = s.access;
    disk_spec_free(&s);
    return a;
}

START_TEST(test_access)
{
    ck_assert_int_eq(access_of("file=a"), DISK_ACCESS_RW);
    ck_assert_int_eq(access_of("file=a,readonly=on"), DISK_ACCESS_RO_FORCED);
    ck_assert_int_eq(access_of("file=a,read-only=on"), DISK_ACCESS_RO_FORCED);
    ck_assert_int_eq(access_of("file=a,readonly=yes"), DISK_ACCESS_RO_FORCED);
    ck_assert_int_eq(access_of("file=a,read-only=off"), DISK_ACCESS_RW);
    ck_assert_int_eq(access_of("file=a,auto-read-only=on"), DISK_ACCESS_AUTO);
    ck_assert_int_eq(access_of("file=a,snapshot=on"), DISK_ACCESS_SNAPSHOT);
    ck_assert_int_eq(access_of("file=a,snapshot=on,auto-read-only=on"),
                     DISK_ACCESS_SNAPSHOT);
    ck_assert_int_eq(access_of("file=a,readonly=on,snapshot=on"), DISK_ACCESS_RO_FORCED);
    ck_assert_int_eq(access_of("file=a,read-only=on,auto-read-only=on"),
                     DISK_ACCESS_RO_FORCED);
    ck_assert_int_eq(access_of("file=a,read-only=off,auto-read-only=on"),
                     DISK_ACCESS_AUTO);
    /* CD media is read-only whatever else is said, as in QEMU. */
    ck_assert_int_eq(access_of("file=a.iso,media=cdrom"), DISK_ACCESS_RO_FORCED);
    ck_assert_int_eq(access_of("file=a.iso,media=cdrom,readonly=off"),
                     DISK_ACCESS_RO_FORCED);
    ck_assert_int_eq(access_of("file=a.iso,media=cdrom,snapshot=on"),
                     DISK_ACCESS_RO_FORCED);

    ck_assert_str_eq(disk_access_name(DISK_ACCESS_RW), "rw");
    ck_assert_str_eq(disk_access_name(DISK_ACCESS_RO_FORCED), "ro-forced");
    ck_assert_str_eq(disk_access_name(DISK_ACCESS_AUTO), "auto");
    ck_assert_str_eq(disk_access_name(DISK_ACCESS_SNAPSHOT), "snapshot");
}
END_TEST

START_TEST(test_cdrom_empty)
{
    struct disk_spec s = parse_ok("media=cdrom");
    ck_assert_ptr_null(s.file);
    ck_assert_int_eq(s.media, DISK_MEDIA_CDROM);
    disk_spec_free(&s);
    s = parse_ok("file=,media=cdrom,index=2");
    ck_assert_ptr_null(s.file);
    ck_assert_int_eq(s.bus, 1);
    ck_assert_int_eq(s.unit, 0);
    disk_spec_free(&s);
}
END_TEST

START_TEST(test_ide_slots)
{
    for (int i = 0; i < 4; i++) {
        char buf[64];
        snprintf(buf, sizeof(buf), "file=a,index=%d", i);
        struct disk_spec s = parse_ok(buf);
        ck_assert_int_eq(s.bus, i / 2);
        ck_assert_int_eq(s.unit, i % 2);
        ck_assert_int_eq(s.index, i);
        disk_spec_free(&s);
        snprintf(buf, sizeof(buf), "file=a,bus=%d,unit=%d", i / 2, i % 2);
        s = parse_ok(buf);
        ck_assert_int_eq(s.index, i);
        disk_spec_free(&s);
    }
    struct disk_spec s = parse_ok("file=a,unit=1");      /* bus 0 implied */
    ck_assert_int_eq(s.bus, 0);
    ck_assert_int_eq(s.index, 1);
    disk_spec_free(&s);
    s = parse_ok("file=a,bus=1");                        /* unit assigned later */
    ck_assert_int_eq(s.bus, 1);
    ck_assert_int_eq(s.unit, -1);
    ck_assert_int_eq(s.index, -1);
    disk_spec_free(&s);
    s = parse_ok("file=a,index=0x2");
    ck_assert_int_eq(s.index, 2);
    disk_spec_free(&s);
}
END_TEST

START_TEST(test_virtio_slots)
{
    struct disk_spec s = parse_ok("file=a,if=virtio,index=5");
    ck_assert_int_eq(s.bus, 0);
    ck_assert_int_eq(s.unit, 5);
    disk_spec_free(&s);
    s = parse_ok("file=a,if=virtio,unit=3");
    ck_assert_int_eq(s.bus, 0);
    ck_assert_int_eq(s.index, 3);
    disk_spec_free(&s);
    s = parse_ok("file=a,if=virtio,bus=0,unit=31");
    ck_assert_int_eq(s.index, 31);
    disk_spec_free(&s);
}
END_TEST

START_TEST(test_errors)
{
    /* Interface and media. */
    parse_err("file=a,if=scsi", "Unsupported interface 'scsi'");
    parse_err("file=a,if=floppy", "Unsupported interface 'floppy'");
    parse_err("file=a,if=none", "Unsupported interface 'none'");
    parse_err("file=a,if=IDE", "Unsupported interface 'IDE'");
    parse_err("file=a,if=", "Unsupported interface ''");
    parse_err("file=a,media=floppy", "'floppy' invalid media");
    parse_err("file=a,if=virtio,media=cdrom", "media=cdrom is not supported with if=virtio");
    parse_err("if=ide", "Device needs media, but drive is empty");
    parse_err("file=,media=disk", "Device needs media, but drive is empty");

    /* Slots: the bad value is named. */
    parse_err("file=a,index=4", "index 4 too big (max is 3)");
    parse_err("file=a,index=99999999999", "index 99999999999 too big (max is 3)");
    parse_err("file=a,index=18446744073709551615",
              "index 18446744073709551615 too big (max is 3)");
    parse_err("file=a,bus=2", "bus 2 too big (max is 1)");
    parse_err("file=a,bus=2,unit=0", "bus 2 too big (max is 1)");
    parse_err("file=a,unit=2", "unit 2 too big (max is 1)");
    parse_err("file=a,bus=1,unit=7", "unit 7 too big (max is 1)");
    parse_err("file=a,index=1,bus=0", "index cannot be used with bus and unit");
    parse_err("file=a,index=1,unit=0", "index cannot be used with bus and unit");
    parse_err("file=a,index=9,unit=9", "index cannot be used with bus and unit");
    parse_err("file=a,if=virtio,index=32", "index 32 too big (max is 31)");
    parse_err("file=a,if=virtio,bus=1", "bus 1 too big (max is 0)");
    parse_err("file=a,if=virtio,unit=40", "unit 40 too big (max is 31)");
    parse_err("file=a,index=-1", "Parameter 'index' expects a number: '-1'");
    parse_err("file=a,index=x", "Parameter 'index' expects a number: 'x'");
    parse_err("file=a,bus=", "Parameter 'bus' expects a number: ''");
    parse_err("file=a,unit=1.0", "Parameter 'unit' expects a number: '1.0'");

    /* Access keys. */
    parse_err("file=a,readonly=on,read-only=on",
              "'read-only' and its alias 'readonly' can't be used at the same time");
    parse_err("file=a,read-only=off,readonly=off",
              "'read-only' and its alias 'readonly' can't be used at the same time");
    parse_err("file=a,readonly=1", "Parameter 'readonly' expects 'on' or 'off'");
    parse_err("file=a,read-only=ro", "Parameter 'read-only' expects 'on' or 'off'");
    parse_err("file=a,snapshot=maybe", "Parameter 'snapshot' expects 'on' or 'off'");
    parse_err("file=a,auto-read-only=", "Parameter 'auto-read-only' expects 'on' or 'off'");

    /* Enumerations. */
    parse_err("file=a,cache=foo", "Parameter 'cache' expects one of writeback, none, "
              "writethrough, directsync, unsafe: 'foo'");
    parse_err("file=a,discard=trim",
              "Parameter 'discard' expects one of ignore, unmap, off, on: 'trim'");
    parse_err("file=a,detect-zeroes=yes",
              "Parameter 'detect-zeroes' expects one of off, on, unmap: 'yes'");
    parse_err("file=a,werror=foo", "'foo' invalid write error action");
    parse_err("file=a,werror=", "'' invalid write error action");
    parse_err("file=a,rerror=enospc", "'enospc' invalid read error action");
    parse_err("file=a,rerror=Report", "'Report' invalid read error action");

    /* Others. */
    parse_err("file=a,id=a b", "Parameter 'id' expects an identifier");
    parse_err("file=a,id=0disk", "Parameter 'id' expects an identifier");
    parse_err("file=a,id=", "Parameter 'id' expects an identifier");
    parse_err("file=a,num-queues=2", "num-queues is not supported by this bus type");
    parse_err("file=a,if=virtio,num-queues=0", "num-queues 0 out of range (1 to 1024)");
    parse_err("file=a,if=virtio,num-queues=1025", "num-queues 1025 out of range (1 to 1024)");
    parse_err("file=a,if=virtio,num-queues=many",
              "Parameter 'num-queues' expects a number: 'many'");
    parse_err("file=a,aio=native", "Invalid parameter 'aio'");
    parse_err("file=a,file=b", "Parameter 'file' given twice");
    parse_err("file=a,index=0,index=1", "Parameter 'index' given twice");
    parse_err("a.img", "Expected '=' after parameter 'a.img'");
    parse_err("file=a,readonly", "Expected '=' after parameter 'readonly'");
}
END_TEST

START_TEST(test_resolve)
{
    struct disk_spec s;
    struct error *err = NULL;
    disk_spec_init(&s);
    s.index = 2;
    ck_assert_int_eq(disk_spec_resolve(&s, &err), 0);
    ck_assert_int_eq(s.bus, 1);
    ck_assert_int_eq(s.unit, 0);
    /* Resolving again changes nothing. */
    ck_assert_int_eq(disk_spec_resolve(&s, &err), 0);
    ck_assert_int_eq(s.index, 2);
    ck_assert_int_eq(s.bus, 1);
    ck_assert_int_eq(s.unit, 0);
    s.unit = 1;     /* but a contradiction is refused */
    ck_assert_int_eq(disk_spec_resolve(&s, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "index cannot be used with bus and unit");
    error_freep(&err);
    disk_spec_init(&s);
    s.bus = 1;
    s.unit = 1;
    ck_assert_int_eq(disk_spec_resolve(&s, &err), 0);
    ck_assert_int_eq(s.index, 3);
    ck_assert_int_eq(disk_spec_resolve(&s, &err), 0);
    ck_assert_int_eq(s.index, 3);
    disk_spec_init(&s);
    s.iface = DISK_IF_VIRTIO;
    ck_assert_int_eq(disk_spec_resolve(&s, &err), 0);   /* all unset is fine */
    ck_assert_int_eq(s.index, -1);

    disk_spec_init(&s);
    s.index = 4;
    ck_assert_int_eq(disk_spec_resolve(&s, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "index 4 too big (max is 3)");
    error_freep(&err);
    disk_spec_init(&s);
    s.index = -5;
    ck_assert_int_eq(disk_spec_resolve(&s, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "negative drive address (index=-5, bus=-1, unit=-1)");
    error_freep(&err);
    disk_spec_init(&s);
    s.unit = 3;
    ck_assert_int_eq(disk_spec_resolve(&s, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "unit 3 too big (max is 1)");
    error_freep(&err);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Slot assignment over a command line                                 */
/* ------------------------------------------------------------------ */

static int assign(const char *const *drives, size_t n, struct disk_spec *specs,
                  struct error **errp)
{
    for (size_t i = 0; i < n; i++) {
        specs[i] = parse_ok(drives[i]);
    }
    return disk_spec_assign_slots(specs, n, errp);
}

static void free_specs(struct disk_spec *specs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        disk_spec_free(&specs[i]);
    }
}

START_TEST(test_assign)
{
    struct disk_spec sp[5];
    struct error *err = NULL;
    static const char *const d1[] = {
        "file=a", "file=b,index=0", /* collides, see below */
    };
    ck_assert_int_eq(assign(d1, 2, sp, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "drive with bus=0, unit=0 (index=0) exists");
    error_freep(&err);
    free_specs(sp, 2);

    static const char *const d2[] = {
        "file=a", "file=b", "media=cdrom", "file=v,if=virtio", "file=w,if=virtio,index=0",
    };
    ck_assert_int_eq(assign(d2, 4, sp, &err), 0);
    ck_assert_int_eq(sp[0].index, 0);
    ck_assert_int_eq(sp[1].index, 1);
    ck_assert_int_eq(sp[2].index, 2);
    ck_assert_int_eq(sp[2].bus, 1);
    ck_assert_int_eq(sp[2].unit, 0);
    ck_assert_int_eq(sp[3].index, 0);
    ck_assert_str_eq(sp[0].id, "ide0-hd0");
    ck_assert_str_eq(sp[1].id, "ide0-hd1");
    ck_assert_str_eq(sp[2].id, "ide1-cd0");
    ck_assert_str_eq(sp[3].id, "virtio0");
    free_specs(sp, 4);
    ck_assert_int_eq(assign(d2, 5, sp, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "drive with bus=0, unit=0 (index=0) exists");
    error_freep(&err);
    free_specs(sp, 5);

    static const char *const d3[] = {
        "file=a,index=0", "file=b,bus=1", "file=c", "file=d,bus=1", "file=e",
    };
    ck_assert_int_eq(assign(d3, 4, sp, &err), 0);
    ck_assert_int_eq(sp[1].index, 2);
    ck_assert_int_eq(sp[2].index, 1);
    ck_assert_int_eq(sp[3].index, 3);
    free_specs(sp, 4);
    ck_assert_int_eq(assign(d3, 5, sp, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "too many IDE drives (max is 4)");
    error_freep(&err);
    free_specs(sp, 5);

    static const char *const d4[] = { "file=a,id=x", "file=b,id=x" };
    ck_assert_int_eq(assign(d4, 2, sp, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "Duplicate ID 'x' for drive");
    error_freep(&err);
    free_specs(sp, 2);

    static const char *const d5[] = { "file=a,id=ide0-hd1", "file=b" };
    ck_assert_int_eq(assign(d5, 2, sp, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "Duplicate ID 'ide0-hd1' for drive");
    error_freep(&err);
    free_specs(sp, 2);

    static const char *const d6[] = { "file=a,bus=1,unit=1", "file=b,index=3" };
    ck_assert_int_eq(assign(d6, 2, sp, &err), -EINVAL);
    ck_assert_str_eq(err->msg, "drive with bus=1, unit=1 (index=3) exists");
    error_freep(&err);
    free_specs(sp, 2);
}
END_TEST

static Suite *drive_suite(void)
{
    Suite *s = suite_create("util-drive");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_all_keys);
    tcase_add_test(tc, test_enum_values);
    tcase_add_test(tc, test_access);
    tcase_add_test(tc, test_cdrom_empty);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("slots");
    tcase_add_test(tc, test_ide_slots);
    tcase_add_test(tc, test_virtio_slots);
    tcase_add_test(tc, test_resolve);
    tcase_add_test(tc, test_assign);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(drive_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
