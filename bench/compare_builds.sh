#!/bin/sh
# compare_builds.sh: the same benchmarks from two builds of ballast, side by
# side in one run, so a change can be told apart from the machine's noise:
# the figures of bench_dp.sh (ballast-train, MLP 1024,1024,1024, batch 256,
# one BLAS thread per rank: np=1, np=2 through the node's shared memory,
# np=2 with the MPI all-reduce) and of bench_mlp (one-rank throughput
# through the C API against the GEMM-bound limit). Every repetition runs
# each figure for the old build, then for the new one (their order
# alternating from one repetition to the next). Prints the medians of each
# build and the ratios new/old, and per figure the range of the ratios.
# Figures only, never pass/fail.
#   bench/compare_builds.sh OLD_BUILD NEW_BUILD [--reps R] [--steps S]
# A build directory holds ballast-train (in tools/, or runtime/ in builds
# from before tools/ existed) and bench/bench_mlp.
# Word splitting is meant where "median min max" is split.
# shellcheck disable=SC2086
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/common.sh"
usage() {
    echo "usage: bench/compare_builds.sh OLD_BUILD NEW_BUILD [--reps R] [--steps S]" >&2
    exit 2
}
[ $# -ge 2 ] || usage
old=$1
new=$2
shift 2
reps=5
steps=100
while [ $# -gt 0 ]; do
    case $1 in
    --reps) reps=${2:?}; shift 2 ;;
    --steps) steps=${2:?}; shift 2 ;;
    *) usage ;;
    esac
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
data=/usr/share/datasets/fashion-mnist
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

train_of() {
    if [ -x "$1/tools/ballast-train" ]; then
        echo "$1/tools/ballast-train"
    elif [ -x "$1/runtime/ballast-train" ]; then
        echo "$1/runtime/ballast-train"
    else
        echo "compare_builds: no ballast-train in $1/tools or $1/runtime" >&2
        exit 1
    fi
}
for b in "$old" "$new"; do
    train_of "$b" >/dev/null
    [ -x "$b/bench/bench_mlp" ] || { echo "compare_builds: no $b/bench/bench_mlp" >&2; exit 1; }
done

flags="--data $data --layers 1024,1024,1024 --batch 256 --steps $steps --threads 1 --quiet"

# figure old|new NAME: one measurement of figure NAME with that build,
# appended to $work/NAME.old or .new (samples/s, or the ballast/limit
# ratio).
figure() {
    tag=$1
    name=$2
    if [ "$tag" = old ]; then build=$old; else build=$new; fi
    out=$work/out
    case $name in
    np1) mpirun -np 1 --bind-to core "$(train_of "$build")" $flags >"$out" 2>&1 ;;
    np2) mpirun -np 2 --bind-to core "$(train_of "$build")" $flags >"$out" 2>&1 ;;
    np2_mpi) mpirun -np 2 --bind-to core "$(train_of "$build")" $flags --node-reduce off \
        >"$out" 2>&1 ;;
    mlp) OPENBLAS_NUM_THREADS=1 "$build/bench/bench_mlp" --reps 1 --steps 50 >"$out" 2>&1 ;;
    esac || { echo "compare_builds: $name with $build failed:" >&2; cat "$out" >&2; exit 1; }
    if [ "$name" = mlp ]; then
        awk '/^ballast \/ GEMM-bound limit:/ { print $5 }' "$out" >>"$work/$name.$tag"
    else
        bench_field "$out" "summary:" samples_per_s >>"$work/$name.$tag"
    fi
    printf ' %s/%s' "$name" "$tag" >&2
}

figures="np1 np2 np2_mpi mlp"
r=1
while [ "$r" -le "$reps" ]; do
    printf 'rep %d/%d:' "$r" "$reps" >&2
    for f in $figures; do
        if [ $((r % 2)) -eq 1 ]; then
            figure old "$f"
            figure new "$f"
        else
            figure new "$f"
            figure old "$f"
        fi
    done
    echo >&2
    r=$((r + 1))
done

ot=old
nt=new
echo "compare_builds: $reps repetitions, old = $old, new = $new"
echo "  cpu: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) online"
printf '%-10s %12s %12s %9s   %s\n' figure "old median" "new median" "new/old" \
    "per-repetition new/old min - max"
for f in $figures; do
    set -- $(bench_stats "$work/$f.$ot")
    om=$1
    set -- $(bench_stats "$work/$f.$nt")
    nm=$1
    paste "$work/$f.$ot" "$work/$f.$nt" | awk '{ print $2 / $1 }' >"$work/$f.ratio"
    set -- $(bench_stats "$work/$f.ratio")
    printf '%-10s %12.4g %12.4g %9.3f   %.3f - %.3f\n' "$f" "$om" "$nm" "$(echo "$nm $om" |
        awk '{ print $1 / $2 }')" "$2" "$3"
done
for t in "$ot" "$nt"; do
    paste "$work/np1.$t" "$work/np2.$t" | awk '{ print $2 / (2 * $1) }' >"$work/eff.$t"
    paste "$work/np1.$t" "$work/np2_mpi.$t" | awk '{ print $2 / (2 * $1) }' >"$work/effmpi.$t"
done
printf 'scaling efficiency np=2 (node-local): old %.3f, new %.3f\n' \
    "$(bench_median "$work/eff.$ot")" "$(bench_median "$work/eff.$nt")"
printf 'scaling efficiency np=2 (MPI all-reduce): old %.3f, new %.3f\n' \
    "$(bench_median "$work/effmpi.$ot")" "$(bench_median "$work/effmpi.$nt")"
echo "(samples/s for np1, np2, np2_mpi; ballast/GEMM-bound limit for mlp)"
