/* trace.c: compiled and meta modes. Op calls record nodes into the step's
 * graph; a flush (a read, the optimizer step, or the step's end) cuts out
 * what must be computed, hashes it, fetches or compiles a plan (autodiff,
 * schedule, memplan) and runs it over one arena. */
#include "frontend/internal.h"
#include "ir/graph.h"
#include "codegen/codegen.h"
#include "passes/autodiff.h"
#include "passes/fuse.h"
#include "passes/passes.h"
#include "passes/remat_apply.h"
#include "passes/simplify.h"
#include "runtime/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Leaf slots beyond the parameters' creation indices: values materialized
 * earlier in the step, and optimizer state (2 per parameter). */
enum { MAT_BASE = 1 << 24, STATE_BASE = 1 << 25 };

static dbr_graph *graph(dbr_ctx *ctx) {
    if (!ctx->tr.graph) ctx->tr.graph = dbr_graph_new();
    return ctx->tr.graph;
}

static dbr_plan_cache *cache(dbr_ctx *ctx) {
    if (!ctx->tr.cache) ctx->tr.cache = calloc(1, sizeof(dbr_plan_cache));
    return ctx->tr.cache;
}

static int set_vt(dbr_ctx *ctx, int32_t vid, dbr_tensor *t) {
    dbr_trace *tr = &ctx->tr;
    if (vid >= tr->vt_cap) {
        int32_t cap = tr->vt_cap ? tr->vt_cap : 256;
        while (cap <= vid) cap *= 2;
        dbr_tensor **v = realloc(tr->vt, (size_t)cap * sizeof *v);
        if (!v) return -1;
        memset(v + tr->vt_cap, 0, (size_t)(cap - tr->vt_cap) * sizeof *v);
        tr->vt = v;
        tr->vt_cap = cap;
    }
    tr->vt[vid] = t;
    t->vid = vid;
    t->vgen = tr->gen;
    return 0;
}

static int32_t param_slot(dbr_ctx *ctx, const dbr_tensor *p) {
    int32_t k = 0;
    for (dbr_tensor *q = ctx->params; q; q = q->next, k++)
        if (q == p) return k;
    return -1;
}

int dbr_trace_input(dbr_ctx *ctx, dbr_tensor *t) {
    dbr_trace *tr = &ctx->tr;
    if (tr->n_inputs == tr->inputs_cap) {
        int32_t cap = tr->inputs_cap ? tr->inputs_cap * 2 : 16;
        dbr_tensor **v = realloc(tr->inputs, (size_t)cap * sizeof *v);
        if (!v) return -1;
        tr->inputs = v;
        tr->inputs_cap = cap;
    }
    tr->inputs[tr->n_inputs++] = t;
    t->vid = -1; /* the leaf is made when an op first reads it */
    t->vgen = -1;
    return 0;
}

/* The value id of t in this step's graph, making a leaf on first use. */
static int32_t value_of(dbr_ctx *ctx, dbr_tensor *t, char *err, size_t errlen) {
    dbr_trace *tr = &ctx->tr;
    if (t->vgen == tr->gen && t->vid >= 0) return t->vid;
    if (t->kind == DBR_KIND_INTERMEDIATE) {
        snprintf(err, errlen, "an input tensor comes from an earlier step (step-scoped tensors "
                              "die at dbr_step_end)");
        return -1;
    }
    dbr_tinfo ti;
    dbr_tinfo_of(t, &ti);
    dbr_vkind kind;
    int32_t slot = -1;
    double cval = 0;
    switch (t->kind) {
    case DBR_KIND_PARAM: kind = DBR_V_PARAM; slot = param_slot(ctx, t); break;
    case DBR_KIND_BUFFER: kind = DBR_V_BUFFER; slot = param_slot(ctx, t); break;
    case DBR_KIND_INPUT:
        kind = DBR_V_INPUT;
        for (int32_t i = 0; i < tr->n_inputs; i++)
            if (tr->inputs[i] == t) slot = i;
        break;
    case DBR_KIND_CONST:
        kind = DBR_V_CONST;
        if (t->data) { /* dbr_full: every element the same */
            switch (t->dtype) {
            case DBR_F32: cval = ((float *)t->data)[0]; break;
            case DBR_F64: cval = ((double *)t->data)[0]; break;
            case DBR_I32: cval = ((int32_t *)t->data)[0]; break;
            default: cval = (double)((int64_t *)t->data)[0]; break;
            }
        }
        break;
    default: snprintf(err, errlen, "a gradient tensor cannot be an op input"); return -1;
    }
    int32_t v = dbr_graph_leaf(graph(ctx), kind, &ti, slot, cval, t->name);
    if (v < 0 || set_vt(ctx, v, t)) {
        snprintf(err, errlen, "out of memory recording the graph");
        return -1;
    }
    return v;
}

static double now_ms(void);
static dbr_tensor *record(dbr_ctx *ctx, dbr_node *n, int n_in, dbr_tensor *const in[]);

dbr_tensor *dbr_trace_apply(dbr_ctx *ctx, dbr_node *n, int n_in, dbr_tensor *const in[]) {
    double t0 = now_ms();
    dbr_tensor *t = record(ctx, n, n_in, in);
    ctx->tr.host_ms += now_ms() - t0;
    return t;
}

static dbr_tensor *record(dbr_ctx *ctx, dbr_node *n, int n_in, dbr_tensor *const in[]) {
    char err[512];
    int32_t ids[DBR_MAX_SRC];
    dbr_graph *g = graph(ctx);
    if (ctx->tr.read_cut) { /* recording goes on after a read: that read cut the graph */
        ctx->tr.breaks++;
        ctx->tr.read_cut = false;
    }
    if (!g) {
        dbr_set_error(ctx, n->file, n->line, n->api, "out of memory recording the graph");
        return NULL;
    }
    for (int i = 0; i < n_in; i++) {
        ids[i] = value_of(ctx, in[i], err, sizeof err);
        if (ids[i] < 0) {
            dbr_set_error(ctx, n->file, n->line, n->api, "%s", err);
            return NULL;
        }
    }
    int32_t out = dbr_graph_node(g, n->op, n_in, ids, &n->a, DBR_PH_FWD, n->api, n->file,
                                 n->line, err, sizeof err);
    if (out < 0) {
        dbr_set_error(ctx, n->file, n->line, n->api, "%s", err);
        return NULL;
    }
    const dbr_tinfo *ot = &g->vals[out].t;
    dbr_tensor *t = dbr_tensor_new(ctx, DBR_KIND_INTERMEDIATE, ot->dtype, ot->ndim, ot->shape, false);
    if (!t || set_vt(ctx, out, t)) {
        dbr_set_error(ctx, n->file, n->line, n->api, "out of memory recording the graph");
        return NULL;
    }
    if (ctx->grad_enabled)
        for (int i = 0; i < n_in; i++)
            t->requires_grad |= dbr_grad_flows(n->op, in[i]);
    return t;
}

int dbr_trace_effect(dbr_ctx *ctx, const dbr_effect *e) {
    dbr_trace *tr = &ctx->tr;
    if (tr->n_effects == tr->effects_cap) {
        int32_t cap = tr->effects_cap ? tr->effects_cap * 2 : 8;
        dbr_effect *v = realloc(tr->effects, (size_t)cap * sizeof *v);
        if (!v) return -1;
        tr->effects = v;
        tr->effects_cap = cap;
    }
    tr->effects[tr->n_effects++] = *e;
    return 0;
}

int dbr_trace_backward(dbr_ctx *ctx, dbr_tensor *loss, const char *file, int line) {
    dbr_trace *tr = &ctx->tr;
    if (loss->vgen != tr->gen || loss->vid < 0) {
        dbr_set_error(ctx, file, line, "dbr_backward", "the loss was not recorded in this step");
        return -1;
    }
    if (tr->bwd_loss >= 0) {
        dbr_set_error(ctx, file, line, "dbr_backward",
                      "backward was already requested in this step (one loss per step)");
        return -1;
    }
    tr->bwd_loss = loss->vid;
    loss->kept = true;
    if (ctx->cfg.mode == DBR_MODE_META) return dbr_trace_flush(ctx, NULL, file, line);
    return 0;
}

/* ---- compiling a segment -------------------------------------------------- */
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 29);
}

typedef struct segment {
    dbr_graph *g;
    int32_t *map;       /* step value id -> segment value id, or -1 */
    dbr_tensor **mat;   /* materialized tensors, by VALUE ordinal */
    int32_t n_mat;
    int32_t *outputs;   /* segment value ids, in request order */
    int32_t n_outputs;
} segment;

static void segment_free(segment *s) {
    dbr_graph_free(s->g);
    free(s->map);
    free(s->mat);
    free(s->outputs);
}

static bool materialized(const dbr_ctx *ctx, int32_t v) {
    const dbr_tensor *t = v < ctx->tr.vt_cap ? ctx->tr.vt[v] : NULL;
    return t && t->data && t->vgen == ctx->tr.gen && t->vid == v;
}

/* Leaf of step value v in the segment (leaves and materialized values). */
static int32_t seg_leaf(dbr_ctx *ctx, segment *s, int32_t v) {
    if (s->map[v] >= 0) return s->map[v];
    const dbr_value *sv = &ctx->tr.graph->vals[v];
    dbr_vkind kind = sv->kind;
    int32_t slot = sv->slot;
    if (kind == DBR_V_INTER) { /* computed by an earlier flush: an input to this one */
        s->mat[s->n_mat] = ctx->tr.vt[v];
        kind = DBR_V_INPUT;
        slot = MAT_BASE + s->n_mat++;
    }
    int32_t id = dbr_graph_leaf(s->g, kind, &sv->t, slot, sv->cval, sv->name);
    if (id < 0) return -1;
    s->map[v] = id;
    return id;
}

/* Cut out the nodes that compute `want` (step value ids) from what is
 * already materialized, as a graph of its own. */
static int segment_build(dbr_ctx *ctx, const int32_t *want, int32_t n_want, segment *s,
                         char *err, size_t errlen) {
    const dbr_graph *g = ctx->tr.graph;
    int32_t nv = g->n_vals;
    memset(s, 0, sizeof *s);
    s->g = dbr_graph_new();
    s->map = malloc((size_t)nv * sizeof *s->map);
    s->mat = calloc((size_t)nv + 1, sizeof *s->mat);
    s->outputs = malloc((size_t)(n_want + 1) * sizeof *s->outputs);
    bool *need = calloc((size_t)nv, sizeof *need);
    if (!s->g || !s->map || !s->mat || !s->outputs || !need) {
        free(need);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int32_t v = 0; v < nv; v++) s->map[v] = -1;
    for (int32_t k = 0; k < n_want; k++) need[want[k]] = true;
    /* reverse walk: a needed, unmaterialized value needs its producer's inputs */
    for (int32_t k = g->n_nodes - 1; k >= 0; k--) {
        const dbr_inode *nd = &g->nodes[k];
        if (!need[nd->out] || materialized(ctx, nd->out)) continue;
        if (nd->out < ctx->tr.barrier) {
            const dbr_inode *src = nd;
            snprintf(err, errlen,
                     "the value of %s (%s:%d) was released after the optimizer step; call "
                     "dbr_keep on it before dbr_optim_step to read it afterwards",
                     dbr_ops[src->op].name, src->file ? src->file : "?", src->line);
            free(need);
            return -1;
        }
        for (int i = 0; i < nd->n_in; i++) need[nd->in[i]] = true;
    }
    int rc = 0;
    for (int32_t k = 0; k < g->n_nodes && rc == 0; k++) {
        const dbr_inode *nd = &g->nodes[k];
        if (!need[nd->out] || materialized(ctx, nd->out)) continue;
        int32_t ids[DBR_MAX_SRC];
        for (int i = 0; i < nd->n_in && rc == 0; i++) {
            int32_t v = nd->in[i];
            bool leaf = g->vals[v].kind != DBR_V_INTER || materialized(ctx, v);
            ids[i] = leaf ? seg_leaf(ctx, s, v) : s->map[v];
            if (ids[i] < 0) rc = -1;
        }
        if (rc) break;
        int32_t o = dbr_graph_node(s->g, nd->op, nd->n_in, ids, &nd->a, nd->phase, nd->api,
                                   nd->file, nd->line, err, errlen);
        if (o < 0) rc = -1;
        s->map[nd->out] = o;
    }
    for (int32_t k = 0; k < n_want && rc == 0; k++) {
        int32_t o = s->map[want[k]];
        if (o < 0) o = seg_leaf(ctx, s, want[k]); /* already there: a copy of a leaf */
        s->outputs[k] = o;
        s->n_outputs = k + 1;
        if (o < 0) rc = -1;
        else s->g->vals[o].is_output = true;
    }
    free(need);
    if (rc && !err[0]) snprintf(err, errlen, "out of memory");
    return rc;
}

/* Plans hold device memory counted in the context's bytes. */
static int64_t tinfo_bytes(const dbr_tinfo *t) {
    return dbr_tinfo_numel(t) * (int64_t)dbr_dt_size(t->dtype);
}

/* A device buffer for t: at least one element, padded to 64 bytes. */
static int64_t aligned_bytes(const dbr_tinfo *t) {
    int64_t n = tinfo_bytes(t);
    return ((n ? n : (int64_t)dbr_dt_size(t->dtype)) + 63) & ~(int64_t)63;
}

static int64_t plan_bytes(const dbr_plan *p) {
    int64_t n = 0; /* the arena is the context's, counted once */
    for (int32_t b = 0; p->binds && b < p->n_binds; b++)
        if (p->binds[b].owned) n += aligned_bytes(&p->binds[b].t);
    return n;
}

/* One arena per context, as large as its largest plan needs: plans run one
 * at a time and hand their outputs out before the next runs. */
static int arena_reserve(dbr_ctx *ctx, const dbr_device_ops *dev, int64_t bytes) {
    dbr_trace *tr = &ctx->tr;
    bytes = (bytes + 63) & ~(int64_t)63;
    if (bytes <= tr->arena_cap && tr->arena) return 0;
    void *a = dev->alloc(NULL, bytes ? bytes : 64);
    if (!a) return -1;
    if (tr->arena) dev->free(NULL, tr->arena, tr->arena_cap);
    ctx->live_bytes += bytes - tr->arena_cap;
    if (ctx->live_bytes > ctx->peak_bytes) ctx->peak_bytes = ctx->live_bytes;
    tr->arena = a;
    tr->arena_cap = bytes;
    return 0;
}

static void plan_release(dbr_ctx *ctx, dbr_plan *p) {
    if (!p) return;
    ctx->live_bytes -= plan_bytes(p);
    dbr_plan_free(p);
}

/* DBR_DUMP: the graph as the schedule will run it (leaves first). */
static void dump_scheduled(const dbr_graph *g, const int32_t *order) {
    const char *dir = getenv("DBR_DUMP");
    if (!dir || !*dir) return;
    dbr_graph *o = dbr_graph_new();
    int32_t *map = malloc((size_t)(g->n_vals + 1) * sizeof *map);
    char err[256];
    bool ok = o && map;
    for (int32_t v = 0; ok && v < g->n_vals; v++) {
        const dbr_value *x = &g->vals[v];
        map[v] = x->kind == DBR_V_INTER ? -1
                                        : dbr_graph_leaf(o, x->kind, &x->t, x->slot, x->cval, x->name);
    }
    for (int32_t k = 0; ok && k < g->n_nodes; k++) {
        const dbr_inode *nd = &g->nodes[order[k]];
        int32_t in[DBR_MAX_SRC];
        for (int i = 0; i < nd->n_in; i++) in[i] = map[nd->in[i]];
        map[nd->out] = dbr_graph_node(o, nd->op, nd->n_in, in, &nd->a, nd->phase, nd->api,
                                      nd->file, nd->line, err, sizeof err);
        ok = map[nd->out] >= 0;
        if (ok) o->vals[map[nd->out]].is_output = g->vals[nd->out].is_output;
    }
    if (ok) dbr_graph_dump(o, "schedule");
    dbr_graph_free(o);
    free(map);
}

/* A leaf's binding follows from its kind and slot (see seg_leaf). */
static dbr_bind bind_of_leaf(const dbr_value *x) {
    dbr_bind b = {.t = x->t, .slot = x->slot, .cval = x->cval};
    switch (x->kind) {
    case DBR_V_PARAM: b.kind = DBR_BIND_PARAM; break;
    case DBR_V_BUFFER:
        b.kind = x->slot >= STATE_BASE ? DBR_BIND_STATE : DBR_BIND_PARAM;
        if (x->slot >= STATE_BASE) b.slot = x->slot - STATE_BASE;
        break;
    case DBR_V_CONST: b.kind = DBR_BIND_CONST; break;
    default:
        b.kind = x->slot >= MAT_BASE ? DBR_BIND_VALUE : DBR_BIND_INPUT;
        if (x->slot >= MAT_BASE) b.slot = x->slot - MAT_BASE;
        break;
    }
    return b;
}

static int fill_const(dbr_plan *p, dbr_bind *b) {
    dbr_tinfo *t = &b->t;
    int64_t n = dbr_tinfo_numel(t);
    int64_t bytes = (n ? n : 1) * (int64_t)dbr_dt_size(t->dtype);
    void *h = malloc((size_t)bytes), *d = p->dev->alloc(NULL, bytes);
    if (!h || !d) {
        free(h);
        if (d) p->dev->free(NULL, d, bytes);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) switch (t->dtype) {
        case DT_F32: ((float *)h)[i] = (float)b->cval; break;
        case DT_F64: ((double *)h)[i] = b->cval; break;
        case DT_I32: ((int32_t *)h)[i] = (int32_t)b->cval; break;
        default: ((int64_t *)h)[i] = (int64_t)b->cval; break;
        }
    b->owned = d;
    int rc = p->dev->to_device(NULL, d, h, bytes, NULL);
    free(h);
    return rc;
}

/* What a flush computes, in request order: tensors to fill, parameter
 * gradients to accumulate, effects to apply. */
typedef enum { OUT_TENSOR, OUT_GRAD, OUT_EFFECT, OUT_UPDATE } out_kind;
typedef struct out_req {
    out_kind kind;
    int32_t vid;
    dbr_tensor *t; /* OUT_TENSOR: the tensor; OUT_GRAD: the parameter */
    int32_t effect;
} out_req;

/* What the device holds beside the arena while g runs: the leaves it binds
 * and `outputs`, what is copied out after the run. */
static dbr_plan_mem mem_parts(const dbr_graph *g, int64_t outputs) {
    dbr_plan_mem m = {.strategy = "none", .outputs = outputs};
    for (int32_t v = 0; v < g->n_vals; v++) {
        const dbr_value *x = &g->vals[v];
        int64_t b = aligned_bytes(&x->t);
        switch (x->kind) {
        case DBR_V_PARAM: m.params += b; break;
        case DBR_V_BUFFER: *(x->slot >= STATE_BASE ? &m.optim_state : &m.params) += b; break;
        case DBR_V_INPUT:
        case DBR_V_CONST: m.inputs += b; break;
        default: break;
        }
    }
    return m;
}

static void mem_of_plan(dbr_plan_mem *m, const dbr_step_plan *sp) {
    m->budget = sp->budget;
    m->noremat_arena = sp->noremat_arena;
    m->min_arena = sp->min_arena;
    m->recomputed = sp->n_recomputed;
    m->recompute_pct = sp->fwd_time > 0 ? 100.0 * sp->recompute_time / sp->fwd_time : 0;
    m->plan_ms = sp->plan_ms;
    m->feasible = sp->feasible;
    m->strategy = dbr_remat_strategy_name(sp->strategy);
}

static dbr_step_mem step_mem_of(const dbr_plan_mem *m, int64_t arena) {
    int64_t fixed = m->params + m->optim_state + m->inputs + m->outputs;
    return (dbr_step_mem){.budget = m->budget, .params = m->params, .optim_state = m->optim_state,
                          .inputs = m->inputs, .outputs = m->outputs, .arena = arena,
                          .grads = m->grads, .noremat_arena = m->noremat_arena,
                          .recomputed = m->recomputed, .recompute_pct = m->recompute_pct,
                          .plan_ms = m->plan_ms, .peak = fixed + arena, .feasible = m->feasible,
                          .min_peak = fixed + m->min_arena, .strategy = m->strategy};
}

static bool has_backward(const dbr_graph *g) {
    for (int32_t k = 0; k < g->n_nodes; k++)
        if (g->nodes[k].phase == DBR_PH_BWD) return true;
    return false;
}

static dbr_remat_strategy remat_strategy(dbr_recompute r) {
    switch (r) {
    case DBR_RECOMPUTE_NONE: return DBR_REMAT_NONE;
    case DBR_RECOMPUTE_CHEN: return DBR_REMAT_CHEN;
    case DBR_RECOMPUTE_DP: return DBR_REMAT_DP;
    case DBR_RECOMPUTE_ILP: return DBR_REMAT_ILP;
    default: return DBR_REMAT_AUTO;
    }
}

/* The context's budget for step g, holding `fixed` bytes beside its arena.
 * A fraction is of a training step's peak: a forward-only piece before the
 * first training step has none; later plans (evaluation, a last smaller
 * batch) keep the bytes the first training step resolved it to. */
static dbr_step_budget step_budget(const dbr_ctx *ctx, const dbr_graph *g, int64_t fixed) {
    bool frac = !ctx->cfg.memory_budget && !ctx->tr.budget_bytes && has_backward(g);
    return (dbr_step_budget){.budget = ctx->cfg.memory_budget ? ctx->cfg.memory_budget
                                                              : ctx->tr.budget_bytes,
                             .budget_frac = frac ? ctx->cfg.memory_budget_frac : 0,
                             .fixed = fixed,
                             .strategy = remat_strategy(ctx->cfg.recompute)};
}

/* Plans step g (simplified) under the context's budget: the parts beside
 * the arena (with `outputs` copied out), the recomputation and memplan's
 * arena, into *m and *sp. 0, or -1 with a message. */
static int plan_budget(const dbr_ctx *ctx, const dbr_graph *g, int64_t outputs, dbr_plan_mem *m,
                       dbr_step_plan *sp, char *err, size_t errlen) {
    *m = mem_parts(g, outputs);
    dbr_step_budget sb = step_budget(ctx, g, m->params + m->optim_state + m->inputs + m->outputs);
    if (dbr_step_plan_build(g, &sb, sp, err, errlen)) return -1;
    mem_of_plan(m, sp);
    for (int32_t k = 0; k < sp->g->n_nodes; k++) { /* gradients the updates read */
        const dbr_inode *nd = &sp->g->nodes[k];
        if (nd->phase == DBR_PH_OPT && nd->n_in > 1 && sp->mp.offset[nd->in[1]] >= 0)
            m->grads += dbr_value_arena_bytes(sp->g, nd->in[1]);
    }
    return 0;
}

/* Fuses *g in place of itself (see passes/fuse.h) when the context, the
 * environment and a back end allow; remap (values of the graph before
 * simplify -> values of *g) is composed with fusion's. 0 or -1. */
static int fuse_step(const dbr_ctx *ctx, dbr_graph **g, int32_t *remap, int32_t n_remap,
                     dbr_fuse_stats *st, char *err, size_t errlen) {
    *st = (dbr_fuse_stats){0};
    if (ctx->cfg.no_fuse || !dbr_fuse_enabled_by_env() || !dbr_cg_cpu_available()) return 0;
    int32_t *fr = malloc(((size_t)(*g)->n_vals + 1) * sizeof *fr);
    dbr_graph *f = NULL;
    if (!fr) return dbr_errf(err, errlen, "out of memory");
    if (dbr_fuse(*g, &f, fr, st, err, errlen)) {
        free(fr);
        return -1;
    }
    for (int32_t v = 0; v < n_remap; v++)
        if (remap[v] >= 0) remap[v] = fr[remap[v]];
    free(fr);
    dbr_graph_free(*g);
    *g = f;
    dbr_graph_dump(f, "fuse");
    return dbr_graph_verify(f, err, errlen);
}

/* segment -> simplify -> fuse -> budget (recompute, move updates up) -> memplan ->
 * launches. Every pass's result is verified (cheap next to a compile, and
 * it names the pass that broke a graph) and, with DBR_DUMP, written out. */
static dbr_plan *plan_compile(dbr_ctx *ctx, segment *s, const out_req *req, uint64_t key,
                              char *err, size_t errlen) {
    double t0 = now_ms();
    if (dbr_graph_verify(s->g, err, errlen)) return NULL;
    dbr_graph_dump(ctx->tr.graph, ctx->tr.bwd_done ? "autodiff" : "record");
    dbr_graph_dump(s->g, "segment");
    dbr_graph *g = NULL;
    int32_t *remap = malloc((size_t)(s->g->n_vals + 1) * sizeof *remap);
    int32_t *bind_of = NULL;
    dbr_plan *p = calloc(1, sizeof *p);
    dbr_step_plan sp = {0};
    if (!remap || !p) goto oom;
    p->dev = &dbr_cpu_device;
    if (dbr_simplify(s->g, &g, remap, NULL, err, errlen)) goto fail;
    dbr_graph_dump(g, "simplify");
    if (dbr_graph_verify(g, err, errlen)) goto fail;
    dbr_fuse_stats fst;
    if (fuse_step(ctx, &g, remap, s->g->n_vals, &fst, err, errlen)) goto fail;
    ctx->tr.fused_groups += fst.groups;
    ctx->tr.fused_ops += fst.fused;
    int64_t outputs = 0;
    for (int32_t k = 0; k < s->n_outputs; k++)
        if (req[k].kind == OUT_TENSOR || req[k].kind == OUT_GRAD) outputs += req[k].t->nbytes;
    if (plan_budget(ctx, g, outputs, &p->mem, &sp, err, errlen)) goto fail;
    int64_t fixed = p->mem.params + p->mem.optim_state + p->mem.inputs + p->mem.outputs;
    if (!sp.feasible) {
        char b[8][32];
        dbr_human_bytes(sp.budget, b[0], sizeof b[0]);
        dbr_human_bytes(fixed + sp.min_arena, b[1], sizeof b[1]);
        dbr_human_bytes(p->mem.params, b[2], sizeof b[2]);
        dbr_human_bytes(p->mem.optim_state, b[3], sizeof b[3]);
        dbr_human_bytes(p->mem.inputs, b[4], sizeof b[4]);
        dbr_human_bytes(p->mem.outputs, b[5], sizeof b[5]);
        dbr_human_bytes(sp.min_arena, b[6], sizeof b[6]);
        dbr_human_bytes(fixed + sp.noremat_arena, b[7], sizeof b[7]);
        snprintf(err, errlen,
                 "memory budget %s cannot be met: the least this step can take is %s "
                 "(parameters %s, optimizer state %s, inputs %s, outputs %s, and an arena of at "
                 "least %s for activations and gradients); without recomputation it takes %s",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]);
        goto fail;
    }
    if (!ctx->cfg.memory_budget && !ctx->tr.budget_bytes && sp.budget)
        ctx->tr.budget_bytes = sp.budget; /* a fraction, resolved (see step_budget) */
    dbr_graph_free(g);
    g = sp.g; /* the step as it runs: its node order is the schedule */
    sp.g = NULL;
    if (dbr_graph_verify(g, err, errlen)) goto fail;
    bind_of = malloc((size_t)(g->n_vals + 1) * sizeof *bind_of);
    p->launches = calloc((size_t)g->n_nodes + 1, sizeof *p->launches);
    p->binds = calloc((size_t)g->n_vals + 1, sizeof *p->binds);
    p->outputs = calloc((size_t)s->n_outputs + 1, sizeof *p->outputs);
    if (!bind_of || !p->launches || !p->binds || !p->outputs) goto oom;
    for (int32_t v = 0; v < g->n_vals; v++) {
        bind_of[v] = -1;
        if (g->vals[v].kind == DBR_V_INTER) continue;
        dbr_bind *b = &p->binds[p->n_binds];
        *b = bind_of_leaf(&g->vals[v]);
        if (b->kind == DBR_BIND_CONST && fill_const(p, b)) goto oom;
        bind_of[v] = p->n_binds++;
    }
    dump_scheduled(g, sp.order);
    const dbr_memplan *mp = &sp.mp;
    p->key = key;
    p->n_launches = g->n_nodes;
    for (int32_t k = 0; k < g->n_nodes; k++) {
        const dbr_inode *nd = &g->nodes[sp.order[k]];
        dbr_launch *l = &p->launches[k];
        l->phase = (int32_t)nd->phase;
        l->node = (dbr_node){.op = nd->op, .n_in = nd->n_in, .out = g->vals[nd->out].t,
                             .a = nd->a, .api = nd->api, .file = nd->file, .line = nd->line};
        for (int i = 0; i < nd->n_in; i++) {
            int32_t v = nd->in[i];
            l->node.in[i] = g->vals[v].t;
            l->in[i] = mp->offset[v] >= 0 ? mp->offset[v] : -1 - (int64_t)bind_of[v];
        }
        l->out = mp->offset[nd->out];
    }
    /* outputs are arena values or, once simplified, possibly leaves */
    for (int32_t k = 0; k < s->n_outputs; k++) {
        int32_t v = remap[s->outputs[k]];
        v = v < 0 ? -1 : sp.remap[v];
        if (v < 0) {
            snprintf(err, errlen, "simplify lost output %d", k);
            goto fail;
        }
        p->outputs[k] = mp->offset[v] >= 0 ? mp->offset[v] : -1 - (int64_t)bind_of[v];
    }
    p->n_outputs = s->n_outputs;
    p->arena_bytes = mp->arena_bytes;
    p->lower_bound = mp->lower_bound;
    p->n_inplace = mp->n_inplace;
    if (arena_reserve(ctx, p->dev, p->arena_bytes)) goto oom;
    ctx->live_bytes += plan_bytes(p);
    if (ctx->live_bytes > ctx->peak_bytes) ctx->peak_bytes = ctx->live_bytes;
    dbr_step_plan_free(&sp);
    dbr_graph_free(g);
    free(remap);
    free(bind_of);
    p->compile_ms = now_ms() - t0;
    return p;
oom:
    snprintf(err, errlen, "out of memory compiling a plan");
fail:
    dbr_step_plan_free(&sp);
    dbr_graph_free(g);
    free(remap);
    free(bind_of);
    dbr_plan_free(p);
    return NULL;
}

static int run_autodiff(dbr_ctx *ctx, char *err, size_t errlen) {
    dbr_trace *tr = &ctx->tr;
    dbr_graph *g = tr->graph;
    int32_t nv = g->n_vals;
    bool *req = calloc((size_t)nv, sizeof *req);
    int32_t *grads = malloc((size_t)nv * sizeof *grads);
    int32_t np = (int32_t)ctx->n_params;
    int32_t *gv = realloc(tr->grad_vid, (size_t)(np ? np : 1) * sizeof *gv);
    if (!req || !grads || !gv) {
        free(req);
        free(grads);
        if (gv) tr->grad_vid = gv;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    tr->grad_vid = gv;
    tr->n_grad = np;
    for (int32_t v = 0; v < nv; v++)
        req[v] = g->vals[v].kind == DBR_V_PARAM && tr->vt[v] && tr->vt[v]->requires_grad;
    int rc = dbr_autodiff(g, tr->bwd_loss, req, grads, err, errlen);
    if (rc == 0) rc = dbr_graph_verify(g, err, errlen); /* the pass must leave a sound graph */
    for (int32_t k = 0; k < np; k++) gv[k] = -1;
    for (int32_t v = 0; rc == 0 && v < nv; v++)
        if (grads[v] >= 0 && g->vals[v].slot >= 0 && g->vals[v].slot < np)
            gv[g->vals[v].slot] = grads[v];
    free(req);
    free(grads);
    if (rc == 0) {
        tr->bwd_done = true;
        tr->grads_pending = true;
    }
    return rc;
}

static int add_req(out_req **r, int32_t *n, int32_t *cap, out_req q) {
    if (*n == *cap) {
        int32_t c = *cap ? *cap * 2 : 16;
        out_req *v = realloc(*r, (size_t)c * sizeof *v);
        if (!v) return -1;
        *r = v;
        *cap = c;
    }
    (*r)[(*n)++] = q;
    return 0;
}

static dbr_tensor **params_by_slot(dbr_ctx *ctx) {
    dbr_tensor **v = malloc((size_t)(ctx->n_params ? ctx->n_params : 1) * sizeof *v);
    int32_t k = 0;
    if (v)
        for (dbr_tensor *p = ctx->params; p; p = p->next) v[k++] = p;
    return v;
}

/* Tensors the user kept (dbr_keep, the loss) that are not computed yet:
 * every flush hands them out, as eager mode keeps them readable. */
static int kept_requests(dbr_ctx *ctx, const dbr_tensor *want, out_req **req, int32_t *n,
                         int32_t *cap) {
    dbr_trace *tr = &ctx->tr;
    int rc = 0;
    for (int32_t v = 0; v < tr->graph->n_vals; v++) {
        dbr_tensor *t = v < tr->vt_cap ? tr->vt[v] : NULL;
        if (t && t != want && t->kept && t->vid == v && t->vgen == tr->gen && !t->data &&
            tr->graph->vals[v].kind == DBR_V_INTER && v >= tr->barrier)
            rc |= add_req(req, n, cap, (out_req){OUT_TENSOR, v, t, -1});
    }
    return rc;
}

/* Bind this step's tensors to p, run it and hand its outputs out in
 * request order. mat: the values materialized earlier in the step (VALUE
 * bindings), or NULL when there are none. */
static int run_plan(dbr_ctx *ctx, dbr_plan *p, dbr_tensor *const *mat, out_req *req,
                    int32_t n_req, const char *file, int line, const char *api) {
    dbr_trace *tr = &ctx->tr;
    int rc = 0;
    void **bp = calloc((size_t)p->n_binds + 1, sizeof *bp);
    dbr_tensor **ps = params_by_slot(ctx);
    if (!bp || !ps) {
        free(bp);
        free(ps);
        dbr_set_error(ctx, file, line, api, "out of memory");
        return -1;
    }
    for (int32_t b = 0; b < p->n_binds; b++) {
        const dbr_bind *bd = &p->binds[b];
        switch (bd->kind) {
        case DBR_BIND_PARAM: bp[b] = ps[bd->slot]->data; break;
        case DBR_BIND_INPUT: bp[b] = tr->inputs[bd->slot]->data; break;
        case DBR_BIND_VALUE: bp[b] = mat ? mat[bd->slot]->data : NULL; break;
        case DBR_BIND_STATE: bp[b] = dbr_optim_state_of(ctx, bd->slot / 2, bd->slot % 2); break;
        case DBR_BIND_CONST: bp[b] = NULL; break;
        }
    }
    int32_t failed = -1;
    p->arena = tr->arena;
    double run0 = now_ms();
    dbr_run_keys keys = {.seed = ctx->cfg.seed, .step = ctx->step, .opt_t = ctx->optim_steps + 1,
                         .prof = ctx->prof};
    int run_rc = dbr_plan_run(p, bp, &keys, NULL, &failed);
    tr->run_ms += now_ms() - run0;
    if (run_rc) {
        const dbr_node *nd = &p->launches[failed].node;
        dbr_set_error(ctx, nd->file, nd->line, nd->api,
                      "the CPU kernel for %s (%s) failed: unsupported dtype or out of "
                      "scratch memory",
                      dbr_ops[nd->op].name, dbr_dt_name(nd->out.dtype));
        rc = -1;
    }
    bool updated = false;
    for (int32_t k = 0; rc == 0 && k < n_req; k++) {
        const void *src = dbr_plan_output(p, bp, k);
        out_req *q = &req[k];
        if (q->kind == OUT_TENSOR) {
            dbr_tensor *t = q->t;
            t->data = dbr_mem_alloc(ctx, t->nbytes);
            if (!t->data) {
                dbr_set_error(ctx, file, line, api, "out of memory");
                rc = -1;
                break;
            }
            t->owns_data = true;
            memcpy(t->data, src, (size_t)t->nbytes);
        } else if (q->kind == OUT_GRAD) {
            if (dbr_param_grad_add(ctx, q->t, src)) rc = -1;
        } else if (q->kind == OUT_EFFECT) {
            dbr_effect *e = &tr->effects[q->effect];
            dbr_bn_update_running(e->running_mean, e->running_var,
                                  tr->graph->vals[e->vid].t.dtype, src,
                                  tr->graph->vals[e->vid].t.shape[1], e->momentum, e->count);
        } else {
            updated = true;
        }
    }
    if (rc == 0) {
        if (updated) ctx->optim_steps++; /* the plan ran the updates with this t */
        tr->n_updates = 0;
        tr->grads_pending = false;
        tr->n_effects = 0;
        tr->arena_bytes = p->arena_bytes;
        tr->lower_bound = p->lower_bound;
        tr->mem = step_mem_of(&p->mem, p->arena_bytes);
        tr->flushes++;
        tr->step_flushes++;
    }
    free(bp);
    free(ps);
    return rc;
}

static int flush(dbr_ctx *ctx, dbr_tensor *want, const char *file, int line) {
    dbr_trace *tr = &ctx->tr;
    const char *api = want ? "dbr_item" : tr->n_updates ? "dbr_optim_step" : "dbr_step";
    char err[512] = "";
    if (!tr->graph) return 0;
    if (tr->bwd_loss >= 0 && !tr->bwd_done && run_autodiff(ctx, err, sizeof err)) {
        dbr_set_error(ctx, file, line, "dbr_backward", "%s", err);
        return -1;
    }
    if (ctx->cfg.mode == DBR_MODE_META) return 0;

    out_req *req = NULL;
    int32_t n_req = 0, cap = 0;
    int rc = 0;
    if (want && !materialized(ctx, want->vid))
        rc |= add_req(&req, &n_req, &cap, (out_req){OUT_TENSOR, want->vid, want, -1});
    if (tr->grads_pending) {
        dbr_tensor **ps = params_by_slot(ctx);
        for (int32_t k = 0; ps && k < tr->n_grad; k++)
            if (tr->grad_vid[k] >= 0)
                rc |= add_req(&req, &n_req, &cap, (out_req){OUT_GRAD, tr->grad_vid[k], ps[k], -1});
        if (!ps) rc = -1;
        free(ps);
    }
    for (int32_t e = 0; e < tr->n_effects; e++)
        rc |= add_req(&req, &n_req, &cap, (out_req){OUT_EFFECT, tr->effects[e].vid, NULL, e});
    for (int32_t u = 0; u < tr->n_updates; u++)
        rc |= add_req(&req, &n_req, &cap, (out_req){OUT_UPDATE, tr->updates[u], NULL, -1});
    rc |= kept_requests(ctx, want, &req, &n_req, &cap);
    if (rc) {
        free(req);
        dbr_set_error(ctx, file, line, api, "out of memory");
        return -1;
    }
    if (n_req == 0) {
        free(req);
        return 0;
    }
    int32_t *want_ids = malloc((size_t)n_req * sizeof *want_ids);
    segment s;
    if (!want_ids) {
        free(req);
        dbr_set_error(ctx, file, line, api, "out of memory");
        return -1;
    }
    for (int32_t k = 0; k < n_req; k++) want_ids[k] = req[k].vid;
    if (segment_build(ctx, want_ids, n_req, &s, err, sizeof err)) {
        dbr_set_error(ctx, file, line, api, "%s", err);
        rc = -1;
        goto out;
    }
    /* The structural hash names the computation, leaves by kind and slot
     * (which is how this step's tensors bind to the plan); the output ids
     * say which value is which output. */
    uint64_t key = mix(dbr_graph_hash(s.g), (uint64_t)ctx->cfg.device);
    key = mix(key, (uint64_t)s.g->n_nodes);
    for (int32_t k = 0; k < s.n_outputs; k++) key = mix(key, (uint64_t)s.outputs[k]);
    dbr_plan_cache *c = cache(ctx);
    dbr_plan *p = c ? dbr_plan_cache_get(c, key) : NULL;
    if (c && !p) {
        p = plan_compile(ctx, &s, req, key, err, sizeof err);
        dbr_plan *evicted = NULL;
        if (!p || dbr_plan_cache_put(c, p, &evicted)) {
            dbr_set_error(ctx, file, line, api, "%s", err[0] ? err : "out of memory");
            plan_release(ctx, p);
            rc = -1;
            goto out;
        }
        plan_release(ctx, evicted);
    }
    if (!p) {
        dbr_set_error(ctx, file, line, api, "out of memory");
        rc = -1;
        goto out;
    }
    rc = run_plan(ctx, p, s.mat, req, n_req, file, line, api);
    tr->read_cut |= rc == 0 && want != NULL;
    tr->last_plan = rc == 0 ? p : NULL;
out:
    segment_free(&s);
    free(want_ids);
    free(req);
    return rc;
}

/* Host time of a flush, less the plan's run and any compile: the price of
 * define-by-run over a fixed graph (cut, hash, lookup, bind). */
static int timed_flush(dbr_ctx *ctx, dbr_tensor *want, const char *file, int line) {
    dbr_trace *tr = &ctx->tr;
    double t0 = now_ms(), run0 = tr->run_ms, c0 = tr->cache ? ((dbr_plan_cache *)tr->cache)->compile_ms : 0;
    int rc = flush(ctx, want, file, line);
    double c1 = tr->cache ? ((dbr_plan_cache *)tr->cache)->compile_ms : 0;
    tr->host_ms += (now_ms() - t0) - (tr->run_ms - run0) - (c1 - c0);
    return rc;
}

int dbr_trace_flush(dbr_ctx *ctx, dbr_tensor *want, const char *file, int line) {
    return timed_flush(ctx, want, file, line);
}



/* The key of a step before autodiff: the recorded forward graph, the loss,
 * the optimizer, the effects and the kept values. */
static uint64_t fast_key(dbr_ctx *ctx) {
    dbr_trace *tr = &ctx->tr;
    const dbr_optim *o = &ctx->optim;
    uint64_t k = mix(dbr_graph_hash(tr->graph), (uint64_t)tr->bwd_loss);
    k = mix(mix(k, (uint64_t)tr->graph->n_vals), (uint64_t)tr->graph->n_nodes);
    double h[7] = {o->lr, o->momentum, o->beta1, o->beta2, o->eps, o->weight_decay, (double)o->nesterov};
    uint64_t bits;
    k = mix(k, (uint64_t)o->kind);
    for (int i = 0; i < 7; i++) {
        memcpy(&bits, &h[i], sizeof bits);
        k = mix(k, bits);
    }
    for (int32_t e = 0; e < tr->n_effects; e++) k = mix(k, (uint64_t)tr->effects[e].vid);
    for (int32_t v = 0; v < tr->graph->n_vals; v++) {
        const dbr_tensor *t = v < tr->vt_cap ? tr->vt[v] : NULL;
        if (t && t->kept && t->vid == v && tr->graph->vals[v].kind == DBR_V_INTER) k = mix(k, (uint64_t)v);
    }
    return k;
}

/* Run the step from the plan an earlier identical step registered. Returns
 * 0 (ran), 1 (no such plan: take the full path) or -1 (error). */
static int fast_step(dbr_ctx *ctx, uint64_t *fk, const char *file, int line) {
    dbr_trace *tr = &ctx->tr;
    *fk = fast_key(ctx);
    dbr_plan_cache *c = cache(ctx);
    dbr_plan *p = c ? dbr_plan_cache_alias(c, *fk) : NULL;
    if (!p) return 1;
    if (dbr_optim_ensure_state(ctx, file, line)) return -1;
    out_req *req = NULL;
    int32_t n_req = 0, cap = 0;
    int rc = 0;
    for (int32_t e = 0; e < tr->n_effects; e++)
        rc |= add_req(&req, &n_req, &cap, (out_req){OUT_EFFECT, tr->effects[e].vid, NULL, e});
    for (int32_t u = 0; u < p->alias_updates; u++)
        rc |= add_req(&req, &n_req, &cap, (out_req){OUT_UPDATE, -1, NULL, -1});
    rc |= kept_requests(ctx, NULL, &req, &n_req, &cap);
    if (rc || n_req != p->n_outputs) {
        free(req);
        if (rc) dbr_set_error(ctx, file, line, "dbr_optim_step", "out of memory");
        return rc ? -1 : 1;
    }
    rc = run_plan(ctx, p, NULL, req, n_req, file, line, "dbr_optim_step");
    free(req);
    if (rc == 0) {
        tr->bwd_done = true; /* the plan held the backward pass */
        tr->fast_hits++;
    }
    return rc;
}

static int add_update(dbr_trace *tr, int32_t vid) {
    if (tr->n_updates == tr->updates_cap) {
        int32_t cap = tr->updates_cap ? tr->updates_cap * 2 : 16;
        int32_t *v = realloc(tr->updates, (size_t)cap * sizeof *v);
        if (!v) return -1;
        tr->updates = v;
        tr->updates_cap = cap;
    }
    tr->updates[tr->n_updates++] = vid;
    return 0;
}

/* "fc1.w:m": the name dumps and drawings give a state leaf; made once per
 * parameter and kept, as graph values borrow their names. */
static const char *state_name(dbr_ctx *ctx, const dbr_tensor *p, int32_t slot, int which) {
    dbr_trace *tr = &ctx->tr;
    int32_t k = 2 * slot + which;
    if (k >= tr->n_state_names) {
        int32_t n = k + 16;
        char **v = realloc(tr->state_names, (size_t)n * sizeof *v);
        if (!v) return NULL;
        memset(v + tr->n_state_names, 0, (size_t)(n - tr->n_state_names) * sizeof *v);
        tr->state_names = v;
        tr->n_state_names = n;
    }
    if (!tr->state_names[k]) {
        size_t len = strlen(p->name) + 3;
        tr->state_names[k] = malloc(len);
        if (tr->state_names[k])
            snprintf(tr->state_names[k], len, "%s:%c", p->name,
                     ctx->optim.kind == DBR_MOMENTUM ? 'v' : which ? 'v' : 'm');
    }
    return tr->state_names[k];
}

/* The optimizer's state of parameter slot as a leaf (which: 0 m, 1 v). */
static int32_t state_leaf(dbr_ctx *ctx, const dbr_tensor *p, int32_t slot, int which) {
    dbr_tinfo t;
    dbr_tinfo_of(p, &t);
    return dbr_graph_leaf(graph(ctx), DBR_V_BUFFER, &t, STATE_BASE + 2 * slot + which, 0,
                          state_name(ctx, p, slot, which));
}

int dbr_trace_optim(dbr_ctx *ctx, const char *file, int line) {
    const char *api = "dbr_optim_step";
    dbr_trace *tr = &ctx->tr;
    char err[512] = "";
    bool pending_bwd = tr->graph && tr->bwd_loss >= 0 && !tr->bwd_done;
    bool fresh = ctx->cfg.mode == DBR_MODE_COMPILED && pending_bwd && tr->step_flushes == 0;
    for (dbr_tensor *p = ctx->params; p && fresh; p = p->next) fresh = p->grad == NULL;
    uint64_t fk = 0;
    if (fresh) {
        /* A step like an earlier one: same recorded forward graph, loss,
         * optimizer and kept values. Its plan runs without autodiff or any
         * other pass. */
        double t0 = now_ms(), run0 = tr->run_ms;
        int r = fast_step(ctx, &fk, file, line);
        tr->host_ms += (now_ms() - t0) - (tr->run_ms - run0); /* hashing, lookup, binding */
        if (r <= 0) return r;
    }
    if (pending_bwd && run_autodiff(ctx, err, sizeof err)) {
        dbr_set_error(ctx, file, line, "dbr_backward", "%s", err);
        return -1;
    }
    bool host = !tr->grads_pending; /* no backward this step: update from the grad buffers */
    for (dbr_tensor *p = ctx->params; p && !host; p = p->next) host = p->grad != NULL;
    if (host) {
        /* gradients already sit in buffers (accumulated over several steps):
         * accumulate this step's too and update on the host, as eager does */
        if (ctx->cfg.mode == DBR_MODE_COMPILED && dbr_trace_flush(ctx, NULL, file, line)) return -1;
        return dbr_optim_apply(ctx, file, line);
    }
    if (ctx->cfg.mode == DBR_MODE_COMPILED && dbr_optim_ensure_state(ctx, file, line)) return -1;
    const dbr_optim *o = &ctx->optim;
    int32_t slot = -1;
    for (dbr_tensor *p = ctx->params; p; p = p->next) {
        slot++;
        if (p->kind != DBR_KIND_PARAM || slot >= tr->n_grad || tr->grad_vid[slot] < 0) continue;
        int32_t in[4] = {value_of(ctx, p, err, sizeof err), tr->grad_vid[slot], -1, -1};
        dbr_attrs a = {.f = {o->lr}};
        dbr_op op;
        int n_in = 2;
        switch (o->kind) {
        case DBR_SGD:
            op = DBR_OP_SGD_UPDATE;
            a.f[1] = o->weight_decay;
            break;
        case DBR_MOMENTUM:
            op = DBR_OP_MOMENTUM_UPDATE;
            a.f[1] = o->momentum;
            a.f[2] = o->weight_decay;
            a.i[0] = o->nesterov;
            in[2] = state_leaf(ctx, p, slot, 0);
            n_in = 3;
            break;
        default:
            op = DBR_OP_ADAM_UPDATE;
            a.f[1] = o->beta1;
            a.f[2] = o->beta2;
            a.f[3] = o->eps;
            a.i[0] = o->kind == DBR_ADAMW;
            memcpy(&a.i[2], &o->weight_decay, sizeof(double));
            in[2] = state_leaf(ctx, p, slot, 0);
            in[3] = state_leaf(ctx, p, slot, 1);
            n_in = 4;
            break;
        }
        int32_t u = -1;
        bool leaves_ok = in[0] >= 0 && (n_in < 3 || in[2] >= 0) && (n_in < 4 || in[3] >= 0);
        if (leaves_ok)
            u = dbr_graph_node(graph(ctx), op, n_in, in, &a, DBR_PH_OPT, api, file, line, err,
                               sizeof err);
        if (u < 0 || add_update(tr, u)) {
            dbr_set_error(ctx, file, line, api, "%s", err[0] ? err : "out of memory");
            return -1;
        }
    }
    tr->grads_pending = false; /* the updates consume the gradients */
    if (ctx->cfg.mode == DBR_MODE_META) {
        tr->n_updates = 0;
        return 0;
    }
    int32_t n_updates = tr->n_updates;
    int rc = dbr_trace_flush(ctx, NULL, file, line);
    if (rc == 0 && fresh && tr->last_plan && tr->step_flushes == 1) {
        tr->last_plan->alias = fk; /* the next such step takes the fast path */
        tr->last_plan->alias_updates = n_updates;
    }
    return rc;
}

int dbr_trace_step_end(dbr_ctx *ctx) {
    dbr_trace *tr = &ctx->tr;
    int rc = 0;
    if (ctx->cfg.mode == DBR_MODE_COMPILED && !ctx->bad_config &&
        ((tr->bwd_loss >= 0 && !tr->bwd_done) || tr->grads_pending || tr->n_effects))
        rc = dbr_trace_flush(ctx, NULL, NULL, 0);
    /* the step's tensors die now: forget them before the next step reuses ids */
    if (tr->vt) memset(tr->vt, 0, (size_t)tr->vt_cap * sizeof *tr->vt);
    if (tr->graph) dbr_graph_clear(tr->graph);
    tr->gen++;
    tr->n_inputs = 0;
    tr->bwd_loss = -1;
    tr->bwd_done = false;
    tr->grads_pending = false;
    tr->n_effects = 0;
    tr->n_updates = 0;
    tr->step_flushes = 0;
    tr->last_plan = NULL;
    tr->barrier = 0;
    tr->read_cut = false;
    return rc;
}

void dbr_trace_free(dbr_ctx *ctx) {
    dbr_trace *tr = &ctx->tr;
    dbr_plan_cache *c = tr->cache;
    if (c) {
        for (int32_t i = 0; i < c->n; i++) plan_release(ctx, c->plans[i]);
        free(c->plans);
        free(c);
    }
    if (tr->arena) {
        dbr_cpu_device.free(NULL, tr->arena, tr->arena_cap);
        ctx->live_bytes -= tr->arena_cap;
    }
    dbr_graph_free(tr->graph);
    free(tr->vt);
    free(tr->inputs);
    free(tr->grad_vid);
    free(tr->effects);
    free(tr->updates);
    for (int32_t k = 0; k < tr->n_state_names; k++) free(tr->state_names[k]);
    free(tr->state_names);
    memset(tr, 0, sizeof *tr);
}

const struct dbr_graph *dbr_graph_of(dbr_ctx *ctx) {
    if (!dbr_recording(ctx)) return NULL;
    dbr_trace *tr = &ctx->tr;
    char err[512];
    if (tr->graph && tr->bwd_loss >= 0 && !tr->bwd_done && run_autodiff(ctx, err, sizeof err)) {
        dbr_set_error(ctx, NULL, 0, "dbr_backward", "%s", err);
        return NULL;
    }
    return graph(ctx);
}

int dbr_plan_step_(dbr_ctx *ctx, dbr_step_mem *out, const char *file, int line) {
    const char *api = "dbr_plan_step";
    memset(out, 0, sizeof *out);
    if (!ctx) return -1;
    if (!dbr_recording(ctx)) {
        dbr_set_error(ctx, file, line, api, "plans a recorded step: use compiled or meta mode");
        return -1;
    }
    const dbr_graph *tg = dbr_graph_of(ctx); /* runs autodiff after dbr_backward */
    if (!tg) return -1;
    if (tg->n_nodes == 0) {
        dbr_set_error(ctx, file, line, api, "nothing recorded in this step");
        return -1;
    }
    dbr_trace *tr = &ctx->tr;
    char err[512] = "";
    dbr_graph *c = dbr_graph_clone(tg), *g = NULL;
    int32_t *remap = c ? malloc((size_t)(c->n_vals + 1) * sizeof *remap) : NULL;
    dbr_step_plan sp = {0};
    int rc = -1;
    if (!remap) {
        snprintf(err, sizeof err, "out of memory");
        goto out;
    }
    /* what the step hands out: the loss, the gradients no update consumes,
     * kept values; updates are outputs of their own */
    bool updates = false;
    for (int32_t k = 0; k < c->n_nodes; k++) updates |= c->nodes[k].phase == DBR_PH_OPT;
    int64_t outputs = 0;
    for (int32_t v = 0; v < c->n_vals; v++) {
        const dbr_tensor *t = v < tr->vt_cap ? tr->vt[v] : NULL;
        bool out_v = v == tr->bwd_loss || (t && t->kept && t->vid == v && t->vgen == tr->gen);
        if (c->vals[v].kind == DBR_V_INTER && out_v) {
            c->vals[v].is_output = true;
            outputs += tinfo_bytes(&c->vals[v].t);
        }
    }
    for (int32_t e = 0; e < tr->n_effects; e++) /* batch statistics for the running averages */
        c->vals[tr->effects[e].vid].is_output = true;
    for (int32_t k = 0; k < c->n_nodes; k++)
        if (c->nodes[k].phase == DBR_PH_OPT) c->vals[c->nodes[k].out].is_output = true;
    for (int32_t k = 0; !updates && k < tr->n_grad; k++)
        if (tr->grad_vid && tr->grad_vid[k] >= 0) {
            c->vals[tr->grad_vid[k]].is_output = true;
            outputs += tinfo_bytes(&c->vals[tr->grad_vid[k]].t);
        }
    if (dbr_simplify(c, &g, remap, NULL, err, sizeof err)) goto out;
    dbr_fuse_stats fst;
    if (fuse_step(ctx, &g, remap, c->n_vals, &fst, err, sizeof err)) goto out;
    dbr_plan_mem m;
    if (plan_budget(ctx, g, outputs, &m, &sp, err, sizeof err)) goto out;
    *out = step_mem_of(&m, sp.mp.arena_bytes);
    rc = 0;
out:
    if (rc) dbr_set_error(ctx, file, line, api, "%s", err[0] ? err : "out of memory");
    dbr_step_plan_free(&sp);
    dbr_graph_free(g);
    dbr_graph_free(c);
    free(remap);
    return rc;
}

void dbr_stats_get(const dbr_ctx *ctx, dbr_stats *out) {
    const dbr_trace *tr = &ctx->tr;
    const dbr_plan_cache *c = tr->cache;
    memset(out, 0, sizeof *out);
    if (c) {
        dbr_cg_stats cg;
        dbr_cg_stats_get(&cg);
        out->jit_kernels = cg.compiled;
        out->jit_disk_hits = cg.disk_hits;
        out->jit_ms = cg.jit_ms_total;
        out->jit_disk_ms = cg.disk_ms_total;
        out->fused_groups = tr->fused_groups;
        out->fused_ops = tr->fused_ops;
        out->cache_hits = c->hits;
        out->cache_misses = c->misses;
        out->plans = c->n;
        out->compile_ms = c->compile_ms;
    }
    out->graph_breaks = tr->breaks;
    out->flushes = tr->flushes;
    out->arena_bytes = tr->arena_bytes;
    out->arena_lower_bound = tr->lower_bound;
    out->host_ms = tr->host_ms;
    out->pass_free_hits = tr->fast_hits;
    out->run_ms = tr->run_ms;
    out->mem = tr->mem;
}
