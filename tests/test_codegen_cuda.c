/* test_codegen_cuda.c: the CUDA back end of fused kernels (codegen/cuda.c):
 * hundreds of random kernel descriptions render and compile through NVRTC
 * for sm_90 (no GPU needed), compiled images land in the disk cache, and
 * where a GPU is present every kernel runs and matches dbr_kdesc_eval.
 * Exits 77 only when dbr is built without NVRTC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include <math.h>

#include "codegen/cuda.h"
#include "codegen/kcache.h"
#include "runtime/cuda.h"
#include "tmpdir.h"

#define N_RANDOM 240 /* random kernels */
#define BATCH 40     /* kernels per NVRTC call */
#define ARCH 90

static uint64_t g_rng;

static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static int rndi(int lo, int hi) { return lo + (int)(rnd() % (uint64_t)(hi - lo + 1)); }

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static const dbr_op k_ops[] = {
    DBR_OP_NEG,      DBR_OP_EXP,        DBR_OP_LOG,  DBR_OP_SQRT,     DBR_OP_RSQRT,
    DBR_OP_POW,      DBR_OP_ABS,        DBR_OP_SIGN, DBR_OP_TANH,     DBR_OP_SIGMOID,
    DBR_OP_RELU,     DBR_OP_LEAKY_RELU, DBR_OP_GELU, DBR_OP_SILU,     DBR_OP_ADD,
    DBR_OP_SUB,      DBR_OP_MUL,        DBR_OP_DIV,  DBR_OP_RELU_BWD, DBR_OP_LEAKY_RELU_BWD,
    DBR_OP_GELU_BWD, DBR_OP_SILU_BWD,   DBR_OP_WHERE};
#define N_OPS ((int)(sizeof k_ops / sizeof k_ops[0]))

/* Span of input i (elements to allocate). */
static int64_t in_span(const dbr_kdesc *kd, int i) {
    int64_t s = 1;
    for (int d = 0; d < kd->ndim; d++) s += kd->in[i].stride[d] * (kd->shape[d] - 1);
    return s;
}

/* An earlier float-valued instruction, recent ones likelier. */
static int pick_value(const dbr_kdesc *kd, int k) {
    for (int tries = 0; tries < 64; tries++) {
        const int back = rndi(1, k < 6 ? k : 6);
        const int j = rnd() % 3 ? k - back : rndi(0, k - 1);
        const dbr_kd_ins *x = &kd->ins[j];
        if (x->kind != DBR_KD_LOAD || kd->in[x->a].dtype == DT_F32 || kd->in[x->a].dtype == DT_F64)
            return j;
    }
    return 0; /* ins[0] is always a float load */
}

/* A random valid description: shape, broadcast strides (some transposed),
 * float inputs plus integer masks, 1-30 instructions, map or reduction. */
static void random_kdesc(dbr_kdesc *kd, int id, bool huge) {
    memset(kd, 0, sizeof *kd);
    kd->dtype = rnd() & 1 ? DT_F32 : DT_F64;
    kd->ndim = rndi(1, 4);
    static const int64_t sizes[] = {1, 2, 3, 4, 5, 7, 8, 17, 33, 129, 1100};
    for (int d = 0; d < kd->ndim; d++)
        kd->shape[d] = sizes[rnd() % (d == kd->ndim - 1 ? 11 : 8)];
    if (huge) kd->shape[0] = (int64_t)3 << 30; /* 64-bit indexing, compile only */
    kd->nred = rnd() % 2 ? 0 : rndi(1, kd->ndim);
    static const int32_t reds[] = {DBR_OP_SUM, DBR_OP_MEAN, DBR_OP_MAX};
    kd->red = kd->nred ? reds[rnd() % 3] : 0;
    const int n_float = rndi(1, 4), n_mask = rnd() % 3 == 0 ? rndi(1, 2) : 0;
    kd->n_in = n_float + n_mask;
    for (int i = 0; i < kd->n_in; i++) {
        dbr_kd_in *in = &kd->in[i];
        static const int32_t mdt[] = {DT_I32, DT_I64, DT_F32, DT_F64};
        in->dtype = i < n_float ? (rnd() & 1 ? DT_F32 : DT_F64) : mdt[rnd() % 4];
        int order[DBR_KD_MAX_DIMS];
        for (int d = 0; d < kd->ndim; d++) order[d] = kd->ndim - 1 - d;
        if (kd->ndim > 1 && rnd() % 4 == 0) { /* transposed: another dim innermost */
            const int a = rndi(0, kd->ndim - 1), t = order[0];
            order[0] = order[a];
            order[a] = t;
        }
        int64_t st = 1;
        for (int q = 0; q < kd->ndim; q++) {
            const int d = order[q];
            const bool bcast = kd->shape[d] == 1 || rnd() % 3 == 0;
            in->stride[d] = bcast ? 0 : st;
            if (!bcast) st *= kd->shape[d];
        }
    }
    snprintf(kd->name, sizeof kd->name, "k%d_%s", id, kd->dtype == DT_F32 ? "f32" : "f64");
    const int n_ins = rndi(1, 30);
    /* loads first: every input is read at least once (masks by WHERE) */
    int k = 0;
    for (int i = 0; i < n_float && k < n_ins; i++, k++)
        kd->ins[k] = (dbr_kd_ins){DBR_KD_LOAD, 0, i, -1, -1, 0};
    if (k == 0) k = 1, kd->ins[0] = (dbr_kd_ins){DBR_KD_LOAD, 0, 0, -1, -1, 0};
    for (; k < n_ins; k++) {
        dbr_kd_ins *x = &kd->ins[k];
        const int r = (int)(rnd() % 16);
        if (r == 0) {
            static const double cs[] = {0.5, -1.25, 3.0, 1e-3, 0.1, 2.0};
            *x = (dbr_kd_ins){DBR_KD_CONST, 0, -1, -1, -1, cs[rnd() % 6]};
            continue;
        }
        if (r == 1) {
            *x = (dbr_kd_ins){DBR_KD_LOAD, 0, rndi(0, n_float - 1), -1, -1, 0};
            continue;
        }
        const dbr_op op = k_ops[rnd() % N_OPS];
        *x = (dbr_kd_ins){DBR_KD_OP, op, pick_value(kd, k), -1, -1, 0};
        const int ar = dbr_kd_arity(op);
        if (ar >= 2) x->b = pick_value(kd, k);
        if (ar == 3) x->c = pick_value(kd, k);
        if (op == DBR_OP_POW) {
            static const double ps[] = {2.0, 1.0, 0.5, 3.0, -1.5};
            x->p = ps[rnd() % 5];
        }
        if (op == DBR_OP_LEAKY_RELU || op == DBR_OP_LEAKY_RELU_BWD) x->p = 0.01 * rndi(1, 30);
    }
    /* masks: WHEREs appended (within the 64 limit) over the integer inputs */
    for (int i = n_float; i < kd->n_in; i++) {
        const int prev = k - 1;
        kd->ins[k++] = (dbr_kd_ins){DBR_KD_LOAD, 0, i, -1, -1, 0};
        kd->ins[k] = (dbr_kd_ins){DBR_KD_OP, DBR_OP_WHERE, k - 1, prev, pick_value(kd, k), 0};
        k++;
    }
    kd->n_ins = k;
}

static bool is_huge(const dbr_kdesc *kd) { return kd->shape[0] > ((int64_t)1 << 30); }

static dbr_kdesc *g_kds;
static int g_nkds;

static void make_kernels(void) {
    g_rng = 0x9e3779b97f4a7c15ull;
    g_nkds = N_RANDOM;
    g_kds = calloc((size_t)g_nkds, sizeof *g_kds);
    assert_non_null(g_kds);
    char err[512];
    for (int i = 0; i < g_nkds; i++) {
        random_kdesc(&g_kds[i], i, i % 40 == 7);
        if (dbr_kdesc_check(&g_kds[i], err, sizeof err) != 0)
            fail_msg("random kernel %d is invalid: %s", i, err);
    }
}

/* ---- compile -------------------------------------------------------------------------- */

static void *g_images[N_RANDOM / BATCH + 1];

static void test_random_compile(void **state) {
    (void)state;
    char *err = malloc(1 << 16);
    assert_non_null(err);
    int counts[DBR_OP_COUNT] = {0}, reds[4] = {0}, f64 = 0, masks = 0, huge = 0;
    double t0 = now_ms();
    for (int b = 0; b * BATCH < g_nkds; b++) {
        const int n = g_nkds - b * BATCH < BATCH ? g_nkds - b * BATCH : BATCH;
        const dbr_kdesc *ks[BATCH];
        for (int j = 0; j < n; j++) {
            const dbr_kdesc *kd = &g_kds[b * BATCH + j];
            ks[j] = kd;
            for (int k = 0; k < kd->n_ins; k++)
                if (kd->ins[k].kind == DBR_KD_OP) counts[kd->ins[k].op]++;
            reds[kd->nred == 0 ? 0 : kd->red == DBR_OP_SUM ? 1 : kd->red == DBR_OP_MEAN ? 2 : 3]++;
            f64 += kd->dtype == DT_F64;
            huge += is_huge(kd);
            for (int i = 0; i < kd->n_in; i++)
                masks += kd->in[i].dtype == DT_I32 || kd->in[i].dtype == DT_I64;
        }
        char *src = dbr_cg_cuda_source_many(ks, n, err, 1 << 16);
        if (!src) fail_msg("render batch %d: %s", b, err);
        size_t size = 0;
        if (dbr_cg_nvrtc_compile_src(src, ARCH, false, &g_images[b], &size, err, 1 << 16) != 0) {
            fprintf(stderr, "---- source of batch %d ----\n%s\n", b, src);
            free(src);
            fail_msg("NVRTC, batch %d: %s", b, err);
        }
        assert_true(size > 1000);
        free(src);
    }
    const double ms = now_ms() - t0;
    for (int i = 0; i < N_OPS; i++)
        if (counts[k_ops[i]] == 0) fail_msg("op %s never drawn", dbr_ops[k_ops[i]].name);
    assert_true(reds[0] > 0 && reds[1] > 0 && reds[2] > 0 && reds[3] > 0);
    assert_true(f64 > 0 && f64 < g_nkds && masks > 0 && huge > 0);
    printf("compiled %d random kernels (%d f64, %d maps, %d sum, %d mean, %d max, %d mask "
           "inputs, %d with 64-bit indices) for sm_%d in %d NVRTC calls: %.0f ms, %.1f ms/kernel\n",
           g_nkds, f64, reds[0], reds[1], reds[2], reds[3], masks, huge, ARCH,
           (g_nkds + BATCH - 1) / BATCH, ms, ms / g_nkds);
    free(err);
}

/* One kernel per NVRTC call through the cached entry point, and PTX. */
static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_single_compile(void **state) {
    (void)state;
    char err[8192];
    double ms[5];
    for (int i = 0; i < 5; i++) {
        /* an uncached kernel each time: a fresh cache dir per test run */
        void *img = NULL;
        size_t n = 0;
        const double t0 = now_ms();
        if (dbr_cg_nvrtc_compile(&g_kds[i * 17], ARCH, &img, &n, err, sizeof err) != 0)
            fail_msg("%s", err);
        ms[i] = now_ms() - t0;
        assert_true(n > 100);
        free(img);
    }
    qsort(ms, 5, sizeof ms[0], cmp_double);
    char ver[64];
    assert_int_equal(dbr_cg_nvrtc_version(ver, sizeof ver), 0);
    printf("%s: one kernel per call, median %.1f ms (min %.1f, max %.1f)\n", ver, ms[2], ms[0],
           ms[4]);

    char *src = dbr_cg_cuda_source(&g_kds[3], err, sizeof err);
    assert_non_null(src);
    void *ptx = NULL;
    size_t n = 0;
    if (dbr_cg_nvrtc_compile_src(src, ARCH, true, &ptx, &n, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_non_null(strstr(ptx, ".entry"));
    assert_non_null(strstr(ptx, g_kds[3].name));
    free(ptx);
    free(src);
}

/* ---- the disk cache ------------------------------------------------------------------- */

static int cubin_files(void) {
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "cubin-sm90-", 11) == 0) files++;
    closedir(d);
    return files;
}

static void test_cache(void **state) {
    (void)state;
    char err[8192];
    dbr_kdesc kd = g_kds[5];
    snprintf(kd.name, sizeof kd.name, "cached_kernel");
    void *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    const int before = cubin_files();
    double t0 = now_ms();
    if (dbr_cg_nvrtc_compile(&kd, ARCH, &a, &na, err, sizeof err) != 0) fail_msg("%s", err);
    const double miss = now_ms() - t0;
    /* the image is on disk now: one more cubin-sm90 file in the cache */
    assert_int_equal(cubin_files(), before + 1);
    t0 = now_ms();
    if (dbr_cg_nvrtc_compile(&kd, ARCH, &b, &nb, err, sizeof err) != 0) fail_msg("%s", err);
    const double hit = now_ms() - t0;
    assert_false(dbr_kcache_last_rejected());
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    printf("cache: miss %.1f ms, hit %.2f ms (%s)\n", miss, hit, g_dir);
    assert_true(hit * 5 < miss);
    assert_int_equal(cubin_files(), before + 1);
    /* another name is another symbol: a different image, not the cached one */
    snprintf(kd.name, sizeof kd.name, "cached_kernel_2");
    void *c = NULL;
    size_t nc = 0;
    if (dbr_cg_nvrtc_compile(&kd, ARCH, &c, &nc, err, sizeof err) != 0) fail_msg("%s", err);
    assert_false(nc == na && memcmp(a, c, na) == 0);
    free(a);
    free(b);
    free(c);
}

/* ---- rendering errors and shapes ------------------------------------------------------ */

static void test_render(void **state) {
    (void)state;
    char err[512];
    dbr_kdesc kd = g_kds[0];
    snprintf(kd.name, sizeof kd.name, "1bad name");
    assert_null(dbr_cg_cuda_source(&kd, err, sizeof err));
    assert_non_null(strstr(err, "identifier"));
    kd = g_kds[0];
    kd.ndim = 0;
    assert_null(dbr_cg_cuda_source(&kd, err, sizeof err));

    /* out[i] = gelu(x[i, j] + b[j]) over 4x3: offsets and the formula */
    memset(&kd, 0, sizeof kd);
    kd.dtype = DT_F32;
    kd.ndim = 2;
    kd.shape[0] = 4;
    kd.shape[1] = 3;
    kd.n_in = 2;
    kd.in[0].dtype = DT_F32;
    kd.in[0].stride[0] = 3;
    kd.in[0].stride[1] = 1;
    kd.in[1].dtype = DT_F64;
    kd.in[1].stride[1] = 1;
    kd.n_ins = 4;
    kd.ins[0] = (dbr_kd_ins){DBR_KD_LOAD, 0, 0, -1, -1, 0};
    kd.ins[1] = (dbr_kd_ins){DBR_KD_LOAD, 0, 1, -1, -1, 0};
    kd.ins[2] = (dbr_kd_ins){DBR_KD_OP, DBR_OP_ADD, 0, 1, -1, 0};
    kd.ins[3] = (dbr_kd_ins){DBR_KD_OP, DBR_OP_GELU, 2, -1, -1, 0};
    snprintf(kd.name, sizeof kd.name, "f_add_gelu_4x3");
    char *src = dbr_cg_cuda_source(&kd, err, sizeof err);
    assert_non_null(src);
    assert_non_null(strstr(src, "extern \"C\" __global__ void __launch_bounds__(256) "
                                "f_add_gelu_4x3(const float *in0, const double *in1, float *out, "
                                "long long n)"));
    assert_non_null(strstr(src, "const int o1 = 0 + x1 * (int)1;"));
    assert_non_null(strstr(src, "dbr_gelu_f32(v2)"));
    assert_null(strstr(src, "rsqrtf"));
    assert_null(strstr(src, "__expf"));
    free(src);
}

/* ---- on a GPU ------------------------------------------------------------------------- */

static double fill_value(uint64_t *s, int32_t dt) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    const double u = (double)(*s >> 11) / 9007199254740992.0;
    if (dt == DT_I32 || dt == DT_I64) return (double)((int)(u * 5.0) - 2) * (u < 0.5 ? 1.0 : 0.0);
    return u * 4.0 - 2.0;
}

static size_t dt_size(int32_t dt) { return dt == DT_F32 || dt == DT_I32 ? 4 : 8; }

/* Runs kernel kd (from image) on the GPU and compares with the reference:
 * elements within rtol of it (or both NaN, or equal infinities). Libm and
 * CUDA's math functions differ by an ulp or two, which long random chains
 * can blow up where they cancel or cross a branch (sign, relu); up to 2% of
 * elements may differ, a wrong index or formula moves far more. */
static void run_one(const dbr_kdesc *kd, const void *image, int *bad_kernels) {
    char err[1024];
    void *host[DBR_KD_MAX_IN + 1], *dev[DBR_KD_MAX_IN + 1];
    const int64_t on = dbr_kdesc_out_numel(kd);
    uint64_t seed = dbr_kdesc_hash(kd);
    for (int i = 0; i <= kd->n_in; i++) {
        const int32_t dt = i < kd->n_in ? kd->in[i].dtype : kd->dtype;
        const int64_t n = i < kd->n_in ? in_span(kd, i) : on;
        const size_t bytes = (size_t)n * dt_size(dt);
        host[i] = malloc(bytes);
        assert_non_null(host[i]);
        for (int64_t j = 0; j < n; j++) {
            const double v = fill_value(&seed, dt);
            switch (dt) {
            case DT_F32: ((float *)host[i])[j] = (float)v; break;
            case DT_F64: ((double *)host[i])[j] = v; break;
            case DT_I32: ((int32_t *)host[i])[j] = (int32_t)v; break;
            default: ((int64_t *)host[i])[j] = (int64_t)v; break;
            }
        }
        dev[i] = dbr_cuda_malloc((int64_t)bytes, err, sizeof err);
        if (!dev[i]) fail_msg("cudaMalloc: %s", err);
        assert_int_equal(dbr_cuda_to_device(dev[i], host[i], (int64_t)bytes), 0);
    }
    if (dbr_cg_cuda_launch(kd, image, dev, NULL, err, sizeof err) != 0) fail_msg("%s", err);
    if (dbr_cuda_sync(err, sizeof err) != 0) fail_msg("%s: %s", kd->name, err);
    const size_t ob = (size_t)on * dt_size(kd->dtype);
    void *got = malloc(ob);
    assert_non_null(got);
    assert_int_equal(dbr_cuda_to_host(got, dev[kd->n_in], (int64_t)ob), 0);
    dbr_kdesc_eval(kd, host, 0, on);
    const double rtol = kd->dtype == DT_F32 ? 1e-6 : 1e-12;
    int64_t bad = 0, first = -1;
    for (int64_t j = 0; j < on; j++) {
        const double g = kd->dtype == DT_F32 ? ((float *)got)[j] : ((double *)got)[j];
        const double w = kd->dtype == DT_F32 ? ((float *)host[kd->n_in])[j]
                                             : ((double *)host[kd->n_in])[j];
        const bool ok = (isnan(g) && isnan(w)) || g == w || fabs(g - w) <= rtol * fabs(w) ||
                        fabs(g - w) <= rtol * 1e-3;
        if (!ok && bad++ == 0) first = j;
    }
    if (bad * 50 > on) {
        const double g = kd->dtype == DT_F32 ? ((float *)got)[first] : ((double *)got)[first];
        const double w = kd->dtype == DT_F32 ? ((float *)host[kd->n_in])[first]
                                             : ((double *)host[kd->n_in])[first];
        char *src = dbr_cg_cuda_source(kd, err, sizeof err);
        fprintf(stderr, "%s: %lld of %lld differ; [%lld] got %.17g want %.17g\n%s\n", kd->name,
                (long long)bad, (long long)on, (long long)first, g, w, src ? src : err);
        free(src);
        ++*bad_kernels;
    }
    for (int i = 0; i <= kd->n_in; i++) {
        free(host[i]);
        dbr_cuda_free(dev[i]);
    }
    free(got);
}

static void test_gpu_matches_reference(void **state) {
    (void)state;
    char why[256];
    if (!dbr_cg_cuda_gpu_present(why, sizeof why)) {
        printf("GPU part skipped (%s): kernels compiled, not run\n", why);
        return;
    }
    int ran = 0, bad = 0;
    for (int i = 0; i < g_nkds; i++) {
        if (is_huge(&g_kds[i])) continue;
        run_one(&g_kds[i], g_images[i / BATCH], &bad);
        ran++;
    }
    printf("GPU: %d kernels run, %d differ from dbr_kdesc_eval\n", ran, bad);
    assert_int_equal(bad, 0);
    dbr_cg_cuda_unload_all();
}

static int setup(void **state) {
    (void)state;
    (void)path_of;
    if (tmpdir_make("dbr_cgcuda") != 0) return -1;
    setenv("DBR_CACHE_DIR", g_dir, 1);
    make_kernels();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (size_t b = 0; b < sizeof g_images / sizeof g_images[0]; b++) free(g_images[b]);
    free(g_kds);
    return tmpdir_remove();
}

int main(void) {
    if (!dbr_cg_nvrtc_available()) {
        char why[128];
        dbr_cg_nvrtc_version(why, sizeof why);
        printf("skipped: %s\n", why);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_random_compile),
        cmocka_unit_test(test_single_compile),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_gpu_matches_reference),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
