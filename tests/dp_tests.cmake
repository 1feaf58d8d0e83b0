# Data parallelism end to end (labels cli;mpi): P ranks under mpirun
# --oversubscribe train to the same parameters as one process on the same
# global batches (DESIGN invariant 1), whatever the shard split and the
# bucket size, and bit-identically when run twice. Included after
# cli/cli_tests.cmake (bl_cli_test, the generated data, the out directory).

add_executable(compare_params ${CMAKE_CURRENT_SOURCE_DIR}/compare_params.c)
target_link_libraries(compare_params PRIVATE ${MATH_LIBRARY})

set(BL_MPIRUN ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG})
# 25 steps (K >= 20) of a 64-32-16-4 MLP: three dense layers, so buckets
# can split between them.
set(bl_dp_run --data ${BL_CLI_DATA}/good --layers 32,16 --batch 32 --steps 25 --lr 0.05
              --momentum 0.9 --weight-decay 0.0001 --quiet)

bl_cli_test(dp_reference EXIT 0 MATCH "^summary: steps=25 "
    COMMAND ${BL_CLI_TRAIN} ${bl_dp_run} --save-params ${BL_CLI_OUT}/dp_ref.bin
    REQUIRES cli_data_good cli_out SETUP dp_ref)

# bl_dp_case(NAME RANKS EXTRA_FLAGS...): trains on RANKS ranks into
# dp_NAME.bin and compares it with the one-process reference.
function(bl_dp_case name ranks)
    bl_cli_test(dp_${name} EXIT 0 MATCH "^summary: steps=25 "
        COMMAND ${bl_dp_env} ${BL_MPIRUN} ${ranks} --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run}
                ${ARGN} --save-params ${BL_CLI_OUT}/dp_${name}.bin
        REQUIRES cli_data_good cli_out SETUP dp_${name})
    bl_cli_test(dp_${name}_equals_one_process EXIT 0 MATCH " 0 outside "
        COMMAND $<TARGET_FILE:compare_params> ${BL_CLI_OUT}/dp_${name}.bin
                ${BL_CLI_OUT}/dp_ref.bin 1e-5 1e-6
        REQUIRES dp_ref dp_${name})
    set_tests_properties(cli_dp_${name} cli_dp_${name}_equals_one_process PROPERTIES
        LABELS "cli;mpi")
endfunction()

# bl_dp_moves_case(NAME RANKS FIELD EXTRA...): bl_dp_case with telemetry, and
# a check that the policy acted: the telemetry's FIELD (shards, or
# stage_first for the stage map) takes more than one value over the run, so
# the equality with the one-process run is not vacuous. Step times are
# modelled (BALLAST_TEST_MODELLED_TIME), so whether the policy acts in 25
# steps does not depend on the machine's load; the measured path is tested
# by the bal_* and resume_warmup tests.
find_program(JQ jq REQUIRED)
function(bl_dp_moves_case name ranks field)
    set(bl_dp_env env BALLAST_TEST_MODELLED_TIME=1e-7)
    bl_dp_case(${name} ${ranks} ${ARGN} --telemetry ${BL_CLI_OUT}/dp_${name}.jsonl)
    bl_cli_test(dp_${name}_moved EXIT 0 MATCH "^true$"
        COMMAND ${JQ} -s -e "[.[].${field}] | unique | length > 1" ${BL_CLI_OUT}/dp_${name}.jsonl
        REQUIRES dp_${name})
    set_tests_properties(cli_dp_${name}_moved PROPERTIES LABELS "cli;mpi")
endfunction()

# Every rank of these jobs is on one node, so by default the gradients are
# summed through shared memory (runtime/parallel/node_reduce.c); the _mpi cases
# all-reduce over MPI instead (--node-reduce off), as jobs across nodes do.
foreach(reduce node mpi)
    set(suffix)
    set(flags)
    if(reduce STREQUAL "mpi")
        set(suffix _mpi)
        set(flags --node-reduce off)
    endif()
    bl_dp_case(even2${suffix} 2 ${flags})
    bl_dp_case(even3${suffix} 3 ${flags})
    bl_dp_case(even4${suffix} 4 ${flags})
    # Uneven splits, each with a rank that computes nothing.
    bl_dp_case(uneven2${suffix} 2 --shards 32,0 ${flags})
    bl_dp_case(uneven3${suffix} 3 --shards 0,20,12 ${flags})
    bl_dp_case(uneven4${suffix} 4 --shards 3,0,17,12 ${flags})
endforeach()
# Buckets (MPI all-reduce only) smaller than a layer (one per layer) and
# larger than the model.
bl_dp_case(tiny_buckets 3 --shards 0,20,12 --bucket-mb 0.000001 --node-reduce off)
bl_dp_case(one_bucket 3 --shards 0,20,12 --bucket-mb 100 --node-reduce off)
# Two ranks add two gradients either way: the node reduction and the
# all-reduce give the same bytes.
bl_cli_test(dp_node_equals_mpi_np2 COMPARE same ${BL_CLI_OUT}/dp_even2.bin
    ${BL_CLI_OUT}/dp_even2_mpi.bin REQUIRES dp_even2 dp_even2_mpi)

# Determinism: the same uneven run twice, the same bytes.
bl_cli_test(dp_uneven3_again EXIT 0 MATCH "^summary: steps=25 "
    COMMAND ${BL_MPIRUN} 3 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --shards 0,20,12
            --save-params ${BL_CLI_OUT}/dp_uneven3_again.bin
    REQUIRES cli_data_good cli_out SETUP dp_uneven3_again)
bl_cli_test(dp_deterministic COMPARE same ${BL_CLI_OUT}/dp_uneven3.bin
    ${BL_CLI_OUT}/dp_uneven3_again.bin
    REQUIRES dp_uneven3 dp_uneven3_again)
bl_cli_test(dp_uneven3_mpi_again EXIT 0 MATCH "^summary: steps=25 "
    COMMAND ${BL_MPIRUN} 3 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --shards 0,20,12
            --node-reduce off --save-params ${BL_CLI_OUT}/dp_uneven3_mpi_again.bin
    REQUIRES cli_data_good cli_out SETUP dp_uneven3_mpi_again)
bl_cli_test(dp_mpi_deterministic COMPARE same ${BL_CLI_OUT}/dp_uneven3_mpi.bin
    ${BL_CLI_OUT}/dp_uneven3_mpi_again.bin
    REQUIRES dp_uneven3_mpi dp_uneven3_mpi_again)

# Bad plans: refused before training, naming the flag.
bl_cli_test(dp_shards_count EXIT 2 MATCH "--shards: 2 sizes given but the job has 3 ranks"
    COMMAND ${BL_MPIRUN} 3 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --shards 16,16
    REQUIRES cli_data_good)
bl_cli_test(dp_shards_sum EXIT 2 MATCH "--shards: the sizes sum to 31 but --batch is 32"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --shards 16,15
    REQUIRES cli_data_good)
bl_cli_test(dp_shards_negative EXIT 2 MATCH "--shards: shard size -1 is outside"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --shards 33,-1
    REQUIRES cli_data_good)
# Mismatched configurations across ranks (MPMD launch): stopped before step
# 0, naming the rank and the field.
bl_cli_test(dp_mismatch_layers EXIT 1
    MATCH "rank 1 differs from rank 0 in model layers" "!^summary:"
    COMMAND ${BL_MPIRUN} 1 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} :
            ${MPIEXEC_NUMPROC_FLAG} 1 ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/good --layers 32,8
            --batch 32 --steps 25 --lr 0.05 --momentum 0.9 --weight-decay 0.0001 --quiet
    REQUIRES cli_data_good)
bl_cli_test(dp_mismatch_lr EXIT 1
    MATCH [[rank 1 differs from rank 0 in lr \(0\.100000001 vs 0\.0500000007\)]] "!^summary:"
    COMMAND ${BL_MPIRUN} 1 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} :
            ${MPIEXEC_NUMPROC_FLAG} 1 ${BL_CLI_TRAIN} ${bl_dp_run} --lr 0.1
    REQUIRES cli_data_good)
bl_cli_test(dp_mismatch_node_reduce EXIT 1
    MATCH "rank 1 differs from rank 0 in node reduce" "!^summary:"
    COMMAND ${BL_MPIRUN} 1 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} :
            ${MPIEXEC_NUMPROC_FLAG} 1 ${BL_CLI_TRAIN} ${bl_dp_run} --node-reduce off
    REQUIRES cli_data_good)
bl_cli_test(dp_node_reduce_bad EXIT 2 MATCH "--node-reduce: 'maybe' is neither on nor off"
    COMMAND ${BL_CLI_TRAIN} ${bl_dp_run} --node-reduce maybe
    REQUIRES cli_data_good)
set_tests_properties(cli_dp_uneven3_mpi_again cli_dp_mpi_deterministic cli_dp_mismatch_node_reduce
    cli_dp_node_reduce_bad PROPERTIES LABELS "cli;mpi")
set_tests_properties(cli_dp_uneven3_again cli_dp_deterministic cli_dp_shards_count
    cli_dp_shards_sum cli_dp_shards_negative cli_dp_mismatch_layers cli_dp_mismatch_lr
    PROPERTIES LABELS "cli;mpi")

# bl_mpi_program(NAME RANKS...): tests/NAME.c, a program checking itself
# under mpirun (mpi_check.h's way), run as test NAME_npN for each N of
# RANKS; it passes when it prints "NAME: N ranks, 0 failures".
function(bl_mpi_program name)
    add_executable(${name} ${CMAKE_CURRENT_SOURCE_DIR}/${name}.c)
    target_include_directories(${name} PRIVATE ${BALLAST_RUNTIME_PRIVATE_DIRS}
        ${PROJECT_SOURCE_DIR}/kernels ${PROJECT_SOURCE_DIR}/partition)
    target_link_libraries(${name} PRIVATE ballast)
    foreach(ranks ${ARGN})
        add_test(NAME ${name}_np${ranks}
            COMMAND ${BL_MPIRUN} ${ranks} --oversubscribe $<TARGET_FILE:${name}>)
        set_tests_properties(${name}_np${ranks} PROPERTIES LABELS "unit;mpi" TIMEOUT 60
            PASS_REGULAR_EXPRESSION "${name}: ${ranks} ranks, 0 failures"
            ENVIRONMENT "${BALLAST_TEST_ENV}")
    endforeach()
endfunction()

# The bucketed all-reduce itself, on small-integer gradients (exact sums).
bl_mpi_program(test_grad_sync 1 2 3 4)
# The check that a stage's replicas hold the same parameters and momentum
# (the trainer runs it after every run and before every checkpoint).
bl_mpi_program(test_replica_check 1 2 3 4)
target_link_libraries(test_replica_check PRIVATE ${MATH_LIBRARY}) # nextafterf
