#!/bin/sh
# Slurm end to end on a local single-node Slurm (slurm/local-cluster.sh):
#  1. srun -n 2 ballast-train completes and its parameters equal the
#     mpirun -np 2 run of the same config (REFERENCE, 25 steps);
#  2. an sbatch job (slurm/dp.sbatch on 2 tasks) runs to completion and its
#     output file holds the summary;
#  3. preemption: a longer sbatch job signalled with SIGUSR1 mid-run (as
#     --signal does before the time limit) checkpoints, exits 3, requeues
#     itself, resumes and finishes with parameters equal to an uninterrupted
#     mpirun run, bit for bit;
#  4. slurm/gpt2.sbatch trains a small GPT-2 to completion and writes its
#     model.
# Exits 77 (ctest: skipped) with the reason when no local Slurm can start
# here (not root, slurm-wlm/munge missing, daemons refused).
#   slurm_test.sh ROOT TRAIN DATA WORK REFERENCE
set -u
root=$1
train=$2
data=$3
work=$4
ref=$5
skip() {
    echo "slurm test skipped: $*"
    exit 77
}
fail() {
    echo "slurm test FAILED: $*"
    [ -n "${2:-}" ] && [ -f "$2" ] && cat "$2"
    sh "$root/slurm/local-cluster.sh" stop "$work/cluster" >/dev/null 2>&1
    exit 1
}
[ "$(id -u)" = 0 ] || skip "not root"
command -v slurmctld >/dev/null 2>&1 || skip "slurm-wlm is not installed"
sh "$root/slurm/local-cluster.sh" stop "$work/cluster" >/dev/null 2>&1
rm -rf "$work"
mkdir -p "$work"
# Started bound to one core (as from a pinned shell): the node must still
# offer every CPU of the machine.
taskset -c 0 sh "$root/slurm/local-cluster.sh" start "$work/cluster" >"$work/start.log" 2>&1 ||
    skip "the local Slurm did not start: $(tail -n 3 "$work/start.log")"
export SLURM_CONF=$work/cluster/slurm.conf
machine=$(getconf _NPROCESSORS_ONLN)
node=$(sinfo -h -o %c | head -n 1)
[ "$node" = "$machine" ] || fail "the node offers $node CPUs but the machine has $machine"
# A job of 2 tasks needs 2 CPUs (the tests' jobs do not oversubscribe).
[ "$node" -ge 2 ] || skip "the machine has $node CPU; the jobs need 2"
echo "slurm test: the node offers the machine's $node CPUs ($(date +%T))"
. "$root/tests/dp_job.sh"
run=$dp_flags

# 1. srun.
# shellcheck disable=SC2086
# --immediate: an allocation that cannot be had within a minute fails with
# srun's reason instead of waiting until the test is killed.
srun --immediate=60 --mpi=pmix -n 2 "$train" $run --steps 25 --quiet --save-params "$work/srun.bin" \
    >"$work/srun.log" 2>&1 || fail "srun -n 2 failed" "$work/srun.log"
grep -q "^summary: steps=25 " "$work/srun.log" || fail "srun printed no summary" "$work/srun.log"
cmp -s "$work/srun.bin" "$ref" || fail "srun's parameters differ from mpirun's"
echo "slurm test: srun -n 2: summary printed, parameters equal mpirun -np 2's ($(date +%T))"

# wait_done JOB: until the job has completed, at most 180 s. A job that
# requeues itself passes through states that look final for a moment (the
# killed batch step is reported before the job is pending again), so a
# failed state counts only when it holds for 5 polls in a row. Every state
# seen goes to $work/states-JOB for the failure message.
wait_done() {
    i=0
    final=0
    while [ "$i" -lt 180 ]; do
        state=$(scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
        echo "$(date +%T) ${state:-unknown}" >>"$work/states-$1"
        case $state in
        COMPLETED) return 0 ;;
        FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL)
            final=$((final + 1))
            [ "$final" -lt 5 ] || return 1
            ;;
        PENDING)
            # A requeued job waits out Slurm's requeue delay; release it now.
            scontrol update JobId="$1" StartTime=now >/dev/null 2>&1
            final=0
            ;;
        *) final=0 ;;
        esac
        sleep 1
        i=$((i + 1))
    done
    return 1
}

# job_failed JOB OUTPUT: the failure message for a job that did not complete.
job_failed() {
    echo "states of job $1:"
    uniq -f1 "$work/states-$1" 2>/dev/null
    scontrol show job "$1" 2>/dev/null | grep -E 'JobState|Restarts|ExitCode'
    fail "the job $1 did not complete" "$2"
}

# 2. sbatch.
export BALLAST_HOME=$root BALLAST_TRAIN=$train
job=$(BALLAST_CKPT=$work/sbatch-ckpt BALLAST_ARGS="$run --steps 25 --quiet" \
    sbatch --parsable --ntasks=2 --output="$work/sbatch.out" "$root/slurm/dp.sbatch") ||
    fail "sbatch refused the job"
wait_done "$job" || job_failed "$job" "$work/sbatch.out"
grep -q "^summary: steps=25 " "$work/sbatch.out" || fail "no summary in the job's output" \
    "$work/sbatch.out"
echo "slurm test: sbatch job $job completed; its output holds the summary ($(date +%T))"

# 3. Preemption: rank 0 slowed 1000x (about 0.1 s a step here) over steps
# 0-60, so the signal sent once step 20 shows lands with seconds to spare
# however loaded the machine, and the resumed run is quick after step 60.
# shellcheck disable=SC2086
mpirun -np 2 --oversubscribe "$train" $run --steps 200 --quiet --save-params "$work/whole.bin" \
    >"$work/whole.log" 2>&1 || fail "the uninterrupted reference run failed" "$work/whole.log"
job=$(BALLAST_CKPT=$work/preempt-ckpt BALLAST_ARGS="$run --steps 200 --progress 0 \
--emulate-slowdown 0:1000@0-60 --save-params $work/preempted.bin" \
    sbatch --parsable --ntasks=2 --output="$work/preempt.out" "$root/slurm/dp.sbatch") ||
    fail "sbatch refused the preemption job"
i=0
until grep -q "^step [2-9][0-9]/200" "$work/preempt.out" 2>/dev/null; do
    sleep 0.2
    i=$((i + 1))
    [ "$i" -lt 600 ] || fail "the preemption job made no progress" "$work/preempt.out"
done
scancel --signal=USR1 "$job" || fail "scancel --signal=USR1 $job failed"
wait_done "$job" || job_failed "$job" "$work/preempt.out"
grep -q "stopped: after step [0-9]* by a signal" "$work/preempt.out" ||
    fail "the job was not stopped by the signal" "$work/preempt.out"
grep -q "requeueing" "$work/preempt.out" || fail "the job did not requeue" "$work/preempt.out"
grep -q "resumed from .*preempt-ckpt/ckpt-" "$work/preempt.out" ||
    fail "the requeued job did not resume" "$work/preempt.out"
cmp -s "$work/preempted.bin" "$work/whole.bin" ||
    fail "the preempted job's parameters differ from the uninterrupted run's" "$work/preempt.out"
echo "slurm test: job $job stopped by SIGUSR1, checkpointed, requeued, resumed; parameters equal"
echo "slurm test: $(grep -o 'stopped: after step [0-9]*' "$work/preempt.out")"
# 4. The GPT-2 script (slurm/gpt2.sbatch) on a small model and a Debian
# text: the job completes, prints its summary and writes the model file.
if [ -r /usr/share/games/fortunes/linux ]; then
    job=$(BALLAST_CKPT=$work/gpt2-ckpt BALLAST_TEXT=/usr/share/games/fortunes/linux \
        BALLAST_ARGS="--n-layer 2 --n-head 2 --n-embd 32 --seq-len 16 --batch 8 --steps 10 \
--warmup 2 --quiet --val-sequences 4 --save-model $work/gpt2.bin" \
        sbatch --parsable --ntasks=2 --output="$work/gpt2.out" "$root/slurm/gpt2.sbatch") ||
        fail "sbatch refused the GPT-2 job"
    wait_done "$job" || job_failed "$job" "$work/gpt2.out"
    grep -q "^summary: steps=10 tokens_per_s=" "$work/gpt2.out" ||
        fail "no GPT-2 summary in the job's output" "$work/gpt2.out"
    [ -s "$work/gpt2.bin" ] || fail "the GPT-2 job wrote no model file" "$work/gpt2.out"
    echo "slurm test: GPT-2 job $job completed: summary printed, model written ($(date +%T))"
fi
sh "$root/slurm/local-cluster.sh" stop "$work/cluster" >/dev/null 2>&1
echo "slurm test: ok"
