/* The language-model trainer's stage controller (lm_impl.h): with
 * pipelines and a policy, every rank times its units over a control window
 * of K steps; at the window's end rank 0 feeds the units' mean seconds to
 * the stage-map policy (partition/restage.h), broadcasts the map it
 * chooses, and when it changes every pipeline moves the units whose stage
 * changes, with their parameters and AdamW moments (lm_pipe.h). Moves never
 * change the math: the units compute the same sums wherever they run.
 * Under ZeRO-1 each stage's replicas first gather the stage's moments (the
 * moving units' travel from them), and after the move each takes its
 * slices of its stage's new units. */
#include <string.h>

#include "controller.h" /* BL_CONTROL_WARMUP_STEPS */
#include "lm_impl.h"
#include "restager.h" /* BL_RESTAGE_BANDWIDTH, BL_RESTAGE_LATENCY */
#include "wait.h"

bl_status_t bl_lm_lend_moments(bl_lm_trainer_t *t)
{
    if (t->zero == NULL || t->grid.layout.stages < 2) {
        return BL_OK;
    }
    float *m = NULL, *v = NULL;
    bl_status_t st = bl_agree(t->rt, bl_lm_zero_gather_moments(t->zero, -1, &m, &v), BL_ERR_MPI,
                              "gathering the stages' AdamW moments");
    if (st == BL_OK) {
        t->model->adam_m = m;
        t->model->adam_v = v;
    }
    return st;
}

void bl_lm_return_moments(bl_lm_trainer_t *t)
{
    if (t->zero == NULL) {
        return;
    }
    const bl_allocator_t *a = bl_rt_allocator(t->rt);
    bl_mem_free(a, t->model->adam_m);
    bl_mem_free(a, t->model->adam_v);
    t->model->adam_m = t->model->adam_v = NULL;
}

/* Rank 0: the policy, from the units' multiply-adds and sizes. */
static bl_status_t create_policy(bl_lm_trainer_t *t, bl_lm_restager_t *r)
{
    const bl_lm_config_t *c = &t->cfg;
    const bl_gpt2_config_t *m = &t->model->config;
    const int U = r->units, S = t->grid.layout.stages;
    double anchor[U], layer_bytes[U], edge_bytes[U];
    const double C = m->channels, T = c->seq_len;
    /* A pipeline's rows cross every cut forward (activations) and back
     * (gradients), 4 bytes each. */
    const double rows = (double)c->batch / t->grid.layout.replicas * T;
    for (int u = 0; u < U; u++) {
        bl_gpt2_range_t ranges[BL_GPT2_MAX_RANGES];
        const int n = bl_gpt2_unit_ranges(t->model, u, u + 1, ranges);
        double params = 0.0;
        for (int k = 0; k < n; k++) {
            params += (double)ranges[k].count;
        }
        anchor[u] = bl_lm_unit_cost(t->model, c->seq_len, u);
        layer_bytes[u] = 3.0 * params * sizeof(float); /* parameters and two moments */
        edge_bytes[u] = 2.0 * rows * C * sizeof(float);
    }
    bl_restage_config_t rc = {.kind = (bl_policy_kind_t)bl_policy_parse(c->balance.policy),
                              .layers = U,
                              .stages = S,
                              .anchor = anchor,
                              .layer_bytes = layer_bytes,
                              .edge_bytes = edge_bytes,
                              .bandwidth = BL_RESTAGE_BANDWIDTH,
                              .latency_s = BL_RESTAGE_LATENCY,
                              .horizon_steps = c->balance.repartition_horizon,
                              .threshold = c->balance.repartition_threshold,
                              .seed = c->seed,
                              .estimator = (bl_estimator_params_t)BL_ESTIMATOR_PARAMS_DEFAULT};
    bl_part_allocator_t pa = bl_rt_part_allocator(t->rt);
    char err[256] = "";
    if ((int)rc.kind < 0) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG,
                       "policy '%s' is not one of static, proportional, bandit, rl",
                       c->balance.policy);
    }
    if (bl_restage_create(&rc, &pa, &r->policy, err, sizeof err) != 0) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG, "stage policy %s: %s", c->balance.policy, err);
    }
    return BL_OK;
}

bl_status_t bl_lm_restager_init(bl_lm_trainer_t *t)
{
    bl_lm_restager_t *r = &t->restager;
    const bl_lm_config_t *c = &t->cfg;
    memset(r, 0, sizeof *r);
    r->on = t->grid.layout.stages > 1 && c->balance.policy != NULL &&
            strcmp(c->balance.policy, "none") != 0;
    r->units = t->model->config.num_layers + 2;
    r->skip = BL_CONTROL_WARMUP_STEPS; /* the first steps pay for first touches */
    if (!r->on) {
        return BL_OK;
    }
    const bl_allocator_t *a = bl_rt_allocator(t->rt);
    r->unit_s = bl_mem_array_zeroed(a, (size_t)r->units, sizeof *r->unit_s);
    r->message = bl_mem_array(a, (size_t)t->grid.layout.stages + 2, sizeof *r->message);
    bl_status_t st = r->unit_s == NULL || r->message == NULL
                         ? bl_fail(t->rt, BL_ERR_NO_MEM, "no memory for the stage controller")
                         : BL_OK;
    if (st == BL_OK && t->rt->rank == 0) {
        st = create_policy(t, r);
    }
    st = bl_agree(t->rt, st, BL_ERR_INVALID_ARG, "the stage controller's set-up");
    if (st == BL_OK) {
        t->grid.unit_s = r->unit_s;
    }
    return st;
}

void bl_lm_restager_free(bl_lm_trainer_t *t)
{
    bl_lm_restager_t *r = &t->restager;
    if (t->rt != NULL) {
        bl_mem_free(bl_rt_allocator(t->rt), r->unit_s);
        bl_mem_free(bl_rt_allocator(t->rt), r->message);
    }
    bl_restage_destroy(r->policy);
    memset(r, 0, sizeof *r);
    t->grid.unit_s = NULL;
}

/* Rank 0 decides from the window's mean unit seconds; every rank gets
 * message = [changed, the next map (S + 1)]. Collective. */
static bl_status_t decide(bl_lm_trainer_t *t, bl_lm_restager_t *r)
{
    bl_runtime_t *rt = t->rt;
    const int S = t->grid.layout.stages, U = r->units;
    double sums[U];
    bl_status_t st = bl_reduce_bounded(rt, r->unit_s, sums, U, MPI_DOUBLE, MPI_SUM, 0, rt->comm,
                                       "the reduce of the units' seconds");
    if (st == BL_OK && rt->rank == 0) {
        /* Each unit ran on one stage of each of the D pipelines. */
        const double per = 1.0 / ((double)t->grid.layout.replicas * r->steps);
        for (int u = 0; u < U; u++) {
            sums[u] *= per;
        }
        bl_restage_obs_t obs = {
            .first = t->plan.first, .layer_s = sums, .step_s = r->step_s / r->steps};
        bl_restage_decision_t d;
        bl_restage_decide(r->policy, &obs, r->message + 1, &d);
        r->message[0] = d.changed;
        r->last_action = d.action;
    }
    st = bl_agree(rt, st, BL_ERR_MPI, "the stage controller's decision");
    return st == BL_OK ? bl_bcast_bounded(rt, r->message, S + 2, MPI_INT, 0, rt->comm,
                                          "the broadcast of the next stage map")
                       : st;
}

bl_status_t bl_lm_restager_after_step(bl_lm_trainer_t *t, double step_s, bl_step_info_t *info)
{
    bl_lm_restager_t *r = &t->restager;
    info->stages_moved = 0;
    if (!r->on) {
        return BL_OK;
    }
    if (r->skip > 0) {
        r->skip--;
        memset(r->unit_s, 0, (size_t)r->units * sizeof *r->unit_s);
        return BL_OK;
    }
    r->step_s += step_s;
    /* The first decision comes after BL_RESTAGE_FIRST_WINDOW observed
     * steps, the next every rebalance_every. */
    const int every = t->cfg.balance.rebalance_every;
    const int window = r->decided ? every : bl_restage_first_window(every);
    if (++r->steps < window) {
        return BL_OK;
    }
    r->decided = 1;
    bl_status_t st = decide(t, r);
    if (st == BL_OK && r->message[0]) {
        /* A stage-local stage takes its new units' memory: a map that would
         * put a rank over its limit is not run. */
        int over = -1;
        st = bl_lm_map_fits(t, r->message + 1, &over);
        if (st == BL_OK && over >= 0) {
            char to[128];
            bl_plan_format_map(r->message + 1, t->grid.layout.stages, to, sizeof to);
            bl_log(t->rt, BL_LOG_INFO,
                   "restage: after step %ld the move to %s is not made: rank %d would exceed its "
                   "memory limit",
                   t->step - 1, to, over);
            r->message[0] = 0;
        }
    }
    const int S = t->grid.layout.stages;
    if (st == BL_OK && r->message[0]) {
        const int *next = r->message + 1;
        double bytes = 0.0, start = bl_now_seconds();
        /* Under stage-local memory the stage holds the run from the first
         * to the last of its old and new units while they move (units that
         * pass over it on their way between other stages are held too, but
         * never touched, so they take no memory), then its new ones alone. */
        const int stage = t->grid.layout.stage;
        const int lo = next[stage] < t->grid.first ? next[stage] : t->grid.first;
        const int hi = next[stage + 1] > t->grid.last ? next[stage + 1] : t->grid.last;
        st = bl_agree(t->rt, bl_lm_hold_units(t, lo, hi), BL_ERR_NO_MEM,
                      "holding the moving units' memory");
        /* Under ZeRO-1 every replica gathers its stage's whole moments
         * first, so that the moving units' travel with their parameters,
         * and takes its slices of its new units' from them after. */
        if (st == BL_OK) {
            st = bl_lm_lend_moments(t);
        }
        if (st == BL_OK) {
            st = bl_lm_grid_move(&t->grid, t->model, t->plan.first, next, t->stage_local, &bytes);
        }
        if (st == BL_OK && t->zero != NULL) {
            st = bl_lm_zero_restage(t->zero, next[stage], next[stage + 1], t->model->adam_m,
                                    t->model->adam_v);
        }
        bl_lm_return_moments(t);
        /* Every rank switches maps, or none does; the policy learns the
         * slowest rank's seconds. */
        st = bl_agree(t->rt, st, BL_ERR_MISMATCH, "moving units between stages");
        double seconds = bl_now_seconds() - start;
        if (st == BL_OK) {
            st = bl_allreduce_bounded(t->rt, MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX,
                                      t->rt->comm, "the all-reduce of the move's seconds");
        }
        for (int u = 0; u < r->units; u++) {
            info->stages_moved +=
                bl_layout_stage_of(t->plan.first, S, u) != bl_layout_stage_of(next, S, u);
        }
        if (st == BL_OK) {
            char from[128], to[128];
            bl_plan_format_map(t->plan.first, S, from, sizeof from);
            bl_plan_format_map(next, S, to, sizeof to);
            bl_log(t->rt, BL_LOG_INFO,
                   "restage: after step %ld the stages' units move from %s to %s (%d units, %.0f "
                   "bytes a pipeline, %.3f s)",
                   t->step - 1, from, to, info->stages_moved, bytes, seconds);
            if (r->policy != NULL) {
                bl_restage_migrated(r->policy, bytes, seconds);
            }
            memcpy(t->plan.first, next, ((size_t)S + 1) * sizeof *next);
            bl_lm_grid_set_map(&t->grid, t->model, t->plan.first);
            st = bl_agree(t->rt, bl_lm_hold_stage(t), BL_ERR_NO_MEM,
                          "giving back the moved units' memory");
            t->plan.version++;
            info->plan_version = t->plan.version;
        }
    }
    if (t->rt->rank == 0 && r->last_action != NULL) {
        info->decision = r->last_action;
    }
    memset(r->unit_s, 0, (size_t)r->units * sizeof *r->unit_s);
    r->step_s = 0.0;
    r->steps = 0;
    return st;
}
