/* lower.h: fused bodies (ir/fused.h) to kernel descriptions (kdesc.h), and
 * the per-body kernels the CPU runtime calls. */
#ifndef DBR_CODEGEN_LOWER_H
#define DBR_CODEGEN_LOWER_H

#include "codegen/kdesc.h"
#include "ir/fused.h"

/* The kernel description of body b: inputs' strides from NumPy broadcasting
 * over b->space, size-1 dims dropped and dims merged wherever every input
 * stays contiguous across them (so the innermost loop is as long as it can
 * be). 0, or -1 with a message. */
int dbr_lower_fbody(const dbr_fbody *b, dbr_kdesc *kd, char *err, size_t errlen);

/* The CPU kernel of fused body `id`, lowered and compiled once (then kept
 * until exit); *kd points to its description. 0, or -1 with a message. */
int dbr_cg_fused_cpu(int64_t id, const dbr_kdesc **kd, dbr_kfn *fn, char *err, size_t errlen);

#endif
