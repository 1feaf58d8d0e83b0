# The body of every ballast job script (sourced by the *.sbatch files):
# runs ballast-train with srun on the job's tasks, with checkpoints in a
# directory that survives requeues, resuming from the newest one; when the
# run stops on a signal (Slurm's --signal before the time limit, or
# preemption) it has written a checkpoint and exits 3, and the job requeues
# itself to continue later.
# Environment: BALLAST_TRAIN (ballast-train; default: on PATH),
# BALLAST_CKPT (the checkpoint directory; default
# $SLURM_SUBMIT_DIR/ballast-ckpt-$SLURM_JOB_ID, the same after a requeue),
# BALLAST_ARGS (more ballast-train flags). The layout flags come from the
# script sourcing this one, in $ballast_layout.
train=${BALLAST_TRAIN:-ballast-train}
ckpt=${BALLAST_CKPT:-${SLURM_SUBMIT_DIR:-.}/ballast-ckpt-${SLURM_JOB_ID:-local}}
echo "ballast job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}:" \
    "${SLURM_NTASKS:-?} tasks; checkpoints in $ckpt"
# shellcheck disable=SC2086
srun --mpi=pmix "$train" ${ballast_layout:-} ${BALLAST_ARGS:-} --checkpoint-dir "$ckpt" --resume
code=$?
if [ "$code" -eq 3 ]; then
    echo "ballast job ${SLURM_JOB_ID:-?}: stopped by a signal after a checkpoint; requeueing"
    scontrol requeue "${SLURM_JOB_ID}"
    exit 0
fi
exit "$code"
