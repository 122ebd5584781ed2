/* test_remat_apply.c: a keep set applied to a step graph: unkept forward
 * values read by backward are recomputed by copies placed just before their
 * first backward reader (their unkept inputs first), forward readers keep
 * the original, updates move up to just after what they wait for; and the
 * budget loop on a chain holds memplan's arena to the budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/graph.h"
#include "passes/passes.h"
#include "passes/remat_apply.h"

static char err[512];

static int32_t leaf(dbr_graph *g, dbr_vkind kind, int64_t n) {
    dbr_tinfo t = {.dtype = DT_F32, .ndim = 1, .shape = {n}};
    int32_t id = dbr_graph_leaf(g, kind, &t, kind == DBR_V_CONST ? -1 : 0, 1.0, NULL);
    assert_true(id >= 0);
    return id;
}

static int32_t node(dbr_graph *g, dbr_op op, dbr_phase ph, int n_in, const int32_t *in) {
    dbr_attrs a = {0};
    if (op == DBR_OP_SGD_UPDATE) a.f[0] = 0.1;
    int32_t id = dbr_graph_node(g, op, n_in, in, &a, ph, "test", __FILE__, __LINE__, err, sizeof err);
    if (id < 0) fail_msg("%s: %s", dbr_ops[op].name, err);
    return id;
}

/* Position of the node producing value v in g (node order), or -1. */
static int32_t pos_of(const dbr_graph *g, int32_t v) {
    return v >= 0 && v < g->n_vals ? g->vals[v].producer : -1;
}

/* x, w -> h1 = x*w -> h2 = tanh(h1) -> h3 = tanh(h2) (fwd); backward reads
 * h1 and h2 and makes the gradient of w; an SGD update of w. */
typedef struct step {
    dbr_graph *g;
    int32_t x, w, h1, h2, h3, b1, b2, gw, upd;
} step;

static step make_step(void) {
    step s = {.g = dbr_graph_new()};
    dbr_graph *g = s.g;
    s.x = leaf(g, DBR_V_INPUT, 1024);
    s.w = leaf(g, DBR_V_PARAM, 1024);
    s.h1 = node(g, DBR_OP_MUL, DBR_PH_FWD, 2, (int32_t[]){s.x, s.w});
    s.h2 = node(g, DBR_OP_TANH, DBR_PH_FWD, 1, (int32_t[]){s.h1});
    s.h3 = node(g, DBR_OP_TANH, DBR_PH_FWD, 1, (int32_t[]){s.h2});
    g->vals[s.h3].is_output = true;
    s.b1 = node(g, DBR_OP_MUL, DBR_PH_BWD, 2, (int32_t[]){s.h3, s.h2}); /* reads h2 */
    s.b2 = node(g, DBR_OP_MUL, DBR_PH_BWD, 2, (int32_t[]){s.b1, s.h1}); /* reads h1 */
    s.gw = node(g, DBR_OP_MUL, DBR_PH_BWD, 2, (int32_t[]){s.b2, s.x});
    s.upd = node(g, DBR_OP_SGD_UPDATE, DBR_PH_OPT, 2, (int32_t[]){s.w, s.gw});
    g->vals[s.upd].is_output = true;
    return s;
}

static void recompute_before_first_backward_reader(void **state) {
    (void)state;
    step s = make_step();
    bool *keep = malloc((size_t)s.g->n_vals * sizeof *keep);
    for (int32_t v = 0; v < s.g->n_vals; v++) keep[v] = true;
    keep[s.h1] = keep[s.h2] = false;
    dbr_graph *o = NULL;
    int32_t *remap = malloc((size_t)s.g->n_vals * sizeof *remap), nrec = -1;
    assert_int_equal(dbr_remat_apply(s.g, keep, &o, remap, &nrec, err, sizeof err), 0);
    assert_int_equal(dbr_graph_verify(o, err, sizeof err), 0);
    assert_int_equal(nrec, 2);
    assert_int_equal(o->n_nodes, s.g->n_nodes + 2);
    /* fwd h1 h2 h3, then: recomp h1, recomp h2, b1 (reads the copy of h2),
     * b2 (the copy of h1), gw, the update */
    const dbr_inode *n = o->nodes;
    assert_int_equal(n[0].phase, DBR_PH_FWD);
    assert_int_equal(n[3].phase, DBR_PH_RECOMP);
    assert_int_equal(n[3].op, DBR_OP_MUL);
    assert_int_equal(n[4].phase, DBR_PH_RECOMP);
    assert_int_equal(n[4].op, DBR_OP_TANH);
    assert_int_equal(n[4].in[0], n[3].out);
    int32_t b1 = pos_of(o, remap[s.b1]), b2 = pos_of(o, remap[s.b2]);
    assert_int_equal(b1, 5);
    assert_int_equal(o->nodes[b1].in[1], n[4].out); /* the copy, not the original */
    assert_int_equal(o->nodes[b2].in[1], n[3].out);
    assert_int_equal(o->nodes[pos_of(o, remap[s.h2])].in[0], remap[s.h1]); /* forward: original */
    assert_int_equal(pos_of(o, remap[s.upd]), o->n_nodes - 1);
    /* the copies are laid out like any value */
    int32_t *order = malloc((size_t)o->n_nodes * sizeof *order);
    for (int32_t k = 0; k < o->n_nodes; k++) order[k] = k;
    dbr_memplan mp;
    assert_int_equal(dbr_memplan_build(o, order, &mp, err, sizeof err), 0);
    assert_int_equal(dbr_memplan_check(o, order, &mp, err, sizeof err), 0);
    dbr_memplan_free(&mp);
    free(order);
    free(remap);
    free(keep);
    dbr_graph_free(o);
    dbr_graph_free(s.g);
}

/* An update waits for its gradient and for every reader of the parameter
 * it writes, and no longer. */
static void updates_move_up(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    int32_t x = leaf(g, DBR_V_INPUT, 256);
    int32_t w1 = leaf(g, DBR_V_PARAM, 256), w2 = leaf(g, DBR_V_PARAM, 256);
    int32_t h = node(g, DBR_OP_MUL, DBR_PH_FWD, 2, (int32_t[]){x, w1});
    int32_t y = node(g, DBR_OP_MUL, DBR_PH_FWD, 2, (int32_t[]){h, w2});
    g->vals[y].is_output = true;
    int32_t g2 = node(g, DBR_OP_MUL, DBR_PH_BWD, 2, (int32_t[]){y, h});   /* grad of w2 */
    int32_t gh = node(g, DBR_OP_MUL, DBR_PH_BWD, 2, (int32_t[]){y, w2});  /* reads w2 */
    int32_t g1 = node(g, DBR_OP_MUL, DBR_PH_BWD, 2, (int32_t[]){gh, x});  /* grad of w1 */
    int32_t u1 = node(g, DBR_OP_SGD_UPDATE, DBR_PH_OPT, 2, (int32_t[]){w1, g1});
    int32_t u2 = node(g, DBR_OP_SGD_UPDATE, DBR_PH_OPT, 2, (int32_t[]){w2, g2});
    g->vals[u1].is_output = g->vals[u2].is_output = true;
    dbr_graph *o = NULL;
    int32_t *remap = malloc((size_t)g->n_vals * sizeof *remap), nrec = -1;
    assert_int_equal(dbr_remat_apply(g, NULL, &o, remap, &nrec, err, sizeof err), 0);
    assert_int_equal(nrec, 0);
    assert_int_equal(o->n_nodes, g->n_nodes);
    /* w2's update after gh (the last reader of w2), not right after g2 */
    assert_int_equal(pos_of(o, remap[u2]), pos_of(o, remap[gh]) + 1);
    assert_true(pos_of(o, remap[u2]) < pos_of(o, remap[g1]));
    assert_int_equal(pos_of(o, remap[u1]), pos_of(o, remap[g1]) + 1);
    free(remap);
    dbr_graph_free(o);
    dbr_graph_free(g);
}

/* A chain of 16 tanh layers with a backward that reads every output: the
 * budget loop fits a budget the no-recompute arena misses, recomputing, and
 * says how low it can go when it cannot. */
static void budget_loop_holds_the_arena(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    int32_t x = leaf(g, DBR_V_INPUT, 4096), w = leaf(g, DBR_V_PARAM, 4096);
    int32_t h[17];
    h[0] = node(g, DBR_OP_MUL, DBR_PH_FWD, 2, (int32_t[]){x, w});
    for (int i = 1; i < 17; i++) h[i] = node(g, DBR_OP_TANH, DBR_PH_FWD, 1, (int32_t[]){h[i - 1]});
    g->vals[h[16]].is_output = true;
    int32_t gy = h[16];
    for (int i = 16; i >= 1; i--) gy = node(g, DBR_OP_MUL, DBR_PH_BWD, 2, (int32_t[]){gy, h[i]});
    int32_t gw = node(g, DBR_OP_MUL, DBR_PH_BWD, 2, (int32_t[]){gy, x});
    g->vals[node(g, DBR_OP_SGD_UPDATE, DBR_PH_OPT, 2, (int32_t[]){w, gw})].is_output = true;

    dbr_step_plan sp;
    assert_int_equal(dbr_step_plan_build(g, &(dbr_step_budget){.fixed = 32768}, &sp, err, sizeof err), 0);
    int64_t noremat = sp.mp.arena_bytes;
    assert_true(sp.feasible);
    assert_int_equal(sp.n_recomputed, 0);
    dbr_step_plan_free(&sp);
    for (int s = 0; s < 3; s++) {
        dbr_remat_strategy st = s == 0 ? DBR_REMAT_CHEN : s == 1 ? DBR_REMAT_DP : DBR_REMAT_AUTO;
        dbr_step_budget b = {.budget_frac = 0.7, .fixed = 32768, .strategy = st};
        assert_int_equal(dbr_step_plan_build(g, &b, &sp, err, sizeof err), 0);
        printf("# %s: no-recompute arena %lld, budget %lld: arena %lld, %d recomputed\n",
               dbr_remat_strategy_name(st), (long long)noremat, (long long)sp.budget,
               (long long)sp.mp.arena_bytes, sp.n_recomputed);
        assert_true(sp.feasible);
        assert_true(sp.mp.arena_bytes + 32768 <= sp.budget);
        assert_true(sp.n_recomputed > 0);
        assert_int_equal(dbr_graph_verify(sp.g, err, sizeof err), 0);
        assert_int_equal(dbr_memplan_check(sp.g, sp.order, &sp.mp, err, sizeof err), 0);
        dbr_step_plan_free(&sp);
    }
    dbr_step_budget tiny = {.budget = 40000, .fixed = 32768, .strategy = DBR_REMAT_AUTO};
    assert_int_equal(dbr_step_plan_build(g, &tiny, &sp, err, sizeof err), 0);
    printf("# budget 40000: least arena %lld (this plan's %lld, %d recomputed)\n",
           (long long)sp.min_arena, (long long)sp.mp.arena_bytes, sp.n_recomputed);
    assert_false(sp.feasible);
    assert_true(sp.min_arena > 40000 - 32768);
    assert_true(sp.min_arena < noremat);
    dbr_step_plan_free(&sp);
    dbr_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(recompute_before_first_backward_reader),
        cmocka_unit_test(updates_move_up),
        cmocka_unit_test(budget_loop_holds_the_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
