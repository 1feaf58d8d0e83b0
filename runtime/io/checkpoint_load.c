/* This file finds and loads checkpoints (bl_ckpt_find, bl_ckpt_read_state,
 * bl_ckpt_load), and it takes a checkpoint's stage map on resume for either
 * trainer (bl_ckpt_adopt_map, checkpoint_file.h). A valid checkpoint is a
 * ckpt-<step> directory whose manifest and stage files all pass
 * checkpoint_format.c's checks against the model. The finder removes the
 * temporary directories that dead saves left, tries the checkpoints newest
 * first and warns about each one it skips. The loader reads the manifest and
 * then the stage files that hold the window of layers asked for, each mapped
 * read-only (page cache the kernel may reclaim, not the process's own
 * memory, so a stage of a model larger than a rank's memory can check a file
 * of the whole model) after checking its size against the most that its
 * layers need, and decodes the window's part into scratch arrays of the
 * window's size, so that a bad file leaves the model as it was. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint_impl.h"
#include "wait.h"

/* ---- The checkpoints in a directory ----------------------------------- */

static int ckpt_step_of(const char *name, long *step)
{
    const char *digits = name + 5;
    if (strncmp(name, "ckpt-", 5) != 0 || *digits == '\0') {
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long v = strtol(digits, &end, 10);
    if (*end != '\0' || errno != 0 || v < 0 || digits[0] < '0' || digits[0] > '9') {
        return 0;
    }
    *step = v;
    return 1;
}

static int by_step_descending(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? 1 : (x > y ? -1 : 0);
}

/* Writes the steps of the complete checkpoints in dir into steps (at most
 * max of them) and returns how many it wrote. With steps NULL it only
 * counts them and returns the count. A directory that cannot be opened
 * holds none. */
static int scan_checkpoints(const char *dir, long *steps, int max)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (d == NULL) {
        return 0;
    }
    struct dirent *e;
    long step;
    while ((e = readdir(d)) != NULL && (steps == NULL || n < max)) {
        if (ckpt_step_of(e->d_name, &step)) {
            if (steps != NULL) {
                steps[n] = step;
            }
            n++;
        }
    }
    closedir(d);
    return n;
}

long *bl_ckpt_list(bl_runtime_t *rt, const char *dir, int *count)
{
    int max = scan_checkpoints(dir, NULL, 0);
    long *steps = max > 0 ? bl_mem_array(bl_rt_allocator(rt), (size_t)max, sizeof *steps) : NULL;
    *count = steps != NULL ? scan_checkpoints(dir, steps, max) : 0;
    if (*count > 1) {
        qsort(steps, (size_t)*count, sizeof *steps, by_step_descending);
    }
    return steps;
}

/* ---- Loading ---------------------------------------------------------- */

bl_status_t bl_ckpt_read_whole(bl_runtime_t *rt, const char *path, size_t max, unsigned char **out,
                               size_t *len)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return bl_fail(rt, BL_ERR_IO, "checkpoint file %s: cannot open it: %s", path,
                       strerror(errno));
    }
    struct stat sb;
    bl_status_t st = BL_OK;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < 0 || (uint64_t)sb.st_size > max) {
        st = bl_fail(rt, BL_ERR_FORMAT,
                     "checkpoint file %s: %lld bytes, more than this model's checkpoint needs",
                     path, (long long)sb.st_size);
    } else {
        *len = (size_t)sb.st_size;
        *out = bl_mem_array(bl_rt_allocator(rt), *len > 0 ? *len : 1, 1);
        if (*out == NULL) {
            st = bl_fail(rt, BL_ERR_NO_MEM, "no memory to read %s", path);
        } else if (fread(*out, 1, *len, f) != *len) {
            st = bl_fail(rt, BL_ERR_IO, "checkpoint file %s: short read", path);
        }
    }
    fclose(f);
    if (st != BL_OK) {
        bl_mem_free(bl_rt_allocator(rt), *out);
        *out = NULL;
    }
    return st;
}

/* A file that shrinks while it is mapped would fault; checkpoints are never
 * changed in place. */
bl_status_t bl_ckpt_map_file(bl_runtime_t *rt, const char *path, size_t max, unsigned char **out,
                             size_t *len)
{
    static unsigned char empty[1];
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return bl_fail(rt, BL_ERR_IO, "checkpoint file %s: cannot open it: %s", path,
                       strerror(errno));
    }
    struct stat sb;
    bl_status_t st = BL_OK;
    if (fstat(fd, &sb) != 0 || sb.st_size < 0 || (uint64_t)sb.st_size > max) {
        st = bl_fail(rt, BL_ERR_FORMAT,
                     "checkpoint file %s: %lld bytes, more than this model's checkpoint needs",
                     path, (long long)sb.st_size);
    } else if (sb.st_size == 0) {
        *out = empty;
    } else {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            st = bl_fail(rt, BL_ERR_IO, "checkpoint file %s: cannot map it: %s", path,
                         strerror(errno));
        } else {
            *out = p;
            *len = (size_t)sb.st_size;
        }
    }
    close(fd);
    return st;
}

void bl_ckpt_unmap_file(unsigned char *bytes, size_t len)
{
    if (bytes != NULL && len > 0) {
        munmap(bytes, len);
    }
}

/* Reads and checks the manifest of the checkpoint at dir into *got, whose
 * arrays are allocated (free them with bl_ckpt_state_free); *got is
 * untouched on failure. A language-model checkpoint is refused with
 * BL_ERR_MISMATCH. */
static bl_status_t read_manifest(bl_runtime_t *rt, const char *dir, const bl_model_t *m,
                                 bl_ckpt_state_t *got)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, BL_CKPT_LM_FILE);
    if (access(path, F_OK) == 0) {
        return bl_fail(rt, BL_ERR_MISMATCH,
                       "checkpoint %s holds the language-model trainer's state (%s), not the layer "
                       "trainer's",
                       dir, BL_CKPT_LM_FILE);
    }
    snprintf(path, sizeof path, "%s/%s", dir, BL_CKPT_MANIFEST_FILE);
    unsigned char *bytes = NULL;
    size_t len = 0;
    bl_status_t st = bl_ckpt_read_whole(rt, path, BL_CKPT_MANIFEST_MAX, &bytes, &len);
    if (st == BL_OK) {
        st = bl_ckpt_parse_manifest(rt, path, bytes, len, m, got);
    }
    bl_mem_free(bl_rt_allocator(rt), bytes);
    return st;
}

/* Reads and checks the stage files of the checkpoint at dir whose layers,
 * under the manifest's stage map (in saved), overlap the layers [lo, hi);
 * each must hold exactly its stage's layers. With w not NULL, the part of
 * their parameters and momentum in w's window goes into w's arrays. Returns
 * BL_OK or the first failure. */
static bl_status_t read_stages(bl_runtime_t *rt, const char *dir, const bl_model_t *m,
                               const bl_ckpt_state_t *saved, int lo, int hi,
                               const bl_ckpt_window_t *w)
{
    const int *first = saved->plan.first;
    bl_status_t st = BL_OK;
    for (int stage = 0; st == BL_OK && stage < saved->plan.stages; stage++) {
        if (first[stage + 1] <= lo || first[stage] >= hi) {
            continue;
        }
        size_t offset, count;
        bl_ckpt_param_range(m, first[stage], first[stage + 1], &offset, &count);
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/stage-%d.bin", dir, stage);
        size_t max =
            BL_CKPT_HEADER_BYTES + 3 * BL_CKPT_SECTION_BYTES + 24 + 2 * count * sizeof(float);
        unsigned char *bytes = NULL;
        size_t len = 0;
        st = bl_ckpt_map_file(rt, path, max, &bytes, &len);
        if (st == BL_OK) {
            st = bl_ckpt_parse_stage(rt, path, bytes, len, m, first[stage], first[stage + 1], w);
        }
        bl_ckpt_unmap_file(bytes, len);
    }
    return st;
}

bl_status_t bl_ckpt_read_state(bl_runtime_t *rt, const char *path, const bl_model_t *m,
                               bl_ckpt_state_t *s)
{
    return read_manifest(rt, path, m, s);
}

bl_status_t bl_ckpt_load(bl_runtime_t *rt, const char *path, bl_model_t *m, int lo, int hi,
                         float *momentum, bl_ckpt_state_t *s)
{
    if (lo < 0 || hi > m->layer_count || lo >= hi) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "checkpoint %s: the layers [%d, %d) to load are not a window of this "
                       "model's %d layers",
                       path, lo, hi, m->layer_count);
    }
    /* The window is read into scratch arrays of its size first, so that a bad
     * file leaves the model as it was. */
    const bl_allocator_t *a = bl_rt_allocator(rt);
    bl_ckpt_window_t w;
    bl_ckpt_param_range(m, lo, hi, &w.first, &w.count);
    w.params = bl_mem_array(a, w.count > 0 ? w.count : 1, sizeof(float));
    w.momentum = bl_mem_array(a, w.count > 0 ? w.count : 1, sizeof(float));
    bl_ckpt_state_t got = {0};
    bl_status_t st = w.params != NULL && w.momentum != NULL
                         ? read_manifest(rt, path, m, &got)
                         : bl_fail(rt, BL_ERR_NO_MEM, "no memory to load a checkpoint");
    if (st == BL_OK) {
        st = read_stages(rt, path, m, &got, lo, hi, &w);
    }
    if (st == BL_OK) {
        memcpy(m->params + w.first, w.params, w.count * sizeof(float));
        memcpy(momentum + w.first, w.momentum, w.count * sizeof(float));
    }
    if (st == BL_OK && s != NULL) {
        *s = got;
    } else {
        bl_ckpt_state_free(rt, &got);
    }
    bl_mem_free(a, w.params);
    bl_mem_free(a, w.momentum);
    return st;
}

void bl_ckpt_state_free(bl_runtime_t *rt, bl_ckpt_state_t *s)
{
    bl_part_allocator_t pa = bl_rt_part_allocator(rt);
    bl_plan_free(&s->plan, &pa);
    bl_mem_free(bl_rt_allocator(rt), s->control);
    s->control = NULL;
    s->control_bytes = 0;
}

/* ---- Finding ---------------------------------------------------------- */

/* Removes the leftover temporary directories of saves that died. Only rank
 * 0 calls it. */
static void remove_leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, ".tmp-ckpt-", 10) == 0 &&
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path) {
            bl_ckpt_remove_tree(path);
        }
    }
    closedir(d);
}

bl_status_t bl_ckpt_find_valid(bl_runtime_t *rt, const char *dir, bl_ckpt_check_fn check, void *arg,
                               int mismatch_stops, char *path, size_t n, int *found)
{
    /* whether one was found, and the status that ended the search */
    int result[2] = {0, BL_OK};
    /* The chosen checkpoint's name, or the message of a refusal that ends
     * the search; it travels in a buffer of the same size on every rank,
     * whatever n is. */
    char chosen[PATH_MAX] = "";
    if (rt->rank == 0) {
        remove_leftovers(dir);
        int count = 0;
        long *steps = bl_ckpt_list(rt, dir, &count);
        for (int i = 0; i < count && !result[0] && result[1] == BL_OK; i++) {
            if (snprintf(chosen, sizeof chosen, "%s/ckpt-%012ld", dir, steps[i]) >=
                (int)sizeof chosen) {
                continue;
            }
            bl_status_t st = check(rt, chosen, arg);
            if (st == BL_OK) {
                result[0] = 1;
            } else if (st == BL_ERR_MISMATCH && mismatch_stops) {
                result[1] = (int)st;
                snprintf(chosen, sizeof chosen, "%s", bl_last_error(rt));
            } else {
                bl_log(rt, BL_LOG_WARN, "resume: skipping %s: %s", chosen, bl_last_error(rt));
            }
        }
        bl_mem_free(bl_rt_allocator(rt), steps);
    }
    const char *op = "the broadcast of the checkpoint to resume from";
    bl_status_t st = bl_bcast_bounded(rt, result, 2, MPI_INT, 0, rt->comm, op);
    if (st == BL_OK && (result[0] || result[1] != BL_OK)) {
        st = bl_bcast_bounded(rt, chosen, (int)sizeof chosen, MPI_CHAR, 0, rt->comm, op);
    }
    if (st != BL_OK) {
        return st;
    }
    if (result[1] != BL_OK) {
        /* Rank 0's message, on every rank. */
        return rt->rank == 0 ? (bl_status_t)result[1]
                             : bl_fail(rt, (bl_status_t)result[1], "%s", chosen);
    }
    if (result[0] && snprintf(path, n, "%s", chosen) >= (int)n) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "checkpoint %s: path too long", chosen);
    }
    *found = result[0];
    return BL_OK;
}

/* The layer trainer's check: every file of the checkpoint is valid for the
 * model arg (its manifest, and the stage files of all its layers), so that a
 * resume, whichever window of layers each rank then loads, never takes an
 * incomplete checkpoint. */
static bl_status_t check_layer_checkpoint(bl_runtime_t *rt, const char *path, void *arg)
{
    const bl_model_t *m = arg;
    bl_ckpt_state_t got = {0};
    bl_status_t st = read_manifest(rt, path, m, &got);
    if (st == BL_OK) {
        st = read_stages(rt, path, m, &got, 0, m->layer_count, NULL);
    }
    bl_ckpt_state_free(rt, &got);
    return st;
}

bl_status_t bl_ckpt_find(bl_runtime_t *rt, const char *dir, const bl_model_t *m, char *path,
                         size_t n, int *found)
{
    return bl_ckpt_find_valid(rt, dir, check_layer_checkpoint, (void *)m, 0, path, n, found);
}

/* ---- Resuming ---------------------------------------------------------- */

int bl_ckpt_adopt_map(bl_runtime_t *rt, const char *path, const int *saved, int saved_stages,
                      int *first, int stages, const char *mine)
{
    char theirs[512], ours[512];
    bl_plan_format_map(first, stages, ours, sizeof ours);
    if (saved == NULL) {
        if (stages > 1) {
            bl_log(rt, BL_LOG_INFO,
                   "resume: %s holds no stage map (it was saved before maps were); the %s map %s "
                   "is used",
                   path, mine, ours);
        }
        return 0;
    }
    bl_plan_format_map(saved, saved_stages, theirs, sizeof theirs);
    if (saved_stages != stages) {
        bl_log(rt, BL_LOG_INFO,
               "resume: %s's stage map %s was saved for %d stage%s; this run has %d, so the %s "
               "map %s is used",
               path, theirs, saved_stages, saved_stages == 1 ? "" : "s", stages, mine, ours);
        return 0;
    }
    if (memcmp(first, saved, ((size_t)stages + 1) * sizeof *first) == 0) {
        return 0;
    }
    bl_log(rt, BL_LOG_INFO, "resume: %s's stage map %s is kept; the %s map %s is not used", path,
           theirs, mine, ours);
    memcpy(first, saved, ((size_t)stages + 1) * sizeof *first);
    return 1;
}
