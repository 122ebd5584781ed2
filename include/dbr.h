/* dbr.h: the whole public API of dbr, a define-by-run graph compiler in C.
 * A model is a plain C function calling dbr_* ops; the same function runs
 * eagerly now, and is recorded into an IR graph in compiled and meta modes. */
#ifndef DBR_H
#define DBR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DBR_MAX_DIMS 8

typedef enum dbr_dtype {
    DBR_F32, DBR_F64, DBR_I32, DBR_I64,
    DBR_F16, DBR_BF16, /* reserved: no kernels yet */
    DBR_NDTYPES
} dbr_dtype;

typedef enum dbr_device { DBR_DEVICE_CPU, DBR_DEVICE_CUDA } dbr_device;
typedef enum dbr_mode { DBR_MODE_EAGER, DBR_MODE_COMPILED, DBR_MODE_META } dbr_mode;

/* How compiled mode picks the forward values to recompute under a budget. */
typedef enum dbr_recompute {
    DBR_RECOMPUTE_AUTO, /* the best of the planners below that fits */
    DBR_RECOMPUTE_NONE,
    DBR_RECOMPUTE_CHEN, /* sqrt(n) segments (Chen et al. 2016), greedy under a budget */
    DBR_RECOMPUTE_DP,   /* lower-set dynamic programming (Kusumoto et al. 2019) */
    DBR_RECOMPUTE_ILP   /* exact MILP (GLPK), small graphs only */
} dbr_recompute;

typedef struct dbr_config {
    dbr_device device;
    dbr_mode mode;
    uint64_t seed;          /* drives parameter init, dropout, data shuffling */
    int threads;            /* BLAS and kernel threads; 0 = library default */
    /* Compiled mode: every device allocation of a step (parameters,
     * optimizer state, inputs, outputs, the arena of activations and
     * gradients) stays within the budget, recomputing forward values in
     * backward as needed; a step that cannot fit is an error naming the
     * least peak it can reach. Bytes, or (when memory_budget is 0) a
     * fraction in (0, 1] of the step's peak without recomputation. */
    int64_t memory_budget;
    double memory_budget_frac;
    dbr_recompute recompute;
    /* Compiled mode fuses chains of element-wise work (and a trailing sum,
     * mean or max) into generated kernels; true turns that off, as the
     * environment variable DBR_NO_FUSE=1 does. */
    bool no_fuse;
} dbr_config;

typedef struct dbr_ctx dbr_ctx;

typedef enum dbr_kind {
    DBR_KIND_INTERMEDIATE, /* step-scoped result of an op */
    DBR_KIND_PARAM,        /* persistent, trainable */
    DBR_KIND_BUFFER,       /* persistent, not trainable (running stats) */
    DBR_KIND_INPUT,        /* step-scoped, bound to user memory or copied in */
    DBR_KIND_CONST,        /* step-scoped constant (dbr_scalar, dbr_full) */
    DBR_KIND_GRAD          /* gradient of a parameter */
} dbr_kind;

/* A tensor is a flat struct anyone can print in a debugger. Data is always
 * row-major and contiguous. Fields after `grad` belong to the library. */
typedef struct dbr_tensor {
    dbr_dtype dtype;
    int ndim;
    int64_t shape[DBR_MAX_DIMS];
    int64_t numel;
    void *data;                /* NULL in meta mode, or once released */
    const char *name;          /* parameters and buffers; else NULL */
    struct dbr_tensor *grad;   /* parameters: accumulated gradient */
    dbr_kind kind;
    bool requires_grad;
    /* library internal */
    bool owns_data;            /* false for inputs bound to user memory */
    bool kept;                 /* dbr_keep: survives dbr_backward */
    bool pending;              /* created by dbr_load, not yet claimed */
    int32_t refs;              /* reasons the data must stay alive */
    int32_t tape_id;           /* producing tape entry, -1 if none */
    int32_t vid;               /* compiled/meta: value id in the step's graph */
    int64_t vgen;              /* ... valid while this equals the graph's generation */
    int64_t nbytes;
    struct dbr_tensor *next;   /* step list / parameter list */
} dbr_tensor;

/* ---- context ---------------------------------------------------------- */
dbr_config dbr_config_default(void);
/* NULL only when out of memory; a bad config is reported by dbr_error. */
dbr_ctx *dbr_ctx_new(const dbr_config *cfg);
void dbr_ctx_free(dbr_ctx *ctx);
const dbr_config *dbr_ctx_config(const dbr_ctx *ctx);

/* The first user error since the last dbr_clear_error, or NULL. It reads
 * `file:line: dbr_op: what went wrong`. */
const char *dbr_error(const dbr_ctx *ctx);
void dbr_clear_error(dbr_ctx *ctx);

/* Training mode (default true): dropout is active and batch_norm uses batch
 * statistics and updates its running statistics. */
void dbr_set_training(dbr_ctx *ctx, bool training);
bool dbr_training(const dbr_ctx *ctx);

/* A step brackets one forward/backward/update. dbr_step_end frees every
 * step-scoped tensor; pointers to them are invalid afterwards. */
void dbr_step_begin(dbr_ctx *ctx);
int dbr_step_end(dbr_ctx *ctx);
int64_t dbr_step_index(const dbr_ctx *ctx);

/* Bytes the context holds now, and the most it ever held (parameters,
 * gradients, optimizer state, inputs and step tensors). */
int64_t dbr_live_bytes(const dbr_ctx *ctx);
int64_t dbr_peak_bytes(const dbr_ctx *ctx);
void dbr_reset_peak(dbr_ctx *ctx);

/* Compiled mode's bookkeeping (zeros in eager mode): plan cache hits and
 * misses, time spent compiling, graph breaks (reads of values that forced
 * part of a step to run early), and the last plan's arena and its lower
 * bound (the most bytes simultaneously live in its schedule). */
/* The memory of a compiled step, as planned: the arena is what memplan
 * laid out; the other parts are what the device holds beside it while the
 * plan runs. */
typedef struct dbr_step_mem {
    int64_t budget;        /* bytes; 0 = none */
    int64_t peak;          /* the parts below together */
    int64_t params;        /* parameters and buffers the plan reads */
    int64_t optim_state;
    int64_t inputs;        /* inputs, values computed earlier in the step, constants */
    int64_t outputs;       /* copied out (loss, kept values), gradient buffers */
    int64_t arena;         /* activations, gradients and scratch */
    int64_t grads;         /* of the arena: parameter gradients */
    int64_t noremat_arena; /* the arena with nothing recomputed */
    int32_t recomputed;    /* forward ops run again in backward */
    double recompute_pct;  /* their time as % of the forward pass (cost model) */
    double plan_ms;        /* planning under the budget */
    bool feasible;         /* peak <= budget (always when there is none) */
    int64_t min_peak;      /* the least peak any plan tried reached */
    const char *strategy;  /* the planner whose plan was taken: none, chen, dp, ilp */
} dbr_step_mem;

typedef struct dbr_stats {
    int64_t cache_hits, cache_misses, plans;
    double compile_ms;
    int64_t graph_breaks, flushes;
    int64_t arena_bytes, arena_lower_bound;
    int64_t pass_free_hits; /* hits found before autodiff: no pass ran at all */
    double host_ms; /* recording ops, cutting, hashing, cache lookups, binding */
    double run_ms;  /* running plans */
    dbr_step_mem mem; /* of the last compiled plan run */
    int64_t fused_groups, fused_ops; /* in the plans compiled: kernels made, ops they hold */
    /* the process's code generator so far: kernels compiled (JIT) and the
     * time it took, kernels loaded from the disk cache and the time that took */
    int64_t jit_kernels, jit_disk_hits;
    double jit_ms, jit_disk_ms;
} dbr_stats;
void dbr_stats_get(const dbr_ctx *ctx, dbr_stats *out);

/* ---- profiling ----------------------------------------------------------
 * While enabled, the context records one event per kernel it runs: each op
 * in eager mode, each launch of a plan in compiled mode (a fused kernel is
 * one launch). Times are host wall time, CLOCK_MONOTONIC; CPU kernels are
 * synchronous, so that is the kernel's time. Off (the default), profiling
 * costs one branch per kernel. docs/prof.md explains the `dbr prof` tool
 * built on this. */
typedef struct dbr_prof_event {
    const char *name;  /* the op ("matmul"), or a fused kernel's name ("f_add_gelu_64x3072") */
    const char *phase; /* "fwd", "bwd", "opt" or "recomp" (eager: "fwd" or "bwd") */
    int64_t t0_ns, dur_ns;
    int64_t bytes;     /* the inputs' bytes plus the output's */
    double flops;      /* matmul and convolutions (2 per multiply-add); else 0 */
    bool lib;          /* a library call did the work (BLAS matmul, conv2d and its gradients) */
    char src[160];     /* "op@file:line" of the user's op, or of each op fused, space separated */
} dbr_prof_event;
void dbr_prof_enable(dbr_ctx *ctx, bool on);
bool dbr_prof_enabled(const dbr_ctx *ctx);
/* The events since the last reset, oldest first, through *ev (valid until
 * the next op, step or reset); returns their count. At most 2^20 are kept. */
int64_t dbr_prof_events(const dbr_ctx *ctx, const dbr_prof_event **ev);
void dbr_prof_reset(dbr_ctx *ctx);

/* Plans the step recorded so far (compiled or meta mode) as one compiled
 * plan under the context's memory budget, without running it: autodiff,
 * simplification, recomputation and memplan, as dbr_optim_step would. In
 * meta mode this plans models far larger than the machine. A budget that
 * cannot be met is not an error here: out->feasible is false and
 * out->min_peak says how low the step can go. 0, or -1 with dbr_error set
 * (eager mode, nothing recorded, out of memory). */
int dbr_plan_step_(dbr_ctx *ctx, dbr_step_mem *out, const char *file, int line);
#define dbr_plan_step(ctx, out) dbr_plan_step_(ctx, out, __FILE__, __LINE__)

/* The current step's recorded IR graph (compiled and meta modes; NULL in
 * eager mode), with the backward pass appended once dbr_backward was
 * called. For tools that print or draw it (ir/graph.h describes it). */
struct dbr_graph;
const struct dbr_graph *dbr_graph_of(dbr_ctx *ctx);

/* ---- shapes ----------------------------------------------------------- */
/* DBR_SHAPE(2, 3) expands to `2, (const int64_t[]){2, 3}`: ndim, dims. The
 * macros that take a shape are variadic so DBR_SHAPE can fill two slots. */
#define DBR_NARGS_(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define DBR_SHAPE(...) DBR_NARGS_(__VA_ARGS__), (const int64_t[]){__VA_ARGS__}
#define DBR_AXES(...) DBR_NARGS_(__VA_ARGS__), (const int[]){__VA_ARGS__}
#define DBR_ALL_AXES 0, (const int *)0

const char *dbr_dtype_name(dbr_dtype dt);
size_t dbr_dtype_size(dbr_dtype dt);

/* ---- parameters, inputs, constants ------------------------------------ */
typedef enum dbr_init {
    DBR_INIT_ZEROS, DBR_INIT_ONES,
    DBR_INIT_KAIMING_UNIFORM, DBR_INIT_KAIMING_NORMAL,  /* fan_in, gain sqrt(2) */
    DBR_INIT_XAVIER_UNIFORM, DBR_INIT_XAVIER_NORMAL
} dbr_init;

/* A named parameter persists across steps: the first call creates and
 * initializes it from the seeded generator, later calls with the same name
 * return it (shape and dtype must agree). fan_in/fan_out come from the shape:
 * [out, in, k...] as in PyTorch. */
dbr_tensor *dbr_param_(dbr_ctx *ctx, const char *name, dbr_dtype dt, int ndim,
                       const int64_t *shape, dbr_init init, const char *file, int line);
#define dbr_param(ctx, name, dt, ...) dbr_param_(ctx, name, dt, __VA_ARGS__, __FILE__, __LINE__)
/* A bias of `n` elements initialized U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
dbr_tensor *dbr_param_bias_(dbr_ctx *ctx, const char *name, dbr_dtype dt, int64_t n,
                            int64_t fan_in, const char *file, int line);
#define dbr_param_bias(ctx, name, dt, n, fan_in) \
    dbr_param_bias_(ctx, name, dt, n, fan_in, __FILE__, __LINE__)
/* A persistent, non-trainable tensor (running statistics, counters): f32,
 * f64, i32 or i64, filled with `fill` when created. */
dbr_tensor *dbr_buffer_(dbr_ctx *ctx, const char *name, dbr_dtype dt, int ndim,
                        const int64_t *shape, double fill, const char *file, int line);
#define dbr_buffer(ctx, name, dt, ...) dbr_buffer_(ctx, name, dt, __VA_ARGS__, __FILE__, __LINE__)

/* Iterate parameters and buffers in creation order: start with NULL. */
dbr_tensor *dbr_params_next(dbr_ctx *ctx, dbr_tensor *prev);
dbr_tensor *dbr_param_find(dbr_ctx *ctx, const char *name);

/* A step-scoped input. copy=false binds user memory (it must outlive the
 * step); copy=true copies it. */
dbr_tensor *dbr_input_(dbr_ctx *ctx, dbr_dtype dt, int ndim, const int64_t *shape,
                       const void *data, bool copy, const char *file, int line);
#define dbr_input(ctx, dt, ...) dbr_input_(ctx, dt, __VA_ARGS__, __FILE__, __LINE__)
dbr_tensor *dbr_scalar_(dbr_ctx *ctx, double v, dbr_dtype dt, const char *file, int line);
#define dbr_scalar(ctx, v, dt) dbr_scalar_(ctx, v, dt, __FILE__, __LINE__)
dbr_tensor *dbr_full_(dbr_ctx *ctx, dbr_dtype dt, int ndim, const int64_t *shape, double v,
                      const char *file, int line);
#define dbr_full(ctx, dt, ...) dbr_full_(ctx, dt, __VA_ARGS__, __FILE__, __LINE__)

/* Reading a value. In compiled mode (next milestone) this cuts the graph. */
double dbr_item_(dbr_ctx *ctx, dbr_tensor *t, const char *file, int line);
#define dbr_item(ctx, t) dbr_item_(ctx, t, __FILE__, __LINE__)
int dbr_copy_out_(dbr_ctx *ctx, dbr_tensor *t, void *dst, size_t bytes, const char *file, int line);
#define dbr_copy_out(ctx, t, dst, bytes) dbr_copy_out_(ctx, t, dst, bytes, __FILE__, __LINE__)
/* Keep an intermediate alive through dbr_backward (which otherwise frees
 * each intermediate once backward has no further use for it). */
void dbr_keep(dbr_tensor *t);

/* ---- ops: every entry point is a macro passing the caller's file:line.
 * A NULL input gives NULL silently (the first error is already recorded). */
#define DBR_OP1(fn) dbr_tensor *fn##_(dbr_ctx *ctx, dbr_tensor *x, const char *file, int line);
#define DBR_OP2(fn) dbr_tensor *fn##_(dbr_ctx *ctx, dbr_tensor *a, dbr_tensor *b, const char *file, int line);
DBR_OP2(dbr_add) DBR_OP2(dbr_sub) DBR_OP2(dbr_mul) DBR_OP2(dbr_div)
DBR_OP1(dbr_neg) DBR_OP1(dbr_exp) DBR_OP1(dbr_log) DBR_OP1(dbr_sqrt) DBR_OP1(dbr_rsqrt)
DBR_OP1(dbr_abs) DBR_OP1(dbr_tanh) DBR_OP1(dbr_sigmoid) DBR_OP1(dbr_relu)
DBR_OP1(dbr_gelu) DBR_OP1(dbr_silu)
#undef DBR_OP1
#undef DBR_OP2
#define dbr_add(ctx, a, b) dbr_add_(ctx, a, b, __FILE__, __LINE__)
#define dbr_sub(ctx, a, b) dbr_sub_(ctx, a, b, __FILE__, __LINE__)
#define dbr_mul(ctx, a, b) dbr_mul_(ctx, a, b, __FILE__, __LINE__)
#define dbr_div(ctx, a, b) dbr_div_(ctx, a, b, __FILE__, __LINE__)
#define dbr_neg(ctx, x) dbr_neg_(ctx, x, __FILE__, __LINE__)
#define dbr_exp(ctx, x) dbr_exp_(ctx, x, __FILE__, __LINE__)
#define dbr_log(ctx, x) dbr_log_(ctx, x, __FILE__, __LINE__)
#define dbr_sqrt(ctx, x) dbr_sqrt_(ctx, x, __FILE__, __LINE__)
#define dbr_rsqrt(ctx, x) dbr_rsqrt_(ctx, x, __FILE__, __LINE__)
#define dbr_abs(ctx, x) dbr_abs_(ctx, x, __FILE__, __LINE__)
#define dbr_tanh(ctx, x) dbr_tanh_(ctx, x, __FILE__, __LINE__)
#define dbr_sigmoid(ctx, x) dbr_sigmoid_(ctx, x, __FILE__, __LINE__)
#define dbr_relu(ctx, x) dbr_relu_(ctx, x, __FILE__, __LINE__)
#define dbr_gelu(ctx, x) dbr_gelu_(ctx, x, __FILE__, __LINE__)  /* tanh form */
#define dbr_silu(ctx, x) dbr_silu_(ctx, x, __FILE__, __LINE__)

dbr_tensor *dbr_pow_(dbr_ctx *ctx, dbr_tensor *x, double p, const char *file, int line);
#define dbr_pow(ctx, x, p) dbr_pow_(ctx, x, p, __FILE__, __LINE__)
dbr_tensor *dbr_leaky_relu_(dbr_ctx *ctx, dbr_tensor *x, double slope, const char *file, int line);
#define dbr_leaky_relu(ctx, x, slope) dbr_leaky_relu_(ctx, x, slope, __FILE__, __LINE__)
/* x * s for a Python-style scalar s (a composite of dbr_mul). */
dbr_tensor *dbr_scale_(dbr_ctx *ctx, dbr_tensor *x, double s, const char *file, int line);
#define dbr_scale(ctx, x, s) dbr_scale_(ctx, x, s, __FILE__, __LINE__)
/* mask != 0 ? a : b, all three broadcast; mask may have any dtype. */
dbr_tensor *dbr_where_(dbr_ctx *ctx, dbr_tensor *mask, dbr_tensor *a, dbr_tensor *b,
                       const char *file, int line);
#define dbr_where(ctx, m, a, b) dbr_where_(ctx, m, a, b, __FILE__, __LINE__)

/* Reductions over `naxes` axes (negative counts from the end); naxes == 0
 * reduces every axis. Use DBR_AXES(0, 2) or DBR_ALL_AXES. */
dbr_tensor *dbr_sum_(dbr_ctx *ctx, dbr_tensor *x, int naxes, const int *axes, bool keepdims,
                     const char *file, int line);
dbr_tensor *dbr_mean_(dbr_ctx *ctx, dbr_tensor *x, int naxes, const int *axes, bool keepdims,
                      const char *file, int line);
dbr_tensor *dbr_max_(dbr_ctx *ctx, dbr_tensor *x, int naxes, const int *axes, bool keepdims,
                     const char *file, int line);
#define dbr_sum(ctx, x, ...) dbr_sum_(ctx, x, __VA_ARGS__, __FILE__, __LINE__)
#define dbr_mean(ctx, x, ...) dbr_mean_(ctx, x, __VA_ARGS__, __FILE__, __LINE__)
#define dbr_max(ctx, x, ...) dbr_max_(ctx, x, __VA_ARGS__, __FILE__, __LINE__)

/* a @ b over the last two dims, leading dims broadcast; trans_* transposes
 * the last two dims of that operand first. */
dbr_tensor *dbr_matmul_(dbr_ctx *ctx, dbr_tensor *a, dbr_tensor *b, bool trans_a, bool trans_b,
                        const char *file, int line);
#define dbr_matmul(ctx, a, b, ta, tb) dbr_matmul_(ctx, a, b, ta, tb, __FILE__, __LINE__)
/* x [.., in] @ w[out, in]^T + b[out]; b may be NULL. */
dbr_tensor *dbr_linear_(dbr_ctx *ctx, dbr_tensor *x, dbr_tensor *w, dbr_tensor *b,
                        const char *file, int line);
#define dbr_linear(ctx, x, w, b) dbr_linear_(ctx, x, w, b, __FILE__, __LINE__)

/* NCHW. Zeros in the options mean the defaults (stride 1, padding 0,
 * dilation 1, groups 1). Weight [out, in/groups, kh, kw]; bias may be NULL. */
typedef struct dbr_conv2d_opts {
    int stride[2], padding[2], dilation[2], groups;
} dbr_conv2d_opts;
dbr_tensor *dbr_conv2d_(dbr_ctx *ctx, dbr_tensor *x, dbr_tensor *w, dbr_tensor *b,
                        dbr_conv2d_opts o, const char *file, int line);
#define dbr_conv2d(ctx, x, w, b, ...) \
    dbr_conv2d_(ctx, x, w, b, (dbr_conv2d_opts){__VA_ARGS__}, __FILE__, __LINE__)
/* Square windows; stride 0 means stride = kernel. avg counts padding. */
dbr_tensor *dbr_max_pool2d_(dbr_ctx *ctx, dbr_tensor *x, int kernel, int stride, int padding,
                            const char *file, int line);
#define dbr_max_pool2d(ctx, x, k, s, p) dbr_max_pool2d_(ctx, x, k, s, p, __FILE__, __LINE__)
dbr_tensor *dbr_avg_pool2d_(dbr_ctx *ctx, dbr_tensor *x, int kernel, int stride, int padding,
                            const char *file, int line);
#define dbr_avg_pool2d(ctx, x, k, s, p) dbr_avg_pool2d_(ctx, x, k, s, p, __FILE__, __LINE__)
/* [N, C, H, W] -> [N, C] */
dbr_tensor *dbr_global_avg_pool_(dbr_ctx *ctx, dbr_tensor *x, const char *file, int line);
#define dbr_global_avg_pool(ctx, x) dbr_global_avg_pool_(ctx, x, __FILE__, __LINE__)

/* x [N, C, ...]: per-channel normalization. Training mode uses the batch
 * statistics and updates running_mean/var (momentum as in PyTorch: new =
 * (1-m)*old + m*batch, unbiased variance); inference uses the running ones.
 * gamma, beta, running_* may be NULL (no affine / no tracking). */
dbr_tensor *dbr_batch_norm_(dbr_ctx *ctx, dbr_tensor *x, dbr_tensor *gamma, dbr_tensor *beta,
                            dbr_tensor *running_mean, dbr_tensor *running_var, double momentum,
                            double eps, const char *file, int line);
#define dbr_batch_norm(ctx, x, g, b, rm, rv, mom, eps) \
    dbr_batch_norm_(ctx, x, g, b, rm, rv, mom, eps, __FILE__, __LINE__)
/* Normalize over the last dim; gamma, beta [D] or NULL. */
dbr_tensor *dbr_layer_norm_(dbr_ctx *ctx, dbr_tensor *x, dbr_tensor *gamma, dbr_tensor *beta,
                            double eps, const char *file, int line);
#define dbr_layer_norm(ctx, x, g, b, eps) dbr_layer_norm_(ctx, x, g, b, eps, __FILE__, __LINE__)

dbr_tensor *dbr_softmax_(dbr_ctx *ctx, dbr_tensor *x, int axis, const char *file, int line);
#define dbr_softmax(ctx, x, axis) dbr_softmax_(ctx, x, axis, __FILE__, __LINE__)
dbr_tensor *dbr_log_softmax_(dbr_ctx *ctx, dbr_tensor *x, int axis, const char *file, int line);
#define dbr_log_softmax(ctx, x, axis) dbr_log_softmax_(ctx, x, axis, __FILE__, __LINE__)
/* logits [N, C], labels [N] of i32/i64 in [0, C): mean over the batch. */
dbr_tensor *dbr_cross_entropy_(dbr_ctx *ctx, dbr_tensor *logits, dbr_tensor *labels,
                               const char *file, int line);
#define dbr_cross_entropy(ctx, z, y) dbr_cross_entropy_(ctx, z, y, __FILE__, __LINE__)
/* mean((a - b)^2) over all elements */
dbr_tensor *dbr_mse_(dbr_ctx *ctx, dbr_tensor *a, dbr_tensor *b, const char *file, int line);
#define dbr_mse(ctx, a, b) dbr_mse_(ctx, a, b, __FILE__, __LINE__)

/* weight [V, D], idx of i32/i64 with any shape -> idx.shape + [D] */
dbr_tensor *dbr_embedding_(dbr_ctx *ctx, dbr_tensor *weight, dbr_tensor *idx,
                           const char *file, int line);
#define dbr_embedding(ctx, w, i) dbr_embedding_(ctx, w, i, __FILE__, __LINE__)

/* One dim may be -1 (inferred). */
dbr_tensor *dbr_reshape_(dbr_ctx *ctx, dbr_tensor *x, int ndim, const int64_t *shape,
                         const char *file, int line);
#define dbr_reshape(ctx, x, ...) dbr_reshape_(ctx, x, __VA_ARGS__, __FILE__, __LINE__)
dbr_tensor *dbr_permute_(dbr_ctx *ctx, dbr_tensor *x, int ndim, const int *perm,
                         const char *file, int line);
#define dbr_permute(ctx, x, ...) dbr_permute_(ctx, x, __VA_ARGS__, __FILE__, __LINE__)
dbr_tensor *dbr_transpose_(dbr_ctx *ctx, dbr_tensor *x, int axis0, int axis1,
                           const char *file, int line);
#define dbr_transpose(ctx, x, a0, a1) dbr_transpose_(ctx, x, a0, a1, __FILE__, __LINE__)
/* x[..., start:stop:step, ...] along `axis`; Python rules for negatives and
 * clamping; step >= 1. */
dbr_tensor *dbr_slice_(dbr_ctx *ctx, dbr_tensor *x, int axis, int64_t start, int64_t stop,
                       int64_t step, const char *file, int line);
#define dbr_slice(ctx, x, axis, start, stop, step) \
    dbr_slice_(ctx, x, axis, start, stop, step, __FILE__, __LINE__)
#define DBR_MAX_CONCAT 8
dbr_tensor *dbr_concat_(dbr_ctx *ctx, int n, dbr_tensor *const *xs, int axis,
                        const char *file, int line);
#define dbr_concat(ctx, n, xs, axis) dbr_concat_(ctx, n, xs, axis, __FILE__, __LINE__)
dbr_tensor *dbr_broadcast_to_(dbr_ctx *ctx, dbr_tensor *x, int ndim, const int64_t *shape,
                              const char *file, int line);
#define dbr_broadcast_to(ctx, x, ...) dbr_broadcast_to_(ctx, x, __VA_ARGS__, __FILE__, __LINE__)
/* Inverted dropout; identity outside training mode. The mask is drawn from a
 * counter-based generator keyed by (seed, step, call index in the step). */
dbr_tensor *dbr_dropout_(dbr_ctx *ctx, dbr_tensor *x, double p, const char *file, int line);
#define dbr_dropout(ctx, x, p) dbr_dropout_(ctx, x, p, __FILE__, __LINE__)

/* ---- autodiff and optimizers ------------------------------------------ */
/* Accumulates d(loss)/d(param) into every parameter's grad (loss must have
 * one element). Frees each intermediate once backward is done with it,
 * except those passed to dbr_keep. Returns 0, or -1 with dbr_error set. */
int dbr_backward_(dbr_ctx *ctx, dbr_tensor *loss, const char *file, int line);
#define dbr_backward(ctx, loss) dbr_backward_(ctx, loss, __FILE__, __LINE__)
void dbr_zero_grad(dbr_ctx *ctx);

typedef enum dbr_optim_kind { DBR_SGD, DBR_MOMENTUM, DBR_ADAM, DBR_ADAMW } dbr_optim_kind;
typedef struct dbr_optim {
    dbr_optim_kind kind;
    double lr;
    double momentum;      /* DBR_MOMENTUM; default 0.9 when 0 */
    bool nesterov;
    double beta1, beta2;  /* Adam; defaults 0.9, 0.999 when 0 */
    double eps;           /* Adam; default 1e-8 when 0 */
    double weight_decay;  /* L2 added to the gradient; decoupled for AdamW */
} dbr_optim;
/* Set (or replace) the context's optimizer; state is created lazily. */
int dbr_optim_set_(dbr_ctx *ctx, const dbr_optim *opt, const char *file, int line);
#define dbr_optim_set(ctx, ...) dbr_optim_set_(ctx, __VA_ARGS__, __FILE__, __LINE__)
void dbr_optim_set_lr(dbr_ctx *ctx, double lr);
/* Update every trainable parameter from its gradient, then zero the
 * gradients. */
int dbr_optim_step_(dbr_ctx *ctx, const char *file, int line);
#define dbr_optim_step(ctx) dbr_optim_step_(ctx, __FILE__, __LINE__)

/* ---- files ------------------------------------------------------------ */
/* Parameters and buffers as NumPy .npz (compressed with zlib when asked).
 * Written to a temporary name and renamed into place. */
int dbr_save_(dbr_ctx *ctx, const char *path, bool compress, const char *file, int line);
#define dbr_save(ctx, path, compress) dbr_save_(ctx, path, compress, __FILE__, __LINE__)
/* Loads every array by name. Existing parameters must match in shape and
 * dtype; arrays not yet created become parameters that a later dbr_param
 * call with that name picks up (and checks). */
int dbr_load_(dbr_ctx *ctx, const char *path, const char *file, int line);
#define dbr_load(ctx, path) dbr_load_(ctx, path, __FILE__, __LINE__)

/* ---- data ------------------------------------------------------------- */
typedef struct dbr_dataset {
    int64_t n, rows, cols;  /* n images of rows x cols */
    float *images;          /* n*rows*cols, scaled to [0, 1] */
    int32_t *labels;        /* n */
} dbr_dataset;
/* Reads gzip'd (or plain) IDX image and label files. */
int dbr_mnist_load_(dbr_ctx *ctx, const char *images_path, const char *labels_path,
                    dbr_dataset *out, const char *file, int line);
#define dbr_mnist_load(ctx, img, lbl, out) dbr_mnist_load_(ctx, img, lbl, out, __FILE__, __LINE__)
/* $DBR_FASHION_MNIST, or the Debian dataset-fashion-mnist folder. */
const char *dbr_fashion_mnist_dir(void);
/* train=true: train-*; false: t10k-*. Paths under dbr_fashion_mnist_dir(). */
int dbr_fashion_mnist_(dbr_ctx *ctx, bool train, dbr_dataset *out, const char *file, int line);
#define dbr_fashion_mnist(ctx, train, out) dbr_fashion_mnist_(ctx, train, out, __FILE__, __LINE__)
void dbr_dataset_free(dbr_dataset *ds);

/* Seeded, shuffled mini-batches; the last partial batch is dropped when
 * drop_last. An epoch's order depends only on (seed, epoch). The loader
 * points into ds, which must outlive it. */
typedef struct dbr_loader dbr_loader;
dbr_loader *dbr_loader_new(const dbr_dataset *ds, int64_t batch, bool shuffle, bool drop_last,
                           uint64_t seed);
void dbr_loader_free(dbr_loader *ld);
void dbr_loader_epoch(dbr_loader *ld, int64_t epoch);   /* reshuffle */
int64_t dbr_loader_batches(const dbr_loader *ld);
/* Fills x [b, rows*cols] and y [b] (caller's buffers of the full batch size)
 * with the next batch; returns its size, 0 at the end of the epoch (which
 * stays ended until dbr_loader_epoch(ld, e + 1) starts the next). */
int64_t dbr_loader_next(dbr_loader *ld, float *x, int32_t *y);

#ifdef __cplusplus
}
#endif
#endif
