/* vgg.c: VGG-19, configuration E of Simonyan and Zisserman, "Very Deep
 * Convolutional Networks for Large-Scale Image Recognition", ICLR 2015:
 * sixteen 3x3 convolutions (padding 1, with bias, ReLU; no batch norm, as in
 * the paper), five 2x2 max pools, then 4096-4096-1000 fully connected layers
 * with dropout 0.5 after the first two. The classifier fixes the input at
 * 224x224 (7x7x512 features). */
#include "models.h"

#include <stdio.h>

dbr_tensor *dbr_model_vgg19(dbr_ctx *ctx, dbr_tensor *x) {
    static const int64_t widths[5] = {64, 128, 256, 512, 512};
    static const int convs[5] = {2, 2, 4, 4, 4};
    dbr_tensor *h = x;
    int64_t cin = 3;
    for (int s = 0; s < 5; s++) {
        for (int i = 0; i < convs[s]; i++) {
            char n[32];
            snprintf(n, sizeof n, "conv%d_%d", s + 1, i + 1);
            h = dbr_relu(ctx, dbr_zoo_conv(ctx, h, n, cin, widths[s], 3, 1, 1, true));
            cin = widths[s];
        }
        h = dbr_max_pool2d(ctx, h, 2, 2, 0);
    }
    /* [N, 512, 7, 7] at 224x224: anything else fails at fc6 with its shape */
    int64_t n = h ? h->shape[0] : 0;
    h = dbr_reshape(ctx, h, DBR_SHAPE(n, -1));
    h = dbr_dropout(ctx, dbr_relu(ctx, dbr_zoo_linear(ctx, h, "fc6", 512 * 7 * 7, 4096, true)), 0.5);
    h = dbr_dropout(ctx, dbr_relu(ctx, dbr_zoo_linear(ctx, h, "fc7", 4096, 4096, true)), 0.5);
    return dbr_zoo_linear(ctx, h, "fc8", 4096, 1000, true);
}
