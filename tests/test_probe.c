/* test_probe.c: the build's optional parts report themselves sensibly:
 * LLVM names the host CPU, the CUDA probe never fails, only reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "codegen/llvm_probe.h"
#include "runtime/cuda.h"

static void test_llvm_probe(void **state) {
    (void)state;
    char cpu[128] = "", ver[64] = "";
    int rc_cpu = dbr_llvm_host_cpu(cpu, sizeof cpu);
    int rc_ver = dbr_llvm_version(ver, sizeof ver);
#ifdef DBR_HAVE_LLVM
    assert_int_equal(rc_cpu, 0);
    assert_int_equal(rc_ver, 0);
    assert_true(strncmp(ver, "LLVM 19.", 8) == 0);
#else
    assert_int_equal(rc_cpu, -1);
    assert_int_equal(rc_ver, -1);
#endif
    assert_true(cpu[0] != '\0');
    fprintf(stderr, "%s, host cpu %s\n", ver, cpu);
}

static void test_cuda_probe(void **state) {
    (void)state;
    char msg[256] = "";
    int n = dbr_cuda_probe(msg, sizeof msg);
    assert_true(n >= 0);
    assert_true(msg[0] != '\0');
    if (n == 0)
        assert_true(strncmp(msg, "no usable CUDA device: ", 23) == 0);
    /* A second probe says the same: no sticky state from the first. */
    char again[256] = "";
    assert_int_equal(dbr_cuda_probe(again, sizeof again), n);
    assert_string_equal(msg, again);
    /* NULL message buffers are allowed. */
    assert_int_equal(dbr_cuda_probe(NULL, 0), n);
    fprintf(stderr, "cuda: %d device(s): %s\n", n, msg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llvm_probe),
        cmocka_unit_test(test_cuda_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
