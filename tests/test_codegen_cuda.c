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

#include <dlfcn.h>

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
    /* a fold of more than DBR_CG_CUDA_WARP_RED takes a block per output */
    if (kd->nred && kd->nred < kd->ndim && rnd() % 4 == 0)
        kd->shape[kd->ndim - 1] = DBR_CG_CUDA_WARP_RED + rndi(1, 1000);
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
        const int ar = dbr_fuse_arity(op);
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

/* ---- inputs ---------------------------------------------------------------------------- */

static double fill_value(uint64_t *s, int32_t dt) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    const double u = (double)(*s >> 11) / 9007199254740992.0;
    if (dt == DT_I32 || dt == DT_I64) return (double)((int)(u * 5.0) - 2) * (u < 0.5 ? 1.0 : 0.0);
    return u * 4.0 - 2.0;
}

static size_t dt_size(int32_t dt) { return dt == DT_F32 || dt == DT_I32 ? 4 : 8; }

/* ---- without a GPU: the CUDA C run on the host -----------------------------------------
 * The rendered source compiled as C++ with a few definitions standing in
 * for CUDA's (a block is a pool of 256 std::threads; a warp shuffle is a slot
 * per lane between two barriers), then run with grids of at most 2 blocks so
 * every grid-stride loop turns: checks the index math, broadcasting, the
 * reduction trees and the formulas against dbr_kdesc_eval with the host's
 * libm on both sides. */
static const char emu_prelude[] =
    "#include <math.h>\n#include <string.h>\n#include <barrier>\n#include <functional>\n"
    "#include <thread>\n#include <vector>\n"
    "struct dim3e { unsigned x, y, z; };\n"
    "static thread_local dim3e threadIdx, blockIdx;\n"
    "static dim3e gridDim{1, 1, 1};\n"
    "#define __global__\n#define __device__\n#define __forceinline__ inline\n"
    "#define __launch_bounds__(n)\n#define __shared__ static\n"
    "static std::barrier<> *g_blk, *g_warp[8];\n"
    "static double g_slot[8][32];\n"
    "static void __syncthreads() { g_blk->arrive_and_wait(); }\n"
    "static double __shfl_xor_sync(unsigned, double v, int o) {\n"
    "    const int w = threadIdx.x >> 5, l = threadIdx.x & 31;\n"
    "    g_slot[w][l] = v;\n    g_warp[w]->arrive_and_wait();\n"
    "    const double r = g_slot[w][l ^ o];\n    g_warp[w]->arrive_and_wait();\n"
    "    return r;\n}\n"
    "static float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }\n"
    "static double __longlong_as_double(long long u) { double f; memcpy(&f, &u, 8); return f; }\n"
    "/* a pool of 256 threads, one block at a time */\n"
    "static std::barrier<> *g_go, *g_done;\n"
    "static std::vector<std::thread> g_pool;\n"
    "static const std::function<void()> *g_fn;\n"
    "static unsigned g_block;\n"
    "static bool g_quit;\n"
    "static void emu_worker(unsigned t) {\n"
    "    threadIdx = {t, 0, 0};\n"
    "    for (;;) {\n"
    "        g_go->arrive_and_wait();\n"
    "        if (g_quit) return;\n"
    "        blockIdx = {g_block, 0, 0};\n"
    "        (*g_fn)();\n"
    "        g_done->arrive_and_wait();\n"
    "    }\n}\n"
    "static void emu_run(unsigned grid, const std::function<void()> &f) {\n"
    "    if (g_pool.empty()) {\n"
    "        g_go = new std::barrier<>(257);\n        g_done = new std::barrier<>(257);\n"
    "        g_blk = new std::barrier<>(256);\n"
    "        for (int w = 0; w < 8; w++) g_warp[w] = new std::barrier<>(32);\n"
    "        for (unsigned t = 0; t < 256; t++) g_pool.emplace_back(emu_worker, t);\n"
    "    }\n"
    "    gridDim.x = grid;\n    g_fn = &f;\n"
    "    for (unsigned b = 0; b < grid; b++) {\n"
    "        g_block = b;\n        g_go->arrive_and_wait();\n        g_done->arrive_and_wait();\n"
    "    }\n}\n"
    "extern \"C\" void emu_stop(void) {\n"
    "    if (g_pool.empty()) return;\n"
    "    g_quit = true;\n    g_go->arrive_and_wait();\n"
    "    for (auto &t : g_pool) t.join();\n"
    "    g_pool.clear();\n"
    "    delete g_go;\n    delete g_done;\n    delete g_blk;\n"
    "    for (int w = 0; w < 8; w++) delete g_warp[w];\n}\n";

static const char *c_type(int32_t dt) {
    return dt == DT_F32 ? "float" : dt == DT_F64 ? "double" : dt == DT_I32 ? "int" : "long long";
}

/* Fills inputs from kd's hash, runs `run` into out, compares with the
 * reference: the number of elements beyond rtol (NaNs match NaNs). */
static int64_t check_kernel(const dbr_kdesc *kd, void (*run)(const dbr_kdesc *, void **, void *),
                            void *ctx, double *worst) {
    void *host[DBR_KD_MAX_IN + 1];
    const int64_t on = dbr_kdesc_out_numel(kd);
    uint64_t seed = dbr_kdesc_hash(kd);
    for (int i = 0; i <= kd->n_in; i++) {
        const int32_t dt = i < kd->n_in ? kd->in[i].dtype : kd->dtype;
        const int64_t n = i < kd->n_in ? in_span(kd, i) : on;
        host[i] = malloc((size_t)n * dt_size(dt));
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
    }
    const size_t ob = (size_t)on * dt_size(kd->dtype);
    memset(host[kd->n_in], 0xab, ob); /* an element the kernel skips shows */
    void *got = malloc(ob);
    assert_non_null(got);
    run(kd, host, ctx);
    memcpy(got, host[kd->n_in], ob);
    dbr_kdesc_eval(kd, host, 0, on);
    const double rtol = kd->dtype == DT_F32 ? 1e-6 : 1e-12;
    int64_t bad = 0;
    for (int64_t j = 0; j < on; j++) {
        const double g = kd->dtype == DT_F32 ? ((float *)got)[j] : ((double *)got)[j];
        const double w = kd->dtype == DT_F32 ? ((float *)host[kd->n_in])[j]
                                             : ((double *)host[kd->n_in])[j];
        if ((isnan(g) && isnan(w)) || g == w) continue;
        const double rel = fabs(g - w) / fmax(fabs(w), 1e-300);
        if (rel > *worst) *worst = rel;
        if (rel > rtol && bad++ == 0)
            fprintf(stderr, "%s: [%lld] got %.17g want %.17g\n", kd->name, (long long)j, g, w);
    }
    for (int i = 0; i <= kd->n_in; i++) free(host[i]);
    free(got);
    return bad;
}

typedef void (*emu_launch_fn)(int, void **, long long, unsigned);
typedef struct emu_ctx {
    emu_launch_fn launch;
    int k;
} emu_ctx;

static void emu_run_kernel(const dbr_kdesc *kd, void **args, void *ctx) {
    const emu_ctx *e = ctx;
    const int64_t on = dbr_kdesc_out_numel(kd);
    const int64_t per = kd->nred == 0 ? DBR_CG_CUDA_THREADS
                        : dbr_kdesc_red_numel(kd) <= DBR_CG_CUDA_WARP_RED ? DBR_CG_CUDA_THREADS / 32
                                                                          : 1;
    const int64_t grid = (on + per - 1) / per < 2 ? (on + per - 1) / per : 2;
    e->launch(e->k, args, (long long)on, (unsigned)grid);
}

static void test_host_emulation(void **state) {
    (void)state;
    if (system("c++ --version > /dev/null 2>&1") != 0) {
        printf("host emulation skipped: no C++ compiler (c++) on PATH\n");
        return;
    }
    char err[4096];
    const dbr_kdesc *ks[N_RANDOM];
    int m = 0;
    for (int i = 0; i < g_nkds; i++)
        if (!is_huge(&g_kds[i]) && i % 3 == 0) ks[m++] = &g_kds[i];
    char *src = dbr_cg_cuda_source_many(ks, m, err, sizeof err);
    if (!src) fail_msg("%s", err);
    FILE *f = fopen(path_of("emu.cpp"), "w");
    assert_non_null(f);
    fprintf(f, "%s%s\nextern \"C\" void emu_launch(int k, void **a, long long n, unsigned grid) {\n"
               "    switch (k) {\n", emu_prelude, src);
    free(src);
    for (int j = 0; j < m; j++) {
        const dbr_kdesc *kd = ks[j];
        fprintf(f, "    case %d: emu_run(grid, [&] { %s(", j, kd->name);
        for (int i = 0; i < kd->n_in; i++)
            fprintf(f, "(const %s *)a[%d], ", c_type(kd->in[i].dtype), i);
        fprintf(f, "(%s *)a[%d], n); }); break;\n", c_type(kd->dtype), kd->n_in);
    }
    fprintf(f, "    }\n}\n");
    assert_int_equal(fclose(f), 0);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "c++ -std=c++20 -O1 -ffp-contract=off -fPIC -shared -w %s -o %s -pthread",
             path_of("emu.cpp"), path_of("emu.so"));
    const double t0 = now_ms();
    if (system(cmd) != 0) fail_msg("the host build of the CUDA C failed: %s", cmd);
    const double t1 = now_ms();
    void *h = dlopen(path_of("emu.so"), RTLD_NOW | RTLD_LOCAL);
    if (!h) fail_msg("%s", dlerror());
    emu_ctx e = {NULL, 0};
    void *p = dlsym(h, "emu_launch");
    assert_non_null(p);
    memcpy(&e.launch, &p, sizeof p);
    int bad = 0;
    double worst = 0;
    for (e.k = 0; e.k < m; e.k++) bad += check_kernel(ks[e.k], emu_run_kernel, &e, &worst) != 0;
    void (*stop)(void);
    p = dlsym(h, "emu_stop");
    assert_non_null(p);
    memcpy(&stop, &p, sizeof p);
    stop();
    dlclose(h);
    printf("host emulation: %d kernels built as C++ in %.0f ms, run on threads in %.0f ms; %d "
           "differ from dbr_kdesc_eval (largest relative difference %.3g)\n",
           m, t1 - t0, now_ms() - t1, bad, worst);
    assert_int_equal(bad, 0);
}

/* ---- on a GPU -------------------------------------------------------------------------- */

typedef struct gpu_ctx {
    const void *image;
} gpu_ctx;

static void gpu_run_kernel(const dbr_kdesc *kd, void **args, void *ctx) {
    const gpu_ctx *g = ctx;
    char err[1024];
    void *dev[DBR_KD_MAX_IN + 1];
    int64_t bytes[DBR_KD_MAX_IN + 1];
    for (int i = 0; i <= kd->n_in; i++) {
        const int32_t dt = i < kd->n_in ? kd->in[i].dtype : kd->dtype;
        bytes[i] = (i < kd->n_in ? in_span(kd, i) : dbr_kdesc_out_numel(kd)) * (int64_t)dt_size(dt);
        dev[i] = dbr_cuda_malloc(bytes[i], err, sizeof err);
        if (!dev[i]) fail_msg("cudaMalloc: %s", err);
        assert_int_equal(dbr_cuda_to_device(dev[i], args[i], bytes[i]), 0);
    }
    if (dbr_cg_cuda_launch(kd, g->image, dev, NULL, err, sizeof err) != 0) fail_msg("%s", err);
    if (dbr_cuda_sync(err, sizeof err) != 0) fail_msg("%s: %s", kd->name, err);
    assert_int_equal(dbr_cuda_to_host(args[kd->n_in], dev[kd->n_in], bytes[kd->n_in]), 0);
    for (int i = 0; i <= kd->n_in; i++) dbr_cuda_free(dev[i]);
}

/* CUDA's expf, tanhf, ... differ from libm's by an ulp or two, which long
 * random chains blow up where they cancel or cross a branch (sign, relu):
 * a kernel passes with at most 2% of its elements beyond 1e-6 (f32) or
 * 1e-12 (f64) relative; a wrong index or formula moves far more. */
static void test_gpu_matches_reference(void **state) {
    (void)state;
    char why[256];
    if (!dbr_cg_cuda_gpu_present(why, sizeof why)) {
        printf("GPU part skipped (%s): kernels compiled, not run\n", why);
        void *args[DBR_KD_MAX_IN + 1] = {NULL};
        assert_int_equal(dbr_cg_cuda_launch(&g_kds[0], g_images[0], args, NULL, why, sizeof why), -1);
        assert_true(strlen(why) > 0);
        return;
    }
    int ran = 0, bad = 0;
    double worst = 0;
    for (int i = 0; i < g_nkds; i++) {
        if (is_huge(&g_kds[i])) continue;
        gpu_ctx g = {g_images[i / BATCH]};
        const int64_t nb = check_kernel(&g_kds[i], gpu_run_kernel, &g, &worst);
        if (nb * 50 > dbr_kdesc_out_numel(&g_kds[i])) {
            fprintf(stderr, "%s: %lld of %lld elements differ\n", g_kds[i].name, (long long)nb,
                    (long long)dbr_kdesc_out_numel(&g_kds[i]));
            bad++;
        }
        ran++;
    }
    printf("GPU: %d kernels run, %d differ from dbr_kdesc_eval (largest relative difference "
           "%.3g)\n", ran, bad, worst);
    dbr_cg_cuda_unload_all();
    assert_int_equal(bad, 0);
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
        cmocka_unit_test(test_host_emulation),
        cmocka_unit_test(test_gpu_matches_reference),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
