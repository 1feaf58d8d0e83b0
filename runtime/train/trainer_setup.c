/* The trainer's set-up (trainer_impl.h): the config's checks, the first plan,
 * and what every rank must agree on before step 0. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "consistency.h"
#include "first_shards.h"
#include "partition.h"
#include "trainer_impl.h"

/* Checks that a dataset fits the model (trainer_impl.h). */
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
    if (!(c->optimizer.lr > 0.0f) || !(c->optimizer.momentum >= 0.0f) ||
        !(c->optimizer.weight_decay >= 0.0f) || !isfinite(c->optimizer.lr) ||
        !(c->optimizer.momentum < 1.0f) || !isfinite(c->optimizer.weight_decay)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "lr %g must be positive and finite, momentum %g in [0, 1), weight decay %g "
                       "non-negative and finite",
                       (double)c->optimizer.lr, (double)c->optimizer.momentum,
                       (double)c->optimizer.weight_decay);
    }
    if (!(c->diagnostics.timeout_s >= 0.0) || !isfinite(c->diagnostics.timeout_s)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "timeout %g s must be finite and >= 0 (0: none)",
                       c->diagnostics.timeout_s);
    }
    if (!(c->mem_limit_bytes >= 0.0) || !isfinite(c->mem_limit_bytes)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "memory limit %g bytes must be finite and >= 0 (0: the cgroup's, if any)",
                       c->mem_limit_bytes);
    }
    if (!(c->transport.bucket_mb > 0.0) || !(c->transport.bucket_mb <= 4096.0)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "bucket size %g MiB must be in (0, 4096]",
                       c->transport.bucket_mb);
    }
    if (c->transport.zero != 0 && c->transport.zero != 1) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "transport.zero is %d; it must be 0 (off) or 1 (ZeRO-1)", c->transport.zero);
    }
    if (c->pipeline.schedule != BL_SCHEDULE_GPIPE && c->pipeline.schedule != BL_SCHEDULE_1F1B) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "pipeline schedule %d is neither GPipe (%d) nor "
                       "1F1B (%d)",
                       (int)c->pipeline.schedule, BL_SCHEDULE_GPIPE, BL_SCHEDULE_1F1B);
    }
    if (c->pipeline.stage_local != 0 && c->pipeline.stage_local != 1) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "pipeline.stage_local is %d; it must be 0 or 1",
                       c->pipeline.stage_local);
    }
    if (c->pipeline.stages > 1 && c->balance.policy_file != NULL) {
        return bl_fail(rt, BL_ERR_UNSUPPORTED,
                       "policy file %s with %d pipeline stages: a policy file holds a shard "
                       "policy's table; with pipelines the policy moves layers and learns online",
                       c->balance.policy_file, c->pipeline.stages);
    }
    return BL_OK;
}

const char *bl_trainer_shard_owner(const bl_trainer_t *t)
{
    return t->layout.replicas == t->rt->size ? "rank" : "pipeline";
}

bl_status_t bl_trainer_first_plan(bl_trainer_t *t)
{
    bl_runtime_t *rt = t->rt;
    const bl_train_config_t *c = &t->cfg;
    int D = t->layout.replicas, S = t->layout.stages, L = t->model->layer_count;
    int capped = c->plan.shard_min != NULL || c->plan.shard_max != NULL;
    bl_part_allocator_t pa = bl_rt_part_allocator(rt);
    if (bl_plan_init(&t->plan, D, S, L, c->batch, capped, &pa) != 0 ||
        bl_plan_init(&t->next, D, S, L, c->batch, 0, &pa) != 0) {
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for a %d-rank shard plan", rt->size);
    }
    /* The stage map is checked first, then the stage plan's maps, then the
     * shards. */
    bl_status_t st;
    if (c->plan.stage_first != NULL) {
        st = bl_layout_check_map(rt, L, S, c->plan.stage_first, c->plan.stage_count, t->plan.first);
    } else if (c->plan.stage_count != 0) {
        st = bl_fail(rt, BL_ERR_INVALID_ARG, "a stage count of %d is given without a stage map",
                     c->plan.stage_count);
    } else {
        st = bl_layout_balanced_map(rt, t->model, S, t->plan.first);
    }
    if (st == BL_OK) {
        st = bl_restager_check_plan(rt, c, L);
    }
    if (st != BL_OK) {
        return st;
    }
    char grid[96] = "";
    if (S > 1) {
        snprintf(grid, sizeof grid, " (%d ranks / %d stages)", rt->size, S);
    }
    st = bl_first_shards(rt, &c->plan, c->batch, bl_trainer_shard_owner(t), grid, &t->plan);
    if (st != BL_OK) {
        return st;
    }
    bl_trainer_locate_slice(t);
    return BL_OK;
}

void bl_trainer_locate_slice(bl_trainer_t *t)
{
    t->offset = bl_plan_offset(&t->plan, t->layout.replica);
    t->local = (int)t->plan.shards[t->layout.replica];
}

/* Checks what every rank must agree on before step 0. */
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
        {"lr", BL_CHECK_FLOAT, bl_float_bits(c->optimizer.lr)},
        {"momentum", BL_CHECK_FLOAT, bl_float_bits(c->optimizer.momentum)},
        {"weight decay", BL_CHECK_FLOAT, bl_float_bits(c->optimizer.weight_decay)},
        {"seed", BL_CHECK_INT, c->seed},
        {"shuffle", BL_CHECK_INT, (uint64_t)c->shuffle},
        {"pipeline stages", BL_CHECK_INT, (uint64_t)t->layout.stages},
        {"stage map", BL_CHECK_DIGEST,
         bl_digest(t->plan.first, (size_t)(t->plan.stages + 1) * sizeof *t->plan.first)},
        {"micro-batches", BL_CHECK_INT, (uint64_t)c->pipeline.micro_batches},
        {"schedule", BL_CHECK_INT, (uint64_t)c->pipeline.schedule},
        {"node reduce", BL_CHECK_INT, (uint64_t)c->transport.node_reduce},
        {"nccl", BL_CHECK_INT, (uint64_t)c->transport.nccl},
        {"ZeRO-1", BL_CHECK_INT, (uint64_t)c->transport.zero},
        {"stage-local memory", BL_CHECK_INT, (uint64_t)c->pipeline.stage_local},
        {"shard plan", BL_CHECK_DIGEST,
         bl_digest(t->plan.shards, (size_t)t->plan.groups * sizeof *t->plan.shards)},
        {"shard caps", BL_CHECK_DIGEST,
         t->plan.shard_min == NULL
             ? 0
             : bl_seed_mix(bl_digest(t->plan.shard_min, (size_t)t->plan.groups * sizeof(long)),
                           bl_digest(t->plan.shard_max, (size_t)t->plan.groups * sizeof(long)))},
        {"model layers", BL_CHECK_DIGEST, bl_digest(layers, n * sizeof layers[0])},
        {"model input width", BL_CHECK_INT, (uint64_t)m->in_features},
        {"parameter count", BL_CHECK_INT, m->param_count},
        /* Under stage-local memory the stages hold different layers, whose
         * first values all come from the model's seed, checked here. */
        {"model seed", BL_CHECK_INT, m->seed},
        {"initial parameters", BL_CHECK_DIGEST,
         t->stage_local ? 0 : bl_digest(m->params, m->param_count * sizeof(float))},
        {"training set samples", BL_CHECK_INT, (uint64_t)t->data->count},
        {"training set features", BL_CHECK_INT, (uint64_t)t->data->features},
        {"training set classes", BL_CHECK_INT, (uint64_t)t->data->classes},
        {"rebalancing settings", BL_CHECK_DIGEST, bl_balancer_digest(c)},
        {"stage plan and repartition settings", BL_CHECK_DIGEST, bl_restager_digest(c)},
    };
    return bl_check_same_on_all_ranks(t->rt, "start-up check", fields,
                                      (int)(sizeof fields / sizeof fields[0]));
}

/* Logs the layout; the stage map appears as --stages takes it ("0-2,3-5"). */
void bl_trainer_log_layout(const bl_trainer_t *t)
{
    const bl_layout_t *l = &t->layout;
    if (l->stages == 1 && t->cfg.pipeline.micro_batches == 1) {
        return;
    }
    char map[512];
    bl_plan_format_map(t->plan.first, l->stages, map, sizeof map);
    bl_log(t->rt, BL_LOG_INFO,
           "layout: %d data-parallel x %d pipeline stages; stage layers %s; %d micro-batches per "
           "step (%s)",
           l->replicas, l->stages, map, t->cfg.pipeline.micro_batches,
           t->cfg.pipeline.schedule == BL_SCHEDULE_GPIPE ? "gpipe" : "1f1b");
}

bl_status_t bl_trainer_check_inputs(bl_runtime_t *rt, const bl_model_t *m,
                                    const bl_dataset_t *train, const bl_train_config_t *cfg,
                                    bl_train_config_t *out)
{
    /* Versions 1 to 5 were the flat struct of ballast 0.1, and version 6 had
     * no pipeline.stage_local. Their fields cannot be read from this layout,
     * so they are refused by name. */
    if (cfg->version >= 1 && cfg->version < 6) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "train config version %d is the flat layout of ballast 0.1; this library "
                       "reads version %d, by concern (rebuild against ballast.h and start from "
                       "BL_TRAIN_CONFIG_INIT)",
                       cfg->version, BL_TRAIN_CONFIG_VERSION);
    }
    if (cfg->version == 6) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "train config version 6 has no pipeline.stage_local; this library reads "
                       "version %d (rebuild against ballast.h and start from BL_TRAIN_CONFIG_INIT)",
                       BL_TRAIN_CONFIG_VERSION);
    }
    if (cfg->version != BL_TRAIN_CONFIG_VERSION) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "train config version %d; this library expects %d (use "
                       "BL_TRAIN_CONFIG_INIT)",
                       cfg->version, BL_TRAIN_CONFIG_VERSION);
    }
    *out = *cfg;
    bl_status_t st = check_config(rt, out);
    return st != BL_OK ? st : bl_trainer_check_dataset(rt, m, train, "training");
}
