#!/bin/sh
# bench_balance.sh: adaptive shard rebalancing on a real 2-rank job with a
# slow rank 1: samples/s of ballast-train --layers 1024,1024,1024 --batch
# 256 (one BLAS thread per rank) under each policy, next to fixed splits:
# the nominal one (--shards from the nominal speed ratio) and the sweep
# oracle, the best of a sweep of fixed splits --shards s0,256-s0 under the
# same straggler. Medians, min-max and ratios to the sweep oracle. Exit 0
# unless a run failed (1); 2 on bad usage; 77 when --straggler quota finds
# no cgroup to make.
#   bench/bench_balance.sh [--build DIR] [--reps R] [--steps S]
#                          [--straggler emulate|quota] [--factor F] [--quota Q]
#                          [--sweep LO:STEP:HI] [--rebalance-every K] [--data DIR]
# emulate (default): rank 1 emulated F times slower (--emulate-slowdown 1:F).
# quota: rank 1 runs in a cgroup held to Q of a core (bench/cpu_quota.sh);
# ballast is not told. The sweep's default grid is 7 splits 16 apart
# around the nominal one, then best -8, -4, +4, +8 (STEP/2 and STEP/4).
# samples_per_s counts all steps, including the policies' first windows on
# the even split (cold start).
# shellcheck disable=SC2086 # item lists are split on purpose
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BALLAST_BUILD_DIR:-$root/build}
. "$root/bench/common.sh"
mpirun=${MPIRUN:-mpirun}
quota_sh=$root/bench/cpu_quota.sh
data=/usr/share/datasets/fashion-mnist
reps=3
steps=150
straggler=emulate
factor=2
quota=0.5
sweep=
every=5

while [ $# -gt 0 ]; do
    case "$1" in
    --help) sed -n '2,18p' "$0"; exit 0 ;;
    --*) [ $# -ge 2 ] || { echo "bench_balance: $1 needs a value" >&2; exit 2; } ;;
    esac
    case "$1" in
    --build) build=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --straggler) straggler=$2; shift 2 ;;
    --factor) factor=$2; shift 2 ;;
    --quota) quota=$2; shift 2 ;;
    --sweep) sweep=$2; shift 2 ;;
    --rebalance-every) every=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    *) echo "bench_balance: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$straggler" in
emulate | quota) ;;
*) echo "bench_balance: --straggler: '$straggler' is neither emulate nor quota" >&2; exit 2 ;;
esac
train=$build/tools/ballast-train
[ -x "$train" ] || { echo "bench_balance: $train not found; build first" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

tmp=$(mktemp -d)
cg=
cleanup() {
    rm -rf "$tmp"
    if [ -n "$cg" ]; then
        sh "$quota_sh" destroy "$cg" || :
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' HUP TERM

# The slow rank's speed as a fraction of rank 0's, nominally.
if [ "$straggler" = quota ]; then
    speed=$quota
    code=0
    cg=$(sh "$quota_sh" create "ballast-bench-$$" "$quota") || code=$?
    [ "$code" -eq 0 ] || { cg=; exit "$code"; }
    if [ -f "$cg/cpu.max" ]; then
        limit="cpu.max $(cat "$cg/cpu.max")"
    else
        limit="cpu.cfs_quota_us $(cat "$cg/cpu.cfs_quota_us") of cpu.cfs_period_us $(cat "$cg/cpu.cfs_period_us")"
    fi
    slow="rank 1 in cgroup $cg held to $quota of a core ($limit), ballast not told"
else
    speed=$(awk -v f="$factor" 'BEGIN { print 1 / f }')
    slow="rank 1 emulated ${factor}x slower (--emulate-slowdown 1:$factor)"
fi
# The nominal split: shards in proportion to the speeds 1 : speed.
nominal_s0=$(awk -v v="$speed" 'BEGIN { print int(256 / (1 + v) + 0.5) }')
nominal=$nominal_s0,$((256 - nominal_s0))

# The sweep's coarse grid of s0 (rank 0's share of the 256).
case "$sweep" in
*[!0-9:]*) echo "bench_balance: --sweep: '$sweep' is not LO:STEP:HI (integers)" >&2; exit 2 ;;
esac
if [ -z "$sweep" ]; then
    c=$(awk -v s="$nominal_s0" 'BEGIN { print int(s / 16 + 0.5) * 16 }')
    sweep=$((c - 48)):16:$((c + 48))
fi
grid=$(echo "$sweep" | awk -F: '
    NF == 3 && $2 > 0 && $1 <= $3 { for (s = $1; s <= $3; s += $2) if (s >= 1 && s <= 255) print s }')
pitch=$(echo "$sweep" | cut -d: -f2)
[ -n "$grid" ] || { echo "bench_balance: --sweep: '$sweep' is not LO:STEP:HI with splits in 1..255" >&2; exit 2; }

# One job on 2 ranks, rank 0 and 1 on cores of their own, under the
# straggler; ballast-train's output on stdout.
launch() {
    if [ "$straggler" = quota ]; then
        # Only rank 1 enters the cgroup; the wrapper execs ballast-train, so
        # the process mpirun bound is the one held.
        # shellcheck disable=SC2016
        BALLAST_LOG=info $mpirun -np 2 --bind-to core sh -c 'q=$1 d=$2; shift 2
            if [ "${OMPI_COMM_WORLD_RANK:-}" = 1 ]; then exec sh "$q" run "$d" "$@"; fi
            exec "$@"' sh "$quota_sh" "$cg" "$train" "$@" </dev/null 2>&1
    else
        BALLAST_LOG=info $mpirun -np 2 --bind-to core "$train" "$@" --emulate-slowdown "1:$factor" </dev/null 2>&1
    fi
}

run() { # run NAME: one job, its samples/s appended to $tmp/NAME
    case "$1" in
    nominal) set -- "$1" --shards "$nominal" ;;
    oracle) set -- "$1" --shards "$best,$((256 - best))" ;;
    s[0-9]*) set -- "$1" --shards "${1#s},$((256 - ${1#s}))" ;;
    *) set -- "$1" --policy "$1" --rebalance-every "$every" ;;
    esac
    name=$1
    shift
    out=$(launch --data "$data" --layers 1024,1024,1024 --batch 256 \
        --steps "$steps" --threads 1 --quiet "$@") || { echo "bench_balance: $name failed:"; echo "$out"; exit 1; } >&2
    rate=$(echo "$out" | sed -n 's/^summary: .*samples_per_s=\([0-9.]*\).*/\1/p')
    [ -n "$rate" ] || { echo "bench_balance: $name printed no summary:" >&2; echo "$out" >&2; exit 1; }
    echo "$rate" >> "$tmp/$name"
    # What telemetry and the controller cost rank 0, in % of the step.
    ctl=$(echo "$out" | sed -n 's/.*telemetry and control cost rank 0 [0-9.]* ms a step, \([0-9.]*\)%.*/\1/p')
    echo "${ctl:-0}" >> "$tmp/$name.ctl"
    printf ' %s %s' "$name" "$rate" >&2
}

median() { bench_median "$1"; }
range() { bench_stats "$1" | awk '{ printf "%s - %s", $2, $3 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { print a / b }'; }

start=$(date +%s)
echo "bench_balance: np=2, MLP 1024,1024,1024, batch 256, $slow,"
echo "  $steps steps per run, decisions every $every steps, nominal --shards $nominal, $reps repetitions"
echo "  cpu: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1), $(nproc) online; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. The sweep: the coarse grid, then around its best, STEP/2 and STEP/4
#    either side; each phase's repetitions interleaved.
items=
for s in $grid; do items="$items s$s"; done
echo "sweep: s0 in" $grid >&2
bench_interleave "$reps" run $items
best_of() { # best_of ITEM...: the s0 of the item with the highest median
    for i in "$@"; do echo "$(median "$tmp/$i") ${i#s}"; done | sort -g | tail -n 1 | cut -d' ' -f2
}
best=$(best_of $items)
refine=
for d in $((-pitch / 2)) $((-pitch / 4)) $((pitch / 4)) $((pitch / 2)); do
    s=$((best + d))
    if [ "$d" -ne 0 ] && [ "$s" -ge 1 ] && [ "$s" -le 255 ] && [ ! -f "$tmp/s$s" ]; then
        refine="$refine s$s"
    fi
done
if [ -n "$refine" ]; then
    echo "refine around $best:$refine" >&2
    bench_interleave "$reps" run $refine
    items="$items $refine"
fi
best=$(best_of $items)

# 2. The policies next to the nominal split and the sweep's best split (run
#    again here, so that it sees the same noise as the policies and its
#    figure is not the luckiest of many).
figures="static proportional bandit rl nominal oracle"
echo "figures (oracle --shards $best,$((256 - best))):" >&2
bench_interleave "$reps" run $figures
oracle=$(median "$tmp/oracle")

printf '\n%-20s %10s   %-20s %9s %9s\n' policy samples/s "min - max" vs_oracle control%
for f in $figures; do
    m=$(median "$tmp/$f")
    label=$f
    [ "$f" = nominal ] && label="nominal $nominal"
    [ "$f" = oracle ] && label="oracle $best,$((256 - best))"
    printf '%-20s %10.0f   %-20s %9.3f %9.3f\n' "$label" "$m" "$(range "$tmp/$f")" \
        "$(ratio "$m" "$oracle")" "$(median "$tmp/$f.ctl")"
done
printf '\nsweep (--shards s0,256-s0)\n%-20s %10s   %-20s %9s\n' s0,s1 samples/s "min - max" vs_oracle
for i in $(for j in $items; do echo "${j#s}"; done | sort -n); do
    m=$(median "$tmp/s$i")
    mark=
    [ "$i" = "$best" ] && mark="  <- best"
    printf '%-20s %10.0f   %-20s %9.3f%s\n' "$i,$((256 - i))" "$m" "$(range "$tmp/s$i")" \
        "$(ratio "$m" "$oracle")" "$mark"
done
echo "vs_oracle: each median over the oracle row's (the sweep's best split, run again among the"
echo "  policies); that split's median in the sweep was $(median "$tmp/s$best")"
echo "control%: rank 0's seconds in telemetry and the controller per step over its step time"
echo "  (median over the repetitions; 0 for the fixed splits, which run neither)"
echo "targets (issue): steady state >= 0.97 of the oracle (here the whole run, cold start included)"
echo "took $(($(date +%s) - start)) s; loadavg at the end $(cut -d' ' -f1-3 /proc/loadavg)"
