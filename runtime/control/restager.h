/* The pipeline side of the controller: per-layer telemetry over a control
 * window, rank 0's stage-map decisions (partition/restage.h) or a scripted
 * stage plan, and the broadcast that makes every rank switch maps at the same
 * step boundary. The move itself is migration.h's. */
#ifndef BL_RESTAGER_H
#define BL_RESTAGER_H

#include "layout.h"
#include "migration.h"
#include "restage.h"
#include "stage.h"

/* First guesses, which the measured migrations soon replace: a migration moves
 * about a gigabyte a second and pays a millisecond of set-up (new stage
 * buffers, the agreement). */
#define BL_RESTAGE_BANDWIDTH 1e9
#define BL_RESTAGE_LATENCY   1e-3

typedef struct bl_restager {
    bl_runtime_t *rt;
    int on;       /* 1 when S > 1 and there is a policy, a stage plan or a telemetry file */
    int deciding; /* 1 when a policy chooses the maps */
    int logging;  /* 1 when the per-layer times go to the telemetry file */
    int stages, layers, replicas, every;
    long *plan_steps; /* (plan_count) the scripted stage plan's steps, ascending */
    int *plan_first;  /* (plan_count × S) the scripted maps */
    int plan_count;
    int plan_next;  /* the next scripted map's index */
    double *window; /* (2L) this rank's per-layer forward seconds, then backward seconds, summed */
    double window_step_s;
    int window_steps;
    int skip_next;        /* the coming steps that warm new buffers and are not observed */
    int decided;          /* 1 after the first decision since the start or the resume */
    bl_restage_t *policy; /* rank 0 */
    double *layer_s;      /* rank 0: (L) the window's mean forward + backward seconds */
    int *message;         /* (S + 2) the changed flag, then the next map */
    char *note;           /* rank 0: the JSON members for the step's telemetry line */
    size_t note_cap;
    long note_step;          /* the step the note belongs to, or −1 */
    const char *last_action; /* rank 0: the policy's latest action, or NULL */
} bl_restager_t;

/* Sets up the stage controller for the trainer's validated config cfg, its
 * model m and its layout l; it stays off (r->on 0) without pipelines or
 * anything to do. Collective: every rank fails when one cannot set up. */
bl_status_t bl_restager_init(bl_restager_t *r, bl_runtime_t *rt, const bl_train_config_t *cfg,
                             const bl_model_t *m, const bl_layout_t *l);
void bl_restager_free(bl_restager_t *r);

/* Checks a config's repartition settings and stage plan against S and the
 * model's `layers` (BL_ERR_INVALID_ARG naming the problem). Local. */
bl_status_t bl_restager_check_plan(bl_runtime_t *rt, const bl_train_config_t *cfg, int layers);
/* Returns a digest of the stage plan and the repartition settings, for the
 * start-up check. */
uint64_t bl_restager_digest(const bl_train_config_t *cfg);

/* Called on every rank after each step: adds the stage's layer times and step_s
 * to the window, unless the step is marked cold (skip_next). */
void bl_restager_observe(bl_restager_t *r, const bl_stage_t *s, double step_s);

/* One rank's window in progress as doubles, for checkpoints: the per-layer
 * forward sums (L), the backward sums (L), the summed step time, the step count
 * and skip_next. */
#define BL_RESTAGER_WINDOW_DOUBLES(L) (2 * (size_t)(L) + 3)

/* Gathers every rank's window in progress into rank 0's out
 * (P × BL_RESTAGER_WINDOW_DOUBLES(L), in rank order; NULL elsewhere).
 * Collective; nothing happens (BL_OK) when the restager is off. */
bl_status_t bl_restager_gather_windows(bl_restager_t *r, double *out);

/* On resume: when rank 0's `have` is 1, every rank takes its window from
 * rank 0's `in` (laid out as gathered above); otherwise every window stays as
 * it is. Values that are not a window (negative, not finite) leave that rank's
 * window empty. Collective. */
bl_status_t bl_restager_scatter_windows(bl_restager_t *r, const double *in, int have);

/* Called after step `step`; collective. A scripted map for this step or, at a
 * window's end, rank 0's decision (broadcast to every rank) becomes the map to
 * run from the next step: next (S + 1 entries) receives it, or else a copy of
 * first, and *changed says whether it differs from first. */
bl_status_t bl_restager_boundary(bl_restager_t *r, long step, const int *first, int *next,
                                 int *changed);

/* Called on every rank after a migration at step `step` from map `from` to map
 * `to` that took `seconds` (the slowest rank's): every rank empties its window
 * and skips the next step, and rank 0 tells the policy and notes the migration
 * for telemetry. */
void bl_restager_moved(bl_restager_t *r, long step, const int *from, const int *to,
                       const bl_migration_t *mig, double seconds);

/* Returns the seconds that a migration of `bytes` takes by the stage policy's
 * first estimate (latency plus bytes over bandwidth); modelled timings use it. */
double bl_restager_nominal_move_s(double bytes);

/* Rank 0: returns the JSON members noted for step `step` (decision, layer
 * times, migration), or NULL when there are none. */
const char *bl_restager_note(const bl_restager_t *r, long step);

#endif /* BL_RESTAGER_H */
