/* cuda_kernels.h: C-callable launchers for the CUDA kernels in kernels/cuda.
 * Pointers are device pointers; launches go to the default stream and are
 * not synchronized. Each returns 0, or the cudaError_t code of the launch. */
#ifndef DBR_KERNELS_CUDA_H
#define DBR_KERNELS_CUDA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Inverted dropout, the same bits as the CPU: element i is kept iff
 * dbr_rng_u01(dbr_rng_u32(key, i)) >= p (compared exactly, as the integer
 * (bits >> 8) >= ceil(p * 2^24)), and then y = x * (float)(1 / (1 - p));
 * dropped elements are 0; p <= 0 copies x. This is kernels/cpu/ew.c's
 * dbr_k_dropout to the last bit; p is double, as in the node attribute. */
int dbr_cuda_dropout_f32(const float *x, float *y, int64_t n, double p, uint64_t key);

#ifdef __cplusplus
}
#endif
#endif
