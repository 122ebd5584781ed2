/* test_compiled.c: compiled mode against eager mode. The same model
 * functions, the same seed and data: parameters (and batch norm running
 * statistics) must be bitwise equal after 50 steps; the plan cache must hit
 * on equal shapes and miss on new ones; data-dependent branches get a plan
 * per path; reads inside a step cut the graph and still give eager's
 * numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dbr.h"
#include "models/models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAXB = 64 };
static float xs[MAXB * 784];
static int32_t ys[MAXB];

static void make_data(uint64_t seed) {
    uint64_t s = seed * 2654435761u + 1;
    for (int i = 0; i < MAXB * 784; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        xs[i] = (float)((s >> 40) & 0xFFFF) / 65536.0f;
    }
    for (int i = 0; i < MAXB; i++) ys[i] = (i * 7 + (int)seed) % 10;
}

typedef dbr_tensor *(*model_fn)(dbr_ctx *ctx, dbr_tensor *x, int64_t step);

static dbr_tensor *mlp(dbr_ctx *ctx, dbr_tensor *x, int64_t step) {
    (void)step;
    return dbr_model_mlp(ctx, x);
}
static dbr_tensor *cnn(dbr_ctx *ctx, dbr_tensor *x, int64_t step) {
    (void)step;
    return dbr_model_cnn(ctx, x);
}

/* A model whose own control flow takes another path every other step, and
 * uses dropout (keyed by step and call, so recompiling never changes it). */
static dbr_tensor *branchy(dbr_ctx *ctx, dbr_tensor *x, int64_t step) {
    dbr_tensor *w1 = dbr_param(ctx, "b.w1", DBR_F32, DBR_SHAPE(64, 784), DBR_INIT_KAIMING_UNIFORM);
    dbr_tensor *w2 = dbr_param(ctx, "b.w2", DBR_F32, DBR_SHAPE(10, 64), DBR_INIT_XAVIER_UNIFORM);
    dbr_tensor *h = dbr_linear(ctx, x, w1, NULL);
    if (step % 2 == 0)
        h = dbr_relu(ctx, h);
    else
        h = dbr_mul(ctx, dbr_tanh(ctx, h), dbr_sigmoid(ctx, h));
    h = dbr_dropout(ctx, h, 0.2);
    return dbr_linear(ctx, h, w2, NULL);
}

typedef struct run_opts {
    dbr_mode mode;
    model_fn fn;
    int steps;
    int64_t batch, batch_alt; /* batch_alt != 0: odd steps use it */
    bool read_inside;         /* read the logits before backward (a graph break) */
    dbr_optim_kind opt;
} run_opts;

static dbr_ctx *train(const run_opts *o, double *losses) {
    dbr_config cfg = dbr_config_default();
    cfg.seed = 42;
    cfg.mode = o->mode;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    if (dbr_error(ctx)) fail_msg("%s", dbr_error(ctx));
    assert_int_equal(dbr_optim_set(ctx, &(dbr_optim){.kind = o->opt, .lr = o->opt == DBR_SGD ? 0.05 : 1e-3}), 0);
    for (int s = 0; s < o->steps; s++) {
        int64_t b = o->batch_alt && s % 2 ? o->batch_alt : o->batch;
        make_data((uint64_t)s);
        dbr_step_begin(ctx);
        dbr_tensor *x = dbr_input(ctx, DBR_F32, DBR_SHAPE(b, 784), xs, false);
        dbr_tensor *y = dbr_input(ctx, DBR_I32, DBR_SHAPE(b), ys, false);
        dbr_tensor *logits = o->fn(ctx, x, s);
        dbr_keep(logits);
        if (o->read_inside) {
            float z[MAXB * 10];
            assert_int_equal(dbr_copy_out(ctx, logits, z, (size_t)b * 10 * sizeof(float)), 0);
        }
        dbr_tensor *loss = dbr_cross_entropy(ctx, logits, y);
        if (dbr_backward(ctx, loss) || dbr_optim_step(ctx)) fail_msg("%s", dbr_error(ctx));
        losses[s] = dbr_item(ctx, loss);
        float z[MAXB * 10];
        assert_int_equal(dbr_copy_out(ctx, logits, z, (size_t)b * 10 * sizeof(float)), 0);
        if (dbr_step_end(ctx)) fail_msg("%s", dbr_error(ctx));
    }
    return ctx;
}

static void assert_same_params(dbr_ctx *a, dbr_ctx *b) {
    int n = 0;
    for (dbr_tensor *p = NULL; (p = dbr_params_next(a, p)) != NULL; n++) {
        dbr_tensor *q = dbr_param_find(b, p->name);
        assert_non_null(q);
        if (memcmp(p->data, q->data, (size_t)p->nbytes) != 0)
            fail_msg("%s differs between eager and compiled", p->name);
    }
    assert_true(n > 0);
}

static void compare(run_opts o, dbr_stats *st) {
    double le[64], lc[64];
    o.mode = DBR_MODE_EAGER;
    dbr_ctx *e = train(&o, le);
    o.mode = DBR_MODE_COMPILED;
    dbr_ctx *c = train(&o, lc);
    for (int s = 0; s < o.steps; s++)
        if (le[s] != lc[s]) fail_msg("step %d: loss %.9g eager, %.9g compiled", s, le[s], lc[s]);
    assert_same_params(e, c);
    dbr_stats_get(c, st);
    printf("# hits %lld misses %lld plans %lld breaks %lld arena %lld lower bound %lld; peak "
           "eager %lld compiled %lld\n",
           (long long)st->cache_hits, (long long)st->cache_misses, (long long)st->plans,
           (long long)st->graph_breaks, (long long)st->arena_bytes,
           (long long)st->arena_lower_bound, (long long)dbr_peak_bytes(e),
           (long long)dbr_peak_bytes(c));
    assert_true(st->arena_bytes >= st->arena_lower_bound);
    /* fragmentation on the zoo's steps stays within 5% of the lower bound */
    assert_true((double)st->arena_bytes <= 1.05 * (double)st->arena_lower_bound);
    dbr_ctx_free(e);
    dbr_ctx_free(c);
}

static void mlp_bitwise(void **state) {
    (void)state;
    dbr_stats st;
    compare((run_opts){.fn = mlp, .steps = 50, .batch = 32, .opt = DBR_ADAM}, &st);
    /* one plan for every step: the first step misses, the rest hit */
    assert_int_equal(st.cache_misses, 1);
    assert_int_equal(st.cache_hits, 49);
    assert_int_equal(st.graph_breaks, 0);
    /* a repeated step runs its plan without autodiff or any other pass */
    assert_int_equal(st.pass_free_hits, 49);
}

/* A compiled step holds parameters, optimizer state and one arena; eager
 * holds gradient buffers and every activation backward needs. */
static void compiled_peak_below_eager(void **state) {
    (void)state;
    double l[8];
    run_opts o = {.fn = mlp, .steps = 3, .batch = 64, .opt = DBR_ADAM, .mode = DBR_MODE_EAGER};
    dbr_ctx *e = train(&o, l);
    o.mode = DBR_MODE_COMPILED;
    dbr_ctx *c = train(&o, l);
    printf("# mlp batch 64 peak: eager %lld, compiled %lld\n", (long long)dbr_peak_bytes(e),
           (long long)dbr_peak_bytes(c));
    assert_true(dbr_peak_bytes(c) < dbr_peak_bytes(e));
    dbr_ctx_free(e);
    dbr_ctx_free(c);
}

static void cnn_bitwise(void **state) {
    (void)state;
    dbr_stats st;
    compare((run_opts){.fn = cnn, .steps = 50, .batch = 8, .opt = DBR_MOMENTUM}, &st);
    assert_int_equal(st.cache_misses, 1);
}

static void new_batch_size_misses(void **state) {
    (void)state;
    dbr_stats st;
    compare((run_opts){.fn = mlp, .steps = 6, .batch = 16, .batch_alt = 24, .opt = DBR_SGD}, &st);
    assert_int_equal(st.cache_misses, 2);
    assert_int_equal(st.cache_hits, 4);
    assert_int_equal(st.plans, 2);
}

static void branches_get_their_own_plans(void **state) {
    (void)state;
    dbr_stats st;
    compare((run_opts){.fn = branchy, .steps = 8, .batch = 16, .opt = DBR_ADAM}, &st);
    assert_int_equal(st.cache_misses, 2);
    assert_int_equal(st.cache_hits, 6);
}

static void reads_cut_the_graph(void **state) {
    (void)state;
    dbr_stats st;
    compare((run_opts){.fn = mlp, .steps = 4, .batch = 16, .read_inside = true, .opt = DBR_SGD}, &st);
    assert_int_equal(st.graph_breaks, 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mlp_bitwise),
        cmocka_unit_test(cnn_bitwise),
        cmocka_unit_test(compiled_peak_below_eager),
        cmocka_unit_test(new_batch_size_misses),
        cmocka_unit_test(branches_get_their_own_plans),
        cmocka_unit_test(reads_cut_the_graph),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
