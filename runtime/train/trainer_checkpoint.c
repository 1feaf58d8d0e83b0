/* A trainer's checkpoints (trainer_impl.h): the save, with the controllers'
 * state, and the resume, which continues the saved plan. */
#include <stdio.h>
#include <string.h>

#include "checkpoint_file.h"
#include "consistency.h"
#include "trainer_impl.h"
#include "wait.h"

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
                         .ranks = t->rt->size,
                         .plan = t->plan};
    double t0 = bl_now_seconds();
    char *where = path != NULL ? path : scratch;
    /* Under ZeRO-1 a save gathers the stage's whole momentum (the file and the
     * replica check need it) and narrows it again afterwards. */
    const int narrow_after = t->zero && !t->momentum_whole;
    /* A device rank's host arrays are current only after a run, so a save (from
     * a step callback) downloads them first. Every rank takes part in gathering
     * the controllers' state even after a failed download (the others wait in
     * it), and rank 0 writes the manifest with it. */
    bl_status_t down = bl_device_copies_download(&t->dev, t->rt, t->velocity);
    bl_status_t st = bl_control_save(&t->control, &s);
    st = bl_agree(t->rt, st != BL_OK ? st : down, BL_ERR_NO_MEM,
                  "gathering the parameters and the controllers' state");
    if (st == BL_OK) {
        st = bl_agree(t->rt, bl_trainer_gather_momentum(t), BL_ERR_MISMATCH,
                      "gathering the momentum (ZeRO-1)");
    }
    if (st == BL_OK) {
        st = bl_trainer_check_replicas(t); /* replica 0 of each stage writes the stage's file */
    }
    if (st == BL_OK) {
        st = bl_ckpt_save(t->rt, dir, t->model, t->velocity, &t->layout, &s, keep, BL_CKPT_NO_FAULT,
                          where, path != NULL ? n : sizeof scratch);
    }
    if (narrow_after) { /* every rank alike, whatever its gather did */
        bl_status_t narrowed = bl_agree(t->rt, bl_trainer_narrow_momentum(t), BL_ERR_NO_MEM,
                                        "narrowing the momentum to its ZeRO-1 slice");
        st = st != BL_OK ? st : narrowed;
    }
    bl_mem_free(bl_rt_allocator(t->rt), s.control);
    if (st == BL_OK) {
        /* The parameters and the momentum take 4 bytes each, plus small
         * headers. */
        bl_log(t->rt, BL_LOG_INFO, "checkpoint %s: step %ld, %.1f MB in %.1f ms", where, t->step,
               8.0 * (double)t->model->param_count / 1e6, 1e3 * (bl_now_seconds() - t0));
    }
    return st;
}

/* Checks that the loaded run is this run, with the same global batches: the
 * same seed, batch and shuffle (BL_ERR_MISMATCH naming both if not). */
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

/* Returns whether the checkpoint's shards fit this run's caps (without caps,
 * they do). */
static int shards_fit_caps(const bl_plan_t *p, const long *shards)
{
    for (int d = 0; p->shard_min != NULL && d < p->groups; d++) {
        if (shards[d] < p->shard_min[d] || shards[d] > p->shard_max[d]) {
            return 0;
        }
    }
    return 1;
}

/* A resume continues the checkpoint's plan and takes its plan version. With the
 * same number of pipelines, its shards replace the config's plan (or the even
 * split), and with the same number of stages, its stage map replaces the
 * config's (or the balanced one, bl_ckpt_adopt_map): the run then goes on
 * exactly as if never stopped, whatever the command line gives. A configured
 * plan or a map that differs is named in one info line. Saved shards outside
 * this run's caps give way to the plan that the config gives, also with an
 * info line. A new stage map rebuilds the stages, agreed over the job. */
static bl_status_t adopt_plan(bl_trainer_t *t, const bl_plan_t *saved, const char *path)
{
    bl_plan_t *p = &t->plan;
    int D = p->groups;
    char theirs[512], mine[512];
    p->version = saved->version;
    if (saved->groups == D && memcmp(p->shards, saved->shards, (size_t)D * sizeof *p->shards)) {
        bl_plan_format_shards(saved, theirs, sizeof theirs);
        bl_plan_format_shards(p, mine, sizeof mine);
        if (shards_fit_caps(p, saved->shards)) {
            if (t->cfg_shards_given) {
                bl_log(t->rt, BL_LOG_INFO,
                       "resume: %s's shard plan %s (plan v%ld) is kept; the configured plan %s "
                       "is not used",
                       path, theirs, saved->version, mine);
            }
            memcpy(p->shards, saved->shards, (size_t)D * sizeof *p->shards);
            bl_trainer_locate_slice(t);
        } else {
            bl_log(t->rt, BL_LOG_INFO,
                   "resume: %s's shard plan %s lies outside this run's shard caps; the plan "
                   "starts as %s",
                   path, theirs, mine);
        }
    }
    if (bl_ckpt_adopt_map(t->rt, path, saved->first, saved->stages, p->first, p->stages,
                          t->user_map ? "configured" : "balanced")) {
        return bl_agree(t->rt, bl_trainer_rebuild_stage(t), BL_ERR_MISMATCH,
                        "rebuilding the stages");
    }
    return BL_OK;
}

/* The resume reads the checkpoint's state first, checks that it continues this
 * run and adopts its plan (which may rebuild the stage for the saved map), and
 * only then loads the layers that this rank holds under that map
 * (bl_trainer_held_layers: its stage's under stage-local memory, else every
 * layer), so that a rank never touches another stage's memory. Every step's
 * failure is agreed over the job, so every rank fails together. A failure
 * before the plan is adopted leaves the trainer as it was. A failed load
 * leaves the parameters and momentum that the rank holds as they were, but
 * by then the plan may be the saved one and the stage rebuilt for it (with
 * memory for other layers under stage-local memory), and after a failed
 * upload the host arrays hold the checkpoint's layers but the device does
 * not: a trainer whose resume failed must not be used, only destroyed
 * (ballast-train ends the job on a failed resume). */
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
    st = bl_ckpt_read_state(t->rt, path, t->model, &s);
    if (st == BL_OK) {
        st = check_resumable(t, path, &s);
    }
    /* Every rank read the same files, so a failure anywhere fails everywhere. */
    st = bl_agree(t->rt, st, BL_ERR_IO, "the resume");
    if (st == BL_OK) {
        st = adopt_plan(t, &s.plan, path);
    }
    int lo = 0, hi = 0;
    if (st == BL_OK && t->zero) {
        /* Under ZeRO-1 the load fills the momentum of every held layer, and
         * the rank then keeps its slice of it. */
        st = bl_agree(t->rt, bl_trainer_hold_layers(t, t->plan.first, 1), BL_ERR_NO_MEM,
                      "holding the momentum to load");
    }
    if (st == BL_OK) {
        bl_trainer_held_layers(t, &lo, &hi);
        st = bl_agree(t->rt, bl_ckpt_load(t->rt, path, t->model, lo, hi, t->velocity, NULL),
                      BL_ERR_IO, "loading the checkpoint's layers");
    }
    if (st == BL_OK) {
        st = bl_agree(t->rt, bl_trainer_narrow_momentum(t), BL_ERR_NO_MEM,
                      "narrowing the momentum to its ZeRO-1 slice");
    }
    if (st == BL_OK) {
        /* bl_control_restore below is collective, so an upload that fails on
         * one rank fails every rank here. */
        st = bl_agree(t->rt, bl_device_copies_upload(&t->dev, t->rt, t->velocity), BL_ERR_IO,
                      "uploading the checkpoint's layers");
    }
    if (st == BL_OK) {
        t->step = s.step;
        if (lo == 0 && hi == t->model->layer_count) {
            t->whole_at = s.step; /* this rank loaded every layer */
        }
        bl_log(t->rt, BL_LOG_INFO,
               "resumed from %s at step %ld (saved on %d ranks: %d pipelines x %d stages)", path,
               s.step, s.ranks, s.plan.groups, s.plan.stages);
        st = bl_control_restore(&t->control, &s, path, t->modelled_s_per_op > 0.0);
    }
    if (st == BL_OK) {
        *resumed = 1;
    }
    bl_ckpt_state_free(t->rt, &s);
    return st;
}
