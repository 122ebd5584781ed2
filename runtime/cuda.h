/* cuda.h: the CUDA device as the rest of dbr sees it, in plain C. Every
 * function exists in every build: without CUDA (DBR_HAVE_CUDA unset) the
 * probe reports that and the rest fail cleanly. */
#ifndef DBR_RUNTIME_CUDA_H
#define DBR_RUNTIME_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/cuda_kernels.h"

/* The number of usable CUDA devices, or 0 with the reason in msg, e.g.
 * "no usable CUDA device: cudaGetDeviceCount: CUDA driver version is
 * insufficient for CUDA runtime version (35)". With devices, msg names the
 * first one ("NVIDIA H100 80GB HBM3, sm_90, 79 GiB"). msg may be NULL. */
int dbr_cuda_probe(char *msg, size_t n);

/* Device memory: NULL / -1 on failure, with the reason in msg when given. */
void *dbr_cuda_malloc(int64_t bytes, char *msg, size_t n);
void dbr_cuda_free(void *p);
int dbr_cuda_to_device(void *dst, const void *src, int64_t bytes);
int dbr_cuda_to_host(void *dst, const void *src, int64_t bytes);
/* Waits for the device; returns 0 or -1 (msg says why). */
int dbr_cuda_sync(char *msg, size_t n);
/* The text for an error code a launcher returned. */
const char *dbr_cuda_error_string(int code);

#endif
