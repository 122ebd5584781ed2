/* test_graph_json.c: graph files (docs/graph-format.md) read into dbr_rgraph:
 * every field and default of a small graph, a fixture file from
 * tests/data/graphs, and one case per kind of mistake, each of which must
 * fail with a message naming the file, the node and the problem. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/graph_json.h"

#define HEAD "{\"format\": \"dbr-graph\", \"version\": 1, \"name\": \"t\", \"nodes\": ["
#define TAIL "]}"
#define X "{\"id\": \"x\", \"op\": \"input\", \"bytes\": 16}"
#define W "{\"id\": \"w\", \"op\": \"param\", \"bytes\": 8}"
#define C(rest) "{\"id\": \"c\", \"op\": \"Mul\", " rest "}"
#define OK_C C("\"inputs\": [\"x\", \"w\"], \"bytes\": 16")

static int parse(const char *text, dbr_rgraph *g, char *err, size_t errlen) {
    return dbr_rgraph_parse_json(text, strlen(text), "g.json", g, err, errlen);
}

/* ---- valid graphs ------------------------------------------------------------ */

static void test_small_graph(void **state) {
    (void)state;
    const char *text = HEAD
        "{\"id\": \"x\", \"op\": \"input\", \"bytes\": 19267584},"
        "{\"id\": \"w\", \"op\": \"param\", \"bytes\": 37632},"
        "{\"id\": \"c1\", \"op\": \"Convolution2D\", \"inputs\": [\"x\", \"w\"],"
        " \"bytes\": 102760448, \"time\": 10, \"retain_inputs\": [1, 0], \"retain_output\": false},"
        "{\"id\": \"b\", \"op\": \"param\", \"bytes\": 0},"
        "{\"id\": \"r\", \"op\": \"ReLU\", \"inputs\": [\"c1\"], \"bytes\": 102760448,"
        " \"time\": 0.25, \"retain_inputs\": []},"
        "{\"id\": \"s\", \"op\": \"Add\", \"inputs\": [\"r\", \"b\", \"x\", \"r\"], \"bytes\": 7},"
        "{\"id\": \"k\", \"op\": \"Const\", \"inputs\": [], \"bytes\": 4, \"retain_output\": true}"
        TAIL;
    dbr_rgraph g;
    char err[256] = "untouched";
    assert_int_equal(parse(text, &g, err, sizeof err), 0);
    assert_string_equal(err, "");

    assert_int_equal(g.n_leaves, 3);
    assert_string_equal(g.leaf_id[0], "x");
    assert_string_equal(g.leaf_id[1], "w");
    assert_string_equal(g.leaf_id[2], "b");
    assert_true(g.leaf_bytes[0] == 19267584 && g.leaf_bytes[1] == 37632 && g.leaf_bytes[2] == 0);
    assert_false(g.leaf_is_param[0]);
    assert_true(g.leaf_is_param[1]);
    assert_true(g.leaf_is_param[2]);

    assert_int_equal(g.n, 4);
    const char *ids[] = {"c1", "r", "s", "k"}, *ops[] = {"Convolution2D", "ReLU", "Add", "Const"};
    const int64_t bytes[] = {102760448, 102760448, 7, 4};
    const double times[] = {10, 0.25, 1, 1};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(g.id[i], ids[i]);
        assert_string_equal(g.op[i], ops[i]);
        assert_true(g.bytes[i] == bytes[i]);
        assert_true(g.time[i] == times[i]);
    }
    const int32_t in_first[] = {0, 2, 3, 7, 7};
    for (int i = 0; i <= 4; i++) assert_int_equal(g.in_first[i], in_first[i]);
    const int32_t ins[] = {-1, -2, 0, 1, -3, -1, 1};
    for (int k = 0; k < 7; k++) assert_int_equal(g.ins[k], ins[k]);
    assert_int_equal(g.retain[0], 0x3u);                     /* retain_output false */
    assert_int_equal(g.retain[1], DBR_RG_RETAIN_OUT);        /* [] and the default output */
    assert_int_equal(g.retain[2], 0xFu | DBR_RG_RETAIN_OUT); /* defaults: all inputs, output */
    assert_int_equal(g.retain[3], DBR_RG_RETAIN_OUT);
    dbr_rgraph_free(&g);
    assert_int_equal(g.n, 0);
    assert_null(g.id);
    dbr_rgraph_free(&g); /* twice is harmless */
}

/* 31 inputs fit the retain mask; the text need not end in a NUL. */
static void test_most_inputs(void **state) {
    (void)state;
    char text[2048];
    int k = snprintf(text, sizeof text, HEAD X ", {\"id\": \"c\", \"op\": \"Concat\", \"inputs\": [");
    for (int i = 0; i < 31; i++) k += snprintf(text + k, sizeof text - (size_t)k, "%s\"x\"", i ? "," : "");
    k += snprintf(text + k, sizeof text - (size_t)k, "], \"bytes\": 496}" TAIL "garbage");
    dbr_rgraph g;
    char err[256];
    int rc = dbr_rgraph_parse_json(text, (size_t)k - strlen("garbage"), "g.json", &g, err, sizeof err);
    if (rc) fail_msg("%s", err);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.in_first[1], 31);
    assert_int_equal(g.retain[0], 0x7FFFFFFFu | DBR_RG_RETAIN_OUT);
    dbr_rgraph_free(&g);
}

static void test_fixture_file(void **state) {
    (void)state;
    dbr_rgraph g;
    char err[512];
    int rc = dbr_rgraph_load_json(DBR_SOURCE_DIR "/tests/data/graphs/resnet_tiny.json", &g, err,
                                  sizeof err);
    if (rc) fail_msg("%s", err);
    assert_int_equal(g.n, 16);
    assert_int_equal(g.n_leaves, 11);
    int64_t node_bytes = 0, param_bytes = 0, input_bytes = 0;
    double time = 0;
    for (int32_t i = 0; i < g.n; i++) {
        node_bytes += g.bytes[i];
        time += g.time[i];
        assert_true(g.in_first[i] <= g.in_first[i + 1]);
        for (int32_t k = g.in_first[i]; k < g.in_first[i + 1]; k++)
            assert_true(g.ins[k] < i && g.ins[k] >= -g.n_leaves);
    }
    for (int32_t l = 0; l < g.n_leaves; l++)
        *(g.leaf_is_param[l] ? &param_bytes : &input_bytes) += g.leaf_bytes[l];
    assert_true(node_bytes == 6816580);
    assert_true(param_bytes == 39400);
    assert_true(input_bytes == 98368);
    assert_true(fabs(time - 62.45) < 1e-9);

    /* b1.add reads b1.conv2 and the stem's ReLU, retains neither */
    int32_t add = -1;
    for (int32_t i = 0; i < g.n; i++)
        if (strcmp(g.id[i], "b1.add") == 0) add = i;
    assert_true(add >= 0);
    assert_string_equal(g.op[add], "Add");
    assert_int_equal(g.in_first[add + 1] - g.in_first[add], 2);
    assert_string_equal(g.id[g.ins[g.in_first[add]]], "b1.conv2");
    assert_string_equal(g.id[g.ins[g.in_first[add] + 1]], "stem.relu");
    assert_int_equal(g.retain[add], 0);
    /* the loss reads the label input (leaf 1), retains both and its output */
    assert_string_equal(g.id[g.n - 1], "loss");
    assert_int_equal(g.ins[g.in_first[g.n - 1] + 1], -1 - 1);
    assert_string_equal(g.leaf_id[1], "label");
    assert_int_equal(g.retain[g.n - 1], 0x3u | DBR_RG_RETAIN_OUT);
    dbr_rgraph_free(&g);
}

static void test_missing_file(void **state) {
    (void)state;
    dbr_rgraph g;
    char err[256];
    assert_int_equal(dbr_rgraph_load_json("/nonexistent/g.json", &g, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/g.json: cannot open: No such file"));
    assert_int_equal(g.n, 0);
    assert_int_equal(dbr_rgraph_load_json(DBR_SOURCE_DIR "/tests", &g, err, sizeof err), -1);
    assert_non_null(strstr(err, "/tests: cannot read: Is a directory"));
}

/* ---- mistakes: one case each ----------------------------------------------------- */

typedef struct bad_case {
    const char *name;
    const char *text;
    const char *frags[4]; /* each must appear in the message */
} bad_case;

static const bad_case bad_cases[] = {
    {"not_json", "{\"format\": \"dbr-graph\",\n  \"version\": 1,,\n \"nodes\": []}",
     {"g.json:2:16: not valid JSON", "near ','"}},
    {"empty_text", "", {"g.json:", "not valid JSON"}},
    {"duplicate_key", "{\"format\": \"dbr-graph\", \"format\": \"dbr-graph\"}",
     {"not valid JSON", "duplicate object key"}},
    {"top_not_object", "[" X "]", {"g.json: the top level is an array, not an object"}},
    {"missing_format", "{\"version\": 1, \"nodes\": []}", {"g.json: missing \"format\""}},
    {"wrong_format", "{\"format\": \"onnx\", \"version\": 1, \"nodes\": []}",
     {"g.json: \"format\" is the string \"onnx\", not \"dbr-graph\""}},
    {"missing_version", "{\"format\": \"dbr-graph\", \"nodes\": []}",
     {"g.json: missing \"version\""}},
    {"version_not_integer", "{\"format\": \"dbr-graph\", \"version\": \"1\", \"nodes\": []}",
     {"g.json: \"version\" is the string \"1\", not an integer"}},
    {"unsupported_version", "{\"format\": \"dbr-graph\", \"version\": 2, \"nodes\": []}",
     {"g.json: unsupported version 2 (this reader knows version 1)"}},
    {"unknown_top_field", "{\"format\": \"dbr-graph\", \"version\": 1, \"node\": []}",
     {"g.json: unknown field \"node\" (did you mean \"nodes\"?)"}},
    {"name_not_string", "{\"format\": \"dbr-graph\", \"version\": 1, \"name\": 3, \"nodes\": []}",
     {"g.json: \"name\" is 3, not a string"}},
    {"missing_nodes", "{\"format\": \"dbr-graph\", \"version\": 1}", {"g.json: missing \"nodes\""}},
    {"nodes_not_array", "{\"format\": \"dbr-graph\", \"version\": 1, \"nodes\": {}}",
     {"g.json: \"nodes\" is an object, not an array"}},
    {"empty_nodes", HEAD TAIL, {"g.json: no compute nodes (\"nodes\" is empty)"}},
    {"only_leaves", HEAD X "," W TAIL, {"g.json: no compute nodes (only inputs and parameters)"}},
    {"node_not_object", HEAD X ", 5" TAIL, {"g.json: nodes[1]: is 5, not an object"}},
    {"missing_id", HEAD X ", {\"op\": \"ReLU\", \"inputs\": [\"x\"], \"bytes\": 4}" TAIL,
     {"g.json: nodes[1]: missing \"id\""}},
    {"id_not_string", HEAD X ", {\"id\": 7, \"op\": \"input\", \"bytes\": 4}" TAIL,
     {"g.json: nodes[1]: \"id\" is 7, not a string"}},
    {"id_empty", HEAD X ", {\"id\": \"\", \"op\": \"input\", \"bytes\": 4}" TAIL,
     {"g.json: nodes[1]: \"id\" is empty"}},
    {"duplicate_id", HEAD X "," W ", {\"id\": \"x\", \"op\": \"input\", \"bytes\": 4}" TAIL,
     {"g.json: nodes[2] (\"x\"): duplicate id: nodes[0] has it too"}},
    {"missing_op", HEAD X ", {\"id\": \"c\", \"inputs\": [\"x\"], \"bytes\": 4}" TAIL,
     {"g.json: nodes[1] (\"c\"): missing \"op\""}},
    {"op_not_string", HEAD X ", {\"id\": \"c\", \"op\": null, \"inputs\": [\"x\"], \"bytes\": 4}" TAIL,
     {"g.json: nodes[1] (\"c\"): \"op\" is null, not a string"}},
    {"op_empty", HEAD X ", {\"id\": \"c\", \"op\": \"\", \"inputs\": [\"x\"], \"bytes\": 4}" TAIL,
     {"g.json: nodes[1] (\"c\"): \"op\" is empty"}},
    {"bytes_missing", HEAD X "," W "," C("\"inputs\": [\"x\"]") TAIL,
     {"g.json: nodes[2] (\"c\"): missing \"bytes\""}},
    {"leaf_bytes_missing", HEAD "{\"id\": \"x\", \"op\": \"input\"}" TAIL,
     {"g.json: nodes[0] (\"x\"): missing \"bytes\""}},
    {"bytes_negative", HEAD X "," W "," C("\"inputs\": [\"x\"], \"bytes\": -4") TAIL,
     {"g.json: nodes[2] (\"c\"): \"bytes\" is -4; it must be >= 0"}},
    {"bytes_not_integer", HEAD X "," W "," C("\"inputs\": [\"x\"], \"bytes\": 4.5") TAIL,
     {"g.json: nodes[2] (\"c\"): \"bytes\" is 4.5, not an integer"}},
    {"bytes_string", HEAD "{\"id\": \"x\", \"op\": \"input\", \"bytes\": \"16\"}" TAIL,
     {"g.json: nodes[0] (\"x\"): \"bytes\" is the string \"16\", not an integer"}},
    {"bytes_too_many",
     HEAD "{\"id\": \"x\", \"op\": \"input\", \"bytes\": 4611686018427387904},"
          "{\"id\": \"y\", \"op\": \"Neg\", \"inputs\": [\"x\"], \"bytes\": 1}" TAIL,
     {"g.json: nodes[1] (\"y\"): the graph's bytes add up to more than 2^62"}},
    {"input_unknown", HEAD X "," W "," C("\"inputs\": [\"x\", \"y\"], \"bytes\": 4") TAIL,
     {"g.json: nodes[2] (\"c\"): input \"y\" (inputs[1]) is not defined"}},
    {"input_defined_later",
     HEAD X "," C("\"inputs\": [\"x\", \"d\"], \"bytes\": 4") "," W
          ", {\"id\": \"d\", \"op\": \"Neg\", \"inputs\": [\"x\"], \"bytes\": 4}" TAIL,
     {"g.json: nodes[1] (\"c\"): input \"d\" (inputs[1]) is defined later, at nodes[3]"}},
    {"input_self", HEAD X "," C("\"inputs\": [\"x\", \"c\"], \"bytes\": 4") TAIL,
     {"g.json: nodes[1] (\"c\"): inputs[1] names the node itself"}},
    {"inputs_missing", HEAD X "," C("\"bytes\": 4") TAIL,
     {"g.json: nodes[1] (\"c\"): missing \"inputs\""}},
    {"inputs_not_array", HEAD X "," C("\"inputs\": \"x\", \"bytes\": 4") TAIL,
     {"g.json: nodes[1] (\"c\"): \"inputs\" is the string \"x\", not an array of ids"}},
    {"inputs_not_strings", HEAD X "," C("\"inputs\": [\"x\", 0], \"bytes\": 4") TAIL,
     {"g.json: nodes[1] (\"c\"): inputs[1] is 0, not an id string"}},
    {"too_many_inputs",
     HEAD X "," C("\"inputs\": [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\","
                  "\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\","
                  "\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"], \"bytes\": 4") TAIL,
     {"g.json: nodes[1] (\"c\"): has 32 inputs; at most 31", "retain mask"}},
    {"time_zero", HEAD X "," W "," C("\"inputs\": [\"x\"], \"bytes\": 4, \"time\": 0") TAIL,
     {"g.json: nodes[2] (\"c\"): \"time\" is 0; it must be > 0"}},
    {"time_negative", HEAD X "," W "," C("\"inputs\": [\"x\"], \"bytes\": 4, \"time\": -0.5") TAIL,
     {"g.json: nodes[2] (\"c\"): \"time\" is -0.5; it must be > 0"}},
    {"time_not_number", HEAD X "," W "," C("\"inputs\": [\"x\"], \"bytes\": 4, \"time\": \"fast\"") TAIL,
     {"g.json: nodes[2] (\"c\"): \"time\" is the string \"fast\", not a number"}},
    {"retain_out_of_range", HEAD X "," W "," OK_C ","
         "{\"id\": \"d\", \"op\": \"Sub\", \"inputs\": [\"c\", \"x\"], \"bytes\": 4,"
         " \"retain_inputs\": [0, 2]}" TAIL,
     {"g.json: nodes[3] (\"d\"): retain_inputs[1] is 2, not a position of the node's 2 inputs"}},
    {"retain_negative", HEAD X "," C("\"inputs\": [\"x\"], \"bytes\": 4, \"retain_inputs\": [-1]") TAIL,
     {"g.json: nodes[1] (\"c\"): retain_inputs[0] is -1, not a position of the node's 1 inputs"}},
    {"retain_not_integers", HEAD X "," C("\"inputs\": [\"x\"], \"bytes\": 4, \"retain_inputs\": [\"0\"]") TAIL,
     {"g.json: nodes[1] (\"c\"): retain_inputs[0] is the string \"0\", not an input position"}},
    {"retain_duplicated", HEAD X "," W "," C("\"inputs\": [\"x\", \"w\"], \"bytes\": 4, \"retain_inputs\": [1, 0, 1]") TAIL,
     {"g.json: nodes[2] (\"c\"): retain_inputs lists position 1 twice"}},
    {"retain_not_array", HEAD X "," C("\"inputs\": [\"x\"], \"bytes\": 4, \"retain_inputs\": 0") TAIL,
     {"g.json: nodes[1] (\"c\"): \"retain_inputs\" is 0, not an array of input positions"}},
    {"retain_output_not_bool", HEAD X "," C("\"inputs\": [\"x\"], \"bytes\": 4, \"retain_output\": 1") TAIL,
     {"g.json: nodes[1] (\"c\"): \"retain_output\" is 1, not true or false"}},
    {"unknown_field_typo", HEAD X "," C("\"inputs\": [\"x\"], \"bytes\": 4, \"retain_input\": [0]") TAIL,
     {"g.json: nodes[1] (\"c\"): unknown field \"retain_input\" (did you mean \"retain_inputs\"?)"}},
    {"unknown_field", HEAD X "," C("\"inputs\": [\"x\"], \"bytes\": 4, \"dtype\": \"f32\"") TAIL,
     {"g.json: nodes[1] (\"c\"): unknown field \"dtype\" (known fields: id, op, bytes, inputs"}},
    {"leaf_with_inputs", HEAD X ", {\"id\": \"w\", \"op\": \"param\", \"inputs\": [\"x\"], \"bytes\": 4}" TAIL,
     {"g.json: nodes[1] (\"w\"): \"param\" nodes take no \"inputs\""}},
    {"leaf_with_retain", HEAD "{\"id\": \"x\", \"op\": \"input\", \"bytes\": 4, \"retain_output\": false}" TAIL,
     {"g.json: nodes[0] (\"x\"): \"retain_output\" applies only to compute nodes, not to \"input\" nodes"}},
};

static void test_bad(void **state) {
    const bad_case *c = *state;
    dbr_rgraph g;
    memset(&g, 0xAB, sizeof g); /* the call must zero it on failure */
    char err[512] = "";
    assert_int_equal(parse(c->text, &g, err, sizeof err), -1);
    print_message("    %s\n", err);
    for (int k = 0; k < 4 && c->frags[k]; k++)
        if (!strstr(err, c->frags[k])) fail_msg("'%s' missing from: %s", c->frags[k], err);
    assert_int_equal(g.n, 0);
    assert_int_equal(g.n_leaves, 0);
    assert_null(g.id);
    assert_null(g.ins);
    assert_null(g.leaf_id);
    /* a short buffer truncates, never overflows */
    char small[8];
    assert_int_equal(parse(c->text, &g, small, sizeof small), -1);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(parse(c->text, &g, NULL, 0), -1);
}

/* A long id is shortened in messages. */
static void test_long_id(void **state) {
    (void)state;
    char text[1024], id[301];
    memset(id, 'a', 300);
    id[300] = 0;
    snprintf(text, sizeof text, HEAD "{\"id\": \"%s\", \"op\": \"input\"}" TAIL, id);
    dbr_rgraph g;
    char err[512];
    assert_int_equal(parse(text, &g, err, sizeof err), -1);
    assert_non_null(strstr(err, "aaaa...\"): missing \"bytes\""));
    assert_true(strlen(err) < 200);
}

int main(void) {
    enum { N_BAD = sizeof bad_cases / sizeof bad_cases[0] };
    struct CMUnitTest tests[N_BAD + 5] = {
        cmocka_unit_test(test_small_graph), cmocka_unit_test(test_most_inputs),
        cmocka_unit_test(test_fixture_file), cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_long_id),
    };
    for (int i = 0; i < N_BAD; i++)
        tests[5 + i] = (struct CMUnitTest){.name = bad_cases[i].name,
                                           .test_func = test_bad,
                                           .initial_state = (void *)&bad_cases[i]};
    return _cmocka_run_group_tests("graph_json", tests, N_BAD + 5, NULL, NULL);
}
