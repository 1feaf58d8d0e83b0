#!/bin/sh
# Quick start, command 2: install what is missing, build with warnings as
# errors, run the whole test suite; then build the tests again with
# AddressSanitizer and UndefinedBehaviorSanitizer and run the unit tests.
# Exits non-zero when anything fails.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
# --peers: PyTorch too, for the suite's comparison of the GPT-2 model with
# a PyTorch one (label torch; it skips where torch is missing).
"$root/scripts/install-deps.sh" --peers
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
jobs=$(nproc)

# The CUDA backend is built whenever its toolkit is installed (as on CI's
# machines): ON, not AUTO, so a toolkit that is there but broken (no NCCL,
# say) fails the build instead of quietly leaving the backend out.
cuda=AUTO
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
    cuda=ON
fi
echo "test: CUDA backend: BALLAST_CUDA=$cuda"
BALLAST_BUILD_DIR="$root/build" "$root/scripts/build.sh" -DBALLAST_WERROR=ON -DBALLAST_CUDA=$cuda
echo "test: full suite"
ctest --test-dir "$root/build" --output-on-failure -j "$jobs" --timeout 600

# (The CUDA backend is built in the first build only: sanitizers do not
# apply to nvcc's code, and it runs only where a GPU is.)
BALLAST_BUILD_DIR="$root/build-sanitize" "$root/scripts/build.sh" -DBALLAST_WERROR=ON \
    -DBALLAST_SANITIZE=address,undefined -DBALLAST_BENCH=OFF -DBALLAST_EXAMPLES=OFF \
    -DBALLAST_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug
echo "test: unit and cli tests under AddressSanitizer + UndefinedBehaviorSanitizer"
ctest --test-dir "$root/build-sanitize" --output-on-failure -j "$jobs" --timeout 600 -L 'unit|cli' -LE slow

# libFuzzer harnesses (fuzz/README.md): build them with clang under
# AddressSanitizer + UndefinedBehaviorSanitizer and replay the seed corpora
# (no new fuzzing here; fuzz_short_* under -L slow fuzz for 20 s each).
if command -v clang >/dev/null 2>&1; then
    CC=clang cmake -S "$root" -B "$root/build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DBALLAST_FUZZ=ON -DBALLAST_SANITIZE=address,undefined -DBALLAST_WERROR=ON \
        -DBALLAST_TESTS=OFF -DBALLAST_BENCH=OFF -DBALLAST_EXAMPLES=OFF -DBALLAST_CUDA=OFF
    cmake --build "$root/build-fuzz" -j "$jobs" --target fuzz_idx fuzz_train_options fuzz_checkpoint \
        fuzz_policy_state
    echo "test: fuzz corpus replay (libFuzzer, AddressSanitizer + UndefinedBehaviorSanitizer)"
    ctest --test-dir "$root/build-fuzz/fuzz" --output-on-failure -L fuzz -LE slow
else
    echo "test: clang not found, fuzz corpus replay skipped"
fi
