/* NCCL communicators and transfers on the context's comm stream (comm.h).
 *
 * Non-blocking communicators. With config.blocking = 0 NCCL never blocks
 * the calling thread: set-up runs in NCCL's own thread, and a call that
 * must meet its peers first (the connection set-up of a first transfer)
 * returns ncclInProgress and finishes in the background. Until
 * ncclCommGetAsyncError reports ncclSuccess again, the call's work may not
 * be on the stream yet, and NCCL refuses the next call on that
 * communicator (ncclInvalidArgument). So the communicator remembers an
 * ncclInProgress (in_progress), the next enqueue first polls it away
 * (settle, bounded by the set-up timeout), and bl_nccl_wait trusts
 * cudaStreamQuery only once the state is ncclSuccess.
 *
 * Aborts. A call that fails for good marks the communicator failed and
 * records why. Enqueues never abort themselves (they may sit inside a
 * group, which NCCL must close first); the abort comes at the next
 * bl_nccl_wait, bl_nccl_group_end or bl_nccl_comm_destroy. Timeouts and
 * asynchronous errors found by a wait abort at once, as NCCL asks: an
 * operation with an asynchronous error never completes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nccl.h>

#include "comm.h"
#include "context.h"

/* Non-blocking config, ncclCommFinalize and ncclGetLastError. */
#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "ballast's CUDA backend needs NCCL 2.14 or newer"
#endif

static_assert(BL_NCCL_ID_BYTES == NCCL_UNIQUE_ID_BYTES,
              "comm.h's BL_NCCL_ID_BYTES must equal NCCL_UNIQUE_ID_BYTES");
static_assert(sizeof(ncclUniqueId) == BL_NCCL_ID_BYTES, "ncclUniqueId is not a plain byte array");

/* Poll intervals: set-up takes seconds, so it is polled every millisecond;
 * transfers take microseconds to milliseconds. */
enum { SETUP_NAP_NS = 1000000, WAIT_NAP_NS = 50000 };

struct bl_nccl_comm {
    ncclComm_t nccl; /* NULL once aborted */
    int nranks;
    int rank;
    double timeout_s;  /* the create timeout; bounds settle and finalize (<= 0: none) */
    int in_progress;   /* the last NCCL call returned ncclInProgress */
    int failed;        /* a call failed for good; `failure` says which */
    char failure[512]; /* the first such failure, repeated by later calls */
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void nap(long ns)
{
    struct timespec t = {0, ns};
    nanosleep(&t, NULL);
}

__attribute__((format(printf, 3, 4))) static void say(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* "<NCCL's string for r> (<NCCL's last error>)", the parentheses left out
 * when NCCL has no detail. Reads the last error, so call it before an
 * abort frees the communicator. */
static void nccl_detail(char *out, size_t n, ncclResult_t r, ncclComm_t comm)
{
    const char *last = ncclGetLastError(comm);
    if (last != NULL && last[0] != '\0') {
        snprintf(out, n, "%s (%s)", ncclGetErrorString(r), last);
    } else {
        snprintf(out, n, "%s", ncclGetErrorString(r));
    }
}

/* Marks c failed with the message (the first one is kept for later calls)
 * and copies it to err. Returns -1. */
__attribute__((format(printf, 4, 5))) static int fail_comm(bl_nccl_comm_t *c, char *err,
                                                           size_t errlen, const char *fmt, ...)
{
    char msg[sizeof c->failure];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!c->failed) {
        snprintf(c->failure, sizeof c->failure, "%s", msg);
        c->failed = 1;
    }
    say(err, errlen, "%s", msg);
    return -1;
}

/* The communicator's state: ncclSuccess, ncclInProgress, or its error
 * (a failed query counts as the error it returned). */
static ncclResult_t comm_state(const bl_nccl_comm_t *c)
{
    ncclResult_t state = ncclInProgress;
    ncclResult_t r = ncclCommGetAsyncError(c->nccl, &state);
    return r != ncclSuccess ? r : state;
}

static void abort_comm(bl_nccl_comm_t *c)
{
    if (c->nccl != NULL) {
        ncclCommAbort(c->nccl);
        c->nccl = NULL;
    }
}

/* 0 when c can take a call; else -1, naming `what` and the earlier failure. */
static int usable(const bl_nccl_comm_t *c, const char *what, char *err, size_t errlen)
{
    if (c == NULL) {
        say(err, errlen, "NCCL %s: no communicator (NULL)", what);
        return -1;
    }
    if (c->failed) {
        say(err, errlen, "NCCL %s: the communicator failed earlier: %s", what, c->failure);
        return -1;
    }
    return 0;
}

/* Waits out a previous call's ncclInProgress (NCCL takes no new call on
 * the communicator until then), up to the create timeout. */
static int settle(bl_nccl_comm_t *c, const char *what, char *err, size_t errlen)
{
    if (!c->in_progress) {
        return 0;
    }
    double start = now_s();
    for (;;) {
        ncclResult_t state = comm_state(c);
        if (state == ncclSuccess) {
            c->in_progress = 0;
            return 0;
        }
        if (state != ncclInProgress) {
            char detail[384];
            nccl_detail(detail, sizeof detail, state, c->nccl);
            return fail_comm(c, err, errlen, "NCCL %s: the previous NCCL call failed: %s", what,
                             detail);
        }
        if (c->timeout_s > 0 && now_s() - start > c->timeout_s) {
            return fail_comm(c, err, errlen,
                             "NCCL %s timed out after %g s behind the previous NCCL call, still "
                             "in progress (a member of the communicator did not take part)",
                             what, c->timeout_s);
        }
        nap(WAIT_NAP_NS);
    }
}

/* Makes the comm stream wait for everything enqueued so far on the compute
 * stream: an event, not a stream sync, so later compute work overlaps the
 * transfer. The wait takes the event's state at this call; recording the
 * same event again later does not change it. */
static int order_after_compute(const char *what, char *err, size_t errlen)
{
    cudaError_t e = cudaEventRecord(bl_cuda_ctx.compute_ready, bl_cuda_ctx.stream);
    if (e == cudaSuccess) {
        e = cudaStreamWaitEvent(bl_cuda_ctx.comm_stream, bl_cuda_ctx.compute_ready, 0);
    }
    if (e != cudaSuccess) {
        say(err, errlen, "NCCL %s: ordering after the compute stream: %s", what,
            cudaGetErrorString(e));
        return -1;
    }
    return 0;
}

/* The outcome of an enqueueing NCCL call. ncclInProgress is success (the
 * work is being enqueued in the background); ncclInvalidArgument means
 * the call had no effect and the communicator is fine; anything else is
 * fatal for the communicator. */
static int enqueued(bl_nccl_comm_t *c, ncclResult_t r, const char *what, char *err, size_t errlen)
{
    char detail[384];
    if (r == ncclSuccess) {
        return 0;
    }
    if (r == ncclInProgress) {
        c->in_progress = 1;
        return 0;
    }
    nccl_detail(detail, sizeof detail, r, c->nccl);
    if (r == ncclInvalidArgument) {
        say(err, errlen, "NCCL %s: %s", what, detail);
        return -1;
    }
    return fail_comm(c, err, errlen, "NCCL %s: %s", what, detail);
}

extern "C" int bl_nccl_unique_id(unsigned char id[BL_NCCL_ID_BYTES], char *err, size_t errlen)
{
    ncclUniqueId uid;
    char detail[384];
    if (id == NULL) {
        say(err, errlen, "NCCL unique id: no buffer (NULL)");
        return -1;
    }
    ncclResult_t r = ncclGetUniqueId(&uid);
    if (r != ncclSuccess) {
        nccl_detail(detail, sizeof detail, r, NULL);
        say(err, errlen, "NCCL unique id: %s", detail);
        return -1;
    }
    memcpy(id, uid.internal, BL_NCCL_ID_BYTES);
    return 0;
}

extern "C" int bl_nccl_comm_create(const unsigned char id[BL_NCCL_ID_BYTES], int nranks, int rank,
                                   double timeout_s, bl_nccl_comm_t **out, char *err, size_t errlen)
{
    bl_nccl_comm_t *c = NULL;
    ncclComm_t comm = NULL;
    ncclUniqueId uid;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    ncclResult_t r = ncclSuccess, state = ncclInProgress;
    cudaError_t e = cudaSuccess;
    char detail[384];
    double start = 0;
    if (out == NULL || id == NULL) {
        say(err, errlen, "NCCL communicator set-up: no id or no result pointer (NULL)");
        return -1;
    }
    *out = NULL;
    if (nranks < 1 || rank < 0 || rank >= nranks) {
        say(err, errlen, "NCCL communicator set-up: rank %d of %d is not a member", rank, nranks);
        return -1;
    }
    if (!bl_cuda_ctx.ready) {
        say(err, errlen,
            "NCCL communicator set-up (rank %d of %d): the CUDA context is not initialized "
            "(bl_cuda_init)",
            rank, nranks);
        return -1;
    }
    c = (bl_nccl_comm_t *)calloc(1, sizeof *c);
    if (c == NULL) {
        say(err, errlen, "NCCL communicator set-up (rank %d of %d): out of memory", rank, nranks);
        goto fail;
    }
    /* NCCL binds the communicator to the calling thread's current device. */
    e = cudaSetDevice(bl_cuda_ctx.device);
    if (e != cudaSuccess) {
        say(err, errlen, "NCCL communicator set-up (rank %d of %d): CUDA device %d: %s", rank,
            nranks, bl_cuda_ctx.device, cudaGetErrorString(e));
        goto fail;
    }
    memcpy(uid.internal, id, BL_NCCL_ID_BYTES);
    config.blocking = 0;
    start = now_s();
    r = ncclCommInitRankConfig(&comm, nranks, uid, rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
        nccl_detail(detail, sizeof detail, r, comm);
        say(err, errlen, "NCCL communicator set-up (rank %d of %d): %s", rank, nranks, detail);
        goto fail;
    }
    /* Set-up meets every member; a member that never comes would keep it
     * in progress for ever, hence the timeout. */
    for (;;) {
        r = ncclCommGetAsyncError(comm, &state);
        if (r != ncclSuccess) {
            state = r;
        }
        if (state != ncclInProgress) {
            break;
        }
        if (timeout_s > 0 && now_s() - start > timeout_s) {
            say(err, errlen,
                "NCCL communicator set-up (rank %d of %d) timed out after %g s (not every member "
                "joined; the communicator was aborted)",
                rank, nranks, timeout_s);
            goto fail;
        }
        nap(SETUP_NAP_NS);
    }
    if (state != ncclSuccess) {
        nccl_detail(detail, sizeof detail, state, comm);
        say(err, errlen, "NCCL communicator set-up (rank %d of %d): %s", rank, nranks, detail);
        goto fail;
    }
    c->nccl = comm;
    c->nranks = nranks;
    c->rank = rank;
    c->timeout_s = timeout_s;
    *out = c;
    return 0;
fail:
    /* Abort works at any point of a non-blocking set-up: it stops NCCL's
     * set-up thread (its sockets watch the abort flag) and frees it all. */
    if (comm != NULL) {
        ncclCommAbort(comm);
    }
    free(c);
    return -1;
}

extern "C" void bl_nccl_comm_abort(bl_nccl_comm_t *c)
{
    if (c != NULL) {
        abort_comm(c);
        free(c);
    }
}

extern "C" void bl_nccl_comm_destroy(bl_nccl_comm_t *c)
{
    if (c == NULL) {
        return;
    }
    /* A healthy communicator is finalized (its transfers completed, the
     * other members met), then destroyed; the rest, and one that does not
     * finalize within the timeout, is aborted. */
    if (c->nccl != NULL && !c->failed && settle(c, "finalize", NULL, 0) == 0) {
        ncclResult_t state = ncclInProgress;
        ncclResult_t r = ncclCommFinalize(c->nccl);
        double start = now_s();
        while (r == ncclSuccess || r == ncclInProgress) {
            r = ncclCommGetAsyncError(c->nccl, &state);
            if (r != ncclSuccess || state != ncclInProgress) {
                break;
            }
            if (c->timeout_s > 0 && now_s() - start > c->timeout_s) {
                r = ncclInProgress;
                break;
            }
            nap(WAIT_NAP_NS);
        }
        if (r == ncclSuccess && state == ncclSuccess) {
            ncclCommDestroy(c->nccl);
            c->nccl = NULL;
        }
    }
    abort_comm(c);
    free(c);
}

/* What every enqueue checks and does first: the communicator is usable,
 * the buffer is there, an earlier call has settled, and the comm stream
 * waits for the compute stream's work so far. */
static int prepare(bl_nccl_comm_t *c, const char *what, const void *buf, size_t count, char *err,
                   size_t errlen)
{
    if (usable(c, what, err, errlen) != 0) {
        return -1;
    }
    if (buf == NULL && count > 0) {
        say(err, errlen, "NCCL %s: no buffer (NULL)", what);
        return -1;
    }
    if (settle(c, what, err, errlen) != 0 || order_after_compute(what, err, errlen) != 0) {
        return -1;
    }
    return 0;
}

extern "C" int bl_nccl_allreduce_sum(bl_nccl_comm_t *c, float *buf, size_t count, char *err,
                                     size_t errlen)
{
    char what[96];
    snprintf(what, sizeof what, "all-reduce of %zu floats", count);
    if (prepare(c, what, buf, count, err, errlen) != 0) {
        return -1;
    }
    /* In place: send and receive buffer are the same (NCCL allows it). */
    ncclResult_t r =
        ncclAllReduce(buf, buf, count, ncclFloat32, ncclSum, c->nccl, bl_cuda_ctx.comm_stream);
    return enqueued(c, r, what, err, errlen);
}

extern "C" int bl_nccl_group_start(char *err, size_t errlen)
{
    char detail[384];
    ncclResult_t r = ncclGroupStart();
    if (r != ncclSuccess) {
        nccl_detail(detail, sizeof detail, r, NULL);
        say(err, errlen, "NCCL group start: %s", detail);
        return -1;
    }
    return 0;
}

extern "C" int bl_nccl_group_end(bl_nccl_comm_t *c, char *err, size_t errlen)
{
    char detail[384], unordered[256] = "";
    const char *what = "group end";
    /* Ordered after the compute work enqueued before this call, which
     * covers all that came before the group's sends and receives. */
    int ordered =
        c != NULL && !c->failed && order_after_compute(what, unordered, sizeof unordered) == 0;
    /* Closed whatever happened inside: NCCL's group state belongs to the
     * thread and would swallow every later call. */
    ncclResult_t r = ncclGroupEnd();
    if (usable(c, what, err, errlen) != 0) {
        /* Failed before or inside the group: abort now that it is closed. */
        if (c != NULL) {
            abort_comm(c);
        }
        return -1;
    }
    if (!ordered) {
        /* The group ran without its ordering: its results cannot be trusted. */
        fail_comm(c, NULL, 0, "%s (the group was enqueued unordered)", unordered);
    } else if (r == ncclSuccess) {
        return 0;
    } else if (r == ncclInProgress) {
        c->in_progress = 1;
        return 0;
    } else {
        /* Errors from a group end apply to the whole group: fatal. */
        nccl_detail(detail, sizeof detail, r, c->nccl);
        fail_comm(c, NULL, 0, "NCCL %s: %s", what, detail);
    }
    abort_comm(c);
    say(err, errlen, "%s", c->failure);
    return -1;
}

/* Send and receive share all but the direction. */
static int p2p(bl_nccl_comm_t *c, int send, float *buf, size_t count, int peer, char *err,
               size_t errlen)
{
    char what[128];
    if (send) {
        snprintf(what, sizeof what, "send of %zu floats to rank %d", count, peer);
    } else {
        snprintf(what, sizeof what, "receive of %zu floats from rank %d", count, peer);
    }
    if (c != NULL && !c->failed && (peer < 0 || peer >= c->nranks)) {
        say(err, errlen, "NCCL %s: rank %d is not a member (the communicator has %d)", what, peer,
            c->nranks);
        return -1;
    }
    if (prepare(c, what, buf, count, err, errlen) != 0) {
        return -1;
    }
    ncclResult_t r =
        send ? ncclSend(buf, count, ncclFloat32, peer, c->nccl, bl_cuda_ctx.comm_stream)
             : ncclRecv(buf, count, ncclFloat32, peer, c->nccl, bl_cuda_ctx.comm_stream);
    return enqueued(c, r, what, err, errlen);
}

extern "C" int bl_nccl_send(bl_nccl_comm_t *c, const float *buf, size_t count, int peer, char *err,
                            size_t errlen)
{
    /* NCCL only reads a send buffer; p2p's pointer is shared with receive. */
    return p2p(c, 1, (float *)buf, count, peer, err, errlen);
}

extern "C" int bl_nccl_recv(bl_nccl_comm_t *c, float *buf, size_t count, int peer, char *err,
                            size_t errlen)
{
    return p2p(c, 0, buf, count, peer, err, errlen);
}

extern "C" int bl_nccl_settle(bl_nccl_comm_t *c, char *err, size_t errlen)
{
    if (usable(c, "settle", err, errlen) != 0) {
        return -1;
    }
    return settle(c, "settle", err, errlen);
}

extern "C" int bl_nccl_wait(bl_nccl_comm_t *c, double timeout_s, const char *op, char *err,
                            size_t errlen)
{
    char detail[384];
    cudaError_t e = cudaSuccess;
    if (op == NULL || op[0] == '\0') {
        op = "transfers";
    }
    if (c == NULL) {
        say(err, errlen, "NCCL %s: no communicator (NULL)", op);
        return -1;
    }
    if (c->failed) {
        abort_comm(c);
        say(err, errlen, "NCCL %s: the communicator failed earlier: %s", op, c->failure);
        return -1;
    }
    double start = now_s();
    for (;;) {
        ncclResult_t state = comm_state(c);
        if (state == ncclSuccess) {
            /* Everything is on the stream now: its emptiness means done. */
            c->in_progress = 0;
            e = cudaStreamQuery(bl_cuda_ctx.comm_stream);
            if (e == cudaSuccess) {
                break;
            }
            if (e == cudaErrorNotReady) {
                bl_cuda_forget_not_ready();
            } else {
                fail_comm(c, err, errlen, "NCCL %s: waiting for the comm stream: %s", op,
                          cudaGetErrorString(e));
                abort_comm(c);
                return -1;
            }
        } else if (state != ncclInProgress) {
            nccl_detail(detail, sizeof detail, state, c->nccl);
            fail_comm(c, err, errlen, "NCCL %s: %s", op, detail);
            abort_comm(c);
            return -1;
        }
        if (timeout_s > 0 && now_s() - start > timeout_s) {
            fail_comm(c, err, errlen,
                      "NCCL %s timed out after %g s (a member of the communicator did not take "
                      "part; the communicator was aborted)",
                      op, timeout_s);
            abort_comm(c);
            return -1;
        }
        nap(WAIT_NAP_NS);
    }
    /* The comm stream is idle, so this wait is already met; it is what
     * orders the compute stream after the transfers' writes all the same. */
    e = cudaEventRecord(bl_cuda_ctx.comm_ready, bl_cuda_ctx.comm_stream);
    if (e == cudaSuccess) {
        e = cudaStreamWaitEvent(bl_cuda_ctx.stream, bl_cuda_ctx.comm_ready, 0);
    }
    if (e != cudaSuccess) {
        say(err, errlen, "NCCL %s: ordering the compute stream after the comm stream: %s", op,
            cudaGetErrorString(e));
        return -1;
    }
    return 0;
}

extern "C" void bl_nccl_version(char *out, size_t n)
{
    int v = 0;
    if (out == NULL || n == 0) {
        return;
    }
    if (ncclGetVersion(&v) != ncclSuccess || v <= 0) {
        snprintf(out, n, "unknown");
        return;
    }
    /* NCCL_VERSION: X*1000 + Y*100 + Z up to 2.8, X*10000 + Y*100 + Z since. */
    if (v >= 10000) {
        snprintf(out, n, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
    } else {
        snprintf(out, n, "%d.%d.%d", v / 1000, v / 100 % 10, v % 100);
    }
}
