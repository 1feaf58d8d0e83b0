/* Controller settings scored on every window (tuner.h). */
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "tuner.h"

/* The history the predictors keep: the last three windows. */
#define HISTORY 3
/* The EMA weights of the ema0.5 and slow settings. */
#define EMA_FAST 0.5
#define EMA_SLOW 0.1

struct bl_part_tuner {
    bl_part_allocator_t a;
    int ranks;
    long batch;
    const long *lo; /* the policy's bounds (not owned), or NULL */
    const long *hi;
    double *hist;    /* HISTORY × ranks: measured speeds, newest first; 0: not yet measured */
    double *fast;    /* ranks: the EMA of weight EMA_FAST */
    double *slow;    /* ranks: the EMA of weight EMA_SLOW */
    double *samples; /* ranks: the EMA of weight EMA_SLOW of a window\'s samples */
    double *seconds; /* ranks: the same of its compute seconds */
    long *plan;      /* BL_TUNE_SETTINGS × ranks: the plan each setting runs next */
    double *speed;   /* ranks: scratch, the measured speeds, then one setting's predicted ones */
    double *rem;     /* ranks: rounding scratch */
    long *target;    /* ranks: scratch, one setting's proportional plan */
};

static const char *const setting_names[BL_TUNE_SETTINGS] = {
    "proportional", "even", "last", "median3", "ema0.5", "slow", "trend"};

const char *bl_part_tuner_name(int k)
{
    return k >= 0 && k < BL_TUNE_SETTINGS ? setting_names[k] : "?";
}

bl_part_tuner_t *bl_part_tuner_create(int ranks, long batch, const long *lo, const long *hi,
                                      const long *even, const bl_part_allocator_t *a)
{
    bl_part_tuner_t *t = bl_part_alloc(a, 1, sizeof *t);
    if (t == NULL) {
        return NULL;
    }
    memset(t, 0, sizeof *t);
    if (a != NULL) {
        t->a = *a;
    }
    const size_t n = (size_t)ranks;
    t->ranks = ranks;
    t->batch = batch;
    t->lo = lo;
    t->hi = hi;
    t->hist = bl_part_alloc(a, HISTORY * n, sizeof *t->hist);
    t->fast = bl_part_alloc(a, n, sizeof *t->fast);
    t->slow = bl_part_alloc(a, n, sizeof *t->slow);
    t->samples = bl_part_alloc(a, n, sizeof *t->samples);
    t->seconds = bl_part_alloc(a, n, sizeof *t->seconds);
    t->plan = bl_part_alloc(a, BL_TUNE_SETTINGS * n, sizeof *t->plan);
    t->speed = bl_part_alloc(a, n, sizeof *t->speed);
    t->rem = bl_part_alloc(a, n, sizeof *t->rem);
    t->target = bl_part_alloc(a, n, sizeof *t->target);
    if (t->hist == NULL || t->fast == NULL || t->slow == NULL || t->samples == NULL ||
        t->seconds == NULL || t->plan == NULL || t->speed == NULL || t->rem == NULL ||
        t->target == NULL) {
        bl_part_tuner_destroy(t);
        return NULL;
    }
    memset(t->hist, 0, HISTORY * n * sizeof *t->hist);
    memset(t->fast, 0, n * sizeof *t->fast);
    memset(t->slow, 0, n * sizeof *t->slow);
    memset(t->samples, 0, n * sizeof *t->samples);
    memset(t->seconds, 0, n * sizeof *t->seconds);
    for (int k = 0; k < BL_TUNE_SETTINGS; k++) {
        memcpy(t->plan + (size_t)k * n, even, n * sizeof *even);
    }
    return t;
}

void bl_part_tuner_destroy(bl_part_tuner_t *t)
{
    if (t == NULL) {
        return;
    }
    bl_part_allocator_t a = t->a;
    bl_part_free(&a, t->hist);
    bl_part_free(&a, t->fast);
    bl_part_free(&a, t->slow);
    bl_part_free(&a, t->samples);
    bl_part_free(&a, t->seconds);
    bl_part_free(&a, t->plan);
    bl_part_free(&a, t->speed);
    bl_part_free(&a, t->rem);
    bl_part_free(&a, t->target);
    bl_part_free(&a, t);
}

const long *bl_part_tuner_plan(const bl_part_tuner_t *t, int k)
{
    return t->plan + (size_t)k * (size_t)t->ranks;
}

/* A window's speed (samples per second of compute), or 0 when the window
 * did not measure the rank (no samples, no time). */
static double window_speed(const bl_rank_obs_t *o)
{
    double x = o->samples > 0.0 && o->compute_s > 0.0 ? o->samples / o->compute_s : 0.0;
    return x > 0.0 && isfinite(x) ? x : 0.0;
}

static double median3(double a, double b, double c)
{
    double lo = a < b ? a : b;
    double hi = a < b ? b : a;
    return c < lo ? lo : (c > hi ? hi : c);
}

/* Setting k's predicted speeds into t->speed, the unknown ones (0) at the
 * mean of the known, or all 1 when none is known. */
static void predict(bl_part_tuner_t *t, int k, const bl_part_tune_input_t *in)
{
    const int n = t->ranks;
    const double *h0 = t->hist, *h1 = t->hist + n, *h2 = t->hist + 2 * (size_t)n;
    double sum = 0.0;
    int known = 0;
    for (int r = 0; r < n; r++) {
        double s = 0.0;
        switch (k) {
        case BL_TUNE_PROPORTIONAL:
            s = in->proportional[r];
            break;
        case BL_TUNE_LAST:
            s = h0[r];
            break;
        case BL_TUNE_MEDIAN3:
            s = median3(h0[r], h1[r], h2[r]);
            break;
        case BL_TUNE_EMA50:
            s = t->fast[r];
            break;
        case BL_TUNE_SLOW:
            s = t->slow[r];
            break;
        case BL_TUNE_RATIO:
            s = t->seconds[r] > 0.0 ? t->samples[r] / t->seconds[r] : 0.0;
            break;
        case BL_TUNE_TREND: {
            /* One window ahead on the line through the last two, within a
             * factor of two of the last (a noisy pair must not fling it). */
            s = 2.0 * h0[r] - h1[r];
            s = s < 0.5 * h0[r] ? 0.5 * h0[r] : (s > 2.0 * h0[r] ? 2.0 * h0[r] : s);
            break;
        }
        default:
            break;
        }
        t->speed[r] = s;
        if (s > 0.0) {
            sum += s;
            known++;
        }
    }
    double mean = known > 0 ? sum / (double)known : 1.0;
    for (int r = 0; r < n; r++) {
        t->speed[r] = t->speed[r] > 0.0 ? t->speed[r] : mean;
    }
}

static void remember(bl_part_tuner_t *t, const bl_part_tune_input_t *in)
{
    const int n = t->ranks;
    double *h0 = t->hist, *h1 = t->hist + n, *h2 = t->hist + 2 * (size_t)n;
    for (int r = 0; r < n; r++) {
        const bl_rank_obs_t *o = &in->obs[r];
        double x = window_speed(o);
        if (x == 0.0) {
            continue; /* not measured: the predictors keep what they had */
        }
        if (h0[r] == 0.0) {
            h0[r] = h1[r] = h2[r] = t->fast[r] = t->slow[r] = x;
            t->samples[r] = o->samples;
            t->seconds[r] = o->compute_s;
            continue;
        }
        h2[r] = h1[r];
        h1[r] = h0[r];
        h0[r] = x;
        t->fast[r] += EMA_FAST * (x - t->fast[r]);
        t->slow[r] += EMA_SLOW * (x - t->slow[r]);
        t->samples[r] += EMA_SLOW * (o->samples - t->samples[r]);
        t->seconds[r] += EMA_SLOW * (o->compute_s - t->seconds[r]);
    }
}

void bl_part_tuner_observe(bl_part_tuner_t *t, const bl_part_tune_input_t *in, double *score)
{
    const int n = t->ranks;
    /* Scores: each plan's step at the measured speeds over the best step,
     * batch / Σ speeds (every rank busy all the step). */
    double total = 0.0;
    for (int r = 0; r < n; r++) {
        double x = window_speed(&in->obs[r]);
        t->speed[r] = x > 0.0 ? x : in->fallback[r]; /* predict() reuses it below */
        total += t->speed[r];
    }
    for (int k = 0; k < BL_TUNE_SETTINGS; k++) {
        double step = bl_plan_step_time(n, bl_part_tuner_plan(t, k), t->speed);
        double best = total > 0.0 ? (double)t->batch / total : 0.0;
        score[k] = best > 0.0 && step > best ? step / best : 1.0;
    }
    remember(t, in);
    for (int k = 0; k < BL_TUNE_SETTINGS; k++) {
        if (k == BL_TUNE_EVEN) {
            continue;
        }
        long *plan = t->plan + (size_t)k * (size_t)n;
        predict(t, k, in);
        /* Valid speeds and bounds checked at the policy's creation: cannot fail. */
        bl_part_plan(t->batch, n, t->speed, t->lo, t->hi, t->target, t->rem);
        double now = bl_plan_step_time(n, plan, t->speed);
        double then = bl_plan_step_time(n, t->target, t->speed);
        double gain = now > 0.0 ? (now - then) / now : 0.0;
        int banded = k == BL_TUNE_PROPORTIONAL || k == BL_TUNE_SLOW || k == BL_TUNE_RATIO;
        if (gain > (banded ? in->threshold : 0.0)) {
            memcpy(plan, t->target, (size_t)n * sizeof *plan);
        }
    }
}

int bl_part_tuner_walk(bl_part_tuner_t *t, bl_part_state_t *s)
{
    if (!bl_part_state_check(s, t->ranks) || !bl_part_state_check(s, BL_TUNE_SETTINGS)) {
        return 0;
    }
    const size_t n = (size_t)t->ranks;
    bl_part_state_field(s, t->hist, HISTORY * n * sizeof *t->hist);
    bl_part_state_field(s, t->fast, n * sizeof *t->fast);
    bl_part_state_field(s, t->slow, n * sizeof *t->slow);
    bl_part_state_field(s, t->samples, n * sizeof *t->samples);
    bl_part_state_field(s, t->seconds, n * sizeof *t->seconds);
    bl_part_state_field(s, t->plan, BL_TUNE_SETTINGS * n * sizeof *t->plan);
    return 1;
}

int bl_part_tuner_valid(const bl_part_tuner_t *t)
{
    const size_t n = (size_t)t->ranks;
    for (size_t i = 0; i < HISTORY * n; i++) {
        if (!isfinite(t->hist[i]) || t->hist[i] < 0.0) {
            return 0;
        }
    }
    for (size_t r = 0; r < n; r++) {
        if (!isfinite(t->fast[r]) || t->fast[r] < 0.0 || !isfinite(t->slow[r]) ||
            t->slow[r] < 0.0 || !isfinite(t->samples[r]) || t->samples[r] < 0.0 ||
            !isfinite(t->seconds[r]) || t->seconds[r] < 0.0) {
            return 0;
        }
    }
    for (int k = 0; k < BL_TUNE_SETTINGS; k++) {
        const long *plan = bl_part_tuner_plan(t, k);
        long sum = 0;
        for (size_t r = 0; r < n; r++) {
            if (plan[r] < 0 || plan[r] > t->batch || (t->lo != NULL && plan[r] < t->lo[r]) ||
                (t->hi != NULL && plan[r] > t->hi[r])) {
                return 0;
            }
            sum += plan[r];
        }
        if (sum != t->batch) {
            return 0;
        }
    }
    return 1;
}
