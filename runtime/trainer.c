/* The trainer: the step loop, one process or data-parallel. One step =
 * sample the global batch (the same on every rank), forward and loss on this
 * rank's contiguous slice of it, backward (per-sample gradient sums) with
 * bucketed all-reduces posted as layers finish, wait, then one fused
 * optimizer pass that divides by B and updates — identically on every rank. */
#include <math.h>
#include <string.h>

#include "balancer.h"
#include "consistency.h"
#include "dataset_impl.h"
#include "grad_sync.h"
#include "model_impl.h"
#include "partition.h"
#include "sampler.h"

struct bl_trainer {
    bl_runtime_t *rt;
    bl_model_t *model;
    bl_dataset_t *data;
    bl_train_config_t cfg; /* cfg.shards points at shards below */
    int *shards;           /* (P) samples of each rank's slice; sums to B */
    int offset;            /* this rank's slice: [offset, offset + local) of the batch */
    int local;
    bl_sampler_t sampler;
    bl_balancer_t balancer; /* slowdowns, telemetry, the controller */
    bl_grad_sync_t sync;    /* used when P > 1 */
    bl_workspace_t ws;      /* activations for up to B rows (training slices, eval chunks) */
    float *velocity;        /* momentum buffer, the params' layout */
    long *indices;          /* (B) this step's sample indices (the whole global batch) */
    float *x;               /* (local, features) this rank's inputs */
    int *labels;            /* (local) */
    long step;              /* the next global step */
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
    if (c->version < 1 || c->version > BL_TRAIN_CONFIG_VERSION) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "train config version %d; this library expects 1..%d (use "
                       "BL_TRAIN_CONFIG_INIT)",
                       c->version, BL_TRAIN_CONFIG_VERSION);
    }
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
    if (!(c->bucket_mb > 0.0) || !(c->bucket_mb <= 4096.0)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "bucket size %g MiB must be in (0, 4096]",
                       c->bucket_mb);
    }
    return BL_OK;
}

/* Fills t->shards from the config (checked) or as an even split. */
static bl_status_t plan_shards(bl_trainer_t *t)
{
    const bl_train_config_t *c = &t->cfg;
    int P = t->rt->size;
    if (c->shards == NULL) {
        /* B/P each, the first B%P ranks one more. */
        long *even = bl_mem_array(bl_rt_allocator(t->rt), (size_t)P, sizeof *even);
        if (even == NULL) {
            return bl_fail(t->rt, BL_ERR_NO_MEM, "no memory for a %d-rank shard plan", P);
        }
        bl_split_even(c->batch, P, even);
        for (int r = 0; r < P; r++) {
            t->shards[r] = (int)even[r];
        }
        bl_mem_free(bl_rt_allocator(t->rt), even);
        return BL_OK;
    }
    if (c->shard_count != P) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG,
                       "the shard plan has %d sizes but the job has %d ranks", c->shard_count, P);
    }
    long sum = 0;
    for (int r = 0; r < P; r++) {
        if (c->shards[r] < 0) {
            return bl_fail(t->rt, BL_ERR_INVALID_ARG, "shard of rank %d is %d; it must be >= 0", r,
                           c->shards[r]);
        }
        sum += c->shards[r];
        t->shards[r] = c->shards[r];
    }
    if (sum != c->batch) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG,
                       "the shard sizes sum to %ld but the global batch is %d", sum, c->batch);
    }
    return BL_OK;
}

/* This rank's slice of the batch under the current plan. */
static void locate_slice(bl_trainer_t *t)
{
    t->offset = 0;
    for (int r = 0; r < t->rt->rank; r++) {
        t->offset += t->shards[r];
    }
    t->local = t->shards[t->rt->rank];
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
        {"shard plan", BL_CHECK_DIGEST,
         bl_digest(t->shards, (size_t)t->rt->size * sizeof *t->shards)},
        {"model layers", BL_CHECK_DIGEST, bl_digest(layers, n * sizeof layers[0])},
        {"model input width", BL_CHECK_INT, (uint64_t)m->in_features},
        {"parameter count", BL_CHECK_INT, m->param_count},
        {"initial parameters", BL_CHECK_DIGEST,
         bl_digest(m->params, m->param_count * sizeof(float))},
        {"training set samples", BL_CHECK_INT, (uint64_t)t->data->count},
        {"training set features", BL_CHECK_INT, (uint64_t)t->data->features},
        {"training set classes", BL_CHECK_INT, (uint64_t)t->data->classes},
        {"rebalancing settings", BL_CHECK_DIGEST, bl_balancer_digest(c)},
    };
    return bl_check_same_on_all_ranks(t->rt, "start-up check", fields,
                                      (int)(sizeof fields / sizeof fields[0]));
}

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
    bl_status_t st = check_config(rt, cfg);
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
    t->cfg = *cfg;
    t->shards = bl_mem_array(a, (size_t)rt->size, sizeof *t->shards);
    if (t->shards == NULL) {
        st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for a %d-rank shard plan", rt->size);
        goto fail;
    }
    st = plan_shards(t);
    if (st != BL_OK) {
        goto fail;
    }
    t->cfg.shards = t->shards;
    t->cfg.shard_count = rt->size;
    locate_slice(t);

    bl_error_t err = {0};
    st = bl_sampler_init(&t->sampler, train->count, cfg->batch, cfg->seed, cfg->shuffle, a, &err);
    if (st != BL_OK) {
        st = bl_fail_from(rt, &err);
        goto fail;
    }
    st = bl_workspace_init(m, cfg->batch, &t->ws);
    if (st != BL_OK) {
        goto fail;
    }
    t->velocity = bl_mem_array_zeroed(a, m->param_count, sizeof(float));
    t->indices = bl_mem_array(a, (size_t)cfg->batch, sizeof *t->indices);
    t->x = bl_mem_array(a, (size_t)cfg->batch * (size_t)train->features, sizeof(float));
    t->labels = bl_mem_array(a, (size_t)cfg->batch, sizeof(int));
    if (t->velocity == NULL || t->indices == NULL || t->x == NULL || t->labels == NULL) {
        st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for the optimizer state and a batch of %d",
                     cfg->batch);
        goto fail;
    }
    st = bl_balancer_init(&t->balancer, rt, cfg);
    if (st != BL_OK) {
        goto fail;
    }
    if (rt->size > 1) {
        st = bl_grad_sync_init(&t->sync, rt, m, (size_t)(cfg->bucket_mb * 1024.0 * 1024.0));
        if (st != BL_OK) {
            goto fail;
        }
    }
    /* Last, so every rank has reached it with a complete trainer: a
     * mismatch is reported by all ranks together. */
    st = check_ranks_agree(t);
    if (st != BL_OK) {
        goto fail;
    }
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
    const bl_allocator_t *a = bl_rt_allocator(t->rt);
    bl_sampler_free(&t->sampler);
    bl_balancer_free(&t->balancer);
    bl_grad_sync_free(&t->sync);
    bl_workspace_free(a, &t->ws);
    bl_mem_free(a, t->shards);
    bl_mem_free(a, t->velocity);
    bl_mem_free(a, t->indices);
    bl_mem_free(a, t->x);
    bl_mem_free(a, t->labels);
    bl_mem_free(a, t);
}

/* The optimizer on parameters [first, first + count). Gradients are
 * per-sample sums over the global batch; 1/B makes them its mean. Every
 * rank applies the same element-wise update to the same values, so slices
 * in any order give the same parameters as one pass. */
static void update_slice(size_t first, size_t count, void *trainer)
{
    bl_trainer_t *t = trainer;
    bl_model_t *m = t->model;
    t->rt->device.kernels->sgd_update(count, m->params + first, t->velocity + first,
                                      m->grads + first, 1.0f / (float)t->cfg.batch, t->cfg.lr,
                                      t->cfg.momentum, t->cfg.weight_decay);
}

/* One training step on the global batch of t->step. */
static bl_status_t train_step(bl_trainer_t *t, bl_step_info_t *info)
{
    bl_model_t *m = t->model;
    const bl_kernels_t *k = t->rt->device.kernels;
    int B = t->cfg.batch;
    int parallel = t->rt->size > 1;
    bl_step_record_t record = {.step = (double)t->step,
                               .samples = t->local,
                               .start_s = bl_balancer_now(&t->balancer),
                               .plan = (double)t->balancer.ctl.version};
    double start = bl_now_seconds();

    /* Every rank draws the whole global batch and computes its slice. */
    bl_sampler_batch(&t->sampler, t->step, t->indices);
    bl_status_t st = bl_dataset_gather(t->data, t->indices + t->offset, t->local, t->x, t->labels);
    if (st != BL_OK) {
        return st;
    }
    const float *logits = NULL;
    st = bl_model_forward(m, &t->ws, t->local, t->x, &logits);
    if (st != BL_OK) {
        return st;
    }
    long correct = 0;
    double loss_sum = k->softmax_xent(t->local, bl_model_out_features(m), logits, t->labels,
                                      bl_model_dlogits(&t->ws), &correct);
    st = bl_model_backward(m, &t->ws, t->local, t->x, 0, parallel ? bl_grad_sync_layer_done : NULL,
                           &t->sync);
    if (st != BL_OK) {
        return st;
    }
    double computed = bl_now_seconds();
    record.compute_s = bl_balancer_slow_down(&t->balancer, t->step, computed - start);
    double synced = bl_now_seconds();
    if (parallel) {
        /* Gradient sums, loss and accuracy over every rank's samples; each
         * bucket is updated as soon as its reduction lands. */
        st = bl_grad_sync_finish(&t->sync, &loss_sum, &correct, update_slice, t);
        if (st != BL_OK) {
            return st;
        }
    } else {
        update_slice(0, m->param_count, t);
    }
    record.sync_s = bl_now_seconds() - synced;

    info->step = t->step;
    info->steps_per_epoch = t->sampler.steps_per_epoch;
    info->epoch = t->step / t->sampler.steps_per_epoch;
    info->loss = loss_sum / B;
    info->accuracy = (double)correct / B;
    info->seconds = bl_now_seconds() - start;
    t->step++;
    /* Telemetry, and at a window's end the controller's plan for the next
     * step (the same on every rank). */
    st = bl_balancer_after_step(&t->balancer, &record, info, t->shards);
    if (st == BL_OK && info->plan_changed) {
        locate_slice(t);
    }
    return st;
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
            return st;
        }
        if (cb != NULL && cb(&info, cb_arg) != 0) {
            break;
        }
    }
    /* The last step's telemetry, so the files are complete after a run. */
    return bl_balancer_flush(&t->balancer);
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
 * chunks through the training workspace. */
static bl_status_t evaluate_range(bl_trainer_t *t, bl_dataset_t *d, long first, long count,
                                  double *loss_sum, long *correct)
{
    const bl_kernels_t *k = t->rt->device.kernels;
    const bl_allocator_t *a = bl_rt_allocator(t->rt);
    int chunk = t->ws.max_batch;
    float *x = bl_mem_array(a, (size_t)chunk * (size_t)d->features, sizeof(float));
    int *labels = bl_mem_array(a, (size_t)chunk, sizeof(int));
    bl_status_t st = BL_OK;
    if (x == NULL || labels == NULL) {
        st = bl_fail(t->rt, BL_ERR_NO_MEM, "no memory to evaluate in chunks of %d", chunk);
        goto done;
    }
    for (long done = 0; done < count; done += chunk) {
        int n = count - done < chunk ? (int)(count - done) : chunk;
        const float *logits = NULL;
        st = bl_dataset_gather_range(d, first + done, n, x, labels);
        if (st == BL_OK) {
            st = bl_model_forward(t->model, &t->ws, n, x, &logits);
        }
        if (st != BL_OK) {
            goto done;
        }
        *loss_sum +=
            k->softmax_xent(n, bl_model_out_features(t->model), logits, labels, NULL, correct);
    }
done:
    bl_mem_free(a, x);
    bl_mem_free(a, labels);
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
        int rc = MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, rt->comm);
        if (rc != MPI_SUCCESS) {
            return bl_fail_mpi(rt, rc, "MPI_Allreduce of the evaluation");
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
