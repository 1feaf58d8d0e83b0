# ballast-train --telemetry of 25 steps on 2 ranks, rank 1 emulated slower:
# every step logged with per-rank arrays (cpu_s each rank's CPU seconds in
# the step: positive, and within its wall seconds plus slack for the
# threads of MPI and the runtime), plans summing to the batch, sane
# load-balance figures, decisions every window, and at least one step run
# on a plan that gives the fast rank 0 more samples than the slow rank 1
# (the run really rebalanced; later plans depend on timings, and rl may try
# other actions). Run with jq -s -e.
length == 25
and all(.[]; (.compute_s | length) == 2 and (.wait_s | length) == 2
             and (.comm_s | length) == 2 and (.shards | add) == 32
             and (.cpu_s | length) == 2 and all(.cpu_s[]; . > 0)
             and .lb_efficiency > 0 and .lb_efficiency <= 1 and .idle_fraction >= 0)
and any(.[]; .shards[0] > .shards[1])
and ([.[] | select(.decision != null)] | length) >= 10
and ([.[] | .cpu_s[0]] | add) <= 2 * ([.[] | .step_s] | add) + 0.5
