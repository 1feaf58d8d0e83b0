/* ballast-train --model gpt2: trains a GPT-2 language model through the
 * public API (bl_lm_trainer_*). */
#ifndef BL_LM_TRAIN_H
#define BL_LM_TRAIN_H

#include "train_options.h"

/* Trains as the options say and prints progress and the summary line (rank
 * 0), with checkpoints, --resume and the stop on SIGTERM or SIGUSR1 as for
 * the MLP. A failure is printed here and flagged in *reported; *stopped is
 * set when a signal stopped the run after its checkpoint (exit status 3). */
bl_status_t lm_train(bl_runtime_t *rt, const train_options_t *o, int *reported, int *stopped);

#endif /* BL_LM_TRAIN_H */
