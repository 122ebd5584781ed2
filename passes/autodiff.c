/* autodiff.c: reverse-mode differentiation of an IR graph. It appends the
 * backward nodes for one loss using the gradient rules of ir/grad.c (the
 * rules eager mode runs), in the same order eager mode accumulates, so
 * compiled and eager steps give bitwise equal gradients. */
#include "passes/autodiff.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ir_bld {
    dbr_bld b;
    dbr_graph *g;
    const char *file;
    int line;
    char *err;
    size_t errlen;
    bool failed;
    dbr_tinfo ring[64]; /* info() results stay valid while the graph grows */
    int n_ring;
} ir_bld;

static int32_t vid(dbr_val *v) { return (int32_t)((intptr_t)v - 1); }
static dbr_val *val(int32_t id) { return id < 0 ? NULL : (dbr_val *)(intptr_t)(id + 1); }

static dbr_val *ib_emit(dbr_bld *b, dbr_op op, int n_in, dbr_val *const in[], const dbr_attrs *a) {
    ir_bld *e = (ir_bld *)b;
    int32_t ids[DBR_MAX_SRC];
    for (int i = 0; i < n_in; i++) ids[i] = vid(in[i]);
    int32_t out = dbr_graph_node(e->g, op, n_in, ids, a, DBR_PH_BWD, "dbr_backward", e->file,
                                 e->line, e->err, e->errlen);
    if (out < 0) e->failed = true;
    return val(out);
}

static dbr_val *ib_scalar(dbr_bld *b, double v, int32_t dtype) {
    ir_bld *e = (ir_bld *)b;
    dbr_tinfo t = {.dtype = dtype, .ndim = 0};
    int32_t id = dbr_graph_leaf(e->g, DBR_V_CONST, &t, -1, v, NULL);
    if (id < 0) e->failed = true;
    return val(id);
}

static const dbr_tinfo *ib_info(dbr_bld *b, dbr_val *v) {
    ir_bld *e = (ir_bld *)b;
    dbr_tinfo *t = &e->ring[e->n_ring++ % 64];
    *t = e->g->vals[vid(v)].t;
    return t;
}

static bool differentiable(const dbr_graph *g, dbr_op op, int32_t v, const bool *req) {
    int32_t dt = g->vals[v].t.dtype;
    return dbr_op_differentiable(op) && req[v] && (dt == DT_F32 || dt == DT_F64);
}

int dbr_autodiff(dbr_graph *g, int32_t loss, const bool *leaf_requires, int32_t *grads,
                 char *err, size_t errlen) {
    int32_t n_nodes = g->n_nodes, n_vals = g->n_vals;
    bool *req = calloc((size_t)n_vals, sizeof *req);
    int32_t *gout = malloc((size_t)n_vals * sizeof *gout);
    if (!req || !gout) {
        free(req);
        free(gout);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int32_t v = 0; v < n_vals; v++) {
        gout[v] = -1;
        grads[v] = -1;
        req[v] = g->vals[v].kind == DBR_V_PARAM && leaf_requires[v];
    }
    /* forward: which values carry a gradient (eager's requires_grad) */
    for (int32_t k = 0; k < n_nodes; k++) {
        const dbr_inode *nd = &g->nodes[k];
        for (int i = 0; i < nd->n_in; i++)
            if (differentiable(g, nd->op, nd->in[i], req)) req[nd->out] = true;
    }
    int rc = 0;
    if (!req[loss]) {
        snprintf(err, errlen, "loss does not depend on any parameter (nothing to differentiate)");
        rc = -1;
    }
    ir_bld e = {.b = {.emit = ib_emit, .scalar = ib_scalar, .info = ib_info},
                .g = g, .err = err, .errlen = errlen};
    if (rc == 0) {
        dbr_tinfo lt = g->vals[loss].t;
        gout[loss] = dbr_graph_leaf(g, DBR_V_CONST, &lt, -1, 1.0, NULL);
        if (gout[loss] < 0) rc = -1;
    }
    for (int32_t k = n_nodes - 1; k >= 0 && rc == 0; k--) {
        dbr_inode nd = g->nodes[k]; /* a copy: emits may move the array */
        int32_t gy = nd.out < n_vals ? gout[nd.out] : -1;
        if (gy < 0) continue;
        dbr_tinfo in_t[DBR_MAX_SRC], out_t = g->vals[nd.out].t;
        bool needs[DBR_MAX_SRC] = {0};
        unsigned keep = dbr_ops[nd.op].retain;
        dbr_gnode gn = {.op = nd.op, .n_in = nd.n_in, .in_t = in_t, .out_t = &out_t, .a = &nd.a};
        for (int i = 0; i < nd.n_in; i++) {
            in_t[i] = g->vals[nd.in[i]].t;
            needs[i] = differentiable(g, nd.op, nd.in[i], req);
            gn.in[i] = keep & R_IN(i) ? val(nd.in[i]) : NULL;
        }
        gn.out = keep & R_OUT ? val(nd.out) : NULL;
        e.file = nd.file;
        e.line = nd.line;
        dbr_val *gx[DBR_MAX_SRC] = {0};
        if (dbr_grad(&e.b, &gn, val(gy), needs, gx) || e.failed) {
            if (!e.failed) snprintf(err, errlen, "no gradient rule for %s", dbr_ops[nd.op].name);
            rc = -1;
            break;
        }
        for (int i = 0; i < nd.n_in && rc == 0; i++) {
            int32_t x = nd.in[i];
            if (!gx[i] || !needs[i]) continue;
            if (gout[x] < 0) {
                gout[x] = vid(gx[i]);
            } else {
                int32_t two[2] = {gout[x], vid(gx[i])};
                gout[x] = dbr_graph_node(g, DBR_OP_ADD, 2, two, &(dbr_attrs){0}, DBR_PH_BWD,
                                         "dbr_backward", nd.file, nd.line, err, errlen);
                if (gout[x] < 0) rc = -1;
            }
        }
    }
    if (rc == 0)
        for (int32_t v = 0; v < n_vals; v++)
            if (g->vals[v].kind == DBR_V_PARAM && leaf_requires[v]) grads[v] = gout[v];
    free(req);
    free(gout);
    return rc;
}
