/* The data × pipeline grid: its checks and communicators, and the stage maps it
 * offers (layout.h). */
#include <string.h>

#include "layout.h"
#include "pipeline.h"
#include "plan.h"

double bl_layer_cost(const bl_model_t *m, int i)
{
    const bl_layer_t *l = &m->layers[i];
    double in = (double)l->in_features, out = (double)l->out_features;
    /* A step runs the forward pass and, in backward, the weight gradient and
     * the input gradient: three passes of about the forward's cost, except that
     * layer 0's input gradient is never computed. */
    double passes = i == 0 ? 2.0 : 3.0;
    double forward = in * out;
    switch (l->kind) {
    case BL_LAYER_DENSE:
        break;
    case BL_LAYER_RELU:
        return 2.0 * out; /* one element-wise pass each way */
    case BL_LAYER_USER:
        if (l->ops.cost_hint != NULL) {
            double c = l->ops.cost_hint(l->state, l->in_features, l->out_features);
            forward = c >= 0.0 && c < 1e300 ? c : forward;
        }
        break;
    }
    return passes * forward;
}

bl_status_t bl_layout_check_map(bl_runtime_t *rt, int layers, int stages, const int *given,
                                int count, int *first)
{
    if (count != stages) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "the stage map has %d stages but the pipeline has %d", count, stages);
    }
    memcpy(first, given, (size_t)stages * sizeof *first);
    first[stages] = layers;
    bl_plan_t map = {.stages = stages, .layers = layers, .first = first};
    char err[256];
    if (bl_plan_check_map(&map, err, sizeof err) != 0) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "%s", err);
    }
    return BL_OK;
}

bl_status_t bl_layout_balanced_map(bl_runtime_t *rt, const bl_model_t *m, int stages, int *first)
{
    const bl_allocator_t *a = bl_rt_allocator(rt);
    double *cost = bl_mem_array(a, (size_t)m->layer_count, sizeof *cost);
    if (cost == NULL) {
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for %d layer costs", m->layer_count);
    }
    for (int i = 0; i < m->layer_count; i++) {
        cost[i] = bl_layer_cost(m, i);
    }
    bl_part_allocator_t pa = bl_rt_part_allocator(rt);
    int rc = bl_pipe_partition_layers(m->layer_count, cost, stages, NULL, first, &pa);
    first[stages] = m->layer_count;
    bl_mem_free(a, cost);
    return rc == 0 ? BL_OK
                   : bl_fail(rt, BL_ERR_NO_MEM, "no memory to split %d layers over %d stages",
                             m->layer_count, stages);
}

bl_status_t bl_layout_split(bl_runtime_t *rt, int color, int key, MPI_Comm *out, const char *what)
{
    int rc = MPI_Comm_split(rt->comm, color, key, out);
    if (rc == MPI_SUCCESS && *out != MPI_COMM_NULL) {
        rc = MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN);
    }
    return rc == MPI_SUCCESS ? BL_OK : bl_fail_mpi(rt, rc, what);
}

bl_status_t bl_layout_init(bl_layout_t *l, bl_runtime_t *rt, const bl_model_t *m, int stages)
{
    return bl_layout_init_units(l, rt, m->layer_count, "layers", stages);
}

bl_status_t bl_layout_init_units(bl_layout_t *l, bl_runtime_t *rt, int units, const char *noun,
                                 int stages)
{
    memset(l, 0, sizeof *l);
    l->pipe = MPI_COMM_NULL;
    l->dp = MPI_COMM_NULL;
    int P = rt->size;
    if (stages < 1 || P % stages != 0) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "%d pipeline stages: the job's %d ranks must be a whole number of "
                       "pipelines (ranks = data-parallel groups × stages)",
                       stages, P);
    }
    if (stages > units) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "%d pipeline stages but the model has %d %s: every stage needs at "
                       "least one",
                       stages, units, noun);
    }
    l->rt = rt;
    l->stages = stages;
    l->replicas = P / stages;
    l->stage = rt->rank % stages;
    l->replica = rt->rank / stages;
    return BL_OK;
}

int bl_layout_stage_of(const int *first, int stages, int layer)
{
    int s = 0;
    while (s + 1 < stages && first[s + 1] <= layer) {
        s++;
    }
    return s;
}

bl_status_t bl_layout_connect(bl_layout_t *l)
{
    bl_status_t st = BL_OK;
    if (l->stages > 1) {
        st = bl_layout_split(l->rt, l->replica, l->stage, &l->pipe,
                             "MPI_Comm_split of the pipelines");
    }
    if (st == BL_OK && l->replicas > 1) {
        st = bl_layout_split(l->rt, l->stage, l->replica, &l->dp,
                             "MPI_Comm_split of the data-parallel groups");
    }
    return st;
}

void bl_layout_free(bl_layout_t *l)
{
    if (l->rt == NULL) {
        return;
    }
    if (l->pipe != MPI_COMM_NULL) {
        MPI_Comm_free(&l->pipe);
    }
    if (l->dp != MPI_COMM_NULL) {
        MPI_Comm_free(&l->dp);
    }
    memset(l, 0, sizeof *l);
    l->pipe = MPI_COMM_NULL;
    l->dp = MPI_COMM_NULL;
}
