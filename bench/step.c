/* step.c: wall time of one training step (forward, cross-entropy, backward,
 * SGD update, between dbr_step_begin and dbr_step_end) of the zoo's models
 * on random data. Prints one JSON line per model; bench/run.sh puts them
 * beside PyTorch's (bench/torch_step.py times the same step the same way). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dbr.h"
#include "models/models.h"

typedef struct bench_opts {
    const char *model;  /* NULL: mlp and cnn */
    int64_t batch;      /* 0: the model's default */
    int steps;          /* 0: the model's default */
    int warmup;
    int threads;
    dbr_mode mode;
    uint64_t seed;
    double budget_frac; /* compiled mode under a budget: fraction of the no-recompute peak */
    dbr_recompute recompute;
    bool fuse; /* --mode fused: compiled with kernel fusion; --mode compiled: without */
} bench_opts;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Elements of one example's input and its number of labels. */
static int64_t example_numel(const dbr_model_info *m, int64_t *labels) {
    int64_t n = 784;
    *labels = 1;
    if (m->input_rank) {
        n = 1;
        for (int i = 0; i < m->input_rank; i++) n *= m->input_dims[i];
    }
    if (m->input_dtype == DBR_I32) *labels = n; /* tokens: one label each */
    return n;
}

/* One step; returns the loss (only read when want_loss) or -1 on error.
 * xs holds floats or, for token models, int32 ids. */
static double train_step(dbr_ctx *ctx, const dbr_model_info *m, int64_t batch, const float *xs,
                         const int32_t *ys, int want_loss) {
    double loss_v = 0.0;
    int64_t labels, per = example_numel(m, &labels);
    int64_t shape[4] = {batch, per};
    int rank = m->input_rank ? m->input_rank + 1 : 2;
    for (int i = 0; i < m->input_rank; i++) shape[1 + i] = m->input_dims[i];
    dbr_step_begin(ctx);
    dbr_tensor *x = dbr_input(ctx, m->input_dtype, rank, shape, xs, false);
    dbr_tensor *y = dbr_input(ctx, DBR_I32, DBR_SHAPE(batch * labels), ys, false);
    dbr_tensor *logits = m->fn(ctx, x);
    if (logits && logits->ndim == 3)
        logits = dbr_reshape(ctx, logits, DBR_SHAPE(-1, logits->shape[2]));
    dbr_tensor *loss = dbr_cross_entropy(ctx, logits, y);
    if (loss && want_loss)
        loss_v = dbr_item(ctx, loss);
    dbr_backward(ctx, loss);
    dbr_optim_step(ctx);
    int rc = dbr_step_end(ctx);
    if (rc != 0 || dbr_error(ctx))
        return -1.0;
    return loss_v;
}

static int bench_model(const bench_opts *o, const char *name) {
    const dbr_model_info *m = dbr_model_find(name);
    if (!m) {
        fprintf(stderr, "step: unknown model '%s' (have %s)\n", name, dbr_model_names());
        return 1;
    }
    int is_mlp = strcmp(name, "mlp") == 0;
    int64_t batch = o->batch > 0 ? o->batch : is_mlp ? 256 : 64;
    int steps = o->steps > 0 ? o->steps : is_mlp ? 50 : 20;

    dbr_config cfg = dbr_config_default();
    cfg.mode = o->mode;
    cfg.seed = o->seed;
    cfg.threads = o->threads;
    cfg.memory_budget_frac = o->budget_frac;
    cfg.recompute = o->recompute;
    cfg.no_fuse = !o->fuse;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    if (!ctx) {
        fprintf(stderr, "step: out of memory\n");
        return 1;
    }
    int status = 1;
    int64_t labels, per = example_numel(m, &labels);
    float *xs = malloc((size_t)(batch * per) * sizeof *xs);
    int32_t *ys = malloc((size_t)(batch * labels) * sizeof *ys);
    double *ms = malloc((size_t)steps * sizeof *ms);
    if (!xs || !ys || !ms) {
        fprintf(stderr, "step: out of memory\n");
        goto done;
    }
    if (dbr_error(ctx)) {
        fprintf(stderr, "step: %s\n", dbr_error(ctx));
        goto done;
    }
    uint64_t s = o->seed * 2654435761u + 1;
    int64_t classes = m->input_dtype == DBR_I32 ? dbr_gpt_config_get().vocab : 10;
    for (int64_t i = 0; i < batch * per; i++) {
        if (m->input_dtype == DBR_I32) ((int32_t *)xs)[i] = (int32_t)(xorshift(&s) % (uint64_t)classes);
        else xs[i] = (float)(xorshift(&s) >> 40) / 16777216.0f;
    }
    for (int64_t i = 0; i < batch * labels; i++)
        ys[i] = (int32_t)(xorshift(&s) % (uint64_t)classes);

    dbr_optim opt = {.kind = DBR_SGD, .lr = 0.01};
    dbr_optim_set(ctx, &opt);

    double loss0 = 0.0;
    for (int i = 0; i < o->warmup; i++) {
        double l = train_step(ctx, m, batch, xs, ys, i == 0);
        if (l < 0.0)
            goto fail;
        if (i == 0)
            loss0 = l;
    }
    dbr_reset_peak(ctx);
    dbr_stats s0, s1;
    dbr_stats_get(ctx, &s0);
    for (int i = 0; i < steps; i++) {
        double t0 = now_ms();
        if (train_step(ctx, m, batch, xs, ys, 0) < 0.0)
            goto fail;
        ms[i] = now_ms() - t0;
    }
    int64_t peak = dbr_peak_bytes(ctx);
    dbr_stats_get(ctx, &s1);
    /* compiled mode: host time per step spent recording, cutting, hashing
     * and looking up the plan (0 in eager mode) */
    double overhead = (s1.host_ms - s0.host_ms) / steps;
    double loss1 = train_step(ctx, m, batch, xs, ys, 1);  /* untimed: the loss now */
    if (loss1 < 0.0)
        goto fail;

    double sum = 0.0;
    for (int i = 0; i < steps; i++)
        sum += ms[i];
    qsort(ms, (size_t)steps, sizeof *ms, cmp_double);
    double median = steps % 2 ? ms[steps / 2] : 0.5 * (ms[steps / 2 - 1] + ms[steps / 2]);
    printf("{\"impl\": \"dbr\", \"model\": \"%s\", \"batch\": %lld, \"threads\": %d, "
           "\"mode\": \"%s\", \"warmup\": %d, \"steps\": %d, \"median_ms\": %.3f, "
           "\"min_ms\": %.3f, \"mean_ms\": %.3f, \"peak_bytes\": %lld, "
           "\"loss_first\": %.5f, \"loss_last\": %.5f, \"overhead_ms\": %.4f, "
           "\"cache_hits\": %lld, \"cache_misses\": %lld, \"arena_bytes\": %lld, "
           "\"arena_lower_bound\": %lld, \"budget_bytes\": %lld, \"step_peak_bytes\": %lld, "
           "\"noremat_arena_bytes\": %lld, \"recomputed\": %d, \"recompute_model_pct\": %.2f, "
           "\"recompute\": \"%s\"}\n",
           name, (long long)batch, o->threads,
           o->mode != DBR_MODE_COMPILED ? "eager" : o->fuse ? "fused" : "compiled", o->warmup, steps, median,
           ms[0], sum / steps, (long long)peak, loss0, loss1, overhead,
           (long long)s1.cache_hits, (long long)s1.cache_misses, (long long)s1.arena_bytes,
           (long long)s1.arena_lower_bound, (long long)s1.mem.budget, (long long)s1.mem.peak,
           (long long)s1.mem.noremat_arena, s1.mem.recomputed, s1.mem.recompute_pct,
           s1.mem.strategy ? s1.mem.strategy : "none");
    fflush(stdout);
    status = 0;
    goto done;
fail:
    fprintf(stderr, "step: %s: %s\n", name, dbr_error(ctx) ? dbr_error(ctx) : "step failed");
done:
    free(xs);
    free(ys);
    free(ms);
    dbr_ctx_free(ctx);
    return status;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: step [--model NAME] [--batch N] [--steps N] [--warmup N]\n"
            "            [--threads N] [--mode eager|compiled|fused] [--seed N]\n"
            "            [--budget-frac F] [--recompute auto|none|chen|dp|ilp]\n"
            "Times one training step (SGD, lr 0.01) on random data; without --model,\n"
            "times mlp (batch 256, 50 steps) and cnn (batch 64, 20 steps). --budget-frac F\n"
            "(compiled mode) fits each step in F times its no-recompute peak.\n"
            "Prints one JSON line per model; the median is the figure to quote.\n");
}

int main(int argc, char **argv) {
    bench_opts o = {.warmup = 5, .threads = 1, .mode = DBR_MODE_EAGER, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "step: %s needs a value\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model"))
            o.model = v;
        else if (!strcmp(a, "--batch"))
            o.batch = atoll(v);
        else if (!strcmp(a, "--steps"))
            o.steps = atoi(v);
        else if (!strcmp(a, "--warmup"))
            o.warmup = atoi(v);
        else if (!strcmp(a, "--threads"))
            o.threads = atoi(v);
        else if (!strcmp(a, "--seed"))
            o.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--budget-frac"))
            o.budget_frac = atof(v);
        else if (!strcmp(a, "--recompute"))
            o.recompute = !strcmp(v, "none")   ? DBR_RECOMPUTE_NONE
                          : !strcmp(v, "chen") ? DBR_RECOMPUTE_CHEN
                          : !strcmp(v, "dp")   ? DBR_RECOMPUTE_DP
                          : !strcmp(v, "ilp")  ? DBR_RECOMPUTE_ILP
                                               : DBR_RECOMPUTE_AUTO;
        else if (!strcmp(a, "--mode") && !strcmp(v, "eager"))
            o.mode = DBR_MODE_EAGER;
        else if (!strcmp(a, "--mode") && !strcmp(v, "compiled"))
            o.mode = DBR_MODE_COMPILED;
        else if (!strcmp(a, "--mode") && !strcmp(v, "fused"))
            o.mode = DBR_MODE_COMPILED, o.fuse = true;
        else {
            fprintf(stderr, "step: bad option %s %s\n", a, v);
            usage(stderr);
            return 2;
        }
    }
    if (o.warmup < 1)
        o.warmup = 1;
    if (o.model)
        return bench_model(&o, o.model);
    int rc = bench_model(&o, "mlp");
    return bench_model(&o, "cnn") || rc;
}
