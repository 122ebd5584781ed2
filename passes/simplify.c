/* simplify.c: one forward pass folds scalar constants, applies exact
 * identities and hash-conses equal nodes into a scratch graph; a reverse walk
 * from the outputs then copies only live values into the result. */
#include "passes/simplify.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* ---- hashing -------------------------------------------------------------- */

/* splitmix64's finalizer */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t fold(uint64_t h, uint64_t v) {
    return mix64(h * 0x9e3779b97f4a7c15ull + v + 0x632be59bd9b4e019ull);
}

static uint64_t dbits(double x) {
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

static uint64_t str_hash(const char *s) {
    if (!s)
        return 0x6e756c6cull;
    uint64_t x = 0xcbf29ce484222325ull;
    for (; *s; s++)
        x = (x ^ (unsigned char)*s) * 0x100000001b3ull;
    return x;
}

static bool same_name(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* attributes by bits: dbr_attrs is 16 int64 then 4 double, no padding */
static bool same_attrs(const dbr_attrs *a, const dbr_attrs *b) {
    return memcmp(a, b, sizeof *a) == 0;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

/* ---- the forward pass --------------------------------------------------- */

typedef struct simp {
    const dbr_graph *in;
    dbr_graph *t;         /* scratch: simplified, not yet dead-code free */
    int32_t *map;         /* input value -> scratch value, -1 until defined */
    int32_t *ntab;        /* open addressing over scratch node ids, -1 empty */
    size_t nmask;
    int32_t *ctab;        /* open addressing over scratch CONST value ids */
    size_t cmask;
    dbr_simplify_stats st;
} simp;

static uint64_t node_key(dbr_op op, int n_in, const int32_t *ins, const dbr_attrs *a) {
    uint64_t h = fold(0x4e4f4445ull, (uint64_t)op);
    h = fold(h, (uint64_t)n_in);
    for (int k = 0; k < 16; k++)
        h = fold(h, (uint64_t)a->i[k]);
    for (int k = 0; k < 4; k++)
        h = fold(h, dbits(a->f[k]));
    for (int k = 0; k < n_in; k++)
        h = fold(h, (uint64_t)(uint32_t)ins[k]);
    return h;
}

/* The slot of an equal scratch node, or of the empty slot where it goes. */
static size_t node_find(const simp *s, dbr_op op, int n_in, const int32_t *ins,
                        const dbr_attrs *a, uint64_t h) {
    size_t at = (size_t)h & s->nmask;
    for (; s->ntab[at] >= 0; at = (at + 1) & s->nmask) {
        const dbr_inode *m = &s->t->nodes[s->ntab[at]];
        if (m->op != op || m->n_in != n_in || !same_attrs(&m->a, a))
            continue;
        bool eq = true;
        for (int k = 0; k < n_in && eq; k++)
            eq = m->in[k] == ins[k];
        if (eq)
            break;
    }
    return at;
}

static uint64_t const_key(const dbr_value *x) {
    uint64_t h = fold(0x434f4e53ull, (uint64_t)(uint32_t)x->t.dtype);
    h = fold(h, (uint64_t)(uint32_t)x->t.ndim);
    for (int d = 0; d < x->t.ndim; d++)
        h = fold(h, (uint64_t)x->t.shape[d]);
    h = fold(h, dbits(x->cval));
    return fold(h, str_hash(x->name));
}

/* A CONST leaf in the scratch graph equal to x (dtype, shape, value bits,
 * name), added when there is none; -1 when out of memory. */
static int32_t const_leaf(simp *s, const dbr_value *x, bool *merged) {
    size_t at = (size_t)const_key(x) & s->cmask;
    *merged = false;
    for (; s->ctab[at] >= 0; at = (at + 1) & s->cmask) {
        const dbr_value *c = &s->t->vals[s->ctab[at]];
        if (dbr_tinfo_same(&c->t, &x->t) && dbits(c->cval) == dbits(x->cval) &&
            same_name(c->name, x->name)) {
            *merged = true;
            return s->ctab[at];
        }
    }
    int32_t id = dbr_graph_leaf(s->t, DBR_V_CONST, &x->t, -1, x->cval, x->name);
    if (id >= 0)
        s->ctab[at] = id;
    return id;
}

/* A scalar constant of a float dtype: its value as the kernels see it
 * (the runtime fills an F32 constant with (float)cval). */
static bool scalar_const(const dbr_value *x, double *v) {
    if (x->kind != DBR_V_CONST || x->t.ndim != 0)
        return false;
    if (x->t.dtype == DT_F32)
        *v = (float)x->cval;
    else if (x->t.dtype == DT_F64)
        *v = x->cval;
    else
        return false;
    return true;
}

static bool is_one(const dbr_value *x) {
    double v;
    return scalar_const(x, &v) && v == 1.0;
}

static bool is_zero(const dbr_value *x, bool negative) {
    double v;
    return scalar_const(x, &v) && v == 0.0 && (signbit(v) != 0) == negative;
}

/* Exact folding of ADD, SUB, MUL, DIV, NEG over scalar constants, in the
 * node's dtype with the arithmetic its kernel uses: IEEE basic operations
 * are correctly rounded, so C gives the kernel's bits. Nothing from libm:
 * exp, log and friends may differ between libm and the kernels. */
static bool fold_value(const dbr_graph *t, dbr_op op, int n_in, const int32_t *ins, double *r) {
    if (op != DBR_OP_ADD && op != DBR_OP_SUB && op != DBR_OP_MUL && op != DBR_OP_DIV &&
        op != DBR_OP_NEG)
        return false;
    double c[2] = {0, 0};
    for (int k = 0; k < n_in; k++)
        if (!scalar_const(&t->vals[ins[k]], &c[k]))
            return false;
    if (t->vals[ins[0]].t.dtype == DT_F32) {
        float a = (float)c[0], b = (float)c[1], y;
        switch (op) {
        case DBR_OP_ADD: y = a + b; break;
        case DBR_OP_SUB: y = a - b; break;
        case DBR_OP_MUL: y = a * b; break;
        case DBR_OP_DIV: y = a / b; break;
        default:         y = -a; break;
        }
        *r = y;
    } else {
        double a = c[0], b = c[1];
        switch (op) {
        case DBR_OP_ADD: *r = a + b; break;
        case DBR_OP_SUB: *r = a - b; break;
        case DBR_OP_MUL: *r = a * b; break;
        case DBR_OP_DIV: *r = a / b; break;
        default:         *r = -a; break;
        }
    }
    return true;
}

/* The scratch value that node (op, ins, a) with output type ot equals
 * exactly, or -1. The kept operand must have exactly the output's type:
 * an identity never stands in for a broadcast. Not here, on purpose:
 * x + (+0) -> x is wrong for x = -0 (-0 + +0 = +0), and x * 0 -> 0 is wrong
 * for NaN, infinities and negative x (-0). */
static int32_t identity_of(const dbr_graph *t, dbr_op op, int n_in, const int32_t *ins,
                           const dbr_attrs *a, const dbr_tinfo *ot) {
    const dbr_value *x0 = &t->vals[ins[0]], *x1 = n_in > 1 ? &t->vals[ins[1]] : NULL;
    bool keep0 = dbr_tinfo_same(&x0->t, ot), keep1 = x1 && dbr_tinfo_same(&x1->t, ot);
    switch (op) {
    case DBR_OP_MUL:
        if (keep0 && is_one(x1))
            return ins[0];
        if (keep1 && is_one(x0))
            return ins[1];
        return -1;
    case DBR_OP_DIV:
        return keep0 && is_one(x1) ? ins[0] : -1;
    case DBR_OP_SUB: /* x - (+0) == x, also for x = -0 */
        return keep0 && is_zero(x1, false) ? ins[0] : -1;
    case DBR_OP_ADD: /* x + (-0) == x, also for x = +0 */
        if (keep0 && is_zero(x1, true))
            return ins[0];
        if (keep1 && is_zero(x0, true))
            return ins[1];
        return -1;
    case DBR_OP_NEG:
        if (x0->kind == DBR_V_INTER && t->nodes[x0->producer].op == DBR_OP_NEG)
            return t->nodes[x0->producer].in[0];
        return -1;
    case DBR_OP_RESHAPE:      /* row-major: same shape, same elements */
    case DBR_OP_BROADCAST_TO:
    case DBR_OP_SLICE:        /* as long as the axis, increasing: all of it */
        return keep0 ? ins[0] : -1;
    case DBR_OP_PERMUTE:
        if (!keep0 || a->i[0] != x0->t.ndim)
            return -1;
        for (int d = 0; d < x0->t.ndim; d++)
            if (a->i[1 + d] != d)
                return -1;
        return ins[0];
    case DBR_OP_CONCAT:
        return n_in == 1 && keep0 ? ins[0] : -1;
    default:
        return -1;
    }
}

/* Scratch value for input node k: folded, an identity, an earlier equal
 * node, or a new scratch node. */
static int32_t simplify_node(simp *s, int32_t k, char *err, size_t errlen) {
    const dbr_inode *nd = &s->in->nodes[k];
    const dbr_value *ov = &s->in->vals[nd->out];
    int32_t ins[DBR_MAX_SRC];
    for (int i = 0; i < nd->n_in; i++)
        ins[i] = s->map[nd->in[i]];

    double r;
    int32_t v;
    if (fold_value(s->t, nd->op, nd->n_in, ins, &r)) {
        dbr_value c = {.t = ov->t, .kind = DBR_V_CONST, .producer = -1, .slot = -1, .cval = r};
        bool merged;
        v = const_leaf(s, &c, &merged);
        if (v < 0)
            return dbr_errf(err, errlen, "out of memory");
        s->st.folded++;
    } else if ((v = identity_of(s->t, nd->op, nd->n_in, ins, &nd->a, &ov->t)) >= 0) {
        s->st.identities++;
    } else {
        uint64_t h = node_key(nd->op, nd->n_in, ins, &nd->a);
        size_t at = node_find(s, nd->op, nd->n_in, ins, &nd->a, h);
        if (s->ntab[at] >= 0) {
            v = s->t->nodes[s->ntab[at]].out;
            s->st.cse++;
        } else {
            char why[256];
            v = dbr_graph_node(s->t, nd->op, nd->n_in, ins, &nd->a, nd->phase, nd->api, nd->file,
                               nd->line, why, sizeof why);
            if (v < 0)
                return dbr_errf(err, errlen, "node %d (%s): %s", (int)k, dbr_ops[nd->op].name, why);
            s->ntab[at] = s->t->n_nodes - 1;
        }
    }
    if (ov->is_output)
        s->t->vals[v].is_output = true;
    s->map[nd->out] = v;
    return 0;
}

/* The input's structure, as far as this pass relies on it. */
static int check_node(const simp *s, int32_t k, char *err, size_t errlen) {
    const dbr_graph *g = s->in;
    const dbr_inode *nd = &g->nodes[k];
    if ((unsigned)nd->op >= DBR_OP_COUNT || nd->n_in < 1 || nd->n_in > DBR_MAX_SRC)
        return dbr_errf(err, errlen, "node %d: bad op %d or input count %d", (int)k, (int)nd->op,
                    (int)nd->n_in);
    if (nd->out < 0 || nd->out >= g->n_vals || g->vals[nd->out].kind != DBR_V_INTER ||
        s->map[nd->out] >= 0)
        return dbr_errf(err, errlen, "node %d (%s): output %d is not a fresh intermediate value",
                    (int)k, dbr_ops[nd->op].name, (int)nd->out);
    for (int i = 0; i < nd->n_in; i++)
        if (nd->in[i] < 0 || nd->in[i] >= g->n_vals || s->map[nd->in[i]] < 0)
            return dbr_errf(err, errlen, "node %d (%s): input %d is not defined before it", (int)k,
                        dbr_ops[nd->op].name, (int)nd->in[i]);
    return 0;
}

static int forward(simp *s, char *err, size_t errlen) {
    const dbr_graph *g = s->in;
    for (int32_t v = 0; v < g->n_vals; v++) {
        const dbr_value *x = &g->vals[v];
        if (x->kind == DBR_V_INTER)
            continue;
        bool merged = false;
        int32_t id = x->kind == DBR_V_CONST
                         ? const_leaf(s, x, &merged)
                         : dbr_graph_leaf(s->t, x->kind, &x->t, x->slot, x->cval, x->name);
        if (id < 0)
            return dbr_errf(err, errlen, "value %d: out of memory or a malformed leaf", (int)v);
        if (merged)
            s->st.consts++;
        if (x->is_output)
            s->t->vals[id].is_output = true;
        s->map[v] = id;
    }
    for (int32_t k = 0; k < g->n_nodes; k++)
        if (check_node(s, k, err, errlen) || simplify_node(s, k, err, errlen))
            return -1;
    for (int32_t v = 0; v < g->n_vals; v++)
        if (g->vals[v].is_output && s->map[v] < 0)
            return dbr_errf(err, errlen, "output %d has no producer", (int)v);
    return 0;
}

/* ---- dead code and the copy out ----------------------------------------- */

/* Copies the values of t that reach an output into o, in t's id order (so
 * nodes stay in topological order); map2 gets t id -> o id or -1. */
static int copy_live(const dbr_graph *t, dbr_graph *o, int32_t *map2, int32_t *dce, char *err,
                     size_t errlen) {
    bool *live = calloc((size_t)t->n_vals + 1, sizeof *live);
    if (!live)
        return dbr_errf(err, errlen, "out of memory");
    for (int32_t v = 0; v < t->n_vals; v++)
        live[v] = t->vals[v].is_output;
    for (int32_t k = t->n_nodes - 1; k >= 0; k--)
        if (live[t->nodes[k].out])
            for (int i = 0; i < t->nodes[k].n_in; i++)
                live[t->nodes[k].in[i]] = true;
    int rc = 0;
    for (int32_t v = 0; v < t->n_vals && rc == 0; v++) {
        const dbr_value *x = &t->vals[v];
        map2[v] = -1;
        if (!live[v]) {
            if (x->kind == DBR_V_INTER)
                (*dce)++;
            continue;
        }
        if (x->kind != DBR_V_INTER) {
            map2[v] = dbr_graph_leaf(o, x->kind, &x->t, x->slot, x->cval, x->name);
            if (map2[v] < 0)
                rc = dbr_errf(err, errlen, "out of memory");
        } else {
            const dbr_inode *nd = &t->nodes[x->producer];
            int32_t ins[DBR_MAX_SRC];
            char why[256];
            for (int i = 0; i < nd->n_in; i++)
                ins[i] = map2[nd->in[i]];
            map2[v] = dbr_graph_node(o, nd->op, nd->n_in, ins, &nd->a, nd->phase, nd->api,
                                     nd->file, nd->line, why, sizeof why);
            if (map2[v] < 0)
                rc = dbr_errf(err, errlen, "%s: %s", dbr_ops[nd->op].name, why);
        }
        if (rc == 0)
            o->vals[map2[v]].is_output = x->is_output;
    }
    free(live);
    return rc;
}

int dbr_simplify(const dbr_graph *in, dbr_graph **out, int32_t *remap, dbr_simplify_stats *st,
                 char *err, size_t errlen) {
    *out = NULL;
    if (in->n_vals < 0 || in->n_nodes < 0)
        return dbr_errf(err, errlen, "negative counts (%d values, %d nodes)", (int)in->n_vals,
                    (int)in->n_nodes);
    size_t nv = (size_t)in->n_vals;
    simp s = {.in = in, .t = dbr_graph_new()};
    size_t ncap = pow2_at_least(2 * (size_t)in->n_nodes + 2);
    size_t ccap = pow2_at_least(2 * nv + 2); /* leaves plus folded constants */
    s.nmask = ncap - 1;
    s.cmask = ccap - 1;
    s.map = malloc((nv + 1) * sizeof *s.map);
    s.ntab = malloc(ncap * sizeof *s.ntab);
    s.ctab = malloc(ccap * sizeof *s.ctab);
    dbr_graph *o = dbr_graph_new();
    int32_t *map2 = NULL;
    int rc = -1;
    if (!s.t || !s.map || !s.ntab || !s.ctab || !o) {
        dbr_errf(err, errlen, "out of memory");
        goto done;
    }
    memset(s.map, 0xff, (nv + 1) * sizeof *s.map);
    memset(s.ntab, 0xff, ncap * sizeof *s.ntab);
    memset(s.ctab, 0xff, ccap * sizeof *s.ctab);
    if (forward(&s, err, errlen))
        goto done;
    map2 = malloc(((size_t)s.t->n_vals + 1) * sizeof *map2);
    if (!map2) {
        dbr_errf(err, errlen, "out of memory");
        goto done;
    }
    if (copy_live(s.t, o, map2, &s.st.dce, err, errlen))
        goto done;
    for (size_t v = 0; v < nv; v++)
        remap[v] = s.map[v] >= 0 ? map2[s.map[v]] : -1;
    if (st)
        *st = s.st;
    *out = o;
    o = NULL;
    rc = 0;
done:
    dbr_graph_free(o);
    dbr_graph_free(s.t);
    free(s.map);
    free(s.ntab);
    free(s.ctab);
    free(map2);
    return rc;
}
