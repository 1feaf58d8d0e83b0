/* The language-model trainer's checkpoints on one rank (runtime/lm/
 * lm_checkpoint.c): a resumed trainer holds the saved parameters and goes on
 * bit for bit as the one that saved; a truncated or bit-flipped newest file
 * is skipped (at every cut of its first bytes and every bit of its small
 * sections, and a sample beyond) and the older checkpoint is taken; a
 * checkpoint of another seed or shape, or a layer trainer's, is refused
 * with BL_ERR_MISMATCH naming the field. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ballast.h"
#include "test_support.h"

static bl_runtime_t *rt;

enum { COUNT = 4000, STEPS = 3 };
static uint16_t tokens[COUNT];

static bl_lm_config_t tiny_config(uint64_t seed, int channels)
{
    bl_lm_config_t c = BL_LM_CONFIG_INIT;
    c.model = (bl_gpt2_config_t){.max_seq_len = 8,
                                 .vocab_size = 256,
                                 .num_layers = 1,
                                 .num_heads = 2,
                                 .channels = channels,
                                 .padded_vocab_size = 256};
    c.seq_len = 8;
    c.batch = 4;
    c.seed = seed;
    return c;
}

static bl_lm_trainer_t *make(uint64_t seed, int channels)
{
    bl_lm_config_t c = tiny_config(seed, channels);
    bl_lm_trainer_t *t = NULL;
    assert_int_equal(bl_lm_trainer_create(rt, &c, tokens, COUNT, &t), BL_OK);
    return t;
}

static void fresh_dir(char *dir, size_t n, const char *name)
{
    snprintf(dir, n, "/tmp/ballast-test-lmckpt-%ld-%s", (long)getpid(), name);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void remove_dir(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void assert_same_params(const bl_lm_trainer_t *a, const bl_lm_trainer_t *b)
{
    size_t na = 0, nb = 0;
    const float *pa = bl_lm_trainer_params(a, &na), *pb = bl_lm_trainer_params(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na * sizeof(float));
}

static void test_round_trip(void **state)
{
    (void)state;
    char dir[256], path[512];
    fresh_dir(dir, sizeof dir, "round");
    bl_lm_trainer_t *a = make(3, 16), *b = make(3, 16);
    assert_int_equal(bl_lm_trainer_run(a, STEPS, NULL, NULL), BL_OK);
    assert_int_equal(bl_lm_trainer_save_checkpoint(a, dir, 2, path, sizeof path), BL_OK);
    assert_non_null(strstr(path, "/ckpt-000000000003"));
    int resumed = 0;
    assert_int_equal(bl_lm_trainer_resume(b, dir, &resumed), BL_OK);
    assert_int_equal(resumed, 1);
    assert_int_equal(bl_lm_trainer_step(b), STEPS);
    assert_same_params(a, b);
    /* AdamW's moments and step count came back too: the next steps agree. */
    assert_int_equal(bl_lm_trainer_run(a, 2, NULL, NULL), BL_OK);
    assert_int_equal(bl_lm_trainer_run(b, 2, NULL, NULL), BL_OK);
    assert_same_params(a, b);
    /* An empty or missing directory holds nothing to resume. */
    assert_int_equal(bl_lm_trainer_resume(b, "/nonexistent-ballast-dir", &resumed), BL_OK);
    assert_int_equal(resumed, 0);
    bl_lm_trainer_destroy(a);
    bl_lm_trainer_destroy(b);
    remove_dir(dir);
}

static unsigned char *slurp_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct stat sb;
    assert_int_equal(fstat(fileno(f), &sb), 0);
    *len = (size_t)sb.st_size;
    unsigned char *b = malloc(*len);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void spit_file(const char *path, const unsigned char *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Resumes b from dir and checks that it took the checkpoint of step 3. */
static void assert_resumes_older(bl_lm_trainer_t *b, const char *dir)
{
    int resumed = 0;
    assert_int_equal(bl_lm_trainer_resume(b, dir, &resumed), BL_OK);
    assert_int_equal(resumed, 1);
    assert_int_equal(bl_lm_trainer_step(b), STEPS);
}

static void test_damage_skipped(void **state)
{
    (void)state;
    char dir[256], path[512];
    fresh_dir(dir, sizeof dir, "damage");
    bl_lm_trainer_t *a = make(3, 16), *b = make(3, 16);
    assert_int_equal(bl_lm_trainer_run(a, STEPS, NULL, NULL), BL_OK);
    assert_int_equal(bl_lm_trainer_save_checkpoint(a, dir, 0, NULL, 0), BL_OK);
    assert_int_equal(bl_lm_trainer_run(a, STEPS, NULL, NULL), BL_OK);
    assert_int_equal(bl_lm_trainer_save_checkpoint(a, dir, 0, path, sizeof path), BL_OK);
    char file[600];
    snprintf(file, sizeof file, "%s/lm.bin", path);
    size_t len;
    unsigned char *good = slurp_file(file, &len), *bad = malloc(len);
    long tried = 0;
    /* Every cut within the header and the small sections, then a sample. */
    for (size_t cut = 0; cut < len; cut += cut < 400 ? 1 : 4099) {
        spit_file(file, good, cut);
        assert_resumes_older(b, dir);
        tried++;
    }
    /* Every bit of the first 400 bytes, then a sample of the arrays. */
    for (size_t bit = 0; bit < 8 * len; bit += bit < 8 * 400 ? 1 : 8191) {
        memcpy(bad, good, len);
        bad[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        spit_file(file, bad, len);
        assert_resumes_older(b, dir);
        tried++;
    }
    spit_file(file, good, len);
    int resumed = 0;
    assert_int_equal(bl_lm_trainer_resume(b, dir, &resumed), BL_OK);
    assert_int_equal(bl_lm_trainer_step(b), 2 * STEPS);
    assert_same_params(a, b);
    print_message("damaged language-model checkpoints tried and skipped: %ld\n", tried);
    free(good);
    free(bad);
    bl_lm_trainer_destroy(a);
    bl_lm_trainer_destroy(b);
    remove_dir(dir);
}

static void test_other_run_refused(void **state)
{
    (void)state;
    char dir[256];
    fresh_dir(dir, sizeof dir, "other");
    bl_lm_trainer_t *a = make(3, 16);
    assert_int_equal(bl_lm_trainer_run(a, 1, NULL, NULL), BL_OK);
    assert_int_equal(bl_lm_trainer_save_checkpoint(a, dir, 0, NULL, 0), BL_OK);
    const struct {
        uint64_t seed;
        int channels;
        const char *says;
    } cases[] = {
        {4, 16, "was saved with seed 3; this run has seed 4"},
        {3, 32, "was saved with channels C = 16; this run has channels C = 32"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bl_lm_trainer_t *b = make(cases[i].seed, cases[i].channels);
        int resumed = 1;
        assert_int_equal(bl_lm_trainer_resume(b, dir, &resumed), BL_ERR_MISMATCH);
        assert_int_equal(resumed, 0);
        assert_non_null(strstr(bl_last_error(rt), cases[i].says));
        assert_int_equal(bl_lm_trainer_step(b), 0);
        bl_lm_trainer_destroy(b);
    }
    /* A layer trainer's checkpoint (a manifest) is not taken either. */
    char path[600];
    snprintf(path, sizeof path, "%s/ckpt-000000000009", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/ckpt-000000000009/manifest.bin", dir);
    spit_file(path, (const unsigned char *)"BALLASTK", 8);
    int resumed = 1;
    assert_int_equal(bl_lm_trainer_resume(a, dir, &resumed), BL_ERR_MISMATCH);
    assert_non_null(strstr(bl_last_error(rt), "is the layer trainer's"));
    bl_lm_trainer_destroy(a);
    remove_dir(dir);
}

int main(void)
{
    for (int i = 0; i < COUNT; i++) {
        tokens[i] = (uint16_t)((i * 37 + i / 7) % 251);
    }
    setenv("BALLAST_LOG", "error", 0); /* thousands of skipped files are warned about */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_damage_skipped),
        cmocka_unit_test(test_other_run_refused),
    };
    return run_tests_with_runtime("lm_checkpoint", tests, sizeof tests / sizeof tests[0], &rt);
}
