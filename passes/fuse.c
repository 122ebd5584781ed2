/* fuse.c: the fusion pass (fuse.h). Roots are taken from the last node
 * back; each grows toward its producers, in decreasing node order, so a
 * producer is judged only once all its users have been: it joins when every
 * user is already in the group. Values inside a group then have no reader
 * outside it, which is what keeps groups acyclic and work single. */
#include "passes/fuse.h"

#include "ir/fused.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool dbr_fuse_enabled_by_env(void) {
    const char *e = getenv("DBR_NO_FUSE");
    return !e || !e[0] || strcmp(e, "0") == 0;
}

static bool float_t(const dbr_tinfo *t) { return t->dtype == DT_F32 || t->dtype == DT_F64; }

/* An element-wise node a kernel can compute: its inputs are of its float
 * dtype (WHERE's mask excepted). */
static bool ew_ok(const dbr_graph *g, const dbr_inode *n) {
    if (!dbr_fuse_op_ok(n->op) || !float_t(&g->vals[n->out].t)) return false;
    for (int i = 0; i < n->n_in; i++) {
        const dbr_tinfo *t = &g->vals[n->in[i]].t;
        if (n->op == DBR_OP_WHERE && i == 0) {
            if (t->dtype != DT_F32 && t->dtype != DT_F64 && t->dtype != DT_I32 &&
                t->dtype != DT_I64)
                return false;
        } else if (t->dtype != g->vals[n->out].t.dtype) {
            return false;
        }
    }
    return true;
}

/* SUM/MEAN/MAX over a non-empty suffix of its input's axes. */
static bool red_ok(const dbr_graph *g, const dbr_inode *n) {
    if (n->op != DBR_OP_SUM && n->op != DBR_OP_MEAN && n->op != DBR_OP_MAX) return false;
    const dbr_tinfo *x = &g->vals[n->in[0]].t;
    if (!float_t(x) || x->ndim == 0 || dbr_tinfo_numel(x) == 0) return false;
    uint32_t all = (1u << x->ndim) - 1u, m = (uint32_t)n->a.i[0] & all;
    if (m == 0) return false;
    /* a suffix: m + lowest set bit overflows past the top axis */
    uint32_t low = m & (~m + 1u);
    return ((m + low) & all) == 0;
}

static bool is_scalar_const(const dbr_graph *g, int32_t v) {
    return g->vals[v].kind == DBR_V_CONST && dbr_tinfo_numel(&g->vals[v].t) == 1;
}

typedef struct grp {
    int32_t root;
    dbr_tinfo space;
    int32_t ext[DBR_FUSE_MAX_IN + DBR_MAX_SRC]; /* external inputs (value ids) */
    int32_t n_ext;
    int32_t n_ops, n_consts;
} grp;

static bool in_list(const int32_t *l, int32_t n, int32_t v) {
    for (int32_t k = 0; k < n; k++)
        if (l[k] == v) return true;
    return false;
}

/* Would node k fit into the group (inputs and instructions within bounds)?
 * Fills *ng with the group after taking it. */
static bool fits(const dbr_graph *g, const grp *gr, const dbr_inode *n, grp *ng) {
    *ng = *gr;
    int32_t w = 0; /* k's output stops being an external input */
    for (int32_t k = 0; k < ng->n_ext; k++)
        if (ng->ext[k] != n->out) ng->ext[w++] = ng->ext[k];
    ng->n_ext = w;
    for (int i = 0; i < n->n_in; i++) {
        int32_t v = n->in[i];
        if (is_scalar_const(g, v)) {
            ng->n_consts++;
        } else if (!in_list(ng->ext, ng->n_ext, v)) {
            if (ng->n_ext >= DBR_FUSE_MAX_IN) return false;
            ng->ext[ng->n_ext++] = v;
        }
    }
    ng->n_ops++;
    return ng->n_ops + ng->n_ext + ng->n_consts <= DBR_FUSE_MAX_INS;
}

/* The body of group `gi` (members are the nodes with gid == gi). */
static int make_body(const dbr_graph *g, const int32_t *gid, int32_t gi, const grp *gr,
                     int32_t lo, dbr_fbody *b, int32_t *ext_of_body) {
    memset(b, 0, sizeof *b);
    const dbr_inode *root = &g->nodes[gr->root];
    bool red = root->op == DBR_OP_SUM || root->op == DBR_OP_MEAN || root->op == DBR_OP_MAX;
    int32_t nv = g->n_vals;
    int32_t *ins_of = malloc(((size_t)nv + 1) * sizeof *ins_of);
    if (!ins_of) return -1;
    for (int32_t v = 0; v < nv; v++) ins_of[v] = -1;
    for (int32_t k = lo; k <= gr->root; k++) {
        if (gid[k] != gi) continue;
        const dbr_inode *n = &g->nodes[k];
        if (b->n_src < DBR_FUSE_MAX_SRC)
            b->src[b->n_src++] = (dbr_fsrc){n->op, n->api, n->file, n->line};
        b->n_ops++;
        if (red && k == gr->root) break;
        dbr_fins op = {.kind = DBR_FI_OP, .op = n->op, .a = -1, .b = -1, .c = -1, .p = n->a.f[0]};
        int32_t opd[3] = {-1, -1, -1};
        for (int i = 0; i < n->n_in; i++) {
            int32_t v = n->in[i];
            if (ins_of[v] < 0) {
                dbr_fins *s = &b->ins[b->n_ins];
                if (is_scalar_const(g, v)) {
                    *s = (dbr_fins){.kind = DBR_FI_CONST, .a = -1, .b = -1, .c = -1,
                                    .p = g->vals[v].cval};
                } else {
                    *s = (dbr_fins){.kind = DBR_FI_LOAD, .a = b->n_in, .b = -1, .c = -1};
                    ext_of_body[b->n_in] = v;
                    b->in[b->n_in++] = g->vals[v].t;
                }
                ins_of[v] = b->n_ins++;
            }
            opd[i] = ins_of[v];
        }
        op.a = opd[0];
        op.b = opd[1];
        op.c = opd[2];
        b->ins[b->n_ins] = op;
        ins_of[n->out] = b->n_ins++;
    }
    /* a reduction folds what its one producer inside the group computes, and
     * every other member feeds that producer: it is the last instruction */
    bool last_ok = !red || ins_of[root->in[0]] == b->n_ins - 1;
    free(ins_of);
    if (!last_ok) return -1;
    b->space = gr->space;
    b->out = g->vals[root->out].t;
    if (red) {
        b->red = root->op;
        b->red_axes = (uint32_t)root->a.i[0] & ((1u << gr->space.ndim) - 1u);
        b->keepdims = (int32_t)root->a.i[1];
    }
    return 0;
}

int dbr_fuse(const dbr_graph *g, dbr_graph **out, int32_t *remap, dbr_fuse_stats *st, char *err,
             size_t errlen) {
    *out = NULL;
    dbr_fuse_stats s = {0};
    int32_t nn = g->n_nodes, nv = g->n_vals;
    int32_t *first = NULL, *users = NULL;
    int32_t *gid = malloc(((size_t)nn + 1) * sizeof *gid);
    int32_t *body_of = malloc(((size_t)nn + 1) * sizeof *body_of); /* root -> body id */
    int32_t *ext = malloc(((size_t)nn + 1) * DBR_FUSE_MAX_IN * sizeof *ext);
    bool *cand = calloc((size_t)nn + 1, sizeof *cand);
    dbr_graph *o = dbr_graph_new();
    int rc = -1;
    if (!gid || !body_of || !ext || !cand || !o || dbr_graph_users(g, &first, &users)) {
        dbr_errf(err, errlen, "out of memory");
        goto done;
    }
    for (int32_t k = 0; k < nn; k++) gid[k] = body_of[k] = -1;

    for (int32_t r = nn - 1; r >= 0; r--) {
        const dbr_inode *rn = &g->nodes[r];
        if (gid[r] >= 0) continue;
        bool red = red_ok(g, rn);
        if (!red && !ew_ok(g, rn)) continue;
        grp gr = {.root = r, .space = g->vals[red ? rn->in[0] : rn->out].t};
        if (red) {
            gr.ext[gr.n_ext++] = rn->in[0];
            gr.n_ops = 1;
        } else if (!fits(g, &(grp){.root = r, .space = gr.space}, rn, &gr)) {
            continue;
        }
        gid[r] = r;
        int32_t pending = 0, lo = r, members = 1;
        for (int i = 0; i < rn->n_in; i++) {
            int32_t p = g->vals[rn->in[i]].producer;
            if (p >= 0 && !cand[p]) {
                cand[p] = true;
                pending++;
            }
        }
        for (int32_t k = r - 1; k >= 0 && pending > 0; k--) {
            if (!cand[k]) continue;
            cand[k] = false;
            pending--;
            const dbr_inode *n = &g->nodes[k];
            const dbr_value *y = &g->vals[n->out];
            if (gid[k] >= 0 || !ew_ok(g, n) || n->phase != rn->phase || y->is_output ||
                !dbr_tinfo_same(&y->t, &gr.space))
                continue;
            bool inside = first[n->out + 1] > first[n->out];
            for (int32_t u = first[n->out]; inside && u < first[n->out + 1]; u++)
                inside = gid[users[u]] == r;
            grp ng;
            if (!inside || !fits(g, &gr, n, &ng)) continue;
            gr = ng;
            gid[k] = r;
            lo = k;
            members++;
            for (int i = 0; i < n->n_in; i++) {
                int32_t p = g->vals[n->in[i]].producer;
                if (p >= 0 && !cand[p] && gid[p] < 0) {
                    cand[p] = true;
                    pending++;
                }
            }
        }
        if (members < 2 && red) { /* a lone reduction: the library kernel is as good */
            gid[r] = -1;
            continue;
        }
        dbr_fbody b;
        if (make_body(g, gid, r, &gr, lo, &b, &ext[(size_t)r * DBR_FUSE_MAX_IN])) {
            dbr_errf(err, errlen, "out of memory");
            goto done;
        }
        int64_t id = dbr_fbody_intern(&b);
        if (id < 0 || id > INT32_MAX) {
            dbr_errf(err, errlen, "out of memory");
            goto done;
        }
        body_of[r] = (int32_t)id;
        s.groups++;
        s.fused += members;
    }

    /* the copy out, in value order (nodes stay topological) */
    for (int32_t v = 0; v < nv; v++) {
        const dbr_value *x = &g->vals[v];
        remap[v] = -1;
        if (x->kind != DBR_V_INTER) {
            remap[v] = dbr_graph_leaf(o, x->kind, &x->t, x->slot, x->cval, x->name);
            if (remap[v] < 0) {
                dbr_errf(err, errlen, "out of memory");
                goto done;
            }
            o->vals[remap[v]].is_output = x->is_output;
            continue;
        }
        int32_t k = x->producer;
        const dbr_inode *nd = &g->nodes[k];
        if (gid[k] >= 0 && gid[k] != k) continue; /* inside a group */
        int32_t ins[DBR_MAX_SRC];
        char why[256];
        if (gid[k] == k) {
            const dbr_fbody *b = dbr_fbody_get(body_of[k]);
            const int32_t *e = &ext[(size_t)k * DBR_FUSE_MAX_IN];
            for (int i = 0; i < b->n_in; i++) ins[i] = remap[e[i]];
            dbr_attrs a = {0};
            a.i[0] = body_of[k];
            remap[v] = dbr_graph_node(o, DBR_OP_FUSED, b->n_in, ins, &a, nd->phase, nd->api,
                                      nd->file, nd->line, why, sizeof why);
        } else {
            for (int i = 0; i < nd->n_in; i++) ins[i] = remap[nd->in[i]];
            remap[v] = dbr_graph_node(o, nd->op, nd->n_in, ins, &nd->a, nd->phase, nd->api,
                                      nd->file, nd->line, why, sizeof why);
        }
        if (remap[v] < 0) {
            dbr_errf(err, errlen, "%s: %s", dbr_ops[gid[k] == k ? DBR_OP_FUSED : nd->op].name,
                     why);
            goto done;
        }
        o->vals[remap[v]].is_output = x->is_output;
    }
    s.kernels = o->n_nodes;
    if (st) *st = s;
    *out = o;
    o = NULL;
    rc = 0;
done:
    free(first);
    free(users);
    free(gid);
    free(body_of);
    free(ext);
    free(cand);
    dbr_graph_free(o);
    return rc;
}
