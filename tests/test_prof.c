/* test_prof.c: the kernel profiler. Events appear per op in eager mode and
 * per launch in compiled mode with sane fields; nothing is recorded while
 * it is off; `dbr prof` prints JSON with the promised keys, writes a Chrome
 * trace that parses, and rejects bad flags with a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dbr.h"
#include "tmpdir.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#ifndef DBR_CLI
#error "DBR_CLI (the path of the dbr binary) must be defined by the build"
#endif

enum { B = 8, D = 32, H = 16, C = 4 };
static float xs[B * D];
static int32_t ys[B];

/* One training step of a two-layer perceptron: matmuls, an add, relu,
 * cross-entropy, backward and an Adam update. */
static int step(dbr_ctx *ctx) {
    dbr_step_begin(ctx);
    dbr_tensor *x = dbr_input(ctx, DBR_F32, DBR_SHAPE(B, D), xs, false);
    dbr_tensor *y = dbr_input(ctx, DBR_I32, DBR_SHAPE(B), ys, false);
    dbr_tensor *w1 = dbr_param(ctx, "w1", DBR_F32, DBR_SHAPE(H, D), DBR_INIT_KAIMING_UNIFORM);
    dbr_tensor *b1 = dbr_param_bias(ctx, "b1", DBR_F32, H, D);
    dbr_tensor *w2 = dbr_param(ctx, "w2", DBR_F32, DBR_SHAPE(C, H), DBR_INIT_KAIMING_UNIFORM);
    dbr_tensor *h = dbr_relu(ctx, dbr_linear(ctx, x, w1, b1));
    dbr_tensor *loss = dbr_cross_entropy(ctx, dbr_linear(ctx, h, w2, NULL), y);
    int rc = dbr_backward(ctx, loss) || dbr_optim_step(ctx);
    if (dbr_step_end(ctx)) rc = 1;
    return rc;
}

static dbr_ctx *new_ctx(dbr_mode mode) {
    for (int i = 0; i < B * D; i++) xs[i] = (float)((i * 37) % 101) / 101.0f;
    for (int i = 0; i < B; i++) ys[i] = i % C;
    dbr_config cfg = dbr_config_default();
    cfg.mode = mode;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    assert_non_null(ctx);
    assert_int_equal(dbr_optim_set(ctx, &(dbr_optim){.kind = DBR_ADAM, .lr = 1e-3}), 0);
    return ctx;
}

/* Every event is sane; returns how many matmuls were seen and counts the
 * phases. */
static int check_events(const dbr_prof_event *ev, int64_t n, int *fwd, int *bwd, int *opt) {
    int mm = 0;
    for (int64_t i = 0; i < n; i++) {
        const dbr_prof_event *e = &ev[i];
        assert_non_null(e->name);
        assert_true(strlen(e->name) > 0);
        assert_non_null(e->phase);
        assert_true(e->dur_ns >= 0);
        assert_true(e->t0_ns > 0);
        if (i) assert_true(e->t0_ns >= ev[i - 1].t0_ns);
        if (e->bytes <= 0) fail_msg("event %lld (%s) moved %lld bytes", (long long)i, e->name,
                                    (long long)e->bytes);
        if (!strchr(e->src, '@')) fail_msg("event %s has source '%s'", e->name, e->src);
        if (!strcmp(e->name, "matmul")) {
            mm++;
            assert_true(e->lib);
            assert_true(e->flops > 0);
        } else if (strncmp(e->name, "conv2d", 6)) {
            assert_false(e->lib);
        }
        *fwd += !strcmp(e->phase, "fwd");
        *bwd += !strcmp(e->phase, "bwd");
        *opt += !strcmp(e->phase, "opt");
    }
    return mm;
}

static void eager_events(void **state) {
    (void)state;
    dbr_ctx *ctx = new_ctx(DBR_MODE_EAGER);
    assert_false(dbr_prof_enabled(ctx));
    dbr_prof_enable(ctx, true);
    assert_true(dbr_prof_enabled(ctx));
    assert_int_equal(step(ctx), 0);
    const dbr_prof_event *ev = NULL;
    int64_t n = dbr_prof_events(ctx, &ev);
    assert_true(n >= 6);
    assert_non_null(ev);
    int fwd = 0, bwd = 0, opt = 0;
    /* two forward matmuls; backward's: w2's, h's and w1's gradients */
    assert_true(check_events(ev, n, &fwd, &bwd, &opt) >= 5);
    assert_true(fwd > 0 && bwd > 0);
    bool from_here = false;
    for (int64_t i = 0; i < n; i++) from_here |= strstr(ev[i].src, "test_prof.c:") != NULL;
    assert_true(from_here);
    /* a matmul [8,32]x[32,16]: 2*8*16*32 flops */
    for (int64_t i = 0; i < n; i++)
        if (!strcmp(ev[i].name, "matmul") && !strcmp(ev[i].phase, "fwd")) {
            assert_true(ev[i].flops == 2.0 * B * H * D);
            assert_int_equal(ev[i].bytes, (B * D + H * D + B * H) * 4);
            break;
        }
    dbr_prof_reset(ctx);
    assert_int_equal(dbr_prof_events(ctx, &ev), 0);
    dbr_ctx_free(ctx);
}

static void compiled_events(void **state) {
    (void)state;
    dbr_ctx *ctx = new_ctx(DBR_MODE_COMPILED);
    assert_int_equal(step(ctx), 0); /* compiles */
    dbr_prof_enable(ctx, true);
    assert_int_equal(step(ctx), 0);
    const dbr_prof_event *ev = NULL;
    int64_t n1 = dbr_prof_events(ctx, &ev);
    assert_true(n1 > 0);
    assert_int_equal(step(ctx), 0); /* the cached plan: the same launches again */
    int64_t n2 = dbr_prof_events(ctx, &ev);
    assert_int_equal(n2, 2 * n1);
    int fwd = 0, bwd = 0, opt = 0;
    assert_true(check_events(ev, n2, &fwd, &bwd, &opt) >= 2);
    assert_true(fwd > 0 && bwd > 0 && opt > 0);
    for (int64_t i = 0; i < n1; i++) {
        assert_string_equal(ev[i].name, ev[n1 + i].name);
        assert_string_equal(ev[i].src, ev[n1 + i].src);
    }
    dbr_ctx_free(ctx);
}

static void disabled_records_nothing(void **state) {
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        dbr_ctx *ctx = new_ctx(mode ? DBR_MODE_COMPILED : DBR_MODE_EAGER);
        const dbr_prof_event *ev = NULL;
        assert_int_equal(step(ctx), 0);
        assert_int_equal(dbr_prof_events(ctx, &ev), 0);
        dbr_prof_enable(ctx, true);
        assert_int_equal(step(ctx), 0);
        int64_t n = dbr_prof_events(ctx, &ev);
        assert_true(n > 0);
        dbr_prof_enable(ctx, false);
        assert_int_equal(step(ctx), 0);
        assert_int_equal(dbr_prof_events(ctx, &ev), n); /* kept, not grown */
        dbr_ctx_free(ctx);
    }
}

/* ---- the dbr prof command -------------------------------------------------- */
static int run(const char *args, char *out, size_t n, bool with_stderr) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s %s", DBR_CLI, args, with_stderr ? "2>&1" : "2>/dev/null");
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t len = fread(out, 1, n - 1, p);
    out[len] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char out[1 << 20];

static void cli_json_and_trace(void **state) {
    (void)state;
    const char *trace = path_of("trace.json");
    char args[700];
    snprintf(args, sizeof args, "prof --model mlp --batch 16 --steps 2 --warmup 1 --json --trace %s",
             trace);
    int rc = run(args, out, sizeof out, false);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    if (!j) fail_msg("not JSON (%s): %s", jerr.text, out);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "mlp");
    assert_int_equal(json_integer_value(json_object_get(j, "batch")), 16);
    assert_int_equal(json_integer_value(json_object_get(j, "steps")), 2);
    json_t *modes = json_object_get(j, "modes");
    const char *names[] = {"eager", "compiled", "fused"};
    for (int m = 0; m < 3; m++) {
        json_t *md = json_object_get(modes, names[m]);
        if (!md) fail_msg("no mode %s: %s", names[m], out);
        assert_true(json_real_value(json_object_get(md, "step_ms")) > 0);
        assert_non_null(json_object_get(md, "nonlib_ms"));
        json_t *ks = json_object_get(md, "kernels");
        assert_true(json_array_size(ks) > 0);
        bool mm = false;
        for (size_t i = 0; i < json_array_size(ks); i++) {
            json_t *k = json_array_get(ks, i);
            const char *name = json_string_value(json_object_get(k, "name"));
            assert_non_null(name);
            mm |= !strcmp(name, "matmul");
            assert_true(json_integer_value(json_object_get(k, "calls")) > 0);
            assert_non_null(json_object_get(k, "total_ms"));
            assert_true(json_integer_value(json_object_get(k, "bytes")) > 0);
            assert_non_null(json_object_get(k, "gbps"));
        }
        assert_true(mm);
    }
    const char *keys[] = {"speedup_fused_vs_eager", "speedup_fused_vs_eager_nonlib",
                          "speedup_compiled_vs_eager"};
    for (int i = 0; i < 3; i++)
        if (!json_is_number(json_object_get(j, keys[i]))) fail_msg("no %s: %s", keys[i], out);
    json_decref(j);

    json_t *t = json_load_file(trace, 0, &jerr);
    if (!t) fail_msg("trace is not JSON: %s (line %d)", jerr.text, jerr.line);
    json_t *evs = json_object_get(t, "traceEvents");
    assert_true(json_is_array(evs));
    int kernels = 0, pids = 0;
    for (size_t i = 0; i < json_array_size(evs); i++) {
        json_t *e = json_array_get(evs, i);
        const char *ph = json_string_value(json_object_get(e, "ph"));
        assert_non_null(ph);
        assert_true(json_is_integer(json_object_get(e, "pid")));
        if (!strcmp(ph, "M")) {
            pids += !strcmp(json_string_value(json_object_get(e, "name")), "process_name");
            continue;
        }
        assert_string_equal(ph, "X");
        assert_true(json_number_value(json_object_get(e, "ts")) >= 0);
        assert_true(json_number_value(json_object_get(e, "dur")) >= 0);
        json_t *a = json_object_get(e, "args");
        if (!a) continue; /* a step */
        kernels++;
        assert_non_null(strchr(json_string_value(json_object_get(a, "src")), '@'));
        assert_true(json_integer_value(json_object_get(a, "bytes")) > 0);
        assert_non_null(json_string_value(json_object_get(a, "phase")));
    }
    assert_int_equal(pids, 3);
    assert_true(kernels > 0);
    json_decref(t);
}

static void cli_text(void **state) {
    (void)state;
    int rc = run("prof --model mlp --batch 8 --steps 2 --warmup 1 --modes eager,compiled", out,
                 sizeof out, true);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    const char *want[] = {"eager: step", "compiled: step", "matmul", "GFLOP/s", "speedup over eager"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(out, want[i])) fail_msg("output lacks '%s': %s", want[i], out);
    assert_null(strstr(out, "fused: step"));
}

static void cli_bad_flags(void **state) {
    (void)state;
    const char *bad[] = {"prof --model resnet9000", "prof --model resnet50", "prof --steps 0",
                         "prof --batch x", "prof --modes eager,warp", "prof --modes ,",
                         "prof --bogus 1", "prof --trace", "prof stray"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = run(bad[i], out, sizeof out, true);
        if (rc != 2) fail_msg("`dbr %s` exited %d, expected 2 (output: %s)", bad[i], rc, out);
        if (!strstr(out, "dbr prof: ")) fail_msg("`dbr %s` said: %s", bad[i], out);
    }
    run("prof --modes eager,warp", out, sizeof out, true);
    assert_non_null(strstr(out, "warp"));
    assert_int_equal(run("prof --help", out, sizeof out, true), 0);
    assert_non_null(strstr(out, "--trace"));
    /* a trace file that cannot be written is a run-time error */
    assert_int_equal(run("prof --steps 1 --warmup 0 --modes eager --trace /nonexistent/dir/t.json",
                         out, sizeof out, true),
                     1);
    assert_non_null(strstr(out, "/nonexistent/dir/t.json"));
}

static int setup(void **state) {
    (void)state;
    return tmpdir_make("dbr_prof");
}

static int teardown(void **state) {
    (void)state;
    return tmpdir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(eager_events),
        cmocka_unit_test(compiled_events),
        cmocka_unit_test(disabled_records_nothing),
        cmocka_unit_test(cli_json_and_trace),
        cmocka_unit_test(cli_text),
        cmocka_unit_test(cli_bad_flags),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
