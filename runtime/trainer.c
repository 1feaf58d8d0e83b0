/* The trainer: the step loop. One step = sample the global batch, forward,
 * loss, backward (per-sample gradient sums), one fused optimizer pass that
 * divides by B and updates, then the caller's callback. */
#include <math.h>
#include <string.h>
#include <time.h>

#include "dataset_impl.h"
#include "model_impl.h"
#include "sampler.h"

struct bl_trainer {
    bl_runtime_t *rt;
    bl_model_t *model;
    bl_dataset_t *data;
    bl_train_config_t cfg;
    bl_sampler_t sampler;
    bl_workspace_t ws; /* activations for up to cfg.batch rows */
    float *velocity;   /* momentum buffer, the params' layout */
    long *indices;     /* (B) this step's sample indices */
    float *x;          /* (B, features) this step's inputs */
    int *labels;       /* (B) */
    long step;         /* the next global step */
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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
                       "train config version %d; this library expects %d (use "
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
    return BL_OK;
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
    if (rt->size != 1) {
        return bl_fail(rt, BL_ERR_UNSUPPORTED,
                       "this build trains in one process; the communicator has %d ranks "
                       "(data parallelism is not implemented yet)",
                       rt->size);
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
    bl_workspace_free(bl_rt_allocator(t->rt), &t->ws);
    bl_mem_free(a, t->velocity);
    bl_mem_free(a, t->indices);
    bl_mem_free(a, t->x);
    bl_mem_free(a, t->labels);
    bl_mem_free(a, t);
}

/* One training step on the global batch of t->step. */
static bl_status_t train_step(bl_trainer_t *t, bl_step_info_t *info)
{
    bl_model_t *m = t->model;
    const bl_kernels_t *k = t->rt->device.kernels;
    int B = t->cfg.batch;
    double start = now_seconds();

    bl_sampler_batch(&t->sampler, t->step, t->indices);
    bl_status_t st = bl_dataset_gather(t->data, t->indices, B, t->x, t->labels);
    if (st != BL_OK) {
        return st;
    }
    const float *logits = NULL;
    st = bl_model_forward(m, &t->ws, B, t->x, &logits);
    if (st != BL_OK) {
        return st;
    }
    long correct = 0;
    double loss_sum = k->softmax_xent(B, bl_model_out_features(m), logits, t->labels,
                                      bl_model_dlogits(&t->ws), &correct);
    st = bl_model_backward(m, &t->ws, B, t->x, 0);
    if (st != BL_OK) {
        return st;
    }
    /* Gradients are per-sample sums; 1/B here makes them the batch mean. */
    k->sgd_update(m->param_count, m->params, t->velocity, m->grads, 1.0f / (float)B, t->cfg.lr,
                  t->cfg.momentum, t->cfg.weight_decay);

    info->step = t->step;
    info->steps_per_epoch = t->sampler.steps_per_epoch;
    info->epoch = t->step / t->sampler.steps_per_epoch;
    info->loss = loss_sum / B;
    info->accuracy = (double)correct / B;
    info->seconds = now_seconds() - start;
    t->step++;
    return BL_OK;
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

bl_status_t bl_trainer_evaluate(bl_trainer_t *t, bl_dataset_t *d, double *loss, double *accuracy)
{
    if (t == NULL || d == NULL || loss == NULL || accuracy == NULL) {
        return t == NULL ? BL_ERR_INVALID_ARG
                         : bl_fail(t->rt, BL_ERR_INVALID_ARG, "evaluate: NULL argument");
    }
    bl_status_t st = check_dataset(t->rt, t->model, d, "evaluation");
    if (st != BL_OK) {
        return st;
    }
    const bl_kernels_t *k = t->rt->device.kernels;
    int chunk = t->ws.max_batch;
    size_t features = (size_t)d->features;
    float *x = bl_mem_array(bl_rt_allocator(t->rt), (size_t)chunk * features, sizeof(float));
    int *labels = bl_mem_array(bl_rt_allocator(t->rt), (size_t)chunk, sizeof(int));
    double loss_sum = 0.0;
    long correct = 0;
    if (x == NULL || labels == NULL) {
        st = bl_fail(t->rt, BL_ERR_NO_MEM, "no memory to evaluate in chunks of %d", chunk);
        goto done;
    }
    /* Chunks of up to B samples through the training workspace. */
    for (long first = 0; first < d->count; first += chunk) {
        int n = d->count - first < chunk ? (int)(d->count - first) : chunk;
        const float *logits = NULL;
        st = bl_dataset_gather_range(d, first, n, x, labels);
        if (st == BL_OK) {
            st = bl_model_forward(t->model, &t->ws, n, x, &logits);
        }
        if (st != BL_OK) {
            goto done;
        }
        loss_sum +=
            k->softmax_xent(n, bl_model_out_features(t->model), logits, labels, NULL, &correct);
    }
    *loss = loss_sum / (double)d->count;
    *accuracy = (double)correct / (double)d->count;
done:
    bl_mem_free(bl_rt_allocator(t->rt), x);
    bl_mem_free(bl_rt_allocator(t->rt), labels);
    return st;
}
