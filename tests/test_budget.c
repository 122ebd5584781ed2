/* test_budget.c: compiled training under a memory budget. A step that does
 * not fit recomputes forward values in backward; the parameters after 30
 * steps must be bitwise those of the unbudgeted run (dropout included: its
 * recomputed masks are the same bits), and the step's planned memory, and
 * what the context really allocated, stay within the budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dbr.h"
#include "models/models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAXB = 512, SEQ = 64, VOCAB = 64, GPT_BATCH = 8 };
static float xs[MAXB * 784];
static int32_t ys[MAXB * SEQ];
static int32_t toks[MAXB * SEQ];

static void make_data(uint64_t seed) {
    uint64_t s = seed * 2654435761u + 1;
    for (int i = 0; i < MAXB * 784; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        xs[i] = (float)((s >> 40) & 0xFFFF) / 65536.0f;
    }
    for (int i = 0; i < MAXB * SEQ; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((s >> 33) % VOCAB);
        ys[i] = (int32_t)((s >> 45) % 10);
    }
}

typedef enum { M_CNN, M_DEEP_CNN, M_GPT, M_CHAIN } which_model;

/* 24 blocks of linear, dropout, tanh: every block's output is a candidate
 * for recomputation, dropout's included. */
static dbr_tensor *chain(dbr_ctx *ctx, dbr_tensor *x) {
    char name[32];
    dbr_tensor *h = x;
    int64_t in = 784;
    for (int k = 0; k < 24; k++) {
        snprintf(name, sizeof name, "chain%d.w", k);
        dbr_tensor *w = dbr_param(ctx, name, DBR_F32, DBR_SHAPE(64, in), DBR_INIT_XAVIER_UNIFORM);
        h = dbr_tanh(ctx, dbr_dropout(ctx, dbr_linear(ctx, h, w, NULL), 0.25));
        in = 64;
    }
    dbr_tensor *w = dbr_param(ctx, "chain.out", DBR_F32, DBR_SHAPE(10, 64), DBR_INIT_XAVIER_UNIFORM);
    return dbr_linear(ctx, h, w, NULL);
}

/* Eight conv-bn-relu layers at 28x28 and 14x14 (the zoo's cnn has two,
 * and its first layer's backward alone is most of its peak: little to
 * trade). */
static dbr_tensor *deep_cnn(dbr_ctx *ctx, dbr_tensor *x) {
    static const int64_t ch[9] = {1, 16, 16, 16, 16, 32, 32, 32, 32};
    char name[32];
    dbr_tensor *h = dbr_reshape(ctx, x, DBR_SHAPE(-1, 1, 28, 28));
    for (int k = 0; k < 8; k++) {
        snprintf(name, sizeof name, "conv%d", k);
        h = dbr_zoo_conv_bn(ctx, h, name, ch[k], ch[k + 1], 3, 1, 1, true);
        if (k == 3) h = dbr_max_pool2d(ctx, h, 2, 2, 0);
    }
    h = dbr_global_avg_pool(ctx, h);
    return dbr_zoo_linear(ctx, h, "fc", 32, 10, true);
}

typedef struct run {
    which_model m;
    int steps;
    int64_t budget;
    double frac;
    dbr_recompute strategy;
} run;

static dbr_tensor *step_loss(dbr_ctx *ctx, which_model m) {
    if (m == M_GPT) {
        dbr_tensor *x = dbr_input(ctx, DBR_I32, DBR_SHAPE(GPT_BATCH, SEQ), toks, false);
        dbr_tensor *y = dbr_input(ctx, DBR_I32, DBR_SHAPE(GPT_BATCH * SEQ), ys, false);
        dbr_tensor *logits = dbr_model_gpt(ctx, x);
        return dbr_cross_entropy(ctx, dbr_reshape(ctx, logits, DBR_SHAPE(GPT_BATCH * SEQ, VOCAB)), y);
    }
    int64_t batch = m == M_CHAIN ? MAXB : 16;
    dbr_tensor *x = dbr_input(ctx, DBR_F32, DBR_SHAPE(batch, 784), xs, false);
    dbr_tensor *y = dbr_input(ctx, DBR_I32, DBR_SHAPE(batch), ys, false);
    dbr_tensor *logits = m == M_CNN        ? dbr_model_cnn(ctx, x)
                         : m == M_DEEP_CNN ? deep_cnn(ctx, x)
                                           : chain(ctx, x);
    return dbr_cross_entropy(ctx, logits, y);
}

/* Trains; returns the context (NULL with *msg set when a step failed). */
static dbr_ctx *train(const run *r, double *losses, char *msg, size_t msglen) {
    dbr_config cfg = dbr_config_default();
    cfg.seed = 7;
    cfg.mode = DBR_MODE_COMPILED;
    cfg.memory_budget = r->budget;
    cfg.memory_budget_frac = r->frac;
    cfg.recompute = r->strategy;
    if (r->m == M_GPT)
        dbr_gpt_configure(&(dbr_gpt_config){.layers = 4, .width = 64, .heads = 4, .context = SEQ,
                                            .vocab = VOCAB, .dropout = 0.1});
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    if (dbr_error(ctx)) fail_msg("%s", dbr_error(ctx));
    dbr_optim o = {.kind = r->m == M_GPT ? DBR_ADAM : r->m == M_CHAIN ? DBR_SGD : DBR_MOMENTUM,
                   .lr = r->m == M_GPT ? 1e-3 : 0.05, .momentum = 0.9};
    assert_int_equal(dbr_optim_set(ctx, &o), 0);
    for (int s = 0; s < r->steps; s++) {
        make_data((uint64_t)s);
        dbr_step_begin(ctx);
        dbr_tensor *loss = step_loss(ctx, r->m);
        if (dbr_backward(ctx, loss) || dbr_optim_step(ctx)) {
            snprintf(msg, msglen, "%s", dbr_error(ctx));
            dbr_ctx_free(ctx);
            return NULL;
        }
        losses[s] = dbr_item(ctx, loss);
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
            fail_msg("%s differs between the budgeted and the unbudgeted run", p->name);
    }
    assert_true(n > 0);
}

/* Same parameters as without a budget; the step fits the budget as planned
 * and as allocated; something was recomputed. */
static void budgeted_equals_unbudgeted(which_model m, double frac, dbr_recompute strategy) {
    double l0[32], l1[32];
    char msg[1024] = "";
    run r = {.m = m, .steps = 30, .strategy = strategy};
    dbr_ctx *base = train(&r, l0, msg, sizeof msg);
    if (!base) fail_msg("unbudgeted: %s", msg);
    dbr_stats s0;
    dbr_stats_get(base, &s0);
    r.frac = frac;
    dbr_ctx *c = train(&r, l1, msg, sizeof msg);
    if (!c) fail_msg("budgeted: %s", msg);
    dbr_stats s1;
    dbr_stats_get(c, &s1);
    const dbr_step_mem *mm = &s1.mem;
    printf("# budget %lld: peak %lld (params %lld, state %lld, inputs %lld, outputs %lld, arena "
           "%lld of which grads %lld); unbudgeted peak %lld arena %lld; %d recomputed, +%.1f%%; "
           "context peak %lld vs %lld\n",
           (long long)mm->budget, (long long)mm->peak, (long long)mm->params,
           (long long)mm->optim_state, (long long)mm->inputs, (long long)mm->outputs,
           (long long)mm->arena, (long long)mm->grads, (long long)s0.mem.peak,
           (long long)s0.mem.arena, mm->recomputed, mm->recompute_pct,
           (long long)dbr_peak_bytes(c), (long long)dbr_peak_bytes(base));
    for (int s = 0; s < r.steps; s++)
        if (l0[s] != l1[s]) fail_msg("step %d: loss %.9g unbudgeted, %.9g budgeted", s, l0[s], l1[s]);
    assert_same_params(base, c);
    assert_true(mm->budget > 0);
    assert_true(mm->budget <= (int64_t)(frac * (double)s0.mem.peak) + 1);
    assert_true(mm->peak <= mm->budget);
    assert_true(mm->arena < s0.mem.arena);
    assert_true(mm->recomputed > 0);
    assert_int_equal(s0.mem.recomputed, 0);
    /* what the context really allocated: the planned parts, and nothing else */
    assert_true(dbr_peak_bytes(c) <= mm->budget);
    dbr_ctx_free(base);
    dbr_ctx_free(c);
}

static void cnn_half(void **state) {
    (void)state;
    budgeted_equals_unbudgeted(M_DEEP_CNN, 0.5, DBR_RECOMPUTE_AUTO);
}

/* The zoo's two-layer cnn: its first layer's backward (batch norm's
 * working set) is most of its peak, so only a little can be traded. */
static void zoo_cnn_tight(void **state) {
    (void)state;
    budgeted_equals_unbudgeted(M_CNN, 0.85, DBR_RECOMPUTE_AUTO);
}

static void gpt_dropout_half(void **state) {
    (void)state;
    budgeted_equals_unbudgeted(M_GPT, 0.5, DBR_RECOMPUTE_AUTO);
    dbr_gpt_configure(NULL);
}

static void dropout_chain_recomputes_same_bits(void **state) {
    (void)state;
    budgeted_equals_unbudgeted(M_CHAIN, 0.7, DBR_RECOMPUTE_CHEN);
    budgeted_equals_unbudgeted(M_CHAIN, 0.7, DBR_RECOMPUTE_DP);
}

/* Below the least reachable peak: a clear error with that least peak,
 * naming the caller's line; nothing aborts. */
static void infeasible_budget_says_the_minimum(void **state) {
    (void)state;
    double l[2];
    char msg[1024] = "";
    run r = {.m = M_CNN, .steps = 1, .budget = 64 << 10};
    dbr_ctx *c = train(&r, l, msg, sizeof msg);
    assert_null(c);
    printf("# %s\n", msg);
    assert_non_null(strstr(msg, "memory budget 64.00 KiB cannot be met"));
    assert_non_null(strstr(msg, "the least this step can take is"));
    assert_non_null(strstr(msg, "test_budget.c:"));
}

/* A budget above the no-recompute peak changes nothing. */
static void loose_budget_recomputes_nothing(void **state) {
    (void)state;
    double l[4];
    char msg[1024] = "";
    run r = {.m = M_CNN, .steps = 2, .budget = 1ll << 40};
    dbr_ctx *c = train(&r, l, msg, sizeof msg);
    if (!c) fail_msg("%s", msg);
    dbr_stats st;
    dbr_stats_get(c, &st);
    assert_int_equal(st.mem.recomputed, 0);
    assert_int_equal(st.mem.arena, st.mem.noremat_arena);
    dbr_ctx_free(c);
}

/* Meta mode plans the same step compiled mode runs: the same arena, parts
 * and recomputation, without any data. */
static void meta_plans_what_compiled_runs(void **state) {
    (void)state;
    double l[2];
    char msg[1024] = "";
    run r = {.m = M_DEEP_CNN, .steps = 1, .frac = 0.5};
    dbr_ctx *c = train(&r, l, msg, sizeof msg);
    if (!c) fail_msg("%s", msg);
    dbr_stats st;
    dbr_stats_get(c, &st);
    dbr_ctx_free(c);

    dbr_config cfg = dbr_config_default();
    cfg.seed = 7;
    cfg.mode = DBR_MODE_META;
    cfg.memory_budget_frac = 0.5;
    dbr_ctx *m = dbr_ctx_new(&cfg);
    assert_int_equal(dbr_optim_set(m, &(dbr_optim){.kind = DBR_MOMENTUM, .lr = 0.05, .momentum = 0.9}), 0);
    dbr_step_begin(m);
    dbr_tensor *x = dbr_input(m, DBR_F32, DBR_SHAPE(16, 784), NULL, false);
    dbr_tensor *y = dbr_input(m, DBR_I32, DBR_SHAPE(16), NULL, false);
    dbr_tensor *loss = dbr_cross_entropy(m, deep_cnn(m, x), y);
    assert_int_equal(dbr_backward(m, loss), 0);
    assert_int_equal(dbr_optim_step(m), 0);
    dbr_step_mem pm;
    if (dbr_plan_step(m, &pm)) fail_msg("%s", dbr_error(m));
    printf("# compiled / meta: arena %lld / %lld, no-recompute arena %lld / %lld, budget %lld / "
           "%lld, inputs %lld / %lld, outputs %lld / %lld\n",
           (long long)st.mem.arena, (long long)pm.arena, (long long)st.mem.noremat_arena,
           (long long)pm.noremat_arena, (long long)st.mem.budget, (long long)pm.budget,
           (long long)st.mem.inputs, (long long)pm.inputs, (long long)st.mem.outputs,
           (long long)pm.outputs);
    assert_true(pm.feasible);
    assert_int_equal(pm.arena, st.mem.arena);
    assert_int_equal(pm.noremat_arena, st.mem.noremat_arena);
    assert_int_equal(pm.params, st.mem.params);
    assert_int_equal(pm.optim_state, st.mem.optim_state);
    assert_int_equal(pm.recomputed, st.mem.recomputed);
    assert_true(pm.peak <= pm.budget);
    dbr_step_end(m);

    /* below the least reachable peak: not an error, but feasible false */
    dbr_ctx_free(m);
    cfg.memory_budget_frac = 0;
    cfg.memory_budget = 100 << 10;
    m = dbr_ctx_new(&cfg);
    dbr_step_begin(m);
    x = dbr_input(m, DBR_F32, DBR_SHAPE(16, 784), NULL, false);
    y = dbr_input(m, DBR_I32, DBR_SHAPE(16), NULL, false);
    loss = dbr_cross_entropy(m, deep_cnn(m, x), y);
    assert_int_equal(dbr_backward(m, loss), 0);
    assert_int_equal(dbr_plan_step(m, &pm), 0);
    assert_false(pm.feasible);
    assert_true(pm.min_peak > pm.budget);
    assert_true(pm.min_peak <= pm.peak);
    dbr_step_end(m);
    dbr_ctx_free(m);

    /* eager mode records nothing to plan: an error naming this line */
    m = dbr_ctx_new(&(dbr_config){.mode = DBR_MODE_EAGER});
    assert_int_equal(dbr_plan_step(m, &pm), -1);
    assert_non_null(strstr(dbr_error(m), "test_budget.c:"));
    dbr_ctx_free(m);
}

/* A bad budget setting makes the context refuse work with one message. */
static void bad_budget_config(void **state) {
    (void)state;
    dbr_config cfg = dbr_config_default();
    cfg.mode = DBR_MODE_COMPILED;
    cfg.memory_budget_frac = 1.5;
    dbr_ctx *c = dbr_ctx_new(&cfg);
    assert_non_null(dbr_error(c));
    assert_non_null(strstr(dbr_error(c), "memory_budget_frac must be in [0, 1], got 1.5"));
    assert_null(dbr_param(c, "w", DBR_F32, DBR_SHAPE(2), DBR_INIT_ZEROS));
    dbr_ctx_free(c);
    cfg.memory_budget_frac = 0;
    cfg.recompute = (dbr_recompute)42;
    c = dbr_ctx_new(&cfg);
    assert_non_null(strstr(dbr_error(c), "unknown recompute strategy 42"));
    dbr_ctx_free(c);
}

/* A budget in bytes holds for every plan: training fits it, a forward pass
 * at a batch too large for it is refused with the least it needs. */
static void forward_over_budget_is_refused(void **state) {
    (void)state;
    double l[2];
    char msg[1024] = "";
    run r = {.m = M_DEEP_CNN, .steps = 1, .frac = 0.6};
    dbr_ctx *c = train(&r, l, msg, sizeof msg);
    if (!c) fail_msg("%s", msg);
    dbr_stats st;
    dbr_stats_get(c, &st);
    assert_true(st.mem.budget > 0);
    static float big[64 * 784];
    dbr_set_training(c, false);
    dbr_step_begin(c);
    dbr_tensor *x = dbr_input(c, DBR_F32, DBR_SHAPE(64, 784), big, false);
    dbr_tensor *z = deep_cnn(c, x);
    float out[64 * 10];
    assert_int_equal(dbr_copy_out(c, z, out, sizeof out), -1);
    printf("# %s\n", dbr_error(c));
    assert_non_null(strstr(dbr_error(c), "cannot be met"));
    assert_non_null(strstr(dbr_error(c), "test_budget.c:"));
    dbr_step_end(c);
    dbr_ctx_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cnn_half),
        cmocka_unit_test(zoo_cnn_tight),
        cmocka_unit_test(gpt_dropout_half),
        cmocka_unit_test(dropout_chain_recomputes_same_bits),
        cmocka_unit_test(infeasible_budget_says_the_minimum),
        cmocka_unit_test(loose_budget_recomputes_nothing),
        cmocka_unit_test(meta_plans_what_compiled_runs),
        cmocka_unit_test(bad_budget_config),
        cmocka_unit_test(forward_over_budget_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
