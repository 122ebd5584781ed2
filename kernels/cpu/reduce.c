/* reduce.c: sum, mean and max over any set of axes, and max's gradient.
 * The body after #else is compiled once per float type: the file includes
 * itself with T and F(name) defined. */
#ifndef T
#include "kernels/cpu/kernels.h"

#include <math.h>
#include <string.h>

#define T float
#define F(name) name##_f32
#include "reduce.c"
#undef T
#undef F
#define T double
#define F(name) name##_f64
#include "reduce.c"
#undef T
#undef F

#else

/* Sums accumulate in double: eight independent partial sums keep the adds
 * pipelined without reassociating behind the compiler's back, so results
 * do not depend on optimization flags. */
static double F(sum_run)(const T *x, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 += (double)x[i];
        s1 += (double)x[i + 1];
        s2 += (double)x[i + 2];
        s3 += (double)x[i + 3];
        s4 += (double)x[i + 4];
        s5 += (double)x[i + 5];
        s6 += (double)x[i + 6];
        s7 += (double)x[i + 7];
    }
    double t = 0;
    for (; i < n; i++) t += (double)x[i];
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)) + t;
}

/* Walk x's shape with the kept-dims output following; the innermost run of
 * x either folds into one output slot (output stride 0) or adds onto a row
 * of outputs (stride 1). Leading, trailing and mixed axes all end up as
 * long runs after the walk merges dims. */
static void F(red_walk_init)(dbr_k_iter *it, int64_t *ynumel, int ndim, const int64_t *shape,
                             uint32_t axes) {
    int64_t kshape[DBR_K_MAX_DIMS];
    *ynumel = 1;
    for (int d = 0; d < ndim; d++) {
        kshape[d] = (axes >> d) & 1u ? 1 : shape[d];
        *ynumel *= kshape[d];
    }
    const int nd[1] = {ndim};
    const int64_t *const sh[1] = {kshape};
    dbr_k_iter_init(it, ndim, shape, 1, nd, sh);
}

int F(dbr_k_reduce)(dbr_k_redop op, T *y, const T *x, int ndim, const int64_t *shape,
                    uint32_t axes) {
    dbr_k_iter it;
    int64_t yn;
    F(red_walk_init)(&it, &yn, ndim, shape, axes);
    if (it.numel == 0) {
        const T v = op == DBR_K_RED_MAX ? (T)-INFINITY : op == DBR_K_RED_MEAN ? (T)NAN : (T)0;
        for (int64_t i = 0; i < yn; i++) y[i] = v;
        return 0;
    }
    const int last = it.ndim - 1;
    const int64_t inner = it.shape[last], outer = it.numel / inner;
    const int64_t ys = it.stride[0][last];
    int64_t idx[DBR_K_MAX_DIMS] = {0}, off[1] = {0};

    if (op == DBR_K_RED_MAX) {
        for (int64_t i = 0; i < yn; i++) y[i] = (T)-INFINITY;
        for (int64_t s = 0; s < outer; s++) {
            const T *xr = x + s * inner;
            T *yr = y + off[0];
            if (ys == 0) {
                T m = yr[0];
                for (int64_t i = 0; i < inner; i++) m = xr[i] > m || xr[i] != xr[i] ? xr[i] : m;
                yr[0] = m;
            } else {
                for (int64_t i = 0; i < inner; i++)
                    yr[i] = xr[i] > yr[i] || xr[i] != xr[i] ? xr[i] : yr[i];
            }
            dbr_k_iter_next(&it, idx, off);
        }
        return 0;
    }

    double *acc = dbr_k_scratch((size_t)yn * sizeof(double));
    if (!acc) return -1;
    memset(acc, 0, (size_t)yn * sizeof(double));
    for (int64_t s = 0; s < outer; s++) {
        const T *xr = x + s * inner;
        double *ar = acc + off[0];
        if (ys == 0) {
            ar[0] += F(sum_run)(xr, inner);
        } else {
            for (int64_t i = 0; i < inner; i++) ar[i] += (double)xr[i];
        }
        dbr_k_iter_next(&it, idx, off);
    }
    if (op == DBR_K_RED_MEAN) {
        const double cnt = (double)(it.numel / yn);
        for (int64_t i = 0; i < yn; i++) y[i] = (T)(acc[i] / cnt);
    } else {
        for (int64_t i = 0; i < yn; i++) y[i] = (T)acc[i];
    }
    return 0;
}

int F(dbr_k_max_bwd)(T *gx, const T *x, const T *y, const T *gy, int ndim, const int64_t *shape,
                     uint32_t axes) {
    dbr_k_iter it;
    int64_t yn;
    F(red_walk_init)(&it, &yn, ndim, shape, axes);
    if (it.numel == 0) return 0;
    const int last = it.ndim - 1;
    const int64_t inner = it.shape[last], outer = it.numel / inner;
    const int64_t ys = it.stride[0][last];
    double *share = dbr_k_scratch((size_t)yn * sizeof(double));
    if (!share) return -1;
    memset(share, 0, (size_t)yn * sizeof(double));

    /* Pass 1 counts the ties per output slot; each then gets gy / count. */
    int64_t idx[DBR_K_MAX_DIMS] = {0}, off[1] = {0};
    for (int64_t s = 0; s < outer; s++) {
        const T *xr = x + s * inner, *yr = y + off[0];
        double *cr = share + off[0];
        if (ys == 0) {
            int64_t c = 0;
            for (int64_t i = 0; i < inner; i++) c += xr[i] == yr[0];
            cr[0] += (double)c;
        } else {
            for (int64_t i = 0; i < inner; i++) cr[i] += xr[i] == yr[i] ? 1.0 : 0.0;
        }
        dbr_k_iter_next(&it, idx, off);
    }
    for (int64_t j = 0; j < yn; j++) share[j] = share[j] > 0 ? (double)gy[j] / share[j] : 0.0;

    memset(idx, 0, sizeof idx);
    off[0] = 0;
    for (int64_t s = 0; s < outer; s++) {
        const T *xr = x + s * inner, *yr = y + off[0];
        const double *gr = share + off[0];
        T *o = gx + s * inner;
        if (ys == 0) {
            const T yv = yr[0], g = (T)gr[0];
            for (int64_t i = 0; i < inner; i++) o[i] = xr[i] == yv ? g : (T)0;
        } else {
            for (int64_t i = 0; i < inner; i++) o[i] = xr[i] == yr[i] ? (T)gr[i] : (T)0;
        }
        dbr_k_iter_next(&it, idx, off);
    }
    return 0;
}

#endif
