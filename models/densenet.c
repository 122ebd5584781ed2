/* densenet.c: DenseNet-121 (Huang et al., "Densely Connected Convolutional
 * Networks", CVPR 2017, Table 1): DenseNet-BC with growth rate k = 32,
 * dense blocks of 6, 12, 24 and 16 layers, bottleneck width 4k and
 * compression 0.5. Every layer is BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k),
 * its output concatenated to its input (the straightforward, memory-hungry
 * form the recomputation papers plan); transitions are
 * BN-ReLU-conv1x1-avgpool2. Convolutions have no bias. */
#include "models.h"

#include <stdio.h>

enum { GROWTH = 32, BN_SIZE = 4 };

static dbr_tensor *bn_relu_conv(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t cin,
                                int64_t cout, int k, int pad) {
    char n[96];
    snprintf(n, sizeof n, "%s.bn", name);
    dbr_tensor *h = dbr_relu(ctx, dbr_zoo_bn(ctx, x, n, cin));
    return dbr_zoo_conv(ctx, h, name, cin, cout, k, 1, pad, false);
}

dbr_tensor *dbr_model_densenet121(dbr_ctx *ctx, dbr_tensor *x) {
    static const int blocks[4] = {6, 12, 24, 16};
    dbr_tensor *h = dbr_zoo_conv_bn(ctx, x, "conv0", 3, 64, 7, 2, 3, true); /* 112x112 */
    h = dbr_max_pool2d(ctx, h, 3, 2, 1);                                   /* 56x56 */
    int64_t c = 64;
    for (int b = 0; b < 4; b++) {
        for (int l = 0; l < blocks[b]; l++) {
            char n[64];
            snprintf(n, sizeof n, "block%d.layer%d.conv1", b + 1, l + 1);
            dbr_tensor *y = bn_relu_conv(ctx, h, n, c, BN_SIZE * GROWTH, 1, 0);
            snprintf(n, sizeof n, "block%d.layer%d.conv2", b + 1, l + 1);
            y = bn_relu_conv(ctx, y, n, BN_SIZE * GROWTH, GROWTH, 3, 1);
            dbr_tensor *cat[2] = {h, y};
            h = dbr_concat(ctx, 2, cat, 1);
            c += GROWTH;
        }
        if (b < 3) { /* transition: compression 0.5, then halve the resolution */
            char n[32];
            snprintf(n, sizeof n, "trans%d.conv", b + 1);
            h = bn_relu_conv(ctx, h, n, c, c / 2, 1, 0);
            h = dbr_avg_pool2d(ctx, h, 2, 2, 0);
            c /= 2;
        }
    }
    h = dbr_relu(ctx, dbr_zoo_bn(ctx, h, "norm5", c)); /* c = 1024 */
    h = dbr_global_avg_pool(ctx, h);
    return dbr_zoo_linear(ctx, h, "fc", c, 1000, true);
}
