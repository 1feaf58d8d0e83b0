/* What every harness that needs a runtime shares: MPI started once, with
 * Open MPI's own start-up allocations kept out of the leak report, and a
 * logger that drops the library's lines (the harnesses check statuses). */
#ifndef BL_FUZZ_MPI_H
#define BL_FUZZ_MPI_H

#include <stdio.h>
#include <stdlib.h>

#include "ballast.h"

/* Open MPI's own allocations at MPI_Init live until exit; they are not the
 * library's leaks. The ones its helper threads make are matched by module
 * (components stay loaded, see fuzz_mpi_init, so their frames keep their
 * names). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\nleak:libpmix.so\n"
           "leak:libhwloc.so\nleak:libevent\nleak:mca_\n";
}
void __lsan_disable(void);
void __lsan_enable(void);

/* MPI_Init for harness `who`; aborts on failure (a harness has no caller
 * to report to). */
static inline void fuzz_mpi_init(const char *who)
{
    /* Open MPI unloads the components it does not use; leaks reported
     * from an unloaded module have no name to suppress. */
    setenv("OMPI_MCA_mca_base_component_disable_dlclose", "1", 0);
    int provided = 0;
    __lsan_disable(); /* what MPI_Init allocates on this thread is not a leak */
    int r = MPI_Init_thread(NULL, NULL, MPI_THREAD_SINGLE, &provided);
    __lsan_enable();
    if (r != MPI_SUCCESS) {
        fprintf(stderr, "%s: MPI_Init failed\n", who);
        abort();
    }
}

#endif /* BL_FUZZ_MPI_H */
