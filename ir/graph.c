/* graph.c: the recorded IR graph: building (leaves, nodes through dbr_infer),
 * users, the verifier, the text printer, the structural hash and DBR_DUMP.
 * Every routine here tolerates a broken graph: it is what they debug. */
#include "ir/graph.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef long long ll;


static const char *kind_name(dbr_vkind k)
{
    static const char *const names[] = {"param", "buffer", "input", "const", "inter"};
    return (unsigned)k <= DBR_V_INTER ? names[k] : "?";
}

static const char *op_name(dbr_op op)
{
    return (unsigned)op < DBR_OP_COUNT ? dbr_ops[op].name : "?";
}

static bool type_ok(const dbr_tinfo *t)
{
    if (t->dtype < 0 || t->dtype >= DT_COUNT || t->ndim < 0 || t->ndim > DBR_IR_MAX_DIMS)
        return false;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0)
            return false;
    return true;
}

/* "f32[64,784]", or something readable for a malformed type. */
static char *type_str(const dbr_tinfo *t, char *buf, size_t n)
{
    if (t->ndim < 0 || t->ndim > DBR_IR_MAX_DIMS) {
        snprintf(buf, n, "%s[ndim=%d]", dbr_dt_name(t->dtype), (int)t->ndim);
        return buf;
    }
    char sh[200];
    snprintf(buf, n, "%s%s", dbr_dt_name(t->dtype), dbr_shape_str(t, sh, sizeof sh));
    return buf;
}

/* ---- building ----------------------------------------------------------- */

/* Room for one more element; caps stay within int32 since ids are int32. */
static int grow(void **p, int32_t *cap, int32_t len, size_t elem)
{
    if (len < *cap)
        return 0;
    if (*cap >= INT32_MAX / 2)
        return -1;
    int32_t nc = *cap ? *cap * 2 : 16;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = nc;
    return 0;
}

dbr_graph *dbr_graph_new(void)
{
    return calloc(1, sizeof(dbr_graph));
}

void dbr_graph_free(dbr_graph *g)
{
    if (!g)
        return;
    free(g->vals);
    free(g->nodes);
    free(g);
}

void dbr_graph_clear(dbr_graph *g)
{
    g->n_vals = 0;
    g->n_nodes = 0;
}

dbr_graph *dbr_graph_clone(const dbr_graph *g)
{
    dbr_graph *c = dbr_graph_new();
    if (!c)
        return NULL;
    if (g->n_vals) {
        c->vals = malloc((size_t)g->n_vals * sizeof *c->vals);
        if (!c->vals)
            goto oom;
        memcpy(c->vals, g->vals, (size_t)g->n_vals * sizeof *c->vals);
        c->n_vals = c->cap_vals = g->n_vals;
    }
    if (g->n_nodes) {
        c->nodes = malloc((size_t)g->n_nodes * sizeof *c->nodes);
        if (!c->nodes)
            goto oom;
        memcpy(c->nodes, g->nodes, (size_t)g->n_nodes * sizeof *c->nodes);
        c->n_nodes = c->cap_nodes = g->n_nodes;
    }
    return c;
oom:
    dbr_graph_free(c);
    return NULL;
}

/* Unused dims are zeroed so that whole-struct copies and compares behave. */
static void copy_type(dbr_tinfo *dst, const dbr_tinfo *src)
{
    memset(dst, 0, sizeof *dst);
    dst->dtype = src->dtype;
    dst->ndim = src->ndim;
    for (int d = 0; d < src->ndim; d++)
        dst->shape[d] = src->shape[d];
}

int32_t dbr_graph_leaf(dbr_graph *g, dbr_vkind kind, const dbr_tinfo *t, int32_t slot,
                       double cval, const char *name)
{
    if ((unsigned)kind >= DBR_V_INTER || t->ndim < 0 || t->ndim > DBR_IR_MAX_DIMS)
        return -1;
    if (grow((void **)&g->vals, &g->cap_vals, g->n_vals, sizeof *g->vals))
        return -1;
    dbr_value *v = &g->vals[g->n_vals];
    memset(v, 0, sizeof *v);
    copy_type(&v->t, t);
    v->kind = kind;
    v->producer = -1;
    v->slot = kind == DBR_V_CONST ? -1 : slot;
    v->cval = kind == DBR_V_CONST ? cval : 0.0;
    v->name = name;
    return g->n_vals++;
}

int32_t dbr_graph_node(dbr_graph *g, dbr_op op, int n_in, const int32_t in[], const dbr_attrs *a,
                       dbr_phase phase, const char *api, const char *file, int line, char *err,
                       size_t errlen)
{
    if (n_in < 0 || n_in > DBR_MAX_SRC) {
        dbr_errf(err, errlen, "%d inputs (at most %d)", n_in, DBR_MAX_SRC);
        return -1;
    }
    dbr_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.n_in = n_in;
    for (int i = 0; i < n_in; i++) {
        if (in[i] < 0 || in[i] >= g->n_vals) {
            dbr_errf(err, errlen, "input %d is value %d, which does not exist (%d values)", i,
                 (int)in[i], (int)g->n_vals);
            return -1;
        }
        n.in[i] = g->vals[in[i]].t;
    }
    if (a)
        n.a = *a;
    n.api = api;
    n.file = file;
    n.line = line;
    if (dbr_infer(&n, err, errlen))
        return -1;
    if (grow((void **)&g->vals, &g->cap_vals, g->n_vals, sizeof *g->vals) ||
        grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes, sizeof *g->nodes)) {
        dbr_errf(err, errlen, "out of memory");
        return -1;
    }
    int32_t id = g->n_nodes, out = g->n_vals;
    dbr_inode *nd = &g->nodes[id];
    memset(nd, 0, sizeof *nd);
    nd->op = op;
    nd->n_in = n_in;
    for (int i = 0; i < n_in; i++)
        nd->in[i] = in[i];
    nd->out = out;
    nd->a = n.a;
    nd->phase = phase;
    nd->api = api;
    nd->file = file;
    nd->line = line;
    dbr_value *v = &g->vals[out];
    memset(v, 0, sizeof *v);
    copy_type(&v->t, &n.out);
    v->kind = DBR_V_INTER;
    v->producer = id;
    v->slot = -1;
    g->n_nodes++;
    g->n_vals++;
    return out;
}

/* ---- users -------------------------------------------------------------- */

int dbr_graph_users(const dbr_graph *g, int32_t **first, int32_t **users)
{
    size_t nv = (size_t)g->n_vals, total = 0;
    int32_t *f = calloc(nv + 1, sizeof *f), *u = NULL;
    if (!f)
        goto oom;
    /* counts land one slot up so that the prefix sum leaves starts in place */
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const dbr_inode *n = &g->nodes[i];
        for (int k = 0; k < n->n_in && k < DBR_MAX_SRC; k++)
            if (n->in[k] >= 0 && n->in[k] < g->n_vals) {
                f[n->in[k] + 1]++;
                total++;
            }
    }
    for (size_t v = 0; v < nv; v++)
        f[v + 1] += f[v];
    u = malloc((total ? total : 1) * sizeof *u);
    if (!u)
        goto oom;
    /* fill with a moving cursor per value, then shift the starts back */
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const dbr_inode *n = &g->nodes[i];
        for (int k = 0; k < n->n_in && k < DBR_MAX_SRC; k++)
            if (n->in[k] >= 0 && n->in[k] < g->n_vals)
                u[f[n->in[k]]++] = i;
    }
    for (size_t v = nv; v > 0; v--)
        f[v] = f[v - 1];
    f[0] = 0;
    *first = f;
    *users = u;
    return 0;
oom:
    free(f);
    *first = NULL;
    *users = NULL;
    return -1;
}

/* ---- verifier ----------------------------------------------------------- */

/* Does node `from` reach node `target` through its inputs' producers? Only
 * asked on the error path, to tell a cycle from a plain forward reference. */
static int reaches(const dbr_graph *g, int32_t from, int32_t target)
{
    int32_t *stack = malloc(((size_t)g->n_nodes + 1) * sizeof *stack); /* each node once */
    bool *seen = calloc((size_t)g->n_nodes + 1, sizeof *seen);
    int found = -1; /* unknown when out of memory */
    if (stack && seen) {
        size_t sp = 0;
        found = 0;
        stack[sp++] = from;
        seen[from] = true;
        while (sp && !found) {
            const dbr_inode *n = &g->nodes[stack[--sp]];
            for (int k = 0; k < n->n_in && k < DBR_MAX_SRC; k++) {
                int32_t v = n->in[k];
                if (v < 0 || v >= g->n_vals || g->vals[v].kind != DBR_V_INTER)
                    continue;
                int32_t p = g->vals[v].producer;
                if (p < 0 || p >= g->n_nodes || seen[p])
                    continue;
                if (p == target) {
                    found = 1;
                    break;
                }
                seen[p] = true;
                stack[sp++] = p;
            }
        }
    }
    free(stack);
    free(seen);
    return found;
}

static int verify_value(const dbr_graph *g, int32_t v, char *err, size_t errlen)
{
    const dbr_value *x = &g->vals[v];
    char ts[256];
    if ((unsigned)x->kind > DBR_V_INTER)
        return dbr_errf(err, errlen, "value %d has an unknown kind %d", (int)v, (int)x->kind);
    if (!type_ok(&x->t))
        return dbr_errf(err, errlen, "value %d (%s) has a malformed type %s", (int)v,
                    kind_name(x->kind), type_str(&x->t, ts, sizeof ts));
    if (x->kind != DBR_V_INTER && x->producer != -1)
        return dbr_errf(err, errlen, "value %d (%s) is a leaf but names producer node %d", (int)v,
                    kind_name(x->kind), (int)x->producer);
    return 0;
}

/* The inputs of node i are in range and defined by earlier nodes. */
static int verify_inputs(const dbr_graph *g, int32_t i, char *err, size_t errlen)
{
    const dbr_inode *n = &g->nodes[i];
    const char *on = op_name(n->op);
    for (int k = 0; k < n->n_in; k++) {
        int32_t v = n->in[k];
        if (v < 0 || v >= g->n_vals)
            return dbr_errf(err, errlen, "node %d (%s): input %d is value %d, out of range (%d values)",
                        (int)i, on, k, (int)v, (int)g->n_vals);
        if (g->vals[v].kind != DBR_V_INTER)
            continue;
        int32_t p = g->vals[v].producer;
        if (p < 0 || p >= g->n_nodes || g->nodes[p].out != v)
            return dbr_errf(err, errlen, "node %d (%s): input %d has no producer", (int)i, on, (int)v);
        if (p < i)
            continue;
        if (p == i)
            return dbr_errf(err, errlen, "node %d (%s): input %d is its own output: a cycle", (int)i, on,
                        (int)v);
        if (reaches(g, p, i) == 1)
            return dbr_errf(err, errlen,
                        "node %d (%s): input %d comes from node %d (%s), which depends on node %d: "
                        "a cycle", (int)i, on, (int)v, (int)p, op_name(g->nodes[p].op), (int)i);
        return dbr_errf(err, errlen, "node %d (%s): input %d is used before it is defined (by node %d (%s))",
                    (int)i, on, (int)v, (int)p, op_name(g->nodes[p].op));
    }
    return 0;
}

static int verify_node(const dbr_graph *g, int32_t i, char *err, size_t errlen)
{
    const dbr_inode *n = &g->nodes[i];
    char ts[256], us[256];
    if ((unsigned)n->op >= DBR_OP_COUNT)
        return dbr_errf(err, errlen, "node %d: unknown op %d", (int)i, (int)n->op);
    const dbr_opinfo *oi = &dbr_ops[n->op];
    if (n->n_in < oi->min_in || n->n_in > oi->max_in) {
        if (oi->min_in == oi->max_in)
            return dbr_errf(err, errlen, "node %d (%s): %d inputs, but %s takes %d", (int)i, oi->name,
                        (int)n->n_in, oi->name, oi->min_in);
        return dbr_errf(err, errlen, "node %d (%s): %d inputs, but %s takes %d to %d", (int)i, oi->name,
                    (int)n->n_in, oi->name, oi->min_in, oi->max_in);
    }
    if ((unsigned)n->phase > DBR_PH_RECOMP)
        return dbr_errf(err, errlen, "node %d (%s): unknown phase %d", (int)i, oi->name, (int)n->phase);
    if (n->out < 0 || n->out >= g->n_vals)
        return dbr_errf(err, errlen, "node %d (%s): output is value %d, out of range (%d values)", (int)i,
                    oi->name, (int)n->out, (int)g->n_vals);
    const dbr_value *out = &g->vals[n->out];
    if (out->kind != DBR_V_INTER)
        return dbr_errf(err, errlen, "node %d (%s): output %d is a %s value, not an intermediate", (int)i,
                    oi->name, (int)n->out, kind_name(out->kind));
    if (out->producer != i)
        return dbr_errf(err, errlen, "node %d (%s): output %d names node %d as its producer", (int)i,
                    oi->name, (int)n->out, (int)out->producer);
    if (verify_inputs(g, i, err, errlen))
        return -1;

    dbr_node t;
    memset(&t, 0, sizeof t);
    t.op = n->op;
    t.n_in = n->n_in;
    for (int k = 0; k < n->n_in; k++)
        t.in[k] = g->vals[n->in[k]].t;
    t.a = n->a;
    t.api = n->api;
    t.file = n->file;
    t.line = n->line;
    char why[256];
    if (dbr_infer(&t, why, sizeof why))
        return dbr_errf(err, errlen, "node %d (%s): %s", (int)i, oi->name, why);
    if (!dbr_tinfo_same(&t.out, &out->t))
        return dbr_errf(err, errlen, "node %d (%s): output %d is %s but the inputs give %s", (int)i,
                    oi->name, (int)n->out, type_str(&out->t, ts, sizeof ts),
                    type_str(&t.out, us, sizeof us));
    return 0;
}

int dbr_graph_verify(const dbr_graph *g, char *err, size_t errlen)
{
    if (g->n_vals < 0 || g->n_nodes < 0)
        return dbr_errf(err, errlen, "negative counts (%d values, %d nodes)", (int)g->n_vals,
                    (int)g->n_nodes);
    for (int32_t v = 0; v < g->n_vals; v++)
        if (verify_value(g, v, err, errlen))
            return -1;
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (verify_node(g, i, err, errlen))
            return -1;
    /* nodes name their outputs; what is left is an INTER value nobody makes */
    for (int32_t v = 0; v < g->n_vals; v++) {
        const dbr_value *x = &g->vals[v];
        if (x->kind != DBR_V_INTER)
            continue;
        if (x->producer < 0 || x->producer >= g->n_nodes || g->nodes[x->producer].out != v)
            return dbr_errf(err, errlen, "value %d (inter) has no producer", (int)v);
    }
    return 0;
}

/* ---- printer ------------------------------------------------------------ */

/* The shortest %g text that reads back as the same double: 1e-05, 0.1, 0.5. */
static char *dbl_str(double x, char *buf, size_t n)
{
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    return buf;
}

static void print_dims(FILE *f, const int64_t *d, int64_t n)
{
    if (n < 0 || n > DBR_IR_MAX_DIMS) {
        fprintf(f, "[ndim=%lld]", (ll)n);
        return;
    }
    fputc('[', f);
    for (int64_t k = 0; k < n; k++)
        fprintf(f, k ? ",%lld" : "%lld", (ll)d[k]);
    fputc(']', f);
}

static void print_conv(FILE *f, const int64_t *i)
{
    fprintf(f, " stride=%lldx%lld pad=%lldx%lld dil=%lldx%lld groups=%lld", (ll)i[0], (ll)i[1],
            (ll)i[2], (ll)i[3], (ll)i[4], (ll)i[5], (ll)i[6]);
}

/* Only the attributes an op reads; ops this switch does not know show
 * whatever is non-zero, so nothing is hidden when ops.def grows. */
static void print_attrs(FILE *f, const dbr_inode *n)
{
    const int64_t *i = n->a.i;
    const double *x = n->a.f;
    char b[40];
    switch (n->op) {
    case DBR_OP_ADD: case DBR_OP_SUB: case DBR_OP_MUL: case DBR_OP_DIV: case DBR_OP_NEG:
    case DBR_OP_EXP: case DBR_OP_LOG: case DBR_OP_SQRT: case DBR_OP_RSQRT: case DBR_OP_ABS:
    case DBR_OP_SIGN: case DBR_OP_TANH: case DBR_OP_SIGMOID: case DBR_OP_RELU: case DBR_OP_GELU:
    case DBR_OP_SILU: case DBR_OP_WHERE: case DBR_OP_CROSS_ENTROPY: case DBR_OP_CROSS_ENTROPY_BWD:
    case DBR_OP_EMBEDDING: case DBR_OP_RELU_BWD: case DBR_OP_GELU_BWD: case DBR_OP_SILU_BWD:
    case DBR_OP_BN_STATS:
        break;
    case DBR_OP_POW:
        fprintf(f, " exp=%s", dbl_str(x[0], b, sizeof b));
        break;
    case DBR_OP_LEAKY_RELU: case DBR_OP_LEAKY_RELU_BWD:
        fprintf(f, " slope=%s", dbl_str(x[0], b, sizeof b));
        break;
    case DBR_OP_SUM: case DBR_OP_MEAN: case DBR_OP_MAX: case DBR_OP_MAX_BWD: {
        uint64_t m = (uint64_t)i[0];
        int top = 63;
        while (top > 0 && !(m >> top & 1))
            top--;
        fputs(" axes=0b", f);
        for (int k = top; k >= 0; k--)
            fputc('0' + (int)(m >> k & 1), f);
        fprintf(f, " keep=%lld", (ll)i[1]);
        break;
    }
    case DBR_OP_MATMUL:
        fprintf(f, " ta=%lld tb=%lld", (ll)i[0], (ll)i[1]);
        break;
    case DBR_OP_CONV2D:
        print_conv(f, i);
        break;
    case DBR_OP_CONV2D_BWD_DATA:
        print_conv(f, i);
        fputs(" in=", f);
        print_dims(f, i + 8, 4);
        break;
    case DBR_OP_CONV2D_BWD_WEIGHT:
        print_conv(f, i);
        fputs(" w=", f);
        print_dims(f, i + 8, 4);
        break;
    case DBR_OP_MAX_POOL2D: case DBR_OP_AVG_POOL2D: case DBR_OP_MAX_POOL2D_BWD:
        fprintf(f, " k=%lld s=%lld p=%lld", (ll)i[0], (ll)i[1], (ll)i[2]);
        break;
    case DBR_OP_AVG_POOL2D_BWD:
        fprintf(f, " k=%lld s=%lld p=%lld in=", (ll)i[0], (ll)i[1], (ll)i[2]);
        print_dims(f, i + 8, 4);
        break;
    case DBR_OP_BATCH_NORM: case DBR_OP_BATCH_NORM_BWD: case DBR_OP_LAYER_NORM:
    case DBR_OP_LAYER_NORM_BWD:
        fprintf(f, " eps=%s", dbl_str(x[0], b, sizeof b));
        break;
    case DBR_OP_SOFTMAX: case DBR_OP_LOG_SOFTMAX: case DBR_OP_CONCAT:
        fprintf(f, " axis=%lld", (ll)i[0]);
        break;
    case DBR_OP_EMBEDDING_BWD:
        fprintf(f, " vocab=%lld", (ll)i[0]);
        break;
    case DBR_OP_RESHAPE: case DBR_OP_BROADCAST_TO:
        fputs(" shape=", f);
        print_dims(f, i + 1, i[0]);
        break;
    case DBR_OP_PERMUTE:
        fputs(" perm=", f);
        print_dims(f, i + 1, i[0]);
        break;
    case DBR_OP_SLICE: case DBR_OP_SLICE_BWD:
        fprintf(f, " axis=%lld start=%lld stop=%lld step=%lld", (ll)i[0], (ll)i[1], (ll)i[2],
                (ll)i[3]);
        if (n->op == DBR_OP_SLICE_BWD)
            fprintf(f, " len=%lld", (ll)i[4]);
        break;
    case DBR_OP_DROPOUT:
        /* compiled graphs keep key 0 and rekey from the call index each step */
        fprintf(f, " p=%s call=%lld", dbl_str(x[0], b, sizeof b), (ll)i[1]);
        if (i[0])
            fprintf(f, " key=0x%016llx", (unsigned long long)i[0]);
        break;
    default:
        for (int k = 0; k < 16; k++)
            if (i[k])
                fprintf(f, " i%d=%lld", k, (ll)i[k]);
        for (int k = 0; k < 4; k++)
            if (x[k] != 0)
                fprintf(f, " f%d=%s", k, dbl_str(x[k], b, sizeof b));
        break;
    }
}

static void print_name(FILE *f, const char *s)
{
    fputs(" \"", f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static bool is_produced(const dbr_graph *g, int32_t v)
{
    int32_t p = g->vals[v].producer;
    return p >= 0 && p < g->n_nodes && g->nodes[p].out == v;
}

static void print_vtype(FILE *f, const dbr_graph *g, int32_t v)
{
    char ts[256];
    if (v < 0 || v >= g->n_vals) {
        fputs(" ?", f);
        return;
    }
    fprintf(f, " %s", type_str(&g->vals[v].t, ts, sizeof ts));
}

void dbr_graph_print(const dbr_graph *g, FILE *f)
{
    char b[40];
    for (int32_t v = 0; v < g->n_vals; v++) {
        const dbr_value *x = &g->vals[v];
        if (x->kind == DBR_V_INTER && is_produced(g, v))
            continue;
        fprintf(f, "%%%d = %s", (int)v, kind_name(x->kind));
        if (x->kind == DBR_V_CONST)
            fprintf(f, " %s", dbl_str(x->cval, b, sizeof b));
        else if (x->kind != DBR_V_INTER)
            fprintf(f, " #%d", (int)x->slot);
        else
            fputs(" (no producer)", f);
        if (x->name)
            print_name(f, x->name);
        print_vtype(f, g, v);
        fputs(x->is_output ? " [out]\n" : "\n", f);
    }
    static const char *const phases[] = {"fwd", "bwd", "opt", "recomp"};
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const dbr_inode *n = &g->nodes[i];
        fprintf(f, "%%%d = ", (int)n->out);
        if ((unsigned)n->op < DBR_OP_COUNT)
            fputs(dbr_ops[n->op].name, f);
        else
            fprintf(f, "op%d", (int)n->op);
        fputc('(', f);
        for (int k = 0; k < n->n_in && k < DBR_MAX_SRC; k++)
            fprintf(f, k ? ", %%%d" : "%%%d", (int)n->in[k]);
        fputc(')', f);
        print_vtype(f, g, n->out);
        if ((unsigned)n->op < DBR_OP_COUNT)
            print_attrs(f, n);
        if (n->out >= 0 && n->out < g->n_vals && g->vals[n->out].is_output)
            fputs(" [out]", f);
        fputs("  #", f);
        if (n->file) {
            const char *base = strrchr(n->file, '/');
            fprintf(f, " %s:%d", base ? base + 1 : n->file, (int)n->line);
        }
        if ((unsigned)n->phase <= DBR_PH_RECOMP)
            fprintf(f, " %s\n", phases[n->phase]);
        else
            fprintf(f, " phase%d\n", (int)n->phase);
    }
}

/* ---- hash --------------------------------------------------------------- */

/* splitmix64's finalizer: a bijection that spreads every input bit. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* Order-sensitive fold; injective in v for a fixed h. */
static uint64_t fold(uint64_t h, uint64_t v)
{
    return mix64(h * 0x9e3779b97f4a7c15ull + v + 0x632be59bd9b4e019ull);
}

static uint64_t fold_f64(uint64_t h, double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    return fold(h, bits);
}

static uint64_t fold_type(uint64_t h, const dbr_tinfo *t)
{
    int nd = t->ndim < 0 ? 0 : t->ndim > DBR_IR_MAX_DIMS ? DBR_IR_MAX_DIMS : t->ndim;
    h = fold(h, (uint64_t)(uint32_t)t->dtype);
    h = fold(h, (uint64_t)(uint32_t)t->ndim);
    for (int d = 0; d < nd; d++)
        h = fold(h, (uint64_t)t->shape[d]);
    return h;
}

/* FNV-1a, then folded with the length; NULL differs from "". */
static uint64_t fold_str(uint64_t h, const char *s)
{
    if (!s)
        return fold(h, 0x6e756c6c6e756c6cull);
    uint64_t x = 0xcbf29ce484222325ull, len = 0;
    for (; *s; s++, len++)
        x = (x ^ (unsigned char)*s) * 0x100000001b3ull;
    return fold(fold(h, x), len);
}

static uint64_t leaf_hash(const dbr_value *x)
{
    uint64_t h = fold(0x4c454146ull, (uint64_t)x->kind);
    h = fold_type(h, &x->t);
    h = fold(h, (uint64_t)(int64_t)x->slot);
    h = fold_str(h, x->name);
    if (x->kind == DBR_V_CONST)
        h = fold_f64(h, x->cval);
    return h;
}

static uint64_t node_hash(const dbr_graph *g, const dbr_inode *n, const uint64_t *vh)
{
    uint64_t h = fold(0x4e4f4445ull, (uint64_t)n->op);
    h = fold(h, (uint64_t)n->phase);
    for (int k = 0; k < 16; k++)
        h = fold(h, (uint64_t)n->a.i[k]);
    for (int k = 0; k < 4; k++)
        h = fold_f64(h, n->a.f[k]);
    if (n->out >= 0 && n->out < g->n_vals)
        h = fold_type(h, &g->vals[n->out].t);
    h = fold(h, (uint64_t)n->n_in);
    for (int k = 0; k < n->n_in && k < DBR_MAX_SRC; k++)
        h = fold(h, n->in[k] >= 0 && n->in[k] < g->n_vals ? vh[n->in[k]] : 0xbadull);
    return h;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

uint64_t dbr_graph_hash(const dbr_graph *g)
{
    size_t nv = (size_t)(g->n_vals > 0 ? g->n_vals : 0);
    uint64_t *vh = malloc((2 * nv + 1) * sizeof *vh);
    if (!vh)
        return 0;
    uint64_t *entry = vh + nv;
    /* an INTER value is hashed when its producer is reached; one read
     * earlier (a broken graph) sees this fixed stand-in value */
    for (size_t v = 0; v < nv; v++)
        vh[v] = g->vals[v].kind == DBR_V_INTER ? 0x494e544552ull : leaf_hash(&g->vals[v]);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const dbr_inode *n = &g->nodes[i];
        uint64_t h = node_hash(g, n, vh);
        if (n->out >= 0 && n->out < g->n_vals)
            vh[n->out] = h;
    }
    /* A multiset of per-value hashes: recording order drops out, while
     * each value's hash still pins down everything upstream of it. */
    for (size_t v = 0; v < nv; v++)
        entry[v] = mix64(vh[v] + (g->vals[v].is_output ? 0x6f7574707574ull : 0));
    qsort(entry, nv, sizeof *entry, cmp_u64);
    uint64_t h = fold(fold(0x4752415048ull, nv), (uint64_t)(g->n_nodes > 0 ? g->n_nodes : 0));
    for (size_t v = 0; v < nv; v++)
        h = fold(h, entry[v]);
    free(vh);
    return h ? h : 1;
}

/* ---- dump --------------------------------------------------------------- */

static atomic_int dump_count;

int dbr_graph_dump(const dbr_graph *g, const char *pass)
{
    const char *dir = getenv("DBR_DUMP");
    if (!dir || !*dir)
        return 0;
    int nn = atomic_fetch_add(&dump_count, 1) + 1;
    /* the pass name becomes part of a file name */
    char safe[64];
    size_t k = 0;
    for (const char *s = pass ? pass : "graph"; *s && k + 1 < sizeof safe; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        safe[k++] = ok ? c : '_';
    }
    safe[k] = '\0';
    char path[4096], tmp[4200];
    int w = snprintf(path, sizeof path, "%s/%02d-%s.txt", dir, nn, safe);
    if (w < 0 || (size_t)w >= sizeof path)
        return -1;
    snprintf(tmp, sizeof tmp, "%s/.%02d-%s.txt.%ld.tmp", dir, nn, safe, (long)getpid());
    /* a reader never sees half a file: write aside, then rename into place */
    FILE *f = fopen(tmp, "wx");
    if (!f)
        return -1;
    fprintf(f, "# %s: %d values, %d nodes, hash 0x%016llx\n", pass ? pass : "graph",
            (int)g->n_vals, (int)g->n_nodes, (unsigned long long)dbr_graph_hash(g));
    dbr_graph_print(g, f);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}
