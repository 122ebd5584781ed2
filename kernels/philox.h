/* philox.h: the counter-based generator every random op draws from
 * (Philox4x32-10, Salmon et al. 2011). Header-only and free of libc so the
 * CUDA kernels can include it and draw the very same bits. */
#ifndef DBR_PHILOX_H
#define DBR_PHILOX_H

#include <stdint.h>

#if defined(__CUDACC__)
#define DBR_HD __host__ __device__ static inline
#else
#define DBR_HD static inline
#endif

DBR_HD uint32_t dbr_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

/* Four 32-bit words for counter `ctr` under `key`. */
DBR_HD void dbr_philox4x32(uint64_t key, uint64_t ctr, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = dbr_mulhilo32(0xD2511F53u, c0, &hi0);
        uint32_t lo1 = dbr_mulhilo32(0xCD9E8D57u, c2, &hi1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* Blocks ctr .. ctr + DBR_PHILOX_LANES - 1 at once, word k of block ctr + l
 * in out[4 * l + k] (the stream's order): the same bits as dbr_philox4x32,
 * computed lane-parallel so a compiler runs the lanes as one vector
 * (32x32->64 multiplies). */
#define DBR_PHILOX_LANES 8
DBR_HD void dbr_philox4x32_lanes(uint64_t key, uint64_t ctr, uint32_t out[4 * DBR_PHILOX_LANES]) {
    uint32_t c0[DBR_PHILOX_LANES], c1[DBR_PHILOX_LANES], c2[DBR_PHILOX_LANES],
        c3[DBR_PHILOX_LANES];
    for (int l = 0; l < DBR_PHILOX_LANES; l++) {
        uint64_t c = ctr + (uint64_t)l;
        c0[l] = (uint32_t)c;
        c1[l] = (uint32_t)(c >> 32);
        c2[l] = 0;
        c3[l] = 0;
    }
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int r = 0; r < 10; r++) {
        for (int l = 0; l < DBR_PHILOX_LANES; l++) {
            uint64_t p0 = (uint64_t)0xD2511F53u * c0[l], p1 = (uint64_t)0xCD9E8D57u * c2[l];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[l] ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3[l] ^ k1;
            c1[l] = (uint32_t)p1;
            c3[l] = (uint32_t)p0;
            c0[l] = n0;
            c2[l] = n2;
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    for (int l = 0; l < DBR_PHILOX_LANES; l++) {
        out[4 * l] = c0[l];
        out[4 * l + 1] = c1[l];
        out[4 * l + 2] = c2[l];
        out[4 * l + 3] = c3[l];
    }
}

/* Mix a seed with two integers into a key (splitmix64 finalizer). */
DBR_HD uint64_t dbr_rng_key(uint64_t seed, uint64_t a, uint64_t b) {
    uint64_t z = seed ^ (a * 0x9E3779B97F4A7C15ull) ^ (b * 0xC2B2AE3D27D4EB4Full);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The i-th 32-bit word of the stream under key. */
DBR_HD uint32_t dbr_rng_u32(uint64_t key, uint64_t i) {
    uint32_t w[4];
    dbr_philox4x32(key, i >> 2, w);
    return w[i & 3];
}

/* The key of the `call`-th random op of a step: eager mode, compiled plans
 * (which rekey every step) and recomputation all derive it the same way. */
DBR_HD uint64_t dbr_rand_op_key(uint64_t seed, uint64_t step, uint64_t call) {
    return dbr_rng_key(seed, step, call + 0xD0);
}

/* Uniform in [0, 1) from 24 bits: exact in float and double. */
DBR_HD double dbr_rng_u01(uint32_t bits) { return (double)(bits >> 8) * (1.0 / 16777216.0); }

#endif
