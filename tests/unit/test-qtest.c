/*
 * tests/unit/test-qtest.c — the qtest transport (hw/qtest.c): QEMU's reply
 * formats, the error replies for lines QEMU would abort on, line assembly
 * from partial reads, EOF, and IRQ lines ordered before a request's reply.
 */
#include "hw/hw.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
    struct event_loop *loop;
    struct machine *m;
    struct qtest_server *qs;
    struct blk_backend *blk;
    int in_r, in_w;             /* the server's input (stream tests), else -1 */
    int out_r, out_w;           /* the server's replies */
    int closed;                 /* on_close calls */
    char img[64];
};

static void on_close(void *opaque)
{
    ((struct fixture *)opaque)->closed++;
}

static void fx_init(struct fixture *fx, bool stream, bool disk)
{
    struct error *err = NULL;
    int out[2], in[2] = { -1, -1 };
    memset(fx, 0, sizeof(*fx));
    fx->loop = ev_loop_new(&err);
    ck_assert_ptr_nonnull(fx->loop);
    struct machine_config cfg = { .ram_size = 16 << 20 };
    fx->m = machine_new(fx->loop, &cfg, &err);
    ck_assert_msg(fx->m, "machine_new: %s", err ? err->msg : "?");
    if (disk) {
        strcpy(fx->img, "/tmp/test-qtest.XXXXXX");
        int fd = mkstemp(fx->img);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, 1 << 20), 0);
        close(fd);
        char drive[128];
        snprintf(drive, sizeof(drive), "file=%s,format=raw,if=ide,index=0", fx->img);
        struct disk_spec spec;
        struct bdrv_open_opts o;
        ck_assert_int_eq(disk_spec_parse_drive(drive, &spec, &err), 0);
        ck_assert_int_eq(disk_spec_resolve(&spec, &err), 0);
        bdrv_open_opts_init(&o);
        ck_assert_int_eq(bdrv_open_opts_from_spec(&spec, &o, &err), 0);
        struct blk_config bc = { 0 };
        fx->blk = blk_open(fx->loop, &o, &bc, &err);
        ck_assert_msg(fx->blk, "blk_open: %s", err ? err->msg : "?");
        ck_assert_int_eq(machine_attach_disk(fx->m, &spec, fx->blk, &err), 0);
        bdrv_open_opts_free(&o);
        disk_spec_free(&spec);
    }
    ck_assert_int_eq(pipe2(out, O_CLOEXEC | O_NONBLOCK), 0);
    if (stream) {
        ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
    }
    fx->qs = qtest_server_new(fx->m, fx->loop, in[0], out[1], on_close, fx, &err);
    ck_assert_ptr_nonnull(fx->qs);
    fx->in_r = in[0];
    fx->in_w = in[1];
    fx->out_r = out[0];
    fx->out_w = out[1];
}

static void fx_free(struct fixture *fx)
{
    qtest_server_free(fx->qs);
    machine_free(fx->m);
    if (fx->blk) {
        blk_free(fx->blk);
        unlink(fx->img);
    }
    ev_loop_free(fx->loop);
    if (fx->in_r >= 0) {
        close(fx->in_r);
    }
    if (fx->in_w >= 0) {
        close(fx->in_w);
    }
    close(fx->out_w);
    close(fx->out_r);
}

/* Everything the server wrote so far (malloc'd). */
static char *replies(struct fixture *fx)
{
    static const size_t cap = 1 << 20;
    char *buf = malloc(cap);
    size_t n = 0;
    ssize_t r;
    while ((r = read(fx->out_r, buf + n, cap - 1 - n)) > 0) {
        n += r;
    }
    buf[n] = 0;
    return buf;
}

/* Send one line, expect exactly `want` back. */
#define EXPECT(fx, line, want) do {                                      \
        qtest_handle_line((fx)->qs, (line));                             \
        char *got_ = replies(fx);                                        \
        ck_assert_msg(!strcmp(got_, (want)), "'%s': expected '%s', got '%s'", \
                      (line), (want), got_);                             \
        free(got_);                                                      \
    } while (0)

START_TEST(test_formats)
{
    struct fixture fx;
    fx_init(&fx, false, false);
    EXPECT(&fx, "endianness", "OK little\n");
    EXPECT(&fx, "writeb 0x1000 0x1ff", "OK\n");
    EXPECT(&fx, "readb 0x1000", "OK 0x00000000000000ff\n");
    EXPECT(&fx, "writeq 0x1000 0x0123456789abcdef", "OK\n");
    EXPECT(&fx, "readq 0x1000", "OK 0x0123456789abcdef\n");
    EXPECT(&fx, "readw 0x1006", "OK 0x0000000000000123\n");
    EXPECT(&fx, "readl 0x1000", "OK 0x0000000089abcdef\n");
    EXPECT(&fx, "read 0x1000 4", "OK 0xefcdab89\n");
    EXPECT(&fx, "writew 010 65535", "OK\n");
    EXPECT(&fx, "readw 8", "OK 0x000000000000ffff\n");
    /* unclaimed ports: all ones, at least four digits */
    EXPECT(&fx, "inb 0x1234", "OK 0x00ff\n");
    EXPECT(&fx, "inw 0x1234", "OK 0xffff\n");
    EXPECT(&fx, "inl 0x1234", "OK 0xffffffff\n");
    EXPECT(&fx, "outl 0x1234 0xffffffffff", "OK\n");
    /* PCI config: host bridge id, a value with more than four digits */
    EXPECT(&fx, "outl 0xcf8 0x80000000", "OK\n");
    EXPECT(&fx, "inl 0xcfc", "OK 0x12378086\n");
    EXPECT(&fx, "inw 0xcfe", "OK 0x1237\n");
    fx_free(&fx);
}
END_TEST

START_TEST(test_write_read_b64)
{
    struct fixture fx;
    fx_init(&fx, false, false);
    EXPECT(&fx, "write 0x2000 4 0xdeadbeef", "OK\n");
    EXPECT(&fx, "read 0x2000 4", "OK 0xdeadbeef\n");
    EXPECT(&fx, "write 0x2000 4 0xab", "OK\n");
    EXPECT(&fx, "read 0x2000 4", "OK 0xab000000\n");
    EXPECT(&fx, "write 0x2000 2 0x11223344", "OK\n");
    EXPECT(&fx, "read 0x2000 4", "OK 0x11220000\n");
    EXPECT(&fx, "write 0x2000 2 0x123", "OK\n");
    EXPECT(&fx, "read 0x2000 2", "OK 0x1200\n");
    EXPECT(&fx, "write 0x2000 2 0xAbCd", "OK\n");
    EXPECT(&fx, "read 0x2000 2", "OK 0xabcd\n");
    EXPECT(&fx, "write 0x2000 4 0x", "ERR invalid argument size\n");
    EXPECT(&fx, "write 0x2000 4 0xzz", "FAIL invalid hex data\n");
    EXPECT(&fx, "b64write 0x3000 4 3q2+7w==", "OK\n");
    EXPECT(&fx, "read 0x3000 4", "OK 0xdeadbeef\n");
    EXPECT(&fx, "b64read 0x3000 4", "OK 3q2+7w==\n");
    EXPECT(&fx, "b64read 0x3000 5", "OK 3q2+7wA=\n");
    EXPECT(&fx, "b64read 0x3000 6", "OK 3q2+7wAA\n");
    EXPECT(&fx, "b64read 0x3000 0", "OK \n");
    EXPECT(&fx, "b64write 0x3000 4 ab", "ERR invalid argument size\n");
    /* a short b64 payload writes what decoded */
    EXPECT(&fx, "b64write 0x3000 4 AAA=", "OK\n");
    EXPECT(&fx, "read 0x3000 4", "OK 0x0000beef\n");
    EXPECT(&fx, "memset 0x4000 3 0x1a5", "OK\n");
    EXPECT(&fx, "read 0x4000 4", "OK 0xa5a5a500\n");
    EXPECT(&fx, "memset 0x4000 0 0x55", "OK\n");
    /* the end of RAM (16 MiB here) and unassigned memory beyond it */
    EXPECT(&fx, "writel 0xfffffc 0x11223344", "OK\n");
    EXPECT(&fx, "read 0xfffffe 4", "OK 0x22110000\n");
    fx_free(&fx);
}
END_TEST

START_TEST(test_malformed)
{
    struct fixture fx;
    fx_init(&fx, false, false);
    EXPECT(&fx, "", "FAIL empty line\n");
    EXPECT(&fx, "outb  0x80 1", "FAIL malformed line: empty word (stray space)\n");
    EXPECT(&fx, " inb 0x80", "FAIL malformed line: empty word (stray space)\n");
    EXPECT(&fx, "inb 0x80 ", "FAIL malformed line: empty word (stray space)\n");
    EXPECT(&fx, "inb 0x80\r", "FAIL malformed line: control character 0x0d\n");
    EXPECT(&fx, "inb\t0x80", "FAIL malformed line: control character 0x09\n");
    EXPECT(&fx, "outb 0x80", "FAIL missing argument: outb takes 2\n");
    EXPECT(&fx, "inb", "FAIL missing argument: inb takes 1\n");
    EXPECT(&fx, "write 0x1000 4", "FAIL missing argument: write takes 3\n");
    EXPECT(&fx, "inb zz", "FAIL invalid number 'zz'\n");
    EXPECT(&fx, "inb 0x80z", "FAIL invalid number '0x80z'\n");
    EXPECT(&fx, "outb 0x80 0x", "FAIL invalid number '0x'\n");
    EXPECT(&fx, "readq 99999999999999999999999", "FAIL invalid number '99999999999999999999999'\n");
    EXPECT(&fx, "inb 0x10000", "FAIL port '0x10000' out of range\n");
    EXPECT(&fx, "outw 65536 1", "FAIL port '65536' out of range\n");
    EXPECT(&fx, "read 0x1000 0", "FAIL invalid size 0\n");
    EXPECT(&fx, "read 0x1000 0x2000000", "FAIL size 0x2000000 too large\n");
    EXPECT(&fx, "memset 0 0x100000000 0", "FAIL size 0x100000000 too large\n");
    EXPECT(&fx, "read 0xffffffffffffffff 2", "FAIL address range wraps\n");
    EXPECT(&fx, "memset 0xffffffffffffffff 2 0", "FAIL address range wraps\n");
    EXPECT(&fx, "frobnicate 1 2", "FAIL Unknown command 'frobnicate'\n");
    EXPECT(&fx, "clock_step", "FAIL Unknown command 'clock_step'\n");
    EXPECT(&fx, "INB 0x80", "FAIL Unknown command 'INB'\n");
    /* extra arguments are ignored, as QEMU does */
    EXPECT(&fx, "inb 0x1234 extra", "OK 0x00ff\n");
    /* still serving */
    EXPECT(&fx, "endianness", "OK little\n");
    fx_free(&fx);
}
END_TEST

START_TEST(test_intercept)
{
    struct fixture fx;
    fx_init(&fx, false, false);
    EXPECT(&fx, "irq_intercept_in nonexistent", "FAIL Unknown device\n");
    EXPECT(&fx, "irq_intercept_in", "FAIL missing argument: irq_intercept_in takes 1\n");
    EXPECT(&fx, "irq_intercept_in ioapic", "OK\n");
    EXPECT(&fx, "irq_intercept_in /machine/i440fx/ioapic", "OK\n");
    EXPECT(&fx, "irq_intercept_out ioapic", "OK\n");
    EXPECT(&fx, "irq_intercept_in i440fx", "FAIL IRQ intercept already enabled\n");
    fx_free(&fx);
}
END_TEST

/* IDENTIFY raises IRQ 14 inside the request: the IRQ line precedes OK. */
/* set_irq_in: what QEMU answers, and FAIL where QEMU would abort. */
START_TEST(test_set_irq_in)
{
    struct fixture fx;
    fx_init(&fx, false, false);
    EXPECT(&fx, "set_irq_in ioapic unnamed-gpio-in 5 1", "OK\n");
    EXPECT(&fx, "irq_intercept_in ioapic", "OK\n");
    EXPECT(&fx, "set_irq_in ioapic unnamed-gpio-in 5 1", "IRQ raise 5\nOK\n");
    EXPECT(&fx, "set_irq_in ioapic unnamed-gpio-in 5 1", "OK\n");
    EXPECT(&fx, "set_irq_in ioapic unnamed-gpio-in 5 7", "IRQ raise 5\nOK\n");
    EXPECT(&fx, "set_irq_in ioapic unnamed-gpio-in 0x5 0", "IRQ lower 5\nOK\n");
    EXPECT(&fx, "set_irq_in nonexistent unnamed-gpio-in 5 1", "FAIL Unknown device\n");
    EXPECT(&fx, "set_irq_in ioapic unnamed-gpio-in 5",
           "FAIL missing argument: set_irq_in takes 4\n");
    EXPECT(&fx, "set_irq_in ioapic unnamed-gpio-in 24 1",
           "FAIL no input unnamed-gpio-in 24 on ioapic\n");
    EXPECT(&fx, "set_irq_in ioapic unnamed-gpio-in -1 1",
           "FAIL no input unnamed-gpio-in -1 on ioapic\n");
    EXPECT(&fx, "set_irq_in ioapic other 5 1", "FAIL no input other 5 on ioapic\n");
    EXPECT(&fx, "set_irq_in i440fx unnamed-gpio-in 5 1",
           "FAIL no input unnamed-gpio-in 5 on i440fx\n");
    EXPECT(&fx, "set_irq_in ioapic unnamed-gpio-in x 1", "FAIL invalid number 'x'\n");
    EXPECT(&fx, "set_irq_in ioapic unnamed-gpio-in 5 4294967296",
           "FAIL invalid number '4294967296'\n");
    EXPECT(&fx, "set_irq_in ioapic unnamed-gpio-in 5 1z", "FAIL invalid number '1z'\n");
    /* the top of the address space (this used to spin forever) */
    EXPECT(&fx, "readq 0xfffffffffffffff8", "OK 0x0000000000000000\n");
    EXPECT(&fx, "writeq 0xfffffffffffffff8 0x1", "OK\n");
    EXPECT(&fx, "read 0xfffffffffffffffe 2", "OK 0x0000\n");
    fx_free(&fx);
}
END_TEST

START_TEST(test_irq_order)
{
    struct fixture fx;
    fx_init(&fx, false, true);
    EXPECT(&fx, "outb 0x1f7 0xe5", "OK\n");     /* not intercepted yet */
    EXPECT(&fx, "inb 0x1f7", "OK 0x0050\n");
    EXPECT(&fx, "irq_intercept_in ioapic", "OK\n");
    EXPECT(&fx, "outb 0x1f6 0xa0", "OK\n");
    EXPECT(&fx, "outb 0x1f7 0xec", "IRQ raise 14\nOK\n");
    EXPECT(&fx, "inb 0x1f7", "IRQ lower 14\nOK 0x0058\n");
    EXPECT(&fx, "inb 0x1f7", "OK 0x0058\n");
    fx_free(&fx);
}
END_TEST

static void pump(struct fixture *fx)
{
    for (int i = 0; i < 10; i++) {
        ev_run_once(fx->loop, 10);
    }
}

/* Lines split over several reads, several lines in one read, then EOF. */
START_TEST(test_stream)
{
    struct fixture fx;
    fx_init(&fx, true, false);
    ck_assert_int_eq(write(fx.in_w, "endian", 6), 6);
    pump(&fx);
    char *got = replies(&fx);
    ck_assert_str_eq(got, "");
    free(got);
    ck_assert_int_eq(write(fx.in_w, "ness\ninb 0x1234\n\nwriteb 0 1", 27), 27);
    pump(&fx);
    got = replies(&fx);
    ck_assert_str_eq(got, "OK little\nOK 0x00ff\nFAIL empty line\n");
    free(got);
    ck_assert_int_eq(write(fx.in_w, "7\nreadb 0\n", 10), 10);
    pump(&fx);
    got = replies(&fx);
    ck_assert_str_eq(got, "OK\nOK 0x0000000000000011\n");
    free(got);
    ck_assert_int_eq(fx.closed, 0);
    /* an incomplete last line is dropped at EOF */
    ck_assert_int_eq(write(fx.in_w, "inb 0x80", 8), 8);
    close(fx.in_w);
    fx.in_w = -1;
    pump(&fx);
    ck_assert_int_eq(fx.closed, 1);
    got = replies(&fx);
    ck_assert_str_eq(got, "");
    free(got);
    fx_free(&fx);
}
END_TEST

/* Input from a regular file, which epoll refuses: still one line at a
 * time, then EOF; freeing the server before EOF cancels its reads. */
START_TEST(test_file_input)
{
    struct error *err = NULL;
    char path[] = "/tmp/test-qtest-in.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    ck_assert_int_eq(write(fd, "endianness\ninb 0x1234\n", 22), 22);
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    struct fixture fx;
    fx_init(&fx, false, false);
    qtest_server_free(fx.qs);
    fx.qs = qtest_server_new(fx.m, fx.loop, fd, fx.out_w, on_close, &fx, &err);
    ck_assert_ptr_nonnull(fx.qs);
    pump(&fx);
    char *got = replies(&fx);
    ck_assert_str_eq(got, "OK little\nOK 0x00ff\n");
    free(got);
    ck_assert_int_eq(fx.closed, 1);
    /* a server whose file read is still pending */
    qtest_server_free(fx.qs);
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    fx.qs = qtest_server_new(fx.m, fx.loop, fd, fx.out_w, on_close, &fx, &err);
    ck_assert_ptr_nonnull(fx.qs);
    fx_free(&fx);
    close(fd);
}
END_TEST

static Suite *qtest_suite(void)
{
    Suite *s = suite_create("qtest");
    TCase *tc = tcase_create("protocol");
    tcase_add_test(tc, test_formats);
    tcase_add_test(tc, test_write_read_b64);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_intercept);
    tcase_add_test(tc, test_irq_order);
    tcase_add_test(tc, test_set_irq_in);
    tcase_add_test(tc, test_stream);
    tcase_add_test(tc, test_file_input);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(qtest_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
