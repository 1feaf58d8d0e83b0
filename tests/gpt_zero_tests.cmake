# ZeRO-1 for GPT-2 (ballast-train --zero on; runtime/lm/lm_zero.c), labels
# cli;mpi. The reduce-scatter uses the node-local reduction's slices and sums
# them in rank order, so a ZeRO-1 run writes the node path's model file BIT
# FOR BIT (np=2, and np=3 with uneven shards and a rank without sequences),
# and the node path's checkpoint files too (the moments gathered to rank 0).
# Against the MPI all-reduce (--node-reduce off) it is bit for bit on 2 ranks
# with clipping off (two floats add the same either way, and without clipping
# the norm does not touch the update), and within 1e-5 per tensor on 3. A
# shard policy that moves sequences still equals one process; kill-and-resume
# ends bit for bit; checkpoints cross between ZeRO-1 on and off and between
# rank counts; the memory report counts the moments of the slice only; and
# what is not supported is refused naming the flag. With pipelines and
# hybrid grids each stage's replicas shard that stage's moments: the runs
# equal one process within 1e-5, also with units moving between stages; a
# killed hybrid run resumes bit for bit; its checkpoints resume on other
# layouts, with ZeRO-1 on and off; and each replica's optimizer bytes are
# its share of its stage's. Included after
# gpt_tests.cmake (bl_gpt_run, bl_gpt_case's model files, compare_gpt2,
# gpt_checkpoint.sh) and dp_tests.cmake (bl_mpi_program).

find_program(JQ jq REQUIRED)
set(bl_zero_out ${BL_CLI_OUT}/zero)
set(bl_zero_loud ${bl_gpt_run})
list(REMOVE_ITEM bl_zero_loud --quiet)

# The library level (label unit;mpi): the reduce-scatter's rank-order sums,
# the node path's loss and norm, and two AdamW steps, all-gathered, against a
# whole model stepped by one process, bit for bit; with the trainer's bucket
# and with tiny buckets and messages (many rounds, slices broadcast in
# pieces); the moments gathered to one rank.
bl_mpi_program(test_lm_zero 1 2 3 4)
target_link_libraries(test_lm_zero PRIVATE ${MATH_LIBRARY})

# bl_gpt_zero_run(NAME RANKS [MATCH REGEX...] [FLAGS FLAG...]): trains
# bl_gpt_run with --zero on, on RANKS ranks, into zero/NAME.bin (info log).
function(bl_gpt_zero_run name ranks)
    cmake_parse_arguments(Z "" "" "MATCH;FLAGS" ${ARGN})
    bl_cli_test(gpt_zero_${name} EXIT 0
        MATCH "^summary: steps=20 "
              "gradient reduction: ZeRO-1 over ${ranks} replicas .* then all-gather" ${Z_MATCH}
        COMMAND sh -c "mkdir -p \"$0\" && exec \"$@\"" ${bl_zero_out} env BALLAST_LOG=info
                ${BL_MPIRUN} ${ranks} --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --zero on
                ${Z_FLAGS} --save-model ${bl_zero_out}/${name}.bin
        REQUIRES cli_out SETUP gpt_zero_${name})
    set_tests_properties(cli_gpt_zero_${name} PROPERTIES LABELS "cli;mpi")
endfunction()

# bl_gpt_zero_same(NAME OTHER FIXTURE): zero/NAME.bin equals OTHER byte for byte.
function(bl_gpt_zero_same name other fixture)
    bl_cli_test(gpt_zero_${name}_same_as_${fixture} COMPARE same ${bl_zero_out}/${name}.bin ${other}
        REQUIRES gpt_zero_${name} ${fixture})
    set_tests_properties(cli_gpt_zero_${name}_same_as_${fixture} PROPERTIES LABELS "cli;mpi")
endfunction()

# bl_gpt_zero_near(NAME OTHER FIXTURE): within 1e-5 per tensor of OTHER.
function(bl_gpt_zero_near name other fixture)
    bl_cli_test(gpt_zero_${name}_near_${fixture} EXIT 0 MATCH "worst tensor"
        COMMAND $<TARGET_FILE:compare_gpt2> ${bl_zero_out}/${name}.bin ${other} 1e-5 1e-4
        REQUIRES gpt_zero_${name} ${fixture})
    set_tests_properties(cli_gpt_zero_${name}_near_${fixture} PROPERTIES LABELS "cli;mpi")
endfunction()

# ZeRO-1 equals the node-local reduction (the default, which it takes
# precedence over, as the log says) bit for bit, and one process within 1e-5.
bl_gpt_zero_run(even2 2 MATCH "it takes precedence over the node-local reduction")
bl_gpt_zero_same(even2 ${BL_CLI_OUT}/gpt_even2.bin gpt_even2)
bl_gpt_zero_near(even2 ${BL_CLI_OUT}/gpt_ref.bin gpt_ref)
bl_gpt_zero_run(uneven2 2 FLAGS --shards 3,5)
bl_gpt_zero_same(uneven2 ${BL_CLI_OUT}/gpt_uneven2.bin gpt_uneven2)
# Three busy ranks (shards 3,3,2): the order of the sums shows in the bits,
# and the node path's (the default, here run again) is kept.
bl_cli_test(gpt_zero_node3 EXIT 0 MATCH "^summary: steps=20 "
    COMMAND sh -c "mkdir -p \"$0\" && exec \"$@\"" ${bl_zero_out} ${BL_MPIRUN} 3 --oversubscribe
            ${BL_CLI_TRAIN} ${bl_gpt_run} --save-model ${bl_zero_out}/node3.bin
    REQUIRES cli_out SETUP gpt_zero_node3)
set_tests_properties(cli_gpt_zero_node3 PROPERTIES LABELS "cli;mpi")
bl_gpt_zero_run(even3 3)
bl_gpt_zero_same(even3 ${bl_zero_out}/node3.bin gpt_zero_node3)
# Three ranks, uneven shards with an idle rank: the node path's bits again;
# the all-reduce's differ within 1e-5.
bl_gpt_zero_run(uneven3 3 FLAGS --shards 0,5,3)
bl_gpt_zero_same(uneven3 ${BL_CLI_OUT}/gpt_uneven3.bin gpt_uneven3)
bl_gpt_zero_near(uneven3 ${BL_CLI_OUT}/gpt_uneven3_mpi.bin gpt_uneven3_mpi)
bl_gpt_zero_near(uneven3 ${BL_CLI_OUT}/gpt_ref.bin gpt_ref)
# Without clipping, 2 ranks: the MPI all-reduce's model bit for bit.
bl_cli_test(gpt_zero_mpi2_noclip EXIT 0 MATCH "^summary: steps=20 "
    COMMAND sh -c "mkdir -p \"$0\" && exec \"$@\"" ${bl_zero_out} ${BL_MPIRUN} 2 --oversubscribe
            ${BL_CLI_TRAIN} ${bl_gpt_run} --shards 3,5 --clip-grad-norm 0 --node-reduce off
            --save-model ${bl_zero_out}/mpi2_noclip.bin
    REQUIRES cli_out SETUP gpt_zero_mpi2_noclip)
set_tests_properties(cli_gpt_zero_mpi2_noclip PROPERTIES LABELS "cli;mpi")
bl_gpt_zero_run(noclip2 2 FLAGS --shards 3,5 --clip-grad-norm 0)
bl_gpt_zero_same(noclip2 ${bl_zero_out}/mpi2_noclip.bin gpt_zero_mpi2_noclip)

# A shard policy that moves sequences (rank 1 emulated 3x slower; the
# telemetry's shards take more than one value): still one process's model.
bl_gpt_zero_run(proportional2 2 FLAGS --policy proportional --rebalance-every 2
    --emulate-slowdown 1:3 --telemetry ${bl_zero_out}/proportional2.jsonl)
bl_gpt_zero_near(proportional2 ${BL_CLI_OUT}/gpt_ref.bin gpt_ref)
bl_cli_test(gpt_zero_proportional2_moved EXIT 0 MATCH "^true$"
    COMMAND ${JQ} -s -e "[.[].shards] | unique | length > 1" ${bl_zero_out}/proportional2.jsonl
    REQUIRES gpt_zero_proportional2)
set_tests_properties(cli_gpt_zero_proportional2_moved PROPERTIES LABELS "cli;mpi")

# ---- Checkpoints --------------------------------------------------------------
# Killed after step 13 and resumed from its checkpoint of step 12, a ZeRO-1
# run on 3 ranks ends with the uninterrupted run's model bit for bit. The
# node path's run with the same checkpoints writes the same files (the
# manifest lm.bin and the one stage file, stage-0-of-1.bin), byte for byte:
# the gathered moments are the node path's.
set(bl_zero_ckpt ${bl_zero_out}/ckpt)
set(bl_zero_3 ${BL_MPIRUN} 3 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --shards 0,5,3)
bl_cli_test(gpt_zero_kill_resume3 EXIT 0
    MATCH "^gpt-checkpoint: killed at 1:13, resumed from step 12: equal bit for bit$"
    COMMAND sh ${bl_gpt_ckpt_script} kill ${bl_zero_ckpt}/on3 ${bl_zero_out}/uneven3.bin 1:13 4
            -- ${bl_zero_3} --zero on
    REQUIRES gpt_zero_uneven3 SETUP gpt_zero_ckpt_on3)
bl_cli_test(gpt_zero_off_checkpoints3 EXIT 0 MATCH "^summary: steps=20 "
    COMMAND sh -c "rm -rf \"$0\" && exec \"$@\"" ${bl_zero_ckpt}/off3 ${bl_zero_3}
            --checkpoint-dir ${bl_zero_ckpt}/off3 --checkpoint-every 4
    REQUIRES cli_out SETUP gpt_zero_ckpt_off3)
foreach(step 12 20)
    bl_cli_test(gpt_zero_checkpoint${step}_same COMPARE same
        ${bl_zero_ckpt}/on3/ckpt/ckpt-0000000000${step}/lm.bin
        ${bl_zero_ckpt}/off3/ckpt-0000000000${step}/lm.bin
        REQUIRES gpt_zero_ckpt_on3 gpt_zero_ckpt_off3)
    bl_cli_test(gpt_zero_checkpoint${step}_stage_file_same COMPARE same
        ${bl_zero_ckpt}/on3/ckpt/ckpt-0000000000${step}/stage-0-of-1.bin
        ${bl_zero_ckpt}/off3/ckpt-0000000000${step}/stage-0-of-1.bin
        REQUIRES gpt_zero_ckpt_on3 gpt_zero_ckpt_off3)
    set_tests_properties(cli_gpt_zero_checkpoint${step}_same
        cli_gpt_zero_checkpoint${step}_stage_file_same PROPERTIES LABELS "cli;mpi")
endforeach()

# bl_gpt_zero_resume(NAME CKPT FIXTURE RANKS FLAGS...): resumes from the
# checkpoint directory CKPT (of step 12, written on bl_zero_saved ranks;
# copied alone) on RANKS ranks with FLAGS, into zero/resume_NAME.bin.
set(bl_zero_saved 3)
function(bl_gpt_zero_resume name ckpt fixture ranks)
    set(dir ${bl_zero_ckpt}/resume_${name})
    bl_cli_test(gpt_zero_resume_${name} EXIT 0
        MATCH "resumed from .*/ckpt-000000000012 at step 12 .saved on ${bl_zero_saved} ranks."
              "^summary: steps=20 "
        COMMAND sh -c "rm -rf \"$0\" && mkdir -p \"$0\" && cp -r \"$1\" \"$0\" && shift && exec \"$@\""
                ${dir} ${ckpt} env BALLAST_LOG=info ${BL_MPIRUN} ${ranks} --oversubscribe
                ${BL_CLI_TRAIN} ${bl_gpt_run} ${ARGN} --checkpoint-dir ${dir} --resume
                --save-model ${bl_zero_out}/resume_${name}.bin
        REQUIRES ${fixture} SETUP gpt_zero_resume_${name})
    set_tests_properties(cli_gpt_zero_resume_${name} PROPERTIES LABELS "cli;mpi")
endfunction()
set(bl_zero_on3_12 ${bl_zero_ckpt}/on3/ckpt/ckpt-000000000012)
set(bl_zero_off3_12 ${bl_zero_ckpt}/off3/ckpt-000000000012)
# On the same 3 ranks and shards the node path and ZeRO-1 are the same
# bits, so a checkpoint of either, resumed with the other, ends with the
# uninterrupted ZeRO-1 model bit for bit.
bl_gpt_zero_resume(on3_off3 ${bl_zero_on3_12} gpt_zero_ckpt_on3 3 --shards 0,5,3)
bl_gpt_zero_resume(off3_on3 ${bl_zero_off3_12} gpt_zero_ckpt_off3 3 --shards 0,5,3 --zero on)
foreach(name on3_off3 off3_on3)
    bl_cli_test(gpt_zero_resume_${name}_bitwise COMPARE same ${bl_zero_out}/resume_${name}.bin
        ${bl_zero_out}/uneven3.bin REQUIRES gpt_zero_resume_${name} gpt_zero_uneven3)
    set_tests_properties(cli_gpt_zero_resume_${name}_bitwise PROPERTIES LABELS "cli;mpi")
endforeach()
# On other rank counts (the moments re-sliced, or whole on one process), the
# model equals one process's within 1e-5.
bl_gpt_zero_resume(on3_on2 ${bl_zero_on3_12} gpt_zero_ckpt_on3 2 --zero on)
bl_gpt_zero_resume(on3_np1 ${bl_zero_on3_12} gpt_zero_ckpt_on3 1)
bl_gpt_zero_resume(off3_on4 ${bl_zero_off3_12} gpt_zero_ckpt_off3 4 --zero on)
foreach(name on3_on2 on3_np1 off3_on4)
    bl_cli_test(gpt_zero_resume_${name}_near_gpt_ref EXIT 0 MATCH "worst tensor"
        COMMAND $<TARGET_FILE:compare_gpt2> ${bl_zero_out}/resume_${name}.bin
                ${BL_CLI_OUT}/gpt_ref.bin 1e-5 1e-4
        REQUIRES gpt_zero_resume_${name} gpt_ref)
    set_tests_properties(cli_gpt_zero_resume_${name}_near_gpt_ref PROPERTIES LABELS "cli;mpi")
endforeach()

# ---- Memory -----------------------------------------------------------------
# The report counts the moments each rank holds: the model has 34176
# parameters (133.5 KiB an array); 3 ranks cut it into slices of 11392
# floats (multiples of 16), so each rank's optimizer state is 2 x 11392 x 4 =
# 91136 bytes (89.0 KiB), a third of the whole 273408, and its gradients
# gain the bucket that the other two ranks' pieces arrive in (2 x 11392
# floats). The log lines and the telemetry's "memory" objects agree.
bl_cli_test(gpt_zero_memory3 EXIT 0
    MATCH "info: memory: rank 0: params 133[.]5 KiB, grads 222[.]5 KiB, optimizer 89[.]0 KiB, "
          "info: memory: rank 2: params 133[.]5 KiB, grads 222[.]5 KiB, optimizer 89[.]0 KiB, "
          "^summary: steps=8 "
    COMMAND sh -c "mkdir -p \"$0\" && exec \"$@\"" ${bl_zero_out} env BALLAST_LOG=info
            ${BL_MPIRUN} 3 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --steps 8 --zero on
            --telemetry ${bl_zero_out}/memory3.jsonl
    REQUIRES cli_out SETUP gpt_zero_memory3)
bl_cli_test(gpt_zero_memory3_telemetry EXIT 0 MATCH "^true$"
    COMMAND ${JQ} -s -e "(.[0].memory | length == 3) and ([.[0].memory[] | .params == 136704
            and .optimizer == 91136 and .optimizer <= 273408 / 3 + 64
            and .grads == 136704 + 91136] | all)" ${bl_zero_out}/memory3.jsonl
    REQUIRES gpt_zero_memory3)
set_tests_properties(cli_gpt_zero_memory3 cli_gpt_zero_memory3_telemetry PROPERTIES
    LABELS "cli;mpi")

# ---- Pipelines and hybrid grids ------------------------------------------------
# bl_gpt_zero_pipe(NAME RANKS STAGES [MATCH REGEX...] [FLAGS FLAG...]): trains
# with --zero on and --pp STAGES on RANKS ranks into zero/NAME.bin (info
# log, which must say that each stage's replicas shard its moments), and
# compares the model with one process's within 1e-5 per tensor.
function(bl_gpt_zero_pipe name ranks stages)
    cmake_parse_arguments(Z "" "" "MATCH;FLAGS" ${ARGN})
    math(EXPR replicas "${ranks} / ${stages}")
    bl_cli_test(gpt_zero_${name} EXIT 0
        MATCH "^summary: steps=20 "
              "gradient reduction: ZeRO-1 over ${replicas} replicas of each of ${stages} stages .*swap wte's gradient.* then all-gather"
              ${Z_MATCH}
        COMMAND sh -c "mkdir -p \"$0\" && exec \"$@\"" ${bl_zero_out} env BALLAST_LOG=info
                ${BL_MPIRUN} ${ranks} --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --pp ${stages}
                --zero on ${Z_FLAGS} --save-model ${bl_zero_out}/${name}.bin
        REQUIRES cli_out SETUP gpt_zero_${name})
    set_tests_properties(cli_gpt_zero_${name} PROPERTIES LABELS "cli;mpi")
    bl_gpt_zero_near(${name} ${BL_CLI_OUT}/gpt_ref.bin gpt_ref)
endfunction()

# One pipeline (one replica a stage): nothing to shard, said at info; the
# pipeline's model is one process's.
bl_cli_test(gpt_zero_pp2_one_replica EXIT 0
    MATCH "ZeRO-1: one data-parallel replica, so nothing to shard: --zero on is a no-op"
          "^summary: steps=20 "
    COMMAND sh -c "mkdir -p \"$0\" && exec \"$@\"" ${bl_zero_out} env BALLAST_LOG=info
            ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --pp 2 --zero on
            --save-model ${bl_zero_out}/pp2.bin
    REQUIRES cli_out SETUP gpt_zero_pp2)
set_tests_properties(cli_gpt_zero_pp2_one_replica PROPERTIES LABELS "cli;mpi")
bl_gpt_zero_near(pp2 ${BL_CLI_OUT}/gpt_ref.bin gpt_ref)
# Two pipelines of 2 and of 3 stages, three pipelines of 2 (slices of a
# third, one pipeline without sequences), and two of 2 whose ranks hold the
# whole model (made whole at the end with each stage's moments gathered).
bl_gpt_zero_pipe(hybrid2x2 4 2 FLAGS --micro-batches 2 --shards 3,5)
bl_gpt_zero_pipe(hybrid2x3 6 3 FLAGS --micro-batches 2 --shards 3,5)
bl_gpt_zero_pipe(hybrid3x2 6 2 FLAGS --shards 2,0,6)
bl_gpt_zero_pipe(hybrid2x2_whole 4 2 FLAGS --stage-memory whole)
# Units move between stages under the stage policy (gpt_pp2_restage's
# flags, on two pipelines): the moving block's moments travel with it, and
# the model is still one process's.
set(bl_zero_restage --micro-batches 2 --policy proportional --rebalance-every 2
    --emulate-slowdown 1:4)
bl_gpt_zero_pipe(restage2x2 4 2
    MATCH "restage: after step [0-9]+ the stages' units move from 0-1,2-3 to 0-2,3-3"
    FLAGS ${bl_zero_restage})
# The same with gpt_layers_tests.cmake's user layers: their parameters
# (after the GPT-2 tensors in the arrays, so runs of their own) are sliced,
# and block 2 moves with its adapters; both files equal one process's.
bl_cli_test(gpt_zero_layers_restage2x2 EXIT 0
    MATCH "^summary: steps=20 " "restage: after step [0-9]+ the stages' units move"
          "gradient reduction: ZeRO-1 over 2 replicas of each of 2 stages"
    COMMAND sh -c "mkdir -p \"$0\" && exec \"$@\"" ${bl_zero_out} env BALLAST_LOG=info
            ${BL_MPIRUN} 4 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} ${bl_gpt_layers} --pp 2
            --zero on ${bl_zero_restage} --save-model ${bl_zero_out}/layers_restage2x2.bin
    REQUIRES cli_out SETUP gpt_zero_layers_restage2x2)
bl_cli_test(gpt_zero_layers_restage2x2_near_gpt_layers_ref EXIT 0 MATCH "worst tensor"
    COMMAND $<TARGET_FILE:compare_gpt2> ${bl_zero_out}/layers_restage2x2.bin
            ${BL_CLI_OUT}/gpt_layers_ref.bin 1e-5 1e-4
    REQUIRES gpt_zero_layers_restage2x2 gpt_layers_ref)
bl_cli_test(gpt_zero_layers_restage2x2_layers_near EXIT 0 MATCH "736 parameters, 0 outside"
    COMMAND $<TARGET_FILE:compare_params> ${bl_zero_out}/layers_restage2x2.bin.layers
            ${BL_CLI_OUT}/gpt_layers_ref.bin.layers 1e-5 1e-6
    REQUIRES gpt_zero_layers_restage2x2 gpt_layers_ref)
set_tests_properties(cli_gpt_zero_layers_restage2x2
    cli_gpt_zero_layers_restage2x2_near_gpt_layers_ref cli_gpt_zero_layers_restage2x2_layers_near
    PROPERTIES LABELS "cli;mpi")

# The memory report: on three pipelines of 2 stages each replica holds its
# share of its stage's moments. Against the same run with --zero off, the
# three replicas of a stage hold together the stage's optimizer floats,
# which --zero off accounts as the whole pages that its stage-local moments
# take (at most two pages more a range and moment), each at most a third plus
# the slices' rounding (16 floats a run of at most 13, both moments), and
# their gradients gain the bucket.
foreach(z on off)
    bl_cli_test(gpt_zero_memory3x2_${z} EXIT 0 MATCH "^summary: steps=8 "
        COMMAND sh -c "mkdir -p \"$0\" && exec \"$@\"" ${bl_zero_out} ${BL_MPIRUN} 6
                --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --steps 8 --pp 2 --zero ${z}
                --telemetry ${bl_zero_out}/memory3x2_${z}.jsonl
        REQUIRES cli_out SETUP gpt_zero_memory3x2_${z})
    set_tests_properties(cli_gpt_zero_memory3x2_${z} PROPERTIES LABELS "cli;mpi")
endforeach()
bl_cli_test(gpt_zero_memory3x2_share EXIT 0 MATCH "^true$"
    COMMAND ${JQ} -n -e --slurpfile on ${bl_zero_out}/memory3x2_on.jsonl
            --slurpfile off ${bl_zero_out}/memory3x2_off.jsonl
            "($on[0].memory) as $a | ($off[0].memory) as $b | ($a | length == 6) and
            ([range(2) as $s | ([$a[$s, $s + 2, $s + 4].optimizer] | add) as $sum |
              $sum <= $b[$s].optimizer and $sum >= $b[$s].optimizer - 2 * 16 * 2 * 4096]
             | all) and
            ([range(6) as $r | $a[$r].optimizer <= $b[$r].optimizer / 3 + 13 * 16 * 8 and
              $a[$r].optimizer < $b[$r].optimizer / 2 and $a[$r].grads > $b[$r].grads
              and $a[$r].params == $b[$r].params] | all)"
    REQUIRES gpt_zero_memory3x2_on gpt_zero_memory3x2_off)
set_tests_properties(cli_gpt_zero_memory3x2_share PROPERTIES LABELS "cli;mpi")

# Killed after step 13 and resumed from its checkpoint of step 12 (each
# stage's first replica gathered its stage's moments into its stage file),
# the hybrid ZeRO-1 run ends with the uninterrupted run's model bit for bit;
# so does the run whose units moved (the saved map is adopted, and the
# slices follow it).
set(bl_zero_hybrid ${BL_MPIRUN} 4 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --pp 2 --zero on)
bl_cli_test(gpt_zero_kill_resume_hybrid2x2 EXIT 0
    MATCH "^gpt-checkpoint: killed at 3:13, resumed from step 12: equal bit for bit$"
    COMMAND sh ${bl_gpt_ckpt_script} kill ${bl_zero_ckpt}/hybrid2x2 ${bl_zero_out}/hybrid2x2.bin
            3:13 4 -- ${bl_zero_hybrid} --micro-batches 2 --shards 3,5
    REQUIRES gpt_zero_hybrid2x2 SETUP gpt_zero_ckpt_hybrid2x2)
bl_cli_test(gpt_zero_kill_resume_restage2x2 EXIT 0
    MATCH "^gpt-checkpoint: killed at 1:13, resumed from step 12: equal bit for bit$"
    COMMAND sh ${bl_gpt_ckpt_script} kill ${bl_zero_ckpt}/restage2x2 ${bl_zero_out}/restage2x2.bin
            1:13 4 -- ${bl_zero_hybrid} ${bl_zero_restage}
    REQUIRES gpt_zero_restage2x2 SETUP gpt_zero_ckpt_restage2x2)
bl_cli_test(gpt_zero_kill_resume_restage2x2_map EXIT 0
    MATCH "resume: .*/ckpt-000000000012's stage map 0-2,3-3 is kept"
    COMMAND cat ${bl_zero_ckpt}/restage2x2/resumed.log
    REQUIRES gpt_zero_ckpt_restage2x2)
set_tests_properties(cli_gpt_zero_kill_resume_hybrid2x2 cli_gpt_zero_kill_resume_restage2x2
    cli_gpt_zero_kill_resume_restage2x2_map PROPERTIES LABELS "cli;mpi")
# The hybrid's checkpoint of step 12 resumes on one process, on the same
# grid with --zero off, and on two pipelines of 3 stages with ZeRO-1 (other
# stages, so other slices): each within 1e-5 of one process.
set(bl_zero_saved 4)
set(bl_zero_hybrid_12 ${bl_zero_ckpt}/hybrid2x2/ckpt/ckpt-000000000012)
bl_gpt_zero_resume(hybrid_np1 ${bl_zero_hybrid_12} gpt_zero_ckpt_hybrid2x2 1)
bl_gpt_zero_resume(hybrid_off ${bl_zero_hybrid_12} gpt_zero_ckpt_hybrid2x2 4 --pp 2
    --micro-batches 2 --shards 3,5)
bl_gpt_zero_resume(hybrid_2x3 ${bl_zero_hybrid_12} gpt_zero_ckpt_hybrid2x2 6 --pp 3 --zero on)
foreach(name hybrid_np1 hybrid_off hybrid_2x3)
    bl_cli_test(gpt_zero_resume_${name}_near_gpt_ref EXIT 0 MATCH "worst tensor"
        COMMAND $<TARGET_FILE:compare_gpt2> ${bl_zero_out}/resume_${name}.bin
                ${BL_CLI_OUT}/gpt_ref.bin 1e-5 1e-4
        REQUIRES gpt_zero_resume_${name} gpt_ref)
    set_tests_properties(cli_gpt_zero_resume_${name}_near_gpt_ref PROPERTIES LABELS "cli;mpi")
endforeach()

# ---- What is refused, and the no-op -----------------------------------------
# A rank whose model lives in a device's memory (rank 1 on the mirror) is
# refused by name; the other rank stops with it.
bl_cli_test(gpt_zero_refuses_device EXIT 1
    MATCH "rank 1: unsupported: --zero on [(]ZeRO-1[)] is not supported yet on rank 1, whose model lives in the memory of mirror"
          "!^summary"
    COMMAND ${BL_MPIRUN} 1 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --zero on :
            ${MPIEXEC_NUMPROC_FLAG} 1 ${BL_CLI_TRAIN} ${bl_gpt_run} --zero on --device mirror)
bl_cli_test(gpt_zero_mismatch EXIT 1
    MATCH "rank 1 differs from rank 0 in ZeRO-1" "!^summary"
    COMMAND ${BL_MPIRUN} 1 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --zero on :
            ${MPIEXEC_NUMPROC_FLAG} 1 ${BL_CLI_TRAIN} ${bl_gpt_run})
bl_cli_test(gpt_zero_bad_value EXIT 2 MATCH "--zero: 'maybe' is neither on nor off"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --zero maybe)
# One replica: nothing to shard, said at info; the model is one process's.
bl_cli_test(gpt_zero_one_replica EXIT 0
    MATCH "ZeRO-1: one data-parallel replica, so nothing to shard: --zero on is a no-op"
          "^summary: steps=20 "
    COMMAND sh -c "mkdir -p \"$0\" && exec \"$@\"" ${bl_zero_out} env BALLAST_LOG=info
            ${BL_CLI_TRAIN} ${bl_gpt_run} --zero on --save-model ${bl_zero_out}/one.bin
    REQUIRES cli_out SETUP gpt_zero_one)
bl_cli_test(gpt_zero_one_replica_same COMPARE same ${bl_zero_out}/one.bin
    ${BL_CLI_OUT}/gpt_ref.bin REQUIRES gpt_zero_one gpt_ref)
# A rank that stops arriving (rank 1 sleeps after step 7) ends the job under
# --timeout in the reduce-scatter, naming it and the rank.
bl_cli_test(gpt_zero_hang EXIT 1
    MATCH "rank [02]: timed out: step 8: the reduce-scatter of the gradients [(]ZeRO-1[)] did not complete within 2 s: ranks that had not arrived: 1 "
    COMMAND env BALLAST_TEST_HANG_AT=1:7 ${BL_MPIRUN} 3 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_gpt_run} --zero on --timeout 2)
set_tests_properties(cli_gpt_zero_refuses_device cli_gpt_zero_mismatch
    cli_gpt_zero_one_replica cli_gpt_zero_one_replica_same cli_gpt_zero_hang PROPERTIES
    LABELS "cli;mpi")
