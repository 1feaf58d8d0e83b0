#!/bin/sh
# ballast's GPT-2 (runtime/model/gpt2.h) against a plain PyTorch GPT-2
# (torch_gpt2.py) on the same llm.c files:
#   1. gpt2_train_ref makes a random model (GPT-2's initialisation, seeded)
#      and a token stream, both in llm.c's formats;
#   2. both sides run 20 AdamW steps on the same batches, once without and
#      once with gradient-norm clipping (max norm 0.5, which clips);
#   3. torch_gpt2.py compare checks every step's loss within 1e-5 relative
#      and every tensor of the final parameters within 1e-4 in relative
#      norm, ||ballast − torch|| / ||torch||, but for the key bias (its
#      gradient is exactly 0, so AdamW moves it by rounding noise on both
#      sides; torch_gpt2.py says more), held to |ballast − torch| <= 1e-4,
#      and prints the differences.
# ballast on the mirror device must also give the CPU's losses and final
# file byte for byte.
#   torch_gpt2_check.sh GPT2_TRAIN_REF TORCH_GPT2_PY WORKDIR
# Exits 0 when all agree, 1 when not, and 77 (skipped) without PyTorch.
set -eu
ref=$1
py=$2
dir=$3
python=/usr/bin/python3

if ! "$python" -c 'import torch' >/dev/null 2>&1; then
    echo "torch_gpt2_check: skipped: $python cannot import torch" \
        "(sh scripts/install-deps.sh --peers installs it)"
    exit 77
fi
rm -rf "$dir"
mkdir -p "$dir"

# maxT 16, V 50, L 2, NH 4, C 32, Vp 64; batches of 4 × 8 tokens.
"$ref" init "$dir/model.bin" --seed 1234 --maxT 16 --V 50 --Vp 64 --L 2 --NH 4 --C 32
"$ref" tokens "$dir/tokens.bin" --seed 99 --count 4096 --V 50
hyper="--B 4 --T 8 --steps 20 --lr 1e-3 --beta1 0.9 --beta2 0.95 --eps 1e-8 --wd 0.1"

status=0
for clip in 0 0.5; do
    # shellcheck disable=SC2086 # $hyper is a list of flags
    "$ref" train "$dir/model.bin" "$dir/tokens.bin" "$dir/ballast-$clip.bin" $hyper \
        --clip "$clip" >"$dir/ballast-$clip.txt"
    # shellcheck disable=SC2086
    "$ref" train "$dir/model.bin" "$dir/tokens.bin" "$dir/mirror-$clip.bin" $hyper \
        --clip "$clip" --device mirror >"$dir/mirror-$clip.txt"
    # shellcheck disable=SC2086
    "$python" "$py" train "$dir/model.bin" "$dir/tokens.bin" "$dir/torch-$clip.bin" $hyper \
        --clip "$clip" >"$dir/torch-$clip.txt"
    echo "torch_gpt2_check: clip $clip: first and last steps, ballast then torch:"
    for side in ballast torch; do
        sed -n '1p;$p' "$dir/$side-$clip.txt"
    done
    if ! cmp -s "$dir/ballast-$clip.txt" "$dir/mirror-$clip.txt" ||
        ! cmp -s "$dir/ballast-$clip.bin" "$dir/mirror-$clip.bin"; then
        echo "torch_gpt2_check: clip $clip: the mirror device differs from the CPU"
        status=1
    fi
    "$python" "$py" compare "$dir/ballast-$clip.txt" "$dir/torch-$clip.txt" \
        "$dir/ballast-$clip.bin" "$dir/torch-$clip.bin" --loss-rtol 1e-5 --param-rtol 1e-4 --key-bias-atol 1e-4 ||
        status=1
done
[ "$status" -eq 0 ] && echo "torch_gpt2_check: ok"
exit "$status"
