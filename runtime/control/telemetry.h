/* Per-step telemetry: every rank records a fixed-size record per step;
 * rank 0 gathers them with a non-blocking MPI_Igather that completes during
 * the next step (double-buffered), so the gather never sits on the critical
 * path. Rank 0 derives the load-balance figures and writes the JSON-lines
 * log and the Chrome trace. */
#ifndef BL_TELEMETRY_H
#define BL_TELEMETRY_H

#include <stdio.h>

#include "runtime_impl.h"

/* One rank's step, as doubles so one MPI datatype carries it. */
typedef struct bl_step_record {
    double step;      /* global step */
    double samples;   /* samples this rank computed */
    double start_s;   /* step start, seconds since the trainer's common t0 */
    double compute_s; /* forward + backward (and any emulated slowdown) */
    double sync_s;    /* waiting for the reductions after compute: comm + wait */
    double plan;      /* plan version the step ran */
    double pipe_s;    /* pipelines: blocked on the neighbouring stages (bubble + transfers) */
} bl_step_record_t;

#define BL_RECORD_DOUBLES ((int)(sizeof(bl_step_record_t) / sizeof(double)))

/* Load balance of one step from all ranks' records. */
typedef struct bl_balance {
    double efficiency; /* mean compute / max compute (1 = perfectly balanced) */
    double imbalance;  /* max compute / mean compute − 1 */
    double idle;       /* fraction of rank-seconds spent waiting for the slowest */
} bl_balance_t;

/* wait_s of rank r = max compute − its compute; comm_s = its sync − wait
 * (at least 0). */
bl_balance_t bl_balance_of(const bl_step_record_t *records, int ranks);

typedef struct bl_telemetry {
    bl_runtime_t *rt;
    int ranks;
    bl_step_record_t mine[2];      /* this rank's last two records (send buffers) */
    bl_step_record_t *gathered[2]; /* rank 0: ranks records each */
    MPI_Request request[2];
    int pending;      /* the buffer index with a gather in flight, or -1 */
    FILE *jsonl;      /* rank 0, --telemetry */
    FILE *trace;      /* rank 0, --trace */
    int trace_events; /* written so far (commas) */
} bl_telemetry_t;

/* Collective. Paths may be NULL; files are opened on rank 0 only. */
bl_status_t bl_telemetry_init(bl_telemetry_t *tm, bl_runtime_t *rt, const char *jsonl_path,
                              const char *trace_path);

/* Hands this step's record over: completes the previous step's gather
 * (whose records are then passed to `ready` on rank 0) and starts this
 * one's. Collective (every rank, every step). */
typedef void (*bl_records_ready_fn)(const bl_step_record_t *records, void *arg);
bl_status_t bl_telemetry_step(bl_telemetry_t *tm, const bl_step_record_t *mine,
                              bl_records_ready_fn ready, void *ready_arg);

/* Completes the gather in flight (passing its records to ready on rank 0).
 * Collective: the trainer calls it at the end of every run. */
bl_status_t bl_telemetry_flush(bl_telemetry_t *tm, bl_records_ready_fn ready, void *ready_arg);

/* Closes the files and frees the buffers; local. A gather still in flight
 * (after a failed run) is abandoned. Safe on a zeroed struct. */
bl_status_t bl_telemetry_close(bl_telemetry_t *tm);

/* Rank 0: one JSON object line for a step. extra is a JSON fragment of
 * more members (without braces), or NULL. */
void bl_telemetry_write_step(bl_telemetry_t *tm, const bl_step_record_t *records,
                             const long *shards, double loss, double accuracy, const char *extra);

/* Rank 0: the step's spans (compute, comm, wait per rank) into the trace. */
void bl_telemetry_trace_step(bl_telemetry_t *tm, const bl_step_record_t *records);

#endif /* BL_TELEMETRY_H */
