/* The process's CUDA context, shared by the backend's .cu files: the
 * compute stream, the comm stream and the two events that order them, the
 * cuBLAS handle, small device scratch and the recorded first failure.
 * Internal to cuda/. */
#ifndef BL_CUDA_CONTEXT_H
#define BL_CUDA_CONTEXT_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

/* Downloads in flight at once (memory.cu): starting one more waits for
 * the oldest. A step starts one per gradient bucket. */
enum { BL_CUDA_DOWNLOADS = 64 };

typedef struct bl_cuda_context {
    int ready;
    int device;
    cudaStream_t stream; /* compute: kernels, cuBLAS, uploads (a blocking stream) */
    /* NCCL's work (nccl.cu). Non-blocking: it never waits for the legacy
     * default stream by itself; everything it is ordered after or before
     * comes through the two events and the compute stream (which does wait
     * for the legacy stream, so a plain cudaMemcpy upload reaches it). */
    cudaStream_t comm_stream;
    cudaEvent_t compute_ready; /* recorded on stream, waited on by comm_stream */
    cudaEvent_t comm_ready;    /* recorded on comm_stream, waited on by stream */
    /* Downloads that overlap compute (memory.cu's to_host_start): a
     * non-blocking stream of their own, ordered after the compute stream
     * by copy_after; download n's arrival is event downloaded[n % ring]
     * (the ring holds the last BL_CUDA_DOWNLOADS started). */
    cudaStream_t copy_stream;
    cudaEvent_t copy_after;
    cudaEvent_t downloaded[BL_CUDA_DOWNLOADS];
    long downloads_started; /* the last download's number */
    long downloads_arrived; /* downloads 1..downloads_arrived are known to have arrived */
    cublasHandle_t blas;
    double *row_loss; /* device (row_cap): softmax_xent's per-row losses */
    int *row_hit;     /* device (row_cap): 1 where a row's argmax is its label */
    size_t row_cap;
    double *totals; /* device (2): the loss sum and the hit count */
    float *ones;    /* device (ones_cap): 1.0f each, column sums as a product */
    size_t ones_cap;
    /* device (attn_cap floats): attention's scratch (attention.cu), the
     * heads of q, k, v and dout cut out as (B, NH, T, hs) arrays and the
     * backward's score gradients (B, NH, T, T), so every (batch, head)
     * pair runs in one batched product. Grown on demand (in stream order,
     * where the device has memory pools), never shrunk. */
    float *attn_scratch;
    size_t attn_cap;
    /* device (each *_bytes): the element-wise transformer kernels'
     * scratch, grown on demand by bl_cuda_grow, never shrunk:
     * embedding_backward's token sort (embedding.cu: the sorted tokens,
     * their positions and CUB's temporary storage), layernorm_backward's
     * column partial sums (layernorm.cu) and sum_squares's block sums
     * (adamw.cu). */
    void *sort_scratch;
    size_t sort_bytes;
    void *colsum_scratch;
    size_t colsum_bytes;
    void *sumsq_scratch;
    size_t sumsq_bytes;
    /* device (bf16_bytes): the bf16 products' operands (gemm_bf16.cu),
     * each product's A and B rounded to bfloat16 into contiguous copies,
     * A's first and B's after it. Grown on demand by bl_cuda_grow, never
     * shrunk; reused by every bf16 product, in stream order. */
    void *bf16_scratch;
    size_t bf16_bytes;
    char failure[256]; /* the first failed call since the last check, or "" */
} bl_cuda_context_t;

extern bl_cuda_context_t bl_cuda_ctx;

/* Records `what` failing with CUDA's error, if it is the first. Returns
 * whether the call succeeded. */
int bl_cuda_ok(cudaError_t e, const char *what);
int bl_cublas_ok(cublasStatus_t s, const char *what);

/* After a stream or event query answered cudaErrorNotReady: the runtime
 * may keep that as its last error too; it is cleared (only that one), so
 * bl_cuda_check does not take it for a failed launch. */
void bl_cuda_forget_not_ready(void);

/* Rows the per-row scratch and the ones vector hold from bl_cuda_init on:
 * a growth later waits for the GPU and frees memory, and cudaFree waits
 * for the whole device, NCCL's transfers in flight included. */
enum { BL_CUDA_ROWS_AT_START = 1 << 16 };

/* Makes the per-row scratch hold `rows` rows; 0 on failure (recorded). */
int bl_cuda_row_scratch(size_t rows);
/* Makes ones hold at least `count` ones; 0 on failure (recorded). */
int bl_cuda_ones(size_t count);
/* Makes the device buffer *buf (of *cap bytes) hold at least nbytes: a
 * growth at least doubles, waits for the compute stream (queued kernels
 * may still read the old buffer), frees it and allocates anew (contents
 * lost). 1, or 0 on failure (recorded naming `what`). */
int bl_cuda_grow(void **buf, size_t *cap, size_t nbytes, const char *what);

/* Threads per block for the element-wise kernels, and the blocks to cover
 * n elements (capped at 65535: every kernel loops with a grid stride, so
 * the grid covers any n). */
enum { BL_CUDA_THREADS = 256 };
static inline unsigned int bl_cuda_blocks(size_t n)
{
    size_t b = (n + BL_CUDA_THREADS - 1) / BL_CUDA_THREADS;
    return b == 0 ? 1u : (b > 65535 ? 65535u : (unsigned int)b);
}

#endif /* BL_CUDA_CONTEXT_H */
