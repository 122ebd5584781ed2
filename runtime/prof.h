/* prof.h: the per-kernel profiler's event log: one dbr_prof_event (see
 * include/dbr.h) per kernel run, an eager op or a plan launch, timed on the
 * host with CLOCK_MONOTONIC. The frontend owns one log per context and
 * passes it to dbr_plan_run through dbr_run_keys. */
#ifndef DBR_RUNTIME_PROF_H
#define DBR_RUNTIME_PROF_H

#include "dbr.h"
#include "ir/ir.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* At most this many events are kept; later ones are counted in `lost`. */
#define DBR_PROF_MAX_EVENTS ((int64_t)1 << 20)

typedef struct dbr_prof {
    bool on;             /* record while true */
    dbr_prof_event *ev;
    int64_t n, cap;
    int64_t lost;        /* events not kept (the cap, or out of memory) */
} dbr_prof;

static inline int64_t dbr_prof_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

/* The phase's name for an event: "fwd", "bwd", "opt", "recomp" for the
 * dbr_phase values of ir/graph.h; "?" otherwise. */
const char *dbr_prof_phase_name(int32_t phase);

/* Appends the event of node n, run from t0 to t1 (ns); phase is a static
 * string. Names, bytes, flops and sources come from the node. */
void dbr_prof_record(dbr_prof *p, const dbr_node *n, const char *phase, int64_t t0, int64_t t1);

/* Forget the events (keeps the memory and the on flag). */
void dbr_prof_clear(dbr_prof *p);
void dbr_prof_free(dbr_prof *p);

#endif
