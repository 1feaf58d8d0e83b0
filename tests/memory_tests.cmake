# Memory accounting through ballast-train (label cli): the start-up report at
# info level for the MLP and for GPT-2, --mem-limit refusing a rank over it
# (exit 1, naming the rank, the total, the limit and the largest layer or
# unit), a generous limit training as usual, a bad size refused naming the
# flag (exit 2), and the report in the first telemetry line. Included from
# tests/CMakeLists.txt after cli/ and the data parallelism's tests (it uses
# BL_CLI_*, BL_MPIRUN and JQ).

set(bl_mem_mlp --data ${BL_CLI_DATA}/good --layers 64,32 --steps 2 --batch 32 --threads 1)
set(bl_mem_gpt --model gpt2 --text /usr/share/games/fortunes/linux --n-layer 2 --n-head 2
               --n-embd 32 --seq-len 16 --batch 8 --steps 2 --threads 1 --quiet)

bl_cli_test(memory_report_mlp EXIT 0
    MATCH "info: memory: rank 0: params 24\\.9 KiB, grads 24\\.9 KiB, optimizer 24\\.9 KiB, activations [0-9.]+ KiB, other [0-9.]+ (B|KiB); total [0-9.]+ KiB$"
          "^summary: steps=2 "
    COMMAND env BALLAST_LOG=info ${BL_CLI_TRAIN} ${bl_mem_mlp}
    REQUIRES cli_data_good)
bl_cli_test(memory_report_mlp_2ranks EXIT 0
    MATCH "info: memory: rank 0: params " "info: memory: rank 1: params " "^summary: steps=2 "
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_mem_mlp}
    REQUIRES cli_data_good)
bl_cli_test(memory_report_gpt2 EXIT 0
    MATCH "info: memory: rank 0: params 133\\.5 KiB, grads 133\\.5 KiB, optimizer 267\\.0 KiB, activations [0-9.]+ KiB, other [0-9.]+ KiB; total [0-9.]+ MiB$"
          "^summary: steps=2 "
    COMMAND env BALLAST_LOG=info ${BL_CLI_TRAIN} ${bl_mem_gpt})
# The default log level says nothing of memory.
bl_cli_test(memory_report_quiet_by_default EXIT 0 MATCH "!memory: rank" "^summary: steps=2 "
    COMMAND ${BL_CLI_TRAIN} ${bl_mem_mlp} --quiet
    REQUIRES cli_data_good)

bl_cli_test(memory_limit_refuses_mlp EXIT 1
    MATCH "rank 0: [0-9.]+ KiB of parameters, gradients, optimizer state and activations exceed the memory limit 1\\.0 KiB \\(--mem-limit\\); the largest layer is layer 0 \\(dense 64.64\\): 48\\.8 KiB"
          "!^summary"
    COMMAND ${BL_CLI_TRAIN} ${bl_mem_mlp} --mem-limit 1K --quiet
    REQUIRES cli_data_good)
bl_cli_test(memory_limit_refuses_2ranks EXIT 1
    MATCH "rank 0: [0-9.]+ KiB of parameters.* exceed the memory limit 1\\.0 KiB \\(--mem-limit\\); the largest layer is layer 0 .*\\(and 1 more rank over its limit\\)"
          "!^summary"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_mem_mlp} --mem-limit 1K --quiet
    REQUIRES cli_data_good)
bl_cli_test(memory_limit_refuses_gpt2 EXIT 1
    MATCH "rank 0: 1\\.5 MiB of parameters, gradients, optimizer state and activations exceed the memory limit 100\\.0 KiB \\(--mem-limit\\); the largest layer is unit 1 \\(block 0\\): [0-9.]+ KiB"
    COMMAND ${BL_CLI_TRAIN} ${bl_mem_gpt} --mem-limit 100KiB)
bl_cli_test(memory_limit_generous_mlp EXIT 0 MATCH "^summary: steps=2 "
    COMMAND ${BL_CLI_TRAIN} ${bl_mem_mlp} --mem-limit 1G --quiet
    REQUIRES cli_data_good)
bl_cli_test(memory_limit_generous_gpt2 EXIT 0 MATCH "^summary: steps=2 "
    COMMAND ${BL_CLI_TRAIN} ${bl_mem_gpt} --mem-limit 64MiB)
bl_cli_test(memory_limit_bad EXIT 2
    MATCH "^ballast-train: --mem-limit: 'abc' is not a size"
    COMMAND ${BL_CLI_TRAIN} ${bl_mem_mlp} --mem-limit abc)
bl_cli_test(memory_limit_zero EXIT 2
    MATCH "^ballast-train: --mem-limit: '0' must be at least 1 byte"
    COMMAND ${BL_CLI_TRAIN} ${bl_mem_mlp} --mem-limit 0)

# The first telemetry line carries one "memory" object per rank, and every
# line is still a step record (so ballast-report and the jq checks read it).
bl_cli_test(memory_telemetry_run EXIT 0 MATCH "^summary: steps=2 "
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_mem_mlp} --quiet
            --telemetry ${BL_CLI_OUT}/memory.jsonl
    REQUIRES cli_data_good cli_out SETUP memory_telemetry)
add_test(NAME memory_telemetry_check
    COMMAND ${JQ} -s -e "length == 2 and all(.[]; has(\"step\"))
        and (.[0].memory | length) == 2 and (.[0].memory | map(.rank)) == [0, 1]
        and all(.[0].memory[]; .total == .params + .grads + .optimizer + .activations + .other
                               and .params == 25488 and .limit >= 0)
        and (.[1] | has(\"memory\") | not)" ${BL_CLI_OUT}/memory.jsonl)
set_tests_properties(memory_telemetry_check PROPERTIES LABELS cli FIXTURES_REQUIRED memory_telemetry)

# Stage-local memory (README "Stage-local memory"): a model whose
# parameters, gradients and momentum (3.3 MiB: four 256x256 layers of 771.0
# KiB each with their gradients and momentum) exceed a rank's limit is
# refused on one rank, and on pp=2 with --stage-memory whole, but trains on
# pp=2, pp=4 and a 2x2 grid within the same kind of limit to the parameters
# of one process without it. Each stage's account is its own layers'.
set(bl_stage_mem --data ${BL_CLI_DATA}/good --layers 256,256,256,256,256 --batch 32 --steps 25
                 --threads 1 --quiet)
bl_cli_test(stage_mem_reference EXIT 0 MATCH "^summary: steps=25 "
    COMMAND ${BL_CLI_TRAIN} ${bl_stage_mem} --save-params ${BL_CLI_OUT}/stage_mem_ref.bin
    REQUIRES cli_data_good cli_out SETUP stage_mem_ref)
bl_cli_test(stage_mem_refuses_one_rank EXIT 1
    MATCH "rank 0: 3\\.4 MiB of parameters, gradients, optimizer state and activations exceed the memory limit 2\\.5 MiB \\(--mem-limit\\); the largest layer is layer 2 \\(dense 256.256\\): 771\\.0 KiB"
          "!^summary"
    COMMAND ${BL_CLI_TRAIN} ${bl_stage_mem} --mem-limit 2.5MiB
    REQUIRES cli_data_good)
bl_cli_test(stage_mem_refuses_pp2_whole EXIT 1
    MATCH "rank 0: 3\\.[0-9] MiB of parameters.* exceed the memory limit 2\\.5 MiB" "!^summary"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_stage_mem} --pp 2
            --stage-memory whole --mem-limit 2.5MiB
    REQUIRES cli_data_good)
bl_cli_test(stage_mem_report_pp2 EXIT 0
    MATCH "info: memory: rank 0: params 579\\.0 KiB, grads 579\\.0 KiB, optimizer 579\\.0 KiB,"
          "info: memory: rank 1: params 518\\.0 KiB, grads 518\\.0 KiB, optimizer 518\\.0 KiB,"
          "^summary: steps=2 "
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_stage_mem}
            --pp 2 --steps 2
    REQUIRES cli_data_good)
# bl_stage_mem_case(NAME RANKS FLAGS...): trains within the limit FLAGS give,
# into stage_mem_NAME.bin, equal to the one-process reference.
function(bl_stage_mem_case name ranks)
    bl_cli_test(stage_mem_${name} EXIT 0 MATCH "^summary: steps=25 "
        COMMAND ${BL_MPIRUN} ${ranks} --oversubscribe ${BL_CLI_TRAIN} ${bl_stage_mem} ${ARGN}
                --save-params ${BL_CLI_OUT}/stage_mem_${name}.bin
        REQUIRES cli_data_good cli_out SETUP stage_mem_${name})
    bl_cli_test(stage_mem_${name}_equals_one_process EXIT 0 MATCH " 0 outside "
        COMMAND $<TARGET_FILE:compare_params> ${BL_CLI_OUT}/stage_mem_${name}.bin
                ${BL_CLI_OUT}/stage_mem_ref.bin 1e-5 1e-6
        REQUIRES stage_mem_ref stage_mem_${name})
    set_tests_properties(cli_stage_mem_${name} cli_stage_mem_${name}_equals_one_process
        PROPERTIES LABELS "cli;mpi")
endfunction()
bl_stage_mem_case(pp2 2 --pp 2 --mem-limit 2.5MiB)
bl_stage_mem_case(pp4 4 --pp 4 --mem-limit 1.5MiB)
bl_stage_mem_case(hybrid 4 --dp 2 --pp 2 --shards 20,12 --mem-limit 2.5MiB)
# Layers that migrate between stages (held, received, given back).
bl_stage_mem_case(migrations 3 --pp 3 --stages 0-0,1-1,2-10 --stages-at 6:0-4,5-6,7-10
                  --stages-at 14:0-0,1-8,9-10 --micro-batches 3)

bl_cli_test(stage_memory_bad EXIT 2
    MATCH "^ballast-train: --stage-memory: 'bogus' is neither local nor whole"
    COMMAND ${BL_CLI_TRAIN} ${bl_mem_mlp} --stage-memory bogus)
# GPT-2 stages hold their units' parameters, gradients and AdamW moments
# only: a 4-block model whose one rank accounts 5.9 MiB is refused under a
# 4 MiB limit, while pp=2 (3.1 and 3.3 MiB), pp=4 and a 2x2 grid train under
# it to the one-process model; --stage-memory whole over the limit is
# refused too (every rank would hold the whole model).
set(bl_stage_gpt --model gpt2 --text /usr/share/games/fortunes/linux --n-layer 4 --n-head 2
                 --n-embd 64 --seq-len 16 --batch 8 --steps 10 --threads 1 --quiet)
bl_cli_test(stage_mem_gpt_ref EXIT 0 MATCH "^summary: steps=10 "
    COMMAND ${BL_CLI_TRAIN} ${bl_stage_gpt} --save-model ${BL_CLI_OUT}/stage_mem_gpt_ref.bin
    REQUIRES cli_out SETUP stage_mem_gpt_ref)
bl_cli_test(stage_mem_gpt_one_rank_refused EXIT 1
    MATCH "rank 0: [0-9.]+ MiB of parameters, gradients, optimizer state and activations exceed the memory limit 4\\.0 MiB \\(--mem-limit\\); the largest layer is unit [0-9] \\(block"
    COMMAND ${BL_CLI_TRAIN} ${bl_stage_gpt} --mem-limit 4MiB)
bl_cli_test(stage_mem_gpt_pp2_whole_refused EXIT 1
    MATCH "exceed the memory limit 4\\.0 MiB"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_stage_gpt} --pp 2
            --stage-memory whole --mem-limit 4MiB)
foreach(case "pp2|2|--pp;2" "pp4|4|--pp;4;--micro-batches;2" "hybrid|4|--pp;2;--shards;5,3")
    string(REPLACE "|" ";" fields "${case}")
    list(POP_FRONT fields name ranks)
    bl_cli_test(stage_mem_gpt_${name} EXIT 0 MATCH "^summary: steps=10 "
        COMMAND ${BL_MPIRUN} ${ranks} --oversubscribe ${BL_CLI_TRAIN} ${bl_stage_gpt} ${fields}
                --mem-limit 4MiB --save-model ${BL_CLI_OUT}/stage_mem_gpt_${name}.bin
        REQUIRES cli_out SETUP stage_mem_gpt_${name})
    bl_cli_test(stage_mem_gpt_${name}_equals_one_process EXIT 0 MATCH "worst tensor"
        COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/stage_mem_gpt_${name}.bin
                ${BL_CLI_OUT}/stage_mem_gpt_ref.bin 1e-5 1e-4
        REQUIRES stage_mem_gpt_ref stage_mem_gpt_${name})
    set_tests_properties(cli_stage_mem_gpt_${name} cli_stage_mem_gpt_${name}_equals_one_process
        PROPERTIES LABELS "cli;mpi")
endforeach()
set_tests_properties(cli_stage_mem_gpt_pp2_whole_refused PROPERTIES LABELS "cli;mpi")
# Stages that read their parts of different --init-from files are stopped
# before step 0 (under whole-model memory the parameters' digest does it).
bl_cli_test(stage_mem_gpt_init_mismatch EXIT 1
    MATCH "rank 1 differs from rank 0 in initial model file" "!^summary:"
    COMMAND ${BL_MPIRUN} 1 --oversubscribe ${BL_CLI_TRAIN} ${bl_stage_gpt} --pp 2 --init-from
            ${BL_CLI_OUT}/stage_mem_gpt_ref.bin : ${MPIEXEC_NUMPROC_FLAG} 1 ${BL_CLI_TRAIN}
            ${bl_stage_gpt} --pp 2 --init-from ${BL_CLI_OUT}/stage_mem_gpt_pp2.bin
    REQUIRES stage_mem_gpt_ref stage_mem_gpt_pp2)
# A unit move that would put a stage over its limit is not made: stage 1 is
# 4x slower, so the policy wants unit 3 or units 3 and 4 on stage 0 (the
# move that the run without a limit makes, saving checkpoints under that
# map), which would take rank 0 past 4 MiB. A resume of that checkpoint under the limit
# keeps the run's own map, and trains on to the one-process model.
set(bl_stage_gpt_move ${bl_stage_gpt} --pp 2 --micro-batches 2 --policy proportional
                      --rebalance-every 2 --emulate-slowdown 1:4)
bl_cli_test(stage_mem_gpt_move_refused EXIT 0
    MATCH "restage: after step [0-9]+ the move to 0-[3-4],[4-5]-5 is not made: rank 0 would exceed its memory limit"
          "!units move from" "^summary: steps=10 "
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_stage_gpt_move} --mem-limit 4MiB
    REQUIRES cli_out)
bl_cli_test(stage_mem_gpt_move_ckpt EXIT 0
    MATCH "the stages' units move from 0-2,3-5 to 0-[3-4],[4-5]-5" "^summary: steps=10 "
    COMMAND sh -c "rm -rf \"$0\" && exec \"$@\"" ${BL_CLI_OUT}/stage_mem_gpt_move_ckpt
            env BALLAST_LOG=info ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_stage_gpt_move} --checkpoint-dir ${BL_CLI_OUT}/stage_mem_gpt_move_ckpt
            --checkpoint-every 5
    REQUIRES cli_out SETUP stage_mem_gpt_move_ckpt)
bl_cli_test(stage_mem_gpt_resume_keeps_own_map EXIT 0
    MATCH "stage map 0-[3-4],[4-5]-5 would put rank 0 over its memory limit; this run's map stays"
          "resumed from .*ckpt-0*10 at step 10" "^summary: steps=14 "
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_stage_gpt}
            --pp 2 --micro-batches 2 --steps 14 --checkpoint-dir
            ${BL_CLI_OUT}/stage_mem_gpt_move_ckpt --resume --mem-limit 4MiB
            --save-model ${BL_CLI_OUT}/stage_mem_gpt_resumed.bin
    REQUIRES stage_mem_gpt_move_ckpt SETUP stage_mem_gpt_resumed)
bl_cli_test(stage_mem_gpt_ref14 EXIT 0 MATCH "^summary: steps=14 "
    COMMAND ${BL_CLI_TRAIN} ${bl_stage_gpt} --steps 14
            --save-model ${BL_CLI_OUT}/stage_mem_gpt_ref14.bin
    REQUIRES cli_out SETUP stage_mem_gpt_ref14)
bl_cli_test(stage_mem_gpt_resumed_equals_one_process EXIT 0 MATCH "worst tensor"
    COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/stage_mem_gpt_resumed.bin
            ${BL_CLI_OUT}/stage_mem_gpt_ref14.bin 1e-5 1e-4
    REQUIRES stage_mem_gpt_resumed stage_mem_gpt_ref14)
set_tests_properties(cli_stage_mem_gpt_init_mismatch cli_stage_mem_gpt_move_refused
    cli_stage_mem_gpt_move_ckpt cli_stage_mem_gpt_resume_keeps_own_map
    PROPERTIES LABELS "cli;mpi")
# --init-params under stage-local memory: each stage reads only its layers'
# part of the file (bl_trainer_load_params), within the limit that refuses one
# rank, and trains on to the one-process run's parameters from the same file.
bl_cli_test(stage_mem_init_one_process EXIT 0 MATCH "^summary: steps=25 "
    COMMAND ${BL_CLI_TRAIN} ${bl_stage_mem} --init-params ${BL_CLI_OUT}/stage_mem_ref.bin
            --save-params ${BL_CLI_OUT}/stage_mem_init_one.bin
    REQUIRES stage_mem_ref SETUP stage_mem_init_one)
bl_cli_test(stage_mem_init_pp2 EXIT 0 MATCH "^summary: steps=25 "
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_stage_mem} --pp 2
            --mem-limit 2.5MiB --init-params ${BL_CLI_OUT}/stage_mem_ref.bin
            --save-params ${BL_CLI_OUT}/stage_mem_init_pp2.bin
    REQUIRES stage_mem_ref SETUP stage_mem_init_pp2)
bl_cli_test(stage_mem_init_pp2_equals_one_process EXIT 0 MATCH " 0 outside "
    COMMAND $<TARGET_FILE:compare_params> ${BL_CLI_OUT}/stage_mem_init_pp2.bin
            ${BL_CLI_OUT}/stage_mem_init_one.bin 1e-5 1e-6
    REQUIRES stage_mem_init_one stage_mem_init_pp2)
# The runs from the file are not the runs from the seed (the reference
# trained 25 steps from the seed, and these 25 more from there).
bl_cli_test(stage_mem_init_differs_from_seed EXIT 1 MATCH " outside "
    COMMAND $<TARGET_FILE:compare_params> ${BL_CLI_OUT}/stage_mem_init_pp2.bin
            ${BL_CLI_OUT}/stage_mem_ref.bin 1e-5 1e-6
    REQUIRES stage_mem_ref stage_mem_init_pp2)
# A file of another model is refused on every rank, naming it.
bl_cli_test(stage_mem_init_wrong_model EXIT 1
    MATCH "stage_mem_ref\\.bin: holds 1123344 bytes, but the model has 83460 parameters" "!^summary"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_stage_mem} --layers 256,256
            --pp 2 --init-params ${BL_CLI_OUT}/stage_mem_ref.bin
    REQUIRES stage_mem_ref)
