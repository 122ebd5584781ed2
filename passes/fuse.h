/* fuse.h: the fusion pass. Groups element-wise work into FUSED nodes whose
 * bodies (ir/fused.h) codegen turns into one kernel each. Graph in, graph out. */
#ifndef DBR_PASSES_FUSE_H
#define DBR_PASSES_FUSE_H

#include "ir/graph.h"

#include <stddef.h>
#include <stdint.h>

typedef struct dbr_fuse_stats {
    int32_t groups;   /* FUSED nodes made */
    int32_t fused;    /* nodes folded into them */
    int32_t kernels;  /* nodes of the result that run as kernels (not counting leaves) */
} dbr_fuse_stats;

/* Builds in *out a copy of g (which must verify) where each group of
 * element-wise nodes is one FUSED node. A group is a root (an element-wise
 * op, or SUM/MEAN/MAX over a non-empty suffix of its input's axes) plus the
 * element-wise producers that feed only the group, have the type the root
 * computes over (its output, or a reduction's input), and share its phase;
 * so no group makes a cycle, no work is done twice, and every value read
 * outside a group, or after the step, still exists. A lone element-wise
 * op is a group too (its kernel is vectorized for the host and split across
 * threads); a lone reduction is left to the library. At most DBR_FUSE_MAX_IN inputs (CONST scalars become
 * constants in the body) and DBR_FUSE_MAX_INS instructions per group.
 * remap (g->n_vals entries) gets each value's id in *out, or -1 for values
 * now inside a group. 0, or -1 with a message (out of memory). */
int dbr_fuse(const dbr_graph *g, dbr_graph **out, int32_t *remap, dbr_fuse_stats *st, char *err,
             size_t errlen);

/* Fusion is on unless DBR_NO_FUSE is set to something other than "" or "0",
 * or no back end can build the kernels. */
bool dbr_fuse_enabled_by_env(void);

#endif
