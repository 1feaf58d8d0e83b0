/* The per-step telemetry records, their one-step-late gather to rank 0, the
 * load-balance figures, and the JSON-lines and Chrome-trace writers
 * (telemetry.h). */
#include <errno.h>
#include <string.h>

#include "telemetry.h"
#include "wait.h"

bl_balance_t bl_balance_of(const bl_step_record_t *records, int ranks)
{
    double max = 0.0, sum = 0.0;
    for (int r = 0; r < ranks; r++) {
        sum += records[r].compute_s;
        max = records[r].compute_s > max ? records[r].compute_s : max;
    }
    bl_balance_t b = {1.0, 0.0, 0.0};
    if (max > 0.0 && ranks > 0) {
        double mean = sum / ranks;
        b.efficiency = mean / max;
        b.imbalance = max / mean - 1.0;
        b.idle = (max * ranks - sum) / (max * ranks);
    }
    return b;
}

static FILE *open_output(bl_runtime_t *rt, const char *path, const char *what, bl_status_t *st)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        *st = bl_fail(rt, BL_ERR_IO, "%s %s: cannot create: %s", what, path, strerror(errno));
    }
    return f;
}

bl_status_t bl_telemetry_init(bl_telemetry_t *tm, bl_runtime_t *rt, const char *jsonl_path,
                              const char *trace_path)
{
    memset(tm, 0, sizeof *tm);
    tm->rt = rt;
    tm->ranks = rt->size;
    tm->pending = -1;
    tm->request[0] = tm->request[1] = MPI_REQUEST_NULL;
    bl_status_t st = BL_OK;
    if (rt->rank == 0) {
        for (int k = 0; k < 2; k++) {
            tm->gathered[k] =
                bl_mem_array(bl_rt_allocator(rt), (size_t)rt->size, sizeof(bl_step_record_t));
            if (tm->gathered[k] == NULL) {
                st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for %d ranks' telemetry", rt->size);
            }
        }
        if (st == BL_OK && jsonl_path != NULL) {
            tm->jsonl = open_output(rt, jsonl_path, "telemetry file", &st);
        }
        if (st == BL_OK && trace_path != NULL) {
            tm->trace = open_output(rt, trace_path, "trace file", &st);
            if (tm->trace != NULL) {
                fputs("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n", tm->trace);
            }
        }
    }
    /* Rank 0's files may fail alone, so the ranks agree before anyone goes on. */
    st = bl_agree(rt, st, BL_ERR_IO, "opening the telemetry or trace file");
    if (st != BL_OK) {
        bl_telemetry_close(tm);
    }
    return st;
}

/* Completes the gather in flight, if any, and hands its records on. */
static bl_status_t complete_pending(bl_telemetry_t *tm, bl_records_ready_fn ready, void *arg)
{
    if (tm->pending < 0) {
        return BL_OK;
    }
    int k = tm->pending;
    tm->pending = -1;
    bl_status_t st =
        bl_wait_collective(tm->rt, &tm->request[k], "the telemetry gather", tm->rt->comm);
    if (st != BL_OK) {
        return st;
    }
    if (tm->rt->rank == 0 && ready != NULL) {
        ready(tm->gathered[k], arg);
    }
    return BL_OK;
}

bl_status_t bl_telemetry_step(bl_telemetry_t *tm, const bl_step_record_t *mine,
                              bl_records_ready_fn ready, void *ready_arg)
{
    /* The previous step's gather used the other buffer. It has had a whole step
     * to complete, so this wait is normally free. */
    int k = tm->pending < 0 ? 0 : 1 - tm->pending;
    bl_status_t st = complete_pending(tm, ready, ready_arg);
    if (st != BL_OK) {
        return st;
    }
    tm->mine[k] = *mine;
    double *recv = tm->rt->rank == 0 ? (double *)tm->gathered[k] : NULL;
    int rc = MPI_Igather(&tm->mine[k], BL_RECORD_DOUBLES, MPI_DOUBLE, recv, BL_RECORD_DOUBLES,
                         MPI_DOUBLE, 0, tm->rt->comm, &tm->request[k]);
    if (rc != MPI_SUCCESS) {
        return bl_fail_mpi(tm->rt, rc, "MPI_Igather of telemetry");
    }
    tm->pending = k;
    return BL_OK;
}

bl_status_t bl_telemetry_flush(bl_telemetry_t *tm, bl_records_ready_fn ready, void *ready_arg)
{
    return tm->rt == NULL ? BL_OK : complete_pending(tm, ready, ready_arg);
}

bl_status_t bl_telemetry_close(bl_telemetry_t *tm)
{
    if (tm->rt == NULL) {
        return BL_OK;
    }
    bl_status_t st = BL_OK;
    if (tm->jsonl != NULL && fclose(tm->jsonl) != 0 && st == BL_OK) {
        st = bl_fail(tm->rt, BL_ERR_IO, "closing the telemetry file failed: %s", strerror(errno));
    }
    if (tm->trace != NULL) {
        fputs("\n]}\n", tm->trace);
        if (fclose(tm->trace) != 0 && st == BL_OK) {
            st = bl_fail(tm->rt, BL_ERR_IO, "closing the trace file failed: %s", strerror(errno));
        }
    }
    for (int k = 0; k < 2; k++) {
        bl_mem_free(bl_rt_allocator(tm->rt), tm->gathered[k]);
    }
    bl_mem_free(bl_rt_allocator(tm->rt), tm->once);
    memset(tm, 0, sizeof *tm);
    return st;
}

/* Writes ,"name":[v0,v1,...] with one value per rank, from
 * value(record, max_compute). */
static void write_array(FILE *f, const char *name, const bl_step_record_t *records, int ranks,
                        double (*value)(const bl_step_record_t *, double max_compute),
                        double max_compute)
{
    fprintf(f, ",\"%s\":[", name);
    for (int r = 0; r < ranks; r++) {
        fprintf(f, "%s%.6g", r == 0 ? "" : ",", value(&records[r], max_compute));
    }
    fputc(']', f);
}

static double compute_of(const bl_step_record_t *r, double max)
{
    return r->compute_s;
}

static double cpu_of(const bl_step_record_t *r, double max)
{
    return r->cpu_s;
}

static double wait_of(const bl_step_record_t *r, double max)
{
    return max - r->compute_s;
}

/* The reductions' time beyond the wait for the slowest rank. */
static double comm_of(const bl_step_record_t *r, double max)
{
    double comm = r->sync_s - (max - r->compute_s);
    return comm > 0.0 ? comm : 0.0;
}

static double pipe_of(const bl_step_record_t *r, double max)
{
    return r->pipe_s;
}

static double samples_of(const bl_step_record_t *r, double max)
{
    return r->samples;
}

static double max_compute(const bl_step_record_t *records, int ranks)
{
    double max = 0.0;
    for (int r = 0; r < ranks; r++) {
        max = records[r].compute_s > max ? records[r].compute_s : max;
    }
    return max;
}

void bl_telemetry_write_step(bl_telemetry_t *tm, const bl_step_record_t *records,
                             const long *shards, double loss, double accuracy, const char *extra)
{
    FILE *f = tm->jsonl;
    if (f == NULL) {
        return;
    }
    int P = tm->ranks;
    double max = max_compute(records, P);
    bl_balance_t b = bl_balance_of(records, P);
    double step_s = 0.0;
    int piped = 0;
    for (int r = 0; r < P; r++) {
        double s = records[r].compute_s + records[r].pipe_s + records[r].sync_s;
        step_s = s > step_s ? s : step_s;
        piped |= records[r].pipe_s > 0.0;
    }
    fprintf(f,
            "{\"step\":%.0f,\"plan_version\":%.0f,\"loss\":%.6g,\"accuracy\":%.6g,"
            "\"step_s\":%.6g,\"lb_efficiency\":%.6g,\"imbalance\":%.6g,\"idle_fraction\":%.6g",
            records[0].step, records[0].plan, loss, accuracy, step_s, b.efficiency, b.imbalance,
            b.idle);
    fputs(",\"shards\":[", f);
    for (int r = 0; r < P; r++) {
        fprintf(f, "%s%ld", r == 0 ? "" : ",", shards[r]);
    }
    fputc(']', f);
    write_array(f, "samples", records, P, samples_of, max);
    write_array(f, "compute_s", records, P, compute_of, max);
    write_array(f, "comm_s", records, P, comm_of, max);
    write_array(f, "wait_s", records, P, wait_of, max);
    write_array(f, "cpu_s", records, P, cpu_of, max);
    if (piped) {
        write_array(f, "pipe_s", records, P, pipe_of, max);
    }
    if (extra != NULL && extra[0] != '\0') {
        fprintf(f, ",%s", extra);
    }
    if (tm->once != NULL) {
        fprintf(f, ",%s", tm->once);
        bl_mem_free(bl_rt_allocator(tm->rt), tm->once);
        tm->once = NULL;
    }
    fputs("}\n", f);
}

void bl_telemetry_attach_once(bl_telemetry_t *tm, const char *member)
{
    if (tm->rt == NULL || tm->jsonl == NULL) {
        return;
    }
    const bl_allocator_t *a = bl_rt_allocator(tm->rt);
    bl_mem_free(a, tm->once);
    tm->once = NULL;
    if (member != NULL) {
        size_t n = strlen(member) + 1;
        tm->once = bl_mem_alloc(a, n);
        if (tm->once != NULL) {
            memcpy(tm->once, member, n);
        }
    }
}

/* Writes one complete ("X") event: a span on `rank`'s row from ts for dur
 * seconds. */
static void trace_span(bl_telemetry_t *tm, const char *name, int rank, double ts, double dur,
                       double step)
{
    if (dur < 1e-9) {
        return; /* below the trace's resolution (1 ns as %.3f µs), it would print as 0 */
    }
    fprintf(tm->trace,
            "%s{\"name\":\"%s\",\"cat\":\"step\",\"ph\":\"X\",\"pid\":0,\"tid\":%d,"
            "\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"step\":%.0f}}",
            tm->trace_events++ == 0 ? "" : ",\n", name, rank, ts * 1e6, dur * 1e6, step);
}

void bl_telemetry_trace_step(bl_telemetry_t *tm, const bl_step_record_t *records)
{
    if (tm->trace == NULL) {
        return;
    }
    int P = tm->ranks;
    double max = max_compute(records, P);
    for (int r = 0; r < P; r++) {
        const bl_step_record_t *x = &records[r];
        double wait = wait_of(x, max), comm = comm_of(x, max);
        if (x->step == 0.0) {
            /* The rows are named once, with thread_name metadata per rank. */
            fprintf(tm->trace,
                    "%s{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":0,\"tid\":%d,"
                    "\"args\":{\"name\":\"rank %d\"}}",
                    tm->trace_events++ == 0 ? "" : ",\n", r, r);
        }
        /* A pipeline stage's passes and its waits for its neighbours
         * interleave; the record holds their totals, drawn one after the other. */
        trace_span(tm, "compute", r, x->start_s, x->compute_s, x->step);
        trace_span(tm, "pipeline", r, x->start_s + x->compute_s, x->pipe_s, x->step);
        double after = x->start_s + x->compute_s + x->pipe_s;
        trace_span(tm, "wait", r, after, wait < x->sync_s ? wait : x->sync_s, x->step);
        trace_span(tm, "comm", r, after + (wait < x->sync_s ? wait : 0.0), comm, x->step);
    }
}
