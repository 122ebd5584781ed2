/* test_plan_sweep.c: `dbr plan --sweep`: the table, the SVG plot (written
 * whole or not at all), the JSON points, and errors with the path named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef DBR_CLI
#error "DBR_CLI (the path of the dbr binary) must be defined by the build"
#endif

/* Runs `dbr <args>`; returns the exit status and stdout (+ stderr unless
 * split) in out. */
static int run(const char *args, bool with_stderr, char *out, size_t n) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s%s", DBR_CLI, args, with_stderr ? " 2>&1" : " 2>/dev/null");
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t len = fread(out, 1, n - 1, p);
    out[len] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char out[1 << 18];
static char text[1 << 20];

static size_t slurp(const char *path) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    return n;
}

/* Is there a <polyline ...> tag naming strategy s? */
static bool has_polyline(const char *svg, const char *s) {
    char want[64];
    snprintf(want, sizeof want, "data-strategy=\"%s\"", s);
    for (const char *p = strstr(svg, "<polyline"); p; p = strstr(p + 1, "<polyline")) {
        const char *end = strchr(p, '>');
        const char *a = strstr(p, want);
        if (end && a && a < end) {
            const char *pts = strstr(p, "points=\"");
            return pts && pts < end && pts[8] != '"'; /* at least one point */
        }
    }
    return false;
}

static void sweep_table_and_svg(void **state) {
    (void)state;
    char dir[] = "/tmp/dbr_sweep_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], args[512];
    snprintf(path, sizeof path, "%s/p.svg", dir);
    snprintf(args, sizeof args, "plan --model cnn --batch 8 --sweep -o %s", path);
    int rc = run(args, true, out, sizeof out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    /* the table: a row per budget, each strategy's columns, '-' for no fit */
    assert_non_null(strstr(out, "budget"));
    assert_non_null(strstr(out, "dp peak"));
    assert_non_null(strstr(out, "chen peak"));
    assert_non_null(strstr(out, " - "));
    assert_true(slurp(path) > 0);
    assert_true(!strncmp(text, "<svg", 4) || !strncmp(text, "<?xml", 5));
    assert_non_null(strstr(text, "</svg>"));
    if (!has_polyline(text, "dp")) fail_msg("no dp polyline in %s", path);
    if (!has_polyline(text, "chen")) fail_msg("no chen polyline in %s", path);
    /* legend, title with the model, axis labels */
    assert_non_null(strstr(text, "class=\"legend\""));
    assert_non_null(strstr(text, ">dp</text>"));
    assert_non_null(strstr(text, ">chen</text>"));
    assert_non_null(strstr(text, "cnn</text>"));
    assert_non_null(strstr(text, "peak memory"));
    assert_non_null(strstr(text, "MiB"));
    assert_non_null(strstr(text, "extra forward time"));
    remove(path);
    /* nothing but the plot is left behind (no temporary) */
    snprintf(args, sizeof args, "ls -A %s", dir);
    FILE *p = popen(args, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    pclose(p);
    assert_int_equal(n, 0);
    rmdir(dir);
}

static void sweep_json_budgets_increase(void **state) {
    (void)state;
    int rc = run("plan --model cnn --batch 8 --sweep --json", false, out, sizeof out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    assert_int_equal(out[0], '{');
    assert_non_null(strstr(out, "\"name\": \"cnn\""));
    const char *p = strstr(out, "\"sweep\": [");
    assert_non_null(p);
    long long prev = -1;
    int budgets = 0, entries = 0, dp_feasible = 0;
    for (p = strchr(p, '{'); p; p = strchr(p + 1, '{')) {
        const char *b = strstr(p, "\"budget_bytes\": ");
        const char *end = strchr(p, '}');
        assert_non_null(b);
        assert_non_null(end);
        assert_true(b < end);
        const char *keys[] = {"\"strategy\": \"", "\"peak_bytes\": ", "\"overhead_pct\": ",
                              "\"feasible\": "};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            const char *q = strstr(p, keys[k]);
            if (!q || q > end) fail_msg("sweep entry lacks %s: %.*s", keys[k], (int)(end - p + 1), p);
        }
        long long v = atoll(b + 16);
        assert_true(v >= prev); /* entries by budget */
        if (v > prev) budgets++;
        prev = v;
        entries++;
        const char *s = strstr(p, "\"strategy\": \"dp\"");
        const char *f = strstr(p, "\"feasible\": true");
        dp_feasible += s && s < end && f && f < end;
    }
    assert_true(budgets >= 2);
    assert_true(entries >= 2 * budgets); /* none, chen, dp at least */
    assert_int_equal(dp_feasible, budgets); /* dp fits from the least peak up */
}

static void sweep_errors(void **state) {
    (void)state;
    const char *bad = "/nonexistent-dir/p.svg";
    char args[512];
    snprintf(args, sizeof args, "plan --model cnn --batch 8 --sweep -o %s", bad);
    assert_int_equal(run(args, true, out, sizeof out), 1);
    assert_non_null(strstr(out, bad));
    assert_int_not_equal(access(bad, F_OK), 0);
    /* not an SVG name: exit 1, nothing written */
    char dir[] = "/tmp/dbr_sweep_XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(args, sizeof args, "plan --model cnn --sweep -o %s/p.png", dir);
    assert_int_equal(run(args, true, out, sizeof out), 1);
    assert_non_null(strstr(out, "p.png"));
    assert_int_equal(rmdir(dir), 0); /* empty */
    /* -o without --sweep, --budget with --sweep: bad flags */
    assert_int_equal(run("plan --model cnn -o x.svg", true, out, sizeof out), 2);
    assert_int_equal(run("plan --model cnn --sweep --budget 50%", true, out, sizeof out), 2);
    /* --help explains it */
    assert_int_equal(run("plan --help", true, out, sizeof out), 0);
    assert_non_null(strstr(out, "--sweep"));
    assert_non_null(strstr(out, "-o PLOT.svg"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sweep_table_and_svg),
        cmocka_unit_test(sweep_json_budgets_increase),
        cmocka_unit_test(sweep_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
