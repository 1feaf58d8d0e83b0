#!/bin/sh
# Kill and resume: trains the 25-step job of the dp tests on 2 ranks with a
# checkpoint every 3 steps; a seeded random rank is killed with SIGKILL at
# a seeded random step (ballast-train's BALLAST_TEST_KILL_AT hook), the job
# is resumed with --resume, and so on (up to KILLS kills a trial) until it
# finishes; its final parameters must equal REFERENCE bit for bit.
#   kill_resume.sh TRAIN DATA WORKDIR REFERENCE TRIALS FIRST_SEED KILLS
# Prints one line per trial and "kill-resume: N trials, M kills, 0 diverged".
set -u
train=$1
data=$2
work=$3
ref=$4
trials=$5
seed=$6
kills=$7
. "$(dirname "$0")/dp_job.sh"
run="$dp_flags --steps 25 --quiet"
total=0
diverged=0
t=0
while [ "$t" -lt "$trials" ]; do
    dir=$work/trial-$t
    rm -rf "$dir"
    mkdir -p "$dir"
    # This trial's kills: a rank in 0..1 and an ascending step in 1..23.
    plan=$(awk -v s=$((seed + t)) -v k="$kills" 'BEGIN {
        srand(s); step = 0
        for (i = 0; i < k && step < 22; i++) {
            step += 1 + int(rand() * 10); if (step > 23) step = 23
            printf "%d:%d ", int(rand() * 2), step
        } }')
    done_run=0
    n=0
    for kill in $plan; do
        # shellcheck disable=SC2086
        BALLAST_TEST_KILL_AT=$kill mpirun -np 2 --oversubscribe "$train" $run \
            --checkpoint-dir "$dir/ckpt" --checkpoint-every 3 --resume \
            --save-params "$dir/final.bin" >"$dir/run-$n.log" 2>&1
        code=$?
        n=$((n + 1))
        if [ "$code" -eq 0 ]; then
            done_run=1 # the kill came at or after the end: nothing to resume
            break
        fi
        total=$((total + 1))
    done
    if [ "$done_run" -eq 0 ]; then
        # shellcheck disable=SC2086
        mpirun -np 2 --oversubscribe "$train" $run --checkpoint-dir "$dir/ckpt" \
            --checkpoint-every 3 --resume --save-params "$dir/final.bin" >"$dir/run-$n.log" 2>&1 ||
            { echo "kill-resume: trial $t: the last resume failed:"; cat "$dir/run-$n.log"; exit 1; }
    fi
    if cmp -s "$dir/final.bin" "$ref"; then
        echo "kill-resume: trial $t: kills $plan-> equal bit for bit"
    else
        echo "kill-resume: trial $t: kills $plan-> DIVERGED"
        diverged=$((diverged + 1))
    fi
    t=$((t + 1))
done
echo "kill-resume: $trials trials, $total kills, $diverged diverged"
[ "$diverged" -eq 0 ]
