#!/bin/sh
# Writes the seed corpora fuzz/corpus/fuzz_idx/ and
# fuzz/corpus/fuzz_train_options/ (checked in; run this again only to change
# them). Needs sh, printf, head, tr and gzip; no network.
#
#   fuzz/make_corpus.sh [OUT_DIR]     (default: fuzz/corpus next to this script)
#
# The input layouts are those of fuzz_idx.c and fuzz_train_options.c:
#   fuzz_idx            mode, classes, images length (2 bytes, big-endian),
#                       images file, labels file
#   fuzz_train_options  (ranks - 1), then the arguments separated by newlines
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/corpus"}
idx="$out/fuzz_idx"
opts="$out/fuzz_train_options"
mkdir -p "$idx" "$opts"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ballast_corpus_XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# byte N...: each value 0..255 as one byte.
byte() {
    for v in "$@"; do
        # shellcheck disable=SC2059
        printf "\\$(printf '%03o' "$v")"
    done
}
# be32 N: N as a big-endian uint32.
be32() {
    byte $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255))
}
# fill COUNT OCTAL: COUNT bytes of one value (given in octal, e.g. 200).
fill() {
    head -c "$1" /dev/zero | tr '\000' "\\$2"
}
# idx_header DTYPE DIM...: an IDX header with these dimensions.
idx_header() {
    dtype=$1
    shift
    byte 0 0 "$dtype" $#
    for d in "$@"; do
        be32 "$d"
    done
}
# seed NAME MODE CLASSES IMAGES_FILE LABELS_FILE: one fuzz_idx input.
seed() {
    n=$(wc -c <"$4")
    {
        byte "$2" "$3" $((n >> 8 & 255)) $((n & 255))
        cat "$4" "$5"
    } >"$idx/$1"
}

# A Fashion-MNIST-like pair: 2 images of 28 × 28 (one dark, one light),
# labels 3 and 7.
{
    idx_header 8 2 28 28
    fill 784 000
    fill 784 200
} >"$tmp/fm-images"
{
    idx_header 8 2
    byte 3 7
} >"$tmp/fm-labels"
gzip -n -9 -c "$tmp/fm-images" >"$tmp/fm-images.gz"
gzip -n -9 -c "$tmp/fm-labels" >"$tmp/fm-labels.gz"
seed valid-fmnist-2x28x28-raw 0 10 "$tmp/fm-images" "$tmp/fm-labels"
seed valid-fmnist-2x28x28-auto-classes 0 0 "$tmp/fm-images" "$tmp/fm-labels"
seed valid-fmnist-2x28x28-harness-gzip 3 10 "$tmp/fm-images" "$tmp/fm-labels"
seed valid-fmnist-2x28x28-gzip-files 0 10 "$tmp/fm-images.gz" "$tmp/fm-labels.gz"
seed valid-fmnist-images-gzip-only 1 10 "$tmp/fm-images" "$tmp/fm-labels"
# Injected allocation failures: the 1st, 2nd, 3rd allocation of each load.
seed alloc-fail-1 4 10 "$tmp/fm-images" "$tmp/fm-labels"
seed alloc-fail-2 8 10 "$tmp/fm-images" "$tmp/fm-labels"
seed alloc-fail-3 12 10 "$tmp/fm-images" "$tmp/fm-labels"
seed alloc-fail-2-gzip 11 10 "$tmp/fm-images" "$tmp/fm-labels"

# Small shapes: 3 × 2 × 2, and a 4-dimensional 2 × 2 × 2 × 3.
{
    idx_header 8 3 2 2
    byte 0 64 128 255 1 2 3 4 5 6 7 8
} >"$tmp/small-images"
{
    idx_header 8 3
    byte 0 1 2
} >"$tmp/small-labels"
seed valid-3x2x2 0 3 "$tmp/small-images" "$tmp/small-labels"
{
    idx_header 8 2 2 2 3
    fill 24 021
} >"$tmp/4d-images"
{
    idx_header 8 2
    byte 1 0
} >"$tmp/4d-labels"
seed valid-4d 2 0 "$tmp/4d-images" "$tmp/4d-labels"

# Larger than the reader's first 64 KiB data chunk: 100 images of 28 × 28
# (78,400 bytes) raw, so the buffer doubles; the harness gzips it, which
# keeps the input small.
{
    idx_header 8 100 28 28
    fill 78400 001
} >"$tmp/big-images"
{
    idx_header 8 100
    fill 100 011
} >"$tmp/big-labels"
gzip -n -9 -c "$tmp/big-images" >"$tmp/big-images.gz"
gzip -n -9 -c "$tmp/big-labels" >"$tmp/big-labels.gz"
seed valid-100x28x28-gzip-files 0 10 "$tmp/big-images.gz" "$tmp/big-labels.gz"

# One seed per kind of malformed file (the images file unless named).
bad() { # bad NAME IMAGES_BYTES_FILE [LABELS_FILE]
    seed "$1" 0 10 "$2" "${3:-$tmp/small-labels}"
}
: >"$tmp/empty"
bad error-images-empty "$tmp/empty"
byte 0 0 8 >"$tmp/x"
bad error-short-magic "$tmp/x"
{ byte 1 0 8 3; be32 3; be32 2; be32 2; } >"$tmp/x"
bad error-bad-magic "$tmp/x"
{ byte 0 0 9 3; be32 3; be32 2; be32 2; } >"$tmp/x"
bad error-dtype-not-ubyte "$tmp/x"
{ idx_header 8 3; byte 0 1 2; } >"$tmp/x"
bad error-images-one-dim "$tmp/x"
{ idx_header 8 3 2; } >"$tmp/x"
bad error-labels-two-dims "$tmp/small-images" "$tmp/x"
{ byte 0 0 8 3; be32 3; be32 2; } >"$tmp/x"
bad error-header-ends-in-dims "$tmp/x"
{ idx_header 8 3 0 2; } >"$tmp/x"
bad error-zero-dimension "$tmp/x"
{ idx_header 8 3 65536 65536; } >"$tmp/x"
bad error-features-overflow "$tmp/x"
{ idx_header 8 4294967295 2147483647 1; } >"$tmp/x"
idx_header 8 4294967295 >"$tmp/y"
bad error-declares-exabytes "$tmp/x" "$tmp/y"
{ idx_header 8 1000000 28 28; fill 100 001; } >"$tmp/x"
{ idx_header 8 1000000; fill 100 001; } >"$tmp/y"
bad error-declares-gigabytes "$tmp/x" "$tmp/y"
{ cat "$tmp/small-images"; byte 9; } >"$tmp/x"
bad error-trailing-byte "$tmp/x"
{ idx_header 8 3 2 2; fill 11 001; } >"$tmp/x"
bad error-short-data "$tmp/x"
{ idx_header 8 4; byte 0 1 2 3; } >"$tmp/x"
bad error-count-mismatch "$tmp/small-images" "$tmp/x"
{ idx_header 8 3; byte 0 1 10; } >"$tmp/x"
bad error-label-not-below-classes "$tmp/small-images" "$tmp/x"
head -c 30 "$tmp/fm-images.gz" >"$tmp/x"
bad error-gzip-truncated "$tmp/x" "$tmp/fm-labels"
{ head -c 12 "$tmp/fm-images.gz"; fill 20 377; tail -c +33 "$tmp/fm-images.gz"; } >"$tmp/x"
bad error-gzip-corrupt "$tmp/x" "$tmp/fm-labels"
{ cat "$tmp/fm-images.gz"; byte 1 2 3; } >"$tmp/x"
bad gzip-trailing-garbage "$tmp/x" "$tmp/fm-labels"

# ---- fuzz_train_options: the README's examples, then each kind of error.
# opt NAME RANKS ARG...: one input (the arguments joined by newlines).
opt() {
    name=$1
    ranks=$2
    shift 2
    {
        byte $((ranks - 1))
        sep=""
        for a in "$@"; do
            printf '%s%s' "$sep" "$a"
            sep='
'
        done
    } >"$opts/$name"
}
opt defaults 1
opt help 1 --help
opt readme-one-process 1 --quiet --epochs 2
opt readme-dp4 4 --threads 1
opt readme-uneven-shards 2 --batch 256 --shards 100,156
opt readme-pipeline 2 --threads 1 --pp 2 --micro-batches 8
opt readme-dp2-pp2 4 --threads 1 --dp 2 --pp 2 --shards 160,96
opt readme-dp2-pp2-batch256 4 --threads 1 --dp 2 --pp 2 --batch 256 --shards 160,96
opt every-flag 2 --data /tmp/d --layers 64,32 --batch 64 --lr 0.1 --momentum 0.5 \
    --weight-decay 1e-4 --steps 10 --seed 7 --shuffle off --threads 2 --init-params a.bin \
    --save-params b.bin --progress 0 --eval-every 1 --shards 30,34 --shard-min 1,2 \
    --shard-max 40,40 --bucket-mb 0.5 --policy proportional --rebalance-every 5 \
    --policy-file q.bin --emulate-slowdown 1:2@3-9 --telemetry t.jsonl --trace t.json --quiet
opt equals-form 1 --batch=32 --layers=16 --lr=0.01 --schedule=gpipe
opt pipeline-stages 2 --layers 8 --stages 0-1,2-2 --schedule gpipe --micro-batches 4
opt stage-plan 2 --layers 8,8 --pp 2 --stages-at 10:0-1,2-4 --stages-at 20:0-2,3-4 \
    --repartition-horizon 50 --repartition-threshold 0.1 --policy bandit
opt checkpoints 1 --checkpoint-dir ck --checkpoint-every 5 --keep 2 --resume
opt slowdowns 4 --emulate-slowdown 0:1.5 --emulate-slowdown 3:4@100 --policy rl
opt error-unknown-option 1 --bogus
opt error-short-option 1 -xy
opt error-missing-value 1 --quiet --data
opt error-stray-argument 1 --batch 8 extra
opt error-double-dash 1 -- --batch
opt error-batch-not-integer 1 --batch 12x
opt error-batch-outside 1 --batch 0
opt error-batch-huge 1 --batch 99999999999999999999
opt error-lr-nan 1 --lr nan
opt error-lr-zero 1 --lr 0
opt error-momentum-one 1 --momentum 1.0
opt error-weight-decay 1 --weight-decay 1.5
opt error-layers-empty 1 --layers=
opt error-layers-double-comma 1 --layers 256,,128
opt error-layers-trailing-comma 1 --layers 256,
opt error-layers-width 1 --layers 1000001
opt error-shuffle 1 --shuffle maybe
opt error-epochs-and-steps 1 --epochs 2 --steps 10
opt error-seed-hex 1 --seed 0x10
opt error-threads 1 --threads 1025
opt error-pp-zero 1 --pp 0
opt error-pp-too-many 1 --layers 8 --pp 4
opt error-schedule 1 --schedule 1F1B
opt error-stages-gap 1 --layers 8 --stages 0-1,1-2
opt error-stages-short 1 --layers 8 --stages 1-2
opt error-stages-trailing-comma 1 --layers 8 --stages 0-1,
opt error-stages-vs-pp 1 --layers 8 --stages 0-1,2-2 --pp 3
opt error-stages-at-order 2 --layers 8 --pp 2 --stages-at 20:0-1,2-2 --stages-at 10:0-1,2-2
opt error-stages-at-no-pp 1 --stages-at 10:0-1,2-4
opt error-stages-at-form 2 --pp 2 --stages-at x:0-1
opt error-slowdown-form 2 --emulate-slowdown 1x2
opt error-slowdown-factor 2 --emulate-slowdown 1:0.5
opt error-slowdown-range 2 --emulate-slowdown 1:2@9-3
opt error-resume-without-dir 1 --resume
opt error-micro-batches 1 --micro-batches 32768
opt error-policy 1 --policy greedy
opt error-bucket-mb 1 --bucket-mb 0
# check_ranks: each rank-dependent error.
opt ranks-pp-not-dividing 3 --pp 2
opt ranks-dp-times-pp 4 --dp 3 --pp 2
opt ranks-shards-count 3 --batch 8 --shards 4,4
opt ranks-shards-sum 2 --batch 8 --shards 4,5
opt ranks-shard-caps 2 --batch 8 --shard-min 5,5
opt ranks-shard-min-above-max 2 --shard-min 9,0 --shard-max 8,128
opt ranks-slowdown-rank 2 --emulate-slowdown 5:2
# Inputs that crashed fuzz_train_options, fixed since: --stages and
# --stages-at with a range ending at INT_MAX (hi + 1 overflowed int), the
# first as the fuzzer found it.
printf 's\n0-8\000--stages\n0-8\000--stages\n0-2147483647\n0-80-8\000' \
    >"$opts/regression-stages-int-max-found"
opt regression-stages-int-max 1 --layers 8 --stages 0-2147483647
opt regression-stages-at-int-max 2 --layers 8 --pp 2 --stages-at 2:0-0,1-2147483647
# A short error buffer (bit 4 of the first byte): messages are cut.
{ byte 16; printf '%s\n%s' --batch nonsense-value-that-is-long; } >"$opts/short-error-buffer"
echo "make_corpus: $(find "$idx" -type f | wc -l) fuzz_idx and" \
    "$(find "$opts" -type f | wc -l) fuzz_train_options" \
    "seeds under $out"
