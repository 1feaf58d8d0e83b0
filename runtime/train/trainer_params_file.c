/* The trainer's parameter file: the load (bl_trainer_load_params), each rank
 * reading its held layers' part, and the save (bl_trainer_save_params), the
 * file of
 * bl_model_save_params, byte for byte, written from the stages, so that no
 * rank reads parameters outside its own stage (stage-local memory holds no
 * others). Rank 0 makes a temporary file of the whole file's length beside
 * the path; the ranks of pipeline 0 each write their stage's parameter range
 * at its offset, one writer per range, and fsync; rank 0 then renames the file
 * onto the path and fsyncs its directory. Every step is agreed over the job,
 * so that a failure anywhere fails every rank with the same status, removes
 * the temporary file and leaves an existing file at the path as it was. */
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
#include "trainer_impl.h"
#include "wait.h"

/* Makes the temporary file beside path, "<dir>/.<name>.tmp-<pid>-XXXXXX"
 * (mkstemp: unique, and in path's directory so that the rename is atomic),
 * 0644 and nbytes long, and writes its name into tmp (n bytes). On failure
 * nothing is left behind and tmp is "". Only rank 0 calls it. */
static bl_status_t create_sized(bl_runtime_t *rt, const char *path, size_t nbytes, char *tmp,
                                size_t n)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash != NULL ? slash + 1 : path;
    if (snprintf(tmp, n, "%.*s.%s.tmp-%ld-XXXXXX", (int)(name - path), path, name,
                 (long)getpid()) >= (int)n) {
        tmp[0] = '\0';
        return bl_fail(rt, BL_ERR_INVALID_ARG, "%s: the path is too long", path);
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        bl_status_t st = bl_fail(rt, BL_ERR_IO, "%s: cannot create the temporary file %s: %s", path,
                                 tmp, strerror(errno));
        tmp[0] = '\0';
        return st;
    }
    fchmod(fd, 0644); /* mkstemp's 0600 would hide the file from the group */
    bl_status_t st = BL_OK;
    if (ftruncate(fd, (off_t)nbytes) != 0) {
        st = bl_fail(rt, BL_ERR_IO, "%s: cannot make the temporary file %s %zu bytes long: %s",
                     path, tmp, nbytes, strerror(errno));
    }
    if (close(fd) != 0 && st == BL_OK) {
        st = bl_fail(rt, BL_ERR_IO, "%s: cannot close the temporary file %s: %s", path, tmp,
                     strerror(errno));
    }
    if (st != BL_OK) {
        unlink(tmp);
        tmp[0] = '\0';
    }
    return st;
}

/* Writes this rank's stage's parameters into the temporary file tmp at their
 * offset in the file, and fsyncs it. A device rank downloads them first. Only
 * the ranks of pipeline 0 call it. */
static bl_status_t write_stage(bl_trainer_t *t, const char *path, const char *tmp)
{
    bl_runtime_t *rt = t->rt;
    bl_status_t st = bl_device_copies_download(&t->dev, rt, t->velocity);
    if (st != BL_OK) {
        char cause[512];
        snprintf(cause, sizeof cause, "%s", bl_last_error(rt));
        return bl_fail(rt, st, "%s: downloading stage %d's parameters from the device failed: %s",
                       path, t->layout.stage, cause);
    }
    size_t first, count;
    bl_trainer_stage_params(t, t->layout.stage, &first, &count);
    if (count == 0) {
        return BL_OK; /* a stage of layers without parameters writes nothing */
    }
    int fd = open(tmp, O_WRONLY);
    if (fd < 0) {
        return bl_fail(rt, BL_ERR_IO, "%s: stage %d cannot open the temporary file %s: %s", path,
                       t->layout.stage, tmp, strerror(errno));
    }
    int failed =
        bl_file_pwrite_floats(fd, t->model->params + first, count, (off_t)(first * sizeof(float)));
    const char *doing = "writing";
    if (failed == 0 && fsync(fd) != 0) {
        failed = errno;
        doing = "syncing";
    }
    if (close(fd) != 0 && failed == 0) {
        failed = errno;
        doing = "closing";
    }
    if (failed != 0) {
        return bl_fail(rt, BL_ERR_IO,
                       "%s: %s stage %d's %zu parameters (bytes %zu to %zu) in the temporary file "
                       "%s failed: %s",
                       path, doing, t->layout.stage, count, first * sizeof(float),
                       (first + count) * sizeof(float), tmp, strerror(failed));
    }
    return BL_OK;
}

/* Renames tmp onto path and fsyncs path's directory; *renamed says whether
 * the rename happened. Only rank 0 calls it. */
static bl_status_t commit(bl_runtime_t *rt, const char *path, const char *tmp, int *renamed)
{
    if (rename(tmp, path) != 0) {
        return bl_fail(rt, BL_ERR_IO, "%s: cannot rename the temporary file %s into place: %s",
                       path, tmp, strerror(errno));
    }
    *renamed = 1;
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else {
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    }
    if (bl_fsync_dir(dir) != 0) {
        return bl_fail(rt, BL_ERR_IO, "%s: saved, but syncing its directory %s failed: %s", path,
                       dir, strerror(errno));
    }
    return BL_OK;
}

bl_status_t bl_trainer_save_params(bl_trainer_t *t, const char *path)
{
    if (t == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    if (path == NULL) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG, "saving the parameters: NULL path");
    }
    bl_runtime_t *rt = t->rt;
    char tmp[PATH_MAX] = "";
    int renamed = 0;
    /* The file exists at its full length before anyone writes, so that the
     * stages' writes at their offsets never depend on one another's order. */
    bl_status_t st = BL_OK;
    if (rt->rank == 0) {
        st = create_sized(rt, path, t->model->param_count * sizeof(float), tmp, sizeof tmp);
    }
    st = bl_agree_step(rt, st, path, "creating the temporary file");
    if (st == BL_OK) {
        st = bl_bcast_bounded(rt, tmp, (int)sizeof tmp, MPI_CHAR, 0, rt->comm,
                              "the broadcast of the parameter file's temporary name");
    }
    if (st != BL_OK) {
        goto done;
    }
    /* Replica 0 of each stage writes the stage's range; the other pipelines
     * hold the same parameters. With one stage, rank 0 writes everything. */
    st = bl_agree_step(rt, t->layout.replica == 0 ? write_stage(t, path, tmp) : BL_OK, path,
                       "writing a stage's parameters");
    if (st != BL_OK) {
        goto done;
    }
    if (rt->rank == 0) {
        st = commit(rt, path, tmp, &renamed);
    }
    st = bl_agree_step(rt, st, path, "putting the parameter file in place");
done:
    /* Rank 0 removes the temporary file of a save that failed before the
     * rename, so that path keeps its old file and nothing is left beside. */
    if (rt->rank == 0 && tmp[0] != '\0' && !renamed) {
        unlink(tmp);
    }
    return st;
}

bl_status_t bl_trainer_load_params(bl_trainer_t *t, const char *path)
{
    if (t == NULL || path == NULL) {
        return t == NULL ? BL_ERR_INVALID_ARG
                         : bl_fail(t->rt, BL_ERR_INVALID_ARG, "load params: NULL path");
    }
    /* Each rank stages its window and copies it in only on success, so a
     * failure anywhere is agreed before anything is uploaded. The model's
     * other layers keep their memory as it was (none under stage-local
     * memory). */
    int lo, hi;
    bl_trainer_held_layers(t, &lo, &hi);
    bl_status_t st = bl_agree(t->rt, bl_model_load_params_window(t->model, path, lo, hi), BL_ERR_IO,
                              "loading the parameter file");
    if (st == BL_OK) {
        st = bl_agree(t->rt, bl_device_copies_upload(&t->dev, t->rt, t->velocity), BL_ERR_CUDA,
                      "uploading the loaded parameters");
    }
    if (st == BL_OK && !t->stage_local) {
        t->whole_at = t->step; /* every rank loaded every layer */
    }
    return st;
}
