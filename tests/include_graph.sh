#!/bin/sh
# The include graph of the library's sources:
#   1. every file of a runtime room includes only headers of its own room
#      or of the rooms before it (ROOMS, in dependency order), and only
#      runtime/runtime.c, above every room, may include them all;
#   2. no header includes itself through others (no cycle; tsort finds one);
#   3. partition/ includes no MPI, CUDA or runtime header, and kernels/ no
#      MPI or runtime header (DESIGN.md's arrows point down only).
#   include_graph.sh ROOT ROOM...
# Prints one line per fault and "include graph: N files, M includes, 0
# faults", and exits 1 when there is a fault.
set -u
root=$1
shift
rooms="$*"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# header name -> room rank (0, 1, ... in ROOMS order)
rank=0
for room in $rooms; do
    for h in "$root/runtime/$room"/*.h; do
        [ -e "$h" ] && echo "$(basename "$h") $rank $room" >>"$tmp/headers"
    done
    rank=$((rank + 1))
done
top=$rank # runtime.c

# Every (file, its room's rank, its room, included name) of the rooms.
rank=0
for room in $rooms; do
    for f in "$root/runtime/$room"/*.c "$root/runtime/$room"/*.h; do
        [ -e "$f" ] || continue
        sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f" |
            while read -r inc; do echo "runtime/$room/$(basename "$f") $rank $room $inc"; done
    done
    rank=$((rank + 1))
done >"$tmp/edges"
sed -n 's/^#include "\([^"]*\)".*/\1/p' "$root/runtime/runtime.c" |
    while read -r inc; do echo "runtime/runtime.c $top root $inc"; done >>"$tmp/edges"

faults=$(awk '
    NR == FNR { rank[$1] = $2; room[$1] = $3; next }
    ($4 in rank) && rank[$4] > $2 {
        printf "include graph: %s includes %s/%s: room %s must not depend on room %s\n",
            $1, room[$4], $4, $3, room[$4]
    }' "$tmp/headers" "$tmp/edges")
[ -n "$faults" ] && echo "$faults"
count=$(printf '%s' "$faults" | grep -c . || true)

# Header-to-header edges for tsort: a loop among them is a cycle.
awk 'NR == FNR { known[$1] = 1; next }
     { n = split($1, p, "/"); name = p[n] }
     name ~ /\.h$/ && ($4 in known) { print name, $4 }' "$tmp/headers" "$tmp/edges" >"$tmp/pairs"
if ! tsort "$tmp/pairs" >/dev/null 2>"$tmp/tsort"; then
    echo "include graph: a cycle among the headers:"
    sed 's/^/    /' "$tmp/tsort"
    count=$((count + 1))
fi

# DESIGN.md's arrows.
for f in "$root"/partition/*.c "$root"/partition/*.h "$root"/partition/sim/*.c \
    "$root"/partition/sim/*.h "$root"/kernels/*.c "$root"/kernels/*.h; do
    [ -e "$f" ] || continue
    case $f in
    */partition/sim/ballast_sim.c) continue ;; # the program, not the engine
    esac
    bad=$(grep -nE '^#include [<"](mpi\.h|cuda|nccl|cublas|ballast\.h|runtime_impl\.h|internal\.h)' \
        "$f" || true)
    if [ -n "$bad" ]; then
        echo "include graph: ${f#"$root"/}: $bad (partition/ and kernels/ stay below the runtime)"
        count=$((count + 1))
    fi
done

echo "include graph: $(cut -d' ' -f1 "$tmp/edges" | sort -u | wc -l) files," \
    "$(wc -l <"$tmp/edges") includes, $count faults"
[ "$count" -eq 0 ]
