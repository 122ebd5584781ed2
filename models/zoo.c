/* zoo.c: the table of models the dbr command and benchmarks can name. */
#include "models.h"

#include <string.h>

static const dbr_model_info zoo[] = {
    {"mlp", dbr_model_mlp, "784-512-512-10 perceptron with ReLU", "adam", 5e-4},
    {"cnn", dbr_model_cnn, "2x (conv3x3-bn-relu-maxpool) + linear, for 28x28 images", "momentum", 0.02},
};

const dbr_model_info *dbr_model_find(const char *name) {
    for (size_t i = 0; name && i < sizeof zoo / sizeof zoo[0]; i++)
        if (strcmp(zoo[i].name, name) == 0) return &zoo[i];
    return NULL;
}

const char *dbr_model_names(void) { return "mlp, cnn"; }
