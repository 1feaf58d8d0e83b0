#!/bin/sh
# Installs what ballast needs to build, test and run its demo on Debian 12,
# and only what is missing. Idempotent; run as root (or it uses sudo).
#
#   scripts/install-deps.sh            build + test dependencies and the dataset
#   scripts/install-deps.sh --peers    also PyTorch, for the peer benchmark
#
# clang builds the libFuzzer harnesses (fuzz/); libFuzzer itself
# (libclang_rt.fuzzer) is in libclang-rt-14-dev, which clang only recommends.
# fortunes ships plain text (/usr/share/games/fortunes/) that the demo
# tokenizes byte by byte into an llm.c token file.
set -eu

packages="build-essential cmake pkgconf libopenmpi-dev openmpi-bin libopenblas-dev \
libhwloc-dev libcmocka-dev zlib1g-dev dataset-fashion-mnist jq gnuplot-nox \
clang libclang-rt-14-dev slurm-wlm munge fortunes"
for arg in "$@"; do
    case "$arg" in
    --peers) packages="$packages python3-torch" ;;
    *) echo "install-deps: unknown argument '$arg' (use --peers or nothing)" >&2; exit 2 ;;
    esac
done

missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "install-deps: all dependencies present"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "install-deps: missing:$missing; run as root or install sudo" >&2
        exit 1
    }
    sudo="sudo"
fi
echo "install-deps: installing:$missing"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
echo "install-deps: done"
