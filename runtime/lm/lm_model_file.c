/* The language-model trainer's model file (bl_lm_trainer_save_model, lm_impl.h):
 * llm.c's file of the GPT-2 tensors (gpt2_file.h) and, when the model has
 * user layers, the file "<path>.layers" of their parameters, raw
 * little-endian float32 in the config's order (its float k is parameter
 * gpt_param_count + k).
 *
 * With one stage every replica holds the whole model, and rank 0 writes both
 * files (bl_gpt2_write, bl_file_replace). With pipelines the files are
 * written from the stages and nothing is made whole, so that no rank reads
 * another stage's units (stage-local memory holds none): rank 0 makes each
 * file under a temporary name beside its path, at its full length and, for
 * the llm.c file, with its header; the first replica of every stage writes
 * its units' parameter ranges at their offsets (parameter i of the llm.c
 * file at byte BL_GPT2_HEADER_BYTES + 4 · i) and fsyncs them; rank 0 then
 * fsyncs the files, renames them into place and fsyncs their directory. The
 * token table wte, which the first and the last stage both hold, is written
 * by stage 0 alone. Every step is agreed over the job with a message that
 * names the file and the rank that failed, and a failure before the renames
 * removes the temporary files and leaves the files at the paths as they
 * were. (runtime/train/trainer_params_file.c writes the layer trainer's
 * file the same way.) */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file_io.h"
#include "fsync_dir.h"
#include "gpt2_file.h"
#include "lm_impl.h"
#include "wait.h"

/* ---- One stage: rank 0 writes the whole model -------------------------- */

/* The user layers' parameters (the floats after the GPT-2 tensors) of a
 * host copy of the model's parameters, for write_layers. */
typedef struct layer_floats {
    const float *first;
    size_t count;
} layer_floats_t;

/* Writes the user layers' parameters, little-endian float32: the order of
 * every host ballast builds on. */
static int write_layers(FILE *f, const void *ctx)
{
    const layer_floats_t *l = ctx;
    return fwrite(l->first, sizeof(float), l->count, f) == l->count;
}

/* Rank 0's part of a save, from the host copy params of the parameters:
 * the llm.c file of the GPT-2 tensors, then the user layers' file beside
 * it. */
static bl_status_t write_model(bl_lm_trainer_t *t, const char *path, const float *params)
{
    const bl_gpt2_t *g = t->model;
    bl_gpt2_file_t file;
    memset(&file, 0, sizeof file);
    file.config = g->config;
    file.param_count = g->gpt_param_count;
    file.params = (float *)params; /* only read */
    bl_error_t err = {0};
    bl_status_t st = bl_gpt2_write(path, &file, &err);
    if (st == BL_OK && g->user_count > 0) {
        char layers[4096], contents[64];
        if (snprintf(layers, sizeof layers, "%s.layers", path) >= (int)sizeof layers) {
            return bl_fail(t->rt, BL_ERR_INVALID_ARG, "%s: the path is too long", path);
        }
        const layer_floats_t floats = {params + g->gpt_param_count,
                                       g->param_count - g->gpt_param_count};
        snprintf(contents, sizeof contents, "%zu user-layer parameters", floats.count);
        const bl_file_words_t words = {.contents = contents, .done = "saved"};
        st = bl_file_replace(layers, &words, write_layers, &floats, &err);
    }
    return st == BL_OK ? BL_OK : bl_fail_from(t->rt, &err);
}

/* ---- The agreement ------------------------------------------------------ */

/* ---- Pipelines: the stages write their parts --------------------------- */

/* One file of a save: the parameters [base, base + count), little-endian
 * float32, after `header` bytes. */
typedef struct part_file {
    char path[PATH_MAX];
    char tmp[PATH_MAX]; /* its temporary name, "" while none exists */
    size_t header;
    size_t base, count;
    int renamed;
} part_file_t;

/* Fills files (count of them: the llm.c file, then the user layers' one
 * when the model has user layers) with their paths and parts. Local, the
 * same on every rank; BL_ERR_INVALID_ARG when a path is too long. */
static bl_status_t plan_files(bl_lm_trainer_t *t, const char *path, part_file_t *files, int *count)
{
    const bl_gpt2_t *g = t->model;
    memset(files, 0, 2 * sizeof *files);
    *count = g->user_count > 0 ? 2 : 1;
    int too_long =
        snprintf(files[0].path, sizeof files[0].path, "%s", path) >= (int)sizeof files[0].path;
    files[0].header = BL_GPT2_HEADER_BYTES;
    files[0].count = g->gpt_param_count;
    if (*count == 2) {
        too_long |= snprintf(files[1].path, sizeof files[1].path, "%s.layers", path) >=
                    (int)sizeof files[1].path;
        files[1].base = g->gpt_param_count;
        files[1].count = g->param_count - g->gpt_param_count;
    }
    return too_long ? bl_fail(t->rt, BL_ERR_INVALID_ARG, "%s: the path is too long", path) : BL_OK;
}

/* Makes f's temporary file beside f->path, "<dir>/.<name>.tmp-<pid>-XXXXXX"
 * (mkstemp: unique, and in the path's directory so that the rename is
 * atomic), 0644, its full length long and starting with header (NULL:
 * none), and writes its name into f->tmp. On failure nothing is left
 * behind and f->tmp is "". Only rank 0 calls it. */
static bl_status_t create_temp(bl_runtime_t *rt, part_file_t *f, const unsigned char *header)
{
    const char *slash = strrchr(f->path, '/');
    const char *name = slash != NULL ? slash + 1 : f->path;
    if (snprintf(f->tmp, sizeof f->tmp, "%.*s.%s.tmp-%ld-XXXXXX", (int)(name - f->path), f->path,
                 name, (long)getpid()) >= (int)sizeof f->tmp) {
        f->tmp[0] = '\0';
        return bl_fail(rt, BL_ERR_INVALID_ARG, "%s: the path is too long", f->path);
    }
    int fd = mkstemp(f->tmp);
    if (fd < 0) {
        bl_status_t st =
            bl_fail(rt, BL_ERR_IO, "%s: rank %d cannot create the temporary file %s: %s", f->path,
                    rt->rank, f->tmp, strerror(errno));
        f->tmp[0] = '\0';
        return st;
    }
    fchmod(fd, 0644); /* mkstemp's 0600 would hide the file from the group */
    const size_t nbytes = f->header + f->count * sizeof(float);
    char doing[64];
    snprintf(doing, sizeof doing, "make it %zu bytes long", nbytes);
    int failed = ftruncate(fd, (off_t)nbytes) != 0 ? errno : 0;
    if (failed == 0 && header != NULL) {
        snprintf(doing, sizeof doing, "write its header");
        failed = bl_file_pwrite(fd, header, f->header, 0);
    }
    if (close(fd) != 0 && failed == 0) {
        failed = errno;
        snprintf(doing, sizeof doing, "close it");
    }
    if (failed != 0) {
        bl_status_t st =
            bl_fail(rt, BL_ERR_IO, "%s: rank %d made the temporary file %s but cannot %s: %s",
                    f->path, rt->rank, f->tmp, doing, strerror(failed));
        unlink(f->tmp);
        f->tmp[0] = '\0';
        return st;
    }
    return BL_OK;
}

/* Rank 0's first step: the temporary files, the llm.c one with its header. */
static bl_status_t create_files(bl_lm_trainer_t *t, part_file_t *files, int count)
{
    unsigned char header[BL_GPT2_HEADER_BYTES];
    size_t params = 0;
    bl_error_t err = {0};
    if (bl_gpt2_header(&t->model->config, header, &params, &err) != BL_OK) {
        return bl_fail(t->rt, err.status, "%s: %s", files[0].path, err.msg);
    }
    if (params != files[0].count) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG,
                       "%s: the model has %zu GPT-2 parameters, its config %zu", files[0].path,
                       files[0].count, params);
    }
    bl_status_t st = BL_OK;
    for (int k = 0; k < count && st == BL_OK; k++) {
        st = create_temp(t->rt, &files[k], k == 0 ? header : NULL);
    }
    return st;
}

/* Writes this rank's stage's parameter ranges into the temporary files at
 * their offsets, and fsyncs the files it wrote. A rank whose model lives in
 * a device's memory downloads first. Only the first replica of every stage
 * calls it. */
static bl_status_t write_stage(bl_lm_trainer_t *t, const part_file_t *files)
{
    bl_runtime_t *rt = t->rt;
    const bl_gpt2_t *g = t->model;
    const int stage = t->grid.layout.stage;
    bl_lm_state_t state;
    bl_status_t st = bl_lm_host_state(t, &state);
    if (st != BL_OK) {
        char cause[1024];
        snprintf(cause, sizeof cause, "%s", bl_last_error(rt));
        return bl_fail(rt, st, "%s: rank %d (stage %d) cannot read its parameters: %s",
                       files[0].path, rt->rank, stage, cause);
    }
    int fds[2] = {-1, -1};
    int failed = 0;
    char doing[160] = "";
    const part_file_t *at = &files[0];
    for (int r = 0; r < t->grid.owned_count && failed == 0; r++) {
        const bl_gpt2_range_t *range = &t->grid.owned[r];
        if (range->count == 0 || (range->tensor == BL_GPT2_WTE && stage != 0)) {
            continue; /* stage 0 writes the tied token table */
        }
        const int k = range->tensor < BL_GPT2_TENSOR_COUNT ? 0 : 1;
        at = &files[k];
        if (fds[k] < 0 && (fds[k] = open(at->tmp, O_WRONLY)) < 0) {
            failed = errno;
            snprintf(doing, sizeof doing, "opening");
            break;
        }
        const size_t first = at->header + (range->offset - at->base) * sizeof(float);
        failed =
            bl_file_pwrite_floats(fds[k], state.params + range->offset, range->count, (off_t)first);
        if (failed != 0) {
            if (range->tensor < BL_GPT2_TENSOR_COUNT) {
                snprintf(doing, sizeof doing, "writing tensor %s's",
                         g->tensors[range->tensor].name);
            } else {
                snprintf(doing, sizeof doing, "writing user layer %d's",
                         range->tensor - BL_GPT2_TENSOR_COUNT);
            }
            snprintf(doing + strlen(doing), sizeof doing - strlen(doing),
                     " %zu parameters (bytes %zu to %zu) into", range->count, first,
                     first + range->count * sizeof(float));
        }
    }
    for (int k = 0; k < 2; k++) {
        if (fds[k] < 0) {
            continue;
        }
        if (failed == 0 && fsync(fds[k]) != 0) {
            failed = errno;
            at = &files[k];
            snprintf(doing, sizeof doing, "syncing");
        }
        if (close(fds[k]) != 0 && failed == 0) {
            failed = errno;
            at = &files[k];
            snprintf(doing, sizeof doing, "closing");
        }
    }
    if (failed != 0) {
        return bl_fail(rt, BL_ERR_IO, "%s: rank %d (stage %d): %s the temporary file %s failed: %s",
                       at->path, rt->rank, stage, doing, at->tmp, strerror(failed));
    }
    return BL_OK;
}

/* Rank 0's last step: fsyncs each temporary file (its own header
 * included), renames it onto its path (the llm.c file first) and fsyncs
 * their directory; each file's `renamed` says whether its rename happened. */
static bl_status_t commit(bl_runtime_t *rt, part_file_t *files, int count)
{
    for (int k = 0; k < count; k++) {
        part_file_t *f = &files[k];
        int fd = open(f->tmp, O_RDONLY);
        if (fd < 0 || fsync(fd) != 0) {
            bl_status_t st =
                bl_fail(rt, BL_ERR_IO, "%s: rank %d cannot sync the temporary file %s: %s", f->path,
                        rt->rank, f->tmp, strerror(errno));
            if (fd >= 0) {
                close(fd);
            }
            return st;
        }
        close(fd);
        if (rename(f->tmp, f->path) != 0) {
            return bl_fail(rt, BL_ERR_IO,
                           "%s: rank %d cannot rename the temporary file %s into place: %s",
                           f->path, rt->rank, f->tmp, strerror(errno));
        }
        f->renamed = 1;
    }
    char dir[PATH_MAX];
    const char *slash = strrchr(files[0].path, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else {
        snprintf(dir, sizeof dir, "%.*s", slash == files[0].path ? 1 : (int)(slash - files[0].path),
                 files[0].path);
    }
    if (bl_fsync_dir(dir) != 0) {
        return bl_fail(rt, BL_ERR_IO, "%s: saved, but rank %d cannot sync its directory %s: %s",
                       files[0].path, rt->rank, dir, strerror(errno));
    }
    return BL_OK;
}

/* The save with pipelines (S > 1), from the stages. Collective. */
static bl_status_t save_from_stages(bl_lm_trainer_t *t, const char *path)
{
    bl_runtime_t *rt = t->rt;
    part_file_t files[2];
    int count = 1;
    bl_status_t st =
        bl_agree_step(rt, plan_files(t, path, files, &count), path, "naming the model files");
    if (st != BL_OK) {
        return st;
    }
    /* The files exist at their full length before anyone writes, so that the
     * stages' writes at their offsets never depend on one another's order. */
    st = bl_agree_step(rt, rt->rank == 0 ? create_files(t, files, count) : BL_OK, path,
                       "creating the temporary files");
    for (int k = 0; k < count && st == BL_OK; k++) {
        st = bl_bcast_bounded(rt, files[k].tmp, (int)sizeof files[k].tmp, MPI_CHAR, 0, rt->comm,
                              "the broadcast of the model file's temporary name");
    }
    /* The first replica of each stage writes; the other pipelines hold the
     * same parameters. */
    if (st == BL_OK) {
        st = bl_agree_step(rt, t->grid.layout.replica == 0 ? write_stage(t, files) : BL_OK, path,
                           "writing the stages' parameters");
    }
    if (st == BL_OK) {
        st = bl_agree_step(rt, rt->rank == 0 ? commit(rt, files, count) : BL_OK, path,
                           "putting the model files in place");
    }
    /* Rank 0 removes every temporary file that was not renamed, so that a
     * failed save leaves nothing beside the paths. */
    for (int k = 0; k < count && rt->rank == 0; k++) {
        if (files[k].tmp[0] != '\0' && !files[k].renamed) {
            unlink(files[k].tmp);
        }
    }
    return st;
}

bl_status_t bl_lm_trainer_save_model(bl_lm_trainer_t *t, const char *path)
{
    if (t == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    bl_runtime_t *rt = t->rt;
    bl_status_t st =
        path == NULL ? bl_fail(rt, BL_ERR_INVALID_ARG, "saving the model: NULL path") : BL_OK;
    st = bl_agree(rt, st, BL_ERR_INVALID_ARG, "checking the model file's path");
    if (st != BL_OK) {
        return st;
    }
    if (t->grid.layout.stages > 1) {
        return save_from_stages(t, path);
    }
    st = bl_lm_make_whole(t); /* nothing to do with one stage */
    if (st != BL_OK) {
        return st;
    }
    if (rt->rank == 0) {
        /* Every replica holds the same parameters: rank 0 writes them,
         * downloaded first from a device. */
        bl_lm_state_t state;
        st = bl_lm_host_state(t, &state);
        if (st == BL_OK) {
            st = write_model(t, path, state.params);
        }
    }
    return bl_agree_step(rt, st, path, "writing the model file");
}
