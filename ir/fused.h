/* fused.h: the body of a FUSED node (what passes/fuse.c groups): a small
 * expression over the group's inputs, with an optional trailing reduction.
 * Bodies are interned for the life of the process: a FUSED node names its
 * body by id (attribute i0), so graphs copy, hash and print FUSED nodes like
 * any other, and shape inference finds the output type through the id.
 * Plain data, libc and a mutex, like the rest of ir/. */
#ifndef DBR_IR_FUSED_H
#define DBR_IR_FUSED_H

#include "ir/ir.h"

#define DBR_FUSE_MAX_IN 8
#define DBR_FUSE_MAX_INS 64
#define DBR_FUSE_MAX_SRC 32

/* One instruction: the same three kinds as codegen's kernel description. */
typedef enum dbr_fins_kind { DBR_FI_LOAD, DBR_FI_CONST, DBR_FI_OP } dbr_fins_kind;

typedef struct dbr_fins {
    int32_t kind;    /* dbr_fins_kind */
    int32_t op;      /* DBR_FI_OP: an element-wise dbr_op */
    int32_t a, b, c; /* LOAD: input index; OP: earlier instructions; unused = -1 */
    double p;        /* CONST: the value; OP: the op's f0 */
} dbr_fins;

/* Where a fused op came from, for the profiler and `dbr dot`. */
typedef struct dbr_fsrc {
    int32_t op;
    const char *api, *file; /* static strings, as in dbr_inode */
    int32_t line;
} dbr_fsrc;

typedef struct dbr_fbody {
    int32_t n_in;
    dbr_tinfo in[DBR_FUSE_MAX_IN];     /* the inputs' types (broadcast to space) */
    int32_t n_ins;
    dbr_fins ins[DBR_FUSE_MAX_INS];    /* topological; the last is the value */
    dbr_tinfo space;                   /* the shape the value is computed over */
    int32_t red;                       /* 0, or DBR_OP_SUM / MEAN / MAX folding trailing axes */
    uint32_t red_axes;                 /* the reduced axes of space (a suffix), when red */
    int32_t keepdims;
    dbr_tinfo out;                     /* space, or space reduced */
    int32_t n_src;                     /* sources, in graph order (the first DBR_FUSE_MAX_SRC) */
    dbr_fsrc src[DBR_FUSE_MAX_SRC];
    int32_t n_ops;                     /* ops fused (n_src may be capped) */
    char name[64];                     /* "f_add_gelu_64x3072" */
} dbr_fbody;

/* The element-wise ops a body (and so a generated kernel) may hold, by
 * operand count: 1 (NEG EXP LOG SQRT RSQRT POW ABS SIGN TANH SIGMOID RELU
 * LEAKY_RELU GELU SILU), 2 (ADD SUB MUL DIV and RELU_BWD LEAKY_RELU_BWD
 * GELU_BWD SILU_BWD, each (x or y, gy)) or 3 (WHERE); 0 for any other op. */
int dbr_fuse_arity(dbr_op op);
static inline bool dbr_fuse_op_ok(dbr_op op) { return dbr_fuse_arity(op) > 0; }

/* Interns a copy of b (name filled in if empty); returns its id (>= 1), or
 * -1 when out of memory. Equal bodies (sources included) share an id. */
int64_t dbr_fbody_intern(const dbr_fbody *b);
/* The body with this id, or NULL. The pointer stays valid until exit. */
const dbr_fbody *dbr_fbody_get(int64_t id);
/* Structural hash of what the body computes (not its sources or name). */
uint64_t dbr_fbody_hash(const dbr_fbody *b);

#endif
