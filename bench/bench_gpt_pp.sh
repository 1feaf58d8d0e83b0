#!/bin/sh
# bench_gpt_pp.sh: GPT-2 in a heterogeneous pipeline: pp = 2 on 2 ranks with
# stage 1 emulated 2x slower (--emulate-slowdown 1:2), the static stage map
# (balanced by multiply-adds for equal stages) against the stage policies
# moving blocks off the slow stage, measured side by side. Figures only,
# never pass/fail: exit status 0 unless something failed to run (then 1,
# with the failing command's output), 2 on bad usage.
#
# The model: ballast-train --model gpt2's default (4 blocks, 4 heads, 256
# channels, T 128, vocabulary 256, batch 16 sequences), --micro-batches 4
# (1f1b), one BLAS thread per rank, on the fortunes texts. Per repetition,
# in an order that rotates:
#   static        --pp 2 --emulate-slowdown 1:2
#   proportional  the same with --policy proportional --rebalance-every K
#   bandit        the same with --policy bandit --rebalance-every K
#   best          the static run on the best contiguous map for these speeds,
#                 --stages 0-3,4-5 (the embedding and 3 blocks, then a
#                 block and the head): what the policies should find
# Each run's figure is tokens/s over its steps after the warm-up W, from
# the telemetry's step_s (median); the whole run's tokens/s (its summary)
# is shown too. Medians over the repetitions; ratios to static per
# repetition.
#   bench_gpt_pp.sh [--reps R] [--steps S] [--warmup W] [--every K]
#                   [--text FILE] [--build DIR]
# shellcheck disable=SC2086
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/common.sh"
reps=3
steps=60
warmup=20
every=5
text=
build=${BALLAST_BUILD_DIR:-$root/build}
while [ $# -gt 0 ]; do
    case $1 in
    --reps) reps=$2 ;;
    --steps) steps=$2 ;;
    --warmup) warmup=$2 ;;
    --every) every=$2 ;;
    --text) text=$2 ;;
    --build) build=$2 ;;
    *)
        echo "usage: bench_gpt_pp.sh [--reps R] [--steps S] [--warmup W] [--every K]" \
            "[--text FILE] [--build DIR]" >&2
        exit 2
        ;;
    esac
    shift 2
done
train=$build/tools/ballast-train
mpirun=${MPIRUN:-mpirun}
bench_prepare bench_gpt_pp.sh "$train"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "$text" ]; then
    text=$tmp/fortunes.txt
    bench_fortunes bench_gpt_pp.sh "$text"
fi
base="--model gpt2 --text $text --steps $steps --threads 1 --val-fraction 0 --quiet --pp 2
      --micro-batches 4 --emulate-slowdown 1:2 --rebalance-every $every"

# run NAME: one run of figure NAME; its steady tokens/s and summary's into
# $tmp/NAME.steady and $tmp/NAME.whole.
run() {
    case $1 in
    static) flags= ;;
    proportional) flags="--policy proportional" ;;
    bandit) flags="--policy bandit" ;;
    best) flags="--stages 0-3,4-5" ;;
    esac
    if ! "$mpirun" -np 2 --bind-to none "$train" $base $flags --telemetry "$tmp/$1.jsonl" \
        </dev/null >"$tmp/$1.out" 2>&1; then
        echo "bench_gpt_pp.sh: $1 failed:" >&2
        cat "$tmp/$1.out" >&2
        exit 1
    fi
    jq -s --argjson w "$warmup" '[.[] | select(.step >= $w) | .step_s] | sort |
        .[length / 2 | floor]' "$tmp/$1.jsonl" |
        awk '{ printf "%.1f\n", 16 * 128 / $1 }' >>"$tmp/$1.steady"
    bench_field "$tmp/$1.out" summary: tokens_per_s >>"$tmp/$1.whole"
    jq -c '.stage_first // empty' "$tmp/$1.jsonl" | tail -n 1 >"$tmp/$1.map"
    printf ' %s %s' "$1" "$(tail -n 1 "$tmp/$1.steady")" >&2
}
figures="static proportional bandit best"
echo "bench_gpt_pp: GPT-2 L=4 C=256 T=128 B=16, --pp 2 --micro-batches 4, stage 1 emulated 2x"
echo "  slower; $steps steps a run, steady state from step $warmup, --rebalance-every $every;"
echo "  $reps repetitions interleaved; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
bench_interleave "$reps" run $figures
printf '\n%-14s %12s %14s   %s\n' figure "steady tok/s" "whole-run tok/s" "last map"
for f in $figures; do
    printf '%-14s %12.0f %14.0f   %s\n' "$f" "$(bench_median "$tmp/$f.steady")" \
        "$(bench_median "$tmp/$f.whole")" "$(cat "$tmp/$f.map")"
done
for f in proportional bandit best; do
    paste "$tmp/$f.steady" "$tmp/static.steady" | awk '{ printf "%.4f\n", $1 / $2 }' >"$tmp/$f.ratio"
    set -- $(bench_stats "$tmp/$f.ratio")
    echo "ratio_$f=$1 (per repetition $2-$3; target for the policies >= 1.3)"
done
