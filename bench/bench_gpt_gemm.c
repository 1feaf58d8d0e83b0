/* bench_gpt_gemm: GPT-2 training throughput of ballast on one process,
 * against the limit its matrix products set.
 *
 * The model is ballast-train --model gpt2's default: L 4 blocks, 4 heads,
 * C 256 channels, T 128, V 256, batch B 16 sequences, AdamW, on the bytes
 * of a text file. Two figures, their repetitions interleaved (a b, b a, ...)
 * so that machine noise hits both alike:
 *   (a) ballast: S steps of bl_lm_trainer_run (public API only);
 *   (b) GEMM-bound limit: S times exactly the cblas_sgemm calls one step
 *       makes (kernels/dense.c, kernels/attention.c, the head in
 *       runtime/model/gpt2_passes.c): same shapes and transposes, nothing
 *       else.
 * Both are tokens/s (S · B · T over the wall time); the program prints their
 * medians and ranges and the ratio (a) / (b), the fraction of the GEMM limit
 * that a whole step reaches. Figures only: the exit status is 0 unless
 * something failed to run. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "ballast.h"
#include "bench_stats.h"

enum { L = 4, NH = 4, C = 256, T = 128, V = 256, B = 16, N = B * T, HS = C / NH };
enum { MAX_REPS = 100 };

/* The buffers of the GEMM-only step: big enough for every product. */
typedef struct gemm_bench {
    float *x, *w, *y, *att, *scratch;
} gemm_bench_t;

static float *floats(size_t n)
{
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; p != NULL && i < n; i++) {
        p[i] = (float)((i * 2654435761u) % 1000u) / 1000.0f - 0.5f;
    }
    return p;
}

/* y = x · wᵀ (dense forward), then dW = dyᵀ · x and dx = dy · W (backward). */
static void dense(gemm_bench_t *g, int in, int out)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out, in, 1.0f, g->x, in, g->w, in, 0.0f,
                g->y, out);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, N, 1.0f, g->y, out, g->x, in,
                1.0f, g->w, in);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, out, 1.0f, g->y, out, g->w, in,
                0.0f, g->x, in);
}

/* Per sequence and head: scores q · kᵀ and a · v forward; four products
 * backward (kernels/attention.c). q, k and v are strided in the (T, 3C)
 * rows of qkv; the outputs in (T, C) rows. */
static void attention(gemm_bench_t *g)
{
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *q = g->x + (size_t)b * T * 3 * C + h * HS;
            const float *k = q + C, *v = q + 2 * C;
            float *a = g->att + ((size_t)b * NH + h) * T * T;
            float *o = g->y + (size_t)b * T * C + h * HS;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, 0.125f, q, 3 * C, k,
                        3 * C, 0.0f, a, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, a, T, v, 3 * C,
                        0.0f, o, C);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, a, T, o, C, 0.0f,
                        g->w, HS);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, 1.0f, o, C, v, 3 * C,
                        0.0f, g->scratch, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 0.125f, g->scratch, T,
                        k, 3 * C, 0.0f, g->w, HS);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 0.125f, g->scratch, T, q,
                        3 * C, 0.0f, g->w, HS);
        }
    }
}

/* One step's products: per block QKV, attention, the projection, the MLP;
 * then the tied head (logits, dwte, dx). */
static void gemm_step(gemm_bench_t *g)
{
    for (int l = 0; l < L; l++) {
        dense(g, C, 3 * C);
        attention(g);
        dense(g, C, C);
        dense(g, C, 4 * C);
        dense(g, 4 * C, C);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, V, C, 1.0f, g->x, C, g->w, C, 0.0f,
                g->y, V);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, N, 1.0f, g->y, V, g->x, C, 1.0f,
                g->w, C);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, V, 1.0f, g->y, V, g->w, C, 0.0f,
                g->x, C);
}

static int remember(const bl_step_info_t *info, void *arg)
{
    *(double *)arg = info->loss;
    return 0;
}

int main(int argc, char **argv)
{
    int reps = 5, steps = 10, threads = 1;
    const char *text = "/usr/share/games/fortunes/cookie";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--reps") == 0) {
            reps = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--steps") == 0) {
            steps = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--threads") == 0) {
            threads = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--text") == 0) {
            text = argv[i + 1];
        } else {
            fprintf(stderr, "usage: bench_gpt_gemm [--reps R] [--steps S] [--threads N] "
                            "[--text FILE]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > MAX_REPS || steps < 1 || threads < 1) {
        fprintf(stderr, "bench_gpt_gemm: --reps in 1..%d, --steps and --threads >= 1\n", MAX_REPS);
        return 2;
    }
    MPI_Init(&argc, &argv);
    bl_config_t rc = BL_CONFIG_INIT;
    rc.blas_threads = threads;
    rc.log_level = BL_LOG_WARN;
    bl_runtime_t *rt = NULL;
    bl_token_set_t *set = NULL;
    bl_lm_trainer_t *t = NULL;
    bl_lm_config_t cfg = BL_LM_CONFIG_INIT; /* L 4, NH 4, C 256, T 128, V 256, B 16 */
    bl_status_t st = bl_runtime_create(MPI_COMM_SELF, &rc, &rt);
    if (st == BL_OK) {
        st = bl_tokens_open_text(rt, text, &set);
    }
    if (st == BL_OK) {
        st = bl_lm_trainer_create(rt, &cfg, bl_token_set_data(set), bl_token_set_count(set), &t);
    }
    gemm_bench_t g = {floats((size_t)N * 4 * C), floats((size_t)4 * C * C),
                      floats((size_t)N * 4 * C), floats((size_t)B * NH * T * T),
                      floats((size_t)T * T)};
    if (st != BL_OK || g.x == NULL || g.w == NULL || g.y == NULL || g.att == NULL ||
        g.scratch == NULL) {
        fprintf(stderr, "bench_gpt_gemm: set-up failed: %s\n",
                rt != NULL ? bl_last_error(rt) : "no runtime");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    double loss = 0.0;
    /* Warm-up: first touches of every buffer, OpenBLAS's own buffers. */
    st = bl_lm_trainer_run(t, 2, remember, &loss);
    gemm_step(&g);
    double a[MAX_REPS], b[MAX_REPS];
    const double tokens = (double)steps * N;
    for (int r = 0; r < reps && st == BL_OK; r++) {
        for (int k = 0; k < 2; k++) {
            const int gemm = (k + r) % 2; /* the order alternates */
            double start = now_seconds();
            if (gemm) {
                for (int s = 0; s < steps; s++) {
                    gemm_step(&g);
                }
            } else {
                st = bl_lm_trainer_run(t, steps, remember, &loss);
            }
            (gemm ? b : a)[r] = tokens / (now_seconds() - start);
        }
        fprintf(stderr, "rep %d: ballast %.0f, GEMM limit %.0f tokens/s\n", r, a[r], b[r]);
    }
    if (st != BL_OK) {
        fprintf(stderr, "bench_gpt_gemm: %s\n", bl_last_error(rt));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    summary_t sa = summarize(a, reps), sb = summarize(b, reps);
    double ratio[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        ratio[r] = a[r] / b[r];
    }
    summary_t sr = summarize(ratio, reps);
    printf("GPT-2 L=%d NH=%d C=%d T=%d V=%d B=%d, %d BLAS thread(s), %d reps x %d steps\n", L, NH,
           C, T, V, B, threads, reps, steps);
    printf("(a) ballast train step   %8.0f tokens/s (%.0f-%.0f)\n", sa.median, sa.min, sa.max);
    printf("(b) GEMM-bound limit     %8.0f tokens/s (%.0f-%.0f)\n", sb.median, sb.min, sb.max);
    printf("gemm_fraction=%.3f (range %.3f-%.3f; target >= 0.8) last_loss=%.4f\n", sr.median,
           sr.min, sr.max, loss);
    bl_lm_trainer_destroy(t);
    bl_token_set_destroy(set);
    bl_runtime_destroy(rt);
    free(g.x);
    free(g.w);
    free(g.y);
    free(g.att);
    free(g.scratch);
    MPI_Finalize();
    return 0;
}
