/* test_codegen.c: the LLVM CPU back end against the reference evaluator
 * (random kernels of every op, maps and reductions, broadcasts, split
 * ranges, in place) and the kernel cache (memory, disk, corrupt, truncated
 * and foreign files). Skips (77) when LLVM is not built in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <float.h>
#include <pthread.h>
#include <math.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "codegen/kcache.h"

#ifndef DBR_BINARY_DIR
#define DBR_BINARY_DIR "/tmp"
#endif

static char g_cache[1024];

/* ---- helpers ------------------------------------------------------------------- */

static uint64_t rnd(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static int rint_n(uint64_t *s, int n) { return (int)(rnd(s) % (uint64_t)n); }
static double runif(uint64_t *s, double lo, double hi) {
    return lo + (hi - lo) * (double)(rnd(s) >> 11) * 0x1p-53;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static size_t dt_size(int dt) { return dt == DT_F32 || dt == DT_I32 ? 4 : 8; }

static double get_val(const void *p, int dt, int64_t i) {
    switch (dt) {
    case DT_F32: return ((const float *)p)[i];
    case DT_F64: return ((const double *)p)[i];
    case DT_I32: return ((const int32_t *)p)[i];
    default: return (double)((const int64_t *)p)[i];
    }
}

static void set_val(void *p, int dt, int64_t i, double v) {
    switch (dt) {
    case DT_F32: ((float *)p)[i] = (float)v; break;
    case DT_F64: ((double *)p)[i] = v; break;
    case DT_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    default: ((int64_t *)p)[i] = (int64_t)v; break;
    }
}

static bool same(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

static void clear_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[2048];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
}

/* ---- random kernels ------------------------------------------------------------- */

typedef struct rk {
    dbr_kdesc kd;
    int64_t in_numel[DBR_KD_MAX_IN];
    int in_kind[DBR_KD_MAX_IN]; /* 0 positive, 1 signed, 2 mask */
    void *buf[DBR_KD_MAX_IN + 1];
} rk;

static const int32_t k_ops[] = {
    DBR_OP_NEG,      DBR_OP_EXP,           DBR_OP_LOG,      DBR_OP_SQRT,     DBR_OP_RSQRT,
    DBR_OP_POW,      DBR_OP_ABS,           DBR_OP_SIGN,     DBR_OP_TANH,     DBR_OP_SIGMOID,
    DBR_OP_RELU,     DBR_OP_LEAKY_RELU,    DBR_OP_GELU,     DBR_OP_SILU,     DBR_OP_ADD,
    DBR_OP_SUB,      DBR_OP_MUL,           DBR_OP_DIV,      DBR_OP_RELU_BWD, DBR_OP_LEAKY_RELU_BWD,
    DBR_OP_GELU_BWD, DBR_OP_SILU_BWD,      DBR_OP_WHERE};
#define N_OPS ((int)(sizeof k_ops / sizeof k_ops[0]))

static int add_ins(dbr_kdesc *kd, int kind, int op, int a, int b, int c, double p) {
    dbr_kd_ins *s = &kd->ins[kd->n_ins];
    s->kind = kind;
    s->op = op;
    s->a = a;
    s->b = b;
    s->c = c;
    s->p = p;
    return kd->n_ins++;
}

/* An operand: a recent float-valued instruction, positive if asked (a
 * positive constant when none is). */
static int pick(uint64_t *s, dbr_kdesc *kd, const bool *pos, const bool *isint, bool want_pos) {
    int cand[DBR_KD_MAX_INS], n = 0;
    for (int k = 0; k < kd->n_ins; k++)
        if (!isint[k] && (!want_pos || pos[k])) cand[n++] = k;
    if (n == 0) return -1;
    /* favour recent ones: deeper expressions */
    const int lo = n > 6 && rint_n(s, 3) ? n - 6 : 0;
    return cand[lo + rint_n(s, n - lo)];
}

static void rk_make(rk *r, uint64_t seed, int kernel_no) {
    uint64_t s = seed;
    memset(r, 0, sizeof *r);
    dbr_kdesc *kd = &r->kd;
    kd->dtype = rint_n(&s, 2) ? DT_F64 : DT_F32;
    kd->ndim = 1 + rint_n(&s, 4);
    static const int64_t sizes[] = {1, 1, 2, 3, 5, 7, 8, 9, 16, 17, 31, 64, 100, 257};
    int64_t numel;
    do {
        numel = 1;
        for (int d = 0; d < kd->ndim; d++) {
            kd->shape[d] = sizes[rint_n(&s, (int)(sizeof sizes / sizeof sizes[0]))];
            numel *= kd->shape[d];
        }
    } while (numel > 40000);
    const int mode = kernel_no % 4; /* map, sum, mean, max */
    kd->nred = mode == 0 ? 0 : 1 + rint_n(&s, kd->ndim);
    kd->red = mode == 1 ? DBR_OP_SUM : mode == 2 ? DBR_OP_MEAN : DBR_OP_MAX;
    if (!kd->nred) kd->red = 0;
    kd->n_in = 1 + rint_n(&s, 5);
    for (int i = 0; i < kd->n_in; i++) {
        dbr_kd_in *in = &kd->in[i];
        r->in_kind[i] = i > 0 && rint_n(&s, 5) == 0 ? 2 : rint_n(&s, 2);
        if (r->in_kind[i] == 2) {
            static const int mdt[] = {DT_I32, DT_I64, DT_F32, DT_F64};
            in->dtype = mdt[rint_n(&s, 4)];
        } else {
            in->dtype = rint_n(&s, 4) == 0 ? (kd->dtype == DT_F32 ? DT_F64 : DT_F32) : kd->dtype;
        }
        /* the input's own shape: each dim kept or broadcast, laid out in a
         * random dim order */
        int64_t ish[DBR_KD_MAX_DIMS];
        for (int d = 0; d < kd->ndim; d++) ish[d] = rint_n(&s, 3) == 0 ? 1 : kd->shape[d];
        int order[DBR_KD_MAX_DIMS];
        for (int d = 0; d < kd->ndim; d++) order[d] = d;
        if (rint_n(&s, 3) == 0)
            for (int d = kd->ndim - 1; d > 0; d--) {
                const int e = rint_n(&s, d + 1), t = order[d];
                order[d] = order[e];
                order[e] = t;
            }
        int64_t st = 1;
        for (int q = kd->ndim - 1; q >= 0; q--) {
            const int d = order[q];
            in->stride[d] = ish[d] == 1 ? 0 : st;
            st *= ish[d];
        }
        r->in_numel[i] = st;
    }

    bool pos[DBR_KD_MAX_INS] = {0}, isint[DBR_KD_MAX_INS] = {0};
    int masks[DBR_KD_MAX_IN], nmask = 0;
    for (int i = 0; i < kd->n_in; i++) {
        const int k = add_ins(kd, DBR_KD_LOAD, 0, i, -1, -1, 0);
        if (r->in_kind[i] == 2) {
            isint[k] = true;
            masks[nmask++] = k;
        }
        pos[k] = r->in_kind[i] == 0;
    }
    const int nops = 1 + rint_n(&s, 30);
    for (int t = 0; t < nops && kd->n_ins < DBR_KD_MAX_INS - 2; t++) {
        if (rint_n(&s, 8) == 0) {
            const double c = runif(&s, -2, 2);
            const int k = add_ins(kd, DBR_KD_CONST, 0, -1, -1, -1, c);
            pos[k] = c > 0.1;
        }
        const int op = nmask ? DBR_OP_WHERE : k_ops[(kernel_no * 7 + t * 5 + rint_n(&s, 3)) % N_OPS];
        const bool need_pos = op == DBR_OP_LOG || op == DBR_OP_SQRT || op == DBR_OP_RSQRT || op == DBR_OP_POW;
        int a = pick(&s, kd, pos, isint, need_pos);
        if (a < 0) {
            a = add_ins(kd, DBR_KD_CONST, 0, -1, -1, -1, runif(&s, 0.5, 1.5));
            pos[a] = true;
        }
        int b = -1, c = -1;
        double p = 0;
        if (op == DBR_OP_WHERE) {
            /* input 0 is never a mask: b and c always find a float value */
            a = nmask ? masks[--nmask] : a;
            b = pick(&s, kd, pos, isint, false);
            c = pick(&s, kd, pos, isint, false);
        } else if (dbr_fuse_arity((dbr_op)op) == 2) {
            b = pick(&s, kd, pos, isint, op == DBR_OP_DIV);
            if (b < 0) b = a;
        }
        if (op == DBR_OP_POW) {
            static const double ps[] = {2, 1, 3, 1.7, -0.5, 2.5, 0.3, -1.25};
            p = ps[rint_n(&s, 8)];
        }
        if (op == DBR_OP_LEAKY_RELU || op == DBR_OP_LEAKY_RELU_BWD) p = runif(&s, 0.01, 0.3);
        const int k = add_ins(kd, DBR_KD_OP, op, a, b, c, p);
        pos[k] = (op == DBR_OP_EXP || op == DBR_OP_SQRT || op == DBR_OP_RSQRT ||
                  (op == DBR_OP_POW && pos[a]) ||
                  ((op == DBR_OP_ADD || op == DBR_OP_MUL || op == DBR_OP_DIV) && pos[a] && pos[b]) ||
                  (op == DBR_OP_WHERE && pos[b] && pos[c]));
        /* keep the magnitudes sane: exp of exp overflows float quickly */
        if (op == DBR_OP_EXP || op == DBR_OP_MUL || op == DBR_OP_DIV || op == DBR_OP_POW)
            add_ins(kd, DBR_KD_OP, DBR_OP_TANH, k, -1, -1, 0);
    }
    snprintf(kd->name, sizeof kd->name, "rand_%d_%s", kernel_no, kd->nred ? "red" : "map");

    for (int i = 0; i < kd->n_in; i++) {
        r->buf[i] = malloc((size_t)r->in_numel[i] * dt_size(kd->in[i].dtype));
        for (int64_t e = 0; e < r->in_numel[i]; e++) {
            double v;
            if (r->in_kind[i] == 2) v = rint_n(&s, 2) ? 0 : (double)(rint_n(&s, 7) - 3);
            else if (r->in_kind[i] == 0) v = runif(&s, 0.25, 2);
            else v = runif(&s, -2, 2);
            set_val(r->buf[i], kd->in[i].dtype, e, v);
        }
    }
    r->buf[kd->n_in] = NULL;
}

static void rk_free(rk *r) {
    for (int i = 0; i <= DBR_KD_MAX_IN; i++) free(r->buf[i]);
}

/* out = a fresh output buffer (NaN-filled) */
static void *out_buf(const dbr_kdesc *kd) {
    const int64_t n = dbr_kdesc_out_numel(kd);
    void *o = malloc((size_t)n * dt_size(kd->dtype));
    for (int64_t i = 0; i < n; i++) set_val(o, kd->dtype, i, NAN);
    return o;
}

/* Checks kernel output `got` against the evaluator: maps within 1e-6 of
 * max(|ref|, 1) in f32 (its exp and tanh are inline, within an ulp or two
 * of libm's, and test_fuse allows the same) or 1e-12 of max(|ref|, 1e-3) in
 * f64; reductions also allow the summation error of a sum of |v| over the
 * folded elements; max keeps NaNs. */
static int check_against_ref(const rk *r, const void *got, char *why, size_t n) {
    const dbr_kdesc *kd = &r->kd;
    const int64_t on = dbr_kdesc_out_numel(kd), R = dbr_kdesc_red_numel(kd);
    void *args[DBR_KD_MAX_IN + 1];
    memcpy(args, r->buf, sizeof args);
    void *ref = out_buf(kd);
    args[kd->n_in] = ref;
    dbr_kdesc_eval(kd, args, 0, on);
    void *pts = NULL;
    if (kd->nred) {
        dbr_kdesc mk = *kd;
        mk.nred = 0;
        mk.red = 0;
        pts = out_buf(&mk);
        args[kd->n_in] = pts;
        dbr_kdesc_eval(&mk, args, 0, on * R);
    }
    const double tol = kd->dtype == DT_F32 ? 1e-6 : 1e-12;
    int bad = 0;
    for (int64_t j = 0; j < on && !bad; j++) {
        double want = get_val(ref, kd->dtype, j), sumabs = 0;
        bool anynan = false;
        for (int64_t q = 0; pts && q < R; q++) {
            const double x = get_val(pts, kd->dtype, j * R + q);
            anynan |= isnan(x);
            sumabs += fabs(x);
        }
        if (kd->nred && kd->red == DBR_OP_MAX && anynan) want = NAN;
        const double g = get_val(got, kd->dtype, j);
        if (same(g, want)) continue;
        double lim = tol * fmax(fabs(want), kd->dtype == DT_F32 ? 1.0 : 1e-3);
        if (kd->nred) lim += 4.0 * (double)R * 0x1p-52 * sumabs;
        if (!(fabs(g - want) <= lim)) {
            snprintf(why, n, "element %lld: got %.17g want %.17g (lim %.3g)", (long long)j, g, want, lim);
            bad = 1;
        }
    }
    free(ref);
    free(pts);
    return bad;
}

static bool outputs_same(const dbr_kdesc *kd, const void *a, const void *b) {
    const int64_t n = dbr_kdesc_out_numel(kd);
    for (int64_t i = 0; i < n; i++)
        if (!same(get_val(a, kd->dtype, i), get_val(b, kd->dtype, i))) return false;
    return true;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- tests ---------------------------------------------------------------------------- */

#define N_RANDOM 200

static void test_random_kernels(void **state) {
    (void)state;
    static rk ks[N_RANDOM];
    static dbr_kfn fns[N_RANDOM];
    static double jit_ms[N_RANDOM], disk_ms[N_RANDOM];
    int njit = 0, ndisk = 0;
    char err[512];
    for (int t = 0; t < N_RANDOM; t++) {
        rk *r = &ks[t];
        rk_make(r, 0x5eed0000ull + (uint64_t)t * 7919, t);
        err[0] = '\0';
        assert_int_equal(dbr_kdesc_check(&r->kd, err, sizeof err), 0);
        dbr_cg_stats s0, s1;
        dbr_cg_stats_get(&s0);
        const double t0 = now_ms();
        fns[t] = dbr_cg_cpu(&r->kd, err, sizeof err);
        const double ms = now_ms() - t0;
        if (!fns[t]) fail_msg("kernel %d: %s", t, err);
        dbr_cg_stats_get(&s1);
        if (s1.compiled == s0.compiled + 1) jit_ms[njit++] = ms;

        const dbr_kdesc *kd = &r->kd;
        const int64_t on = dbr_kdesc_out_numel(kd);
        void *args[DBR_KD_MAX_IN + 1];
        memcpy(args, r->buf, sizeof args);
        void *o1 = out_buf(kd), *o2 = out_buf(kd);
        args[kd->n_in] = o1;
        fns[t](args, 0, on);
        char why[256];
        if (check_against_ref(r, o1, why, sizeof why))
            fail_msg("kernel %d (%s, dtype %d, ndim %d, nred %d, %d ins): %s", t, kd->name, kd->dtype,
                     kd->ndim, kd->nred, kd->n_ins, why);
        /* the same output from two calls over a split range, and an empty one */
        uint64_t s = (uint64_t)t;
        const int64_t k = on > 1 ? 1 + (int64_t)(rnd(&s) % (uint64_t)(on - 1)) : 0;
        args[kd->n_in] = o2;
        fns[t](args, 0, k);
        fns[t](args, k, k);
        fns[t](args, k, on);
        if (!outputs_same(kd, o1, o2)) fail_msg("kernel %d: split at %lld differs", t, (long long)k);
        free(o1);
        free(o2);
    }
    /* every kernel again from disk, as a new process would */
    dbr_cg_reset_memory();
    for (int t = 0; t < N_RANDOM; t++) {
        dbr_cg_stats s0, s1;
        dbr_cg_stats_get(&s0);
        const double t0 = now_ms();
        dbr_kfn f = dbr_cg_cpu(&ks[t].kd, err, sizeof err);
        const double ms = now_ms() - t0;
        dbr_cg_stats_get(&s1);
        assert_non_null(f);
        if (s1.disk_hits == s0.disk_hits + 1) disk_ms[ndisk++] = ms;
        if (t % 10 == 0) {
            const dbr_kdesc *kd = &ks[t].kd;
            void *args[DBR_KD_MAX_IN + 1];
            memcpy(args, ks[t].buf, sizeof args);
            void *o = out_buf(kd);
            args[kd->n_in] = o;
            f(args, 0, dbr_kdesc_out_numel(kd));
            char why[256];
            if (check_against_ref(&ks[t], o, why, sizeof why)) fail_msg("disk kernel %d: %s", t, why);
            free(o);
        }
    }
    qsort(jit_ms, (size_t)njit, sizeof *jit_ms, cmp_double);
    qsort(disk_ms, (size_t)ndisk, sizeof *disk_ms, cmp_double);
    fprintf(stderr, "%d kernels JIT-compiled: median %.2f ms, max %.2f ms; %d from disk: median %.3f ms\n",
            njit, njit ? jit_ms[njit / 2] : 0.0, njit ? jit_ms[njit - 1] : 0.0, ndisk,
            ndisk ? disk_ms[ndisk / 2] : 0.0);
    assert_true(ndisk >= N_RANDOM / 2);
    for (int t = 0; t < N_RANDOM; t++) rk_free(&ks[t]);
}

/* y = gelu(x) * w + x written over x itself, w broadcast along rows */
static void inplace_kd(dbr_kdesc *kd, int dtype, int64_t rows, int64_t cols) {
    memset(kd, 0, sizeof *kd);
    kd->dtype = dtype;
    kd->ndim = 2;
    kd->shape[0] = rows;
    kd->shape[1] = cols;
    kd->n_in = 2;
    kd->in[0].dtype = dtype;
    kd->in[0].stride[0] = cols;
    kd->in[0].stride[1] = 1;
    kd->in[1].dtype = dtype;
    kd->in[1].stride[0] = 0;
    kd->in[1].stride[1] = 1;
    add_ins(kd, DBR_KD_LOAD, 0, 0, -1, -1, 0);
    add_ins(kd, DBR_KD_LOAD, 0, 1, -1, -1, 0);
    add_ins(kd, DBR_KD_OP, DBR_OP_GELU, 0, -1, -1, 0);
    add_ins(kd, DBR_KD_OP, DBR_OP_MUL, 2, 1, -1, 0);
    add_ins(kd, DBR_KD_OP, DBR_OP_ADD, 3, 0, -1, 0);
    snprintf(kd->name, sizeof kd->name, "inplace_%s", dtype == DT_F32 ? "f32" : "f64");
}

static void test_in_place(void **state) {
    (void)state;
    for (int dt = DT_F32; dt <= DT_F64; dt++) {
        dbr_kdesc kd;
        const int64_t rows = 7, cols = 1003, n = rows * cols;
        inplace_kd(&kd, dt, rows, cols);
        char err[256];
        dbr_kfn f = dbr_cg_cpu(&kd, err, sizeof err);
        if (!f) fail_msg("%s", err);
        const size_t es = dt_size(dt);
        void *x = malloc((size_t)n * es), *xr = malloc((size_t)n * es), *w = malloc((size_t)cols * es);
        void *ref = malloc((size_t)n * es);
        uint64_t s = 42;
        for (int64_t i = 0; i < n; i++) set_val(x, dt, i, runif(&s, -3, 3));
        for (int64_t i = 0; i < cols; i++) set_val(w, dt, i, runif(&s, -1, 1));
        memcpy(xr, x, (size_t)n * es);
        void *ra[3] = {xr, w, ref};
        dbr_kdesc_eval(&kd, ra, 0, n);
        void *a[3] = {x, w, x};
        f(a, 0, 2500);
        f(a, 2500, n);
        for (int64_t i = 0; i < n; i++) {
            const double g = get_val(x, dt, i), r = get_val(ref, dt, i);
            if (!(fabs(g - r) <= (dt == DT_F32 ? 1e-6 : 1e-12) * fmax(fabs(r), 1e-3)))
                fail_msg("in place, dtype %d, element %lld: %.9g vs %.9g", dt, (long long)i, g, r);
        }
        free(x);
        free(xr);
        free(w);
        free(ref);
    }
}

/* max over rows holding a NaN gives NaN (kdesc.h); -inf rows stay -inf */
static void test_max_nan(void **state) {
    (void)state;
    dbr_kdesc kd;
    memset(&kd, 0, sizeof kd);
    kd.dtype = DT_F32;
    kd.ndim = 2;
    kd.shape[0] = 3;
    kd.shape[1] = 37;
    kd.nred = 1;
    kd.red = DBR_OP_MAX;
    kd.n_in = 1;
    kd.in[0].dtype = DT_F32;
    kd.in[0].stride[0] = 37;
    kd.in[0].stride[1] = 1;
    add_ins(&kd, DBR_KD_LOAD, 0, 0, -1, -1, 0);
    snprintf(kd.name, sizeof kd.name, "max_nan");
    char err[256];
    dbr_kfn f = dbr_cg_cpu(&kd, err, sizeof err);
    if (!f) fail_msg("%s", err);
    float x[3 * 37], y[3];
    for (int i = 0; i < 37; i++) {
        x[i] = (float)i;
        x[37 + i] = i == 5 ? NAN : (float)i;
        x[74 + i] = -INFINITY;
    }
    void *a[2] = {x, y};
    f(a, 0, 3);
    assert_true(y[0] == 36.0f);
    assert_true(isnan(y[1]));
    assert_true(y[2] == -INFINITY);
}

static void one_kd(dbr_kdesc *kd, int64_t n, int op) {
    memset(kd, 0, sizeof *kd);
    kd->dtype = DT_F32;
    kd->ndim = 1;
    kd->shape[0] = n;
    kd->n_in = 1;
    kd->in[0].dtype = DT_F32;
    kd->in[0].stride[0] = 1;
    add_ins(kd, DBR_KD_LOAD, 0, 0, -1, -1, 0);
    add_ins(kd, DBR_KD_OP, op, 0, -1, -1, 0);
    snprintf(kd->name, sizeof kd->name, "cache_%d", op);
}

static void check_one(const dbr_kdesc *kd, dbr_kfn f) {
    const int64_t n = kd->shape[0];
    float x[64], y[64], r[64];
    assert_true(n <= 64);
    for (int64_t i = 0; i < n; i++) x[i] = 0.1f + (float)i * 0.05f;
    void *a[2] = {x, y}, *ar[2] = {x, r};
    f(a, 0, n);
    dbr_kdesc_eval(kd, ar, 0, n);
    for (int64_t i = 0; i < n; i++) assert_true(fabsf(y[i] - r[i]) <= 1e-6f * fmaxf(fabsf(r[i]), 1.0f));
}

static void file_of(const dbr_kdesc *kd, char *path, size_t n) {
    assert_int_equal(dbr_kcache_path("cpu", dbr_cg_cpu_host_key(kd), path, n), 0);
}

static void test_cache(void **state) {
    (void)state;
    dbr_kdesc kd, kd2;
    one_kd(&kd, 61, DBR_OP_TANH);
    one_kd(&kd2, 61, DBR_OP_SIGMOID);
    char err[256], path[4200], path2[4200];
    dbr_cg_stats a, b;
    file_of(&kd, path, sizeof path);
    file_of(&kd2, path2, sizeof path2);
    unlink(path);
    unlink(path2);

    dbr_cg_stats_get(&a);
    dbr_kfn f1 = dbr_cg_cpu(&kd, err, sizeof err);
    if (!f1) fail_msg("%s", err);
    dbr_kfn f2 = dbr_cg_cpu(&kd, err, sizeof err);
    dbr_cg_stats_get(&b);
    assert_ptr_equal(f1, f2);
    assert_int_equal(b.compiled - a.compiled, 1);
    assert_int_equal(b.mem_hits - a.mem_hits, 1);
    check_one(&kd, f1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);

    /* from disk after forgetting memory; old pointers stay valid */
    dbr_cg_reset_memory();
    dbr_kfn f3 = dbr_cg_cpu(&kd, err, sizeof err);
    dbr_cg_stats_get(&a);
    assert_non_null(f3);
    assert_int_equal(a.disk_hits - b.disk_hits, 1);
    assert_int_equal(a.compiled - b.compiled, 0);
    check_one(&kd, f3);
    check_one(&kd, f1);

    /* a flipped byte in the blob, then a truncated file, then a file cut
     * inside its header: each rejected, deleted and rebuilt */
    for (int how = 0; how < 3; how++) {
        assert_int_equal(stat(path, &st), 0);
        if (how == 0) {
            FILE *fp = fopen(path, "r+b");
            assert_non_null(fp);
            fseek(fp, (long)(st.st_size / 2 + 32), SEEK_SET);
            const int c = fgetc(fp);
            fseek(fp, (long)(st.st_size / 2 + 32), SEEK_SET);
            fputc(c ^ 0x5a, fp);
            fclose(fp);
        } else {
            assert_int_equal(truncate(path, how == 1 ? st.st_size - 100 : 20), 0);
        }
        dbr_cg_reset_memory();
        dbr_cg_stats_get(&a);
        dbr_kfn f = dbr_cg_cpu(&kd, err, sizeof err);
        dbr_cg_stats_get(&b);
        if (!f) fail_msg("%s", err);
        assert_int_equal(b.disk_rejected - a.disk_rejected, 1);
        assert_int_equal(b.compiled - a.compiled, 1);
        assert_int_equal(b.disk_hits - a.disk_hits, 0);
        check_one(&kd, f);
    }

    /* another kernel's file renamed into place */
    assert_non_null(dbr_cg_cpu(&kd2, err, sizeof err));
    assert_int_equal(rename(path2, path), 0);
    dbr_cg_reset_memory();
    dbr_cg_stats_get(&a);
    dbr_kfn f4 = dbr_cg_cpu(&kd, err, sizeof err);
    dbr_cg_stats_get(&b);
    assert_non_null(f4);
    assert_int_equal(b.disk_rejected - a.disk_rejected, 1);
    assert_int_equal(b.compiled - a.compiled, 1);
    check_one(&kd, f4);

    /* keys follow the target */
    const uint64_t k1 = dbr_cg_cpu_key(&kd, "znver5", "+avx2,+avx512f");
    assert_true(k1 != dbr_cg_cpu_key(&kd, "znver5", "+avx2,-avx512f"));
    assert_true(k1 != dbr_cg_cpu_key(&kd, "znver4", "+avx2,+avx512f"));
    assert_true(k1 != dbr_cg_cpu_key(&kd2, "znver5", "+avx2,+avx512f"));
    assert_true(k1 == dbr_cg_cpu_key(&kd, "znver5", "+avx2,+avx512f"));
    /* the name is not part of the key: another name reuses the kernel */
    dbr_kdesc kd3 = kd;
    snprintf(kd3.name, sizeof kd3.name, "other name!");
    assert_true(dbr_cg_cpu_host_key(&kd3) == dbr_cg_cpu_host_key(&kd));
    dbr_cg_reset_memory();
    dbr_kfn f5 = dbr_cg_cpu(&kd3, err, sizeof err);
    assert_non_null(f5);
    check_one(&kd, f5);
}

static bool file_has(const char *path, const char *needle) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    static char buf[1 << 20];
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

/* The inner loops of a libm-free map (with a broadcast input, in f32) and of
 * a row sum reach LLVM's vectorizers: the IR after the passes (DBR_DUMP)
 * holds vector types, and the map needs no runtime alias checks. */
static void test_vectorizes(void **state) {
    (void)state;
    char dump[1100], path[1400], err[256];
    snprintf(dump, sizeof dump, "%s/dump", g_cache);
    mkdir(dump, 0755);
    setenv("DBR_DUMP", dump, 1);
    dbr_kdesc m, r;
    inplace_kd(&m, DT_F32, 33, 1000);
    m.ins[2].op = DBR_OP_RELU;
    snprintf(m.name, sizeof m.name, "vec_map");
    memset(&r, 0, sizeof r);
    r.dtype = DT_F32;
    r.ndim = 2;
    r.shape[0] = 16;
    r.shape[1] = 1000;
    r.nred = 1;
    r.red = DBR_OP_SUM;
    r.n_in = 1;
    r.in[0].dtype = DT_F32;
    r.in[0].stride[0] = 1000;
    r.in[0].stride[1] = 1;
    add_ins(&r, DBR_KD_LOAD, 0, 0, -1, -1, 0);
    add_ins(&r, DBR_KD_OP, DBR_OP_MUL, 0, 0, -1, 0);
    snprintf(r.name, sizeof r.name, "vec_sum");
    const dbr_kdesc *kds[2] = {&m, &r};
    for (int i = 0; i < 2; i++) {
        char p0[4200];
        assert_int_equal(dbr_kcache_path("cpu", dbr_cg_cpu_host_key(kds[i]), p0, sizeof p0), 0);
        unlink(p0);
        dbr_cg_reset_memory();
        assert_non_null(dbr_cg_cpu(kds[i], err, sizeof err));
        snprintf(path, sizeof path, "%s/%s_%016llx.ll", dump, kds[i]->name,
                 (unsigned long long)dbr_cg_cpu_host_key(kds[i]));
        assert_true(file_has(path, i == 0 ? " x float>" : " x double>"));
        if (i == 0) assert_false(file_has(path, "memcheck"));
        unlink(path);
    }
    rmdir(dump);
    unsetenv("DBR_DUMP");
}

/* ---- f32 exp and tanh (inline in the kernels) against libm ------------------------- */

/* Distance in ulps between two floats, counted along the ordered line of
 * float bit patterns (-0 and +0 one point). */
static double ulps_f32(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    const int64_t ka = ia < 0 ? (int64_t)INT32_MIN - ia : ia, kb = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
    return fabs((double)(ka - kb));
}

static void sweep_kd(dbr_kdesc *kd, int64_t n, int op) {
    one_kd(kd, n, op);
    if (dbr_fuse_arity((dbr_op)op) == 2) {
        kd->n_in = 2;
        kd->in[1] = kd->in[0];
        kd->n_ins = 0;
        add_ins(kd, DBR_KD_LOAD, 0, 0, -1, -1, 0);
        add_ins(kd, DBR_KD_LOAD, 0, 1, -1, -1, 0);
        add_ins(kd, DBR_KD_OP, op, 0, 1, -1, 0);
    }
    snprintf(kd->name, sizeof kd->name, "sweep_%d", op);
}

/* Every f32 op built on exp or tanh over a dense sweep of inputs (every
 * 4099th float of either sign, a fine grid over [-12, 12], and the edges:
 * +-0, subnormals, the overflow and underflow thresholds, +-FLT_MAX, +-inf,
 * NaN) against the evaluator (libm's expf and tanhf): exp and tanh within 2
 * ulps of it and within 1 ulp of e^x and tanh x computed in double and
 * rounded, the rest within 1e-6 of max(|ref|, 1) (they amplify an ulp of
 * tanh where 1 + tanh cancels); NaN in gives NaN, infinities and zeros
 * match. */
static void test_exp_tanh_sweep(void **state) {
    (void)state;
    static const float edge[] = {0.0f, -0.0f, 0x1p-149f, -0x1p-149f, 0x1p-126f, 1e-30f, -1e-20f, 1e-10f,
                                 -1e-5f, 0.00999f, 0.01f, 0.0101f, 0.1733f, 0.3466f, 0.5493f, -0.5493f,
                                 9.0f, 9.01f, -9.01f, 20.0f, 88.72f, 88.7228f, 88.73f, 89.0f, 90.0f,
                                 -87.33f, -103.27f, -103.97f, -104.0f, -110.0f, -200.0f, 1e30f, FLT_MAX,
                                 -FLT_MAX, INFINITY, -INFINITY, NAN, -NAN};
    const int ne = (int)(sizeof edge / sizeof edge[0]);
    const int64_t nbits = 2 * (0x7f800000 / 4099 + 1), ngrid = 24 * 8192 + 1;
    const int64_t n = ne + nbits + ngrid;
    float *x = malloc((size_t)n * sizeof *x), *gy = malloc((size_t)n * sizeof *gy);
    float *y = malloc((size_t)n * sizeof *y), *r = malloc((size_t)n * sizeof *r);
    assert_non_null(x);
    assert_non_null(gy);
    assert_non_null(y);
    assert_non_null(r);
    int64_t k = 0;
    for (int i = 0; i < ne; i++) x[k++] = edge[i];
    for (uint32_t b = 0; b < 0x7f800000u; b += 4099) {
        float f;
        memcpy(&f, &b, sizeof f);
        x[k++] = f;
        x[k++] = -f;
    }
    for (int64_t i = 0; i < ngrid; i++) x[k++] = -12.0f + (float)i * 0x1p-13f;
    assert_true(k == n);
    for (int64_t i = 0; i < n; i++) gy[i] = 1.0f - 0.25f * (float)(i % 7);

    static const int ops[] = {DBR_OP_EXP,  DBR_OP_TANH,     DBR_OP_SIGMOID, DBR_OP_SILU,
                              DBR_OP_GELU, DBR_OP_GELU_BWD, DBR_OP_SILU_BWD};
    static const char *names[] = {"exp", "tanh", "sigmoid", "silu", "gelu", "gelu_bwd", "silu_bwd"};
    char err[256];
    for (int o = 0; o < (int)(sizeof ops / sizeof ops[0]); o++) {
        dbr_kdesc kd;
        sweep_kd(&kd, n, ops[o]);
        dbr_kfn f = dbr_cg_cpu(&kd, err, sizeof err);
        if (!f) fail_msg("%s: %s", names[o], err);
        void *a[3] = {x, gy, y}, *ar[3] = {x, gy, r};
        if (kd.n_in == 1) a[1] = y, ar[1] = r;
        f(a, 0, n);
        dbr_kdesc_eval(&kd, ar, 0, n);
        const bool ulp_bound = ops[o] == DBR_OP_EXP || ops[o] == DBR_OP_TANH;
        double max_ulps = 0, max_rel = 0, at_ulps = 0, at_rel = 0, max_cr = 0;
        for (int64_t i = 0; i < n; i++) {
            if (isnan(x[i]) || isnan(r[i])) {
                if (!isnan(y[i])) fail_msg("%s(%a): got %a want NaN", names[o], (double)x[i], (double)y[i]);
                continue;
            }
            if (isinf(r[i]) || r[i] == 0 || isinf(y[i])) {
                if (!(y[i] == r[i] || fabs((double)y[i] - r[i]) <= 1e-6))
                    fail_msg("%s(%a): got %a want %a", names[o], (double)x[i], (double)y[i], (double)r[i]);
                continue;
            }
            const double u = ulps_f32(y[i], r[i]);
            const double rel = fabs((double)y[i] - r[i]) / fmax(fabs((double)r[i]), 1.0);
            if (u > max_ulps) max_ulps = u, at_ulps = x[i];
            if (ulp_bound) {
                /* against e^x, tanh x rounded once from double: within 1 ulp */
                const double xd = x[i];
                const float cr = (float)(ops[o] == DBR_OP_EXP ? exp(xd) : tanh(xd));
                const double uc = ulps_f32(y[i], cr);
                if (uc > max_cr) max_cr = uc;
                if (uc > 1) fail_msg("%s(%a): got %a, rounded double %a", names[o], xd, (double)y[i], (double)cr);
            }
            if (rel > max_rel) max_rel = rel, at_rel = x[i];
            if (ulp_bound ? u > 2 : !(rel <= 1e-6))
                fail_msg("%s(%.9g): got %.9g want %.9g (%.0f ulps)", names[o], (double)x[i], (double)y[i],
                         (double)r[i], u);
        }
        fprintf(stderr, "  f32 %-8s over %lld inputs: max %.0f ulps from the evaluator (x = %.6g)", names[o],
                (long long)n, max_ulps, at_ulps);
        if (ulp_bound) fprintf(stderr, ", %.0f from double rounded", max_cr);
        fprintf(stderr, "; max error %.2g of max(|ref|, 1) (x = %.6g)\n", max_rel, at_rel);
    }
    free(x);
    free(gy);
    free(y);
    free(r);
}

/* Maps with a large output (>= 4 MiB) store through non-temporal 64-byte
 * stores after a head up to an aligned address: checked against the
 * evaluator for an output at an odd element offset, slices that start and
 * end anywhere (elements outside a slice untouched), and in place; the
 * optimised IR (DBR_DUMP) holds the non-temporal stores. */
static void test_nontemporal(void **state) {
    (void)state;
    char dump[1100], path[1400], err[256];
    snprintf(dump, sizeof dump, "%s/dump_nt", g_cache);
    mkdir(dump, 0755);
    for (int dt = DT_F32; dt <= DT_F64; dt++) {
        dbr_kdesc kd;
        const int64_t rows = 3, cols = 350003, n = rows * cols;
        inplace_kd(&kd, dt, rows, cols);
        snprintf(kd.name, sizeof kd.name, "nt_%s", dt == DT_F32 ? "f32" : "f64");
        char p0[4200];
        assert_int_equal(dbr_kcache_path("cpu", dbr_cg_cpu_host_key(&kd), p0, sizeof p0), 0);
        unlink(p0);
        dbr_cg_reset_memory();
        setenv("DBR_DUMP", dump, 1);
        dbr_kfn f = dbr_cg_cpu(&kd, err, sizeof err);
        unsetenv("DBR_DUMP");
        if (!f) fail_msg("%s", err);
        snprintf(path, sizeof path, "%s/%s_%016llx.ll", dump, kd.name, (unsigned long long)dbr_cg_cpu_host_key(&kd));
#if defined(__x86_64__)
        assert_true(file_has(path, "!nontemporal"));
#endif
        unlink(path);
        const size_t es = dt_size(dt);
        void *x = malloc((size_t)n * es), *w = malloc((size_t)cols * es), *ref = malloc((size_t)n * es);
        char *ob = malloc((size_t)(n + 1) * es);
        assert_non_null(x);
        assert_non_null(w);
        assert_non_null(ref);
        assert_non_null(ob);
        void *o = ob + es; /* 4 or 8 bytes past malloc's alignment */
        uint64_t s = 7;
        for (int64_t i = 0; i < n; i++) set_val(x, dt, i, runif(&s, -3, 3));
        for (int64_t i = 0; i < cols; i++) set_val(w, dt, i, runif(&s, -1, 1));
        void *ra[3] = {x, w, ref};
        dbr_kdesc_eval(&kd, ra, 0, n);
        const double tol = dt == DT_F32 ? 1e-6 : 1e-12;
        /* an odd output address, in slices; a middle slice leaves the rest alone */
        static const int64_t cuts[] = {0, 17, 130, 350010, 700011, 1050000, 1050009};
        for (int64_t i = 0; i < n; i++) set_val(o, dt, i, -7);
        void *a[3] = {x, w, o};
        f(a, 130, 350010);
        for (int64_t i = 0; i < n; i++) {
            const double gv = get_val(o, dt, i), r = get_val(ref, dt, i);
            const bool in = i >= 130 && i < 350010;
            if (in ? !(fabs(gv - r) <= tol * fmax(fabs(r), 1)) : gv != -7)
                fail_msg("slice, dtype %d, element %lld: %.9g vs %.9g", dt, (long long)i, gv, in ? r : -7.0);
        }
        for (int c = 0; c + 1 < (int)(sizeof cuts / sizeof cuts[0]); c++) f(a, cuts[c], cuts[c + 1]);
        /* in place, over x itself, in the same slices */
        void *ai[3] = {x, w, x};
        for (int c = 0; c + 1 < (int)(sizeof cuts / sizeof cuts[0]); c++) f(ai, cuts[c], cuts[c + 1]);
        for (int64_t i = 0; i < n; i++) {
            const double r = get_val(ref, dt, i), g1 = get_val(o, dt, i), g2 = get_val(x, dt, i);
            if (!(fabs(g1 - r) <= tol * fmax(fabs(r), 1)) || !(fabs(g2 - r) <= tol * fmax(fabs(r), 1)))
                fail_msg("dtype %d, element %lld: %.9g, in place %.9g, want %.9g", dt, (long long)i, g1, g2, r);
        }
        free(x);
        free(w);
        free(ref);
        free(ob);
    }
    rmdir(dump);
}

/* Threads asking for the same kernels at once get one function each. */
#define N_THREADS 4
#define N_TK 3
static dbr_kdesc g_tk[N_TK];
static dbr_kfn g_tfn[N_THREADS][N_TK];

static void *thread_body(void *arg) {
    const int t = (int)(intptr_t)arg;
    char err[256];
    for (int i = 0; i < N_TK; i++) {
        const int k = (i + t) % N_TK;
        g_tfn[t][k] = dbr_cg_cpu(&g_tk[k], err, sizeof err);
    }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    static const int ops[N_TK] = {DBR_OP_EXP, DBR_OP_SILU, DBR_OP_GELU};
    for (int k = 0; k < N_TK; k++) {
        one_kd(&g_tk[k], 50, ops[k]);
        char p0[4200];
        file_of(&g_tk[k], p0, sizeof p0);
        unlink(p0);
    }
    dbr_cg_reset_memory();
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, thread_body, (void *)(intptr_t)t), 0);
    for (int t = 0; t < N_THREADS; t++) pthread_join(th[t], NULL);
    for (int k = 0; k < N_TK; k++) {
        assert_non_null(g_tfn[0][k]);
        for (int t = 1; t < N_THREADS; t++) assert_ptr_equal(g_tfn[t][k], g_tfn[0][k]);
        check_one(&g_tk[k], g_tfn[0][k]);
    }
}

static void test_kcache_blobs(void **state) {
    (void)state;
    const char msg[] = "a generic blob";
    void *blob = NULL;
    size_t n = 0;
    assert_int_equal(dbr_kcache_load("cubin-sm90", 0x1234, &blob, &n), 1);
    assert_false(dbr_kcache_last_rejected());
    assert_int_equal(dbr_kcache_store("cubin-sm90", 0x1234, msg, sizeof msg), 0);
    assert_int_equal(dbr_kcache_load("cubin-sm90", 0x1234, &blob, &n), 0);
    assert_int_equal(n, sizeof msg);
    assert_memory_equal(blob, msg, sizeof msg);
    free(blob);
    /* the same key under another kind is another file */
    assert_int_equal(dbr_kcache_load("cubin-sm80", 0x1234, &blob, &n), 1);
    /* an empty blob round-trips */
    assert_int_equal(dbr_kcache_store("cpu", 7, "", 0), 0);
    assert_int_equal(dbr_kcache_load("cpu", 7, &blob, &n), 0);
    assert_int_equal(n, 0);
    free(blob);
    /* a foreign kind is refused */
    assert_int_equal(dbr_kcache_store("../x", 7, "", 0), -1);
    /* a file renamed to another key is rejected and removed */
    char p1[4200], p2[4200];
    assert_int_equal(dbr_kcache_path("cubin-sm90", 0x1234, p1, sizeof p1), 0);
    assert_int_equal(dbr_kcache_path("cubin-sm90", 0x99, p2, sizeof p2), 0);
    assert_int_equal(rename(p1, p2), 0);
    const int64_t rej = dbr_kcache_rejected();
    assert_int_equal(dbr_kcache_load("cubin-sm90", 0x99, &blob, &n), 1);
    assert_true(dbr_kcache_last_rejected());
    assert_int_equal(dbr_kcache_rejected(), rej + 1);
    struct stat st;
    assert_int_not_equal(stat(p2, &st), 0);
    /* disabled */
    setenv("DBR_CACHE_DIR", "off", 1);
    assert_null(dbr_kcache_dir());
    assert_int_equal(dbr_kcache_store("cpu", 1, "x", 1), -1);
    assert_int_equal(dbr_kcache_load("cpu", 1, &blob, &n), -1);
    setenv("DBR_CACHE_DIR", g_cache, 1);
    assert_string_equal(dbr_kcache_dir(), g_cache);
}

int main(void) {
    if (!dbr_cg_cpu_available()) {
        fprintf(stderr, "LLVM not built in: skipping\n");
        return 77;
    }
    snprintf(g_cache, sizeof g_cache, "%s/test-cache/codegen", DBR_BINARY_DIR);
    setenv("DBR_CACHE_DIR", g_cache, 1);
    if (!dbr_kcache_dir()) {
        fprintf(stderr, "cannot make %s\n", g_cache);
        return 1;
    }
    clear_dir(g_cache);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kcache_blobs),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_max_nan),
        cmocka_unit_test(test_in_place),
        cmocka_unit_test(test_vectorizes),
        cmocka_unit_test(test_exp_tanh_sweep),
        cmocka_unit_test(test_nontemporal),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_random_kernels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
