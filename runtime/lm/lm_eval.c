/* The language-model trainer's evaluation (lm_impl.h); its model file is
 * lm_model_file.c's. */
#include <stdio.h>
#include <string.h>

#include "file_io.h"
#include "gpt2_file.h"
#include "lm_impl.h"
#include "wait.h"

bl_status_t bl_lm_check_tokens(bl_runtime_t *rt, const char *what, const uint16_t *stream,
                               long count, int vocab)
{
    for (long i = 0; i < count; i++) {
        if (stream[i] >= vocab) {
            return bl_fail(rt, BL_ERR_INVALID_ARG,
                           "%s: token %ld is %u, outside the model's vocabulary of %d", what, i,
                           (unsigned)stream[i], vocab);
        }
    }
    return BL_OK;
}

/* Runs the whole model's forward over sequences seq[0 .. n) of stream, in
 * pieces of at most the activations' capacity, and sets *loss_sum to their
 * loss sum. */
static bl_status_t forward(bl_lm_trainer_t *t, const uint16_t *stream, const long *seq, long n,
                           double *loss_sum)
{
    const int T = t->cfg.seq_len;
    bl_error_t err = {0};
    *loss_sum = 0.0;
    for (long at = 0; at < n; at += t->capacity) {
        const int k = (int)(n - at < t->capacity ? n - at : t->capacity);
        double loss = 0.0;
        bl_lm_cut(stream, T, seq + at, k, t->tokens, t->targets);
        bl_status_t st = bl_gpt2_acts_set_batch(&t->acts, k, &err);
        if (st == BL_OK) {
            st = bl_gpt2_forward(t->model, &t->acts, t->tokens, t->targets, &loss, &err);
        }
        if (st != BL_OK) {
            return bl_fail_from(t->rt, &err);
        }
        *loss_sum += loss;
    }
    return BL_OK;
}

bl_status_t bl_lm_trainer_evaluate(bl_lm_trainer_t *t, const uint16_t *tokens, long count,
                                   long max_sequences, double *loss)
{
    if (t == NULL || loss == NULL) {
        return t == NULL ? BL_ERR_INVALID_ARG
                         : bl_fail(t->rt, BL_ERR_INVALID_ARG, "evaluation: NULL loss");
    }
    *loss = 0.0;
    bl_runtime_t *rt = t->rt;
    const int T = t->cfg.seq_len;
    bl_status_t st = BL_OK;
    if (tokens == NULL || count < T + 1) {
        st = bl_fail(rt, BL_ERR_INVALID_ARG,
                     "evaluation tokens: %ld given, fewer than one sequence of T + 1 = %d",
                     tokens == NULL ? 0 : count, T + 1);
    } else {
        st =
            bl_lm_check_tokens(rt, "evaluation tokens", tokens, count, t->model->config.vocab_size);
    }
    st = bl_agree(rt, st, BL_ERR_INVALID_ARG, "checking the evaluation tokens");
    if (st != BL_OK) {
        return st;
    }
    long n = (count - 1) / T;
    if (max_sequences > 0 && max_sequences < n) {
        n = max_sequences;
    }
    double sum = 0.0;
    if (t->grid.layout.stages > 1) {
        /* With pipelines a rank holds current values of its own units only
         * (and under stage-local memory no others at all): the forward runs
         * through the stages (lm_eval_pipe.c). */
        st = bl_lm_evaluate_pipelined(t, tokens, n, &sum);
        if (st == BL_OK) {
            *loss = sum / ((double)n * T);
        }
        return st;
    }
    st = bl_lm_make_whole(t); /* every rank evaluates on the whole model */
    if (st != BL_OK) {
        return st;
    }
    /* Rank r takes the contiguous sequences [n·r/P, n·(r+1)/P), in pieces. */
    const long first = n * rt->rank / rt->size, last = n * (rt->rank + 1) / rt->size;
    long seq[64];
    for (long at = first; at < last && st == BL_OK; at += 64) {
        int k = (int)(last - at < 64 ? last - at : 64);
        for (int i = 0; i < k; i++) {
            seq[i] = at + i;
        }
        double part = 0.0;
        st = forward(t, tokens, seq, k, &part);
        sum += part;
    }
    st = bl_agree(rt, st, BL_ERR_MISMATCH, "the evaluation's passes");
    if (st == BL_OK && rt->size > 1) {
        st = bl_allreduce_bounded(rt, MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, rt->comm,
                                  "the all-reduce of the evaluation loss");
    }
    if (st == BL_OK) {
        *loss = sum / ((double)n * T);
    }
    return st;
}
