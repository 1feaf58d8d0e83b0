/* The trainer: the step loop, for one process, data parallelism, pipelines
 * and both together. One step = sample the global batch (the same on every
 * rank); each pipeline takes its contiguous slice and runs it through its
 * stages as micro-batches (one stage, one micro-batch: forward, loss,
 * backward); per-sample gradient sums of each stage's layers are
 * all-reduced over the stage's data-parallel group in buckets posted as
 * layers finish; then one fused optimizer pass divides by B and updates
 * the stage's layers — identically on every replica. */
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "balancer.h"
#include "checkpoint.h"
#include "consistency.h"
#include "replica_check.h"
#include "policy_state.h"
#include "dataset_impl.h"
#include "device_copies.h"
#include "device_data.h"
#include "device_group.h"
#include "grad_sync.h"
#include "node_reduce.h"
#include "layout.h"
#include "migration.h"
#include "model_impl.h"
#include "modelled_time.h"
#include "device_sync.h"
#include "partition.h"
#include "restager.h"
#include "sampler.h"
#include "stage.h"

struct bl_trainer {
    bl_runtime_t *rt;
    bl_model_t *model;
    bl_dataset_t *data;
    bl_train_config_t cfg; /* cfg.shards and cfg.stage_first point at copies below */
    bl_layout_t layout;    /* D pipelines × S stages, the layer→stage map, communicators */
    int *shards;           /* (D) samples of each pipeline's slice; sums to B */
    int *shard_min;        /* (D) the caps, or NULL (cfg.shard_min points here) */
    int *shard_max;
    int *rank_shards; /* (P) each rank's pipeline's slice, for telemetry */
    int offset;       /* this pipeline's slice: [offset, offset + local) of the batch */
    int local;
    bl_sampler_t sampler;
    bl_balancer_t balancer; /* slowdowns, telemetry, the controller */
    bl_stage_t stage;       /* this rank's stage: its layers, micro-batches, transfers */
    bl_grad_sync_t sync;    /* used when D > 1 and the node reduction is not */
    bl_node_reduce_t node;  /* D > 1 on one node without pipelining: shared memory */
    int failed;             /* a step failed: teardown must not wait for the others */
    bl_restager_t restager; /* pipelines: per-layer telemetry, stage-map decisions */
    int *next_first;        /* (S + 1) the map the restager chose for the next step */
    float *velocity;        /* momentum buffer, the params' layout */
    /* A rank computing on a device of its own: the parameters, gradients
     * and momentum there (the host arrays are synced at the API's edges),
     * how its group reduces, and NCCL's part when it does. */
    bl_device_copies_t dev;
    bl_device_data_t resident; /* the training set on the device, when kept there */
    bl_device_group_t group;
    bl_device_sync_t dsync;
    /* Its pipeline: whether the stages move activations and gradients
     * straight between devices (device_comm.h), and the communicator. */
    bl_device_group_t pipe_group;
    bl_device_comm_t *pipe_comm;
    long *indices;            /* (B) this step's sample indices (the whole global batch) */
    long step;                /* the next global step */
    int user_map;             /* the stage map came from the config (a resume keeps it) */
    int cfg_shards_given;     /* the shard plan came from the config (a resume keeps it) */
    long whole_at;            /* the step at which every rank last held every layer's
                                 current parameters (pipelines; 0: the initial ones) */
    double modelled_s_per_op; /* > 0: modelled step times (bl_trainer_emulate_timing) */
};

/* The checks that tie a dataset to the model. */
static bl_status_t check_dataset(bl_runtime_t *rt, const bl_model_t *m, const bl_dataset_t *d,
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
static bl_status_t plan_shards(bl_trainer_t *t)
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
static void locate_slice(bl_trainer_t *t)
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
static bl_status_t check_ranks_agree(bl_trainer_t *t)
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

/* One info line: the grid, the stage map, the micro-batches. */
/* "0-2,3-5": a stage map as --stages takes it. */
static void format_map(const int *first, int stages, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (int s = 0; s < stages && used < n; s++) {
        int k = snprintf(out + used, n - used, "%s%d-%d", s == 0 ? "" : ",", first[s],
                         first[s + 1] - 1);
        used += k > 0 ? (size_t)k : 0;
    }
}

static const char *restager_note(const void *restager, long step)
{
    return bl_restager_note(restager, step);
}

static void log_layout(const bl_trainer_t *t)
{
    const bl_layout_t *l = &t->layout;
    if (l->stages == 1 && t->cfg.micro_batches == 1) {
        return;
    }
    char map[512];
    format_map(l->first, l->stages, map, sizeof map);
    bl_log(t->rt, BL_LOG_INFO,
           "layout: %d data-parallel x %d pipeline stages; stage layers %s; %d micro-batches per "
           "step (%s)",
           l->replicas, l->stages, map, t->cfg.micro_batches,
           t->cfg.schedule == BL_SCHEDULE_GPIPE ? "gpipe" : "1f1b");
}

static bl_status_t connect_device_sync(bl_trainer_t *t);

bl_status_t bl_trainer_create(bl_runtime_t *rt, bl_model_t *m, bl_dataset_t *train,
                              const bl_train_config_t *cfg, bl_trainer_t **out)
{
    if (out == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (rt == NULL || m == NULL || train == NULL || cfg == NULL) {
        return rt == NULL ? BL_ERR_INVALID_ARG
                          : bl_fail(rt, BL_ERR_INVALID_ARG, "trainer: NULL model, data or config");
    }
    if (!m->built) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "trainer: call bl_model_build first");
    }
    if (cfg->version < 1 || cfg->version > BL_TRAIN_CONFIG_VERSION) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "train config version %d; this library expects 1..%d (use "
                       "BL_TRAIN_CONFIG_INIT)",
                       cfg->version, BL_TRAIN_CONFIG_VERSION);
    }
    bl_train_config_t c = upgrade_config(cfg);
    bl_status_t st = check_config(rt, &c);
    if (st == BL_OK) {
        st = check_dataset(rt, m, train, "training");
    }
    if (st != BL_OK) {
        return st;
    }
    const bl_allocator_t *a = bl_rt_allocator(rt);
    bl_trainer_t *t = bl_mem_alloc(a, sizeof *t);
    if (t == NULL) {
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for a trainer");
    }
    memset(t, 0, sizeof *t);
    t->rt = rt;
    t->model = m;
    t->data = train;
    t->cfg = c;
    st = bl_layout_init(&t->layout, rt, m, c.pipeline_stages, c.stage_first, c.stage_count);
    if (st != BL_OK) {
        goto fail;
    }
    t->user_map = c.stage_first != NULL;
    rt->wait_timeout_s = c.timeout_s;
    t->cfg.stage_first = t->layout.first;
    st = bl_restager_check_plan(rt, &c, m->layer_count);
    if (st != BL_OK) {
        goto fail;
    }
    t->next_first = bl_mem_array(a, (size_t)t->layout.stages + 1, sizeof *t->next_first);
    if (t->next_first == NULL) {
        st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for a %d-stage map", t->layout.stages);
        goto fail;
    }
    t->cfg_shards_given = c.shards != NULL;
    t->shards = bl_mem_array(a, (size_t)t->layout.replicas, sizeof *t->shards);
    t->rank_shards = bl_mem_array(a, (size_t)rt->size, sizeof *t->rank_shards);
    if (t->shards == NULL || t->rank_shards == NULL) {
        st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for a %d-rank shard plan", rt->size);
        goto fail;
    }
    st = plan_shards(t);
    if (st != BL_OK) {
        goto fail;
    }
    t->cfg.shards = t->shards;
    t->cfg.shard_count = t->layout.replicas;
    locate_slice(t);

    bl_error_t err = {0};
    st = bl_sampler_init(&t->sampler, train->count, c.batch, c.seed, c.shuffle, a, &err);
    if (st != BL_OK) {
        st = bl_fail_from(rt, &err);
        goto fail;
    }
    t->velocity = bl_mem_array_zeroed(a, m->param_count, sizeof(float));
    t->indices = bl_mem_array(a, (size_t)c.batch, sizeof *t->indices);
    if (t->velocity == NULL || t->indices == NULL) {
        st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for the optimizer state and a batch of %d",
                     c.batch);
        goto fail;
    }
    st = bl_balancer_init(&t->balancer, rt, &t->cfg);
    if (st != BL_OK) {
        goto fail;
    }
    /* All ranks here with a plan: a mismatch is told before any split. */
    st = bl_device_train_check(rt, m);
    if (st == BL_OK) {
        st = check_ranks_agree(t);
    }
    if (st == BL_OK) {
        st = bl_layout_connect(&t->layout);
    }
    if (st == BL_OK) {
        st = bl_device_group_learn(rt, t->layout.dp, t->layout.replicas, c.nccl, &t->group);
    }
    if (st == BL_OK) {
        st = bl_device_group_learn(rt, t->layout.pipe, t->layout.stages, c.nccl, &t->pipe_group);
    }
    /* On a device: the state goes there before the stage's buffers are
     * made, so they are made there too. */
    if (st == BL_OK && rt->device.memory != NULL) {
        st = bl_device_copies_init(&t->dev, rt, &rt->device, m, t->velocity);
    }
    if (st == BL_OK) {
        st = bl_stage_init(&t->stage, m, &t->layout, c.batch, c.micro_batches,
                           c.schedule == BL_SCHEDULE_GPIPE ? BL_PIPE_GPIPE : BL_PIPE_1F1B,
                           t->pipe_group.direct);
    }
    /* The training set goes to the device last, into the room left. */
    if (st == BL_OK && rt->device.memory != NULL && c.data_on_device) {
        /* Stage 0 reads the inputs, the last stage the labels. */
        st = bl_device_data_init(&t->resident, rt, &rt->device, train, t->layout.stage == 0,
                                 t->layout.stage == t->layout.stages - 1);
    }
    /* The buffers above are this rank's own (a GPU may run out of memory):
     * all agree before the group's collectives below. */
    st = bl_agree(rt, st, BL_ERR_MISMATCH, "the trainer's buffers");
    if (st == BL_OK && t->layout.replicas > 1 && t->layout.stages == 1) {
        st = bl_node_reduce_init(&t->node, rt, t->layout.dp, m, &t->velocity,
                                 c.node_reduce && t->group.device_members == 0);
    }
    if (st == BL_OK && t->layout.replicas > 1 && !t->node.active) {
        st = bl_grad_sync_init(&t->sync, rt, t->layout.dp, m, t->stage.first, t->stage.last,
                               (size_t)(c.bucket_mb * 1024.0 * 1024.0));
    }
    if (st == BL_OK) {
        st = connect_device_sync(t);
    }
    /* NCCL's set-up agrees within each data-parallel group: every rank
     * learns whether all went well before any goes on. */
    st = bl_agree(rt, st, BL_ERR_MISMATCH, "the gradient reduction's set-up");
    if (st == BL_OK) {
        st = bl_restager_init(&t->restager, rt, &t->cfg, m, &t->layout);
    }
    if (st == BL_OK) {
        st = bl_balancer_track_pipeline(&t->balancer, t->layout.stages, t->layout.first,
                                        restager_note, &t->restager);
    }
    if (st != BL_OK) {
        goto fail;
    }
    log_layout(t);
    *out = t;
    return BL_OK;
fail:
    bl_trainer_destroy(t);
    return st;
}

void bl_trainer_destroy(bl_trainer_t *t)
{
    if (t == NULL) {
        return;
    }
    /* After a timeout pending requests may still write into the trainer's
     * buffers (the gradients, telemetry, ...): leak them all, but for the
     * page-locking of the model's host gradients (the caller's to free),
     * undone once the device's own copies are over (nothing there waits
     * for another rank). */
    if (t->rt->gave_up) {
        bl_device_copies_settle(&t->dev);
        return;
    }
    const bl_allocator_t *a = bl_rt_allocator(t->rt);
    bl_sampler_free(&t->sampler);
    bl_balancer_free(&t->balancer);
    bl_grad_sync_free(&t->sync);
    bl_device_sync_free(&t->dsync, !t->failed && !t->rt->gave_up);
    bl_device_comm_free(t->pipe_comm, !t->failed && !t->rt->gave_up);
    bl_device_data_free(&t->resident);
    bl_device_copies_free(&t->dev);
    bl_node_reduce_free(&t->node, !t->failed && !t->rt->gave_up);
    bl_restager_free(&t->restager);
    bl_stage_free(&t->stage);
    bl_layout_free(&t->layout);
    bl_mem_free(a, t->shards);
    bl_mem_free(a, t->shard_min);
    bl_mem_free(a, t->shard_max);
    bl_mem_free(a, t->rank_shards);
    bl_mem_free(a, t->velocity);
    bl_mem_free(a, t->indices);
    bl_mem_free(a, t->next_first);
    bl_mem_free(a, t);
}

/* The optimizer on parameters [first, first + count). Gradients are
 * per-sample sums over the global batch; 1/B makes them its mean. Every
 * replica applies the same element-wise update to the same values, so
 * slices in any order give the same parameters as one pass. */
static void update_slice(size_t first, size_t count, void *trainer)
{
    bl_trainer_t *t = trainer;
    bl_model_t *m = t->model;
    const bl_device_t *dev = bl_model_device(m);
    float *w = bl_model_exec_params(m), *g = bl_model_exec_grads(m);
    float *v = t->dev.device != NULL ? t->dev.velocity : t->velocity;
    if (t->group.path == BL_REDUCE_STAGED) {
        /* The group's sums arrived in the host array: up they go (queued
         * before the update, on the same stream). */
        dev->memory->to_device(g + first, m->grads + first, count * sizeof(float));
    }
    dev->kernels->sgd_update(count, w + first, v + first, g + first, 1.0f / (float)t->cfg.batch,
                             t->cfg.lr, t->cfg.momentum, t->cfg.weight_decay);
}

/* The gradient sync's device hooks for this rank's path (after each
 * bl_grad_sync_init). */
static void wire_device_hooks(bl_trainer_t *t)
{
    if (t->group.path == BL_REDUCE_STAGED) {
        t->sync.device = bl_device_copies_staged_hooks(&t->dev);
    } else if (t->group.path == BL_REDUCE_DEVICE) {
        t->sync.device = bl_device_sync_hooks(&t->dsync);
    }
    t->stage.direct = t->pipe_comm;
}

/* "<what>: <how> (3 ranks: 1 on GPUs, 0 on other devices, 2 on CPUs)",
 * for a group of several ranks with a device among them. */
static void log_devices(const bl_trainer_t *t, const char *what, const char *members,
                        const bl_device_group_t *g, const char *how)
{
    if (g->device_members == 0 || g->members < 2) {
        return;
    }
    bl_log(t->rt, BL_LOG_INFO, "%s: %s (%d %s: %d on GPUs, %d on other devices, %d on CPUs)", what,
           how, g->members, members, g->cuda_members, g->device_members - g->cuda_members,
           g->members - g->device_members);
}

/* How a device rank's gradients are reduced and its pipeline's transfers
 * run (device_group.h), wired into the gradient sync and the stage; rank
 * 0 says how its group and its pipeline do it. Collective over the
 * pipeline, then over the data-parallel group (their communicators'
 * set-up), in that order on every rank. */
static bl_status_t connect_device_sync(bl_trainer_t *t)
{
    bl_status_t st = BL_OK;
    if (t->pipe_group.direct) {
        st =
            bl_device_comm_open(t->rt, t->layout.pipe, "pipeline", t->cfg.timeout_s, &t->pipe_comm);
    }
    /* Over the job: a pipeline whose set-up failed must not leave the
     * other pipelines waiting in their data-parallel groups' set-up. */
    st = bl_agree(t->rt, st, BL_ERR_MISMATCH, "the pipeline communicators' set-up");
    if (st == BL_OK && t->group.path == BL_REDUCE_DEVICE) {
        st = bl_device_sync_init(&t->dsync, t->rt, t->layout.dp, t->dev.grads, t->cfg.timeout_s);
    } else if (st == BL_OK && t->group.path == BL_REDUCE_STAGED) {
        bl_device_copies_pin_grads(&t->dev, t->rt);
    }
    if (st == BL_OK) {
        wire_device_hooks(t);
    }
    if (st == BL_OK) {
        log_devices(t, "gradient reduction of rank 0's group", "ranks", &t->group,
                    bl_device_group_path_name(&t->group));
        log_devices(t, "pipeline transfers of rank 0's pipeline", "stages", &t->pipe_group,
                    t->pipe_group.direct ? bl_device_comm_name(t->pipe_comm)
                                         : "MPI through host memory");
    }
    return st;
}

/* The parameters of this stage's layers: [first, first + count). */
static void stage_params(const bl_trainer_t *t, int stage, size_t *first, size_t *count)
{
    const bl_model_t *m = t->model;
    const bl_layer_t *lo = &m->layers[t->layout.first[stage]];
    const bl_layer_t *hi = &m->layers[t->layout.first[stage + 1] - 1];
    *first = lo->param_offset;
    *count = hi->param_offset + hi->param_count - lo->param_offset;
}

/* Every replica of a stage holds its arrays (replica_check.h); agreed over
 * the job, since only the differing stage's group learns it. */
static bl_status_t check_replicas(const bl_trainer_t *t)
{
    size_t first, count;
    stage_params(t, t->layout.stage, &first, &count);
    return bl_agree(t->rt,
                    bl_replicas_check(t->rt, t->layout.dp, t->step, t->model->params, t->velocity,
                                      first, count),
                    BL_ERR_MISMATCH, "the replica check");
}

/* The step's loss sum and correct count live on the last stages: every
 * rank gets the job's totals (the other stages add zeros). */
static bl_status_t reduce_totals(bl_trainer_t *t, double *loss_sum, long *correct)
{
    double totals[2] = {*loss_sum, (double)*correct};
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, totals, 2, MPI_DOUBLE, MPI_SUM, t->rt->comm, &req);
    if (rc != MPI_SUCCESS) {
        return bl_fail_mpi(t->rt, rc, "MPI_Iallreduce of the step's loss and accuracy");
    }
    bl_status_t st =
        bl_wait_collective(t->rt, &req, "the all-reduce of the step's loss", t->rt->comm);
    if (st != BL_OK) {
        return st;
    }
    *loss_sum = totals[0];
    *correct = (long)totals[1];
    return BL_OK;
}

/* The stage's buffers and the gradient buckets, (re)made for the layers
 * the layout gives this rank's stage now. */
static bl_status_t rebuild_stage(bl_trainer_t *t)
{
    bl_layout_t *l = &t->layout;
    bl_stage_free(&t->stage);
    bl_grad_sync_free(&t->sync);
    bl_status_t st = bl_stage_init(
        &t->stage, t->model, l, t->cfg.batch, t->cfg.micro_batches,
        t->cfg.schedule == BL_SCHEDULE_GPIPE ? BL_PIPE_GPIPE : BL_PIPE_1F1B, t->pipe_group.direct);
    if (st == BL_OK && l->replicas > 1) {
        st = bl_grad_sync_init(&t->sync, t->rt, l->dp, t->model, t->stage.first, t->stage.last,
                               (size_t)(t->cfg.bucket_mb * 1024.0 * 1024.0));
    }
    if (st == BL_OK) {
        wire_device_hooks(t);
    }
    return st;
}

/* Moves to stage map next at the boundary after step `step`, in every
 * pipeline at once: the layers that change stage send their parameters
 * and momentum over (migration.h), then every rank rebuilds its stage (and
 * its gradient sync) for its new layers. All ranks agree on success before
 * anyone trains on: a failure anywhere fails everywhere. Collective. */
static bl_status_t restage(bl_trainer_t *t, long step, const int *next, int *moved)
{
    bl_layout_t *l = &t->layout;
    double t0 = bl_now_seconds();
    bl_migration_t mig;
    /* Layers travel from the host arrays (a device rank's brought up to
     * date first, and its device copies after: they then hold the new
     * layers too). */
    bl_status_t down = bl_device_copies_download(&t->dev, t->rt, t->velocity);
    /* Every rank takes part in the transfers even after a failed download:
     * the agreement below then fails the move everywhere. */
    bl_status_t st = bl_migrate_layers(l, t->model, t->velocity, l->first, next, &mig);
    if (st == BL_OK) {
        st = down;
    }
    if (st == BL_OK) {
        st = bl_device_copies_upload(&t->dev, t->rt, t->velocity);
    }
    if (st == BL_ERR_TIMEOUT) {
        return st; /* the job is ending; an agreement would only wait again */
    }
    double agree[2] = {bl_now_seconds() - t0, st != BL_OK ? 1.0 : 0.0};
    bl_status_t agreed = bl_allreduce_bounded(t->rt, MPI_IN_PLACE, agree, 2, MPI_DOUBLE, MPI_MAX,
                                              t->rt->comm, "the agreement on a layer migration");
    if (st != BL_OK) {
        return st;
    }
    if (agreed != BL_OK) {
        return agreed;
    }
    if (agree[1] > 0.0) {
        return bl_fail(t->rt, BL_ERR_MISMATCH,
                       "a layer migration after step %ld failed on another rank", step);
    }
    char from_map[512], to_map[512];
    format_map(l->first, l->stages, from_map, sizeof from_map);
    format_map(next, l->stages, to_map, sizeof to_map);
    bl_log(t->rt, BL_LOG_INFO,
           "after step %ld: stage layers %s -> %s (%d layers moved, %.0f bytes per pipeline, "
           "%.3f ms)",
           step, from_map, to_map, mig.layers_moved, mig.pipeline_bytes, agree[0] * 1e3);
    bl_restager_moved(&t->restager, step, l->first, next, &mig,
                      t->modelled_s_per_op > 0.0 ? bl_restager_nominal_move_s(mig.pipeline_bytes)
                                                 : agree[0]);
    memcpy(l->first, next, (size_t)(l->stages + 1) * sizeof *l->first);
    *moved = mig.layers_moved;
    /* New buffers (device memory may run out): agreed before the next step. */
    return bl_agree(t->rt, rebuild_stage(t), BL_ERR_MISMATCH, "rebuilding the stages");
}

/* One training step on the global batch of t->step. */
static bl_status_t train_step(bl_trainer_t *t, bl_step_info_t *info)
{
    int B = t->cfg.batch;
    int replicated = t->layout.replicas > 1, piped = t->layout.stages > 1;
    bl_step_record_t record = {.step = (double)t->step,
                               .samples = t->local,
                               .start_s = bl_balancer_now(&t->balancer),
                               .plan = (double)t->balancer.ctl.version};
    double start = bl_now_seconds();
    t->rt->wait_step = t->step; /* what a timed-out wait names */

    /* Every rank draws the whole global batch; its pipeline takes a slice. */
    bl_sampler_batch(&t->sampler, t->step, t->indices);
    bl_stage_step_t in = {.step = t->step,
                          .data = t->data,
                          .indices = t->indices + t->offset,
                          .count = t->local,
                          .done = replicated && !t->node.active ? bl_grad_sync_layer_done : NULL,
                          .done_arg = &t->sync,
                          .done_after_transfers = t->group.path == BL_REDUCE_DEVICE,
                          .slowdown = t->modelled_s_per_op > 0.0 ? NULL : &t->balancer,
                          .resident = t->resident.device != NULL ? &t->resident : NULL};
    bl_stage_result_t r;
    bl_status_t st = bl_stage_run(&t->stage, &in, &r);
    if (st != BL_OK) {
        return st;
    }
    if (t->modelled_s_per_op > 0.0) {
        bl_modelled_stage_times(t->model, &t->stage, t->local, t->modelled_s_per_op,
                                bl_balancer_slow_factor(&t->balancer, t->step), &r);
    }
    record.compute_s = r.compute_s;
    record.pipe_s = r.pipe_s;
    double synced = bl_now_seconds();
    if (t->node.active) {
        /* On one node: each rank sums and updates its slice of the shared
         * parameters (and the loss and accuracy are summed). */
        st = bl_node_reduce_step(&t->node, &r.loss_sum, &r.correct, 1.0f / (float)B, t->cfg.lr,
                                 t->cfg.momentum, t->cfg.weight_decay);
    } else if (replicated) {
        /* Gradient sums over the stage's replicas (and, without pipelining,
         * the loss and accuracy); each bucket is updated as soon as its
         * reduction lands. */
        st = bl_grad_sync_finish(&t->sync, piped ? NULL : &r.loss_sum, piped ? NULL : &r.correct,
                                 update_slice, t);
    } else {
        size_t first, count;
        stage_params(t, t->layout.stage, &first, &count);
        update_slice(first, count, t);
    }
    if (st == BL_OK && piped) {
        st = reduce_totals(t, &r.loss_sum, &r.correct);
    }
    /* Without pipelining a device's update is left queued: the next step's
     * host work (its batch, telemetry) overlaps it, and the next check
     * (that step's backward, or the download at the end of a run) reports
     * a failure. A pipeline stage times each layer, so the update must not
     * land in its first layer's clock: it is waited for here. */
    if (st == BL_OK && piped) {
        st = bl_device_check(t->rt, bl_model_device(t->model), "the optimizer step");
    }
    if (st != BL_OK) {
        return st;
    }
    record.sync_s = t->modelled_s_per_op > 0.0 ? 0.0 : bl_now_seconds() - synced;

    info->step = t->step;
    info->steps_per_epoch = t->sampler.steps_per_epoch;
    info->epoch = t->step / t->sampler.steps_per_epoch;
    info->loss = r.loss_sum / B;
    info->accuracy = (double)r.correct / B;
    info->seconds = bl_now_seconds() - start;
    t->step++;
    /* Telemetry, and at a window's end the controller's plan for the next
     * step (the same on every rank; only without pipelining, so shards are
     * per rank then). */
    st = bl_balancer_after_step(&t->balancer, &record, info, piped ? t->rank_shards : t->shards);
    if (st == BL_OK && info->plan_changed) {
        locate_slice(t);
    }
    /* Pipelines: the stage controller may move layers at this boundary. */
    info->stages_moved = 0;
    if (st == BL_OK && t->restager.on) {
        int changed = 0;
        bl_restager_observe(&t->restager, &t->stage,
                            t->modelled_s_per_op > 0.0 ? r.compute_s : info->seconds);
        st = bl_restager_boundary(&t->restager, info->step, t->layout.first, t->next_first,
                                  &changed);
        if (t->restager.last_action != NULL) {
            info->decision = t->restager.last_action;
        }
        if (st == BL_OK && changed) {
            st = restage(t, info->step, t->next_first, &info->stages_moved);
        }
    }
    return st;
}

/* In a pipelined job a rank's model is current only in its stage's layers
 * once a step has run. Every stage sends its layers' parameters to the rest
 * of its pipeline, so every rank's model is whole and current (for saving,
 * evaluating and inspecting); nothing to do when it already is. Collective. */
static bl_status_t make_params_whole(bl_trainer_t *t)
{
    if (t->layout.stages == 1 || t->whole_at == t->step) {
        return BL_OK;
    }
    /* A device rank's stage layers are current on the device; afterwards
     * the device holds the whole model too (evaluation runs there). A
     * failed download still takes part in the broadcasts (the others wait
     * in them) and fails after. */
    bl_status_t down = bl_device_copies_download(&t->dev, t->rt, t->velocity);
    bl_status_t st = BL_OK;
    for (int s = 0; s < t->layout.stages; s++) {
        size_t first, count;
        stage_params(t, s, &first, &count);
        for (size_t done = 0; done < count;) {
            int n = count - done > (size_t)INT_MAX ? INT_MAX : (int)(count - done);
            st = bl_bcast_bounded(t->rt, t->model->params + first + done, n, MPI_FLOAT, s,
                                  t->layout.pipe, "the broadcast of a stage's parameters");
            if (st != BL_OK) {
                return st;
            }
            done += (size_t)n;
        }
    }
    /* Every rank learns of a failed download (its layers went out stale). */
    st = bl_agree(t->rt, down, BL_ERR_MISMATCH, "downloading a stage's parameters");
    if (st != BL_OK) {
        return st;
    }
    t->whole_at = t->step;
    return bl_device_copies_upload(&t->dev, t->rt, t->velocity);
}

bl_status_t bl_trainer_sync_params(bl_trainer_t *t)
{
    if (t == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    /* Pipelines download as part of making the model whole. */
    return t->layout.stages > 1 ? make_params_whole(t)
                                : bl_device_copies_download(&t->dev, t->rt, t->velocity);
}

bl_status_t bl_trainer_run(bl_trainer_t *t, long steps, bl_step_cb cb, void *cb_arg)
{
    if (t == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    if (steps < 0) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG, "steps %ld must not be negative", steps);
    }
    for (long i = 0; i < steps; i++) {
        bl_step_info_t info;
        bl_status_t st = train_step(t, &info);
        if (st != BL_OK) {
            t->failed = 1;
            return st;
        }
        if (cb != NULL && cb(&info, cb_arg) != 0) {
            break;
        }
    }
    /* The last telemetry (rank 0's: agreed before the collectives), the
     * host arrays current everywhere and equal on a stage's replicas. */
    bl_status_t st =
        bl_agree(t->rt, bl_balancer_flush(&t->balancer), BL_ERR_IO, "writing the last telemetry");
    if (st == BL_OK) {
        st = bl_agree(t->rt, bl_trainer_sync_params(t), BL_ERR_MISMATCH, "ending the run");
    }
    return st == BL_OK ? check_replicas(t) : st;
}

bl_status_t bl_trainer_layout(const bl_trainer_t *t, bl_layout_info_t *out)
{
    if (t == NULL || out == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    const bl_layout_t *l = &t->layout;
    *out = (bl_layout_info_t){.data_parallel = l->replicas,
                              .stages = l->stages,
                              .replica = l->replica,
                              .stage = l->stage,
                              .first_layer = t->stage.first,
                              .last_layer = t->stage.last,
                              .micro_batches = t->stage.micro_batches,
                              .stash_capacity = t->stage.slot_count,
                              .peak_stashed = t->stage.peak_in_flight};
    return BL_OK;
}

const int *bl_trainer_stage_map(const bl_trainer_t *t)
{
    return t != NULL ? t->layout.first : NULL;
}

const float *bl_trainer_momentum(const bl_trainer_t *t, size_t *count)
{
    if (count != NULL) {
        *count = t != NULL ? t->model->param_count : 0;
    }
    return t != NULL ? t->velocity : NULL;
}

bl_status_t bl_trainer_emulate_timing(bl_trainer_t *t, double seconds_per_op)
{
    if (t == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    if (!(seconds_per_op >= 0.0) || !isfinite(seconds_per_op)) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG,
                       "emulated timing: %g seconds per operation must be finite and >= 0",
                       seconds_per_op);
    }
    t->modelled_s_per_op = seconds_per_op;
    return BL_OK;
}

long bl_trainer_step(const bl_trainer_t *t)
{
    return t == NULL ? 0 : t->step;
}

long bl_trainer_steps_per_epoch(const bl_trainer_t *t)
{
    return t == NULL ? 0 : t->sampler.steps_per_epoch;
}

/* Loss sum and correct count of samples [first, first + count) of d, in
 * chunks of up to B rows through the whole model (every rank holds every
 * layer's current parameters between runs). Without pipelining or
 * micro-batches the training workspace serves; otherwise one is made for
 * the evaluation. */
static bl_status_t evaluate_range(bl_trainer_t *t, bl_dataset_t *d, long first, long count,
                                  double *loss_sum, long *correct)
{
    const bl_device_t *dev = bl_model_device(t->model);
    const bl_kernels_t *k = dev->kernels;
    const bl_allocator_t *a = bl_rt_allocator(t->rt);
    int chunk = t->cfg.batch;
    bl_workspace_t own = {0};
    bl_workspace_t *ws = &own;
    bl_status_t st = BL_OK;
    if (t->layout.stages == 1 && t->stage.max_micro == chunk) {
        ws = &t->stage.slots[0].ws;
    } else {
        st = bl_workspace_init(t->model, chunk, &own);
        if (st != BL_OK) {
            return st;
        }
    }
    /* Read on the host; on a device of its own, uploaded into twins. */
    size_t x_count = (size_t)chunk * (size_t)d->features;
    float *x = bl_mem_array(a, x_count, sizeof(float));
    int *labels = bl_mem_array(a, (size_t)chunk, sizeof(int));
    float *x_dev = dev->memory != NULL ? bl_buffer_alloc(t->rt, dev, x_count, sizeof(float)) : x;
    int *labels_dev =
        dev->memory != NULL ? bl_buffer_alloc(t->rt, dev, (size_t)chunk, sizeof(int)) : labels;
    if (x == NULL || labels == NULL || x_dev == NULL || labels_dev == NULL) {
        st = bl_fail(t->rt, BL_ERR_NO_MEM, "no memory to evaluate in chunks of %d", chunk);
        goto done;
    }
    for (long done = 0; done < count; done += chunk) {
        int n = count - done < chunk ? (int)(count - done) : chunk;
        const float *logits = NULL;
        st = bl_dataset_gather_range(d, first + done, n, x, labels);
        if (st == BL_OK && dev->memory != NULL) {
            dev->memory->to_device(x_dev, x, (size_t)n * (size_t)d->features * sizeof(float));
            dev->memory->to_device(labels_dev, labels, (size_t)n * sizeof(int));
        }
        if (st == BL_OK) {
            st = bl_model_forward(t->model, ws, n, x_dev, &logits);
        }
        if (st != BL_OK) {
            goto done;
        }
        *loss_sum +=
            k->softmax_xent(n, bl_model_out_features(t->model), logits, labels_dev, NULL, correct);
    }
    st = bl_device_check(t->rt, dev, "the evaluation");
done:
    if (x_dev != x) {
        bl_buffer_free(a, dev, x_dev);
    }
    if (labels_dev != labels) {
        bl_buffer_free(a, dev, labels_dev);
    }
    bl_mem_free(a, x);
    bl_mem_free(a, labels);
    bl_workspace_free(a, &own);
    return st;
}

bl_status_t bl_trainer_evaluate(bl_trainer_t *t, bl_dataset_t *d, double *loss, double *accuracy)
{
    if (t == NULL || d == NULL || loss == NULL || accuracy == NULL) {
        return t == NULL ? BL_ERR_INVALID_ARG
                         : bl_fail(t->rt, BL_ERR_INVALID_ARG, "evaluate: NULL argument");
    }
    bl_runtime_t *rt = t->rt;
    bl_status_t st = check_dataset(rt, t->model, d, "evaluation");
    if (st != BL_OK) {
        return st;
    }
    const bl_check_field_t fields[] = {
        {"evaluation set samples", BL_CHECK_INT, (uint64_t)d->count},
        {"evaluation set features", BL_CHECK_INT, (uint64_t)d->features},
    };
    st = bl_check_same_on_all_ranks(rt, "evaluation", fields, 2);
    if (st == BL_OK) {
        st = make_params_whole(t); /* also from a step callback, in the middle of a run */
    }
    if (st != BL_OK) {
        return st;
    }
    /* Each rank evaluates its contiguous share of the set; the sums are
     * reduced, so the figures are exact global ones. */
    long share = d->count / rt->size, extra = d->count % rt->size;
    long first = rt->rank * share + (rt->rank < extra ? rt->rank : extra);
    long count = share + (rt->rank < extra ? 1 : 0);
    double totals[2] = {0.0, 0.0};
    long correct = 0;
    st = evaluate_range(t, d, first, count, &totals[0], &correct);
    /* Every rank takes part in the reduction even after a local failure, so
     * none is left waiting; a failure anywhere fails everywhere. */
    totals[1] = (double)correct;
    double failed = st != BL_OK ? 1.0 : 0.0;
    double sums[3] = {totals[0], totals[1], failed};
    if (rt->size > 1) {
        bl_status_t reduced = bl_allreduce_bounded(rt, MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM,
                                                   rt->comm, "the reduction of the evaluation");
        if (reduced != BL_OK) {
            return reduced;
        }
    }
    if (st != BL_OK) {
        return st;
    }
    if (sums[2] > 0.0) {
        return bl_fail(rt, BL_ERR_MISMATCH, "evaluation failed on %.0f other rank(s)", sums[2]);
    }
    *loss = sums[0] / (double)d->count;
    *accuracy = sums[1] / (double)d->count;
    return BL_OK;
}

/* Collective: the controllers' state for a checkpoint, into s on rank 0.
 * The telemetry in flight is settled into the shard controller's window,
 * every rank's stage-controller window is gathered, and rank 0 packs both
 * policies' learned state with the windows (policy_state.h). */
static bl_status_t collect_control(bl_trainer_t *t, bl_ckpt_state_t *s)
{
    bl_runtime_t *rt = t->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    int P = rt->size, L = t->model->layer_count;
    bl_control_windows_t w = {.ranks = P, .layers = L};
    double *shard = NULL, *stage = NULL;
    bl_status_t st = bl_balancer_settle(&t->balancer);
    if (st != BL_OK) {
        return st;
    }
    if (rt->rank == 0) {
        w.shard_count = t->balancer.controller_on ? BL_CONTROLLER_WINDOW_DOUBLES(P) : 0;
        w.stage_count = t->restager.on ? (size_t)P * BL_RESTAGER_WINDOW_DOUBLES(L) : 0;
        shard = w.shard_count > 0 ? bl_mem_array(a, w.shard_count, sizeof *shard) : NULL;
        stage = w.stage_count > 0 ? bl_mem_array(a, w.stage_count, sizeof *stage) : NULL;
        if ((w.shard_count > 0 && shard == NULL) || (w.stage_count > 0 && stage == NULL)) {
            st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for the control windows of %d ranks", P);
        }
    }
    st = bl_agree(rt, st, BL_ERR_NO_MEM, "saving the control windows");
    if (st == BL_OK) {
        st = bl_restager_gather_windows(&t->restager, stage);
    }
    if (st == BL_OK && rt->rank == 0) {
        if (shard != NULL) {
            bl_controller_window_save(&t->balancer.ctl, shard);
        }
        w.shard = shard;
        w.stage = stage;
        st = bl_policy_state_collect(rt, t->balancer.ctl.policy, t->restager.policy, &w,
                                     &s->control, &s->control_bytes);
    }
    bl_mem_free(a, shard);
    bl_mem_free(a, stage);
    return st;
}

/* Collective, on resume: rank 0 loads the policies' learned state and
 * the shard controller's window in progress, and every rank its
 * stage-controller window, when they were saved for this layout (the same
 * ranks and layers). With measured times the resumed process's first step
 * is cold (caches, first touches) and is not observed; with modelled
 * times nothing is cold, and the windows go on exactly as saved. */
static bl_status_t restore_control(bl_trainer_t *t, const bl_ckpt_state_t *s, const char *path)
{
    bl_runtime_t *rt = t->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    int P = rt->size, L = t->model->layer_count;
    double *stage = NULL;
    int stage_fits = 0;
    if (rt->rank == 0) {
        bl_control_windows_t w;
        bl_policy_state_restore(rt, t->balancer.ctl.policy, t->restager.policy, s->control,
                                s->control_bytes, path, &w);
        size_t shard_count = BL_CONTROLLER_WINDOW_DOUBLES(P);
        size_t stage_count = (size_t)P * BL_RESTAGER_WINDOW_DOUBLES(L);
        int shard_fits = t->balancer.controller_on && w.ranks == P && w.shard_count == shard_count;
        stage_fits =
            t->restager.on && w.ranks == P && w.layers == L && w.stage_count == stage_count;
        double *shard = shard_fits ? bl_mem_array(a, shard_count, sizeof *shard) : NULL;
        stage = stage_fits ? bl_mem_array(a, stage_count, sizeof *stage) : NULL;
        shard_fits = shard != NULL;
        stage_fits = stage != NULL;
        if (shard != NULL) {
            memcpy(shard, w.shard, shard_count * sizeof *shard);
            shard_fits = bl_controller_window_load(&t->balancer.ctl, shard);
        }
        if (stage != NULL) {
            memcpy(stage, w.stage, stage_count * sizeof *stage);
        }
        bl_mem_free(a, shard);
        if ((w.shard_count > 0 && !shard_fits) || (w.stage_count > 0 && !stage_fits)) {
            bl_log(rt, BL_LOG_INFO,
                   "resume: %s's control windows in progress do not fit this run (%d ranks, %d "
                   "layers); they start empty",
                   path, P, L);
        }
    }
    bl_status_t st = bl_restager_scatter_windows(&t->restager, stage, stage_fits);
    bl_mem_free(a, stage);
    if (t->modelled_s_per_op <= 0.0) {
        t->balancer.ctl.cold_step = s->step;
        t->restager.skip_next = 1;
    }
    return st;
}

bl_status_t bl_trainer_save_checkpoint(bl_trainer_t *t, const char *dir, int keep, char *path,
                                       size_t n)
{
    if (t == NULL || dir == NULL || keep < 0 || (path == NULL && n > 0)) {
        return t == NULL ? BL_ERR_INVALID_ARG
                         : bl_fail(t->rt, BL_ERR_INVALID_ARG,
                                   "save checkpoint: NULL directory or path, or keep %d < 0", keep);
    }
    char scratch[4096];
    bl_ckpt_state_t s = {.step = t->step,
                         .seed = t->cfg.seed,
                         .batch = t->cfg.batch,
                         .shuffle = t->cfg.shuffle,
                         .plan_version = t->balancer.ctl.version,
                         .ranks = t->rt->size,
                         .replicas = t->layout.replicas,
                         .stages = t->layout.stages,
                         .first = t->layout.first,
                         .shards = t->shards};
    double t0 = bl_now_seconds();
    char *where = path != NULL ? path : scratch;
    /* A device rank's host arrays are current only after a run (a save
     * from a step callback). Every rank takes part in gathering the
     * controllers' state even after a failed download (the others wait
     * in it); rank 0 writes the manifest with it. */
    bl_status_t down = bl_device_copies_download(&t->dev, t->rt, t->velocity);
    bl_status_t st = collect_control(t, &s);
    st = bl_agree(t->rt, st != BL_OK ? st : down, BL_ERR_NO_MEM,
                  "gathering the parameters and the controllers' state");
    if (st == BL_OK) {
        st = check_replicas(t); /* replica 0 of each stage writes it */
    }
    if (st == BL_OK) {
        st = bl_ckpt_save(t->rt, dir, t->model, t->velocity, &t->layout, &s, keep, BL_CKPT_NO_FAULT,
                          where, path != NULL ? n : sizeof scratch);
    }
    bl_mem_free(bl_rt_allocator(t->rt), s.control);
    if (st == BL_OK) {
        /* Parameters and momentum, 4 bytes each, plus small headers. */
        bl_log(t->rt, BL_LOG_INFO, "checkpoint %s: step %ld, %.1f MB in %.1f ms", where, t->step,
               8.0 * (double)t->model->param_count / 1e6, 1e3 * (bl_now_seconds() - t0));
    }
    return st;
}

/* The loaded run must be this run: the same global batches. */
static bl_status_t check_resumable(bl_trainer_t *t, const char *path, const bl_ckpt_state_t *s)
{
    const bl_train_config_t *c = &t->cfg;
    if (s->seed != c->seed || s->batch != c->batch || s->shuffle != c->shuffle) {
        return bl_fail(t->rt, BL_ERR_MISMATCH,
                       "resume: %s was saved with seed %llu, batch %d, shuffle %s; this run has "
                       "seed %llu, batch %d, shuffle %s",
                       path, (unsigned long long)s->seed, s->batch, s->shuffle ? "on" : "off",
                       (unsigned long long)c->seed, c->batch, c->shuffle ? "on" : "off");
    }
    return BL_OK;
}

/* Whether the checkpoint's shards fit this run's caps (no caps: they do). */
static int shards_fit_caps(const bl_trainer_t *t, const int *shards)
{
    for (int d = 0; t->shard_min != NULL && d < t->layout.replicas; d++) {
        if (shards[d] < t->shard_min[d] || shards[d] > t->shard_max[d]) {
            return 0;
        }
    }
    return 1;
}

/* "40,24": a shard plan as --shards takes it. */
static void format_shards(const int *shards, int count, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (int d = 0; d < count && used < n; d++) {
        int k = snprintf(out + used, n - used, "%s%d", d == 0 ? "" : ",", shards[d]);
        used += k > 0 ? (size_t)k : 0;
    }
}

/* A resume continues the checkpoint's plan. With the same number of
 * pipelines its shards replace the config's plan (or the even split), and
 * with the same number of stages its stage map replaces the config's (or
 * the balanced one): the run then goes on exactly as if never stopped,
 * whatever the command line gives. A configured plan that differs is named
 * in one info line. Saved shards outside this run's caps give way to the
 * plan the config gives, also with an info line. */
static bl_status_t adopt_plan(bl_trainer_t *t, const bl_ckpt_state_t *s, const char *path)
{
    bl_layout_t *l = &t->layout;
    int D = l->replicas, S = l->stages;
    char saved[512], mine[512];
    if (s->replicas == D && memcmp(t->shards, s->shards, (size_t)D * sizeof *t->shards) != 0) {
        format_shards(s->shards, D, saved, sizeof saved);
        format_shards(t->shards, D, mine, sizeof mine);
        if (shards_fit_caps(t, s->shards)) {
            if (t->cfg_shards_given) {
                bl_log(t->rt, BL_LOG_INFO,
                       "resume: %s's shard plan %s (plan v%ld) is kept; the configured plan %s "
                       "is not used",
                       path, saved, s->plan_version, mine);
            }
            memcpy(t->shards, s->shards, (size_t)D * sizeof *t->shards);
            locate_slice(t);
        } else {
            bl_log(t->rt, BL_LOG_INFO,
                   "resume: %s's shard plan %s lies outside this run's shard caps; the plan "
                   "starts as %s",
                   path, saved, mine);
        }
    }
    if (s->stages == S && memcmp(l->first, s->first, (size_t)(S + 1) * sizeof *l->first) != 0) {
        if (t->user_map) {
            format_map(s->first, S, saved, sizeof saved);
            format_map(l->first, S, mine, sizeof mine);
            bl_log(t->rt, BL_LOG_INFO,
                   "resume: %s's stage map %s is kept; the configured map %s is not used", path,
                   saved, mine);
        }
        memcpy(l->first, s->first, (size_t)(S + 1) * sizeof *l->first);
        return bl_agree(t->rt, rebuild_stage(t), BL_ERR_MISMATCH, "rebuilding the stages");
    }
    return BL_OK;
}

bl_status_t bl_trainer_resume(bl_trainer_t *t, const char *dir, int *resumed)
{
    if (t == NULL || dir == NULL || resumed == NULL) {
        return t == NULL ? BL_ERR_INVALID_ARG
                         : bl_fail(t->rt, BL_ERR_INVALID_ARG, "resume: NULL argument");
    }
    *resumed = 0;
    char path[4096];
    int found = 0;
    bl_status_t st = bl_ckpt_find(t->rt, dir, t->model, path, sizeof path, &found);
    if (st != BL_OK || !found) {
        return st;
    }
    bl_ckpt_state_t s = {0};
    st = bl_ckpt_load(t->rt, path, t->model, t->velocity, &s);
    if (st == BL_OK) {
        st = check_resumable(t, path, &s);
    }
    /* Every rank read the same files: a failure anywhere fails everywhere. */
    st = bl_agree(t->rt, st, BL_ERR_IO, "the resume");
    if (st == BL_OK) {
        st = bl_device_copies_upload(&t->dev, t->rt, t->velocity);
    }
    if (st == BL_OK) {
        t->step = s.step;
        t->whole_at = s.step; /* every rank loaded every layer */
        t->balancer.ctl.version = s.plan_version;
        st = adopt_plan(t, &s, path);
    }
    if (st == BL_OK) {
        bl_log(t->rt, BL_LOG_INFO,
               "resumed from %s at step %ld (saved on %d ranks: %d pipelines x %d stages)", path,
               s.step, s.ranks, s.replicas, s.stages);
        st = restore_control(t, &s, path);
    }
    if (st == BL_OK) {
        *resumed = 1;
    }
    bl_ckpt_state_free(t->rt, &s);
    return st;
}
