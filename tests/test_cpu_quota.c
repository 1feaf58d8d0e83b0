/* Unit tests of the CPU-quota reader (runtime/core/cpu_quota.h): cgroup v2's
 * cpu.max and v1's cfs files parsed (limits, "max" and -1 for none, and
 * malformed text refused), and the quota found in a fake cgroup tree under
 * a temporary directory for /proc/self/cgroup texts of both versions:
 * the process's own v2 cgroup, the v1 cpu hierarchy under its two mount
 * names, a controller list that only looks like cpu (cpuset, cpuacct), and
 * no limit anywhere. */
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

#include "cpu_quota.h"

static void test_parse_max(void **state)
{
    (void)state;
    double cores = 0.0;
    assert_int_equal(bl_cpu_quota_parse_max("50000 100000\n", &cores), 1);
    assert_true(cores == 0.5);
    assert_int_equal(bl_cpu_quota_parse_max("250000 100000", &cores), 1);
    assert_true(cores == 2.5);
    assert_int_equal(bl_cpu_quota_parse_max("max 100000\n", &cores), 0);
    const char *bad[] = {"", "50000", "50000 0", "abc 100000", "50000 100000x", "-5 100000", "max"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (bl_cpu_quota_parse_max(bad[i], &cores) != -1) {
            fail_msg("'%s' was taken for a cpu.max", bad[i]);
        }
    }
}

static void test_parse_v1(void **state)
{
    (void)state;
    double cores = 0.0;
    assert_int_equal(bl_cpu_quota_parse_v1("40000\n", "100000\n", &cores), 1);
    assert_true(cores == 0.4);
    assert_int_equal(bl_cpu_quota_parse_v1("-1\n", "100000\n", &cores), 0);
    assert_int_equal(bl_cpu_quota_parse_v1("x", "100000", &cores), -1);
    assert_int_equal(bl_cpu_quota_parse_v1("40000", "0", &cores), -1);
    assert_int_equal(bl_cpu_quota_parse_v1("0", "100000", &cores), -1);
}

static char root[64];

static void put(const char *rel, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    /* Makes the directories on the way. */
    for (char *s = strchr(path + strlen(root) + 1, '/'); s != NULL; s = strchr(s + 1, '/')) {
        *s = '\0';
        mkdir(path, 0700);
        *s = '/';
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_find(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/bl_cpu_quota_XXXXXX");
    assert_non_null(mkdtemp(root));
    put("job/a/cpu.max", "50000 100000\n");
    put("cpu/held/cpu.cfs_quota_us", "40000\n");
    put("cpu/held/cpu.cfs_period_us", "100000\n");
    put("cpu,cpuacct/other/cpu.cfs_quota_us", "150000\n");
    put("cpu,cpuacct/other/cpu.cfs_period_us", "100000\n");
    put("cpu/free/cpu.cfs_quota_us", "-1\n");
    put("cpu/free/cpu.cfs_period_us", "100000\n");
    put("free/cpu.max", "max 100000\n");
    char source[256], want[256];
    struct {
        const char *cgroup;
        double cores;
        const char *file;
    } cases[] = {
        {"0::/job/a\n", 0.5, "job/a/cpu.max"},
        {"12:memory:/m\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/held\n0::/\n", 0.4,
         "cpu/held/cpu.cfs_quota_us"},
        {"4:cpu,cpuacct:/other\n", 1.5, "cpu,cpuacct/other/cpu.cfs_quota_us"},
        {"3:cpuset:/held\n2:cpuacct:/held\n", 0.0, NULL},
        {"1:cpu:/free\n0::/free\n", 0.0, NULL},
        {"0::/missing\n", 0.0, NULL},
        {"", 0.0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double cores = bl_cpu_quota_find(root, cases[i].cgroup, source, sizeof source);
        if (cores != cases[i].cores) {
            fail_msg("case %zu: %g cores, want %g", i, cores, cases[i].cores);
        }
        if (cases[i].file != NULL) {
            snprintf(want, sizeof want, "%s/%s", root, cases[i].file);
            assert_string_equal(source, want);
        } else {
            assert_string_equal(source, "");
        }
    }
    /* A NULL source is allowed. */
    assert_true(bl_cpu_quota_find(root, "0::/job/a", NULL, 0) == 0.5);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_max),
        cmocka_unit_test(test_parse_v1),
        cmocka_unit_test(test_find),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
