# Adaptive rebalancing end to end (labels cli;mpi): under an emulated slow
# rank the controller moves samples away from it, the parameters still equal
# the one-process run (DESIGN invariant 1), straggler alerts name the rank,
# and the telemetry and trace files are valid JSON with the promised fields
# (checked with jq). Included after dp_tests.cmake (bl_dp_run, dp_ref).

find_program(JQ jq REQUIRED)

# bl_balance_case(NAME POLICY EXTRA...): 2 ranks, rank 1 emulated 3x slower,
# a decision every 2 steps; parameters compared with the one-process run,
# and the telemetry must show the plan changed (the test is not vacuous).
function(bl_balance_case name policy)
    set(out ${BL_CLI_OUT}/bal_${name})
    bl_cli_test(bal_${name} EXIT 0 MATCH "^summary: steps=25 "
        COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run}
                --policy ${policy} --rebalance-every 2 --emulate-slowdown 1:3 ${ARGN}
                --telemetry ${out}.jsonl --trace ${out}.trace.json --save-params ${out}.bin
        REQUIRES cli_data_good cli_out SETUP bal_${name})
    bl_cli_test(bal_${name}_equals_one_process EXIT 0 MATCH " 0 outside "
        COMMAND $<TARGET_FILE:compare_params> ${out}.bin ${BL_CLI_OUT}/dp_ref.bin 1e-5 1e-6
        REQUIRES dp_ref bal_${name})
    # tests/telemetry_check.jq and trace_check.jq say what is checked.
    bl_cli_test(bal_${name}_telemetry EXIT 0 MATCH "^true$"
        COMMAND ${JQ} -s -e -f ${CMAKE_CURRENT_SOURCE_DIR}/telemetry_check.jq ${out}.jsonl
        REQUIRES bal_${name})
    bl_cli_test(bal_${name}_trace EXIT 0 MATCH "^true$"
        COMMAND ${JQ} -e -f ${CMAKE_CURRENT_SOURCE_DIR}/trace_check.jq ${out}.trace.json
        REQUIRES bal_${name})
    set_tests_properties(cli_bal_${name} cli_bal_${name}_equals_one_process
        cli_bal_${name}_telemetry cli_bal_${name}_trace PROPERTIES LABELS "cli;mpi")
endfunction()

bl_balance_case(proportional proportional)
bl_balance_case(bandit bandit)
bl_balance_case(rl rl)

# A rank that slows down 4x at step 30 is named in a warning.
bl_cli_test(bal_straggler_alert EXIT 0
    MATCH [[warn: rank 1 on .* is [0-9.]+× slower since step]] "^summary: steps=60 "
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/good
            --layers 512,512 --batch 256 --steps 60 --quiet --policy proportional
            --rebalance-every 3 --emulate-slowdown 1:4@30
    REQUIRES cli_data_good)
# Bad values are refused naming the flag.
bl_cli_test(bal_bad_policy EXIT 2 MATCH "--policy: 'greedy' is not one of"
    COMMAND ${BL_CLI_TRAIN} --policy greedy)
bl_cli_test(bal_bad_slowdown EXIT 2 MATCH "--emulate-slowdown: '1:0.5': the factor"
    COMMAND ${BL_CLI_TRAIN} --emulate-slowdown 1:0.5)
bl_cli_test(bal_bad_slowdown_range EXIT 2 MATCH "--emulate-slowdown: '0:2@9-3': TO must be"
    COMMAND ${BL_CLI_TRAIN} --emulate-slowdown 0:2@9-3)
bl_cli_test(bal_slowdown_rank EXIT 2 MATCH "--emulate-slowdown: rank 2, but the job has ranks 0..1"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} --emulate-slowdown 2:2)
bl_cli_test(bal_policy_file_not_rl EXIT 1 MATCH "applies to the rl policy only"
    COMMAND ${BL_CLI_TRAIN} ${bl_dp_run} --policy proportional --policy-file ${BL_CLI_OUT}/q.bin
    REQUIRES cli_data_good)
set_tests_properties(cli_bal_straggler_alert cli_bal_slowdown_rank PROPERTIES LABELS "cli;mpi")
# Timing is what it detects: run it alone, with milliseconds of compute per
# step, so other tests' load is not mistaken for (or does not hide) a change.
set_tests_properties(cli_bal_straggler_alert PROPERTIES RUN_SERIAL TRUE)

# rl warm start: ballast-sim trains a Q-table across every scenario and
# ballast-train starts from it; the math is unchanged.
bl_cli_test(sim_save_policy EXIT 0 MATCH "^sim: ranks=16 scenario=noise policy=rl "
    COMMAND $<TARGET_FILE:ballast-sim> --ranks 16 --scenario all --policy rl --steps 100
            --save-policy ${BL_CLI_OUT}/q.bin
    REQUIRES cli_out SETUP sim_q)
bl_balance_case(rl_warm rl --policy-file ${BL_CLI_OUT}/q.bin)
set_tests_properties(cli_bal_rl_warm PROPERTIES FIXTURES_REQUIRED "cli_data_good;cli_out;sim_q")
bl_cli_test(bal_policy_file_bad EXIT 1 MATCH "policy file .*dp_ref\\.bin: holds [0-9]+ bytes"
    COMMAND ${BL_CLI_TRAIN} ${bl_dp_run} --policy rl --policy-file ${BL_CLI_OUT}/dp_ref.bin
    REQUIRES cli_data_good dp_ref)

# Memory caps: rank 0 may compute at most 20 of the 32 samples. Under a 3x
# slow rank 1, proportional would give it about 24; it stops at the cap,
# and the math is still the one-process run's.
set(bl_caps_out ${BL_CLI_OUT}/bal_caps)
# Modelled step times (BALLAST_TEST_MODELLED_TIME): the policy's target is
# the same every run, so "it reaches the cap" does not depend on the load.
bl_cli_test(bal_caps EXIT 0 MATCH "^summary: steps=25 "
    COMMAND env BALLAST_TEST_MODELLED_TIME=1e-7 ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_dp_run} --policy proportional
            --rebalance-every 2 --emulate-slowdown 1:3 --shard-max 20,32
            --telemetry ${bl_caps_out}.jsonl --save-params ${bl_caps_out}.bin
    REQUIRES cli_data_good cli_out SETUP bal_caps)
bl_cli_test(bal_caps_respected EXIT 0 MATCH "^true$"
    COMMAND ${JQ} -s -e -f ${CMAKE_CURRENT_SOURCE_DIR}/caps_check.jq ${bl_caps_out}.jsonl
    REQUIRES bal_caps)
bl_cli_test(bal_caps_equals_one_process EXIT 0 MATCH " 0 outside "
    COMMAND $<TARGET_FILE:compare_params> ${bl_caps_out}.bin ${BL_CLI_OUT}/dp_ref.bin 1e-5 1e-6
    REQUIRES dp_ref bal_caps)
# Without --shards the first plan is the even split within the caps.
bl_cli_test(bal_caps_first_plan_run EXIT 0 MATCH "^summary: steps=25 "
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --shard-max 10,32
            --telemetry ${bl_caps_out}_first.jsonl
    REQUIRES cli_data_good cli_out SETUP bal_caps_first)
bl_cli_test(bal_caps_first_plan EXIT 0 MATCH "^\\[10,22\\]$"
    COMMAND ${JQ} -c ".shards" ${bl_caps_out}_first.jsonl
    REQUIRES bal_caps_first)
set_tests_properties(cli_bal_caps cli_bal_caps_respected cli_bal_caps_equals_one_process
    cli_bal_caps_first_plan_run cli_bal_caps_first_plan PROPERTIES LABELS "cli;mpi")

# A real straggler (labels slow;mpi): rank 1 in a cgroup held to 0.4 of a
# core (bench/cpu_quota.sh), ballast not told; proportional must move
# samples off it (tests/quota_straggler.sh reads the telemetry). Skipped
# (77) without root or a cgroup cpu controller. Alone: the throttle is real
# time, and other tests' load would blur it (the script also gives both
# ranks a high CPU weight against load from outside ctest).
add_test(NAME bal_quota_straggler
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/quota_straggler.sh ${BL_CLI_TRAIN}
            ${BL_CLI_DATA}/good ${BL_CLI_OUT}/quota ${MPIEXEC_EXECUTABLE})
set_tests_properties(bal_quota_straggler PROPERTIES LABELS "slow;mpi" TIMEOUT 180
    SKIP_RETURN_CODE 77 RUN_SERIAL TRUE ENVIRONMENT "${BALLAST_TEST_ENV}"
    FIXTURES_REQUIRED "cli_data_good;cli_out")
