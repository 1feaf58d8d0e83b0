#!/bin/sh
# bench_dp.sh: data-parallel throughput of ballast-train against PyTorch, and
# the raw MPI all-reduce of the same gradient bytes. Figures only, never
# pass/fail: exit status 0 unless something failed to run (then 1, with the
# failing command and its output), 2 on bad usage.
#
# The model: ballast-train --layers 1024,1024,1024 --batch 256 on
# Fashion-MNIST (784-1024-1024-1024-10 ReLU MLP, 2913290 parameters, a
# gradient of 11653160 bytes), one BLAS thread per rank. Per repetition, in an
# order that rotates from one repetition to the next:
#   (a) mpirun -np 1 ballast-train ... --threads 1 --quiet
#   (b) mpirun -np 2 ballast-train ... --threads 1 --quiet (both ranks on this
#       node: gradients summed through shared memory, runtime/parallel/node_reduce.c)
#   (i) (b) with --node-reduce off: the MPI all-reduce in buckets during
#       backward, the path of a data-parallel group that spans nodes
#   (c) the PyTorch peer --plain --threads 1          (with --peer)
#   (d) the PyTorch peer --np 2 --threads 1 (DDP/gloo) (with --peer)
#   (e) mpirun -np 2 allreduce_bw for the gradient bytes, blocking and in
#       3 buckets (ballast's default --bucket-mb 4 makes 3 for this model);
#       with --diagnose also its overlap probe (the 3 buckets posted, then
#       16 ms of work with 7 MPI_Testall, then MPI_Waitall)
# and with --pretend-nodes, the node-then-network reduction of a group that
# spans nodes, on this one machine cut into 2 pretend nodes of consecutive
# ranks (BALLAST_PRETEND_NODES=2, runtime/parallel/node_reduce.h), against the
# flat MPI all-reduce of the same job:
#   (j) (b) with BALLAST_PRETEND_NODES=2: 2 nodes of 1 rank
#   (k) mpirun -np 4 ballast-train ... with BALLAST_PRETEND_NODES=2: 2 nodes
#       of 2 ranks, shared memory within each, then MPI between them
#   (l) (k) without the override and with --node-reduce off
# (np=4 on fewer than 4 cores runs oversubscribed and unbound)
# and with --zero, ZeRO-1 (the momentum sharded over the ranks,
# runtime/parallel/reduce_zero.c) against the two paths it replaces:
#   (m) (b) with --zero on: a reduce-scatter of the gradient after backward,
#       each rank's update of its half, then an all-gather of the parameters
# and with --diagnose, to split (b)'s loss into compute and communication:
#   (f) two independent one-rank runs at --batch 128, side by side, one per
#       core: the compute of np=2 with no communication at all
#   (g) (i) with --bucket-mb 4096: one bucket, posted after backward
#   (h) (i) with Open MPI's own choice of non-blocking all-reduce (binomial below 4 ranks)
#       (OMPI_MCA_coll_libnbc_iallreduce_algorithm=0; ballast-train asks for the ring, =1)
# See bench/README.md for how to read the output.
# Word splitting is meant where a list or "median min max" is split into
# positional parameters.
# shellcheck disable=SC2046,SC2086
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BALLAST_BUILD_DIR:-$root/build}
. "$root/bench/common.sh"
mpirun=${MPIRUN:-mpirun}
python=${PYTHON:-/usr/bin/python3}
data=/usr/share/datasets/fashion-mnist
reps=3
steps=100
peer=
peer_steps=100
bind=core
diagnose=0
pretend=0
zero=0

usage() {
    cat <<EOF
usage: bench/bench_dp.sh [options]
Data-parallel training throughput of ballast-train (MLP 1024,1024,1024, batch 256,
one BLAS thread per rank) at np=1 and np=2, the PyTorch peer (plain and DDP over
gloo), and a raw MPI all-reduce of the gradient bytes; medians over interleaved
repetitions.
  --build DIR       build directory with tools/ballast-train and bench/allreduce_bw
                    (default \$BALLAST_BUILD_DIR, else build/ in the repository)
  --reps R          repetitions of every figure (default 3)
  --steps S         ballast steps per run, at least 60 (default 100)
  --peer PATH       also run the PyTorch peer script PATH (torch_ddp_fmnist.py) with
                    \$PYTHON (default /usr/bin/python3), when that can import torch
  --peer-steps N    timed steps per peer run, after its own 10 warm-up steps (default 100)
  --data DIR        Fashion-MNIST IDX files (default $data)
  --bind core|none  mpirun --bind-to for the ballast runs (default core)
  --diagnose        also run (f) compute-only, (g) one bucket, (h) libnbc default iallreduce
  --pretend-nodes   also run the node-then-network reduction on 2 pretend nodes
                    (BALLAST_PRETEND_NODES=2) at np=2 (j) and np=4 (k), and the flat
                    MPI all-reduce at np=4 (l), with the ratios (j)/(i) and (k)/(l)
  --zero            also run ZeRO-1 at np=2 (m, --zero on), with the ratios (m)/(i)
                    and (m)/(b)
  --help            this text
Environment: BALLAST_BUILD_DIR, MPIRUN (default mpirun), PYTHON.
EOF
}

die_usage() {
    echo "bench_dp.sh: $1 (see --help)" >&2
    exit 2
}

# Dies naming the flag unless $2 is a positive integer.
check_positive() {
    case $2 in
    '' | *[!0-9]* | 0*) die_usage "$1: '$2' is not a positive integer" ;;
    esac
}

while [ $# -gt 0 ]; do
    case $1 in
    --build | --reps | --steps | --peer | --peer-steps | --data | --bind)
        [ $# -ge 2 ] || die_usage "$1: needs a value"
        case $1 in
        --reps | --steps | --peer-steps) check_positive "$1" "$2" ;;
        esac
        case $1 in
        --build) build=$2 ;;
        --reps) reps=$2 ;;
        --steps) steps=$2 ;;
        --peer) peer=$2 ;;
        --peer-steps) peer_steps=$2 ;;
        --data) data=$2 ;;
        --bind)
            case $2 in
            core | none) bind=$2 ;;
            *) die_usage "--bind: '$2' is neither core nor none" ;;
            esac
            ;;
        esac
        shift 2
        ;;
    --diagnose)
        diagnose=1
        shift
        ;;
    --pretend-nodes)
        pretend=1
        shift
        ;;
    --zero)
        zero=1
        shift
        ;;
    --help)
        usage
        exit 0
        ;;
    *) die_usage "unknown argument '$1'" ;;
    esac
done
[ "$steps" -ge 60 ] || die_usage "--steps: $steps is below 60; start-up would not be amortised"

train=$build/tools/ballast-train
arbw=$build/bench/allreduce_bw
for f in "$train" "$arbw"; do
    [ -x "$f" ] || {
        echo "bench_dp.sh: $f is missing; build first:" >&2
        echo "  cmake -S . -B build -DBALLAST_TESTS=OFF && cmake --build build -j2" >&2
        exit 1
    }
done
command -v "$mpirun" >/dev/null 2>&1 || {
    echo "bench_dp.sh: '$mpirun' not found (set MPIRUN)" >&2
    exit 1
}
if [ -n "$peer" ]; then
    [ -r "$peer" ] || {
        echo "bench_dp.sh: --peer: cannot read $peer" >&2
        exit 1
    }
    if ! "$python" -c 'import torch' >/dev/null 2>&1; then
        echo "bench_dp.sh: $python cannot import torch (apt-get install python3-torch);" \
            "leaving out (c) and (d)" >&2
        peer=
    fi
fi
if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench_dp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

batch=256
grad_bytes=11653160 # 4 * (784*1024+1024 + 2*(1024*1024+1024) + 1024*10+10)
probe_ms=16         # about np=2's backward pass: the work an overlap could hide behind

# run NAME CMD...: runs CMD, its stdout and stderr to $tmp/NAME.out; on
# failure prints the command and that output, and exits 1.
run() {
    name=$1
    shift
    if ! "$@" >"$tmp/$name.out" 2>&1; then
        echo "bench_dp.sh: ($name) failed: $*" >&2
        cat "$tmp/$name.out" >&2
        exit 1
    fi
}

# record NAME FILE PREFIX KEY: appends that value to $tmp/NAME.values; dies
# when the output has no such figure.
record() {
    v=$(bench_field "$2" "$3" "$4")
    if [ -z "$v" ]; then
        echo "bench_dp.sh: ($1) printed no '$3 ... $4=' figure:" >&2
        cat "$2" >&2
        exit 1
    fi
    echo "$v" >>"$tmp/$1.values"
    printf ' %s %s' "$1" "$v" >&2
}

# ballast CPU ENV NP BATCH [extra ballast-train flags]: one ballast-train
# job. CPU: taskset's core for the whole job (the job then binds nothing), or
# -; ENV: one VAR=VALUE for it, or -.
ballast() {
    cpu=$1 var=$2 np=$3 b=$4
    shift 4
    bind_to=$bind
    [ "$cpu" = - ] || bind_to=none
    over=
    # More ranks than cores (np=4 on a small machine): oversubscribed, unbound.
    if [ "$np" -gt "$(nproc)" ]; then
        over=--oversubscribe bind_to=none
    fi
    set -- "$mpirun" -np "$np" $over --bind-to "$bind_to" "$train" --data "$data" \
        --layers 1024,1024,1024 --batch "$b" --steps "$steps" --threads 1 --quiet "$@"
    [ "$var" = - ] || set -- env "$var" "$@"
    [ "$cpu" = - ] || set -- taskset -c "$cpu" "$@"
    "$@"
}

figure_a() {
    run a ballast - - 1 "$batch"
    record a "$tmp/a.out" summary: samples_per_s
}
figure_b() {
    run b ballast - - 2 "$batch"
    record b "$tmp/b.out" summary: samples_per_s
}
figure_c() {
    run c "$python" "$peer" --plain --threads 1 --hidden 1024,1024,1024 --batch "$batch" \
        --steps "$peer_steps" --lr 0.05 --data "$data"
    record c "$tmp/c.out" torch- samples/s
}
figure_d() {
    run d "$python" "$peer" --np 2 --threads 1 --hidden 1024,1024,1024 --batch "$batch" \
        --steps "$peer_steps" --lr 0.05 --data "$data"
    record d "$tmp/d.out" torch- samples/s
}
figure_e() {
    probe=
    [ "$diagnose" = 0 ] || probe="--compute-ms $probe_ms --tests 7"
    run e "$mpirun" -np 2 --bind-to "$bind" "$arbw" --bytes "$grad_bytes" --buckets 3 $probe
    record e1 "$tmp/e.out" "result: mode=allreduce" time_us
    record e3 "$tmp/e.out" "result: mode=buckets" time_us
    [ "$diagnose" = 0 ] || record ex "$tmp/e.out" "result: mode=overlap" exposed_us
}
# Two one-rank jobs of batch 128 at once, pinned one per core by taskset
# (two mpiruns would both bind their rank 0 to core 0): the work of np=2's
# ranks, with the same sharing of caches and memory, and no communication.
figure_f() {
    ballast 0 - 1 128 >"$tmp/f0.out" 2>&1 &
    pid=$!
    if ! ballast 1 - 1 128 >"$tmp/f1.out" 2>&1; then
        wait "$pid" || true
        echo "bench_dp.sh: (f) failed:" >&2
        cat "$tmp/f1.out" >&2
        exit 1
    fi
    if ! wait "$pid"; then
        echo "bench_dp.sh: (f) failed:" >&2
        cat "$tmp/f0.out" >&2
        exit 1
    fi
    f0=$(bench_field "$tmp/f0.out" summary: samples_per_s)
    f1=$(bench_field "$tmp/f1.out" summary: samples_per_s)
    if [ -z "$f0" ] || [ -z "$f1" ]; then
        echo "bench_dp.sh: (f) printed no summary" >&2
        exit 1
    fi
    # Together they train 256 samples per step pair; the slower sets the pace.
    v=$(awk -v x="$f0" -v y="$f1" 'BEGIN { m = x < y ? x : y; printf "%.1f", 2 * m }')
    echo "$v" >>"$tmp/f.values"
    printf ' f %s' "$v" >&2
}
figure_g() {
    run g ballast - - 2 "$batch" --node-reduce off --bucket-mb 4096
    record g "$tmp/g.out" summary: samples_per_s
}
figure_h() {
    run h ballast - OMPI_MCA_coll_libnbc_iallreduce_algorithm=0 2 "$batch" --node-reduce off
    record h "$tmp/h.out" summary: samples_per_s
}
figure_i() {
    run i ballast - - 2 "$batch" --node-reduce off
    record i "$tmp/i.out" summary: samples_per_s
}
figure_j() {
    run j ballast - BALLAST_PRETEND_NODES=2 2 "$batch"
    record j "$tmp/j.out" summary: samples_per_s
}
figure_k() {
    run k ballast - BALLAST_PRETEND_NODES=2 4 "$batch"
    record k "$tmp/k.out" summary: samples_per_s
}
figure_l() {
    run l ballast - - 4 "$batch" --node-reduce off
    record l "$tmp/l.out" summary: samples_per_s
}
figure_m() {
    run m ballast - - 2 "$batch" --zero on
    record m "$tmp/m.out" summary: samples_per_s
}

figures="a b i"
[ -n "$peer" ] && figures="$figures c d"
figures="$figures e"
[ "$diagnose" = 1 ] && figures="$figures f g h"
[ "$pretend" = 1 ] && figures="$figures j k l"
[ "$zero" = 1 ] && figures="$figures m"

# ---- Header --------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
mpiver=$("$mpirun" --version 2>/dev/null | head -n 1 || true)
echo "bench_dp: MLP 784-1024-1024-1024-10, batch $batch (global), 1 BLAS thread per rank"
echo "  ballast: $train, $steps steps per run (samples_per_s of its summary: training only)"
[ -n "$peer" ] && echo "  PyTorch peer: $peer, $peer_steps timed steps per run; $("$python" -c \
    'import torch; print("torch", torch.__version__)' 2>/dev/null)"
echo "  $reps repetitions, interleaved (the order of the figures rotates)"
echo "  cpu: ${cpu:-unknown}, $(nproc) online; $mpiver; ballast ranks: --bind-to $bind"
echo "  loadavg at start: $(cat /proc/loadavg 2>/dev/null || echo unknown)"
echo

# ---- Measurements, interleaved ------------------------------------------
figure() {
    "figure_$1"
}
bench_interleave "$reps" figure $figures

# ---- Report --------------------------------------------------------------
# stats NAME: "median min max" of $tmp/NAME.values
stats() {
    bench_stats "$tmp/$1.values"
}
median() {
    bench_median "$tmp/$1.values"
}
# row LABEL NAME: samples/s median, min - max, and the median step time
row() {
    set -- "$1" $(stats "$2")
    awk -v l="$1" -v m="$2" -v lo="$3" -v hi="$4" -v b="$batch" 'BEGIN {
        printf "%-44s %9.0f   %6.0f - %-6.0f %8.2f\n", l, m, lo, hi, 1e3 * b / m }'
}
# ratio LABEL NUM DEN SCALE TARGET: median(NUM) / (SCALE * median(DEN)), and
# the range of the per-repetition ratios
ratio() {
    nm=$(median "$2")
    dm=$(median "$3")
    paste "$tmp/$2.values" "$tmp/$3.values" | awk -v l="$1" -v nm="$nm" -v dm="$dm" -v s="$4" \
        -v t="$5" '{ q = $1 / (s * $2); lo = NR == 1 || q < lo ? q : lo; hi = q > hi ? q : hi }
        END { printf "%-44s %6.3f   (per repetition %.3f - %.3f)   %s\n",
              l, nm / (s * dm), lo, hi, t }'
}
# allreduce LABEL NAME: median time and bandwidths of $grad_bytes over 2 ranks
allreduce() {
    set -- "$1" $(stats "$2")
    awk -v l="$1" -v m="$2" -v lo="$3" -v hi="$4" -v n="$grad_bytes" 'BEGIN {
        alg = n / (m * 1e-6) * 1e-9
        printf "%-36s %8.2f   %5.2f - %-5.2f %10.2f %10.2f\n", l, m / 1e3, lo / 1e3, hi / 1e3,
               alg, alg * 2 * (2 - 1) / 2 }'
}

echo
printf '%-44s %9s   %-15s %8s\n' "figure" "samples/s" "min - max" "ms/step"
row "(a) ballast np=1" a
row "(b) ballast np=2 (node-local reduction)" b
row "(i) ballast np=2 --node-reduce off (MPI)" i
if [ -n "$peer" ]; then
    row "(c) PyTorch plain, 1 thread" c
    row "(d) PyTorch DDP (gloo) np=2, 1 thread/rank" d
fi
if [ "$diagnose" = 1 ]; then
    row "(f) 2 x np=1 batch 128 side by side, no comm" f
    row "(g) ballast np=2 --bucket-mb 4096" g
    row "(h) ballast np=2, libnbc default (binomial)" h
fi
if [ "$pretend" = 1 ]; then
    row "(j) np=2, 2 pretend nodes of 1 (node+net)" j
    row "(k) np=4, 2 pretend nodes of 2 (node+net)" k
    row "(l) np=4 --node-reduce off (MPI)" l
fi
if [ "$zero" = 1 ]; then
    row "(m) ballast np=2 --zero on (ZeRO-1)" m
fi
# A figure whose range exceeds 20% of its median says the machine was busy.
noisy=
for n in $figures; do
    [ "$n" = e ] && n="e1 e3"
    for m in $n; do
        set -- $(stats "$m")
        if awk -v m="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !((hi - lo) > 0.2 * m) }'; then
            noisy="$noisy $m"
        fi
    done
done
if [ -n "$noisy" ]; then
    echo "note: the range of ($(echo $noisy | sed 's/ /), (/g')) exceeds 20% of the median:"
    echo "  something else ran on the machine; see the per-repetition lines on stderr, rerun"
fi
echo "loadavg at end: $(cat /proc/loadavg 2>/dev/null || echo unknown)"
echo
ratio "scaling efficiency (b) / (2 x (a)):" b a 2 "target >= 0.85"
ratio "  with the MPI all-reduce, (i) / (2 x (a)):" i a 2 ""
ratio "node-local over MPI, (b) / (i):" b i 1 ""
if [ -n "$peer" ]; then
    ratio "ballast np=2 / PyTorch DDP, (b) / (d):" b d 1 "target >= 1.4"
    ratio "ballast np=2 / PyTorch plain, (b) / (c):" b c 1 ""
    ratio "PyTorch DDP scaling, (d) / (2 x (c)):" d c 2 ""
fi
if [ "$diagnose" = 1 ]; then
    ratio "no-comm bound, (f) / (2 x (a)):" f a 2 ""
    ratio "ballast np=2 / no-comm bound, (b) / (f):" b f 1 ""
fi
if [ "$pretend" = 1 ]; then
    ratio "node+net over flat MPI np=2, (j) / (i):" j i 1 ""
    ratio "node+net over flat MPI np=4, (k) / (l):" k l 1 ""
fi
if [ "$zero" = 1 ]; then
    ratio "ZeRO-1 over MPI all-reduce, (m) / (i):" m i 1 ""
    ratio "ZeRO-1 over node-local, (m) / (b):" m b 1 ""
fi
echo
echo "(e) raw MPI all-reduce of the gradient, $grad_bytes bytes, np=2 (float32 SUM in place):"
printf '%-36s %8s   %-13s %10s %10s\n' "" "ms" "min - max" "algbw GB/s" "busbw GB/s"
allreduce "MPI_Allreduce" e1
allreduce "3 x MPI_Iallreduce + MPI_Waitall" e3
if [ "$diagnose" = 1 ]; then
    set -- $(stats ex)
    awk -v m="$1" -v lo="$2" -v hi="$3" -v w="$probe_ms" 'BEGIN {
        printf "%-36s %8.2f   %5.2f - %-5.2f (no bandwidth: not a transfer time)\n",
               "same + " w " ms work, exposed part", m / 1e3, lo / 1e3, hi / 1e3 }'
    echo "(exposed part: the probe's time minus its ${probe_ms} ms of work in 7 chunks with an"
    echo " MPI_Testall after each, as ballast tests after every layer; close to the 3-bucket"
    echo " time, or above it, means the work hid (almost) none of the all-reduce)"
fi
echo "(bus bandwidth = algbw x 2(n-1)/n, n = 2; GB = 1e9 bytes)"
echo "ballast's own achieved all-reduce bandwidth: not measured; it awaits per-step"
echo "communication telemetry in the trainer."
echo
# The step-time budget, medians: what np=2 would take with perfect halving
# of the compute and the raw all-reduce not overlapped at all.
ma=$(median a)
mb=$(median b)
mi=$(median i)
me1=$(median e1)
me3=$(median e3)
awk -v a="$ma" -v b="$mb" -v i="$mi" -v e1="$me1" -v e3="$me3" -v B="$batch" 'BEGIN {
    sa = 1e3 * B / a; sb = 1e3 * B / b; si = 1e3 * B / i
    printf "step budget (medians, ms): np=1 step %.2f; half of it %.2f; np=2 step %.2f\n",
           sa, sa / 2, sb
    printf "  (node-local), %.2f with the MPI all-reduce\n", si
    printf "  np=2 step - np=1 step / 2 = %.2f node-local, %.2f MPI (compute slowdown and\n",
           sb - sa / 2, si - sa / 2
    printf "  unhidden communication together); raw all-reduce %.2f blocking, %.2f in 3 buckets\n",
           e1 / 1e3, e3 / 1e3 }'
if [ "$diagnose" = 1 ]; then
    mf=$(median f)
    awk -v b="$mb" -v i="$mi" -v f="$mf" -v B="$batch" 'BEGIN {
        sb = 1e3 * B / b; si = 1e3 * B / i; sf = 1e3 * B / f
        printf "  (f) compute-only np=2 step %.2f; np=2 step - that = %.2f node-local, %.2f MPI:\n",
               sf, sb - sf, si - sf
        printf "  the communication and synchronisation per step not hidden by overlap\n" }'
fi
