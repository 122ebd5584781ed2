/* grad.c: dbr_grad, the gradient rule of every differentiable op, written
 * once against the abstract builder (eager mode runs each emitted op, the
 * compiled mode's autodiff appends IR nodes), and dbr_bld_sum_to. */
#include <string.h>

#include "ir.h"

/* ---- emit helpers: a NULL input gives NULL without emitting, so a rule can
 * nest them and check once ------------------------------------------------ */

static const dbr_attrs no_attrs;

static dbr_val *emit(dbr_bld *b, dbr_op op, int n_in, dbr_val *const in[], const dbr_attrs *a)
{
    for (int i = 0; i < n_in; i++)
        if (!in[i])
            return NULL;
    return b->emit(b, op, n_in, in, a ? a : &no_attrs);
}

static dbr_val *op1(dbr_bld *b, dbr_op op, dbr_val *x, const dbr_attrs *a)
{
    return emit(b, op, 1, (dbr_val *const[]){x}, a);
}

static dbr_val *op2(dbr_bld *b, dbr_op op, dbr_val *x, dbr_val *y, const dbr_attrs *a)
{
    return emit(b, op, 2, (dbr_val *const[]){x, y}, a);
}

static dbr_val *op3(dbr_bld *b, dbr_op op, dbr_val *x, dbr_val *y, dbr_val *z, const dbr_attrs *a)
{
    return emit(b, op, 3, (dbr_val *const[]){x, y, z}, a);
}

static dbr_val *sub(dbr_bld *b, dbr_val *x, dbr_val *y) { return op2(b, DBR_OP_SUB, x, y, NULL); }
static dbr_val *mul(dbr_bld *b, dbr_val *x, dbr_val *y) { return op2(b, DBR_OP_MUL, x, y, NULL); }
static dbr_val *dvd(dbr_bld *b, dbr_val *x, dbr_val *y) { return op2(b, DBR_OP_DIV, x, y, NULL); }
static dbr_val *neg(dbr_bld *b, dbr_val *x) { return op1(b, DBR_OP_NEG, x, NULL); }

/* A [] constant of x's dtype. */
static dbr_val *cst(dbr_bld *b, dbr_val *x, double v)
{
    return x ? b->scalar(b, v, b->info(b, x)->dtype) : NULL;
}

static dbr_val *scale(dbr_bld *b, dbr_val *x, double s) { return s == 1 ? x : mul(b, x, cst(b, x, s)); }

static dbr_val *reduce(dbr_bld *b, dbr_op op, dbr_val *x, int64_t mask, bool keep)
{
    dbr_attrs a = {.i = {mask, keep}};
    return op1(b, op, x, &a);
}

static bool same_shape(const dbr_tinfo *a, const dbr_tinfo *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]) == 0;
}

/* RESHAPE or BROADCAST_TO x to `to`'s shape; x itself if already there. */
static dbr_val *to_shape(dbr_bld *b, dbr_op op, dbr_val *x, const dbr_tinfo *to)
{
    dbr_attrs a = {.i = {to->ndim}};
    if (!x || same_shape(b->info(b, x), to))
        return x;
    for (int d = 0; d < to->ndim; d++)
        a.i[1 + d] = to->shape[d];
    return op1(b, op, x, &a);
}

static dbr_val *reshape(dbr_bld *b, dbr_val *x, const dbr_tinfo *to) { return to_shape(b, DBR_OP_RESHAPE, x, to); }
static dbr_val *bcast(dbr_bld *b, dbr_val *x, const dbr_tinfo *to) { return to_shape(b, DBR_OP_BROADCAST_TO, x, to); }

dbr_val *dbr_bld_sum_to(dbr_bld *b, dbr_val *g, const dbr_tinfo *to)
{
    if (!g)
        return NULL;
    const dbr_tinfo *gt = b->info(b, g);
    int lead = gt->ndim - to->ndim;
    int64_t mask = 0;
    for (int d = 0; d < gt->ndim; d++)
        if (d < lead || (to->shape[d - lead] == 1 && gt->shape[d] != 1))
            mask |= (int64_t)1 << d;
    /* The sum drops the reduced dims; the reshape puts back `to`'s ones. */
    return reshape(b, mask ? reduce(b, DBR_OP_SUM, g, mask, false) : g, to);
}

static dbr_val *sum_to(dbr_bld *b, dbr_val *g, const dbr_tinfo *to) { return dbr_bld_sum_to(b, g, to); }

/* ---- rules that take more than a line ---------------------------------- */

/* SUM and MEAN: spread gy back over the reduced axes of x. */
static dbr_val *grad_reduce(dbr_bld *b, const dbr_gnode *n, dbr_val *gy)
{
    const dbr_tinfo *x = &n->in_t[0];
    int64_t mask = n->a->i[0];
    double count = 1;
    dbr_tinfo kept = *x;
    for (int d = 0; d < x->ndim; d++)
        if (mask >> d & 1) {
            kept.shape[d] = 1;
            count *= (double)x->shape[d];
        }
    dbr_val *g = bcast(b, reshape(b, gy, &kept), x);
    return n->op == DBR_OP_MEAN ? scale(b, g, 1 / count) : g;
}

/* C = op(A) op(B), op transposing the last two dims when asked.
 * d op(A) = gy op(B)^T and d op(B) = op(A)^T gy; transpose back where the
 * operand itself was transposed, then sum over broadcast batch dims. */
static dbr_val *grad_matmul(dbr_bld *b, const dbr_gnode *n, dbr_val *gy, int which)
{
    dbr_val *A = n->in[0], *B = n->in[1];
    bool ta = n->a->i[0] != 0, tb = n->a->i[1] != 0;
    dbr_attrs at = {0};
    dbr_val *g;
    if (which == 0) {
        at.i[0] = ta ? tb : 0;
        at.i[1] = ta ? 1 : !tb;
        g = ta ? op2(b, DBR_OP_MATMUL, B, gy, &at)    /* op(B) gy^T */
               : op2(b, DBR_OP_MATMUL, gy, B, &at);   /* gy op(B)^T */
    } else {
        at.i[0] = tb ? 1 : !ta;
        at.i[1] = tb ? ta : 0;
        g = tb ? op2(b, DBR_OP_MATMUL, gy, A, &at)    /* gy^T op(A) */
               : op2(b, DBR_OP_MATMUL, A, gy, &at);   /* op(A)^T gy */
    }
    return sum_to(b, g, &n->in_t[which]);
}

/* CONV2D_BWD_DATA(gy, w) and CONV2D_BWD_WEIGHT(x, gy): the conv's attributes
 * plus, in i8..i11, the shape of the result. */
static dbr_val *grad_conv(dbr_bld *b, const dbr_gnode *n, dbr_val *gy, int which)
{
    dbr_attrs a = *n->a;
    for (int d = 0; d < 4; d++)
        a.i[8 + d] = n->in_t[which].shape[d];
    return which == 0 ? op2(b, DBR_OP_CONV2D_BWD_DATA, gy, n->in[1], &a)
                      : op2(b, DBR_OP_CONV2D_BWD_WEIGHT, n->in[0], gy, &a);
}

static dbr_val *grad_avg_pool(dbr_bld *b, const dbr_gnode *n, dbr_val *gy)
{
    dbr_attrs a = *n->a;
    for (int d = 0; d < 4; d++)
        a.i[8 + d] = n->in_t[0].shape[d];
    return op1(b, DBR_OP_AVG_POOL2D_BWD, gy, &a);
}

/* BATCH_NORM and LAYER_NORM (x[, gamma[, beta]]): `stat_mask` is the set of
 * axes the statistics run over, so gamma and beta sum gy over it. */
static dbr_val *grad_norm(dbr_bld *b, const dbr_gnode *n, dbr_val *gy, int which, dbr_op bwd,
                          int64_t stat_mask)
{
    dbr_attrs eps = {.f = {n->a->f[0]}};
    switch (which) {
    case 0:
        return n->n_in >= 2 ? op3(b, bwd, n->in[0], gy, n->in[1], &eps)
                            : op2(b, bwd, n->in[0], gy, &eps);
    case 1: /* gamma: gy * xhat, xhat the plain normalization of x */
        return reduce(b, DBR_OP_SUM, mul(b, gy, op1(b, n->op, n->in[0], &eps)), stat_mask, false);
    default: /* beta */
        return reduce(b, DBR_OP_SUM, gy, stat_mask, false);
    }
}

/* y (gy - sum(gy y)) over the axis */
static dbr_val *grad_softmax(dbr_bld *b, const dbr_gnode *n, dbr_val *gy)
{
    dbr_val *y = n->out;
    int64_t axis = (int64_t)1 << n->a->i[0];
    return mul(b, y, sub(b, gy, reduce(b, DBR_OP_SUM, mul(b, gy, y), axis, true)));
}

/* gy - exp(y) sum(gy) over the axis */
static dbr_val *grad_log_softmax(dbr_bld *b, const dbr_gnode *n, dbr_val *gy)
{
    int64_t axis = (int64_t)1 << n->a->i[0];
    return sub(b, gy, mul(b, op1(b, DBR_OP_EXP, n->out, NULL),
                          reduce(b, DBR_OP_SUM, gy, axis, true)));
}

static dbr_val *grad_pow(dbr_bld *b, const dbr_gnode *n, dbr_val *gy)
{
    double p = n->a->f[0];
    dbr_attrs pm1 = {.f = {p - 1}};
    if (p == 0)
        return scale(b, gy, 0);
    if (p == 1)
        return gy;
    dbr_val *t = p == 2 ? n->in[0] : op1(b, DBR_OP_POW, n->in[0], &pm1);
    return mul(b, scale(b, gy, p), t);
}

static dbr_val *grad_permute(dbr_bld *b, const dbr_gnode *n, dbr_val *gy)
{
    dbr_attrs inv = {.i = {n->a->i[0]}};
    for (int d = 0; d < n->a->i[0]; d++)
        inv.i[1 + n->a->i[1 + d]] = d;
    return op1(b, DBR_OP_PERMUTE, gy, &inv);
}

static dbr_val *grad_slice(dbr_bld *b, const dbr_gnode *n, dbr_val *gy)
{
    dbr_attrs a = *n->a;
    a.i[4] = n->in_t[0].shape[a.i[0]];
    return op1(b, DBR_OP_SLICE_BWD, gy, &a);
}

/* CONCAT: input i's gradient is its own stretch of gy along the axis. */
static dbr_val *grad_concat(dbr_bld *b, const dbr_gnode *n, dbr_val *gy, int which)
{
    int64_t axis = n->a->i[0], start = 0;
    for (int i = 0; i < which; i++)
        start += n->in_t[i].shape[axis];
    dbr_attrs a = {.i = {axis, start, start + n->in_t[which].shape[axis], 1}};
    return op1(b, DBR_OP_SLICE, gy, &a);
}

/* ---- the table ---------------------------------------------------------- */

/* Input i's gradient, computed only when needed; an emit that failed fails
 * the rule. */
#define SET(i, expr) do { if (needs[i] && !(gx[i] = (expr))) return -1; } while (0)

int dbr_grad(dbr_bld *b, const dbr_gnode *n, dbr_val *gy, const bool needs[], dbr_val *gx[])
{
    dbr_val *const *x = n->in, *y = n->out;
    const dbr_tinfo *t = n->in_t;
    const dbr_attrs *a = n->a;
    int nd = t[0].ndim;
    for (int i = 0; i < n->n_in; i++)
        gx[i] = NULL;
    if (!gy)
        return -1;

    switch (n->op) {
    case DBR_OP_ADD:
        SET(0, sum_to(b, gy, &t[0]));
        SET(1, sum_to(b, gy, &t[1]));
        break;
    case DBR_OP_SUB:
        SET(0, sum_to(b, gy, &t[0]));
        SET(1, sum_to(b, neg(b, gy), &t[1]));
        break;
    case DBR_OP_MUL:
        SET(0, sum_to(b, mul(b, gy, x[1]), &t[0]));
        SET(1, sum_to(b, mul(b, gy, x[0]), &t[1]));
        break;
    case DBR_OP_DIV: /* y = a / b */
        SET(0, sum_to(b, dvd(b, gy, x[1]), &t[0]));
        SET(1, sum_to(b, neg(b, dvd(b, mul(b, gy, y), x[1])), &t[1]));
        break;
    case DBR_OP_NEG:        SET(0, neg(b, gy)); break;
    case DBR_OP_EXP:        SET(0, mul(b, gy, y)); break;
    case DBR_OP_LOG:        SET(0, dvd(b, gy, x[0])); break;
    case DBR_OP_SQRT:       SET(0, dvd(b, scale(b, gy, 0.5), y)); break;
    case DBR_OP_RSQRT:      SET(0, mul(b, scale(b, gy, -0.5), mul(b, y, mul(b, y, y)))); break;
    case DBR_OP_POW:        SET(0, grad_pow(b, n, gy)); break;
    case DBR_OP_ABS:        SET(0, mul(b, gy, op1(b, DBR_OP_SIGN, x[0], NULL))); break;
    case DBR_OP_SIGN:       break; /* zero almost everywhere: no gradient */
    case DBR_OP_TANH:       SET(0, mul(b, gy, sub(b, cst(b, y, 1), mul(b, y, y)))); break;
    case DBR_OP_SIGMOID:    SET(0, mul(b, gy, mul(b, y, sub(b, cst(b, y, 1), y)))); break;
    case DBR_OP_RELU:       SET(0, op2(b, DBR_OP_RELU_BWD, y, gy, NULL)); break;
    case DBR_OP_LEAKY_RELU: SET(0, op2(b, DBR_OP_LEAKY_RELU_BWD, x[0], gy, a)); break;
    case DBR_OP_GELU:       SET(0, op2(b, DBR_OP_GELU_BWD, x[0], gy, NULL)); break;
    case DBR_OP_SILU:       SET(0, op2(b, DBR_OP_SILU_BWD, x[0], gy, NULL)); break;
    case DBR_OP_WHERE: /* the mask gets none */
        SET(1, sum_to(b, op3(b, DBR_OP_WHERE, x[0], gy, cst(b, gy, 0), NULL), &t[1]));
        SET(2, sum_to(b, op3(b, DBR_OP_WHERE, x[0], cst(b, gy, 0), gy, NULL), &t[2]));
        break;

    case DBR_OP_SUM: case DBR_OP_MEAN:
        SET(0, grad_reduce(b, n, gy));
        break;
    case DBR_OP_MAX:        SET(0, op3(b, DBR_OP_MAX_BWD, x[0], y, gy, a)); break;

    case DBR_OP_MATMUL:
        SET(0, grad_matmul(b, n, gy, 0));
        SET(1, grad_matmul(b, n, gy, 1));
        break;
    case DBR_OP_CONV2D:
        SET(0, grad_conv(b, n, gy, 0));
        SET(1, grad_conv(b, n, gy, 1));
        break;
    case DBR_OP_MAX_POOL2D: SET(0, op2(b, DBR_OP_MAX_POOL2D_BWD, x[0], gy, a)); break;
    case DBR_OP_AVG_POOL2D: SET(0, grad_avg_pool(b, n, gy)); break;

    case DBR_OP_BATCH_NORM: /* statistics over every axis but 1 */
        for (int i = 0; i < n->n_in; i++)
            SET(i, grad_norm(b, n, gy, i, DBR_OP_BATCH_NORM_BWD, (((int64_t)1 << nd) - 1) & ~(int64_t)2));
        break;
    case DBR_OP_LAYER_NORM: /* statistics over the last axis; gamma sums over the rest */
        for (int i = 0; i < n->n_in; i++)
            SET(i, grad_norm(b, n, gy, i, DBR_OP_LAYER_NORM_BWD, ((int64_t)1 << (nd - 1)) - 1));
        break;

    case DBR_OP_SOFTMAX:     SET(0, grad_softmax(b, n, gy)); break;
    case DBR_OP_LOG_SOFTMAX: SET(0, grad_log_softmax(b, n, gy)); break;
    case DBR_OP_CROSS_ENTROPY: /* labels get none */
        SET(0, op3(b, DBR_OP_CROSS_ENTROPY_BWD, x[0], x[1], gy, NULL));
        break;
    case DBR_OP_EMBEDDING: /* indices get none */
        SET(0, op2(b, DBR_OP_EMBEDDING_BWD, x[1], gy, &(dbr_attrs){.i = {t[0].shape[0]}}));
        break;

    case DBR_OP_RESHAPE:      SET(0, reshape(b, gy, &t[0])); break;
    case DBR_OP_PERMUTE:      SET(0, grad_permute(b, n, gy)); break;
    case DBR_OP_SLICE:        SET(0, grad_slice(b, n, gy)); break;
    case DBR_OP_CONCAT:
        for (int i = 0; i < n->n_in; i++)
            SET(i, grad_concat(b, n, gy, i));
        break;
    case DBR_OP_BROADCAST_TO: SET(0, sum_to(b, gy, &t[0])); break;
    case DBR_OP_DROPOUT:      SET(0, op1(b, DBR_OP_DROPOUT, gy, a)); break;

    /* the helpers that rules emit are not differentiated again */
    case DBR_OP_CONV2D_BWD_DATA: case DBR_OP_CONV2D_BWD_WEIGHT:
    case DBR_OP_MAX_POOL2D_BWD: case DBR_OP_AVG_POOL2D_BWD:
    case DBR_OP_BATCH_NORM_BWD: case DBR_OP_BN_STATS: case DBR_OP_LAYER_NORM_BWD:
    case DBR_OP_CROSS_ENTROPY_BWD: case DBR_OP_EMBEDDING_BWD: case DBR_OP_SLICE_BWD:
    case DBR_OP_RELU_BWD: case DBR_OP_LEAKY_RELU_BWD: case DBR_OP_GELU_BWD:
    case DBR_OP_SILU_BWD: case DBR_OP_MAX_BWD:
    case DBR_OP_SGD_UPDATE: case DBR_OP_MOMENTUM_UPDATE: case DBR_OP_ADAM_UPDATE:
    case DBR_OP_FUSED: case DBR_OP_COUNT:
        return -1;
    }
    return 0;
}
