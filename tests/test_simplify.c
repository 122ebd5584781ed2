/* test_simplify.c: simplify on hand-built graphs (CSE, DCE, exact folding,
 * each identity and the near misses that must stay), and random element-wise
 * DAGs run by a reference interpreter before and after: bitwise equal outputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/graph.h"
#include "passes/simplify.h"

#define NA_(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define SH(...) NA_(__VA_ARGS__), (const int64_t[]){__VA_ARGS__}
#define SCALAR 0, NULL

static char err[512];

/* ---- building graphs -------------------------------------------------------- */

static dbr_tinfo tinfo(int32_t dt, int nd, const int64_t *shape) {
    dbr_tinfo t = {.dtype = dt, .ndim = nd};
    for (int d = 0; d < nd; d++) t.shape[d] = shape[d];
    return t;
}

static int32_t input(dbr_graph *g, int32_t dt, int nd, const int64_t *shape) {
    dbr_tinfo t = tinfo(dt, nd, shape);
    int32_t slot = 0;
    for (int32_t v = 0; v < g->n_vals; v++)
        if (g->vals[v].kind == DBR_V_INPUT) slot++;
    int32_t id = dbr_graph_leaf(g, DBR_V_INPUT, &t, slot, 0, NULL);
    assert_true(id >= 0);
    return id;
}

static int32_t cnst(dbr_graph *g, int32_t dt, double v, int nd, const int64_t *shape) {
    dbr_tinfo t = tinfo(dt, nd, shape);
    int32_t id = dbr_graph_leaf(g, DBR_V_CONST, &t, -1, v, NULL);
    assert_true(id >= 0);
    return id;
}

static int32_t node(dbr_graph *g, dbr_op op, int n_in, const int32_t *in, const dbr_attrs *a) {
    err[0] = 0;
    int32_t id = dbr_graph_node(g, op, n_in, in, a, DBR_PH_FWD, "test", __FILE__, __LINE__, err,
                                sizeof err);
    if (id < 0) fail_msg("%s: %s", dbr_ops[op].name, err);
    return id;
}

static int32_t op1(dbr_graph *g, dbr_op op, int32_t a) { return node(g, op, 1, &a, NULL); }
static int32_t op2(dbr_graph *g, dbr_op op, int32_t a, int32_t b) {
    return node(g, op, 2, (const int32_t[]){a, b}, NULL);
}
static int32_t op1a(dbr_graph *g, dbr_op op, int32_t a, dbr_attrs at) {
    return node(g, op, 1, &a, &at);
}
static void output(dbr_graph *g, int32_t v) { g->vals[v].is_output = true; }

static uint64_t bits(double x) {
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

/* ---- running the pass --------------------------------------------------------- */

typedef struct run {
    dbr_graph *g;
    int32_t *remap;
    dbr_simplify_stats st;
} run;

/* Simplifies in and checks what holds for every result: it verifies, every
 * node is accounted for, every output maps to an output of the same type,
 * and leaves are copied faithfully. */
static run simplify(const dbr_graph *in) {
    run r = {.remap = malloc(((size_t)in->n_vals + 1) * sizeof(int32_t))};
    assert_non_null(r.remap);
    memset(&r.st, 0x55, sizeof r.st);
    if (dbr_simplify(in, &r.g, r.remap, &r.st, err, sizeof err)) fail_msg("simplify: %s", err);
    if (dbr_graph_verify(r.g, err, sizeof err)) fail_msg("verify: %s", err);
    assert_int_equal(in->n_nodes, r.st.folded + r.st.identities + r.st.cse + r.st.dce + r.g->n_nodes);
    for (int32_t v = 0; v < in->n_vals; v++) {
        const dbr_value *x = &in->vals[v];
        int32_t o = r.remap[v];
        assert_true(o >= -1 && o < r.g->n_vals);
        if (x->is_output) {
            assert_true(o >= 0);
            assert_true(r.g->vals[o].is_output);
            assert_int_equal(r.g->vals[o].t.dtype, x->t.dtype);
            assert_int_equal(r.g->vals[o].t.ndim, x->t.ndim);
            assert_memory_equal(r.g->vals[o].t.shape, x->t.shape, (size_t)x->t.ndim * sizeof(int64_t));
        }
        if (o >= 0 && x->kind != DBR_V_INTER && x->kind != DBR_V_CONST) {
            const dbr_value *y = &r.g->vals[o];
            assert_int_equal(y->kind, x->kind);
            assert_int_equal(y->slot, x->slot);
            assert_ptr_equal(y->name, x->name);
        }
        if (o >= 0 && x->kind == DBR_V_CONST) {
            assert_int_equal(r.g->vals[o].kind, DBR_V_CONST);
            assert_int_equal(bits(r.g->vals[o].cval), bits(x->cval));
        }
    }
    /* no dead values: every value is read or an output */
    bool *used = calloc((size_t)r.g->n_vals + 1, sizeof *used);
    assert_non_null(used);
    for (int32_t k = 0; k < r.g->n_nodes; k++)
        for (int i = 0; i < r.g->nodes[k].n_in; i++) used[r.g->nodes[k].in[i]] = true;
    for (int32_t v = 0; v < r.g->n_vals; v++) assert_true(used[v] || r.g->vals[v].is_output);
    free(used);
    return r;
}

static void run_free(run *r) {
    dbr_graph_free(r->g);
    free(r->remap);
}

/* A second run finds nothing to do and gives the same graph. */
static void assert_idempotent(const dbr_graph *g) {
    run r = simplify(g);
    assert_int_equal(r.st.dce, 0);
    assert_int_equal(r.st.cse, 0);
    assert_int_equal(r.st.folded, 0);
    assert_int_equal(r.st.identities, 0);
    assert_int_equal(r.st.consts, 0);
    assert_int_equal(r.g->n_nodes, g->n_nodes);
    assert_int_equal(r.g->n_vals, g->n_vals);
    assert_true(dbr_graph_hash(r.g) == dbr_graph_hash(g));
    run_free(&r);
}

/* ---- CSE and DCE ------------------------------------------------------------------ */

static void test_cse_merges_duplicates(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    int32_t x = input(g, DT_F32, SH(2, 3)), y = input(g, DT_F32, SH(2, 3));
    int32_t a = op2(g, DBR_OP_ADD, x, y), b = op2(g, DBR_OP_ADD, x, y);
    int32_t ea = op1(g, DBR_OP_EXP, a), eb = op1(g, DBR_OP_EXP, b); /* equal once a == b */
    int32_t m = op2(g, DBR_OP_MUL, ea, eb);
    int32_t s1 = op2(g, DBR_OP_SUB, x, y), s2 = op2(g, DBR_OP_SUB, y, x); /* order matters */
    int32_t r1 = node(g, DBR_OP_SUM, 1, &m, &(dbr_attrs){.i = {1, 0}});
    int32_t r2 = node(g, DBR_OP_SUM, 1, &m, &(dbr_attrs){.i = {2, 0}}); /* other attrs */
    int32_t t = op2(g, DBR_OP_ADD, s1, s2);
    output(g, m);
    output(g, r1);
    output(g, r2);
    output(g, t);
    output(g, eb); /* an output merged into an equal node */
    assert_int_equal(g->n_nodes, 10);
    run r = simplify(g);
    assert_int_equal(r.st.cse, 2);
    assert_int_equal(r.g->n_nodes, 8);
    assert_int_equal(r.remap[a], r.remap[b]);
    assert_int_equal(r.remap[ea], r.remap[eb]);
    assert_true(r.g->vals[r.remap[ea]].is_output);
    assert_true(r.remap[s1] != r.remap[s2]);
    assert_true(r.remap[r1] != r.remap[r2]);
    const dbr_inode *mn = &r.g->nodes[r.g->vals[r.remap[m]].producer];
    assert_int_equal(mn->in[0], mn->in[1]);
    assert_idempotent(r.g);
    run_free(&r);
    dbr_graph_free(g);
}

static void test_dce_removes_dead_branch(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    int32_t x = input(g, DT_F64, SH(4)), unused = input(g, DT_F64, SH(4));
    int32_t w = input(g, DT_F64, SH(4));
    int32_t d1 = op1(g, DBR_OP_EXP, w), d2 = op1(g, DBR_OP_TANH, d1); /* dead */
    int32_t a = op1(g, DBR_OP_RELU, x), b = op1(g, DBR_OP_NEG, a);
    output(g, b);
    output(g, a);
    run r = simplify(g);
    assert_int_equal(r.st.dce, 2);
    assert_int_equal(r.g->n_nodes, 2);
    assert_int_equal(r.remap[d1], -1);
    assert_int_equal(r.remap[d2], -1);
    assert_int_equal(r.remap[unused], -1);
    assert_int_equal(r.remap[w], -1);
    assert_true(r.remap[x] >= 0);
    assert_int_equal(r.g->vals[r.remap[x]].slot, 0);
    assert_int_equal(r.g->nodes[r.g->vals[r.remap[b]].producer].op, DBR_OP_NEG);
    assert_int_equal(r.g->n_vals, 3);
    assert_idempotent(r.g);
    run_free(&r);
    dbr_graph_free(g);
}

/* Nodes left dead by the forward rules go too: neg(neg(x)) leaves the
 * inner neg unread, x*1 leaves the constant unread. */
static void test_dce_after_rewrites(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    int32_t x = input(g, DT_F32, SH(3));
    int32_t one = cnst(g, DT_F32, 1.0, SCALAR);
    int32_t n1 = op1(g, DBR_OP_NEG, x), n2 = op1(g, DBR_OP_NEG, n1);
    int32_t m = op2(g, DBR_OP_MUL, n2, one), e = op1(g, DBR_OP_EXP, m);
    output(g, e);
    run r = simplify(g);
    assert_int_equal(r.st.identities, 2);
    assert_int_equal(r.st.dce, 1);
    assert_int_equal(r.g->n_nodes, 1);
    assert_int_equal(r.remap[one], -1);
    assert_int_equal(r.remap[n1], -1);
    assert_int_equal(r.remap[n2], r.remap[x]);
    assert_int_equal(r.g->nodes[0].in[0], r.remap[x]);
    run_free(&r);
    dbr_graph_free(g);
}

/* ---- constant folding --------------------------------------------------------------- */

static void check_fold(int32_t dt) {
    dbr_graph *g = dbr_graph_new();
    int32_t c2 = cnst(g, dt, 2.0, SCALAR), c3 = cnst(g, dt, 3.0, SCALAR);
    int32_t c01 = cnst(g, dt, 0.1, SCALAR), c02 = cnst(g, dt, 0.2, SCALAR);
    int32_t p = op2(g, DBR_OP_MUL, c2, c3);
    int32_t q = op2(g, DBR_OP_ADD, c01, c02);
    int32_t d = op2(g, DBR_OP_DIV, c01, c3), n = op1(g, DBR_OP_NEG, p);
    int32_t s = op2(g, DBR_OP_SUB, n, d); /* folds through earlier folds */
    int32_t e = op1(g, DBR_OP_EXP, c2);   /* libm: not folded */
    int32_t x = input(g, dt, SH(5));
    int32_t y = op2(g, DBR_OP_MUL, x, p); /* x * 6: an operand folded away */
    int32_t z = op2(g, DBR_OP_MUL, x, cnst(g, dt, 6.0, SCALAR)); /* same constant: CSE */
    int32_t outs[] = {p, q, d, s, e, y, z};
    for (size_t k = 0; k < sizeof outs / sizeof *outs; k++) output(g, outs[k]);
    run r = simplify(g);
    assert_int_equal(r.st.folded, 5);
    assert_int_equal(r.st.cse, 1);
    assert_int_equal(r.remap[y], r.remap[z]);
    assert_int_equal(r.g->n_nodes, 2); /* exp, mul */
    double want[4];
    if (dt == DT_F32) {
        float f01 = (float)0.1, f02 = (float)0.2, f3 = 3.0f, fp = 2.0f * 3.0f;
        float fd = f01 / f3;
        want[0] = fp;
        want[1] = (float)(f01 + f02);
        want[2] = fd;
        want[3] = (float)(-fp - fd);
        /* the float sum differs from the double one: folding kept the dtype */
        assert_true(bits(want[1]) != bits(0.1 + 0.2));
    } else {
        want[0] = 6.0;
        want[1] = 0.1 + 0.2;
        want[2] = 0.1 / 3.0;
        want[3] = -6.0 - 0.1 / 3.0;
    }
    const int32_t folded[4] = {p, q, d, s};
    for (int k = 0; k < 4; k++) {
        const dbr_value *c = &r.g->vals[r.remap[folded[k]]];
        assert_int_equal(c->kind, DBR_V_CONST);
        assert_int_equal(c->t.dtype, dt);
        assert_int_equal(c->t.ndim, 0);
        assert_true(c->is_output);
        assert_true(bits(c->cval) == bits(want[k]));
    }
    assert_int_equal(r.g->vals[r.remap[e]].kind, DBR_V_INTER);
    assert_idempotent(r.g);
    run_free(&r);
    dbr_graph_free(g);
}

static void test_fold_f32(void **state) {
    (void)state;
    check_fold(DT_F32);
}

static void test_fold_f64(void **state) {
    (void)state;
    check_fold(DT_F64);
}

/* Only scalars: a CONST of shape [4] is not folded. */
static void test_fold_needs_scalars(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    int32_t a = cnst(g, DT_F32, 2.0, SH(4)), b = cnst(g, DT_F32, 3.0, SCALAR);
    int32_t p = op2(g, DBR_OP_MUL, a, b);
    output(g, p);
    run r = simplify(g);
    assert_int_equal(r.st.folded, 0);
    assert_int_equal(r.g->n_nodes, 1);
    run_free(&r);
    dbr_graph_free(g);
}

/* ---- identities ------------------------------------------------------------------------ */

/* Each case builds y from x; `kept` says whether y must stay a node. */
typedef struct icase {
    const char *name;
    int32_t (*build)(dbr_graph *g, int32_t x);
    bool kept;
} icase;

static int32_t c_f32(dbr_graph *g, double v) { return cnst(g, DT_F32, v, SCALAR); }
static int32_t b_mul1(dbr_graph *g, int32_t x) { return op2(g, DBR_OP_MUL, x, c_f32(g, 1)); }
static int32_t b_1mul(dbr_graph *g, int32_t x) { return op2(g, DBR_OP_MUL, c_f32(g, 1), x); }
static int32_t b_div1(dbr_graph *g, int32_t x) { return op2(g, DBR_OP_DIV, x, c_f32(g, 1)); }
static int32_t b_sub0(dbr_graph *g, int32_t x) { return op2(g, DBR_OP_SUB, x, c_f32(g, 0.0)); }
static int32_t b_addm0(dbr_graph *g, int32_t x) { return op2(g, DBR_OP_ADD, x, c_f32(g, -0.0)); }
static int32_t b_m0add(dbr_graph *g, int32_t x) { return op2(g, DBR_OP_ADD, c_f32(g, -0.0), x); }
static int32_t b_negneg(dbr_graph *g, int32_t x) {
    return op1(g, DBR_OP_NEG, op1(g, DBR_OP_NEG, x));
}
static int32_t b_reshape(dbr_graph *g, int32_t x) {
    return op1a(g, DBR_OP_RESHAPE, x, (dbr_attrs){.i = {2, 3, 4}});
}
static int32_t b_permute(dbr_graph *g, int32_t x) {
    return op1a(g, DBR_OP_PERMUTE, x, (dbr_attrs){.i = {2, 0, 1}});
}
static int32_t b_bcast(dbr_graph *g, int32_t x) {
    return op1a(g, DBR_OP_BROADCAST_TO, x, (dbr_attrs){.i = {2, 3, 4}});
}
static int32_t b_slice(dbr_graph *g, int32_t x) {
    return op1a(g, DBR_OP_SLICE, x, (dbr_attrs){.i = {1, 0, 4, 1}});
}
static int32_t b_concat1(dbr_graph *g, int32_t x) {
    return op1a(g, DBR_OP_CONCAT, x, (dbr_attrs){.i = {0}});
}
/* 1.0000000001 is 1.0f in float, which is what an F32 kernel multiplies by */
static int32_t b_mul1f(dbr_graph *g, int32_t x) {
    return op2(g, DBR_OP_MUL, x, c_f32(g, 1.0000000001));
}
/* near misses */
static int32_t b_add0(dbr_graph *g, int32_t x) { return op2(g, DBR_OP_ADD, x, c_f32(g, 0.0)); }
static int32_t b_0add(dbr_graph *g, int32_t x) { return op2(g, DBR_OP_ADD, c_f32(g, 0.0), x); }
static int32_t b_subm0(dbr_graph *g, int32_t x) { return op2(g, DBR_OP_SUB, x, c_f32(g, -0.0)); }
static int32_t b_0sub(dbr_graph *g, int32_t x) { return op2(g, DBR_OP_SUB, c_f32(g, 0.0), x); }
static int32_t b_mul0(dbr_graph *g, int32_t x) { return op2(g, DBR_OP_MUL, x, c_f32(g, 0.0)); }
static int32_t b_1div(dbr_graph *g, int32_t x) { return op2(g, DBR_OP_DIV, c_f32(g, 1), x); }
static int32_t b_mul2(dbr_graph *g, int32_t x) { return op2(g, DBR_OP_MUL, x, c_f32(g, 2)); }
static int32_t b_neg(dbr_graph *g, int32_t x) { return op1(g, DBR_OP_NEG, x); }
static int32_t b_mulones(dbr_graph *g, int32_t x) { /* ones [4], not a scalar */
    return op2(g, DBR_OP_MUL, x, cnst(g, DT_F32, 1.0, SH(4)));
}
static int32_t b_transpose(dbr_graph *g, int32_t x) {
    return op1a(g, DBR_OP_PERMUTE, op1a(g, DBR_OP_RESHAPE, x, (dbr_attrs){.i = {2, 2, 6}}),
                (dbr_attrs){.i = {2, 1, 0}});
}
static int32_t b_reshape2(dbr_graph *g, int32_t x) {
    return op1a(g, DBR_OP_RESHAPE, x, (dbr_attrs){.i = {2, 4, 3}});
}
static int32_t b_bcast2(dbr_graph *g, int32_t x) {
    return op1a(g, DBR_OP_BROADCAST_TO, x, (dbr_attrs){.i = {3, 2, 3, 4}});
}
static int32_t b_slice2(dbr_graph *g, int32_t x) {
    return op1a(g, DBR_OP_SLICE, x, (dbr_attrs){.i = {1, 1, 4, 1}});
}
static int32_t b_mulx(dbr_graph *g, int32_t x) { return op2(g, DBR_OP_MUL, x, x); }
static int32_t b_exp(dbr_graph *g, int32_t x) { return op1(g, DBR_OP_EXP, x); }

static const icase icases[] = {
    {"x*1", b_mul1, false},         {"1*x", b_1mul, false},
    {"x/1", b_div1, false},         {"x-(+0)", b_sub0, false},
    {"x+(-0)", b_addm0, false},     {"(-0)+x", b_m0add, false},
    {"neg(neg(x))", b_negneg, false}, {"reshape to own shape", b_reshape, false},
    {"identity permute", b_permute, false}, {"broadcast to own shape", b_bcast, false},
    {"whole slice", b_slice, false}, {"concat of one", b_concat1, false},
    {"x*(float)1", b_mul1f, false},
    {"x+(+0)", b_add0, true},       {"(+0)+x", b_0add, true},
    {"x-(-0)", b_subm0, true},      {"0-x", b_0sub, true},
    {"x*0", b_mul0, true},          {"1/x", b_1div, true},
    {"x*2", b_mul2, true},          {"neg(x)", b_neg, true},
    {"x*ones[4]", b_mulones, true}, {"transpose", b_transpose, true},
    {"reshape", b_reshape2, true},  {"broadcast up", b_bcast2, true},
    {"partial slice", b_slice2, true}, {"x*x", b_mulx, true},
    {"exp", b_exp, true},
};

static void test_identities(void **state) {
    (void)state;
    for (size_t k = 0; k < sizeof icases / sizeof *icases; k++) {
        const icase *c = &icases[k];
        dbr_graph *g = dbr_graph_new();
        int32_t x0 = input(g, DT_F32, SH(3, 4));
        int32_t x = op1(g, DBR_OP_TANH, x0); /* an intermediate, not only a leaf */
        int32_t y = c->build(g, x);
        int32_t z = op1(g, DBR_OP_EXP, y);
        output(g, z);
        output(g, y);
        run r = simplify(g);
        print_message("%-24s %s\n", c->name, c->kept ? "kept" : "removed");
        if (c->kept) {
            assert_int_equal(r.st.identities, 0);
            assert_true(r.remap[y] != r.remap[x]);
            assert_int_equal(r.g->n_nodes, g->n_nodes);
        } else {
            assert_int_equal(r.st.identities, 1);
            assert_int_equal(r.remap[y], r.remap[x]);
            assert_true(r.g->vals[r.remap[x]].is_output);
            assert_int_equal(r.g->n_nodes, 2); /* tanh, exp */
        }
        assert_idempotent(r.g);
        run_free(&r);
        dbr_graph_free(g);
    }
}

/* The kept operand must have the output's shape: x [1,4] * ones [3,4] is a
 * broadcast and stays; 1 [] * x [1,4] has x's shape and becomes x. Constants
 * other than shape [] do not count as the scalar of an identity. */
static void test_identity_needs_output_shape(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    int32_t x = input(g, DT_F32, SH(1, 4)), s = input(g, DT_F32, SCALAR);
    int32_t ones = cnst(g, DT_F32, 1.0, SH(3, 4));
    int32_t a = op2(g, DBR_OP_MUL, x, ones);                     /* [3,4]: kept */
    int32_t b = op2(g, DBR_OP_MUL, cnst(g, DT_F32, 1.0, SCALAR), x); /* [1,4]: x */
    int32_t c = op2(g, DBR_OP_MUL, s, ones);                     /* [3,4]: kept */
    int32_t d = op2(g, DBR_OP_SUB, s, cnst(g, DT_F32, 0.0, SH(1, 4))); /* [1,4]: kept */
    output(g, a);
    output(g, b);
    output(g, c);
    output(g, d);
    run r = simplify(g);
    assert_int_equal(r.st.identities, 1);
    assert_int_equal(r.remap[b], r.remap[x]);
    assert_true(r.g->vals[r.remap[x]].is_output);
    assert_int_equal(r.g->vals[r.remap[x]].kind, DBR_V_INPUT);
    assert_int_equal(r.g->n_nodes, 3);
    assert_int_equal(r.g->vals[r.remap[a]].t.shape[0], 3);
    run_free(&r);
    dbr_graph_free(g);
}

/* ---- dropout, outputs, errors ------------------------------------------------------------ */

static void test_dropout(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    int32_t x = input(g, DT_F32, SH(8));
    int32_t d0 = op1a(g, DBR_OP_DROPOUT, x, (dbr_attrs){.i = {0, 3}, .f = {0.5}});
    int32_t d1 = op1a(g, DBR_OP_DROPOUT, x, (dbr_attrs){.i = {0, 3}, .f = {0.5}});
    int32_t d2 = op1a(g, DBR_OP_DROPOUT, x, (dbr_attrs){.i = {0, 4}, .f = {0.5}});
    int32_t d3 = op1a(g, DBR_OP_DROPOUT, x, (dbr_attrs){.i = {0, 3}, .f = {0.25}});
    output(g, d0);
    output(g, d1);
    output(g, d2);
    output(g, d3);
    run r = simplify(g);
    assert_int_equal(r.st.cse, 1);
    assert_int_equal(r.remap[d0], r.remap[d1]);
    assert_true(r.remap[d2] != r.remap[d0]);
    assert_true(r.remap[d3] != r.remap[d0] && r.remap[d3] != r.remap[d2]);
    assert_int_equal(r.g->n_nodes, 3);
    run_free(&r);
    dbr_graph_free(g);
}

/* -0.0 and +0.0 are different constants; equal ones become one leaf. */
static void test_consts_merged_by_bits(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    int32_t x = input(g, DT_F64, SH(2));
    int32_t h1 = cnst(g, DT_F64, 0.5, SCALAR), h2 = cnst(g, DT_F64, 0.5, SCALAR);
    int32_t z1 = cnst(g, DT_F64, 0.0, SCALAR), z2 = cnst(g, DT_F64, -0.0, SCALAR);
    int32_t f1 = cnst(g, DT_F32, 0.5, SCALAR);
    int32_t a = op2(g, DBR_OP_MUL, x, h1), b = op2(g, DBR_OP_MUL, x, h2);
    int32_t c = op2(g, DBR_OP_ADD, x, z1), d = op2(g, DBR_OP_ADD, z2, x);
    output(g, a);
    output(g, b);
    output(g, c);
    output(g, d);
    output(g, f1);
    run r = simplify(g);
    assert_int_equal(r.st.consts, 1);
    assert_int_equal(r.st.cse, 1);
    assert_int_equal(r.st.identities, 1);
    assert_int_equal(r.remap[h1], r.remap[h2]);
    assert_int_equal(r.remap[a], r.remap[b]);
    assert_int_equal(r.remap[d], r.remap[x]);
    assert_true(r.remap[c] >= 0 && r.remap[c] != r.remap[x]);
    assert_int_equal(r.remap[z2], -1);
    assert_true(r.remap[f1] >= 0 && r.remap[f1] != r.remap[h1]);
    assert_true(r.g->vals[r.remap[f1]].is_output);
    run_free(&r);
    dbr_graph_free(g);
}

/* Locations, api and phase travel with the nodes. */
static void test_node_fields_kept(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    int32_t x = input(g, DT_F32, SH(2));
    int32_t y = dbr_graph_node(g, DBR_OP_RELU, 1, &x, NULL, DBR_PH_BWD, "dbr_relu", "m.c", 42, err,
                               sizeof err);
    assert_true(y >= 0);
    output(g, y);
    run r = simplify(g);
    const dbr_inode *n = &r.g->nodes[0];
    assert_int_equal(n->phase, DBR_PH_BWD);
    assert_string_equal(n->api, "dbr_relu");
    assert_string_equal(n->file, "m.c");
    assert_int_equal(n->line, 42);
    run_free(&r);
    dbr_graph_free(g);
}

static void test_bad_graph(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    int32_t x = input(g, DT_F32, SH(2));
    int32_t a = op1(g, DBR_OP_RELU, x), b = op1(g, DBR_OP_EXP, a);
    output(g, b);
    g->nodes[0].in[0] = b; /* reads a value defined later */
    dbr_graph *o = (dbr_graph *)1;
    int32_t remap[8];
    err[0] = 0;
    assert_int_equal(dbr_simplify(g, &o, remap, NULL, err, sizeof err), -1);
    assert_null(o);
    assert_non_null(strstr(err, "not defined before"));
    dbr_graph_free(g);
}

static void test_empty(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    run r = simplify(g);
    assert_int_equal(r.g->n_vals, 0);
    assert_int_equal(r.g->n_nodes, 0);
    run_free(&r);
    dbr_graph_free(g);
}

/* ---- random graphs against a reference interpreter ---------------------------------------- */

static uint64_t rng;
static uint32_t rnd(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}
static uint32_t rnd_below(uint32_t n) { return rnd() % n; }

/* Element e of a broadcast operand t for output index idx of shape o. */
static int64_t bcast_index(const dbr_tinfo *t, const dbr_tinfo *o, int64_t flat) {
    int64_t idx[DBR_IR_MAX_DIMS];
    for (int d = o->ndim - 1; d >= 0; d--) {
        idx[d] = flat % o->shape[d];
        flat /= o->shape[d];
    }
    int64_t at = 0;
    for (int d = 0; d < t->ndim; d++) {
        int od = o->ndim - t->ndim + d;
        at = at * t->shape[d] + (t->shape[d] == 1 ? 0 : idx[od]);
    }
    return at;
}

static double in_value(int32_t slot, int64_t e) {
    static const double special[] = {0.0, -0.0, 1.0, -1.0, INFINITY, -INFINITY, NAN, 0.1, 3.0,
                                     1e-40, 2.5, -7.25};
    uint64_t h = (uint64_t)slot * 0x9e3779b97f4a7c15ull + (uint64_t)e * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
    return special[h % (sizeof special / sizeof *special)];
}

/* Values of every value of g (ADD, SUB, MUL, DIV, NEG, EXP, RESHAPE,
 * BROADCAST_TO); F32 values are computed in float. Inputs come from their
 * slot, so a simplified graph sees the same data. */
static double **evaluate(const dbr_graph *g) {
    double **buf = calloc((size_t)g->n_vals + 1, sizeof *buf);
    assert_non_null(buf);
    for (int32_t v = 0; v < g->n_vals; v++) {
        const dbr_value *x = &g->vals[v];
        int64_t n = dbr_tinfo_numel(&x->t);
        buf[v] = calloc((size_t)n + 1, sizeof **buf);
        assert_non_null(buf[v]);
        bool f32 = x->t.dtype == DT_F32;
        for (int64_t e = 0; x->kind != DBR_V_INTER && e < n; e++) {
            double c = x->kind == DBR_V_CONST ? x->cval : in_value(x->slot, e);
            buf[v][e] = f32 ? (double)(float)c : c;
        }
    }
    for (int32_t k = 0; k < g->n_nodes; k++) {
        const dbr_inode *nd = &g->nodes[k];
        const dbr_tinfo *ot = &g->vals[nd->out].t;
        bool f32 = ot->dtype == DT_F32;
        int64_t n = dbr_tinfo_numel(ot);
        for (int64_t e = 0; e < n; e++) {
            const dbr_tinfo *t0 = &g->vals[nd->in[0]].t;
            double a = buf[nd->in[0]][nd->op == DBR_OP_RESHAPE ? e : bcast_index(t0, ot, e)], b = 0,
                   y;
            if (nd->n_in > 1) b = buf[nd->in[1]][bcast_index(&g->vals[nd->in[1]].t, ot, e)];
            float fa = (float)a, fb = (float)b;
            switch (nd->op) {
            case DBR_OP_ADD: y = f32 ? (double)(fa + fb) : a + b; break;
            case DBR_OP_SUB: y = f32 ? (double)(fa - fb) : a - b; break;
            case DBR_OP_MUL: y = f32 ? (double)(fa * fb) : a * b; break;
            case DBR_OP_DIV: y = f32 ? (double)(fa / fb) : a / b; break;
            case DBR_OP_NEG: y = f32 ? (double)(-fa) : -a; break;
            case DBR_OP_EXP: y = f32 ? (double)expf(fa) : exp(a); break;
            case DBR_OP_RESHAPE: case DBR_OP_BROADCAST_TO: y = a; break;
            default: fail_msg("op %s not in the interpreter", dbr_ops[nd->op].name); y = 0;
            }
            buf[nd->out][e] = y;
        }
    }
    return buf;
}

static void free_values(double **buf, int32_t n) {
    for (int32_t v = 0; v < n; v++) free(buf[v]);
    free(buf);
}

static const dbr_tinfo rshapes[] = {
    {.dtype = 0, .ndim = 0}, {.dtype = 0, .ndim = 1, .shape = {4}},
    {.dtype = 0, .ndim = 2, .shape = {3, 1}}, {.dtype = 0, .ndim = 2, .shape = {3, 4}},
    {.dtype = 0, .ndim = 2, .shape = {1, 4}},
};
#define N_RSHAPES ((int)(sizeof rshapes / sizeof *rshapes))

/* A random element-wise DAG over inputs and scalar constants (0, -0, 1, ...),
 * with repeated nodes, identities and constant subexpressions planted. */
static dbr_graph *random_graph(int32_t dt, int n_ops) {
    static const double cvals[] = {0.0, -0.0, 1.0, 1.0, 2.0, 0.5, -1.0, 3.0, 0.1};
    static const dbr_op ops[] = {DBR_OP_ADD, DBR_OP_SUB, DBR_OP_MUL, DBR_OP_DIV,
                                 DBR_OP_NEG, DBR_OP_EXP, DBR_OP_RESHAPE, DBR_OP_BROADCAST_TO};
    dbr_graph *g = dbr_graph_new();
    int n_in = 2 + (int)rnd_below(4);
    for (int k = 0; k < n_in; k++) {
        dbr_tinfo t = rshapes[rnd_below(N_RSHAPES)];
        t.dtype = dt;
        assert_true(dbr_graph_leaf(g, DBR_V_INPUT, &t, k, 0, NULL) >= 0);
    }
    for (int k = 0; k < 6; k++)
        cnst(g, dt, cvals[rnd_below(sizeof cvals / sizeof *cvals)], SCALAR);
    for (int made = 0, tries = 0; made < n_ops && tries < 50 * n_ops; tries++) {
        if (g->n_nodes && rnd_below(5) == 0) { /* repeat an earlier node */
            const dbr_inode *p = &g->nodes[rnd_below((uint32_t)g->n_nodes)];
            dbr_inode copy = *p;
            if (node(g, copy.op, copy.n_in, copy.in, &copy.a) >= 0) made++;
            continue;
        }
        dbr_op op = ops[rnd_below(sizeof ops / sizeof *ops)];
        int32_t a = (int32_t)rnd_below((uint32_t)g->n_vals), b = (int32_t)rnd_below((uint32_t)g->n_vals);
        if (rnd_below(3) == 0) /* against a constant: where identities and their near misses live */
            b = n_in + (int32_t)rnd_below(6);
        if (rnd_below(4) == 0) { /* swap, for 1*x and (-0)+x */
            int32_t t = a;
            a = b;
            b = t;
        }
        dbr_attrs at = {0};
        const dbr_tinfo *ta = &g->vals[a].t;
        if (op == DBR_OP_RESHAPE) { /* to its own shape */
            at.i[0] = ta->ndim;
            for (int d = 0; d < ta->ndim; d++) at.i[1 + d] = ta->shape[d];
        } else if (op == DBR_OP_BROADCAST_TO) { /* its own shape or [3,4] */
            const dbr_tinfo *to = rnd_below(2) ? ta : &rshapes[3];
            at.i[0] = to->ndim;
            for (int d = 0; d < to->ndim; d++) at.i[1 + d] = to->shape[d];
        }
        int arity = dbr_ops[op].min_in;
        int32_t ins[2] = {a, b};
        char why[256];
        int32_t id = dbr_graph_node(g, op, arity, ins, &at, DBR_PH_FWD, "rand", __FILE__, __LINE__,
                                    why, sizeof why);
        if (id >= 0) made++; /* shapes that do not broadcast: try again */
    }
    int n_out = 1 + (int)rnd_below(6);
    for (int k = 0; k < n_out; k++) output(g, g->n_vals - 1 - (int32_t)rnd_below(8));
    if (rnd_below(4) == 0) output(g, 0); /* an input read out as is */
    return g;
}

static bool same_number(double a, double b) { return (isnan(a) && isnan(b)) || bits(a) == bits(b); }

static void test_random_graphs(void **state) {
    (void)state;
    rng = 0x5eed1234u;
    int32_t totals[5] = {0};
    for (int iter = 0; iter < 400; iter++) {
        int32_t dt = iter % 2 ? DT_F64 : DT_F32;
        dbr_graph *g = random_graph(dt, 8 + (int)rnd_below(40));
        if (dbr_graph_verify(g, err, sizeof err)) fail_msg("random graph: %s", err);
        run r = simplify(g);
        assert_true(r.g->n_nodes <= g->n_nodes);
        double **before = evaluate(g), **after = evaluate(r.g);
        for (int32_t v = 0; v < g->n_vals; v++) {
            if (!g->vals[v].is_output) continue;
            int64_t n = dbr_tinfo_numel(&g->vals[v].t);
            for (int64_t e = 0; e < n; e++)
                if (!same_number(before[v][e], after[r.remap[v]][e]))
                    fail_msg("iter %d: output %d[%lld] is %a, was %a", iter, (int)v, (long long)e,
                             after[r.remap[v]][e], before[v][e]);
        }
        free_values(before, g->n_vals);
        free_values(after, r.g->n_vals);
        totals[0] += r.st.dce;
        totals[1] += r.st.cse;
        totals[2] += r.st.folded;
        totals[3] += r.st.identities;
        totals[4] += r.st.consts;
        assert_idempotent(r.g);
        run_free(&r);
        dbr_graph_free(g);
    }
    print_message("random: dce %d, cse %d, folded %d, identities %d, consts %d\n", (int)totals[0],
                  (int)totals[1], (int)totals[2], (int)totals[3], (int)totals[4]);
    for (int k = 0; k < 5; k++) assert_true(totals[k] > 0); /* every rule was exercised */
}

/* One long chain: the pass is linear, not quadratic, in practice. */
static void test_large(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    int32_t x = input(g, DT_F32, SH(16)), one = cnst(g, DT_F32, 1.0, SCALAR);
    int32_t v = x;
    for (int k = 0; k < 50000; k++) {
        int32_t a = op2(g, DBR_OP_ADD, v, x), b = op2(g, DBR_OP_ADD, v, x);
        v = op2(g, DBR_OP_MUL, op2(g, DBR_OP_MUL, a, b), one);
    }
    output(g, v);
    run r = simplify(g);
    assert_int_equal(r.st.cse, 50000);
    assert_int_equal(r.st.identities, 50000);
    assert_int_equal(r.g->n_nodes, 100000);
    run_free(&r);
    dbr_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cse_merges_duplicates),
        cmocka_unit_test(test_dce_removes_dead_branch),
        cmocka_unit_test(test_dce_after_rewrites),
        cmocka_unit_test(test_fold_f32),
        cmocka_unit_test(test_fold_f64),
        cmocka_unit_test(test_fold_needs_scalars),
        cmocka_unit_test(test_identities),
        cmocka_unit_test(test_identity_needs_output_shape),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_consts_merged_by_bits),
        cmocka_unit_test(test_node_fields_kept),
        cmocka_unit_test(test_bad_graph),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_random_graphs),
        cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
