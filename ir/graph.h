/* graph.h: the IR graph compiled mode records: values and nodes in arrays
 * indexed by integer ids, nodes in topological (recording) order. Plain
 * data and libc only, like the rest of ir/. */
#ifndef DBR_IR_GRAPH_H
#define DBR_IR_GRAPH_H

#include "ir/ir.h"

#include <stdio.h>

typedef enum dbr_vkind {
    DBR_V_PARAM,  /* persistent trainable tensor, bound at run time */
    DBR_V_BUFFER, /* persistent non-trainable tensor (running stats) */
    DBR_V_INPUT,  /* step input, bound at run time */
    DBR_V_CONST,  /* scalar constant, value in cval */
    DBR_V_INTER   /* produced by a node */
} dbr_vkind;

/* Which part of the step a node belongs to (for dumps and colours). */
typedef enum dbr_phase {
    DBR_PH_FWD,
    DBR_PH_BWD,
    DBR_PH_OPT,
    DBR_PH_RECOMP /* a forward node computed again during backward (passes/remat_apply.c) */
} dbr_phase;

typedef struct dbr_value {
    dbr_tinfo t;
    dbr_vkind kind;
    int32_t producer;  /* node id, -1 for leaves */
    int32_t slot;      /* PARAM/BUFFER: parameter index; INPUT: input ordinal; else -1 */
    double cval;       /* CONST: the value (every element) */
    bool is_output;    /* read after the step (loss, kept values, gradients) */
    const char *name;  /* borrowed: parameter name, or NULL */
} dbr_value;

typedef struct dbr_inode {
    dbr_op op;
    int32_t n_in;
    int32_t in[DBR_MAX_SRC];
    int32_t out;
    dbr_attrs a;
    dbr_phase phase;
    const char *api, *file; /* borrowed, static strings */
    int32_t line;
} dbr_inode;

typedef struct dbr_graph {
    dbr_value *vals;
    int32_t n_vals, cap_vals;
    dbr_inode *nodes;
    int32_t n_nodes, cap_nodes;
} dbr_graph;

dbr_graph *dbr_graph_new(void);
void dbr_graph_free(dbr_graph *g);
void dbr_graph_clear(dbr_graph *g); /* keep the arrays, drop the contents */
/* A deep copy (names and locations stay borrowed); NULL when out of memory. */
dbr_graph *dbr_graph_clone(const dbr_graph *g);

/* A leaf value (any kind but INTER); returns its id, or -1 when out of
 * memory or when kind is INTER or t->ndim is out of range. CONST leaves
 * get slot -1; other kinds get cval 0. */
int32_t dbr_graph_leaf(dbr_graph *g, dbr_vkind kind, const dbr_tinfo *t, int32_t slot,
                       double cval, const char *name);
/* Append a node over existing values: runs dbr_infer, adds the output
 * value and returns its id; -1 with a message in err on a shape error or
 * when out of memory. */
int32_t dbr_graph_node(dbr_graph *g, dbr_op op, int n_in, const int32_t in[], const dbr_attrs *a,
                       dbr_phase phase, const char *api, const char *file, int line, char *err,
                       size_t errlen);

/* Users of every value as one CSR array: users[first[v] .. first[v+1]) are
 * node ids in increasing order (a node appears once per input slot that
 * reads v); first has n_vals + 1 entries. Caller frees
 * both with free(). Returns 0 or -1 (out of memory). */
int dbr_graph_users(const dbr_graph *g, int32_t **first, int32_t **users);

/* Checks: ids in range, each INTER value produced by exactly one node and
 * each node's output INTER, inputs defined before use (topological order,
 * hence acyclic), arity within the op table's bounds, and every node's
 * output type equal to what dbr_infer says. 0 or -1 with the first problem
 * in err ("node 7 (add): input 12 is used before it is defined"). */
int dbr_graph_verify(const dbr_graph *g, char *err, size_t errlen);

/* Stable, diffable text: one line per leaf (in value id order), then one
 * per node (in node order), e.g.
 *   %3 = param #0 "fc1.w" f32[512,784]
 *   %4 = const 0.5 f32[]
 *   %9 = matmul(%2, %3) f32[64,512] ta=0 tb=1  # model.c:12 fwd
 *   %12 = cross_entropy(%10, %1) f32[] [out]  # model.c:14 fwd
 * #N is the slot (parameter index or input ordinal); only the attributes
 * the op reads are shown; [out] marks outputs; the comment holds the file
 * name (not its folder), line and phase. */
void dbr_graph_print(const dbr_graph *g, FILE *f);

/* Structural hash: ops, attributes (all of them, by bits), phases,
 * dtypes, shapes, edges, constant values, parameter identity (slot and
 * name), input ordinals and output flags; not data, not locations, not
 * value or node ids. Nodes whose relative order does not matter
 * (independent branches) may be recorded in any order with the same hash.
 * Never 0, except when out of memory. */
uint64_t dbr_graph_hash(const dbr_graph *g);

/* DBR_DUMP=dir: write the graph to dir/NN-<pass>.txt (NN counts dumps in
 * this process, from 01; characters of pass other than [A-Za-z0-9._-]
 * become '_'): a "# pass: V values, N nodes, hash 0x..." line, then
 * dbr_graph_print. Written aside and renamed into place. No-op (0) when
 * DBR_DUMP is unset or empty. Returns 0 or -1 (the directory is missing or
 * unwritable), never aborts. */
int dbr_graph_dump(const dbr_graph *g, const char *pass);

#endif
