#!/bin/sh
# Helpers of the GPT-2 device tests (tests/gpt_device_tests.cmake).
#
#   gpt_device.sh log FILE -- COMMAND...
#     Runs COMMAND with its stdout and stderr in FILE, then prints FILE and
#     exits with COMMAND's status, so that expect.sh matches the output and
#     the log stays for a later comparison.
#   gpt_device.sh same-val-loss LOG_A LOG_B
#     Prints "val_loss: A | B", the val_loss values of the two logs (their
#     eval lines and the summary, in order), and exits 0 when both logs have
#     them and they are equal, else 1.
set -u
mode=$1
shift

case $mode in
log)
    file=$1
    shift 2 # past "--"
    "$@" >"$file" 2>&1
    code=$?
    cat "$file"
    exit "$code"
    ;;
same-val-loss)
    a=$(grep -o 'val_loss=[^ ]*' "$1" | tr '\n' ' ')
    b=$(grep -o 'val_loss=[^ ]*' "$2" | tr '\n' ' ')
    echo "val_loss: $a| $b"
    [ -n "$a" ] && [ "$a" = "$b" ]
    exit $?
    ;;
*)
    echo "usage: gpt_device.sh log FILE -- COMMAND... | same-val-loss LOG_A LOG_B" >&2
    exit 2
    ;;
esac
