/* graph_json.c: the "dbr-graph" JSON format (docs/graph-format.md) read into
 * a dbr_rgraph with jansson, one pass over the nodes in file order, each
 * mistake reported with the file, the node's index and id; and
 * dbr_rgraph_free. */
#include "passes/graph_json.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUTS 31                /* retain bits 0..30; bit 31 is DBR_RG_RETAIN_OUT */
#define MAX_TOTAL_BYTES (INT64_C(1) << 62) /* planners may add forward and gradient bytes */
#define ID_SHOWN 80                  /* longest id (in bytes) quoted in a message */

void dbr_rgraph_free(dbr_rgraph *g) {
    if (!g) return;
    for (int32_t i = 0; i < g->n; i++) {
        if (g->id) free(g->id[i]);
        if (g->op) free(g->op[i]);
    }
    for (int32_t l = 0; l < g->n_leaves; l++)
        if (g->leaf_id) free(g->leaf_id[l]);
    free(g->id);
    free(g->op);
    free(g->bytes);
    free(g->time);
    free(g->in_first);
    free(g->ins);
    free(g->retain);
    free(g->leaf_id);
    free(g->leaf_bytes);
    free(g->leaf_is_param);
    memset(g, 0, sizeof *g);
}

/* ---- messages -------------------------------------------------------------- */

typedef struct loader {
    const char *file;
    char *err;
    size_t errlen;
    json_t *nodes;     /* the "nodes" array */
    json_t *seen;      /* id -> its position in "nodes", for ids already accepted */
    int32_t *code;     /* per position in "nodes": node index, or -1-leaf */
    int32_t cap_ins;
    int64_t total_bytes;
    dbr_rgraph *g;
} loader;

/* Writes "file: nodes[pos] ("id"): message" (pos < 0: no node part). */
static int fail(loader *L, long pos, const char *id, const char *fmt, ...) {
    if (!L->err || L->errlen == 0) return -1;
    int k;
    if (pos < 0) {
        k = snprintf(L->err, L->errlen, "%s: ", L->file);
    } else if (id) {
        k = snprintf(L->err, L->errlen, "%s: nodes[%ld] (\"%.*s%s\"): ", L->file, pos, ID_SHOWN, id,
                     strlen(id) > ID_SHOWN ? "..." : "");
    } else {
        k = snprintf(L->err, L->errlen, "%s: nodes[%ld]: ", L->file, pos);
    }
    if (k >= 0 && (size_t)k < L->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(L->err + k, L->errlen - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* What a JSON value is, for "X is <what>, not Y" messages. */
static const char *describe(const json_t *v, char *buf, size_t len) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING:
        snprintf(buf, len, "the string \"%.40s%s\"", json_string_value(v),
                 json_string_length(v) > 40 ? "..." : "");
        return buf;
    case JSON_INTEGER: snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); return buf;
    case JSON_REAL: snprintf(buf, len, "%.17g", json_real_value(v)); return buf;
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "a JSON value";
}

/* Levenshtein distance, capped: small typos of field names get a hint. */
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 31 || lb > 31) return 99;
    int row[32];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const char *const top_fields[] = {"format", "version", "name", "nodes", NULL};
static const char *const node_fields[] = {"id",   "op",            "bytes",         "inputs",
                                          "time", "retain_inputs", "retain_output", NULL};

/* The first key of obj not in known, or NULL; *hint gets the nearest known
 * name when it is a likely typo. */
static const char *unknown_field(json_t *obj, const char *const *known, const char **hint) {
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        bool ok = false;
        for (int i = 0; known[i]; i++) ok = ok || strcmp(key, known[i]) == 0;
        if (ok) continue;
        *hint = NULL;
        int best = 3;
        for (int i = 0; known[i]; i++) {
            int d = edit_distance(key, known[i]);
            if (d < best) best = d, *hint = known[i];
        }
        return key;
    }
    return NULL;
}

static int fail_unknown(loader *L, long pos, const char *id, const char *key, const char *hint,
                        const char *const *known) {
    char list[128] = "";
    for (int i = 0; known[i]; i++) {
        size_t k = strlen(list);
        snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", known[i]);
    }
    if (hint)
        return fail(L, pos, id, "unknown field \"%.40s\" (did you mean \"%s\"?)", key, hint);
    return fail(L, pos, id, "unknown field \"%.40s\" (known fields: %s)", key, list);
}

/* ---- nodes ----------------------------------------------------------------- */

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* The position in "nodes" after pos of an object whose "id" is id, or -1. */
static long find_later(const loader *L, size_t pos, const char *id) {
    for (size_t p = pos; p < json_array_size(L->nodes); p++) {
        json_t *jid = json_object_get(json_array_get(L->nodes, p), "id");
        if (json_is_string(jid) && strcmp(json_string_value(jid), id) == 0) return (long)p;
    }
    return -1;
}

static int read_bytes(loader *L, long pos, const char *id, json_t *nd, int64_t *bytes) {
    char buf[80];
    json_t *jb = json_object_get(nd, "bytes");
    if (!jb) return fail(L, pos, id, "missing \"bytes\" (the size of the node's output)");
    if (!json_is_integer(jb))
        return fail(L, pos, id, "\"bytes\" is %s, not an integer", describe(jb, buf, sizeof buf));
    json_int_t b = json_integer_value(jb);
    if (b < 0) return fail(L, pos, id, "\"bytes\" is %" JSON_INTEGER_FORMAT "; it must be >= 0", b);
    if (b > MAX_TOTAL_BYTES - L->total_bytes)
        return fail(L, pos, id, "the graph's bytes add up to more than 2^62 at this node");
    L->total_bytes += b;
    *bytes = b;
    return 0;
}

static int add_leaf(loader *L, long pos, const char *id, const char *op, json_t *nd) {
    static const char *const compute_only[] = {"time", "retain_inputs", "retain_output", NULL};
    if (json_object_get(nd, "inputs"))
        return fail(L, pos, id, "\"%s\" nodes take no \"inputs\" (only compute nodes have them)",
                    op);
    for (int i = 0; compute_only[i]; i++)
        if (json_object_get(nd, compute_only[i]))
            return fail(L, pos, id, "\"%s\" applies only to compute nodes, not to \"%s\" nodes",
                        compute_only[i], op);
    int64_t bytes = 0;
    if (read_bytes(L, pos, id, nd, &bytes)) return -1;
    dbr_rgraph *g = L->g;
    int32_t l = g->n_leaves;
    g->leaf_id[l] = dup_str(id);
    if (!g->leaf_id[l]) return fail(L, pos, id, "out of memory");
    g->leaf_bytes[l] = bytes;
    g->leaf_is_param[l] = strcmp(op, "param") == 0;
    g->n_leaves++;
    L->code[pos] = -1 - l;
    return 0;
}

/* Appends the node's inputs to g->ins; *n_in gets their count. */
static int read_inputs(loader *L, long pos, const char *id, json_t *nd, size_t *n_in) {
    char buf[80];
    dbr_rgraph *g = L->g;
    json_t *ji = json_object_get(nd, "inputs");
    if (!ji)
        return fail(L, pos, id,
                    "missing \"inputs\" (the ids this compute node reads; [] for none)");
    if (!json_is_array(ji))
        return fail(L, pos, id, "\"inputs\" is %s, not an array of ids",
                    describe(ji, buf, sizeof buf));
    size_t n = json_array_size(ji);
    if (n > MAX_INPUTS)
        return fail(L, pos, id, "has %zu inputs; at most %d are allowed (the retain mask's limit)",
                    n, MAX_INPUTS);
    int32_t at = g->in_first[g->n];
    if ((int64_t)at + (int64_t)n > INT32_MAX) return fail(L, pos, id, "too many inputs in all");
    if (at + (int32_t)n > L->cap_ins) {
        int32_t cap = L->cap_ins ? L->cap_ins : 64;
        while (cap < at + (int32_t)n) cap = cap > INT32_MAX / 2 ? INT32_MAX : cap * 2;
        int32_t *ins = realloc(g->ins, (size_t)cap * sizeof *ins);
        if (!ins) return fail(L, pos, id, "out of memory");
        g->ins = ins;
        L->cap_ins = cap;
    }
    for (size_t k = 0; k < n; k++) {
        json_t *e = json_array_get(ji, k);
        if (!json_is_string(e))
            return fail(L, pos, id, "inputs[%zu] is %s, not an id string", k,
                        describe(e, buf, sizeof buf));
        const char *in = json_string_value(e);
        json_t *seen = json_object_get(L->seen, in);
        if (!seen) {
            long later = find_later(L, (size_t)pos, in);
            if (later == pos)
                return fail(L, pos, id, "inputs[%zu] names the node itself", k);
            if (later > pos)
                return fail(L, pos, id,
                            "input \"%.*s\" (inputs[%zu]) is defined later, at nodes[%ld]; "
                            "list nodes so that inputs come first",
                            ID_SHOWN, in, k, later);
            return fail(L, pos, id, "input \"%.*s\" (inputs[%zu]) is not defined", ID_SHOWN, in,
                        k);
        }
        g->ins[at + (int32_t)k] = L->code[json_integer_value(seen)];
    }
    *n_in = n;
    return 0;
}

static int read_time(loader *L, long pos, const char *id, json_t *nd, double *time) {
    char buf[80];
    json_t *jt = json_object_get(nd, "time");
    *time = 1.0;
    if (!jt) return 0;
    if (!json_is_number(jt))
        return fail(L, pos, id, "\"time\" is %s, not a number", describe(jt, buf, sizeof buf));
    double t = json_number_value(jt);
    if (!(t > 0) || !isfinite(t))
        return fail(L, pos, id, "\"time\" is %s; it must be > 0", describe(jt, buf, sizeof buf));
    *time = t;
    return 0;
}

static int read_retain(loader *L, long pos, const char *id, json_t *nd, size_t n_in,
                       uint32_t *retain) {
    char buf[80];
    json_t *jr = json_object_get(nd, "retain_inputs");
    uint32_t mask = 0;
    if (!jr) {
        mask = n_in ? (uint32_t)((UINT64_C(1) << n_in) - 1) : 0;
    } else if (!json_is_array(jr)) {
        return fail(L, pos, id, "\"retain_inputs\" is %s, not an array of input positions",
                    describe(jr, buf, sizeof buf));
    } else {
        for (size_t k = 0; k < json_array_size(jr); k++) {
            json_t *e = json_array_get(jr, k);
            if (!json_is_integer(e))
                return fail(L, pos, id, "retain_inputs[%zu] is %s, not an input position", k,
                            describe(e, buf, sizeof buf));
            json_int_t p = json_integer_value(e);
            if (p < 0 || (size_t)p >= n_in)
                return fail(L, pos, id,
                            "retain_inputs[%zu] is %" JSON_INTEGER_FORMAT
                            ", not a position of the node's %zu inputs",
                            k, p, n_in);
            if (mask & (1u << p))
                return fail(L, pos, id,
                            "retain_inputs lists position %" JSON_INTEGER_FORMAT " twice", p);
            mask |= 1u << p;
        }
    }
    json_t *jo = json_object_get(nd, "retain_output");
    if (jo && !json_is_boolean(jo))
        return fail(L, pos, id, "\"retain_output\" is %s, not true or false",
                    describe(jo, buf, sizeof buf));
    if (!jo || json_is_true(jo)) mask |= DBR_RG_RETAIN_OUT;
    *retain = mask;
    return 0;
}

static int add_compute(loader *L, long pos, const char *id, const char *op, json_t *nd) {
    dbr_rgraph *g = L->g;
    size_t n_in = 0;
    int64_t bytes = 0;
    double time = 1.0;
    uint32_t retain = 0;
    if (read_inputs(L, pos, id, nd, &n_in) || read_bytes(L, pos, id, nd, &bytes) ||
        read_time(L, pos, id, nd, &time) || read_retain(L, pos, id, nd, n_in, &retain))
        return -1;
    int32_t i = g->n;
    g->id[i] = dup_str(id);
    g->op[i] = dup_str(op);
    if (!g->id[i] || !g->op[i]) {
        free(g->id[i]);
        free(g->op[i]);
        g->id[i] = g->op[i] = NULL;
        return fail(L, pos, id, "out of memory");
    }
    g->bytes[i] = bytes;
    g->time[i] = time;
    g->retain[i] = retain;
    g->in_first[i + 1] = g->in_first[i] + (int32_t)n_in;
    g->n++;
    L->code[pos] = i;
    return 0;
}

static int add_node(loader *L, size_t p) {
    char buf[80];
    long pos = (long)p;
    json_t *nd = json_array_get(L->nodes, p);
    if (!json_is_object(nd))
        return fail(L, pos, NULL, "is %s, not an object", describe(nd, buf, sizeof buf));
    json_t *jid = json_object_get(nd, "id");
    const char *id = json_is_string(jid) ? json_string_value(jid) : NULL;
    const char *hint, *key = unknown_field(nd, node_fields, &hint);
    if (key) return fail_unknown(L, pos, id, key, hint, node_fields);
    if (!jid) return fail(L, pos, NULL, "missing \"id\"");
    if (!id)
        return fail(L, pos, NULL, "\"id\" is %s, not a string", describe(jid, buf, sizeof buf));
    if (!*id) return fail(L, pos, NULL, "\"id\" is empty");
    json_t *prev = json_object_get(L->seen, id);
    if (prev)
        return fail(L, pos, id, "duplicate id: nodes[%" JSON_INTEGER_FORMAT "] has it too",
                    json_integer_value(prev));

    json_t *jop = json_object_get(nd, "op");
    if (!jop) return fail(L, pos, id, "missing \"op\" (\"input\", \"param\" or an op name)");
    if (!json_is_string(jop))
        return fail(L, pos, id, "\"op\" is %s, not a string", describe(jop, buf, sizeof buf));
    const char *op = json_string_value(jop);
    if (!*op) return fail(L, pos, id, "\"op\" is empty");

    bool leaf = strcmp(op, "input") == 0 || strcmp(op, "param") == 0;
    if (leaf ? add_leaf(L, pos, id, op, nd) : add_compute(L, pos, id, op, nd)) return -1;
    json_t *jpos = json_integer((json_int_t)p);
    if (!jpos || json_object_set_new(L->seen, id, jpos)) return fail(L, pos, id, "out of memory");
    return 0;
}

/* ---- the document ---------------------------------------------------------- */

static int read_header(loader *L, json_t *root) {
    char buf[80];
    if (!json_is_object(root))
        return fail(L, -1, NULL, "the top level is %s, not an object",
                    describe(root, buf, sizeof buf));
    const char *hint, *key = unknown_field(root, top_fields, &hint);
    if (key) return fail_unknown(L, -1, NULL, key, hint, top_fields);

    json_t *f = json_object_get(root, "format");
    if (!f) return fail(L, -1, NULL, "missing \"format\": \"dbr-graph\" (is this a dbr graph?)");
    if (!json_is_string(f) || strcmp(json_string_value(f), "dbr-graph") != 0)
        return fail(L, -1, NULL, "\"format\" is %s, not \"dbr-graph\"",
                    describe(f, buf, sizeof buf));

    json_t *v = json_object_get(root, "version");
    if (!v) return fail(L, -1, NULL, "missing \"version\" (this reader knows version 1)");
    if (!json_is_integer(v))
        return fail(L, -1, NULL, "\"version\" is %s, not an integer",
                    describe(v, buf, sizeof buf));
    if (json_integer_value(v) != 1)
        return fail(L, -1, NULL,
                    "unsupported version %" JSON_INTEGER_FORMAT " (this reader knows version 1)",
                    json_integer_value(v));

    json_t *name = json_object_get(root, "name");
    if (name && !json_is_string(name))
        return fail(L, -1, NULL, "\"name\" is %s, not a string", describe(name, buf, sizeof buf));

    L->nodes = json_object_get(root, "nodes");
    if (!L->nodes) return fail(L, -1, NULL, "missing \"nodes\" (an array of node objects)");
    if (!json_is_array(L->nodes))
        return fail(L, -1, NULL, "\"nodes\" is %s, not an array",
                    describe(L->nodes, buf, sizeof buf));
    if (json_array_size(L->nodes) >= INT32_MAX)
        return fail(L, -1, NULL, "too many nodes (%zu)", json_array_size(L->nodes));
    return 0;
}

static int alloc_graph(loader *L) {
    dbr_rgraph *g = L->g;
    size_t n = json_array_size(L->nodes), m = n ? n : 1;
    g->id = calloc(m, sizeof *g->id);
    g->op = calloc(m, sizeof *g->op);
    g->bytes = calloc(m, sizeof *g->bytes);
    g->time = calloc(m, sizeof *g->time);
    g->in_first = calloc(m + 1, sizeof *g->in_first);
    g->retain = calloc(m, sizeof *g->retain);
    g->leaf_id = calloc(m, sizeof *g->leaf_id);
    g->leaf_bytes = calloc(m, sizeof *g->leaf_bytes);
    g->leaf_is_param = calloc(m, sizeof *g->leaf_is_param);
    L->code = calloc(m, sizeof *L->code);
    L->seen = json_object();
    if (!g->id || !g->op || !g->bytes || !g->time || !g->in_first || !g->retain || !g->leaf_id ||
        !g->leaf_bytes || !g->leaf_is_param || !L->code || !L->seen)
        return fail(L, -1, NULL, "out of memory");
    return 0;
}

int dbr_rgraph_parse_json(const char *text, size_t len, const char *name_for_errors,
                          dbr_rgraph *out, char *err, size_t errlen) {
    loader L = {.file = name_for_errors ? name_for_errors : "<graph>",
                .err = err,
                .errlen = errlen,
                .g = out};
    if (err && errlen) err[0] = 0;
    if (!out) return fail(&L, -1, NULL, "no graph to fill");
    memset(out, 0, sizeof *out);
    if (!text && len) return fail(&L, -1, NULL, "no text");

    json_error_t jerr;
    json_t *root = json_loadb(text ? text : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (err && errlen)
            snprintf(err, errlen, "%s:%d:%d: not valid JSON: %s", L.file, jerr.line, jerr.column,
                     jerr.text);
        return -1;
    }
    int rc = read_header(&L, root) || alloc_graph(&L) ? -1 : 0;
    for (size_t p = 0; rc == 0 && p < json_array_size(L.nodes); p++) rc = add_node(&L, p);
    if (rc == 0 && out->n == 0)
        rc = fail(&L, -1, NULL, "no compute nodes (%s)",
                  out->n_leaves ? "only inputs and parameters" : "\"nodes\" is empty");
    if (rc == 0 && out->ins == NULL) {
        out->ins = malloc(sizeof *out->ins); /* every node has no inputs: keep ins non-NULL */
        if (!out->ins) rc = fail(&L, -1, NULL, "out of memory");
    }
    json_decref(L.seen);
    json_decref(root);
    free(L.code);
    if (rc) dbr_rgraph_free(out);
    return rc;
}

int dbr_rgraph_load_json(const char *path, dbr_rgraph *out, char *err, size_t errlen) {
    if (out) memset(out, 0, sizeof *out);
    if (err && errlen) err[0] = 0;
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f) {
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot open: %s", path ? path : "(null)",
                     path ? strerror(errno) : "no path");
        return -1;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    bool bad = false;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 1 << 16;
            char *t = realloc(text, ncap);
            if (!t) {
                bad = true;
                errno = ENOMEM;
                break;
            }
            text = t;
            cap = ncap;
        }
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            bad = ferror(f) != 0;
            break;
        }
    }
    int saved = errno;
    fclose(f);
    if (bad) {
        free(text);
        if (err && errlen) snprintf(err, errlen, "%s: cannot read: %s", path, strerror(saved));
        return -1;
    }
    int rc = dbr_rgraph_parse_json(text, len, path, out, err, errlen);
    free(text);
    return rc;
}
