/* Device communicators on the mirror device under mpirun (label mpi): MPI
 * in NCCL's place must keep NCCL's semantics, since the runtime's NCCL
 * code paths are tested through it. All-reduces sum exactly (small
 * integers); groups run one at a time in posting order, across
 * communicators; an exchange's send and receive meet in one group; and a
 * send completes only once its receiver takes it, so two ranks that each
 * send before they receive time out, as they would deadlock under NCCL,
 * even for a message small enough for MPI to buffer. Bad requests fail
 * with the documented status. Every rank counts its failures and the
 * counts are summed before the exit status (mpi_check.h). */
#include <stdio.h>
#include <string.h>

#include "device_comm_impl.h"
#include "mpi_check.h"

#define COUNT 1000

static bl_runtime_t *runtime_on(int device)
{
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    cfg.device = device;
    bl_runtime_t *rt = NULL;
    bl_status_t st = bl_runtime_create(MPI_COMM_WORLD, &cfg, &rt);
    check(st == BL_OK, "runtime on device %d: %s", device, bl_status_string(st));
    return rt;
}

/* Two all-reduces on two communicators, posted before any wait: the
 * second waits for the first (one group at a time), the sums are exact. */
static void check_allreduce(bl_runtime_t *rt, bl_device_comm_t *a, bl_device_comm_t *b)
{
    static float x[COUNT], y[COUNT];
    int P = rt->size;
    for (int i = 0; i < COUNT; i++) {
        x[i] = (float)((rt->rank + 1) * (i % 13));
        y[i] = (float)(i % 7);
    }
    bl_status_t st = bl_device_comm_allreduce(a, x, COUNT);
    check(st == BL_OK, "all-reduce on a: %s", bl_last_error(rt));
    st = bl_device_comm_allreduce(b, y, COUNT);
    check(st == BL_OK, "all-reduce on b: %s", bl_last_error(rt));
    check(rt->device_in_flight == b, "the second all-reduce is the group in flight");
    st = bl_device_comm_wait(a, "the test's all-reduces");
    check(st == BL_OK && rt->device_in_flight == NULL, "wait: %s", bl_last_error(rt));
    for (int i = 0; i < COUNT; i++) {
        float want_x = (float)((i % 13) * P * (P + 1) / 2), want_y = (float)((i % 7) * P);
        if (x[i] != want_x || y[i] != want_y) {
            check(0, "element %d: %g and %g, expected %g and %g", i, (double)x[i], (double)y[i],
                  (double)want_x, (double)want_y);
            break;
        }
    }
}

/* A ring: every rank sends to the next and receives from the one before,
 * in one group (with one rank: to itself). */
static void check_ring(bl_runtime_t *rt, bl_device_comm_t *c)
{
    float out[64], in[64];
    int P = rt->size, next = (rt->rank + 1) % P, prev = (rt->rank + P - 1) % P;
    for (int i = 0; i < 64; i++) {
        out[i] = (float)(rt->rank * 100 + i);
        in[i] = -1.0f;
    }
    bl_status_t st = bl_device_comm_exchange(c, out, 64, next, in, 64, prev);
    check(st == BL_OK, "ring exchange: %s", bl_last_error(rt));
    st = bl_device_comm_wait(c, "the ring");
    check(st == BL_OK, "ring wait: %s", bl_last_error(rt));
    for (int i = 0; i < 64; i++) {
        if (in[i] != (float)(prev * 100 + i)) {
            check(0, "ring: element %d is %g, expected %d", i, (double)in[i], prev * 100 + i);
            break;
        }
    }
    /* Empty transfers are none: nothing is posted. */
    st = bl_device_comm_exchange(c, out, 0, next, in, 0, prev);
    check(st == BL_OK && rt->device_in_flight == NULL, "an empty exchange posted something");
}

static void check_bad_requests(bl_runtime_t *rt, bl_device_comm_t *c)
{
    float buf[4] = {0};
    bl_status_t st = bl_device_comm_exchange(c, buf, 4, rt->size, NULL, 0, -1);
    check(st == BL_ERR_INVALID_ARG && strstr(bl_last_error(rt), "members") != NULL,
          "a send to member %d of %d: %s (%s)", rt->size, rt->size, bl_status_string(st),
          bl_last_error(rt));
    st = bl_device_comm_exchange(c, NULL, 0, -1, NULL, 4, 0);
    check(st == BL_ERR_INVALID_ARG, "a receive into NULL: %s", bl_status_string(st));
    check(strcmp(bl_device_comm_name(c), "MPI in NCCL's place (mirror)") == 0, "name %s",
          bl_device_comm_name(c));
    check(strcmp(bl_device_comm_name(NULL), "none") == 0, "the name of no communicator");
}

/* Two ranks each send first, in a group of its own, then receive: under
 * NCCL neither send completes; the mirror must time out the same way
 * (a plain MPI_Isend of 16 bytes would be buffered and let both pass).
 * The job gives up afterwards, so this runs last; the test then takes
 * the stuck messages itself so MPI can finalize. */
static void check_send_first_deadlock(bl_runtime_t *rt, bl_device_comm_t *c)
{
    float out[4] = {1, 2, 3, 4}, in[4] = {0};
    int peer = 1 - rt->rank;
    rt->wait_timeout_s = 2.0;
    bl_status_t st = bl_device_comm_exchange(c, out, 4, peer, NULL, 0, -1);
    check(st == BL_OK, "the send alone: %s", bl_last_error(rt));
    st = bl_device_comm_exchange(c, NULL, 0, -1, in, 4, peer);
    check(st == BL_ERR_TIMEOUT && strstr(bl_last_error(rt), "pipeline transfers") != NULL &&
              strstr(bl_last_error(rt), "had not arrived") != NULL,
          "send before receive on both ranks: %s (%s), expected a timeout", bl_status_string(st),
          bl_last_error(rt));
    /* Both have timed out before either takes the other's message (else
     * the late one's send would complete and it would go on). */
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Recv(in, 4, MPI_FLOAT, peer, 0, c->mpi, MPI_STATUS_IGNORE);
    MPI_Wait(&c->requests[1], MPI_STATUS_IGNORE);
    rt->device_in_flight = NULL;
    rt->gave_up = 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    bl_runtime_t *rt = runtime_on(BL_DEVICE_MIRROR);
    bl_device_comm_t *a = NULL, *b = NULL;
    if (rt != NULL) {
        bl_status_t st = bl_device_comm_open(rt, rt->comm, "gradient", 0.0, &a);
        check(st == BL_OK, "open a: %s", bl_last_error(rt));
        st = bl_device_comm_open(rt, rt->comm, "pipeline", 0.0, &b);
        check(st == BL_OK, "open b: %s", bl_last_error(rt));
    }
    if (a != NULL && b != NULL) {
        check_allreduce(rt, a, b);
        check_ring(rt, b);
        check_bad_requests(rt, b);
        if (rt->size == 2) {
            check_send_first_deadlock(rt, b);
        }
    }
    bl_device_comm_free(b, 1);
    bl_device_comm_free(a, 1);
    bl_runtime_destroy(rt);

    /* A CPU rank has no device communicator: refused on every rank. */
    rt = runtime_on(BL_DEVICE_CPU);
    if (rt != NULL) {
        bl_device_comm_t *none = NULL;
        bl_status_t st = bl_device_comm_open(rt, rt->comm, "gradient", 0.0, &none);
        check(st == BL_ERR_UNSUPPORTED && none == NULL &&
                  strstr(bl_last_error(rt), "computes on cpu") != NULL,
              "open on a CPU rank: %s (%s)", bl_status_string(st), bl_last_error(rt));
    }
    bl_runtime_destroy(rt);

    return check_finish("test_device_comm");
}
