/* internal.h: the context and the helpers the frontend's files share.
 * Not part of the public API. */
#ifndef DBR_FRONTEND_INTERNAL_H
#define DBR_FRONTEND_INTERNAL_H

#include "dbr.h"
#include "ir/ir.h"

#include <stdarg.h>

#define DBR_ERR_MAX 1024

/* One entry of the eager tape: a node that ran and may need a gradient. */
typedef struct dbr_tape_entry {
    dbr_node node;
    dbr_tensor *in[DBR_MAX_SRC];
    dbr_tensor *out;
    bool needs[DBR_MAX_SRC];   /* input i requires grad */
    bool retained[DBR_MAX_SRC + 1]; /* refs this entry holds (last: out) */
} dbr_tape_entry;

typedef struct dbr_optim_state dbr_optim_state;
typedef struct dbr_graph dbr_graph;

/* A host-side effect a compiled step applies once its value is computed:
 * batch norm's running statistics from a BN_STATS value. */
typedef struct dbr_effect {
    int32_t vid;
    dbr_tensor *running_mean, *running_var;
    double momentum;
    int64_t count;
} dbr_effect;

/* Compiled and meta modes: the step's recording and the plan cache. */
typedef struct dbr_trace {
    dbr_graph *graph;
    int64_t gen;               /* bumps every step: tensor vids of older steps are stale */
    dbr_tensor **vt;           /* the tensor of each value id */
    int32_t vt_cap;
    dbr_tensor **inputs;       /* this step's inputs by ordinal */
    int32_t n_inputs, inputs_cap;
    int32_t bwd_loss;          /* value id of the loss dbr_backward asked for, or -1 */
    bool bwd_done;             /* autodiff has run for it */
    int32_t *grad_vid;         /* per parameter slot: its gradient's value id, or -1 */
    int32_t n_grad;
    bool grads_pending;        /* gradients computed by autodiff, not yet accumulated */
    int32_t *updates;          /* value ids of recorded optimizer updates not yet run */
    int32_t n_updates, updates_cap;
    char **state_names;        /* names of optimizer state leaves, by 2 * slot + which */
    int32_t n_state_names;
    int32_t barrier;           /* values below this id predate an optimizer update */
    dbr_effect *effects;
    int32_t n_effects, effects_cap;
    void *cache;               /* dbr_plan_cache */
    void *arena;               /* shared by every plan of this context */
    int64_t arena_cap;
    int64_t breaks, flushes;
    int32_t step_flushes;      /* plans run in this step */
    int64_t fast_hits;         /* steps that ran a cached plan without any pass */
    struct dbr_plan *last_plan; /* the plan the last flush ran */
    bool read_cut;             /* the last flush served a read */
    double host_ms, run_ms;    /* recording and flush bookkeeping; running plans */
    int64_t arena_bytes, lower_bound; /* of the last plan run */
    dbr_step_mem mem;                 /* of the last plan run */
    int64_t fused_groups, fused_ops;  /* made by the plans compiled so far */
    int64_t budget_bytes;             /* memory_budget_frac as bytes, once a training step
                                         resolved it */
} dbr_trace;

struct dbr_ctx {
    dbr_config cfg;
    bool training;
    char err[DBR_ERR_MAX];
    bool has_err;
    bool bad_config;           /* set by dbr_ctx_new: every op fails */

    /* parameters and buffers, in creation order */
    dbr_tensor *params, *params_tail;
    int64_t n_params;

    /* the current step */
    int64_t step;
    bool in_step;
    dbr_tensor *step_tensors;  /* every step-scoped tensor (structs) */
    int64_t rand_calls;        /* random ops drawn in this step */
    bool grad_enabled;         /* false while backward runs rules */

    dbr_tape_entry *tape;
    int32_t tape_len, tape_cap;

    /* memory accounting, in bytes */
    int64_t live_bytes, peak_bytes;

    bool have_optim;
    dbr_optim optim;
    dbr_optim_state *ostate;   /* per parameter, in creation order */
    int64_t ostate_len;
    int64_t optim_steps;

    dbr_trace tr;

    struct dbr_prof *prof;     /* runtime/prof.h: created by dbr_prof_enable, else NULL */
};

/* Record the first user error: "file:line: api: message". */
void dbr_set_error(dbr_ctx *ctx, const char *file, int line, const char *api,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Counted memory: 64-byte aligned, reused through a size-keyed cache. */
void *dbr_mem_alloc(dbr_ctx *ctx, int64_t bytes);
void dbr_mem_free(dbr_ctx *ctx, void *p, int64_t bytes);
void dbr_mem_trim(void);  /* return cached blocks to the system */

/* A new tensor struct of the given type. Step-scoped kinds go on the step
 * list; data is allocated (counted) unless alloc is false. */
dbr_tensor *dbr_tensor_new(dbr_ctx *ctx, dbr_kind kind, int32_t dtype, int ndim,
                           const int64_t *shape, bool alloc);
/* Free a tensor's data (if owned) now; the struct lives to step end. */
void dbr_tensor_release_data(dbr_ctx *ctx, dbr_tensor *t);
/* Drop one reference; releases the data at zero (intermediates only). */
void dbr_tensor_unref(dbr_ctx *ctx, dbr_tensor *t);
void dbr_tinfo_of(const dbr_tensor *t, dbr_tinfo *ti);

/* Create a persistent parameter (or buffer) struct with zeroed data. */
dbr_tensor *dbr_param_create(dbr_ctx *ctx, const char *name, dbr_kind kind, int32_t dtype,
                             int ndim, const int64_t *shape);

/* Apply one op: infer, allocate, run (eager), tape when a grad is needed.
 * n->op, n->a, n->api/file/line are set by the caller; inputs come from in.
 * Returns NULL (with the error recorded) on a user error or a NULL input. */
dbr_tensor *dbr_apply(dbr_ctx *ctx, dbr_node *n, int n_in, dbr_tensor *const in[]);

/* Does a gradient flow from op's result into input `in` (eager's tape and
 * compiled mode's requires_grad agree through this)? */
bool dbr_grad_flows(dbr_op op, const dbr_tensor *in);

/* Normalize an axis against ndim (Python style); -1 if out of range. */
int dbr_norm_axis(int axis, int ndim);

/* Drop the tape and the references it holds (step end). */
void dbr_tape_clear(dbr_ctx *ctx);

/* Release t's data now if nothing can read it again: an intermediate that
 * no tape entry retains and the user did not keep. */
void dbr_drop(dbr_ctx *ctx, dbr_tensor *t);

/* ---- compiled and meta modes (trace.c) ---- */
static inline bool dbr_recording(const dbr_ctx *ctx) {
    return ctx->cfg.mode == DBR_MODE_COMPILED || ctx->cfg.mode == DBR_MODE_META;
}
/* Record node n over inputs (already checked non-NULL) into the step's
 * graph; returns the new tensor (no data) or NULL with the error set. */
dbr_tensor *dbr_trace_apply(dbr_ctx *ctx, dbr_node *n, int n_in, dbr_tensor *const in[]);
/* A leaf tensor (input) created in this step gets its ordinal. */
int dbr_trace_input(dbr_ctx *ctx, dbr_tensor *t);
/* Compute what is pending and, when `want` is given, that tensor's value:
 * compile (or fetch from the cache) and run a plan. 0 or -1. */
int dbr_trace_flush(dbr_ctx *ctx, dbr_tensor *want, const char *file, int line);
/* dbr_optim_step in compiled and meta modes: record the update of every
 * parameter that has a gradient this step (phase OPT) and, compiled, run
 * the step. */
int dbr_trace_optim(dbr_ctx *ctx, const char *file, int line);
int dbr_trace_backward(dbr_ctx *ctx, dbr_tensor *loss, const char *file, int line);
int dbr_trace_effect(dbr_ctx *ctx, const dbr_effect *e);
/* Step end: flush what is pending (compiled), forget the recording. */
int dbr_trace_step_end(dbr_ctx *ctx);
void dbr_trace_free(dbr_ctx *ctx);
int dbr_param_grad_add(dbr_ctx *ctx, dbr_tensor *p, const void *g);
/* Shared with trace.c: optimizer update of every parameter with a grad. */
int dbr_optim_apply(dbr_ctx *ctx, const char *file, int line);
int dbr_optim_ensure_state(dbr_ctx *ctx, const char *file, int line);
/* Optimizer state of the parameter with creation index slot: which 0 is
 * momentum / Adam's first moment, 1 Adam's second; NULL if none. */
void *dbr_optim_state_of(dbr_ctx *ctx, int32_t slot, int which);
/* Shared with trace.c: batch norm running statistics from BN_STATS data. */
void dbr_bn_update_running(dbr_tensor *rm, dbr_tensor *rv, int32_t dtype, const void *stats,
                           int64_t c, double momentum, int64_t count);

/* Optimizer state teardown (ctx free). */
void dbr_optim_free_state(dbr_ctx *ctx);

#endif
