/* Emulated slowdowns (slowdown.h). */
#include <math.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "consistency.h"
#include "slowdown.h"
#include "wait.h"

static bl_status_t check(bl_runtime_t *rt, const bl_slowdown_t *list, int count)
{
    if (count < 0 || (count > 0 && list == NULL)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "slowdowns: %d given with %s array", count,
                       list == NULL ? "no" : "an");
    }
    for (int i = 0; i < count; i++) {
        const bl_slowdown_t *s = &list[i];
        if (s->rank < 0 || s->rank >= rt->size) {
            return bl_fail(rt, BL_ERR_INVALID_ARG,
                           "slowdown %d: rank %d is outside the job's ranks 0..%d", i, s->rank,
                           rt->size - 1);
        }
        if (!(s->factor >= 1.0) || !isfinite(s->factor)) {
            return bl_fail(rt, BL_ERR_INVALID_ARG,
                           "slowdown %d: factor %g must be a finite number >= 1", i, s->factor);
        }
        if (s->from_step < 0 || (s->to_step != -1 && s->to_step < s->from_step)) {
            return bl_fail(rt, BL_ERR_INVALID_ARG,
                           "slowdown %d: steps %ld-%ld are not a range from >= 0 (to -1: the end)",
                           i, s->from_step, s->to_step);
        }
    }
    return BL_OK;
}

bl_status_t bl_slowdowns_init(bl_slowdowns_t *s, bl_runtime_t *rt, const bl_slowdown_t *list,
                              int count)
{
    memset(s, 0, sizeof *s);
    s->rt = rt;
    bl_status_t st = check(rt, list, count);
    if (st != BL_OK || count == 0) {
        return st;
    }
    s->list = bl_mem_array(bl_rt_allocator(rt), (size_t)count, sizeof *s->list);
    if (s->list == NULL) {
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for %d slowdowns", count);
    }
    memcpy(s->list, list, (size_t)count * sizeof *s->list);
    s->count = count;
    return BL_OK;
}

void bl_slowdowns_free(bl_slowdowns_t *s)
{
    if (s->rt != NULL) {
        bl_mem_free(bl_rt_allocator(s->rt), s->list);
    }
    memset(s, 0, sizeof *s);
}

double bl_slowdowns_factor(const bl_slowdowns_t *s, long step)
{
    double factor = 1.0;
    for (int i = 0; i < s->count; i++) {
        const bl_slowdown_t *d = &s->list[i];
        if (d->rank == s->rt->rank && step >= d->from_step &&
            (d->to_step == -1 || step <= d->to_step)) {
            factor *= d->factor;
        }
    }
    return factor;
}

/* Set by bl_interrupt_slowdowns, from a signal handler. */
static volatile sig_atomic_t interrupted;

void bl_interrupt_slowdowns(void)
{
    interrupted = 1;
}

double bl_slowdowns_apply(const bl_slowdowns_t *s, long step, double compute_s)
{
    double factor = bl_slowdowns_factor(s, step);
    if (factor <= 1.0 || interrupted) {
        return compute_s;
    }
    double extra = (factor - 1.0) * compute_s;
    /* A signal cuts the sleep short (EINTR), so a job asked to stop by SIGTERM
     * or SIGUSR1 reaches its next step boundary at once instead of sleeping on
     * while its launcher's grace period runs out; after bl_interrupt_slowdowns
     * no step sleeps (the ranks agree to stop a step later). */
    struct timespec ts = {(time_t)extra, (long)((extra - (double)(time_t)extra) * 1e9)};
    nanosleep(&ts, NULL);
    return factor * compute_s;
}

bl_status_t bl_slowdowns_replace(bl_slowdowns_t *s, bl_runtime_t *rt, const bl_slowdown_t *list,
                                 int count)
{
    /* Every rank checks its list in the same way; then every rank must hold the
     * same list, or the emulation would not be the job's. */
    bl_slowdowns_t next;
    bl_status_t st = bl_slowdowns_init(&next, rt, list, count);
    uint64_t digest = st == BL_OK && count > 0 ? bl_digest(list, (size_t)count * sizeof *list) : 0;
    const bl_check_field_t field = {"emulated slowdowns", BL_CHECK_DIGEST, digest};
    st = bl_agree(rt, st, BL_ERR_INVALID_ARG, "emulated slowdowns");
    if (st == BL_OK) {
        st = bl_check_same_on_all_ranks(rt, "emulated slowdowns", &field, 1);
    }
    if (st != BL_OK) {
        bl_slowdowns_free(&next);
        return st;
    }
    bl_slowdowns_free(s);
    *s = next;
    return BL_OK;
}
