#!/bin/sh
# bench_stage_memory.sh: what a pipeline stage holds, measured. Figures and
# one proof, never timings: exit status 0 when every run did what it should,
# 1 when one did not (with the failing command and its output), 2 on bad usage.
#
# The model: ballast-train --layers W,W,W,W,W (default W = 2048: a 64-2048-
# 2048-2048-2048-2048-4 ReLU MLP, 16.9M parameters, 64.5 MiB per copy, with
# four equal 2048x2048 layers, so 2 and 4 stages can split them evenly) on a small
# synthetic set (tests/cli/make_idx: 64 features, 4 classes), --batch 32,
# --steps 5, one BLAS thread per rank. Part 1, each layout once:
#   (a) one rank
#   (b) pp=2 --stage-memory whole   (c) pp=2 --stage-memory local
#   (d) pp=4 --stage-memory whole   (e) pp=4 --stage-memory local
# For each it prints every rank's peak RSS (getrusage's maximum resident set,
# through /usr/bin/time -f %M, one file per rank) and its accounted parameters + gradients +
# momentum (the start-up report, BALLAST_LOG=info), the largest rank's share
# of the one-rank figure, and the bound that the stage meets: 1/S of the
# model's bytes plus one layer's. Then ZeRO-1, each run's parameters checked
# against (a) within 1e-5:
#   (z0) 4 replicas --zero off (the node-local reduction, the default)
#   (z0m) 4 replicas --zero off --node-reduce off (the MPI all-reduce)
#   (z1) 4 replicas --zero on
#   (z2) 2x2 (4 ranks, --pp 2) --zero on
# with every rank's optimizer and other bytes and the bound 1/D of one rank's
# optimizer state plus one 4 MiB bucket.
# Part 2, the proof: a memory limit below the model's parameters, gradients
# and momentum, LIMIT (default 2/3 of (a)'s accounted bytes):
#   (f) one rank with --mem-limit LIMIT: refused, naming the rank and layer
#   (g) pp=2 and (h) pp=4 with --mem-limit LIMIT: train, and their parameter
#       files equal (a)'s within 1e-5 (compare_params)
# and with --cgroup, the same with no flag but each rank in a memory cgroup
# of its own (cgroup v1 memory or v2; needs root), whose limit CGLIMIT
# (default 3/4 of (a)'s accounted bytes) the kernel enforces on everything
# the rank touches, libraries and MPI included:
#   (cf) one rank: refused by ballast, which reads the cgroup's limit
#   (cf-kernel) one rank with --mem-limit 1T (ballast's check passed over):
#       the kernel ends it (no swap here), so the limit is real
#   (cg) pp=2 and (ch) pp=4: train, equal to (a) within 1e-5
#   (ckpp2) pp=2 resumes a one-rank checkpoint of step 5 (one stage file of
#       the whole model) and trains to step 10, equal within 1e-5 to one
#       rank's 10 steps
# With --model gpt2 the model is a GPT-2 (ballast-train --model gpt2
# --n-layer 8 --n-head 4 --n-embd W, default W = 256: 6.4M parameters,
# 24.4 MiB per copy; a stage holds parameters, gradients and AdamW's two
# moments) on the fortunes package's Linux quotes, T = 32, --batch 4, the
# files compared with tests/compare_gpt2 (every tensor's relative difference
# within 1e-5), and the units of the stage map are the embedding, the eight
# blocks and the head.
# See bench/README.md for how to read the output.
# shellcheck disable=SC2086
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BALLAST_BUILD_DIR:-$root/build}
. "$root/bench/common.sh"
mpirun=${MPIRUN:-mpirun}
model=mlp
width=
limit=
cgroup=0
cg_limit=
out=

usage() {
    cat <<EOF
usage: bench/bench_stage_memory.sh [options]
Peak RSS and accounted bytes per rank of one rank, pp=2 and pp=4 with stage-local
and whole-model memory, and the proof that a model over a rank's memory limit trains
on pp=2 and pp=4 to the one-rank parameters.
  --build DIR      build directory with tools/ballast-train, tests/make_idx and
                   tests/compare_params (default \$BALLAST_BUILD_DIR, else build/)
  --model mlp|gpt2 the MLP (default) or a GPT-2 of 8 blocks
  --width W        the MLP's hidden width of its 4 hidden layers (default 2048), or
                   GPT-2's channels C (default 256)
  --limit BYTES    the per-rank limit of part 2 (default 2/3 of one rank's accounted
                   parameters, gradients and momentum)
  --cgroup         also run part 2 in per-rank memory cgroups (needs root)
  --cgroup-limit BYTES  each rank's cgroup limit (default 3/4 of one rank's
                   accounted parameters, gradients and momentum)
  --out DIR        keep the runs' output there (default a temporary directory)
  --help           this text
Environment: BALLAST_BUILD_DIR, MPIRUN (default mpirun).
EOF
}

die_usage() {
    echo "bench_stage_memory.sh: $1 (see --help)" >&2
    exit 2
}

check_positive() {
    case $2 in
    '' | *[!0-9]* | 0*) die_usage "$1: '$2' is not a positive integer" ;;
    esac
}

while [ $# -gt 0 ]; do
    case $1 in
    --build | --model | --width | --limit | --cgroup-limit | --out)
        [ $# -ge 2 ] || die_usage "$1: needs a value"
        case $1 in
        --width | --limit | --cgroup-limit) check_positive "$1" "$2" ;;
        esac
        case $1 in
        --build) build=$2 ;;
        --model) model=$2 ;;
        --width) width=$2 ;;
        --limit) limit=$2 ;;
        --cgroup-limit) cg_limit=$2 ;;
        --out) out=$2 ;;
        esac
        shift 2
        ;;
    --cgroup)
        cgroup=1
        shift
        ;;
    --help)
        usage
        exit 0
        ;;
    *) die_usage "unknown option '$1'" ;;
    esac
done

case $model in
mlp) [ -n "$width" ] || width=2048 ;;
gpt2) [ -n "$width" ] || width=256 ;;
*) die_usage "--model: '$model' is neither mlp nor gpt2" ;;
esac
train=$build/tools/ballast-train
bench_prepare bench_stage_memory.sh "$train"
for tool in "$build/tests/make_idx" "$build/tests/compare_params" "$build/tests/compare_gpt2" \
    /usr/bin/time; do
    [ -x "$tool" ] || {
        echo "bench_stage_memory.sh: $tool is missing (build the tests; apt-get install time)" >&2
        exit 1
    }
done
if [ -z "$out" ]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
# The model's flags, the flag that saves its parameters, a description and
# one unit's (a layer's, or a block's) bytes of parameters, gradients and
# optimizer state.
if [ "$model" = mlp ]; then
    "$build/tests/make_idx" "$out/data" --train 2048 --test 256 >/dev/null
    run="--data $out/data --layers $width,$width,$width,$width,$width --batch 32 --steps 5 --threads 1 --quiet"
    save=--save-params
    described="64-$width-$width-$width-$width-$width-4 MLP, batch 32"
    largest_layer=$((3 * 4 * (width * width + width)))
else
    text=/usr/share/games/fortunes/linux
    [ -s "$text" ] || {
        echo "bench_stage_memory.sh: $text is missing (apt-get install fortunes)" >&2
        exit 1
    }
    run="--model gpt2 --text $text --n-layer 8 --n-head 4 --n-embd $width --seq-len 32 --batch 4 --steps 5 --threads 1 --val-sequences 8 --quiet"
    save=--save-model
    described="GPT-2 L=8 H=4 C=$width T=32, batch 4, AdamW"
    largest_layer=$((4 * 4 * (12 * width * width + 13 * width)))
fi

# same_model NAME REFERENCE: compares NAME.bin with REFERENCE.bin within
# 1e-5 into NAME.cmp; returns its status.
same_model() {
    if [ "$model" = mlp ]; then
        "$build/tests/compare_params" "$out/$1.bin" "$out/$2.bin" 1e-5 1e-6 >"$out/$1.cmp" 2>&1
    else
        "$build/tests/compare_gpt2" "$out/$1.bin" "$out/$2.bin" 1e-5 1e-4 >"$out/$1.cmp" 2>&1
    fi
}
# peak.sh CMD...: runs CMD under /usr/bin/time, which writes the rank's peak
# RSS in KiB into $PEAK_PREFIX.<rank>.
cat >"$out/peak.sh" <<'EOF'
#!/bin/sh
exec /usr/bin/time -o "$PEAK_PREFIX.${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-0}}" -f %M "$@"
EOF
chmod +x "$out/peak.sh"

# peaks NAME RANKS: the ranks' peak RSS in MiB, in rank order.
peaks() {
    _r=0
    while [ "$_r" -lt "$2" ]; do
        awk '/^[0-9]+$/ { printf "%.1f ", $1 / 1024 }' "$out/$1.peak.$_r"
        _r=$((_r + 1))
    done
}

# fail NAME: the run NAME did not do what it should; show it and stop.
fail() {
    echo "bench_stage_memory.sh: $1: unexpected outcome; its output:" >&2
    cat "$out/$1.log" >&2
    exit 1
}

# layout NAME RANKS FLAGS...: runs ballast-train on RANKS ranks, each under
# /usr/bin/time (and $wrap, a command that execs the rest, when set), into
# $out/NAME.log, saving NAME.bin; returns its status.
wrap=
layout() {
    _name=$1
    _ranks=$2
    shift 2
    env BALLAST_LOG=info PEAK_PREFIX="$out/$_name.peak" "$mpirun" -n "$_ranks" --oversubscribe \
        $wrap "$out/peak.sh" "$train" $run "$@" $save "$out/$_name.bin" \
        >"$out/$_name.log" 2>&1
}

# state_bytes NAME RANK [KINDS]: the accounted bytes of RANK in NAME's
# start-up report, summed over KINDS (an awk pattern; default the
# parameters, gradients and optimizer state).
state_bytes() {
    awk -v r="memory: rank $2:" -v k="${3:-^(params|grads|optimizer)\$}" 'index($0, r) {
        n = 0
        for (i = 1; i <= NF; i++) if ($i ~ k) {
            v = $(i + 1); u = $(i + 2); sub(/[,;]$/, "", u)
            m = u == "B" ? 1 : u == "KiB" ? 1024 : u == "MiB" ? 1048576 : 1073741824
            n += v * m
        }
        printf "%.0f\n", n
    }' "$out/$1.log" | head -n 1
}

mib() {
    awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'
}

echo "model: $described, 5 steps, one BLAS thread per rank"
echo "part 1: per rank, peak RSS and accounted params+grads+momentum (MiB)"
whole_state=
for spec in "a 1" "b 2 --pp 2 --stage-memory whole" "c 2 --pp 2 --stage-memory local" \
    "d 4 --pp 4 --stage-memory whole" "e 4 --pp 4 --stage-memory local"; do
    set -- $spec
    name=$1
    ranks=$2
    shift 2
    layout "$name" "$ranks" "$@" || fail "$name"
    states=
    most=0
    r=0
    while [ "$r" -lt "$ranks" ]; do
        b=$(state_bytes "$name" "$r")
        states="$states$(mib "$b") "
        [ "$b" -gt "$most" ] && most=$b
        r=$((r + 1))
    done
    [ -n "$whole_state" ] || whole_state=$most
    peak_mib=$(peaks "$name" "$ranks")
    bound=$((whole_state / ranks + largest_layer))
    printf '(%s) %d rank(s) %s: peak_rss=[ %s] state=[ %s] largest_state/one_rank=%.3f bound_1/S+layer=%s MiB %s\n' \
        "$name" "$ranks" "$*" "$peak_mib" "$states" \
        "$(awk -v a="$most" -v b="$whole_state" 'BEGIN { print a / b }')" "$(mib "$bound")" \
        "$([ "$most" -le "$bound" ] && echo within || echo over)"
done

# ZeRO-1: 4 data-parallel replicas with and without --zero on, and a 2x2
# grid with it. The bound on a rank's optimizer state is 1/D of one rank's
# (the momentum of its slice of its stage) plus one bucket (--bucket-mb 4),
# which also holds the round's pieces (counted as "other").
one_opt=$(state_bytes a 0 '^optimizer$')
bucket=$((4 * 1048576))
for spec in z0:4:4:--zero:off z0m:4:4:--zero:off:--node-reduce:off z1:4:4:--zero:on \
    z2:4:2:--pp:2:--zero:on; do
    spec=$(echo "$spec" | tr : ' ')
    set -- $spec
    name=$1
    ranks=$2
    replicas=$3
    shift 3
    layout "$name" "$ranks" "$@" || fail "$name"
    opts=
    others=
    most=0
    r=0
    while [ "$r" -lt "$ranks" ]; do
        b=$(state_bytes "$name" "$r" '^optimizer$')
        opts="$opts$(mib "$b") "
        others="$others$(mib "$(state_bytes "$name" "$r" '^other$')") "
        [ "$b" -gt "$most" ] && most=$b
        r=$((r + 1))
    done
    same_model "$name" a || { cat "$out/$name.cmp" >&2; fail "$name"; }
    bound=$((one_opt / replicas + bucket))
    printf '(%s) %d ranks %s: peak_rss=[ %s] optimizer=[ %s] other=[ %s] largest_optimizer/one_rank=%.3f bound_1/D+bucket=%s MiB %s; %s\n' \
        "$name" "$ranks" "$*" "$(peaks "$name" "$ranks")" "$opts" "$others" \
        "$(awk -v a="$most" -v b="$one_opt" 'BEGIN { print a / b }')" "$(mib "$bound")" \
        "$([ "$most" -le "$bound" ] && echo within || echo over)" \
        "$(tail -n 1 "$out/$name.cmp" | sed 's/^compare_[a-z0-9]*: //')"
done

[ -n "$limit" ] || limit=$((whole_state * 2 / 3))
echo "part 2: a per-rank limit of $(mib "$limit") MiB, below one rank's $(mib "$whole_state") MiB"
layout f 1 --mem-limit "$limit" && fail f
grep -q "exceed the memory limit" "$out/f.log" || fail f
echo "(f) one rank --mem-limit: refused: $(grep -o 'rank 0: .*exceed the memory limit[^;]*; the largest layer is [^:]*' "$out/f.log" | head -n 1)"
for spec in "g 2" "h 4"; do
    set -- $spec
    layout "$1" "$2" --pp "$2" --mem-limit "$limit" || fail "$1"
    same_model "$1" a || { cat "$out/$1.cmp" >&2; fail "$1"; }
    echo "($1) pp=$2 --mem-limit: trained; against one rank: $(tail -n 1 "$out/$1.cmp")"
done

[ "$cgroup" = 1 ] || exit 0
# Per-rank cgroups: each rank moves itself into its own, then runs.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    parent=/sys/fs/cgroup
    limit_file=memory.max
    grep -qw memory "$parent/cgroup.subtree_control" || {
        echo "(cgroup) skipped: the memory controller is not enabled for children of $parent"
        exit 0
    }
else
    parent=/sys/fs/cgroup/memory
    limit_file=memory.limit_in_bytes
    [ -d "$parent" ] || {
        echo "(cgroup) skipped: no cgroup v2 and no v1 memory hierarchy"
        exit 0
    }
fi
[ -n "$cg_limit" ] || cg_limit=$((whole_state * 3 / 4))
cat >"$out/in_cgroup.sh" <<EOF
#!/bin/sh
dir=$parent/bl-stage-mem-\$\$
mkdir "\$dir" && echo $cg_limit >"\$dir/$limit_file" && echo \$\$ >"\$dir/cgroup.procs" || exit 3
exec "\$@"
EOF
chmod +x "$out/in_cgroup.sh"
# cg_run NAME RANKS FLAGS...: layout with every rank in a cgroup of its own.
cg_run() {
    wrap="$out/in_cgroup.sh"
    _status=0
    layout "$@" || _status=$?
    wrap=
    return "$_status"
}
echo "(cgroup) each rank in its own cgroup, $limit_file = $(mib "$cg_limit") MiB"
cg_run cf 1 && fail cf
grep -q "memory.max" "$out/cf.log" || fail cf
echo "(cf) one rank: refused: $(grep -o 'rank 0: [0-9.]* MiB.*exceed the memory limit[^;]*' "$out/cf.log" | head -n 1)"
cg_run cf-kernel 1 --mem-limit 1T && fail cf-kernel
grep -q "signal 9" "$out/cf-kernel.peak.0" || fail cf-kernel
echo "(cf-kernel) one rank with --mem-limit 1T: ended by the kernel: $(head -n 1 "$out/cf-kernel.peak.0"), peak $(peaks cf-kernel 1)MiB"
for spec in "cg 2" "ch 4"; do
    set -- $spec
    cg_run "$1" "$2" --pp "$2" || fail "$1"
    same_model "$1" a || { cat "$out/$1.cmp" >&2; fail "$1"; }
    echo "($1) pp=$2: trained, peak_rss=[ $(peaks "$1" "$2")] MiB; against one rank: $(tail -n 1 "$out/$1.cmp")"
done
# A one-rank checkpoint (whole model, one stage file) resumed by pp=2 in the
# same cgroups: each stage maps the file to check it and reads its window.
layout ck1 1 --checkpoint-dir "$out/ck" || fail ck1
layout a10 1 --steps 10 || fail a10
cg_run ckpp2 2 --pp 2 --steps 10 --checkpoint-dir "$out/ck" --resume || fail ckpp2
same_model ckpp2 a10 || { cat "$out/ckpp2.cmp" >&2; fail ckpp2; }
echo "(ckpp2) pp=2 resumed a one-rank checkpoint at step 5 and trained to step 10: peak_rss=[ $(peaks ckpp2 2)] MiB; against one rank's 10 steps: $(tail -n 1 "$out/ckpp2.cmp")"
for d in "$parent"/bl-stage-mem-*; do
    [ -d "$d" ] && rmdir "$d" 2>/dev/null || true
done
