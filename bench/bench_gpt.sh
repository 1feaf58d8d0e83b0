#!/bin/sh
# bench_gpt.sh: GPT-2 training throughput (tokens/s) of ballast-train against
# PyTorch on the CPU, side by side in one run. Figures only, never pass/fail:
# exit status 0 unless something failed to run (then 1, with the failing
# command and its output), 2 on bad usage.
#
# The model: ballast-train --model gpt2 --n-layer 4 --n-head 4 --n-embd 256
# --seq-len 128 --vocab 256 --batch 16 (3257856 parameters), byte-level
# tokens of a text file, AdamW lr 1e-3 (constant, no warm-up), weight decay
# 0.1, gradient norm clipped to 1; the peer bench/torch_gpt.py trains the same
# model the same way. Per repetition, in an order that rotates from one
# repetition to the next:
#   (1) ballast, one process, 1 BLAS thread
#   (2) PyTorch, one process, 1 thread
#   (3) ballast, one process, 2 BLAS threads
#   (4) PyTorch, one process, 2 threads
#   (5) ballast data parallel: mpirun -np 2, 1 thread per rank (8 + 8 sequences)
#   (6) PyTorch DDP over gloo: mpirun -np 2, 1 thread per rank
#   (7) the GEMM-bound limit: bench_gpt_gemm, one step against its matrix
#       products alone, 1 thread (after the interleaved figures)
#   (8) the same in two processes at once: the GEMM limit of the np=2 jobs,
#       which bounds ratio_dp2 (dp2_ceiling)
# Both sides time the training loop only (not start-up, data loading or model
# creation), every step including the first: tokens/s = S * 16 * 128 / wall.
# See bench/README.md (bench_gpt) for how to read the output.
# Word splitting is meant where "median min max" is split into positional
# parameters.
# shellcheck disable=SC2046,SC2086
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BALLAST_BUILD_DIR:-$root/build}
. "$root/bench/common.sh"
mpirun=${MPIRUN:-mpirun}
python=${PYTHON:-/usr/bin/python3}
peer_py=$root/bench/torch_gpt.py
reps=3
steps=30
text=
sdpa=

usage() {
    cat <<EOF
usage: bench/bench_gpt.sh [options]
GPT-2 training throughput (tokens/s) of ballast-train --model gpt2 against the PyTorch
peer bench/torch_gpt.py, on the CPU: 1 thread, 2 threads, and data parallel on 2
ranks of 1 thread; medians over interleaved repetitions, and the ratios ballast/PyTorch.
  --build DIR   build directory with tools/ballast-train
                (default \$BALLAST_BUILD_DIR, else build/ in the repository)
  --reps R      repetitions of every figure (default 3)
  --steps S     training steps per run, both sides, all of them timed (default 30)
  --text FILE   training text, its bytes the tokens (default: the largest text the
                Debian package fortunes installs, /usr/share/games/fortunes/cookie)
  --sdpa        the peer's attention by F.scaled_dot_product_attention (torch >= 2.0)
                instead of eager q k^T / sqrt(hs), mask, softmax, @ v
  --help        this text
Environment: BALLAST_BUILD_DIR, MPIRUN (default mpirun), PYTHON (default /usr/bin/python3).
EOF
}

die_usage() {
    echo "bench_gpt.sh: $1 (see --help)" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    --build | --reps | --steps | --text)
        [ $# -ge 2 ] || die_usage "$1: needs a value"
        case $1 in
        --reps | --steps)
            case $2 in
            '' | *[!0-9]* | 0*) die_usage "$1: '$2' is not a positive integer" ;;
            esac
            ;;
        esac
        case $1 in
        --build) build=$2 ;;
        --reps) reps=$2 ;;
        --steps) steps=$2 ;;
        --text) text=$2 ;;
        esac
        shift 2
        ;;
    --sdpa)
        sdpa=--sdpa
        shift
        ;;
    --help)
        usage
        exit 0
        ;;
    *) die_usage "unknown argument '$1'" ;;
    esac
done

# The model and the optimiser, the same on both sides.
n_layer=4 n_head=4 n_embd=256 seq_len=128 vocab=256 batch=16
lr=1e-3 wd=0.1 clip=1.0 seed=1

train=$build/tools/ballast-train
[ -x "$train" ] || {
    echo "bench_gpt.sh: $train is missing; build first:" >&2
    echo "  cmake -S . -B build -DBALLAST_TESTS=OFF && cmake --build build -j2" >&2
    exit 1
}
help=$("$train" --help 2>&1) || true
case $help in
*'--model mlp|gpt2'*) ;;
*)
    echo "bench_gpt.sh: $train has no --model gpt2 (its --help does not list it); rebuild" >&2
    exit 1
    ;;
esac
command -v "$mpirun" >/dev/null 2>&1 || {
    echo "bench_gpt.sh: '$mpirun' not found (set MPIRUN)" >&2
    exit 1
}
"$python" -c 'import torch' >/dev/null 2>&1 || {
    echo "bench_gpt.sh: $python cannot import torch (apt-get install python3-torch)" >&2
    exit 1
}
if [ -z "$text" ]; then
    # The largest plain text of the fortunes package (scripts/install-deps.sh
    # installs it): not the .dat indexes, not the .u8 links.
    text=$(for f in $( (dpkg -L fortunes fortunes-min 2>/dev/null || true) |
        grep -v '\.dat$') /usr/share/games/fortunes/*; do
        case $f in /usr/share/games/fortunes/*.dat) continue ;; /usr/share/games/fortunes/*) ;;
        *) continue ;; esac
        [ -f "$f" ] && [ ! -L "$f" ] && echo "$(wc -c <"$f") $f"
    done | sort -n | tail -n 1 | cut -d' ' -f2-)
    [ -n "$text" ] || {
        echo "bench_gpt.sh: no text: install the fortunes package or pass --text FILE" >&2
        exit 1
    }
fi
[ -r "$text" ] || {
    echo "bench_gpt.sh: --text: cannot read $text" >&2
    exit 1
}
if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

# Flags this ballast-train may or may not have (the GPT-2 mode is new): the
# thread count falls back to OPENBLAS_NUM_THREADS alone, which is set anyway.
has_flag() {
    echo "$help" | grep -q -- "$1"
}
threads_flag=0
has_flag '--threads' && threads_flag=1
val_flag=0
has_flag '--val-fraction' && val_flag=1
quiet_flag=0
has_flag '--quiet' && quiet_flag=1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench_gpt.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# run NAME CMD...: runs CMD, its stdout and stderr to $tmp/NAME.out; on
# failure prints the command and that output, and exits 1.
run() {
    name=$1
    shift
    if ! "$@" >"$tmp/$name.out" 2>&1; then
        echo "bench_gpt.sh: ($name) failed: $*" >&2
        cat "$tmp/$name.out" >&2
        exit 1
    fi
}

# record NAME: appends the tokens_per_s and train_loss of $tmp/NAME.out's
# summary line to $tmp/NAME.values and $tmp/NAME.loss; dies without one.
record() {
    v=$(bench_field "$tmp/$1.out" summary: tokens_per_s)
    l=$(bench_field "$tmp/$1.out" summary: train_loss)
    if [ -z "$v" ]; then
        echo "bench_gpt.sh: ($1) printed no 'summary: ... tokens_per_s=' line:" >&2
        cat "$tmp/$1.out" >&2
        exit 1
    fi
    echo "$v" >>"$tmp/$1.values"
    echo "${l:-nan}" >>"$tmp/$1.loss"
    printf ' %s %s' "$1" "$v" >&2
}

# ballast NP THREADS: one ballast-train job under mpirun, unbound (so that
# a one-rank job's 2 threads get both cores).
ballast() {
    np=$1 th=$2
    set -- --model gpt2 --n-layer "$n_layer" --n-head "$n_head" --n-embd "$n_embd" \
        --seq-len "$seq_len" --vocab "$vocab" --batch "$batch" --steps "$steps" \
        --text "$text" --lr "$lr" --warmup 0 --lr-schedule constant \
        --clip-grad-norm "$clip" --weight-decay "$wd" --seed "$seed"
    [ "$threads_flag" = 0 ] || set -- "$@" --threads "$th"
    [ "$val_flag" = 0 ] || set -- "$@" --val-fraction 0
    [ "$quiet_flag" = 0 ] || set -- "$@" --quiet
    env OPENBLAS_NUM_THREADS="$th" "$mpirun" --oversubscribe -np "$np" --bind-to none \
        "$train" "$@"
}

# peer THREADS [--ddp]: the peer, one process, or under mpirun -np 2 with --ddp.
port=29547
peer() {
    th=$1
    shift
    set -- "$peer_py" --n-layer "$n_layer" --n-head "$n_head" --n-embd "$n_embd" \
        --seq-len "$seq_len" --vocab "$vocab" --batch "$batch" --steps "$steps" \
        --text "$text" --lr "$lr" --weight-decay "$wd" --clip "$clip" --seed "$seed" \
        --threads "$th" $sdpa "$@"
    case " $* " in
    *" --ddp "*)
        # A fresh rendezvous port for every job: none waits on the last one's.
        port=$((port + 1))
        "$mpirun" --oversubscribe -np 2 --bind-to none "$python" "$@" --port "$port"
        ;;
    *) "$python" "$@" ;;
    esac
}

figure() {
    case $1 in
    b1) run b1 ballast 1 1 ;;
    t1) run t1 peer 1 ;;
    b2) run b2 ballast 1 2 ;;
    t2) run t2 peer 2 ;;
    bd) run bd ballast 2 1 ;;
    td) run td peer 1 --ddp ;;
    esac
    record "$1"
}
figures="b1 t1 b2 t2 bd td"

# ---- Header --------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
mpiver=$("$mpirun" --version 2>/dev/null | head -n 1 || true)
tver=$("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
echo "bench_gpt: GPT-2 L=$n_layer NH=$n_head C=$n_embd T=$seq_len V=$vocab, batch $batch" \
    "sequences ($((batch * seq_len)) tokens) per step"
echo "  AdamW lr $lr constant, weight decay $wd, clip $clip; $steps steps per run, all timed"
echo "  text: $text ($(wc -c <"$text") bytes)"
echo "  ballast: $train$([ "$threads_flag" = 1 ] || echo ' (no --threads: OPENBLAS_NUM_THREADS only)')"
echo "  PyTorch: $peer_py, torch $tver, attention $([ -n "$sdpa" ] && echo sdpa || echo eager)," \
    "OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}"
echo "  $reps repetitions, interleaved (the order of the figures rotates)"
echo "  cpu: ${cpu:-unknown}, $(nproc) online; $mpiver; system BLAS: ${blas:-unknown}"
echo "  loadavg at start: $(cat /proc/loadavg 2>/dev/null || echo unknown)"
echo

# ---- Measurements, interleaved ------------------------------------------
bench_interleave "$reps" figure $figures

# ---- Report --------------------------------------------------------------
# row LABEL NAME: tokens/s median, min - max, median ms per step and loss
row() {
    set -- "$1" $(bench_stats "$tmp/$2.values") $(bench_median "$tmp/$2.loss")
    awk -v l="$1" -v m="$2" -v lo="$3" -v hi="$4" -v loss="$5" -v n="$((batch * seq_len))" \
        'BEGIN { printf "%-44s %9.0f   %6.0f - %-6.0f %8.1f %8.3f\n", l, m, lo, hi,
                 1e3 * n / m, loss }'
}
# ratio KEY NUM DEN TARGET TEXT: KEY=median(NUM)/median(DEN), the range of the
# ratios within one repetition, and the target for reference.
ratio() {
    nm=$(bench_median "$tmp/$2.values")
    dm=$(bench_median "$tmp/$3.values")
    paste "$tmp/$2.values" "$tmp/$3.values" | awk -v k="$1" -v nm="$nm" -v dm="$dm" \
        -v t="$4" -v x="$5" '{ q = $1 / $2; lo = NR == 1 || q < lo ? q : lo; hi = q > hi ? q : hi }
        END { printf "%s=%.3f range=%.3f-%.3f target=%s   (%s)\n", k, nm / dm, lo, hi, t, x }'
}

echo
printf '%-44s %9s   %-15s %8s %8s\n' "figure" "tokens/s" "min - max" "ms/step" "loss"
row "(1) ballast, 1 thread" b1
row "(2) PyTorch, 1 thread" t1
row "(3) ballast, 2 threads" b2
row "(4) PyTorch, 2 threads" t2
row "(5) ballast np=2 DP, 1 thread/rank" bd
row "(6) PyTorch DDP (gloo) np=2, 1 thread/rank" td
echo "(loss: the median of the runs' train_loss, the mean loss of their last min(S, 100)"
echo " steps; the two sides draw the initial parameters and the batches from different"
echo " generators, so the losses agree only roughly; a diverged run shows)"
grep '^torch_gpt:' "$tmp/td.out" | tail -n 1
noisy=
for n in $figures; do
    set -- $(bench_stats "$tmp/$n.values")
    if awk -v m="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !((hi - lo) > 0.2 * m) }'; then
        noisy="$noisy $n"
    fi
done
if [ -n "$noisy" ]; then
    echo "note: the range of ($(echo $noisy | sed 's/ /), (/g')) exceeds 20% of the median:"
    echo "  something else ran on the machine; see the per-repetition lines on stderr, rerun"
fi
echo "loadavg at end: $(cat /proc/loadavg 2>/dev/null || echo unknown)"
echo
echo "ratios ballast / PyTorch of the medians (range: the ratios within each repetition;"
echo "targets for reference only):"
ratio ratio_1thread b1 t1 ">=1.2" "(1) / (2)"
ratio ratio_2threads b2 t2 ">=1.2" "(3) / (4)"
ratio ratio_dp2 bd td ">=1.5" "(5) / (6)"

# ---- (7) The GEMM-bound limit --------------------------------------------
# bench_gpt_gemm interleaves its own two figures: a ballast step and the
# step's matrix products alone, 1 thread.
echo
gemm=$build/bench/bench_gpt_gemm
if [ -x "$gemm" ]; then
    echo "(7) one thread: a ballast step against its GEMMs alone (bench_gpt_gemm):"
    "$gemm" --reps "$reps" --steps 5 --text "$text" 2>/dev/null | sed 's/^/    /'
else
    echo "(7) skipped: $gemm is not built (configure with -DBALLAST_BENCH=ON)"
fi

# ---- (8) The data-parallel ceiling -----------------------------------------
# Two bench_gpt_gemm processes at once, one thread each, as the np=2 jobs run:
# their GEMM-only figures together are what (5) could reach with no work but
# the matrix products and no communication, so against (6) they bound
# ratio_dp2 on this machine.
if [ -x "$gemm" ]; then
    env OPENBLAS_NUM_THREADS=1 "$mpirun" --oversubscribe -np 2 --bind-to none sh -c \
        '"$0" --reps "$1" --steps 5 --text "$2" >"$3.$OMPI_COMM_WORLD_RANK" 2>/dev/null' \
        "$gemm" "$reps" "$text" "$tmp/gemm2" || {
        echo "bench_gpt.sh: (8) failed: two bench_gpt_gemm processes" >&2
        exit 1
    }
    limits=$(cat "$tmp/gemm2.0" "$tmp/gemm2.1" | awk '/GEMM-bound limit/ { print $4 }')
    steps2=$(cat "$tmp/gemm2.0" "$tmp/gemm2.1" | awk '/ballast train step/ { print $5 }')
    echo
    echo "(8) two processes at once, 1 thread each (bench_gpt_gemm per process):"
    echo "    GEMM-bound limits $(echo $limits | tr ' ' '+') tokens/s;" \
        "ballast steps $(echo $steps2 | tr ' ' '+') tokens/s"
    echo "$limits" | awk -v dm="$(bench_median "$tmp/td.values")" \
        -v bm="$(bench_median "$tmp/bd.values")" \
        '{ s += $1 } END { printf "dp2_ceiling=%.3f   ((8) limits summed / (6): the most ratio_dp2 can be here)\n", s / dm
                           printf "dp2_fraction=%.3f  ((5) / (8) limits summed: the DP job against its GEMM limit)\n", bm / s }'
fi
