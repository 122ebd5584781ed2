/* codegen.h: fused element-wise kernels for the runtime. The CPU back end
 * (codegen/llvm.c) renders a kernel description (kdesc.h) to LLVM IR,
 * optimises it for the host CPU, and links the object code into one
 * process-wide ORC JIT; objects are kept in the disk cache (kcache.h). */
#ifndef DBR_CODEGEN_CODEGEN_H
#define DBR_CODEGEN_CODEGEN_H

#include "codegen/kdesc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bumped whenever the IR a description renders to changes. */
#define DBR_CG_CPU_FORMAT 4
/* The optimisation pipeline the CPU back end runs (LLVMRunPasses). */
#define DBR_CG_CPU_PIPELINE "default<O3>"

/* The CPU kernel for kd: from the in-memory cache, else the disk cache, else
 * a fresh LLVM JIT (the O3 pipeline with the host CPU's name and features,
 * e.g. AVX-512 where present). Thread-safe. NULL with a message in err when
 * LLVM is not built in (DBR_HAVE_LLVM undefined), kd fails dbr_kdesc_check
 * or compilation fails. Kernels live until exit. */
dbr_kfn dbr_cg_cpu(const dbr_kdesc *kd, char *err, size_t errlen);

/* Whether dbr_cg_cpu can compile (LLVM built in and the host target set up). */
bool dbr_cg_cpu_available(void);

typedef struct dbr_cg_stats {
    int64_t compiled, mem_hits, disk_hits, disk_rejected;
    double jit_ms_total, jit_ms_max, disk_ms_total;
} dbr_cg_stats;
void dbr_cg_stats_get(dbr_cg_stats *s);

/* The cache key of kd for a target (cpu name + features string): a hash of
 * dbr_kdesc_hash, the target, the LLVM version, DBR_CG_CPU_FORMAT and
 * DBR_CG_CPU_PIPELINE. */
uint64_t dbr_cg_cpu_key(const dbr_kdesc *kd, const char *cpu, const char *features);

/* The key dbr_cg_cpu uses on this host (0 without LLVM). */
uint64_t dbr_cg_cpu_host_key(const dbr_kdesc *kd);

/* Forget the in-memory cache (tests: the next dbr_cg_cpu goes to disk).
 * Kernels returned before stay valid. */
void dbr_cg_reset_memory(void);

#endif
