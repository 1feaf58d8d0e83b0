# ballast-train --telemetry of 25 steps on 2 ranks, rank 1 emulated slower:
# every step logged with per-rank arrays, plans summing to the batch, sane
# load-balance figures, decisions every window, and by the end rank 0
# computing more samples than the slow rank 1. Run with jq -s -e.
length == 25
and all(.[]; (.compute_s | length) == 2 and (.wait_s | length) == 2
             and (.comm_s | length) == 2 and (.shards | add) == 32
             and .lb_efficiency > 0 and .lb_efficiency <= 1 and .idle_fraction >= 0)
and (.[-1].shards[0] > .[-1].shards[1])
and ([.[] | select(.decision != null)] | length) >= 10
