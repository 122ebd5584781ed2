/* ctx.c: the context (configuration, errors, steps, memory accounting) and
 * the counted, size-keyed allocator every tensor's data comes from. */
#include "frontend/internal.h"
#include "runtime/cuda.h"
#include "runtime/prof.h"
#include "runtime/runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dbr_config dbr_config_default(void) {
    return (dbr_config){.device = DBR_DEVICE_CPU, .mode = DBR_MODE_EAGER, .seed = 0,
                        .threads = 0, .memory_budget = 0};
}

void dbr_set_error(dbr_ctx *ctx, const char *file, int line, const char *api, const char *fmt,
                   ...) {
    if (!ctx || ctx->has_err) return; /* the first error is the one that explains */
    const char *base = file ? strrchr(file, '/') : NULL;
    base = base ? base + 1 : file;
    int n = 0;
    if (base) n = snprintf(ctx->err, sizeof ctx->err, "%s:%d: ", base, line);
    if (n < 0 || n >= (int)sizeof ctx->err) n = 0;
    int m = snprintf(ctx->err + n, sizeof ctx->err - (size_t)n, "%s: ", api ? api : "dbr");
    if (m > 0 && n + m < (int)sizeof ctx->err) n += m;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err + n, sizeof ctx->err - (size_t)n, fmt, ap);
    va_end(ap);
    ctx->has_err = true;
}

const char *dbr_error(const dbr_ctx *ctx) { return ctx && ctx->has_err ? ctx->err : NULL; }

void dbr_clear_error(dbr_ctx *ctx) {
    if (!ctx || ctx->bad_config) return; /* an unusable context stays unusable */
    ctx->has_err = false;
    ctx->err[0] = 0;
}

/* ---- allocator --------------------------------------------------------
 * Training steps ask for the same sizes every step; keeping freed blocks in
 * exact-size bins avoids both malloc cost and the first-touch page faults
 * of fresh memory (see ENVIRONMENT.md: ~11 us per page). */
#define BINS 512
#define CACHE_MAX ((int64_t)1 << 31)

typedef struct block {
    struct block *next;
} block;

static struct {
    int64_t size[BINS];
    block *head[BINS];
    int64_t cached;
} cache;

static unsigned bin_of(int64_t bytes) {
    uint64_t h = (uint64_t)bytes * 0x9E3779B97F4A7C15ull;
    return (unsigned)(h >> 55) % BINS;
}

static int64_t round_up(int64_t bytes) { return (bytes + 63) & ~(int64_t)63; }

void *dbr_mem_alloc(dbr_ctx *ctx, int64_t bytes) {
    int64_t sz = round_up(bytes > 0 ? bytes : 1);
    unsigned b = bin_of(sz);
    void *p = NULL;
    for (unsigned k = 0; k < BINS; k++) {
        unsigned i = (b + k) % BINS;
        if (cache.size[i] == 0) break;
        if (cache.size[i] == sz) {
            if (cache.head[i]) {
                p = cache.head[i];
                cache.head[i] = cache.head[i]->next;
                cache.cached -= sz;
            }
            break;
        }
    }
    if (!p) p = aligned_alloc(64, (size_t)sz);
    if (p && ctx) {
        ctx->live_bytes += sz;
        if (ctx->live_bytes > ctx->peak_bytes) ctx->peak_bytes = ctx->live_bytes;
    }
    return p;
}

void dbr_mem_free(dbr_ctx *ctx, void *p, int64_t bytes) {
    if (!p) return;
    int64_t sz = round_up(bytes > 0 ? bytes : 1);
    if (ctx) ctx->live_bytes -= sz;
    if (cache.cached + sz <= CACHE_MAX) {
        unsigned b = bin_of(sz);
        for (unsigned k = 0; k < BINS; k++) {
            unsigned i = (b + k) % BINS;
            if (cache.size[i] == 0) cache.size[i] = sz;
            if (cache.size[i] == sz) {
                block *blk = p;
                blk->next = cache.head[i];
                cache.head[i] = blk;
                cache.cached += sz;
                return;
            }
        }
    }
    free(p);
}

void dbr_mem_trim(void) {
    for (unsigned i = 0; i < BINS; i++) {
        while (cache.head[i]) {
            block *n = cache.head[i]->next;
            free(cache.head[i]);
            cache.head[i] = n;
        }
    }
    cache.cached = 0;
}

/* ---- context ---------------------------------------------------------- */
dbr_ctx *dbr_ctx_new(const dbr_config *cfg) {
    dbr_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->cfg = cfg ? *cfg : dbr_config_default();
    ctx->training = true;
    ctx->grad_enabled = true;
    ctx->tr.bwd_loss = -1;
    const char *where = "dbr_ctx_new";
    if (ctx->cfg.device == DBR_DEVICE_CUDA) {
        char msg[512];
        int n = dbr_cuda_probe(msg, sizeof msg);
        if (n <= 0)
            dbr_set_error(ctx, NULL, 0, where, "device cuda: %s", msg);
        else
            dbr_set_error(ctx, NULL, 0, where,
                          "device cuda: %d device(s) found, but the CUDA backend does not run "
                          "ops yet; use DBR_DEVICE_CPU",
                          n);
        ctx->bad_config = true;
    } else if (ctx->cfg.device != DBR_DEVICE_CPU) {
        dbr_set_error(ctx, NULL, 0, where, "unknown device %d", (int)ctx->cfg.device);
        ctx->bad_config = true;
    } else if (ctx->cfg.mode != DBR_MODE_EAGER && ctx->cfg.mode != DBR_MODE_META &&
               ctx->cfg.mode != DBR_MODE_COMPILED) {
        dbr_set_error(ctx, NULL, 0, where, "unknown mode %d", (int)ctx->cfg.mode);
        ctx->bad_config = true;
    } else if (ctx->cfg.threads < 0) {
        dbr_set_error(ctx, NULL, 0, where, "threads must be >= 0, got %d", ctx->cfg.threads);
        ctx->bad_config = true;
    } else if (ctx->cfg.memory_budget < 0) {
        dbr_set_error(ctx, NULL, 0, where, "memory_budget must be >= 0, got %lld",
                      (long long)ctx->cfg.memory_budget);
        ctx->bad_config = true;
    } else if (!(ctx->cfg.memory_budget_frac >= 0 && ctx->cfg.memory_budget_frac <= 1)) {
        dbr_set_error(ctx, NULL, 0, where, "memory_budget_frac must be in [0, 1], got %g",
                      ctx->cfg.memory_budget_frac);
        ctx->bad_config = true;
    } else if ((unsigned)ctx->cfg.recompute > DBR_RECOMPUTE_ILP) {
        dbr_set_error(ctx, NULL, 0, where, "unknown recompute strategy %d", (int)ctx->cfg.recompute);
        ctx->bad_config = true;
    }
    if (ctx->cfg.threads > 0) dbr_cpu_set_threads(ctx->cfg.threads);
    return ctx;
}

static void free_tensor_list(dbr_ctx *ctx, dbr_tensor *t) {
    while (t) {
        dbr_tensor *n = t->next;
        dbr_tensor_release_data(ctx, t);
        free(t);
        t = n;
    }
}

void dbr_ctx_free(dbr_ctx *ctx) {
    if (!ctx) return;
    dbr_step_end(ctx);
    dbr_trace_free(ctx);
    dbr_optim_free_state(ctx);
    for (dbr_tensor *p = ctx->params; p; p = p->next) {
        if (p->grad) {
            dbr_tensor_release_data(ctx, p->grad);
            free(p->grad);
        }
        free((char *)p->name);
    }
    free_tensor_list(ctx, ctx->params);
    free(ctx->tape);
    dbr_prof_free(ctx->prof);
    free(ctx);
    dbr_mem_trim();
}

const dbr_config *dbr_ctx_config(const dbr_ctx *ctx) { return &ctx->cfg; }

void dbr_set_training(dbr_ctx *ctx, bool training) { ctx->training = training; }
bool dbr_training(const dbr_ctx *ctx) { return ctx->training; }

void dbr_step_begin(dbr_ctx *ctx) {
    if (ctx->in_step || ctx->step_tensors) dbr_step_end(ctx);
    ctx->in_step = true;
}

int dbr_step_end(dbr_ctx *ctx) {
    if (dbr_recording(ctx) && dbr_trace_step_end(ctx)) ctx->has_err = true;
    dbr_tape_clear(ctx);
    free_tensor_list(ctx, ctx->step_tensors);
    ctx->step_tensors = NULL;
    if (ctx->in_step) ctx->step++;
    ctx->in_step = false;
    ctx->rand_calls = 0;
    return ctx->has_err ? -1 : 0;
}

int64_t dbr_step_index(const dbr_ctx *ctx) { return ctx->step; }
int64_t dbr_live_bytes(const dbr_ctx *ctx) { return ctx->live_bytes; }
int64_t dbr_peak_bytes(const dbr_ctx *ctx) { return ctx->peak_bytes; }
void dbr_reset_peak(dbr_ctx *ctx) { ctx->peak_bytes = ctx->live_bytes; }

/* ---- profiling: the event log lives in runtime/prof.c ------------------ */
void dbr_prof_enable(dbr_ctx *ctx, bool on) {
    if (!ctx->prof && on) ctx->prof = calloc(1, sizeof *ctx->prof);
    if (ctx->prof)
        ctx->prof->on = on;
    else if (on)
        dbr_set_error(ctx, NULL, 0, "dbr_prof_enable", "out of memory");
}

bool dbr_prof_enabled(const dbr_ctx *ctx) { return ctx->prof && ctx->prof->on; }

int64_t dbr_prof_events(const dbr_ctx *ctx, const dbr_prof_event **ev) {
    if (ev) *ev = ctx->prof ? ctx->prof->ev : NULL;
    return ctx->prof ? ctx->prof->n : 0;
}

void dbr_prof_reset(dbr_ctx *ctx) {
    if (ctx->prof) dbr_prof_clear(ctx->prof);
}

const char *dbr_dtype_name(dbr_dtype dt) {
    return (unsigned)dt < DBR_NDTYPES ? dbr_dt_name((int32_t)dt) : "?";
}
size_t dbr_dtype_size(dbr_dtype dt) {
    return (unsigned)dt < DBR_NDTYPES ? dbr_dt_size((int32_t)dt) : 0;
}

int dbr_norm_axis(int axis, int ndim) {
    int a = axis < 0 ? axis + ndim : axis;
    return a >= 0 && a < ndim ? a : -1;
}
