/* plan.h: the `dbr plan` subcommand. */
#ifndef DBR_TOOLS_PLAN_H
#define DBR_TOOLS_PLAN_H

/* argv after "plan"; returns the exit status (0, 1 error, 2 bad flags). */
int dbr_cmd_plan(int argc, char **argv);

#include "ir/ir.h" /* dbr_human_bytes */

#include "dbr.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A budget on the command line: "3GiB", "512MiB", "1e9" (bytes; B, KiB,
 * MiB, GiB, TiB) into *bytes, or "40%" (of the no-recompute peak) into *frac
 * as 0.4. 0, or -1 when it is neither. */
int dbr_parse_budget(const char *s, int64_t *bytes, double *frac);

/* A planner's name ("auto", "none", "chen", "dp", "ilp") as the config's
 * dbr_recompute. 0, or -1 when the name is unknown. */
int dbr_recompute_parse(const char *name, dbr_recompute *out);

#endif
