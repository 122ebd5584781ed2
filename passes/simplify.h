/* simplify.h: the simplify pass over an IR graph: dead-code elimination,
 * common-subexpression elimination, exact constant folding and algebraic
 * identities that hold bit for bit in IEEE arithmetic. Graph in, graph out. */
#ifndef DBR_PASSES_SIMPLIFY_H
#define DBR_PASSES_SIMPLIFY_H

#include "ir/graph.h"

#include <stddef.h>
#include <stdint.h>

/* What each rule did. Every node of the input is accounted for once:
 * in->n_nodes == folded + identities + cse + dce + (*out)->n_nodes. */
typedef struct dbr_simplify_stats {
    int32_t dce;        /* nodes dropped because their output reaches no output */
    int32_t cse;        /* nodes merged into an earlier equal node */
    int32_t folded;     /* nodes replaced by a new CONST leaf */
    int32_t identities; /* nodes replaced by one of their inputs (x*1, neg(neg(x)), ...) */
    int32_t consts;     /* CONST leaves merged into an equal CONST leaf (not nodes) */
} dbr_simplify_stats;

/* Builds in *out a simplified copy of `in` (which must verify), in one
 * forward pass over the nodes, then a reverse reachability walk from the
 * outputs. Rules, all exact (the simplified graph computes every output
 * bitwise as the input graph does, NaN payloads aside):
 *   - CSE: nodes with the same op, the same attributes (by bits) and the
 *     same inputs in order are one node (DROPOUT too: equal attributes draw
 *     equal masks). CONST leaves of equal dtype, shape, value bits and name
 *     are one leaf.
 *   - folding: ADD, SUB, MUL, DIV, NEG over F32/F64 CONST leaves of shape []
 *     become a CONST leaf, computed in the node's dtype with C float or
 *     double arithmetic (what the kernels compute; no libm functions).
 *   - identities, where the kept operand has exactly the output's type:
 *     x*1, 1*x, x/1, x-(+0), x+(-0), (-0)+x, neg(neg(x)) with the constant a
 *     CONST of shape []; RESHAPE, BROADCAST_TO, SLICE that keep the type,
 *     PERMUTE by the identity, CONCAT of one input.
 *   - DCE: nodes whose output reaches no output (is_output) are dropped;
 *     leaves are kept only when read or outputs.
 * Node locations, api and phase are kept; leaves keep kind, slot, cval and
 * name. remap (in->n_vals entries) gets, for each input value, the value of
 * *out that stands for it, or -1 where it was dropped. Every output survives:
 * remap names a value with is_output set and the same type, which may be
 * another output or a leaf (x*1 -> x). st may be NULL. Deterministic, O(n)
 * expected. Returns 0, or -1 with a message in err and *out NULL. */
int dbr_simplify(const dbr_graph *in, dbr_graph **out, int32_t *remap, dbr_simplify_stats *st,
                 char *err, size_t errlen);

#endif
