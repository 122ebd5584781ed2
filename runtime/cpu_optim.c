/* cpu_optim.c: in-place optimizer updates on the CPU (SGD, momentum with
 * PyTorch's semantics, Adam and AdamW). The per-type loops after #else are
 * compiled once for float and once for double (self-include). */
#ifndef T
#include "runtime/runtime.h"

#include <tgmath.h>

#define T float
#define F(name) name##_f32
#include "cpu_optim.c"
#undef T
#undef F
#define T double
#define F(name) name##_f64
#include "cpu_optim.c"
#undef T
#undef F

void dbr_cpu_sgd(int32_t dtype, int64_t n, void *p, const void *g, double lr, double wd) {
    if (dtype == DT_F32) sgd_f32(n, p, g, lr, wd);
    else if (dtype == DT_F64) sgd_f64(n, p, g, lr, wd);
}

void dbr_cpu_momentum(int32_t dtype, int64_t n, void *p, const void *g, void *v, double lr,
                      double mu, double wd, int nesterov) {
    if (dtype == DT_F32) momentum_f32(n, p, g, v, lr, mu, wd, nesterov);
    else if (dtype == DT_F64) momentum_f64(n, p, g, v, lr, mu, wd, nesterov);
}

void dbr_cpu_adam(int32_t dtype, int64_t n, void *p, const void *g, void *m, void *v, double lr,
                  double b1, double b2, double eps, double wd, int decoupled, int64_t t) {
    if (dtype == DT_F32) adam_f32(n, p, g, m, v, lr, b1, b2, eps, wd, decoupled, t);
    else if (dtype == DT_F64) adam_f64(n, p, g, m, v, lr, b1, b2, eps, wd, decoupled, t);
}

#else

/* Gradients are read as g + 0, which maps -0 to +0: a gradient accumulated
 * onto a zeroed buffer (eager) and one read straight from a plan's arena
 * (compiled) then update the parameters to the same bits. */
#define G(i) (g[i] + (T)0)

/* g' = g + wd p; p -= lr g' */
static void F(sgd)(int64_t n, T *restrict p, const T *restrict g, double lr, double wd) {
    const T l = (T)lr, w = (T)wd;
    if (wd == 0) {
        for (int64_t i = 0; i < n; i++) p[i] -= l * G(i);
    } else {
        for (int64_t i = 0; i < n; i++) p[i] -= l * (G(i) + w * p[i]);
    }
}

/* g' = g + wd p; v = mu v + g'; p -= lr (nesterov ? g' + mu v : v) */
static void F(momentum)(int64_t n, T *restrict p, const T *restrict g, T *restrict v, double lr,
                          double mu, double wd, int nesterov) {
    const T l = (T)lr, u = (T)mu, w = (T)wd;
    if (nesterov) {
        for (int64_t i = 0; i < n; i++) {
            const T gi = G(i) + w * p[i];
            v[i] = u * v[i] + gi;
            p[i] -= l * (gi + u * v[i]);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            v[i] = u * v[i] + (G(i) + w * p[i]);
            p[i] -= l * v[i];
        }
    }
}

/* Bias corrections fold into the step size and the denominator's scale, as
 * in PyTorch: p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps). */
static void F(adam)(int64_t n, T *restrict p, const T *restrict g, T *restrict m, T *restrict v,
                      double lr, double b1, double b2, double eps, double wd, int decoupled,
                      int64_t t) {
    const double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    const T step = (T)(lr / bc1), rbc2 = (T)(1.0 / sqrt(bc2)), e = (T)eps;
    const T c1 = (T)b1, c2 = (T)b2, d1 = (T)(1.0 - b1), d2 = (T)(1.0 - b2);
    const T decay = (T)(1.0 - lr * wd), w = decoupled ? (T)0 : (T)wd;
    for (int64_t i = 0; i < n; i++) {
        if (decoupled) p[i] *= decay;
        const T gi = G(i) + w * p[i];
        m[i] = c1 * m[i] + d1 * gi;
        v[i] = c2 * v[i] + d2 * gi * gi;
        p[i] -= step * m[i] / (sqrt(v[i]) * rbc2 + e);
    }
}

#undef G
#endif
