/* Checkpoints on one rank (runtime/checkpoint_*.c): a save loads back bit
 * for bit; the newest complete checkpoint wins; a crash at each stage of a
 * save (partial data, before the rename, before the directory sync) never
 * yields a partial checkpoint; truncation at many offsets and single-bit
 * flips anywhere are rejected with a message naming the file and the
 * field, and the earlier checkpoint is used; a write that fails (a full
 * disk) reports it, keeps the previous checkpoint, and leaves no temporary
 * files after the next start; keep K prunes; a checkpoint of another model
 * is refused; a window of layers of a checkpoint saved on another stage
 * map loads exactly that window and touches no memory outside it, reading
 * only the stage files it needs, and a missing, truncated or mismatched file
 * that it needs is refused naming the file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "test_support.h"

static bl_runtime_t *rt;

enum { IN = 6, HIDDEN = 5, OUT = 3 };

typedef struct fixture {
    bl_model_t *m;
    bl_layout_t layout;
    float *momentum;
    int stages;   /* of the stage map that saves record */
    int first[8]; /* that map */
    long shards[1];
    char dir[256];
} fixture_t;

/* Sets f up around the model m (which f then owns), with the momentum
 * i / 4 - 3 and a stage map of one stage. A built model holds memory for a
 * layer from its first use on; bl_model_params makes it whole before the
 * checkpoint code reads or writes every layer. */
static void setup_with(fixture_t *f, const char *name, bl_model_t *m)
{
    memset(f, 0, sizeof *f);
    f->m = m;
    assert_non_null(bl_model_params(m));
    assert_int_equal(bl_layout_init(&f->layout, rt, f->m, 1), BL_OK);
    assert_int_equal(bl_layout_connect(&f->layout), BL_OK);
    size_t n = bl_model_param_count(f->m);
    f->momentum = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        f->momentum[i] = (float)i * 0.25f - 3.0f;
    }
    f->stages = 1;
    f->first[0] = 0;
    f->first[1] = bl_model_layer_count(m);
    f->shards[0] = 16;
    snprintf(f->dir, sizeof f->dir, "/tmp/ballast-test-ckpt-%ld-%s", (long)getpid(), name);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
}

static void setup(fixture_t *f, const char *name, uint64_t seed)
{
    bl_model_t *m = NULL;
    assert_int_equal(test_mlp(rt, IN, (const int[]){HIDDEN}, 1, OUT, seed, &m), BL_OK);
    setup_with(f, name, m);
}

static void teardown(fixture_t *f)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f->momentum);
    bl_layout_free(&f->layout);
    bl_model_destroy(f->m);
}

/* Stand-in policy state: opaque bytes to the checkpoint. */
static unsigned char control_bytes[] = "learned policy state, 40 bytes or so";

static bl_ckpt_state_t state_at(fixture_t *f, long step)
{
    bl_ckpt_state_t s = {.step = step,
                         .seed = 7,
                         .batch = 16,
                         .shuffle = 1,
                         .ranks = f->stages,
                         .plan = {.version = 2,
                                  .groups = 1,
                                  .stages = f->stages,
                                  .layers = bl_model_layer_count(f->m),
                                  .batch = 16,
                                  .shards = f->shards,
                                  .first = f->first},
                         .control = control_bytes,
                         .control_bytes = sizeof control_bytes};
    return s;
}

static bl_status_t save(fixture_t *f, long step, bl_ckpt_fault_t fault)
{
    char path[512];
    bl_ckpt_state_t s = state_at(f, step);
    return bl_ckpt_save(rt, f->dir, f->m, f->momentum, &f->layout, &s, 0, fault, path, sizeof path);
}

/* The step of the checkpoint bl_ckpt_find picks, or -1 for none. */
static long newest(fixture_t *f)
{
    char path[512];
    int found = 0;
    assert_int_equal(bl_ckpt_find(rt, f->dir, f->m, path, sizeof path, &found), BL_OK);
    if (!found) {
        return -1;
    }
    const char *name = strrchr(path, '/');
    assert_non_null(name);
    return strtol(name + 6, NULL, 10);
}

static void test_round_trip(void **state)
{
    fixture_t f;
    setup(&f, "round", 1);
    size_t n = bl_model_param_count(f.m);
    float *want = malloc(n * sizeof *want);
    memcpy(want, bl_model_params(f.m), n * sizeof *want);
    assert_int_equal(save(&f, 12, BL_CKPT_NO_FAULT), BL_OK);
    assert_int_equal(newest(&f), 12);
    /* Load into a model whose parameters and momentum differ. */
    fixture_t g;
    setup(&g, "round-other", 2);
    char path[512];
    snprintf(path, sizeof path, "%s/ckpt-%012d", f.dir, 12);
    bl_ckpt_state_t s = {0};
    assert_int_equal(bl_ckpt_load(rt, path, g.m, 0, 3, g.momentum, &s), BL_OK);
    assert_memory_equal(bl_model_params(g.m), want, n * sizeof(float));
    assert_memory_equal(g.momentum, f.momentum, n * sizeof(float));
    assert_int_equal(s.step, 12);
    assert_true(s.seed == 7);
    assert_int_equal(s.batch, 16);
    assert_int_equal(s.shuffle, 1);
    assert_int_equal(s.plan.version, 2);
    assert_int_equal(s.plan.groups, 1);
    assert_int_equal(s.plan.stages, 1);
    assert_int_equal(s.plan.first[1], 3);
    assert_int_equal(s.plan.shards[0], 16);
    assert_int_equal(s.control_bytes, sizeof control_bytes);
    assert_memory_equal(s.control, control_bytes, sizeof control_bytes);
    bl_ckpt_state_free(rt, &s);
    assert_null(s.control);
    free(want);
    teardown(&g);
    teardown(&f);
}

/* A crash at each stage of a save: the checkpoint before it stays the one
 * found (or, crashed only before the directory sync, the new one, which is
 * complete); the leftovers are removed at the next start. */
static void test_crash_during_save(void **state)
{
    const bl_ckpt_fault_t faults[] = {BL_CKPT_CRASH_PARTIAL_DATA, BL_CKPT_CRASH_BEFORE_RENAME,
                                      BL_CKPT_CRASH_BEFORE_DIR_SYNC};
    const long expect[] = {5, 5, 9};
    for (int k = 0; k < 3; k++) {
        fixture_t f;
        setup(&f, "crash", 1);
        assert_int_equal(save(&f, 5, BL_CKPT_NO_FAULT), BL_OK);
        assert_int_equal(save(&f, 9, faults[k]), BL_ERR_IO);
        assert_non_null(strstr(bl_last_error(rt), "(test) crashed"));
        assert_int_equal(newest(&f), expect[k]);
        /* No temporary directory survives the next start. */
        DIR *d = opendir(f.dir);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            assert_null(strstr(e->d_name, ".tmp-"));
        }
        closedir(d);
        teardown(&f);
    }
}

/* A write that fails (ENOSPC): the error names the file and the reason,
 * the previous checkpoint is still found, nothing temporary is left. */
static void test_disk_full(void **state)
{
    fixture_t f;
    setup(&f, "full", 1);
    assert_int_equal(save(&f, 3, BL_CKPT_NO_FAULT), BL_OK);
    assert_int_equal(save(&f, 6, BL_CKPT_WRITE_FAILS), BL_ERR_IO);
    assert_non_null(strstr(bl_last_error(rt), "stage-0.bin: writing failed: No space left"));
    DIR *d = opendir(f.dir);
    struct dirent *e;
    int entries = 0;
    while ((e = readdir(d)) != NULL) {
        entries += e->d_name[0] != '.';
        assert_null(strstr(e->d_name, ".tmp-"));
    }
    closedir(d);
    assert_int_equal(entries, 1);
    assert_int_equal(newest(&f), 3);
    teardown(&f);
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc(*len + 1);
    assert_int_equal(fread(b, 1, *len, fp), *len);
    fclose(fp);
    return b;
}

static void spit(const char *path, const unsigned char *b, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, len, fp), len);
    fclose(fp);
}

/* Every truncation and every single-bit flip of each file of the newest
 * checkpoint is rejected naming the file; the older checkpoint is then the
 * one found, untouched. */
static void test_corruption_rejected(void **state)
{
    fixture_t f;
    setup(&f, "corrupt", 1);
    assert_int_equal(save(&f, 4, BL_CKPT_NO_FAULT), BL_OK);
    assert_int_equal(save(&f, 8, BL_CKPT_NO_FAULT), BL_OK);
    const char *files[] = {"manifest.bin", "stage-0.bin"};
    long tried = 0;
    for (int k = 0; k < 2; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/ckpt-%012d/%s", f.dir, 8, files[k]);
        size_t len;
        unsigned char *good = slurp(path, &len);
        unsigned char *b = malloc(len);
        for (size_t cut = 0; cut < len; cut += cut < 64 ? 1 : 7) {
            assert_int_not_equal(bl_ckpt_check_file(rt, files[k], good, cut, f.m), BL_OK);
            assert_non_null(strstr(bl_last_error(rt), files[k]));
            tried++;
        }
        for (size_t bit = 0; bit < 8 * len; bit += bit < 8 * 64 ? 1 : 13) {
            memcpy(b, good, len);
            b[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            assert_int_not_equal(bl_ckpt_check_file(rt, files[k], b, len, f.m), BL_OK);
            tried++;
        }
        assert_int_equal(bl_ckpt_check_file(rt, files[k], good, len, f.m), BL_OK);
        /* On disk: a flipped bit in the middle makes the newest invalid. */
        memcpy(b, good, len);
        b[len / 2] ^= 0x10;
        spit(path, b, len);
        assert_int_equal(newest(&f), 4);
        spit(path, good, len);
        assert_int_equal(newest(&f), 8);
        free(b);
        free(good);
    }
    print_message("corrupted checkpoint files tried and rejected: %ld\n", tried);
    teardown(&f);
}

/* A version 1 manifest (before the CONTROL section) still loads, with no
 * policy state; a version from the future is refused, naming it. The
 * header is little-endian: u32 version at 8, sections at 20, the CRC32 of
 * bytes 0-23 at 24. */
static void put32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        b[i] = (unsigned char)(v >> (8 * i));
    }
}

static void test_version1_manifest(void **state)
{
    (void)state;
    fixture_t f;
    setup(&f, "version1", 1);
    assert_int_equal(save(&f, 6, BL_CKPT_NO_FAULT), BL_OK);
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/ckpt-%012d", f.dir, 6);
    snprintf(path, sizeof path, "%s/manifest.bin", dir);
    size_t len;
    unsigned char *b = slurp(path, &len);
    /* Version 1: three sections; the last (CONTROL, its 16-byte header and
     * payload) dropped. */
    size_t v1_len = len - 16 - sizeof control_bytes;
    put32(b + 8, 1);
    put32(b + 20, 3);
    put32(b + 24, (uint32_t)crc32(0L, b, 24));
    assert_int_equal(bl_ckpt_check_file(rt, "manifest.bin", b, v1_len, f.m), BL_OK);
    spit(path, b, v1_len);
    bl_ckpt_state_t s = {0};
    assert_int_equal(bl_ckpt_load(rt, dir, f.m, 0, 3, f.momentum, &s), BL_OK);
    assert_int_equal(s.step, 6);
    assert_null(s.control);
    assert_int_equal(s.control_bytes, 0);
    bl_ckpt_state_free(rt, &s);
    /* Version 4 does not exist yet. */
    put32(b + 8, 4);
    put32(b + 24, (uint32_t)crc32(0L, b, 24));
    assert_int_equal(bl_ckpt_check_file(rt, "manifest.bin", b, v1_len, f.m), BL_ERR_FORMAT);
    assert_non_null(strstr(bl_last_error(rt), "version 4; this library reads versions 1 to 3"));
    free(b);
    teardown(&f);
}

static void test_keep_prunes(void **state)
{
    fixture_t f;
    setup(&f, "keep", 1);
    char path[512];
    for (long step = 1; step <= 5; step++) {
        bl_ckpt_state_t s = state_at(&f, step);
        assert_int_equal(bl_ckpt_save(rt, f.dir, f.m, f.momentum, &f.layout, &s, 2,
                                      BL_CKPT_NO_FAULT, path, sizeof path),
                         BL_OK);
    }
    struct stat sb;
    for (long step = 1; step <= 5; step++) {
        snprintf(path, sizeof path, "%s/ckpt-%012ld", f.dir, step);
        assert_int_equal(stat(path, &sb) == 0, step >= 4);
    }
    /* The same step saved again replaces it. */
    assert_int_equal(save(&f, 5, BL_CKPT_NO_FAULT), BL_OK);
    assert_int_equal(newest(&f), 5);
    teardown(&f);
}

static void test_other_model_refused(void **state)
{
    fixture_t f;
    setup(&f, "model", 1);
    assert_int_equal(save(&f, 2, BL_CKPT_NO_FAULT), BL_OK);
    bl_model_t *other = NULL;
    assert_int_equal(test_mlp(rt, IN, (const int[]){HIDDEN + 1}, 1, OUT, 1, &other), BL_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/ckpt-%012d", f.dir, 2);
    float *mom = calloc(bl_model_param_count(other), sizeof(float));
    bl_ckpt_state_t s = {0};
    assert_int_equal(bl_ckpt_load(rt, path, other, 0, 3, mom, &s), BL_ERR_MISMATCH);
    assert_non_null(strstr(bl_last_error(rt), "manifest.bin: layer 0 differs"));
    int found = 1;
    assert_int_equal(bl_ckpt_find(rt, f.dir, other, path, sizeof path, &found), BL_OK);
    assert_int_equal(found, 0);
    assert_int_equal(bl_ckpt_find(rt, "/nonexistent-ballast-dir", f.m, path, sizeof path, &found),
                     BL_OK);
    assert_int_equal(found, 0);
    free(mom);
    bl_model_destroy(other);
    teardown(&f);
}

/* ---- Windows of layers ------------------------------------------------- */

/* The model of the window tests: four dense layers (no ReLU, so that every
 * layer holds parameters), 6 -> 5 -> 4 -> 4 -> 3. */
enum { DEEP_LAYERS = 4 };
static const int deep_widths[DEEP_LAYERS + 1] = {6, 5, 4, 4, 3};

static void setup_deep(fixture_t *f, const char *name, uint64_t seed)
{
    bl_model_t *m = NULL;
    assert_int_equal(bl_model_create(rt, deep_widths[0], &m), BL_OK);
    for (int i = 1; i <= DEEP_LAYERS; i++) {
        assert_int_equal(bl_model_add_dense(m, deep_widths[i]), BL_OK);
    }
    assert_int_equal(bl_model_build(m, seed), BL_OK);
    setup_with(f, name, m);
}

/* The first parameter of layer i of the deep model (i = DEEP_LAYERS: the
 * count): a dense layer holds out × in weights and out biases. */
static size_t deep_offset(int layer)
{
    size_t offset = 0;
    for (int i = 0; i < layer; i++) {
        offset += (size_t)deep_widths[i + 1] * (size_t)deep_widths[i] + (size_t)deep_widths[i + 1];
    }
    return offset;
}

/* Saves step `step` of f under the stage map first[0..stages], as the ranks
 * of one pipeline would: each stage's file comes from a save by this rank
 * posing as that stage (into a directory of its own, then moved into place),
 * and the manifest from stage 0's. */
static void save_with_map(fixture_t *f, const int *first, int stages, long step)
{
    f->stages = stages;
    memcpy(f->first, first, ((size_t)stages + 1) * sizeof *first);
    char part[300], path[512], from[700], to[700];
    snprintf(part, sizeof part, "%s-part", f->dir);
    for (int stage = 0; stage < stages; stage++) {
        bl_layout_t l = f->layout;
        l.stage = stage;
        bl_ckpt_state_t s = state_at(f, step);
        assert_int_equal(bl_ckpt_save(rt, stage == 0 ? f->dir : part, f->m, f->momentum, &l, &s, 0,
                                      BL_CKPT_NO_FAULT, path, sizeof path),
                         BL_OK);
        if (stage > 0) {
            snprintf(from, sizeof from, "%s/stage-%d.bin", path, stage);
            snprintf(to, sizeof to, "%s/ckpt-%012ld/stage-%d.bin", f->dir, step, stage);
            assert_int_equal(rename(from, to), 0);
        }
    }
    snprintf(path, sizeof path, "rm -rf '%s'", part);
    assert_int_equal(system(path), 0);
}

static const float sentinel = -777.0f;

static void fill_sentinel(fixture_t *g)
{
    size_t n = bl_model_param_count(g->m);
    for (size_t i = 0; i < n; i++) {
        bl_model_params(g->m)[i] = sentinel;
        g->momentum[i] = sentinel;
    }
}

/* Checks that g's parameters and momentum equal f's in the layers [lo, hi)
 * and still hold the sentinel everywhere else. */
static void assert_window(const fixture_t *g, const fixture_t *f, int lo, int hi)
{
    size_t n = bl_model_param_count(g->m), first = deep_offset(lo), end = deep_offset(hi);
    const float *params = bl_model_params(g->m);
    assert_memory_equal(params + first, bl_model_params(f->m) + first,
                        (end - first) * sizeof(float));
    assert_memory_equal(g->momentum + first, f->momentum + first, (end - first) * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        if (i < first || i >= end) {
            assert_true(params[i] == sentinel && g->momentum[i] == sentinel);
        }
    }
}

static void assert_untouched(const fixture_t *g)
{
    size_t n = bl_model_param_count(g->m);
    for (size_t i = 0; i < n; i++) {
        assert_true(bl_model_params(g->m)[i] == sentinel && g->momentum[i] == sentinel);
    }
}

/* A checkpoint saved on the stage map {0, 2, 4} loads in windows of any
 * other map (as a rank that holds only its stage's layers would): exactly
 * the window's parameters and momentum are the saved ones, and the memory
 * around it is untouched. Its state reads alone, before any layer. */
static void test_window_other_map(void **state)
{
    (void)state;
    fixture_t f, g;
    setup_deep(&f, "window", 1);
    setup_deep(&g, "window-other", 2);
    assert_int_equal(deep_offset(DEEP_LAYERS), bl_model_param_count(f.m));
    save_with_map(&f, (const int[]){0, 2, 4}, 2, 7);
    assert_int_equal(newest(&f), 7);
    char path[512];
    snprintf(path, sizeof path, "%s/ckpt-%012d", f.dir, 7);
    fill_sentinel(&g);
    bl_ckpt_state_t s = {0};
    assert_int_equal(bl_ckpt_read_state(rt, path, g.m, &s), BL_OK);
    assert_int_equal(s.step, 7);
    assert_int_equal(s.plan.stages, 2);
    assert_int_equal(s.ranks, 2);
    assert_memory_equal(s.plan.first, ((const int[]){0, 2, 4}), 3 * sizeof(int));
    assert_int_equal(s.control_bytes, sizeof control_bytes);
    bl_ckpt_state_free(rt, &s);
    assert_untouched(&g);
    /* Windows across both files, inside one, equal to one, and the whole. */
    const int windows[][2] = {{1, 3}, {0, 1}, {3, 4}, {2, 4}, {0, 2}, {1, 4}, {0, 4}};
    for (size_t k = 0; k < sizeof windows / sizeof windows[0]; k++) {
        int lo = windows[k][0], hi = windows[k][1];
        fill_sentinel(&g);
        s = (bl_ckpt_state_t){0};
        assert_int_equal(bl_ckpt_load(rt, path, g.m, lo, hi, g.momentum, &s), BL_OK);
        assert_window(&g, &f, lo, hi);
        assert_int_equal(s.step, 7);
        assert_int_equal(s.plan.first[1], 2);
        bl_ckpt_state_free(rt, &s);
        /* Without a state to fill. */
        fill_sentinel(&g);
        assert_int_equal(bl_ckpt_load(rt, path, g.m, lo, hi, g.momentum, NULL), BL_OK);
        assert_window(&g, &f, lo, hi);
    }
    /* A window that is no window of the model. */
    const int bad[][2] = {{2, 2}, {3, 1}, {-1, 2}, {0, DEEP_LAYERS + 1}};
    fill_sentinel(&g);
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        assert_int_equal(bl_ckpt_load(rt, path, g.m, bad[k][0], bad[k][1], g.momentum, NULL),
                         BL_ERR_INVALID_ARG);
        assert_non_null(strstr(bl_last_error(rt), "are not a window of this model's 4 layers"));
    }
    assert_untouched(&g);
    teardown(&g);
    teardown(&f);
}

/* A missing stage file: a window that needs it fails naming it, and leaves
 * the model as it was; a window that does not need it loads. The finder
 * checks every file, so a resume never takes that checkpoint: the complete
 * one before it is found. */
static void test_window_missing_file(void **state)
{
    (void)state;
    fixture_t f, g;
    setup_deep(&f, "missing", 1);
    setup_deep(&g, "missing-other", 2);
    save_with_map(&f, (const int[]){0, 2, 4}, 2, 3);
    save_with_map(&f, (const int[]){0, 2, 4}, 2, 7);
    char path[512], file[600];
    snprintf(path, sizeof path, "%s/ckpt-%012d", f.dir, 7);
    snprintf(file, sizeof file, "%s/stage-1.bin", path);
    assert_int_equal(unlink(file), 0);
    const int needs[][2] = {{1, 3}, {2, 4}, {3, 4}, {0, 4}};
    for (size_t k = 0; k < sizeof needs / sizeof needs[0]; k++) {
        fill_sentinel(&g);
        bl_status_t st = bl_ckpt_load(rt, path, g.m, needs[k][0], needs[k][1], g.momentum, NULL);
        assert_true(st == BL_ERR_IO || st == BL_ERR_FORMAT);
        assert_non_null(strstr(bl_last_error(rt), "stage-1.bin"));
        assert_untouched(&g);
    }
    fill_sentinel(&g);
    assert_int_equal(bl_ckpt_load(rt, path, g.m, 0, 2, g.momentum, NULL), BL_OK);
    assert_window(&g, &f, 0, 2);
    assert_int_equal(newest(&f), 3);
    teardown(&g);
    teardown(&f);
}

/* A truncated stage file is refused with BL_ERR_FORMAT naming it by every
 * window that needs it, and the model is left as it was; a window that
 * does not need it loads. */
static void test_window_truncated_file(void **state)
{
    (void)state;
    fixture_t f, g;
    setup_deep(&f, "truncated", 1);
    setup_deep(&g, "truncated-other", 2);
    save_with_map(&f, (const int[]){0, 1, 3, 4}, 3, 5);
    char path[512], file[600];
    snprintf(path, sizeof path, "%s/ckpt-%012d", f.dir, 5);
    snprintf(file, sizeof file, "%s/stage-1.bin", path);
    size_t len;
    unsigned char *b = slurp(file, &len);
    for (size_t cut = 0; cut < len; cut += len / 7) {
        spit(file, b, cut);
        fill_sentinel(&g);
        assert_int_equal(bl_ckpt_load(rt, path, g.m, 2, 4, g.momentum, NULL), BL_ERR_FORMAT);
        assert_non_null(strstr(bl_last_error(rt), "stage-1.bin"));
        assert_untouched(&g);
    }
    fill_sentinel(&g);
    assert_int_equal(bl_ckpt_load(rt, path, g.m, 3, 4, g.momentum, NULL), BL_OK);
    assert_window(&g, &f, 3, 4);
    spit(file, b, len);
    fill_sentinel(&g);
    assert_int_equal(bl_ckpt_load(rt, path, g.m, 2, 4, g.momentum, NULL), BL_OK);
    assert_window(&g, &f, 2, 4);
    free(b);
    teardown(&g);
    teardown(&f);
}

/* A manifest whose stage map is not the one the stage files were saved on:
 * a file whose RANGE is not its stage's under the manifest's map is refused
 * naming it, and the model is left as it was. */
static void test_window_map_mismatch(void **state)
{
    (void)state;
    fixture_t f, g;
    setup_deep(&f, "map", 1);
    setup_deep(&g, "map-other", 2);
    save_with_map(&f, (const int[]){0, 2, 4}, 2, 4);
    /* The manifest of the same step saved on the map {0, 3, 4} replaces it. */
    fixture_t h;
    setup_deep(&h, "map-manifest", 1);
    save_with_map(&h, (const int[]){0, 3, 4}, 2, 4);
    char path[512], file[600];
    snprintf(path, sizeof path, "%s/ckpt-%012d", f.dir, 4);
    snprintf(file, sizeof file, "%s/ckpt-%012d/manifest.bin", h.dir, 4);
    size_t len;
    unsigned char *b = slurp(file, &len);
    snprintf(file, sizeof file, "%s/manifest.bin", path);
    spit(file, b, len);
    free(b);
    fill_sentinel(&g);
    assert_int_equal(bl_ckpt_load(rt, path, g.m, 0, 1, g.momentum, NULL), BL_ERR_FORMAT);
    assert_non_null(strstr(bl_last_error(rt),
                           "stage-0.bin: RANGE section: layers [0, 2) are not this stage's"));
    assert_untouched(&g);
    /* Stage 1's file holds more layers than the manifest gives it. */
    assert_int_equal(bl_ckpt_load(rt, path, g.m, 3, 4, g.momentum, NULL), BL_ERR_FORMAT);
    assert_non_null(strstr(bl_last_error(rt), "stage-1.bin"));
    assert_untouched(&g);
    assert_int_equal(newest(&f), -1);
    teardown(&h);
    teardown(&g);
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),          cmocka_unit_test(test_crash_during_save),
        cmocka_unit_test(test_disk_full),           cmocka_unit_test(test_corruption_rejected),
        cmocka_unit_test(test_keep_prunes),         cmocka_unit_test(test_other_model_refused),
        cmocka_unit_test(test_version1_manifest),   cmocka_unit_test(test_window_other_map),
        cmocka_unit_test(test_window_missing_file), cmocka_unit_test(test_window_truncated_file),
        cmocka_unit_test(test_window_map_mismatch),
    };
    return run_tests_with_runtime("checkpoint", tests, sizeof tests / sizeof tests[0], &rt);
}
