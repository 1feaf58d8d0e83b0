/* The language-model trainer's creation, teardown and accessors (lm_impl.h):
 * the config's checks, the model (from an llm.c file or GPT-2's
 * initialisation), the first plan and the start-up agreement. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "consistency.h"
#include "first_shards.h"
#include "gpt2_file.h"
#include "kernels.h"
#include "lm_impl.h"
#include "wait.h"

/* Checks the optimizer's settings. */
static bl_status_t check_adamw(bl_runtime_t *rt, const bl_adamw_config_t *o)
{
    if (!(o->lr > 0.0f) || !isfinite(o->lr)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "lr %g must be positive and finite", (double)o->lr);
    }
    if (!(o->beta1 >= 0.0f && o->beta1 < 1.0f) || !(o->beta2 >= 0.0f && o->beta2 < 1.0f)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "AdamW betas %g and %g must be in [0, 1)",
                       (double)o->beta1, (double)o->beta2);
    }
    if (!(o->eps > 0.0f) || !isfinite(o->eps)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "AdamW eps %g must be positive and finite",
                       (double)o->eps);
    }
    if (!(o->weight_decay >= 0.0f) || !isfinite(o->weight_decay)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "weight decay %g must be >= 0 and finite",
                       (double)o->weight_decay);
    }
    if (!(o->clip_grad_norm >= 0.0f) || !isfinite(o->clip_grad_norm)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "gradient-norm clip %g must be >= 0 and finite",
                       (double)o->clip_grad_norm);
    }
    return BL_OK;
}

/* Checks what the config asks for beyond the model's shape. */
static bl_status_t check_config(bl_runtime_t *rt, const bl_lm_config_t *c)
{
    if (c->version != BL_LM_CONFIG_VERSION) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "language-model config version %d is not this library's %d (start from "
                       "BL_LM_CONFIG_INIT)",
                       c->version, BL_LM_CONFIG_VERSION);
    }
    if (c->batch < 1 || c->seq_len < 1) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "batch %d (sequences) and sequence length %d must be positive", c->batch,
                       c->seq_len);
    }
    const int S = c->pipeline.stages;
    if (S < 1 || rt->size % S != 0) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "%d pipeline stages: the job's %d ranks must be a whole number of "
                       "pipelines",
                       S, rt->size);
    }
    if (!(c->mem_limit_bytes >= 0.0) || !isfinite(c->mem_limit_bytes)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "memory limit %g bytes must be finite and >= 0 (0: the cgroup's, if any)",
                       c->mem_limit_bytes);
    }
    if (c->precision != BL_PRECISION_FP32 && c->precision != BL_PRECISION_BF16) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "precision %d is neither BL_PRECISION_FP32 (0) nor BL_PRECISION_BF16 (1)",
                       c->precision);
    }
    if (c->balance.stage_plan_count != 0) {
        return bl_fail(rt, BL_ERR_UNSUPPORTED,
                       "a scripted stage plan: the language model's stages move by a policy "
                       "only");
    }
    if (!(c->diagnostics.timeout_s >= 0.0) || !isfinite(c->diagnostics.timeout_s)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "timeout %g s must be finite and >= 0 (0: none)",
                       c->diagnostics.timeout_s);
    }
    bl_status_t st = check_adamw(rt, &c->adamw);
    return st != BL_OK ? st : bl_lm_check_schedule(rt, &c->schedule, c->adamw.lr);
}

/* Makes the model on the rank's device (in its memory, when it has memory
 * of its own): its shape and parameters from init_from, or the config's
 * shape with GPT-2's initialisation from the seed. */
static bl_status_t setup_model(bl_lm_trainer_t *t)
{
    bl_runtime_t *rt = t->rt;
    const bl_lm_config_t *c = &t->cfg;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    bl_gpt2_file_t file = {0};
    bl_error_t err = {0};
    bl_gpt2_config_t shape = c->model;
    /* A model in host memory is reserved address space until the memory
     * check has passed (bl_lm_init_units): it reads its held part of the
     * file then, range by range. A device's model reads the file now. */
    const bl_device_t *dev = t->device;
    const int host = dev->memory == NULL;
    if (c->init_from != NULL) {
        bl_status_t got = host ? bl_gpt2_load_shape(c->init_from, &err, &file)
                               : bl_gpt2_load(c->init_from, a, &err, &file);
        if (got != BL_OK) {
            return bl_fail_from(rt, &err);
        }
        shape = file.config;
    }
    bl_status_t st = BL_OK;
    if (c->init_from != NULL) {
        st = bl_gpt2_check_seq_len(c->init_from, &shape, c->seq_len, &err);
    } else if (c->seq_len > shape.max_seq_len) {
        st = bl_error_set(&err, BL_ERR_INVALID_ARG,
                          "sequence length T = %d exceeds the model's max_seq_len maxT = %d",
                          c->seq_len, shape.max_seq_len);
    }
    if (st == BL_OK && c->init_from != NULL && t->stage_local) {
        /* Each stage reads its part: all must read the same file. */
        st = bl_gpt2_file_crc(c->init_from, &t->init_crc, &err);
    }
    /* The user layers' calls get the same device, so that their bl_math_*
     * helpers run where their pointers live. */
    if (st == BL_OK) {
        /* Under ZeRO-1 the moments are the slices' (lm_zero.h). */
        const unsigned flags = (t->zero_on ? BL_GPT2_NO_MOMENTS : 0u) | (host ? BL_GPT2_SPANS : 0u);
        st = bl_gpt2_create_with(&shape, bl_lm_device_kernels(t), dev->memory, a, flags, &err,
                                 &t->model);
    }
    if (st == BL_OK) {
        st = bl_gpt2_add_layers(t->model, c->layers, c->layer_count, dev, &err);
    }
    /* On a device, GPT-2's initialisation (the user layers' too), then the
     * file's tensors over the GPT-2 part; a host model's come after the
     * memory check. */
    if (st == BL_OK && host) {
        bl_gpt2_free(&file, a);
        return BL_OK;
    }
    if (st == BL_OK) {
        st = bl_gpt2_init_params(t->model, c->seed, &err);
    }
    if (st == BL_OK && c->init_from != NULL) {
        st = bl_gpt2_upload_gpt(t->model, file.params, &err);
    }
    bl_gpt2_free(&file, a);
    if (st != BL_OK && dev->memory != NULL) {
        /* A device's refusal (a kernel table without the transformer's
         * kernels, its memory full) names the rank and the device. */
        return bl_fail(rt, err.status, "rank %d (%s): %s", rt->rank, dev->name, err.msg);
    }
    return st == BL_OK ? bl_lm_device_init(t) : bl_fail_from(rt, &err);
}

/* The balancer's view of the config: a one-stage layer-trainer config with
 * the same batch, seed, shards, policy and diagnostics. */
static void balancer_view(const bl_lm_config_t *c, bl_train_config_t *tc)
{
    *tc = (bl_train_config_t)BL_TRAIN_CONFIG_INIT;
    tc->batch = c->batch;
    tc->seed = c->seed;
    tc->shuffle = c->shuffle;
    tc->plan = c->plan;
    tc->balance = c->balance;
    tc->diagnostics = c->diagnostics;
    tc->pipeline = c->pipeline;
}

/* The first plan, the sampler over the training sequences and the host
 * buffers of a batch. */
static bl_status_t setup_plan(bl_lm_trainer_t *t)
{
    bl_runtime_t *rt = t->rt;
    const bl_lm_config_t *c = &t->cfg;
    const int B = c->batch, T = c->seq_len, S = c->pipeline.stages, D = rt->size / S;
    const int replica = rt->rank / S;
    const int units = t->model->config.num_layers + 2; /* the embedding, the blocks, the head */
    const int capped = c->plan.shard_min != NULL || c->plan.shard_max != NULL;
    bl_part_allocator_t pa = bl_rt_part_allocator(rt);
    if (S > units) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "%d pipeline stages but the model has %d units (the embedding, %d blocks "
                       "and the head): every stage needs at least one",
                       S, units, units - 2);
    }
    if (bl_plan_init(&t->plan, D, S, units, B, capped, &pa) != 0 ||
        bl_plan_init(&t->next, D, S, units, B, 0, &pa) != 0) {
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for a %d-pipeline shard plan", D);
    }
    bl_status_t st = c->plan.stage_first != NULL
                         ? bl_layout_check_map(rt, units, S, c->plan.stage_first,
                                               c->plan.stage_count, t->plan.first)
                         : bl_lm_grid_balanced_map(rt, t->model, T, S, t->plan.first);
    char grid[96] = "";
    if (S > 1) {
        snprintf(grid, sizeof grid, " (%d ranks / %d stages)", rt->size, S);
    }
    if (st == BL_OK) {
        st = bl_first_shards(rt, &c->plan, B, S > 1 ? "pipeline" : "rank", grid, &t->plan);
    }
    if (st != BL_OK) {
        return st;
    }
    t->offset = bl_plan_offset(&t->plan, replica);
    t->local = (int)t->plan.shards[replica];
    t->capacity = capped ? (int)t->plan.shard_max[replica] : B;
    if (t->capacity < 1) {
        t->capacity = 1; /* evaluation still runs on a rank capped at 0 */
    }
    t->sequences = (t->train_count - 1) / T;
    bl_error_t err = {0};
    if (t->sequences < B) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "the training tokens (%ld) hold %ld sequences of T + 1 = %d tokens, fewer "
                       "than the batch of %d",
                       t->train_count, t->sequences, T + 1, B);
    }
    const bl_allocator_t *a = bl_rt_allocator(rt);
    if (bl_sampler_init(&t->sampler, t->sequences, B, c->seed, c->shuffle, a, &err) != BL_OK) {
        return bl_fail_from(rt, &err);
    }
    const size_t rows = (size_t)t->capacity * (size_t)T;
    t->indices = bl_mem_array(a, (size_t)B, sizeof *t->indices);
    t->tokens = bl_mem_array(a, rows, sizeof *t->tokens);
    t->targets = bl_mem_array(a, rows, sizeof *t->targets);
    if (t->indices == NULL || t->tokens == NULL || t->targets == NULL) {
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for a batch of %d sequences", t->capacity);
    }
    return bl_slowdowns_init(&t->slowdowns, rt, NULL, 0);
}

/* Checks that every rank holds the same config, tokens, model and plan
 * before step 0 (the initial parameters downloaded from a device).
 * Collective. */
static bl_status_t check_ranks_agree(bl_lm_trainer_t *t)
{
    bl_lm_state_t state;
    bl_status_t st =
        bl_agree(t->rt, bl_lm_host_state(t, &state), BL_ERR_CUDA, "reading the initial parameters");
    if (st != BL_OK) {
        return st;
    }
    const bl_lm_config_t *c = &t->cfg;
    const bl_gpt2_t *g = t->model;
    const bl_adamw_config_t *o = &c->adamw;
    const float adamw[] = {o->lr, o->beta1, o->beta2, o->eps, o->weight_decay, o->clip_grad_norm};
    const double sched[] = {(double)c->schedule.kind, (double)c->schedule.warmup_steps,
                            (double)c->schedule.decay_steps, (double)c->schedule.lr_min};
    /* Each user layer's place, size and decay (not its callbacks, whose
     * addresses differ between programs). */
    uint64_t users[1 + 4 * BL_LM_MAX_LAYERS] = {(uint64_t)g->user_count};
    for (int k = 0; k < g->user_count; k++) {
        users[1 + 4 * k] = (uint64_t)g->users[k].layer.after;
        users[2 + 4 * k] = (uint64_t)g->users[k].count;
        users[3 + 4 * k] = (uint64_t)g->users[k].layer.decay;
        users[4 + 4 * k] = (uint64_t)g->users[k].layer.inside;
    }
    const bl_check_field_t fields[] = {
        {"batch", BL_CHECK_INT, (uint64_t)c->batch},
        {"sequence length", BL_CHECK_INT, (uint64_t)c->seq_len},
        {"seed", BL_CHECK_INT, c->seed},
        {"shuffle", BL_CHECK_INT, (uint64_t)c->shuffle},
        {"model shape", BL_CHECK_DIGEST, bl_digest(&g->config, sizeof g->config)},
        {"user layers", BL_CHECK_DIGEST, bl_digest(users, sizeof users)},
        {"AdamW settings", BL_CHECK_DIGEST, bl_digest(adamw, sizeof adamw)},
        {"lr schedule", BL_CHECK_DIGEST, bl_digest(sched, sizeof sched)},
        {"training tokens", BL_CHECK_DIGEST,
         bl_digest(t->train, (size_t)t->train_count * sizeof *t->train)},
        /* A stage-local rank holds its stage's part: its replicas are
         * compared after the set-up (bl_lm_check_stage_replicas). */
        {"initial parameters", BL_CHECK_DIGEST,
         t->stage_local ? 0 : bl_digest(state.params, g->param_count * sizeof(float))},
        {"stage-local memory", BL_CHECK_INT, (uint64_t)t->stage_local},
        {"initial model file", BL_CHECK_INT, (uint64_t)t->init_crc},
        {"shards", BL_CHECK_DIGEST,
         bl_digest(t->plan.shards, (size_t)t->plan.groups * sizeof *t->plan.shards)},
        {"pipeline stages", BL_CHECK_INT, (uint64_t)c->pipeline.stages},
        {"node reduce", BL_CHECK_INT, (uint64_t)c->node_reduce},
        {"precision", BL_CHECK_INT, (uint64_t)c->precision},
        {"ZeRO-1", BL_CHECK_INT, (uint64_t)c->zero},
        {"micro-batches", BL_CHECK_INT, (uint64_t)c->pipeline.micro_batches},
        {"pipeline schedule", BL_CHECK_INT, (uint64_t)c->pipeline.schedule},
        {"stage map", BL_CHECK_DIGEST,
         bl_digest(t->plan.first, ((size_t)t->plan.stages + 1) * sizeof *t->plan.first)},
        {"adaptive settings", BL_CHECK_DIGEST, bl_balancer_digest(&t->tc)},
    };
    return bl_check_same_on_all_ranks(t->rt, "language-model trainer", fields,
                                      (int)(sizeof fields / sizeof fields[0]));
}

bl_status_t bl_lm_trainer_create(bl_runtime_t *rt, const bl_lm_config_t *cfg, const uint16_t *train,
                                 long count, bl_lm_trainer_t **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    if (rt == NULL || out == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    if (cfg == NULL || train == NULL) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "language-model trainer: NULL %s",
                       cfg == NULL ? "config" : "training tokens");
    }
    bl_status_t st = check_config(rt, cfg);
    bl_lm_trainer_t *t = NULL;
    if (st == BL_OK) {
        t = bl_mem_alloc(bl_rt_allocator(rt), sizeof *t);
        st = t == NULL ? bl_fail(rt, BL_ERR_NO_MEM, "no memory for a trainer") : BL_OK;
    }
    if (st == BL_OK) {
        memset(t, 0, sizeof *t);
        t->grid.tied = MPI_COMM_NULL; /* the grid is set up later, after the checks */
        t->grid.layout.pipe = MPI_COMM_NULL;
        t->grid.layout.dp = MPI_COMM_NULL;
        t->rt = rt;
        t->cfg = *cfg;
        t->device = &rt->device;
        t->host_at = -1;
        t->train = train;
        t->train_count = count;
        balancer_view(cfg, &t->tc);
        rt->wait_timeout_s = cfg->diagnostics.timeout_s;
        st = bl_lm_device_check(t);
        t->stage_local = cfg->pipeline.stage_local && cfg->pipeline.stages > 1;
    }
    if (st == BL_OK) {
        st = bl_lm_zero_check(rt, cfg, t->device, &t->zero_on);
    }
    if (st == BL_OK) {
        st = setup_model(t);
    }
    if (st == BL_OK) {
        st = bl_lm_check_tokens(rt, "training tokens", train, count, t->model->config.vocab_size);
    }
    if (st == BL_OK) {
        st = setup_plan(t);
    }
    /* The local checks are agreed on, then the collective set-up follows. */
    st = bl_agree(rt, st, BL_ERR_MISMATCH, "the language-model trainer's set-up");
    /* Every rank's memory is reported, and a rank over its limit stops the
     * job here, before a host model or the activations take memory, and
     * before the pipelines' and the reduction's set-up. */
    char *memory_json = NULL;
    if (st == BL_OK) {
        bl_mem_account_t mine;
        bl_lm_account_memory(t, t->plan.first, &mine);
        st = bl_mem_account_check(rt, &mine, cfg->mem_limit_bytes, &memory_json);
    }
    if (st == BL_OK) {
        /* Within its limit, a host model takes the memory and values of its
         * units (a stage-local stage's, else all), then the activations. */
        const int stage = rt->rank % cfg->pipeline.stages;
        const int first = t->stage_local ? t->plan.first[stage] : 0;
        const int last =
            t->stage_local ? t->plan.first[stage + 1] : t->model->config.num_layers + 2;
        st = bl_agree(rt, bl_lm_init_units(t, first, last), BL_ERR_IO,
                      "the model's initial parameters");
    }
    if (st == BL_OK) {
        bl_error_t err = {0};
        bl_status_t made = bl_gpt2_acts_init(t->model, t->capacity, cfg->seq_len, &t->acts, &err);
        st = bl_agree(rt, made == BL_OK ? BL_OK : bl_fail_from(rt, &err), BL_ERR_NO_MEM,
                      "the activations");
    }
    if (st == BL_OK) {
        st = check_ranks_agree(t);
    }
    if (st == BL_OK) {
        st = bl_lm_grid_init(&t->grid, rt, t->model, cfg->pipeline.stages,
                             cfg->pipeline.micro_batches, cfg->pipeline.schedule, t->capacity,
                             cfg->seq_len);
    }
    if (st == BL_OK) {
        bl_lm_grid_set_map(&t->grid, t->model, t->plan.first);
        if (t->stage_local) {
            st = bl_lm_check_replicas(t, "the stages' initial parameters");
        }
    }
    if (st == BL_OK) {
        st = bl_balancer_init(&t->balancer, rt, &t->tc, t->plan.shard_min, t->plan.shard_max);
    }
    if (st == BL_OK) {
        /* The first step line carries the start-up memory report. */
        bl_telemetry_attach_once(&t->balancer.tm, memory_json);
    }
    bl_mem_free(bl_rt_allocator(rt), memory_json);
    if (st == BL_OK) {
        /* Telemetry lines carry the stage map each step ran. */
        st = bl_balancer_track_pipeline(&t->balancer, cfg->pipeline.stages, NULL, NULL);
    }
    if (st == BL_OK) {
        st = bl_lm_restager_init(t);
    }
    if (st == BL_OK && t->zero_on) {
        /* ZeRO-1 takes precedence over the node-local reduction (which
         * runs with one stage only): it was asked for by name, while
         * node_reduce is on by default, and its slices are the node path's,
         * so the math is the same bits. With pipelines each stage's
         * replicas shard that stage's moments. */
        st = bl_lm_zero_create(rt, t->grid.layout.dp, t->grid.layout.pipe, t->model, t->grid.first,
                               t->grid.last, cfg->node_reduce && cfg->pipeline.stages == 1,
                               BL_LM_ZERO_BUCKET_FLOATS, INT_MAX, &t->zero);
    } else if (st == BL_OK) {
        st = bl_lm_node_create(rt, t->grid.layout.dp, t->model, cfg->node_reduce,
                               cfg->pipeline.stages, &t->node);
    }
    if (st == BL_OK) {
        st = bl_lm_device_report(t);
    }
    if (st != BL_OK) {
        bl_lm_trainer_destroy(t);
        return st;
    }
    char shards[256], map[256];
    bl_plan_format_shards(&t->plan, shards, sizeof shards);
    bl_plan_format_map(t->plan.first, t->plan.stages, map, sizeof map);
    bl_log(rt, BL_LOG_INFO,
           "GPT-2: %zu parameters (L=%d H=%d C=%d V=%d maxT=%d, %d user layer(s)), T=%d, "
           "batch %d sequences, %ld sequences per epoch, shards %s, %d stage(s) over units %s, "
           "%d micro-batch(es)",
           t->model->param_count, t->model->config.num_layers, t->model->config.num_heads,
           t->model->config.channels, t->model->config.vocab_size, t->model->config.max_seq_len,
           t->model->user_count, cfg->seq_len, cfg->batch, t->sequences, shards, t->plan.stages,
           map, cfg->pipeline.micro_batches);
    *out = t;
    return BL_OK;
}

void bl_lm_trainer_destroy(bl_lm_trainer_t *t)
{
    if (t == NULL) {
        return;
    }
    if (t->rt->gave_up) {
        return; /* reductions in flight may still write into the buffers */
    }
    const bl_allocator_t *a = bl_rt_allocator(t->rt);
    bl_part_allocator_t pa = bl_rt_part_allocator(t->rt);
    if (t->balancer.rt != NULL) {
        bl_balancer_free(&t->balancer);
    }
    bl_slowdowns_free(&t->slowdowns);
    bl_lm_restager_free(t);
    bl_lm_node_destroy(t->node); /* before the model: it points the model at its own arrays */
    bl_lm_zero_destroy(t->zero);
    bl_lm_grid_free(&t->grid);
    bl_sampler_free(&t->sampler);
    bl_gpt2_acts_free(t->model, &t->acts);
    bl_gpt2_destroy(t->model);
    bl_lm_device_free(t);
    bl_plan_free(&t->plan, &pa);
    bl_plan_free(&t->next, &pa);
    bl_mem_free(a, t->indices);
    bl_mem_free(a, t->tokens);
    bl_mem_free(a, t->targets);
    bl_mem_free(a, t);
}

bl_status_t bl_lm_trainer_emulate_slowdown(bl_lm_trainer_t *t, const bl_slowdown_t *list, int count)
{
    return t == NULL ? BL_ERR_INVALID_ARG : bl_slowdowns_replace(&t->slowdowns, t->rt, list, count);
}

long bl_lm_trainer_step(const bl_lm_trainer_t *t)
{
    return t != NULL ? t->step : 0;
}

long bl_lm_trainer_steps_per_epoch(const bl_lm_trainer_t *t)
{
    return t != NULL ? t->sampler.steps_per_epoch : 0;
}

const float *bl_lm_trainer_params(const bl_lm_trainer_t *t, size_t *count)
{
    if (count != NULL) {
        *count = t != NULL ? t->model->param_count : 0;
    }
    if (t == NULL) {
        return NULL;
    }
    /* On a device, the twin: current after every download (the end of a
     * run, a save, an evaluation). */
    return t->host != NULL ? t->host : t->model->params;
}

int bl_lm_trainer_local_batch(const bl_lm_trainer_t *t)
{
    return t != NULL ? t->local : 0;
}

int bl_lm_trainer_units(const bl_lm_trainer_t *t, int *first, int *last)
{
    *first = t != NULL ? t->grid.first : 0;
    *last = t != NULL ? t->grid.last : 0;
    return t != NULL && !t->stage_local;
}
