/* move.c: data movement for any dtype by element size: permute, slice and
 * its adjoint, concat, broadcast. Copies are typed for 1/2/4/8-byte
 * elements so they compile to plain loads and stores. */
#include "kernels/cpu/kernels.h"

#include <string.h>

/* Strided gather of n elements: y[i] = x[i * st]. */
static void gather(void *y, const void *x, size_t esize, int64_t n, int64_t st) {
#define GATHER(U)                                                                                 \
    do {                                                                                          \
        U *restrict yy = y;                                                                       \
        const U *restrict xx = x;                                                                 \
        for (int64_t i = 0; i < n; i++) yy[i] = xx[i * st];                                       \
    } while (0)
    switch (esize) {
    case 1: GATHER(uint8_t); break;
    case 2: GATHER(uint16_t); break;
    case 4: GATHER(uint32_t); break;
    case 8: GATHER(uint64_t); break;
    default:
        for (int64_t i = 0; i < n; i++)
            memcpy((char *)y + (size_t)i * esize,
                   (const char *)x + (ptrdiff_t)(i * st) * (ptrdiff_t)esize, esize);
    }
#undef GATHER
}

/* Strided scatter of n elements: y[i * st] = x[i]. */
static void scatter(void *y, const void *x, size_t esize, int64_t n, int64_t st) {
#define SCATTER(U)                                                                                \
    do {                                                                                          \
        U *restrict yy = y;                                                                       \
        const U *restrict xx = x;                                                                 \
        for (int64_t i = 0; i < n; i++) yy[i * st] = xx[i];                                       \
    } while (0)
    switch (esize) {
    case 1: SCATTER(uint8_t); break;
    case 2: SCATTER(uint16_t); break;
    case 4: SCATTER(uint32_t); break;
    case 8: SCATTER(uint64_t); break;
    default:
        for (int64_t i = 0; i < n; i++)
            memcpy((char *)y + (ptrdiff_t)(i * st) * (ptrdiff_t)esize,
                   (const char *)x + (size_t)i * esize, esize);
    }
#undef SCATTER
}

/* y[0..n) = the one element at x. */
static void fill(void *y, const void *x, size_t esize, int64_t n) {
#define FILL(U)                                                                                   \
    do {                                                                                          \
        U *yy = y;                                                                                \
        U v;                                                                                      \
        memcpy(&v, x, sizeof v);                                                                  \
        for (int64_t i = 0; i < n; i++) yy[i] = v;                                                \
    } while (0)
    switch (esize) {
    case 1: FILL(uint8_t); break;
    case 2: FILL(uint16_t); break;
    case 4: FILL(uint32_t); break;
    case 8: FILL(uint64_t); break;
    default:
        for (int64_t i = 0; i < n; i++) memcpy((char *)y + (size_t)i * esize, x, esize);
    }
#undef FILL
}

/* y [R, C] from x with y[r, c] = x[r + c * ld]: a transpose done in tiles
 * so both sides stay in cache. */
static void transpose(void *y, const void *x, size_t esize, int64_t R, int64_t C, int64_t ld) {
    enum { TILE = 32 };
#define TRANSPOSE(U)                                                                              \
    do {                                                                                          \
        U *restrict yy = y;                                                                       \
        const U *restrict xx = x;                                                                 \
        for (int64_t r0 = 0; r0 < R; r0 += TILE)                                                  \
            for (int64_t c0 = 0; c0 < C; c0 += TILE) {                                            \
                const int64_t r1 = r0 + TILE < R ? r0 + TILE : R;                                 \
                const int64_t c1 = c0 + TILE < C ? c0 + TILE : C;                                 \
                for (int64_t r = r0; r < r1; r++)                                                 \
                    for (int64_t c = c0; c < c1; c++) yy[r * C + c] = xx[r + c * ld];             \
            }                                                                                     \
    } while (0)
    switch (esize) {
    case 4: TRANSPOSE(uint32_t); break;
    case 8: TRANSPOSE(uint64_t); break;
    case 2: TRANSPOSE(uint16_t); break;
    case 1: TRANSPOSE(uint8_t); break;
    default:
        for (int64_t r = 0; r < R; r++) gather((char *)y + (size_t)(r * C) * esize,
                                               (const char *)x + (size_t)r * esize, esize, C, ld);
    }
#undef TRANSPOSE
}

void dbr_k_permute(void *y, const void *x, size_t esize, int ndim, const int64_t *x_shape,
                   const int64_t *perm) {
    int64_t xs[DBR_K_MAX_DIMS], sh[DBR_K_MAX_DIMS], st[DBR_K_MAX_DIMS];
    int64_t acc = 1, numel = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        xs[d] = acc;
        acc *= x_shape[d];
    }
    numel = acc;
    if (numel == 0) return;
    /* Output dims in order with their input strides; size-1 dims go, and
     * neighbours that are also neighbours in x merge. */
    int m = 0;
    for (int k = 0; k < ndim; k++) {
        const int64_t n = x_shape[perm[k]], s = xs[perm[k]];
        if (n == 1) continue;
        if (m > 0 && st[m - 1] == s * n) {
            sh[m - 1] *= n;
            st[m - 1] = s;
        } else {
            sh[m] = n;
            st[m] = s;
            m++;
        }
    }
    if (m == 0 || (m == 1 && st[0] == 1)) {
        if (y != x) memcpy(y, x, (size_t)numel * esize);
        return;
    }
    const int64_t inner = sh[m - 1];
    const int tiled = m >= 2 && st[m - 2] == 1;
    const int outer_dims = tiled ? m - 2 : m - 1;
    const int64_t block = tiled ? sh[m - 2] * inner : inner;
    int64_t idx[DBR_K_MAX_DIMS] = {0}, off = 0;
    for (int64_t o = 0; o < numel; o += block) {
        char *yo = (char *)y + (size_t)o * esize;
        const char *xo = (const char *)x + (size_t)off * esize;
        if (tiled)
            transpose(yo, xo, esize, sh[m - 2], inner, st[m - 1]);
        else if (st[m - 1] == 1)
            memcpy(yo, xo, (size_t)inner * esize);
        else
            gather(yo, xo, esize, inner, st[m - 1]);
        for (int d = outer_dims - 1; d >= 0; d--) {
            off += st[d];
            if (++idx[d] < sh[d]) break;
            off -= st[d] * sh[d];
            idx[d] = 0;
        }
    }
}

void dbr_k_slice(void *y, const void *x, size_t esize, int64_t A, int64_t L, int64_t B,
                 int64_t start, int64_t step, int64_t Lo) {
    const size_t row = (size_t)B * esize;
    for (int64_t a = 0; a < A; a++) {
        char *ya = (char *)y + (size_t)(a * Lo) * row;
        const char *xa = (const char *)x + (size_t)(a * L + start) * row;
        if (step == 1)
            memcpy(ya, xa, (size_t)Lo * row);
        else if (B == 1)
            gather(ya, xa, esize, Lo, step);
        else
            for (int64_t j = 0; j < Lo; j++)
                memcpy(ya + (size_t)j * row, xa + (ptrdiff_t)(j * step) * (ptrdiff_t)row, row);
    }
}

void dbr_k_slice_bwd(void *gx, const void *gy, size_t esize, int64_t A, int64_t L, int64_t B,
                     int64_t start, int64_t step, int64_t Lo) {
    const size_t row = (size_t)B * esize;
    memset(gx, 0, (size_t)(A * L) * row);
    for (int64_t a = 0; a < A; a++) {
        char *xa = (char *)gx + (size_t)(a * L + start) * row;
        const char *ya = (const char *)gy + (size_t)(a * Lo) * row;
        if (step == 1)
            memcpy(xa, ya, (size_t)Lo * row);
        else if (B == 1)
            scatter(xa, ya, esize, Lo, step);
        else
            for (int64_t j = 0; j < Lo; j++)
                memcpy(xa + (ptrdiff_t)(j * step) * (ptrdiff_t)row, ya + (size_t)j * row, row);
    }
}

void dbr_k_concat(void *y, int n, const void *const xs[], const int64_t *L, size_t esize, int64_t A,
                  int64_t B) {
    int64_t Lt = 0;
    for (int i = 0; i < n; i++) Lt += L[i];
    const size_t row = (size_t)B * esize;
    for (int64_t a = 0; a < A; a++) {
        char *ya = (char *)y + (size_t)(a * Lt) * row;
        for (int i = 0; i < n; i++) {
            const size_t len = (size_t)L[i] * row;
            memcpy(ya, (const char *)xs[i] + (size_t)a * len, len);
            ya += len;
        }
    }
}

void dbr_k_broadcast(void *y, int ndim, const int64_t *shape, const void *x, int x_ndim,
                     const int64_t *x_shape, size_t esize) {
    dbr_k_iter it;
    const int nd[1] = {x_ndim};
    const int64_t *const sh[1] = {x_shape};
    dbr_k_iter_init(&it, ndim, shape, 1, nd, sh);
    if (it.numel == 0) return;
    const int last = it.ndim - 1;
    const int64_t inner = it.shape[last], outer = it.numel / inner;
    const int64_t s = it.stride[0][last];
    int64_t idx[DBR_K_MAX_DIMS] = {0}, off[1] = {0};
    for (int64_t o = 0; o < outer; o++) {
        char *yo = (char *)y + (size_t)(o * inner) * esize;
        const char *xo = (const char *)x + (size_t)off[0] * esize;
        if (s == 1)
            memcpy(yo, xo, (size_t)inner * esize);
        else
            fill(yo, xo, esize, inner);
        dbr_k_iter_next(&it, idx, off);
    }
}
