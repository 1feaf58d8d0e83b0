/* Unit tests of the GPT-2 kernels of bl_cpu_kernels (embedding, layernorm,
 * GELU, attention, vocabulary cross-entropy, AdamW, sum of squares) against
 * plain double-precision references written here, with |got − ref| <=
 * atol + rtol·|ref|. Every backward is checked against central finite
 * differences (in double) of its reference's loss Σ dout · f(inputs). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "test_support.h"

#define FWD_ATOL 1e-6
#define FWD_RTOL 1e-5
#define FD_H     1e-6
#define FD_ATOL  1e-5
#define FD_RTOL  1e-4
#define MAXT     16

static const bl_kernels_t *K = &bl_cpu_kernels;

/* Small odd shapes, T = 1 among them: B, T, C, NH. */
static const struct {
    int B, T, C, NH;
} SHAPES[] = {{2, 5, 12, 3}, {2, 1, 12, 3}, {1, 9, 20, 2}};
enum { NSHAPES = sizeof(SHAPES) / sizeof(SHAPES[0]), V = 11, VP = 16 };

/* ---- deterministic inputs: a 64-bit LCG (test_support.h) ---- */

static lcg_t rng;

/* Zeroed buffers of count elements (+1, so count 0 gives a valid pointer),
 * all freed by release_all at the end of each test. */
static void *held[64];
static int nheld;

static void *zalloc(size_t count, size_t nbytes)
{
    assert_true(nheld < 64);
    void *p = calloc(count + 1, nbytes);
    assert_non_null(p);
    held[nheld++] = p;
    return p;
}

static float *fbuf(size_t count)
{
    return zalloc(count, sizeof(float));
}

static double *dbuf(size_t count)
{
    return zalloc(count, sizeof(double));
}

static int release_all(void **state)
{
    (void)state;
    while (nheld > 0) {
        free(held[--nheld]);
    }
    return 0;
}

/* A double copy of a times factor (exact for factors 1 and 2). */
static double *to_d_times(const float *a, size_t count, double factor)
{
    double *p = dbuf(count);
    for (size_t i = 0; i < count; i++) {
        p[i] = factor * a[i];
    }
    return p;
}

static double *to_d(const float *a, size_t count)
{
    return to_d_times(a, count, 1.0);
}

/* ---- finite differences ---- */

/* What a reference loss reads: the inputs a, b, c being differentiated
 * (double), the weights dout of Σ dout · f, and out for f's values. */
typedef struct {
    int B, T, C, NH, N;
    const int32_t *tok;
    double *a, *b, *c, *out;
    const float *dout;
} fd_ctx_t;

typedef double (*loss_fn)(fd_ctx_t *x);

static double weighted_sum(const fd_ctx_t *x, size_t count)
{
    double s = 0.0;
    for (size_t i = 0; i < count; i++) {
        s += (double)x->dout[i] * x->out[i];
    }
    return s;
}

/* Checks grad (count) against central differences of loss in each element
 * of p (one of x's inputs). Returns the largest |difference quotient|, so
 * callers can assert the check was not vacuous. */
static double fd_check(loss_fn loss, fd_ctx_t *x, double *p, size_t count, const float *grad,
                       const char *what)
{
    double big = 0.0;
    for (size_t i = 0; i < count; i++) {
        const double save = p[i];
        p[i] = save + FD_H;
        const double lp = loss(x);
        p[i] = save - FD_H;
        const double lm = loss(x);
        p[i] = save;
        const double fd = (lp - lm) / (2.0 * FD_H);
        if (!(fabs((double)grad[i] - fd) <= FD_ATOL + FD_RTOL * fabs(fd))) {
            fail_msg("%s[%zu]: got %.9g, finite difference %.9g", what, i, (double)grad[i], fd);
        }
        big = fabs(fd) > big ? fabs(fd) : big;
    }
    return big;
}

/* ---- references, in double ---- */

static void ref_embedding(int B, int T, int C, const int32_t *tok, const double *wte,
                          const double *wpe, double *out)
{
    for (int bt = 0; bt < B * T; bt++) {
        for (int j = 0; j < C; j++) {
            out[bt * C + j] = wte[tok[bt] * C + j] + wpe[(bt % T) * C + j];
        }
    }
}

static double loss_embedding(fd_ctx_t *x)
{
    ref_embedding(x->B, x->T, x->C, x->tok, x->a, x->b, x->out);
    return weighted_sum(x, (size_t)x->B * x->T * x->C);
}

/* mean and rstd may be NULL. */
static void ref_layernorm(int N, int C, const double *in, const double *w, const double *b,
                          double *out, double *mean, double *rstd)
{
    for (int r = 0; r < N; r++) {
        const double *x = in + r * C;
        double m = 0.0, var = 0.0;
        for (int j = 0; j < C; j++) {
            m += x[j] / C;
        }
        for (int j = 0; j < C; j++) {
            var += (x[j] - m) * (x[j] - m) / C;
        }
        const double rs = 1.0 / sqrt(var + 1e-5);
        for (int j = 0; j < C; j++) {
            out[r * C + j] = (x[j] - m) * rs * w[j] + b[j];
        }
        if (mean != NULL) {
            mean[r] = m;
            rstd[r] = rs;
        }
    }
}

static double loss_layernorm(fd_ctx_t *x)
{
    ref_layernorm(x->N, x->C, x->a, x->b, x->c, x->out, NULL, NULL);
    return weighted_sum(x, (size_t)x->N * x->C);
}

static double ref_gelu(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
}

static double loss_gelu(fd_ctx_t *x)
{
    for (int i = 0; i < x->N; i++) {
        x->out[i] = ref_gelu(x->a[i]);
    }
    return weighted_sum(x, (size_t)x->N);
}

/* att (B, NH, T, T) may be NULL. */
static void ref_attention(int B, int T, int C, int NH, const double *qkv, double *out, double *att)
{
    const int hs = C / NH;
    const double scale = 1.0 / sqrt((double)hs);
    assert_true(T <= MAXT);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int i = 0; i < T; i++) {
                const double *q = qkv + (b * T + i) * 3 * C + h * hs;
                double p[MAXT], m = -INFINITY, sum = 0.0;
                for (int j = 0; j <= i; j++) {
                    const double *k = qkv + (b * T + j) * 3 * C + C + h * hs;
                    p[j] = 0.0;
                    for (int d = 0; d < hs; d++) {
                        p[j] += scale * q[d] * k[d];
                    }
                    m = p[j] > m ? p[j] : m;
                }
                for (int j = 0; j <= i; j++) {
                    p[j] = exp(p[j] - m);
                    sum += p[j];
                }
                for (int d = 0; d < hs; d++) {
                    double o = 0.0;
                    for (int j = 0; j <= i; j++) {
                        o += p[j] / sum * qkv[(b * T + j) * 3 * C + 2 * C + h * hs + d];
                    }
                    out[(b * T + i) * C + h * hs + d] = o;
                }
                for (int j = 0; att != NULL && j < T; j++) {
                    att[((b * NH + h) * T + i) * T + j] = j <= i ? p[j] / sum : 0.0;
                }
            }
        }
    }
}

static double loss_attention(fd_ctx_t *x)
{
    ref_attention(x->B, x->T, x->C, x->NH, x->a, x->out, NULL);
    return weighted_sum(x, (size_t)x->B * x->T * x->C);
}

/* The SUM of row losses over the first V columns; dlog (N, VP) (softmax −
 * onehot, 0 in the padding) when not NULL. */
static double ref_xent(int N, const double *logits, const int32_t *tgt, double *dlog)
{
    double loss = 0.0;
    for (int r = 0; r < N; r++) {
        const double *l = logits + r * VP;
        double m = l[0], sum = 0.0;
        for (int j = 1; j < V; j++) {
            m = l[j] > m ? l[j] : m;
        }
        for (int j = 0; j < V; j++) {
            sum += exp(l[j] - m);
        }
        loss += log(sum) - (l[tgt[r]] - m);
        for (int j = 0; dlog != NULL && j < VP; j++) {
            dlog[r * VP + j] = j < V ? exp(l[j] - m) / sum - (j == tgt[r]) : 0.0;
        }
    }
    return loss;
}

static double loss_xent(fd_ctx_t *x)
{
    return ref_xent(x->N, x->a, x->tok, NULL);
}

/* ---- tests ---- */

static void test_table(void **state)
{
    (void)state;
    assert_non_null(K->embedding_forward);
    assert_non_null(K->embedding_backward);
    assert_non_null(K->layernorm_forward);
    assert_non_null(K->layernorm_backward);
    assert_non_null(K->gelu_forward);
    assert_non_null(K->gelu_backward);
    assert_non_null(K->attention_forward);
    assert_non_null(K->attention_backward);
    assert_non_null(K->vocab_xent);
    assert_non_null(K->adamw_update);
    assert_non_null(K->sum_squares);
}

static void test_embedding(void **state)
{
    (void)state;
    lcg_seed(&rng, 11);
    for (int s = 0; s < NSHAPES; s++) {
        const int B = SHAPES[s].B, T = SHAPES[s].T, C = SHAPES[s].C, BT = B * T;
        const size_t n = (size_t)BT * C, nte = (size_t)VP * C, npe = (size_t)(T + 2) * C;
        int32_t tok[2 * MAXT];
        for (int i = 0; i < BT; i++) {
            tok[i] = (int32_t)(lcg_next(&rng) % V);
        }
        tok[BT - 1] = tok[0]; /* a repeated token (with B = 2, T = 1 too) */
        float *wte = fbuf(nte), *wpe = fbuf(npe), *out = fbuf(n), *dout = fbuf(n);
        float *dwte = fbuf(nte), *dwpe = fbuf(npe);
        fill_uniform(&rng, wte, nte, -1.0f, 1.0f);
        fill_uniform(&rng, wpe, npe, -1.0f, 1.0f);
        fill_uniform(&rng, dout, n, -1.0f, 1.0f);
        fd_ctx_t x = {.B = B,
                      .T = T,
                      .C = C,
                      .tok = tok,
                      .a = to_d(wte, nte),
                      .b = to_d(wpe, npe),
                      .out = dbuf(n),
                      .dout = dout};
        K->embedding_forward(B, T, C, tok, wte, wpe, out);
        ref_embedding(B, T, C, tok, x.a, x.b, x.out);
        check_close_tol(out, x.out, n, FWD_ATOL, FWD_RTOL, "embedding out");

        K->embedding_backward(B, T, C, tok, dout, dwte, dwpe);
        assert_true(fd_check(loss_embedding, &x, x.a, nte, dwte, "dwte") > 0.1);
        assert_true(fd_check(loss_embedding, &x, x.b, npe, dwpe, "dwpe") > 0.1);
        /* It accumulates: a second call doubles both. */
        double *twice_te = to_d_times(dwte, nte, 2.0), *twice_pe = to_d_times(dwpe, npe, 2.0);
        K->embedding_backward(B, T, C, tok, dout, dwte, dwpe);
        check_close_tol(dwte, twice_te, nte, FWD_ATOL, FWD_RTOL, "dwte twice");
        check_close_tol(dwpe, twice_pe, npe, FWD_ATOL, FWD_RTOL, "dwpe twice");
        release_all(NULL);
    }
}

static void test_layernorm(void **state)
{
    (void)state;
    lcg_seed(&rng, 12);
    for (int s = 0; s < NSHAPES; s++) {
        const int N = SHAPES[s].B * SHAPES[s].T, C = SHAPES[s].C;
        const size_t n = (size_t)N * C;
        float *in = fbuf(n), *w = fbuf(C), *b = fbuf(C), *out = fbuf(n), *out2 = fbuf(n);
        float *mean = fbuf(N), *rstd = fbuf(N), *dout = fbuf(n), *dinp = fbuf(n);
        float *dw = fbuf(C), *db = fbuf(C);
        fill_uniform(&rng, in, n, -1.0f, 1.0f);
        for (int r = 0; r < N; r++) {
            in[r * C] += 3.0f * (float)r; /* rows of different means and spreads */
        }
        fill_uniform(&rng, w, C, 0.5f, 1.5f);
        fill_uniform(&rng, b, C, -0.5f, 0.5f);
        fill_uniform(&rng, dout, n, -1.0f, 1.0f);
        fd_ctx_t x = {.N = N,
                      .C = C,
                      .a = to_d(in, n),
                      .b = to_d(w, C),
                      .c = to_d(b, C),
                      .out = dbuf(n),
                      .dout = dout};
        double *rmean = dbuf(N), *rrstd = dbuf(N);
        K->layernorm_forward(N, C, in, w, b, out, mean, rstd);
        ref_layernorm(N, C, x.a, x.b, x.c, x.out, rmean, rrstd);
        check_close_tol(out, x.out, n, FWD_ATOL, FWD_RTOL, "layernorm out");
        check_close_tol(mean, rmean, N, FWD_ATOL, FWD_RTOL, "layernorm mean");
        check_close_tol(rstd, rrstd, N, FWD_ATOL, FWD_RTOL, "layernorm rstd");
        K->layernorm_forward(N, C, in, w, b, out2, NULL, NULL); /* no statistics kept */
        assert_memory_equal(out, out2, n * sizeof(float));

        fill_value(dinp, n, NAN); /* overwritten, never read */
        K->layernorm_backward(N, C, dout, in, w, mean, rstd, dinp, dw, db, 0);
        assert_true(fd_check(loss_layernorm, &x, x.a, n, dinp, "layernorm dinp") > 0.1);
        assert_true(fd_check(loss_layernorm, &x, x.b, C, dw, "layernorm dweight") > 0.1);
        assert_true(fd_check(loss_layernorm, &x, x.c, C, db, "layernorm dbias") > 0.1);
        /* accumulate 1 adds to dinp; dweight and dbias always accumulate. */
        double *twice_in = to_d_times(dinp, n, 2.0), *twice_w = to_d_times(dw, C, 2.0);
        double *twice_b = to_d_times(db, C, 2.0);
        K->layernorm_backward(N, C, dout, in, w, mean, rstd, dinp, dw, db, 1);
        check_close_tol(dinp, twice_in, n, FWD_ATOL, FWD_RTOL, "layernorm dinp twice");
        check_close_tol(dw, twice_w, C, FWD_ATOL, FWD_RTOL, "layernorm dweight twice");
        check_close_tol(db, twice_b, C, FWD_ATOL, FWD_RTOL, "layernorm dbias twice");
        release_all(NULL);
    }
}

static void test_gelu(void **state)
{
    (void)state;
    lcg_seed(&rng, 13);
    enum { N = 37 }; /* four spans and a tail */
    float *x = fbuf(N), *y = fbuf(N), *dy = fbuf(N), *dx = fbuf(N), *t = fbuf(N);
    fill_uniform(&rng, x, N, -5.0f, 5.0f);
    x[0] = 0.0f;
    x[1] = -0.5f;
    fill_uniform(&rng, dy, N, -1.0f, 1.0f);
    fd_ctx_t c = {.N = N, .a = to_d(x, N), .out = dbuf(N), .dout = dy};
    double *ref = dbuf(N);
    for (int i = 0; i < N; i++) {
        ref[i] = ref_gelu(c.a[i]);
    }
    K->gelu_forward(N, x, y);
    check_close_tol(y, ref, N, FWD_ATOL, FWD_RTOL, "gelu");
    assert_true(y[0] == 0.0f && y[1] < -0.15f && y[1] > -0.16f); /* gelu(-0.5) = -0.1543 */
    memcpy(t, x, sizeof(float) * N);
    K->gelu_forward(N, t, t); /* in place */
    assert_memory_equal(t, y, sizeof(float) * N);

    fill_value(dx, N, NAN);
    K->gelu_backward(N, x, dy, dx);
    assert_true(fd_check(loss_gelu, &c, c.a, N, dx, "gelu dx") > 0.5);
    memcpy(t, dy, sizeof(float) * N);
    K->gelu_backward(N, x, t, t); /* dy == dx */
    assert_memory_equal(t, dx, sizeof(float) * N);
    release_all(NULL);
}

static void test_attention(void **state)
{
    (void)state;
    lcg_seed(&rng, 14);
    for (int s = 0; s < NSHAPES; s++) {
        const int B = SHAPES[s].B, T = SHAPES[s].T, C = SHAPES[s].C, NH = SHAPES[s].NH;
        const size_t nqkv = (size_t)B * T * 3 * C, n = (size_t)B * T * C;
        const size_t natt = (size_t)B * NH * T * T;
        float *qkv = fbuf(nqkv), *out = fbuf(n), *att = fbuf(natt), *dout = fbuf(n);
        float *dqkv = fbuf(nqkv), *scratch = fbuf((size_t)T * T);
        fill_uniform(&rng, qkv, nqkv, -2.0f, 2.0f);
        fill_uniform(&rng, dout, n, -1.0f, 1.0f);
        fill_value(out, n, NAN);
        fill_value(att, natt, NAN);
        fd_ctx_t x = {
            .B = B, .T = T, .C = C, .NH = NH, .a = to_d(qkv, nqkv), .out = dbuf(n), .dout = dout};
        double *ratt = dbuf(natt);
        K->attention_forward(B, T, C, NH, qkv, out, att);
        ref_attention(B, T, C, NH, x.a, x.out, ratt);
        check_close_tol(out, x.out, n, FWD_ATOL, FWD_RTOL, "attention out");
        check_close_tol(att, ratt, natt, FWD_ATOL, FWD_RTOL, "attention att");
        /* The causal mask: exact zeros above the diagonal, rows summing to 1. */
        for (size_t r = 0; r < (size_t)B * NH * T; r++) {
            const int i = (int)(r % (size_t)T);
            double sum = 0.0;
            for (int j = 0; j < T; j++) {
                sum += att[r * T + j];
                if (j > i && att[r * T + j] != 0.0f) {
                    fail_msg("att row %zu (query %d) key %d: %g, want 0", r, i, j,
                             (double)att[r * T + j]);
                }
            }
            check_scalar(sum, 1.0, 1e-6, 0.0, "att row sum");
        }

        fill_value(dqkv, nqkv, NAN); /* overwritten, never read */
        fill_value(scratch, (size_t)T * T, NAN);
        K->attention_backward(B, T, C, NH, dout, qkv, att, dqkv, scratch);
        assert_true(fd_check(loss_attention, &x, x.a, nqkv, dqkv, "attention dqkv") > 0.1);
        release_all(NULL);
    }
}

static void test_vocab_xent(void **state)
{
    (void)state;
    lcg_seed(&rng, 15);
    enum { N = 7 };
    const int32_t tgt[N] = {0, V - 1, 3, 5, 5, 9, 1};
    float *logits = fbuf(N * VP), *dlog = fbuf(N * VP);
    fill_uniform(&rng, logits, N * VP, -4.0f, 4.0f);
    for (int r = 0; r < N; r++) {
        fill_value(logits + r * VP + V, VP - V, NAN); /* padding: never read */
    }
    for (int j = 0; j < V; j++) {
        logits[2 * VP + j] += 1000.0f; /* stable with large logits */
    }
    fd_ctx_t x = {.N = N, .tok = tgt, .a = to_d(logits, N * VP)};
    double *rdlog = dbuf(N * VP);
    const double want = ref_xent(N, x.a, tgt, rdlog);
    fill_value(dlog, N * VP, NAN);
    const double loss = K->vocab_xent(N, V, VP, logits, tgt, dlog);
    check_scalar(loss, want, 0.0, 1e-6, "vocab_xent loss");
    assert_true(loss > (double)N * 0.5); /* a real loss, not 0 */
    check_close_tol(dlog, rdlog, N * VP, FWD_ATOL, FWD_RTOL, "vocab_xent dlogits");
    for (int r = 0; r < N; r++) {
        for (int j = V; j < VP; j++) {
            assert_true(dlog[r * VP + j] == 0.0f && !signbit(dlog[r * VP + j]));
        }
    }
    assert_true(K->vocab_xent(N, V, VP, logits, tgt, NULL) == loss); /* evaluation */
    assert_true(fd_check(loss_xent, &x, x.a, N * VP, dlog, "vocab_xent dlogits fd") > 0.1);
    release_all(NULL);
}

/* AdamW in double, the formulas of kernels.h, one step. */
static void ref_adamw(int n, double *w, double *m, double *v, const float *grad, double scale,
                      double lr, double b1, double b2, double eps, double wd, int t)
{
    const double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
    for (int i = 0; i < n; i++) {
        const double g = scale * grad[i];
        w[i] -= lr * wd * w[i];
        m[i] = b1 * m[i] + (1.0 - b1) * g;
        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
        w[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + eps);
    }
}

static void test_adamw(void **state)
{
    (void)state;
    lcg_seed(&rng, 16);
    enum { N = 37 };
    /* eps tiny (the update is about lr·sign), then eps that matters. */
    const float eps[2] = {1e-8f, 1e-3f}, grange[2] = {1.0f, 0.01f};
    const float scale = 0.5f, lr = 0.01f, b1 = 0.9f, b2 = 0.999f, wd = 0.1f;
    for (int c = 0; c < 2; c++) {
        float *w = fbuf(N), *m = fbuf(N), *v = fbuf(N), *grad = fbuf(N);
        fill_uniform(&rng, w, N, -1.0f, 1.0f);
        double *rw = to_d(w, N), *rm = dbuf(N), *rv = dbuf(N);
        for (int t = 1; t <= 3; t++) {
            fill_uniform(&rng, grad, N, -grange[c], grange[c]);
            K->adamw_update(N, w, m, v, grad, scale, lr, b1, b2, eps[c], wd, t);
            ref_adamw(N, rw, rm, rv, grad, scale, lr, b1, b2, eps[c], wd, t);
            check_close_tol(w, rw, N, 1e-7, 1e-6, "adamw w");
            check_close_tol(m, rm, N, 1e-9, 1e-5, "adamw m");
            check_close_tol(v, rv, N, 1e-12, 1e-5, "adamw v");
        }
        release_all(NULL);
    }
}

static void test_sum_squares(void **state)
{
    (void)state;
    lcg_seed(&rng, 17);
    const size_t counts[] = {0, 5, 8, 1001};
    float *x = fbuf(1001);
    fill_uniform(&rng, x, 1001, -3.0f, 3.0f);
    for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
        double want = 0.0;
        for (size_t i = 0; i < counts[c]; i++) {
            want += (double)x[i] * (double)x[i];
        }
        check_scalar(K->sum_squares(counts[c], x), want, 0.0, 1e-13, "sum_squares");
    }
    assert_true(K->sum_squares(1001, x) > 1000.0);
    release_all(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test_teardown(test_embedding, release_all),
        cmocka_unit_test_teardown(test_layernorm, release_all),
        cmocka_unit_test_teardown(test_gelu, release_all),
        cmocka_unit_test_teardown(test_attention, release_all),
        cmocka_unit_test_teardown(test_vocab_xent, release_all),
        cmocka_unit_test_teardown(test_adamw, release_all),
        cmocka_unit_test_teardown(test_sum_squares, release_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
