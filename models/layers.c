/* layers.c: building blocks the zoo models share. Each creates its
 * parameters by name (`name` is a prefix: "<name>.w", "<name>.b", ...). */
#include "models.h"

#include <stdio.h>

dbr_tensor *dbr_zoo_conv(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t cin,
                         int64_t cout, int k, int stride, int pad, bool bias) {
    char n[128];
    snprintf(n, sizeof n, "%s.w", name);
    dbr_tensor *w = dbr_param(ctx, n, DBR_F32, DBR_SHAPE(cout, cin, k, k), DBR_INIT_KAIMING_NORMAL);
    dbr_tensor *b = NULL;
    if (bias) {
        snprintf(n, sizeof n, "%s.b", name);
        b = dbr_param_bias(ctx, n, DBR_F32, cout, cin * k * k);
    }
    return dbr_conv2d(ctx, x, w, b, .stride = {stride, stride}, .padding = {pad, pad});
}

dbr_tensor *dbr_zoo_bn(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t c) {
    char n[128];
    snprintf(n, sizeof n, "%s.gamma", name);
    dbr_tensor *g = dbr_param(ctx, n, DBR_F32, DBR_SHAPE(c), DBR_INIT_ONES);
    snprintf(n, sizeof n, "%s.beta", name);
    dbr_tensor *b = dbr_param(ctx, n, DBR_F32, DBR_SHAPE(c), DBR_INIT_ZEROS);
    snprintf(n, sizeof n, "%s.mean", name);
    dbr_tensor *rm = dbr_buffer(ctx, n, DBR_F32, DBR_SHAPE(c), 0.0);
    snprintf(n, sizeof n, "%s.var", name);
    dbr_tensor *rv = dbr_buffer(ctx, n, DBR_F32, DBR_SHAPE(c), 1.0);
    return dbr_batch_norm(ctx, x, g, b, rm, rv, 0.1, 1e-5);
}

dbr_tensor *dbr_zoo_conv_bn(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t cin,
                            int64_t cout, int k, int stride, int pad, bool relu) {
    char n[128];
    snprintf(n, sizeof n, "%s.bn", name);
    dbr_tensor *h = dbr_zoo_conv(ctx, x, name, cin, cout, k, stride, pad, false);
    h = dbr_zoo_bn(ctx, h, n, cout);
    return relu ? dbr_relu(ctx, h) : h;
}

dbr_tensor *dbr_zoo_linear(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t in, int64_t out,
                           bool bias) {
    char n[128];
    snprintf(n, sizeof n, "%s.w", name);
    dbr_tensor *w = dbr_param(ctx, n, DBR_F32, DBR_SHAPE(out, in), DBR_INIT_KAIMING_UNIFORM);
    dbr_tensor *b = NULL;
    if (bias) {
        snprintf(n, sizeof n, "%s.b", name);
        b = dbr_param_bias(ctx, n, DBR_F32, out, in);
    }
    return dbr_linear(ctx, x, w, b);
}
