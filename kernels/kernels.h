/* The device-agnostic kernel interface: the math one training step needs.
 * kernels/ implements it on the CPU with OpenBLAS; cuda/ will implement the
 * same table on GPUs. Kernels know nothing of MPI, plans or the runtime.
 *
 * Conventions: row-major float32; `batch` rows; counts are element counts.
 * Gradients are per-sample SUMS (not means): the optimizer scales by 1/B,
 * so any split of a batch sums to the same gradient. */
#ifndef BL_KERNELS_H
#define BL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef struct bl_kernels {
    const char *name;

    /* C (m×n) = alpha · op(A) · op(B) + beta · C; op per trans_* (0/1). */
    void (*gemm)(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc);

    /* y (batch, out) = x (batch, in) · W^T + b, W (out, in), b (out);
     * then y = max(y, 0) when relu is set. y starts as the bias and the
     * product adds onto it, as torch.addmm computes nn.Linear. */
    void (*dense_forward)(int batch, int in, int out, const float *x, const float *w,
                          const float *b, float *y, int relu);

    /* Backward of dense_forward. dy (batch, out) is d loss / d y; when relu
     * is set, y is the forward output and dy is masked in place by y > 0
     * first (dy is scratch after the call). Then:
     *   dW (out, in) (+)= dy^T · x,  db (out) (+)= column sums of dy,
     *   dx (batch, in) = dy · W, skipped when dx is NULL.
     * accumulate: 0 overwrites dW and db, 1 adds to them. y may be NULL
     * when relu is not set (it is not read). */
    void (*dense_backward)(int batch, int in, int out, const float *x, const float *w,
                           const float *y, float *dy, float *dx, float *dw, float *db, int relu,
                           int accumulate);

    /* y = max(x, 0) over count elements (x == y allowed). */
    void (*relu_forward)(size_t count, const float *x, float *y);
    /* dx = dy where y > 0, else 0 (dy == dx allowed). */
    void (*relu_backward)(size_t count, const float *y, const float *dy, float *dx);

    /* Softmax cross-entropy over logits (batch, classes) with labels in
     * [0, classes). Numerically stable (max subtracted). Writes
     * dlogits (batch, classes) = softmax − onehot (per-sample, unscaled),
     * adds the number of rows whose argmax equals the label to *correct
     * (ties: lowest index), and returns the SUM of per-sample losses.
     * dlogits may be NULL (evaluation), and so may correct. classes >= 1.
     * The caller divides by B for the batch mean. */
    double (*softmax_xent)(int batch, int classes, const float *logits, const int *labels,
                           float *dlogits, long *correct);

    /* SGD with momentum and weight decay, PyTorch's convention, over count
     * parameters, in one pass:
     *   g = grad_scale · grad + weight_decay · w
     *   v = momentum · v + g
     *   w = w − lr · v
     * w, v and grad must not overlap. */
    void (*sgd_update)(size_t count, float *w, float *v, const float *grad, float grad_scale,
                       float lr, float momentum, float weight_decay);

    /* Rows of a sample table: for r in [0, rows), dst row r (cols floats)
     * = src row idx[r] and labels_dst[r] = labels_src[idx[r]]. src or dst
     * NULL: the labels only; labels_src or labels_dst NULL: the rows only.
     * idx holds sample numbers (int64). A GPU rank keeps the training set
     * in device memory and cuts each micro-batch out of it with this. */
    void (*gather_rows)(int rows, int cols, const float *src, const int64_t *idx, float *dst,
                        const int *labels_src, int *labels_dst);

    /* ---- A GPT-2-style transformer (llm.c's shapes): B batch, T time,
     * C channels, NH heads, V vocabulary, Vp padded vocabulary. Gradients
     * are per-token SUMS; every buffer is row-major float32. The CPU and
     * CUDA tables have them; a table without them leaves them NULL. */

    /* out (B, T, C): out[b, t] = wte[tokens[b, t]] + wpe[t], with wte (Vp, C),
     * wpe (maxT, C), maxT >= T. Each token must lie in [0, Vp); a token
     * outside it is the caller's bug (the data reader validates tokens).
     * out must not overlap the tables. */
    void (*embedding_forward)(int B, int T, int C, const int32_t *tokens, const float *wte,
                              const float *wpe, float *out);
    /* Backward of embedding_forward: adds (+=) each row dout[b, t] to
     * dwte[tokens[b, t]] and to dwpe[t]; a token that occurs several times
     * receives the sum of its rows. dout must not overlap dwte or dwpe. */
    void (*embedding_backward)(int B, int T, int C, const int32_t *tokens, const float *dout,
                               float *dwte, float *dwpe);

    /* Layer normalisation of rows (rows, C): out = (inp − mean) · rstd ·
     * weight + bias, with the biased variance and eps 1e-5 (as PyTorch),
     * weight and bias (C). Writes the mean (rows) and rstd (rows) that the
     * backward reads; either may be NULL when no backward follows. out
     * must not overlap inp. */
    void (*layernorm_forward)(int rows, int C, const float *inp, const float *weight,
                              const float *bias, float *out, float *mean, float *rstd);
    /* Backward of layernorm_forward, with the forward's inp, mean and rstd.
     * dweight (C) and dbias (C) always accumulate (+=). dinp (rows, C) is
     * overwritten when accumulate is 0 and added to when it is 1 (a
     * residual stream). dinp must not overlap dout or inp. */
    void (*layernorm_backward)(int rows, int C, const float *dout, const float *inp,
                               const float *weight, const float *mean, const float *rstd,
                               float *dinp, float *dweight, float *dbias, int accumulate);

    /* y = 0.5 · x · (1 + tanh(sqrt(2/π) · (x + 0.044715 · x³))) over count
     * elements, GPT-2's tanh approximation (x == y allowed). */
    void (*gelu_forward)(size_t count, const float *x, float *y);
    /* dx = dy · gelu'(x), overwritten, where x is the forward's input.
     * dy == dx is allowed; x must not overlap dx. */
    void (*gelu_backward)(size_t count, const float *x, const float *dy, float *dx);

    /* Causal multi-head self-attention. qkv (B, T, 3C) holds the query, the
     * key and the value of each token side by side ([q | k | v]), each cut
     * into NH heads of C/NH channels (C must be a multiple of NH). Writes
     * att (B, NH, T, T), the softmax of q·k / sqrt(C/NH) over keys at or
     * before each query (every entry above the diagonal is exactly 0), and
     * out (B, T, C) = att · v, the heads side by side. out and att must not
     * overlap each other or qkv. */
    void (*attention_forward)(int B, int T, int C, int NH, const float *qkv, float *out,
                              float *att);
    /* Backward of attention_forward, with the forward's qkv and att:
     * overwrites the whole of dqkv (B, T, 3C) from dout (B, T, C). scratch
     * is a caller's buffer of at least T · T floats; its contents on entry
     * are ignored and are unspecified on return. No two of dout, qkv, att,
     * dqkv and scratch may overlap. */
    void (*attention_backward)(int B, int T, int C, int NH, const float *dout, const float *qkv,
                               const float *att, float *dqkv, float *scratch);

    /* Cross-entropy of rows (rows, Vp) of logits, over the first V columns
     * only (V >= 1; the columns [V, Vp) are padding and are never read).
     * Numerically stable (max subtracted). Returns the SUM of the per-row
     * losses. When dlogits (rows, Vp) is not NULL, writes softmax − onehot
     * (unscaled) in its first V columns and exactly 0 in the padding. Each
     * target must lie in [0, V); one outside it is the caller's bug (memory
     * is read and written out of bounds; the data reader validates tokens). */
    double (*vocab_xent)(int rows, int V, int Vp, const float *logits, const int32_t *targets,
                         float *dlogits);

    /* AdamW over count parameters, torch.optim.AdamW's semantics, in one
     * pass, for step t >= 1 (the first update is step 1):
     *   g = grad_scale · grad;  w = w · (1 − lr · weight_decay)
     *   m = beta1 · m + (1 − beta1) · g;  v = beta2 · v + (1 − beta2) · g · g
     *   w = w − (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps)
     * with bc1 = 1 − beta1^t and bc2 = 1 − beta2^t, computed in double once
     * per call. m and v start at 0. w, m, v and grad must not overlap. */
    void (*adamw_update)(size_t count, float *w, float *m, float *v, const float *grad,
                         float grad_scale, float lr, float beta1, float beta2, float eps,
                         float weight_decay, long t);

    /* The sum of x[i]² over count elements, accumulated in double (a
     * gradient's squared norm, for global norm clipping); 0 for count 0. */
    double (*sum_squares)(size_t count, const float *x);

    /* y = softmax of each row of x (rows, cols), the maximum subtracted;
     * x == y is allowed. Backward: dx = y · (dy − Σ_j y_j · dy_j) per row,
     * from the forward's y; dy == dx is allowed, y must not overlap dx. For
     * user layers (bl_math_softmax); NULL in a table without them. */
    void (*softmax_rows)(int rows, int cols, const float *x, float *y);
    void (*softmax_rows_backward)(int rows, int cols, const float *y, const float *dy, float *dx);
} bl_kernels_t;

/* The CPU implementation (OpenBLAS). */
extern const bl_kernels_t bl_cpu_kernels;

/* bf16 autocast: a table whose products take their two operands rounded
 * to bfloat16 (bf16_round.h, ties to even) and accumulate in fp32, the
 * arithmetic of a GPU's bf16 tensor-core GEMMs with fp32 accumulation;
 * every other kernel, and every buffer, stays fp32 (master weights,
 * optimizer state, the loss). The rounded products are:
 *   gemm: A and B;  dense_forward: x and W (the bias is added in fp32);
 *   dense_backward: dy and x for dW, dy and W for dx (db sums the fp32 dy);
 *   attention_forward: q and k for the scores, the probabilities and v for
 *     the output (att keeps the fp32 probabilities);
 *   attention_backward: att and dout for dv, dout and v for datt, the
 *     scores' gradient and k (q) for dq (dk).
 * bl_cpu_bf16_kernels is the mirror device's twin of the CUDA backend's
 * bf16 table: OpenBLAS sgemm on rounded copies of the operands, so it is
 * the reference that the GPU's bf16 products are tested against. It
 * allocates its copies on the heap; when that fails, the failure is
 * recorded as the mirror device's (reported by its finish) and the
 * product's output is unspecified. */
extern const bl_kernels_t bl_cpu_bf16_kernels;

/* The memory of a device whose kernel table does not work on host memory
 * (a GPU): the pointers given to such a table come from alloc. Copies are
 * ordered with the table's kernels (they run on the same stream): an
 * upload never overwrites a buffer a queued kernel still reads, and
 * to_host returns once the data has arrived, after every kernel queued
 * before it. The host buffer of to_device may be reused once it returns.
 * Failures are recorded like the kernels' and reported by finish (or
 * finish_compute); the calls also return 0 on success and -1 on failure. */
typedef struct bl_device_memory {
    const char *name;
    void *(*alloc)(size_t nbytes); /* NULL on failure; nbytes 0 gives a unique pointer */
    void (*release)(void *ptr);    /* NULL is a no-op */
    int (*to_device)(void *dst, const void *src, size_t nbytes);
    int (*to_host)(void *dst, const void *src, size_t nbytes);
    int (*copy)(void *dst, const void *src, size_t nbytes); /* device to device */
    int (*zero)(void *dst, size_t nbytes);
    /* Waits for every kernel and copy queued so far, the downloads
     * started with to_host_start too: 0, or -1 with the first failure
     * since the last finish or finish_compute in err (then cleared). */
    int (*finish)(char *err, size_t errlen);
    /* Waits for the kernels and copies queued so far, but not for the
     * downloads started with to_host_start, which run on a queue of their
     * own (they may still be in flight after it, and it does not make
     * them arrive): 0, or -1 with the first failure in err (then
     * cleared), as finish. For timing a layer's kernels while earlier
     * downloads overlap them. */
    int (*finish_compute)(char *err, size_t errlen);
    /* The device's free and total memory in bytes: 0, or -1 when it cannot
     * tell (then nothing is written). */
    int (*room)(size_t *free_bytes, size_t *total_bytes);

    /* Page-locks nbytes of host memory at ptr (allocated by the caller),
     * so copies between it and the device run without a bounce buffer and
     * without holding the host: 0, or -1 when it cannot (the memory stays
     * pageable and works as before; nothing is recorded). unpin undoes it
     * (NULL is a no-op); call finish first. An upload (to_device) from
     * pinned memory is queued, not staged: the host buffer must not
     * change until the stream has run the copy (a later finish or
     * finish_compute, or a later download's arrival, says it has). */
    int (*pin)(void *ptr, size_t nbytes);
    void (*unpin)(void *ptr);
    /* Starts a download that overlaps the work queued after it: the copy
     * runs on a queue of its own once every kernel and copy queued before
     * the call is done. Returns the download's number (>= 1; each call's
     * is one more than the last's), or -1 on failure (recorded). dst
     * (pinned, for the copy to be asynchronous) must not be read until
     * `arrived` says the download has arrived. */
    long (*to_host_start)(void *dst, const void *src, size_t nbytes);
    /* Whether download `number` and every one started before it have
     * arrived: 1; 0 when not yet (only with wait 0); -1 on failure
     * (recorded; a number never started is a failure). wait 1 blocks
     * until they have. */
    int (*arrived)(long number, int wait);
} bl_device_memory_t;

/* A device made of the CPU kernels on memory of its own (malloc'd, moved
 * with memcpy): the "mirror" device. A rank that computes on it moves its
 * data exactly as a GPU rank does (parameters uploaded, batches staged,
 * gradients downloaded for MPI), so tests exercise that path without a
 * GPU. Its memory is host memory, so host code may also read it.
 * A download started with to_host_start is held back: its bytes are
 * copied when `arrived` is asked about it a second time (the first answer
 * is always "not yet"), or by finish (not by finish_compute), so a runtime that reads the host
 * buffer before the arrival reads stale bytes and its tests fail. The
 * copy reads the source as it is then: the runtime must not write the
 * source before the arrival either (a GPU's copy reads it at its place in
 * the queue). Its room() says it cannot tell, unless the environment sets
 * BALLAST_MIRROR_MEMORY_MB: then it poses as a device of that many MiB,
 * all free (tests of what the runtime does when a device is full). */
extern const bl_device_memory_t bl_mirror_memory;

/* SGD over the sum of several gradient arrays, in one pass: for each of
 * count parameters, grad = grads[0][i] + grads[1][i] + ... (in that order),
 * then sgd_update's formula. The node-local reduction (runtime/
 * node_reduce.c) runs it on each rank's slice of gradients that all ranks
 * of a node share, so summing and updating read memory once. CPU only. */
void bl_cpu_sgd_update_summed(size_t count, float *w, float *v, const float *const *grads,
                              int ngrads, float grad_scale, float lr, float momentum,
                              float weight_decay);

/* Sets OpenBLAS's thread count (n > 0; other values are ignored). This is
 * a process-wide OpenBLAS setting: it also affects the caller's own BLAS
 * calls, which is why the runtime only sets it when asked (blas_threads). */
void bl_cpu_set_threads(int n);

#endif /* BL_KERNELS_H */
