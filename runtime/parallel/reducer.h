/* The reducer: how a pipeline stage's data-parallel group turns every replica's
 * per-sample gradient sums into the group's sums and updates the stage's
 * parameters. There is one interface, whatever the path:
 *   - one replica: there is nothing to reduce, and the update runs in one pass;
 *   - node-local: the group shares its gradients, parameters and momentum
 *     through shared memory, and each rank sums and updates its slice
 *     (node_reduce.h);
 *   - buckets: MPI all-reduces of gradient buckets, posted as backward finishes
 *     their layers, with each slice updated as its sums land (grad_sync.h), on
 *     host gradients, on host copies of device gradients (staged through pinned
 *     memory), or on the device through a device communicator (NCCL);
 *   - ZeRO-1 (reduce_zero.c, transport.zero): the stage's momentum is sharded
 *     over the group. A reduce-scatter gives each rank its slice of the sums
 *     (zero_exchange.h), each rank updates its slice with its slice of the
 *     momentum, and an all-gather gives every rank the new parameters. The
 *     slices and the sums are the node-local reduction's, so the parameters
 *     are that path's bit for bit. Host ranks only.
 * The trainer picks the path once (bl_reducer_create) and then only calls the
 * operations below, so its step has no branch on the path. */
#ifndef BL_REDUCER_H
#define BL_REDUCER_H

#include "device_copies.h"
#include "device_group.h"

/* The optimizer step that the reducer applies to the group's sums: SGD with
 * PyTorch's momentum and weight-decay conventions. */
typedef struct bl_sgd {
    float grad_scale; /* 1/B: the per-sample sums become the batch mean */
    float lr;
    float momentum;
    float weight_decay;
} bl_sgd_t;

typedef struct bl_reducer bl_reducer_t;

typedef struct bl_reducer_ops {
    /* The backward hook, called once the stage's layer `layer` holds its
     * gradient; NULL when the path needs none. */
    bl_status_t (*layer_done)(bl_reducer_t *r, int layer);
    /* Called after the stage's compute: sums the gradients over the group and
     * updates the stage's parameters; with loss_sum not NULL, it also sums the
     * step's loss and correct count over the group. Collective over the group. */
    bl_status_t (*finish)(bl_reducer_t *r, double *loss_sum, long *correct);
    /* Tells the reducer that the stage now owns layers [first, last) after a
     * layer migration, so that the buckets are planned anew. Local; NULL when
     * the path needs nothing. */
    bl_status_t (*restage)(bl_reducer_t *r, int first, int last);
    /* Gives every member the stage's whole momentum, of which each keeps
     * only its slice current under ZeRO-1; the caller holds memory for the
     * stage's momentum first. Collective over the group; NULL when every
     * member keeps it whole. */
    bl_status_t (*gather_momentum)(bl_reducer_t *r);
    /* Frees the reducer; `healthy` is 0 after a failure, when the group may
     * never meet again in a collective. */
    void (*destroy)(bl_reducer_t *r, int healthy);
} bl_reducer_ops_t;

struct bl_reducer {
    const bl_reducer_ops_t *ops;
    const char *path; /* for logs: "none (one replica)", "shared memory", "MPI", "NCCL", ... */
    /* The stage hands its layers to layer_done only after its last transfer of
     * the step, because a device communicator shares one queue with the
     * pipeline's transfers (stage.h's done_after_transfers). */
    int after_transfers;
    /* 1 under ZeRO-1: this rank keeps the momentum of the parameters
     * [slice_first, slice_first + slice_count) only, its slice of the stage's
     * (re-cut by restage); 0 when it keeps the stage's whole. */
    int sharded;
    size_t slice_first, slice_count;
};

/* What a reducer is made for. */
typedef struct bl_reducer_setup {
    bl_runtime_t *rt;
    bl_model_t *model;
    MPI_Comm dp;                    /* the data-parallel group (MPI_COMM_NULL: one replica) */
    int replicas;                   /* D, the group's members */
    int stages;                     /* S (the node-local reduction needs S = 1) */
    int first_layer, last_layer;    /* the stage's layers [first, last) */
    size_t bucket_bytes;            /* the MPI buckets' size */
    bl_sgd_t sgd;                   /* the update to apply */
    float **velocity;               /* the host momentum (the node-local reduction moves it) */
    bl_device_copies_t *dev;        /* the device copies (none when dev->device is NULL) */
    const bl_device_group_t *group; /* what the group is made of, and this rank's path */
    int node_reduce;                /* the config allows the node-local reduction */
    int zero;                       /* ZeRO-1 (transport.zero): shard the momentum */
    double timeout_s;               /* the device communicators' bound on waits */
} bl_reducer_setup_t;

/* Picks the path for this rank (ZeRO-1 when setup->zero and the group has
 * several members; else the node-local reduction when the group qualifies;
 * else buckets), sets it up and returns the reducer in *out
 * (NULL on failure). Collective over the group (shared-memory windows, device
 * communicators): a failure anywhere in the group fails the call on every
 * member. */
bl_status_t bl_reducer_create(const bl_reducer_setup_t *setup, bl_reducer_t **out);

/* The operations, dispatched to the path's. bl_reducer_layer_done matches
 * stage.h's bl_layer_done_fn, with the reducer as its argument;
 * bl_reducer_destroy of NULL is a no-op. */
bl_status_t bl_reducer_layer_done(int layer, void *reducer);
bl_status_t bl_reducer_finish(bl_reducer_t *r, double *loss_sum, long *correct);
bl_status_t bl_reducer_restage(bl_reducer_t *r, int first, int last);
bl_status_t bl_reducer_gather_momentum(bl_reducer_t *r);
void bl_reducer_destroy(bl_reducer_t *r, int healthy);

/* The paths' constructors, one of which bl_reducer_create picks.
 * bl_reducer_create_node sets *active to 0 and returns BL_OK when the group
 * does not qualify. */
bl_status_t bl_reducer_create_single(const bl_reducer_setup_t *setup, bl_reducer_t **out);
bl_status_t bl_reducer_create_node(const bl_reducer_setup_t *setup, bl_reducer_t **out,
                                   int *active);
bl_status_t bl_reducer_create_buckets(const bl_reducer_setup_t *setup, bl_reducer_t **out);
/* ZeRO-1's: refuses a group with a device rank (BL_ERR_UNSUPPORTED, naming
 * --zero and transport.zero), agreed over the group. */
bl_status_t bl_reducer_create_zero(const bl_reducer_setup_t *setup, bl_reducer_t **out);

/* Applies the SGD update to parameters [first, first + count) with the group's
 * gradient sums there: on the device copies when the rank has them, else on the
 * model's host arrays. */
void bl_reducer_update(const bl_reducer_setup_t *setup, size_t first, size_t count);

/* Sets [*lo, *lo + *count) to the parameters of layers [first, last) of m. */
void bl_reducer_layer_params(const bl_model_t *m, int first, int last, size_t *lo, size_t *count);

#endif /* BL_REDUCER_H */
