/*
 * tests/fuzz/fuzz-trace.c — diskdm-trace's parsers: the same input read as
 * a trace and as an expected file, then the trace's masks applied to the
 * expected replies and compared, as a replay would do.
 */
#include "tools/trace/expect.c"
#include "tools/trace/parse.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *a = malloc(size + 1), *b = malloc(size + 1);
    memcpy(a, data, size);
    memcpy(b, data, size);
    a[size] = b[size] = 0;

    struct trace t = { .path = "fuzz.trace" };
    struct entry_list want = { 0 };
    bool parsed = trace_parse(&t, a) == 0;
    if (trace_expected_parse("fuzz.expected", b, &want) == 0 && parsed) {
        size_t n = 0;
        for (size_t i = 0; i < t.nsteps && n < want.n; i++) {
            const struct step *st = &t.steps[i];
            if (st->kind == STEP_POLL || st->kind == STEP_WINDOW_BEGIN ||
                st->kind == STEP_WINDOW_END || st->kind == STEP_WAIT_IRQ) {
                continue;
            }
            char *masked = trace_mask_reply(st, want.v[n].reply);
            (void)trace_reply_matches(want.v[n].reply, masked);
            free(masked);
            n++;
        }
    }
    trace_entries_free(&want);
    trace_free(&t);
    free(a);
    free(b);
    return 0;
}
