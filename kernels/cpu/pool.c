/* pool.c: square max and average pooling over [planes, H, W], forward and
 * backward. The body after #else is compiled once per float type: the file
 * includes itself with T and F(name) defined. */
#ifndef T
#include "kernels/cpu/kernels.h"

#include <math.h>
#include <string.h>

/* The window's input rows [*lo, *hi) for output row o, clipped to [0, n). */
static inline void pool_range(int64_t o, const dbr_k_pool *p, int64_t n, int64_t *lo,
                              int64_t *hi) {
    int64_t a = o * p->s - p->pad, b = a + p->k;
    *lo = a < 0 ? 0 : a;
    *hi = b > n ? n : b;
}

/* Non-overlapping 2x2 windows, the common CNN case, get unrolled loops. */
static inline int pool_is_2x2(const dbr_k_pool *p) { return p->k == 2 && p->s == 2 && p->pad == 0; }

#define T float
#define F(name) name##_f32
#include "pool.c"
#undef T
#undef F
#define T double
#define F(name) name##_f64
#include "pool.c"
#undef T
#undef F

#else

/* The first maximum of a window in row-major order, as an offset into the
 * plane, or -1 for a window wholly in the padding. The forward pass and the
 * backward pass both use it, so gradients go where the max came from. */
static inline int64_t F(window_argmax)(const T *xp, const dbr_k_pool *p, int64_t oh, int64_t ow) {
    int64_t hs, he, ws, we;
    pool_range(oh, p, p->H, &hs, &he);
    pool_range(ow, p, p->W, &ws, &we);
    if (hs >= he || ws >= we) return -1;
    int64_t arg = hs * p->W + ws;
    T m = xp[arg];
    for (int64_t h = hs; h < he; h++)
        for (int64_t w = ws; w < we; w++)
            if (xp[h * p->W + w] > m) {
                m = xp[h * p->W + w];
                arg = h * p->W + w;
            }
    return arg;
}

void F(dbr_k_max_pool2d_fwd)(T *y, const T *x, const dbr_k_pool *p) {
    const int64_t H = p->H, W = p->W, OH = p->OH, OW = p->OW;
    for (int64_t nc = 0; nc < p->NC; nc++) {
        const T *xp = x + nc * H * W;
        T *yp = y + nc * OH * OW;
        if (pool_is_2x2(p)) {
            for (int64_t oh = 0; oh < OH; oh++) {
                const T *r0 = xp + 2 * oh * W, *r1 = r0 + W;
                for (int64_t ow = 0; ow < OW; ow++) {
                    T m = r0[2 * ow];
                    m = r0[2 * ow + 1] > m ? r0[2 * ow + 1] : m;
                    m = r1[2 * ow] > m ? r1[2 * ow] : m;
                    m = r1[2 * ow + 1] > m ? r1[2 * ow + 1] : m;
                    yp[oh * OW + ow] = m;
                }
            }
            continue;
        }
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t a = F(window_argmax)(xp, p, oh, ow);
                yp[oh * OW + ow] = a >= 0 ? xp[a] : (T)-INFINITY;
            }
    }
}

void F(dbr_k_max_pool2d_bwd)(T *gx, const T *x, const T *gy, const dbr_k_pool *p) {
    const int64_t H = p->H, W = p->W, OH = p->OH, OW = p->OW;
    for (int64_t nc = 0; nc < p->NC; nc++) {
        const T *xp = x + nc * H * W, *gp = gy + nc * OH * OW;
        T *gxp = gx + nc * H * W;
        if (pool_is_2x2(p)) {
            /* The windows tile the plane, so each cell is written exactly
             * once and no clearing pass is needed, except past the last
             * window when H or W is odd. */
            for (int64_t oh = 0; oh < OH; oh++) {
                const T *x0 = xp + 2 * oh * W, *x1 = x0 + W;
                T *g0 = gxp + 2 * oh * W, *g1 = g0 + W;
                for (int64_t ow = 0; ow < OW; ow++) {
                    const int64_t j = 2 * ow;
                    int a = 0;
                    T m = x0[j];
                    if (x0[j + 1] > m) { m = x0[j + 1]; a = 1; }
                    if (x1[j] > m) { m = x1[j]; a = 2; }
                    if (x1[j + 1] > m) a = 3;
                    const T g = gp[oh * OW + ow], z = 0;
                    g0[j] = a == 0 ? g : z;
                    g0[j + 1] = a == 1 ? g : z;
                    g1[j] = a == 2 ? g : z;
                    g1[j + 1] = a == 3 ? g : z;
                }
                for (int64_t w = 2 * OW; w < W; w++) g0[w] = g1[w] = 0;
            }
            if (2 * OH < H) memset(gxp + 2 * OH * W, 0, (size_t)((H - 2 * OH) * W) * sizeof(T));
            continue;
        }
        memset(gxp, 0, (size_t)(H * W) * sizeof(T));
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t a = F(window_argmax)(xp, p, oh, ow);
                if (a >= 0) gxp[a] += gp[oh * OW + ow];
            }
    }
}

void F(dbr_k_avg_pool2d_fwd)(T *y, const T *x, const dbr_k_pool *p) {
    const int64_t H = p->H, W = p->W, OH = p->OH, OW = p->OW;
    const T inv = (T)1 / (T)(p->k * p->k);
    for (int64_t nc = 0; nc < p->NC; nc++) {
        const T *xp = x + nc * H * W;
        T *yp = y + nc * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t hs, he;
            pool_range(oh, p, H, &hs, &he);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t ws, we;
                pool_range(ow, p, W, &ws, &we);
                T s = 0;
                for (int64_t h = hs; h < he; h++)
                    for (int64_t w = ws; w < we; w++) s += xp[h * W + w];
                yp[oh * OW + ow] = s * inv;
            }
        }
    }
}

void F(dbr_k_avg_pool2d_bwd)(T *gx, const T *gy, const dbr_k_pool *p) {
    const int64_t H = p->H, W = p->W, OH = p->OH, OW = p->OW;
    const T inv = (T)1 / (T)(p->k * p->k);
    memset(gx, 0, (size_t)(p->NC * H * W) * sizeof(T));
    for (int64_t nc = 0; nc < p->NC; nc++) {
        const T *gp = gy + nc * OH * OW;
        T *gxp = gx + nc * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t hs, he;
            pool_range(oh, p, H, &hs, &he);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t ws, we;
                pool_range(ow, p, W, &ws, &we);
                const T g = gp[oh * OW + ow] * inv;
                for (int64_t h = hs; h < he; h++)
                    for (int64_t w = ws; w < we; w++) gxp[h * W + w] += g;
            }
        }
    }
}

#endif
