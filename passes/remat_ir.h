/* remat_ir.h: from a recorded IR graph to the recomputation planner's
 * graph, with a roofline cost model for each op's time. */
#ifndef DBR_PASSES_REMAT_IR_H
#define DBR_PASSES_REMAT_IR_H

#include "ir/graph.h"
#include "passes/remat.h"

typedef struct dbr_cost_model {
    double flops_per_s; /* sustained, for GEMM-like work */
    double bytes_per_s; /* memory bandwidth */
    double launch_s;    /* fixed cost per op */
    const char *name;   /* where the figures come from */
    /* per op: compute time per output element (ns) of ops that libm or the
     * random generator bind, not bandwidth (tanh, gelu, exp, dropout, ...);
     * NULL or 0: none */
    const float *elem_ns;
} dbr_cost_model;

/* This project's CPU machines, as measured in ENVIRONMENT.md. */
dbr_cost_model dbr_cost_model_cpu(void);

/* Floating-point operations of node n (multiply-adds count 2). */
double dbr_node_flops(const dbr_graph *g, const dbr_inode *n);
/* max(flops / rate + elements * elem_ns, bytes moved / bandwidth) + launch
 * cost, in seconds. */
double dbr_node_time(const dbr_graph *g, const dbr_inode *n, const dbr_cost_model *cm);

/* The forward nodes (phase FWD) of g, in order, as a planner graph: output
 * bytes, cost-model time, retain masks from ops.def; parameters, buffers,
 * inputs and constants become leaves (parameters and buffers flagged as
 * such). 0, or -1 with a message. */
int dbr_rgraph_from_ir(const dbr_graph *g, const dbr_cost_model *cm, dbr_rgraph *out, char *err,
                       size_t errlen);

/* The IR value each planner node of dbr_rgraph_from_ir(g) computes: a
 * malloc'd array of the forward nodes' output value ids, in the planner's
 * node order (entry i: the output of planner node i), its length in *n.
 * NULL (and *n = 0) when g has no forward nodes or memory runs out. */
int32_t *dbr_rgraph_ir_values(const dbr_graph *g, int32_t *n);

#endif
