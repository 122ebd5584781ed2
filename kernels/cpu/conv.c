/* conv.c: 2-D convolution forward and both backward passes by im2col and
 * GEMM, per image and group; 1x1 stride-1 unpadded convs skip im2col. The
 * body after #else is compiled once per float type (the file includes itself). */
#ifndef T
#include "kernels/cpu/kernels.h"

#include <string.h>

static inline int64_t ceil_div_pos(int64_t a, int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; }

/* The output columns ow whose input column ow*sw + off lies in [0, W). */
static inline void valid_cols(int64_t off, int64_t sw, int64_t W, int64_t OW, int64_t *lo,
                              int64_t *hi) {
    int64_t h = ceil_div_pos(W - off, sw);
    int64_t l = ceil_div_pos(-off, sw);
    if (h > OW) h = OW;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

static inline int conv_is_pointwise(const dbr_k_conv *p) {
    return p->KH == 1 && p->KW == 1 && p->sh == 1 && p->sw == 1 && p->ph == 0 && p->pw == 0;
}

#define T float
#define F(name) name##_f32
#include "conv.c"
#undef T
#undef F
#define T double
#define F(name) name##_f64
#include "conv.c"
#undef T
#undef F

#else

/* col [Cg*KH*KW, OH*OW] from one image's group of channels x [Cg, H, W]. */
static void F(im2col)(T *restrict col, const T *restrict x, int64_t Cg, const dbr_k_conv *p) {
    const int64_t H = p->H, W = p->W, OH = p->OH, OW = p->OW, ohw = OH * OW;
    for (int64_t c = 0; c < Cg; c++) {
        const T *xc = x + c * H * W;
        for (int64_t kh = 0; kh < p->KH; kh++) {
            for (int64_t kw = 0; kw < p->KW; kw++) {
                T *row = col + ((c * p->KH + kh) * p->KW + kw) * ohw;
                const int64_t off = kw * p->dw - p->pw;
                int64_t lo, hi;
                valid_cols(off, p->sw, W, OW, &lo, &hi);
                for (int64_t oh = 0; oh < OH; oh++) {
                    T *r = row + oh * OW;
                    const int64_t ih = oh * p->sh - p->ph + kh * p->dh;
                    if (ih < 0 || ih >= H) {
                        memset(r, 0, (size_t)OW * sizeof(T));
                        continue;
                    }
                    const T *xr = xc + ih * W;
                    for (int64_t ow = 0; ow < lo; ow++) r[ow] = 0;
                    if (p->sw == 1) {
                        memcpy(r + lo, xr + lo + off, (size_t)(hi - lo) * sizeof(T));
                    } else {
                        for (int64_t ow = lo; ow < hi; ow++) r[ow] = xr[ow * p->sw + off];
                    }
                    for (int64_t ow = hi; ow < OW; ow++) r[ow] = 0;
                }
            }
        }
    }
}

/* The adjoint of im2col: x [Cg, H, W] += scatter of col. */
static void F(col2im)(T *restrict x, const T *restrict col, int64_t Cg, const dbr_k_conv *p) {
    const int64_t H = p->H, W = p->W, OH = p->OH, OW = p->OW, ohw = OH * OW;
    for (int64_t c = 0; c < Cg; c++) {
        T *xc = x + c * H * W;
        for (int64_t kh = 0; kh < p->KH; kh++) {
            for (int64_t kw = 0; kw < p->KW; kw++) {
                const T *row = col + ((c * p->KH + kh) * p->KW + kw) * ohw;
                const int64_t off = kw * p->dw - p->pw;
                int64_t lo, hi;
                valid_cols(off, p->sw, W, OW, &lo, &hi);
                for (int64_t oh = 0; oh < OH; oh++) {
                    const int64_t ih = oh * p->sh - p->ph + kh * p->dh;
                    if (ih < 0 || ih >= H) continue;
                    const T *r = row + oh * OW;
                    T *xr = xc + ih * W;
                    if (p->sw == 1) {
                        for (int64_t ow = lo; ow < hi; ow++) xr[ow + off] += r[ow];
                    } else {
                        for (int64_t ow = lo; ow < hi; ow++) xr[ow * p->sw + off] += r[ow];
                    }
                }
            }
        }
    }
}

int F(dbr_k_conv2d_fwd)(T *y, const T *x, const T *w, const dbr_k_conv *p) {
    const int64_t G = p->groups, Cg = p->C / G, Og = p->O / G;
    const int64_t Kc = Cg * p->KH * p->KW, ohw = p->OH * p->OW, hw = p->H * p->W;
    const int direct = conv_is_pointwise(p);
    T *col = NULL;
    if (!direct) {
        col = dbr_k_scratch((size_t)(Kc * ohw) * sizeof(T));
        if (!col && Kc * ohw > 0) return -1;
    }
    for (int64_t n = 0; n < p->N; n++) {
        for (int64_t g = 0; g < G; g++) {
            const T *xg = x + (n * p->C + g * Cg) * hw;
            const T *src = xg;
            if (!direct) {
                F(im2col)(col, xg, Cg, p);
                src = col;
            }
            F(dbr_k_gemm)(0, 0, Og, ohw, Kc, (T)1, w + g * Og * Kc, Kc, src, ohw, (T)0,
                          y + (n * p->O + g * Og) * ohw, ohw);
        }
    }
    return 0;
}

int F(dbr_k_conv2d_bwd_data)(T *gx, const T *gy, const T *w, const dbr_k_conv *p) {
    const int64_t G = p->groups, Cg = p->C / G, Og = p->O / G;
    const int64_t Kc = Cg * p->KH * p->KW, ohw = p->OH * p->OW, hw = p->H * p->W;
    const int direct = conv_is_pointwise(p);
    T *col = NULL;
    if (!direct) {
        col = dbr_k_scratch((size_t)(Kc * ohw) * sizeof(T));
        if (!col && Kc * ohw > 0) return -1;
    }
    for (int64_t n = 0; n < p->N; n++) {
        for (int64_t g = 0; g < G; g++) {
            T *gxg = gx + (n * p->C + g * Cg) * hw;
            const T *gyg = gy + (n * p->O + g * Og) * ohw;
            const T *wg = w + g * Og * Kc;
            if (direct) {
                F(dbr_k_gemm)(1, 0, Kc, ohw, Og, (T)1, wg, Kc, gyg, ohw, (T)0, gxg, ohw);
            } else {
                F(dbr_k_gemm)(1, 0, Kc, ohw, Og, (T)1, wg, Kc, gyg, ohw, (T)0, col, ohw);
                memset(gxg, 0, (size_t)(Cg * hw) * sizeof(T));
                F(col2im)(gxg, col, Cg, p);
            }
        }
    }
    return 0;
}

int F(dbr_k_conv2d_bwd_weight)(T *gw, const T *x, const T *gy, const dbr_k_conv *p) {
    const int64_t G = p->groups, Cg = p->C / G, Og = p->O / G;
    const int64_t Kc = Cg * p->KH * p->KW, ohw = p->OH * p->OW, hw = p->H * p->W;
    const int direct = conv_is_pointwise(p);
    if (p->N == 0 || ohw == 0) {
        memset(gw, 0, (size_t)(p->O * Kc) * sizeof(T));
        return 0;
    }
    T *col = NULL;
    if (!direct) {
        col = dbr_k_scratch((size_t)(Kc * ohw) * sizeof(T));
        if (!col && Kc * ohw > 0) return -1;
    }
    for (int64_t n = 0; n < p->N; n++) {
        for (int64_t g = 0; g < G; g++) {
            const T *xg = x + (n * p->C + g * Cg) * hw;
            const T *src = xg;
            if (!direct) {
                F(im2col)(col, xg, Cg, p);
                src = col;
            }
            F(dbr_k_gemm)(0, 1, Og, Kc, ohw, (T)1, gy + (n * p->O + g * Og) * ohw, ohw, src, ohw,
                          n == 0 ? (T)0 : (T)1, gw + g * Og * Kc, Kc);
        }
    }
    return 0;
}

#endif
