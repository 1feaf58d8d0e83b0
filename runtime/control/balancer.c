/* Telemetry and the shard controller around the step loop (balancer.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "balancer.h"
#include "consistency.h"
#include "wait.h"

double bl_balancer_now(const bl_balancer_t *b)
{
    return bl_now_seconds() - b->t0;
}

static int uses_policy(const bl_train_config_t *cfg)
{
    return cfg->balance.policy != NULL && strcmp(cfg->balance.policy, "none") != 0;
}

uint64_t bl_balancer_digest(const bl_train_config_t *cfg)
{
    const char *policy = uses_policy(cfg) ? cfg->balance.policy : "none";
    uint64_t d = bl_digest(policy, strlen(policy));
    d = bl_seed_mix(d, (uint64_t)cfg->balance.rebalance_every);
    return d;
}

/* Rank 0: reads an rl Q-table file of `count` raw little-endian float64 values
 * into table. BL_ERR_IO and BL_ERR_FORMAT name the file and the problem. */
static bl_status_t load_policy_file(bl_runtime_t *rt, const char *path, double *table, size_t count)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return bl_fail(rt, BL_ERR_IO, "policy file %s: cannot open: %s", path, strerror(errno));
    }
    struct stat sb;
    bl_status_t st = BL_OK;
    if (fstat(fileno(f), &sb) != 0 || (size_t)sb.st_size != count * sizeof(double)) {
        st = bl_fail(rt, BL_ERR_FORMAT,
                     "policy file %s: holds %lld bytes; an rl table is %zu float64 (%zu bytes)",
                     path, (long long)sb.st_size, count, count * sizeof(double));
    } else if (fread(table, sizeof(double), count, f) != count) {
        st = bl_fail(rt, BL_ERR_IO, "policy file %s: short read", path);
    }
    for (size_t i = 0; st == BL_OK && i < count; i++) {
        if (!isfinite(table[i])) {
            st = bl_fail(rt, BL_ERR_FORMAT, "policy file %s: value %zu is not finite", path, i);
        }
    }
    fclose(f);
    return st;
}

bl_status_t bl_balancer_init(bl_balancer_t *b, bl_runtime_t *rt, const bl_train_config_t *cfg,
                             const long *shard_min, const long *shard_max)
{
    const bl_allocator_t *a = bl_rt_allocator(rt);
    memset(b, 0, sizeof *b);
    b->rt = rt;
    bl_status_t st = BL_OK;
    if (cfg->balance.rebalance_every < 1) {
        st = bl_fail(rt, BL_ERR_INVALID_ARG, "rebalance interval %d must be at least 1 step",
                     cfg->balance.rebalance_every);
    }
    if (st == BL_OK && cfg->balance.policy_file != NULL &&
        (!uses_policy(cfg) || strcmp(cfg->balance.policy, "rl") != 0)) {
        st = bl_fail(rt, BL_ERR_INVALID_ARG, "a policy file %s applies to the rl policy only",
                     cfg->balance.policy_file);
    }
    if (st != BL_OK) {
        return st;
    }
    /* With pipelines the policy moves layers (the stage controller), not
     * shards. */
    b->controller_on = uses_policy(cfg) && cfg->pipeline.stages <= 1;
    /* Records are gathered only when someone reads them: the controller or the
     * files. Plain data parallelism pays nothing for them. */
    b->telemetry_on = b->controller_on || cfg->diagnostics.telemetry_path != NULL ||
                      cfg->diagnostics.trace_path != NULL;
    /* A common time origin for the trace: every rank leaves a barrier, then
     * reads its clock. */
    if (b->telemetry_on) {
        MPI_Request req = MPI_REQUEST_NULL;
        const char *op = "the barrier before the first step";
        int rc = MPI_Ibarrier(rt->comm, &req);
        st = bl_collective_posted(rt, rc, &req, op, rt->comm);
        if (st != BL_OK) {
            goto fail;
        }
    }
    b->t0 = bl_now_seconds();
    if (b->telemetry_on) {
        st = bl_telemetry_init(&b->tm, rt, cfg->diagnostics.telemetry_path,
                               cfg->diagnostics.trace_path);
        if (st != BL_OK) {
            goto fail;
        }
        b->prev_shards = bl_mem_array(a, (size_t)rt->size, sizeof *b->prev_shards);
        if (b->prev_shards == NULL) {
            st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for telemetry of %d ranks", rt->size);
            goto fail;
        }
    }
    if (b->controller_on) {
        double table[BL_RL_TABLE_DOUBLES];
        const double *q_init = NULL;
        if (cfg->balance.policy_file != NULL && rt->rank == 0) {
            st = load_policy_file(rt, cfg->balance.policy_file, table, BL_RL_TABLE_DOUBLES);
            q_init = table;
        }
        /* A file error on rank 0 reaches the others through the controller's
         * set-up agreement; rank 0 keeps its own message. */
        if (st == BL_OK) {
            st = bl_controller_init(&b->ctl, rt, cfg->balance.policy, cfg->balance.rebalance_every,
                                    cfg->batch, cfg->seed, q_init, shard_min, shard_max);
        } else {
            int failed = 1, any = 0;
            (void)bl_allreduce_bounded(rt, &failed, &any, 1, MPI_INT, MPI_MAX, rt->comm,
                                       "setting up the controller");
        }
        if (st != BL_OK) {
            goto fail;
        }
    }
    return BL_OK;
fail:
    bl_balancer_free(b);
    return st;
}

void bl_balancer_free(bl_balancer_t *b)
{
    if (b->rt == NULL) {
        return;
    }
    const bl_allocator_t *a = bl_rt_allocator(b->rt);
    bl_controller_free(&b->ctl);
    bl_telemetry_close(&b->tm);
    bl_mem_free(a, b->prev_shards);
    bl_mem_free(a, b->prev_first);
    bl_mem_free(a, b->extra);
    memset(b, 0, sizeof *b);
}

bl_status_t bl_balancer_track_pipeline(bl_balancer_t *b, int stages,
                                       const char *(*note)(const void *arg, long step),
                                       const void *note_arg)
{
    if (!b->telemetry_on || b->rt->rank != 0 || stages < 2) {
        return BL_OK;
    }
    b->prev_first = bl_mem_array(bl_rt_allocator(b->rt), (size_t)stages + 1, sizeof *b->prev_first);
    if (b->prev_first == NULL) {
        return bl_fail(b->rt, BL_ERR_NO_MEM, "no memory for a %d-stage map", stages);
    }
    b->stages = stages;
    b->note = note;
    b->note_arg = note_arg;
    return BL_OK;
}

/* Rank 0: writes into extra (n bytes) the JSON members of a step's line beyond
 * the records: the controller's decision, the stage map and the stage
 * controller's note. */
static void line_extra(const bl_balancer_t *b, char *extra, size_t n)
{
    size_t used = 0;
    extra[0] = '\0';
    if (b->controller_on && b->ctl.decided && b->ctl.decided_at == b->prev_info.step) {
        bl_controller_describe(&b->ctl, extra, n);
        used = strlen(extra);
    }
    if (b->stages > 1) {
        for (int s = 0; s <= b->stages && used < n; s++) {
            used += (size_t)snprintf(
                extra + used, n - used, "%s%d",
                s > 0 ? "," : (used > 0 ? ",\"stage_first\":[" : "\"stage_first\":["),
                b->prev_first[s]);
        }
        used += used < n ? (size_t)snprintf(extra + used, n - used, "]") : 0;
        const char *note = b->note != NULL ? b->note(b->note_arg, b->prev_info.step) : NULL;
        if (note != NULL && used < n) {
            snprintf(extra + used, n - used, ",%s", note);
        }
    }
}

/* Rank 0: called when the records of the step before the current one arrive. It
 * feeds them to the controller and writes that step's telemetry line and trace
 * spans. */
static void on_records(const bl_step_record_t *records, void *arg)
{
    bl_balancer_t *b = arg;
    b->last_efficiency = bl_balance_of(records, b->rt->size).efficiency;
    if (b->controller_on) {
        bl_controller_observe(&b->ctl, records);
    }
    if (b->have_prev) {
        /* Make room for the decision, the map and the note, whatever their
         * size. */
        const char *note = b->note != NULL ? b->note(b->note_arg, b->prev_info.step) : NULL;
        size_t n = 1024 + 16 * (size_t)(b->stages + 1) + (note != NULL ? strlen(note) : 0);
        if (n > b->extra_cap) { /* the buffer grows with the note, then stays */
            bl_mem_free(bl_rt_allocator(b->rt), b->extra);
            b->extra = bl_mem_array(bl_rt_allocator(b->rt), n, 1);
            b->extra_cap = b->extra != NULL ? n : 0;
            if (b->extra == NULL) {
                return; /* the line is lost, but the run goes on */
            }
        }
        line_extra(b, b->extra, n);
        bl_telemetry_write_step(&b->tm, records, b->prev_shards, b->prev_info.loss,
                                b->prev_info.accuracy, b->extra);
        bl_telemetry_trace_step(&b->tm, records);
    }
}

static bl_status_t after_step(bl_balancer_t *b, const bl_step_record_t *record,
                              bl_step_info_t *info, const bl_plan_t *plan, long *next_shards,
                              int *changed);

bl_status_t bl_balancer_after_step(bl_balancer_t *b, const bl_step_record_t *record,
                                   bl_step_info_t *info, const bl_plan_t *plan, long *next_shards,
                                   int *changed)
{
    *changed = 0;
    info->lb_efficiency = 0.0;
    info->decision = NULL;
    if (!b->telemetry_on) {
        return BL_OK;
    }
    double t0 = bl_now_seconds();
    bl_status_t st = after_step(b, record, info, plan, next_shards, changed);
    info->lb_efficiency = b->last_efficiency;
    if (b->controller_on && b->ctl.decided) {
        info->decision = b->ctl.last.action != NULL ? b->ctl.last.action : "hold";
    }
    b->spent_s += bl_now_seconds() - t0;
    b->step_s += info->seconds;
    b->steps++;
    return st;
}

/* The work of bl_balancer_after_step when telemetry is on. */
static bl_status_t after_step(bl_balancer_t *b, const bl_step_record_t *record,
                              bl_step_info_t *info, const bl_plan_t *plan, long *next_shards,
                              int *changed)
{
    /* Deliver the previous step's records (written with the previous step's
     * info), then start this step's gather. */
    bl_status_t st = bl_telemetry_step(&b->tm, record, on_records, b);
    if (st != BL_OK) {
        return st;
    }
    if (b->rt->rank == 0) {
        b->prev_info = *info;
        /* Rank r computes its pipeline's (r / S's) shard. */
        for (int r = 0; r < b->rt->size; r++) {
            b->prev_shards[r] = plan->shards[r / plan->stages];
        }
        if (b->stages > 1) {
            memcpy(b->prev_first, plan->first, (size_t)(b->stages + 1) * sizeof *plan->first);
        }
        b->have_prev = 1;
    }
    if (b->controller_on) {
        /* Without pipelines (the controller's case) a shard is a rank's. */
        st = bl_controller_boundary(&b->ctl, info->step, plan->shards, next_shards, changed);
    }
    return st;
}

bl_status_t bl_balancer_settle(bl_balancer_t *b)
{
    return b->telemetry_on ? bl_telemetry_flush(&b->tm, on_records, b) : BL_OK;
}

bl_status_t bl_balancer_flush(bl_balancer_t *b)
{
    if (!b->telemetry_on) {
        return BL_OK;
    }
    bl_status_t st = bl_balancer_settle(b);
    if (b->rt->rank == 0 && b->steps > 0 && b->step_s > 0.0) {
        bl_log(b->rt, BL_LOG_INFO,
               "telemetry and control cost rank 0 %.3f ms a step, %.2f%% of the mean step of "
               "%.2f ms (%ld steps)",
               1e3 * b->spent_s / (double)b->steps, 100.0 * b->spent_s / b->step_s,
               1e3 * b->step_s / (double)b->steps, b->steps);
    }
    return st;
}
