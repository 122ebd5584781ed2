/* test_fuse.c: the fusion pass and the kernels it makes. Random element-wise
 * DAGs (with broadcasting, scalar constants, integer masks and a trailing
 * reduction) run node by node before and after fusion: the results agree
 * within 1e-6 relative in f32 (1e-12 in f64) and every node is accounted
 * for. Known patterns give the kernel counts they should; training with
 * fusion follows the unfused run's losses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "codegen/codegen.h"
#include "dbr.h"
#include "ir/fused.h"
#include "ir/graph.h"
#include "models/models.h"
#include "passes/fuse.h"
#include "runtime/runtime.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rnext(rng *r) {
    r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
    return r->s >> 17;
}
static int rint_(rng *r, int n) { return (int)(rnext(r) % (uint64_t)n); }
static double runif(rng *r) { return (double)(rnext(r) & 0xFFFFFF) / 16777216.0; }

static dbr_tinfo tinfo(int32_t dt, int nd, const int64_t *sh) {
    dbr_tinfo t = {.dtype = dt, .ndim = nd};
    for (int d = 0; d < nd; d++) t.shape[d] = sh[d];
    return t;
}

/* ---- running a graph node by node on the CPU -------------------------------- */

static void **run_graph(const dbr_graph *g, void *const *leaf_data) {
    void **buf = calloc((size_t)g->n_vals, sizeof *buf);
    assert_non_null(buf);
    for (int32_t v = 0; v < g->n_vals; v++)
        if (g->vals[v].kind != DBR_V_INTER) buf[v] = leaf_data[v];
    for (int32_t k = 0; k < g->n_nodes; k++) {
        const dbr_inode *nd = &g->nodes[k];
        dbr_node n = {.op = nd->op, .n_in = nd->n_in, .out = g->vals[nd->out].t, .a = nd->a};
        const void *in[DBR_MAX_SRC];
        for (int i = 0; i < nd->n_in; i++) {
            n.in[i] = g->vals[nd->in[i]].t;
            in[i] = buf[nd->in[i]];
        }
        size_t bytes = (size_t)dbr_tinfo_numel(&n.out) * dbr_dt_size(n.out.dtype);
        buf[nd->out] = malloc(bytes ? bytes : 8);
        assert_non_null(buf[nd->out]);
        if (dbr_cpu_exec(&n, in, buf[nd->out]))
            fail_msg("node %d (%s) failed", k, dbr_ops[nd->op].name);
    }
    return buf;
}

static void free_run(const dbr_graph *g, void **buf) {
    for (int32_t v = 0; v < g->n_vals; v++)
        if (g->vals[v].kind == DBR_V_INTER) free(buf[v]);
    free(buf);
}

static double elem(const void *p, int32_t dt, int64_t i) {
    return dt == DT_F32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}

/* ---- random element-wise DAGs ------------------------------------------------- */

typedef struct dag {
    dbr_graph *g;
    void **leaf;   /* data per leaf value (NULL for INTER) */
    int32_t dt;
    dbr_tinfo space;
} dag;

static int32_t add_leaf(dag *d, rng *r, dbr_vkind kind, dbr_tinfo t, double cval) {
    int32_t v = dbr_graph_leaf(d->g, kind, &t, kind == DBR_V_INPUT ? d->g->n_vals : -1, cval, NULL);
    assert_true(v >= 0);
    int64_t n = dbr_tinfo_numel(&t);
    size_t es = dbr_dt_size(t.dtype);
    void *p = malloc((size_t)n * es + 8);
    assert_non_null(p);
    for (int64_t i = 0; i < n; i++) {
        double x = kind == DBR_V_CONST ? cval : 4 * runif(r) - 2;
        switch (t.dtype) {
        case DT_F32: ((float *)p)[i] = (float)x; break;
        case DT_F64: ((double *)p)[i] = x; break;
        case DT_I32: ((int32_t *)p)[i] = rint_(r, 3) == 0 ? 0 : rint_(r, 5) - 2; break;
        default: ((int64_t *)p)[i] = rint_(r, 3) == 0 ? 0 : rint_(r, 5) - 2; break;
        }
    }
    d->leaf = realloc(d->leaf, (size_t)d->g->n_vals * sizeof *d->leaf);
    d->leaf[v] = p;
    return v;
}

static int32_t node_a(dag *d, dbr_op op, int n, const int32_t *in, const dbr_attrs *a) {
    char err[256];
    int32_t v = dbr_graph_node(d->g, op, n, in, a, DBR_PH_FWD, "test", __FILE__, __LINE__, err,
                               sizeof err);
    if (v < 0) return -1;
    d->leaf = realloc(d->leaf, (size_t)d->g->n_vals * sizeof *d->leaf);
    d->leaf[v] = NULL;
    return v;
}

static int32_t node(dag *d, dbr_op op, int n, const int32_t *in, double p) {
    dbr_attrs a = {0};
    a.f[0] = p;
    return node_a(d, op, n, in, &a);
}

/* op (SUM, MEAN, MAX) of x over the axes in mask */
static int32_t reduce(dag *d, dbr_op op, int32_t x, uint32_t mask, bool keepdims) {
    dbr_attrs a = {0};
    a.i[0] = mask;
    a.i[1] = keepdims;
    int32_t v = node_a(d, op, 1, &x, &a);
    assert_true(v >= 0);
    return v;
}

static int32_t node1(dag *d, dbr_op op, int32_t a) { return node(d, op, 1, &a, 0); }
static int32_t node2(dag *d, dbr_op op, int32_t a, int32_t b) {
    return node(d, op, 2, (int32_t[]){a, b}, 0);
}

/* A value with a shape broadcasting to the space: the space itself, or
 * with some dims 1 and leading dims dropped. */
static dbr_tinfo sub_shape(rng *r, const dag *d) {
    dbr_tinfo t = d->space;
    int drop = rint_(r, t.ndim + 1);
    if (rint_(r, 2)) drop = 0;
    t.ndim -= drop;
    for (int k = 0; k < t.ndim; k++) {
        t.shape[k] = d->space.shape[k + drop];
        if (rint_(r, 3) == 0) t.shape[k] = 1;
    }
    return t;
}

static const dbr_op ew_ops[] = {
    DBR_OP_ADD, DBR_OP_SUB, DBR_OP_MUL, DBR_OP_DIV, DBR_OP_NEG, DBR_OP_EXP, DBR_OP_LOG,
    DBR_OP_SQRT, DBR_OP_RSQRT, DBR_OP_POW, DBR_OP_ABS, DBR_OP_SIGN, DBR_OP_TANH,
    DBR_OP_SIGMOID, DBR_OP_RELU, DBR_OP_LEAKY_RELU, DBR_OP_GELU, DBR_OP_SILU, DBR_OP_WHERE,
    DBR_OP_RELU_BWD, DBR_OP_LEAKY_RELU_BWD, DBR_OP_GELU_BWD, DBR_OP_SILU_BWD};

/* Appends op over values drawn from pool, keeping arguments in safe
 * domains (positive for log, sqrt, rsqrt, pow; away from 0 for div;
 * bounded for exp). Returns the new value or -1. */
static int32_t random_op(dag *d, rng *r, const int32_t *pool, int np, int32_t mask) {
    dbr_op op = ew_ops[rint_(r, (int)(sizeof ew_ops / sizeof ew_ops[0]))];
    int32_t a = pool[rint_(r, np)], b = pool[rint_(r, np)], c = pool[rint_(r, np)];
    int32_t half = add_leaf(d, r, DBR_V_CONST, tinfo(d->dt, 0, NULL), 0.5);
    switch (op) {
    case DBR_OP_LOG: case DBR_OP_SQRT: case DBR_OP_RSQRT: case DBR_OP_POW: {
        int32_t pos = node2(d, DBR_OP_ADD, node1(d, DBR_OP_ABS, a), half);
        return node(d, op, 1, &pos, op == DBR_OP_POW ? (rint_(r, 2) ? 2.0 : 1.5) : 0);
    }
    case DBR_OP_EXP: return node1(d, DBR_OP_EXP, node1(d, DBR_OP_TANH, a));
    case DBR_OP_DIV:
        return node2(d, DBR_OP_DIV, a, node2(d, DBR_OP_ADD, node1(d, DBR_OP_ABS, b), half));
    case DBR_OP_LEAKY_RELU: return node(d, op, 1, &a, 0.1);
    case DBR_OP_LEAKY_RELU_BWD: return node(d, op, 2, (int32_t[]){a, b}, 0.1);
    case DBR_OP_WHERE: return node(d, op, 3, (int32_t[]){mask >= 0 ? mask : a, b, c}, 0);
    case DBR_OP_RELU_BWD: case DBR_OP_GELU_BWD: case DBR_OP_SILU_BWD: {
        /* (x, gy) of one type: take both at the space's shape */
        int32_t x = node2(d, DBR_OP_ADD, a, pool[0]), gy = node2(d, DBR_OP_MUL, b, pool[0]);
        return node2(d, op, x, gy);
    }
    default:
        if (dbr_ops[op].min_in == 1) return node1(d, op, a);
        return node2(d, op, a, b);
    }
}

static dag random_dag(rng *r, bool *has_red) {
    dag d = {.g = dbr_graph_new(), .dt = rint_(r, 4) == 0 ? DT_F64 : DT_F32};
    static const int64_t dims[] = {1, 2, 3, 5, 8, 17, 33};
    int nd = 1 + rint_(r, 3);
    int64_t sh[4];
    for (int k = 0; k < nd; k++) sh[k] = dims[rint_(r, 7)];
    d.space = tinfo(d.dt, nd, sh);
    int32_t pool[96];
    int np = 0;
    pool[np++] = add_leaf(&d, r, DBR_V_INPUT, d.space, 0);
    int n_in = 1 + rint_(r, 4);
    for (int k = 0; k < n_in; k++) pool[np++] = add_leaf(&d, r, DBR_V_INPUT, sub_shape(r, &d), 0);
    dbr_tinfo mt = sub_shape(r, &d);
    mt.dtype = rint_(r, 2) ? DT_I32 : DT_I64;
    int32_t mask = rint_(r, 2) ? add_leaf(&d, r, DBR_V_INPUT, mt, 0) : -1;
    int n_ops = 1 + rint_(r, 30);
    for (int k = 0; k < n_ops && np < 90; k++) {
        int32_t v = random_op(&d, r, pool, np, mask);
        if (v >= 0) pool[np++] = v;
    }
    int32_t last = pool[np - 1];
    /* give the last value the whole space, then maybe reduce a suffix */
    last = node2(&d, DBR_OP_ADD, last, pool[0]);
    *has_red = rint_(r, 2) == 0;
    if (*has_red) {
        static const dbr_op reds[] = {DBR_OP_SUM, DBR_OP_MEAN, DBR_OP_MAX};
        int k = 1 + rint_(r, nd);
        uint32_t mask = ((1u << nd) - 1u) & ~((1u << (nd - k)) - 1u);
        bool keepdims = rint_(r, 2);
        last = reduce(&d, reds[rint_(r, 3)], last, mask, keepdims);
    }
    d.g->vals[last].is_output = true;
    for (int k = 1; k < np; k++) /* some values are also read after the step */
        if (d.g->vals[pool[k]].kind == DBR_V_INTER && rint_(r, 8) == 0)
            d.g->vals[pool[k]].is_output = true;
    return d;
}

static void free_dag(dag *d) {
    for (int32_t v = 0; v < d->g->n_vals; v++) free(d->leaf[v]);
    free(d->leaf);
    dbr_graph_free(d->g);
}

static void random_dags_match_unfused(void **state) {
    (void)state;
    rng r = {20261123};
    int groups = 0, with_red = 0, red_fused = 0;
    const int n_dags = 160;
    for (int t = 0; t < n_dags; t++) {
        bool has_red;
        dag d = random_dag(&r, &has_red);
        char err[256];
        if (dbr_graph_verify(d.g, err, sizeof err)) fail_msg("dag %d: %s", t, err);
        int32_t *remap = malloc((size_t)d.g->n_vals * sizeof *remap);
        dbr_graph *f = NULL;
        dbr_fuse_stats st;
        assert_int_equal(dbr_fuse(d.g, &f, remap, &st, err, sizeof err), 0);
        if (dbr_graph_verify(f, err, sizeof err)) fail_msg("dag %d fused: %s", t, err);
        /* every node is copied or folded into exactly one group */
        assert_int_equal(f->n_nodes, d.g->n_nodes - st.fused + st.groups);
        int n_fused_nodes = 0, ops_in = 0;
        for (int32_t k = 0; k < f->n_nodes; k++)
            if (f->nodes[k].op == DBR_OP_FUSED) {
                const dbr_fbody *b = dbr_fbody_get(f->nodes[k].a.i[0]);
                assert_non_null(b);
                n_fused_nodes++;
                ops_in += b->n_ops;
                red_fused += b->red != 0;
            }
        assert_int_equal(n_fused_nodes, st.groups);
        assert_int_equal(ops_in, st.fused);
        groups += st.groups;
        with_red += has_red;
        /* leaves keep their data: the fused graph's leaves are the same values */
        void **fleaf = calloc((size_t)f->n_vals, sizeof *fleaf);
        for (int32_t v = 0; v < d.g->n_vals; v++)
            if (d.g->vals[v].kind != DBR_V_INTER) fleaf[remap[v]] = d.leaf[v];
        void **a = run_graph(d.g, d.leaf), **b = run_graph(f, fleaf);
        const double tol = d.dt == DT_F32 ? 1e-6 : 1e-12;
        for (int32_t v = 0; v < d.g->n_vals; v++) {
            if (!d.g->vals[v].is_output) continue;
            assert_true(remap[v] >= 0); /* outputs survive fusion */
            const dbr_tinfo *ti = &d.g->vals[v].t;
            for (int64_t i = 0; i < dbr_tinfo_numel(ti); i++) {
                double x = elem(a[v], ti->dtype, i), y = elem(b[remap[v]], ti->dtype, i);
                if (isnan(x) && isnan(y)) continue;
                double scale = fabs(x) > 1 ? fabs(x) : 1;
                if (!(fabs(x - y) <= tol * scale))
                    fail_msg("dag %d value %d elem %lld: unfused %.9g fused %.9g", t, v,
                             (long long)i, x, y);
            }
        }
        free_run(d.g, a);
        free_run(f, b);
        free(fleaf);
        free(remap);
        dbr_graph_free(f);
        free_dag(&d);
    }
    printf("  %d random DAGs (%d ending in a reduction): %d fused kernels, %d with a reduction\n",
           n_dags, with_red, groups, red_fused);
    assert_true(groups > n_dags / 2);
    assert_true(red_fused > 0);
}

/* ---- known patterns ------------------------------------------------------------- */

static int count_fused(const dbr_graph *g, char *name, size_t n) {
    int c = 0;
    for (int32_t k = 0; k < g->n_nodes; k++)
        if (g->nodes[k].op == DBR_OP_FUSED) {
            c++;
            if (name) snprintf(name, n, "%s", dbr_fbody_get(g->nodes[k].a.i[0])->name);
        }
    return c;
}

static dbr_graph *fuse_of(const dbr_graph *g, dbr_fuse_stats *st) {
    int32_t *remap = malloc((size_t)g->n_vals * sizeof *remap);
    dbr_graph *f = NULL;
    char err[256];
    if (dbr_fuse(g, &f, remap, st, err, sizeof err)) fail_msg("%s", err);
    free(remap);
    return f;
}

/* matmul + bias + gelu: the matmul stays a library call, the bias and gelu
 * are one kernel reading the matmul's output once. */
static void bias_gelu_is_one_kernel(void **state) {
    (void)state;
    rng r = {1};
    dag d = {.g = dbr_graph_new(), .dt = DT_F32};
    int32_t x = add_leaf(&d, &r, DBR_V_INPUT, tinfo(DT_F32, 2, (int64_t[]){64, 768}), 0);
    int32_t w = add_leaf(&d, &r, DBR_V_PARAM, tinfo(DT_F32, 2, (int64_t[]){768, 3072}), 0);
    int32_t b = add_leaf(&d, &r, DBR_V_PARAM, tinfo(DT_F32, 1, (int64_t[]){3072}), 0);
    int32_t y = node1(&d, DBR_OP_GELU, node2(&d, DBR_OP_ADD, node2(&d, DBR_OP_MATMUL, x, w), b));
    d.g->vals[y].is_output = true;
    dbr_fuse_stats st;
    dbr_graph *f = fuse_of(d.g, &st);
    char name[64];
    assert_int_equal(count_fused(f, name, sizeof name), 1);
    assert_int_equal(f->n_nodes, 2); /* matmul, f_add_gelu */
    assert_string_equal(name, "f_add_gelu_64x3072");
    dbr_graph_free(f);
    free_dag(&d);
}

/* residual add + relu; and a loss: mean((y - t)^2) over everything */
static void residual_and_mse_are_one_kernel_each(void **state) {
    (void)state;
    rng r = {2};
    dag d = {.g = dbr_graph_new(), .dt = DT_F32};
    int32_t x = add_leaf(&d, &r, DBR_V_INPUT, tinfo(DT_F32, 2, (int64_t[]){32, 100}), 0);
    int32_t s = add_leaf(&d, &r, DBR_V_INPUT, tinfo(DT_F32, 2, (int64_t[]){32, 100}), 0);
    int32_t t = add_leaf(&d, &r, DBR_V_INPUT, tinfo(DT_F32, 2, (int64_t[]){32, 100}), 0);
    int32_t h = node1(&d, DBR_OP_RELU, node2(&d, DBR_OP_ADD, x, s));
    d.g->vals[h].is_output = true;
    int32_t e = node(&d, DBR_OP_POW, 1, (int32_t[]){node2(&d, DBR_OP_SUB, h, t)}, 2.0);
    int32_t l = reduce(&d, DBR_OP_MEAN, e, 3, false);
    d.g->vals[l].is_output = true;
    dbr_fuse_stats st;
    dbr_graph *f = fuse_of(d.g, &st);
    assert_int_equal(count_fused(f, NULL, 0), 2);
    assert_int_equal(f->n_nodes, 2);
    assert_int_equal(st.fused, 5);
    dbr_graph_free(f);
    free_dag(&d);
}

/* max over rows holding a NaN: NaN, fused (relu then max) and unfused alike,
 * as NumPy and PyTorch give; the unfused kernel once skipped NaNs. */
static void max_keeps_nan(void **state) {
    (void)state;
    rng r = {3};
    dag d = {.g = dbr_graph_new(), .dt = DT_F32};
    int32_t x = add_leaf(&d, &r, DBR_V_INPUT, tinfo(DT_F32, 2, (int64_t[]){4, 37}), 0);
    float *xd = d.leaf[x];
    xd[1 * 37 + 5] = NAN;
    xd[3 * 37 + 36] = NAN;
    int32_t h = node1(&d, DBR_OP_NEG, x);
    int32_t m = reduce(&d, DBR_OP_MAX, h, 2, false);
    d.g->vals[m].is_output = true;
    char err[256];
    int32_t *remap = malloc((size_t)d.g->n_vals * sizeof *remap);
    dbr_graph *f = NULL;
    dbr_fuse_stats st;
    assert_int_equal(dbr_fuse(d.g, &f, remap, &st, err, sizeof err), 0);
    assert_int_equal(count_fused(f, NULL, 0), 1);
    void **fleaf = calloc((size_t)f->n_vals, sizeof *fleaf);
    fleaf[remap[x]] = d.leaf[x];
    void **u = run_graph(d.g, d.leaf), **v = run_graph(f, fleaf);
    const float *yu = u[m], *yv = v[remap[m]];
    for (int i = 0; i < 4; i++) {
        bool nan_row = i == 1 || i == 3;
        assert_true(isnan(yu[i]) == nan_row);
        assert_true(isnan(yv[i]) == nan_row);
        if (!nan_row) assert_true(yu[i] == yv[i]);
    }
    free_run(d.g, u);
    free_run(f, v);
    free(fleaf);
    free(remap);
    dbr_graph_free(f);
    free_dag(&d);
}

/* Kernels one compiled step runs, counted by the profiler (the second
 * step: the first also compiles). which: 0 layer norm forward, 1 softmax
 * cross-entropy forward and backward. */
static int64_t step_kernels(int which) {
    dbr_config cfg = dbr_config_default();
    cfg.mode = DBR_MODE_COMPILED;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    static float x[32 * 100];
    static int32_t y[32];
    for (int i = 0; i < 32 * 100; i++) x[i] = (float)(i % 17) * 0.1f;
    for (int i = 0; i < 32; i++) y[i] = i % 100;
    int64_t n = 0;
    for (int s = 0; s < 2; s++) {
        dbr_prof_reset(ctx);
        dbr_prof_enable(ctx, s == 1);
        dbr_step_begin(ctx);
        dbr_tensor *xi = dbr_input(ctx, DBR_F32, DBR_SHAPE(32, 100), x, false);
        if (which == 0) {
            dbr_tensor *g = dbr_param(ctx, "g", DBR_F32, DBR_SHAPE(100), DBR_INIT_ONES);
            dbr_tensor *b = dbr_param(ctx, "b", DBR_F32, DBR_SHAPE(100), DBR_INIT_ZEROS);
            dbr_tensor *h = dbr_layer_norm(ctx, xi, g, b, 1e-5);
            (void)dbr_item(ctx, dbr_sum(ctx, h, 0, NULL, false));
        } else {
            dbr_tensor *w = dbr_param(ctx, "w", DBR_F32, DBR_SHAPE(32, 100), DBR_INIT_ZEROS);
            dbr_tensor *z = dbr_add(ctx, w, xi);
            dbr_tensor *l = dbr_cross_entropy(ctx, z, dbr_input(ctx, DBR_I32, DBR_SHAPE(32), y, false));
            if (dbr_backward(ctx, l)) fail_msg("%s", dbr_error(ctx));
        }
        if (dbr_error(ctx)) fail_msg("%s", dbr_error(ctx));
        if (dbr_step_end(ctx)) fail_msg("%s", dbr_error(ctx));
        const dbr_prof_event *ev;
        n = dbr_prof_events(ctx, &ev);
        for (int64_t k = 0; s == 1 && k < n; k++) printf("    %s %s\n", ev[k].phase, ev[k].name);
    }
    dbr_ctx_free(ctx);
    return n;
}

/* The kernel counts: layer norm forward <= 2 (here the layer norm
 * and the sum the test reads); softmax cross-entropy forward and backward
 * <= 3 (here 3 with the add feeding it). */
static void norm_and_loss_kernel_counts(void **state) {
    (void)state;
    int64_t ln = step_kernels(0), ce = step_kernels(1);
    printf("  layer norm forward + sum: %lld kernels; add + cross-entropy forward and backward: "
           "%lld kernels\n", (long long)ln, (long long)ce);
    assert_true(ln >= 1 && ln <= 2);
    assert_true(ce >= 2 && ce <= 3);
}

/* ---- training with fusion: the zoo's mlp, cnn and a small GPT --------------------- */

enum { B = 16, SEQ = 16, VOCAB = 32 };
static float xs[B * 784];
static int32_t ys[B * SEQ], toks[B * SEQ];

static void make_data(uint64_t seed) {
    uint64_t s = seed * 2654435761u + 1;
    for (int i = 0; i < B * 784; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        xs[i] = (float)((s >> 40) & 0xFFFF) / 65536.0f;
    }
    for (int i = 0; i < B * SEQ; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((s >> 33) % VOCAB);
        ys[i] = (int32_t)((s >> 45) % 10);
    }
}

typedef enum { M_MLP, M_CNN, M_GPT } which;

static void train(which m, bool fuse, int steps, double *losses, dbr_stats *stats) {
    dbr_config cfg = dbr_config_default();
    cfg.seed = 3;
    cfg.mode = DBR_MODE_COMPILED;
    cfg.no_fuse = !fuse;
    if (m == M_GPT)
        dbr_gpt_configure(&(dbr_gpt_config){.layers = 2, .width = 32, .heads = 4, .context = SEQ,
                                            .vocab = VOCAB, .dropout = 0.1});
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    if (dbr_error(ctx)) fail_msg("%s", dbr_error(ctx));
    dbr_optim o = {.kind = m == M_GPT ? DBR_ADAM : m == M_CNN ? DBR_SGD : DBR_MOMENTUM,
                   .lr = m == M_GPT ? 1e-3 : m == M_CNN ? 0.01 : 0.05,
                   .momentum = 0.9};
    assert_int_equal(dbr_optim_set(ctx, &o), 0);
    for (int s = 0; s < steps; s++) {
        make_data(0); /* one batch: the loss must fall */
        dbr_step_begin(ctx);
        dbr_tensor *loss;
        if (m == M_GPT) {
            dbr_tensor *x = dbr_input(ctx, DBR_I32, DBR_SHAPE(B, SEQ), toks, false);
            dbr_tensor *y = dbr_input(ctx, DBR_I32, DBR_SHAPE(B * SEQ), ys, false);
            dbr_tensor *lg = dbr_model_gpt(ctx, x);
            loss = dbr_cross_entropy(ctx, dbr_reshape(ctx, lg, DBR_SHAPE(B * SEQ, VOCAB)), y);
        } else {
            dbr_tensor *x = dbr_input(ctx, DBR_F32, DBR_SHAPE(B, 784), xs, false);
            dbr_tensor *y = dbr_input(ctx, DBR_I32, DBR_SHAPE(B), ys, false);
            loss = dbr_cross_entropy(ctx, m == M_MLP ? dbr_model_mlp(ctx, x) : dbr_model_cnn(ctx, x),
                                     y);
        }
        if (dbr_backward(ctx, loss) || dbr_optim_step(ctx)) fail_msg("%s", dbr_error(ctx));
        losses[s] = dbr_item(ctx, loss);
        if (dbr_step_end(ctx)) fail_msg("%s", dbr_error(ctx));
    }
    dbr_stats_get(ctx, stats);
    dbr_ctx_free(ctx);
}

static void trains_like_unfused(which m) {
    enum { STEPS = 12 };
    double a[STEPS], b[STEPS];
    dbr_stats sa, sb;
    train(m, false, STEPS, a, &sa);
    train(m, true, STEPS, b, &sb);
    assert_int_equal(sa.fused_groups, 0);
    /* the cnn's element-wise work is single ops between library calls
     * (conv, batch norm, pooling): it may have nothing to fuse */
    assert_true(m == M_CNN || sb.fused_groups > 0);
    for (int s = 0; s < STEPS; s++)
        if (!(fabs(a[s] - b[s]) <= 1e-4 * fabs(a[s]) + 1e-6))
            fail_msg("step %d: loss %.9g unfused, %.9g fused", s, a[s], b[s]);
    assert_true(b[STEPS - 1] < 0.75 * b[0]); /* it learns the batch */
    printf("  %s: %lld kernels hold %lld ops; loss %.6f -> %.6f (unfused %.6f -> %.6f)\n",
           m == M_MLP ? "mlp" : m == M_CNN ? "cnn" : "gpt", (long long)sb.fused_groups,
           (long long)sb.fused_ops, b[0], b[STEPS - 1], a[0], a[STEPS - 1]);
}

static void mlp_trains_fused(void **state) {
    (void)state;
    trains_like_unfused(M_MLP);
}
static void cnn_trains_fused(void **state) {
    (void)state;
    trains_like_unfused(M_CNN);
}
static void gpt_trains_fused(void **state) {
    (void)state;
    trains_like_unfused(M_GPT);
}

int main(void) {
    if (!dbr_cg_cpu_available()) {
        fprintf(stderr, "test_fuse: no CPU code generator built in, skipping\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(random_dags_match_unfused),
        cmocka_unit_test(bias_gelu_is_one_kernel),
        cmocka_unit_test(residual_and_mse_are_one_kernel_each),
        cmocka_unit_test(max_keeps_nan),
        cmocka_unit_test(norm_and_loss_kernel_counts),
        cmocka_unit_test(mlp_trains_fused),
        cmocka_unit_test(cnn_trains_fused),
        cmocka_unit_test(gpt_trains_fused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
