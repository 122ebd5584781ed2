/* test_graph.c: the IR graph (ir/graph.h): building an MLP step by hand,
 * users, the verifier against hand-broken graphs, the printer against
 * tests/golden/graph_print.txt, the structural hash, clone and DBR_DUMP. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* mkdtemp, open_memstream, setenv */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ir/graph.h"

#define GOLDEN DBR_SOURCE_DIR "/tests/golden/graph_print.txt"

/* ---- building helpers ----------------------------------------------------- */

static dbr_tinfo mk_t(int32_t dt, int nd, const int64_t *s) {
    dbr_tinfo t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.ndim = nd;
    for (int d = 0; d < nd; d++) t.shape[d] = s[d];
    return t;
}
#define DIMS(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}
#define TY(dt, ...) mk_t(dt, DIMS(__VA_ARGS__))
#define SCALAR(dt) mk_t(dt, 0, NULL)

static int32_t leaf(dbr_graph *g, dbr_vkind k, dbr_tinfo t, int32_t slot, double c, const char *name) {
    int32_t id = dbr_graph_leaf(g, k, &t, slot, c, name);
    assert_true(id >= 0);
    return id;
}

/* The file and line a node records; tests change them to show they are not hashed. */
static const char *g_file = "/home/user/dbr/models/mlp.c";
static int g_line_base = 10;
/* When >= 0, the next node's line (counting up): keeps the golden file
 * independent of where this test's lines fall. */
static int g_next_line = -1;

static int32_t node_at(dbr_graph *g, dbr_op op, dbr_phase ph, dbr_attrs a, int line, int n,
                       const int32_t *in) {
    char err[256] = "";
    if (g_next_line >= 0) line = g_next_line++ - g_line_base;
    int32_t id = dbr_graph_node(g, op, n, in, &a, ph, "test", g_file, g_line_base + line, err,
                                sizeof err);
    if (id < 0) fail_msg("dbr_graph_node(%s): %s", dbr_ops[op].name, err);
    return id;
}
#define ARGS(...) (int)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t)), (int32_t[]){__VA_ARGS__}
#define N(op, ph, a, ...) node_at(g, DBR_OP_##op, DBR_PH_##ph, a, __LINE__, ARGS(__VA_ARGS__))

static dbr_attrs A0(void) { return (dbr_attrs){{0}, {0}}; }
static dbr_attrs A_mm(int ta, int tb) { dbr_attrs a = A0(); a.i[0] = ta; a.i[1] = tb; return a; }
static dbr_attrs A_red(int64_t mask, int keep) { dbr_attrs a = A0(); a.i[0] = mask; a.i[1] = keep; return a; }
static dbr_attrs A_f(double x) { dbr_attrs a = A0(); a.f[0] = x; return a; }
static dbr_attrs A_i(int64_t x) { dbr_attrs a = A0(); a.i[0] = x; return a; }
static dbr_attrs A_conv(int s, int p) {
    dbr_attrs a = A0();
    a.i[0] = a.i[1] = s;
    a.i[2] = a.i[3] = p;
    a.i[4] = a.i[5] = 1;
    a.i[6] = 1;
    return a;
}
static dbr_attrs A_pool(int k, int s, int p) { dbr_attrs a = A0(); a.i[0] = k; a.i[1] = s; a.i[2] = p; return a; }
static dbr_attrs A_dims(int nd, const int64_t *d) {
    dbr_attrs a = A0();
    a.i[0] = nd;
    for (int k = 0; k < nd; k++) a.i[1 + k] = d[k];
    return a;
}
static dbr_attrs A_dropout(double p, int64_t call) { dbr_attrs a = A_f(p); a.i[1] = call; return a; }

/* dbr_graph_print into a string the caller frees. */
static char *print_str(const dbr_graph *g) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    dbr_graph_print(g, f);
    fclose(f);
    return buf;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* ---- an MLP step: forward, backward, one SGD update ---------------------- */

typedef struct {
    int32_t x, y, w1, b1, w2, b2, one, lr;                  /* leaves: values 0..7 */
    int32_t h, a, r, z, zz, loss;                           /* fwd: nodes 0..5 */
    int32_t gz, gb2, gw2, gr, ga, gb1, gw1, step, w1n;      /* bwd, opt: nodes 6..14 */
} mlp;

static mlp build_mlp(dbr_graph *g) {
    mlp m;
    m.x = leaf(g, DBR_V_INPUT, TY(DT_F32, 64, 784), 0, 0, NULL);
    m.y = leaf(g, DBR_V_INPUT, TY(DT_I32, 64), 1, 0, NULL);
    m.w1 = leaf(g, DBR_V_PARAM, TY(DT_F32, 784, 128), 0, 0, "fc1.w");
    m.b1 = leaf(g, DBR_V_PARAM, TY(DT_F32, 128), 1, 0, "fc1.b");
    m.w2 = leaf(g, DBR_V_PARAM, TY(DT_F32, 128, 10), 2, 0, "fc2.w");
    m.b2 = leaf(g, DBR_V_PARAM, TY(DT_F32, 10), 3, 0, "fc2.b");
    m.one = leaf(g, DBR_V_CONST, SCALAR(DT_F32), -1, 1.0, NULL);
    m.lr = leaf(g, DBR_V_CONST, SCALAR(DT_F32), -1, 0.1, NULL);

    m.h = N(MATMUL, FWD, A_mm(0, 0), m.x, m.w1);
    m.a = N(ADD, FWD, A0(), m.h, m.b1);
    m.r = N(RELU, FWD, A0(), m.a);
    m.z = N(MATMUL, FWD, A_mm(0, 0), m.r, m.w2);
    m.zz = N(ADD, FWD, A0(), m.z, m.b2);
    m.loss = N(CROSS_ENTROPY, FWD, A0(), m.zz, m.y);

    m.gz = N(CROSS_ENTROPY_BWD, BWD, A0(), m.zz, m.y, m.one);
    m.gb2 = N(SUM, BWD, A_red(1, 0), m.gz);
    m.gw2 = N(MATMUL, BWD, A_mm(1, 0), m.r, m.gz);
    m.gr = N(MATMUL, BWD, A_mm(0, 1), m.gz, m.w2);
    m.ga = N(RELU_BWD, BWD, A0(), m.r, m.gr);
    m.gb1 = N(SUM, BWD, A_red(1, 0), m.ga);
    m.gw1 = N(MATMUL, BWD, A_mm(1, 0), m.x, m.ga);
    m.step = N(MUL, OPT, A0(), m.gw1, m.lr);
    m.w1n = N(SUB, OPT, A0(), m.w1, m.step);

    int32_t outs[] = {m.loss, m.gb2, m.gw2, m.gb1, m.w1n};
    for (size_t k = 0; k < sizeof outs / sizeof outs[0]; k++) g->vals[outs[k]].is_output = true;
    return m;
}

static void assert_type(const dbr_graph *g, int32_t v, int32_t dt, int nd, const int64_t *s) {
    const dbr_tinfo *t = &g->vals[v].t;
    assert_int_equal(t->dtype, dt);
    assert_int_equal(t->ndim, nd);
    for (int d = 0; d < nd; d++) assert_int_equal(t->shape[d], s[d]);
}

static void test_mlp_builds_and_verifies(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    assert_non_null(g);
    mlp m = build_mlp(g);
    assert_int_equal(g->n_vals, 23);
    assert_int_equal(g->n_nodes, 15);
    /* leaves first, then node k's output is value 8 + k */
    assert_int_equal(m.lr, 7);
    assert_int_equal(m.h, 8);
    assert_int_equal(m.w1n, 22);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        assert_int_equal(g->nodes[i].out, 8 + i);
        assert_int_equal(g->vals[8 + i].producer, i);
        assert_int_equal(g->vals[8 + i].kind, DBR_V_INTER);
    }
    assert_type(g, m.h, DT_F32, DIMS(64, 128));
    assert_type(g, m.zz, DT_F32, DIMS(64, 10));
    assert_type(g, m.loss, DT_F32, 0, NULL);
    assert_type(g, m.gb2, DT_F32, DIMS(10));
    assert_type(g, m.gw2, DT_F32, DIMS(128, 10));
    assert_type(g, m.gr, DT_F32, DIMS(64, 128));
    assert_type(g, m.gw1, DT_F32, DIMS(784, 128));
    assert_type(g, m.w1n, DT_F32, DIMS(784, 128));
    assert_int_equal(g->vals[m.one].slot, -1);
    assert_true(g->vals[m.lr].cval == 0.1);
    assert_string_equal(g->vals[m.w2].name, "fc2.w");
    assert_int_equal(g->nodes[14].phase, DBR_PH_OPT);

    char err[256] = "";
    assert_int_equal(dbr_graph_verify(g, err, sizeof err), 0);

    /* users: CSR in node order, once per reading slot */
    int32_t *first, *users;
    assert_int_equal(dbr_graph_users(g, &first, &users), 0);
    assert_int_equal(first[0], 0);
    assert_int_equal(first[g->n_vals], 28);
    int32_t n_edges = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) n_edges += g->nodes[i].n_in;
    assert_int_equal(first[g->n_vals], n_edges);
    int32_t ux[] = {0, 12}, uy[] = {5, 6}, ur[] = {3, 8, 10}, ugz[] = {7, 8, 9};
    assert_int_equal(first[m.x + 1] - first[m.x], 2);
    assert_memory_equal(users + first[m.x], ux, sizeof ux);
    assert_memory_equal(users + first[m.y], uy, sizeof uy);
    assert_int_equal(first[m.r + 1] - first[m.r], 3);
    assert_memory_equal(users + first[m.r], ur, sizeof ur);
    assert_memory_equal(users + first[m.gz], ugz, sizeof ugz);
    assert_int_equal(first[m.loss + 1] - first[m.loss], 0);
    assert_int_equal(first[m.w1n + 1] - first[m.w1n], 0);
    free(first);
    free(users);

    /* a node reading one value twice is its user twice */
    int32_t sq = N(MUL, FWD, A0(), m.a, m.a);
    (void)sq;
    assert_int_equal(dbr_graph_users(g, &first, &users), 0);
    assert_int_equal(first[m.a + 1] - first[m.a], 3);
    assert_int_equal(users[first[m.a] + 1], 15);
    assert_int_equal(users[first[m.a] + 2], 15);
    free(first);
    free(users);
    dbr_graph_free(g);
}

static void test_empty_graph(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    char err[64];
    assert_int_equal(dbr_graph_verify(g, err, sizeof err), 0);
    int32_t *first, *users;
    assert_int_equal(dbr_graph_users(g, &first, &users), 0);
    assert_int_equal(first[0], 0);
    free(first);
    free(users);
    char *s = print_str(g);
    assert_string_equal(s, "");
    free(s);
    assert_int_not_equal(dbr_graph_hash(g), 0);
    dbr_graph *c = dbr_graph_clone(g);
    assert_non_null(c);
    assert_int_equal(dbr_graph_hash(c), dbr_graph_hash(g));
    dbr_graph_free(c);
    dbr_graph_free(g);
    dbr_graph_free(NULL);
}

/* dbr_graph_node passes dbr_infer's message through and leaves the graph alone. */
static void test_node_errors(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    mlp m = build_mlp(g);
    int32_t nv = g->n_vals, nn = g->n_nodes;
    char err[256] = "";
    dbr_attrs a = A_mm(0, 0);

    int32_t bad[] = {m.x, m.w2};
    assert_int_equal(dbr_graph_node(g, DBR_OP_MATMUL, 2, bad, &a, DBR_PH_FWD, "t", "f.c", 1, err,
                                    sizeof err), -1);
    assert_string_equal(err, "shapes [64,784] and [128,10] do not match (inner dims 784 vs 128)");

    int32_t mixed[] = {m.a, m.y};
    assert_int_equal(dbr_graph_node(g, DBR_OP_ADD, 2, mixed, NULL, DBR_PH_FWD, "t", "f.c", 1, err,
                                    sizeof err), -1);
    assert_string_equal(err, "dtypes f32 and i32 differ");

    int32_t three[] = {m.a, m.a, m.a};
    assert_int_equal(dbr_graph_node(g, DBR_OP_ADD, 3, three, NULL, DBR_PH_FWD, "t", "f.c", 1, err,
                                    sizeof err), -1);
    assert_string_equal(err, "takes 2 inputs, got 3");

    int32_t missing[] = {m.a, 99};
    assert_int_equal(dbr_graph_node(g, DBR_OP_ADD, 2, missing, NULL, DBR_PH_FWD, "t", "f.c", 1, err,
                                    sizeof err), -1);
    assert_string_equal(err, "input 1 is value 99, which does not exist (23 values)");
    assert_int_equal(dbr_graph_node(g, DBR_OP_ADD, 9, three, NULL, DBR_PH_FWD, "t", "f.c", 1, err,
                                    sizeof err), -1);
    assert_string_equal(err, "9 inputs (at most 8)");

    /* a leaf is never INTER, and its type must fit a dbr_tinfo */
    dbr_tinfo t = TY(DT_F32, 4);
    assert_int_equal(dbr_graph_leaf(g, DBR_V_INTER, &t, -1, 0, NULL), -1);
    t.ndim = DBR_IR_MAX_DIMS + 1;
    assert_int_equal(dbr_graph_leaf(g, DBR_V_PARAM, &t, 0, 0, NULL), -1);

    assert_int_equal(g->n_vals, nv);
    assert_int_equal(g->n_nodes, nn);
    assert_int_equal(dbr_graph_verify(g, err, sizeof err), 0);
    dbr_graph_free(g);
}

/* ---- the verifier against hand-broken graphs ----------------------------- */

typedef struct {
    const char *what;
    void (*breaks)(dbr_graph *g, const mlp *m);
    const char *msg;
} breaker;

/* node 1 (add) and node 2 (relu) swap places: relu now reads add's output early */
static void swap_nodes(dbr_graph *g, const mlp *m) {
    dbr_inode t = g->nodes[1];
    g->nodes[1] = g->nodes[2];
    g->nodes[2] = t;
    g->vals[m->a].producer = 2;
    g->vals[m->r].producer = 1;
}
/* add (node 1) reads relu's output, and relu reads add's: a cycle */
static void make_cycle(dbr_graph *g, const mlp *m) { g->nodes[1].in[1] = m->r; }
static void self_loop(dbr_graph *g, const mlp *m) { g->nodes[2].in[0] = m->r; }
static void wrong_shape(dbr_graph *g, const mlp *m) { g->vals[m->gw1].t.shape[1] = 129; }
static void wrong_dtype(dbr_graph *g, const mlp *m) { g->vals[m->loss].t.dtype = DT_F64; }
static void wrong_rank(dbr_graph *g, const mlp *m) { g->vals[m->gb2].t.ndim = 2; g->vals[m->gb2].t.shape[1] = 1; }
static void three_inputs(dbr_graph *g, const mlp *m) { g->nodes[1].n_in = 3; g->nodes[1].in[2] = m->x; }
static void nine_inputs(dbr_graph *g, const mlp *m) { (void)m; g->nodes[1].n_in = 9; }
static void no_inputs(dbr_graph *g, const mlp *m) { (void)m; g->nodes[2].n_in = 0; }
static void input_id_high(dbr_graph *g, const mlp *m) { (void)m; g->nodes[3].in[1] = 999; }
static void input_id_neg(dbr_graph *g, const mlp *m) { (void)m; g->nodes[3].in[0] = -1; }
static void output_id_bad(dbr_graph *g, const mlp *m) { (void)m; g->nodes[3].out = 500; }
static void orphan_inter(dbr_graph *g, const mlp *m) {
    (void)m;
    int32_t v = leaf(g, DBR_V_PARAM, TY(DT_F32, 128), 9, 0, "extra");
    g->vals[v].kind = DBR_V_INTER;
}
static void orphan_read(dbr_graph *g, const mlp *m) {
    orphan_inter(g, m);
    g->nodes[13].in[1] = g->n_vals - 1;
}
static void output_is_param(dbr_graph *g, const mlp *m) { g->nodes[2].out = m->w1; }
static void leaf_with_producer(dbr_graph *g, const mlp *m) { g->vals[m->w2].producer = 3; }
static void two_producers(dbr_graph *g, const mlp *m) { g->nodes[4].out = m->z; }
static void bad_op(dbr_graph *g, const mlp *m) { (void)m; g->nodes[0].op = (dbr_op)999; }
static void bad_attr(dbr_graph *g, const mlp *m) { (void)m; g->nodes[3].a.i[1] = 1; }
static void bad_leaf_type(dbr_graph *g, const mlp *m) { g->vals[m->b2].t.shape[0] = -3; }
static void bad_kind(dbr_graph *g, const mlp *m) { g->vals[m->b2].kind = (dbr_vkind)7; }

static const breaker breakers[] = {
    {"use before def", swap_nodes, "node 1 (relu): input 9 is used before it is defined (by node 2 (add))"},
    {"cycle", make_cycle, "node 1 (add): input 10 comes from node 2 (relu), which depends on node 1: a cycle"},
    {"self loop", self_loop, "node 2 (relu): input 10 is its own output: a cycle"},
    {"wrong shape", wrong_shape, "node 12 (matmul): output 20 is f32[784,129] but the inputs give f32[784,128]"},
    {"wrong dtype", wrong_dtype, "node 5 (cross_entropy): output 13 is f64[] but the inputs give f32[]"},
    {"wrong rank", wrong_rank, "node 7 (sum): output 15 is f32[10,1] but the inputs give f32[10]"},
    {"arity high", three_inputs, "node 1 (add): 3 inputs, but add takes 2"},
    {"arity past MAX_SRC", nine_inputs, "node 1 (add): 9 inputs, but add takes 2"},
    {"arity low", no_inputs, "node 2 (relu): 0 inputs, but relu takes 1"},
    {"input id high", input_id_high, "node 3 (matmul): input 1 is value 999, out of range (23 values)"},
    {"input id negative", input_id_neg, "node 3 (matmul): input 0 is value -1, out of range (23 values)"},
    {"output id", output_id_bad, "node 3 (matmul): output is value 500, out of range (23 values)"},
    {"inter without producer", orphan_inter, "value 23 (inter) has no producer"},
    {"read of inter without producer", orphan_read, "node 13 (mul): input 23 has no producer"},
    {"output not inter", output_is_param, "node 2 (relu): output 2 is a param value, not an intermediate"},
    {"leaf with producer", leaf_with_producer, "value 4 (param) is a leaf but names producer node 3"},
    {"two producers", two_producers, "node 4 (add): output 11 names node 3 as its producer"},
    {"unknown op", bad_op, "node 0: unknown op 999"},
    {"attribute vs infer", bad_attr,
     "node 3 (matmul): shapes [64,128] and [128,10] do not match (inner dims 128 vs 10, trans_b)"},
    {"malformed leaf type", bad_leaf_type, "value 5 (param) has a malformed type f32[-3]"},
    {"unknown kind", bad_kind, "value 5 has an unknown kind 7"},
};

static void test_verify_catches_broken_graphs(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    mlp m = build_mlp(g);
    char err[256];
    for (size_t k = 0; k < sizeof breakers / sizeof breakers[0]; k++) {
        dbr_graph *c = dbr_graph_clone(g);
        assert_non_null(c);
        breakers[k].breaks(c, &m);
        strcpy(err, "(none)");
        int rc = dbr_graph_verify(c, err, sizeof err);
        if (rc != -1 || strcmp(err, breakers[k].msg))
            fail_msg("%s: rc %d, message \"%s\", expected \"%s\"", breakers[k].what, rc, err,
                     breakers[k].msg);
        /* the debugging tools must survive what they debug */
        free(print_str(c));
        (void)dbr_graph_hash(c);
        int32_t *first, *users;
        assert_int_equal(dbr_graph_users(c, &first, &users), 0);
        free(first);
        free(users);
        dbr_graph_free(c);
    }
    /* a short buffer truncates, and NULL asks for no message */
    dbr_graph *c = dbr_graph_clone(g);
    bad_op(c, &m);
    char tiny[8];
    assert_int_equal(dbr_graph_verify(c, tiny, sizeof tiny), -1);
    assert_string_equal(tiny, "node 0:");
    assert_int_equal(dbr_graph_verify(c, NULL, 0), -1);
    dbr_graph_free(c);
    dbr_graph_free(g);
}

/* ---- printer ---------------------------------------------------------------- */

/* One graph touching every attribute family the printer knows. */
static void build_print_graph(dbr_graph *g) {
    const char *saved = g_file;
    g_file = "/home/user/dbr/models/cnn.c";
    g_next_line = 20;
    int32_t x = leaf(g, DBR_V_INPUT, TY(DT_F32, 8, 1, 12, 12), 0, 0, "images");
    int32_t lbl = leaf(g, DBR_V_INPUT, TY(DT_I32, 8), 1, 0, NULL);
    int32_t k = leaf(g, DBR_V_PARAM, TY(DT_F32, 4, 1, 3, 3), 0, 0, "conv1.w");
    int32_t gm = leaf(g, DBR_V_PARAM, TY(DT_F32, 4), 1, 0, "bn1.g");
    int32_t bt = leaf(g, DBR_V_PARAM, TY(DT_F32, 4), 2, 0, "bn1.b");
    int32_t rm = leaf(g, DBR_V_BUFFER, TY(DT_F32, 4), 3, 0, "bn1.\"mean\"");
    int32_t w = leaf(g, DBR_V_PARAM, TY(DT_F32, 10, 144), 4, 0, "fc.w");
    int32_t half = leaf(g, DBR_V_CONST, SCALAR(DT_F32), -1, 0.5, NULL);
    int32_t tiny = leaf(g, DBR_V_CONST, SCALAR(DT_F32), -1, 1e-3, NULL);
    int32_t third = leaf(g, DBR_V_CONST, SCALAR(DT_F64), -1, 1.0 / 3.0, NULL);
    (void)third;

    int32_t c = N(CONV2D, FWD, A_conv(1, 1), x, k);
    int32_t bn = N(BATCH_NORM, FWD, A_f(1e-5), c, gm, bt);
    int32_t st = N(BN_STATS, FWD, A0(), c);
    int32_t r = N(LEAKY_RELU, FWD, A_f(0.01), bn);
    int32_t p = N(MAX_POOL2D, FWD, A_pool(2, 2, 0), r);
    int32_t f = N(RESHAPE, FWD, A_dims(DIMS(8, 144)), p);
    int32_t d = N(DROPOUT, FWD, A_dropout(0.5, 0), f);
    int32_t z = N(MATMUL, FWD, A_mm(0, 1), d, w);
    int32_t ls = N(LOG_SOFTMAX, FWD, A_i(1), z);
    int32_t loss = N(CROSS_ENTROPY, FWD, A0(), z, lbl);
    int32_t mx = N(MAX, FWD, A_red(2, 1), ls);
    int32_t pt = N(PERMUTE, FWD, A_dims(DIMS(1, 0)), z);
    dbr_attrs sa = A0();
    sa.i[0] = 0, sa.i[1] = 1, sa.i[2] = 10, sa.i[3] = 3;
    int32_t sl = N(SLICE, FWD, sa, pt);
    int32_t pw = N(POW, FWD, A_f(2), sl);
    int32_t cat = N(CONCAT, FWD, A_i(1), ls, z);
    int32_t ln = N(LAYER_NORM, FWD, A_f(1e-6), cat);
    int32_t bc = N(BROADCAST_TO, FWD, A_dims(DIMS(2, 4)), rm);
    int32_t ap = N(AVG_POOL2D, FWD, A_pool(3, 1, 1), c);
    int32_t sm = N(MEAN, FWD, A_red(6, 0), ap);
    (void)st, (void)mx, (void)pw, (void)ln, (void)bc, (void)sm;

    g_file = NULL;
    int32_t gd = N(DROPOUT, BWD, A_dropout(0.5, 0), f);
    dbr_attrs ka = A_dropout(0.25, 7);
    ka.i[0] = (int64_t)0x9e3779b97f4a7c15ull;
    int32_t ek = N(DROPOUT, BWD, ka, f);
    g_file = "cnn.c";
    dbr_attrs sb = sa;
    sb.i[4] = 10;
    int32_t gsl = N(SLICE_BWD, BWD, sb, sl);
    int32_t eb = N(EMBEDDING_BWD, BWD, A_i(100), lbl, z);
    dbr_attrs cd = A_conv(1, 1);
    cd.i[8] = 8, cd.i[9] = 1, cd.i[10] = 12, cd.i[11] = 12;
    int32_t gx = N(CONV2D_BWD_DATA, BWD, cd, c, k);
    dbr_attrs cw = A_conv(1, 1);
    cw.i[8] = 4, cw.i[9] = 1, cw.i[10] = 3, cw.i[11] = 3;
    int32_t gk = N(CONV2D_BWD_WEIGHT, BWD, cw, x, c);
    dbr_attrs pb = A_pool(3, 1, 1);
    pb.i[8] = 8, pb.i[9] = 4, pb.i[10] = 12, pb.i[11] = 12;
    int32_t gap = N(AVG_POOL2D_BWD, BWD, pb, ap);
    int32_t gbn = N(BATCH_NORM_BWD, BWD, A_f(1e-5), c, bn, gm);
    int32_t glr = N(LEAKY_RELU_BWD, BWD, A_f(0.01), bn, r);
    (void)gd, (void)ek, (void)gsl, (void)eb, (void)gx, (void)gap, (void)gbn, (void)glr;

    g_file = "/opt/dbr/frontend/optim.c";
    int32_t sc = N(MUL, OPT, A0(), gk, tiny);
    int32_t kn = N(SUB, OPT, A0(), k, sc);
    int32_t hm = N(MUL, OPT, A0(), rm, half);
    g_file = saved;
    g_next_line = -1;

    g->vals[loss].is_output = true;
    g->vals[kn].is_output = true;
    g->vals[hm].is_output = true;
    g->vals[rm].is_output = true;
}

static void test_print_golden(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    build_print_graph(g);
    char err[256] = "";
    if (dbr_graph_verify(g, err, sizeof err)) fail_msg("%s", err);
    char *got = print_str(g);
    /* DBR_UPDATE_GOLDEN=1 rewrites the file; check the diff by eye */
    const char *upd = getenv("DBR_UPDATE_GOLDEN");
    if (upd && *upd == '1') {
        FILE *f = fopen(GOLDEN, "w");
        assert_non_null(f);
        fputs(got, f);
        assert_int_equal(fclose(f), 0);
    }
    char *want = read_file(GOLDEN);
    if (!want) fail_msg("cannot read %s", GOLDEN);
    if (strcmp(got, want)) {
        fprintf(stderr, "---- got ----\n%s---- want ----\n%s", got, want);
        fail_msg("dbr_graph_print differs from %s", GOLDEN);
    }
    free(want);
    free(got);

    /* printing is stable, and a clone prints the same */
    dbr_graph *c = dbr_graph_clone(g);
    char *a = print_str(g), *b = print_str(c);
    assert_string_equal(a, b);
    free(a);
    free(b);
    dbr_graph_free(c);
    dbr_graph_free(g);
}

static void test_print_mlp_lines(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    build_mlp(g);
    char *s = print_str(g);
    assert_non_null(strstr(s, "%0 = input #0 f32[64,784]\n"));
    assert_non_null(strstr(s, "%2 = param #0 \"fc1.w\" f32[784,128]\n"));
    assert_non_null(strstr(s, "%7 = const 0.1 f32[]\n"));
    assert_non_null(strstr(s, "%16 = matmul(%10, %14) f32[128,10] ta=1 tb=0 [out]  # mlp.c:"));
    assert_non_null(strstr(s, "%13 = cross_entropy(%12, %1) f32[] [out]  # mlp.c:"));
    assert_non_null(strstr(s, "%15 = sum(%14) f32[10] axes=0b1 keep=0 [out]  # mlp.c:"));
    assert_non_null(strstr(s, "%22 = sub(%2, %21) f32[784,128] [out]  # mlp.c:"));
    assert_non_null(strstr(s, " opt\n"));
    assert_null(strstr(s, "/home/"));
    /* one line per value */
    int lines = 0;
    for (const char *p = s; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, g->n_vals);
    free(s);
    dbr_graph_free(g);
}

/* ---- hash ------------------------------------------------------------------- */

enum {
    V_BASE, V_SWAPPED, V_SWAP_BRANCH, V_LOCATION, /* these hash like V_BASE */
    V_TRANS_B, V_STRIDE, V_EPS, V_P, V_CALL, V_DTYPE, V_DIM, V_EDGE, V_OP, V_CONST, V_PNAME,
    V_PSLOT, V_INPUT_SLOT, V_OUTPUT, V_PHASE, V_EXTRA_NODE, V_COUNT
};
#define V_FIRST_DIFFERENT V_TRANS_B

/* An MLP fragment with two branches (relu, tanh) and an independent conv
 * block; each variant changes one thing, or only the recording order. */
static void hash_part1(dbr_graph *g, int v, bool swap) {
    int32_t x, lbl, w, b, c;
    dbr_tinfo tl = TY(v == V_DTYPE ? DT_I64 : DT_I32, 16);
    const char *wn = v == V_PNAME ? "fc.W" : "fc.w";
    int bslot = v == V_PSLOT ? 5 : 1;
    double cv = v == V_CONST ? 0.25 : 0.5;
    if (!swap) {
        x = leaf(g, DBR_V_INPUT, TY(DT_F32, 16, 8), 0, 0, NULL);
        lbl = leaf(g, DBR_V_INPUT, tl, v == V_INPUT_SLOT ? 3 : 1, 0, NULL);
        w = leaf(g, DBR_V_PARAM, TY(DT_F32, 8, 8), 0, 0, wn);
        b = leaf(g, DBR_V_PARAM, TY(DT_F32, 8), bslot, 0, "fc.b");
        c = leaf(g, DBR_V_CONST, SCALAR(DT_F32), -1, cv, NULL);
    } else {
        c = leaf(g, DBR_V_CONST, SCALAR(DT_F32), -1, cv, NULL);
        b = leaf(g, DBR_V_PARAM, TY(DT_F32, 8), bslot, 0, "fc.b");
        w = leaf(g, DBR_V_PARAM, TY(DT_F32, 8, 8), 0, 0, wn);
        lbl = leaf(g, DBR_V_INPUT, tl, 1, 0, NULL);
        x = leaf(g, DBR_V_INPUT, TY(DT_F32, 16, 8), 0, 0, NULL);
    }
    int32_t h = N(MATMUL, FWD, A_mm(0, v == V_TRANS_B), x, w);
    int32_t hb = N(ADD, FWD, A0(), h, b);
    if (v == V_OUTPUT) g->vals[hb].is_output = true;
    int32_t r, t;
    if (!swap) {
        r = N(RELU, FWD, A0(), hb);
        t = v == V_OP ? N(SIGMOID, FWD, A0(), hb) : N(TANH, FWD, A0(), hb);
    } else {
        t = N(TANH, FWD, A0(), hb);
        r = N(RELU, FWD, A0(), hb);
    }
    int32_t d = v == V_EDGE ? N(SUB, FWD, A0(), t, r) : N(SUB, FWD, A0(), r, t);
    int32_t m = N(MUL, FWD, A0(), d, c);
    int32_t dr = N(DROPOUT, FWD, A_dropout(v == V_P ? 0.2 : 0.1, v == V_CALL), m);
    int32_t loss = v == V_PHASE ? N(CROSS_ENTROPY, BWD, A0(), dr, lbl)
                                : N(CROSS_ENTROPY, FWD, A0(), dr, lbl);
    g->vals[loss].is_output = true;
    if (v == V_EXTRA_NODE) N(NEG, FWD, A0(), hb);
}

static void hash_part2(dbr_graph *g, int v) {
    int32_t img = leaf(g, DBR_V_INPUT, TY(DT_F32, 2, 3, 8, v == V_DIM ? 10 : 8), 2, 0, NULL);
    int32_t k = leaf(g, DBR_V_PARAM, TY(DT_F32, 4, 3, 3, 3), 2, 0, "conv.w");
    int32_t gm = leaf(g, DBR_V_PARAM, TY(DT_F32, 4), 3, 0, "bn.g");
    int32_t cv = N(CONV2D, FWD, A_conv(v == V_STRIDE ? 2 : 1, 1), img, k);
    int32_t bn = N(BATCH_NORM, FWD, A_f(v == V_EPS ? 1e-3 : 1e-5), cv, gm);
    g->vals[bn].is_output = true;
}

static void build_variant(dbr_graph *g, int v) {
    int saved = g_line_base;
    if (v == V_LOCATION) g_line_base = 500;
    if (v == V_SWAPPED) {
        hash_part2(g, v);
        hash_part1(g, v, true);
    } else {
        hash_part1(g, v, v == V_SWAP_BRANCH);
        hash_part2(g, v);
    }
    g_line_base = saved;
}

static void test_hash(void **state) {
    (void)state;
    uint64_t h[V_COUNT];
    char err[256];
    for (int v = 0; v < V_COUNT; v++) {
        dbr_graph *g = dbr_graph_new();
        build_variant(g, v);
        if (dbr_graph_verify(g, err, sizeof err)) fail_msg("variant %d: %s", v, err);
        h[v] = dbr_graph_hash(g);
        assert_int_not_equal(h[v], 0);

        /* built twice: equal; cloned: equal; cleared and rebuilt: equal */
        dbr_graph *g2 = dbr_graph_new();
        build_variant(g2, v);
        assert_int_equal(dbr_graph_hash(g2), h[v]);
        dbr_graph *c = dbr_graph_clone(g);
        assert_int_equal(dbr_graph_hash(c), h[v]);
        dbr_graph_clear(c);
        assert_int_equal(c->n_vals, 0);
        assert_int_equal(c->n_nodes, 0);
        build_variant(c, v);
        assert_int_equal(dbr_graph_hash(c), h[v]);
        dbr_graph_free(c);
        dbr_graph_free(g2);
        dbr_graph_free(g);
    }
    for (int v = 1; v < V_FIRST_DIFFERENT; v++)
        if (h[v] != h[V_BASE]) fail_msg("variant %d should hash like the base", v);
    for (int v = V_FIRST_DIFFERENT; v < V_COUNT; v++)
        for (int u = 0; u < v; u++)
            if (h[u] == h[v]) fail_msg("variants %d and %d hash alike (0x%llx)", u, v, (unsigned long long)h[v]);
}

/* The reordered recordings really are different graphs, not copies. */
static void test_hash_orders_differ_in_print(void **state) {
    (void)state;
    dbr_graph *a = dbr_graph_new(), *b = dbr_graph_new();
    build_variant(a, V_BASE);
    build_variant(b, V_SWAPPED);
    char *sa = print_str(a), *sb = print_str(b);
    assert_string_not_equal(sa, sb);
    assert_int_equal(dbr_graph_hash(a), dbr_graph_hash(b));
    free(sa);
    free(sb);
    dbr_graph_free(a);
    dbr_graph_free(b);
}

/* Each single edit of the MLP step changes the hash; undoing it restores it. */
static void test_hash_mlp_edits(void **state) {
    (void)state;
    dbr_graph *g = dbr_graph_new();
    mlp m = build_mlp(g);
    uint64_t base = dbr_graph_hash(g);
    dbr_graph *c = dbr_graph_clone(g);

#define EDIT(stmt)                                                        \
    do {                                                                  \
        stmt;                                                             \
        if (dbr_graph_hash(c) == base) fail_msg("hash ignores: %s", #stmt); \
        dbr_graph_free(c);                                                \
        c = dbr_graph_clone(g);                                           \
    } while (0)
    EDIT(c->vals[m.lr].cval = 0.01);
    EDIT(c->vals[m.one].cval = -1.0);
    EDIT(c->vals[m.w1].name = "fc1.weight");
    EDIT(c->vals[m.w1].name = NULL);
    EDIT(c->vals[m.w1].slot = 7);
    EDIT(c->vals[m.x].slot = 2);
    EDIT(c->vals[m.b1].kind = DBR_V_BUFFER);
    EDIT(c->vals[m.gb1].is_output = false);
    EDIT(c->vals[m.r].is_output = true);
    EDIT(c->nodes[14].in[0] = m.b1);
    EDIT((c->nodes[14].in[0] = m.step, c->nodes[14].in[1] = m.w1));
    EDIT(c->nodes[7].a.i[0] = 2);
    EDIT(c->nodes[7].a.i[1] = 1);
    EDIT(c->nodes[7].a.i[15] = 1);
    EDIT(c->nodes[7].a.f[3] = 1e-300);
    EDIT(c->nodes[2].op = DBR_OP_TANH);
    EDIT(c->vals[m.x].t.shape[0] = 32);
    EDIT(c->vals[m.y].t.dtype = DT_I64);
    EDIT(c->vals[m.h].t.dtype = DT_F64);
#undef EDIT
    /* locations and api names are not structure */
    c->nodes[3].line = 999;
    c->nodes[3].file = "elsewhere.c";
    c->nodes[3].api = "dbr_linear";
    assert_int_equal(dbr_graph_hash(c), base);
    dbr_graph_free(c);
    dbr_graph_free(g);
}

/* ---- DBR_DUMP --------------------------------------------------------------- */

static void test_dump(void **state) {
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/dbr_graph_XXXXXX");
    assert_non_null(mkdtemp(dir));
    dbr_graph *g = dbr_graph_new();
    build_mlp(g);

    unsetenv("DBR_DUMP");
    assert_int_equal(dbr_graph_dump(g, "verify"), 0);
    setenv("DBR_DUMP", "", 1);
    assert_int_equal(dbr_graph_dump(g, "verify"), 0);

    setenv("DBR_DUMP", dir, 1);
    assert_int_equal(dbr_graph_dump(g, "autodiff"), 0);
    assert_int_equal(dbr_graph_dump(g, "fuse/2"), 0);

    /* exactly two files, consecutive numbers, no temporaries left */
    char names[2][256];
    int n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            assert_true(n < 2);
            snprintf(names[n++], sizeof names[0], "%s", e->d_name);
        }
    closedir(d);
    assert_int_equal(n, 2);
    if (strcmp(names[0], names[1]) > 0) {
        char t[256];
        memcpy(t, names[0], sizeof t);
        memcpy(names[0], names[1], sizeof t);
        memcpy(names[1], t, sizeof t);
    }
    int n0 = -1, n1 = -1;
    char want[256];
    assert_int_equal(sscanf(names[0], "%d-", &n0), 1);
    assert_int_equal(sscanf(names[1], "%d-", &n1), 1);
    assert_true(n0 >= 1);
    assert_int_equal(n1, n0 + 1);
    snprintf(want, sizeof want, "%02d-autodiff.txt", n0);
    assert_string_equal(names[0], want);
    snprintf(want, sizeof want, "%02d-fuse_2.txt", n1);
    assert_string_equal(names[1], want);

    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, names[0]);
    char *text = read_file(path);
    assert_non_null(text);
    char *body = print_str(g);
    char head[128];
    snprintf(head, sizeof head, "# autodiff: 23 values, 15 nodes, hash 0x%016llx\n",
             (unsigned long long)dbr_graph_hash(g));
    assert_int_equal(strncmp(text, head, strlen(head)), 0);
    assert_string_equal(text + strlen(head), body);
    free(text);
    free(body);
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        assert_int_equal(unlink(path), 0);
    }

    /* a missing directory is an error, not an abort */
    snprintf(path, sizeof path, "%s/missing", dir);
    setenv("DBR_DUMP", path, 1);
    assert_int_equal(dbr_graph_dump(g, "schedule"), -1);
    unsetenv("DBR_DUMP");

    assert_int_equal(rmdir(dir), 0);
    dbr_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_builds_and_verifies),
        cmocka_unit_test(test_empty_graph),
        cmocka_unit_test(test_node_errors),
        cmocka_unit_test(test_verify_catches_broken_graphs),
        cmocka_unit_test(test_print_golden),
        cmocka_unit_test(test_print_mlp_lines),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_hash_orders_differ_in_print),
        cmocka_unit_test(test_hash_mlp_edits),
        cmocka_unit_test(test_dump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
