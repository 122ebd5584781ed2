/* device.h: what running a plan needs from a device, as a table of
 * functions: memory, copies, launches and synchronization, all taking a
 * stream so a device with queues (CUDA, issue 6) can run them asynchronously.
 * The CPU device is implemented here; its "stream" is the calling thread. */
#ifndef DBR_RUNTIME_DEVICE_H
#define DBR_RUNTIME_DEVICE_H

#include "ir/ir.h"

#include <stdint.h>

typedef struct dbr_device_ops {
    const char *name;
    /* device memory; NULL when out of memory */
    void *(*alloc)(void *dev, int64_t bytes);
    void (*free)(void *dev, void *p, int64_t bytes);
    /* copies between host and device memory, ordered on stream */
    int (*to_device)(void *dev, void *dst, const void *src, int64_t bytes, void *stream);
    int (*to_host)(void *dev, void *dst, const void *src, int64_t bytes, void *stream);
    /* run one node over device pointers, ordered on stream; 0 or -1 */
    int (*launch)(void *dev, const dbr_node *n, const void *const in[], void *out, void *stream);
    /* wait until everything queued on stream has finished; 0 or -1 */
    int (*sync)(void *dev, void *stream);
} dbr_device_ops;

extern const dbr_device_ops dbr_cpu_device;

#endif
