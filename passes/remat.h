/* remat.h: the recomputation planner's view of a forward pass and its
 * results. Graphs come from the IR (compiled and meta modes) or from a JSON
 * file made elsewhere (passes/graph_json.c); the planners (none, chen, dp,
 * ilp) only see this. */
#ifndef DBR_PASSES_REMAT_H
#define DBR_PASSES_REMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DBR_RG_RETAIN_OUT (1u << 31) /* retain bit: backward reads the node's output */

/* A forward graph: compute nodes in topological order (every node input of
 * node i is a node j < i). Leaves (inputs and parameters) are not nodes:
 * they are held for the whole step; an entry of ins below 0 names leaf
 * -1-entry. Backward is one gradient node per compute node, in reverse
 * order, reading the node's output gradient and what it retains, and
 * producing a gradient for each input that is not a parameter (same bytes as
 * that input). */
typedef struct dbr_rgraph {
    int32_t n;
    char **id;         /* node names (owned), for reports */
    char **op;         /* op names (owned), free text */
    int64_t *bytes;    /* bytes of each node's output */
    double *time;      /* forward time of each node (cost model or measured) */
    int32_t *in_first; /* inputs of node i: ins[in_first[i] .. in_first[i+1]); n + 1 entries */
    int32_t *ins;      /* node ids, or -1-leaf for leaves */
    uint32_t *retain;  /* bit k: backward of i reads input k (k < 31); DBR_RG_RETAIN_OUT */
    int32_t n_leaves;
    char **leaf_id;    /* owned */
    int64_t *leaf_bytes;
    bool *leaf_is_param;
} dbr_rgraph;

void dbr_rgraph_free(dbr_rgraph *g);

#endif
