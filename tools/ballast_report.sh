#!/bin/sh
# ballast-report: the summary and plots of a run from its telemetry
# (ballast-train --telemetry RUN.jsonl): throughput, load balance, time lost
# waiting, plan changes and migrations, and gnuplot plots (PNG and SVG) of
# samples/s, the training loss, per-rank shards, per-rank compute and wait,
# and (pipelines) each stage's layers over the steps. Reads JSON with jq. A
# malformed line is named (file and line) on stderr and left out; the report
# goes on.
# Exit status: 0 done, 1 nothing usable or a tool missing or failing, 2 bad
# usage.
set -eu

prog=ballast-report

usage() {
    cat <<EOF
usage: ballast-report [--out DIR] [--quiet] RUN.jsonl
Summarises a ballast-train --telemetry file and plots it with gnuplot.
  --out DIR   where the report goes (default: RUN.report next to RUN.jsonl):
              summary.txt, throughput.{png,svg} (samples/s and load-balance
              efficiency over steps), loss.{png,svg} (the training loss over
              steps), shards.{png,svg} (each rank's samples per
              step), compute.{png,svg} (each rank's compute and wait seconds),
              stages.{png,svg} (pipelines: each stage's layers over steps)
  --quiet     do not print the summary (it is still written)
  --help      this text
A line that is not a JSON object with step, step_s and shards is reported
(file and line number) and left out. Needs jq and gnuplot.
Exit status: 0 done, 1 nothing usable or a tool failed, 2 bad usage.
EOF
}

die_usage() {
    echo "$prog: $1 (see --help)" >&2
    exit 2
}

out=
quiet=0
run=
while [ $# -gt 0 ]; do
    case $1 in
    --out)
        [ $# -ge 2 ] || die_usage "--out: needs a directory"
        out=$2
        shift 2
        ;;
    --quiet)
        quiet=1
        shift
        ;;
    --help)
        usage
        exit 0
        ;;
    -*) die_usage "unknown option '$1'" ;;
    *)
        [ -z "$run" ] || die_usage "one telemetry file, not '$run' and '$1'"
        run=$1
        shift
        ;;
    esac
done
[ -n "$run" ] || die_usage "no telemetry file given"
[ -r "$run" ] || {
    echo "$prog: $run: cannot read it" >&2
    exit 1
}
for tool in jq gnuplot; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "$prog: $tool not found (apt-get install jq gnuplot-nox)" >&2
        exit 1
    }
done
[ -n "$out" ] || out=${run%.jsonl}.report
mkdir -p "$out" || {
    echo "$prog: $out: cannot create the report directory" >&2
    exit 1
}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ballast-report.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# ---- The lines: usable ones kept, the others named ----------------------
usable='type == "object" and (.step | type) == "number" and (.step_s | type) == "number"
        and (.shards | type) == "array" and (.shards | length) > 0'
jq -R -r --arg file "$run" "
    (try fromjson catch null) as \$v
    | if \$v == null then \"\\(\$file) line \\(input_line_number): not JSON\"
      elif (\$v | $usable) | not then
        \"\\(\$file) line \\(input_line_number): not a step record (step, step_s, shards)\"
      else empty end" "$run" >"$tmp/bad" || {
    echo "$prog: jq could not read $run" >&2
    exit 1
}
while IFS= read -r line; do
    echo "$prog: $line; left out" >&2
done <"$tmp/bad"
jq -R -c "(try fromjson catch null) | select(. != null and ($usable))" "$run" >"$tmp/run.jsonl"
[ -s "$tmp/run.jsonl" ] || {
    echo "$prog: $run has no usable step record" >&2
    exit 1
}

# ---- Summary -------------------------------------------------------------
# Samples per step: the shards' sum, over S for pipelines (every stage of a
# pipeline reports its pipeline's shard).
jq -s -r --arg file "$run" --arg bad "$(wc -l <"$tmp/bad" | tr -d ' ')" '
def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                   else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def stages: if has("stage_first") then (.stage_first | length) - 1 else 1 end;
def batch: (.shards | add) / stages;
def r(d): . * pow(10; d) | round / pow(10; d);
. as $s | ($s | length) as $n | ($s[0].shards | length) as $P
| ($s | map(.step_s) | add) as $time
| ($s | map((.wait_s // []) | add // 0) | add) as $wait
| [$s[] | select(has("migration")) | .migration] as $moves
| [$s[] | select(has("decision")) | .decision.action] as $actions
| [$s[] | select(has("repartition")) | .repartition.action] as $stage_actions
| [
  "\($file): \($n) steps (\($s[0].step)..\($s[-1].step)), \($P) ranks"
    + (if $s[0] | has("stage_first") then ", \($s[0] | stages) pipeline stages" else "" end)
    + (if $bad != "0" then ", \($bad) malformed line(s) left out" else "" end),
  "throughput: median \(($s | map(batch / .step_s) | median) | r(0)) samples/s; "
    + "median step \(($s | map(.step_s) | median) * 1000 | r(2)) ms; "
    + "\($time | r(3)) s of steps in all",
  "load balance: efficiency mean \(($s | map(.lb_efficiency // 1) | add / $n) | r(3)), "
    + "first \(($s[0].lb_efficiency // 1) | r(3)), last \(($s[-1].lb_efficiency // 1) | r(3)); "
    + "idle fraction mean \(($s | map(.idle_fraction // 0) | add / $n) | r(3))",
  "time lost waiting: \($wait | r(3)) rank-seconds, "
    + "\(if $time > 0 then 100 * $wait / ($time * $P) | r(1) else 0 end)% of all rank time",
  "plan changes: \([$s[].plan_version] | unique | length - 1) "
    + "(plan v\($s[0].plan_version) to v\($s[-1].plan_version)); decisions: \($actions | length)"
    + (if ($actions | length) > 0
       then " (" + ($actions | group_by(.) | map("\(.[0]) \(length)") | join(", ")) + ")"
       else "" end),
  (if ($stage_actions | length) > 0 then
     "stage-map decisions: \($stage_actions | length) ("
     + ($stage_actions | group_by(.) | map("\(.[0]) \(length)") | join(", ")) + ")"
   else empty end),
  "shards: first \($s[0].shards | map(tostring) | join(",")), "
    + "last \($s[-1].shards | map(tostring) | join(","))",
  (if $s[0] | has("stage_first") then
     "stage maps: first \($s[0].stage_first | map(tostring) | join(",")), "
     + "last \($s[-1].stage_first | map(tostring) | join(","))" else empty end),
  "migrations: \($moves | length)"
    + (if ($moves | length) > 0
       then ", \(($moves | map(.bytes) | add) | r(0)) bytes, "
            + "\(($moves | map(.seconds) | add) * 1000 | r(3)) ms in all" else "" end)
] | .[]' "$tmp/run.jsonl" >"$out/summary.txt"
[ "$quiet" = 1 ] || cat "$out/summary.txt"

# ---- Data for the plots ---------------------------------------------------
jq -r 'def stages: if has("stage_first") then (.stage_first | length) - 1 else 1 end;
       [.step, ((.shards | add) / stages / .step_s), (.lb_efficiency // 1)]
       | map(tostring) | join(" ")' "$tmp/run.jsonl" >"$tmp/throughput.dat"
jq -r '[.step] + .shards | map(tostring) | join(" ")' "$tmp/run.jsonl" >"$tmp/shards.dat"
jq -r 'select(.loss != null) | [.step, .loss] | map(tostring) | join(" ")' "$tmp/run.jsonl" \
    >"$tmp/loss.dat"
jq -r '[.step] + (.compute_s // []) + (.wait_s // []) | map(tostring) | join(" ")' \
    "$tmp/run.jsonl" >"$tmp/compute.dat"
P=$(head -n 1 "$tmp/run.jsonl" | jq '.shards | length')
S=$(head -n 1 "$tmp/run.jsonl" | jq 'if has("stage_first") then (.stage_first | length) - 1
                                      else 1 end')
if [ "$S" -gt 1 ]; then
    jq -r '[.step] + .stage_first | map(tostring) | join(" ")' "$tmp/run.jsonl" \
        >"$tmp/stages.dat"
fi

# ---- Plots (each as PNG and SVG) -----------------------------------------
# plot NAME YLABEL GNUPLOT-PLOT-COMMAND
plot() {
    for fmt in png svg; do
        case $fmt in
        png) term="pngcairo size 900,500" ;;
        svg) term="svg size 900,500" ;;
        esac
        gnuplot >"$tmp/gnuplot.log" 2>&1 <<EOF || {
set terminal $term noenhanced
set output "$out/$1.$fmt"
set title "$(basename "$run"): $1"
set xlabel "step"
set ylabel "$2"
set key outside right
set grid
$3
EOF
            echo "$prog: gnuplot failed on $1.$fmt:" >&2
            cat "$tmp/gnuplot.log" >&2
            exit 1
        }
    done
}

plot throughput "samples/s" "set y2label 'load-balance efficiency'
set y2range [0:1.05]
set ytics nomirror
set y2tics
plot '$tmp/throughput.dat' using 1:2 with lines title 'samples/s', \\
     '' using 1:3 axes x1y2 with lines title 'efficiency'"

if [ -s "$tmp/loss.dat" ]; then
    plot loss "training loss (mean per sample or token)" \
        "plot '$tmp/loss.dat' using 1:2 with lines title 'loss'"
fi

cmd="plot"
r=0
while [ "$r" -lt "$P" ]; do
    cmd="$cmd '$tmp/shards.dat' using 1:$((r + 2)) with steps title 'rank $r',"
    r=$((r + 1))
done
plot shards "samples per step" "${cmd%,}"

if [ "$(head -n 1 "$tmp/compute.dat" | wc -w)" -eq $((2 * P + 1)) ]; then
    cmd="plot"
    r=0
    while [ "$r" -lt "$P" ]; do
        cmd="$cmd '$tmp/compute.dat' using 1:$((r + 2)) with lines title 'rank $r compute',"
        cmd="$cmd '' using 1:$((r + 2 + P)) with lines dashtype 2 title 'rank $r wait',"
        r=$((r + 1))
    done
    plot compute "seconds per step" "${cmd%,}"
fi

if [ "$S" -gt 1 ]; then
    # stage_first has S + 1 entries (columns 2 .. S + 2): the boundaries.
    cmd="plot"
    s=1
    while [ "$s" -lt "$S" ]; do
        cmd="$cmd '$tmp/stages.dat' using 1:$((s + 2)) with steps title 'stage $s starts',"
        s=$((s + 1))
    done
    L=$(head -n 1 "$tmp/run.jsonl" | jq '.stage_first[-1]')
    plot stages "first layer" "set yrange [-0.5:$L - 0.5]
set ytics 1
${cmd%,}"
fi

echo "$prog: report in $out/ (summary.txt, $(cd "$out" && ls ./*.png ./*.svg |
    sed 's|^\./||' | tr '\n' ' ' | sed 's/ $//'))"
