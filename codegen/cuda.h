/* cuda.h: the CUDA back end for fused element-wise kernels: CUDA C rendered
 * from a kernel description (kdesc.h), compiled by NVRTC to a cubin (no GPU
 * needed) and launched through the driver API (libcuda, opened at run time).
 *
 * The kernel a description renders to is
 *
 *     extern "C" __global__ void <kd->name>(const Ti0 *in0, ..., const Tin *in<n_in-1>,
 *                                           T *out, long long n);
 *
 * with Ti the inputs' element types (float, double, int, long long), T the
 * kernel's, and n = dbr_kdesc_out_numel(kd). Shape and strides are constants
 * in the source. Maps run one thread per output element in a grid-stride
 * loop; reductions run one warp per output element (folds of at most
 * DBR_CG_CUDA_WARP_RED elements) or one block, each folding in double with
 * warp shuffles and (for blocks) shared memory. Launches use
 * DBR_CG_CUDA_THREADS threads per block. Without NVRTC (DBR_HAVE_NVRTC
 * undefined) every call fails with "built without NVRTC/CUDA". */
#ifndef DBR_CODEGEN_CUDA_H
#define DBR_CODEGEN_CUDA_H

#include "codegen/kdesc.h"

#include <stdbool.h>
#include <stddef.h>

#define DBR_CG_CUDA_THREADS 256
#define DBR_CG_CUDA_WARP_RED 1024
#define DBR_CG_CUDA_MAX_BLOCKS 65536

/* CUDA C for kd (checked with dbr_kdesc_check; kd->name must be a C
 * identifier). Returns a malloc'd NUL-terminated string, or NULL with err. */
char *dbr_cg_cuda_source(const dbr_kdesc *kd, char *err, size_t errlen);

/* One translation unit holding all n kernels (names must differ), the
 * shared helpers written once: one NVRTC call for a whole plan's kernels. */
char *dbr_cg_cuda_source_many(const dbr_kdesc *const *kds, int n, char *err, size_t errlen);

/* NVRTC over any source: a cubin for sm_<arch> (e.g. 90), or with ptx the
 * PTX text for compute_<arch> (NUL-terminated; the driver JITs it at load).
 * *image is malloc'd. 0, or -1 with NVRTC's log in err. */
int dbr_cg_nvrtc_compile_src(const char *src, int arch, bool ptx, void **image, size_t *size,
                             char *err, size_t errlen);

/* kd rendered and compiled to a cubin for sm_<arch>. Images are kept in the
 * disk cache (codegen/kcache.h, kind "cubin-sm<arch>") keyed by a hash of
 * the rendered source, the NVRTC version and the options, so a second
 * compile of the same kernel (in any process) reads the disk. *image is
 * malloc'd. 0, or -1 with NVRTC's log in err. */
int dbr_cg_nvrtc_compile(const dbr_kdesc *kd, int arch, void **image, size_t *size, char *err,
                         size_t errlen);

/* Whether NVRTC is built in (it then always is usable: no GPU needed). */
bool dbr_cg_nvrtc_available(void);

/* "NVRTC major.minor", or a reason; 0 or -1. */
int dbr_cg_nvrtc_version(char *buf, size_t n);

/* Whether the driver API sees a GPU (libcuda loads, cuInit succeeds and
 * there is at least one device); false with the reason in why otherwise. */
bool dbr_cg_cuda_gpu_present(char *why, size_t n);

/* Loads image (a cubin or PTX from dbr_cg_nvrtc_compile*; the module is kept
 * per context and kernel for later launches) and launches kd over device
 * pointers args[0 .. n_in) (inputs) and args[n_in] (the output) on stream (a
 * CUstream; NULL is the legacy default stream). Asynchronous: errors of the
 * kernel itself show at the next synchronization. Uses the current context,
 * or retains device 0's primary context (the one the runtime API uses) and
 * makes it current. 0, or -1 with a message (no GPU, load failure). */
int dbr_cg_cuda_launch(const dbr_kdesc *kd, const void *image, void *const *args, void *stream,
                       char *err, size_t errlen);

/* Unloads every module dbr_cg_cuda_launch loaded (their contexts must
 * still be alive). */
void dbr_cg_cuda_unload_all(void);

#endif
