# ZeRO-1 for the MLP (ballast-train --zero on; transport.zero;
# runtime/parallel/reduce_zero.c), labels cli;mpi. Each replica of a stage
# sums and updates only its slice of the stage's parameters, with the
# node-local reduction's slices and rank-order sums, so with one stage a
# ZeRO-1 run writes the node path's parameters BIT FOR BIT (2, 3 and 4
# ranks), and the all-reduce's on 2 ranks (two floats add the same either
# way). Every layout equals one process within 1e-5: data parallelism,
# hybrid grids, layer migrations (the momentum is gathered before the
# layers move, and re-sliced after), under stage-local and whole-model
# memory; a checkpoint saved mid-run under ZeRO-1 resumes bit for bit on the
# same layout and within 1e-5 on another; the memory report counts the
# momentum of the slice only; a device rank is refused naming the flag.
# Included after dp_tests.cmake (bl_dp_case, dp_ref, dp_even*, bl_mpi_program)
# and restage_tests.cmake.

set(bl_zmlp_out ${BL_CLI_OUT}/zero_mlp)

# The exchanges themselves (label unit;mpi): the even slices, the
# reduce-scatter's rank-order sums, the all-gather and the gather, bit for
# bit, in one round and in many.
bl_mpi_program(test_zero_exchange 1 2 3 4)
target_link_libraries(test_zero_exchange PRIVATE ${MATH_LIBRARY})

# Data parallelism, one stage: equal to one process, and to the node path
# and the all-reduce byte for byte.
bl_dp_case(zero2 2 --zero on)
bl_dp_case(zero3 3 --zero on)
bl_dp_case(zero4 4 --zero on)
bl_dp_case(zero3_uneven 3 --zero on --shards 0,20,12 --bucket-mb 0.0001)
bl_cli_test(dp_zero2_equals_mpi COMPARE same ${BL_CLI_OUT}/dp_zero2.bin
    ${BL_CLI_OUT}/dp_even2_mpi.bin REQUIRES dp_zero2 dp_even2_mpi)
foreach(ranks 2 3 4)
    bl_cli_test(dp_zero${ranks}_equals_node COMPARE same ${BL_CLI_OUT}/dp_zero${ranks}.bin
        ${BL_CLI_OUT}/dp_even${ranks}.bin REQUIRES dp_zero${ranks} dp_even${ranks})
endforeach()
bl_cli_test(dp_zero3_uneven_equals_node COMPARE same ${BL_CLI_OUT}/dp_zero3_uneven.bin
    ${BL_CLI_OUT}/dp_uneven3.bin REQUIRES dp_zero3_uneven dp_uneven3)

# Hybrid grids: each stage's replicas shard that stage's momentum.
bl_dp_case(zero_hybrid2x2 4 --zero on --dp 2 --pp 2 --shards 20,12 --micro-batches 3)
bl_dp_case(zero_hybrid2x3 6 --zero on --dp 2 --pp 3 --micro-batches 2)
bl_dp_case(zero_hybrid2x3_whole 6 --zero on --dp 2 --pp 3 --micro-batches 2
           --stage-memory whole)

# Layer migrations: forward and back, in 2 x 2 and 3 x 2 grids, under
# stage-local and whole-model memory.
bl_dp_case(zero_hybrid_moves 4 --zero on --dp 2 --pp 2 --shards 20,12 --micro-batches 3
           --stages-at 4:0-2,3-4 --stages-at 15:0-0,1-4)
bl_dp_case(zero_hybrid_moves_whole 4 --zero on --dp 2 --pp 2 --micro-batches 3
           --stage-memory whole --stages-at 4:0-2,3-4 --stages-at 15:0-0,1-4)
bl_dp_case(zero_dp3_moves 6 --zero on --dp 3 --pp 2 --micro-batches 2
           --stages-at 6:0-2,3-4 --stages-at 14:0-0,1-4)

# Checkpoints saved mid-run (every 4 steps) under ZeRO-1, stopped by a signal
# after step 9: on the same layout the resumed run ends bit for bit as the
# uninterrupted one; from a 2 x 2 grid onto 3 replicas of one stage, within
# 1e-5 of one process.
foreach(saved "dp2|2|" "hybrid|4|--dp|2|--pp|2|--micro-batches|2")
    string(REPLACE "|" ";" fields "${saved}")
    list(POP_FRONT fields sname ranks)
    bl_cli_test(zero_mlp_stop_${sname} EXIT 3
        MATCH "^stopped: after step 9 by a signal. checkpoint .*/ckpt-000000000010$"
        COMMAND sh -c "rm -rf \"$0\" && exec \"$@\"" ${bl_zmlp_out}/${sname}.d
                env BALLAST_TEST_SIGNAL_AT=1:9 ${BL_MPIRUN} ${ranks} --oversubscribe
                ${BL_CLI_TRAIN} ${bl_dp_run} ${fields} --zero on
                --checkpoint-dir ${bl_zmlp_out}/${sname}.d --checkpoint-every 4
        REQUIRES cli_data_good cli_out SETUP zero_mlp_stop_${sname})
    set_tests_properties(cli_zero_mlp_stop_${sname} PROPERTIES LABELS "cli;mpi")
endforeach()
bl_cli_test(zero_mlp_resume_dp2 EXIT 0
    MATCH "resumed from .*/ckpt-000000000010 at step 10" "^summary: steps=25 "
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run}
            --zero on --checkpoint-dir ${bl_zmlp_out}/dp2.d --resume
            --save-params ${bl_zmlp_out}/resume_dp2.bin
    REQUIRES zero_mlp_stop_dp2 SETUP zero_mlp_resume_dp2)
bl_cli_test(zero_mlp_resume_dp2_bitwise COMPARE same ${bl_zmlp_out}/resume_dp2.bin
    ${BL_CLI_OUT}/dp_zero2.bin REQUIRES zero_mlp_resume_dp2 dp_zero2)
bl_cli_test(zero_mlp_resume_hybrid_onto_dp3 EXIT 0
    MATCH "resumed from .*/ckpt-000000000010 at step 10" "^summary: steps=25 "
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 3 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run}
            --zero on --checkpoint-dir ${bl_zmlp_out}/hybrid.d --resume
            --save-params ${bl_zmlp_out}/resume_hybrid.bin
    REQUIRES zero_mlp_stop_hybrid SETUP zero_mlp_resume_hybrid)
bl_cli_test(zero_mlp_resume_hybrid_equals_one_process EXIT 0 MATCH " 0 outside "
    COMMAND $<TARGET_FILE:compare_params> ${bl_zmlp_out}/resume_hybrid.bin
            ${BL_CLI_OUT}/dp_ref.bin 1e-5 1e-6
    REQUIRES zero_mlp_resume_hybrid dp_ref)
set_tests_properties(cli_zero_mlp_resume_dp2 cli_zero_mlp_resume_hybrid_onto_dp3
    PROPERTIES LABELS "cli;mpi")

# The memory report: a 64-512-512-4 MLP (297,060 parameters, 1.1 MiB of
# momentum) on 4 replicas holds 1/4 of the momentum (290 KiB) and a page or
# two; without ZeRO-1 all of it.
set(bl_zmlp_big --data ${BL_CLI_DATA}/good --layers 512,512 --batch 32 --steps 2 --quiet)
bl_cli_test(zero_mlp_memory_on EXIT 0
    MATCH "memory: rank 3: params 1.1 MiB, grads 1.1 MiB, optimizer 29[0-9].[0-9] KiB"
          "gradient reduction: ZeRO-1 over 4 replicas"
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 4 --oversubscribe ${BL_CLI_TRAIN} ${bl_zmlp_big}
            --zero on
    REQUIRES cli_data_good)
bl_cli_test(zero_mlp_memory_off EXIT 0
    MATCH "memory: rank 3: params 1.1 MiB, grads 1.1 MiB, optimizer 1.1 MiB"
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 4 --oversubscribe ${BL_CLI_TRAIN} ${bl_zmlp_big}
            --zero off
    REQUIRES cli_data_good)
set_tests_properties(cli_zero_mlp_memory_on cli_zero_mlp_memory_off PROPERTIES LABELS "cli;mpi")

# A device rank is refused, naming the flag.
bl_cli_test(zero_mlp_device_refused EXIT 1
    MATCH "--zero on .transport.zero, ZeRO-1. is not supported on rank [0-9], whose model lives in the memory of mirror"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --zero on --device mirror
    REQUIRES cli_data_good)
set_tests_properties(cli_zero_mlp_device_refused PROPERTIES LABELS "cli;mpi")

# Ranks that disagree on ZeRO-1 or on stage-local memory (MPMD launch) are
# stopped before step 0, naming the rank and the field.
bl_cli_test(zero_mlp_mismatch EXIT 1
    MATCH "rank 1 differs from rank 0 in ZeRO-1" "!^summary:"
    COMMAND ${BL_MPIRUN} 1 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --zero on :
            ${MPIEXEC_NUMPROC_FLAG} 1 ${BL_CLI_TRAIN} ${bl_dp_run} --zero off
    REQUIRES cli_data_good)
bl_cli_test(stage_memory_mismatch EXIT 1
    MATCH "rank 1 differs from rank 0 in stage-local memory" "!^summary:"
    COMMAND ${BL_MPIRUN} 1 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --pp 2
            --stage-memory local : ${MPIEXEC_NUMPROC_FLAG} 1 ${BL_CLI_TRAIN} ${bl_dp_run}
            --pp 2 --stage-memory whole
    REQUIRES cli_data_good)
