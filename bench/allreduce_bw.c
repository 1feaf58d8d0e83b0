/* allreduce_bw: the time and bandwidth of a raw MPI all-reduce of a given
 * number of bytes — the yardstick for the gradient synchronisation of
 * data-parallel training. MPI only; nothing of ballast.
 *
 * Every mode reduces float32 with MPI_SUM in place over MPI_COMM_WORLD:
 *   MPI_Allreduce                one blocking call over all the bytes;
 *   N x MPI_Iallreduce + Waitall (--buckets N) N equal contiguous slices
 *                                posted back to back, then one MPI_Waitall —
 *                                the shape of ballast's bucketed sync;
 *   overlap probe (--compute-ms X, with --buckets) the same N slices, then X
 *                                ms of busy work on the core in --tests K
 *                                chunks with an MPI_Testall after each (as
 *                                ballast tests after every layer of backward),
 *                                then MPI_Waitall. Its "exposed" time is the
 *                                total minus X: the communication the work
 *                                did not hide (no bandwidth is derived).
 * One repetition times --iters back-to-back operations after a barrier; its
 * time per operation is the slowest rank's. Rank 0 prints, per mode, the
 * median and range over the repetitions, the algorithm bandwidth
 * (bytes / time) and the bus bandwidth (algbw * 2(n-1)/n, nccl-tests'
 * convention for all-reduce), in GB/s of 1e9 bytes, then one
 * machine-readable "result:" line per mode.
 * The first operation of each mode is checked: the inputs are small integers
 * whose sums are exact in float32, and failures are counted on every rank
 * and all-reduced, so the exit status is 1 on every rank if any rank saw a
 * wrong sum. Figures only otherwise: exit status 0. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_stats.h"

#include <mpi.h>

enum {
    MAX_REPS = 10000,
    MAX_BUCKETS = 4096,
};

/* The gradient of ballast-train --layers 1024,1024,1024 on Fashion-MNIST
 * (784 → 1024 → 1024 → 1024 → 10): weights and biases of the four dense
 * layers, in float32. */
#define MLP_GRAD_FLOATS                                                                            \
    (784L * 1024 + 1024 + 2 * (1024L * 1024 + 1024) + 1024L * 10 + 10) /* 2913290 */
#define MLP_GRAD_BYTES (4 * MLP_GRAD_FLOATS)                           /* 11653160 */

/* ---- Options ----------------------------------------------------------- */

typedef struct options {
    long nbytes;       /* bytes reduced per operation (a multiple of 4) */
    int buckets;       /* N slices for the bucketed modes; 0: blocking mode only */
    int reps;          /* repetitions of every mode */
    int iters;         /* operations per repetition */
    int warmup;        /* untimed operations before a mode's repetitions */
    double compute_ms; /* busy work of the overlap probe; 0: no probe */
    int tests;         /* MPI_Testall calls during that work */
} options_t;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mpirun -np P allreduce_bw [options]\n"
            "Times a float32 MPI_SUM all-reduce in place over MPI_COMM_WORLD and reports, on\n"
            "rank 0, the median time, algorithm bandwidth and bus bandwidth (algbw * 2(P-1)/P).\n"
            "  --bytes N         bytes per all-reduce, a multiple of 4 (default %ld: the gradient\n"
            "                    of ballast-train --layers 1024,1024,1024 on Fashion-MNIST)\n"
            "  --buckets N       also time N MPI_Iallreduce of equal slices, then MPI_Waitall\n"
            "                    (ballast --bucket-mb 4 makes 3 buckets of that model)\n"
            "  --compute-ms X    also run the overlap probe: post the N slices, work X ms on the\n"
            "                    core with MPI_Testall between chunks, then MPI_Waitall (needs\n"
            "                    --buckets)\n"
            "  --tests K         MPI_Testall calls during the probe's work (default 7: one per\n"
            "                    layer of that model's backward pass)\n"
            "  --reps R          repetitions of every mode; the median is reported (default 20)\n"
            "  --iters I         operations per repetition (default 5)\n"
            "  --warmup W        untimed operations before each mode (default 3)\n"
            "  --help            this text\n"
            "Output: a table, then per mode one line\n"
            "  result: mode=allreduce|buckets ranks=P bytes=N time_us=T algbw_GBps=A "
            "busbw_GBps=B\n"
            "  result: mode=overlap ranks=P bytes=N time_us=T work_us=W exposed_us=T-W\n"
            "(GB = 1e9 bytes; exit status 1 when a sum came out wrong or MPI failed)\n",
            (long)MLP_GRAD_BYTES);
}

/* An integer in [lo, hi] that is the whole of text, or -1. */
static long parse_long_in(const char *text, long lo, long hi)
{
    char *end = NULL;
    long v = strtol(text, &end, 10);
    return end != text && *end == '\0' && v >= lo && v <= hi ? v : -1;
}

/* 0: run; 1: stop with status 0 (--help); -1: bad usage. Messages only where
 * say is set (rank 0), so a P-rank job prints each once. */
static int parse_options(int argc, char **argv, options_t *o, int say)
{
    static const struct option longs[] = {{"bytes", required_argument, NULL, 'b'},
                                          {"buckets", required_argument, NULL, 'n'},
                                          {"compute-ms", required_argument, NULL, 'c'},
                                          {"tests", required_argument, NULL, 't'},
                                          {"reps", required_argument, NULL, 'r'},
                                          {"iters", required_argument, NULL, 'i'},
                                          {"warmup", required_argument, NULL, 'w'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    *o = (options_t){.nbytes = MLP_GRAD_BYTES, .reps = 20, .iters = 5, .warmup = 3, .tests = 7};
    int c, index = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longs, &index)) != -1) {
        long v = 0;
        char *end = NULL;
        switch (c) {
        case 'b':
            /* 4 · INT_MAX: one MPI call takes an int count of floats */
            v = parse_long_in(optarg, 4, 4L * 2147483647L);
            if (v < 0 || v % 4 != 0) {
                goto bad_value;
            }
            o->nbytes = v;
            break;
        case 'n':
        case 't':
        case 'r':
        case 'i':
        case 'w':
            v = parse_long_in(optarg, c == 'w' ? 0 : 1,
                              c == 'n' ? MAX_BUCKETS : (c == 'r' ? MAX_REPS : 1000000));
            if (v < 0) {
                goto bad_value;
            }
            *(c == 'n'   ? &o->buckets
              : c == 't' ? &o->tests
              : c == 'r' ? &o->reps
              : c == 'i' ? &o->iters
                         : &o->warmup) = (int)v;
            break;
        case 'c':
            o->compute_ms = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !(o->compute_ms > 0.0) ||
                !(o->compute_ms <= 1e5)) {
                goto bad_value;
            }
            break;
        case 'h':
            if (say) {
                usage(stdout);
            }
            return 1;
        default:
            if (say) {
                fprintf(stderr, "allreduce_bw: unknown option or missing value '%s' (see --help)\n",
                        argv[optind - 1]);
            }
            return -1;
        }
        continue;
    bad_value:
        if (say) {
            fprintf(stderr, "allreduce_bw: bad value '%s' for --%s (see --help)\n", optarg,
                    longs[index].name);
        }
        return -1;
    }
    if (optind < argc) {
        if (say) {
            fprintf(stderr, "allreduce_bw: unexpected argument '%s' (see --help)\n", argv[optind]);
        }
        return -1;
    }
    if (o->compute_ms > 0.0 && o->buckets == 0) {
        if (say) {
            fprintf(stderr, "allreduce_bw: --compute-ms needs --buckets N\n");
        }
        return -1;
    }
    if (o->buckets > o->nbytes / 4) {
        if (say) {
            fprintf(stderr, "allreduce_bw: --buckets %d is more than the %ld floats\n", o->buckets,
                    o->nbytes / 4);
        }
        return -1;
    }
    return 0;
}

/* ---- Time and statistics ----------------------------------------------- */

/* Keeps the core busy for seconds without touching memory, as computation
 * would; returns a value the compiler cannot drop. */
static double busy(double seconds)
{
    double deadline = now_seconds() + seconds, x = 1.0;
    while (now_seconds() < deadline) {
        for (int i = 0; i < 1000; i++) {
            x = x * 0.999999 + 1e-6;
        }
    }
    return x;
}

/* ---- The operations ---------------------------------------------------- */

typedef enum mode { MODE_BLOCKING, MODE_BUCKETS, MODE_OVERLAP } op_mode_t;

typedef struct bench {
    const options_t *o;
    MPI_Comm comm;
    int rank, size;
    float *buf; /* count floats */
    int count;  /* floats per operation */
    int *first; /* (buckets + 1) slice bounds: slice k is [first[k], first[k + 1]) */
    MPI_Request *requests;
    double sink; /* keeps busy() alive */
} bench_t;

/* Small integers, distinct per rank and element: every sum is exact. */
static float input_value(int rank, int i)
{
    return (float)(rank + 1 + i % 7);
}

static void fill(bench_t *b)
{
    for (int i = 0; i < b->count; i++) {
        b->buf[i] = input_value(b->rank, i);
    }
}

/* Elements whose value is not the exact sum over the ranks. */
static long count_wrong(const bench_t *b)
{
    long wrong = 0;
    for (int i = 0; i < b->count; i++) {
        float want = 0.0f;
        for (int r = 0; r < b->size; r++) {
            want += input_value(r, i);
        }
        wrong += b->buf[i] != want;
    }
    return wrong;
}

/* One operation of mode m; MPI_SUCCESS or the first failing call's code. */
static int run_op(bench_t *b, op_mode_t m)
{
    if (m == MODE_BLOCKING) {
        return MPI_Allreduce(MPI_IN_PLACE, b->buf, b->count, MPI_FLOAT, MPI_SUM, b->comm);
    }
    int n = b->o->buckets;
    for (int k = 0; k < n; k++) {
        int rc = MPI_Iallreduce(MPI_IN_PLACE, b->buf + b->first[k], b->first[k + 1] - b->first[k],
                                MPI_FLOAT, MPI_SUM, b->comm, &b->requests[k]);
        if (rc != MPI_SUCCESS) {
            MPI_Waitall(k, b->requests, MPI_STATUSES_IGNORE);
            return rc;
        }
    }
    if (m == MODE_OVERLAP) {
        double chunk = 1e-3 * b->o->compute_ms / b->o->tests;
        for (int t = 0; t < b->o->tests; t++) {
            /* a fixed amount of work per chunk: what MPI_Testall costs adds to it */
            b->sink += busy(chunk);
            int done = 0;
            int rc = MPI_Testall(n, b->requests, &done, MPI_STATUSES_IGNORE);
            if (rc != MPI_SUCCESS) {
                MPI_Waitall(n, b->requests, MPI_STATUSES_IGNORE);
                return rc;
            }
        }
    }
    return MPI_Waitall(n, b->requests, MPI_STATUSES_IGNORE);
}

/* Checks the first operation, warms up, then times the repetitions:
 * seconds[r] is repetition r's time per operation on the slowest rank (the
 * same on every rank). *wrong: wrong elements on this rank. MPI_SUCCESS or
 * an MPI error code. */
static int measure(bench_t *b, op_mode_t m, double *seconds, long *wrong)
{
    const options_t *o = b->o;
    fill(b);
    int rc = run_op(b, m);
    if (rc != MPI_SUCCESS) {
        return rc;
    }
    *wrong = count_wrong(b);
    for (int w = 0; w < o->warmup && rc == MPI_SUCCESS; w++) {
        rc = run_op(b, m);
    }
    for (int r = 0; r < o->reps && rc == MPI_SUCCESS; r++) {
        /* Sums grow P-fold per operation: start each repetition from the
         * small inputs (untimed) so they stay finite. */
        fill(b);
        MPI_Barrier(b->comm);
        double start = now_seconds();
        for (int i = 0; i < o->iters && rc == MPI_SUCCESS; i++) {
            rc = run_op(b, m);
        }
        double mine = (now_seconds() - start) / o->iters;
        if (rc == MPI_SUCCESS) {
            rc = MPI_Allreduce(&mine, &seconds[r], 1, MPI_DOUBLE, MPI_MAX, b->comm);
        }
    }
    return rc;
}

/* ---- Report ------------------------------------------------------------ */

static void print_header(const bench_t *b)
{
    const options_t *o = b->o;
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    version[strcspn(version, "\n,")] = '\0';
    printf("allreduce_bw: %d ranks, %ld bytes (%d floats), float32 MPI_SUM in place\n", b->size,
           o->nbytes, b->count);
    printf("  %d reps x %d ops (after %d warm-up ops), time per op = slowest rank's, median\n",
           o->reps, o->iters, o->warmup);
    printf("  %s\n", version);
    if (b->size == 1) {
        printf("  one rank: nothing moves, and the bus bandwidth is 0 by definition\n");
    }
    if (o->buckets > 0) {
        printf("  %d buckets of %d..%d floats", o->buckets,
               b->first[o->buckets] - b->first[o->buckets - 1], b->first[1] - b->first[0]);
        if (o->compute_ms > 0.0) {
            printf("; overlap probe: %g ms of work in %d chunks, MPI_Testall after each",
                   o->compute_ms, o->tests);
        }
        printf("\n");
    }
    printf("\n%-34s %10s   %-21s %10s %10s\n", "mode", "time us", "min - max", "algbw GB/s",
           "busbw GB/s");
}

/* One table row and one result line. work_s > 0 marks the overlap probe:
 * its row gives the part of the time not covered by the work ("exposed")
 * instead of bandwidths, which that time does not measure. */
static void print_mode(const bench_t *b, const char *name, const char *key, const double *seconds,
                       double work_s, char *results, size_t results_len)
{
    const options_t *o = b->o;
    summary_t s = summarize(seconds, o->reps);
    char range[64];
    snprintf(range, sizeof range, "%.0f - %.0f", 1e6 * s.min, 1e6 * s.max);
    size_t used = strlen(results);
    if (work_s > 0.0) {
        double exposed = s.median - work_s;
        printf("%-34s %10.0f   %-21s exposed %.0f us\n", name, 1e6 * s.median, range,
               1e6 * exposed);
        snprintf(results + used, results_len - used,
                 "result: mode=%s ranks=%d bytes=%ld time_us=%.1f work_us=%.1f exposed_us=%.1f\n",
                 key, b->size, o->nbytes, 1e6 * s.median, 1e6 * work_s, 1e6 * exposed);
        return;
    }
    double algbw = (double)o->nbytes / s.median * 1e-9;
    double busbw = algbw * 2.0 * (b->size - 1) / b->size;
    printf("%-34s %10.0f   %-21s %10.2f %10.2f\n", name, 1e6 * s.median, range, algbw, busbw);
    snprintf(results + used, results_len - used,
             "result: mode=%s ranks=%d bytes=%ld time_us=%.1f algbw_GBps=%.3f busbw_GBps=%.3f\n",
             key, b->size, o->nbytes, 1e6 * s.median, algbw, busbw);
}

/* ---- Main -------------------------------------------------------------- */

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    bench_t b = {0};
    double *seconds = NULL;
    int status = 1;
    MPI_Comm_dup(MPI_COMM_WORLD, &b.comm);
    /* Failures come back as codes to report, not as a silent abort. */
    MPI_Comm_set_errhandler(b.comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(b.comm, &b.rank);
    MPI_Comm_size(b.comm, &b.size);
    options_t o;
    int parsed = parse_options(argc, argv, &o, b.rank == 0);
    if (parsed != 0) {
        status = parsed > 0 ? 0 : 1;
        goto done;
    }
    b.o = &o;
    b.count = (int)(o.nbytes / 4);
    int n = o.buckets > 0 ? o.buckets : 1;
    b.buf = malloc((size_t)b.count * sizeof *b.buf);
    b.first = malloc((size_t)(n + 1) * sizeof *b.first);
    b.requests = malloc((size_t)n * sizeof *b.requests);
    seconds = malloc((size_t)o.reps * sizeof *seconds);
    int have = b.buf != NULL && b.first != NULL && b.requests != NULL && seconds != NULL;
    int all_have = 0;
    MPI_Allreduce(&have, &all_have, 1, MPI_INT, MPI_LAND, b.comm);
    if (!all_have) {
        fprintf(stderr, "allreduce_bw: rank %d: no memory for %ld bytes\n", b.rank, o.nbytes);
        goto done;
    }
    /* Equal slices; the first count % n one float longer. */
    for (int k = 0, at = 0; k <= n; k++) {
        b.first[k] = at;
        at += b.count / n + (k < b.count % n ? 1 : 0);
    }
    if (b.rank == 0) {
        print_header(&b);
    }
    char names[3][64], results[1024] = "";
    const char *keys[3] = {"allreduce", "buckets", "overlap"};
    snprintf(names[0], sizeof names[0], "MPI_Allreduce");
    snprintf(names[1], sizeof names[1], "%d x MPI_Iallreduce + Waitall", o.buckets);
    snprintf(names[2], sizeof names[2], "same + %g ms of work", o.compute_ms);
    long wrong_here = 0;
    for (int m = MODE_BLOCKING; m <= MODE_OVERLAP; m++) {
        if ((m == MODE_BUCKETS && o.buckets == 0) || (m == MODE_OVERLAP && o.compute_ms <= 0.0)) {
            continue;
        }
        long wrong = 0;
        int rc = measure(&b, (op_mode_t)m, seconds, &wrong);
        if (rc != MPI_SUCCESS) {
            char text[MPI_MAX_ERROR_STRING];
            int len = 0;
            MPI_Error_string(rc, text, &len);
            fprintf(stderr, "allreduce_bw: rank %d: %s failed: %s\n", b.rank, names[m], text);
            MPI_Abort(MPI_COMM_WORLD, 1); /* the other ranks may be inside a collective */
        }
        wrong_here += wrong;
        if (b.rank == 0) {
            print_mode(&b, names[m], keys[m], seconds,
                       m == MODE_OVERLAP ? 1e-3 * o.compute_ms : 0.0, results, sizeof results);
        }
    }
    long wrong_all = 0;
    MPI_Allreduce(&wrong_here, &wrong_all, 1, MPI_LONG, MPI_SUM, b.comm);
    if (b.rank == 0) {
        printf("check: %s\n%s", wrong_all == 0 ? "every sum exact" : "WRONG SUMS", results);
        if (wrong_all != 0) {
            fprintf(stderr, "allreduce_bw: %ld elements summed wrong over all ranks\n", wrong_all);
        }
        fflush(stdout);
    }
    status = wrong_all == 0 ? 0 : 1;
done:
    free(seconds);
    free(b.requests);
    free(b.first);
    free(b.buf);
    MPI_Comm_free(&b.comm);
    MPI_Finalize();
    return status;
}
