#!/bin/sh
# bench_pipeline.sh: pipeline parallelism of ballast-train on one node:
# samples/s and the measured pipeline bubble of a 2-stage pipeline (pp = 2,
# 2 ranks) under both schedules (gpipe, 1f1b) and M = 1, 2, 4, 8, 16
# micro-batches per step, next to GPipe's theory (S-1)/(M+S-1) and to a
# one-process run of the same model and batch (pp = 1). Figures only, never
# pass/fail: exit status 0 unless something failed to run (then 1, with the
# failing command and its output), 2 on bad usage.
#
# The model: ballast-train --layers 1280,1024,1024,1024 --batch 256 on
# Fashion-MNIST (784-1280-1024-1024-1024-10 ReLU MLP, whose default 2-stage
# split is within 3% of even by the stage planner's cost model), one BLAS
# thread per rank, the default stage map (balanced by multiply-adds;
# the program's 'layout:' log line is printed with the results). Per
# repetition, in an order that rotates from one repetition to the next:
#   pp1         mpirun -np 1 ballast-train ... --threads 1 --telemetry F
#   SCHED/M     mpirun -np 2 ballast-train ... --threads 1 --pp 2
#               --micro-batches M --schedule SCHED --telemetry F
# Every figure comes from the telemetry (one JSON object per step, read with
# jq), the first W steps (--warmup) left out:
#   samples/s   256 / (the median step_s over the remaining steps); the table
#               gives the median over the repetitions
#   bubble s    per stage s: the median over those steps of
#               (step_s - compute_s[s]) / step_s: the share of the step that
#               stage s spent other than in its forward/backward passes and
#               data reads (pipeline waits, its optimizer update, the final
#               all-reduce of the loss); median over the repetitions
# See bench/README.md for how to read the output.
# Word splitting is meant where a list of figures is split into positional
# parameters.
# shellcheck disable=SC2046,SC2086
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BALLAST_BUILD_DIR:-$root/build}
. "$root/bench/common.sh"
mpirun=${MPIRUN:-mpirun}
data=/usr/share/datasets/fashion-mnist
quick=0
reps=
steps=
warmup=

usage() {
    cat <<EOF
usage: bench/bench_pipeline.sh [options]
Pipeline parallelism of ballast-train (MLP 1280,1024,1024,1024, batch 256, one BLAS
thread per rank): samples/s and the measured bubble per stage at pp=2 (2 ranks) for
the gpipe and 1f1b schedules and M = 1, 2, 4, 8, 16 micro-batches, against GPipe's
theory (S-1)/(M+S-1) and a one-process run (pp=1); medians over interleaved
repetitions, from the runs' --telemetry after W warm-up steps.
  --build DIR       build directory with tools/ballast-train
                    (default \$BALLAST_BUILD_DIR, else build/ in the repository)
  --reps R          repetitions of every configuration (default 3; 1 with --quick)
  --steps N         steps per run (default 40; 12 with --quick)
  --warmup W        first steps of every run left out of the figures
                    (default 5; 2 with --quick); N - W must be at least 3
  --quick           a smoke test: the defaults above for --quick (about 20 s)
  --data DIR        Fashion-MNIST IDX files (default $data)
  --help            this text
Environment: BALLAST_BUILD_DIR, MPIRUN (default mpirun). The whole default run takes
about 2 minutes on a 2-core machine; run nothing else meanwhile.
EOF
}

die_usage() {
    echo "bench_pipeline.sh: $1 (see --help)" >&2
    exit 2
}

# check_count FLAG VALUE [0]: dies naming the flag unless VALUE is a
# positive integer (with 0: a non-negative one).
check_count() {
    case $2 in
    0) [ "${3:-}" = 0 ] && return 0 ;;
    '' | *[!0-9]* | 0*) ;;
    *) return 0 ;;
    esac
    [ "${3:-}" = 0 ] && die_usage "$1: '$2' is not a non-negative integer"
    die_usage "$1: '$2' is not a positive integer"
}

while [ $# -gt 0 ]; do
    case $1 in
    --build | --reps | --steps | --warmup | --data)
        [ $# -ge 2 ] || die_usage "$1: needs a value"
        case $1 in
        --build) build=$2 ;;
        --reps) check_count "$1" "$2" && reps=$2 ;;
        --steps) check_count "$1" "$2" && steps=$2 ;;
        --warmup) check_count "$1" "$2" 0 && warmup=$2 ;;
        --data) data=$2 ;;
        esac
        shift 2
        ;;
    --quick)
        quick=1
        shift
        ;;
    --help)
        usage
        exit 0
        ;;
    *) die_usage "unknown argument '$1'" ;;
    esac
done
# Explicit values win over --quick's.
if [ "$quick" = 1 ]; then
    : "${reps:=1}" "${steps:=12}" "${warmup:=2}"
else
    : "${reps:=3}" "${steps:=40}" "${warmup:=5}"
fi
[ $((steps - warmup)) -ge 3 ] ||
    die_usage "--steps $steps with --warmup $warmup leaves fewer than 3 measured steps"

train=$build/tools/ballast-train
bench_prepare bench_pipeline.sh "$train"
# Two ranks want two cores; with fewer, Open MPI needs to be told (and the
# figures then say little).
oversub=
if [ "$(nproc)" -lt 2 ]; then
    oversub=--oversubscribe
    echo "bench_pipeline.sh: $(nproc) core online: pp=2 runs oversubscribed;" \
        "its figures mean little" >&2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench_pipeline.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

batch=256
layers=1280,1024,1024,1024
S=2
micro="1 2 4 8 16"
schedules="gpipe 1f1b"
configs=pp1
for sched in $schedules; do
    for m in $micro; do
        configs="$configs $sched-$m"
    done
done

# The per-run figures, from the telemetry after the warm-up steps, as one
# line: "steps step_s bubble_0 .. bubble_{n-1} compute_0 .. pipe_0 ..", all
# medians over the steps; n is the number of ranks (1 or 2).
cat >"$tmp/figures.jq" <<'EOF'
def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                   else (.[length / 2 - 1] + .[length / 2]) / 2 end;
length as $all | .[$warmup:] as $s | ($s[0].compute_s | length) as $n
| [$all, ($s | map(.step_s) | median)]
  + [range($n) as $r | $s | map((.step_s - .compute_s[$r]) / .step_s) | median]
  + [range($n) as $r | $s | map(.compute_s[$r]) | median]
  + [range($n) as $r | $s | map((.pipe_s // [])[$r] // 0) | median]
| map(tostring) | join(" ")
EOF

# fail NAME MESSAGE: says what failed, with the run's output, and exits 1.
fail() {
    echo "bench_pipeline.sh: ($1) $2" >&2
    cat "$tmp/$1.out" >&2
    exit 1
}

# measure CONFIG: one run of CONFIG (pp1, or SCHEDULE-M); its figures are
# appended to $tmp/CONFIG.KEY, one line per repetition.
measure() {
    name=$1
    set -- "$mpirun" -np 1 --bind-to core
    if [ "$name" != pp1 ]; then
        set -- "$mpirun" -np "$S" --bind-to core $oversub
    fi
    set -- env BALLAST_LOG=info "$@" "$train" --data "$data" --layers "$layers" \
        --batch "$batch" --steps "$steps" --threads 1 --quiet --telemetry "$tmp/$name.jsonl"
    if [ "$name" != pp1 ]; then
        set -- "$@" --pp "$S" --schedule "${name%-*}" --micro-batches "${name#*-}"
    fi
    rm -f "$tmp/$name.jsonl"
    "$@" >"$tmp/$name.out" 2>&1 || fail "$name" "failed: $*"
    sps=$(bench_field "$tmp/$name.out" summary: samples_per_s)
    [ -n "$sps" ] || fail "$name" "printed no summary"
    # The layout line names the stage map; keep the first repetition's.
    [ -e "$tmp/$name.layout" ] ||
        sed -n 's/^.*info: \(layout: .*\)$/\1/p' "$tmp/$name.out" >"$tmp/$name.layout"
    figs=$(jq -r -s --argjson warmup "$warmup" -f "$tmp/figures.jq" "$tmp/$name.jsonl" \
        2>"$tmp/$name.jq") || {
        cat "$tmp/$name.jq" >>"$tmp/$name.out"
        fail "$name" "wrote telemetry jq could not read ($tmp/$name.jsonl)"
    }
    set -- $figs
    [ "$1" = "$steps" ] || fail "$name" "wrote $1 telemetry lines for $steps steps"
    echo "$sps" >>"$tmp/$name.summary"
    echo "$2" >>"$tmp/$name.step"
    awk -v b="$batch" -v s="$2" 'BEGIN { printf "%.6g\n", b / s }' >>"$tmp/$name.sps"
    echo "$figs" | awk -v f="$tmp/$name" '{
        n = (NF - 2) / 3
        for (r = 0; r < n; r++) {
            print $(3 + r) >>(f ".bubble" r)
            print $(3 + n + r) >>(f ".compute" r)
            print $(3 + 2 * n + r) >>(f ".pipe" r)
        } }'
    printf ' %s %.0f' "$name" "$(tail -n 1 "$tmp/$name.sps")" >&2
}

# ---- Header --------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
mpiver=$("$mpirun" --version 2>/dev/null | head -n 1 || true)
echo "bench_pipeline: MLP 784-$(echo "$layers" | tr , -)-10, batch $batch, 1 BLAS thread per rank"
echo "  pp=$S on $S ranks (--bind-to core), schedules: $schedules; M: $micro; and pp=1 on 1 rank"
echo "  $steps steps per run, the first $warmup left out; $reps repetition(s), interleaved"
echo "  (the order rotates); figures from --telemetry: samples/s = $batch / median step_s"
echo "  cpu: ${cpu:-unknown}, $(nproc) online; $mpiver"
echo "  loadavg at start: $(cat /proc/loadavg 2>/dev/null || echo unknown)"

# ---- Measurements, interleaved ------------------------------------------
bench_interleave "$reps" measure $configs

# ---- Report --------------------------------------------------------------
# m CONFIG KEY: median of CONFIG's KEY over the repetitions
m() {
    bench_median "$tmp/$1.$2"
}

echo
echo "stage maps (ballast-train's layout line, first repetition):"
for c in $configs; do
    [ "$c" = pp1 ] && continue
    printf '  %-10s %s\n' "$c" "$(cat "$tmp/$c.layout")"
done

base=$(m pp1 sps)
echo
printf '%-8s %3s %10s %9s %8s %8s %8s %8s\n' schedule M samples/s vs_pp1 bubble0 bubble1 \
    mean theory
b0=$(m pp1 bubble0)
awk -v s="$base" -v b="$b0" 'BEGIN {
    printf "%-8s %3s %10.0f %9.3f %8.3f %8s %8.3f %8.3f\n", "pp=1", 1, s, 1, b, "-", b, 0 }'
for c in $configs; do
    [ "$c" = pp1 ] && continue
    awk -v sch="${c%-*}" -v M="${c#*-}" -v S="$S" -v s="$(m "$c" sps)" -v base="$base" \
        -v b0="$(m "$c" bubble0)" -v b1="$(m "$c" bubble1)" 'BEGIN {
        printf "%-8s %3d %10.0f %9.3f %8.3f %8.3f %8.3f %8.3f\n", sch, M, s, s / base,
               b0, b1, (b0 + b1) / 2, (S - 1) / (M + S - 1) }'
done
echo "(bubbleN: median over steps of (step_s - compute_s[N]) / step_s for stage N; mean: of"
echo " the stages; theory: GPipe's (S-1)/(M+S-1), equal stages and free communication."
echo " pp=1 row: the same measure on its one rank, i.e. the optimizer update and the rest"
echo " of the step outside forward/backward: a floor that every pipelined figure includes)"

# Where the time goes: medians in ms, the summary line's own samples/s
# (whole training time, warm-up included) as a cross-check, and the two
# stages' compute against the one process's (1.0: splitting cost nothing).
echo
echo "where the time goes (medians, ms per step):"
printf '%-8s %3s %8s %9s %9s %8s %8s %12s %10s\n' schedule M step compute0 compute1 pipe0 \
    pipe1 "compute/pp1" summary/s
c1=$(m pp1 compute0)
awk -v st="$(m pp1 step)" -v c="$c1" -v p="$(m pp1 pipe0)" -v su="$(m pp1 summary)" 'BEGIN {
    printf "%-8s %3s %8.2f %9.2f %9s %8.2f %8s %12.3f %10.0f\n", "pp=1", 1, 1e3 * st, 1e3 * c,
           "-", 1e3 * p, "-", 1, su }'
for c in $configs; do
    [ "$c" = pp1 ] && continue
    awk -v sch="${c%-*}" -v M="${c#*-}" -v st="$(m "$c" step)" -v a="$(m "$c" compute0)" \
        -v b="$(m "$c" compute1)" -v pa="$(m "$c" pipe0)" -v pb="$(m "$c" pipe1)" -v one="$c1" \
        -v su="$(m "$c" summary)" 'BEGIN {
        printf "%-8s %3d %8.2f %9.2f %9.2f %8.2f %8.2f %12.3f %10.0f\n", sch, M, 1e3 * st,
               1e3 * a, 1e3 * b, 1e3 * pa, 1e3 * pb, (a + b) / one, su }'
done
echo "(computeN, pipeN: stage N's compute_s and pipe_s; compute/pp1: (compute0 + compute1)"
echo " / pp=1's compute; summary/s: samples_per_s of the summary line, all steps and the"
echo " time outside step_s included)"

# A configuration whose samples/s range exceeds 20% of its median says the
# machine was busy.
noisy=
for c in $configs; do
    if sort -g "$tmp/$c.sps" | awk -v m="$(m "$c" sps)" '
        NR == 1 { lo = $1 } { hi = $1 } END { exit !((hi - lo) > 0.2 * m) }'; then
        noisy="$noisy $c"
    fi
done
if [ -n "$noisy" ]; then
    echo "note: the samples/s range of$noisy exceeds 20% of the median:"
    echo "  something else ran on the machine; see the per-repetition lines on stderr, rerun"
fi
echo "loadavg at end: $(cat /proc/loadavg 2>/dev/null || echo unknown)"
