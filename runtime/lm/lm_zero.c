/* ZeRO-1 for the language-model trainer (lm_zero.h): the check, the runs
 * and slices of a stage and their sizes, and the state's set-up, rebuild
 * and teardown. lm_zero_step.c reduces and updates; lm_zero_moments.c
 * gathers the moments and puts them back. */
#include <limits.h>
#include <string.h>

#include "lm_node.h"
#include "lm_zero_impl.h"
#include "memory_account.h"
#include "wait.h"

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
    if (device->memory != NULL) {
        return bl_fail(rt, BL_ERR_UNSUPPORTED,
                       "--zero on (ZeRO-1) is not supported yet on rank %d, whose model lives in "
                       "the memory of %s: the slices would have to be staged through the host; "
                       "give every rank --device cpu, or train with --zero off",
                       rt->rank, device->name);
    }
    const int S = c->pipeline.stages > 0 ? c->pipeline.stages : 1;
    if (rt->size / S < 2) {
        bl_log(rt, BL_LOG_INFO,
               "ZeRO-1: one data-parallel replica, so nothing to shard: --zero on is a no-op and "
               "the rank holds all of AdamW's moments");
        return BL_OK;
    }
    *on = 1;
    return BL_OK;
}

/* ---- The runs and their sizes (pure) --------------------------------------- */

/* Writes the ranges of units [first, last) into sorted, ordered by offset
 * (stable: bl_gpt2_unit_ranges gives them so already), and into start
 * (BL_GPT2_MAX_RANGES + 1 entries) the index of each run's first range,
 * with start[runs] the ranges' count; returns the runs. Run r is the
 * ranges sorted[start[r] .. start[r + 1]), which lie end to end. */
static int split_runs(const bl_gpt2_t *g, int first, int last, bl_gpt2_range_t *sorted, int *start)
{
    const int n = first < last ? bl_gpt2_unit_ranges(g, first, last, sorted) : 0;
    for (int i = 1; i < n; i++) {
        const bl_gpt2_range_t key = sorted[i];
        int j = i - 1;
        for (; j >= 0 && sorted[j].offset > key.offset; j--) {
            sorted[j + 1] = sorted[j];
        }
        sorted[j + 1] = key;
    }
    int runs = 0;
    for (int i = 0; i < n; i++) {
        if (i == 0 || sorted[i].offset != sorted[i - 1].offset + sorted[i - 1].count) {
            start[runs++] = i;
        }
    }
    start[runs] = n;
    return runs;
}

/* The floats of sub-ranges out[0 .. n). */
static size_t floats_of(const bl_gpt2_range_t *out, int n)
{
    size_t floats = 0;
    for (int i = 0; i < n; i++) {
        floats += out[i].count;
    }
    return floats;
}

int bl_lm_zero_runs(const bl_gpt2_t *model, int first, int last)
{
    bl_gpt2_range_t sorted[BL_GPT2_MAX_RANGES];
    int start[BL_GPT2_MAX_RANGES + 1];
    return split_runs(model, first, last, sorted, start);
}

int bl_lm_zero_slice_ranges(const bl_gpt2_t *model, int first, int last, int part, int parts,
                            bl_gpt2_range_t *out)
{
    bl_gpt2_range_t sorted[BL_GPT2_MAX_RANGES];
    int start[BL_GPT2_MAX_RANGES + 1];
    const int runs = split_runs(model, first, last, sorted, start);
    int n = 0;
    for (int r = 0; r < runs; r++) {
        /* A slice of a run holds at most one sub-range of each of its ranges. */
        n += bl_lm_node_slice(sorted + start[r], start[r + 1] - start[r], part, parts, out + n);
    }
    return n;
}

size_t bl_lm_zero_slice_floats(const bl_gpt2_t *model, int first, int last, int part, int parts)
{
    bl_gpt2_range_t out[BL_GPT2_MAX_RANGES];
    return floats_of(out, bl_lm_zero_slice_ranges(model, first, last, part, parts, out));
}

/* The floats of the shared bucket for the runs of units [first, last) on
 * `parts` ranks, `bucket` floats a round and `piece` floats a message at
 * most, and in *tied_chunk the floats of wte swapped a round (0 unless
 * tied). */
static size_t bucket_floats(const bl_gpt2_t *g, int first, int last, int parts, int tied,
                            size_t bucket, size_t piece, size_t *tied_chunk)
{
    bl_gpt2_range_t sorted[BL_GPT2_MAX_RANGES], out[BL_GPT2_MAX_RANGES];
    int start[BL_GPT2_MAX_RANGES + 1];
    const int runs = split_runs(g, first, last, sorted, start);
    size_t floats = 0;
    for (int r = 0; r < runs; r++) {
        size_t largest = 0;
        for (int k = 0; k < parts; k++) {
            const int n =
                bl_lm_node_slice(sorted + start[r], start[r + 1] - start[r], k, parts, out);
            const size_t m = floats_of(out, n);
            largest = m > largest ? m : largest;
        }
        const size_t need =
            (size_t)(parts - 1) * bl_zero_chunk_floats(largest, parts, bucket, piece);
        floats = need > floats ? need : floats;
    }
    *tied_chunk = 0;
    if (tied) {
        /* wte in rounds of at most `bucket` floats (16 at least). */
        const size_t wte = g->tensors[BL_GPT2_WTE].count;
        size_t chunk = bucket < 16 ? 16 : bucket;
        chunk = chunk < wte ? chunk : wte;
        *tied_chunk = chunk < piece ? chunk : piece;
        floats = *tied_chunk > floats ? *tied_chunk : floats;
    }
    return floats;
}

size_t bl_lm_zero_bucket_floats(const bl_gpt2_t *model, int first, int last, int parts, int tied,
                                size_t bucket)
{
    size_t tied_chunk = 0;
    return bucket_floats(model, first, last, parts, tied, bucket, (size_t)INT_MAX, &tied_chunk);
}

/* ---- The state --------------------------------------------------------------- */

void bl_lm_zero_runs_free(const bl_lm_zero_t *z, bl_lm_zero_runs_t *r)
{
    const bl_allocator_t *a = bl_rt_allocator(z->rt);
    for (int i = 0; r->run != NULL && i < r->count; i++) {
        r->run[i].x.bucket = NULL; /* the shared one, freed below */
        bl_zero_exchange_free(&r->run[i].x);
    }
    bl_mem_free(a, r->run);
    bl_mem_free(a, r->adam_m);
    bl_mem_free(a, r->adam_v);
    bl_mem_free(a, r->bucket);
    memset(r, 0, sizeof *r);
}

/* Cuts the run of the ranges member[0 .. n) (end to end in the arrays)
 * into the group's slices (lo and count: scratch of D entries), sets up
 * its exchange on the shared bucket and places this rank's slice's
 * moments after the runs' before it. */
static bl_status_t make_run(const bl_lm_zero_t *z, bl_lm_zero_runs_t *out, bl_lm_zero_run_t *run,
                            const bl_gpt2_range_t *member, int n, size_t *lo, size_t *count)
{
    bl_gpt2_range_t slice[BL_GPT2_MAX_RANGES];
    run->offset = member[0].offset;
    run->count = floats_of(member, n);
    /* The slices lie end to end from the run's start. */
    size_t from = run->offset;
    for (int k = 0; k < z->size; k++) {
        lo[k] = from;
        count[k] = floats_of(slice, bl_lm_node_slice(member, n, k, z->size, slice));
        from += count[k];
    }
    bl_status_t st = bl_zero_exchange_init(&run->x, z->rt, z->comm, lo, count, z->bucket, z->piece);
    if (st != BL_OK) {
        return st;
    }
    bl_mem_free(bl_rt_allocator(z->rt), run->x.bucket);
    run->x.bucket = out->bucket;
    run->slice_count = bl_lm_node_slice(member, n, z->rank, z->size, run->slice);
    run->at = out->mine;
    out->mine += count[z->rank];
    return BL_OK;
}

bl_status_t bl_lm_zero_runs_make(const bl_lm_zero_t *z, int first, int last, const float *adam_m,
                                 const float *adam_v, bl_lm_zero_runs_t *out)
{
    bl_runtime_t *rt = z->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    memset(out, 0, sizeof *out);
    out->first = first;
    out->last = last;
    bl_gpt2_range_t sorted[BL_GPT2_MAX_RANGES];
    int start[BL_GPT2_MAX_RANGES + 1];
    const int runs = split_runs(z->model, first, last, sorted, start);
    const int tied = z->stages > 1 && (z->stage == 0 || z->stage == z->stages - 1);
    out->bucket_floats =
        bucket_floats(z->model, first, last, z->size, tied, z->bucket, z->piece, &out->tied_chunk);
    const size_t D = (size_t)z->size;
    size_t *lo = bl_mem_array(a, D, sizeof *lo);
    size_t *count = bl_mem_array(a, D, sizeof *count);
    out->run = bl_mem_array_zeroed(a, runs > 0 ? (size_t)runs : 1, sizeof *out->run);
    out->bucket = bl_mem_array(a, out->bucket_floats > 0 ? out->bucket_floats : 1, sizeof(float));
    bl_status_t st = BL_OK;
    if (lo == NULL || count == NULL || out->run == NULL || out->bucket == NULL) {
        st = bl_fail(rt, BL_ERR_NO_MEM,
                     "rank %d: no memory for ZeRO-1's slices of units %d-%d (a bucket of %zu "
                     "floats)",
                     rt->rank, first, last - 1, out->bucket_floats);
    }
    for (int r = 0; r < runs && st == BL_OK; r++) {
        st = make_run(z, out, &out->run[r], sorted + start[r], start[r + 1] - start[r], lo, count);
        out->count = st == BL_OK ? r + 1 : r;
    }
    bl_mem_free(a, lo);
    bl_mem_free(a, count);
    if (st == BL_OK) {
        const size_t n = out->mine > 0 ? out->mine : 1;
        out->adam_m = bl_mem_array_zeroed(a, n, sizeof(float));
        out->adam_v = bl_mem_array_zeroed(a, n, sizeof(float));
        if (out->adam_m == NULL || out->adam_v == NULL) {
            st = bl_fail(rt, BL_ERR_NO_MEM,
                         "rank %d: no memory for ZeRO-1's moments of %zu parameters", rt->rank,
                         out->mine);
        }
    }
    for (int r = 0; r < out->count && st == BL_OK && adam_m != NULL; r++) {
        const bl_lm_zero_run_t *run = &out->run[r];
        const size_t at = run->x.lo[z->rank], n = run->x.count[z->rank];
        memcpy(out->adam_m + run->at, adam_m + at, n * sizeof(float));
        memcpy(out->adam_v + run->at, adam_v + at, n * sizeof(float));
    }
    if (st != BL_OK) {
        bl_lm_zero_runs_free(z, out);
    }
    return st;
}

/* Logs on rank 0 which path the gradients take (rank 0's stage's sizes). */
static void log_path(const bl_lm_zero_t *z, int instead_of_node)
{
    const bl_lm_zero_runs_t *r = &z->runs;
    char moments[32], bucket[32];
    size_t rounds = 0, params = 0;
    for (int i = 0; i < r->count; i++) {
        rounds = r->run[i].x.rounds > rounds ? r->run[i].x.rounds : rounds;
        params += r->run[i].count;
    }
    bl_mem_format_bytes(2.0 * (double)r->mine * sizeof(float), moments, sizeof moments);
    bl_mem_format_bytes((double)r->bucket_floats * sizeof(float), bucket, sizeof bucket);
    const char *node = instead_of_node ? "; it takes precedence over the node-local reduction" : "";
    if (z->stages == 1) {
        bl_log(z->rt, BL_LOG_INFO,
               "gradient reduction: ZeRO-1 over %d replicas (reduce-scatter in %zu round(s) of a "
               "%s bucket, each rank updates its slice of the %zu parameters with its %s of "
               "AdamW moments, then all-gather)%s",
               z->size, rounds, bucket, z->model->param_count, moments, node);
        return;
    }
    bl_log(z->rt, BL_LOG_INFO,
           "gradient reduction: ZeRO-1 over %d replicas of each of %d stages (stage 0's %zu "
           "parameters lie in %d run(s); the first and last stages swap wte's gradient, a "
           "reduce-scatter per run in up to %zu round(s) of a %s bucket, each rank updates its "
           "slices with its %s of AdamW moments, then all-gather)%s",
           z->size, z->stages, params, r->count, rounds, bucket, moments, node);
}

/* Frees what create took; the communicators too. */
static void release(bl_lm_zero_t *z)
{
    const bl_allocator_t *a = bl_rt_allocator(z->rt);
    bl_lm_zero_runs_free(z, &z->runs);
    if (z->comm != MPI_COMM_NULL) {
        MPI_Comm_free(&z->comm);
    }
    if (z->pipe != MPI_COMM_NULL) {
        MPI_Comm_free(&z->pipe);
    }
    bl_mem_free(a, z->gathered);
    bl_mem_free(a, z);
}

/* Duplicates the communicators and reads this rank's places in them. */
static bl_status_t connect_comms(bl_lm_zero_t *z, MPI_Comm dp, MPI_Comm pipe)
{
    int rc = MPI_Comm_dup(dp, &z->comm);
    if (rc != MPI_SUCCESS) {
        z->comm = MPI_COMM_NULL;
        return bl_fail_mpi(z->rt, rc, "duplicating the data-parallel group for ZeRO-1");
    }
    MPI_Comm_rank(z->comm, &z->rank);
    MPI_Comm_size(z->comm, &z->size);
    z->stage = 0;
    z->stages = 1;
    if (pipe == MPI_COMM_NULL) {
        return BL_OK;
    }
    rc = MPI_Comm_dup(pipe, &z->pipe);
    if (rc != MPI_SUCCESS) {
        z->pipe = MPI_COMM_NULL;
        return bl_fail_mpi(z->rt, rc, "duplicating the pipeline for ZeRO-1");
    }
    MPI_Comm_rank(z->pipe, &z->stage);
    MPI_Comm_size(z->pipe, &z->stages);
    return BL_OK;
}

bl_status_t bl_lm_zero_create(bl_runtime_t *rt, MPI_Comm dp, MPI_Comm pipe, bl_gpt2_t *model,
                              int first, int last, int instead_of_node, size_t bucket, size_t piece,
                              bl_lm_zero_t **out)
{
    *out = NULL;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    bl_lm_zero_t *z = bl_mem_alloc(a, sizeof *z);
    if (z == NULL) {
        return bl_agree(rt, bl_fail(rt, BL_ERR_NO_MEM, "no memory for ZeRO-1's state"),
                        BL_ERR_NO_MEM, "setting up ZeRO-1");
    }
    memset(z, 0, sizeof *z);
    z->rt = rt;
    z->model = model;
    z->comm = MPI_COMM_NULL;
    z->pipe = MPI_COMM_NULL;
    z->bucket = bucket;
    z->piece = piece < INT_MAX ? piece : INT_MAX;
    bl_status_t st = connect_comms(z, dp, pipe);
    if (st == BL_OK && (model->memory != NULL || model->adam_m != NULL)) {
        st = bl_fail(rt, BL_ERR_UNSUPPORTED,
                     "ZeRO-1: the model must be in host memory and made without its moments (an "
                     "internal error)");
    }
    if (st == BL_OK) {
        const int most = z->size > z->stages ? z->size : z->stages;
        z->gathered = bl_mem_array(a, 2 * (size_t)most, sizeof *z->gathered);
        st = z->gathered == NULL
                 ? bl_fail(rt, BL_ERR_NO_MEM, "no memory for ZeRO-1's gather of %d ranks", most)
                 : bl_lm_zero_runs_make(z, first, last, NULL, NULL, &z->runs);
    }
    st = bl_agree(rt, st, BL_ERR_NO_MEM, "setting up ZeRO-1");
    if (st != BL_OK) {
        release(z);
        return st;
    }
    log_path(z, instead_of_node);
    *out = z;
    return BL_OK;
}

bl_status_t bl_lm_zero_restage(bl_lm_zero_t *z, int first, int last, const float *adam_m,
                               const float *adam_v)
{
    bl_lm_zero_runs_t next;
    bl_status_t st = bl_lm_zero_runs_make(z, first, last, adam_m, adam_v, &next);
    if (st == BL_OK) {
        bl_lm_zero_runs_free(z, &z->runs);
        z->runs = next;
    }
    return st;
}

int bl_lm_zero_ranges(const bl_lm_zero_t *z, bl_gpt2_range_t *out)
{
    int n = 0;
    for (int r = 0; r < z->runs.count; r++) {
        const bl_lm_zero_run_t *run = &z->runs.run[r];
        memcpy(out + n, run->slice, (size_t)run->slice_count * sizeof *out);
        n += run->slice_count;
    }
    return n;
}

void bl_lm_zero_destroy(bl_lm_zero_t *z)
{
    if (z != NULL) {
        release(z);
    }
}
