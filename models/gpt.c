/* gpt.c: a GPT-2-style decoder-only transformer (Radford et al., "Language
 * Models are Unsupervised Multitask Learners", 2019): token and learned
 * position embeddings, pre-LN blocks (LN -> causal multi-head
 * self-attention -> residual, LN -> GELU MLP of width 4d -> residual), a
 * final LN and an output head tied to the token embedding (logits =
 * h @ wte^T, as in GPT-2). Dropout (when training and config.dropout > 0)
 * on the embeddings, the attention probabilities and each residual branch.
 *
 * Causal masking: scores where the lower-triangular [T, T] mask (a constant
 * input) is 0 are replaced by -1e9 with dbr_where before the softmax. */
#include "models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static dbr_gpt_config cfg = DBR_GPT_DEFAULT;

void dbr_gpt_configure(const dbr_gpt_config *c) {
    static const dbr_gpt_config def = DBR_GPT_DEFAULT;
    cfg = c ? *c : def;
}

dbr_gpt_config dbr_gpt_config_get(void) { return cfg; }

static dbr_tensor *ln(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t d) {
    char n[128];
    snprintf(n, sizeof n, "%s.g", name);
    dbr_tensor *g = dbr_param(ctx, n, DBR_F32, DBR_SHAPE(d), DBR_INIT_ONES);
    snprintf(n, sizeof n, "%s.b", name);
    dbr_tensor *b = dbr_param(ctx, n, DBR_F32, DBR_SHAPE(d), DBR_INIT_ZEROS);
    return dbr_layer_norm(ctx, x, g, b, 1e-5);
}

static dbr_tensor *dense(dbr_ctx *ctx, dbr_tensor *x, const char *name, int64_t in, int64_t out) {
    char n[128];
    snprintf(n, sizeof n, "%s.w", name);
    dbr_tensor *w = dbr_param(ctx, n, DBR_F32, DBR_SHAPE(out, in), DBR_INIT_XAVIER_UNIFORM);
    snprintf(n, sizeof n, "%s.b", name);
    dbr_tensor *b = dbr_param(ctx, n, DBR_F32, DBR_SHAPE(out), DBR_INIT_ZEROS);
    return dbr_linear(ctx, x, w, b);
}

static dbr_tensor *drop(dbr_ctx *ctx, dbr_tensor *x) {
    return cfg.dropout > 0 ? dbr_dropout(ctx, x, cfg.dropout) : x;
}

/* [N, T, D] -> [N, H, T, D/H] */
static dbr_tensor *heads(dbr_ctx *ctx, dbr_tensor *x, int64_t N, int64_t T) {
    x = dbr_reshape(ctx, x, DBR_SHAPE(N, T, cfg.heads, cfg.width / cfg.heads));
    return dbr_permute(ctx, x, DBR_AXES(0, 2, 1, 3));
}

static dbr_tensor *attention(dbr_ctx *ctx, dbr_tensor *x, const char *name, dbr_tensor *mask,
                             int64_t N, int64_t T) {
    const int64_t D = cfg.width;
    char n[96];
    snprintf(n, sizeof n, "%s.qkv", name);
    dbr_tensor *qkv = dense(ctx, x, n, D, 3 * D); /* [N, T, 3D] */
    dbr_tensor *q = heads(ctx, dbr_slice(ctx, qkv, 2, 0, D, 1), N, T);
    dbr_tensor *k = heads(ctx, dbr_slice(ctx, qkv, 2, D, 2 * D, 1), N, T);
    dbr_tensor *v = heads(ctx, dbr_slice(ctx, qkv, 2, 2 * D, 3 * D, 1), N, T);
    dbr_tensor *s = dbr_scale(ctx, dbr_matmul(ctx, q, k, false, true),
                              1.0 / sqrt((double)(D / cfg.heads))); /* [N, H, T, T] */
    s = dbr_where(ctx, mask, s, dbr_scalar(ctx, -1e9, DBR_F32));
    dbr_tensor *p = drop(ctx, dbr_softmax(ctx, s, -1));
    dbr_tensor *o = dbr_matmul(ctx, p, v, false, false); /* [N, H, T, D/H] */
    o = dbr_reshape(ctx, dbr_permute(ctx, o, DBR_AXES(0, 2, 1, 3)), DBR_SHAPE(N, T, D));
    snprintf(n, sizeof n, "%s.proj", name);
    return dense(ctx, o, n, D, D);
}

dbr_tensor *dbr_model_gpt(dbr_ctx *ctx, dbr_tensor *x) {
    if (!x) return NULL;
    const int64_t D = cfg.width, V = cfg.vocab;
    const int64_t N = x->shape[0], T = x->ndim > 1 ? x->shape[x->ndim - 1] : 1;
    dbr_tensor *wte = dbr_param(ctx, "wte", DBR_F32, DBR_SHAPE(V, D), DBR_INIT_XAVIER_NORMAL);
    dbr_tensor *wpe =
        dbr_param(ctx, "wpe", DBR_F32, DBR_SHAPE(cfg.context, D), DBR_INIT_XAVIER_NORMAL);
    /* x must be token ids [N, T] (i32 or i64; dbr_embedding checks the
     * dtype); this reshape fails on any other rank */
    dbr_tensor *tok = dbr_reshape(ctx, dbr_embedding(ctx, wte, x), DBR_SHAPE(N, T, D));
    /* a reshape error here means T exceeds the configured context */
    dbr_tensor *pos = dbr_reshape(ctx, dbr_slice(ctx, wpe, 0, 0, T, 1), DBR_SHAPE(T, D));
    dbr_tensor *h = drop(ctx, dbr_add(ctx, tok, pos));
    if (!h) return NULL;

    /* the causal mask: 1 on and below the diagonal */
    bool meta = dbr_ctx_config(ctx)->mode == DBR_MODE_META;
    float *m = meta ? NULL : malloc((size_t)(T * T) * sizeof *m);
    if (!meta && !m) return NULL;
    for (int64_t i = 0; m && i < T; i++)
        for (int64_t j = 0; j < T; j++) m[i * T + j] = j <= i ? 1.0f : 0.0f;
    dbr_tensor *mask = dbr_input(ctx, DBR_F32, DBR_SHAPE(T, T), m, true);
    free(m);

    for (int64_t l = 0; l < cfg.layers; l++) {
        char n[64];
        snprintf(n, sizeof n, "h%lld.ln1", (long long)l);
        dbr_tensor *a = ln(ctx, h, n, D);
        snprintf(n, sizeof n, "h%lld.attn", (long long)l);
        h = dbr_add(ctx, h, drop(ctx, attention(ctx, a, n, mask, N, T)));
        snprintf(n, sizeof n, "h%lld.ln2", (long long)l);
        dbr_tensor *f = ln(ctx, h, n, D);
        snprintf(n, sizeof n, "h%lld.mlp.fc", (long long)l);
        f = dbr_gelu(ctx, dense(ctx, f, n, D, 4 * D));
        snprintf(n, sizeof n, "h%lld.mlp.proj", (long long)l);
        h = dbr_add(ctx, h, drop(ctx, dense(ctx, f, n, 4 * D, D)));
    }
    h = ln(ctx, h, "ln_f", D);
    return dbr_linear(ctx, h, wte, NULL); /* tied head: [N, T, V] */
}
