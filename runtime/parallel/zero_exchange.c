/* ZeRO-1's exchanges over slices of a float array: the reduce-scatter in
 * rounds of a bucket, the all-gather and the gather to a root
 * (zero_exchange.h). */
#include <limits.h>
#include <string.h>

#include "wait.h"
#include "zero_exchange.h"

enum {
    BLOCK = 512, /* the floats summed at a time: the node-local reductions' block */
    TAG = 0,     /* every message of the exchange */
};

void bl_zero_even_slice(size_t first, size_t total, int part, int parts, size_t *lo, size_t *count)
{
    const size_t a = total * (size_t)part / (size_t)parts;
    const size_t b = total * (size_t)(part + 1) / (size_t)parts;
    *lo = first + a;
    *count = b - a;
}

void bl_zero_even_slices(size_t first, size_t total, int parts, size_t *lo, size_t *count)
{
    for (int k = 0; k < parts; k++) {
        bl_zero_even_slice(first, total, k, parts, &lo[k], &count[k]);
    }
}

size_t bl_zero_chunk_floats(size_t largest, int parts, size_t bucket, size_t piece)
{
    size_t chunk = bucket / (size_t)parts;
    chunk = chunk < 16 ? 16 : chunk;
    chunk = chunk < largest ? chunk : largest;
    return chunk < piece ? chunk : piece;
}

void bl_zero_exchange_free(bl_zero_exchange_t *x)
{
    if (x->rt == NULL) {
        return;
    }
    const bl_allocator_t *a = bl_rt_allocator(x->rt);
    bl_mem_free(a, x->lo);
    bl_mem_free(a, x->count);
    bl_mem_free(a, x->bucket);
    bl_mem_free(a, x->reqs);
    bl_mem_free(a, x->counts);
    bl_mem_free(a, x->displs);
    memset(x, 0, sizeof *x);
}

bl_status_t bl_zero_exchange_init(bl_zero_exchange_t *x, bl_runtime_t *rt, MPI_Comm comm,
                                  const size_t *lo, const size_t *count, size_t bucket,
                                  size_t piece)
{
    memset(x, 0, sizeof *x);
    x->rt = rt;
    x->comm = comm;
    x->piece = piece < INT_MAX ? piece : INT_MAX;
    MPI_Comm_rank(comm, &x->rank);
    MPI_Comm_size(comm, &x->size);
    const bl_allocator_t *a = bl_rt_allocator(rt);
    const size_t D = (size_t)x->size;
    x->lo = bl_mem_array(a, D, sizeof *x->lo);
    x->count = bl_mem_array(a, D, sizeof *x->count);
    x->reqs = bl_mem_array(a, 2 * D, sizeof *x->reqs);
    x->counts = bl_mem_array(a, D, sizeof *x->counts);
    x->displs = bl_mem_array(a, D, sizeof *x->displs);
    if (x->lo == NULL || x->count == NULL || x->reqs == NULL || x->counts == NULL ||
        x->displs == NULL) {
        bl_zero_exchange_free(x);
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for ZeRO-1's slices of %d ranks", (int)D);
    }
    size_t largest = 0;
    for (size_t k = 0; k < D; k++) {
        x->lo[k] = lo[k];
        x->count[k] = count[k];
        largest = count[k] > largest ? count[k] : largest;
        /* Only read when the whole run fits a message (all_gather). */
        const size_t at = lo[k] - lo[0];
        x->counts[k] = (int)(count[k] <= INT_MAX ? count[k] : 0);
        x->displs[k] = (int)(at <= INT_MAX ? at : 0);
    }
    x->chunk = bl_zero_chunk_floats(largest, x->size, bucket, x->piece);
    x->rounds = x->chunk > 0 ? (largest + x->chunk - 1) / x->chunk : 0;
    x->bucket = bl_mem_array(a, (D - 1) * x->chunk > 0 ? (D - 1) * x->chunk : 1, sizeof(float));
    if (x->bucket == NULL) {
        const size_t floats = (D - 1) * x->chunk;
        bl_zero_exchange_free(x);
        return bl_fail(rt, BL_ERR_NO_MEM, "rank %d: no memory for ZeRO-1's bucket of %zu floats",
                       rt->rank, floats);
    }
    return BL_OK;
}

/* Where rank q's piece (q not this rank) lands in the bucket. */
static float *slot(const bl_zero_exchange_t *x, int q)
{
    return x->bucket + (size_t)(q < x->rank ? q : q - 1) * x->chunk;
}

/* Waits for the n requests of a round, each under the bound. */
static bl_status_t wait_all(bl_zero_exchange_t *x, int n, const char *op)
{
    bl_status_t st = BL_OK;
    for (int i = 0; i < n && st == BL_OK; i++) {
        st = bl_wait_collective(x->rt, &x->reqs[i], op, x->comm);
    }
    return st;
}

/* Round j of the reduce-scatter: sends every other rank its piece of its
 * slice, receives this slice's piece from every other rank, and adds the
 * pieces in rank order into this rank's own slice. */
static bl_status_t scatter_round(bl_zero_exchange_t *x, float *array, size_t j)
{
    const size_t from = j * x->chunk;
    const size_t mine = x->count[x->rank] > from ? x->count[x->rank] - from : 0;
    const size_t n = mine < x->chunk ? mine : x->chunk;
    float *own = array + x->lo[x->rank] + from;
    int posted = 0, rc = MPI_SUCCESS;
    for (int q = 0; q < x->size && rc == MPI_SUCCESS; q++) {
        if (q == x->rank) {
            continue;
        }
        const size_t theirs = x->count[q] > from ? x->count[q] - from : 0;
        const size_t m = theirs < x->chunk ? theirs : x->chunk;
        if (n > 0) {
            rc = MPI_Irecv(slot(x, q), (int)n, MPI_FLOAT, q, TAG, x->comm, &x->reqs[posted++]);
        }
        if (rc == MPI_SUCCESS && m > 0) {
            rc = MPI_Isend(array + x->lo[q] + from, (int)m, MPI_FLOAT, q, TAG, x->comm,
                           &x->reqs[posted++]);
        }
    }
    bl_status_t st = rc == MPI_SUCCESS
                         ? wait_all(x, posted, "the reduce-scatter of the gradients (ZeRO-1)")
                         : bl_fail_mpi(x->rt, rc, "posting the reduce-scatter of the gradients");
    if (st != BL_OK) {
        return st;
    }
    /* Rank 0's piece first, then each next rank's added to it: the order of
     * the node-local reductions' sums, so the same bits. This rank's own
     * piece is read before its block is written. */
    float sum[BLOCK];
    for (size_t i = 0; i < n; i += BLOCK) {
        const size_t m = n - i < BLOCK ? n - i : BLOCK;
        for (int q = 0; q < x->size; q++) {
            const float *p = (q == x->rank ? own : slot(x, q)) + i;
            if (q == 0) {
                memcpy(sum, p, m * sizeof(float));
            } else {
                for (size_t k = 0; k < m; k++) {
                    sum[k] += p[k];
                }
            }
        }
        memcpy(own + i, sum, m * sizeof(float));
    }
    return BL_OK;
}

bl_status_t bl_zero_reduce_scatter(bl_zero_exchange_t *x, float *array)
{
    bl_status_t st = BL_OK;
    for (size_t j = 0; j < x->rounds && st == BL_OK; j++) {
        st = scatter_round(x, array, j);
    }
    return st;
}

bl_status_t bl_zero_all_gather(bl_zero_exchange_t *x, float *array, const char *what)
{
    const int last = x->size - 1;
    const size_t run = x->lo[last] + x->count[last] - x->lo[0];
    if (run <= x->piece) {
        MPI_Request req = MPI_REQUEST_NULL;
        int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, array + x->lo[0], x->counts,
                                 x->displs, MPI_FLOAT, x->comm, &req);
        return bl_collective_posted(x->rt, rc, &req, what, x->comm);
    }
    bl_status_t st = BL_OK;
    for (int k = 0; k < x->size && st == BL_OK; k++) {
        for (size_t at = 0; at < x->count[k] && st == BL_OK; at += x->piece) {
            const size_t m = x->count[k] - at < x->piece ? x->count[k] - at : x->piece;
            st =
                bl_bcast_bounded(x->rt, array + x->lo[k] + at, (int)m, MPI_FLOAT, k, x->comm, what);
        }
    }
    return st;
}

/* Sends (on rank k) or receives (on the root) rank k's slice, in messages of
 * at most `piece`. */
static bl_status_t move_slice(bl_zero_exchange_t *x, int k, int root, const float *mine,
                              float *whole, const char *what)
{
    bl_status_t st = BL_OK;
    for (size_t at = 0; at < x->count[k] && st == BL_OK; at += x->piece) {
        const size_t m = x->count[k] - at < x->piece ? x->count[k] - at : x->piece;
        MPI_Request req = MPI_REQUEST_NULL;
        int rc = x->rank == root
                     ? MPI_Irecv(whole + x->lo[k] + at, (int)m, MPI_FLOAT, k, TAG, x->comm, &req)
                     : MPI_Isend(mine + at, (int)m, MPI_FLOAT, root, TAG, x->comm, &req);
        st = bl_collective_posted(x->rt, rc, &req, what, x->comm);
    }
    return st;
}

bl_status_t bl_zero_gather_to(bl_zero_exchange_t *x, int root, const float *mine, float *whole,
                              const char *what)
{
    bl_status_t st = BL_OK;
    for (int k = 0; k < x->size && st == BL_OK; k++) {
        if (k == root && x->rank == root) {
            if (whole + x->lo[k] != mine) {
                memcpy(whole + x->lo[k], mine, x->count[k] * sizeof(float));
            }
        } else if (k != root && (x->rank == root || x->rank == k)) {
            st = move_slice(x, k, root, mine, whole, what);
        }
    }
    return st;
}
