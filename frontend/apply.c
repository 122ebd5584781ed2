/* apply.c: running one op (infer, allocate, execute, tape) and eager
 * reverse-mode autodiff over the tape, using the gradient rules of ir/grad.c
 * through a builder that runs each emitted op at once. */
#include "frontend/internal.h"
#include "runtime/prof.h"
#include "runtime/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool dbr_grad_flows(dbr_op op, const dbr_tensor *in) {
    return dbr_op_differentiable(op) && in->requires_grad &&
           (in->dtype == DBR_F32 || in->dtype == DBR_F64);
}

static int tape_push(dbr_ctx *ctx, const dbr_node *n, dbr_tensor *const in[], dbr_tensor *out) {
    if (ctx->tape_len == ctx->tape_cap) {
        int32_t cap = ctx->tape_cap ? ctx->tape_cap * 2 : 256;
        dbr_tape_entry *t = realloc(ctx->tape, (size_t)cap * sizeof *t);
        if (!t) return -1;
        ctx->tape = t;
        ctx->tape_cap = cap;
    }
    dbr_tape_entry *e = &ctx->tape[ctx->tape_len];
    memset(e, 0, sizeof *e);
    e->node = *n;
    e->out = out;
    unsigned keep = dbr_ops[n->op].retain;
    for (int i = 0; i < n->n_in; i++) {
        e->in[i] = in[i];
        e->needs[i] = dbr_grad_flows(n->op, in[i]);
        if (keep & R_IN(i)) {
            in[i]->refs++;
            e->retained[i] = true;
        }
    }
    if (keep & R_OUT) {
        out->refs++;
        e->retained[DBR_MAX_SRC] = true;
    }
    out->tape_id = ctx->tape_len++;
    return 0;
}

static void entry_release(dbr_ctx *ctx, dbr_tape_entry *e) {
    for (int i = 0; i < e->node.n_in; i++)
        if (e->retained[i]) {
            e->retained[i] = false;
            dbr_tensor_unref(ctx, e->in[i]);
        }
    if (e->retained[DBR_MAX_SRC]) {
        e->retained[DBR_MAX_SRC] = false;
        dbr_tensor_unref(ctx, e->out);
    }
}

void dbr_tape_clear(dbr_ctx *ctx) {
    for (int32_t i = 0; i < ctx->tape_len; i++) entry_release(ctx, &ctx->tape[i]);
    ctx->tape_len = 0;
}

dbr_tensor *dbr_apply(dbr_ctx *ctx, dbr_node *n, int n_in, dbr_tensor *const in[]) {
    if (ctx->bad_config) return NULL;
    for (int i = 0; i < n_in; i++)
        if (!in[i]) return NULL; /* an earlier error is already recorded */
    if (dbr_recording(ctx)) return dbr_trace_apply(ctx, n, n_in, in);
    bool meta = ctx->cfg.mode == DBR_MODE_META;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++) {
        dbr_tinfo_of(in[i], &n->in[i]);
        if (!meta && !in[i]->data) {
            dbr_set_error(ctx, n->file, n->line, n->api,
                          "input %d was released (dbr_backward frees intermediates it no longer "
                          "needs); call dbr_keep on it before dbr_backward to use it afterwards",
                          i);
            return NULL;
        }
    }
    char err[512];
    if (dbr_infer(n, err, sizeof err)) {
        dbr_set_error(ctx, n->file, n->line, n->api, "%s", err);
        return NULL;
    }
    dbr_tensor *out =
        dbr_tensor_new(ctx, DBR_KIND_INTERMEDIATE, n->out.dtype, n->out.ndim, n->out.shape, true);
    if (!out) {
        char s[128];
        dbr_set_error(ctx, n->file, n->line, n->api, "out of memory for a result of shape %s",
                      dbr_shape_str(&n->out, s, sizeof s));
        return NULL;
    }
    if (!meta) {
        const void *ptr[DBR_MAX_SRC];
        for (int i = 0; i < n_in; i++) ptr[i] = in[i]->data;
        dbr_prof *prof = ctx->prof && ctx->prof->on ? ctx->prof : NULL;
        int64_t t0 = prof ? dbr_prof_now_ns() : 0;
        int rc = dbr_cpu_exec(n, ptr, out->data);
        if (prof) /* backward's rules run with grad off; so does batch norm's statistics op */
            dbr_prof_record(prof, n, ctx->grad_enabled || n->op == DBR_OP_BN_STATS ? "fwd" : "bwd",
                            t0, dbr_prof_now_ns());
        if (rc) {
            dbr_set_error(ctx, n->file, n->line, n->api,
                          "the CPU kernel for %s (%s) failed: unsupported dtype or out of "
                          "scratch memory",
                          dbr_ops[n->op].name, dbr_dt_name(n->out.dtype));
            dbr_tensor_release_data(ctx, out);
            return NULL;
        }
    }
    if (!ctx->grad_enabled) return out;
    bool any = false;
    for (int i = 0; i < n_in; i++) any |= dbr_grad_flows(n->op, in[i]);
    if (!any) return out;
    if (tape_push(ctx, n, in, out)) {
        dbr_set_error(ctx, n->file, n->line, n->api, "out of memory for the tape");
        return NULL;
    }
    out->requires_grad = true;
    return out;
}

/* ---- the eager builder: gradient rules run their ops at once ---------- */
typedef struct eager_bld {
    dbr_bld b;
    dbr_ctx *ctx;
    const char *file;
    int line;
    dbr_tensor *made[256]; /* temporaries of the current rule */
    int n_made;
    bool overflow;
    dbr_tinfo info[64];
    int n_info;
} eager_bld;

static void remember(eager_bld *e, dbr_tensor *t) {
    if (!t) return;
    if (e->n_made < (int)(sizeof e->made / sizeof e->made[0]))
        e->made[e->n_made++] = t;
    else
        e->overflow = true; /* freed at step end instead */
}

static dbr_val *eb_emit(dbr_bld *b, dbr_op op, int n_in, dbr_val *const in[], const dbr_attrs *a) {
    eager_bld *e = (eager_bld *)b;
    dbr_node n = {.op = op, .a = *a, .api = "dbr_backward", .file = e->file, .line = e->line};
    dbr_tensor *t = dbr_apply(e->ctx, &n, n_in, (dbr_tensor *const *)in);
    remember(e, t);
    return (dbr_val *)t;
}

static dbr_val *eb_scalar(dbr_bld *b, double v, int32_t dtype) {
    eager_bld *e = (eager_bld *)b;
    dbr_tensor *t = dbr_full_(e->ctx, (dbr_dtype)dtype, 0, NULL, v, e->file, e->line);
    return (dbr_val *)t;
}

static const dbr_tinfo *eb_info(dbr_bld *b, dbr_val *v) {
    eager_bld *e = (eager_bld *)b;
    dbr_tinfo *ti = &e->info[e->n_info++ % 64];
    dbr_tinfo_of((const dbr_tensor *)v, ti);
    return ti;
}

/* Free a rule's temporaries except its results. */
static void eb_flush(eager_bld *e, dbr_tensor *const keep[], int n_keep) {
    for (int i = 0; i < e->n_made; i++) {
        bool k = false;
        for (int j = 0; j < n_keep; j++) k |= keep[j] == e->made[i];
        if (!k) dbr_drop(e->ctx, e->made[i]);
    }
    e->n_made = 0;
}

/* p.grad += g (p's shape), in place, on persistent gradient memory. Eager
 * and compiled steps both accumulate here, so their sums round alike. */
int dbr_param_grad_add(dbr_ctx *ctx, dbr_tensor *p, const void *g) {
    if (!p->grad) {
        p->grad = dbr_tensor_new(ctx, DBR_KIND_GRAD, (int32_t)p->dtype, p->ndim, p->shape, true);
        if (!p->grad) return -1;
        if (p->grad->data) memset(p->grad->data, 0, (size_t)p->grad->nbytes);
    }
    if (!p->grad->data || !g) return 0;
    if (p->dtype == DBR_F32) {
        float *restrict d = p->grad->data;
        const float *restrict s = g;
        for (int64_t i = 0; i < p->numel; i++) d[i] += s[i];
    } else {
        double *restrict d = p->grad->data;
        const double *restrict s = g;
        for (int64_t i = 0; i < p->numel; i++) d[i] += s[i];
    }
    return 0;
}

int dbr_backward_(dbr_ctx *ctx, dbr_tensor *loss, const char *file, int line) {
    const char *api = "dbr_backward";
    if (ctx->bad_config || !loss) return -1;
    if (loss->numel != 1) {
        dbr_tinfo ti;
        char s[128];
        dbr_tinfo_of(loss, &ti);
        dbr_set_error(ctx, file, line, api,
                      "loss must have one element, got shape %s (reduce it with dbr_sum or "
                      "dbr_mean first)",
                      dbr_shape_str(&ti, s, sizeof s));
        return -1;
    }
    if (loss->tape_id == -2) {
        dbr_set_error(ctx, file, line, api,
                      "backward already ran over this loss's graph in this step");
        return -1;
    }
    if (dbr_recording(ctx)) {
        if (!loss->requires_grad) {
            dbr_set_error(ctx, file, line, api,
                          "loss does not depend on any parameter (nothing to differentiate)");
            return -1;
        }
        return dbr_trace_backward(ctx, loss, file, line);
    }
    if (!loss->requires_grad || loss->tape_id < 0) {
        dbr_set_error(ctx, file, line, api,
                      "loss does not depend on any parameter (nothing to differentiate)");
        return -1;
    }
    if (ctx->cfg.mode != DBR_MODE_META && !loss->data) {
        dbr_set_error(ctx, file, line, api, "the loss was released by an earlier dbr_backward");
        return -1;
    }
    /* Nothing reads an intermediate that no tape entry retains: release it
     * now, before backward allocates its gradients. */
    loss->kept = true;
    for (dbr_tensor *t = ctx->step_tensors; t; t = t->next) dbr_drop(ctx, t);

    int32_t n = ctx->tape_len;
    dbr_tensor **gout = calloc((size_t)n, sizeof *gout);
    if (!gout) {
        dbr_set_error(ctx, file, line, api, "out of memory");
        return -1;
    }
    eager_bld e = {.b = {.emit = eb_emit, .scalar = eb_scalar, .info = eb_info},
                   .ctx = ctx, .file = file, .line = line};
    ctx->grad_enabled = false;
    int rc = 0;
    gout[loss->tape_id] = dbr_full_(ctx, loss->dtype, loss->ndim, loss->shape, 1.0, file, line);
    if (gout[loss->tape_id]) gout[loss->tape_id]->refs++;
    for (int32_t k = n - 1; k >= 0 && rc == 0; k--) {
        dbr_tape_entry *en = &ctx->tape[k];
        dbr_tensor *gy = gout[k];
        if (gy) {
            dbr_gnode g = {.op = en->node.op, .n_in = en->node.n_in, .in_t = en->node.in,
                           .out_t = &en->node.out, .a = &en->node.a};
            for (int i = 0; i < g.n_in; i++)
                g.in[i] = en->retained[i] ? (dbr_val *)en->in[i] : NULL;
            g.out = en->retained[DBR_MAX_SRC] ? (dbr_val *)en->out : NULL;
            dbr_val *gx[DBR_MAX_SRC] = {0};
            e.file = en->node.file; /* ops a rule emits are attributed to the forward op */
            e.line = en->node.line;
            if (dbr_grad(&e.b, &g, (dbr_val *)gy, en->needs, gx)) {
                if (!ctx->has_err)
                    dbr_set_error(ctx, en->node.file, en->node.line, api,
                                  "no gradient rule for %s", dbr_ops[en->node.op].name);
                rc = -1;
            }
            dbr_tensor *res[DBR_MAX_SRC];
            for (int i = 0; i < g.n_in; i++) res[i] = (dbr_tensor *)gx[i];
            eb_flush(&e, res, g.n_in);
            for (int i = 0; i < g.n_in && rc == 0; i++) {
                dbr_tensor *x = en->in[i], *gi = res[i];
                if (!gi || !en->needs[i]) continue;
                if (x->kind == DBR_KIND_PARAM) {
                    if (dbr_param_grad_add(ctx, x, gi->data)) rc = -1;
                } else if (x->tape_id >= 0) {
                    /* gradients are shared (a rule may return gy itself for
                     * two inputs), so the slots hold references */
                    dbr_tensor **acc = &gout[x->tape_id];
                    if (!*acc) {
                        *acc = gi;
                        gi->refs++;
                    } else {
                        dbr_node add = {.op = DBR_OP_ADD, .api = api, .file = file, .line = line};
                        dbr_tensor *two[2] = {*acc, gi};
                        dbr_tensor *s = dbr_apply(ctx, &add, 2, two);
                        dbr_tensor_unref(ctx, *acc);
                        *acc = s;
                        if (s)
                            s->refs++;
                        else
                            rc = -1;
                    }
                }
            }
            for (int i = 0; i < g.n_in; i++) dbr_drop(ctx, res[i]);
            dbr_tensor_unref(ctx, gy);
            gout[k] = NULL;
        }
        entry_release(ctx, en);
        en->out->tape_id = -2; /* consumed: a second backward over it is an error */
        dbr_drop(ctx, en->out);
    }
    for (int32_t k = 0; k < n; k++)
        if (gout[k]) dbr_tensor_unref(ctx, gout[k]);
    free(gout);
    ctx->grad_enabled = true;
    ctx->tape_len = 0;
    return rc;
}

void dbr_zero_grad(dbr_ctx *ctx) {
    for (dbr_tensor *p = ctx->params; p; p = p->next)
        if (p->grad && p->grad->data) memset(p->grad->data, 0, (size_t)p->grad->nbytes);
}
