/* The CUDA attention group (attention_forward, attention_backward,
 * vocab_xent) against the CPU table on the same random inputs (label gpu).
 * Exits 77 (ctest: skipped) with the reason when no GPU is visible.
 *
 * Tolerances, with u = 2⁻²⁴ and inputs in [−1, 1]. A float product or sum
 * of k terms is off by at most k·u·Σ|terms| (plus u·|result| for a final
 * scale), on each side, in an order of its own (cuBLAS blocks differently
 * from OpenBLAS); exp is within 1 ulp on the host and 2 on the device (an
 * ulp is at most 2u relative); the softmax sums are in double on both
 * sides, so their order matters at 2⁻⁵³. Measured from the inputs, per
 * shape: Sq, the largest Σ_d |q_d·k_d| · scale over the causal scores
 * (scale = 1/sqrt(hs)); Sd, the largest Σ_d |dout_d·v_d|; A, the largest
 * column sum of the CPU's att (>= 1).
 *   scores: e_s = 2·(hs + 1)·u·Sq apart.
 *   att: relative r = 2·e_s (the softmax moves each log by at most twice
 *     the scores' error) + 4·u·Sq (rounding l − m) + 20u (exp, the sum, the
 *     reciprocal and the product, both sides); checked at 2·r·att. Above
 *     the diagonal the GPU's entries are exactly +0.
 *   out = att·v: 2·(r + 2·(T + 1)·u), absolute (Σ att = 1, |v| <= 1).
 *   The backward runs on the CPU's att, so only its own errors count:
 *   datt = dout·v^T: e_d = 2·(hs + 1)·u·Sd apart; the scores' gradient
 *   dS = att·(datt − Σ att·datt) is then within att·e_dS, e_dS = 2·e_d +
 *   10·u·Sd, and |dS| <= 2·att·Sd. So dq = scale·dS·k is within
 *   scale·(e_dS + 4·(T + 1)·u·Sd), dk = scale·dS^T·q within A times that
 *   (a column of att sums to at most A), dv = att^T·dout within
 *   2·(T + 1)·u·A; all of dqkv is checked at twice the sum of dk's and
 *   dv's bounds (which covers dq's, A >= 1), absolute.
 *   vocab_xent: each exp is within 3 ulps (6u) of the CPU's, so the sum of
 *   a row is, and its loss log(sum) − (l − m) is within 6u absolute (l − m
 *   is exact in double); the total is checked at rows·16u. dlogits =
 *   e·(1/sum) (− 1 at the target) is within 16u·p of the CPU's (e, the
 *   reciprocal, the product), checked at 32u·(|cpu| + 1).
 * Every run of the GPU's kernels gives the same bits (fixed reduction
 * orders, no atomics), checked by running each case twice. */
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

#define U 0x1.0p-24

static const bl_kernels_t *G = &bl_cuda_kernels;
static const bl_kernels_t *C = &bl_cpu_kernels;

/* A device buffer of n floats, every one a NaN (all bits set), so an
 * entry a kernel fails to write shows. */
static float *nans(size_t n)
{
    void *d = NULL;
    assert_int_equal(cudaMalloc(&d, (n == 0 ? 1 : n) * sizeof(float)), cudaSuccess);
    assert_int_equal(cudaMemset(d, 0xff, (n == 0 ? 1 : n) * sizeof(float)), cudaSuccess);
    return d;
}

static int is_plus_zero(float x)
{
    return x == 0.0f && !signbit(x);
}

/* The measured magnitudes of the top comment: Sq, Sd (over the causal
 * pairs j <= i of every head) and A (column sums of att). */
static void magnitudes(int B, int T, int NH, int hs, const float *qkv, const float *dout,
                       const float *att, double *sq, double *sd, double *a)
{
    const int Cc = NH * hs;
    const size_t C3 = 3 * (size_t)Cc;
    const double scale = 1.0 / sqrt((double)hs);
    *sq = 0.0;
    *sd = 0.0;
    *a = 0.0;
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (size_t)b * (size_t)T * C3 + (size_t)h * (size_t)hs;
            const float *dbase = dout + (size_t)b * (size_t)T * (size_t)Cc + (size_t)h * (size_t)hs;
            const float *p = att + ((size_t)b * (size_t)NH + (size_t)h) * (size_t)T * (size_t)T;
            for (int i = 0; i < T; i++) {
                const float *q = base + (size_t)i * C3, *g = dbase + (size_t)i * (size_t)Cc;
                for (int j = 0; j <= i; j++) {
                    const float *k = base + (size_t)j * C3 + Cc, *v = k + Cc;
                    double s1 = 0.0, s2 = 0.0;
                    for (int d = 0; d < hs; d++) {
                        s1 += fabs((double)q[d] * (double)k[d]);
                        s2 += fabs((double)g[d] * (double)v[d]);
                    }
                    *sq = fmax(*sq, s1 * scale);
                    *sd = fmax(*sd, s2);
                }
            }
            for (int j = 0; j < T; j++) {
                double col = 0.0;
                for (int i = 0; i < T; i++) {
                    col += p[(size_t)i * (size_t)T + (size_t)j];
                }
                *a = fmax(*a, col);
            }
        }
    }
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
    float *again = host(natt > nqkv ? natt : nqkv, 0, 0);
    float *d_qkv = up(qkv, nqkv * 4), *d_dout = up(dout, nout * 4);
    float *d_out = nans(nout), *d_att = nans(natt), *d_dqkv = nans(nqkv);
    float *d_out2 = nans(nout), *d_att2 = nans(natt), *d_dqkv2 = nans(nqkv);
    float *d_scratch = nans((size_t)T * (size_t)T);

    C->attention_forward(B, T, Cc, NH, qkv, out, att);
    G->attention_forward(B, T, Cc, NH, d_qkv, d_out, d_att);
    down(gatt, d_att, natt);
    down(gout, d_out, nout);
    no_failure();

    double sq, sd, a;
    magnitudes(B, T, NH, hs, qkv, dout, att, &sq, &sd, &a);
    const double scale = 1.0 / sqrt((double)hs);
    const double e_s = 2.0 * (hs + 1) * U * sq;
    const double r_att = 2.0 * e_s + 4.0 * U * sq + 20.0 * U;
    const double tol_out = 2.0 * (r_att + 2.0 * (T + 1) * U);
    const double e_d = 2.0 * (hs + 1) * U * sd;
    const double e_ds = 2.0 * e_d + 10.0 * U * sd;
    const double tol_dqkv =
        2.0 * (scale * a * (e_ds + 4.0 * (T + 1) * U * sd) + 2.0 * (T + 1) * U * a);

    char what[96];
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
    snprintf(what, sizeof what, "out B=%d T=%d NH=%d hs=%d", B, T, NH, hs);
    check_close(gout, out, nout, tol_out, 0.0, what);

    /* The same bits on a second run (into other buffers, also NaN). */
    G->attention_forward(B, T, Cc, NH, d_qkv, d_out2, d_att2);
    down(again, d_att2, natt);
    assert_memory_equal(again, gatt, natt * sizeof *gatt);
    down(again, d_out2, nout);
    assert_memory_equal(again, gout, nout * sizeof *gout);

    /* The backward on the CPU's forward (its att), so only the backward's
     * own rounding counts; dqkv starts as NaNs, all of it overwritten. */
    assert_int_equal(cudaMemcpy(d_att, att, natt * 4, cudaMemcpyHostToDevice), cudaSuccess);
    C->attention_backward(B, T, Cc, NH, dout, qkv, att, dqkv, scratch);
    G->attention_backward(B, T, Cc, NH, d_dout, d_qkv, d_att, d_dqkv, d_scratch);
    down(gdqkv, d_dqkv, nqkv);
    no_failure();
    snprintf(what, sizeof what, "dqkv B=%d T=%d NH=%d hs=%d", B, T, NH, hs);
    check_close(gdqkv, dqkv, nqkv, tol_dqkv, 0.0, what);
    G->attention_backward(B, T, Cc, NH, d_dout, d_qkv, d_att, d_dqkv2, d_scratch);
    down(again, d_dqkv2, nqkv);
    no_failure();
    assert_memory_equal(again, gdqkv, nqkv * sizeof *gdqkv);

    float *bufs[] = {qkv, dout, out, att, dqkv, scratch, gout, gatt, gdqkv, again};
    FREE_HOSTS(bufs);
    float *dbufs[] = {d_qkv, d_dout, d_out, d_att, d_dqkv, d_out2, d_att2, d_dqkv2, d_scratch};
    FREE_DEVICES(dbufs);
}

/* Every combination of B 1..3, T 1, 7, 64, NH 1, 2, 12 and hs 1, 8, 64
 * (C = NH·hs): one query, a few, and GPT-2's head size; the context's
 * scratch grows and is reused across them. */
static void test_attention(void **state)
{
    (void)state;
    for_attention_shapes(3, attention_case);
}

/* Empty shapes launch nothing and touch no pointer; a C that is not a
 * multiple of NH (the caller's bug) does nothing either, and is reported
 * by the check, naming the kernel. */
static void test_empty_and_bad_shapes(void **state)
{
    (void)state;
    G->attention_forward(0, 4, 8, 2, NULL, NULL, NULL);
    G->attention_forward(2, 0, 8, 2, NULL, NULL, NULL);
    G->attention_backward(0, 4, 8, 2, NULL, NULL, NULL, NULL, NULL);
    G->attention_backward(2, 0, 8, 2, NULL, NULL, NULL, NULL, NULL);
    assert_true(G->vocab_xent(0, 10, 16, NULL, NULL, NULL) == 0.0);
    char err[256];
    assert_int_equal(bl_cuda_sync(err, sizeof err), 0);
    no_failure();
    G->attention_backward(1, 3, 10, 4, NULL, NULL, NULL, NULL, NULL);
    assert_int_equal(bl_cuda_check(err, sizeof err), -1);
    assert_non_null(strstr(err, "attention_backward"));
    no_failure();
}

static void vocab_case(int rows, int V, int Vp)
{
    const size_t n = (size_t)rows * (size_t)Vp;
    float *logits = host(n, -8, 8);
    int32_t *targets = malloc((size_t)rows * sizeof *targets);
    assert_non_null(targets);
    for (int r = 0; r < rows; r++) {
        targets[r] = (int32_t)((int)(uniform(0, 1) * (float)V) % V);
        for (int j = V; j < Vp; j++) {
            logits[(size_t)r * (size_t)Vp + (size_t)j] = NAN; /* never read */
        }
    }
    targets[0] = 0;
    targets[rows - 1] = V - 1;
    float *dl = host(n, 0, 0), *got = host(n, 0, 0);
    float *d_logits = up(logits, n * 4), *d_dl = nans(n);
    int32_t *d_targets = up(targets, (size_t)rows * sizeof *targets);

    const double cl = C->vocab_xent(rows, V, Vp, logits, targets, dl);
    const double gl = G->vocab_xent(rows, V, Vp, d_logits, d_targets, d_dl);
    no_failure();
    assert_true(isfinite(gl));
    if (!(fabs(gl - cl) <= rows * 16.0 * U)) {
        fail_msg("vocab_xent rows=%d V=%d Vp=%d: gpu %.17g, cpu %.17g", rows, V, Vp, gl, cl);
    }
    down(got, d_dl, n);
    char what[96];
    snprintf(what, sizeof what, "vocab_xent dlogits rows=%d V=%d Vp=%d", rows, V, Vp);
    for (int r = 0; r < rows; r++) {
        const size_t at = (size_t)r * (size_t)Vp;
        check_close(got + at, dl + at, (size_t)V, 32.0 * U, 32.0 * U, what);
        for (int j = V; j < Vp; j++) {
            if (!is_plus_zero(got[at + (size_t)j])) {
                fail_msg("%s: row %d, padding column %d is %.9g, not 0", what, r, j,
                         (double)got[at + (size_t)j]);
            }
        }
    }

    /* Evaluation (no gradient) gives the same loss, and every run the
     * same bits, the gradient too. */
    const double el = G->vocab_xent(rows, V, Vp, d_logits, d_targets, NULL);
    assert_memory_equal(&el, &gl, sizeof el);
    assert_int_equal(cudaMemset(d_dl, 0xff, n * sizeof(float)), cudaSuccess);
    const double again = G->vocab_xent(rows, V, Vp, d_logits, d_targets, d_dl);
    assert_memory_equal(&again, &gl, sizeof again);
    down(dl, d_dl, n);
    assert_memory_equal(dl, got, n * sizeof *got);
    no_failure();

    cudaFree(d_logits);
    cudaFree(d_dl);
    cudaFree(d_targets);
    free(logits);
    free(targets);
    free(dl);
    free(got);
}

/* One class (loss 0, gradient 0), no padding, padding (filled with NaNs,
 * which must never be read), and GPT-2's vocabulary padded to 50304. */
static void test_vocab_xent(void **state)
{
    (void)state;
    static const int shapes[][2] = {{1, 1}, {1, 8}, {1000, 1000}, {1000, 1024}, {50257, 50304}};
    static const int row_counts[] = {1, 7, 300};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (size_t r = 0; r < sizeof row_counts / sizeof row_counts[0]; r++) {
            vocab_case(row_counts[r], shapes[s][0], shapes[s][1]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_empty_and_bad_shapes),
        cmocka_unit_test(test_vocab_xent),
    };
    return run_on_gpu("CUDA attention tests", CUDA_TESTS(tests));
}
