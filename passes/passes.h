/* passes.h: scheduling, liveness and memory planning over an IR graph, and
 * the in-place rule that memplan and the runtime share. A schedule is an
 * order of node ids; memplan lays the step's intermediate values in one arena. */
#ifndef DBR_PASSES_PASSES_H
#define DBR_PASSES_PASSES_H

#include "ir/graph.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every arena buffer starts on, and is padded to, this many bytes. */
#define DBR_ARENA_ALIGN 64

/* ---- schedule ------------------------------------------------------------
 * Each fills order[0 .. n_nodes) with a topological order of all nodes (a
 * permutation of the node ids) and returns 0, or -1 with a message in err
 * (ids out of range, a node reading a value no earlier node produces). */

/* Recording order (node id order), which graph.h promises is topological. */
int dbr_schedule(const dbr_graph *g, int32_t *order, char *err, size_t errlen);
/* For memory: among the ready nodes, the one whose run frees the most arena
 * bytes minus what it allocates; ties go to the lowest node id. Deterministic,
 * O((nodes + edges) log nodes). */
int dbr_schedule_greedy(const dbr_graph *g, int32_t *order, char *err, size_t errlen);
/* 0 when order is a permutation of the node ids in which every node comes
 * after the producers of its inputs; -1 with the first problem otherwise. */
int dbr_schedule_check(const dbr_graph *g, const int32_t *order, char *err, size_t errlen);

/* ---- liveness ------------------------------------------------------------
 * Positions in an order, per value id. INTER values: def is the position of
 * the producer, last the position of the last node that reads the value
 * (def when none does), or n_nodes (the end of the step) for outputs.
 * Leaves (PARAM, BUFFER, INPUT, CONST) exist before the step: def is -1 and
 * last is the last reader's position, n_nodes for outputs, -1 when unused. */
typedef struct dbr_liveness {
    int32_t *def;
    int32_t *last;
} dbr_liveness;

int dbr_liveness_build(const dbr_graph *g, const int32_t *order, dbr_liveness *lv, char *err,
                       size_t errlen);
void dbr_liveness_free(dbr_liveness *lv);

/* Bytes value v takes in the arena: its size rounded up to DBR_ARENA_ALIGN,
 * at least DBR_ARENA_ALIGN; 0 for leaves (not planned); -1 on overflow. */
int64_t dbr_value_arena_bytes(const dbr_graph *g, int32_t v);

/* ---- in-place --------------------------------------------------------------
 * Whether node n may write its output over input i's buffer, as far as the
 * op and the types go: the input is an INTER value that is not an output;
 * the op is element-wise (category EW, or RELU_BWD, LEAKY_RELU_BWD,
 * GELU_BWD, SILU_BWD; any input), DROPOUT, SOFTMAX, LOG_SOFTMAX, or the
 * forward BATCH_NORM / LAYER_NORM (input 0 only, and not read again through
 * another slot); and the input has exactly the output's dtype and shape (no
 * broadcasting on it). The caller adds the order-dependent condition: n is
 * the input's last reader. */
bool dbr_op_inplace_ok(const dbr_graph *g, const dbr_inode *n, int i);

/* ---- memplan ---------------------------------------------------------------
 * Offsets in one arena for the INTER values of a schedule. A value is live
 * from its producer through its last reader (outputs through the end of the
 * step); leaves are bound outside the arena. The in-place decisions come
 * first and depend only on the order: a node's output takes over the buffer
 * of its first input for which dbr_op_inplace_ok holds and the node is the
 * last reader. Then two placements of the same buffers:
 *   WALK, like ggml-alloc: walk the order, give each node's output a buffer
 *     (its input's when in place; else best fit over an address-sorted free
 *     list, growing the arena at its end), then free the inputs the node
 *     read last.
 *   BY_SIZE, offline greedy by size like TFLite's arena planner: an
 *     in-place chain is one buffer live over the union of its members'
 *     lifetimes; buffers go in order of size descending, each at the lowest
 *     offset where it overlaps no placed buffer whose lifetime meets its
 *     own. Run twice, with two orders among equal sizes (the longer lifetime
 *     first; the later last use first; then the lower value id), keeping
 *     the smaller arena (ties: the first). O(n^2) in the number of buffers
 *     at worst (10^4 buffers all live at once: about 0.1 s).
 * dbr_memplan_build computes both and keeps the smaller arena (ties: WALK). */
typedef enum dbr_memplan_strategy {
    DBR_MEMPLAN_BEST,    /* both; the smaller arena, WALK on a tie */
    DBR_MEMPLAN_WALK,
    DBR_MEMPLAN_BY_SIZE
} dbr_memplan_strategy;

typedef struct dbr_memplan {
    int64_t *offset;      /* per value id; -1 when not in the arena */
    int64_t arena_bytes;  /* the arena's size: the step's activation peak */
    int64_t lower_bound;  /* max over positions of the live INTER bytes
                             (an in-place pair counted once) */
    int32_t n_inplace;    /* values that took over an input's buffer */
    int32_t *inplace_of;  /* per value id: the input whose buffer it reuses, or -1 */
    dbr_memplan_strategy strategy; /* the placement kept: WALK or BY_SIZE */
} dbr_memplan;

/* Plans g under order. 0, or -1 with a message (bad order, out of memory);
 * on failure *mp holds nothing to free. */
int dbr_memplan_build(const dbr_graph *g, const int32_t *order, dbr_memplan *mp, char *err,
                      size_t errlen);
/* The same with one placement (WALK or BY_SIZE), or BEST (as above). */
int dbr_memplan_build_with(const dbr_graph *g, const int32_t *order, dbr_memplan_strategy strategy,
                           dbr_memplan *mp, char *err, size_t errlen);
void dbr_memplan_free(dbr_memplan *mp);
/* Verifies a plan from scratch, not trusting the planner: the order is
 * valid; leaves are off the arena; every INTER buffer is aligned and inside
 * [0, arena_bytes); no two values live at the same position overlap, except
 * an in-place pair at its reuse point, and each in-place pair is allowed
 * (dbr_op_inplace_ok, last reader, same offset); n_inplace and lower_bound
 * match. 0, or -1 with the first violation in err. */
int dbr_memplan_check(const dbr_graph *g, const int32_t *order, const dbr_memplan *mp, char *err,
                      size_t errlen);

#endif
