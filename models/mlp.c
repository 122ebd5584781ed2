/* mlp.c: the 784-512-512-10 multilayer perceptron with ReLU. */
#include "models.h"

static dbr_tensor *dense(dbr_ctx *ctx, dbr_tensor *x, const char *w, const char *b, int64_t in,
                         int64_t out) {
    dbr_tensor *W = dbr_param(ctx, w, DBR_F32, DBR_SHAPE(out, in), DBR_INIT_KAIMING_UNIFORM);
    dbr_tensor *B = dbr_param_bias(ctx, b, DBR_F32, out, in);
    return dbr_linear(ctx, x, W, B);
}

dbr_tensor *dbr_model_mlp(dbr_ctx *ctx, dbr_tensor *x) {
    x = dbr_reshape(ctx, x, DBR_SHAPE(-1, 784));
    dbr_tensor *h = dbr_relu(ctx, dense(ctx, x, "fc1.w", "fc1.b", 784, 512));
    h = dbr_relu(ctx, dense(ctx, h, "fc2.w", "fc2.b", 512, 512));
    return dense(ctx, h, "fc3.w", "fc3.b", 512, 10);
}
