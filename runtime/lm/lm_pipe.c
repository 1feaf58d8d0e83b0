/* The language-model trainer's grid and one step's passes (lm_pipe.h). */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "device.h"
#include "lm_pipe.h"
#include "wait.h"

bl_status_t bl_lm_grid_init(bl_lm_grid_t *g, bl_runtime_t *rt, const bl_gpt2_t *model, int stages,
                            int micro, int schedule, int capacity, int T)
{
    memset(g, 0, sizeof *g);
    g->tied = MPI_COMM_NULL;
    const int L = model->config.num_layers;
    bl_status_t st = bl_layout_init_units(&g->layout, rt, L + 2,
                                          "units (the embedding, the blocks and the head)", stages);
    if (st == BL_OK && (micro < 1 || micro > 32767)) {
        st = bl_fail(rt, BL_ERR_INVALID_ARG, "micro-batches %d must be in 1..32767", micro);
    }
    if (st != BL_OK) {
        return st;
    }
    const bl_allocator_t *a = bl_rt_allocator(rt);
    g->micro = micro;
    g->ops = bl_mem_array(a, 2 * (size_t)micro, sizeof *g->ops);
    g->views = bl_mem_array_zeroed(a, (size_t)micro, sizeof *g->views);
    g->view_layers =
        bl_mem_array_zeroed(a, (size_t)micro * (size_t)(L > 0 ? L : 1), sizeof *g->view_layers);
    g->sends = bl_mem_array(a, 2 * (size_t)micro, sizeof *g->sends);
    if (g->ops == NULL || g->views == NULL || g->view_layers == NULL || g->sends == NULL) {
        st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for %d micro-batches", micro);
    } else if (bl_pipe_schedule(schedule, stages, g->layout.stage, micro, g->ops) < 0) {
        st = bl_fail(rt, BL_ERR_INVALID_ARG,
                     "pipeline schedule %d is neither GPipe (%d) nor 1F1B (%d)", schedule,
                     BL_SCHEDULE_GPIPE, BL_SCHEDULE_1F1B);
    }
    /* A micro-batch's message (up to capacity sequences of T · C floats)
     * must fit MPI's int count. The tag is the micro-batch: the source
     * tells activations (from stage − 1) from gradients (from stage + 1). */
    if (st == BL_OK && (double)capacity * (double)T * (double)model->config.channels > INT_MAX) {
        st = bl_fail(rt, BL_ERR_INVALID_ARG,
                     "a pipeline message of %d sequences of T = %d tokens by C = %d channels "
                     "exceeds MPI's int count",
                     capacity, T, model->config.channels);
    }
    /* Collective from here: every rank got this far or failed alike. */
    st = bl_agree(rt, st, BL_ERR_INVALID_ARG, "the pipeline grid's set-up");
    if (st == BL_OK) {
        st = bl_layout_connect(&g->layout);
    }
    if (st == BL_OK) {
        const int s = g->layout.stage, S = g->layout.stages;
        st = bl_layout_split(rt, s == 0 || s == S - 1 ? 0 : MPI_UNDEFINED, rt->rank, &g->tied,
                             "MPI_Comm_split of the tied embedding's stages");
    }
    int tied_size = 0;
    if (st == BL_OK && g->tied != MPI_COMM_NULL &&
        MPI_Comm_size(g->tied, &tied_size) == MPI_SUCCESS && tied_size == 1) {
        MPI_Comm_free(&g->tied); /* nothing to sum with */
    }
    if (st != BL_OK) {
        bl_lm_grid_free(g);
    }
    return st;
}

void bl_lm_grid_free(bl_lm_grid_t *g)
{
    bl_runtime_t *rt = g->layout.rt;
    if (g->tied != MPI_COMM_NULL) {
        MPI_Comm_free(&g->tied);
    }
    if (rt != NULL) {
        const bl_allocator_t *a = bl_rt_allocator(rt);
        bl_mem_free(a, g->ops);
        bl_mem_free(a, g->views);
        bl_mem_free(a, g->view_layers);
        bl_mem_free(a, g->sends);
    }
    bl_layout_free(&g->layout);
    memset(g, 0, sizeof *g);
    g->tied = MPI_COMM_NULL;
}

void bl_lm_grid_set_map(bl_lm_grid_t *g, const bl_gpt2_t *model, const int *map)
{
    g->first = map[g->layout.stage];
    g->last = map[g->layout.stage + 1];
    g->owned_count = bl_gpt2_unit_ranges(model, g->first, g->last, g->owned);
}

double bl_lm_unit_cost(const bl_gpt2_t *model, int T, int u)
{
    const bl_gpt2_config_t *c = &model->config;
    const double C = c->channels;
    /* Multiply-adds per token: a block's four products (12 C²) and
     * attention's two (2 T C, scores and values); the head's logits (C Vp);
     * the embedding's lookups (C, nearly free); and the user layers' hints. */
    if (u == c->num_layers + 1) {
        return C * c->padded_vocab_size;
    }
    return (u == 0 ? C : 12.0 * C * C + 2.0 * T * C) + bl_gpt2_layers_cost(model, u);
}

bl_status_t bl_lm_grid_balanced_map(bl_runtime_t *rt, const bl_gpt2_t *model, int T, int stages,
                                    int *first)
{
    const int units = model->config.num_layers + 2;
    double cost[units];
    for (int u = 0; u < units; u++) {
        cost[u] = bl_lm_unit_cost(model, T, u);
    }
    bl_part_allocator_t pa = bl_rt_part_allocator(rt);
    int rc = bl_pipe_partition_layers(units, cost, stages, NULL, first, &pa);
    first[stages] = units;
    return rc == 0 ? BL_OK
                   : bl_fail(rt, BL_ERR_NO_MEM, "no memory to split %d units over %d stages", units,
                             stages);
}

/* Receives count floats from pipeline stage `from` into buf, bounded. */
static bl_status_t receive(bl_lm_grid_t *g, float *buf, int count, int from, int tag)
{
    bl_runtime_t *rt = g->layout.rt;
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Irecv(buf, count, MPI_FLOAT, from, tag, g->layout.pipe, &req);
    return bl_collective_posted(rt, rc, &req, "a pipeline receive", g->layout.pipe);
}

static bl_status_t send(bl_lm_grid_t *g, const float *buf, int count, int to, int tag, int *sends)
{
    int rc = MPI_Isend(buf, count, MPI_FLOAT, to, tag, g->layout.pipe, &g->sends[*sends]);
    if (rc != MPI_SUCCESS) {
        return bl_fail_mpi(g->layout.rt, rc, "a pipeline send");
    }
    (*sends)++;
    return BL_OK;
}

void bl_lm_cut(const uint16_t *stream, int T, const long *seq, int n, int32_t *tokens,
               int32_t *targets)
{
    for (int b = 0; b < n; b++) {
        const uint16_t *s = stream + seq[b] * (long)T;
        for (int i = 0; i < T; i++) {
            tokens[(size_t)b * T + i] = s[i];
            targets[(size_t)b * T + i] = s[i + 1];
        }
    }
}

/* Cuts the pipeline's n sequences into the host buffers tokens and
 * targets, copies them into whole (uploads them, on a device) and makes
 * the micro-batches' views, each of which sees its slice. */
static bl_status_t cut_micro_batches(bl_lm_grid_t *g, const bl_gpt2_t *model, bl_gpt2_acts_t *whole,
                                     const uint16_t *stream, const long *seq, int n,
                                     int32_t *tokens, int32_t *targets)
{
    const int M = g->micro, L = model->config.num_layers, T = whole->T;
    const int last_stage = g->layout.stage == g->layout.stages - 1;
    bl_lm_cut(stream, T, seq, n, tokens, targets);
    bl_error_t err = {0};
    if (bl_gpt2_put_batch(model, whole, tokens, targets, n, &err) != BL_OK) {
        return bl_fail_from(g->layout.rt, &err);
    }
    int b0 = 0;
    for (int i = 0; i < M; i++) {
        const int m = n / M + (i < n % M);
        bl_gpt2_acts_t *v = &g->views[i];
        bl_gpt2_acts_view(model, whole, b0, m, g->view_layers + (size_t)i * (size_t)(L > 0 ? L : 1),
                          v);
        v->has_targets = last_stage;
        b0 += m;
    }
    return BL_OK;
}

bl_status_t bl_lm_grid_passes(bl_lm_grid_t *g, bl_gpt2_t *model, bl_gpt2_acts_t *whole,
                              const uint16_t *stream, const long *seq, int n, int32_t *tokens,
                              int32_t *targets, long step, const bl_slowdowns_t *slowdowns,
                              bl_lm_passes_t *out)
{
    *out = (bl_lm_passes_t){0};
    const int s = g->layout.stage, S = g->layout.stages, C = model->config.channels;
    int sends = 0;
    bl_status_t st = cut_micro_batches(g, model, whole, stream, seq, n, tokens, targets);
    for (int k = 0; k < 2 * g->micro && st == BL_OK; k++) {
        const int i = g->ops[k].micro;
        bl_gpt2_acts_t *v = &g->views[i];
        const int count = v->B * whole->T * C;
        const int forward = g->ops[k].pass == BL_PIPE_FORWARD;
        double t0 = bl_now_seconds();
        /* The input: the previous stage's activations, or the next one's
         * gradient of this stage's output. */
        if (forward && s > 0) {
            st = receive(g, bl_gpt2_stream(model, v, g->first - 1), count, s - 1, i);
        } else if (!forward && s < S - 1) {
            st = receive(g, v->dres, count, s + 1, i);
        }
        double t1 = bl_now_seconds();
        out->pipe_s += t1 - t0;
        if (st != BL_OK) {
            break;
        }
        const double factor = bl_slowdowns_factor(slowdowns, step);
        bl_error_t err = {0};
        for (int u = forward ? g->first : g->last - 1;
             st == BL_OK && v->B > 0 && u >= g->first && u < g->last; u += forward ? 1 : -1) {
            const double u0 = g->unit_s != NULL ? bl_now_seconds() : 0.0;
            st = forward ? bl_gpt2_unit_forward(model, v, u, &out->loss_sum, &err)
                         : bl_gpt2_unit_backward(model, v, u, &err);
            if (g->unit_s != NULL) {
                g->unit_s[u] += factor * (bl_now_seconds() - u0);
            }
        }
        if (st != BL_OK) {
            st = bl_fail_from(g->layout.rt, &err);
            break;
        }
        if (model->memory != NULL) {
            /* A device runs behind the host: its kernels are waited for, so
             * that the balancer sees their time, and their failures here. */
            st = bl_device_check_compute(g->layout.rt, &g->layout.rt->device, "a step's passes");
            if (st != BL_OK) {
                break;
            }
        }
        out->compute_s += bl_slowdowns_apply(slowdowns, step, bl_now_seconds() - t1);
        /* The output: this stage's activations forward, or the gradient of
         * its input back. */
        if (forward && s < S - 1) {
            st = send(g, bl_gpt2_stream(model, v, g->last - 1), count, s + 1, i, &sends);
        } else if (!forward && s > 0) {
            st = send(g, v->dres, count, s - 1, i, &sends);
        }
    }
    double t2 = bl_now_seconds();
    for (int k = 0; k < sends; k++) {
        bl_status_t w =
            bl_wait_collective(g->layout.rt, &g->sends[k], "a pipeline send", g->layout.pipe);
        st = st == BL_OK ? w : st;
    }
    out->pipe_s += bl_now_seconds() - t2;
    return st;
}

/* All-reduces count floats at buf over comm (MPI_COMM_NULL: nothing), in
 * pieces of at most INT_MAX / 2. */
static bl_status_t sum_floats(bl_runtime_t *rt, MPI_Comm comm, float *buf, size_t count,
                              const char *what)
{
    const size_t piece = INT_MAX / 2;
    bl_status_t st = BL_OK;
    for (size_t at = 0; comm != MPI_COMM_NULL && st == BL_OK && at < count; at += piece) {
        const size_t k = count - at < piece ? count - at : piece;
        st = bl_allreduce_bounded(rt, MPI_IN_PLACE, buf + at, (int)k, MPI_FLOAT, MPI_SUM, comm,
                                  what);
    }
    return st;
}

/* Sums one range of a device model's gradients over comm through host:
 * the download, the all-reduce on the host copy, the upload of the sums. */
static bl_status_t sum_staged(bl_runtime_t *rt, MPI_Comm comm, bl_gpt2_t *model, float *host,
                              const bl_gpt2_range_t *range)
{
    float *grads = model->grads + range->offset, *staged = host + range->offset;
    bl_error_t err = {0};
    if (bl_gpt2_get(model, grads, staged, range->count, &err) != BL_OK) {
        return bl_fail(rt, err.status, "rank %d (%s): %s", rt->rank, rt->device.name, err.msg);
    }
    bl_status_t st =
        sum_floats(rt, comm, staged, range->count, "the all-reduce of the staged gradients");
    if (st == BL_OK && bl_gpt2_put(model, grads, staged, range->count, &err) != BL_OK) {
        st = bl_fail(rt, err.status, "rank %d (%s): %s", rt->rank, rt->device.name, err.msg);
    }
    return st;
}

bl_status_t bl_lm_grid_reduce(bl_lm_grid_t *g, bl_gpt2_t *model, float *host, long tokens,
                              double *loss_sum, double *norm)
{
    bl_runtime_t *rt = g->layout.rt;
    bl_status_t st = BL_OK;
    for (int r = 0; r < g->owned_count && st == BL_OK; r++) {
        const bl_gpt2_range_t *range = &g->owned[r];
        /* wte sums over the tied stages of every pipeline, the rest over
         * the stage's replicas. */
        MPI_Comm comm = range->tensor == BL_GPT2_WTE ? g->tied : g->layout.dp;
        if (comm == MPI_COMM_NULL) {
            continue; /* nothing to sum with */
        }
        st = host != NULL ? sum_staged(rt, comm, model, host, range)
                          : sum_floats(rt, comm, model->grads + range->offset, range->count,
                                       "the all-reduce of the gradients");
    }
    if (st == BL_OK && rt->size > 1) {
        st = bl_allreduce_bounded(rt, MPI_IN_PLACE, loss_sum, 1, MPI_DOUBLE, MPI_SUM, rt->comm,
                                  "the all-reduce of the step's loss");
    }
    /* The squared norm of the stage's units (wte counted by stage 0 only),
     * summed over the pipeline. */
    double squares = bl_gpt2_grad_sum_squares(model, g->owned, g->owned_count,
                                              g->layout.stage == 0 ? -1 : BL_GPT2_WTE);
    if (st == BL_OK && g->layout.pipe != MPI_COMM_NULL) {
        st = bl_allreduce_bounded(rt, MPI_IN_PLACE, &squares, 1, MPI_DOUBLE, MPI_SUM,
                                  g->layout.pipe, "the all-reduce of the gradient norm");
    }
    *norm = sqrt(squares) / (double)tokens;
    return st;
}

/* Sends floats [0, count) of data from pipeline stage `from` to stage `to`
 * (tag MOVE_TAG), or receives them there; nothing on other stages. */
#define MOVE_TAG 32766
static bl_status_t pass_floats(bl_lm_grid_t *g, float *data, size_t count, int from, int to)
{
    bl_runtime_t *rt = g->layout.rt;
    const int me = g->layout.stage;
    if (me != from && me != to) {
        return BL_OK;
    }
    const size_t piece = INT_MAX / 2;
    bl_status_t st = BL_OK;
    for (size_t at = 0; st == BL_OK && at < count; at += piece) {
        const int c = (int)(count - at < piece ? count - at : piece);
        MPI_Request req;
        const int rc =
            me == from ? MPI_Isend(data + at, c, MPI_FLOAT, to, MOVE_TAG, g->layout.pipe, &req)
                       : MPI_Irecv(data + at, c, MPI_FLOAT, from, MOVE_TAG, g->layout.pipe, &req);
        st = rc == MPI_SUCCESS
                 ? bl_wait_bounded(rt, &req, "moving units between stages", me == from ? to : from)
                 : bl_fail(rt, BL_ERR_MPI, "rank %d: posting a unit's move failed", rt->rank);
    }
    return st;
}

/* Sends the parameters and moments of units [lo, hi) from pipeline stage
 * `root` to the rest of the pipeline, or to stage `to` alone when to >= 0
 * (wte only when root is stage 0: the last stage's copy is the same),
 * adding the bytes to *bytes. */
static bl_status_t send_units(bl_lm_grid_t *g, bl_gpt2_t *model, int lo, int hi, int root, int to,
                              double *bytes)
{
    bl_runtime_t *rt = g->layout.rt;
    float *const arrays[3] = {model->params, model->adam_m, model->adam_v};
    bl_gpt2_range_t ranges[BL_GPT2_MAX_RANGES];
    const int n = bl_gpt2_unit_ranges(model, lo, hi, ranges);
    bl_status_t st = BL_OK;
    for (int r = 0; r < n && st == BL_OK; r++) {
        if (ranges[r].tensor == BL_GPT2_WTE && root > 0) {
            continue;
        }
        *bytes += 3.0 * (double)ranges[r].count * sizeof(float);
        for (int k = 0; k < 3 && st == BL_OK && to >= 0; k++) {
            st = pass_floats(g, arrays[k] + ranges[r].offset, ranges[r].count, root, to);
        }
        for (int k = 0; k < 3 && st == BL_OK && to < 0; k++) {
            const size_t piece = INT_MAX / 2;
            for (size_t at = 0; st == BL_OK && at < ranges[r].count; at += piece) {
                const size_t c = ranges[r].count - at < piece ? ranges[r].count - at : piece;
                st = bl_bcast_bounded(rt, arrays[k] + ranges[r].offset + at, (int)c, MPI_FLOAT,
                                      root, g->layout.pipe,
                                      "sending the stages' parameters to the pipeline");
            }
        }
    }
    return st;
}

bl_status_t bl_lm_grid_make_whole(bl_lm_grid_t *g, bl_gpt2_t *model, const int *map)
{
    double bytes = 0.0;
    bl_status_t st = BL_OK;
    for (int s = 0; g->layout.pipe != MPI_COMM_NULL && s < g->layout.stages && st == BL_OK; s++) {
        st = send_units(g, model, map[s], map[s + 1], s, -1, &bytes);
    }
    return st;
}

bl_status_t bl_lm_grid_move(bl_lm_grid_t *g, bl_gpt2_t *model, const int *from, const int *to,
                            int stage_local, double *bytes)
{
    *bytes = 0.0;
    const int S = g->layout.stages, units = model->config.num_layers + 2;
    bl_status_t st = BL_OK;
    for (int u = 0; g->layout.pipe != MPI_COMM_NULL && u < units && st == BL_OK; u++) {
        const int old = bl_layout_stage_of(from, S, u), now = bl_layout_stage_of(to, S, u);
        if (old != now) {
            st = send_units(g, model, u, u + 1, old, stage_local ? now : -1, bytes);
        }
    }
    return st;
}
