/* remat.c: the recomputation planner's entry point: none, Chen's sqrt(n)
 * and greedy segments, the DP and the MILP, each simulated and held to the
 * budget by the simulator's peak, and auto (the best that fits). */
#include "passes/remat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Is a better than b for this objective? Fitting beats not fitting. */
static bool better(const dbr_remat_plan *a, const dbr_remat_plan *b, int64_t budget, bool mem) {
    if (!b->seg_of && !b->ev)
        return true;
    bool fa = budget <= 0 || a->peak <= budget, fb = budget <= 0 || b->peak <= budget;
    if (fa != fb)
        return fa;
    if (mem || !fa)
        return a->peak < b->peak || (a->peak == b->peak && a->overhead < b->overhead);
    return a->overhead < b->overhead || (a->overhead == b->overhead && a->peak < b->peak);
}

/* Takes cand into best when better; frees whichever loses. */
static void consider(dbr_remat_plan *best, dbr_remat_plan *cand, int64_t budget, bool mem,
                     int64_t *minpeak) {
    if (*minpeak == 0 || cand->peak < *minpeak)
        *minpeak = cand->peak;
    if (better(cand, best, budget, mem)) {
        dbr_remat_plan_free(best);
        *best = *cand;
        memset(cand, 0, sizeof *cand);
    } else {
        dbr_remat_plan_free(cand);
    }
}

static int seg_plan(const dbr_rgraph *g, int32_t *seg, int32_t n_seg, dbr_remat_plan *best,
                    int64_t budget, bool mem, int64_t *minpeak, char *err, size_t errlen) {
    dbr_remat_plan p;
    if (dbr_remat_plan_from_segments(g, seg, n_seg, &p, err, errlen))
        return -1;
    consider(best, &p, budget, mem, minpeak);
    return 0;
}

static int plan_none(const dbr_rgraph *g, int64_t budget, bool mem, dbr_remat_plan *best,
                     int64_t *minpeak, char *err, size_t errlen) {
    int32_t *seg = calloc((size_t)g->n + 1, sizeof(int32_t));
    if (!seg)
        return dbr_errf(err, errlen, "remat: out of memory");
    int rc = seg_plan(g, seg, 1, best, budget, mem, minpeak, err, errlen);
    free(seg);
    return rc;
}

/* Chen et al.: sqrt(n) segments along the index order, and the greedy
 * variant (close a segment when its bytes would pass a threshold) over a
 * sweep of thresholds, keeping what the simulator says is best. */
static int plan_chen(const dbr_rgraph *g, int64_t budget, bool mem, dbr_remat_plan *best,
                     int64_t *minpeak, char *err, size_t errlen) {
    int32_t n = g->n;
    int32_t *seg = malloc(((size_t)n + 1) * sizeof(int32_t));
    if (!seg)
        return dbr_errf(err, errlen, "remat: out of memory");
    int32_t k = (int32_t)ceil(sqrt((double)n));
    if (k < 1)
        k = 1;
    for (int32_t i = 0; i < n; i++)
        seg[i] = (int32_t)((int64_t)i * k / (n ? n : 1));
    int rc = seg_plan(g, seg, k, best, budget, mem, minpeak, err, errlen);
    if (!rc && (budget > 0 || mem)) {
        int64_t maxb = 1, tot = 1;
        for (int32_t i = 0; i < n; i++) {
            maxb = g->bytes[i] > maxb ? g->bytes[i] : maxb;
            tot += g->bytes[i];
        }
        int steps = 40;
        for (int s = 0; s <= steps && !rc; s++) {
            double th = (double)maxb * pow((double)tot / (double)maxb, (double)s / steps);
            int32_t cur = 0;
            int64_t acc = 0;
            for (int32_t i = 0; i < n; i++) {
                if (acc > 0 && (double)(acc + g->bytes[i]) > th) {
                    cur++;
                    acc = 0;
                }
                acc += g->bytes[i];
                seg[i] = cur;
            }
            rc = seg_plan(g, seg, cur + 1, best, budget, mem, minpeak, err, errlen);
        }
    }
    free(seg);
    return rc;
}

/* The DP under model budgets: the model (remat.h) bounds the simulator from
 * above, so the budget itself always gives a plan within it; a few model
 * budgets above it may give cheaper plans that still fit once simulated,
 * re-planned (tightened by the excess) while the simulator says no. Chen's
 * chains (index prefixes, in the DP's family) are simulated too, so the
 * result is never worse than chen's. */
static int plan_dp(const dbr_rgraph *g, int64_t budget, bool mem, dbr_remat_plan *best,
                   int64_t *minpeak, dbr_remat_dp_ctx **keep_ctx, char *err, size_t errlen) {
    if (g->n == 0)
        return plan_none(g, budget, mem, best, minpeak, err, errlen);
    dbr_remat_dp_opts o = {.budget = 0, .memory_centric = true};
    /* a session's context is prepared once and kept for its later plans */
    dbr_remat_dp_ctx *d = keep_ctx && *keep_ctx ? *keep_ctx : dbr_remat_dp_prepare(g, &o, err, errlen);
    if (!d)
        return -1;
    if (keep_ctx)
        *keep_ctx = d;
    dbr_remat_dp_result r;
    /* the least-memory chain first: it decides whether anything fits */
    int rc = dbr_remat_dp_solve(d, &o, &r, err, errlen);
    bool exact = r.exact;
    if (!rc && r.found)
        rc = seg_plan(g, r.seg_of, r.n_seg, best, budget, mem, minpeak, err, errlen);
    dbr_remat_dp_result_free(&r);
    if (!rc)
        rc = plan_chen(g, budget, mem, best, minpeak, err, errlen);
    /* one segment (no recompute) is a chain too */
    if (!rc && !mem)
        rc = plan_none(g, budget, false, best, minpeak, err, errlen);
    o.memory_centric = false;
    static const int slack[] = {0, 1, 2, 4, 8}; /* model budget: budget * (1 + slack/32) */
    for (int j = 0; j < 5 && !rc && !mem && budget > 0; j++) {
        if (best->peak <= budget && best->overhead == 0)
            break;
        o.budget = budget + budget / 32 * slack[j];
        for (int tries = 0; tries < 3; tries++) {
            if ((rc = dbr_remat_dp_solve(d, &o, &r, err, errlen)))
                break;
            if (!r.found) {
                dbr_remat_dp_result_free(&r);
                break;
            }
            dbr_remat_plan p;
            rc = dbr_remat_plan_from_segments(g, r.seg_of, r.n_seg, &p, err, errlen);
            int64_t model = r.model_peak;
            dbr_remat_dp_result_free(&r);
            if (rc)
                break;
            p.model_peak = model;
            int64_t over = p.peak - budget;
            p.replans = tries;
            consider(best, &p, budget, false, minpeak);
            if (over <= 0 || j == 0)
                break;
            o.budget -= over; /* tighten and re-plan */
            if (o.budget <= budget)
                break;
        }
    }
    if (!keep_ctx)
        dbr_remat_dp_ctx_free(d);
    best->exact = exact;
    return rc;
}

static int plan_ilp(const dbr_rgraph *g, int64_t budget, bool mem, double tlim, dbr_remat_plan *best,
                    int64_t *minpeak, char *err, size_t errlen) {
    if (mem)
        return dbr_errf(err, errlen, "remat ilp: memory-centric planning is not supported (give a budget)");
    dbr_remat_ilp_opts o = {.budget = budget, .time_limit_s = tlim};
    dbr_remat_ilp_result r;
    if (dbr_remat_ilp(g, &o, &r, err, errlen))
        return -1;
    if (!r.found) {
        dbr_remat_ilp_result_free(&r);
        /* nothing fits the MILP's model: the least peak the DP reaches */
        dbr_remat_plan tmp = {0};
        int rc = plan_dp(g, 0, true, &tmp, minpeak, NULL, err, errlen);
        if (!rc) {
            dbr_remat_plan_free(best);
            *best = tmp;
            best->feasible = false;
        }
        return rc;
    }
    dbr_remat_plan p;
    int rc = dbr_remat_plan_from_events(g, r.ev, r.n_ev, &p, err, errlen);
    if (!rc) {
        p.model_peak = r.model_peak;
        p.exact = r.optimal;
        consider(best, &p, budget, false, minpeak);
    }
    dbr_remat_ilp_result_free(&r);
    return rc;
}

static int plan_build(const dbr_rgraph *g, dbr_remat_dp_ctx **dpc, dbr_remat_strategy s,
                      int64_t budget, bool memory_centric, dbr_remat_plan *out, char *err,
                      size_t errlen) {
    memset(out, 0, sizeof *out);
    if (dbr_rg_validate(g, err, errlen))
        return -1;
    if ((unsigned)s >= DBR_REMAT_N_STRATEGIES)
        return dbr_errf(err, errlen, "remat: unknown strategy %d", (int)s);
    if (budget < 0)
        return dbr_errf(err, errlen, "remat: negative budget");
    double t0 = now_ms();
    int64_t minpeak = 0;
    dbr_remat_plan best = {0};
    int rc = 0;
    switch (s) {
    case DBR_REMAT_NONE:
        rc = plan_none(g, 0, false, &best, &minpeak, err, errlen);
        break;
    case DBR_REMAT_CHEN:
        rc = plan_chen(g, budget, memory_centric, &best, &minpeak, err, errlen);
        break;
    case DBR_REMAT_DP:
        rc = plan_dp(g, budget, memory_centric, &best, &minpeak, dpc, err, errlen);
        break;
    case DBR_REMAT_ILP:
        rc = plan_ilp(g, budget, memory_centric, 10.0, &best, &minpeak, err, errlen);
        break;
    case DBR_REMAT_AUTO: {
        dbr_remat_strategy order[] = {DBR_REMAT_NONE, DBR_REMAT_CHEN, DBR_REMAT_DP, DBR_REMAT_ILP};
        for (int i = 0; i < 4 && !rc; i++) {
            dbr_remat_plan p = {0};
            if (order[i] == DBR_REMAT_NONE)
                rc = plan_none(g, 0, false, &p, &minpeak, err, errlen);
            else if (order[i] == DBR_REMAT_CHEN)
                rc = plan_chen(g, budget, memory_centric, &p, &minpeak, err, errlen);
            else if (order[i] == DBR_REMAT_DP)
                rc = plan_dp(g, budget, memory_centric, &p, &minpeak, dpc, err, errlen);
            else {
#ifdef DBR_HAVE_GLPK
                /* the MILP only where it is small, and only when it can help */
                bool fits = best.peak <= budget;
                if (memory_centric || budget <= 0 || g->n > 16 || now_ms() - t0 > 2000 ||
                    (fits && best.overhead == 0))
                    continue;
                rc = plan_ilp(g, budget, false, 1.0, &p, &minpeak, err, errlen);
#else
                continue;
#endif
            }
            if (!rc) {
                p.strategy = order[i];
                int64_t mp = minpeak;
                consider(&best, &p, budget, memory_centric, &mp);
            } else {
                dbr_remat_plan_free(&p);
            }
        }
        break;
    }
    default:
        break;
    }
    if (rc) {
        dbr_remat_plan_free(&best);
        return -1;
    }
    *out = best;
    if (s != DBR_REMAT_AUTO)
        out->strategy = s;
    out->budget = budget;
    out->feasible = out->feasible || budget <= 0 || out->peak <= budget;
    if (budget > 0 && out->peak > budget)
        out->feasible = false;
    out->min_feasible_peak = minpeak;
    if (!out->model_peak)
        out->model_peak = out->peak;
    out->plan_ms = now_ms() - t0;
    return 0;
}

int dbr_remat_plan_build(const dbr_rgraph *g, dbr_remat_strategy s, int64_t budget,
                         bool memory_centric, dbr_remat_plan *out, char *err, size_t errlen) {
    return plan_build(g, NULL, s, budget, memory_centric, out, err, errlen);
}

int dbr_remat_session_plan(dbr_remat_session *ss, dbr_remat_strategy s, int64_t budget,
                           bool memory_centric, dbr_remat_plan *out, char *err, size_t errlen) {
    return plan_build(ss->g, &ss->dp, s, budget, memory_centric, out, err, errlen);
}

void dbr_remat_session_free(dbr_remat_session *ss) {
    dbr_remat_dp_ctx_free(ss->dp);
    ss->dp = NULL;
}
