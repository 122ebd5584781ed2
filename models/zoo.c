/* zoo.c: the table of models the dbr command and benchmarks can name. The
 * recipes of the paper-sized models are their papers' optimizers and initial
 * learning rates (not measured here). */
#include "models.h"

#include <string.h>

static const dbr_model_info zoo[] = {
    {"mlp", dbr_model_mlp, "784-512-512-10 perceptron with ReLU", "adam", 5e-4, 0, {0}, DBR_F32},
    {"cnn", dbr_model_cnn, "2x (conv3x3-bn-relu-maxpool) + linear, for 28x28 images", "momentum",
     0.02, 0, {0}, DBR_F32},
    {"resnet50", dbr_model_resnet50, "ResNet-50, bottleneck blocks + BN, 224x224 -> 1000 classes",
     "momentum", 0.1, 3, {3, 224, 224}, DBR_F32},
    {"resnet152", dbr_model_resnet152, "ResNet-152, bottleneck blocks + BN, 224x224 -> 1000 classes",
     "momentum", 0.1, 3, {3, 224, 224}, DBR_F32},
    {"vgg19", dbr_model_vgg19, "VGG-19 (configuration E, no BN), 224x224 -> 1000 classes",
     "momentum", 0.01, 3, {3, 224, 224}, DBR_F32},
    {"densenet121", dbr_model_densenet121,
     "DenseNet-121 (BC, growth 32, 6-12-24-16), 224x224 -> 1000 classes", "momentum", 0.1, 3,
     {3, 224, 224}, DBR_F32},
    {"googlenet", dbr_model_googlenet,
     "GoogLeNet / Inception v1 (no BN, no aux heads), 224x224 -> 1000 classes", "momentum", 0.01, 3,
     {3, 224, 224}, DBR_F32},
    {"unet", dbr_model_unet, "U-Net, valid convs, 1x572x572 -> 2x388x388 per-pixel logits",
     "momentum", 0.01, 3, {1, 572, 572}, DBR_F32},
    {"gpt", dbr_model_gpt,
     "GPT-2-style transformer (pre-LN, tied head; dbr_gpt_configure), tokens -> [N, T, vocab]",
     "adamw", 3e-4, 1, {128}, DBR_I32},
};

const dbr_model_info *dbr_model_find(const char *name) {
    for (size_t i = 0; name && i < sizeof zoo / sizeof zoo[0]; i++)
        if (strcmp(zoo[i].name, name) == 0) return &zoo[i];
    return NULL;
}

const char *dbr_model_names(void) {
    return "mlp, cnn, resnet50, resnet152, vgg19, densenet121, googlenet, unet, gpt";
}

/* Cross-entropy over the model's class axis: [N, C] logits, per-pixel
 * [N, C, H, W] or per-token [N, T, V] ones, against labels of the matching
 * count (meta mode: shapes only). */
static dbr_tensor *class_loss(dbr_ctx *ctx, dbr_tensor *z) {
    if (!z) return NULL;
    if (z->ndim == 4) z = dbr_permute(ctx, z, DBR_AXES(0, 2, 3, 1));
    if (z && z->ndim > 2) z = dbr_reshape(ctx, z, DBR_SHAPE(-1, z->shape[z->ndim - 1]));
    if (!z) return NULL;
    dbr_tensor *y = dbr_input(ctx, DBR_I32, DBR_SHAPE(z->shape[0]), NULL, false);
    return dbr_cross_entropy(ctx, z, y);
}

int dbr_zoo_record_step(dbr_ctx *ctx, const dbr_model_info *m, int64_t batch, bool forward_only) {
    int64_t shape[4] = {batch, 784};
    int rank = m->input_rank ? m->input_rank + 1 : 2;
    for (int i = 0; i < m->input_rank; i++) shape[1 + i] = m->input_dims[i];
    dbr_tensor *x = dbr_input(ctx, m->input_dtype, rank, shape, NULL, false);
    dbr_tensor *loss = class_loss(ctx, m->fn(ctx, x));
    if (!loss) return -1;
    if (forward_only) return 0;
    /* the model's recipe optimizer, so the step holds its updates and state */
    dbr_optim opt = {.lr = m->lr, .momentum = 0.9};
    opt.kind = !strcmp(m->optimizer, "sgd")        ? DBR_SGD
               : !strcmp(m->optimizer, "momentum") ? DBR_MOMENTUM
               : !strcmp(m->optimizer, "adamw")    ? DBR_ADAMW
                                                   : DBR_ADAM;
    if (dbr_backward(ctx, loss) || dbr_optim_set(ctx, &opt) || dbr_optim_step(ctx)) return -1;
    return 0;
}
