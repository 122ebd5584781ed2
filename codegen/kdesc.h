/* kdesc.h: the loop-level description of one fused kernel, the contract
 * between the fusion pass (which lowers a fused group to it, codegen/lower.c)
 * and the back ends that render it (LLVM on the CPU, CUDA C through NVRTC).
 *
 * A kernel walks an iteration space shape[0..ndim) in row-major order. Each
 * input is read at sum_d idx[d] * stride[d] (elements; stride 0 broadcasts
 * along d). The instructions form an expression tree (a DAG, in fact: an
 * instruction may be read by several later ones) evaluated once per point of
 * the space in the kernel's dtype; the last instruction is the value.
 *
 * Map kernels (nred == 0) store the value at every point: out is contiguous
 * over the whole space. Reduction kernels (nred > 0) fold the value over the
 * trailing nred dims with `red` (sum, mean, max) and store one element per
 * point of the leading ndim - nred dims, contiguously. Sums and means
 * accumulate in double for both dtypes (as kernels/cpu/reduce.c does), mean
 * divides the double sum by the folded count before rounding to the dtype,
 * max starts from -infinity and keeps a NaN once it meets one (as reduce.c,
 * NumPy and PyTorch do).
 *
 * Every operation computes exactly what the unfused CPU kernel computes for
 * the same op (kernels/cpu/ew.c: same formulas, same constants, same order of
 * operations in the kernel's dtype; exp and tanh in f32 as kernels/vmath.h
 * computes them, libm's functions otherwise), so fused and unfused CPU
 * results are the same bits. */
#ifndef DBR_CODEGEN_KDESC_H
#define DBR_CODEGEN_KDESC_H

#include "ir/fused.h"
#include "ir/ir.h"

#include <stdint.h>

#define DBR_KD_MAX_DIMS DBR_IR_MAX_DIMS
#define DBR_KD_MAX_IN 8
#define DBR_KD_MAX_INS 64

typedef enum dbr_kd_kind {
    DBR_KD_LOAD,  /* input a at the current point, converted to the kernel's dtype */
    DBR_KD_CONST, /* the value p */
    DBR_KD_OP     /* op over instructions a (, b (, c)) */
} dbr_kd_kind;

/* Ops a kernel may hold (DBR_KD_OP) and their operands: those a fused body
 * may hold, dbr_fuse_arity (ir/fused.h). WHERE's mask (operand a) may be
 * loaded in any dtype. */
typedef struct dbr_kd_ins {
    int32_t kind;    /* dbr_kd_kind */
    int32_t op;      /* DBR_KD_OP: a dbr_op listed above */
    int32_t a, b, c; /* LOAD: a = input index; OP: earlier instructions; unused = -1 */
    double p;        /* CONST: the value; OP: the op's f0 (exponent, slope), else 0 */
} dbr_kd_ins;

typedef struct dbr_kd_in {
    int32_t dtype;                     /* DT_F32, DT_F64, or (a WHERE mask only) DT_I32/DT_I64 */
    int64_t stride[DBR_KD_MAX_DIMS];   /* elements per step of each iteration dim; 0 broadcasts */
} dbr_kd_in;

typedef struct dbr_kdesc {
    int32_t dtype;                   /* DT_F32 or DT_F64: the computation and the output */
    int32_t ndim;                    /* 1 .. DBR_KD_MAX_DIMS */
    int64_t shape[DBR_KD_MAX_DIMS];  /* every dim >= 1 */
    int32_t nred;                    /* 0 (map) or the number of trailing dims folded (<= ndim) */
    int32_t red;                     /* nred > 0: DBR_OP_SUM, DBR_OP_MEAN or DBR_OP_MAX */
    int32_t n_in;                    /* 1 .. DBR_KD_MAX_IN */
    dbr_kd_in in[DBR_KD_MAX_IN];
    int32_t n_ins;                   /* 1 .. DBR_KD_MAX_INS; the last is the value */
    dbr_kd_ins ins[DBR_KD_MAX_INS];
    char name[64];                   /* e.g. "f_add_gelu_64x3072": the kernel's symbol */
} dbr_kdesc;

/* A CPU kernel: args[0 .. n_in) are the inputs' base pointers, args[n_in]
 * the output's. It computes output elements [begin, end) (flat indices into
 * the contiguous output), so a caller may split the output across threads.
 * The output may be the same buffer as an input that is read with the
 * output's own contiguous strides (in place); other overlaps are not allowed. */
typedef void (*dbr_kfn)(void *const *args, int64_t begin, int64_t end);

/* Number of output elements: the product of the leading ndim - nred dims. */
int64_t dbr_kdesc_out_numel(const dbr_kdesc *kd);
/* Elements folded into each output element (1 for maps). */
int64_t dbr_kdesc_red_numel(const dbr_kdesc *kd);

/* Structural hash of everything but the name (never 0). */
uint64_t dbr_kdesc_hash(const dbr_kdesc *kd);

/* Checks the invariants above: 0, or -1 with the first problem in err. */
int dbr_kdesc_check(const dbr_kdesc *kd, char *err, size_t errlen);

/* Reference evaluation, one point at a time in plain C (tests and the
 * fallback when no back end is built): same contract as a dbr_kfn. */
void dbr_kdesc_eval(const dbr_kdesc *kd, void *const *args, int64_t begin, int64_t end);

#endif
