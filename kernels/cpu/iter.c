/* iter.c: the broadcast walk every strided CPU kernel shares, and the
 * per-thread grow-only workspace. */
#include "kernels/cpu/kernels.h"

#include <stdlib.h>

void dbr_k_iter_init(dbr_k_iter *it, int ndim, const int64_t *shape, int nin,
                     const int in_ndim[], const int64_t *const in_shape[]) {
    int64_t st[DBR_K_MAX_IN][DBR_K_MAX_DIMS];
    it->nin = nin;
    it->numel = 1;
    for (int d = 0; d < ndim; d++) it->numel *= shape[d];
    for (int k = 0; k < nin; k++) {
        int64_t acc = 1;
        for (int d = ndim - 1; d >= 0; d--) {
            int di = d - (ndim - in_ndim[k]);
            int64_t s = di >= 0 ? in_shape[k][di] : 1;
            st[k][d] = s == 1 ? 0 : acc;
            acc *= s;
        }
    }
    /* A kept group acts as one dim whose stride is its innermost member's;
     * the next dim joins it when every input steps through both as one. */
    int m = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1) continue;
        int merge = m > 0;
        for (int k = 0; merge && k < nin; k++)
            if (it->stride[k][m - 1] != st[k][d] * shape[d]) merge = 0;
        if (merge) {
            it->shape[m - 1] *= shape[d];
            for (int k = 0; k < nin; k++) it->stride[k][m - 1] = st[k][d];
        } else {
            it->shape[m] = shape[d];
            for (int k = 0; k < nin; k++) it->stride[k][m] = st[k][d];
            m++;
        }
    }
    if (m == 0) {
        it->shape[0] = 1;
        for (int k = 0; k < nin; k++) it->stride[k][0] = 0;
        m = 1;
    }
    it->ndim = m;
}

static _Thread_local void *scratch;
static _Thread_local size_t scratch_cap;

void *dbr_k_scratch(size_t bytes) {
    if (bytes <= scratch_cap) return scratch;
    size_t cap = scratch_cap ? scratch_cap : 4096;
    while (cap < bytes) cap *= 2;
    free(scratch);
    scratch = malloc(cap);
    scratch_cap = scratch ? cap : 0;
    return scratch;
}

void dbr_k_scratch_free(void) {
    free(scratch);
    scratch = NULL;
    scratch_cap = 0;
}
