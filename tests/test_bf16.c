/* Unit tests of bf16 autocast on the CPU (kernels.h's bl_cpu_bf16_kernels,
 * the mirror device's twin of the GPU's bf16 products):
 *   - bl_bf16_round: ties to even, the carry into the exponent, overflow to
 *     infinity, NaN, signed zeros and subnormals, against bit patterns
 *     worked out by hand; on random floats, the result is a bf16 (low 16
 *     bits 0), a fixed point, and within half a bf16 ulp;
 *   - gemm: bit for bit the fp32 gemm on contiguous rounded copies of the
 *     operands (the contract), for every transpose pair with padded row
 *     strides, alpha and beta; within fp32 accumulation (1e-5 relative to
 *     Σ|a||b|) of a double reference on rounded operands; not equal to the
 *     fp32 gemm on the raw operands (the rounding happens), yet within
 *     bf16's error (2^-7 relative to Σ|a||b|); empty products as fp32's;
 *   - the dense layer: forward and backward bit for bit the fp32 kernels
 *     on rounded x, W and dy, with db the fp32 column sums of the unrounded
 *     (masked) dy, with and without ReLU, overwriting and accumulating;
 *   - attention: the probabilities within 1e-5 of a double softmax of the
 *     scores of rounded q and k; the output within fp32 accumulation of
 *     Σ round(att) · round(v) (from the kernel's own att, so no bf16
 *     rounding boundary separates kernel and reference); dv likewise from
 *     round(att) and round(dout); dq and dk within bf16's error of the fp32
 *     kernel's; and the output differs from fp32's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16_round.h"
#include "kernels.h"
#include "test_support.h"

static const bl_kernels_t *F = &bl_cpu_kernels;
static const bl_kernels_t *H = &bl_cpu_bf16_kernels;

/* fp32 accumulation's bound relative to Σ|a||b|, and bf16 rounding's: each
 * operand is off by at most 2^-9 relative, a product by about 2^-8. */
#define ACC_RTOL  1e-5
#define BF16_RTOL (1.0 / 128.0)

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float *floats(size_t count)
{
    float *p = calloc(count + 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static double *doubles(size_t count)
{
    double *p = calloc(count + 1, sizeof(double));
    assert_non_null(p);
    return p;
}

/* A copy of a (count) with every element rounded to bf16. */
static float *rounded(const float *a, size_t count)
{
    float *r = floats(count);
    for (size_t i = 0; i < count; i++) {
        r[i] = bl_bf16_round(a[i]);
    }
    return r;
}

static void assert_same_bits(const float *got, const float *want, size_t count, const char *what)
{
    for (size_t i = 0; i < count; i++) {
        if (to_bits(got[i]) != to_bits(want[i])) {
            fail_msg("%s[%zu]: got %.9g (0x%08x), want %.9g (0x%08x)", what, i, (double)got[i],
                     to_bits(got[i]), (double)want[i], to_bits(want[i]));
        }
    }
}

/* ---- rounding ---------------------------------------------------------- */

static void test_round_cases(void **state)
{
    (void)state;
    static const struct {
        uint32_t in, out;
        const char *what;
    } cases[] = {
        {0x3f800000u, 0x3f800000u, "1 stays"},
        {0x3f808000u, 0x3f800000u, "a tie rounds to the even 1"},
        {0x3f818000u, 0x3f820000u, "a tie rounds up to the even neighbour"},
        {0x3f808001u, 0x3f810000u, "above the half rounds up"},
        {0x3f807fffu, 0x3f800000u, "below the half rounds down"},
        {0xbf818000u, 0xbf820000u, "a negative tie to even"},
        {0x3fffffffu, 0x40000000u, "the carry reaches the exponent"},
        {0x7f7fffffu, 0x7f800000u, "FLT_MAX overflows to infinity"},
        {0x7f7f7fffu, 0x7f7f0000u, "the largest bf16 stays finite"},
        {0x7f800000u, 0x7f800000u, "infinity stays"},
        {0xff800000u, 0xff800000u, "minus infinity stays"},
        {0x00000000u, 0x00000000u, "zero"},
        {0x80000000u, 0x80000000u, "minus zero keeps its sign"},
        {0x00018000u, 0x00020000u, "a subnormal tie to even"},
        {0x00008000u, 0x00000000u, "the smallest tie to zero"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint32_t got = to_bits(bl_bf16_round(from_bits(cases[i].in)));
        if (got != cases[i].out) {
            fail_msg("%s: 0x%08x gave 0x%08x, want 0x%08x", cases[i].what, cases[i].in, got,
                     cases[i].out);
        }
        assert_int_equal(bl_bf16_bits(from_bits(cases[i].in)), cases[i].out >> 16);
    }
    /* NaNs stay NaNs (quiet, sign kept), a signalling one whose payload
     * lies in the dropped bits included. */
    const uint32_t nans[] = {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        const float r = bl_bf16_round(from_bits(nans[i]));
        assert_true(isnan(r));
        assert_int_equal(to_bits(r) >> 31, nans[i] >> 31);
    }
}

static void test_round_random(void **state)
{
    (void)state;
    lcg_t g;
    lcg_seed(&g, 7);
    for (int i = 0; i < 100000; i++) {
        /* Finite floats of every exponent but the top one. */
        uint32_t u = lcg_next(&g);
        if (((u >> 23) & 0xffu) >= 0xfeu) {
            u &= ~(1u << 30);
        }
        const float x = from_bits(u), r = bl_bf16_round(x);
        assert_int_equal(to_bits(r) & 0xffffu, 0);
        assert_int_equal(to_bits(bl_bf16_round(r)), to_bits(r));
        if (isnormal(x)) {
            assert_true(fabs((double)r - (double)x) <= ldexp(fabs((double)x), -8));
        }
    }
}

/* ---- gemm -------------------------------------------------------------- */

/* A (rows, cols) operand stored with row stride ld >= cols, padding NaN (a
 * kernel that reads it fails), values in [-1, 1). */
static float *operand(lcg_t *g, int rows, int cols, int ld)
{
    float *a = floats((size_t)rows * (size_t)ld);
    fill_value(a, (size_t)rows * (size_t)ld, NAN);
    for (int i = 0; i < rows; i++) {
        fill_uniform(g, a + (size_t)i * (size_t)ld, (size_t)cols, -1.0f, 1.0f);
    }
    return a;
}

/* A contiguous rounded copy of a stored (rows, cols) operand of stride ld. */
static float *rounded_packed(const float *a, int rows, int cols, int ld)
{
    float *r = floats((size_t)rows * (size_t)cols);
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < cols; j++) {
            r[(size_t)i * (size_t)cols + (size_t)j] = bl_bf16_round(a[(size_t)i * (size_t)ld + j]);
        }
    }
    return r;
}

/* Element (i, j) of op(X) for X stored with stride ld. */
static double at(const float *x, int trans, int ld, int i, int j)
{
    return trans ? x[(size_t)j * (size_t)ld + (size_t)i] : x[(size_t)i * (size_t)ld + (size_t)j];
}

static void check_gemm(int ta, int tb, int m, int n, int k)
{
    lcg_t g;
    lcg_seed(&g, (uint64_t)(ta * 2 + tb + 16 * m + 256 * n + 4096 * k));
    const int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    const int lda = ac + 3, ldb = bc + 2, ldc = n + 1;
    const float alpha = 0.75f, beta = 0.5f;
    float *a = operand(&g, ar, ac, lda), *b = operand(&g, br, bc, ldb);
    float *c0 = operand(&g, m, n, ldc);
    float *got = floats((size_t)m * (size_t)ldc), *want = floats((size_t)m * (size_t)ldc);
    float *raw = floats((size_t)m * (size_t)ldc);
    const size_t cbytes = (size_t)m * (size_t)ldc * sizeof(float);
    memcpy(got, c0, cbytes);
    memcpy(want, c0, cbytes);
    memcpy(raw, c0, cbytes);
    H->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, got, ldc);

    /* The contract: the fp32 product of the rounded operands, bit for bit. */
    float *ra = rounded_packed(a, ar, ac, lda), *rb = rounded_packed(b, br, bc, ldb);
    F->gemm(ta, tb, m, n, k, alpha, ra, ac, rb, bc, beta, want, ldc);
    assert_same_bits(got, want, (size_t)m * (size_t)ldc, "bf16 gemm against fp32 on rounded");

    /* A double reference on the rounded operands, and fp32 on raw ones. */
    F->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, raw, ldc);
    int differs = 0;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double sum = 0.0, mag = 0.0;
            for (int p = 0; p < k; p++) {
                const double x = at(ra, ta, ac, i, p), y = at(rb, tb, bc, p, j);
                sum += x * y;
                mag += fabs(x * y);
            }
            const size_t ij = (size_t)i * (size_t)ldc + (size_t)j;
            const double ref = alpha * sum + beta * (double)c0[ij];
            const double scale = fabs(alpha) * mag + fabs(beta * (double)c0[ij]);
            check_scalar(got[ij], ref, ACC_RTOL * scale + 1e-30, 0.0, "bf16 gemm against double");
            check_scalar(got[ij], raw[ij], BF16_RTOL * scale + 1e-30, 0.0,
                         "bf16 gemm against fp32");
            differs += got[ij] != raw[ij];
        }
    }
    assert_true(differs > 0);
    free(a), free(b), free(c0), free(got), free(want), free(raw), free(ra), free(rb);
}

static void test_gemm(void **state)
{
    (void)state;
    static const int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {16, 33, 64}, {40, 9, 130}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int t = 0; t < 4; t++) {
            check_gemm(t >> 1, t & 1, shapes[s][0], shapes[s][1], shapes[s][2]);
        }
    }
}

static void test_gemm_empty(void **state)
{
    (void)state;
    /* k = 0: C = beta · C, with beta 0 giving exact zeros over NaN. */
    float c[6] = {1, 2, 3, NAN, 5, 6}, d[6] = {1, 2, 3, 4, 5, 6};
    H->gemm(0, 0, 2, 3, 0, 1.0f, NULL, 1, NULL, 1, 0.0f, c, 3);
    H->gemm(0, 0, 2, 3, 0, 1.0f, NULL, 1, NULL, 1, 2.0f, d, 3);
    for (int i = 0; i < 6; i++) {
        assert_true(c[i] == 0.0f);
        assert_true(d[i] == 2.0f * (float)(i + 1));
    }
    /* m = 0 or n = 0 writes nothing. */
    H->gemm(0, 0, 0, 3, 2, 1.0f, d, 2, d, 3, 0.0f, c, 3);
    assert_true(c[0] == 0.0f);
}

/* ---- the dense layer --------------------------------------------------- */

static void check_dense(int relu, int accumulate)
{
    enum { BATCH = 9, IN = 13, OUT = 7 };
    lcg_t g;
    lcg_seed(&g, (uint64_t)(11 + relu + 2 * accumulate));
    float *x = floats(BATCH * IN), *w = floats(OUT * IN), *b = floats(OUT);
    fill_uniform(&g, x, BATCH * IN, -1.0f, 1.0f);
    fill_uniform(&g, w, OUT * IN, -1.0f, 1.0f);
    fill_uniform(&g, b, OUT, -1.0f, 1.0f);
    float *rx = rounded(x, BATCH * IN), *rw = rounded(w, OUT * IN);

    float *y = floats(BATCH * OUT), *yref = floats(BATCH * OUT);
    H->dense_forward(BATCH, IN, OUT, x, w, b, y, relu);
    F->dense_forward(BATCH, IN, OUT, rx, rw, b, yref, relu);
    assert_same_bits(y, yref, BATCH * OUT, "dense forward");

    /* The backward: dW and dx from rounded dy, x and W; db from the fp32
     * dy (masked by y > 0 with ReLU). */
    float *dy = floats(BATCH * OUT), *dy_ref = floats(BATCH * OUT), *dy_db = floats(BATCH * OUT);
    fill_uniform(&g, dy, BATCH * OUT, -1.0f, 1.0f);
    memcpy(dy_db, dy, BATCH * OUT * sizeof(float));
    for (int i = 0; i < BATCH * OUT; i++) {
        dy_ref[i] = bl_bf16_round(dy[i]);
    }
    float *dw = floats(OUT * IN), *db = floats(OUT), *dx = floats(BATCH * IN);
    float *dw_ref = floats(OUT * IN), *db_ref = floats(OUT), *dx_ref = floats(BATCH * IN);
    float *scratch_w = floats(OUT * IN), *scratch_x = floats(BATCH * IN);
    fill_uniform(&g, dw, OUT * IN, -1.0f, 1.0f);
    fill_uniform(&g, db, OUT, -1.0f, 1.0f);
    memcpy(dw_ref, dw, OUT * IN * sizeof(float));
    memcpy(db_ref, db, OUT * sizeof(float));
    H->dense_backward(BATCH, IN, OUT, x, w, y, dy, dx, dw, db, relu, accumulate);
    F->dense_backward(BATCH, IN, OUT, rx, rw, yref, dy_ref, dx_ref, dw_ref, scratch_w, relu,
                      accumulate);
    /* db: the fp32 kernel on the raw dy (its dW and dx are not wanted). */
    F->dense_backward(BATCH, IN, OUT, x, w, yref, dy_db, scratch_x, scratch_w, db_ref, relu,
                      accumulate);
    assert_same_bits(dw, dw_ref, OUT * IN, "dense dW");
    assert_same_bits(dx, dx_ref, BATCH * IN, "dense dx");
    assert_same_bits(db, db_ref, OUT, "dense db");
    float *all[] = {x,     w,  b,  rx, rw,     y,      yref,   dy,        dy_ref,
                    dy_db, dw, db, dx, dw_ref, db_ref, dx_ref, scratch_w, scratch_x};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        free(all[i]);
    }
}

static void test_dense(void **state)
{
    (void)state;
    for (int relu = 0; relu < 2; relu++) {
        for (int accumulate = 0; accumulate < 2; accumulate++) {
            check_dense(relu, accumulate);
        }
    }
}

/* ---- attention --------------------------------------------------------- */

static void check_attention(int B, int T, int C, int NH)
{
    const int hs = C / NH, C3 = 3 * C;
    const double scale = 1.0 / sqrt((double)hs);
    const size_t nqkv = (size_t)B * T * C3, nout = (size_t)B * T * C, natt = (size_t)B * NH * T * T;
    lcg_t g;
    lcg_seed(&g, (uint64_t)(B * 1000 + T * 100 + C * 10 + NH));
    float *qkv = floats(nqkv), *out = floats(nout), *att = floats(natt);
    float *out32 = floats(nout), *att32 = floats(natt);
    fill_uniform(&g, qkv, nqkv, -2.0f, 2.0f);
    H->attention_forward(B, T, C, NH, qkv, out, att);
    F->attention_forward(B, T, C, NH, qkv, out32, att32);

    float *dout = floats(nout), *dqkv = floats(nqkv), *dqkv32 = floats(nqkv);
    float *scratch = floats((size_t)T * T);
    fill_uniform(&g, dout, nout, -1.0f, 1.0f);
    H->attention_backward(B, T, C, NH, dout, qkv, att, dqkv, scratch);
    F->attention_backward(B, T, C, NH, dout, qkv, att32, dqkv32, scratch);

    double *p = doubles((size_t)T);
    int differs = 0;
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs, *k = q + C, *v = q + 2 * C;
            const float *a = att + ((size_t)b * NH + h) * T * T;
            for (int i = 0; i < T; i++) {
                /* The probabilities: a double softmax of rounded q · k. */
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j <= i; j++) {
                    double s = 0.0;
                    for (int d = 0; d < hs; d++) {
                        s += (double)bl_bf16_round(q[(size_t)i * C3 + d]) *
                             (double)bl_bf16_round(k[(size_t)j * C3 + d]);
                    }
                    p[j] = s * scale;
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = 0; j <= i; j++) {
                    p[j] = exp(p[j] - mx);
                    sum += p[j];
                }
                for (int j = 0; j < T; j++) {
                    const double want = j <= i ? p[j] / sum : 0.0;
                    check_scalar(a[(size_t)i * T + j], want, 1e-6, 1e-5, "attention att");
                }
                /* The output from the kernel's own att. */
                for (int d = 0; d < hs; d++) {
                    double o = 0.0, mag = 0.0;
                    for (int j = 0; j <= i; j++) {
                        const double t = (double)bl_bf16_round(a[(size_t)i * T + j]) *
                                         (double)bl_bf16_round(v[(size_t)j * C3 + d]);
                        o += t;
                        mag += fabs(t);
                    }
                    const size_t at_o = ((size_t)b * T + i) * C + (size_t)h * hs + d;
                    check_scalar(out[at_o], o, ACC_RTOL * mag + 1e-30, 0.0, "attention out");
                    check_scalar(out[at_o], out32[at_o], BF16_RTOL * mag * 2.0 + 1e-6, 0.0,
                                 "attention out against fp32");
                    differs += out[at_o] != out32[at_o];
                }
            }
            /* dv (T, hs) = Σ_i round(att[i][j]) · round(dout[i]). */
            for (int j = 0; j < T; j++) {
                for (int d = 0; d < hs; d++) {
                    double s = 0.0, mag = 0.0;
                    for (int i = j; i < T; i++) {
                        const double t = (double)bl_bf16_round(a[(size_t)i * T + j]) *
                                         (double)bl_bf16_round(
                                             dout[((size_t)b * T + i) * C + (size_t)h * hs + d]);
                        s += t;
                        mag += fabs(t);
                    }
                    const size_t at_v =
                        ((size_t)b * T + j) * C3 + 2 * (size_t)C + (size_t)h * hs + d;
                    check_scalar(dqkv[at_v], s, ACC_RTOL * mag + 1e-30, 0.0, "attention dv");
                }
            }
        }
    }
    assert_true(differs > 0);
    /* dq and dk: within bf16's error of fp32's, relative to the largest. */
    double big = 0.0;
    for (size_t i = 0; i < nqkv; i++) {
        big = fabs((double)dqkv32[i]) > big ? fabs((double)dqkv32[i]) : big;
    }
    for (size_t i = 0; i < nqkv; i++) {
        check_scalar(dqkv[i], dqkv32[i], 4.0 * BF16_RTOL * big, 0.0, "attention dqkv");
    }
    float *all[] = {qkv, out, att, out32, att32, dout, dqkv, dqkv32, scratch};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        free(all[i]);
    }
    free(p);
}

static void test_attention(void **state)
{
    (void)state;
    check_attention(2, 5, 12, 3);
    check_attention(1, 1, 8, 2);
    check_attention(1, 17, 32, 4);
}

/* The other members are the fp32 table's. */
static void test_table(void **state)
{
    (void)state;
    assert_ptr_equal(H->layernorm_forward, F->layernorm_forward);
    assert_ptr_equal(H->adamw_update, F->adamw_update);
    assert_ptr_equal(H->vocab_xent, F->vocab_xent);
    assert_ptr_equal(H->embedding_backward, F->embedding_backward);
    assert_ptr_not_equal(H->gemm, F->gemm);
    assert_string_equal(H->name, "cpu-bf16");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_cases), cmocka_unit_test(test_round_random),
        cmocka_unit_test(test_gemm),        cmocka_unit_test(test_gemm_empty),
        cmocka_unit_test(test_dense),       cmocka_unit_test(test_attention),
        cmocka_unit_test(test_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
