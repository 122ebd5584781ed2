/* cnn.c: a small convolutional network for 28x28 images:
 * two conv3x3-batchnorm-relu-maxpool blocks and a linear classifier. */
#include "models.h"

#include <stdio.h>

static dbr_tensor *block(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t cin,
                         int64_t cout) {
    char n[64];
    snprintf(n, sizeof n, "%s.w", name);
    dbr_tensor *w = dbr_param(ctx, n, DBR_F32, DBR_SHAPE(cout, cin, 3, 3), DBR_INIT_KAIMING_NORMAL);
    snprintf(n, sizeof n, "%s.bn.gamma", name);
    dbr_tensor *g = dbr_param(ctx, n, DBR_F32, DBR_SHAPE(cout), DBR_INIT_ONES);
    snprintf(n, sizeof n, "%s.bn.beta", name);
    dbr_tensor *b = dbr_param(ctx, n, DBR_F32, DBR_SHAPE(cout), DBR_INIT_ZEROS);
    snprintf(n, sizeof n, "%s.bn.mean", name);
    dbr_tensor *rm = dbr_buffer(ctx, n, DBR_F32, DBR_SHAPE(cout), 0.0);
    snprintf(n, sizeof n, "%s.bn.var", name);
    dbr_tensor *rv = dbr_buffer(ctx, n, DBR_F32, DBR_SHAPE(cout), 1.0);

    dbr_tensor *h = dbr_conv2d(ctx, x, w, NULL, .padding = {1, 1});
    h = dbr_batch_norm(ctx, h, g, b, rm, rv, 0.1, 1e-5);
    return dbr_max_pool2d(ctx, dbr_relu(ctx, h), 2, 2, 0);
}

dbr_tensor *dbr_model_cnn(dbr_ctx *ctx, dbr_tensor *x) {
    x = dbr_reshape(ctx, x, DBR_SHAPE(-1, 1, 28, 28));
    dbr_tensor *h = block(ctx, x, "conv1", 1, 32);   /* [N, 32, 14, 14] */
    h = block(ctx, h, "conv2", 32, 64);              /* [N, 64, 7, 7] */
    h = dbr_reshape(ctx, h, DBR_SHAPE(-1, 64 * 7 * 7));
    dbr_tensor *w = dbr_param(ctx, "fc.w", DBR_F32, DBR_SHAPE(10, 64 * 7 * 7), DBR_INIT_KAIMING_UNIFORM);
    dbr_tensor *b = dbr_param_bias(ctx, "fc.b", DBR_F32, 10, 64 * 7 * 7);
    return dbr_linear(ctx, h, w, b);
}
