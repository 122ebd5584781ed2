/* optim.c: the context's optimizer (SGD, momentum, Adam, AdamW) and its
 * per-parameter state, created on the first step and counted in memory. */
#include "frontend/internal.h"
#include "ir/graph.h"
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

struct dbr_optim_state {
    dbr_tensor *param;
    int32_t slot; /* creation index among parameters and buffers */
    void *m, *v; /* momentum / first moment, second moment */
    int64_t bytes;
};

void dbr_optim_free_state(dbr_ctx *ctx) {
    for (int64_t i = 0; i < ctx->ostate_len; i++) {
        dbr_mem_free(ctx, ctx->ostate[i].m, ctx->ostate[i].bytes);
        dbr_mem_free(ctx, ctx->ostate[i].v, ctx->ostate[i].bytes);
    }
    free(ctx->ostate);
    ctx->ostate = NULL;
    ctx->ostate_len = 0;
    ctx->optim_steps = 0;
}

int dbr_optim_set_(dbr_ctx *ctx, const dbr_optim *opt, const char *file, int line) {
    const char *api = "dbr_optim_set";
    if (ctx->bad_config) return -1;
    if (!opt) {
        dbr_set_error(ctx, file, line, api, "optimizer is NULL");
        return -1;
    }
    dbr_optim o = *opt;
    if (o.kind < DBR_SGD || o.kind > DBR_ADAMW) {
        dbr_set_error(ctx, file, line, api, "unknown optimizer kind %d", (int)o.kind);
        return -1;
    }
    if (o.momentum == 0) o.momentum = 0.9;
    if (o.beta1 == 0) o.beta1 = 0.9;
    if (o.beta2 == 0) o.beta2 = 0.999;
    if (o.eps == 0) o.eps = 1e-8;
    if (!(o.lr > 0) || o.weight_decay < 0 || o.momentum < 0 || o.momentum >= 1 ||
        o.beta1 < 0 || o.beta1 >= 1 || o.beta2 < 0 || o.beta2 >= 1 || !(o.eps > 0)) {
        dbr_set_error(ctx, file, line, api,
                      "bad hyperparameters: lr %g (> 0), weight_decay %g (>= 0), momentum %g, "
                      "beta1 %g, beta2 %g (in [0, 1)), eps %g (> 0)",
                      o.lr, o.weight_decay, o.momentum, o.beta1, o.beta2, o.eps);
        return -1;
    }
    dbr_optim_free_state(ctx);
    ctx->optim = o;
    ctx->have_optim = true;
    return 0;
}

void dbr_optim_set_lr(dbr_ctx *ctx, double lr) {
    if (lr > 0) ctx->optim.lr = lr;
}

static int make_state(dbr_ctx *ctx) {
    int64_t n = 0;
    for (dbr_tensor *p = ctx->params; p; p = p->next) n += p->kind == DBR_KIND_PARAM;
    ctx->ostate = calloc((size_t)(n ? n : 1), sizeof *ctx->ostate);
    if (!ctx->ostate) return -1;
    bool two = ctx->optim.kind == DBR_ADAM || ctx->optim.kind == DBR_ADAMW;
    bool one = two || ctx->optim.kind == DBR_MOMENTUM;
    int64_t k = 0;
    int32_t slot = -1;
    for (dbr_tensor *p = ctx->params; p; p = p->next) {
        slot++;
        if (p->kind != DBR_KIND_PARAM) continue;
        dbr_optim_state *s = &ctx->ostate[k++];
        ctx->ostate_len = k;
        s->param = p;
        s->slot = slot;
        s->bytes = p->nbytes;
        if (one && !(s->m = dbr_mem_alloc(ctx, p->nbytes))) return -1;
        if (two && !(s->v = dbr_mem_alloc(ctx, p->nbytes))) return -1;
        if (s->m) memset(s->m, 0, (size_t)p->nbytes);
        if (s->v) memset(s->v, 0, (size_t)p->nbytes);
    }
    return 0;
}

int dbr_optim_step_(dbr_ctx *ctx, const char *file, int line) {
    const char *api = "dbr_optim_step";
    if (ctx->bad_config) return -1;
    if (!ctx->have_optim) {
        dbr_set_error(ctx, file, line, api, "no optimizer: call dbr_optim_set first");
        return -1;
    }
    if (!dbr_recording(ctx)) return dbr_optim_apply(ctx, file, line);
    /* compiled and meta: the update is recorded into the step's graph */
    int rc = dbr_trace_optim(ctx, file, line);
    if (ctx->tr.graph) ctx->tr.barrier = ctx->tr.graph->n_vals;
    return rc;
}

/* Parameters created after the state was made get fresh state. Meta mode
 * holds no data, so its state is never made. */
int dbr_optim_ensure_state(dbr_ctx *ctx, const char *file, int line) {
    int64_t n = 0;
    for (dbr_tensor *p = ctx->params; p; p = p->next) n += p->kind == DBR_KIND_PARAM;
    if (n != ctx->ostate_len || !ctx->ostate) {
        int64_t t = ctx->optim_steps;
        dbr_optim_free_state(ctx);
        ctx->optim_steps = t;
        if (make_state(ctx)) {
            dbr_set_error(ctx, file, line, "dbr_optim_step", "out of memory for optimizer state");
            return -1;
        }
    }
    return 0;
}

void *dbr_optim_state_of(dbr_ctx *ctx, int32_t slot, int which) {
    for (int64_t i = 0; i < ctx->ostate_len; i++)
        if (ctx->ostate[i].slot == slot) return which ? ctx->ostate[i].v : ctx->ostate[i].m;
    return NULL;
}

int dbr_optim_apply(dbr_ctx *ctx, const char *file, int line) {
    if (ctx->cfg.mode == DBR_MODE_META) return 0;
    if (dbr_optim_ensure_state(ctx, file, line)) return -1;
    const dbr_optim *o = &ctx->optim;
    int64_t t = ++ctx->optim_steps;
    for (int64_t i = 0; i < ctx->ostate_len; i++) {
        dbr_optim_state *s = &ctx->ostate[i];
        dbr_tensor *p = s->param;
        const void *g = p->grad ? p->grad->data : NULL;
        if (!g || !p->data) continue;
        int32_t dt = (int32_t)p->dtype;
        switch (o->kind) {
        case DBR_SGD: dbr_cpu_sgd(dt, p->numel, p->data, g, o->lr, o->weight_decay); break;
        case DBR_MOMENTUM:
            dbr_cpu_momentum(dt, p->numel, p->data, g, s->m, o->lr, o->momentum,
                             o->weight_decay, o->nesterov);
            break;
        case DBR_ADAM:
        case DBR_ADAMW:
            dbr_cpu_adam(dt, p->numel, p->data, g, s->m, s->v, o->lr, o->beta1,
                         o->beta2, o->eps, o->weight_decay, o->kind == DBR_ADAMW, t);
            break;
        }
        if (p->grad && p->grad->data) memset(p->grad->data, 0, (size_t)p->grad->nbytes);
    }
    return 0;
}
