/* The CUDA kernel table's element-wise transformer kernels (embedding,
 * layer normalisation, GELU, AdamW, the sum of squares, softmax of rows)
 * against the CPU table on the same random inputs (label gpu). Exits 77
 * (ctest: skipped) with the reason when no GPU is visible.
 *
 * Tolerances. Element-wise results allow a few ulps, 1e-5 relative (plus
 * a tiny absolute term where a value may be near 0). Most of these
 * kernels promise more, the CPU's bits (cuda/ops_transformer.h): the
 * embedding (the forward is one addition, the backward adds each table
 * row's gradients in the CPU's (b, t) order), layer normalisation's out,
 * mean, rstd and dinp (the CPU's double sums in the CPU's lane order, no
 * FMAs), GELU and AdamW (the CPU's per-element code, kernels/
 * gelu_approx.h and kernels/adamw_step.h, built without FMAs); those are
 * checked bit for bit after the tolerance check. Column sums over R rows
 * (layernorm's dweight and dbias) are float sums in another order: each
 * side is within R·2⁻²⁴·Σ|terms| of the exact sum, so the check allows
 * 2·(R + 1)·2⁻²⁴·(|start| + Σ|terms|) per column, plus 1e-6 absolute, as
 * the gemm check does. The softmax's sums are in double in a fixed tree
 * and the device's expf is within 2 ulps: 1e-5 relative on y, and
 * 1e-5·|y|·(|dy| + |Σ y·dy|) on the backward's dx. The sum of squares is
 * in double in another order: 1e-12 relative. Determinism: two runs of
 * embedding_backward, layernorm_backward and sum_squares on the same
 * inputs give the same bits. Accumulation: embedding_backward's tables
 * and layernorm_backward's dweight and dbias start non-zero (they add);
 * layernorm_backward's dinp starts as NaN with accumulate 0 (overwritten,
 * never read) and non-zero with accumulate 1 (added to). */
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

#define ELEM_TOL  1e-5
#define SUMSQ_TOL 1e-12

static const bl_kernels_t *GPU = &bl_cuda_kernels;
static const bl_kernels_t *CPU = &bl_cpu_kernels;

/* n floats, each NaN: a start that fails every check unless the kernel
 * overwrites it. */
static float *nans(size_t n)
{
    float *a = host(n, 0, 0);
    for (size_t i = 0; i < n; i++) {
        a[i] = NAN;
    }
    return a;
}

/* A host copy of n floats. */
static float *copy(const float *a, size_t n)
{
    float *b = malloc((n == 0 ? 1 : n) * sizeof *b);
    assert_non_null(b);
    memcpy(b, a, n * sizeof *b);
    return b;
}

/* Overwrites the device's n floats at d with h's (ordered after the
 * kernels queued before: the context's stream waits for the legacy one,
 * and the copy waits for the GPU first). */
static void reset(void *d, const float *h, size_t n)
{
    char err[256];
    assert_int_equal(bl_cuda_sync(err, sizeof err), 0);
    assert_int_equal(cudaMemcpy(d, h, n * sizeof *h, cudaMemcpyHostToDevice), cudaSuccess);
}

/* The CPU's bits, where the kernel promises them (after check_close, so a
 * large error is reported as such first). */
static void check_bits(const float *gpu, const float *cpu, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&gpu[i], &cpu[i], sizeof gpu[i]) != 0) {
            fail_msg("%s[%zu]: gpu %.9g, cpu %.9g (not the CPU's bits)", what, i, (double)gpu[i],
                     (double)cpu[i]);
        }
    }
}

static void free_all(void **h, size_t nh, void **d, size_t nd)
{
    for (size_t i = 0; i < nh; i++) {
        free(h[i]);
    }
    for (size_t i = 0; i < nd; i++) {
        cudaFree(d[i]);
    }
}

/* ---- embedding ---- */

/* Tokens in [0, V), a third of them from five fixed ones (0, V − 1 and
 * three between) when `repeats`, so a token occurs many times. */
static void embedding_case(int B, int T, int C, int V, int maxT, int repeats)
{
    const size_t N = (size_t)B * (size_t)T, nout = N * (size_t)C;
    const size_t nwte = (size_t)V * (size_t)C, nwpe = (size_t)maxT * (size_t)C;
    int32_t *tokens = malloc(N * sizeof *tokens);
    assert_non_null(tokens);
    for (size_t i = 0; i < N; i++) {
        int32_t tok = (int32_t)(uniform(0, 1) * (float)V);
        if (repeats && i % 3 == 0) {
            tok = (int32_t)((i / 3 % 5) * (size_t)(V - 1) / 4);
        }
        tokens[i] = tok < V ? tok : V - 1;
    }
    float *wte = host(nwte, -1, 1), *wpe = host(nwpe, -1, 1), *out = host(nout, 0, 0);
    const size_t most = nout > nwte ? (nout > nwpe ? nout : nwpe) : (nwte > nwpe ? nwte : nwpe);
    float *got = host(most, 0, 0), *again = host(nwte, 0, 0);
    float *dout = host(nout, -1, 1), *dwte = host(nwte, -1, 1), *dwpe = host(nwpe, -1, 1);
    float *dwte0 = copy(dwte, nwte), *dwpe0 = copy(dwpe, nwpe);
    int32_t *d_tokens = up(tokens, N * sizeof *tokens);
    float *d_wte = up(wte, nwte * 4), *d_wpe = up(wpe, nwpe * 4), *d_out = up(out, nout * 4);
    float *d_dout = up(dout, nout * 4), *d_dwte = up(dwte, nwte * 4), *d_dwpe = up(dwpe, nwpe * 4);
    char what[96];

    GPU->embedding_forward(B, T, C, d_tokens, d_wte, d_wpe, d_out);
    CPU->embedding_forward(B, T, C, tokens, wte, wpe, out);
    down(got, d_out, nout);
    no_failure();
    snprintf(what, sizeof what, "embedding_forward B%d T%d C%d V%d out", B, T, C, V);
    check_close(got, out, nout, 1e-6, ELEM_TOL, what);
    check_bits(got, out, nout, what);

    /* Backward twice from the same start: the same bits, and the CPU's. */
    GPU->embedding_backward(B, T, C, d_tokens, d_dout, d_dwte, d_dwpe);
    CPU->embedding_backward(B, T, C, tokens, dout, dwte, dwpe);
    down(got, d_dwte, nwte);
    no_failure();
    snprintf(what, sizeof what, "embedding_backward B%d T%d C%d V%d dwte", B, T, C, V);
    check_close(got, dwte, nwte, 1e-6, ELEM_TOL, what);
    check_bits(got, dwte, nwte, what);
    reset(d_dwte, dwte0, nwte);
    reset(d_dwpe, dwpe0, nwpe);
    GPU->embedding_backward(B, T, C, d_tokens, d_dout, d_dwte, d_dwpe);
    down(again, d_dwte, nwte);
    no_failure();
    assert_memory_equal(again, got, nwte * sizeof *got);
    down(got, d_dwpe, nwpe);
    snprintf(what, sizeof what, "embedding_backward B%d T%d C%d V%d dwpe", B, T, C, V);
    check_close(got, dwpe, nwpe, 1e-6, ELEM_TOL, what);
    check_bits(got, dwpe, nwpe, what); /* rows t >= T untouched, too */

    void *h[] = {tokens, wte, wpe, out, got, again, dout, dwte, dwpe, dwte0, dwpe0};
    void *d[] = {d_tokens, d_wte, d_wpe, d_out, d_dout, d_dwte, d_dwpe};
    free_all(h, sizeof h / sizeof h[0], d, sizeof d / sizeof d[0]);
}

static void test_embedding(void **state)
{
    (void)state;
    embedding_case(1, 1, 1, 1, 1, 0);        /* one token */
    embedding_case(2, 5, 3, 7, 9, 1);        /* maxT > T: wpe rows t >= T stay */
    embedding_case(3, 7, 1, 4, 7, 1);        /* C = 1, four tokens over 21 positions */
    embedding_case(2, 33, 768, 300, 40, 1);  /* GPT-2's width */
    embedding_case(4, 64, 96, 50257, 64, 1); /* GPT-2's vocabulary */
}

/* ---- layer normalisation ---- */

/* Rows around `offset` (a large mean checks the shifted sums). */
static void layernorm_case(int rows, int C, float offset)
{
    const size_t n = (size_t)rows * (size_t)C, nc = (size_t)C, nr = (size_t)rows;
    float *x = host(n, offset - 1, offset + 1), *w = host(nc, 0.5f, 1.5f), *b = host(nc, -1, 1);
    float *y = host(n, 0, 0), *mean = host(nr, 0, 0), *rstd = host(nr, 0, 0);
    float *got = host(n, 0, 0), *again = host(n, 0, 0);
    float *d_x = up(x, n * 4), *d_w = up(w, nc * 4), *d_b = up(b, nc * 4);
    float *d_y = up(y, n * 4), *d_mean = up(mean, nr * 4), *d_rstd = up(rstd, nr * 4);
    float *unset = nans(n);
    char what[96];

    GPU->layernorm_forward(rows, C, d_x, d_w, d_b, d_y, d_mean, d_rstd);
    CPU->layernorm_forward(rows, C, x, w, b, y, mean, rstd);
    down(got, d_y, n);
    no_failure();
    snprintf(what, sizeof what, "layernorm_forward %dx%d out", rows, C);
    check_close(got, y, n, 1e-6, ELEM_TOL, what);
    check_bits(got, y, n, what);
    down(got, d_mean, nr);
    snprintf(what, sizeof what, "layernorm_forward %dx%d mean", rows, C);
    check_close(got, mean, nr, 1e-6, ELEM_TOL, what);
    check_bits(got, mean, nr, what);
    down(got, d_rstd, nr);
    snprintf(what, sizeof what, "layernorm_forward %dx%d rstd", rows, C);
    check_close(got, rstd, nr, 0, ELEM_TOL, what);
    check_bits(got, rstd, nr, what);
    /* Without the statistics (no backward follows): the same out. */
    reset(d_y, unset, n);
    GPU->layernorm_forward(rows, C, d_x, d_w, d_b, d_y, NULL, NULL);
    down(got, d_y, n);
    no_failure();
    snprintf(what, sizeof what, "layernorm_forward %dx%d out without statistics", rows, C);
    check_bits(got, y, n, what);

    /* The backward on the CPU's statistics (the same bits if the forward
     * passed), once overwriting dinp and once adding to it. */
    reset(d_mean, mean, nr);
    reset(d_rstd, rstd, nr);
    for (int acc = 0; acc < 2; acc++) {
        float *dy = host(n, -1, 1), *dinp = host(n, -1, 1);
        float *dw = host(nc, -1, 1), *db = host(nc, -1, 1);
        if (!acc) {
            memcpy(dinp, unset, n * sizeof *dinp); /* overwritten, so never read */
        }
        float *dinp0 = copy(dinp, n), *dw0 = copy(dw, nc), *db0 = copy(db, nc);
        float *gdw = host(nc, 0, 0), *gdb = host(nc, 0, 0);
        float *d_dy = up(dy, n * 4), *d_dinp = up(dinp, n * 4);
        float *d_dw = up(dw, nc * 4), *d_db = up(db, nc * 4);
        GPU->layernorm_backward(rows, C, d_dy, d_x, d_w, d_mean, d_rstd, d_dinp, d_dw, d_db, acc);
        CPU->layernorm_backward(rows, C, dy, x, w, mean, rstd, dinp, dw, db, acc);
        down(got, d_dinp, n);
        down(gdw, d_dw, nc);
        down(gdb, d_db, nc);
        no_failure();
        snprintf(what, sizeof what, "layernorm_backward %dx%d acc %d dinp", rows, C, acc);
        check_close(got, dinp, n, 1e-6, ELEM_TOL, what);
        check_bits(got, dinp, n, what);
        /* The column sums' bound, from the CPU's terms. */
        for (size_t c = 0; c < nc; c++) {
            double sw = fabs((double)dw0[c]), sb = fabs((double)db0[c]);
            for (size_t r = 0; r < nr; r++) {
                const size_t at = r * nc + c;
                const float norm = (x[at] - mean[r]) * rstd[r];
                sw += fabs((double)(norm * dy[at]));
                sb += fabs((double)dy[at]);
            }
            const double k = 2.0 * ((double)rows + 1.0) * 0x1.0p-24;
            if (!(fabs((double)gdw[c] - (double)dw[c]) <= 1e-6 + k * sw)) {
                fail_msg("layernorm_backward %dx%d dweight[%zu]: gpu %.9g, cpu %.9g, bound %.3g",
                         rows, C, c, (double)gdw[c], (double)dw[c], 1e-6 + k * sw);
            }
            if (!(fabs((double)gdb[c] - (double)db[c]) <= 1e-6 + k * sb)) {
                fail_msg("layernorm_backward %dx%d dbias[%zu]: gpu %.9g, cpu %.9g, bound %.3g",
                         rows, C, c, (double)gdb[c], (double)db[c], 1e-6 + k * sb);
            }
        }
        /* Again from the same start: the same bits. */
        reset(d_dinp, dinp0, n);
        reset(d_dw, dw0, nc);
        reset(d_db, db0, nc);
        GPU->layernorm_backward(rows, C, d_dy, d_x, d_w, d_mean, d_rstd, d_dinp, d_dw, d_db, acc);
        down(again, d_dinp, n);
        no_failure();
        assert_memory_equal(again, got, n * sizeof *got);
        down(again, d_dw, nc);
        assert_memory_equal(again, gdw, nc * sizeof *gdw);
        down(again, d_db, nc);
        assert_memory_equal(again, gdb, nc * sizeof *gdb);
        void *h[] = {dy, dinp, dw, db, dinp0, dw0, db0, gdw, gdb};
        void *d[] = {d_dy, d_dinp, d_dw, d_db};
        free_all(h, sizeof h / sizeof h[0], d, sizeof d / sizeof d[0]);
    }
    void *h[] = {x, w, b, y, mean, rstd, got, again, unset};
    void *d[] = {d_x, d_w, d_b, d_y, d_mean, d_rstd};
    free_all(h, sizeof h / sizeof h[0], d, sizeof d / sizeof d[0]);
}

static void test_layernorm(void **state)
{
    (void)state;
    layernorm_case(1, 1, 0.0f); /* C = 1: variance 0, out = bias */
    layernorm_case(1, 3, 0.0f); /* fewer columns than the CPU's lanes */
    layernorm_case(7, 3, 0.0f);
    layernorm_case(300, 1, 0.0f);     /* three column chunks, one column */
    layernorm_case(1, 768, 0.0f);     /* one row of GPT-2's width */
    layernorm_case(1037, 768, 0.0f);  /* a partial last chunk of rows */
    layernorm_case(129, 77, 1000.0f); /* a large mean */
}

/* ---- GELU ---- */

static void gelu_case(size_t n)
{
    float *x = host(n, -6, 6), *dy = host(n, -1, 1), *y = host(n, 0, 0), *dx = host(n, 0, 0);
    for (size_t i = 0; i < n; i += 7) {
        x[i] = uniform(-60, 60); /* the exponential's clamps */
    }
    float *got = host(n, 0, 0);
    float *d_x = up(x, n * 4), *d_dy = up(dy, n * 4), *d_y = up(y, n * 4), *d_dx = up(dx, n * 4);
    char what[64];

    GPU->gelu_forward(n, d_x, d_y);
    CPU->gelu_forward(n, x, y);
    down(got, d_y, n);
    no_failure();
    snprintf(what, sizeof what, "gelu_forward %zu", n);
    check_close(got, y, n, 1e-7, ELEM_TOL, what);
    check_bits(got, y, n, what);
    GPU->gelu_backward(n, d_x, d_dy, d_dx);
    CPU->gelu_backward(n, x, dy, dx);
    down(got, d_dx, n);
    no_failure();
    snprintf(what, sizeof what, "gelu_backward %zu", n);
    check_close(got, dx, n, 1e-7, ELEM_TOL, what);
    check_bits(got, dx, n, what);

    /* In place: y = gelu(y) from x, dx = dx · gelu'(x) from dy. */
    reset(d_y, x, n);
    GPU->gelu_forward(n, d_y, d_y);
    down(got, d_y, n);
    no_failure();
    snprintf(what, sizeof what, "gelu_forward in place %zu", n);
    check_bits(got, y, n, what);
    reset(d_dx, dy, n);
    GPU->gelu_backward(n, d_x, d_dx, d_dx);
    down(got, d_dx, n);
    no_failure();
    snprintf(what, sizeof what, "gelu_backward in place %zu", n);
    check_bits(got, dx, n, what);

    void *h[] = {x, dy, y, dx, got};
    void *d[] = {d_x, d_dy, d_y, d_dx};
    free_all(h, sizeof h / sizeof h[0], d, sizeof d / sizeof d[0]);
}

static void test_gelu(void **state)
{
    (void)state;
    gelu_case(1);
    gelu_case(3);
    gelu_case(10007);
    gelu_case((size_t)1 << 20);
}

/* ---- AdamW ---- */

static void adamw_case(size_t n)
{
    float *w = host(n, -1, 1), *m = host(n, 0, 0), *v = host(n, 0, 0), *g = host(n, -3, 3);
    float *got = host(n, 0, 0);
    float *d_w = up(w, n * 4), *d_m = up(m, n * 4), *d_v = up(v, n * 4), *d_g = up(g, n * 4);
    char what[64];
    for (long t = 1; t <= 3; t++) {
        for (size_t i = 0; i < n; i++) {
            g[i] = uniform(-3, 3) * (i % 5 == 0 ? 1e-4f : 1.0f);
        }
        reset(d_g, g, n);
        GPU->adamw_update(n, d_w, d_m, d_v, d_g, 1.0f / 8, 6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, t);
        CPU->adamw_update(n, w, m, v, g, 1.0f / 8, 6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, t);
        /* Bit for bit: replicas on CPUs and GPUs update their own copies
         * of the parameters from the same gradients. */
        down(got, d_w, n);
        no_failure();
        snprintf(what, sizeof what, "adamw_update %zu step %ld w", n, t);
        check_close(got, w, n, 1e-7, ELEM_TOL, what);
        check_bits(got, w, n, what);
        down(got, d_m, n);
        snprintf(what, sizeof what, "adamw_update %zu step %ld m", n, t);
        check_close(got, m, n, 1e-9, ELEM_TOL, what);
        check_bits(got, m, n, what);
        down(got, d_v, n);
        snprintf(what, sizeof what, "adamw_update %zu step %ld v", n, t);
        check_close(got, v, n, 1e-12, ELEM_TOL, what);
        check_bits(got, v, n, what);
    }
    void *h[] = {w, m, v, g, got};
    void *d[] = {d_w, d_m, d_v, d_g};
    free_all(h, sizeof h / sizeof h[0], d, sizeof d / sizeof d[0]);
}

static void test_adamw(void **state)
{
    (void)state;
    adamw_case(1);
    adamw_case(10007);
}

/* ---- sum of squares ---- */

static void sum_squares_case(size_t n)
{
    float *x = host(n, -2, 2);
    float *d_x = up(x, n * 4);
    const double g = GPU->sum_squares(n, d_x);
    no_failure();
    const double c = CPU->sum_squares(n, x);
    if (!(fabs(g - c) <= SUMSQ_TOL * c)) {
        fail_msg("sum_squares %zu: gpu %.17g, cpu %.17g", n, g, c);
    }
    const double again = GPU->sum_squares(n, d_x);
    no_failure();
    assert_memory_equal(&again, &g, sizeof g);
    cudaFree(d_x);
    free(x);
}

static void test_sum_squares(void **state)
{
    (void)state;
    sum_squares_case(1);
    sum_squares_case(3);
    sum_squares_case(1000);
    sum_squares_case(((size_t)1 << 20) + 7); /* more elements than the grid's threads */
    sum_squares_case((size_t)10000019);
}

/* ---- softmax of rows ---- */

static void softmax_case(int rows, int cols)
{
    const size_t n = (size_t)rows * (size_t)cols, nr = (size_t)rows;
    float *x = host(n, -8, 8), *y = host(n, 0, 0), *dy = host(n, -1, 1), *dx = host(n, 0, 0);
    float *got = host(n, 0, 0), *unset = nans(n);
    float *d_x = up(x, n * 4), *d_y = up(y, n * 4), *d_dy = up(dy, n * 4), *d_dx = up(dx, n * 4);
    char what[64];

    GPU->softmax_rows(rows, cols, d_x, d_y);
    CPU->softmax_rows(rows, cols, x, y);
    down(got, d_y, n);
    no_failure();
    snprintf(what, sizeof what, "softmax_rows %dx%d", rows, cols);
    check_close(got, y, n, 1e-12, ELEM_TOL, what);
    /* In place. */
    reset(d_dx, x, n);
    GPU->softmax_rows(rows, cols, d_dx, d_dx);
    down(got, d_dx, n);
    no_failure();
    snprintf(what, sizeof what, "softmax_rows in place %dx%d", rows, cols);
    check_close(got, y, n, 1e-12, ELEM_TOL, what);

    /* The backward on the CPU's y, out of place and in place (dy == dx);
     * the bound scales with |y|·(|dy| + |Σ y·dy|), as the cancellation in
     * dy − Σ y·dy can leave little of either. */
    reset(d_y, y, n);
    float *bound = host(n, 0, 0);
    for (size_t r = 0; r < nr; r++) {
        double dot = 0.0;
        for (size_t j = 0; j < (size_t)cols; j++) {
            dot += (double)y[r * (size_t)cols + j] * (double)dy[r * (size_t)cols + j];
        }
        for (size_t j = 0; j < (size_t)cols; j++) {
            const size_t at = r * (size_t)cols + j;
            bound[at] =
                (float)(ELEM_TOL * fabs((double)y[at]) * (fabs((double)dy[at]) + fabs(dot)));
        }
    }
    CPU->softmax_rows_backward(rows, cols, y, dy, dx);
    for (int inplace = 0; inplace < 2; inplace++) {
        reset(d_dx, inplace ? dy : unset, n);
        GPU->softmax_rows_backward(rows, cols, d_y, inplace ? d_dx : d_dy, d_dx);
        down(got, d_dx, n);
        no_failure();
        for (size_t i = 0; i < n; i++) {
            if (!(fabs((double)got[i] - (double)dx[i]) <= 1e-30 + (double)bound[i])) {
                fail_msg("softmax_rows_backward %dx%d%s [%zu]: gpu %.9g, cpu %.9g", rows, cols,
                         inplace ? " in place" : "", i, (double)got[i], (double)dx[i]);
            }
        }
    }
    void *h[] = {x, y, dy, dx, got, bound, unset};
    void *d[] = {d_x, d_y, d_dy, d_dx};
    free_all(h, sizeof h / sizeof h[0], d, sizeof d / sizeof d[0]);
}

static void test_softmax_rows(void **state)
{
    (void)state;
    softmax_case(1, 1); /* y = 1, dx = 0 */
    softmax_case(1000, 10);
    softmax_case(1037, 33);
    softmax_case(3, 50257);
}

/* Sizes of 0 launch nothing and read nothing (NULL pointers), and record
 * no failure; sum_squares of nothing is exactly 0. */
static void test_empty(void **state)
{
    (void)state;
    GPU->embedding_forward(0, 4, 8, NULL, NULL, NULL, NULL);
    GPU->embedding_backward(2, 0, 8, NULL, NULL, NULL, NULL);
    GPU->layernorm_forward(0, 8, NULL, NULL, NULL, NULL, NULL, NULL);
    GPU->layernorm_backward(0, 8, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1);
    GPU->gelu_forward(0, NULL, NULL);
    GPU->gelu_backward(0, NULL, NULL, NULL);
    GPU->adamw_update(0, NULL, NULL, NULL, NULL, 1.0f, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
    assert_true(GPU->sum_squares(0, NULL) == 0.0);
    GPU->softmax_rows(0, 5, NULL, NULL);
    GPU->softmax_rows_backward(0, 5, NULL, NULL, NULL);
    char err[256];
    assert_int_equal(bl_cuda_sync(err, sizeof err), 0);
    no_failure();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedding),   cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_gelu),        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_sum_squares), cmocka_unit_test(test_softmax_rows),
        cmocka_unit_test(test_empty),
    };
    return run_on_gpu("CUDA transformer kernel tests", CUDA_TESTS(tests));
}
