/* Spans (runtime/core/span.h) and a model's held layers
 * (runtime/model/model_hold.c): memory only for the held window, values kept
 * across widening and narrowing, zeros where memory comes back, a fault on
 * any touch outside the window, layers initialised alike whichever are held
 * first, a parameter file's window loaded alone, and the refusals of a model
 * cut down to a stage. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model_impl.h"
#include "span.h"
#include "test_support.h"

static bl_runtime_t *rt;

#define PAGE 4096

/* Returns 1 when a child that reads byte `at` of s faults (it dies by the
 * signal), 0 when the read goes through. */
static int faults(const bl_span_t *s, size_t at)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* cmocka's handler would carry on with the tests */
        volatile unsigned char v = s->base[at];
        (void)v;
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_span_holds_a_window(void **state)
{
    (void)state;
    bl_span_t s;
    assert_int_equal(bl_span_reserve(&s, 10 * PAGE + 100), 0);
    assert_int_equal(s.reserved, 11 * PAGE);
    assert_int_equal(bl_span_held_bytes(&s), 0);
    assert_true(faults(&s, 0)); /* nothing held yet */

    /* [PAGE + 10, 3 PAGE + 1) rounds out to pages 1..3. */
    assert_int_equal(bl_span_hold(&s, PAGE + 10, 3 * PAGE + 1), 0);
    assert_int_equal(s.lo, PAGE);
    assert_int_equal(s.hi, 4 * PAGE);
    for (size_t i = PAGE; i < 4 * PAGE; i++) {
        assert_int_equal(s.base[i], 0); /* fresh memory reads as zeros */
    }
    memset(s.base + PAGE, 7, 3 * PAGE);
    assert_true(faults(&s, PAGE - 1));
    assert_true(faults(&s, 4 * PAGE));
    assert_false(faults(&s, 2 * PAGE));

    /* Widening to a disjoint range holds the run between them too, and keeps
     * every value. */
    assert_int_equal(bl_span_widen(&s, 8 * PAGE, 9 * PAGE), 0);
    assert_int_equal(s.lo, PAGE);
    assert_int_equal(s.hi, 9 * PAGE);
    assert_int_equal(s.base[3 * PAGE + 5], 7);
    assert_int_equal(s.base[8 * PAGE], 0);
    s.base[8 * PAGE] = 9;

    /* Narrowing keeps the values inside and gives the rest back: held again,
     * it reads as zeros. */
    assert_int_equal(bl_span_hold(&s, 3 * PAGE, 9 * PAGE), 0);
    assert_int_equal(s.lo, 3 * PAGE);
    assert_int_equal(s.base[3 * PAGE + 5], 7);
    assert_int_equal(s.base[8 * PAGE], 9);
    assert_true(faults(&s, 2 * PAGE));
    assert_int_equal(bl_span_widen(&s, PAGE, 2 * PAGE), 0);
    assert_int_equal(s.base[2 * PAGE], 0);

    /* An empty window gives everything back. */
    assert_int_equal(bl_span_hold(&s, 0, 0), 0);
    assert_int_equal(bl_span_held_bytes(&s), 0);
    assert_true(faults(&s, 8 * PAGE));

    /* Bad ranges change nothing. */
    assert_int_equal(bl_span_widen(&s, 5, 4), -1);
    assert_int_equal(bl_span_hold(&s, 0, 10 * PAGE + 101), -1);
    assert_int_equal(bl_span_held_bytes(&s), 0);
    bl_span_release(&s);
    assert_null(s.base);
    bl_span_release(&s); /* twice is fine */
    assert_int_equal(bl_span_reserve(&s, 0), -1);
}

/* A 16 → 64 → ReLU → 64 → ReLU → 64 → ReLU → 4 model: dense layers 0, 2, 4
 * and 6, each of several pages. */
static bl_model_t *deep_mlp(void)
{
    bl_model_t *m = NULL;
    assert_int_equal(bl_model_create(rt, 16, &m), BL_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(bl_model_add_dense(m, 64), BL_OK);
        assert_int_equal(bl_model_add_relu(m), BL_OK);
    }
    assert_int_equal(bl_model_add_dense(m, 4), BL_OK);
    assert_int_equal(bl_model_build(m, 11), BL_OK);
    return m;
}

static void test_layers_held_alike_in_any_order(void **state)
{
    (void)state;
    bl_model_t *whole = deep_mlp();
    assert_non_null(bl_model_params(whole));
    bl_model_t *m = deep_mlp();
    assert_int_equal(m->param_span.lo, m->param_span.hi); /* built: nothing held */
    /* The last stage first, then the first: the values are the whole model's. */
    assert_int_equal(bl_model_hold(m, 4, 7), BL_OK);
    size_t first, count;
    bl_model_held_params(m, &first, &count);
    assert_int_equal(first, m->layers[4].param_offset);
    assert_int_equal(count, m->param_count - first);
    assert_memory_equal(m->params + first, whole->params + first, count * sizeof(float));
    assert_int_equal(bl_span_held_bytes(&m->param_span),
                     bl_span_held_bytes(&m->grad_span)); /* the gradients follow */
    /* Only whole pages around the stage's parameters are held. */
    assert_true(bl_span_held_bytes(&m->param_span) <= count * sizeof(float) + 2 * PAGE);
    assert_int_equal(m->dropped, 1); /* cut down to a stage for good */

    assert_int_equal(bl_model_hold(m, 0, 2), BL_OK);
    bl_model_held_params(m, &first, &count);
    assert_int_equal(first, 0);
    assert_int_equal(count, m->layers[2].param_offset);
    assert_memory_equal(m->params, whole->params, count * sizeof(float));
    bl_model_destroy(m);
    bl_model_destroy(whole);
}

static void test_cut_model_refuses_whole_uses(void **state)
{
    (void)state;
    bl_model_t *m = deep_mlp();
    assert_int_equal(bl_model_hold(m, 2, 4), BL_OK);
    /* A model cut down to a stage can no longer be made whole, even when it
     * never held another stage's layers: their values live elsewhere. */
    assert_int_equal(bl_model_save_params(m, "unused.bin"), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "unused.bin: rank 0 holds only layers 2 to 3 of 7 "
                                              "(stage-local memory)"));
    assert_int_equal(bl_model_load_params(m, "unused.bin"), BL_ERR_INVALID_ARG);
    assert_int_equal(access("unused.bin", F_OK), -1);
    /* bl_model_params hands out the array as it is: the held layers only. */
    assert_ptr_equal(bl_model_params(m), m->params);
    assert_int_equal(m->held_first, 2);
    assert_int_equal(m->held_last, 4);
    bl_model_destroy(m);
}

/* A window of a parameter file: only its layers are read and held, with the
 * file's values; a file of another length or with a value that is not finite
 * is refused, naming it, and changes nothing. */
static void test_load_a_window(void **state)
{
    (void)state;
    bl_model_t *whole = deep_mlp();
    float *p = bl_model_params(whole);
    assert_non_null(p);
    for (size_t i = 0; i < whole->param_count; i++) {
        p[i] = (float)i * 0.5f;
    }
    const char *path = "span_window.bin";
    assert_int_equal(bl_model_save_params(whole, path), BL_OK);

    bl_model_t *m = deep_mlp();
    assert_int_equal(bl_model_hold(m, 2, 4), BL_OK);
    float seeded = m->params[m->layers[2].param_offset];
    assert_int_equal(bl_model_load_params_window(m, path, 4, 6), BL_OK);
    size_t first, count;
    bl_model_layer_params(m, 4, 6, &first, &count);
    assert_memory_equal(m->params + first, p + first, count * sizeof(float));
    assert_int_equal(m->held_first, 2); /* the window joins the held layers */
    assert_int_equal(m->held_last, 6);
    assert_true(m->params[m->layers[2].param_offset] == seeded); /* untouched */
    assert_true(faults(&m->param_span, 0));                      /* layer 0, never held */

    /* A non-finite value inside the window is refused; outside it, it is
     * never read. */
    p[m->layers[4].param_offset + 3] = NAN;
    assert_int_equal(bl_model_save_params(whole, path), BL_OK);
    assert_int_equal(bl_model_load_params_window(m, path, 4, 6), BL_ERR_FORMAT);
    assert_non_null(strstr(bl_last_error(rt), "span_window.bin: parameter"));
    assert_true(m->params[first + 3] == (float)(first + 3) * 0.5f);
    assert_int_equal(bl_model_load_params_window(m, path, 0, 2), BL_OK);

    /* A file of another model. */
    bl_model_t *other = NULL;
    assert_int_equal(test_mlp(rt, 16, (const int[]){8}, 1, 4, 1, &other), BL_OK);
    assert_int_equal(bl_model_save_params(other, path), BL_OK);
    assert_int_equal(bl_model_load_params_window(m, path, 4, 6), BL_ERR_FORMAT);
    assert_non_null(strstr(bl_last_error(rt), "span_window.bin: holds"));
    assert_int_equal(bl_model_load_params_window(m, path, 3, 2), BL_ERR_INVALID_ARG);
    unlink(path);
    bl_model_destroy(other);
    bl_model_destroy(m);
    bl_model_destroy(whole);
}

static void test_model_without_parameters(void **state)
{
    (void)state;
    bl_model_t *m = NULL;
    assert_int_equal(bl_model_create(rt, 8, &m), BL_OK);
    assert_int_equal(bl_model_add_relu(m), BL_OK);
    assert_int_equal(bl_model_build(m, 1), BL_OK);
    assert_int_equal(bl_model_hold(m, 0, 1), BL_OK);
    assert_int_equal(bl_model_hold(m, 0, 0), BL_OK);
    size_t first, count;
    bl_model_held_params(m, &first, &count);
    assert_int_equal(count, 0);
    bl_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_span_holds_a_window),
        cmocka_unit_test(test_layers_held_alike_in_any_order),
        cmocka_unit_test(test_cut_model_refuses_whole_uses),
        cmocka_unit_test(test_load_a_window),
        cmocka_unit_test(test_model_without_parameters),
    };
    return run_tests_with_runtime("span", tests, sizeof tests / sizeof tests[0], &rt);
}
