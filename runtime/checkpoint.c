/* Checkpoints: writing, finding and loading (checkpoint.h has the format). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "checkpoint.h"

#define MAGIC "BALLASTK"
/* Version 2 added the manifest's CONTROL section; version 1 files are
 * still read (their runs resume with fresh policies). */
#define VERSION        2u
#define BYTE_ORDER_TAG 0x01020304u
#define HEADER_BYTES   32u
#define SECTION_BYTES  16u
#define KIND_MANIFEST  1u
#define KIND_STAGE     2u
/* A manifest is small: a few words per layer, stage and pipeline, and the
 * policies' state, which is kept under half of it so that every manifest
 * written can be read back. */
#define MANIFEST_MAX (1u << 24)
#define CONTROL_MAX  (MANIFEST_MAX / 2)

enum {
    SEC_MODEL = 1,
    SEC_STATE = 2,
    SEC_LAYOUT = 3,
    SEC_RANGE = 4,
    SEC_PARAMS = 5,
    SEC_MOMENTUM = 6,
    SEC_CONTROL = 7
};

static const char *const section_names[] = {"?",     "MODEL",  "STATE",    "LAYOUT",
                                            "RANGE", "PARAMS", "MOMENTUM", "CONTROL"};

/* ---- Bytes ----------------------------------------------------------- */

static uint32_t crc_of(const void *bytes, size_t n)
{
    return (uint32_t)crc32_z(0L, (const Bytef *)bytes, n);
}

static int host_is_little_endian(void)
{
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* ---- Writing ---------------------------------------------------------- */

typedef struct writer {
    FILE *f;
    const char *path;
    int failed; /* errno of the first failure, or 0 */
} writer_t;

static void write_bytes(writer_t *w, const void *bytes, size_t n)
{
    if (w->failed == 0 && n > 0 && fwrite(bytes, 1, n, w->f) != n) {
        w->failed = errno != 0 ? errno : EIO;
    }
}

static void write_header(writer_t *w, uint32_t kind, uint32_t sections)
{
    unsigned char h[HEADER_BYTES] = {0};
    memcpy(h, MAGIC, 8);
    bl_le_put32(h + 8, VERSION);
    bl_le_put32(h + 12, BYTE_ORDER_TAG);
    bl_le_put32(h + 16, kind);
    bl_le_put32(h + 20, sections);
    bl_le_put32(h + 24, crc_of(h, 24));
    write_bytes(w, h, sizeof h);
}

/* A section whose payload is `n` bytes at `bytes` (written as they are:
 * the host is little-endian, checked before any save). */
static void write_section(writer_t *w, uint32_t id, const void *bytes, size_t n)
{
    unsigned char s[SECTION_BYTES];
    bl_le_put32(s, id);
    bl_le_put32(s + 4, crc_of(bytes, n));
    bl_le_put64(s + 8, (uint64_t)n);
    write_bytes(w, s, sizeof s);
    write_bytes(w, bytes, n);
}

static bl_status_t open_writer(bl_runtime_t *rt, writer_t *w, const char *path)
{
    w->path = path;
    w->failed = 0;
    w->f = fopen(path, "wb");
    return w->f != NULL ? BL_OK
                        : bl_fail(rt, BL_ERR_IO, "checkpoint %s: cannot create it: %s", path,
                                  strerror(errno));
}

/* Flushes, fsyncs and closes; any failure on the way is the file's. */
static bl_status_t close_writer(bl_runtime_t *rt, writer_t *w)
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

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        return -1;
    }
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* mkdir -p: dir and any missing parents. */
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

/* Removes a directory and the files in it (checkpoints hold no deeper
 * levels). */
static void remove_tree(const char *dir)
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

/* The parameter range [first, first + count) of layers [lo, hi). */
static void param_range(const bl_model_t *m, int lo, int hi, size_t *first, size_t *count)
{
    const bl_layer_t *a = &m->layers[lo], *b = &m->layers[hi - 1];
    *first = a->param_offset;
    *count = b->param_offset + b->param_count - a->param_offset;
}

/* This rank's stage file: its layers' parameters and momentum. */
static bl_status_t write_stage(bl_runtime_t *rt, const char *tmpdir, const bl_model_t *m,
                               const float *momentum, const bl_layout_t *l, bl_ckpt_fault_t fault)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/stage-%d.bin", tmpdir, l->stage) >= (int)sizeof path) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "checkpoint directory %s: path too long", tmpdir);
    }
    int lo = l->first[l->stage], hi = l->first[l->stage + 1];
    size_t first, count;
    param_range(m, lo, hi, &first, &count);
    unsigned char range[24];
    bl_le_put32(range, (uint32_t)lo);
    bl_le_put32(range + 4, (uint32_t)hi);
    bl_le_put64(range + 8, (uint64_t)first);
    bl_le_put64(range + 16, (uint64_t)count);
    writer_t w;
    bl_status_t st = open_writer(rt, &w, path);
    if (st != BL_OK) {
        return st;
    }
    write_header(&w, KIND_STAGE, 3);
    write_section(&w, SEC_RANGE, range, sizeof range);
    if (fault == BL_CKPT_CRASH_PARTIAL_DATA) {
        write_bytes(&w, m->params + first, count * sizeof(float) / 2);
        fclose(w.f);
        return bl_fail(rt, BL_ERR_IO, "checkpoint %s: (test) crashed in the middle of the data",
                       path);
    }
    if (fault == BL_CKPT_WRITE_FAILS && w.failed == 0) {
        w.failed = ENOSPC;
    }
    write_section(&w, SEC_PARAMS, m->params + first, count * sizeof(float));
    write_section(&w, SEC_MOMENTUM, momentum + first, count * sizeof(float));
    return close_writer(rt, &w);
}

static bl_status_t write_manifest(bl_runtime_t *rt, const char *tmpdir, const bl_model_t *m,
                                  const bl_ckpt_state_t *s)
{
    const bl_allocator_t *a = bl_rt_allocator(rt);
    size_t model_bytes = 8 + 20 * (size_t)m->layer_count;
    size_t layout_bytes = 12 + 4 * ((size_t)s->stages + 1 + (size_t)s->replicas);
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
    bl_le_put64(state + 24, (uint64_t)s->plan_version);
    bl_le_put32(layout, (uint32_t)s->ranks);
    bl_le_put32(layout + 4, (uint32_t)s->replicas);
    bl_le_put32(layout + 8, (uint32_t)s->stages);
    for (int i = 0; i <= s->stages; i++) {
        bl_le_put32(layout + 12 + 4 * (size_t)i, (uint32_t)s->first[i]);
    }
    for (int d = 0; d < s->replicas; d++) {
        bl_le_put32(layout + 12 + 4 * ((size_t)s->stages + 1 + (size_t)d), (uint32_t)s->shards[d]);
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/manifest.bin", tmpdir);
    writer_t w;
    bl_status_t st = open_writer(rt, &w, path);
    if (st == BL_OK) {
        write_header(&w, KIND_MANIFEST, 4);
        write_section(&w, SEC_MODEL, model, model_bytes);
        write_section(&w, SEC_STATE, state, sizeof state);
        write_section(&w, SEC_LAYOUT, layout, layout_bytes);
        size_t control_bytes = s->control_bytes;
        if (control_bytes > CONTROL_MAX) {
            bl_log(rt, BL_LOG_WARN,
                   "checkpoint: the policies' state (%zu bytes) is over %u bytes; saved "
                   "without it, so a resume starts the policies afresh",
                   control_bytes, CONTROL_MAX);
            control_bytes = 0;
        }
        write_section(&w, SEC_CONTROL, s->control, control_bytes);
        st = close_writer(rt, &w);
    }
    bl_mem_free(a, model);
    bl_mem_free(a, layout);
    return st;
}

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

/* The steps of the complete checkpoints in dir (at most max; NULL steps:
 * only counted); returns how many it wrote, or counted. */
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

/* The complete checkpoints' steps in dir, newest first, in an array from
 * the runtime's allocator (*count of them; NULL when none or short of
 * memory). */
static long *list_checkpoints(bl_runtime_t *rt, const char *dir, int *count)
{
    int max = scan_checkpoints(dir, NULL, 0);
    long *steps = max > 0 ? bl_mem_array(bl_rt_allocator(rt), (size_t)max, sizeof *steps) : NULL;
    *count = steps != NULL ? scan_checkpoints(dir, steps, max) : 0;
    if (*count > 1) {
        qsort(steps, (size_t)*count, sizeof *steps, by_step_descending);
    }
    return steps;
}

/* Rank 0: keeps the newest `keep`. */
static void prune(bl_runtime_t *rt, const char *dir, int keep)
{
    int n = 0;
    long *steps = keep > 0 ? list_checkpoints(rt, dir, &n) : NULL;
    for (int i = keep; i < n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/ckpt-%012ld", dir, steps[i]);
        remove_tree(path);
    }
    bl_mem_free(bl_rt_allocator(rt), steps);
}

/* Rank 0: the temporary directory renamed into place (an older checkpoint
 * of the same step, from an earlier run, is replaced), then dir synced. */
static bl_status_t commit(bl_runtime_t *rt, const char *dir, const char *tmpdir, const char *final,
                          bl_ckpt_fault_t fault)
{
    if (sync_dir(tmpdir) != 0) {
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
        remove_tree(old);
    }
    if (fault == BL_CKPT_CRASH_BEFORE_DIR_SYNC) {
        return bl_fail(rt, BL_ERR_IO, "checkpoint %s: (test) crashed before syncing %s", final,
                       dir);
    }
    return sync_dir(dir) == 0 ? BL_OK
                              : bl_fail(rt, BL_ERR_IO, "checkpoint %s: syncing %s failed: %s",
                                        final, dir, strerror(errno));
}

bl_status_t bl_ckpt_save(bl_runtime_t *rt, const char *dir, const bl_model_t *m,
                         const float *momentum, const bl_layout_t *l, const bl_ckpt_state_t *s,
                         int keep, bl_ckpt_fault_t fault, char *path, size_t n)
{
    char tmpdir[PATH_MAX] = "";
    bl_status_t st = BL_OK;
    if (!host_is_little_endian()) {
        st = bl_fail(rt, BL_ERR_UNSUPPORTED, "checkpoints are little-endian; this host is not");
    } else if (snprintf(path, n, "%s/ckpt-%012ld", dir, s->step) >= (int)n) {
        st = bl_fail(rt, BL_ERR_INVALID_ARG, "checkpoint directory %s: path too long", dir);
    }
    /* Rank 0 makes the temporary directory (its name has rank 0's pid);
     * everyone writes into it. */
    if (st == BL_OK && rt->rank == 0) {
        if (make_dirs(dir) != 0) {
            st = bl_fail(rt, BL_ERR_IO, "checkpoint directory %s: cannot create it: %s", dir,
                         strerror(errno));
        } else if (snprintf(tmpdir, sizeof tmpdir, "%s/.tmp-ckpt-%012ld-%ld", dir, s->step,
                            (long)getpid()) >= (int)sizeof tmpdir) {
            st = bl_fail(rt, BL_ERR_INVALID_ARG, "checkpoint directory %s: path too long", dir);
        } else if (mkdir(tmpdir, 0755) != 0) {
            st = bl_fail(rt, BL_ERR_IO, "checkpoint %s: cannot create it: %s", tmpdir,
                         strerror(errno));
        }
    }
    st = bl_agree(rt, st, BL_ERR_IO, "creating the checkpoint directory");
    if (st == BL_OK) {
        st = bl_bcast_bounded(rt, tmpdir, (int)sizeof tmpdir, MPI_CHAR, 0, rt->comm,
                              "the broadcast of the checkpoint's name");
    }
    if (st != BL_OK) {
        return st;
    }
    /* Pipeline 0's ranks write their stage; the other pipelines hold the
     * same state. */
    bl_status_t mine = l->replica == 0 ? write_stage(rt, tmpdir, m, momentum, l, fault) : BL_OK;
    st = bl_agree(rt, mine, BL_ERR_IO, "writing the checkpoint's stage files");
    if (st == BL_OK && rt->rank == 0) {
        st = write_manifest(rt, tmpdir, m, s);
        if (st == BL_OK) {
            st = commit(rt, dir, tmpdir, path, fault);
        }
        if (st == BL_OK) {
            prune(rt, dir, keep);
        }
    }
    /* A failure leaves nothing behind (a simulated crash leaves what a
     * crash would). */
    if (st != BL_OK && (fault == BL_CKPT_NO_FAULT || fault == BL_CKPT_WRITE_FAILS) &&
        rt->rank == 0) {
        remove_tree(tmpdir);
    }
    /* Rank 0 committed (or not); the others were done with the stage
     * files' agreement. */
    return bl_agree(rt, st, BL_ERR_IO, "committing the checkpoint");
}

/* ---- Reading ---------------------------------------------------------- */

typedef struct reader {
    bl_runtime_t *rt;
    const char *name;
    const unsigned char *bytes;
    size_t len, pos;
    uint32_t version; /* the file's, once its header is read */
} reader_t;

/* A malformed file: "checkpoint file NAME: <what is wrong>". */
static bl_status_t bad(const reader_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bl_status_t bad(const reader_t *r, const char *fmt, ...)
{
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return bl_fail(r->rt, BL_ERR_FORMAT, "checkpoint file %s: %s", r->name, why);
}

/* The header of a file of `kind` with `sections` sections (plus `added`
 * more from version 2 on). */
static bl_status_t read_header(reader_t *r, uint32_t kind, uint32_t sections, uint32_t added)
{
    const unsigned char *h = r->bytes;
    if (r->len < HEADER_BYTES) {
        return bad(r, "header: %zu bytes, shorter than a header", r->len);
    }
    if (memcmp(h, MAGIC, 8) != 0) {
        return bad(r, "header: not a ballast checkpoint file (magic)");
    }
    if (bl_le_get32(h + 24) != crc_of(h, 24) || bl_le_get32(h + 28) != 0) {
        return bad(r, "header: checksum mismatch");
    }
    r->version = bl_le_get32(h + 8);
    if (r->version < 1 || r->version > VERSION) {
        return bad(r, "header: version %u; this library reads versions 1 to %u", r->version,
                   VERSION);
    }
    sections += r->version >= 2 ? added : 0;
    if (bl_le_get32(h + 12) != BYTE_ORDER_TAG) {
        return bad(r, "header: byte order tag %#x (written on another byte order?)",
                   bl_le_get32(h + 12));
    }
    if (bl_le_get32(h + 16) != kind || bl_le_get32(h + 20) != sections) {
        return bad(r, "header: kind %u with %u sections, not the file expected here",
                   bl_le_get32(h + 16), bl_le_get32(h + 20));
    }
    r->pos = HEADER_BYTES;
    return BL_OK;
}

/* The next section, which must be `id` of `want` bytes (0: any length up
 * to what is left), checksum checked. */
static bl_status_t read_section(reader_t *r, uint32_t id, size_t want, const unsigned char **out,
                                size_t *len)
{
    const char *name = section_names[id];
    if (r->len - r->pos < SECTION_BYTES) {
        return bad(r, "%s section: truncated before its header (%zu bytes left)", name,
                   r->len - r->pos);
    }
    const unsigned char *s = r->bytes + r->pos;
    uint64_t n = bl_le_get64(s + 8);
    if (bl_le_get32(s) != id) {
        return bad(r, "%s section expected; found section id %u", name, bl_le_get32(s));
    }
    if (n > r->len - r->pos - SECTION_BYTES) {
        return bad(r, "%s section: %llu bytes announced, more than the file holds", name,
                   (unsigned long long)n);
    }
    if (want != 0 && n != want) {
        return bad(r, "%s section: %llu bytes; %zu expected", name, (unsigned long long)n, want);
    }
    if (bl_le_get32(s + 4) != crc_of(s + SECTION_BYTES, (size_t)n)) {
        return bad(r, "%s section: checksum mismatch", name);
    }
    *out = s + SECTION_BYTES;
    *len = (size_t)n;
    r->pos += SECTION_BYTES + (size_t)n;
    return BL_OK;
}

static bl_status_t check_end(const reader_t *r)
{
    return r->pos == r->len ? BL_OK : bad(r, "%zu bytes after the last section", r->len - r->pos);
}

/* The MODEL section against m. */
static bl_status_t check_model(reader_t *r, const bl_model_t *m)
{
    const unsigned char *p;
    size_t len;
    bl_status_t st = read_section(r, SEC_MODEL, 0, &p, &len);
    if (st != BL_OK) {
        return st;
    }
    if (len < 8 || (len - 8) % 20 != 0 || (len - 8) / 20 != bl_le_get32(p)) {
        return bad(r, "MODEL section: %zu bytes for %u layers", len, len >= 8 ? bl_le_get32(p) : 0);
    }
    if (bl_le_get32(p) != (uint32_t)m->layer_count ||
        bl_le_get32(p + 4) != (uint32_t)m->in_features) {
        return bl_fail(r->rt, BL_ERR_MISMATCH,
                       "checkpoint file %s: saved from a model of %u layers and input width %u; "
                       "this one has %d and %d",
                       r->name, bl_le_get32(p), bl_le_get32(p + 4), m->layer_count, m->in_features);
    }
    for (int i = 0; i < m->layer_count; i++) {
        const unsigned char *q = p + 8 + 20 * (size_t)i;
        const bl_layer_t *l = &m->layers[i];
        if (bl_le_get32(q) != (uint32_t)l->kind || bl_le_get32(q + 4) != (uint32_t)l->in_features ||
            bl_le_get32(q + 8) != (uint32_t)l->out_features ||
            bl_le_get64(q + 12) != (uint64_t)l->param_count) {
            return bl_fail(r->rt, BL_ERR_MISMATCH,
                           "checkpoint file %s: layer %d differs from this model's (kind %u, "
                           "%u -> %u, %llu parameters saved)",
                           r->name, i, bl_le_get32(q), bl_le_get32(q + 4), bl_le_get32(q + 8),
                           (unsigned long long)bl_le_get64(q + 12));
        }
    }
    return BL_OK;
}

/* A manifest: the model's shape, then the state and layout into *s (the
 * arrays allocated when s is not NULL). */
static bl_status_t parse_manifest(reader_t *r, const bl_model_t *m, bl_ckpt_state_t *s)
{
    bl_status_t st = read_header(r, KIND_MANIFEST, 3, 1);
    if (st == BL_OK) {
        st = check_model(r, m);
    }
    const unsigned char *p;
    size_t len;
    if (st == BL_OK) {
        st = read_section(r, SEC_STATE, 32, &p, &len);
    }
    if (st != BL_OK) {
        return st;
    }
    bl_ckpt_state_t got = {.step = (long)bl_le_get64(p),
                           .seed = bl_le_get64(p + 8),
                           .batch = (int)bl_le_get32(p + 16),
                           .shuffle = (int)bl_le_get32(p + 20),
                           .plan_version = (long)bl_le_get64(p + 24)};
    if (bl_le_get64(p) > (uint64_t)LONG_MAX || bl_le_get32(p + 16) == 0 ||
        bl_le_get32(p + 16) > INT_MAX || bl_le_get32(p + 20) > 1 ||
        bl_le_get64(p + 24) > (uint64_t)LONG_MAX) {
        return bad(r, "STATE section: step, batch, shuffle or plan version out of range");
    }
    st = read_section(r, SEC_LAYOUT, 0, &p, &len);
    if (st != BL_OK) {
        return st;
    }
    if (len < 12) {
        return bad(r, "LAYOUT section: %zu bytes, shorter than its counts", len);
    }
    uint32_t P = bl_le_get32(p), D = bl_le_get32(p + 4), S = bl_le_get32(p + 8);
    if (S < 1 || S > (uint32_t)m->layer_count || D < 1 || P != D * S || P > (1u << 20) ||
        len != 12 + 4 * ((size_t)S + 1 + D)) {
        return bad(r, "LAYOUT section: %zu bytes for %u ranks, %u pipelines and %u stages", len, P,
                   D, S);
    }
    long sum = 0;
    for (uint32_t i = 0; i <= S; i++) {
        uint32_t f = bl_le_get32(p + 12 + 4 * (size_t)i);
        uint32_t prev = i > 0 ? bl_le_get32(p + 12 + 4 * (size_t)(i - 1)) : 0;
        if ((i == 0 && f != 0) || (i > 0 && f <= prev) ||
            (i == S && f != (uint32_t)m->layer_count)) {
            return bad(r, "LAYOUT section: stage map entry %u is not contiguous over the layers",
                       i);
        }
    }
    for (uint32_t d = 0; d < D; d++) {
        sum += bl_le_get32(p + 12 + 4 * ((size_t)S + 1 + d));
    }
    if (sum != got.batch) {
        return bad(r, "LAYOUT section: the shards sum to %ld, not the batch %d", sum, got.batch);
    }
    /* The policies' learned state: opaque here, checked by its loaders. */
    const unsigned char *control = NULL;
    size_t control_bytes = 0;
    if (r->version >= 2) {
        st = read_section(r, SEC_CONTROL, 0, &control, &control_bytes);
        if (st != BL_OK) {
            return st;
        }
    }
    st = check_end(r);
    if (st != BL_OK || s == NULL) {
        return st;
    }
    const bl_allocator_t *a = bl_rt_allocator(r->rt);
    got.ranks = (int)P;
    got.replicas = (int)D;
    got.stages = (int)S;
    got.first = bl_mem_array(a, (size_t)S + 1, sizeof *got.first);
    got.shards = bl_mem_array(a, D, sizeof *got.shards);
    if (control_bytes > 0) {
        got.control = bl_mem_array(a, control_bytes, 1);
        got.control_bytes = got.control != NULL ? control_bytes : 0;
    }
    if (got.first == NULL || got.shards == NULL || (control_bytes > 0 && got.control == NULL)) {
        bl_ckpt_state_free(r->rt, &got);
        return bl_fail(r->rt, BL_ERR_NO_MEM, "no memory for a checkpoint's layout");
    }
    for (uint32_t i = 0; i <= S; i++) {
        got.first[i] = (int)bl_le_get32(p + 12 + 4 * (size_t)i);
    }
    for (uint32_t d = 0; d < D; d++) {
        got.shards[d] = (int)bl_le_get32(p + 12 + 4 * ((size_t)S + 1 + d));
    }
    if (control_bytes > 0) {
        memcpy(got.control, control, control_bytes);
    }
    *s = got;
    return BL_OK;
}

/* A stage file: its range must be [lo, hi) when lo >= 0 (else any whole
 * layers of m); its parameters and momentum go to params and momentum
 * when not NULL. */
static bl_status_t parse_stage(reader_t *r, const bl_model_t *m, int lo, int hi, float *params,
                               float *momentum)
{
    bl_status_t st = read_header(r, KIND_STAGE, 3, 0);
    const unsigned char *p;
    size_t len;
    if (st == BL_OK) {
        st = read_section(r, SEC_RANGE, 24, &p, &len);
    }
    if (st != BL_OK) {
        return st;
    }
    uint32_t a = bl_le_get32(p), b = bl_le_get32(p + 4);
    if (a >= b || b > (uint32_t)m->layer_count ||
        (lo >= 0 && (a != (uint32_t)lo || b != (uint32_t)hi))) {
        return bad(r, "RANGE section: layers [%u, %u) are not this stage's", a, b);
    }
    size_t first, count;
    param_range(m, (int)a, (int)b, &first, &count);
    if (bl_le_get64(p + 8) != first || bl_le_get64(p + 16) != count) {
        return bad(r, "RANGE section: %llu parameters from %llu, not the model's %zu from %zu",
                   (unsigned long long)bl_le_get64(p + 16), (unsigned long long)bl_le_get64(p + 8),
                   count, first);
    }
    for (int k = 0; k < 2; k++) {
        st = read_section(r, k == 0 ? SEC_PARAMS : SEC_MOMENTUM, count * sizeof(float), &p, &len);
        if (st != BL_OK) {
            return st;
        }
        float *to = k == 0 ? params : momentum;
        if (to != NULL) {
            memcpy(to + first, p, len);
        }
    }
    return check_end(r);
}

bl_status_t bl_ckpt_check_file(bl_runtime_t *rt, const char *name, const unsigned char *bytes,
                               size_t len, const bl_model_t *m)
{
    reader_t r = {.rt = rt, .name = name, .bytes = bytes, .len = len};
    if (len >= HEADER_BYTES && bl_le_get32(bytes + 16) == KIND_STAGE) {
        return parse_stage(&r, m, -1, -1, NULL, NULL);
    }
    return parse_manifest(&r, m, NULL);
}

/* Reads a whole file of at most `max` bytes into memory. */
static bl_status_t read_file(bl_runtime_t *rt, const char *path, size_t max, unsigned char **out,
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

/* Reads and checks the manifest and every stage file of the checkpoint at
 * dir; with params/momentum not NULL, loads them (and *s). */
static bl_status_t read_checkpoint(bl_runtime_t *rt, const char *dir, bl_model_t *m, float *params,
                                   float *momentum, bl_ckpt_state_t *s)
{
    const bl_allocator_t *a = bl_rt_allocator(rt);
    char path[PATH_MAX];
    unsigned char *bytes = NULL;
    size_t len = 0;
    bl_ckpt_state_t got = {0};
    snprintf(path, sizeof path, "%s/manifest.bin", dir);
    bl_status_t st = read_file(rt, path, MANIFEST_MAX, &bytes, &len);
    if (st == BL_OK) {
        reader_t r = {.rt = rt, .name = path, .bytes = bytes, .len = len};
        st = parse_manifest(&r, m, &got);
    }
    bl_mem_free(a, bytes);
    for (int s2 = 0; st == BL_OK && s2 < got.stages; s2++) {
        size_t first, count;
        param_range(m, got.first[s2], got.first[s2 + 1], &first, &count);
        snprintf(path, sizeof path, "%s/stage-%d.bin", dir, s2);
        size_t max = HEADER_BYTES + 3 * SECTION_BYTES + 24 + 2 * count * sizeof(float);
        st = read_file(rt, path, max, &bytes, &len);
        if (st == BL_OK) {
            reader_t r = {.rt = rt, .name = path, .bytes = bytes, .len = len};
            st = parse_stage(&r, m, got.first[s2], got.first[s2 + 1], params, momentum);
        }
        bl_mem_free(a, bytes);
    }
    if (st == BL_OK && s != NULL) {
        *s = got;
    } else {
        bl_ckpt_state_free(rt, &got);
    }
    return st;
}

bl_status_t bl_ckpt_load(bl_runtime_t *rt, const char *path, bl_model_t *m, float *momentum,
                         bl_ckpt_state_t *s)
{
    /* Into scratch first, so a bad file leaves the model as it was. */
    const bl_allocator_t *a = bl_rt_allocator(rt);
    float *params = bl_mem_array(a, m->param_count > 0 ? m->param_count : 1, sizeof(float));
    float *mom = bl_mem_array(a, m->param_count > 0 ? m->param_count : 1, sizeof(float));
    bl_status_t st = params != NULL && mom != NULL
                         ? read_checkpoint(rt, path, m, params, mom, s)
                         : bl_fail(rt, BL_ERR_NO_MEM, "no memory to load a checkpoint");
    if (st == BL_OK) {
        memcpy(m->params, params, m->param_count * sizeof(float));
        memcpy(momentum, mom, m->param_count * sizeof(float));
    }
    bl_mem_free(a, params);
    bl_mem_free(a, mom);
    return st;
}

void bl_ckpt_state_free(bl_runtime_t *rt, bl_ckpt_state_t *s)
{
    bl_mem_free(bl_rt_allocator(rt), s->first);
    bl_mem_free(bl_rt_allocator(rt), s->shards);
    bl_mem_free(bl_rt_allocator(rt), s->control);
    s->first = NULL;
    s->shards = NULL;
    s->control = NULL;
    s->control_bytes = 0;
}

/* Rank 0: removes leftover temporary directories of saves that died. */
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
            remove_tree(path);
        }
    }
    closedir(d);
}

bl_status_t bl_ckpt_find(bl_runtime_t *rt, const char *dir, const bl_model_t *m, char *path,
                         size_t n, int *found)
{
    int result[2] = {0, 0}; /* found, failed */
    if (rt->rank == 0) {
        remove_leftovers(dir);
        int count = 0;
        long *steps = list_checkpoints(rt, dir, &count);
        for (int i = 0; i < count && !result[0]; i++) {
            if (snprintf(path, n, "%s/ckpt-%012ld", dir, steps[i]) >= (int)n) {
                continue;
            }
            if (read_checkpoint(rt, path, (bl_model_t *)m, NULL, NULL, NULL) == BL_OK) {
                result[0] = 1;
            } else {
                bl_log(rt, BL_LOG_WARN, "resume: skipping %s: %s", path, bl_last_error(rt));
            }
        }
        bl_mem_free(bl_rt_allocator(rt), steps);
    }
    /* The name travels in a buffer of one size on every rank, whatever n. */
    char chosen[PATH_MAX] = "";
    if (rt->rank == 0 && result[0]) {
        snprintf(chosen, sizeof chosen, "%s", path);
    }
    const char *op = "the broadcast of the checkpoint to resume from";
    bl_status_t st = bl_bcast_bounded(rt, result, 2, MPI_INT, 0, rt->comm, op);
    if (st == BL_OK && result[0]) {
        st = bl_bcast_bounded(rt, chosen, (int)sizeof chosen, MPI_CHAR, 0, rt->comm, op);
        if (st == BL_OK && snprintf(path, n, "%s", chosen) >= (int)n) {
            return bl_fail(rt, BL_ERR_INVALID_ARG, "checkpoint %s: path too long", chosen);
        }
    }
    if (st != BL_OK) {
        return st;
    }
    *found = result[0];
    return BL_OK;
}
