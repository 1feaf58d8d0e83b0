/* A GPT-2 model on one process (gpt2.c, gpt2_acts.c, gpt2_passes.c and
 * gpt2_adamw.c): the parameters in llm.c's layout (gpt2_file.h), the
 * forward and backward passes, GPT-2's initialisation and an AdamW step,
 * all on a kernel table (kernels.h), so that the same code runs on the CPU
 * and on a device with memory of its own. This module makes no MPI call.
 *
 * The passes are cut into the units that a pipeline moves as one: the
 * embedding (wte and wpe), each transformer block, and the head (the final
 * LayerNorm, the logits x · wte^T tied to the embedding, and the
 * cross-entropy). Losses and gradients are per-token SUMS over the B · T
 * targets, as kernels.h's are, so that any split of a batch sums to the
 * same loss and gradient; the optimizer scales by 1 / (B · T).
 *
 * Every float pointer in bl_gpt2_t and bl_gpt2_acts_t lives where the
 * kernels run: host memory when the model's memory is NULL, else the
 * device's memory (read it with bl_gpt2_download). */
#ifndef BL_GPT2_H
#define BL_GPT2_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "gpt2_file.h"
#include "span.h"

/* The tensors of the parameter array, in file order (bl_gpt2_tensors). */
enum {
    BL_GPT2_WTE,      /* (Vp, C) token embedding, tied to the head */
    BL_GPT2_WPE,      /* (maxT, C) position embedding */
    BL_GPT2_LN1W,     /* (L, C) */
    BL_GPT2_LN1B,     /* (L, C) */
    BL_GPT2_QKVW,     /* (L, 3C, C) */
    BL_GPT2_QKVB,     /* (L, 3C) */
    BL_GPT2_ATTPROJW, /* (L, C, C) */
    BL_GPT2_ATTPROJB, /* (L, C) */
    BL_GPT2_LN2W,     /* (L, C) */
    BL_GPT2_LN2B,     /* (L, C) */
    BL_GPT2_FCW,      /* (L, 4C, C) */
    BL_GPT2_FCB,      /* (L, 4C) */
    BL_GPT2_FCPROJW,  /* (L, C, 4C) */
    BL_GPT2_FCPROJB,  /* (L, C) */
    BL_GPT2_LNFW,     /* (C) */
    BL_GPT2_LNFB      /* (C) */
};

/* The most parameter ranges one set of units has: one per tensor and one
 * per user layer (bl_gpt2_unit_ranges). */
#define BL_GPT2_MAX_RANGES (BL_GPT2_TENSOR_COUNT + BL_LM_MAX_LAYERS)

/* A user layer in the residual stream (ballast.h: bl_lm_layer_t) and where
 * its parameters lie in the model's arrays. Its parameter range's tensor
 * number is BL_GPT2_TENSOR_COUNT + its index. */
typedef struct bl_gpt2_user {
    bl_lm_layer_t layer;
    size_t offset, count; /* its floats within params (after the GPT-2 tensors) */
} bl_gpt2_user_t;

/* A model. Its fields are read-only for callers; bl_gpt2_create fills them.
 * params, grads, adam_m and adam_v are views of one allocation of
 * 4 · param_count floats, each in the tensor layout of `tensors`, followed
 * by the user layers' parameters (bl_gpt2_add_layers). A model made with
 * BL_GPT2_NO_MOMENTS (bl_gpt2_create_with) allocates 2 · param_count floats
 * (params and grads) and has adam_m = adam_v = NULL: its AdamW moments are
 * held elsewhere (a ZeRO-1 trainer's slices, runtime/lm/lm_zero.h), so only
 * bl_gpt2_adamw_ranges_at, which takes them, may update it. */
typedef struct bl_gpt2 {
    bl_gpt2_config_t config;
    bl_gpt2_tensor_t tensors[BL_GPT2_TENSOR_COUNT];
    size_t param_count;     /* the GPT-2 tensors' floats and the user layers' */
    size_t gpt_param_count; /* the GPT-2 tensors' floats: what llm.c's file holds */
    int user_count;
    bl_gpt2_user_t users[BL_LM_MAX_LAYERS];
    const bl_device_t *device; /* the user layers' calls' device (bl_gpt2_add_layers) */
    const bl_kernels_t *kernels;
    const bl_device_memory_t *memory; /* NULL: host memory */
    bl_allocator_t alloc;             /* a copy of the caller's hooks (all NULL: malloc) */
    float *params;
    float *grads;    /* the per-token gradient sums since the last bl_gpt2_zero_grads */
    float *adam_m;   /* AdamW's first moments, zero at creation; NULL without moments */
    float *adam_v;   /* AdamW's second moments, zero at creation; NULL without moments */
    long adam_steps; /* the AdamW steps taken so far */
    /* A model made with BL_GPT2_SPANS keeps its arrays in span (span.h):
     * address space for all of them, with memory only for the units
     * [held_first, held_last) (bl_gpt2_hold_units). Any other model holds
     * every unit: held_first = 0, held_last = L + 2. */
    int spanned;
    bl_span_t span;
    int held_first, held_last;
} bl_gpt2_t;

/* Returns tensor id's slice for `layer` (0 for the tensors without layers)
 * within base, which is g->params, g->grads, g->adam_m or g->adam_v. */
static inline float *bl_gpt2_slice(const bl_gpt2_t *g, float *base, int id, int layer)
{
    const bl_gpt2_tensor_t *t = &g->tensors[id];
    return base + t->offset + (size_t)layer * (t->count / (size_t)t->layers);
}

/* The activations of one layer for a (B, T) batch. */
typedef struct bl_gpt2_layer_acts {
    float *ln1, *ln1_mean, *ln1_rstd; /* (B, T, C), (B, T), (B, T) */
    float *qkv;                       /* (B, T, 3C) */
    float *atty;                      /* (B, T, C), the heads side by side */
    float *att;                       /* (B, NH, T, T) */
    float *res2;                      /* (B, T, C), the stream after attention */
    float *ln2, *ln2_mean, *ln2_rstd; /* (B, T, C), (B, T), (B, T) */
    float *fch, *fch_gelu;            /* (B, T, 4C) each */
    float *res3;                      /* (B, T, C), the block's output */
} bl_gpt2_layer_acts_t;

/* The activations and the backward's buffers of a model for batches of
 * exactly B sequences of T tokens. */
typedef struct bl_gpt2_acts {
    int B, T;
    int capacity;                     /* the B that the buffers were made for */
    int has_targets;                  /* the last forward had targets, so backward may run */
    int32_t *tokens, *targets;        /* (B, T) each, on the device */
    int32_t *rows;                    /* (B · T) = 0, 1, ..., for the residual adds */
    float *encoded;                   /* (B, T, C), the embedding's output */
    bl_gpt2_layer_acts_t *layers;     /* L entries, a host array */
    float *lnf, *lnf_mean, *lnf_rstd; /* (B, T, C), (B, T), (B, T) */
    float *logits;                    /* (B, T, Vp) */
    float *dlogits;                   /* (B, T, Vp), softmax − onehot from the forward */
    float *proj;    /* (B, T, C), the forward's projections before the residual add */
    float *dres;    /* (B, T, C), d loss / d residual stream */
    float *dln;     /* (B, T, C), d loss / d a LayerNorm's output or the attention's */
    float *dwide;   /* (B, T, 4C), d loss / d fch, then d loss / d qkv */
    float *scratch; /* (T, T), attention_backward's scratch */
    float *user_out[BL_LM_MAX_LAYERS]; /* (B, T, C) each user layer's output */
    void *mem;                         /* the one device allocation that the buffers above cut */
} bl_gpt2_acts_t;

/* Creates a model of shape cfg whose passes run on kernels over memory
 * (NULL: host memory, where the allocations go through a, which may be
 * NULL for malloc). The parameters are zero until bl_gpt2_init_params or
 * bl_gpt2_upload. Returns BL_OK with *out set, or BL_ERR_INVALID_ARG (a
 * NULL argument, or a kernel table without the transformer members, named),
 * BL_ERR_FORMAT (cfg's fields, named as bl_gpt2_tensors names them: a count
 * that is not positive, num_heads NH not dividing channels C, Vp < V) or
 * BL_ERR_NO_MEM, with err->msg saying why. The caller owns *out and frees
 * it with bl_gpt2_destroy. */
bl_status_t bl_gpt2_create(const bl_gpt2_config_t *cfg, const bl_kernels_t *kernels,
                           const bl_device_memory_t *memory, const bl_allocator_t *a,
                           bl_error_t *err, bl_gpt2_t **out);
/* bl_gpt2_create_with's flags. BL_GPT2_NO_MOMENTS: no AdamW moments (the
 * model's adam_m and adam_v are NULL), half the memory of the four arrays. */
#define BL_GPT2_NO_MOMENTS 1u
/* BL_GPT2_SPANS: the arrays are reserved address space with no unit held
 * until bl_gpt2_hold_units: a pipeline stage's model holds only its own
 * units, and a trainer's model takes memory only once the memory check has
 * passed. Host memory only (memory must be NULL). */
#define BL_GPT2_SPANS 2u
/* As bl_gpt2_create (which is this with flags 0), with flags. */
bl_status_t bl_gpt2_create_with(const bl_gpt2_config_t *cfg, const bl_kernels_t *kernels,
                                const bl_device_memory_t *memory, const bl_allocator_t *a,
                                unsigned flags, bl_error_t *err, bl_gpt2_t **out);
/* Frees g and its buffers; NULL is a no-op. */
void bl_gpt2_destroy(bl_gpt2_t *g);

/* Makes a BL_GPT2_SPANS model hold memory for exactly the units [first,
 * last) (0 <= first <= last <= L + 2; first == last: none) in each of its
 * arrays: their parameter ranges (bl_gpt2_unit_ranges), their gradients and
 * moments. Values of units held before and after are kept; newly held ones
 * read as zeros; every other page goes back to the system, and a touch of
 * it faults. A pipeline stage holds its units; a migration holds the old and
 * the new units together, moves them, then holds the new ones alone. Pages
 * are whole, so the ends of a neighbouring unit's slices may be held too.
 * Any other model holds every unit already: BL_OK, nothing done. Returns
 * BL_OK, or BL_ERR_INVALID_ARG (units out of order) or BL_ERR_NO_MEM (the
 * system refused the memory; the model then holds no unit), with err->msg
 * naming the units. The whole-model calls (bl_gpt2_upload, _download,
 * _forward, _backward, _adamw_step) need every unit held. */
bl_status_t bl_gpt2_hold_units(bl_gpt2_t *g, int first, int last, bl_error_t *err);

/* The bytes of memory that g's parameter arrays hold: the held pages of a
 * BL_GPT2_SPANS model, every array's whole length otherwise. */
size_t bl_gpt2_held_bytes(const bl_gpt2_t *g);
/* The bytes that holding units [first, last) takes in array `array` (0 the
 * parameters, 1 the gradients, 2 and 3 the moments) of a BL_GPT2_SPANS
 * model: their ranges rounded out to whole pages, as bl_gpt2_hold_units
 * holds them. Pure: a memory account reads it before anything is held. */
size_t bl_gpt2_units_bytes(const bl_gpt2_t *g, int first, int last, int array);

/* GPT-2's initialisation from seed (of the held units only: a stage draws
 * each tensor's stream but keeps its own part): wte (its first V rows; the padding
 * rows are 0, as llm.c pads them), wpe, qkvw and fcw from N(0, 0.02²),
 * attprojw and fcprojw from N(0, (0.02 / sqrt(2L))²), the biases 0 and the
 * LayerNorm weights 1. Each tensor draws from its own stream of the
 * runtime's generator (seed mixed with BL_SEED_DOMAIN_INIT and the
 * tensor's number), so one seed always gives the same parameters. Returns
 * BL_OK, or BL_ERR_NO_MEM (a host staging buffer on a device) or
 * BL_ERR_CUDA (the upload). */
bl_status_t bl_gpt2_init_params(bl_gpt2_t *g, uint64_t seed, bl_error_t *err);

/* Copies param_count host floats into g->params (upload), or one of g's
 * arrays (src: g->params, g->grads, g->adam_m or g->adam_v) into
 * param_count host floats (download). Return BL_OK, BL_ERR_INVALID_ARG
 * (NULL arguments) or BL_ERR_CUDA (the device's copy failed). */
bl_status_t bl_gpt2_upload(bl_gpt2_t *g, const float *params, bl_error_t *err);
bl_status_t bl_gpt2_download(const bl_gpt2_t *g, const float *src, float *dst, bl_error_t *err);
/* The same for count floats: bl_gpt2_put copies host src into dst, which
 * lies in one of g's arrays (a range of g->grads, say), and bl_gpt2_get
 * copies src, in g's arrays, into host dst, so that a trainer moves the
 * slices it reduces over MPI. On a host model both are memcpy. Return BL_OK,
 * or BL_ERR_CUDA (the device's copy failed), with err->msg saying so. */
bl_status_t bl_gpt2_put(const bl_gpt2_t *g, float *dst, const float *src, size_t count,
                        bl_error_t *err);
bl_status_t bl_gpt2_get(const bl_gpt2_t *g, const float *src, float *dst, size_t count,
                        bl_error_t *err);
/* Zeroes g->grads (the held units' ranges) before a new batch's backward
 * passes accumulate.
 * Returns BL_OK, BL_ERR_INVALID_ARG (NULL g) or BL_ERR_CUDA. */
bl_status_t bl_gpt2_zero_grads(bl_gpt2_t *g, bl_error_t *err);

/* Allocates the activations of g for batches of B sequences of T tokens on
 * g's device. Returns BL_OK, or BL_ERR_INVALID_ARG (a NULL argument, B or
 * T not positive, T above max_seq_len maxT, or B · T rows beyond what the
 * kernels' int dimensions hold, named) or BL_ERR_NO_MEM. On failure acts
 * holds nothing. The caller frees it with bl_gpt2_acts_free. */
bl_status_t bl_gpt2_acts_init(const bl_gpt2_t *g, int B, int T, bl_gpt2_acts_t *acts,
                              bl_error_t *err);
/* Returns the bytes that bl_gpt2_acts_init allocates for g, B and T (B,
 * T > 0), from the shapes alone. */
double bl_gpt2_acts_nbytes(const bl_gpt2_t *g, int B, int T);
/* The bytes of those activations that a pipeline stage computing units
 * [first, last) touches: its blocks' buffers, its input stream, the head's
 * when it has the head, and the buffers every pass shares. A BL_GPT2_SPANS
 * model that holds only some units when its activations are made touches
 * no others, so they never take memory. */
double bl_gpt2_acts_units_nbytes(const bl_gpt2_t *g, int B, int T, int first, int last);
/* Makes the next passes run on batches of B sequences, 1 <= B <=
 * acts->capacity; the buffers keep their size. Returns BL_OK or
 * BL_ERR_INVALID_ARG naming B. */
bl_status_t bl_gpt2_acts_set_batch(bl_gpt2_acts_t *acts, int B, bl_error_t *err);
/* Copies B sequences of host tokens (B, T) and targets (B, T) into
 * acts->tokens and acts->targets, the first B · T of each, where the unit
 * passes read them: a pipeline's micro-batch views see their slices. The
 * ids are not checked (the caller checked the stream). 0 <= B <=
 * acts->capacity. Returns BL_OK, or BL_ERR_CUDA (an upload failed). */
bl_status_t bl_gpt2_put_batch(const bl_gpt2_t *g, bl_gpt2_acts_t *acts, const int32_t *tokens,
                              const int32_t *targets, int B, bl_error_t *err);
/* Makes *view the activations of sequences [b0, b0 + B) of whole, a
 * pipeline's micro-batch: every per-sequence buffer points into whole's at
 * that offset, and the per-layer pointers go into layers (L entries, the
 * caller's). The shared scratch (attention_backward's) and the residual
 * adds' row numbers are whole's. 0 <= b0 and b0 + B <= whole->capacity;
 * B may be 0 (a micro-batch without sequences, which no pass may run on).
 * The view owns nothing: never free it. */
void bl_gpt2_acts_view(const bl_gpt2_t *g, const bl_gpt2_acts_t *whole, int b0, int B,
                       bl_gpt2_layer_acts_t *layers, bl_gpt2_acts_t *view);

/* The units of a pipeline: 0 the embedding, 1 .. L the blocks, L + 1 the
 * head. Returns the residual stream (B, T, C) after unit u <= L in acts,
 * which unit u + 1 reads: the output of the last user layer after u, or
 * else the unit's own (the embedding's encoded, block u − 1's res3). */
float *bl_gpt2_stream(const bl_gpt2_t *g, const bl_gpt2_acts_t *acts, int u);
/* The stream (B, T, C) inside block `layer` (0 .. L − 1) that its MLP half
 * reads: the output of the last user layer inside it, else its res2. */
float *bl_gpt2_mid_stream(const bl_gpt2_t *g, const bl_gpt2_acts_t *acts, int layer);

/* Frees acts (in any state, a zeroed one too) and zeroes it. g must be the
 * model that it was made for. */
void bl_gpt2_acts_free(const bl_gpt2_t *g, bl_gpt2_acts_t *acts);

/* Runs the forward pass over tokens (B, T), host memory. With targets
 * (B, T, host memory; NULL: none), it also writes dlogits for backward and
 * sets *loss (which may be NULL) to the SUM of the B · T per-token
 * cross-entropies; without, *loss is 0. Returns BL_OK, or
 * BL_ERR_INVALID_ARG naming the first token or target outside the
 * vocabulary [0, V) (then nothing runs), or BL_ERR_CUDA (an upload). */
bl_status_t bl_gpt2_forward(bl_gpt2_t *g, bl_gpt2_acts_t *acts, const int32_t *tokens,
                            const int32_t *targets, double *loss, bl_error_t *err);
/* Runs the backward pass of the last forward, which had targets, adding
 * (+=) the per-token gradient sums into g->grads. The tied wte receives
 * the head's gradient and the embedding's. Returns BL_OK, or
 * BL_ERR_INVALID_ARG when the last forward had no targets. */
bl_status_t bl_gpt2_backward(bl_gpt2_t *g, bl_gpt2_acts_t *acts, bl_error_t *err);

/* The passes of unit u (0 .. L + 1), which bl_gpt2_forward and
 * bl_gpt2_backward chain: the unit and then the user layers after it
 * forward, in reverse backward. They read acts->tokens and acts->targets
 * as bl_gpt2_forward uploaded them, and do not check them. The forward adds
 * the head's loss sum (when acts->has_targets) to *loss. The backward adds
 * into g->grads and, from d loss / d the stream after the unit in
 * acts->dres, leaves d loss / d the unit's input there (the head starts
 * it). Return BL_OK, or the status of a user layer's failed pass, which
 * err names with the layer. */
bl_status_t bl_gpt2_unit_forward(bl_gpt2_t *g, bl_gpt2_acts_t *acts, int u, double *loss,
                                 bl_error_t *err);
bl_status_t bl_gpt2_unit_backward(bl_gpt2_t *g, bl_gpt2_acts_t *acts, int u, bl_error_t *err);

/* The built-in units' passes alone, which the two above run. */
void bl_gpt2_embedding_forward(const bl_gpt2_t *g, bl_gpt2_acts_t *acts);
void bl_gpt2_block_forward(const bl_gpt2_t *g, bl_gpt2_acts_t *acts, int layer);
/* A block's two halves: attention (writing res2) and the MLP (reading
 * bl_gpt2_mid_stream), which bl_gpt2_block_forward and _backward chain. */
void bl_gpt2_block_forward_attention(const bl_gpt2_t *g, bl_gpt2_acts_t *acts, int layer);
void bl_gpt2_block_forward_mlp(const bl_gpt2_t *g, bl_gpt2_acts_t *acts, int layer);
void bl_gpt2_block_backward_mlp(bl_gpt2_t *g, bl_gpt2_acts_t *acts, int layer);
void bl_gpt2_block_backward_attention(bl_gpt2_t *g, bl_gpt2_acts_t *acts, int layer);
double bl_gpt2_head_forward(const bl_gpt2_t *g, bl_gpt2_acts_t *acts);
void bl_gpt2_head_backward(bl_gpt2_t *g, bl_gpt2_acts_t *acts);
void bl_gpt2_block_backward(bl_gpt2_t *g, bl_gpt2_acts_t *acts, int layer);
void bl_gpt2_embedding_backward(bl_gpt2_t *g, bl_gpt2_acts_t *acts);

/* AdamW's settings, with torch.optim.AdamW's meaning; BL_GPT2_ADAMW_INIT
 * holds its defaults and no clipping. */
typedef struct bl_gpt2_adamw {
    float lr, beta1, beta2, eps;
    float weight_decay;  /* decoupled; only on the tensors bl_gpt2_decays names */
    float max_grad_norm; /* > 0: clip the global gradient norm to it; 0: no clipping */
} bl_gpt2_adamw_t;

#define BL_GPT2_ADAMW_INIT                                                                         \
    {                                                                                              \
        .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 1e-2f,          \
        .max_grad_norm = 0.0f                                                                      \
    }

/* Whether AdamW decays tensor id: 1 for the weights of two or more
 * dimensions (wte, wpe, qkvw, attprojw, fcw, fcprojw), 0 for the biases and
 * the LayerNorm parameters (and for ids outside the table). */
int bl_gpt2_decays(int id);
/* As bl_gpt2_decays, and for a user layer's range (tensor
 * BL_GPT2_TENSOR_COUNT + k) the layer's `decay`. */
int bl_gpt2_range_decays(const bl_gpt2_t *g, int tensor);

/* One AdamW step (kernels.h's adamw_update, step g->adam_steps + 1) over
 * g->grads, which hold the per-token sums of `tokens` targets: the
 * gradient is scaled by 1 / tokens and, when opt->max_grad_norm > 0, by
 * min(1, max_grad_norm / (norm + 1e-6)) with norm the L2 norm of the
 * scaled gradient over all tensors (torch.nn.utils.clip_grad_norm_'s
 * rule), both folded into the kernel's grad_scale. Sets *grad_norm (which
 * may be NULL) to that norm before clipping. Returns BL_OK, or
 * BL_ERR_INVALID_ARG (NULL arguments, tokens not positive, a model without
 * moments). */
bl_status_t bl_gpt2_adamw_step(bl_gpt2_t *g, const bl_gpt2_adamw_t *opt, long tokens,
                               double *grad_norm, bl_error_t *err);

/* The factor that AdamW applies to gradient sums over `tokens` targets
 * whose mean has the global norm `norm`: 1 / tokens, times
 * min(1, max_grad_norm / (norm + 1e-6)) when max_grad_norm > 0. */
double bl_gpt2_grad_scale(double norm, long tokens, float max_grad_norm);

/* A contiguous range of the parameter array and the tensor it lies in. */
typedef struct bl_gpt2_range {
    size_t offset, count;
    int tensor;
} bl_gpt2_range_t;

/* Writes to out (at most BL_GPT2_MAX_RANGES entries) the parameter ranges
 * of units [first, last) (0 <= first < last <= L + 2), one per tensor: wte
 * and wpe for the embedding, each per-layer tensor's slices of the blocks
 * (contiguous, since a tensor holds its L slices in order), lnfw, lnfb and
 * wte for the head; wte once when both ends are in; then one per user
 * layer after a unit in the set. Returns their count. */
int bl_gpt2_unit_ranges(const bl_gpt2_t *g, int first, int last, bl_gpt2_range_t *out);

/* The sum of the squares of g->grads over ranges (count of them), in
 * double; skip_tensor (or -1) names a tensor left out. */
double bl_gpt2_grad_sum_squares(const bl_gpt2_t *g, const bl_gpt2_range_t *ranges, int count,
                                int skip_tensor);

/* AdamW's step t (>= 1) over ranges only, with the gradients scaled by
 * grad_scale (1 / tokens and any clipping folded in), the learning rate and
 * the betas of opt, and the weight decay on the ranges that
 * bl_gpt2_range_decays names. g must have its moments. */
void bl_gpt2_adamw_ranges(bl_gpt2_t *g, const bl_gpt2_adamw_t *opt, float grad_scale, long t,
                          const bl_gpt2_range_t *ranges, int count);
/* The same with the moments held apart from the model: the moments of the
 * parameter at offset i (base <= i, for i in every range) are m[i − base]
 * and v[i − base], in g's memory. A ZeRO-1 rank passes its slice's
 * sub-ranges, the slice's moments and the slice's first offset. Element by
 * element the arithmetic is bl_gpt2_adamw_ranges', so the result is the
 * same bits. */
void bl_gpt2_adamw_ranges_at(bl_gpt2_t *g, const bl_gpt2_adamw_t *opt, float grad_scale, long t,
                             const bl_gpt2_range_t *ranges, int count, float *m, float *v,
                             size_t base);

/* Adds count user layers (bl_lm_layer_t) to a model that has none, before
 * its parameters are initialised or uploaded, before any activations are
 * made and (BL_GPT2_SPANS) before any unit is held: the parameter arrays grow by the layers'
 * parameters, zeroed. The layers' calls get `device` (whose memory must be the model's). Returns
 * BL_OK, or BL_ERR_INVALID_ARG naming the layer (index and name) and what is
 * wrong: more than BL_LM_MAX_LAYERS, `after` outside 0 .. L, a NULL shape,
 * forward or backward, a failed shape or one whose width is not C,
 * parameters already added; or BL_ERR_NO_MEM, with the model unchanged. */
bl_status_t bl_gpt2_add_layers(bl_gpt2_t *g, const bl_lm_layer_t *layers, int count,
                               const bl_device_t *device, bl_error_t *err);

/* Initialises the user layers' parameters with their init (zeros where it
 * is NULL), layer k from a seed mixed from seed and k. Returns BL_OK, or the
 * status of a failed init naming the layer, or BL_ERR_NO_MEM / BL_ERR_CUDA
 * (staging on a device). bl_gpt2_init_params calls it. */
bl_status_t bl_gpt2_init_layers(bl_gpt2_t *g, uint64_t seed, bl_error_t *err);

/* Copies gpt_param_count host floats (an llm.c file's tensors) into the
 * GPT-2 tensors of g->params, leaving the user layers' parameters. Returns
 * as bl_gpt2_upload. */
bl_status_t bl_gpt2_upload_gpt(bl_gpt2_t *g, const float *params, bl_error_t *err);

/* The user layers' multiply-adds per row after unit u (their cost_hint). */
double bl_gpt2_layers_cost(const bl_gpt2_t *g, int u);

#endif /* BL_GPT2_H */
