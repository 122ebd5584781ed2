/* plan.h: the `dbr plan` subcommand. */
#ifndef DBR_TOOLS_PLAN_H
#define DBR_TOOLS_PLAN_H

/* argv after "plan"; returns the exit status (0, 1 error, 2 bad flags). */
int dbr_cmd_plan(int argc, char **argv);

#endif
