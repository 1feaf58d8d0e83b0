/* Layer normalisation over rows of C (kernels.h's layernorm_forward and
 * layernorm_backward), PyTorch's: biased variance, eps 1e-5. A row's
 * statistics are sums in double, in BL_CPU_LANES partial sums (one per
 * lane, so the loops vectorise without reassociation); the element passes
 * run in float spans. */
#include <math.h>

#include "cpu_kernels.h"

enum { L = BL_CPU_LANES };

#define LN_EPS 1e-5

/* s[j] += x[j] − shift, q[j] += (x[j] − shift)². */
static void stats_span(int n, const float *restrict x, double shift, double *restrict s,
                       double *restrict q)
{
    for (int j = 0; j < n; j++) {
        const double d = (double)x[j] - shift;
        s[j] += d;
        q[j] += d * d;
    }
}

/* y = (x − mean) · rstd · w + b. */
static void norm_span(int n, const float *restrict x, float mean, float rstd,
                      const float *restrict w, const float *restrict b, float *restrict y)
{
    for (int j = 0; j < n; j++) {
        y[j] = (x[j] - mean) * rstd * w[j] + b[j];
    }
}

void bl_cpu_layernorm_forward(int rows, int C, const float *inp, const float *weight,
                              const float *bias, float *out, float *mean, float *rstd)
{
    for (int r = 0; r < rows; r++) {
        const float *x = inp + (size_t)r * (size_t)C;
        float *y = out + (size_t)r * (size_t)C;
        /* Sums of x − x[0] (shifted, so a large mean does not cancel). */
        double s[L] = {0.0}, q[L] = {0.0};
        const double shift = (double)x[0];
        int j = 0;
        for (; j + L <= C; j += L) {
            stats_span(L, x + j, shift, s, q);
        }
        stats_span(C - j, x + j, shift, s, q);
        double st = 0.0, qt = 0.0;
        for (int k = 0; k < L; k++) {
            st += s[k];
            qt += q[k];
        }
        const double dm = st / C;
        const double var = qt / C - dm * dm; /* biased, as PyTorch */
        const float mu = (float)(shift + dm);
        const float rs = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + LN_EPS));
        for (j = 0; j + L <= C; j += L) {
            norm_span(L, x + j, mu, rs, weight + j, bias + j, y + j);
        }
        norm_span(C - j, x + j, mu, rs, weight + j, bias + j, y + j);
        if (mean != NULL) {
            mean[r] = mu;
        }
        if (rstd != NULL) {
            rstd[r] = rs;
        }
    }
}

/* With norm = (x − mean) · rstd and dnorm = w · dy: a[j] += dnorm,
 * c[j] += dnorm · norm; dbias += dy, dweight += norm · dy. */
static void sums_span(int n, const float *restrict x, const float *restrict dy,
                      const float *restrict w, float mean, float rstd, double *restrict a,
                      double *restrict c, float *restrict dw, float *restrict db)
{
    for (int j = 0; j < n; j++) {
        const float norm = (x[j] - mean) * rstd;
        const float dnorm = w[j] * dy[j];
        a[j] += (double)dnorm;
        c[j] += (double)dnorm * (double)norm;
        db[j] += dy[j];
        dw[j] += norm * dy[j];
    }
}

/* dx = g, or dx += g with acc, where g = (dnorm − mean(dnorm) − norm ·
 * mean(dnorm · norm)) · rstd. A select, so an overwritten dx is never
 * used (NaN there does not leak). */
static void dx_span(int n, const float *restrict x, const float *restrict dy,
                    const float *restrict w, float mean, float rstd, float ma, float mc, int acc,
                    float *restrict dx)
{
    for (int j = 0; j < n; j++) {
        const float norm = (x[j] - mean) * rstd;
        const float g = (w[j] * dy[j] - ma - norm * mc) * rstd;
        dx[j] = acc ? dx[j] + g : g;
    }
}

void bl_cpu_layernorm_backward(int rows, int C, const float *dout, const float *inp,
                               const float *weight, const float *mean, const float *rstd,
                               float *dinp, float *dweight, float *dbias, int accumulate)
{
    for (int r = 0; r < rows; r++) {
        const size_t at = (size_t)r * (size_t)C;
        const float *x = inp + at, *dy = dout + at;
        float *dx = dinp + at;
        const float mu = mean[r], rs = rstd[r];
        /* Pass 1: the row's two means, and dweight, dbias. */
        double a[L] = {0.0}, c[L] = {0.0};
        int j = 0;
        for (; j + L <= C; j += L) {
            sums_span(L, x + j, dy + j, weight + j, mu, rs, a, c, dweight + j, dbias + j);
        }
        sums_span(C - j, x + j, dy + j, weight + j, mu, rs, a, c, dweight + j, dbias + j);
        double sa = 0.0, sc = 0.0;
        for (int k = 0; k < L; k++) {
            sa += a[k];
            sc += c[k];
        }
        const float ma = (float)(sa / C), mc = (float)(sc / C);
        /* Pass 2: dinp. */
        for (j = 0; j + L <= C; j += L) {
            dx_span(L, x + j, dy + j, weight + j, mu, rs, ma, mc, accumulate, dx + j);
        }
        dx_span(C - j, x + j, dy + j, weight + j, mu, rs, ma, mc, accumulate, dx + j);
    }
}
