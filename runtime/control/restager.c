/* The stage controller (restager.h): per-layer telemetry windows, stage-map
 * decisions and the scripted plan. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "consistency.h"
#include "controller.h" /* BL_CONTROL_WARMUP_STEPS */
#include "restager.h"
#include "wait.h"

static int uses_policy(const bl_train_config_t *cfg)
{
    return cfg->balance.policy != NULL && strcmp(cfg->balance.policy, "none") != 0;
}

bl_status_t bl_restager_check_plan(bl_runtime_t *rt, const bl_train_config_t *cfg, int layers)
{
    int S = cfg->pipeline.stages, n = cfg->balance.stage_plan_count;
    if (!(cfg->balance.repartition_horizon > 0.0) || !isfinite(cfg->balance.repartition_horizon)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "repartition horizon %g steps must be positive and finite",
                       cfg->balance.repartition_horizon);
    }
    if (!(cfg->balance.repartition_threshold >= 0.0) ||
        !(cfg->balance.repartition_threshold < 1.0)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "repartition threshold %g must be in [0, 1)",
                       cfg->balance.repartition_threshold);
    }
    if (n == 0) {
        return BL_OK;
    }
    if (n < 0 || cfg->balance.stage_plan_steps == NULL || cfg->balance.stage_plan_first == NULL) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "stage plan: %d maps given with %s arrays", n,
                       cfg->balance.stage_plan_steps == NULL ||
                               cfg->balance.stage_plan_first == NULL
                           ? "missing"
                           : "its");
    }
    if (S < 2) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "a stage plan needs a pipeline (2 or more stages); this job has %d", S);
    }
    int *map = bl_mem_array(bl_rt_allocator(rt), (size_t)S + 1, sizeof *map);
    if (map == NULL) {
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for a %d-stage map", S);
    }
    bl_status_t st = BL_OK;
    for (int k = 0; k < n && st == BL_OK; k++) {
        long step = cfg->balance.stage_plan_steps[k];
        if (step < 0 || (k > 0 && step <= cfg->balance.stage_plan_steps[k - 1])) {
            st = bl_fail(rt, BL_ERR_INVALID_ARG,
                         "stage plan: map %d after step %ld: steps must be >= 0 and ascending", k,
                         step);
            break;
        }
        st = bl_layout_check_map(rt, layers, S,
                                 cfg->balance.stage_plan_first + (size_t)k * (size_t)S, S, map);
        if (st != BL_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", bl_last_error(rt));
            st = bl_fail(rt, st, "stage plan: the map after step %ld: %s", step, why);
        }
    }
    bl_mem_free(bl_rt_allocator(rt), map);
    return st;
}

uint64_t bl_restager_digest(const bl_train_config_t *cfg)
{
    uint64_t d =
        bl_digest(&cfg->balance.repartition_horizon, sizeof cfg->balance.repartition_horizon);
    d = bl_seed_mix(d, bl_digest(&cfg->balance.repartition_threshold,
                                 sizeof cfg->balance.repartition_threshold));
    d = bl_seed_mix(d, (uint64_t)cfg->balance.stage_plan_count);
    if (cfg->balance.stage_plan_count > 0) {
        size_t n = (size_t)cfg->balance.stage_plan_count;
        d = bl_seed_mix(
            d, bl_digest(cfg->balance.stage_plan_steps, n * sizeof *cfg->balance.stage_plan_steps));
        d = bl_seed_mix(
            d, bl_digest(cfg->balance.stage_plan_first,
                         n * (size_t)cfg->pipeline.stages * sizeof *cfg->balance.stage_plan_first));
    }
    return d;
}

/* Rank 0: creates the stage policy from the model's shape and the config. */
static bl_status_t create_policy(bl_restager_t *r, const bl_train_config_t *cfg,
                                 const bl_model_t *m)
{
    const bl_allocator_t *a = bl_rt_allocator(r->rt);
    int L = r->layers;
    double *arrays = bl_mem_array(a, 3 * (size_t)L, sizeof *arrays);
    if (arrays == NULL) {
        return bl_fail(r->rt, BL_ERR_NO_MEM, "no memory for the costs of %d layers", L);
    }
    double *anchor = arrays, *layer_bytes = arrays + L, *edge_bytes = arrays + 2 * L;
    /* A pipeline's shard of rows sends activations forward and gradients back
     * across the edge into layer i (edge_bytes). */
    double rows = (double)cfg->batch / (double)r->replicas;
    for (int i = 0; i < L; i++) {
        anchor[i] = bl_layer_cost(m, i);
        layer_bytes[i] = 2.0 * (double)m->layers[i].param_count * sizeof(float);
        edge_bytes[i] = 2.0 * rows * (double)m->layers[i].in_features * sizeof(float);
    }
    bl_restage_config_t rc = {.kind = (bl_policy_kind_t)bl_policy_parse(cfg->balance.policy),
                              .layers = L,
                              .stages = r->stages,
                              .anchor = anchor,
                              .layer_bytes = layer_bytes,
                              .edge_bytes = edge_bytes,
                              .bandwidth = BL_RESTAGE_BANDWIDTH,
                              .latency_s = BL_RESTAGE_LATENCY,
                              .horizon_steps = cfg->balance.repartition_horizon,
                              .threshold = cfg->balance.repartition_threshold,
                              .seed = cfg->seed,
                              .estimator = (bl_estimator_params_t)BL_ESTIMATOR_PARAMS_DEFAULT};
    bl_part_allocator_t pa = bl_rt_part_allocator(r->rt);
    char err[256] = "";
    bl_status_t st = BL_OK;
    if ((int)rc.kind < 0) {
        st = bl_fail(r->rt, BL_ERR_INVALID_ARG,
                     "policy '%s' is not one of static, proportional, bandit, rl",
                     cfg->balance.policy);
    } else if (bl_restage_create(&rc, &pa, &r->policy, err, sizeof err) != 0) {
        st = bl_fail(r->rt, BL_ERR_INVALID_ARG, "stage policy %s: %s", cfg->balance.policy, err);
    }
    bl_mem_free(a, arrays);
    return st;
}

bl_status_t bl_restager_init(bl_restager_t *r, bl_runtime_t *rt, const bl_train_config_t *cfg,
                             const bl_model_t *m, const bl_layout_t *l)
{
    const bl_allocator_t *a = bl_rt_allocator(rt);
    memset(r, 0, sizeof *r);
    r->rt = rt;
    r->note_step = -1;
    r->stages = l->stages;
    r->layers = m->layer_count;
    r->replicas = l->replicas;
    r->every = cfg->balance.rebalance_every;
    r->deciding = l->stages > 1 && uses_policy(cfg);
    r->logging = l->stages > 1 && cfg->diagnostics.telemetry_path != NULL;
    r->plan_count = cfg->balance.stage_plan_count;
    r->on = r->deciding || r->logging || r->plan_count > 0;
    r->skip_next = BL_CONTROL_WARMUP_STEPS; /* the warm-up pays for first touches */
    if (!r->on) {
        return BL_OK;
    }
    int S = r->stages, L = r->layers;
    bl_status_t st = BL_OK;
    r->window = bl_mem_array_zeroed(a, 2 * (size_t)L, sizeof *r->window);
    r->message = bl_mem_array(a, (size_t)S + 2, sizeof *r->message);
    if (r->plan_count > 0) {
        r->plan_steps = bl_mem_array(a, (size_t)r->plan_count, sizeof *r->plan_steps);
        r->plan_first = bl_mem_array(a, (size_t)r->plan_count * (size_t)S, sizeof *r->plan_first);
        if (r->plan_steps != NULL && r->plan_first != NULL) {
            memcpy(r->plan_steps, cfg->balance.stage_plan_steps,
                   (size_t)r->plan_count * sizeof *r->plan_steps);
            memcpy(r->plan_first, cfg->balance.stage_plan_first,
                   (size_t)r->plan_count * (size_t)S * sizeof *r->plan_first);
        }
    }
    if (rt->rank == 0) {
        r->layer_s = bl_mem_array(a, (size_t)L, sizeof *r->layer_s);
        r->note_cap = 1024 + 64 * (size_t)L;
        r->note = bl_mem_array(a, r->note_cap, 1);
    }
    if (r->window == NULL || r->message == NULL ||
        (r->plan_count > 0 && (r->plan_steps == NULL || r->plan_first == NULL)) ||
        (rt->rank == 0 && (r->layer_s == NULL || r->note == NULL))) {
        st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for the stage controller of %d layers", L);
    }
    if (st == BL_OK && r->deciding && rt->rank == 0) {
        st = create_policy(r, cfg, m);
    }
    /* Every rank learns whether every rank could set up. */
    st = bl_agree(rt, st, BL_ERR_INVALID_ARG, "setting up the stage controller");
    if (st != BL_OK) {
        bl_restager_free(r);
    }
    return st;
}

void bl_restager_free(bl_restager_t *r)
{
    if (r->rt == NULL) {
        return;
    }
    const bl_allocator_t *a = bl_rt_allocator(r->rt);
    bl_restage_destroy(r->policy);
    bl_mem_free(a, r->plan_steps);
    bl_mem_free(a, r->plan_first);
    bl_mem_free(a, r->window);
    bl_mem_free(a, r->layer_s);
    bl_mem_free(a, r->message);
    bl_mem_free(a, r->note);
    memset(r, 0, sizeof *r);
}

void bl_restager_observe(bl_restager_t *r, const bl_stage_t *s, double step_s)
{
    if (!r->on) {
        return;
    }
    if (r->skip_next > 0) {
        r->skip_next--;
        return;
    }
    for (int i = s->first; i < s->last; i++) {
        r->window[i] += s->forward_s[i];
        r->window[r->layers + i] += s->backward_s[i];
    }
    r->window_step_s += step_s;
    r->window_steps++;
}

bl_status_t bl_restager_gather_windows(bl_restager_t *r, double *out)
{
    if (!r->on) {
        return BL_OK;
    }
    const bl_allocator_t *a = bl_rt_allocator(r->rt);
    size_t n = BL_RESTAGER_WINDOW_DOUBLES(r->layers);
    double *mine = bl_mem_array(a, n, sizeof *mine);
    bl_status_t st = BL_OK;
    if (mine == NULL) {
        st = bl_fail(r->rt, BL_ERR_NO_MEM, "no memory for a window of %d layers", r->layers);
    }
    /* A rank without memory still takes part, since the others wait in the
     * gather. */
    st = bl_agree(r->rt, st, BL_ERR_NO_MEM, "saving the stage controller's windows");
    if (st != BL_OK) {
        bl_mem_free(a, mine);
        return st;
    }
    memcpy(mine, r->window, 2 * (size_t)r->layers * sizeof *mine);
    mine[n - 3] = r->window_step_s;
    mine[n - 2] = (double)r->window_steps;
    mine[n - 1] = (double)r->skip_next;
    MPI_Request req = MPI_REQUEST_NULL;
    const char *op = "the gather of the stage controller's windows";
    int rc = MPI_Igather(mine, (int)n, MPI_DOUBLE, out, (int)n, MPI_DOUBLE, 0, r->rt->comm, &req);
    st = bl_collective_posted(r->rt, rc, &req, op, r->rt->comm);
    bl_mem_free(a, mine);
    return st;
}

bl_status_t bl_restager_scatter_windows(bl_restager_t *r, const double *in, int have)
{
    if (!r->on) {
        return BL_OK;
    }
    const char *op = "the stage controller's saved windows";
    bl_status_t st = bl_bcast_bounded(r->rt, &have, 1, MPI_INT, 0, r->rt->comm, op);
    if (st != BL_OK || !have) {
        return st;
    }
    const bl_allocator_t *a = bl_rt_allocator(r->rt);
    size_t n = BL_RESTAGER_WINDOW_DOUBLES(r->layers);
    double *mine = bl_mem_array(a, n, sizeof *mine);
    st = bl_agree(r->rt,
                  mine != NULL ? BL_OK
                               : bl_fail(r->rt, BL_ERR_NO_MEM,
                                         "no memory for a window of %d layers", r->layers),
                  BL_ERR_NO_MEM, op);
    if (st != BL_OK) {
        bl_mem_free(a, mine);
        return st;
    }
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Iscatter(in, (int)n, MPI_DOUBLE, mine, (int)n, MPI_DOUBLE, 0, r->rt->comm, &req);
    st = bl_collective_posted(r->rt, rc, &req, op, r->rt->comm);
    if (st != BL_OK) {
        bl_mem_free(a, mine);
        return st;
    }
    int ok = mine[n - 2] <= (double)INT_MAX && (mine[n - 1] == 0.0 || mine[n - 1] == 1.0);
    for (size_t i = 0; i < n && ok; i++) {
        ok = mine[i] >= 0.0 && mine[i] < 1e300;
    }
    memset(r->window, 0, 2 * (size_t)r->layers * sizeof *r->window);
    r->window_step_s = 0.0;
    r->window_steps = 0;
    if (ok) {
        memcpy(r->window, mine, 2 * (size_t)r->layers * sizeof *mine);
        r->window_step_s = mine[n - 3];
        r->window_steps = (int)mine[n - 2];
        r->skip_next = (int)mine[n - 1];
    }
    bl_mem_free(a, mine);
    return BL_OK;
}

/* Rank 0: appends formatted text to the note (truncated when it is full). */
static void note_add(bl_restager_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_add(bl_restager_t *r, const char *fmt, ...)
{
    size_t used = strlen(r->note);
    if (used + 1 >= r->note_cap) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->note + used, r->note_cap - used, fmt, ap);
    va_end(ap);
}

/* Rank 0: appends <sep>"name":[v0,v1,...] to the note. */
static void note_array(bl_restager_t *r, const char *sep, const char *name, const double *v, int n)
{
    note_add(r, "%s\"%s\":[", sep, name);
    for (int i = 0; i < n; i++) {
        note_add(r, "%s%.6g", i > 0 ? "," : "", v[i]);
    }
    note_add(r, "]");
}

static void note_begin(bl_restager_t *r, long step)
{
    if (r->note_step != step) {
        r->note[0] = '\0';
        r->note_step = step;
    }
}

/* Rank 0, at a window's end: writes the window's per-layer means (over the
 * job's sums, which cover each layer's D replicas) into the note, and the map
 * to run next into next: the policy's, or a copy of first when no policy
 * decides. */
static void decide(bl_restager_t *r, long step, const double *sums, const int *first, int *next)
{
    int L = r->layers, S = r->stages;
    double per = (double)r->replicas * (double)r->window_steps;
    note_begin(r, step);
    note_add(r, "%s\"layers\":{", r->note[0] != '\0' ? "," : "");
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < L; i++) {
            r->layer_s[i] = sums[k * L + i] / per;
        }
        note_array(r, k == 0 ? "" : ",", k == 0 ? "forward_s" : "backward_s", r->layer_s, L);
    }
    note_add(r, "}");
    memcpy(next, first, (size_t)(S + 1) * sizeof *next);
    if (!r->deciding) {
        return;
    }
    for (int i = 0; i < L; i++) {
        r->layer_s[i] = (sums[i] + sums[L + i]) / per;
    }
    bl_restage_obs_t obs = {
        .first = first, .layer_s = r->layer_s, .step_s = r->window_step_s / r->window_steps};
    bl_restage_decision_t d;
    bl_restage_decide(r->policy, &obs, next, &d);
    r->last_action = d.action;
    note_add(r,
             ",\"repartition\":{\"after_step\":%ld,\"action\":\"%s\",\"changed\":%d,"
             "\"current_s\":%.6g,\"best_s\":%.6g,\"gain_s\":%.6g,\"move_bytes\":%.0f,"
             "\"move_s\":%.6g,\"payback_steps\":%.6g}",
             step, d.action, d.changed, d.current_s, d.best_s, d.gain_s, d.move_bytes, d.move_s,
             isfinite(d.payback_steps) ? d.payback_steps : -1.0);
}

/* Returns the scripted map for after `step`, or NULL. */
static const int *scripted(bl_restager_t *r, long step)
{
    while (r->plan_next < r->plan_count && r->plan_steps[r->plan_next] < step) {
        r->plan_next++; /* steps already past (in a later run of the same trainer) */
    }
    if (r->plan_next < r->plan_count && r->plan_steps[r->plan_next] == step) {
        return r->plan_first + (size_t)r->plan_next++ * (size_t)r->stages;
    }
    return NULL;
}

bl_status_t bl_restager_boundary(bl_restager_t *r, long step, const int *first, int *next,
                                 int *changed)
{
    int S = r->stages, L = r->layers;
    *changed = 0;
    memcpy(next, first, (size_t)(S + 1) * sizeof *next);
    if (!r->on) {
        return BL_OK;
    }
    /* Every rank knows the plan, so a scripted map needs no message. */
    const int *plan = scripted(r, step);
    if (plan != NULL) {
        memcpy(next, plan, (size_t)S * sizeof *next);
        next[S] = L;
        *changed = memcmp(next, first, (size_t)(S + 1) * sizeof *next) != 0;
        if (r->rt->rank == 0) {
            note_begin(r, step);
            note_add(r,
                     "%s\"repartition\":{\"after_step\":%ld,\"action\":\"scripted\","
                     "\"changed\":%d}",
                     r->note[0] != '\0' ? "," : "", step, *changed);
        }
        return BL_OK;
    }
    /* A policy's first decision comes after BL_RESTAGE_FIRST_WINDOW
     * observed steps (every rank counts the same ones); the next every
     * `every` steps. */
    const int due = r->deciding && !r->decided
                        ? r->window_steps >= bl_restage_first_window(r->every)
                        : (step + 1) % r->every == 0;
    if (!due || !(r->deciding || r->logging) || r->window_steps == 0) {
        return BL_OK;
    }
    r->decided = 1;
    /* The window's layer times reach rank 0 (every layer's from the D ranks of
     * its stage); the others contribute theirs and wait for the map. */
    const bl_allocator_t *a = bl_rt_allocator(r->rt);
    double *sums = NULL;
    if (r->rt->rank == 0) {
        sums = bl_mem_array(a, 2 * (size_t)L, sizeof *sums);
        if (sums == NULL) {
            return bl_fail(r->rt, BL_ERR_NO_MEM, "no memory for the times of %d layers", L);
        }
    }
    bl_status_t st = bl_reduce_bounded(r->rt, r->window, sums, 2 * L, MPI_DOUBLE, MPI_SUM, 0,
                                       r->rt->comm, "the reduction of layer times");
    if (st == BL_OK && r->rt->rank == 0) {
        decide(r, step, sums, first, next);
        r->message[0] = memcmp(next, first, (size_t)(S + 1) * sizeof *next) != 0;
        memcpy(r->message + 1, next, (size_t)(S + 1) * sizeof *next);
    }
    bl_mem_free(a, sums);
    memset(r->window, 0, 2 * (size_t)L * sizeof *r->window);
    r->window_step_s = 0.0;
    r->window_steps = 0;
    if (st == BL_OK && r->deciding) {
        st = bl_bcast_bounded(r->rt, r->message, S + 2, MPI_INT, 0, r->rt->comm,
                              "the broadcast of the stage map");
    }
    if (st != BL_OK) {
        return st;
    }
    if (r->deciding && r->message[0]) {
        memcpy(next, r->message + 1, (size_t)(S + 1) * sizeof *next);
        *changed = 1;
    }
    return BL_OK;
}

void bl_restager_moved(bl_restager_t *r, long step, const int *from, const int *to,
                       const bl_migration_t *mig, double seconds)
{
    r->skip_next = 1; /* new buffers, so the next step's times are not the stages' speeds */
    memset(r->window, 0, 2 * (size_t)r->layers * sizeof *r->window);
    r->window_step_s = 0.0;
    r->window_steps = 0;
    if (r->rt->rank != 0) {
        return;
    }
    bl_restage_migrated(r->policy, mig->pipeline_bytes, seconds);
    note_begin(r, step);
    note_add(r, "%s\"migration\":{\"after_step\":%ld,\"layers\":[", r->note[0] != '\0' ? "," : "",
             step);
    int n = 0;
    for (int i = 0; i < r->layers; i++) {
        int was = bl_layout_stage_of(from, r->stages, i),
            now = bl_layout_stage_of(to, r->stages, i);
        if (was != now) {
            note_add(r, "%s{\"layer\":%d,\"from\":%d,\"to\":%d}", n++ > 0 ? "," : "", i, was, now);
        }
    }
    note_add(r, "],\"bytes\":%.0f,\"seconds\":%.6g,\"stage_first\":", mig->pipeline_bytes, seconds);
    for (int s = 0; s <= r->stages; s++) {
        note_add(r, "%s%d", s == 0 ? "[" : ",", to[s]);
    }
    note_add(r, "]}");
}

double bl_restager_nominal_move_s(double bytes)
{
    return BL_RESTAGE_LATENCY + bytes / BL_RESTAGE_BANDWIDTH;
}

const char *bl_restager_note(const bl_restager_t *r, long step)
{
    return r->note != NULL && r->note_step == step && r->note[0] != '\0' ? r->note : NULL;
}
