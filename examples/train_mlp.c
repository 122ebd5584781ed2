/* train_mlp.c: the smallest complete dbr program. A model is a plain C
 * function; parameters are created by name on the first call. Build:
 *   cc -std=c17 train_mlp.c -Iinclude -Lbuild -ldbr -lopenblas -lz -lm
 * (or `cmake --build build --target example_train_mlp`). */
#include "dbr.h"

#include <stdio.h>

static dbr_tensor *model(dbr_ctx *ctx, dbr_tensor *x) {
    dbr_tensor *w1 = dbr_param(ctx, "l1.w", DBR_F32, DBR_SHAPE(256, 784), DBR_INIT_KAIMING_UNIFORM);
    dbr_tensor *b1 = dbr_param_bias(ctx, "l1.b", DBR_F32, 256, 784);
    dbr_tensor *w2 = dbr_param(ctx, "l2.w", DBR_F32, DBR_SHAPE(10, 256), DBR_INIT_KAIMING_UNIFORM);
    dbr_tensor *b2 = dbr_param_bias(ctx, "l2.b", DBR_F32, 10, 256);
    dbr_tensor *h = dbr_relu(ctx, dbr_linear(ctx, x, w1, b1));
    return dbr_linear(ctx, h, w2, b2);
}

int main(void) {
    dbr_config cfg = dbr_config_default();
    cfg.seed = 1;
    dbr_ctx *ctx = dbr_ctx_new(&cfg);
    dbr_dataset train;
    if (dbr_fashion_mnist(ctx, true, &train)) {
        fprintf(stderr, "%s\n", dbr_error(ctx));
        dbr_ctx_free(ctx);
        return 1;
    }
    dbr_optim_set(ctx, &(dbr_optim){.kind = DBR_ADAM, .lr = 1e-3});
    enum { B = 128 };
    static float x[B * 784];
    static int32_t y[B];
    dbr_loader *ld = dbr_loader_new(&train, B, true, true, cfg.seed);
    int64_t n, step = 0;
    while ((n = dbr_loader_next(ld, x, y)) > 0) {
        dbr_step_begin(ctx);
        dbr_tensor *logits = model(ctx, dbr_input(ctx, DBR_F32, DBR_SHAPE(n, 784), x, false));
        dbr_tensor *loss = dbr_cross_entropy(ctx, logits, dbr_input(ctx, DBR_I32, DBR_SHAPE(n), y, false));
        if (dbr_backward(ctx, loss) || dbr_optim_step(ctx)) break;
        if (step++ % 100 == 0) printf("step %lld loss %.4f\n", (long long)step, dbr_item(ctx, loss));
        dbr_step_end(ctx);
    }
    int rc = dbr_error(ctx) ? (fprintf(stderr, "%s\n", dbr_error(ctx)), 1) : 0;
    dbr_loader_free(ld);
    dbr_dataset_free(&train);
    dbr_ctx_free(ctx);
    return rc;
}
