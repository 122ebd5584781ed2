/* plan.c: running a compiled plan over its arena on the CPU, and the LRU
 * plan cache. Building plans (passes, memory planning) is the frontend's
 * compile step; this file only executes and stores them. */
#include "runtime/plan.h"

#include "kernels/philox.h"
#include "runtime/prof.h"

#include <stdlib.h>
#include <string.h>

static void *arg_ptr(const dbr_plan *p, void *const *bind_ptr, int64_t a) {
    if (a >= 0) return (char *)p->arena + a;
    const dbr_bind *b = &p->binds[-1 - a];
    return b->kind == DBR_BIND_CONST ? b->owned : bind_ptr[-1 - a];
}

int dbr_plan_run(dbr_plan *p, void *const *bind_ptr, const dbr_run_keys *keys, void *stream,
                 int32_t *failed) {
    dbr_prof *prof = keys->prof && keys->prof->on ? keys->prof : NULL;
    for (int32_t k = 0; k < p->n_launches; k++) {
        dbr_launch *l = &p->launches[k];
        const void *in[DBR_MAX_SRC];
        for (int i = 0; i < l->node.n_in; i++) in[i] = arg_ptr(p, bind_ptr, l->in[i]);
        if (l->node.op == DBR_OP_DROPOUT)
            l->node.a.i[0] = (int64_t)dbr_rand_op_key(keys->seed, (uint64_t)keys->step,
                                                      (uint64_t)l->node.a.i[1]);
        else if (l->node.op == DBR_OP_ADAM_UPDATE)
            l->node.a.i[1] = keys->opt_t;
        int64_t t0 = prof ? dbr_prof_now_ns() : 0;
        int rc = p->dev->launch(NULL, &l->node, in, arg_ptr(p, bind_ptr, l->out), stream);
        if (prof)
            dbr_prof_record(prof, &l->node, dbr_prof_phase_name(l->phase), t0, dbr_prof_now_ns());
        if (rc) {
            if (failed) *failed = k;
            return -1;
        }
    }
    if (p->dev->sync(NULL, stream)) {
        if (failed) *failed = p->n_launches - 1;
        return -1;
    }
    return 0;
}

void *dbr_plan_output(const dbr_plan *p, void *const *bind_ptr, int32_t k) {
    return arg_ptr(p, bind_ptr, p->outputs[k]);
}

void dbr_plan_free(dbr_plan *p) {
    if (!p) return;
    for (int32_t b = 0; p->binds && b < p->n_binds; b++)
        if (p->binds[b].owned) p->dev->free(NULL, p->binds[b].owned, 0);
    free(p->launches);
    free(p->binds);
    free(p->outputs);
    free(p);
}

dbr_plan *dbr_plan_cache_get(dbr_plan_cache *c, uint64_t key) {
    for (int32_t i = 0; i < c->n; i++)
        if (c->plans[i]->key == key) {
            c->hits++;
            c->plans[i]->last_used = ++c->clock;
            return c->plans[i];
        }
    c->misses++;
    return NULL;
}

dbr_plan *dbr_plan_cache_alias(dbr_plan_cache *c, uint64_t alias) {
    for (int32_t i = 0; alias && i < c->n; i++)
        if (c->plans[i]->alias == alias) {
            c->hits++;
            c->plans[i]->last_used = ++c->clock;
            return c->plans[i];
        }
    return NULL;
}

int dbr_plan_cache_put(dbr_plan_cache *c, dbr_plan *p, dbr_plan **evicted) {
    *evicted = NULL;
    if (c->cap == 0) c->cap = 16;
    if (!c->plans) {
        c->plans = calloc((size_t)c->cap, sizeof *c->plans);
        if (!c->plans) return -1;
    }
    p->last_used = ++c->clock;
    c->compile_ms += p->compile_ms;
    if (c->n < c->cap) {
        c->plans[c->n++] = p;
        return 0;
    }
    int32_t lru = 0;
    for (int32_t i = 1; i < c->n; i++)
        if (c->plans[i]->last_used < c->plans[lru]->last_used) lru = i;
    *evicted = c->plans[lru];
    c->plans[lru] = p;
    c->evictions++;
    return 0;
}
