/* The rank-0 controller (controller.h): windows of telemetry go to the policy,
 * and its plan is broadcast. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "controller.h"
#include "wait.h"

/* Rank 0 learns every rank's CPU quota and gives them to the policy, which
 * caps the shards of ranks held by one (partition/capacity.h). Collective. */
static bl_status_t gather_quotas(bl_controller_t *c)
{
    bl_runtime_t *rt = c->rt;
    MPI_Request req = MPI_REQUEST_NULL;
    int rc =
        MPI_Igather(&rt->cpu_quota, 1, MPI_DOUBLE, c->quotas, 1, MPI_DOUBLE, 0, rt->comm, &req);
    bl_status_t st =
        bl_collective_posted(rt, rc, &req, "gathering the ranks' CPU quotas", rt->comm);
    if (st == BL_OK && rt->rank == 0 && bl_policy_set_cpu_quotas(c->policy, c->quotas) != 0) {
        bl_log(rt, BL_LOG_WARN, "controller: the ranks' CPU quotas are not used (no memory)");
    }
    return st;
}

bl_status_t bl_controller_init(bl_controller_t *c, bl_runtime_t *rt, const char *policy_name,
                               int every, long batch, uint64_t seed, const double *q_init,
                               const long *shard_min, const long *shard_max)
{
    const bl_allocator_t *a = bl_rt_allocator(rt);
    int P = rt->size;
    memset(c, 0, sizeof *c);
    c->rt = rt;
    c->every = every;
    c->batch = batch;
    c->warm_until = BL_CONTROL_WARMUP_STEPS;
    int kind = bl_policy_parse(policy_name);
    if (kind < 0) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "policy '%s' is not one of static, proportional, bandit, rl", policy_name);
    }
    if (every < 1) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "rebalance interval %d must be at least 1 step",
                       every);
    }
    bl_status_t st = BL_OK;
    c->message = bl_mem_array(a, (size_t)P + 1, sizeof *c->message);
    char host[MPI_MAX_PROCESSOR_NAME] = "";
    char mine[BL_HOST_CHARS] = "";
    int len = 0;
    MPI_Get_processor_name(host, &len);
    /* Long host names are cut to the fixed width that the gather carries. */
    size_t keep = strnlen(host, sizeof mine - 1);
    memcpy(mine, host, keep);
    mine[keep] = '\0';
    if (rt->rank == 0) {
        c->window = bl_mem_array_zeroed(a, (size_t)P, sizeof *c->window);
        c->current = bl_mem_array(a, (size_t)P, sizeof *c->current);
        c->next = bl_mem_array(a, (size_t)P, sizeof *c->next);
        c->hosts = bl_mem_array(a, (size_t)P, BL_HOST_CHARS);
        c->quotas = bl_mem_array(a, (size_t)P, sizeof *c->quotas);
        if (c->window == NULL || c->current == NULL || c->next == NULL || c->hosts == NULL ||
            c->quotas == NULL) {
            st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for the controller of %d ranks", P);
        }
    }
    if (c->message == NULL && st == BL_OK) {
        st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for a %d-rank plan message", P);
    }
    if (st == BL_OK && rt->rank == 0) {
        /* The policy copies the caps. */
        bl_policy_config_t pc = {.kind = (bl_policy_kind_t)kind,
                                 .min_shard = shard_min,
                                 .max_shard = shard_max,
                                 .ranks = P,
                                 .batch = batch,
                                 .deadband = 0.02,
                                 .seed = seed,
                                 .estimator = (bl_estimator_params_t)BL_ESTIMATOR_PARAMS_DEFAULT,
                                 .q_init = q_init};
        bl_part_allocator_t pa = bl_rt_part_allocator(rt);
        char err[256] = "";
        if (bl_policy_create(&pc, &pa, &c->policy, err, sizeof err) != 0) {
            st = bl_fail(rt, BL_ERR_INVALID_ARG, "policy %s: %s", policy_name, err);
        }
    }
    /* Every rank learns whether rank 0 could set up, and then rank 0 learns the
     * hosts (for alerts naming them). */
    int failed = st != BL_OK, any = 0;
    const char *op = "setting up the controller";
    bl_status_t shared = bl_allreduce_bounded(rt, &failed, &any, 1, MPI_INT, MPI_MAX, rt->comm, op);
    if (shared == BL_OK && !any) {
        MPI_Request req = MPI_REQUEST_NULL;
        int rc = MPI_Igather(mine, BL_HOST_CHARS, MPI_CHAR, c->hosts, BL_HOST_CHARS, MPI_CHAR, 0,
                             rt->comm, &req);
        shared = bl_collective_posted(rt, rc, &req, op, rt->comm);
    }
    if (shared == BL_OK && !any) {
        shared = gather_quotas(c);
    }
    if (shared != BL_OK && st == BL_OK) {
        st = shared;
    } else if (any && st == BL_OK) {
        st = bl_fail(rt, BL_ERR_INVALID_ARG, "rank 0 could not set up the controller");
    }
    if (st != BL_OK) {
        bl_controller_free(c);
    }
    return st;
}

void bl_controller_free(bl_controller_t *c)
{
    if (c->rt == NULL) {
        return;
    }
    const bl_allocator_t *a = bl_rt_allocator(c->rt);
    bl_policy_destroy(c->policy);
    bl_mem_free(a, c->window);
    bl_mem_free(a, c->current);
    bl_mem_free(a, c->next);
    bl_mem_free(a, c->hosts);
    bl_mem_free(a, c->quotas);
    bl_mem_free(a, c->message);
    memset(c, 0, sizeof *c);
}

void bl_controller_observe(bl_controller_t *c, const bl_step_record_t *records)
{
    if (records[0].step < (double)c->warm_until) {
        return; /* the warm-up: not the hardware's speed (BL_CONTROL_WARMUP_STEPS) */
    }
    double step_s = 0.0;
    for (int r = 0; r < c->rt->size; r++) {
        c->window[r].samples += records[r].samples;
        c->window[r].compute_s += records[r].compute_s;
        c->window[r].comm_s += records[r].sync_s;
        c->window[r].cpu_s += records[r].cpu_s;
        double s = records[r].compute_s + records[r].sync_s;
        step_s = s > step_s ? s : step_s;
    }
    c->window_step_s += step_s;
    c->window_steps++;
}

void bl_controller_window_save(const bl_controller_t *c, double *out)
{
    int P = c->rt->size;
    for (int r = 0; r < P; r++) {
        const bl_rank_obs_t *o = &c->window[r];
        double *v = out + BL_CONTROLLER_RANK_DOUBLES * (size_t)r;
        v[0] = o->samples;
        v[1] = o->compute_s;
        v[2] = o->comm_s;
        v[3] = o->wait_s;
        v[4] = o->cpu_s;
    }
    out[BL_CONTROLLER_RANK_DOUBLES * (size_t)P] = c->window_step_s;
    out[BL_CONTROLLER_RANK_DOUBLES * (size_t)P + 1] = (double)c->window_steps;
}

int bl_controller_window_load(bl_controller_t *c, const double *in)
{
    size_t n = BL_CONTROLLER_WINDOW_DOUBLES(c->rt->size);
    for (size_t i = 0; i < n; i++) {
        if (!(in[i] >= 0.0) || !(in[i] < 1e300)) {
            return 0;
        }
    }
    if (in[n - 1] > (double)INT_MAX) {
        return 0;
    }
    int P = c->rt->size;
    for (int r = 0; r < P; r++) {
        const double *v = in + BL_CONTROLLER_RANK_DOUBLES * (size_t)r;
        c->window[r] = (bl_rank_obs_t){
            .samples = v[0], .compute_s = v[1], .comm_s = v[2], .wait_s = v[3], .cpu_s = v[4]};
    }
    c->window_step_s = in[BL_CONTROLLER_RANK_DOUBLES * (size_t)P];
    c->window_steps = (int)in[BL_CONTROLLER_RANK_DOUBLES * (size_t)P + 1];
    return 1;
}

/* Rank 0: decides over the window, raises alerts for the detected speed
 * changes, and empties the window. */
static void decide(bl_controller_t *c, long step, const long *shards)
{
    int P = c->rt->size;
    for (int r = 0; r < P; r++) {
        c->current[r] = shards[r];
    }
    double step_s = c->window_steps > 0 ? c->window_step_s / c->window_steps : 0.0;
    bl_decision_t d = {0};
    if (c->window_steps == 0 ||
        bl_policy_decide(c->policy, c->window, step_s, c->current, c->next, &d) != 0) {
        memcpy(c->next, c->current, (size_t)P * sizeof *c->next);
        d.action = "hold";
    }
    c->last = d;
    c->decided = 1;
    c->decided_at = step;
    c->events[0] = '\0';
    if (d.speed_changes > 0) {
        /* Straggler alerts: the estimator saw a rank's speed shift beyond noise
         * in this window. */
        bl_speed_change_t changes[8];
        int n = bl_estimator_last_changes(bl_policy_estimator(c->policy), changes, 8);
        size_t used = 0;
        for (int i = 0; i < n && i < 8; i++) {
            const bl_speed_change_t *ch = &changes[i];
            const char *host = c->hosts + (size_t)ch->rank * BL_HOST_CHARS;
            if (ch->factor < 1.0) {
                bl_log(c->rt, BL_LOG_WARN, "rank %d on %s is %.1f× slower since step %ld", ch->rank,
                       host, 1.0 / ch->factor, step + 1 - c->window_steps);
            } else {
                bl_log(c->rt, BL_LOG_WARN, "rank %d on %s is %.1f× faster since step %ld", ch->rank,
                       host, ch->factor, step + 1 - c->window_steps);
            }
            used += (size_t)snprintf(c->events + used, sizeof c->events - used,
                                     "%s{\"rank\":%d,\"host\":\"%s\",\"speed_factor\":%.3f}",
                                     i == 0 ? "" : ",", ch->rank, host, ch->factor);
            if (used >= sizeof c->events) {
                break;
            }
        }
    }
    memset(c->window, 0, (size_t)P * sizeof *c->window);
    c->window_step_s = 0.0;
    c->window_steps = 0;
}

bl_status_t bl_controller_boundary(bl_controller_t *c, long step, const long *shards, long *next,
                                   int *changed)
{
    *changed = 0;
    if ((step + 1) % c->every != 0) {
        return BL_OK;
    }
    int P = c->rt->size;
    if (c->rt->rank == 0) {
        decide(c, step, shards);
        c->message[0] = 0;
        for (int r = 0; r < P; r++) {
            c->message[1 + r] = c->next[r];
            c->message[0] |= c->next[r] != shards[r];
        }
    }
    /* Only rank 0 decides; every rank applies what it broadcasts. */
    bl_status_t st = bl_bcast_bounded(c->rt, c->message, P + 1, MPI_LONG, 0, c->rt->comm,
                                      "the broadcast of the shard plan");
    if (st != BL_OK) {
        return st;
    }
    if (c->message[0]) {
        memcpy(next, c->message + 1, (size_t)P * sizeof *next);
        *changed = 1;
    }
    return BL_OK;
}

void bl_controller_describe(const bl_controller_t *c, char *out, size_t n)
{
    out[0] = '\0';
    if (!c->decided) {
        return;
    }
    snprintf(out, n,
             "\"decision\":{\"after_step\":%ld,\"action\":\"%s\",\"changed\":%d,"
             "\"predicted_step_s\":%.6g,\"optimal_step_s\":%.6g},\"events\":[%s]",
             c->decided_at, c->last.action ? c->last.action : "hold", c->last.changed,
             c->last.predicted_step_s, c->last.optimal_step_s, c->events);
}
