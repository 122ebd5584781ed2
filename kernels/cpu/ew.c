/* ew.c: element-wise CPU kernels: unary maps, broadcast binary ops and
 * derivative helpers, where, dropout. The body after #else is compiled once
 * per float type: the file includes itself with T and F(name) defined. */
#ifndef T
#include "kernels/cpu/kernels.h"
#include "kernels/philox.h"

#include <string.h>
#include <tgmath.h>

#include "kernels/vmath.h"

#define T float
#define F(name) name##_f32
#include "ew.c"
#undef T
#undef F
#define T double
#define F(name) name##_f64
#include "ew.c"
#undef T
#undef F

#else

/* Inputs are not restrict: the executor may run an op in place (y == x),
 * and the compilers' runtime overlap checks keep such loops correct. */
void F(dbr_k_unary)(dbr_k_unop op, double p, int64_t n, T *y, const T *x) {
    const T pv = (T)p;
    const T half = (T)0.5, one = (T)1, zero = (T)0;
    const T c_gelu = (T)0.7978845608028654, k_gelu = (T)0.044715;
#define UN(EXPR)                                                                                  \
    for (int64_t i = 0; i < n; i++) {                                                             \
        const T v = x[i];                                                                         \
        y[i] = (EXPR);                                                                            \
    }                                                                                             \
    break
    switch (op) {
    case DBR_K_NEG: UN(-v);
    case DBR_K_EXP: UN(DBR_VEXP(v));
    case DBR_K_LOG: UN(log(v));
    case DBR_K_SQRT: UN(sqrt(v));
    case DBR_K_RSQRT: UN(one / sqrt(v));
    case DBR_K_POW:
        if (p == 2.0) {
            UN(v * v);
        } else if (p == 1.0) {
            UN(v);
        } else {
            UN(pow(v, pv));
        }
    case DBR_K_ABS: UN(fabs(v));
    case DBR_K_SIGN: UN(v > zero ? one : v < zero ? -one : v);
    case DBR_K_TANH: UN(DBR_VTANH(v));
    case DBR_K_SIGMOID: UN(one / (one + DBR_VEXP(-v)));
    case DBR_K_RELU: UN(v > zero ? v : zero);
    case DBR_K_LEAKY_RELU: UN(v > zero ? v : v * pv);
    case DBR_K_GELU: UN(half * v * (one + DBR_VTANH(c_gelu * (v + k_gelu * v * v * v))));
    case DBR_K_SILU: UN(v / (one + DBR_VEXP(-v)));
    case DBR_K_COPY:
        if (y != x) memmove(y, x, (size_t)n * sizeof(T));
        break;
    case DBR_K_UNOP_COUNT: break;
    }
#undef UN
}

/* d/dx of 0.5x(1 + tanh(c(x + k x^3))) */
static inline T F(gelu_grad)(T x) {
    const T c = (T)0.7978845608028654, k = (T)0.044715, half = (T)0.5, one = (T)1;
    const T t = DBR_VTANH(c * (x + k * x * x * x));
    return half * (one + t) + half * x * (one - t * t) * c * (one + (T)3 * k * x * x);
}

/* d/dx of x sigmoid(x) = s (1 + x (1 - s)) */
static inline T F(silu_grad)(T x) {
    const T one = (T)1;
    const T s = one / (one + DBR_VEXP(-x));
    return s * (one + x * (one - s));
}

/* One contiguous run of a broadcast binary op: sa and sb (0 or 1) say
 * whether a and b advance along it. The op switch runs once per run, never
 * per element. */
static void F(bin_run)(dbr_k_binop op, T p, int64_t n, T *o, const T *a, int64_t sa, const T *b,
                       int64_t sb) {
    const T zero = (T)0;
#define BIN(EXPR)                                                                                 \
    if (sa && sb) {                                                                               \
        for (int64_t i = 0; i < n; i++) {                                                         \
            const T u = a[i], v = b[i];                                                           \
            o[i] = (EXPR);                                                                        \
        }                                                                                         \
    } else if (sa) {                                                                              \
        const T v = b[0];                                                                         \
        for (int64_t i = 0; i < n; i++) {                                                         \
            const T u = a[i];                                                                     \
            o[i] = (EXPR);                                                                        \
        }                                                                                         \
    } else if (sb) {                                                                              \
        const T u = a[0];                                                                         \
        for (int64_t i = 0; i < n; i++) {                                                         \
            const T v = b[i];                                                                     \
            o[i] = (EXPR);                                                                        \
        }                                                                                         \
    } else {                                                                                      \
        const T u = a[0], v = b[0];                                                               \
        const T r = (EXPR);                                                                       \
        for (int64_t i = 0; i < n; i++) o[i] = r;                                                 \
    }                                                                                             \
    break
    switch (op) {
    case DBR_K_ADD: BIN(u + v);
    case DBR_K_SUB: BIN(u - v);
    case DBR_K_MUL: BIN(u * v);
    case DBR_K_DIV: BIN(u / v);
    /* (y, gy): a select, as PyTorch's threshold_backward, so a NaN in gy
     * where y <= 0 stays out of the gradient. */
    case DBR_K_RELU_BWD: BIN(u > zero ? v : zero);
    case DBR_K_LEAKY_RELU_BWD: BIN(u > zero ? v : v * p);
    case DBR_K_GELU_BWD: BIN(v * F(gelu_grad)(u));
    case DBR_K_SILU_BWD: BIN(v * F(silu_grad)(u));
    case DBR_K_BINOP_COUNT: break;
    }
#undef BIN
}

void F(dbr_k_binary)(dbr_k_binop op, double p, T *y, int ndim, const int64_t *shape, const T *a,
                     int a_ndim, const int64_t *a_shape, const T *b, int b_ndim,
                     const int64_t *b_shape) {
    dbr_k_iter it;
    const int nd[2] = {a_ndim, b_ndim};
    const int64_t *const sh[2] = {a_shape, b_shape};
    dbr_k_iter_init(&it, ndim, shape, 2, nd, sh);
    if (it.numel == 0) return;
    const int last = it.ndim - 1;
    const int64_t inner = it.shape[last], outer = it.numel / inner;
    const int64_t sa = it.stride[0][last], sb = it.stride[1][last];
    int64_t idx[DBR_K_MAX_DIMS] = {0}, off[2] = {0, 0};
    for (int64_t s = 0; s < outer; s++) {
        F(bin_run)(op, (T)p, inner, y + s * inner, a + off[0], sa, b + off[1], sb);
        dbr_k_iter_next(&it, idx, off);
    }
}

void F(dbr_k_where)(T *y, int ndim, const int64_t *shape, const void *m, dbr_k_mask mt,
                    int m_ndim, const int64_t *m_shape, const T *a, int a_ndim,
                    const int64_t *a_shape, const T *b, int b_ndim, const int64_t *b_shape) {
    dbr_k_iter it;
    const int nd[3] = {m_ndim, a_ndim, b_ndim};
    const int64_t *const sh[3] = {m_shape, a_shape, b_shape};
    dbr_k_iter_init(&it, ndim, shape, 3, nd, sh);
    if (it.numel == 0) return;
    const int last = it.ndim - 1;
    const int64_t inner = it.shape[last], outer = it.numel / inner;
    const int64_t sm = it.stride[0][last], sa = it.stride[1][last], sb = it.stride[2][last];
    int64_t idx[DBR_K_MAX_DIMS] = {0}, off[3] = {0, 0, 0};
    for (int64_t s = 0; s < outer; s++) {
        T *o = y + s * inner;
        const T *ar = a + off[1], *br = b + off[2];
#define WHERE_RUN(MT)                                                                             \
    do {                                                                                          \
        const MT *mr = (const MT *)m + off[0];                                                    \
        for (int64_t i = 0; i < inner; i++) o[i] = mr[i * sm] != 0 ? ar[i * sa] : br[i * sb];     \
    } while (0)
        switch (mt) {
        case DBR_K_MASK_F32: WHERE_RUN(float); break;
        case DBR_K_MASK_F64: WHERE_RUN(double); break;
        case DBR_K_MASK_I32: WHERE_RUN(int32_t); break;
        case DBR_K_MASK_I64: WHERE_RUN(int64_t); break;
        }
#undef WHERE_RUN
        dbr_k_iter_next(&it, idx, off);
    }
}

/* One Philox block gives the words of four consecutive elements, exactly
 * as dbr_rng_u32(key, i) would one at a time. */
void F(dbr_k_dropout)(T *y, const T *x, int64_t n, double p, uint64_t key, int64_t first) {
    if (p <= 0.0) {
        if (y != x) memmove(y, x, (size_t)n * sizeof(T));
        return;
    }
    const T scale = p < 1.0 ? (T)(1.0 / (1.0 - p)) : (T)0;
    /* u01(w) >= p exactly when the 24 bits u01 keeps reach ceil(p 2^24)
     * (p 2^24 is exact in double): integer compares, vectorized */
    const double thr_d = ceil(p * 16777216.0);
    const uint32_t thr = thr_d > 16777216.0 ? 16777217u : (uint32_t)thr_d;
    int64_t i0 = 0;
    for (; i0 + 4 * DBR_PHILOX_LANES <= n; i0 += 4 * DBR_PHILOX_LANES) {
        uint32_t w[4 * DBR_PHILOX_LANES];
        dbr_philox4x32_lanes(key, (uint64_t)(first + i0) >> 2, w);
        for (int k = 0; k < 4 * DBR_PHILOX_LANES; k++)
            y[i0 + k] = (w[k] >> 8) >= thr ? x[i0 + k] * scale : (T)0;
    }
    for (; i0 < n; i0 += 4) {
        uint32_t w[4];
        dbr_philox4x32(key, (uint64_t)(first + i0) >> 2, w);
        const int64_t m = n - i0 < 4 ? n - i0 : 4;
        for (int64_t j = 0; j < m; j++)
            y[i0 + j] = dbr_rng_u01(w[j]) >= p ? x[i0 + j] * scale : (T)0;
    }
}

#endif
