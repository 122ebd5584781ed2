/* ops.c: the public op entry points. Each builds a dbr_node once (op,
 * attributes, caller's file:line) and hands it to dbr_apply; composites
 * (linear, mse, inference batch norm, ...) are sequences of those. */
#include "frontend/internal.h"
#include "kernels/philox.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define NODE(OP, API) \
    (dbr_node) { .op = DBR_OP_##OP, .api = API, .file = file, .line = line }

static char *sh(const dbr_tensor *t, char *buf, size_t n) {
    dbr_tinfo ti;
    dbr_tinfo_of(t, &ti);
    return dbr_shape_str(&ti, buf, n);
}

static dbr_tensor *run1(dbr_ctx *ctx, dbr_node n, dbr_tensor *x) {
    dbr_tensor *in[1] = {x};
    return dbr_apply(ctx, &n, 1, in);
}

static dbr_tensor *run2(dbr_ctx *ctx, dbr_node n, dbr_tensor *a, dbr_tensor *b) {
    dbr_tensor *in[2] = {a, b};
    return dbr_apply(ctx, &n, 2, in);
}

/* A step-scoped scalar of x's dtype (for composites). */
static dbr_tensor *const_like(dbr_ctx *ctx, const dbr_tensor *x, double v, const char *file,
                              int line) {
    return dbr_full_(ctx, x ? x->dtype : DBR_F32, 0, NULL, v, file, line);
}

/* ---- element-wise ------------------------------------------------------ */
#define EW2(fn, OP)                                                                       \
    dbr_tensor *fn##_(dbr_ctx *ctx, dbr_tensor *a, dbr_tensor *b, const char *file,      \
                      int line) {                                                        \
        return run2(ctx, NODE(OP, #fn), a, b);                                           \
    }
#define EW1(fn, OP)                                                                       \
    dbr_tensor *fn##_(dbr_ctx *ctx, dbr_tensor *x, const char *file, int line) {         \
        return run1(ctx, NODE(OP, #fn), x);                                              \
    }
EW2(dbr_add, ADD)
EW2(dbr_sub, SUB)
EW2(dbr_mul, MUL)
EW2(dbr_div, DIV)
EW1(dbr_neg, NEG)
EW1(dbr_exp, EXP)
EW1(dbr_log, LOG)
EW1(dbr_sqrt, SQRT)
EW1(dbr_rsqrt, RSQRT)
EW1(dbr_abs, ABS)
EW1(dbr_tanh, TANH)
EW1(dbr_sigmoid, SIGMOID)
EW1(dbr_relu, RELU)
EW1(dbr_gelu, GELU)
EW1(dbr_silu, SILU)

dbr_tensor *dbr_pow_(dbr_ctx *ctx, dbr_tensor *x, double p, const char *file, int line) {
    dbr_node n = NODE(POW, "dbr_pow");
    n.a.f[0] = p;
    return run1(ctx, n, x);
}

dbr_tensor *dbr_leaky_relu_(dbr_ctx *ctx, dbr_tensor *x, double slope, const char *file,
                            int line) {
    dbr_node n = NODE(LEAKY_RELU, "dbr_leaky_relu");
    n.a.f[0] = slope;
    return run1(ctx, n, x);
}

dbr_tensor *dbr_scale_(dbr_ctx *ctx, dbr_tensor *x, double s, const char *file, int line) {
    if (!x) return NULL;
    return run2(ctx, NODE(MUL, "dbr_scale"), x, const_like(ctx, x, s, file, line));
}

dbr_tensor *dbr_where_(dbr_ctx *ctx, dbr_tensor *mask, dbr_tensor *a, dbr_tensor *b,
                       const char *file, int line) {
    dbr_node n = NODE(WHERE, "dbr_where");
    dbr_tensor *in[3] = {mask, a, b};
    return dbr_apply(ctx, &n, 3, in);
}

/* ---- reductions ------------------------------------------------------- */
static dbr_tensor *reduce(dbr_ctx *ctx, dbr_node n, dbr_tensor *x, int naxes, const int *axes,
                          bool keepdims) {
    if (!x || ctx->bad_config) return NULL;
    const char *file = n.file;
    int line = n.line;
    int64_t mask = 0;
    if (naxes < 0 || (naxes > 0 && !axes)) {
        dbr_set_error(ctx, file, line, n.api, "naxes %d with %s axes", naxes,
                      axes ? "given" : "NULL");
        return NULL;
    }
    if (naxes == 0) mask = x->ndim ? ((int64_t)1 << x->ndim) - 1 : 0;
    for (int i = 0; i < naxes; i++) {
        int a = dbr_norm_axis(axes[i], x->ndim);
        char s[128];
        if (a < 0) {
            dbr_set_error(ctx, file, line, n.api, "axis %d out of range for shape %s", axes[i],
                          sh(x, s, sizeof s));
            return NULL;
        }
        if (mask & ((int64_t)1 << a)) {
            dbr_set_error(ctx, file, line, n.api, "axis %d repeated for shape %s", axes[i],
                          sh(x, s, sizeof s));
            return NULL;
        }
        mask |= (int64_t)1 << a;
    }
    n.a.i[0] = mask;
    n.a.i[1] = keepdims;
    return run1(ctx, n, x);
}

dbr_tensor *dbr_sum_(dbr_ctx *ctx, dbr_tensor *x, int naxes, const int *axes, bool keepdims,
                     const char *file, int line) {
    return reduce(ctx, NODE(SUM, "dbr_sum"), x, naxes, axes, keepdims);
}
dbr_tensor *dbr_mean_(dbr_ctx *ctx, dbr_tensor *x, int naxes, const int *axes, bool keepdims,
                      const char *file, int line) {
    return reduce(ctx, NODE(MEAN, "dbr_mean"), x, naxes, axes, keepdims);
}
dbr_tensor *dbr_max_(dbr_ctx *ctx, dbr_tensor *x, int naxes, const int *axes, bool keepdims,
                     const char *file, int line) {
    return reduce(ctx, NODE(MAX, "dbr_max"), x, naxes, axes, keepdims);
}

/* ---- matmul, linear ----------------------------------------------------- */
dbr_tensor *dbr_matmul_(dbr_ctx *ctx, dbr_tensor *a, dbr_tensor *b, bool trans_a, bool trans_b,
                        const char *file, int line) {
    dbr_node n = NODE(MATMUL, "dbr_matmul");
    n.a.i[0] = trans_a;
    n.a.i[1] = trans_b;
    return run2(ctx, n, a, b);
}

/* Add a per-channel bias b [C] to y whose channel axis is `axis`. */
static dbr_tensor *add_channel_bias(dbr_ctx *ctx, dbr_tensor *y, dbr_tensor *b, int axis,
                                    const char *api, const char *file, int line) {
    if (!y || !b) return NULL;
    int64_t shape[DBR_MAX_DIMS];
    for (int i = 0; i < y->ndim; i++) shape[i] = i == axis ? y->shape[axis] : 1;
    dbr_tensor *bb = b;
    if (y->ndim - axis > 1) {
        dbr_node r = NODE(RESHAPE, api);
        r.a.i[0] = y->ndim - axis;
        for (int i = axis; i < y->ndim; i++) r.a.i[1 + i - axis] = shape[i];
        bb = run1(ctx, r, b);
    }
    dbr_tensor *out = run2(ctx, NODE(ADD, api), y, bb);
    if (bb != b) dbr_drop(ctx, bb);
    return out;
}

dbr_tensor *dbr_linear_(dbr_ctx *ctx, dbr_tensor *x, dbr_tensor *w, dbr_tensor *b,
                        const char *file, int line) {
    const char *api = "dbr_linear";
    if (!x || !w || ctx->bad_config) return NULL;
    char s1[128], s2[128], s3[128];
    if (w->ndim != 2 || x->ndim < 2 || x->shape[x->ndim - 1] != w->shape[1]) {
        if (w->ndim != 2)
            dbr_set_error(ctx, file, line, api, "weight %s must be 2-D [out, in]",
                          sh(w, s2, sizeof s2));
        else if (x->ndim < 2)
            dbr_set_error(ctx, file, line, api, "input %s must be at least 2-D [batch, in]",
                          sh(x, s1, sizeof s1));
        else
            dbr_set_error(ctx, file, line, api,
                          "input %s has %lld features but weight %s expects %lld",
                          sh(x, s1, sizeof s1), (long long)x->shape[x->ndim - 1],
                          sh(w, s2, sizeof s2), (long long)w->shape[1]);
        return NULL;
    }
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) {
        dbr_set_error(ctx, file, line, api, "bias %s does not match weight %s (expected [%lld])",
                      sh(b, s3, sizeof s3), sh(w, s2, sizeof s2), (long long)w->shape[0]);
        return NULL;
    }
    dbr_node n = NODE(MATMUL, api);
    n.a.i[1] = 1;
    dbr_tensor *y = run2(ctx, n, x, w);
    if (!b) return y;
    dbr_tensor *out = run2(ctx, NODE(ADD, api), y, b);
    dbr_drop(ctx, y);
    return out;
}

/* ---- convolution and pooling ------------------------------------------ */
dbr_tensor *dbr_conv2d_(dbr_ctx *ctx, dbr_tensor *x, dbr_tensor *w, dbr_tensor *b,
                        dbr_conv2d_opts o, const char *file, int line) {
    const char *api = "dbr_conv2d";
    if (!x || !w || ctx->bad_config) return NULL;
    dbr_node n = NODE(CONV2D, api);
    for (int i = 0; i < 2; i++) {
        n.a.i[0 + i] = o.stride[i] ? o.stride[i] : 1;
        n.a.i[2 + i] = o.padding[i];
        n.a.i[4 + i] = o.dilation[i] ? o.dilation[i] : 1;
    }
    n.a.i[6] = o.groups ? o.groups : 1;
    if (b && (b->ndim != 1 || w->ndim != 4 || b->shape[0] != w->shape[0])) {
        char s1[128], s2[128];
        dbr_set_error(ctx, file, line, api, "bias %s does not match weight %s",
                      sh(b, s1, sizeof s1), sh(w, s2, sizeof s2));
        return NULL;
    }
    dbr_tensor *y = run2(ctx, n, x, w);
    if (!b) return y;
    dbr_tensor *out = add_channel_bias(ctx, y, b, 1, api, file, line);
    dbr_drop(ctx, y);
    return out;
}

static dbr_tensor *pool(dbr_ctx *ctx, dbr_node n, dbr_tensor *x, int k, int stride, int pad) {
    n.a.i[0] = k;
    n.a.i[1] = stride ? stride : k;
    n.a.i[2] = pad;
    return run1(ctx, n, x);
}

dbr_tensor *dbr_max_pool2d_(dbr_ctx *ctx, dbr_tensor *x, int kernel, int stride, int padding,
                            const char *file, int line) {
    return pool(ctx, NODE(MAX_POOL2D, "dbr_max_pool2d"), x, kernel, stride, padding);
}
dbr_tensor *dbr_avg_pool2d_(dbr_ctx *ctx, dbr_tensor *x, int kernel, int stride, int padding,
                            const char *file, int line) {
    return pool(ctx, NODE(AVG_POOL2D, "dbr_avg_pool2d"), x, kernel, stride, padding);
}

dbr_tensor *dbr_global_avg_pool_(dbr_ctx *ctx, dbr_tensor *x, const char *file, int line) {
    if (!x || ctx->bad_config) return NULL;
    if (x->ndim != 4) {
        char s[128];
        dbr_set_error(ctx, file, line, "dbr_global_avg_pool", "input %s must be 4-D [N,C,H,W]",
                      sh(x, s, sizeof s));
        return NULL;
    }
    dbr_node n = NODE(MEAN, "dbr_global_avg_pool");
    n.a.i[0] = (1 << 2) | (1 << 3);
    return run1(ctx, n, x);
}

/* ---- normalization ------------------------------------------------------ */
static bool check_vec(dbr_ctx *ctx, const dbr_tensor *v, const char *what, const dbr_tensor *x,
                      int64_t c, const char *api, const char *file, int line) {
    if (!v) return true;
    if (v->ndim == 1 && v->shape[0] == c && v->dtype == x->dtype) return true;
    char s1[128], s2[128];
    dbr_set_error(ctx, file, line, api, "%s %s %s does not match input %s %s (expected [%lld])",
                  what, dbr_dt_name((int32_t)v->dtype), sh(v, s1, sizeof s1),
                  dbr_dt_name((int32_t)x->dtype), sh(x, s2, sizeof s2), (long long)c);
    return false;
}

/* running = (1-m)*running + m*batch, with the unbiased variance as PyTorch.
 * stats is BN_STATS's [2, c] output. */
void dbr_bn_update_running(dbr_tensor *rm, dbr_tensor *rv, int32_t dtype, const void *stats,
                           int64_t c, double m, int64_t count) {
    double unbias = count > 1 ? (double)count / (double)(count - 1) : 1.0;
    for (int64_t i = 0; i < c; i++) {
        double mean, var;
        if (dtype == DT_F32) {
            mean = ((const float *)stats)[i];
            var = ((const float *)stats)[c + i];
        } else {
            mean = ((const double *)stats)[i];
            var = ((const double *)stats)[c + i];
        }
        double r[2] = {mean, var * unbias};
        dbr_tensor *run[2] = {rm, rv};
        for (int k = 0; k < 2; k++) {
            dbr_tensor *t = run[k];
            if (!t || !t->data) continue;
            if (t->dtype == DBR_F32)
                ((float *)t->data)[i] = (float)((1 - m) * ((float *)t->data)[i] + m * r[k]);
            else
                ((double *)t->data)[i] = (1 - m) * ((double *)t->data)[i] + m * r[k];
        }
    }
}

dbr_tensor *dbr_batch_norm_(dbr_ctx *ctx, dbr_tensor *x, dbr_tensor *gamma, dbr_tensor *beta,
                            dbr_tensor *running_mean, dbr_tensor *running_var, double momentum,
                            double eps, const char *file, int line) {
    const char *api = "dbr_batch_norm";
    if (!x || ctx->bad_config) return NULL;
    char s[128];
    if (x->ndim < 2) {
        dbr_set_error(ctx, file, line, api, "input %s must be at least 2-D [N,C,...]",
                      sh(x, s, sizeof s));
        return NULL;
    }
    int64_t c = x->shape[1];
    if (!check_vec(ctx, gamma, "gamma", x, c, api, file, line) ||
        !check_vec(ctx, beta, "beta", x, c, api, file, line) ||
        !check_vec(ctx, running_mean, "running_mean", x, c, api, file, line) ||
        !check_vec(ctx, running_var, "running_var", x, c, api, file, line))
        return NULL;
    if (beta && !gamma) {
        dbr_set_error(ctx, file, line, api, "beta given without gamma");
        return NULL;
    }
    if (!(eps > 0) || momentum < 0 || momentum > 1) {
        dbr_set_error(ctx, file, line, api, "eps must be > 0 and momentum in [0, 1] (got %g, %g)",
                      eps, momentum);
        return NULL;
    }
    bool use_batch = ctx->training || !running_mean || !running_var;
    if (use_batch) {
        dbr_node n = NODE(BATCH_NORM, api);
        n.a.f[0] = eps;
        dbr_tensor *in[3] = {x, gamma, beta};
        int n_in = beta ? 3 : gamma ? 2 : 1;
        dbr_tensor *y = dbr_apply(ctx, &n, n_in, in);
        if (y && ctx->training && (running_mean || running_var)) {
            bool g = ctx->grad_enabled;
            ctx->grad_enabled = false;
            dbr_tensor *st = run1(ctx, NODE(BN_STATS, api), x);
            ctx->grad_enabled = g;
            if (!st) return NULL;
            if (dbr_recording(ctx)) {
                dbr_effect e = {.vid = st->vid, .running_mean = running_mean,
                                .running_var = running_var, .momentum = momentum,
                                .count = x->numel / c};
                if (dbr_trace_effect(ctx, &e)) { /* meta mode: so plans count the output */
                    dbr_set_error(ctx, file, line, api, "out of memory");
                    return NULL;
                }
            } else {
                dbr_bn_update_running(running_mean, running_var, (int32_t)st->dtype, st->data,
                                      c, momentum, x->numel / c);
                dbr_drop(ctx, st);
            }
        }
        return y;
    }
    /* inference: (x - mean) * rsqrt(var + eps) * gamma + beta, per channel */
    dbr_tensor *shift = NULL, *scale = NULL;
    {
        dbr_tensor *ve = run2(ctx, NODE(ADD, api), running_var, const_like(ctx, x, eps, file, line));
        scale = run1(ctx, NODE(RSQRT, api), ve);
        dbr_drop(ctx, ve);
        if (gamma) {
            dbr_tensor *t = run2(ctx, NODE(MUL, api), scale, gamma);
            dbr_drop(ctx, scale);
            scale = t;
        }
        dbr_tensor *ms = run2(ctx, NODE(MUL, api), running_mean, scale);
        shift = run1(ctx, NODE(NEG, api), ms);
        dbr_drop(ctx, ms);
        if (beta) {
            dbr_tensor *t = run2(ctx, NODE(ADD, api), shift, beta);
            dbr_drop(ctx, shift);
            shift = t;
        }
    }
    /* y = x * scale + shift, both broadcast along axis 1 */
    int64_t shape[DBR_MAX_DIMS];
    for (int i = 0; i < x->ndim - 1; i++) shape[i] = i == 0 ? c : 1;
    dbr_node r = NODE(RESHAPE, api);
    r.a.i[0] = x->ndim - 1;
    for (int i = 0; i < x->ndim - 1; i++) r.a.i[1 + i] = shape[i];
    dbr_tensor *sc = run1(ctx, r, scale), *sf = run1(ctx, r, shift);
    dbr_tensor *xs = run2(ctx, NODE(MUL, api), x, sc);
    dbr_tensor *y = run2(ctx, NODE(ADD, api), xs, sf);
    dbr_drop(ctx, scale);
    dbr_drop(ctx, shift);
    dbr_drop(ctx, sc);
    dbr_drop(ctx, sf);
    dbr_drop(ctx, xs);
    return y;
}

dbr_tensor *dbr_layer_norm_(dbr_ctx *ctx, dbr_tensor *x, dbr_tensor *gamma, dbr_tensor *beta,
                            double eps, const char *file, int line) {
    const char *api = "dbr_layer_norm";
    if (!x || ctx->bad_config) return NULL;
    if (x->ndim < 1) {
        dbr_set_error(ctx, file, line, api, "input must have at least one dim");
        return NULL;
    }
    int64_t d = x->shape[x->ndim - 1];
    if (!check_vec(ctx, gamma, "gamma", x, d, api, file, line) ||
        !check_vec(ctx, beta, "beta", x, d, api, file, line))
        return NULL;
    if (beta && !gamma) {
        dbr_set_error(ctx, file, line, api, "beta given without gamma");
        return NULL;
    }
    if (!(eps > 0)) {
        dbr_set_error(ctx, file, line, api, "eps must be > 0, got %g", eps);
        return NULL;
    }
    dbr_node n = NODE(LAYER_NORM, api);
    n.a.f[0] = eps;
    dbr_tensor *in[3] = {x, gamma, beta};
    return dbr_apply(ctx, &n, beta ? 3 : gamma ? 2 : 1, in);
}

/* ---- softmax and losses --------------------------------------------------- */
static dbr_tensor *softmax_like(dbr_ctx *ctx, dbr_node n, dbr_tensor *x, int axis) {
    if (!x || ctx->bad_config) return NULL;
    int a = dbr_norm_axis(axis, x->ndim);
    if (a < 0) {
        char s[128];
        dbr_set_error(ctx, n.file, n.line, n.api, "axis %d out of range for shape %s", axis,
                      sh(x, s, sizeof s));
        return NULL;
    }
    n.a.i[0] = a;
    return run1(ctx, n, x);
}

dbr_tensor *dbr_softmax_(dbr_ctx *ctx, dbr_tensor *x, int axis, const char *file, int line) {
    return softmax_like(ctx, NODE(SOFTMAX, "dbr_softmax"), x, axis);
}
dbr_tensor *dbr_log_softmax_(dbr_ctx *ctx, dbr_tensor *x, int axis, const char *file, int line) {
    return softmax_like(ctx, NODE(LOG_SOFTMAX, "dbr_log_softmax"), x, axis);
}

/* Labels and indices are data: check their range before a kernel reads
 * memory with them. */
static bool check_index_range(dbr_ctx *ctx, const dbr_tensor *idx, int64_t limit,
                              const char *what, const char *api, const char *file, int line) {
    if (!idx->data || (idx->dtype != DBR_I32 && idx->dtype != DBR_I64)) return true;
    for (int64_t i = 0; i < idx->numel; i++) {
        int64_t v = idx->dtype == DBR_I32 ? ((const int32_t *)idx->data)[i]
                                          : ((const int64_t *)idx->data)[i];
        if (v < 0 || v >= limit) {
            dbr_set_error(ctx, file, line, api, "%s %lld at position %lld is out of range [0, %lld)",
                          what, (long long)v, (long long)i, (long long)limit);
            return false;
        }
    }
    return true;
}

dbr_tensor *dbr_cross_entropy_(dbr_ctx *ctx, dbr_tensor *logits, dbr_tensor *labels,
                               const char *file, int line) {
    const char *api = "dbr_cross_entropy";
    if (!logits || !labels || ctx->bad_config) return NULL;
    if (logits->ndim == 2 && !check_index_range(ctx, labels, logits->shape[1], "label", api, file, line))
        return NULL;
    return run2(ctx, NODE(CROSS_ENTROPY, api), logits, labels);
}

dbr_tensor *dbr_mse_(dbr_ctx *ctx, dbr_tensor *a, dbr_tensor *b, const char *file, int line) {
    const char *api = "dbr_mse";
    dbr_tensor *d = run2(ctx, NODE(SUB, api), a, b);
    dbr_tensor *d2 = run2(ctx, NODE(MUL, api), d, d);
    dbr_node m = NODE(MEAN, api);
    if (d2) m.a.i[0] = d2->ndim ? ((int64_t)1 << d2->ndim) - 1 : 0;
    dbr_tensor *out = run1(ctx, m, d2);
    dbr_drop(ctx, d);
    dbr_drop(ctx, d2);
    return out;
}

dbr_tensor *dbr_embedding_(dbr_ctx *ctx, dbr_tensor *weight, dbr_tensor *idx, const char *file,
                           int line) {
    const char *api = "dbr_embedding";
    if (!weight || !idx || ctx->bad_config) return NULL;
    if (weight->ndim == 2 && !check_index_range(ctx, idx, weight->shape[0], "index", api, file, line))
        return NULL;
    return run2(ctx, NODE(EMBEDDING, api), weight, idx);
}

/* ---- data movement ------------------------------------------------------- */
dbr_tensor *dbr_reshape_(dbr_ctx *ctx, dbr_tensor *x, int ndim, const int64_t *shape,
                         const char *file, int line) {
    const char *api = "dbr_reshape";
    if (!x || ctx->bad_config) return NULL;
    char s[128];
    if (ndim < 0 || ndim > DBR_MAX_DIMS || (ndim > 0 && !shape)) {
        dbr_set_error(ctx, file, line, api, "ndim %d out of range [0, %d]", ndim, DBR_MAX_DIMS);
        return NULL;
    }
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == -1) {
            if (infer >= 0) {
                dbr_set_error(ctx, file, line, api, "more than one -1 in the new shape of %s",
                              sh(x, s, sizeof s));
                return NULL;
            }
            infer = i;
        } else if (shape[i] < 0) {
            dbr_set_error(ctx, file, line, api, "dim %d of the new shape is %lld", i,
                          (long long)shape[i]);
            return NULL;
        } else {
            known *= shape[i];
        }
    }
    dbr_node n = NODE(RESHAPE, api);
    n.a.i[0] = ndim;
    for (int i = 0; i < ndim; i++) n.a.i[1 + i] = shape[i];
    if (infer >= 0) {
        if (known == 0 || x->numel % known) {
            dbr_set_error(ctx, file, line, api, "cannot infer the -1 dim: %s has %lld elements, "
                          "not a multiple of %lld", sh(x, s, sizeof s), (long long)x->numel,
                          (long long)known);
            return NULL;
        }
        n.a.i[1 + infer] = x->numel / known;
    }
    return run1(ctx, n, x);
}

dbr_tensor *dbr_permute_(dbr_ctx *ctx, dbr_tensor *x, int ndim, const int *perm,
                         const char *file, int line) {
    const char *api = "dbr_permute";
    if (!x || ctx->bad_config) return NULL;
    char s[128];
    if (ndim != x->ndim || (ndim > 0 && !perm)) {
        dbr_set_error(ctx, file, line, api, "permutation has %d axes, input %s has %d", ndim,
                      sh(x, s, sizeof s), x->ndim);
        return NULL;
    }
    dbr_node n = NODE(PERMUTE, api);
    n.a.i[0] = ndim;
    for (int i = 0; i < ndim; i++) {
        int a = dbr_norm_axis(perm[i], ndim);
        n.a.i[1 + i] = a < 0 ? perm[i] : a; /* shape inference names a bad entry */
    }
    return run1(ctx, n, x);
}

dbr_tensor *dbr_transpose_(dbr_ctx *ctx, dbr_tensor *x, int axis0, int axis1, const char *file,
                           int line) {
    const char *api = "dbr_transpose";
    if (!x || ctx->bad_config) return NULL;
    int a = dbr_norm_axis(axis0, x->ndim), b = dbr_norm_axis(axis1, x->ndim);
    if (a < 0 || b < 0) {
        char s[128];
        dbr_set_error(ctx, file, line, api, "axis %d out of range for shape %s",
                      a < 0 ? axis0 : axis1, sh(x, s, sizeof s));
        return NULL;
    }
    dbr_node n = NODE(PERMUTE, api);
    n.a.i[0] = x->ndim;
    for (int i = 0; i < x->ndim; i++) n.a.i[1 + i] = i == a ? b : i == b ? a : i;
    return run1(ctx, n, x);
}

dbr_tensor *dbr_slice_(dbr_ctx *ctx, dbr_tensor *x, int axis, int64_t start, int64_t stop,
                       int64_t step, const char *file, int line) {
    const char *api = "dbr_slice";
    if (!x || ctx->bad_config) return NULL;
    char s[128];
    int a = dbr_norm_axis(axis, x->ndim);
    if (a < 0) {
        dbr_set_error(ctx, file, line, api, "axis %d out of range for shape %s", axis,
                      sh(x, s, sizeof s));
        return NULL;
    }
    if (step < 1) {
        dbr_set_error(ctx, file, line, api, "step must be >= 1, got %lld", (long long)step);
        return NULL;
    }
    int64_t len = x->shape[a];
    if (start < 0) start += len;
    if (stop < 0) stop += len;
    start = start < 0 ? 0 : start > len ? len : start;
    stop = stop < start ? start : stop > len ? len : stop;
    dbr_node n = NODE(SLICE, api);
    n.a.i[0] = a;
    n.a.i[1] = start;
    n.a.i[2] = stop;
    n.a.i[3] = step;
    return run1(ctx, n, x);
}

dbr_tensor *dbr_concat_(dbr_ctx *ctx, int n_in, dbr_tensor *const *xs, int axis,
                        const char *file, int line) {
    const char *api = "dbr_concat";
    if (ctx->bad_config) return NULL;
    if (n_in < 1 || n_in > DBR_MAX_CONCAT || !xs) {
        dbr_set_error(ctx, file, line, api, "%d inputs; between 1 and %d are supported", n_in,
                      DBR_MAX_CONCAT);
        return NULL;
    }
    for (int i = 0; i < n_in; i++)
        if (!xs[i]) return NULL;
    int a = dbr_norm_axis(axis, xs[0]->ndim);
    if (a < 0) {
        char s[128];
        dbr_set_error(ctx, file, line, api, "axis %d out of range for shape %s", axis,
                      sh(xs[0], s, sizeof s));
        return NULL;
    }
    dbr_node n = NODE(CONCAT, api);
    n.a.i[0] = a;
    return dbr_apply(ctx, &n, n_in, xs);
}

dbr_tensor *dbr_broadcast_to_(dbr_ctx *ctx, dbr_tensor *x, int ndim, const int64_t *shape,
                              const char *file, int line) {
    const char *api = "dbr_broadcast_to";
    if (!x || ctx->bad_config) return NULL;
    if (ndim < 0 || ndim > DBR_MAX_DIMS || (ndim > 0 && !shape)) {
        dbr_set_error(ctx, file, line, api, "ndim %d out of range [0, %d]", ndim, DBR_MAX_DIMS);
        return NULL;
    }
    dbr_node n = NODE(BROADCAST_TO, api);
    n.a.i[0] = ndim;
    for (int i = 0; i < ndim; i++) n.a.i[1 + i] = shape[i];
    return run1(ctx, n, x);
}

dbr_tensor *dbr_dropout_(dbr_ctx *ctx, dbr_tensor *x, double p, const char *file, int line) {
    const char *api = "dbr_dropout";
    if (!x || ctx->bad_config) return NULL;
    if (!(p >= 0 && p < 1)) {
        dbr_set_error(ctx, file, line, api, "p must be in [0, 1), got %g", p);
        return NULL;
    }
    if (!ctx->training || p == 0) return x;
    dbr_node n = NODE(DROPOUT, api);
    n.a.f[0] = p;
    /* keyed by (seed, step, call index): a recomputation draws the same mask */
    n.a.i[1] = ctx->rand_calls++;
    /* compiled plans rekey every step from i1; the graph keeps no key */
    n.a.i[0] = ctx->cfg.mode == DBR_MODE_EAGER
                   ? (int64_t)dbr_rand_op_key(ctx->cfg.seed, (uint64_t)ctx->step, (uint64_t)n.a.i[1])
                   : 0;
    return run1(ctx, n, x);
}
