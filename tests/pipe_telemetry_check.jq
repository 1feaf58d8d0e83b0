# ballast-train --telemetry of 25 steps of a 2-stage pipeline (4
# micro-batches): every step has per-rank pipeline waits, both stages
# report the pipeline's 32 samples, a step is at least its slowest
# compute, and both stages waited for the other at some point. Run with
# jq -s -e.
length == 25
and all(.[]; (.pipe_s | length) == 2 and all(.pipe_s[]; . >= 0)
             and .samples == [32, 32] and .shards == [32, 32]
             and .step_s >= (.compute_s | max))
and any(.[]; .pipe_s[0] > 0 and .pipe_s[1] > 0)
