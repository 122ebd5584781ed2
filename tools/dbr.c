/* dbr.c: the dbr command. `dbr train` trains a zoo model on Fashion-MNIST
 * with a progress bar (or plain lines, or one JSON object). Bad flags exit
 * 2; errors at run time (missing data, a failing op) exit 1. */
#include "dbr.h"
#include "ir/graph.h"
#include "models.h"
#include "passes/remat_ir.h"
#include "tools/dot.h"
#include "tools/plan.h"
#include "tools/prof.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DBR_VERSION "0.1.0"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage_main(FILE *f) {
    fprintf(f,
            "usage: dbr <command> [flags]\n"
            "\n"
            "dbr is a define-by-run graph compiler for training neural networks in C.\n"
            "\n"
            "commands:\n"
            "  train     train a model from the zoo on Fashion-MNIST\n"
            "  dot       draw a model's training-step graph (Graphviz: .svg, .png or .dot)\n"
            "  plan      plan recomputation for a model or graph under a memory budget\n"
            "  prof      profile a few training steps kernel by kernel, eager vs compiled vs fused\n"
            "  help      this text; `dbr <command> --help` explains a command\n"
            "  version   print the version\n");
}

static void usage_train(FILE *f) {
    fprintf(f,
            "usage: dbr train [flags]\n"
            "\n"
            "Trains a zoo model on Fashion-MNIST (eager mode, CPU), then reports test accuracy,\n"
            "wall time and peak memory.\n"
            "\n"
            "  --model NAME       mlp or cnn, the zoo's 28x28 models (default mlp)\n"
            "  --mode MODE        eager (each op runs at once) or compiled (record, compile once\n"
            "                     per shape signature, replay over one arena); default eager\n"
            "  --epochs N         passes over the training set (default 1)\n"
            "  --batch B          mini-batch size (default 64)\n"
            "  --optimizer NAME   sgd | momentum | adam | adamw (momentum is 0.9); default: the\n"
            "                     model's recipe (mlp: adam, lr 0.0005; cnn: momentum, lr 0.02)\n"
            "  --lr X             learning rate (default: the recipe's, or 0.001 for adam/adamw\n"
            "                     and 0.01 for sgd/momentum when --optimizer is given)\n"
            "  --weight-decay X   L2 weight decay (decoupled for adamw; default 0)\n"
            "  --seed S           seed for initialization and shuffling (default 0)\n"
            "  --steps K          stop after K training steps in total (default: all epochs)\n"
            "  --threads T        BLAS threads (default: the library's choice)\n"
            "  --budget SIZE|PCT  compiled mode under a memory budget: bytes (3GiB, 512MiB) or a\n"
            "                     percentage of the step's no-recompute peak (40%%); everything\n"
            "                     the step holds counts (parameters, optimizer state, inputs,\n"
            "                     activations, gradients); forward values are recomputed in\n"
            "                     backward to fit, and the summary reports the real peak\n"
            "  --recompute NAME   auto (default) | none | chen | dp | ilp: the planner\n"
            "  --no-fuse          compiled mode without kernel fusion (as DBR_NO_FUSE=1)\n"
            "  --data DIR         folder with the Fashion-MNIST .gz files\n"
            "                     (default $DBR_FASHION_MNIST or %s)\n"
            "  --save PATH        save the trained parameters as .npz\n"
            "  --json             print one JSON object instead of progress and summary\n"
            "  -h, --help         this text\n",
            dbr_fashion_mnist_dir());
}

typedef struct train_args {
    const char *model, *optimizer, *data, *save, *mode, *budget_s, *recompute_s;
    dbr_recompute recompute;
    int64_t epochs, batch, steps;
    int64_t budget;     /* --budget in bytes, or */
    double budget_frac; /* as a fraction of the no-recompute peak */
    double lr, wd;
    uint64_t seed;
    int threads;
    bool json, mode_given, no_fuse;
} train_args;

static int bad_flag(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "dbr train: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n(see `dbr train --help`)\n");
    return 2;
}

static int parse_int(const char *flag, const char *v, int64_t min, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || end == v || x < min) {
        char lim[32];
        snprintf(lim, sizeof lim, "%lld", (long long)min);
        fprintf(stderr, "dbr train: %s expects an integer >= %s, got '%s'\n", flag, lim, v);
        return 2;
    }
    *out = x;
    return 0;
}

static int parse_train(int argc, char **argv, train_args *a) {
    *a = (train_args){.model = "mlp", .optimizer = NULL, .mode = "eager", .epochs = 1, .batch = 64,
                      .steps = 0, .lr = 0, .seed = 0};
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            usage_train(stdout);
            return 1;
        }
        if (!strcmp(f, "--json")) {
            a->json = true;
            continue;
        }
        if (!strcmp(f, "--no-fuse")) {
            a->no_fuse = true;
            continue;
        }
        if (strncmp(f, "--", 2) != 0) return bad_flag("unexpected argument '%s'%s", f, "");
        if (i + 1 >= argc) return bad_flag("flag %s needs a value%s", f, "");
        const char *v = argv[++i];
        int64_t n;
        if (!strcmp(f, "--model")) {
            const dbr_model_info *mi = dbr_model_find(v);
            if (!mi) return bad_flag("unknown model '%s' (known: %s)", v, dbr_model_names());
            if (mi->input_rank != 0)
                return bad_flag("model '%s' does not take 28x28 images: dbr train trains on "
                                "Fashion-MNIST, which fits mlp and cnn (`dbr dot --model %s` "
                                "records it at its paper's size)",
                                v, v);
            a->model = v;
        } else if (!strcmp(f, "--mode")) {
            if (strcmp(v, "eager") && strcmp(v, "compiled"))
                return bad_flag("unknown mode '%s' (known: %s)", v, "eager, compiled");
            a->mode = v;
            a->mode_given = true;
        } else if (!strcmp(f, "--optimizer")) {
            if (strcmp(v, "sgd") && strcmp(v, "momentum") && strcmp(v, "adam") && strcmp(v, "adamw"))
                return bad_flag("unknown optimizer '%s' (known: %s)", v, "sgd, momentum, adam, adamw");
            a->optimizer = v;
        } else if (!strcmp(f, "--epochs")) {
            if (parse_int(f, v, 1, &n)) return 2;
            a->epochs = n;
        } else if (!strcmp(f, "--batch")) {
            if (parse_int(f, v, 1, &n)) return 2;
            a->batch = n;
        } else if (!strcmp(f, "--steps")) {
            if (parse_int(f, v, 1, &n)) return 2;
            a->steps = n;
        } else if (!strcmp(f, "--seed")) {
            if (parse_int(f, v, 0, &n)) return 2;
            a->seed = (uint64_t)n;
        } else if (!strcmp(f, "--threads")) {
            if (parse_int(f, v, 0, &n)) return 2;
            a->threads = (int)n;
        } else if (!strcmp(f, "--lr") || !strcmp(f, "--weight-decay")) {
            char *end;
            double x = strtod(v, &end);
            bool lr = !strcmp(f, "--lr");
            if (*end || end == v || !isfinite(x) || (lr ? x <= 0 : x < 0))
                return bad_flag(lr ? "--lr expects a number > 0, got '%s'%s"
                                   : "--weight-decay expects a number >= 0, got '%s'%s",
                                v, "");
            if (lr)
                a->lr = x;
            else
                a->wd = x;
        } else if (!strcmp(f, "--budget")) {
            if (dbr_parse_budget(v, &a->budget, &a->budget_frac))
                return bad_flag("--budget expects bytes (e.g. 3GiB, 512MiB) or a percentage of "
                                "the no-recompute peak (e.g. 40%%), got '%s'%s", v, "");
            a->budget_s = v;
        } else if (!strcmp(f, "--recompute")) {
            if (dbr_recompute_parse(v, &a->recompute))
                return bad_flag("unknown recompute strategy '%s' (known: %s)", v,
                                "auto, none, chen, dp, ilp");
            a->recompute_s = v;
        } else if (!strcmp(f, "--data")) {
            a->data = v;
        } else if (!strcmp(f, "--save")) {
            a->save = v;
        } else {
            return bad_flag("unknown flag '%s'%s", f, "");
        }
    }
    if (a->budget_s || a->recompute_s) {
        /* recomputation is a compiled-mode pass */
        if (a->mode_given && !strcmp(a->mode, "eager"))
            return bad_flag("%s needs compiled mode: eager mode runs each op at once and keeps "
                            "what backward needs%s",
                            a->budget_s ? "--budget" : "--recompute", "");
        a->mode = "compiled";
    }
    /* the model's recipe fills what the flags leave open */
    const dbr_model_info *m = dbr_model_find(a->model);
    if (!a->optimizer) {
        a->optimizer = m->optimizer;
        if (a->lr == 0) a->lr = m->lr;
    }
    if (a->lr == 0) a->lr = strncmp(a->optimizer, "adam", 4) == 0 ? 1e-3 : 0.01;
    return 0;
}


static void progress(bool tty, int64_t epoch, int64_t epochs, int64_t done, int64_t total,
                     double loss, double acc, double rate, double eta) {
    if (tty) {
        int width = 24, fill = total ? (int)(width * done / total) : width;
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\repoch %lld/%lld [%s] %lld/%lld loss %.4f acc %.3f %.0f samples/s ETA %.0fs ",
                (long long)epoch, (long long)epochs, bar, (long long)done, (long long)total, loss,
                acc, rate, eta);
        fflush(stderr);
    } else {
        fprintf(stderr, "epoch %lld/%lld step %lld/%lld loss %.4f acc %.3f %.0f samples/s\n",
                (long long)epoch, (long long)epochs, (long long)done, (long long)total, loss, acc,
                rate);
    }
}

/* Argmax per row of logits [n, 10]; returns the number of correct rows. */
static int64_t count_correct(const float *z, const int32_t *y, int64_t n, int64_t c) {
    int64_t ok = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t best = 0;
        for (int64_t j = 1; j < c; j++)
            if (z[i * c + j] > z[i * c + best]) best = j;
        ok += best == y[i];
    }
    return ok;
}

static int fail(dbr_ctx *ctx) {
    fprintf(stderr, "dbr: %s\n", dbr_error(ctx) ? dbr_error(ctx) : "unknown error");
    return 1;
}

static double evaluate(dbr_ctx *ctx, dbr_model_fn fn, const dbr_dataset *ds, int64_t bs,
                       int *rc) {
    int64_t d = ds->rows * ds->cols, ok = 0;
    float *z = malloc((size_t)bs * 10 * sizeof *z);
    dbr_set_training(ctx, false);
    for (int64_t s = 0; s < ds->n && *rc == 0; s += bs) {
        int64_t b = ds->n - s < bs ? ds->n - s : bs;
        dbr_step_begin(ctx);
        dbr_tensor *x = dbr_input(ctx, DBR_F32, DBR_SHAPE(b, d), ds->images + s * d, false);
        dbr_tensor *logits = fn(ctx, x);
        if (!z || dbr_copy_out(ctx, logits, z, (size_t)b * 10 * sizeof *z)) *rc = 1;
        else ok += count_correct(z, ds->labels + s, b, 10);
        dbr_step_end(ctx);
    }
    dbr_set_training(ctx, true);
    free(z);
    return ds->n ? (double)ok / (double)ds->n : 0;
}

static int cmd_train(int argc, char **argv) {
    train_args a;
    int prc = parse_train(argc, argv, &a);
    if (prc == 1) return 0; /* --help */
    if (prc) return prc;
    if (a.data) setenv("DBR_FASHION_MNIST", a.data, 1);

    dbr_config cfg = dbr_config_default();
    cfg.seed = a.seed;
    cfg.threads = a.threads;
    cfg.mode = strcmp(a.mode, "compiled") ? DBR_MODE_EAGER : DBR_MODE_COMPILED;
    cfg.memory_budget = a.budget;
    cfg.memory_budget_frac = a.budget_frac;
    cfg.recompute = a.recompute;
    cfg.no_fuse = a.no_fuse;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    if (!ctx) {
        fprintf(stderr, "dbr: out of memory\n");
        return 1;
    }
    if (dbr_error(ctx)) {
        int r = fail(ctx);
        dbr_ctx_free(ctx);
        return r;
    }
    dbr_dataset train = {0}, test = {0};
    dbr_loader *ld = NULL;
    float *xb = NULL, *z = NULL;
    int32_t *yb = NULL;
    int rc = 0;
    if (dbr_fashion_mnist(ctx, true, &train) || dbr_fashion_mnist(ctx, false, &test)) {
        rc = fail(ctx);
        goto out;
    }
    const dbr_model_info *m = dbr_model_find(a.model);
    dbr_optim opt = {.lr = a.lr, .weight_decay = a.wd};
    opt.kind = !strcmp(a.optimizer, "sgd") ? DBR_SGD
               : !strcmp(a.optimizer, "momentum") ? DBR_MOMENTUM
               : !strcmp(a.optimizer, "adam") ? DBR_ADAM : DBR_ADAMW;
    if (dbr_optim_set(ctx, &opt)) {
        rc = fail(ctx);
        goto out;
    }
    int64_t d = train.rows * train.cols;
    ld = dbr_loader_new(&train, a.batch, true, false, a.seed);
    xb = malloc((size_t)(a.batch * d) * sizeof *xb);
    yb = malloc((size_t)a.batch * sizeof *yb);
    z = malloc((size_t)a.batch * 10 * sizeof *z);
    if (!ld || !xb || !yb || !z) {
        fprintf(stderr, "dbr: out of memory\n");
        rc = 1;
        goto out;
    }
    bool tty = !a.json && isatty(STDERR_FILENO);
    int64_t nb = dbr_loader_batches(ld), steps = 0, epochs_run = 0;
    double t0 = now_s(), final_loss = NAN;
    for (int64_t ep = 0; ep < a.epochs && rc == 0; ep++) {
        dbr_loader_epoch(ld, ep);
        double ep_t0 = now_s(), loss_sum = 0, last_print = 0;
        int64_t seen = 0, ok = 0, bi = 0, b;
        epochs_run++;
        while ((b = dbr_loader_next(ld, xb, yb)) > 0) {
            dbr_step_begin(ctx);
            dbr_tensor *x = dbr_input(ctx, DBR_F32, DBR_SHAPE(b, d), xb, false);
            dbr_tensor *y = dbr_input(ctx, DBR_I32, DBR_SHAPE(b), yb, false);
            dbr_tensor *logits = m->fn(ctx, x);
            dbr_keep(logits); /* read after the update: no graph break in compiled mode */
            dbr_tensor *loss = dbr_cross_entropy(ctx, logits, y);
            if (dbr_backward(ctx, loss) || dbr_optim_step(ctx) ||
                dbr_copy_out(ctx, logits, z, (size_t)b * 10 * sizeof *z)) {
                rc = fail(ctx);
                dbr_step_end(ctx);
                break;
            }
            double l = dbr_item(ctx, loss);
            dbr_step_end(ctx);
            final_loss = l;
            loss_sum += l * (double)b;
            ok += count_correct(z, yb, b, 10);
            seen += b;
            bi++;
            steps++;
            double t = now_s() - ep_t0;
            bool last = bi == nb || (a.steps && steps >= a.steps);
            if (!a.json && (last || t - last_print > (tty ? 0.2 : 10.0))) {
                last_print = t;
                double rate = (double)seen / (t > 0 ? t : 1e-9);
                progress(tty, ep + 1, a.epochs, bi, nb, loss_sum / (double)seen,
                         (double)ok / (double)seen, rate, (double)(nb - bi) * (double)b / rate);
            }
            if (a.steps && steps >= a.steps) break;
        }
        if (tty) fputc('\n', stderr);
        if (a.steps && steps >= a.steps) break;
    }
    double train_s = now_s() - t0;
    int64_t peak = dbr_peak_bytes(ctx); /* of training; evaluation is not counted */
    dbr_stats st;
    dbr_stats_get(ctx, &st);
    dbr_step_mem train_mem = st.mem; /* evaluation's plans come later */
    /* under a budget, evaluation batches are no larger than training's */
    int64_t eval_bs = a.budget_s && a.batch < 250 ? a.batch : 250;
    if (rc) goto out; /* the failing step said why */
    double acc = evaluate(ctx, m->fn, &test, eval_bs, &rc);
    if (rc) {
        rc = fail(ctx);
        goto out;
    }
    if (a.save && dbr_save(ctx, a.save, true)) {
        rc = fail(ctx);
        goto out;
    }
    if (a.json) {
        printf("{\"model\": \"%s\", \"optimizer\": \"%s\", \"lr\": %g, \"batch\": %lld, "
               "\"epochs\": %lld, \"steps\": %lld, \"final_loss\": %.6f, \"test_accuracy\": %.4f, "
               "\"seconds\": %.3f, \"samples_per_s\": %.1f, \"peak_bytes\": %lld, \"seed\": %llu, "
               "\"mode\": \"%s\", \"cache_hits\": %lld, \"cache_misses\": %lld, "
               "\"compile_ms\": %.3f, \"graph_breaks\": %lld, \"arena_bytes\": %lld, "
               "\"arena_lower_bound\": %lld, \"budget_bytes\": %lld, \"step_peak_bytes\": %lld, "
               "\"params_bytes\": %lld, \"optim_state_bytes\": %lld, \"inputs_bytes\": %lld, "
               "\"outputs_bytes\": %lld, \"grads_bytes\": %lld, \"noremat_arena_bytes\": %lld, "
               "\"recomputed\": %d, \"recompute_pct\": %.2f, \"fused_kernels\": %lld, "
               "\"fused_ops\": %lld}\n",
               a.model, a.optimizer, a.lr, (long long)a.batch, (long long)epochs_run,
               (long long)steps, final_loss, acc, train_s,
               (double)steps * (double)a.batch / (train_s > 0 ? train_s : 1e-9), (long long)peak,
               (unsigned long long)a.seed, a.mode, (long long)st.cache_hits,
               (long long)st.cache_misses, st.compile_ms, (long long)st.graph_breaks,
               (long long)st.arena_bytes, (long long)st.arena_lower_bound,
               (long long)st.mem.budget, (long long)st.mem.peak, (long long)st.mem.params,
               (long long)st.mem.optim_state, (long long)st.mem.inputs, (long long)st.mem.outputs,
               (long long)st.mem.grads, (long long)st.mem.noremat_arena, st.mem.recomputed,
               st.mem.recompute_pct, (long long)st.fused_groups, (long long)st.fused_ops);
    } else {
        char pb[32];
        dbr_human_bytes(peak, pb, sizeof pb);
        printf("model %s: %lld steps in %.1f s, final loss %.4f, test accuracy %.2f%%, peak %s\n",
               a.model, (long long)steps, train_s, final_loss, 100 * acc, pb);
        if (cfg.mode == DBR_MODE_COMPILED) {
            char ab[32], lb[32];
            dbr_human_bytes(st.arena_bytes, ab, sizeof ab);
            dbr_human_bytes(st.arena_lower_bound, lb, sizeof lb);
            printf("compiled: plan cache %lld hits, %lld misses (%lld plans, %.2f ms compiling), "
                   "%lld graph breaks, arena %s (lower bound %s), %lld fused kernels holding "
                   "%lld ops\n",
                   (long long)st.cache_hits, (long long)st.cache_misses, (long long)st.plans,
                   st.compile_ms, (long long)st.graph_breaks, ab, lb, (long long)st.fused_groups,
                   (long long)st.fused_ops);
            const dbr_step_mem *mm = &train_mem;
            char b[7][32];
            dbr_human_bytes(mm->peak, b[0], sizeof b[0]);
            dbr_human_bytes(mm->params, b[1], sizeof b[1]);
            dbr_human_bytes(mm->grads, b[2], sizeof b[2]);
            dbr_human_bytes(mm->optim_state, b[3], sizeof b[3]);
            dbr_human_bytes(mm->inputs + mm->outputs, b[4], sizeof b[4]);
            dbr_human_bytes(mm->arena, b[5], sizeof b[5]);
            dbr_human_bytes(mm->noremat_arena, b[6], sizeof b[6]);
            printf("step memory %s: parameters %s, optimizer state %s, inputs and outputs %s, "
                   "arena %s (gradients %s of it; %s without recomputation)\n",
                   b[0], b[1], b[3], b[4], b[5], b[2], b[6]);
            if (mm->budget) {
                dbr_human_bytes(mm->budget, b[0], sizeof b[0]);
                dbr_human_bytes(peak, b[1], sizeof b[1]);
                printf("budget %s: forward ops recomputed: %d (+%.1f%% forward time, cost model; "
                       "planner %s), measured device peak %s\n",
                       b[0], mm->recomputed, mm->recompute_pct, mm->strategy ? mm->strategy : "none",
                       b[1]);
            }
        }
    }
out:
    free(xb);
    free(yb);
    free(z);
    dbr_loader_free(ld);
    dbr_dataset_free(&train);
    dbr_dataset_free(&test);
    dbr_ctx_free(ctx);
    return rc;
}

static void usage_dot(FILE *f) {
    fprintf(f,
            "usage: dbr dot [flags] -o FILE\n"
            "\n"
            "Records one training step of a zoo model in meta mode (shapes only, no data, so\n"
            "any batch size fits) and draws its graph: forward, backward and optimizer nodes\n"
            "in distinct colours, labels with op, shape, bytes and the model's file:line,\n"
            "parameters named.\n"
            "\n"
            "  --model NAME       %s (default mlp)\n"
            "  --batch B          batch size (default 64)\n"
            "  --forward-only     leave out the backward pass and the optimizer update\n"
            "  --layer PREFIX     only nodes reading parameters whose names start with PREFIX\n"
            "                     (plus their neighbours, faded)\n"
            "  --remat            plan recomputation of the forward pass and mark each forward\n"
            "                     value kept (thick green), recomputed (dashed orange) or freed\n"
            "                     after its last forward use (grey)\n"
            "  --budget SIZE|PCT  with --remat: the step's memory budget (parameters, inputs,\n"
            "                     optimizer state and arena), in bytes with an optional\n"
            "                     KiB/MiB/GiB suffix, or a percentage of the no-recompute peak\n"
            "                     (default: no budget)\n"
            "  --strategy S       with --remat: auto (default), none, chen, dp or ilp\n"
            "  --fused            simplify and fuse the graph as compiled mode does, and draw\n"
            "                     each fused kernel as a cluster named after the kernel\n"
            "                     (f_...), holding its source ops with their file:line\n"
            "                     (not with --remat)\n"
            "  -o, --output FILE  .svg, .png (rendered by Graphviz) or .dot (the DOT text)\n"
            "  -h, --help         this text\n",
            dbr_model_names());
}


/* Plans recomputation of g's forward nodes and fills mark (per value id) and
 * a title line; 0, or 1 with a message printed (no plan fits, or no plan). */
static int dot_remat(const dbr_graph *g, const char *model, dbr_remat_strategy strategy,
                     int64_t budget, double frac, uint8_t *mark, char *line, size_t linelen) {
    char err[1024] = "";
    dbr_cost_model cm = dbr_cost_model_cpu();
    dbr_rgraph rg;
    if (dbr_rgraph_from_ir(g, &cm, &rg, err, sizeof err)) {
        fprintf(stderr, "dbr dot: %s: %s\n", model, err);
        return 1;
    }
    int64_t fixed = 0;
    for (int32_t l = 0; l < rg.n_leaves; l++) fixed += rg.leaf_bytes[l];
    dbr_remat_plan vanilla = {0}, p = {0};
    int32_t n_map = 0;
    int32_t *map = NULL;
    int rc = 1;
    char a[32], b[32], c[32];
    if (dbr_remat_plan_build(&rg, DBR_REMAT_NONE, 0, false, &vanilla, err, sizeof err)) {
        fprintf(stderr, "dbr dot: %s: %s\n", model, err);
        goto out;
    }
    int64_t total_budget = frac > 0 ? (int64_t)(frac * (double)vanilla.total_peak) : budget;
    int64_t arena_budget = total_budget ? total_budget - fixed : 0;
    if (total_budget && arena_budget <= 0) {
        dbr_human_bytes(total_budget, a, sizeof a);
        dbr_human_bytes(fixed, b, sizeof b);
        fprintf(stderr, "dbr dot: %s: budget %s is below the parameters, inputs and optimizer "
                        "state alone (%s)\n", model, a, b);
        goto out;
    }
    if (dbr_remat_plan_build(&rg, strategy, arena_budget, false, &p, err, sizeof err)) {
        fprintf(stderr, "dbr dot: %s: %s\n", model, err);
        goto out;
    }
    if (!p.feasible) {
        dbr_human_bytes(total_budget, a, sizeof a);
        dbr_human_bytes(p.min_feasible_peak + fixed, b, sizeof b);
        fprintf(stderr, "dbr dot: %s: no schedule fits the budget %s; the smallest reachable "
                        "peak is %s\n", model, a, b);
        goto out;
    }
    map = dbr_rgraph_ir_values(g, &n_map);
    if (!map || n_map != rg.n || n_map != p.n) {
        fprintf(stderr, "dbr dot: %s: out of memory\n", model);
        goto out;
    }
    int32_t n_kept = 0, n_rec = 0, n_freed = 0;
    for (int32_t i = 0; i < n_map; i++) {
        /* segment plans never both keep and recompute a value; an explicit
         * (ilp) plan may free a kept value and recompute it later */
        uint8_t m = p.recomputed[i] ? DBR_DOT_MARK_RECOMPUTED
                    : p.keep[i]     ? DBR_DOT_MARK_KEPT
                                    : DBR_DOT_MARK_FREED;
        mark[map[i]] = m;
        n_kept += m == DBR_DOT_MARK_KEPT;
        n_rec += m == DBR_DOT_MARK_RECOMPUTED;
        n_freed += m == DBR_DOT_MARK_FREED;
    }
    dbr_human_bytes(p.total_peak, a, sizeof a);
    dbr_human_bytes(vanilla.total_peak, c, sizeof c);
    if (total_budget) {
        dbr_human_bytes(total_budget, b, sizeof b);
        if (frac > 0)
            snprintf(b + strlen(b), sizeof b - strlen(b), " (%g%%)", frac * 100);
    } else {
        snprintf(b, sizeof b, "none");
    }
    snprintf(line, linelen,
             "remat %s, budget %s: peak %s (no recompute %s), overhead %.1f%%; %d kept, %d "
             "recomputed, %d freed",
             dbr_remat_strategy_name(p.strategy), b, a, c,
             p.fwd_time > 0 ? 100 * p.overhead / p.fwd_time : 0.0, (int)n_kept, (int)n_rec,
             (int)n_freed);
    rc = 0;
out:
    free(map);
    dbr_remat_plan_free(&p);
    dbr_remat_plan_free(&vanilla);
    dbr_rgraph_free(&rg);
    return rc;
}

static int cmd_dot(int argc, char **argv) {
    const char *model = "mlp", *out = NULL;
    int64_t batch = 64, budget = 0;
    double frac = 0;
    bool remat = false, budget_given = false, strategy_given = false, fused = false;
    dbr_remat_strategy strategy = DBR_REMAT_AUTO;
    dbr_dot_opts o = {0};
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            usage_dot(stdout);
            return 0;
        }
        if (!strcmp(f, "--forward-only")) {
            o.forward_only = true;
            continue;
        }
        if (!strcmp(f, "--remat")) {
            remat = true;
            continue;
        }
        if (!strcmp(f, "--fused")) {
            fused = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "dbr dot: flag %s needs a value (see `dbr dot --help`)\n", f);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(f, "--model")) {
            if (!dbr_model_find(v)) {
                fprintf(stderr, "dbr dot: unknown model '%s' (known: %s)\n", v, dbr_model_names());
                return 2;
            }
            model = v;
        } else if (!strcmp(f, "--batch")) {
            if (parse_int(f, v, 1, &batch)) return 2;
        } else if (!strcmp(f, "--layer")) {
            o.layer = v;
        } else if (!strcmp(f, "--budget")) {
            if (dbr_parse_budget(v, &budget, &frac)) {
                fprintf(stderr, "dbr dot: --budget expects bytes (e.g. 3GiB, 512MiB, 1e9) or a "
                                "percentage (e.g. 40%%), got '%s'\n", v);
                return 2;
            }
            budget_given = true;
        } else if (!strcmp(f, "--strategy")) {
            int k = 0;
            while (k < DBR_REMAT_N_STRATEGIES &&
                   strcmp(v, dbr_remat_strategy_name((dbr_remat_strategy)k)))
                k++;
            if (k == DBR_REMAT_N_STRATEGIES) {
                fprintf(stderr, "dbr dot: unknown strategy '%s' (known: auto, none, chen, dp, "
                                "ilp)\n", v);
                return 2;
            }
            strategy = (dbr_remat_strategy)k;
            strategy_given = true;
        } else if (!strcmp(f, "-o") || !strcmp(f, "--output")) {
            out = v;
        } else {
            fprintf(stderr, "dbr dot: unknown flag '%s' (see `dbr dot --help`)\n", f);
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "dbr dot: -o FILE is required (see `dbr dot --help`)\n");
        return 2;
    }
    if (!remat && (budget_given || strategy_given)) {
        fprintf(stderr, "dbr dot: --budget and --strategy need --remat (see `dbr dot --help`)\n");
        return 2;
    }
    if (remat && fused) {
        fprintf(stderr, "dbr dot: --fused cannot be combined with --remat: recomputation is "
                        "planned on the unfused graph (see `dbr dot --help`)\n");
        return 2;
    }
    dbr_config cfg = dbr_config_default();
    cfg.mode = DBR_MODE_META;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    if (!ctx) return 1;
    dbr_step_begin(ctx);
    dbr_zoo_record_step(ctx, dbr_model_find(model), batch, o.forward_only);
    const dbr_graph *g = dbr_error(ctx) ? NULL : dbr_graph_of(ctx);
    dbr_graph *fg = NULL;
    int32_t kernels = 0;
    int rc = 0;
    if (!g) {
        rc = fail(ctx);
    } else {
        char title[512], line[320] = "", err[512];
        uint8_t *mark = NULL;
        if (fused) {
            int32_t recorded = g->n_nodes;
            if (dbr_dot_fuse(g, &fg, &kernels, err, sizeof err)) {
                fprintf(stderr, "dbr dot: %s: fusing: %s\n", model, err);
                rc = 1;
            } else {
                g = fg;
                o.fused_clusters = true;
                snprintf(line, sizeof line, "fused: %d kernels (%d nodes recorded)",
                         (int)kernels, (int)recorded);
            }
        }
        if (remat) {
            mark = calloc((size_t)g->n_vals + 1, 1);
            rc = !mark ? (fprintf(stderr, "dbr dot: out of memory\n"), 1)
                       : dot_remat(g, model, strategy, budget, frac, mark, line, sizeof line);
        }
        if (!rc) {
            snprintf(title, sizeof title, "%s, batch %lld: %d nodes%s%s", model, (long long)batch,
                     g->n_nodes, line[0] ? "\n" : "", line);
            o.title = title;
            o.remat_mark = mark;
            if (dbr_dot_write(g, &o, out, err, sizeof err)) {
                fprintf(stderr, "dbr dot: %s\n", err);
                rc = 1;
            } else {
                printf("wrote %s (%d nodes)\n", out, g->n_nodes);
                if (line[0]) printf("%s\n", line);
            }
        }
        free(mark);
    }
    dbr_graph_free(fg);
    dbr_step_end(ctx);
    dbr_ctx_free(ctx);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage_main(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("dbr %s\n", DBR_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "train")) return cmd_train(argc - 2, argv + 2);
    if (!strcmp(cmd, "dot")) return cmd_dot(argc - 2, argv + 2);
    if (!strcmp(cmd, "plan")) return dbr_cmd_plan(argc - 2, argv + 2);
    if (!strcmp(cmd, "prof")) return dbr_cmd_prof(argc - 2, argv + 2);
    fprintf(stderr, "dbr: unknown command '%s'\n", cmd);
    usage_main(stderr);
    return 2;
}
