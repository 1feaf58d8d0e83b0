#!/bin/sh
# GPT-2 checkpoints end to end (tests/gpt_tests.cmake). COMMAND is a whole
# ballast-train --model gpt2 command line (a launcher first, or none for one
# process); this script adds the checkpoint flags and --save-model.
#
#   gpt_checkpoint.sh kill WORKDIR REFERENCE RANK:STEP EVERY -- COMMAND...
#     Trains with a checkpoint every EVERY steps and RANK killed with
#     SIGKILL after STEP (the BALLAST_TEST_KILL_AT hook), then resumes with
#     --resume; the resumed run's model file must equal REFERENCE bit for
#     bit (and its user layers' file REFERENCE.layers, where that exists). Prints "gpt-checkpoint: killed at RANK:STEP, resumed from step
#     N: equal bit for bit". The checkpoints stay in WORKDIR/ckpt.
#   gpt_checkpoint.sh damage SOURCE WORKDIR -- COMMAND...
#     Copies the checkpoint directory SOURCE to WORKDIR/ckpt, truncates the
#     newest checkpoint's lm.bin to half its size and flips a byte in the
#     middle of the next one's, then resumes (its log is printed, for the
#     caller's regexes) into WORKDIR/final.bin.
#   gpt_checkpoint.sh shard HOW SOURCE WORKDIR -- COMMAND...
#     The same with the newest checkpoint's last stage file (stage-K-of-S.bin,
#     K = S - 1) damaged by HOW: missing (removed), truncated (to half its
#     size), flipped (a byte in its middle), grown (a byte appended: the
#     manifest's record of its length no longer matches) or swapped (the
#     next checkpoint's file of the same stage in its place: the same
#     length, but the manifest's CRC32 of its units no longer matches).
# Exits 0, or 1 saying what failed (with the run's log).
set -u
mode=$1
shift

# The last line of the run's log that says where it resumed from.
resumed_step() {
    sed -n 's/.*resumed from .*ckpt-0*\([0-9][0-9]*\) at step.*/\1/p' "$1" | tail -n 1
}

case $mode in
kill)
    work=$1
    ref=$2
    kill=$3
    every=$4
    shift 5 # past "--"
    rm -rf "$work"
    mkdir -p "$work"
    BALLAST_TEST_KILL_AT=$kill "$@" --checkpoint-dir "$work/ckpt" --checkpoint-every "$every" \
        --save-model "$work/final.bin" >"$work/killed.log" 2>&1
    code=$?
    if [ "$code" -eq 0 ] || [ -e "$work/final.bin" ]; then
        echo "gpt-checkpoint: the run to kill at $kill ended (exit $code) instead of dying"
        cat "$work/killed.log"
        exit 1
    fi
    if ! BALLAST_LOG=info "$@" --checkpoint-dir "$work/ckpt" --checkpoint-every "$every" \
        --resume --save-model "$work/final.bin" >"$work/resumed.log" 2>&1; then
        echo "gpt-checkpoint: the resumed run failed:"
        cat "$work/resumed.log"
        exit 1
    fi
    from=$(resumed_step "$work/resumed.log")
    if [ -z "$from" ]; then
        echo "gpt-checkpoint: the second run did not resume:"
        cat "$work/resumed.log"
        exit 1
    fi
    # With user layers, their parameters' file too.
    if ! cmp -s "$work/final.bin" "$ref" ||
        { [ -e "$ref.layers" ] && ! cmp -s "$work/final.bin.layers" "$ref.layers"; }; then
        echo "gpt-checkpoint: killed at $kill, resumed from step $from: DIFFERS from $ref"
        exit 1
    fi
    echo "gpt-checkpoint: killed at $kill, resumed from step $from: equal bit for bit"
    ;;
damage)
    src=$1
    work=$2
    shift 3 # past "--"
    rm -rf "$work"
    mkdir -p "$work"
    cp -r "$src" "$work/ckpt" || exit 1
    set -- "$@" --checkpoint-dir "$work/ckpt" --resume --save-model "$work/final.bin"
    # ckpt-<step> names sort by step (fixed width).
    newest=$(ls -d "$work"/ckpt/ckpt-* | sort | tail -n 1)
    next=$(ls -d "$work"/ckpt/ckpt-* | sort | tail -n 2 | head -n 1)
    if [ "$newest" = "$next" ]; then
        echo "gpt-checkpoint: $src holds fewer than 2 checkpoints"
        exit 1
    fi
    bytes=$(wc -c <"$newest/lm.bin")
    truncate -s $((bytes / 2)) "$newest/lm.bin" || exit 1
    bytes=$(wc -c <"$next/lm.bin")
    old=$(dd if="$next/lm.bin" bs=1 skip=$((bytes / 2)) count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
    printf "\\$(printf '%03o' $(((old + 1) % 256)))" |
        dd of="$next/lm.bin" bs=1 seek=$((bytes / 2)) conv=notrunc 2>/dev/null || exit 1
    echo "gpt-checkpoint: truncated $(basename "$newest"), flipped a byte of $(basename "$next")"
    BALLAST_LOG=info "$@" 2>&1
    ;;
shard)
    how=$1
    src=$2
    work=$3
    shift 4 # past "--"
    rm -rf "$work"
    mkdir -p "$work"
    cp -r "$src" "$work/ckpt" || exit 1
    set -- "$@" --checkpoint-dir "$work/ckpt" --resume --save-model "$work/final.bin"
    newest=$(ls -d "$work"/ckpt/ckpt-* | sort | tail -n 1)
    next=$(ls -d "$work"/ckpt/ckpt-* | sort | tail -n 2 | head -n 1)
    stages=$(ls "$newest"/stage-0-of-*.bin 2>/dev/null | sed -n 's/.*-of-\([0-9]*\)[.]bin$/\1/p')
    file="$newest/stage-$((${stages:-1} - 1))-of-${stages:-1}.bin"
    if [ "$newest" = "$next" ] || [ ! -f "$file" ]; then
        echo "gpt-checkpoint: $src holds fewer than 2 checkpoints with stage files"
        exit 1
    fi
    bytes=$(wc -c <"$file")
    case $how in
    missing) rm -f "$file" ;;
    truncated) truncate -s $((bytes / 2)) "$file" ;;
    flipped)
        old=$(dd if="$file" bs=1 skip=$((bytes / 2)) count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
        printf "\\$(printf '%03o' $(((old + 1) % 256)))" |
            dd of="$file" bs=1 seek=$((bytes / 2)) conv=notrunc 2>/dev/null
        ;;
    grown) printf 'x' >>"$file" ;;
    swapped) cp "$next/$(basename "$file")" "$file" ;;
    *)
        echo "gpt-checkpoint: unknown damage '$how'" >&2
        exit 2
        ;;
    esac || exit 1
    echo "gpt-checkpoint: $how $(basename "$newest")/$(basename "$file")"
    BALLAST_LOG=info "$@" 2>&1
    ;;
*)
    echo "usage: gpt_checkpoint.sh kill|damage|shard ..." >&2
    exit 2
    ;;
esac
