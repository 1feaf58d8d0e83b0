#!/bin/sh
# A signal to mpirun itself (not to a rank): Open MPI forwards SIGUSR1 to
# every rank, so the job agrees on a step, writes its checkpoint and exits
# 3; SIGTERM makes mpirun pass SIGTERM to the ranks and end the job, and
# the ranks still write their checkpoint first (mpirun's own status is then
# its own, not 3). Either way, resuming ends bit for bit where an
# uninterrupted run ends (REFERENCE: the 25-step job of the dp tests).
# Rank 0 is slowed so the signal, sent once step 2 shows, lands mid-run
# however loaded the machine: 1000x over steps 0-20 (about 0.1 s a step)
# for SIGUSR1, which Open MPI forwards at once; 3000x over every step for
# SIGTERM, which reaches the ranks only 1-2 s after mpirun gets it (Open
# MPI 4.1, measured: 11 to 20 steps of 0.1 s). The slowdown multiplies the
# measured compute, which on some virtual machines is milliseconds after a
# long sleep, so a step can take 10 s there; the ranks' handler stops the
# slowdowns (bl_interrupt_slowdowns), so once SIGTERM arrives the steps
# until they agree to stop run fast, within mpirun's 1 s grace.
#   signal_mpirun.sh TRAIN DATA WORKDIR REFERENCE SIGNAL
set -u
train=$1
data=$2
work=$3
ref=$4
sig=$5
. "$(dirname "$0")/dp_job.sh"
run="$dp_flags --steps 25"
fail() {
    echo "signal to mpirun FAILED: $1"
    [ -f "$work/run.log" ] && cat "$work/run.log"
    exit 1
}
rm -rf "$work"
mkdir -p "$work"
slow=0:1000@0-20
[ "$sig" = USR1 ] || slow=0:3000
# shellcheck disable=SC2086
mpirun -np 2 --oversubscribe "$train" $run --progress 0 --emulate-slowdown "$slow" \
    --checkpoint-dir "$work/ckpt" >"$work/run.log" 2>&1 &
pid=$!
i=0
until grep -q "^step [2-9]/25" "$work/run.log" 2>/dev/null; do
    sleep 0.1
    i=$((i + 1))
    [ "$i" -lt 600 ] || fail "the job made no progress"
done
kill "-$sig" "$pid"
wait "$pid"
code=$?
grep -q "^stopped: after step [0-9]* by a signal" "$work/run.log" ||
    fail "SIG$sig to mpirun did not stop the job at a step with a checkpoint (status $code)"
[ "$sig" != USR1 ] || [ "$code" -eq 3 ] || fail "SIGUSR1: mpirun exited $code, not 3"
echo "signal to mpirun: SIG$sig: $(grep -o '^stopped: after step [0-9]*' "$work/run.log"), status $code"
# shellcheck disable=SC2086
mpirun -np 2 --oversubscribe "$train" $run --quiet --checkpoint-dir "$work/ckpt" --resume \
    --save-params "$work/resumed.bin" >"$work/resume.log" 2>&1 || {
    cat "$work/resume.log"
    fail "the resumed run failed"
}
cmp -s "$work/resumed.bin" "$ref" || fail "the resumed run's parameters differ"
echo "signal to mpirun: SIG$sig: resumed run equals the uninterrupted one"
