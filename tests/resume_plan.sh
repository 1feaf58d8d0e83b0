#!/bin/sh
# A resume continues the saved plan, bit for bit. Under a policy, with
# modelled step times (BALLAST_TEST_MODELLED_TIME) so that its decisions
# repeat run to run, a 40-step job on 2 ranks is run three ways:
#   1. uninterrupted, the reference;
#   2. stopped after step 12 and after step 26, each time resumed with the
#      same command line;
#   3. killed with SIGKILL after step 17 (ballast-train's
#      BALLAST_TEST_KILL_AT hook) and resumed from its checkpoint of step 15.
# Every run is given the same starting plan (FLAGS: --shards or --stages),
# which a resume must not fall back to. 2 and 3 must end with the
# reference's parameters bit for bit, and every step they ran must have
# run the reference's plan: the same plan version, shards and stage map
# (from the telemetry). The reference's plan must have changed, or the
# check would prove nothing.
#   resume_plan.sh TRAIN DATA WORKDIR POLICY FLAGS...
# Prints "resume-plan: POLICY: N plan changes (S of the shards, M of the
# stage map); stop-resume equal; kill-resume equal" and exits 0, or says
# what differs and exits 1.
set -u
train=$1
data=$2
work=$3
policy=$4
shift 4
. "$(dirname "$0")/dp_job.sh"
export BALLAST_TEST_MODELLED_TIME=1e-7
rm -rf "$work"
mkdir -p "$work"
# Rank 1 is 3x slower until step 13, then rank 0 is 2x slower: the plan
# moves at the start and again after the change.
run="$dp_flags --quiet --policy $policy --rebalance-every 4 --emulate-slowdown 1:3@0-13
    --emulate-slowdown 0:2@14 $*"

fail() {
    echo "resume-plan: $policy: $1"
    [ -n "${2:-}" ] && cat "$2"
    exit 1
}

# job NAME STEPS [FLAGS...]: one run (with $job_env in its environment),
# its log in NAME.log and its telemetry in NAME.jsonl.
job_env=BALLAST_LOG=info
job() {
    name=$1
    steps=$2
    shift 2
    # shellcheck disable=SC2086
    env $job_env mpirun -np 2 --oversubscribe "$train" $run --steps "$steps" \
        --telemetry "$work/$name.jsonl" "$@" >"$work/$name.log" 2>&1
}

# The plan of every step in a telemetry file: step, version, shards, map.
plans() {
    jq -c '[.step, .plan_version, .shards, .stage_first]' "$@"
}

job ref 40 --save-params "$work/ref.bin" || fail "the uninterrupted run failed" "$work/ref.log"
changes=$(plans "$work/ref.jsonl" | jq -s '[.[][1]] | unique | length - 1')
shards=$(plans "$work/ref.jsonl" | jq -s '[.[][2]] | unique | length - 1')
maps=$(plans "$work/ref.jsonl" | jq -s '[.[][3]] | unique | length - 1')
[ "$changes" -gt 0 ] || fail "the reference's plan never changed"

# 2. Stop and resume twice.
ck="--checkpoint-dir $work/stop"
job stop1 13 $ck || fail "the first part failed" "$work/stop1.log"
job stop2 27 $ck --resume || fail "the second part failed" "$work/stop2.log"
job stop3 40 $ck --resume --save-params "$work/stop.bin" ||
    fail "the last part failed" "$work/stop3.log"
cmp -s "$work/stop.bin" "$work/ref.bin" || fail "stop-resume: the parameters differ"
plans "$work/stop1.jsonl" "$work/stop2.jsonl" "$work/stop3.jsonl" >"$work/stop.plans"
plans "$work/ref.jsonl" >"$work/ref.plans"
cmp -s "$work/stop.plans" "$work/ref.plans" ||
    { diff "$work/ref.plans" "$work/stop.plans" | head -20; fail "stop-resume: the plans differ"; }

# 3. Kill and resume.
ck="--checkpoint-dir $work/kill --checkpoint-every 5"
job_env="BALLAST_LOG=info BALLAST_TEST_KILL_AT=1:17"
job kill1 40 $ck && fail "the killed run did not die"
job_env=BALLAST_LOG=info
job kill2 40 $ck --resume --save-params "$work/kill.bin" ||
    fail "the resumed run failed" "$work/kill2.log"
grep -q "resumed from .*ckpt-000000000015 at step 15" "$work/kill2.log" ||
    fail "the run did not resume from step 15" "$work/kill2.log"
cmp -s "$work/kill.bin" "$work/ref.bin" || fail "kill-resume: the parameters differ"
plans "$work/kill2.jsonl" >"$work/kill.plans"
tail -n 25 "$work/ref.plans" | cmp -s - "$work/kill.plans" ||
    { tail -n 25 "$work/ref.plans" | diff - "$work/kill.plans" | head -20;
      fail "kill-resume: the plans differ"; }
echo "resume-plan: $policy: $changes plan changes ($shards of the shards, $maps of the stage" \
    "map); stop-resume equal; kill-resume equal"
