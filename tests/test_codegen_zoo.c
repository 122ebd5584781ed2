/* test_codegen_zoo.c: every fused kernel of the zoo's training steps
 * compiles. Each model's step (forward, backward, optimizer) is recorded in
 * meta mode through the public API, simplified and fused as compiled mode
 * does, and every distinct FUSED body is lowered and compiled through NVRTC
 * for sm_90 (no GPU needed), with the disk cache off so each compile is a
 * real one. Prints kernels per model and the median compile time. Exits 77
 * only when dbr is built without NVRTC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "codegen/cuda.h"
#include "codegen/lower.h"
#include "dbr.h"
#include "ir/fused.h"
#include "ir/graph.h"
#include "models.h"
#include "tools/dot.h"

#define ARCH 90

typedef struct zcase {
    const char *model;
    int64_t batch; /* kernels are per shape: small batches compile the same code */
    int32_t min_kernels;
} zcase;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* The recorded step simplified and fused, as `dbr dot --fused` draws it. */
static dbr_graph *fused_step(const dbr_graph *g) {
    char err[512] = "";
    dbr_graph *f = NULL;
    int32_t kernels = 0;
    if (dbr_dot_fuse(g, &f, &kernels, err, sizeof err)) fprintf(stderr, "%s\n", err);
    assert_non_null(f);
    assert_true(kernels > 0);
    return f;
}

static void test_model(void **state) {
    const zcase *zc = *state;
    const dbr_model_info *m = dbr_model_find(zc->model);
    assert_non_null(m);
    dbr_config cfg = dbr_config_default();
    cfg.mode = DBR_MODE_META;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    assert_non_null(ctx);
    dbr_step_begin(ctx);
    int rc = dbr_zoo_record_step(ctx, m, zc->batch, false);
    const dbr_graph *g = rc ? NULL : dbr_graph_of(ctx);
    if (!g) fprintf(stderr, "%s: %s\n", zc->model, dbr_error(ctx) ? dbr_error(ctx) : "no graph");
    assert_non_null(g);
    dbr_graph *f = fused_step(g);
    dbr_step_end(ctx);
    dbr_ctx_free(ctx);

    int32_t n_fused = 0;
    for (int32_t i = 0; i < f->n_nodes; i++) n_fused += f->nodes[i].op == DBR_OP_FUSED;
    uint64_t *seen = calloc((size_t)n_fused + 1, sizeof *seen);
    double *ms = calloc((size_t)n_fused + 1, sizeof *ms);
    assert_non_null(seen);
    assert_non_null(ms);
    int32_t n = 0, failed = 0;
    double total = 0;
    char err[4096];
    for (int32_t i = 0; i < f->n_nodes; i++) {
        if (f->nodes[i].op != DBR_OP_FUSED) continue;
        const dbr_fbody *b = dbr_fbody_get(f->nodes[i].a.i[0]);
        assert_non_null(b);
        dbr_kdesc kd;
        err[0] = '\0';
        if (dbr_lower_fbody(b, &kd, err, sizeof err)) {
            fprintf(stderr, "%s: lowering %s: %s\n", zc->model, b->name, err);
            failed++;
            continue;
        }
        /* distinct kernels: by the CUDA source they render to */
        char *src = dbr_cg_cuda_source(&kd, err, sizeof err);
        if (!src) {
            fprintf(stderr, "%s: rendering %s: %s\n", zc->model, b->name, err);
            failed++;
            continue;
        }
        uint64_t h = fnv1a(src);
        free(src);
        bool dup = false;
        for (int32_t j = 0; j < n && !dup; j++) dup = seen[j] == h;
        if (dup) continue;
        seen[n] = h;
        void *image = NULL;
        size_t size = 0;
        double t0 = now_ms();
        if (dbr_cg_nvrtc_compile(&kd, ARCH, &image, &size, err, sizeof err)) {
            fprintf(stderr, "%s: NVRTC failed on %s:\n%s\n", zc->model, b->name, err);
            failed++;
        } else {
            assert_true(size > 0);
        }
        ms[n] = now_ms() - t0;
        total += ms[n++];
        free(image);
    }
    qsort(ms, (size_t)n, sizeof *ms, cmp_double);
    printf("%-12s batch %-3lld %4d FUSED nodes, %4d distinct kernels for sm_%d: median %.1f ms, "
           "total %.0f ms\n",
           zc->model, (long long)zc->batch, (int)n_fused, (int)n, ARCH,
           n ? (n % 2 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2) : 0.0, total);
    fflush(stdout);
    free(seen);
    free(ms);
    dbr_graph_free(f);
    assert_int_equal(failed, 0);
    assert_true(n >= zc->min_kernels);
}

static int setup(void **state) {
    (void)state;
    /* compile every kernel for real: no images from earlier runs */
    return setenv("DBR_CACHE_DIR", "off", 1) ? -1 : 0;
}

/* densenet121 compiles too (254 kernels) but takes about 18 s: left out */
static zcase k_cases[] = {
    {"mlp", 8, 3},        {"cnn", 8, 5},   {"gpt", 2, 10}, {"resnet50", 2, 20},
    {"googlenet", 2, 50}, {"vgg19", 1, 10}, {"unet", 1, 5},
};

int main(void) {
    char ver[64] = "";
    if (!dbr_cg_nvrtc_available()) {
        dbr_cg_nvrtc_version(ver, sizeof ver);
        printf("skipped: %s\n", ver);
        return 77;
    }
    dbr_cg_nvrtc_version(ver, sizeof ver);
    printf("%s\n", ver);
    struct CMUnitTest tests[sizeof k_cases / sizeof k_cases[0]];
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++)
        tests[i] = (struct CMUnitTest){k_cases[i].model, test_model, NULL, NULL, &k_cases[i]};
    return _cmocka_run_group_tests("codegen_zoo", tests, sizeof tests / sizeof tests[0], setup,
                                   NULL);
}
