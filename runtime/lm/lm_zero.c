/* ZeRO-1 for the language-model trainer: the sliced AdamW step on the
 * exchanges of zero_exchange.h (the reduce-scatter, the all-gather and the
 * gather of the moments) (lm_zero.h). */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "lm_node.h"
#include "lm_zero.h"
#include "memory_account.h"
#include "wait.h"
#include "zero_exchange.h"

enum {
    BLOCK = 512, /* the floats summed at a time: the node-local reduction's block */
};

struct bl_lm_zero {
    bl_runtime_t *rt;
    bl_gpt2_t *model;
    MPI_Comm comm;  /* the data-parallel group's duplicate, in rank order */
    int rank, size; /* this rank in comm, and D */
    /* The slices of the flat parameter array, one per rank of comm, and
     * their exchanges. */
    bl_zero_exchange_t x;
    bl_gpt2_range_t slice[BL_GPT2_MAX_RANGES]; /* this rank's sub-ranges, each with its tensor */
    int slice_count;
    float *adam_m, *adam_v; /* this slice's moments: x.count[rank] floats each */
    size_t piece;           /* the most floats one message carries */
    double mine[2];         /* this rank's loss sum and its summed slice's sum of squares */
    double *gathered;       /* (2 · size) every rank's pair, in rank order */
};

bl_status_t bl_lm_zero_check(bl_runtime_t *rt, const bl_lm_config_t *c, const bl_device_t *device,
                             int *on)
{
    *on = 0;
    if (c->zero != 0 && c->zero != 1) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "zero %d is neither 0 (off) nor 1 (ZeRO-1)",
                       c->zero);
    }
    if (!c->zero) {
        return BL_OK;
    }
    const int S = c->pipeline.stages;
    if (S > 1) {
        return bl_fail(rt, BL_ERR_UNSUPPORTED,
                       "--zero on (ZeRO-1) with pipelines (--pp %d) is not supported yet: a "
                       "stage's optimizer state would have to be sliced over its own replicas "
                       "and move with its units; train without --pp, or with --zero off",
                       S);
    }
    if (device->memory != NULL) {
        return bl_fail(rt, BL_ERR_UNSUPPORTED,
                       "--zero on (ZeRO-1) is not supported yet on rank %d, whose model lives in "
                       "the memory of %s: the slices would have to be staged through the host; "
                       "give every rank --device cpu, or train with --zero off",
                       rt->rank, device->name);
    }
    if (rt->size / S < 2) {
        bl_log(rt, BL_LOG_INFO,
               "ZeRO-1: one data-parallel replica, so nothing to shard: --zero on is a no-op and "
               "the rank holds all of AdamW's moments");
        return BL_OK;
    }
    *on = 1;
    return BL_OK;
}

int bl_lm_zero_slice_ranges(const bl_gpt2_t *model, int part, int parts, bl_gpt2_range_t *out)
{
    bl_gpt2_range_t ranges[BL_GPT2_MAX_RANGES];
    const int count = bl_gpt2_unit_ranges(model, 0, model->config.num_layers + 2, ranges);
    return bl_lm_node_slice(ranges, count, part, parts, out);
}

size_t bl_lm_zero_slice_floats(const bl_gpt2_t *model, int part, int parts)
{
    bl_gpt2_range_t out[BL_GPT2_MAX_RANGES];
    const int n = bl_lm_zero_slice_ranges(model, part, parts, out);
    size_t floats = 0;
    for (int i = 0; i < n; i++) {
        floats += out[i].count;
    }
    return floats;
}

size_t bl_lm_zero_bucket_floats(const bl_gpt2_t *model, int parts, size_t bucket)
{
    size_t largest = 0;
    for (int k = 0; k < parts; k++) {
        const size_t n = bl_lm_zero_slice_floats(model, k, parts);
        largest = n > largest ? n : largest;
    }
    return (size_t)(parts - 1) * bl_zero_chunk_floats(largest, parts, bucket, (size_t)INT_MAX);
}

/* Logs on rank 0 which path the gradients take. */
static void log_path(const bl_lm_zero_t *z, int instead_of_node)
{
    char moments[32], bucket[32];
    bl_mem_format_bytes(2.0 * (double)z->x.count[0] * sizeof(float), moments, sizeof moments);
    bl_mem_format_bytes((double)(z->size - 1) * (double)z->x.chunk * sizeof(float), bucket,
                        sizeof bucket);
    bl_log(z->rt, BL_LOG_INFO,
           "gradient reduction: ZeRO-1 over %d replicas (reduce-scatter in %zu round(s) of a %s "
           "bucket, each rank updates its slice of the %zu parameters with its %s of AdamW "
           "moments, then all-gather)%s",
           z->size, z->x.rounds, bucket, z->model->param_count, moments,
           instead_of_node ? "; it takes precedence over the node-local reduction" : "");
}

/* Frees what create took; the communicator too. */
static void release(bl_lm_zero_t *z)
{
    const bl_allocator_t *a = bl_rt_allocator(z->rt);
    bl_zero_exchange_free(&z->x);
    if (z->comm != MPI_COMM_NULL) {
        MPI_Comm_free(&z->comm);
    }
    bl_mem_free(a, z->adam_m);
    bl_mem_free(a, z->adam_v);
    bl_mem_free(a, z->gathered);
    bl_mem_free(a, z);
}

/* Cuts the slices and allocates this rank's moments and buffers. Local. */
static bl_status_t make_slices(bl_lm_zero_t *z, size_t bucket)
{
    bl_runtime_t *rt = z->rt;
    const bl_gpt2_t *g = z->model;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    /* The ranges of the whole model must lie end to end from 0, so that a
     * slice of the sequence is one run of the arrays. */
    bl_gpt2_range_t ranges[BL_GPT2_MAX_RANGES];
    const int n = bl_gpt2_unit_ranges(g, 0, g->config.num_layers + 2, ranges);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (ranges[i].offset != at) {
            return bl_fail(rt, BL_ERR_UNSUPPORTED,
                           "ZeRO-1: the model's parameter range %d starts at %zu, not at %zu: "
                           "the ranges are not one array (an internal error)",
                           i, ranges[i].offset, at);
        }
        at += ranges[i].count;
    }
    if (at != g->param_count) {
        return bl_fail(rt, BL_ERR_UNSUPPORTED,
                       "ZeRO-1: the model's ranges hold %zu of its %zu parameters (an internal "
                       "error)",
                       at, g->param_count);
    }
    const size_t D = (size_t)z->size;
    size_t *lo = bl_mem_array(a, D, sizeof *lo);
    size_t *count = bl_mem_array(a, D, sizeof *count);
    z->gathered = bl_mem_array(a, 2 * D, sizeof *z->gathered);
    bl_status_t st = BL_OK;
    if (lo == NULL || count == NULL || z->gathered == NULL) {
        st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for ZeRO-1's slices of %d ranks", z->size);
    } else {
        /* The slices lie end to end from the array's start. */
        size_t from = 0;
        for (int k = 0; k < z->size; k++) {
            lo[k] = from;
            count[k] = bl_lm_zero_slice_floats(g, k, z->size);
            from += count[k];
        }
        st = bl_zero_exchange_init(&z->x, rt, z->comm, lo, count, bucket, z->piece);
    }
    bl_mem_free(a, lo);
    bl_mem_free(a, count);
    if (st != BL_OK) {
        return st;
    }
    z->slice_count = bl_lm_zero_slice_ranges(g, z->rank, z->size, z->slice);
    const size_t mine = z->x.count[z->rank];
    z->adam_m = bl_mem_array_zeroed(a, mine, sizeof(float));
    z->adam_v = bl_mem_array_zeroed(a, mine, sizeof(float));
    if (z->adam_m == NULL || z->adam_v == NULL) {
        return bl_fail(rt, BL_ERR_NO_MEM,
                       "rank %d: no memory for ZeRO-1's moments of %zu parameters", rt->rank, mine);
    }
    return BL_OK;
}

bl_status_t bl_lm_zero_create(bl_runtime_t *rt, MPI_Comm dp, bl_gpt2_t *model, int instead_of_node,
                              size_t bucket, size_t piece, bl_lm_zero_t **out)
{
    *out = NULL;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    bl_lm_zero_t *z = bl_mem_alloc(a, sizeof *z);
    if (z == NULL) {
        return bl_agree_in(rt, dp, bl_fail(rt, BL_ERR_NO_MEM, "no memory for ZeRO-1's state"),
                           BL_ERR_NO_MEM, "setting up ZeRO-1");
    }
    memset(z, 0, sizeof *z);
    z->rt = rt;
    z->model = model;
    z->comm = MPI_COMM_NULL;
    z->piece = piece < INT_MAX ? piece : INT_MAX;
    int rc = MPI_Comm_dup(dp, &z->comm);
    bl_status_t st = BL_OK;
    if (rc != MPI_SUCCESS) {
        z->comm = MPI_COMM_NULL;
        st = bl_fail_mpi(rt, rc, "duplicating the data-parallel group for ZeRO-1");
    } else {
        MPI_Comm_rank(z->comm, &z->rank);
        MPI_Comm_size(z->comm, &z->size);
        st = model->memory != NULL || model->adam_m != NULL
                 ? bl_fail(rt, BL_ERR_UNSUPPORTED,
                           "ZeRO-1: the model must be in host memory and made without its "
                           "moments (an internal error)")
                 : make_slices(z, bucket);
    }
    st = bl_agree_in(rt, dp, st, BL_ERR_NO_MEM, "setting up ZeRO-1");
    if (st != BL_OK) {
        release(z);
        return st;
    }
    log_path(z, instead_of_node);
    *out = z;
    return BL_OK;
}

/* The summed slice's sum of squares, block by block as the node-local
 * reduction takes it (each sub-range in blocks of BLOCK from its start), so
 * the same bits. */
static double slice_squares(const bl_lm_zero_t *z)
{
    const float *grads = z->model->grads;
    const bl_kernels_t *k = z->model->kernels;
    double squares = 0.0;
    for (int r = 0; r < z->slice_count; r++) {
        const size_t at = z->slice[r].offset, count = z->slice[r].count;
        for (size_t i = 0; i < count; i += BLOCK) {
            const size_t m = count - i < BLOCK ? count - i : BLOCK;
            squares += k->sum_squares(m, grads + at + i);
        }
    }
    return squares;
}

bl_status_t bl_lm_zero_reduce(bl_lm_zero_t *z, long tokens, double *loss_sum, double *norm)
{
    bl_status_t st = bl_zero_reduce_scatter(&z->x, z->model->grads);
    if (st != BL_OK) {
        return st;
    }
    z->mine[0] = *loss_sum;
    z->mine[1] = slice_squares(z);
    /* A gather rather than an all-reduce: every rank adds the same values
     * in the same (rank) order, so the norm, and the clip scale made from
     * it, are the same bits everywhere. */
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Iallgather(z->mine, 2, MPI_DOUBLE, z->gathered, 2, MPI_DOUBLE, z->comm, &req);
    st = bl_collective_posted(z->rt, rc, &req, "the gather of the loss and the gradient norm",
                              z->comm);
    if (st != BL_OK) {
        return st;
    }
    double loss = 0.0, squares = 0.0;
    for (int q = 0; q < z->size; q++) {
        loss += z->gathered[2 * q];
        squares += z->gathered[2 * q + 1];
    }
    *loss_sum = loss;
    *norm = sqrt(squares) / (double)tokens;
    return BL_OK;
}

bl_status_t bl_lm_zero_update(bl_lm_zero_t *z, const bl_gpt2_adamw_t *opt, float grad_scale, long t)
{
    /* The sub-ranges keep their tensor, so each gets its own decay. */
    bl_gpt2_adamw_ranges_at(z->model, opt, grad_scale, t, z->slice, z->slice_count, z->adam_m,
                            z->adam_v, z->x.lo[z->rank]);
    return bl_zero_all_gather(&z->x, z->model->params, "the all-gather of the parameters (ZeRO-1)");
}

bl_status_t bl_lm_zero_gather_moments(bl_lm_zero_t *z, int root, float **adam_m, float **adam_v)
{
    bl_runtime_t *rt = z->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    const size_t N = z->model->param_count;
    *adam_m = *adam_v = NULL;
    bl_status_t st = BL_OK;
    if (z->rank == root) {
        *adam_m = bl_mem_array(a, N, sizeof(float));
        *adam_v = bl_mem_array(a, N, sizeof(float));
        if (*adam_m == NULL || *adam_v == NULL) {
            st = bl_fail(rt, BL_ERR_NO_MEM,
                         "rank %d: no memory to gather the AdamW moments (2 x %zu floats)",
                         rt->rank, N);
        }
    }
    st = bl_agree_in(rt, z->comm, st, BL_ERR_NO_MEM, "gathering the AdamW moments");
    const char *op = "the gather of the AdamW moments (ZeRO-1)";
    if (st == BL_OK) {
        st = bl_zero_gather_to(&z->x, root, z->adam_m, *adam_m, op);
    }
    if (st == BL_OK) {
        st = bl_zero_gather_to(&z->x, root, z->adam_v, *adam_v, op);
    }
    if (st != BL_OK) {
        bl_mem_free(a, *adam_m);
        bl_mem_free(a, *adam_v);
        *adam_m = *adam_v = NULL;
    }
    return st;
}

void bl_lm_zero_put_state(bl_lm_zero_t *z, const void *params, const void *adam_m,
                          const void *adam_v)
{
    bl_gpt2_t *g = z->model;
    const size_t at = z->x.lo[z->rank] * sizeof(float);
    const size_t nbytes = z->x.count[z->rank] * sizeof(float);
    memcpy(g->params, params, g->param_count * sizeof(float));
    memcpy(z->adam_m, (const unsigned char *)adam_m + at, nbytes);
    memcpy(z->adam_v, (const unsigned char *)adam_v + at, nbytes);
}

void bl_lm_zero_destroy(bl_lm_zero_t *z)
{
    if (z != NULL) {
        release(z);
    }
}
