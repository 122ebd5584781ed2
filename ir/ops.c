/* ops.c: the op table, expanded from ops.def, and the small dtype and
 * shape helpers every folder above ir/ uses. */
#include <stdarg.h>
#include <stdio.h>

#include "ir.h"

const dbr_opinfo dbr_ops[DBR_OP_COUNT] = {
#define X(NAME, str, min_in, max_in, cat, retain) \
    [DBR_OP_##NAME] = {str, min_in, max_in, DBR_CAT_##cat, retain},
#include "ops.def"
#undef X
};

int64_t dbr_tinfo_numel(const dbr_tinfo *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

bool dbr_tinfo_same(const dbr_tinfo *a, const dbr_tinfo *b)
{
    if (a->dtype != b->dtype || a->ndim != b->ndim)
        return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

size_t dbr_dt_size(int32_t dtype)
{
    switch (dtype) {
    case DT_F32: case DT_I32: return 4;
    case DT_F64: case DT_I64: return 8;
    case DT_F16: case DT_BF16: return 2;
    default: return 0;
    }
}

const char *dbr_dt_name(int32_t dtype)
{
    static const char *const names[DT_COUNT] = {"f32", "f64", "i32", "i64", "f16", "bf16"};
    return dtype >= 0 && dtype < DT_COUNT ? names[dtype] : "?";
}

bool dbr_dt_is_float(int32_t dtype)
{
    return dtype == DT_F32 || dtype == DT_F64 || dtype == DT_F16 || dtype == DT_BF16;
}

bool dbr_dt_is_int(int32_t dtype)
{
    return dtype == DT_I32 || dtype == DT_I64;
}

char *dbr_shape_str(const dbr_tinfo *t, char *buf, size_t n)
{
    size_t at = 0;
    if (n == 0)
        return buf;
    buf[0] = '\0';
    at += (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && at < n; d++)
        at += (size_t)snprintf(buf + at, n - at, d ? ",%lld" : "%lld", (long long)t->shape[d]);
    if (at < n)
        snprintf(buf + at, n - at, "]");
    return buf;
}

int dbr_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void dbr_human_bytes(int64_t b, char *buf, size_t n) {
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double x = (double)b;
    int k = 0;
    while ((x >= 1024 || x <= -1024) && k < 4) x /= 1024, k++;
    snprintf(buf, n, "%.2f %s", x, unit[k]);
}
