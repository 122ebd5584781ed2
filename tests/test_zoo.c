/* test_zoo.c: the model zoo. In meta mode every model builds at its paper's
 * input size (batch 2) with the paper's output shape and parameter count;
 * in eager mode small configurations train on random data; wrong inputs
 * give a dbr_error, not a crash. */
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

static int64_t count_params(dbr_ctx *ctx) {
    int64_t n = 0;
    for (dbr_tensor *p = dbr_params_next(ctx, NULL); p; p = dbr_params_next(ctx, p))
        if (p->kind == DBR_KIND_PARAM) n += p->numel;
    return n;
}

/* Builds `name` in meta mode on an input of shape `in` and checks the
 * output shape and the number of trainable parameters. */
static void meta_check(const char *name, dbr_dtype dt, int in_ndim, const int64_t *in,
                       int out_ndim, const int64_t *out, int64_t params) {
    const dbr_model_info *m = dbr_model_find(name);
    assert_non_null(m);
    dbr_config cfg = dbr_config_default();
    cfg.mode = DBR_MODE_META;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    assert_non_null(ctx);
    dbr_step_begin(ctx);
    dbr_tensor *x = dbr_input(ctx, dt, in_ndim, in, NULL, false);
    dbr_tensor *z = m->fn(ctx, x);
    if (!z) fail_msg("%s: %s", name, dbr_error(ctx));
    assert_null(dbr_error(ctx));
    assert_int_equal(z->ndim, out_ndim);
    for (int i = 0; i < out_ndim; i++) assert_int_equal(z->shape[i], out[i]);
    int64_t n = count_params(ctx);
    printf("  %-12s %lld parameters\n", name, (long long)n);
    assert_int_equal(n, params);
    assert_true(dbr_live_bytes(ctx) == 0);
    dbr_step_end(ctx);
    dbr_ctx_free(ctx);
}

/* The registry's input description agrees with the model. */
static void meta_entry(const char *name, int out_ndim, const int64_t *out, int64_t params) {
    const dbr_model_info *m = dbr_model_find(name);
    assert_non_null(m);
    int64_t in[4] = {2};
    for (int i = 0; i < m->input_rank; i++) in[1 + i] = m->input_dims[i];
    meta_check(name, m->input_dtype, 1 + m->input_rank, in, out_ndim, out, params);
}

static void resnet50(void **state) {
    (void)state;
    /* torchvision's resnet50: 25,557,032 */
    meta_entry("resnet50", DBR_SHAPE(2, 1000), 25557032);
}

static void resnet152(void **state) {
    (void)state;
    /* torchvision's resnet152: 60,192,808 */
    meta_entry("resnet152", DBR_SHAPE(2, 1000), 60192808);
}

static void vgg19(void **state) {
    (void)state;
    /* torchvision's vgg19 (no BN): 143,667,240 */
    meta_entry("vgg19", DBR_SHAPE(2, 1000), 143667240);
}

static void densenet121(void **state) {
    (void)state;
    /* torchvision's densenet121: 7,978,856 */
    meta_entry("densenet121", DBR_SHAPE(2, 1000), 7978856);
}

static void googlenet(void **state) {
    (void)state;
    /* the paper's network without auxiliary heads: conv biases, 5x5
     * branches, no BN (torchvision's BN variant with 3x3 branches has
     * 6,624,904) */
    meta_entry("googlenet", DBR_SHAPE(2, 1000), 6998552);
}

static void unet(void **state) {
    (void)state;
    /* 64..1024 channels, biased convs, 2x2 up-convs, 1x1 to 2 classes */
    meta_entry("unet", DBR_SHAPE(2, 2, 388, 388), 31030658);
    /* another valid size: 188 + 16k -> H - 184 */
    meta_check("unet", DBR_F32, DBR_SHAPE(2, 1, 204, 220), DBR_SHAPE(2, 2, 20, 36), 31030658);
}

static void gpt(void **state) {
    (void)state;
    dbr_gpt_configure(NULL);
    dbr_gpt_config c = dbr_gpt_config_get();
    int64_t d = c.width, per_block = 12 * d * d + 13 * d;
    int64_t small = c.vocab * d + c.context * d + c.layers * per_block + 2 * d;
    meta_entry("gpt", DBR_SHAPE(2, c.context, c.vocab), small);
    /* GPT-2 small, tied head: 124,439,808 */
    dbr_gpt_configure(&DBR_GPT2_SMALL);
    meta_check("gpt", DBR_I32, DBR_SHAPE(2, 1024), DBR_SHAPE(2, 1024, 50257), 124439808);
    meta_check("gpt", DBR_I64, DBR_SHAPE(2, 7), DBR_SHAPE(2, 7, 50257), 124439808);
    dbr_gpt_configure(NULL);
}

/* ---- wrong inputs --------------------------------------------------------------- */
static void expect_error(const char *name, dbr_mode mode, dbr_dtype dt, int ndim,
                         const int64_t *shape, const char *needle) {
    dbr_config cfg = dbr_config_default();
    cfg.mode = mode;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    dbr_step_begin(ctx);
    size_t bytes = dbr_dtype_size(dt);
    for (int i = 0; i < ndim; i++) bytes *= (size_t)shape[i];
    void *data = mode == DBR_MODE_META ? NULL : calloc(1, bytes);
    dbr_tensor *x = dbr_input(ctx, dt, ndim, shape, data, true);
    free(data);
    assert_non_null(x);
    assert_null(dbr_model_find(name)->fn(ctx, x));
    const char *e = dbr_error(ctx);
    assert_non_null(e);
    printf("  %s: %s\n", name, e);
    if (!strstr(e, needle)) fail_msg("expected '%s' in: %s", needle, e);
    dbr_step_end(ctx);
    dbr_ctx_free(ctx);
}

static void wrong_inputs(void **state) {
    (void)state;
    /* the MNIST-style flat input */
    expect_error("resnet50", DBR_MODE_META, DBR_F32, DBR_SHAPE(2, 784), "dbr_conv2d");
    /* one channel where three are expected, eagerly */
    expect_error("densenet121", DBR_MODE_EAGER, DBR_F32, DBR_SHAPE(2, 1, 32, 32), "dbr_conv2d");
    /* VGG's classifier fixes 224x224 */
    expect_error("vgg19", DBR_MODE_META, DBR_F32, DBR_SHAPE(2, 3, 64, 64), "dbr_linear");
    expect_error("unet", DBR_MODE_META, DBR_F32, DBR_SHAPE(2, 3, 572, 572), "dbr_conv2d");
    /* more tokens than the context; floats for token ids */
    dbr_gpt_configure(&(dbr_gpt_config){.layers = 1, .width = 16, .heads = 2, .context = 8,
                                        .vocab = 32});
    expect_error("gpt", DBR_MODE_EAGER, DBR_I32, DBR_SHAPE(2, 9), "dbr_reshape");
    expect_error("gpt", DBR_MODE_META, DBR_F32, DBR_SHAPE(2, 8), "dbr_embedding");
    dbr_gpt_configure(NULL);
}

/* ---- training ------------------------------------------------------------------- */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* Adam on one fixed random batch; returns the losses in l[0..steps). */
static void train_image(dbr_model_fn fn, int64_t batch, int64_t c, int64_t hw, int steps,
                        double lr, double *l) {
    dbr_config cfg = dbr_config_default();
    cfg.seed = 3;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    assert_int_equal(dbr_optim_set(ctx, &(dbr_optim){.kind = DBR_ADAM, .lr = lr}), 0);
    float *x = malloc((size_t)(batch * c * hw * hw) * sizeof *x);
    int32_t *y = malloc((size_t)batch * sizeof *y);
    for (int64_t i = 0; i < batch * c * hw * hw; i++) x[i] = (float)(next_u32() % 1000) / 500.0f - 1;
    for (int64_t i = 0; i < batch; i++) y[i] = (int32_t)(next_u32() % 1000);
    for (int s = 0; s < steps; s++) {
        dbr_step_begin(ctx);
        dbr_tensor *xt = dbr_input(ctx, DBR_F32, DBR_SHAPE(batch, c, hw, hw), x, false);
        dbr_tensor *yt = dbr_input(ctx, DBR_I32, DBR_SHAPE(batch), y, false);
        dbr_tensor *loss = dbr_cross_entropy(ctx, fn(ctx, xt), yt);
        if (!loss) fail_msg("%s", dbr_error(ctx));
        assert_int_equal(dbr_backward(ctx, loss), 0);
        assert_int_equal(dbr_optim_step(ctx), 0);
        l[s] = dbr_item(ctx, loss);
        assert_true(isfinite(l[s]));
        assert_int_equal(dbr_step_end(ctx), 0);
    }
    assert_null(dbr_error(ctx));
    free(x);
    free(y);
    dbr_ctx_free(ctx);
}

static void train_resnet50(void **state) {
    (void)state;
    enum { STEPS = 6 };
    double l[STEPS];
    train_image(dbr_model_resnet50, 4, 3, 32, STEPS, 1e-3, l);
    printf("  resnet50 32x32: loss %.3f -> %.3f\n", l[0], l[STEPS - 1]);
    assert_true(l[STEPS - 1] < l[0]);
}

static void train_densenet121(void **state) {
    (void)state;
    enum { STEPS = 6 };
    double l[STEPS];
    train_image(dbr_model_densenet121, 4, 3, 32, STEPS, 1e-3, l);
    printf("  densenet121 32x32: loss %.3f -> %.3f\n", l[0], l[STEPS - 1]);
    assert_true(l[STEPS - 1] < l[0]);
}

/* 2 layers of width 32 on one fixed batch of random tokens, Adam, dropout
 * 0.1: the losses of GPT_STEPS steps and the trained token embedding. */
enum { GPT_STEPS = 30, GPT_V = 64, GPT_D = 32 };
static void gpt_run(dbr_mode mode, double *l, float *wte_out) {
    enum { STEPS = GPT_STEPS, N = 4, T = 16, V = GPT_V };
    rng = 0x9e3779b97f4a7c15ull;
    dbr_gpt_configure(&(dbr_gpt_config){.layers = 2, .width = GPT_D, .heads = 2, .context = T,
                                        .vocab = V, .dropout = 0.1});
    dbr_config cfg = dbr_config_default();
    cfg.seed = 5;
    cfg.mode = mode;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    assert_int_equal(dbr_optim_set(ctx, &(dbr_optim){.kind = DBR_ADAM, .lr = 3e-3}), 0);
    int32_t tok[N * (T + 1)], x[N * T], y[N * T];
    for (int i = 0; i < N * (T + 1); i++) tok[i] = (int32_t)(next_u32() % V);
    for (int n = 0; n < N; n++)
        for (int t = 0; t < T; t++) {
            x[n * T + t] = tok[n * (T + 1) + t];
            y[n * T + t] = tok[n * (T + 1) + t + 1];
        }
    for (int s = 0; s < STEPS; s++) {
        dbr_step_begin(ctx);
        dbr_tensor *xt = dbr_input(ctx, DBR_I32, DBR_SHAPE(N, T), x, false);
        dbr_tensor *yt = dbr_input(ctx, DBR_I32, DBR_SHAPE(N * T), y, false);
        dbr_tensor *z = dbr_model_gpt(ctx, xt);
        if (!z) fail_msg("%s", dbr_error(ctx));
        assert_int_equal(z->ndim, 3);
        assert_int_equal(z->shape[2], V);
        dbr_tensor *loss = dbr_cross_entropy(ctx, dbr_reshape(ctx, z, DBR_SHAPE(N * T, V)), yt);
        assert_int_equal(dbr_backward(ctx, loss), 0);
        assert_int_equal(dbr_optim_step(ctx), 0);
        l[s] = dbr_item(ctx, loss);
        assert_true(isfinite(l[s]));
        assert_int_equal(dbr_step_end(ctx), 0);
    }
    assert_null(dbr_error(ctx));
    dbr_tensor *wte = dbr_param_find(ctx, "wte");
    assert_non_null(wte);
    assert_int_equal(dbr_copy_out(ctx, wte, wte_out, V * GPT_D * sizeof(float)), 0);
    dbr_ctx_free(ctx);
    dbr_gpt_configure(NULL);
}

static void train_gpt(void **state) {
    (void)state;
    enum { STEPS = GPT_STEPS, V = GPT_V };
    double l[STEPS], lc[STEPS];
    static float we[V * GPT_D], wc[V * GPT_D];
    gpt_run(DBR_MODE_EAGER, l, we);
    double first = (l[0] + l[1] + l[2]) / 3, last = (l[STEPS - 3] + l[STEPS - 2] + l[STEPS - 1]) / 3;
    printf("  gpt 2x32: loss %.3f -> %.3f (ln V = %.3f)\n", first, last, log((double)V));
    assert_true(fabs(first - log((double)V)) < 0.5); /* starts near chance */
    assert_true(last < first - 0.5);
    /* compiled mode trains the same model to the same parameters */
    gpt_run(DBR_MODE_COMPILED, lc, wc);
    for (int s = 0; s < STEPS; s++) assert_true(fabs(l[s] - lc[s]) < 1e-4);
    assert_memory_equal(we, wc, sizeof we);
}

/* Causality: changing a later token leaves earlier positions' logits as they
 * were (inference mode, so no dropout). */
static void gpt_causal(void **state) {
    (void)state;
    enum { N = 1, T = 8, V = 32 };
    dbr_gpt_configure(&(dbr_gpt_config){.layers = 2, .width = 16, .heads = 4, .context = T,
                                        .vocab = V, .dropout = 0.1});
    dbr_config cfg = dbr_config_default();
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    dbr_set_training(ctx, false);
    int32_t x[T] = {1, 2, 3, 4, 5, 6, 7, 8};
    float a[T * V], b[T * V];
    for (int r = 0; r < 2; r++) {
        if (r) x[5] = 30;
        dbr_step_begin(ctx);
        dbr_tensor *z = dbr_model_gpt(ctx, dbr_input(ctx, DBR_I32, DBR_SHAPE(N, T), x, false));
        if (!z) fail_msg("%s", dbr_error(ctx));
        assert_int_equal(dbr_copy_out(ctx, z, r ? b : a, sizeof a), 0);
        dbr_step_end(ctx);
    }
    assert_memory_equal(a, b, 5 * V * sizeof(float));              /* positions 0..4 */
    assert_memory_not_equal(a + 5 * V, b + 5 * V, V * sizeof(float)); /* position 5 */
    dbr_ctx_free(ctx);
    dbr_gpt_configure(NULL);
}

/* The up-convolution doubles the resolution: a tiny U-Net input trains. */
static void train_unet(void **state) {
    (void)state;
    /* 188x188 is the smallest valid input: 4x4 out. One step, finite. */
    dbr_config cfg = dbr_config_default();
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    assert_int_equal(dbr_optim_set(ctx, &(dbr_optim){.kind = DBR_ADAM, .lr = 1e-4}), 0);
    static float x[188 * 188];
    static int32_t y[16];
    for (int i = 0; i < 188 * 188; i++) x[i] = (float)(next_u32() % 100) / 100.0f;
    for (int i = 0; i < 16; i++) y[i] = (int32_t)(next_u32() % 2);
    double l[2];
    for (int s = 0; s < 2; s++) {
        dbr_step_begin(ctx);
        dbr_tensor *z = dbr_model_unet(ctx, dbr_input(ctx, DBR_F32, DBR_SHAPE(1, 1, 188, 188), x, false));
        if (!z) fail_msg("%s", dbr_error(ctx));
        z = dbr_reshape(ctx, dbr_permute(ctx, z, DBR_AXES(0, 2, 3, 1)), DBR_SHAPE(16, 2));
        dbr_tensor *loss = dbr_cross_entropy(ctx, z, dbr_input(ctx, DBR_I32, DBR_SHAPE(16), y, false));
        assert_int_equal(dbr_backward(ctx, loss), 0);
        assert_int_equal(dbr_optim_step(ctx), 0);
        l[s] = dbr_item(ctx, loss);
        assert_true(isfinite(l[s]));
        dbr_step_end(ctx);
    }
    printf("  unet 188x188: loss %.4f -> %.4f\n", l[0], l[1]);
    assert_null(dbr_error(ctx));
    dbr_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(resnet50),       cmocka_unit_test(resnet152),
        cmocka_unit_test(vgg19),          cmocka_unit_test(densenet121),
        cmocka_unit_test(googlenet),      cmocka_unit_test(unet),
        cmocka_unit_test(gpt),            cmocka_unit_test(wrong_inputs),
        cmocka_unit_test(train_gpt),      cmocka_unit_test(gpt_causal),
        cmocka_unit_test(train_resnet50), cmocka_unit_test(train_densenet121),
        cmocka_unit_test(train_unet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
