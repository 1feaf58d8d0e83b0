/* One pipeline stage's step: the forward and backward passes of the stage's
 * layers over the micro-batches of this pipeline's shard, in the schedule's
 * order (partition/pipeline.h). Activations are sent on to the next stage and
 * input gradients back to the previous one, over one of two transports:
 *   - MPI (host memory): non-blocking point-to-point messages on the pipeline's
 *     communicator; a device stage's buffers go through host twins.
 *   - Direct (when every stage is a device of its own that can reach the
 *     others, device_comm.h: NCCL between GPUs): between two ops the stage runs
 *     one exchange group, which sends the first op's output and receives the
 *     second op's input, straight from and into device memory
 *     (bl_pipe_exchanges: rendezvous transfers grouped this way cannot
 *     deadlock).
 * The loss is computed on the last stage. With one stage this is the
 * data-parallel step's compute (micro-batched when M > 1, which is gradient
 * accumulation). */
#ifndef BL_STAGE_H
#define BL_STAGE_H

#include <stdint.h>

#include "slowdown.h"
#include "layout.h"
#include "pipeline.h"

/* A slot holds a micro-batch between its forward and its backward. */
typedef struct bl_stage_slot {
    bl_workspace_t ws; /* the activations of the stage's layers */
    float *in;         /* (max_micro, in_width) stage input: the data, or activations received */
    float *dy;         /* (max_micro, out_width) d loss / d stage output: the loss's or received */
    float *dx;         /* (max_micro, in_width) d loss / d stage input, sent back (stage > 0) */
    int *labels;       /* (max_micro) last stage */
    /* On a device with memory of its own the buffers above are device memory,
     * and what crosses to the host goes through these twins (NULL otherwise):
     * the data read and the activations received (in), the labels read, the
     * input gradients received (dy), the activations sent (out: the stage's
     * output, downloaded) and the input gradients sent (dx). MPI moves only
     * host memory. */
    float *host_in;      /* (max_micro, in_width) */
    int *host_labels;    /* (max_micro) last stage */
    float *host_dy;      /* (max_micro, out_width) all but the last stage */
    float *host_out;     /* (max_micro, out_width) all but the last stage */
    float *host_dx;      /* (max_micro, in_width) all but stage 0 */
    int64_t *dev_idx;    /* (max_micro) device: the micro-batch's sample numbers, for a training set
                            kept on the device (device_data.h) */
    const float *out;    /* the stage's output of the micro-batch's forward (in ws), which a direct
                            exchange sends on */
    int micro;           /* the micro-batch held, or −1 when the slot is free */
    MPI_Request send[2]; /* the sends from this slot: [0] activations, [1] input gradient */
} bl_stage_slot_t;

typedef struct bl_stage {
    bl_runtime_t *rt;
    bl_model_t *model;
    const bl_device_t *device; /* the model's device at init, where the slots' buffers live */
    MPI_Comm pipe;             /* MPI_COMM_NULL with one stage */
    /* Direct transfers: direct_mode is set at init (and no host twins are made
     * for them); the trainer sets the communicator before the first step. */
    int direct_mode;
    struct bl_device_comm *direct;
    bl_pipe_exchange_t *exchanges; /* (2M + 1) direct: the exchanges around the ops */
    int stage, stages;
    int pipe_base;   /* the job rank of this pipeline's stage 0 (replica × S), for messages */
    int first, last; /* the stage's layers [first, last) */
    int in_width, out_width; /* columns of the stage's input and output */
    int micro_batches;       /* M */
    bl_pipe_op_t *ops;       /* (2M) this stage's schedule */
    int max_micro;           /* rows of the largest micro-batch: ceil(B / M) */
    int slot_count;          /* micro-batches it can hold: M for GPipe, min(S − s, M) for 1F1B */
    bl_stage_slot_t *slots;  /* micro-batch j lives in slot j % slot_count */
    float *x_scratch;  /* (max_micro, features) on the last of several stages: the inputs read with
                          their labels */
    int *micro_rows;   /* (M) the rows of each micro-batch this step */
    int *micro_offset; /* (M) each micro-batch's first row in the shard */
    MPI_Request early; /* a receive posted one op ahead, or MPI_REQUEST_NULL */
    float *early_buf;  /* the early receive's buffer */
    /* The per-layer telemetry: the seconds of each layer's forward and backward
     * passes in the last step, emulated slowdown included (one entry per model
     * layer; only the stage's entries change). */
    double *forward_s;
    double *backward_s;
    int in_flight;      /* the micro-batches held now */
    int peak_in_flight; /* the most held at once since init */
} bl_stage_t;

/* Sets up this rank's stage in layout l, owning the layers that the stage map
 * `first` (S + 1 entries) gives it, for the global batch `batch`, M
 * micro-batches and a schedule (BL_PIPE_GPIPE or BL_PIPE_1F1B). With direct 1
 * the stages transfer directly, and s->direct must be set before a step.
 * Returns BL_ERR_INVALID_ARG for M outside 1..32767 or an unknown schedule,
 * BL_ERR_UNSUPPORTED when a micro-batch is more than one MPI message carries,
 * or BL_ERR_NO_MEM; on failure nothing stays allocated. */
bl_status_t bl_stage_init(bl_stage_t *s, bl_model_t *m, const bl_layout_t *l, const int *first,
                          int batch, int micro_batches, int schedule, int direct);
/* Waits for the sends still in flight (after a failed step), then frees the
 * stage; after a timeout the slots' buffers are leaked instead. It is safe on a
 * zeroed stage. */
void bl_stage_free(bl_stage_t *s);

/* What a step runs on. */
typedef struct bl_stage_step {
    long step;
    bl_dataset_t *data;
    const long *indices; /* (count) this pipeline's samples of the global batch, in order */
    int count;
    bl_layer_done_fn done; /* called per layer by the step's last backward: the gradient sync */
    void *done_arg;
    /* Set when direct transfers share their queue with the gradient reductions
     * (NCCL's one stream): done is then called for every layer only after the
     * step's last transfer, so that the last input gradient goes back to the
     * previous stage instead of queueing behind this stage's whole all-reduce
     * (which would hold up every earlier stage's end of step in turn). */
    int done_after_transfers;
    const bl_slowdowns_t *slowdown; /* the emulated slowdowns applied to every pass, or NULL */
    /* The training set in the stage's device memory, or NULL (the host then
     * reads each micro-batch and uploads it). */
    const struct bl_device_data *resident;
} bl_stage_step_t;

typedef struct bl_stage_result {
    double loss_sum;  /* on the last stage, the loss summed over the pipeline's samples (else 0) */
    long correct;     /* on the last stage, the samples classified right (else 0) */
    double compute_s; /* data reads, forward and backward passes (with emulated slowdown) */
    double pipe_s;    /* blocked on the neighbouring stages' transfers */
} bl_stage_result_t;

/* Runs the stage's part of one step and fills *out. Collective over the
 * pipeline, with waits bounded by the runtime's timeout. The model's gradients
 * for the stage's layers end as per-sample sums over the pipeline's samples. On
 * failure, a receive posted ahead is cancelled and the sends in flight are left
 * to bl_stage_free. */
bl_status_t bl_stage_run(bl_stage_t *s, const bl_stage_step_t *in, bl_stage_result_t *out);

#endif /* BL_STAGE_H */
