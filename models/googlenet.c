/* googlenet.c: GoogLeNet, Inception v1 (Szegedy et al., "Going Deeper with
 * Convolutions", CVPR 2015, Table 1) without the auxiliary classifiers.
 * As in the paper: convolutions with bias and ReLU, no batch norm, true 5x5
 * convolutions in the 5x5 branch, dropout 0.4 before the classifier. The
 * paper's local response normalization (parameter-free) has no dbr op and
 * is left out; 3x3/2 max pools use padding 1 where Caffe rounds up. */
#include "models.h"

#include <stdio.h>

static dbr_tensor *conv_relu(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t cin,
                             int64_t cout, int k, int stride) {
    return dbr_relu(ctx, dbr_zoo_conv(ctx, x, name, cin, cout, k, stride, k / 2, true));
}

/* branches: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; maxpool3x3/1 -> 1x1 */
static dbr_tensor *inception(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t cin,
                             int64_t c1, int64_t r3, int64_t c3, int64_t r5, int64_t c5,
                             int64_t pp, int64_t *cout) {
    char n[64];
    dbr_tensor *b[4];
    snprintf(n, sizeof n, "%s.1x1", name);
    b[0] = conv_relu(ctx, x, n, cin, c1, 1, 1);
    snprintf(n, sizeof n, "%s.3x3_reduce", name);
    b[1] = conv_relu(ctx, x, n, cin, r3, 1, 1);
    snprintf(n, sizeof n, "%s.3x3", name);
    b[1] = conv_relu(ctx, b[1], n, r3, c3, 3, 1);
    snprintf(n, sizeof n, "%s.5x5_reduce", name);
    b[2] = conv_relu(ctx, x, n, cin, r5, 1, 1);
    snprintf(n, sizeof n, "%s.5x5", name);
    b[2] = conv_relu(ctx, b[2], n, r5, c5, 5, 1);
    snprintf(n, sizeof n, "%s.pool_proj", name);
    b[3] = conv_relu(ctx, dbr_max_pool2d(ctx, x, 3, 1, 1), n, cin, pp, 1, 1);
    *cout = c1 + c3 + c5 + pp;
    return dbr_concat(ctx, 4, b, 1);
}

dbr_tensor *dbr_model_googlenet(dbr_ctx *ctx, dbr_tensor *x) {
    static const struct {
        const char *name;
        int64_t c1, r3, c3, r5, c5, pp;
        bool pool_after;
    } inc[9] = {
        {"inception3a", 64, 96, 128, 16, 32, 32, false},
        {"inception3b", 128, 128, 192, 32, 96, 64, true},
        {"inception4a", 192, 96, 208, 16, 48, 64, false},
        {"inception4b", 160, 112, 224, 24, 64, 64, false},
        {"inception4c", 128, 128, 256, 24, 64, 64, false},
        {"inception4d", 112, 144, 288, 32, 64, 64, false},
        {"inception4e", 256, 160, 320, 32, 128, 128, true},
        {"inception5a", 256, 160, 320, 32, 128, 128, false},
        {"inception5b", 384, 192, 384, 48, 128, 128, false},
    };
    dbr_tensor *h = conv_relu(ctx, x, "conv1", 3, 64, 7, 2); /* 112x112 */
    h = dbr_max_pool2d(ctx, h, 3, 2, 1);                     /* 56x56 */
    h = conv_relu(ctx, h, "conv2_reduce", 64, 64, 1, 1);
    h = conv_relu(ctx, h, "conv2", 64, 192, 3, 1);
    h = dbr_max_pool2d(ctx, h, 3, 2, 1); /* 28x28 */
    int64_t c = 192;
    for (int i = 0; i < 9; i++) {
        h = inception(ctx, h, inc[i].name, c, inc[i].c1, inc[i].r3, inc[i].c3, inc[i].r5,
                      inc[i].c5, inc[i].pp, &c);
        if (inc[i].pool_after) h = dbr_max_pool2d(ctx, h, 3, 2, 1); /* 14x14, 7x7 */
    }
    h = dbr_dropout(ctx, dbr_global_avg_pool(ctx, h), 0.4); /* [N, 1024] */
    return dbr_zoo_linear(ctx, h, "fc", c, 1000, true);
}
