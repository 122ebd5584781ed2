/* remat_apply.c: from a plan's keep set to the step that runs (recompute
 * copies placed on demand, updates moved up), and the budget loop that holds
 * memplan's real arena, not the planner's estimate, to the budget. */
#include "passes/remat_apply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* ---- apply ---------------------------------------------------------------- */

typedef struct item {
    int32_t node;
    bool copy; /* a RECOMP copy of a forward node */
} item;

typedef struct apply_st {
    const dbr_graph *g;
    const bool *keep;
    item *it;
    int32_t n_it, cap;
    bool *copied; /* per value: its copy is in the list */
} apply_st;

static bool needs_copy(const apply_st *st, int32_t v) {
    const dbr_value *x = &st->g->vals[v];
    return st->keep && !st->keep[v] && x->kind == DBR_V_INTER && !x->is_output && x->producer >= 0 &&
           st->g->nodes[x->producer].phase == DBR_PH_FWD;
}

static int push(apply_st *st, int32_t node, bool copy) {
    if (st->n_it == st->cap) {
        int32_t c = st->cap ? st->cap * 2 : 256;
        item *v = realloc(st->it, (size_t)c * sizeof *v);
        if (!v) return -1;
        st->it = v;
        st->cap = c;
    }
    st->it[st->n_it++] = (item){node, copy};
    return 0;
}

/* Make sure a copy of v is in the list when v needs one (its unkept inputs
 * first). Depth is bounded by the longest chain of unkept forward values. */
static int ensure(apply_st *st, int32_t v) {
    if (!needs_copy(st, v) || st->copied[v]) return 0;
    int32_t p = st->g->vals[v].producer;
    const dbr_inode *nd = &st->g->nodes[p];
    for (int i = 0; i < nd->n_in; i++)
        if (ensure(st, nd->in[i])) return -1;
    st->copied[v] = true;
    return push(st, p, true);
}

int dbr_remat_apply(const dbr_graph *g, const bool *keep, dbr_graph **out, int32_t *remap,
                    int32_t *n_recomputed, char *err, size_t errlen) {
    *out = NULL;
    int32_t nv = g->n_vals, nn = g->n_nodes;
    apply_st st = {.g = g, .keep = keep};
    st.copied = calloc((size_t)nv + 1, sizeof *st.copied);
    int32_t *opt = malloc((size_t)nn * sizeof *opt + 1);
    int32_t *pos = malloc(((size_t)nv + 1) * sizeof *pos);      /* original's producer position */
    int32_t *cpos = malloc(((size_t)nv + 1) * sizeof *cpos);    /* copy's position */
    int32_t *last = malloc(((size_t)nv + 1) * sizeof *last);    /* leaf: last reader's position */
    int32_t *vmap = malloc(((size_t)nv + 1) * sizeof *vmap), *cmap = malloc(((size_t)nv + 1) * sizeof *cmap);
    int32_t *after = NULL;
    item *fin = NULL;
    dbr_graph *o = dbr_graph_new();
    int32_t n_opt = 0, n_copies = 0;
    int rc = -1;
    if (!st.copied || !opt || !pos || !cpos || !last || !vmap || !cmap || !o) goto oom;

    /* 1: g's order, optimizer updates aside, copies made on demand */
    for (int32_t k = 0; k < nn; k++) {
        const dbr_inode *nd = &g->nodes[k];
        if (nd->phase != DBR_PH_FWD)
            for (int i = 0; i < nd->n_in; i++)
                if (ensure(&st, nd->in[i])) goto oom;
        if (nd->phase == DBR_PH_OPT) opt[n_opt++] = k;
        else if (push(&st, k, false)) goto oom;
    }

    /* 2: each update right after what it waits for */
    for (int32_t v = 0; v < nv; v++) pos[v] = cpos[v] = last[v] = -1;
    for (int32_t i = 0; i < st.n_it; i++) {
        const dbr_inode *nd = &g->nodes[st.it[i].node];
        if (st.it[i].copy) {
            cpos[nd->out] = i;
            n_copies++;
        } else {
            pos[nd->out] = i;
        }
        for (int j = 0; j < nd->n_in; j++)
            if (g->vals[nd->in[j]].kind != DBR_V_INTER) last[nd->in[j]] = i;
    }
    after = malloc(((size_t)n_opt + 1) * sizeof *after);
    fin = malloc(((size_t)st.n_it + n_opt + 1) * sizeof *fin);
    if (!after || !fin) goto oom;
    for (int32_t u = 0; u < n_opt; u++) {
        const dbr_inode *nd = &g->nodes[opt[u]];
        int32_t a = -1;
        for (int j = 0; j < nd->n_in; j++) {
            int32_t w = nd->in[j], p;
            if (g->vals[w].kind != DBR_V_INTER) p = last[w]; /* written in place: after its readers */
            else p = needs_copy(&st, w) ? cpos[w] : pos[w];
            if (p > a) a = p;
        }
        after[u] = a;
    }
    int32_t nf = 0;
    for (int32_t i = -1; i < st.n_it; i++) {
        if (i >= 0) fin[nf++] = st.it[i];
        for (int32_t u = 0; u < n_opt; u++)
            if (after[u] == i) fin[nf++] = (item){opt[u], false};
    }

    /* 3: the new graph */
    for (int32_t v = 0; v < nv; v++) {
        const dbr_value *x = &g->vals[v];
        vmap[v] = cmap[v] = -1;
        if (x->kind == DBR_V_INTER) continue;
        vmap[v] = dbr_graph_leaf(o, x->kind, &x->t, x->slot, x->cval, x->name);
        if (vmap[v] < 0) goto oom;
    }
    for (int32_t i = 0; i < nf; i++) {
        const dbr_inode *nd = &g->nodes[fin[i].node];
        int32_t in[DBR_MAX_SRC];
        bool fwd_read = nd->phase == DBR_PH_FWD && !fin[i].copy;
        for (int j = 0; j < nd->n_in; j++) {
            int32_t w = nd->in[j];
            in[j] = !fwd_read && needs_copy(&st, w) ? cmap[w] : vmap[w];
            if (in[j] < 0) {
                snprintf(err, errlen, "remat: node %d (%s) reads %%%d before it is made", fin[i].node,
                         dbr_ops[nd->op].name, w);
                goto fail;
            }
        }
        int32_t r = dbr_graph_node(o, nd->op, nd->n_in, in, &nd->a,
                                   fin[i].copy ? DBR_PH_RECOMP : nd->phase, nd->api, nd->file,
                                   nd->line, err, errlen);
        if (r < 0) goto fail;
        if (fin[i].copy) {
            cmap[nd->out] = r;
        } else {
            vmap[nd->out] = r;
            o->vals[r].is_output = g->vals[nd->out].is_output;
        }
    }
    if (remap) memcpy(remap, vmap, (size_t)nv * sizeof *remap);
    if (n_recomputed) *n_recomputed = n_copies;
    *out = o;
    o = NULL;
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "out of memory applying a recomputation plan");
fail:
done:
    dbr_graph_free(o);
    free(st.it);
    free(st.copied);
    free(opt);
    free(pos);
    free(cpos);
    free(last);
    free(vmap);
    free(cmap);
    free(after);
    free(fin);
    return rc;
}

/* ---- the budget loop ------------------------------------------------------ */

typedef struct cand {
    dbr_graph *g;
    int32_t *remap;
    int32_t *order;
    dbr_memplan mp;
    int32_t n_rec;
    double rtime, rflops;
    dbr_remat_strategy strategy;
} cand;

static void cand_free(cand *c) {
    dbr_graph_free(c->g);
    free(c->remap);
    free(c->order);
    dbr_memplan_free(&c->mp);
    memset(c, 0, sizeof *c);
}

static int cand_build(const dbr_graph *g, const bool *keep, const dbr_cost_model *cm, cand *c,
                      char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->remap = malloc(((size_t)g->n_vals + 1) * sizeof *c->remap);
    if (!c->remap) return dbr_errf(err, errlen, "out of memory");
    if (dbr_remat_apply(g, keep, &c->g, c->remap, &c->n_rec, err, errlen)) {
        cand_free(c);
        return -1;
    }
    c->order = malloc(((size_t)c->g->n_nodes + 1) * sizeof *c->order);
    if (!c->order) {
        cand_free(c);
        return dbr_errf(err, errlen, "out of memory");
    }
    for (int32_t k = 0; k < c->g->n_nodes; k++) {
        c->order[k] = k;
        const dbr_inode *nd = &c->g->nodes[k];
        if (nd->phase != DBR_PH_RECOMP) continue;
        c->rtime += dbr_node_time(c->g, nd, cm);
        c->rflops += dbr_node_flops(c->g, nd);
    }
    if (dbr_memplan_build(c->g, c->order, &c->mp, err, errlen)) {
        cand_free(c);
        return -1;
    }
    return 0;
}

static void take(dbr_step_plan *sp, cand *c) {
    sp->g = c->g;
    sp->remap = c->remap;
    sp->order = c->order;
    sp->mp = c->mp;
    sp->n_recomputed = c->n_rec;
    sp->recompute_time = c->rtime;
    sp->recompute_flops = c->rflops;
    sp->strategy = c->strategy;
    memset(c, 0, sizeof *c);
}

/* Keep set of a plan over g's values (everything not planned is kept). */
static void keep_of(const dbr_remat_plan *p, const int32_t *vals, int32_t n_map, bool *keep,
                    int32_t nv) {
    for (int32_t v = 0; v < nv; v++) keep[v] = true;
    for (int32_t i = 0; i < n_map && i < p->n; i++) keep[vals[i]] = p->keep[i];
}

/* The best keep set seen so far by some measure. */
typedef struct pick {
    bool set;
    bool *keep;
    dbr_remat_strategy strategy;
    int64_t arena;
    double rtime;
} pick;

static void pick_put(pick *k, const bool *keep, int32_t nv, const cand *c) {
    k->set = true;
    memcpy(k->keep, keep, (size_t)nv * sizeof *keep);
    k->strategy = c->strategy;
    k->arena = c->mp.arena_bytes;
    k->rtime = c->rtime;
}

/* Plan with the planner at model budget mb (0 with memory_centric: least
 * memory), apply and lay out; records the result in fit/least. Returns 0,
 * with *arena and *model_fits set, or -1. */
static int try_plan(const dbr_graph *g, dbr_remat_session *rg, const int32_t *vals, int32_t n_map,
                    const dbr_step_budget *b, const dbr_cost_model *cm, int64_t mb, bool mem,
                    int64_t target, bool *keep, pick *fit, pick *least, int64_t *arena,
                    bool *model_fits, char *err, size_t errlen) {
    dbr_remat_plan p;
    if (dbr_remat_session_plan(rg, b->strategy, mb, mem, &p, err, errlen)) return -1;
    *model_fits = p.feasible;
    keep_of(&p, vals, n_map, keep, g->n_vals);
    cand c;
    int rc = cand_build(g, keep, cm, &c, err, errlen);
    c.strategy = p.strategy;
    dbr_remat_plan_free(&p);
    if (rc) return -1;
    *arena = c.mp.arena_bytes;
    if (c.mp.arena_bytes <= target && (!fit->set || c.rtime < fit->rtime))
        pick_put(fit, keep, g->n_vals, &c);
    if (!least->set || c.mp.arena_bytes < least->arena) pick_put(least, keep, g->n_vals, &c);
    cand_free(&c);
    return 0;
}

int dbr_step_plan_build(const dbr_graph *g, const dbr_step_budget *b, dbr_step_plan *sp, char *err,
                        size_t errlen) {
    memset(sp, 0, sizeof *sp);
    double t0 = now_ms();
    if (b->budget < 0 || b->budget_frac < 0 || b->budget_frac > 1 || b->fixed < 0)
        return dbr_errf(err, errlen, "remat: bad budget (%lld bytes, fraction %g, fixed %lld)",
                        (long long)b->budget, b->budget_frac, (long long)b->fixed);
    dbr_cost_model cm = b->cm ? *b->cm : dbr_cost_model_cpu();
    for (int32_t k = 0; k < g->n_nodes; k++)
        if (g->nodes[k].phase == DBR_PH_FWD) {
            sp->n_fwd++;
            sp->fwd_time += dbr_node_time(g, &g->nodes[k], &cm);
        }
    cand c;
    if (cand_build(g, NULL, &cm, &c, err, errlen)) return -1;
    c.strategy = DBR_REMAT_NONE;
    int64_t noremat = c.mp.arena_bytes;
    int64_t budget = b->budget;
    if (budget == 0 && b->budget_frac > 0)
        budget = (int64_t)(b->budget_frac * (double)(b->fixed + noremat));
    int64_t target = budget ? budget - b->fixed : 0;
    if (budget == 0 || noremat <= target || sp->n_fwd == 0) {
        take(sp, &c);
        sp->feasible = budget == 0 || noremat <= target;
        goto done;
    }
    cand_free(&c);

    dbr_rgraph rg = {0};
    dbr_remat_session ss = {.g = &rg};
    int32_t n_map = 0, *vals = NULL;
    int32_t nv = g->n_vals;
    bool *keep = malloc(((size_t)nv + 1) * sizeof *keep);
    pick fit = {.keep = malloc(((size_t)nv + 1) * sizeof(bool))};
    pick least = {.keep = malloc(((size_t)nv + 1) * sizeof(bool)), .set = true,
                  .strategy = DBR_REMAT_NONE, .arena = noremat};
    int rc = -1;
    if (!keep || !fit.keep || !least.keep) {
        dbr_errf(err, errlen, "out of memory");
        goto out;
    }
    for (int32_t v = 0; v < nv; v++) least.keep[v] = true;
    if (dbr_rgraph_from_ir(g, &cm, &rg, err, errlen)) goto out;
    vals = dbr_rgraph_ir_values(g, &n_map);
    if (!vals || n_map != rg.n) {
        dbr_errf(err, errlen, "out of memory");
        goto out;
    }
    /* the planner's model of the no-recompute arena, to translate the budget */
    dbr_remat_plan p;
    if (dbr_remat_plan_build(&rg, DBR_REMAT_NONE, 0, false, &p, err, errlen)) goto out;
    double ratio = (double)p.peak / (double)(noremat ? noremat : 1);
    dbr_remat_plan_free(&p);
    int32_t tries = b->max_tries > 0 ? b->max_tries : 12;
    /* Search the planner's budget mb for the largest that memplan finds
     * within the target (the least recompute): bad is the smallest mb found
     * too big, good the largest that fitted. Shrink from a miss by how far
     * memplan's arena was off, grow from a fit, then bisect to within 2%. */
    int64_t bad = 0, good = 0, arena;
    int64_t mb = target > 0 ? (int64_t)((double)target * ratio) : 0;
    bool model_fits;
    for (int32_t t = 0; t < tries && mb > 0; t++) {
        if (try_plan(g, &ss, vals, n_map, b, &cm, mb, false, target, keep, &fit, &least, &arena,
                     &model_fits, err, errlen))
            goto out;
        sp->tries++;
        if (arena <= target) good = mb;
        else if (!model_fits) break; /* the planner cannot go lower in its own model */
        else bad = mb;
        int64_t nx;
        if (good && bad) nx = good + (bad - good) / 2;
        else if (good) nx = good + good / 4;
        else nx = (int64_t)((double)mb * (double)target / (double)arena * 0.97);
        if (good && bad && bad - good <= bad / 50) break;
        if (good && !bad && nx > 4 * (int64_t)((double)target * ratio)) break;
        if ((bad && nx >= bad) || (good && nx <= good)) break;
        mb = nx;
    }
    if (!fit.set) {
        /* nothing fitted: the least memory the planner can find */
        if (try_plan(g, &ss, vals, n_map, b, &cm, 0, true, target, keep, &fit, &least, &arena,
                     &model_fits, err, errlen))
            goto out;
        sp->tries++;
    }
    pick *w = fit.set ? &fit : &least;
    if (cand_build(g, w->keep, &cm, &c, err, errlen)) goto out;
    c.strategy = w->strategy;
    take(sp, &c);
    sp->feasible = fit.set;
    sp->min_arena = least.arena;
    rc = 0;
out:
    dbr_remat_session_free(&ss);
    dbr_rgraph_free(&rg);
    free(vals);
    free(keep);
    free(fit.keep);
    free(least.keep);
    if (rc) {
        sp->plan_ms = now_ms() - t0;
        return -1;
    }
done:
    sp->budget = budget;
    sp->arena_budget = target;
    sp->noremat_arena = noremat;
    if (!sp->min_arena || sp->mp.arena_bytes < sp->min_arena) sp->min_arena = sp->mp.arena_bytes;
    sp->tries++;
    sp->plan_ms = now_ms() - t0;
    return 0;
}

void dbr_step_plan_free(dbr_step_plan *sp) {
    dbr_graph_free(sp->g);
    free(sp->remap);
    free(sp->order);
    dbr_memplan_free(&sp->mp);
    sp->g = NULL;
    sp->remap = sp->order = NULL;
}
