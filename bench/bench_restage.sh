#!/bin/sh
# bench_restage.sh: adaptive layer reassignment on a heterogeneous pipeline:
# pp = 2 on 2 ranks with stage 1 emulated 2x slower (--emulate-slowdown 1:2),
# the static stage map (the default, balanced by multiply-adds for equal
# stages) against the proportional policy moving layers off the slow stage,
# measured side by side. Figures only, never pass/fail: exit status 0 unless
# something failed to run (then 1, with the failing command and its
# output), 2 on bad usage.
#
# The model: ballast-train --layers 1280,1024,1024,1024 --batch 256 on
# Fashion-MNIST, --micro-batches 4 (1f1b), one BLAS thread per rank. Per
# repetition, in an order that rotates:
#   static      --pp 2 --emulate-slowdown 1:2 --telemetry F
#   adaptive    the same with --policy proportional --rebalance-every K
#   best        the static run on the best contiguous map for these speeds,
#               --stages 0-4,5-8 (from the layers' multiply-adds with stage 1
#               at half speed: 9.1 M against 2 x 3.2 M per sample; every
#               other cut is slower): what the policy should find
# From the telemetry (jq), the steps measured are those after the warm-up W
# and, for the adaptive run, after its last migration plus W:
#   samples/s      256 / the median step_s over the measured steps
#   whole_run      steps · 256 / the sum of every step's step_s: the whole
#                  run, warm-up, decisions and migrations included
#   stage max/mean max over the stages / mean of their median compute_s
#                  (forward and backward passes with the emulated slowdown)
#   map            the stage map of the last step; migrations, bytes, ms
#                  from the "migration" records
# Medians over the repetitions; ratios adaptive / static per repetition.
# shellcheck disable=SC2046,SC2086
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BALLAST_BUILD_DIR:-$root/build}
. "$root/bench/common.sh"
mpirun=${MPIRUN:-mpirun}
data=/usr/share/datasets/fashion-mnist
reps=3
steps=60
warmup=3
every=5

usage() {
    cat <<EOF
usage: bench/bench_restage.sh [options]
Layer reassignment on pp=2 (2 ranks, stage 1 emulated 2x slower, MLP 1280,1024,1024,1024,
batch 256, 4 micro-batches, one BLAS thread per rank): the static stage map against
--policy proportional and against the best map given by hand; samples/s and stage max/mean
compute, medians over interleaved repetitions.
  --build DIR       build directory with tools/ballast-train (default
                    \$BALLAST_BUILD_DIR, else build/ in the repository)
  --reps R          repetitions (default $reps)
  --steps N         steps per run (default $steps)
  --warmup W        steps left out at the start and after a migration (default $warmup)
  --every K         steps per control window of the adaptive run (default $every)
  --data DIR        Fashion-MNIST IDX files (default $data)
  --help            this text
Environment: BALLAST_BUILD_DIR, MPIRUN (default mpirun). The default run takes about
about a minute and a quarter on a 2-core machine; run nothing else meanwhile.
EOF
}

die_usage() {
    echo "bench_restage.sh: $1 (see --help)" >&2
    exit 2
}

check_count() {
    case $2 in
    '' | *[!0-9]* | 0*) die_usage "$1: '$2' is not a positive integer" ;;
    esac
}

while [ $# -gt 0 ]; do
    case $1 in
    --build | --reps | --steps | --warmup | --every | --data)
        [ $# -ge 2 ] || die_usage "$1: needs a value"
        case $1 in
        --build) build=$2 ;;
        --reps) check_count "$1" "$2" && reps=$2 ;;
        --steps) check_count "$1" "$2" && steps=$2 ;;
        --warmup) check_count "$1" "$2" && warmup=$2 ;;
        --every) check_count "$1" "$2" && every=$2 ;;
        --data) data=$2 ;;
        esac
        shift 2
        ;;
    --help)
        usage
        exit 0
        ;;
    *) die_usage "unknown argument '$1'" ;;
    esac
done

train=$build/tools/ballast-train
bench_prepare bench_restage.sh "$train"
oversub=
[ "$(nproc)" -lt 2 ] && oversub=--oversubscribe

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench_restage.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

batch=256
layers=1280,1024,1024,1024

# One line per run: "lines step_s compute0 compute1 map migrations bytes ms".
cat >"$tmp/figures.jq" <<'EOF'
def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                   else (.[length / 2 - 1] + .[length / 2]) / 2 end;
. as $all
| ([range(length) | select($all[.] | has("migration"))] | last // -1) as $moved
| ([$warmup, $moved + 1 + $warmup] | max) as $from
| $all[$from:] as $s
| [length, ($s | map(.step_s) | median),
   ($s | map(.compute_s[0]) | median), ($s | map(.compute_s[1]) | median),
   ($all[-1].stage_first | map(tostring) | join(",")),
   ([$all[] | select(has("migration"))] | length),
   ([$all[] | .migration.bytes // 0] | add),
   ([$all[] | .migration.seconds // 0] | add * 1000),
   ($all | length) - $from,
   ($all | map(.step_s) | add)]
| map(tostring) | join(" ")
EOF

fail() {
    echo "bench_restage.sh: ($1) $2" >&2
    cat "$tmp/$1.out" >&2
    exit 1
}

measure() {
    name=$1
    set -- "$mpirun" -np 2 --bind-to core $oversub "$train" --data "$data" --layers "$layers" \
        --batch "$batch" --steps "$steps" --threads 1 --quiet --pp 2 --micro-batches 4 \
        --emulate-slowdown 1:2 --telemetry "$tmp/$name.jsonl"
    case $name in
    adaptive) set -- "$@" --policy proportional --rebalance-every "$every" ;;
    best) set -- "$@" --stages 0-4,5-8 ;;
    esac
    rm -f "$tmp/$name.jsonl"
    env BALLAST_LOG=info "$@" >"$tmp/$name.out" 2>&1 || fail "$name" "failed: $*"
    figs=$(jq -r -s --argjson warmup "$warmup" -f "$tmp/figures.jq" "$tmp/$name.jsonl" \
        2>>"$tmp/$name.out") || fail "$name" "wrote telemetry jq could not read"
    set -- $figs
    [ "$1" = "$steps" ] || fail "$name" "wrote $1 telemetry lines for $steps steps"
    [ "$9" -ge 3 ] || fail "$name" "only $9 steps after the last migration; use more --steps"
    awk -v b="$batch" -v s="$2" 'BEGIN { printf "%.6g\n", b / s }' >>"$tmp/$name.sps"
    awk -v a="$3" -v b="$4" 'BEGIN { m = a > b ? a : b; printf "%.6g\n", m / ((a + b) / 2) }' \
        >>"$tmp/$name.maxmean"
    echo "$5 $6 $7 $8" >>"$tmp/$name.moves"
    awk -v n="$1" -v b="$batch" -v t="${10}" 'BEGIN { printf "%.6g\n", n * b / t }' \
        >>"$tmp/$name.whole"
    printf ' %s %.0f' "$name" "$(tail -n 1 "$tmp/$name.sps")" >&2
    # Ratios are taken per repetition, once all its runs are in.
    if [ -s "$tmp/static.sps" ] && [ -s "$tmp/adaptive.sps" ] && [ -s "$tmp/best.sps" ] &&
        [ "$(wc -l <"$tmp/static.sps")" = "$(wc -l <"$tmp/adaptive.sps")" ] &&
        [ "$(wc -l <"$tmp/best.sps")" = "$(wc -l <"$tmp/adaptive.sps")" ]; then
        a=$(tail -n 1 "$tmp/adaptive.sps")
        awk -v a="$a" -v s="$(tail -n 1 "$tmp/static.sps")" 'BEGIN { printf "%.6g\n", a / s }' \
            >>"$tmp/ratio"
        awk -v a="$a" -v b="$(tail -n 1 "$tmp/best.sps")" 'BEGIN { printf "%.6g\n", a / b }' \
            >>"$tmp/ratio_best"
        awk -v a="$(tail -n 1 "$tmp/adaptive.whole")" -v s="$(tail -n 1 "$tmp/static.whole")" \
            'BEGIN { printf "%.6g\n", a / s }' >>"$tmp/ratio_whole"
    fi
}

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
echo "bench_restage: MLP 784-$(echo "$layers" | tr , -)-10, batch $batch, pp=2 on 2 ranks,"
echo "  4 micro-batches (1f1b), stage 1 emulated 2x slower, 1 BLAS thread per rank"
echo "  static: the default map; adaptive: --policy proportional --rebalance-every $every"
echo "  $steps steps per run; measured after the first $warmup steps and $warmup steps after"
echo "  the last migration; $reps repetition(s), interleaved"
echo "  cpu: ${cpu:-unknown}, $(nproc) online; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"

bench_interleave "$reps" measure static adaptive best

echo
printf '%-9s %10s %10s %14s  %-12s %10s %10s %9s\n' run samples/s whole_run stage_max/mean \
    map migrations bytes ms
for name in static adaptive best; do
    set -- $(tail -n 1 "$tmp/$name.moves")
    printf '%-9s %10.0f %10.0f %14.3f  %-12s %10s %10s %9.2f\n' "$name" \
        "$(bench_median "$tmp/$name.sps")" "$(bench_median "$tmp/$name.whole")" \
        "$(bench_median "$tmp/$name.maxmean")" "$1" "$2" "$3" "$4"
done
set -- $(bench_stats "$tmp/ratio")
echo
printf 'adaptive / static samples/s: median %.3f (min %.3f, max %.3f over %d repetitions)\n' \
    "$1" "$2" "$3" "$reps"
set -- $(bench_stats "$tmp/ratio_best")
printf 'adaptive / best   samples/s: median %.3f (min %.3f, max %.3f over %d repetitions)\n' \
    "$1" "$2" "$3" "$reps"
set -- $(bench_stats "$tmp/ratio_whole")
printf 'adaptive / static whole run (all %d steps, warm-up and moves included): median %.3f (min %.3f, max %.3f)\n' \
    "$steps" "$1" "$2" "$3"
