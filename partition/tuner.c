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
    double *seen;    /* ranks: the windows that measured the rank, at most HISTORY */
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
    "proportional", "even", "last", "median3", "ema0.5", "slow", "trend", "ratio", "sparse"};

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
    t->seen = bl_part_alloc(a, n, sizeof *t->seen);
    t->fast = bl_part_alloc(a, n, sizeof *t->fast);
    t->slow = bl_part_alloc(a, n, sizeof *t->slow);
    t->samples = bl_part_alloc(a, n, sizeof *t->samples);
    t->seconds = bl_part_alloc(a, n, sizeof *t->seconds);
    t->plan = bl_part_alloc(a, BL_TUNE_SETTINGS * n, sizeof *t->plan);
    t->speed = bl_part_alloc(a, n, sizeof *t->speed);
    t->rem = bl_part_alloc(a, n, sizeof *t->rem);
    t->target = bl_part_alloc(a, n, sizeof *t->target);
    if (t->hist == NULL || t->seen == NULL || t->fast == NULL || t->slow == NULL ||
        t->samples == NULL || t->seconds == NULL || t->plan == NULL || t->speed == NULL ||
        t->rem == NULL || t->target == NULL) {
        bl_part_tuner_destroy(t);
        return NULL;
    }
    memset(t->hist, 0, HISTORY * n * sizeof *t->hist);
    memset(t->seen, 0, n * sizeof *t->seen);
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
    bl_part_free(&a, t->seen);
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

/* The median of n values (n >= 1), which scratch holds and which it
 * reorders (a selection, O(n) on average). */
static double median_of(double *scratch, int n)
{
    int lo = 0, hi = n - 1, k = n / 2;
    while (lo < hi) {
        double pivot = scratch[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (scratch[i] < pivot) {
                i++;
            }
            while (scratch[j] > pivot) {
                j--;
            }
            if (i <= j) {
                double x = scratch[i];
                scratch[i++] = scratch[j];
                scratch[j--] = x;
            }
        }
        if (k <= j) {
            hi = j;
        } else if (k >= i) {
            lo = i;
        } else {
            break;
        }
    }
    double upper = scratch[k];
    if (n % 2 != 0) {
        return upper;
    }
    double lower = scratch[0]; /* the largest of scratch[0, k), all <= upper */
    for (int r = 1; r < k; r++) {
        lower = scratch[r] > lower ? scratch[r] : lower;
    }
    return 0.5 * (lower + upper);
}

/* Keeps only the differences between ranks that noise cannot explain, in
 * t->speed, which holds each rank's median of its last three windows.
 * noise[r] is the relative sigma of one window's speed; σ below is the
 * rank's or the ranks' median noise, whichever is larger (a rank's own
 * estimate rests on few windows, and one that happened to look calm must
 * not make its chance deviations count). A median of three is off by
 * about sqrt(π/6)·σ (the median's efficiency), and unlike a mean, one
 * heavy-tailed window does not move it. Against the median m of all the
 * ranks' medians, with z = sqrt(2 ln n) (about the largest of n normal
 * errors) but at least 3:
 * - a rank whose last window was slower than m by more than z·σ runs at
 *   the lesser of its median and its last window: a slow window this far
 *   out is rarely noise, and taking a rank for slower than it is costs
 *   little (its few samples spread over the rest);
 * - a rank off m by more than z·sqrt(π/6)·σ runs at its median;
 * - any other rank is taken to run at m.
 * So equal ranks under noise stay on the even split, and a rank that
 * truly differs, even one among thousands, moves within a few windows.
 * scratch holds n doubles. */
static void sparsify(bl_part_tuner_t *t, const double *noise, double *scratch)
{
    const int n = t->ranks;
    const double *h0 = t->hist; /* the last window's speeds */
    double *speed = t->speed;
    memcpy(scratch, noise, (size_t)n * sizeof *scratch);
    const double typical = median_of(scratch, n);
    memcpy(scratch, speed, (size_t)n * sizeof *scratch);
    const double m = median_of(scratch, n);
    const double spread = n > 1 ? sqrt(2.0 * log((double)n)) : 0.0;
    const double z = spread > 3.0 ? spread : 3.0;
    for (int r = 0; r < n; r++) {
        const double sigma = noise[r] > typical ? noise[r] : typical;
        const double band = z * 0.7236 /* sqrt(π/6) */ * sigma * m;
        if (h0[r] > 0.0 && h0[r] < m * (1.0 - z * sigma)) {
            speed[r] = h0[r] < speed[r] ? h0[r] : speed[r];
        } else if (fabs(speed[r] - m) <= band) {
            speed[r] = m;
        }
    }
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
        case BL_TUNE_SPARSE:
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
    if (k == BL_TUNE_SPARSE) {
        sparsify(t, in->noise, t->rem);
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
        t->seen[r] = t->seen[r] < HISTORY ? t->seen[r] + 1.0 : HISTORY;
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
        int banded = k == BL_TUNE_PROPORTIONAL || k == BL_TUNE_SLOW || k == BL_TUNE_RATIO ||
                     k == BL_TUNE_SPARSE;
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
    bl_part_state_field(s, t->seen, n * sizeof *t->seen);
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
        if (!(t->seen[r] >= 0.0 && t->seen[r] <= HISTORY) || !isfinite(t->fast[r]) ||
            t->fast[r] < 0.0 || !isfinite(t->slow[r]) || t->slow[r] < 0.0 ||
            !isfinite(t->samples[r]) || t->samples[r] < 0.0 || !isfinite(t->seconds[r]) ||
            t->seconds[r] < 0.0) {
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
