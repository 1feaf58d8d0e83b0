# Pipelines and the hybrid grid end to end (labels cli;mpi): S stages under
# mpirun --oversubscribe, with GPipe and 1F1B and M micro-batches, train to
# the one-process parameters (DESIGN invariant 1); 1F1B's activation stash
# stays within S − s micro-batches; every bad layout is refused with a
# message. Included after dp_tests.cmake (bl_dp_case, dp_ref: the same
# 64-32-16-4 MLP, whose layers are 0 dense, 1 ReLU, 2 dense, 3 ReLU,
# 4 dense).

# Equivalence: pp = 2, 3, 4, both schedules, M in {1, S, 2S+1} (2S+1 does
# not divide the batch of 32).
foreach(S 2 3 4)
    math(EXPR twice_plus_one "2 * ${S} + 1")
    foreach(schedule gpipe 1f1b)
        foreach(M 1 ${S} ${twice_plus_one})
            bl_dp_case(pp${S}_${schedule}_m${M} ${S} --pp ${S} --schedule ${schedule}
                       --micro-batches ${M})
        endforeach()
    endforeach()
endforeach()

# Hybrid 2 x 2 (4 ranks): uneven shards per pipeline, a hand-made stage map,
# a pipeline with no samples, and more micro-batches than a shard has rows.
bl_dp_case(hybrid_uneven_1f1b 4 --dp 2 --pp 2 --shards 20,12 --micro-batches 3)
bl_dp_case(hybrid_uneven_gpipe 4 --dp 2 --pp 2 --shards 20,12 --micro-batches 3
           --schedule gpipe --stages 0-1,2-4)
bl_dp_case(hybrid_empty_pipeline 4 --pp 2 --shards 0,32 --micro-batches 2)
bl_dp_case(hybrid_tiny_shard 4 --pp 2 --shards 30,2 --micro-batches 5 --bucket-mb 0.000001)
# A stage without parameters (layer 1 is a ReLU) and one layer per stage.
bl_dp_case(pp3_relu_stage 3 --stages 0-0,1-1,2-4 --micro-batches 4)
bl_dp_case(pp5_one_layer_each 5 --pp 5 --micro-batches 7)
# More micro-batches than the batch has samples: the extra ones are empty.
bl_dp_case(pp2_more_micro_than_samples 2 --pp 2 --micro-batches 40)
# Micro-batches without pipelining: gradient accumulation.
bl_dp_case(dp2_micro_batches 2 --micro-batches 3 --shards 20,12)

# Determinism: a pipelined run twice, the same bytes.
bl_cli_test(pp_hybrid_again EXIT 0 MATCH "^summary: steps=25 "
    COMMAND ${BL_MPIRUN} 4 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --dp 2 --pp 2
            --shards 20,12 --micro-batches 3 --save-params ${BL_CLI_OUT}/dp_hybrid_again.bin
    REQUIRES cli_data_good cli_out SETUP pp_hybrid_again)
bl_cli_test(pp_deterministic COMPARE same ${BL_CLI_OUT}/dp_hybrid_uneven_1f1b.bin
    ${BL_CLI_OUT}/dp_hybrid_again.bin
    REQUIRES dp_hybrid_uneven_1f1b pp_hybrid_again)

# 1F1B's bound: stage s of S holds at most min(S − s, M) micro-batches, and
# reaches it; GPipe holds all M. (The counts are kept apart from the slots,
# so a schedule that broke the bound would show here or fail the step.)
bl_cli_test(pp_1f1b_stash_bound EXIT 0
    MATCH "rank=0 pipeline=0 stage=0 layers=[0-9-]+ micro_batches=9 stash_capacity=4 peak_stashed=4"
          "rank=1 pipeline=0 stage=1 .* stash_capacity=3 peak_stashed=3"
          "rank=2 pipeline=0 stage=2 .* stash_capacity=2 peak_stashed=2"
          "rank=3 pipeline=0 stage=3 .* stash_capacity=1 peak_stashed=1"
    COMMAND ${BL_MPIRUN} 4 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --pp 4 --micro-batches 9
    REQUIRES cli_data_good)
bl_cli_test(pp_gpipe_stash EXIT 0
    MATCH "stage=0 .* stash_capacity=9 peak_stashed=9" "stage=1 .* stash_capacity=9 peak_stashed=9"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --pp 2 --micro-batches 9
            --schedule gpipe
    REQUIRES cli_data_good)
# The default map balances multiply-adds; the start-up line names it.
bl_cli_test(pp_layout_line EXIT 0
    MATCH "layout: 1 data-parallel x 2 pipeline stages; stage layers 0-0,1-4; 2 micro-batches per step \\(1f1b\\)"
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run}
            --pp 2 --micro-batches 2
    REQUIRES cli_data_good)

# Bad layouts: refused before training, naming the flag.
set(bl_pp_usage_cases
    "pp_more_stages_than_layers|2|--pp 6: the model has 5 layers and every stage needs at least one|--pp|6"
    "pp_not_dividing|3|--pp 2: the job's 3 ranks are not a whole number of 2-stage pipelines|--pp|2"
    "pp_dp_mismatch|4|--dp 3 x --pp 2 is 6 ranks but the job has 4|--dp|3|--pp|2"
    "pp_shards_per_pipeline|4|--shards: 4 sizes given but the job has 2 pipelines \\(4 ranks / --pp 2\\)|--pp|2|--shards|8,8,8,8"
    "pp_stages_gap|2|--stages: stage 1 is layers 3-4. it must start at layer 2|--stages|0-1,3-4"
    "pp_stages_short|2|--stages: the stages cover layers 0-3 but the model has layers 0-4|--stages|0-1,2-3"
    "pp_stages_count|2|--stages gives 2 stages but --pp is 3|--stages|0-1,2-4|--pp|3"
    "pp_stages_text|2|--stages: '0-1,x' is not a list of layer ranges|--stages|0-1,x"
    "pp_bad_schedule|2|--schedule: 'zigzag' is neither gpipe nor 1f1b|--schedule|zigzag"
    "pp_zero_micro|2|--micro-batches: 0 is outside|--micro-batches|0")
# bl_usage_cases(CASE...): each "NAME|RANKS|REGEX|FLAG|VALUE..." runs the
# 25-step job on RANKS ranks with those flags; it must exit 2 with a
# message matching REGEX.
function(bl_usage_cases)
    foreach(case IN LISTS ARGN)
        string(REPLACE "|" ";" fields "${case}")
        list(POP_FRONT fields name ranks regex)
        bl_cli_test(${name} EXIT 2 MATCH "${regex}"
            COMMAND ${BL_MPIRUN} ${ranks} --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} ${fields}
            REQUIRES cli_data_good)
        set_tests_properties(cli_${name} PROPERTIES LABELS "cli;mpi")
    endforeach()
endfunction()
bl_usage_cases(${bl_pp_usage_cases})
# A policy file holds a shard policy's table: with pipelines the policy
# moves layers, so the library refuses one, naming the file.
bl_cli_test(pp_policy_file_refused EXIT 1
    MATCH "policy file /nonexistent.q with 2 pipeline stages: a policy file holds a shard"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --pp 2
            --policy rl --policy-file /nonexistent.q
    REQUIRES cli_data_good)
foreach(name pp_hybrid_again pp_1f1b_stash_bound pp_gpipe_stash pp_layout_line
        pp_policy_file_refused)
    set_tests_properties(cli_${name} PROPERTIES LABELS "cli;mpi")
endforeach()

# The hybrid example on the public API: 2 pipelines x 2 stages.
if(TARGET hybrid_mlp)
    bl_cli_test(example_hybrid_mlp EXIT 0
        MATCH "rank 0: pipeline 0 of 2, stage 0 of 2, layers 0-1, at most 2 micro-batches"
              "rank 3: pipeline 1 of 2, stage 1 of 2, layers 2-4, at most 1 micro-batches"
              "test accuracy (0\\.9[0-9]|1\\.0)"
        COMMAND ${BL_MPIRUN} 4 --oversubscribe $<TARGET_FILE:hybrid_mlp> ${BL_CLI_DATA}/good
        REQUIRES cli_data_good)
    set_tests_properties(cli_example_hybrid_mlp PROPERTIES LABELS "cli;mpi")
endif()

# Telemetry and trace of a pipeline: per-rank pipeline waits in the JSON
# lines, "pipeline" spans for both stages in the trace.
find_program(JQ jq REQUIRED)
bl_cli_test(pp_telemetry_run EXIT 0 MATCH "^summary: steps=25 "
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --pp 2 --micro-batches 4
            --telemetry ${BL_CLI_OUT}/pp.jsonl --trace ${BL_CLI_OUT}/pp.trace.json
    REQUIRES cli_data_good cli_out SETUP pp_telemetry)
bl_cli_test(pp_telemetry EXIT 0 MATCH "^true$"
    COMMAND ${JQ} -s -e -f ${CMAKE_CURRENT_SOURCE_DIR}/pipe_telemetry_check.jq
            ${BL_CLI_OUT}/pp.jsonl
    REQUIRES pp_telemetry)
bl_cli_test(pp_trace EXIT 0 MATCH "^true$"
    COMMAND ${JQ} -e -f ${CMAKE_CURRENT_SOURCE_DIR}/trace_check.jq ${BL_CLI_OUT}/pp.trace.json
    REQUIRES pp_telemetry)
bl_cli_test(pp_trace_pipeline_spans EXIT 0 MATCH "^\\[0,1\\]$"
    COMMAND ${JQ} -c "[.traceEvents[] | select(.name == \"pipeline\") | .tid] | unique"
            ${BL_CLI_OUT}/pp.trace.json
    REQUIRES pp_telemetry)
set_tests_properties(cli_pp_telemetry_run PROPERTIES LABELS "cli;mpi")

# Evaluation in the middle of a pipelined run (--eval-every from the step
# callback) sees every stage's current layers: after an epoch the generated
# problem is solved (a model mixing trained and initial layers scores far
# lower; one process scores 1.0000 here).
bl_cli_test(pp_eval_mid_run EXIT 0
    MATCH "^eval: epoch 1 test_accuracy=(0\\.9[5-9]|1\\.0)"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/good
            --layers 32,16 --batch 32 --epochs 2 --eval-every 1 --quiet --pp 2
    REQUIRES cli_data_good)
set_tests_properties(cli_pp_eval_mid_run PROPERTIES LABELS "cli;mpi")
