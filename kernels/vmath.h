/* vmath.h: expf and tanhf as the CPU code generator computes them inline
 * (codegen/llvm.c: exp_f32, tanh_f32): in double with a fixed sequence of
 * roundings (explicit fma, no contraction elsewhere), rounded once to float.
 * The unfused kernels (kernels/cpu/ew.c) and the reference evaluator
^ * (codegen/kdesc_eval.h) use these, so fused and unfused f32 results agree
 * to the bit; within 1 ulp of the correctly rounded value. Plain
 * arithmetic, so the compilers vectorize loops that call them. */
#ifndef DBR_KERNELS_VMATH_H
#define DBR_KERNELS_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* e^x = 2^n (1 + q): returns q, sets *scale = 2^n (x in [-700, 700] or NaN) */
static inline double dbr_expq(double x, double *scale) {
    const double t = fma(x, 1.4426950408889634, 0x1.8p52);
    const double n = t - 0x1.8p52;
    double r = fma(n, -6.93147180369123816490e-01, x);
    r = fma(n, -1.90821492927058770002e-10, r);
    const double r2 = r * r, r4 = r2 * r2;
    const double a23 = fma(r, 1.0 / 6, 1.0 / 2), a45 = fma(r, 1.0 / 120, 1.0 / 24);
    const double a67 = fma(r, 1.0 / 5040, 1.0 / 720), a68 = fma(r2, 1.0 / 40320, a67);
    const double a13 = fma(r2, a23, r), a48 = fma(r2, a68, a45);
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits + 1023) << 52;
    memcpy(scale, &bits, sizeof bits);
    return fma(r4, a48, a13);
}

static inline float dbr_exp_f32(float x) {
    double xd = x, scale;
    xd = xd > 90.0 ? 90.0 : xd;
    xd = xd < -110.0 ? -110.0 : xd;
    const double q = dbr_expq(xd, &scale);
    return (float)fma(scale, q, scale);
}

static inline float dbr_tanh_f32(float x) {
    const double xd = x;
    double ax = fabs(xd), scale;
    ax = ax > 20.0 ? 20.0 : ax;
    const double q = dbr_expq(ax + ax, &scale);
    const double m = fma(scale, q, scale - 1.0);
    return (float)copysign(m / (m + 2.0), xd);
}

/* exp and tanh of a float (as above) or a double (libm's), by the type of v:
 * what kernels written once per float type call. */
#define DBR_VEXP(v) _Generic((v), float: dbr_exp_f32, default: exp)(v)
#define DBR_VTANH(v) _Generic((v), float: dbr_tanh_f32, default: tanh)(v)

#endif
