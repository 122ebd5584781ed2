/* llvm.c: the CPU back end: a kernel description rendered to LLVM IR through
 * the C API, optimised for the host CPU (O3, the host's features), emitted as
 * an object file and linked into one process-wide ORC LLJIT. Object files go
 * to the disk cache, so a later process skips everything but the link. */
#include "codegen/codegen.h"
#include "codegen/kcache.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef DBR_HAVE_LLVM
#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <llvm/Config/llvm-config.h>
#define CG_LLVM_VERSION LLVM_VERSION_STRING
#else
#define CG_LLVM_VERSION "none"
#endif

static uint64_t mix_str(uint64_t h, const char *s) {
    h = dbr_hash_mix(h, strlen(s));
    for (; *s; s++) h = dbr_hash_mix(h, (unsigned char)*s);
    return h;
}

uint64_t dbr_cg_cpu_key(const dbr_kdesc *kd, const char *cpu, const char *features) {
    uint64_t h = mix_str(0x6462722d637075ull, "dbr-cpu"); /* "dbr-cpu" */
    h = dbr_hash_mix(h, dbr_kdesc_hash(kd));
    h = mix_str(h, cpu ? cpu : "");
    h = mix_str(h, features ? features : "");
    h = mix_str(h, CG_LLVM_VERSION);
    h = dbr_hash_mix(h, DBR_CG_CPU_FORMAT);
    h = mix_str(h, DBR_CG_CPU_PIPELINE);
    return h ? h : 1;
}

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static dbr_cg_stats g_stats;

void dbr_cg_stats_get(dbr_cg_stats *s) {
    pthread_mutex_lock(&g_mu);
    *s = g_stats;
    pthread_mutex_unlock(&g_mu);
}

#ifndef DBR_HAVE_LLVM

bool dbr_cg_cpu_available(void) { return false; }

uint64_t dbr_cg_cpu_host_key(const dbr_kdesc *kd) {
    (void)kd;
    return 0;
}

void dbr_cg_reset_memory(void) {}

dbr_kfn dbr_cg_cpu(const dbr_kdesc *kd, char *err, size_t errlen) {
    (void)kd;
    dbr_errf(err, errlen, "dbr was built without LLVM: no CPU kernel compiler");
    return NULL;
}

#else

/* The in-memory cache: open addressing on the key (never 0), under g_mu. */
typedef struct cg_slot {
    uint64_t key;
    dbr_kfn fn;
} cg_slot;
static cg_slot *g_tab;
static size_t g_cap, g_len;

static dbr_kfn tab_get(uint64_t key) {
    if (!g_cap) return NULL;
    for (size_t i = key & (g_cap - 1);; i = (i + 1) & (g_cap - 1)) {
        if (g_tab[i].key == key) return g_tab[i].fn;
        if (!g_tab[i].key) return NULL;
    }
}

static int tab_put(uint64_t key, dbr_kfn fn) {
    if (2 * (g_len + 1) > g_cap) {
        const size_t cap = g_cap ? 2 * g_cap : 64;
        cg_slot *t = calloc(cap, sizeof *t);
        if (!t) return -1;
        for (size_t j = 0; j < g_cap; j++) {
            if (!g_tab[j].key) continue;
            size_t i = g_tab[j].key & (cap - 1);
            while (t[i].key) i = (i + 1) & (cap - 1);
            t[i] = g_tab[j];
        }
        free(g_tab);
        g_tab = t;
        g_cap = cap;
    }
    size_t i = key & (g_cap - 1);
    while (g_tab[i].key && g_tab[i].key != key) i = (i + 1) & (g_cap - 1);
    if (!g_tab[i].key) g_len++;
    g_tab[i].key = key;
    g_tab[i].fn = fn;
    return 0;
}

void dbr_cg_reset_memory(void) {
    pthread_mutex_lock(&g_mu);
    free(g_tab);
    g_tab = NULL;
    g_cap = g_len = 0;
    pthread_mutex_unlock(&g_mu);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* ---- the host target ------------------------------------------------------- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static bool g_target_ok;
static char *g_triple, *g_cpu, *g_features;
static LLVMTargetRef g_target;
static LLVMOrcLLJITRef g_jit;
static uint64_t g_njd;

static void host_init(void) {
    if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter()) return;
    g_triple = LLVMGetDefaultTargetTriple();
    g_cpu = LLVMGetHostCPUName();
    g_features = LLVMGetHostCPUFeatures();
    char *msg = NULL;
    if (LLVMGetTargetFromTriple(g_triple, &g_target, &msg)) {
        LLVMDisposeMessage(msg);
        return;
    }
    g_target_ok = g_triple && g_cpu && g_features;
}

bool dbr_cg_cpu_available(void) {
    pthread_once(&g_once, host_init);
    return g_target_ok;
}

uint64_t dbr_cg_cpu_host_key(const dbr_kdesc *kd) {
    if (!dbr_cg_cpu_available()) return 0;
    return dbr_cg_cpu_key(kd, g_cpu, g_features);
}

/* Target machines cost a few ms to make: compiles take one from this list
 * (or make one) and give it back, so no two threads share one. */
#define TM_KEEP 8
static LLVMTargetMachineRef g_tm[TM_KEEP];
static int g_n_tm;

static LLVMTargetMachineRef tm_take(void) {
    LLVMTargetMachineRef tm = NULL;
    pthread_mutex_lock(&g_mu);
    if (g_n_tm > 0) tm = g_tm[--g_n_tm];
    pthread_mutex_unlock(&g_mu);
    if (!tm)
        tm = LLVMCreateTargetMachine(g_target, g_triple, g_cpu, g_features,
                                     LLVMCodeGenLevelLess, LLVMRelocPIC, LLVMCodeModelSmall);
    return tm;
}

static void tm_give(LLVMTargetMachineRef tm) {
    if (!tm) return;
    pthread_mutex_lock(&g_mu);
    if (g_n_tm < TM_KEEP) {
        g_tm[g_n_tm++] = tm;
        tm = NULL;
    }
    pthread_mutex_unlock(&g_mu);
    if (tm) LLVMDisposeTargetMachine(tm);
}

static void shutdown_all(void) {
    pthread_mutex_lock(&g_mu);
    while (g_n_tm > 0) LLVMDisposeTargetMachine(g_tm[--g_n_tm]);
    if (g_jit) {
        LLVMErrorRef e = LLVMOrcDisposeLLJIT(g_jit);
        if (e) LLVMConsumeError(e);
        g_jit = NULL;
    }
    free(g_tab);
    g_tab = NULL;
    g_cap = g_len = 0;
    LLVMDisposeMessage(g_triple);
    LLVMDisposeMessage(g_cpu);
    LLVMDisposeMessage(g_features);
    g_triple = g_cpu = g_features = NULL;
    g_target_ok = false;
    pthread_mutex_unlock(&g_mu);
}

static void take_error(LLVMErrorRef e, const char *what, char *err, size_t errlen) {
    char *m = LLVMGetErrorMessage(e);
    dbr_errf(err, errlen, "%s: %s", what, m);
    LLVMDisposeErrorMessage(m);
}

/* ---- the loop space ----------------------------------------------------------- */

/* kd's iteration space with unit dims dropped and neighbours merged where
 * every input steps through them as one dim: the leading (kept) dims, then
 * nr folded ones (maps: nr = 0). Each group keeps at least one dim. */
typedef struct space {
    int nd, nr;
    int64_t shape[DBR_KD_MAX_DIMS];
    int64_t st[DBR_KD_MAX_IN][DBR_KD_MAX_DIMS];
} space;

static void space_make(const dbr_kdesc *kd, space *s) {
    memset(s, 0, sizeof *s);
    const int lead = kd->ndim - kd->nred;
    for (int g = 0; g < (kd->nred ? 2 : 1); g++) {
        const int d0 = g ? lead : 0, d1 = g ? kd->ndim : lead, start = s->nd;
        for (int d = d0; d < d1; d++) {
            if (kd->shape[d] == 1) continue;
            bool merge = s->nd > start;
            for (int i = 0; merge && i < kd->n_in; i++)
                merge = s->st[i][s->nd - 1] == kd->in[i].stride[d] * kd->shape[d];
            if (merge) {
                s->shape[s->nd - 1] *= kd->shape[d];
                for (int i = 0; i < kd->n_in; i++) s->st[i][s->nd - 1] = kd->in[i].stride[d];
            } else {
                s->shape[s->nd] = kd->shape[d];
                for (int i = 0; i < kd->n_in; i++) s->st[i][s->nd] = kd->in[i].stride[d];
                s->nd++;
            }
        }
        if (s->nd == start) s->shape[s->nd++] = 1;
        if (g) s->nr = s->nd - start;
    }
}

/* ---- IR building ---------------------------------------------------------------- */

typedef struct gen {
    const dbr_kdesc *kd;
    space sp;
    LLVMContextRef C;
    LLVMModuleRef M;
    LLVMBuilderRef B;
    LLVMValueRef fn;
    LLVMTypeRef T, dbl, i64, ptr;
    LLVMValueRef in[DBR_KD_MAX_IN], out;
    LLVMValueRef f_exp, f_log, f_tanh, f_pow, f_sqrt, f_fabs, f_max;
    LLVMTypeRef t_un, t_pow;
    unsigned md_noalias, md_scope;
    LLVMValueRef scope; /* the output's alias scope list (maps) */
    bool uni[DBR_KD_MAX_INS];
    LLVMValueRef uv[DBR_KD_MAX_INS], uraw[DBR_KD_MAX_INS];
} gen;

static LLVMTypeRef elt_type(gen *g, int dtype) {
    switch (dtype) {
    case DT_F32: return LLVMFloatTypeInContext(g->C);
    case DT_F64: return LLVMDoubleTypeInContext(g->C);
    case DT_I32: return LLVMInt32TypeInContext(g->C);
    default: return LLVMInt64TypeInContext(g->C);
    }
}

static LLVMValueRef K(gen *g, double x) { return LLVMConstReal(g->T, x); }
static LLVMValueRef I(gen *g, int64_t x) { return LLVMConstInt(g->i64, (unsigned long long)x, 0); }

static LLVMValueRef libm(gen *g, const char *name, LLVMTypeRef ty) {
    LLVMValueRef f = LLVMAddFunction(g->M, name, ty);
    const unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
    LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(g->C, nounwind, 0));
    return f;
}

static LLVMValueRef intrinsic(gen *g, const char *name, LLVMTypeRef *ty) {
    const unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    *ty = LLVMIntrinsicGetType(g->C, id, &g->T, 1);
    return LLVMGetIntrinsicDeclaration(g->M, id, &g->T, 1);
}

static LLVMValueRef call1(gen *g, LLVMValueRef f, LLVMValueRef x) {
    return LLVMBuildCall2(g->B, g->t_un, f, &x, 1, "");
}

static LLVMValueRef fsel(gen *g, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b,
                         LLVMValueRef t, LLVMValueRef f) {
    return LLVMBuildSelect(g->B, LLVMBuildFCmp(g->B, p, a, b, ""), t, f, "");
}

/* ---- exp and tanh for f32 kernels, inline ------------------------------------------
 *
 * A call to expf or tanhf keeps a loop scalar, so f32 kernels compute both
 * in double with plain arithmetic the loop vectorizer widens, then round
 * once to float: the double result is good to ~1e-9 relative, so the float
 * is the correctly rounded value or its neighbour (test_codegen sweeps it:
 * within 1 ulp of e^x and tanh x rounded from double, within 2 of glibc's
 * expf and tanhf). f64 kernels keep libm's exp and tanh. */

static LLVMValueRef D(gen *g, double x) { return LLVMConstReal(g->dbl, x); }

static LLVMValueRef dcall(gen *g, const char *name, LLVMValueRef *args, unsigned n) {
    const unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMTypeRef ty = LLVMIntrinsicGetType(g->C, id, &g->dbl, 1);
    return LLVMBuildCall2(g->B, ty, LLVMGetIntrinsicDeclaration(g->M, id, &g->dbl, 1), args, n, "");
}

/* a b + c rounded once (llvm.fma, always: the sequence of roundings is
 * fixed, so C's fma() repeats it to the bit) */
static LLVMValueRef dfma(gen *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
    LLVMValueRef args[3] = {a, b, c};
    return dcall(g, "llvm.fma", args, 3);
}

/* e^x = 2^n (1 + q) in double for x (double) in [-700, 700] or NaN; sets
 * *scale = 2^n and returns q = e^r - 1. x = n ln2 + r with n = round(x / ln2)
 * (rounded by adding 1.5 * 2^52, whose low bits then hold n as an integer,
 * so NaN needs no conversion to int) and r by a two-constant Cody-Waite
 * split (|r| <= 0.347); q is e^r - 1's Taylor series to r^8 (error below
 * 6e-10 of q, far under float's half ulp of 6e-8) by Estrin's scheme (a
 * short dependency chain); 2^n is built in the exponent bits. */
static LLVMValueRef expq_d(gen *g, LLVMValueRef x, LLVMValueRef *scale) {
    LLVMBuilderRef B = g->B;
    LLVMValueRef t = dfma(g, x, D(g, 1.4426950408889634), D(g, 0x1.8p52));
    LLVMValueRef n = LLVMBuildFSub(B, t, D(g, 0x1.8p52), "");
    LLVMValueRef r = dfma(g, n, D(g, -6.93147180369123816490e-01), x); /* ln2 hi: 32 bits */
    r = dfma(g, n, D(g, -1.90821492927058770002e-10), r);                /* ln2 lo */
    LLVMValueRef r2 = LLVMBuildFMul(B, r, r, ""), r4 = LLVMBuildFMul(B, r2, r2, "");
    LLVMValueRef a23 = dfma(g, r, D(g, 1.0 / 6), D(g, 1.0 / 2));
    LLVMValueRef a45 = dfma(g, r, D(g, 1.0 / 120), D(g, 1.0 / 24));
    LLVMValueRef a67 = dfma(g, r, D(g, 1.0 / 5040), D(g, 1.0 / 720));
    LLVMValueRef a68 = dfma(g, r2, D(g, 1.0 / 40320), a67);
    LLVMValueRef a13 = dfma(g, r2, a23, r), a48 = dfma(g, r2, a68, a45);
    LLVMValueRef bits = LLVMBuildAdd(B, LLVMBuildBitCast(B, t, g->i64, ""), I(g, 1023), "");
    *scale = LLVMBuildBitCast(B, LLVMBuildShl(B, bits, I(g, 52), ""), g->dbl, "");
    return dfma(g, r4, a48, a13);
}

static LLVMValueRef dsel(gen *g, LLVMRealPredicate p, LLVMValueRef a, double b, LLVMValueRef t,
                         LLVMValueRef f) {
    return LLVMBuildSelect(g->B, LLVMBuildFCmp(g->B, p, a, D(g, b), ""), t, f, "");
}

/* expf(x): 2^n + 2^n q with x clamped to [-110, 90] (NaN passes), where e^x
 * rounds to 0 and to infinity in float. */
static LLVMValueRef exp_f32(gen *g, LLVMValueRef x) {
    LLVMValueRef xd = LLVMBuildFPExt(g->B, x, g->dbl, ""), scale;
    xd = dsel(g, LLVMRealOGT, xd, 90.0, D(g, 90.0), xd);
    xd = dsel(g, LLVMRealOLT, xd, -110.0, D(g, -110.0), xd);
    LLVMValueRef q = expq_d(g, xd, &scale);
    return LLVMBuildFPTrunc(g->B, dfma(g, scale, q, scale), g->T, "");
}

/* tanhf(x): sign(x) m / (m + 2) with m = e^(2|x|) - 1 = 2^n q + (2^n - 1),
 * exact in its leading bits for small |x| (n = 0), so no cancellation
 * anywhere; |x| clamped to 20 (tanh is 1 in double beyond). Keeps -0 and
 * tiny x (m / 2 = |x|); NaN passes. */
static LLVMValueRef tanh_f32(gen *g, LLVMValueRef x) {
    LLVMBuilderRef B = g->B;
    LLVMValueRef xd = LLVMBuildFPExt(B, x, g->dbl, ""), scale;
    LLVMValueRef ax = dcall(g, "llvm.fabs", &xd, 1);
    ax = dsel(g, LLVMRealOGT, ax, 20.0, D(g, 20.0), ax);
    LLVMValueRef q = expq_d(g, LLVMBuildFAdd(B, ax, ax, ""), &scale);
    LLVMValueRef m = dfma(g, scale, q, LLVMBuildFSub(B, scale, D(g, 1), ""));
    LLVMValueRef y = LLVMBuildFDiv(B, m, LLVMBuildFAdd(B, m, D(g, 2), ""), "");
    LLVMValueRef cs[2] = {y, xd};
    return LLVMBuildFPTrunc(B, dcall(g, "llvm.copysign", cs, 2), g->T, "");
}

static LLVMValueRef exp_T(gen *g, LLVMValueRef x) {
    return g->T == g->dbl ? call1(g, g->f_exp, x) : exp_f32(g, x);
}

static LLVMValueRef tanh_T(gen *g, LLVMValueRef x) {
    return g->T == g->dbl ? call1(g, g->f_tanh, x) : tanh_f32(g, x);
}

/* tanh(c (x + k x x x)), as ew.c spells it */
static LLVMValueRef gelu_t(gen *g, LLVMValueRef x) {
    LLVMBuilderRef B = g->B;
    LLVMValueRef k3 = LLVMBuildFMul(B, LLVMBuildFMul(B, LLVMBuildFMul(B, K(g, 0.044715), x, ""), x, ""), x, "");
    return tanh_T(g, LLVMBuildFMul(B, K(g, 0.7978845608028654), LLVMBuildFAdd(B, x, k3, ""), ""));
}

static LLVMValueRef sigmoid(gen *g, LLVMValueRef x) {
    LLVMValueRef e = exp_T(g, LLVMBuildFNeg(g->B, x, ""));
    return LLVMBuildFDiv(g->B, K(g, 1), LLVMBuildFAdd(g->B, K(g, 1), e, ""), "");
}

static LLVMValueRef emit_op(gen *g, const dbr_kd_ins *s, LLVMValueRef *v, LLVMValueRef *raw) {
    LLVMBuilderRef B = g->B;
    LLVMValueRef a = v[s->a], b = s->b >= 0 ? v[s->b] : NULL;
    LLVMValueRef zero = K(g, 0), one = K(g, 1), half = K(g, 0.5), p = K(g, s->p);
    switch ((dbr_op)s->op) {
    case DBR_OP_NEG: return LLVMBuildFNeg(B, a, "");
    case DBR_OP_EXP: return exp_T(g, a);
    case DBR_OP_LOG: return call1(g, g->f_log, a);
    case DBR_OP_SQRT: return call1(g, g->f_sqrt, a);
    case DBR_OP_RSQRT: return LLVMBuildFDiv(B, one, call1(g, g->f_sqrt, a), "");
    case DBR_OP_POW: {
        if (s->p == 2.0) return LLVMBuildFMul(B, a, a, "");
        if (s->p == 1.0) return a;
        LLVMValueRef args[2] = {a, p};
        return LLVMBuildCall2(B, g->t_pow, g->f_pow, args, 2, "");
    }
    case DBR_OP_ABS: return call1(g, g->f_fabs, a);
    case DBR_OP_SIGN:
        return fsel(g, LLVMRealOGT, a, zero, one, fsel(g, LLVMRealOLT, a, zero, K(g, -1), a));
    case DBR_OP_TANH: return tanh_T(g, a);
    case DBR_OP_SIGMOID: return sigmoid(g, a);
    case DBR_OP_RELU: return fsel(g, LLVMRealOGT, a, zero, a, zero);
    case DBR_OP_LEAKY_RELU: return fsel(g, LLVMRealOGT, a, zero, a, LLVMBuildFMul(B, a, p, ""));
    case DBR_OP_GELU: {
        LLVMValueRef hv = LLVMBuildFMul(B, half, a, "");
        return LLVMBuildFMul(B, hv, LLVMBuildFAdd(B, one, gelu_t(g, a), ""), "");
    }
    case DBR_OP_SILU: {
        LLVMValueRef e = exp_T(g, LLVMBuildFNeg(B, a, ""));
        return LLVMBuildFDiv(B, a, LLVMBuildFAdd(B, one, e, ""), "");
    }
    case DBR_OP_ADD: return LLVMBuildFAdd(B, a, b, "");
    case DBR_OP_SUB: return LLVMBuildFSub(B, a, b, "");
    case DBR_OP_MUL: return LLVMBuildFMul(B, a, b, "");
    case DBR_OP_DIV: return LLVMBuildFDiv(B, a, b, "");
    case DBR_OP_RELU_BWD: return fsel(g, LLVMRealOGT, a, zero, b, zero);
    case DBR_OP_LEAKY_RELU_BWD: return fsel(g, LLVMRealOGT, a, zero, b, LLVMBuildFMul(B, b, p, ""));
    case DBR_OP_GELU_BWD: {
        /* half (1 + t) + half x (1 - t t) c (1 + 3 k x x) */
        LLVMValueRef t = gelu_t(g, a);
        LLVMValueRef l = LLVMBuildFMul(B, half, LLVMBuildFAdd(B, one, t, ""), "");
        LLVMValueRef r = LLVMBuildFMul(B, half, a, "");
        r = LLVMBuildFMul(B, r, LLVMBuildFSub(B, one, LLVMBuildFMul(B, t, t, ""), ""), "");
        r = LLVMBuildFMul(B, r, K(g, 0.7978845608028654), "");
        LLVMValueRef q = LLVMBuildFMul(B, LLVMBuildFMul(B, K(g, 3), K(g, 0.044715), ""), a, "");
        q = LLVMBuildFAdd(B, one, LLVMBuildFMul(B, q, a, ""), "");
        r = LLVMBuildFMul(B, r, q, "");
        return LLVMBuildFMul(B, b, LLVMBuildFAdd(B, l, r, ""), "");
    }
    case DBR_OP_SILU_BWD: {
        LLVMValueRef sg = sigmoid(g, a);
        LLVMValueRef r = LLVMBuildFMul(B, a, LLVMBuildFSub(B, one, sg, ""), "");
        r = LLVMBuildFMul(B, sg, LLVMBuildFAdd(B, one, r, ""), "");
        return LLVMBuildFMul(B, b, r, "");
    }
    case DBR_OP_WHERE: {
        /* A loaded mask is tested in its own type (kdesc_eval.h). */
        LLVMValueRef m = raw[s->a], cond;
        if (g->kd->ins[s->a].kind == DBR_KD_LOAD && m) {
            LLVMTypeRef mt = LLVMTypeOf(m);
            if (LLVMGetTypeKind(mt) == LLVMIntegerTypeKind)
                cond = LLVMBuildICmp(B, LLVMIntNE, m, LLVMConstInt(mt, 0, 0), "");
            else
                cond = LLVMBuildFCmp(B, LLVMRealUNE, m, LLVMConstReal(mt, 0), "");
        } else {
            cond = LLVMBuildFCmp(B, LLVMRealUNE, a, zero, "");
        }
        return LLVMBuildSelect(B, cond, b, v[s->c], "");
    }
    default: return zero;
    }
}

/* The instructions' values at position c (i64) along the innermost dim of
 * the current row, whose inputs start at base[]. With hoist, only those
 * that do not depend on c, kept in g->uv for the row; otherwise those are
 * taken from g->uv. */
static void emit_point(gen *g, LLVMValueRef c, LLVMValueRef *base, bool hoist, LLVMValueRef *v,
                       LLVMValueRef *raw) {
    const dbr_kdesc *kd = g->kd;
    const int last = g->sp.nd - 1;
    for (int k = 0; k < kd->n_ins; k++) {
        const dbr_kd_ins *s = &kd->ins[k];
        raw[k] = NULL;
        if (g->uni[k] && !hoist) {
            v[k] = g->uv[k];
            raw[k] = g->uraw[k];
            continue;
        }
        if (!g->uni[k] && hoist) continue;
        if (s->kind == DBR_KD_CONST) {
            v[k] = K(g, s->p);
        } else if (s->kind == DBR_KD_LOAD) {
            const int i = s->a, dt = kd->in[i].dtype;
            const int64_t st = g->sp.st[i][last];
            LLVMTypeRef et = elt_type(g, dt);
            LLVMValueRef p = base[i];
            if (!hoist && st != 0) {
                LLVMValueRef idx = st == 1 ? c : LLVMBuildMul(g->B, c, I(g, st), "");
                p = LLVMBuildInBoundsGEP2(g->B, et, p, &idx, 1, "");
            }
            LLVMValueRef x = LLVMBuildLoad2(g->B, et, p, "");
            LLVMSetAlignment(x, dt == DT_F32 || dt == DT_I32 ? 4 : 8);
            if (g->scope) LLVMSetMetadata(x, g->md_noalias, g->scope);
            raw[k] = x;
            if (dt == kd->dtype) v[k] = x;
            else if (dt == DT_I32 || dt == DT_I64) v[k] = LLVMBuildSIToFP(g->B, x, g->T, "");
            else if (dt == DT_F32) v[k] = LLVMBuildFPExt(g->B, x, g->T, "");
            else v[k] = LLVMBuildFPTrunc(g->B, x, g->T, "");
        } else {
            v[k] = emit_op(g, s, v, raw);
        }
    }
}

/* Offsets (elements) of every input at flat index x of dims [d0, d1). */
static void emit_offsets(gen *g, LLVMValueRef x, int d0, int d1, LLVMValueRef *off) {
    const dbr_kdesc *kd = g->kd;
    for (int d = d1 - 1; d >= d0; d--) {
        LLVMValueRef id = x;
        if (d > d0) {
            id = LLVMBuildURem(g->B, x, I(g, g->sp.shape[d]), "");
            x = LLVMBuildUDiv(g->B, x, I(g, g->sp.shape[d]), "");
        }
        for (int i = 0; i < kd->n_in; i++) {
            if (g->sp.st[i][d] == 0 || g->sp.shape[d] == 1) continue;
            LLVMValueRef t = LLVMBuildMul(g->B, id, I(g, g->sp.st[i][d]), "");
            off[i] = off[i] ? LLVMBuildAdd(g->B, off[i], t, "") : t;
        }
    }
}

static void emit_bases(gen *g, LLVMValueRef *off, LLVMValueRef *base) {
    for (int i = 0; i < g->kd->n_in; i++) {
        base[i] = g->in[i];
        if (off[i])
            base[i] = LLVMBuildInBoundsGEP2(g->B, elt_type(g, g->kd->in[i].dtype), g->in[i], &off[i], 1, "");
    }
}

static LLVMBasicBlockRef block(gen *g, const char *name) {
    return LLVMAppendBasicBlockInContext(g->C, g->fn, name);
}

/* A loop over positions [from, to) of the current row (none when from >=
 * to), storing each value at dst[c - sub] (sub NULL: dst[c]). */
static void emit_loop(gen *g, LLVMValueRef *base, LLVMValueRef from, LLVMValueRef to, LLVMValueRef dst,
                      LLVMValueRef sub) {
    LLVMBuilderRef B = g->B;
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(B), loop = block(g, "inner"), after = block(g, "inner_done");
    LLVMBuildCondBr(B, LLVMBuildICmp(B, LLVMIntSLT, from, to, ""), loop, after);
    LLVMPositionBuilderAtEnd(B, loop);
    LLVMValueRef c = LLVMBuildPhi(B, g->i64, "c"), v[DBR_KD_MAX_INS], raw[DBR_KD_MAX_INS];
    emit_point(g, c, base, false, v, raw);
    LLVMValueRef at = sub ? LLVMBuildSub(B, c, sub, "") : c;
    LLVMValueRef st = LLVMBuildStore(B, v[g->kd->n_ins - 1], LLVMBuildInBoundsGEP2(B, g->T, dst, &at, 1, ""));
    LLVMSetAlignment(st, g->kd->dtype == DT_F32 ? 4 : 8);
    LLVMSetMetadata(st, g->md_scope, g->scope);
    LLVMValueRef cn = LLVMBuildAdd(B, c, I(g, 1), "");
    LLVMBasicBlockRef loop_end = LLVMGetInsertBlock(B);
    LLVMBuildCondBr(B, LLVMBuildICmp(B, LLVMIntSLT, cn, to, ""), loop, after);
    LLVMValueRef cin[2] = {from, cn};
    LLVMBasicBlockRef cbb[2] = {pre, loop_end};
    LLVMAddIncoming(c, cin, cbb, 2);
    LLVMPositionBuilderAtEnd(B, after);
}

/* Large map outputs bypass the caches: a store that misses costs a read for
 * ownership, a third more traffic than the kernel's own. Over segment
 * [0, n) of a row (output at obase): chunks of NT_CHUNK bytes from the
 * first 64-byte aligned element on, computed into an aligned stack buffer
 * by the plain (vectorized) loop and copied out with aligned non-temporal
 * 64-byte stores; then the head before them and the tail after them by one
 * plain loop (elements are independent, in place included). An output
 * not aligned to its element size takes plain stores only. The kernel ends
 * with sfence (an mfence where that is missing), so the stores are
 * visible once the caller's threads join. */
#define NT_MIN_BYTES (4 << 20)
#define NT_CHUNK 512

static bool map_nontemporal(const gen *g) {
    const int64_t es = g->kd->dtype == DT_F32 ? 4 : 8;
    return g_triple && !strncmp(g_triple, "x86_64", 6) && g->sp.shape[g->sp.nd - 1] * es >= 2 * NT_CHUNK &&
           dbr_kdesc_out_numel(g->kd) * es >= NT_MIN_BYTES;
}

static void emit_segment_nt(gen *g, LLVMValueRef *base, LLVMValueRef obase, LLVMValueRef n, LLVMValueRef buf) {
    LLVMBuilderRef B = g->B;
    const int64_t es = g->kd->dtype == DT_F32 ? 4 : 8, ch = NT_CHUNK / es, w = 64 / es;
    LLVMValueRef addr = LLVMBuildPtrToInt(B, obase, g->i64, "");
    LLVMValueRef head = LLVMBuildUDiv(B, LLVMBuildAnd(B, LLVMBuildNeg(B, addr, ""), I(g, 63), ""), I(g, es), "");
    LLVMValueRef odd = LLVMBuildICmp(B, LLVMIntNE, LLVMBuildAnd(B, addr, I(g, es - 1), ""), I(g, 0), "");
    head = LLVMBuildSelect(B, LLVMBuildOr(B, odd, LLVMBuildICmp(B, LLVMIntSGT, head, n, ""), ""), n, head, "head");
    LLVMValueRef nch = LLVMBuildSDiv(B, LLVMBuildSub(B, n, head, ""), I(g, ch), "");
    LLVMValueRef mend = LLVMBuildAdd(B, head, LLVMBuildMul(B, nch, I(g, ch), ""), "mend");

    LLVMBasicBlockRef pre = LLVMGetInsertBlock(B), cb = block(g, "chunk"), done = block(g, "chunks_done");
    LLVMBuildCondBr(B, LLVMBuildICmp(B, LLVMIntSLT, head, mend, ""), cb, done);
    LLVMPositionBuilderAtEnd(B, cb);
    LLVMValueRef k = LLVMBuildPhi(B, g->i64, "k"), kn = LLVMBuildAdd(B, k, I(g, ch), "");
    emit_loop(g, base, k, kn, buf, k);
    LLVMTypeRef vt = LLVMVectorType(g->T, (unsigned)w);
    const unsigned nt_kind = LLVMGetMDKindIDInContext(g->C, "nontemporal", 11);
    LLVMMetadataRef one = LLVMValueAsMetadata(LLVMConstInt(LLVMInt32TypeInContext(g->C), 1, 0));
    LLVMValueRef nt = LLVMMetadataAsValue(g->C, LLVMMDNodeInContext2(g->C, &one, 1));
    for (int64_t q = 0; q < ch; q += w) {
        LLVMValueRef qi = I(g, q), oi = LLVMBuildAdd(B, k, qi, "");
        LLVMValueRef x = LLVMBuildLoad2(B, vt, LLVMBuildInBoundsGEP2(B, g->T, buf, &qi, 1, ""), "");
        LLVMSetAlignment(x, 64);
        LLVMValueRef st = LLVMBuildStore(B, x, LLVMBuildInBoundsGEP2(B, g->T, obase, &oi, 1, ""));
        LLVMSetAlignment(st, 64);
        LLVMSetMetadata(st, nt_kind, nt);
        LLVMSetMetadata(st, g->md_scope, g->scope);
    }
    LLVMBasicBlockRef cend = LLVMGetInsertBlock(B);
    LLVMBuildCondBr(B, LLVMBuildICmp(B, LLVMIntSLT, kn, mend, ""), cb, done);
    LLVMValueRef kin[2] = {head, kn};
    LLVMBasicBlockRef kbb[2] = {pre, cend};
    LLVMAddIncoming(k, kin, kbb, 2);

    /* the head [0, head) then the tail [mend, n), through one loop */
    LLVMPositionBuilderAtEnd(B, done);
    LLVMBasicBlockRef pb = block(g, "piece"), out = block(g, "pieces_done");
    LLVMBuildBr(B, pb);
    LLVMPositionBuilderAtEnd(B, pb);
    LLVMTypeRef i1 = LLVMInt1TypeInContext(g->C);
    LLVMValueRef from = LLVMBuildPhi(B, g->i64, "from"), to = LLVMBuildPhi(B, g->i64, "to");
    LLVMValueRef first = LLVMBuildPhi(B, i1, "first");
    emit_loop(g, base, from, to, obase, NULL);
    LLVMBasicBlockRef pend = LLVMGetInsertBlock(B);
    LLVMBuildCondBr(B, first, pb, out);
    LLVMValueRef fin[2] = {I(g, 0), mend}, tin[2] = {head, n};
    LLVMValueRef flin[2] = {LLVMConstInt(i1, 1, 0), LLVMConstInt(i1, 0, 0)};
    LLVMBasicBlockRef pbb[2] = {done, pend};
    LLVMAddIncoming(from, fin, pbb, 2);
    LLVMAddIncoming(to, tin, pbb, 2);
    LLVMAddIncoming(first, flin, pbb, 2);
    LLVMPositionBuilderAtEnd(B, out);
}

/* Output rows (the innermost dim), one segment [col0, col1) of a row at a
 * time: input offsets once per segment, then a plain loop over it. */
static void emit_map(gen *g, LLVMValueRef begin, LLVMValueRef end) {
    LLVMBuilderRef B = g->B;
    const int last = g->sp.nd - 1;
    const int64_t inner = g->sp.shape[last];
    const bool nt = map_nontemporal(g);
    LLVMValueRef buf = NULL;
    if (nt) {
        buf = LLVMBuildArrayAlloca(B, g->T, I(g, NT_CHUNK / (g->kd->dtype == DT_F32 ? 4 : 8)), "ntbuf");
        LLVMSetAlignment(buf, 64);
    }
    LLVMBasicBlockRef entry = LLVMGetInsertBlock(B), hdr = block(g, "row"), body = block(g, "seg"),
                      exit = block(g, "exit");
    LLVMBuildBr(B, hdr);

    LLVMPositionBuilderAtEnd(B, hdr);
    LLVMValueRef j = LLVMBuildPhi(B, g->i64, "j");
    LLVMBuildCondBr(B, LLVMBuildICmp(B, LLVMIntSLT, j, end, ""), body, exit);

    LLVMPositionBuilderAtEnd(B, body);
    LLVMValueRef row = LLVMBuildUDiv(B, j, I(g, inner), "row");
    LLVMValueRef col0 = LLVMBuildSub(B, j, LLVMBuildMul(B, row, I(g, inner), ""), "col0");
    LLVMValueRef left = LLVMBuildSub(B, end, j, ""), avail = LLVMBuildSub(B, I(g, inner), col0, "");
    LLVMValueRef n = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, left, avail, ""), left, avail, "n");
    LLVMValueRef off[DBR_KD_MAX_IN] = {0}, base[DBR_KD_MAX_IN];
    emit_offsets(g, row, 0, last, off);
    for (int i = 0; i < g->kd->n_in; i++) {
        const int64_t st = g->sp.st[i][last];
        if (st == 0) continue;
        LLVMValueRef t = st == 1 ? col0 : LLVMBuildMul(B, col0, I(g, st), "");
        off[i] = off[i] ? LLVMBuildAdd(B, off[i], t, "") : t;
    }
    emit_bases(g, off, base);
    LLVMValueRef obase = LLVMBuildInBoundsGEP2(B, g->T, g->out, &j, 1, "");
    emit_point(g, NULL, base, true, g->uv, g->uraw);
    LLVMValueRef jn = LLVMBuildAdd(B, j, n, "");
    if (nt) emit_segment_nt(g, base, obase, n, buf);
    else emit_loop(g, base, I(g, 0), n, obase, NULL);
    LLVMBasicBlockRef seg_end = LLVMGetInsertBlock(B);
    LLVMBuildBr(B, hdr);

    LLVMValueRef jin[2] = {begin, jn};
    LLVMBasicBlockRef jbb[2] = {entry, seg_end};
    LLVMAddIncoming(j, jin, jbb, 2);

    LLVMPositionBuilderAtEnd(B, exit);
    if (nt) {
        const char *sf = "llvm.x86.sse.sfence";
        const unsigned id = LLVMLookupIntrinsicID(sf, strlen(sf));
        if (id)
            LLVMBuildCall2(B, LLVMIntrinsicGetType(g->C, id, NULL, 0),
                           LLVMGetIntrinsicDeclaration(g->M, id, NULL, 0), NULL, 0, "");
        else
            LLVMBuildFence(B, LLVMAtomicOrderingSequentiallyConsistent, 0, "");
    }
    LLVMBuildRetVoid(B);
}

/* Folding: sums in double, max in the kernel's type with llvm.maximum
 * (NaN wins). */
static LLVMValueRef fold(gen *g, LLVMValueRef acc, LLVMValueRef x, bool conv) {
    if (g->kd->red == DBR_OP_MAX) {
        LLVMValueRef a[2] = {acc, x};
        LLVMTypeRef ty = LLVMIntrinsicGetType(g->C, LLVMLookupIntrinsicID("llvm.maximum", 12), &g->T, 1);
        return LLVMBuildCall2(g->B, ty, g->f_max, a, 2, "");
    }
    if (conv && g->T != g->dbl) x = LLVMBuildFPExt(g->B, x, g->dbl, "");
    return LLVMBuildFAdd(g->B, acc, x, "");
}

/* One output element per iteration of j: the folded dims walked as rows of
 * the innermost one; each row summed with eight partial accumulators (as
 * kernels/cpu/reduce.c does) then a tail, and added to the element's total. */
static void emit_reduce(gen *g, LLVMValueRef begin, LLVMValueRef end) {
    LLVMBuilderRef B = g->B;
    const space *sp = &g->sp;
    const int last = sp->nd - 1, lead = sp->nd - sp->nr;
    const int64_t inner = sp->shape[last], n8 = inner / 8 * 8;
    int64_t rows = 1;
    for (int d = lead; d < last; d++) rows *= sp->shape[d];
    const bool is_max = g->kd->red == DBR_OP_MAX;
    LLVMTypeRef at = is_max ? g->T : g->dbl;
    LLVMValueRef init = is_max ? LLVMConstReal(at, -INFINITY) : LLVMConstReal(at, 0);

    LLVMBasicBlockRef entry = LLVMGetInsertBlock(B), jh = block(g, "j"), jb = block(g, "jbody"),
                      rh = block(g, "row"), exit = block(g, "exit");
    LLVMBuildBr(B, jh);
    LLVMPositionBuilderAtEnd(B, jh);
    LLVMValueRef j = LLVMBuildPhi(B, g->i64, "j");
    LLVMBuildCondBr(B, LLVMBuildICmp(B, LLVMIntSLT, j, end, ""), jb, exit);

    LLVMPositionBuilderAtEnd(B, jb);
    LLVMValueRef joff[DBR_KD_MAX_IN] = {0};
    emit_offsets(g, j, 0, lead, joff);
    LLVMBuildBr(B, rh);

    LLVMPositionBuilderAtEnd(B, rh);
    LLVMValueRef r = LLVMBuildPhi(B, g->i64, "r"), acc = LLVMBuildPhi(B, at, "acc");
    LLVMValueRef off[DBR_KD_MAX_IN], base[DBR_KD_MAX_IN];
    memcpy(off, joff, sizeof off);
    if (last > lead) emit_offsets(g, r, lead, last, off);
    emit_bases(g, off, base);
    LLVMValueRef v[DBR_KD_MAX_INS], raw[DBR_KD_MAX_INS];
    emit_point(g, NULL, base, true, g->uv, g->uraw);
    const int res = g->kd->n_ins - 1;

    LLVMValueRef rowval = NULL;
    if (n8 > 0) {
        /* Lane k of one <8 x acc> accumulator folds elements c + k: the
         * lanes' values are built as a vector, which seeds the SLP
         * vectorizer, and the order of the adds is that of eight scalars. */
        LLVMTypeRef vt = LLVMVectorType(at, 8), vT = LLVMVectorType(g->T, 8);
        LLVMValueRef inits[8];
        for (int k = 0; k < 8; k++) inits[k] = init;
        LLVMValueRef vinit = LLVMConstVector(inits, 8);
        LLVMBasicBlockRef pre = LLVMGetInsertBlock(B), m = block(g, "main");
        LLVMBuildBr(B, m);
        LLVMPositionBuilderAtEnd(B, m);
        LLVMValueRef c = LLVMBuildPhi(B, g->i64, "c"), sv = LLVMBuildPhi(B, vt, "s");
        LLVMValueRef lanes = LLVMGetPoison(vT);
        for (int k = 0; k < 8; k++) {
            emit_point(g, k ? LLVMBuildAdd(B, c, I(g, k), "") : c, base, false, v, raw);
            lanes = LLVMBuildInsertElement(B, lanes, v[res], LLVMConstInt(LLVMInt32TypeInContext(g->C), (unsigned)k, 0), "");
        }
        LLVMValueRef svn;
        if (is_max) {
            LLVMValueRef a2[2] = {sv, lanes};
            const unsigned id = LLVMLookupIntrinsicID("llvm.maximum", 12);
            svn = LLVMBuildCall2(B, LLVMIntrinsicGetType(g->C, id, &vT, 1),
                                 LLVMGetIntrinsicDeclaration(g->M, id, &vT, 1), a2, 2, "");
        } else {
            if (g->T != g->dbl) lanes = LLVMBuildFPExt(B, lanes, vt, "");
            svn = LLVMBuildFAdd(B, sv, lanes, "");
        }
        LLVMValueRef cn = LLVMBuildAdd(B, c, I(g, 8), "");
        LLVMBasicBlockRef mend = LLVMGetInsertBlock(B), after = block(g, "main_done");
        LLVMBuildCondBr(B, LLVMBuildICmp(B, LLVMIntSLT, cn, I(g, n8), ""), m, after);
        LLVMValueRef cin[2] = {I(g, 0), cn}, sin[2] = {vinit, svn};
        LLVMBasicBlockRef bb[2] = {pre, mend};
        LLVMAddIncoming(c, cin, bb, 2);
        LLVMAddIncoming(sv, sin, bb, 2);
        LLVMPositionBuilderAtEnd(B, after);
        LLVMValueRef sn[8];
        for (int k = 0; k < 8; k++)
            sn[k] = LLVMBuildExtractElement(B, svn, LLVMConstInt(LLVMInt32TypeInContext(g->C), (unsigned)k, 0), "");
        rowval = fold(g, fold(g, fold(g, sn[0], sn[1], false), fold(g, sn[2], sn[3], false), false),
                      fold(g, fold(g, sn[4], sn[5], false), fold(g, sn[6], sn[7], false), false), false);
    }
    if (inner > n8) {
        LLVMBasicBlockRef pre = LLVMGetInsertBlock(B), t = block(g, "tail");
        LLVMBuildBr(B, t);
        LLVMPositionBuilderAtEnd(B, t);
        LLVMValueRef c = LLVMBuildPhi(B, g->i64, "c"), s = LLVMBuildPhi(B, at, "t");
        emit_point(g, c, base, false, v, raw);
        LLVMValueRef sn = fold(g, s, v[res], true), cn = LLVMBuildAdd(B, c, I(g, 1), "");
        LLVMBasicBlockRef tend = LLVMGetInsertBlock(B), after = block(g, "tail_done");
        LLVMBuildCondBr(B, LLVMBuildICmp(B, LLVMIntSLT, cn, I(g, inner), ""), t, after);
        LLVMValueRef cin[2] = {I(g, n8), cn}, sin[2] = {init, sn};
        LLVMBasicBlockRef bb[2] = {pre, tend};
        LLVMAddIncoming(c, cin, bb, 2);
        LLVMAddIncoming(s, sin, bb, 2);
        LLVMPositionBuilderAtEnd(B, after);
        rowval = rowval ? fold(g, rowval, sn, false) : sn;
    }
    LLVMValueRef accn = fold(g, acc, rowval, false), rn = LLVMBuildAdd(B, r, I(g, 1), "");
    LLVMBasicBlockRef rend = LLVMGetInsertBlock(B), fin = block(g, "store");
    LLVMBuildCondBr(B, LLVMBuildICmp(B, LLVMIntSLT, rn, I(g, rows), ""), rh, fin);
    {
        LLVMValueRef rin[2] = {I(g, 0), rn}, ain[2] = {init, accn};
        LLVMBasicBlockRef bb[2] = {jb, rend};
        LLVMAddIncoming(r, rin, bb, 2);
        LLVMAddIncoming(acc, ain, bb, 2);
    }

    LLVMPositionBuilderAtEnd(B, fin);
    LLVMValueRef y = accn;
    if (g->kd->red == DBR_OP_MEAN)
        y = LLVMBuildFDiv(B, y, LLVMConstReal(g->dbl, (double)dbr_kdesc_red_numel(g->kd)), "");
    if (!is_max && g->T != g->dbl) y = LLVMBuildFPTrunc(B, y, g->T, "");
    LLVMValueRef st = LLVMBuildStore(B, y, LLVMBuildInBoundsGEP2(B, g->T, g->out, &j, 1, ""));
    LLVMSetAlignment(st, g->kd->dtype == DT_F32 ? 4 : 8);
    LLVMValueRef jn = LLVMBuildAdd(B, j, I(g, 1), "");
    LLVMBuildBr(B, jh);
    LLVMValueRef jin[2] = {begin, jn};
    LLVMBasicBlockRef jbb[2] = {entry, fin};
    LLVMAddIncoming(j, jin, jbb, 2);

    LLVMPositionBuilderAtEnd(B, exit);
    LLVMBuildRetVoid(B);
}

static void build_kernel(gen *g, const char *sym) {
    const dbr_kdesc *kd = g->kd;
    const bool f32 = kd->dtype == DT_F32;
    g->T = f32 ? LLVMFloatTypeInContext(g->C) : LLVMDoubleTypeInContext(g->C);
    g->dbl = LLVMDoubleTypeInContext(g->C);
    g->i64 = LLVMInt64TypeInContext(g->C);
    g->ptr = LLVMPointerTypeInContext(g->C, 0);
    g->t_un = LLVMFunctionType(g->T, &g->T, 1, 0);
    LLVMTypeRef two[2] = {g->T, g->T};
    g->t_pow = LLVMFunctionType(g->T, two, 2, 0);
    g->f_exp = libm(g, f32 ? "expf" : "exp", g->t_un);
    g->f_log = libm(g, f32 ? "logf" : "log", g->t_un);
    g->f_tanh = libm(g, f32 ? "tanhf" : "tanh", g->t_un);
    g->f_pow = libm(g, f32 ? "powf" : "pow", g->t_pow);
    LLVMTypeRef ty;
    g->f_sqrt = intrinsic(g, "llvm.sqrt", &ty);
    g->f_fabs = intrinsic(g, "llvm.fabs", &ty);
    g->f_max = intrinsic(g, "llvm.maximum", &ty);

    LLVMTypeRef params[3] = {g->ptr, g->i64, g->i64};
    g->fn = LLVMAddFunction(g->M, sym, LLVMFunctionType(LLVMVoidTypeInContext(g->C), params, 3, 0));
    const unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
    LLVMAddAttributeAtIndex(g->fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(g->C, nounwind, 0));

    g->B = LLVMCreateBuilderInContext(g->C);
    LLVMPositionBuilderAtEnd(g->B, block(g, "entry"));
    LLVMValueRef args = LLVMGetParam(g->fn, 0);
    for (int i = 0; i <= kd->n_in; i++) {
        LLVMValueRef idx = I(g, i);
        LLVMValueRef p = LLVMBuildLoad2(g->B, g->ptr, LLVMBuildInBoundsGEP2(g->B, g->ptr, args, &idx, 1, ""), "");
        if (i < kd->n_in) g->in[i] = p;
        else g->out = p;
    }

    /* Which instructions are constant along the innermost dim (hoisted out
     * of the inner loop). */
    const int last = g->sp.nd - 1;
    for (int k = 0; k < kd->n_ins; k++) {
        const dbr_kd_ins *s = &kd->ins[k];
        if (s->kind == DBR_KD_CONST) g->uni[k] = true;
        else if (s->kind == DBR_KD_LOAD) g->uni[k] = g->sp.st[s->a][last] == 0 || g->sp.shape[last] == 1;
        else {
            const int ar = dbr_fuse_arity((dbr_op)s->op);
            g->uni[k] = g->uni[s->a] && (ar < 2 || g->uni[s->b]) && (ar < 3 || g->uni[s->c]);
        }
    }

    if (kd->nred == 0) {
        /* The output is written only after every load of the same element
         * (the store's value depends on them) and overlaps an input at that
         * same element only (kdesc.h), so loads and the store are declared
         * not to alias and the loop vectorizes without runtime checks. */
        g->md_noalias = LLVMGetMDKindIDInContext(g->C, "noalias", 7);
        g->md_scope = LLVMGetMDKindIDInContext(g->C, "alias.scope", 11);
        LLVMMetadataRef dom_name = LLVMMDStringInContext2(g->C, "dbr.kernel", 10);
        LLVMMetadataRef dom = LLVMMDNodeInContext2(g->C, &dom_name, 1);
        LLVMMetadataRef sc[2] = {LLVMMDStringInContext2(g->C, "dbr.out", 7), dom};
        LLVMMetadataRef scope = LLVMMDNodeInContext2(g->C, sc, 2);
        g->scope = LLVMMetadataAsValue(g->C, LLVMMDNodeInContext2(g->C, &scope, 1));
        emit_map(g, LLVMGetParam(g->fn, 1), LLVMGetParam(g->fn, 2));
    } else {
        emit_reduce(g, LLVMGetParam(g->fn, 1), LLVMGetParam(g->fn, 2));
    }
    LLVMDisposeBuilder(g->B);
    g->B = NULL;
}

static void dump_ir(LLVMModuleRef M, const char *sym) {
    const char *dir = getenv("DBR_DUMP");
    if (!dir || !dir[0]) return;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.ll", dir, sym);
    char *msg = NULL;
    if (LLVMPrintModuleToFile(M, path, &msg)) LLVMDisposeMessage(msg);
}

/* kd's object file for the host, its function named sym. */
static int compile_object(const dbr_kdesc *kd, const char *sym, LLVMMemoryBufferRef *obj, char *err,
                          size_t errlen) {
    int rc = -1;
    char *msg = NULL;
    gen g;
    memset(&g, 0, sizeof g);
    g.kd = kd;
    space_make(kd, &g.sp);
    g.C = LLVMContextCreate();
    g.M = LLVMModuleCreateWithNameInContext(sym, g.C);
    LLVMTargetMachineRef tm = tm_take();
    LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
    if (!tm) {
        dbr_errf(err, errlen, "LLVM: no target machine for %s (%s)", g_triple, g_cpu);
        goto done;
    }
    LLVMSetTarget(g.M, g_triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(g.M, td);
    LLVMDisposeTargetData(td);
    build_kernel(&g, sym);
    if (LLVMVerifyModule(g.M, LLVMReturnStatusAction, &msg)) {
        dbr_errf(err, errlen, "LLVM: invalid IR for %s: %s", sym, msg);
        goto done;
    }
    LLVMDisposeMessage(msg);
    msg = NULL;
    LLVMPassBuilderOptionsSetLoopVectorization(opts, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(opts, 1);
    /* Kernels stream memory: interleaving and unrolling the vector loop buy
     * little there and cost a third of the compile time (median JIT 15 ->
     * 11 ms over test_codegen's random kernels; the 8-op chain stays at the
     * bandwidth it had). */
    LLVMPassBuilderOptionsSetLoopInterleaving(opts, 0);
    LLVMPassBuilderOptionsSetLoopUnrolling(opts, 0);
    LLVMErrorRef e = LLVMRunPasses(g.M, DBR_CG_CPU_PIPELINE, tm, opts);
    if (e) {
        take_error(e, "LLVM passes", err, errlen);
        goto done;
    }
    dump_ir(g.M, sym);
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, g.M, LLVMObjectFile, &msg, obj)) {
        dbr_errf(err, errlen, "LLVM: emitting %s: %s", sym, msg);
        goto done;
    }
    rc = 0;
done:
    LLVMDisposeMessage(msg);
    LLVMDisposePassBuilderOptions(opts);
    tm_give(tm);
    LLVMDisposeModule(g.M);
    LLVMContextDispose(g.C);
    return rc;
}

/* ---- the JIT ---------------------------------------------------------------------- */

typedef struct lookup_res {
    bool done;
    uint64_t addr;
    char msg[256];
} lookup_res;

static void lookup_done(LLVMErrorRef e, LLVMOrcCSymbolMapPairs res, size_t n, void *ctx) {
    lookup_res *r = ctx;
    if (e) {
        take_error(e, "lookup", r->msg, sizeof r->msg);
    } else if (n >= 1) {
        r->addr = res[0].Sym.Address;
    }
    r->done = true;
}

/* Links obj into a JITDylib of its own (the same object may be linked again
 * after dbr_cg_reset_memory) and returns sym's address. Under g_mu. */
static dbr_kfn jit_link(const char *sym, const void *obj, size_t n, char *err, size_t errlen) {
    LLVMErrorRef e;
    if (!g_jit) {
        if ((e = LLVMOrcCreateLLJIT(&g_jit, NULL))) {
            g_jit = NULL;
            take_error(e, "LLVM: creating the JIT", err, errlen);
            return NULL;
        }
        atexit(shutdown_all);
    }
    LLVMOrcExecutionSessionRef es = LLVMOrcLLJITGetExecutionSession(g_jit);
    char jdname[64];
    snprintf(jdname, sizeof jdname, "dbr-kernel-%llu", (unsigned long long)++g_njd);
    LLVMOrcJITDylibRef jd = LLVMOrcExecutionSessionCreateBareJITDylib(es, jdname);
    LLVMOrcDefinitionGeneratorRef gen = NULL;
    if ((e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(g_jit),
                                                                  NULL, NULL))) {
        take_error(e, "LLVM: process symbols", err, errlen);
        return NULL;
    }
    LLVMOrcJITDylibAddGenerator(jd, gen);
    LLVMMemoryBufferRef buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(obj, n, sym);
    if ((e = LLVMOrcLLJITAddObjectFile(g_jit, jd, buf))) {
        take_error(e, "LLVM: adding the object", err, errlen);
        return NULL;
    }
    LLVMOrcCJITDylibSearchOrderElement so = {jd, LLVMOrcJITDylibLookupFlagsMatchExportedSymbolsOnly};
    LLVMOrcCLookupSetElement ls = {LLVMOrcLLJITMangleAndIntern(g_jit, sym),
                                   LLVMOrcSymbolLookupFlagsRequiredSymbol};
    /* Without a task dispatcher (LLJIT's default) the lookup finishes
     * before returning; the result lives on the heap in case it does not. */
    lookup_res *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    LLVMOrcExecutionSessionLookup(es, LLVMOrcLookupKindStatic, &so, 1, &ls, 1, lookup_done, r);
    if (!r->done) {
        dbr_errf(err, errlen, "LLVM: symbol lookup for %s did not complete", sym);
        return NULL;
    }
    dbr_kfn fn = NULL;
    if (r->addr) memcpy(&fn, &r->addr, sizeof fn);
    else dbr_errf(err, errlen, "LLVM: %s: %s", sym, r->msg[0] ? r->msg : "symbol not found");
    free(r);
    return fn;
}

/* ---- the entry point ---------------------------------------------------------------- */

/* A cache blob: the symbol's name, a NUL, then the object file (the key
 * ignores kd->name, so the name travels with the object). */
static void symbol_name(const dbr_kdesc *kd, uint64_t key, char *buf, size_t n) {
    char s[64];
    size_t k = 0;
    for (size_t i = 0; i < sizeof kd->name && kd->name[i] && k + 1 < sizeof s; i++) {
        const char c = kd->name[i];
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        s[k++] = ok ? c : '_';
    }
    s[k] = '\0';
    snprintf(buf, n, "%s%s_%016llx", k && !(s[0] >= '0' && s[0] <= '9') ? "" : "k", s,
             (unsigned long long)key);
}

static void note_jit(double ms) {
    g_stats.compiled++;
    g_stats.jit_ms_total += ms;
    if (ms > g_stats.jit_ms_max) g_stats.jit_ms_max = ms;
}

static dbr_kfn from_disk(uint64_t key, double t0, char *err, size_t errlen) {
    void *blob = NULL;
    size_t n = 0;
    const int rc = dbr_kcache_load("cpu", key, &blob, &n);
    if (rc != 0) {
        if (rc == 1 && dbr_kcache_last_rejected()) {
            pthread_mutex_lock(&g_mu);
            g_stats.disk_rejected++;
            pthread_mutex_unlock(&g_mu);
        }
        return NULL;
    }
    const char *sym = blob;
    const size_t len = strnlen(sym, n < 200 ? n : 200);
    dbr_kfn fn = NULL;
    if (len > 0 && len < n && len < 200) {
        pthread_mutex_lock(&g_mu);
        fn = tab_get(key);
        if (!fn && (fn = jit_link(sym, (const char *)blob + len + 1, n - len - 1, err, errlen))) {
            tab_put(key, fn);
            g_stats.disk_hits++;
            g_stats.disk_ms_total += now_ms() - t0;
        }
        pthread_mutex_unlock(&g_mu);
    }
    if (!fn) {
        /* A well-formed file whose object does not link: drop it. */
        char path[4200];
        if (dbr_kcache_path("cpu", key, path, sizeof path) == 0) remove(path);
        pthread_mutex_lock(&g_mu);
        g_stats.disk_rejected++;
        pthread_mutex_unlock(&g_mu);
    }
    free(blob);
    return fn;
}

dbr_kfn dbr_cg_cpu(const dbr_kdesc *kd, char *err, size_t errlen) {
    if (!dbr_cg_cpu_available()) {
        dbr_errf(err, errlen, "LLVM could not set up the host target");
        return NULL;
    }
    if (dbr_kdesc_check(kd, err, errlen) != 0) return NULL;
    const uint64_t key = dbr_cg_cpu_key(kd, g_cpu, g_features);
    pthread_mutex_lock(&g_mu);
    dbr_kfn fn = tab_get(key);
    if (fn) g_stats.mem_hits++;
    pthread_mutex_unlock(&g_mu);
    if (fn) return fn;

    const double t0 = now_ms();
    if ((fn = from_disk(key, t0, err, errlen))) return fn;

    char sym[128];
    symbol_name(kd, key, sym, sizeof sym);
    LLVMMemoryBufferRef obj = NULL;
    if (compile_object(kd, sym, &obj, err, errlen) != 0) return NULL;
    const size_t slen = strlen(sym) + 1, olen = LLVMGetBufferSize(obj);
    char *blob = malloc(slen + olen);
    if (!blob) {
        LLVMDisposeMemoryBuffer(obj);
        dbr_errf(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(blob, sym, slen);
    memcpy(blob + slen, LLVMGetBufferStart(obj), olen);
    LLVMDisposeMemoryBuffer(obj);
    dbr_kcache_store("cpu", key, blob, slen + olen);

    pthread_mutex_lock(&g_mu);
    fn = tab_get(key);
    if (!fn && (fn = jit_link(sym, blob + slen, olen, err, errlen))) {
        tab_put(key, fn);
        note_jit(now_ms() - t0);
    }
    pthread_mutex_unlock(&g_mu);
    free(blob);
    return fn;
}

#endif
