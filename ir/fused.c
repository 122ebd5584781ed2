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

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static uint64_t mix_t(uint64_t h, const dbr_tinfo *t) {
    h = mix(h, (uint64_t)t->dtype);
    h = mix(h, (uint64_t)t->ndim);
    for (int d = 0; d < t->ndim; d++) h = mix(h, (uint64_t)t->shape[d]);
    return h;
}

uint64_t dbr_fbody_hash(const dbr_fbody *b) {
    uint64_t h = 0x6662726f6479ull;
    h = mix(h, (uint64_t)b->n_in);
    for (int i = 0; i < b->n_in; i++) h = mix_t(h, &b->in[i]);
    h = mix(h, (uint64_t)b->n_ins);
    for (int k = 0; k < b->n_ins; k++) {
        const dbr_fins *s = &b->ins[k];
        uint64_t p;
        memcpy(&p, &s->p, sizeof p);
        h = mix(h, (uint64_t)s->kind);
        h = mix(h, (uint64_t)s->op);
        h = mix(h, (uint64_t)(uint32_t)s->a);
        h = mix(h, (uint64_t)(uint32_t)s->b);
        h = mix(h, (uint64_t)(uint32_t)s->c);
        h = mix(h, p);
    }
    h = mix_t(h, &b->space);
    h = mix(h, (uint64_t)b->red);
    h = mix(h, b->red ? b->red_axes : 0);
    h = mix(h, (uint64_t)(b->red ? b->keepdims : 0));
    h = mix_t(h, &b->out);
    return h ? h : 1;
}

static bool same_t(const dbr_tinfo *a, const dbr_tinfo *b) {
    if (a->dtype != b->dtype || a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

static bool same_str(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool same_body(const dbr_fbody *a, const dbr_fbody *b) {
    if (a->n_in != b->n_in || a->n_ins != b->n_ins || a->red != b->red ||
        a->red_axes != b->red_axes || a->keepdims != b->keepdims || a->n_src != b->n_src ||
        a->n_ops != b->n_ops || !same_t(&a->space, &b->space) || !same_t(&a->out, &b->out))
        return false;
    for (int i = 0; i < a->n_in; i++)
        if (!same_t(&a->in[i], &b->in[i])) return false;
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
