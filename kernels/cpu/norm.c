/* norm.c: batch norm (training statistics) and layer norm, forward and
 * backward, and the per-channel statistics op. Statistics accumulate in
 * double. The body after #else is compiled once per float type. */
#ifndef T
#include "kernels/cpu/kernels.h"

#include <math.h>

#define T float
#define F(name) name##_f32
#include "norm.c"
#undef T
#undef F
#define T double
#define F(name) name##_f64
#include "norm.c"
#undef T
#undef F

#else

/* Eight partial sums keep the double adds pipelined; see reduce.c. */
static double F(nsum)(const T *x, int64_t n) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += (double)x[i + j];
    double t = 0;
    for (; i < n; i++) t += (double)x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + t;
}

/* Sum of (x - mean)^2. */
static double F(nsqdev)(const T *x, int64_t n, double mean) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            const double d = (double)x[i + j] - mean;
            s[j] += d * d;
        }
    double t = 0;
    for (; i < n; i++) t += ((double)x[i] - mean) * ((double)x[i] - mean);
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + t;
}

/* Sum of g * (x - mean). */
static double F(ndot)(const T *g, const T *x, int64_t n, double mean) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += (double)g[i + j] * ((double)x[i + j] - mean);
    double t = 0;
    for (; i < n; i++) t += (double)g[i] * ((double)x[i] - mean);
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + t;
}

/* Batch-norm statistics take one sweep over the channel: sums of d = x - K
 * and d^2 with K the channel's first element. Shifting by a sample keeps
 * E[d^2] - E[d]^2 from cancelling (|mean - K| is of the order of the
 * std), and in double the error stays far below float's resolution. */
static void F(channel_moments)(const T *x, int64_t N, int64_t C, int64_t S, int64_t c, double *mean,
                               double *var) {
    const double M = (double)(N * S);
    if (M <= 0) {
        *mean = *var = 0;
        return;
    }
    const double K = (double)x[c * S];
    double a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
    for (int64_t n = 0; n < N; n++) {
        const T *xr = x + (n * C + c) * S;
        int64_t i = 0;
        for (; i + 4 <= S; i += 4)
            for (int j = 0; j < 4; j++) {
                const double d = (double)xr[i + j] - K;
                a[j] += d;
                b[j] += d * d;
            }
        for (; i < S; i++) {
            const double d = (double)xr[i] - K;
            a[0] += d;
            b[0] += d * d;
        }
    }
    const double md = ((a[0] + a[1]) + (a[2] + a[3])) / M;
    const double v = ((b[0] + b[1]) + (b[2] + b[3])) / M - md * md;
    *mean = K + md;
    *var = v > 0 ? v : 0;
}

/* The same sweep for the backward pass, also summing gy and gy (x - mean). */
static void F(channel_moments_g)(const T *x, const T *gy, int64_t N, int64_t C, int64_t S,
                                 int64_t c, double *mean, double *var, double *sg, double *sgx) {
    const double M = (double)(N * S);
    if (M <= 0) {
        *mean = *var = *sg = *sgx = 0;
        return;
    }
    const double K = (double)x[c * S];
    double a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0}, g[4] = {0, 0, 0, 0}, h[4] = {0, 0, 0, 0};
    for (int64_t n = 0; n < N; n++) {
        const T *xr = x + (n * C + c) * S, *gr = gy + (n * C + c) * S;
        int64_t i = 0;
        for (; i + 4 <= S; i += 4)
            for (int j = 0; j < 4; j++) {
                const double d = (double)xr[i + j] - K, e = (double)gr[i + j];
                a[j] += d;
                b[j] += d * d;
                g[j] += e;
                h[j] += e * d;
            }
        for (; i < S; i++) {
            const double d = (double)xr[i] - K, e = (double)gr[i];
            a[0] += d;
            b[0] += d * d;
            g[0] += e;
            h[0] += e * d;
        }
    }
    const double md = ((a[0] + a[1]) + (a[2] + a[3])) / M;
    const double v = ((b[0] + b[1]) + (b[2] + b[3])) / M - md * md;
    *mean = K + md;
    *var = v > 0 ? v : 0;
    *sg = (g[0] + g[1]) + (g[2] + g[3]);
    *sgx = ((h[0] + h[1]) + (h[2] + h[3])) - md * *sg;
}

void F(dbr_k_bn_stats)(T *out, const T *x, int64_t N, int64_t C, int64_t S) {
    for (int64_t c = 0; c < C; c++) {
        double m, v;
        F(channel_moments)(x, N, C, S, c, &m, &v);
        out[c] = (T)m;
        out[C + c] = (T)v;
    }
}

/* y = (x - mean) * a + beta with a = rstd * gamma: subtracting the mean
 * first keeps precision when |mean| >> std. */
void F(dbr_k_batch_norm_fwd)(T *y, const T *x, const T *gamma, const T *beta, int64_t N, int64_t C,
                             int64_t S, double eps) {
    for (int64_t c = 0; c < C; c++) {
        double m, v;
        F(channel_moments)(x, N, C, S, c, &m, &v);
        const double rstd = 1.0 / sqrt(v + eps);
        const T a = (T)(rstd * (gamma ? (double)gamma[c] : 1.0));
        const T b = beta ? beta[c] : (T)0, mt = (T)m;
        for (int64_t n = 0; n < N; n++) {
            const T *xr = x + (n * C + c) * S;
            T *yr = y + (n * C + c) * S;
            for (int64_t i = 0; i < S; i++) yr[i] = (xr[i] - mt) * a + b;
        }
    }
}

/* dx = gamma rstd / M (M gy - sum(gy) - xhat sum(gy xhat)), written as
 * dx = A gy + B (x - mean) + K per channel. */
void F(dbr_k_batch_norm_bwd)(T *dx, const T *x, const T *gy, const T *gamma, int64_t N, int64_t C,
                             int64_t S, double eps) {
    const double M = (double)(N * S);
    if (M <= 0) return;
    for (int64_t c = 0; c < C; c++) {
        double m, v, sg, sgx;
        F(channel_moments_g)(x, gy, N, C, S, c, &m, &v, &sg, &sgx);
        const double rstd = 1.0 / sqrt(v + eps), g = gamma ? (double)gamma[c] : 1.0;
        const T A = (T)(g * rstd), B = (T)(-g * rstd * rstd * rstd * sgx / M);
        const T K = (T)(-g * rstd * sg / M), mt = (T)m;
        for (int64_t n = 0; n < N; n++) {
            const int64_t o = (n * C + c) * S;
            const T *xr = x + o, *gr = gy + o;
            T *dr = dx + o;
            for (int64_t i = 0; i < S; i++) dr[i] = A * gr[i] + B * (xr[i] - mt) + K;
        }
    }
}

void F(dbr_k_layer_norm_fwd)(T *y, const T *x, const T *gamma, const T *beta, int64_t R, int64_t D,
                             double eps) {
    for (int64_t r = 0; r < R; r++) {
        const T *xr = x + r * D;
        T *yr = y + r * D;
        const double m = D > 0 ? F(nsum)(xr, D) / (double)D : 0.0;
        const double v = D > 0 ? F(nsqdev)(xr, D, m) / (double)D : 0.0;
        const T mt = (T)m, rs = (T)(1.0 / sqrt(v + eps));
        for (int64_t i = 0; i < D; i++) yr[i] = (xr[i] - mt) * rs;
        if (gamma)
            for (int64_t i = 0; i < D; i++) yr[i] *= gamma[i];
        if (beta)
            for (int64_t i = 0; i < D; i++) yr[i] += beta[i];
    }
}

/* With g = gy * gamma: dx = rstd (g - mean(g) - xhat mean(g xhat)). */
void F(dbr_k_layer_norm_bwd)(T *dx, const T *x, const T *gy, const T *gamma, int64_t R, int64_t D,
                             double eps) {
    if (D <= 0) return;
    for (int64_t r = 0; r < R; r++) {
        const T *xr = x + r * D, *gr = gy + r * D;
        T *dr = dx + r * D;
        const double m = F(nsum)(xr, D) / (double)D;
        const double v = F(nsqdev)(xr, D, m) / (double)D;
        const double rstd = 1.0 / sqrt(v + eps);
        double sg = 0, sgx = 0;
        if (gamma) {
            for (int64_t i = 0; i < D; i++) {
                const double g = (double)gr[i] * (double)gamma[i];
                sg += g;
                sgx += g * ((double)xr[i] - m);
            }
        } else {
            sg = F(nsum)(gr, D);
            sgx = F(ndot)(gr, xr, D, m);
        }
        /* dx = rstd g + B (x - mean) + K */
        const T A = (T)rstd, B = (T)(-rstd * rstd * rstd * sgx / (double)D);
        const T K = (T)(-rstd * sg / (double)D), mt = (T)m;
        if (gamma) {
            for (int64_t i = 0; i < D; i++) dr[i] = A * (gr[i] * gamma[i]) + B * (xr[i] - mt) + K;
        } else {
            for (int64_t i = 0; i < D; i++) dr[i] = A * gr[i] + B * (xr[i] - mt) + K;
        }
    }
}

#endif
