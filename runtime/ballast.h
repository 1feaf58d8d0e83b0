/* ballast — distributed SGD training over MPI on heterogeneous clusters.
 *
 * This is the public C API. Every public name carries the bl_ or BL_ prefix.
 * Handles are opaque and come in create and destroy pairs; destroying NULL is a
 * no-op. Every fallible call returns a bl_status_t, and bl_last_error(rt) gives
 * the detailed cause of a runtime's last failure. The library never exits,
 * aborts or calls MPI_Abort: the program decides what to do with a failure.
 *
 * Shapes: every matrix is row-major float32, [batch × features].
 *
 * Lifetimes: the runtime must outlive every handle made from it. A trainer uses
 * its model and datasets without owning them, so they must outlive its last
 * use; destroying them in any order afterwards is safe. */
#ifndef BALLAST_H
#define BALLAST_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BL_VERSION_MAJOR 0
#define BL_VERSION_MINOR 2
#define BL_VERSION_PATCH 0

/* ---- Status ------------------------------------------------------------ */

/* One table holds the codes and their strings, so they cannot drift apart. */
#define BL_STATUS_MAP(X)                                                                           \
    X(OK, "success")                                                                               \
    X(ERR_INVALID_ARG, "invalid argument")                                                         \
    X(ERR_NO_MEM, "out of memory")                                                                 \
    X(ERR_IO, "input/output error")                                                                \
    X(ERR_FORMAT, "malformed input")                                                               \
    X(ERR_MPI, "MPI error")                                                                        \
    X(ERR_CUDA, "CUDA error")                                                                      \
    X(ERR_NCCL, "NCCL error")                                                                      \
    X(ERR_MISMATCH, "mismatch between ranks or files")                                             \
    X(ERR_TIMEOUT, "timed out")                                                                    \
    X(ERR_UNSUPPORTED, "unsupported")                                                              \
    X(ERR_INTERRUPTED, "interrupted")

typedef enum {
#define BL_STATUS_ENUM(name, text) BL_##name,
    BL_STATUS_MAP(BL_STATUS_ENUM)
#undef BL_STATUS_ENUM
        BL_STATUS_COUNT
} bl_status_t;

/* Returns a short static string for s ("invalid argument"), or "unknown status"
 * for a value outside the enum; never NULL. */
const char *bl_status_string(bl_status_t s);

/* ---- Logging ----------------------------------------------------------- */

typedef enum { BL_LOG_ERROR = 0, BL_LOG_WARN, BL_LOG_INFO, BL_LOG_DEBUG } bl_log_level_t;

/* A log sink. It receives one formatted line, without its trailing newline. */
typedef void (*bl_log_fn)(bl_log_level_t level, int rank, const char *line, void *arg);

/* ---- Allocation -------------------------------------------------------- */

/* Optional allocator hooks, both set or neither. Every allocation of the
 * library goes through them, so a caller can track memory or inject failures. */
typedef struct bl_allocator {
    void *(*alloc)(size_t nbytes,
                   void *ctx);             /* may return NULL: the call fails with BL_ERR_NO_MEM */
    void (*release)(void *ptr, void *ctx); /* ptr may be NULL */
    void *ctx;
} bl_allocator_t;

/* ---- Runtime ----------------------------------------------------------- */

#define BL_CONFIG_VERSION 2

/* Where a rank computes (bl_config_t.device). */
typedef enum {
    BL_DEVICE_CPU = 0,  /* OpenBLAS on the rank's cores */
    BL_DEVICE_CUDA = 1, /* a GPU; bl_runtime_create fails when the rank sees none */
    BL_DEVICE_AUTO = 2, /* a GPU when the rank sees one, else the CPU */
    /* For tests: the CPU kernels on memory of their own, moved exactly as a GPU
     * rank moves its device memory (parameters uploaded, batches staged,
     * gradients downloaded for MPI), so that path runs on machines without a
     * GPU; slower than the CPU. */
    BL_DEVICE_MIRROR = 3
} bl_device_kind_t;

typedef struct bl_config {
    int version;       /* BL_CONFIG_VERSION; set by BL_CONFIG_INIT */
    int log_level;     /* a bl_log_level_t, or -1: from $BALLAST_LOG, else info */
    int log_all_ranks; /* 0: only rank 0 logs (errors log on every rank) */
    bl_log_fn log_fn;  /* NULL: lines go to stderr as "ballast[rank] level: ..." */
    void *log_arg;     /* passed to log_fn */
    /* > 0: this rank's BLAS threads; 0: the cores of the rank's cpuset, shared
     * among the node's ranks bound to it (a process-wide OpenBLAS setting). */
    int blas_threads;
    bl_allocator_t allocator; /* all NULL: malloc and free */
    /* Version 2: a bl_device_kind_t; ranks may differ (mixed CPU and GPU jobs).
     * A GPU rank takes one of the GPUs it sees, round robin in rank order among
     * the node's GPU ranks; rank 0 logs every choice. One runtime per process
     * may compute on a GPU at a time: a second fails with BL_ERR_CUDA.
     * (README: "API details", "Devices") */
    int device;
} bl_config_t;

#define BL_CONFIG_INIT                                                                             \
    {                                                                                              \
        .version = BL_CONFIG_VERSION, .log_level = -1, .device = BL_DEVICE_CPU                     \
    }

typedef struct bl_runtime bl_runtime_t;

/* Creates a runtime on a duplicate of comm, with MPI_ERRORS_RETURN set on the
 * duplicate. Collective over comm; MPI must be initialised. cfg may be NULL
 * (the defaults), and an older config version is accepted. A bad argument is
 * BL_ERR_INVALID_ARG, returned before any MPI call and without a message (no
 * runtime holds one). Later failures (BL_ERR_MPI, BL_ERR_NO_MEM;
 * BL_ERR_UNSUPPORTED or BL_ERR_CUDA for a GPU) are logged and fail every rank.
 * On failure *out is NULL. Rank 0 logs each node's ranks, cores and binding.
 * (README: "API details", "Creating a runtime") */
bl_status_t bl_runtime_create(MPI_Comm comm, const bl_config_t *cfg, bl_runtime_t **out);

/* Frees the runtime and its communicator. Collective; NULL is a no-op. */
void bl_runtime_destroy(bl_runtime_t *rt);

/* Returns the detailed message of the last failure on rt, or "" if there was
 * none. The string belongs to the runtime and stays valid until the next
 * failing call. */
const char *bl_last_error(const bl_runtime_t *rt);

/* Return this rank in the runtime's communicator (-1 for NULL) and the
 * communicator's size (0 for NULL). */
int bl_runtime_rank(const bl_runtime_t *rt);
int bl_runtime_size(const bl_runtime_t *rt);

/* Returns the device this rank computes on, never AUTO (resolved at creation),
 * and writes its name ("cpu", "cuda:0 NVIDIA H200", "mirror") into name (n
 * bytes; NULL with n 0). BL_DEVICE_CPU for NULL. */
bl_device_kind_t bl_runtime_device(const bl_runtime_t *rt, char *name, size_t n);

/* Sets *any to 1 when `mine` is non-zero on any rank, else to 0: how the ranks
 * agree to stop at the same step when one got a signal. Collective;
 * BL_ERR_INVALID_ARG for a NULL rt or any. */
bl_status_t bl_runtime_any(bl_runtime_t *rt, int mine, int *any);

/* Logs a printf-style line through rt's logger; its level and rank filters apply. */
void bl_log(const bl_runtime_t *rt, bl_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- Math helpers for user layers -------------------------------------- */

/* A layer call's device context, which user layers pass to the bl_math_*
 * helpers. They run on the device the call's pointers belong to: the CPU
 * (OpenBLAS) or the rank's GPU (cuBLAS and ballast's kernels, queued in order
 * on ballast's stream). */
typedef struct bl_device bl_device_t;

/* Whether dev computes on memory of its own (a GPU, or the mirror test device),
 * so that a call's pointers are device memory; 0 for the CPU and for NULL. */
int bl_device_has_memory(const bl_device_t *dev);

/* Waits until the device's queued work is done (at once on the CPU). Returns
 * BL_OK, or BL_ERR_CUDA with the first call that failed since the last check in
 * bl_last_error of the device's runtime; BL_ERR_INVALID_ARG for NULL. */
bl_status_t bl_device_sync(const bl_device_t *dev);

/* Allocates nbytes of scratch where dev computes, for a user layer's own
 * buffers: in the device's memory when it has memory of its own (its
 * contents are then for the bl_math_* helpers, not for host code), else in
 * host memory from the runtime's allocator. nbytes 0 gives a unique pointer.
 * Returns NULL on failure or for a NULL dev. The caller frees it with
 * bl_device_free on the same dev (NULL is a no-op). */
void *bl_device_alloc(const bl_device_t *dev, size_t nbytes);
void bl_device_free(const bl_device_t *dev, void *ptr);

/* Copies count floats from x to y on dev (they must not overlap), queued in
 * order with the helpers' work on a device. Returns BL_OK, BL_ERR_INVALID_ARG
 * for a NULL device, or BL_ERR_CUDA when the device's copy failed. */
bl_status_t bl_math_copy(const bl_device_t *dev, size_t count, const float *x, float *y);

/* Computes C (M×N) = alpha · op(A) · op(B) + beta · C, row-major, where op(X)
 * is X or X^T as trans_a and trans_b (0 or 1) say; lda, ldb, ldc are row
 * strides. Returns BL_OK, or BL_ERR_INVALID_ARG for a NULL device or negative
 * sizes; a device backend may also return its own errors: pass them on. */
bl_status_t bl_math_gemm(const bl_device_t *dev, int trans_a, int trans_b, int m, int n, int k,
                         float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                         float *c, int ldc);

/* Compute y = max(x, 0) over count elements (x == y is allowed), and its
 * backward, dx = dy where y > 0 and 0 elsewhere (dy == dx is allowed). Both
 * return BL_ERR_INVALID_ARG for a NULL device. */
bl_status_t bl_math_relu(const bl_device_t *dev, size_t count, const float *x, float *y);
bl_status_t bl_math_relu_backward(const bl_device_t *dev, size_t count, const float *y,
                                  const float *dy, float *dx);

/* The same product `batch` times: C_i = alpha · op(A_i) · op(B_i) + beta · C_i
 * with X_i = X + i · stride_x (in floats), e.g. the heads of an attention
 * layer. BL_ERR_INVALID_ARG for a NULL device or negative sizes. */
bl_status_t bl_math_gemm_batched(const bl_device_t *dev, int trans_a, int trans_b, int m, int n,
                                 int k, float alpha, const float *a, int lda, long stride_a,
                                 const float *b, int ldb, long stride_b, float beta, float *c,
                                 int ldc, long stride_c, int batch);

/* The transformer's building blocks for user layers, on the layer's device.
 * Each returns BL_OK, BL_ERR_INVALID_ARG for a NULL device or bad sizes, or
 * BL_ERR_UNSUPPORTED (named in bl_last_error) on a device that has no such
 * kernel yet (today: GPUs), having written nothing.
 *   bl_math_softmax: y = the softmax of each row of x (rows, cols), x == y
 *     allowed; its backward dx = y · (dy − Σ y · dy) per row.
 *   bl_math_layernorm: y = (x − mean) · rstd · weight + bias per row (rows,
 *     cols), eps 1e-5, writing mean and rstd (rows each; NULL when no
 *     backward follows); its backward adds into dweight and dbias (cols)
 *     and writes (accumulate 0) or adds (1) dx.
 *   bl_math_gelu: GPT-2's tanh approximation; its backward dx = dy ·
 *     gelu'(x), dy == dx allowed. */
bl_status_t bl_math_softmax(const bl_device_t *dev, int rows, int cols, const float *x, float *y);
bl_status_t bl_math_softmax_backward(const bl_device_t *dev, int rows, int cols, const float *y,
                                     const float *dy, float *dx);
bl_status_t bl_math_layernorm(const bl_device_t *dev, int rows, int cols, const float *x,
                              const float *weight, const float *bias, float *y, float *mean,
                              float *rstd);
bl_status_t bl_math_layernorm_backward(const bl_device_t *dev, int rows, int cols, const float *dy,
                                       const float *x, const float *weight, const float *mean,
                                       const float *rstd, float *dx, float *dweight, float *dbias,
                                       int accumulate);
bl_status_t bl_math_gelu(const bl_device_t *dev, size_t count, const float *x, float *y);
bl_status_t bl_math_gelu_backward(const bl_device_t *dev, size_t count, const float *x,
                                  const float *dy, float *dx);

/* ---- Layers ------------------------------------------------------------ */

/* What a layer's forward or backward pass receives. Shapes are row-major. */
typedef struct bl_layer_call {
    const bl_device_t *device; /* for the bl_math_* helpers */
    int batch;                 /* rows of x, y, dy and dx */
    int in_features;           /* columns of x and dx */
    int out_features;          /* columns of y and dy */
    const float *params;       /* the layer's parameters (param_count floats) */
    const float *x;            /* (batch, in)  input */
    float *y;       /* (batch, out): forward: the output to write; backward: the forward output */
    float *dy;      /* backward: (batch, out) d loss / d y; scratch that may be overwritten */
    float *dx;      /* backward: (batch, in) to write, or NULL (the first layer's is not needed) */
    float *grads;   /* backward: d loss / d params, param_count floats, summed over the batch */
    int accumulate; /* backward: 0 overwrites grads, 1 adds to them */
    void *state;    /* the user_state given to bl_model_add_layer */
    /* The rows are batch / seq_len sequences of seq_len consecutive tokens
     * (a language model's stream, where a layer may mix tokens of one
     * sequence); 1 in the layer trainer, whose rows are samples. */
    int seq_len;
} bl_layer_call_t;

/* A layer defined by callbacks. forward and backward may be called with batch
 * == 0, and backward may write dy's memory (it is scratch after the call). The
 * name string must outlive the model. A callback reports failure by returning a
 * status other than BL_OK; the model's error message then names the layer, its
 * position and the pass. */
typedef struct bl_layer_ops {
    const char *name; /* for messages and logs */
    /* Returns the output width and the parameter count for in_features. */
    bl_status_t (*shape)(void *state, int in_features, int *out_features, size_t *param_count);
    /* Writes the initial parameters. rng_seed is derived from the model's seed
     * and the layer's position, so the same seed gives the same parameters. */
    bl_status_t (*init)(void *state, int in_features, int out_features, float *params,
                        uint64_t rng_seed);
    bl_status_t (*forward)(const bl_layer_call_t *call);
    bl_status_t (*backward)(const bl_layer_call_t *call);
    /* The relative compute cost per sample (e.g. multiply-adds), to plan. */
    double (*cost_hint)(void *state, int in_features, int out_features);
    /* Frees user_state when the model is destroyed; it may be NULL. */
    void (*destroy)(void *state);
} bl_layer_ops_t;

/* One pass of a user layer (bl_layer_ops_t's forward or backward). */
typedef bl_status_t (*bl_layer_fn)(const bl_layer_call_t *call);

/* Fills out with count uniform random floats in [lo, hi) from seed: the
 * deterministic generator that user layers can use in init. */
void bl_fill_uniform(float *out, size_t count, float lo, float hi, uint64_t seed);

/* ---- Model ------------------------------------------------------------- */

typedef struct bl_model bl_model_t;

/* Creates an empty model whose input has in_features columns. */
bl_status_t bl_model_create(bl_runtime_t *rt, int in_features, bl_model_t **out);
void bl_model_destroy(bl_model_t *m);

/* Append a dense layer or a ReLU; only before bl_model_build. A dense layer
 * computes y = x · W^T + b with W (out × in) and b (out), and its initial
 * values follow torch.nn.Linear: U(−1/√in, 1/√in). */
bl_status_t bl_model_add_dense(bl_model_t *m, int out_features);
bl_status_t bl_model_add_relu(bl_model_t *m);
/* Appends a user layer; ops is copied. When the call succeeds and ops->destroy
 * is set, the model owns user_state and destroys it with the model; when the
 * call fails, the caller still owns it. */
bl_status_t bl_model_add_layer(bl_model_t *m, const bl_layer_ops_t *ops, void *user_state);

/* Sets the passes that user layer `layer` (its index in the model) runs on a
 * rank whose device has memory of its own (a GPU): the host passes' call, with
 * every pointer in device memory. Passes that use only the bl_math_* helpers
 * may be given unchanged. Call it before or after bl_model_build; it returns
 * BL_ERR_INVALID_ARG when `layer` is not a user layer or a pass is NULL. A
 * trainer on a GPU rank refuses a user layer without them (BL_ERR_UNSUPPORTED).
 * (README: "API details", "Device passes of user layers") */
bl_status_t bl_model_set_device_ops(bl_model_t *m, int layer, bl_layer_fn forward,
                                    bl_layer_fn backward);

/* Fixes the parameter layout and reserves address space for the parameters
 * and the gradients (one array each, cut into per-layer views). Memory comes
 * with a layer's first use: bl_model_params, bl_model_load_params or a
 * trainer, which holds every layer or, under stage-local memory, its stage's
 * only. Each layer is initialised from seed when it is first held, so the
 * values never depend on which rank holds it. The last layer's output width
 * is the number of classes of the softmax cross-entropy loss. */
bl_status_t bl_model_build(bl_model_t *m, uint64_t seed);

/* Return the layers added, the last layer's output width (the input width while
 * there are none) and the parameter count (0 before bl_model_build); 0 for
 * NULL. */
int bl_model_layer_count(const bl_model_t *m);
int bl_model_out_features(const bl_model_t *m);
size_t bl_model_param_count(const bl_model_t *m);
/* Returns the parameters in file order (see bl_model_save_params); they belong
 * to the model, NULL before bl_model_build or when their memory cannot be had.
 * It holds (and first initialises) every layer, unless a stage-local trainer
 * gave some back: then only that trainer's stage's layers may be read
 * (bl_trainer_layout says which). While a trainer lives, the array
 * may move (the node-local reduction, transport.node_reduce, shares one copy
 * per node) or go stale (a GPU rank trains a device copy): ask again after
 * bl_trainer_create and bl_trainer_destroy, and read it after bl_trainer_run or
 * bl_trainer_sync_params.
 * (README: "API details", "The model's parameters during training") */
float *bl_model_params(bl_model_t *m);

/* Parameter files hold raw little-endian float32: each layer's parameters in
 * order (dense: W as (out × in) row-major, then b (out)), and nothing else.
 * Save writes a temporary file and renames it, so a failed save leaves an
 * existing file intact. Load checks the file's length against the model and
 * changes nothing on failure. Both need every layer: a model cut down by a
 * stage-local trainer gives BL_ERR_INVALID_ARG (save it with
 * bl_trainer_save_params). */
bl_status_t bl_model_save_params(bl_model_t *m, const char *path);
bl_status_t bl_model_load_params(bl_model_t *m, const char *path);

/* ---- Datasets ---------------------------------------------------------- */

typedef struct bl_dataset bl_dataset_t;

/* Opens an IDX image file (uint8, rank ≥ 2: n × d1 × ...) and its IDX label
 * file (uint8, rank 1, n labels), gzip-compressed or not. Pixels are scaled to
 * [0, 1]. With classes == 0 the number of classes is the largest label + 1;
 * with classes > 0 every label must be below it. A malformed input is
 * BL_ERR_FORMAT (or BL_ERR_IO), with a message naming the file and the field. */
bl_status_t bl_dataset_open_idx(bl_runtime_t *rt, const char *images_path, const char *labels_path,
                                int classes, bl_dataset_t **out);

/* Creates a dataset held in memory: x is (count × features), and y holds count
 * labels in [0, classes). Both are copied. */
bl_status_t bl_dataset_from_memory(bl_runtime_t *rt, long count, int features, int classes,
                                   const float *x, const int *y, bl_dataset_t **out);

/* A dataset served by callbacks: get writes sample `index`'s features into x
 * (features floats) and its label into *label; a label outside [0, classes), or
 * none, fails the step with BL_ERR_FORMAT naming the sample. On success the
 * dataset owns state (ops->destroy frees it, when set); on failure the caller
 * still does. */
typedef struct bl_dataset_ops {
    bl_status_t (*get)(void *state, long index, float *x, int *label);
    void (*destroy)(void *state); /* may be NULL */
} bl_dataset_ops_t;
bl_status_t bl_dataset_from_callbacks(bl_runtime_t *rt, long count, int features, int classes,
                                      const bl_dataset_ops_t *ops, void *state, bl_dataset_t **out);

void bl_dataset_destroy(bl_dataset_t *d);
/* Return the number of samples, the features per sample and the number of
 * classes (0 for NULL). */
long bl_dataset_count(const bl_dataset_t *d);
int bl_dataset_features(const bl_dataset_t *d);
int bl_dataset_classes(const bl_dataset_t *d);

/* ---- Trainer ----------------------------------------------------------- */

#define BL_TRAIN_CONFIG_VERSION 7

/* Pipeline schedules. */
typedef enum {
    BL_SCHEDULE_GPIPE = 0, /* all forwards, then all backwards (fill and drain) */
    BL_SCHEDULE_1F1B = 1   /* after a warm-up, one forward then one backward: stage s holds at
                              most S − s micro-batches of activations */
} bl_schedule_t;

/* The optimizer: SGD with PyTorch's conventions
 * (g ← g + wd·w; v ← μ·v + g; w ← w − lr·v). */
typedef struct bl_optimizer_config {
    float lr;           /* learning rate (> 0) */
    float momentum;     /* μ, in [0, 1); no dampening */
    float weight_decay; /* L2 weight decay added to the gradient (>= 0) */
} bl_optimizer_config_t;

/* Pipelines: the job's P ranks form D = P / stages pipelines, and rank r is
 * stage r % S of pipeline r / S. Each pipeline cuts its slice of the batch into
 * micro_batches even slices (the first ones take one row more) and runs them in
 * the schedule's order. Gradients are sums over the micro-batches, so S, M and
 * the schedule never change the math. */
typedef struct bl_pipeline_config {
    int stages;        /* S >= 1 */
    int micro_batches; /* M, 1..32767 */
    bl_schedule_t schedule;
    /* 1: each rank holds memory for its own stage's layers only (their
     * parameters, gradients and momentum); the rest of the model's arrays is
     * address space without memory, which a migration fills on the receiving
     * stage and gives back on the sending one. Evaluation then runs through
     * the pipeline, and bl_trainer_save_params writes the parameter file from
     * the stages. bl_model_params still returns the whole array, but only
     * this stage's layers (bl_trainer_layout) may be read. 0: every rank holds
     * every layer, and the end of a run makes every rank's model whole. It
     * changes nothing with one stage. The language-model trainer reads it
     * too: a stage then holds its units' parameters, gradients and AdamW
     * moments only, and its model file and checkpoints are written stage by
     * stage (ballast_lm.h). (README: "Stage-local memory") */
    int stage_local;
} bl_pipeline_config_t;

/* The first plan (README: "Concepts"). Arrays are copied; NULL gives the default. */
typedef struct bl_plan_config {
    /* The samples of each step's batch that each pipeline computes, shard_count
     * = D values >= 0 summing to the batch; by default as even as possible
     * within the caps. A pipeline with a 0 shard still joins every reduction. */
    const int *shards;
    int shard_count;
    /* Caps that the policies never cross (memory limits): shard_cap_count = D
     * values each, Σ min <= batch <= Σ max; by default 0 and the batch. Given
     * shards must respect them. */
    const int *shard_min;
    const int *shard_max;
    int shard_cap_count;
    /* The stage map: stage s owns the contiguous layers [stage_first[s],
     * stage_first[s + 1]) (stage_count = S entries, from 0, ascending); by
     * default the split that balances the layers' cost hints. */
    const int *stage_first;
    int stage_count;
} bl_plan_config_t;

/* Rebalancing (README: "Adaptive rebalancing"). Every rebalance_every steps,
 * rank 0 feeds the window's telemetry to the policy, and every rank applies the
 * plan it broadcasts at the same step boundary: new shards without pipelines, a
 * new stage map with them (layers migrate with their parameters and momentum,
 * only when the move pays back within repartition_horizon steps). The arrays
 * are copied. */
typedef struct bl_balance_config {
    const char *policy;           /* NULL or "none", "static", "proportional", "bandit", "rl" */
    int rebalance_every;          /* steps per control window (>= 1) */
    const char *policy_file;      /* rl: a Q-table to start from (ballast-sim's), or NULL */
    double repartition_horizon;   /* steps (> 0) */
    double repartition_threshold; /* proportional stage policy: least relative gain, [0, 1) */
    /* A scripted stage plan, which takes precedence over the policy at its
     * steps: after step stage_plan_steps[k] (ascending, >= 0) the map becomes
     * stage_plan_first[k·S … k·S + S − 1], for k < stage_plan_count. */
    const long *stage_plan_steps;
    const int *stage_plan_first;
    int stage_plan_count;
} bl_balance_config_t;

/* How data and gradients move. The choices never change the math beyond the
 * order of float32 sums. */
typedef struct bl_transport_config {
    double bucket_mb; /* gradient all-reduce bucket size in MiB, (0, 4096] */
    /* 1: data parallelism on one node, without pipelines or device ranks, sums
     * the gradients and updates through MPI shared memory, each rank its slice,
     * and the model's parameter array is the node's shared one while the
     * trainer lives (see bl_model_params); 0: always all-reduce. */
    int node_reduce;
    /* 1: a group of CUDA GPUs, one rank per GPU (a data-parallel group or a
     * pipeline), moves device memory directly with NCCL; 0: every group goes
     * through host memory with MPI, as a mixed group does. */
    int nccl;
    /* For a GPU rank: 1 keeps an in-memory training set in device memory when
     * it fits and cuts each micro-batch out there; 0 reads each micro-batch on
     * the host and uploads it. */
    int data_on_device;
    /* 1: ZeRO-1, which shards the SGD momentum over each stage's data-parallel
     * group: each replica sums and updates only its slice of the stage's
     * parameters (a reduce-scatter of the gradients, then an all-gather of the
     * new parameters) and keeps memory for its slice of the momentum only; it
     * takes precedence over node_reduce, whose parameters it gives bit for
     * bit. Host ranks only. 0 (the default): every replica keeps the stage's
     * whole momentum. */
    int zero;
} bl_transport_config_t;

/* What the trainer writes and watches. */
typedef struct bl_diagnostics_config {
    const char *telemetry_path; /* a file where rank 0 writes one JSON object per step, or NULL */
    const char *trace_path;     /* a file where rank 0 writes Chrome trace events, or NULL */
    /* Hang detection: the seconds after which every wait of the library, once
     * the trainer exists, gives up with BL_ERR_TIMEOUT naming the step, the
     * operation and the ranks that had not arrived; the only safe continuation
     * is then MPI_Abort. 0 waits forever.
     * (README: "API details", "Hang detection") */
    double timeout_s;
} bl_diagnostics_config_t;

/* A trainer's configuration, grouped by concern. Start from
 * BL_TRAIN_CONFIG_INIT, so that new fields keep their defaults. */
typedef struct bl_train_config {
    int version;   /* BL_TRAIN_CONFIG_VERSION */
    int batch;     /* global batch B (samples per step) */
    uint64_t seed; /* the sampler's seed */
    int shuffle;   /* 1: a seeded permutation per epoch; 0: file order */
    bl_optimizer_config_t optimizer;
    bl_pipeline_config_t pipeline;
    bl_plan_config_t plan;
    bl_balance_config_t balance;
    bl_transport_config_t transport;
    bl_diagnostics_config_t diagnostics;
    /* > 0: refuse to start (BL_ERR_NO_MEM) when a rank's accounted bytes of
     * parameters, gradients, optimizer state and activations exceed it; 0:
     * the limit of the rank's cgroup (memory.max) when one is set, else none.
     * (README: "Memory accounting") */
    double mem_limit_bytes;
} bl_train_config_t;

#define BL_TRAIN_CONFIG_INIT                                                                       \
    {                                                                                              \
        .version = BL_TRAIN_CONFIG_VERSION, .batch = 128, .seed = 1, .shuffle = 1,                 \
        .optimizer = {.lr = 0.05f, .momentum = 0.9f, .weight_decay = 0.0f},                        \
        .pipeline = {.stages = 1, .micro_batches = 1, .schedule = BL_SCHEDULE_1F1B},               \
        .balance = {.rebalance_every = 10,                                                         \
                    .repartition_horizon = 200.0,                                                  \
                    .repartition_threshold = 0.02},                                                \
        .transport = {.bucket_mb = 4.0, .node_reduce = 1, .nccl = 1, .data_on_device = 1},         \
    }

typedef struct bl_trainer bl_trainer_t;

/* Creates a trainer over a built model and a training set from the same
 * runtime; it owns neither. Collective: with several ranks it trains in
 * parallel, and it first checks that every rank has the same configuration,
 * model, dataset header and initial parameters (BL_ERR_MISMATCH naming the rank
 * and the field if not). A bad shard plan, or a config of versions 1 to 5
 * (ballast 0.1's flat struct), is BL_ERR_INVALID_ARG naming the problem. The
 * momentum (zero) is allocated here, so load parameters into the model first. */
bl_status_t bl_trainer_create(bl_runtime_t *rt, bl_model_t *m, bl_dataset_t *train,
                              const bl_train_config_t *cfg, bl_trainer_t **out);
void bl_trainer_destroy(bl_trainer_t *t);

typedef struct bl_step_info {
    long step;  /* the 0-based global step just finished */
    long epoch; /* the step's epoch */
    long steps_per_epoch;
    double loss;       /* the mean loss over the step's global batch */
    double accuracy;   /* the fraction of the step's batch classified right */
    double seconds;    /* the step's wall time */
    long plan_version; /* the plan version (shards, map) the NEXT step runs; +1 per change */
    int plan_changed;  /* the controller changed the shards after this step */
    int stages_moved;  /* the layers that changed stage after this step (pipelines) */
    /* For progress displays, on rank 0 only (0 and NULL elsewhere) and only
     * when telemetry is gathered (a policy or a telemetry file): the
     * load-balance efficiency (mean / max compute) of the latest step whose
     * records have arrived (one step late; 0 before), and the policy's latest
     * action ("hold", "move 0.5", "repartition", ...; NULL before the first). */
    double lb_efficiency;
    const char *decision;
    /* Language models (bl_lm_trainer_run) only, 0 elsewhere: the tokens of
     * the step's global batch (B · T), the learning rate that the step's
     * update used, and the global gradient norm before clipping. */
    long tokens;
    double lr;
    double grad_norm;
} bl_step_info_t;

/* The step callback, called after every step on every rank. A non-zero return
 * stops the run after that step; bl_trainer_run then ends as after its last
 * step (BL_OK unless that fails). With several ranks the callback must return
 * the same value everywhere, or the ranks fall out of step: decide from fields
 * that every rank shares (lb_efficiency and decision are rank 0's alone). */
typedef int (*bl_step_cb)(const bl_step_info_t *info, void *arg);

/* Runs `steps` more steps from where the trainer is; cb may be NULL.
 * Collective. When it returns, every rank's model holds the current parameters
 * of every layer, whatever the layout (pipeline stages send theirs to the rest
 * of their pipeline), so bl_model_save_params works on any rank; under
 * stage-local memory (pipeline.stage_local) each rank's model holds its
 * stage's current layers only, and bl_trainer_save_params writes the file. It returns
 * BL_ERR_INVALID_ARG for negative steps, and BL_ERR_MISMATCH when the replicas
 * of a stage differ. */
bl_status_t bl_trainer_run(bl_trainer_t *t, long steps, bl_step_cb cb, void *cb_arg);

/* Brings the host's view of the training state up to date on every rank: the
 * model's parameters (bl_model_params) and the momentum (bl_trainer_momentum).
 * A GPU rank downloads them; a pipelined job sends every stage's layers to the
 * rest of its pipeline (under stage-local memory, a rank's own layers only are
 * brought up to date; under ZeRO-1, the momentum of its slice only).
 * bl_trainer_run does it when it returns, and a checkpoint save and an
 * evaluation do what they need; call it in a step callback before reading or
 * saving the parameters. Collective. */
bl_status_t bl_trainer_sync_params(bl_trainer_t *t);

/* Writes the trainer's current parameters to path as a parameter file, the
 * same bytes that bl_model_save_params writes for the whole model, without any
 * rank reading parameters outside its own stage (so it works under
 * pipeline.stage_local): rank 0 makes a temporary file beside path, the rank of
 * pipeline 0 of each stage writes that stage's layers into it (a GPU rank
 * downloads them first; the file system must be one that those ranks share,
 * as for checkpoints), and rank 0 renames it onto path and syncs the
 * directory. Collective: every rank must call it, with the same path. Returns
 * BL_OK on every rank, or the same failure on every rank (BL_ERR_IO for a file
 * that cannot be created, written or renamed) with bl_last_error naming path
 * and the step that failed; a failure removes the temporary file and leaves an
 * existing file at path intact. BL_ERR_INVALID_ARG for a NULL argument. */
bl_status_t bl_trainer_save_params(bl_trainer_t *t, const char *path);

/* Loads a parameter file (bl_model_save_params' format) into the trainer's
 * model before training: every rank reads only the layers it holds (its
 * stage's under pipeline.stage_local; a GPU rank uploads them), so no rank
 * ever holds the whole model. Collective; call it after bl_trainer_create and
 * before bl_trainer_resume (which wins) and bl_trainer_run. Returns BL_OK on
 * every rank, or a failure on every rank (BL_ERR_IO, BL_ERR_FORMAT for a file
 * of another model's length or a value that is not finite, BL_ERR_NO_MEM)
 * with bl_last_error naming path. A bad file fails alike everywhere and
 * changes no model; after a read error on some ranks only, the others hold
 * the file's values, so a trainer whose load failed should not train on.
 * BL_ERR_INVALID_ARG for a NULL argument. */
bl_status_t bl_trainer_load_params(bl_trainer_t *t, const char *path);

/* An emulated slow rank, for tests and demos: from step from_step to step
 * to_step (inclusive; -1: to the end), the rank's compute takes `factor` times
 * as long, its measured compute time and then the extra time asleep. It changes
 * timings only, never the math. (README: "API details", "Test and demo hooks") */
typedef struct bl_slowdown {
    int rank;
    double factor; /* >= 1 */
    long from_step;
    long to_step;
} bl_slowdown_t;

/* A test and demo hook: sets `count` emulated slow ranks from the next step on.
 * The list is copied and replaces any set before; count 0 removes them. Each
 * entry must name a rank of the job, a finite factor >= 1 and a step range from
 * >= 0, and a bad one is BL_ERR_INVALID_ARG naming it. Collective: every rank
 * must pass the same list (BL_ERR_MISMATCH if not). */
bl_status_t bl_trainer_emulate_slowdown(bl_trainer_t *t, const bl_slowdown_t *list, int count);

/* Tells the library that the process has been asked to stop (call it from a
 * SIGTERM or SIGUSR1 handler: it is async-signal-safe): from then on the
 * emulated slowdowns of every trainer of the process sleep no more, so the
 * steps until the ranks agree to stop run at their real speed and the job
 * stops within a launcher's grace period (Open MPI's mpirun gives its ranks
 * 1 s after forwarding SIGTERM). The math is unchanged. */
void bl_interrupt_slowdowns(void);

/* A test and demo hook: from the next step on, the controllers see times
 * modelled from each layer's multiply-adds (seconds_per_op each), not measured
 * ones, so decisions depend on the plan alone, runs under any policy repeat bit
 * for bit, and a resume continues them exactly. 0 returns to measured times; a
 * negative or non-finite value is BL_ERR_INVALID_ARG. Call it on every rank
 * alike, before bl_trainer_resume.
 * (README: "API details", "Test and demo hooks") */
bl_status_t bl_trainer_emulate_timing(bl_trainer_t *t, double seconds_per_op);

/* Return the next step to run (the steps already taken) and the steps of an
 * epoch, floor(count / batch): an epoch's last partial batch is dropped, so
 * every step has B samples. 0 for NULL. */
long bl_trainer_step(const bl_trainer_t *t);
long bl_trainer_steps_per_epoch(const bl_trainer_t *t);

/* Where this rank sits in the job's grid. */
typedef struct bl_layout_info {
    int data_parallel; /* D: pipelines (data-parallel groups) */
    int stages;        /* S */
    int replica;       /* this rank's pipeline, 0..D−1 */
    int stage;         /* this rank's stage, 0..S−1 */
    int first_layer;   /* this stage's layers are [first_layer, last_layer) */
    int last_layer;
    int micro_batches;  /* M */
    int stash_capacity; /* the micro-batches the stage can hold between forward and backward */
    int peak_stashed;   /* the most it has held at once so far */
} bl_layout_info_t;

/* Fills *out for this rank; returns BL_ERR_INVALID_ARG for NULL arguments. */
bl_status_t bl_trainer_layout(const bl_trainer_t *t, bl_layout_info_t *out);

/* Saves the trainer's state into dir/ckpt-<step>/, keeping the newest `keep`
 * checkpoints (0: all); path (n bytes; may be NULL with n 0) receives the
 * checkpoint's directory. Collective; a step callback may call it. A failed
 * save leaves the previous checkpoints as they were. The state holds the
 * parameters, the momentum, the next step, the seed, batch and shuffle that fix
 * the sampler, the plan (shards, stage map) and rank 0's policies' learned
 * state (format and guarantees: runtime/io/checkpoint.h; README: "Checkpoints,
 * resume and preemption"). */
bl_status_t bl_trainer_save_checkpoint(bl_trainer_t *t, const char *dir, int keep, char *path,
                                       size_t n);

/* Loads the newest complete and valid checkpoint in dir (skipping, with a
 * warning, any that is not) and continues from it: the next run starts at its
 * step with its parameters, momentum and plan (which wins over the config's),
 * bit for bit as if never stopped on the same layout (the layout may differ).
 * *resumed says whether it resumed (0 when dir has no checkpoint). Collective;
 * call it before bl_trainer_run. BL_ERR_MISMATCH: a checkpoint of another
 * model, seed, batch or shuffle. (README: "API details", "Resuming") */
bl_status_t bl_trainer_resume(bl_trainer_t *t, const char *dir, int *resumed);

/* Returns the stage map in force, first[0..S], where stage s owns the layers
 * [first[s], first[s+1]); it changes when layers migrate. The array belongs to
 * t; NULL for a NULL t. */
const int *bl_trainer_stage_map(const bl_trainer_t *t);

/* Returns the optimizer state, the SGD momentum: one float per parameter in the
 * model's parameter layout (*count of them). In a pipelined job a rank's
 * entries are current for its stage's layers only, and under stage-local
 * memory no other entry may be read; on a GPU rank they are
 * current when the parameters are (see bl_model_params). Under ZeRO-1
 * (transport.zero) a rank holds and updates only its slice of its stage's
 * momentum (the stage's parameters cut into D even contiguous slices in the
 * rank order of its data-parallel group), and no other entry may be read;
 * a checkpoint holds the whole. The array belongs to t; NULL for a NULL t. */
const float *bl_trainer_momentum(const bl_trainer_t *t, size_t *count);

/* Computes the mean loss and accuracy of the model over every sample of d.
 * Collective; it may be called from a step callback in the middle of a run. A
 * pipelined job evaluates through its pipelines, forward only: each pipeline
 * takes a contiguous share of d, every stage runs its own layers and passes the
 * activations on, and the last stage computes the loss, so no rank needs other
 * stages' layers (stage-local memory works as well). The figures equal a
 * one-process evaluation's up to the order of the float sums. */
bl_status_t bl_trainer_evaluate(bl_trainer_t *t, bl_dataset_t *d, double *loss, double *accuracy);

#ifdef __cplusplus
}
#endif

/* The language-model API (GPT-2, tokens, AdamW, bf16): ballast_lm.h. */
#include "ballast_lm.h"

#endif /* BALLAST_H */
