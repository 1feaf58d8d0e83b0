/* The inside of a model: its layers, its parameter layout, and the forward
 * and backward passes that the trainer drives. */
#ifndef BL_MODEL_IMPL_H
#define BL_MODEL_IMPL_H

#include "runtime_impl.h"
#include "device.h"
#include "span.h"

typedef enum { BL_LAYER_DENSE, BL_LAYER_RELU, BL_LAYER_USER } bl_layer_kind_t;

typedef struct bl_layer {
    bl_layer_kind_t kind;
    bl_layer_ops_t ops; /* user layers only */
    void *state;        /* user layers only; destroyed with the model */
    int in_features;
    int out_features;
    size_t param_offset; /* the layer's offset into the model's params and grads */
    size_t param_count;
    /* For user layers: the passes for a device with memory of its own,
     * which get device pointers in the call, or NULL. They are set by
     * bl_model_set_device_ops. */
    bl_layer_fn device_forward;
    bl_layer_fn device_backward;
    int fresh; /* 1 until the layer's parameters are first held and initialised */
} bl_layer_t;

struct bl_model {
    bl_runtime_t *rt;
    int in_features;
    bl_layer_t *layers;
    int layer_count;
    int layer_capacity;
    int built;
    size_t param_count;
    /* All the parameters, and the per-sample gradient sums of the last
     * backward in the same layout; layers view them by offset. Each is a
     * span (span.h) of the whole model's length with memory for the held
     * layers [held_first, held_last) only (model_hold.c). While a trainer's
     * node-local reduction lives, params and grads point into its shared
     * windows instead. */
    float *params;
    float *grads;
    bl_span_t param_span, grad_span;
    int held_first, held_last;
    int dropped;   /* 1 once a hold left a layer with parameters without memory */
    uint64_t seed; /* the seed that initialises a layer when first held */
    /* Where the passes run. While a trainer lives on a rank with a device
     * of its own (a GPU), it points these at the device and at the device's
     * copies of the parameters and gradients (in the same layout). NULL
     * means the CPU, on params and grads. */
    const bl_device_t *exec_device;
    float *exec_params;
    float *exec_grads;
};

/* These return the device that the passes run on, and the parameters and
 * gradients that they use (device memory on a GPU rank). */
static inline const bl_device_t *bl_model_device(const bl_model_t *m)
{
    return m->exec_device != NULL ? m->exec_device : &bl_host_device;
}
static inline float *bl_model_exec_params(const bl_model_t *m)
{
    return m->exec_params != NULL ? m->exec_params : m->params;
}
static inline float *bl_model_exec_grads(const bl_model_t *m)
{
    return m->exec_grads != NULL ? m->exec_grads : m->grads;
}

/* ---- model_hold.c: which layers have memory ----------------------------- */

/* Holds memory for the parameters and gradients of exactly the layers
 * [first, last) (0 <= first <= last <= the layer count) and gives back the
 * memory of every other layer, whose values are lost (a pipeline stage's
 * layers). A layer held for the first time is initialised from the seed
 * (its gradients read as zeros). Returns BL_OK, or BL_ERR_NO_MEM or the
 * failure of a user layer's init, recorded on the model's runtime. */
bl_status_t bl_model_hold(bl_model_t *m, int first, int last);
/* Holds memory for the layers [first, last) as well as those held already
 * (the smallest run of layers covering both), keeping every held value: the
 * receiving side of a layer migration. Returns as bl_model_hold does. */
bl_status_t bl_model_widen(bl_model_t *m, int first, int last);
/* Holds every layer for a caller that reads or writes the whole model
 * (`what`, e.g. "save params to x.bin"). Returns BL_OK, the failures of
 * bl_model_widen, or BL_ERR_INVALID_ARG naming the held layers when some
 * layer's values were given back (a stage-local trainer's model). */
bl_status_t bl_model_hold_all(bl_model_t *m, const char *what);
/* Loads the parameters of layers [lo, hi) from the parameter file at path
 * (bl_model_save_params' format: the file must hold the whole model), reading
 * only their part of it, and holds them (bl_model_widen). Local; changes
 * nothing on failure: BL_ERR_IO, BL_ERR_FORMAT (a length that is not the
 * model's, a value that is not finite), BL_ERR_NO_MEM or BL_ERR_INVALID_ARG,
 * naming path. */
bl_status_t bl_model_load_params_window(bl_model_t *m, const char *path, int lo, int hi);
/* Sets [*first, *first + *count) to the parameters of the held layers. */
void bl_model_held_params(const bl_model_t *m, size_t *first, size_t *count);
/* Sets [*first, *first + *count) to the parameters of layers [lo, hi). */
void bl_model_layer_params(const bl_model_t *m, int lo, int hi, size_t *first, size_t *count);

/* The activation and gradient buffers of the layers [first, last), which
 * are the whole model or one pipeline stage's layers, for batches of up to
 * max_batch rows. The passes below run over the workspace's layers. */
typedef struct bl_workspace {
    const bl_device_t *device; /* where the buffers live: the model's device at init */
    int first, last;           /* the layer range */
    int max_batch;
    float **acts;    /* acts[i] for i in the range: (max_batch, out_i), the output of layer i */
    float *act_mem;  /* the one allocation that the acts point into */
    float *dgrad[2]; /* ping-pong (max_batch, widest) buffers for d loss / d activations */
    /* Optional per-layer clocks, indexed by the model's layer number (not
     * owned; NULL means not timed). The passes add each layer's seconds to
     * them. A ReLU fused into the dense layer before it shows its time
     * there. */
    double *forward_s;
    double *backward_s;
    /* When set, each timed layer on a device with queued kernels waits for
     * its kernels, so that the clocks measure them (for the pipeline
     * stages' per-layer telemetry); a failure then stops the pass. */
    int sync_layers;
} bl_workspace_t;

/* Sets up ws for the whole model's layers. */
bl_status_t bl_workspace_init(bl_model_t *m, int max_batch, bl_workspace_t *ws);
/* Sets up ws for the layers [first, last) of a built model, with
 * 0 <= first < last <= the layer count. Both functions put the buffers on
 * the model's device and return BL_OK, BL_ERR_INVALID_ARG (a bad range or a
 * negative max_batch) or BL_ERR_NO_MEM, recorded on the model's runtime; on
 * failure ws holds no buffers. The caller frees ws with bl_workspace_free. */
bl_status_t bl_workspace_init_range(bl_model_t *m, int first, int last, int max_batch,
                                    bl_workspace_t *ws);
/* Returns the bytes of ws's buffers: its layers' activations, the two
 * input-gradient buffers and the host array of activation pointers. */
size_t bl_workspace_nbytes(const bl_model_t *m, const bl_workspace_t *ws);
/* Frees ws, in any state (a zeroed one too), with the allocator (for host
 * buffers) or the device memory (for device buffers) that it came from, and
 * zeroes it. It does not touch the model, which may be gone already. */
void bl_workspace_free(const bl_allocator_t *a, bl_workspace_t *ws);

/* A dense layer followed by a ReLU in the same workspace computes both in
 * one pass: the dense layer applies the ReLU, the ReLU does nothing, and
 * both share one activation buffer. Across a stage boundary, each runs
 * alone. bl_dense_fuses_relu says whether layer i is such a dense layer, and
 * bl_relu_is_fused whether layer i is such a ReLU. */
static inline int bl_dense_fuses_relu(const bl_model_t *m, const bl_workspace_t *ws, int i)
{
    return m->layers[i].kind == BL_LAYER_DENSE && i + 1 < ws->last &&
           m->layers[i + 1].kind == BL_LAYER_RELU;
}
static inline int bl_relu_is_fused(const bl_model_t *m, const bl_workspace_t *ws, int i)
{
    return m->layers[i].kind == BL_LAYER_RELU && i > ws->first &&
           m->layers[i - 1].kind == BL_LAYER_DENSE;
}

/* Runs the forward pass of the workspace's layers over batch rows of x,
 * which is (batch, in of the first layer). Sets *logits to the last layer's
 * output, (batch, out of the last layer), which lives in ws; it is the
 * logits when the range ends the model. Returns BL_OK, or the failure of a
 * user layer's pass or of a timed layer's device check. */
bl_status_t bl_model_forward(bl_model_t *m, bl_workspace_t *ws, int batch, const float *x,
                             const float **logits);

/* Backward calls this once layer `layer`'s gradients are final (the layers
 * go from the last to the first). A status other than BL_OK stops backward,
 * which returns that status. */
typedef bl_status_t (*bl_layer_done_fn)(int layer, void *arg);

/* Runs the backward pass of the workspace's layers after bl_model_forward
 * on the same x. Returns BL_OK, or the first failure: a user layer's pass, a
 * timed layer's device check, or done's status. dy, (batch, out of the last
 * layer), is d loss / d output; it may be ws->dgrad[0] or the caller's
 * buffer, and it is scratch afterwards. dx, (batch, in of the first layer),
 * receives d loss / d x, or is NULL when nobody needs it. The pass writes
 * (accumulate 0) or adds (accumulate 1) the per-sample gradient sums of the
 * range's layers into the model's gradients (the device's copy while a
 * trainer runs on one, else m->grads). done (which may be NULL) is called
 * after every layer. */
bl_status_t bl_model_backward_range(bl_model_t *m, bl_workspace_t *ws, int batch, const float *x,
                                    float *dy, float *dx, int accumulate, bl_layer_done_fn done,
                                    void *done_arg);

/* The same as bl_model_backward_range with dy = bl_model_dlogits(ws) and
 * no dx. */
bl_status_t bl_model_backward(bl_model_t *m, bl_workspace_t *ws, int batch, const float *x,
                              int accumulate, bl_layer_done_fn done, void *done_arg);

/* Returns the buffer that the loss writes d loss / d logits into before
 * backward. */
static inline float *bl_model_dlogits(bl_workspace_t *ws)
{
    return ws->dgrad[0];
}

#endif /* BL_MODEL_IMPL_H */
