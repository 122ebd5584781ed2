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
#include <unistd.h>

enum { SWEEP_POINTS = 14, SWEEP_POINTS_LARGE = 6, SWEEP_LARGE_NODES = 150 };

static void usage(FILE *f) {
    fprintf(f,
            "usage: dbr plan (--model NAME [--batch B] | --graph FILE.json) [--budget SIZE|PCT|min]\n"
            "                [--strategy auto|none|chen|dp|ilp] [--json] [--sweep [-o PLOT.svg]]\n"
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
            "                     inputs, and the gradients of inputs. 'min': the least\n"
            "                     memory each strategy reaches, whatever it costs.\n"
            "  --strategy S       one strategy; default: a table of all, then auto's choice\n"
            "  --json             one JSON object for the chosen plan (with --sweep: the\n"
            "                     sweep's points)\n"
            "  --sweep            plan across budgets, from the smallest reachable peak up\n"
            "                     to the no-recompute peak (%d budgets; %d for graphs over\n"
            "                     %d nodes, where the DP takes up to tens of seconds a budget),\n"
            "                     with each strategy (--strategy: only that one; ilp only\n"
            "                     where the graph is small enough); a table of peak and\n"
            "                     overhead per budget, '-' where a strategy does not fit\n"
            "  -o PLOT.svg        with --sweep: draw each strategy's peak-vs-overhead curve\n"
            "  -h, --help         this text\n",
            dbr_model_names(), SWEEP_POINTS, SWEEP_POINTS_LARGE, SWEEP_LARGE_NODES);
}

int dbr_parse_budget(const char *s, int64_t *bytes, double *frac) {
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

/* Records one forward pass of a zoo model in meta mode. */
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

int dbr_recompute_parse(const char *name, dbr_recompute *out) {
    static const struct { const char *name; dbr_recompute r; } known[] = {
        {"auto", DBR_RECOMPUTE_AUTO}, {"none", DBR_RECOMPUTE_NONE}, {"chen", DBR_RECOMPUTE_CHEN},
        {"dp", DBR_RECOMPUTE_DP},     {"ilp", DBR_RECOMPUTE_ILP}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(name, known[i].name)) return *out = known[i].r, 0;
    return -1;
}

/* The model's whole training step (backward and optimizer included) as
 * compiled mode would plan it under the budget: memplan's arena, not the
 * planner's estimate. */
static int step_plan(const char *name, int64_t batch, int64_t budget, double frac, int strategy,
                     dbr_step_mem *mem, char *err, size_t n) {
    dbr_config cfg = dbr_config_default();
    cfg.mode = DBR_MODE_META;
    cfg.memory_budget = budget;
    cfg.memory_budget_frac = frac;
    if (strategy < 0 ||
        dbr_recompute_parse(dbr_remat_strategy_name((dbr_remat_strategy)strategy), &cfg.recompute))
        cfg.recompute = DBR_RECOMPUTE_AUTO;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    if (!ctx) return snprintf(err, n, "out of memory"), -1;
    dbr_step_begin(ctx);
    int rc = dbr_zoo_record_step(ctx, dbr_model_find(name), batch, false);
    if (rc == 0) rc = dbr_plan_step(ctx, mem);
    if (rc) snprintf(err, n, "%s", dbr_error(ctx) ? dbr_error(ctx) : "recording failed");
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

/* ---- --sweep ---------------------------------------------------------------- */

/* One strategy's plan at one budget of a sweep (bytes are the step's: arena
 * plus leaves, as in the table). */
typedef struct sweep_cell {
    bool have;     /* planned (the strategy was available) */
    bool feasible;
    int64_t peak;  /* total peak */
    int64_t arena;
    double pct;    /* extra forward time, % of the forward pass */
    double plan_ms;
} sweep_cell;

typedef struct sweep {
    const char *name;
    int n_budgets;
    int64_t budget[SWEEP_POINTS]; /* total bytes */
    bool avail[DBR_REMAT_N_STRATEGIES];
    char why[DBR_REMAT_N_STRATEGIES][160]; /* why a strategy is not available */
    sweep_cell cell[SWEEP_POINTS][DBR_REMAT_N_STRATEGIES];
    int64_t vpeak, min_peak;
} sweep;

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void xml_str(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if ((unsigned char)*s >= 0x20) fputc(*s, f);
        }
    }
}

/* A tick step of 1, 2 or 5 times a power of ten giving about n intervals. */
static double nice_step(double range, int n) {
    if (!(range > 0)) return 1;
    double raw = range / n, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

/* Tick label: as few decimals as the step needs. */
static void tick_label(double v, double step, char *buf, size_t n) {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 6) dec = 6;
    snprintf(buf, n, "%.*f", dec, fabs(v) < step * 1e-6 ? 0.0 : v);
}

static const char *const sweep_colour[DBR_REMAT_N_STRATEGIES] = {
    [DBR_REMAT_NONE] = "#7f7f7f", [DBR_REMAT_CHEN] = "#1f77b4", [DBR_REMAT_DP] = "#d62728",
    [DBR_REMAT_ILP] = "#2ca02c", [DBR_REMAT_AUTO] = "#9467bd"};

/* The peak-vs-overhead plot: one polyline and markers per strategy (its
 * feasible points, by peak), a legend, ticks in MiB or GiB. */
static int sweep_svg(FILE *f, const sweep *sw) {
    enum { W = 820, H = 520, L = 90, R = 150, T = 60, B = 70 };
    const double pw = W - L - R, ph = H - T - B;
    double xmin = INFINITY, xmax = -INFINITY, ymax = 0;
    for (int b = 0; b < sw->n_budgets; b++)
        for (int s = 0; s < DBR_REMAT_N_STRATEGIES; s++) {
            const sweep_cell *c = &sw->cell[b][s];
            if (!c->have || !c->feasible) continue;
            xmin = fmin(xmin, (double)c->peak);
            xmax = fmax(xmax, (double)c->peak);
            ymax = fmax(ymax, c->pct);
        }
    if (!(xmin <= xmax)) xmin = xmax = (double)sw->vpeak;
    const char *unit = "KiB";
    double div = 1024;
    if (xmax >= 1073741824.0) unit = "GiB", div = 1073741824.0;
    else if (xmax >= 1048576.0) unit = "MiB", div = 1048576.0;
    double x0 = xmin / div, x1 = xmax / div;
    if (x1 - x0 < 1e-9 * fmax(1, x1)) x0 -= fmax(x0 * 0.05, 0.5), x1 += fmax(x1 * 0.05, 0.5);
    double xstep = nice_step(x1 - x0, 6);
    x0 = floor(x0 / xstep) * xstep;
    x1 = ceil(x1 / xstep) * xstep;
    if (x0 < 0) x0 = 0;
    double ystep = nice_step(ymax > 0 ? ymax : 1, 5);
    double y1 = ceil((ymax > 0 ? ymax * 1.05 : 1) / ystep) * ystep;
#define PX(v) (L + ((v) / div - x0) / (x1 - x0) * pw)
#define PY(v) (T + ph - (v) / y1 * ph)
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"Helvetica, Arial, sans-serif\" "
               "font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H, W, H);
    fprintf(f, "<text x=\"%g\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" "
               "font-weight=\"bold\">Recomputation: peak memory vs extra compute, ",
            L + pw / 2);
    xml_str(f, sw->name);
    fputs("</text>\n", f);
    /* grid and ticks */
    fputs("<g stroke=\"#e0e0e0\" stroke-width=\"1\">\n", f);
    for (double v = x0; v <= x1 + xstep * 1e-6; v += xstep)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\"/>\n",
                L + (v - x0) / (x1 - x0) * pw, T, L + (v - x0) / (x1 - x0) * pw, T + ph);
    for (double v = 0; v <= y1 + ystep * 1e-6; v += ystep)
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", L,
                T + ph - v / y1 * ph, L + pw, T + ph - v / y1 * ph);
    fputs("</g>\n<g text-anchor=\"middle\">\n", f);
    for (double v = x0; v <= x1 + xstep * 1e-6; v += xstep) {
        char lab[32];
        tick_label(v, xstep, lab, sizeof lab);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", L + (v - x0) / (x1 - x0) * pw,
                T + ph + 18, lab);
    }
    fputs("</g>\n<g text-anchor=\"end\">\n", f);
    for (double v = 0; v <= y1 + ystep * 1e-6; v += ystep) {
        char lab[32];
        tick_label(v, ystep, lab, sizeof lab);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\">%s</text>\n", L - 8, T + ph - v / y1 * ph + 4,
                lab);
    }
    fputs("</g>\n", f);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%g\" height=\"%g\" fill=\"none\" "
               "stroke=\"black\"/>\n", L, T, pw, ph);
    fprintf(f, "<text x=\"%g\" y=\"%d\" text-anchor=\"middle\" font-size=\"13\">peak memory of "
               "the step (%s)</text>\n", L + pw / 2, H - 22, unit);
    fprintf(f, "<text x=\"22\" y=\"%g\" text-anchor=\"middle\" font-size=\"13\" "
               "transform=\"rotate(-90 22 %g)\">extra forward time (%% of the forward "
               "pass)</text>\n", T + ph / 2, T + ph / 2);
    /* curves */
    int legend = 0;
    for (int s = 0; s < DBR_REMAT_N_STRATEGIES; s++) {
        if (!sw->avail[s]) continue;
        const char *nm = dbr_remat_strategy_name((dbr_remat_strategy)s);
        int idx[SWEEP_POINTS], k = 0;
        for (int b = 0; b < sw->n_budgets; b++)
            if (sw->cell[b][s].have && sw->cell[b][s].feasible) idx[k++] = b;
        for (int i = 1; i < k; i++) /* by peak, then overhead */
            for (int j = i; j > 0; j--) {
                const sweep_cell *a = &sw->cell[idx[j - 1]][s], *c = &sw->cell[idx[j]][s];
                if (a->peak < c->peak || (a->peak == c->peak && a->pct >= c->pct)) break;
                int t = idx[j];
                idx[j] = idx[j - 1];
                idx[j - 1] = t;
            }
        const char *col = sweep_colour[s];
        fprintf(f, "<g data-strategy=\"%s\">\n<polyline data-strategy=\"%s\" fill=\"none\" "
                   "stroke=\"%s\" stroke-width=\"2\" points=\"", nm, nm, col);
        for (int i = 0; i < k; i++) {
            const sweep_cell *c = &sw->cell[idx[i]][s];
            fprintf(f, "%s%.1f,%.1f", i ? " " : "", PX((double)c->peak), PY(c->pct));
        }
        fputs("\"/>\n", f);
        for (int i = 0; i < k; i++) {
            const sweep_cell *c = &sw->cell[idx[i]][s];
            char a[32], bb[32];
            dbr_human_bytes(c->peak, a, sizeof a);
            dbr_human_bytes(sw->budget[idx[i]], bb, sizeof bb);
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>%s: peak "
                       "%s, +%.1f%% (budget %s)</title></circle>\n",
                    PX((double)c->peak), PY(c->pct), col, nm, a, c->pct, bb);
        }
        fputs("</g>\n", f);
        double ly = T + 10 + 22 * legend++;
        fprintf(f, "<g class=\"legend\"><line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" "
                   "stroke=\"%s\" stroke-width=\"2\"/><circle cx=\"%g\" cy=\"%g\" r=\"3.5\" "
                   "fill=\"%s\"/><text x=\"%g\" y=\"%g\">%s%s</text></g>\n",
                L + pw + 16, ly, L + pw + 46, ly, col, L + pw + 31, ly, col, L + pw + 54, ly + 4,
                nm, k ? "" : " (no fit)");
    }
#undef PX
#undef PY
    fputs("</svg>\n", f);
    return ferror(f) ? -1 : 0;
}

static void sweep_table(const sweep *sw) {
    char a[32];
    dbr_human_bytes(sw->vpeak, a, sizeof a);
    printf("sweep over %d budgets:", sw->n_budgets);
    for (int s = 0; s < DBR_REMAT_N_STRATEGIES; s++)
        if (!sw->avail[s] && sw->why[s][0])
            printf(" %s not available (%s);", dbr_remat_strategy_name((dbr_remat_strategy)s),
                   sw->why[s]);
    printf("\n%-12s", "budget");
    for (int s = 0; s < DBR_REMAT_N_STRATEGIES; s++) {
        char h[32];
        snprintf(h, sizeof h, "%s peak", dbr_remat_strategy_name((dbr_remat_strategy)s));
        if (sw->avail[s]) printf("  %12s %8s", h, "overhead");
    }
    printf("\n");
    for (int b = 0; b < sw->n_budgets; b++) {
        dbr_human_bytes(sw->budget[b], a, sizeof a);
        printf("%-12s", a);
        for (int s = 0; s < DBR_REMAT_N_STRATEGIES; s++) {
            const sweep_cell *c = &sw->cell[b][s];
            if (!sw->avail[s]) continue;
            if (!c->have || !c->feasible) {
                printf("  %12s %8s", "-", "-");
                continue;
            }
            dbr_human_bytes(c->peak, a, sizeof a);
            printf("  %12s %7.1f%%", a, c->pct);
        }
        printf("\n");
    }
}

static void sweep_json(const sweep *sw) {
    printf("{\"name\": ");
    json_str(stdout, sw->name);
    printf(", \"vanilla_peak_bytes\": %lld, \"min_feasible_peak_bytes\": %lld, \"strategies\": [",
           (long long)sw->vpeak, (long long)sw->min_peak);
    bool first = true;
    for (int s = 0; s < DBR_REMAT_N_STRATEGIES; s++)
        if (sw->avail[s]) {
            printf("%s\"%s\"", first ? "" : ", ", dbr_remat_strategy_name((dbr_remat_strategy)s));
            first = false;
        }
    printf("], \"sweep\": [");
    first = true;
    for (int b = 0; b < sw->n_budgets; b++)
        for (int s = 0; s < DBR_REMAT_N_STRATEGIES; s++) {
            const sweep_cell *c = &sw->cell[b][s];
            if (!c->have) continue;
            printf("%s\n  {\"budget_bytes\": %lld, \"strategy\": \"%s\", \"peak_bytes\": %lld, "
                   "\"arena_peak_bytes\": %lld, \"overhead_pct\": %.3f, \"plan_ms\": %.3f, "
                   "\"feasible\": %s}",
                   first ? "" : ",", (long long)sw->budget[b],
                   dbr_remat_strategy_name((dbr_remat_strategy)s), (long long)c->peak,
                   (long long)c->arena, c->pct, c->plan_ms, c->feasible ? "true" : "false");
            first = false;
        }
    printf("\n]}\n");
}

/* Plans g at budgets from the least reachable arena peak to the vanilla one
 * with each strategy (or only `only`), then prints and draws. svg: the open
 * temporary file, or NULL. */
static int plan_sweep(const dbr_rgraph *g, const char *name, int64_t fixed,
                      const dbr_remat_plan *vanilla, int only, bool json, FILE *svg) {
    sweep *sw = calloc(1, sizeof *sw);
    if (!sw) return fprintf(stderr, "dbr plan: out of memory\n"), 1;
    sw->name = name;
    sw->vpeak = vanilla->total_peak;
    /* the low end: the least arena peak the memory-centric planners reach */
    int64_t lo = vanilla->peak, hi = vanilla->peak;
    for (int s = DBR_REMAT_CHEN; s <= DBR_REMAT_DP; s++) {
        dbr_remat_plan p;
        char perr[256];
        if (dbr_remat_plan_build(g, (dbr_remat_strategy)s, 0, true, &p, perr, sizeof perr))
            continue;
        if (p.peak > 0 && p.peak < lo) lo = p.peak;
        if (p.min_feasible_peak > 0 && p.min_feasible_peak < lo) lo = p.min_feasible_peak;
        dbr_remat_plan_free(&p);
    }
    int n = g->n > SWEEP_LARGE_NODES ? SWEEP_POINTS_LARGE : SWEEP_POINTS;
    if (hi <= lo) n = 1;
    int64_t arena_budget[SWEEP_POINTS];
    sw->n_budgets = 0;
    for (int k = 0; k < n; k++) {
        int64_t a = n == 1 ? hi : k == n - 1 ? hi : lo + (int64_t)((double)(hi - lo) * k / (n - 1));
        if (sw->n_budgets && a <= arena_budget[sw->n_budgets - 1]) continue;
        arena_budget[sw->n_budgets] = a;
        sw->budget[sw->n_budgets++] = a + fixed;
    }
    sw->min_peak = lo + fixed;
    for (int s = 0; s < DBR_REMAT_N_STRATEGIES; s++) {
        if (only >= 0 ? s != only : s == DBR_REMAT_AUTO) continue;
        sw->avail[s] = true;
        for (int b = 0; b < sw->n_budgets && sw->avail[s]; b++) {
            dbr_remat_plan p;
            if (dbr_remat_plan_build(g, (dbr_remat_strategy)s, arena_budget[b], false, &p,
                                     sw->why[s], sizeof sw->why[s])) {
                sw->avail[s] = false; /* e.g. ilp on a graph too large for it */
                for (int c = 0; c < b; c++) sw->cell[c][s].have = false;
                break;
            }
            sw->cell[b][s] = (sweep_cell){
                .have = true,
                .feasible = p.feasible && p.peak <= arena_budget[b],
                .peak = p.total_peak,
                .arena = p.peak,
                .pct = p.fwd_time > 0 ? 100 * p.overhead / p.fwd_time : 0.0,
                .plan_ms = p.plan_ms,
            };
            dbr_remat_plan_free(&p);
        }
    }
    bool any = false;
    for (int s = 0; s < DBR_REMAT_N_STRATEGIES; s++) {
        any |= sw->avail[s];
        for (int b = 0; b < sw->n_budgets; b++) /* ilp may go below the dp's least */
            if (sw->cell[b][s].have && sw->cell[b][s].feasible && sw->cell[b][s].peak < sw->min_peak)
                sw->min_peak = sw->cell[b][s].peak;
    }
    int rc = 0;
    if (!any) {
        int s = only >= 0 ? only : DBR_REMAT_DP;
        fprintf(stderr, "dbr plan: %s: %s\n", name, sw->why[s][0] ? sw->why[s] : "no plan");
        rc = 1;
    } else {
        if (json) {
            sweep_json(sw);
        } else {
            char a[32], b[32];
            dbr_human_bytes(sw->vpeak, a, sizeof a);
            dbr_human_bytes(fixed, b, sizeof b);
            printf("%s: %d forward nodes; no-recompute peak %s (parameters and inputs %s)\n",
                   name, g->n, a, b);
            dbr_human_bytes(sw->min_peak, a, sizeof a);
            printf("smallest reachable peak %s", a);
            if (g->n > SWEEP_LARGE_NODES)
                printf(" (over %d nodes: the sweep is capped at %d budgets)", SWEEP_LARGE_NODES,
                       SWEEP_POINTS_LARGE);
            printf("\n");
            sweep_table(sw);
        }
        if (svg && sweep_svg(svg, sw)) rc = 1;
    }
    free(sw);
    return rc;
}

int dbr_cmd_plan(int argc, char **argv) {
    const char *model = NULL, *graph = NULL, *budget_s = NULL, *strategy = NULL, *out = NULL;
    int64_t batch = 32;
    bool json = false, sweep_mode = false;
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
        if (!strcmp(f, "--sweep")) {
            sweep_mode = true;
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
        else if (!strcmp(f, "-o")) out = v;
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
    if (out && !sweep_mode) {
        fprintf(stderr, "dbr plan: -o draws a sweep: give --sweep too (see `dbr plan --help`)\n");
        return 2;
    }
    if (sweep_mode && budget_s) {
        fprintf(stderr, "dbr plan: --sweep chooses its own budgets: drop --budget\n");
        return 2;
    }
    int64_t budget = 0;
    double frac = 0;
    bool least = budget_s && !strcmp(budget_s, "min"); /* the least memory, whatever it costs */
    if (budget_s && !least && dbr_parse_budget(budget_s, &budget, &frac)) {
        fprintf(stderr, "dbr plan: --budget expects bytes (e.g. 3GiB, 512MiB, 1e9) or a "
                        "percentage (e.g. 40%%), got '%s'\n", budget_s);
        return 2;
    }

    /* the plot goes to PLOT.svg.tmp.<pid>, renamed when complete */
    FILE *svg = NULL;
    char tmp[4096] = "";
    if (out) {
        size_t len = strlen(out);
        if (len < 5 || strcmp(out + len - 4, ".svg")) {
            fprintf(stderr, "dbr plan: %s: the plot is SVG: name it FILE.svg\n", out);
            return 1;
        }
        if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid()) >= (int)sizeof tmp) {
            fprintf(stderr, "dbr plan: %s: path too long\n", out);
            return 1;
        }
        svg = fopen(tmp, "w");
        if (!svg) {
            fprintf(stderr, "dbr plan: cannot write %s: %s\n", out, strerror(errno));
            return 1;
        }
    }

    char err[1024] = "";
    dbr_rgraph g;
    int rc = graph ? dbr_rgraph_load_json(graph, &g, err, sizeof err)
                   : model_graph(model, batch, &g, err, sizeof err);
    if (rc) {
        fprintf(stderr, "dbr plan: %s\n", err);
        if (svg) fclose(svg), remove(tmp);
        return 1;
    }
    const char *name = graph ? graph : model;
    int64_t fixed = fixed_bytes(&g);
    dbr_remat_plan vanilla;
    if (dbr_remat_plan_build(&g, DBR_REMAT_NONE, 0, false, &vanilla, err, sizeof err)) {
        fprintf(stderr, "dbr plan: %s\n", err);
        dbr_rgraph_free(&g);
        if (svg) fclose(svg), remove(tmp);
        return 1;
    }
    if (sweep_mode) {
        rc = plan_sweep(&g, name, fixed, &vanilla, chosen, json, svg);
        if (svg) {
            bool closed = fclose(svg) == 0;
            if (!rc && !closed) {
                fprintf(stderr, "dbr plan: cannot write %s: %s\n", out, strerror(errno));
                rc = 1;
            } else if (!rc && rename(tmp, out)) {
                fprintf(stderr, "dbr plan: cannot write %s: %s\n", out, strerror(errno));
                rc = 1;
            }
            if (rc) remove(tmp);
        }
        dbr_remat_plan_free(&vanilla);
        dbr_rgraph_free(&g);
        return rc;
    }
    int64_t vpeak = vanilla.total_peak;
    /* the step as compiled mode would run it; a percentage is of its peak */
    dbr_step_mem sm = {0};
    bool have_step = false;
    char serr[1024] = "";
    if (model) {
        /* least: a budget of one byte fits nothing; the step reports its least peak */
        have_step = step_plan(model, batch, least ? 1 : budget, frac, chosen, &sm, serr,
                              sizeof serr) == 0;
        if (have_step && frac > 0) budget = sm.budget, frac = 0;
    }
    int64_t total_budget = frac > 0 ? (int64_t)(frac * (double)vpeak) : budget;
    /* the planners budget the arena: what the leaves leave of the step's budget */
    int64_t arena_budget = total_budget ? total_budget - fixed : 0;
    if (total_budget && arena_budget <= 0) {
        char a[32], b[32];
        dbr_human_bytes(total_budget, a, sizeof a);
        dbr_human_bytes(fixed, b, sizeof b);
        fprintf(stderr, "dbr plan: %s: budget %s is below the parameters and inputs alone (%s)\n",
                name, a, b);
        dbr_remat_plan_free(&vanilla);
        dbr_rgraph_free(&g);
        return 1;
    }
    if (!json) {
        char a[32], b[32];
        dbr_human_bytes(vpeak, a, sizeof a);
        dbr_human_bytes(fixed, b, sizeof b);
        printf("%s: %d forward nodes; no-recompute peak %s (parameters and inputs %s)\n", name,
               g.n, a, b);
        if (total_budget) {
            dbr_human_bytes(total_budget, a, sizeof a);
            printf("budget %s\n", a);
        } else if (least) {
            printf("budget: the least memory each strategy reaches\n");
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
        if (dbr_remat_plan_build(&g, (dbr_remat_strategy)s, arena_budget, least, &p, perr,
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
            dbr_human_bytes(p.total_peak, a, sizeof a);
            dbr_human_bytes(p.peak, b, sizeof b);
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
        dbr_human_bytes(total_budget, a, sizeof a);
        dbr_human_bytes(min_feasible == INT64_MAX ? best.min_feasible_peak + fixed : min_feasible + fixed, b,
              sizeof b);
        fprintf(stderr, "dbr plan: %s: no schedule fits the budget %s; the smallest reachable "
                        "peak is %s\n", name, a, b);
        rc = 1;
    }
    if (model && have_best) {
        if (!have_step) {
            fprintf(stderr, "dbr plan: %s: %s\n", name, serr);
            rc = 1;
        } else {
            if (!json) {
                char b[8][32];
                dbr_human_bytes(sm.peak, b[0], sizeof b[0]);
                dbr_human_bytes(sm.params, b[1], sizeof b[1]);
                dbr_human_bytes(sm.optim_state, b[2], sizeof b[2]);
                dbr_human_bytes(sm.inputs + sm.outputs, b[3], sizeof b[3]);
                dbr_human_bytes(sm.arena, b[4], sizeof b[4]);
                dbr_human_bytes(sm.grads, b[5], sizeof b[5]);
                dbr_human_bytes(sm.peak - sm.arena + sm.noremat_arena, b[6], sizeof b[6]);
                dbr_human_bytes(sm.min_peak, b[7], sizeof b[7]);
                printf("\nthe whole step as compiled (backward and optimizer included; arena "
                       "laid out by memplan):\n"
                       "  peak %s = parameters %s + optimizer state %s + inputs and outputs %s + "
                       "arena %s (gradients %s of it)\n"
                       "  no recompute %s; %s: %d ops recomputed, +%.1f%% forward time; "
                       "planned in %.0f ms; fits: %s%s%s",
                       b[0], b[1], b[2], b[3], b[4], b[5], b[6], sm.strategy ? sm.strategy : "none",
                       sm.recomputed, sm.recompute_pct, sm.plan_ms,
                       least ? "the least memory found" : sm.feasible ? "yes" : "no",
                       sm.feasible || least ? "" : " (least reachable ",
                       sm.feasible || least ? "" : b[7]);
                printf("%s\n", sm.feasible || least ? "" : ")");
            }
            if (!sm.feasible && !least) {
                char a[32], b[32];
                dbr_human_bytes(sm.budget, a, sizeof a);
                dbr_human_bytes(sm.min_peak, b, sizeof b);
                fprintf(stderr, "dbr plan: %s: the compiled step does not fit the budget %s; "
                                "the smallest peak it reaches is %s\n", name, a, b);
                rc = 1;
            }
        }
    }
    if (json && have_best) {
        printf("{\"name\": ");
        json_str(stdout, name);
        printf(", \"strategy\": \"%s\", \"budget_bytes\": %lld, "
               "\"vanilla_peak_bytes\": %lld, \"peak_bytes\": %lld, \"arena_peak_bytes\": %lld, "
               "\"min_feasible_peak_bytes\": %lld, \"overhead_pct\": %.3f, \"plan_ms\": %.3f, "
               "\"feasible\": %s, \"kept\": ",
               dbr_remat_strategy_name(best.strategy), (long long)total_budget,
               (long long)vpeak, (long long)best.total_peak, (long long)best.peak,
               (long long)((min_feasible == INT64_MAX ? best.peak : min_feasible) + fixed),
               best.fwd_time > 0 ? 100 * best.overhead / best.fwd_time : 0.0, best.plan_ms,
               best.feasible ? "true" : "false");
        json_ids(stdout, &g, best.keep);
        printf(", \"recomputed\": ");
        json_ids(stdout, &g, best.recomputed);
        if (have_step)
            printf(", \"step\": {\"strategy\": \"%s\", \"budget_bytes\": %lld, \"peak_bytes\": %lld, "
                   "\"noremat_peak_bytes\": %lld, \"min_peak_bytes\": %lld, \"params_bytes\": %lld, "
                   "\"optim_state_bytes\": %lld, \"inputs_bytes\": %lld, \"outputs_bytes\": %lld, "
                   "\"arena_bytes\": %lld, \"grads_bytes\": %lld, \"recomputed\": %d, "
                   "\"overhead_pct\": %.3f, \"plan_ms\": %.3f, \"feasible\": %s}",
                   sm.strategy ? sm.strategy : "none", (long long)sm.budget, (long long)sm.peak,
                   (long long)(sm.peak - sm.arena + sm.noremat_arena), (long long)sm.min_peak,
                   (long long)sm.params, (long long)sm.optim_state, (long long)sm.inputs,
                   (long long)sm.outputs, (long long)sm.arena, (long long)sm.grads, sm.recomputed,
                   sm.recompute_pct, sm.plan_ms, sm.feasible ? "true" : "false");
        printf("}\n");
    }
    if (have_best) dbr_remat_plan_free(&best);
    dbr_remat_plan_free(&vanilla);
    dbr_rgraph_free(&g);
    return rc;
}
