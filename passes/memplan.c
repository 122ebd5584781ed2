/* memplan.c: liveness of values in a schedule, the in-place rule, and the
 * arena planner: in-place decisions, then two placements (a walk in the
 * manner of ggml-alloc: best fit over an address-sorted free list, growth at
 * the end; and offline greedy by size as TFLite's arena planner), keeping the
 * smaller arena; with an independent checker. */
#include "passes/passes.h"

#include "ir/fused.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


int64_t dbr_value_arena_bytes(const dbr_graph *g, int32_t v) {
    const dbr_value *val = &g->vals[v];
    if (val->kind != DBR_V_INTER)
        return 0;
    int64_t n = (int64_t)dbr_dt_size(val->t.dtype);
    for (int d = 0; d < val->t.ndim; d++) {
        int64_t s = val->t.shape[d];
        if (s < 0 || (s > 0 && n > (INT64_MAX - DBR_ARENA_ALIGN) / s))
            return -1;
        n *= s;
    }
    n = (n + DBR_ARENA_ALIGN - 1) / DBR_ARENA_ALIGN * DBR_ARENA_ALIGN;
    return n > 0 ? n : DBR_ARENA_ALIGN;
}

/* ---- liveness ---------------------------------------------------------------- */

void dbr_liveness_free(dbr_liveness *lv) {
    if (!lv)
        return;
    free(lv->def);
    free(lv->last);
    lv->def = lv->last = NULL;
}

int dbr_liveness_build(const dbr_graph *g, const int32_t *order, dbr_liveness *lv, char *err,
                       size_t errlen) {
    lv->def = lv->last = NULL;
    if (dbr_schedule_check(g, order, err, errlen))
        return -1;
    size_t nv = (size_t)g->n_vals + 1;
    lv->def = malloc(nv * sizeof *lv->def);
    lv->last = malloc(nv * sizeof *lv->last);
    if (!lv->def || !lv->last) {
        dbr_liveness_free(lv);
        return dbr_errf(err, errlen, "out of memory");
    }
    for (int32_t v = 0; v < g->n_vals; v++)
        lv->def[v] = lv->last[v] = -1;
    for (int32_t p = 0; p < g->n_nodes; p++) {
        const dbr_inode *nd = &g->nodes[order[p]];
        for (int i = 0; i < nd->n_in; i++)
            lv->last[nd->in[i]] = p; /* positions only grow */
        lv->def[nd->out] = lv->last[nd->out] = p;
    }
    for (int32_t v = 0; v < g->n_vals; v++)
        if (g->vals[v].is_output)
            lv->last[v] = g->n_nodes;
    return 0;
}

/* ---- the in-place rule ----------------------------------------------------------- */

bool dbr_op_inplace_ok(const dbr_graph *g, const dbr_inode *n, int i) {
    if (i < 0 || i >= n->n_in || n->op >= DBR_OP_COUNT)
        return false;
    const dbr_value *in = &g->vals[n->in[i]];
    if (in->kind != DBR_V_INTER || in->is_output)
        return false;
    switch (n->op) {
    case DBR_OP_RELU_BWD: case DBR_OP_LEAKY_RELU_BWD: case DBR_OP_GELU_BWD: case DBR_OP_SILU_BWD:
        break; /* element-wise: each output element reads only its own input elements */
    case DBR_OP_DROPOUT: case DBR_OP_SOFTMAX: case DBR_OP_LOG_SOFTMAX:
        break;
    case DBR_OP_FUSED: {
        /* a map reads point i of every input before writing point i; a
         * reduction's slices could overwrite what another thread still reads */
        const dbr_fbody *b = dbr_fbody_get(n->a.i[0]);
        if (!b || b->red)
            return false;
        break;
    }
    case DBR_OP_BATCH_NORM: case DBR_OP_LAYER_NORM:
        /* The kernel reads a whole row (or channel) of x before writing it,
         * but gamma and beta all along: they must stay untouched. */
        if (i != 0)
            return false;
        for (int j = 1; j < n->n_in; j++)
            if (n->in[j] == n->in[0])
                return false;
        break;
    default:
        if (dbr_ops[n->op].cat != DBR_CAT_EW)
            return false;
    }
    return dbr_tinfo_same(&in->t, &g->vals[n->out].t);
}

/* ---- the arena ------------------------------------------------------------------- */

typedef struct fblock {
    int64_t off, size;
} fblock;

/* Free blocks sorted by address, never adjacent (merged), all below end. */
typedef struct arena {
    fblock *b;
    int32_t n;
    int64_t end;
} arena;

static void arena_remove(arena *a, int32_t k) {
    memmove(&a->b[k], &a->b[k + 1], (size_t)(a->n - k - 1) * sizeof a->b[0]);
    a->n--;
}

/* Best fit among the blocks inside the arena; the block at the end (which
 * can grow) only when none fits, as ggml-alloc keeps its last block for
 * last; past the end when there is no such block. */
static int64_t arena_alloc(arena *a, int64_t size) {
    int32_t best = -1;
    for (int32_t k = 0; k < a->n; k++) {
        const fblock *f = &a->b[k];
        if (f->off + f->size != a->end && f->size >= size && (best < 0 || f->size < a->b[best].size))
            best = k;
    }
    if (best >= 0) {
        fblock *f = &a->b[best];
        int64_t off = f->off;
        f->off += size;
        f->size -= size;
        if (f->size == 0)
            arena_remove(a, best);
        return off;
    }
    if (a->n > 0 && a->b[a->n - 1].off + a->b[a->n - 1].size == a->end) {
        fblock *f = &a->b[a->n - 1];
        int64_t off = f->off;
        if (f->size > size) {
            f->off += size;
            f->size -= size;
        } else {
            a->end = off + size;
            a->n--;
        }
        return off;
    }
    int64_t off = a->end;
    a->end += size;
    return off;
}

/* The array holds one block per live buffer plus one, so it never grows. */
static void arena_free(arena *a, int64_t off, int64_t size) {
    int32_t k = 0;
    while (k < a->n && a->b[k].off < off)
        k++;
    bool prev = k > 0 && a->b[k - 1].off + a->b[k - 1].size == off;
    bool next = k < a->n && off + size == a->b[k].off;
    if (prev && next) {
        a->b[k - 1].size += size + a->b[k].size;
        arena_remove(a, k);
    } else if (prev) {
        a->b[k - 1].size += size;
    } else if (next) {
        a->b[k].off = off;
        a->b[k].size += size;
    } else {
        memmove(&a->b[k + 1], &a->b[k], (size_t)(a->n - k) * sizeof a->b[0]);
        a->b[k] = (fblock){off, size};
        a->n++;
    }
}

/* ---- planning ---------------------------------------------------------------------- */

void dbr_memplan_free(dbr_memplan *mp) {
    if (!mp)
        return;
    free(mp->offset);
    free(mp->inplace_of);
    memset(mp, 0, sizeof *mp);
}

static bool read_before(const dbr_inode *nd, int i) {
    for (int j = 0; j < i; j++)
        if (nd->in[j] == nd->in[i])
            return true;
    return false;
}

/* WALK: offsets for every INTER value in order; returns the arena's size,
 * or -1 when out of memory. */
static int64_t place_walk(const dbr_graph *g, const int32_t *order, const dbr_liveness *lv,
                          const int64_t *size, const int32_t *inplace_of, int64_t *offset) {
    arena a = {.b = malloc(((size_t)g->n_vals + 2) * sizeof *a.b)};
    if (!a.b)
        return -1;
    for (int32_t p = 0; p < g->n_nodes; p++) {
        const dbr_inode *nd = &g->nodes[order[p]];
        int32_t o = nd->out, reused = inplace_of[o];
        offset[o] = reused >= 0 ? offset[reused] : arena_alloc(&a, size[o]);
        /* After the node has run: inputs it read last, and its own output
         * when nothing reads it. */
        for (int i = 0; i < nd->n_in; i++) {
            int32_t v = nd->in[i];
            if (g->vals[v].kind == DBR_V_INTER && lv->last[v] == p && v != reused &&
                !read_before(nd, i))
                arena_free(&a, offset[v], size[v]);
        }
        if (lv->last[o] == p)
            arena_free(&a, offset[o], size[o]);
    }
    free(a.b);
    return a.end;
}

/* BY_SIZE: one buffer per in-place chain, live over positions [first, last]. */
typedef struct sbuf {
    int64_t size, off;
    int32_t first, last, id; /* id: the chain's first value */
} sbuf;

static int cmp_i64_desc(int64_t a, int64_t b) { return (a < b) - (a > b); }

/* Size descending; ties: the longer lifetime, then the lower id. */
static int sbuf_by_length(const void *pa, const void *pb) {
    const sbuf *a = pa, *b = pb;
    int c = cmp_i64_desc(a->size, b->size);
    if (!c)
        c = cmp_i64_desc(a->last - a->first, b->last - b->first);
    return c ? c : (a->id > b->id) - (a->id < b->id);
}

/* Size descending; ties: the later last use, then the longer lifetime, then
 * the lower id. */
static int sbuf_by_last(const void *pa, const void *pb) {
    const sbuf *a = pa, *b = pb;
    int c = cmp_i64_desc(a->size, b->size);
    if (!c)
        c = cmp_i64_desc(a->last, b->last);
    if (!c)
        c = cmp_i64_desc(a->last - a->first, b->last - b->first);
    return c ? c : (a->id > b->id) - (a->id < b->id);
}

/* Offsets for b[0 .. n) in that order, each the lowest at which it overlaps
 * no earlier buffer live at the same time; placed is scratch for n. Sizes
 * are multiples of DBR_ARENA_ALIGN, so offsets are too. Returns the arena's
 * size. */
static int64_t place_in_order(sbuf *b, int32_t n, sbuf *placed) {
    int32_t n_placed = 0; /* sorted by offset */
    int64_t end = 0;
    for (int32_t i = 0; i < n; i++) {
        /* Sweep by address: the candidate rises past each placed buffer
         * live at the same time, until a gap below the next one fits. */
        int64_t cand = 0;
        for (int32_t k = 0; k < n_placed; k++) {
            const sbuf *q = &placed[k];
            if (q->last < b[i].first || q->first > b[i].last)
                continue;
            if (cand + b[i].size <= q->off)
                break;
            if (q->off + q->size > cand)
                cand = q->off + q->size;
        }
        b[i].off = cand;
        int32_t lo = 0, hi = n_placed;
        while (lo < hi) {
            int32_t mid = lo + (hi - lo) / 2;
            if (placed[mid].off <= cand)
                lo = mid + 1;
            else
                hi = mid;
        }
        memmove(&placed[lo + 1], &placed[lo], (size_t)(n_placed - lo) * sizeof *placed);
        placed[lo] = b[i];
        n_placed++;
        if (cand + b[i].size > end)
            end = cand + b[i].size;
    }
    return end;
}

/* Greedy by size under both tie orders, keeping the smaller arena (ties:
 * by length); -1 when out of memory. */
static int64_t place_by_size(const dbr_graph *g, const int32_t *order, const dbr_liveness *lv,
                             const int64_t *size, const int32_t *inplace_of, int64_t *offset) {
    int32_t N = g->n_nodes;
    int32_t *buf_of = malloc(((size_t)g->n_vals + 1) * sizeof *buf_of);
    sbuf *b = malloc(((size_t)N + 1) * sizeof *b);
    sbuf *b2 = malloc(((size_t)N + 1) * sizeof *b2);
    sbuf *placed = malloc(((size_t)N + 1) * sizeof *placed);
    int64_t end = -1;
    if (!buf_of || !b || !b2 || !placed)
        goto out;
    int32_t n_b = 0;
    for (int32_t p = 0; p < N; p++) {
        int32_t o = g->nodes[order[p]].out, u = inplace_of[o];
        if (u >= 0) {
            sbuf *c = &b[buf_of[o] = buf_of[u]];
            if (lv->last[o] > c->last)
                c->last = lv->last[o];
        } else {
            b[buf_of[o] = n_b++] = (sbuf){.size = size[o], .first = p, .last = lv->last[o], .id = o};
        }
    }
    memcpy(b2, b, (size_t)n_b * sizeof *b);
    qsort(b, (size_t)n_b, sizeof *b, sbuf_by_length);
    qsort(b2, (size_t)n_b, sizeof *b2, sbuf_by_last);
    end = place_in_order(b, n_b, placed);
    int64_t end2 = place_in_order(b2, n_b, placed);
    if (end2 < end) {
        end = end2;
        sbuf *t = b;
        b = b2;
        b2 = t;
    }
    /* Chains share their first value's offset; values in order, so an
     * in-place value's input already has its offset. */
    for (int32_t i = 0; i < n_b; i++)
        offset[b[i].id] = b[i].off;
    for (int32_t p = 0; p < N; p++) {
        int32_t o = g->nodes[order[p]].out;
        if (inplace_of[o] >= 0)
            offset[o] = offset[inplace_of[o]];
    }
out:
    free(buf_of);
    free(b);
    free(b2);
    free(placed);
    return end;
}

int dbr_memplan_build(const dbr_graph *g, const int32_t *order, dbr_memplan *mp, char *err,
                      size_t errlen) {
    return dbr_memplan_build_with(g, order, DBR_MEMPLAN_BEST, mp, err, errlen);
}

int dbr_memplan_build_with(const dbr_graph *g, const int32_t *order, dbr_memplan_strategy strategy,
                           dbr_memplan *mp, char *err, size_t errlen) {
    memset(mp, 0, sizeof *mp);
    if (strategy != DBR_MEMPLAN_BEST && strategy != DBR_MEMPLAN_WALK &&
        strategy != DBR_MEMPLAN_BY_SIZE)
        return dbr_errf(err, errlen, "unknown memplan strategy %d", (int)strategy);
    dbr_liveness lv;
    if (dbr_liveness_build(g, order, &lv, err, errlen))
        return -1;
    int32_t N = g->n_nodes, V = g->n_vals;
    int64_t *size = malloc(((size_t)V + 1) * sizeof *size);
    int64_t *delta = calloc((size_t)N + 2, sizeof *delta); /* live-bytes changes per position */
    int64_t *other = NULL; /* BY_SIZE's offsets when both are planned */
    mp->offset = malloc(((size_t)V + 1) * sizeof *mp->offset);
    mp->inplace_of = malloc(((size_t)V + 1) * sizeof *mp->inplace_of);
    int rc = 0;
    if (!size || !delta || !mp->offset || !mp->inplace_of) {
        rc = dbr_errf(err, errlen, "out of memory");
        goto out;
    }
    for (int32_t v = 0; v < V; v++) {
        size[v] = dbr_value_arena_bytes(g, v);
        if (size[v] < 0) {
            rc = dbr_errf(err, errlen, "value %d: size overflows", (int)v);
            goto out;
        }
        mp->offset[v] = -1;
        mp->inplace_of[v] = -1;
    }
    /* In place: the first input the op may overwrite and the node reads last. */
    for (int32_t p = 0; p < N; p++) {
        const dbr_inode *nd = &g->nodes[order[p]];
        int32_t o = nd->out, reused = -1;
        for (int i = 0; i < nd->n_in && reused < 0; i++)
            if (lv.last[nd->in[i]] == p && dbr_op_inplace_ok(g, nd, i))
                reused = nd->in[i];
        if (reused >= 0) {
            mp->inplace_of[o] = reused;
            mp->n_inplace++;
        }
        delta[p] += reused >= 0 ? 0 : size[o];
        delta[lv.last[o] + 1] -= size[o];
        if (reused >= 0)
            delta[p + 1] += size[o]; /* reused's bytes leave at p + 1 */
    }
    int64_t live = 0;
    for (int32_t p = 0; p < N; p++) {
        live += delta[p];
        if (live > mp->lower_bound)
            mp->lower_bound = live;
    }
    int64_t walk = -1, by_size = -1;
    if (strategy != DBR_MEMPLAN_BY_SIZE &&
        (walk = place_walk(g, order, &lv, size, mp->inplace_of, mp->offset)) < 0) {
        rc = dbr_errf(err, errlen, "out of memory");
        goto out;
    }
    if (strategy != DBR_MEMPLAN_WALK) {
        int64_t *off = mp->offset;
        if (strategy == DBR_MEMPLAN_BEST) {
            if (!(other = malloc(((size_t)V + 1) * sizeof *other))) {
                rc = dbr_errf(err, errlen, "out of memory");
                goto out;
            }
            memcpy(other, mp->offset, (size_t)V * sizeof *other); /* leaves' -1 */
            off = other;
        }
        if ((by_size = place_by_size(g, order, &lv, size, mp->inplace_of, off)) < 0) {
            rc = dbr_errf(err, errlen, "out of memory");
            goto out;
        }
    }
    if (walk >= 0 && (by_size < 0 || walk <= by_size)) {
        mp->strategy = DBR_MEMPLAN_WALK;
        mp->arena_bytes = walk;
    } else {
        mp->strategy = DBR_MEMPLAN_BY_SIZE;
        mp->arena_bytes = by_size;
        if (other) {
            int64_t *t = mp->offset;
            mp->offset = other;
            other = t;
        }
    }
out:
    if (rc)
        dbr_memplan_free(mp);
    dbr_liveness_free(&lv);
    free(size);
    free(delta);
    free(other);
    return rc;
}

/* ---- checking ---------------------------------------------------------------------- */

int dbr_memplan_check(const dbr_graph *g, const int32_t *order, const dbr_memplan *mp, char *err,
                      size_t errlen) {
    if (dbr_schedule_check(g, order, err, errlen))
        return -1;
    if (!mp || (g->n_vals > 0 && (!mp->offset || !mp->inplace_of)))
        return dbr_errf(err, errlen, "no plan");
    int32_t N = g->n_nodes, V = g->n_vals;
    /* Liveness again, from the definition rather than dbr_liveness_build. */
    int32_t *def = malloc(((size_t)V + 1) * sizeof *def);
    int32_t *last = malloc(((size_t)V + 1) * sizeof *last);
    int32_t *active = malloc(((size_t)V + 1) * sizeof *active);
    int64_t *size = malloc(((size_t)V + 1) * sizeof *size);
    int rc = 0;
    if (!def || !last || !active || !size) {
        rc = dbr_errf(err, errlen, "out of memory");
        goto out;
    }
    for (int32_t v = 0; v < V; v++)
        def[v] = last[v] = -1;
    for (int32_t p = 0; p < N; p++) {
        const dbr_inode *nd = &g->nodes[order[p]];
        def[nd->out] = p;
        if (last[nd->out] < p)
            last[nd->out] = p;
        for (int i = 0; i < nd->n_in; i++)
            if (last[nd->in[i]] < p)
                last[nd->in[i]] = p;
    }
    int32_t n_inplace = 0;
    for (int32_t v = 0; v < V && !rc; v++) {
        const dbr_value *val = &g->vals[v];
        int64_t off = mp->offset[v], sz = size[v] = dbr_value_arena_bytes(g, v);
        int32_t u = mp->inplace_of[v];
        if (val->is_output)
            last[v] = N;
        if (val->kind != DBR_V_INTER) {
            if (off != -1 || u != -1)
                rc = dbr_errf(err, errlen, "leaf %%%d has offset %lld / in place of %d, not -1", (int)v,
                          (long long)off, (int)u);
            continue;
        }
        if (sz < 0)
            rc = dbr_errf(err, errlen, "%%%d: size overflows", (int)v);
        else if (off < 0 || off % DBR_ARENA_ALIGN != 0 || off > mp->arena_bytes - sz)
            rc = dbr_errf(err, errlen,
                      "%%%d: buffer [%lld, %lld) is unaligned or outside the arena [0, %lld)",
                      (int)v, (long long)off, (long long)(off + sz), (long long)mp->arena_bytes);
        if (rc || u == -1)
            continue;
        n_inplace++;
        const dbr_inode *nd = &g->nodes[g->vals[v].producer];
        bool ok = false;
        for (int i = 0; i < nd->n_in && !ok; i++)
            ok = nd->in[i] == u && dbr_op_inplace_ok(g, nd, i);
        if (!ok)
            rc = dbr_errf(err, errlen, "%%%d = %s(...) may not reuse the buffer of %%%d in place", (int)v,
                      dbr_ops[nd->op].name, (int)u);
        else if (mp->offset[u] != off)
            rc = dbr_errf(err, errlen, "%%%d is in place of %%%d but at offset %lld, not %lld", (int)v,
                      (int)u, (long long)off, (long long)mp->offset[u]);
    }
    /* In-place pairs, once every last position is final: the reused input
     * must die where its successor is born. */
    for (int32_t v = 0; v < V && !rc; v++) {
        int32_t u = mp->inplace_of[v];
        if (u >= 0 && last[u] != def[v])
            rc = dbr_errf(err, errlen,
                      "%%%d reuses %%%d in place at position %d, but %%%d is live until %d", (int)v,
                      (int)u, (int)def[v], (int)u, (int)last[u]);
    }
    if (!rc && n_inplace != mp->n_inplace)
        rc = dbr_errf(err, errlen, "n_inplace is %d, but %d values are in place", (int)mp->n_inplace,
                  (int)n_inplace);
    /* Sweep the order: the value born at p against every value still live. */
    int32_t n_active = 0;
    int64_t live = 0, lower = 0;
    for (int32_t p = 0; p < N && !rc; p++) {
        int32_t v = g->nodes[order[p]].out;
        int64_t off = mp->offset[v], sz = size[v];
        int32_t keep = 0;
        for (int32_t k = 0; k < n_active; k++) {
            int32_t w = active[k];
            if (last[w] < p) {
                live -= size[w];
                continue;
            }
            active[keep++] = w;
            int64_t woff = mp->offset[w], wsz = size[w];
            if (off < woff + wsz && woff < off + sz && mp->inplace_of[v] != w && !rc)
                rc = dbr_errf(err, errlen,
                          "%%%d [%lld, %lld) and %%%d [%lld, %lld) overlap while both are live at "
                          "position %d",
                          (int)v, (long long)off, (long long)(off + sz), (int)w, (long long)woff,
                          (long long)(woff + wsz), (int)p);
        }
        n_active = keep;
        active[n_active++] = v;
        live += sz;
        int64_t here = live - (mp->inplace_of[v] >= 0 ? sz : 0);
        if (here > lower)
            lower = here;
    }
    if (!rc && lower != mp->lower_bound)
        rc = dbr_errf(err, errlen, "lower_bound is %lld, but the live bytes peak at %lld",
                  (long long)mp->lower_bound, (long long)lower);
    if (!rc && mp->arena_bytes < lower)
        rc = dbr_errf(err, errlen, "arena of %lld bytes is below the lower bound %lld",
                  (long long)mp->arena_bytes, (long long)lower);
out:
    free(def);
    free(last);
    free(active);
    free(size);
    return rc;
}
