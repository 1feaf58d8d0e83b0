/* The trainer's set-up (trainer_impl.h): the config a caller meant and
 * its checks, the first shard plan, and what every rank must agree on
 * before step 0. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "consistency.h"
#include "partition.h"
#include "trainer_impl.h"

/* The checks that tie a dataset to the model. */
bl_status_t bl_trainer_check_dataset(bl_runtime_t *rt, const bl_model_t *m, const bl_dataset_t *d,
                                     const char *role)
{
    if (m->rt != rt || d->rt != rt) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "the model and the %s set (%s) must come from the trainer's runtime", role,
                       d->name);
    }
    if (d->features != m->in_features) {
        return bl_fail(rt, BL_ERR_MISMATCH,
                       "%s set %s has %d features per sample but the model's input width is %d",
                       role, d->name, d->features, m->in_features);
    }
    if (d->classes > bl_model_out_features(m)) {
        return bl_fail(rt, BL_ERR_MISMATCH,
                       "%s set %s has %d classes but the model's last layer has %d outputs", role,
                       d->name, d->classes, bl_model_out_features(m));
    }
    return BL_OK;
}

static bl_status_t check_config(bl_runtime_t *rt, const bl_train_config_t *c)
{
    if (c->batch <= 0) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "batch %d must be positive", c->batch);
    }
    if (!(c->lr > 0.0f) || !(c->momentum >= 0.0f) || !(c->weight_decay >= 0.0f) ||
        !isfinite(c->lr) || !(c->momentum < 1.0f) || !isfinite(c->weight_decay)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "lr %g must be positive and finite, momentum %g in [0, 1), weight decay %g "
                       "non-negative and finite",
                       (double)c->lr, (double)c->momentum, (double)c->weight_decay);
    }
    if (!(c->timeout_s >= 0.0) || !isfinite(c->timeout_s)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "timeout %g s must be finite and >= 0 (0: none)",
                       c->timeout_s);
    }
    if (!(c->bucket_mb > 0.0) || !(c->bucket_mb <= 4096.0)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "bucket size %g MiB must be in (0, 4096]",
                       c->bucket_mb);
    }
    if (c->schedule != BL_SCHEDULE_GPIPE && c->schedule != BL_SCHEDULE_1F1B) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "pipeline schedule %d is neither GPipe (%d) nor "
                       "1F1B (%d)",
                       (int)c->schedule, BL_SCHEDULE_GPIPE, BL_SCHEDULE_1F1B);
    }
    if (c->pipeline_stages > 1 && c->policy_file != NULL) {
        return bl_fail(rt, BL_ERR_UNSUPPORTED,
                       "policy file %s with %d pipeline stages: a policy file holds a shard "
                       "policy's table; with pipelines the policy moves layers and learns online",
                       c->policy_file, c->pipeline_stages);
    }
    return BL_OK;
}

/* The config a caller of any supported version meant: an older struct is
 * shorter, so only its fields are read and the rest keep their defaults. */
static bl_train_config_t upgrade_config(const bl_train_config_t *c)
{
    static const size_t size_of_version[] = {0,
                                             offsetof(bl_train_config_t, pipeline_stages),
                                             offsetof(bl_train_config_t, repartition_horizon),
                                             offsetof(bl_train_config_t, node_reduce),
                                             offsetof(bl_train_config_t, nccl),
                                             sizeof(bl_train_config_t)};
    bl_train_config_t full = BL_TRAIN_CONFIG_INIT;
    memcpy(&full, c, size_of_version[c->version]);
    full.version = BL_TRAIN_CONFIG_VERSION;
    return full;
}

/* "rank 3" or "pipeline 3": what a shard belongs to in this layout. */
static const char *shard_owner(const bl_trainer_t *t)
{
    return t->layout.replicas == t->rt->size ? "rank" : "pipeline";
}

/* Checks the caps (D each, 0 <= min <= max, Σ min <= B <= Σ max) and keeps
 * copies. */
static bl_status_t copy_caps(bl_trainer_t *t)
{
    const bl_train_config_t *c = &t->cfg;
    int D = t->layout.replicas;
    if (c->shard_min == NULL && c->shard_max == NULL) {
        return BL_OK;
    }
    if (c->shard_cap_count != D) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG, "shard caps: %d given but the job has %d %ss",
                       c->shard_cap_count, D, shard_owner(t));
    }
    const bl_allocator_t *a = bl_rt_allocator(t->rt);
    t->shard_min = bl_mem_array(a, (size_t)D, sizeof *t->shard_min);
    t->shard_max = bl_mem_array(a, (size_t)D, sizeof *t->shard_max);
    if (t->shard_min == NULL || t->shard_max == NULL) {
        return bl_fail(t->rt, BL_ERR_NO_MEM, "no memory for %d shard caps", D);
    }
    long lo_sum = 0, hi_sum = 0;
    for (int d = 0; d < D; d++) {
        t->shard_min[d] = c->shard_min != NULL ? c->shard_min[d] : 0;
        t->shard_max[d] = c->shard_max != NULL ? c->shard_max[d] : c->batch;
        if (t->shard_min[d] < 0 || t->shard_max[d] < t->shard_min[d]) {
            return bl_fail(t->rt, BL_ERR_INVALID_ARG,
                           "shard caps of %s %d: min %d and max %d must satisfy 0 <= min <= max",
                           shard_owner(t), d, t->shard_min[d], t->shard_max[d]);
        }
        lo_sum += t->shard_min[d];
        hi_sum += t->shard_max[d] < c->batch ? t->shard_max[d] : c->batch;
    }
    if (lo_sum > c->batch || hi_sum < c->batch) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG,
                       "shard caps: the minimums sum to %ld and the maximums to %ld; the global "
                       "batch %d must lie between",
                       lo_sum, hi_sum, c->batch);
    }
    t->cfg.shard_min = t->shard_min;
    t->cfg.shard_max = t->shard_max;
    return BL_OK;
}

/* Without a plan: the even split (B/D each, the first B%D one more), or
 * with caps the split closest to even within them. */
static bl_status_t even_plan(bl_trainer_t *t)
{
    const bl_allocator_t *a = bl_rt_allocator(t->rt);
    int D = t->layout.replicas;
    long *plan = bl_mem_array(a, 3 * (size_t)D, sizeof *plan);
    double *ones = bl_mem_array(a, (size_t)D, sizeof *ones);
    if (plan == NULL || ones == NULL) {
        bl_mem_free(a, plan);
        bl_mem_free(a, ones);
        return bl_fail(t->rt, BL_ERR_NO_MEM, "no memory for a %d-rank shard plan", D);
    }
    if (t->shard_min == NULL) {
        bl_split_even(t->cfg.batch, D, plan);
    } else {
        long *lo = plan + D, *hi = plan + 2 * D;
        for (int d = 0; d < D; d++) {
            ones[d] = 1.0;
            lo[d] = t->shard_min[d];
            hi[d] = t->shard_max[d];
        }
        bl_plan_proportional(t->cfg.batch, D, ones, lo, hi, plan); /* caps checked: feasible */
    }
    for (int d = 0; d < D; d++) {
        t->shards[d] = (int)plan[d];
    }
    bl_mem_free(a, plan);
    bl_mem_free(a, ones);
    return BL_OK;
}

/* Fills t->shards from the config (checked) or as an even split. */
bl_status_t bl_trainer_plan_shards(bl_trainer_t *t)
{
    const bl_train_config_t *c = &t->cfg;
    int P = t->layout.replicas;
    bl_status_t st = copy_caps(t);
    if (st != BL_OK || c->shards == NULL) {
        return st != BL_OK ? st : even_plan(t);
    }
    if (c->shard_count != P) {
        return P == t->rt->size
                   ? bl_fail(t->rt, BL_ERR_INVALID_ARG,
                             "the shard plan has %d sizes but the job has %d ranks", c->shard_count,
                             P)
                   : bl_fail(t->rt, BL_ERR_INVALID_ARG,
                             "the shard plan has %d sizes but the job has %d pipelines "
                             "(%d ranks / %d stages)",
                             c->shard_count, P, t->rt->size, t->layout.stages);
    }
    long sum = 0;
    for (int r = 0; r < P; r++) {
        if (c->shards[r] < 0) {
            return bl_fail(t->rt, BL_ERR_INVALID_ARG, "shard of %s %d is %d; it must be >= 0",
                           shard_owner(t), r, c->shards[r]);
        }
        sum += c->shards[r];
        t->shards[r] = c->shards[r];
    }
    if (sum != c->batch) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG,
                       "the shard sizes sum to %ld but the global batch is %d", sum, c->batch);
    }
    for (int r = 0; r < P && t->shard_min != NULL; r++) {
        if (t->shards[r] < t->shard_min[r] || t->shards[r] > t->shard_max[r]) {
            return bl_fail(t->rt, BL_ERR_INVALID_ARG,
                           "shard of %s %d is %d, outside its caps [%d, %d]", shard_owner(t), r,
                           t->shards[r], t->shard_min[r], t->shard_max[r]);
        }
    }
    return BL_OK;
}

/* This pipeline's slice of the batch under the current plan, and every
 * rank's (its pipeline's) for telemetry. */
void bl_trainer_locate_slice(bl_trainer_t *t)
{
    const bl_layout_t *l = &t->layout;
    t->offset = 0;
    for (int d = 0; d < l->replica; d++) {
        t->offset += t->shards[d];
    }
    t->local = t->shards[l->replica];
    for (int r = 0; r < t->rt->size; r++) {
        t->rank_shards[r] = t->shards[r / l->stages];
    }
}

/* What every rank must agree on before step 0. */
bl_status_t bl_trainer_check_ranks_agree(bl_trainer_t *t)
{
    const bl_model_t *m = t->model;
    const bl_train_config_t *c = &t->cfg;
    uint64_t layers[2 * 64 + 1];
    size_t n = 0;
    for (int i = 0; i < m->layer_count && n + 2 < sizeof layers / sizeof layers[0]; i++) {
        layers[n++] = (uint64_t)m->layers[i].kind;
        layers[n++] = (uint64_t)m->layers[i].out_features;
    }
    layers[n++] = (uint64_t)m->layer_count;
    const bl_check_field_t fields[] = {
        {"batch", BL_CHECK_INT, (uint64_t)c->batch},
        {"lr", BL_CHECK_FLOAT, bl_float_bits(c->lr)},
        {"momentum", BL_CHECK_FLOAT, bl_float_bits(c->momentum)},
        {"weight decay", BL_CHECK_FLOAT, bl_float_bits(c->weight_decay)},
        {"seed", BL_CHECK_INT, c->seed},
        {"shuffle", BL_CHECK_INT, (uint64_t)c->shuffle},
        {"pipeline stages", BL_CHECK_INT, (uint64_t)t->layout.stages},
        {"stage map", BL_CHECK_DIGEST,
         bl_digest(t->layout.first, (size_t)(t->layout.stages + 1) * sizeof *t->layout.first)},
        {"micro-batches", BL_CHECK_INT, (uint64_t)c->micro_batches},
        {"schedule", BL_CHECK_INT, (uint64_t)c->schedule},
        {"node reduce", BL_CHECK_INT, (uint64_t)c->node_reduce},
        {"nccl", BL_CHECK_INT, (uint64_t)c->nccl},
        {"shard plan", BL_CHECK_DIGEST,
         bl_digest(t->shards, (size_t)t->layout.replicas * sizeof *t->shards)},
        {"shard caps", BL_CHECK_DIGEST,
         t->shard_min == NULL
             ? 0
             : bl_seed_mix(bl_digest(t->shard_min, (size_t)t->layout.replicas * sizeof(int)),
                           bl_digest(t->shard_max, (size_t)t->layout.replicas * sizeof(int)))},
        {"model layers", BL_CHECK_DIGEST, bl_digest(layers, n * sizeof layers[0])},
        {"model input width", BL_CHECK_INT, (uint64_t)m->in_features},
        {"parameter count", BL_CHECK_INT, m->param_count},
        {"initial parameters", BL_CHECK_DIGEST,
         bl_digest(m->params, m->param_count * sizeof(float))},
        {"training set samples", BL_CHECK_INT, (uint64_t)t->data->count},
        {"training set features", BL_CHECK_INT, (uint64_t)t->data->features},
        {"training set classes", BL_CHECK_INT, (uint64_t)t->data->classes},
        {"rebalancing settings", BL_CHECK_DIGEST, bl_balancer_digest(c)},
        {"stage plan and repartition settings", BL_CHECK_DIGEST, bl_restager_digest(c)},
    };
    return bl_check_same_on_all_ranks(t->rt, "start-up check", fields,
                                      (int)(sizeof fields / sizeof fields[0]));
}

/* "0-2,3-5": a stage map as --stages takes it. */
void bl_trainer_format_map(const int *first, int stages, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (int s = 0; s < stages && used < n; s++) {
        int k = snprintf(out + used, n - used, "%s%d-%d", s == 0 ? "" : ",", first[s],
                         first[s + 1] - 1);
        used += k > 0 ? (size_t)k : 0;
    }
}

void bl_trainer_log_layout(const bl_trainer_t *t)
{
    const bl_layout_t *l = &t->layout;
    if (l->stages == 1 && t->cfg.micro_batches == 1) {
        return;
    }
    char map[512];
    bl_trainer_format_map(l->first, l->stages, map, sizeof map);
    bl_log(t->rt, BL_LOG_INFO,
           "layout: %d data-parallel x %d pipeline stages; stage layers %s; %d micro-batches per "
           "step (%s)",
           l->replicas, l->stages, map, t->cfg.micro_batches,
           t->cfg.schedule == BL_SCHEDULE_GPIPE ? "gpipe" : "1f1b");
}

bl_status_t bl_trainer_check_inputs(bl_runtime_t *rt, const bl_model_t *m,
                                    const bl_dataset_t *train, const bl_train_config_t *cfg,
                                    bl_train_config_t *out)
{
    if (cfg->version < 1 || cfg->version > BL_TRAIN_CONFIG_VERSION) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "train config version %d; this library expects 1..%d (use "
                       "BL_TRAIN_CONFIG_INIT)",
                       cfg->version, BL_TRAIN_CONFIG_VERSION);
    }
    *out = upgrade_config(cfg);
    bl_status_t st = check_config(rt, out);
    return st != BL_OK ? st : bl_trainer_check_dataset(rt, m, train, "training");
}
