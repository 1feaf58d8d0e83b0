/* Layer reassignment across pipeline stages: which contiguous layers each
 * stage should own, from measured per-layer times, and whether moving
 * layers there pays for itself.
 *
 * Pure, like the rest of partition/: numbers in, maps out — no MPI, no
 * clocks, no globals, no I/O. The same code runs in a job (rank 0) and in
 * the simulator.
 *
 * Vocabulary: a *window* is the K steps between two decisions. A *map* is
 * first[0..S] (stage s owns layers [first[s], first[s+1]), first[0] = 0,
 * first[S] = L, every stage at least one layer). A *migration* moves a
 * layer's parameters and optimizer state from its old stage to its new
 * one; it costs bytes / bandwidth plus a fixed latency, paid once. */
#ifndef BL_RESTAGE_H
#define BL_RESTAGE_H

#include "policy.h" /* bl_part_allocator_t, bl_policy_kind_t, bl_estimator_params_t */

/* The predicted relative gain (of the step) from which one window's
 * evidence is enough to move, when it is also far beyond the noise floor;
 * smaller gains must be found twice in a row (restage.c). */
#define BL_RESTAGE_STRONG_GAIN 0.2

/* The observed steps of the first window after a start or a resume, when
 * the decision period is longer: a pipeline that starts imbalanced (a
 * stage 2x slower) is rebalanced a few steps after the warm-up, not a whole
 * period later. The trainers' stage controllers apply it. */
#define BL_RESTAGE_FIRST_WINDOW 4

/* The observed steps of the first window when decisions come every
 * `every` steps: BL_RESTAGE_FIRST_WINDOW, or every when that is shorter. */
static inline int bl_restage_first_window(int every)
{
    return every < BL_RESTAGE_FIRST_WINDOW ? every : BL_RESTAGE_FIRST_WINDOW;
}

typedef struct bl_restage_config {
    bl_policy_kind_t kind; /* static: never moves; proportional, bandit, rl (see restage.c) */
    int layers;            /* L */
    int stages;            /* S (1 <= S <= L) */
    /* (L) a priori relative work of each layer per step, > 0 in total for
     * every possible stage (e.g. its multiply-adds); calibrates stage
     * speeds, which measured times alone cannot separate from layer
     * costs. Copied. */
    const double *anchor;
    const double *layer_bytes; /* (L) bytes moving layer i sends (parameters + optimizer state) */
    const double *edge_bytes;  /* (L) or NULL: bytes per step across a cut before layer i
                                  (activations forward and gradients back); [0] unused */
    double bandwidth;          /* first estimate of migration bandwidth, bytes/s (> 0) */
    double latency_s;          /* fixed seconds a migration costs besides its bytes (>= 0) */
    double horizon_steps;      /* a migration must pay back within this many steps (> 0) */
    double threshold;          /* proportional: least predicted relative gain (e.g. 0.03) */
    uint64_t seed;             /* rl exploration */
    bl_estimator_params_t estimator;
} bl_restage_config_t;

/* One window, as the job measured it. */
typedef struct bl_restage_obs {
    const int *first;      /* (S + 1) the map the window ran */
    const double *layer_s; /* (L) mean seconds per step in layer i (forward + backward) */
    double step_s;         /* measured mean step time of the window */
} bl_restage_obs_t;

typedef struct bl_restage_decision {
    const char *action;   /* static string: "hold" or "repartition" */
    int changed;          /* the next map differs from the current one */
    double current_s;     /* predicted slowest stage of the current map, s/step */
    double best_s;        /* of the best map for the estimates */
    double gain_s;        /* predicted step time saved per step by the best map */
    double move_bytes;    /* bytes the move to the best map would send */
    double move_s;        /* its predicted seconds (bytes / bandwidth + latency) */
    double payback_steps; /* move_s / gain_s (inf: no gain) */
    int speed_changes;    /* stage speed changes the estimator detected this window */
} bl_restage_decision_t;

typedef struct bl_restage bl_restage_t;

/* Returns 0, or -1 with a message in err naming the field. */
int bl_restage_create(const bl_restage_config_t *config, const bl_part_allocator_t *a,
                      bl_restage_t **out, char *err, size_t errlen);
void bl_restage_destroy(bl_restage_t *r);

/* One decision: feeds the window, writes the map to run next into next
 * (S + 1 ints; may alias obs->first). A move is made only when it pays
 * back within the horizon by the estimates. Returns 0, or -1 on invalid
 * input (next then equals obs->first, decision->action says why). */
int bl_restage_decide(bl_restage_t *r, const bl_restage_obs_t *obs, int *next,
                      bl_restage_decision_t *decision);

/* A migration happened: bytes sent in seconds (the slowest rank's). The
 * bandwidth estimate follows it, and bandit and rl charge the seconds to
 * the repartition that caused them. */
void bl_restage_migrated(bl_restage_t *r, double bytes, double seconds);

/* The bytes a move from map `from` to map `to` sends: Σ layer_bytes of the
 * layers whose stage changes. */
double bl_restage_move_bytes(const bl_restage_t *r, const int *from, const int *to);

/* Estimates: stage speeds (S, relative: work per second, 0 before seen) and
 * layer costs (L, work per step at speed 1). Belong to r. */
const double *bl_restage_stage_speeds(const bl_restage_t *r);
const double *bl_restage_layer_costs(const bl_restage_t *r);
double bl_restage_bandwidth(const bl_restage_t *r);

/* The policy's learned state, for checkpoints: the stage estimator, the
 * fitted costs and speeds, the seen-time table, the map awaiting
 * confirmation, the migration bandwidth, the bandit's arms, the Q-table and
 * the random stream. Bytes in host order. Loading takes the state of a
 * policy of the same kind, L and S, all or nothing: 0, or -1 with the
 * reason in err, r unchanged. */
size_t bl_restage_state_bytes(const bl_restage_t *r);
void bl_restage_state_save(const bl_restage_t *r, void *buf);
int bl_restage_state_load(bl_restage_t *r, const void *buf, size_t n, char *err, size_t errlen);

#endif /* BL_RESTAGE_H */
