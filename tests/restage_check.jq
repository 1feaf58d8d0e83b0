# The telemetry of a pipeline whose policy moved layers (jq -s: all lines).
# Every line carries the stage map its step ran; window-end lines carry the
# per-layer forward and backward seconds (5 layers) and the decision; at
# least one migration is recorded with its layers, bytes and seconds, and
# the next line's step ran the map the migration installed. (Measured times
# may make the policy move twice; a move of a ReLU alone sends 0 bytes, so
# only one migration must have sent some.)
. as $lines
| ($lines | length) > 0
and all($lines[]; (.stage_first | type) == "array" and (.stage_first | length) == 3
                  and .stage_first[0] == 0 and .stage_first[2] == 5)
and any($lines[]; has("layers"))
and all($lines[] | select(has("layers")) | .layers;
        (.forward_s | length) == 5 and (.backward_s | length) == 5
        and all(.forward_s[], .backward_s[]; . >= 0))
and all($lines[] | select(has("repartition")) | .repartition;
        (.action == "hold" or .action == "repartition") and (.current_s >= .best_s))
and any($lines[]; has("migration"))
and all($lines[] | select(has("migration")) | .migration;
        (.layers | length) > 0 and .bytes >= 0 and .seconds > 0
        and all(.layers[]; .from != .to))
and any($lines[] | select(has("migration")) | .migration; .bytes > 0)
and ([range(0; ($lines | length) - 1)
      | select($lines[.] | has("migration"))
      | $lines[. + 1].stage_first == $lines[.].migration.stage_first] | all)
