/* test_idx.c: IDX reading (gzip'd and plain, truncated, wrong magic,
 * mismatched counts), the Fashion-MNIST test set when installed, and the
 * seeded loader's per-epoch permutations. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* mkdtemp */
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
#include <zlib.h>

#include "dbr.h"
#include "tests/tmpdir.h"

static int make_dir(void **state) {
    (void)state;
    return tmpdir_make("dbr_idx");
}

static int remove_dir(void **state) {
    (void)state;
    return tmpdir_remove();
}

static void write_file(const char *path, bool gz, const void *data, size_t n) {
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, data, (unsigned)n), (int)n);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, n, f), n);
        assert_int_equal(fclose(f), 0);
    }
}

static size_t put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return 4;
}

static uint8_t pixel(int64_t i) { return (uint8_t)(i * 37 + 11); }

/* n images of rows x cols, of which `keep` pixel bytes are written. */
static void write_images(const char *path, bool gz, uint32_t n, uint32_t rows, uint32_t cols,
                         size_t keep) {
    size_t total = (size_t)n * rows * cols;
    uint8_t *b = malloc(16 + total);
    assert_non_null(b);
    size_t o = put_be32(b, 0x00000803);
    o += put_be32(b + o, n);
    o += put_be32(b + o, rows);
    o += put_be32(b + o, cols);
    for (size_t i = 0; i < total; i++) b[o + i] = pixel((int64_t)i);
    write_file(path, gz, b, o + (keep < total ? keep : total));
    free(b);
}

static void write_labels(const char *path, bool gz, uint32_t n) {
    uint8_t *b = malloc(8 + n);
    assert_non_null(b);
    size_t o = put_be32(b, 0x00000801);
    o += put_be32(b + o, n);
    for (uint32_t i = 0; i < n; i++) b[o + i] = (uint8_t)(i * 3 % 10);
    write_file(path, gz, b, o + n);
    free(b);
}

static dbr_ctx *new_ctx(void) {
    dbr_config cfg = dbr_config_default();
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    assert_non_null(ctx);
    return ctx;
}

static void check_dataset(const dbr_dataset *ds, int64_t n, int64_t rows, int64_t cols) {
    assert_int_equal(ds->n, n);
    assert_int_equal(ds->rows, rows);
    assert_int_equal(ds->cols, cols);
    for (int64_t i = 0; i < n * rows * cols; i++)
        assert_true(ds->images[i] == (float)pixel(i) / 255.0f);
    for (int64_t i = 0; i < n; i++) assert_int_equal(ds->labels[i], i * 3 % 10);
}

static void assert_error_has(dbr_ctx *ctx, const char *a, const char *b) {
    const char *e = dbr_error(ctx);
    assert_non_null(e);
    if (!strstr(e, a) || (b && !strstr(e, b)))
        fail_msg("error \"%s\" lacks \"%s\"%s%s", e, a, b ? " or " : "", b ? b : "");
}

static void test_load_gzip_and_plain(void **state) {
    (void)state;
    dbr_ctx *ctx = new_ctx();
    for (int gz = 0; gz < 2; gz++) {
        const char *img = path_of(gz ? "img.gz" : "img"), *lbl = path_of(gz ? "lbl.gz" : "lbl");
        write_images(img, gz, 7, 3, 5, SIZE_MAX);
        write_labels(lbl, gz, 7);
        dbr_dataset ds;
        assert_int_equal(dbr_mnist_load(ctx, img, lbl, &ds), 0);
        assert_null(dbr_error(ctx));
        check_dataset(&ds, 7, 3, 5);
        dbr_dataset_free(&ds);
        assert_null(ds.images);
    }
    /* mixed: gzip'd images, plain labels */
    dbr_dataset ds;
    assert_int_equal(dbr_mnist_load(ctx, path_of("img.gz"), path_of("lbl"), &ds), 0);
    check_dataset(&ds, 7, 3, 5);
    dbr_dataset_free(&ds);
    dbr_ctx_free(ctx);
}

static void test_truncated(void **state) {
    (void)state;
    dbr_ctx *ctx = new_ctx();
    const char *lbl = path_of("lbl4");
    write_labels(lbl, false, 4);
    for (int gz = 0; gz < 2; gz++) {
        const char *img = path_of(gz ? "short.gz" : "short");
        write_images(img, gz, 4, 10, 10, 123);
        dbr_dataset ds;
        assert_int_equal(dbr_mnist_load(ctx, img, lbl, &ds), -1);
        assert_error_has(ctx, "truncated: expected 400 bytes of pixels, got 123", img);
        assert_null(ds.images);
        assert_int_equal(ds.n, 0);
        dbr_clear_error(ctx);
    }
    /* a gzip stream cut in the middle */
    const char *img = path_of("cut.gz");
    write_images(img, true, 4, 100, 100, SIZE_MAX);
    FILE *f = fopen(img, "rb");
    assert_non_null(f);
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    write_file(img, false, buf, n / 2);
    dbr_dataset ds;
    assert_int_equal(dbr_mnist_load(ctx, img, lbl, &ds), -1);
    assert_error_has(ctx, "truncated", img);
    dbr_clear_error(ctx);
    /* a header cut short */
    write_file(img, false, "\0\0\x08\x03\0\0", 6);
    assert_int_equal(dbr_mnist_load(ctx, img, lbl, &ds), -1);
    assert_error_has(ctx, "truncated: expected 16 bytes of header, got 6", img);
    dbr_ctx_free(ctx);
}

static void test_bad_magic(void **state) {
    (void)state;
    dbr_ctx *ctx = new_ctx();
    const char *img = path_of("m_img.gz"), *lbl = path_of("m_lbl.gz");
    write_images(img, true, 2, 2, 2, SIZE_MAX);
    write_labels(lbl, true, 2);
    dbr_dataset ds;
    assert_int_equal(dbr_mnist_load(ctx, lbl, img, &ds), -1);   /* swapped */
    assert_error_has(ctx, "bad magic 0x00000801 (expected 0x00000803, an IDX image file)", lbl);
    dbr_clear_error(ctx);
    const char *txt = path_of("notes.txt");
    write_file(txt, false, "hello, world\n", 13);
    assert_int_equal(dbr_mnist_load(ctx, img, txt, &ds), -1);
    assert_error_has(ctx, "(expected 0x00000801, an IDX label file)", txt);
    dbr_ctx_free(ctx);
}

static void test_count_mismatch(void **state) {
    (void)state;
    dbr_ctx *ctx = new_ctx();
    const char *img = path_of("c_img"), *lbl = path_of("c_lbl");
    write_images(img, false, 5, 2, 2, SIZE_MAX);
    write_labels(lbl, false, 4);
    dbr_dataset ds;
    assert_int_equal(dbr_mnist_load(ctx, img, lbl, &ds), -1);
    assert_error_has(ctx, "has 4 labels but", "has 5 images");
    dbr_ctx_free(ctx);
}

static void test_missing_file(void **state) {
    (void)state;
    dbr_ctx *ctx = new_ctx();
    const char *img = path_of("nope-images.gz");
    dbr_dataset ds;
    assert_int_equal(dbr_mnist_load(ctx, img, img, &ds), -1);
    char want[600];
    snprintf(want, sizeof want, "cannot open '%s': No such file or directory", img);
    assert_error_has(ctx, want, "dbr_mnist_load");
    dbr_ctx_free(ctx);
}

static void test_fashion_mnist_test_set(void **state) {
    (void)state;
    char img[1024];
    snprintf(img, sizeof img, "%s/t10k-images-idx3-ubyte.gz", dbr_fashion_mnist_dir());
    if (access(img, R_OK) != 0) {
        print_message("no Fashion-MNIST at %s\n", dbr_fashion_mnist_dir());
        skip();
    }
    dbr_ctx *ctx = new_ctx();
    dbr_dataset ds;
    assert_int_equal(dbr_fashion_mnist(ctx, false, &ds), 0);
    assert_int_equal(ds.n, 10000);
    assert_int_equal(ds.rows, 28);
    assert_int_equal(ds.cols, 28);
    int64_t per_class[10] = {0};
    for (int64_t i = 0; i < ds.n; i++) {
        assert_in_range(ds.labels[i], 0, 9);
        per_class[ds.labels[i]]++;
    }
    for (int c = 0; c < 10; c++) assert_int_equal(per_class[c], 1000);
    float lo = 1, hi = 0;
    for (int64_t i = 0; i < ds.n * 28 * 28; i++) {
        lo = ds.images[i] < lo ? ds.images[i] : lo;
        hi = ds.images[i] > hi ? ds.images[i] : hi;
    }
    assert_true(lo == 0.0f && hi == 1.0f);
    dbr_dataset_free(&ds);
    dbr_ctx_free(ctx);
}

static void test_fashion_mnist_missing_dir(void **state) {
    (void)state;
    dbr_ctx *ctx = new_ctx();
    setenv("DBR_FASHION_MNIST", path_of("no-such-dir"), 1);
    dbr_dataset ds;
    assert_int_equal(dbr_fashion_mnist(ctx, true, &ds), -1);
    assert_error_has(ctx, "train-images-idx3-ubyte.gz': No such file or directory",
                     "DBR_FASHION_MNIST");
    unsetenv("DBR_FASHION_MNIST");
    dbr_ctx_free(ctx);
}

/* ---- loader ------------------------------------------------------------ */
/* Sample i has image {i, -i} and label i. */
static dbr_dataset synthetic(int64_t n) {
    dbr_dataset ds = {n, 1, 2, malloc((size_t)n * 2 * sizeof(float)),
                      malloc((size_t)n * sizeof(int32_t))};
    assert_non_null(ds.images);
    assert_non_null(ds.labels);
    for (int64_t i = 0; i < n; i++) {
        ds.images[2 * i] = (float)i;
        ds.images[2 * i + 1] = (float)-i;
        ds.labels[i] = (int32_t)i;
    }
    return ds;
}

/* One epoch's order into order[]; returns the count and checks the batches. */
static int64_t run_epoch(dbr_loader *ld, int64_t batch, int32_t *order) {
    float x[2 * 64];
    int32_t y[64];
    int64_t total = 0, b, nb = 0;
    while ((b = dbr_loader_next(ld, x, y)) > 0) {
        assert_true(b <= batch);
        for (int64_t i = 0; i < b; i++) {
            assert_true(x[2 * i] == (float)y[i] && x[2 * i + 1] == (float)-y[i]);
            order[total++] = y[i];
        }
        nb++;
    }
    assert_int_equal(nb, dbr_loader_batches(ld));
    assert_int_equal(dbr_loader_next(ld, x, y), 0);   /* stays at the end */
    return total;
}

static void test_loader_permutation(void **state) {
    (void)state;
    dbr_dataset ds = synthetic(103);
    dbr_loader *ld = dbr_loader_new(&ds, 10, true, false, 42);
    assert_non_null(ld);
    assert_int_equal(dbr_loader_batches(ld), 11);
    int32_t order[103];
    for (int64_t e = 0; e < 3; e++) {
        dbr_loader_epoch(ld, e);
        assert_int_equal(run_epoch(ld, 10, order), 103);
        int seen[103] = {0};
        int moved = 0;
        for (int i = 0; i < 103; i++) {
            assert_in_range(order[i], 0, 102);
            seen[order[i]]++;
            moved += order[i] != i;
        }
        for (int i = 0; i < 103; i++) assert_int_equal(seen[i], 1);
        assert_true(moved > 50);
    }
    dbr_loader_free(ld);
    dbr_dataset_free(&ds);
}

static void test_loader_determinism(void **state) {
    (void)state;
    dbr_dataset ds = synthetic(50);
    dbr_loader *a = dbr_loader_new(&ds, 8, true, false, 7);
    dbr_loader *b = dbr_loader_new(&ds, 8, true, false, 7);
    dbr_loader *c = dbr_loader_new(&ds, 8, true, false, 8);
    int32_t oa[50], ob[50], oc[50], o1[50];
    run_epoch(a, 8, oa);   /* a fresh loader is at epoch 0 */
    dbr_loader_epoch(b, 0);
    run_epoch(b, 8, ob);
    assert_memory_equal(oa, ob, sizeof oa);
    run_epoch(c, 8, oc);
    assert_memory_not_equal(oa, oc, sizeof oa);   /* another seed */
    dbr_loader_epoch(a, 1);
    run_epoch(a, 8, o1);
    assert_memory_not_equal(oa, o1, sizeof oa);   /* another epoch */
    dbr_loader_epoch(b, 5);
    dbr_loader_epoch(b, 1);                       /* order depends on (seed, epoch) only */
    run_epoch(b, 8, ob);
    assert_memory_equal(o1, ob, sizeof o1);
    dbr_loader_epoch(a, 0);
    run_epoch(a, 8, o1);
    assert_memory_equal(oa, o1, sizeof oa);
    dbr_loader_free(a);
    dbr_loader_free(b);
    dbr_loader_free(c);
    dbr_dataset_free(&ds);
}

static void test_loader_drop_last_and_order(void **state) {
    (void)state;
    dbr_dataset ds = synthetic(23);
    int32_t order[23];
    dbr_loader *ld = dbr_loader_new(&ds, 5, true, true, 1);
    assert_int_equal(dbr_loader_batches(ld), 4);
    assert_int_equal(run_epoch(ld, 5, order), 20);
    int seen[23] = {0};
    for (int i = 0; i < 20; i++) assert_int_equal(seen[order[i]]++, 0);
    dbr_loader_free(ld);
    ld = dbr_loader_new(&ds, 5, false, false, 1);   /* no shuffle: in order */
    assert_int_equal(dbr_loader_batches(ld), 5);
    assert_int_equal(run_epoch(ld, 5, order), 23);
    for (int i = 0; i < 23; i++) assert_int_equal(order[i], i);
    dbr_loader_free(ld);
    ld = dbr_loader_new(&ds, 64, true, true, 1);   /* one batch larger than the set */
    assert_int_equal(dbr_loader_batches(ld), 0);
    assert_int_equal(run_epoch(ld, 64, order), 0);
    dbr_loader_free(ld);
    assert_null(dbr_loader_new(NULL, 5, true, true, 1));
    assert_null(dbr_loader_new(&ds, 0, true, true, 1));
    assert_null(dbr_loader_new(&ds, -3, true, true, 1));
    assert_int_equal(dbr_loader_next(NULL, NULL, NULL), 0);
    assert_int_equal(dbr_loader_batches(NULL), 0);
    dbr_loader_free(NULL);
    dbr_dataset_free(&ds);
}

/* The first slot of a 4-sample shuffle is uniform over 4000 epochs. */
static void test_loader_uniform(void **state) {
    (void)state;
    dbr_dataset ds = synthetic(4);
    dbr_loader *ld = dbr_loader_new(&ds, 1, true, false, 3);
    int count[4] = {0};
    for (int64_t e = 0; e < 4000; e++) {
        dbr_loader_epoch(ld, e);
        int32_t y;
        assert_int_equal(dbr_loader_next(ld, NULL, &y), 1);
        count[y]++;
    }
    for (int i = 0; i < 4; i++) assert_in_range(count[i], 880, 1120);   /* ~7 sigma */
    dbr_loader_free(ld);
    dbr_dataset_free(&ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_gzip_and_plain),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_count_mismatch),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_fashion_mnist_test_set),
        cmocka_unit_test(test_fashion_mnist_missing_dir),
        cmocka_unit_test(test_loader_permutation),
        cmocka_unit_test(test_loader_determinism),
        cmocka_unit_test(test_loader_drop_last_and_order),
        cmocka_unit_test(test_loader_uniform),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
