# ballast-train --telemetry of a 2-rank run with --shard-max 20,32 under a
# 3x slow rank 1 (jq -s -e): rank 0 never gets more than its cap of 20,
# and the policy does reach the cap (it would give rank 0 more without it).
all(.[]; .shards[0] <= 20 and (.shards | add) == 32)
and any(.[]; .shards == [20, 12])
