/* Checkpoints of a trainer (trainer_impl.h): its save, with the
 * controllers' state, and its resume, which continues the saved plan. */
#include <stdio.h>
#include <string.h>

#include "consistency.h"
#include "policy_state.h"
#include "trainer_impl.h"

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
        st = bl_trainer_check_replicas(t); /* replica 0 of each stage writes it */
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
            bl_trainer_locate_slice(t);
        } else {
            bl_log(t->rt, BL_LOG_INFO,
                   "resume: %s's shard plan %s lies outside this run's shard caps; the plan "
                   "starts as %s",
                   path, saved, mine);
        }
    }
    if (s->stages == S && memcmp(l->first, s->first, (size_t)(S + 1) * sizeof *l->first) != 0) {
        if (t->user_map) {
            bl_trainer_format_map(s->first, S, saved, sizeof saved);
            bl_trainer_format_map(l->first, S, mine, sizeof mine);
            bl_log(t->rt, BL_LOG_INFO,
                   "resume: %s's stage map %s is kept; the configured map %s is not used", path,
                   saved, mine);
        }
        memcpy(l->first, s->first, (size_t)(S + 1) * sizeof *l->first);
        return bl_agree(t->rt, bl_trainer_rebuild_stage(t), BL_ERR_MISMATCH,
                        "rebuilding the stages");
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
