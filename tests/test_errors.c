/* test_errors.c: user mistakes through the public API. Each must fail with
 * NULL (or -1) and a message naming this file and line, the entry point and
 * the shapes involved; the first message sticks until dbr_clear_error. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkdtemp, setenv */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dbr.h"

#define FRAGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static int setup(void **state) {
    dbr_config cfg = dbr_config_default();
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    if (!ctx || dbr_error(ctx)) return -1;
    dbr_step_begin(ctx);
    *state = ctx;
    return 0;
}

static int teardown(void **state) {
    dbr_ctx *ctx = *state;
    dbr_step_end(ctx);
    dbr_ctx_free(ctx);
    return 0;
}

static dbr_tensor *full(dbr_ctx *ctx, dbr_dtype dt, int ndim, const int64_t *shape) {
    dbr_tensor *t = dbr_full(ctx, dt, ndim, shape, 0.5);
    assert_non_null(t);
    assert_null(dbr_error(ctx));
    return t;
}
#define F32(...) full(ctx, DBR_F32, DBR_SHAPE(__VA_ARGS__))

/* The message reads "test_errors.c:LINE: API: ..." and holds every fragment;
 * ops given the failed result return NULL and keep it; clearing resets it. */
static void expect_error(dbr_ctx *ctx, int line, const char *api, const char *const *frags) {
    const char *e = dbr_error(ctx);
    if (!e) fail_msg("no error recorded for %s at line %d", api, line);
    char head[128];
    snprintf(head, sizeof head, "test_errors.c:%d: %s: ", line, api);
    if (strncmp(e, head, strlen(head)) != 0) fail_msg("'%s' does not start with '%s'", e, head);
    for (int i = 0; frags[i]; i++)
        if (!strstr(e, frags[i])) fail_msg("'%s' lacks '%s'", e, frags[i]);
    char saved[2048];
    snprintf(saved, sizeof saved, "%s", e);
    assert_null(dbr_relu(ctx, NULL));
    assert_null(dbr_add(ctx, NULL, NULL));
    assert_null(dbr_matmul(ctx, NULL, NULL, false, false));
    assert_null(dbr_sum(ctx, NULL, DBR_ALL_AXES, false));
    assert_string_equal(dbr_error(ctx), saved);
    dbr_clear_error(ctx);
    assert_null(dbr_error(ctx));
}

static void matmul_inner_dims(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *a = F32(64, 784), *b = F32(512, 10);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_matmul(ctx, a, b, false, false);
    assert_null(r);
    char want[256];
    snprintf(want, sizeof want,
             "test_errors.c:%d: dbr_matmul: shapes [64,784] and [512,10] do not match "
             "(inner dims 784 vs 512)",
             line);
    assert_string_equal(dbr_error(ctx), want);
    /* a later op given the NULL result returns NULL and keeps the message */
    assert_null(dbr_relu(ctx, r));
    assert_string_equal(dbr_error(ctx), want);
    expect_error(ctx, line, "dbr_matmul", FRAGS("[64,784]", "[512,10]"));
}

static void add_not_broadcastable(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *a = F32(3, 4), *b = F32(5);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_add(ctx, a, b);
    assert_null(r);
    expect_error(ctx, line, "dbr_add", FRAGS("[3,4]", "[5]", "cannot broadcast"));
}

static void dtype_mismatch(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *a = F32(2, 3), *b = full(ctx, DBR_F64, DBR_SHAPE(2, 3));
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_mul(ctx, a, b);
    assert_null(r);
    expect_error(ctx, line, "dbr_mul", FRAGS("dtypes f32 and f64 differ"));
}

static void sum_axis_out_of_range(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *x = F32(2, 3);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_sum(ctx, x, DBR_AXES(3), false);
    assert_null(r);
    expect_error(ctx, line, "dbr_sum", FRAGS("axis 3 out of range for shape [2,3]"));
    line = __LINE__ + 1;
    r = dbr_mean(ctx, x, DBR_AXES(0, -3), true);
    assert_null(r);
    expect_error(ctx, line, "dbr_mean", FRAGS("axis -3 out of range for shape [2,3]"));
}

static void softmax_bad_axis(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *x = F32(2, 3);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_softmax(ctx, x, 2);
    assert_null(r);
    expect_error(ctx, line, "dbr_softmax", FRAGS("axis 2 out of range for shape [2,3]"));
    line = __LINE__ + 1;
    r = dbr_log_softmax(ctx, x, -3);
    assert_null(r);
    expect_error(ctx, line, "dbr_log_softmax", FRAGS("axis -3 out of range for shape [2,3]"));
}

static void reshape_count_mismatch(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *x = F32(6, 4);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_reshape(ctx, x, DBR_SHAPE(5, 5));
    assert_null(r);
    expect_error(ctx, line, "dbr_reshape", FRAGS("[6,4] (24 elements)", "[5,5] (25 elements)"));
}

static void reshape_two_inferred(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *x = F32(6, 4);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_reshape(ctx, x, DBR_SHAPE(-1, 2, -1));
    assert_null(r);
    expect_error(ctx, line, "dbr_reshape", FRAGS("[6,4]", "more than one -1"));
}

static void permute_not_a_permutation(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *x = F32(2, 3, 4);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_permute(ctx, x, DBR_AXES(0, 0, 1));
    assert_null(r);
    expect_error(ctx, line, "dbr_permute", FRAGS("[0,0,1] is not a permutation", "[2,3,4]"));
    line = __LINE__ + 1;
    r = dbr_permute(ctx, x, DBR_AXES(1, 0));
    assert_null(r);
    expect_error(ctx, line, "dbr_permute", FRAGS("[2,3,4]", "2 axes"));
}

static void conv2d_channel_mismatch(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *x = F32(1, 3, 8, 8), *w = F32(4, 2, 3, 3);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_conv2d(ctx, x, w, NULL, .padding = {1, 1});
    assert_null(r);
    expect_error(ctx, line, "dbr_conv2d", FRAGS("[1,3,8,8] has 3 channels", "[4,2,3,3] expects 2"));
}

static void conv2d_output_empty(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *x = F32(1, 1, 2, 2), *w = F32(1, 1, 5, 5);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_conv2d(ctx, x, w, NULL, .stride = {1, 1});
    assert_null(r);
    expect_error(ctx, line, "dbr_conv2d", FRAGS("output size", "[1,1,2,2]", "kernel 5x5"));
}

static void max_pool_needs_4d(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *x = F32(3, 8, 8);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_max_pool2d(ctx, x, 2, 2, 0);
    assert_null(r);
    expect_error(ctx, line, "dbr_max_pool2d", FRAGS("[3,8,8] must be 4-D"));
}

static void cross_entropy_float_labels(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *z = F32(4, 10), *y = F32(4);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_cross_entropy(ctx, z, y);
    assert_null(r);
    expect_error(ctx, line, "dbr_cross_entropy", FRAGS("labels dtype f32", "integer"));
}

static void cross_entropy_batch_mismatch(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *z = F32(4, 10), *y = full(ctx, DBR_I32, DBR_SHAPE(5));
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_cross_entropy(ctx, z, y);
    assert_null(r);
    expect_error(ctx, line, "dbr_cross_entropy", FRAGS("labels [5]", "logits [4,10]"));
}

static void cross_entropy_label_out_of_range(void **state) {
    dbr_ctx *ctx = *state;
    int32_t lab[3] = {1, 10, 2};
    dbr_tensor *z = F32(3, 10), *y = dbr_input(ctx, DBR_I32, DBR_SHAPE(3), lab, true);
    assert_non_null(y);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_cross_entropy(ctx, z, y);
    assert_null(r);
    expect_error(ctx, line, "dbr_cross_entropy", FRAGS("label 10", "[0, 10)"));
}

static void embedding_index_out_of_range(void **state) {
    dbr_ctx *ctx = *state;
    int64_t idx[4] = {0, 3, -1, 2};
    dbr_tensor *w = F32(10, 3), *i = dbr_input(ctx, DBR_I64, DBR_SHAPE(2, 2), idx, false);
    assert_non_null(i);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_embedding(ctx, w, i);
    assert_null(r);
    expect_error(ctx, line, "dbr_embedding", FRAGS("index -1", "[0, 10)"));
}

static void embedding_float_indices(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *w = F32(10, 3), *idx = F32(4);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_embedding(ctx, w, idx);
    assert_null(r);
    expect_error(ctx, line, "dbr_embedding", FRAGS("index dtype f32", "integer"));
}

static void linear_wrong_weight(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *x = F32(8, 20), *w = F32(10, 30);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_linear(ctx, x, w, NULL);
    assert_null(r);
    expect_error(ctx, line, "dbr_linear", FRAGS("[8,20]", "[10,30]"));
    dbr_tensor *w2 = F32(10, 20), *b = F32(7);
    line = __LINE__ + 1;
    r = dbr_linear(ctx, x, w2, b);
    assert_null(r);
    expect_error(ctx, line, "dbr_linear", FRAGS("[7]", "[10,20]"));
}

static void slice_empty_or_step_zero(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *x = F32(5, 6);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_slice(ctx, x, 1, 4, 2, 1);
    assert_null(r);
    expect_error(ctx, line, "dbr_slice", FRAGS("[4:4]", "empty"));
    line = __LINE__ + 1;
    r = dbr_slice(ctx, x, 0, 0, 5, 0);
    assert_null(r);
    expect_error(ctx, line, "dbr_slice", FRAGS("step", "got 0"));
    line = __LINE__ + 1;
    r = dbr_slice(ctx, x, 2, 0, 1, 1);
    assert_null(r);
    expect_error(ctx, line, "dbr_slice", FRAGS("axis 2 out of range for shape [5,6]"));
}

static void concat_mismatched(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *xs[3] = {F32(2, 3), F32(2, 4), F32(2, 3)};
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_concat(ctx, 3, xs, 0);
    assert_null(r);
    expect_error(ctx, line, "dbr_concat", FRAGS("[2,3] and [2,4]"));
    dbr_tensor *ys[2] = {F32(2, 3), F32(2, 3, 1)};
    line = __LINE__ + 1;
    r = dbr_concat(ctx, 2, ys, 1);
    assert_null(r);
    expect_error(ctx, line, "dbr_concat", FRAGS("[2,3] and [2,3,1]"));
}

static void dropout_bad_p(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *x = F32(4, 4);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_dropout(ctx, x, 1.5);
    assert_null(r);
    expect_error(ctx, line, "dbr_dropout", FRAGS("1.5", "[0, 1)"));
    line = __LINE__ + 1;
    r = dbr_dropout(ctx, x, -0.1);
    assert_null(r);
    expect_error(ctx, line, "dbr_dropout", FRAGS("-0.1"));
}

static void param_redefined(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *w = dbr_param(ctx, "fc.w", DBR_F32, DBR_SHAPE(3, 4), DBR_INIT_XAVIER_UNIFORM);
    assert_non_null(w);
    assert_ptr_equal(dbr_param(ctx, "fc.w", DBR_F32, DBR_SHAPE(3, 4), DBR_INIT_ZEROS), w);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_param(ctx, "fc.w", DBR_F32, DBR_SHAPE(4, 3), DBR_INIT_XAVIER_UNIFORM);
    assert_null(r);
    expect_error(ctx, line, "dbr_param", FRAGS("'fc.w'", "[3,4]", "[4,3]"));
    line = __LINE__ + 1;
    r = dbr_param(ctx, "fc.w", DBR_F64, DBR_SHAPE(3, 4), DBR_INIT_ZEROS);
    assert_null(r);
    expect_error(ctx, line, "dbr_param", FRAGS("'fc.w'", "f32 [3,4]", "f64 [3,4]"));
}

static void backward_non_scalar(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *w = dbr_param(ctx, "w", DBR_F32, DBR_SHAPE(2, 3), DBR_INIT_ONES);
    dbr_tensor *y = dbr_mul(ctx, w, w);
    assert_non_null(y);
    int line = __LINE__ + 1;
    int rc = dbr_backward(ctx, y);
    assert_int_not_equal(rc, 0);
    expect_error(ctx, line, "dbr_backward", FRAGS("[2,3]", "one element"));
}

static void load_missing_file(void **state) {
    dbr_ctx *ctx = *state;
    const char *path = "/nonexistent-dbr-dir/weights.npz";
    int line = __LINE__ + 1;
    int rc = dbr_load(ctx, path);
    assert_int_not_equal(rc, 0);
    expect_error(ctx, line, "dbr_load", FRAGS(path, "cannot open"));
}

static void fashion_mnist_empty_dir(void **state) {
    dbr_ctx *ctx = *state;
    char dir[] = "/tmp/dbr-test-errors-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *old = getenv("DBR_FASHION_MNIST");
    char *saved = old ? strdup(old) : NULL;
    setenv("DBR_FASHION_MNIST", dir, 1);
    dbr_dataset ds;
    int line = __LINE__ + 1;
    int rc = dbr_fashion_mnist(ctx, true, &ds);
    if (saved)
        setenv("DBR_FASHION_MNIST", saved, 1);
    else
        unsetenv("DBR_FASHION_MNIST");
    free(saved);
    rmdir(dir);
    assert_int_not_equal(rc, 0);
    assert_null(ds.images);
    assert_null(ds.labels);
    dbr_dataset_free(&ds);
    expect_error(ctx, line, "dbr_fashion_mnist", FRAGS(dir, "train-images"));
}

static void input_too_many_dims(void **state) {
    dbr_ctx *ctx = *state;
    float data[1] = {0};
    int64_t shape[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_input(ctx, DBR_F32, 9, shape, data, true);
    assert_null(r);
    expect_error(ctx, line, "dbr_input", FRAGS("ndim 9"));
}

static void batch_norm_gamma_mismatch(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *x = F32(4, 3), *g = F32(4), *b = F32(3);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_batch_norm(ctx, x, g, b, NULL, NULL, 0.1, 1e-5);
    assert_null(r);
    expect_error(ctx, line, "dbr_batch_norm", FRAGS("gamma f32 [4]", "[4,3]", "expected [3]"));
}

static void layer_norm_gamma_mismatch(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *x = F32(4, 6), *g = F32(5), *b = F32(6);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_layer_norm(ctx, x, g, b, 1e-5);
    assert_null(r);
    expect_error(ctx, line, "dbr_layer_norm", FRAGS("gamma f32 [5]", "[4,6]", "expected [6]"));
}

static void where_not_broadcastable(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *m = full(ctx, DBR_I32, DBR_SHAPE(3, 1)), *a = F32(3, 4), *b = F32(2, 4);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_where(ctx, m, a, b);
    assert_null(r);
    expect_error(ctx, line, "dbr_where", FRAGS("[3,1]", "[2,4]", "broadcast"));
}

static void broadcast_to_impossible(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *x = F32(3, 2);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_broadcast_to(ctx, x, DBR_SHAPE(4, 3, 5));
    assert_null(r);
    expect_error(ctx, line, "dbr_broadcast_to", FRAGS("[3,2]", "[4,3,5]"));
}

/* The first error is the one kept: a second mistake does not replace it. */
static void first_error_wins(void **state) {
    dbr_ctx *ctx = *state;
    dbr_tensor *a = F32(2, 3), *b = F32(4, 5);
    int line = __LINE__ + 1;
    dbr_tensor *r = dbr_matmul(ctx, a, b, false, false);
    assert_null(r);
    assert_null(dbr_add(ctx, a, b));           /* a second, different mistake */
    assert_null(dbr_softmax(ctx, a, 7));
    assert_non_null(dbr_add(ctx, a, a));       /* a valid op still runs */
    expect_error(ctx, line, "dbr_matmul", FRAGS("[2,3]", "[4,5]"));
    /* after clearing, the next mistake is recorded */
    line = __LINE__ + 1;
    assert_null(dbr_add(ctx, a, b));
    expect_error(ctx, line, "dbr_add", FRAGS("[2,3]", "[4,5]"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(matmul_inner_dims, setup, teardown),
        cmocka_unit_test_setup_teardown(add_not_broadcastable, setup, teardown),
        cmocka_unit_test_setup_teardown(dtype_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(sum_axis_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(softmax_bad_axis, setup, teardown),
        cmocka_unit_test_setup_teardown(reshape_count_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(reshape_two_inferred, setup, teardown),
        cmocka_unit_test_setup_teardown(permute_not_a_permutation, setup, teardown),
        cmocka_unit_test_setup_teardown(conv2d_channel_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(conv2d_output_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(max_pool_needs_4d, setup, teardown),
        cmocka_unit_test_setup_teardown(cross_entropy_float_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(cross_entropy_batch_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(cross_entropy_label_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(embedding_float_indices, setup, teardown),
        cmocka_unit_test_setup_teardown(embedding_index_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(linear_wrong_weight, setup, teardown),
        cmocka_unit_test_setup_teardown(slice_empty_or_step_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(concat_mismatched, setup, teardown),
        cmocka_unit_test_setup_teardown(dropout_bad_p, setup, teardown),
        cmocka_unit_test_setup_teardown(param_redefined, setup, teardown),
        cmocka_unit_test_setup_teardown(backward_non_scalar, setup, teardown),
        cmocka_unit_test_setup_teardown(load_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(fashion_mnist_empty_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(input_too_many_dims, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_norm_gamma_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(layer_norm_gamma_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(where_not_broadcastable, setup, teardown),
        cmocka_unit_test_setup_teardown(broadcast_to_impossible, setup, teardown),
        cmocka_unit_test_setup_teardown(first_error_wins, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
