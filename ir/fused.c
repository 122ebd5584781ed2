/* fused.c: the process-wide table of fused bodies (fused.h). Bodies are
 * few (one per distinct fused group) and small; lookups by id are an index,
 * interning scans the bodies of equal hash. */
#include "fused.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static dbr_fbody **bodies; /* bodies[id - 1] */
static uint64_t *hashes;
static int64_t n_bodies, cap_bodies;

int dbr_fuse_arity(dbr_op op) {
    switch (op) {
    case DBR_OP_NEG: case DBR_OP_EXP: case DBR_OP_LOG: case DBR_OP_SQRT: case DBR_OP_RSQRT:
    case DBR_OP_POW: case DBR_OP_ABS: case DBR_OP_SIGN: case DBR_OP_TANH: case DBR_OP_SIGMOID:
    case DBR_OP_RELU: case DBR_OP_LEAKY_RELU: case DBR_OP_GELU: case DBR_OP_SILU:
        return 1;
    case DBR_OP_ADD: case DBR_OP_SUB: case DBR_OP_MUL: case DBR_OP_DIV: case DBR_OP_RELU_BWD:
    case DBR_OP_LEAKY_RELU_BWD: case DBR_OP_GELU_BWD: case DBR_OP_SILU_BWD:
        return 2;
    case DBR_OP_WHERE: return 3;
    default: return 0;
    }
}

static uint64_t mix_t(uint64_t h, const dbr_tinfo *t) {
    h = dbr_hash_mix(h, (uint64_t)t->dtype);
    h = dbr_hash_mix(h, (uint64_t)t->ndim);
    for (int d = 0; d < t->ndim; d++) h = dbr_hash_mix(h, (uint64_t)t->shape[d]);
    return h;
}

uint64_t dbr_fbody_hash(const dbr_fbody *b) {
    uint64_t h = 0x6662726f6479ull;
    h = dbr_hash_mix(h, (uint64_t)b->n_in);
    for (int i = 0; i < b->n_in; i++) h = mix_t(h, &b->in[i]);
    h = dbr_hash_mix(h, (uint64_t)b->n_ins);
    for (int k = 0; k < b->n_ins; k++) {
        const dbr_fins *s = &b->ins[k];
        uint64_t p;
        memcpy(&p, &s->p, sizeof p);
        h = dbr_hash_mix(h, (uint64_t)s->kind);
        h = dbr_hash_mix(h, (uint64_t)s->op);
        h = dbr_hash_mix(h, (uint64_t)(uint32_t)s->a);
        h = dbr_hash_mix(h, (uint64_t)(uint32_t)s->b);
        h = dbr_hash_mix(h, (uint64_t)(uint32_t)s->c);
        h = dbr_hash_mix(h, p);
    }
    h = mix_t(h, &b->space);
    h = dbr_hash_mix(h, (uint64_t)b->red);
    h = dbr_hash_mix(h, b->red ? b->red_axes : 0);
    h = dbr_hash_mix(h, (uint64_t)(b->red ? b->keepdims : 0));
    h = mix_t(h, &b->out);
    return h ? h : 1;
}

static bool same_str(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool same_body(const dbr_fbody *a, const dbr_fbody *b) {
    if (a->n_in != b->n_in || a->n_ins != b->n_ins || a->red != b->red ||
        a->red_axes != b->red_axes || a->keepdims != b->keepdims || a->n_src != b->n_src ||
        a->n_ops != b->n_ops || !dbr_tinfo_same(&a->space, &b->space) || !dbr_tinfo_same(&a->out, &b->out))
        return false;
    for (int i = 0; i < a->n_in; i++)
        if (!dbr_tinfo_same(&a->in[i], &b->in[i])) return false;
    for (int k = 0; k < a->n_ins; k++) {
        const dbr_fins *x = &a->ins[k], *y = &b->ins[k];
        if (x->kind != y->kind || x->op != y->op || x->a != y->a || x->b != y->b ||
            x->c != y->c || memcmp(&x->p, &y->p, sizeof x->p) != 0)
            return false;
    }
    for (int k = 0; k < a->n_src; k++) {
        const dbr_fsrc *x = &a->src[k], *y = &b->src[k];
        if (x->op != y->op || x->line != y->line || !same_str(x->api, y->api) ||
            !same_str(x->file, y->file))
            return false;
    }
    return strcmp(a->name, b->name) == 0;
}

/* "f_add_gelu_64x3072" (with "_sum" and the like after the ops for a
 * trailing reduction): op names in instruction order, each once. */
static void make_name(dbr_fbody *b) {
    char buf[64] = "f";
    size_t len = 1;
    bool seen[DBR_OP_COUNT] = {0};
    for (int k = 0; k < b->n_ins; k++) {
        const dbr_fins *s = &b->ins[k];
        if (s->kind != DBR_FI_OP || (unsigned)s->op >= DBR_OP_COUNT || seen[s->op]) continue;
        seen[s->op] = true;
        const char *nm = dbr_ops[s->op].name;
        if (len + 1 + strlen(nm) > 40) break;
        len += (size_t)snprintf(buf + len, sizeof buf - len, "_%s", nm);
    }
    if (b->red && (unsigned)b->red < DBR_OP_COUNT)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "_%s", dbr_ops[b->red].name);
    for (int d = 0; d < b->space.ndim && len < sizeof buf - 2; d++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%c%lld", d ? 'x' : '_',
                                (long long)b->space.shape[d]);
    if (len >= sizeof buf) len = sizeof buf - 1;
    buf[len] = 0;
    memcpy(b->name, buf, len + 1);
}

int64_t dbr_fbody_intern(const dbr_fbody *b) {
    dbr_fbody *c = calloc(1, sizeof *c);
    if (!c) return -1;
    *c = *b;
    if (!c->name[0]) make_name(c);
    c->name[sizeof c->name - 1] = 0;
    uint64_t h = dbr_fbody_hash(c);
    pthread_mutex_lock(&lock);
    int64_t id = -1;
    for (int64_t k = 0; k < n_bodies; k++)
        if (hashes[k] == h && same_body(bodies[k], c)) {
            id = k + 1;
            break;
        }
    if (id < 0) {
        if (n_bodies == cap_bodies) {
            int64_t nc = cap_bodies ? 2 * cap_bodies : 64;
            dbr_fbody **nb = realloc(bodies, (size_t)nc * sizeof *nb);
            if (nb) bodies = nb;
            uint64_t *nh = nb ? realloc(hashes, (size_t)nc * sizeof *nh) : NULL;
            if (nh) hashes = nh;
            if (!nb || !nh) goto out;
            cap_bodies = nc;
        }
        bodies[n_bodies] = c;
        hashes[n_bodies] = h;
        c = NULL;
        id = ++n_bodies;
    }
out:
    pthread_mutex_unlock(&lock);
    free(c);
    return id;
}

const dbr_fbody *dbr_fbody_get(int64_t id) {
    pthread_mutex_lock(&lock);
    const dbr_fbody *b = id >= 1 && id <= n_bodies ? bodies[id - 1] : NULL;
    pthread_mutex_unlock(&lock);
    return b;
}

/* The table lives until exit; free it then so leak checkers see nothing. */
__attribute__((destructor)) static void fbody_table_free(void) {
    for (int64_t k = 0; k < n_bodies; k++) free(bodies[k]);
    free(bodies);
    free(hashes);
    bodies = NULL;
    hashes = NULL;
    n_bodies = cap_bodies = 0;
}
