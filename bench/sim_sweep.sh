#!/bin/sh
# sim_sweep.sh: every shard policy against every simulated scenario at
# 64, 1,024 and 65,536 ranks (ballast-sim), for each of several seeds; one
# table of the figures averaged over the seeds, and the issue's targets
# judged per seed, each miss named with its seed. Figures only: exit status
# 0 unless a run failed (1, with its message), 2 on bad usage.
#
# Targets (the "policies that learn" issue), for the learning policies,
# bandit and rl, judged on every seed; static and proportional are the
# baselines and are shown, not judged:
#   regret    cumulative regret <= proportional's, every scenario and size
#   regret20  regret at least 20% below proportional's on drift and spikes
#   steady    steady state (steps [T/2, T)) >= 0.97 of the oracle's
#             throughput, every scenario and size
#   cold      from cold start within 5% of the oracle in <= 15 steps, on
#             the scenarios where the oracle's plan is knowable from the
#             past (fixed-*, step-change, noise, heavy-noise, recovery)
#   decide    decision time <= 100 us at 64 ranks and <= 50 ms at 65,536
#             (1,024 has no target and is shown)
# "Close" means a step time <= 1.05x the oracle's, for 20 steps in a row (or
# to the end of the run): see ballast-sim --help. The column "causal" is
# the lag-1 oracle's throughput over the oracle's (the oracle's plan one
# step late, the same for every policy): on drift, spikes and periodic, a
# policy that only tracks what it observed cannot beat it.
#
# Runtime: 12 scenarios x 4 policies per size and seed, 432 runs in all by
# default. The 65,536-rank runs dominate (bandit and rl decide in 20-60 ms
# there), so they default to --steps-large 200 (40 decisions a run): the
# default sweep took 4 min 15 s on a shared 2-core machine (load ~3.8),
# 2 min of it CPU time; at 400 steps it would take twice as long.
# Word splitting is meant for the lists of rank counts and seeds.
# shellcheck disable=SC2086
set -eu
set -f # the lists are split on blanks, never expanded as file names
. "$(cd "$(dirname "$0")" && pwd)/common.sh"

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BALLAST_BUILD_DIR:-$root/build}
sim=
ranks_list="64 1024 65536"
steps=400
steps_large=200
seeds="1 2 3"
every=1

usage() {
    cat <<EOF
usage: bench/sim_sweep.sh [options]
Runs ballast-sim for every scenario and every policy at each rank count and
seed, prints one table of the figures averaged over the seeds, and judges the
issue's targets on every seed (see the comment at the top).
  --build DIR        build directory holding tools/ballast-sim (default
                     \$BALLAST_BUILD_DIR, else build/ in the repository)
  --sim PATH         the ballast-sim program (overrides --build)
  --ranks "N ..."    rank counts (default "$ranks_list")
  --steps T          steps per run below 65,536 ranks (default $steps)
  --steps-large T    steps per run at 65,536 ranks or more (default $steps_large)
  --seeds "S ..."    seeds; every run is made with each (default "$seeds")
  --seed S           one seed: the same as --seeds S
  --rebalance-every K  the policies decide after every K steps (default $every:
                     every step, where bandit and rl learn fastest; ballast-sim's
                     own default is 5)
  --help             this text
EOF
}

die_usage() {
    echo "sim_sweep.sh: $1 (see --help)" >&2
    exit 2
}

need_value() {
    [ $# -ge 2 ] || die_usage "$1: needs a value"
}

while [ $# -gt 0 ]; do
    case $1 in
        --build) need_value "$@"; build=$2; shift 2 ;;
        --sim) need_value "$@"; sim=$2; shift 2 ;;
        --ranks) need_value "$@"; ranks_list=$2; shift 2 ;;
        --steps) need_value "$@"; steps=$2; shift 2 ;;
        --steps-large) need_value "$@"; steps_large=$2; shift 2 ;;
        --seeds | --seed) need_value "$@"; seeds=$2; shift 2 ;;
        --rebalance-every) need_value "$@"; every=$2; shift 2 ;;
        --help) usage; exit 0 ;;
        *) die_usage "unknown option '$1'" ;;
    esac
done
[ -n "$sim" ] || sim=$build/tools/ballast-sim
[ -x "$sim" ] || die_usage "--sim: '$sim' is not an executable (build ballast-sim first)"
# words ARG...: the words, one blank apart (nothing when there are none).
words() {
    echo "$*"
}
ranks_list=$(words $ranks_list)
seeds=$(words $seeds)
[ -n "$ranks_list" ] || die_usage "--ranks: no rank count given"
[ -n "$seeds" ] || die_usage "--seeds: no seed given"
for n in $ranks_list; do
    case $n in *[!0-9]*) die_usage "--ranks: '$n' is not a number" ;; esac
done
for v in $seeds; do
    case $v in *[!0-9]*) die_usage "--seeds: '$v' is not a non-negative integer" ;; esac
done
for v in "$steps" "$steps_large" "$every"; do
    case $v in '' | *[!0-9]*) die_usage "'$v' is not a non-negative integer" ;; esac
done

lines=$(mktemp)
seed_lines=$(mktemp)
log=$(mktemp)
trap 'rm -f "$lines" "$seed_lines" "$log"' EXIT

echo "ballast-sim sweep: seeds $seeds; $steps steps per run" \
    "(${steps_large} at 65,536 ranks and more); a decision every $every steps"
echo "host: $(uname -n), $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') CPUs," \
    "load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
sweep_started=$(date +%s)
for n in $ranks_list; do
    t=$steps
    [ "$n" -lt 65536 ] || t=$steps_large
    started=$(date +%s)
    runs=0
    for seed in $seeds; do
        : >"$seed_lines"
        r=$(bench_sim_scenarios sim_sweep.sh "$sim" "$log" "$seed_lines" sim --ranks "$n" \
            --policy all --steps "$t" --seed "$seed" --rebalance-every "$every") || exit 1
        runs=$((runs + r))
        # The sim lines carry no seed: each gets its own, after the prefix.
        sed "s/^\(sim[-a-z]*:\)/\1 seed=$seed/" "$seed_lines" >>"$lines"
    done
    echo "ranks $n: $t steps per run, $runs runs in $(($(date +%s) - started)) s;" \
        "$(sed -n 's/^comm: //p' "$log")"
done
echo "sweep: $(($(date +%s) - sweep_started)) s in all"
echo

awk -v seeds="$seeds" '
function val(key,    i, kv) {
    for (i = 2; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == key) return kv[2]
    }
    return ""
}
function isnum(x) { return x ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ }
function learning(p) { return p == "bandit" || p == "rl" }
# The scenarios whose oracle plan is knowable from the past (cold start).
function knowable(s) {
    return s ~ /^fixed-/ || s == "step-change" || s == "noise" || s == "heavy-noise" ||
        s == "recovery"
}
# Records one check of target on row k (ranks scenario policy) and seed sd:
# met or not. A miss keeps its message, and sd joins the misses of the row.
function judge(target, k, sd, ok, what) {
    total[target]++
    if (ok) { met[target]++; return }
    missed[target] = missed[target] "\n    " what
    rowmiss[k, target] = rowmiss[k, target] (rowmiss[k, target] == "" ? "" : ",") sd
}
# The mean over the seeds of the numeric values a[k, seed]; "" when none.
function mean(a, k,    j, sum, cnt) {
    sum = 0; cnt = 0
    for (j = 1; j <= nseeds; j++)
        if (((k, seed_at[j]) in a) && isnum(a[k, seed_at[j]])) {
            sum += a[k, seed_at[j]]; cnt++
        }
    return cnt > 0 ? sum / cnt : ""
}
# A step count over the seeds: the mean when every seed has one, "never"
# when some seed never settled, "n/a" when it does not apply.
function steps_mean(a, k,    j, v, sum, cnt) {
    sum = 0; cnt = 0
    for (j = 1; j <= nseeds; j++) {
        v = a[k, seed_at[j]]
        if (v == "n/a") return "n/a"
        if (v == "never") return "never"
        if (isnum(v)) { sum += v; cnt++ }
    }
    return cnt > 0 ? sprintf("%.1f", sum / cnt) : "?"
}
BEGIN { nseeds = split(seeds, seed_at, " ") }
{
    sd = val("seed")
    k = val("ranks") " " val("scenario") " " val("policy")
    if (!(k in seen)) { seen[k] = 1; order[++n] = k }
}
$1 == "sim:" {
    thr[k, sd] = val("throughput_vs_oracle"); cold[k, sd] = val("cold_start_steps")
    rec[k, sd] = val("recovery_steps"); regret[k, sd] = val("regret_s")
    churn[k, sd] = val("churn"); dec[k, sd] = val("decision_us")
}
$1 == "sim-detail:" {
    steady[k, sd] = val("steady_vs_oracle"); comp[k, sd] = val("steady_compute_vs_oracle")
    causal[k, sd] = val("causal_vs_oracle"); ctrl[k, sd] = val("controller_frac")
    changes[k, sd] = val("plan_changes")
}
END {
    ntargets = split("regret regret20 steady cold decide", names, " ")
    for (i = 1; i <= n; i++) {
        k = order[i]; split(k, f, " "); r = f[1]; s = f[2]; p = f[3]
        if (!learning(p)) continue
        pk = r " " s " proportional"
        for (j = 1; j <= nseeds; j++) {
            sd = seed_at[j]
            if (!((k, sd) in regret)) continue
            what = sprintf("%s ranks %s %s, seed %s:", r, s, p, sd)
            if ((pk, sd) in regret) {
                judge("regret", k, sd, regret[k, sd] <= regret[pk, sd] * (1 + 1e-9) + 1e-12, \
                    sprintf("%s regret %.4g s > proportional %.4g s", what, regret[k, sd], \
                        regret[pk, sd]))
                if (s == "drift" || s == "spikes")
                    judge("regret20", k, sd, regret[k, sd] <= 0.8 * regret[pk, sd], \
                        sprintf("%s regret %.4g s > 0.8 x proportional %.4g s", what, \
                            regret[k, sd], regret[pk, sd]))
            }
            judge("steady", k, sd, steady[k, sd] >= 0.97, \
                sprintf("%s steady %.4f of the oracle", what, steady[k, sd]))
            if (knowable(s))
                judge("cold", k, sd, isnum(cold[k, sd]) && cold[k, sd] <= 15, \
                    sprintf("%s cold start %s steps", what, cold[k, sd]))
            if (r == 64 || r == 65536) {
                limit = r == 64 ? 100 : 50000
                judge("decide", k, sd, dec[k, sd] <= limit, \
                    sprintf("%s %s us per decision (target %d)", what, dec[k, sd], limit))
            }
        }
    }
    printf "%-6s %-11s %-12s %7s %7s %8s %6s %7s %10s %7s %8s %7s %11s %7s  %s\n", \
        "ranks", "scenario", "policy", "thr/orc", "steady", "steady_c", "cold", "recover", \
        "regret_s", "causal", "churn", "changes", "decision_us", "ctrl_%", "missed@seeds"
    for (i = 1; i <= n; i++) {
        k = order[i]; split(k, f, " "); r = f[1]; s = f[2]; p = f[3]
        flags = ""
        for (j = 1; j <= ntargets; j++)
            if (rowmiss[k, names[j]] != "")
                flags = flags " " names[j] "@" rowmiss[k, names[j]]
        if (flags == "") flags = learning(p) ? " -" : " (not judged)"
        printf "%-6s %-11s %-12s %7.4f %7.4f %8.4f %6s %7s %10.4g %7.4f %8.4f %7.1f %11.2f %7.4f %s\n", \
            r, s, p, mean(thr, k), mean(steady, k), mean(comp, k), steps_mean(cold, k), \
            steps_mean(rec, k), mean(regret, k), mean(causal, k), mean(churn, k), \
            mean(changes, k), mean(dec, k), 100 * mean(ctrl, k), flags
    }
    print ""
    printf "figures: means over the seeds (%s); cold and recover read \"never\" when\n", seeds
    print "some seed never settled; causal: the lag-1 oracle (the oracle one step late)."
    print "targets (bandit and rl, judged on every seed; met/checked):"
    desc["regret"] = "regret <= proportional, every scenario"
    desc["regret20"] = "regret >= 20% below proportional on drift and spikes"
    desc["steady"] = "steady state >= 0.97 of the oracle, every scenario"
    desc["cold"] = "cold start <= 15 steps (fixed-*, step-change, noise, heavy-noise, recovery)"
    desc["decide"] = "decision <= 100 us at 64 ranks, <= 50 ms at 65536"
    for (j = 1; j <= ntargets; j++) {
        t = names[j]
        verdict = total[t] == 0 ? "n/a   " : (met[t] == total[t] ? "MET   " : "MISSED")
        printf "  %-8s %-76s %s %d/%d%s\n", t, desc[t], verdict, met[t], total[t], missed[t]
    }
}' "$lines"
