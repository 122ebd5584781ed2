/* autodiff.h: the backward pass over an IR graph. */
#ifndef DBR_PASSES_AUTODIFF_H
#define DBR_PASSES_AUTODIFF_H

#include "ir/graph.h"

/* Append to g the backward nodes (phase BWD) of `loss` (one element). Leaf
 * values of kind PARAM with leaf_requires[v] are differentiated: grads[v]
 * gets the id of d(loss)/d(v), or -1 when v does not reach the loss; every
 * other entry of grads (n_vals of g before the call) is -1. Gradients of one
 * value accumulate in the order eager mode's tape does, so compiled and
 * eager results are bitwise equal. Returns 0, or -1 with a message. */
int dbr_autodiff(dbr_graph *g, int32_t loss, const bool *leaf_requires, int32_t *grads,
                 char *err, size_t errlen);

#endif
