/* The bucketed gradient all-reduce under mpirun (label mpi). Gradients are
 * small integers, whose sums are exact in float32, so the reduced values
 * are checked bit-exactly whatever the reduction order. Every rank counts
 * its failures and the counts are all-reduced before the exit code is
 * chosen, so no rank passes while another fails. */
#include <stdio.h>
#include <string.h>

#include "grad_sync.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "test_grad_sync: rank %d: ", rank);                                    \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

/* 5 → 7 → ReLU → 4 → ReLU → 3: three dense layers (42, 32, 15 params). */
static bl_model_t *make_model(bl_runtime_t *rt)
{
    bl_model_t *m = NULL;
    if (bl_model_create(rt, 5, &m) != BL_OK || bl_model_add_dense(m, 7) != BL_OK ||
        bl_model_add_relu(m) != BL_OK || bl_model_add_dense(m, 4) != BL_OK ||
        bl_model_add_relu(m) != BL_OK || bl_model_add_dense(m, 3) != BL_OK ||
        bl_model_build(m, 1) != BL_OK) {
        bl_model_destroy(m);
        return NULL;
    }
    return m;
}

/* Counts what the ready callback is handed. */
typedef struct ready {
    int calls;
    size_t floats;
} ready_t;

static void count_ready(size_t first, size_t count, void *arg)
{
    ready_t *r = arg;
    r->calls++;
    r->floats += count;
}

/* One reduction with buckets of bucket_bytes; expects `buckets` of them. */
static void check_reduction(bl_runtime_t *rt, bl_model_t *m, size_t bucket_bytes, int buckets)
{
    int rank = rt->rank, P = rt->size;
    bl_grad_sync_t sync;
    bl_status_t st = bl_grad_sync_init(&sync, rt, rt->comm, m, 0, m->layer_count, bucket_bytes);
    CHECK(st == BL_OK, "init with %zu-byte buckets: %s", bucket_bytes, bl_last_error(rt));
    if (st != BL_OK) {
        return;
    }
    CHECK(sync.bucket_count == buckets, "%zu-byte buckets: %d buckets, expected %d", bucket_bytes,
          sync.bucket_count, buckets);
    /* The buckets tile the gradient array from the end, in posting order. */
    size_t end = m->param_count;
    for (int k = 0; k < sync.bucket_count; k++) {
        const bl_bucket_t *b = &sync.buckets[k];
        CHECK(b->first + b->count == end, "bucket %d ends at %zu, expected %zu", k,
              b->first + b->count, end);
        CHECK(b->first == m->layers[b->close_layer].param_offset,
              "bucket %d starts at %zu, not at layer %d", k, b->first, b->close_layer);
        end = b->first;
    }
    CHECK(end == 0, "buckets leave %zu gradients uncovered", end);

    /* Rank r holds (r + 1)·(i mod 5): the sum is (i mod 5)·P(P+1)/2. */
    for (size_t i = 0; i < m->param_count; i++) {
        m->grads[i] = (float)((rank + 1) * (int)(i % 5));
    }
    for (int layer = m->layer_count - 1; layer >= 0; layer--) {
        st = bl_grad_sync_layer_done(layer, &sync);
        CHECK(st == BL_OK, "layer %d: %s", layer, bl_last_error(rt));
    }
    ready_t ready = {0};
    double loss = rank + 0.5;
    long correct = rank;
    st = bl_grad_sync_finish(&sync, &loss, &correct, count_ready, &ready);
    CHECK(st == BL_OK, "finish: %s", bl_last_error(rt));
    for (size_t i = 0; i < m->param_count; i++) {
        float want = (float)((int)(i % 5) * P * (P + 1) / 2);
        if (m->grads[i] != want) {
            CHECK(0, "%zu-byte buckets: gradient %zu is %g, expected %g", bucket_bytes, i,
                  (double)m->grads[i], (double)want);
            break;
        }
    }
    CHECK(ready.calls == sync.bucket_count && ready.floats == m->param_count,
          "ready: %d calls for %zu floats; expected %d for %zu", ready.calls, ready.floats,
          sync.bucket_count, m->param_count);
    CHECK(loss == P * P / 2.0, "loss sum %g, expected %g", loss, P * P / 2.0);
    CHECK(correct == (long)P * (P - 1) / 2, "correct %ld, expected %ld", correct,
          (long)P * (P - 1) / 2);
    bl_grad_sync_free(&sync);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    bl_runtime_t *rt = NULL;
    bl_model_t *m = NULL;
    CHECK(bl_runtime_create(MPI_COMM_WORLD, &cfg, &rt) == BL_OK, "runtime");
    if (rt != NULL) {
        m = make_model(rt);
        CHECK(m != NULL, "model: %s", bl_last_error(rt));
    }
    if (m != NULL) {
        check_reduction(rt, m, 1, 3);       /* under a float: one per dense layer */
        check_reduction(rt, m, 32 * 4, 2);  /* 15+32 params close at layer 2, then 42 */
        check_reduction(rt, m, 1 << 20, 1); /* larger than the model: one bucket */
        check_reduction(rt, m, 15 * 4, 3);  /* exactly the last layer, then each */
    }
    bl_model_destroy(m);
    bl_runtime_destroy(rt);
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        int size = 0;
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        printf("test_grad_sync: %d ranks, %d failures\n", size, total);
    }
    MPI_Finalize();
    return total == 0 ? 0 : 1;
}
