/* prof.h: the `dbr prof` subcommand. */
#ifndef DBR_TOOLS_PROF_H
#define DBR_TOOLS_PROF_H

/* argv after "prof"; returns the exit status (0, 1 error, 2 bad flags). */
int dbr_cmd_prof(int argc, char **argv);

#endif
