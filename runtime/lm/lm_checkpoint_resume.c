/* The language-model trainer's resume (ballast.h: bl_lm_trainer_resume;
 * lm_checkpoint.c describes the checkpoint). Rank 0 finds the newest
 * checkpoint whose manifest and stage files are all intact; every rank
 * reads its manifest, continues the saved plan and, on as many stages, the
 * saved map, holds its stage's units under it and reads their parameters
 * and moments from the stage files (or from a version 2 or 3 manifest,
 * which holds the floats itself), and rank 0 restores the policies'
 * state. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint_file.h"
#include "lm_impl.h"
#include "policy_state.h"
#include "wait.h"

/* The finder's check (rank 0): the checkpoint is this run's, and its
 * manifest and every stage file are intact and agree. */
static bl_status_t check_checkpoint(bl_runtime_t *rt, const char *dir, void *arg)
{
    bl_lm_trainer_t *t = arg;
    bl_lm_manifest_t s;
    bl_status_t st = bl_lm_manifest_read(t, dir, &s);
    if (st == BL_OK && s.files != NULL) {
        char manifest[PATH_MAX];
        if (snprintf(manifest, sizeof manifest, "%s/%s", dir, BL_CKPT_LM_FILE) >=
            (int)sizeof manifest) {
            st = bl_fail(rt, BL_ERR_INVALID_ARG, "checkpoint %s: path too long", dir);
        }
        bl_lm_stage_file_t files[s.stages];
        bl_lm_manifest_files(&s, files);
        for (int k = 0; k < s.stages && st == BL_OK; k++) {
            st = bl_lm_stage_file_check(t, dir, manifest, k, s.stages, s.step, &files[k]);
        }
    }
    bl_lm_manifest_close(&s);
    return st;
}

/* ---- Resuming ------------------------------------------------------------ */

/* Writes the saved shards as "a,b,c" into out (n bytes). */
static void format_saved_shards(const bl_lm_manifest_t *s, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (int d = 0; d < s->pipelines && used < n; d++) {
        int k = snprintf(out + used, n - used, "%s%u", d > 0 ? "," : "",
                         bl_le_get32(s->shards + 4 * (size_t)d));
        used += k > 0 ? (size_t)k : 0;
    }
}

/* Continues the saved plan, as the layer trainer does: its plan version,
 * and on as many ranks and pipelines its shards, which win over the
 * config's (one info line names a configured plan that is not used).
 * Shards outside this run's caps give way to the config's plan, and on
 * another number of ranks or pipelines the saved shards do not apply and
 * the trainer keeps its first plan; an info line says so. */
static void adopt_plan(bl_lm_trainer_t *t, const bl_lm_manifest_t *s, const char *path)
{
    bl_plan_t *p = &t->plan;
    char theirs[512], mine[512];
    format_saved_shards(s, theirs, sizeof theirs);
    bl_plan_format_shards(p, mine, sizeof mine);
    p->version = s->plan_version;
    if (s->ranks != t->rt->size || s->pipelines != p->groups) {
        bl_log(t->rt, BL_LOG_INFO,
               "resume: %s's shard plan %s was saved on %d ranks; this run has %d rank%s, so "
               "the plan starts as %s (plan v%ld)",
               path, theirs, s->ranks, t->rt->size, t->rt->size == 1 ? "" : "s", mine, p->version);
        return;
    }
    int same = 1, fits = 1;
    for (int d = 0; d < p->groups; d++) {
        long v = (long)bl_le_get32(s->shards + 4 * (size_t)d);
        same = same && v == p->shards[d];
        fits = fits && (p->shard_min == NULL || (v >= p->shard_min[d] && v <= p->shard_max[d]));
    }
    if (same) {
        return;
    }
    if (!fits) {
        bl_log(t->rt, BL_LOG_INFO,
               "resume: %s's shard plan %s lies outside this run's shard caps; the plan starts "
               "as %s",
               path, theirs, mine);
        return;
    }
    if (t->cfg.plan.shards != NULL) {
        bl_log(t->rt, BL_LOG_INFO,
               "resume: %s's shard plan %s (plan v%ld) is kept; the configured plan %s is not "
               "used",
               path, theirs, s->plan_version, mine);
    }
    for (int d = 0; d < p->groups; d++) {
        p->shards[d] = (long)bl_le_get32(s->shards + 4 * (size_t)d);
    }
    t->offset = bl_plan_offset(p, t->grid.layout.replica);
    t->local = (int)p->shards[t->grid.layout.replica];
}

/* Continues the saved stage map on as many stages (bl_ckpt_adopt_map, as the
 * layer trainer does): this stage then owns its units under it, which the
 * load that follows reads, so no parameters move. A file without a map
 * (version 2), or a map of another number of stages, leaves the run's own
 * map (the configured or the balanced one), with an info line, and so does
 * a saved map whose units would put a stage-local rank over its memory
 * limit. Collective (the memory check); every rank decides the same from
 * the same file. */
static bl_status_t adopt_map(bl_lm_trainer_t *t, const bl_lm_manifest_t *s, const char *path)
{
    /* At most one stage a unit of this model (parse_stages). */
    int saved[s->stages + 1], own[t->plan.stages + 1];
    for (int i = 0; s->map != NULL && i <= s->stages; i++) {
        saved[i] = (int)bl_le_get32(s->map + 4 * (size_t)i);
    }
    memcpy(own, t->plan.first, sizeof own);
    if (!bl_ckpt_adopt_map(t->rt, path, s->map != NULL ? saved : NULL, s->stages, t->plan.first,
                           t->plan.stages,
                           t->cfg.plan.stage_first != NULL ? "configured" : "balanced")) {
        return BL_OK;
    }
    /* A stage-local stage would hold the saved map's units: the run's own
     * map stays when they would put a rank over its memory limit. */
    int over = -1;
    bl_status_t st = bl_lm_map_fits(t, t->plan.first, &over);
    if (st == BL_OK && over >= 0) {
        char theirs[128];
        bl_plan_format_map(t->plan.first, t->plan.stages, theirs, sizeof theirs);
        bl_log(t->rt, BL_LOG_INFO,
               "resume: %s's stage map %s would put rank %d over its memory limit; this run's "
               "map stays",
               path, theirs, over);
        memcpy(t->plan.first, own, sizeof own);
    }
    bl_lm_grid_set_map(&t->grid, t->model, t->plan.first);
    return st;
}

/* Rank 0 loads the learned state of the shard policy and of the stage
 * policy, and the shard controller's window in progress, when they fit this
 * run (the same policy kind, ranks and stages; bl_policy_state_restore says
 * in an info line which start afresh and why); the first steps after the
 * resume are a warm-up that is not observed, as at a start. Local. */
static void restore_control(bl_lm_trainer_t *t, const bl_lm_manifest_t *s, const char *path)
{
    bl_runtime_t *rt = t->rt;
    bl_balancer_t *b = &t->balancer;
    b->ctl.warm_until = s->step + BL_CONTROL_WARMUP_STEPS;
    if (rt->rank != 0) {
        return;
    }
    bl_control_windows_t w;
    bl_policy_state_restore(rt, b->controller_on ? b->ctl.policy : NULL,
                            t->restager.on ? t->restager.policy : NULL, s->control,
                            s->control_bytes, path, &w);
    const size_t count = BL_CONTROLLER_WINDOW_DOUBLES(rt->size);
    int fits = 0;
    if (b->controller_on && w.ranks == rt->size && w.shard_count == count) {
        double *shard = bl_mem_array(bl_rt_allocator(rt), count, sizeof *shard);
        if (shard != NULL) {
            memcpy(shard, w.shard, count * sizeof *shard);
            fits = bl_controller_window_load(&b->ctl, shard);
        }
        bl_mem_free(bl_rt_allocator(rt), shard);
    }
    if (w.shard_count > 0 && !fits) {
        bl_log(rt, BL_LOG_INFO,
               "resume: %s's control window in progress does not fit this run (%d ranks); it "
               "starts empty",
               path, rt->size);
    }
}

/* Reads the parameters and AdamW moments that this rank holds from the
 * checkpoint dir (its manifest decoded in *s): its stage's units under
 * stage-local memory, else every unit; under ZeRO-1 the parameters and its
 * slices of its stage's moments. A model in host memory takes its
 * parameters in place, and its moments too without ZeRO-1; under ZeRO-1 the
 * moments go through two temporary arrays of param_count floats (of which
 * only the pages written take memory: the pieces that overlap the slices),
 * and on a device everything through three. A failure may leave part of
 * the model written. Local. */
static bl_status_t load_state(bl_lm_trainer_t *t, const char *dir, const bl_lm_manifest_t *s)
{
    bl_runtime_t *rt = t->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    bl_gpt2_t *g = t->model;
    const size_t N = g->param_count;
    bl_gpt2_range_t need[BL_GPT2_MAX_RANGES], slice[BL_GPT2_MAX_RANGES];
    bl_lm_window_t w = {.first = t->stage_local ? t->grid.first : 0,
                        .last = t->stage_local ? t->grid.last : g->config.num_layers + 2};
    w.params_count = bl_gpt2_unit_ranges(g, w.first, w.last, need);
    w.params_need = w.moments_need = need;
    w.moments_count = w.params_count;
    float *temp = NULL;
    const size_t arrays = t->host != NULL ? 3 : t->zero != NULL ? 2 : 0;
    if (arrays > 0) {
        temp = bl_mem_array(a, arrays * N, sizeof(float));
        if (temp == NULL) {
            return bl_fail(rt, BL_ERR_NO_MEM,
                           "rank %d: no memory to load a checkpoint (%zu x %zu floats)", rt->rank,
                           arrays, N);
        }
    }
    w.params = t->host != NULL ? temp + 2 * N : g->params;
    w.adam_m = arrays > 0 ? temp : g->adam_m;
    w.adam_v = arrays > 0 ? temp + N : g->adam_v;
    if (t->zero != NULL) {
        /* This rank's slices of its stage's moments (lm_zero.h). */
        w.moments_count = bl_lm_zero_ranges(t->zero, slice);
        w.moments_need = slice;
    }
    bl_status_t st = BL_OK;
    if (s->files != NULL) {
        char manifest[PATH_MAX];
        bl_lm_stage_file_t files[s->stages];
        bl_lm_manifest_files(s, files);
        st = snprintf(manifest, sizeof manifest, "%s/%s", dir, BL_CKPT_LM_FILE) <
                     (int)sizeof manifest
                 ? bl_lm_stage_files_load(t, dir, manifest, files, s->stages, s->step, &w)
                 : bl_fail(rt, BL_ERR_INVALID_ARG, "checkpoint %s: path too long", dir);
    } else {
        /* A version 2 or 3 file holds the arrays whole, checked. */
        const unsigned char *from[3] = {s->params, s->adam_m, s->adam_v};
        float *to[3] = {w.params, w.adam_m, w.adam_v};
        for (int k = 0; k < 3; k++) {
            const bl_gpt2_range_t *r = k == 0 ? w.params_need : w.moments_need;
            const int count = k == 0 ? w.params_count : w.moments_count;
            for (int i = 0; i < count; i++) {
                memcpy(to[k] + r[i].offset, from[k] + r[i].offset * sizeof(float),
                       r[i].count * sizeof(float));
            }
        }
    }
    if (st == BL_OK && t->zero != NULL) {
        bl_lm_zero_put_moments(t->zero, w.adam_m, w.adam_v);
    } else if (st == BL_OK && t->host != NULL) {
        st = bl_lm_put_state(t, w.params, w.adam_m, w.adam_v); /* uploaded to the device */
    }
    bl_mem_free(a, temp);
    return st;
}

bl_status_t bl_lm_trainer_resume(bl_lm_trainer_t *t, const char *dir, int *resumed)
{
    if (t == NULL || dir == NULL || resumed == NULL) {
        return t == NULL ? BL_ERR_INVALID_ARG
                         : bl_fail(t->rt, BL_ERR_INVALID_ARG, "resume: NULL argument");
    }
    bl_runtime_t *rt = t->rt;
    *resumed = 0;
    char path[PATH_MAX];
    int found = 0;
    bl_status_t st = bl_ckpt_find_valid(rt, dir, check_checkpoint, t, 1, path, sizeof path, &found);
    if (st != BL_OK || !found) {
        return st;
    }
    /* Every rank reads the manifest; a failure anywhere fails everywhere
     * before anything changes. */
    bl_lm_manifest_t s;
    st = bl_agree(rt, bl_lm_manifest_read(t, path, &s), BL_ERR_IO, "the resume");
    if (st == BL_OK) {
        /* The saved plan and map first: they say which units this stage
         * holds, and so what it reads. */
        adopt_plan(t, &s, path);
        st = adopt_map(t, &s, path);
    }
    if (st == BL_OK) {
        st = bl_agree(rt, bl_lm_hold_stage(t), BL_ERR_NO_MEM,
                      "holding the stages' units under the checkpoint's map");
    }
    if (st == BL_OK && t->zero != NULL) {
        /* Under ZeRO-1 the slices follow the stage's units under that map;
         * the load puts their moments. */
        st = bl_agree(rt, bl_lm_zero_restage(t->zero, t->grid.first, t->grid.last, NULL, NULL),
                      BL_ERR_NO_MEM, "slicing the stages' moments under the checkpoint's map");
    }
    if (st == BL_OK) {
        /* Rank 0 checked every file; a failure now (a file changed since)
         * leaves the trainer's model and plan part the checkpoint's, and
         * the caller destroys it. */
        st = bl_agree(rt, load_state(t, path, &s), BL_ERR_IO, "loading the checkpoint's state");
    }
    if (st == BL_OK) {
        bl_gpt2_t *g = t->model;
        g->adam_steps = s.adam_steps;
        t->step = s.step;
        /* Without stage-local memory every rank loaded the whole model. */
        t->whole_at = t->stage_local ? -1 : s.step;
        bl_log(rt, BL_LOG_INFO, "resumed from %s at step %ld (saved on %d ranks)", path, s.step,
               s.ranks);
        restore_control(t, &s, path);
        *resumed = 1;
    }
    bl_lm_manifest_close(&s);
    return st;
}
