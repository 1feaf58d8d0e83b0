#!/bin/sh
# gpu_check.sh: everything a session checks on a GPU machine, in one command.
#
#   scripts/gpu_check.sh [--no-tests] [--no-bench]
#
# From the repository root of a copy of the working tree, on a machine with
# an NVIDIA GPU (the project's lent H200), as the device tool runs it:
#   1. prints `nvidia-smi -L` (and the driver line of nvidia-smi);
#   2. checks that the build dependencies are there and stops, naming what
#      is missing, when they are not: that machine cannot install anything
#      from the internet, so they must already be present (nothing is
#      installed here);
#   3. configures and builds into build-gpu/ with -DBALLAST_CUDA=ON and
#      -DCMAKE_CUDA_ARCHITECTURES=90 (Hopper only, to build fast); a rerun on
#      the same machine rebuilds incrementally;
#   4. runs `ctest -L gpu -V` in it (a GPU test skipped for want of a GPU
#      counts as a failure here: this machine is supposed to have one; one
#      skipped because it needs more GPUs than the machine has is said);
#   5. runs bench/bench_gpu.sh build-gpu $OUT/bench (bench/README.md, GPU).
# Everything goes to stdout and to ${OUT:-/tmp/gpu-check}/gpu-check.log; the
# benchmark's raw outputs go to $OUT/bench/.
#
# --no-tests skips step 4 (and, where cmocka is missing, builds without the
# tests, -DBALLAST_TESTS=OFF); --no-bench skips step 5. A second call on the
# same (still warm) machine finds build-gpu/ there and rebuilds only what
# changed, so `--no-tests` after a run that got the tests through costs
# little.
# Exit status: 0 when every step that ran passed; 1 a step failed; 2 bad
# usage; 3 build dependencies missing (nothing was built).
# Environment: OUT, PYTHON (the peer's python, default python3), MPIRUN,
# CUDACXX (nvcc, else the PATH, else /usr/local/cuda/bin/nvcc), and the
# BENCH_GPU_* settings of bench/bench_gpu.sh.
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/gpu-check}
tests=1
bench=1
for arg in "$@"; do
    case $arg in
    --no-tests) tests=0 ;;
    --no-bench) bench=0 ;;
    -h | --help)
        sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "gpu_check: unknown argument '$arg' (see --help)" >&2
        exit 2
        ;;
    esac
done
mkdir -p "$out" || exit 1
log=$out/gpu-check.log
: >"$log"
build=$root/build-gpu
jobs=$(nproc 2>/dev/null || echo 4)
if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

# step NAME: a header line with the time since the start.
t0=$(date +%s)
step() {
    echo
    echo "==== gpu_check: $1 (+$(($(date +%s) - t0)) s)"
}

# The NCCL headers and library: the CUDA toolkit's or the system's (what
# CMake finds by itself), else the copy that pip's nvidia-nccl wheel (a
# dependency of PyTorch's CUDA wheels) put next to torch; sets nccl_note,
# and nccl_args to the CMake cache settings that point at the wheel's copy.
find_nccl() {
    nccl_args=
    nccl_note=
    for d in "${nvcc_dir:+$nvcc_dir/../include}" /usr/local/cuda/include /usr/include \
        /usr/local/include /usr/include/x86_64-linux-gnu; do
        if [ -n "$d" ] && [ -f "$d/nccl.h" ]; then
            nccl_note="$d/nccl.h"
            return 0
        fi
    done
    py=${PYTHON:-python3}
    command -v "$py" >/dev/null 2>&1 || return 1
    wheel=$("$py" -c 'import os, nvidia.nccl as n
print(os.path.dirname(n.__file__) if n.__file__ else list(n.__path__)[0])' 2>/dev/null) ||
        return 1
    lib=
    for f in "$wheel"/lib/libnccl.so*; do
        [ -n "$lib" ] || [ ! -f "$f" ] || lib=$f
    done
    if [ -f "$wheel/include/nccl.h" ] && [ -n "$lib" ]; then
        nccl_args="-DBALLAST_NCCL_INCLUDE_DIR=$wheel/include -DBALLAST_NCCL_LIBRARY=$lib"
        nccl_note="pip's nvidia-nccl: $wheel ($lib)"
        LD_LIBRARY_PATH=$wheel/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        export LD_LIBRARY_PATH
        return 0
    fi
    return 1
}

main() {
    failed=
    echo "gpu_check: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(uname -n), $jobs cores;" \
        "repository $root; output $out"
    (cd "$root" && git log -1 --format='  commit %h %s' 2>/dev/null &&
        git status --short 2>/dev/null | awk 'END { print "  " NR " paths changed or new in the working tree" }')

    # ---- 1. The GPU ------------------------------------------------------------
    step "nvidia-smi -L"
    if command -v nvidia-smi >/dev/null 2>&1; then
        if ! nvidia-smi -L; then
            echo "gpu_check: nvidia-smi -L failed: no usable GPU (the GPU steps will skip)"
            failed="$failed nvidia-smi"
        fi
        nvidia-smi 2>/dev/null | grep -m 1 'Driver Version' | sed 's/^[| ]*/  /; s/[| ]*$//'
    else
        echo "gpu_check: nvidia-smi not found: no NVIDIA driver here (the GPU steps will skip)"
        failed="$failed nvidia-smi"
    fi

    # ---- 2. Build dependencies (nothing is installed: no internet there) ---------
    step "build dependencies"
    missing=
    need() { # need WHAT DEBIAN-PACKAGES TEST...
        _what=$1 _pkg=$2
        shift 2
        if "$@" >/dev/null 2>&1; then
            echo "  ok       $_what"
        else
            echo "  MISSING  $_what (Debian: $_pkg)"
            missing="$missing $_pkg"
        fi
    }
    need cmake cmake command -v cmake
    need "make or ninja" "make" sh -c 'command -v make || command -v ninja'
    need "a C compiler (cc)" build-essential command -v cc
    need pkg-config pkgconf sh -c 'command -v pkg-config || command -v pkgconf'
    # (The single-quoted scripts are expanded by the inner sh.)
    # shellcheck disable=SC2016
    need "mpicc and mpirun (Open MPI)" "libopenmpi-dev openmpi-bin" \
        sh -c 'command -v mpicc && command -v "${MPIRUN:-mpirun}"'
    need "OpenBLAS (pkg-config openblas)" libopenblas-dev pkg-config --exists openblas
    need "hwloc (pkg-config hwloc)" libhwloc-dev pkg-config --exists hwloc
    need "zlib (zlib.h)" zlib1g-dev sh -c 'pkg-config --exists zlib || [ -f /usr/include/zlib.h ]'
    build_tests=1
    if [ "$tests" = 1 ]; then
        need "cmocka (pkg-config cmocka; or pass --no-tests)" libcmocka-dev \
            pkg-config --exists cmocka
    elif ! pkg-config --exists cmocka >/dev/null 2>&1; then
        echo "  (absent) cmocka: building without the tests (--no-tests)"
        build_tests=0
    fi
    nvcc=${CUDACXX:-$(command -v nvcc 2>/dev/null || true)}
    [ -n "$nvcc" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || nvcc=/usr/local/cuda/bin/nvcc
    nvcc_dir=
    [ -z "$nvcc" ] || nvcc_dir=$(dirname "$nvcc")
    # shellcheck disable=SC2016
    need "nvcc (the CUDA toolkit, with cuBLAS)" nvidia-cuda-toolkit \
        sh -c '[ -n "$1" ] && [ -x "$1" ]' sh "$nvcc"
    if find_nccl; then
        echo "  ok       NCCL: $nccl_note"
    else
        echo "  MISSING  NCCL 2.14+ (nccl.h and libnccl) (Debian: libnccl-dev; or pip's nvidia-nccl)"
        missing="$missing libnccl-dev"
    fi
    # Wanted, not needed: the benchmark says what it leaves out without them.
    for c in jq taskset gzip "${PYTHON:-python3}"; do
        command -v "$c" >/dev/null 2>&1 && echo "  ok       $c" ||
            echo "  (absent) $c: the benchmark works around it (see its report)"
    done
    [ -d /usr/share/datasets/fashion-mnist ] && echo "  ok       Fashion-MNIST data" ||
        echo "  (absent) /usr/share/datasets/fashion-mnist: the benchmark makes random data of its shape"
    if [ -n "$missing" ]; then
        echo
        echo "gpu_check: STOP: build dependencies missing:$missing"
        echo "  This machine cannot install from the internet; they must be present on it"
        echo "  (on Debian 12: apt-get install$missing; see scripts/install-deps.sh)."
        case $missing in
        *libcmocka-dev*) echo "  Without cmocka, scripts/gpu_check.sh --no-tests still builds and benchmarks." ;;
        esac
        case $missing in
        *nvidia-cuda-toolkit*) echo "  (or NVIDIA's own CUDA toolkit: nvcc on the PATH, in CUDACXX or /usr/local/cuda/bin)" ;;
        esac
        return 3
    fi
    [ -z "$nvcc" ] || "$nvcc" --version | tail -n 1 | sed 's/^/  nvcc: /'

    # ---- 3. Configure and build ---------------------------------------------
    step "configure and build $build (BALLAST_CUDA=ON, sm_90)"
    set -- -DBALLAST_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=RelWithDebInfo
    [ -z "$nvcc" ] || set -- "$@" -DCMAKE_CUDA_COMPILER="$nvcc"
    [ "$build_tests" = 1 ] || set -- "$@" -DBALLAST_TESTS=OFF
    # shellcheck disable=SC2086 # two -D settings, or none
    set -- "$@" $nccl_args
    echo "  cmake -S $root -B $build $*"
    if ! cmake -S "$root" -B "$build" "$@"; then
        echo "gpu_check: FAILED: cmake configure"
        return 1
    fi
    if ! cmake --build "$build" -j "$jobs"; then
        echo "gpu_check: FAILED: build"
        return 1
    fi

    # ---- 4. The GPU tests ---------------------------------------------------
    if [ "$tests" = 1 ]; then
        step "ctest -L gpu"
        ctest_log=$out/ctest-gpu.log
        (cd "$build" && ctest -L gpu -V --timeout 300) >"$ctest_log" 2>&1
        ctest_rc=$?
        cat "$ctest_log"
        if [ "$ctest_rc" != 0 ]; then
            echo "gpu_check: FAILED: ctest -L gpu (status $ctest_rc)"
            failed="$failed ctest"
        elif grep -q 'No tests were found' "$ctest_log"; then
            echo "gpu_check: FAILED: ctest -L gpu found no tests (is the CUDA backend built?)"
            failed="$failed ctest"
        else
            # A test that needs more GPUs than this machine has skips
            # ("skipped: needs 2 GPUs, sees 1"): said, not a failure. Any
            # other skip means a test saw no GPU here.
            skipped=$(grep -c -e '\*\*\*Skipped' -e 'Not Run' "$ctest_log")
            more=$(grep -c 'skipped: needs [0-9]* GPUs, sees' "$ctest_log")
            if [ "$skipped" -gt "$more" ]; then
                echo "gpu_check: FAILED: $((skipped - more)) GPU tests were skipped: they saw no GPU"
                failed="$failed ctest(skipped)"
            elif [ "$more" -gt 0 ]; then
                echo "gpu_check: $more GPU tests skipped: they need more GPUs than this machine has"
            fi
        fi
    fi

    # ---- 5. The benchmark -------------------------------------------------
    if [ "$bench" = 1 ]; then
        step "bench/bench_gpu.sh $build $out/bench"
        sh "$root/bench/bench_gpu.sh" "$build" "$out/bench"
        bench_rc=$?
        case $bench_rc in
        0) ;;
        77)
            echo "gpu_check: FAILED: bench_gpu.sh skipped: ballast saw no GPU (see above;"
            echo "  a driver older than the toolkit reads as 'driver version is insufficient')"
            failed="$failed bench(skipped)"
            ;;
        *)
            echo "gpu_check: FAILED: bench_gpu.sh (status $bench_rc)"
            failed="$failed bench"
            ;;
        esac
    fi

    step "done"
    if [ -n "$failed" ]; then
        echo "gpu_check: FAILED:$failed"
        return 1
    fi
    echo "gpu_check: all passed"
    return 0
}

# stdout and stderr of every step go to the terminal and to the log; the
# status comes back through a file, since a pipeline's is tee's.
rc_file=$out/.gpu-check.rc
{
    main
    echo $? >"$rc_file"
} 2>&1 | tee -a "$log"
rc=$(cat "$rc_file" 2>/dev/null || echo 1)
rm -f "$rc_file"
exit "$rc"
