/* matmul.c: GEMM through CBLAS and batched, broadcasting matmul on top.
 * The body after #else is compiled once per float type: the file includes
 * itself with T, F(name) and the CBLAS routine defined. */
#ifndef T
#include "kernels/cpu/kernels.h"

#include <cblas.h>
#include <string.h>

#define T float
#define F(name) name##_f32
#define CBLAS_GEMM cblas_sgemm
#include "matmul.c"
#undef T
#undef F
#undef CBLAS_GEMM
#define T double
#define F(name) name##_f64
#define CBLAS_GEMM cblas_dgemm
#include "matmul.c"
#undef T
#undef F
#undef CBLAS_GEMM

#else

void F(dbr_k_gemm)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T *A,
                   int64_t lda, const T *B, int64_t ldb, T beta, T *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        /* BLAS may skip C entirely here; the result must still be beta*C. */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0 ? (T)0 : beta * C[i * ldc + j];
        return;
    }
    CBLAS_GEMM(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
               trans_b ? CblasTrans : CblasNoTrans, (blasint)M, (blasint)N, (blasint)K, alpha, A,
               (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

void F(dbr_k_matmul)(T *y, int y_ndim, const int64_t *y_shape, const T *a, int a_ndim,
                     const int64_t *a_shape, int trans_a, const T *b, int b_ndim,
                     const int64_t *b_shape, int trans_b) {
    const int64_t ar = a_shape[a_ndim - 2], ac = a_shape[a_ndim - 1];
    const int64_t br = b_shape[b_ndim - 2], bc = b_shape[b_ndim - 1];
    const int64_t M = trans_a ? ac : ar, K = trans_a ? ar : ac, N = trans_b ? br : bc;
    const int yb = y_ndim - 2, ab = a_ndim - 2, bb = b_ndim - 2;
    int64_t ybatch = 1, abatch = 1, bbatch = 1;
    for (int d = 0; d < yb; d++) ybatch *= y_shape[d];
    for (int d = 0; d < ab; d++) abatch *= a_shape[d];
    for (int d = 0; d < bb; d++) bbatch *= b_shape[d];
    if (ybatch == 0 || M == 0 || N == 0) return;

    /* One shared b under an untransposed a: the batch is just more rows. */
    if (bbatch == 1 && !trans_a && abatch == ybatch) {
        F(dbr_k_gemm)(0, trans_b, abatch * M, N, K, (T)1, a, ac, b, bc, (T)0, y, N);
        return;
    }
    for (int64_t i = 0; i < ybatch; i++) {
        int64_t rem = i, aoff = 0, boff = 0, astr = 1, bstr = 1;
        for (int d = yb - 1; d >= 0; d--) {
            const int64_t id = rem % y_shape[d];
            rem /= y_shape[d];
            const int da = d - (yb - ab), db = d - (yb - bb);
            if (da >= 0) {
                if (a_shape[da] != 1) aoff += id * astr;
                astr *= a_shape[da];
            }
            if (db >= 0) {
                if (b_shape[db] != 1) boff += id * bstr;
                bstr *= b_shape[db];
            }
        }
        F(dbr_k_gemm)(trans_a, trans_b, M, N, K, (T)1, a + aoff * ar * ac, ac, b + boff * br * bc,
                      bc, (T)0, y + i * M * N, N);
    }
}

#endif
