/* The model's layers, parameter layout and the forward/backward passes the
 * trainer drives. */
#ifndef BL_MODEL_IMPL_H
#define BL_MODEL_IMPL_H

#include "runtime_impl.h"

typedef enum { BL_LAYER_DENSE, BL_LAYER_RELU, BL_LAYER_USER } bl_layer_kind_t;

typedef struct bl_layer {
    bl_layer_kind_t kind;
    bl_layer_ops_t ops; /* user layers only */
    void *state;        /* user layers only; destroyed with the model */
    int in_features;
    int out_features;
    size_t param_offset; /* into the model's params and grads */
    size_t param_count;
    /* A dense layer followed by a ReLU computes both in one pass: the dense
     * layer has fused_relu set, the ReLU has fused set and does nothing; both
     * share one activation buffer. Decided at build time. */
    int fused_relu;
    int fused;
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
};

/* Activation and gradient buffers for batches of up to max_batch rows. */
typedef struct bl_workspace {
    int max_batch;
    float **acts;    /* acts[i]: (max_batch, out_i), the output of layer i */
    float *act_mem;  /* the one allocation the acts point into */
    float *dgrad[2]; /* ping-pong (max_batch, widest) buffers for d loss / d activations */
} bl_workspace_t;

bl_status_t bl_workspace_init(bl_model_t *m, int max_batch, bl_workspace_t *ws);
/* Frees ws (any state, also zeroed) with the allocator it came from; it
 * does not touch the model, which may be gone already. */
void bl_workspace_free(const bl_allocator_t *a, bl_workspace_t *ws);

/* Forward pass of batch rows of x (batch, in_features); returns the logits
 * (batch, classes), which live in ws. */
bl_status_t bl_model_forward(bl_model_t *m, bl_workspace_t *ws, int batch, const float *x,
                             const float **logits);

/* Called by backward once layer `layer`'s gradients are final (layers go
 * from the last to the first); a status other than BL_OK stops backward. */
typedef bl_status_t (*bl_layer_done_fn)(int layer, void *arg);

/* Backward pass after bl_model_forward on the same x. dlogits (batch,
 * classes) must be ws->dgrad[0] (bl_model_dlogits); it is scratch afterwards.
 * Writes (accumulate 0) or adds (1) per-sample gradient sums into m->grads.
 * done (may be NULL) is called after every layer. */
bl_status_t bl_model_backward(bl_model_t *m, bl_workspace_t *ws, int batch, const float *x,
                              int accumulate, bl_layer_done_fn done, void *done_arg);

/* The buffer the loss writes d loss / d logits into before backward. */
static inline float *bl_model_dlogits(bl_workspace_t *ws)
{
    return ws->dgrad[0];
}

#endif /* BL_MODEL_IMPL_H */
