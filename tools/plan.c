/* plan.c: `dbr plan`: the recomputation planners on a zoo model recorded in
 * meta mode (any size: no data) or on a graph file, against a memory
 * budget; a table of strategies, or one JSON object. */
#include "tools/plan.h"

#include "dbr.h"
#include "ir/graph.h"
#include "models.h"
#include "passes/graph_json.h"
#include "passes/remat.h"
#include "passes/remat_ir.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: dbr plan (--model NAME [--batch B] | --graph FILE.json) [--budget SIZE|PCT]\n"
            "                [--strategy auto|none|chen|dp|ilp] [--json]\n"
            "\n"
            "Plans which activations a training step keeps and which it recomputes so the\n"
            "step fits a memory budget. A zoo model is recorded in meta mode (shapes only, so\n"
            "models far larger than this machine plan fine); a graph file is the format of\n"
            "docs/graph-format.md.\n"
            "\n"
            "  --model NAME       %s\n"
            "  --batch B          batch size (default 32)\n"
            "  --graph FILE       plan a forward graph made elsewhere\n"
            "  --budget SIZE|PCT  the step's peak: bytes with an optional KiB/MiB/GiB suffix,\n"
            "                     or a percentage of the no-recompute peak (default: none).\n"
            "                     The peak counts activations (the arena), parameters and\n"
            "                     inputs, and the gradients of inputs.\n"
            "  --strategy S       one strategy; default: a table of all, then auto's choice\n"
            "  --json             one JSON object for the chosen plan\n"
            "  -h, --help         this text\n",
            dbr_model_names());
}

/* "3GiB", "512MiB", "1e9", "40%": bytes or a fraction of the vanilla peak. */
static int parse_budget(const char *s, int64_t *bytes, double *frac) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0)) return -1;
    *bytes = 0;
    *frac = 0;
    if (!strcmp(end, "%")) {
        *frac = v / 100;
        return v <= 1000 ? 0 : -1;
    }
    double mult = !*end || !strcmp(end, "B")   ? 1
                  : !strcmp(end, "KiB")         ? 1024.0
                  : !strcmp(end, "MiB")         ? 1048576.0
                  : !strcmp(end, "GiB")         ? 1073741824.0
                  : !strcmp(end, "TiB")         ? 1099511627776.0
                                                : -1;
    if (mult < 0 || v * mult > 9e18) return -1;
    *bytes = (int64_t)(v * mult);
    return 0;
}

static void human(int64_t b, char *buf, size_t n) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double x = (double)b;
    int k = 0;
    while (x >= 1024 && k < 4) x /= 1024, k++;
    snprintf(buf, n, "%.2f %s", x, u[k]);
}

/* Records one forward pass and loss of a zoo model in meta mode. */
static int model_graph(const char *name, int64_t batch, dbr_rgraph *rg, char *err, size_t n) {
    const dbr_model_info *m = dbr_model_find(name);
    dbr_config cfg = dbr_config_default();
    cfg.mode = DBR_MODE_META;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    if (!ctx) return snprintf(err, n, "out of memory"), -1;
    int64_t shape[4] = {batch, 784};
    int rank = m->input_rank ? m->input_rank + 1 : 2;
    for (int i = 0; i < m->input_rank; i++) shape[1 + i] = m->input_dims[i];
    dbr_step_begin(ctx);
    dbr_tensor *x = dbr_input(ctx, m->input_dtype, rank, shape, NULL, false);
    dbr_tensor *z = m->fn(ctx, x);
    const struct dbr_graph *g = z ? dbr_graph_of(ctx) : NULL;
    dbr_cost_model cm = dbr_cost_model_cpu();
    int rc = -1;
    if (!g)
        snprintf(err, n, "%s", dbr_error(ctx) ? dbr_error(ctx) : "recording failed");
    else
        rc = dbr_rgraph_from_ir(g, &cm, rg, err, n);
    dbr_step_end(ctx);
    dbr_ctx_free(ctx);
    return rc;
}

static int64_t fixed_bytes(const dbr_rgraph *g) {
    int64_t s = 0;
    for (int32_t l = 0; l < g->n_leaves; l++) s += g->leaf_bytes[l];
    return s;
}

static void json_ids(FILE *f, const dbr_rgraph *g, const bool *pick) {
    fputc('[', f);
    bool first = true;
    for (int32_t i = 0; pick && i < g->n; i++) {
        if (!pick[i]) continue;
        fprintf(f, "%s\"", first ? "" : ", ");
        for (const char *c = g->id[i]; *c; c++) {
            if (*c == '"' || *c == '\\') fputc('\\', f);
            if ((unsigned char)*c >= 0x20) fputc(*c, f);
        }
        fputc('"', f);
        first = false;
    }
    fputc(']', f);
}

int dbr_cmd_plan(int argc, char **argv) {
    const char *model = NULL, *graph = NULL, *budget_s = NULL, *strategy = NULL;
    int64_t batch = 32;
    bool json = false;
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(f, "--json")) {
            json = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "dbr plan: flag %s needs a value (see `dbr plan --help`)\n", f);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(f, "--model")) model = v;
        else if (!strcmp(f, "--graph")) graph = v;
        else if (!strcmp(f, "--budget")) budget_s = v;
        else if (!strcmp(f, "--strategy")) strategy = v;
        else if (!strcmp(f, "--batch")) {
            char *end;
            batch = strtoll(v, &end, 10);
            if (*end || batch < 1) {
                fprintf(stderr, "dbr plan: --batch expects an integer >= 1, got '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "dbr plan: unknown flag '%s' (see `dbr plan --help`)\n", f);
            return 2;
        }
    }
    if (!model == !graph) {
        fprintf(stderr, "dbr plan: give exactly one of --model and --graph (see `dbr plan --help`)\n");
        return 2;
    }
    if (model && !dbr_model_find(model)) {
        fprintf(stderr, "dbr plan: unknown model '%s' (known: %s)\n", model, dbr_model_names());
        return 2;
    }
    int chosen = -1;
    for (int s = 0; strategy && s < DBR_REMAT_N_STRATEGIES; s++)
        if (!strcmp(strategy, dbr_remat_strategy_name((dbr_remat_strategy)s))) chosen = s;
    if (strategy && chosen < 0) {
        fprintf(stderr, "dbr plan: unknown strategy '%s' (known: auto, none, chen, dp, ilp)\n",
                strategy);
        return 2;
    }
    int64_t budget = 0;
    double frac = 0;
    if (budget_s && parse_budget(budget_s, &budget, &frac)) {
        fprintf(stderr, "dbr plan: --budget expects bytes (e.g. 3GiB, 512MiB, 1e9) or a "
                        "percentage (e.g. 40%%), got '%s'\n", budget_s);
        return 2;
    }

    char err[1024] = "";
    dbr_rgraph g;
    int rc = graph ? dbr_rgraph_load_json(graph, &g, err, sizeof err)
                   : model_graph(model, batch, &g, err, sizeof err);
    if (rc) {
        fprintf(stderr, "dbr plan: %s\n", err);
        return 1;
    }
    const char *name = graph ? graph : model;
    int64_t fixed = fixed_bytes(&g);
    dbr_remat_plan vanilla;
    if (dbr_remat_plan_build(&g, DBR_REMAT_NONE, 0, false, &vanilla, err, sizeof err)) {
        fprintf(stderr, "dbr plan: %s\n", err);
        dbr_rgraph_free(&g);
        return 1;
    }
    int64_t vpeak = vanilla.total_peak;
    int64_t total_budget = frac > 0 ? (int64_t)(frac * (double)vpeak) : budget;
    /* the planners budget the arena: what the leaves leave of the step's budget */
    int64_t arena_budget = total_budget ? total_budget - fixed : 0;
    if (total_budget && arena_budget <= 0) {
        char a[32], b[32];
        human(total_budget, a, sizeof a);
        human(fixed, b, sizeof b);
        fprintf(stderr, "dbr plan: %s: budget %s is below the parameters and inputs alone (%s)\n",
                name, a, b);
        dbr_remat_plan_free(&vanilla);
        dbr_rgraph_free(&g);
        return 1;
    }
    if (!json) {
        char a[32], b[32];
        human(vpeak, a, sizeof a);
        human(fixed, b, sizeof b);
        printf("%s: %d forward nodes; no-recompute peak %s (parameters and inputs %s)\n", name,
               g.n, a, b);
        if (total_budget) {
            human(total_budget, a, sizeof a);
            printf("budget %s\n", a);
        }
        printf("%-6s %12s %12s %10s %11s %9s  %s\n", "strategy", "peak", "arena", "overhead",
               "recomputed", "plan ms", "fits");
    }
    int first = chosen >= 0 ? chosen : 0, last = chosen >= 0 ? chosen : DBR_REMAT_N_STRATEGIES - 1;
    dbr_remat_plan best = {0};
    bool have_best = false;
    int64_t min_feasible = INT64_MAX;
    for (int s = first; s <= last; s++) {
        dbr_remat_plan p;
        char perr[512] = "";
        if (dbr_remat_plan_build(&g, (dbr_remat_strategy)s, arena_budget, false, &p, perr,
                                 sizeof perr)) {
            if (!json)
                printf("%-6s %s\n", dbr_remat_strategy_name((dbr_remat_strategy)s), perr);
            continue;
        }
        if (p.min_feasible_peak > 0 && p.min_feasible_peak < min_feasible)
            min_feasible = p.min_feasible_peak;
        if (!json) {
            char a[32], b[32];
            int32_t nrec = 0;
            for (int32_t i = 0; i < g.n; i++) nrec += p.recomputed && p.recomputed[i];
            human(p.total_peak, a, sizeof a);
            human(p.peak, b, sizeof b);
            printf("%-6s %12s %12s %9.1f%% %11d %9.1f  %s\n",
                   dbr_remat_strategy_name((dbr_remat_strategy)s), a, b,
                   p.fwd_time > 0 ? 100 * p.overhead / p.fwd_time : 0.0, nrec, p.plan_ms,
                   p.feasible ? "yes" : "no");
        }
        bool take = s == (chosen >= 0 ? chosen : DBR_REMAT_AUTO);
        if (take) {
            if (have_best) dbr_remat_plan_free(&best);
            best = p;
            have_best = true;
        } else {
            dbr_remat_plan_free(&p);
        }
    }
    rc = 0;
    if (!have_best) {
        fprintf(stderr, "dbr plan: %s: no plan\n", name);
        rc = 1;
    } else if (!best.feasible) {
        char a[32], b[32];
        human(total_budget, a, sizeof a);
        human(min_feasible == INT64_MAX ? best.min_feasible_peak + fixed : min_feasible + fixed, b,
              sizeof b);
        fprintf(stderr, "dbr plan: %s: no schedule fits the budget %s; the smallest reachable "
                        "peak is %s\n", name, a, b);
        rc = 1;
    }
    if (json && have_best) {
        printf("{\"name\": \"%s\", \"strategy\": \"%s\", \"budget_bytes\": %lld, "
               "\"vanilla_peak_bytes\": %lld, \"peak_bytes\": %lld, \"arena_peak_bytes\": %lld, "
               "\"min_feasible_peak_bytes\": %lld, \"overhead_pct\": %.3f, \"plan_ms\": %.3f, "
               "\"feasible\": %s, \"kept\": ",
               name, dbr_remat_strategy_name(best.strategy), (long long)total_budget,
               (long long)vpeak, (long long)best.total_peak, (long long)best.peak,
               (long long)((min_feasible == INT64_MAX ? best.peak : min_feasible) + fixed),
               best.fwd_time > 0 ? 100 * best.overhead / best.fwd_time : 0.0, best.plan_ms,
               best.feasible ? "true" : "false");
        json_ids(stdout, &g, best.keep);
        printf(", \"recomputed\": ");
        json_ids(stdout, &g, best.recomputed);
        printf("}\n");
    }
    if (have_best) dbr_remat_plan_free(&best);
    dbr_remat_plan_free(&vanilla);
    dbr_rgraph_free(&g);
    return rc;
}
