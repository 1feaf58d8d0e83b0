/* The pipeline side of the controller: per-layer telemetry over a control
 * window, rank 0's stage-map decisions (partition/restage.h) or a scripted
 * stage plan, and the broadcast that makes every rank switch maps at the
 * same step boundary. The move itself is migration.h's. */
#ifndef BL_RESTAGER_H
#define BL_RESTAGER_H

#include "layout.h"
#include "migration.h"
#include "restage.h"
#include "stage.h"

typedef struct bl_restager {
    bl_runtime_t *rt;
    int on;       /* S > 1 and a policy, a stage plan or a telemetry file */
    int deciding; /* a policy chooses maps */
    int logging;  /* per-layer times go to the telemetry file */
    int stages, layers, replicas, every;
    long *plan_steps; /* (plan_count) the scripted stage plan, ascending */
    int *plan_first;  /* (plan_count × S) */
    int plan_count;
    int plan_next;  /* the next scripted map's index */
    double *window; /* (2L) this rank's per-layer forward, then backward seconds, summed */
    double window_step_s;
    int window_steps;
    int skip_next;        /* the next step warms new buffers: not observed */
    bl_restage_t *policy; /* rank 0 */
    double *layer_s;      /* rank 0: (L) the window's mean forward + backward seconds */
    int *message;         /* (S + 2): changed flag, then the next map */
    char *note;           /* rank 0: JSON members for the step's telemetry line */
    size_t note_cap;
    long note_step;          /* the step the note belongs to, −1: none */
    const char *last_action; /* rank 0: the policy's latest action, or NULL */
} bl_restager_t;

/* Collective. cfg is the trainer's (validated) config, l its layout. */
bl_status_t bl_restager_init(bl_restager_t *r, bl_runtime_t *rt, const bl_train_config_t *cfg,
                             const bl_model_t *m, const bl_layout_t *l);
void bl_restager_free(bl_restager_t *r);

/* Checks a config's stage plan against S and the model (local). */
bl_status_t bl_restager_check_plan(bl_runtime_t *rt, const bl_train_config_t *cfg, int layers);
/* A digest of the plan and the repartition settings, for the start-up check. */
uint64_t bl_restager_digest(const bl_train_config_t *cfg);

/* Every rank, after each step: adds the stage's layer times to the window
 * (unless the step is marked cold: skip_next). */
void bl_restager_observe(bl_restager_t *r, const bl_stage_t *s, double step_s);

/* One rank's window in progress as doubles, for checkpoints: per-layer
 * forward sums (L), backward sums (L), the summed step time, the step
 * count and skip_next. */
#define BL_RESTAGER_WINDOW_DOUBLES(L) (2 * (size_t)(L) + 3)

/* Collective: rank 0 receives every rank's window in progress into out
 * (P × BL_RESTAGER_WINDOW_DOUBLES(L), in rank order; NULL elsewhere).
 * Nothing happens (BL_OK) when the restager is off. */
bl_status_t bl_restager_gather_windows(bl_restager_t *r, double *out);

/* Collective, on resume: when rank 0's `have` is 1, every rank takes its
 * window from rank 0's `in` (as gathered above); otherwise every window
 * stays as it is. Values that are not a window (negative, not finite)
 * leave that rank's window empty. */
bl_status_t bl_restager_scatter_windows(bl_restager_t *r, const double *in, int have);

/* Collective, after step `step`: a scripted map for this step, or at a
 * window's end rank 0's decision, broadcast. next (S + 1) receives the map
 * to run from the next step; *changed says whether it differs from first. */
bl_status_t bl_restager_boundary(bl_restager_t *r, long step, const int *first, int *next,
                                 int *changed);

/* Every rank, after a migration at step `step` from map `from` to `to` that
 * took `seconds` (the slowest rank's): rank 0 tells the policy and notes
 * it for telemetry. */
void bl_restager_moved(bl_restager_t *r, long step, const int *from, const int *to,
                       const bl_migration_t *mig, double seconds);

/* The seconds a migration of `bytes` takes by the stage policy's first
 * estimate (latency plus bytes over bandwidth): modelled timings use it. */
double bl_restager_nominal_move_s(double bytes);

/* Rank 0: the JSON members noted for step `step` (decision, layer times,
 * migration), or NULL. */
const char *bl_restager_note(const bl_restager_t *r, long step);

#endif /* BL_RESTAGER_H */
