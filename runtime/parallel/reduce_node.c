/* The reducer of a data-parallel group on one node, or on nodes of equal size:
 * shared memory within each node, then MPI across them (node_reduce.h), behind
 * the reducer's interface (reducer.h). */
#include <string.h>

#include "node_reduce.h"
#include "reducer.h"
#include "wait.h"

typedef struct node {
    bl_reducer_t base;
    bl_reducer_setup_t setup;
    bl_node_reduce_t shared;
} node_t;

static bl_status_t node_finish(bl_reducer_t *r, double *loss_sum, long *correct)
{
    node_t *n = (node_t *)r;
    const bl_sgd_t *o = &n->setup.sgd;
    /* Each rank sums and updates its slice of the shared parameters, and the
     * loss and accuracy are summed. */
    return bl_node_reduce_step(&n->shared, loss_sum, correct, o->grad_scale, o->lr, o->momentum,
                               o->weight_decay);
}

static void node_destroy(bl_reducer_t *r, int healthy)
{
    node_t *n = (node_t *)r;
    bl_node_reduce_free(&n->shared, healthy);
    bl_mem_free(bl_rt_allocator(n->setup.rt), n);
}

static const bl_reducer_ops_t node_ops = {.finish = node_finish, .destroy = node_destroy};

bl_status_t bl_reducer_create_node(const bl_reducer_setup_t *setup, bl_reducer_t **out, int *active)
{
    *active = 0;
    node_t *n = bl_mem_alloc(bl_rt_allocator(setup->rt), sizeof *n);
    bl_status_t st =
        n != NULL ? BL_OK : bl_fail(setup->rt, BL_ERR_NO_MEM, "no memory for a reducer");
    /* Every member takes part in learning whether the group qualifies. */
    st = bl_agree(setup->rt, st, BL_ERR_NO_MEM, "setting up the node-local reduction");
    if (st != BL_OK) {
        bl_mem_free(bl_rt_allocator(setup->rt), n);
        return st;
    }
    memset(n, 0, sizeof *n);
    n->base = (bl_reducer_t){.ops = &node_ops, .path = "shared memory"};
    n->setup = *setup;
    /* Only host arrays qualify: a device rank's gradients live on its device. */
    st = bl_node_reduce_init(&n->shared, setup->rt, setup->dp, setup->model, setup->velocity,
                             setup->node_reduce && setup->group->device_members == 0);
    if (st != BL_OK || !n->shared.active) {
        bl_node_reduce_free(&n->shared, !setup->rt->gave_up);
        bl_mem_free(bl_rt_allocator(setup->rt), n);
        return st;
    }
    if (n->shared.nodes > 1) {
        n->base.path = "shared memory within nodes, then MPI across them";
    }
    *active = 1;
    *out = &n->base;
    return BL_OK;
}
