#!/bin/sh
# bench_gpt_gpu.sh: GPT-2 124M training throughput on one GPU, ballast-train
# --model gpt2 --device cuda against PyTorch on the same GPU, in fp32 and in
# bf16, with the model FLOPs utilisation (MFU) of each. Figures only, never
# pass/fail.
#
# The model: GPT-2 124M's shapes, L=12 layers, H=12 heads, C=768 channels,
# T=1024 tokens a sequence, vocabulary V=50257 (the token table padded to
# Vp=50304 rows, as llm.c and ballast pad it), --batch B sequences a step
# (default 8: 8192 tokens); AdamW lr 6e-4 constant, betas 0.9 and 0.95,
# weight decay 0.1 on the >= 2-D weights, the gradient norm clipped to 1.
# The data: one llm.c token file of random tokens below V (made by
# bench/torch_gpt_gpu.py tokens), read by both sides; the loss stays near
# ln V = 10.8, which is all random tokens allow (a check that both sides
# train the same shape, not a quality figure).
#
# Figures, one run each, in this order:
#   (1) ballast fp32: mpirun -np 1 ballast-train --model gpt2 --device cuda
#   (2) PyTorch eager fp32, attention as ballast computes it (q·kᵀ/√hs,
#       mask, softmax, ·v, the scores materialised): the like-for-like peer
#   (3) PyTorch eager fp32, F.scaled_dot_product_attention (torch >= 2.0)
#   (4) PyTorch torch.compile fp32 of (2)'s model (torch >= 2.0); when it
#       fails the row says so and the run goes on
#   (5) ballast bf16: (1) with --precision bf16: the GEMMs (dense layers, the
#       tied head, attention's products) take bf16 operands and accumulate in
#       fp32; the master weights, AdamW's state and the loss stay fp32
#   (6) PyTorch bf16: torch.autocast(bfloat16) around forward and backward
#       (the parameters and AdamW stay fp32), SDPA attention where torch has
#       it; (5) and (6) run when --peers lists bf16
# The peer is bench/torch_gpt_gpu.py (the GPT-2 of bench/torch_gpt_model.py,
# which bench/torch_gpt.py trains too, with the padded vocabulary); TF32 is
# off on both sides (ballast's fp32 cuBLAS calls are plain FP32; the peer
# sets torch.backends.cuda.matmul.allow_tf32 = False).
#
# Timing: every run trains W warm-up steps (--warmup, default 3: CUDA's
# first calls, cuBLAS's heuristics, compilation), then S timed steps
# (--steps, default 10); each timed step is timed on its own and the figure
# is tokens/s = B·T / the median step time (min - max beside it). ballast:
# its per-step progress lines (--progress 0: the wall time from one step's
# end to the next; every step waits for the device and reads the loss). The
# peer: a device synchronisation before and after each step, loss.item()
# inside it.
#
# MFU = tokens/s × F / peak, with F the model FLOPs per token of PaLM's
# appendix B as nanoGPT's estimate_mfu writes it:
#   F = 6·N + 12·L·C·T,  N = 12·L·C² + 13·L·C + V·C + 2·C
# N counts the parameters a token's forward and backward multiply with: the
# tied token table once, with the real V (not Vp), the position table left
# out (for 124M: N = 123,653,376, F = 855,166,464 FLOP a token). 12·L·C·T
# counts attention's two products over all T positions (llm.c counts half,
# 6·L·C·T, for the causal mask, and all its parameters: its MFU reads about
# 6% lower). Both sides are measured against the same F, so the MFU ratio is
# the throughput ratio. The fp32 rows' peak: --peak-tflops X, else the GPU's
# dense FP32 peak (no tensor cores) at boost clock from NVIDIA's data sheets,
# by the name ballast reports (the table in peak_of below). The bf16 rows'
# peak: --peak-bf16-tflops X, else the same GPU's dense BF16 tensor-core peak
# (without sparsity; 989 TFLOP/s on an H100 SXM) from the same table. An
# unknown GPU gets no MFU until the flag is given. The output states the
# peaks it assumed.
#
# No GPU: the script first runs ballast-train --device cuda --steps 0 on a
# tiny model; when that (or nvidia-smi) says no CUDA device is there, it
# prints "bench_gpt_gpu: skipped: no GPU: REASON" and exits 77.
# --dry-run checks the whole pipeline where there is no GPU: ballast on
# --device mirror (the CPU's kernels, the data moved as a GPU's; with
# --precision bf16 too), the peer on the CPU (autocast on the CPU for bf16),
# tiny shapes (--tiny: L=2 H=2 C=64 T=64 V=500, B=4), 1 thread; its figures
# mean nothing.
#
# Exit status: 0 the figures were printed; 77 no GPU visible; 1 a run
# failed (either ballast run, or a peer other than torch.compile: its output
# is shown; the table is printed first); 2 bad usage.
# Word splitting is meant where "median min max" is split into positional
# parameters.
# shellcheck disable=SC2046,SC2086
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BALLAST_BUILD_DIR:-$root/build}
. "$root/bench/common.sh"
mpirun=${MPIRUN:-mpirun}
python=${PYTHON:-/usr/bin/python3}
peer_py=$root/bench/torch_gpt_gpu.py
batch=
steps=10
warmup=3
peak=
peak_bf16=
peers=eager,sdpa,compile,bf16
device=cuda
tiny=0
limit=600
keep=

usage() {
    cat <<EOF
usage: bench/bench_gpt_gpu.sh [options]
GPT-2 124M (L=12 H=12 C=768 T=1024 V=50257) training throughput on one GPU: ballast-train
--model gpt2 --device cuda against PyTorch on the same GPU (eager, SDPA, torch.compile) in
fp32, and ballast --precision bf16 against PyTorch's bf16 autocast; tokens/s (median step),
ballast / PyTorch and MFU. Exit 77: no GPU.
  --build DIR        build with the CUDA backend (tools/ballast-train)
                     (default \$BALLAST_BUILD_DIR, else build/ in the repository)
  --batch B          sequences a step (default 8; 4 with --tiny)
  --steps S          timed steps a run (default 10)
  --warmup W         untimed steps before them (default 3)
  --peak-tflops X    the GPU's peak FLOP/s for the fp32 rows' MFU, in TFLOP/s (default: by
                     the GPU's name, dense FP32 without tensor cores; the output says which)
  --peak-bf16-tflops X
                     the same for the bf16 rows (default: by the GPU's name, dense BF16
                     tensor cores without sparsity, e.g. 989 for an H100 SXM)
  --peers LIST       figures beside ballast fp32, comma-separated, of eager, sdpa, compile
                     (PyTorch fp32), bf16 (ballast --precision bf16 and PyTorch's bf16
                     autocast), or none (default eager,sdpa,compile,bf16)
  --device cuda|mirror
                     ballast's device (default cuda); mirror runs the peer on the CPU
  --tiny             L=2 H=2 C=64 T=64 V=500, batch 4: the pipeline, not a figure
  --dry-run          --device mirror --tiny, 1 thread: checks the script without a GPU
  --run-limit SEC    stop a run after SEC seconds (timeout; default 600)
  --out DIR          keep every run's log in DIR (default: a temporary directory, removed)
  --help             this text
Environment: BALLAST_BUILD_DIR, MPIRUN (default mpirun), PYTHON (default /usr/bin/python3;
for the GPU figures a python whose torch has CUDA).
EOF
}

die_usage() {
    echo "bench_gpt_gpu.sh: $1 (see --help)" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    --build | --batch | --steps | --warmup | --peak-tflops | --peak-bf16-tflops | --peers | \
        --device | --run-limit | --out)
        [ $# -ge 2 ] || die_usage "$1: needs a value"
        case $1 in
        --batch | --steps | --run-limit)
            case $2 in
            '' | *[!0-9]* | 0*) die_usage "$1: '$2' is not a positive integer" ;;
            esac
            ;;
        --warmup)
            case $2 in
            '' | *[!0-9]*) die_usage "$1: '$2' is not a count" ;;
            esac
            ;;
        --peak-tflops | --peak-bf16-tflops)
            case $2 in
            '' | *[!0-9.]* | *.*.* | .) die_usage "$1: '$2' is not a number" ;;
            esac
            ;;
        --device)
            case $2 in
            cuda | mirror) ;;
            *) die_usage "$1: '$2' is neither cuda nor mirror" ;;
            esac
            ;;
        --peers)
            for p in $(echo "$2" | tr ',' ' '); do
                case $p in
                eager | sdpa | compile | bf16 | none) ;;
                *) die_usage "$1: '$p' is none of eager, sdpa, compile, bf16, none" ;;
                esac
            done
            ;;
        esac
        case $1 in
        --build) build=$2 ;;
        --batch) batch=$2 ;;
        --steps) steps=$2 ;;
        --warmup) warmup=$2 ;;
        --peak-tflops) peak=$2 ;;
        --peak-bf16-tflops) peak_bf16=$2 ;;
        --peers) peers=$2 ;;
        --device) device=$2 ;;
        --run-limit) limit=$2 ;;
        --out) keep=$2 ;;
        esac
        shift 2
        ;;
    --tiny)
        tiny=1
        shift
        ;;
    --dry-run)
        tiny=1
        device=mirror
        shift
        ;;
    --help)
        usage
        exit 0
        ;;
    *) die_usage "unknown argument '$1'" ;;
    esac
done

# The shape: GPT-2 124M's, or a tiny one that a CPU trains in seconds (V 500
# is padded to 512 rows, so the padding is exercised too).
if [ "$tiny" = 1 ]; then
    n_layer=2 n_head=2 n_embd=64 seq_len=64 vocab=500
    batch=${batch:-4}
else
    n_layer=12 n_head=12 n_embd=768 seq_len=1024 vocab=50257
    batch=${batch:-8}
fi
vocab_padded=$(((vocab + 127) / 128 * 128))
lr=6e-4 wd=0.1 clip=1.0 seed=1
tokens_per_step=$((batch * seq_len))
# The peer and ballast's host side: one thread where the device is the CPU.
threads=
peer_dev=cuda
if [ "$device" = mirror ]; then
    threads=1
    peer_dev=cpu
fi

train=$build/tools/ballast-train
[ -x "$train" ] || {
    echo "bench_gpt_gpu.sh: $train is missing; build with the CUDA backend first:" >&2
    echo "  cmake -S . -B build -DBALLAST_CUDA=ON && cmake --build build -j" >&2
    exit 1
}
command -v "$mpirun" >/dev/null 2>&1 || {
    echo "bench_gpt_gpu.sh: '$mpirun' not found (set MPIRUN)" >&2
    exit 1
}
command -v "$python" >/dev/null 2>&1 || {
    echo "bench_gpt_gpu.sh: '$python' not found (set PYTHON); it also makes the token file" >&2
    exit 1
}
if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export BALLAST_LOG=info

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench_gpt_gpu.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
out=$tmp
if [ -n "$keep" ]; then
    mkdir -p "$keep"
    out=$keep
fi

# limited CMD...: CMD under timeout(1) when there is one, --run-limit
# seconds (exit status 124 past it).
limited() {
    if command -v timeout >/dev/null 2>&1; then
        timeout -k 10 "$limit" "$@"
    else
        "$@"
    fi
}

# peak_of NAME: "FP32 BF16 WHAT" for the GPU named NAME (boost clock,
# NVIDIA's data sheets): its dense FP32 TFLOP/s without tensor cores, its
# dense BF16 tensor-core TFLOP/s with fp32 accumulation and without sparsity
# (half the sheets' "with sparsity" figure; "-" where it has no bf16), and
# what they were taken for; nothing for an unknown name. The order matters:
# the first pattern that fits wins.
peak_of() {
    case $1 in
    *GH200*) echo "67.0 989 GH200" ;;
    *H200*NVL*) echo "60.0 835 H200 NVL" ;;
    *H200*) echo "66.9 989 H200 SXM" ;;
    *H100*NVL*) echo "60.0 835 H100 NVL" ;;
    *H100*PCIe*) echo "51.2 756 H100 PCIe" ;;
    *H100*) echo "66.9 989 H100 SXM" ;;
    *A100*) echo "19.5 312 A100" ;;
    *L40S*) echo "91.6 362 L40S" ;;
    *L4) echo "30.3 121 L4" ;;
    *V100*) echo "15.7 - V100 SXM2" ;;
    *T4) echo "8.1 - T4" ;;
    *'RTX 4090'*) echo "82.6 165.2 RTX 4090" ;;
    esac
}

# ---- The probe: is there a GPU? ------------------------------------------
# ballast-train itself on a tiny model, --steps 0, on a small token file:
# the runtime opens the device first, so without a GPU it says so before
# anything else; with one, its info line names the GPU.
"$python" "$peer_py" tokens "$tmp/probe.tokens" --count 1000 --vocab "$vocab" --seed 1
set +e
limited "$train" --model gpt2 --device "$device" --tokens "$tmp/probe.tokens" --vocab "$vocab" \
    --n-layer 1 --n-head 1 --n-embd 8 --seq-len 8 --batch 1 --steps 0 --val-fraction 0 \
    --quiet >"$out/probe.log" 2>&1
rc=$?
set -e
if [ "$rc" != 0 ]; then
    reason=$(grep -m 1 -e 'no CUDA device' -e 'built without the CUDA backend' "$out/probe.log" |
        sed 's/^ballast\[0\] error: //' || true)
    if [ -n "$reason" ]; then
        if command -v nvidia-smi >/dev/null 2>&1; then
            reason="$reason; nvidia-smi -L: $(nvidia-smi -L 2>&1 | head -n 1)"
        else
            reason="$reason; nvidia-smi not found"
        fi
        echo "bench_gpt_gpu: skipped: no GPU: $reason"
        exit 77
    fi
    echo "bench_gpt_gpu.sh: the probe '$train --model gpt2 --device $device --steps 0' failed:" >&2
    cat "$out/probe.log" >&2
    exit 1
fi
gpu=$(sed -n 's/.*rank 0: cuda:[0-9]* \(.*\))$/\1/p' "$out/probe.log" | head -n 1)
if [ "$device" = cuda ] && [ -z "$gpu" ] && command -v nvidia-smi >/dev/null 2>&1; then
    gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader -i 0 2>/dev/null || true)
fi
# The peaks: the flags, else the table's figures for the GPU ballast named.
known=
[ "$device" != cuda ] || known=$(peak_of "$gpu")
peak_note=
if [ -n "$peak" ]; then
    peak_note="$peak TFLOP/s (--peak-tflops)"
elif [ -n "$known" ]; then
    set -- $known
    peak=$1
    shift 2
    peak_note="$peak TFLOP/s, dense FP32 without tensor cores (TF32 off) at boost clock of the $*"
    peak_note="$peak_note (NVIDIA's data sheet; --peak-tflops to change)"
elif [ "$device" = cuda ]; then
    peak_note="unknown for '${gpu:-this GPU}': no MFU (pass --peak-tflops X)"
else
    peak_note="none: no GPU (--device $device); no MFU unless --peak-tflops is given"
fi
peak_bf16_note=
if [ -n "$peak_bf16" ]; then
    peak_bf16_note="$peak_bf16 TFLOP/s (--peak-bf16-tflops)"
elif [ -n "$known" ] && [ "$(echo $known | cut -d' ' -f2)" != - ]; then
    set -- $known
    peak_bf16=$2
    shift 2
    peak_bf16_note="$peak_bf16 TFLOP/s, dense BF16 tensor cores (fp32 accumulation, no"
    peak_bf16_note="$peak_bf16_note sparsity) at boost clock of the $* (NVIDIA's data sheet;"
    peak_bf16_note="$peak_bf16_note --peak-bf16-tflops to change)"
elif [ -n "$known" ]; then
    set -- $known
    shift 2
    peak_bf16_note="none: the $* has no bf16 tensor cores: no MFU (pass --peak-bf16-tflops X)"
elif [ "$device" = cuda ]; then
    peak_bf16_note="unknown for '${gpu:-this GPU}': no MFU (pass --peak-bf16-tflops X)"
else
    peak_bf16_note="none: no GPU (--device $device); no MFU unless --peak-bf16-tflops is given"
fi

# ---- The token file, both sides --------------------------------------------
count=$((32 * tokens_per_step + 1))
"$python" "$peer_py" tokens "$tmp/train.tokens" --count "$count" --vocab "$vocab" --seed "$seed"

# ---- The figures -------------------------------------------------------------
failed=
# row_of NAME: "tokens/s ms min max first_loss last_loss" of figure NAME, or
# nothing when it has no figures.
row_of() {
    cat "$tmp/$1.row" 2>/dev/null || true
}

# ballast NAME PRECISION: a ballast-train figure at PRECISION (fp32, the
# default, which is not passed, or bf16), its row from the per-step progress
# lines in $tmp/NAME.row, or why it has none in $tmp/NAME.why (a failure).
n_steps=$((warmup + steps))
ballast() {
    name=$1
    precision=$2
    set -- --model gpt2 --device "$device" --tokens "$tmp/train.tokens" --n-layer "$n_layer" \
        --n-head "$n_head" --n-embd "$n_embd" --seq-len "$seq_len" --vocab "$vocab" \
        --batch "$batch" --steps "$n_steps" --lr "$lr" --weight-decay "$wd" \
        --clip-grad-norm "$clip" --lr-schedule constant --warmup 0 --seed "$seed" \
        --val-fraction 0 --progress 0
    [ "$precision" = fp32 ] || set -- "$@" --precision "$precision"
    [ -z "$threads" ] || set -- "$@" --threads "$threads"
    echo "bench_gpt_gpu: ($name) ballast --device $device, $precision, $n_steps steps ..." >&2
    set +e
    limited "$mpirun" -np 1 --bind-to none "$train" "$@" >"$out/$name.log" 2>&1
    brc=$?
    set -e
    if [ "$brc" = 0 ]; then
        # "step S/N loss L tokens/s X ...": each timed step's ms from its tokens/s.
        awk -v w="$warmup" -v n="$tokens_per_step" '$1 == "step" && $5 == "tokens/s" {
            split($2, s, "/"); if (s[1] > w && $6 > 0) print 1e3 * n / $6, $4 }' \
            "$out/$name.log" >"$tmp/$name.steps"
    fi
    if [ "$brc" = 0 ] && [ -s "$tmp/$name.steps" ]; then
        cut -d' ' -f1 "$tmp/$name.steps" >"$tmp/$name.ms"
        set -- $(bench_stats "$tmp/$name.ms")
        echo "$(awk -v n="$tokens_per_step" -v m="$1" 'BEGIN { printf "%.1f", 1e3 * n / m }')" \
            "$1 $2 $3 $(head -n 1 "$tmp/$name.steps" | cut -d' ' -f2)" \
            "$(tail -n 1 "$tmp/$name.steps" | cut -d' ' -f2)" >"$tmp/$name.row"
    elif [ "$brc" = 124 ]; then
        echo "timed out after $limit s (--run-limit)" >"$tmp/$name.why"
        failed="$failed $name"
    else
        # ballast-train's own last complaint, not mpirun's banner after it.
        why=$(grep -e '^ballast-train:' -e '^ballast\[[0-9]*\] error' "$out/$name.log" | tail -n 1)
        [ -n "$why" ] || why=$(grep -v '^ *$' "$out/$name.log" | tail -n 1)
        echo "failed (exit $brc): $(echo "$why" | cut -c1-160)" >"$tmp/$name.why"
        failed="$failed $name"
    fi
}
ballast ballast fp32

# peer NAME FLAGS...: a PyTorch figure; its row, or why it has none in
# $tmp/NAME.why (exit 3: unavailable here, a skip; else a failure, except
# for compile, whose failure is a skip too).
peer() {
    name=$1
    shift
    echo "bench_gpt_gpu: ($name) PyTorch $* ..." >&2
    set -- "$peer_py" train --tokens "$tmp/train.tokens" --device "$peer_dev" \
        --n-layer "$n_layer" --n-head "$n_head" --n-embd "$n_embd" --seq-len "$seq_len" \
        --vocab "$vocab" --batch "$batch" --warmup-steps "$warmup" --steps "$steps" \
        --lr "$lr" --weight-decay "$wd" --clip "$clip" --seed "$seed" \
        --threads "${threads:-0}" "$@"
    set +e
    limited "$python" "$@" >"$out/$name.log" 2>&1
    prc=$?
    set -e
    v=$(bench_field "$out/$name.log" summary: tokens_per_s)
    if [ "$prc" = 0 ] && [ -n "$v" ]; then
        echo "$v $(bench_field "$out/$name.log" summary: step_ms)" \
            "$(bench_field "$out/$name.log" summary: step_ms_min)" \
            "$(bench_field "$out/$name.log" summary: step_ms_max)" \
            "$(bench_field "$out/$name.log" summary: first_loss)" \
            "$(bench_field "$out/$name.log" summary: last_loss)" >"$tmp/$name.row"
        return 0
    fi
    if [ "$prc" = 3 ]; then
        echo "skipped: $(sed -n 's/^torch_gpt_gpu: unavailable: //p' "$out/$name.log" | head -n 1)" \
            >"$tmp/$name.why"
    elif [ "$prc" = 124 ]; then
        echo "timed out after $limit s (--run-limit)" >"$tmp/$name.why"
        [ "$name" = compile ] || failed="$failed $name"
    else
        echo "failed (exit $prc): $(grep -v '^ *$' "$out/$name.log" | tail -n 1 | cut -c1-160)" \
            >"$tmp/$name.why"
        [ "$name" = compile ] || failed="$failed $name"
    fi
}
for p in $(echo "$peers" | tr ',' ' '); do
    case $p in
    eager) peer eager --attention eager ;;
    sdpa) peer sdpa --attention sdpa ;;
    compile) peer compile --attention eager --compile ;;
    bf16)
        ballast ballast_bf16 bf16
        peer bf16 --attention auto --bf16
        ;;
    esac
done

# ---- Report ----------------------------------------------------------------
n_params=$((12 * n_layer * n_embd * n_embd + 13 * n_layer * n_embd + vocab * n_embd + 2 * n_embd))
flops=$((6 * n_params + 12 * n_layer * n_embd * seq_len))
tver=$("$python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' \
    2>/dev/null || echo "no torch")
listed() {
    case ",$peers," in *",$1,"*) return 0 ;; esac
    return 1
}
precisions=fp32
listed bf16 && precisions="fp32 and bf16"
echo "bench_gpt_gpu: GPT-2 L=$n_layer H=$n_head C=$n_embd T=$seq_len V=$vocab (token table" \
    "padded to $vocab_padded rows), batch $batch sequences ($tokens_per_step tokens) a step," \
    "$precisions"
echo "  model FLOPs a token F = 6N + 12LCT = $flops, N = 12LC^2 + 13LC + VC + 2C = $n_params" \
    "(PaLM / nanoGPT)"
if [ "$device" = cuda ]; then
    echo "  GPU: ${gpu:-unknown (see $out/probe.log)}"
else
    echo "  GPU: none: ballast on --device $device, PyTorch on the CPU$([ "$tiny" = 1 ] &&
        echo ', tiny shapes'), 1 thread (DRY RUN: the figures mean nothing)"
fi
echo "  peak, fp32 rows: $peak_note"
listed bf16 && echo "  peak, bf16 rows: $peak_bf16_note"
# Both sides count their parameters with the padded table (12LC^2 + 13LC +
# VpC + TC + 2C): they must agree.
bp=$(sed -n 's/.*GPT-2: \([0-9]*\) parameters.*/\1/p' "$out/ballast.log" \
    "$out/ballast_bf16.log" 2>/dev/null | head -n 1)
tp=$(grep -h -o 'params=[0-9]*' "$out"/eager.log "$out"/sdpa.log "$out"/compile.log \
    "$out"/bf16.log 2>/dev/null | head -n 1 | cut -d= -f2)
echo "  parameters (token table padded): ballast ${bp:-?}, PyTorch ${tp:-?}"
echo "  tokens: $count random tokens below $vocab (an llm.c token file, both sides)"
echo "  AdamW lr $lr constant, weight decay $wd, clip $clip, seed $seed; $warmup warm-up steps," \
    "then $steps timed; tokens/s = $tokens_per_step / the median timed step"
echo "  ballast: $train; PyTorch: $python, $tver, bench/torch_gpt_gpu.py, TF32 off"
if listed bf16; then
    # ballast's own account of what its bf16 run did, where it gave one.
    said=$(sed -n 's/.*GPT-2: precision bf16: //p' "$out/ballast_bf16.log" 2>/dev/null | head -n 1)
    echo "  bf16: ballast --precision bf16: ${said:-bf16 GEMM operands, fp32 accumulation (its log" \
        "does not say)}; PyTorch torch.autocast(bfloat16), fp32 parameters and AdamW"
fi
echo
printf '%-52s %10s %9s  %-19s %7s  %s\n' figure tokens/s ms/step "(min - max ms)" MFU \
    "loss first/last"
# show LABEL NAME PEAK: the row of figure NAME, its MFU against PEAK TFLOP/s
# (none when PEAK is empty), or why it has none.
show() {
    r=$(row_of "$2")
    if [ -z "$r" ]; then
        printf '%-52s %s\n' "$1" "$(cat "$tmp/$2.why" 2>/dev/null || echo 'failed')"
        return 0
    fi
    set -- "$1" "$3" $r
    awk -v l="$1" -v peak="$2" -v t="$3" -v m="$4" -v lo="$5" -v hi="$6" -v f0="$7" -v f1="$8" \
        -v flops="$flops" 'BEGIN {
        u = peak > 0 ? sprintf("%6.1f%%", 100 * t * flops / (peak * 1e12)) : "    n/a"
        printf "%-52s %10.0f %9.2f  %8.2f - %-8.2f %7s  %.3f / %.3f\n", l, t, m, lo, hi, u, f0, f1 }'
}
show "(1) ballast --device $device, fp32" ballast "$peak"
listed eager && show "(2) PyTorch eager fp32, attention as ballast's" eager "$peak"
listed sdpa && show "(3) PyTorch eager fp32, SDPA attention" sdpa "$peak"
listed compile && show "(4) PyTorch torch.compile fp32, attention as (2)" compile "$peak"
att=
if listed bf16; then
    att=$(sed -n 's/.* attention=\([a-z]*\) .*/\1/p' "$out/bf16.log" 2>/dev/null | head -n 1)
    show "(5) ballast --device $device, bf16" ballast_bf16 "$peak_bf16"
    show "(6) PyTorch bf16 autocast, ${att:-SDPA where torch has it} attention" bf16 "$peak_bf16"
fi
echo "(MFU: (1) to (4) against the fp32 peak$(listed bf16 && echo ', (5) and (6) against the bf16 peak'))"
echo
echo "ballast / PyTorch, tokens/s (the MFU ratio is the same):"
# ratio KEY NUM DEN TEXT: KEY=the tokens/s of figure NUM / figure DEN's.
ratio() {
    a=$(row_of "$2" | cut -d' ' -f1)
    b=$(row_of "$3" | cut -d' ' -f1)
    if [ -n "$a" ] && [ -n "$b" ]; then
        awk -v k="$1" -v a="$a" -v b="$b" -v x="$4" 'BEGIN { printf "  %s=%.3f   (%s)\n", k, a / b, x }'
    else
        echo "  $1=n/a   ($4: a figure is missing)"
    fi
}
listed eager && ratio ratio_eager ballast eager "(1) / (2), like for like"
listed sdpa && ratio ratio_sdpa ballast sdpa "(1) / (3)"
listed compile && ratio ratio_compile ballast compile "(1) / (4)"
if listed bf16; then
    case $att in
    eager) ratio ratio_bf16 ballast_bf16 bf16 "(5) / (6), both bf16, like for like" ;;
    *) ratio ratio_bf16 ballast_bf16 bf16 "(5) / (6), both bf16; (6) with ${att:-SDPA} attention" ;;
    esac
fi
echo
mem=$(sed -n 's/.*memory: rank 0: //p' "$out/ballast.log" 2>/dev/null | head -n 1)
echo "memory: ballast accounts ${mem:-?}"
if listed bf16; then
    mem=$(sed -n 's/.*memory: rank 0: //p' "$out/ballast_bf16.log" 2>/dev/null | head -n 1)
    echo "  ballast bf16: ${mem:-?}"
fi
for p in eager sdpa compile bf16; do
    g=$(bench_field "$out/$p.log" summary: peak_mem_gib 2>/dev/null || true)
    [ -z "$g" ] || [ "$peer_dev" != cuda ] ||
        echo "  PyTorch ($p): torch.cuda.max_memory_allocated $g GiB"
done
[ -z "$keep" ] || echo "logs: $keep"
if [ -n "$failed" ]; then
    for f in $failed; do
        echo
        echo "bench_gpt_gpu.sh: ($f) failed; the last lines of its log:" >&2
        tail -n 30 "$out/$f.log" >&2
    done
    exit 1
fi
