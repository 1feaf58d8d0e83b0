#!/bin/sh
# same_bytes.sh same|differ FILE_A FILE_B
#
# Succeeds when both files exist, are not empty, and are byte-identical
# (same) or not (differ). Prints why on failure.
set -u

if [ $# -ne 3 ] || { [ "$1" != same ] && [ "$1" != differ ]; }; then
    echo "usage: same_bytes.sh same|differ FILE_A FILE_B" >&2
    exit 2
fi
mode=$1
a=$2
b=$3
for f in "$a" "$b"; do
    if [ ! -f "$f" ] || [ ! -s "$f" ]; then
        echo "same_bytes.sh: $f is missing or empty" >&2
        exit 1
    fi
done
if cmp -s "$a" "$b"; then
    identical=1
else
    identical=0
fi
if [ "$mode" = same ] && [ $identical -eq 0 ]; then
    echo "same_bytes.sh: $a ($(wc -c <"$a") bytes) and $b ($(wc -c <"$b") bytes) differ:" >&2
    cmp "$a" "$b" >&2
    exit 1
fi
if [ "$mode" = differ ] && [ $identical -eq 1 ]; then
    echo "same_bytes.sh: $a and $b are identical, expected them to differ" >&2
    exit 1
fi
exit 0
