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
#   gpt_device.sh close-val-loss LOG_A LOG_B RTOL
#     The same values, within |a - b| <= RTOL·|b| each (a GPU against its
#     CPU twin, tests/gpt_gpu_tests.cmake): prints "val_loss: A | B" and
#     the largest relative difference; exits 0 when both logs have as many
#     values, all finite and within, else 1.
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
close-val-loss)
    a=$(grep -o 'val_loss=[^ ]*' "$1" | tr '\n' ' ')
    b=$(grep -o 'val_loss=[^ ]*' "$2" | tr '\n' ' ')
    echo "val_loss: $a| $b"
    echo "$a|$b" | awk -F'|' -v r="$3" '{
        n = split($1, x, " "); m = split($2, y, " ")
        if (n == 0 || n != m) { printf "val_loss: %d and %d values\n", n, m; exit 1 }
        for (i = 1; i <= n; i++) {
            sub(/^val_loss=/, "", x[i]); sub(/^val_loss=/, "", y[i])
            if (x[i] !~ /^[0-9]+[.][0-9]+$/ || y[i] !~ /^[0-9]+[.][0-9]+$/ || y[i] + 0 == 0) {
                printf "val_loss: not a positive number: %s or %s\n", x[i], y[i]; exit 1
            }
            q = (x[i] - y[i]) / y[i]; q = q < 0 ? -q : q
            worst = q > worst ? q : worst
        }
        printf "val_loss: largest relative difference %.3g (limit %g)\n", worst, r
        exit !(worst <= r)
    }'
    exit $?
    ;;
*)
    echo "usage: gpt_device.sh log FILE -- COMMAND... | same-val-loss LOG_A LOG_B |" \
        "close-val-loss LOG_A LOG_B RTOL" >&2
    exit 2
    ;;
esac
