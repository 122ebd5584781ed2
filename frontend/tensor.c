/* tensor.c: tensor structs and their lifetimes, parameters (named, seeded
 * initialization), inputs, constants and reading values back. */
#include "frontend/internal.h"
#include "kernels/philox.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dbr_tinfo_of(const dbr_tensor *t, dbr_tinfo *ti) {
    memset(ti, 0, sizeof *ti);
    ti->dtype = (int32_t)t->dtype;
    ti->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) ti->shape[i] = t->shape[i];
}

static int64_t numel_of(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

static bool step_scoped(dbr_kind k) {
    return k == DBR_KIND_INTERMEDIATE || k == DBR_KIND_INPUT || k == DBR_KIND_CONST;
}

dbr_tensor *dbr_tensor_new(dbr_ctx *ctx, dbr_kind kind, int32_t dtype, int ndim,
                           const int64_t *shape, bool alloc) {
    dbr_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->dtype = (dbr_dtype)dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = numel_of(ndim, shape);
    t->nbytes = t->numel * (int64_t)dbr_dt_size(dtype);
    t->kind = kind;
    t->tape_id = -1;
    t->vid = -1; /* not in any step's graph yet */
    t->vgen = -1;
    if (alloc && ctx->cfg.mode != DBR_MODE_META &&
        !(kind == DBR_KIND_INTERMEDIATE && ctx->cfg.mode == DBR_MODE_COMPILED)) {
        t->data = dbr_mem_alloc(ctx, t->nbytes);
        if (!t->data) {
            free(t);
            return NULL;
        }
        t->owns_data = true;
    }
    if (step_scoped(kind)) {
        t->next = ctx->step_tensors;
        ctx->step_tensors = t;
        if (!ctx->in_step) ctx->in_step = true; /* ops outside a step open one */
    }
    return t;
}

void dbr_tensor_release_data(dbr_ctx *ctx, dbr_tensor *t) {
    if (t->owns_data && t->data) dbr_mem_free(ctx, t->data, t->nbytes);
    t->data = NULL;
    t->owns_data = false;
}

void dbr_drop(dbr_ctx *ctx, dbr_tensor *t) {
    if (t && t->kind == DBR_KIND_INTERMEDIATE && t->refs == 0 && !t->kept)
        dbr_tensor_release_data(ctx, t);
}

void dbr_tensor_unref(dbr_ctx *ctx, dbr_tensor *t) {
    if (--t->refs <= 0) {
        t->refs = 0;
        dbr_drop(ctx, t);
    }
}

void dbr_keep(dbr_tensor *t) {
    if (t) t->kept = true;
}

/* ---- parameters ------------------------------------------------------- */
dbr_tensor *dbr_param_create(dbr_ctx *ctx, const char *name, dbr_kind kind, int32_t dtype,
                             int ndim, const int64_t *shape) {
    dbr_tensor *t = dbr_tensor_new(ctx, kind, dtype, ndim, shape, true);
    if (!t) return NULL;
    t->name = strdup(name);
    if (!t->name) {
        dbr_tensor_release_data(ctx, t);
        free(t);
        return NULL;
    }
    if (t->data) memset(t->data, 0, (size_t)t->nbytes);
    t->requires_grad = kind == DBR_KIND_PARAM;
    if (ctx->params_tail)
        ctx->params_tail->next = t;
    else
        ctx->params = t;
    ctx->params_tail = t;
    ctx->n_params++;
    return t;
}

dbr_tensor *dbr_params_next(dbr_ctx *ctx, dbr_tensor *prev) {
    return prev ? prev->next : ctx->params;
}

dbr_tensor *dbr_param_find(dbr_ctx *ctx, const char *name) {
    for (dbr_tensor *t = ctx->params; t; t = t->next)
        if (strcmp(t->name, name) == 0) return t;
    return NULL;
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Parameters draw from a stream keyed by (seed, name), so adding a layer
 * does not change how the others are initialized. */
static void fill_init(dbr_ctx *ctx, dbr_tensor *t, dbr_init init, double bound_override) {
    if (!t->data) return;
    int64_t fan_in = t->ndim >= 2 ? t->shape[1] : t->shape[0];
    int64_t fan_out = t->shape[0];
    int64_t rf = 1;
    for (int i = 2; i < t->ndim; i++) rf *= t->shape[i];
    fan_in *= rf;
    fan_out *= rf;
    if (t->ndim == 0) fan_in = fan_out = 1;
    uint64_t key = dbr_rng_key(ctx->cfg.seed, name_hash(t->name), 0x5EED);
    bool normal = init == DBR_INIT_KAIMING_NORMAL || init == DBR_INIT_XAVIER_NORMAL;
    double scale = 0;
    switch (init) {
    case DBR_INIT_ZEROS: scale = 0; break;
    case DBR_INIT_ONES: scale = 1; break;
    case DBR_INIT_KAIMING_UNIFORM: scale = sqrt(2.0) * sqrt(3.0 / (double)fan_in); break;
    case DBR_INIT_KAIMING_NORMAL: scale = sqrt(2.0) / sqrt((double)fan_in); break;
    case DBR_INIT_XAVIER_UNIFORM: scale = sqrt(6.0 / (double)(fan_in + fan_out)); break;
    case DBR_INIT_XAVIER_NORMAL: scale = sqrt(2.0 / (double)(fan_in + fan_out)); break;
    }
    if (bound_override > 0) scale = bound_override;
    for (int64_t i = 0; i < t->numel; i++) {
        double v;
        if (init == DBR_INIT_ZEROS || init == DBR_INIT_ONES) {
            v = scale;
        } else if (normal) { /* Box-Muller */
            double u1 = 1.0 - dbr_rng_u01(dbr_rng_u32(key, 2 * (uint64_t)i));
            double u2 = dbr_rng_u01(dbr_rng_u32(key, 2 * (uint64_t)i + 1));
            v = scale * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        } else {
            v = scale * (2.0 * dbr_rng_u01(dbr_rng_u32(key, (uint64_t)i)) - 1.0);
        }
        if (t->dtype == DBR_F32)
            ((float *)t->data)[i] = (float)v;
        else
            ((double *)t->data)[i] = v;
    }
}

static bool check_shape_arg(dbr_ctx *ctx, const char *api, const char *file, int line, int ndim,
                            const int64_t *shape) {
    if (ndim < 0 || ndim > DBR_MAX_DIMS) {
        dbr_set_error(ctx, file, line, api, "ndim %d out of range [0, %d]", ndim, DBR_MAX_DIMS);
        return false;
    }
    if (ndim > 0 && !shape) {
        dbr_set_error(ctx, file, line, api, "shape is NULL");
        return false;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) {
            dbr_set_error(ctx, file, line, api, "dim %d is negative (%lld)", i,
                          (long long)shape[i]);
            return false;
        }
    return true;
}

static void shape_text(int ndim, const int64_t *shape, char *buf, size_t n) {
    dbr_tinfo ti = {.ndim = ndim};
    for (int i = 0; i < ndim; i++) ti.shape[i] = shape[i];
    dbr_shape_str(&ti, buf, n);
}

/* An existing parameter (or one dbr_load left pending) requested again. */
static dbr_tensor *claim(dbr_ctx *ctx, dbr_tensor *t, const char *api, dbr_kind kind,
                         dbr_dtype dt, int ndim, const int64_t *shape, const char *file, int line) {
    bool same = t->dtype == dt && t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char a[128], b[128];
        shape_text(t->ndim, t->shape, a, sizeof a);
        shape_text(ndim, shape, b, sizeof b);
        dbr_set_error(ctx, file, line, api, "'%s' %s as %s %s, requested as %s %s", t->name,
                      t->pending ? "was loaded" : "exists", dbr_dt_name((int32_t)t->dtype), a,
                      dbr_dt_name((int32_t)dt), b);
        return NULL;
    }
    if (t->pending) {
        t->pending = false;
        t->kind = kind;
        t->requires_grad = kind == DBR_KIND_PARAM;
    } else if (t->kind != kind) {
        dbr_set_error(ctx, file, line, api, "'%s' exists as a %s", t->name,
                      t->kind == DBR_KIND_PARAM ? "parameter" : "buffer");
        return NULL;
    }
    return t;
}

static dbr_tensor *param_common(dbr_ctx *ctx, const char *api, const char *name, dbr_kind kind,
                                dbr_dtype dt, int ndim, const int64_t *shape, const char *file,
                                int line, bool *created) {
    *created = false;
    if (ctx->bad_config) return NULL;
    if (!name || !*name) {
        dbr_set_error(ctx, file, line, api, "name is empty");
        return NULL;
    }
    if (!check_shape_arg(ctx, api, file, line, ndim, shape)) return NULL;
    bool ok = dt == DBR_F32 || dt == DBR_F64 ||
              (kind == DBR_KIND_BUFFER && (dt == DBR_I32 || dt == DBR_I64));
    if (!ok) {
        dbr_set_error(ctx, file, line, api, "'%s': %s cannot have dtype %s", name,
                      kind == DBR_KIND_PARAM ? "a parameter (trainable, f32 or f64)"
                                             : "a buffer (f32, f64, i32 or i64)",
                      dbr_dtype_name(dt));
        return NULL;
    }
    dbr_tensor *t = dbr_param_find(ctx, name);
    if (t) return claim(ctx, t, api, kind, dt, ndim, shape, file, line);
    t = dbr_param_create(ctx, name, kind, (int32_t)dt, ndim, shape);
    if (!t) dbr_set_error(ctx, file, line, api, "out of memory for '%s'", name);
    *created = t != NULL;
    return t;
}

dbr_tensor *dbr_param_(dbr_ctx *ctx, const char *name, dbr_dtype dt, int ndim,
                       const int64_t *shape, dbr_init init, const char *file, int line) {
    bool created;
    dbr_tensor *t =
        param_common(ctx, "dbr_param", name, DBR_KIND_PARAM, dt, ndim, shape, file, line, &created);
    if (created) fill_init(ctx, t, init, 0);
    return t;
}

dbr_tensor *dbr_param_bias_(dbr_ctx *ctx, const char *name, dbr_dtype dt, int64_t n,
                            int64_t fan_in, const char *file, int line) {
    if (fan_in <= 0 && !ctx->bad_config) {
        dbr_set_error(ctx, file, line, "dbr_param_bias", "fan_in must be > 0, got %lld",
                      (long long)fan_in);
        return NULL;
    }
    bool created;
    int64_t shape[1] = {n};
    dbr_tensor *t = param_common(ctx, "dbr_param_bias", name, DBR_KIND_PARAM, dt, 1, shape, file,
                                 line, &created);
    if (created) fill_init(ctx, t, DBR_INIT_KAIMING_UNIFORM, 1.0 / sqrt((double)fan_in));
    return t;
}

dbr_tensor *dbr_buffer_(dbr_ctx *ctx, const char *name, dbr_dtype dt, int ndim,
                        const int64_t *shape, double fill, const char *file, int line) {
    bool created;
    dbr_tensor *t = param_common(ctx, "dbr_buffer", name, DBR_KIND_BUFFER, dt, ndim, shape, file,
                                 line, &created);
    if (created && t->data)
        for (int64_t i = 0; i < t->numel; i++) {
            switch (dt) {
            case DBR_F32: ((float *)t->data)[i] = (float)fill; break;
            case DBR_F64: ((double *)t->data)[i] = fill; break;
            case DBR_I32: ((int32_t *)t->data)[i] = (int32_t)fill; break;
            default: ((int64_t *)t->data)[i] = (int64_t)fill; break;
            }
        }
    return t;
}

/* ---- inputs and constants --------------------------------------------- */
dbr_tensor *dbr_input_(dbr_ctx *ctx, dbr_dtype dt, int ndim, const int64_t *shape,
                       const void *data, bool copy, const char *file, int line) {
    const char *api = "dbr_input";
    if (ctx->bad_config) return NULL;
    if (!check_shape_arg(ctx, api, file, line, ndim, shape)) return NULL;
    if ((unsigned)dt >= DBR_NDTYPES || dt == DBR_F16 || dt == DBR_BF16) {
        dbr_set_error(ctx, file, line, api, "dtype %s has no kernels yet", dbr_dtype_name(dt));
        return NULL;
    }
    bool meta = ctx->cfg.mode == DBR_MODE_META;
    if (!data && !meta) {
        dbr_set_error(ctx, file, line, api, "data is NULL");
        return NULL;
    }
    dbr_tensor *t = dbr_tensor_new(ctx, DBR_KIND_INPUT, (int32_t)dt, ndim, shape, copy);
    if (!t) {
        dbr_set_error(ctx, file, line, api, "out of memory");
        return NULL;
    }
    if (dbr_recording(ctx) && dbr_trace_input(ctx, t)) {
        dbr_set_error(ctx, file, line, api, "out of memory");
        return NULL;
    }
    if (meta) return t;
    if (copy)
        memcpy(t->data, data, (size_t)t->nbytes);
    else
        t->data = (void *)data; /* bound to user memory, which must outlive the step */
    return t;
}

dbr_tensor *dbr_full_(dbr_ctx *ctx, dbr_dtype dt, int ndim, const int64_t *shape, double v,
                      const char *file, int line) {
    const char *api = "dbr_full";
    if (ctx->bad_config) return NULL;
    if (!check_shape_arg(ctx, api, file, line, ndim, shape)) return NULL;
    if (dt != DBR_F32 && dt != DBR_F64 && dt != DBR_I32 && dt != DBR_I64) {
        dbr_set_error(ctx, file, line, api, "dtype %s has no kernels yet", dbr_dtype_name(dt));
        return NULL;
    }
    dbr_tensor *t = dbr_tensor_new(ctx, DBR_KIND_CONST, (int32_t)dt, ndim, shape, true);
    if (!t) {
        dbr_set_error(ctx, file, line, api, "out of memory");
        return NULL;
    }
    if (t->data)
        for (int64_t i = 0; i < t->numel; i++) switch (dt) {
            case DBR_F32: ((float *)t->data)[i] = (float)v; break;
            case DBR_F64: ((double *)t->data)[i] = v; break;
            case DBR_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
            default: ((int64_t *)t->data)[i] = (int64_t)v; break;
            }
    return t;
}

dbr_tensor *dbr_scalar_(dbr_ctx *ctx, double v, dbr_dtype dt, const char *file, int line) {
    return dbr_full_(ctx, dt, 0, NULL, v, file, line);
}

/* ---- reading values --------------------------------------------------- */
static bool readable(dbr_ctx *ctx, dbr_tensor *t, const char *api, const char *file, int line) {
    if (!t) return false;
    if (ctx->cfg.mode == DBR_MODE_META) {
        dbr_set_error(ctx, file, line, api, "meta mode holds shapes only, no values");
        return false;
    }
    if (!t->data && ctx->cfg.mode == DBR_MODE_COMPILED && t->kind == DBR_KIND_INTERMEDIATE &&
        t->vgen == ctx->tr.gen) {
        /* a read cuts the graph: compute what it needs now */
        if (dbr_trace_flush(ctx, t, file, line)) return false;
    }
    if (!t->data) {
        dbr_set_error(ctx, file, line, api,
                      "this tensor's data was released (dbr_backward frees intermediates it no "
                      "longer needs, dbr_step_end frees the rest); call dbr_keep(t) before "
                      "dbr_backward to read it afterwards");
        return false;
    }
    return true;
}

double dbr_item_(dbr_ctx *ctx, dbr_tensor *t, const char *file, int line) {
    if (!readable(ctx, t, "dbr_item", file, line)) return NAN;
    if (t->numel != 1) {
        dbr_tinfo ti;
        char s[128];
        dbr_tinfo_of(t, &ti);
        dbr_set_error(ctx, file, line, "dbr_item", "tensor %s has %lld elements, not 1",
                      dbr_shape_str(&ti, s, sizeof s), (long long)t->numel);
        return NAN;
    }
    switch (t->dtype) {
    case DBR_F32: return ((float *)t->data)[0];
    case DBR_F64: return ((double *)t->data)[0];
    case DBR_I32: return ((int32_t *)t->data)[0];
    case DBR_I64: return (double)((int64_t *)t->data)[0];
    default: return NAN;
    }
}

int dbr_copy_out_(dbr_ctx *ctx, dbr_tensor *t, void *dst, size_t bytes, const char *file,
                  int line) {
    if (!readable(ctx, t, "dbr_copy_out", file, line)) return -1;
    if (!dst || bytes != (size_t)t->nbytes) {
        dbr_tinfo ti;
        char s[128];
        dbr_tinfo_of(t, &ti);
        dbr_set_error(ctx, file, line, "dbr_copy_out",
                      "tensor %s %s holds %lld bytes, destination %s%zu bytes",
                      dbr_dt_name((int32_t)t->dtype), dbr_shape_str(&ti, s, sizeof s),
                      (long long)t->nbytes, dst ? "" : "is NULL with ", bytes);
        return -1;
    }
    memcpy(dst, t->data, bytes);
    return 0;
}
