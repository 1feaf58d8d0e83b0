/* Per-step telemetry: every rank fills a fixed-size record per step, and rank 0
 * gathers the records with a non-blocking MPI_Igather that completes during the
 * next step (double-buffered), so that the gather never sits on the critical
 * path. Rank 0 derives the load-balance figures and writes the JSON-lines log
 * and the Chrome trace. */
#ifndef BL_TELEMETRY_H
#define BL_TELEMETRY_H

#include <stdio.h>

#include "runtime_impl.h"

/* One rank's step, as doubles so that one MPI datatype carries it. */
typedef struct bl_step_record {
    double step;      /* the global step */
    double samples;   /* the samples this rank computed */
    double start_s;   /* the step's start, in seconds since the trainer's common t0 */
    double compute_s; /* forward + backward (and any emulated slowdown) */
    double sync_s;    /* waiting for the reductions after compute: comm + wait */
    double plan;      /* the plan version the step ran */
    double pipe_s;    /* pipelines: blocked on the neighbouring stages (bubble + transfers) */
    /* The CPU seconds the rank's process used in the step (bl_cpu_seconds),
     * against its wall seconds: a rank held by a CPU quota, or sharing its
     * cores, gets less CPU than wall time while it computes. */
    double cpu_s;
} bl_step_record_t;

#define BL_RECORD_DOUBLES ((int)(sizeof(bl_step_record_t) / sizeof(double)))

/* The load balance of one step, from all ranks' records. */
typedef struct bl_balance {
    double efficiency; /* mean compute / max compute (1 = perfectly balanced) */
    double imbalance;  /* max compute / mean compute − 1 */
    double idle;       /* the fraction of rank-seconds spent waiting for the slowest */
} bl_balance_t;

/* Returns the load balance of one step from `ranks` records (1, 0 and 0 when no
 * rank computed). In the telemetry line, rank r's wait_s is the max compute −
 * its compute, and its comm_s is its sync − its wait (at least 0). */
bl_balance_t bl_balance_of(const bl_step_record_t *records, int ranks);

typedef struct bl_telemetry {
    bl_runtime_t *rt;
    int ranks;
    bl_step_record_t mine[2];      /* this rank's last two records (send buffers) */
    bl_step_record_t *gathered[2]; /* rank 0: `ranks` records each */
    MPI_Request request[2];
    int pending;      /* the buffer index with a gather in flight, or -1 */
    FILE *jsonl;      /* rank 0: the --telemetry file */
    FILE *trace;      /* rank 0: the --trace file */
    int trace_events; /* the events written so far (for the commas) */
    /* Rank 0: a JSON member (e.g. the start-up "memory" report) that the next
     * step line carries, once; allocated with the runtime's allocator and
     * owned here, or NULL. */
    char *once;
} bl_telemetry_t;

/* Sets up the gather and opens the files, on rank 0 only; either path may be
 * NULL. Collective: every rank fails when rank 0 cannot open a file or lacks
 * memory. */
bl_status_t bl_telemetry_init(bl_telemetry_t *tm, bl_runtime_t *rt, const char *jsonl_path,
                              const char *trace_path);

/* Hands this step's record over: completes the previous step's gather, whose
 * records are then passed to `ready` on rank 0, and starts this step's gather.
 * Collective: every rank calls it every step. */
typedef void (*bl_records_ready_fn)(const bl_step_record_t *records, void *arg);
bl_status_t bl_telemetry_step(bl_telemetry_t *tm, const bl_step_record_t *mine,
                              bl_records_ready_fn ready, void *ready_arg);

/* Completes the gather in flight, passing its records to ready on rank 0.
 * Collective: the trainer calls it at the end of every run. */
bl_status_t bl_telemetry_flush(bl_telemetry_t *tm, bl_records_ready_fn ready, void *ready_arg);

/* Closes the files and frees the buffers; local. A gather still in flight
 * (after a failed run) is abandoned. Returns BL_ERR_IO when a file fails to
 * close. It is safe on a zeroed struct. */
bl_status_t bl_telemetry_close(bl_telemetry_t *tm);

/* Rank 0: writes one JSON object line for a step, when there is a telemetry
 * file. extra is a JSON fragment of further members (without braces), or NULL. */
void bl_telemetry_write_step(bl_telemetry_t *tm, const bl_step_record_t *records,
                             const long *shards, double loss, double accuracy, const char *extra);

/* Copies member, a JSON member such as "memory":[...] (NULL: nothing), for
 * the next step line to carry once; it replaces one not yet written. It
 * does nothing without a telemetry file, and a copy that finds no memory is
 * dropped (the member is a report, not state). Local (rank 0 alone has the
 * file). */
void bl_telemetry_attach_once(bl_telemetry_t *tm, const char *member);

/* Rank 0: writes the step's spans (compute, pipeline, wait and comm per rank)
 * into the trace, when there is one. */
void bl_telemetry_trace_step(bl_telemetry_t *tm, const bl_step_record_t *records);

#endif /* BL_TELEMETRY_H */
