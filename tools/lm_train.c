/* ballast-train --model gpt2 (lm_train.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lm_layers.h"
#include "lm_train.h"
#include "run_hooks.h"

#define LOSS_WINDOW 20 /* the summary's train_loss: the mean of the last steps */

typedef struct lm_progress {
    const train_options_t *opt;
    bl_runtime_t *rt;
    bl_lm_trainer_t *trainer;
    const uint16_t *val;
    long val_count;
    long total_steps;
    double start, last_print;
    long first; /* the step this process started from (a resume's) */
    long done, last_step;
    double window_loss;
    long window_tokens;
    double recent[LOSS_WINDOW];
    bl_status_t eval_status;
    run_hooks_t hooks; /* the test hooks, the stop on a signal, the periodic checkpoints */
} lm_progress_t;

/* The training and validation streams: the files the options name, or
 * the training stream's tail held out. */
typedef struct lm_data {
    bl_token_set_t *train_set, *val_set;
    const uint16_t *train, *val;
    long train_count, val_count;
} lm_data_t;

static bl_status_t open_data(bl_runtime_t *rt, const lm_options_t *lm, lm_data_t *d)
{
    memset(d, 0, sizeof *d);
    bl_status_t st = lm->text != NULL ? bl_tokens_open_text(rt, lm->text, &d->train_set)
                                      : bl_tokens_open(rt, lm->tokens, 0, &d->train_set);
    if (st == BL_OK && lm->val_tokens != NULL) {
        st = bl_tokens_open(rt, lm->val_tokens, 0, &d->val_set);
    }
    if (st != BL_OK) {
        return st;
    }
    d->train = bl_token_set_data(d->train_set);
    d->train_count = bl_token_set_count(d->train_set);
    if (d->val_set != NULL) {
        d->val = bl_token_set_data(d->val_set);
        d->val_count = bl_token_set_count(d->val_set);
    } else if (lm->val_fraction > 0.0) {
        d->val_count = (long)((double)d->train_count * lm->val_fraction);
        d->train_count -= d->val_count;
        d->val = d->train + d->train_count;
    }
    return BL_OK;
}

static void close_data(lm_data_t *d)
{
    bl_token_set_destroy(d->train_set);
    bl_token_set_destroy(d->val_set);
}

/* The trainer's config from the options; steps is the run's length, where a
 * cosine schedule ends. */
static void make_config(const train_options_t *o, long steps, bl_lm_config_t *c)
{
    const lm_options_t *lm = &o->lm;
    *c = (bl_lm_config_t)BL_LM_CONFIG_INIT;
    c->model = lm->shape;
    c->init_from = lm->init_from;
    c->seq_len = lm->seq_len;
    c->batch = o->batch;
    c->seed = o->seed;
    c->shuffle = o->shuffle;
    c->adamw = (bl_adamw_config_t){.lr = o->lr,
                                   .beta1 = lm->beta1,
                                   .beta2 = lm->beta2,
                                   .eps = lm->eps,
                                   .weight_decay = o->weight_decay,
                                   .clip_grad_norm = lm->clip};
    c->schedule = (bl_lr_schedule_t){.kind = lm->schedule,
                                     .warmup_steps = lm->warmup,
                                     .decay_steps = steps,
                                     .lr_min = lm->lr_min};
    c->plan.shards = o->shard_count > 0 ? o->shards : NULL;
    c->plan.shard_count = o->shard_count;
    c->plan.shard_min = o->shard_min_count > 0 ? o->shard_min : NULL;
    c->plan.shard_max = o->shard_max_count > 0 ? o->shard_max : NULL;
    c->plan.shard_cap_count = o->shard_min_count > 0 ? o->shard_min_count : o->shard_max_count;
    c->plan.stage_first = o->stage_count > 0 ? o->stage_first : NULL;
    c->plan.stage_count = o->stage_count;
    c->pipeline = (bl_pipeline_config_t){.stages = o->pp,
                                         .micro_batches = o->micro_batches,
                                         .schedule = o->schedule,
                                         .stage_local = o->stage_local};
    c->balance.policy = o->policy;
    c->balance.rebalance_every = o->rebalance_every;
    c->balance.policy_file = o->policy_file;
    c->diagnostics.telemetry_path = o->telemetry_path;
    c->diagnostics.trace_path = o->trace_path;
    c->diagnostics.timeout_s = o->timeout_s;
    c->mem_limit_bytes = o->mem_limit_bytes;
    c->node_reduce = o->node_reduce;
    c->precision = o->lm.precision;
    c->zero = o->lm.zero;
}

static double evaluate(lm_progress_t *p)
{
    double loss = NAN;
    if (p->val_count > 0 && p->eval_status == BL_OK) {
        p->eval_status = bl_lm_trainer_evaluate(p->trainer, p->val, p->val_count,
                                                p->opt->lm.val_sequences, &loss);
    }
    return loss;
}

/* After every step on every rank: the loss window, the evaluations and
 * rank 0's progress lines. */
static int on_step(const bl_step_info_t *info, void *arg)
{
    lm_progress_t *p = arg;
    p->done = info->step + 1;
    /* Before anything else: the test hooks, the agreement to stop on a
     * signal, the periodic checkpoint. */
    if (run_hooks_between_steps(&p->hooks, info->step)) {
        return 1;
    }
    p->window_loss += info->loss;
    p->window_tokens += info->tokens;
    p->recent[info->step % LOSS_WINDOW] = info->loss;
    const lm_options_t *lm = &p->opt->lm;
    if (lm->val_every > 0 && p->done % lm->val_every == 0 && p->done < p->total_steps) {
        double val = evaluate(p);
        if (p->eval_status != BL_OK) {
            return 1;
        }
        if (bl_runtime_rank(p->rt) == 0) {
            printf("eval: step %ld val_loss=%.6f\n", p->done, val);
        }
    }
    double now = MPI_Wtime();
    int last = p->done == p->total_steps;
    if (p->opt->quiet || bl_runtime_rank(p->rt) != 0 ||
        (!last && now - p->last_print < p->opt->progress_seconds)) {
        return 0;
    }
    long steps = p->done - p->last_step;
    char extra[96] = "";
    if (info->lb_efficiency > 0.0) {
        snprintf(extra, sizeof extra, " balance %.2f plan v%ld%s%s", info->lb_efficiency,
                 info->plan_version, info->decision != NULL ? " " : "",
                 info->decision != NULL ? info->decision : "");
    }
    printf("step %ld/%ld loss %.4f tokens/s %.0f lr %.3g grad_norm %.3f%s\n", p->done,
           p->total_steps, p->window_loss / (double)steps,
           (double)p->window_tokens / (now - p->last_print), info->lr, info->grad_norm, extra);
    fflush(stdout);
    p->last_print = now;
    p->last_step = p->done;
    p->window_loss = 0.0;
    p->window_tokens = 0;
    return 0;
}

/* The trainer's own save, for the periodic checkpoints. */
static bl_status_t save_periodic(void *arg)
{
    const lm_progress_t *p = arg;
    return bl_lm_trainer_save_checkpoint(p->trainer, p->opt->checkpoint_dir, p->opt->keep, NULL, 0);
}

/* Continues from the newest checkpoint in --checkpoint-dir, if any. */
static bl_status_t resume(bl_runtime_t *rt, const train_options_t *o, bl_lm_trainer_t *t)
{
    int resumed = 0;
    bl_status_t st = bl_lm_trainer_resume(t, o->checkpoint_dir, &resumed);
    if (st == BL_OK && !resumed) {
        bl_log(rt, BL_LOG_INFO, "resume: no checkpoint in %s; starting from step 0",
               o->checkpoint_dir);
    }
    return st;
}

/* Trains with the data open. *stopped: a signal stopped the run after a
 * checkpoint. */
static void free_adapters(lm_adapter_t *a, int count)
{
    for (int k = 0; k < count; k++) {
        lm_adapter_free(&a[k]);
    }
}

static bl_status_t run(bl_runtime_t *rt, const train_options_t *o, const lm_data_t *d, int *stopped)
{
    const lm_options_t *lm = &o->lm;
    long steps = o->steps;
    if (steps < 0) {
        steps = o->epochs * (((d->train_count - 1) / lm->seq_len) / o->batch);
    }
    bl_lm_config_t cfg;
    make_config(o, steps, &cfg);
    /* The user layers of --adapter and --token-shift; the adapters' states
     * (their scratch) live until the trainer is gone. */
    lm_adapter_t adapters[BL_LM_MAX_LAYERS] = {{0}};
    bl_lm_layer_t layers[BL_LM_MAX_LAYERS];
    for (int k = 0; k < lm->layer_count; k++) {
        const struct lm_layer_spec *s = &lm->layers[k];
        adapters[k].rank = s->rank;
        layers[k] = (bl_lm_layer_t){.after = s->after,
                                    .ops = s->shift ? lm_token_shift_ops : lm_adapter_ops,
                                    .state = s->shift ? NULL : &adapters[k],
                                    .decay = !s->shift,
                                    .inside = s->inside};
    }
    cfg.layers = layers;
    cfg.layer_count = lm->layer_count;
    bl_lm_trainer_t *t = NULL;
    bl_status_t st = bl_lm_trainer_create(rt, &cfg, d->train, d->train_count, &t);
    if (st == BL_OK && o->slowdown_count > 0) {
        st = bl_lm_trainer_emulate_slowdown(t, o->slowdowns, o->slowdown_count);
    }
    if (st == BL_OK && o->resume) {
        st = resume(rt, o, t);
    }
    const long first = bl_lm_trainer_step(t);
    lm_progress_t p = {.opt = o,
                       .rt = rt,
                       .trainer = t,
                       .val = d->val,
                       .val_count = d->val_count,
                       .total_steps = steps,
                       .first = first,
                       .done = first,
                       .last_step = first};
    double seconds = 0.0;
    if (st == BL_OK) {
        run_hooks_init(&p.hooks, rt, o, steps, save_periodic, &p);
        p.start = p.last_print = MPI_Wtime();
        st = bl_lm_trainer_run(t, steps > first ? steps - first : 0, on_step, &p);
        seconds = MPI_Wtime() - p.start;
    }
    if (st == BL_OK) {
        st = p.eval_status != BL_OK ? p.eval_status : p.hooks.ckpt_status;
    }
    if (st == BL_OK && o->checkpoint_dir != NULL) {
        char path[4096];
        st = bl_lm_trainer_save_checkpoint(t, o->checkpoint_dir, o->keep, path, sizeof path);
        if (st == BL_OK && p.hooks.stopped) {
            *stopped = 1;
            if (bl_runtime_rank(rt) == 0) {
                printf("stopped: after step %ld by a signal; checkpoint %s\n", p.done - 1, path);
                fflush(stdout);
            }
            bl_lm_trainer_destroy(t);
            free_adapters(adapters, lm->layer_count);
            return st;
        }
    }
    double val = NAN;
    if (st == BL_OK) {
        val = evaluate(&p);
        st = p.eval_status;
    }
    if (st == BL_OK && bl_runtime_rank(rt) == 0) {
        long ran = p.done - p.first; /* steps this process trained */
        long n = ran < LOSS_WINDOW ? ran : LOSS_WINDOW;
        double recent = 0.0; /* slots not yet written hold 0 */
        for (long i = 0; i < LOSS_WINDOW; i++) {
            recent += p.recent[i];
        }
        printf("summary: steps=%ld tokens_per_s=%.1f train_loss=%.6f val_loss=%.6f\n", p.done,
               seconds > 0.0 ? (double)ran * o->batch * lm->seq_len / seconds : 0.0,
               n > 0 ? recent / (double)n : 0.0, val);
        fflush(stdout);
    }
    if (st == BL_OK && lm->save_model != NULL) {
        st = bl_lm_trainer_save_model(t, lm->save_model);
    }
    bl_lm_trainer_destroy(t);
    free_adapters(adapters, lm->layer_count);
    return st;
}

bl_status_t lm_train(bl_runtime_t *rt, const train_options_t *o, int *reported, int *stopped)
{
    lm_data_t d;
    bl_status_t st = open_data(rt, &o->lm, &d);
    /* Every rank reads the files: one that fails stops them all. */
    int failed = 0;
    bl_status_t agreed = bl_runtime_any(rt, st != BL_OK, &failed);
    if (st == BL_OK && agreed != BL_OK) {
        st = agreed;
    } else if (st == BL_OK && failed) {
        st = BL_ERR_IO;
        if (bl_runtime_rank(rt) == 0) {
            fprintf(stderr, "ballast-train: another rank could not read the token files\n");
        }
        *reported = 1;
        close_data(&d);
        return st;
    }
    if (st == BL_OK) {
        st = run(rt, o, &d, stopped);
    }
    close_data(&d);
    if (st != BL_OK) {
        fprintf(stderr, "ballast-train: rank %d: %s: %s\n", bl_runtime_rank(rt),
                bl_status_string(st), bl_last_error(rt));
        fflush(stderr);
        *reported = 1;
    }
    return st;
}
