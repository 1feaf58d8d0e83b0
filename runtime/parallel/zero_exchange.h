/* The exchanges of ZeRO-1 that do not depend on the model or the optimizer:
 * both trainers' sharded optimizer state (the language model's lm_zero.h,
 * the layer trainer's reduce_zero.c) run on them.
 *
 * A contiguous run of floats in an array (a stage's parameters, gradients or
 * momentum) is cut into one slice per rank of a communicator, in rank order
 * and end to end: slice k is [lo[k], lo[k] + count[k]), offsets into the
 * array. The caller cuts them (each trainer keeps its node-local reduction's
 * rule, so that the sums are that reduction's bit for bit);
 * bl_zero_even_slices is the layer trainer's rule (node_reduce.c's
 * count · k / D).
 *   - The reduce-scatter gives each rank its slice summed over the ranks: in
 *     rounds of at most `bucket` floats, every rank sends each other rank its
 *     piece of that rank's slice, and each rank adds the D pieces of its own
 *     slice in rank order (rank 0's first), in blocks of 512 floats, which is
 *     the node-local reductions' order.
 *   - The all-gather gives every rank every slice of an array (the new
 *     parameters, or the momentum when a trainer needs it whole).
 *   - The gather to a root collects every slice of an array on one rank.
 * The extra memory is the round's bucket: the D − 1 other ranks' pieces of
 * this rank's slice. Every wait is bounded by the runtime's timeout. */
#ifndef BL_ZERO_EXCHANGE_H
#define BL_ZERO_EXCHANGE_H

#include "internal.h"

typedef struct bl_zero_exchange {
    bl_runtime_t *rt;
    MPI_Comm comm;     /* the caller's; its rank order is the slices' order */
    int rank, size;    /* this rank in comm, and D */
    size_t *lo;        /* (size) each slice's first float in the array */
    size_t *count;     /* (size) each slice's floats */
    size_t chunk;      /* the floats of one rank's piece in a round of the reduce-scatter */
    size_t rounds;     /* the rounds that cover the largest slice */
    size_t piece;      /* the most floats one message carries */
    float *bucket;     /* ((size − 1) · chunk) a round's pieces of this slice from the others */
    MPI_Request *reqs; /* (2 · size) a round's receives and sends */
    int *counts, *displs; /* (size) the all-gather's, relative to lo[0], when they fit an int */
} bl_zero_exchange_t;

/* Cuts `total` floats from `first` into `parts` slices, slice k from
 * first + total · k / parts (node_reduce.c's rule); lo and count have
 * `parts` entries. Pure. */
void bl_zero_even_slices(size_t first, size_t total, int parts, size_t *lo, size_t *count);
/* The same rule's slice `part` alone, in *lo and *count. Pure. */
void bl_zero_even_slice(size_t first, size_t total, int part, int parts, size_t *lo, size_t *count);

/* The floats of one rank's piece in a round of the reduce-scatter whose
 * largest slice has `largest` floats: an even share of `bucket` over
 * `parts` ranks (16 floats at least), but no more than the largest slice
 * or `piece`. The bucket holds (parts − 1) pieces. Pure: memory accounts
 * read it before the state is made. */
size_t bl_zero_chunk_floats(size_t largest, int parts, size_t bucket, size_t piece);

/* Sets up x for the slices lo and count (comm's size entries each, copied;
 * end to end) over comm, which x uses but does not own: the reduce-scatter
 * moves at most `bucket` floats a round and no message carries more than
 * `piece` floats (INT_MAX at most; smaller in tests). Local. Returns BL_OK
 * or BL_ERR_NO_MEM (x is then freed); x may be freed in either case. */
bl_status_t bl_zero_exchange_init(bl_zero_exchange_t *x, bl_runtime_t *rt, MPI_Comm comm,
                                  const size_t *lo, const size_t *count, size_t bucket,
                                  size_t piece);

/* Sums this rank's slice of `array` over the ranks, into this rank's own
 * slice (the others' slices of this rank's array are left as they were,
 * read only). Collective over comm. BL_OK, BL_ERR_MPI or BL_ERR_TIMEOUT. */
bl_status_t bl_zero_reduce_scatter(bl_zero_exchange_t *x, float *array);

/* Gives every rank every slice of `array`, each from its rank: one
 * all-gather in place when the run of slices fits a message, else each slice
 * broadcast from its rank in messages of at most `piece` floats. `what`
 * names the exchange in errors. Collective over comm. */
bl_status_t bl_zero_all_gather(bl_zero_exchange_t *x, float *array, const char *what);

/* Collects every rank's slice on `root`: rank k's `mine` (its count[k]
 * floats) lands at lo[k] of the root's `whole`, in messages of at most
 * `piece` floats; `whole` is read only on the root (NULL elsewhere is
 * fine). Collective over comm. */
bl_status_t bl_zero_gather_to(bl_zero_exchange_t *x, int root, const float *mine, float *whole,
                              const char *what);

/* Frees what init took (not the communicator); a zeroed x is fine. */
void bl_zero_exchange_free(bl_zero_exchange_t *x);

#endif /* BL_ZERO_EXCHANGE_H */
