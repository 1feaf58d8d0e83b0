/* ZeRO-1 for the layer trainer behind the reducer's interface (reducer.h):
 * the stage's parameters [first param of its first layer, end of its last)
 * are cut into one slice per member of its data-parallel group by the
 * node-local reduction's rule (count · k / D, bl_zero_even_slices). After
 * backward, the reduce-scatter (zero_exchange.h) leaves each member its
 * slice of the group's gradient sums, added in rank order, which are the
 * node-local reduction's sums bit for bit; the member applies the SGD step
 * to its slice with its slice of the momentum, the only part of the momentum
 * that it keeps current; and an all-gather gives every member the stage's new
 * parameters. The momentum is gathered whole only when the trainer needs it
 * (a checkpoint, a layer migration). Host ranks only. */
#include <limits.h>
#include <string.h>

#include "memory_account.h"
#include "reducer.h"
#include "wait.h"
#include "zero_exchange.h"

typedef struct zero {
    bl_reducer_t base;
    bl_reducer_setup_t setup;
    MPI_Comm comm;        /* the group's duplicate, in rank order */
    bl_zero_exchange_t x; /* the stage's slices and their exchanges */
    double totals[2];     /* the step's loss sum and correct count */
} zero_t;

/* Cuts the slices of layers [first, last) over the group and sets the
 * reducer's slice. Local. */
static bl_status_t cut_slices(zero_t *z, int first, int last)
{
    bl_runtime_t *rt = z->setup.rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    const int D = z->setup.replicas;
    size_t stage_first = 0, stage_count = 0;
    bl_reducer_layer_params(z->setup.model, first, last, &stage_first, &stage_count);
    size_t *lo = bl_mem_array(a, (size_t)D, sizeof *lo);
    size_t *count = bl_mem_array(a, (size_t)D, sizeof *count);
    bl_status_t st = BL_OK;
    bl_zero_exchange_free(&z->x);
    if (lo == NULL || count == NULL) {
        st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for ZeRO-1's slices of %d ranks", D);
    } else {
        bl_zero_even_slices(stage_first, stage_count, D, lo, count);
        st = bl_zero_exchange_init(&z->x, rt, z->comm, lo, count,
                                   z->setup.bucket_bytes / sizeof(float), (size_t)INT_MAX);
    }
    if (st == BL_OK) {
        z->base.slice_first = z->x.lo[z->x.rank];
        z->base.slice_count = z->x.count[z->x.rank];
    }
    bl_mem_free(a, lo);
    bl_mem_free(a, count);
    return st;
}

static bl_status_t zero_finish(bl_reducer_t *r, double *loss_sum, long *correct)
{
    zero_t *z = (zero_t *)r;
    bl_runtime_t *rt = z->setup.rt;
    bl_model_t *m = z->setup.model;
    /* The totals travel while the gradients are summed. */
    MPI_Request totals = MPI_REQUEST_NULL;
    if (loss_sum != NULL) {
        z->totals[0] = *loss_sum;
        z->totals[1] = (double)*correct;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, z->totals, 2, MPI_DOUBLE, MPI_SUM, z->comm, &totals);
        if (rc != MPI_SUCCESS) {
            return bl_fail_mpi(rt, rc, "MPI_Iallreduce of the step's loss and accuracy");
        }
    }
    bl_status_t st = bl_zero_reduce_scatter(&z->x, bl_model_exec_grads(m));
    if (st == BL_OK) {
        bl_reducer_update(&z->setup, r->slice_first, r->slice_count);
        st = bl_zero_all_gather(&z->x, bl_model_exec_params(m),
                                "the all-gather of the parameters (ZeRO-1)");
    }
    /* After a failure the totals are left pending, since the job is ending. */
    if (st == BL_OK && loss_sum != NULL) {
        st = bl_wait_collective(rt, &totals, "the loss and accuracy all-reduce", z->comm);
        if (st == BL_OK) {
            *loss_sum = z->totals[0];
            *correct = (long)z->totals[1];
        }
    }
    return st;
}

static bl_status_t zero_restage(bl_reducer_t *r, int first, int last)
{
    return cut_slices((zero_t *)r, first, last);
}

static bl_status_t zero_gather_momentum(bl_reducer_t *r)
{
    zero_t *z = (zero_t *)r;
    return bl_zero_all_gather(&z->x, *z->setup.velocity, "the all-gather of the momentum (ZeRO-1)");
}

static void zero_destroy(bl_reducer_t *r, int healthy)
{
    zero_t *z = (zero_t *)r;
    bl_zero_exchange_free(&z->x);
    if (healthy && z->comm != MPI_COMM_NULL) {
        MPI_Comm_free(&z->comm);
    }
    bl_mem_free(bl_rt_allocator(z->setup.rt), z);
}

static const bl_reducer_ops_t zero_ops = {.finish = zero_finish,
                                          .restage = zero_restage,
                                          .gather_momentum = zero_gather_momentum,
                                          .destroy = zero_destroy};

/* Logs on rank 0 which path the gradients take. */
static void log_path(const zero_t *z)
{
    const bl_reducer_setup_t *s = &z->setup;
    char momentum[32], bucket[32];
    bl_mem_format_bytes((double)z->x.count[0] * sizeof(float), momentum, sizeof momentum);
    bl_mem_format_bytes((double)(z->x.size - 1) * (double)z->x.chunk * sizeof(float), bucket,
                        sizeof bucket);
    const int last = z->x.size - 1;
    bl_log(s->rt, BL_LOG_INFO,
           "gradient reduction: ZeRO-1 over %d replicas (reduce-scatter in %zu round(s) of a %s "
           "bucket, each rank updates its slice of the stage's %zu parameters with its %s of "
           "momentum, then all-gather)%s",
           z->x.size, z->x.rounds, bucket, z->x.lo[last] + z->x.count[last] - z->x.lo[0], momentum,
           s->stages == 1 && s->node_reduce ? "; it takes precedence over the node-local reduction"
                                            : "");
}

bl_status_t bl_reducer_create_zero(const bl_reducer_setup_t *setup, bl_reducer_t **out)
{
    *out = NULL;
    bl_runtime_t *rt = setup->rt;
    bl_status_t st = BL_OK;
    if (setup->dev->device != NULL) {
        st = bl_fail(rt, BL_ERR_UNSUPPORTED,
                     "--zero on (transport.zero, ZeRO-1) is not supported on rank %d, whose "
                     "model lives in the memory of %s: the slices would have to be staged "
                     "through the host; give every rank --device cpu, or train with --zero off",
                     rt->rank, setup->dev->device->name);
    }
    zero_t *z = NULL;
    if (st == BL_OK) {
        z = bl_mem_alloc(bl_rt_allocator(rt), sizeof *z);
        st = z != NULL ? BL_OK : bl_fail(rt, BL_ERR_NO_MEM, "no memory for a reducer");
    }
    /* Every member learns of a refusal anywhere before the collectives. */
    st = bl_agree_in(rt, setup->dp, st, BL_ERR_UNSUPPORTED, "setting up ZeRO-1");
    if (st != BL_OK) {
        bl_mem_free(bl_rt_allocator(rt), z);
        return st;
    }
    memset(z, 0, sizeof *z);
    z->base = (bl_reducer_t){.ops = &zero_ops, .path = "ZeRO-1 (MPI)", .sharded = 1};
    z->setup = *setup;
    int rc = MPI_Comm_dup(setup->dp, &z->comm);
    if (rc != MPI_SUCCESS) {
        z->comm = MPI_COMM_NULL;
        st = bl_fail_mpi(rt, rc, "duplicating the data-parallel group for ZeRO-1");
    } else {
        st = cut_slices(z, setup->first_layer, setup->last_layer);
    }
    st = bl_agree_in(rt, setup->dp, st, BL_ERR_NO_MEM, "setting up ZeRO-1");
    if (st != BL_OK) {
        zero_destroy(&z->base, 1);
        return st;
    }
    log_path(z);
    *out = &z->base;
    return BL_OK;
}
