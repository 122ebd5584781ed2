/* test_npz.c: dbr_save / dbr_load round trips (stored and deflate), loaded
 * arrays claimed by later dbr_param calls, mismatch and corruption errors
 * that leave the model untouched, and NumPy reading and writing our files. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* mkdtemp, memmem */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dbr.h"
#include "tests/tmpdir.h"

static int make_dir(void **state) {
    (void)state;
    return tmpdir_make("dbr_npz");
}

static int remove_dir(void **state) {
    (void)state;
    return tmpdir_remove();
}

static dbr_ctx *new_ctx(uint64_t seed) {
    dbr_config cfg = dbr_config_default();
    cfg.seed = seed;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    assert_non_null(ctx);
    return ctx;
}

/* The model under test: an f32 weight, an f64 buffer and an i64 buffer. */
static void build_model(dbr_ctx *ctx) {
    dbr_tensor *w = dbr_param(ctx, "fc.w", DBR_F32, DBR_SHAPE(3, 4), DBR_INIT_KAIMING_UNIFORM);
    dbr_tensor *m = dbr_buffer(ctx, "bn.mean", DBR_F64, DBR_SHAPE(5), 0.0);
    dbr_tensor *s = dbr_buffer(ctx, "steps", DBR_I64, DBR_SHAPE(2, 3), 0.0);
    assert_non_null(w);
    assert_non_null(m);
    assert_non_null(s);
    for (int i = 0; i < 5; i++) ((double *)m->data)[i] = 0.1 * i - 1e300 * (i == 4);
    for (int i = 0; i < 6; i++) ((int64_t *)s->data)[i] = ((int64_t)1 << 40) * i - 7;
}

static void assert_same_tensor(dbr_tensor *a, dbr_tensor *b) {
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->dtype, b->dtype);
    assert_int_equal(a->ndim, b->ndim);
    assert_memory_equal(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]);
    assert_int_equal(a->nbytes, b->nbytes);
    assert_memory_equal(a->data, b->data, (size_t)a->nbytes);
}

static void assert_error_has(dbr_ctx *ctx, const char *a, const char *b) {
    const char *e = dbr_error(ctx);
    assert_non_null(e);
    if (!strstr(e, a) || (b && !strstr(e, b)))
        fail_msg("error \"%s\" lacks \"%s\"%s%s", e, a, b ? " or " : "", b ? b : "");
}

static int64_t count_params(dbr_ctx *ctx) {
    int64_t n = 0;
    for (dbr_tensor *t = dbr_params_next(ctx, NULL); t; t = dbr_params_next(ctx, t)) n++;
    return n;
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void write_all(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void roundtrip(bool compress) {
    const char *path = path_of(compress ? "rt_z.npz" : "rt.npz");
    dbr_ctx *a = new_ctx(1);
    build_model(a);
    assert_int_equal(dbr_save(a, path, compress), 0);
    assert_null(dbr_error(a));
    assert_int_equal(access(path, R_OK), 0);

    /* Into a fresh context: arrays wait, pending, for their dbr_param. */
    dbr_ctx *b = new_ctx(2);
    assert_int_equal(dbr_load(b, path), 0);
    assert_null(dbr_error(b));
    assert_int_equal(count_params(b), 3);
    dbr_tensor *w = dbr_param_find(b, "fc.w");
    assert_non_null(w);
    assert_true(w->pending);
    assert_same_tensor(dbr_param_find(a, "fc.w"), w);
    dbr_tensor *w2 = dbr_param(b, "fc.w", DBR_F32, DBR_SHAPE(3, 4), DBR_INIT_KAIMING_UNIFORM);
    assert_ptr_equal(w2, w);
    assert_false(w->pending);
    assert_same_tensor(dbr_param_find(a, "fc.w"), w2);   /* not re-initialized */
    dbr_tensor *m = dbr_buffer(b, "bn.mean", DBR_F64, DBR_SHAPE(5), 0.0);
    assert_same_tensor(dbr_param_find(a, "bn.mean"), m);
    assert_same_tensor(dbr_param_find(a, "steps"), dbr_param_find(b, "steps"));
    assert_null(dbr_error(b));

    /* Into a context holding the same model, initialized differently. */
    dbr_ctx *c = new_ctx(3);
    build_model(c);
    assert_memory_not_equal(dbr_param_find(a, "fc.w")->data, dbr_param_find(c, "fc.w")->data, 48);
    assert_int_equal(dbr_load(c, path), 0);
    assert_int_equal(count_params(c), 3);
    for (dbr_tensor *t = dbr_params_next(a, NULL); t; t = dbr_params_next(a, t))
        assert_same_tensor(t, dbr_param_find(c, t->name));

    /* Saving a context whose arrays are still pending keeps them all. */
    dbr_ctx *d = new_ctx(4);
    assert_int_equal(dbr_load(d, path), 0);
    const char *again = path_of("again.npz");
    assert_int_equal(dbr_save(d, again, !compress), 0);
    dbr_ctx *e = new_ctx(5);
    assert_int_equal(dbr_load(e, again), 0);
    for (dbr_tensor *t = dbr_params_next(a, NULL); t; t = dbr_params_next(a, t))
        assert_same_tensor(t, dbr_param_find(e, t->name));
    dbr_ctx_free(a);
    dbr_ctx_free(b);
    dbr_ctx_free(c);
    dbr_ctx_free(d);
    dbr_ctx_free(e);
}

static void test_roundtrip_stored(void **state) {
    (void)state;
    roundtrip(false);
}

static void test_roundtrip_deflate(void **state) {
    (void)state;
    roundtrip(true);
}

/* Arrays of several megabytes cross every chunk boundary of the writer
 * and the reader; half of this one compresses well, half does not. */
static void test_large_array(void **state) {
    (void)state;
    dbr_ctx *a = new_ctx(1);
    dbr_tensor *w = dbr_param(a, "big", DBR_F32, DBR_SHAPE(1500, 1024), DBR_INIT_XAVIER_NORMAL);
    assert_non_null(w);
    for (int64_t i = 0; i < w->numel / 2; i++) ((float *)w->data)[i] = (float)(i % 97);
    for (int compress = 0; compress < 2; compress++) {
        const char *path = path_of("big.npz");
        assert_int_equal(dbr_save(a, path, compress), 0);
        dbr_ctx *b = new_ctx(2);
        assert_int_equal(dbr_load(b, path), 0);
        assert_same_tensor(w, dbr_param_find(b, "big"));
        dbr_ctx_free(b);
    }
    dbr_ctx_free(a);
}

static void test_file_layout(void **state) {
    (void)state;
    dbr_ctx *a = new_ctx(1);
    build_model(a);
    const char *path = path_of("layout.npz");
    assert_int_equal(dbr_save(a, path, false), 0);
    size_t n;
    uint8_t *b = read_all(path, &n);
    assert_memory_equal(b, "PK\x03\x04", 4);
    /* the first member: name, then a 64-byte aligned .npy preamble */
    assert_memory_equal(b + 30, "fc.w.npy", 8);
    assert_memory_equal(b + 38, "\x93NUMPY\x01\x00", 8);
    size_t hl = b[46] | (size_t)b[47] << 8;
    assert_int_equal((10 + hl) % 64, 0);
    assert_int_equal(b[38 + 10 + hl - 1], '\n');
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
    assert_memory_equal(b + 48, dict, strlen(dict));
    assert_memory_equal(b + n - 22, "PK\x05\x06", 4);
    /* no temporary left behind */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_int_not_equal(access(tmp, F_OK), 0);
    free(b);
    dbr_ctx_free(a);
}

static void test_shape_and_dtype_mismatch(void **state) {
    (void)state;
    const char *path = path_of("mm.npz");
    dbr_ctx *a = new_ctx(1);
    build_model(a);
    assert_int_equal(dbr_save(a, path, true), 0);

    dbr_ctx *b = new_ctx(2);
    dbr_tensor *w = dbr_param(b, "fc.w", DBR_F32, DBR_SHAPE(4, 4), DBR_INIT_KAIMING_UNIFORM);
    float before[16];
    memcpy(before, w->data, sizeof before);
    assert_int_equal(dbr_load(b, path), -1);
    assert_error_has(b, "parameter fc.w: shape [3,4] in file, [4,4] in model", path);
    assert_memory_equal(w->data, before, sizeof before);
    assert_int_equal(count_params(b), 1);   /* nothing else was created */

    dbr_ctx *c = new_ctx(2);
    dbr_tensor *s = dbr_buffer(c, "bn.mean", DBR_F32, DBR_SHAPE(5), 0.0);
    assert_non_null(s);
    assert_int_equal(dbr_load(c, path), -1);
    assert_error_has(c, "buffer bn.mean: dtype f64 in file, f32 in model", path);
    assert_int_equal(count_params(c), 1);
    dbr_ctx_free(a);
    dbr_ctx_free(b);
    dbr_ctx_free(c);
}

/* Load `path` into a context holding the model; it must fail with `want`
 * in the message and leave every value as it was. */
static void load_fails_untouched(const char *path, const char *want) {
    dbr_ctx *c = new_ctx(9);
    build_model(c);
    dbr_ctx *ref = new_ctx(9);
    build_model(ref);
    assert_int_equal(dbr_load(c, path), -1);
    assert_error_has(c, want, path);
    assert_int_equal(count_params(c), 3);
    for (dbr_tensor *t = dbr_params_next(ref, NULL); t; t = dbr_params_next(ref, t))
        assert_same_tensor(t, dbr_param_find(c, t->name));
    dbr_ctx *fresh = new_ctx(9);
    assert_int_equal(dbr_load(fresh, path), -1);
    assert_int_equal(count_params(fresh), 0);
    dbr_ctx_free(c);
    dbr_ctx_free(ref);
    dbr_ctx_free(fresh);
}

/* Every single flipped byte either fails cleanly, leaving the model as it
 * was, or (in fields nobody reads, like the version made by) loads what a
 * holds; a renamed member loads as a new, pending array. */
static void flip_each_byte(dbr_ctx *a, uint8_t *buf, size_t n) {
    const char *bad = path_of("flip.npz");
    for (size_t i = 0; i < n; i++) {
        buf[i] ^= 0x5A;
        write_all(bad, buf, n);
        buf[i] ^= 0x5A;
        dbr_ctx *c = new_ctx(9);
        build_model(c);
        dbr_ctx *ref = new_ctx(9);
        build_model(ref);
        int rc = dbr_load(c, bad);
        if (rc != 0) {
            const char *e = dbr_error(c);
            if (!e || !strstr(e, bad)) fail_msg("byte %zu: error \"%s\"", i, e ? e : "(none)");
        }
        if (rc != 0 || count_params(c) == 3) {
            dbr_ctx *want = rc == 0 ? a : ref;
            assert_int_equal(count_params(c), 3);
            for (dbr_tensor *t = dbr_params_next(want, NULL); t; t = dbr_params_next(want, t))
                assert_same_tensor(t, dbr_param_find(c, t->name));
        }
        dbr_ctx_free(c);
        dbr_ctx_free(ref);
    }
}

static void test_corrupt(void **state) {
    (void)state;
    dbr_ctx *a = new_ctx(1);
    build_model(a);
    /* different values from those load_fails_untouched starts from */
    for (int i = 0; i < 12; i++) ((float *)dbr_param_find(a, "fc.w")->data)[i] = (float)i;
    const char *good = path_of("good.npz"), *goodz = path_of("goodz.npz");
    const char *bad = path_of("bad.npz");
    assert_int_equal(dbr_save(a, good, false), 0);
    assert_int_equal(dbr_save(a, goodz, true), 0);
    size_t n, nz;
    uint8_t *b = read_all(good, &n), *bz = read_all(goodz, &nz);

    write_all(bad, b, n / 2);   /* truncated */
    load_fails_untouched(bad, "is not a valid .npz file (bad end-of-central-directory record)");
    write_all(bad, b, 0);
    load_fails_untouched(bad, "is not a valid .npz file");
    write_all(bad, "this is not a zip archive\n", 26);
    load_fails_untouched(bad, "is not a valid .npz file");

    /* a flipped byte inside the last array's data: the CRC catches it */
    const int64_t *steps = dbr_param_find(a, "steps")->data;
    uint8_t *at = memmem(b, n, steps, 48);
    assert_non_null(at);
    at[20] ^= 0x10;
    write_all(bad, b, n);
    load_fails_untouched(bad, "member 'steps.npy': CRC-32 mismatch");
    at[20] ^= 0x10;

    /* a flipped byte in the central directory */
    uint8_t *cd = memmem(b, n, "PK\x01\x02", 4);
    assert_non_null(cd);
    cd[1] ^= 0xFF;
    write_all(bad, b, n);
    load_fails_untouched(bad, "is not a valid .npz file (bad central directory entry 0)");
    cd[1] ^= 0xFF;

    flip_each_byte(a, b, n);
    flip_each_byte(a, bz, nz);
    free(b);
    free(bz);
    dbr_ctx_free(a);
}

static void test_missing_file(void **state) {
    (void)state;
    dbr_ctx *c = new_ctx(1);
    const char *path = path_of("x.npz");
    assert_int_equal(dbr_load(c, path), -1);
    char want[600];
    snprintf(want, sizeof want, "dbr_load: cannot open '%s': No such file or directory", path);
    assert_error_has(c, want, NULL);
    dbr_clear_error(c);
    build_model(c);
    assert_int_equal(dbr_save(c, path_of("no-such-dir/x.npz"), false), -1);
    assert_error_has(c, "dbr_save: cannot create", "no-such-dir/x.npz.tmp.");
    dbr_ctx_free(c);
}

/* ---- NumPy ------------------------------------------------------------- */
static bool have_numpy(void) {
    return system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}

static int run_python(const char *script, const char *arg) {
    const char *py = path_of("check.py");
    write_all(py, script, strlen(script));
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' '%s'", py, arg, g_dir);
    return system(cmd);
}

/* The raw bytes of every array, for the Python side to compare with. */
static void dump_raw(dbr_ctx *ctx) {
    for (dbr_tensor *t = dbr_params_next(ctx, NULL); t; t = dbr_params_next(ctx, t)) {
        char name[256];
        snprintf(name, sizeof name, "%s.raw", t->name);
        write_all(path_of(name), t->data, (size_t)t->nbytes);
    }
}

static const char *numpy_reads =
    "import sys, numpy as np\n"
    "z = np.load(sys.argv[1])\n"
    "want = {'fc.w': ('<f4', (3, 4)), 'bn.mean': ('<f8', (5,)), 'steps': ('<i8', (2, 3))}\n"
    "assert list(z.files) == ['fc.w', 'bn.mean', 'steps'], z.files\n"
    "for k, (dt, sh) in want.items():\n"
    "    a = z[k]\n"
    "    assert a.dtype == np.dtype(dt) and a.shape == sh, (k, a.dtype, a.shape)\n"
    "    raw = open(sys.argv[2] + '/' + k + '.raw', 'rb').read()\n"
    "    assert a.tobytes() == raw, k\n";

static const char *numpy_writes =
    "import sys, numpy as np\n"
    "d = sys.argv[2]\n"
    "a = {'fc.w': np.fromfile(d + '/fc.w.raw', '<f4').reshape(3, 4),\n"
    "     'bn.mean': np.fromfile(d + '/bn.mean.raw', '<f8'),\n"
    "     'steps': np.fromfile(d + '/steps.raw', '<i8').reshape(2, 3)}\n"
    "np.savez(d + '/np.npz', **a)\n"
    "np.savez_compressed(d + '/npz_z.npz', **a)\n"
    "np.savez(d + '/np_fortran.npz', **{'fc.w': np.asfortranarray(a['fc.w'])})\n"
    "np.savez(d + '/np_big.npz', **{'fc.w': a['fc.w'].astype('>f4')})\n"
    "np.savez(d + '/np_u8.npz', **{'fc.w': a['fc.w'].astype('u1')})\n"
    "np.savez(d + '/np_vec.npz', **{'v': np.asfortranarray(np.arange(6.0)), 's': np.int32(7)})\n";

static void test_numpy_reads_ours(void **state) {
    (void)state;
    if (!have_numpy()) skip();
    dbr_ctx *a = new_ctx(1);
    build_model(a);
    dump_raw(a);
    assert_int_equal(dbr_save(a, path_of("ours.npz"), false), 0);
    assert_int_equal(dbr_save(a, path_of("ours_z.npz"), true), 0);
    assert_int_equal(run_python(numpy_reads, path_of("ours.npz")), 0);
    assert_int_equal(run_python(numpy_reads, path_of("ours_z.npz")), 0);
    dbr_ctx_free(a);
}

static void test_we_read_numpy(void **state) {
    (void)state;
    if (!have_numpy()) skip();
    dbr_ctx *a = new_ctx(1);
    build_model(a);
    dump_raw(a);
    assert_int_equal(run_python(numpy_writes, "-"), 0);
    const char *files[] = {"np.npz", "npz_z.npz"};
    for (int f = 0; f < 2; f++) {
        dbr_ctx *c = new_ctx(2);
        build_model(c);
        assert_int_equal(dbr_load(c, path_of(files[f])), 0);
        for (dbr_tensor *t = dbr_params_next(a, NULL); t; t = dbr_params_next(a, t))
            assert_same_tensor(t, dbr_param_find(c, t->name));
        dbr_ctx_free(c);
    }
    dbr_ctx *c = new_ctx(2);
    assert_int_equal(dbr_load(c, path_of("np_fortran.npz")), -1);
    assert_error_has(c, "array fc.w: fortran_order (column-major) arrays are not supported", NULL);
    dbr_ctx_free(c);
    c = new_ctx(2);
    assert_int_equal(dbr_load(c, path_of("np_big.npz")), -1);
    assert_error_has(c, "array fc.w: big-endian data ('>f4') is not supported", NULL);
    dbr_ctx_free(c);
    c = new_ctx(2);
    assert_int_equal(dbr_load(c, path_of("np_u8.npz")), -1);
    assert_error_has(c, "array fc.w: unsupported dtype '|u1'", NULL);
    dbr_ctx_free(c);
    /* a 1-D Fortran-ordered array is laid out as a C one; 0-D arrays work */
    c = new_ctx(2);
    assert_int_equal(dbr_load(c, path_of("np_vec.npz")), 0);
    dbr_tensor *v = dbr_param_find(c, "v"), *s = dbr_param_find(c, "s");
    assert_non_null(v);
    assert_non_null(s);
    assert_int_equal(v->ndim, 1);
    assert_int_equal(v->shape[0], 6);
    assert_true(((double *)v->data)[5] == 5.0);
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->dtype, DBR_I32);
    assert_int_equal(*(int32_t *)s->data, 7);
    dbr_ctx_free(c);
    dbr_ctx_free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_stored),
        cmocka_unit_test(test_roundtrip_deflate),
        cmocka_unit_test(test_large_array),
        cmocka_unit_test(test_file_layout),
        cmocka_unit_test(test_shape_and_dtype_mismatch),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_numpy_reads_ours),
        cmocka_unit_test(test_we_read_numpy),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
