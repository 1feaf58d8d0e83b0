#!/bin/sh
# bench_gpu.sh: ballast on a GPU, side by side with its peers, in one run.
#
#   bench/bench_gpu.sh BUILD_DIR [OUT_DIR]
#
# BUILD_DIR is a build with the CUDA backend (BUILD_DIR/tools/ballast-train);
# OUT_DIR (default: a new directory under $TMPDIR) receives every raw output:
# one log per run, the telemetry of every ballast run (gzip'd), the figures of
# every repetition (values/), and the report (report.txt), which also goes
# to stdout. Progress goes to stderr.
#
# (a) One GPU: ballast-train --device cuda --layers 1024,1024,1024 at batch
#     256 and 2048, against PyTorch eager on the same GPU (bench/torch_mlp.py:
#     the same model, optimiser and batch sampling) with the training set on
#     the GPU, as ballast keeps it by default (--data-on-device on), and
#     copying every batch from host memory (--host-batches), as ballast does
#     with --data-on-device off. R repetitions, interleaved (ballast,
#     torch, ballast, torch, ... rotating); medians; ratio ballast / torch,
#     target >= 1.0.
# (b) A mixed CPU+GPU job on this machine: one GPU rank and C CPU ranks of
#     T BLAS threads each, every rank bound to cores of its own with taskset,
#     --policy proportional --rebalance-every 10. First the solo figures (the
#     GPU rank alone; one CPU rank alone on its cores), then the mixed job;
#     achieved / oracle, where oracle = GPU solo + C x CPU solo samples/s,
#     target >= 0.9. The model is smaller than in (a) (--layers 256,128):
#     on 1024-wide layers an H200 is some 50-100x faster than a 4-thread CPU
#     rank, so the CPU ranks would hardly count. The batch is large (8192):
#     a mixed group all-reduces its ~1 MB of gradients over MPI through host
#     memory every step, which a GPU step of a small batch would not
#     amortise (at 1024 the all-reduce alone costs about what the GPU's
#     compute does). Buckets of 0.25 MiB (--bucket-mb): the ~0.9 MiB of
#     gradients go in four, so the GPU rank's downloads and MPI's sums of
#     the first buckets overlap its backward of the last layers, where one
#     default 4 MiB bucket would start only after backward.
#
# Figures: ballast's `summary: ... samples_per_s=` counts the whole run,
# first steps (CUDA warm-up, the controller's first windows on the even
# split) included. Beside it, the steady state from the --telemetry JSON
# lines: samples over step_s (each step's slowest rank: compute, including
# the batch's host gather and upload, plus the reductions and the update) for
# the last half of the steps. The steady state leaves out what runs between
# steps (sampling, the progress callback), so it is a slight overestimate;
# the whole-run figure an underestimate. The number of timed steps of (a) is
# chosen from a calibration run so that a run trains for about
# BENCH_GPU_SECONDS; the peer times the same steps after its own warm-up.
#
# Exit status: 0 figures printed (whether the targets are met or not; the
# report says), 77 no GPU (the probe `ballast-train --device cuda --steps 0`
# says there is no CUDA device, or the build has no CUDA backend), 1 a run
# failed (its output is shown), 2 bad usage.
#
# Environment (defaults in brackets):
#   BENCH_GPU_REPS [3]          repetitions of every figure
#   BENCH_GPU_SECONDS [2]       training seconds per (a) run, by calibration
#   BENCH_GPU_LAYERS [1024,1024,1024]  BENCH_GPU_BATCHES ["256 2048"]   (a)
#   BENCH_GPU_MIXED_LAYERS [256,128]   BENCH_GPU_MIXED_BATCH [8192]      (b)
#   BENCH_GPU_MIXED_STEPS [1500]  steps of the GPU-solo and mixed runs
#   BENCH_GPU_MIXED_BUCKET_MB [0.25]  the mixed job's --bucket-mb
#   BENCH_GPU_CPU_STEPS [40]      steps of the CPU-solo run
#   BENCH_GPU_CPU_RANKS [3]  BENCH_GPU_CPU_THREADS [4]  BENCH_GPU_GPU_CPUS [2]
#                                 (b)'s CPU ranks, their threads, and the cores
#                                 of the GPU rank; fewer threads when the cores
#                                 do not suffice (the report says)
#   BENCH_GPU_DATA [/usr/share/datasets/fashion-mnist]  IDX files; when they
#                                 are missing, random IDX files of the same
#                                 shape are made in a temporary directory
#   PYTHON [python3]  MPIRUN [mpirun]
#   BENCH_GPU_DRY_RUN [0]         1: try the script on a machine without a GPU:
#                                 --device mirror (CPU compute, GPU data moves)
#                                 for cuda, the peer on the CPU, few steps; the
#                                 figures then mean nothing
# Word splitting is meant where a "median min max" triple or a list is split.
# shellcheck disable=SC2046,SC2086
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/common.sh"

usage() {
    sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'
    echo "(see the comments at the top of $0 and bench/README.md, section GPU)"
}
case ${1:-} in
'' | -h | --help)
    usage
    [ $# -ge 1 ] && exit 0
    exit 2
    ;;
esac
[ $# -le 2 ] || {
    usage >&2
    exit 2
}
build=$1
train=$build/tools/ballast-train
[ -x "$train" ] || {
    echo "bench_gpu: $train is missing or not executable; build first (scripts/gpu_check.sh)" >&2
    exit 1
}

# ---- Settings --------------------------------------------------------------
dry=${BENCH_GPU_DRY_RUN:-0}
reps=${BENCH_GPU_REPS:-3}
seconds=${BENCH_GPU_SECONDS:-2}
gpu_layers=${BENCH_GPU_LAYERS:-1024,1024,1024}
gpu_batches=${BENCH_GPU_BATCHES:-256 2048}
mixed_layers=${BENCH_GPU_MIXED_LAYERS:-256,128}
mixed_batch=${BENCH_GPU_MIXED_BATCH:-8192}
mixed_steps=${BENCH_GPU_MIXED_STEPS:-1500}
mixed_bucket_mb=${BENCH_GPU_MIXED_BUCKET_MB:-0.25}
cpu_steps=${BENCH_GPU_CPU_STEPS:-40}
cpu_ranks=${BENCH_GPU_CPU_RANKS:-3}
cpu_threads=${BENCH_GPU_CPU_THREADS:-4}
gpu_cpus=${BENCH_GPU_GPU_CPUS:-2}
data=${BENCH_GPU_DATA:-/usr/share/datasets/fashion-mnist}
python=${PYTHON:-python3}
mpirun=${MPIRUN:-mpirun}
rebalance_every=10
calib_steps=200 # the calibration run of (a)
min_steps=200   # the fewest timed steps of an (a) run
max_steps=100000
peer_warmup=20
gpu_dev=cuda  # what ballast-train gets for a GPU rank
peer_dev=cuda # what the peer runs on
if [ "$dry" = 1 ]; then
    gpu_dev=mirror
    peer_dev=cpu
    calib_steps=3
    min_steps=3
    peer_warmup=2
    seconds=${BENCH_GPU_SECONDS:-0.5}
    mixed_steps=${BENCH_GPU_MIXED_STEPS:-60}
    cpu_steps=${BENCH_GPU_CPU_STEPS:-20}
fi
x=
for v in reps mixed_batch mixed_steps cpu_steps cpu_ranks cpu_threads gpu_cpus; do
    eval "x=\$$v"
    case $x in
    '' | *[!0-9]* | 0*)
        echo "bench_gpu: $v='$x' is not a positive integer (see the environment in $0)" >&2
        exit 2
        ;;
    esac
done
case $seconds in
'' | *[!0-9.]* | *.*.*)
    echo "bench_gpu: BENCH_GPU_SECONDS='$seconds' is not a number" >&2
    exit 2
    ;;
esac

command -v "$mpirun" >/dev/null 2>&1 || {
    echo "bench_gpu: '$mpirun' not found (set MPIRUN)" >&2
    exit 1
}
if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export BALLAST_LOG=${BALLAST_LOG:-info}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench_gpu.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
out=${2:-$tmp/out}
mkdir -p "$out/values"
start_time=$(date +%s)

# ---- Helpers ----------------------------------------------------------------
# run NAME CMD...: runs CMD with its stdout and stderr in $out/NAME.log; on
# failure shows the command and its output and exits 1.
run() {
    _name=$1
    shift
    printf '%s\n' "$*" >"$out/$_name.log"
    if ! "$@" >>"$out/$_name.log" 2>&1; then
        echo "bench_gpu: ($_name) failed: $*" >&2
        tail -n 40 "$out/$_name.log" >&2
        exit 1
    fi
}

# keep FIGURE VALUE: appends VALUE to the figure's values; dies on an empty one.
keep() {
    [ -n "$2" ] || {
        echo "bench_gpu: no value for figure $1 (see the logs in $out)" >&2
        exit 1
    }
    echo "$2" >>"$out/values/$1"
    printf ' %s=%s' "$1" "$2" >&2
}

# summary_sps LOG: samples_per_s of ballast-train's summary line.
summary_sps() {
    bench_field "$1" summary: samples_per_s
}

# steady FILE: samples/s over the last half of the steps of a telemetry file
# (sum of every rank's samples over the sum of step_s), empty with < 2 steps.
steady() {
    if command -v jq >/dev/null 2>&1; then
        jq -s -r 'if length < 2 then empty else .[(length / 2 | floor):]
            | ((map(.samples | add) | add) / (map(.step_s) | add)) end' "$1" |
            awk '{ printf "%.1f\n", $1 }'
    else
        awk '{
            if (match($0, /"step_s":[^,]*/)) st[NR] = substr($0, RSTART + 9, RLENGTH - 9) + 0
            if (match($0, /"samples":\[[^]]*\]/)) {
                n = split(substr($0, RSTART + 11, RLENGTH - 12), v, ",")
                t = 0; for (i = 1; i <= n; i++) t += v[i]; sm[NR] = t
            }
        } END {
            if (NR < 2) exit
            for (i = int(NR / 2) + 1; i <= NR; i++) { a += sm[i]; b += st[i] }
            if (b > 0) printf "%.1f\n", a / b
        }' "$1"
    fi
}

# last_shards FILE: the shards of the last telemetry line, as a,b,c.
last_shards() {
    tail -n 1 "$1" | sed -n 's/.*"shards":\[\([^]]*\)\].*/\1/p'
}

# peer_sps LOG MODE: samples_per_s of the peer's line for batches=MODE.
peer_sps() {
    awk -v m="batches=$2" 'index($0, "peer: torch-eager ") == 1 {
        hit = 0
        for (i = 1; i <= NF; i++) if ($i == m) hit = 1
        if (hit) for (i = 1; i <= NF; i++) if (index($i, "samples_per_s=") == 1) v = substr($i, 15)
    } END { print v }' "$1"
}

# gz FILE: compresses FILE in place when gzip is there (telemetry is large).
gz() {
    if command -v gzip >/dev/null 2>&1; then gzip -f "$1"; fi
}

stats() { bench_stats "$out/values/$1"; }
median() { bench_median "$out/values/$1"; }

# ratio NUM DEN [SCALE]: "median(NUM) / (SCALE x median(DEN))  (per rep lo - hi)"
ratio() {
    _nm=$(median "$1")
    _dm=$(median "$2")
    paste "$out/values/$1" "$out/values/$2" | awk -v nm="$_nm" -v dm="$_dm" -v s="${3:-1}" '
        { q = $1 / (s * $2); lo = NR == 1 || q < lo ? q : lo; hi = q > hi ? q : hi }
        END { printf "%.3f (per repetition %.3f - %.3f)", nm / (s * dm), lo, hi }'
}

# verdict VALUE TARGET: "target >= T: met" or "... NOT met".
verdict() {
    awk -v v="$1" -v t="$2" 'BEGIN { printf "target >= %s: %s", t, (v + 0 >= t) ? "met" : "NOT met" }'
}

# ---- Data (the real IDX files, or random ones of the same shape) and the
# ---- probe: is there a GPU? -----------------------------------------------
# Header of an unsigned-byte IDX file: 0 0 8 NDIM, then big-endian dims.
have_idx() {
    for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
        t10k-labels-idx1-ubyte; do
        [ -r "$1/$f.gz" ] || [ -r "$1/$f" ] || return 1
    done
}
# make_idx DIR PREFIX COUNT COUNT_BYTES: random images and labels 0..9;
# COUNT_BYTES is COUNT as 4 big-endian bytes in printf's octal escapes
# (hence given to printf as a format).
# shellcheck disable=SC2059
make_idx() {
    { printf '\000\000\010\003'; printf "$4"; printf '\000\000\000\034\000\000\000\034'
      head -c $(($3 * 784)) /dev/urandom; } >"$1/$2-images-idx3-ubyte"
    # Labels: the ten classes once, then random bytes below 10.
    { printf '\000\000\010\001'; printf "$4"; printf '\000\001\002\003\004\005\006\007\010\011'
      head -c $(($3 * 40)) /dev/urandom | tr -dc '\000-\011' | head -c $(($3 - 10)); } \
        >"$1/$2-labels-idx1-ubyte"
    [ "$(wc -c <"$1/$2-labels-idx1-ubyte")" -eq $(($3 + 8)) ] || {
        echo "bench_gpu: could not make random labels in $1" >&2
        exit 1
    }
}
# probe: runs ballast-train --device cuda --steps 0 (a GPU, no training)
# into $out/probe.log; exits 77 when it says there is no CUDA device (or no
# CUDA backend); returns its status otherwise.
probe() {
    set +e
    "$train" --device "$gpu_dev" --steps 0 --quiet --data "$data" --layers 16 \
        >"$out/probe.log" 2>&1
    _rc=$?
    set -e
    if [ "$_rc" != 0 ] &&
        grep -q -e 'no CUDA device' -e 'built without the CUDA backend' "$out/probe.log"; then
        reason=$(grep -m 1 -e 'no CUDA device' -e 'built without the CUDA backend' \
            "$out/probe.log" | sed 's/^ballast\[0\] error: //')
        echo "bench_gpu: skipped: no GPU visible ($reason)" | tee "$out/report.txt"
        exit 77
    fi
    return "$_rc"
}
probe_failed() {
    echo "bench_gpu: the probe '$train --device $gpu_dev --steps 0' failed:" >&2
    cat "$out/probe.log" >&2
    exit 1
}
# The device is set up before the data is read, so without a GPU the probe
# skips before any data is made.
if have_idx "$data"; then
    data_note="$data (IDX files)"
    probe || probe_failed
else
    probe || true # no data yet: only its skip counts
    echo "bench_gpu: no IDX files in $data; making random ones of the same shape" >&2
    data=$tmp/data
    mkdir -p "$data"
    make_idx "$data" train 60000 '\000\000\352\140'
    make_idx "$data" t10k 10000 '\000\000\047\020'
    data_note="random data of Fashion-MNIST's shape (60000 x 784, 10 classes; no IDX files found)"
    probe || probe_failed
fi
gpu_line=$(sed -n 's/.*device: rank 0: //p' "$out/probe.log" | head -n 1)
[ "$dry" = 1 ] && gpu_line="none: BENCH_GPU_DRY_RUN=1, --device mirror stands in for cuda"

# ---- The peer ---------------------------------------------------------------
peer=1
peer_note=
if ! command -v "$python" >/dev/null 2>&1; then
    peer=0
    peer_note="'$python' not found (set PYTHON)"
elif [ "$peer_dev" = cuda ]; then
    if ! peer_note=$("$python" -c 'import torch, sys
if not torch.cuda.is_available():
    print("torch", torch.__version__, "sees no CUDA device"); sys.exit(1)
print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))' 2>&1); then
        peer=0
    fi
elif ! peer_note=$("$python" -c 'import torch; print("torch", torch.__version__, "on the CPU")' 2>&1); then
    peer=0
fi
peer_note=$(printf '%s\n' "$peer_note" | tail -n 1)

# ---- Cores for (b): GPU rank first, then C CPU ranks of T threads ----------
cpu_list=$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status 2>/dev/null || true)
[ -n "$cpu_list" ] || cpu_list=0-$(($(nproc) - 1))
cpus=$(echo "$cpu_list" | tr ',' '\n' | awk -F- '{ hi = NF > 1 ? $2 : $1; for (c = $1; c <= hi; c++) print c }')
ncpu=$(echo "$cpus" | wc -l)
layout_note=
if [ $((gpu_cpus + cpu_ranks * cpu_threads)) -gt "$ncpu" ]; then
    t=$(((ncpu - gpu_cpus) / cpu_ranks))
    [ "$t" -ge 1 ] || t=1
    layout_note="asked for $cpu_threads threads per CPU rank; $ncpu cores allow $t"
    cpu_threads=$t
fi
# cores_of FIRST COUNT: COUNT cores from position FIRST of the allowed list
# (wrapping around when the machine has too few: then ranks share cores).
cores_of() {
    echo "$cpus" | awk -v f="$1" -v n="$2" -v m="$ncpu" '{ c[NR - 1] = $1 }
        END { for (i = 0; i < n; i++) printf "%s%s", i ? "," : "", c[(f + i) % m] }'
}
if [ $((gpu_cpus + cpu_ranks * cpu_threads)) -gt "$ncpu" ]; then
    layout_note="${layout_note:+$layout_note; }only $ncpu cores: ranks share cores (figures skewed)"
fi
bindings=$(cores_of 0 "$gpu_cpus")
r=0
while [ "$r" -lt "$cpu_ranks" ]; do
    bindings="$bindings:$(cores_of $((gpu_cpus + r * cpu_threads)) "$cpu_threads")"
    r=$((r + 1))
done
cpu1_cores=$(echo "$bindings" | cut -d: -f2)
gpu_cores=$(echo "$bindings" | cut -d: -f1)
mixed_devices=$gpu_dev
r=0
while [ "$r" -lt "$cpu_ranks" ]; do
    mixed_devices="$mixed_devices,cpu"
    r=$((r + 1))
done
# bind.sh LISTS CMD...: LISTS holds every rank's cores, rank 0's first,
# separated by ':'; runs CMD on this rank's cores (taskset).
cat >"$tmp/bind.sh" <<'EOF'
#!/bin/sh
r=${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-${PMI_RANK:-0}}}
cores=$(printf '%s\n' "$1" | cut -d: -f$((r + 1)))
shift
exec taskset -c "$cores" "$@"
EOF
binder="sh $tmp/bind.sh"
if ! command -v taskset >/dev/null 2>&1; then
    # The same interface, binding nothing.
    cat >"$tmp/bind.sh" <<'EOF'
#!/bin/sh
shift
exec "$@"
EOF
    layout_note="${layout_note:+$layout_note; }taskset not found: ranks unbound"
fi

# ---- Header -----------------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
{
    echo "bench_gpu: ballast on one GPU against PyTorch eager, and a mixed CPU+GPU job"
    echo "  build: $build"
    echo "  GPU: ${gpu_line:-unknown (see $out/probe.log)}"
    echo "  cpu: ${cpu_model:-unknown}, $ncpu cores allowed ($cpu_list)"
    echo "  data: $data_note"
    if [ "$peer" = 1 ]; then
        echo "  peer: bench/torch_mlp.py with $python ($peer_note)"
    else
        echo "  peer: left out: $peer_note"
    fi
    echo "  $reps repetitions, interleaved; raw outputs in $out"
    echo "  loadavg at start: $(cat /proc/loadavg 2>/dev/null || echo unknown)"
    [ "$dry" = 0 ] || echo "  DRY RUN (BENCH_GPU_DRY_RUN=1): no GPU used; the figures mean nothing"
} | tee "$out/report.txt"

# ---- (a) One GPU: ballast vs PyTorch eager -------------------------------
# Calibration: steps so that one run trains for about $seconds seconds.
echo "(a) calibrating the number of steps:" >&2
for b in $gpu_batches; do
    run "a-calibrate-b$b" "$mpirun" -np 1 --bind-to none "$train" --device "$gpu_dev" \
        --data "$data" --layers "$gpu_layers" --batch "$b" --steps "$calib_steps" --quiet
    sps=$(summary_sps "$out/a-calibrate-b$b.log")
    [ -n "$sps" ] || {
        echo "bench_gpu: (a-calibrate-b$b) printed no summary" >&2
        exit 1
    }
    s=$(awk -v sps="$sps" -v b="$b" -v t="$seconds" -v lo="$min_steps" -v hi="$max_steps" \
        'BEGIN { s = int(t * sps / b); s = s < lo ? lo : s; s = s > hi ? hi : s; print s }')
    eval "steps_$b=$s"
    printf ' batch %s: %s samples/s over %s steps -> %s steps a run\n' "$b" "$sps" \
        "$calib_steps" "$s" >&2
done

rep=0
# figure ITEM: one run of ITEM = ballast-BATCH or torch-BATCH.
figure() {
    b=${1#*-}
    eval "s=\$steps_$b"
    case $1 in
    ballast-*)
        n=a-ballast-b$b-rep$rep
        run "$n" "$mpirun" -np 1 --bind-to none "$train" --device "$gpu_dev" --data "$data" \
            --layers "$gpu_layers" --batch "$b" --steps "$s" --quiet --telemetry "$out/$n.jsonl"
        keep "ballast_b$b" "$(summary_sps "$out/$n.log")"
        keep "ballast_steady_b$b" "$(steady "$out/$n.jsonl")"
        gz "$out/$n.jsonl"
        ;;
    torch-*)
        n=a-torch-b$b-rep$rep
        run "$n" "$python" "$root/bench/torch_mlp.py" --device "$peer_dev" --layers "$gpu_layers" \
            --batch "$b" --steps "$s" --warmup "$peer_warmup" --both --data "$data"
        if [ "$peer_dev" = cuda ]; then
            keep "torch_b$b" "$(peer_sps "$out/$n.log" device)"
        else
            keep "torch_b$b" "$(peer_sps "$out/$n.log" host)"
        fi
        keep "torch_host_b$b" "$(peer_sps "$out/$n.log" host)"
        ;;
    esac
}
items=
for b in $gpu_batches; do
    items="$items ballast-$b"
    [ "$peer" = 0 ] || items="$items torch-$b"
done
echo "(a) one GPU, $gpu_layers:" >&2
# bench_interleave calls counted once per item; it numbers the repetitions
# by counting the calls (the rotation changes which item comes first).
calls=0
nitems=$(echo $items | wc -w)
counted() {
    rep=$((calls / nitems + 1))
    calls=$((calls + 1))
    figure "$1"
}
bench_interleave "$reps" counted $items

# ---- (b) Mixed CPU+GPU job ------------------------------------------------
nranks=$((cpu_ranks + 1))
echo "(b) mixed job, $mixed_layers batch $mixed_batch: cores $bindings" >&2
rep=1
while [ "$rep" -le "$reps" ]; do
    printf 'rep %d/%d:' "$rep" "$reps" >&2
    n=b-gpu-solo-rep$rep
    run "$n" "$mpirun" -np 1 --bind-to none $binder "$gpu_cores" "$train" --device "$gpu_dev" \
        --data "$data" --layers "$mixed_layers" --batch "$mixed_batch" --steps "$mixed_steps" \
        --threads "$cpu_threads" --quiet --telemetry "$out/$n.jsonl"
    keep gpu_solo "$(summary_sps "$out/$n.log")"
    keep gpu_solo_steady "$(steady "$out/$n.jsonl")"
    gz "$out/$n.jsonl"
    n=b-cpu-solo-rep$rep
    run "$n" "$mpirun" -np 1 --bind-to none $binder "$cpu1_cores" "$train" --device cpu \
        --data "$data" --layers "$mixed_layers" --batch "$mixed_batch" --steps "$cpu_steps" \
        --threads "$cpu_threads" --quiet --telemetry "$out/$n.jsonl"
    keep cpu_solo "$(summary_sps "$out/$n.log")"
    keep cpu_solo_steady "$(steady "$out/$n.jsonl")"
    gz "$out/$n.jsonl"
    n=b-mixed-rep$rep
    run "$n" "$mpirun" -np "$nranks" --oversubscribe --bind-to none $binder "$bindings" "$train" \
        --device "$mixed_devices" --data "$data" --layers "$mixed_layers" \
        --batch "$mixed_batch" --steps "$mixed_steps" --threads "$cpu_threads" \
        --policy proportional --rebalance-every "$rebalance_every" \
        --bucket-mb "$mixed_bucket_mb" --quiet --telemetry "$out/$n.jsonl"
    keep mixed "$(summary_sps "$out/$n.log")"
    keep mixed_steady "$(steady "$out/$n.jsonl")"
    last_shards "$out/$n.jsonl" >>"$out/values/mixed_shards"
    gz "$out/$n.jsonl"
    # The oracles of this repetition: the GPU's and C CPU ranks' solo figures.
    awk -v g="$(tail -n 1 "$out/values/gpu_solo")" -v c="$(tail -n 1 "$out/values/cpu_solo")" \
        -v n="$cpu_ranks" 'BEGIN { printf "%.1f\n", g + n * c }' >>"$out/values/oracle"
    awk -v g="$(tail -n 1 "$out/values/gpu_solo_steady")" \
        -v c="$(tail -n 1 "$out/values/cpu_solo_steady")" -v n="$cpu_ranks" \
        'BEGIN { printf "%.1f\n", g + n * c }' >>"$out/values/oracle_steady"
    echo >&2
    rep=$((rep + 1))
done

# ---- Report -------------------------------------------------------------------
# row LABEL FIGURE: median samples/s and min - max
row() {
    if [ -s "$out/values/$2" ]; then
        set -- "$1" $(stats "$2")
        printf '  %-46s %12.0f   %10.0f - %-10.0f\n' "$1" "$2" "$3" "$4"
    fi
}
{
    echo
    echo "(a) one GPU: MLP 784-$(echo "$gpu_layers" | tr ',' '-')-10, SGD lr 0.05 momentum 0.9"
    printf '  %-46s %12s   %-23s\n' "figure" "samples/s" "min - max"
    for b in $gpu_batches; do
        eval "s=\$steps_$b"
        echo " batch $b, $s timed steps a run:"
        row "ballast --device $gpu_dev (summary, whole run)" "ballast_b$b"
        row "ballast steady state (telemetry, last half)" "ballast_steady_b$b"
        if [ "$peer" = 1 ]; then
            row "torch eager, data on the device" "torch_b$b"
            row "torch eager, each batch from the host" "torch_host_b$b"
        fi
    done
    echo
    if [ "$peer" = 1 ]; then
        for b in $gpu_batches; do
            q=$(ratio "ballast_b$b" "torch_b$b")
            echo "  batch $b: ballast / torch eager (data on the device): $q"
            echo "    $(verdict "${q%% *}" 1.0) (ballast whole run, torch after warm-up)"
            echo "    steady state / torch: $(ratio "ballast_steady_b$b" "torch_b$b")"
            echo "    ballast / torch with host batches (like for like): $(ratio "ballast_b$b" "torch_host_b$b")"
        done
    else
        echo "  no ratios: the peer was left out ($peer_note)"
    fi
    echo
    echo "(b) mixed job: MLP 784-$(echo "$mixed_layers" | tr ',' '-')-10, batch $mixed_batch," \
        "1 GPU rank + $cpu_ranks CPU ranks x $cpu_threads threads"
    echo "  --device $mixed_devices --policy proportional --rebalance-every $rebalance_every" \
        "--bucket-mb $mixed_bucket_mb, $mixed_steps steps (CPU solo: $cpu_steps)"
    echo "  cores (taskset, rank 0 first): $bindings${layout_note:+ ($layout_note)}"
    printf '  %-46s %12s   %-23s\n' "figure" "samples/s" "min - max"
    row "GPU rank solo (summary)" gpu_solo
    row "GPU rank solo (steady state)" gpu_solo_steady
    row "one CPU rank solo (summary)" cpu_solo
    row "one CPU rank solo (steady state)" cpu_solo_steady
    row "oracle = GPU + $cpu_ranks x CPU (summary)" oracle
    row "oracle = GPU + $cpu_ranks x CPU (steady state)" oracle_steady
    row "mixed job (summary, whole run)" mixed
    row "mixed job (steady state, last half)" mixed_steady
    echo "  shards at the end of each mixed run: $(tr '\n' ' ' <"$out/values/mixed_shards")"
    q=$(ratio mixed_steady oracle_steady)
    echo "  achieved / oracle, steady state: $q"
    echo "    $(verdict "${q%% *}" 0.9)"
    echo "  achieved / oracle, whole run (convergence included): $(ratio mixed oracle)"
    echo "  the CPU ranks' share of the oracle (steady state): $(awk -v o="$(median oracle_steady)" \
        -v g="$(median gpu_solo_steady)" 'BEGIN { printf "%.3f", 1 - g / o }');" \
        "mixed / GPU solo: $(ratio mixed_steady gpu_solo_steady)"
    echo
    echo "loadavg at end: $(cat /proc/loadavg 2>/dev/null || echo unknown);" \
        "wall time $(($(date +%s) - start_time)) s"
} | tee -a "$out/report.txt"
