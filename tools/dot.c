/* dot.c: an IR graph as DOT text (selection by phase and by layer, labels,
 * colours, legend), written to .dot or rendered to .svg/.png with libgvc,
 * always through a temporary file renamed into place. */
#include "tools/dot.h"

#include "ir/fused.h"
#include "passes/fuse.h"
#include "passes/simplify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifdef DBR_HAVE_GRAPHVIZ
#include <gvc.h>
#include <pthread.h>
#endif

#define FADED_FONT "#aaaaaa"
#define FADED_LINE "#cccccc"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- a growing string; out of memory is remembered and checked once ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static bool sb_reserve(sbuf *b, size_t extra) {
    if (b->oom) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* s inside a DOT double-quoted string: quotes and backslashes escaped,
 * newlines as DOT's \n, other control characters dropped. */
static void sb_escaped(sbuf *b, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sb_printf(b, "\\%c", c);
        else if (c == '\n')
            sb_printf(b, "\\n");
        else if (c >= 0x20)
            sb_printf(b, "%c", c);
    }
}

/* ---- labels ------------------------------------------------------------- */

static void human_bytes(uint64_t bytes, char *buf, size_t n) {
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    if (bytes < 1024) {
        snprintf(buf, n, "%llu B", (unsigned long long)bytes);
        return;
    }
    double x = (double)bytes;
    int u = 0;
    while (x >= 1024.0 && u < 5) x /= 1024.0, u++;
    char num[32];
    snprintf(num, sizeof num, "%.1f", x);
    size_t len = strlen(num);
    if (len > 2 && !strcmp(num + len - 2, ".0")) num[len - 2] = '\0';
    snprintf(buf, n, "%s %s", num, unit[u]);
}

/* "f32[64,512]\n128 KiB" (DOT escapes) for a value's type. */
static void sb_type(sbuf *b, const dbr_tinfo *t) {
    char shape[256], size[32];
    dbr_shape_str(t, shape, sizeof shape);
    int64_t numel = dbr_tinfo_numel(t);
    human_bytes((uint64_t)(numel > 0 ? numel : 0) * dbr_dt_size(t->dtype), size, sizeof size);
    sb_printf(b, "%s%s\\n%s", dbr_dt_name(t->dtype), shape, size);
}

static const char *basename_of(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static const char *phase_color(dbr_phase p) {
    switch (p) {
    case DBR_PH_FWD: return DBR_DOT_FWD_COLOR;
    case DBR_PH_BWD: return DBR_DOT_BWD_COLOR;
    case DBR_PH_OPT: return DBR_DOT_OPT_COLOR;
    case DBR_PH_RECOMP: return DBR_DOT_RECOMP_COLOR;
    }
    return DBR_DOT_FWD_COLOR;
}

/* ---- selection ---------------------------------------------------------- */

enum { HIDE, SHOW, FADE };

typedef struct sel {
    uint8_t *node; /* per node: HIDE, SHOW or FADE */
    uint8_t *leaf; /* per value: 1 when a leaf is drawn */
} sel;

static bool name_matches(const dbr_value *v, const char *prefix) {
    return (v->kind == DBR_V_PARAM || v->kind == DBR_V_BUFFER) && v->name &&
           !strncmp(v->name, prefix, strlen(prefix));
}

static bool is_leaf(const dbr_value *v) { return v->kind != DBR_V_INTER; }

static int check_graph(const dbr_graph *g, char *err, size_t errlen) {
    if (g->n_vals < 0 || g->n_nodes < 0 || (g->n_vals && !g->vals) || (g->n_nodes && !g->nodes))
        return fail(err, errlen, "malformed graph: bad array sizes");
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const dbr_inode *n = &g->nodes[i];
        if ((unsigned)n->op >= DBR_OP_COUNT || n->n_in < 0 || n->n_in > DBR_MAX_SRC)
            return fail(err, errlen, "malformed graph: node %d has a bad op or arity", (int)i);
        if (n->out < 0 || n->out >= g->n_vals)
            return fail(err, errlen, "malformed graph: node %d writes value %d, out of range",
                        (int)i, (int)n->out);
        for (int k = 0; k < n->n_in; k++) {
            int32_t v = n->in[k];
            if (v < 0 || v >= g->n_vals)
                return fail(err, errlen, "malformed graph: node %d reads value %d, out of range",
                            (int)i, (int)v);
            int32_t p = g->vals[v].producer;
            if (!is_leaf(&g->vals[v]) && (p < 0 || p >= g->n_nodes))
                return fail(err, errlen, "malformed graph: value %d has no producer", (int)v);
        }
    }
    return 0;
}

static int select_parts(const dbr_graph *g, const dbr_dot_opts *o, sel *s, char *err,
                        size_t errlen) {
    s->node = calloc((size_t)g->n_nodes + 1, 1);
    s->leaf = calloc((size_t)g->n_vals + 1, 1);
    uint8_t *read = calloc((size_t)g->n_vals + 1, 1); /* leaf read by any node */
    if (!s->node || !s->leaf || !read) {
        free(read);
        return fail(err, errlen, "out of memory drawing a graph of %d nodes", (int)g->n_nodes);
    }
#define PHASE_OK(i) (!o->forward_only || g->nodes[i].phase == DBR_PH_FWD)
    for (int32_t i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) read[g->nodes[i].in[k]] = 1;

    if (!o->layer) {
        for (int32_t i = 0; i < g->n_nodes; i++) s->node[i] = PHASE_OK(i) ? SHOW : HIDE;
    } else {
        bool any = false;
        for (int32_t v = 0; v < g->n_vals && !any; v++) any = name_matches(&g->vals[v], o->layer);
        if (!any) {
            free(read);
            return fail(err, errlen, "no parameter or buffer name starts with \"%s\"", o->layer);
        }
        for (int32_t i = 0; i < g->n_nodes; i++) {
            if (!PHASE_OK(i)) continue;
            for (int k = 0; k < g->nodes[i].n_in; k++)
                if (name_matches(&g->vals[g->nodes[i].in[k]], o->layer)) s->node[i] = SHOW;
        }
        /* Context: producers of what SHOW nodes read, readers of what they
         * write; one step only, so FADE never spreads. */
        for (int32_t i = 0; i < g->n_nodes; i++) {
            if (s->node[i] == SHOW) {
                for (int k = 0; k < g->nodes[i].n_in; k++) {
                    int32_t p = g->vals[g->nodes[i].in[k]].producer;
                    if (p >= 0 && s->node[p] == HIDE && PHASE_OK(p)) s->node[p] = FADE;
                }
            } else if (s->node[i] == HIDE && PHASE_OK(i)) {
                for (int k = 0; k < g->nodes[i].n_in; k++) {
                    int32_t p = g->vals[g->nodes[i].in[k]].producer;
                    if (p >= 0 && s->node[p] == SHOW) s->node[i] = FADE;
                }
            }
        }
    }
#undef PHASE_OK
    /* Leaves: those a SHOW node reads; unread ones only in a full drawing. */
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (s->node[i] == SHOW)
            for (int k = 0; k < g->nodes[i].n_in; k++)
                if (is_leaf(&g->vals[g->nodes[i].in[k]])) s->leaf[g->nodes[i].in[k]] = 1;
    if (!o->layer)
        for (int32_t v = 0; v < g->n_vals; v++)
            if (is_leaf(&g->vals[v]) && !read[v]) s->leaf[v] = 1;
    free(read);
    return 0;
}

/* ---- the DOT text -------------------------------------------------------- */

static void emit_leaf(sbuf *b, const dbr_graph *g, int32_t v) {
    const dbr_value *x = &g->vals[v];
    const char *pen = x->is_output ? ", penwidth=2" : "";
    switch (x->kind) {
    case DBR_V_PARAM:
    case DBR_V_BUFFER:
        sb_printf(b, "  v%d [shape=ellipse, style=filled, fillcolor=\"%s\"%s, tooltip=\"%%%d %s\", "
                     "label=\"",
                  (int)v, x->kind == DBR_V_PARAM ? DBR_DOT_PARAM_COLOR : DBR_DOT_BUFFER_COLOR, pen,
                  (int)v, x->kind == DBR_V_PARAM ? "param" : "buffer");
        if (x->name)
            sb_escaped(b, x->name);
        else
            sb_printf(b, "%s #%d", x->kind == DBR_V_PARAM ? "param" : "buffer", (int)x->slot);
        sb_printf(b, "\\n");
        break;
    case DBR_V_INPUT:
        sb_printf(b, "  v%d [shape=ellipse, style=filled, fillcolor=\"%s\"%s, tooltip=\"%%%d input\", "
                     "label=\"input %d\\n",
                  (int)v, DBR_DOT_INPUT_COLOR, pen, (int)v, (int)x->slot);
        break;
    case DBR_V_CONST:
        sb_printf(b, "  v%d [shape=plaintext, fontsize=8, width=0, height=0, margin=0, "
                     "tooltip=\"%%%d const\", label=\"%g\"];\n",
                  (int)v, (int)v, x->cval);
        return;
    case DBR_V_INTER:
        return;
    }
    sb_type(b, &x->t);
    sb_printf(b, "\"];\n");
}

/* The body of a FUSED node, or NULL. */
static const dbr_fbody *fbody_of(const dbr_inode *n) {
    return n->op == DBR_OP_FUSED ? dbr_fbody_get(n->a.i[0]) : NULL;
}

/* A node's name in its label: the op, or a FUSED node's kernel name. */
static const char *op_label(const dbr_inode *n) {
    const dbr_fbody *fb = fbody_of(n);
    return fb && fb->name[0] ? fb->name : dbr_ops[n->op].name;
}

/* Whether node i is drawn as a cluster of its fused source ops. */
static bool clustered(const dbr_graph *g, const dbr_dot_opts *o, const sel *s, int32_t i) {
    return o->fused_clusters && s->node[i] == SHOW && fbody_of(&g->nodes[i]);
}

/* The plan's mark of the value node i computes, for an unfaded node. */
static int mark_of(const dbr_graph *g, const dbr_dot_opts *o, int32_t i, bool faded) {
    if (faded || !o->remat_mark) return DBR_DOT_MARK_NONE;
    uint8_t m = o->remat_mark[g->nodes[i].out];
    return m <= DBR_DOT_MARK_FREED ? m : DBR_DOT_MARK_NONE;
}

static void emit_node(sbuf *b, const dbr_graph *g, const dbr_dot_opts *o, int32_t i, bool faded) {
    const dbr_inode *n = &g->nodes[i];
    const dbr_value *x = &g->vals[n->out];
    int mark = mark_of(g, o, i, faded);
    sb_printf(b, "  v%d [shape=box, style=\"filled%s\", fillcolor=\"%s\"", (int)n->out,
              faded || mark == DBR_DOT_MARK_RECOMPUTED ? ",dashed" : "",
              faded ? DBR_DOT_CONTEXT_COLOR : phase_color(n->phase));
    if (faded) sb_printf(b, ", color=\"%s\", fontcolor=\"%s\"", FADED_LINE, FADED_FONT);
    if (mark == DBR_DOT_MARK_KEPT)
        sb_printf(b, ", color=\"%s\", penwidth=3", DBR_DOT_KEPT_COLOR);
    else if (mark == DBR_DOT_MARK_RECOMPUTED)
        sb_printf(b, ", color=\"%s\", penwidth=2", DBR_DOT_RECOMPUTED_COLOR);
    else if (mark == DBR_DOT_MARK_FREED)
        sb_printf(b, ", color=\"%s\"%s", DBR_DOT_FREED_COLOR, x->is_output ? ", penwidth=2" : "");
    else if (x->is_output)
        sb_printf(b, ", penwidth=2");
    sb_printf(b, ", tooltip=\"%%%d", (int)n->out);
    if (n->api) {
        sb_printf(b, " ");
        sb_escaped(b, n->api);
    }
    sb_printf(b, "\", label=\"");
    sb_escaped(b, op_label(n));
    sb_printf(b, "\\n");
    sb_type(b, &x->t);
    if (n->file) {
        sb_printf(b, "\\n");
        sb_escaped(b, basename_of(n->file));
        sb_printf(b, ":%d", (int)n->line);
    }
    static const char *const mark_name[4] = {"", "kept", "recomputed", "freed"};
    if (mark) sb_printf(b, "\\n%s", mark_name[mark]);
    sb_printf(b, "\"];\n");
}

/* ---- fused kernels as clusters ------------------------------------------ */

/* The boxes of a FUSED node's cluster: box k is source op k of its body,
 * and the last box stands for the node's output value, so edges leaving
 * the cluster start there. When the body's sources were capped
 * (DBR_FUSE_MAX_SRC), a last box counts the ops left out and the boxes form
 * a chain in source order; otherwise they follow the instructions. */
typedef struct fbox {
    int32_t n;                        /* boxes, >= 1 */
    int32_t of_ins[DBR_FUSE_MAX_INS]; /* instruction -> box, -1 for LOAD and CONST */
    bool dag;                         /* of_ins holds; else a chain */
} fbox;

static void fused_boxes(const dbr_fbody *fb, fbox *x) {
    int32_t j = 0;
    for (int32_t t = 0; t < fb->n_ins && t < DBR_FUSE_MAX_INS; t++)
        x->of_ins[t] = fb->ins[t].kind == DBR_FI_OP ? j++ : -1;
    /* OP instructions are the sources in order, but a reduction's, which
     * folds the last instruction */
    x->dag = fb->n_src == fb->n_ops && j == fb->n_ops - (fb->red ? 1 : 0) && fb->n_ins > 0;
    x->n = fb->n_src + (fb->n_src < fb->n_ops || fb->n_src == 0 ? 1 : 0);
}

static void sb_box(sbuf *b, int32_t out, int32_t k, const fbox *x) {
    if (k == x->n - 1)
        sb_printf(b, "v%d", (int)out);
    else
        sb_printf(b, "v%d_%d", (int)out, (int)k);
}

/* What the boxes read, for a dag: pairs (instruction p, box k) with k
 * reading p's value, each distinct operand once; returns the count (at most
 * 3 * DBR_FUSE_MAX_INS + 1). */
#define MAX_READS (3 * DBR_FUSE_MAX_INS + 1)
static int32_t box_reads(const dbr_fbody *fb, const fbox *x, int32_t (*r)[2]) {
    int32_t n = 0;
    for (int32_t t = 0; t < fb->n_ins && t < DBR_FUSE_MAX_INS; t++) {
        int32_t k = x->of_ins[t];
        if (k < 0) continue;
        const int32_t opd[3] = {fb->ins[t].a, fb->ins[t].b, fb->ins[t].c};
        for (int q = 0; q < 3; q++) {
            int32_t p = opd[q];
            if (p < 0 || p >= t || (q > 0 && p == opd[0]) || (q > 1 && p == opd[1])) continue;
            r[n][0] = p;
            r[n++][1] = k;
        }
    }
    if (fb->red) { /* the reduction folds the last instruction */
        r[n][0] = fb->n_ins - 1;
        r[n++][1] = x->n - 1;
    }
    return n;
}

static void emit_cluster(sbuf *b, const dbr_graph *g, int32_t i) {
    const dbr_inode *n = &g->nodes[i];
    const dbr_value *x = &g->vals[n->out];
    const dbr_fbody *fb = fbody_of(n);
    fbox fx;
    fused_boxes(fb, &fx);
    int32_t out = n->out;
    sb_printf(b, "  subgraph cluster_%d {\n"
                 "    style=\"filled,rounded\"; fillcolor=\"%s\"; color=\"#80cbc4\"; "
                 "fontsize=10; tooltip=\"%%%d fused\"; label=\"",
              (int)out, DBR_DOT_FUSED_COLOR, (int)out);
    sb_escaped(b, fb->name);
    sb_printf(b, "\\n%d op%s, ", (int)fb->n_ops, fb->n_ops == 1 ? "" : "s");
    sb_type(b, &x->t);
    sb_printf(b, "\";\n");
    for (int32_t k = 0; k < fx.n; k++) {
        sb_printf(b, "    ");
        sb_box(b, out, k, &fx);
        sb_printf(b, " [shape=box, style=filled, fillcolor=\"%s\", fontsize=9, height=0.3%s, "
                     "tooltip=\"%%%d",
                  phase_color(n->phase), k == fx.n - 1 && x->is_output ? ", penwidth=2" : "",
                  (int)out);
        if (k < fb->n_src && fb->src[k].api) {
            sb_printf(b, " ");
            sb_escaped(b, fb->src[k].api);
        }
        sb_printf(b, "\", label=\"");
        if (k < fb->n_src) {
            const dbr_fsrc *src = &fb->src[k];
            sb_printf(b, "%s", (unsigned)src->op < DBR_OP_COUNT ? dbr_ops[src->op].name : "?");
            if (src->file) {
                sb_printf(b, "\\n");
                sb_escaped(b, basename_of(src->file));
                sb_printf(b, ":%d", (int)src->line);
            }
        } else if (fb->n_src) {
            sb_printf(b, "+%d more ops", (int)(fb->n_ops - fb->n_src));
        } else {
            sb_escaped(b, fb->name);
        }
        sb_printf(b, "\"];\n");
    }
    if (fx.dag) {
        int32_t r[MAX_READS][2];
        int32_t nr = box_reads(fb, &fx, r);
        for (int32_t e = 0; e < nr; e++) {
            int32_t from = fx.of_ins[r[e][0]];
            if (from < 0 || from == r[e][1]) continue;
            sb_printf(b, "    ");
            sb_box(b, out, from, &fx);
            sb_printf(b, " -> ");
            sb_box(b, out, r[e][1], &fx);
            sb_printf(b, ";\n");
        }
    } else {
        for (int32_t k = 1; k < fx.n; k++) {
            sb_printf(b, "    ");
            sb_box(b, out, k - 1, &fx);
            sb_printf(b, " -> ");
            sb_box(b, out, k, &fx);
            sb_printf(b, ";\n");
        }
    }
    sb_printf(b, "  }\n");
}

/* The edges from a clustered node's inputs to the boxes loading them (at
 * the top level: an edge written inside the cluster would pull its tail
 * node into it). */
static void emit_cluster_inputs(sbuf *b, const dbr_graph *g, const sel *s, int32_t i) {
    const dbr_inode *n = &g->nodes[i];
    const dbr_fbody *fb = fbody_of(n);
    fbox fx;
    fused_boxes(fb, &fx);
    int32_t r[MAX_READS][2];
    int32_t nr = fx.dag ? box_reads(fb, &fx, r) : 0;
    for (int k = 0; k < n->n_in && k < fb->n_in; k++) {
        int32_t v = n->in[k];
        bool dup = false;
        for (int j = 0; j < k; j++) dup |= n->in[j] == v;
        if (dup) continue;
        int32_t p = g->vals[v].producer;
        if (is_leaf(&g->vals[v]) ? !s->leaf[v] : s->node[p] == HIDE) continue;
        const char *attr = !is_leaf(&g->vals[v]) && s->node[p] == FADE
                               ? " [color=\"" FADED_LINE "\"]" : "";
        bool seen[DBR_FUSE_MAX_SRC + 1] = {false};
        if (fx.dag) {
            for (int32_t e = 0; e < nr; e++) {
                const dbr_fins *in = &fb->ins[r[e][0]];
                int32_t box = r[e][1];
                if (in->kind != DBR_FI_LOAD || in->a != k || seen[box]) continue;
                seen[box] = true;
                sb_printf(b, "  v%d -> ", (int)v);
                sb_box(b, n->out, box, &fx);
                sb_printf(b, "%s;\n", attr);
            }
        } else {
            sb_printf(b, "  v%d -> ", (int)v);
            sb_box(b, n->out, 0, &fx);
            sb_printf(b, "%s;\n", attr);
        }
    }
}
#undef MAX_READS

static void emit_legend(sbuf *b, const dbr_graph *g, const dbr_dot_opts *o, const sel *s) {
    bool phase[4] = {false, false, false, false}, kind[5] = {false, false, false, false, false};
    bool context = false, mark[4] = {false, false, false, false}, fused = false;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        fused |= clustered(g, o, s, i);
        if (s->node[i] == SHOW && (unsigned)g->nodes[i].phase <= DBR_PH_RECOMP)
            phase[g->nodes[i].phase] = true;
        context |= s->node[i] == FADE;
        if (s->node[i] != HIDE) mark[mark_of(g, o, i, s->node[i] == FADE)] = true;
    }
    for (int32_t v = 0; v < g->n_vals; v++)
        if (s->leaf[v] && (unsigned)g->vals[v].kind <= DBR_V_INTER)
            kind[g->vals[v].kind] = true;

    bool any = context || fused;
    for (int p = 0; p < 4; p++) any |= phase[p];
    for (int m = 1; m < 4; m++) any |= mark[m];
    for (int k = 0; k < 5; k++) any |= kind[k];
    if (!any) return; /* an empty drawing */

    /* One row, in order: invisible flat edges make it one component, which
     * dot lays out beside the graph, never interleaved with it. Neither a
     * cluster nor rank=source/min: Graphviz 2.43 leaks memory in mincross
     * for every cluster and in dot_rank for those ranks. */
    sb_printf(b, "  subgraph legend {\n"
                 "    rank=same;\n"
                 "    node [fontsize=9, height=0.3];\n"
                 "    legend_title [shape=plaintext, fontsize=10, label=\"legend:\"];\n");
    static const char *const pname[4] = {"forward", "backward", "optimizer", "recompute"};
    static const char *const pkey[4] = {"fwd", "bwd", "opt", "recomp"};
    const char *keys[16] = {"title"};
    int n = 1;
    for (int p = 0; p < 4; p++)
        if (phase[p]) {
            sb_printf(b, "    legend_%s [shape=box, style=filled, fillcolor=\"%s\", label=\"%s\"];\n",
                      pkey[p], phase_color((dbr_phase)p), pname[p]);
            keys[n++] = pkey[p];
        }
    if (fused) {
        sb_printf(b, "    legend_fused [shape=box, style=\"filled,rounded\", fillcolor=\"%s\", "
                     "color=\"#80cbc4\", label=\"fused kernel\"];\n", DBR_DOT_FUSED_COLOR);
        keys[n++] = "fused";
    }
    if (context) {
        sb_printf(b, "    legend_ctx [shape=box, style=\"filled,dashed\", fillcolor=\"%s\", "
                     "color=\"%s\", fontcolor=\"%s\", label=\"context\"];\n",
                  DBR_DOT_CONTEXT_COLOR, FADED_LINE, FADED_FONT);
        keys[n++] = "ctx";
    }
    if (mark[DBR_DOT_MARK_KEPT]) {
        sb_printf(b, "    legend_kept [shape=box, style=filled, fillcolor=\"%s\", color=\"%s\", "
                     "penwidth=3, label=\"kept\"];\n", DBR_DOT_FWD_COLOR, DBR_DOT_KEPT_COLOR);
        keys[n++] = "kept";
    }
    if (mark[DBR_DOT_MARK_RECOMPUTED]) {
        sb_printf(b, "    legend_recomputed [shape=box, style=\"filled,dashed\", "
                     "fillcolor=\"%s\", color=\"%s\", penwidth=2, label=\"recomputed\"];\n",
                  DBR_DOT_FWD_COLOR, DBR_DOT_RECOMPUTED_COLOR);
        keys[n++] = "recomputed";
    }
    if (mark[DBR_DOT_MARK_FREED]) {
        sb_printf(b, "    legend_freed [shape=box, style=filled, fillcolor=\"%s\", color=\"%s\", "
                     "label=\"freed after forward\"];\n", DBR_DOT_FWD_COLOR, DBR_DOT_FREED_COLOR);
        keys[n++] = "freed";
    }
    if (kind[DBR_V_PARAM]) {
        sb_printf(b, "    legend_param [shape=ellipse, style=filled, fillcolor=\"%s\", "
                     "label=\"parameter\"];\n", DBR_DOT_PARAM_COLOR);
        keys[n++] = "param";
    }
    if (kind[DBR_V_BUFFER]) {
        sb_printf(b, "    legend_buffer [shape=ellipse, style=filled, fillcolor=\"%s\", "
                     "label=\"buffer\"];\n", DBR_DOT_BUFFER_COLOR);
        keys[n++] = "buffer";
    }
    if (kind[DBR_V_INPUT]) {
        sb_printf(b, "    legend_input [shape=ellipse, style=filled, fillcolor=\"%s\", "
                     "label=\"input\"];\n", DBR_DOT_INPUT_COLOR);
        keys[n++] = "input";
    }
    if (kind[DBR_V_CONST]) {
        sb_printf(b, "    legend_const [shape=plaintext, fontsize=8, label=\"constant\"];\n");
        keys[n++] = "const";
    }
    sb_printf(b, "    ");
    for (int k = 0; k < n; k++) sb_printf(b, k ? " -> legend_%s" : "legend_%s", keys[k]);
    sb_printf(b, " [style=invis];\n  }\n");
}

static void build_text(sbuf *b, const dbr_graph *g, const dbr_dot_opts *o, const sel *s) {
    sb_printf(b, "digraph dbr {\n"
                 "  graph [rankdir=TB, fontname=\"Helvetica\", nodesep=0.25, ranksep=0.35");
    if (o->title) {
        sb_printf(b, ", labelloc=t, fontsize=14, label=\"");
        sb_escaped(b, o->title);
        sb_printf(b, "\"");
    }
    sb_printf(b, "];\n"
                 "  node [fontname=\"Helvetica\", fontsize=10];\n"
                 "  edge [arrowsize=0.6];\n");
    emit_legend(b, g, o, s);
    for (int32_t v = 0; v < g->n_vals; v++)
        if (s->leaf[v]) emit_leaf(b, g, v);
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (clustered(g, o, s, i))
            emit_cluster(b, g, i);
        else if (s->node[i] != HIDE)
            emit_node(b, g, o, i, s->node[i] == FADE);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        if (s->node[i] == HIDE) continue;
        if (clustered(g, o, s, i)) {
            emit_cluster_inputs(b, g, s, i);
            continue;
        }
        const dbr_inode *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            int32_t v = n->in[k];
            bool dup = false;
            for (int j = 0; j < k; j++) dup |= n->in[j] == v;
            if (dup) continue; /* mul(x, x): one arrow */
            int32_t p = g->vals[v].producer;
            bool from = is_leaf(&g->vals[v]) ? s->leaf[v] : s->node[p] != HIDE;
            if (!from) continue;
            bool faded = s->node[i] == FADE || (!is_leaf(&g->vals[v]) && s->node[p] == FADE);
            sb_printf(b, "  v%d -> v%d%s;\n", (int)v, (int)n->out,
                      faded ? " [color=\"" FADED_LINE "\"]" : "");
        }
    }
    sb_printf(b, "}\n");
}

/* ---- output -------------------------------------------------------------- */

typedef enum { FMT_DOT, FMT_SVG, FMT_PNG } fmt;

/* A fresh file next to path, created exclusively; its name goes to tmp. */
static FILE *open_temp(const char *path, char *tmp, size_t tmplen, char *err, size_t errlen) {
    for (int attempt = 0; attempt < 100; attempt++) {
        int n = snprintf(tmp, tmplen, "%s.tmp.%ld.%d", path, (long)getpid(), attempt);
        if (n < 0 || (size_t)n >= tmplen) {
            fail(err, errlen, "path too long: '%s'", path);
            return NULL;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) {
            fail(err, errlen, "cannot write '%s': %s", path, strerror(errno));
            return NULL;
        }
        FILE *f = fdopen(fd, "wb");
        if (!f) {
            fail(err, errlen, "cannot write '%s': %s", path, strerror(errno));
            close(fd);
            unlink(tmp);
        }
        return f;
    }
    fail(err, errlen, "cannot write '%s': too many stale temporary files beside it", path);
    return NULL;
}

#ifdef DBR_HAVE_GRAPHVIZ
/* Graphviz reports through a process-wide hook; keep the first message. */
static _Thread_local char gv_msg[256];

static int gv_error(char *msg) {
    if (!gv_msg[0]) {
        snprintf(gv_msg, sizeof gv_msg, "%s", msg);
        size_t n = strlen(gv_msg);
        while (n && (gv_msg[n - 1] == '\n' || gv_msg[n - 1] == ' ')) gv_msg[--n] = '\0';
    }
    return 0;
}

/* One context for the process, never freed: Graphviz 2.43's pango plugin
 * keeps a pointer to the last font name, which the context owns, so a
 * second context would compare against freed memory. */
static GVC_t *gv_ctx;
static void gv_init(void) { gv_ctx = gvContext(); }

static int render(const char *text, fmt f, FILE *out, char *err, size_t errlen) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    const char *name = f == FMT_SVG ? "svg" : "png";
    gv_msg[0] = '\0';
    agusererrf old_hook = agseterrf(gv_error);
    agerrlevel_t old_level = agseterr(AGERR); /* warnings are not failures */
    int rc = -1;
    pthread_once(&once, gv_init);
    GVC_t *gvc = gv_ctx;
    Agraph_t *gr = gvc ? agmemread(text) : NULL;
    if (!gvc)
        fail(err, errlen, "Graphviz: cannot create a context");
    else if (!gr)
        fail(err, errlen, "Graphviz cannot read the graph: %s", gv_msg[0] ? gv_msg : "parse error");
    else if (gvLayout(gvc, gr, "dot"))
        fail(err, errlen, "Graphviz layout failed: %s", gv_msg[0] ? gv_msg : "unknown error");
    else {
        if (gvRender(gvc, gr, name, out))
            fail(err, errlen, "Graphviz cannot render %s: %s", name,
                 gv_msg[0] ? gv_msg : "no renderer for this format");
        else
            rc = 0;
        gvFreeLayout(gvc, gr);
    }
    if (gr) agclose(gr);
    agseterr(old_level);
    agseterrf(old_hook);
    return rc;
}
#endif

static int write_file(const char *text, size_t len, fmt f, const char *path, char *err,
                      size_t errlen) {
    size_t tmplen = strlen(path) + 64;
    char *tmp = malloc(tmplen);
    if (!tmp) return fail(err, errlen, "out of memory");
    FILE *out = open_temp(path, tmp, tmplen, err, errlen);
    if (!out) {
        free(tmp);
        return -1;
    }
    int rc = 0;
    if (f == FMT_DOT) {
        if (fwrite(text, 1, len, out) != len)
            rc = fail(err, errlen, "error writing '%s': %s", tmp, strerror(errno));
    } else {
#ifdef DBR_HAVE_GRAPHVIZ
        rc = render(text, f, out, err, errlen);
#else
        (void)text;
        rc = -1;
#endif
    }
    if (!rc && fflush(out))
        rc = fail(err, errlen, "error writing '%s': %s", tmp, strerror(errno));
    if (fclose(out) && !rc) rc = fail(err, errlen, "error writing '%s': %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path))
        rc = fail(err, errlen, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}

static int format_of(const char *path, fmt *f, char *err, size_t errlen) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash + 1 : path, '.');
    if (dot && !strcasecmp(dot, ".dot"))
        *f = FMT_DOT;
    else if (dot && !strcasecmp(dot, ".svg"))
        *f = FMT_SVG;
    else if (dot && !strcasecmp(dot, ".png"))
        *f = FMT_PNG;
    else
        return fail(err, errlen, "cannot tell the format of '%s': use a .dot, .svg or .png name",
                    path);
#ifndef DBR_HAVE_GRAPHVIZ
    if (*f != FMT_DOT)
        return fail(err, errlen,
                    "cannot write '%s': dbr was built without Graphviz (libgvc); write a .dot "
                    "file and render it with `dot -T%s`",
                    path, *f == FMT_SVG ? "svg" : "png");
#endif
    return 0;
}

int dbr_dot_write(const dbr_graph *g, const dbr_dot_opts *o, const char *path, char *err,
                  size_t errlen) {
    static const dbr_dot_opts defaults = {false, NULL, NULL, NULL, false};
    if (!o) o = &defaults;
    if (!g) return fail(err, errlen, "no graph to draw");
    if (!path || !*path) return fail(err, errlen, "no output path given");
    fmt f = FMT_DOT;
    if (format_of(path, &f, err, errlen) || check_graph(g, err, errlen)) return -1;

    sel s = {NULL, NULL};
    sbuf b = {NULL, 0, 0, false};
    int rc = select_parts(g, o, &s, err, errlen);
    if (!rc) {
        build_text(&b, g, o, &s);
        if (b.oom)
            rc = fail(err, errlen, "out of memory drawing a graph of %d nodes", (int)g->n_nodes);
        else
            rc = write_file(b.p, b.len, f, path, err, errlen);
    }
    free(b.p);
    free(s.node);
    free(s.leaf);
    return rc;
}

int dbr_dot_fuse(const dbr_graph *g, dbr_graph **out, int32_t *kernels, char *err,
                 size_t errlen) {
    *out = NULL;
    if (!g) return fail(err, errlen, "no graph to fuse");
    dbr_graph *c = dbr_graph_clone(g), *simple = NULL;
    dbr_fuse_stats st = {0};
    int32_t *remap = c ? malloc(((size_t)c->n_vals + 1) * sizeof *remap) : NULL;
    bool *read = c ? calloc((size_t)c->n_vals + 1, sizeof *read) : NULL;
    if (!remap || !read) {
        free(read);
        free(remap);
        dbr_graph_free(c);
        return fail(err, errlen, "out of memory");
    }
    /* what the step hands out, as the recording would mark it when planned:
     * values nothing reads (the loss, batch statistics, gradients) and the
     * optimizer's updates */
    for (int32_t i = 0; i < c->n_nodes; i++)
        for (int k = 0; k < c->nodes[i].n_in; k++) read[c->nodes[i].in[k]] = true;
    for (int32_t v = 0; v < c->n_vals; v++) {
        dbr_value *x = &c->vals[v];
        if (x->kind == DBR_V_INTER &&
            (!read[v] || (x->producer >= 0 && c->nodes[x->producer].phase == DBR_PH_OPT)))
            x->is_output = true;
    }
    free(read);
    int rc = dbr_simplify(c, &simple, remap, NULL, err, errlen);
    if (!rc) {
        free(remap);
        remap = malloc(((size_t)simple->n_vals + 1) * sizeof *remap);
        rc = remap ? dbr_fuse(simple, out, remap, &st, err, errlen)
                   : fail(err, errlen, "out of memory");
    }
    if (!rc && kernels) *kernels = st.groups;
    free(remap);
    dbr_graph_free(simple);
    dbr_graph_free(c);
    return rc;
}
