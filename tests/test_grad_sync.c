/* The bucketed gradient all-reduce under mpirun (label mpi). Gradients are
 * small integers, whose sums are exact in float32, so the reduced values
 * are checked bit-exactly whatever the reduction order. Every rank counts
 * its failures and the counts are all-reduced before the exit code is
 * chosen, so no rank passes while another fails (mpi_check.h). */
#include <stdio.h>
#include <string.h>

#include "grad_sync.h"
#include "mpi_check.h"
#include "test_mlp.h"

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
    check(st == BL_OK, "init with %zu-byte buckets: %s", bucket_bytes, bl_last_error(rt));
    if (st != BL_OK) {
        return;
    }
    check(sync.bucket_count == buckets, "%zu-byte buckets: %d buckets, expected %d", bucket_bytes,
          sync.bucket_count, buckets);
    /* The buckets tile the gradient array from the end, in posting order. */
    size_t end = m->param_count;
    for (int k = 0; k < sync.bucket_count; k++) {
        const bl_bucket_t *b = &sync.buckets[k];
        check(b->first + b->count == end, "bucket %d ends at %zu, expected %zu", k,
              b->first + b->count, end);
        check(b->first == m->layers[b->close_layer].param_offset,
              "bucket %d starts at %zu, not at layer %d", k, b->first, b->close_layer);
        end = b->first;
    }
    check(end == 0, "buckets leave %zu gradients uncovered", end);

    /* Rank r holds (r + 1)·(i mod 5): the sum is (i mod 5)·P(P+1)/2. */
    for (size_t i = 0; i < m->param_count; i++) {
        m->grads[i] = (float)((rank + 1) * (int)(i % 5));
    }
    for (int layer = m->layer_count - 1; layer >= 0; layer--) {
        st = bl_grad_sync_layer_done(layer, &sync);
        check(st == BL_OK, "layer %d: %s", layer, bl_last_error(rt));
    }
    ready_t ready = {0};
    double loss = rank + 0.5;
    long correct = rank;
    st = bl_grad_sync_finish(&sync, &loss, &correct, count_ready, &ready);
    check(st == BL_OK, "finish: %s", bl_last_error(rt));
    for (size_t i = 0; i < m->param_count; i++) {
        float want = (float)((int)(i % 5) * P * (P + 1) / 2);
        if (m->grads[i] != want) {
            check(0, "%zu-byte buckets: gradient %zu is %g, expected %g", bucket_bytes, i,
                  (double)m->grads[i], (double)want);
            break;
        }
    }
    check(ready.calls == sync.bucket_count && ready.floats == m->param_count,
          "ready: %d calls for %zu floats; expected %d for %zu", ready.calls, ready.floats,
          sync.bucket_count, m->param_count);
    check(loss == P * P / 2.0, "loss sum %g, expected %g", loss, P * P / 2.0);
    check(correct == (long)P * (P - 1) / 2, "correct %ld, expected %ld", correct,
          (long)P * (P - 1) / 2);
    bl_grad_sync_free(&sync);
}

/* A staged device for grad_sync's fetch hooks: the gradients live in
 * `device`; a copy to the host array lands only on its third poll, so a reduction posted before its
 * copy arrived would sum stale host values. fail_at > 0 makes that copy fail. */
typedef struct staged {
    bl_model_t *m;
    const float *device;
    size_t first[16], count[16];
    int started, landed, polls[16];
    int fail_at;
} staged_t;

static bl_status_t staged_fetch(size_t first, size_t count, long *ticket, void *arg)
{
    staged_t *d = arg;
    d->first[d->started] = first;
    d->count[d->started] = count;
    *ticket = ++d->started;
    return BL_OK;
}

static bl_status_t staged_fetched(long ticket, int *done, void *arg)
{
    staged_t *d = arg;
    int k = (int)ticket - 1;
    if (ticket == d->fail_at) {
        return bl_fail(d->m->rt, BL_ERR_CUDA, "copy %ld failed (test)", ticket);
    }
    *done = ++d->polls[k] >= 3;
    /* Copies arrive in the order they started. */
    while (*done && d->landed <= k) {
        size_t f = d->first[d->landed], n = d->count[d->landed];
        memcpy(d->m->grads + f, d->device + f, n * sizeof(float));
        d->landed++;
    }
    return BL_OK;
}

/* The staged path: buckets post their reductions only after their copies
 * landed, in bucket order, and the sums are right; a failed copy fails
 * the step with its status. */
static void check_staged(bl_runtime_t *rt, bl_model_t *m, size_t bucket_bytes, int fail_at)
{
    int rank = rt->rank, P = rt->size;
    float device[128];
    staged_t d = {.m = m, .device = device, .fail_at = fail_at};
    bl_grad_sync_t sync;
    bl_status_t st = bl_grad_sync_init(&sync, rt, rt->comm, m, 0, m->layer_count, bucket_bytes);
    check(st == BL_OK && m->param_count <= 128, "staged init: %s", bl_last_error(rt));
    if (st != BL_OK) {
        return;
    }
    sync.device = (bl_grad_device_t){.fetch = staged_fetch, .fetched = staged_fetched, .arg = &d};
    for (size_t i = 0; i < m->param_count; i++) {
        device[i] = (float)((rank + 1) * (int)(i % 7));
        m->grads[i] = 1000.0f; /* stale: must never be summed */
    }
    /* A step stops at its first failure, in the hook or in finish. */
    for (int layer = m->layer_count - 1; layer >= 0 && st == BL_OK; layer--) {
        st = bl_grad_sync_layer_done(layer, &sync);
        check(st == BL_OK || fail_at > 0, "staged layer %d: %s", layer, bl_last_error(rt));
        check(sync.posted <= d.landed, "layer %d: %d reductions posted but %d copies landed", layer,
              sync.posted, d.landed);
    }
    ready_t ready = {0};
    if (st == BL_OK) {
        st = bl_grad_sync_finish(&sync, NULL, NULL, count_ready, &ready);
    }
    if (fail_at > 0) {
        check(st == BL_ERR_CUDA && strstr(bl_last_error(rt), "copy 2 failed") != NULL,
              "a failed copy: the step gave %s (%s)", bl_status_string(st), bl_last_error(rt));
        check(sync.posted == 0 && sync.closed == 0, "a failed step left %d posted, %d closed",
              sync.posted, sync.closed);
        bl_grad_sync_free(&sync);
        return;
    }
    check(st == BL_OK, "staged finish: %s", bl_last_error(rt));
    check(d.started == sync.bucket_count && d.landed == sync.bucket_count,
          "%d copies started, %d landed, for %d buckets", d.started, d.landed, sync.bucket_count);
    for (int k = 0; k < d.started; k++) {
        check(d.first[k] == sync.buckets[k].first, "copy %d is of the wrong bucket", k);
    }
    for (size_t i = 0; i < m->param_count; i++) {
        float want = (float)((int)(i % 7) * P * (P + 1) / 2);
        if (m->grads[i] != want) {
            check(0, "staged, %zu-byte buckets: gradient %zu is %g, expected %g", bucket_bytes, i,
                  (double)m->grads[i], (double)want);
            break;
        }
    }
    check(ready.calls == sync.bucket_count, "staged ready: %d calls for %d buckets", ready.calls,
          sync.bucket_count);
    bl_grad_sync_free(&sync);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    bl_runtime_t *rt = NULL;
    bl_model_t *m = NULL;
    check(bl_runtime_create(MPI_COMM_WORLD, &cfg, &rt) == BL_OK, "runtime");
    if (rt != NULL) {
        /* 5 → 7 → ReLU → 4 → ReLU → 3: three dense layers (42, 32, 15 params). */
        bl_status_t st = test_mlp(rt, 5, (const int[]){7, 4}, 2, 3, 1, &m);
        check(st == BL_OK, "model: %s", bl_last_error(rt));
    }
    if (m != NULL) {
        check_reduction(rt, m, 1, 3);       /* under a float: one per dense layer */
        check_reduction(rt, m, 32 * 4, 2);  /* 15+32 params close at layer 2, then 42 */
        check_reduction(rt, m, 1 << 20, 1); /* larger than the model: one bucket */
        check_reduction(rt, m, 15 * 4, 3);  /* exactly the last layer, then each */
        check_staged(rt, m, 1, 0);          /* three copies, each polled before it lands */
        check_staged(rt, m, 1 << 20, 0);    /* one copy, polled until it lands */
        check_staged(rt, m, 1, 2);          /* the second copy fails */
        check_reduction(rt, m, 1, 3);       /* and the sync works again after a failure */
    }
    bl_model_destroy(m);
    bl_runtime_destroy(rt);
    return check_finish("test_grad_sync");
}
