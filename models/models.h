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

typedef struct dbr_model_info {
    const char *name;
    dbr_model_fn fn;
    const char *about;
    /* the training recipe `dbr train` uses unless told otherwise (measured
     * in bench/RESULTS.md): optimizer name and learning rate */
    const char *optimizer;
    double lr;
} dbr_model_info;
/* NULL if unknown. */
const dbr_model_info *dbr_model_find(const char *name);
/* Comma-separated list of names, for help texts. */
const char *dbr_model_names(void);

#endif
