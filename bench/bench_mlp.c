/* bench_mlp: training throughput of ballast on one core, against the limit
 * its matrix products set and (optionally) against PyTorch doing the same.
 *
 * The model is ballast-train --layers 1024,1024,1024 on Fashion-MNIST:
 *   784 → 1024 → ReLU → 1024 → ReLU → 1024 → ReLU → 10, batch 256,
 *   SGD lr 0.05, momentum 0.9, one BLAS thread.
 * Three figures, measured in one run with their repetitions interleaved
 * (a b c, b a c, ...) so that machine noise hits all of them alike:
 *   (a) ballast: S steps of bl_trainer_run (public API only);
 *   (b) GEMM-bound limit: S times exactly the cblas_sgemm calls one training
 *       step makes (kernels/dense.c), same shapes and transposes, nothing else;
 *   (c) optionally, the PyTorch peer script, run as a child process.
 * Every figure is samples/s; the program prints the median and the range over
 * the repetitions, then the ratios ballast / limit and ballast / PyTorch.
 * Figures only: the exit status is 0 unless something failed to run. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "bench_stats.h"
#include <unistd.h>

#include <cblas.h>

#include "ballast.h"

/* ---- The model --------------------------------------------------------- */

enum {
    BATCH = 256,
    DENSE_LAYERS = 4,
    WIDEST = 1024, /* the widest layer output: the input-gradient buffers' width */
    WARMUP_STEPS = 10,
    MAX_REPS = 1000,
};

/* widths[l] → widths[l + 1] is dense layer l; ReLU after every one but the
 * last. */
static const int widths[DENSE_LAYERS + 1] = {784, 1024, 1024, 1024, 10};
static const float LR = 0.05f;
static const float MOMENTUM = 0.9f;

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

/* Multiply-adds of the GEMMs in one step: per layer B·in·out for the forward
 * and for dW, and again for dx on every layer but the first. */
static double gemm_flops_per_step(void)
{
    double macs = 0.0;
    for (int l = 0; l < DENSE_LAYERS; l++) {
        double layer = (double)BATCH * widths[l] * widths[l + 1];
        macs += (l == 0 ? 2.0 : 3.0) * layer;
    }
    return 2.0 * macs;
}

/* ---- Options ----------------------------------------------------------- */

typedef struct options {
    const char *data; /* directory of the Fashion-MNIST IDX files */
    const char *peer; /* path of torch_ddp_fmnist.py, or NULL */
    int reps;         /* R */
    long steps;       /* S: steps per repetition of (a) and (b) */
    long peer_steps;  /* steps per repetition of (c) */
} options_t;

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_mlp [options]\n"
               "Training throughput of ballast (784-1024-1024-1024-10 ReLU MLP, batch 256,\n"
               "one BLAS thread) against the GEMM-bound limit and, with --peer, PyTorch.\n"
               "  --data DIR        Fashion-MNIST IDX files (default " DEFAULT_DATA ")\n"
               "  --reps R          repetitions of every figure (default 5)\n"
               "  --steps S         training steps per repetition (default 50)\n"
               "  --peer PATH       also run the PyTorch peer script PATH with /usr/bin/python3\n"
               "  --peer-steps N    steps per peer repetition (default 100)\n"
               "  --help            this text\n");
}

/* A positive integer option, or -1. */
static long parse_positive(const char *text)
{
    char *end = NULL;
    long v = strtol(text, &end, 10);
    return end != text && *end == '\0' && v > 0 ? v : -1;
}

/* 0: run; 1: stop with status 0 (--help); -1: bad usage (message printed). */
static int parse_options(int argc, char **argv, options_t *o)
{
    static const struct option longs[] = {{"data", required_argument, NULL, 'd'},
                                          {"reps", required_argument, NULL, 'r'},
                                          {"steps", required_argument, NULL, 's'},
                                          {"peer", required_argument, NULL, 'p'},
                                          {"peer-steps", required_argument, NULL, 'n'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    *o = (options_t){.data = DEFAULT_DATA, .reps = 5, .steps = 50, .peer_steps = 100};
    int c, index = 0;
    while ((c = getopt_long(argc, argv, "", longs, &index)) != -1) {
        long v = 0;
        switch (c) {
        case 'd':
            o->data = optarg;
            break;
        case 'p':
            o->peer = optarg;
            break;
        case 'r':
        case 's':
        case 'n':
            v = parse_positive(optarg);
            if (v < 0 || (c == 'r' && v > MAX_REPS)) {
                fprintf(stderr, "bench_mlp: bad value '%s' for --%s\n", optarg, longs[index].name);
                return -1;
            }
            if (c == 'r') {
                o->reps = (int)v;
            } else if (c == 's') {
                o->steps = v;
            } else {
                o->peer_steps = v;
            }
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bench_mlp: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}

/* ---- Time and statistics ----------------------------------------------- */

/* ---- (a) ballast through the public API -------------------------------- */

typedef struct ballast_bench {
    bl_runtime_t *rt;
    bl_dataset_t *train;
    bl_model_t *model;
    bl_trainer_t *trainer;
    double last_loss; /* of the last step run: shows that training is sane */
} ballast_bench_t;

static void ballast_teardown(ballast_bench_t *a)
{
    bl_trainer_destroy(a->trainer);
    bl_model_destroy(a->model);
    bl_dataset_destroy(a->train);
    bl_runtime_destroy(a->rt);
    memset(a, 0, sizeof *a);
}

/* dir/name.gz when it exists, else dir/name (as ballast-train looks). */
static void data_path(const char *dir, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s.gz", dir, name);
    if (access(out, F_OK) != 0) {
        snprintf(out, n, "%s/%s", dir, name);
    }
}

/* The runtime (one BLAS thread), the training set, the model and its trainer. */
static bl_status_t ballast_setup(const options_t *o, ballast_bench_t *a)
{
    memset(a, 0, sizeof *a);
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.blas_threads = 1;
    cfg.log_level = BL_LOG_WARN;
    bl_status_t st = bl_runtime_create(MPI_COMM_WORLD, &cfg, &a->rt);
    if (st != BL_OK) {
        fprintf(stderr, "bench_mlp: cannot create the runtime: %s\n", bl_status_string(st));
        return st;
    }
    char images[4096], labels[4096];
    data_path(o->data, "train-images-idx3-ubyte", images, sizeof images);
    data_path(o->data, "train-labels-idx1-ubyte", labels, sizeof labels);
    st = bl_dataset_open_idx(a->rt, images, labels, widths[DENSE_LAYERS], &a->train);
    if (st == BL_OK) {
        st = bl_model_create(a->rt, widths[0], &a->model);
    }
    for (int l = 0; l < DENSE_LAYERS && st == BL_OK; l++) {
        st = bl_model_add_dense(a->model, widths[l + 1]);
        if (st == BL_OK && l + 1 < DENSE_LAYERS) {
            st = bl_model_add_relu(a->model);
        }
    }
    if (st == BL_OK) {
        st = bl_model_build(a->model, 1);
    }
    if (st == BL_OK) {
        bl_train_config_t tc = BL_TRAIN_CONFIG_INIT;
        tc.batch = BATCH;
        tc.optimizer.lr = LR;
        tc.optimizer.momentum = MOMENTUM;
        st = bl_trainer_create(a->rt, a->model, a->train, &tc, &a->trainer);
    }
    if (st != BL_OK) {
        fprintf(stderr, "bench_mlp: ballast setup failed: %s: %s\n", bl_status_string(st),
                bl_last_error(a->rt));
    }
    return st;
}

static int remember_loss(const bl_step_info_t *info, void *arg)
{
    *(double *)arg = info->loss;
    return 0;
}

/* Runs steps training steps; *seconds is their wall time. */
static bl_status_t ballast_run(ballast_bench_t *a, long steps, double *seconds)
{
    double start = now_seconds();
    bl_status_t st = bl_trainer_run(a->trainer, steps, remember_loss, &a->last_loss);
    *seconds = now_seconds() - start;
    if (st != BL_OK) {
        fprintf(stderr, "bench_mlp: training failed: %s: %s\n", bl_status_string(st),
                bl_last_error(a->rt));
    }
    return st;
}

/* ---- (b) the GEMMs of one step, nothing else --------------------------- */

/* Buffers laid out as the model and trainer lay theirs out: parameters
 * (W then b per layer) in one allocation, gradients in another, the dense
 * layers' outputs in a third, two ping-pong (B, widest) input-gradient
 * buffers. Only dlogits differs: the trainer's lives in a ping-pong buffer
 * and is rewritten by the loss every step; here it has its own buffer, so the
 * backward pass starts from the same values every step (reusing the last dx
 * would shrink the values step after step down to denormals, which are slow). */
typedef struct gemm_bench {
    float *x;                /* (B, 784): a batch of inputs in [0, 1) */
    float *params, *grads;   /* every layer's W (out, in) and b (out) */
    float *w[DENSE_LAYERS];  /* views of params */
    float *dw[DENSE_LAYERS]; /* views of grads */
    float *act_mem;          /* the dense layers' outputs */
    float *y[DENSE_LAYERS];  /* (B, out_l) views of act_mem */
    float *dlogits;          /* (B, 10) */
    float *dgrad[2];         /* (B, WIDEST) each */
} gemm_bench_t;

static void gemm_teardown(gemm_bench_t *g)
{
    free(g->x);
    free(g->params);
    free(g->grads);
    free(g->act_mem);
    free(g->dlogits);
    free(g->dgrad[0]);
    free(g->dgrad[1]);
    memset(g, 0, sizeof *g);
}

static float *alloc_floats(size_t count)
{
    return malloc(count * sizeof(float));
}

/* Allocates the buffers and fills them with values of realistic magnitude:
 * pixels in [0, 1), W in ±1/√in as the model initialises them, dlogits in
 * ±0.5 like softmax − onehot. No zeros, no denormals. 0, or -1 without memory. */
static int gemm_setup(gemm_bench_t *g)
{
    memset(g, 0, sizeof *g);
    size_t param_count = 0, act_count = 0;
    for (int l = 0; l < DENSE_LAYERS; l++) {
        param_count += (size_t)widths[l] * (size_t)widths[l + 1] + (size_t)widths[l + 1];
        act_count += (size_t)BATCH * (size_t)widths[l + 1];
    }
    g->x = alloc_floats((size_t)BATCH * (size_t)widths[0]);
    g->params = alloc_floats(param_count);
    g->grads = alloc_floats(param_count);
    g->act_mem = alloc_floats(act_count);
    g->dlogits = alloc_floats((size_t)BATCH * (size_t)widths[DENSE_LAYERS]);
    g->dgrad[0] = alloc_floats((size_t)BATCH * WIDEST);
    g->dgrad[1] = alloc_floats((size_t)BATCH * WIDEST);
    if (!g->x || !g->params || !g->grads || !g->act_mem || !g->dlogits || !g->dgrad[0] ||
        !g->dgrad[1]) {
        gemm_teardown(g);
        fprintf(stderr, "bench_mlp: no memory for the GEMM buffers\n");
        return -1;
    }
    float *p = g->params, *d = g->grads, *y = g->act_mem;
    for (int l = 0; l < DENSE_LAYERS; l++) {
        size_t w_count = (size_t)widths[l] * (size_t)widths[l + 1];
        size_t layer_count = w_count + (size_t)widths[l + 1];
        float bound = 1.0f / sqrtf((float)widths[l]);
        bl_fill_uniform(p, layer_count, -bound, bound, 100 + (uint64_t)l);
        memset(d, 0, layer_count * sizeof(float));
        g->w[l] = p;
        g->dw[l] = d;
        g->y[l] = y;
        p += layer_count;
        d += layer_count;
        y += (size_t)BATCH * (size_t)widths[l + 1];
    }
    bl_fill_uniform(g->x, (size_t)BATCH * (size_t)widths[0], 0.0f, 1.0f, 1);
    bl_fill_uniform(g->dlogits, (size_t)BATCH * (size_t)widths[DENSE_LAYERS], -0.5f, 0.5f, 2);
    bl_fill_uniform(g->act_mem, act_count, 0.0f, 1.0f, 3);
    bl_fill_uniform(g->dgrad[0], (size_t)BATCH * WIDEST, -0.5f, 0.5f, 4);
    bl_fill_uniform(g->dgrad[1], (size_t)BATCH * WIDEST, -0.5f, 0.5f, 5);
    return 0;
}

/* Exactly the cblas_sgemm calls of one training step, in the order the
 * model makes them (kernels/dense.c). */
static void gemm_step(gemm_bench_t *g)
{
    const int B = BATCH;
    /* Forward, layer by layer: y_l (B, out) = x_l (B, in) · W_l^T, W_l (out, in). */
    const float *in = g->x;
    for (int l = 0; l < DENSE_LAYERS; l++) {
        int n_in = widths[l], n_out = widths[l + 1];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, n_out, n_in, 1.0f, in, n_in,
                    g->w[l], n_in, 0.0f, g->y[l], n_out);
        in = g->y[l];
    }
    /* Backward, last layer first. dy of the last layer is dlogits (B, 10). */
    const float *dy = g->dlogits;
    int cur = 0; /* dx goes to dgrad[cur], then becomes the next layer's dy */
    for (int l = DENSE_LAYERS - 1; l >= 0; l--) {
        int n_in = widths[l], n_out = widths[l + 1];
        const float *x_l = l == 0 ? g->x : g->y[l - 1];
        /* dW_l (out, in) = dy (B, out)^T · x_l (B, in). */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, B, 1.0f, dy, n_out, x_l,
                    n_in, 0.0f, g->dw[l], n_in);
        /* dx (B, in) = dy (B, out) · W_l (out, in); not for the first layer. */
        if (l > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, n_in, n_out, 1.0f, dy, n_out,
                        g->w[l], n_in, 0.0f, g->dgrad[cur], n_in);
            dy = g->dgrad[cur];
            cur = 1 - cur;
        }
    }
}

/* Runs steps GEMM steps; returns their wall time. */
static double gemm_run(gemm_bench_t *g, long steps)
{
    double start = now_seconds();
    for (long s = 0; s < steps; s++) {
        gemm_step(g);
    }
    return now_seconds() - start;
}

/* ---- (c) the PyTorch peer ---------------------------------------------- */

/* s in single quotes for /bin/sh (every ' becomes '\''). 0, or -1 when it
 * does not fit in n bytes. */
static int shell_quote(const char *s, char *out, size_t n)
{
    size_t k = 0;
    if (n < 3) {
        return -1;
    }
    out[k++] = '\'';
    for (; *s != '\0'; s++) {
        const char *piece = *s == '\'' ? "'\\''" : NULL;
        size_t len = piece ? 4 : 1;
        if (k + len + 2 > n) {
            return -1;
        }
        if (piece) {
            memcpy(out + k, piece, len);
        } else {
            out[k] = *s;
        }
        k += len;
    }
    out[k++] = '\'';
    out[k] = '\0';
    return 0;
}

/* Runs the peer once; *samples_per_s is the samples/s= figure of its output
 * line. 0, or -1 (message printed) when it fails to run or prints no figure. */
static int peer_run(const options_t *o, double *samples_per_s)
{
    char path[4096], data[4096], cmd[9000];
    if (shell_quote(o->peer, path, sizeof path) != 0 ||
        shell_quote(o->data, data, sizeof data) != 0) {
        fprintf(stderr, "bench_mlp: peer or data path too long\n");
        return -1;
    }
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s --plain --threads 1 --hidden 1024,1024,1024 --batch %d "
             "--steps %ld --lr %g --data %s 2>&1",
             path, BATCH, o->peer_steps, (double)LR, data);
    fflush(stdout);
    FILE *f = popen(cmd, "r");
    if (f == NULL) {
        perror("bench_mlp: popen");
        return -1;
    }
    char line[4096];
    int found = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        const char *at = strstr(line, "samples/s=");
        if (at != NULL && sscanf(at, "samples/s=%lf", samples_per_s) == 1) {
            found = 1;
        } else {
            fprintf(stderr, "peer: %s", line); /* warnings and errors, passed on */
        }
    }
    int status = pclose(f);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || !found) {
        fprintf(stderr, "bench_mlp: the peer failed (%s): %s\n",
                found ? "non-zero exit status" : "no samples/s= in its output", cmd);
        return -1;
    }
    return 0;
}

/* ---- Report ------------------------------------------------------------ */

/* "model name" of /proc/cpuinfo, or "unknown". */
static void cpu_model(char *out, size_t n)
{
    snprintf(out, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL) {
        return;
    }
    char line[512];
    while (fgets(line, sizeof line, f) != NULL) {
        const char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            snprintf(out, n, "%s", colon + 2);
            out[strcspn(out, "\n")] = '\0';
            break;
        }
    }
    fclose(f);
}

static void print_machine(const options_t *o)
{
    char cpu[256], load[128] = "unknown";
    cpu_model(cpu, sizeof cpu);
    FILE *f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        if (fgets(load, sizeof load, f) != NULL) {
            load[strcspn(load, "\n")] = '\0';
        }
        fclose(f);
    }
    printf("bench_mlp: 784-1024-1024-1024-10 ReLU MLP, batch %d, lr %g, momentum %g\n", BATCH,
           (double)LR, (double)MOMENTUM);
    printf("  ballast %d.%d.%d, %d reps x %ld steps (after %d warm-up steps)", BL_VERSION_MAJOR,
           BL_VERSION_MINOR, BL_VERSION_PATCH, o->reps, o->steps, WARMUP_STEPS);
    if (o->peer != NULL) {
        printf(", peer %ld steps", o->peer_steps);
    }
    printf("\n  cpu: %s, %ld online\n", cpu, sysconf(_SC_NPROCESSORS_ONLN));
    printf("  openblas: %s\n  openblas core: %s, threads %d\n", openblas_get_config(),
           openblas_get_corename(), openblas_get_num_threads());
    printf("  loadavg at start: %s\n", load);
    printf("  GEMM work per step: %.3f GFLOP\n\n", gemm_flops_per_step() * 1e-9);
    fflush(stdout); /* before the progress lines on stderr */
}

static void print_row(const char *name, const double *rates, int n)
{
    summary_t s = summarize(rates, n);
    double step_s = BATCH / s.median;
    printf("%-26s %10.0f   %8.0f - %-8.0f %9.2f %9.1f\n", name, s.median, s.min, s.max,
           1e3 * step_s, gemm_flops_per_step() / step_s * 1e-9);
}

/* "name: median   (pairs min - max)   (target)": the ratio of the two
 * figures' medians, and the range of the ratios within each repetition. */
static void print_ratio(const char *name, const double *num, const double *den, int n,
                        const char *target)
{
    double pairs[MAX_REPS];
    for (int r = 0; r < n; r++) {
        pairs[r] = num[r] / den[r];
    }
    summary_t s = summarize(pairs, n);
    printf("%-27s %.3f   (per repetition %.3f - %.3f)   target %s\n", name,
           summarize(num, n).median / summarize(den, n).median, s.min, s.max, target);
}

static void print_report(const options_t *o, const double *a, const double *b, const double *c,
                         double last_loss)
{
    printf("%-26s %10s   %-19s %9s %9s\n", "figure", "samples/s", "min - max", "ms/step",
           "GFLOP/s*");
    print_row("(a) ballast train step", a, o->reps);
    print_row("(b) GEMM-bound limit", b, o->reps);
    if (c != NULL) {
        print_row("(c) PyTorch peer", c, o->reps);
    }
    printf("* the step's GEMM flops over its whole time (medians)\n\n");
    print_ratio("ballast / GEMM-bound limit:", a, b, o->reps, ">= 0.90");
    if (c != NULL) {
        print_ratio("ballast / PyTorch:", a, c, o->reps, ">= 1.0");
    }
    printf("ballast last training loss: %.4f\n", last_loss);
}

/* ---- Main -------------------------------------------------------------- */

/* One repetition of (a) and of (b): *rate_a and *rate_b in samples/s.
 * b_first swaps their order. 0, or -1 when training failed. */
static int run_pair(const options_t *o, ballast_bench_t *a, gemm_bench_t *g, int b_first,
                    double *rate_a, double *rate_b)
{
    double seconds = 0.0;
    if (b_first) {
        *rate_b = (double)o->steps * BATCH / gemm_run(g, o->steps);
    }
    if (ballast_run(a, o->steps, &seconds) != BL_OK) {
        return -1;
    }
    *rate_a = (double)o->steps * BATCH / seconds;
    if (!b_first) {
        *rate_b = (double)o->steps * BATCH / gemm_run(g, o->steps);
    }
    return 0;
}

/* Warm-up, then the interleaved repetitions: a b c, b a c, a b c, ... (the
 * order of a and b alternates, so neither always follows the peer).
 * 0, or -1 when a run failed. */
static int measure(const options_t *o, ballast_bench_t *a, gemm_bench_t *g, double *rate_a,
                   double *rate_b, double *rate_c)
{
    double seconds = 0.0;
    if (ballast_run(a, WARMUP_STEPS, &seconds) != BL_OK) {
        return -1;
    }
    gemm_run(g, WARMUP_STEPS);
    for (int r = 0; r < o->reps; r++) {
        if (run_pair(o, a, g, r % 2, &rate_a[r], &rate_b[r]) != 0) {
            return -1;
        }
        if (o->peer != NULL && peer_run(o, &rate_c[r]) != 0) {
            return -1;
        }
        fprintf(stderr, "rep %d/%d: ballast %.0f, GEMM limit %.0f", r + 1, o->reps, rate_a[r],
                rate_b[r]);
        if (o->peer != NULL) {
            fprintf(stderr, ", PyTorch %.0f", rate_c[r]);
        }
        fprintf(stderr, " samples/s\n");
    }
    return 0;
}

int main(int argc, char **argv)
{
    options_t o;
    int parsed = parse_options(argc, argv, &o);
    if (parsed != 0) {
        return parsed > 0 ? 0 : 1;
    }
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
        fprintf(stderr, "bench_mlp: MPI_Init failed\n");
        return 1;
    }
    ballast_bench_t a = {0};
    gemm_bench_t g = {0};
    double rate_a[MAX_REPS], rate_b[MAX_REPS], rate_c[MAX_REPS];
    int failed = ballast_setup(&o, &a) != BL_OK || gemm_setup(&g) != 0;
    if (!failed) {
        print_machine(&o); /* after setup: the runtime has set the BLAS threads */
        failed = measure(&o, &a, &g, rate_a, rate_b, rate_c) != 0;
    }
    if (!failed) {
        print_report(&o, rate_a, rate_b, o.peer != NULL ? rate_c : NULL, a.last_loss);
    }
    gemm_teardown(&g);
    ballast_teardown(&a);
    MPI_Finalize();
    return failed ? 1 : 0;
}
