/* What both of ballast-train's trainers do between steps (ballast_train.c
 * for the MLP, lm_train.c for GPT-2): the test hooks that kill, signal or
 * hang a rank after a given step, the agreement of every rank to stop after
 * the same step once any got SIGTERM or SIGUSR1, and the periodic
 * checkpoint. */
#ifndef BL_RUN_HOOKS_H
#define BL_RUN_HOOKS_H

#include "train_options.h"

typedef struct run_hooks {
    bl_runtime_t *rt;
    const train_options_t *opt;
    long total_steps;
    /* The test hooks (BALLAST_TEST_KILL_AT, ..._SIGNAL_AT, ..._HANG_AT,
     * each "RANK:STEP"): the step after which this rank acts, or -1. */
    long kill_step, signal_step, hang_step;
    /* Saves a checkpoint into the options' directory (the trainer's own
     * save), for the periodic checkpoints. */
    bl_status_t (*save)(void *arg);
    void *save_arg;
    int stopped;             /* a signal stopped the run (every rank agreed) */
    bl_status_t ckpt_status; /* a failed agreement or periodic checkpoint stops the run */
} run_hooks_t;

/* Reads the test hooks for this rank and, with a checkpoint directory,
 * makes SIGTERM and SIGUSR1 ask for a stop. */
void run_hooks_init(run_hooks_t *h, bl_runtime_t *rt, const train_options_t *o, long total_steps,
                    bl_status_t (*save)(void *arg), void *save_arg);

/* Before anything else of a step's callback, on every rank, after step
 * `step`: the test hooks, the agreement to stop on a signal (collective)
 * and the periodic checkpoint (collective; not after the last step, which
 * the final checkpoint covers). Returns 1 to stop the run: h->stopped then
 * says whether a signal stopped it, and h->ckpt_status holds a failure. */
int run_hooks_between_steps(run_hooks_t *h, long step);

#endif /* BL_RUN_HOOKS_H */
