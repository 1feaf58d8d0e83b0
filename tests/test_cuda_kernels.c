/* The CUDA kernel table against the CPU table on the same inputs (label
 * gpu). Exits 77 (ctest: skipped) with the reason when no GPU is visible.
 *
 * Tolerances. Products: both sides sum k float32 terms, in different
 * orders (cuBLAS blocks differently from OpenBLAS) and with or without
 * FMAs, so each result may be off by the classic bound of recursive
 * summation, k·2⁻²⁴·Σ|a·b| per side; the check allows twice that, computed
 * per element from |A|·|B| (plus 1e-6 absolute). Element-wise kernels and
 * the loss (per-row exp in float, sums in double) use the same formulas as
 * the CPU up to FMA contraction and the device's expf/log, a few ulps:
 * 1e-5. Argmax counts are exact. Backward runs on the CPU's forward
 * output, so a ReLU mask never differs from an activation that rounded to
 * the other side of 0. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "cuda_kernels.h"
#include "cuda_test_support.h"
#include "kernels.h"
#include "memory_contract.h"

#define ELEM_TOL 1e-5

static const bl_kernels_t *G = &bl_cuda_kernels;
static const bl_kernels_t *C = &bl_cpu_kernels;

static void gemm_case(int ta, int tb, int m, int n, int k, float alpha, float beta)
{
    int lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
    size_t na = (size_t)m * (size_t)k, nb = (size_t)k * (size_t)n, nc = (size_t)m * (size_t)n;
    float *a = host(na, -1, 1), *b = host(nb, -1, 1), *c = host(nc, -1, 1);
    float *got = malloc((nc == 0 ? 1 : nc) * sizeof *got);
    float *da = up(a, na * 4), *db = up(b, nb * 4), *dc = up(c, nc * 4);
    /* The bound: 2·(k + 1)·2⁻²⁴·(|alpha|·|A|·|B| + |beta·C|) per element. */
    float *aa = host(na, 0, 0), *ab = host(nb, 0, 0), *bound = host(nc, 0, 0);
    for (size_t i = 0; i < na; i++) {
        aa[i] = fabsf(a[i]);
    }
    for (size_t i = 0; i < nb; i++) {
        ab[i] = fabsf(b[i]);
    }
    for (size_t i = 0; i < nc; i++) {
        bound[i] = fabsf(beta * c[i]);
    }
    C->gemm(ta, tb, m, n, k, fabsf(alpha), aa, lda, ab, ldb, 1.0f, bound, ldc);
    G->gemm(ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc, ldc);
    C->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    down(got, dc, nc);
    no_failure();
    for (size_t i = 0; i < nc; i++) {
        double tol = 1e-6 + 2.0 * (k + 1) * 0x1.0p-24 * bound[i];
        if (!(fabs((double)got[i] - (double)c[i]) <= tol)) {
            fail_msg("gemm %d%d %dx%dx%d [%zu]: gpu %.9g, cpu %.9g, bound %.3g", ta, tb, m, n, k, i,
                     (double)got[i], (double)c[i], tol);
        }
    }
    free(aa);
    free(ab);
    free(bound);
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    free(a);
    free(b);
    free(c);
    free(got);
}

static void test_gemm(void **state)
{
    (void)state;
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            gemm_case(ta, tb, 37, 53, 129, 1.0f, 0.0f);
            gemm_case(ta, tb, 64, 17, 300, 0.5f, 1.0f);
        }
    }
    gemm_case(0, 0, 5, 7, 0, 1.0f, 0.0f); /* empty inner product: C = 0 */
    gemm_case(0, 1, 5, 7, 0, 1.0f, 0.5f); /* C = 0.5 C */
}

static void dense_case(int batch, int in, int out, int relu, int accumulate, int with_dx)
{
    size_t nx = (size_t)batch * in, nw = (size_t)out * in, ny = (size_t)batch * out;
    float *x = host(nx, -1, 1), *w = host(nw, -1, 1), *b = host((size_t)out, -1, 1);
    float *y = host(ny, 0, 0), *dy = host(ny, -1, 1), *dx = host(nx, 0, 0);
    float *dw = host(nw, -1, 1), *dbias = host((size_t)out, -1, 1);
    float *gy = host(ny, 0, 0), *gdy = host(ny, 0, 0), *gdx = host(nx, 0, 0);
    float *gdw = host(nw, 0, 0), *gdb = host((size_t)out, 0, 0);
    float *d_x = up(x, nx * 4), *d_w = up(w, nw * 4), *d_b = up(b, (size_t)out * 4);
    float *d_y = up(y, ny * 4), *d_dy = up(dy, ny * 4), *d_dx = up(dx, nx * 4);
    float *d_dw = up(dw, nw * 4), *d_db = up(dbias, (size_t)out * 4);

    G->dense_forward(batch, in, out, d_x, d_w, d_b, d_y, relu);
    C->dense_forward(batch, in, out, x, w, b, y, relu);
    down(gy, d_y, ny);
    /* Inputs in [−1, 1]: a product's terms sum to at most its inner length
     * K in magnitude, so the bound above is within 2·(K + 1)²·2⁻²⁴ (K <= 70
     * here: under 6e-4); 1e-3 covers it. */
    check_close(gy, y, ny, 1e-3, 0, "dense_forward y");

    /* Backward on the CPU's forward output (the same ReLU mask). */
    assert_int_equal(cudaMemcpy(d_y, y, ny * 4, cudaMemcpyHostToDevice), cudaSuccess);
    G->dense_backward(batch, in, out, d_x, d_w, d_y, d_dy, with_dx ? d_dx : NULL, d_dw, d_db, relu,
                      accumulate);
    C->dense_backward(batch, in, out, x, w, y, dy, with_dx ? dx : NULL, dw, dbias, relu,
                      accumulate);
    down(gdy, d_dy, ny);
    down(gdw, d_dw, nw);
    down(gdb, d_db, (size_t)out);
    no_failure();
    check_close(gdy, dy, ny, 0, 0, "dense_backward masked dy");
    check_close(gdw, dw, nw, 1e-3, 0, "dense_backward dW");
    check_close(gdb, dbias, (size_t)out, 1e-3, 0, "dense_backward db");
    if (with_dx) {
        down(gdx, d_dx, nx);
        check_close(gdx, dx, nx, 1e-3, 0, "dense_backward dx");
    }
    float *bufs[] = {x, w, b, y, dy, dx, dw, dbias, gy, gdy, gdx, gdw, gdb};
    FREE_HOSTS(bufs);
    float *dbufs[] = {d_x, d_w, d_b, d_y, d_dy, d_dx, d_dw, d_db};
    FREE_DEVICES(dbufs);
}

static void test_dense(void **state)
{
    (void)state;
    for (int relu = 0; relu < 2; relu++) {
        for (int acc = 0; acc < 2; acc++) {
            dense_case(33, 70, 45, relu, acc, 1);
            dense_case(8, 16, 3, relu, acc, 0);
        }
    }
    dense_case(0, 16, 3, 1, 0, 1); /* empty batch: dW and db zeroed */
    dense_case(4, 0, 3, 0, 0, 1);  /* no inputs: y is the bias */
}

static void test_relu_and_sgd(void **state)
{
    (void)state;
    enum { N = 10007 };
    float *x = host(N, -1, 1), *y = host(N, 0, 0), *dy = host(N, -1, 1), *dx = host(N, 0, 0);
    float *got = host(N, 0, 0);
    float *d_x = up(x, N * 4), *d_y = up(y, N * 4), *d_dy = up(dy, N * 4), *d_dx = up(dx, N * 4);
    G->relu_forward(N, d_x, d_y);
    C->relu_forward(N, x, y);
    down(got, d_y, N);
    check_close(got, y, N, 0, 0, "relu_forward");
    G->relu_backward(N, d_y, d_dy, d_dx);
    C->relu_backward(N, y, dy, dx);
    down(got, d_dx, N);
    check_close(got, dx, N, 0, 0, "relu_backward");

    float *w = host(N, -1, 1), *v = host(N, -0.1f, 0.1f), *g = host(N, -5, 5);
    float *d_w = up(w, N * 4), *d_v = up(v, N * 4), *d_g = up(g, N * 4);
    for (int step = 0; step < 3; step++) {
        G->sgd_update(N, d_w, d_v, d_g, 1.0f / 64, 0.05f, 0.9f, 1e-4f);
        C->sgd_update(N, w, v, g, 1.0f / 64, 0.05f, 0.9f, 1e-4f);
    }
    /* Bit for bit: the replicas of a mixed CPU+GPU group each update
     * their own parameters from the same sums and must stay equal. */
    down(got, d_w, N);
    check_close(got, w, N, 0, 0, "sgd_update w");
    assert_memory_equal(got, w, N * sizeof *w);
    down(got, d_v, N);
    check_close(got, v, N, 0, 0, "sgd_update v");
    assert_memory_equal(got, v, N * sizeof *v);
    no_failure();
    float *all[] = {x, y, dy, dx, got, w, v, g};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        free(all[i]);
    }
    float *dall[] = {d_x, d_y, d_dy, d_dx, d_w, d_v, d_g};
    for (size_t i = 0; i < sizeof dall / sizeof dall[0]; i++) {
        cudaFree(dall[i]);
    }
}

static void test_softmax_xent(void **state)
{
    (void)state;
    enum { B = 1000, K = 10 };
    float *logits = host((size_t)B * K, -8, 8);
    int labels[B];
    for (int i = 0; i < B; i++) {
        labels[i] = (int)(uniform(0, 1) * K) % K;
    }
    /* Row 0 ties classes 2 and 5 for the max: the lowest index wins. */
    for (int j = 0; j < K; j++) {
        logits[j] = 0.0f;
    }
    logits[2] = logits[5] = 3.0f;
    labels[0] = 2;
    float *dl = host((size_t)B * K, 0, 0), *got = host((size_t)B * K, 0, 0);
    float *d_logits = up(logits, (size_t)B * K * 4), *d_dl = up(dl, (size_t)B * K * 4);
    int *d_labels = up(labels, sizeof labels);
    long gc = 0, cc = 0;
    double gl = G->softmax_xent(B, K, d_logits, d_labels, d_dl, &gc);
    double cl = C->softmax_xent(B, K, logits, labels, dl, &cc);
    no_failure();
    assert_true(fabs(gl - cl) <= ELEM_TOL * fabs(cl));
    assert_int_equal(gc, cc);
    down(got, d_dl, (size_t)B * K);
    check_close(got, dl, (size_t)B * K, ELEM_TOL, ELEM_TOL, "softmax_xent dlogits");
    /* Evaluation (no gradient) gives the same loss; a run gives the same
     * bits every time (the rows sum in a fixed order). */
    long again = 0;
    double el = G->softmax_xent(B, K, d_logits, d_labels, NULL, &again);
    assert_memory_equal(&el, &gl, sizeof el);
    assert_int_equal(again, gc);
    cudaFree(d_logits);
    cudaFree(d_dl);
    cudaFree(d_labels);
    free(logits);
    free(dl);
    free(got);
}

/* Rows of a table by index: copies, so the GPU's must equal the CPU's
 * exactly (repeated and out-of-order indices, labels alone, rows alone). */
static void test_gather_rows(void **state)
{
    (void)state;
    enum { COUNT = 37, COLS = 13, ROWS = 50 };
    float *table = host((size_t)COUNT * COLS, -1, 1);
    int labels[COUNT];
    int64_t idx[ROWS];
    for (int i = 0; i < COUNT; i++) {
        labels[i] = (i * 7) % 10;
    }
    for (int r = 0; r < ROWS; r++) {
        idx[r] = (r * 11 + 3) % COUNT;
    }
    float want[ROWS * COLS], got[ROWS * COLS];
    int want_labels[ROWS], got_labels[ROWS];
    memset(got, 0, sizeof got);
    memset(got_labels, 0, sizeof got_labels);
    C->gather_rows(ROWS, COLS, table, idx, want, labels, want_labels);
    float *dtable = up(table, sizeof(float) * COUNT * COLS);
    int *dlabels = up(labels, sizeof labels);
    int64_t *didx = up(idx, sizeof idx);
    float *drows = up(got, sizeof got);
    int *dgot_labels = up(got_labels, sizeof got_labels);
    G->gather_rows(ROWS, COLS, dtable, didx, drows, dlabels, dgot_labels);
    down(got, drows, ROWS * COLS);
    assert_int_equal(cudaMemcpy(got_labels, dgot_labels, sizeof got_labels, cudaMemcpyDeviceToHost),
                     cudaSuccess);
    assert_memory_equal(got, want, sizeof want);
    assert_memory_equal(got_labels, want_labels, sizeof want_labels);
    /* Labels only (a last pipeline stage), then nothing at all. */
    assert_int_equal(cudaMemset(dgot_labels, 0, sizeof got_labels), cudaSuccess);
    G->gather_rows(ROWS, 0, NULL, didx, NULL, dlabels, dgot_labels);
    G->gather_rows(0, COLS, dtable, didx, drows, dlabels, dgot_labels);
    char err[256];
    assert_int_equal(bl_cuda_sync(err, sizeof err), 0);
    assert_int_equal(cudaMemcpy(got_labels, dgot_labels, sizeof got_labels, cudaMemcpyDeviceToHost),
                     cudaSuccess);
    assert_memory_equal(got_labels, want_labels, sizeof want_labels);
    no_failure();
    void *buffers[] = {dtable, dlabels, didx, drows, dgot_labels};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) {
        cudaFree(buffers[i]);
    }
    free(table);
}

/* A call cuBLAS refuses (a leading dimension shorter than a row) is
 * recorded and reported by the check, naming the call, then cleared. */
static void test_failure_reported(void **state)
{
    (void)state;
    float zeros[64] = {0};
    float *d = up(zeros, sizeof zeros);
    G->gemm(0, 0, 4, 4, 4, 1.0f, d, 1, d, 4, 0.0f, d, 4);
    char err[256] = "";
    assert_int_equal(bl_cuda_check(err, sizeof err), -1);
    assert_non_null(strstr(err, "cublasSgemm"));
    assert_int_equal(bl_cuda_check(err, sizeof err), 0);
    cudaFree(d);
}

/* The GPU's memory table: pinned buffers, downloads on the copy stream
 * overlapping the compute stream, their numbering and arrival, the ring
 * of events wrapping around, finish covering them (finish_compute only
 * the compute stream), and a bad number reported (tests/
 * memory_contract.h; the mirror passes the same check). */
static void test_memory_contract(void **state)
{
    (void)state;
    check_memory_contract(&bl_cuda_memory);
    no_failure();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_relu_and_sgd),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_gather_rows),
        cmocka_unit_test(test_failure_reported),
        cmocka_unit_test(test_memory_contract),
    };
    return run_on_gpu("CUDA kernel tests", CUDA_TESTS(tests));
}
