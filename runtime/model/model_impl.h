/* The model's layers, parameter layout and the forward/backward passes the
 * trainer drives. */
#ifndef BL_MODEL_IMPL_H
#define BL_MODEL_IMPL_H

#include "runtime_impl.h"
#include "device.h"

typedef enum { BL_LAYER_DENSE, BL_LAYER_RELU, BL_LAYER_USER } bl_layer_kind_t;

typedef struct bl_layer {
    bl_layer_kind_t kind;
    bl_layer_ops_t ops; /* user layers only */
    void *state;        /* user layers only; destroyed with the model */
    int in_features;
    int out_features;
    size_t param_offset; /* into the model's params and grads */
    size_t param_count;
    /* User layers: the passes on a device with memory of its own (device
     * pointers in the call), or NULL (bl_model_set_device_ops). */
    bl_layer_fn device_forward;
    bl_layer_fn device_backward;
} bl_layer_t;

struct bl_model {
    bl_runtime_t *rt;
    int in_features;
    bl_layer_t *layers;
    int layer_count;
    int layer_capacity;
    int built;
    size_t param_count;
    float *params; /* all parameters, one allocation, layer views by offset */
    float *grads;  /* same layout: per-sample gradient sums of the last backward */
    /* Where the passes run: a trainer on a rank with a device of its own
     * (a GPU) points these at the device and its copies of the parameters
     * and gradients (the same layout) while it lives. NULL: the CPU on
     * params and grads. */
    const bl_device_t *exec_device;
    float *exec_params;
    float *exec_grads;
};

/* The device the passes run on, and the parameters and gradients they
 * use (device memory on a GPU rank). */
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

/* Activation and gradient buffers of the layers [first, last) — the whole
 * model, or one pipeline stage's layers — for batches of up to max_batch
 * rows. The passes below run over the workspace's layers. */
typedef struct bl_workspace {
    const bl_device_t *device; /* where the buffers live: the model's device at init */
    int first, last;           /* the layer range */
    int max_batch;
    float **acts;    /* acts[i] for i in the range: (max_batch, out_i), the output of layer i */
    float *act_mem;  /* the one allocation the acts point into */
    float *dgrad[2]; /* ping-pong (max_batch, widest) buffers for d loss / d activations */
    /* Optional per-layer clocks, indexed by the model's layer number (not
     * owned; NULL: not timed): the passes add each layer's seconds. A ReLU
     * fused into the dense layer before it shows its time there. */
    double *forward_s;
    double *backward_s;
    /* Set: on a device with queued kernels each timed layer waits for its
     * kernels, so the clocks measure them (pipeline stages' per-layer
     * telemetry); a failure then stops the pass. */
    int sync_layers;
} bl_workspace_t;

/* The whole model's layers. */
bl_status_t bl_workspace_init(bl_model_t *m, int max_batch, bl_workspace_t *ws);
/* Layers [first, last) of a built model, 0 <= first < last <= layer count. */
bl_status_t bl_workspace_init_range(bl_model_t *m, int first, int last, int max_batch,
                                    bl_workspace_t *ws);
/* Frees ws (any state, also zeroed) with the allocator (host buffers) or
 * the device memory (device buffers) it came from; it does not touch the
 * model, which may be gone already. */
void bl_workspace_free(const bl_allocator_t *a, bl_workspace_t *ws);

/* A dense layer followed by a ReLU in the same workspace computes both in
 * one pass: the dense layer applies the ReLU, the ReLU does nothing, and
 * both share one activation buffer. Across a stage boundary each runs
 * alone. */
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

/* Forward pass of the workspace's layers over batch rows of x (batch, in
 * of the first layer); *out is the last layer's output (batch, its out),
 * which lives in ws: the logits when the range ends the model. */
bl_status_t bl_model_forward(bl_model_t *m, bl_workspace_t *ws, int batch, const float *x,
                             const float **logits);

/* Called by backward once layer `layer`'s gradients are final (layers go
 * from the last to the first); a status other than BL_OK stops backward. */
typedef bl_status_t (*bl_layer_done_fn)(int layer, void *arg);

/* Backward pass of the workspace's layers after bl_model_forward on the
 * same x. dy (batch, out of the last layer) is d loss / d output; it may be
 * ws->dgrad[0] or the caller's buffer, and is scratch afterwards. dx (batch,
 * in of the first layer) receives d loss / d x, or is NULL when nobody
 * needs it. Writes (accumulate 0) or adds (1) per-sample gradient sums of
 * the range's layers into m->grads. done (may be NULL) is called after
 * every layer. */
bl_status_t bl_model_backward_range(bl_model_t *m, bl_workspace_t *ws, int batch, const float *x,
                                    float *dy, float *dx, int accumulate, bl_layer_done_fn done,
                                    void *done_arg);

/* bl_model_backward_range with dy = bl_model_dlogits(ws) and no dx. */
bl_status_t bl_model_backward(bl_model_t *m, bl_workspace_t *ws, int batch, const float *x,
                              int accumulate, bl_layer_done_fn done, void *done_arg);

/* The buffer the loss writes d loss / d logits into before backward. */
static inline float *bl_model_dlogits(bl_workspace_t *ws)
{
    return ws->dgrad[0];
}

#endif /* BL_MODEL_IMPL_H */
