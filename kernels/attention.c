/* Causal multi-head self-attention (kernels.h's attention_forward and
 * attention_backward), llm.c's GPT-2 layout: qkv (B, T, 3C) is [q | k | v]
 * per token and head h owns channels [h·hs, (h+1)·hs) of each, hs = C/NH.
 * Per (b, h), the products are GEMMs (a bl_cpu_gemm_fn's: OpenBLAS's fp32
 * sgemm, or bf16.c's bf16-rounded one) that read the heads in place
 * through their strides (lda = 3C for q, k, v; C for out, dout), with
 * a masked softmax (or its backward) over the (T, T) scores in between.
 * The GEMMs also fill the masked half, which the softmax then zeroes; for
 * GPT-2's sizes the wasted half costs less than T small calls would. */
#include <math.h>

#include "cpu_kernels.h"
#include "xent_row.h"

/* Row i of the scores, in place: a stable softmax over its first n = i + 1
 * entries (xent_row.h's) and exactly 0 over the rest of its T entries. */
static void causal_softmax_row(int n, int T, float *row)
{
    bl_softmax_row(n, row, row);
    for (int j = n; j < T; j++) {
        row[j] = 0.0f;
    }
}

void bl_cpu_attention_forward_by(bl_cpu_gemm_fn *gemm, int B, int T, int C, int NH,
                                 const float *qkv, float *out, float *att)
{
    if (B <= 0 || T <= 0 || NH <= 0 || C < NH) {
        return;
    }
    const int hs = C / NH, C3 = 3 * C;
    const float scale = (float)(1.0 / sqrt((double)hs));
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * (size_t)T * (size_t)C3 + (size_t)h * (size_t)hs;
            const float *k = q + C, *v = q + 2 * (size_t)C;
            float *a = att + ((size_t)b * (size_t)NH + (size_t)h) * (size_t)T * (size_t)T;
            float *o = out + (size_t)b * (size_t)T * (size_t)C + (size_t)h * (size_t)hs;
            /* a (T, T) = scale · Q (T, hs) · K^T, K (T, hs). */
            gemm(0, 1, T, T, hs, scale, q, C3, k, C3, 0.0f, a, T);
            for (int i = 0; i < T; i++) {
                causal_softmax_row(i + 1, T, a + (size_t)i * (size_t)T);
            }
            /* o (T, hs) = a (T, T) · V (T, hs). */
            gemm(0, 0, T, hs, T, 1.0f, a, T, v, C3, 0.0f, o, C);
        }
    }
}

/* Row i of the softmax's backward, in place over d (the gradient of the
 * probabilities p on entry, of the scores on return), for its first n =
 * i + 1 entries: d[j] = p[j] · (d[j] − Σ_k p[k] · d[k]); 0 beyond. */
static void softmax_backward_row(int n, int T, const float *p, float *d)
{
    double dot = 0.0;
    for (int j = 0; j < n; j++) {
        dot += (double)p[j] * (double)d[j];
    }
    const float s = (float)dot;
    for (int j = 0; j < n; j++) {
        d[j] = p[j] * (d[j] - s);
    }
    for (int j = n; j < T; j++) {
        d[j] = 0.0f;
    }
}

void bl_cpu_attention_backward_by(bl_cpu_gemm_fn *gemm, int B, int T, int C, int NH,
                                  const float *dout, const float *qkv, const float *att,
                                  float *dqkv, float *scratch)
{
    if (B <= 0 || T <= 0 || NH <= 0 || C < NH) {
        return;
    }
    const int hs = C / NH, C3 = 3 * C;
    const float scale = (float)(1.0 / sqrt((double)hs));
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const size_t qat = (size_t)b * (size_t)T * (size_t)C3 + (size_t)h * (size_t)hs;
            const float *q = qkv + qat, *k = q + C, *v = q + 2 * (size_t)C;
            float *dq = dqkv + qat, *dk = dq + C, *dv = dq + 2 * (size_t)C;
            const float *a = att + ((size_t)b * (size_t)NH + (size_t)h) * (size_t)T * (size_t)T;
            const float *d_o = dout + (size_t)b * (size_t)T * (size_t)C + (size_t)h * (size_t)hs;
            /* dV (T, hs) = a^T (T, T) · dO (T, hs). */
            gemm(1, 0, T, hs, T, 1.0f, a, T, d_o, C, 0.0f, dv, C3);
            /* dA (T, T) = dO (T, hs) · V^T, in scratch; then the scores'
             * gradient dS in place. */
            gemm(0, 1, T, T, hs, 1.0f, d_o, C, v, C3, 0.0f, scratch, T);
            for (int i = 0; i < T; i++) {
                const size_t row = (size_t)i * (size_t)T;
                softmax_backward_row(i + 1, T, a + row, scratch + row);
            }
            /* scores = scale · Q · K^T: dQ = scale · dS · K, dK = scale · dS^T · Q. */
            gemm(0, 0, T, hs, T, scale, scratch, T, k, C3, 0.0f, dq, C3);
            gemm(1, 0, T, hs, T, scale, scratch, T, q, C3, 0.0f, dk, C3);
        }
    }
}

void bl_cpu_attention_forward(int B, int T, int C, int NH, const float *qkv, float *out, float *att)
{
    bl_cpu_attention_forward_by(bl_cpu_gemm, B, T, C, NH, qkv, out, att);
}

void bl_cpu_attention_backward(int B, int T, int C, int NH, const float *dout, const float *qkv,
                               const float *att, float *dqkv, float *scratch)
{
    bl_cpu_attention_backward_by(bl_cpu_gemm, B, T, C, NH, dout, qkv, att, dqkv, scratch);
}
