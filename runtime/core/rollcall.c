/* The roll call, which finds the ranks that had not arrived at a collective
 * that timed out.
 *
 * A collective does not say who is missing, so a rank whose bounded wait
 * runs out asks the collective's other members where they are, on a
 * communicator of its own (rt->rollcall). Every rank answers while it polls
 * in a bounded wait (bl_rollcall_answer), with its step and its operation. A
 * rank that does not answer within the grace period is computing, stuck
 * outside ballast's waits (usually the hang itself) or gone; a rank that
 * answers with another step or operation is waiting somewhere else. Both
 * count as "had not arrived". The roll call is used only with --timeout:
 * without a bound, nothing polls. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "runtime_impl.h"
#include "rollcall.h"

/* A query is an empty message on rt->rollcall whose tag is its number
 * (1 + the query count mod QUERY_TAGS; MPI guarantees tags up to 32767). Its
 * answer travels on rt->rollcall_answers with the same tag, so an answer
 * that arrives after its roll call has ended can never pass for the answer
 * to a later one. */
enum { QUERY_TAGS = 30000 };

/* How long the asking rank waits for answers, in seconds. The other ranks
 * answer within one nap of their polling (at most 0.5 ms, see wait.c) when
 * they are in a bounded wait. */
#define ROLLCALL_GRACE_S 0.5

/* One answer: the answering rank's step and the operation it waits in. */
typedef struct answer {
    long step;
    char op[56];
} answer_t;

bl_status_t bl_rollcall_setup(bl_runtime_t *rt)
{
    MPI_Comm queries = MPI_COMM_NULL, answers = MPI_COMM_NULL;
    int rc = MPI_Comm_dup(rt->comm, &queries);
    if (rc == MPI_SUCCESS) {
        rt->rollcall = queries;
        rc = MPI_Comm_dup(rt->comm, &answers);
    }
    if (rc != MPI_SUCCESS) {
        return bl_fail_mpi(rt, rc, "MPI_Comm_dup of the roll-call communicators");
    }
    rt->rollcall_answers = answers;
    return BL_OK;
}

void bl_rollcall_answer(bl_runtime_t *rt, const char *op)
{
    for (;;) {
        int pending = 0;
        MPI_Status probe;
        if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, rt->rollcall, &pending, &probe) !=
                MPI_SUCCESS ||
            !pending) {
            return;
        }
        if (MPI_Recv(NULL, 0, MPI_BYTE, probe.MPI_SOURCE, probe.MPI_TAG, rt->rollcall,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            return;
        }
        answer_t a;
        memset(&a, 0, sizeof a);
        a.step = rt->wait_step;
        snprintf(a.op, sizeof a.op, "%s", op);
        /* An answer of 64 bytes is sent eagerly, so the send completes
         * without the asker's receive. */
        MPI_Send(&a, (int)sizeof a, MPI_BYTE, probe.MPI_SOURCE, probe.MPI_TAG,
                 rt->rollcall_answers);
    }
}

/* Writes the ranks in rt->comm of comm's members into world[0..n) and
 * returns n. Returns 0 when it cannot tell, or when comm has more than cap
 * members. */
static int members(bl_runtime_t *rt, MPI_Comm comm, int *world, int cap)
{
    int n = 0;
    if (MPI_Comm_size(comm, &n) != MPI_SUCCESS || n > cap) {
        return 0;
    }
    MPI_Group group, all;
    MPI_Comm_group(comm, &group);
    MPI_Comm_group(rt->comm, &all);
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        ok = MPI_Group_translate_ranks(group, 1, &i, all, &world[i]) == MPI_SUCCESS;
    }
    MPI_Group_free(&group);
    MPI_Group_free(&all);
    return ok ? n : 0;
}

/* Appends printf-style text to out (a buffer of cap bytes); text that does
 * not fit is cut quietly. */
static void appendf(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void appendf(char *out, size_t cap, const char *fmt, ...)
{
    size_t used = strlen(out);
    if (used + 1 < cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(out + used, cap - used, fmt, ap);
        va_end(ap);
    }
}

void bl_rollcall_take(bl_runtime_t *rt, MPI_Comm comm, const char *op, char *out, size_t cap)
{
    out[0] = '\0';
    int P = rt->size;
    const bl_allocator_t *alloc = bl_rt_allocator(rt);
    int *world = bl_mem_array(alloc, (size_t)P, sizeof *world);
    answer_t *answers = bl_mem_array_zeroed(alloc, (size_t)P, sizeof *answers);
    MPI_Request *reqs = bl_mem_array(alloc, 2 * (size_t)P, sizeof *reqs);
    int n = world != NULL && answers != NULL && reqs != NULL ? members(rt, comm, world, P) : 0;
    if (n == 0) {
        snprintf(out, cap, ": no roll call of its ranks was possible");
        goto done;
    }
    int tag = 1 + (int)(rt->rollcall_queries++ % QUERY_TAGS);
    /* reqs[2i] is the query to member i, and reqs[2i+1] is its answer. */
    for (int i = 0; i < n; i++) {
        reqs[2 * i] = reqs[2 * i + 1] = MPI_REQUEST_NULL;
        if (world[i] == rt->rank) {
            continue;
        }
        /* The query is empty, so no buffer has to outlive a send that is
         * never received. */
        MPI_Isend(NULL, 0, MPI_BYTE, world[i], tag, rt->rollcall, &reqs[2 * i]);
        MPI_Irecv(&answers[i], (int)sizeof answers[i], MPI_BYTE, world[i], tag,
                  rt->rollcall_answers, &reqs[2 * i + 1]);
    }
    double start = bl_now_seconds();
    int all = 0;
    while (!all && bl_now_seconds() - start < ROLLCALL_GRACE_S) {
        bl_rollcall_answer(rt, op); /* another rank may be calling the roll too */
        MPI_Testall(2 * n, reqs, &all, MPI_STATUSES_IGNORE);
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
    int missing = 0;
    for (int i = 0; i < n; i++) {
        if (world[i] == rt->rank) {
            continue;
        }
        int answered = 0;
        if (reqs[2 * i + 1] != MPI_REQUEST_NULL) {
            MPI_Test(&reqs[2 * i + 1], &answered, MPI_STATUS_IGNORE);
        } else {
            answered = 1;
        }
        if (!answered) {
            /* An answer that lands between the test and the cancel is
             * received rather than cancelled, so it counts as an answer. */
            MPI_Status status;
            int cancelled = 0;
            MPI_Cancel(&reqs[2 * i + 1]);
            MPI_Wait(&reqs[2 * i + 1], &status);
            MPI_Test_cancelled(&status, &cancelled);
            answered = !cancelled;
        }
        if (reqs[2 * i] != MPI_REQUEST_NULL) {
            MPI_Request_free(&reqs[2 * i]); /* the query is empty; the rank may be gone */
        }
        const answer_t *a = &answers[i];
        if (answered && a->step == rt->wait_step && strncmp(a->op, op, sizeof a->op - 1) == 0) {
            continue; /* it has arrived: it waits in the same operation */
        }
        appendf(out, cap, "%s%d", missing == 0 ? ": ranks that had not arrived: " : ", ", world[i]);
        if (answered) {
            appendf(out, cap, " (waiting in %.47s at step %ld)", a->op, a->step);
        } else {
            appendf(out, cap, " (no answer: computing, stopped or gone)");
        }
        missing++;
    }
    if (missing == 0) {
        snprintf(out, cap, ": every rank of the collective answered that it waits in it");
    }
done:
    bl_mem_free(alloc, world);
    bl_mem_free(alloc, answers);
    bl_mem_free(alloc, reqs);
}
