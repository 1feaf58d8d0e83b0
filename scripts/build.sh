#!/bin/sh
# Configures and builds ballast into build/ (or $BALLAST_BUILD_DIR).
# Extra arguments go to cmake's configure step, e.g. -DBALLAST_WERROR=ON.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BALLAST_BUILD_DIR:-"$root/build"}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
cmake --build "$build" -j "$(nproc)"
