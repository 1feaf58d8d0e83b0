# Sourced by the scripts that interrupt the dp tests' job (kill_resume.sh,
# signal_mpirun.sh, disk_full.sh, slurm_test.sh) after they set $data, the
# dataset directory: lets mpirun run as root and sets $dp_flags to that
# job's flags (the 64-32-16-4 MLP of cli_dp_even2, whose parameters are
# their reference), without --steps, which each script adds.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
dp_flags="--data $data --layers 32,16 --batch 32 --lr 0.05 --momentum 0.9 --weight-decay 0.0001"
