/* Failure counting for the MPI test programs (nccl-tests' way): each rank
 * prints and counts its failed checks; check_total sums the counts over
 * MPI_COMM_WORLD, so no rank passes while another fails. Header-only. */
#ifndef BL_MPI_CHECK_H
#define BL_MPI_CHECK_H

#include <stdarg.h>
#include <stdio.h>

#include <mpi.h>

static int check_failures;

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void check(int ok, const char *fmt, ...)
{
    if (ok) {
        return;
    }
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    va_list ap;
    va_start(ap, fmt);
    printf("rank %d: FAILED: ", rank);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    check_failures++;
}

/* The failed checks of every rank. Collective over MPI_COMM_WORLD. */
static inline int check_total(void)
{
    int total = 0;
    MPI_Allreduce(&check_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    return total;
}

/* The end of a test's main: rank 0 prints "NAME: P ranks, N failures", MPI
 * ends, and the exit status (0 when no rank failed) is returned. */
static inline int check_finish(const char *name)
{
    int total = check_total();
    int rank = 0, size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank == 0) {
        printf("%s: %d ranks, %d failures\n", name, size, total);
    }
    MPI_Finalize();
    return total == 0 ? 0 : 1;
}

#endif /* BL_MPI_CHECK_H */
