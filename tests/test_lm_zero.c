/* ZeRO-1's reduce-scatter, sliced AdamW step, all-gather and moment gather
 * (runtime/lm/lm_zero.h) under mpirun (label mpi), against one process's
 * arithmetic, BIT FOR BIT. Every rank fills its gradients with floats whose
 * sums round (so a sum out of rank order shows on 3 ranks or more); each
 * rank's summed slice must be the rank-order sum, the loss and the norm
 * must be the node-local reduction's (slices' squares in blocks of 512,
 * added in rank order), and after two AdamW steps every rank's parameters,
 * and the moments gathered to the last rank, must equal a whole model's
 * stepped by bl_gpt2_adamw_ranges on the same sums. It runs with the
 * trainer's bucket (one round, one all-gather) and with tiny buckets and
 * messages (many rounds, each slice broadcast in pieces), and with a
 * checkpoint's moments put back as every rank's slice. Every rank counts
 * its failures (mpi_check.h). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "lm_zero.h"
#include "mpi_check.h"
#include "runtime_impl.h"

static const bl_gpt2_config_t CFG = {.max_seq_len = 8,
                                     .vocab_size = 50,
                                     .num_layers = 2,
                                     .num_heads = 2,
                                     .channels = 16,
                                     .padded_vocab_size = 64};

enum { TOKENS = 37, UNITS = 4 /* the embedding, 2 blocks, the head */ };

/* Rank r's gradient i at step s: values of many magnitudes. */
static float grad_of(int r, size_t i, int s)
{
    return (float)(sin(0.37 * (double)i + 1.3 * r + 0.7 * s) * (1.0 + (double)((i * 7 + r) % 13)));
}

/* The rank-order sum of every rank's gradient i. */
static float summed(int ranks, size_t i, int s)
{
    float sum = grad_of(0, i, s);
    for (int q = 1; q < ranks; q++) {
        sum += grad_of(q, i, s);
    }
    return sum;
}

/* The norm as the node-local reduction takes it from the summed gradient
 * g: each slice's sub-ranges in blocks of 512, the slices in rank order. */
static double node_norm(const bl_gpt2_t *model, const float *g, int ranks, long tokens)
{
    double squares = 0.0;
    for (int k = 0; k < ranks; k++) {
        bl_gpt2_range_t slice[BL_GPT2_MAX_RANGES];
        const int n = bl_lm_zero_slice_ranges(model, 0, UNITS, k, ranks, slice);
        double mine = 0.0;
        for (int r = 0; r < n; r++) {
            for (size_t i = 0; i < slice[r].count; i += 512) {
                const size_t m = slice[r].count - i < 512 ? slice[r].count - i : 512;
                mine += model->kernels->sum_squares(m, g + slice[r].offset + i);
            }
        }
        squares += mine;
    }
    return sqrt(squares) / (double)tokens;
}

/* Two steps of ZeRO-1 with the given bucket and message size against the
 * whole model `ref`, from the parameters and moments it holds. */
static void check_steps(bl_runtime_t *rt, bl_gpt2_t *model, bl_gpt2_t *ref, size_t bucket,
                        size_t piece)
{
    const int rank = rt->rank, P = rt->size;
    const size_t N = model->param_count;
    bl_lm_zero_t *z = NULL;
    bl_status_t st =
        bl_lm_zero_create(rt, rt->comm, MPI_COMM_NULL, model, 0, UNITS, 0, bucket, piece, &z);
    check(st == BL_OK, "create (bucket %zu, piece %zu): %s", bucket, piece, bl_last_error(rt));
    if (st != BL_OK) {
        return;
    }
    /* The checkpoint's state goes in: every rank its slice of the moments. */
    memcpy(model->params, ref->params, N * sizeof(float));
    bl_lm_zero_put_moments(z, ref->adam_m, ref->adam_v);
    const bl_gpt2_adamw_t opt = {.lr = 1e-2f,
                                 .beta1 = 0.9f,
                                 .beta2 = 0.95f,
                                 .eps = 1e-8f,
                                 .weight_decay = 0.1f,
                                 .max_grad_norm = 1.0f};
    bl_gpt2_range_t all[BL_GPT2_MAX_RANGES];
    const int all_count = bl_gpt2_unit_ranges(ref, 0, CFG.num_layers + 2, all);
    bl_gpt2_range_t slice[BL_GPT2_MAX_RANGES];
    const int slice_count = bl_lm_zero_slice_ranges(model, 0, UNITS, rank, P, slice);
    for (int s = 0; s < 2 && st == BL_OK; s++) {
        for (size_t i = 0; i < N; i++) {
            model->grads[i] = grad_of(rank, i, s);
            ref->grads[i] = summed(P, i, s);
        }
        double loss = rank + 0.25, norm = 0.0;
        st = bl_lm_zero_reduce(z, TOKENS, &loss, &norm);
        check(st == BL_OK, "reduce, step %d: %s", s, bl_last_error(rt));
        if (st != BL_OK) {
            break;
        }
        size_t wrong = 0;
        for (int r = 0; r < slice_count; r++) {
            for (size_t i = slice[r].offset; i < slice[r].offset + slice[r].count; i++) {
                wrong += memcmp(&model->grads[i], &ref->grads[i], sizeof(float)) != 0;
            }
        }
        check(wrong == 0, "step %d: %zu summed gradients of the slice differ from rank order", s,
              wrong);
        double want_loss = 0.0;
        for (int q = 0; q < P; q++) {
            want_loss += q + 0.25;
        }
        const double want_norm = node_norm(ref, ref->grads, P, TOKENS);
        check(loss == want_loss, "step %d: loss %.17g, expected %.17g", s, loss, want_loss);
        check(norm == want_norm, "step %d: norm %.17g, expected %.17g", s, norm, want_norm);
        const float scale = (float)bl_gpt2_grad_scale(norm, TOKENS, opt.max_grad_norm);
        st = bl_lm_zero_update(z, &opt, scale, s + 1);
        check(st == BL_OK, "update, step %d: %s", s, bl_last_error(rt));
        bl_gpt2_adamw_ranges(ref, &opt,
                             (float)bl_gpt2_grad_scale(want_norm, TOKENS, opt.max_grad_norm), s + 1,
                             all, all_count);
        check(memcmp(model->params, ref->params, N * sizeof(float)) == 0,
              "step %d (bucket %zu, piece %zu): parameters differ from the whole model's", s,
              bucket, piece);
    }
    float *m = NULL, *v = NULL;
    if (st == BL_OK) {
        st = bl_lm_zero_gather_moments(z, P - 1, &m, &v);
        check(st == BL_OK, "gather: %s", bl_last_error(rt));
    }
    if (st == BL_OK && rank == P - 1) {
        check(m != NULL && memcmp(m, ref->adam_m, N * sizeof(float)) == 0 &&
                  memcmp(v, ref->adam_v, N * sizeof(float)) == 0,
              "gathered moments differ from the whole model's");
    } else if (st == BL_OK) {
        check(m == NULL && v == NULL, "a rank other than the root got moments");
    }
    bl_mem_free(bl_rt_allocator(rt), m);
    bl_mem_free(bl_rt_allocator(rt), v);
    bl_lm_zero_destroy(z);
}

/* The expected sums of two stages' gradients (map stage_first, D
 * pipelines, rank r stage r % 2 of pipeline r / 2) at step s into
 * ref->grads: each stage's ranges summed over its replicas in pipeline
 * order, and wte, which both stages hold, as each pipeline's two sums
 * added first (the swap), then over the pipelines in order. */
static void pipeline_sums(bl_gpt2_t *ref, const int *stage_first, int D, int s)
{
    for (int t = 0; t < 2; t++) {
        bl_gpt2_range_t r[BL_GPT2_MAX_RANGES];
        const int n = bl_gpt2_unit_ranges(ref, stage_first[t], stage_first[t + 1], r);
        for (int k = 0; k < n; k++) {
            for (size_t i = r[k].offset; i < r[k].offset + r[k].count; i++) {
                float sum = 0.0f;
                for (int q = 0; q < D; q++) {
                    float mine = grad_of(2 * q + t, i, s);
                    if (r[k].tensor == BL_GPT2_WTE) {
                        mine = grad_of(2 * q, i, s) + grad_of(2 * q + 1, i, s);
                    }
                    sum = q == 0 ? mine : sum + mine;
                }
                ref->grads[i] = sum;
            }
        }
    }
}

/* The norm of two stages as ZeRO-1 takes it: each stage's slices' squares
 * (wte left out on the last stage) added in rank order, then the stages'. */
static double pipeline_norm(const bl_gpt2_t *ref, const int *stage_first, int D, long tokens)
{
    double total = 0.0;
    for (int t = 0; t < 2; t++) {
        double stage = 0.0;
        for (int k = 0; k < D; k++) {
            bl_gpt2_range_t slice[BL_GPT2_MAX_RANGES];
            const int n =
                bl_lm_zero_slice_ranges(ref, stage_first[t], stage_first[t + 1], k, D, slice);
            double mine = 0.0;
            for (int r = 0; r < n; r++) {
                for (size_t i = 0;
                     i < slice[r].count && !(t == 1 && slice[r].tensor == BL_GPT2_WTE); i += 512) {
                    const size_t m = slice[r].count - i < 512 ? slice[r].count - i : 512;
                    mine += ref->kernels->sum_squares(m, ref->grads + slice[r].offset + i);
                }
            }
            stage += mine;
        }
        total += stage;
    }
    return sqrt(total) / (double)tokens;
}

/* Whether a and b agree over units [first, last)'s ranges, bit for bit. */
static int same_over(const bl_gpt2_t *g, int first, int last, const float *a, const float *b)
{
    bl_gpt2_range_t r[BL_GPT2_MAX_RANGES];
    const int n = bl_gpt2_unit_ranges(g, first, last, r);
    int same = 1;
    for (int k = 0; k < n; k++) {
        same = same && memcmp(a + r[k].offset, b + r[k].offset, r[k].count * sizeof(float)) == 0;
    }
    return same;
}

/* Two stages (the embedding and block 0; block 1 and the head) of P / 2
 * pipelines: two steps of the swap of wte's gradient, the reduce-scatters,
 * the loss and norm in rank then stage order, and the sliced update,
 * against the whole model `ref` stepped on the same sums, bit for bit on
 * each stage's units (wte the same on both stages); then the stage's
 * moments gathered to every replica, and the state rebuilt for other
 * units (a move) from whole moments, gathered again. */
static void check_pipeline(bl_runtime_t *rt, bl_gpt2_t *model, bl_gpt2_t *ref, size_t bucket,
                           size_t piece)
{
    const int rank = rt->rank, D = rt->size / 2, stage = rank % 2, replica = rank / 2;
    const int map[3] = {0, 2, UNITS}, moved[3] = {0, 1, UNITS};
    const size_t N = model->param_count;
    MPI_Comm dp = MPI_COMM_NULL, pipe = MPI_COMM_NULL;
    MPI_Comm_split(rt->comm, stage, replica, &dp);
    MPI_Comm_split(rt->comm, replica, stage, &pipe);
    bl_lm_zero_t *z = NULL;
    bl_status_t st =
        bl_lm_zero_create(rt, dp, pipe, model, map[stage], map[stage + 1], 0, bucket, piece, &z);
    check(st == BL_OK, "pipeline create: %s", bl_last_error(rt));
    const bl_gpt2_adamw_t opt = {.lr = 1e-2f,
                                 .beta1 = 0.9f,
                                 .beta2 = 0.95f,
                                 .eps = 1e-8f,
                                 .weight_decay = 0.1f,
                                 .max_grad_norm = 1.0f};
    bl_gpt2_range_t all[BL_GPT2_MAX_RANGES];
    const int all_count = bl_gpt2_unit_ranges(ref, 0, UNITS, all);
    if (st == BL_OK) {
        memcpy(model->params, ref->params, N * sizeof(float));
        bl_lm_zero_put_moments(z, ref->adam_m, ref->adam_v);
    }
    for (int s = 0; s < 2 && st == BL_OK; s++) {
        for (size_t i = 0; i < N; i++) {
            model->grads[i] = grad_of(rank, i, s);
        }
        pipeline_sums(ref, map, D, s);
        double loss = stage == 1 ? replica + 0.5 : 0.0, norm = 0.0, want_loss = 0.0;
        for (int q = 0; q < D; q++) {
            want_loss += q + 0.5;
        }
        st = bl_lm_zero_reduce(z, TOKENS, &loss, &norm);
        check(st == BL_OK, "pipeline reduce, step %d: %s", s, bl_last_error(rt));
        if (st != BL_OK) {
            break;
        }
        bl_gpt2_range_t slice[BL_GPT2_MAX_RANGES];
        const int n = bl_lm_zero_ranges(z, slice);
        size_t wrong = 0;
        for (int r = 0; r < n; r++) {
            wrong += memcmp(model->grads + slice[r].offset, ref->grads + slice[r].offset,
                            slice[r].count * sizeof(float)) != 0;
        }
        check(wrong == 0, "pipeline step %d: %zu summed sub-ranges differ", s, wrong);
        const double want_norm = pipeline_norm(ref, map, D, TOKENS);
        check(loss == 0.0 + want_loss, "pipeline step %d: loss %.17g, expected %.17g", s, loss,
              want_loss);
        check(norm == want_norm, "pipeline step %d: norm %.17g, expected %.17g", s, norm,
              want_norm);
        const float scale = (float)bl_gpt2_grad_scale(want_norm, TOKENS, opt.max_grad_norm);
        st = bl_lm_zero_update(z, &opt, scale, s + 1);
        check(st == BL_OK, "pipeline update, step %d: %s", s, bl_last_error(rt));
        bl_gpt2_adamw_ranges(ref, &opt, scale, s + 1, all, all_count);
        check(same_over(model, map[stage], map[stage + 1], model->params, ref->params),
              "pipeline step %d (bucket %zu, piece %zu): stage %d's parameters differ", s, bucket,
              piece, stage);
    }
    float *m = NULL, *v = NULL;
    if (st == BL_OK) {
        st = bl_lm_zero_gather_moments(z, -1, &m, &v);
        check(st == BL_OK && same_over(model, map[stage], map[stage + 1], m, ref->adam_m) &&
                  same_over(model, map[stage], map[stage + 1], v, ref->adam_v),
              "stage %d's gathered moments differ from the whole model's", stage);
    }
    bl_mem_free(bl_rt_allocator(rt), m);
    bl_mem_free(bl_rt_allocator(rt), v);
    m = v = NULL;
    /* A move: block 0 to stage 1, its moments from the whole arrays. */
    if (st == BL_OK) {
        st = bl_lm_zero_restage(z, moved[stage], moved[stage + 1], ref->adam_m, ref->adam_v);
        check(st == BL_OK, "restage: %s", bl_last_error(rt));
    }
    if (st == BL_OK) {
        st = bl_lm_zero_gather_moments(z, 0, &m, &v);
        check(st == BL_OK, "gather after the restage: %s", bl_last_error(rt));
    }
    if (st == BL_OK && replica == 0) {
        check(m != NULL && same_over(model, moved[stage], moved[stage + 1], m, ref->adam_m) &&
                  same_over(model, moved[stage], moved[stage + 1], v, ref->adam_v),
              "stage %d's moments after the restage differ", stage);
    }
    bl_mem_free(bl_rt_allocator(rt), m);
    bl_mem_free(bl_rt_allocator(rt), v);
    bl_lm_zero_destroy(z);
    MPI_Comm_free(&dp);
    MPI_Comm_free(&pipe);
}

/* Fills the whole model's parameters and moments, the same on every rank. */
static void fill(bl_gpt2_t *ref)
{
    for (size_t i = 0; i < ref->param_count; i++) {
        ref->params[i] = 0.02f * (float)((int)(i % 97) - 48);
        ref->adam_m[i] = 1e-3f * (float)((int)(i % 31) - 15);
        ref->adam_v[i] = 1e-5f * (float)(i % 17);
    }
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    bl_runtime_t *rt = NULL;
    bl_gpt2_t *model = NULL, *ref = NULL;
    bl_error_t err = {0};
    check(bl_runtime_create(MPI_COMM_WORLD, &cfg, &rt) == BL_OK, "runtime");
    check(bl_gpt2_create_with(&CFG, &bl_cpu_kernels, NULL, NULL, BL_GPT2_NO_MOMENTS, &err,
                              &model) == BL_OK,
          "model: %s", err.msg);
    check(bl_gpt2_create(&CFG, &bl_cpu_kernels, NULL, NULL, &err, &ref) == BL_OK, "ref: %s",
          err.msg);
    if (rt != NULL && model != NULL && ref != NULL) {
        const int P = rt->size;
        check(model->adam_m == NULL && model->adam_v == NULL, "a model without moments has them");
        /* The slices cover the parameters; the bucket holds the others'. */
        size_t total = 0;
        for (int k = 0; k < P; k++) {
            total += bl_lm_zero_slice_floats(model, 0, UNITS, k, P);
        }
        check(total == model->param_count, "slices hold %zu of %zu parameters", total,
              model->param_count);
        const size_t share = 64 / (size_t)P < 16 ? 16 : 64 / (size_t)P; /* 16 at least */
        check(bl_lm_zero_bucket_floats(model, 0, UNITS, P, 0, 64) == (size_t)(P - 1) * share,
              "a bucket of 64 floats on %d ranks holds %zu", P,
              bl_lm_zero_bucket_floats(model, 0, UNITS, P, 0, 64));
        /* The trainer's bucket: one round, one all-gather. */
        fill(ref);
        check_steps(rt, model, ref, BL_LM_ZERO_BUCKET_FLOATS, INT_MAX);
        /* Tiny buckets and messages: many rounds, slices broadcast in pieces. */
        fill(ref);
        check_steps(rt, model, ref, 40, 100);
        fill(ref);
        check_steps(rt, model, ref, 1, 16);
        /* The runs: one for the whole model, and for all the blocks; one
         * per per-layer tensor (12) for one block of two; with the
         * embedding, wte and wpe join the first block's ln1w; with the head,
         * the last block's fcprojb joins lnfw and lnfb, and wte is apart. */
        const int runs[4][3] = {{0, UNITS, 1}, {1, 3, 1}, {1, 2, 12}, {0, 2, 12}};
        for (int k = 0; k < 4; k++) {
            const int n = bl_lm_zero_runs(model, runs[k][0], runs[k][1]);
            check(n == runs[k][2], "units %d-%d make %d runs, expected %d", runs[k][0],
                  runs[k][1] - 1, n, runs[k][2]);
        }
        check(bl_lm_zero_runs(model, 2, UNITS) == 13, "block 1 and the head make %d runs",
              bl_lm_zero_runs(model, 2, UNITS));
        if (P % 2 == 0) {
            fill(ref);
            check_pipeline(rt, model, ref, BL_LM_ZERO_BUCKET_FLOATS, INT_MAX);
            fill(ref);
            check_pipeline(rt, model, ref, 40, 100);
        }
    }
    bl_gpt2_destroy(model);
    bl_gpt2_destroy(ref);
    bl_runtime_destroy(rt);
    return check_finish("test_lm_zero");
}
