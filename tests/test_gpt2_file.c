/* Tests of llm.c's GPT-2 float32 checkpoints (runtime/model/gpt2_file.c):
 * the tensor table against the layout llm.c documents, round trips (byte
 * for byte), one test per kind of malformed file, the sequence-length check,
 * write failures and allocation failures.
 *
 * The files are made by hand here, the way llm.c's train_gpt2.py writes
 * them, into a fresh directory under /tmp (mkdtemp) that is emptied and
 * removed after the group (file_fixture.h). */
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

#include "file_fixture.h"
#include "gpt2_file.h"

#define MIB ((size_t)1024 * 1024)

/* maxT 8, V 10, L 2, NH 2, C 4, Vp 16: 592 parameters */
#define SMALL                                                                                      \
    {                                                                                              \
        8, 10, 2, 2, 4, 16                                                                         \
    }
#define SMALL_COUNT 592

static tmp_dir_t g_tmp;

/* The bits of parameter i: a NaN with a payload and -0 first, so that a
 * round trip must keep the bits, then small values. */
static uint32_t param_bits(size_t i)
{
    if (i < 2) {
        return i == 0 ? 0x7fc01234u : 0x80000000u;
    }
    float v = (float)((long)(i % 251) - 125) / 64.0f;
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits;
}

static void put32(uint8_t *b, uint32_t v)
{
    for (int k = 0; k < 4; k++) {
        b[k] = (uint8_t)(v >> (8 * k));
    }
}

/* A checkpoint as train_gpt2.py writes it: magic, version, the config words
 * and word 10 = 77 (to see that the rest of the header survives), then
 * nparams little-endian floats param_bits(i), then extra bytes 0xee. */
static const char *write_ckpt(const char *name, int32_t magic, int32_t version, bl_gpt2_config_t c,
                              size_t nparams, size_t extra)
{
    size_t n = 1024 + 4 * nparams + extra;
    uint8_t *b = calloc(n, 1);
    assert_non_null(b);
    const int32_t words[8] = {magic,        version,     c.max_seq_len, c.vocab_size,
                              c.num_layers, c.num_heads, c.channels,    c.padded_vocab_size};
    for (int w = 0; w < 8; w++) {
        put32(b + 4 * w, (uint32_t)words[w]);
    }
    put32(b + 40, 77);
    for (size_t i = 0; i < nparams; i++) {
        put32(b + 1024 + 4 * i, param_bits(i));
    }
    memset(b + 1024 + 4 * nparams, 0xee, extra);
    const char *path = write_raw(&g_tmp, name, b, n);
    free(b);
    return path;
}

/* ---- Checks --------------------------------------------------------------- */

static void assert_zeroed(const bl_gpt2_file_t *m)
{
    static const bl_gpt2_file_t zero;
    assert_memory_equal(m, &zero, sizeof zero);
}

/* Loads path, which must fail with want and a message naming the file and
 * holding phrase; *out must be zeroed, nothing may leak, and the live
 * library memory must never pass 1 MiB. */
static void check_fail(const char *path, bl_status_t want, const char *phrase)
{
    counting_t c = {0};
    bl_allocator_t a = counting_allocator(&c);
    bl_error_t err = {0};
    bl_gpt2_file_t out;
    memset(&out, 0xab, sizeof out);
    bl_status_t s = bl_gpt2_load(path, &a, &err, &out);
    check_failed_load(s, want, err.msg, path, phrase);
    assert_zeroed(&out);
    assert_int_equal(c.allocs, c.releases);
    assert_true(c.peak_nbytes <= MIB);
}

/* ---- The table and round trips -------------------------------------------- */

static void test_tensor_table(void **state)
{
    (void)state;
    /* llm.c's fill_in_parameter_sizes, spelled out for SMALL */
    const size_t Vp = 16, T = 8, L = 2, C = 4;
    const struct {
        const char *name;
        size_t count;
        int layers;
    } want[BL_GPT2_TENSOR_COUNT] = {{"wte", Vp * C, 1},
                                    {"wpe", T * C, 1},
                                    {"ln1w", L * C, 2},
                                    {"ln1b", L * C, 2},
                                    {"qkvw", L * 3 * C * C, 2},
                                    {"qkvb", L * 3 * C, 2},
                                    {"attprojw", L * C * C, 2},
                                    {"attprojb", L * C, 2},
                                    {"ln2w", L * C, 2},
                                    {"ln2b", L * C, 2},
                                    {"fcw", L * 4 * C * C, 2},
                                    {"fcb", L * 4 * C, 2},
                                    {"fcprojw", L * C * 4 * C, 2},
                                    {"fcprojb", L * C, 2},
                                    {"lnfw", C, 1},
                                    {"lnfb", C, 1}};
    bl_gpt2_config_t cfg = SMALL;
    bl_gpt2_tensor_t t[BL_GPT2_TENSOR_COUNT];
    size_t total = 0, offset = 0;
    assert_int_equal(bl_gpt2_tensors(&cfg, t, &total, NULL), BL_OK);
    for (int i = 0; i < BL_GPT2_TENSOR_COUNT; i++) {
        assert_string_equal(t[i].name, want[i].name);
        assert_int_equal(t[i].count, want[i].count);
        assert_int_equal(t[i].offset, offset);
        assert_int_equal(t[i].layers, want[i].layers);
        offset += t[i].count;
    }
    assert_int_equal(total, SMALL_COUNT);
    assert_int_equal(offset, SMALL_COUNT);
    /* GPT-2 small: llm.c prints num_parameters: 124475904 */
    bl_gpt2_config_t g = BL_GPT2_CONFIG_124M;
    assert_int_equal(bl_gpt2_tensors(&g, t, &total, NULL), BL_OK);
    assert_int_equal(total, 124475904);
    bl_error_t err = {0};
    assert_int_equal(bl_gpt2_tensors(NULL, t, NULL, &err), BL_ERR_INVALID_ARG);
    cfg.num_heads = 3;
    assert_int_equal(bl_gpt2_tensors(&cfg, t, NULL, &err), BL_ERR_FORMAT);
    assert_contains(err.msg, "GPT-2 config: num_heads NH = 3 does not divide channels C = 4");
}

static void test_load_then_write_is_identical(void **state)
{
    (void)state;
    const char *orig = write_ckpt("llmc.bin", 20240326, 3, (bl_gpt2_config_t)SMALL, SMALL_COUNT, 0);
    const char *copy = tmp_path(&g_tmp, "llmc-copy.bin");
    counting_t c = {0};
    bl_allocator_t a = counting_allocator(&c);
    bl_error_t err = {0};
    bl_gpt2_file_t m;
    assert_int_equal(bl_gpt2_load(orig, &a, &err, &m), BL_OK);
    assert_int_equal(c.allocs, 1);
    assert_int_equal(m.config.max_seq_len, 8);
    assert_int_equal(m.config.vocab_size, 10);
    assert_int_equal(m.config.num_layers, 2);
    assert_int_equal(m.config.num_heads, 2);
    assert_int_equal(m.config.channels, 4);
    assert_int_equal(m.config.padded_vocab_size, 16);
    assert_int_equal(m.param_count, SMALL_COUNT);
    assert_int_equal(m.header_rest[2], 77); /* word 10 */
    for (size_t i = 0; i < SMALL_COUNT; i++) {
        uint32_t bits;
        memcpy(&bits, &m.params[i], sizeof bits);
        assert_int_equal(bits, param_bits(i));
    }
    assert_int_equal(bl_gpt2_write(copy, &m, &err), BL_OK);
    size_t n1 = 0, n2 = 0;
    uint8_t *b1 = read_whole(orig, &n1);
    uint8_t *b2 = read_whole(copy, &n2);
    assert_int_equal(n1, 1024 + 4 * SMALL_COUNT);
    assert_int_equal(n2, n1);
    assert_memory_equal(b1, b2, n1);
    free(b1);
    free(b2);
    bl_gpt2_free(&m, &a);
    assert_zeroed(&m);
    assert_int_equal(c.allocs, c.releases);
    bl_gpt2_free(NULL, &a);
}

static void test_write_then_load(void **state)
{
    (void)state;
    bl_gpt2_file_t m = {.config = SMALL, .param_count = SMALL_COUNT};
    m.params = malloc(SMALL_COUNT * sizeof(float));
    assert_non_null(m.params);
    for (size_t i = 0; i < SMALL_COUNT; i++) {
        m.params[i] = (float)i * 0.25f - 3.0f;
    }
    const char *path = tmp_path(&g_tmp, "written.bin");
    bl_error_t err = {0};
    assert_int_equal(bl_gpt2_write(path, &m, &err), BL_OK);
    bl_gpt2_file_t back;
    assert_int_equal(bl_gpt2_load(path, NULL, &err, &back), BL_OK);
    assert_memory_equal(&back.config, &m.config, sizeof m.config);
    assert_int_equal(back.param_count, SMALL_COUNT);
    assert_memory_equal(back.params, m.params, SMALL_COUNT * sizeof(float));
    assert_memory_equal(back.header_rest, m.header_rest, sizeof m.header_rest); /* zeros */
    bl_gpt2_free(&back, NULL);
    free(m.params);
}

/* ---- Malformed files ------------------------------------------------------ */

static void test_short_header_and_missing(void **state)
{
    (void)state;
    const char *empty = write_ckpt("empty.bin", 20240326, 3, (bl_gpt2_config_t)SMALL, 0, 0);
    assert_int_equal(truncate(empty, 0), 0);
    check_fail(empty, BL_ERR_FORMAT, "header is 0 bytes, shorter than the 1024-byte checkpoint");
    const char *short_ = write_ckpt("short.bin", 20240326, 3, (bl_gpt2_config_t)SMALL, 0, 0);
    assert_int_equal(truncate(short_, 100), 0);
    check_fail(short_, BL_ERR_FORMAT, "header is 100 bytes, shorter than the 1024-byte");
    check_fail(tmp_path(&g_tmp, "no-such.bin"), BL_ERR_IO, "cannot open");
    check_fail(g_tmp.path, BL_ERR_IO, "cannot read");
}

static void test_magic_and_versions(void **state)
{
    (void)state;
    bl_gpt2_config_t c = SMALL;
    check_fail(write_ckpt("magic.bin", 20240520, 3, c, SMALL_COUNT, 0), BL_ERR_FORMAT,
               "magic 20240520 is not an llm.c GPT-2 checkpoint's (expected 20240326)");
    check_fail(write_ckpt("bf16.bin", 20240326, 5, c, SMALL_COUNT, 0), BL_ERR_FORMAT,
               "version 5 (llm.c's bfloat16 checkpoint) is not supported: only float32 version 3 "
               "is read");
    check_fail(write_ckpt("v4.bin", 20240326, 4, c, SMALL_COUNT, 0), BL_ERR_FORMAT,
               "version 4 is not supported: only float32 version 3 is read");
    check_fail(write_ckpt("v1.bin", 20240326, 1, c, SMALL_COUNT, 0), BL_ERR_FORMAT,
               "version 1 is not supported");
}

static void test_counts_not_positive(void **state)
{
    (void)state;
    const char *fields[6] = {"max_seq_len maxT", "vocab_size V", "num_layers L",
                             "num_heads NH",     "channels C",   "padded_vocab_size Vp"};
    for (int i = 0; i < 6; i++) {
        for (int v = 0; v >= -3; v -= 3) {
            bl_gpt2_config_t c = SMALL;
            int *words[6] = {&c.max_seq_len, &c.vocab_size, &c.num_layers,
                             &c.num_heads,   &c.channels,   &c.padded_vocab_size};
            *words[i] = v;
            char phrase[64];
            snprintf(phrase, sizeof phrase, "%s = %d is not positive", fields[i], v);
            check_fail(write_ckpt("count.bin", 20240326, 3, c, SMALL_COUNT, 0), BL_ERR_FORMAT,
                       phrase);
        }
    }
}

static void test_heads_and_padded_vocab(void **state)
{
    (void)state;
    bl_gpt2_config_t c = SMALL;
    c.num_heads = 3;
    check_fail(write_ckpt("heads.bin", 20240326, 3, c, SMALL_COUNT, 0), BL_ERR_FORMAT,
               "num_heads NH = 3 does not divide channels C = 4");
    c = (bl_gpt2_config_t)SMALL;
    c.vocab_size = 20;
    check_fail(write_ckpt("vp.bin", 20240326, 3, c, SMALL_COUNT, 0), BL_ERR_FORMAT,
               "padded_vocab_size Vp = 16 is below vocab_size V = 20");
}

static void test_length_mismatch(void **state)
{
    (void)state;
    bl_gpt2_config_t c = SMALL;
    check_fail(write_ckpt("short.bin", 20240326, 3, c, SMALL_COUNT - 1, 0), BL_ERR_FORMAT,
               "header declares 592 parameters (2368 bytes) but the file holds only 2364 bytes "
               "of parameters");
    check_fail(write_ckpt("short1.bin", 20240326, 3, c, SMALL_COUNT - 1, 3), BL_ERR_FORMAT,
               "holds only 2367 bytes of parameters");
    check_fail(write_ckpt("trailing.bin", 20240326, 3, c, SMALL_COUNT, 4), BL_ERR_FORMAT,
               "4 bytes after the declared parameters");
    /* GPT-2 small declared (498 MB), 10 floats present: check_fail also
     * asserts that the live memory stayed under 1 MiB. */
    bl_gpt2_config_t g = BL_GPT2_CONFIG_124M;
    check_fail(write_ckpt("liar.bin", 20240326, 3, g, 10, 0), BL_ERR_FORMAT,
               "header declares 124475904 parameters (497903616 bytes) but the file holds only 40 "
               "bytes");
}

static void test_size_overflow(void **state)
{
    (void)state;
    /* L · C is beyond the largest file */
    bl_gpt2_config_t c = {8, 10, INT32_MAX, 1, 1 << 30, 16};
    check_fail(write_ckpt("overflow.bin", 20240326, 3, c, 4, 0), BL_ERR_FORMAT,
               "the sizes overflow at tensor ln1w (L·C with Vp = 16, maxT = 8, L = 2147483647, "
               "C = 1073741824)");
    /* L · 3C · C is, with each of wte, wpe and ln1w small */
    c = (bl_gpt2_config_t){1, 1, 1, 1, INT32_MAX, 1};
    check_fail(write_ckpt("overflow2.bin", 20240326, 3, c, 4, 0), BL_ERR_FORMAT,
               "the sizes overflow at tensor qkvw (L·3C·C");
}

/* ---- Sequence length, writing, allocation --------------------------------- */

static void test_check_seq_len(void **state)
{
    (void)state;
    bl_gpt2_config_t c = SMALL;
    bl_error_t err = {0};
    assert_int_equal(bl_gpt2_check_seq_len("ckpt.bin", &c, 8, &err), BL_OK);
    assert_int_equal(bl_gpt2_check_seq_len("ckpt.bin", &c, 9, &err), BL_ERR_INVALID_ARG);
    assert_contains(err.msg, "ckpt.bin: T larger than the checkpoint's max T: T = 9, "
                             "max_seq_len maxT = 8");
    assert_int_equal(bl_gpt2_check_seq_len("ckpt.bin", &c, 0, &err), BL_ERR_INVALID_ARG);
    assert_contains(err.msg, "ckpt.bin: sequence length T = 0 is not positive");
    assert_int_equal(bl_gpt2_check_seq_len("ckpt.bin", NULL, 4, &err), BL_ERR_INVALID_ARG);
}

static void test_write_failures(void **state)
{
    (void)state;
    float params[SMALL_COUNT] = {0};
    bl_gpt2_file_t m = {.config = SMALL, .param_count = SMALL_COUNT, .params = params};
    bl_error_t err = {0};
    const char *out = tmp_path(&g_tmp, "never.bin");
    m.config.num_heads = 3;
    assert_int_equal(bl_gpt2_write(out, &m, &err), BL_ERR_FORMAT);
    assert_contains(err.msg, out);
    assert_contains(err.msg, "num_heads NH = 3 does not divide channels C = 4");
    m.config.num_heads = 2;
    m.param_count = SMALL_COUNT - 1;
    assert_int_equal(bl_gpt2_write(out, &m, &err), BL_ERR_INVALID_ARG);
    assert_contains(err.msg, "param_count 591 is not the config's 592 parameters");
    m.param_count = SMALL_COUNT;
    assert_int_equal(bl_gpt2_write(out, NULL, &err), BL_ERR_INVALID_ARG);
    assert_int_equal(access(out, F_OK), -1);
    const char *missing = tmp_path(&g_tmp, "no-dir/out.bin");
    assert_int_equal(bl_gpt2_write(missing, &m, &err), BL_ERR_IO);
    assert_contains(err.msg, missing);
    /* The rename over a directory fails: the directory stays and no
     * temporary file is left. */
    const char *dir = tmp_path(&g_tmp, "a-dir");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(bl_gpt2_write(dir, &m, &err), BL_ERR_IO);
    assert_contains(err.msg, dir);
    assert_contains(err.msg, "renaming into place");
    assert_int_equal(count_entries(&g_tmp, "a-dir."), 0);
    bl_gpt2_file_t back;
    assert_int_equal(bl_gpt2_load(NULL, NULL, &err, &back), BL_ERR_INVALID_ARG);
    assert_zeroed(&back);
}

static void test_allocation_failure(void **state)
{
    (void)state;
    const char *path = write_ckpt("oom.bin", 20240326, 3, (bl_gpt2_config_t)SMALL, SMALL_COUNT, 0);
    counting_t c = {.fail_at = 1};
    bl_allocator_t a = counting_allocator(&c);
    bl_error_t err = {0};
    bl_gpt2_file_t m;
    assert_int_equal(bl_gpt2_load(path, &a, &err, &m), BL_ERR_NO_MEM);
    assert_contains(err.msg, path);
    assert_contains(err.msg, "cannot allocate 2368 bytes for the parameters");
    assert_zeroed(&m);
    assert_int_equal(c.allocs, c.releases);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_table),
        cmocka_unit_test(test_load_then_write_is_identical),
        cmocka_unit_test(test_write_then_load),
        cmocka_unit_test(test_short_header_and_missing),
        cmocka_unit_test(test_magic_and_versions),
        cmocka_unit_test(test_counts_not_positive),
        cmocka_unit_test(test_heads_and_padded_vocab),
        cmocka_unit_test(test_length_mismatch),
        cmocka_unit_test(test_size_overflow),
        cmocka_unit_test(test_check_seq_len),
        cmocka_unit_test(test_write_failures),
        cmocka_unit_test(test_allocation_failure),
    };
    return run_tests_in_tmp_dir("test_gpt2_file", tests, sizeof tests / sizeof tests[0], &g_tmp,
                                "gpt2");
}
