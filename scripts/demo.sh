#!/bin/sh
# Quick start, command 1: install what is missing, build, then train the
# MLP 784-256-128-10 on Fashion-MNIST on 2 ranks with rank 1 emulated 2x
# slower and the bandit policy moving samples off it, printing progress;
# then report the run (summary and plots). Second, a GPT-2 language model
# (4 blocks, 256 channels) learns the fortunes package's texts byte by byte
# on 2 ranks for a few minutes, and samples text from what it learned.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
# Open MPI refuses root unless told; the demo often runs as root in containers.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
build=${BALLAST_BUILD_DIR:-"$root/build"}
out=$build/demo
mkdir -p "$out"
oversub=
[ "$(nproc)" -ge 2 ] || oversub=--oversubscribe
echo "demo: 2 ranks on /usr/share/datasets/fashion-mnist, 3 epochs; rank 1 runs 2x slower"
echo "demo: (--emulate-slowdown 1:2) and --policy bandit rebalances the samples every 5 steps"
mpirun -np 2 $oversub "$build/tools/ballast-train" --layers 256,128 --batch 128 --lr 0.05 \
    --momentum 0.9 --epochs 3 --threads 1 --progress 1 --emulate-slowdown 1:2 \
    --policy bandit --rebalance-every 5 --telemetry "$out/run.jsonl" --trace "$out/run.trace.json"
echo
"$build/tools/ballast-report" --out "$out/report" "$out/run.jsonl"
echo "demo: telemetry $out/run.jsonl; timeline $out/run.trace.json (open it at"
echo "demo: https://ui.perfetto.dev); report and plots in $out/report/"

# ---- A transformer: GPT-2 on the fortunes package's texts ----------------
text=$out/fortunes.txt
cat $(ls /usr/share/games/fortunes/* | grep -v -e '\.dat$' -e '\.u8$') >"$text"
steps=${BALLAST_DEMO_GPT_STEPS:-300}
echo
echo "demo: GPT-2 (4 blocks, 4 heads, 256 channels, T 128) on $(wc -c <"$text") bytes of"
echo "demo: fortunes, 2 ranks, batch 16 sequences, AdamW with a cosine schedule, $steps steps"
mpirun -np 2 $oversub "$build/tools/ballast-train" --model gpt2 --text "$text" \
    --n-layer 4 --n-head 4 --n-embd 256 --seq-len 128 --batch 16 --steps "$steps" \
    --lr 2e-3 --lr-schedule cosine --warmup 20 --lr-min 2e-4 --threads 1 --progress 10 \
    --val-sequences 64 --val-every 100 --telemetry "$out/gpt.jsonl" \
    --save-model "$out/gpt2.bin"
"$build/tools/ballast-report" --quiet --out "$out/gpt-report" "$out/gpt.jsonl"
echo "demo: text sampled from the model ($out/gpt2.bin), seed 1:"
echo "----"
"$build/tools/ballast-generate" --model "$out/gpt2.bin" --prompt "Q:" --tokens 400 \
    --temperature 0.8 --seed 1
echo
echo "----"
echo "demo: the loss plot is $out/gpt-report/loss.png"
