/* ZeRO-1's step for the language-model trainer (lm_zero.h): the swap of
 * the tied wte's gradient between the first and last stages, the
 * reduce-scatters, the loss and the norm added in rank and stage order, the
 * sliced AdamW step and the all-gathers. */
#include <math.h>
#include <string.h>

#include "lm_zero_impl.h"
#include "wait.h"

enum {
    TIED_TAG = 1, /* the swap's messages, on the pipeline's duplicate */
};

/* With pipelines, on the first and the last stage: swaps this stage's sum
 * of wte's gradient with the other's, round by round through the bucket,
 * and adds the other's into this one's. Float addition commutes, so both
 * stages hold the same bits. */
static bl_status_t swap_wte(bl_lm_zero_t *z)
{
    const size_t chunk = z->runs.tied_chunk;
    if (chunk == 0) {
        return BL_OK;
    }
    bl_runtime_t *rt = z->rt;
    const bl_gpt2_tensor_t *wte = &z->model->tensors[BL_GPT2_WTE];
    float *own = z->model->grads + wte->offset;
    float *theirs = z->runs.bucket;
    const int peer = z->stage == 0 ? z->stages - 1 : 0;
    /* Rank r is stage r % S of its pipeline (layout.h): the peer's rank in
     * the job, for the wait's message. */
    const int peer_rank = rt->rank - z->stage + peer;
    const char *op = "the swap of the tied embedding's gradient (ZeRO-1)";
    bl_status_t st = BL_OK;
    for (size_t at = 0; at < wte->count && st == BL_OK; at += chunk) {
        const int m = (int)(wte->count - at < chunk ? wte->count - at : chunk);
        MPI_Request reqs[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
        int rc = MPI_Irecv(theirs, m, MPI_FLOAT, peer, TIED_TAG, z->pipe, &reqs[0]);
        if (rc == MPI_SUCCESS) {
            rc = MPI_Isend(own + at, m, MPI_FLOAT, peer, TIED_TAG, z->pipe, &reqs[1]);
        }
        st = rc == MPI_SUCCESS ? BL_OK : bl_fail_mpi(rt, rc, "posting the swap of wte's gradient");
        for (int k = 0; k < 2 && st == BL_OK; k++) {
            st = bl_wait_bounded(rt, &reqs[k], op, peer_rank);
        }
        for (int i = 0; i < m && st == BL_OK; i++) {
            own[at + (size_t)i] += theirs[i];
        }
    }
    return st;
}

/* The summed slices' sum of squares, block by block as the node-local
 * reduction takes it (each sub-range in blocks of BL_LM_ZERO_BLOCK from its
 * start), so the same bits with one stage. On the last of several stages
 * wte is left out: stage 0 counts it. */
static double slice_squares(const bl_lm_zero_t *z)
{
    const float *grads = z->model->grads;
    const bl_kernels_t *k = z->model->kernels;
    const int skip = z->stages > 1 && z->stage == z->stages - 1 ? BL_GPT2_WTE : -1;
    double squares = 0.0;
    for (int r = 0; r < z->runs.count; r++) {
        const bl_lm_zero_run_t *run = &z->runs.run[r];
        for (int s = 0; s < run->slice_count; s++) {
            const size_t at = run->slice[s].offset, count = run->slice[s].count;
            if (run->slice[s].tensor == skip) {
                continue;
            }
            for (size_t i = 0; i < count; i += BL_LM_ZERO_BLOCK) {
                const size_t m = count - i < BL_LM_ZERO_BLOCK ? count - i : BL_LM_ZERO_BLOCK;
                squares += k->sum_squares(m, grads + at + i);
            }
        }
    }
    return squares;
}

/* Gathers every member's pair z->mine over comm (n members) and sets
 * z->mine to their sums, added in rank order: the same bits on every
 * member. */
static bl_status_t sum_in_order(bl_lm_zero_t *z, MPI_Comm comm, int n, const char *op)
{
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Iallgather(z->mine, 2, MPI_DOUBLE, z->gathered, 2, MPI_DOUBLE, comm, &req);
    bl_status_t st = bl_collective_posted(z->rt, rc, &req, op, comm);
    if (st != BL_OK) {
        return st;
    }
    double loss = 0.0, squares = 0.0;
    for (int q = 0; q < n; q++) {
        loss += z->gathered[2 * q];
        squares += z->gathered[2 * q + 1];
    }
    z->mine[0] = loss;
    z->mine[1] = squares;
    return BL_OK;
}

bl_status_t bl_lm_zero_reduce(bl_lm_zero_t *z, long tokens, double *loss_sum, double *norm)
{
    bl_status_t st = swap_wte(z);
    for (int r = 0; r < z->runs.count && st == BL_OK; r++) {
        st = bl_zero_reduce_scatter(&z->runs.run[r].x, z->model->grads);
    }
    if (st != BL_OK) {
        return st;
    }
    z->mine[0] = *loss_sum;
    z->mine[1] = slice_squares(z);
    /* Gathers rather than all-reduces: every rank adds the same values in
     * the same (rank, then stage) order, so the norm, and the clip scale
     * made from it, are the same bits everywhere. */
    st = sum_in_order(z, z->comm, z->size, "the gather of the loss and the gradient norm");
    if (st == BL_OK && z->pipe != MPI_COMM_NULL) {
        st =
            sum_in_order(z, z->pipe, z->stages, "the gather of the stages' loss and gradient norm");
    }
    if (st != BL_OK) {
        return st;
    }
    *loss_sum = z->mine[0];
    *norm = sqrt(z->mine[1]) / (double)tokens;
    return BL_OK;
}

bl_status_t bl_lm_zero_update(bl_lm_zero_t *z, const bl_gpt2_adamw_t *opt, float grad_scale, long t)
{
    bl_lm_zero_runs_t *r = &z->runs;
    /* The sub-ranges keep their tensor, so each gets its own decay. */
    for (int i = 0; i < r->count; i++) {
        bl_lm_zero_run_t *run = &r->run[i];
        bl_gpt2_adamw_ranges_at(z->model, opt, grad_scale, t, run->slice, run->slice_count,
                                r->adam_m + run->at, r->adam_v + run->at, run->x.lo[z->rank]);
    }
    bl_status_t st = BL_OK;
    for (int i = 0; i < r->count && st == BL_OK; i++) {
        st = bl_zero_all_gather(&r->run[i].x, z->model->params,
                                "the all-gather of the parameters (ZeRO-1)");
    }
    return st;
}
