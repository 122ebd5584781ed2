/* resnet.c: ResNet-50 and ResNet-152 (He et al., "Deep Residual Learning for
 * Image Recognition", CVPR 2016, Table 1) with bottleneck blocks and batch
 * normalization after every convolution. As in the paper and its Caffe
 * release (and Chainer's ResNet50, which the recomputation papers plan),
 * a stage's first block downsamples with stride 2 in its first 1x1
 * convolution; projection shortcuts (1x1 conv + BN) where the shape changes.
 * Convolutions have no bias; the classifier has one. */
#include "models.h"

#include <stdio.h>

/* 1x1 (stride) -> 3x3 -> 1x1 (x4), BN after each, ReLU after the sum */
static dbr_tensor *bottleneck(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t cin,
                              int64_t mid, int stride) {
    char n[96];
    int64_t cout = 4 * mid;
    snprintf(n, sizeof n, "%s.conv1", name);
    dbr_tensor *h = dbr_zoo_conv_bn(ctx, x, n, cin, mid, 1, stride, 0, true);
    snprintf(n, sizeof n, "%s.conv2", name);
    h = dbr_zoo_conv_bn(ctx, h, n, mid, mid, 3, 1, 1, true);
    snprintf(n, sizeof n, "%s.conv3", name);
    h = dbr_zoo_conv_bn(ctx, h, n, mid, cout, 1, 1, 0, false);
    dbr_tensor *sc = x;
    if (stride != 1 || cin != cout) {
        snprintf(n, sizeof n, "%s.down", name);
        sc = dbr_zoo_conv_bn(ctx, x, n, cin, cout, 1, stride, 0, false);
    }
    return dbr_relu(ctx, dbr_add(ctx, h, sc));
}

static dbr_tensor *resnet(dbr_ctx *ctx, dbr_tensor *x, const int blocks[4]) {
    dbr_tensor *h = dbr_zoo_conv_bn(ctx, x, "conv1", 3, 64, 7, 2, 3, true); /* 112x112 */
    h = dbr_max_pool2d(ctx, h, 3, 2, 1);                                   /* 56x56 */
    int64_t cin = 64;
    for (int s = 0; s < 4; s++) {
        int64_t mid = 64 << s; /* 64, 128, 256, 512; outputs 4x that */
        for (int b = 0; b < blocks[s]; b++) {
            char n[32];
            snprintf(n, sizeof n, "layer%d.%d", s + 1, b);
            h = bottleneck(ctx, h, n, cin, mid, b == 0 && s > 0 ? 2 : 1);
            cin = 4 * mid;
        }
    }
    h = dbr_global_avg_pool(ctx, h); /* [N, 2048] */
    return dbr_zoo_linear(ctx, h, "fc", 2048, 1000, true);
}

dbr_tensor *dbr_model_resnet50(dbr_ctx *ctx, dbr_tensor *x) {
    return resnet(ctx, x, (const int[]){3, 4, 6, 3});
}

dbr_tensor *dbr_model_resnet152(dbr_ctx *ctx, dbr_tensor *x) {
    return resnet(ctx, x, (const int[]){3, 8, 36, 3});
}
