/* remat.h: the recomputation planner's view of a forward pass and its
 * results. Graphs come from the IR (compiled and meta modes) or from a JSON
 * file made elsewhere (passes/graph_json.c); the planners (none, chen, dp,
 * ilp) only see this. */
#ifndef DBR_PASSES_REMAT_H
#define DBR_PASSES_REMAT_H

#include "ir/ir.h" /* dbr_errf */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DBR_RG_RETAIN_OUT (1u << 31) /* retain bit: backward reads the node's output */

/* A forward graph: compute nodes in topological order (every node input of
 * node i is a node j < i). Leaves (inputs and parameters) are not nodes:
 * they are held for the whole step; an entry of ins below 0 names leaf
 * -1-entry. Backward is one gradient node per compute node, in reverse
 * order, reading the node's output gradient and what it retains, and
 * producing a gradient for each input that is not a parameter (same bytes as
 * that input). */
typedef struct dbr_rgraph {
    int32_t n;
    char **id;         /* node names (owned), for reports */
    char **op;         /* op names (owned), free text */
    int64_t *bytes;    /* bytes of each node's output */
    double *time;      /* forward time of each node (cost model or measured) */
    int32_t *in_first; /* inputs of node i: ins[in_first[i] .. in_first[i+1]); n + 1 entries */
    int32_t *ins;      /* node ids, or -1-leaf for leaves */
    uint32_t *retain;  /* bit k: backward of i reads input k (k < 31); DBR_RG_RETAIN_OUT */
    int32_t n_leaves;
    char **leaf_id;    /* owned */
    int64_t *leaf_bytes;
    bool *leaf_is_param;
} dbr_rgraph;

void dbr_rgraph_free(dbr_rgraph *g);

/* ---- plans ----------------------------------------------------------------
 * Memory model (the simulator, remat_sim.c, is the single source of truth):
 * a plan is replayed as a sequence of events: FWD i (forward computes node
 * i), RECOMP i (backward recomputes node i), BWD i (the gradient node of i).
 * A forward value is live from the event that computes it until the last
 * event that reads that copy (a copy with no reader dies at once); the
 * gradient of node i is live from the first BWD that produces it (BWD of a
 * consumer, or BWD i itself for a node nobody consumes: the seed) to BWD i.
 * The arena peak is the largest sum of live bytes, taken after each event's
 * allocations and before its frees. Leaves are held throughout and are not
 * in the arena; gradients of non-parameter leaves are live from the first BWD
 * producing them to the end. total peak = max over events of arena live +
 * sum(leaf_bytes) + live leaf gradients.
 *
 * Reads: FWD/RECOMP i read i's node inputs; BWD i reads i's gradient, the
 * inputs its retain mask names (inputs at position >= 31 count as read) and
 * its own output with DBR_RG_RETAIN_OUT.
 *
 * Segment plans (none, chen, dp): seg_of[i] in [0, n_seg) with
 * seg_of[j] <= seg_of[i] for every node input j of i: the segments
 * L_s = {i : seg_of[i] <= s} are an increasing chain of lower sets. Forward
 * computes segment 0, then 1, ... (each in index order); node i is kept
 * (never recomputed) when it is in the last segment or a node of a later
 * segment consumes it; backward runs segments last to first: RECOMP of the
 * segment's unkept nodes that its gradient nodes need (index order), then BWD
 * of its nodes in reverse index order. Explicit plans (ilp) carry their own
 * event sequence instead. */
typedef enum dbr_remat_strategy {
    DBR_REMAT_NONE,
    DBR_REMAT_CHEN, /* budget 0: sqrt(n) segments; else the greedy budget variant */
    DBR_REMAT_DP,
    DBR_REMAT_ILP,
    DBR_REMAT_AUTO,
    DBR_REMAT_N_STRATEGIES
} dbr_remat_strategy;

const char *dbr_remat_strategy_name(dbr_remat_strategy s);

typedef enum dbr_remat_ev_kind { DBR_REV_FWD, DBR_REV_RECOMP, DBR_REV_BWD } dbr_remat_ev_kind;

typedef struct dbr_remat_event {
    int32_t kind; /* dbr_remat_ev_kind */
    int32_t node;
} dbr_remat_event;

typedef struct dbr_remat_plan {
    dbr_remat_strategy strategy; /* the strategy that made it (auto: the one chosen) */
    int32_t n;                   /* nodes of the graph planned */
    int32_t n_seg;               /* 0 for an explicit plan */
    int32_t *seg_of;             /* n entries, or NULL for an explicit plan */
    bool *keep;                  /* n: value held from forward to a backward read */
    bool *recomputed;            /* n: recomputed at least once */
    int32_t n_ev;                /* explicit event sequence (ilp), else 0 */
    dbr_remat_event *ev;         /* NULL unless explicit */
    int64_t budget;              /* arena bytes asked for; 0 = none */
    int64_t peak;                /* simulated arena peak */
    int64_t total_peak;          /* peak + leaves + live leaf gradients */
    int64_t model_peak;          /* the strategy's own estimate (or peak) */
    int64_t min_feasible_peak;   /* least simulated arena peak any tried plan reached */
    double overhead;             /* extra forward time: sum of RECOMP times */
    double fwd_time;             /* sum of forward times */
    bool feasible;               /* peak <= budget (always when budget is 0) */
    bool exact;                  /* dp: exact lower-set family; ilp: proven optimal */
    int32_t replans;             /* re-plans after the simulator disagreed */
    double plan_ms;
} dbr_remat_plan;

typedef struct dbr_remat_trace {
    int32_t n_ev;
    dbr_remat_event *ev;
    int64_t *live;        /* arena bytes live at each event's peak moment */
    int64_t peak;
    int64_t total_peak;
    double overhead;
} dbr_remat_trace;

void dbr_remat_plan_free(dbr_remat_plan *p);
void dbr_remat_trace_free(dbr_remat_trace *t);

/* Builds a segment plan from seg_of (checked to be a chain of lower sets):
 * derives keep, fills the sequence-independent fields and simulates it. */
int dbr_remat_plan_from_segments(const dbr_rgraph *g, const int32_t *seg_of, int32_t n_seg,
                                 dbr_remat_plan *out, char *err, size_t errlen);
/* Builds an explicit plan from an event sequence (copied), checked and simulated. */
int dbr_remat_plan_from_events(const dbr_rgraph *g, const dbr_remat_event *ev, int32_t n_ev,
                               dbr_remat_plan *out, char *err, size_t errlen);

/* The plan's event sequence (malloc'd into *ev). */
int dbr_remat_plan_events(const dbr_rgraph *g, const dbr_remat_plan *p, dbr_remat_event **ev,
                          int32_t *n_ev, char *err, size_t errlen);

/* Replays the plan: arena peak, extra forward time, and optionally the trace. */
int dbr_remat_simulate(const dbr_rgraph *g, const dbr_remat_plan *p, dbr_remat_trace *out,
                       int64_t *peak, double *overhead, char *err, size_t errlen);
/* Same, for an event sequence. */
int dbr_remat_simulate_events(const dbr_rgraph *g, const dbr_remat_event *ev, int32_t n_ev,
                              dbr_remat_trace *out, char *err, size_t errlen);

/* The validity simulator, written independently of dbr_remat_simulate: every
 * forward value is present when read (computed earlier, by a copy the
 * liveness rule has not freed), every node computed once in forward before
 * any backward, each gradient node run once and only after all the gradient
 * nodes of its consumers. Returns 0 and the arena peak by a naive rescan. */
int dbr_remat_check(const dbr_rgraph *g, const dbr_remat_event *ev, int32_t n_ev, int64_t *peak,
                    char *err, size_t errlen);

/* Plans g under budget (arena bytes; 0 = none). memory_centric: least peak
 * instead of least overhead within the budget. Returns 0 with out filled
 * (out->feasible false and out->min_feasible_peak set when nothing fits; the
 * plan is then the least-peak one found); -1 on bad input or when the
 * strategy is unavailable (ilp without GLPK, or a graph too large for it). */
int dbr_remat_plan_build(const dbr_rgraph *g, dbr_remat_strategy s, int64_t budget,
                         bool memory_centric, dbr_remat_plan *out, char *err, size_t errlen);

/* Many plans of one graph (a budget search): the DP's family and block
 * costs are prepared on the first plan that needs them and kept. Same
 * results as dbr_remat_plan_build. */
typedef struct dbr_remat_dp_ctx dbr_remat_dp_ctx;
typedef struct dbr_remat_session {
    const dbr_rgraph *g;
    dbr_remat_dp_ctx *dp; /* NULL until a dp (or auto) plan */
} dbr_remat_session;
int dbr_remat_session_plan(dbr_remat_session *ss, dbr_remat_strategy s, int64_t budget,
                           bool memory_centric, dbr_remat_plan *out, char *err, size_t errlen);
void dbr_remat_session_free(dbr_remat_session *ss);

/* ---- the DP of Kusumoto et al. and its cost model -------------------------
 * Cost model of a chain 0 = L0 < L1 < ... < Lk = V, Vi = Li \ L(i-1), each
 * block replayed alone as the simulator replays it:
 *   overhead = sum over i < k of time(R(i)), R(i) = the unkept nodes of Vi
 *              the gradient nodes of Vi need (exactly the simulator's RECOMPs);
 *   K(i)     = K(i-1) + bytes of the nodes of Vi consumed outside Li (the
 *              values earlier blocks may still hold);
 *   peak     = max over i of K(i-1) + W(i), W(i) the larger of the simulator's
 *              live bytes over the FWDs of Vi and over its RECOMPs and BWDs,
 *              counting the values and gradients of Vi, the gradients of
 *              L(i-1)'s nodes consumed outside L(i-1), and minus the values in
 *              K(i-1) that provably die in the block (no reader in L(i-1) that
 *              could run later: no BWD reading them, no consumer that any
 *              chain could recompute).
 * W and K bound the simulator's live bytes from above (K(i-1) counts every
 * earlier value alive at block i), so a chain within the budget in this
 * model is within it in the simulator; on chains whose earlier values all
 * stay read until their own block's backward the two agree. */
typedef struct dbr_remat_dp_opts {
    int64_t budget;          /* model bytes; 0 = none */
    bool memory_centric;
    int32_t max_lower_sets;  /* exact enumeration cap (0: 1024) */
    bool force_approx;       /* use the approximate family even when small */
} dbr_remat_dp_opts;

typedef struct dbr_remat_dp_result {
    bool found;
    bool exact;              /* exhaustive family */
    int32_t n_sets;          /* size of the family used */
    int32_t n_seg;
    int32_t *seg_of;         /* n entries (malloc'd) when found */
    double overhead;         /* model overhead */
    int64_t model_peak;
    int64_t min_model_peak;  /* least model peak of any chain (set when !found too) */
} dbr_remat_dp_result;

int dbr_remat_dp(const dbr_rgraph *g, const dbr_remat_dp_opts *o, dbr_remat_dp_result *r,
                 char *err, size_t errlen);
void dbr_remat_dp_result_free(dbr_remat_dp_result *r);
/* The same in two steps, for many budgets over one graph: prepare builds the
 * family and every inclusion pair's block cost (o's budget and objective are
 * not used), solve runs the DP (o's budget and objective). */
dbr_remat_dp_ctx *dbr_remat_dp_prepare(const dbr_rgraph *g, const dbr_remat_dp_opts *o, char *err,
                                       size_t errlen);
int dbr_remat_dp_solve(dbr_remat_dp_ctx *d, const dbr_remat_dp_opts *o, dbr_remat_dp_result *r,
                       char *err, size_t errlen);
void dbr_remat_dp_ctx_free(dbr_remat_dp_ctx *d);
/* The cost model above, for one chain given as seg_of. */
int dbr_remat_dp_cost(const dbr_rgraph *g, const int32_t *seg_of, int32_t n_seg, double *overhead,
                      int64_t *model_peak, char *err, size_t errlen);

/* ---- MILPs (GLPK; -1 with "built without GLPK" otherwise) -----------------
 * dbr_remat_ilp: Checkmate-style stages (forward stage t computes node t;
 * backward stage of node b may recompute any node, then runs BWD b); binary
 * R[t][i] (compute i in stage t) and S[t][i] (i held into stage t); the
 * memory of a stage is sum bytes(S + R) + its live gradients, an upper bound
 * of the simulator's; minimise recompute time. The result is an explicit
 * event sequence. */
typedef struct dbr_remat_ilp_opts {
    int64_t budget;          /* 0 = none */
    double time_limit_s;     /* 0: 10 s */
    int32_t max_nodes;       /* refuse larger graphs (0: 64) */
} dbr_remat_ilp_opts;

typedef struct dbr_remat_ilp_result {
    bool found;
    bool optimal;
    double overhead;         /* model objective */
    int64_t model_peak;
    int32_t n_ev;
    dbr_remat_event *ev;
} dbr_remat_ilp_result;

int dbr_remat_ilp(const dbr_rgraph *g, const dbr_remat_ilp_opts *o, dbr_remat_ilp_result *r,
                  char *err, size_t errlen);
void dbr_remat_ilp_result_free(dbr_remat_ilp_result *r);

/* The oracle for the DP: the same problem (chains of the same lower-set
 * family, the DP's cost model above, peak <= budget, least overhead) as a
 * path MILP over the family's inclusion DAG. */
int dbr_remat_ilp_chain(const dbr_rgraph *g, const dbr_remat_dp_opts *o, dbr_remat_dp_result *r,
                        char *err, size_t errlen);

/* ---- shared by passes/remat*.c ------------------------------------------ */
typedef struct dbr_rg_adj {
    int32_t *out_first; /* consumers of node i: outs[out_first[i] .. out_first[i+1]) */
    int32_t *outs;
    int32_t *out_pos;   /* input position in the consumer */
} dbr_rg_adj;
int dbr_rg_adj_build(const dbr_rgraph *g, dbr_rg_adj *a);
void dbr_rg_adj_free(dbr_rg_adj *a);
/* Does BWD of node c read its input at position k? */
static inline bool dbr_rg_bwd_reads_input(const dbr_rgraph *g, int32_t c, int32_t k) {
    return k >= 31 || (g->retain[c] >> k) & 1u;
}
int dbr_rg_validate(const dbr_rgraph *g, char *err, size_t errlen);

#endif
