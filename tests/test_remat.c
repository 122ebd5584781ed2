/* test_remat.c: the recomputation planners over hand-built chains and
 * diamonds with exact peaks, and over seeded random DAGs: every strategy's
 * sequence is valid and within the budget it claims, the DP is optimal in
 * its cost model (against the same problem as a MILP), the Checkmate MILP's
 * schedule replays within its budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/remat.h"

/* The sanitizer build replays fewer random graphs: the brute-force checker
 * is O(E^2 n) and ASan multiplies its time by about five. */
#if defined(__SANITIZE_ADDRESS__)
#define RANDOM_GRAPHS 40
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RANDOM_GRAPHS 40
#endif
#endif
#ifndef RANDOM_GRAPHS
#define RANDOM_GRAPHS 120
#endif

static char err[512];

/* ---- graphs ---------------------------------------------------------------- */

typedef struct gb {
    dbr_rgraph g;
    int32_t ne;
} gb;

static void gb_init(gb *b, int32_t n, int32_t n_leaves) {
    memset(b, 0, sizeof *b);
    b->g.n = 0;
    b->g.bytes = calloc((size_t)n + 1, sizeof(int64_t));
    b->g.time = calloc((size_t)n + 1, sizeof(double));
    b->g.in_first = calloc((size_t)n + 2, sizeof(int32_t));
    b->g.ins = calloc((size_t)n * 4 + 1, sizeof(int32_t));
    b->g.retain = calloc((size_t)n + 1, sizeof(uint32_t));
    b->g.n_leaves = n_leaves;
    b->g.leaf_bytes = calloc((size_t)n_leaves + 1, sizeof(int64_t));
    b->g.leaf_is_param = calloc((size_t)n_leaves + 1, sizeof(bool));
}

/* retain: DBR_RG_RETAIN_OUT | input bits; ins: node ids or -1-leaf */
static void gb_node(gb *b, int64_t bytes, double t, uint32_t retain, int nin, const int32_t *ins) {
    int32_t i = b->g.n++;
    b->g.bytes[i] = bytes;
    b->g.time[i] = t;
    b->g.retain[i] = retain;
    for (int k = 0; k < nin; k++)
        b->g.ins[b->ne++] = ins[k];
    b->g.in_first[i + 1] = b->ne;
}

static void gb_free(gb *b) {
    free(b->g.bytes);
    free(b->g.time);
    free(b->g.in_first);
    free(b->g.ins);
    free(b->g.retain);
    free(b->g.leaf_bytes);
    free(b->g.leaf_is_param);
}

#define ALL (DBR_RG_RETAIN_OUT | 0x7fffffffu)

static void chain4(gb *b) {
    gb_init(b, 4, 2);
    b->g.leaf_bytes[0] = 5;
    b->g.leaf_bytes[1] = 7;
    b->g.leaf_is_param[1] = true;
    gb_node(b, 10, 1, ALL, 2, (int32_t[]){-1, -2});
    gb_node(b, 20, 2, ALL, 1, (int32_t[]){0});
    gb_node(b, 30, 3, ALL, 1, (int32_t[]){1});
    gb_node(b, 40, 4, ALL, 1, (int32_t[]){2});
}

/* Plan events, check them and compare the checker's peak with the plan's. */
static void assert_valid(const dbr_rgraph *g, const dbr_remat_plan *p) {
    dbr_remat_event *ev;
    int32_t E;
    assert_int_equal(dbr_remat_plan_events(g, p, &ev, &E, err, sizeof err), 0);
    int64_t peak = -1;
    if (dbr_remat_check(g, ev, E, &peak, err, sizeof err))
        fail_msg("check: %s", err);
    assert_int_equal(peak, p->peak);
    int64_t sp;
    double so;
    assert_int_equal(dbr_remat_simulate(g, p, NULL, &sp, &so, err, sizeof err), 0);
    assert_int_equal(sp, p->peak);
    assert_true(so >= 0 && so == p->overhead);
    free(ev);
}

/* ---- hand-built ------------------------------------------------------------- */

static void test_chain_none(void **st) {
    (void)st;
    gb b;
    chain4(&b);
    dbr_remat_plan p;
    assert_int_equal(dbr_remat_plan_build(&b.g, DBR_REMAT_NONE, 0, false, &p, err, sizeof err), 0);
    /* F0..F3 hold 100; BWD 3 adds the seed (40) and g2 (30) */
    assert_int_equal(p.peak, 170);
    assert_int_equal(p.total_peak, 170 + 12);
    assert_true(p.overhead == 0 && p.feasible);
    assert_valid(&b.g, &p);
    dbr_remat_trace t;
    assert_int_equal(dbr_remat_simulate(&b.g, &p, &t, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(t.n_ev, 8);
    int64_t want[] = {10, 30, 60, 100, 170, 110, 60, 20};
    for (int e = 0; e < 8; e++)
        assert_int_equal(t.live[e], want[e]);
    dbr_remat_trace_free(&t);
    dbr_remat_plan_free(&p);
    gb_free(&b);
}

static void test_chain_segments(void **st) {
    (void)st;
    gb b;
    chain4(&b);
    dbr_remat_plan p;
    assert_int_equal(dbr_remat_plan_from_segments(&b.g, (int32_t[]){0, 0, 1, 1}, 2, &p, err, sizeof err), 0);
    /* node 0 is dropped after F1 and recomputed before BWD 1 */
    assert_int_equal(p.peak, 160);
    assert_true(p.overhead == 1);
    assert_true(p.recomputed[0] && !p.recomputed[1] && p.keep[1] && !p.keep[0]);
    assert_valid(&b.g, &p);
    dbr_remat_plan_free(&p);
    /* not a chain of lower sets */
    assert_int_equal(dbr_remat_plan_from_segments(&b.g, (int32_t[]){1, 0, 1, 1}, 2, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "lower set"));
    gb_free(&b);
}

static void test_diamond(void **st) {
    (void)st;
    gb b;
    gb_init(&b, 4, 1);
    b.g.leaf_bytes[0] = 3;
    gb_node(&b, 8, 1, ALL, 1, (int32_t[]){-1});
    gb_node(&b, 4, 1, ALL, 1, (int32_t[]){0});
    gb_node(&b, 4, 1, ALL, 1, (int32_t[]){0});
    gb_node(&b, 2, 1, ALL, 2, (int32_t[]){1, 2});
    dbr_remat_plan p;
    assert_int_equal(dbr_remat_plan_build(&b.g, DBR_REMAT_NONE, 0, false, &p, err, sizeof err), 0);
    assert_int_equal(p.peak, 32); /* BWD 2: values 18 - 2, grads g1 g2 g0 */
    assert_int_equal(p.total_peak, 32 + 3);
    assert_valid(&b.g, &p);
    dbr_remat_plan_free(&p);
    /* an explicit sequence that reads a value never computed is refused */
    dbr_remat_event bad[] = {{DBR_REV_FWD, 0}, {DBR_REV_FWD, 1}, {DBR_REV_FWD, 3}, {DBR_REV_FWD, 2}};
    assert_int_equal(dbr_remat_check(&b.g, bad, 4, NULL, err, sizeof err), -1);
    dbr_remat_event bad2[] = {{DBR_REV_FWD, 0}, {DBR_REV_FWD, 1}, {DBR_REV_FWD, 2}, {DBR_REV_FWD, 3},
                              {DBR_REV_BWD, 3}, {DBR_REV_BWD, 0}, {DBR_REV_BWD, 1}, {DBR_REV_BWD, 2}};
    assert_int_equal(dbr_remat_check(&b.g, bad2, 8, NULL, err, sizeof err), -1);
    assert_int_equal(dbr_remat_simulate_events(&b.g, bad2, 8, NULL, err, sizeof err), -1);
    gb_free(&b);
}

static void test_infeasible(void **st) {
    (void)st;
    gb b;
    chain4(&b);
    for (int s = DBR_REMAT_NONE; s <= DBR_REMAT_AUTO; s++) {
        dbr_remat_plan p;
        int rc = dbr_remat_plan_build(&b.g, (dbr_remat_strategy)s, 50, false, &p, err, sizeof err);
#ifndef DBR_HAVE_GLPK
        if (s == DBR_REMAT_ILP) {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err, "without GLPK"));
            continue;
        }
#endif
        assert_int_equal(rc, 0);
        assert_false(p.feasible);
        assert_true(p.min_feasible_peak > 50);
        dbr_remat_plan_free(&p);
    }
    gb_free(&b);
}

/* ---- random DAGs ---------------------------------------------------------- */

static uint64_t rng;
static uint32_t rnd(uint32_t m) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33) % m;
}

static void random_dag(gb *b, int32_t n) {
    int32_t L = 1 + (int32_t)rnd(3);
    gb_init(b, n, L);
    for (int32_t l = 0; l < L; l++) {
        b->g.leaf_bytes[l] = 1 + rnd(50);
        b->g.leaf_is_param[l] = l > 0;
    }
    for (int32_t i = 0; i < n; i++) {
        int nin = 1 + (int)rnd(3);
        int32_t ins[3];
        for (int k = 0; k < nin; k++) {
            if (i == 0 || rnd(6) == 0)
                ins[k] = -1 - (int32_t)rnd((uint32_t)L);
            else if (rnd(3))
                ins[k] = i - 1 - (int32_t)rnd(i < 3 ? (uint32_t)i : 3); /* mostly local */
            else
                ins[k] = (int32_t)rnd((uint32_t)i);
        }
        uint32_t ret = rnd(4) ? DBR_RG_RETAIN_OUT : 0;
        ret |= rnd(8);
        gb_node(b, 1 + rnd(100), 1 + rnd(5), ret, nin, ins);
    }
}

static int64_t none_peak(const dbr_rgraph *g) {
    dbr_remat_plan p;
    assert_int_equal(dbr_remat_plan_build(g, DBR_REMAT_NONE, 0, false, &p, err, sizeof err), 0);
    int64_t pk = p.peak;
    assert_true(p.overhead == 0);
    dbr_remat_plan_free(&p);
    return pk;
}

static void test_random_strategies(void **st) {
    (void)st;
    rng = 12345;
    int plans = 0, fits = 0;
    for (int it = 0; it < RANDOM_GRAPHS; it++) {
        gb b;
        int32_t n = 5 + (int32_t)rnd(36);
        random_dag(&b, n);
        int64_t hi = none_peak(&b.g);
        dbr_remat_plan mp;
        assert_int_equal(dbr_remat_plan_build(&b.g, DBR_REMAT_DP, 0, true, &mp, err, sizeof err), 0);
        assert_valid(&b.g, &mp);
        int64_t lo = mp.peak;
        assert_true(lo <= hi);
        dbr_remat_plan_free(&mp);
        for (int k = 0; k < 3; k++) {
            int64_t budget = lo + (hi - lo) * k / 2;
            dbr_remat_strategy ss[] = {DBR_REMAT_NONE, DBR_REMAT_CHEN, DBR_REMAT_DP, DBR_REMAT_AUTO};
            for (int s = 0; s < 4; s++) {
                if (ss[s] == DBR_REMAT_AUTO && it % 5)
                    continue;
                dbr_remat_plan p;
                if (dbr_remat_plan_build(&b.g, ss[s], budget, false, &p, err, sizeof err))
                    fail_msg("graph %d strategy %s: %s", it, dbr_remat_strategy_name(ss[s]), err);
                plans++;
                assert_valid(&b.g, &p);
                assert_true(p.overhead >= 0);
                if (ss[s] == DBR_REMAT_NONE)
                    assert_true(p.overhead == 0);
                if (p.feasible) {
                    fits++;
                    assert_true(p.peak <= budget);
                } else {
                    assert_true(p.min_feasible_peak > budget);
                }
                /* the DP and auto always reach the DP's least peak */
                if (ss[s] == DBR_REMAT_DP || ss[s] == DBR_REMAT_AUTO)
                    assert_true(p.feasible);
                if (k == 2 && (ss[s] == DBR_REMAT_DP || ss[s] == DBR_REMAT_AUTO))
                    assert_true(p.overhead == 0);
                dbr_remat_plan_free(&p);
            }
        }
        gb_free(&b);
    }
    print_message("random: %d plans, %d within budget\n", plans, fits);
}

/* The DP's optimum equals the same problem's MILP optimum (same lower-set
 * family, the DP's cost model of remat.h, least overhead with model peak <=
 * budget), on graphs small enough to enumerate all lower sets. */
static void test_dp_vs_ilp_chain(void **st) {
    (void)st;
#ifndef DBR_HAVE_GLPK
    skip();
#else
    rng = 777;
    int compared = 0, exact = 0;
    for (int it = 0; it < RANDOM_GRAPHS; it++) {
        gb b;
        int32_t n = 3 + (int32_t)rnd(6);
        random_dag(&b, n);
        dbr_remat_dp_opts mo = {.memory_centric = true};
        dbr_remat_dp_result m, big;
        assert_int_equal(dbr_remat_dp(&b.g, &mo, &m, err, sizeof err), 0);
        dbr_remat_dp_opts no = {.budget = 0};
        assert_int_equal(dbr_remat_dp(&b.g, &no, &big, err, sizeof err), 0);
        assert_true(m.found && big.found);
        if (m.n_sets > 80) {
            dbr_remat_dp_result_free(&m);
            dbr_remat_dp_result_free(&big);
            gb_free(&b);
            continue;
        }
        exact += m.exact;
        for (int k = 0; k < 4; k++) {
            dbr_remat_dp_opts o = {.budget = m.model_peak - 1 + (big.model_peak - m.model_peak + 1) * k / 3};
            if (o.budget <= 0)
                o.budget = 1;
            dbr_remat_dp_result d, c;
            assert_int_equal(dbr_remat_dp(&b.g, &o, &d, err, sizeof err), 0);
            if (dbr_remat_ilp_chain(&b.g, &o, &c, err, sizeof err))
                fail_msg("ilp chain: %s", err);
            assert_int_equal(d.found, c.found);
            if (k == 0)
                assert_false(d.found); /* below the least model peak */
            if (d.found) {
                assert_true(d.model_peak <= o.budget && c.model_peak <= o.budget);
                if (d.overhead != c.overhead)
                    fail_msg("graph %d budget %lld: dp %g ilp %g", it, (long long)o.budget, d.overhead,
                             c.overhead);
                double ov;
                int64_t pk;
                assert_int_equal(dbr_remat_dp_cost(&b.g, d.seg_of, d.n_seg, &ov, &pk, err, sizeof err), 0);
                assert_true(ov == d.overhead && pk == d.model_peak);
                /* the model bounds the simulator, and its overhead is the simulator's */
                dbr_remat_plan p;
                assert_int_equal(dbr_remat_plan_from_segments(&b.g, d.seg_of, d.n_seg, &p, err, sizeof err), 0);
                assert_true(p.peak <= d.model_peak && p.overhead == d.overhead);
                dbr_remat_plan_free(&p);
                compared++;
            }
            dbr_remat_dp_result_free(&d);
            dbr_remat_dp_result_free(&c);
        }
        dbr_remat_dp_result_free(&m);
        dbr_remat_dp_result_free(&big);
        gb_free(&b);
    }
    print_message("dp vs chain milp: %d optima compared (%d exact families)\n", compared, exact);
    assert_true(compared > 100);
#endif
}

/* The Checkmate MILP: its schedule replays validly within its budget, and
 * never needs more recompute than the DP's plan when that plan also fits the
 * MILP's (stage) model -- checked here on chains, where both are exact. */
static void test_ilp_random(void **st) {
    (void)st;
#ifndef DBR_HAVE_GLPK
    skip();
#else
    rng = 4242;
    int found = 0;
    for (int it = 0; it < 20; it++) {
        gb b;
        int32_t n = 4 + (int32_t)rnd(7);
        random_dag(&b, n);
        int64_t hi = none_peak(&b.g);
        dbr_remat_plan mp;
        assert_int_equal(dbr_remat_plan_build(&b.g, DBR_REMAT_DP, 0, true, &mp, err, sizeof err), 0);
        int64_t lo = mp.peak;
        dbr_remat_plan_free(&mp);
        for (int k = 0; k < 3; k++) {
            int64_t budget = lo + (hi - lo) * k / 2;
            dbr_remat_plan p;
            if (dbr_remat_plan_build(&b.g, DBR_REMAT_ILP, budget, false, &p, err, sizeof err))
                fail_msg("ilp: %s", err);
            assert_valid(&b.g, &p);
            if (p.feasible) {
                assert_true(p.peak <= budget);
                assert_true(p.peak <= p.model_peak);
                found += p.ev != NULL;
            }
            if (k == 2)
                assert_true(p.feasible && p.overhead == 0);
            dbr_remat_plan_free(&p);
        }
        gb_free(&b);
    }
    print_message("checkmate milp: %d schedules found\n", found);
    assert_true(found > 20);
#endif
}

/* dp and auto are never worse than chen: within the budget with no more
 * recompute when chen fits, a peak no larger when chen does not; and the DP's
 * cost model bounds the simulator on arbitrary chains (chen's among them). */
static void test_dp_not_worse_than_chen(void **st) {
    (void)st;
    rng = 9090;
    int compared = 0, dp_better = 0;
    for (int it = 0; it < RANDOM_GRAPHS / 2; it++) {
        gb b;
        int32_t n = 5 + (int32_t)rnd(60);
        random_dag(&b, n);
        int64_t hi = none_peak(&b.g);
        dbr_remat_plan mp;
        assert_int_equal(dbr_remat_plan_build(&b.g, DBR_REMAT_DP, 0, true, &mp, err, sizeof err), 0);
        int64_t lo = mp.peak;
        dbr_remat_plan_free(&mp);
        for (int k = 0; k < 5; k++) {
            int64_t budget = lo + (hi - lo) * k / 4 - (k == 0);
            if (budget <= 0)
                budget = 1;
            dbr_remat_plan c;
            assert_int_equal(dbr_remat_plan_build(&b.g, DBR_REMAT_CHEN, budget, false, &c, err, sizeof err), 0);
            double ov;
            int64_t model;
            assert_int_equal(dbr_remat_dp_cost(&b.g, c.seg_of, c.n_seg, &ov, &model, err, sizeof err), 0);
            assert_true(model >= c.peak && ov == c.overhead);
            dbr_remat_strategy ss[] = {DBR_REMAT_DP, DBR_REMAT_AUTO};
            for (int s = 0; s < 2; s++) {
                if (ss[s] == DBR_REMAT_AUTO && it % 3)
                    continue;
                dbr_remat_plan p;
                assert_int_equal(dbr_remat_plan_build(&b.g, ss[s], budget, false, &p, err, sizeof err), 0);
                if (c.feasible) {
                    assert_true(p.feasible && p.peak <= budget);
                    if (p.overhead > c.overhead)
                        fail_msg("graph %d budget %lld: %s %g > chen %g", it, (long long)budget,
                                 dbr_remat_strategy_name(ss[s]), p.overhead, c.overhead);
                    dp_better += p.overhead < c.overhead;
                } else {
                    assert_true(p.feasible || p.peak <= c.peak);
                }
                compared++;
                dbr_remat_plan_free(&p);
            }
            dbr_remat_plan_free(&c);
        }
        gb_free(&b);
    }
    print_message("dp/auto vs chen: %d plans compared, %d with less recompute\n", compared, dp_better);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_none),      cmocka_unit_test(test_chain_segments),
        cmocka_unit_test(test_diamond),         cmocka_unit_test(test_infeasible),
        cmocka_unit_test(test_random_strategies), cmocka_unit_test(test_dp_vs_ilp_chain),
        cmocka_unit_test(test_ilp_random),      cmocka_unit_test(test_dp_not_worse_than_chen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
