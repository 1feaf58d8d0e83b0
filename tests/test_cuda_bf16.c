/* The CUDA bf16 autocast table (bl_cuda_bf16_kernels) against its CPU
 * twin (bl_cpu_bf16_kernels) on the same random inputs (label gpu). The
 * table's wiring needs no GPU and is checked first; the rest exits 77
 * (ctest: skipped) with the reason when no GPU is visible.
 *
 * Tolerances, with u = 2⁻²⁴ and inputs in [−1, 1]. Both sides round each
 * operand of a product with bf16_round.h's bl_bf16_bits, so where the
 * operands are inputs they multiply the same values, and a product of two
 * bf16 values is exact in fp32: only the fp32 accumulation differs.
 * OpenBLAS sums k terms within (k + 1)·u·Σ|â·b̂| (alpha's scaling
 * included), â = bf16(a); a tensor core's fp32 accumulation may truncate
 * rather than round (it aligns the products and normalises toward zero),
 * so cuBLAS's is within 2·(k + 1)·u·Σ|â·b̂|. The sides are then within
 * 3·(k + 1)·u·Σ of each other, and a product is checked at over twice
 * that, per element:
 *   tol(k) = 8·(k + 2)·u·(|alpha|·Σ|â·b̂| + |beta·C|).
 * That is fp32's k·eps bound, not bf16's. bf16's rounding (up to 2⁻⁹
 * relative per operand) is far above it, which the checks against the
 * fp32 CUDA table use: for inputs that are not bf16 values, some element
 * of every nonempty product must differ from the fp32 table's by more
 * than its tolerance, or the operands were not rounded.
 *   gemm: tol(k); an empty product (k = 0) is beta·C on both sides,
 *     exactly; C's stride padding is never written.
 *   dense: y within tol(in), |b| in place of |beta·C| (the bias is added
 *     in fp32; a ReLU moves no difference up); the masked dy exactly (fp32
 *     on both sides); dW within tol(batch) (|dW| of before in place of
 *     |beta·C| when accumulating), db (fp32 column sums) within tol(batch)
 *     with Σ|dy| (and |db| of before), dx within tol(out).
 *   Attention's later products read intermediates (att, the scores'
 *   gradient dS) that each side computes in fp32 with its own rounding,
 *   and an fp32 difference of one ulp moves the bf16 rounding of a value
 *   near a rounding boundary by a whole bf16 ulp. Such an operand counts
 *   with what its rounded values may differ by: D = Σ_j |Δ_j|·|b̂_j|, Δ_j
 *   the difference of the two sides' bf16(a_j), is added to tol.
 *   attention_forward: the scores scale·q̂·k̂ come from inputs, e_s =
 *     8·(hs + 2)·u·Sq apart, Sq the largest scale·Σ|q̂·k̂| over the causal
 *     pairs; att then as in test_cuda_attention.c: relative r = 2·e_s +
 *     4·u·Sq + 20·u, checked at 2·r·att; above the diagonal exactly +0.
 *     out = bf16(att)·v̂ within D + tol(T) with Σ + D for Σ (the GPU's
 *     operands), Σ over the CPU's bf16(att) and Δ measured: both sides'
 *     att are downloaded and rounded on the host.
 *   attention_backward, on the CPU's att (the same att on both sides):
 *     dv = bf16(att)^T·dout̂ within tol(T). datt = dout̂·v̂^T is within
 *     e = 8·(hs + 2)·u·Σ|dout̂·v̂| of exact on each side, so dS =
 *     att·(datt − s), s = Σ att·datt in double then float, is within
 *     E = att·(3·e_max + 4·u·(|datt| + |s|)) of the exact dS (e_max the
 *     row's largest e; Σ att <= 1 + T·u). The host computes the exact
 *     dS in double; rounding to float and then to bf16 is monotone, so
 *     both sides' bf16(dS) lie in [bf16(dS − 2E), bf16(dS + 2E)], whose
 *     width bounds Δ (0 unless a rounding boundary lies inside). dq =
 *     scale·bf16(dS)·k̂ and dk = scale·bf16(dS)^T·q̂ are checked at
 *     scale·(D + tol(T)), Σ over the interval's larger end in magnitude.
 * Every run of the GPU's kernels gives the same bits (cuBLAS's defaults,
 * no atomics, the kernels' fixed orders), checked by running each case
 * twice into fresh buffers. */
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

#include "bf16_round.h"
#include "cuda_kernels.h"
#include "cuda_test_support.h"
#include "kernels.h"

#define U 0x1.0p-24

/* tol(k)'s factor: 8·(k + 2)·u per unit of Σ. */
static double tol_per_sum(int k)
{
    return 8.0 * (k + 2) * U;
}

static const bl_kernels_t *G = &bl_cuda_bf16_kernels;
static const bl_kernels_t *G32 = &bl_cuda_kernels;
static const bl_kernels_t *C = &bl_cpu_bf16_kernels;
/* The bounds' sums Σ|â·b̂| are fp32 products of nonnegative terms. */
static const bl_kernels_t *C32 = &bl_cpu_kernels;

/* A device buffer of n floats, every one a NaN (all bits set), so an
 * entry a kernel fails to write shows. */
static float *nans(size_t n)
{
    void *d = NULL;
    assert_int_equal(cudaMalloc(&d, (n == 0 ? 1 : n) * sizeof(float)), cudaSuccess);
    assert_int_equal(cudaMemset(d, 0xff, (n == 0 ? 1 : n) * sizeof(float)), cudaSuccess);
    return d;
}

/* |bf16(x)| element by element, host memory (free it). */
static float *abs_rounded(const float *x, size_t n)
{
    float *a = host(n, 0, 0);
    for (size_t i = 0; i < n; i++) {
        a[i] = fabsf(bl_bf16_round(x[i]));
    }
    return a;
}

/* Fails naming `what` and the first element where gpu and cpu differ by
 * more than tol[i]. */
static void check_within(const float *gpu, const float *cpu, const double *tol, size_t n,
                         const char *what)
{
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)gpu[i] - (double)cpu[i]);
        if (!(d <= tol[i])) {
            fail_msg("%s[%zu]: gpu %.9g, cpu %.9g, tolerance %.3g", what, i, (double)gpu[i],
                     (double)cpu[i], tol[i]);
        }
    }
}

/* Fails naming `what` unless some element of the bf16 result differs
 * from the fp32 table's by more than its tolerance (the operands really
 * were rounded). */
static void check_rounded(const float *bf16, const float *fp32, const double *tol, size_t n,
                          const char *what)
{
    for (size_t i = 0; i < n; i++) {
        if (fabs((double)bf16[i] - (double)fp32[i]) > tol[i]) {
            return;
        }
    }
    fail_msg("%s: the bf16 result is within its tolerance of the fp32 table's everywhere (%zu "
             "elements): the operands were not rounded",
             what, n);
}

/* The tolerances tol[i] = factor · bound[i] as doubles (free them). */
static double *scaled(const float *bound, size_t n, double factor)
{
    double *t = malloc((n == 0 ? 1 : n) * sizeof *t);
    assert_non_null(t);
    for (size_t i = 0; i < n; i++) {
        t[i] = factor * (double)bound[i];
    }
    return t;
}

/* A product's check: gpu within factor · bound[i] of cpu everywhere, and,
 * when fp32 (the fp32 table's result) is not NULL, apart from it somewhere. */
static void check_product(const float *gpu, const float *cpu, const float *bound, size_t n,
                          double factor, const float *fp32, const char *what)
{
    double *tol = scaled(bound, n, factor);
    check_within(gpu, cpu, tol, n, what);
    if (fp32 != NULL) {
        check_rounded(gpu, fp32, tol, n, what);
    }
    free(tol);
}

/* ---- The table's wiring (no GPU needed). */

static void test_table(void **state)
{
    (void)state;
    assert_string_equal(G->name, "cuda-bf16");
    /* The five products are the bf16 ones... */
    assert_true(G->gemm != G32->gemm);
    assert_true(G->dense_forward != G32->dense_forward);
    assert_true(G->dense_backward != G32->dense_backward);
    assert_true(G->attention_forward != G32->attention_forward);
    assert_true(G->attention_backward != G32->attention_backward);
    assert_non_null(G->gemm);
    assert_non_null(G->dense_forward);
    assert_non_null(G->dense_backward);
    assert_non_null(G->attention_forward);
    assert_non_null(G->attention_backward);
    /* ...and every other member is the fp32 table's. */
    assert_true(G->relu_forward == G32->relu_forward);
    assert_true(G->relu_backward == G32->relu_backward);
    assert_true(G->softmax_xent == G32->softmax_xent);
    assert_true(G->sgd_update == G32->sgd_update);
    assert_true(G->gather_rows == G32->gather_rows);
    assert_true(G->embedding_forward == G32->embedding_forward);
    assert_true(G->embedding_backward == G32->embedding_backward);
    assert_true(G->layernorm_forward == G32->layernorm_forward);
    assert_true(G->layernorm_backward == G32->layernorm_backward);
    assert_true(G->gelu_forward == G32->gelu_forward);
    assert_true(G->gelu_backward == G32->gelu_backward);
    assert_true(G->vocab_xent == G32->vocab_xent);
    assert_true(G->adamw_update == G32->adamw_update);
    assert_true(G->sum_squares == G32->sum_squares);
    assert_true(G->softmax_rows == G32->softmax_rows);
    assert_true(G->softmax_rows_backward == G32->softmax_rows_backward);
}

/* ---- gemm */

/* C (m, n) with row stride n + pad = alpha · op(A) · op(B) + beta · C, A
 * and B stored with pad more columns than they use. With beta 0 the
 * GPU's C starts as NaNs where the product goes (never read). */
static void gemm_case(int ta, int tb, int m, int n, int k, int pad, float alpha, float beta)
{
    const int a_rows = ta ? k : m, a_cols = ta ? m : k;
    const int b_rows = tb ? n : k, b_cols = tb ? k : n;
    const int lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
    const size_t na = (size_t)a_rows * (size_t)lda, nb = (size_t)b_rows * (size_t)ldb;
    const size_t nc = (size_t)m * (size_t)ldc;
    float *a = host(na, -1, 1), *b = host(nb, -1, 1), *c = host(nc, -1, 1);
    float *cin = host(nc, 0, 0);
    memcpy(cin, c, nc * sizeof *c);
    for (int i = 0; beta == 0.0f && i < m; i++) {
        for (int j = 0; j < n; j++) {
            cin[(size_t)i * (size_t)ldc + (size_t)j] = NAN;
        }
    }
    float *got = host(nc, 0, 0), *again = host(nc, 0, 0), *got32 = host(nc, 0, 0);
    float *da = up(a, na * 4), *db = up(b, nb * 4);
    float *dc = up(cin, nc * 4), *dc2 = up(cin, nc * 4), *dc32 = up(cin, nc * 4);

    G->gemm(ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc, ldc);
    G->gemm(ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc2, ldc);
    G32->gemm(ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc32, ldc);
    down(got, dc, nc);
    down(again, dc2, nc);
    down(got32, dc32, nc);
    no_failure();
    C->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    /* bound = |alpha|·|Â|·|B̂| + |beta·C| over the product's elements. */
    float *aa = abs_rounded(a, na), *ab = abs_rounded(b, nb), *bound = host(nc, 0, 0);
    for (size_t i = 0; i < nc; i++) {
        bound[i] = beta == 0.0f ? 0.0f : fabsf(beta * cin[i]);
    }
    if (k > 0 && m > 0 && n > 0) {
        C32->gemm(ta, tb, m, n, k, fabsf(alpha), aa, lda, ab, ldb, 1.0f, bound, ldc);
    }
    double *tol = scaled(bound, nc, k > 0 ? tol_per_sum(k) : 0.0);

    char what[96];
    snprintf(what, sizeof what, "gemm %d%d %dx%dx%d pad %d alpha %g beta %g", ta, tb, m, n, k, pad,
             (double)alpha, (double)beta);
    for (int i = 0; i < m; i++) {
        const size_t row = (size_t)i * (size_t)ldc;
        check_within(got + row, c + row, tol + row, (size_t)n, what);
        for (int j = n; j < ldc; j++) {
            if (memcmp(&got[row + (size_t)j], &cin[row + (size_t)j], sizeof(float)) != 0) {
                fail_msg("%s: row %d, padding column %d was written", what, i, j);
            }
        }
    }
    assert_memory_equal(again, got, nc * sizeof *got);
    if (k > 0 && m > 0 && n > 0) {
        check_rounded(got, got32, tol, nc, what);
    }

    float *bufs[] = {a, b, c, cin, got, again, got32, aa, ab, bound};
    FREE_HOSTS(bufs);
    free(tol);
    float *dbufs[] = {da, db, dc, dc2, dc32};
    FREE_DEVICES(dbufs);
}

/* m or n of 0: nothing is read or written (C keeps its bits). */
static void gemm_untouched_case(int m, int n)
{
    enum { N = 24 };
    float *c = host(N, -1, 1), *got = host(N, 0, 0);
    float *dc = up(c, N * 4);
    G->gemm(0, 0, m, n, 3, 1.0f, NULL, 3, NULL, n > 0 ? n : 1, 0.5f, dc, n > 0 ? n : 1);
    G->gemm(1, 1, m, n, 0, 1.0f, NULL, m > 0 ? m : 1, NULL, 1, 0.0f, dc, n > 0 ? n : 1);
    down(got, dc, N);
    no_failure();
    assert_memory_equal(got, c, N * sizeof *c);
    cudaFree(dc);
    free(c);
    free(got);
}

static void test_gemm(void **state)
{
    (void)state;
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            gemm_case(ta, tb, 37, 53, 129, 0, 1.0f, 0.0f);
            gemm_case(ta, tb, 64, 17, 300, 3, 0.5f, 1.0f);
            gemm_case(ta, tb, 5, 9, 2, 1, -1.25f, -0.5f);
            gemm_case(ta, tb, 1, 1, 1, 2, 1.0f, 0.0f);
            gemm_case(ta, tb, 5, 7, 0, 2, 1.0f, 0.0f); /* empty inner product: C = 0 */
            gemm_case(ta, tb, 5, 7, 0, 1, 1.0f, 0.5f); /* C = 0.5·C */
        }
    }
    gemm_untouched_case(0, 5);
    gemm_untouched_case(4, 0);
}

/* ---- The dense layer */

static void dense_case(int batch, int in, int out, int relu, int accumulate, int with_dx)
{
    const size_t nx = (size_t)batch * (size_t)in, nw = (size_t)out * (size_t)in;
    const size_t ny = (size_t)batch * (size_t)out, nb = (size_t)out;
    const int nonempty = batch > 0 && in > 0 && out > 0;
    float *x = host(nx, -1, 1), *w = host(nw, -1, 1), *b = host(nb, -1, 1);
    float *dy0 = host(ny, -1, 1), *dw0 = host(nw, -1, 1), *db0 = host(nb, -1, 1);
    float *y = host(ny, 0, 0), *dy = host(ny, 0, 0), *dx = host(nx, 0, 0);
    float *dw = host(nw, 0, 0), *db = host(nb, 0, 0);
    memcpy(dy, dy0, ny * sizeof *dy);
    memcpy(dw, dw0, nw * sizeof *dw);
    memcpy(db, db0, nb * sizeof *db);
    float *d_x = up(x, nx * 4), *d_w = up(w, nw * 4), *d_b = up(b, nb * 4);
    char what[96];

    /* Forward: the bf16 table twice, the fp32 one, the CPU twin. */
    float *gy = host(ny, 0, 0), *again = host(nx + nw + ny + nb, 0, 0), *gy32 = host(ny, 0, 0);
    float *d_y = nans(ny), *d_y2 = nans(ny), *d_y32 = nans(ny);
    G->dense_forward(batch, in, out, d_x, d_w, d_b, d_y, relu);
    G->dense_forward(batch, in, out, d_x, d_w, d_b, d_y2, relu);
    G32->dense_forward(batch, in, out, d_x, d_w, d_b, d_y32, relu);
    down(gy, d_y, ny);
    down(again, d_y2, ny);
    down(gy32, d_y32, ny);
    no_failure();
    C->dense_forward(batch, in, out, x, w, b, y, relu);
    assert_memory_equal(again, gy, ny * sizeof *gy);

    float *ax = abs_rounded(x, nx), *aw = abs_rounded(w, nw), *bound = host(ny, 0, 0);
    for (int r = 0; r < batch; r++) {
        for (int o = 0; o < out; o++) {
            bound[(size_t)r * (size_t)out + (size_t)o] = fabsf(b[o]);
        }
    }
    if (nonempty) { /* OpenBLAS takes no leading dimension of 0 */
        C32->gemm(0, 1, batch, out, in, 1.0f, ax, in, aw, in, 1.0f, bound, out);
    }
    snprintf(what, sizeof what, "dense_forward y %dx%dx%d relu %d", batch, in, out, relu);
    check_product(gy, y, bound, ny, tol_per_sum(in), nonempty ? gy32 : NULL, what);

    /* Backward on the CPU's forward output (the same ReLU mask), twice on
     * the bf16 table and once on the fp32 one, each on fresh copies. */
    float *d_yc = up(y, ny * 4);
    float *d_dy[3], *d_dx[3], *d_dw[3], *d_db[3];
    for (int t = 0; t < 3; t++) {
        d_dy[t] = up(dy0, ny * 4);
        d_dx[t] = nans(nx);
        d_dw[t] = up(dw0, nw * 4);
        d_db[t] = up(db0, nb * 4);
        const bl_kernels_t *table = t < 2 ? G : G32;
        table->dense_backward(batch, in, out, d_x, d_w, d_yc, d_dy[t], with_dx ? d_dx[t] : NULL,
                              d_dw[t], d_db[t], relu, accumulate);
    }
    C->dense_backward(batch, in, out, x, w, y, dy, with_dx ? dx : NULL, dw, db, relu, accumulate);
    float *gdy = host(ny, 0, 0), *gdx = host(nx, 0, 0), *gdw = host(nw, 0, 0);
    float *gdb = host(nb, 0, 0), *g32 = host(nx + nw, 0, 0);
    down(gdy, d_dy[0], ny);
    down(gdw, d_dw[0], nw);
    down(gdb, d_db[0], nb);
    no_failure();
    snprintf(what, sizeof what, "dense_backward %dx%dx%d relu %d acc %d dx %d", batch, in, out,
             relu, accumulate, with_dx);
    /* The masked dy is fp32 on both sides: the same bits. */
    assert_memory_equal(gdy, dy, ny * sizeof *dy);

    /* dW (out, in) (+)= dŷ^T · x̂, dy the masked one. */
    float *ady = abs_rounded(dy, ny), *bw = host(nw, 0, 0);
    for (size_t i = 0; i < nw; i++) {
        bw[i] = accumulate ? fabsf(dw0[i]) : 0.0f;
    }
    if (nonempty) {
        C32->gemm(1, 0, out, in, batch, 1.0f, ady, out, ax, in, 1.0f, bw, in);
    }
    if (nonempty) {
        down(g32, d_dw[2], nw);
    }
    check_product(gdw, dw, bw, nw, tol_per_sum(batch), nonempty ? g32 : NULL, what);
    /* db (out) (+)= the column sums of the fp32 dy. */
    double *tdb = malloc((nb == 0 ? 1 : nb) * sizeof *tdb);
    assert_non_null(tdb);
    for (int o = 0; o < out; o++) {
        double s = accumulate ? fabs((double)db0[o]) : 0.0;
        for (int r = 0; r < batch; r++) {
            s += fabs((double)dy[(size_t)r * (size_t)out + (size_t)o]);
        }
        tdb[o] = tol_per_sum(batch) * s;
    }
    check_within(gdb, db, tdb, nb, what);
    free(tdb);
    /* dx (batch, in) = dŷ · Ŵ. */
    if (with_dx) {
        down(gdx, d_dx[0], nx);
        float *bx = host(nx, 0, 0);
        if (nonempty) {
            C32->gemm(0, 0, batch, in, out, 1.0f, ady, out, aw, in, 0.0f, bx, in);
        }
        if (nonempty) {
            down(g32, d_dx[2], nx);
        }
        check_product(gdx, dx, bx, nx, tol_per_sum(out), nonempty ? g32 : NULL, what);
        free(bx);
    }
    /* The second run's bits. */
    down(again, d_dy[1], ny);
    assert_memory_equal(again, gdy, ny * sizeof *gdy);
    down(again, d_dw[1], nw);
    assert_memory_equal(again, gdw, nw * sizeof *gdw);
    down(again, d_db[1], nb);
    assert_memory_equal(again, gdb, nb * sizeof *gdb);
    if (with_dx) {
        down(again, d_dx[1], nx);
        assert_memory_equal(again, gdx, nx * sizeof *gdx);
    }
    no_failure();

    float *bufs[] = {x,     w,    b,  dy0, dw0,   db0, y,   dy,  dx,  dw,  db,  gy,
                     again, gy32, ax, aw,  bound, gdy, gdx, gdw, gdb, g32, ady, bw};
    FREE_HOSTS(bufs);
    float *dbufs[] = {d_x, d_w, d_b, d_y, d_y2, d_y32, d_yc};
    FREE_DEVICES(dbufs);
    for (int t = 0; t < 3; t++) {
        cudaFree(d_dy[t]);
        cudaFree(d_dx[t]);
        cudaFree(d_dw[t]);
        cudaFree(d_db[t]);
    }
}

static void test_dense(void **state)
{
    (void)state;
    for (int relu = 0; relu < 2; relu++) {
        for (int acc = 0; acc < 2; acc++) {
            dense_case(33, 70, 45, relu, acc, 1);
            dense_case(8, 16, 3, relu, acc, 0);
            dense_case(130, 257, 64, relu, acc, 1);
        }
    }
    dense_case(0, 16, 3, 1, 0, 1); /* empty batch: dW and db zeroed */
    dense_case(4, 0, 3, 0, 0, 1);  /* no inputs: y is the bias */
    dense_case(4, 5, 0, 0, 1, 1);  /* no outputs: dx is zero */
}

/* ---- Attention */

/* Sq of the top comment: the largest scale·Σ_d |q̂_d·k̂_d| over the causal
 * pairs of every head. */
static double score_magnitude(int B, int T, int NH, int hs, const float *qkv)
{
    const int Cc = NH * hs;
    const size_t C3 = 3 * (size_t)Cc;
    const double scale = 1.0 / sqrt((double)hs);
    double sq = 0.0;
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (size_t)b * (size_t)T * C3 + (size_t)h * (size_t)hs;
            for (int i = 0; i < T; i++) {
                const float *q = base + (size_t)i * C3;
                for (int j = 0; j <= i; j++) {
                    const float *k = base + (size_t)j * C3 + Cc;
                    double s = 0.0;
                    for (int d = 0; d < hs; d++) {
                        s += fabs((double)bl_bf16_round(q[d]) * (double)bl_bf16_round(k[d]));
                    }
                    sq = fmax(sq, s * scale);
                }
            }
        }
    }
    return sq;
}

/* The tolerance of out (B, T, C) = bf16(att)·v̂ per element (top
 * comment), from both sides' att. */
static double *out_tolerance(int B, int T, int NH, int hs, const float *qkv, const float *att,
                             const float *gatt)
{
    const int Cc = NH * hs;
    const size_t C3 = 3 * (size_t)Cc;
    double *tol = malloc((size_t)B * (size_t)T * (size_t)Cc * sizeof *tol);
    assert_non_null(tol);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const size_t pair = ((size_t)b * (size_t)NH + (size_t)h) * (size_t)T * (size_t)T;
            const float *v = qkv + (size_t)b * (size_t)T * C3 + 2 * (size_t)Cc + (size_t)h * hs;
            for (int i = 0; i < T; i++) {
                for (int d = 0; d < hs; d++) {
                    double sum = 0.0, moved = 0.0;
                    for (int j = 0; j <= i; j++) {
                        const size_t at = pair + (size_t)i * (size_t)T + (size_t)j;
                        const double vj = fabs((double)bl_bf16_round(v[(size_t)j * C3 + d]));
                        const double cpu = bl_bf16_round(att[at]), gpu = bl_bf16_round(gatt[at]);
                        sum += fabs(cpu) * vj;
                        moved += fabs(gpu - cpu) * vj;
                    }
                    tol[((size_t)b * (size_t)T + (size_t)i) * (size_t)Cc + (size_t)h * hs + d] =
                        moved + tol_per_sum(T) * (sum + moved);
                }
            }
        }
    }
    return tol;
}

/* The tolerance of dqkv (B, T, 3C) per element (top comment), from the
 * inputs and the att both sides ran on. */
static double *dqkv_tolerance(int B, int T, int NH, int hs, const float *qkv, const float *dout,
                              const float *att)
{
    const int Cc = NH * hs;
    const size_t C3 = 3 * (size_t)Cc, TT = (size_t)T * (size_t)T;
    const double scale = 1.0 / sqrt((double)hs);
    double *tol = malloc((size_t)B * (size_t)T * C3 * sizeof *tol);
    /* Per pair (T, T): the interval's width Δ and larger magnitude of
     * bf16(dS), and datt's exact value. */
    double *width = malloc(TT * sizeof *width), *mag = malloc(TT * sizeof *mag);
    double *datt = malloc(TT * sizeof *datt);
    assert_non_null(tol);
    assert_non_null(width);
    assert_non_null(mag);
    assert_non_null(datt);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *p = att + ((size_t)b * (size_t)NH + (size_t)h) * TT;
            const size_t head = (size_t)b * (size_t)T * C3 + (size_t)h * (size_t)hs;
            const float *q = qkv + head, *k = q + Cc, *v = q + 2 * (size_t)Cc;
            const float *g = dout + (size_t)b * (size_t)T * (size_t)Cc + (size_t)h * (size_t)hs;
            for (int i = 0; i < T; i++) {
                double s = 0.0, e_max = 0.0;
                /* The causal keys j <= i: datt exactly (in double), its
                 * bound e and the row's s and e_max. */
                for (int j = 0; j <= i; j++) {
                    double dot = 0.0, sum = 0.0;
                    for (int d = 0; d < hs; d++) {
                        const double t = (double)bl_bf16_round(g[(size_t)i * (size_t)Cc + d]) *
                                         (double)bl_bf16_round(v[(size_t)j * C3 + d]);
                        dot += t;
                        sum += fabs(t);
                    }
                    const size_t at = (size_t)i * T + j;
                    datt[at] = dot;
                    s += (double)p[at] * dot;
                    e_max = fmax(e_max, tol_per_sum(hs) * sum);
                }
                for (int j = 0; j < T; j++) {
                    const size_t at = (size_t)i * T + j;
                    if (j > i) {
                        width[at] = 0.0; /* exactly 0 on both sides */
                        mag[at] = 0.0;
                        continue;
                    }
                    const double a = p[at], ds = a * (datt[at] - s);
                    const double e = 2.0 * a * (3.0 * e_max + 4.0 * U * (fabs(datt[at]) + fabs(s)));
                    const double lo = bl_bf16_round((float)(ds - e));
                    const double hi = bl_bf16_round((float)(ds + e));
                    width[at] = hi - lo;
                    mag[at] = fmax(fabs(lo), fabs(hi));
                }
            }
            for (int t = 0; t < T; t++) {
                double *row = tol + ((size_t)b * (size_t)T + (size_t)t) * C3 + (size_t)h * hs;
                for (int d = 0; d < hs; d++) {
                    /* dq[t] = scale·Σ_j bf16(dS[t, j])·k̂[j]; dk[t] = scale·
                     * Σ_i bf16(dS[i, t])·q̂[i]; dv[t] = Σ_i bf16(att[i, t])·dout̂[i]. */
                    double dq_moved = 0.0, dq_sum = 0.0, dk_moved = 0.0, dk_sum = 0.0;
                    double dv_sum = 0.0;
                    for (int j = 0; j < T; j++) {
                        const size_t tj = (size_t)t * T + j, jt = (size_t)j * T + t;
                        const double kj = fabs((double)bl_bf16_round(k[(size_t)j * C3 + d]));
                        const double qj = fabs((double)bl_bf16_round(q[(size_t)j * C3 + d]));
                        const double gj =
                            fabs((double)bl_bf16_round(g[(size_t)j * (size_t)Cc + d]));
                        dq_moved += width[tj] * kj;
                        dq_sum += mag[tj] * kj;
                        dk_moved += width[jt] * qj;
                        dk_sum += mag[jt] * qj;
                        dv_sum += fabs((double)bl_bf16_round(p[jt])) * gj;
                    }
                    row[d] = scale * (dq_moved + tol_per_sum(T) * dq_sum);
                    row[Cc + d] = scale * (dk_moved + tol_per_sum(T) * dk_sum);
                    row[2 * (size_t)Cc + d] = tol_per_sum(T) * dv_sum;
                }
            }
        }
    }
    free(width);
    free(mag);
    free(datt);
    return tol;
}

static int is_plus_zero(float x)
{
    return x == 0.0f && !signbit(x);
}

static void attention_case(int B, int T, int NH, int hs)
{
    const int Cc = NH * hs;
    const size_t nqkv = (size_t)B * (size_t)T * 3 * (size_t)Cc;
    const size_t nout = (size_t)B * (size_t)T * (size_t)Cc;
    const size_t natt = (size_t)B * (size_t)NH * (size_t)T * (size_t)T;
    float *qkv = host(nqkv, -1, 1), *dout = host(nout, -1, 1);
    float *out = host(nout, 0, 0), *att = host(natt, 0, 0), *dqkv = host(nqkv, 0, 0);
    float *scratch = host((size_t)T * (size_t)T, 0, 0);
    float *gout = host(nout, 0, 0), *gatt = host(natt, 0, 0), *gdqkv = host(nqkv, 0, 0);
    float *g32 = host(natt > nqkv ? natt : nqkv, 0, 0);
    float *again = host(natt > nqkv ? natt : nqkv, 0, 0);
    float *d_qkv = up(qkv, nqkv * 4), *d_dout = up(dout, nout * 4);
    float *d_out = nans(nout), *d_att = nans(natt), *d_dqkv = nans(nqkv);
    float *d_out2 = nans(nout), *d_att2 = nans(natt), *d_dqkv2 = nans(nqkv);
    float *d_out32 = nans(nout), *d_att32 = nans(natt), *d_dqkv32 = nans(nqkv);
    float *d_scratch = nans((size_t)T * (size_t)T);
    char what[96];

    C->attention_forward(B, T, Cc, NH, qkv, out, att);
    G->attention_forward(B, T, Cc, NH, d_qkv, d_out, d_att);
    G->attention_forward(B, T, Cc, NH, d_qkv, d_out2, d_att2);
    G32->attention_forward(B, T, Cc, NH, d_qkv, d_out32, d_att32);
    down(gatt, d_att, natt);
    down(gout, d_out, nout);
    no_failure();

    const double sq = score_magnitude(B, T, NH, hs, qkv);
    const double e_s = tol_per_sum(hs) * sq;
    const double r_att = 2.0 * e_s + 4.0 * U * sq + 20.0 * U;
    snprintf(what, sizeof what, "att B=%d T=%d NH=%d hs=%d", B, T, NH, hs);
    for (size_t z = 0; z < (size_t)B * (size_t)NH; z++) {
        for (int i = 0; i < T; i++) {
            const size_t row = (z * (size_t)T + (size_t)i) * (size_t)T;
            for (int j = i + 1; j < T; j++) {
                if (!is_plus_zero(gatt[row + (size_t)j])) {
                    fail_msg("%s: pair %zu, query %d, key %d above the diagonal is %.9g, not 0",
                             what, z, i, j, (double)gatt[row + (size_t)j]);
                }
            }
            check_close(gatt + row, att + row, (size_t)i + 1, 0.0, 2.0 * r_att, what);
        }
    }
    double *tol = out_tolerance(B, T, NH, hs, qkv, att, gatt);
    snprintf(what, sizeof what, "out B=%d T=%d NH=%d hs=%d", B, T, NH, hs);
    check_within(gout, out, tol, nout, what);
    down(g32, d_out32, nout);
    check_rounded(gout, g32, tol, nout, what);
    free(tol);
    /* The same bits on the second run. */
    down(again, d_att2, natt);
    assert_memory_equal(again, gatt, natt * sizeof *gatt);
    down(again, d_out2, nout);
    assert_memory_equal(again, gout, nout * sizeof *gout);

    /* The backward on the CPU's att, so both sides multiply the same
     * probabilities; dqkv starts as NaNs, all of it overwritten. */
    assert_int_equal(cudaMemcpy(d_att, att, natt * 4, cudaMemcpyHostToDevice), cudaSuccess);
    C->attention_backward(B, T, Cc, NH, dout, qkv, att, dqkv, scratch);
    G->attention_backward(B, T, Cc, NH, d_dout, d_qkv, d_att, d_dqkv, d_scratch);
    G->attention_backward(B, T, Cc, NH, d_dout, d_qkv, d_att, d_dqkv2, d_scratch);
    G32->attention_backward(B, T, Cc, NH, d_dout, d_qkv, d_att, d_dqkv32, d_scratch);
    down(gdqkv, d_dqkv, nqkv);
    no_failure();
    tol = dqkv_tolerance(B, T, NH, hs, qkv, dout, att);
    snprintf(what, sizeof what, "dqkv B=%d T=%d NH=%d hs=%d", B, T, NH, hs);
    check_within(gdqkv, dqkv, tol, nqkv, what);
    down(g32, d_dqkv32, nqkv);
    check_rounded(gdqkv, g32, tol, nqkv, what);
    free(tol);
    down(again, d_dqkv2, nqkv);
    no_failure();
    assert_memory_equal(again, gdqkv, nqkv * sizeof *gdqkv);

    float *bufs[] = {qkv, dout, out, att, dqkv, scratch, gout, gatt, gdqkv, g32, again};
    FREE_HOSTS(bufs);
    float *dbufs[] = {d_qkv,  d_dout,  d_out,   d_att,   d_dqkv,   d_out2,
                      d_att2, d_dqkv2, d_out32, d_att32, d_dqkv32, d_scratch};
    FREE_DEVICES(dbufs);
}

/* B 1 and 2, T 1, 7 and 64, NH 1, 2 and 12, hs 1, 8 and 64 (C = NH·hs):
 * one query, a few, and GPT-2's head size; the bf16 scratch grows and is
 * reused across them. */
static void test_attention(void **state)
{
    (void)state;
    for_attention_shapes(2, attention_case);
}

/* Empty shapes launch nothing and touch no pointer; a C that is not a
 * multiple of NH, or a gemm's leading dimension below its operand's
 * width (which the bf16 copies would hide from cuBLAS), is reported by
 * the check, naming the kernel, and touches no pointer either. */
static void test_empty_and_bad_shapes(void **state)
{
    (void)state;
    G->attention_forward(0, 4, 8, 2, NULL, NULL, NULL);
    G->attention_forward(2, 0, 8, 2, NULL, NULL, NULL);
    G->attention_backward(0, 4, 8, 2, NULL, NULL, NULL, NULL, NULL);
    G->attention_backward(2, 0, 8, 2, NULL, NULL, NULL, NULL, NULL);
    G->dense_forward(0, 4, 3, NULL, NULL, NULL, NULL, 1);
    char err[256];
    assert_int_equal(bl_cuda_sync(err, sizeof err), 0);
    no_failure();
    G->attention_forward(1, 3, 10, 4, NULL, NULL, NULL);
    assert_int_equal(bl_cuda_check(err, sizeof err), -1);
    assert_non_null(strstr(err, "attention_forward"));
    no_failure();
    G->gemm(0, 0, 2, 2, 3, 1.0f, NULL, 2, NULL, 2, 0.0f, NULL, 2);
    assert_int_equal(bl_cuda_check(err, sizeof err), -1);
    assert_non_null(strstr(err, "bf16"));
    G->gemm(1, 1, 2, 2, 3, 1.0f, NULL, 2, NULL, 2, 0.0f, NULL, 2);
    assert_int_equal(bl_cuda_check(err, sizeof err), -1);
    assert_non_null(strstr(err, "bf16"));
    no_failure();
}

int main(void)
{
    const struct CMUnitTest wiring[] = {
        cmocka_unit_test(test_table),
    };
    if (cmocka_run_group_tests_name("cuda-bf16 table", wiring, NULL, NULL) != 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_empty_and_bad_shapes),
    };
    return run_on_gpu("CUDA bf16 tests", CUDA_TESTS(tests));
}
