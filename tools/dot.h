/* dot.h: drawing an IR graph with Graphviz: DOT text, or SVG/PNG rendered
 * through libgvc when dbr was built with it (DBR_HAVE_GRAPHVIZ). */
#ifndef DBR_TOOLS_DOT_H
#define DBR_TOOLS_DOT_H

#include "ir/graph.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fill colours, one per phase and per kind of leaf (the legend shows the
 * ones a drawing uses). */
#define DBR_DOT_FWD_COLOR "#dae8fc"     /* light blue */
#define DBR_DOT_BWD_COLOR "#f8cecc"     /* light red */
#define DBR_DOT_OPT_COLOR "#d5e8d4"     /* light green */
#define DBR_DOT_RECOMP_COLOR "#ffe6cc"  /* light orange */
#define DBR_DOT_PARAM_COLOR "#fff2cc"   /* light yellow */
#define DBR_DOT_BUFFER_COLOR "#e1d5e7"  /* light purple */
#define DBR_DOT_INPUT_COLOR "#ffffff"
#define DBR_DOT_CONTEXT_COLOR "#f5f5f5" /* faded nodes around a layer */
#define DBR_DOT_FUSED_COLOR "#e0f2f1"   /* light teal: a fused kernel's cluster */

/* Borders of forward values marked by a recomputation plan. */
#define DBR_DOT_KEPT_COLOR "#2e7d32"       /* green, thick */
#define DBR_DOT_RECOMPUTED_COLOR "#e67e22" /* orange, dashed */
#define DBR_DOT_FREED_COLOR "#9e9e9e"      /* grey */

/* remat_mark values */
enum {
    DBR_DOT_MARK_NONE = 0,
    DBR_DOT_MARK_KEPT = 1,       /* held from forward to a backward read */
    DBR_DOT_MARK_RECOMPUTED = 2, /* recomputed during backward */
    DBR_DOT_MARK_FREED = 3       /* freed after its last forward use */
};

typedef struct dbr_dot_opts {
    bool forward_only;  /* drop BWD and OPT nodes, and leaves only they read */
    const char *layer;  /* parameter-name prefix filter, or NULL for all */
    const char *title;  /* caption, or NULL */
    /* Per value id (g->n_vals entries), or NULL: 0 none, 1 kept, 2 recomputed,
     * 3 freed after forward (DBR_DOT_MARK_*). Applies to the drawn, unfaded
     * nodes computing the value: kept ones get a thick green border and
     * "kept" in their label, recomputed ones a dashed orange border and
     * "recomputed", freed ones a grey border and "freed"; the legend lists
     * the marks used. */
    const uint8_t *remat_mark;
    /* Draw each shown FUSED node (passes/fuse.h) as a cluster named
     * cluster_<value id>, labelled with its kernel name and filled with
     * DBR_DOT_FUSED_COLOR, holding one small box per fused source op ("op\n
     * file:line", filled by phase) linked as the body's instructions read
     * each other; the group's inputs point at the boxes that load them and
     * the last box stands for the output. Otherwise (and when faded) a
     * FUSED node is one box labelled with its kernel name. */
    bool fused_clusters;
} dbr_dot_opts;

/* Draw g into path; the format is path's extension: .dot (the DOT text),
 * .svg or .png (laid out with Graphviz's dot). Nodes are boxes labelled
 * "op\nf32[64,512]\n128 KiB\nmodel.c:42", filled by phase; parameters and
 * buffers are ellipses with their name, inputs ellipses, constants small
 * plain text; values read after the step have a thick border. With layer,
 * only nodes reading a parameter or buffer whose name starts with it are
 * kept, plus their direct producers and consumers, faded.
 * The file is written next to path under a temporary name and renamed, so
 * path is either the whole drawing or untouched. o may be NULL (defaults).
 * Returns 0, or -1 with a message in err (unknown extension, unwritable
 * folder, no parameter matching layer, Graphviz failing or missing).
 * Not thread-safe while rendering: Graphviz's error hook is global. */
int dbr_dot_write(const dbr_graph *g, const dbr_dot_opts *o, const char *path, char *err,
                  size_t errlen);

/* g simplified (passes/simplify.h), then fused (passes/fuse.h) whatever
 * DBR_NO_FUSE says, into *out, with the values a step hands out marked as
 * outputs first (those no node reads, and the optimizer's updates), so
 * that dead-code elimination keeps the whole step (free *out with
 * dbr_graph_free); *kernels (may be NULL) gets the number of FUSED nodes. g must verify. 0, or -1 with a
 * message in err and *out NULL. */
int dbr_dot_fuse(const dbr_graph *g, dbr_graph **out, int32_t *kernels, char *err,
                 size_t errlen);

#endif
