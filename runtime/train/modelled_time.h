/* Modelled step times: a test and demo hook (bl_trainer_emulate_timing) that
 * replaces what the clock measured with what a cost model predicts, so that
 * every controller decision depends on the plan alone and a run under any
 * policy is reproducible bit for bit. */
#ifndef BL_MODELLED_TIME_H
#define BL_MODELLED_TIME_H

#include "stage.h"

/* Overwrites the stage's per-layer times of the step, and r's compute and
 * pipeline seconds, with modelled ones. Layer i of the stage takes
 * bl_layer_cost(m, i) (the multiply-adds of its passes per sample) × rows ×
 * seconds_per_op × factor, a third of it forward and two thirds backward, where
 * rows are the samples that the stage's pipeline ran this step. Nothing waits
 * for a neighbouring stage, so r's pipeline seconds are 0. */
void bl_modelled_stage_times(const bl_model_t *m, bl_stage_t *s, int rows, double seconds_per_op,
                             double factor, bl_stage_result_t *r);

#endif /* BL_MODELLED_TIME_H */
