/* pool.c: a fixed set of worker threads for splitting one kernel's range
 * (fused kernels). One job at a time: the caller takes the first slice and
 * waits for the workers' slices, so a job costs two wake-ups per worker. */
#include "runtime/pool.h"

#include "kernels/cpu/kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define POOL_MAX 64

static struct {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    pthread_t th[POOL_MAX];
    int n_workers;       /* threads started */
    int want;            /* threads to use (workers + the caller) */
    uint64_t gen;        /* job generation */
    int busy;            /* workers still running this job */
    bool quit;
    /* the job */
    dbr_range_fn fn;
    void *ctx;
    int64_t n;
    int parts;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER,
       .done = PTHREAD_COND_INITIALIZER};

static pthread_mutex_t job_mu = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */

static void slice(int64_t n, int parts, int k, int64_t *b, int64_t *e) {
    *b = n * k / parts;
    *e = n * (k + 1) / parts;
}

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg; /* 1 .. n_workers */
    uint64_t seen = 0;
    pthread_mutex_lock(&P.mu);
    for (;;) {
        while (!P.quit && P.gen == seen) pthread_cond_wait(&P.go, &P.mu);
        if (P.quit) break;
        seen = P.gen;
        if (me < P.parts) {
            dbr_range_fn fn = P.fn;
            void *ctx = P.ctx;
            int64_t b, e;
            slice(P.n, P.parts, me, &b, &e);
            pthread_mutex_unlock(&P.mu);
            fn(ctx, b, e);
            pthread_mutex_lock(&P.mu);
            if (--P.busy == 0) pthread_cond_signal(&P.done);
        }
    }
    pthread_mutex_unlock(&P.mu);
    dbr_k_scratch_free(); /* library kernels' per-thread workspace */
    return NULL;
}

static void pool_stop(void) {
    pthread_mutex_lock(&P.mu);
    P.quit = true;
    pthread_cond_broadcast(&P.go);
    pthread_mutex_unlock(&P.mu);
    for (int k = 0; k < P.n_workers; k++) pthread_join(P.th[k], NULL);
    P.n_workers = 0;
}

int dbr_pool_threads(void) {
    if (P.want > 0) return P.want;
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : c > POOL_MAX ? POOL_MAX : (int)c;
}

void dbr_pool_set_threads(int threads) {
    if (threads > 0) P.want = threads > POOL_MAX ? POOL_MAX : threads;
}

/* Starts workers up to threads - 1; returns how many run. */
static int ensure_workers(int threads) {
    static bool registered;
    while (P.n_workers < threads - 1) {
        if (pthread_create(&P.th[P.n_workers], NULL, worker, (void *)(intptr_t)(P.n_workers + 1)))
            break;
        P.n_workers++;
        if (!registered) {
            atexit(pool_stop);
            registered = true;
        }
    }
    return P.n_workers;
}

void dbr_parallel_range(int64_t n, int64_t grain, dbr_range_fn fn, void *ctx) {
    if (n <= 0) return;
    int threads = dbr_pool_threads();
    int64_t g = grain > 0 ? grain : 1;
    int parts = (int)((n + g - 1) / g);
    if (parts > threads) parts = threads;
    if (parts <= 1) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&job_mu);
    pthread_mutex_lock(&P.mu);
    int workers = ensure_workers(parts);
    if (parts > workers + 1) parts = workers + 1;
    P.fn = fn;
    P.ctx = ctx;
    P.n = n;
    P.parts = parts;
    P.busy = parts - 1;
    P.gen++;
    pthread_cond_broadcast(&P.go);
    pthread_mutex_unlock(&P.mu);
    int64_t b, e;
    slice(n, parts, 0, &b, &e);
    fn(ctx, b, e);
    pthread_mutex_lock(&P.mu);
    while (P.busy > 0) pthread_cond_wait(&P.done, &P.mu);
    pthread_mutex_unlock(&P.mu);
    pthread_mutex_unlock(&job_mu);
}
