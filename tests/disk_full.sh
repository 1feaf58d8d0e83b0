#!/bin/sh
# Disk full, for real: checkpoints go to a 40 KiB tmpfs that holds one
# checkpoint of the dp tests' 25-step job (about 28 KiB) but not two. The
# second save (step 8) must fail naming the file and the cause, leave no
# temporary directory behind, and leave the first checkpoint valid: a run
# resumed from it (copied to a disk with room) ends bit for bit where an
# uninterrupted run ends (REFERENCE). Exits 77 (ctest: skipped) when a
# tmpfs cannot be mounted here (not root, no mount permission).
#   disk_full.sh TRAIN DATA WORKDIR REFERENCE
set -u
train=$1
data=$2
work=$3
ref=$4
. "$(dirname "$0")/dp_job.sh"
run="$dp_flags --steps 25 --quiet"
umount "$work/fs" 2>/dev/null
rm -rf "$work"
mkdir -p "$work/fs"
[ "$(id -u)" = 0 ] || {
    echo "disk-full test skipped: not root"
    exit 77
}
mount -t tmpfs -o size=40k tmpfs "$work/fs" 2>"$work/mount.log" || {
    echo "disk-full test skipped: cannot mount a tmpfs: $(cat "$work/mount.log")"
    exit 77
}
trap 'umount "$work/fs" 2>/dev/null' EXIT
fail() {
    echo "disk-full test FAILED: $1"
    [ -n "${2:-}" ] && cat "$2"
    exit 1
}
# shellcheck disable=SC2086
mpirun -np 2 --oversubscribe "$train" $run --checkpoint-dir "$work/fs/ckpt" \
    --checkpoint-every 4 >"$work/full.log" 2>&1 && fail "the job did not fail on a full disk" \
    "$work/full.log"
grep -q "stage-0.bin: writing failed: No space left on device" "$work/full.log" ||
    fail "the error does not name the file and the cause" "$work/full.log"
echo "disk-full: $(grep -o 'checkpoint [^ ]*stage-0.bin: writing failed: No space left on device' \
    "$work/full.log" | sed 's|.*/\.tmp|.tmp|')"
left=$(ls -A "$work/fs/ckpt")
[ "$left" = "ckpt-000000000004" ] || fail "the checkpoint directory holds: $left"
echo "disk-full: left behind: $left"
cp -r "$work/fs/ckpt" "$work/copy"
# shellcheck disable=SC2086
mpirun -np 2 --oversubscribe "$train" $run --checkpoint-dir "$work/copy" --resume \
    --save-params "$work/resumed.bin" >"$work/resume.log" 2>&1 ||
    fail "the run resumed from the checkpoint before the full disk failed" "$work/resume.log"
cmp -s "$work/resumed.bin" "$ref" || fail "the resumed run's parameters differ"
echo "disk-full: the previous checkpoint resumes to the uninterrupted run's parameters"
