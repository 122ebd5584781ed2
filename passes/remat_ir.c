/* remat_ir.c: the forward part of a recorded IR graph as the recomputation
 * planner sees it: one node per forward op with its output bytes, a time
 * from a roofline cost model, and what its backward retains (ops.def). */
#include "passes/remat_ir.h"

#include "ir/fused.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ns per f32 element of the CPU kernels that are compute-bound, measured on
 * this project's VM (eager, one thread, 1M elements, best of 5); an add is
 * 0.2 ns, which the bandwidth term covers. */
static const float cpu_elem_ns[DBR_OP_COUNT] = {
    [DBR_OP_TANH] = 15.0f,    [DBR_OP_GELU] = 15.0f,        [DBR_OP_EXP] = 3.9f,
    [DBR_OP_LOG] = 4.3f,      [DBR_OP_SIGMOID] = 3.9f,      [DBR_OP_SILU] = 3.6f,
    [DBR_OP_SQRT] = 1.6f,     [DBR_OP_RSQRT] = 1.6f,        [DBR_OP_POW] = 6.1f,
    [DBR_OP_DROPOUT] = 7.6f,  [DBR_OP_SOFTMAX] = 4.8f,      [DBR_OP_LOG_SOFTMAX] = 4.9f,
    [DBR_OP_GELU_BWD] = 15.0f, [DBR_OP_SILU_BWD] = 3.6f,    [DBR_OP_LAYER_NORM] = 0.8f,
};

dbr_cost_model dbr_cost_model_cpu(void) {
    /* ENVIRONMENT.md, this project's CPU machines: OpenBLAS sgemm ~105
     * GFLOP/s at OPENBLAS_CORETYPE=Haswell, STREAM triad 38.7 GB/s */
    return (dbr_cost_model){.flops_per_s = 105e9, .bytes_per_s = 38.7e9, .launch_s = 2e-6,
                            .name = "cpu (measured: 105 GFLOP/s sgemm, 38.7 GB/s, libm and "
                                    "Philox per element)",
                            .elem_ns = cpu_elem_ns};
}

static int64_t numel(const dbr_tinfo *t) { return dbr_tinfo_numel(t); }

static int64_t nbytes(const dbr_tinfo *t) { return numel(t) * (int64_t)dbr_dt_size(t->dtype); }

double dbr_node_flops(const dbr_graph *g, const dbr_inode *n) {
    const dbr_tinfo *o = &g->vals[n->out].t, *a = &g->vals[n->in[0]].t;
    switch (n->op) {
    case DBR_OP_MATMUL: {
        /* out [..., M, N], inner K from a's last two dims and trans_a */
        int64_t k = n->a.i[0] ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
        return 2.0 * (double)numel(o) * (double)k;
    }
    case DBR_OP_CONV2D: {
        const dbr_tinfo *w = &g->vals[n->in[1]].t; /* [O, C/g, KH, KW] */
        return 2.0 * (double)numel(o) * (double)(w->shape[1] * w->shape[2] * w->shape[3]);
    }
    case DBR_OP_CONV2D_BWD_DATA:
    case DBR_OP_CONV2D_BWD_WEIGHT: {
        const dbr_tinfo *gy = &g->vals[n->in[n->op == DBR_OP_CONV2D_BWD_DATA ? 0 : 1]].t;
        return 2.0 * (double)numel(gy) * (double)(n->a.i[9] * n->a.i[10] * n->a.i[11]);
    }
    case DBR_OP_MAX_POOL2D:
    case DBR_OP_AVG_POOL2D: return (double)numel(o) * (double)(n->a.i[0] * n->a.i[0]);
    default: {
        double f = 0;
        for (int i = 0; i < n->n_in; i++) f += (double)numel(&g->vals[n->in[i]].t);
        return f > (double)numel(o) ? f : (double)numel(o);
    }
    }
}

double dbr_node_time(const dbr_graph *g, const dbr_inode *n, const dbr_cost_model *cm) {
    double bytes = (double)nbytes(&g->vals[n->out].t);
    for (int i = 0; i < n->n_in; i++) bytes += (double)nbytes(&g->vals[n->in[i]].t);
    double tf = dbr_node_flops(g, n) / cm->flops_per_s, tb = bytes / cm->bytes_per_s;
    const dbr_fbody *fb = n->op == DBR_OP_FUSED ? dbr_fbody_get(n->a.i[0]) : NULL;
    if (fb) { /* every op of the group at every point of its space, one pass over memory */
        tf = 0;
        for (int k = 0; k < fb->n_ins; k++)
            if (fb->ins[k].kind == DBR_FI_OP)
                tf += (double)numel(&fb->space) *
                      (1.0 / cm->flops_per_s +
                       (cm->elem_ns ? (double)cm->elem_ns[fb->ins[k].op] * 1e-9 : 0));
    } else if (cm->elem_ns && (unsigned)n->op < DBR_OP_COUNT) {
        tf += (double)numel(&g->vals[n->out].t) * (double)cm->elem_ns[n->op] * 1e-9;
    }
    return cm->launch_s + (tf > tb ? tf : tb);
}

/* What backward reads around a fused group: its body's ops had retain
 * masks, but inside the group they no longer name values. The step graph
 * says it directly: an input or the output with a reader outside forward. */
static unsigned fused_retain(const dbr_graph *g, const int32_t *users, const int32_t *first,
                             const dbr_inode *n) {
    unsigned keep = 0;
    for (int i = 0; i <= n->n_in && users; i++) {
        int32_t v = i < n->n_in ? n->in[i] : n->out;
        for (int32_t u = first[v]; u < first[v + 1]; u++)
            if (g->nodes[users[u]].phase != DBR_PH_FWD) {
                keep |= i < n->n_in ? R_IN(i) : R_OUT;
                break;
            }
    }
    return keep;
}

static char *dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int dbr_rgraph_from_ir(const dbr_graph *g, const dbr_cost_model *cm, dbr_rgraph *out, char *err,
                       size_t errlen) {
    memset(out, 0, sizeof *out);
    if (errlen) err[0] = 0;
    int32_t nv = g->n_vals, nn = 0, nl = 0, n_ins = 0;
    for (int32_t k = 0; k < g->n_nodes; k++)
        if (g->nodes[k].phase == DBR_PH_FWD) {
            nn++;
            n_ins += g->nodes[k].n_in;
        }
    for (int32_t v = 0; v < nv; v++) nl += g->vals[v].kind != DBR_V_INTER;
    if (nn == 0) {
        snprintf(err, errlen, "the graph has no forward nodes to plan");
        return -1;
    }
    int32_t *node_of = malloc((size_t)nv * sizeof *node_of); /* value -> rgraph id (or -1-leaf) */
    int32_t *first = NULL, *users = NULL;
    bool fused = false;
    for (int32_t k = 0; k < g->n_nodes; k++) fused |= g->nodes[k].op == DBR_OP_FUSED;
    if (fused && dbr_graph_users(g, &first, &users)) {
        free(node_of);
        node_of = NULL;
    }
    out->n = nn;
    out->n_leaves = nl;
    out->id = calloc((size_t)nn, sizeof *out->id);
    out->op = calloc((size_t)nn, sizeof *out->op);
    out->bytes = calloc((size_t)nn, sizeof *out->bytes);
    out->time = calloc((size_t)nn, sizeof *out->time);
    out->in_first = calloc((size_t)nn + 1, sizeof *out->in_first);
    out->ins = calloc((size_t)n_ins + 1, sizeof *out->ins);
    out->retain = calloc((size_t)nn, sizeof *out->retain);
    out->leaf_id = calloc((size_t)nl + 1, sizeof *out->leaf_id);
    out->leaf_bytes = calloc((size_t)nl + 1, sizeof *out->leaf_bytes);
    out->leaf_is_param = calloc((size_t)nl + 1, sizeof *out->leaf_is_param);
    bool ok = node_of && out->id && out->op && out->bytes && out->time && out->in_first &&
              out->ins && out->retain && out->leaf_id && out->leaf_bytes && out->leaf_is_param;
    char name[64];
    int32_t l = 0;
    for (int32_t v = 0; ok && v < nv; v++) {
        const dbr_value *x = &g->vals[v];
        node_of[v] = -1;
        if (x->kind == DBR_V_INTER) continue;
        snprintf(name, sizeof name, "%%%d", v);
        out->leaf_id[l] = dup(x->name ? x->name : name);
        out->leaf_bytes[l] = nbytes(&x->t);
        out->leaf_is_param[l] = x->kind == DBR_V_PARAM || x->kind == DBR_V_BUFFER;
        ok = out->leaf_id[l] != NULL;
        node_of[v] = -1 - l++;
    }
    int32_t r = 0, at = 0;
    for (int32_t k = 0; ok && k < g->n_nodes; k++) {
        const dbr_inode *n = &g->nodes[k];
        if (n->phase != DBR_PH_FWD) continue;
        const char *base = n->file ? strrchr(n->file, '/') : NULL;
        snprintf(name, sizeof name, "%%%d %s:%d", n->out, base ? base + 1 : n->file ? n->file : "?",
                 n->line);
        out->id[r] = dup(name);
        out->op[r] = dup(dbr_ops[n->op].name);
        ok = out->id[r] && out->op[r];
        out->bytes[r] = nbytes(&g->vals[n->out].t);
        out->time[r] = dbr_node_time(g, n, cm);
        out->in_first[r] = at;
        unsigned keep = n->op == DBR_OP_FUSED ? fused_retain(g, users, first, n) : dbr_ops[n->op].retain;
        for (int i = 0; i < n->n_in; i++) {
            int32_t src = node_of[n->in[i]];
            if (src == -1 && g->vals[n->in[i]].kind == DBR_V_INTER) {
                snprintf(err, errlen, "node %d (%s) reads %%%d, which no forward node makes", k,
                         dbr_ops[n->op].name, n->in[i]);
                ok = false;
                break;
            }
            out->ins[at++] = src;
            if (keep & R_IN(i)) out->retain[r] |= 1u << i;
        }
        if (keep & R_OUT) out->retain[r] |= DBR_RG_RETAIN_OUT;
        node_of[n->out] = r++;
    }
    if (ok) out->in_first[nn] = at;
    free(node_of);
    free(first);
    free(users);
    if (!ok) {
        if (!err[0]) snprintf(err, errlen, "out of memory");
        dbr_rgraph_free(out);
        return -1;
    }
    return 0;
}

int32_t *dbr_rgraph_ir_values(const dbr_graph *g, int32_t *n) {
    int32_t nn = 0;
    for (int32_t k = 0; k < g->n_nodes; k++) nn += g->nodes[k].phase == DBR_PH_FWD;
    *n = 0;
    int32_t *map = nn ? malloc((size_t)nn * sizeof *map) : NULL;
    if (!map) return NULL;
    for (int32_t k = 0; k < g->n_nodes; k++)
        if (g->nodes[k].phase == DBR_PH_FWD) map[(*n)++] = g->nodes[k].out;
    return map;
}
