/* test_remat_ir.c: a recorded forward pass (meta mode, no data) as the
 * recomputation planner's graph: nodes, bytes, retain masks, leaves and the
 * cost model's times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dbr.h"
#include "ir/graph.h"
#include "models/models.h"
#include "passes/remat_ir.h"

#include <string.h>

static const dbr_graph *record(dbr_ctx *ctx, dbr_model_fn fn, int rank, const int64_t *shape,
                               dbr_dtype dt) {
    dbr_step_begin(ctx);
    dbr_tensor *x = dbr_input(ctx, dt, rank, shape, NULL, false);
    dbr_tensor *z = fn(ctx, x);
    if (!z) fail_msg("%s", dbr_error(ctx));
    return dbr_graph_of(ctx);
}

static dbr_ctx *meta_ctx(void) {
    dbr_config cfg = dbr_config_default();
    cfg.mode = DBR_MODE_META;
    return dbr_ctx_new(&cfg);
}

static void mlp_graph(void **state) {
    (void)state;
    dbr_ctx *ctx = meta_ctx();
    const dbr_graph *g = record(ctx, dbr_model_mlp, DBR_SHAPE(64, 784), DBR_F32);
    dbr_cost_model cm = dbr_cost_model_cpu();
    dbr_rgraph r;
    char err[256];
    assert_int_equal(dbr_rgraph_from_ir(g, &cm, &r, err, sizeof err), 0);
    /* reshape, then 3 x (matmul, add) with relu between: 9 forward nodes */
    assert_int_equal(r.n, 9);
    assert_string_equal(r.op[1], "matmul");
    assert_int_equal(r.bytes[1], 64 * 512 * 4);
    /* matmul's backward reads both inputs: the reshaped x (node 0) and fc1.w (a leaf) */
    assert_int_equal(r.retain[1], 3u);
    assert_int_equal(r.ins[r.in_first[1]], 0);
    int32_t w = -1 - r.ins[r.in_first[1] + 1];
    assert_true(w >= 0 && w < r.n_leaves);
    assert_string_equal(r.leaf_id[w], "fc1.w");
    assert_true(r.leaf_is_param[w]);
    assert_int_equal(r.leaf_bytes[w], 512 * 784 * 4);
    /* relu keeps its output for backward, add keeps nothing */
    assert_string_equal(r.op[3], "relu");
    assert_int_equal(r.retain[3], DBR_RG_RETAIN_OUT);
    assert_int_equal(r.retain[2], 0u);
    for (int32_t i = 0; i < r.n; i++) {
        assert_true(r.time[i] > 0);
        for (int32_t k = r.in_first[i]; k < r.in_first[i + 1]; k++) assert_true(r.ins[k] < i);
    }
    /* 2*64*784*512 flops at 105 GFLOP/s dominate the first matmul */
    assert_true(r.time[1] > 2.0 * 64 * 784 * 512 / 105e9);
    dbr_rgraph_free(&r);
    dbr_step_end(ctx);
    dbr_ctx_free(ctx);
}

/* The planner's view of ResNet-50 at batch 32: every forward op, and the
 * activations add up to what the model holds. */
static void resnet50_graph(void **state) {
    (void)state;
    dbr_ctx *ctx = meta_ctx();
    const dbr_graph *g = record(ctx, dbr_model_resnet50, DBR_SHAPE(32, 3, 224, 224), DBR_F32);
    dbr_cost_model cm = dbr_cost_model_cpu();
    dbr_rgraph r;
    char err[256];
    assert_int_equal(dbr_rgraph_from_ir(g, &cm, &r, err, sizeof err), 0);
    int32_t fwd = 0, convs = 0;
    for (int32_t k = 0; k < g->n_nodes; k++) fwd += g->nodes[k].phase == DBR_PH_FWD;
    for (int32_t i = 0; i < r.n; i++) convs += strcmp(r.op[i], "conv2d") == 0;
    assert_int_equal(r.n, fwd);
    assert_int_equal(convs, 53); /* stem + 16 bottlenecks x 3 + 4 projection shortcuts */
    int64_t params = 0;
    for (int32_t l = 0; l < r.n_leaves; l++)
        if (r.leaf_is_param[l]) params += r.leaf_bytes[l];
    /* every trainable parameter; batch norm running statistics are updated on
     * the host from its statistics op, not read by the graph */
    assert_int_equal(params, 25557032LL * 4);
    dbr_rgraph_free(&r);
    dbr_step_end(ctx);
    dbr_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mlp_graph),
        cmocka_unit_test(resnet50_graph),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
