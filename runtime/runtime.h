/* runtime.h: executing nodes on a device. The CPU device runs one node over
 * host pointers; compiled plans (next milestone) run flat launch lists. */
#ifndef DBR_RUNTIME_H
#define DBR_RUNTIME_H

#include "ir/ir.h"

/* Run node n (types, attributes already inferred) on the CPU: in[i] points
 * to input i's contiguous data, out to the output's. Returns 0, or -1 for a
 * dtype the kernel does not support (shape inference should prevent it) or
 * when the kernel's scratch buffer cannot be allocated. Conv, reductions and
 * softmax on an inner axis use a per-thread, grow-only scratch buffer that
 * is not yet counted in the memory budget (a later issue sizes it). */
int dbr_cpu_exec(const dbr_node *n, const void *const in[], void *out);

/* Threads for BLAS and the CPU kernels (0 = library default). */
void dbr_cpu_set_threads(int threads);

/* Optimizer updates over n contiguous elements, in place. t is the 1-based
 * step count (Adam's bias correction). dtype DT_F32 or DT_F64. */
void dbr_cpu_sgd(int32_t dtype, int64_t n, void *p, const void *g, double lr, double wd);
void dbr_cpu_momentum(int32_t dtype, int64_t n, void *p, const void *g, void *v, double lr,
                      double mu, double wd, int nesterov);
void dbr_cpu_adam(int32_t dtype, int64_t n, void *p, const void *g, void *m, void *v,
                  double lr, double b1, double b2, double eps, double wd, int decoupled,
                  int64_t t);

#endif
