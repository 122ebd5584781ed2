/* cuda_device.c: probing the CUDA device and moving memory, through the
 * CUDA runtime's C API. Without DBR_HAVE_CUDA every call reports that dbr
 * was built without CUDA, so callers need no #ifdef. */
#include "runtime/cuda.h"

#include <stdio.h>

#ifdef DBR_HAVE_CUDA
#include <cuda_runtime_api.h>

static void put_msg(char *msg, size_t n, const char *fmt, const char *what, int code) {
    if (msg && n)
        snprintf(msg, n, fmt, what, code);
}

int dbr_cuda_probe(char *msg, size_t n) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        /* Clear the sticky error so a later call is not blamed for it. */
        (void)cudaGetLastError();
        put_msg(msg, n, "no usable CUDA device: cudaGetDeviceCount: %s (%d)",
                cudaGetErrorString(e), (int)e);
        return 0;
    }
    if (count <= 0) {
        if (msg && n)
            snprintf(msg, n, "no usable CUDA device: cudaGetDeviceCount found %d", count);
        return 0;
    }
    struct cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, 0);
    if (e != cudaSuccess) {
        put_msg(msg, n, "no usable CUDA device: cudaGetDeviceProperties: %s (%d)",
                cudaGetErrorString(e), (int)e);
        return 0;
    }
    if (msg && n)
        snprintf(msg, n, "%s, sm_%d%d, %lld GiB", prop.name, prop.major, prop.minor,
                 (long long)(prop.totalGlobalMem >> 30));
    return count;
}

void *dbr_cuda_malloc(int64_t bytes, char *msg, size_t n) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes > 0 ? (size_t)bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (msg && n)
            snprintf(msg, n, "cudaMalloc(%lld bytes): %s (%d)", (long long)bytes,
                     cudaGetErrorString(e), (int)e);
        return NULL;
    }
    return p;
}

void dbr_cuda_free(void *p) {
    if (p)
        cudaFree(p);
}

int dbr_cuda_to_device(void *dst, const void *src, int64_t bytes) {
    return cudaMemcpy(dst, src, (size_t)bytes, cudaMemcpyHostToDevice) == cudaSuccess ? 0 : -1;
}

int dbr_cuda_to_host(void *dst, const void *src, int64_t bytes) {
    return cudaMemcpy(dst, src, (size_t)bytes, cudaMemcpyDeviceToHost) == cudaSuccess ? 0 : -1;
}

int dbr_cuda_sync(char *msg, size_t n) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess)
        return 0;
    put_msg(msg, n, "cudaDeviceSynchronize: %s (%d)", cudaGetErrorString(e), (int)e);
    return -1;
}

const char *dbr_cuda_error_string(int code) {
    return cudaGetErrorString((cudaError_t)code);
}

#else /* !DBR_HAVE_CUDA */

#define NO_CUDA "dbr was built without CUDA (configure with -DDBR_CUDA=ON)"

static void put_msg(char *msg, size_t n, const char *text) {
    if (msg && n)
        snprintf(msg, n, "%s", text);
}

int dbr_cuda_probe(char *msg, size_t n) {
    put_msg(msg, n, "no usable CUDA device: " NO_CUDA);
    return 0;
}

void *dbr_cuda_malloc(int64_t bytes, char *msg, size_t n) {
    (void)bytes;
    put_msg(msg, n, NO_CUDA);
    return NULL;
}

void dbr_cuda_free(void *p) { (void)p; }

int dbr_cuda_to_device(void *dst, const void *src, int64_t bytes) {
    (void)dst, (void)src, (void)bytes;
    return -1;
}

int dbr_cuda_to_host(void *dst, const void *src, int64_t bytes) {
    (void)dst, (void)src, (void)bytes;
    return -1;
}

int dbr_cuda_sync(char *msg, size_t n) {
    put_msg(msg, n, NO_CUDA);
    return -1;
}

const char *dbr_cuda_error_string(int code) {
    (void)code;
    return NO_CUDA;
}

/* The launchers' stand-ins; no caller reaches them past a failed probe. */
int dbr_cuda_dropout_f32(const float *x, float *y, int64_t n, double p, uint64_t key) {
    (void)x, (void)y, (void)n, (void)p, (void)key;
    return -1;
}

#endif
