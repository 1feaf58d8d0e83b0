#!/bin/sh
# expect.sh EXIT_CODE REGEX [REGEX...] -- COMMAND [ARGS...]
#
# Runs COMMAND and succeeds only when it exits with EXIT_CODE and its
# output (stdout and stderr together) matches every REGEX (POSIX extended,
# as grep -E; a line must match). A REGEX that starts with '!' must match
# no line instead. On failure prints what was expected, the exit code and
# the output, and exits 1; bad usage exits 2. A COMMAND that exits 77
# (ctest's skip code, when not the one expected) is passed through with its
# output: the test is skipped, not failed.
set -u
set -f # the regexes are split on newlines below: no pathname expansion

usage() {
    echo "usage: expect.sh EXIT_CODE REGEX [REGEX...] -- COMMAND [ARGS...]" >&2
    exit 2
}

[ $# -ge 3 ] || usage
want_code=$1
shift
case $want_code in
    '' | *[!0-9]*) usage ;;
esac

# The regexes, up to "--", are kept newline-separated (a regex holding a
# newline cannot be given).
regexes=
have_regex=0
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    regexes="$regexes$1
"
    have_regex=1
    shift
done
if [ $# -lt 2 ] || [ "$1" != "--" ] || [ $have_regex -eq 0 ]; then
    usage
fi
shift

out=$(mktemp "${TMPDIR:-/tmp}/expect.XXXXXX") || exit 2
trap 'rm -f "$out"' EXIT HUP INT TERM

"$@" >"$out" 2>&1
code=$?
if [ "$code" -eq 77 ] && [ "$want_code" -ne 77 ]; then
    cat "$out"
    exit 77
fi

failed=0
if [ "$code" -ne "$want_code" ]; then
    echo "expect.sh: exit code $code, expected $want_code" >&2
    failed=1
fi
old_ifs=$IFS
IFS='
'
for re in $regexes; do
    IFS=$old_ifs
    case $re in
        '!'*)
            if grep -E -q -e "${re#!}" "$out"; then
                echo "expect.sh: output matches /${re#!}/, which it must not" >&2
                failed=1
            fi
            ;;
        *)
            if ! grep -E -q -e "$re" "$out"; then
                echo "expect.sh: output does not match /$re/" >&2
                failed=1
            fi
            ;;
    esac
done
IFS=$old_ifs

if [ $failed -ne 0 ]; then
    echo "expect.sh: command:" "$@" >&2
    echo "---- output ----" >&2
    cat "$out" >&2
    echo "----------------" >&2
    exit 1
fi
exit 0
