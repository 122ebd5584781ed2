/* test_cli.c: the dbr command as a user meets it: help texts, bad flags
 * (exit 2), run-time errors (exit 1, one clear line) and a short training
 * run whose --json output carries the promised keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef DBR_CLI
#error "DBR_CLI (the path of the dbr binary) must be defined by the build"
#endif

/* Runs `dbr <args>` through the shell; returns the exit status and the
 * combined output in out. */
static int run(const char *args, char *out, size_t n) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", DBR_CLI, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t len = fread(out, 1, n - 1, p);
    out[len] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char out[1 << 16];

static void help_texts(void **state) {
    (void)state;
    assert_int_equal(run("--help", out, sizeof out), 0);
    assert_non_null(strstr(out, "train"));
    assert_int_equal(run("train --help", out, sizeof out), 0);
    const char *flags[] = {"--model", "--epochs", "--batch", "--lr", "--optimizer",
                           "--seed", "--steps", "--json"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (!strstr(out, flags[i])) fail_msg("train --help does not explain %s", flags[i]);
}

static void bad_flags_exit_2(void **state) {
    (void)state;
    const char *bad[] = {"", "frobnicate", "train --model resnet9000", "train --epochs 0",
                         "train --batch -3", "train --lr abc", "train --optimizer rmsprop",
                         "train --bogus", "train --epochs", "train --budget lots",
                         "train --mode eager --budget 50%", "train --recompute magic"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = run(bad[i], out, sizeof out);
        if (rc != 2) fail_msg("`dbr %s` exited %d, expected 2 (output: %s)", bad[i], rc, out);
        assert_true(strlen(out) > 0);
    }
    run("train --optimizer rmsprop", out, sizeof out);
    assert_non_null(strstr(out, "rmsprop"));
}

static void missing_data_exit_1(void **state) {
    (void)state;
    char tmpl[] = "/tmp/dbr_cli_XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char args[256];
    snprintf(args, sizeof args, "train --steps 1 --data %s", tmpl);
    assert_int_equal(run(args, out, sizeof out), 1);
    assert_non_null(strstr(out, tmpl));
    assert_null(strstr(out, "Assertion"));
    rmdir(tmpl);
}

static void short_run_json(void **state) {
    (void)state;
    if (access("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", R_OK) != 0 &&
        !getenv("DBR_FASHION_MNIST"))
        skip();
    int rc = run("train --model mlp --steps 20 --batch 32 --json --seed 3", out, sizeof out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    const char *keys[] = {"\"model\": \"mlp\"", "\"epochs\":", "\"steps\": 20", "\"final_loss\":",
                          "\"test_accuracy\":", "\"seconds\":", "\"peak_bytes\":"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strstr(out, keys[i])) fail_msg("--json output lacks %s: %s", keys[i], out);
    /* one JSON object and nothing else on stdout+stderr */
    assert_int_equal(out[0], '{');
    assert_non_null(strchr(out, '}'));
    double acc = atof(strstr(out, "\"test_accuracy\":") + 16);
    assert_true(acc > 0.3); /* 20 steps are far above chance (0.1) */
}

static void compiled_run_json(void **state) {
    (void)state;
    if (access("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", R_OK) != 0 &&
        !getenv("DBR_FASHION_MNIST"))
        skip();
    int rc = run("train --model mlp --mode compiled --steps 6 --batch 16 --json", out, sizeof out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    const char *keys[] = {"\"mode\": \"compiled\"", "\"cache_hits\": 5", "\"cache_misses\": 1",
                          "\"compile_ms\":", "\"graph_breaks\": 0", "\"arena_bytes\":",
                          "\"arena_lower_bound\":"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strstr(out, keys[i])) fail_msg("--json output lacks %s: %s", keys[i], out);
}

/* Under a budget: the step's planned peak within it, the parts reported,
 * something recomputed; a budget below the least reachable peak exits 1
 * with that least peak. */
static void budget_run_json(void **state) {
    (void)state;
    if (access("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", R_OK) != 0 &&
        !getenv("DBR_FASHION_MNIST"))
        skip();
    int rc = run("train --model cnn --steps 4 --batch 32 --budget 85% --json", out, sizeof out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    const char *keys[] = {"\"mode\": \"compiled\"", "\"budget_bytes\":", "\"step_peak_bytes\":",
                          "\"optim_state_bytes\":", "\"grads_bytes\":", "\"recomputed\":"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strstr(out, keys[i])) fail_msg("--json output lacks %s: %s", keys[i], out);
    long long budget = atoll(strstr(out, "\"budget_bytes\":") + 15);
    long long step = atoll(strstr(out, "\"step_peak_bytes\":") + 18);
    long long noremat = atoll(strstr(out, "\"noremat_arena_bytes\":") + 22);
    long long arena = atoll(strstr(out, "\"arena_bytes\":") + 14);
    long long peak = atoll(strstr(out, "\"peak_bytes\":") + 13);
    assert_true(budget > 0);
    assert_true(step <= budget);
    assert_true(peak <= budget);
    assert_true(arena < noremat);
    rc = run("train --model cnn --steps 2 --budget 100KiB", out, sizeof out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "memory budget 100.00 KiB cannot be met"));
    assert_non_null(strstr(out, "the least this step can take is"));
}

static void dot_draws_the_step(void **state) {
    (void)state;
    char dir[] = "/tmp/dbr_cli_dot_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char args[512], path[256];
    snprintf(path, sizeof path, "%s/mlp.dot", dir);
    snprintf(args, sizeof args, "dot --model mlp --batch 8 -o %s", path);
    int rc = run(args, out, sizeof out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char text[1 << 18];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    /* forward, backward and the optimizer's updates, with the model's lines */
    assert_non_null(strstr(text, "matmul"));
    assert_non_null(strstr(text, "relu_bwd"));
    assert_non_null(strstr(text, "adam_update"));
    assert_non_null(strstr(text, "mlp.c:"));
    assert_non_null(strstr(text, "fc1.w"));
    remove(path);
    assert_int_equal(run("dot --model mlp", out, sizeof out), 2); /* no -o */
    snprintf(args, sizeof args, "dot --model mlp -o %s/x.bmp", dir);
    assert_int_equal(run(args, out, sizeof out), 1); /* unknown format: a clear error */
    assert_non_null(strstr(out, "x.bmp"));
    rmdir(dir);
}

static void plan_reports(void **state) {
    (void)state;
    int rc = run("plan --model cnn --batch 8 --strategy dp --json", out, sizeof out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    const char *keys[] = {"\"name\": \"cnn\"", "\"strategy\": \"dp\"", "\"budget_bytes\":",
                          "\"vanilla_peak_bytes\":", "\"peak_bytes\":",
                          "\"min_feasible_peak_bytes\":", "\"overhead_pct\":", "\"plan_ms\":",
                          "\"feasible\": true", "\"kept\":", "\"recomputed\":"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strstr(out, keys[i])) fail_msg("plan --json lacks %s: %s", keys[i], out);
    /* a table of every strategy */
    assert_int_equal(run("plan --model cnn --batch 16 --budget 90%", out, sizeof out), 0);
    assert_non_null(strstr(out, "chen"));
    assert_non_null(strstr(out, "auto"));
    /* infeasible: exit 1 and the smallest peak that can be reached */
    assert_int_equal(run("plan --model cnn --batch 8 --budget 25%", out, sizeof out), 1);
    assert_non_null(strstr(out, "smallest reachable peak"));
    /* the whole compiled step, with its parts */
    assert_int_equal(run("plan --model cnn --batch 16 --budget 90% --strategy dp --json", out, sizeof out), 0);
    const char *skeys[] = {"\"step\": {", "\"noremat_peak_bytes\":", "\"min_peak_bytes\":",
                           "\"optim_state_bytes\":", "\"grads_bytes\":", "\"arena_bytes\":"};
    for (size_t i = 0; i < sizeof skeys / sizeof skeys[0]; i++)
        if (!strstr(out, skeys[i])) fail_msg("plan --json lacks %s: %s", skeys[i], out);
    /* the least memory: not an error */
    assert_int_equal(run("plan --model cnn --batch 16 --budget min", out, sizeof out), 0);
    assert_non_null(strstr(out, "the least memory found"));
    assert_int_equal(run("plan --model cnn --budget lots", out, sizeof out), 2);
    assert_int_equal(run("plan --model nope", out, sizeof out), 2);
    assert_int_equal(run("plan --model cnn --strategy magic", out, sizeof out), 2);
    /* a graph file with a mistake: the node is named */
    char path[] = "/tmp/dbr_cli_graph_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *bad = "{\"format\": \"dbr-graph\", \"version\": 1, \"name\": \"g\", \"nodes\": ["
                      "{\"id\": \"x\", \"op\": \"input\", \"bytes\": 64},"
                      "{\"id\": \"c\", \"op\": \"conv\", \"inputs\": [\"y\"], \"bytes\": 64}]}";
    assert_true(write(fd, bad, strlen(bad)) == (ssize_t)strlen(bad));
    close(fd);
    char args[256];
    snprintf(args, sizeof args, "plan --graph %s", path);
    assert_int_equal(run(args, out, sizeof out), 1);
    assert_non_null(strstr(out, "\"c\""));
    assert_non_null(strstr(out, "\"y\""));
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(help_texts),
        cmocka_unit_test(bad_flags_exit_2),
        cmocka_unit_test(missing_data_exit_1),
        cmocka_unit_test(short_run_json),
        cmocka_unit_test(compiled_run_json),
        cmocka_unit_test(budget_run_json),
        cmocka_unit_test(dot_draws_the_step),
        cmocka_unit_test(plan_reports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
