/* remat_ilp.c: the recomputation oracle, a Checkmate-style MILP (Jain et al.
 * 2020) solved with GLPK: per stage and node, compute (R) and keep (S)
 * binaries, stage memory accounting, least recompute time. */
#include "passes/remat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef DBR_HAVE_GLPK
#include <glpk.h>
#endif


void dbr_remat_ilp_result_free(dbr_remat_ilp_result *r) {
    if (r) {
        free(r->ev);
        memset(r, 0, sizeof *r);
    }
}

#ifdef DBR_HAVE_GLPK
static int glp_quiet(void *info, const char *s) {
    (void)info;
    (void)s;
    return 1;
}

typedef struct rows {
    int *ia, *ja;
    double *ar;
    size_t len, cap;
} rows;

static int nz(rows *m, int row, int col, double v) {
    if (m->len + 1 >= m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 1024;
        int *a = realloc(m->ia, nc * sizeof *a);
        if (a)
            m->ia = a;
        int *b = realloc(m->ja, nc * sizeof *b);
        if (b)
            m->ja = b;
        double *c = realloc(m->ar, nc * sizeof *c);
        if (c)
            m->ar = c;
        if (!a || !b || !c)
            return -1;
        m->cap = nc;
    }
    m->len++;
    m->ia[m->len] = row;
    m->ja[m->len] = col;
    m->ar[m->len] = v;
    return 0;
}
#endif

int dbr_remat_ilp(const dbr_rgraph *g, const dbr_remat_ilp_opts *o, dbr_remat_ilp_result *r,
                  char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
#ifndef DBR_HAVE_GLPK
    (void)g;
    (void)o;
    return dbr_errf(err, errlen, "remat ilp: built without GLPK");
#else
    if (dbr_rg_validate(g, err, errlen))
        return -1;
    int32_t n = g->n, maxn = o->max_nodes > 0 ? o->max_nodes : 64;
    if (n > maxn)
        return dbr_errf(err, errlen, "remat ilp: %d nodes, more than the MILP takes (%d)", (int)n, (int)maxn);
    if (n == 0)
        return dbr_errf(err, errlen, "remat ilp: empty graph");
    int32_t T = 2 * n;
    int rc = -1;
    int *colS = calloc((size_t)T * n, sizeof(int)), *colR = calloc((size_t)T * n, sizeof(int));
    int64_t *G = calloc((size_t)n, sizeof(int64_t));
    int32_t *born = malloc((size_t)n * sizeof(int32_t));
    rows m = {0};
    glp_prob *lp = NULL;
    if (!colS || !colR || !G || !born)
        goto oom;
    /* live gradient bytes at each backward stage (node n-1-s at stage s) */
    for (int32_t v = 0; v < n; v++)
        born[v] = n;
    for (int32_t s = 0; s < n; s++) {
        int32_t b = n - 1 - s;
        if (born[b] > s)
            born[b] = s;
        for (int32_t k = g->in_first[b]; k < g->in_first[b + 1]; k++)
            if (g->ins[k] >= 0 && born[g->ins[k]] > s)
                born[g->ins[k]] = s;
    }
    for (int32_t s = 0; s < n; s++)
        for (int32_t v = 0; v < n; v++)
            if (born[v] <= s && n - 1 - v >= s)
                G[s] += g->bytes[v];
    int64_t tot = 1;
    for (int32_t i = 0; i < n; i++)
        tot += g->bytes[i];
    double sc = 1.0 / (double)tot, B = o->budget > 0 ? o->budget * sc : 1e30;
    lp = glp_create_prob();
    glp_set_obj_dir(lp, GLP_MIN);
    int ncol = 0;
    for (int32_t t = 1; t < T; t++)
        for (int32_t i = 0; i < n && (t >= n || i < t); i++)
            colS[t * n + i] = ++ncol;
    for (int32_t t = n; t < T; t++)
        for (int32_t i = 0; i < n; i++)
            colR[t * n + i] = ++ncol;
    glp_add_cols(lp, ncol);
    for (int c = 1; c <= ncol; c++)
        glp_set_col_kind(lp, c, GLP_BV);
    for (int32_t t = n; t < T; t++)
        for (int32_t i = 0; i < n; i++)
            glp_set_obj_coef(lp, colR[t * n + i], g->time[i]);
    int row = 0;
#define ROW(type, lo, hi) (row = glp_add_rows(lp, 1), glp_set_row_bnds(lp, row, type, lo, hi))
#define NZ(c, v)                        \
    do {                                \
        if (nz(&m, row, (c), (v)))      \
            goto oom;                   \
    } while (0)
    for (int32_t t = 0; t < T; t++) {
        bool fwd = t < n;
        /* S[t+1][i] <= R[t][i] + S[t][i] */
        if (t + 1 < T)
            for (int32_t i = 0; i < n; i++) {
                int sn = colS[(t + 1) * n + i];
                if (!sn)
                    continue;
                if (fwd) {
                    if (i == t)
                        continue; /* R[t][t] = 1 */
                    ROW(GLP_UP, 0, 0);
                    NZ(sn, 1);
                    if (colS[t * n + i])
                        NZ(colS[t * n + i], -1);
                } else {
                    ROW(GLP_UP, 0, 0);
                    NZ(sn, 1);
                    NZ(colR[t * n + i], -1);
                    NZ(colS[t * n + i], -1);
                }
            }
        if (fwd) {
            /* inputs of t are held; memory */
            for (int32_t k = g->in_first[t]; k < g->in_first[t + 1]; k++)
                if (g->ins[k] >= 0) {
                    ROW(GLP_FX, 1, 1);
                    NZ(colS[t * n + g->ins[k]], 1);
                }
            if (t > 0) {
                ROW(GLP_UP, 0, B - g->bytes[t] * sc);
                for (int32_t i = 0; i < t; i++)
                    NZ(colS[t * n + i], g->bytes[i] * sc);
            } else if (g->bytes[0] * sc > B) {
                ROW(GLP_FX, 1, 1); /* infeasible on purpose: no column can satisfy it */
            }
            continue;
        }
        int32_t b = n - 1 - (t - n);
        for (int32_t i = 0; i < n; i++)
            for (int32_t k = g->in_first[i]; k < g->in_first[i + 1]; k++) {
                int32_t j = g->ins[k];
                if (j < 0)
                    continue;
                ROW(GLP_UP, 0, 0); /* R[i] <= R[j] + S[j] */
                NZ(colR[t * n + i], 1);
                NZ(colR[t * n + j], -1);
                NZ(colS[t * n + j], -1);
            }
        for (int32_t k = g->in_first[b]; k < g->in_first[b + 1]; k++) {
            int32_t j = g->ins[k];
            if (j >= 0 && dbr_rg_bwd_reads_input(g, b, k - g->in_first[b])) {
                ROW(GLP_LO, 1, 0);
                NZ(colR[t * n + j], 1);
                NZ(colS[t * n + j], 1);
            }
        }
        if (g->retain[b] & DBR_RG_RETAIN_OUT) {
            ROW(GLP_LO, 1, 0);
            NZ(colR[t * n + b], 1);
            NZ(colS[t * n + b], 1);
        }
        ROW(GLP_UP, 0, B - G[t - n] * sc);
        for (int32_t i = 0; i < n; i++) {
            NZ(colR[t * n + i], g->bytes[i] * sc);
            NZ(colS[t * n + i], g->bytes[i] * sc);
        }
    }
#undef ROW
#undef NZ
    glp_load_matrix(lp, (int)m.len, m.ia, m.ja, m.ar);
    glp_term_hook(glp_quiet, NULL);
    glp_iocp parm;
    glp_init_iocp(&parm);
    parm.presolve = GLP_ON;
    parm.msg_lev = GLP_MSG_OFF;
    parm.tm_lim = (int)((o->time_limit_s > 0 ? o->time_limit_s : 10.0) * 1000);
    int st = glp_intopt(lp, &parm);
    glp_term_hook(NULL, NULL);
    int ms = glp_mip_status(lp);
    if ((st == 0 || st == GLP_ETMLIM) && (ms == GLP_OPT || ms == GLP_FEAS)) {
        r->found = true;
        r->optimal = st == 0 && ms == GLP_OPT;
        r->ev = malloc(((size_t)3 * n * n + 1) * sizeof *r->ev);
        if (!r->ev)
            goto oom;
        int32_t E = 0;
        int64_t peak = 0;
        for (int32_t t = 0; t < T; t++) {
            int64_t mem = t < n ? g->bytes[t] : G[t - n];
            for (int32_t i = 0; i < n; i++) {
                bool R = t >= n && glp_mip_col_val(lp, colR[t * n + i]) > 0.5;
                bool S = colS[t * n + i] && glp_mip_col_val(lp, colS[t * n + i]) > 0.5;
                mem += (R ? g->bytes[i] : 0) + (S ? g->bytes[i] : 0);
                if (R) {
                    r->ev[E++] = (dbr_remat_event){DBR_REV_RECOMP, i};
                    r->overhead += g->time[i];
                }
            }
            r->ev[E++] = (dbr_remat_event){t < n ? DBR_REV_FWD : DBR_REV_BWD, t < n ? t : n - 1 - (t - n)};
            if (mem > peak)
                peak = mem;
        }
        r->n_ev = E;
        r->model_peak = peak;
    } else if (st != 0 && st != GLP_ENOPFS && st != GLP_ENODFS && st != GLP_ETMLIM) {
        dbr_errf(err, errlen, "remat ilp: glp_intopt failed (%d)", st);
        goto out;
    }
    rc = 0;
    goto out;
oom:
    dbr_errf(err, errlen, "remat: out of memory");
out:
    if (lp)
        glp_delete_prob(lp);
    free(m.ia);
    free(m.ja);
    free(m.ar);
    free(colS);
    free(colR);
    free(G);
    free(born);
    if (rc)
        dbr_remat_ilp_result_free(r);
    return rc;
#endif
}
