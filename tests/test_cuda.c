/* test_cuda.c: the CUDA kernels against the CPU, bit for bit. Skips (77)
 * when no usable CUDA device is present or dbr was built without CUDA. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/philox.h"
#include "runtime/cuda.h"
#include "runtime/runtime.h"

/* The CPU reference, written from the contract in cuda_kernels.h. */
static void dropout_ref(const float *x, float *y, int64_t n, double p, uint64_t key) {
    float scale = p >= 1.0 ? 0.0f : (float)(1.0 / (1.0 - p));
    for (int64_t i = 0; i < n; i++)
        y[i] = dbr_rng_u01(dbr_rng_u32(key, (uint64_t)i)) >= p ? x[i] * scale : 0.0f;
}

/* The library's own CPU kernel for the same node. */
static void dropout_cpu_exec(const float *x, float *y, int64_t n, double p, uint64_t key) {
    dbr_node node;
    memset(&node, 0, sizeof node);
    node.op = DBR_OP_DROPOUT;
    node.n_in = 1;
    node.in[0].dtype = DT_F32;
    node.in[0].ndim = 1;
    node.in[0].shape[0] = n;
    node.out = node.in[0];
    node.a.f[0] = p;
    node.a.i[0] = (int64_t)key;
    const void *in[1] = {x};
    assert_int_equal(dbr_cpu_exec(&node, in, y), 0);
}

static void run_case(int64_t n, double p, uint64_t key) {
    float *x = malloc((size_t)n * sizeof *x);
    float *want = malloc((size_t)n * sizeof *want);
    float *cpu = malloc((size_t)n * sizeof *cpu);
    float *got = malloc((size_t)n * sizeof *got);
    assert_non_null(x);
    assert_non_null(want);
    assert_non_null(cpu);
    assert_non_null(got);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((double)dbr_rng_u32(key ^ 0x5bd1e995u, (uint64_t)i) / 4294967296.0 - 0.5);

    char msg[256];
    float *dx = dbr_cuda_malloc(n * (int64_t)sizeof(float), msg, sizeof msg);
    float *dy = dbr_cuda_malloc(n * (int64_t)sizeof(float), msg, sizeof msg);
    if (!dx || !dy)
        fail_msg("%s", msg);
    assert_int_equal(dbr_cuda_to_device(dx, x, n * (int64_t)sizeof(float)), 0);
    int rc = dbr_cuda_dropout_f32(dx, dy, n, p, key);
    if (rc != 0)
        fail_msg("dropout launch: %s", dbr_cuda_error_string(rc));
    if (dbr_cuda_sync(msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    assert_int_equal(dbr_cuda_to_host(got, dy, n * (int64_t)sizeof(float)), 0);

    dropout_ref(x, want, n, p, key);
    dropout_cpu_exec(x, cpu, n, p, key);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
            fail_msg("n=%lld p=%g: element %lld: cuda %a, reference %a", (long long)n, p,
                     (long long)i, (double)got[i], (double)want[i]);
        if (memcmp(&got[i], &cpu[i], sizeof(float)) != 0)
            fail_msg("n=%lld p=%g: element %lld: cuda %a, dbr_cpu_exec %a", (long long)n, p,
                     (long long)i, (double)got[i], (double)cpu[i]);
        kept += want[i] != 0.0f;
    }
    if (n >= 100000 && p > 0.0 && p < 1.0) {
        double rate = (double)kept / (double)n;
        assert_true(rate > 1.0 - p - 0.01 && rate < 1.0 - p + 0.01);
    }
    dbr_cuda_free(dx);
    dbr_cuda_free(dy);
    free(x);
    free(want);
    free(cpu);
    free(got);
}

static void test_dropout_matches_cpu(void **state) {
    (void)state;
    const int64_t sizes[] = {1, 3, 4, 5, 1023, 1000003};
    const double ps[] = {0.0, 0.1, 0.5, 0.9, 1.0};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (size_t q = 0; q < sizeof ps / sizeof *ps; q++)
            run_case(sizes[s], ps[q], dbr_rng_key(42, (uint64_t)s, q));
}

/* Sizes past one grid's worth of threads exercise the grid-stride loop. */
static void test_dropout_large(void **state) {
    (void)state;
    run_case((int64_t)65536 * 256 * 4 + 7, 0.25, dbr_rng_key(7, 1, 2));
}

int main(void) {
    char msg[256];
    if (dbr_cuda_probe(msg, sizeof msg) == 0) {
        fprintf(stderr, "test_cuda: skipped: %s\n", msg);
        return 77;
    }
    fprintf(stderr, "test_cuda: %s\n", msg);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dropout_matches_cpu),
        cmocka_unit_test(test_dropout_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
