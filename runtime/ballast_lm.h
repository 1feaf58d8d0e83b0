/* ballast's language-model API: GPT-2 models and trainers, token streams,
 * AdamW and its learning-rate schedules, bf16 autocast on devices, ZeRO-1 and
 * text generation (README: "Transformers"). Part of the public C API:
 * ballast.h includes it, and it includes ballast.h for the runtime, step
 * callbacks, user layers and the shared trainer settings; either may be
 * included first. */
#ifndef BALLAST_LM_H
#define BALLAST_LM_H

#include <stdint.h>

#include "ballast.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Language models: GPT-2 (README: "Transformers") ---------------------- */

/* A GPT-2 model's shape, in the order of llm.c's checkpoint header. */
typedef struct bl_gpt2_config {
    int max_seq_len;       /* maxT, the longest sequence the position embedding covers */
    int vocab_size;        /* V, the real tokens */
    int num_layers;        /* L, the transformer blocks */
    int num_heads;         /* NH, which divides C */
    int channels;          /* C */
    int padded_vocab_size; /* Vp >= V, the rows of the token embedding (llm.c pads to 128) */
} bl_gpt2_config_t;

/* A token stream, read whole into memory. */
typedef struct bl_token_set bl_token_set_t;

/* Opens a token file in llm.c's format (a header of 256 int32 words: magic
 * 20240520, version 1, the count; then uint16 tokens). With vocab > 0 every
 * token must be below it. Returns BL_OK, or BL_ERR_IO, BL_ERR_FORMAT (naming
 * the file and the field, or the first token outside the vocabulary),
 * BL_ERR_NO_MEM or BL_ERR_INVALID_ARG. Local. */
bl_status_t bl_tokens_open(bl_runtime_t *rt, const char *path, int vocab, bl_token_set_t **out);
/* Makes a token set from a plain text file with the byte-level tokenizer:
 * token i is byte i of the file, and the vocabulary is 256. Local. */
bl_status_t bl_tokens_open_text(bl_runtime_t *rt, const char *path, bl_token_set_t **out);
/* Writes count tokens to path in llm.c's format, atomically (a temporary
 * file renamed over path). Local. */
bl_status_t bl_tokens_save(bl_runtime_t *rt, const char *path, const uint16_t *tokens, long count);
void bl_token_set_destroy(bl_token_set_t *s);
long bl_token_set_count(const bl_token_set_t *s);
const uint16_t *bl_token_set_data(const bl_token_set_t *s);
/* The vocabulary the set was checked against: 256 for text, the vocab
 * argument, or the largest token + 1 when that was 0. */
int bl_token_set_vocab(const bl_token_set_t *s);

/* A learning-rate schedule over the steps, as llm.c's and nanoGPT's: a linear
 * warm-up over warmup_steps (step s uses lr · (s + 1) / warmup_steps), then
 * for BL_LR_COSINE a cosine decay from lr at step warmup_steps to lr_min at
 * step decay_steps, and lr_min after it; BL_LR_CONSTANT stays at lr. */
typedef enum { BL_LR_CONSTANT = 0, BL_LR_COSINE = 1 } bl_lr_kind_t;
typedef struct bl_lr_schedule {
    bl_lr_kind_t kind;
    long warmup_steps; /* >= 0 */
    long decay_steps;  /* cosine: > warmup_steps, usually the run's steps */
    float lr_min;      /* cosine: in [0, lr] */
} bl_lr_schedule_t;

/* Returns the learning rate of step `step` (>= 0) under schedule s for the
 * base rate lr. */
double bl_lr_at(const bl_lr_schedule_t *s, float lr, long step);

/* AdamW with torch.optim.AdamW's semantics: bias correction, eps outside the
 * square root, weight decay decoupled and applied to the weights of two or more
 * dimensions and the embeddings only (not to biases or LayerNorm parameters),
 * and clipping of the global gradient norm as torch.nn.utils.clip_grad_norm_. */
typedef struct bl_adamw_config {
    float lr; /* the base learning rate, which the schedule scales */
    float beta1, beta2, eps;
    float weight_decay;
    float clip_grad_norm; /* > 0: the largest global gradient norm; 0: no clipping */
} bl_adamw_config_t;

#define BL_LM_CONFIG_VERSION 3

/* The arithmetic of a language model's products (bl_lm_config_t.precision).
 * BL_PRECISION_BF16 is autocast as on GPUs: the products (the dense layers,
 * the tied head, attention's scores and values, forward and backward) take
 * their operands rounded to bfloat16 and accumulate in fp32, while the
 * master weights, the gradients, AdamW's moments, LayerNorm, softmax and the
 * loss stay fp32. Only ranks that compute on a device (a GPU, or the mirror
 * test device, which is the GPU's reference twin) use it; CPU ranks compute
 * in fp32 either way. The gradients are all-reduced in fp32, so the
 * replicas' fp32 parameters stay bit-equal in a group that mixes both. */
typedef enum bl_precision {
    BL_PRECISION_FP32 = 0,
    BL_PRECISION_BF16 = 1,
} bl_precision_t;

/* The most user layers a language model takes. */
#define BL_LM_MAX_LAYERS 16

/* A user layer inside a GPT-2's residual stream: it maps the stream
 * (B · T rows of C channels) to a stream of the same width, after unit
 * `after` (0: the embedding, 1 .. L: that block), before the next unit
 * reads it, or with `inside`, within block `after` between its attention
 * and its MLP. Several layers at one place run in the array's order. The
 * layer belongs to its unit: a pipeline stage that owns the unit computes
 * it, and it moves with the unit.
 *   ops.shape(state, C, &out, &count) must give out = C; ops.init (or
 *   zeros, when NULL) gives the parameters from a seed derived from the
 *   trainer's seed and the layer's index; ops.forward and ops.backward see
 *   batch = B · T rows in sequence order, seq_len = T, in_features =
 *   out_features = C, and backward adds (accumulate 1) the per-token
 *   gradient SUMS of its micro-batch into grads, as the built-in layers do:
 *   a pass must not scale by its batch. ops.cost_hint (multiply-adds per
 *   row, or NULL) counts in the default stage map. ops.destroy is not
 *   called: the caller owns state. AdamW updates the parameters, with the
 *   weight decay when `decay` is 1. */
typedef struct bl_lm_layer {
    int after;
    bl_layer_ops_t ops;
    void *state;
    int decay;
    /* 1: inside block `after` (1 .. L) instead, between its attention and
     * its MLP, on the stream after attention's residual add, which the
     * MLP half then reads; 0: after the unit. */
    int inside;
} bl_lm_layer_t;

/* A language-model trainer's configuration. Start from BL_LM_CONFIG_INIT. The
 * batch is B sequences of T tokens; each sequence is T + 1 consecutive tokens
 * of the stream (the inputs and, one token on, the targets), cut at multiples
 * of T, and the sampler picks the global batch of each step as a pure function
 * of (seed, epoch, step). Shards and caps count sequences. The loss is the
 * cross-entropy averaged over all B · T targets of the global batch, so any
 * split of the batch trains to the same parameters. */
typedef struct bl_lm_config {
    int version;            /* BL_LM_CONFIG_VERSION */
    bl_gpt2_config_t model; /* the shape, when init_from is NULL */
    /* An llm.c GPT-2 checkpoint (float32, version 3) to start from, whose
     * shape wins over `model`; NULL initialises as GPT-2 does from seed. */
    const char *init_from;
    int seq_len; /* T, at most the model's max_seq_len */
    int batch;   /* B, sequences per global step */
    uint64_t seed;
    int shuffle; /* 1: a seeded permutation of the sequences per epoch */
    bl_adamw_config_t adamw;
    bl_lr_schedule_t schedule;
    /* Pipelines: S stages over the units (0 the embedding, 1 .. L the
     * blocks, L + 1 the head), M micro-batches, GPipe or 1F1B; the ranks
     * form P / S pipelines, and shards and caps are per pipeline. */
    bl_pipeline_config_t pipeline;
    bl_plan_config_t plan;       /* shards and caps in sequences; the stage map over units */
    bl_balance_config_t balance; /* the shard policy; with pipelines, the stage-map one */
    bl_diagnostics_config_t diagnostics;
    /* 1: with one stage and every rank of the job on one node, the ranks sum
     * the gradients and take AdamW's step through MPI shared memory, each
     * rank its slice, instead of all-reducing; 0: always all-reduce. */
    int node_reduce;
    /* The user layers in the residual stream (bl_lm_layer_t), layer_count of
     * them, at most BL_LM_MAX_LAYERS; NULL with 0: none. The trainer copies
     * the array; each layer's state must outlive the trainer. */
    const bl_lm_layer_t *layers;
    int layer_count;
    /* > 0: refuse to start (BL_ERR_NO_MEM) when a rank's accounted bytes
     * exceed it; 0: the rank's cgroup's memory.max when one is set, else
     * none (as bl_train_config_t's). */
    double mem_limit_bytes;
    /* bl_precision_t: BL_PRECISION_FP32 (the default) or BL_PRECISION_BF16
     * on the ranks that compute on a device; every rank must give the same. */
    int precision;
    /* 1: ZeRO-1, the optimizer state sharded over the data-parallel group:
     * the gradients are reduce-scattered, each of the D replicas holds
     * AdamW's moments for its slice of the parameters only (about 1/D of
     * them) and updates that slice, and the parameters are all-gathered, the
     * same math bit for bit as the node-local reduction's. With pipelines
     * each stage's replicas shard that stage's moments (the moving units'
     * travel with them). It takes precedence over node_reduce, and is a
     * no-op with one replica. CPU ranks only (a model in a device's memory:
     * BL_ERR_UNSUPPORTED). 0 (the default): every replica holds all the
     * moments. Every rank must give the same. */
    int zero;
} bl_lm_config_t;

#define BL_LM_CONFIG_INIT                                                                          \
    {                                                                                              \
        .version = BL_LM_CONFIG_VERSION,                                                           \
        .model = {.max_seq_len = 128,                                                              \
                  .vocab_size = 256,                                                               \
                  .num_layers = 4,                                                                 \
                  .num_heads = 4,                                                                  \
                  .channels = 256,                                                                 \
                  .padded_vocab_size = 256},                                                       \
        .seq_len = 128, .batch = 16, .seed = 1, .shuffle = 1,                                      \
        .pipeline = {.stages = 1, .micro_batches = 1, .schedule = BL_SCHEDULE_1F1B},               \
        .adamw = {.lr = 1e-3f,                                                                     \
                  .beta1 = 0.9f,                                                                   \
                  .beta2 = 0.95f,                                                                  \
                  .eps = 1e-8f,                                                                    \
                  .weight_decay = 0.1f,                                                            \
                  .clip_grad_norm = 1.0f},                                                         \
        .balance = {.rebalance_every = 10,                                                         \
                    .repartition_horizon = 200.0,                                                  \
                    .repartition_threshold = 0.02},                                                \
        .node_reduce = 1,                                                                          \
    }

typedef struct bl_lm_trainer bl_lm_trainer_t;

/* Creates a GPT-2 trainer over the training tokens train[0 .. count), which
 * the caller keeps alive and unchanged while the trainer lives. Collective:
 * the ranks form P / S pipelines of cfg->pipeline.stages stages, each pipeline
 * trains on its shard of each batch, and every stage on its units of the stage
 * map. Every rank's memory is accounted and checked against its limit before
 * the model takes any host memory; then the ranks check that they hold the
 * same config, tokens and initial parameters (under stage-local memory: the
 * same init_from file, and the same values within each stage's replicas)
 * (BL_ERR_MISMATCH naming the rank and the field if not). A bad config is
 * BL_ERR_INVALID_ARG naming the field; a bad init_from file is BL_ERR_IO or
 * BL_ERR_FORMAT naming the file and the field; tokens at or above the
 * vocabulary, or fewer than B sequences, are BL_ERR_INVALID_ARG. The model
 * lives on the runtime's device: on a rank whose device has memory of its own
 * (a GPU, the mirror), its parameters, gradients, AdamW moments and
 * activations live there and the user layers' calls get that device; such a
 * rank refuses pipelines (stages > 1) with BL_ERR_UNSUPPORTED, and a kernel
 * table without the transformer's kernels with BL_ERR_INVALID_ARG, each naming
 * the rank and the device. */
bl_status_t bl_lm_trainer_create(bl_runtime_t *rt, const bl_lm_config_t *cfg, const uint16_t *train,
                                 long count, bl_lm_trainer_t **out);
void bl_lm_trainer_destroy(bl_lm_trainer_t *t);

/* Runs `steps` more steps, as bl_trainer_run does; info->loss is the mean
 * per-token loss of the step's global batch, and tokens, lr and grad_norm are
 * set. Collective. At its end every replica holds the same parameters
 * (BL_ERR_MISMATCH if not): every rank the whole model, or under stage-local
 * memory each stage's replicas their units, compared with their moments. */
bl_status_t bl_lm_trainer_run(bl_lm_trainer_t *t, long steps, bl_step_cb cb, void *cb_arg);

/* Computes the mean per-token loss of the model over the first max_sequences
 * sequences of T + 1 tokens of tokens[0 .. count) (0: all of them), which the
 * ranks share between them. Collective. BL_ERR_INVALID_ARG: fewer than T + 1
 * tokens, or a token outside the vocabulary. */
bl_status_t bl_lm_trainer_evaluate(bl_lm_trainer_t *t, const uint16_t *tokens, long count,
                                   long max_sequences, double *loss);

/* Writes the model to path in llm.c's GPT-2 format (float32, version 3), which
 * llm.c, PyTorch scripts and bl_lm_generate read. With user layers, whose
 * parameters that format has no place for, it also writes them to
 * "<path>.layers" (the layers' parameters in the config's order, raw
 * little-endian float32); the llm.c file alone is the model without them.
 * With one stage rank 0 writes; with pipelines rank 0 makes a temporary file
 * beside path, the first replica of every stage writes its units' ranges at
 * their offsets (nothing is gathered, and no rank holds the whole model
 * under stage-local memory), and rank 0 renames it into place: atomic
 * either way. Collective, and every rank returns the same status, naming
 * the file and the rank that failed. */
bl_status_t bl_lm_trainer_save_model(bl_lm_trainer_t *t, const char *path);

/* Saves the trainer's state into dir/ckpt-<step>/, keeping the newest `keep`
 * checkpoints (0: all); path (n bytes; may be NULL with n 0) receives the
 * checkpoint's directory. Collective; a step callback may call it. The
 * replicas of a stage hold the same state (checked first), so nothing is
 * gathered: the first replica of every stage writes its units' parameters
 * (the user layers' too) and AdamW moments to its own file,
 * stage-K-of-S.bin, and rank 0 writes the manifest lm.bin: the next step,
 * the seed, batch, sequence length and shuffle that fix the batches, the
 * model's shape, AdamW's step count, the plan (its version, shards and stage
 * map), the learned state of the shard policy and of the stage policy, and
 * each stage file's units, length and checksum. One stage writes one stage
 * file of the whole model. A failed save leaves the previous checkpoints as
 * they were; every rank returns the same status. (Format:
 * runtime/io/checkpoint.h; README: "Transformers") */
bl_status_t bl_lm_trainer_save_checkpoint(bl_lm_trainer_t *t, const char *dir, int keep, char *path,
                                          size_t n);

/* Loads the newest complete and valid checkpoint in dir (skipping, with a
 * warning, any that is damaged) and continues from it: the next run starts at
 * its step with its parameters, AdamW state and plan (which wins over the
 * config's), bit for bit as if never stopped on the same ranks with a fixed
 * plan. With as many pipeline stages, the saved stage map replaces the
 * configured or balanced one (an info line names both when they differ),
 * unless its units would put a stage-local rank over its memory limit (then
 * the run's own map stays, with an info line), and each rank reads what it
 * holds (its stage's units under stage-local memory, else every unit) from
 * whichever stage files hold them, whatever the saved layout (rank 0 reads
 * every file once, through a read-only mapping, to check it); the stage policy
 * goes on from its saved state when it is of the same kind (else it starts
 * afresh, with an info line saying why). On another number of ranks the saved
 * shards do not apply, and on another number of stages the saved map does not:
 * the trainer keeps its first plan (an info line says so); a checkpoint
 * written before stage maps were saved resumes on the run's own map. *resumed
 * says whether it resumed (0 when dir has no checkpoint). Collective; call it
 * before bl_lm_trainer_run. BL_ERR_MISMATCH, naming the field and both values:
 * the newest intact checkpoint is of another model shape or parameter count
 * (the user layers' included), sequence length, seed, batch or shuffle, or is
 * a layer trainer's. */
bl_status_t bl_lm_trainer_resume(bl_lm_trainer_t *t, const char *dir, int *resumed);

/* As bl_trainer_emulate_slowdown, for a language-model trainer. */
bl_status_t bl_lm_trainer_emulate_slowdown(bl_lm_trainer_t *t, const bl_slowdown_t *list,
                                           int count);
long bl_lm_trainer_step(const bl_lm_trainer_t *t);
long bl_lm_trainer_steps_per_epoch(const bl_lm_trainer_t *t);
/* The parameters (host memory, llm.c's tensor order) and their count; they
 * belong to t. They are whole and current once bl_lm_trainer_run has
 * returned BL_OK; inside a step callback a pipeline
 * stage's rank holds only its own units' current values. Under stage-local
 * memory (pipeline.stage_local with pipelines) a rank never holds the whole
 * model: only its stage's units (bl_lm_trainer_units) may be read, and
 * reading another unit's parameters faults. On a rank
 * whose device has memory of its own (the runtime's device: the model trains
 * there), they are a host copy, downloaded at the end of a run, at
 * checkpoints and saves (and filled by a resume): stale inside a step
 * callback. */
const float *bl_lm_trainer_params(const bl_lm_trainer_t *t, size_t *count);
/* This rank's pipeline's shard of the batch under the plan in force, in
 * sequences. */
int bl_lm_trainer_local_batch(const bl_lm_trainer_t *t);
/* Sets [*first, *last) to the units that this rank's stage computes under
 * the stage map in force (0 the embedding, 1 .. L the blocks, L + 1 the
 * head; all of them with one stage), and returns whether the rank holds the
 * whole model's memory (0 under stage-local memory, where only these units'
 * ranges of bl_lm_trainer_params may be read). */
int bl_lm_trainer_units(const bl_lm_trainer_t *t, int *first, int *last);

/* Samples new_tokens tokens from the GPT-2 model in the llm.c file
 * model_path after the prompt (prompt_count >= 1 tokens): each step runs the
 * model (on the runtime's device: in its memory when it has memory of its
 * own, BL_ERR_INVALID_ARG naming it when its kernels lack the transformer's)
 * over the last max_seq_len tokens so far and draws the next token from
 * the softmax of its logits over the V real tokens divided by temperature
 * (> 0), with a generator seeded by seed, so one seed always gives the same
 * text. out receives prompt_count + new_tokens tokens (the prompt first).
 * Local; BL_ERR_INVALID_ARG names a bad argument or a prompt token outside
 * the vocabulary, and the file's errors are bl_tokens_open's kind. */
bl_status_t bl_lm_generate(bl_runtime_t *rt, const char *model_path, const uint16_t *prompt,
                           int prompt_count, int new_tokens, float temperature, uint64_t seed,
                           uint16_t *out);

#ifdef __cplusplus
}
#endif

#endif /* BALLAST_LM_H */
