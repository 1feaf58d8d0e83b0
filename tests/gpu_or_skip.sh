#!/bin/sh
# gpu_or_skip.sh PROBE GPUS -- COMMAND [ARGS...]
#
# Runs COMMAND (exec: its exit status and output are the test's, after
# the probe's line naming the GPU) when PROBE --gpus GPUS
# (tests/gpu_probe.c) says this machine can train on that many GPUs. When
# it cannot, prints the probe's reason and exits 77, which ctest reports as
# skipped (SKIP_RETURN_CODE 77; expect.sh passes 77 through). A probe that
# fails otherwise fails the test: exit 1.
set -u

usage() {
    echo "usage: gpu_or_skip.sh PROBE GPUS -- COMMAND [ARGS...]" >&2
    exit 2
}

if [ $# -lt 4 ] || [ "$3" != "--" ]; then
    usage
fi
probe=$1
gpus=$2
shift 3

out=$("$probe" --gpus "$gpus" 2>&1)
code=$?
case $code in
    0) printf '%s\n' "$out" ;;
    77)
        printf '%s\n' "$out"
        exit 77
        ;;
    *)
        printf '%s\n' "$out" >&2
        echo "gpu_or_skip.sh: $probe failed (exit $code)" >&2
        exit 1
        ;;
esac
exec "$@"
