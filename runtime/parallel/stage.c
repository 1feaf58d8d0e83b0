/* A pipeline stage's step over the schedule's forward and backward passes
 * (stage.h). */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "dataset_impl.h"
#include "device_comm.h"
#include "device_data.h"
#include "partition.h"
#include "stage.h"
#include "wait.h"
#include "device.h"

/* The tags: a message carries its micro-batch's index as its tag, so a stage
 * never takes one micro-batch's data for another's. */
#define BL_STAGE_MAX_MICRO 32767 /* MPI guarantees tags up to 32767 */

static bl_status_t alloc_slot(bl_stage_t *s, bl_stage_slot_t *slot)
{
    const bl_allocator_t *a = bl_rt_allocator(s->rt);
    const bl_device_t *dev = s->device;
    size_t rows = (size_t)(s->max_micro > 0 ? s->max_micro : 1);
    slot->micro = -1;
    slot->send[0] = slot->send[1] = MPI_REQUEST_NULL;
    bl_status_t st = bl_workspace_init_range(s->model, s->first, s->last, s->max_micro, &slot->ws);
    if (st != BL_OK) {
        return st;
    }
    slot->ws.forward_s = s->forward_s;
    slot->ws.backward_s = s->backward_s;
    slot->in = bl_buffer_alloc(s->rt, dev, rows * (size_t)s->in_width, sizeof(float));
    slot->dy = bl_buffer_alloc(s->rt, dev, rows * (size_t)s->out_width, sizeof(float));
    int ok = slot->in != NULL && slot->dy != NULL;
    if (s->stage > 0) {
        slot->dx = bl_buffer_alloc(s->rt, dev, rows * (size_t)s->in_width, sizeof(float));
        ok = ok && slot->dx != NULL;
    }
    if (s->stage == s->stages - 1) {
        slot->labels = bl_buffer_alloc(s->rt, dev, rows, sizeof(int));
        ok = ok && slot->labels != NULL;
    }
    if (dev->memory != NULL) {
        int last = s->stage == s->stages - 1;
        slot->host_in = bl_mem_array(a, rows * (size_t)s->in_width, sizeof(float));
        ok = ok && slot->host_in != NULL;
        if (last) {
            slot->host_labels = bl_mem_array(a, rows, sizeof(int));
            ok = ok && slot->host_labels != NULL;
        } else if (!s->direct_mode) {
            slot->host_dy = bl_mem_array(a, rows * (size_t)s->out_width, sizeof(float));
            slot->host_out = bl_mem_array(a, rows * (size_t)s->out_width, sizeof(float));
            ok = ok && slot->host_dy != NULL && slot->host_out != NULL;
        }
        if (s->stage > 0 && !s->direct_mode) {
            slot->host_dx = bl_mem_array(a, rows * (size_t)s->in_width, sizeof(float));
            ok = ok && slot->host_dx != NULL;
        }
        slot->dev_idx = bl_buffer_alloc(s->rt, dev, rows, sizeof(int64_t));
        ok = ok && slot->dev_idx != NULL;
        /* A stage's per-layer times feed the stage-map policy, so a device's
         * queued kernels are waited for after each layer. */
        slot->ws.sync_layers = s->stages > 1;
    }
    return ok ? BL_OK
              : bl_fail(s->rt, BL_ERR_NO_MEM, "no memory for a micro-batch of %d rows",
                        s->max_micro);
}

bl_status_t bl_stage_init(bl_stage_t *s, bl_model_t *m, const bl_layout_t *l, const int *first,
                          int batch, int micro_batches, int schedule, int direct)
{
    bl_runtime_t *rt = m->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    memset(s, 0, sizeof *s);
    s->early = MPI_REQUEST_NULL;
    if (micro_batches < 1 || micro_batches > BL_STAGE_MAX_MICRO) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "%d micro-batches: it must be 1..%d", micro_batches,
                       BL_STAGE_MAX_MICRO);
    }
    s->rt = rt;
    s->model = m;
    s->device = bl_model_device(m);
    s->pipe = l->pipe;
    s->direct_mode = direct;
    s->stage = l->stage;
    s->stages = l->stages;
    s->pipe_base = l->replica * l->stages;
    s->first = first[l->stage];
    s->last = first[l->stage + 1];
    s->in_width = m->layers[s->first].in_features;
    s->out_width = m->layers[s->last - 1].out_features;
    s->micro_batches = micro_batches;
    s->max_micro = (batch + micro_batches - 1) / micro_batches;
    int widest = s->in_width > s->out_width ? s->in_width : s->out_width;
    if ((long long)s->max_micro * widest > INT_MAX) {
        return bl_fail(rt, BL_ERR_UNSUPPORTED,
                       "a micro-batch of %d rows × %d columns is more than one MPI message "
                       "carries; use more micro-batches",
                       s->max_micro, widest);
    }
    s->ops = bl_mem_array(a, 2 * (size_t)micro_batches, sizeof *s->ops);
    s->micro_rows = bl_mem_array(a, (size_t)micro_batches, sizeof *s->micro_rows);
    s->micro_offset = bl_mem_array(a, (size_t)micro_batches, sizeof *s->micro_offset);
    s->forward_s = bl_mem_array_zeroed(a, (size_t)m->layer_count, sizeof *s->forward_s);
    s->backward_s = bl_mem_array_zeroed(a, (size_t)m->layer_count, sizeof *s->backward_s);
    s->exchanges = bl_mem_array(a, 2 * (size_t)micro_batches + 1, sizeof *s->exchanges);
    if (s->ops == NULL || s->micro_rows == NULL || s->micro_offset == NULL ||
        s->forward_s == NULL || s->backward_s == NULL || s->exchanges == NULL) {
        bl_stage_free(s);
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for a schedule of %d micro-batches",
                       micro_batches);
    }
    if (bl_pipe_schedule(schedule, s->stages, s->stage, micro_batches, s->ops) < 0 ||
        bl_pipe_exchanges(s->stages, s->stage, s->ops, 2 * micro_batches, s->exchanges) < 0) {
        bl_stage_free(s);
        return bl_fail(rt, BL_ERR_INVALID_ARG, "unknown pipeline schedule %d", schedule);
    }
    s->slot_count = schedule == BL_PIPE_GPIPE              ? micro_batches
                    : s->stages - s->stage < micro_batches ? s->stages - s->stage
                                                           : micro_batches;
    s->slots = bl_mem_array_zeroed(a, (size_t)s->slot_count, sizeof *s->slots);
    if (s->slots == NULL) {
        bl_stage_free(s);
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for %d micro-batch slots", s->slot_count);
    }
    bl_status_t st = BL_OK;
    for (int k = 0; k < s->slot_count && st == BL_OK; k++) {
        st = alloc_slot(s, &s->slots[k]);
    }
    if (st == BL_OK && s->stages > 1 && s->stage == s->stages - 1) {
        s->x_scratch = bl_mem_array(a, (size_t)(s->max_micro > 0 ? s->max_micro : 1),
                                    (size_t)m->in_features * sizeof(float));
        if (s->x_scratch == NULL) {
            st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for a micro-batch of %d inputs",
                         s->max_micro);
        }
    }
    if (st != BL_OK) {
        bl_stage_free(s);
    }
    return st;
}

void bl_stage_free(bl_stage_t *s)
{
    if (s->rt == NULL) {
        return;
    }
    const bl_allocator_t *a = bl_rt_allocator(s->rt);
    /* After a timeout a send may never complete, so its buffers are leaked
     * rather than waited for (the job is ending). */
    for (int k = 0; s->slots != NULL && k < s->slot_count && !s->rt->gave_up; k++) {
        bl_stage_slot_t *slot = &s->slots[k];
        MPI_Waitall(2, slot->send, MPI_STATUSES_IGNORE); /* the sends may still read the buffers */
        bl_workspace_free(a, &slot->ws);
        bl_buffer_free(a, s->device, slot->in);
        bl_buffer_free(a, s->device, slot->dy);
        bl_buffer_free(a, s->device, slot->dx);
        bl_buffer_free(a, s->device, slot->labels);
        bl_mem_free(a, slot->host_in);
        bl_mem_free(a, slot->host_labels);
        bl_mem_free(a, slot->host_dy);
        bl_mem_free(a, slot->host_out);
        bl_mem_free(a, slot->host_dx);
        bl_buffer_free(a, s->device, slot->dev_idx);
    }
    bl_mem_free(a, s->slots);
    bl_mem_free(a, s->ops);
    bl_mem_free(a, s->micro_rows);
    bl_mem_free(a, s->micro_offset);
    bl_mem_free(a, s->x_scratch);
    bl_mem_free(a, s->forward_s);
    bl_mem_free(a, s->backward_s);
    bl_mem_free(a, s->exchanges);
    memset(s, 0, sizeof *s);
}

/* Blocks on one transfer request with stage `peer` and adds the time to
 * *pipe_s. The wait is bounded by the runtime's timeout, which names the peer's
 * rank. */
static bl_status_t wait_transfer(bl_stage_t *s, MPI_Request *req, double *pipe_s, const char *what,
                                 int peer)
{
    if (*req == MPI_REQUEST_NULL) {
        return BL_OK;
    }
    double t0 = bl_now_seconds();
    bl_status_t st = bl_wait_bounded(s->rt, req, what, s->pipe_base + peer);
    *pipe_s += bl_now_seconds() - t0;
    return st;
}

/* Records a failed transfer under a name such as "stage 1 receiving gradients
 * of micro-batch 3 from stage 2: <MPI's message>" and returns its status. */
static bl_status_t transfer_failed(bl_stage_t *s, int rc, const char *doing, const char *what,
                                   int j, const char *direction, int peer)
{
    char msg[160];
    snprintf(msg, sizeof msg, "stage %d %s %s of micro-batch %d %s stage %d", s->stage, doing, what,
             j, direction, peer);
    return bl_fail_mpi(s->rt, rc, msg);
}

/* Receives micro-batch j's floats from pipeline stage `from`: it completes the
 * receive posted one op ahead, or receives now. */
static bl_status_t receive(bl_stage_t *s, float *buf, int rows, int width, int from, int j,
                           double *pipe_s, const char *what)
{
    double t0 = bl_now_seconds();
    int rc = MPI_SUCCESS;
    bl_status_t st = BL_OK;
    /* The name of the wait, for a timeout's message, is formatted only when a
     * timeout is set, not on every receive. */
    char op[96] = "receiving";
    if (s->rt->wait_timeout_s > 0.0) {
        snprintf(op, sizeof op, "receiving %s of micro-batch %d from stage %d", what, j, from);
    }
    if (s->early != MPI_REQUEST_NULL && s->early_buf == buf) {
        st = bl_wait_bounded(s->rt, &s->early, op, s->pipe_base + from);
    } else if (s->rt->wait_timeout_s > 0.0) {
        MPI_Request req = MPI_REQUEST_NULL;
        rc = MPI_Irecv(buf, rows * width, MPI_FLOAT, from, j, s->pipe, &req);
        if (rc == MPI_SUCCESS) {
            st = bl_wait_bounded(s->rt, &req, op, s->pipe_base + from);
        }
    } else {
        rc = MPI_Recv(buf, rows * width, MPI_FLOAT, from, j, s->pipe, MPI_STATUS_IGNORE);
    }
    *pipe_s += bl_now_seconds() - t0;
    if (st != BL_OK) {
        return st;
    }
    return rc == MPI_SUCCESS ? BL_OK : transfer_failed(s, rc, "receiving", what, j, "from", from);
}

static bl_status_t send(bl_stage_t *s, const float *buf, int rows, int width, int to, int j,
                        MPI_Request *req, const char *what)
{
    int rc = MPI_Isend(buf, rows * width, MPI_FLOAT, to, j, s->pipe, req);
    return rc == MPI_SUCCESS ? BL_OK : transfer_failed(s, rc, "sending", what, j, "to", to);
}

/* Returns the host memory that MPI moves for a slot's buffer `buf`: its host
 * twin on a device with memory of its own, else the buffer itself. */
static float *wire(const bl_stage_t *s, float *buf, float *twin)
{
    return s->device->memory != NULL ? twin : buf;
}

/* Called when a receive into a twin has completed: uploads the twin into the
 * device buffer. */
static void arrived(const bl_stage_t *s, float *buf, const float *twin, int rows, int width)
{
    if (s->device->memory != NULL) {
        s->device->memory->to_device(buf, twin, (size_t)rows * (size_t)width * sizeof(float));
    }
}

/* Sends `rows` rows of the device buffer `buf` through its twin (downloaded
 * after the kernels that wrote it; a failed copy fails the send), or sends
 * `buf` itself on the CPU. */
static bl_status_t send_out(bl_stage_t *s, const float *buf, float *twin, int rows, int width,
                            int to, int j, MPI_Request *req, const char *what)
{
    if (s->device->memory != NULL) {
        s->device->memory->to_host(twin, buf, (size_t)rows * (size_t)width * sizeof(float));
        bl_status_t st = bl_device_check(s->rt, s->device, "downloading a stage's output");
        if (st != BL_OK) {
            return st;
        }
        buf = twin;
    }
    return send(s, buf, rows, width, to, j, req, what);
}

static double slowed(const bl_stage_step_t *in, double seconds)
{
    return in->slowdown != NULL ? bl_slowdowns_apply(in->slowdown, in->step, seconds) : seconds;
}

/* The sample numbers are int64 on the device. On LP64 (Linux) a long is an
 * int64, so they are uploaded as they are. */
_Static_assert(sizeof(long) == sizeof(int64_t), "sample numbers are uploaded as int64");

/* Cuts micro-batch j out of the training set on the device: its sample numbers
 * are uploaded, and the inputs (stage 0) and the labels (last stage) are
 * gathered there. */
static bl_status_t cut_on_device(bl_stage_t *s, bl_stage_slot_t *slot, int j, int rows,
                                 const bl_stage_step_t *in)
{
    const bl_device_data_t *r = in->resident;
    const int64_t *idx = (const int64_t *)(const void *)(in->indices + s->micro_offset[j]);
    int first = s->stage == 0, last = s->stage == s->stages - 1;
    if (s->device->memory->to_device(slot->dev_idx, idx, (size_t)rows * sizeof(int64_t)) != 0) {
        return bl_device_check(s->rt, s->device, "uploading a micro-batch's sample numbers");
    }
    s->device->kernels->gather_rows(rows, first ? r->features : 0, first ? r->x : NULL,
                                    slot->dev_idx, first ? slot->in : NULL, last ? r->y : NULL,
                                    last ? slot->labels : NULL);
    return BL_OK;
}

/* Reads micro-batch j's data for this stage into the slot: stage 0 reads the
 * inputs and the last stage the labels (through the host twins and an upload on
 * a device with memory of its own). */
static bl_status_t read_data(bl_stage_t *s, bl_stage_slot_t *slot, int j, int rows,
                             const bl_stage_step_t *in)
{
    int last = s->stage == s->stages - 1;
    const bl_device_memory_t *mem = s->device->memory;
    if ((s->stage == 0 || last) && in->resident != NULL && in->resident->device == s->device) {
        return cut_on_device(s, slot, j, rows, in);
    }
    float *x = mem != NULL ? slot->host_in : slot->in;
    int *labels = mem != NULL ? slot->host_labels : slot->labels;
    const long *idx = in->indices + s->micro_offset[j];
    bl_status_t st = BL_OK;
    if (s->stage == 0) {
        st = bl_dataset_gather(in->data, idx, rows, x, last ? labels : NULL);
    } else if (last) {
        /* Only the labels are needed, but callbacks deliver the inputs with
         * them. */
        st = bl_dataset_gather(in->data, idx, rows, in->data->x != NULL ? NULL : s->x_scratch,
                               labels);
    } else {
        return BL_OK;
    }
    if (st != BL_OK || mem == NULL) {
        return st;
    }
    int failed = 0;
    if (s->stage == 0) {
        failed |= mem->to_device(slot->in, x, (size_t)rows * (size_t)s->in_width * sizeof(float));
    }
    if (last) {
        failed |= mem->to_device(slot->labels, labels, (size_t)rows * sizeof(int));
    }
    return failed ? bl_device_check(s->rt, s->device, "uploading a micro-batch") : BL_OK;
}

/* Runs F(j): the input (read or received), the stage's layers, and then the
 * loss (last stage) or the activations sent on. */
static bl_status_t forward(bl_stage_t *s, int j, const bl_stage_step_t *in, bl_stage_result_t *out)
{
    bl_stage_slot_t *slot = &s->slots[j % s->slot_count];
    int rows = s->micro_rows[j];
    int last = s->stage == s->stages - 1;
    if (slot->micro != -1) {
        return bl_fail(s->rt, BL_ERR_INVALID_ARG,
                       "internal: stage %d has no room for micro-batch %d (slot holds %d)",
                       s->stage, j, slot->micro);
    }
    /* The slot's last sends read its buffers, so they must be complete. */
    bl_status_t st = wait_transfer(s, &slot->send[0], &out->pipe_s,
                                   "sending activations to the next stage", s->stage + 1);
    if (st == BL_OK) {
        st = wait_transfer(s, &slot->send[1], &out->pipe_s,
                           "sending gradients to the previous stage", s->stage - 1);
    }
    if (st == BL_OK && s->stage > 0 && !s->direct_mode) {
        st = receive(s, wire(s, slot->in, slot->host_in), rows, s->in_width, s->stage - 1, j,
                     &out->pipe_s, "activations");
        if (st == BL_OK) {
            arrived(s, slot->in, slot->host_in, rows, s->in_width);
        }
    }
    if (st != BL_OK) {
        return st;
    }
    slot->micro = j;
    if (++s->in_flight > s->peak_in_flight) {
        s->peak_in_flight = s->in_flight;
    }
    double t0 = bl_now_seconds();
    st = read_data(s, slot, j, rows, in);
    const float *y = NULL;
    if (st == BL_OK) {
        st = bl_model_forward(s->model, &slot->ws, rows, slot->in, &y);
    }
    if (st != BL_OK) {
        return st;
    }
    if (last) {
        long correct = 0;
        out->loss_sum += s->device->kernels->softmax_xent(rows, s->out_width, y, slot->labels,
                                                          slot->dy, &correct);
        out->correct += correct;
    }
    out->compute_s += slowed(in, bl_now_seconds() - t0);
    slot->out = y;
    if (!last && !s->direct_mode) {
        st = send_out(s, y, slot->host_out, rows, s->out_width, s->stage + 1, j, &slot->send[0],
                      "activations");
    }
    return st;
}

/* Runs B(j): d loss / d output (the loss's, or received), backward through the
 * stage's layers, and the input gradient sent back. */
static bl_status_t backward(bl_stage_t *s, int j, int accumulate, int finishing,
                            const bl_stage_step_t *in, bl_stage_result_t *out)
{
    bl_stage_slot_t *slot = &s->slots[j % s->slot_count];
    int rows = s->micro_rows[j];
    if (slot->micro != j) {
        return bl_fail(s->rt, BL_ERR_INVALID_ARG,
                       "internal: stage %d runs backward of micro-batch %d it does not hold",
                       s->stage, j);
    }
    bl_status_t st = BL_OK;
    if (s->stage < s->stages - 1 && !s->direct_mode) {
        st = receive(s, wire(s, slot->dy, slot->host_dy), rows, s->out_width, s->stage + 1, j,
                     &out->pipe_s, "gradients");
        if (st == BL_OK) {
            arrived(s, slot->dy, slot->host_dy, rows, s->out_width);
        }
    }
    if (st != BL_OK) {
        return st;
    }
    double t0 = bl_now_seconds();
    st = bl_model_backward_range(s->model, &slot->ws, rows, slot->in, slot->dy,
                                 s->stage > 0 ? slot->dx : NULL, accumulate,
                                 finishing ? in->done : NULL, in->done_arg);
    /* A device's kernels are queued, so the step's compute time (and any
     * failure) is known only once they are done. The downloads of the buckets
     * that backward closed overlap them, and the reduction waits for those. */
    if (st == BL_OK) {
        st = bl_device_check_compute(s->rt, s->device, "backward");
    }
    if (st != BL_OK) {
        return st;
    }
    out->compute_s += slowed(in, bl_now_seconds() - t0);
    slot->micro = -1;
    s->in_flight--;
    if (s->stage > 0 && !s->direct_mode) {
        st = send_out(s, slot->dx, slot->host_dx, rows, s->in_width, s->stage - 1, j,
                      &slot->send[1], "gradients");
    }
    return st;
}

/* Direct transfers: runs exchange k of the step (bl_pipe_exchanges) before op
 * k, and waits for it so that op k can read its input. Op k − 1's output goes
 * out of device memory (a forward's output in its slot's activations, a
 * backward's input gradient in dx, both intact until the slot's next forward),
 * and op k's input comes into its slot's device buffer (in, or dy). */
static bl_status_t exchange(bl_stage_t *s, int k, bl_stage_result_t *out)
{
    const bl_pipe_exchange_t *x = &s->exchanges[k];
    const float *send = NULL;
    float *recv = NULL;
    size_t send_count = 0, recv_count = 0;
    if (x->send_to >= 0) {
        const bl_stage_slot_t *slot = &s->slots[x->send_micro % s->slot_count];
        int on = x->send_to > s->stage; /* activations go on; otherwise a gradient goes back */
        send = on ? slot->out : slot->dx;
        send_count =
            (size_t)s->micro_rows[x->send_micro] * (size_t)(on ? s->out_width : s->in_width);
    }
    if (x->recv_from >= 0) {
        bl_stage_slot_t *slot = &s->slots[x->recv_micro % s->slot_count];
        int activations = x->recv_from < s->stage;
        if (activations && slot->micro != -1) {
            return bl_fail(s->rt, BL_ERR_INVALID_ARG,
                           "internal: stage %d has no room for micro-batch %d (slot holds %d)",
                           s->stage, x->recv_micro, slot->micro);
        }
        recv = activations ? slot->in : slot->dy;
        recv_count = (size_t)s->micro_rows[x->recv_micro] *
                     (size_t)(activations ? s->in_width : s->out_width);
    }
    if (s->direct == NULL) {
        return bl_fail(s->rt, BL_ERR_INVALID_ARG, "internal: stage %d has no device communicator",
                       s->stage);
    }
    double t0 = bl_now_seconds();
    bl_status_t st = bl_device_comm_exchange(s->direct, send, send_count, x->send_to, recv,
                                             recv_count, x->recv_from);
    if (st == BL_OK && (send_count > 0 || recv_count > 0)) {
        st = bl_device_comm_wait(s->direct, "pipeline transfers");
    }
    out->pipe_s += bl_now_seconds() - t0;
    return st;
}

/* Posts the receive that op `next` will need while op `now` runs, when its
 * buffer is free for all of op `now`: a forward's input slot must be free and
 * not the one that op `now` fills, and a backward's dy slot must hold that
 * micro-batch already or be filled by op `now` (forwards do not touch dy on
 * stages that receive it). Otherwise op `next` receives when it runs. */
static bl_status_t post_early(bl_stage_t *s, const bl_pipe_op_t *now, const bl_pipe_op_t *next)
{
    int j = next->micro;
    bl_stage_slot_t *slot = &s->slots[j % s->slot_count];
    int same_slot = now->micro % s->slot_count == j % s->slot_count;
    float *buf = NULL;
    int width = 0, from = 0;
    const char *what = NULL;
    if (next->pass == BL_PIPE_FORWARD && s->stage > 0 && slot->micro == -1 &&
        !(now->pass == BL_PIPE_FORWARD && same_slot)) {
        buf = wire(s, slot->in, slot->host_in);
        width = s->in_width;
        from = s->stage - 1;
        what = "activations";
    } else if (next->pass == BL_PIPE_BACKWARD && s->stage < s->stages - 1 &&
               (slot->micro == j || (now->pass == BL_PIPE_FORWARD && now->micro == j))) {
        buf = wire(s, slot->dy, slot->host_dy);
        width = s->out_width;
        from = s->stage + 1;
        what = "gradients";
    }
    if (buf == NULL) {
        return BL_OK;
    }
    int rc = MPI_Irecv(buf, s->micro_rows[j] * width, MPI_FLOAT, from, j, s->pipe, &s->early);
    s->early_buf = buf;
    return rc == MPI_SUCCESS
               ? BL_OK
               : transfer_failed(s, rc, "posting a receive of", what, j, "from", from);
}

bl_status_t bl_stage_run(bl_stage_t *s, const bl_stage_step_t *in, bl_stage_result_t *out)
{
    memset(out, 0, sizeof *out);
    int M = s->micro_batches;
    if (in->count > s->max_micro * M) {
        return bl_fail(s->rt, BL_ERR_INVALID_ARG,
                       "internal: a shard of %d samples exceeds %d micro-batches of %d", in->count,
                       M, s->max_micro);
    }
    /* The shard's split into micro-batches is deterministic and as even as
     * possible (the first count % M get one more row). */
    for (int j = 0, offset = 0; j < M; j++) {
        s->micro_rows[j] = in->count / M + (j < in->count % M ? 1 : 0);
        s->micro_offset[j] = offset;
        offset += s->micro_rows[j];
    }
    for (int i = s->first; i < s->last; i++) {
        s->forward_s[i] = s->backward_s[i] = 0.0;
    }
    bl_status_t st = BL_OK;
    int backwards = 0;
    int defer_done = in->done != NULL && in->done_after_transfers && s->direct_mode;
    for (int k = 0; k < 2 * M && st == BL_OK; k++) {
        const bl_pipe_op_t *op = &s->ops[k];
        if (s->direct_mode) {
            st = exchange(s, k, out);
        } else if (s->early == MPI_REQUEST_NULL && k + 1 < 2 * M) {
            st = post_early(s, op, &s->ops[k + 1]);
        }
        if (st != BL_OK) {
            break;
        }
        if (op->pass == BL_PIPE_FORWARD) {
            st = forward(s, op->micro, in, out);
        } else {
            st = backward(s, op->micro, backwards > 0, k == 2 * M - 1 && !defer_done, in, out);
            backwards++;
        }
    }
    if (st == BL_OK && s->direct_mode) {
        st = exchange(s, 2 * M, out); /* the exchange of the last op's output */
    }
    for (int i = s->last - 1; i >= s->first && st == BL_OK && defer_done; i--) {
        st = in->done(i, in->done_arg);
    }
    /* A receive posted ahead is always consumed by its op, unless a failure
     * stopped the step first; then it is cancelled here. */
    if (s->early != MPI_REQUEST_NULL) {
        MPI_Cancel(&s->early);
        MPI_Wait(&s->early, MPI_STATUS_IGNORE);
    }
    /* The emulated slowdown stretches every layer alike. */
    double factor = in->slowdown != NULL ? bl_slowdowns_factor(in->slowdown, in->step) : 1.0;
    for (int i = s->first; i < s->last && factor != 1.0; i++) {
        s->forward_s[i] *= factor;
        s->backward_s[i] *= factor;
    }
    /* The sends still in flight finish within the step, so that no message of
     * this step can meet the next step's receives. */
    for (int k = 0; k < s->slot_count && st == BL_OK; k++) {
        st = wait_transfer(s, &s->slots[k].send[0], &out->pipe_s,
                           "sending activations to the next stage", s->stage + 1);
        if (st == BL_OK) {
            st = wait_transfer(s, &s->slots[k].send[1], &out->pipe_s,
                               "sending gradients to the previous stage", s->stage - 1);
        }
    }
    return st;
}
