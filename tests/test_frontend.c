/* test_frontend.c: the public API above single ops: composites' gradients
 * (float64 central differences through dbr_backward), gradient
 * accumulation, tensor lifetimes and memory accounting, optimizers against
 * hand-computed updates, dropout keys, meta mode and parameter claiming. */
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

/* ---- gradient checks through the public API --------------------------- */
typedef dbr_tensor *(*build_fn)(dbr_ctx *ctx);

static uint64_t lcg = 12345;
static double urand(void) {
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg >> 11) / 9007199254740992.0;
}

/* sum(y * r) for a fixed random r, so every output element gets its own
 * upstream gradient. */
static dbr_tensor *weigh(dbr_ctx *ctx, dbr_tensor *y) {
    if (!y) return NULL;
    static double r[4096];
    uint64_t save = lcg;
    lcg = 99;
    for (int64_t i = 0; i < y->numel && i < 4096; i++) r[i] = urand() * 2 - 1;
    lcg = save;
    dbr_tensor *rt = dbr_input(ctx, DBR_F64, y->ndim, y->shape, r, true);
    return dbr_sum(ctx, dbr_mul(ctx, y, rt), DBR_ALL_AXES, false);
}

static double eval(dbr_ctx *ctx, build_fn f) {
    dbr_step_begin(ctx);
    double v = dbr_item(ctx, f(ctx));
    dbr_step_end(ctx);
    return v;
}

static void check_grads(build_fn f, const char *what) {
    dbr_config cfg = dbr_config_default();
    cfg.seed = 3;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    dbr_step_begin(ctx);
    dbr_tensor *loss = f(ctx);
    if (!loss) fail_msg("%s: %s", what, dbr_error(ctx));
    assert_int_equal(dbr_backward(ctx, loss), 0);
    dbr_step_end(ctx);
    if (dbr_error(ctx)) fail_msg("%s: %s", what, dbr_error(ctx));
    int checked = 0;
    for (dbr_tensor *p = NULL; (p = dbr_params_next(ctx, p)) != NULL;) {
        if (p->kind != DBR_KIND_PARAM) continue;
        assert_non_null(p->grad);
        double *x = p->data, *g = p->grad->data;
        for (int64_t i = 0; i < p->numel; i++) {
            double keep = x[i], h = 1e-6;
            x[i] = keep + h;
            double lp = eval(ctx, f);
            x[i] = keep - h;
            double lm = eval(ctx, f);
            x[i] = keep;
            double num = (lp - lm) / (2 * h);
            double tol = 1e-6 + 1e-5 * fabs(num);
            if (fabs(num - g[i]) > tol)
                fail_msg("%s: d/d%s[%lld]: backward %.9g, central difference %.9g", what, p->name,
                         (long long)i, g[i], num);
            checked++;
        }
    }
    assert_true(checked > 0);
    assert_null(dbr_error(ctx));
    dbr_ctx_free(ctx);
}

static dbr_tensor *P(dbr_ctx *ctx, const char *name, int ndim, const int64_t *shape) {
    return dbr_param(ctx, name, DBR_F64, ndim, shape, DBR_INIT_XAVIER_UNIFORM);
}

static dbr_tensor *f_linear(dbr_ctx *ctx) {
    dbr_tensor *x = P(ctx, "x", DBR_SHAPE(3, 5));
    dbr_tensor *w = P(ctx, "w", DBR_SHAPE(4, 5));
    dbr_tensor *b = P(ctx, "b", DBR_SHAPE(4));
    return weigh(ctx, dbr_linear(ctx, x, w, b));
}

static dbr_tensor *f_conv_bias(dbr_ctx *ctx) {
    dbr_tensor *x = P(ctx, "x", DBR_SHAPE(2, 3, 5, 4));
    dbr_tensor *w = P(ctx, "w", DBR_SHAPE(4, 3, 3, 3));
    dbr_tensor *b = P(ctx, "b", DBR_SHAPE(4));
    return weigh(ctx, dbr_conv2d(ctx, x, w, b, .stride = {2, 1}, .padding = {1, 1}));
}

static dbr_tensor *f_bn_train(dbr_ctx *ctx) {
    dbr_tensor *x = P(ctx, "x", DBR_SHAPE(4, 3, 2, 2));
    dbr_tensor *g = P(ctx, "g", DBR_SHAPE(3));
    dbr_tensor *b = P(ctx, "b", DBR_SHAPE(3));
    dbr_tensor *rm = dbr_buffer(ctx, "rm", DBR_F64, DBR_SHAPE(3), 0.0);
    dbr_tensor *rv = dbr_buffer(ctx, "rv", DBR_F64, DBR_SHAPE(3), 1.0);
    return weigh(ctx, dbr_batch_norm(ctx, x, g, b, rm, rv, 0.1, 1e-5));
}

static dbr_tensor *f_bn_infer(dbr_ctx *ctx) {
    dbr_set_training(ctx, false);
    dbr_tensor *x = P(ctx, "x", DBR_SHAPE(2, 3, 2));
    dbr_tensor *g = P(ctx, "g", DBR_SHAPE(3));
    dbr_tensor *b = P(ctx, "b", DBR_SHAPE(3));
    dbr_tensor *rm = dbr_buffer(ctx, "rm", DBR_F64, DBR_SHAPE(3), 0.5);
    dbr_tensor *rv = dbr_buffer(ctx, "rv", DBR_F64, DBR_SHAPE(3), 2.0);
    return weigh(ctx, dbr_batch_norm(ctx, x, g, b, rm, rv, 0.1, 1e-5));
}

static dbr_tensor *f_layer_norm(dbr_ctx *ctx) {
    dbr_tensor *x = P(ctx, "x", DBR_SHAPE(3, 6));
    dbr_tensor *g = P(ctx, "g", DBR_SHAPE(6));
    dbr_tensor *b = P(ctx, "b", DBR_SHAPE(6));
    return weigh(ctx, dbr_layer_norm(ctx, x, g, b, 1e-5));
}

static dbr_tensor *f_pool_mse(dbr_ctx *ctx) {
    dbr_tensor *x = P(ctx, "x", DBR_SHAPE(2, 3, 4, 4));
    dbr_tensor *t = P(ctx, "t", DBR_SHAPE(2, 3));
    return dbr_mse(ctx, dbr_global_avg_pool(ctx, x), t);
}

/* x used by several consumers, and add(x, x): gradients must accumulate,
 * including when a rule hands back the same tensor for both inputs. */
static dbr_tensor *f_shared(dbr_ctx *ctx) {
    dbr_tensor *x = P(ctx, "x", DBR_SHAPE(3, 4));
    dbr_tensor *h = dbr_tanh(ctx, dbr_scale(ctx, x, 0.7));
    dbr_tensor *y = dbr_add(ctx, h, h);
    dbr_tensor *z = dbr_mul(ctx, y, dbr_sigmoid(ctx, h));
    dbr_tensor *t = dbr_transpose(ctx, dbr_slice(ctx, z, 1, -3, 4, 2), 0, 1);
    dbr_tensor *c = dbr_concat(ctx, 2, ((dbr_tensor *[]){t, dbr_transpose(ctx, h, 0, 1)}), 0);
    return weigh(ctx, c);
}

static dbr_tensor *f_mlp_ce(dbr_ctx *ctx) {
    static const int32_t labels[4] = {2, 0, 1, 2};
    dbr_tensor *x = P(ctx, "x", DBR_SHAPE(4, 5));
    dbr_tensor *w1 = P(ctx, "w1", DBR_SHAPE(6, 5));
    dbr_tensor *w2 = P(ctx, "w2", DBR_SHAPE(3, 6));
    dbr_tensor *h = dbr_gelu(ctx, dbr_linear(ctx, x, w1, NULL));
    dbr_tensor *z = dbr_linear(ctx, h, w2, NULL);
    return dbr_cross_entropy(ctx, z, dbr_input(ctx, DBR_I32, DBR_SHAPE(4), labels, false));
}

static void grad_linear(void **s) { (void)s; check_grads(f_linear, "linear"); }
static void grad_conv_bias(void **s) { (void)s; check_grads(f_conv_bias, "conv2d+bias"); }
static void grad_bn_train(void **s) { (void)s; check_grads(f_bn_train, "batch_norm (training)"); }
static void grad_bn_infer(void **s) { (void)s; check_grads(f_bn_infer, "batch_norm (inference)"); }
static void grad_layer_norm(void **s) { (void)s; check_grads(f_layer_norm, "layer_norm"); }
static void grad_pool_mse(void **s) { (void)s; check_grads(f_pool_mse, "global_avg_pool+mse"); }
static void grad_shared(void **s) { (void)s; check_grads(f_shared, "shared inputs"); }
static void grad_mlp_ce(void **s) { (void)s; check_grads(f_mlp_ce, "mlp+cross_entropy"); }

/* ---- running statistics ------------------------------------------------ */
static void bn_running_stats(void **state) {
    (void)state;
    dbr_ctx *ctx = dbr_ctx_new(NULL);
    double xs[4 * 2] = {1, 10, 2, 20, 3, 30, 6, 60}; /* [4, 2]: channel 0 and 1 */
    dbr_tensor *rm = dbr_buffer(ctx, "rm", DBR_F64, DBR_SHAPE(2), 0.0);
    dbr_tensor *rv = dbr_buffer(ctx, "rv", DBR_F64, DBR_SHAPE(2), 1.0);
    dbr_step_begin(ctx);
    dbr_tensor *x = dbr_input(ctx, DBR_F64, DBR_SHAPE(4, 2), xs, false);
    assert_non_null(dbr_batch_norm(ctx, x, NULL, NULL, rm, rv, 0.1, 1e-5));
    dbr_step_end(ctx);
    double *m = rm->data, *v = rv->data;
    /* channel 0: mean 3, unbiased var (4+1+0+9)/3 */
    assert_true(fabs(m[0] - 0.3) < 1e-12);
    assert_true(fabs(v[0] - (0.9 + 0.1 * 14.0 / 3)) < 1e-12);
    assert_true(fabs(m[1] - 3.0) < 1e-12);
    assert_true(fabs(v[1] - (0.9 + 0.1 * 1400.0 / 3)) < 1e-9);
    dbr_ctx_free(ctx);
}

/* ---- lifetimes and memory accounting ---------------------------------- */
static void lifetimes(void **state) {
    (void)state;
    dbr_ctx *ctx = dbr_ctx_new(NULL);
    dbr_optim_set(ctx, &(dbr_optim){.kind = DBR_ADAM, .lr = 1e-3});
    static float xs[32 * 784];
    static int32_t ys[32];
    for (int i = 0; i < 32 * 784; i++) xs[i] = (float)urand();
    for (int i = 0; i < 32; i++) ys[i] = i % 10;
    int64_t after[3];
    for (int s = 0; s < 3; s++) {
        dbr_step_begin(ctx);
        dbr_tensor *x = dbr_input(ctx, DBR_F32, DBR_SHAPE(32, 784), xs, false);
        dbr_tensor *y = dbr_input(ctx, DBR_I32, DBR_SHAPE(32), ys, false);
        dbr_tensor *logits = dbr_model_mlp(ctx, x);
        dbr_tensor *h = dbr_relu(ctx, logits); /* used by nothing later */
        dbr_keep(logits);
        dbr_tensor *loss = dbr_cross_entropy(ctx, logits, y);
        int64_t before = dbr_live_bytes(ctx);
        assert_int_equal(dbr_backward(ctx, loss), 0);
        /* backward released the forward's intermediates but kept these */
        assert_non_null(logits->data);
        assert_non_null(loss->data);
        assert_null(h->data);
        if (s > 0) assert_true(dbr_live_bytes(ctx) < before);
        /* reading a released tensor is a user error, not a crash */
        assert_true(isnan(dbr_item(ctx, h)));
        assert_non_null(strstr(dbr_error(ctx), "dbr_keep"));
        dbr_clear_error(ctx);
        assert_int_equal(dbr_optim_step(ctx), 0);
        dbr_step_end(ctx);
        after[s] = dbr_live_bytes(ctx);
    }
    /* the steady state holds only parameters, gradients and Adam state */
    int64_t expect = 0;
    for (dbr_tensor *p = NULL; (p = dbr_params_next(ctx, p)) != NULL;)
        expect += 4 * ((p->nbytes + 63) / 64 * 64);
    assert_int_equal(after[1], after[2]);
    assert_int_equal(after[2], expect);
    assert_true(dbr_peak_bytes(ctx) > after[2]);
    dbr_ctx_free(ctx);
}

/* ---- optimizers ---------------------------------------------------------- */
/* One parameter p = [1, -2], loss = sum(p * c): the gradient is c. */
static void opt_run(dbr_optim o, int steps, double out[2]) {
    dbr_ctx *ctx = dbr_ctx_new(NULL);
    assert_int_equal(dbr_optim_set(ctx, &o), 0);
    static const double c[2] = {0.5, -3};
    dbr_tensor *p = dbr_param(ctx, "p", DBR_F64, DBR_SHAPE(2), DBR_INIT_ZEROS);
    ((double *)p->data)[0] = 1;
    ((double *)p->data)[1] = -2;
    for (int s = 0; s < steps; s++) {
        dbr_step_begin(ctx);
        dbr_tensor *ct = dbr_input(ctx, DBR_F64, DBR_SHAPE(2), c, false);
        assert_int_equal(dbr_backward(ctx, dbr_sum(ctx, dbr_mul(ctx, p, ct), DBR_ALL_AXES, false)), 0);
        assert_int_equal(dbr_optim_step(ctx), 0);
        for (int i = 0; i < 2; i++) assert_true(((double *)p->grad->data)[i] == 0);
        dbr_step_end(ctx);
    }
    memcpy(out, p->data, sizeof(double) * 2);
    dbr_ctx_free(ctx);
}

static void close2(const double got[2], double a, double b) {
    if (fabs(got[0] - a) > 1e-12 || fabs(got[1] - b) > 1e-12)
        fail_msg("got [%.15g, %.15g], expected [%.15g, %.15g]", got[0], got[1], a, b);
}

static void optimizers(void **state) {
    (void)state;
    double p[2], c0 = 0.5, c1 = -3, lr = 0.1, wd = 0.01;
    opt_run((dbr_optim){.kind = DBR_SGD, .lr = lr, .weight_decay = wd}, 1, p);
    close2(p, 1 - lr * (c0 + wd * 1), -2 - lr * (c1 + wd * -2));
    /* momentum, two steps: v1 = g1, v2 = mu v1 + g2 */
    opt_run((dbr_optim){.kind = DBR_MOMENTUM, .lr = lr, .momentum = 0.9}, 2, p);
    close2(p, 1 - lr * c0 - lr * (0.9 * c0 + c0), -2 - lr * c1 - lr * (0.9 * c1 + c1));
    /* nesterov, one step: p -= lr (g + mu v), v = g */
    opt_run((dbr_optim){.kind = DBR_MOMENTUM, .lr = lr, .momentum = 0.9, .nesterov = true}, 1, p);
    close2(p, 1 - lr * (c0 + 0.9 * c0), -2 - lr * (c1 + 0.9 * c1));
    /* adam's first step moves each weight by lr * g / (|g| + eps) */
    opt_run((dbr_optim){.kind = DBR_ADAM, .lr = lr}, 1, p);
    close2(p, 1 - lr * c0 / (fabs(c0) + 1e-8), -2 - lr * c1 / (fabs(c1) + 1e-8));
    /* adamw decays the weight itself */
    opt_run((dbr_optim){.kind = DBR_ADAMW, .lr = lr, .weight_decay = wd}, 1, p);
    close2(p, 1 * (1 - lr * wd) - lr * c0 / (fabs(c0) + 1e-8),
           -2 * (1 - lr * wd) - lr * c1 / (fabs(c1) + 1e-8));
}

/* ---- dropout keys ---------------------------------------------------------- */
static void dropout_keys(void **state) {
    (void)state;
    double ones[1000], a[1000], b[1000];
    for (int i = 0; i < 1000; i++) ones[i] = 1;
    dbr_config cfg = dbr_config_default();
    cfg.seed = 5;
    for (int run = 0; run < 2; run++) {
        dbr_ctx *ctx = dbr_ctx_new(&cfg);
        dbr_step_begin(ctx);
        dbr_tensor *x = dbr_input(ctx, DBR_F64, DBR_SHAPE(1000), ones, false);
        dbr_tensor *d1 = dbr_dropout(ctx, x, 0.25);
        dbr_tensor *d2 = dbr_dropout(ctx, x, 0.25);
        assert_int_equal(dbr_copy_out(ctx, d1, run ? b : a, sizeof a), 0);
        double c[1000];
        assert_int_equal(dbr_copy_out(ctx, d2, c, sizeof c), 0);
        assert_true(memcmp(a, c, sizeof c) != 0); /* two calls, two masks */
        int kept = 0;
        for (int i = 0; i < 1000; i++) {
            assert_true(c[i] == 0 || c[i] == 1 / 0.75);
            kept += c[i] != 0;
        }
        assert_in_range(kept, 700, 800);
        dbr_set_training(ctx, false);
        assert_ptr_equal(dbr_dropout(ctx, x, 0.25), x);
        dbr_step_end(ctx);
        dbr_ctx_free(ctx);
    }
    assert_memory_equal(a, b, sizeof a); /* same seed, step and call: same mask */
}

/* ---- meta mode --------------------------------------------------------------- */
static void meta_mode(void **state) {
    (void)state;
    dbr_config cfg = dbr_config_default();
    cfg.mode = DBR_MODE_META;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    assert_null(dbr_error(ctx));
    dbr_step_begin(ctx);
    dbr_tensor *x = dbr_input(ctx, DBR_F32, DBR_SHAPE(1 << 20, 784), NULL, false);
    dbr_tensor *z = dbr_model_cnn(ctx, x);
    if (!z) fail_msg("%s", dbr_error(ctx));
    assert_int_equal(z->ndim, 2);
    assert_int_equal(z->shape[0], 1 << 20);
    assert_int_equal(z->shape[1], 10);
    assert_null(z->data);
    assert_true(dbr_live_bytes(ctx) == 0);
    assert_true(isnan(dbr_item(ctx, z)));
    assert_non_null(strstr(dbr_error(ctx), "meta"));
    dbr_step_end(ctx);
    dbr_ctx_free(ctx);
}

/* ---- parameters --------------------------------------------------------------- */
static void params_by_name(void **state) {
    (void)state;
    dbr_config cfg = dbr_config_default();
    cfg.seed = 11;
    dbr_ctx *a = dbr_ctx_new(&cfg), *b = dbr_ctx_new(&cfg);
    dbr_tensor *p1 = dbr_param(a, "w", DBR_F32, DBR_SHAPE(64, 32), DBR_INIT_KAIMING_UNIFORM);
    assert_ptr_equal(dbr_param(a, "w", DBR_F32, DBR_SHAPE(64, 32), DBR_INIT_ZEROS), p1);
    /* initialization depends on (seed, name), not creation order */
    dbr_param(b, "other", DBR_F32, DBR_SHAPE(3), DBR_INIT_KAIMING_UNIFORM);
    dbr_tensor *p2 = dbr_param(b, "w", DBR_F32, DBR_SHAPE(64, 32), DBR_INIT_KAIMING_UNIFORM);
    assert_memory_equal(p1->data, p2->data, (size_t)p1->nbytes);
    /* kaiming uniform: bound sqrt(6 / fan_in) */
    double bound = sqrt(6.0 / 32), mx = 0, sum2 = 0;
    for (int64_t i = 0; i < p1->numel; i++) {
        double v = ((float *)p1->data)[i];
        mx = fmax(mx, fabs(v));
        sum2 += v * v;
    }
    assert_true(mx <= bound && mx > 0.9 * bound);
    assert_true(fabs(sum2 / (double)p1->numel - bound * bound / 3) < 0.1 * bound * bound / 3);
    dbr_ctx_free(a);
    dbr_ctx_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grad_linear),     cmocka_unit_test(grad_conv_bias),
        cmocka_unit_test(grad_bn_train),   cmocka_unit_test(grad_bn_infer),
        cmocka_unit_test(grad_layer_norm), cmocka_unit_test(grad_pool_mse),
        cmocka_unit_test(grad_shared),     cmocka_unit_test(grad_mlp_ce),
        cmocka_unit_test(bn_running_stats), cmocka_unit_test(lifetimes),
        cmocka_unit_test(optimizers),      cmocka_unit_test(dropout_keys),
        cmocka_unit_test(meta_mode),       cmocka_unit_test(params_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
