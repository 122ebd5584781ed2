/* remat_sim.c: the recomputation planner's memory model: plan bookkeeping,
 * the event sequence of a segment plan, the exact simulator (peak bytes and
 * extra forward time of a sequence) and an independent validity checker. */
#include "passes/remat.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


const char *dbr_remat_strategy_name(dbr_remat_strategy s) {
    static const char *names[] = {"none", "chen", "dp", "ilp", "auto"};
    return (unsigned)s < DBR_REMAT_N_STRATEGIES ? names[s] : "?";
}

static const char *nid(const dbr_rgraph *g, int32_t i, char *buf, size_t len) {
    if (g->id && g->id[i])
        return g->id[i];
    snprintf(buf, len, "#%d", (int)i);
    return buf;
}

int dbr_rg_validate(const dbr_rgraph *g, char *err, size_t errlen) {
    if (!g || g->n < 0 || g->n_leaves < 0)
        return dbr_errf(err, errlen, "remat: no graph");
    if (g->n == 0)
        return 0;
    if (!g->bytes || !g->time || !g->in_first || !g->retain || (g->n_leaves && !g->leaf_bytes))
        return dbr_errf(err, errlen, "remat: graph arrays missing");
    if (g->in_first[0] != 0)
        return dbr_errf(err, errlen, "remat: in_first[0] must be 0");
    char b[32];
    for (int32_t i = 0; i < g->n; i++) {
        if (g->bytes[i] < 0 || !(g->time[i] >= 0))
            return dbr_errf(err, errlen, "remat: node %s: negative bytes or time", nid(g, i, b, sizeof b));
        if (g->in_first[i + 1] < g->in_first[i])
            return dbr_errf(err, errlen, "remat: node %s: in_first decreases", nid(g, i, b, sizeof b));
        for (int32_t k = g->in_first[i]; k < g->in_first[i + 1]; k++) {
            int32_t j = g->ins[k];
            if (j >= i || (j < 0 && -1 - j >= g->n_leaves))
                return dbr_errf(err, errlen, "remat: node %s: input %d is not an earlier node or a leaf",
                            nid(g, i, b, sizeof b), (int)(k - g->in_first[i]));
        }
    }
    for (int32_t l = 0; l < g->n_leaves; l++)
        if (g->leaf_bytes[l] < 0)
            return dbr_errf(err, errlen, "remat: leaf %d: negative bytes", (int)l);
    return 0;
}

int dbr_rg_adj_build(const dbr_rgraph *g, dbr_rg_adj *a) {
    int32_t n = g->n, ne = n ? g->in_first[n] : 0;
    a->out_first = calloc((size_t)n + 1, sizeof(int32_t));
    a->outs = malloc(((size_t)ne + 1) * sizeof(int32_t));
    a->out_pos = malloc(((size_t)ne + 1) * sizeof(int32_t));
    if (!a->out_first || !a->outs || !a->out_pos) {
        dbr_rg_adj_free(a);
        return -1;
    }
    for (int32_t k = 0; k < ne; k++)
        if (g->ins[k] >= 0)
            a->out_first[g->ins[k] + 1]++;
    for (int32_t i = 0; i < n; i++)
        a->out_first[i + 1] += a->out_first[i];
    int32_t *fill = calloc((size_t)n + 1, sizeof(int32_t));
    if (!fill) {
        dbr_rg_adj_free(a);
        return -1;
    }
    for (int32_t c = 0; c < n; c++)
        for (int32_t k = g->in_first[c]; k < g->in_first[c + 1]; k++) {
            int32_t j = g->ins[k];
            if (j < 0)
                continue;
            int32_t at = a->out_first[j] + fill[j]++;
            a->outs[at] = c;
            a->out_pos[at] = k - g->in_first[c];
        }
    free(fill);
    return 0;
}

void dbr_rg_adj_free(dbr_rg_adj *a) {
    free(a->out_first);
    free(a->outs);
    free(a->out_pos);
    memset(a, 0, sizeof *a);
}

void dbr_remat_plan_free(dbr_remat_plan *p) {
    if (!p)
        return;
    free(p->seg_of);
    free(p->keep);
    free(p->recomputed);
    free(p->ev);
    memset(p, 0, sizeof *p);
}

void dbr_remat_trace_free(dbr_remat_trace *t) {
    if (!t)
        return;
    free(t->ev);
    free(t->live);
    memset(t, 0, sizeof *t);
}

/* keep[v]: v in the last segment or consumed by a later segment; rec[v]: v
 * unkept and needed by its own segment's gradient nodes or recomputes. */
static void segment_flags(const dbr_rgraph *g, const dbr_rg_adj *a, const int32_t *seg,
                          int32_t n_seg, bool *keep, bool *rec) {
    for (int32_t v = g->n - 1; v >= 0; v--) {
        bool k = seg[v] == n_seg - 1, need = (g->retain[v] & DBR_RG_RETAIN_OUT) != 0;
        for (int32_t e = a->out_first[v]; e < a->out_first[v + 1]; e++) {
            int32_t u = a->outs[e];
            if (seg[u] > seg[v])
                k = true;
            else if (rec[u] || dbr_rg_bwd_reads_input(g, u, a->out_pos[e]))
                need = true;
        }
        keep[v] = k;
        rec[v] = !k && need;
    }
}

static int check_segments(const dbr_rgraph *g, const int32_t *seg, int32_t n_seg, char *err,
                          size_t errlen) {
    char b[32];
    if (n_seg < 1 && g->n > 0)
        return dbr_errf(err, errlen, "remat: a segment plan needs at least one segment");
    for (int32_t i = 0; i < g->n; i++) {
        if (seg[i] < 0 || seg[i] >= n_seg)
            return dbr_errf(err, errlen, "remat: node %s: segment %d out of range", nid(g, i, b, sizeof b),
                        (int)seg[i]);
        for (int32_t k = g->in_first[i]; k < g->in_first[i + 1]; k++)
            if (g->ins[k] >= 0 && seg[g->ins[k]] > seg[i])
                return dbr_errf(err, errlen, "remat: node %s: an input is in a later segment (not a lower set)",
                            nid(g, i, b, sizeof b));
    }
    return 0;
}

int dbr_remat_plan_events(const dbr_rgraph *g, const dbr_remat_plan *p, dbr_remat_event **evp,
                          int32_t *n_evp, char *err, size_t errlen) {
    *evp = NULL;
    *n_evp = 0;
    if (p->ev) {
        *evp = malloc(((size_t)p->n_ev + 1) * sizeof **evp);
        if (!*evp)
            return dbr_errf(err, errlen, "remat: out of memory");
        memcpy(*evp, p->ev, (size_t)p->n_ev * sizeof **evp);
        *n_evp = p->n_ev;
        return 0;
    }
    if (!p->seg_of || p->n != g->n)
        return dbr_errf(err, errlen, "remat: plan has neither segments nor events for this graph");
    if (check_segments(g, p->seg_of, p->n_seg, err, errlen))
        return -1;
    int32_t n = g->n;
    dbr_rg_adj a;
    bool *keep = malloc((size_t)n + 1), *rec = malloc((size_t)n + 1);
    dbr_remat_event *ev = malloc(((size_t)3 * n + 1) * sizeof *ev);
    if (!keep || !rec || !ev || dbr_rg_adj_build(g, &a)) {
        free(keep);
        free(rec);
        free(ev);
        return dbr_errf(err, errlen, "remat: out of memory");
    }
    segment_flags(g, &a, p->seg_of, p->n_seg, keep, rec);
    int32_t m = 0;
    for (int32_t s = 0; s < p->n_seg; s++)
        for (int32_t i = 0; i < n; i++)
            if (p->seg_of[i] == s)
                ev[m++] = (dbr_remat_event){DBR_REV_FWD, i};
    for (int32_t s = p->n_seg - 1; s >= 0; s--) {
        for (int32_t i = 0; i < n; i++)
            if (p->seg_of[i] == s && rec[i])
                ev[m++] = (dbr_remat_event){DBR_REV_RECOMP, i};
        for (int32_t i = n - 1; i >= 0; i--)
            if (p->seg_of[i] == s)
                ev[m++] = (dbr_remat_event){DBR_REV_BWD, i};
    }
    dbr_rg_adj_free(&a);
    free(keep);
    free(rec);
    *evp = ev;
    *n_evp = m;
    return 0;
}

/* ---- the simulator ----------------------------------------------------------- */

int dbr_remat_simulate_events(const dbr_rgraph *g, const dbr_remat_event *ev, int32_t E,
                              dbr_remat_trace *out, char *err, size_t errlen) {
    if (dbr_rg_validate(g, err, errlen))
        return -1;
    int32_t n = g->n, L = g->n_leaves;
    char b[32];
    int64_t *alloc = calloc((size_t)E + 1, sizeof(int64_t));
    int64_t *freeb = calloc((size_t)E + 1, sizeof(int64_t));
    int64_t *leafal = calloc((size_t)E + 1, sizeof(int64_t));
    int32_t *lastread = malloc(((size_t)E + 1) * sizeof(int32_t));
    int32_t *cur = malloc(((size_t)n + 1) * sizeof(int32_t));
    int32_t *pend = calloc((size_t)n + 1, sizeof(int32_t));
    bool *gl = calloc((size_t)n + 1, 1), *done = calloc((size_t)n + 1, 1), *lg = calloc((size_t)L + 1, 1);
    int64_t *live = out ? malloc(((size_t)E + 1) * sizeof(int64_t)) : NULL;
    int rc = -1;
    if (!alloc || !freeb || !leafal || !lastread || !cur || !pend || !gl || !done || !lg ||
        (out && !live)) {
        dbr_errf(err, errlen, "remat: out of memory");
        goto out;
    }
    for (int32_t i = 0; i < n; i++)
        cur[i] = -1;
    for (int32_t k = 0; k < (n ? g->in_first[n] : 0); k++)
        if (g->ins[k] >= 0)
            pend[g->ins[k]]++;
    double overhead = 0;
    for (int32_t e = 0; e < E; e++) {
        lastread[e] = -1;
        int32_t v = ev[e].node;
        if (v < 0 || v >= n || ev[e].kind < DBR_REV_FWD || ev[e].kind > DBR_REV_BWD) {
            dbr_errf(err, errlen, "remat: event %d: bad node or kind", (int)e);
            goto out;
        }
        if (ev[e].kind != DBR_REV_BWD) {
            for (int32_t k = g->in_first[v]; k < g->in_first[v + 1]; k++) {
                int32_t j = g->ins[k];
                if (j < 0)
                    continue;
                if (cur[j] < 0) {
                    dbr_errf(err, errlen, "remat: event %d: node %s reads %s before it is computed", (int)e,
                         nid(g, v, b, sizeof b), g->id ? g->id[j] : "an input");
                    goto out;
                }
                lastread[cur[j]] = e;
            }
            cur[v] = e;
            alloc[e] += g->bytes[v];
            if (ev[e].kind == DBR_REV_RECOMP)
                overhead += g->time[v];
            continue;
        }
        if (done[v] || pend[v]) {
            dbr_errf(err, errlen, "remat: event %d: gradient node of %s %s", (int)e, nid(g, v, b, sizeof b),
                 done[v] ? "runs twice" : "runs before its consumers' gradient nodes");
            goto out;
        }
        done[v] = true;
        if (g->retain[v] & DBR_RG_RETAIN_OUT) {
            if (cur[v] < 0) {
                dbr_errf(err, errlen, "remat: event %d: gradient node of %s reads its output, never computed",
                     (int)e, nid(g, v, b, sizeof b));
                goto out;
            }
            lastread[cur[v]] = e;
        }
        if (!gl[v]) {
            gl[v] = true;
            alloc[e] += g->bytes[v];
        }
        freeb[e] += g->bytes[v];
        for (int32_t k = g->in_first[v]; k < g->in_first[v + 1]; k++) {
            int32_t j = g->ins[k];
            if (j < 0) {
                int32_t l = -1 - j;
                if (!(g->leaf_is_param && g->leaf_is_param[l]) && !lg[l]) {
                    lg[l] = true;
                    leafal[e] += g->leaf_bytes[l];
                }
                continue;
            }
            pend[j]--;
            if (!gl[j]) {
                gl[j] = true;
                alloc[e] += g->bytes[j];
            }
            if (dbr_rg_bwd_reads_input(g, v, k - g->in_first[v])) {
                if (cur[j] < 0) {
                    dbr_errf(err, errlen, "remat: event %d: gradient node of %s reads an input never computed",
                         (int)e, nid(g, v, b, sizeof b));
                    goto out;
                }
                lastread[cur[j]] = e;
            }
        }
    }
    for (int32_t i = 0; i < n; i++)
        if (!done[i]) {
            dbr_errf(err, errlen, "remat: gradient node of %s never runs", nid(g, i, b, sizeof b));
            goto out;
        }
    for (int32_t e = 0; e < E; e++)
        if (ev[e].kind != DBR_REV_BWD)
            freeb[lastread[e] >= 0 ? lastread[e] : e] += g->bytes[ev[e].node];
    int64_t leaves = 0, lgl = 0, cur_live = 0, peak = 0, total = 0;
    for (int32_t l = 0; l < L; l++)
        leaves += g->leaf_bytes[l];
    for (int32_t e = 0; e < E; e++) {
        cur_live += alloc[e];
        lgl += leafal[e];
        if (live)
            live[e] = cur_live;
        if (cur_live > peak)
            peak = cur_live;
        if (cur_live + leaves + lgl > total)
            total = cur_live + leaves + lgl;
        cur_live -= freeb[e];
    }
    if (E == 0)
        total = leaves;
    if (out) {
        memset(out, 0, sizeof *out);
        out->ev = malloc(((size_t)E + 1) * sizeof *out->ev);
        if (!out->ev) {
            dbr_errf(err, errlen, "remat: out of memory");
            goto out;
        }
        memcpy(out->ev, ev, (size_t)E * sizeof *ev);
        out->n_ev = E;
        out->live = live;
        live = NULL;
        out->peak = peak;
        out->total_peak = total;
        out->overhead = overhead;
    }
    rc = 0;
out:
    free(alloc);
    free(freeb);
    free(leafal);
    free(lastread);
    free(cur);
    free(pend);
    free(gl);
    free(done);
    free(lg);
    free(live);
    return rc;
}

int dbr_remat_simulate(const dbr_rgraph *g, const dbr_remat_plan *p, dbr_remat_trace *out,
                       int64_t *peak, double *overhead, char *err, size_t errlen) {
    dbr_remat_event *ev;
    int32_t E;
    if (dbr_rg_validate(g, err, errlen) || dbr_remat_plan_events(g, p, &ev, &E, err, errlen))
        return -1;
    dbr_remat_trace t;
    int rc = dbr_remat_simulate_events(g, ev, E, &t, err, errlen);
    free(ev);
    if (rc)
        return rc;
    if (peak)
        *peak = t.peak;
    if (overhead)
        *overhead = t.overhead;
    if (out)
        *out = t;
    else
        dbr_remat_trace_free(&t);
    return 0;
}

/* ---- the validity checker (naive on purpose: a second opinion) -------------- */

static bool bwd_reads(const dbr_rgraph *g, int32_t c, int32_t v) {
    if (c == v)
        return (g->retain[c] & DBR_RG_RETAIN_OUT) != 0;
    for (int32_t k = g->in_first[c]; k < g->in_first[c + 1]; k++)
        if (g->ins[k] == v && dbr_rg_bwd_reads_input(g, c, k - g->in_first[c]))
            return true;
    return false;
}

static bool reads(const dbr_rgraph *g, const dbr_remat_event *x, int32_t v) {
    if (x->kind == DBR_REV_BWD)
        return bwd_reads(g, x->node, v);
    for (int32_t k = g->in_first[x->node]; k < g->in_first[x->node + 1]; k++)
        if (g->ins[k] == v)
            return true;
    return false;
}

static bool consumes(const dbr_rgraph *g, int32_t c, int32_t v) {
    for (int32_t k = g->in_first[c]; k < g->in_first[c + 1]; k++)
        if (g->ins[k] == v)
            return true;
    return false;
}

int dbr_remat_check(const dbr_rgraph *g, const dbr_remat_event *ev, int32_t E, int64_t *peakp,
                    char *err, size_t errlen) {
    if (dbr_rg_validate(g, err, errlen))
        return -1;
    int32_t n = g->n;
    char b[32];
    int32_t *fwd_at = malloc(((size_t)n + 1) * sizeof(int32_t));
    int32_t *bwd_at = malloc(((size_t)n + 1) * sizeof(int32_t));
    if (!fwd_at || !bwd_at) {
        free(fwd_at);
        free(bwd_at);
        return dbr_errf(err, errlen, "remat: out of memory");
    }
    int rc = -1;
    for (int32_t i = 0; i < n; i++)
        fwd_at[i] = bwd_at[i] = -1;
    int32_t first_bwd = E;
    for (int32_t e = 0; e < E; e++) {
        int32_t v = ev[e].node;
        if (v < 0 || v >= n) {
            dbr_errf(err, errlen, "remat check: event %d: node out of range", (int)e);
            goto out;
        }
        if (ev[e].kind == DBR_REV_FWD) {
            if (fwd_at[v] >= 0 || e > first_bwd) {
                dbr_errf(err, errlen, "remat check: event %d: forward of %s %s", (int)e, nid(g, v, b, sizeof b),
                     fwd_at[v] >= 0 ? "twice" : "after backward began");
                goto out;
            }
            fwd_at[v] = e;
        } else if (ev[e].kind == DBR_REV_BWD) {
            if (bwd_at[v] >= 0) {
                dbr_errf(err, errlen, "remat check: gradient node of %s runs twice", nid(g, v, b, sizeof b));
                goto out;
            }
            for (int32_t c = v + 1; c < n; c++)
                if (consumes(g, c, v) && (bwd_at[c] < 0)) {
                    dbr_errf(err, errlen, "remat check: event %d: gradient of %s read before %s's gradient node ran",
                         (int)e, nid(g, v, b, sizeof b), g->id ? g->id[c] : "a consumer");
                    goto out;
                }
            bwd_at[v] = e;
            if (first_bwd == E)
                first_bwd = e;
        } else if (ev[e].kind == DBR_REV_RECOMP) {
            if (fwd_at[v] < 0) {
                dbr_errf(err, errlen, "remat check: event %d: %s recomputed before it was computed", (int)e,
                     nid(g, v, b, sizeof b));
                goto out;
            }
        } else {
            dbr_errf(err, errlen, "remat check: event %d: bad kind", (int)e);
            goto out;
        }
        /* presence: each value read has a copy computed earlier; under the
         * liveness rule that copy is still held, since this read keeps it */
        for (int32_t j = 0; j < n; j++) {
            if (j == v && ev[e].kind != DBR_REV_BWD)
                continue;
            if (!reads(g, &ev[e], j))
                continue;
            bool have = false;
            for (int32_t f = e - 1; f >= 0 && !have; f--)
                have = ev[f].node == j && ev[f].kind != DBR_REV_BWD;
            if (!have) {
                dbr_errf(err, errlen, "remat check: event %d: %s is not present when read", (int)e,
                     nid(g, j, b, sizeof b));
                goto out;
            }
        }
    }
    for (int32_t i = 0; i < n; i++)
        if (fwd_at[i] < 0 || bwd_at[i] < 0) {
            dbr_errf(err, errlen, "remat check: %s never %s", nid(g, i, b, sizeof b),
                 fwd_at[i] < 0 ? "computed in forward" : "differentiated");
            goto out;
        }
    int64_t peak = 0;
    for (int32_t e = 0; e < E; e++) {
        int64_t live = 0;
        for (int32_t v = 0; v < n; v++) {
            /* the latest copy of v computed at or before e */
            int32_t c = -1;
            for (int32_t f = e; f >= 0 && c < 0; f--)
                if (ev[f].node == v && ev[f].kind != DBR_REV_BWD)
                    c = f;
            if (c >= 0) {
                bool alive = c == e;
                for (int32_t r = e; r < E && !alive; r++) {
                    if (r > c && ev[r].node == v && ev[r].kind != DBR_REV_BWD)
                        break; /* a newer copy */
                    alive = reads(g, &ev[r], v) && !(ev[r].node == v && ev[r].kind != DBR_REV_BWD);
                }
                if (alive)
                    live += g->bytes[v];
            }
            /* its gradient: from the first gradient node producing it to its own */
            bool born = false;
            for (int32_t f = 0; f <= e && !born; f++)
                born = ev[f].kind == DBR_REV_BWD && (ev[f].node == v || consumes(g, ev[f].node, v));
            if (born && bwd_at[v] >= e)
                live += g->bytes[v];
        }
        if (live > peak)
            peak = live;
    }
    if (peakp)
        *peakp = peak;
    rc = 0;
out:
    free(fwd_at);
    free(bwd_at);
    return rc;
}

/* ---- plans from segments or events -------------------------------------------- */

static int finish_plan(const dbr_rgraph *g, dbr_remat_plan *p, char *err, size_t errlen) {
    dbr_remat_event *ev;
    int32_t E;
    if (dbr_remat_plan_events(g, p, &ev, &E, err, errlen))
        return -1;
    dbr_remat_trace t;
    if (dbr_remat_simulate_events(g, ev, E, &t, err, errlen)) {
        free(ev);
        return -1;
    }
    int32_t n = g->n;
    p->keep = calloc((size_t)n + 1, 1);
    p->recomputed = calloc((size_t)n + 1, 1);
    if (!p->keep || !p->recomputed) {
        free(ev);
        dbr_remat_trace_free(&t);
        return dbr_errf(err, errlen, "remat: out of memory");
    }
    /* kept: the forward copy is read by a backward-phase event */
    int32_t *last_fwd_copy = malloc(((size_t)n + 1) * sizeof(int32_t));
    bool in_bwd = false;
    for (int32_t i = 0; i < n; i++)
        last_fwd_copy[i] = 1;
    for (int32_t e = 0; e < E; e++) {
        int32_t v = ev[e].node;
        if (ev[e].kind == DBR_REV_BWD)
            in_bwd = true;
        if (ev[e].kind == DBR_REV_RECOMP) {
            p->recomputed[v] = true;
            last_fwd_copy[v] = 0;
        }
        if (!in_bwd && ev[e].kind != DBR_REV_RECOMP)
            continue;
        for (int32_t k = g->in_first[v]; k < g->in_first[v + 1]; k++) {
            int32_t j = g->ins[k];
            if (j >= 0 && last_fwd_copy[j] &&
                (ev[e].kind != DBR_REV_BWD || dbr_rg_bwd_reads_input(g, v, k - g->in_first[v])))
                p->keep[j] = true;
        }
        if (ev[e].kind == DBR_REV_BWD && (g->retain[v] & DBR_RG_RETAIN_OUT) && last_fwd_copy[v])
            p->keep[v] = true;
    }
    free(last_fwd_copy);
    p->n = n;
    p->peak = t.peak;
    p->total_peak = t.total_peak;
    p->overhead = t.overhead;
    p->fwd_time = 0;
    for (int32_t i = 0; i < n; i++)
        p->fwd_time += g->time[i];
    if (!p->model_peak)
        p->model_peak = t.peak;
    p->feasible = p->budget <= 0 || t.peak <= p->budget;
    p->min_feasible_peak = t.peak;
    free(ev);
    dbr_remat_trace_free(&t);
    return 0;
}

int dbr_remat_plan_from_segments(const dbr_rgraph *g, const int32_t *seg_of, int32_t n_seg,
                                 dbr_remat_plan *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (dbr_rg_validate(g, err, errlen) || check_segments(g, seg_of, n_seg, err, errlen))
        return -1;
    out->n = g->n;
    out->n_seg = n_seg;
    out->seg_of = malloc(((size_t)g->n + 1) * sizeof(int32_t));
    if (!out->seg_of)
        return dbr_errf(err, errlen, "remat: out of memory");
    memcpy(out->seg_of, seg_of, (size_t)g->n * sizeof(int32_t));
    if (finish_plan(g, out, err, errlen)) {
        dbr_remat_plan_free(out);
        return -1;
    }
    return 0;
}

int dbr_remat_plan_from_events(const dbr_rgraph *g, const dbr_remat_event *ev, int32_t n_ev,
                               dbr_remat_plan *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (dbr_rg_validate(g, err, errlen) || dbr_remat_check(g, ev, n_ev, NULL, err, errlen))
        return -1;
    out->n = g->n;
    out->n_ev = n_ev;
    out->ev = malloc(((size_t)n_ev + 1) * sizeof *ev);
    if (!out->ev)
        return dbr_errf(err, errlen, "remat: out of memory");
    memcpy(out->ev, ev, (size_t)n_ev * sizeof *ev);
    if (finish_plan(g, out, err, errlen)) {
        dbr_remat_plan_free(out);
        return -1;
    }
    return 0;
}
