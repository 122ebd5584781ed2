/* llvm_probe.h: what the LLVM backend would target on this machine, for
 * version banners and kernel cache keys. Works (reporting absence) when dbr
 * is built without LLVM. */
#ifndef DBR_CODEGEN_LLVM_PROBE_H
#define DBR_CODEGEN_LLVM_PROBE_H

#include <stddef.h>

/* Writes the host CPU name as LLVM sees it (e.g. "znver5") into buf.
 * Returns 0, or -1 with a reason in buf when LLVM is not built in. */
int dbr_llvm_host_cpu(char *buf, size_t n);

/* Writes "LLVM major.minor.patch" (or "LLVM: not built in") into buf.
 * Returns 0, or -1 when LLVM is not built in. */
int dbr_llvm_version(char *buf, size_t n);

#endif
