/* schedule.c: orders of a graph's nodes. Recording order, a greedy order
 * that keeps the live arena bytes low (the ready node that frees the most
 * bytes minus what it allocates runs next), and a checker for any order. */
#include "passes/passes.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* The structure the schedulers rely on: ids in range, each node's output an
 * INTER value that names it as producer, and the other way round. */
static int check_graph(const dbr_graph *g, char *err, size_t errlen) {
    if (!g || g->n_nodes < 0 || g->n_vals < 0)
        return dbr_errf(err, errlen, "no graph");
    for (int32_t k = 0; k < g->n_nodes; k++) {
        const dbr_inode *nd = &g->nodes[k];
        const char *op = nd->op < DBR_OP_COUNT ? dbr_ops[nd->op].name : "?";
        if (nd->n_in < 0 || nd->n_in > DBR_MAX_SRC)
            return dbr_errf(err, errlen, "node %d (%s): %d inputs", (int)k, op, (int)nd->n_in);
        for (int i = 0; i < nd->n_in; i++)
            if (nd->in[i] < 0 || nd->in[i] >= g->n_vals)
                return dbr_errf(err, errlen, "node %d (%s): input %d is %d, not a value id", (int)k, op,
                            i, (int)nd->in[i]);
        if (nd->out < 0 || nd->out >= g->n_vals || g->vals[nd->out].kind != DBR_V_INTER ||
            g->vals[nd->out].producer != k)
            return dbr_errf(err, errlen, "node %d (%s): output %d is not an intermediate it produces",
                        (int)k, op, (int)nd->out);
    }
    for (int32_t v = 0; v < g->n_vals; v++) {
        const dbr_value *val = &g->vals[v];
        if (val->kind == DBR_V_INTER &&
            (val->producer < 0 || val->producer >= g->n_nodes || g->nodes[val->producer].out != v))
            return dbr_errf(err, errlen, "value %d: intermediate without a node that produces it",
                        (int)v);
    }
    return 0;
}

int dbr_schedule_check(const dbr_graph *g, const int32_t *order, char *err, size_t errlen) {
    if (check_graph(g, err, errlen))
        return -1;
    if (!order && g->n_nodes > 0)
        return dbr_errf(err, errlen, "no order");
    int32_t *pos = malloc(((size_t)g->n_nodes + 1) * sizeof *pos);
    if (!pos)
        return dbr_errf(err, errlen, "out of memory");
    for (int32_t k = 0; k < g->n_nodes; k++)
        pos[k] = -1;
    int rc = 0;
    for (int32_t p = 0; p < g->n_nodes && !rc; p++) {
        int32_t k = order[p];
        if (k < 0 || k >= g->n_nodes)
            rc = dbr_errf(err, errlen, "order[%d] = %d is not a node id", (int)p, (int)k);
        else if (pos[k] >= 0)
            rc = dbr_errf(err, errlen, "node %d is at positions %d and %d", (int)k, (int)pos[k], (int)p);
        else
            pos[k] = p;
    }
    for (int32_t p = 0; p < g->n_nodes && !rc; p++) {
        const dbr_inode *nd = &g->nodes[order[p]];
        for (int i = 0; i < nd->n_in && !rc; i++) {
            const dbr_value *v = &g->vals[nd->in[i]];
            if (v->kind == DBR_V_INTER && pos[v->producer] >= p)
                rc = dbr_errf(err, errlen,
                          "node %d (%s) at position %d reads %%%d, whose producer (node %d) is at "
                          "position %d",
                          (int)order[p], dbr_ops[nd->op].name, (int)p, (int)nd->in[i],
                          (int)v->producer, (int)pos[v->producer]);
        }
    }
    free(pos);
    return rc;
}

int dbr_schedule(const dbr_graph *g, int32_t *order, char *err, size_t errlen) {
    if (check_graph(g, err, errlen))
        return -1;
    for (int32_t k = 0; k < g->n_nodes; k++) {
        const dbr_inode *nd = &g->nodes[k];
        for (int i = 0; i < nd->n_in; i++) {
            const dbr_value *v = &g->vals[nd->in[i]];
            if (v->kind == DBR_V_INTER && v->producer >= k)
                return dbr_errf(err, errlen,
                            "node %d (%s) reads %%%d before node %d produces it: recording order "
                            "is not topological",
                            (int)k, dbr_ops[nd->op].name, (int)nd->in[i], (int)v->producer);
        }
    }
    for (int32_t k = 0; k < g->n_nodes; k++)
        order[k] = k;
    return 0;
}

/* ---- greedy ---------------------------------------------------------------- */

typedef struct gentry {
    int64_t score;
    int32_t node;
} gentry;

/* Max-heap on score, then min on node id. */
static bool gbefore(const gentry *a, const gentry *b) {
    return a->score != b->score ? a->score > b->score : a->node < b->node;
}

static void heap_push(gentry *h, int32_t *n, gentry e) {
    int32_t i = (*n)++;
    while (i > 0) {
        int32_t up = (i - 1) / 2;
        if (!gbefore(&e, &h[up]))
            break;
        h[i] = h[up];
        i = up;
    }
    h[i] = e;
}

static gentry heap_pop(gentry *h, int32_t *n) {
    gentry top = h[0], e = h[--*n];
    int32_t i = 0;
    for (;;) {
        int32_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && gbefore(&h[c + 1], &h[c]))
            c++;
        if (!gbefore(&h[c], &e))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = e;
    return top;
}

typedef struct greedy {
    const dbr_graph *g;
    int32_t *first, *users; /* CSR readers of each value */
    int32_t *rem;           /* per value: reader slots not yet scheduled */
    int32_t *missing;       /* per node: INTER input slots not yet produced */
    bool *done;             /* per node */
    int64_t *size;          /* per value: arena bytes, 0 for leaves */
    bool *freeable;         /* per value: INTER and not an output */
    gentry *heap;
    int32_t n_heap;
} greedy;

/* Bytes node m frees (inputs it would read last) minus the bytes it
 * allocates (an output nothing reads is freed at once and costs nothing). */
static int64_t gscore(const greedy *s, int32_t m) {
    const dbr_inode *nd = &s->g->nodes[m];
    int64_t score = 0;
    for (int i = 0; i < nd->n_in; i++) {
        int32_t v = nd->in[i], k = 0;
        bool seen = false;
        for (int j = 0; j < nd->n_in; j++) {
            seen |= j < i && nd->in[j] == v;
            k += nd->in[j] == v;
        }
        if (!seen && s->freeable[v] && s->rem[v] == k)
            score += s->size[v];
    }
    int32_t o = nd->out;
    if (s->first[o + 1] > s->first[o] || s->g->vals[o].is_output)
        score -= s->size[o];
    return score;
}

/* v lost a reader: if every remaining reader slot is one node's, that node
 * now frees v, and if it is ready its heap entry must rise. */
static void greedy_touch(greedy *s, int32_t v) {
    if (!s->freeable[v] || s->rem[v] <= 0 || s->rem[v] > DBR_MAX_SRC)
        return;
    int32_t sole = -1;
    for (int32_t u = s->first[v]; u < s->first[v + 1]; u++) {
        int32_t m = s->users[u];
        if (s->done[m])
            continue;
        if (sole >= 0 && m != sole)
            return;
        sole = m;
    }
    if (sole >= 0 && s->missing[sole] == 0)
        heap_push(s->heap, &s->n_heap, (gentry){gscore(s, sole), sole});
}

int dbr_schedule_greedy(const dbr_graph *g, int32_t *order, char *err, size_t errlen) {
    if (check_graph(g, err, errlen))
        return -1;
    int32_t N = g->n_nodes, V = g->n_vals;
    greedy s = {.g = g};
    int rc = 0;
    if (dbr_graph_users(g, &s.first, &s.users)) {
        s.first = s.users = NULL;
        return dbr_errf(err, errlen, "out of memory");
    }
    /* Each node enters the heap once when it becomes ready and at most once
     * more per value it comes to free last: N + V entries at most. */
    s.rem = malloc(((size_t)V + 1) * sizeof *s.rem);
    s.missing = calloc((size_t)N + 1, sizeof *s.missing);
    s.done = calloc((size_t)N + 1, sizeof *s.done);
    s.size = malloc(((size_t)V + 1) * sizeof *s.size);
    s.freeable = malloc(((size_t)V + 1) * sizeof *s.freeable);
    s.heap = malloc(((size_t)N + V + 1) * sizeof *s.heap);
    if (!s.rem || !s.missing || !s.done || !s.size || !s.freeable || !s.heap) {
        rc = dbr_errf(err, errlen, "out of memory");
        goto out;
    }
    for (int32_t v = 0; v < V; v++) {
        s.rem[v] = s.first[v + 1] - s.first[v];
        s.size[v] = dbr_value_arena_bytes(g, v);
        if (s.size[v] < 0) {
            rc = dbr_errf(err, errlen, "value %d: size overflows", (int)v);
            goto out;
        }
        s.freeable[v] = g->vals[v].kind == DBR_V_INTER && !g->vals[v].is_output;
    }
    for (int32_t k = 0; k < N; k++) {
        const dbr_inode *nd = &g->nodes[k];
        for (int i = 0; i < nd->n_in; i++)
            s.missing[k] += g->vals[nd->in[i]].kind == DBR_V_INTER;
    }
    for (int32_t k = 0; k < N; k++)
        if (s.missing[k] == 0)
            heap_push(s.heap, &s.n_heap, (gentry){gscore(&s, k), k});
    int32_t n_done = 0;
    while (s.n_heap > 0) {
        gentry e = heap_pop(s.heap, &s.n_heap);
        int32_t k = e.node;
        if (s.done[k] || gscore(&s, k) != e.score)
            continue; /* stale: a newer entry holds the current score */
        s.done[k] = true;
        order[n_done++] = k;
        const dbr_inode *nd = &g->nodes[k];
        for (int i = 0; i < nd->n_in; i++)
            s.rem[nd->in[i]]--;
        for (int i = 0; i < nd->n_in; i++) {
            bool seen = false;
            for (int j = 0; j < i; j++)
                seen |= nd->in[j] == nd->in[i];
            if (!seen)
                greedy_touch(&s, nd->in[i]);
        }
        int32_t o = nd->out;
        for (int32_t u = s.first[o]; u < s.first[o + 1]; u++) {
            int32_t m = s.users[u];
            if (--s.missing[m] == 0)
                heap_push(s.heap, &s.n_heap, (gentry){gscore(&s, m), m});
        }
    }
    if (n_done != N)
        rc = dbr_errf(err, errlen, "%d of %d nodes never became ready: the graph has a cycle",
                  (int)(N - n_done), (int)N);
out:
    free(s.first);
    free(s.users);
    free(s.rem);
    free(s.missing);
    free(s.done);
    free(s.size);
    free(s.freeable);
    free(s.heap);
    return rc;
}
