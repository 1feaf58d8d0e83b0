#!/bin/sh
# Quick start, command 1: install what is missing, build, and train the
# default MLP (784-256-128-10) on Fashion-MNIST in one process, printing
# progress and the final test accuracy.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
# Open MPI refuses root unless told; the demo often runs as root in containers.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
build=${BALLAST_BUILD_DIR:-"$root/build"}
echo "demo: training on /usr/share/datasets/fashion-mnist (5 epochs, one process)"
mpirun -np 1 "$build/runtime/ballast-train" --layers 256,128 --batch 128 --lr 0.05 \
    --momentum 0.9 --epochs 5 --progress 2
