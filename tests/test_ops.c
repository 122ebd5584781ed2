/* test_ops.c: one table-driven harness for every IR op, in the spirit of
 * ggml's test-backend-ops. Each case runs dbr_infer, then dbr_cpu_exec in f64
 * and f32 against a naive float64 reference written here, then dbr_grad
 * (through a builder that executes at once) against central differences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "kernels/philox.h"
#include "runtime/runtime.h"

#define MAXD DBR_IR_MAX_DIMS
#define MAXS DBR_MAX_SRC

static const double PI = 3.14159265358979323846;

/* ---- the case table ---------------------------------------------------- */
enum { FLT = -1 }; /* "the float dtype under test": each case runs in f64 and f32 */
enum { G_ANY, G_AWAY, G_POS, G_DISTINCT, G_TIES, G_INT, G_RELU_OUT };
enum { F_NOGRAD = 1, F_NOF32 = 2 };

typedef struct tin {
    int dt;
    int nd;
    int64_t sh[MAXD];
} tin;

typedef struct tcase {
    dbr_op op;
    int n_in;
    tin in[MAXS];
    dbr_attrs a;
    int gen[MAXS];      /* valid-input generator per input (G_*) */
    int64_t ihi[MAXS];  /* integer inputs: values in [0, ihi) */
    unsigned nodiff;    /* float inputs the gradient check leaves out */
    unsigned flags;     /* F_* */
    double tol32;       /* f32 tolerance; 0 means 1e-5 */
    /* Make generated inputs consistent (y = max(x), repeated indices). */
    void (*prep)(const dbr_node *n, double *const in[]);
    /* Replaces the reference comparison (dropout); returns failures. */
    int (*check)(const dbr_node *n, double *const in[], const double *got);
} tcase;

#define NA_(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define T(dt, ...) {(dt), NA_(__VA_ARGS__), {__VA_ARGS__}}
#define T0(dt) {(dt), 0, {0}}

static tcase *cases;
static int n_cases, cap_cases;
static tcase *rcases; /* randomly drawn element-wise shapes */
static int n_rcases, cap_rcases;

static tcase *push(tcase **arr, int *n, int *cap, const tcase *c) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        tcase *p = realloc(*arr, (size_t)*cap * sizeof *p);
        assert_non_null(p);
        *arr = p;
    }
    (*arr)[*n] = *c;
    return &(*arr)[(*n)++];
}
static tcase *add(tcase c) { return push(&cases, &n_cases, &cap_cases, &c); }

/* ---- random numbers (splitmix64) ---------------------------------------- */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_u64(rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_uni(rng *r, double lo, double hi) {
    return lo + (hi - lo) * (double)(rng_u64(r) >> 11) * 0x1p-53;
}
static int64_t rng_int(rng *r, int64_t n) { return (int64_t)(rng_u64(r) % (uint64_t)n); }

/* ---- shapes -------------------------------------------------------------- */
static int64_t numel(const dbr_tinfo *t) {
    int64_t m = 1;
    for (int d = 0; d < t->ndim; d++) m *= t->shape[d];
    return m;
}
static void unravel(int64_t f, const dbr_tinfo *t, int64_t *idx) {
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = f % t->shape[d];
        f /= t->shape[d];
    }
}
static int64_t ravel(const dbr_tinfo *t, const int64_t *idx) {
    int64_t f = 0;
    for (int d = 0; d < t->ndim; d++) f = f * t->shape[d] + idx[d];
    return f;
}
/* Offset in `in` of out's element oidx under NumPy broadcasting. */
static int64_t bcast_off(const dbr_tinfo *in, const dbr_tinfo *out, const int64_t *oidx) {
    int k = out->ndim - in->ndim;
    int64_t f = 0;
    for (int d = 0; d < in->ndim; d++) f = f * in->shape[d] + (in->shape[d] == 1 ? 0 : oidx[d + k]);
    return f;
}
static int64_t prod(const int64_t *s, int from, int to) {
    int64_t m = 1;
    for (int d = from; d < to; d++) m *= s[d];
    return m;
}
static char *shape_s(const dbr_tinfo *t, char *buf, size_t n) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && at < n; d++)
        at += (size_t)snprintf(buf + at, n - at, d ? ",%lld" : "%lld", (long long)t->shape[d]);
    if (at < n) snprintf(buf + at, n - at, "]");
    return buf;
}
static bool same_type(const dbr_tinfo *a, const dbr_tinfo *b) {
    if (a->dtype != b->dtype || a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}
static const char *dt_s(int dt) {
    static const char *const s[] = {"f32", "f64", "i32", "i64", "f16", "bf16"};
    return dt >= 0 && dt < 6 ? s[dt] : "?";
}
static bool is_float(int dt) { return dt == DT_F32 || dt == DT_F64; }
static size_t dt_size(int dt) { return dt == DT_F32 || dt == DT_I32 ? 4 : 8; }

/* "conv2d([2,4,7,6] f64, [6,2,3,3] f64) i=[2,2,1,1,2,2,2] f=[..]" */
static char *node_desc(const dbr_node *n, char *buf, size_t len) {
    char s[96];
    size_t at = (size_t)snprintf(buf, len, "%s(", dbr_ops[n->op].name);
    for (int i = 0; i < n->n_in && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s %s", i ? ", " : "",
                               shape_s(&n->in[i], s, sizeof s), dt_s(n->in[i].dtype));
    int last = -1;
    for (int k = 0; k < 16; k++)
        if (n->a.i[k]) last = k;
    if (at < len) at += (size_t)snprintf(buf + at, len - at, ") i=[");
    for (int k = 0; k <= last && at < len; k++)
        at += (size_t)snprintf(buf + at, len - at, k ? ",%lld" : "%lld", (long long)n->a.i[k]);
    if (at < len)
        snprintf(buf + at, len - at, "] f=[%g,%g]", n->a.f[0], n->a.f[1]);
    return buf;
}

/* ---- failures -------------------------------------------------------------- */
static int n_fail;
#define FAIL(...)                          \
    do {                                   \
        n_fail++;                          \
        fprintf(stderr, "  FAIL " __VA_ARGS__); \
        fputc('\n', stderr);               \
    } while (0)

/* ---- naive float64 references ----------------------------------------------- */
static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }
static double gelu(double x) {
    double c = sqrt(2.0 / PI);
    return 0.5 * x * (1.0 + tanh(c * (x + 0.044715 * x * x * x)));
}
static double gelu_d(double x) {
    double c = sqrt(2.0 / PI), t = tanh(c * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * x * x);
}

static bool ew_like(dbr_op op) {
    return dbr_ops[op].cat == DBR_CAT_EW || op == DBR_OP_RELU_BWD ||
           op == DBR_OP_LEAKY_RELU_BWD || op == DBR_OP_GELU_BWD || op == DBR_OP_SILU_BWD;
}

static double ew_scalar(const dbr_node *n, const double *v) {
    double x = v[0], f0 = n->a.f[0];
    switch (n->op) {
    case DBR_OP_ADD: return v[0] + v[1];
    case DBR_OP_SUB: return v[0] - v[1];
    case DBR_OP_MUL: return v[0] * v[1];
    case DBR_OP_DIV: return v[0] / v[1];
    case DBR_OP_NEG: return -x;
    case DBR_OP_EXP: return exp(x);
    case DBR_OP_LOG: return log(x);
    case DBR_OP_SQRT: return sqrt(x);
    case DBR_OP_RSQRT: return 1.0 / sqrt(x);
    case DBR_OP_POW: return pow(x, f0);
    case DBR_OP_ABS: return fabs(x);
    case DBR_OP_SIGN: return (double)((x > 0) - (x < 0));
    case DBR_OP_TANH: return tanh(x);
    case DBR_OP_SIGMOID: return sigm(x);
    case DBR_OP_RELU: return x > 0 ? x : 0.0;
    case DBR_OP_LEAKY_RELU: return x > 0 ? x : f0 * x;
    case DBR_OP_GELU: return gelu(x);
    case DBR_OP_SILU: return x * sigm(x);
    case DBR_OP_WHERE: return v[0] != 0 ? v[1] : v[2];
    case DBR_OP_RELU_BWD: return v[0] > 0 ? v[1] : 0.0;
    case DBR_OP_LEAKY_RELU_BWD: return v[0] > 0 ? v[1] : f0 * v[1];
    case DBR_OP_GELU_BWD: return v[1] * gelu_d(x);
    case DBR_OP_SILU_BWD: {
        double s = sigm(x);
        return v[1] * s * (1.0 + x * (1.0 - s));
    }
    default: return NAN;
    }
}

static void ref_ew(const dbr_node *n, double *const in[], double *out) {
    int64_t idx[MAXD];
    double v[MAXS];
    for (int64_t f = 0; f < numel(&n->out); f++) {
        unravel(f, &n->out, idx);
        for (int i = 0; i < n->n_in; i++) v[i] = in[i][bcast_off(&n->in[i], &n->out, idx)];
        out[f] = ew_scalar(n, v);
    }
}

/* Flat index of x's element xi in the reduced result (keepdims or not). */
static int64_t red_off(const dbr_node *n, const int64_t *xi) {
    const dbr_tinfo *x = &n->in[0];
    int64_t f = 0;
    for (int d = 0; d < x->ndim; d++)
        if (!(n->a.i[0] >> d & 1)) f = f * x->shape[d] + xi[d];
    return f;
}

static void ref_red(const dbr_node *n, double *const in[], double *out) {
    int64_t m = numel(&n->out), mx = numel(&n->in[0]), idx[MAXD];
    for (int64_t f = 0; f < m; f++) out[f] = n->op == DBR_OP_MAX ? -INFINITY : 0.0;
    for (int64_t f = 0; f < mx; f++) {
        unravel(f, &n->in[0], idx);
        int64_t o = red_off(n, idx);
        if (n->op == DBR_OP_MAX)
            out[o] = fmax(out[o], in[0][f]);
        else
            out[o] += in[0][f];
    }
    if (n->op == DBR_OP_MEAN)
        for (int64_t f = 0; f < m; f++) out[f] /= (double)(mx / m);
}

/* (x, y, gy): the gradient splits evenly between tied maxima. */
static void ref_max_bwd(const dbr_node *n, double *const in[], double *out) {
    int64_t mx = numel(&n->in[0]), my = numel(&n->in[1]), idx[MAXD];
    int64_t *cnt = calloc((size_t)my, sizeof *cnt);
    assert_non_null(cnt);
    for (int64_t f = 0; f < mx; f++) {
        unravel(f, &n->in[0], idx);
        int64_t o = red_off(n, idx);
        cnt[o] += in[0][f] == in[1][o];
    }
    for (int64_t f = 0; f < mx; f++) {
        unravel(f, &n->in[0], idx);
        int64_t o = red_off(n, idx);
        out[f] = in[0][f] == in[1][o] ? in[2][o] / (double)cnt[o] : 0.0;
    }
    free(cnt);
}

static int64_t batch_off(const dbr_tinfo *t, const dbr_tinfo *o, const int64_t *oidx) {
    int k = o->ndim - t->ndim;
    int64_t f = 0;
    for (int d = 0; d < t->ndim - 2; d++)
        f = f * t->shape[d] + (t->shape[d] == 1 ? 0 : oidx[d + k]);
    return f * t->shape[t->ndim - 2] * t->shape[t->ndim - 1];
}

static void ref_matmul(const dbr_node *n, double *const in[], double *out) {
    const dbr_tinfo *A = &n->in[0], *B = &n->in[1], *O = &n->out;
    bool ta = n->a.i[0] != 0, tb = n->a.i[1] != 0;
    int64_t K = ta ? A->shape[A->ndim - 2] : A->shape[A->ndim - 1];
    int64_t ar = A->shape[A->ndim - 1], br = B->shape[B->ndim - 1], idx[MAXD];
    for (int64_t f = 0; f < numel(O); f++) {
        unravel(f, O, idx);
        int64_t m = idx[O->ndim - 2], j = idx[O->ndim - 1];
        int64_t ao = batch_off(A, O, idx), bo = batch_off(B, O, idx);
        double s = 0;
        for (int64_t k = 0; k < K; k++) {
            double a = ta ? in[0][ao + k * ar + m] : in[0][ao + m * ar + k];
            double b = tb ? in[1][bo + j * br + k] : in[1][bo + k * br + j];
            s += a * b;
        }
        out[f] = s;
    }
}

/* Direct convolution loops. mode 0: y = conv(x, w); 1: gx from (gy, w);
 * 2: gw from (x, gy). xs, ws: the shapes of x and w. */
static void conv_loops(const int64_t *a, const int64_t *xs, const int64_t *ws, int mode,
                       const double *x, const double *w, const double *y, double *res) {
    int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
    int64_t O = ws[0], Cg = ws[1], KH = ws[2], KW = ws[3];
    int64_t sh = a[0], sw = a[1], ph = a[2], pw = a[3], dh = a[4], dw = a[5], G = a[6];
    int64_t OH = (H + 2 * ph - dh * (KH - 1) - 1) / sh + 1;
    int64_t OW = (W + 2 * pw - dw * (KW - 1) - 1) / sw + 1;
    if (mode == 1) memset(res, 0, (size_t)(N * C * H * W) * sizeof *res);
    if (mode == 2) memset(res, 0, (size_t)(O * Cg * KH * KW) * sizeof *res);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int64_t g = o / (O / G), yi = ((n * O + o) * OH + oh) * OW + ow;
                    double acc = 0;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t kh = 0; kh < KH; kh++)
                            for (int64_t kw = 0; kw < KW; kw++) {
                                int64_t ih = oh * sh - ph + kh * dh, iw = ow * sw - pw + kw * dw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                int64_t xi = ((n * C + g * Cg + c) * H + ih) * W + iw;
                                int64_t wi = ((o * Cg + c) * KH + kh) * KW + kw;
                                if (mode == 0) acc += x[xi] * w[wi];
                                if (mode == 1) res[xi] += y[yi] * w[wi];
                                if (mode == 2) res[wi] += y[yi] * x[xi];
                            }
                    if (mode == 0) res[yi] = acc;
                }
}

/* Pooling loops; mode 0 max, 1 avg, 2 max backward, 3 avg backward.
 * xs: x's shape; x (modes 0-2) and gy (modes 2-3) as given. */
static void pool_loops(const int64_t *a, const int64_t *xs, int mode, const double *x,
                       const double *gy, double *res) {
    int64_t k = a[0], s = a[1], p = a[2], NC = xs[0] * xs[1], H = xs[2], W = xs[3];
    int64_t OH = (H + 2 * p - k) / s + 1, OW = (W + 2 * p - k) / s + 1;
    if (mode >= 2) memset(res, 0, (size_t)(NC * H * W) * sizeof *res);
    for (int64_t nc = 0; nc < NC; nc++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t yi = (nc * OH + oh) * OW + ow, best_i = -1;
                double best = -INFINITY, sum = 0;
                for (int64_t kh = 0; kh < k; kh++)
                    for (int64_t kw = 0; kw < k; kw++) {
                        int64_t ih = oh * s - p + kh, iw = ow * s - p + kw;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        int64_t xi = (nc * H + ih) * W + iw;
                        if (mode == 3) {
                            res[xi] += gy[yi] / (double)(k * k);
                            continue;
                        }
                        if (x[xi] > best) best = x[xi], best_i = xi;
                        sum += x[xi];
                    }
                if (mode == 0) res[yi] = best;
                if (mode == 1) res[yi] = sum / (double)(k * k);
                if (mode == 2) res[best_i] += gy[yi];
            }
}

/* Batch statistics per channel of x [N, C, ...] (biased variance). */
static void bn_moments(const dbr_tinfo *t, const double *x, double *mean, double *var) {
    int64_t N = t->shape[0], C = t->shape[1], in = prod(t->shape, 2, t->ndim), M = N * in;
    for (int64_t c = 0; c < C; c++) {
        double s = 0, q = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < in; i++) s += x[(n * C + c) * in + i];
        mean[c] = s / (double)M;
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < in; i++) {
                double d = x[(n * C + c) * in + i] - mean[c];
                q += d * d;
            }
        var[c] = q / (double)M;
    }
}

/* Shared by batch_norm (groups: channels) and layer_norm (groups: rows):
 * elem(g, j) is the j-th element of group g. */
typedef struct normg {
    int64_t groups, M;
    const dbr_tinfo *t;
    bool bn;
} normg;
static int64_t norm_elem(const normg *g, int64_t grp, int64_t j) {
    if (!g->bn) return grp * g->M + j;
    int64_t C = g->t->shape[1], in = prod(g->t->shape, 2, g->t->ndim);
    return ((j / in) * C + grp) * in + j % in;
}
static normg norm_groups(const dbr_node *n) {
    const dbr_tinfo *t = &n->in[0];
    bool bn = n->op == DBR_OP_BATCH_NORM || n->op == DBR_OP_BATCH_NORM_BWD;
    normg g = {.t = t, .bn = bn};
    g.groups = bn ? t->shape[1] : numel(t) / t->shape[t->ndim - 1];
    g.M = numel(t) / g.groups;
    return g;
}

/* y = (x - mean) / sqrt(var + eps) * gamma + beta; gamma, beta indexed by
 * channel (bn) or by position in the row (ln). */
static void ref_norm(const dbr_node *n, double *const in[], double *out) {
    normg g = norm_groups(n);
    double eps = n->a.f[0];
    for (int64_t grp = 0; grp < g.groups; grp++) {
        double s = 0, q = 0;
        for (int64_t j = 0; j < g.M; j++) s += in[0][norm_elem(&g, grp, j)];
        double mean = s / (double)g.M;
        for (int64_t j = 0; j < g.M; j++) {
            double d = in[0][norm_elem(&g, grp, j)] - mean;
            q += d * d;
        }
        double rstd = 1.0 / sqrt(q / (double)g.M + eps);
        for (int64_t j = 0; j < g.M; j++) {
            int64_t e = norm_elem(&g, grp, j), pi = g.bn ? grp : j;
            double gam = n->n_in > 1 ? in[1][pi] : 1.0, bet = n->n_in > 2 ? in[2][pi] : 0.0;
            out[e] = (in[0][e] - mean) * rstd * gam + bet;
        }
    }
}

/* (x, gy[, gamma]) -> dx = rstd*(g - mean(g) - xhat*mean(g*xhat)), g = gy*gamma */
static void ref_norm_bwd(const dbr_node *n, double *const in[], double *out) {
    normg g = norm_groups(n);
    double eps = n->a.f[0];
    for (int64_t grp = 0; grp < g.groups; grp++) {
        double s = 0, q = 0, sg = 0, sgx = 0;
        for (int64_t j = 0; j < g.M; j++) s += in[0][norm_elem(&g, grp, j)];
        double mean = s / (double)g.M;
        for (int64_t j = 0; j < g.M; j++) {
            double d = in[0][norm_elem(&g, grp, j)] - mean;
            q += d * d;
        }
        double rstd = 1.0 / sqrt(q / (double)g.M + eps);
        for (int64_t j = 0; j < g.M; j++) {
            int64_t e = norm_elem(&g, grp, j), pi = g.bn ? grp : j;
            double gg = in[1][e] * (n->n_in > 2 ? in[2][pi] : 1.0);
            sg += gg;
            sgx += gg * (in[0][e] - mean) * rstd;
        }
        for (int64_t j = 0; j < g.M; j++) {
            int64_t e = norm_elem(&g, grp, j), pi = g.bn ? grp : j;
            double gg = in[1][e] * (n->n_in > 2 ? in[2][pi] : 1.0), xh = (in[0][e] - mean) * rstd;
            out[e] = rstd * (gg - sg / (double)g.M - xh * sgx / (double)g.M);
        }
    }
}

static void ref_softmax(const dbr_node *n, double *const in[], double *out) {
    const dbr_tinfo *t = &n->in[0];
    int ax = (int)n->a.i[0];
    int64_t outer = prod(t->shape, 0, ax), L = t->shape[ax], inner = prod(t->shape, ax + 1, t->ndim);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const double *x = in[0] + o * L * inner + i;
            double *y = out + o * L * inner + i, mx = -INFINITY, s = 0;
            for (int64_t l = 0; l < L; l++) mx = fmax(mx, x[l * inner]);
            for (int64_t l = 0; l < L; l++) s += exp(x[l * inner] - mx);
            for (int64_t l = 0; l < L; l++)
                y[l * inner] = n->op == DBR_OP_SOFTMAX ? exp(x[l * inner] - mx) / s
                                                       : x[l * inner] - mx - log(s);
        }
}

/* cross_entropy (z, labels) -> mean NLL; _bwd (z, labels, gy) -> dz */
static void ref_ce(const dbr_node *n, double *const in[], double *out) {
    int64_t N = n->in[0].shape[0], C = n->in[0].shape[1];
    double loss = 0;
    for (int64_t r = 0; r < N; r++) {
        const double *z = in[0] + r * C;
        int64_t lab = (int64_t)in[1][r];
        double mx = -INFINITY, s = 0;
        for (int64_t c = 0; c < C; c++) mx = fmax(mx, z[c]);
        for (int64_t c = 0; c < C; c++) s += exp(z[c] - mx);
        loss += mx + log(s) - z[lab];
        if (n->op == DBR_OP_CROSS_ENTROPY_BWD)
            for (int64_t c = 0; c < C; c++)
                out[r * C + c] = (exp(z[c] - mx) / s - (c == lab)) * in[2][0] / (double)N;
    }
    if (n->op == DBR_OP_CROSS_ENTROPY) out[0] = loss / (double)N;
}

static void ref_embedding(const dbr_node *n, double *const in[], double *out) {
    if (n->op == DBR_OP_EMBEDDING) {
        int64_t D = n->in[0].shape[1], R = numel(&n->in[1]);
        for (int64_t r = 0; r < R; r++)
            for (int64_t d = 0; d < D; d++) out[r * D + d] = in[0][(int64_t)in[1][r] * D + d];
    } else {
        int64_t D = n->out.shape[1], R = numel(&n->in[0]);
        memset(out, 0, (size_t)numel(&n->out) * sizeof *out);
        for (int64_t r = 0; r < R; r++)
            for (int64_t d = 0; d < D; d++) out[(int64_t)in[0][r] * D + d] += in[1][r * D + d];
    }
}

static void ref_move(const dbr_node *n, double *const in[], double *out) {
    const dbr_tinfo *x = &n->in[0], *o = &n->out;
    const int64_t *a = n->a.i;
    int64_t idx[MAXD], j[MAXD];
    if (n->op == DBR_OP_SLICE_BWD) memset(out, 0, (size_t)numel(o) * sizeof *out);
    int64_t m = n->op == DBR_OP_SLICE_BWD ? numel(x) : numel(o);
    for (int64_t f = 0; f < m; f++) {
        switch (n->op) {
        case DBR_OP_RESHAPE: out[f] = in[0][f]; break;
        case DBR_OP_BROADCAST_TO:
            unravel(f, o, idx);
            out[f] = in[0][bcast_off(x, o, idx)];
            break;
        case DBR_OP_PERMUTE:
            unravel(f, o, idx);
            for (int d = 0; d < o->ndim; d++) j[a[1 + d]] = idx[d];
            out[f] = in[0][ravel(x, j)];
            break;
        case DBR_OP_SLICE:
            unravel(f, o, idx);
            idx[a[0]] = a[1] + idx[a[0]] * a[3];
            out[f] = in[0][ravel(x, idx)];
            break;
        case DBR_OP_SLICE_BWD:
            unravel(f, x, idx);
            idx[a[0]] = a[1] + idx[a[0]] * a[3];
            out[ravel(o, idx)] = in[0][f];
            break;
        case DBR_OP_CONCAT: {
            unravel(f, o, idx);
            int i = 0;
            while (idx[a[0]] >= n->in[i].shape[a[0]]) idx[a[0]] -= n->in[i++].shape[a[0]];
            out[f] = in[i][ravel(&n->in[i], idx)];
            break;
        }
        default: out[f] = NAN;
        }
    }
}

static void reference(const dbr_node *n, double *const in[], double *out) {
    if (ew_like(n->op)) return ref_ew(n, in, out);
    const int64_t *a = n->a.i;
    switch (n->op) {
    case DBR_OP_SUM: case DBR_OP_MEAN: case DBR_OP_MAX: ref_red(n, in, out); break;
    case DBR_OP_MAX_BWD: ref_max_bwd(n, in, out); break;
    case DBR_OP_MATMUL: ref_matmul(n, in, out); break;
    case DBR_OP_CONV2D: conv_loops(a, n->in[0].shape, n->in[1].shape, 0, in[0], in[1], NULL, out); break;
    case DBR_OP_CONV2D_BWD_DATA: conv_loops(a, a + 8, n->in[1].shape, 1, NULL, in[1], in[0], out); break;
    case DBR_OP_CONV2D_BWD_WEIGHT: conv_loops(a, n->in[0].shape, a + 8, 2, in[0], NULL, in[1], out); break;
    case DBR_OP_MAX_POOL2D: pool_loops(a, n->in[0].shape, 0, in[0], NULL, out); break;
    case DBR_OP_AVG_POOL2D: pool_loops(a, n->in[0].shape, 1, in[0], NULL, out); break;
    case DBR_OP_MAX_POOL2D_BWD: pool_loops(a, n->in[0].shape, 2, in[0], in[1], out); break;
    case DBR_OP_AVG_POOL2D_BWD: pool_loops(a, a + 8, 3, NULL, in[0], out); break;
    case DBR_OP_BATCH_NORM: case DBR_OP_LAYER_NORM: ref_norm(n, in, out); break;
    case DBR_OP_BATCH_NORM_BWD: case DBR_OP_LAYER_NORM_BWD: ref_norm_bwd(n, in, out); break;
    case DBR_OP_BN_STATS: {
        int64_t C = n->in[0].shape[1];
        bn_moments(&n->in[0], in[0], out, out + C);
        break;
    }
    case DBR_OP_SOFTMAX: case DBR_OP_LOG_SOFTMAX: ref_softmax(n, in, out); break;
    case DBR_OP_CROSS_ENTROPY: case DBR_OP_CROSS_ENTROPY_BWD: ref_ce(n, in, out); break;
    case DBR_OP_EMBEDDING: case DBR_OP_EMBEDDING_BWD: ref_embedding(n, in, out); break;
    default: ref_move(n, in, out); break;
    }
}

/* The output type each op must infer, derived naively from its definition. */
static void expect_out(const dbr_node *n, dbr_tinfo *o) {
    const dbr_tinfo *x = &n->in[0];
    const int64_t *a = n->a.i;
    memset(o, 0, sizeof *o);
    o->dtype = x->dtype;
    o->ndim = x->ndim;
    memcpy(o->shape, x->shape, sizeof o->shape);
    if (dbr_ops[n->op].cat == DBR_CAT_OPTIM) { /* a [] token */
        o->ndim = 0;
        return;
    }
    if (ew_like(n->op)) {
        o->ndim = 0;
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i].ndim > o->ndim) o->ndim = n->in[i].ndim;
        for (int d = 0; d < o->ndim; d++) o->shape[d] = 1;
        for (int i = 0; i < n->n_in; i++) {
            int k = o->ndim - n->in[i].ndim;
            for (int d = 0; d < n->in[i].ndim; d++)
                if (n->in[i].shape[d] != 1) o->shape[d + k] = n->in[i].shape[d];
        }
        if (n->op == DBR_OP_WHERE) o->dtype = n->in[1].dtype;
        return;
    }
    switch (n->op) {
    case DBR_OP_SUM: case DBR_OP_MEAN: case DBR_OP_MAX:
        o->ndim = 0;
        for (int d = 0; d < x->ndim; d++) {
            if (!(a[0] >> d & 1))
                o->shape[o->ndim++] = x->shape[d];
            else if (a[1])
                o->shape[o->ndim++] = 1;
        }
        break;
    case DBR_OP_MATMUL: {
        const dbr_tinfo *A = &n->in[0], *B = &n->in[1];
        int ba = A->ndim - 2, bb = B->ndim - 2, nb = ba > bb ? ba : bb;
        for (int d = 0; d < nb; d++) {
            int64_t da = d - (nb - ba) >= 0 ? A->shape[d - (nb - ba)] : 1;
            int64_t db = d - (nb - bb) >= 0 ? B->shape[d - (nb - bb)] : 1;
            o->shape[d] = da == 1 ? db : da;
        }
        o->ndim = nb + 2;
        o->shape[nb] = a[0] ? A->shape[ba + 1] : A->shape[ba];
        o->shape[nb + 1] = a[1] ? B->shape[bb] : B->shape[bb + 1];
        break;
    }
    case DBR_OP_CONV2D: {
        const int64_t *w = n->in[1].shape;
        o->shape[1] = w[0];
        o->shape[2] = (x->shape[2] + 2 * a[2] - a[4] * (w[2] - 1) - 1) / a[0] + 1;
        o->shape[3] = (x->shape[3] + 2 * a[3] - a[5] * (w[3] - 1) - 1) / a[1] + 1;
        break;
    }
    case DBR_OP_CONV2D_BWD_DATA: case DBR_OP_CONV2D_BWD_WEIGHT: case DBR_OP_AVG_POOL2D_BWD:
        o->ndim = 4;
        memcpy(o->shape, a + 8, 4 * sizeof *a);
        break;
    case DBR_OP_MAX_POOL2D: case DBR_OP_AVG_POOL2D:
        o->shape[2] = (x->shape[2] + 2 * a[2] - a[0]) / a[1] + 1;
        o->shape[3] = (x->shape[3] + 2 * a[2] - a[0]) / a[1] + 1;
        break;
    case DBR_OP_BN_STATS:
        o->ndim = 2;
        o->shape[0] = 2;
        o->shape[1] = x->shape[1];
        break;
    case DBR_OP_CROSS_ENTROPY: o->ndim = 0; break;
    case DBR_OP_EMBEDDING:
        *o = n->in[1];
        o->dtype = x->dtype;
        o->shape[o->ndim++] = x->shape[1];
        break;
    case DBR_OP_EMBEDDING_BWD:
        o->dtype = n->in[1].dtype;
        o->ndim = 2;
        o->shape[0] = a[0];
        o->shape[1] = n->in[1].shape[n->in[1].ndim - 1];
        break;
    case DBR_OP_RESHAPE: case DBR_OP_BROADCAST_TO:
        o->ndim = (int)a[0];
        memcpy(o->shape, a + 1, (size_t)a[0] * sizeof *a);
        break;
    case DBR_OP_PERMUTE:
        for (int d = 0; d < x->ndim; d++) o->shape[d] = x->shape[a[1 + d]];
        break;
    case DBR_OP_SLICE: o->shape[a[0]] = (a[2] - a[1] + a[3] - 1) / a[3]; break;
    case DBR_OP_SLICE_BWD: o->shape[a[0]] = a[4]; break;
    case DBR_OP_CONCAT:
        for (int i = 1; i < n->n_in; i++) o->shape[a[0]] += n->in[i].shape[a[0]];
        break;
    default: break; /* same type as input 0 */
    }
}

/* ---- data ------------------------------------------------------------------ */
static void *to_native(const double *x, int64_t m, int dt) {
    void *p = malloc((size_t)(m ? m : 1) * dt_size(dt));
    assert_non_null(p);
    for (int64_t j = 0; j < m; j++) {
        switch (dt) {
        case DT_F32: ((float *)p)[j] = (float)x[j]; break;
        case DT_F64: ((double *)p)[j] = x[j]; break;
        case DT_I32: ((int32_t *)p)[j] = (int32_t)x[j]; break;
        default: ((int64_t *)p)[j] = (int64_t)x[j]; break;
        }
    }
    return p;
}
static void from_native(const void *p, int64_t m, int dt, double *x) {
    for (int64_t j = 0; j < m; j++) {
        switch (dt) {
        case DT_F32: x[j] = ((const float *)p)[j]; break;
        case DT_F64: x[j] = ((const double *)p)[j]; break;
        case DT_I32: x[j] = ((const int32_t *)p)[j]; break;
        default: x[j] = (double)((const int64_t *)p)[j]; break;
        }
    }
}
static double *dalloc(int64_t m) {
    double *p = malloc((size_t)(m ? m : 1) * sizeof *p);
    assert_non_null(p);
    return p;
}

static void gen_values(rng *r, int gen, int64_t ihi, double *x, int64_t m) {
    for (int64_t j = 0; j < m; j++) {
        switch (gen) {
        case G_AWAY: x[j] = (rng_u64(r) & 1 ? 1 : -1) * rng_uni(r, 0.5, 2.0); break;
        case G_POS: x[j] = rng_uni(r, 0.5, 2.0); break;
        case G_TIES: x[j] = (double)rng_int(r, 3); break;
        case G_INT: x[j] = (double)rng_int(r, ihi); break;
        case G_RELU_OUT: x[j] = fmax(0.0, rng_uni(r, -1.0, 1.0)); break;
        case G_DISTINCT: x[j] = (double)j; break;
        default: x[j] = rng_uni(r, -2.0, 2.0); break;
        }
    }
    if (gen == G_DISTINCT) { /* a shuffled grid, spaced far wider than eps */
        for (int64_t j = m - 1; j > 0; j--) {
            int64_t k = rng_int(r, j + 1);
            double t = x[j];
            x[j] = x[k];
            x[k] = t;
        }
        for (int64_t j = 0; j < m; j++) x[j] = (x[j] - (double)m / 2) * (3.0 / (double)m);
    }
}

/* Build the node of case c with the float dtype fdt. */
static void case_node(const tcase *c, int fdt, dbr_node *n) {
    memset(n, 0, sizeof *n);
    n->op = c->op;
    n->n_in = c->n_in;
    n->a = c->a;
    n->api = "test_ops";
    n->file = __FILE__;
    n->line = __LINE__;
    for (int i = 0; i < c->n_in; i++) {
        n->in[i].dtype = c->in[i].dt == FLT ? fdt : c->in[i].dt;
        n->in[i].ndim = c->in[i].nd;
        memcpy(n->in[i].shape, c->in[i].sh, sizeof n->in[i].shape);
    }
}

/* Inputs as doubles, already rounded to their dtype. */
static void case_inputs(const tcase *c, const dbr_node *n, rng *r, double *in[]) {
    for (int i = 0; i < n->n_in; i++) {
        int64_t m = numel(&n->in[i]);
        int gen = c->gen[i];
        bool integral = !is_float(n->in[i].dtype);
        if (integral && gen != G_INT) gen = G_INT;
        in[i] = dalloc(m);
        gen_values(r, gen, c->ihi[i] ? c->ihi[i] : 1000, in[i], m);
        if (n->in[i].dtype == DT_F32)
            for (int64_t j = 0; j < m; j++) in[i][j] = (float)in[i][j];
    }
    if (c->prep) c->prep(n, in);
}

static bool case_has_float(const tcase *c) {
    for (int i = 0; i < c->n_in; i++)
        if (c->in[i].dt == FLT) return true;
    return false;
}

static int exec(const dbr_node *n, void *const raw[], void *out) {
    const void *p[MAXS];
    for (int i = 0; i < n->n_in; i++) p[i] = raw[i];
    return dbr_cpu_exec(n, p, out);
}

/* Compare got to ref: |got - ref| <= tol * max(1, |ref|). */
static int compare(const char *desc, const char *what, const dbr_tinfo *t, const double *ref,
                   const double *got, double tol) {
    int bad = 0;
    double worst = 0;
    for (int64_t f = 0; f < numel(t); f++) {
        double d = fabs(got[f] - ref[f]);
        if (d <= tol * fmax(1.0, fabs(ref[f]))) continue;
        if (!(d <= worst)) worst = d;
        if (bad++ < 4) {
            int64_t idx[MAXD];
            char s[128];
            size_t at = 0;
            unravel(f, t, idx);
            for (int k = 0; k < t->ndim; k++)
                at += (size_t)snprintf(s + at, sizeof s - at, k ? ",%lld" : "%lld", (long long)idx[k]);
            s[at] = '\0';
            FAIL("%s: %s at [%s]: expected %.17g, got %.17g", desc, what, s, ref[f], got[f]);
        }
    }
    if (bad > 4) FAIL("%s: %s: %d of %lld elements differ (tol %g, worst %g)", desc, what, bad,
                      (long long)numel(t), tol, worst);
    return bad;
}

/* ---- optimizer updates: they write their inputs 0, 2, 3 ----------------------- */
/* The update in float64 from the original inputs; upd[i] gets the expected
 * new value of input i (0: parameter, 2, 3: state). */
static void ref_update(const dbr_node *n, double *const in[], double *upd[4]) {
    const double *a = n->a.f;
    int64_t m = numel(&n->in[0]);
    for (int64_t j = 0; j < m; j++) {
        double p = in[0][j], g = in[1][j];
        if (n->op == DBR_OP_SGD_UPDATE) {
            upd[0][j] = p - a[0] * (g + a[1] * p);
        } else if (n->op == DBR_OP_MOMENTUM_UPDATE) {
            double gp = g + a[2] * p, v = a[1] * in[2][j] + gp;
            upd[2][j] = v;
            upd[0][j] = p - a[0] * (n->a.i[0] ? gp + a[1] * v : v);
        } else {
            double wd;
            memcpy(&wd, &n->a.i[2], sizeof wd);
            int dec = (int)n->a.i[0];
            double t = (double)n->a.i[1];
            if (dec) p *= 1 - a[0] * wd;
            double gp = g + (dec ? 0 : wd) * p;
            double mm = a[1] * in[2][j] + (1 - a[1]) * gp, vv = a[2] * in[3][j] + (1 - a[2]) * gp * gp;
            double bc1 = 1 - pow(a[1], t), bc2 = 1 - pow(a[2], t);
            upd[2][j] = mm;
            upd[3][j] = vv;
            upd[0][j] = p - a[0] / bc1 * mm / (sqrt(vv) / sqrt(bc2) + a[3]);
        }
    }
}

static void check_update(const dbr_node *n, double *const in[], void *const raw[], int fdt,
                         const char *desc) {
    int64_t m = numel(&n->in[0]);
    double *want[4] = {0}, *got = dalloc(m);
    for (int i = 0; i < 4; i++) want[i] = dalloc(m);
    ref_update(n, in, want);
    double tol = fdt == DT_F64 ? 1e-12 : 1e-5;
    static const int written[] = {0, 2, 3};
    for (int k = 0; k < 3; k++) {
        int i = written[k];
        if (i >= n->n_in) continue;
        from_native(raw[i], m, n->in[i].dtype, got);
        compare(desc, i == 0 ? "updated parameter" : "updated state", &n->in[i], want[i], got, tol);
    }
    from_native(raw[1], m, n->in[1].dtype, got); /* the gradient is only read */
    if (memcmp(got, in[1], (size_t)m * sizeof *got)) FAIL("%s: the update modified the gradient", desc);
    for (int i = 0; i < 4; i++) free(want[i]);
    free(got);
}

/* ---- forward ---------------------------------------------------------------- */
static void run_forward(const tcase *c, uint64_t seed, int fdt) {
    dbr_node n;
    char desc[512], err[512], s1[96], s2[96];
    case_node(c, fdt, &n);
    node_desc(&n, desc, sizeof desc);
    if (dbr_infer(&n, err, sizeof err)) {
        FAIL("%s: dbr_infer failed: %s", desc, err);
        return;
    }
    dbr_tinfo want;
    expect_out(&n, &want);
    if (!same_type(&want, &n.out)) {
        FAIL("%s: inferred %s %s, expected %s %s", desc, shape_s(&n.out, s1, sizeof s1),
             dt_s(n.out.dtype), shape_s(&want, s2, sizeof s2), dt_s(want.dtype));
        return;
    }
    rng r = {seed};
    double *in[MAXS] = {0};
    void *raw[MAXS] = {0};
    case_inputs(c, &n, &r, in);
    for (int i = 0; i < n.n_in; i++) raw[i] = to_native(in[i], numel(&n.in[i]), n.in[i].dtype);
    int64_t m = numel(&n.out);
    void *out = malloc((size_t)(m ? m : 1) * dt_size(n.out.dtype));
    assert_non_null(out);
    memset(out, 0xff, (size_t)m * dt_size(n.out.dtype)); /* NaN: unwritten shows */
    double *got = dalloc(m), *ref = dalloc(m);
    if (exec(&n, raw, out)) {
        FAIL("%s: dbr_cpu_exec returned an error", desc);
        goto done;
    }
    from_native(out, m, n.out.dtype, got);
    if (dbr_ops[n.op].cat == DBR_CAT_OPTIM) {
        check_update(&n, in, raw, fdt, desc);
        goto done;
    }
    for (int i = 0; i < n.n_in; i++) { /* kernels must not write their inputs */
        double *back = dalloc(numel(&n.in[i]));
        from_native(raw[i], numel(&n.in[i]), n.in[i].dtype, back);
        if (memcmp(back, in[i], (size_t)numel(&n.in[i]) * sizeof *back))
            FAIL("%s: the kernel modified input %d", desc, i);
        free(back);
    }
    if (c->check) {
        n_fail += c->check(&n, in, got);
    } else {
        reference(&n, in, ref);
        double tol = !is_float(n.out.dtype) ? 0.0
                     : fdt == DT_F64        ? 1e-12
                     : c->tol32 > 0         ? c->tol32
                                            : 1e-5;
        compare(desc, "forward", &n.out, ref, got, tol);
    }
done:
    for (int i = 0; i < n.n_in; i++) free(in[i]), free(raw[i]);
    free(out);
    free(got);
    free(ref);
}

/* ---- the test builder: every emitted op runs at once, in float64 ------------- */
struct dbr_val {
    dbr_tinfo t;
    void *data;
    dbr_val *next;
};
typedef struct tbld {
    dbr_bld b;
    dbr_val *vals;  /* the arena, freed by tb_free */
    char err[1200];
    int emits;
    bool null_info; /* info() was asked about a NULL value */
} tbld;

static dbr_val *tb_new(tbld *tb, const dbr_tinfo *t, const void *data) {
    dbr_val *v = calloc(1, sizeof *v);
    assert_non_null(v);
    v->t = *t;
    size_t bytes = (size_t)numel(t) * dt_size(t->dtype);
    v->data = malloc(bytes ? bytes : 1);
    assert_non_null(v->data);
    if (data) memcpy(v->data, data, bytes);
    v->next = tb->vals;
    tb->vals = v;
    return v;
}

static dbr_val *tb_emit(dbr_bld *b, dbr_op op, int n_in, dbr_val *const in[], const dbr_attrs *a) {
    tbld *tb = (tbld *)b;
    dbr_node n = {.op = op, .n_in = n_in, .api = "grad rule", .file = __FILE__, .line = __LINE__};
    char err[512], desc[512];
    tb->emits++;
    if (op < 0 || op >= DBR_OP_COUNT || n_in < 1 || n_in > MAXS) {
        snprintf(tb->err, sizeof tb->err, "emit: bad op %d or n_in %d", (int)op, n_in);
        return NULL;
    }
    if (a) n.a = *a;
    for (int i = 0; i < n_in; i++) {
        if (!in[i]) {
            snprintf(tb->err, sizeof tb->err,
                     "emit %s: input %d is NULL (a value the retain mask does not keep?)",
                     dbr_ops[op].name, i);
            return NULL;
        }
        n.in[i] = in[i]->t;
    }
    if (dbr_infer(&n, err, sizeof err)) {
        snprintf(tb->err, sizeof tb->err, "emit %s: dbr_infer: %s", node_desc(&n, desc, sizeof desc),
                 err);
        return NULL;
    }
    dbr_val *v = tb_new(tb, &n.out, NULL);
    void *raw[MAXS];
    for (int i = 0; i < n_in; i++) raw[i] = in[i]->data;
    if (exec(&n, raw, v->data)) {
        snprintf(tb->err, sizeof tb->err, "emit %s: dbr_cpu_exec failed",
                 node_desc(&n, desc, sizeof desc));
        return NULL;
    }
    return v;
}

static dbr_val *tb_scalar(dbr_bld *b, double x, int32_t dtype) {
    dbr_tinfo t = {.dtype = dtype, .ndim = 0};
    dbr_val *v = tb_new((tbld *)b, &t, NULL);
    void *p = to_native(&x, 1, dtype);
    memcpy(v->data, p, dt_size(dtype));
    free(p);
    return v;
}

static const dbr_tinfo *tb_info(dbr_bld *b, dbr_val *v) {
    static const dbr_tinfo none = {.dtype = DT_F64, .ndim = 0};
    if (!v) {
        ((tbld *)b)->null_info = true;
        return &none;
    }
    return &v->t;
}

static void tb_init(tbld *tb) {
    memset(tb, 0, sizeof *tb);
    tb->b.emit = tb_emit;
    tb->b.scalar = tb_scalar;
    tb->b.info = tb_info;
    tb->b.user = tb;
}

static void tb_free(tbld *tb) {
    for (dbr_val *v = tb->vals, *nx; v; v = nx) {
        nx = v->next;
        free(v->data);
        free(v);
    }
    tb->vals = NULL;
}

/* ---- gradients -------------------------------------------------------------- */
/* Retained values present in this op's gradient cases, and those a rule read. */
static unsigned retain_seen, retain_used;

static bool has_grad_case(const tcase *c) {
    if (!dbr_op_differentiable(c->op) || (c->flags & F_NOGRAD)) return false;
    for (int i = 0; i < c->n_in; i++)
        if (c->in[i].dt == FLT && !(c->nodiff >> i & 1)) return true;
    return false;
}

/* L = sum(gy * f(x)) with the (already verified) f64 kernel. */
static double loss_at(const dbr_node *n, void *const raw[], double *ybuf, const double *gy) {
    if (exec(n, raw, ybuf)) return NAN;
    double L = 0;
    for (int64_t f = 0; f < numel(&n->out); f++) L += gy[f] * ybuf[f];
    return L;
}

typedef struct gset {
    dbr_val *gx[MAXS];
    int rc;
} gset;

/* dbr_grad given only the values in `keep` (a retain mask). */
static gset call_grad_keep(tbld *tb, const dbr_node *n, dbr_val *const vin[], dbr_val *vout,
                           dbr_val *vgy, const bool needs[], unsigned keep) {
    dbr_gnode g = {.op = n->op, .n_in = n->n_in, .in_t = n->in, .out_t = &n->out, .a = &n->a};
    for (int i = 0; i < n->n_in; i++) g.in[i] = keep & R_IN(i) ? vin[i] : NULL;
    g.out = keep & R_OUT ? vout : NULL;
    gset s = {{0}, 0};
    s.rc = dbr_grad(&tb->b, &g, vgy, needs, s.gx);
    return s;
}

static gset call_grad(tbld *tb, const dbr_node *n, dbr_val *const vin[], dbr_val *vout,
                      dbr_val *vgy, const bool needs[]) {
    return call_grad_keep(tb, n, vin, vout, vgy, needs, dbr_ops[n->op].retain);
}
static void run_grad(const tcase *c, uint64_t seed) {
    dbr_node n;
    char desc[512], err[512], s1[96], s2[96];
    case_node(c, DT_F64, &n);
    node_desc(&n, desc, sizeof desc);
    if (dbr_infer(&n, err, sizeof err)) return; /* reported by the forward pass */
    rng r = {seed ^ 0x5eed};
    double *in[MAXS] = {0};
    void *raw[MAXS] = {0};
    case_inputs(c, &n, &r, in);
    for (int i = 0; i < n.n_in; i++) raw[i] = to_native(in[i], numel(&n.in[i]), n.in[i].dtype);
    int64_t m = numel(&n.out);
    double *y = dalloc(m), *gy = dalloc(m), *ybuf = dalloc(m);
    gen_values(&r, G_ANY, 0, gy, m);
    tbld tb;
    tb_init(&tb);
    dbr_val *vin[MAXS] = {0}, *vout = NULL, *vgy = NULL;
    bool needs[MAXS] = {0};
    int n_need = 0;
    if (exec(&n, raw, y)) goto done;
    for (int i = 0; i < n.n_in; i++) {
        vin[i] = tb_new(&tb, &n.in[i], raw[i]);
        needs[i] = is_float(n.in[i].dtype) && !(c->nodiff >> i & 1);
        n_need += needs[i];
    }
    vout = tb_new(&tb, &n.out, y);
    vgy = tb_new(&tb, &n.out, gy);
    gset all = call_grad(&tb, &n, vin, vout, vgy, needs);
    if (all.rc) {
        FAIL("%s: dbr_grad returned %d (%s)", desc, all.rc, tb.err[0] ? tb.err : "no emit failed");
        goto done;
    }
    for (int i = 0; i < n.n_in; i++) {
        if (!needs[i]) {
            if (all.gx[i]) FAIL("%s: gx[%d] set though needs[%d] is false", desc, i, i);
            continue;
        }
        int64_t mi = numel(&n.in[i]);
        double *ana = dalloc(mi), *num = dalloc(mi);
        if (all.gx[i] && !same_type(&all.gx[i]->t, &n.in[i])) {
            FAIL("%s: gx[%d] is %s %s, the input is %s %s", desc, i,
                 shape_s(&all.gx[i]->t, s1, sizeof s1), dt_s(all.gx[i]->t.dtype),
                 shape_s(&n.in[i], s2, sizeof s2), dt_s(n.in[i].dtype));
            free(ana), free(num);
            continue;
        }
        if (all.gx[i])
            from_native(all.gx[i]->data, mi, DT_F64, ana);
        else /* NULL: not differentiable; fine only where the function is flat */
            memset(ana, 0, (size_t)mi * sizeof *ana);
        double *xi = raw[i];
        for (int64_t j = 0; j < mi; j++) {
            double x0 = xi[j], xp = x0 + 1e-6, xm = x0 - 1e-6;
            xi[j] = xp;
            double lp = loss_at(&n, raw, ybuf, gy);
            xi[j] = xm;
            double lm = loss_at(&n, raw, ybuf, gy);
            xi[j] = x0;
            num[j] = (lp - lm) / (xp - xm);
        }
        char what[48];
        snprintf(what, sizeof what, "gradient of input %d%s", i, all.gx[i] ? "" : " (gx NULL)");
        compare(desc, what, &n.in[i], num, ana, 1e-6);
        free(ana), free(num);
    }
    /* the rule must not have written its inputs */
    for (int i = 0; i < n.n_in; i++)
        if (memcmp(vin[i]->data, raw[i], (size_t)numel(&n.in[i]) * dt_size(n.in[i].dtype)))
            FAIL("%s: dbr_grad modified input %d", desc, i);
    if (memcmp(vgy->data, gy, (size_t)m * sizeof *gy)) FAIL("%s: dbr_grad modified gy", desc);
    /* one needed input at a time: the others stay NULL, this one agrees */
    for (int k = 0; k < n.n_in && n_need > 1; k++) {
        if (!needs[k]) continue;
        bool one[MAXS] = {0};
        one[k] = true;
        gset s = call_grad(&tb, &n, vin, vout, vgy, one);
        if (s.rc) {
            FAIL("%s: dbr_grad with only needs[%d] returned %d (%s)", desc, k, s.rc, tb.err);
            continue;
        }
        for (int i = 0; i < n.n_in; i++)
            if (i != k && s.gx[i]) FAIL("%s: only needs[%d]: gx[%d] set", desc, k, i);
        if (!s.gx[k] != !all.gx[k]) {
            FAIL("%s: only needs[%d]: gx[%d] %s", desc, k, k, s.gx[k] ? "set" : "NULL");
        } else if (s.gx[k] && same_type(&s.gx[k]->t, &n.in[k])) {
            int64_t mk = numel(&n.in[k]);
            double *a1 = dalloc(mk), *a2 = dalloc(mk);
            from_native(all.gx[k]->data, mk, DT_F64, a1);
            from_native(s.gx[k]->data, mk, DT_F64, a2);
            compare(desc, "gradient with one input needed", &n.in[k], a1, a2, 1e-12);
            free(a1), free(a2);
        }
    }
    /* which retained values the rule reads: withhold each in turn */
    unsigned keep = dbr_ops[n.op].retain;
    for (int k = 0; k <= MAXS; k++) {
        unsigned bit = k < MAXS ? R_IN(k) : R_OUT;
        if (!(keep & bit) || (k < MAXS && k >= n.n_in)) continue;
        retain_seen |= bit;
        tb.null_info = false;
        gset s = call_grad_keep(&tb, &n, vin, vout, vgy, needs, keep & ~bit);
        if (s.rc || tb.null_info) retain_used |= bit;
    }
done:
    tb_free(&tb);
    for (int i = 0; i < n.n_in; i++) free(in[i]), free(raw[i]);
    free(y), free(gy), free(ybuf);
}

/* GRAD ops have no gradient of their own: dbr_grad must say so. */
static void run_no_grad(const tcase *c) {
    dbr_node n;
    char desc[512], err[512];
    case_node(c, DT_F64, &n);
    node_desc(&n, desc, sizeof desc);
    if (dbr_infer(&n, err, sizeof err)) return;
    tbld tb;
    tb_init(&tb);
    dbr_val *vin[MAXS];
    bool needs[MAXS] = {0};
    for (int i = 0; i < n.n_in; i++) {
        vin[i] = tb_new(&tb, &n.in[i], NULL);
        memset(vin[i]->data, 0, (size_t)numel(&n.in[i]) * dt_size(n.in[i].dtype));
        needs[i] = is_float(n.in[i].dtype);
    }
    dbr_val *vout = tb_new(&tb, &n.out, NULL);
    memset(vout->data, 0, (size_t)numel(&n.out) * dt_size(n.out.dtype));
    gset s = call_grad(&tb, &n, vin, vout, vout, needs);
    if (s.rc != -1) FAIL("%s: dbr_grad on a GRAD op returned %d, expected -1", desc, s.rc);
    tb_free(&tb);
}

static void run_case(const tcase *c, int index) {
    uint64_t seed = 0x9e3779b9ull * (uint64_t)(index + 1);
    run_forward(c, seed, DT_F64);
    if (case_has_float(c) && !(c->flags & F_NOF32)) run_forward(c, seed, DT_F32);
    if (!dbr_op_differentiable(c->op))
        run_no_grad(c);
    else if (has_grad_case(c))
        run_grad(c, seed);
}

/* ---- input fix-ups and custom checks ---------------------------------------------- */
static void prep_max_bwd(const dbr_node *n, double *const in[]) {
    dbr_node mx = *n;
    mx.op = DBR_OP_MAX;
    mx.n_in = 1;
    mx.out = n->in[1];
    ref_red(&mx, in, in[1]);
}
static void prep_repeat_idx0(const dbr_node *n, double *const in[]) {
    (void)n;
    in[0][1] = in[0][0];
}
static void prep_repeat_idx1(const dbr_node *n, double *const in[]) {
    (void)n;
    in[1][1] = in[1][0];
    in[1][3] = in[1][0];
}

/* x/(1-p) exactly as the output dtype computes it, either as a division or
 * as a product with the scale 1/(1-p). */
static bool dropout_kept(int dt, double x, double p, double got) {
    if (dt == DT_F64) return got == x / (1.0 - p) || got == x * (1.0 / (1.0 - p));
    float xf = (float)x, sc = (float)(1.0 / (1.0 - p)), prodf = xf * sc;
    return got == (double)prodf || got == (double)(float)(x / (1.0 - p));
}

/* Dropout: every element is 0 or exactly x/(1-p); the kept fraction is
 * plausible. */
static int check_dropout(const dbr_node *n, double *const in[], const double *got) {
    int bad = 0;
    int64_t m = numel(&n->out), dropped = 0;
    double p = n->a.f[0];
    char desc[512];
    node_desc(n, desc, sizeof desc);
    for (int64_t f = 0; f < m; f++) {
        double want = in[0][f] / (1.0 - p);
        if (got[f] == 0.0) {
            dropped++;
        } else if (!dropout_kept(n->out.dtype, in[0][f], p, got[f])) {
            if (bad++ < 4)
                FAIL("%s: element %lld: x %.17g, got %.17g, expected 0 or x/(1-p) = %.17g", desc,
                     (long long)f, in[0][f], got[f], want);
        }
    }
    double sd = sqrt(p * (1 - p) * (double)m);
    if (fabs((double)dropped - p * (double)m) > 5 * sd + 1) {
        bad++;
        FAIL("%s: dropped %lld of %lld, expected about %.1f", desc, (long long)dropped,
             (long long)m, p * (double)m);
    }
    return bad;
}

/* ---- the table ---------------------------------------------------------------- */
static void add_conv(const int64_t xs[4], const int64_t ws[4], int sh, int sw, int ph, int pw,
                     int dh, int dw, int g) {
    dbr_attrs a = {.i = {sh, sw, ph, pw, dh, dw, g}};
    int64_t OH = (xs[2] + 2 * ph - dh * (ws[2] - 1) - 1) / sh + 1;
    int64_t OW = (xs[3] + 2 * pw - dw * (ws[3] - 1) - 1) / sw + 1;
    tcase c = {.op = DBR_OP_CONV2D, .n_in = 2, .a = a,
               .in = {T(FLT, xs[0], xs[1], xs[2], xs[3]), T(FLT, ws[0], ws[1], ws[2], ws[3])}};
    add(c);
    tin ty = T(FLT, xs[0], ws[0], OH, OW);
    tcase bd = {.op = DBR_OP_CONV2D_BWD_DATA, .n_in = 2, .a = a, .in = {ty, c.in[1]}};
    memcpy(bd.a.i + 8, xs, 4 * sizeof *xs);
    add(bd);
    tcase bw = {.op = DBR_OP_CONV2D_BWD_WEIGHT, .n_in = 2, .a = a, .in = {c.in[0], ty}};
    memcpy(bw.a.i + 8, ws, 4 * sizeof *ws);
    add(bw);
}

static void add_pool(const int64_t xs[4], int k, int s, int p) {
    dbr_attrs a = {.i = {k, s, p}};
    tin tx = T(FLT, xs[0], xs[1], xs[2], xs[3]);
    tin ty = T(FLT, xs[0], xs[1], (xs[2] + 2 * p - k) / s + 1, (xs[3] + 2 * p - k) / s + 1);
    add((tcase){.op = DBR_OP_MAX_POOL2D, .n_in = 1, .a = a, .in = {tx}, .gen = {G_DISTINCT}});
    add((tcase){.op = DBR_OP_MAX_POOL2D_BWD, .n_in = 2, .a = a, .in = {tx, ty}, .gen = {G_DISTINCT}});
    add((tcase){.op = DBR_OP_AVG_POOL2D, .n_in = 1, .a = a, .in = {tx}});
    tcase ab = {.op = DBR_OP_AVG_POOL2D_BWD, .n_in = 1, .a = a, .in = {ty}};
    memcpy(ab.a.i + 8, xs, 4 * sizeof *xs);
    add(ab);
}

static void add_red(tin x, int64_t mask, int keep) {
    dbr_attrs a = {.i = {mask, keep}};
    add((tcase){.op = DBR_OP_SUM, .n_in = 1, .a = a, .in = {x}});
    add((tcase){.op = DBR_OP_MEAN, .n_in = 1, .a = a, .in = {x}});
    add((tcase){.op = DBR_OP_MAX, .n_in = 1, .a = a, .in = {x}, .gen = {G_DISTINCT}});
    /* MAX_BWD (x, y, gy) with ties: the gradient splits between them */
    tin y = {FLT, 0, {0}};
    for (int d = 0; d < x.nd; d++) {
        if (!(mask >> d & 1))
            y.sh[y.nd++] = x.sh[d];
        else if (keep)
            y.sh[y.nd++] = 1;
    }
    add((tcase){.op = DBR_OP_MAX_BWD, .n_in = 3, .a = a, .in = {x, y, y}, .gen = {G_TIES},
                .prep = prep_max_bwd});
}

static void add_norm(bool bn, tin x, int n_in) {
    dbr_attrs a = {.f = {1e-5}};
    int64_t P = bn ? x.sh[1] : x.sh[x.nd - 1];
    tin p = T(FLT, P);
    tcase f = {.op = bn ? DBR_OP_BATCH_NORM : DBR_OP_LAYER_NORM, .n_in = n_in, .a = a,
               .in = {x, p, p}};
    add(f);
    tcase b = {.op = bn ? DBR_OP_BATCH_NORM_BWD : DBR_OP_LAYER_NORM_BWD,
               .n_in = n_in > 1 ? 3 : 2, .a = a, .in = {x, x, p}};
    add(b);
    if (bn) add((tcase){.op = DBR_OP_BN_STATS, .n_in = 1, .in = {x}});
}

static void add_ce(int64_t N, int64_t C, int ldt) {
    tin z = T(FLT, N, C), l = T(ldt, N), g = T0(FLT);
    add((tcase){.op = DBR_OP_CROSS_ENTROPY, .n_in = 2, .in = {z, l}, .ihi = {0, C}});
    add((tcase){.op = DBR_OP_CROSS_ENTROPY_BWD, .n_in = 3, .in = {z, l, g}, .ihi = {0, C}});
}

static void add_emb(int64_t V, int64_t D, tin idx) {
    tin w = T(FLT, V, D), gy = idx;
    gy.dt = FLT;
    gy.sh[gy.nd++] = D;
    add((tcase){.op = DBR_OP_EMBEDDING, .n_in = 2, .in = {w, idx}, .ihi = {0, V},
                .prep = prep_repeat_idx1});
    add((tcase){.op = DBR_OP_EMBEDDING_BWD, .n_in = 2, .a = {.i = {V}}, .in = {idx, gy},
                .ihi = {V}, .prep = prep_repeat_idx0});
}

static void add_slice(tin x, int axis, int64_t start, int64_t stop, int64_t step) {
    dbr_attrs a = {.i = {axis, start, stop, step}};
    add((tcase){.op = DBR_OP_SLICE, .n_in = 1, .a = a, .in = {x}});
    if (x.dt != FLT) return;
    tin y = x;
    y.sh[axis] = (stop - start + step - 1) / step;
    a.i[4] = x.sh[axis];
    add((tcase){.op = DBR_OP_SLICE_BWD, .n_in = 1, .a = a, .in = {y}});
}

static void add_perm(tin x, int nd, const int *perm) {
    dbr_attrs a = {.i = {nd}};
    for (int d = 0; d < nd; d++) a.i[1 + d] = perm[d];
    add((tcase){.op = DBR_OP_PERMUTE, .n_in = 1, .a = a, .in = {x}});
}

static void add_shape_op(dbr_op op, tin x, tin to) {
    dbr_attrs a = {.i = {to.nd}};
    for (int d = 0; d < to.nd; d++) a.i[1 + d] = to.sh[d];
    add((tcase){.op = op, .n_in = 1, .a = a, .in = {x}});
}

static void build_cases(void) {
    /* element-wise binary, with broadcasting and scalar operands */
    static const dbr_op bin[] = {DBR_OP_ADD, DBR_OP_SUB, DBR_OP_MUL, DBR_OP_DIV};
    for (size_t k = 0; k < sizeof bin / sizeof *bin; k++) {
        int g1 = bin[k] == DBR_OP_DIV ? G_AWAY : G_ANY;
        tcase c = {.op = bin[k], .n_in = 2, .gen = {G_ANY, g1}};
        tin pairs[][2] = {
            {T(FLT, 3, 1, 5), T(FLT, 4, 1)}, {T(FLT, 7, 13), T0(FLT)}, {T0(FLT), T(FLT, 13)},
            {T(FLT, 2, 3), T(FLT, 2, 3)},    {T(FLT, 1), T(FLT, 7, 1, 1)}, {T0(FLT), T0(FLT)},
            {T(FLT, 4, 1, 3), T(FLT, 2, 1)},
        };
        for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++) {
            c.in[0] = pairs[p][0];
            c.in[1] = pairs[p][1];
            add(c);
        }
    }
    /* element-wise unary */
    static const struct { dbr_op op; int gen; double f0; } un[] = {
        {DBR_OP_NEG, G_ANY, 0},     {DBR_OP_EXP, G_ANY, 0},      {DBR_OP_LOG, G_POS, 0},
        {DBR_OP_SQRT, G_POS, 0},    {DBR_OP_RSQRT, G_POS, 0},    {DBR_OP_POW, G_POS, 2.5},
        {DBR_OP_POW, G_POS, -1.5},  {DBR_OP_POW, G_POS, 3.0},    {DBR_OP_POW, G_POS, 0.5},
        {DBR_OP_ABS, G_AWAY, 0},    {DBR_OP_SIGN, G_AWAY, 0},    {DBR_OP_TANH, G_ANY, 0},
        {DBR_OP_SIGMOID, G_ANY, 0}, {DBR_OP_RELU, G_AWAY, 0},    {DBR_OP_LEAKY_RELU, G_AWAY, 0.1},
        {DBR_OP_LEAKY_RELU, G_AWAY, 0.25}, {DBR_OP_GELU, G_ANY, 0}, {DBR_OP_SILU, G_ANY, 0},
    };
    for (size_t k = 0; k < sizeof un / sizeof *un; k++) {
        tin shapes[] = {T(FLT, 7, 13), T0(FLT), T(FLT, 2, 3, 1, 4)};
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            add((tcase){.op = un[k].op, .n_in = 1, .in = {shapes[s]}, .gen = {un[k].gen},
                        .a = {.f = {un[k].f0}}});
    }
    /* where: int masks (i32, i64), a float mask, broadcasting */
    add((tcase){.op = DBR_OP_WHERE, .n_in = 3, .in = {T(DT_I32, 3, 1, 5), T(FLT, 4, 1), T0(FLT)},
                .ihi = {2}});
    add((tcase){.op = DBR_OP_WHERE, .n_in = 3, .in = {T(DT_I64, 7, 13), T(FLT, 7, 13), T(FLT, 13)},
                .ihi = {2}});
    add((tcase){.op = DBR_OP_WHERE, .n_in = 3, .in = {T(FLT, 2, 3), T(FLT, 2, 3), T(FLT, 2, 3)},
                .gen = {G_INT}, .ihi = {2}, .nodiff = 1});
    add((tcase){.op = DBR_OP_WHERE, .n_in = 3, .in = {T(DT_I32, 4), T0(FLT), T(FLT, 3, 1)},
                .ihi = {2}});
    /* optimizer updates (written in place; checked by check_update) */
    {
        double wd = 0.01;
        int64_t wdb;
        memcpy(&wdb, &wd, sizeof wdb);
        add((tcase){.op = DBR_OP_SGD_UPDATE, .n_in = 2, .in = {T(FLT, 7, 13), T(FLT, 7, 13)},
                    .a = {.f = {0.1, 0.01}}});
        for (int nest = 0; nest < 2; nest++)
            add((tcase){.op = DBR_OP_MOMENTUM_UPDATE, .n_in = 3,
                        .in = {T(FLT, 5, 3), T(FLT, 5, 3), T(FLT, 5, 3)},
                        .a = {.i = {nest}, .f = {0.1, 0.9, 0.01}}});
        for (int dec = 0; dec < 2; dec++)
            add((tcase){.op = DBR_OP_ADAM_UPDATE, .n_in = 4,
                        .in = {T(FLT, 11), T(FLT, 11), T(FLT, 11), T(FLT, 11)},
                        .gen = {G_ANY, G_ANY, G_ANY, G_POS},
                        .a = {.i = {dec, 3, wdb}, .f = {1e-3, 0.9, 0.999, 1e-8}}});
    }
    /* derivative helpers */
    add((tcase){.op = DBR_OP_RELU_BWD, .n_in = 2, .in = {T(FLT, 7, 13), T(FLT, 7, 13)},
                .gen = {G_RELU_OUT}});
    add((tcase){.op = DBR_OP_LEAKY_RELU_BWD, .n_in = 2, .in = {T(FLT, 7, 13), T(FLT, 7, 13)},
                .gen = {G_AWAY}, .a = {.f = {0.1}}});
    add((tcase){.op = DBR_OP_GELU_BWD, .n_in = 2, .in = {T(FLT, 7, 13), T(FLT, 7, 13)}});
    add((tcase){.op = DBR_OP_SILU_BWD, .n_in = 2, .in = {T(FLT, 7, 13), T(FLT, 7, 13)}});

    /* reductions: every axis combination of a 3-D input, keepdims or not */
    for (int64_t mask = 1; mask < 8; mask++)
        for (int keep = 0; keep < 2; keep++) add_red((tin)T(FLT, 3, 7, 5), mask, keep);
    static const int64_t masks4[] = {0xA, 0x5, 0xF, 0x2, 0x8};
    for (size_t k = 0; k < sizeof masks4 / sizeof *masks4; k++)
        for (int keep = 0; keep < 2; keep++) add_red((tin)T(FLT, 2, 3, 1, 4), masks4[k], keep);
    add_red((tin)T(FLT, 13), 1, 0);
    add_red((tin)T(FLT, 13), 1, 1);
    add((tcase){.op = DBR_OP_MAX, .n_in = 1, .a = {.i = {2, 0}}, .in = {T(FLT, 3, 7, 5)},
                .gen = {G_TIES}, .flags = F_NOGRAD});

    /* matmul: transposes, broadcast batch dims */
    static const struct { tin a, b; int ta, tb; } mm[] = {
        {T(FLT, 3, 4), T(FLT, 4, 5), 0, 0},          {T(FLT, 4, 3), T(FLT, 4, 5), 1, 0},
        {T(FLT, 3, 4), T(FLT, 5, 4), 0, 1},          {T(FLT, 4, 3), T(FLT, 5, 4), 1, 1},
        {T(FLT, 2, 1, 3, 4), T(FLT, 5, 4, 6), 0, 0}, {T(FLT, 2, 3, 4), T(FLT, 4, 6), 0, 0},
        {T(FLT, 7, 13), T(FLT, 13, 1), 0, 0},        {T(FLT, 3, 4), T(FLT, 2, 4, 5), 0, 0},
        {T(FLT, 2, 1, 4, 3), T(FLT, 3, 6, 4), 1, 1}, {T(FLT, 1, 1), T(FLT, 1, 7), 0, 0},
    };
    for (size_t k = 0; k < sizeof mm / sizeof *mm; k++)
        add((tcase){.op = DBR_OP_MATMUL, .n_in = 2, .in = {mm[k].a, mm[k].b},
                    .a = {.i = {mm[k].ta, mm[k].tb}}});

    /* conv2d: stride, padding, dilation, groups */
    add_conv((int64_t[]){2, 3, 5, 5}, (int64_t[]){4, 3, 3, 3}, 1, 1, 0, 0, 1, 1, 1);
    add_conv((int64_t[]){2, 4, 7, 6}, (int64_t[]){6, 2, 3, 3}, 2, 2, 1, 1, 2, 2, 2);
    add_conv((int64_t[]){1, 2, 6, 5}, (int64_t[]){3, 2, 2, 3}, 2, 1, 0, 1, 1, 1, 1);
    add_conv((int64_t[]){1, 3, 5, 5}, (int64_t[]){3, 1, 3, 3}, 1, 1, 1, 1, 1, 1, 3);
    add_conv((int64_t[]){2, 5, 3, 4}, (int64_t[]){2, 5, 1, 1}, 1, 1, 0, 0, 1, 1, 1);
    add_conv((int64_t[]){1, 2, 8, 7}, (int64_t[]){4, 1, 3, 2}, 3, 2, 2, 0, 1, 3, 2);

    /* pools, with padding */
    add_pool((int64_t[]){2, 3, 6, 6}, 2, 2, 0);
    add_pool((int64_t[]){1, 2, 7, 7}, 3, 2, 1);
    add_pool((int64_t[]){2, 1, 5, 6}, 3, 1, 1);
    add_pool((int64_t[]){1, 2, 8, 5}, 2, 3, 1);

    /* norms: with and without gamma/beta, 2-D and 4-D */
    for (int n_in = 1; n_in <= 3; n_in++) {
        add_norm(true, (tin)T(FLT, 6, 4), n_in);
        add_norm(true, (tin)T(FLT, 2, 3, 4, 5), n_in);
        add_norm(false, (tin)T(FLT, 4, 7), n_in);
        add_norm(false, (tin)T(FLT, 2, 3, 6), n_in);
    }
    add_norm(true, (tin)T(FLT, 3, 5, 7), 3);

    /* softmax, log_softmax, including a middle axis */
    for (int k = 0; k < 2; k++) {
        dbr_op op = k ? DBR_OP_LOG_SOFTMAX : DBR_OP_SOFTMAX;
        add((tcase){.op = op, .n_in = 1, .in = {T(FLT, 3, 5, 4)}, .a = {.i = {1}}});
        add((tcase){.op = op, .n_in = 1, .in = {T(FLT, 4, 7)}, .a = {.i = {1}}});
        add((tcase){.op = op, .n_in = 1, .in = {T(FLT, 4, 7)}, .a = {.i = {0}}});
        add((tcase){.op = op, .n_in = 1, .in = {T(FLT, 2, 3, 4)}, .a = {.i = {2}}});
        add((tcase){.op = op, .n_in = 1, .in = {T(FLT, 13)}, .a = {.i = {0}}});
    }
    add_ce(6, 5, DT_I32);
    add_ce(6, 5, DT_I64);
    add_ce(1, 3, DT_I32);
    add_ce(13, 7, DT_I64);

    /* embedding, with repeated indices */
    add_emb(7, 5, (tin)T(DT_I32, 3, 4));
    add_emb(4, 3, (tin)T(DT_I64, 6));
    add_emb(9, 2, (tin)T(DT_I32, 2, 2, 3));

    /* data movement, float and integer */
    add_shape_op(DBR_OP_RESHAPE, (tin)T(FLT, 2, 3, 4), (tin)T(FLT, 6, 4));
    add_shape_op(DBR_OP_RESHAPE, (tin)T(FLT, 12), (tin)T(FLT, 3, 1, 4));
    add_shape_op(DBR_OP_RESHAPE, (tin)T0(FLT), (tin)T(FLT, 1, 1));
    add_shape_op(DBR_OP_RESHAPE, (tin)T(FLT, 1, 1), (tin)T0(FLT));
    add_shape_op(DBR_OP_RESHAPE, (tin)T(DT_I32, 2, 3, 4), (tin)T(DT_I32, 24));
    add_shape_op(DBR_OP_RESHAPE, (tin)T(DT_I64, 7, 1), (tin)T(DT_I64, 7));
    add_perm((tin)T(FLT, 2, 3, 4), 3, (int[]){2, 0, 1});
    add_perm((tin)T(FLT, 2, 3, 4), 3, (int[]){1, 2, 0});
    add_perm((tin)T(FLT, 2, 3, 4, 5), 4, (int[]){0, 2, 3, 1});
    add_perm((tin)T(FLT, 2, 3, 4, 5), 4, (int[]){3, 1, 0, 2});
    add_perm((tin)T(FLT, 7, 13), 2, (int[]){1, 0});
    add_perm((tin)T(DT_I32, 2, 3, 4), 3, (int[]){1, 2, 0});
    add_perm((tin)T(DT_I64, 3, 5), 2, (int[]){1, 0});
    add_slice((tin)T(FLT, 5, 7, 3), 1, 1, 7, 2);
    add_slice((tin)T(FLT, 5, 7, 3), 0, 0, 5, 1);
    add_slice((tin)T(FLT, 5, 7, 3), 2, 2, 3, 1);
    add_slice((tin)T(FLT, 5, 7, 3), 1, 0, 7, 3);
    add_slice((tin)T(FLT, 13), 0, 3, 12, 4);
    add_slice((tin)T(FLT, 13), 0, 12, 13, 5);
    add_slice((tin)T(DT_I64, 5, 7), 1, 1, 6, 2);
    add_slice((tin)T(DT_I32, 5, 7), 0, 1, 4, 1);
    add((tcase){.op = DBR_OP_CONCAT, .n_in = 3, .a = {.i = {1}},
                .in = {T(FLT, 2, 3, 4), T(FLT, 2, 1, 4), T(FLT, 2, 5, 4)}});
    add((tcase){.op = DBR_OP_CONCAT, .n_in = 2, .a = {.i = {0}}, .in = {T(FLT, 2, 3), T(FLT, 5, 3)}});
    add((tcase){.op = DBR_OP_CONCAT, .n_in = 2, .a = {.i = {2}},
                .in = {T(FLT, 2, 3, 1), T(FLT, 2, 3, 4)}});
    add((tcase){.op = DBR_OP_CONCAT, .n_in = 1, .a = {.i = {0}}, .in = {T(FLT, 4, 3)}});
    add((tcase){.op = DBR_OP_CONCAT, .n_in = 4, .a = {.i = {0}},
                .in = {T(FLT, 1), T(FLT, 2), T(FLT, 3), T(FLT, 7)}});
    add((tcase){.op = DBR_OP_CONCAT, .n_in = 8, .a = {.i = {1}},
                .in = {T(FLT, 2, 1), T(FLT, 2, 2), T(FLT, 2, 1), T(FLT, 2, 3), T(FLT, 2, 1),
                       T(FLT, 2, 1), T(FLT, 2, 2), T(FLT, 2, 1)}});
    add((tcase){.op = DBR_OP_CONCAT, .n_in = 2, .a = {.i = {0}},
                .in = {T(DT_I32, 2, 3), T(DT_I32, 1, 3)}});
    add_shape_op(DBR_OP_BROADCAST_TO, (tin)T(FLT, 3, 1), (tin)T(FLT, 2, 3, 4));
    add_shape_op(DBR_OP_BROADCAST_TO, (tin)T0(FLT), (tin)T(FLT, 2, 3));
    add_shape_op(DBR_OP_BROADCAST_TO, (tin)T(FLT, 1, 5), (tin)T(FLT, 4, 5));
    add_shape_op(DBR_OP_BROADCAST_TO, (tin)T(FLT, 4, 1, 1), (tin)T(FLT, 4, 3, 2));
    add_shape_op(DBR_OP_BROADCAST_TO, (tin)T(FLT, 2, 3), (tin)T(FLT, 2, 3));
    add_shape_op(DBR_OP_BROADCAST_TO, (tin)T(DT_I32, 3, 1), (tin)T(DT_I32, 3, 5));

    /* dropout: linear given its key, so the finite differences hold */
    add((tcase){.op = DBR_OP_DROPOUT, .n_in = 1, .in = {T(FLT, 7, 13)}, .gen = {G_AWAY},
                .a = {.i = {12345}, .f = {0.25}}, .check = check_dropout});
    add((tcase){.op = DBR_OP_DROPOUT, .n_in = 1, .in = {T(FLT, 2, 3, 4)}, .gen = {G_AWAY},
                .a = {.i = {(int64_t)0x8000000000000001ull}, .f = {0.5}}, .check = check_dropout});
    add((tcase){.op = DBR_OP_DROPOUT, .n_in = 1, .in = {T(FLT, 64, 64)}, .gen = {G_AWAY},
                .a = {.i = {7}, .f = {0.1}}, .check = check_dropout, .flags = F_NOGRAD});
}

/* A few randomly drawn broadcast-compatible shapes per element-wise op. */
static void build_random_ew(void) {
    rng r = {20240601};
    static const int64_t dims[] = {1, 2, 3, 5, 7};
    for (int op = 0; op < DBR_OP_COUNT; op++) {
        if (dbr_ops[op].cat != DBR_CAT_EW) continue;
        for (int rep = 0; rep < 4; rep++) {
            tcase c = {.op = (dbr_op)op, .n_in = dbr_ops[op].min_in};
            int nd = (int)rng_int(&r, 5);
            int64_t full[MAXD];
            for (int d = 0; d < nd; d++) full[d] = dims[rng_int(&r, 5)];
            for (int i = 0; i < c.n_in; i++) {
                int ndi = (int)rng_int(&r, nd + 1);
                if (i == 0 && c.n_in == 1) ndi = nd;
                c.in[i].dt = FLT;
                c.in[i].nd = ndi;
                for (int d = 0; d < ndi; d++)
                    c.in[i].sh[d] = rng_int(&r, 3) ? full[nd - ndi + d] : 1;
            }
            switch (op) {
            case DBR_OP_LOG: case DBR_OP_SQRT: case DBR_OP_RSQRT: case DBR_OP_POW:
                c.gen[0] = G_POS;
                c.a.f[0] = 1.75;
                break;
            case DBR_OP_ABS: case DBR_OP_SIGN: case DBR_OP_RELU: case DBR_OP_LEAKY_RELU:
                c.gen[0] = G_AWAY;
                c.a.f[0] = 0.2;
                break;
            case DBR_OP_DIV: c.gen[1] = G_AWAY; break;
            case DBR_OP_WHERE:
                c.in[0].dt = rep & 1 ? DT_I64 : DT_I32;
                c.ihi[0] = 2;
                break;
            default: break;
            }
            push(&rcases, &n_rcases, &cap_rcases, &c);
        }
    }
}

/* ---- tests -------------------------------------------------------------------- */
static int op_ids[DBR_OP_COUNT];

static void test_op(void **state) {
    int op = *(int *)*state, ran = 0;
    n_fail = 0;
    retain_seen = retain_used = 0;
    for (int k = 0; k < n_cases; k++)
        if ((int)cases[k].op == op) run_case(&cases[k], k), ran++;
    /* a value the mask keeps but no rule reads holds memory for nothing */
    for (int k = 0; k <= MAXS; k++) {
        unsigned bit = k < MAXS ? R_IN(k) : R_OUT;
        if ((retain_seen & bit) && !(retain_used & bit)) {
            if (k < MAXS)
                FAIL("%s: retains input %d but its gradient rule never reads it", dbr_ops[op].name, k);
            else
                FAIL("%s: retains its output but its gradient rule never reads it", dbr_ops[op].name);
        }
    }
    if (n_fail) fail_msg("%s: %d checks failed over %d cases", dbr_ops[op].name, n_fail, ran);
}

static void test_ew_random_shapes(void **state) {
    (void)state;
    n_fail = 0;
    for (int k = 0; k < n_rcases; k++) run_case(&rcases[k], 100000 + k);
    if (n_fail) fail_msg("%d checks failed over %d random element-wise cases", n_fail, n_rcases);
}

/* Dropout's mask: the rate, its independence, determinism per key, and f32
 * and f64 drawing the same mask. */
static void test_dropout_mask(void **state) {
    (void)state;
    enum { M = 20000 };
    static const double ps[] = {0.1, 0.5, 0.9};
    double *x = dalloc(M), *y64 = dalloc(M), *y64b = dalloc(M);
    float *x32 = malloc(M * sizeof *x32), *y32 = malloc(M * sizeof *y32);
    assert_non_null(x32);
    assert_non_null(y32);
    for (int j = 0; j < M; j++) x[j] = 1.0, x32[j] = 1.0f;
    for (size_t k = 0; k < sizeof ps / sizeof *ps; k++) {
        double p = ps[k];
        dbr_node n = {.op = DBR_OP_DROPOUT, .n_in = 1, .a = {.i = {1000 + (int64_t)k}, .f = {p}}};
        n.in[0] = (dbr_tinfo){.dtype = DT_F64, .ndim = 1, .shape = {M}};
        char err[256];
        assert_int_equal(dbr_infer(&n, err, sizeof err), 0);
        const void *in64[1] = {x}, *in32[1] = {x32};
        assert_int_equal(dbr_cpu_exec(&n, in64, y64), 0);
        int64_t drop = 0, pair1 = 0, pair4 = 0, again = 0, other = 0, stream = 0;
        for (int j = 0; j < M; j++) {
            drop += y64[j] == 0;
            /* the shared generator's contract, which the CUDA kernel draws too */
            stream += (y64[j] == 0) != (dbr_rng_u01(dbr_rng_u32((uint64_t)n.a.i[0], (uint64_t)j)) < p);
            if (j + 1 < M) pair1 += y64[j] == 0 && y64[j + 1] == 0;
            if (j + 4 < M) pair4 += y64[j] == 0 && y64[j + 4] == 0;
            if (y64[j] != 0 && y64[j] != 1.0 / (1.0 - p))
                fail_msg("p %g: kept element %d is %.17g, not 1/(1-p)", p, j, y64[j]);
        }
        if (stream)
            fail_msg("p %g: %lld elements disagree with dropping where "
                     "dbr_rng_u01(dbr_rng_u32(key, i)) < p",
                     p, (long long)stream);
        double sd = sqrt(p * (1 - p) * M);
        if (fabs((double)drop - p * M) > 5 * sd)
            fail_msg("p %g: dropped %lld of %d", p, (long long)drop, M);
        /* neighbours independent: P(both dropped) = p^2 */
        double sd2 = sqrt(p * p * (1 - p * p) * M) * 2;
        if (fabs((double)pair1 - p * p * M) > 5 * sd2 || fabs((double)pair4 - p * p * M) > 5 * sd2)
            fail_msg("p %g: adjacent drops %lld and %lld at distance 1 and 4, expected about %.0f",
                     p, (long long)pair1, (long long)pair4, p * p * M);
        /* the same key draws the same mask, in f64 and in f32 */
        assert_int_equal(dbr_cpu_exec(&n, in64, y64b), 0);
        n.in[0].dtype = DT_F32;
        assert_int_equal(dbr_infer(&n, err, sizeof err), 0);
        assert_int_equal(dbr_cpu_exec(&n, in32, y32), 0);
        for (int j = 0; j < M; j++) {
            again += (y64[j] == 0) != (y64b[j] == 0);
            other += (y64[j] == 0) != (y32[j] == 0);
        }
        if (again) fail_msg("p %g: the same key drew a different mask (%lld)", p, (long long)again);
        if (other) fail_msg("p %g: f32 and f64 masks differ in %lld places", p, (long long)other);
        /* another key, another mask */
        n.in[0].dtype = DT_F64;
        n.a.i[0] += 77;
        assert_int_equal(dbr_infer(&n, err, sizeof err), 0);
        assert_int_equal(dbr_cpu_exec(&n, in64, y64b), 0);
        int64_t diff = 0;
        for (int j = 0; j < M; j++) diff += (y64[j] == 0) != (y64b[j] == 0);
        double want = 2 * p * (1 - p) * M;
        if (fabs((double)diff - want) > 6 * sqrt(want) + 1)
            fail_msg("p %g: masks of two keys differ in %lld places, expected about %.0f", p,
                     (long long)diff, want);
    }
    /* p = 0 keeps everything exactly */
    rng r = {5};
    gen_values(&r, G_ANY, 0, x, M);
    dbr_node n = {.op = DBR_OP_DROPOUT, .n_in = 1, .a = {.i = {3}, .f = {0.0}}};
    n.in[0] = (dbr_tinfo){.dtype = DT_F64, .ndim = 1, .shape = {M}};
    char err[256];
    assert_int_equal(dbr_infer(&n, err, sizeof err), 0);
    const void *in64[1] = {x};
    assert_int_equal(dbr_cpu_exec(&n, in64, y64), 0);
    assert_memory_equal(x, y64, M * sizeof *x);
    free(x), free(y64), free(y64b), free(x32), free(y32);
}

/* Every op has a forward case; every differentiable one a gradient case. */
static void test_every_op_has_a_case(void **state) {
    (void)state;
    bool fwd[DBR_OP_COUNT] = {0}, grad[DBR_OP_COUNT] = {0};
    for (int k = 0; k < n_cases; k++) {
        fwd[cases[k].op] = true;
        grad[cases[k].op] |= has_grad_case(&cases[k]);
    }
    int missing = 0;
    for (int op = 0; op < DBR_OP_COUNT; op++) {
        if (op == DBR_OP_FUSED) continue; /* made by the fusion pass: tests/test_fuse.c */
        if (!fwd[op]) {
            fprintf(stderr, "  op %s has no forward case\n", dbr_ops[op].name);
            missing++;
        }
        if (dbr_op_differentiable((dbr_op)op) && !grad[op]) {
            fprintf(stderr, "  op %s has no gradient case\n", dbr_ops[op].name);
            missing++;
        }
    }
    int with_grad = 0;
    for (int k = 0; k < n_cases; k++) with_grad += has_grad_case(&cases[k]);
    printf("  %d cases over %d ops (%d with gradient checks), %d random element-wise cases\n",
           n_cases, (int)DBR_OP_COUNT, with_grad, n_rcases);
    if (missing) fail_msg("%d ops lack cases (named above)", missing);
}

int main(void) {
    static struct CMUnitTest tests[DBR_OP_COUNT + 3];
    static char names[DBR_OP_COUNT][48];
    build_cases();
    build_random_ew();
    tests[0] = (struct CMUnitTest){.name = "every_op_has_a_case", .test_func = test_every_op_has_a_case};
    for (int op = 0; op < DBR_OP_COUNT; op++) {
        op_ids[op] = op;
        snprintf(names[op], sizeof names[op], "op_%s", dbr_ops[op].name);
        tests[1 + op] = (struct CMUnitTest){.name = names[op], .test_func = test_op,
                                            .initial_state = &op_ids[op]};
    }
    tests[DBR_OP_COUNT + 1] =
        (struct CMUnitTest){.name = "ew_random_shapes", .test_func = test_ew_random_shapes};
    tests[DBR_OP_COUNT + 2] =
        (struct CMUnitTest){.name = "dropout_mask", .test_func = test_dropout_mask};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(cases);
    free(rcases);
    return rc;
}
