/* Per-rank speed estimation: the ratio of EMAs of a window's samples and
 * of its compute seconds, a running estimate of each rank's noise, and
 * change detection.
 *
 * Why a ratio of EMAs rather than an EMA of speeds: a rank throttled in
 * bursts (a CPU quota: full speed, then stopped until the next period)
 * computes some windows fast and some slowly, and an average of speeds
 * lets a fast window count as much as a slow one although it held less
 * time, which overstates the rank (by 40% under a half-core quota, where
 * windows alternated between 18 and 60 ms). Samples over seconds is the
 * rank's throughput. For a rank of steady speed the two are the same,
 * whatever its shard.
 *
 * Noise: σ² is the mean of half the squared relative step between
 * successive windows (for independent noise its mean is σ², and unlike the
 * deviation from the EMA a steady drift does not inflate it by the EMA's
 * lag). It starts from NOISE_PRIOR as one pseudo-sample, averages the
 * first samples equally, and then is an EMA of weight NOISE_WEIGHT: a
 * variance needs more windows than a mean, or its dips make noise look
 * like change.
 *
 * Uncertainty of the estimate: an EMA of weight a over windows of
 * relative variance σ² has variance σ²·f, f = 1 after the first window and
 * f ← (1 − a)²·f + a² after each (→ a / (2 − a)); the mean of the m windows
 * that confirmed a change has f = 1/m.
 *
 * Change: a window's relative deviation d = (x − s)/s from the estimate s
 * is out of band when |d| > change_sigma·σ_d, σ_d = σ·sqrt(1 + f) (the
 * window's noise and the estimate's error) but at least SIGMA_FLOOR.
 * change_windows out-of-band windows in a row, all on the same side, are a
 * real change: the estimate jumps to the mean of those windows'
 * observations, the noise returns to its value before them (they were a
 * shift, not noise), and {rank, new/old} is reported. Until then each
 * window moves the EMA by alpha only, so an isolated outlier is not
 * chased; its noise sample enters winsorised at the band's edge, so one
 * spike cannot blind the detector for long. */
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "state.h"
#include "policy.h"

/* The least relative sigma the detector assumes (2%): with noise-free
 * input the noise tends to 0, and without a floor a 1e-12 jitter would be
 * "beyond 4 sigmas". With the default 4 sigmas, shifts under 8% are never
 * called changes; the EMA tracks them instead. */
#define SIGMA_FLOOR 0.02
/* The noise assumed before any is measured (5% relative per window), as
 * one pseudo-sample: one window says nothing of noise, and acting on a
 * single window of a noisy cluster as if it were exact would lock in a
 * noisy plan. Noise-free input brings it under 2.5% in 3 windows. */
#define NOISE_PRIOR 0.05
/* The noise EMA's weight once 10 samples are in: a memory of ~10 windows. */
#define NOISE_WEIGHT 0.1

struct bl_estimator {
    bl_part_allocator_t a;
    int ranks;
    bl_estimator_params_t params;
    double *speed;              /* num / den, samples/s; 0: never observed */
    double *num;                /* EMA of a window's samples */
    double *den;                /* EMA of a window's compute seconds */
    double *var;                /* EMA of the squared relative deviation (dimensionless) */
    double *ref;                /* during a run: the estimate before it (the reference) */
    double *ref_var;            /* during a run: the noise before it */
    double *last;               /* the previous window's observed speed, samples/s */
    double *efac;               /* the estimate's variance over a window's (see above) */
    int *nnoise;                /* noise samples so far, the prior included */
    double *run_sum;            /* during a run: Σ observed speeds, samples/s */
    int *run;                   /* out-of-band windows in a row: > 0 faster, < 0 slower */
    bl_speed_change_t *changes; /* the last update's changes (at most one per rank) */
    int nchanges;
};

static int params_valid(const bl_estimator_params_t *p)
{
    return p->alpha > 0.0 && p->alpha <= 1.0 && p->change_sigma > 0.0 &&
           isfinite(p->change_sigma) && p->change_windows >= 1;
}

int bl_estimator_create(int ranks, const bl_estimator_params_t *params,
                        const bl_part_allocator_t *a, bl_estimator_t **out)
{
    if (out == NULL) {
        return -1;
    }
    *out = NULL;
    bl_estimator_params_t defaults = BL_ESTIMATOR_PARAMS_DEFAULT;
    if (params == NULL) {
        params = &defaults;
    }
    if (ranks < 1 || !params_valid(params)) {
        return -1;
    }
    bl_estimator_t *e = bl_part_alloc(a, 1, sizeof *e);
    if (e == NULL) {
        return -1;
    }
    memset(e, 0, sizeof *e);
    if (a != NULL) {
        e->a = *a;
    }
    e->ranks = ranks;
    e->params = *params;
    size_t n = (size_t)ranks;
    e->speed = bl_part_alloc(a, n, sizeof *e->speed);
    e->num = bl_part_alloc(a, n, sizeof *e->num);
    e->den = bl_part_alloc(a, n, sizeof *e->den);
    e->var = bl_part_alloc(a, n, sizeof *e->var);
    e->ref = bl_part_alloc(a, n, sizeof *e->ref);
    e->ref_var = bl_part_alloc(a, n, sizeof *e->ref_var);
    e->efac = bl_part_alloc(a, n, sizeof *e->efac);
    e->last = bl_part_alloc(a, n, sizeof *e->last);
    e->nnoise = bl_part_alloc(a, n, sizeof *e->nnoise);
    e->run_sum = bl_part_alloc(a, n, sizeof *e->run_sum);
    e->run = bl_part_alloc(a, n, sizeof *e->run);
    e->changes = bl_part_alloc(a, n, sizeof *e->changes);
    if (e->speed == NULL || e->num == NULL || e->den == NULL || e->var == NULL || e->ref == NULL ||
        e->ref_var == NULL || e->efac == NULL || e->last == NULL || e->nnoise == NULL ||
        e->run_sum == NULL || e->run == NULL || e->changes == NULL) {
        goto fail;
    }
    for (int r = 0; r < ranks; r++) {
        e->speed[r] = 0.0;
        e->num[r] = 0.0;
        e->den[r] = 0.0;
        e->var[r] = 0.0;
        e->ref[r] = 0.0;
        e->ref_var[r] = 0.0;
        e->efac[r] = 1.0;
        e->run_sum[r] = 0.0;
        e->run[r] = 0;
        e->last[r] = 0.0; /* set at the first observation; zeroed for the saved state */
        e->nnoise[r] = 0;
    }
    *out = e;
    return 0;
fail:
    bl_estimator_destroy(e);
    return -1;
}

int bl_part_estimator_walk(bl_estimator_t *e, bl_part_state_t *s)
{
    if (!bl_part_state_check(s, e->ranks)) {
        return 0;
    }
    size_t n = (size_t)e->ranks;
    double *doubles[] = {e->speed,   e->num,  e->den,  e->var,    e->ref,
                         e->ref_var, e->efac, e->last, e->run_sum};
    for (size_t k = 0; k < sizeof doubles / sizeof doubles[0]; k++) {
        bl_part_state_field(s, doubles[k], n * sizeof(double));
    }
    bl_part_state_field(s, e->nnoise, n * sizeof *e->nnoise);
    bl_part_state_field(s, e->run, n * sizeof *e->run);
    e->nchanges = s->in != NULL ? 0 : e->nchanges;
    return 1;
}

int bl_part_estimator_valid(const bl_estimator_t *e)
{
    for (int r = 0; r < e->ranks; r++) {
        double v[] = {e->speed[r], e->num[r],     e->den[r],  e->var[r],
                      e->ref[r],   e->ref_var[r], e->efac[r], e->last[r]};
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
            if (!isfinite(v[k]) || v[k] < 0.0) {
                return 0;
            }
        }
        /* What updates can produce: a run shorter than a change (it ends in
         * one), measured from a positive reference; a bounded noise count,
         * at least 1 once the rank has a speed. */
        const int most = e->params.change_windows; /* compared unnegated: run may be INT_MIN */
        if (!isfinite(e->run_sum[r]) || e->nnoise[r] < 0 || e->nnoise[r] > (1 << 30) ||
            e->run[r] >= most || e->run[r] <= -most || (e->run[r] != 0 && !(e->ref[r] > 0.0)) ||
            (e->speed[r] > 0.0 && e->nnoise[r] < 1)) {
            return 0;
        }
    }
    return 1;
}

void bl_estimator_destroy(bl_estimator_t *e)
{
    if (e == NULL) {
        return;
    }
    bl_part_allocator_t a = e->a;
    bl_part_free(&a, e->speed);
    bl_part_free(&a, e->num);
    bl_part_free(&a, e->den);
    bl_part_free(&a, e->var);
    bl_part_free(&a, e->ref);
    bl_part_free(&a, e->ref_var);
    bl_part_free(&a, e->efac);
    bl_part_free(&a, e->last);
    bl_part_free(&a, e->nnoise);
    bl_part_free(&a, e->run_sum);
    bl_part_free(&a, e->run);
    bl_part_free(&a, e->changes);
    bl_part_free(&a, e);
}

static int obs_valid(const bl_rank_obs_t *o)
{
    return o->samples >= 0.0 && isfinite(o->samples) && o->compute_s >= 0.0 &&
           isfinite(o->compute_s) && o->comm_s >= 0.0 && isfinite(o->comm_s) && o->wait_s >= 0.0 &&
           isfinite(o->wait_s);
}

/* Adds a noise sample (squared relative deviation): equal weights for the
 * first samples, then NOISE_WEIGHT. */
static void add_noise(bl_estimator_t *e, int r, double sample)
{
    e->nnoise[r]++;
    double w = 1.0 / (double)e->nnoise[r];
    w = w > NOISE_WEIGHT ? w : NOISE_WEIGHT;
    e->var[r] += w * (sample - e->var[r]);
}

/* The EMAs' step (a window of `samples` in `seconds`), and the
 * uncertainty's. */
static void move_estimate(bl_estimator_t *e, int r, double samples, double seconds)
{
    const double alpha = e->params.alpha;
    e->num[r] += alpha * (samples - e->num[r]);
    e->den[r] += alpha * (seconds - e->den[r]);
    e->speed[r] = e->num[r] / e->den[r];
    e->efac[r] = (1.0 - alpha) * (1.0 - alpha) * e->efac[r] + alpha * alpha;
}

/* One rank's window: `samples` in `seconds`, at speed x = samples /
 * seconds (finite, > 0). Returns 1 and fills *change when it completes a
 * change. */
static int observe(bl_estimator_t *e, int r, double samples, double seconds, double x,
                   bl_speed_change_t *change)
{
    if (e->speed[r] == 0.0) {
        e->speed[r] = x; /* the first observation initialises */
        e->num[r] = samples;
        e->den[r] = seconds;
        e->var[r] = NOISE_PRIOR * NOISE_PRIOR;
        e->nnoise[r] = 1;
        e->efac[r] = 1.0;
        e->last[r] = x;
        e->run[r] = 0;
        return 0;
    }
    /* During a run, deviations are judged against the estimate and noise
     * from before it: the EMA drifting toward the new level must not hide a
     * shift that needs more than two windows to confirm. */
    double reference = e->run[r] != 0 ? e->ref[r] : e->speed[r];
    double var = e->run[r] != 0 ? e->ref_var[r] : e->var[r];
    double sigma = sqrt(var * (1.0 + e->efac[r]));
    sigma = sigma > SIGMA_FLOOR ? sigma : SIGMA_FLOOR;
    double edge = e->params.change_sigma * sigma;
    double d = (x - reference) / reference;
    double step = (x - e->last[r]) / e->speed[r];
    double sample = step * step / 2.0;
    e->last[r] = x;
    if (fabs(d) <= edge) {
        e->run[r] = 0; /* back in band: what went before was an outlier */
        move_estimate(e, r, samples, seconds);
        add_noise(e, r, sample);
        return 0;
    }
    int dir = d > 0.0 ? 1 : -1;
    if (e->run[r] == 0) {
        e->ref[r] = e->speed[r];
        e->ref_var[r] = e->var[r];
    }
    if (e->run[r] == 0 || (e->run[r] > 0) != (dir > 0)) {
        e->run[r] = dir; /* a new run (the other side's run is dropped) */
        e->run_sum[r] = x;
    } else {
        e->run[r] += dir;
        e->run_sum[r] += x;
    }
    int length = e->run[r] > 0 ? e->run[r] : -e->run[r];
    if (length >= e->params.change_windows) {
        double level = e->run_sum[r] / (double)length;
        change->rank = r;
        change->factor = level / e->ref[r];
        e->speed[r] = level;
        e->num[r] = level * e->den[r]; /* the ratio jumps to the new level */
        e->var[r] = e->ref_var[r];
        e->efac[r] = 1.0 / (double)length;
        e->run[r] = 0;
        return 1;
    }
    move_estimate(e, r, samples, seconds);
    add_noise(e, r, sample < edge * edge ? sample : edge * edge);
    return 0;
}

/* Returns -1 (and changes nothing) when e or obs is NULL or an observation
 * is negative or not finite. */
int bl_estimator_update(bl_estimator_t *e, const bl_rank_obs_t *obs, bl_speed_change_t *changes,
                        int max_changes)
{
    if (e == NULL || obs == NULL) {
        return -1;
    }
    for (int r = 0; r < e->ranks; r++) {
        if (!obs_valid(&obs[r])) {
            return -1;
        }
    }
    e->nchanges = 0;
    for (int r = 0; r < e->ranks; r++) {
        /* No samples or no time: nothing learnt; the estimate stays. */
        if (!(obs[r].samples > 0.0) || !(obs[r].compute_s > 0.0)) {
            continue;
        }
        double x = obs[r].samples / obs[r].compute_s;
        if (!(x > 0.0) || !isfinite(x)) {
            continue;
        }
        e->nchanges += observe(e, r, obs[r].samples, obs[r].compute_s, x, &e->changes[e->nchanges]);
    }
    return bl_estimator_last_changes(e, changes, max_changes);
}

int bl_estimator_last_changes(const bl_estimator_t *e, bl_speed_change_t *changes, int max)
{
    if (e == NULL) {
        return 0;
    }
    if (changes != NULL) {
        for (int i = 0; i < e->nchanges && i < max; i++) {
            changes[i] = e->changes[i];
        }
    }
    return e->nchanges;
}

const double *bl_estimator_speeds(const bl_estimator_t *e)
{
    return e != NULL ? e->speed : NULL;
}

double bl_part_estimator_noise(const bl_estimator_t *e)
{
    double sum = 0.0;
    int n = 0;
    for (int r = 0; r < e->ranks; r++) {
        if (e->speed[r] > 0.0) {
            sum += sqrt(e->var[r]);
            n++;
        }
    }
    return n > 0 ? sum / (double)n : 0.0;
}

void bl_part_estimator_rank_noise(const bl_estimator_t *e, double *out)
{
    for (int r = 0; r < e->ranks; r++) {
        out[r] = e->speed[r] > 0.0 ? sqrt(e->var[r]) : 0.0;
    }
}

double bl_part_estimator_error(const bl_estimator_t *e)
{
    double sum = 0.0;
    int n = 0;
    for (int r = 0; r < e->ranks; r++) {
        if (e->speed[r] > 0.0) {
            sum += sqrt(e->var[r] * e->efac[r]);
            n++;
        }
    }
    return n > 0 ? sum / (double)n : 0.0;
}
