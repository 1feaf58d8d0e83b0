/* ballast-sim: runs the shard policies against simulated clusters (sim.h)
 * and prints, per run, a table row and the machine-readable "sim:" line.
 * The one clock of the simulator lives here: clock_gettime times each
 * policy decision. */
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
#include "policy.h"
#include "sim.h"

#define MAX_RANKS 1048576L /* 16 × the 65,536 the simulator is meant for */
#define MAX_STEPS 10000000L

static const char usage_text[] =
    "usage: ballast-sim [options]\n"
    "Runs the shard-rebalancing policies against a simulated data-parallel cluster and\n"
    "compares each with the oracle (the plan from the true speeds, every step).\n"
    "\n"
    "  --ranks N              simulated ranks, 1..1048576 (default 64)\n"
    "  --scenario NAME        a scenario, 'all', or 'list' to print them (default all)\n"
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
    "  recovery_steps        the same counted from the step change (step-change only; n/a\n"
    "                        otherwise)\n"
    "  regret_s              sum over steps of (step time - oracle step time), seconds\n"
    "  churn                 sum over decisions of the fraction of the batch moved\n"
    "  decision_us           mean wall time of one policy decision, microseconds\n"
    "Output: per run a table row, a 'sim-detail:' line and, last, the line\n"
    "sim: ranks=N scenario=NAME policy=NAME throughput_vs_oracle=X cold_start_steps=Y\n"
    "     recovery_steps=Z regret_s=R churn=C decision_us=D   (on one line)\n"
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
    default:
        return flags_fail(err, errlen, "internal: unhandled option %d", opt);
    }
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
           "compute_vs_oracle=%.6f steady_compute_vs_oracle=%.6f controller_frac=%.3g "
           "decisions=%ld plan_changes=%ld "
           "step_s=%.6g oracle_step_s=%.6g comm_s=%.6g batch=%ld change_step=%ld\n",
           c->ranks, scenario, policy, r->steady_vs_oracle, r->compute_vs_oracle,
           r->steady_compute_vs_oracle, r->controller_frac, r->decisions, r->plan_changes,
           r->mean_step_s, r->oracle_step_s, r->comm_s, r->batch, r->change_step);
    printf("sim: ranks=%d scenario=%s policy=%s throughput_vs_oracle=%.6f cold_start_steps=%s "
           "recovery_steps=%s regret_s=%.6g churn=%.6g decision_us=%.3f\n",
           c->ranks, scenario, policy, r->throughput_vs_oracle, cold, recovery, r->regret_s,
           r->churn, r->decision_us);
    fflush(stdout);
}

/* rl Q-tables as files: BL_RL_STATES × BL_RL_ACTIONS raw float64 (little
 * endian on the machines ballast runs on), nothing else. */
static int read_q_table(const char *path, double *table, char *err, size_t errlen)
{
    const size_t count = (size_t)BL_RL_STATES * BL_RL_ACTIONS;
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
    const size_t count = (size_t)BL_RL_STATES * BL_RL_ACTIONS;
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
        for (int k = 0; o.list_policies && k <= BL_SIM_ORACLE; k++) {
            printf("%s\n", bl_sim_policy_name(k));
        }
        return 0;
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
    double q_table[BL_RL_STATES * BL_RL_ACTIONS];
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
