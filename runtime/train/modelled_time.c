/* Modelled step times (modelled_time.h). */
#include "modelled_time.h"

void bl_modelled_stage_times(const bl_model_t *m, bl_stage_t *s, int rows, double seconds_per_op,
                             double factor, bl_stage_result_t *r)
{
    double total = 0.0;
    for (int i = s->first; i < s->last; i++) {
        double layer_s = bl_layer_cost(m, i) * (double)rows * seconds_per_op * factor;
        s->forward_s[i] = layer_s / 3.0;
        s->backward_s[i] = layer_s - s->forward_s[i];
        total += layer_s;
    }
    r->compute_s = total;
    r->pipe_s = 0.0;
}
