# ballast-train --trace: a Chrome trace-event file (Perfetto reads it) with
# named complete events for both ranks. Run with jq -e.
(.traceEvents | length) > 50
and all(.traceEvents[]; has("name") and has("ph") and has("pid") and has("tid"))
and all(.traceEvents[] | select(.ph == "X"); has("ts") and has("dur") and .dur > 0)
and ([.traceEvents[] | select(.name == "compute") | .tid] | unique) == [0, 1]
