/* softmax.c: softmax and log-softmax over any axis, cross-entropy with
 * integer labels, and embedding lookups with their scatter-add gradient.
 * The body after #else is compiled once per float type (self-include). */
#ifndef T
#include "kernels/cpu/kernels.h"

#include <string.h>
#include <tgmath.h>

static inline int64_t index_at(const void *idx, int i64, int64_t i) {
    return i64 ? ((const int64_t *)idx)[i] : (int64_t)((const int32_t *)idx)[i];
}

void dbr_k_embedding_fwd(void *y, const void *w, size_t esize, const void *idx, int idx_i64,
                         int64_t n, int64_t V, int64_t D) {
    const size_t row = (size_t)D * esize;
    for (int64_t i = 0; i < n; i++) {
        const int64_t v = index_at(idx, idx_i64, i);
        char *dst = (char *)y + (size_t)i * row;
        if (v >= 0 && v < V)
            memcpy(dst, (const char *)w + (size_t)v * row, row);
        else
            memset(dst, 0, row);
    }
}

#define T float
#define F(name) name##_f32
#include "softmax.c"
#undef T
#undef F
#define T double
#define F(name) name##_f64
#include "softmax.c"
#undef T
#undef F

#else

/* Softmax of one contiguous row (B == 1). y may equal x. */
static void F(softmax_row)(T *y, const T *x, int64_t L, int log_) {
    T m = (T)-INFINITY;
    for (int64_t l = 0; l < L; l++) m = x[l] > m ? x[l] : m;
    double s = 0;
    if (log_) {
        for (int64_t l = 0; l < L; l++) s += (double)exp(x[l] - m);
        const T ls = (T)log(s);
        for (int64_t l = 0; l < L; l++) y[l] = (x[l] - m) - ls;
    } else {
        for (int64_t l = 0; l < L; l++) {
            const T e = exp(x[l] - m);
            y[l] = e;
            s += (double)e;
        }
        const T inv = (T)(1.0 / s);
        for (int64_t l = 0; l < L; l++) y[l] *= inv;
    }
}

/* Softmax down the columns of [L, B] blocks: each pass runs along rows of
 * B contiguous elements so it vectorizes, with per-column max and sum kept
 * in scratch. */
int F(dbr_k_softmax)(T *y, const T *x, int64_t A, int64_t L, int64_t B, int log_) {
    if (B == 1) {
        for (int64_t a = 0; a < A; a++) F(softmax_row)(y + a * L, x + a * L, L, log_);
        return 0;
    }
    double *sum = dbr_k_scratch((size_t)B * (sizeof(double) + 2 * sizeof(T)));
    if (!sum && B > 0) return -1;
    T *mx = (T *)(sum + B), *fin = mx + B; /* per column: max, then 1/sum or log(sum) */
    for (int64_t a = 0; a < A; a++) {
        const T *xa = x + a * L * B;
        T *ya = y + a * L * B;
        for (int64_t b = 0; b < B; b++) {
            mx[b] = (T)-INFINITY;
            sum[b] = 0;
        }
        for (int64_t l = 0; l < L; l++) {
            const T *xr = xa + l * B;
            for (int64_t b = 0; b < B; b++) mx[b] = xr[b] > mx[b] ? xr[b] : mx[b];
        }
        for (int64_t l = 0; l < L; l++) {
            const T *xr = xa + l * B;
            T *yr = ya + l * B;
            if (log_) {
                for (int64_t b = 0; b < B; b++) sum[b] += (double)exp(xr[b] - mx[b]);
            } else {
                for (int64_t b = 0; b < B; b++) {
                    const T e = exp(xr[b] - mx[b]);
                    yr[b] = e;
                    sum[b] += (double)e;
                }
            }
        }
        if (log_) {
            for (int64_t b = 0; b < B; b++) fin[b] = (T)log(sum[b]);
            for (int64_t l = 0; l < L; l++) {
                const T *xr = xa + l * B;
                T *yr = ya + l * B;
                for (int64_t b = 0; b < B; b++) yr[b] = (xr[b] - mx[b]) - fin[b];
            }
        } else {
            for (int64_t b = 0; b < B; b++) fin[b] = (T)(1.0 / sum[b]);
            for (int64_t l = 0; l < L; l++) {
                T *yr = ya + l * B;
                for (int64_t b = 0; b < B; b++) yr[b] *= fin[b];
            }
        }
    }
    return 0;
}

/* Row max and sum of exp(x - max) for one row of logits. */
static void F(row_lse)(const T *x, int64_t C, T *m_out, double *s_out) {
    T m = (T)-INFINITY;
    for (int64_t c = 0; c < C; c++) m = x[c] > m ? x[c] : m;
    double s = 0;
    for (int64_t c = 0; c < C; c++) s += (double)exp(x[c] - m);
    *m_out = m;
    *s_out = s;
}

void F(dbr_k_cross_entropy_fwd)(T *loss, const T *x, const void *labels, int labels_i64, int64_t N,
                                int64_t C) {
    double tot = 0;
    for (int64_t n = 0; n < N; n++) {
        const int64_t l = index_at(labels, labels_i64, n);
        if (l < 0 || l >= C) continue;
        const T *xr = x + n * C;
        T m;
        double s;
        F(row_lse)(xr, C, &m, &s);
        tot -= (double)(xr[l] - m) - log(s);
    }
    loss[0] = N > 0 ? (T)(tot / (double)N) : (T)0;
}

void F(dbr_k_cross_entropy_bwd)(T *gx, const T *x, const void *labels, int labels_i64, const T *gy,
                                int64_t N, int64_t C) {
    if (N <= 0) return;
    const T g = (T)((double)gy[0] / (double)N);
    for (int64_t n = 0; n < N; n++) {
        const int64_t l = index_at(labels, labels_i64, n);
        const T *xr = x + n * C;
        T *o = gx + n * C;
        if (l < 0 || l >= C) {
            memset(o, 0, (size_t)C * sizeof(T));
            continue;
        }
        T m;
        double s;
        F(row_lse)(xr, C, &m, &s);
        const T inv = (T)(1.0 / s);
        const T pl = exp(xr[l] - m) * inv;
        for (int64_t c = 0; c < C; c++) o[c] = exp(xr[c] - m) * inv * g;
        o[l] = (pl - (T)1) * g;
    }
}

void F(dbr_k_embedding_bwd)(T *gw, const void *idx, int idx_i64, const T *gy, int64_t n, int64_t V,
                            int64_t D) {
    memset(gw, 0, (size_t)(V * D) * sizeof(T));
    for (int64_t i = 0; i < n; i++) {
        const int64_t v = index_at(idx, idx_i64, i);
        if (v < 0 || v >= V) continue;
        T *dst = gw + v * D;
        const T *src = gy + i * D;
        for (int64_t d = 0; d < D; d++) dst[d] += src[d];
    }
}

#endif
