/* data.c: MNIST-style IDX files (gzip'd or plain) into a dbr_dataset, the
 * Fashion-MNIST location, and the seeded mini-batch loader whose order
 * depends only on (seed, epoch). */
#include "frontend/internal.h"
#include "kernels/philox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_IMAGES 0x00000803u
#define IDX_LABELS 0x00000801u
#define READ_CHUNK (1 << 16)
#define LOADER_STREAM 0x6c6f61646572ull  /* "loader": keeps shuffles apart from other draws */

typedef struct idx_file {
    dbr_ctx *ctx;
    const char *file, *api, *path;
    int line;
    gzFile gz;
} idx_file;

#define IDX_ERR(f, ...) (dbr_set_error((f)->ctx, (f)->file, (f)->line, (f)->api, __VA_ARGS__), -1)

/* Read up to n bytes; returns the count (short at end of file), or -1 after
 * reporting a read or decompression error. */
static int64_t idx_read(idx_file *f, void *buf, int64_t n) {
    int64_t got = 0;
    while (got < n) {
        unsigned want = n - got > (1 << 30) ? 1u << 30 : (unsigned)(n - got);
        int k = gzread(f->gz, (char *)buf + got, want);
        if (k < 0) {
            int zerr;
            const char *msg = gzerror(f->gz, &zerr);
            if (zerr == Z_BUF_ERROR) return got;   /* gzip stream cut short */
            return IDX_ERR(f, "'%s': %s", f->path,
                           zerr == Z_ERRNO ? strerror(errno) : msg ? msg : "read error");
        }
        if (k == 0) return got;
        got += k;
    }
    return got;
}

/* Open an IDX file and read its header: magic and `ndims` big-endian counts. */
static int idx_open(idx_file *f, uint32_t magic, const char *kind, int ndims, uint32_t *dims) {
    errno = 0;
    f->gz = gzopen(f->path, "rb");
    if (!f->gz)
        return IDX_ERR(f, "cannot open '%s': %s", f->path,
                       errno ? strerror(errno) : "out of memory");
    uint8_t h[16];
    int64_t need = 4 + 4 * (int64_t)ndims;
    int64_t got = idx_read(f, h, need);
    if (got < 0) return -1;
    if (got < 4)
        return IDX_ERR(f, "'%s': truncated: expected %lld bytes of header, got %lld", f->path,
                       (long long)need, (long long)got);
    uint32_t m = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (m != magic)
        return IDX_ERR(f, "'%s': bad magic 0x%08x (expected 0x%08x, an IDX %s file)", f->path, m,
                       magic, kind);
    if (got < need)
        return IDX_ERR(f, "'%s': truncated: expected %lld bytes of header, got %lld", f->path,
                       (long long)need, (long long)got);
    for (int i = 0; i < ndims; i++) {
        const uint8_t *p = h + 4 + 4 * i;
        dims[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    }
    return 0;
}

static void idx_close(idx_file *f) {
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* Read `count` bytes of `what`, handing each chunk to convert(dst, off, src, n). */
static int idx_body(idx_file *f, int64_t count, const char *what, void *dst,
                    void (*convert)(void *dst, int64_t off, const uint8_t *src, int64_t n)) {
    uint8_t buf[READ_CHUNK];
    int64_t done = 0;
    while (done < count) {
        int64_t want = count - done < READ_CHUNK ? count - done : READ_CHUNK;
        int64_t got = idx_read(f, buf, want);
        if (got < 0) return -1;
        convert(dst, done, buf, got);
        done += got;
        if (got < want)
            return IDX_ERR(f, "'%s': truncated: expected %lld bytes of %s, got %lld", f->path,
                           (long long)count, what, (long long)done);
    }
    return 0;
}

static void pixels_to_float(void *dst, int64_t off, const uint8_t *src, int64_t n) {
    float *out = (float *)dst + off;
    for (int64_t i = 0; i < n; i++) out[i] = (float)src[i] / 255.0f;
}

static void labels_to_i32(void *dst, int64_t off, const uint8_t *src, int64_t n) {
    int32_t *out = (int32_t *)dst + off;
    for (int64_t i = 0; i < n; i++) out[i] = src[i];
}

static int mnist_load(dbr_ctx *ctx, const char *api, const char *images_path,
                      const char *labels_path, dbr_dataset *out, const char *file, int line) {
    idx_file fi = {ctx, file, api, images_path, line, NULL};
    idx_file fl = {ctx, file, api, labels_path, line, NULL};
    dbr_dataset ds = {0, 0, 0, NULL, NULL};
    uint32_t idims[3], ldims[1];
    int rc = -1;
    if (idx_open(&fi, IDX_IMAGES, "image", 3, idims) || idx_open(&fl, IDX_LABELS, "label", 1, ldims))
        goto done;
    if (idims[0] != ldims[0]) {
        (void)IDX_ERR(&fl, "'%s' has %u labels but '%s' has %u images", labels_path, ldims[0],
                images_path, idims[0]);
        goto done;
    }
    if (idims[1] == 0 || idims[2] == 0) {
        (void)IDX_ERR(&fi, "'%s': images of %u x %u pixels", images_path, idims[1], idims[2]);
        goto done;
    }
    ds.n = idims[0], ds.rows = idims[1], ds.cols = idims[2];
    if ((uint64_t)ds.rows * (uint64_t)ds.cols >
        (uint64_t)INT64_MAX / sizeof(float) / (uint64_t)(ds.n ? ds.n : 1)) {
        (void)IDX_ERR(&fi, "'%s': %lld images of %lld x %lld pixels is too large", images_path,
                (long long)ds.n, (long long)ds.rows, (long long)ds.cols);
        goto done;
    }
    int64_t npix = ds.n * ds.rows * ds.cols;
    ds.images = malloc((size_t)(npix ? npix : 1) * sizeof(float));
    ds.labels = malloc((size_t)(ds.n ? ds.n : 1) * sizeof(int32_t));
    if (!ds.images || !ds.labels) {
        (void)IDX_ERR(&fi, "out of memory for %lld images from '%s'", (long long)ds.n, images_path);
        goto done;
    }
    if (idx_body(&fi, npix, "pixels", ds.images, pixels_to_float) ||
        idx_body(&fl, ds.n, "labels", ds.labels, labels_to_i32))
        goto done;
    rc = 0;
done:
    idx_close(&fi);
    idx_close(&fl);
    if (rc) dbr_dataset_free(&ds);
    *out = ds;
    return rc;
}

int dbr_mnist_load_(dbr_ctx *ctx, const char *images_path, const char *labels_path,
                    dbr_dataset *out, const char *file, int line) {
    if (out) *out = (dbr_dataset){0, 0, 0, NULL, NULL};
    if (!ctx) return -1;
    if (!images_path || !labels_path || !out) {
        dbr_set_error(ctx, file, line, "dbr_mnist_load", "NULL path or output");
        return -1;
    }
    return mnist_load(ctx, "dbr_mnist_load", images_path, labels_path, out, file, line);
}

const char *dbr_fashion_mnist_dir(void) {
    const char *d = getenv("DBR_FASHION_MNIST");
    return d && *d ? d : "/usr/share/datasets/fashion-mnist";
}

int dbr_fashion_mnist_(dbr_ctx *ctx, bool train, dbr_dataset *out, const char *file, int line) {
    if (out) *out = (dbr_dataset){0, 0, 0, NULL, NULL};
    if (!ctx) return -1;
    if (!out) {
        dbr_set_error(ctx, file, line, "dbr_fashion_mnist", "NULL output");
        return -1;
    }
    const char *dir = dbr_fashion_mnist_dir(), *split = train ? "train" : "t10k";
    char img[4096], lbl[4096];
    int a = snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", dir, split);
    int b = snprintf(lbl, sizeof lbl, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    if (a < 0 || b < 0 || (size_t)a >= sizeof img || (size_t)b >= sizeof lbl) {
        dbr_set_error(ctx, file, line, "dbr_fashion_mnist", "dataset path too long: '%s'", dir);
        return -1;
    }
    const char *missing = access(img, R_OK) ? img : access(lbl, R_OK) ? lbl : NULL;
    if (missing) {
        dbr_set_error(ctx, file, line, "dbr_fashion_mnist",
                      "cannot open '%s': %s (set DBR_FASHION_MNIST to the folder holding the "
                      "Fashion-MNIST files, or install Debian's dataset-fashion-mnist)",
                      missing, strerror(errno));
        return -1;
    }
    return mnist_load(ctx, "dbr_fashion_mnist", img, lbl, out, file, line);
}

void dbr_dataset_free(dbr_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    *ds = (dbr_dataset){0, 0, 0, NULL, NULL};
}

/* ---- the loader -------------------------------------------------------- */
struct dbr_loader {
    const dbr_dataset *ds;
    int64_t batch;
    bool shuffle, drop_last;
    uint64_t seed;
    int64_t *perm;   /* this epoch's order of sample indices */
    int64_t pos;     /* next position in perm */
    int64_t epoch;
};

/* Uniform in [0, bound) from the stream under key, unbiased (Lemire's
 * multiply-and-reject); *ctr counts the words drawn. */
static uint64_t uniform_below(uint64_t key, uint64_t *ctr, uint64_t bound) {
    if (bound > UINT32_MAX) {
        uint64_t r = (uint64_t)dbr_rng_u32(key, (*ctr)++) << 32;
        r |= dbr_rng_u32(key, (*ctr)++);
        return r % bound;   /* bias below 2^-31 for bounds this large */
    }
    uint32_t b = (uint32_t)bound;
    uint64_t m = (uint64_t)dbr_rng_u32(key, (*ctr)++) * b;
    if ((uint32_t)m < b) {
        uint32_t floor = (uint32_t)(-b) % b;
        while ((uint32_t)m < floor) m = (uint64_t)dbr_rng_u32(key, (*ctr)++) * b;
    }
    return m >> 32;
}

dbr_loader *dbr_loader_new(const dbr_dataset *ds, int64_t batch, bool shuffle, bool drop_last,
                           uint64_t seed) {
    if (!ds || batch <= 0 || ds->n < 0 || (ds->n > 0 && (!ds->images || !ds->labels)))
        return NULL;
    dbr_loader *ld = calloc(1, sizeof *ld);
    if (!ld) return NULL;
    ld->perm = malloc((size_t)(ds->n ? ds->n : 1) * sizeof *ld->perm);
    if (!ld->perm) {
        free(ld);
        return NULL;
    }
    ld->ds = ds;
    ld->batch = batch;
    ld->shuffle = shuffle;
    ld->drop_last = drop_last;
    ld->seed = seed;
    dbr_loader_epoch(ld, 0);
    return ld;
}

void dbr_loader_free(dbr_loader *ld) {
    if (!ld) return;
    free(ld->perm);
    free(ld);
}

void dbr_loader_epoch(dbr_loader *ld, int64_t epoch) {
    if (!ld) return;
    int64_t n = ld->ds->n;
    for (int64_t i = 0; i < n; i++) ld->perm[i] = i;
    if (ld->shuffle) {
        uint64_t key = dbr_rng_key(ld->seed, (uint64_t)epoch, LOADER_STREAM), ctr = 0;
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)uniform_below(key, &ctr, (uint64_t)i + 1);
            int64_t t = ld->perm[i];
            ld->perm[i] = ld->perm[j];
            ld->perm[j] = t;
        }
    }
    ld->pos = 0;
    ld->epoch = epoch;
}

int64_t dbr_loader_batches(const dbr_loader *ld) {
    if (!ld) return 0;
    int64_t n = ld->ds->n;
    return ld->drop_last ? n / ld->batch : (n + ld->batch - 1) / ld->batch;
}

int64_t dbr_loader_next(dbr_loader *ld, float *x, int32_t *y) {
    if (!ld) return 0;
    const dbr_dataset *ds = ld->ds;
    int64_t b = ds->n - ld->pos;
    if (b > ld->batch) b = ld->batch;
    if (b <= 0 || (ld->drop_last && b < ld->batch)) {
        ld->pos = ds->n;
        return 0;
    }
    int64_t px = ds->rows * ds->cols;
    for (int64_t i = 0; i < b; i++) {
        int64_t k = ld->perm[ld->pos + i];
        if (x) memcpy(x + i * px, ds->images + k * px, (size_t)px * sizeof(float));
        if (y) y[i] = ds->labels[k];
    }
    ld->pos += b;
    return b;
}
