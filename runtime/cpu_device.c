/* cpu_device.c: the CPU behind the device interface. Launches run at once
 * on the calling thread (BLAS may use its own threads), so copies and
 * synchronization are trivial. */
#include "runtime/device.h"
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

static void *cpu_alloc(void *dev, int64_t bytes) {
    (void)dev;
    /* 64-byte alignment: whole cache lines and AVX-512 loads */
    return aligned_alloc(64, (size_t)((bytes + 63) & ~(int64_t)63));
}

static void cpu_free(void *dev, void *p, int64_t bytes) {
    (void)dev;
    (void)bytes;
    free(p);
}

static int cpu_copy(void *dev, void *dst, const void *src, int64_t bytes, void *stream) {
    (void)dev;
    (void)stream;
    memcpy(dst, src, (size_t)bytes);
    return 0;
}

static int cpu_launch(void *dev, const dbr_node *n, const void *const in[], void *out,
                      void *stream) {
    (void)dev;
    (void)stream;
    return dbr_cpu_exec(n, in, out);
}

static int cpu_sync(void *dev, void *stream) {
    (void)dev;
    (void)stream;
    return 0;
}

const dbr_device_ops dbr_cpu_device = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .launch = cpu_launch,
    .sync = cpu_sync,
};
