/* kdesc_eval.h: the body of the reference evaluator, included by kdesc.c
 * once per float type with T and F(name) defined (as the CPU kernels do). */

static T F(load)(const dbr_kdesc *kd, void *const *args, int i, int64_t off) {
    switch (kd->in[i].dtype) {
    case DT_F32: return (T)((const float *)args[i])[off];
    case DT_F64: return (T)((const double *)args[i])[off];
    case DT_I32: return (T)((const int32_t *)args[i])[off];
    default: return (T)((const int64_t *)args[i])[off];
    }
}

/* WHERE's mask is tested in its own type: a nonzero integer selects a even
 * when converting it to T would round to 0 (it cannot, but say so once). */
static bool F(mask_at)(const dbr_kdesc *kd, void *const *args, int i, int64_t off) {
    switch (kd->in[i].dtype) {
    case DT_F32: return ((const float *)args[i])[off] != 0;
    case DT_F64: return ((const double *)args[i])[off] != 0;
    case DT_I32: return ((const int32_t *)args[i])[off] != 0;
    default: return ((const int64_t *)args[i])[off] != 0;
    }
}

static T F(point)(const dbr_kdesc *kd, void *const *args, int64_t pt, T *v) {
    int64_t off[DBR_KD_MAX_IN] = {0};
    for (int d = kd->ndim - 1; d >= 0; d--) {
        const int64_t id = pt % kd->shape[d];
        pt /= kd->shape[d];
        for (int i = 0; i < kd->n_in; i++) off[i] += id * kd->in[i].stride[d];
    }
    const T half = (T)0.5, one = (T)1, zero = (T)0;
    const T c_gelu = (T)0.7978845608028654, k_gelu = (T)0.044715;
    for (int k = 0; k < kd->n_ins; k++) {
        const dbr_kd_ins *s = &kd->ins[k];
        if (s->kind == DBR_KD_LOAD) {
            v[k] = F(load)(kd, args, s->a, off[s->a]);
            continue;
        }
        if (s->kind == DBR_KD_CONST) {
            v[k] = (T)s->p;
            continue;
        }
        const T a = v[s->a], b = s->b >= 0 ? v[s->b] : zero, p = (T)s->p;
        T r;
        switch ((dbr_op)s->op) {
        case DBR_OP_NEG: r = -a; break;
        case DBR_OP_EXP: r = DBR_VEXP(a); break;
        case DBR_OP_LOG: r = log(a); break;
        case DBR_OP_SQRT: r = sqrt(a); break;
        case DBR_OP_RSQRT: r = one / sqrt(a); break;
        case DBR_OP_POW: r = s->p == 2.0 ? a * a : s->p == 1.0 ? a : pow(a, p); break;
        case DBR_OP_ABS: r = fabs(a); break;
        case DBR_OP_SIGN: r = a > zero ? one : a < zero ? -one : a; break;
        case DBR_OP_TANH: r = DBR_VTANH(a); break;
        case DBR_OP_SIGMOID: r = one / (one + DBR_VEXP(-a)); break;
        case DBR_OP_RELU: r = a > zero ? a : zero; break;
        case DBR_OP_LEAKY_RELU: r = a > zero ? a : a * p; break;
        case DBR_OP_GELU: r = half * a * (one + DBR_VTANH(c_gelu * (a + k_gelu * a * a * a))); break;
        case DBR_OP_SILU: r = a / (one + DBR_VEXP(-a)); break;
        case DBR_OP_ADD: r = a + b; break;
        case DBR_OP_SUB: r = a - b; break;
        case DBR_OP_MUL: r = a * b; break;
        case DBR_OP_DIV: r = a / b; break;
        case DBR_OP_RELU_BWD: r = a > zero ? b : zero; break;
        case DBR_OP_LEAKY_RELU_BWD: r = a > zero ? b : b * p; break;
        case DBR_OP_GELU_BWD: {
            const T t = DBR_VTANH(c_gelu * (a + k_gelu * a * a * a));
            r = b * (half * (one + t) +
                     half * a * (one - t * t) * c_gelu * (one + (T)3 * k_gelu * a * a));
            break;
        }
        case DBR_OP_SILU_BWD: {
            const T sg = one / (one + DBR_VEXP(-a));
            r = b * (sg * (one + a * (one - sg)));
            break;
        }
        case DBR_OP_WHERE: {
            const dbr_kd_ins *m = &kd->ins[s->a];
            const bool on = m->kind == DBR_KD_LOAD ? F(mask_at)(kd, args, m->a, off[m->a])
                                                   : v[s->a] != zero;
            r = on ? v[s->b] : v[s->c];
            break;
        }
        default: r = zero; break;
        }
        v[k] = r;
    }
    return v[kd->n_ins - 1];
}

static void F(eval)(const dbr_kdesc *kd, void *const *args, int64_t begin, int64_t end) {
    T v[DBR_KD_MAX_INS];
    T *out = args[kd->n_in];
    if (kd->nred == 0) {
        for (int64_t i = begin; i < end; i++) out[i] = F(point)(kd, args, i, v);
        return;
    }
    const int64_t R = dbr_kdesc_red_numel(kd);
    for (int64_t j = begin; j < end; j++) {
        if (kd->red == DBR_OP_MAX) {
            T m = -(T)INFINITY;
            for (int64_t r = 0; r < R; r++) {
                const T x = F(point)(kd, args, j * R + r, v);
                m = x > m || x != x ? x : m; /* a NaN stays */
            }
            out[j] = m;
        } else {
            double s = 0;
            for (int64_t r = 0; r < R; r++) s += (double)F(point)(kd, args, j * R + r, v);
            out[j] = (T)(kd->red == DBR_OP_MEAN ? s / (double)R : s);
        }
    }
}
