/* ir.h: op table, node descriptions, shape inference and gradient rules.
 * Everything here is plain data and libc; the frontend (eager) and the graph
 * compiler (compiled mode) build the same dbr_node and use the same rules. */
#ifndef DBR_IR_H
#define DBR_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DBR_IR_MAX_DIMS 8
#define DBR_MAX_SRC 8

/* dtype codes match dbr_dtype in include/dbr.h */
enum { DT_F32, DT_F64, DT_I32, DT_I64, DT_F16, DT_BF16, DT_COUNT };

typedef enum dbr_op {
#define X(NAME, str, min_in, max_in, cat, retain) DBR_OP_##NAME,
#include "ops.def"
#undef X
    DBR_OP_COUNT
} dbr_op;

typedef enum dbr_opcat {
    DBR_CAT_EW, DBR_CAT_RED, DBR_CAT_MM, DBR_CAT_CONV, DBR_CAT_POOL, DBR_CAT_NORM,
    DBR_CAT_SOFTMAX, DBR_CAT_LOSS, DBR_CAT_GATHER, DBR_CAT_MOVE, DBR_CAT_RAND,
    DBR_CAT_GRAD, DBR_CAT_OPTIM, DBR_CAT_FUSED
} dbr_opcat;

#define R_IN(i) (1u << (i))
#define R_OUT (1u << 15)

typedef struct dbr_opinfo {
    const char *name;
    int min_in, max_in;
    dbr_opcat cat;
    unsigned retain;
} dbr_opinfo;

extern const dbr_opinfo dbr_ops[DBR_OP_COUNT];

/* Gradient helpers, optimizer updates and fused groups have no gradient rule. */
static inline bool dbr_op_differentiable(dbr_op op) {
    return dbr_ops[op].cat != DBR_CAT_GRAD && dbr_ops[op].cat != DBR_CAT_OPTIM &&
           dbr_ops[op].cat != DBR_CAT_FUSED;
}

/* Type of a value: dtype and shape. */
typedef struct dbr_tinfo {
    int32_t dtype;
    int32_t ndim;
    int64_t shape[DBR_IR_MAX_DIMS];
} dbr_tinfo;

typedef struct dbr_attrs {
    int64_t i[16];
    double f[4];
} dbr_attrs;

/* One op application, built once by the frontend and then either run
 * (eager) or recorded (compiled, meta). */
typedef struct dbr_node {
    dbr_op op;
    int n_in;
    dbr_tinfo in[DBR_MAX_SRC];
    dbr_tinfo out;       /* filled by dbr_infer */
    dbr_attrs a;
    const char *api;     /* user-facing entry point, e.g. "dbr_linear" */
    const char *file;    /* caller's location */
    int line;
} dbr_node;

int64_t dbr_tinfo_numel(const dbr_tinfo *t);
/* Same dtype and shape. */
bool dbr_tinfo_same(const dbr_tinfo *a, const dbr_tinfo *b);

/* One step of the structural hashes outside the graph's (fused bodies,
 * kernel descriptions, kernel cache keys): folds v into h. */
static inline uint64_t dbr_hash_mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}
size_t dbr_dt_size(int32_t dtype);
const char *dbr_dt_name(int32_t dtype);
bool dbr_dt_is_float(int32_t dtype);
bool dbr_dt_is_int(int32_t dtype);
/* "[64,784]" into buf; returns buf. */
char *dbr_shape_str(const dbr_tinfo *t, char *buf, size_t n);

/* Shape and dtype inference: checks the inputs and attributes of n and
 * fills n->out. On a user error returns -1 and writes a message without
 * location or op name, e.g. "shapes [64,784] and [512,10] do not match
 * (inner dims 784 vs 512)". Attributes must already be normalized (axes
 * non-negative) by the caller, except where noted in ops.def. */
int dbr_infer(dbr_node *n, char *err, size_t errlen);

/* ---- gradient rules, written once against an abstract graph builder -----
 * Eager mode's builder runs each emitted op at once; compiled mode's builder
 * appends IR nodes. Values are opaque to the rules; b->info gives types. */
typedef struct dbr_val dbr_val;
typedef struct dbr_bld dbr_bld;
struct dbr_bld {
    /* Emit op over inputs with attributes; returns NULL on failure (the
     * builder records why). */
    dbr_val *(*emit)(dbr_bld *b, dbr_op op, int n_in, dbr_val *const in[], const dbr_attrs *a);
    /* A constant of the given dtype, shape [] (broadcasts). */
    dbr_val *(*scalar)(dbr_bld *b, double v, int32_t dtype);
    const dbr_tinfo *(*info)(dbr_bld *b, dbr_val *v);
    void *user;
};

typedef struct dbr_gnode {
    dbr_op op;
    int n_in;
    dbr_val *in[DBR_MAX_SRC];  /* NULL where the input was not retained */
    dbr_val *out;              /* NULL unless R_OUT */
    const dbr_tinfo *in_t;     /* the inputs' types (always available) */
    const dbr_tinfo *out_t;
    const dbr_attrs *a;
} dbr_gnode;

/* Given gy (same type as the node's output), set gx[i] for each i with
 * needs[i] to the gradient of the loss w.r.t. input i (same type as that
 * input), or leave NULL if the input is not differentiable. Returns 0, or
 * -1 if an emit failed or the op has no gradient (GRAD ops). */
int dbr_grad(dbr_bld *b, const dbr_gnode *n, dbr_val *gy, const bool needs[], dbr_val *gx[]);

/* Writes a message into err (when err and errlen allow) and returns -1:
 * the one way ir/ and passes/ report a failure. */
int dbr_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "1.50 MiB": bytes in binary units with two decimals, for messages. */
void dbr_human_bytes(int64_t b, char *buf, size_t n);

/* Helpers shared by rules and the frontend. */
/* Sum g (of a broadcast result) down to `to`'s shape; returns g if equal. */
dbr_val *dbr_bld_sum_to(dbr_bld *b, dbr_val *g, const dbr_tinfo *to);

#endif
