/* Unit tests of the CPU kernels, through the bl_cpu_kernels table, against
 * plain double-precision references written here, with |got − ref| <=
 * atol + rtol·|ref|; plus finite-difference checks of the gradients. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h> /* openblas_get_num_threads */

#include "kernels.h"
#include "test_support.h"

#define ATOL 1e-5
#define RTOL 1e-4

static const bl_kernels_t *K = &bl_cpu_kernels;

/* ---- deterministic inputs: a 64-bit LCG (test_support.h) ---- */

static lcg_t rng;

/* Zeroed buffers of count elements (+1, so count 0 gives a valid pointer). */
static float *fbuf(size_t count)
{
    float *p = calloc(count + 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static double *dbuf(size_t count)
{
    double *p = calloc(count + 1, sizeof(double));
    assert_non_null(p);
    return p;
}

/* check_close_tol at this file's ATOL and RTOL. */
static void check_close(const float *got, const double *ref, size_t count, const char *what)
{
    check_close_tol(got, ref, count, ATOL, RTOL, what);
}

/* ---- references, in double ---- */

/* y (batch, out) = x (batch, in) · W^T + b, W (out, in); relu optional. */
static void ref_dense_forward(int batch, int in, int out, const float *x, const float *w,
                              const float *b, double *y, int relu)
{
    for (int i = 0; i < batch; i++) {
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int k = 0; k < in; k++) {
                s += (double)x[i * in + k] * (double)w[o * in + k];
            }
            y[i * out + o] = relu && s < 0.0 ? 0.0 : s;
        }
    }
}

/* g = dy masked by y > 0 (relu); dW (out, in) = base + g^T · x; db (out) =
 * base + column sums of g; dx (batch, in) = g · W. dw0/db0 may be NULL (0). */
static void ref_dense_backward(int batch, int in, int out, const float *x, const float *w,
                               const float *y, const float *dy, int relu, const float *dw0,
                               const float *db0, double *dx, double *dw, double *db)
{
    double *g = dbuf((size_t)batch * (size_t)out);
    for (int i = 0; i < batch * out; i++) {
        g[i] = relu && !(y[i] > 0.0f) ? 0.0 : (double)dy[i];
    }
    for (int o = 0; o < out; o++) {
        double s = db0 != NULL ? (double)db0[o] : 0.0;
        for (int i = 0; i < batch; i++) {
            s += g[i * out + o];
        }
        db[o] = s;
        for (int k = 0; k < in; k++) {
            double t = dw0 != NULL ? (double)dw0[o * in + k] : 0.0;
            for (int i = 0; i < batch; i++) {
                t += g[i * out + o] * (double)x[i * in + k];
            }
            dw[o * in + k] = t;
        }
    }
    for (int i = 0; i < batch; i++) {
        for (int k = 0; k < in; k++) {
            double t = 0.0;
            for (int o = 0; o < out; o++) {
                t += g[i * out + o] * (double)w[o * in + k];
            }
            dx[i * in + k] = t;
        }
    }
    free(g);
}

/* Stable softmax cross-entropy of one row in double; fills p (softmax) and
 * returns −log p[label]. */
static double ref_xent_row(int classes, const double *row, int label, double *p)
{
    double m = row[0];
    for (int j = 1; j < classes; j++) {
        m = row[j] > m ? row[j] : m;
    }
    double s = 0.0;
    for (int j = 0; j < classes; j++) {
        p[j] = exp(row[j] - m);
        s += p[j];
    }
    for (int j = 0; j < classes; j++) {
        p[j] /= s;
    }
    return log(s) - (row[label] - m);
}

/* Loss sum, dlogits = softmax − onehot, and the count of rows whose first
 * maximal index equals the label. */
static double ref_softmax_xent(int batch, int classes, const float *logits, const int *labels,
                               double *dlogits, long *correct)
{
    double *row = dbuf((size_t)classes);
    double loss = 0.0;
    *correct = 0;
    for (int i = 0; i < batch; i++) {
        int arg = 0;
        for (int j = 0; j < classes; j++) {
            row[j] = logits[i * classes + j];
            arg = row[j] > row[arg] ? j : arg;
        }
        *correct += arg == labels[i];
        double *p = dlogits + (size_t)i * (size_t)classes;
        loss += ref_xent_row(classes, row, labels[i], p);
        p[labels[i]] -= 1.0;
    }
    free(row);
    return loss;
}

/* ---- table and gemm ---- */

static void test_table(void **state)
{
    (void)state;
    assert_string_equal(K->name, "cpu");
    assert_non_null(K->gemm);
    assert_non_null(K->dense_forward);
    assert_non_null(K->dense_backward);
    assert_non_null(K->relu_forward);
    assert_non_null(K->relu_backward);
    assert_non_null(K->softmax_xent);
    assert_non_null(K->sgd_update);
}

/* One gemm case: A, B, C stored with padded leading dimensions (+3, +1, +2)
 * so lda/ldb/ldc are honoured; padding must stay untouched. */
static void gemm_case(int ta, int tb, int m, int n, int k, float alpha, float beta)
{
    const int a_rows = ta ? k : m, a_cols = ta ? m : k;
    const int b_rows = tb ? n : k, b_cols = tb ? k : n;
    const int lda = a_cols + 3, ldb = b_cols + 1, ldc = n + 2;
    float *a = fbuf((size_t)a_rows * lda);
    float *b = fbuf((size_t)b_rows * ldb);
    float *c = fbuf((size_t)m * ldc);
    double *ref = dbuf((size_t)m * ldc);
    fill_uniform(&rng, a, (size_t)a_rows * lda, -1.0f, 1.0f);
    fill_uniform(&rng, b, (size_t)b_rows * ldb, -1.0f, 1.0f);
    /* beta == 0 means C is not read: NaN there must not leak through. */
    if (beta == 0.0f) {
        fill_value(c, (size_t)m * ldc, NAN);
        for (int i = 0; i < m; i++) {
            for (int j = n; j < ldc; j++) {
                c[i * ldc + j] = 42.0f;
            }
        }
    } else {
        fill_uniform(&rng, c, (size_t)m * ldc, -1.0f, 1.0f);
    }
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < ldc; j++) {
            ref[i * ldc + j] = c[i * ldc + j]; /* padding: unchanged */
        }
        for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int p = 0; p < k; p++) {
                double av = ta ? a[p * lda + i] : a[i * lda + p];
                double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                s += av * bv;
            }
            ref[i * ldc + j] = alpha * s + (beta == 0.0f ? 0.0 : beta * (double)c[i * ldc + j]);
        }
    }
    K->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    char what[64];
    snprintf(what, sizeof(what), "gemm(%d,%d,%d,%d,%d)", ta, tb, m, n, k);
    check_close(c, ref, (size_t)m * ldc, what);
    free(a);
    free(b);
    free(c);
    free(ref);
}

static void test_gemm_transposes(void **state)
{
    (void)state;
    lcg_seed(&rng, 1);
    for (int ta = 0; ta <= 1; ta++) {
        for (int tb = 0; tb <= 1; tb++) {
            gemm_case(ta, tb, 5, 7, 3, 0.5f, -1.5f);
            gemm_case(ta, tb, 13, 4, 9, 1.0f, 0.0f);
            gemm_case(ta, tb, 1, 1, 1, 2.0f, 1.0f);
        }
    }
}

static void test_gemm_empty_inner(void **state)
{
    (void)state;
    lcg_seed(&rng, 2);
    /* k == 0: C = beta · C, and exactly 0 for beta == 0. */
    gemm_case(0, 0, 3, 4, 0, 1.0f, 0.5f);
    gemm_case(1, 1, 3, 4, 0, 1.0f, 0.0f);
}

static void test_set_threads(void **state)
{
    (void)state;
    lcg_seed(&rng, 3);
    bl_cpu_set_threads(2);
    assert_int_equal(openblas_get_num_threads(), 2);
    gemm_case(0, 1, 96, 80, 64, 1.0f, 0.0f);
    bl_cpu_set_threads(1);
    assert_int_equal(openblas_get_num_threads(), 1);
    gemm_case(0, 1, 96, 80, 64, 1.0f, 0.0f);
    bl_cpu_set_threads(0); /* ignored */
    assert_int_equal(openblas_get_num_threads(), 1);
}

/* ---- dense ---- */

typedef struct {
    int batch, in, out;
} shape_t;

static const shape_t dense_shapes[] = {
    {1, 1, 1}, {1, 16, 8}, {7, 13, 5}, {5, 7, 13}, {4, 3, 9}, {33, 17, 65}, {64, 100, 48},
};
#define N_SHAPES (sizeof(dense_shapes) / sizeof(dense_shapes[0]))

static void dense_forward_case(shape_t s, int relu)
{
    const size_t nx = (size_t)s.batch * s.in, nw = (size_t)s.out * s.in;
    const size_t ny = (size_t)s.batch * s.out;
    float *x = fbuf(nx), *w = fbuf(nw), *b = fbuf((size_t)s.out), *y = fbuf(ny);
    double *ref = dbuf(ny);
    fill_uniform(&rng, x, nx, -1.0f, 1.0f);
    fill_uniform(&rng, w, nw, -1.0f, 1.0f);
    fill_uniform(&rng, b, (size_t)s.out, -1.0f, 1.0f);
    fill_value(y, ny, NAN); /* y is output only */
    ref_dense_forward(s.batch, s.in, s.out, x, w, b, ref, relu);
    K->dense_forward(s.batch, s.in, s.out, x, w, b, y, relu);
    char what[64];
    snprintf(what, sizeof(what), "y(%d,%d,%d,relu=%d)", s.batch, s.in, s.out, relu);
    check_close(y, ref, ny, what);
    free(x);
    free(w);
    free(b);
    free(y);
    free(ref);
}

static void test_dense_forward(void **state)
{
    (void)state;
    lcg_seed(&rng, 10);
    for (size_t i = 0; i < N_SHAPES; i++) {
        dense_forward_case(dense_shapes[i], 0);
    }
}

static void test_dense_forward_relu(void **state)
{
    (void)state;
    lcg_seed(&rng, 11);
    for (size_t i = 0; i < N_SHAPES; i++) {
        dense_forward_case(dense_shapes[i], 1);
    }
    /* in == 0: y = relu(b) for every row. */
    dense_forward_case((shape_t){3, 0, 4}, 1);
}

static void test_dense_forward_batch0(void **state)
{
    (void)state;
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1}, b[2] = {1, -1};
    float y[2] = {-7.0f, -7.0f};
    K->dense_forward(0, 2, 2, x, w, b, y, 1);
    K->dense_forward(0, 2, 2, x, w, b, y, 0);
    assert_true(y[0] == -7.0f && y[1] == -7.0f); /* nothing written */
}

static void test_dense_forward_nan(void **state)
{
    (void)state;
    /* A NaN in row 0 of x reaches every output of row 0 through bias and
     * ReLU (as in PyTorch); row 1 is unaffected: relu(1 + 0.5), relu(−2 + 0.5). */
    float x[4] = {NAN, 1.0f, 1.0f, -2.0f}, w[4] = {1, 0, 0, 1}, b[2] = {0.5f, 0.5f}, y[4];
    K->dense_forward(2, 2, 2, x, w, b, y, 1);
    assert_true(isnan(y[0]) && isnan(y[1]));
    assert_true(y[2] == 1.5f && y[3] == 0.0f);
}

/* dy, y, x, W random; with relu, y = relu(uniform) so about half the mask is
 * off. accumulate 1 pre-fills dW/db with values that must be added to;
 * accumulate 0 pre-fills NaN, which must be overwritten, not read. */
static void dense_backward_case(shape_t s, int relu, int accumulate, int with_dx)
{
    const size_t nx = (size_t)s.batch * s.in, nw = (size_t)s.out * s.in;
    const size_t ny = (size_t)s.batch * s.out;
    float *x = fbuf(nx), *w = fbuf(nw), *y = fbuf(ny), *dy = fbuf(ny);
    float *dx = fbuf(nx), *dw = fbuf(nw), *db = fbuf((size_t)s.out);
    float *dw0 = fbuf(nw), *db0 = fbuf((size_t)s.out);
    double *rdx = dbuf(nx), *rdw = dbuf(nw), *rdb = dbuf((size_t)s.out);
    fill_uniform(&rng, x, nx, -1.0f, 1.0f);
    fill_uniform(&rng, w, nw, -1.0f, 1.0f);
    fill_uniform(&rng, y, ny, -1.0f, 1.0f);
    for (size_t i = 0; i < ny; i++) {
        y[i] = y[i] > 0.0f ? y[i] : 0.0f;
    }
    fill_uniform(&rng, dy, ny, -1.0f, 1.0f);
    if (accumulate) {
        fill_uniform(&rng, dw0, nw, -1.0f, 1.0f);
        fill_uniform(&rng, db0, (size_t)s.out, -1.0f, 1.0f);
        memcpy(dw, dw0, nw * sizeof(float));
        memcpy(db, db0, (size_t)s.out * sizeof(float));
    } else {
        fill_value(dw, nw, NAN);
        fill_value(db, (size_t)s.out, NAN);
    }
    fill_value(dx, nx, NAN);
    ref_dense_backward(s.batch, s.in, s.out, x, w, y, dy, relu, accumulate ? dw0 : NULL,
                       accumulate ? db0 : NULL, rdx, rdw, rdb);
    K->dense_backward(s.batch, s.in, s.out, x, w, y, dy, with_dx ? dx : NULL, dw, db, relu,
                      accumulate);
    char what[96];
    snprintf(what, sizeof(what), "dW(%d,%d,%d,relu=%d,acc=%d)", s.batch, s.in, s.out, relu,
             accumulate);
    check_close(dw, rdw, nw, what);
    what[1] = 'b';
    check_close(db, rdb, (size_t)s.out, what);
    if (with_dx) {
        what[1] = 'x';
        check_close(dx, rdx, nx, what);
    } else {
        for (size_t i = 0; i < nx; i++) {
            assert_true(isnan(dx[i])); /* our buffer was not passed: untouched */
        }
    }
    free(x);
    free(w);
    free(y);
    free(dy);
    free(dx);
    free(dw);
    free(db);
    free(dw0);
    free(db0);
    free(rdx);
    free(rdw);
    free(rdb);
}

static void test_dense_backward_overwrite(void **state)
{
    (void)state;
    lcg_seed(&rng, 20);
    for (size_t i = 0; i < N_SHAPES; i++) {
        dense_backward_case(dense_shapes[i], 0, 0, 1);
        dense_backward_case(dense_shapes[i], 1, 0, 1);
    }
}

static void test_dense_backward_accumulate(void **state)
{
    (void)state;
    lcg_seed(&rng, 21);
    for (size_t i = 0; i < N_SHAPES; i++) {
        dense_backward_case(dense_shapes[i], 0, 1, 1);
        dense_backward_case(dense_shapes[i], 1, 1, 1);
    }
}

static void test_dense_backward_no_dx(void **state)
{
    (void)state;
    lcg_seed(&rng, 22);
    for (size_t i = 0; i < N_SHAPES; i++) {
        for (int relu = 0; relu <= 1; relu++) {
            dense_backward_case(dense_shapes[i], relu, 0, 0);
            dense_backward_case(dense_shapes[i], relu, 1, 0);
        }
    }
}

/* Two half-batches accumulated give the full-batch gradient (the per-sample
 * SUM convention that lets a batch be split). */
static void test_dense_backward_split_batch(void **state)
{
    (void)state;
    lcg_seed(&rng, 23);
    enum { B = 10, IN = 6, OUT = 4 };
    float x[B * IN], w[OUT * IN], y[B * OUT], dy[B * OUT];
    float dw[OUT * IN], db[OUT];
    double rdx[B * IN], rdw[OUT * IN], rdb[OUT];
    fill_uniform(&rng, x, B * IN, -1.0f, 1.0f);
    fill_uniform(&rng, w, OUT * IN, -1.0f, 1.0f);
    fill_uniform(&rng, y, B * OUT, -1.0f, 1.0f);
    fill_uniform(&rng, dy, B * OUT, -1.0f, 1.0f);
    ref_dense_backward(B, IN, OUT, x, w, y, dy, 1, NULL, NULL, rdx, rdw, rdb);
    K->dense_backward(B / 2, IN, OUT, x, w, y, dy, NULL, dw, db, 1, 0);
    K->dense_backward(B - B / 2, IN, OUT, x + (B / 2) * IN, w, y + (B / 2) * OUT,
                      dy + (B / 2) * OUT, NULL, dw, db, 1, 1);
    check_close(dw, rdw, OUT * IN, "split dW");
    check_close(db, rdb, OUT, "split db");
}

static void test_dense_backward_batch0(void **state)
{
    (void)state;
    float x[1] = {1}, w[6] = {1, 2, 3, 4, 5, 6}, y[1] = {1}, dy[1] = {1};
    float dx[1] = {-7.0f}, dw[6], db[2];
    /* accumulate 0: the gradient of an empty batch is zero. */
    fill_value(dw, 6, 7.0f);
    fill_value(db, 2, 7.0f);
    K->dense_backward(0, 3, 2, x, w, y, dy, dx, dw, db, 1, 0);
    for (int i = 0; i < 6; i++) {
        assert_true(dw[i] == 0.0f);
    }
    assert_true(db[0] == 0.0f && db[1] == 0.0f);
    assert_true(dx[0] == -7.0f);
    /* accumulate 1: unchanged. */
    fill_value(dw, 6, 7.0f);
    fill_value(db, 2, 7.0f);
    K->dense_backward(0, 3, 2, x, w, y, dy, NULL, dw, db, 0, 1);
    for (int i = 0; i < 6; i++) {
        assert_true(dw[i] == 7.0f);
    }
    assert_true(db[0] == 7.0f && db[1] == 7.0f);
}

/* ---- relu ---- */

#define N_RELU 1003 /* odd: exercises vector tails */

static void relu_inputs(float *x)
{
    fill_uniform(&rng, x, N_RELU, -2.0f, 2.0f);
    x[0] = 0.0f;
    x[1] = -0.0f;
    x[2] = 1e-38f;
    x[3] = -1e-38f;
    x[4] = 3e38f;
    x[5] = -3e38f;
}

static void test_relu_forward(void **state)
{
    (void)state;
    lcg_seed(&rng, 30);
    float x[N_RELU], y[N_RELU], xc[N_RELU];
    relu_inputs(x);
    memcpy(xc, x, sizeof(x));
    fill_value(y, N_RELU, NAN);
    K->relu_forward(N_RELU, x, y);
    for (int i = 0; i < N_RELU; i++) {
        float want = xc[i] > 0.0f ? xc[i] : 0.0f;
        assert_true(y[i] == want);
        assert_memory_equal(&x[i], &xc[i], sizeof(float)); /* input untouched */
    }
    /* In place. */
    K->relu_forward(N_RELU, x, x);
    for (int i = 0; i < N_RELU; i++) {
        assert_true(x[i] == (xc[i] > 0.0f ? xc[i] : 0.0f));
    }
    /* NaN propagates, as in PyTorch (a diverging run must not look fine). */
    float nan_in[2] = {NAN, -1.0f}, nan_out[2] = {0.0f, 5.0f};
    K->relu_forward(2, nan_in, nan_out);
    assert_true(isnan(nan_out[0]) && nan_out[1] == 0.0f);
    /* count 0 writes nothing. */
    y[0] = -5.0f;
    K->relu_forward(0, xc, y);
    assert_true(y[0] == -5.0f);
}

static void test_relu_backward(void **state)
{
    (void)state;
    lcg_seed(&rng, 31);
    float x[N_RELU], y[N_RELU], dy[N_RELU], dyc[N_RELU], dx[N_RELU];
    relu_inputs(x);
    for (int i = 0; i < N_RELU; i++) {
        y[i] = x[i] > 0.0f ? x[i] : 0.0f; /* a forward output: exact zeros */
    }
    fill_uniform(&rng, dy, N_RELU, -1.0f, 1.0f);
    memcpy(dyc, dy, sizeof(dy));
    fill_value(dx, N_RELU, NAN);
    K->relu_backward(N_RELU, y, dy, dx);
    int passed = 0;
    for (int i = 0; i < N_RELU; i++) {
        float want = y[i] > 0.0f ? dyc[i] : 0.0f;
        assert_true(dx[i] == want);
        assert_true(dy[i] == dyc[i]);
        passed += y[i] > 0.0f;
    }
    assert_true(passed > 0 && passed < N_RELU); /* both branches exercised */
    /* In place: dy == dx. */
    K->relu_backward(N_RELU, y, dy, dy);
    for (int i = 0; i < N_RELU; i++) {
        assert_true(dy[i] == (y[i] > 0.0f ? dyc[i] : 0.0f));
    }
}

/* ---- softmax cross-entropy ---- */

static void xent_case(int batch, int classes, const float *logits, const int *labels)
{
    const size_t n = (size_t)batch * classes;
    float *dl = fbuf(n);
    double *rdl = dbuf(n);
    long rcorrect = 0;
    double rloss = ref_softmax_xent(batch, classes, logits, labels, rdl, &rcorrect);

    fill_value(dl, n, NAN);
    long correct = 3; /* the kernel adds to it */
    double loss = K->softmax_xent(batch, classes, logits, labels, dl, &correct);
    assert_true(isfinite(loss));
    check_scalar(loss, rloss, 1e-6 * batch, 1e-6, "loss");
    assert_int_equal(correct, 3 + rcorrect);
    check_close(dl, rdl, n, "dlogits");

    /* Evaluation: dlogits NULL gives the same loss and count. */
    long correct2 = 0;
    double loss2 = K->softmax_xent(batch, classes, logits, labels, NULL, &correct2);
    check_scalar(loss2, loss, 0.0, 1e-12, "loss without dlogits");
    assert_int_equal(correct2, rcorrect);
    free(dl);
    free(rdl);
}

static void test_softmax_xent(void **state)
{
    (void)state;
    lcg_seed(&rng, 40);
    enum { B = 9, C = 10 };
    float logits[B * C];
    int labels[B];
    fill_uniform(&rng, logits, B * C, -5.0f, 5.0f);
    for (int i = 0; i < B; i++) {
        labels[i] = (int)(lcg_next(&rng) % C);
    }
    /* Make some rows right: plant the label as the strict max on even rows. */
    for (int i = 0; i < B; i += 2) {
        logits[i * C + labels[i]] = 6.0f;
    }
    double rdl[B * C];
    long rc = 0;
    ref_softmax_xent(B, C, logits, labels, rdl, &rc);
    assert_true(rc >= 5 && rc < B); /* the count is neither 0 nor all */
    xent_case(B, C, logits, labels);
}

static void test_softmax_xent_ties(void **state)
{
    (void)state;
    /* Ties go to the lowest index. */
    const float logits[4 * 4] = {2, 5, 5, 1, 2, 5, 5, 1, 3, 3, 3, 3, 3, 3, 3, 3};
    const int labels[4] = {1, 1, 0, 2};
    float dl[16];
    long correct = 0;
    double loss = K->softmax_xent(4, 4, logits, labels, dl, &correct);
    assert_int_equal(correct, 3); /* rows 0, 1, 2; the highest index would give 0 */
    /* Rows 2, 3 are uniform: −log(1/4) each, dlogits 1/4 − onehot. */
    double p1 = 1.0 / (2.0 + exp(-3.0) + exp(-4.0));
    check_scalar(loss, 2.0 * -log(p1) + 2.0 * log(4.0), 1e-6, 1e-6, "ties loss");
    assert_true(fabs(dl[8] - (0.25 - 1.0)) < 1e-6 && fabs(dl[9] - 0.25) < 1e-6);
    xent_case(4, 4, logits, labels);
}

static void test_softmax_xent_large_logits(void **state)
{
    (void)state;
    /* exp(1e4) overflows even in double: only the max-subtracted form works. */
    const float logits[4 * 3] = {1e4f,  0.0f,  -1e4f, 1e4f,  9999.0f, -1e4f,
                                 -1e4f, -1e4f, -1e4f, -1e4f, 0.0f,    1e4f};
    const int labels[4] = {0, 1, 0, 0};
    float dl[12];
    long correct = 0;
    double loss = K->softmax_xent(4, 3, logits, labels, dl, &correct);
    for (int i = 0; i < 12; i++) {
        assert_true(isfinite(dl[i]));
    }
    double want = 0.0 + (log1p(exp(-1.0)) + 1.0) + log(3.0) + 2e4;
    check_scalar(loss, want, 1e-6, 1e-9, "large-logit loss");
    assert_int_equal(correct, 2); /* rows 0 and 2 (row 2 ties: index 0) */
    xent_case(4, 3, logits, labels);
}

static void test_softmax_xent_empty(void **state)
{
    (void)state;
    const float logits[1] = {1.0f};
    const int labels[1] = {0};
    long correct = 4;
    double loss = K->softmax_xent(0, 1, logits, labels, NULL, &correct);
    assert_true(loss == 0.0);
    assert_int_equal(correct, 4);
}

/* ---- SGD ---- */

/* Reference step in double: g = s·grad + wd·w; v = m·v + g; w = w − lr·v. */
static void ref_sgd(size_t count, double *w, double *v, const float *grad, double scale, double lr,
                    double momentum, double wd)
{
    for (size_t i = 0; i < count; i++) {
        double g = scale * grad[i] + wd * w[i];
        v[i] = momentum * v[i] + g;
        w[i] -= lr * v[i];
    }
}

static void sgd_case(float scale, float lr, float momentum, float wd)
{
    enum { N = 1003, STEPS = 3 };
    float w[N], v[N], g[N];
    double rw[N], rv[N];
    fill_uniform(&rng, w, N, -1.0f, 1.0f);
    fill_value(v, N, 0.0f);
    for (int i = 0; i < N; i++) {
        rw[i] = w[i];
        rv[i] = 0.0;
    }
    for (int step = 0; step < STEPS; step++) {
        fill_uniform(&rng, g, N, -50.0f, 50.0f);
        ref_sgd(N, rw, rv, g, scale, lr, momentum, wd);
        K->sgd_update(N, w, v, g, scale, lr, momentum, wd);
        check_close(w, rw, N, "sgd w");
        check_close(v, rv, N, "sgd v");
    }
}

static void test_sgd_update(void **state)
{
    (void)state;
    /* One hand-worked element: g = 0.5·2 + 0.01·1 = 1.01, v = 0.9·0.5 + 1.01
     * = 1.46, w = 1 − 0.1·1.46 = 0.854. */
    float w = 1.0f, v = 0.5f, g = 2.0f;
    K->sgd_update(1, &w, &v, &g, 0.5f, 0.1f, 0.9f, 0.01f);
    assert_true(fabs(v - 1.46) < 1e-6 && fabs(w - 0.854) < 1e-6);

    lcg_seed(&rng, 50);
    sgd_case(1.0f / 256.0f, 0.1f, 0.9f, 5e-4f);
    sgd_case(1.0f / 32.0f, 0.05f, 0.0f, 0.0f); /* plain SGD: v = g */
    sgd_case(1.0f / 64.0f, 0.01f, 0.0f, 0.1f); /* decay without momentum */
    sgd_case(1.0f, 0.5f, 0.5f, 0.0f);
}

/* The node-local reduction's fused update equals summing the arrays in
 * order and then sgd_update, bit for bit, for 1 to 4 arrays and counts
 * around the kernel's 512-element blocks. */
static void test_sgd_update_summed(void **state)
{
    (void)state;
    lcg_seed(&rng, 51);
    const size_t counts[] = {0, 1, 511, 512, 513, 1500};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        size_t n = counts[c];
        for (int arrays = 1; arrays <= 4; arrays++) {
            float *g[4], *sum = fbuf(n + 1), *w = fbuf(n + 1), *v = fbuf(n + 1);
            float *w2 = fbuf(n + 1), *v2 = fbuf(n + 1);
            for (int q = 0; q < arrays; q++) {
                g[q] = fbuf(n + 1);
                fill_uniform(&rng, g[q], n, -3.0f, 3.0f);
            }
            fill_uniform(&rng, w, n, -1.0f, 1.0f);
            fill_uniform(&rng, v, n, -0.1f, 0.1f);
            memcpy(w2, w, n * sizeof *w);
            memcpy(v2, v, n * sizeof *v);
            for (size_t i = 0; i < n; i++) {
                sum[i] = g[0][i];
                for (int q = 1; q < arrays; q++) {
                    sum[i] += g[q][i];
                }
            }
            K->sgd_update(n, w, v, sum, 1.0f / 96.0f, 0.05f, 0.9f, 1e-4f);
            bl_cpu_sgd_update_summed(n, w2, v2, (const float *const *)g, arrays, 1.0f / 96.0f,
                                     0.05f, 0.9f, 1e-4f);
            assert_memory_equal(w2, w, n * sizeof *w);
            assert_memory_equal(v2, v, n * sizeof *v);
            for (int q = 0; q < arrays; q++) {
                free(g[q]);
            }
            free(sum);
            free(w);
            free(v);
            free(w2);
            free(v2);
        }
    }
}

/* ---- finite differences: x → dense+relu → dense → softmax_xent ---- */

enum { GB = 4, GI = 5, GH = 6, GC = 3 };

typedef struct {
    double x[GB * GI], w1[GH * GI], b1[GH], w2[GC * GH], b2[GC];
    int labels[GB];
} net_t;

/* Loss sum in double; min_abs_z (if not NULL) gets min |pre-activation|. */
static double net_loss(const net_t *n, double *min_abs_z)
{
    double h[GB * GH], logits[GC], p[GC], loss = 0.0, zmin = INFINITY;
    for (int i = 0; i < GB; i++) {
        for (int o = 0; o < GH; o++) {
            double z = n->b1[o];
            for (int k = 0; k < GI; k++) {
                z += n->x[i * GI + k] * n->w1[o * GI + k];
            }
            zmin = fabs(z) < zmin ? fabs(z) : zmin;
            h[i * GH + o] = z > 0.0 ? z : 0.0;
        }
        for (int c = 0; c < GC; c++) {
            double z = n->b2[c];
            for (int k = 0; k < GH; k++) {
                z += h[i * GH + k] * n->w2[c * GH + k];
            }
            logits[c] = z;
        }
        loss += ref_xent_row(GC, logits, n->labels[i], p);
    }
    if (min_abs_z != NULL) {
        *min_abs_z = zmin;
    }
    return loss;
}

/* Central differences over every element of param (count), compared to the
 * analytic gradient. */
static void fd_check(net_t *n, double *param, size_t count, const float *analytic, const char *what)
{
    const double h = 1e-3;
    for (size_t i = 0; i < count; i++) {
        const double saved = param[i];
        param[i] = saved + h;
        const double up = net_loss(n, NULL);
        param[i] = saved - h;
        const double down = net_loss(n, NULL);
        param[i] = saved;
        const double fd = (up - down) / (2.0 * h);
        if (!(fabs(analytic[i] - fd) <= 1e-4 + 1e-2 * fabs(fd))) {
            fail_msg("%s[%zu]: analytic %.7g, finite difference %.7g", what, i, (double)analytic[i],
                     fd);
        }
    }
}

static void to_float(const double *src, float *dst, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        dst[i] = (float)src[i];
    }
}

static void test_gradcheck(void **state)
{
    (void)state;
    static net_t n;
    /* Draw until every hidden pre-activation is >= 0.05 from the ReLU kink:
     * a ±1e-3 step then never crosses it. Deterministic (fixed seed). */
    lcg_seed(&rng, 60);
    double zmin = 0.0;
    for (int attempt = 0; attempt < 1000 && zmin < 0.05; attempt++) {
        for (int i = 0; i < GB * GI; i++) {
            n.x[i] = lcg_uniform(&rng, -1.0f, 1.0f);
        }
        for (int i = 0; i < GH * GI; i++) {
            n.w1[i] = lcg_uniform(&rng, -1.0f, 1.0f);
        }
        for (int i = 0; i < GH; i++) {
            n.b1[i] = lcg_uniform(&rng, -0.5f, 0.5f);
        }
        for (int i = 0; i < GC * GH; i++) {
            n.w2[i] = lcg_uniform(&rng, -1.0f, 1.0f);
        }
        for (int i = 0; i < GC; i++) {
            n.b2[i] = lcg_uniform(&rng, -0.5f, 0.5f);
        }
        for (int i = 0; i < GB; i++) {
            n.labels[i] = (int)(lcg_next(&rng) % GC);
        }
        net_loss(&n, &zmin);
    }
    assert_true(zmin >= 0.05);

    /* Analytic gradients from the kernels (parameters are floats exactly). */
    float x[GB * GI], w1[GH * GI], b1[GH], w2[GC * GH], b2[GC];
    float hid[GB * GH], logits[GB * GC], dlogits[GB * GC], dh[GB * GH], dx[GB * GI];
    float dw1[GH * GI], db1[GH], dw2[GC * GH], db2[GC];
    to_float(n.x, x, GB * GI);
    to_float(n.w1, w1, GH * GI);
    to_float(n.b1, b1, GH);
    to_float(n.w2, w2, GC * GH);
    to_float(n.b2, b2, GC);
    K->dense_forward(GB, GI, GH, x, w1, b1, hid, 1);
    K->dense_forward(GB, GH, GC, hid, w2, b2, logits, 0);
    long correct = 0;
    double loss = K->softmax_xent(GB, GC, logits, n.labels, dlogits, &correct);
    check_scalar(loss, net_loss(&n, NULL), 1e-5, 1e-5, "composed loss");
    K->dense_backward(GB, GH, GC, hid, w2, logits, dlogits, dh, dw2, db2, 0, 0);
    K->dense_backward(GB, GI, GH, x, w1, hid, dh, dx, dw1, db1, 1, 0);

    int inactive = 0;
    for (int i = 0; i < GB * GH; i++) {
        inactive += hid[i] == 0.0f;
    }
    assert_true(inactive > 0 && inactive < GB * GH); /* the ReLU mask matters */

    fd_check(&n, n.x, GB * GI, dx, "dx");
    fd_check(&n, n.w1, GH * GI, dw1, "dW1");
    fd_check(&n, n.b1, GH, db1, "db1");
    fd_check(&n, n.w2, GC * GH, dw2, "dW2");
    fd_check(&n, n.b2, GC, db2, "db2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_gemm_transposes),
        cmocka_unit_test(test_gemm_empty_inner),
        cmocka_unit_test(test_set_threads),
        cmocka_unit_test(test_dense_forward),
        cmocka_unit_test(test_dense_forward_relu),
        cmocka_unit_test(test_dense_forward_batch0),
        cmocka_unit_test(test_dense_forward_nan),
        cmocka_unit_test(test_dense_backward_overwrite),
        cmocka_unit_test(test_dense_backward_accumulate),
        cmocka_unit_test(test_dense_backward_no_dx),
        cmocka_unit_test(test_dense_backward_split_batch),
        cmocka_unit_test(test_dense_backward_batch0),
        cmocka_unit_test(test_relu_forward),
        cmocka_unit_test(test_relu_backward),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_softmax_xent_ties),
        cmocka_unit_test(test_softmax_xent_large_logits),
        cmocka_unit_test(test_softmax_xent_empty),
        cmocka_unit_test(test_sgd_update),
        cmocka_unit_test(test_sgd_update_summed),
        cmocka_unit_test(test_gradcheck),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
