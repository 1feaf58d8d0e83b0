#!/bin/sh
# Quick start, command 1: install what is missing, build, then train the
# MLP 784-256-128-10 on Fashion-MNIST on 2 ranks with rank 1 emulated 2x
# slower and the bandit policy moving samples off it, printing progress;
# then report the run (summary and plots) and say where everything is.
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
