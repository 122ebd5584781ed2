/* kernels.h: the CPU kernel library, plain functions of pointers and sizes.
 * Float kernels come as _f32 and _f64 twins built from one body; data
 * movement kernels work on any dtype by element size. Knows nothing of ir/. */
#ifndef DBR_KERNELS_CPU_H
#define DBR_KERNELS_CPU_H

#include <stddef.h>
#include <stdint.h>

#define DBR_K_MAX_DIMS 8
#define DBR_K_MAX_IN 4

/* ---- broadcast walk ------------------------------------------------------
 * Walks an output shape while inputs (right-aligned, NumPy broadcasting)
 * follow along. Size-1 dims are dropped and dims that stay contiguous in
 * every input are merged, so the innermost dim is as long as possible and
 * each input's stride on it is 0 (broadcast) or 1. */
typedef struct dbr_k_iter {
    int ndim;                                    /* >= 1 */
    int nin;
    int64_t numel;
    int64_t shape[DBR_K_MAX_DIMS];
    int64_t stride[DBR_K_MAX_IN][DBR_K_MAX_DIMS]; /* in elements */
} dbr_k_iter;

void dbr_k_iter_init(dbr_k_iter *it, int ndim, const int64_t *shape, int nin,
                     const int in_ndim[], const int64_t *const in_shape[]);

/* Step the outer dims (all but the innermost) by one, keeping the inputs'
 * offsets in off[] current. */
static inline void dbr_k_iter_next(const dbr_k_iter *it, int64_t idx[], int64_t off[]) {
    for (int d = it->ndim - 2; d >= 0; d--) {
        for (int k = 0; k < it->nin; k++) off[k] += it->stride[k][d];
        if (++idx[d] < it->shape[d]) return;
        for (int k = 0; k < it->nin; k++) off[k] -= it->stride[k][d] * it->shape[d];
        idx[d] = 0;
    }
}

/* Grow-only per-thread workspace (im2col columns, reduction accumulators).
 * Valid until the next call on the same thread; one kernel uses one. NULL
 * when out of memory: the kernels that need it then return -1, all others
 * return void. */
void *dbr_k_scratch(size_t bytes);
void dbr_k_scratch_free(void);

/* ---- element-wise ------------------------------------------------------- */
typedef enum dbr_k_unop {
    DBR_K_NEG, DBR_K_EXP, DBR_K_LOG, DBR_K_SQRT, DBR_K_RSQRT, DBR_K_POW, DBR_K_ABS,
    DBR_K_SIGN, DBR_K_TANH, DBR_K_SIGMOID, DBR_K_RELU, DBR_K_LEAKY_RELU, DBR_K_GELU,
    DBR_K_SILU, DBR_K_COPY, DBR_K_UNOP_COUNT
} dbr_k_unop;

/* Binary ops; the *_BWD ones take (x or y, gy). */
typedef enum dbr_k_binop {
    DBR_K_ADD, DBR_K_SUB, DBR_K_MUL, DBR_K_DIV, DBR_K_RELU_BWD, DBR_K_LEAKY_RELU_BWD,
    DBR_K_GELU_BWD, DBR_K_SILU_BWD, DBR_K_BINOP_COUNT
} dbr_k_binop;

/* Dtype of WHERE's mask; any nonzero value selects a. */
typedef enum dbr_k_mask {
    DBR_K_MASK_F32, DBR_K_MASK_F64, DBR_K_MASK_I32, DBR_K_MASK_I64
} dbr_k_mask;

/* y[i] = op(x[i]) over n elements; p is POW's exponent or LEAKY_RELU's slope.
 * y may equal x. */
void dbr_k_unary_f32(dbr_k_unop op, double p, int64_t n, float *y, const float *x);
void dbr_k_unary_f64(dbr_k_unop op, double p, int64_t n, double *y, const double *x);

/* y (shape) = op(a, b) with a and b broadcast to shape; p as above. */
void dbr_k_binary_f32(dbr_k_binop op, double p, float *y, int ndim, const int64_t *shape,
                      const float *a, int a_ndim, const int64_t *a_shape,
                      const float *b, int b_ndim, const int64_t *b_shape);
void dbr_k_binary_f64(dbr_k_binop op, double p, double *y, int ndim, const int64_t *shape,
                      const double *a, int a_ndim, const int64_t *a_shape,
                      const double *b, int b_ndim, const int64_t *b_shape);

/* y = mask ? a : b, all three broadcast to shape. */
void dbr_k_where_f32(float *y, int ndim, const int64_t *shape,
                     const void *m, dbr_k_mask mt, int m_ndim, const int64_t *m_shape,
                     const float *a, int a_ndim, const int64_t *a_shape,
                     const float *b, int b_ndim, const int64_t *b_shape);
void dbr_k_where_f64(double *y, int ndim, const int64_t *shape,
                     const void *m, dbr_k_mask mt, int m_ndim, const int64_t *m_shape,
                     const double *a, int a_ndim, const int64_t *a_shape,
                     const double *b, int b_ndim, const int64_t *b_shape);

/* Element i is kept iff dbr_rng_u01(dbr_rng_u32(key, i)) >= p, and then
 * scaled by (T)(1 / (1 - p)); dropped elements are 0. */
/* Elements [first, first + n) of a dropout whose element i draws from
 * Philox block i / 4 (first is a multiple of 4): y and x point at element
 * first, so slices of one tensor can run on different threads. */
void dbr_k_dropout_f32(float *y, const float *x, int64_t n, double p, uint64_t key, int64_t first);
void dbr_k_dropout_f64(double *y, const double *x, int64_t n, double p, uint64_t key,
                       int64_t first);

/* ---- reductions ----------------------------------------------------------
 * x has shape[ndim]; bit d of axes reduces dim d. y holds the kept dims in
 * order (keepdims does not change the layout). */
typedef enum dbr_k_redop { DBR_K_RED_SUM, DBR_K_RED_MEAN, DBR_K_RED_MAX } dbr_k_redop;

int dbr_k_reduce_f32(dbr_k_redop op, float *y, const float *x, int ndim, const int64_t *shape,
                      uint32_t axes);
int dbr_k_reduce_f64(dbr_k_redop op, double *y, const double *x, int ndim, const int64_t *shape,
                      uint32_t axes);
/* Gradient of MAX: gy spread evenly over the elements equal to the max. */
int dbr_k_max_bwd_f32(float *gx, const float *x, const float *y, const float *gy, int ndim,
                      const int64_t *shape, uint32_t axes);
int dbr_k_max_bwd_f64(double *gx, const double *x, const double *y, const double *gy, int ndim,
                      const int64_t *shape, uint32_t axes);

/* ---- matmul ----------------------------------------------------------------
 * Row-major C[M,N] = alpha op(A) op(B) + beta C through BLAS. */
void dbr_k_gemm_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                    float *C, int64_t ldc);
void dbr_k_gemm_f64(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                    const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
                    double *C, int64_t ldc);
/* y[..., M, N] = op(a)[..., M, K] op(b)[..., K, N]; op transposes the last
 * two dims when trans_*; batch dims broadcast. Operands have ndim >= 2. */
void dbr_k_matmul_f32(float *y, int y_ndim, const int64_t *y_shape,
                      const float *a, int a_ndim, const int64_t *a_shape, int trans_a,
                      const float *b, int b_ndim, const int64_t *b_shape, int trans_b);
void dbr_k_matmul_f64(double *y, int y_ndim, const int64_t *y_shape,
                      const double *a, int a_ndim, const int64_t *a_shape, int trans_a,
                      const double *b, int b_ndim, const int64_t *b_shape, int trans_b);

/* ---- convolution -----------------------------------------------------------
 * x [N,C,H,W], w [O,C/groups,KH,KW], y [N,O,OH,OW]. */
typedef struct dbr_k_conv {
    int64_t N, C, H, W, O, KH, KW, OH, OW;
    int64_t sh, sw, ph, pw, dh, dw, groups;
} dbr_k_conv;

int dbr_k_conv2d_fwd_f32(float *y, const float *x, const float *w, const dbr_k_conv *p);
int dbr_k_conv2d_fwd_f64(double *y, const double *x, const double *w, const dbr_k_conv *p);
int dbr_k_conv2d_bwd_data_f32(float *gx, const float *gy, const float *w, const dbr_k_conv *p);
int dbr_k_conv2d_bwd_data_f64(double *gx, const double *gy, const double *w, const dbr_k_conv *p);
int dbr_k_conv2d_bwd_weight_f32(float *gw, const float *x, const float *gy, const dbr_k_conv *p);
int dbr_k_conv2d_bwd_weight_f64(double *gw, const double *x, const double *gy,
                                const dbr_k_conv *p);

/* ---- pooling ---------------------------------------------------------------
 * x [NC planes, H, W] -> y [NC, OH, OW]; square window k, stride s, padding
 * pad (-inf for max; counted in avg's divisor k*k). */
typedef struct dbr_k_pool {
    int64_t NC, H, W, OH, OW, k, s, pad;
} dbr_k_pool;

void dbr_k_max_pool2d_fwd_f32(float *y, const float *x, const dbr_k_pool *p);
void dbr_k_max_pool2d_fwd_f64(double *y, const double *x, const dbr_k_pool *p);
/* Routes each gy to the first max of its window (recomputed from x). */
void dbr_k_max_pool2d_bwd_f32(float *gx, const float *x, const float *gy, const dbr_k_pool *p);
void dbr_k_max_pool2d_bwd_f64(double *gx, const double *x, const double *gy, const dbr_k_pool *p);
void dbr_k_avg_pool2d_fwd_f32(float *y, const float *x, const dbr_k_pool *p);
void dbr_k_avg_pool2d_fwd_f64(double *y, const double *x, const dbr_k_pool *p);
void dbr_k_avg_pool2d_bwd_f32(float *gx, const float *gy, const dbr_k_pool *p);
void dbr_k_avg_pool2d_bwd_f64(double *gx, const double *gy, const dbr_k_pool *p);

/* ---- normalization ---------------------------------------------------------
 * Batch norm: x [N, C, S] (S the product of the spatial dims), statistics
 * per channel over N*S with biased variance. gamma/beta may be NULL. */
void dbr_k_batch_norm_fwd_f32(float *y, const float *x, const float *gamma, const float *beta,
                              int64_t N, int64_t C, int64_t S, double eps);
void dbr_k_batch_norm_fwd_f64(double *y, const double *x, const double *gamma,
                              const double *beta, int64_t N, int64_t C, int64_t S, double eps);
void dbr_k_batch_norm_bwd_f32(float *dx, const float *x, const float *gy, const float *gamma,
                              int64_t N, int64_t C, int64_t S, double eps);
void dbr_k_batch_norm_bwd_f64(double *dx, const double *x, const double *gy, const double *gamma,
                              int64_t N, int64_t C, int64_t S, double eps);
/* out [2, C]: means, then biased variances. */
void dbr_k_bn_stats_f32(float *out, const float *x, int64_t N, int64_t C, int64_t S);
void dbr_k_bn_stats_f64(double *out, const double *x, int64_t N, int64_t C, int64_t S);
/* Layer norm over the last dim: x [R, D]. */
void dbr_k_layer_norm_fwd_f32(float *y, const float *x, const float *gamma, const float *beta,
                              int64_t R, int64_t D, double eps);
void dbr_k_layer_norm_fwd_f64(double *y, const double *x, const double *gamma,
                              const double *beta, int64_t R, int64_t D, double eps);
void dbr_k_layer_norm_bwd_f32(float *dx, const float *x, const float *gy, const float *gamma,
                              int64_t R, int64_t D, double eps);
void dbr_k_layer_norm_bwd_f64(double *dx, const double *x, const double *gy, const double *gamma,
                              int64_t R, int64_t D, double eps);

/* ---- softmax, losses, gathers ----------------------------------------------
 * Softmax over the middle dim of x viewed as [A, L, B]; log_ selects
 * log-softmax. */
int dbr_k_softmax_f32(float *y, const float *x, int64_t A, int64_t L, int64_t B, int log_);
int dbr_k_softmax_f64(double *y, const double *x, int64_t A, int64_t L, int64_t B, int log_);
/* Mean over N rows of -log_softmax(x)[label]; labels are int32 or, with
 * labels_i64, int64. Rows whose label is out of range add 0. */
void dbr_k_cross_entropy_fwd_f32(float *loss, const float *x, const void *labels, int labels_i64,
                                 int64_t N, int64_t C);
void dbr_k_cross_entropy_fwd_f64(double *loss, const double *x, const void *labels,
                                 int labels_i64, int64_t N, int64_t C);
/* gx = (softmax(x) - onehot(label)) * gy / N; zero rows for bad labels. */
void dbr_k_cross_entropy_bwd_f32(float *gx, const float *x, const void *labels, int labels_i64,
                                 const float *gy, int64_t N, int64_t C);
void dbr_k_cross_entropy_bwd_f64(double *gx, const double *x, const void *labels,
                                 int labels_i64, const double *gy, int64_t N, int64_t C);
/* y[i, :] = w[idx[i], :] (rows of D elements of esize bytes); zeros for an
 * index outside [0, V). */
void dbr_k_embedding_fwd(void *y, const void *w, size_t esize, const void *idx, int idx_i64,
                         int64_t n, int64_t V, int64_t D);
/* gw [V, D] = 0, then gw[idx[i], :] += gy[i, :]. */
void dbr_k_embedding_bwd_f32(float *gw, const void *idx, int idx_i64, const float *gy,
                             int64_t n, int64_t V, int64_t D);
void dbr_k_embedding_bwd_f64(double *gw, const void *idx, int idx_i64, const double *gy,
                             int64_t n, int64_t V, int64_t D);

/* ---- data movement (any dtype, by element size) ----------------------------- */
/* y dim k = x dim perm[k]. */
void dbr_k_permute(void *y, const void *x, size_t esize, int ndim, const int64_t *x_shape,
                   const int64_t *perm);
/* x viewed as [A, L, B]; y [A, Lo, B] with y[a, j, :] = x[a, start + j*step, :]. */
void dbr_k_slice(void *y, const void *x, size_t esize, int64_t A, int64_t L, int64_t B,
                 int64_t start, int64_t step, int64_t Lo);
/* The reverse: gx [A, L, B] zero except gx[a, start + j*step, :] = gy[a, j, :]. */
void dbr_k_slice_bwd(void *gx, const void *gy, size_t esize, int64_t A, int64_t L, int64_t B,
                     int64_t start, int64_t step, int64_t Lo);
/* y [A, sum L[i], B] from xs[i] [A, L[i], B]. */
void dbr_k_concat(void *y, int n, const void *const xs[], const int64_t *L, size_t esize,
                  int64_t A, int64_t B);
void dbr_k_broadcast(void *y, int ndim, const int64_t *shape, const void *x, int x_ndim,
                     const int64_t *x_shape, size_t esize);

#endif
