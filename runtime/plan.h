/* plan.h: a compiled step: a flat list of launches over one arena, the
 * bindings a run needs (parameters, inputs, values computed earlier in the
 * step, constants), and the LRU cache of plans keyed by shape signature. */
#ifndef DBR_RUNTIME_PLAN_H
#define DBR_RUNTIME_PLAN_H

#include "ir/ir.h"
#include "runtime/device.h"

#include <stdint.h>

/* Where a leaf's data comes from at run time. */
typedef enum dbr_bind_kind {
    DBR_BIND_PARAM,  /* parameter or buffer, by creation index */
    DBR_BIND_INPUT,  /* the step's dbr_input, by ordinal */
    DBR_BIND_VALUE,  /* a value materialized earlier in the step, by ordinal */
    DBR_BIND_CONST,  /* filled once by the plan (owned) */
    DBR_BIND_STATE   /* optimizer state: slot = 2 * parameter index + (0 m, 1 v) */
} dbr_bind_kind;

typedef struct dbr_bind {
    dbr_bind_kind kind;
    int32_t slot;
    dbr_tinfo t;
    double cval;
    void *owned; /* DBR_BIND_CONST: the plan's buffer */
} dbr_bind;

/* An argument is an arena offset (>= 0) or binding -1-b (< 0). */
typedef struct dbr_launch {
    dbr_node node;
    int64_t in[DBR_MAX_SRC];
    int64_t out;
    int32_t phase; /* the node's dbr_phase (ir/graph.h), for the profiler */
} dbr_launch;

/* What the device holds while a plan runs, as planned (the frontend
 * reports it as dbr_step_mem). */
typedef struct dbr_plan_mem {
    int64_t budget;             /* 0 = none */
    int64_t params, optim_state, inputs, outputs; /* beside the arena */
    int64_t grads;              /* parameter gradients, inside the arena */
    int64_t noremat_arena;      /* the arena with nothing recomputed */
    int64_t min_arena;          /* the least arena any plan tried reached */
    int32_t recomputed;
    double recompute_pct;
    double plan_ms;
    bool feasible;
    const char *strategy;       /* static string: the planner taken */
} dbr_plan_mem;

typedef struct dbr_plan {
    uint64_t key;
    dbr_launch *launches;
    int32_t n_launches;
    dbr_bind *binds;
    int32_t n_binds;
    int64_t *outputs; /* arena offsets of the outputs, in request order */
    int32_t n_outputs;
    int64_t arena_bytes, lower_bound;
    int32_t n_inplace;
    dbr_plan_mem mem;
    void *arena;              /* device memory of dev: set before each run; plans of one
                                 context share one arena, as only one runs at a time */
    const dbr_device_ops *dev;
    double compile_ms;
    uint64_t last_used;
    /* a second key: the step before autodiff (0 if none), and how many
     * optimizer updates it holds, so such steps skip every pass */
    uint64_t alias;
    int32_t alias_updates;
} dbr_plan;

/* Queue every launch, in order, on stream of the plan's device, then wait
 * for them. bind_ptr[b] is binding b's data in device memory (constants
 * come from the plan's own buffers). Random ops are rekeyed and Adam gets
 * its step count from k, so one plan serves every step. No allocation. 0 or
 * -1 (a launch failed; its index is in *failed). */
/* What changes from step to step without changing the plan. */
typedef struct dbr_run_keys {
    uint64_t seed;
    int64_t step;  /* random ops are keyed by (seed, step, call index) */
    int64_t opt_t; /* the optimizer's step count for Adam's bias correction */
    struct dbr_prof *prof; /* runtime/prof.h: one event per launch while prof->on; may be NULL */
} dbr_run_keys;
int dbr_plan_run(dbr_plan *p, void *const *bind_ptr, const dbr_run_keys *k, void *stream,
                 int32_t *failed);

/* The pointer to output k after a run with bind_ptr. */
void *dbr_plan_output(const dbr_plan *p, void *const *bind_ptr, int32_t k);

/* Frees the plan and its constants (through its device); not the arena. */
void dbr_plan_free(dbr_plan *p);

/* ---- the cache ---------------------------------------------------------- */
typedef struct dbr_plan_cache {
    dbr_plan **plans;
    int32_t n, cap;
    uint64_t clock;
    int64_t hits, misses, evictions;
    double compile_ms;
} dbr_plan_cache;

/* The plan with this key, or NULL (counted as a hit or a miss). */
dbr_plan *dbr_plan_cache_get(dbr_plan_cache *c, uint64_t key);
/* The plan registered under a second key (counted as a hit), or NULL
 * (not counted: the caller goes on to the full key). */
dbr_plan *dbr_plan_cache_alias(dbr_plan_cache *c, uint64_t alias);
/* Insert p; when full, the least recently used plan is returned through
 * *evicted for the caller to free. Returns 0 or -1 (out of memory). */
int dbr_plan_cache_put(dbr_plan_cache *c, dbr_plan *p, dbr_plan **evicted);

#endif
