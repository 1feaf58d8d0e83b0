/* ballast-sim: runs the shard policies against simulated clusters (sim.h)
 * and prints, per run, a table row and the machine-readable "sim:" line;
 * with --stages or --layers, the stage-map policies against a simulated
 * pipeline (pipe_sim.h), with a "pipe:" line instead. The one clock of the
 * simulator lives here: clock_gettime times each policy decision. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flags.h"
#include "pipe_sim.h"
#include "policy.h"
#include "sim.h"

#define MAX_RANKS 1048576L /* 16 × the 65,536 the simulator is meant for */
#define MAX_STEPS 10000000L
#define MAX_MICRO 1000000L

static const char usage_text[] =
    "usage: ballast-sim [options]\n"
    "       ballast-sim --stages S [--layers L] [options]    (pipeline mode)\n"
    "Runs the shard-rebalancing policies against a simulated data-parallel cluster and\n"
    "compares each with the oracle (the plan from the true speeds, every step). With\n"
    "--stages or --layers, runs the stage-map policies against a simulated pipeline\n"
    "instead (see 'Pipeline mode' below).\n"
    "\n"
    "  --ranks N              simulated ranks, 1..1048576 (default 64)\n"
    "  --scenario NAME        a scenario, 'all', or 'list' to print their names (default\n"
    "                         all): fixed-1.5x, fixed-2x, fixed-4x, step-change, drift,\n"
    "                         spikes, noise, heavy-noise, periodic, node-slow, fail-slow,\n"
    "                         recovery (partition/sim/scenario.h says what each does)\n"
    "  --policy NAME          static, proportional, bandit, rl, oracle, or 'all' for the\n"
    "                         first four (default all)\n"
    "  --steps T              steps per run (default 400)\n"
    "  --seed S               seed of the scenario and the policy (default 1)\n"
    "  --batch B              global batch, samples per step (default 64 per rank)\n"
    "  --rebalance-every K    the policy decides after every K steps, on the window's summed\n"
    "                         observations and mean step time (default 5)\n"
    "  --bytes X              gradient bytes all-reduced per step (default 11653160: the\n"
    "                         784-1024-1024-1024-10 MLP in float32)\n"
    "  --alpha-us X           ring all-reduce latency per message, microseconds (default 5)\n"
    "  --bandwidth-gbs X      ring all-reduce link bandwidth, GB/s (default 10)\n"
    "  --deadband X           the policies' dead-band, a fraction of the step (default 0.02)\n"
    "  --load-policy FILE     rl: start from this Q-table (raw little-endian float64)\n"
    "  --save-policy FILE     rl: write the learned Q-table there after the runs (each rl run\n"
    "                         starts from the previous one's table, so '--scenario all'\n"
    "                         trains across scenarios); ballast-train --policy-file reads it\n"
    "  --help                 this text\n"
    "Pipeline mode (--stages or --layers; --ranks, --batch, --bytes, --alpha-us,\n"
    "--deadband, --load-policy and --save-policy do not apply; --policy oracle neither:\n"
    "the oracle runs beside every run):\n"
    "  --stages S             pipeline stages, 1..L (default 4, or L if fewer)\n"
    "  --layers L             layers, S..4096 (default 200)\n"
    "  --micro-batches M      micro-batches per step (default 4 per stage)\n"
    "  --horizon H            a migration must pay back within H steps (default 100)\n"
    "  --threshold X          proportional: least predicted relative gain to move, [0, 1)\n"
    "                         (default 0.02)\n"
    "  --latency-ms X         fixed cost of a migration besides its bytes, ms (default 1)\n"
    "  --bandwidth-gbs X      the link of migrations and activations, GB/s (default 10)\n"
    "  --steps, --seed, --scenario, --rebalance-every: as above\n"
    "\n"
    "Model: rank r computes its shard in shard / speed_r(t) seconds (times the noise\n"
    "factor); a step is the slowest compute plus a ring all-reduce,\n"
    "2(N-1)(alpha + (bytes/N)/bandwidth). Nominal speed 1000 samples/s.\n"
    "\n"
    "Figures (per run):\n"
    "  throughput_vs_oracle  (samples / time) over the oracle's, all steps\n"
    "  steady                the same over the last half, steps [T/2, T)\n"
    "  steady_c              steady, on compute time alone (the all-reduce left out)\n"
    "  cold_start_steps      the first step from which every step for 20 steps (or to the\n"
    "                        end) takes at most 1.05x the oracle's; 'never' if none\n"
    "  recovery_steps        the same counted from the scenario's change step (step-change\n"
    "                        T/2, node-slow T/4, recovery T/2; n/a otherwise)\n"
    "  regret_s              sum over steps of (step time - oracle step time), seconds\n"
    "  churn                 sum over decisions of the fraction of the batch moved\n"
    "  decision_us           mean wall time of one policy decision, microseconds\n"
    "  causal_vs_oracle      (sim-detail) the lag-1 oracle's throughput over the oracle's:\n"
    "                        each step the oracle's plan of the step before (step 0: the\n"
    "                        even split), perfect knowledge one step late; causal_regret_s\n"
    "                        is its regret\n"
    "Output: per run a table row, a 'sim-detail:' line and, last, the line\n"
    "sim: ranks=N scenario=NAME policy=NAME throughput_vs_oracle=X cold_start_steps=Y\n"
    "     recovery_steps=Z regret_s=R churn=C decision_us=D   (on one line)\n"
    "\n"
    "Pipeline model: L layers of seeded costs (1 ms x log-uniform [0.25, 4] per step at\n"
    "nominal speed; every 4th layer an activation at 1%), migration bytes proportional\n"
    "to cost (8 MB per ms), a seeded activation width per cut; the policy gets the\n"
    "costs with a +-30% error. Stage s (the scenario's rank s) takes T_s = its layers'\n"
    "cost / its speed (times the noise factor) + the bytes of its cuts / bandwidth; a\n"
    "step takes (M + S - 1) / M x max_s T_s. A changed map costs bytes moved /\n"
    "bandwidth + latency once. The run starts from the even split by the policy's costs.\n"
    "Figures (per run): max/mean  the final map's slowest over mean stage time on the\n"
    "  last step's true speeds (opt: the optimal map's, the floor the layers allow);\n"
    "  gap  the final slowest stage over the optimal map's; step/orc and steady  mean\n"
    "  step time (migrations included) over the oracle's (the optimal map every step,\n"
    "  moves free), all steps and the last half; static/orc  the initial map kept;\n"
    "  migr, unpaid  maps changed, and changes whose realised gain over the next H\n"
    "  steps (or to the end) was below their cost; decision ms  median and max.\n"
    "Output: per run a table row, a 'pipe-detail:' line and, last, the line\n"
    "pipe: stages=S layers=L scenario=NAME policy=NAME max_over_mean=X gap=G\n"
    "      step_over_oracle=R migrations=N unpaid=U decision_ms_median=D\n"
    "      decision_ms_max=E   (on one line)\n"
    "Exit status: 0 success, 1 a run failed (the message says why), 2 bad usage.\n";

typedef struct options {
    long ranks;
    long steps;
    long batch; /* 0: 64 per rank */
    long rebalance_every;
    uint64_t seed;
    double nbytes;
    double alpha_us;
    double bandwidth_gbs;
    double deadband;
    int scenario; /* -1: all */
    int policy;   /* -1: all */
    int list_scenarios;
    int list_policies;
    int help;
    const char *load_policy;
    const char *save_policy;
    /* Pipeline mode (when --stages or --layers is given). */
    long stages;
    long layers;
    long micro_batches; /* 0: 4 per stage */
    double horizon;
    double threshold;
    double latency_ms;
    unsigned long given; /* bit (opt − OPT_RANKS): the flag was given */
} options_t;

enum {
    OPT_RANKS = 256,
    OPT_SCENARIO,
    OPT_POLICY,
    OPT_STEPS,
    OPT_SEED,
    OPT_BATCH,
    OPT_REBALANCE_EVERY,
    OPT_BYTES,
    OPT_ALPHA_US,
    OPT_BANDWIDTH_GBS,
    OPT_DEADBAND,
    OPT_LOAD_POLICY,
    OPT_SAVE_POLICY,
    OPT_HELP,
    OPT_STAGES,
    OPT_LAYERS,
    OPT_MICRO_BATCHES,
    OPT_HORIZON,
    OPT_THRESHOLD,
    OPT_LATENCY_MS,
};

/* Indexed by opt − OPT_RANKS. */
static const struct option long_options[] = {
    {"ranks", required_argument, NULL, OPT_RANKS},
    {"scenario", required_argument, NULL, OPT_SCENARIO},
    {"policy", required_argument, NULL, OPT_POLICY},
    {"steps", required_argument, NULL, OPT_STEPS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"rebalance-every", required_argument, NULL, OPT_REBALANCE_EVERY},
    {"bytes", required_argument, NULL, OPT_BYTES},
    {"alpha-us", required_argument, NULL, OPT_ALPHA_US},
    {"bandwidth-gbs", required_argument, NULL, OPT_BANDWIDTH_GBS},
    {"deadband", required_argument, NULL, OPT_DEADBAND},
    {"load-policy", required_argument, NULL, OPT_LOAD_POLICY},
    {"save-policy", required_argument, NULL, OPT_SAVE_POLICY},
    {"help", no_argument, NULL, OPT_HELP},
    {"stages", required_argument, NULL, OPT_STAGES},
    {"layers", required_argument, NULL, OPT_LAYERS},
    {"micro-batches", required_argument, NULL, OPT_MICRO_BATCHES},
    {"horizon", required_argument, NULL, OPT_HORIZON},
    {"threshold", required_argument, NULL, OPT_THRESHOLD},
    {"latency-ms", required_argument, NULL, OPT_LATENCY_MS},
    {NULL, 0, NULL, 0},
};

static int parse_seed(const char *flag, const char *text, uint64_t *out, char *err, size_t errlen)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0') {
        return flags_fail(err, errlen, "%s: '%s' is not a non-negative integer", flag, text);
    }
    if (errno == ERANGE) {
        return flags_fail(err, errlen, "%s: %s does not fit in 64 bits", flag, text);
    }
    *out = (uint64_t)v;
    return 0;
}

static int apply(int opt, const char *flag, const char *arg, options_t *o, char *err, size_t errlen)
{
    switch (opt) {
    case OPT_RANKS:
        return flags_long(flag, arg, 1, MAX_RANKS, &o->ranks, err, errlen);
    case OPT_SCENARIO:
        if (strcmp(arg, "list") == 0) {
            o->list_scenarios = 1;
            return 0;
        }
        if (strcmp(arg, "all") == 0) {
            o->scenario = -1;
            return 0;
        }
        o->scenario = bl_scenario_parse(arg);
        if (o->scenario < 0) {
            return flags_fail(err, errlen, "%s: unknown scenario '%s' (see --scenario list)", flag,
                              arg);
        }
        return 0;
    case OPT_POLICY:
        if (strcmp(arg, "list") == 0) {
            o->list_policies = 1;
            return 0;
        }
        if (strcmp(arg, "all") == 0) {
            o->policy = -1;
            return 0;
        }
        o->policy = bl_sim_policy_parse(arg);
        if (o->policy < 0) {
            return flags_fail(
                err, errlen,
                "%s: unknown policy '%s' (static, proportional, bandit, rl, oracle, all)", flag,
                arg);
        }
        return 0;
    case OPT_STEPS:
        return flags_long(flag, arg, 1, MAX_STEPS, &o->steps, err, errlen);
    case OPT_SEED:
        return parse_seed(flag, arg, &o->seed, err, errlen);
    case OPT_BATCH:
        return flags_long(flag, arg, 1, LONG_MAX / 4, &o->batch, err, errlen);
    case OPT_REBALANCE_EVERY:
        return flags_long(flag, arg, 1, MAX_STEPS, &o->rebalance_every, err, errlen);
    case OPT_BYTES:
        return flags_double(flag, arg, 0.0, 1e15, 0, &o->nbytes, err, errlen);
    case OPT_ALPHA_US:
        return flags_double(flag, arg, 0.0, 1e9, 0, &o->alpha_us, err, errlen);
    case OPT_BANDWIDTH_GBS:
        if (flags_double(flag, arg, 0.0, 1e9, 0, &o->bandwidth_gbs, err, errlen) != 0) {
            return -1;
        }
        if (!(o->bandwidth_gbs > 0.0)) {
            return flags_fail(err, errlen, "%s: the bandwidth must be positive", flag);
        }
        return 0;
    case OPT_DEADBAND:
        return flags_double(flag, arg, 0.0, 0.99, 0, &o->deadband, err, errlen);
    case OPT_LOAD_POLICY:
        o->load_policy = arg;
        return 0;
    case OPT_SAVE_POLICY:
        o->save_policy = arg;
        return 0;
    case OPT_HELP:
        o->help = 1;
        return 0;
    case OPT_STAGES:
        return flags_long(flag, arg, 1, BL_PIPE_SIM_MAX_LAYERS, &o->stages, err, errlen);
    case OPT_LAYERS:
        return flags_long(flag, arg, 1, BL_PIPE_SIM_MAX_LAYERS, &o->layers, err, errlen);
    case OPT_MICRO_BATCHES:
        return flags_long(flag, arg, 1, MAX_MICRO, &o->micro_batches, err, errlen);
    case OPT_HORIZON:
        if (flags_double(flag, arg, 0.0, 1e12, 0, &o->horizon, err, errlen) != 0) {
            return -1;
        }
        if (!(o->horizon > 0.0)) {
            return flags_fail(err, errlen, "%s: the horizon must be positive", flag);
        }
        return 0;
    case OPT_THRESHOLD:
        return flags_double(flag, arg, 0.0, 1.0, 1, &o->threshold, err, errlen);
    case OPT_LATENCY_MS:
        return flags_double(flag, arg, 0.0, 1e9, 0, &o->latency_ms, err, errlen);
    default:
        return flags_fail(err, errlen, "internal: unhandled option %d", opt);
    }
}

static int given(const options_t *o, int opt)
{
    return (o->given >> (opt - OPT_RANKS)) & 1UL;
}

/* Pipeline mode: --stages or --layers was given. */
static int pipeline_mode(const options_t *o)
{
    return given(o, OPT_STAGES) || given(o, OPT_LAYERS);
}

static int parse_options(int argc, char **argv, options_t *o, char *err, size_t errlen)
{
    *o = (options_t){
        .ranks = 64,
        .steps = 400,
        .batch = 0,
        .rebalance_every = 5,
        .seed = 1,
        .nbytes = BL_SIM_GRADIENT_BYTES,
        .alpha_us = BL_SIM_ALPHA_S * 1e6,
        .bandwidth_gbs = 1e-9 / BL_SIM_BETA_S_PER_B,
        .deadband = 0.02,
        .scenario = -1,
        .policy = -1,
        .stages = 4,
        .layers = 200,
        .micro_batches = 0,
        .horizon = 100.0,
        .threshold = 0.02,
        .latency_ms = 1.0,
        .given = 0,
    };
    char flag[64];
    flags_begin();
    for (;;) {
        int opt = flags_next(argc, argv, long_options, OPT_RANKS, flag, sizeof flag, err, errlen);
        if (opt == -1) {
            break;
        }
        if (opt == -2 || apply(opt, flag, optarg, o, err, errlen) != 0) {
            return -1;
        }
        o->given |= 1UL << (opt - OPT_RANKS);
    }
    if (pipeline_mode(o)) {
        /* The flags of the other mode, named. */
        static const int shard_only[] = {OPT_RANKS,      OPT_BATCH,    OPT_BYTES,
                                         OPT_ALPHA_US,   OPT_DEADBAND, OPT_LOAD_POLICY,
                                         OPT_SAVE_POLICY};
        for (size_t k = 0; k < sizeof shard_only / sizeof shard_only[0]; k++) {
            if (given(o, shard_only[k])) {
                return flags_fail(err, errlen,
                                  "--%s: not in pipeline mode (--stages, --layers); see --help",
                                  long_options[shard_only[k] - OPT_RANKS].name);
            }
        }
        if (o->policy == BL_SIM_ORACLE) {
            return flags_fail(err, errlen,
                              "--policy: oracle is not a pipeline policy (every pipeline run "
                              "is compared with the oracle)");
        }
        if (!given(o, OPT_STAGES) && o->stages > o->layers) {
            o->stages = o->layers; /* the default, 4, on fewer layers */
        }
        if (o->stages > o->layers) {
            return flags_fail(err, errlen, "--stages: %ld is more than --layers %ld", o->stages,
                              o->layers);
        }
    } else {
        static const int pipe_only[] = {OPT_MICRO_BATCHES, OPT_HORIZON, OPT_THRESHOLD,
                                        OPT_LATENCY_MS};
        for (size_t k = 0; k < sizeof pipe_only / sizeof pipe_only[0]; k++) {
            if (given(o, pipe_only[k])) {
                return flags_fail(err, errlen, "--%s: pipeline mode only (give --stages)",
                                  long_options[pipe_only[k] - OPT_RANKS].name);
            }
        }
    }
    if (o->rebalance_every > o->steps) {
        return flags_fail(err, errlen,
                          "--rebalance-every: %ld is more than --steps %ld: no decision",
                          o->rebalance_every, o->steps);
    }
    return 0;
}

/* The program's clock for bl_sim_config_t.clock: monotonic seconds. */
static double monotonic_s(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A step count, or the word for its absence. */
static const char *steps_text(long steps, int applicable, char *buf, size_t buflen)
{
    if (!applicable) {
        return "n/a";
    }
    if (steps < 0) {
        return "never";
    }
    snprintf(buf, buflen, "%ld", steps);
    return buf;
}

static void print_run(const bl_sim_config_t *c, const bl_sim_result_t *r)
{
    const char *scenario = bl_scenario_name(c->scenario);
    const char *policy = bl_sim_policy_name(c->policy);
    char cold_buf[32], recovery_buf[32];
    const char *cold = steps_text(r->cold_start_steps, 1, cold_buf, sizeof cold_buf);
    const char *recovery =
        steps_text(r->recovery_steps, r->change_step >= 0, recovery_buf, sizeof recovery_buf);
    printf("%-12s %-13s %8.4f %8.4f %8.4f %6s %8s %11.4f %8.4f %7ld %12.2f\n", scenario, policy,
           r->throughput_vs_oracle, r->steady_vs_oracle, r->steady_compute_vs_oracle, cold,
           recovery, r->regret_s, r->churn, r->plan_changes, r->decision_us);
    printf("sim-detail: ranks=%d scenario=%s policy=%s steady_vs_oracle=%.6f "
           "compute_vs_oracle=%.6f steady_compute_vs_oracle=%.6f causal_vs_oracle=%.6f "
           "causal_regret_s=%.6g controller_frac=%.3g decisions=%ld plan_changes=%ld "
           "step_s=%.6g oracle_step_s=%.6g comm_s=%.6g batch=%ld change_step=%ld\n",
           c->ranks, scenario, policy, r->steady_vs_oracle, r->compute_vs_oracle,
           r->steady_compute_vs_oracle, r->causal_vs_oracle, r->causal_regret_s, r->controller_frac,
           r->decisions, r->plan_changes, r->mean_step_s, r->oracle_step_s, r->comm_s, r->batch,
           r->change_step);
    printf("sim: ranks=%d scenario=%s policy=%s throughput_vs_oracle=%.6f cold_start_steps=%s "
           "recovery_steps=%s regret_s=%.6g churn=%.6g decision_us=%.3f\n",
           c->ranks, scenario, policy, r->throughput_vs_oracle, cold, recovery, r->regret_s,
           r->churn, r->decision_us);
    fflush(stdout);
}

/* rl Q-tables as files: BL_RL_TABLE_DOUBLES raw float64 (little
 * endian on the machines ballast runs on), nothing else. */
static int read_q_table(const char *path, double *table, char *err, size_t errlen)
{
    const size_t count = (size_t)BL_RL_TABLE_DOUBLES;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return flags_fail(err, errlen, "--load-policy %s: cannot open: %s", path, strerror(errno));
    }
    size_t got = fread(table, sizeof(double), count, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != count || extra) {
        return flags_fail(err, errlen, "--load-policy %s: not an rl table of %zu float64", path,
                          count);
    }
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(table[i])) {
            return flags_fail(err, errlen, "--load-policy %s: value %zu is not finite", path, i);
        }
    }
    return 0;
}

static int write_q_table(const char *path, const double *table, char *err, size_t errlen)
{
    const size_t count = (size_t)BL_RL_TABLE_DOUBLES;
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return flags_fail(err, errlen, "--save-policy %s: cannot create: %s", path,
                          strerror(errno));
    }
    size_t put = fwrite(table, sizeof(double), count, f);
    if (fclose(f) != 0 || put != count) {
        return flags_fail(err, errlen, "--save-policy %s: writing failed", path);
    }
    return 0;
}

/* ---- Pipeline mode ---------------------------------------------------------- */

static void print_pipe_run(const bl_pipe_sim_config_t *c, const bl_pipe_sim_result_t *r)
{
    const char *scenario = bl_scenario_name(c->scenario);
    const char *policy = bl_policy_name((bl_policy_kind_t)c->policy);
    double step_ratio = r->mean_step_s / r->oracle_step_s;
    double static_ratio = r->static_step_s / r->oracle_step_s;
    printf("%-12s %-13s %8.4f %8.4f %7.4f %8.4f %8.4f %8.4f %6ld %6ld %9.3f %8.3f %8.3f\n",
           scenario, policy, r->max_over_mean, r->opt_max_over_mean, r->gap, step_ratio,
           r->steady_over_oracle, static_ratio, r->migrations, r->unpaid, r->migration_s * 1e3,
           r->decision_ms_median, r->decision_ms_max);
    printf("pipe-detail: stages=%d layers=%d scenario=%s policy=%s micro_batches=%d bubble=%.6g "
           "opt_max_over_mean=%.6f steady_over_oracle=%.6f static_over_oracle=%.6f "
           "step_s=%.6g oracle_step_s=%.6g static_step_s=%.6g decisions=%ld "
           "migrated_bytes=%.6g migration_s=%.6g\n",
           c->stages, c->layers, scenario, policy, c->micro_batches, r->bubble,
           r->opt_max_over_mean, r->steady_over_oracle, static_ratio, r->mean_step_s,
           r->oracle_step_s, r->static_step_s, r->decisions, r->migrated_bytes, r->migration_s);
    printf("pipe: stages=%d layers=%d scenario=%s policy=%s max_over_mean=%.6f gap=%.6f "
           "step_over_oracle=%.6f migrations=%ld unpaid=%ld decision_ms_median=%.4f "
           "decision_ms_max=%.4f\n",
           c->stages, c->layers, scenario, policy, r->max_over_mean, r->gap, step_ratio,
           r->migrations, r->unpaid, r->decision_ms_median, r->decision_ms_max);
    fflush(stdout);
}

/* Every scenario and policy asked for, in pipeline mode. Returns the exit
 * status. */
static int run_pipeline(const options_t *o)
{
    bl_pipe_sim_config_t c = BL_PIPE_SIM_CONFIG_DEFAULT;
    c.layers = (int)o->layers;
    c.stages = (int)o->stages;
    c.steps = o->steps;
    c.rebalance_every = (int)o->rebalance_every;
    c.micro_batches = o->micro_batches > 0 ? (int)o->micro_batches : 4 * c.stages;
    c.seed = o->seed;
    c.horizon_steps = o->horizon;
    c.threshold = o->threshold;
    c.bandwidth = o->bandwidth_gbs * 1e9;
    c.latency_s = o->latency_ms * 1e-3;
    c.clock = monotonic_s;

    printf("ballast-sim pipeline: %d layers over %d stages, %d micro-batches (bubble %.4gx), "
           "%ld steps, a decision every %d steps, horizon %g steps, seed %llu\n",
           c.layers, c.stages, c.micro_batches,
           (double)(c.micro_batches + c.stages - 1) / (double)c.micro_batches, c.steps,
           c.rebalance_every, c.horizon_steps, (unsigned long long)c.seed);
    printf("links: %g GB/s for migrations and activations, migration latency %g ms; "
           "proportional threshold %g\n",
           o->bandwidth_gbs, o->latency_ms, c.threshold);
    printf("%-12s %-13s %8s %8s %7s %8s %8s %8s %6s %6s %9s %8s %8s\n", "scenario", "policy",
           "max/mean", "opt_m/m", "gap", "step/orc", "steady", "static", "migr", "unpaid",
           "migr_ms", "dec_med", "dec_max");
    fflush(stdout);

    int first_scenario = o->scenario < 0 ? 0 : o->scenario;
    int last_scenario = o->scenario < 0 ? BL_SCENARIO_COUNT - 1 : o->scenario;
    int first_policy = o->policy < 0 ? 0 : o->policy;
    int last_policy = o->policy < 0 ? BL_POLICY_COUNT - 1 : o->policy;
    char err[512];
    for (int s = first_scenario; s <= last_scenario; s++) {
        for (int p = first_policy; p <= last_policy; p++) {
            c.scenario = (bl_scenario_kind_t)s;
            c.policy = p;
            bl_pipe_sim_result_t r;
            if (bl_pipe_sim_run(&c, NULL, &r, err, sizeof err) != 0) {
                fprintf(stderr, "ballast-sim: %s %s: %s\n", bl_scenario_name(c.scenario),
                        bl_policy_name((bl_policy_kind_t)p), err);
                return 1;
            }
            print_pipe_run(&c, &r);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    options_t o;
    char err[512];
    if (parse_options(argc, argv, &o, err, sizeof err) != 0) {
        fprintf(stderr, "ballast-sim: %s\n", err);
        return 2;
    }
    if (o.help) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (o.list_scenarios || o.list_policies) {
        for (int k = 0; o.list_scenarios && k < BL_SCENARIO_COUNT; k++) {
            printf("%s\n", bl_scenario_name((bl_scenario_kind_t)k));
        }
        int last = pipeline_mode(&o) ? BL_POLICY_COUNT - 1 : BL_SIM_ORACLE;
        for (int k = 0; o.list_policies && k <= last; k++) {
            printf("%s\n", bl_sim_policy_name(k));
        }
        return 0;
    }
    if (pipeline_mode(&o)) {
        return run_pipeline(&o);
    }

    bl_sim_config_t c = BL_SIM_CONFIG_DEFAULT;
    c.ranks = (int)o.ranks;
    c.steps = o.steps;
    c.batch = o.batch;
    c.rebalance_every = (int)o.rebalance_every;
    c.seed = o.seed;
    c.nbytes = o.nbytes;
    c.alpha_s = o.alpha_us * 1e-6;
    c.beta_s_per_byte = 1e-9 / o.bandwidth_gbs;
    c.deadband = o.deadband;
    c.clock = monotonic_s;
    double q_table[BL_RL_TABLE_DOUBLES];
    if (o.load_policy != NULL && read_q_table(o.load_policy, q_table, err, sizeof err) != 0) {
        fprintf(stderr, "ballast-sim: %s\n", err);
        return 1;
    }
    if (o.load_policy != NULL) {
        c.q_init = q_table;
    }
    if (o.save_policy != NULL) {
        c.q_out = q_table;
    }

    long batch = o.batch > 0 ? o.batch : (long)BL_SIM_SAMPLES_PER_RANK * o.ranks;
    double comm = bl_sim_ring_allreduce_s(c.ranks, c.nbytes, c.alpha_s, c.beta_s_per_byte);
    printf("ballast-sim: %d ranks, batch %ld (%.4g per rank), %ld steps, a decision every %d "
           "steps, seed %llu\n",
           c.ranks, batch, (double)batch / (double)c.ranks, c.steps, c.rebalance_every,
           (unsigned long long)c.seed);
    printf("comm: ring all-reduce of %.0f bytes, alpha %g us, %g GB/s: %.4g ms per step; "
           "nominal speed %g samples/s\n",
           c.nbytes, o.alpha_us, o.bandwidth_gbs, comm * 1e3, BL_SIM_BASE_SPEED);
    printf("close = step <= %.2fx oracle step; cold start and recovery need %d close steps in a "
           "row (or to the end)\n",
           1.0 + BL_SIM_WITHIN, BL_SIM_SUSTAIN);
    printf("%-12s %-13s %8s %8s %8s %6s %8s %11s %8s %7s %12s\n", "scenario", "policy", "thr/orc",
           "steady", "compute", "cold", "recover", "regret_s", "churn", "changes", "decision_us");
    fflush(stdout);

    int first_scenario = o.scenario < 0 ? 0 : o.scenario;
    int last_scenario = o.scenario < 0 ? BL_SCENARIO_COUNT - 1 : o.scenario;
    int first_policy = o.policy < 0 ? 0 : o.policy;
    int last_policy = o.policy < 0 ? BL_POLICY_COUNT - 1 : o.policy;
    for (int s = first_scenario; s <= last_scenario; s++) {
        for (int p = first_policy; p <= last_policy; p++) {
            c.scenario = (bl_scenario_kind_t)s;
            c.policy = p;
            bl_sim_result_t r;
            if (bl_sim_run(&c, NULL, &r, NULL, NULL, err, sizeof err) != 0) {
                fprintf(stderr, "ballast-sim: %s %s: %s\n", bl_scenario_name(c.scenario),
                        bl_sim_policy_name(p), err);
                return 1;
            }
            print_run(&c, &r);
            if (p == BL_POLICY_RL && c.q_out != NULL) {
                c.q_init = q_table; /* the next rl run goes on learning */
            }
        }
    }
    if (o.save_policy != NULL && write_q_table(o.save_policy, q_table, err, sizeof err) != 0) {
        fprintf(stderr, "ballast-sim: %s\n", err);
        return 1;
    }
    return 0;
}
