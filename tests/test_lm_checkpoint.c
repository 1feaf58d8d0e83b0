/* The language-model trainer's checkpoints on one rank (runtime/lm/
 * lm_checkpoint.c): a resumed trainer holds the saved parameters and goes on
 * bit for bit as the one that saved; a truncated or bit-flipped newest file
 * is skipped (at every cut of its first bytes and every bit of its small
 * sections, and a sample beyond) and the older checkpoint is taken; a
 * checkpoint of another seed or shape, or a layer trainer's, is refused
 * with BL_ERR_MISMATCH naming the field. The STAGES section (the stage map,
 * format version 3): a malformed map, with its checksum made right, is
 * skipped as damaged with a warning naming the section and the entry; a
 * version 2 file without it still resumes, bit for bit; and a map saved for
 * another number of stages leaves the run's own map, with an info line. */
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
#include <zlib.h>

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

static bl_lm_trainer_t *make_on(bl_runtime_t *on, uint64_t seed, int channels)
{
    bl_lm_config_t c = tiny_config(seed, channels);
    bl_lm_trainer_t *t = NULL;
    assert_int_equal(bl_lm_trainer_create(on, &c, tokens, COUNT, &t), BL_OK);
    return t;
}

static bl_lm_trainer_t *make(uint64_t seed, int channels)
{
    return make_on(rt, seed, channels);
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
    /* The manifest and the one stage file, which holds every unit. */
    char file[600];
    snprintf(file, sizeof file, "%s/lm.bin", path);
    assert_int_equal(access(file, R_OK), 0);
    snprintf(file, sizeof file, "%s/stage-0-of-1.bin", path);
    assert_int_equal(access(file, R_OK), 0);
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

/* Damages the file `name` of the checkpoint directory path, the newest in
 * dir, at every cut within its first `dense` bytes and at every bit of its
 * first `every_bit` bytes, then at one bit of each byte up to `dense`, and
 * at a sample beyond: b must skip each for the older checkpoint. Returns
 * how many it tried. */
static long damage_file(bl_lm_trainer_t *b, const char *dir, const char *path, const char *name,
                        size_t every_bit, size_t dense)
{
    char file[600];
    snprintf(file, sizeof file, "%s/%s", path, name);
    size_t len;
    unsigned char *good = slurp_file(file, &len), *bad = malloc(len);
    assert_non_null(bad);
    long tried = 0;
    for (size_t cut = 0; cut < len; cut += cut < dense ? 1 : 4099) {
        spit_file(file, good, cut);
        assert_resumes_older(b, dir);
        tried++;
    }
    for (size_t bit = 0; bit < 8 * len;
         bit += bit < 8 * every_bit ? 1 : (bit < 8 * dense ? 9 : 8191)) {
        memcpy(bad, good, len);
        bad[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        spit_file(file, bad, len);
        assert_resumes_older(b, dir);
        tried++;
    }
    /* Missing altogether. */
    assert_int_equal(unlink(file), 0);
    assert_resumes_older(b, dir);
    spit_file(file, good, len);
    free(good);
    free(bad);
    return tried + 1;
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
    /* The manifest (small: every cut and bit), then the stage file: every
     * cut and bit of its header and the start of its UNITS section, one bit
     * a byte of the rest of its pieces' table, a sample of its floats. */
    long tried = damage_file(b, dir, path, "lm.bin", 1000, 1000);
    tried += damage_file(b, dir, path, "stage-0-of-1.bin", 128, 700);
    int resumed = 0;
    assert_int_equal(bl_lm_trainer_resume(b, dir, &resumed), BL_OK);
    assert_int_equal(bl_lm_trainer_step(b), 2 * STEPS);
    assert_same_params(a, b);
    print_message("damaged language-model checkpoints tried and skipped: %ld\n", tried);
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

/* ---- The STAGES section ---------------------------------------------------- */

/* The log lines of the runtime `loud` (info and up), one per line. */
static char logged[1 << 16];

static void capture(bl_log_level_t level, int rank, const char *line, void *arg)
{
    (void)level;
    (void)rank;
    (void)arg;
    size_t used = strlen(logged);
    snprintf(logged + used, sizeof logged - used, "%s\n", line);
}

/* One section of a checkpoint file: its id and payload. */
typedef struct section {
    uint32_t id;
    const unsigned char *bytes;
    size_t nbytes;
} section_t;

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/* Splits a checkpoint file (checkpoint.h: a 32-byte header, then per
 * section u32 id, u32 CRC32, u64 length and the payload) into its sections;
 * returns their count. */
static int split_file(const unsigned char *b, size_t len, section_t *out, int max)
{
    int n = 0;
    for (size_t at = 32; at < len; n++) {
        assert_true(n < max && len - at >= 16);
        uint64_t k = (uint64_t)get32(b + at + 8) | (uint64_t)get32(b + at + 12) << 32;
        out[n] = (section_t){get32(b + at), b + at + 16, (size_t)k};
        at += 16 + (size_t)k;
    }
    assert_int_equal(n, (int)get32(b + 20));
    return n;
}

/* Writes a file of `version` and `kind` (3 a manifest, 4 a stage file) with
 * the sections given, with every checksum right, as a save writes it. */
static void write_kind(const char *path, uint32_t version, uint32_t kind, const section_t *sec,
                       int n)
{
    unsigned char h[32] = "BALLASTK";
    put32(h + 8, version);
    put32(h + 12, 0x01020304u);
    put32(h + 16, kind);
    put32(h + 20, (uint32_t)n);
    put32(h + 24, (uint32_t)crc32(0L, h, 24));
    put32(h + 28, 0);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(h, 1, 32, f), 32);
    for (int i = 0; i < n; i++) {
        unsigned char s[16];
        put32(s, sec[i].id);
        put32(s + 4, (uint32_t)crc32(0L, sec[i].bytes, (uInt)sec[i].nbytes));
        put32(s + 8, (uint32_t)sec[i].nbytes);
        put32(s + 12, (uint32_t)((uint64_t)sec[i].nbytes >> 32));
        assert_int_equal(fwrite(s, 1, 16, f), 16);
        assert_int_equal(fwrite(sec[i].bytes, 1, sec[i].nbytes, f), sec[i].nbytes);
    }
    assert_int_equal(fclose(f), 0);
}

/* A manifest (lm.bin) of `version`. */
static void write_file(const char *path, uint32_t version, const section_t *sec, int n)
{
    write_kind(path, version, 3, sec, n);
}

enum {
    SEC_PARAMS = 5,
    SEC_SHARDS = 10,
    SEC_STAGES = 13,
    SEC_LAYERS = 14,
    SEC_FILES = 15,
    SEC_UNITS = 16
};

static int find_section(const section_t *sec, int n, uint32_t id)
{
    for (int i = 0; i < n; i++) {
        if (sec[i].id == id) {
            return i;
        }
    }
    fail_msg("section %u missing", id);
    return -1;
}

/* Resumes a fresh trainer on `loud` from dir and checks that it took the
 * checkpoint of `step`; returns it. */
static bl_lm_trainer_t *resume_at(bl_runtime_t *loud, const char *dir, long step)
{
    bl_lm_trainer_t *b = make_on(loud, 3, 16);
    logged[0] = '\0';
    int resumed = 0;
    assert_int_equal(bl_lm_trainer_resume(b, dir, &resumed), BL_OK);
    assert_int_equal(resumed, 1);
    assert_int_equal(bl_lm_trainer_step(b), step);
    return b;
}

static void test_stage_map_section(void **state)
{
    (void)state;
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_INFO;
    cfg.log_fn = capture;
    cfg.blas_threads = 1;
    bl_runtime_t *loud = NULL;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &loud), BL_OK);
    char dir[256], path[512], file[600];
    fresh_dir(dir, sizeof dir, "stages");
    bl_lm_trainer_t *a = make_on(loud, 3, 16);
    assert_int_equal(bl_lm_trainer_run(a, STEPS, NULL, NULL), BL_OK);
    assert_int_equal(bl_lm_trainer_save_checkpoint(a, dir, 0, NULL, 0), BL_OK);
    assert_int_equal(bl_lm_trainer_run(a, STEPS, NULL, NULL), BL_OK);
    assert_int_equal(bl_lm_trainer_save_checkpoint(a, dir, 0, path, sizeof path), BL_OK);
    snprintf(file, sizeof file, "%s/lm.bin", path);
    size_t len;
    unsigned char *good = slurp_file(file, &len);
    /* Version 4, 7 sections; STAGES follows SHARDS and holds one stage over
     * the 3 units (the embedding, 1 block, the head): 1, then 0, 3; LAYERS
     * follows it and holds no user layer; FILES, last, names one stage
     * file, of units [0, 3). */
    assert_int_equal(get32(good + 8), 4);
    section_t sec[9], bad[9];
    int n = split_file(good, len, sec, 9);
    assert_int_equal(n, 7);
    const int files = find_section(sec, n, SEC_FILES);
    assert_int_equal(files, n - 1);
    assert_int_equal(sec[files].nbytes, 8 + 24);
    assert_int_equal(get32(sec[files].bytes), 1);
    assert_int_equal(get32(sec[files].bytes + 8), 0);
    assert_int_equal(get32(sec[files].bytes + 12), 3);
    const int shards = find_section(sec, n, SEC_SHARDS), stages = find_section(sec, n, SEC_STAGES);
    assert_int_equal(stages, shards + 1);
    assert_int_equal(sec[stages].nbytes, 12);
    assert_int_equal(get32(sec[stages].bytes), 1);
    assert_int_equal(get32(sec[stages].bytes + 4), 0);
    assert_int_equal(get32(sec[stages].bytes + 8), 3);

    /* Malformed maps (and SHARDS of 2 ranks in 1 pipeline, so that 2 stages
     * fit): the newest checkpoint is skipped as damaged, naming the field,
     * and the older one is taken. */
    static const unsigned char two_ranks[12] = {2, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0};
    const struct {
        unsigned char map[16];
        size_t nbytes;
        int two_ranks;
        const char *says;
    } cases[] = {
        {{1, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0},
         12,
         0,
         "STAGES section: stage map entry 0 is unit 1; the first stage must start at unit 0"},
        {{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0},
         12,
         0,
         "STAGES section: stage map entry 1 (the end) is unit 2; the last stage must end at the "
         "model's 3 units"},
        {{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0},
         16,
         1,
         "STAGES section: stage map entry 1 is unit 0, not after entry 0 (0): the stages must be "
         "in order"},
        {{2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0},
         16,
         1,
         "STAGES section: stage map entry 1 is unit 3, past the model's last unit 2"},
        {{2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0},
         16,
         0,
         "STAGES section: S = 2 stages, but SHARDS has P = 1 ranks in D = 1 pipelines, so S = "
         "P / D = 1"},
        {{2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0}, 12, 0, "STAGES section: 12 bytes for 2 stages"},
        {{4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0},
         16,
         0,
         "STAGES section: 16 bytes for 4 stages over 3 units"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(bad, sec, sizeof sec);
        bad[stages] = (section_t){SEC_STAGES, cases[i].map, cases[i].nbytes};
        if (cases[i].two_ranks) {
            bad[shards] = (section_t){SEC_SHARDS, two_ranks, sizeof two_ranks};
        }
        write_file(file, 4, bad, n);
        bl_lm_trainer_t *b = resume_at(loud, dir, STEPS);
        assert_non_null(strstr(logged, "skipping"));
        if (strstr(logged, cases[i].says) == NULL) {
            fail_msg("case %zu: the log does not say '%s':\n%s", i, cases[i].says, logged);
        }
        bl_lm_trainer_destroy(b);
    }

    /* A version 3 file (before the stage files: its PARAMS, ADAM_M and
     * ADAM_V in place of FILES, which the one stage file's hold whole) still
     * resumes, without the stage file. Its map of 2 stages, saved on 2
     * ranks, is well formed but does not fit this one-stage run: it keeps
     * its own map, and says so. */
    char stage_file[700];
    snprintf(stage_file, sizeof stage_file, "%s/stage-0-of-1.bin", path);
    size_t stage_len;
    unsigned char *stage_bytes = slurp_file(stage_file, &stage_len);
    assert_int_equal(get32(stage_bytes + 8), 4);
    assert_int_equal(get32(stage_bytes + 16), 4);
    section_t in_stage[5];
    assert_int_equal(split_file(stage_bytes, stage_len, in_stage, 5), 5);
    const int params = find_section(in_stage, 5, SEC_PARAMS);
    assert_int_equal(params, 2);
    section_t v3[9];
    memcpy(v3, sec, (size_t)files * sizeof *v3);
    memcpy(v3 + files, in_stage + params, 3 * sizeof *v3);
    assert_int_equal(unlink(stage_file), 0);
    static const unsigned char map2[16] = {2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0};
    memcpy(bad, v3, sizeof v3);
    bad[stages] = (section_t){SEC_STAGES, map2, sizeof map2};
    bad[shards] = (section_t){SEC_SHARDS, two_ranks, sizeof two_ranks};
    write_file(file, 3, bad, 9);
    bl_lm_trainer_t *b = resume_at(loud, dir, 2 * STEPS);
    if (strstr(logged, "stage map 0-0,1-2 was saved for 2 stages; this run has 1, so the "
                       "balanced map 0-2 is used") == NULL) {
        fail_msg("no line about the other stage count:\n%s", logged);
    }
    assert_same_params(a, b);
    bl_lm_trainer_destroy(b);

    /* A LAYERS section that does not hold what it says, or a layer the
     * model cannot have, is damage too. */
    static const unsigned char one_missing[4] = {1, 0, 0, 0};
    static const unsigned char past_block[20] = {9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    static const unsigned char one_past[20] = {1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
    const struct {
        const unsigned char *bytes;
        size_t nbytes;
        const char *says;
    } layer_cases[] = {
        {one_missing, sizeof one_missing, "LAYERS section: 4 bytes for 1 user layers"},
        {past_block, sizeof past_block, "LAYERS section: 20 bytes for 9 user layers"},
        {one_past, sizeof one_past, "LAYERS section: user layer 0 (unit 9, flags 0, 1 parameters)"},
    };
    for (size_t i = 0; i < sizeof layer_cases / sizeof layer_cases[0]; i++) {
        memcpy(bad, sec, sizeof sec);
        bad[stages + 1] = (section_t){SEC_LAYERS, layer_cases[i].bytes, layer_cases[i].nbytes};
        write_file(file, 4, bad, n);
        bl_lm_trainer_t *c = resume_at(loud, dir, STEPS);
        if (strstr(logged, "skipping") == NULL || strstr(logged, layer_cases[i].says) == NULL) {
            fail_msg("layers case %zu: the log does not say '%s':\n%s", i, layer_cases[i].says,
                     logged);
        }
        bl_lm_trainer_destroy(c);
    }

    /* A version 2 file (written before the STAGES and LAYERS sections)
     * still resumes, and the run goes on bit for bit. */
    memcpy(bad, v3, sizeof v3);
    assert_int_equal(find_section(v3, 9, SEC_LAYERS), stages + 1);
    assert_int_equal(v3[stages + 1].nbytes, 4);
    memmove(bad + stages, bad + stages + 2, (size_t)(9 - stages - 2) * sizeof *bad);
    write_file(file, 2, bad, 9 - 2);
    b = resume_at(loud, dir, 2 * STEPS);
    assert_null(strstr(logged, "skipping"));
    assert_same_params(a, b);
    assert_int_equal(bl_lm_trainer_run(a, 2, NULL, NULL), BL_OK);
    assert_int_equal(bl_lm_trainer_run(b, 2, NULL, NULL), BL_OK);
    assert_same_params(a, b);
    bl_lm_trainer_destroy(b);

    free(good);
    free(stage_bytes);
    bl_lm_trainer_destroy(a);
    bl_runtime_destroy(loud);
    remove_dir(dir);
}

/* ---- The stage files --------------------------------------------------------- */

/* Resumes a fresh trainer on `loud` from dir, which must skip the newest
 * checkpoint for the one of step STEPS, with a warning that says `says`. */
static void assert_skipped_saying(bl_runtime_t *loud, const char *dir, const char *says)
{
    bl_lm_trainer_t *b = resume_at(loud, dir, STEPS);
    if (strstr(logged, "skipping") == NULL || strstr(logged, says) == NULL) {
        fail_msg("the log does not say '%s':\n%s", says, logged);
    }
    bl_lm_trainer_destroy(b);
}

static void test_stage_files(void **state)
{
    (void)state;
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_INFO;
    cfg.log_fn = capture;
    cfg.blas_threads = 1;
    bl_runtime_t *loud = NULL;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &loud), BL_OK);
    char dir[256], old[512], path[512], manifest[600], file[600], older[600];
    fresh_dir(dir, sizeof dir, "files");
    bl_lm_trainer_t *a = make_on(loud, 3, 16);
    assert_int_equal(bl_lm_trainer_run(a, STEPS, NULL, NULL), BL_OK);
    assert_int_equal(bl_lm_trainer_save_checkpoint(a, dir, 0, old, sizeof old), BL_OK);
    assert_int_equal(bl_lm_trainer_run(a, STEPS, NULL, NULL), BL_OK);
    assert_int_equal(bl_lm_trainer_save_checkpoint(a, dir, 0, path, sizeof path), BL_OK);
    snprintf(manifest, sizeof manifest, "%s/lm.bin", path);
    snprintf(file, sizeof file, "%s/stage-0-of-1.bin", path);
    snprintf(older, sizeof older, "%s/stage-0-of-1.bin", old);
    size_t len, stage_len, older_len;
    unsigned char *good = slurp_file(manifest, &len);
    unsigned char *stage = slurp_file(file, &stage_len);
    unsigned char *other = slurp_file(older, &older_len);
    section_t sec[7], bad[7];
    assert_int_equal(split_file(good, len, sec, 7), 7);
    const int files = find_section(sec, 7, SEC_FILES);
    char says[2048];

    /* Missing, or truncated (the length is checked against the manifest's
     * record before anything is read). */
    assert_int_equal(unlink(file), 0);
    snprintf(says, sizeof says, "checkpoint file %s: cannot open it", file);
    assert_skipped_saying(loud, dir, says);
    spit_file(file, stage, stage_len - 100);
    snprintf(says, sizeof says, "checkpoint file %s: %zu bytes; the manifest %s records %zu", file,
             stage_len - 100, manifest, stage_len);
    assert_skipped_saying(loud, dir, says);
    /* The older checkpoint's stage file, of the same length: its UNITS
     * section is of another step. */
    assert_int_equal(older_len, stage_len);
    spit_file(file, other, older_len);
    snprintf(says, sizeof says,
             "checkpoint file %s: UNITS section: step 3, stage 0 of 1, units [0, 3); the manifest "
             "%s records step 6, stage 0 of 1, units [0, 3)",
             file, manifest);
    assert_skipped_saying(loud, dir, says);
    spit_file(file, stage, stage_len);

    /* A manifest whose records do not match the stage file (its FILES
     * section's checksum made right): another length, another CRC32 of the
     * UNITS section, other units. */
    unsigned char entry[32];
    memcpy(entry, sec[files].bytes, sizeof entry);
    memcpy(bad, sec, sizeof sec);
    bad[files] = (section_t){SEC_FILES, entry, sizeof entry};
    put32(entry + 16, get32(sec[files].bytes + 16) + 8);
    write_file(manifest, 4, bad, 7);
    snprintf(says, sizeof says, "checkpoint file %s: %zu bytes; the manifest %s records %zu", file,
             stage_len, manifest, stage_len + 8);
    assert_skipped_saying(loud, dir, says);
    memcpy(entry, sec[files].bytes, sizeof entry);
    put32(entry + 24, get32(sec[files].bytes + 24) ^ 1u);
    write_file(manifest, 4, bad, 7);
    assert_skipped_saying(loud, dir, "UNITS section: its CRC32");
    assert_non_null(strstr(logged, "(a stage file of another checkpoint?)"));
    memcpy(entry, sec[files].bytes, sizeof entry);
    put32(entry + 12, 2);
    write_file(manifest, 4, bad, 7);
    assert_skipped_saying(loud, dir,
                          "lm.bin: FILES section: stage file 0 holds units [0, 2); the stage map "
                          "gives stage 0 units [0, 3)");
    spit_file(manifest, good, len);

    /* A float changed with the PARAMS section's checksum made right: the
     * piece's own CRC32 still tells. */
    section_t in_stage[5], bad_stage[5];
    assert_int_equal(split_file(stage, stage_len, in_stage, 5), 5);
    memcpy(bad_stage, in_stage, sizeof in_stage);
    unsigned char *floats = malloc(in_stage[2].nbytes);
    assert_non_null(floats);
    memcpy(floats, in_stage[2].bytes, in_stage[2].nbytes);
    floats[in_stage[2].nbytes / 2] ^= 0x10;
    bad_stage[2].bytes = floats;
    write_kind(file, 4, 4, bad_stage, 5);
    assert_skipped_saying(loud, dir, "the parameters' checksum mismatch");
    assert_non_null(strstr(logged, file));
    spit_file(file, stage, stage_len);

    /* Intact again: the newest is taken. */
    bl_lm_trainer_t *b = resume_at(loud, dir, 2 * STEPS);
    assert_null(strstr(logged, "skipping"));
    assert_same_params(a, b);
    bl_lm_trainer_destroy(b);
    free(floats);
    free(good);
    free(stage);
    free(other);
    bl_lm_trainer_destroy(a);
    bl_runtime_destroy(loud);
    remove_dir(dir);
}

int main(void)
{
    for (int i = 0; i < COUNT; i++) {
        tokens[i] = (uint16_t)((i * 37 + i / 7) % 251);
    }
    setenv("BALLAST_LOG", "error", 0); /* thousands of skipped files are warned about */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),        cmocka_unit_test(test_damage_skipped),
        cmocka_unit_test(test_other_run_refused), cmocka_unit_test(test_stage_map_section),
        cmocka_unit_test(test_stage_files),
    };
    return run_tests_with_runtime("lm_checkpoint", tests, sizeof tests / sizeof tests[0], &rt);
}
