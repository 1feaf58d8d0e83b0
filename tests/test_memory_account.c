/* Tests of memory accounting (runtime/core/memory_account.c): byte
 * formatting, the account's one-line summary, and the cgroup limit reader
 * on fixture files ("max", a number, v1's huge number, garbage, a missing
 * file); and of ballast-train's --mem-limit size parser (tools/flags.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flags.h"
#include "memory_account.h"

static void test_format_bytes(void **state)
{
    (void)state;
    char buf[32];
    bl_mem_format_bytes(0.0, buf, sizeof buf);
    assert_string_equal(buf, "0 B");
    bl_mem_format_bytes(1023.0, buf, sizeof buf);
    assert_string_equal(buf, "1023 B");
    bl_mem_format_bytes(1024.0, buf, sizeof buf);
    assert_string_equal(buf, "1.0 KiB");
    bl_mem_format_bytes(12.4 * 1048576.0, buf, sizeof buf);
    assert_string_equal(buf, "12.4 MiB");
    bl_mem_format_bytes(1.25 * 1073741824.0, buf, sizeof buf);
    assert_string_equal(buf, "1.2 GiB");
    bl_mem_format_bytes(3.0 * 1099511627776.0, buf, sizeof buf);
    assert_string_equal(buf, "3.0 TiB");
    /* A short buffer is cut, and still terminated. */
    char tiny[4];
    bl_mem_format_bytes(12.4 * 1048576.0, tiny, sizeof tiny);
    assert_string_equal(tiny, "12.");
}

static void test_account_format_and_total(void **state)
{
    (void)state;
    const double MiB = 1048576.0;
    bl_mem_account_t a = {.params = 12.4 * MiB,
                          .grads = 12.4 * MiB,
                          .optimizer = 24.8 * MiB,
                          .activations = 130.0 * MiB};
    assert_true(bl_mem_account_total(&a) == a.params + a.grads + a.optimizer + a.activations);
    char line[256];
    bl_mem_account_format(&a, line, sizeof line);
    assert_string_equal(line, "params 12.4 MiB, grads 12.4 MiB, optimizer 24.8 MiB, activations "
                              "130.0 MiB; total 179.6 MiB");
    a.other = 1.0 * MiB;
    bl_mem_account_format(&a, line, sizeof line);
    assert_string_equal(line, "params 12.4 MiB, grads 12.4 MiB, optimizer 24.8 MiB, activations "
                              "130.0 MiB, other 1.0 MiB; total 180.6 MiB");
}

/* Writes text into a fresh temporary file and returns its path (static). */
static const char *fixture(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/bl_cgroup_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_cgroup_reader(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int result;
        double nbytes;
    } cases[] = {
        {"max\n", 0, 0.0},                 /* v2: no limit */
        {"536870912\n", 1, 536870912.0},   /* v2 or v1: 512 MiB */
        {"1073741824", 1, 1073741824.0},   /* no newline */
        {"9223372036854771712\n", 0, 0.0}, /* v1's "no limit" */
        {"garbage\n", -1, 0.0},
        {"12abc\n", -1, 0.0},
        {"-5\n", -1, 0.0},
        {"", -1, 0.0}, /* empty */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = fixture(cases[i].text);
        double v = -7.0;
        int r = bl_mem_read_cgroup_limit(path, &v);
        unlink(path);
        assert_int_equal(r, cases[i].result);
        if (r == 1) {
            assert_true(v == cases[i].nbytes);
        } else {
            assert_true(v == -7.0); /* untouched without a limit */
        }
    }
    double v = -7.0;
    assert_int_equal(bl_mem_read_cgroup_limit("/nonexistent/memory.max", &v), 0);
    assert_true(v == -7.0);
}

static void test_size_parser(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        double nbytes;
    } good[] = {
        {"1", 1.0},           {"4096", 4096.0},         {"1K", 1024.0},
        {"1KiB", 1024.0},     {"512M", 536870912.0},    {"512MiB", 536870912.0},
        {"2G", 2147483648.0}, {"1.5GiB", 1610612736.0}, {"1T", 1099511627776.0},
    };
    char err[256];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        double v = 0.0;
        assert_int_equal(flags_bytes("--mem-limit", good[i].text, &v, err, sizeof err), 0);
        assert_true(v == good[i].nbytes);
    }
    static const char *const bad[] = {"abc", "",   "1X",   "K",   "-1K", "+1K",   " 1K", "0",
                                      "1 K", "1k", "0x10", "inf", "nan", "1e999", "0.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double v = 42.0;
        err[0] = '\0';
        assert_int_equal(flags_bytes("--mem-limit", bad[i], &v, err, sizeof err), -1);
        assert_true(v == 42.0);
        assert_non_null(strstr(err, "--mem-limit"));
    }
}

/* The process limit: the config's wins; 0 means the cgroup's, which is
 * either none (0) or a positive number here, whatever the host. */
static void test_process_limit(void **state)
{
    (void)state;
    bl_config_t cfg = BL_CONFIG_INIT;
    bl_runtime_t *rt = NULL;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &rt), BL_OK);
    const char *source = NULL;
    assert_true(bl_mem_process_limit(rt, 4096.0, &source) == 4096.0);
    assert_string_equal(source, "--mem-limit");
    double v = bl_mem_process_limit(rt, 0.0, &source);
    assert_true(v >= 0.0);
    assert_string_equal(source, v > 0.0 ? "the cgroup's memory.max" : "none");
    bl_runtime_destroy(rt);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_bytes),  cmocka_unit_test(test_account_format_and_total),
        cmocka_unit_test(test_cgroup_reader), cmocka_unit_test(test_size_parser),
        cmocka_unit_test(test_process_limit),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed;
}
