/* shape.c: dbr_infer, the shape and dtype rule of every op in ops.def.
 * Each rule checks its inputs and attributes and fills n->out, or writes a
 * message naming the shapes involved (the caller adds op and location). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ir.h"
#include "fused.h"

typedef long long ll;

/* Every check takes (..., char *err, size_t errlen) and passes them on as ERR. */
#define ERR err, errlen


/* A shape as text, usable inside one call: dbr_errf(ERR, "%s", ss(t).s). */
typedef struct { char s[200]; } sstr;
static sstr ss(const dbr_tinfo *t)
{
    sstr r;
    dbr_shape_str(t, r.s, sizeof r.s);
    return r;
}

static const char *dtn(const dbr_tinfo *t) { return dbr_dt_name(t->dtype); }

static bool same_shape(const dbr_tinfo *a, const dbr_tinfo *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]) == 0;
}

static void set_out(dbr_node *n, int32_t dtype, int ndim, const int64_t *shape)
{
    memset(&n->out, 0, sizeof n->out);
    n->out.dtype = dtype;
    n->out.ndim = ndim;
    for (int d = 0; d < ndim; d++)
        n->out.shape[d] = shape[d];
}

/* ---- common checks ---------------------------------------------------- */

static int need_float(const dbr_tinfo *t, const char *what, char *err, size_t errlen)
{
    if (t->dtype == DT_F32 || t->dtype == DT_F64)
        return 0;
    return dbr_errf(ERR, "%s%sdtype %s is not supported (needs f32 or f64)", what, *what ? " " : "",
                dtn(t));
}

static int need_int(const dbr_tinfo *t, const char *what, char *err, size_t errlen)
{
    if (dbr_dt_is_int(t->dtype))
        return 0;
    return dbr_errf(ERR, "%s dtype %s is not an integer dtype (needs i32 or i64)", what, dtn(t));
}

static int same_dtype(const dbr_tinfo *a, const dbr_tinfo *b, char *err, size_t errlen)
{
    if (a->dtype == b->dtype)
        return 0;
    return dbr_errf(ERR, "dtypes %s and %s differ", dtn(a), dtn(b));
}

/* Float inputs of one dtype, all of one shape (the GRAD helpers' (x, gy)). */
static int same_type(const dbr_tinfo *a, const dbr_tinfo *b, char *err, size_t errlen)
{
    if (same_dtype(a, b, ERR) || need_float(a, "", ERR))
        return -1;
    if (!same_shape(a, b))
        return dbr_errf(ERR, "shapes %s and %s differ", ss(a).s, ss(b).s);
    return 0;
}

static int check_axis(int64_t axis, const dbr_tinfo *t, char *err, size_t errlen)
{
    if (axis >= 0 && axis < t->ndim)
        return 0;
    return dbr_errf(ERR, "axis %lld out of range for shape %s", (ll)axis, ss(t).s);
}

/* NumPy broadcasting of k shapes, right-aligned, ignoring each shape's last
 * `skip` dims (matmul's matrix dims). Writes ndim and shape of out. */
static int broadcast(const dbr_tinfo *const ts[], int k, int skip, dbr_tinfo *out,
                     char *err, size_t errlen)
{
    int nd = 0;
    for (int i = 0; i < k; i++)
        if (ts[i]->ndim - skip > nd)
            nd = ts[i]->ndim - skip;
    out->ndim = nd;
    for (int d = 1; d <= nd; d++) {
        int64_t size = 1;
        int who = -1;
        for (int i = 0; i < k; i++) {
            int at = ts[i]->ndim - skip - d;
            if (at < 0 || ts[i]->shape[at] == 1)
                continue;
            if (who < 0) {
                size = ts[i]->shape[at];
                who = i;
            } else if (ts[i]->shape[at] != size) {
                return dbr_errf(ERR, "shapes %s and %s cannot broadcast (dim -%d: %lld vs %lld)",
                            ss(ts[who]).s, ss(ts[i]).s, d + skip, (ll)size,
                            (ll)ts[i]->shape[at]);
            }
        }
        out->shape[nd - d] = size;
    }
    return 0;
}

/* Shape after reducing the axes in `mask`. */
static int reduce_shape(const dbr_tinfo *x, int64_t mask, bool keep, dbr_tinfo *out,
                        char *err, size_t errlen)
{
    for (int bit = x->ndim; bit < 64; bit++)
        if ((uint64_t)mask >> bit & 1)
            return check_axis(bit, x, ERR);
    *out = *x;
    out->ndim = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (!(mask >> d & 1))
            out->shape[out->ndim++] = x->shape[d];
        else if (keep)
            out->shape[out->ndim++] = 1;
    }
    return 0;
}

static int64_t floordiv(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

/* ---- element-wise ----------------------------------------------------- */

static int infer_unary(dbr_node *n, char *err, size_t errlen)
{
    if (need_float(&n->in[0], "", ERR))
        return -1;
    n->out = n->in[0];
    return 0;
}

static int infer_binary(dbr_node *n, char *err, size_t errlen)
{
    const dbr_tinfo *ts[2] = {&n->in[0], &n->in[1]};
    if (same_dtype(ts[0], ts[1], ERR) || need_float(ts[0], "", ERR) || broadcast(ts, 2, 0, &n->out, ERR))
        return -1;
    n->out.dtype = ts[0]->dtype;
    return 0;
}

static int infer_where(dbr_node *n, char *err, size_t errlen)
{
    const dbr_tinfo *ts[3] = {&n->in[0], &n->in[1], &n->in[2]};
    if (same_dtype(ts[1], ts[2], ERR) || need_float(ts[1], "", ERR) || broadcast(ts, 3, 0, &n->out, ERR))
        return -1;
    n->out.dtype = ts[1]->dtype;
    return 0;
}

/* ---- reductions: i0 axis mask, i1 keepdims ----------------------------- */

static int infer_reduce(dbr_node *n, char *err, size_t errlen)
{
    const dbr_tinfo *x = &n->in[0];
    if (need_float(x, "", ERR) || reduce_shape(x, n->a.i[0], n->a.i[1] != 0, &n->out, ERR))
        return -1;
    if (n->op == DBR_OP_MAX)
        for (int d = 0; d < x->ndim; d++)
            if (n->a.i[0] >> d & 1 && x->shape[d] == 0)
                return dbr_errf(ERR, "max over axis %d of shape %s, which is empty", d, ss(x).s);
    return 0;
}

/* MAX_BWD(x, y, gy): y and gy must be MAX(x)'s output. */
static int infer_max_bwd(dbr_node *n, char *err, size_t errlen)
{
    dbr_tinfo y;
    if (infer_reduce(n, ERR))
        return -1;
    y = n->out;
    if (same_type(&n->in[1], &y, ERR) || same_type(&n->in[2], &y, ERR))
        return -1;
    n->out = n->in[0];
    return 0;
}

/* Optimizer updates: the gradient and any state share the parameter's
 * type; the result is a [] token of that dtype. */
static int infer_update(dbr_node *n, char *err, size_t errlen)
{
    static const char *const what[] = {"parameter", "gradient", "state", "state"};
    for (int i = 1; i < n->n_in; i++)
        if (same_type(&n->in[0], &n->in[i], ERR)) {
            size_t k = strlen(err);
            snprintf(err + k, errlen > k ? errlen - k : 0, " (%s and %s)", what[0], what[i]);
            return -1;
        }
    if (need_float(&n->in[0], "parameter ", ERR))
        return -1;
    n->out.dtype = n->in[0].dtype;
    n->out.ndim = 0;
    return 0;
}

/* ---- matmul: i0 trans_a, i1 trans_b ------------------------------------ */

static int infer_matmul(dbr_node *n, char *err, size_t errlen)
{
    const dbr_tinfo *a = &n->in[0], *b = &n->in[1];
    const dbr_tinfo *ts[2] = {a, b};
    bool ta = n->a.i[0] != 0, tb = n->a.i[1] != 0;
    if (same_dtype(a, b, ERR) || need_float(a, "", ERR))
        return -1;
    if (a->ndim < 2 || b->ndim < 2)
        return dbr_errf(ERR, "shapes %s and %s must both have at least 2 dims", ss(a).s, ss(b).s);
    int64_t m = a->shape[a->ndim - (ta ? 1 : 2)], ka = a->shape[a->ndim - (ta ? 2 : 1)];
    int64_t kb = b->shape[b->ndim - (tb ? 1 : 2)], nn = b->shape[b->ndim - (tb ? 2 : 1)];
    if (ka != kb)
        return dbr_errf(ERR, "shapes %s and %s do not match (inner dims %lld vs %lld%s%s)",
                    ss(a).s, ss(b).s, (ll)ka, (ll)kb, ta ? ", trans_a" : "", tb ? ", trans_b" : "");
    if (broadcast(ts, 2, 2, &n->out, ERR))
        return -1;
    n->out.shape[n->out.ndim++] = m;
    n->out.shape[n->out.ndim++] = nn;
    n->out.dtype = a->dtype;
    return 0;
}

/* ---- conv: i0,i1 stride; i2,i3 pad; i4,i5 dilation; i6 groups ---------- */

static void tinfo4(dbr_tinfo *t, int32_t dtype, const int64_t *s)
{
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = 4;
    memcpy(t->shape, s, 4 * sizeof s[0]);
}

/* The forward conv rule, shared with its two backward ops. */
static int conv_out(const dbr_tinfo *x, const dbr_tinfo *w, const dbr_attrs *a, dbr_tinfo *y,
                    char *err, size_t errlen)
{
    const int64_t *s = a->i, *p = a->i + 2, *dl = a->i + 4;
    int64_t g = a->i[6];
    if (same_dtype(x, w, ERR) || need_float(x, "", ERR))
        return -1;
    if (x->ndim != 4)
        return dbr_errf(ERR, "input %s must be 4-D [N,C,H,W]", ss(x).s);
    if (w->ndim != 4)
        return dbr_errf(ERR, "weight %s must be 4-D [O,C/groups,KH,KW]", ss(w).s);
    if (s[0] < 1 || s[1] < 1)
        return dbr_errf(ERR, "stride %lldx%lld must be >= 1", (ll)s[0], (ll)s[1]);
    if (p[0] < 0 || p[1] < 0)
        return dbr_errf(ERR, "padding %lldx%lld must be >= 0", (ll)p[0], (ll)p[1]);
    if (dl[0] < 1 || dl[1] < 1)
        return dbr_errf(ERR, "dilation %lldx%lld must be >= 1", (ll)dl[0], (ll)dl[1]);
    if (g < 1)
        return dbr_errf(ERR, "groups %lld must be >= 1", (ll)g);
    for (int d = 0; d < 4; d++)
        if (w->shape[d] < 1)
            return dbr_errf(ERR, "weight %s has an empty dim", ss(w).s);
    if (x->shape[1] != w->shape[1] * g)
        return dbr_errf(ERR, "input %s has %lld channels but weight %s expects %lld (groups %lld)",
                    ss(x).s, (ll)x->shape[1], ss(w).s, (ll)(w->shape[1] * g), (ll)g);
    if (w->shape[0] % g)
        return dbr_errf(ERR, "weight %s has %lld output channels, not divisible by groups %lld",
                    ss(w).s, (ll)w->shape[0], (ll)g);
    int64_t o[2];
    for (int d = 0; d < 2; d++)
        o[d] = floordiv(x->shape[2 + d] + 2 * p[d] - dl[d] * (w->shape[2 + d] - 1) - 1, s[d]) + 1;
    if (o[0] < 1 || o[1] < 1)
        return dbr_errf(ERR, "output size would be %lldx%lld (input %s, kernel %lldx%lld, stride %lldx%lld, "
                    "padding %lldx%lld, dilation %lldx%lld)",
                    (ll)o[0], (ll)o[1], ss(x).s, (ll)w->shape[2], (ll)w->shape[3], (ll)s[0],
                    (ll)s[1], (ll)p[0], (ll)p[1], (ll)dl[0], (ll)dl[1]);
    tinfo4(y, x->dtype, (const int64_t[]){x->shape[0], w->shape[0], o[0], o[1]});
    return 0;
}

/* gy must be what the forward op would have produced. */
static int check_gy(const dbr_tinfo *gy, const dbr_tinfo *y, char *err, size_t errlen)
{
    if (same_dtype(gy, y, ERR))
        return -1;
    if (!same_shape(gy, y))
        return dbr_errf(ERR, "gradient %s does not match the forward output %s", ss(gy).s, ss(y).s);
    return 0;
}

static int infer_conv(dbr_node *n, char *err, size_t errlen)
{
    return conv_out(&n->in[0], &n->in[1], &n->a, &n->out, ERR);
}

/* CONV2D_BWD_DATA(gy, w), i8..i11 x's shape */
static int infer_conv_bwd_data(dbr_node *n, char *err, size_t errlen)
{
    dbr_tinfo x, y;
    tinfo4(&x, n->in[0].dtype, n->a.i + 8);
    if (conv_out(&x, &n->in[1], &n->a, &y, ERR) || check_gy(&n->in[0], &y, ERR))
        return -1;
    n->out = x;
    return 0;
}

/* CONV2D_BWD_WEIGHT(x, gy), i8..i11 w's shape */
static int infer_conv_bwd_weight(dbr_node *n, char *err, size_t errlen)
{
    dbr_tinfo w, y;
    tinfo4(&w, n->in[0].dtype, n->a.i + 8);
    if (conv_out(&n->in[0], &w, &n->a, &y, ERR) || check_gy(&n->in[1], &y, ERR))
        return -1;
    n->out = w;
    return 0;
}

/* ---- pooling: i0 kernel, i1 stride, i2 padding -------------------------- */

static int pool_out(const dbr_tinfo *x, const dbr_attrs *a, dbr_tinfo *y, char *err, size_t errlen)
{
    int64_t k = a->i[0], s = a->i[1], p = a->i[2], o[2];
    if (need_float(x, "", ERR))
        return -1;
    if (x->ndim != 4)
        return dbr_errf(ERR, "input %s must be 4-D [N,C,H,W]", ss(x).s);
    if (k < 1)
        return dbr_errf(ERR, "kernel %lld must be >= 1", (ll)k);
    if (s < 1)
        return dbr_errf(ERR, "stride %lld must be >= 1", (ll)s);
    if (p < 0 || p > k / 2)
        return dbr_errf(ERR, "padding %lld must be between 0 and half the kernel %lld", (ll)p, (ll)k);
    for (int d = 0; d < 2; d++)
        o[d] = floordiv(x->shape[2 + d] + 2 * p - k, s) + 1;
    if (o[0] < 1 || o[1] < 1)
        return dbr_errf(ERR, "output size would be %lldx%lld (input %s, kernel %lld, stride %lld, padding %lld)",
                    (ll)o[0], (ll)o[1], ss(x).s, (ll)k, (ll)s, (ll)p);
    tinfo4(y, x->dtype, (const int64_t[]){x->shape[0], x->shape[1], o[0], o[1]});
    return 0;
}

static int infer_pool(dbr_node *n, char *err, size_t errlen)
{
    return pool_out(&n->in[0], &n->a, &n->out, ERR);
}

/* MAX_POOL2D_BWD(x, gy) */
static int infer_max_pool_bwd(dbr_node *n, char *err, size_t errlen)
{
    dbr_tinfo y;
    if (pool_out(&n->in[0], &n->a, &y, ERR) || check_gy(&n->in[1], &y, ERR))
        return -1;
    n->out = n->in[0];
    return 0;
}

/* AVG_POOL2D_BWD(gy), i8..i11 x's shape */
static int infer_avg_pool_bwd(dbr_node *n, char *err, size_t errlen)
{
    dbr_tinfo x, y;
    tinfo4(&x, n->in[0].dtype, n->a.i + 8);
    for (int d = 0; d < 4; d++)
        if (x.shape[d] < 0)
            return dbr_errf(ERR, "input shape %s has a negative dim", ss(&x).s);
    if (pool_out(&x, &n->a, &y, ERR) || check_gy(&n->in[0], &y, ERR))
        return -1;
    n->out = x;
    return 0;
}

/* ---- norms: f0 eps ------------------------------------------------------ */

/* gamma or beta: [len], the dtype of x. */
static int check_affine(const dbr_tinfo *x, const dbr_tinfo *p, int64_t len, const char *what,
                        char *err, size_t errlen)
{
    if (p->dtype != x->dtype)
        return dbr_errf(ERR, "dtypes %s and %s differ (input and %s)", dtn(x), dtn(p), what);
    if (p->ndim != 1 || p->shape[0] != len)
        return dbr_errf(ERR, "%s %s must be [%lld] for input %s", what, ss(p).s, (ll)len, ss(x).s);
    return 0;
}

/* BATCH_NORM(x[, gamma[, beta]]), LAYER_NORM likewise, their BWD ops
 * (x, gy[, gamma]) and BN_STATS(x). */
static int infer_norm(dbr_node *n, char *err, size_t errlen)
{
    const dbr_tinfo *x = &n->in[0];
    bool bn = n->op == DBR_OP_BATCH_NORM || n->op == DBR_OP_BATCH_NORM_BWD || n->op == DBR_OP_BN_STATS;
    bool bwd = n->op == DBR_OP_BATCH_NORM_BWD || n->op == DBR_OP_LAYER_NORM_BWD;
    static const char *const names[] = {"gamma", "beta"};
    if (need_float(x, "", ERR))
        return -1;
    if (bn && x->ndim < 2)
        return dbr_errf(ERR, "input %s must have at least 2 dims [N,C,...]", ss(x).s);
    if (!bn && x->ndim < 1)
        return dbr_errf(ERR, "input %s must have at least 1 dim", ss(x).s);
    if (!(n->a.f[0] >= 0))
        return dbr_errf(ERR, "eps %g must be >= 0", n->a.f[0]);
    int64_t len = bn ? x->shape[1] : x->shape[x->ndim - 1];
    int first = 1;
    if (bwd) {
        if (same_type(&n->in[1], x, ERR))
            return -1;
        first = 2;
    }
    for (int i = first; i < n->n_in; i++)
        if (check_affine(x, &n->in[i], len, names[i - first], ERR))
            return -1;
    if (n->op == DBR_OP_BN_STATS)
        set_out(n, x->dtype, 2, (const int64_t[]){2, len});
    else
        n->out = *x;
    return 0;
}

/* ---- softmax: i0 axis --------------------------------------------------- */

static int infer_softmax(dbr_node *n, char *err, size_t errlen)
{
    if (need_float(&n->in[0], "", ERR) || check_axis(n->a.i[0], &n->in[0], ERR))
        return -1;
    n->out = n->in[0];
    return 0;
}

/* ---- loss --------------------------------------------------------------- */

static int check_ce(const dbr_tinfo *z, const dbr_tinfo *y, char *err, size_t errlen)
{
    if (need_float(z, "logits", ERR) || need_int(y, "labels", ERR))
        return -1;
    if (z->ndim != 2)
        return dbr_errf(ERR, "logits %s must be 2-D [N,C]", ss(z).s);
    if (z->shape[1] < 1)
        return dbr_errf(ERR, "logits %s have no classes", ss(z).s);
    if (y->ndim != 1 || y->shape[0] != z->shape[0])
        return dbr_errf(ERR, "labels %s do not match logits %s (need [%lld])", ss(y).s, ss(z).s,
                    (ll)z->shape[0]);
    return 0;
}

static int infer_ce(dbr_node *n, char *err, size_t errlen)
{
    if (check_ce(&n->in[0], &n->in[1], ERR))
        return -1;
    set_out(n, n->in[0].dtype, 0, NULL);
    return 0;
}

/* CROSS_ENTROPY_BWD(logits, labels, gy[]) */
static int infer_ce_bwd(dbr_node *n, char *err, size_t errlen)
{
    dbr_tinfo y = {.dtype = n->in[0].dtype, .ndim = 0};
    if (check_ce(&n->in[0], &n->in[1], ERR) || check_gy(&n->in[2], &y, ERR))
        return -1;
    n->out = n->in[0];
    return 0;
}

/* ---- embedding ---------------------------------------------------------- */

/* out = idx.shape + [d] */
static int gather_shape(const dbr_tinfo *idx, int64_t d, int32_t dtype, dbr_tinfo *out,
                        char *err, size_t errlen)
{
    if (need_int(idx, "index", ERR))
        return -1;
    if (idx->ndim >= DBR_IR_MAX_DIMS)
        return dbr_errf(ERR, "index %s has %d dims; the result would have more than %d", ss(idx).s,
                    idx->ndim, DBR_IR_MAX_DIMS);
    *out = *idx;
    out->dtype = dtype;
    out->shape[out->ndim++] = d;
    return 0;
}

/* EMBEDDING(weight [V,D], idx) */
static int infer_embedding(dbr_node *n, char *err, size_t errlen)
{
    const dbr_tinfo *w = &n->in[0];
    if (need_float(w, "weight", ERR))
        return -1;
    if (w->ndim != 2)
        return dbr_errf(ERR, "weight %s must be 2-D [V,D]", ss(w).s);
    return gather_shape(&n->in[1], w->shape[1], w->dtype, &n->out, ERR);
}

/* EMBEDDING_BWD(idx, gy), i0 V */
static int infer_embedding_bwd(dbr_node *n, char *err, size_t errlen)
{
    const dbr_tinfo *gy = &n->in[1];
    dbr_tinfo y;
    if (need_float(gy, "", ERR))
        return -1;
    if (n->a.i[0] < 1)
        return dbr_errf(ERR, "vocabulary size %lld must be >= 1", (ll)n->a.i[0]);
    if (gy->ndim < 1)
        return dbr_errf(ERR, "gradient %s must have at least 1 dim", ss(gy).s);
    int64_t d = gy->shape[gy->ndim - 1];
    if (gather_shape(&n->in[0], d, gy->dtype, &y, ERR) || check_gy(gy, &y, ERR))
        return -1;
    set_out(n, gy->dtype, 2, (const int64_t[]){n->a.i[0], d});
    return 0;
}

/* ---- data movement (any dtype) ------------------------------------------ */

/* The target shape in i0 (ndim), i1.. (dims). */
static int attr_shape(const dbr_node *n, dbr_tinfo *t, char *err, size_t errlen)
{
    int64_t nd = n->a.i[0];
    if (nd < 0 || nd > DBR_IR_MAX_DIMS)
        return dbr_errf(ERR, "target has %lld dims (at most %d)", (ll)nd, DBR_IR_MAX_DIMS);
    memset(t, 0, sizeof *t);
    t->dtype = n->in[0].dtype;
    t->ndim = (int32_t)nd;
    for (int d = 0; d < nd; d++)
        t->shape[d] = n->a.i[1 + d];
    for (int d = 0; d < nd; d++)
        if (t->shape[d] < 0)
            return dbr_errf(ERR, "target shape %s has a negative dim", ss(t).s);
    return 0;
}

static int infer_reshape(dbr_node *n, char *err, size_t errlen)
{
    dbr_tinfo t;
    if (attr_shape(n, &t, ERR))
        return -1;
    int64_t a = dbr_tinfo_numel(&n->in[0]), b = dbr_tinfo_numel(&t);
    if (a != b)
        return dbr_errf(ERR, "cannot reshape %s (%lld elements) to %s (%lld elements)", ss(&n->in[0]).s,
                    (ll)a, ss(&t).s, (ll)b);
    n->out = t;
    return 0;
}

static int infer_broadcast_to(dbr_node *n, char *err, size_t errlen)
{
    const dbr_tinfo *x = &n->in[0];
    dbr_tinfo t;
    if (attr_shape(n, &t, ERR))
        return -1;
    if (x->ndim > t.ndim)
        return dbr_errf(ERR, "cannot broadcast %s to %s (more dims than the target)", ss(x).s, ss(&t).s);
    for (int d = 1; d <= x->ndim; d++) {
        int64_t s = x->shape[x->ndim - d], u = t.shape[t.ndim - d];
        if (s != 1 && s != u)
            return dbr_errf(ERR, "cannot broadcast %s to %s (dim -%d: %lld vs %lld)", ss(x).s, ss(&t).s,
                        d, (ll)s, (ll)u);
    }
    n->out = t;
    return 0;
}

static int infer_permute(dbr_node *n, char *err, size_t errlen)
{
    const dbr_tinfo *x = &n->in[0];
    bool seen[DBR_IR_MAX_DIMS] = {false};
    if (n->a.i[0] != x->ndim)
        return dbr_errf(ERR, "permutation of %lld axes for shape %s", (ll)n->a.i[0], ss(x).s);
    n->out = *x;
    for (int d = 0; d < x->ndim; d++) {
        int64_t p = n->a.i[1 + d];
        if (p < 0 || p >= x->ndim || seen[p]) {
            char buf[200];
            int at = 0;
            for (int k = 0; k < x->ndim && at < (int)sizeof buf; k++)
                at += snprintf(buf + at, sizeof buf - (size_t)at, k ? ",%lld" : "%lld", (ll)n->a.i[1 + k]);
            return dbr_errf(ERR, "[%s] is not a permutation of the %d axes of shape %s", buf, x->ndim, ss(x).s);
        }
        seen[p] = true;
        n->out.shape[d] = x->shape[p];
    }
    return 0;
}

/* SLICE: i0 axis, i1 start, i2 stop, i3 step over an axis of length len;
 * returns the sliced length, or -1. */
static int64_t slice_len(const dbr_attrs *a, const dbr_tinfo *x, int64_t len, char *err, size_t errlen)
{
    int64_t axis = a->i[0], start = a->i[1], stop = a->i[2], step = a->i[3];
    char range[80];
    if (step == 1)
        snprintf(range, sizeof range, "[%lld:%lld]", (ll)start, (ll)stop);
    else
        snprintf(range, sizeof range, "[%lld:%lld:%lld]", (ll)start, (ll)stop, (ll)step);
    if (step < 1)
        return dbr_errf(ERR, "slice %s of axis %lld has step %lld (needs >= 1)", range, (ll)axis, (ll)step);
    if (start < 0 || start > stop || stop > len)
        return dbr_errf(ERR, "slice %s out of range for axis %lld (length %lld) of shape %s", range,
                    (ll)axis, (ll)len, ss(x).s);
    if (start == stop)
        return dbr_errf(ERR, "slice %s of axis %lld (length %lld) is empty", range, (ll)axis, (ll)len);
    return (stop - start + step - 1) / step;
}

static int infer_slice(dbr_node *n, char *err, size_t errlen)
{
    const dbr_tinfo *x = &n->in[0];
    int64_t axis = n->a.i[0], m;
    if (check_axis(axis, x, ERR) || (m = slice_len(&n->a, x, x->shape[axis], ERR)) < 0)
        return -1;
    n->out = *x;
    n->out.shape[axis] = m;
    return 0;
}

/* SLICE_BWD(gy): i4 the axis's full length */
static int infer_slice_bwd(dbr_node *n, char *err, size_t errlen)
{
    const dbr_tinfo *gy = &n->in[0];
    int64_t axis = n->a.i[0], len = n->a.i[4], m;
    if (check_axis(axis, gy, ERR))
        return -1;
    dbr_tinfo x = *gy;
    x.shape[axis] = len;
    if ((m = slice_len(&n->a, &x, len, ERR)) < 0)
        return -1;
    if (gy->shape[axis] != m)
        return dbr_errf(ERR, "gradient %s has length %lld on axis %lld but the slice has %lld", ss(gy).s,
                    (ll)gy->shape[axis], (ll)axis, (ll)m);
    n->out = x;
    return 0;
}

static int infer_concat(dbr_node *n, char *err, size_t errlen)
{
    const dbr_tinfo *x = &n->in[0];
    int64_t axis = n->a.i[0];
    if (check_axis(axis, x, ERR))
        return -1;
    n->out = *x;
    for (int i = 1; i < n->n_in; i++) {
        const dbr_tinfo *t = &n->in[i];
        if (same_dtype(x, t, ERR))
            return -1;
        if (t->ndim != x->ndim)
            return dbr_errf(ERR, "shapes %s and %s have different numbers of dims", ss(x).s, ss(t).s);
        for (int d = 0; d < x->ndim; d++)
            if (d != axis && t->shape[d] != x->shape[d])
                return dbr_errf(ERR, "shapes %s and %s differ outside axis %lld (dim %d: %lld vs %lld)",
                            ss(x).s, ss(t).s, (ll)axis, d, (ll)x->shape[d], (ll)t->shape[d]);
        n->out.shape[axis] += t->shape[axis];
    }
    return 0;
}

/* ---- random: f0 p ------------------------------------------------------- */

static int infer_dropout(dbr_node *n, char *err, size_t errlen)
{
    double p = n->a.f[0];
    if (need_float(&n->in[0], "", ERR))
        return -1;
    if (!(p >= 0 && p < 1))
        return dbr_errf(ERR, "p %g out of range [0, 1)", p);
    n->out = n->in[0];
    return 0;
}

/* ---- derivative helpers (x or y, gy) -> gx ------------------------------ */

static int infer_act_bwd(dbr_node *n, char *err, size_t errlen)
{
    if (same_type(&n->in[0], &n->in[1], ERR))
        return -1;
    n->out = n->in[0];
    return 0;
}

/* ---- fused groups: i0 the body's id ------------------------------------ */

static int infer_fused(dbr_node *n, char *err, size_t errlen)
{
    const dbr_fbody *b = dbr_fbody_get(n->a.i[0]);
    if (!b)
        return dbr_errf(ERR, "no fused body %lld", (ll)n->a.i[0]);
    if (n->n_in != b->n_in)
        return dbr_errf(ERR, "fused body %s takes %d inputs, got %d", b->name, b->n_in, n->n_in);
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i].dtype != b->in[i].dtype || !same_shape(&n->in[i], &b->in[i]))
            return dbr_errf(ERR, "fused body %s: input %d is %s %s, not %s %s", b->name, i,
                            dtn(&n->in[i]), ss(&n->in[i]).s, dtn(&b->in[i]), ss(&b->in[i]).s);
    n->out = b->out;
    return 0;
}

/* ---- entry -------------------------------------------------------------- */

/* What holds for every op: arity, ranks, dims and dtypes of the inputs. */
static int check_inputs(const dbr_node *n, char *err, size_t errlen)
{
    const dbr_opinfo *oi = &dbr_ops[n->op];
    if (n->n_in < oi->min_in || n->n_in > oi->max_in) {
        if (oi->min_in == oi->max_in)
            return dbr_errf(ERR, "takes %d input%s, got %d", oi->min_in, oi->min_in == 1 ? "" : "s", n->n_in);
        return dbr_errf(ERR, "takes %d to %d inputs, got %d", oi->min_in, oi->max_in, n->n_in);
    }
    for (int i = 0; i < n->n_in; i++) {
        const dbr_tinfo *t = &n->in[i];
        if (t->ndim < 0 || t->ndim > DBR_IR_MAX_DIMS)
            return dbr_errf(ERR, "input %d has %d dims (at most %d)", i, t->ndim, DBR_IR_MAX_DIMS);
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0)
                return dbr_errf(ERR, "shape %s has a negative dim", ss(t).s);
        if (t->dtype < 0 || t->dtype >= DT_COUNT)
            return dbr_errf(ERR, "input %d has an unknown dtype %d", i, t->dtype);
        if (t->dtype == DT_F16 || t->dtype == DT_BF16)
            return dbr_errf(ERR, "dtype %s has no kernels yet", dtn(t));
    }
    return 0;
}

int dbr_infer(dbr_node *n, char *err, size_t errlen)
{
    if ((unsigned)n->op >= DBR_OP_COUNT)
        return dbr_errf(ERR, "unknown op %d", (int)n->op);
    if (check_inputs(n, ERR))
        return -1;
    memset(&n->out, 0, sizeof n->out);
    switch (n->op) {
    case DBR_OP_ADD: case DBR_OP_SUB: case DBR_OP_MUL: case DBR_OP_DIV:
        return infer_binary(n, ERR);
    case DBR_OP_NEG: case DBR_OP_EXP: case DBR_OP_LOG: case DBR_OP_SQRT: case DBR_OP_RSQRT:
    case DBR_OP_POW: case DBR_OP_ABS: case DBR_OP_SIGN: case DBR_OP_TANH: case DBR_OP_SIGMOID:
    case DBR_OP_RELU: case DBR_OP_LEAKY_RELU: case DBR_OP_GELU: case DBR_OP_SILU:
        return infer_unary(n, ERR);
    case DBR_OP_WHERE:             return infer_where(n, ERR);
    case DBR_OP_SUM: case DBR_OP_MEAN: case DBR_OP_MAX:
        return infer_reduce(n, ERR);
    case DBR_OP_MATMUL:            return infer_matmul(n, ERR);
    case DBR_OP_CONV2D:            return infer_conv(n, ERR);
    case DBR_OP_CONV2D_BWD_DATA:   return infer_conv_bwd_data(n, ERR);
    case DBR_OP_CONV2D_BWD_WEIGHT: return infer_conv_bwd_weight(n, ERR);
    case DBR_OP_MAX_POOL2D: case DBR_OP_AVG_POOL2D:
        return infer_pool(n, ERR);
    case DBR_OP_MAX_POOL2D_BWD:    return infer_max_pool_bwd(n, ERR);
    case DBR_OP_AVG_POOL2D_BWD:    return infer_avg_pool_bwd(n, ERR);
    case DBR_OP_BATCH_NORM: case DBR_OP_BATCH_NORM_BWD: case DBR_OP_BN_STATS:
    case DBR_OP_LAYER_NORM: case DBR_OP_LAYER_NORM_BWD:
        return infer_norm(n, ERR);
    case DBR_OP_SOFTMAX: case DBR_OP_LOG_SOFTMAX:
        return infer_softmax(n, ERR);
    case DBR_OP_CROSS_ENTROPY:     return infer_ce(n, ERR);
    case DBR_OP_CROSS_ENTROPY_BWD: return infer_ce_bwd(n, ERR);
    case DBR_OP_EMBEDDING:         return infer_embedding(n, ERR);
    case DBR_OP_EMBEDDING_BWD:     return infer_embedding_bwd(n, ERR);
    case DBR_OP_RESHAPE:           return infer_reshape(n, ERR);
    case DBR_OP_PERMUTE:           return infer_permute(n, ERR);
    case DBR_OP_SLICE:             return infer_slice(n, ERR);
    case DBR_OP_SLICE_BWD:         return infer_slice_bwd(n, ERR);
    case DBR_OP_CONCAT:            return infer_concat(n, ERR);
    case DBR_OP_BROADCAST_TO:      return infer_broadcast_to(n, ERR);
    case DBR_OP_DROPOUT:           return infer_dropout(n, ERR);
    case DBR_OP_RELU_BWD: case DBR_OP_LEAKY_RELU_BWD: case DBR_OP_GELU_BWD: case DBR_OP_SILU_BWD:
        return infer_act_bwd(n, ERR);
    case DBR_OP_MAX_BWD:           return infer_max_bwd(n, ERR);
    case DBR_OP_SGD_UPDATE: case DBR_OP_MOMENTUM_UPDATE: case DBR_OP_ADAM_UPDATE:
        return infer_update(n, ERR);
    case DBR_OP_FUSED:             return infer_fused(n, ERR);
    case DBR_OP_COUNT:             break;
    }
    return dbr_errf(ERR, "unknown op %d", (int)n->op);
}
