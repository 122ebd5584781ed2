/* remat_dp.c: the dynamic programme of Kusumoto et al. (NeurIPS 2019) over
 * increasing chains of lower sets, with a Pareto front per lower set, over
 * the exact family of lower sets when it is small and an approximate family
 * (ancestor closures and index prefixes) otherwise; and its cost model. */
#include "passes/remat.h"

#ifdef DBR_HAVE_GLPK
#include <glpk.h>
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef uint64_t word;

typedef struct fam {
    int32_t n, W, F;
    word *bits; /* F sets of W words */
    int32_t *pop;
    int32_t cap;
} fam;

static word *set_at(fam *f, int32_t s) { return f->bits + (size_t)s * f->W; }

static int fam_push(fam *f, const word *s) {
    if (f->F == f->cap) {
        int32_t nc = f->cap ? f->cap * 2 : 64;
        word *nb = realloc(f->bits, (size_t)nc * f->W * sizeof(word));
        if (!nb)
            return -1;
        f->bits = nb;
        f->cap = nc;
    }
    memcpy(set_at(f, f->F++), s, (size_t)f->W * sizeof(word));
    return 0;
}

static bool has(const word *s, int32_t i) { return (s[i >> 6] >> (i & 63)) & 1u; }
static void put(word *s, int32_t i) { s[i >> 6] |= (word)1 << (i & 63); }

/* Exact enumeration; returns 1 when the cap was hit. */
static int enum_lower(const dbr_rgraph *g, fam *f, word *cur, int32_t i, int32_t cap) {
    if (i == g->n) {
        if (f->F >= cap)
            return 1;
        return fam_push(f, cur) ? -1 : 0;
    }
    int rc = enum_lower(g, f, cur, i + 1, cap);
    if (rc)
        return rc;
    for (int32_t k = g->in_first[i]; k < g->in_first[i + 1]; k++)
        if (g->ins[k] >= 0 && !has(cur, g->ins[k]))
            return 0;
    put(cur, i);
    rc = enum_lower(g, f, cur, i + 1, cap);
    cur[i >> 6] &= ~((word)1 << (i & 63));
    return rc;
}

static int32_t popc(const word *s, int32_t W) {
    int32_t c = 0;
    for (int32_t w = 0; w < W; w++)
        c += __builtin_popcountll(s[w]);
    return c;
}

static fam *sort_ctx;
static int cmp_sets(const void *x, const void *y) {
    const word *a = set_at(sort_ctx, *(const int32_t *)x), *b = set_at(sort_ctx, *(const int32_t *)y);
    int32_t pa = popc(a, sort_ctx->W), pb = popc(b, sort_ctx->W);
    if (pa != pb)
        return pa < pb ? -1 : 1;
    return memcmp(a, b, (size_t)sort_ctx->W * sizeof(word));
}

/* Sorts by size (so every subset comes first) and removes duplicates. */
static int fam_sort(fam *f) {
    int32_t *ord = malloc(((size_t)f->F + 1) * sizeof(int32_t));
    word *nb = malloc(((size_t)f->F + 1) * f->W * sizeof(word));
    f->pop = malloc(((size_t)f->F + 1) * sizeof(int32_t));
    if (!ord || !nb || !f->pop) {
        free(ord);
        free(nb);
        return -1;
    }
    for (int32_t s = 0; s < f->F; s++)
        ord[s] = s;
    sort_ctx = f;
    qsort(ord, (size_t)f->F, sizeof(int32_t), cmp_sets);
    int32_t m = 0;
    for (int32_t s = 0; s < f->F; s++) {
        const word *x = set_at(f, ord[s]);
        if (m && !memcmp(nb + (size_t)(m - 1) * f->W, x, (size_t)f->W * sizeof(word)))
            continue;
        memcpy(nb + (size_t)m * f->W, x, (size_t)f->W * sizeof(word));
        f->pop[m++] = popc(x, f->W);
    }
    free(ord);
    free(f->bits);
    f->bits = nb;
    f->F = m;
    f->cap = m;
    return 0;
}

static int fam_build(const dbr_rgraph *g, int32_t cap, bool force_approx, fam *f, bool *exact) {
    int32_t n = g->n;
    memset(f, 0, sizeof *f);
    f->n = n;
    f->W = (n + 63) / 64 + (n == 0);
    word *cur = calloc((size_t)f->W, sizeof(word));
    if (!cur)
        return -1;
    int rc = force_approx ? 1 : enum_lower(g, f, cur, 0, cap);
    *exact = rc == 0;
    if (rc < 0) {
        free(cur);
        return -1;
    }
    if (rc == 1) {
        f->F = 0;
        /* the empty set, each node's ancestor closure, each index prefix, all */
        word *anc = calloc((size_t)n * f->W + 1, sizeof(word));
        if (!anc || fam_push(f, cur)) {
            free(anc);
            free(cur);
            return -1;
        }
        for (int32_t i = 0; i < n; i++) {
            word *a = anc + (size_t)i * f->W;
            put(a, i);
            for (int32_t k = g->in_first[i]; k < g->in_first[i + 1]; k++)
                if (g->ins[k] >= 0)
                    for (int32_t w = 0; w < f->W; w++)
                        a[w] |= anc[(size_t)g->ins[k] * f->W + w];
            put(cur, i);
            if (fam_push(f, a) || fam_push(f, cur)) {
                free(anc);
                free(cur);
                return -1;
            }
        }
        free(anc);
    }
    free(cur);
    return fam_sort(f);
}

static void fam_free(fam *f) {
    free(f->bits);
    free(f->pop);
    memset(f, 0, sizeof *f);
}

/* ---- the cost model of one block ------------------------------------------------ */

typedef struct block_cost {
    double t;   /* recompute time (0 for the last block) */
    int64_t k;  /* bytes kept for later blocks */
    int64_t w;  /* working bytes */
} block_cost;

typedef struct ctx {
    const dbr_rgraph *g;
    dbr_rg_adj adj;
    int32_t W;
    /* scratch, n entries each, left zeroed (or -1) between blocks */
    bool *rec, *out;
    bool *canrec; /* some chain may recompute the node (or read it in backward) */
    int32_t *vl, *rl, *pos_r, *pos_b;
    int64_t *fr_at, *ev_al, *ev_fr;
    /* per family set: the nodes consumed outside it (their gradients) */
    int32_t *bfirst, *blist;
} ctx;

/* The block a -> b replayed alone (remat.h): the forward of b \ a, then its
 * recomputes and gradient nodes; what earlier blocks hold is bounded by the
 * caller's K. bl: the nodes of a consumed outside a. */
static void block(const ctx *c, const word *a, const word *b, bool last, const int32_t *bl,
                  int32_t nbl, block_cost *out) {
    const dbr_rgraph *g = c->g;
    const dbr_rg_adj *j = &c->adj;
    int32_t m = 0, nr = 0;
    for (int32_t w = 0; w < c->W; w++)
        for (word x = b[w] & ~a[w]; x; x &= x - 1)
            c->vl[m++] = w * 64 + __builtin_ctzll(x);
    double t = 0;
    int64_t k = 0, init = 0;
    for (int32_t q = m - 1; q >= 0; q--) {
        int32_t v = c->vl[q];
        bool outside = false, need = (g->retain[v] & DBR_RG_RETAIN_OUT) != 0;
        for (int32_t e = j->out_first[v]; e < j->out_first[v + 1]; e++) {
            int32_t u = j->outs[e];
            if (!has(b, u))
                outside = true;
            else if (c->rec[u] || dbr_rg_bwd_reads_input(g, u, j->out_pos[e]))
                need = true;
        }
        c->out[v] = outside;
        c->rec[v] = !last && !outside && need;
        if (outside && !last)
            k += g->bytes[v];
        if (c->rec[v])
            t += g->time[v];
    }
    /* backward: recomputes in index order, then gradient nodes last first */
    for (int32_t q = 0; q < m; q++)
        if (c->rec[c->vl[q]]) {
            c->pos_r[c->vl[q]] = nr;
            c->rl[nr++] = c->vl[q];
        }
    for (int32_t q = m - 1; q >= 0; q--)
        c->pos_b[c->vl[q]] = nr + (m - 1 - q);
    int32_t ne = nr + m;
    for (int32_t q = 0; q < m; q++) {
        int32_t v = c->vl[q], lastr = -1, maxc = -1;
        bool kept = last || c->out[v];
        if ((g->retain[v] & DBR_RG_RETAIN_OUT) && (kept || c->rec[v]))
            lastr = c->pos_b[v];
        for (int32_t e = j->out_first[v]; e < j->out_first[v + 1]; e++) {
            int32_t u = j->outs[e];
            if (!has(b, u))
                continue;
            if (u > maxc)
                maxc = u;
            if (dbr_rg_bwd_reads_input(g, u, j->out_pos[e]) && c->pos_b[u] > lastr)
                lastr = c->pos_b[u];
            if (c->rec[u] && c->pos_r[u] > lastr)
                lastr = c->pos_r[u];
        }
        /* the value: a kept copy from the start, a recomputed one from its RECOMP */
        if (c->rec[v]) {
            c->ev_al[c->pos_r[v]] += g->bytes[v];
            c->ev_fr[lastr >= 0 ? lastr : c->pos_r[v]] += g->bytes[v];
        } else if (kept && lastr >= 0) {
            init += g->bytes[v];
            c->ev_fr[lastr] += g->bytes[v];
        }
        /* its gradient: from a later block, its last consumer's BWD, or the seed */
        if (c->out[v])
            init += g->bytes[v];
        else
            c->ev_al[c->pos_b[maxc >= 0 ? maxc : v]] += g->bytes[v];
        c->ev_fr[c->pos_b[v]] += g->bytes[v];
    }
    for (int32_t q = 0; q < nbl; q++) {
        int32_t v = bl[q], maxc = -1;
        bool later = false;
        for (int32_t e = j->out_first[v]; e < j->out_first[v + 1]; e++) {
            int32_t u = j->outs[e];
            if (!has(b, u))
                later = true;
            else if (!has(a, u) && u > maxc)
                maxc = u;
        }
        if (later)
            init += g->bytes[v];
        else if (maxc >= 0)
            c->ev_al[c->pos_b[maxc]] += g->bytes[v];
    }
    /* the values of a in K that die in this block: no reader after it (none
     * in a's backward), and none in later blocks' forward or this backward */
    for (int32_t q = 0; q < nbl; q++) {
        int32_t v = bl[q], lastf = -1, lastr = -1;
        bool persist = (g->retain[v] & DBR_RG_RETAIN_OUT) != 0, later = false;
        for (int32_t e = j->out_first[v]; e < j->out_first[v + 1] && !persist; e++) {
            int32_t u = j->outs[e];
            bool rd = dbr_rg_bwd_reads_input(g, u, j->out_pos[e]);
            if (has(a, u))
                persist = rd || c->canrec[u];
            else if (!has(b, u))
                later = true;
            else {
                lastf = u > lastf ? u : lastf;
                if (rd && c->pos_b[u] > lastr)
                    lastr = c->pos_b[u];
                if (c->rec[u] && c->pos_r[u] > lastr)
                    lastr = c->pos_r[u];
            }
        }
        if (persist)
            continue;
        if (lastr >= 0)
            c->ev_fr[lastr] += g->bytes[v];
        else
            init -= g->bytes[v];
        if (!later && lastr < 0 && lastf >= 0)
            c->fr_at[lastf] += g->bytes[v];
    }
    /* forward: a value dies at its last forward reader unless a later block
     * reads it (outside) or, in the last block, backward does */
    int64_t cur = 0, fpk = INT64_MIN;
    for (int32_t q = 0; q < m; q++) {
        int32_t v = c->vl[q], lastc = -1;
        bool bwd = (g->retain[v] & DBR_RG_RETAIN_OUT) != 0;
        for (int32_t e = j->out_first[v]; e < j->out_first[v + 1]; e++) {
            int32_t u = j->outs[e];
            if (has(b, u) && u > lastc)
                lastc = u;
            bwd = bwd || dbr_rg_bwd_reads_input(g, u, j->out_pos[e]);
        }
        cur += g->bytes[v];
        if (cur > fpk)
            fpk = cur;
        if (!(c->out[v] || (last && bwd))) {
            if (lastc < 0)
                cur -= g->bytes[v];
            else
                c->fr_at[lastc] += g->bytes[v];
        }
        cur -= c->fr_at[v];
        c->fr_at[v] = 0;
    }
    int64_t bpk = INT64_MIN;
    cur = init;
    for (int32_t e = 0; e < ne; e++) {
        cur += c->ev_al[e];
        if (cur > bpk)
            bpk = cur;
        cur -= c->ev_fr[e];
        c->ev_al[e] = c->ev_fr[e] = 0;
    }
    for (int32_t q = 0; q < m; q++)
        c->rec[c->vl[q]] = c->out[c->vl[q]] = false;
    out->t = t;
    out->k = k;
    out->w = fpk > bpk ? fpk : bpk;
}

typedef struct bnode {
    int64_t by;
    int32_t maxc, minrd, maxrec;
    bool rec, out, bwd, rout; /* rout: OUT retained */
} bnode;

/* What block() finds of each node of b that depends on b alone (a is a
 * lower set, so every consumer in b of a node of b \ a is in b \ a too). */
typedef struct bview {
    bool *rec, *out;
    int32_t *maxc;   /* the last consumer in b (-1: none) */
    int32_t *minrd;  /* the first consumer in b whose backward reads it */
    int32_t *maxrec; /* the last consumer in b recomputed */
    bool *bwd;       /* kept for backward when last: OUT retained or read */
    struct bnode *nv; /* the same, packed per node, for block_b */
} bview;

static void bview_fill(const ctx *c, const word *b, bool last, bview *bv) {
    const dbr_rgraph *g = c->g;
    const dbr_rg_adj *j = &c->adj;
    for (int32_t w = c->W - 1; w >= 0; w--)
        for (word x = b[w]; x;) {
            int32_t v = w * 64 + 63 - __builtin_clzll(x);
            x &= ~((word)1 << (v & 63));
            bool outside = false, need = (g->retain[v] & DBR_RG_RETAIN_OUT) != 0;
            int32_t maxc = -1, minrd = -1, maxrec = -1;
            for (int32_t e = j->out_first[v]; e < j->out_first[v + 1]; e++) {
                int32_t u = j->outs[e];
                if (!has(b, u)) {
                    outside = true;
                    continue;
                }
                bool rd = dbr_rg_bwd_reads_input(g, u, j->out_pos[e]);
                if (bv->rec[u] || rd)
                    need = true;
                if (u > maxc)
                    maxc = u;
                if (rd && (minrd < 0 || u < minrd))
                    minrd = u;
                if (bv->rec[u] && u > maxrec)
                    maxrec = u;
            }
            bv->out[v] = outside;
            bv->rec[v] = !last && !outside && need;
            bv->maxc[v] = maxc;
            bv->minrd[v] = minrd;
            bv->maxrec[v] = maxrec;
            bnode *p = &bv->nv[v];
            p->by = g->bytes[v];
            p->maxc = maxc;
            p->minrd = minrd;
            p->maxrec = maxrec;
            p->rec = bv->rec[v];
            p->out = outside;
            p->bwd = bv->bwd[v];
            p->rout = (g->retain[v] & DBR_RG_RETAIN_OUT) != 0;
        }
}

/* block() with b's view filled: the same sums in the same order. bp: for
 * each node of bl, whether it stays in K past this block (persist). */
static void block_b(const ctx *c, const bview *bv, const word *a, const word *b, bool last,
                    const int32_t *bl, const bool *bp, int32_t nbl, block_cost *out) {
    const dbr_rgraph *g = c->g;
    const dbr_rg_adj *j = &c->adj;
    const bnode *nv = bv->nv;
    /* event slots: recomputes at 0 .. nr - 1 in index order, then gradient
     * nodes last first at BIG - q (q: the place in b \ a), the same order */
    const int32_t BIG = 2 * g->n + 1;
    int32_t m = 0, nr = 0;
    int32_t *vl = c->vl, *rl = c->rl, *pos_r = c->pos_r, *pos_b = c->pos_b;
    int64_t *ev_al = c->ev_al, *ev_fr = c->ev_fr, *fr_at = c->fr_at;
    int64_t k = 0, init = 0;
    for (int32_t w = 0; w < c->W; w++)
        for (word x = b[w] & ~a[w]; x; x &= x - 1) {
            int32_t v = w * 64 + __builtin_ctzll(x);
            pos_b[v] = BIG - m;
            vl[m++] = v;
            if (nv[v].rec) {
                pos_r[v] = nr;
                rl[nr++] = v;
            }
            if (nv[v].out)
                k += nv[v].by;
        }
    if (last)
        k = 0;
    double t = 0;
    for (int32_t r = nr - 1; r >= 0; r--)
        t += g->time[rl[r]];
    for (int32_t q = 0; q < nbl; q++) {
        int32_t v = bl[q], maxc = -1, lastr = -1;
        bool later = false;
        for (int32_t e = j->out_first[v]; e < j->out_first[v + 1]; e++) {
            int32_t u = j->outs[e];
            if (has(a, u))
                continue;
            if (!has(b, u))
                later = true;
            else {
                if (u > maxc)
                    maxc = u;
                if (!bp[q]) {
                    if (dbr_rg_bwd_reads_input(g, u, j->out_pos[e]) && pos_b[u] > lastr)
                        lastr = pos_b[u];
                    if (bv->rec[u] && pos_r[u] > lastr)
                        lastr = pos_r[u];
                }
            }
        }
        int64_t by = g->bytes[v];
        if (later)
            init += by;
        else if (maxc >= 0)
            ev_al[pos_b[maxc]] += by;
        if (bp[q])
            continue;
        if (lastr >= 0)
            ev_fr[lastr] += by;
        else
            init -= by;
        if (!later && lastr < 0 && maxc >= 0)
            fr_at[maxc] += by;
    }
    int64_t cur = 0, fpk = INT64_MIN;
    for (int32_t q = 0; q < m; q++) {
        int32_t v = vl[q];
        const bnode *x = &nv[v];
        int32_t lastr = -1, maxc = x->maxc;
        bool kept = last || x->out, rec = x->rec;
        int64_t by = x->by;
        if (x->rout && (kept || rec))
            lastr = pos_b[v];
        if (x->minrd >= 0 && pos_b[x->minrd] > lastr)
            lastr = pos_b[x->minrd];
        if (x->maxrec >= 0 && pos_r[x->maxrec] > lastr)
            lastr = pos_r[x->maxrec];
        if (rec) {
            ev_al[pos_r[v]] += by;
            ev_fr[lastr >= 0 ? lastr : pos_r[v]] += by;
        } else if (kept && lastr >= 0) {
            init += by;
            ev_fr[lastr] += by;
        }
        if (x->out)
            init += by;
        else
            ev_al[pos_b[maxc >= 0 ? maxc : v]] += by;
        ev_fr[pos_b[v]] += by;
        /* forward */
        cur += by;
        if (cur > fpk)
            fpk = cur;
        if (!(x->out || (last && x->bwd))) {
            if (maxc < 0)
                cur -= by;
            else
                fr_at[maxc] += by;
        }
        cur -= fr_at[v];
        fr_at[v] = 0;
    }
    int64_t bpk = INT64_MIN;
    cur = init;
    for (int32_t e = 0; e < nr; e++) {
        cur += ev_al[e];
        if (cur > bpk)
            bpk = cur;
        cur -= ev_fr[e];
        ev_al[e] = ev_fr[e] = 0;
    }
    for (int32_t e = BIG - m + 1; e <= BIG; e++) {
        cur += ev_al[e];
        if (cur > bpk)
            bpk = cur;
        cur -= ev_fr[e];
        ev_al[e] = ev_fr[e] = 0;
    }
    out->t = t;
    out->k = k;
    out->w = fpk > bpk ? fpk : bpk;
}

/* The nodes of a consumed outside a, into bl (n entries); returns the count. */
static int32_t boundary(const ctx *c, const word *a, int32_t *bl) {
    int32_t nb = 0;
    for (int32_t v = 0; v < c->g->n; v++) {
        if (!has(a, v))
            continue;
        for (int32_t e = c->adj.out_first[v]; e < c->adj.out_first[v + 1]; e++)
            if (!has(a, c->adj.outs[e])) {
                bl[nb++] = v;
                break;
            }
    }
    return nb;
}

static int ctx_init(ctx *c, const dbr_rgraph *g) {
    memset(c, 0, sizeof *c);
    c->g = g;
    c->W = (g->n + 63) / 64 + (g->n == 0);
    size_t n1 = (size_t)g->n + 1, n2 = 2 * n1;
    c->rec = calloc(n1, 1);
    c->out = calloc(n1, 1);
    c->canrec = calloc(n1, 1);
    c->vl = malloc(n1 * sizeof(int32_t));
    c->rl = malloc(n1 * sizeof(int32_t));
    c->pos_r = malloc(n1 * sizeof(int32_t));
    c->pos_b = malloc(n1 * sizeof(int32_t));
    c->fr_at = calloc(n1, sizeof(int64_t));
    c->ev_al = calloc(n2, sizeof(int64_t));
    c->ev_fr = calloc(n2, sizeof(int64_t));
    if (!c->rec || !c->out || !c->canrec || !c->vl || !c->rl || !c->pos_r || !c->pos_b || !c->fr_at || !c->ev_al ||
        !c->ev_fr || dbr_rg_adj_build(g, &c->adj)) {
        free(c->rec), free(c->out), free(c->canrec), free(c->vl), free(c->rl), free(c->pos_r);
        free(c->pos_b), free(c->fr_at), free(c->ev_al), free(c->ev_fr);
        return -1;
    }
    for (int32_t v = g->n - 1; v >= 0; v--) {
        bool r = (g->retain[v] & DBR_RG_RETAIN_OUT) != 0;
        for (int32_t e = c->adj.out_first[v]; e < c->adj.out_first[v + 1]; e++)
            r = r || c->canrec[c->adj.outs[e]] ||
                dbr_rg_bwd_reads_input(g, c->adj.outs[e], c->adj.out_pos[e]);
        c->canrec[v] = r;
    }
    return 0;
}

static void ctx_free(ctx *c) {
    free(c->canrec);
    free(c->rec), free(c->out), free(c->vl), free(c->rl), free(c->pos_r), free(c->pos_b);
    free(c->fr_at), free(c->ev_al), free(c->ev_fr);
    free(c->bfirst);
    free(c->blist);
    dbr_rg_adj_free(&c->adj);
}

int dbr_remat_dp_cost(const dbr_rgraph *g, const int32_t *seg_of, int32_t n_seg, double *overhead,
                      int64_t *model_peak, char *err, size_t errlen) {
    if (dbr_rg_validate(g, err, errlen))
        return -1;
    for (int32_t i = 0; i < g->n; i++) {
        if (seg_of[i] < 0 || seg_of[i] >= n_seg)
            return dbr_errf(err, errlen, "remat dp: segment out of range");
        for (int32_t k = g->in_first[i]; k < g->in_first[i + 1]; k++)
            if (g->ins[k] >= 0 && seg_of[g->ins[k]] > seg_of[i])
                return dbr_errf(err, errlen, "remat dp: segments are not lower sets");
    }
    ctx c;
    int32_t W = (g->n + 63) / 64 + 1;
    word *a = calloc((size_t)W, sizeof(word)), *b = calloc((size_t)W, sizeof(word));
    int32_t *bl = malloc(((size_t)g->n + 1) * sizeof(int32_t));
    if (!a || !b || !bl || ctx_init(&c, g)) {
        free(a);
        free(b);
        free(bl);
        return dbr_errf(err, errlen, "remat: out of memory");
    }
    double t = 0;
    int64_t K = 0, P = 0;
    int32_t last_nonempty = -1;
    for (int32_t s = 0; s < n_seg; s++)
        for (int32_t i = 0; i < g->n; i++)
            if (seg_of[i] == s)
                last_nonempty = s;
    for (int32_t s = 0; s <= last_nonempty; s++) {
        bool any = false;
        for (int32_t i = 0; i < g->n; i++)
            if (seg_of[i] == s) {
                put(b, i);
                any = true;
            }
        if (!any)
            continue;
        block_cost bc;
        block(&c, a, b, s == last_nonempty, bl, boundary(&c, a, bl), &bc);
        if (K + bc.w > P)
            P = K + bc.w;
        K += bc.k;
        t += bc.t;
        memcpy(a, b, (size_t)W * sizeof(word));
    }
    ctx_free(&c);
    free(a);
    free(b);
    free(bl);
    *overhead = t;
    *model_peak = P;
    return 0;
}

/* ---- the DP ------------------------------------------------------------------ */

typedef struct entry {
    double t;
    int64_t k, p;
    int32_t prev_set, prev_ent;
} entry;

typedef struct front {
    int32_t *e; /* indices into the entry pool */
    int32_t len, cap;
    entry *x; /* memory-centric: a copy of e's entries, in the same order */
    int32_t xcap;
} front;

typedef struct pool {
    entry *e;
    int32_t len, cap;
} pool;

static bool dominates(const entry *x, const entry *y, bool mem) {
    if (mem) /* least peak exactly; overhead only breaks ties */
        return x->k <= y->k && x->p <= y->p && (x->k < y->k || x->p < y->p || x->t <= y->t);
    return x->t <= y->t && x->k <= y->k;
}

static int grow(void **p, int32_t *cap, int32_t len, size_t sz, int32_t first) {
    if (len < *cap)
        return 0;
    int32_t nc = *cap ? *cap * 2 : first;
    void *np = realloc(*p, (size_t)nc * sz);
    if (!np)
        return -1;
    *p = np;
    *cap = nc;
    return 0;
}

static int pool_add(pool *pl, const entry *cand) {
    if (grow((void **)&pl->e, &pl->cap, pl->len, sizeof *pl->e, 256))
        return -1;
    pl->e[pl->len] = *cand;
    return pl->len++;
}

static int front_insert(front *f, pool *pl, const entry *cand, bool mem) {
    if (!mem) {
        /* time-centric: a staircase, t increasing and k decreasing */
        int32_t lo = 0, hi = f->len; /* first entry with t > cand's */
        while (lo < hi) {
            int32_t mid = (lo + hi) / 2;
            if (pl->e[f->e[mid]].t <= cand->t)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo > 0 && pl->e[f->e[lo - 1]].k <= cand->k)
            return 0;
        int32_t at = lo; /* back to the first entry with t >= cand's */
        while (at > 0 && pl->e[f->e[at - 1]].t == cand->t)
            at--;
        int32_t end = at;
        while (end < f->len && pl->e[f->e[end]].k >= cand->k)
            end++;
        int id = pool_add(pl, cand);
        if (id < 0)
            return -1;
        if (end > at) { /* replace the dominated run by cand */
            f->e[at] = id;
            memmove(f->e + at + 1, f->e + end, (size_t)(f->len - end) * sizeof *f->e);
            f->len -= end - at - 1;
            return 0;
        }
        if (grow((void **)&f->e, &f->cap, f->len, sizeof *f->e, 4))
            return -1;
        memmove(f->e + at + 1, f->e + at, (size_t)(f->len - at) * sizeof *f->e);
        f->e[at] = id;
        f->len++;
        return 0;
    }
    /* dominance is transitive and no entry dominates another: when one
     * dominates cand, cand dominates none before it, so nothing has moved */
    int32_t m = 0;
    for (int32_t i = 0; i < f->len; i++) {
        const entry *x = &f->x[i];
        if (dominates(x, cand, mem))
            return 0;
        if (!dominates(cand, x, mem)) {
            f->x[m] = *x;
            f->e[m++] = f->e[i];
        }
    }
    f->len = m;
    int id = pool_add(pl, cand);
    if (id < 0 || grow((void **)&f->e, &f->cap, f->len, sizeof *f->e, 4) ||
        grow((void **)&f->x, &f->xcap, f->len, sizeof *f->x, 4))
        return -1;
    f->x[f->len] = *cand;
    f->e[f->len++] = id;
    return 0;
}

static bool subset(const word *a, const word *b, int32_t W) {
    for (int32_t w = 0; w < W; w++)
        if (a[w] & ~b[w])
            return false;
    return true;
}

void dbr_remat_dp_result_free(dbr_remat_dp_result *r) {
    if (r) {
        free(r->seg_of);
        memset(r, 0, sizeof *r);
    }
}

/* The family and the cost of every inclusion pair, shared by every budget. */
struct dbr_remat_dp_ctx {
    const dbr_rgraph *g;
    fam f;
    ctx c;
    bool exact;
    int32_t ne, cap;
    int32_t *ea, *eb, *efirst; /* edges grouped by ea; efirst: F + 1 */
    block_cost *ec;
    int64_t *need; /* per set: the least headroom over K a chain from it needs */
    front *bfr; /* back_fronts */
    pool bpl;
    int64_t bcap;
};

void dbr_remat_dp_ctx_free(dbr_remat_dp_ctx *d) {
    if (!d)
        return;
    if (d->bfr)
        for (int32_t s = 0; s < d->f.F; s++)
            free(d->bfr[s].e);
    free(d->bfr);
    free(d->bpl.e);
    fam_free(&d->f);
    ctx_free(&d->c);
    free(d->ea);
    free(d->eb);
    free(d->efirst);
    free(d->ec);
    free(d->need);
    free(d);
}

/* Every pair's block cost, b by b: what depends on b alone once per b. */
static int pair_costs(dbr_remat_dp_ctx *d) {
    const dbr_rgraph *g = d->g;
    fam *f = &d->f;
    ctx *c = &d->c;
    const dbr_rg_adj *j = &c->adj;
    int32_t n = g->n, full = f->F - 1;
    size_t n1 = (size_t)n + 1;
    bview bv = {0};
    int32_t *bfirst = calloc((size_t)f->F + 2, sizeof(int32_t));
    int32_t *byb = malloc(((size_t)d->ne + 1) * sizeof(int32_t));
    bool *bp = malloc(((size_t)c->bfirst[f->F] + 1) * sizeof(bool));
    bv.rec = calloc(n1, 1);
    bv.out = calloc(n1, 1);
    bv.bwd = calloc(n1, 1);
    bv.maxc = malloc(n1 * sizeof(int32_t));
    bv.minrd = malloc(n1 * sizeof(int32_t));
    bv.maxrec = malloc(n1 * sizeof(int32_t));
    bv.nv = malloc(n1 * sizeof *bv.nv);
    int rc = -1;
    if (!bfirst || !byb || !bp || !bv.rec || !bv.out || !bv.bwd || !bv.maxc || !bv.minrd ||
        !bv.maxrec || !bv.nv)
        goto out;
    for (int32_t v = 0; v < n; v++) {
        bool r = (g->retain[v] & DBR_RG_RETAIN_OUT) != 0;
        for (int32_t e = j->out_first[v]; e < j->out_first[v + 1]; e++)
            r = r || dbr_rg_bwd_reads_input(g, j->outs[e], j->out_pos[e]);
        bv.bwd[v] = r;
    }
    /* per a, each boundary node: persists (OUT retained, or read by a's own
     * backward or recomputes) */
    for (int32_t a = 0; a < f->F; a++) {
        const word *as = set_at(f, a);
        for (int32_t q = c->bfirst[a]; q < c->bfirst[a + 1]; q++) {
            int32_t v = c->blist[q];
            bool persist = (g->retain[v] & DBR_RG_RETAIN_OUT) != 0;
            for (int32_t e = j->out_first[v]; e < j->out_first[v + 1] && !persist; e++) {
                int32_t u = j->outs[e];
                if (has(as, u))
                    persist = dbr_rg_bwd_reads_input(g, u, j->out_pos[e]) || c->canrec[u];
            }
            bp[q] = persist;
        }
    }
    for (int32_t e = 0; e < d->ne; e++)
        bfirst[d->eb[e] + 1]++;
    for (int32_t b = 0; b < f->F; b++)
        bfirst[b + 1] += bfirst[b];
    for (int32_t e = 0; e < d->ne; e++)
        byb[bfirst[d->eb[e]]++] = e;
    for (int32_t b = f->F; b > 0; b--)
        bfirst[b] = bfirst[b - 1];
    bfirst[0] = 0;
    for (int32_t b = 0; b < f->F; b++) {
        if (bfirst[b] == bfirst[b + 1])
            continue;
        const word *bs = set_at(f, b);
        bool last = b == full;
        bview_fill(c, bs, last, &bv);
        for (int32_t i = bfirst[b]; i < bfirst[b + 1]; i++) {
            int32_t e = byb[i], a = d->ea[e];
            block_b(c, &bv, set_at(f, a), bs, last, c->blist + c->bfirst[a], bp + c->bfirst[a],
                    c->bfirst[a + 1] - c->bfirst[a], &d->ec[e]);
        }
    }
    rc = 0;
out:
    free(bfirst);
    free(byb);
    free(bp);
    free(bv.rec), free(bv.out), free(bv.bwd), free(bv.maxc), free(bv.minrd), free(bv.maxrec);
    free(bv.nv);
    return rc;
}

dbr_remat_dp_ctx *dbr_remat_dp_prepare(const dbr_rgraph *g, const dbr_remat_dp_opts *o, char *err,
                                       size_t errlen) {
    if (dbr_rg_validate(g, err, errlen))
        return NULL;
    dbr_remat_dp_ctx *d = calloc(1, sizeof *d);
    if (!d) {
        dbr_errf(err, errlen, "remat: out of memory");
        return NULL;
    }
    d->g = g;
    int32_t cap = o->max_lower_sets > 0 ? o->max_lower_sets : 1024;
    if (fam_build(g, cap, o->force_approx, &d->f, &d->exact) || ctx_init(&d->c, g))
        goto oom;
    fam *f = &d->f;
    d->c.bfirst = malloc(((size_t)f->F + 1) * sizeof(int32_t));
    d->efirst = calloc((size_t)f->F + 2, sizeof(int32_t));
    if (!d->c.bfirst || !d->efirst)
        goto oom;
    d->c.bfirst[0] = 0;
    for (int32_t s = 0; s < f->F; s++) {
        int32_t *nl = realloc(d->c.blist, ((size_t)d->c.bfirst[s] + g->n + 1) * sizeof(int32_t));
        if (!nl)
            goto oom;
        d->c.blist = nl;
        d->c.bfirst[s + 1] = d->c.bfirst[s] + boundary(&d->c, set_at(f, s), nl + d->c.bfirst[s]);
    }
    int32_t full = f->F - 1;
    for (int32_t a = 0; a < f->F; a++) {
        d->efirst[a] = d->ne;
        for (int32_t b = a + 1; b < f->F && a < full; b++) {
            if (f->pop[b] == f->pop[a] || !subset(set_at(f, a), set_at(f, b), f->W))
                continue;
            if (d->ne == d->cap) {
                int32_t nc = d->cap ? d->cap * 2 : 64;
                int32_t *na = realloc(d->ea, (size_t)nc * sizeof *na);
                if (na)
                    d->ea = na;
                int32_t *nb = realloc(d->eb, (size_t)nc * sizeof *nb);
                if (nb)
                    d->eb = nb;
                block_cost *ncs = realloc(d->ec, (size_t)nc * sizeof *ncs);
                if (ncs)
                    d->ec = ncs;
                if (!na || !nb || !ncs)
                    goto oom;
                d->cap = nc;
            }
            d->ea[d->ne] = a;
            d->eb[d->ne] = b;
            d->ne++;
        }
    }
    d->efirst[f->F] = d->ne;
    if (pair_costs(d))
        goto oom;
    /* need(a) = min over blocks a -> b of max(w, k + need(b)): an entry at a
     * with K can reach the full set within a budget B iff K + need(a) <= B */
    d->need = malloc(((size_t)f->F + 1) * sizeof(int64_t));
    if (!d->need)
        goto oom;
    for (int32_t a = full; a >= 0; a--) {
        int64_t h = a == full ? 0 : INT64_MAX;
        for (int32_t e = d->efirst[a]; e < d->efirst[a + 1]; e++) {
            int64_t nb = d->need[d->eb[e]];
            if (nb == INT64_MAX)
                continue;
            int64_t x = d->ec[e].k + nb > d->ec[e].w ? d->ec[e].k + nb : d->ec[e].w;
            h = x < h ? x : h;
        }
        d->need[a] = h;
    }
    return d;
oom:
    dbr_errf(err, errlen, "remat: out of memory");
    dbr_remat_dp_ctx_free(d);
    return NULL;
}

/* The chains from each set to the full one as a front of (time to go, T;
 * headroom over K they need, H) with H <= cap, each front a staircase (t:
 * T, k: H). Computed once for the largest budget asked so far. Each set's
 * front is built in a contiguous scratch staircase (the same inserts as
 * front_insert) and then laid out contiguously in the pool. */
typedef struct tk {
    double t;
    int64_t k;
} tk;

static int back_fronts(dbr_remat_dp_ctx *d, int64_t cap) {
    int32_t full = d->f.F - 1;
    if (!d->bfr) {
        d->bfr = calloc((size_t)d->f.F + 1, sizeof *d->bfr);
        if (!d->bfr)
            return -1;
    }
    for (int32_t s = 0; s < d->f.F; s++)
        d->bfr[s].len = 0;
    d->bpl.len = 0;
    d->bcap = 0;
    /* the least K any chain reaches each set with: more headroom is no use */
    int64_t *kmin = malloc(((size_t)d->f.F + 1) * sizeof *kmin);
    int32_t scap = 64, sl;
    tk *st = malloc((size_t)scap * sizeof *st);
    if (!kmin || !st) {
        free(kmin);
        free(st);
        return -1;
    }
    for (int32_t s = 0; s < d->f.F; s++)
        kmin[s] = s ? INT64_MAX : 0;
    for (int32_t a = 0; a < full; a++)
        for (int32_t e = d->efirst[a]; e < d->efirst[a + 1] && kmin[a] != INT64_MAX; e++)
            if (kmin[a] + d->ec[e].k < kmin[d->eb[e]])
                kmin[d->eb[e]] = kmin[a] + d->ec[e].k;
    entry e0 = {0, 0, 0, -1, -1};
    int rc = front_insert(&d->bfr[full], &d->bpl, &e0, false);
    for (int32_t a = full - 1; a >= 0 && !rc; a--) {
        if (kmin[a] == INT64_MAX)
            continue;
        sl = 0;
        for (int32_t e = d->efirst[a]; e < d->efirst[a + 1] && !rc; e++) {
            const block_cost *bc = &d->ec[e];
            const front *fb = &d->bfr[d->eb[e]];
            if (kmin[a] + bc->w > cap || !fb->len)
                continue;
            const entry *xs = &d->bpl.e[fb->e[0]]; /* contiguous */
            {
                /* every candidate has t >= t0 and k >= k0: when an entry
                 * dominates (t0, k0), each of them is dropped */
                double t0 = xs[0].t + bc->t;
                int64_t k0 = bc->k + xs[fb->len - 1].k > bc->w ? bc->k + xs[fb->len - 1].k : bc->w;
                int32_t lo = 0, hi = sl;
                while (lo < hi) {
                    int32_t mid = (lo + hi) / 2;
                    if (st[mid].t <= t0)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                if (lo > 0 && st[lo - 1].k <= k0)
                    continue;
            }
            int32_t from = 0; /* the candidates' t increase: no earlier place */
            /* H falls along fb: those before i0 pass cap (and none is clamped) */
            int32_t i0 = 0;
            {
                int32_t lo = 0, hi = fb->len;
                while (lo < hi) {
                    int32_t mid = (lo + hi) / 2;
                    if (kmin[a] + bc->k + xs[mid].k > cap)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                i0 = lo;
            }
            for (int32_t i = i0; i < fb->len; i++) {
                const entry *x = &xs[i];
                double yt = x->t + bc->t;
                int64_t yk = bc->k + x->k > bc->w ? bc->k + x->k : bc->w;
                bool clamped = bc->k + x->k <= bc->w; /* x moves when the pool grows */
                if (kmin[a] + yk <= cap) {
                    int32_t lo = from, hi = from, step = 1; /* first entry with t > yt */
                    while (hi < sl && st[hi].t <= yt) {
                        lo = hi + 1;
                        hi += step;
                        step *= 2;
                    }
                    if (hi > sl)
                        hi = sl;
                    while (lo < hi) {
                        int32_t mid = (lo + hi) / 2;
                        if (st[mid].t <= yt)
                            lo = mid + 1;
                        else
                            hi = mid;
                    }
                    if (!(lo > 0 && st[lo - 1].k <= yk)) {
                        int32_t at = lo;
                        while (at > 0 && st[at - 1].t == yt)
                            at--;
                        int32_t end = at;
                        while (end < sl && st[end].k >= yk)
                            end++;
                        if (end > at) {
                            memmove(st + at + 1, st + end, (size_t)(sl - end) * sizeof *st);
                            sl -= end - at - 1;
                        } else {
                            if (sl == scap) {
                                tk *ns = realloc(st, (size_t)scap * 2 * sizeof *st);
                                if (!ns) {
                                    rc = -1;
                                    break;
                                }
                                st = ns;
                                scap *= 2;
                            }
                            memmove(st + at + 1, st + at, (size_t)(sl - at) * sizeof *st);
                            sl++;
                        }
                        st[at].t = yt;
                        st[at].k = yk;
                        from = at;
                    } else
                        from = lo > 0 ? lo - 1 : 0;
                }
                /* H falls along fb: the rest all need bc->w, later: dominated */
                if (clamped)
                    break;
            }
        }
        front *fa = &d->bfr[a];
        if (!rc && sl > fa->cap) {
            int32_t *ne = realloc(fa->e, (size_t)sl * sizeof *ne);
            if (!ne)
                rc = -1;
            else {
                fa->e = ne;
                fa->cap = sl;
            }
        }
        for (int32_t i = 0; i < sl && !rc; i++) {
            entry y = {st[i].t, st[i].k, 0, -1, -1};
            int id = pool_add(&d->bpl, &y);
            if (id < 0)
                rc = -1;
            else
                fa->e[fa->len++] = id;
        }
    }
    free(kmin);
    free(st);
    if (!rc)
        d->bcap = cap;
    return rc;
}

/* The least time to go from set a with K within the budget (INFINITY: none). */
static double time_to_go(const dbr_remat_dp_ctx *d, int32_t a, int64_t k, int64_t budget) {
    const front *f = &d->bfr[a];
    if (!f->len)
        return INFINITY;
    const entry *xs = &d->bpl.e[f->e[0]]; /* contiguous */
    int32_t lo = 0, hi = f->len; /* H decreases along the front: the first with K + H <= budget */
    while (lo < hi) {
        int32_t mid = (lo + hi) / 2;
        if (k + xs[mid].k > budget)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < f->len ? xs[lo].t : INFINITY;
}

/* Fills the fronts from the empty set on. With prune, a time-centric entry
 * whose time plus its least time to go passes lim is dropped: whatever
 * dominates it passes too, so the entries kept are those of the full run
 * that pass. */
static int dp_run(const dbr_remat_dp_ctx *d, const dbr_remat_dp_opts *o, bool prune, double lim,
                  front *fr, pool *pl) {
    const fam *f = &d->f;
    entry e0 = {0, 0, 0, -1, -1};
    if (front_insert(&fr[0], pl, &e0, o->memory_centric))
        return -1;
    bool tc = !o->memory_centric && o->budget > 0;
    int32_t full = f->F - 1; /* the largest set is all nodes */
    for (int32_t a = 0; a < full; a++) {
        if (!fr[a].len)
            continue;
        for (int32_t e = d->efirst[a]; e < d->efirst[a + 1]; e++) {
            const block_cost *bc = &d->ec[e];
            int32_t b = d->eb[e];
            int32_t i0 = 0;
            if (tc) { /* k decreases along the front, t increases */
                if (d->need[b] == INT64_MAX)
                    continue;
                /* the block fits, and the chain can go on from b */
                int64_t room = bc->k + d->need[b] > bc->w ? bc->k + d->need[b] : bc->w;
                int32_t lo = 0, hi = fr[a].len;
                while (lo < hi) {
                    int32_t mid = (lo + hi) / 2;
                    if (pl->e[fr[a].e[mid]].k + room > o->budget)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                i0 = lo;
            }
            for (int32_t i = i0; i < fr[a].len; i++) {
                entry x = pl->e[fr[a].e[i]];
                entry y = {x.t + bc->t, x.k + bc->k, x.k + bc->w > x.p ? x.k + bc->w : x.p, a, fr[a].e[i]};
                if (tc && y.p > o->budget)
                    continue;
                if (prune && y.t + time_to_go(d, b, y.k, o->budget) > lim)
                    continue;
                if (front_insert(&fr[b], pl, &y, o->memory_centric))
                    return -1;
            }
        }
    }
    return 0;
}

int dbr_remat_dp_solve(dbr_remat_dp_ctx *d, const dbr_remat_dp_opts *o, dbr_remat_dp_result *r,
                       char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    const dbr_rgraph *g = d->g;
    int32_t n = g->n;
    fam *f = &d->f;
    int rc = -1;
    int32_t full = f->F - 1;
    front *fr = calloc((size_t)f->F + 1, sizeof *fr);
    pool pl = {0};
    if (!fr)
        goto oom;
    /* time-centric under a budget: the least time T is known from the
     * chains back from the full set; only entries that may still end within
     * it are kept, which keeps every optimal chain and the ties among them */
    bool prune = !o->memory_centric && o->budget > 0;
    double lim = INFINITY;
    if (prune) {
        /* room for the somewhat larger budgets plan_dp tries next */
        int64_t cap = o->budget < INT64_MAX / 2 ? o->budget + o->budget / 4 : o->budget;
        if (o->budget > d->bcap && back_fronts(d, cap))
            goto oom;
        lim = time_to_go(d, 0, 0, o->budget);
        lim = lim * (1 + 1e-9) + 1e-12; /* the sums differ in order */
    }
    if (dp_run(d, o, prune, lim, fr, &pl))
        goto oom;
    int32_t best = -1;
    for (int32_t i = 0; i < fr[full].len; i++) {
        const entry *x = &pl.e[fr[full].e[i]];
        if (r->min_model_peak == 0 || x->p < r->min_model_peak)
            r->min_model_peak = x->p;
        if (o->memory_centric && o->budget > 0 && x->p > o->budget)
            continue;
        if (best < 0)
            best = fr[full].e[i];
        const entry *y = &pl.e[best];
        if (o->memory_centric ? (x->p < y->p || (x->p == y->p && x->t < y->t))
                              : (x->t < y->t || (x->t == y->t && x->p < y->p)))
            best = fr[full].e[i];
    }
    r->exact = d->exact;
    r->n_sets = f->F;
    if (best >= 0) {
        r->found = true;
        r->overhead = pl.e[best].t;
        r->model_peak = pl.e[best].p;
        r->seg_of = malloc(((size_t)n + 1) * sizeof(int32_t));
        if (!r->seg_of)
            goto oom;
        int32_t len = 0;
        for (int32_t x = best; x >= 0 && pl.e[x].prev_set >= 0; x = pl.e[x].prev_ent)
            len++;
        r->n_seg = len;
        int32_t seg = len - 1;
        for (int32_t x = best, s = full; x >= 0 && pl.e[x].prev_set >= 0;
             s = pl.e[x].prev_set, x = pl.e[x].prev_ent, seg--) {
            const word *sb = set_at(f, s), *sa = set_at(f, pl.e[x].prev_set);
            for (int32_t v = 0; v < n; v++)
                if (has(sb, v) && !has(sa, v))
                    r->seg_of[v] = seg;
        }
    }
    rc = 0;
    goto out;
oom:
    dbr_errf(err, errlen, "remat: out of memory");
out:
    if (fr)
        for (int32_t s = 0; s < f->F; s++)
            free(fr[s].e), free(fr[s].x);
    free(fr);
    free(pl.e);
    if (rc)
        dbr_remat_dp_result_free(r);
    return rc;
}

int dbr_remat_dp(const dbr_rgraph *g, const dbr_remat_dp_opts *o, dbr_remat_dp_result *r,
                 char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    if (dbr_rg_validate(g, err, errlen))
        return -1;
    if (g->n == 0) {
        r->found = r->exact = true;
        r->seg_of = malloc(sizeof(int32_t));
        return r->seg_of ? 0 : dbr_errf(err, errlen, "remat: out of memory");
    }
    dbr_remat_dp_ctx *d = dbr_remat_dp_prepare(g, o, err, errlen);
    if (!d)
        return -1;
    int rc = dbr_remat_dp_solve(d, o, r, err, errlen);
    dbr_remat_dp_ctx_free(d);
    return rc;
}

/* ---- the DP's problem as a path MILP (the oracle for the DP) ------------------ */

#ifdef DBR_HAVE_GLPK
static int glp_quiet(void *info, const char *s) {
    (void)info;
    (void)s;
    return 1;
}
#endif

int dbr_remat_ilp_chain(const dbr_rgraph *g, const dbr_remat_dp_opts *o, dbr_remat_dp_result *r,
                        char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
#ifndef DBR_HAVE_GLPK
    (void)g;
    (void)o;
    return dbr_errf(err, errlen, "remat ilp: built without GLPK");
#else
    if (dbr_rg_validate(g, err, errlen))
        return -1;
    if (o->memory_centric)
        return dbr_errf(err, errlen, "remat ilp: the chain MILP is time-centric");
    int32_t n = g->n;
    if (n == 0)
        return dbr_errf(err, errlen, "remat ilp: empty graph");
    dbr_remat_dp_ctx *d = dbr_remat_dp_prepare(g, o, err, errlen);
    if (!d)
        return -1;
    int rc = -1;
    fam f = d->f;
    bool exact = d->exact;
    int32_t full = f.F - 1, ne = d->ne;
    const int32_t *ea = d->ea, *eb = d->eb;
    const block_cost *ec = d->ec;
    int *ia = NULL, *ja = NULL;
    double *ar = NULL;
    glp_prob *lp = NULL;
    /* scale bytes so that big-M rows stay well conditioned */
    int64_t tot = 1;
    for (int32_t i = 0; i < n; i++)
        tot += g->bytes[i];
    double sc = 1.0 / (double)tot, M = 0;
    for (int32_t e = 0; e < ne; e++)
        if (ec[e].w * sc > M)
            M = ec[e].w * sc;
    M += 4.0;
    double B = o->budget > 0 ? o->budget * sc : 1e30;
    lp = glp_create_prob();
    glp_set_obj_dir(lp, GLP_MIN);
    /* columns: y_e (1..ne), k_s (ne+1..ne+F) */
    glp_add_cols(lp, ne + f.F);
    for (int32_t e = 0; e < ne; e++) {
        glp_set_col_kind(lp, e + 1, GLP_BV);
        glp_set_obj_coef(lp, e + 1, ec[e].t);
    }
    for (int32_t s = 0; s < f.F; s++)
        glp_set_col_bnds(lp, ne + 1 + s, s == 0 ? GLP_FX : GLP_LO, 0, 0);
    /* rows: flow per set (F), accumulate per edge (ne), memory per edge (ne) */
    size_t nz = (size_t)2 * ne + (size_t)3 * ne * 2 + 8;
    ia = malloc((nz + 1) * sizeof *ia);
    ja = malloc((nz + 1) * sizeof *ja);
    ar = malloc((nz + 1) * sizeof *ar);
    if (!ia || !ja || !ar)
        goto oom;
    size_t k = 0;
    glp_add_rows(lp, f.F + 2 * ne);
    for (int32_t s = 0; s < f.F; s++) {
        double rhs = s == 0 ? -1 : s == full ? 1 : 0; /* in - out */
        glp_set_row_bnds(lp, s + 1, GLP_FX, rhs, rhs);
    }
    for (int32_t e = 0; e < ne; e++) {
        ++k, ia[k] = eb[e] + 1, ja[k] = e + 1, ar[k] = 1;
        ++k, ia[k] = ea[e] + 1, ja[k] = e + 1, ar[k] = -1;
        /* k_b - k_a - M y >= kadd - M */
        int row = f.F + 1 + e;
        glp_set_row_bnds(lp, row, GLP_LO, ec[e].k * sc - M, 0);
        ++k, ia[k] = row, ja[k] = ne + 1 + eb[e], ar[k] = 1;
        ++k, ia[k] = row, ja[k] = ne + 1 + ea[e], ar[k] = -1;
        ++k, ia[k] = row, ja[k] = e + 1, ar[k] = -M;
        /* k_a + M y <= B - w + M */
        row = f.F + 1 + ne + e;
        glp_set_row_bnds(lp, row, GLP_UP, 0, B - ec[e].w * sc + M);
        ++k, ia[k] = row, ja[k] = ne + 1 + ea[e], ar[k] = 1;
        ++k, ia[k] = row, ja[k] = e + 1, ar[k] = M;
    }
    glp_load_matrix(lp, (int)k, ia, ja, ar);
    glp_term_hook(glp_quiet, NULL);
    glp_iocp parm;
    glp_init_iocp(&parm);
    parm.presolve = GLP_ON;
    parm.msg_lev = GLP_MSG_OFF;
    parm.tm_lim = 10000;
    int st = glp_intopt(lp, &parm);
    glp_term_hook(NULL, NULL);
    r->exact = exact;
    r->n_sets = f.F;
    int ms = glp_mip_status(lp);
    if (st == 0 && (ms == GLP_OPT || ms == GLP_FEAS)) {
        r->seg_of = malloc(((size_t)n + 1) * sizeof(int32_t));
        if (!r->seg_of)
            goto oom;
        int32_t at = 0, seg = 0;
        while (at != full) {
            int32_t e = 0;
            while (e < ne && !(ea[e] == at && glp_mip_col_val(lp, e + 1) > 0.5))
                e++;
            if (e == ne) {
                dbr_errf(err, errlen, "remat ilp: the solution is not a path");
                goto out;
            }
            for (int32_t v = 0; v < n; v++)
                if (has(set_at(&f, eb[e]), v) && !has(set_at(&f, at), v))
                    r->seg_of[v] = seg;
            seg++;
            at = eb[e];
        }
        r->n_seg = seg;
        r->found = true;
        if (dbr_remat_dp_cost(g, r->seg_of, r->n_seg, &r->overhead, &r->model_peak, err, errlen))
            goto out;
    } else if (st != 0 && st != GLP_ENOPFS && st != GLP_ENODFS) {
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
    free(ia);
    free(ja);
    free(ar);
    dbr_remat_dp_ctx_free(d);
    if (rc)
        dbr_remat_dp_result_free(r);
    return rc;
#endif
}
