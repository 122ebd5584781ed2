/* unet.c: U-Net (Ronneberger et al., "U-Net: Convolutional Networks for
 * Biomedical Image Segmentation", MICCAI 2015, Fig. 1): x [N, 1, 572, 572]
 * -> per-pixel logits [N, 2, 388, 388]. Unpadded ("valid") 3x3
 * convolutions with bias and ReLU, 2x2 max pools, 64-128-256-512-1024
 * channels; the expanding path crops the contracting path's maps to the
 * centre (dbr_slice) and concatenates them. Dropout 0.5 ends the last two
 * contracting stages, as in the authors' Caffe model.
 *
 * The 2x2 stride-2 up-convolution (a transposed convolution; dbr has no such
 * op) is built exactly: a 1x1 convolution to 4*cout channels (no bias)
 * followed by a depth-to-space shuffle (reshape, permute, reshape) puts
 * W[:, :, i, j]^T x at output pixel (2y+i, 2x+j), then a per-channel bias is
 * added. Same outputs, sizes and parameter count (4*cin*cout + cout) as the
 * paper's layer. */
#include "models.h"

#include <stdio.h>

static dbr_tensor *double_conv(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t cin,
                               int64_t cout) {
    char n[64];
    snprintf(n, sizeof n, "%s.conv1", name);
    dbr_tensor *h = dbr_relu(ctx, dbr_zoo_conv(ctx, x, n, cin, cout, 3, 1, 0, true));
    snprintf(n, sizeof n, "%s.conv2", name);
    return dbr_relu(ctx, dbr_zoo_conv(ctx, h, n, cout, cout, 3, 1, 0, true));
}

static dbr_tensor *up_conv(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t cin,
                           int64_t cout) {
    if (!x) return NULL;
    char n[64];
    int64_t N = x->shape[0], H = x->shape[2], W = x->shape[3];
    snprintf(n, sizeof n, "%s.w", name);
    dbr_tensor *w = dbr_param(ctx, n, DBR_F32, DBR_SHAPE(4 * cout, cin, 1, 1), DBR_INIT_KAIMING_NORMAL);
    snprintf(n, sizeof n, "%s.b", name);
    dbr_tensor *b = dbr_param_bias(ctx, n, DBR_F32, cout, cin * 4);
    dbr_tensor *h = dbr_conv2d(ctx, x, w, NULL);            /* [N, cout*2*2, H, W] */
    h = dbr_reshape(ctx, h, DBR_SHAPE(N, cout, 2, 2, H, W));
    h = dbr_permute(ctx, h, DBR_AXES(0, 1, 4, 2, 5, 3));    /* [N, cout, H, 2, W, 2] */
    h = dbr_reshape(ctx, h, DBR_SHAPE(N, cout, 2 * H, 2 * W));
    return dbr_add(ctx, h, dbr_reshape(ctx, b, DBR_SHAPE(cout, 1, 1)));
}

/* the centre of skip [N, C, H, W] at y's height and width */
static dbr_tensor *crop_like(dbr_ctx *ctx, dbr_tensor *skip, dbr_tensor *y) {
    if (!skip || !y) return NULL;
    int64_t dh = (skip->shape[2] - y->shape[2]) / 2, dw = (skip->shape[3] - y->shape[3]) / 2;
    dbr_tensor *c = dbr_slice(ctx, skip, 2, dh, dh + y->shape[2], 1);
    return dbr_slice(ctx, c, 3, dw, dw + y->shape[3], 1);
}

dbr_tensor *dbr_model_unet(dbr_ctx *ctx, dbr_tensor *x) {
    dbr_tensor *skip[4];
    dbr_tensor *h = x;
    int64_t cin = 1;
    for (int s = 0; s < 5; s++) { /* 572 -> 568, 280, 136, 64, 28 */
        char n[16];
        int64_t c = 64 << s;
        snprintf(n, sizeof n, "down%d", s + 1);
        h = double_conv(ctx, h, n, cin, c);
        if (s >= 3) h = dbr_dropout(ctx, h, 0.5);
        if (s < 4) {
            skip[s] = h;
            h = dbr_max_pool2d(ctx, h, 2, 2, 0);
        }
        cin = c;
    }
    for (int s = 3; s >= 0; s--) { /* 28 -> 56 -> 52, 104 -> 100, 200 -> 196, 392 -> 388 */
        char n[16];
        int64_t c = 64 << s;
        snprintf(n, sizeof n, "up%d.upconv", s + 1);
        dbr_tensor *u = up_conv(ctx, h, n, cin, c);
        dbr_tensor *cat[2] = {crop_like(ctx, skip[s], u), u};
        h = dbr_concat(ctx, 2, cat, 1);
        snprintf(n, sizeof n, "up%d", s + 1);
        h = double_conv(ctx, h, n, 2 * c, c);
        cin = c;
    }
    return dbr_zoo_conv(ctx, h, "final", 64, 2, 1, 1, 0, true);
}
