/* The CUDA backend's NCCL layer (cuda/comm.h), one GPU per rank (label
 * gpu). An MPI program: ctest runs it on one rank, where every transfer is
 * a rank's transfer to itself; it runs unchanged on more ranks (a ring).
 * Exits 77 (ctest: skipped) with the reason when a rank sees no GPU.
 *
 * Checks, in order:
 *  - a unique id made on rank 0 and broadcast over MPI, and the
 *    communicator set up from it (bad member numbers refused first);
 *  - in-place SUM all-reduces of small integers, whose sums are exact in
 *    float32 whatever NCCL's order, so results must be bit-exact (1, an
 *    odd count and 2^20 floats);
 *  - a send to rank+1 and a receive from rank-1 in one group (on one rank:
 *    to itself, which NCCL allows inside a group) of a matrix written by
 *    ten back-to-back GEMMs on the compute stream into a buffer that held
 *    NaN: the transfer is enqueued right after the GEMMs, so unless the comm
 *    stream waits for the compute stream it copies NaN or a partial result
 *    (one rank's all-reduce is a no-op, so the copy is what shows the
 *    ordering);
 *  - a peer outside the communicator refused, the communicator still
 *    usable after it; a wait with nothing enqueued; destroy, and NULL;
 *  - the set-up timeout: a communicator of one member more than there are
 *    ranks, whose last member never comes, fails within its 2 s timeout
 *    plus the abort, naming the timeout. Safe to run: NCCL documents
 *    ncclCommAbort at any point of a non-blocking set-up, and this rank's
 *    set-up thread waits only on sockets that watch the abort flag. What
 *    it leaves is rank 0's bootstrap listener thread, blocked until the
 *    process exits.
 * Not checked here: a wait that times out because a peer skips a transfer
 * (it needs a second rank that misbehaves on purpose), and counts above
 * INT_MAX (8 GiB buffers).
 *
 * Every rank counts its failures; the counts are summed over MPI before
 * the exit status is chosen, so no rank passes while another fails. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>
#include <mpi.h>

#include "comm.h"
#include "mpi_check.h"
#include "cuda_kernels.h"
#include "kernels.h"

enum { SKIP = 77 };

static int world_rank, world_size;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A device buffer of count floats, or NULL (counted as a failure). */
static float *device_floats(size_t count)
{
    void *d = NULL;
    cudaError_t e = cudaMalloc(&d, count * sizeof(float));
    check(e == cudaSuccess, "cudaMalloc of %zu floats: %s", count, cudaGetErrorString(e));
    return e == cudaSuccess ? d : NULL;
}

/* A unique id made on rank 0 and broadcast; 0, or -1 on every rank. */
static int shared_id(unsigned char id[BL_NCCL_ID_BYTES])
{
    char err[512] = "";
    int rc = 0;
    if (world_rank == 0) {
        rc = bl_nccl_unique_id(id, err, sizeof err);
        check(rc == 0, "bl_nccl_unique_id: %s", err);
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(id, BL_NCCL_ID_BYTES, MPI_BYTE, 0, MPI_COMM_WORLD);
    return rc;
}

/* In-place SUM of x_r[i] = (i mod 7) + r + 1 over the ranks r: each sum is
 * a small integer, exact in float32. */
static void test_allreduce(bl_nccl_comm_t *c, size_t count)
{
    char err[512] = "";
    float *h = malloc(count * sizeof *h);
    float *d = device_floats(count);
    long n = world_size;
    if (h == NULL || d == NULL) {
        check(0, "all-reduce of %zu: out of memory", count);
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        h[i] = (float)((long)(i % 7) + world_rank + 1);
    }
    /* A plain upload: on the legacy stream, which the compute stream (and
     * through its event, the all-reduce) waits for. */
    check(cudaMemcpy(d, h, count * sizeof *h, cudaMemcpyHostToDevice) == cudaSuccess,
          "all-reduce of %zu: upload", count);
    int rc = bl_nccl_allreduce_sum(c, d, count, err, sizeof err);
    check(rc == 0, "bl_nccl_allreduce_sum(%zu): %s", count, err);
    if (rc == 0) {
        rc = bl_nccl_wait(c, 60, "test all-reduce", err, sizeof err);
        check(rc == 0, "bl_nccl_wait after the all-reduce of %zu: %s", count, err);
    }
    check(cudaMemcpy(h, d, count * sizeof *h, cudaMemcpyDeviceToHost) == cudaSuccess,
          "all-reduce of %zu: download", count);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < count; i++) {
        float want = (float)(n * (long)(i % 7 + 1) + n * (n - 1) / 2);
        if (h[i] != want) {
            first = bad == 0 ? i : first;
            bad++;
        }
    }
    check(bad == 0, "all-reduce of %zu: %zu sums wrong, first [%zu] = %.9g, want %.9g", count, bad,
          first, bad ? (double)h[first] : 0.0,
          (double)(n * (long)(first % 7 + 1) + n * (n - 1) / 2));
done:
    cudaFree(d);
    free(h);
}

/* C (m×n) = A·B with A[i][l] = i mod 3 and B_r[l][j] = (l + 2j + r) mod 5
 * for rank r, so C[i][j] = (i mod 3)·colsum_r(j), at most 2·4·k: exact. */
enum { M = 2048, N = 2048, K = 2048, GEMMS = 10 };

static float expected_c(int sender, size_t i, size_t j)
{
    long colsum = 0;
    for (long l = 0; l < K; l++) {
        colsum += (l + 2 * (long)j + sender) % 5;
    }
    return (float)((long)(i % 3) * colsum);
}

static void test_ordered_ring(bl_nccl_comm_t *c)
{
    char err[512] = "";
    size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
    float *ha = malloc(na * sizeof *ha), *hb = malloc(nb * sizeof *hb);
    float *hd = malloc(nc * sizeof *hd);
    float *da = device_floats(na), *db = device_floats(nb);
    float *dc = device_floats(nc), *dd = device_floats(nc);
    float *want = malloc(N * sizeof *want);
    int to = (world_rank + 1) % world_size, from = (world_rank + world_size - 1) % world_size;
    if (!ha || !hb || !hd || !da || !db || !dc || !dd || !want) {
        check(0, "ring: out of memory");
        goto done;
    }
    for (size_t i = 0; i < M; i++) {
        for (size_t l = 0; l < K; l++) {
            ha[i * K + l] = (float)(i % 3);
        }
    }
    for (size_t l = 0; l < K; l++) {
        for (size_t j = 0; j < N; j++) {
            hb[l * N + j] = (float)((l + 2 * j + (size_t)world_rank) % 5);
        }
    }
    check(cudaMemcpy(da, ha, na * sizeof *ha, cudaMemcpyHostToDevice) == cudaSuccess &&
              cudaMemcpy(db, hb, nb * sizeof *hb, cudaMemcpyHostToDevice) == cudaSuccess,
          "ring: upload");
    /* NaN everywhere (all bytes 0xff) in the matrix and in the receive
     * buffer, so a copy that ran early shows. */
    check(cudaMemset(dc, 0xff, nc * sizeof *dc) == cudaSuccess &&
              cudaMemset(dd, 0xff, nc * sizeof *dd) == cudaSuccess,
          "ring: memset");
    /* Milliseconds of GEMMs queued on the compute stream (beta 0: C is
     * written, not read), then the transfer at once. */
    for (int g = 0; g < GEMMS; g++) {
        bl_cuda_kernels.gemm(0, 0, M, N, K, 1.0f, da, K, db, N, 0.0f, dc, N);
    }
    int rc = bl_nccl_group_start(err, sizeof err);
    check(rc == 0, "bl_nccl_group_start: %s", err);
    if (rc == 0) {
        int rs = bl_nccl_send(c, dc, nc, to, err, sizeof err);
        check(rs == 0, "bl_nccl_send to %d: %s", to, err);
        int rr = bl_nccl_recv(c, dd, nc, from, err, sizeof err);
        check(rr == 0, "bl_nccl_recv from %d: %s", from, err);
        rc = bl_nccl_group_end(c, err, sizeof err);
        check(rc == 0, "bl_nccl_group_end: %s", err);
        rc = rc != 0 || rs != 0 || rr != 0;
    }
    if (rc == 0) {
        rc = bl_nccl_wait(c, 60, "test ring", err, sizeof err);
        check(rc == 0, "bl_nccl_wait after the ring: %s", err);
    }
    check(bl_cuda_check(err, sizeof err) == 0, "a GEMM failed: %s", err);
    check(cudaMemcpy(hd, dd, nc * sizeof *hd, cudaMemcpyDeviceToHost) == cudaSuccess,
          "ring: download");
    for (size_t j = 0; j < N; j++) {
        want[j] = expected_c(from, 1, j); /* row 1: i mod 3 = 1, the column sum */
    }
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < M; i++) {
        for (size_t j = 0; j < N; j++) {
            float w = (float)(i % 3) * want[j];
            if (hd[i * N + j] != w) {
                first = bad == 0 ? i * N + j : first;
                bad++;
            }
        }
    }
    check(bad == 0,
          "ring: %zu of %zu received values wrong (NaN: the transfer ran before the GEMMs), "
          "first [%zu] = %.9g, want %.9g",
          bad, nc, first, bad ? (double)hd[first] : 0.0,
          bad ? (double)expected_c(from, first / N, first % N) : 0.0);
done:
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    cudaFree(dd);
    free(ha);
    free(hb);
    free(hd);
    free(want);
}

/* A bad peer is refused without touching NCCL; the communicator still
 * works after it, and a wait with nothing enqueued returns at once. */
static void test_refusals(bl_nccl_comm_t *c)
{
    char err[512] = "";
    float *d = device_floats(1);
    if (d == NULL) {
        return;
    }
    int rc = bl_nccl_send(c, d, 1, world_size, err, sizeof err);
    check(rc == -1 && strstr(err, "not a member") != NULL,
          "a send to rank %d (of %d) gave %d: '%s'", world_size, world_size, rc, err);
    rc = bl_nccl_wait(c, 10, "an empty wait", err, sizeof err);
    check(rc == 0, "bl_nccl_wait with nothing enqueued: %s", err);
    cudaFree(d);
    test_allreduce(c, 3);
}

/* One member more than there are ranks: it never comes, so set-up must
 * give up after its timeout, abort, and say so. */
static void test_setup_timeout(void)
{
    char err[512] = "";
    unsigned char id[BL_NCCL_ID_BYTES];
    bl_nccl_comm_t *c = NULL;
    const double timeout = 2.0;
    if (shared_id(id) != 0) {
        return;
    }
    double start = now_s();
    int rc = bl_nccl_comm_create(id, world_size + 1, world_rank, timeout, &c, err, sizeof err);
    double took = now_s() - start;
    check(rc == -1 && c == NULL, "set-up with a missing member gave %d (comm %p)", rc, (void *)c);
    check(strstr(err, "timed out after 2 s") != NULL, "set-up timeout message: '%s'", err);
    /* Not before the timeout; the abort itself is quick (a minute is
     * generous). */
    check(took >= timeout && took < timeout + 60, "set-up gave up after %.1f s (timeout %.0f s)",
          took, timeout);
    if (world_rank == 0) {
        printf("set-up timeout: '%s' after %.2f s\n", err, took);
    }
    bl_nccl_comm_destroy(c);
}

int main(int argc, char **argv)
{
    char err[512] = "", version[32];
    unsigned char id[BL_NCCL_ID_BYTES];
    bl_nccl_comm_t *c = NULL;
    MPI_Comm node;
    int local_rank = 0, local_size = 1, have = 0, all_have = 0, total = 0;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_size(node, &local_size);
    MPI_Comm_free(&node);

    /* One GPU per rank (NCCL refuses two members on one GPU). */
    int ndev = bl_cuda_device_count(err, sizeof err);
    if (ndev > 0 && ndev < local_size) {
        snprintf(err, sizeof err, "%d ranks on this node but %d GPUs", local_size, ndev);
        ndev = 0;
    }
    have = ndev > 0;
    MPI_Allreduce(&have, &all_have, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_have) {
        if (!have) {
            printf("test_cuda_nccl skipped: no GPU visible: %s\n", err);
        }
        MPI_Finalize();
        return SKIP;
    }
    if (bl_cuda_init(local_rank, err, sizeof err) != 0) {
        check(0, "bl_cuda_init(%d): %s", local_rank, err);
        goto finish;
    }
    bl_nccl_version(version, sizeof version);
    if (world_rank == 0) {
        printf("NCCL %s, %d rank(s)\n", version, world_size);
    }
    check(strncmp(version, "2.", 2) == 0, "bl_nccl_version: '%s'", version);

    if (shared_id(id) != 0) {
        goto finish;
    }
    check(bl_nccl_comm_create(id, world_size, world_size, 10, &c, err, sizeof err) == -1 &&
              c == NULL && strstr(err, "not a member") != NULL,
          "set-up as rank %d of %d was not refused: '%s'", world_size, world_size, err);
    int rc = bl_nccl_comm_create(id, world_size, world_rank, 60, &c, err, sizeof err);
    check(rc == 0 && c != NULL, "bl_nccl_comm_create(rank %d of %d): %s", world_rank, world_size,
          err);
    if (rc == 0) {
        test_allreduce(c, 1);
        test_allreduce(c, 4099);
        test_allreduce(c, (size_t)1 << 20);
        test_ordered_ring(c);
        test_refusals(c);
        bl_nccl_comm_destroy(c);
        c = NULL;
    }
    bl_nccl_comm_destroy(NULL);
    test_setup_timeout();

finish:
    bl_cuda_shutdown();
    total = check_total();
    if (world_rank == 0) {
        printf("test_cuda_nccl: %d failure(s) over %d rank(s)\n", total, world_size);
    }
    MPI_Finalize();
    return total == 0 ? 0 : 1;
}
