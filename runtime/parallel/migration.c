/* Live layer migration (migration.h): the parameters and the momentum follow
 * their layer. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "migration.h"
#include "wait.h"

/* The tags: each layer has two messages (parameters, then momentum), so a
 * layer's state can never be taken for another's. MPI guarantees tags up to
 * 32767. */
#define BL_MIGRATION_MAX_LAYERS (32767 / 2)

static bl_status_t move_failed(const bl_layout_t *l, int rc, int layer, int from, int to)
{
    char what[128];
    snprintf(what, sizeof what, "moving layer %d from stage %d to stage %d (pipeline %d)", layer,
             from, to, l->replica);
    return bl_fail_mpi(l->rt, rc, what);
}

bl_status_t bl_migrate_layers(const bl_layout_t *l, bl_model_t *m, float *velocity, const int *from,
                              const int *to, bl_migration_t *out)
{
    memset(out, 0, sizeof *out);
    int S = l->stages, L = m->layer_count;
    if (S == 1) {
        return BL_OK;
    }
    if (L > BL_MIGRATION_MAX_LAYERS) {
        return bl_fail(l->rt, BL_ERR_UNSUPPORTED,
                       "layer migration handles up to %d layers; the model has %d",
                       BL_MIGRATION_MAX_LAYERS, L);
    }
    const bl_allocator_t *a = bl_rt_allocator(l->rt);
    /* There are at most two requests per layer that this rank sends or
     * receives; peer[k] is request k's other rank in the job, for a timeout's
     * message. */
    MPI_Request *req = bl_mem_array(a, 2 * (size_t)L, sizeof *req);
    int *peer = bl_mem_array(a, 2 * (size_t)L, sizeof *peer);
    if (req == NULL || peer == NULL) {
        bl_mem_free(a, req);
        bl_mem_free(a, peer);
        return bl_fail(l->rt, BL_ERR_NO_MEM, "no memory to migrate %d layers", L);
    }
    int n = 0;
    bl_status_t st = BL_OK;
    for (int i = 0; i < L && st == BL_OK; i++) {
        int was = bl_layout_stage_of(from, S, i), now = bl_layout_stage_of(to, S, i);
        if (was == now) {
            continue;
        }
        out->layers_moved++;
        const bl_layer_t *layer = &m->layers[i];
        size_t count = layer->param_count;
        out->pipeline_bytes += 2.0 * (double)count * sizeof(float);
        if (count == 0 || (l->stage != was && l->stage != now)) {
            continue;
        }
        if (count > (size_t)INT_MAX) {
            st =
                bl_fail(l->rt, BL_ERR_UNSUPPORTED,
                        "layer %d has %zu parameters: more than one MPI message carries", i, count);
            break;
        }
        float *state[2] = {m->params + layer->param_offset, velocity + layer->param_offset};
        for (int k = 0; k < 2 && st == BL_OK; k++) {
            int rc;
            /* The ranks of the pipeline's communicator are its stages. */
            if (l->stage == was) {
                rc = MPI_Isend(state[k], (int)count, MPI_FLOAT, now, 2 * i + k, l->pipe, &req[n]);
                out->bytes_sent += (double)count * sizeof(float);
            } else {
                rc = MPI_Irecv(state[k], (int)count, MPI_FLOAT, was, 2 * i + k, l->pipe, &req[n]);
                out->bytes_received += (double)count * sizeof(float);
            }
            if (rc != MPI_SUCCESS) {
                st = move_failed(l, rc, i, was, now);
            } else {
                /* In the job's ranks, pipeline r's stage s is rank r × S + s. */
                peer[n++] = l->replica * S + (l->stage == was ? now : was);
            }
        }
    }
    /* Every request completes under the bound, or the wait names the rank that
     * had not arrived. After a local failure (or an MPI error) the posted
     * requests still complete before the buffers can be touched again; after a
     * timeout they are left pending, since the job is ending. */
    for (int k = 0; k < n && st == BL_OK; k++) {
        st = bl_wait_bounded(l->rt, &req[k], "a layer migration", peer[k]);
    }
    if (st != BL_OK && st != BL_ERR_TIMEOUT) {
        MPI_Waitall(n, req, MPI_STATUSES_IGNORE);
    }
    bl_mem_free(a, req);
    bl_mem_free(a, peer);
    return st;
}
