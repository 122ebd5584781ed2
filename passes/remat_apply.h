/* remat_apply.h: a recomputation plan applied to a whole step graph
 * (forward, backward and optimizer nodes), and the loop that holds the
 * step's real memory, as memplan lays it out, to a budget. The planners of
 * remat.h decide on a model of the forward graph; this is where their
 * decision meets the schedule that runs. */
#ifndef DBR_PASSES_REMAT_APPLY_H
#define DBR_PASSES_REMAT_APPLY_H

#include "ir/graph.h"
#include "passes/passes.h"
#include "passes/remat.h"
#include "passes/remat_ir.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Rewrites the step graph g into *out (a new graph; its node order is its
 * schedule):
 *  - every node of g is there once, in g's order, except the optimizer
 *    updates, which move up to just after the last node that produces what
 *    they read or reads what they write (a parameter's update runs as soon
 *    as its gradient is final, so the gradient's buffer is free from then);
 *  - a forward value with keep[v] false that a backward node reads is
 *    computed again, as a copy of its forward node (phase RECOMP, same
 *    attributes, so random ops give the same bits), just before the first
 *    backward node that reads it; its unkept forward inputs are recomputed
 *    first, the kept ones are read where forward left them. Backward reads
 *    of such a value all go to the copy; forward reads keep the original,
 *    which then dies after its last forward reader.
 * keep: per value id of g (NULL: keep everything); outputs are always kept.
 * remap (n_vals of g entries, may be NULL): g's value -> out's value (the
 * original, not a copy). *n_recomputed: RECOMP nodes made (may be NULL).
 * 0, or -1 with a message. */
int dbr_remat_apply(const dbr_graph *g, const bool *keep, dbr_graph **out, int32_t *remap,
                    int32_t *n_recomputed, char *err, size_t errlen);

/* The step under a memory budget: the device holds `fixed` bytes outside the
 * arena (parameters, optimizer state, inputs, constants, outputs copied out)
 * and the arena. The budget is total bytes (budget > 0), or a fraction of the
 * no-recompute total (budget_frac in (0, 1]), or none (both 0). */
typedef struct dbr_step_budget {
    int64_t budget;
    double budget_frac;
    int64_t fixed;
    dbr_remat_strategy strategy; /* AUTO picks among none, chen, dp (and ilp when tiny) */
    const dbr_cost_model *cm;    /* NULL: dbr_cost_model_cpu() */
    int32_t max_tries;           /* re-plans when memplan's arena exceeds the budget (0: 12) */
} dbr_step_budget;

typedef struct dbr_step_plan {
    dbr_graph *g;          /* the rewritten step; node order is the schedule */
    int32_t *remap;        /* per value of the input graph: its value in g */
    int32_t *order;        /* 0 .. n_nodes-1 (what dbr_memplan_build was given) */
    dbr_memplan mp;        /* the arena of g under order */
    int64_t budget;        /* total bytes asked for (resolved from budget_frac); 0 = none */
    int64_t arena_budget;  /* budget - fixed */
    int64_t noremat_arena; /* arena with nothing recomputed (updates moved up) */
    int64_t min_arena;     /* least arena any plan tried reached */
    int32_t n_recomputed;  /* RECOMP nodes in g */
    int32_t n_fwd;         /* forward nodes */
    double fwd_time;       /* cost model: forward time, seconds */
    double recompute_time; /* cost model: time of the RECOMP nodes */
    double recompute_flops;
    dbr_remat_strategy strategy; /* the planner whose plan was taken */
    int32_t tries;         /* plans turned into schedules */
    double plan_ms;
    bool feasible;         /* fixed + mp.arena_bytes <= budget (always when no budget) */
} dbr_step_plan;

/* Without a budget, or when the no-recompute step fits: the step with
 * updates moved up and nothing recomputed. Otherwise plans the forward graph
 * (remat.h), applies the plan, lays it out with memplan and, while the real
 * arena exceeds the budget, tightens the planner's budget and tries again.
 * When nothing fits, returns 0 with feasible false and the least-arena
 * schedule found (min_arena says how small the arena can get). -1 only on
 * bad input or out of memory. */
int dbr_step_plan_build(const dbr_graph *g, const dbr_step_budget *b, dbr_step_plan *sp, char *err,
                        size_t errlen);
void dbr_step_plan_free(dbr_step_plan *sp);

#endif
