/* pool.h: splitting a range of work across the CPU's cores. */
#ifndef DBR_RUNTIME_POOL_H
#define DBR_RUNTIME_POOL_H

#include <stdbool.h>
#include <stdint.h>

typedef void (*dbr_range_fn)(void *ctx, int64_t begin, int64_t end);

/* Calls fn over [0, n) in at most dbr_pool_threads() contiguous slices of
 * at least `grain` elements, the first on the calling thread; returns when
 * all are done. Jobs from several threads run one after another. */
void dbr_parallel_range(int64_t n, int64_t grain, dbr_range_fn fn, void *ctx);

/* Threads a range may use: set by dbr_pool_set_threads, else the online cores. */
int dbr_pool_threads(void);
void dbr_pool_set_threads(int threads);

#endif
