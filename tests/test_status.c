/* Tests of the status table and error records (runtime/core/status.c): every
 * status has its own non-empty string, values outside the enum read
 * "unknown status", and bl_error_set formats, stores and returns. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <string.h>

#include "internal.h"

static void test_every_status_distinct_and_non_empty(void **state)
{
    (void)state;
    /* at least the twelve codes of the table as first written */
    assert_true(BL_STATUS_COUNT >= 12);
    for (int i = 0; i < BL_STATUS_COUNT; i++) {
        const char *s = bl_status_string((bl_status_t)i);
        assert_non_null(s);
        if (s[0] == '\0') {
            fail_msg("status %d has an empty string", i);
        }
        if (strcmp(s, "unknown status") == 0) {
            fail_msg("status %d reads \"unknown status\"", i);
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(s, bl_status_string((bl_status_t)j)) == 0) {
                fail_msg("statuses %d and %d share the string \"%s\"", j, i, s);
            }
        }
    }
}

static void test_known_strings(void **state)
{
    (void)state;
    assert_int_equal(BL_OK, 0);
    assert_string_equal(bl_status_string(BL_OK), "success");
    assert_string_equal(bl_status_string(BL_ERR_INVALID_ARG), "invalid argument");
    assert_string_equal(bl_status_string(BL_ERR_NO_MEM), "out of memory");
    assert_string_equal(bl_status_string(BL_ERR_IO), "input/output error");
    assert_string_equal(bl_status_string(BL_ERR_FORMAT), "malformed input");
    assert_string_equal(bl_status_string(BL_ERR_INTERRUPTED), "interrupted");
}

static void test_out_of_range_is_unknown(void **state)
{
    (void)state;
    const int bad[] = {BL_STATUS_COUNT, BL_STATUS_COUNT + 1, 1000, INT_MAX, -1, INT_MIN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *s = bl_status_string((bl_status_t)bad[i]);
        assert_non_null(s);
        assert_string_equal(s, "unknown status");
    }
}

static void test_error_set_formats_and_stores(void **state)
{
    (void)state;
    bl_error_t err = {.status = BL_OK, .msg = "old"};
    bl_status_t s = bl_error_set(&err, BL_ERR_IO, "%s: %d of %zu bytes", "file.bin", 7, (size_t)9);
    assert_int_equal(s, BL_ERR_IO);
    assert_int_equal(err.status, BL_ERR_IO);
    assert_string_equal(err.msg, "file.bin: 7 of 9 bytes");

    /* a second failure replaces the first */
    s = bl_error_set(&err, BL_ERR_FORMAT, "short");
    assert_int_equal(s, BL_ERR_FORMAT);
    assert_int_equal(err.status, BL_ERR_FORMAT);
    assert_string_equal(err.msg, "short");
}

static void test_error_set_null_record(void **state)
{
    (void)state;
    assert_int_equal(bl_error_set(NULL, BL_ERR_NO_MEM, "no %s", "memory"), BL_ERR_NO_MEM);
    assert_int_equal(bl_error_set(NULL, BL_ERR_TIMEOUT, "late"), BL_ERR_TIMEOUT);
}

static void test_error_set_truncates_long_messages(void **state)
{
    (void)state;
    char long_text[3000];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    bl_error_t err;
    memset(&err, 0x7f, sizeof err);
    assert_int_equal(bl_error_set(&err, BL_ERR_IO, "%s", long_text), BL_ERR_IO);
    /* terminated inside the record, holding as much as fits */
    assert_int_equal(strlen(err.msg), sizeof err.msg - 1);
    assert_int_equal(err.msg[0], 'x');
    assert_int_equal(err.status, BL_ERR_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_status_distinct_and_non_empty),
        cmocka_unit_test(test_known_strings),
        cmocka_unit_test(test_out_of_range_is_unknown),
        cmocka_unit_test(test_error_set_formats_and_stores),
        cmocka_unit_test(test_error_set_null_record),
        cmocka_unit_test(test_error_set_truncates_long_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
