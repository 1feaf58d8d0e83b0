#!/bin/sh
# ballast-bench: scaling efficiency of ballast-train on the user's own
# cluster. For each rank count it launches ballast-train (mpirun or srun)
# on the same model and data — strong scaling keeps the global batch,
# weak scaling keeps the batch per rank — measures samples/s from the run's
# telemetry (median step after warm-up steps), and prints a table of
# samples/s, speed-up and efficiency against the smallest count, then
# plots samples/s against ranks with the ideal line (gnuplot, PNG and SVG).
# Exit status: 0 done, 1 a run or a tool failed (its output is shown), 2
# bad usage.
set -eu

prog=ballast-bench
here=$(cd "$(dirname "$0")" && pwd)

usage() {
    cat <<EOF
usage: ballast-bench [options] [-- BALLAST-TRAIN-FLAGS...]
Strong and weak scaling of ballast-train over rank counts: samples/s, speed-up and
efficiency against the smallest count, a table and a plot.
  --ranks LIST        rank counts, ascending, e.g. 1,2,4,8 (default 1,2)
  --mode MODE         strong (the global batch fixed), weak (the batch per rank fixed)
                      or both (default strong)
  --batch B           strong: the global batch; weak: the batch per rank (default 256)
  --layers W1,W2,...  the MLP's hidden widths (default 1024,1024,1024)
  --steps N           steps per run (default 40)
  --warmup W          first steps left out of the figures (default 5; N - W >= 3)
  --data DIR          Fashion-MNIST-style IDX files (default ballast-train's)
  --launcher NAME     mpirun (mpirun -np P) or srun (srun -n P) (default mpirun)
  --launcher-args A   more words for the launcher, e.g. "--oversubscribe" or
                      "--mpi=pmix -N 2" (default none)
  --train PATH        the ballast-train program (default: next to this one)
  --out DIR           where the table, the telemetry and the plots go
                      (default ./ballast-bench-out)
  --help              this text
Flags after -- go to every ballast-train run (e.g. -- --threads 4 --bucket-mb 8).
Efficiency: strong, speed-up / (P / P0); weak, (samples/s per rank) over that of
the smallest count. Output: the table on stdout and in DIR/scaling.txt, the
plots DIR/scaling-MODE.{png,svg}.
EOF
}

die_usage() {
    echo "$prog: $1 (see --help)" >&2
    exit 2
}

# count FLAG VALUE: a positive integer, else bad usage naming the flag.
count() {
    case $2 in
    '' | *[!0-9]* | 0*) die_usage "$1: '$2' is not a positive integer" ;;
    esac
}

ranks=1,2
mode=strong
batch=256
layers=1024,1024,1024
steps=40
warmup=5
data=
launcher=mpirun
launcher_args=
train=$here/ballast-train
out=ballast-bench-out
while [ $# -gt 0 ]; do
    case $1 in
    --ranks | --mode | --batch | --layers | --steps | --warmup | --data | --launcher | \
        --launcher-args | --train | --out)
        [ $# -ge 2 ] || die_usage "$1: needs a value"
        case $1 in
        --ranks) ranks=$2 ;;
        --mode) mode=$2 ;;
        --batch) count "$1" "$2" && batch=$2 ;;
        --layers) layers=$2 ;;
        --steps) count "$1" "$2" && steps=$2 ;;
        --warmup)
            case $2 in '' | *[!0-9]*) die_usage "$1: '$2' is not a non-negative integer" ;; esac
            warmup=$2
            ;;
        --data) data=$2 ;;
        --launcher) launcher=$2 ;;
        --launcher-args) launcher_args=$2 ;;
        --train) train=$2 ;;
        --out) out=$2 ;;
        esac
        shift 2
        ;;
    --help)
        usage
        exit 0
        ;;
    --)
        shift
        break
        ;;
    *) die_usage "unknown argument '$1'" ;;
    esac
done
case $mode in strong | weak | both) ;; *) die_usage "--mode: '$mode' is not strong, weak or both" ;; esac
case $launcher in mpirun | srun) ;; *) die_usage "--launcher: '$launcher' is not mpirun or srun" ;; esac
[ $((steps - warmup)) -ge 3 ] || die_usage "--steps $steps with --warmup $warmup leaves fewer than 3 steps"
# The rank counts: positive, ascending.
prev=0
for p in $(echo "$ranks" | tr , ' '); do
    case $p in '' | *[!0-9]* | 0*) die_usage "--ranks: '$p' in '$ranks' is not a positive integer" ;; esac
    [ "$p" -gt "$prev" ] || die_usage "--ranks: '$ranks' is not ascending"
    prev=$p
done
[ "$prev" -gt 0 ] || die_usage "--ranks: '$ranks' names no rank count"
[ -x "$train" ] || {
    echo "$prog: $train is not an executable ballast-train (use --train)" >&2
    exit 1
}
for tool in "$launcher" jq gnuplot; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "$prog: $tool not found" >&2
        exit 1
    }
done
mkdir -p "$out"
if [ "$(id -u)" = 0 ] && [ "$launcher" = mpirun ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

# measure MODE P: one run; prints "samples_per_s global_batch".
measure() {
    b=$batch
    [ "$1" = weak ] && b=$((batch * $2))
    log=$out/$1-$2.log
    jsonl=$out/$1-$2.jsonl
    rm -f "$jsonl"
    case $launcher in
    mpirun) set -- "$1" "$2" mpirun -np "$2" ;;
    srun) set -- "$1" "$2" srun -n "$2" ;;
    esac
    m=$1
    p=$2
    shift 2
    # shellcheck disable=SC2086
    "$@" $launcher_args "$train" ${data:+--data "$data"} --layers "$layers" --batch "$b" \
        --steps "$steps" --quiet --telemetry "$jsonl" $train_flags >"$log" 2>&1 || {
        echo "$prog: the $m run on $p ranks failed:" >&2
        cat "$log" >&2
        exit 1
    }
    step=$(jq -s -r --argjson w "$warmup" '.[$w:] | map(.step_s) | sort
        | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end' \
        "$jsonl") || {
        echo "$prog: the $m run on $p ranks wrote telemetry jq cannot read ($jsonl)" >&2
        exit 1
    }
    awk -v b="$b" -v s="$step" 'BEGIN { printf "%.6g %d\n", b / s, b }'
}

train_flags="$*"
modes=$mode
[ "$mode" = both ] && modes="strong weak"
: >"$out/scaling.txt"
for m in $modes; do
    : >"$out/$m.dat"
    base=
    p0=
    printf '%s scaling (%s): %s %s, batch %s%s, %s steps (median after %s)\n' "$m" "$launcher" \
        "--layers" "$layers" "$batch" "$([ "$m" = weak ] && echo ' per rank')" "$steps" "$warmup" |
        tee -a "$out/scaling.txt"
    printf '%6s %8s %12s %9s %11s\n' ranks batch samples/s speed-up efficiency |
        tee -a "$out/scaling.txt"
    for p in $(echo "$ranks" | tr , ' '); do
        set -- $(measure "$m" "$p")
        sps=$1
        b=$2
        if [ -z "$base" ]; then
            base=$sps
            p0=$p
        fi
        awk -v m="$m" -v p="$p" -v p0="$p0" -v s="$sps" -v s0="$base" -v b="$b" 'BEGIN {
            up = s / s0
            eff = m == "strong" ? up / (p / p0) : (s / p) / (s0 / p0)
            printf "%6d %8d %12.0f %9.3f %11.3f\n", p, b, s, up, eff }' | tee -a "$out/scaling.txt"
        # The plot's data: ranks, measured, ideal (linear from the first count).
        awk -v p="$p" -v p0="$p0" -v s="$sps" -v s0="$base" \
            'BEGIN { printf "%d %g %g\n", p, s, s0 * p / p0 }' >>"$out/$m.dat"
    done
    echo | tee -a "$out/scaling.txt"
    for fmt in png svg; do
        case $fmt in png) term="pngcairo size 800,500" ;; svg) term="svg size 800,500" ;; esac
        gnuplot >"$out/gnuplot.log" 2>&1 <<EOF || {
set terminal $term noenhanced
set output "$out/scaling-$m.$fmt"
set title "ballast $m scaling: --layers $layers"
set xlabel "ranks"
set ylabel "samples/s"
set key top left
set grid
plot "$out/$m.dat" using 1:2 with linespoints title "measured", \
     "" using 1:3 with lines dashtype 2 title "ideal"
EOF
            echo "$prog: gnuplot failed:" >&2
            cat "$out/gnuplot.log" >&2
            exit 1
        }
    done
done
echo "$prog: table in $out/scaling.txt; plots $(for m in $modes; do printf '%s ' "$out/scaling-$m.png"; done)(and .svg)"
