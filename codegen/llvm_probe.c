/* llvm_probe.c: the host CPU and version that LLVM reports; the LLVM JIT
 * backend will compile for exactly this CPU. */
#include "codegen/llvm_probe.h"

#include <stdio.h>

#ifdef DBR_HAVE_LLVM
#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

int dbr_llvm_host_cpu(char *buf, size_t n) {
    char *cpu = LLVMGetHostCPUName();
    snprintf(buf, n, "%s", cpu ? cpu : "unknown");
    LLVMDisposeMessage(cpu);
    return 0;
}

int dbr_llvm_version(char *buf, size_t n) {
    unsigned major = 0, minor = 0, patch = 0;
    LLVMGetVersion(&major, &minor, &patch);
    snprintf(buf, n, "LLVM %u.%u.%u", major, minor, patch);
    return 0;
}

#else

int dbr_llvm_host_cpu(char *buf, size_t n) {
    snprintf(buf, n, "unknown (dbr built without LLVM)");
    return -1;
}

int dbr_llvm_version(char *buf, size_t n) {
    snprintf(buf, n, "LLVM: not built in");
    return -1;
}

#endif
