/*
 * tests/unit/test-nbd-partition.c — diskdm-nbd's -P lookup against hostile
 * partition tables: GPT headers whose entry LBA wraps round when turned
 * into a byte offset, and MBR/EBR fields pointing past the disk.
 */
#include "tools/nbd/partition.c"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define DISK (1u << 20)

struct pt {
    char dir[64], img[96];
    int fd;
    struct event_loop *loop;
};

static void pt_init(struct pt *t)
{
    struct error *err = NULL;
    strcpy(t->dir, "/tmp/test-nbd-partition.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
    snprintf(t->img, sizeof(t->img), "%s/disk.raw", t->dir);
    t->fd = open(t->img, O_RDWR | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(t->fd, 0);
    ck_assert_int_eq(ftruncate(t->fd, DISK), 0);
    t->loop = ev_loop_new(&err);
    ck_assert_ptr_nonnull(t->loop);
}

static void pt_fini(struct pt *t)
{
    close(t->fd);
    ev_loop_free(t->loop);
    unlink(t->img);
    rmdir(t->dir);
}

static void put(struct pt *t, uint64_t off, const void *p, size_t n)
{
    ck_assert_int_eq(pwrite(t->fd, p, n, (off_t)off), (ssize_t)n);
}

static void put_le(struct pt *t, uint64_t off, uint64_t v, size_t n)
{
    uint8_t b[8];
    for (size_t i = 0; i < n; i++) {
        b[i] = (uint8_t)(v >> (8 * i));
    }
    put(t, off, b, n);
}

/* Partition `num` of the image: the return value, and the error text. */
static int find(struct pt *t, int num, uint64_t *off, uint64_t *size, char *msg)
{
    struct error *err = NULL;
    struct bdrv_open_opts o;
    char opts[160];
    snprintf(opts, sizeof(opts), "driver=raw,file.filename=%s,read-only=on", t->img);
    ck_assert_int_eq(bdrv_open_opts_parse(opts, &o, &err), 0);
    struct blk_backend *blk = blk_open(t->loop, &o, NULL, &err);
    bdrv_open_opts_free(&o);
    ck_assert_ptr_nonnull(blk);
    int rc = nbd_find_partition(blk, num, off, size, &err);
    ck_assert((rc < 0) == (err != NULL));
    strcpy(msg, err ? err->msg : "");
    error_free(err);
    blk_free(blk);
    return rc;
}

/* A protective MBR and a GPT header with entries at `lba`, 128 bytes each. */
static void gpt(struct pt *t, uint64_t lba)
{
    put_le(t, 446 + 4, 0xee, 1);
    put_le(t, 510, 0xaa55, 2);
    put(t, 512, "EFI PART", 8);
    put_le(t, 512 + 72, lba, 8);
    put_le(t, 512 + 80, 4, 4);
    put_le(t, 512 + 84, 128, 4);
}

/* A good entry at the start of the disk, where a wrapped offset lands. */
static void entry_at_zero(struct pt *t)
{
    uint8_t e[128] = { 1 };
    memcpy(e + 32, &(uint64_t){ 64 }, 8);
    memcpy(e + 40, &(uint64_t){ 127 }, 8);
    put(t, 0, e, 48);
}

START_TEST(gpt_entry_lba_wraps)
{
    /* Found while adding fuzz-nbd-partition: 2^55 sectors are 2^64 bytes,
     * so the entries were read from byte 0 of the disk and partition 1
     * came from the MBR's boot code. */
    struct pt t;
    uint64_t off = 0, size = 0;
    char msg[256];
    pt_init(&t);
    entry_at_zero(&t);
    gpt(&t, 1ull << 55);
    ck_assert_int_eq(find(&t, 1, &off, &size, msg), -EINVAL);
    ck_assert_str_eq(msg, "GPT entries lie outside the disk");
    gpt(&t, (1ull << 55) + 2);      /* wraps to just past the header */
    ck_assert_int_eq(find(&t, 1, &off, &size, msg), -EINVAL);
    ck_assert_str_eq(msg, "GPT entries lie outside the disk");
    /* the same entries at a real LBA are found */
    uint8_t e[128] = { 1 };
    memcpy(e + 32, &(uint64_t){ 64 }, 8);
    memcpy(e + 40, &(uint64_t){ 127 }, 8);
    put(&t, 2 * 512, e, sizeof(e));
    gpt(&t, 2);
    ck_assert_int_eq(find(&t, 1, &off, &size, msg), 0);
    ck_assert_uint_eq(off, 64 * 512);
    ck_assert_uint_eq(size, 64 * 512);
    pt_fini(&t);
}
END_TEST

START_TEST(gpt_entry_past_disk)
{
    struct pt t;
    uint64_t off = 0, size = 0;
    char msg[256];
    pt_init(&t);
    gpt(&t, DISK / 512);            /* the sector after the last */
    ck_assert_int_eq(find(&t, 1, &off, &size, msg), -EINVAL);
    ck_assert_str_eq(msg, "GPT entries lie outside the disk");
    gpt(&t, 2);
    ck_assert_int_eq(find(&t, 5, &off, &size, msg), -ENOENT);
    ck_assert_str_eq(msg, "partition 5 not found (the GPT has 4 entries)");
    pt_fini(&t);
}
END_TEST

START_TEST(mbr_partition_past_disk)
{
    struct pt t;
    uint64_t off = 0, size = 0;
    char msg[256];
    pt_init(&t);
    put_le(&t, 510, 0xaa55, 2);
    put_le(&t, 446 + 4, 0x83, 1);
    put_le(&t, 446 + 8, 0xffffffff, 4);
    put_le(&t, 446 + 12, 0xffffffff, 4);
    ck_assert_int_eq(find(&t, 1, &off, &size, msg), -EINVAL);
    ck_assert_str_eq(msg, "partition 1 lies outside the disk");
    /* an extended partition whose chain points past the disk */
    put_le(&t, 446 + 16 + 4, 0x05, 1);
    put_le(&t, 446 + 16 + 8, 0xfffffff0, 4);
    ck_assert_int_eq(find(&t, 5, &off, &size, msg), -ENOENT);
    ck_assert_str_eq(msg, "partition 5 not found");
    pt_fini(&t);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("nbd-partition");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, gpt_entry_lba_wraps);
    tcase_add_test(tc, gpt_entry_past_disk);
    tcase_add_test(tc, mbr_partition_past_disk);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
