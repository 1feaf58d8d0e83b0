/* Tests of llm.c token files and the byte-level tokenizer
 * (runtime/data/tokens.c): round trips, one test per kind of malformed
 * file, argument and write failures, and allocation failures at every point.
 *
 * Every file is written into a fresh directory under /tmp (mkdtemp), which
 * is emptied and removed after the group (file_fixture.h). Every load goes through a counting
 * allocator, so each test also checks that nothing leaks and that the live
 * library memory stays small where the header lies about the data. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "file_fixture.h"
#include "tokens.h"

#define MIB ((size_t)1024 * 1024)

static tmp_dir_t g_tmp;

/* A token file as llm.c's data scripts write it: the header words magic,
 * version and count (the rest zero), then ntokens little-endian tokens
 * token_value(i), then extra bytes 0xee. Written to name. */
static uint16_t token_value(long i)
{
    return (uint16_t)((i * 7919) % 50257);
}

static uint8_t *build_token_file(int32_t magic, int32_t version, int32_t count, long ntokens,
                                 size_t extra, size_t *nbytes)
{
    size_t n = 1024 + 2 * (size_t)ntokens + extra;
    uint8_t *b = calloc(n, 1);
    assert_non_null(b);
    const int32_t words[3] = {magic, version, count};
    for (int w = 0; w < 3; w++) {
        for (int k = 0; k < 4; k++) {
            b[4 * w + k] = (uint8_t)((uint32_t)words[w] >> (8 * k));
        }
    }
    for (long i = 0; i < ntokens; i++) {
        b[1024 + 2 * i] = (uint8_t)(token_value(i) & 0xff);
        b[1024 + 2 * i + 1] = (uint8_t)(token_value(i) >> 8);
    }
    memset(b + 1024 + 2 * ntokens, 0xee, extra);
    *nbytes = n;
    return b;
}

static const char *write_token_file(const char *name, int32_t magic, int32_t version, int32_t count,
                                    long ntokens, size_t extra)
{
    size_t n = 0;
    uint8_t *b = build_token_file(magic, version, count, ntokens, extra, &n);
    const char *path = write_raw(&g_tmp, name, b, n);
    free(b);
    return path;
}

/* Makes name a FIFO and forks a writer that feeds it the bytes of a token
 * file (and dies quietly if the reader stops early), so that the reader
 * cannot learn the length in advance. Returns the path; the caller reaps
 * the writer *pid with waitpid. */
static const char *write_fifo(const char *name, int32_t count, long ntokens, pid_t *pid)
{
    size_t n = 0;
    uint8_t *b = build_token_file(20240520, 1, count, ntokens, 0, &n);
    const char *path = tmp_path(&g_tmp, name);
    assert_int_equal(mkfifo(path, 0600), 0);
    *pid = fork();
    assert_true(*pid >= 0);
    if (*pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        FILE *f = fopen(path, "wb");
        if (f != NULL) {
            fwrite(b, 1, n, f);
            fclose(f);
        }
        _exit(0);
    }
    free(b);
    return path;
}

/* ---- Checks --------------------------------------------------------------- */

static void assert_zeroed(const bl_tokens_t *t)
{
    assert_int_equal(t->count, 0);
    assert_null(t->tokens);
    assert_int_equal(t->vocab, 0);
}

/* Loads path, which must fail with want and a message naming the file and
 * holding phrase; *out must be zeroed, nothing may leak, and the live
 * library memory must never pass 1 MiB. */
static void check_fail(const char *path, int vocab, bl_status_t want, const char *phrase)
{
    counting_t c = {0};
    bl_allocator_t a = counting_allocator(&c);
    bl_error_t err = {0};
    bl_tokens_t out;
    memset(&out, 0xab, sizeof out);
    bl_status_t s = bl_tokens_load(path, vocab, &a, &err, &out);
    check_failed_load(s, want, err.msg, path, phrase);
    assert_zeroed(&out);
    assert_int_equal(c.allocs, c.releases);
    assert_true(c.peak_nbytes <= MIB);
}

/* ---- Round trips ---------------------------------------------------------- */

static void test_write_then_load(void **state)
{
    (void)state;
    enum { N = 100000 }; /* 200 KB of tokens: more than the first 64 KiB */
    uint16_t *tokens = malloc(N * sizeof *tokens);
    assert_non_null(tokens);
    for (long i = 0; i < N; i++) {
        tokens[i] = token_value(i);
    }
    const char *path = tmp_path(&g_tmp, "roundtrip.bin");
    bl_error_t err = {0};
    assert_int_equal(bl_tokens_write(path, tokens, N, &err), BL_OK);
    assert_int_equal(count_entries(&g_tmp, "roundtrip.bin."), 0); /* no temporary file left */
    counting_t c = {0};
    bl_allocator_t a = counting_allocator(&c);
    bl_tokens_t t;
    assert_int_equal(bl_tokens_load(path, 50257, &a, &err, &t), BL_OK);
    assert_int_equal(t.count, N);
    assert_int_equal(t.vocab, 50257);
    assert_memory_equal(t.tokens, tokens, N * sizeof *tokens);
    assert_int_equal(c.allocs, 1); /* the file's length sized the one buffer */
    bl_tokens_free(&t, &a);
    assert_zeroed(&t);
    /* vocab 0: the largest token + 1 */
    assert_int_equal(bl_tokens_load(path, 0, &a, &err, &t), BL_OK);
    uint16_t max = 0;
    for (long i = 0; i < N; i++) {
        max = tokens[i] > max ? tokens[i] : max;
    }
    assert_int_equal(t.vocab, max + 1);
    bl_tokens_free(&t, &a);
    assert_int_equal(c.allocs, c.releases);
    bl_tokens_free(NULL, &a);
    free(tokens);
}

static void test_load_then_write_is_identical(void **state)
{
    (void)state;
    const char *orig = write_token_file("llmc.bin", 20240520, 1, 40000, 40000, 0);
    const char *copy = tmp_path(&g_tmp, "llmc-copy.bin");
    bl_error_t err = {0};
    bl_tokens_t t;
    assert_int_equal(bl_tokens_load(orig, 50257, NULL, &err, &t), BL_OK);
    assert_int_equal(t.count, 40000);
    assert_int_equal(t.tokens[39999], token_value(39999));
    assert_int_equal(bl_tokens_write(copy, t.tokens, t.count, &err), BL_OK);
    size_t n1 = 0, n2 = 0;
    uint8_t *b1 = read_whole(orig, &n1);
    uint8_t *b2 = read_whole(copy, &n2);
    assert_int_equal(n1, 1024 + 2 * 40000);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    free(b1);
    free(b2);
    bl_tokens_free(&t, NULL);
}

static void test_byte_tokenizer(void **state)
{
    (void)state;
    const char text[] = "Hello, world!\nCaf\xc3\xa9 \xff\n"; /* bytes above 127 too */
    const char *txt = write_raw(&g_tmp, "hello.txt", (const uint8_t *)text, sizeof text - 1);
    counting_t c = {0};
    bl_allocator_t a = counting_allocator(&c);
    bl_error_t err = {0};
    bl_tokens_t t;
    assert_int_equal(bl_tokens_from_bytes(txt, &a, &err, &t), BL_OK);
    assert_int_equal(t.count, (long)sizeof text - 1);
    assert_int_equal(t.vocab, 256);
    for (long i = 0; i < t.count; i++) {
        assert_int_equal(t.tokens[i], (uint8_t)text[i]);
    }
    /* the tokens go through a token file and come back with vocab 256 */
    const char *bin = tmp_path(&g_tmp, "hello.bin");
    assert_int_equal(bl_tokens_write(bin, t.tokens, t.count, &err), BL_OK);
    bl_tokens_t back;
    assert_int_equal(bl_tokens_load(bin, 256, &a, &err, &back), BL_OK);
    assert_int_equal(back.count, t.count);
    assert_memory_equal(back.tokens, t.tokens, (size_t)t.count * 2);
    bl_tokens_free(&back, &a);
    bl_tokens_free(&t, &a);
    assert_int_equal(c.allocs, c.releases);
}

/* The demo's text (scripts/install-deps.sh installs it); skipped without. */
static void test_byte_tokenizer_fortunes(void **state)
{
    (void)state;
    const char *path = "/usr/share/games/fortunes/cookie";
    struct stat st;
    if (stat(path, &st) != 0) {
        skip();
    }
    bl_error_t err = {0};
    bl_tokens_t t;
    assert_int_equal(bl_tokens_from_bytes(path, NULL, &err, &t), BL_OK);
    assert_int_equal(t.count, (long)st.st_size);
    bl_tokens_free(&t, NULL);
}

/* ---- Malformed files ------------------------------------------------------ */

static void test_empty_and_short_header(void **state)
{
    (void)state;
    check_fail(write_raw(&g_tmp, "empty.bin", (const uint8_t *)"", 0), 0, BL_ERR_FORMAT,
               "file is empty, expected a 1024-byte token file header");
    uint8_t b[100] = {0};
    check_fail(write_raw(&g_tmp, "short.bin", b, sizeof b), 0, BL_ERR_FORMAT,
               "header is 100 bytes, shorter than the 1024-byte token file header");
}

static void test_wrong_magic_and_version(void **state)
{
    (void)state;
    check_fail(write_token_file("magic.bin", 20240326, 1, 4, 4, 0), 0, BL_ERR_FORMAT,
               "magic 20240326 is not an llm.c token file's (expected 20240520)");
    check_fail(write_token_file("version.bin", 20240520, 2, 4, 4, 0), 0, BL_ERR_FORMAT,
               "version 2 is not supported (expected 1)");
}

static void test_count_not_positive(void **state)
{
    (void)state;
    check_fail(write_token_file("zero.bin", 20240520, 1, 0, 0, 0), 0, BL_ERR_FORMAT,
               "token count 0 is not positive");
    check_fail(write_token_file("negative.bin", 20240520, 1, -5, 0, 0), 0, BL_ERR_FORMAT,
               "token count -5 is not positive");
}

static void test_short_data(void **state)
{
    (void)state;
    check_fail(write_token_file("short-data.bin", 20240520, 1, 10, 9, 0), 0, BL_ERR_FORMAT,
               "header declares 10 tokens (20 bytes) but the file holds only 18 bytes of tokens");
    /* an odd length: half a token at the end */
    check_fail(write_token_file("half-token.bin", 20240520, 1, 10, 9, 1), 0, BL_ERR_FORMAT,
               "holds only 19 bytes of tokens");
}

static void test_header_declares_billions(void **state)
{
    (void)state;
    /* INT32_MAX tokens (4 GiB) declared, 10 present: check_fail also
     * asserts the live memory stayed under 1 MiB. */
    check_fail(write_token_file("liar.bin", 20240520, 1, INT32_MAX, 10, 0), 0, BL_ERR_FORMAT,
               "header declares 2147483647 tokens (4294967294 bytes) but the file holds only "
               "20 bytes");
}

/* Through a pipe the buffer must grow as tokens arrive: 64 KiB, 128 KiB,
 * 256 KiB, 512 KiB, then the declared 600000 bytes. A pipe that declares
 * 2^31 - 1 tokens and brings 200000 stops at 512 KiB (check_fail asserts
 * that the live memory stayed under 1 MiB). */
static void test_pipe_grows_the_buffer(void **state)
{
    (void)state;
    pid_t pid;
    const char *fifo = write_fifo("good.fifo", 300000, 300000, &pid);
    counting_t c = {0};
    bl_allocator_t a = counting_allocator(&c);
    bl_error_t err = {0};
    bl_tokens_t t;
    assert_int_equal(bl_tokens_load(fifo, 0, &a, &err, &t), BL_OK);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    assert_int_equal(t.count, 300000);
    for (long i = 0; i < t.count; i++) {
        assert_int_equal(t.tokens[i], token_value(i));
    }
    assert_int_equal(c.allocs, 5);
    assert_int_equal(c.peak_nbytes, 512 * 1024 + 600000);
    bl_tokens_free(&t, &a);
    assert_int_equal(c.allocs, c.releases);

    fifo = write_fifo("liar.fifo", INT32_MAX, 200000, &pid);
    check_fail(fifo, 0, BL_ERR_FORMAT,
               "header declares 2147483647 tokens (4294967294 bytes) but the file holds only "
               "400000 bytes");
    assert_int_equal(waitpid(pid, NULL, 0), pid);
}

static void test_trailing_bytes(void **state)
{
    (void)state;
    check_fail(write_token_file("trailing.bin", 20240520, 1, 10, 10, 3), 0, BL_ERR_FORMAT,
               "3 bytes after the 10 declared tokens");
    check_fail(write_token_file("trailing1.bin", 20240520, 1, 10, 10, 1), 0, BL_ERR_FORMAT,
               "1 byte after the 10 declared tokens");
}

static void test_token_not_below_vocab(void **state)
{
    (void)state;
    /* tokens 0, 7919, 15838, ...: token 1 is the first >= 5000 */
    const char *path = write_token_file("vocab.bin", 20240520, 1, 10, 10, 0);
    check_fail(path, 5000, BL_ERR_FORMAT, "token 7919 at position 1 is not below the vocab 5000");
    bl_tokens_t t;
    assert_int_equal(bl_tokens_load(path, 50257, NULL, NULL, &t), BL_OK);
    bl_tokens_free(&t, NULL);
}

static void test_missing_file_and_directory(void **state)
{
    (void)state;
    check_fail(tmp_path(&g_tmp, "no-such.bin"), 0, BL_ERR_IO, "cannot open");
    check_fail(g_tmp.path, 0, BL_ERR_IO, "cannot read");
}

/* ---- Arguments and writing ------------------------------------------------ */

static void test_invalid_arguments(void **state)
{
    (void)state;
    const char *path = write_token_file("args.bin", 20240520, 1, 4, 4, 0);
    bl_error_t err = {0};
    bl_tokens_t t;
    assert_int_equal(bl_tokens_load(NULL, 0, NULL, &err, &t), BL_ERR_INVALID_ARG);
    assert_contains(err.msg, "path is NULL");
    assert_zeroed(&t);
    assert_int_equal(bl_tokens_load(path, 0, NULL, &err, NULL), BL_ERR_INVALID_ARG);
    check_fail(path, -1, BL_ERR_INVALID_ARG, "vocab -1 is negative");
    assert_int_equal(bl_tokens_from_bytes(NULL, NULL, &err, &t), BL_ERR_INVALID_ARG);
    uint16_t one = 1;
    const char *out = tmp_path(&g_tmp, "never.bin");
    assert_int_equal(bl_tokens_write(out, NULL, 1, &err), BL_ERR_INVALID_ARG);
    assert_int_equal(bl_tokens_write(out, &one, 0, &err), BL_ERR_INVALID_ARG);
    assert_contains(err.msg, out);
    assert_contains(err.msg, "token count 0 is outside 1 .. INT32_MAX");
    assert_int_equal(access(out, F_OK), -1);
}

static void test_write_failures(void **state)
{
    (void)state;
    uint16_t tokens[3] = {1, 2, 3};
    bl_error_t err = {0};
    const char *missing = tmp_path(&g_tmp, "no-dir/out.bin");
    assert_int_equal(bl_tokens_write(missing, tokens, 3, &err), BL_ERR_IO);
    assert_contains(err.msg, missing);
    assert_contains(err.msg, "cannot create the temporary file");
    /* The rename over a directory fails: the directory stays and no
     * temporary file is left. */
    const char *dir = tmp_path(&g_tmp, "a-dir");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(bl_tokens_write(dir, tokens, 3, &err), BL_ERR_IO);
    assert_contains(err.msg, dir);
    assert_contains(err.msg, "cannot rename");
    assert_int_equal(count_entries(&g_tmp, "a-dir."), 0);
}

static void test_tokenizer_failures(void **state)
{
    (void)state;
    bl_error_t err = {0};
    bl_tokens_t t;
    const char *empty = write_raw(&g_tmp, "empty.txt", (const uint8_t *)"", 0);
    assert_int_equal(bl_tokens_from_bytes(empty, NULL, &err, &t), BL_ERR_FORMAT);
    assert_contains(err.msg, empty);
    assert_contains(err.msg, "file is empty, there are no bytes to tokenize");
    assert_zeroed(&t);
    const char *missing = tmp_path(&g_tmp, "missing.txt");
    assert_int_equal(bl_tokens_from_bytes(missing, NULL, &err, &t), BL_ERR_IO);
    assert_contains(err.msg, missing);
}

/* Fails the 1st, 2nd, ... allocation until the call succeeds: each failure
 * must be BL_ERR_NO_MEM, leave *out zeroed and leak nothing. */
static void test_allocation_failures(void **state)
{
    (void)state;
    const char *bin = write_token_file("oom.bin", 20240520, 1, 5000, 5000, 0);
    uint8_t text[200000];
    for (size_t i = 0; i < sizeof text; i++) {
        text[i] = (uint8_t)(i * 31);
    }
    const char *txt = write_raw(&g_tmp, "oom.txt", text, sizeof text);
    for (int which = 0; which < 2; which++) {
        for (long fail_at = 1;; fail_at++) {
            counting_t c = {.fail_at = fail_at};
            bl_allocator_t a = counting_allocator(&c);
            bl_error_t err = {0};
            bl_tokens_t t;
            bl_status_t s = which == 0 ? bl_tokens_load(bin, 0, &a, &err, &t)
                                       : bl_tokens_from_bytes(txt, &a, &err, &t);
            if (s == BL_OK) {
                assert_true(fail_at > (which == 0 ? 1 : 2)); /* load: 1; text: bytes, tokens */
                bl_tokens_free(&t, &a);
                assert_int_equal(c.allocs, c.releases);
                break;
            }
            assert_int_equal(s, BL_ERR_NO_MEM);
            assert_contains(err.msg, which == 0 ? bin : txt);
            assert_contains(err.msg, "cannot allocate");
            assert_zeroed(&t);
            assert_int_equal(c.allocs, c.releases);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_then_load),
        cmocka_unit_test(test_load_then_write_is_identical),
        cmocka_unit_test(test_byte_tokenizer),
        cmocka_unit_test(test_byte_tokenizer_fortunes),
        cmocka_unit_test(test_empty_and_short_header),
        cmocka_unit_test(test_wrong_magic_and_version),
        cmocka_unit_test(test_count_not_positive),
        cmocka_unit_test(test_short_data),
        cmocka_unit_test(test_header_declares_billions),
        cmocka_unit_test(test_pipe_grows_the_buffer),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_token_not_below_vocab),
        cmocka_unit_test(test_missing_file_and_directory),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_write_failures),
        cmocka_unit_test(test_tokenizer_failures),
        cmocka_unit_test(test_allocation_failures),
    };
    return run_tests_in_tmp_dir("test_tokens", tests, sizeof tests / sizeof tests[0], &g_tmp,
                                "tokens");
}
