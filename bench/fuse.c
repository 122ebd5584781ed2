/* bench/fuse.c: a long element-wise chain, fused into one generated kernel
 * and run op by op, against this machine's STREAM triad, all through the
 * same thread pool. Usage: bench_fuse [--n N] [--reps R] [--threads T]
 * Prints one line per measurement and a JSON line at the end. */
#include "codegen/codegen.h"
#include "codegen/kdesc.h"
#include "runtime/pool.h"
#include "runtime/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct triad {
    float *a;
    const float *b, *c;
    float s;
} triad;

static void triad_slice(void *ctx, int64_t b, int64_t e) {
    triad *t = ctx;
    for (int64_t i = b; i < e; i++) t->a[i] = t->b[i] + t->s * t->c[i];
}

static void scale_slice(void *ctx, int64_t b, int64_t e) {
    triad *t = ctx;
    for (int64_t i = b; i < e; i++) t->a[i] = t->s * t->b[i];
}

typedef struct kjob {
    dbr_kfn fn;
    void *args[2];
} kjob;

static void kslice(void *ctx, int64_t b, int64_t e) {
    kjob *j = ctx;
    j->fn(j->args, b, e);
}

/* The chain: y = relu(tanh-free arithmetic over x): 8 ops, scalars only. */
static const dbr_op chain_ops[8] = {DBR_OP_MUL, DBR_OP_ADD, DBR_OP_MUL, DBR_OP_SUB,
                                    DBR_OP_ABS, DBR_OP_ADD, DBR_OP_MUL, DBR_OP_RELU};
static const double chain_c[8] = {1.5, 0.25, 0.75, 0.5, 0, 0.125, 2.0, 0};

int main(int argc, char **argv) {
    int64_t n = 64ll << 20;
    int reps = 10, threads = 0;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--n") && k + 1 < argc) n = atoll(argv[++k]);
        else if (!strcmp(argv[k], "--reps") && k + 1 < argc) reps = atoi(argv[++k]);
        else if (!strcmp(argv[k], "--threads") && k + 1 < argc) threads = atoi(argv[++k]);
        else {
            fprintf(stderr, "usage: bench_fuse [--n N] [--reps R] [--threads T]\n");
            return 2;
        }
    }
    if (threads > 0) dbr_cpu_set_threads(threads);
    float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4), *z = malloc((size_t)n * 4);
    if (!x || !y || !z) return 1;
    for (int64_t i = 0; i < n; i++) x[i] = (float)(i % 1000) * 1e-3f - 0.5f, y[i] = 0, z[i] = 1;

    /* STREAM triad, best of reps: 3 arrays of n floats */
    triad t = {.a = y, .b = x, .c = z, .s = 3.0f};
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        dbr_parallel_range(n, 1 << 15, triad_slice, &t);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    double triad_gbs = 12.0 * (double)n / best / 1e9;
    printf("stream triad      %8.2f ms  %6.2f GB/s  (%d threads)\n", best * 1e3, triad_gbs,
           dbr_pool_threads());
    best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        dbr_parallel_range(n, 1 << 15, scale_slice, &t);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    double scale_gbs = 8.0 * (double)n / best / 1e9;
    printf("stream scale      %8.2f ms  %6.2f GB/s\n", best * 1e3, scale_gbs);

    /* the fused chain: one load, 8 ops, one store */
    dbr_kdesc kd = {.dtype = DT_F32, .ndim = 1, .shape = {n}, .n_in = 1};
    kd.in[0].dtype = DT_F32;
    kd.in[0].stride[0] = 1;
    kd.ins[kd.n_ins++] = (dbr_kd_ins){.kind = DBR_KD_LOAD, .a = 0, .b = -1, .c = -1};
    for (int k = 0; k < 8; k++) {
        int32_t prev = kd.n_ins - 1;
        if (dbr_fuse_arity(chain_ops[k]) == 2) {
            kd.ins[kd.n_ins++] = (dbr_kd_ins){.kind = DBR_KD_CONST, .a = -1, .b = -1, .c = -1,
                                              .p = chain_c[k]};
            kd.ins[kd.n_ins] = (dbr_kd_ins){.kind = DBR_KD_OP, .op = chain_ops[k], .a = prev,
                                            .b = kd.n_ins - 1, .c = -1};
        } else {
            kd.ins[kd.n_ins] = (dbr_kd_ins){.kind = DBR_KD_OP, .op = chain_ops[k], .a = prev,
                                            .b = -1, .c = -1};
        }
        kd.n_ins++;
    }
    snprintf(kd.name, sizeof kd.name, "f_chain8_%lld", (long long)n);
    char err[256];
    double t0 = now_s();
    dbr_kfn fn = dbr_cg_cpu(&kd, err, sizeof err);
    double jit_ms = (now_s() - t0) * 1e3;
    if (!fn) {
        fprintf(stderr, "bench_fuse: %s\n", err);
        return 1;
    }
    kjob j = {.fn = fn, .args = {x, y}};
    best = 1e30;
    for (int r = 0; r < reps; r++) {
        t0 = now_s();
        dbr_parallel_range(n, 1 << 15, kslice, &j);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    double fused_gbs = 8.0 * (double)n / best / 1e9, fused_ms = best * 1e3;
    printf("fused 8-op chain  %8.2f ms  %6.2f GB/s  = %.0f%% of triad  (JIT %.1f ms)\n", fused_ms,
           fused_gbs, 100 * fused_gbs / triad_gbs, jit_ms);

    /* the same chain op by op through the CPU kernels (what unfused runs) */
    best = 1e30;
    for (int r = 0; r < reps; r++) {
        t0 = now_s();
        const float *src = x;
        for (int k = 0; k < 8; k++) {
            dbr_node nd = {.op = chain_ops[k], .n_in = dbr_fuse_arity(chain_ops[k])};
            nd.in[0] = (dbr_tinfo){.dtype = DT_F32, .ndim = 1, .shape = {n}};
            nd.out = nd.in[0];
            float c = (float)chain_c[k];
            const void *in[2] = {src, &c};
            if (nd.n_in == 2) nd.in[1] = (dbr_tinfo){.dtype = DT_F32, .ndim = 0};
            if (dbr_cpu_exec(&nd, in, k & 1 ? y : z)) return 1;
            src = k & 1 ? y : z;
        }
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    printf("unfused, 8 kernels %7.2f ms  (fused is %.2fx faster)\n", best * 1e3,
           best * 1e3 / fused_ms);
    printf("{\"n\": %lld, \"threads\": %d, \"triad_gbs\": %.2f, \"scale_gbs\": %.2f, \"fused_gbs\": %.2f, "
           "\"fused_pct_of_triad\": %.1f, \"fused_ms\": %.3f, \"unfused_ms\": %.3f, "
           "\"jit_ms\": %.2f}\n",
           (long long)n, dbr_pool_threads(), triad_gbs, scale_gbs, fused_gbs, 100 * fused_gbs / triad_gbs,
           fused_ms, best * 1e3, jit_ms);
    free(x);
    free(y);
    free(z);
    return 0;
}
