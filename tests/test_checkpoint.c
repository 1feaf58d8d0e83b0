/* Checkpoints on one rank (runtime/checkpoint_*.c): a save loads back bit
 * for bit; the newest complete checkpoint wins; a crash at each stage of a
 * save (partial data, before the rename, before the directory sync) never
 * yields a partial checkpoint; truncation at many offsets and single-bit
 * flips anywhere are rejected with a message naming the file and the
 * field, and the earlier checkpoint is used; a write that fails (a full
 * disk) reports it, keeps the previous checkpoint, and leaves no temporary
 * files after the next start; keep K prunes; a checkpoint of another model
 * is refused. */
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
    int first[2];
    long shards[1];
    char dir[256];
} fixture_t;

static void setup(fixture_t *f, const char *name, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(test_mlp(rt, IN, (const int[]){HIDDEN}, 1, OUT, seed, &f->m), BL_OK);
    assert_int_equal(bl_layout_init(&f->layout, rt, f->m, 1), BL_OK);
    assert_int_equal(bl_layout_connect(&f->layout), BL_OK);
    size_t n = bl_model_param_count(f->m);
    f->momentum = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        f->momentum[i] = (float)i * 0.25f - 3.0f;
    }
    f->first[0] = 0;
    f->first[1] = 3;
    f->shards[0] = 16;
    snprintf(f->dir, sizeof f->dir, "/tmp/ballast-test-ckpt-%ld-%s", (long)getpid(), name);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
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
                         .ranks = 1,
                         .plan = {.version = 2,
                                  .groups = 1,
                                  .stages = 1,
                                  .layers = 3,
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
    assert_int_equal(bl_ckpt_load(rt, path, g.m, g.momentum, &s), BL_OK);
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
    assert_int_equal(bl_ckpt_load(rt, dir, f.m, f.momentum, &s), BL_OK);
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
    assert_int_equal(bl_ckpt_load(rt, path, other, mom, &s), BL_ERR_MISMATCH);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),        cmocka_unit_test(test_crash_during_save),
        cmocka_unit_test(test_disk_full),         cmocka_unit_test(test_corruption_rejected),
        cmocka_unit_test(test_keep_prunes),       cmocka_unit_test(test_other_model_refused),
        cmocka_unit_test(test_version1_manifest),
    };
    return run_tests_with_runtime("checkpoint", tests, sizeof tests / sizeof tests[0], &rt);
}
