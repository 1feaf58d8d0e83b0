/* Token and position embeddings (kernels.h's embedding_forward and
 * embedding_backward): each (b, t) row is two row additions of C floats,
 * run in spans of BL_CPU_LANES. */
#include "cpu_kernels.h"

enum { L = BL_CPU_LANES };

/* out (n) = a + b. */
static void add_span(int n, const float *restrict a, const float *restrict b, float *restrict out)
{
    for (int j = 0; j < n; j++) {
        out[j] = a[j] + b[j];
    }
}

/* acc (n) += g. */
static void acc_span(int n, const float *restrict g, float *restrict acc)
{
    for (int j = 0; j < n; j++) {
        acc[j] += g[j];
    }
}

static void acc_row(int C, const float *g, float *acc)
{
    int j = 0;
    for (; j + L <= C; j += L) {
        acc_span(L, g + j, acc + j);
    }
    acc_span(C - j, g + j, acc + j);
}

void bl_cpu_embedding_forward(int B, int T, int C, const int32_t *tokens, const float *wte,
                              const float *wpe, float *out)
{
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const size_t bt = (size_t)b * (size_t)T + (size_t)t;
            const float *e = wte + (size_t)tokens[bt] * (size_t)C;
            const float *p = wpe + (size_t)t * (size_t)C;
            float *o = out + bt * (size_t)C;
            int j = 0;
            for (; j + L <= C; j += L) {
                add_span(L, e + j, p + j, o + j);
            }
            add_span(C - j, e + j, p + j, o + j);
        }
    }
}

void bl_cpu_embedding_backward(int B, int T, int C, const int32_t *tokens, const float *dout,
                               float *dwte, float *dwpe)
{
    /* Sequential over (b, t): a repeated token adds its rows in order. */
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const size_t bt = (size_t)b * (size_t)T + (size_t)t;
            const float *g = dout + bt * (size_t)C;
            acc_row(C, g, dwte + (size_t)tokens[bt] * (size_t)C);
            acc_row(C, g, dwpe + (size_t)t * (size_t)C);
        }
    }
}
