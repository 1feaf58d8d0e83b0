/* This file writes a checkpoint (bl_ckpt_save). Rank 0 makes a temporary
 * directory beside the checkpoints; the ranks of pipeline 0 write one stage
 * file each into it, and rank 0 writes the manifest, every file being
 * flushed and fsynced. Rank 0 then fsyncs the temporary directory, renames
 * it into place as ckpt-<step> and fsyncs the checkpoints' directory, so
 * that a ckpt-* directory is always complete, and finally removes all but
 * the newest `keep` checkpoints. A failure removes the temporary directory;
 * a crash that a test asks for (bl_ckpt_fault_t) stops where a real crash
 * would and leaves its files behind. The bytes of each file come from
 * checkpoint_format.c. The same directory handling serves other kinds of
 * checkpoint (checkpoint_file.h: bl_ckpt_begin, bl_ckpt_commit), and so does
 * the file writer (bl_ckpt_writer_*). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint_impl.h"
#include "fsync_dir.h"
#include "wait.h"

/* ---- Files ------------------------------------------------------------ */

typedef bl_ckpt_writer_t writer_t;

void bl_ckpt_writer_put(writer_t *w, const void *bytes, size_t n)
{
    if (w->failed == 0 && n > 0 && fwrite(bytes, 1, n, w->f) != n) {
        w->failed = errno != 0 ? errno : EIO;
    }
}

static void write_header(writer_t *w, uint32_t kind, uint32_t sections)
{
    unsigned char h[BL_CKPT_HEADER_BYTES];
    bl_ckpt_put_header(h, kind, sections);
    bl_ckpt_writer_put(w, h, sizeof h);
}

/* Writes a section whose payload is the `n` bytes at `bytes`. The bytes
 * are written as they are, because the host is little-endian (which is
 * checked before any save). */
static void write_section(writer_t *w, uint32_t id, const void *bytes, size_t n)
{
    unsigned char s[BL_CKPT_SECTION_BYTES];
    bl_ckpt_put_section(s, id, bytes, n);
    bl_ckpt_writer_put(w, s, sizeof s);
    bl_ckpt_writer_put(w, bytes, n);
}

bl_status_t bl_ckpt_writer_open(bl_runtime_t *rt, writer_t *w, const char *path)
{
    w->path = path;
    w->failed = 0;
    w->f = fopen(path, "wb");
    return w->f != NULL ? BL_OK
                        : bl_fail(rt, BL_ERR_IO, "checkpoint %s: cannot create it: %s", path,
                                  strerror(errno));
}

bl_status_t bl_ckpt_writer_close(bl_runtime_t *rt, writer_t *w)
{
    if (w->failed == 0 && (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)) {
        w->failed = errno != 0 ? errno : EIO;
    }
    if (fclose(w->f) != 0 && w->failed == 0) {
        w->failed = errno != 0 ? errno : EIO;
    }
    w->f = NULL;
    return w->failed == 0 ? BL_OK
                          : bl_fail(rt, BL_ERR_IO, "checkpoint %s: writing failed: %s", w->path,
                                    strerror(w->failed));
}

/* ---- Directories ------------------------------------------------------ */

/* Creates dir and any missing parents, like mkdir -p. Returns 0, or -1 with
 * errno set. */
static int make_dirs(const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0755) != 0 && errno != EEXIST) {
                return -1;
            }
            *p = '/';
        }
    }
    return mkdir(path, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

void bl_ckpt_remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        char path[PATH_MAX];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path) {
                unlink(path);
            }
        }
        closedir(d);
    }
    rmdir(dir);
}

/* ---- The checkpoint ---------------------------------------------------- */

/* Writes this rank's stage file: the parameters and momentum of the layers
 * that the stage map `first` gives its stage. Returns BL_OK, or
 * BL_ERR_INVALID_ARG or BL_ERR_IO (also for the faults that a test asks
 * for). */
static bl_status_t write_stage(bl_runtime_t *rt, const char *tmpdir, const bl_model_t *m,
                               const float *momentum, const bl_layout_t *l, const int *first,
                               bl_ckpt_fault_t fault)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/stage-%d.bin", tmpdir, l->stage) >= (int)sizeof path) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "checkpoint directory %s: path too long", tmpdir);
    }
    int lo = first[l->stage], hi = first[l->stage + 1];
    size_t offset, count;
    bl_ckpt_param_range(m, lo, hi, &offset, &count);
    unsigned char range[24];
    bl_le_put32(range, (uint32_t)lo);
    bl_le_put32(range + 4, (uint32_t)hi);
    bl_le_put64(range + 8, (uint64_t)offset);
    bl_le_put64(range + 16, (uint64_t)count);
    writer_t w;
    bl_status_t st = bl_ckpt_writer_open(rt, &w, path);
    if (st != BL_OK) {
        return st;
    }
    write_header(&w, BL_CKPT_KIND_STAGE, 3);
    write_section(&w, BL_CKPT_SEC_RANGE, range, sizeof range);
    if (fault == BL_CKPT_CRASH_PARTIAL_DATA) {
        bl_ckpt_writer_put(&w, m->params + offset, count * sizeof(float) / 2);
        fclose(w.f);
        return bl_fail(rt, BL_ERR_IO, "checkpoint %s: (test) crashed in the middle of the data",
                       path);
    }
    if (fault == BL_CKPT_WRITE_FAILS && w.failed == 0) {
        w.failed = ENOSPC;
    }
    write_section(&w, BL_CKPT_SEC_PARAMS, m->params + offset, count * sizeof(float));
    write_section(&w, BL_CKPT_SEC_MOMENTUM, momentum + offset, count * sizeof(float));
    return bl_ckpt_writer_close(rt, &w);
}

static bl_status_t write_manifest(bl_runtime_t *rt, const char *tmpdir, const bl_model_t *m,
                                  const bl_ckpt_state_t *s)
{
    const bl_allocator_t *a = bl_rt_allocator(rt);
    size_t model_bytes = 8 + 20 * (size_t)m->layer_count;
    size_t layout_bytes = 12 + 4 * ((size_t)s->plan.stages + 1 + (size_t)s->plan.groups);
    unsigned char state[32];
    unsigned char *model = bl_mem_array(a, model_bytes, 1);
    unsigned char *layout = bl_mem_array(a, layout_bytes, 1);
    if (model == NULL || layout == NULL) {
        bl_mem_free(a, model);
        bl_mem_free(a, layout);
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for a checkpoint manifest");
    }
    bl_le_put32(model, (uint32_t)m->layer_count);
    bl_le_put32(model + 4, (uint32_t)m->in_features);
    for (int i = 0; i < m->layer_count; i++) {
        unsigned char *p = model + 8 + 20 * (size_t)i;
        bl_le_put32(p, (uint32_t)m->layers[i].kind);
        bl_le_put32(p + 4, (uint32_t)m->layers[i].in_features);
        bl_le_put32(p + 8, (uint32_t)m->layers[i].out_features);
        bl_le_put64(p + 12, (uint64_t)m->layers[i].param_count);
    }
    bl_le_put64(state, (uint64_t)s->step);
    bl_le_put64(state + 8, s->seed);
    bl_le_put32(state + 16, (uint32_t)s->batch);
    bl_le_put32(state + 20, (uint32_t)s->shuffle);
    bl_le_put64(state + 24, (uint64_t)s->plan.version);
    bl_le_put32(layout, (uint32_t)s->ranks);
    bl_le_put32(layout + 4, (uint32_t)s->plan.groups);
    bl_le_put32(layout + 8, (uint32_t)s->plan.stages);
    for (int i = 0; i <= s->plan.stages; i++) {
        bl_le_put32(layout + 12 + 4 * (size_t)i, (uint32_t)s->plan.first[i]);
    }
    for (int d = 0; d < s->plan.groups; d++) {
        bl_le_put32(layout + 12 + 4 * ((size_t)s->plan.stages + 1 + (size_t)d),
                    (uint32_t)s->plan.shards[d]);
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", tmpdir, BL_CKPT_MANIFEST_FILE);
    writer_t w;
    bl_status_t st = bl_ckpt_writer_open(rt, &w, path);
    if (st == BL_OK) {
        write_header(&w, BL_CKPT_KIND_MANIFEST, 4);
        write_section(&w, BL_CKPT_SEC_MODEL, model, model_bytes);
        write_section(&w, BL_CKPT_SEC_STATE, state, sizeof state);
        write_section(&w, BL_CKPT_SEC_LAYOUT, layout, layout_bytes);
        size_t control_bytes = s->control_bytes;
        if (control_bytes > BL_CKPT_CONTROL_MAX) {
            bl_log(rt, BL_LOG_WARN,
                   "checkpoint: the policies' state (%zu bytes) is over %u bytes; saved "
                   "without it, so a resume starts the policies afresh",
                   control_bytes, BL_CKPT_CONTROL_MAX);
            control_bytes = 0;
        }
        write_section(&w, BL_CKPT_SEC_CONTROL, s->control, control_bytes);
        st = bl_ckpt_writer_close(rt, &w);
    }
    bl_mem_free(a, model);
    bl_mem_free(a, layout);
    return st;
}

/* Removes all but the newest `keep` checkpoints in dir (keep 0 keeps all),
 * counting only this trainer's: a checkpoint that holds the file `other`
 * (the other trainer's) is neither counted nor removed. Only rank 0 calls
 * it. */
static void prune(bl_runtime_t *rt, const char *dir, int keep, const char *other)
{
    int n = 0, kept = 0;
    long *steps = keep > 0 ? bl_ckpt_list(rt, dir, &n) : NULL;
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX], file[PATH_MAX];
        snprintf(path, sizeof path, "%s/ckpt-%012ld", dir, steps[i]);
        if (snprintf(file, sizeof file, "%s/%s", path, other) >= (int)sizeof file ||
            access(file, F_OK) == 0) {
            continue;
        }
        if (++kept > keep) {
            bl_ckpt_remove_tree(path);
        }
    }
    bl_mem_free(bl_rt_allocator(rt), steps);
}

/* Syncs the temporary directory, renames it into place as final (replacing
 * an older checkpoint of the same step from an earlier run), and then syncs
 * dir. Only rank 0 calls it. Returns BL_OK or BL_ERR_IO (also for the crash
 * faults that a test asks for). */
static bl_status_t commit(bl_runtime_t *rt, const char *dir, const char *tmpdir, const char *final,
                          bl_ckpt_fault_t fault)
{
    if (bl_fsync_dir(tmpdir) != 0) {
        return bl_fail(rt, BL_ERR_IO, "checkpoint %s: syncing it failed: %s", tmpdir,
                       strerror(errno));
    }
    if (fault == BL_CKPT_CRASH_BEFORE_RENAME) {
        return bl_fail(rt, BL_ERR_IO, "checkpoint %s: (test) crashed before the rename", tmpdir);
    }
    char old[PATH_MAX];
    snprintf(old, sizeof old, "%s.replaced", tmpdir);
    int replacing = rename(final, old) == 0;
    if (rename(tmpdir, final) != 0) {
        int saved = errno;
        if (replacing) {
            rename(old, final);
        }
        return bl_fail(rt, BL_ERR_IO, "checkpoint %s: cannot rename %s into place: %s", final,
                       tmpdir, strerror(saved));
    }
    if (replacing) {
        bl_ckpt_remove_tree(old);
    }
    if (fault == BL_CKPT_CRASH_BEFORE_DIR_SYNC) {
        return bl_fail(rt, BL_ERR_IO, "checkpoint %s: (test) crashed before syncing %s", final,
                       dir);
    }
    return bl_fsync_dir(dir) == 0 ? BL_OK
                                  : bl_fail(rt, BL_ERR_IO, "checkpoint %s: syncing %s failed: %s",
                                            final, dir, strerror(errno));
}

/* Checks that this host can write checkpoints and that the checkpoint's
 * directory name fits in path (n bytes), and writes it there. Local. */
static bl_status_t check_target(bl_runtime_t *rt, const char *dir, long step, char *path, size_t n)
{
    if (BL_HOST_BIG_ENDIAN) {
        return bl_fail(rt, BL_ERR_UNSUPPORTED, "checkpoints are little-endian; this host is not");
    }
    if (snprintf(path, n, "%s/ckpt-%012ld", dir, step) >= (int)n) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "checkpoint directory %s: path too long", dir);
    }
    return BL_OK;
}

/* Creates dir if it is missing and the temporary directory of a save of
 * `step` in it, whose name (with this process's pid) goes into tmpdir (n
 * bytes). Only rank 0 calls it. */
static bl_status_t make_tmpdir(bl_runtime_t *rt, const char *dir, long step, char *tmpdir, size_t n)
{
    if (make_dirs(dir) != 0) {
        return bl_fail(rt, BL_ERR_IO, "checkpoint directory %s: cannot create it: %s", dir,
                       strerror(errno));
    }
    if (snprintf(tmpdir, n, "%s/.tmp-ckpt-%012ld-%ld", dir, step, (long)getpid()) >= (int)n) {
        tmpdir[0] = '\0';
        return bl_fail(rt, BL_ERR_INVALID_ARG, "checkpoint directory %s: path too long", dir);
    }
    if (mkdir(tmpdir, 0755) != 0) {
        bl_status_t st =
            bl_fail(rt, BL_ERR_IO, "checkpoint %s: cannot create it: %s", tmpdir, strerror(errno));
        tmpdir[0] = '\0';
        return st;
    }
    return BL_OK;
}

bl_status_t bl_ckpt_save(bl_runtime_t *rt, const char *dir, const bl_model_t *m,
                         const float *momentum, const bl_layout_t *l, const bl_ckpt_state_t *s,
                         int keep, bl_ckpt_fault_t fault, char *path, size_t n)
{
    char tmpdir[PATH_MAX] = "";
    bl_status_t st = check_target(rt, dir, s->step, path, n);
    /* Rank 0 makes the temporary directory (its name holds rank 0's pid),
     * and every rank writes into it. */
    if (st == BL_OK && rt->rank == 0) {
        st = make_tmpdir(rt, dir, s->step, tmpdir, sizeof tmpdir);
    }
    st = bl_agree(rt, st, BL_ERR_IO, "creating the checkpoint directory");
    if (st == BL_OK) {
        st = bl_bcast_bounded(rt, tmpdir, (int)sizeof tmpdir, MPI_CHAR, 0, rt->comm,
                              "the broadcast of the checkpoint's name");
    }
    if (st != BL_OK) {
        return st;
    }
    /* The ranks of pipeline 0 write their stages' files; the other
     * pipelines hold the same state. */
    bl_status_t mine =
        l->replica == 0 ? write_stage(rt, tmpdir, m, momentum, l, s->plan.first, fault) : BL_OK;
    st = bl_agree(rt, mine, BL_ERR_IO, "writing the checkpoint's stage files");
    if (st == BL_OK && rt->rank == 0) {
        st = write_manifest(rt, tmpdir, m, s);
        if (st == BL_OK) {
            st = commit(rt, dir, tmpdir, path, fault);
        }
        if (st == BL_OK) {
            prune(rt, dir, keep, BL_CKPT_LM_FILE);
        }
    }
    /* A failure leaves nothing behind (a simulated crash leaves what a
     * crash would). */
    if (st != BL_OK && (fault == BL_CKPT_NO_FAULT || fault == BL_CKPT_WRITE_FAILS) &&
        rt->rank == 0) {
        bl_ckpt_remove_tree(tmpdir);
    }
    /* Rank 0 has committed the checkpoint or failed; the other ranks were
     * done after the agreement on the stage files. */
    return bl_agree(rt, st, BL_ERR_IO, "committing the checkpoint");
}

/* Writes the file path of `kind` with the `count` sections given, flushed
 * and fsynced. Returns BL_OK or BL_ERR_IO. */
static bl_status_t write_file(bl_runtime_t *rt, const char *path, uint32_t kind,
                              const bl_ckpt_section_t *sections, int count)
{
    writer_t w;
    bl_status_t st = bl_ckpt_writer_open(rt, &w, path);
    if (st != BL_OK) {
        return st;
    }
    write_header(&w, kind, (uint32_t)count);
    for (int i = 0; i < count; i++) {
        write_section(&w, sections[i].id, sections[i].bytes, sections[i].nbytes);
    }
    return bl_ckpt_writer_close(rt, &w);
}

bl_status_t bl_ckpt_begin(bl_runtime_t *rt, const char *dir, long step, char *tmpdir, char *path,
                          size_t n)
{
    tmpdir[0] = '\0';
    bl_status_t st = check_target(rt, dir, step, path, n);
    if (st == BL_OK && rt->rank == 0) {
        st = make_tmpdir(rt, dir, step, tmpdir, PATH_MAX);
    }
    st = bl_agree(rt, st, BL_ERR_IO, "creating the checkpoint directory");
    if (st == BL_OK) {
        st = bl_bcast_bounded(rt, tmpdir, PATH_MAX, MPI_CHAR, 0, rt->comm,
                              "the broadcast of the checkpoint's name");
    }
    if (st != BL_OK && rt->rank == 0 && tmpdir[0] != '\0') {
        bl_ckpt_remove_tree(tmpdir);
    }
    return st;
}

bl_status_t bl_ckpt_commit(bl_runtime_t *rt, const char *dir, const char *tmpdir, bl_status_t mine,
                           const char *name, uint32_t kind, const bl_ckpt_section_t *sections,
                           int count, int keep, const char *path)
{
    bl_status_t st = bl_agree(rt, mine, BL_ERR_IO, "writing the checkpoint's files");
    if (rt->rank == 0) {
        char file[PATH_MAX];
        if (st == BL_OK && snprintf(file, sizeof file, "%s/%s", tmpdir, name) >= (int)sizeof file) {
            st = bl_fail(rt, BL_ERR_INVALID_ARG, "checkpoint directory %s: path too long", dir);
        }
        if (st == BL_OK) {
            st = write_file(rt, file, kind, sections, count);
        }
        if (st == BL_OK) {
            st = commit(rt, dir, tmpdir, path, BL_CKPT_NO_FAULT);
        }
        if (st == BL_OK) {
            /* The layer trainer's checkpoints hold a manifest, the language
             * model's do not. */
            prune(rt, dir, keep, kind == BL_CKPT_KIND_LM ? BL_CKPT_MANIFEST_FILE : BL_CKPT_LM_FILE);
        } else {
            bl_ckpt_remove_tree(tmpdir); /* a failure leaves nothing behind */
        }
    }
    return bl_agree(rt, st, BL_ERR_IO, "committing the checkpoint");
}
