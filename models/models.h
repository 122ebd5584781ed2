/* models.h: the model zoo. Each model is a plain C function written only
 * against include/dbr.h: it creates its parameters by name on first call
 * and returns logits. */
#ifndef DBR_MODELS_H
#define DBR_MODELS_H

#include "dbr.h"

typedef dbr_tensor *(*dbr_model_fn)(dbr_ctx *ctx, dbr_tensor *x);

/* x [N, 784] -> logits [N, 10]: 784-512-512-10 with ReLU. */
dbr_tensor *dbr_model_mlp(dbr_ctx *ctx, dbr_tensor *x);
/* x [N, 784] viewed as [N, 1, 28, 28] -> logits [N, 10]:
 * conv3x3(1->32, pad 1)-bn-relu-maxpool2, conv3x3(32->64, pad 1)-bn-relu-maxpool2,
 * linear(64*7*7 -> 10). */
dbr_tensor *dbr_model_cnn(dbr_ctx *ctx, dbr_tensor *x);

/* ---- models at their papers' sizes (for planning in meta mode; the small
 * ones also train). Unlike mlp and cnn, the image models take x already as
 * [N, C, H, W] f32 and reshape nothing: a wrong rank or channel count is
 * reported by the first op that meets it (dbr_error names the op and the
 * shapes). Convolutions and linear layers are Kaiming-initialized; batch
 * norm has gamma 1, beta 0, momentum 0.1, eps 1e-5. */

/* x [N, 3, H, W] (224x224 in the paper) -> logits [N, 1000]. Bottleneck
 * blocks (1x1-3x3-1x1, BN after each conv, projection shortcuts), stages of
 * 3-4-6-3 (ResNet-50: 25,557,032 parameters) and 3-8-36-3 blocks (ResNet-152:
 * 60,192,808). Downsampling by stride 2 in a stage's first 1x1 conv, as in
 * the paper (torchvision's "v1.5" strides the 3x3 instead; same parameters).
 * Any H, W >= 32 works (global average pooling). */
dbr_tensor *dbr_model_resnet50(dbr_ctx *ctx, dbr_tensor *x);
dbr_tensor *dbr_model_resnet152(dbr_ctx *ctx, dbr_tensor *x);
/* x [N, 3, 224, 224] -> logits [N, 1000]. VGG-19 (configuration E) without
 * batch norm, as in the paper: 143,667,240 parameters. Only 224x224 fits
 * its first fully connected layer. */
dbr_tensor *dbr_model_vgg19(dbr_ctx *ctx, dbr_tensor *x);
/* x [N, 3, H, W] (224x224) -> logits [N, 1000]. DenseNet-121: growth 32,
 * blocks 6-12-24-16, bottleneck 4x growth, compression 0.5: 7,978,856
 * parameters. Any H, W >= 32 works. */
dbr_tensor *dbr_model_densenet121(dbr_ctx *ctx, dbr_tensor *x);
/* x [N, 3, H, W] (224x224) -> logits [N, 1000]. GoogLeNet (Inception v1)
 * as in the paper: biased convolutions, no batch norm, 5x5 branches, no
 * auxiliary classifiers, no LRN (no dbr op; it has no parameters):
 * 6,998,552 parameters. (torchvision's googlenet has 6,624,904: batch norm
 * instead of conv biases and 3x3 convolutions in the "5x5" branches.) Any
 * H, W >= 32 works. */
dbr_tensor *dbr_model_googlenet(dbr_ctx *ctx, dbr_tensor *x);
/* x [N, 1, 572, 572] -> per-pixel logits [N, 2, 388, 388] (the cross-entropy
 * over pixels wants them permuted to [N*388*388, 2]). U-Net as in the paper:
 * valid 3x3 convolutions, crop-and-concatenate skips, 2x2 up-convolutions
 * (exact, as a 1x1 conv to 4x channels plus a depth-to-space shuffle):
 * 31,030,658 parameters. Other sizes work where every pooled map is even:
 * H = 188 + 16k (572 is k = 24) gives H - 184 outputs. */
dbr_tensor *dbr_model_unet(dbr_ctx *ctx, dbr_tensor *x);

/* A GPT-2-style transformer (pre-LN blocks, causal multi-head attention,
 * GELU MLP of width 4*width, learned positions, output head tied to the
 * token embedding). The zoo's function takes only (ctx, x), so its shape
 * comes from a process-wide setting: dbr_gpt_configure(NULL) restores the
 * defaults. Not thread-safe; configure before building the model. */
typedef struct dbr_gpt_config {
    int64_t layers, width, heads, context, vocab;
    double dropout; /* attention, residual and embedding dropout when training */
} dbr_gpt_config;
/* small enough to train in tests: 842,496 parameters */
#define DBR_GPT_DEFAULT ((dbr_gpt_config){.layers = 4, .width = 128, .heads = 4, \
                                           .context = 128, .vocab = 256, .dropout = 0.1})
/* GPT-2 small: 124,439,808 parameters */
#define DBR_GPT2_SMALL ((dbr_gpt_config){.layers = 12, .width = 768, .heads = 12, \
                                          .context = 1024, .vocab = 50257, .dropout = 0.1})
void dbr_gpt_configure(const dbr_gpt_config *c);
dbr_gpt_config dbr_gpt_config_get(void);
/* x token ids [N, T] (i32 or i64, T <= context) -> logits [N, T, vocab]. */
dbr_tensor *dbr_model_gpt(dbr_ctx *ctx, dbr_tensor *x);

/* Building blocks the zoo shares; `name` prefixes the parameter names.
 * conv: weight "<name>.w" [cout, cin, k, k], bias "<name>.b" when asked.
 * bn: "<name>.gamma", ".beta" (parameters), ".mean", ".var" (buffers).
 * conv_bn: conv without bias, then bn "<name>.bn", then ReLU when asked.
 * linear: "<name>.w" [out, in], "<name>.b". */
dbr_tensor *dbr_zoo_conv(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t cin,
                         int64_t cout, int k, int stride, int pad, bool bias);
dbr_tensor *dbr_zoo_bn(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t c);
dbr_tensor *dbr_zoo_conv_bn(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t cin,
                            int64_t cout, int k, int stride, int pad, bool relu);
dbr_tensor *dbr_zoo_linear(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t in, int64_t out,
                           bool bias);

typedef struct dbr_model_info {
    const char *name;
    dbr_model_fn fn;
    const char *about;
    /* the training recipe `dbr train` uses unless told otherwise (measured
     * in bench/RESULTS.md): optimizer name and learning rate */
    const char *optimizer;
    double lr;
    /* One example's input (batch excluded): rank, dims, dtype. Rank 0 means
     * [784] f32, the Fashion-MNIST-sized models (mlp, cnn). gpt's entry
     * holds DBR_GPT_DEFAULT's context; dbr_gpt_config_get() has the current
     * one. Outputs: [N, classes], except unet [N, 2, 388, 388] and gpt
     * [N, T, vocab]. */
    int input_rank;
    int64_t input_dims[3];
    dbr_dtype input_dtype;
} dbr_model_info;
/* NULL if unknown. */
const dbr_model_info *dbr_model_find(const char *name);

/* Records one training step of zoo model m (meant for meta mode): an input
 * of the model's shape at this batch, the model, cross-entropy over its
 * class axis and, unless forward_only, backward and the update of the
 * model's recipe optimizer. 0, or -1 with dbr_error(ctx) set. */
int dbr_zoo_record_step(dbr_ctx *ctx, const dbr_model_info *m, int64_t batch, bool forward_only);
/* Comma-separated list of names, for help texts. */
const char *dbr_model_names(void);

#endif
