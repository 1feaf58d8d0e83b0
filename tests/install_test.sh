#!/bin/sh
# The install test: `cmake --install` of the build tree BUILD into a fresh
# prefix, then a program outside the tree (tests/install/) built against
# it twice — with find_package(ballast) and with pkg-config — and each run
# on 2 ranks with mpirun; the installed ballast-train runs too. Prints
# "install: ok" at the end; any failure exits non-zero with its output.
#   tests/install_test.sh BUILD WORKDIR
set -eu
build=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

cmake --install "$build" --prefix "$prefix" >"$work/install.log"
for f in include/ballast.h include/ballast_lm.h lib/libballast.so lib/cmake/ballast/ballastConfig.cmake \
    lib/pkgconfig/ballast.pc bin/ballast-train bin/ballast-sim bin/ballast-report \
    bin/ballast-bench bin/ballast-generate; do
    [ -e "$prefix/$f" ] || [ -e "$prefix/$(echo "$f" | sed 's|^lib/|lib/x86_64-linux-gnu/|')" ] ||
        { echo "install: $f is missing from $prefix" >&2; exit 1; }
done

# The CMake way.
cmake -S "$here/install" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
    >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log" >&2; exit 1; }
cmake --build "$work/cmake-build" >>"$work/cmake.log" 2>&1 || { cat "$work/cmake.log" >&2; exit 1; }
mpirun -np 2 --oversubscribe "$work/cmake-build/consumer" | grep "^consumer: ok ranks=2 "

# The pkg-config way (the library's directory as the run path).
libdir=$(dirname "$(find "$prefix" -name 'libballast.so' | head -n 1)")
export PKG_CONFIG_PATH="$libdir/pkgconfig"
# shellcheck disable=SC2046
cc -std=c11 -o "$work/consumer-pc" "$here/install/consumer.c" $(pkg-config --cflags --libs ballast) \
    -Wl,-rpath,"$libdir"
mpirun -np 2 --oversubscribe "$work/consumer-pc" | grep "^consumer: ok ranks=2 "

# The installed program finds the installed library.
"$prefix/bin/ballast-train" --help | grep -q "^usage: ballast-train"
# With the CUDA backend built, the installed library opens the installed
# module beside it (a GPU or not: the module loads either way).
if [ -e "$build/runtime/libballast_cuda.so" ]; then
    [ -e "$libdir/libballast_cuda.so" ] ||
        { echo "install: libballast_cuda.so is missing from $libdir" >&2; exit 1; }
    BALLAST_LOG=debug "$prefix/bin/ballast-train" --device auto --data "$work/no-data" 2>&1 |
        grep "rank 0: CUDA backend $prefix/.*libballast_cuda.so\$" ||
        { echo "install: the installed ballast-train did not open $libdir/libballast_cuda.so" >&2; exit 1; }
fi
echo "install: ok"
