/* graph_json.h: reading a forward graph made elsewhere (docs/graph-format.md)
 * into the recomputation planner's dbr_rgraph, with every mistake reported
 * by file, node index and node id. */
#ifndef DBR_PASSES_GRAPH_JSON_H
#define DBR_PASSES_GRAPH_JSON_H

#include <stddef.h>

#include "passes/remat.h"

/* Parses len bytes of JSON text in the "dbr-graph" format, version 1, into
 * *out (which the call overwrites; free it with dbr_rgraph_free). Leaves
 * ("input", "param") become leaves in file order; every other node becomes a
 * compute node in file order, its inputs' ids turned into node indices or
 * -1-leaf. name_for_errors (a path, or NULL for "<graph>") starts every
 * message. Returns 0, or -1 with a message in err and *out zeroed, nothing
 * held. Never aborts on bad input. */
int dbr_rgraph_parse_json(const char *text, size_t len, const char *name_for_errors,
                          dbr_rgraph *out, char *err, size_t errlen);

/* Reads the file at path and parses it as dbr_rgraph_parse_json does, with
 * path in the messages. */
int dbr_rgraph_load_json(const char *path, dbr_rgraph *out, char *err, size_t errlen);

#endif
