#!/bin/sh
# generate_twice.sh BALLAST_GENERATE MODEL WORKDIR
#
# Runs ballast-generate --model MODEL --prompt ab --tokens 20 --seed 3
# twice and succeeds when both runs exit 0 with the same 22 bytes on stdout,
# starting with "ab", and a third run with --seed 4 prints other bytes.
set -u
[ $# -eq 3 ] || { echo "usage: generate_twice.sh BALLAST_GENERATE MODEL WORKDIR" >&2; exit 2; }
gen=$1
model=$2
work=$3
mkdir -p "$work" || exit 1
for run in a b c; do
    seed=3
    [ $run = c ] && seed=4
    if ! "$gen" --model "$model" --prompt ab --tokens 20 --seed $seed >"$work/$run.out"; then
        echo "generate_twice.sh: run $run exited $?" >&2
        exit 1
    fi
done
n=$(wc -c <"$work/a.out")
if [ "$n" -ne 22 ]; then
    echo "generate_twice.sh: $n bytes, expected 22 (the prompt and 20 tokens)" >&2
    exit 1
fi
if [ "$(head -c 2 "$work/a.out")" != ab ]; then
    echo "generate_twice.sh: the text does not start with the prompt 'ab'" >&2
    exit 1
fi
if ! cmp "$work/a.out" "$work/b.out"; then
    echo "generate_twice.sh: one seed gave two texts" >&2
    exit 1
fi
if cmp -s "$work/a.out" "$work/c.out"; then
    echo "generate_twice.sh: seeds 3 and 4 gave the same text" >&2
    exit 1
fi
echo "generate_twice.sh: ok"
exit 0
