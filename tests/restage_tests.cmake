# Layer migration between pipeline stages end to end (labels cli;mpi): a
# scripted stage plan (--stages-at) and the proportional policy under an
# emulated slow stage move layers — parameters and momentum — at step
# boundaries, and the run still ends with the one-process parameters
# (DESIGN invariant 1); the telemetry records every migration; momentum
# arrives bit for bit (migrate_mpi); bad plans are refused naming the flag.
# Included after pp_tests.cmake (bl_dp_case, bl_usage_cases, bl_dp_run: the 64-32-16-4 MLP,
# layers 0 dense, 1 ReLU, 2 dense, 3 ReLU, 4 dense).

# Scripted moves: forward, back, across two stages, in a hybrid grid.
bl_dp_case(pp2_scripted_moves 2 --pp 2 --micro-batches 2 --stages 0-0,1-4
           --stages-at 5:0-2,3-4 --stages-at 12:0-3,4-4 --stages-at 20:0-0,1-4)
bl_dp_case(pp3_scripted_moves 3 --pp 3 --schedule gpipe --micro-batches 3
           --stages 0-0,1-1,2-4 --stages-at 6:0-2,3-3,4-4 --stages-at 14:0-0,1-3,4-4)
bl_dp_case(hybrid_scripted_moves 4 --dp 2 --pp 2 --shards 20,12 --micro-batches 3
           --stages-at 4:0-2,3-4 --stages-at 15:0-0,1-4)

# The policy moves layers off an emulated 8x slower stage 1; the telemetry
# must show a migration (so the equivalence below is not vacuous). Step
# times are modelled (BALLAST_TEST_MODELLED_TIME), as in the shard policies'
# move tests: with measured sub-millisecond steps, the load of tests running
# beside it could hide the slow stage and the policy held in one CI run.
set(bl_restage_out ${BL_CLI_OUT}/restage_policy)
bl_cli_test(restage_policy EXIT 0 MATCH "^summary: steps=25 "
    COMMAND env BALLAST_TEST_MODELLED_TIME=1e-7 ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --pp 2
            --micro-batches 2 --policy proportional --rebalance-every 3
            --emulate-slowdown 1:8 --telemetry ${bl_restage_out}.jsonl
            --save-params ${bl_restage_out}.bin
    REQUIRES cli_data_good cli_out SETUP restage_policy)
bl_cli_test(restage_policy_equals_one_process EXIT 0 MATCH " 0 outside "
    COMMAND $<TARGET_FILE:compare_params> ${bl_restage_out}.bin ${BL_CLI_OUT}/dp_ref.bin 1e-5 1e-6
    REQUIRES dp_ref restage_policy)
bl_cli_test(restage_policy_telemetry EXIT 0 MATCH "^true$"
    COMMAND ${JQ} -s -e -f ${CMAKE_CURRENT_SOURCE_DIR}/restage_check.jq ${bl_restage_out}.jsonl
    REQUIRES restage_policy)
set_tests_properties(cli_restage_policy cli_restage_policy_equals_one_process
    cli_restage_policy_telemetry PROPERTIES LABELS "cli;mpi")

# The learning policies in a hybrid 2 x 2 job, both pipelines' stage 1
# slowed: every pipeline moves the same layers at the same boundary.
bl_dp_moves_case(hybrid_rl_moves 4 stage_first --dp 2 --pp 2 --shards 20,12 --micro-batches 2 --policy rl
           --rebalance-every 3 --emulate-slowdown 1:8 --emulate-slowdown 3:8)
bl_dp_moves_case(hybrid_bandit_moves 4 stage_first --dp 2 --pp 2 --micro-batches 3 --schedule gpipe
           --policy bandit --rebalance-every 4 --emulate-slowdown 1:8 --emulate-slowdown 3:8)

# Momentum moves with its layer, bit for bit.
add_executable(migrate_mpi ${CMAKE_CURRENT_SOURCE_DIR}/migrate_mpi.c)
target_include_directories(migrate_mpi PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(migrate_mpi PRIVATE ballast PkgConfig::CMOCKA ${MATH_LIBRARY})
add_test(NAME migrate_mpi_momentum
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe
            $<TARGET_FILE:migrate_mpi>)
set_tests_properties(migrate_mpi_momentum PROPERTIES LABELS "mpi" TIMEOUT 120
    PASS_REGULAR_EXPRESSION "^ok: 0 failure" ENVIRONMENT "${BALLAST_TEST_ENV}")

# Bad stage plans: refused before training, naming the flag.
set(bl_restage_usage_cases
    "restage_no_pipeline|1|--stages-at needs a pipeline|--stages-at|3:0-1,2-4"
    "restage_wrong_stages|2|--stages-at 3: the map has 3 stages covering layers 0-4. the job has 2 stages|--pp|2|--stages-at|3:0-0,1-1,2-4"
    "restage_short_map|2|--stages-at 3: the map has 2 stages covering layers 0-3|--pp|2|--stages-at|3:0-1,2-3"
    "restage_order|2|--stages-at: step 3 comes after step 5|--pp|2|--stages-at|5:0-1,2-4|--stages-at|3:0-2,3-4"
    "restage_text|2|--stages-at: 'x:0-1' is not STEP:MAP|--pp|2|--stages-at|x:0-1"
    "restage_gap|2|--stages-at: stage 1 is layers 3-4. it must start at layer 2|--pp|2|--stages-at|4:0-1,3-4"
    "restage_horizon|2|--repartition-horizon: 0 is outside|--pp|2|--repartition-horizon|0")
bl_usage_cases(${bl_restage_usage_cases})
