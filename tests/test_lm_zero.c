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

enum { TOKENS = 37 };

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
        const int n = bl_lm_zero_slice_ranges(model, k, ranks, slice);
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
    bl_status_t st = bl_lm_zero_create(rt, rt->comm, model, 0, bucket, piece, &z);
    check(st == BL_OK, "create (bucket %zu, piece %zu): %s", bucket, piece, bl_last_error(rt));
    if (st != BL_OK) {
        return;
    }
    /* The checkpoint's state goes in: every rank its slice. */
    bl_lm_zero_put_state(z, ref->params, ref->adam_m, ref->adam_v);
    check(memcmp(model->params, ref->params, N * sizeof(float)) == 0, "put: parameters differ");
    const bl_gpt2_adamw_t opt = {.lr = 1e-2f,
                                 .beta1 = 0.9f,
                                 .beta2 = 0.95f,
                                 .eps = 1e-8f,
                                 .weight_decay = 0.1f,
                                 .max_grad_norm = 1.0f};
    bl_gpt2_range_t all[BL_GPT2_MAX_RANGES];
    const int all_count = bl_gpt2_unit_ranges(ref, 0, CFG.num_layers + 2, all);
    bl_gpt2_range_t slice[BL_GPT2_MAX_RANGES];
    const int slice_count = bl_lm_zero_slice_ranges(model, rank, P, slice);
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
            total += bl_lm_zero_slice_floats(model, k, P);
        }
        check(total == model->param_count, "slices hold %zu of %zu parameters", total,
              model->param_count);
        const size_t share = 64 / (size_t)P < 16 ? 16 : 64 / (size_t)P; /* 16 at least */
        check(bl_lm_zero_bucket_floats(model, P, 64) == (size_t)(P - 1) * share,
              "a bucket of 64 floats on %d ranks holds %zu", P,
              bl_lm_zero_bucket_floats(model, P, 64));
        /* The trainer's bucket: one round, one all-gather. */
        fill(ref);
        check_steps(rt, model, ref, BL_LM_ZERO_BUCKET_FLOATS, INT_MAX);
        /* Tiny buckets and messages: many rounds, slices broadcast in pieces. */
        fill(ref);
        check_steps(rt, model, ref, 40, 100);
        fill(ref);
        check_steps(rt, model, ref, 1, 16);
    }
    bl_gpt2_destroy(model);
    bl_gpt2_destroy(ref);
    bl_runtime_destroy(rt);
    return check_finish("test_lm_zero");
}
