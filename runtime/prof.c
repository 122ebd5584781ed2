/* prof.c: the per-kernel profiler's event log: what one kernel run was (its
 * name, the user's source lines, bytes moved, flops, whether a library
 * call did the work) and how long it took. */
#include "runtime/prof.h"

#include "ir/fused.h"
#include "ir/graph.h"

#include <stdlib.h>
#include <string.h>

const char *dbr_prof_phase_name(int32_t phase) {
    switch (phase) {
    case DBR_PH_FWD: return "fwd";
    case DBR_PH_BWD: return "bwd";
    case DBR_PH_OPT: return "opt";
    case DBR_PH_RECOMP: return "recomp";
    }
    return "?";
}

static int64_t tinfo_bytes(const dbr_tinfo *t) {
    return dbr_tinfo_numel(t) * (int64_t)dbr_dt_size(t->dtype);
}

/* Multiply-adds counted twice, for the ops a library call runs; 0 else. */
static double node_flops(const dbr_node *n) {
    const dbr_tinfo *a = &n->in[0], *b = &n->in[1];
    switch (n->op) {
    case DBR_OP_MATMUL: {
        int64_t k = a->shape[a->ndim - (n->a.i[0] ? 2 : 1)];
        return 2.0 * (double)dbr_tinfo_numel(&n->out) * (double)k;
    }
    case DBR_OP_CONV2D: /* (x, w) -> y */
        return 2.0 * (double)dbr_tinfo_numel(&n->out) *
               (double)(b->shape[1] * b->shape[2] * b->shape[3]);
    case DBR_OP_CONV2D_BWD_DATA: /* (gy, w) -> gx */
        return 2.0 * (double)dbr_tinfo_numel(a) *
               (double)(b->shape[1] * b->shape[2] * b->shape[3]);
    case DBR_OP_CONV2D_BWD_WEIGHT: /* (x, gy) -> gw */
        return 2.0 * (double)dbr_tinfo_numel(b) *
               (double)(n->out.shape[1] * n->out.shape[2] * n->out.shape[3]);
    default: return 0;
    }
}

static bool node_lib(const dbr_node *n) {
    return n->op == DBR_OP_MATMUL || n->op == DBR_OP_CONV2D || n->op == DBR_OP_CONV2D_BWD_DATA ||
           n->op == DBR_OP_CONV2D_BWD_WEIGHT;
}

/* Appends s (its first n bytes) at *len when it fits below cap. */
static bool put(char *dst, size_t *len, size_t cap, const char *s, size_t n) {
    if (*len + n >= cap) return false;
    memcpy(dst + *len, s, n);
    *len += n;
    return true;
}

/* Appends "op@file:line" (file without its folder) to src, space separated;
 * false when it does not fit (src then ends in "..." where room allows).
 * By hand, not snprintf: this runs once per kernel while profiling. */
static bool src_append(char *src, size_t cap, int32_t op, const char *file, int line) {
    size_t len = strlen(src), start = len;
    const char *base = file ? strrchr(file, '/') : NULL;
    base = base ? base + 1 : file ? file : "?";
    const char *name = op >= 0 && op < DBR_OP_COUNT ? dbr_ops[op].name : "?";
    char num[16];
    int k = (int)sizeof num;
    unsigned u = line > 0 ? (unsigned)line : 0;
    do num[--k] = (char)('0' + u % 10); while ((u /= 10) && k > 0);
    bool ok = (!len || put(src, &len, cap, " ", 1)) && put(src, &len, cap, name, strlen(name)) &&
              put(src, &len, cap, "@", 1) && put(src, &len, cap, base, strlen(base)) &&
              put(src, &len, cap, ":", 1) && put(src, &len, cap, num + k, sizeof num - (size_t)k);
    if (ok) {
        src[len] = 0;
        return true;
    }
    src[start] = 0;
    if (start + 4 < cap) memcpy(src + start, start ? " ..." : "...", start ? 5 : 4);
    return false;
}

static void fill_event(dbr_prof_event *e, const dbr_node *n, const char *phase, int64_t t0,
                       int64_t t1) {
    e->name = dbr_ops[n->op].name;
    e->phase = phase;
    e->t0_ns = t0;
    e->dur_ns = t1 > t0 ? t1 - t0 : 0;
    e->bytes = tinfo_bytes(&n->out);
    for (int i = 0; i < n->n_in; i++) e->bytes += tinfo_bytes(&n->in[i]);
    e->flops = node_flops(n);
    e->lib = node_lib(n);
    e->src[0] = 0;
    const dbr_fbody *fb = n->op == DBR_OP_FUSED ? dbr_fbody_get(n->a.i[0]) : NULL;
    if (fb) {
        e->name = fb->name;
        for (int32_t k = 0; k < fb->n_src; k++)
            if (!src_append(e->src, sizeof e->src, fb->src[k].op, fb->src[k].file,
                            fb->src[k].line))
                break;
    } else {
        src_append(e->src, sizeof e->src, (int32_t)n->op, n->file, n->line);
    }
}

void dbr_prof_record(dbr_prof *p, const dbr_node *n, const char *phase, int64_t t0, int64_t t1) {
    if (p->n == p->cap) {
        int64_t cap = p->cap ? p->cap * 2 : 1024;
        if (cap > DBR_PROF_MAX_EVENTS) cap = DBR_PROF_MAX_EVENTS;
        dbr_prof_event *ev = cap > p->cap ? realloc(p->ev, (size_t)cap * sizeof *ev) : NULL;
        if (!ev) {
            p->lost++;
            return;
        }
        p->ev = ev;
        p->cap = cap;
    }
    fill_event(&p->ev[p->n++], n, phase, t0, t1);
}

void dbr_prof_clear(dbr_prof *p) {
    p->n = 0;
    p->lost = 0;
}

void dbr_prof_free(dbr_prof *p) {
    if (!p) return;
    free(p->ev);
    free(p);
}
