/* kdesc.c: checks, hashing and the scalar reference evaluator of kernel
 * descriptions (kdesc.h). The evaluator is the oracle the back ends are
 * tested against and the fallback when none is built. */
#include "codegen/kdesc.h"

#include <tgmath.h>

#include "kernels/vmath.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int64_t dbr_kdesc_out_numel(const dbr_kdesc *kd) {
    int64_t n = 1;
    for (int d = 0; d < kd->ndim - kd->nred; d++) n *= kd->shape[d];
    return n;
}

int64_t dbr_kdesc_red_numel(const dbr_kdesc *kd) {
    int64_t n = 1;
    for (int d = kd->ndim - kd->nred; d < kd->ndim; d++) n *= kd->shape[d];
    return n;
}

static uint64_t dbits(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

uint64_t dbr_kdesc_hash(const dbr_kdesc *kd) {
    uint64_t h = 0x6462726b64657363ull; /* "dbrkdesc" */
    h = dbr_hash_mix(h, (uint64_t)kd->dtype);
    h = dbr_hash_mix(h, (uint64_t)kd->ndim);
    for (int d = 0; d < kd->ndim; d++) h = dbr_hash_mix(h, (uint64_t)kd->shape[d]);
    h = dbr_hash_mix(h, (uint64_t)kd->nred);
    h = dbr_hash_mix(h, (uint64_t)(kd->nred ? kd->red : 0));
    h = dbr_hash_mix(h, (uint64_t)kd->n_in);
    for (int i = 0; i < kd->n_in; i++) {
        h = dbr_hash_mix(h, (uint64_t)kd->in[i].dtype);
        for (int d = 0; d < kd->ndim; d++) h = dbr_hash_mix(h, (uint64_t)kd->in[i].stride[d]);
    }
    h = dbr_hash_mix(h, (uint64_t)kd->n_ins);
    for (int k = 0; k < kd->n_ins; k++) {
        const dbr_kd_ins *s = &kd->ins[k];
        h = dbr_hash_mix(h, (uint64_t)s->kind);
        h = dbr_hash_mix(h, (uint64_t)(s->kind == DBR_KD_OP ? s->op : 0));
        h = dbr_hash_mix(h, (uint64_t)(uint32_t)s->a);
        h = dbr_hash_mix(h, (uint64_t)(uint32_t)s->b);
        h = dbr_hash_mix(h, (uint64_t)(uint32_t)s->c);
        h = dbr_hash_mix(h, dbits(s->p));
    }
    return h ? h : 1;
}

int dbr_kdesc_check(const dbr_kdesc *kd, char *err, size_t errlen) {
    if (kd->dtype != DT_F32 && kd->dtype != DT_F64)
        return dbr_errf(err, errlen, "kernel dtype %d is not f32 or f64", kd->dtype);
    if (kd->ndim < 1 || kd->ndim > DBR_KD_MAX_DIMS)
        return dbr_errf(err, errlen, "kernel ndim %d out of range", kd->ndim);
    for (int d = 0; d < kd->ndim; d++)
        if (kd->shape[d] < 1) return dbr_errf(err, errlen, "dim %d is %lld", d, (long long)kd->shape[d]);
    if (kd->nred < 0 || kd->nred > kd->ndim)
        return dbr_errf(err, errlen, "nred %d out of range", kd->nred);
    if (kd->nred && kd->red != DBR_OP_SUM && kd->red != DBR_OP_MEAN && kd->red != DBR_OP_MAX)
        return dbr_errf(err, errlen, "reduction op %d is not sum, mean or max", kd->red);
    if (kd->n_in < 1 || kd->n_in > DBR_KD_MAX_IN)
        return dbr_errf(err, errlen, "%d inputs out of range", kd->n_in);
    for (int i = 0; i < kd->n_in; i++) {
        int32_t dt = kd->in[i].dtype;
        if (dt != DT_F32 && dt != DT_F64 && dt != DT_I32 && dt != DT_I64)
            return dbr_errf(err, errlen, "input %d has dtype %d", i, dt);
    }
    if (kd->n_ins < 1 || kd->n_ins > DBR_KD_MAX_INS)
        return dbr_errf(err, errlen, "%d instructions out of range", kd->n_ins);
    for (int k = 0; k < kd->n_ins; k++) {
        const dbr_kd_ins *s = &kd->ins[k];
        switch (s->kind) {
        case DBR_KD_LOAD:
            if (s->a < 0 || s->a >= kd->n_in)
                return dbr_errf(err, errlen, "instruction %d loads input %d of %d", k, s->a, kd->n_in);
            break;
        case DBR_KD_CONST: break;
        case DBR_KD_OP: {
            int ar = dbr_fuse_arity((dbr_op)s->op);
            if (!ar) return dbr_errf(err, errlen, "instruction %d: op %d is not element-wise", k, s->op);
            const int32_t opd[3] = {s->a, s->b, s->c};
            for (int j = 0; j < ar; j++)
                if (opd[j] < 0 || opd[j] >= k)
                    return dbr_errf(err, errlen, "instruction %d reads %d", k, opd[j]);
            /* only WHERE's mask may be an integer load */
            for (int j = 0; j < ar; j++) {
                const dbr_kd_ins *o = &kd->ins[opd[j]];
                if (o->kind == DBR_KD_LOAD && !dbr_dt_is_float(kd->in[o->a].dtype) &&
                    !(s->op == DBR_OP_WHERE && j == 0))
                    return dbr_errf(err, errlen, "instruction %d reads integer input %d", k, o->a);
            }
            break;
        }
        default: return dbr_errf(err, errlen, "instruction %d has kind %d", k, s->kind);
        }
    }
    return 0;
}

/* ---- the reference evaluator ------------------------------------------------
 * One point at a time in the kernel's dtype, each op written as in ew.c. */

#define T float
#define F(name) name##_f32
#include "codegen/kdesc_eval.h"
#undef T
#undef F
#define T double
#define F(name) name##_f64
#include "codegen/kdesc_eval.h"
#undef T
#undef F

void dbr_kdesc_eval(const dbr_kdesc *kd, void *const *args, int64_t begin, int64_t end) {
    if (kd->dtype == DT_F32) eval_f32(kd, args, begin, end);
    else eval_f64(kd, args, begin, end);
}
