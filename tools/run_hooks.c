/* ballast-train's stop, checkpoint and test hooks between steps
 * (run_hooks.h). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run_hooks.h"

/* SIGTERM or SIGUSR1 arrived: the ranks stop together at the next step
 * boundary (with --checkpoint-dir). */
static volatile sig_atomic_t stop_requested;

static void request_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
    bl_interrupt_slowdowns();
}

static void arm_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = request_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

/* A test hook: "RANK:STEP" in the environment variable `name` names the
 * step after which this rank acts; -1 when unset or not this rank. */
static long hook_step(const char *name, int rank)
{
    const char *v = getenv(name);
    int r = -1;
    long step = -1;
    if (v == NULL || sscanf(v, "%d:%ld", &r, &step) != 2 || r != rank) {
        return -1;
    }
    return step;
}

void run_hooks_init(run_hooks_t *h, bl_runtime_t *rt, const train_options_t *o, long total_steps,
                    bl_status_t (*save)(void *arg), void *save_arg)
{
    int rank = bl_runtime_rank(rt);
    *h = (run_hooks_t){.rt = rt,
                       .opt = o,
                       .total_steps = total_steps,
                       .kill_step = hook_step("BALLAST_TEST_KILL_AT", rank),
                       .signal_step = hook_step("BALLAST_TEST_SIGNAL_AT", rank),
                       .hang_step = hook_step("BALLAST_TEST_HANG_AT", rank),
                       .save = save,
                       .save_arg = save_arg,
                       .ckpt_status = BL_OK};
    if (o->checkpoint_dir != NULL) {
        arm_signals();
    }
}

int run_hooks_between_steps(run_hooks_t *h, long step)
{
    if (step == h->kill_step) {
        raise(SIGKILL); /* the kill-and-resume test: die here, mid-run */
    }
    if (step == h->signal_step) {
        raise(SIGUSR1); /* the signal test: as if the scheduler sent it */
    }
    if (step == h->hang_step) {
        sleep(600); /* the hang test: this rank never reaches the next step's collectives */
    }
    const train_options_t *o = h->opt;
    if (o->checkpoint_dir == NULL) {
        return 0;
    }
    int any = 0;
    h->ckpt_status = bl_runtime_any(h->rt, stop_requested, &any);
    if (h->ckpt_status != BL_OK || any) {
        h->stopped = any;
        return 1;
    }
    int last = step + 1 >= h->total_steps;
    if (o->checkpoint_every > 0 && !last && (step + 1) % o->checkpoint_every == 0) {
        h->ckpt_status = h->save(h->save_arg);
        return h->ckpt_status != BL_OK;
    }
    return 0;
}
