#!/bin/sh
# The warm-up is not observed, at start and after a resume. With measured
# step times (no test hook), a 2-rank job whose rank 1 is emulated 2x
# slower runs 12 steps under POLICY, deciding every step, and is resumed
# from its checkpoint to step 24. A decision sees the records of the step
# before it, so the decisions at steps 0-3 of the first run see only its
# warm-up (steps 0-2, BL_CONTROL_WARMUP_STEPS = 3), and so do those at
# steps R+1 to R+3 of the resumed run (R: its first step; the decision at
# R itself sees the records in flight at the save, which were measured
# before it). Those decisions must hold the plan and raise no straggler
# alert; and the policy must have moved the plan after the warm-up of the
# first run, or the check would prove nothing.
#   resume_warmup.sh TRAIN DATA WORKDIR POLICY
# Prints "resume-warmup: POLICY: no move and no alert in either warm-up;
# N plan changes after it" and exits 0, or says what happened and exits 1.
set -u
train=$1
data=$2
work=$3
policy=$4
warmup=3
. "$(dirname "$0")/dp_job.sh"
rm -rf "$work"
mkdir -p "$work"
run="$dp_flags --quiet --policy $policy --rebalance-every 1 --emulate-slowdown 1:2
    --checkpoint-dir $work/ck"

fail() {
    echo "resume-warmup: $policy: $1"
    [ -n "${2:-}" ] && cat "$2"
    exit 1
}

# job NAME STEPS [FLAGS...]: one run, its log in NAME.log and its
# telemetry in NAME.jsonl.
job() {
    name=$1
    steps=$2
    shift 2
    # shellcheck disable=SC2086
    BALLAST_LOG=info mpirun -np 2 --oversubscribe "$train" $run --steps "$steps" \
        --telemetry "$work/$name.jsonl" "$@" >"$work/$name.log" 2>&1 </dev/null
}

# warm_acts FILE FIRST LAST: the steps from FIRST to LAST that moved the
# plan or raised an alert, one JSON line each.
warm_acts() {
    jq -c --argjson a "$2" --argjson b "$3" \
        'select(.step >= $a and .step <= $b and
                ((.decision.changed // 0) == 1 or ((.events // []) | length) > 0))
         | {step, decision, events}' "$1"
}

job start 12 || fail "the first run failed" "$work/start.log"
job resumed 24 --resume || fail "the resumed run failed" "$work/resumed.log"
grep -q "resume:" "$work/resumed.log" || fail "the second run did not resume" "$work/resumed.log"
first=$(jq -s 'map(.step) | min' "$work/resumed.jsonl")
[ "$first" -gt 0 ] || fail "the resumed run started at step $first"
acts=$(warm_acts "$work/start.jsonl" 0 "$warmup")
[ -z "$acts" ] || fail "the start's warm-up acted: $acts"
acts=$(warm_acts "$work/resumed.jsonl" "$((first + 1))" "$((first + warmup))")
[ -z "$acts" ] || fail "the warm-up after the resume at step $first acted: $acts"
moves=$(jq -s --argjson b "$warmup" \
    'map(select(.step > $b and (.decision.changed // 0) == 1)) | length' "$work/start.jsonl")
[ "$moves" -gt 0 ] || fail "the policy never moved the plan after the warm-up"
echo "resume-warmup: $policy: no move and no alert in either warm-up; $moves plan changes after it"
