#!/bin/sh
# A real straggler: rank 1 of a 2-rank ballast-train job runs in a cgroup
# held to 0.4 of a CPU core (bench/cpu_quota.sh), and ballast is not told.
# The proportional policy must move samples off rank 1, past its average
# speed: the runtime tells the policy rank 1's quota, and its CPU budget
# caps rank 1's shard where its CPU use per step meets the quota
# (partition/capacity.h; measured 31 of 256 on 2026-12-06, 40 to 55 on a
# noisier host on 2026-12-08, against an analytic 45), while a split by
# average speed would give it about 0.4 / 1.4 of the batch (73). In the
# telemetry's last step rank 1's shard is at most 60. The runtime finds the quota itself (the start-up warning names
# rank 1 and its 0.4 of a core), and the telemetry's cpu_s shows rank 1
# got at most 0.55 of the wall time in CPU over the run (0.4, plus slack
# for the time between steps that step_s leaves out). Speed is not
# asserted. Both ranks' cgroups weigh 8 times a
# plain process (cpu.shares 8192), so that other load on the machine
# (builds) slows neither rank much: without that, a rank 0 sharing its core
# gets half of it or less, and rank 1's 0.4 is then hardly a straggler.
# Exit 77 (a skip) when no cgroup can be made (not root, no cpu controller).
#   quota_straggler.sh TRAIN DATA WORKDIR [MPIRUN]
# Needs jq. Prints the shards at the first and the last step.
set -u
train=$1
data=$2
work=$3
mpirun=${4:-mpirun}
me=quota-straggler
quota_sh=$(cd "$(dirname "$0")/.." && pwd)/bench/cpu_quota.sh
command -v jq >/dev/null 2>&1 || { echo "$me: jq not found; it reads the telemetry" >&2; exit 1; }
mkdir -p "$work" || exit 1
tel=$work/quota_straggler.jsonl
log=$work/quota_straggler.log
rm -f "$tel" "$log"

cg0=
cg1=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    for dir in $cg0 $cg1; do
        sh "$quota_sh" destroy "$dir"
    done
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
# new_cgroup NAME FRACTION: a cgroup of weight 8192; its directory on stdout.
new_cgroup() {
    sh "$quota_sh" create "ballast-test-$$-$1" "$2" 8192
    code=$?
    if [ "$code" -eq 77 ]; then
        echo "$me: skipped: no CPU-quota cgroup (see the line above)" >&2
        exit 77
    fi
    [ "$code" -eq 0 ] || exit 1
}
cg0=$(new_cgroup rank0 none) || exit $?
cg1=$(new_cgroup rank1 0.4) || exit $?

# Each rank on a core of its own when there are two, so that rank 0 is not
# slowed by sharing rank 1's core.
bind=none
[ "$(nproc)" -ge 2 ] && bind=core
# Each rank enters its cgroup, rank 1 the held one; the wrapper then execs
# ballast-train, so the process mpirun started (and bound) is the one held.
# shellcheck disable=SC2016
wrap='q=$1 d=$2; [ "${OMPI_COMM_WORLD_RANK:-}" = 1 ] && d=$3; shift 3; exec sh "$q" run "$d" "$@"'
"$mpirun" -np 2 --oversubscribe --bind-to "$bind" sh -c "$wrap" sh "$quota_sh" "$cg0" "$cg1" \
    "$train" --data "$data" --layers 1024,1024,1024 --batch 256 --steps 100 --threads 1 \
    --quiet --policy proportional --rebalance-every 10 --telemetry "$tel" \
    </dev/null >"$log" 2>&1 || { echo "$me: the job failed:"; cat "$log"; exit 1; }
grep '^summary: ' "$log"
if ! grep -q "rank 1 may use 0.4 of a core's time (its cgroup's CPU quota)" "$log"; then
    echo "$me: FAILED: the log does not name rank 1's CPU quota:"
    cat "$log"
    exit 1
fi
share=$(jq -s '([.[] | .cpu_s[1]] | add) / ([.[] | .step_s] | add)' "$tel") ||
    { echo "$me: cannot read cpu_s from the telemetry $tel"; exit 1; }
echo "$me: rank 1's CPU seconds over the steps' wall seconds: $share"
if ! awk -v s="$share" 'BEGIN { exit !(s > 0 && s <= 0.55) }'; then
    echo "$me: FAILED: rank 1 got $share of the wall time in CPU, not within (0, 0.55]"
    exit 1
fi

# One line: first shards, last shards, and whether the last ones pass.
verdict=$(jq -s -r '
    (.[0].shards) as $a | (.[-1].shards) as $z
    | "\($a | map(tostring) | join(",")) \($z | map(tostring) | join(",")) \(.[-1].step)"
      + " " + (if ($z | add) == 256 and $z[1] <= 60 then "moved" else "FAILED" end)
    ' "$tel") || { echo "$me: cannot read the telemetry $tel"; exit 1; }
# shellcheck disable=SC2086
set -- $verdict
echo "$me: rank 1 held to 0.4 of a core: shards $1 at the first step, $2 at step $3"
if [ "$4" = moved ]; then
    echo "$me: ok: the policy capped rank 1 at its CPU budget"
    exit 0
fi
echo "$me: FAILED: rank 1's last shard is not at most 60 (or the shards do not sum to 256)"
exit 1
