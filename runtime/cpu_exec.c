/* cpu_exec.c: runs one IR node on the CPU by calling the kernel library:
 * unpacks shapes and attributes, picks the dtype variant. The float-op
 * dispatcher after #else is compiled once per float type (self-include). */
#ifndef T
#include "runtime/runtime.h"

#include "codegen/lower.h"
#include "kernels/cpu/kernels.h"
#include "runtime/pool.h"

#include <cblas.h>
#include <string.h>

/* Declared again in case cblas.h comes from a BLAS other than OpenBLAS;
 * linking needs OpenBLAS anyway. */
void openblas_set_num_threads(int num_threads);

void dbr_cpu_set_threads(int threads) {
    if (threads > 0) openblas_set_num_threads(threads);
    dbr_pool_set_threads(threads);
}

static int64_t numel_of(const dbr_tinfo *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* Product of dims [lo, hi) of t. */
static int64_t dims_prod(const dbr_tinfo *t, int lo, int hi) {
    int64_t n = 1;
    for (int d = lo; d < hi; d++) n *= t->shape[d];
    return n;
}

static int index_is_i64(int32_t dt, int *ok) {
    *ok = dt == DT_I32 || dt == DT_I64;
    return dt == DT_I64;
}

static uint32_t axes_of(const dbr_node *n) {
    const int nd = n->in[0].ndim;
    const uint32_t all = nd >= 32 ? ~0u : (1u << nd) - 1u;
    return (uint32_t)n->a.i[0] & all;
}

static dbr_k_conv conv_params(const dbr_tinfo *x, const dbr_tinfo *w, const dbr_tinfo *y,
                              const dbr_attrs *a) {
    dbr_k_conv p = {
        .N = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3],
        .O = w->shape[0], .KH = w->shape[2], .KW = w->shape[3],
        .OH = y->shape[2], .OW = y->shape[3],
        .sh = a->i[0], .sw = a->i[1], .ph = a->i[2], .pw = a->i[3],
        .dh = a->i[4], .dw = a->i[5], .groups = a->i[6] > 0 ? a->i[6] : 1,
    };
    return p;
}

/* x [..., H, W] pooled to y [..., OH, OW]. */
static dbr_k_pool pool_params(const dbr_tinfo *x, const dbr_tinfo *y, const dbr_attrs *a) {
    const int nd = x->ndim;
    dbr_k_pool p = {
        .NC = dims_prod(x, 0, nd - 2), .H = x->shape[nd - 2], .W = x->shape[nd - 1],
        .OH = y->shape[nd - 2], .OW = y->shape[nd - 1],
        .k = a->i[0], .s = a->i[1] > 0 ? a->i[1] : a->i[0], .pad = a->i[2],
    };
    return p;
}

/* x viewed as [A, L, B] around `axis`. */
static void split_at(const dbr_tinfo *t, int axis, int64_t *A, int64_t *L, int64_t *B) {
    if (t->ndim == 0) {
        *A = *L = *B = 1;
        return;
    }
    *A = dims_prod(t, 0, axis);
    *L = t->shape[axis];
    *B = dims_prod(t, axis + 1, t->ndim);
}

static dbr_k_unop unop_of(dbr_op op) {
    switch (op) {
    case DBR_OP_NEG: return DBR_K_NEG;
    case DBR_OP_EXP: return DBR_K_EXP;
    case DBR_OP_LOG: return DBR_K_LOG;
    case DBR_OP_SQRT: return DBR_K_SQRT;
    case DBR_OP_RSQRT: return DBR_K_RSQRT;
    case DBR_OP_POW: return DBR_K_POW;
    case DBR_OP_ABS: return DBR_K_ABS;
    case DBR_OP_SIGN: return DBR_K_SIGN;
    case DBR_OP_TANH: return DBR_K_TANH;
    case DBR_OP_SIGMOID: return DBR_K_SIGMOID;
    case DBR_OP_RELU: return DBR_K_RELU;
    case DBR_OP_LEAKY_RELU: return DBR_K_LEAKY_RELU;
    case DBR_OP_GELU: return DBR_K_GELU;
    case DBR_OP_SILU: return DBR_K_SILU;
    default: return DBR_K_UNOP_COUNT;
    }
}

static dbr_k_binop binop_of(dbr_op op) {
    switch (op) {
    case DBR_OP_ADD: return DBR_K_ADD;
    case DBR_OP_SUB: return DBR_K_SUB;
    case DBR_OP_MUL: return DBR_K_MUL;
    case DBR_OP_DIV: return DBR_K_DIV;
    case DBR_OP_RELU_BWD: return DBR_K_RELU_BWD;
    case DBR_OP_LEAKY_RELU_BWD: return DBR_K_LEAKY_RELU_BWD;
    case DBR_OP_GELU_BWD: return DBR_K_GELU_BWD;
    case DBR_OP_SILU_BWD: return DBR_K_SILU_BWD;
    default: return DBR_K_BINOP_COUNT;
    }
}

/* Inputs that hold indices or masks rather than values of the op's float
 * type. */
static bool is_index_input(dbr_op op, int i) {
    switch (op) {
    case DBR_OP_WHERE: return i == 0;
    case DBR_OP_CROSS_ENTROPY:
    case DBR_OP_CROSS_ENTROPY_BWD:
    case DBR_OP_EMBEDDING: return i == 1;
    case DBR_OP_EMBEDDING_BWD: return i == 0;
    default: return false;
    }
}

/* Ops that only move bytes and so take any dtype. */
static int exec_move(const dbr_node *n, const void *const in[], void *out, size_t es) {
    const dbr_attrs *a = &n->a;
    switch (n->op) {
    case DBR_OP_RESHAPE:
        if (out != in[0]) memcpy(out, in[0], (size_t)numel_of(&n->out) * es);
        return 0;
    case DBR_OP_PERMUTE:
        dbr_k_permute(out, in[0], es, n->in[0].ndim, n->in[0].shape, &a->i[1]);
        return 0;
    case DBR_OP_SLICE: {
        int64_t A, L, B;
        split_at(&n->in[0], (int)a->i[0], &A, &L, &B);
        const int64_t Lo = n->out.ndim ? n->out.shape[a->i[0]] : 1;
        dbr_k_slice(out, in[0], es, A, L, B, a->i[1], a->i[3], Lo);
        return 0;
    }
    case DBR_OP_SLICE_BWD: {
        int64_t A, Lo, B;
        split_at(&n->in[0], (int)a->i[0], &A, &Lo, &B);
        dbr_k_slice_bwd(out, in[0], es, A, a->i[4], B, a->i[1], a->i[3], Lo);
        return 0;
    }
    case DBR_OP_CONCAT: {
        int64_t A, Lt, B, L[DBR_MAX_SRC];
        split_at(&n->out, (int)a->i[0], &A, &Lt, &B);
        for (int i = 0; i < n->n_in; i++) L[i] = n->in[i].ndim ? n->in[i].shape[a->i[0]] : 1;
        dbr_k_concat(out, n->n_in, in, L, es, A, B);
        return 0;
    }
    case DBR_OP_BROADCAST_TO:
        dbr_k_broadcast(out, n->out.ndim, n->out.shape, in[0], n->in[0].ndim, n->in[0].shape, es);
        return 0;
    case DBR_OP_EMBEDDING: {
        int ok;
        const int i64 = index_is_i64(n->in[1].dtype, &ok);
        if (!ok || n->in[0].ndim != 2) return -1;
        dbr_k_embedding_fwd(out, in[0], es, in[1], i64, numel_of(&n->in[1]), n->in[0].shape[0],
                            n->in[0].shape[1]);
        return 0;
    }
    default: return 1; /* not a movement op */
    }
}

/* A library kernel split across the pool by rows (or, for dropout, by
 * blocks of 4 elements); rc is set when a slice fails. */
typedef struct split_job {
    const dbr_node *n;
    const void *const *in;
    void *out;
    int64_t count, L, B;
    int rc;
} split_job;

static int64_t grain_for(int64_t per_unit) {
    return per_unit >= 32768 ? 1 : 32768 / (per_unit > 0 ? per_unit : 1);
}

#define T float
#define F(name) name##_f32
#include "cpu_exec.c"
#undef T
#undef F
#define T double
#define F(name) name##_f64
#include "cpu_exec.c"
#undef T
#undef F

/* Optimizer updates write their parameter and state inputs in place (they
 * are bound to persistent memory); the output is a [] token set to 0. */
static void update_slice(void *ctx, int64_t b, int64_t e) {
    split_job *j = ctx;
    const dbr_node *n = j->n;
    const int32_t dt = n->in[0].dtype;
    const size_t es = dbr_dt_size(dt);
    const dbr_attrs *a = &n->a;
    const int64_t cnt = e - b;
#define AT(i) ((char *)j->in[i] + (size_t)b * es)
    void *p = AT(0), *s1 = n->n_in > 2 ? AT(2) : NULL, *s2 = n->n_in > 3 ? AT(3) : NULL;
    const void *g = AT(1);
#undef AT
    double wd;
    switch (n->op) {
    case DBR_OP_SGD_UPDATE: dbr_cpu_sgd(dt, cnt, p, g, a->f[0], a->f[1]); break;
    case DBR_OP_MOMENTUM_UPDATE:
        dbr_cpu_momentum(dt, cnt, p, g, s1, a->f[0], a->f[1], a->f[2], (int)a->i[0]);
        break;
    case DBR_OP_ADAM_UPDATE:
        memcpy(&wd, &a->i[2], sizeof wd);
        dbr_cpu_adam(dt, cnt, p, g, s1, s2, a->f[0], a->f[1], a->f[2], a->f[3], wd, (int)a->i[0],
                     a->i[1]);
        break;
    default: j->rc = -1;
    }
}

static int exec_update(const dbr_node *n, const void *const in[], void *out) {
    const int32_t dt = n->in[0].dtype;
    int64_t cnt = 1;
    for (int d = 0; d < n->in[0].ndim; d++) cnt *= n->in[0].shape[d];
    split_job j = {.n = n, .in = in};
    dbr_parallel_range(cnt, 32768, update_slice, &j);
    if (j.rc) return -1;
    if (dt == DT_F32) *(float *)out = 0;
    else *(double *)out = 0;
    return 0;
}

/* A fused group: its generated kernel, split across the pool in slices of
 * at least ~32K elements read. */
typedef struct fused_job {
    dbr_kfn fn;
    void *args[DBR_KD_MAX_IN + 1];
} fused_job;

static void fused_slice(void *ctx, int64_t b, int64_t e) {
    const fused_job *j = ctx;
    j->fn(j->args, b, e);
}

static int exec_fused(const dbr_node *n, const void *const in[], void *out) {
    const dbr_kdesc *kd;
    fused_job j;
    char err[256];
    if (dbr_cg_fused_cpu(n->a.i[0], &kd, &j.fn, err, sizeof err)) return -1;
    for (int i = 0; i < kd->n_in; i++) j.args[i] = (void *)in[i];
    j.args[kd->n_in] = out;
    dbr_parallel_range(dbr_kdesc_out_numel(kd), grain_for(dbr_kdesc_red_numel(kd)), fused_slice,
                       &j);
    return 0;
}

int dbr_cpu_exec(const dbr_node *n, const void *const in[], void *out) {
    if (dbr_ops[n->op].cat == DBR_CAT_OPTIM) return exec_update(n, in, out);
    if (n->op == DBR_OP_FUSED) return exec_fused(n, in, out);
    const size_t es = dbr_dt_size(n->out.dtype);
    if (es == 0) return -1;
    for (int i = 0; i < n->n_in; i++)
        if (!is_index_input(n->op, i) && n->in[i].dtype != n->out.dtype) return -1;
    int r = exec_move(n, in, out, es);
    if (r <= 0) return r;
    switch (n->out.dtype) {
    case DT_F32: return exec_float_f32(n, in, out);
    case DT_F64: return exec_float_f64(n, in, out);
    default: return -1;
    }
}

#else

/* rows [b, e) of x [R, D] */
static void F(layer_norm_slice)(void *ctx, int64_t b, int64_t e) {
    const split_job *j = ctx;
    const dbr_node *n = j->n;
    const int64_t D = j->L, o = b * D;
    const T *x = (const T *)j->in[0] + o;
    T *y = (T *)j->out + o;
    if (n->op == DBR_OP_LAYER_NORM)
        F(dbr_k_layer_norm_fwd)(y, x, n->n_in > 1 ? j->in[1] : NULL, n->n_in > 2 ? j->in[2] : NULL,
                                e - b, D, n->a.f[0]);
    else
        F(dbr_k_layer_norm_bwd)(y, x, (const T *)j->in[1] + o, n->n_in > 2 ? j->in[2] : NULL,
                                e - b, D, n->a.f[0]);
}

/* rows [b, e) of the A in [A, L, B] */
static void F(softmax_slice)(void *ctx, int64_t b, int64_t e) {
    split_job *j = ctx;
    const int64_t o = b * j->L * j->B;
    if (F(dbr_k_softmax)((T *)j->out + o, (const T *)j->in[0] + o, e - b, j->L, j->B,
                         j->n->op == DBR_OP_LOG_SOFTMAX))
        j->rc = -1;
}

/* columns [b, e) of a sum or mean of x [R, C] over R: each column adds its
 * rows in order in double, as dbr_k_reduce does */
static void F(colsum_slice)(void *ctx, int64_t b, int64_t e) {
    split_job *j = ctx;
    const int64_t R = j->L, C = j->count, w = e - b;
    double *acc = dbr_k_scratch((size_t)w * sizeof(double));
    if (!acc) {
        j->rc = -1;
        return;
    }
    memset(acc, 0, (size_t)w * sizeof(double));
    const T *x = (const T *)j->in[0] + b;
    for (int64_t r = 0; r < R; r++, x += C)
        for (int64_t c = 0; c < w; c++) acc[c] += (double)x[c];
    T *y = (T *)j->out + b;
    const double cnt = (double)R;
    if (j->n->op == DBR_OP_MEAN)
        for (int64_t c = 0; c < w; c++) y[c] = (T)(acc[c] / cnt);
    else
        for (int64_t c = 0; c < w; c++) y[c] = (T)acc[c];
}

/* blocks of 4 elements [b, e): each draws one Philox block */
static void F(dropout_slice)(void *ctx, int64_t b, int64_t e) {
    const split_job *j = ctx;
    const int64_t i0 = 4 * b, i1 = 4 * e < j->count ? 4 * e : j->count;
    F(dbr_k_dropout)((T *)j->out + i0, (const T *)j->in[0] + i0, i1 - i0, j->n->a.f[0],
                     (uint64_t)j->n->a.i[0], i0);
}

static int F(exec_float)(const dbr_node *n, const void *const in[], void *out) {
    const dbr_attrs *a = &n->a;
    const dbr_tinfo *ti = n->in, *to = &n->out;
    T *y = out;
#define X_(i) ((const T *)in[i])
    switch (n->op) {
    case DBR_OP_NEG: case DBR_OP_EXP: case DBR_OP_LOG: case DBR_OP_SQRT: case DBR_OP_RSQRT:
    case DBR_OP_POW: case DBR_OP_ABS: case DBR_OP_SIGN: case DBR_OP_TANH: case DBR_OP_SIGMOID:
    case DBR_OP_RELU: case DBR_OP_LEAKY_RELU: case DBR_OP_GELU: case DBR_OP_SILU: {
        const int64_t ny = numel_of(to);
        const T *x = X_(0);
        if (numel_of(&ti[0]) != ny) {
            /* Never made by shape inference; broadcast first, then map in place. */
            dbr_k_broadcast(y, to->ndim, to->shape, x, ti[0].ndim, ti[0].shape, sizeof(T));
            x = y;
        }
        F(dbr_k_unary)(unop_of(n->op), a->f[0], ny, y, x);
        return 0;
    }
    case DBR_OP_ADD: case DBR_OP_SUB: case DBR_OP_MUL: case DBR_OP_DIV:
    case DBR_OP_RELU_BWD: case DBR_OP_LEAKY_RELU_BWD: case DBR_OP_GELU_BWD: case DBR_OP_SILU_BWD:
        F(dbr_k_binary)(binop_of(n->op), a->f[0], y, to->ndim, to->shape, X_(0), ti[0].ndim,
                        ti[0].shape, X_(1), ti[1].ndim, ti[1].shape);
        return 0;
    case DBR_OP_WHERE: {
        dbr_k_mask mt;
        switch (ti[0].dtype) {
        case DT_F32: mt = DBR_K_MASK_F32; break;
        case DT_F64: mt = DBR_K_MASK_F64; break;
        case DT_I32: mt = DBR_K_MASK_I32; break;
        case DT_I64: mt = DBR_K_MASK_I64; break;
        default: return -1;
        }
        F(dbr_k_where)(y, to->ndim, to->shape, in[0], mt, ti[0].ndim, ti[0].shape, X_(1),
                       ti[1].ndim, ti[1].shape, X_(2), ti[2].ndim, ti[2].shape);
        return 0;
    }
    case DBR_OP_SUM: case DBR_OP_MEAN: case DBR_OP_MAX: {
        const uint32_t ax = axes_of(n);
        const int k = __builtin_popcount(ax);
        if (n->op != DBR_OP_MAX && k > 0 && k < ti[0].ndim && ax == (1u << k) - 1u) {
            /* over leading axes (a bias's gradient): [R, C] -> [C], split by columns */
            split_job j = {.n = n, .in = in, .out = out, .L = dims_prod(&ti[0], 0, k),
                           .count = dims_prod(&ti[0], k, ti[0].ndim)};
            if (j.L > 0 && j.count > 0) {
                dbr_parallel_range(j.count, grain_for(j.L), F(colsum_slice), &j);
                return j.rc;
            }
        }
        const dbr_k_redop r = n->op == DBR_OP_SUM    ? DBR_K_RED_SUM
                              : n->op == DBR_OP_MEAN ? DBR_K_RED_MEAN
                                                     : DBR_K_RED_MAX;
        return F(dbr_k_reduce)(r, y, X_(0), ti[0].ndim, ti[0].shape, axes_of(n));
    }
    case DBR_OP_MAX_BWD:
        return F(dbr_k_max_bwd)(y, X_(0), X_(1), X_(2), ti[0].ndim, ti[0].shape, axes_of(n));
    case DBR_OP_MATMUL:
        if (ti[0].ndim < 2 || ti[1].ndim < 2) return -1;
        F(dbr_k_matmul)(y, to->ndim, to->shape, X_(0), ti[0].ndim, ti[0].shape, (int)a->i[0],
                        X_(1), ti[1].ndim, ti[1].shape, (int)a->i[1]);
        return 0;
    case DBR_OP_CONV2D: {
        const dbr_k_conv p = conv_params(&ti[0], &ti[1], to, a);
        return F(dbr_k_conv2d_fwd)(y, X_(0), X_(1), &p);
    }
    case DBR_OP_CONV2D_BWD_DATA: {
        const dbr_k_conv p = conv_params(to, &ti[1], &ti[0], a);
        return F(dbr_k_conv2d_bwd_data)(y, X_(0), X_(1), &p);
    }
    case DBR_OP_CONV2D_BWD_WEIGHT: {
        const dbr_k_conv p = conv_params(&ti[0], to, &ti[1], a);
        return F(dbr_k_conv2d_bwd_weight)(y, X_(0), X_(1), &p);
    }
    case DBR_OP_MAX_POOL2D: {
        const dbr_k_pool p = pool_params(&ti[0], to, a);
        F(dbr_k_max_pool2d_fwd)(y, X_(0), &p);
        return 0;
    }
    case DBR_OP_MAX_POOL2D_BWD: {
        const dbr_k_pool p = pool_params(&ti[0], &ti[1], a);
        F(dbr_k_max_pool2d_bwd)(y, X_(0), X_(1), &p);
        return 0;
    }
    case DBR_OP_AVG_POOL2D: {
        const dbr_k_pool p = pool_params(&ti[0], to, a);
        F(dbr_k_avg_pool2d_fwd)(y, X_(0), &p);
        return 0;
    }
    case DBR_OP_AVG_POOL2D_BWD: {
        const dbr_k_pool p = pool_params(to, &ti[0], a);
        F(dbr_k_avg_pool2d_bwd)(y, X_(0), &p);
        return 0;
    }
    case DBR_OP_BATCH_NORM:
    case DBR_OP_BATCH_NORM_BWD:
    case DBR_OP_BN_STATS: {
        const int64_t N = ti[0].shape[0], C = ti[0].ndim > 1 ? ti[0].shape[1] : 1;
        const int64_t S = dims_prod(&ti[0], 2, ti[0].ndim);
        if (n->op == DBR_OP_BN_STATS) {
            F(dbr_k_bn_stats)(y, X_(0), N, C, S);
        } else if (n->op == DBR_OP_BATCH_NORM) {
            F(dbr_k_batch_norm_fwd)(y, X_(0), n->n_in > 1 ? X_(1) : NULL,
                                    n->n_in > 2 ? X_(2) : NULL, N, C, S, a->f[0]);
        } else {
            F(dbr_k_batch_norm_bwd)(y, X_(0), X_(1), n->n_in > 2 ? X_(2) : NULL, N, C, S, a->f[0]);
        }
        return 0;
    }
    case DBR_OP_LAYER_NORM:
    case DBR_OP_LAYER_NORM_BWD: {
        const int64_t D = ti[0].ndim ? ti[0].shape[ti[0].ndim - 1] : 1;
        split_job j = {.n = n, .in = in, .out = out, .count = D ? numel_of(&ti[0]) / D : 0, .L = D};
        dbr_parallel_range(j.count, grain_for(D), F(layer_norm_slice), &j);
        return 0;
    }
    case DBR_OP_SOFTMAX:
    case DBR_OP_LOG_SOFTMAX: {
        split_job j = {.n = n, .in = in, .out = out};
        split_at(&ti[0], (int)a->i[0], &j.count, &j.L, &j.B);
        dbr_parallel_range(j.count, grain_for(j.L * j.B), F(softmax_slice), &j);
        return j.rc;
    }
    case DBR_OP_CROSS_ENTROPY:
    case DBR_OP_CROSS_ENTROPY_BWD: {
        int ok;
        const int i64 = index_is_i64(ti[1].dtype, &ok);
        if (!ok || ti[0].ndim != 2) return -1;
        const int64_t N = ti[0].shape[0], C = ti[0].shape[1];
        if (n->op == DBR_OP_CROSS_ENTROPY)
            F(dbr_k_cross_entropy_fwd)(y, X_(0), in[1], i64, N, C);
        else
            F(dbr_k_cross_entropy_bwd)(y, X_(0), in[1], i64, X_(2), N, C);
        return 0;
    }
    case DBR_OP_EMBEDDING_BWD: {
        int ok;
        const int i64 = index_is_i64(ti[0].dtype, &ok);
        if (!ok || to->ndim != 2) return -1;
        F(dbr_k_embedding_bwd)(y, in[0], i64, X_(1), numel_of(&ti[0]), to->shape[0], to->shape[1]);
        return 0;
    }
    case DBR_OP_DROPOUT: {
        split_job j = {.n = n, .in = in, .out = out, .count = numel_of(to)};
        dbr_parallel_range((j.count + 3) / 4, 8192, F(dropout_slice), &j);
        return 0;
    }
    default: return -1;
    }
#undef X_
}

#endif
