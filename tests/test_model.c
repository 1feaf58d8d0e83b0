/* Models: building, parameter layout and init, forward against a plain
 * reference, parameter files, and every bad input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_impl.h"
#include "tanh_dense_layer.h"
#include "test_support.h"

static bl_runtime_t *rt;

/* A 5 → 4 → ReLU → 3 model. */
static bl_model_t *small_mlp(uint64_t seed)
{
    bl_model_t *m = NULL;
    assert_int_equal(test_mlp(rt, 5, (const int[]){4}, 1, 3, seed, &m), BL_OK);
    return m;
}

static void test_shapes_and_layout(void **state)
{
    bl_model_t *m = small_mlp(1);
    assert_int_equal(bl_model_layer_count(m), 3);
    assert_int_equal(bl_model_out_features(m), 3);
    /* W1 4×5 + b1 4, W2 3×4 + b2 3 */
    assert_int_equal(bl_model_param_count(m), 4 * 5 + 4 + 3 * 4 + 3);
    assert_int_equal(m->layers[0].param_offset, 0);
    assert_int_equal(m->layers[2].param_offset, 24);
    /* Dense + ReLU fuse inside one workspace, not across a stage boundary. */
    bl_workspace_t whole, head, tail;
    assert_int_equal(bl_workspace_init(m, 2, &whole), BL_OK);
    assert_int_equal(bl_workspace_init_range(m, 0, 1, 2, &head), BL_OK);
    assert_int_equal(bl_workspace_init_range(m, 1, 3, 2, &tail), BL_OK);
    assert_true(bl_dense_fuses_relu(m, &whole, 0));
    assert_true(bl_relu_is_fused(m, &whole, 1));
    assert_ptr_equal(whole.acts[0], whole.acts[1]);
    assert_false(bl_dense_fuses_relu(m, &head, 0));
    assert_false(bl_relu_is_fused(m, &tail, 1));
    assert_null(head.acts[1]);
    assert_null(tail.acts[0]);
    for (bl_workspace_t *w = &whole; w != NULL; w = w == &whole  ? &head
                                                    : w == &head ? &tail
                                                                 : NULL) {
        bl_workspace_free(bl_rt_allocator(m->rt), w);
    }
    /* Ranges outside the model are refused. */
    assert_int_equal(bl_workspace_init_range(m, 2, 2, 2, &head), BL_ERR_INVALID_ARG);
    assert_int_equal(bl_workspace_init_range(m, 0, 4, 2, &head), BL_ERR_INVALID_ARG);
    bl_model_destroy(m);
}

static void test_init_is_seeded_and_bounded(void **state)
{
    bl_model_t *a = small_mlp(7), *b = small_mlp(7), *c = small_mlp(8);
    size_t n = bl_model_param_count(a);
    assert_memory_equal(bl_model_params(a), bl_model_params(b), n * sizeof(float));
    assert_memory_not_equal(bl_model_params(a), bl_model_params(c), n * sizeof(float));
    /* torch.nn.Linear's bound 1/√in: layer 0 has in = 5, layer 2 in = 4. */
    const float *p = bl_model_params(a);
    int distinct = 0;
    for (size_t i = 0; i < 24; i++) {
        assert_true(fabsf(p[i]) <= 1.0f / sqrtf(5.0f));
        distinct += i > 0 && p[i] != p[i - 1];
    }
    for (size_t i = 24; i < n; i++) {
        assert_true(fabsf(p[i]) <= 0.5f);
    }
    assert_true(distinct > 20);
    bl_model_destroy(a);
    bl_model_destroy(b);
    bl_model_destroy(c);
}

/* y = relu(x W1^T + b1) W2^T + b2 by loops, in double. */
static void reference_forward(const float *p, int batch, const float *x, double *out)
{
    const float *w1 = p, *b1 = p + 20, *w2 = p + 24, *b2 = p + 36;
    for (int r = 0; r < batch; r++) {
        double h[4];
        for (int o = 0; o < 4; o++) {
            double s = b1[o];
            for (int i = 0; i < 5; i++) {
                s += (double)x[r * 5 + i] * w1[o * 5 + i];
            }
            h[o] = s > 0 ? s : 0;
        }
        for (int o = 0; o < 3; o++) {
            double s = b2[o];
            for (int i = 0; i < 4; i++) {
                s += h[i] * w2[o * 4 + i];
            }
            out[r * 3 + o] = s;
        }
    }
}

static void test_forward_matches_reference(void **state)
{
    bl_model_t *m = small_mlp(3);
    bl_workspace_t ws;
    assert_int_equal(bl_workspace_init(m, 6, &ws), BL_OK);
    float x[6 * 5];
    for (int i = 0; i < 30; i++) {
        x[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
    }
    const float *logits = NULL;
    assert_int_equal(bl_model_forward(m, &ws, 6, x, &logits), BL_OK);
    double ref[6 * 3];
    reference_forward(bl_model_params(m), 6, x, ref);
    for (int i = 0; i < 18; i++) {
        assert_true(close_enough(logits[i], ref[i], 1e-5, 1e-4));
    }
    bl_workspace_free(bl_rt_allocator(m->rt), &ws);
    bl_model_destroy(m);
}

/* A ReLU that does not follow a dense layer is its own pass. */
static void test_unfused_relu_first(void **state)
{
    bl_model_t *m = NULL;
    assert_int_equal(bl_model_create(rt, 3, &m), BL_OK);
    assert_int_equal(bl_model_add_relu(m), BL_OK);
    assert_int_equal(bl_model_add_dense(m, 2), BL_OK);
    assert_int_equal(bl_model_build(m, 1), BL_OK);
    assert_non_null(bl_model_params(m)); /* hold every layer */
    float *p = bl_model_params(m);
    const float w[8] = {1, 2, 3, 4, 5, 6, 0.5f, -0.5f}; /* W 2×3, b 2 */
    memcpy(p, w, sizeof w);
    bl_workspace_t ws;
    assert_int_equal(bl_workspace_init(m, 1, &ws), BL_OK);
    const float x[3] = {-1.0f, 2.0f, -3.0f}; /* relu → 0, 2, 0 */
    const float *y = NULL;
    assert_int_equal(bl_model_forward(m, &ws, 1, x, &y), BL_OK);
    assert_float_equal(y[0], 2 * 2 + 0.5f, 1e-6);
    assert_float_equal(y[1], 2 * 5 - 0.5f, 1e-6);
    bl_workspace_free(bl_rt_allocator(m->rt), &ws);
    bl_model_destroy(m);
}

static void test_build_errors(void **state)
{
    bl_model_t *m = NULL;
    assert_int_equal(bl_model_create(rt, 0, &m), BL_ERR_INVALID_ARG);
    assert_null(m);
    assert_non_null(strstr(bl_last_error(rt), "input width is 0"));
    assert_int_equal(bl_model_create(rt, 4, &m), BL_OK);
    assert_int_equal(bl_model_build(m, 1), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "no layers"));
    assert_int_equal(bl_model_add_dense(m, 0), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "dense layer 0: output width is 0"));
    assert_int_equal(bl_model_add_dense(m, 2), BL_OK);
    assert_int_equal(bl_model_build(m, 1), BL_OK);
    assert_non_null(bl_model_params(m)); /* hold every layer */
    assert_int_equal(bl_model_build(m, 1), BL_ERR_INVALID_ARG);
    assert_int_equal(bl_model_add_relu(m), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "already built"));
    bl_model_destroy(m);
    bl_model_destroy(NULL); /* a no-op */
}

static bl_status_t failing_shape(void *state, int in, int *out, size_t *count)
{
    return BL_ERR_UNSUPPORTED;
}

static void test_user_layer_errors(void **state)
{
    bl_model_t *m = NULL;
    assert_int_equal(bl_model_create(rt, 4, &m), BL_OK);
    bl_layer_ops_t ops = tanh_dense_ops;
    ops.forward = NULL;
    assert_int_equal(bl_model_add_layer(m, &ops, NULL), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "layer 0 (tanh_dense): ops must provide"));
    ops = tanh_dense_ops;
    ops.shape = failing_shape;
    assert_int_equal(bl_model_add_layer(m, &ops, NULL), BL_ERR_UNSUPPORTED);
    assert_non_null(strstr(bl_last_error(rt), "shape() failed for input width 4"));
    ops = tanh_dense_ops;
    ops.init = NULL;
    int width = 3;
    assert_int_equal(bl_model_add_layer(m, &ops, &width), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "no init()"));
    assert_int_equal(bl_model_add_layer(m, &tanh_dense_ops, &width), BL_OK);
    assert_int_equal(bl_model_out_features(m), 3);
    bl_model_destroy(m);
}

/* Writes count raw bytes to path. */
static void write_bytes(const char *path, const void *data, size_t count)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, count, f), count);
    assert_int_equal(fclose(f), 0);
}

static void test_params_round_trip_and_format(void **state)
{
    char dir[] = "/tmp/bl_test_model_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/params.bin", dir);

    bl_model_t *a = small_mlp(11), *b = small_mlp(12);
    size_t n = bl_model_param_count(a);
    assert_int_equal(bl_model_save_params(a, path), BL_OK);
    /* The file is exactly the parameters as little-endian float32 (this
     * test runs on little-endian hosts): W1 row-major, b1, W2, b2. */
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    float file[64];
    assert_int_equal(fread(file, sizeof(float), 64, f), n);
    fclose(f);
    assert_memory_equal(file, bl_model_params(a), n * sizeof(float));

    assert_int_equal(bl_model_load_params(b, path), BL_OK);
    assert_memory_equal(bl_model_params(a), bl_model_params(b), n * sizeof(float));
    remove(path);
    rmdir(dir);
    bl_model_destroy(a);
    bl_model_destroy(b);
}

static void test_params_bad_files_change_nothing(void **state)
{
    char dir[] = "/tmp/bl_test_model_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/params.bin", dir);
    bl_model_t *m = small_mlp(5);
    size_t n = bl_model_param_count(m);
    float before[64];
    memcpy(before, bl_model_params(m), n * sizeof(float));

    /* Missing file. */
    assert_int_equal(bl_model_load_params(m, path), BL_ERR_IO);
    assert_non_null(strstr(bl_last_error(rt), "params.bin: cannot open"));
    /* Wrong length: one float short. */
    write_bytes(path, before, (n - 1) * sizeof(float));
    assert_int_equal(bl_model_load_params(m, path), BL_ERR_FORMAT);
    assert_non_null(strstr(bl_last_error(rt), "holds 152 bytes, but the model has 39 parameters"));
    /* A NaN inside. */
    float bad[64];
    memcpy(bad, before, n * sizeof(float));
    bad[n / 2] = NAN;
    write_bytes(path, bad, n * sizeof(float));
    assert_int_equal(bl_model_load_params(m, path), BL_ERR_FORMAT);
    assert_non_null(strstr(bl_last_error(rt), "parameter 19 is not a finite number"));
    /* A directory is not a parameter file. */
    assert_int_equal(bl_model_load_params(m, dir), BL_ERR_FORMAT);
    assert_memory_equal(bl_model_params(m), before, n * sizeof(float));

    /* A failed save leaves what was there: saving onto a directory's name
     * fails at the rename, and the directory (and its file) survive. */
    write_bytes(path, before, n * sizeof(float));
    assert_int_equal(bl_model_save_params(m, dir), BL_ERR_IO);
    assert_non_null(strstr(bl_last_error(rt), "cannot rename"));
    struct stat sb;
    assert_int_equal(stat(dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(stat(path, &sb), 0);
    /* An unwritable location. */
    assert_int_equal(bl_model_save_params(m, "/nonexistent-dir/p.bin"), BL_ERR_IO);
    assert_non_null(strstr(bl_last_error(rt), "cannot create"));
    remove(path);
    rmdir(dir);

    /* Before build there is nothing to save or load. */
    bl_model_t *unbuilt = NULL;
    assert_int_equal(bl_model_create(rt, 3, &unbuilt), BL_OK);
    assert_int_equal(bl_model_save_params(unbuilt, path), BL_ERR_INVALID_ARG);
    assert_int_equal(bl_model_load_params(unbuilt, path), BL_ERR_INVALID_ARG);
    bl_model_destroy(unbuilt);
    bl_model_destroy(m);
}

/* Every allocation of model building goes through the hooks: failing each
 * one in turn gives BL_ERR_NO_MEM and leaks nothing. */
static void test_allocation_failures(void **state)
{
    for (long fail_at = 1;; fail_at++) {
        counting_allocator_t counter = {.fail_at = 0};
        bl_runtime_t *r = test_runtime(&counter);
        assert_non_null(r);
        counter.fail_at = counter.allocs + fail_at;
        bl_model_t *m = NULL;
        bl_status_t st = bl_model_create(r, 8, &m);
        for (int i = 0; st == BL_OK && i < 12; i++) {
            st = i % 2 == 0 ? bl_model_add_dense(m, 4) : bl_model_add_relu(m);
        }
        if (st == BL_OK) {
            st = bl_model_build(m, 1);
        }
        bl_workspace_t ws = {0};
        if (st == BL_OK) {
            st = bl_workspace_init(m, 3, &ws);
            if (st == BL_OK) {
                bl_workspace_free(bl_rt_allocator(m->rt), &ws);
            }
        }
        bl_model_destroy(m);
        bl_runtime_destroy(r);
        assert_int_equal(counter.allocs, counter.releases);
        if (st == BL_OK) {
            assert_true(fail_at > 5); /* at least: model, layers ×2, params, grads, ws */
            break;
        }
        assert_int_equal(st, BL_ERR_NO_MEM);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes_and_layout),
        cmocka_unit_test(test_init_is_seeded_and_bounded),
        cmocka_unit_test(test_forward_matches_reference),
        cmocka_unit_test(test_unfused_relu_first),
        cmocka_unit_test(test_build_errors),
        cmocka_unit_test(test_user_layer_errors),
        cmocka_unit_test(test_params_round_trip_and_format),
        cmocka_unit_test(test_params_bad_files_change_nothing),
        cmocka_unit_test(test_allocation_failures),
    };
    return run_tests_with_runtime("test_model", tests, sizeof tests / sizeof tests[0], &rt);
}
