/* dropout.cu: inverted dropout forward on CUDA. Masks come from the Philox
 * stream in kernels/philox.h, so a mask drawn here is bit for bit the one
 * the CPU draws (and the one a recomputation draws). */
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/philox.h"

#include <cuda_runtime.h>
#include <math.h>

/* One thread draws one Philox block: four words for elements 4g .. 4g+3. */
__global__ void dbr_dropout_f32_kernel(const float *__restrict__ x, float *__restrict__ y,
                                       int64_t n, uint32_t threshold, float scale,
                                       uint64_t key) {
    int64_t groups = (n + 3) / 4;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += stride) {
        uint32_t w[4];
        dbr_philox4x32(key, (uint64_t)g, w);
        int64_t base = g * 4;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t i = base + j;
            if (i < n)
                y[i] = (w[j] >> 8) >= threshold ? x[i] * scale : 0.0f;
        }
    }
}

extern "C" int dbr_cuda_dropout_f32(const float *x, float *y, int64_t n, double p, uint64_t key) {
    if (n <= 0)
        return 0;
    if (p <= 0.0) {  /* as on the CPU: a copy, bits and all */
        if (y == x)
            return 0;
        return (int)cudaMemcpyAsync(y, x, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, 0);
    }
    /* u01 = (bits >> 8) / 2^24 >= p  <=>  (bits >> 8) >= ceil(p * 2^24): exact,
     * since scaling by 2^24 is exact in double. */
    double t = ceil(p * 16777216.0);
    uint32_t threshold = t >= 16777216.0 ? 16777216u : (uint32_t)t;
    float scale = threshold >= 16777216u ? 0.0f : (float)(1.0 / (1.0 - p));
    int64_t groups = (n + 3) / 4;
    int threads = 256;
    int64_t blocks = (groups + threads - 1) / threads;
    if (blocks > 65536)
        blocks = 65536;  /* the grid-stride loop covers the rest */
    dbr_dropout_f32_kernel<<<(unsigned)blocks, threads>>>(x, y, n, threshold, scale, key);
    return (int)cudaGetLastError();
}
