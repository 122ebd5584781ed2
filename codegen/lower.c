/* lower.c: fused bodies to kernel descriptions, and the table of compiled
 * CPU kernels by body id. */
#include "codegen/lower.h"

#include "codegen/codegen.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int dbr_lower_fbody(const dbr_fbody *b, dbr_kdesc *kd, char *err, size_t errlen) {
    memset(kd, 0, sizeof *kd);
    const dbr_tinfo *sp = &b->space;
    if (b->n_in < 1 || b->n_in > DBR_KD_MAX_IN || b->n_ins < 1 || b->n_ins > DBR_KD_MAX_INS)
        return dbr_errf(err, errlen, "fused body %s: %d inputs, %d instructions", b->name,
                        b->n_in, b->n_ins);
    kd->dtype = sp->dtype;
    kd->n_in = b->n_in;
    kd->n_ins = b->n_ins;
    memcpy(kd->name, b->name, sizeof kd->name);
    kd->name[sizeof kd->name - 1] = 0;
    for (int k = 0; k < b->n_ins; k++) {
        const dbr_fins *s = &b->ins[k];
        kd->ins[k] = (dbr_kd_ins){.kind = s->kind == DBR_FI_LOAD    ? DBR_KD_LOAD
                                          : s->kind == DBR_FI_CONST ? DBR_KD_CONST
                                                                    : DBR_KD_OP,
                                  .op = s->op, .a = s->a, .b = s->b, .c = s->c, .p = s->p};
    }
    /* full strides over space, then the dims worth keeping */
    int nd = sp->ndim;
    int64_t shape[DBR_IR_MAX_DIMS + 1], st[DBR_KD_MAX_IN][DBR_IR_MAX_DIMS + 1];
    bool redd[DBR_IR_MAX_DIMS + 1];
    for (int i = 0; i < b->n_in; i++) {
        const dbr_tinfo *t = &b->in[i];
        if (t->ndim > nd)
            return dbr_errf(err, errlen, "fused body %s: input %d has more dims than the space",
                            b->name, i);
        int64_t c = 1;
        for (int d = nd - 1; d >= 0; d--) {
            int td = d - (nd - t->ndim);
            int64_t len = td >= 0 ? t->shape[td] : 1;
            if (len != 1 && len != sp->shape[d])
                return dbr_errf(err, errlen, "fused body %s: input %d does not broadcast",
                                b->name, i);
            st[i][d] = len == 1 ? 0 : c;
            c *= len;
        }
    }
    int n = 0;
    bool any_red = false;
    for (int d = 0; d < nd; d++) {
        bool r = b->red && ((b->red_axes >> d) & 1u);
        if (sp->shape[d] == 1) continue;
        if (sp->shape[d] == 0) return dbr_errf(err, errlen, "fused body %s is empty", b->name);
        shape[n] = sp->shape[d];
        redd[n] = r;
        for (int i = 0; i < b->n_in; i++) st[i][n] = st[i][d];
        any_red |= r;
        n++;
    }
    if (b->red && !any_red) { /* every reduced dim was 1: fold over one element */
        shape[n] = 1;
        redd[n] = true;
        for (int i = 0; i < b->n_in; i++) st[i][n] = 0;
        n++;
    }
    if (n == 0) {
        shape[0] = 1;
        redd[0] = false;
        for (int i = 0; i < b->n_in; i++) st[i][0] = 0;
        n = 1;
    }
    /* merge d into d - 1 where, for every input, stepping d - 1 once is
     * stepping d all the way (stride[d-1] == stride[d] * shape[d]) */
    int m = 0;
    for (int d = 0; d < n; d++) {
        bool merge = m > 0 && redd[m - 1] == redd[d];
        for (int i = 0; merge && i < b->n_in; i++)
            merge = st[i][m - 1] == st[i][d] * shape[d];
        if (merge) {
            shape[m - 1] *= shape[d];
            for (int i = 0; i < b->n_in; i++) st[i][m - 1] = st[i][d];
            continue;
        }
        shape[m] = shape[d];
        redd[m] = redd[d];
        for (int i = 0; i < b->n_in; i++) st[i][m] = st[i][d];
        m++;
    }
    kd->ndim = m;
    for (int d = 0; d < m; d++) {
        kd->shape[d] = shape[d];
        kd->nred += redd[d];
    }
    kd->red = kd->nred ? b->red : 0;
    for (int i = 0; i < b->n_in; i++) {
        kd->in[i].dtype = b->in[i].dtype;
        for (int d = 0; d < m; d++) kd->in[i].stride[d] = st[i][d];
    }
    return dbr_kdesc_check(kd, err, errlen);
}

/* ---- compiled kernels by body id ---------------------------------------------- */

typedef struct entry {
    dbr_kdesc kd;
    dbr_kfn fn;
} entry;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry **table; /* table[id] */
static int64_t cap;

int dbr_cg_fused_cpu(int64_t id, const dbr_kdesc **kd, dbr_kfn *fn, char *err, size_t errlen) {
    pthread_mutex_lock(&lock);
    entry *e = id > 0 && id < cap ? table[id] : NULL;
    pthread_mutex_unlock(&lock);
    if (e) {
        *kd = &e->kd;
        *fn = e->fn;
        return 0;
    }
    const dbr_fbody *b = dbr_fbody_get(id);
    if (!b) return dbr_errf(err, errlen, "no fused body %lld", (long long)id);
    e = calloc(1, sizeof *e);
    if (!e) return dbr_errf(err, errlen, "out of memory");
    if (dbr_lower_fbody(b, &e->kd, err, errlen) || !(e->fn = dbr_cg_cpu(&e->kd, err, errlen))) {
        free(e);
        return -1;
    }
    pthread_mutex_lock(&lock);
    if (id >= cap) {
        int64_t nc = cap ? cap : 64;
        while (nc <= id) nc *= 2;
        entry **nt = realloc(table, (size_t)nc * sizeof *nt);
        if (!nt) {
            pthread_mutex_unlock(&lock);
            free(e);
            return dbr_errf(err, errlen, "out of memory");
        }
        memset(nt + cap, 0, (size_t)(nc - cap) * sizeof *nt);
        table = nt;
        cap = nc;
    }
    if (table[id]) { /* another thread got there first */
        free(e);
        e = table[id];
    } else {
        table[id] = e;
    }
    pthread_mutex_unlock(&lock);
    *kd = &e->kd;
    *fn = e->fn;
    return 0;
}

__attribute__((destructor)) static void fused_table_free(void) {
    for (int64_t k = 0; k < cap; k++) free(table[k]);
    free(table);
    table = NULL;
    cap = 0;
}
