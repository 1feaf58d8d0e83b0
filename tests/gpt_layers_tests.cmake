# User layers in the GPT-2's residual stream through ballast-train's
# --adapter, --adapter-inside and --token-shift (tools/lm_layers.c, on the public
# user-layer API; labels cli;mpi): in data parallelism with uneven shards,
# pipelines (every unit its own stage too), the hybrid grid and a block
# moved with its layers by the stage policy, the GPT-2 tensors (compare_gpt2)
# and the layers' parameters (the model's FILE.layers, compare_params) equal
# one process's after 20 steps of AdamW with warm-up, cosine decay and
# clipping. Kill-and-resume is bit for bit. Bad layers are refused naming
# the layer. Included after gpt_tests.cmake (bl_gpt_run, compare_gpt2).

# Two adapters after block 2 (the last), one after block 1, a token shift
# after the embedding, and an adapter inside block 2 (between its attention
# and its MLP).
set(bl_gpt_layers --adapter 1:4 --token-shift 0 --adapter 2:3 --adapter 2:2
    --adapter-inside 2:2)

bl_cli_test(gpt_layers_reference EXIT 0
    MATCH "^summary: steps=20 " "GPT-2: 34912 parameters .*, 5 user layer.s.."
    COMMAND env BALLAST_LOG=info ${BL_CLI_TRAIN} ${bl_gpt_run} ${bl_gpt_layers}
            --save-model ${BL_CLI_OUT}/gpt_layers_ref.bin
    REQUIRES cli_out SETUP gpt_layers_ref)
# The layers change the model: its GPT-2 tensors differ from the plain run's.
bl_cli_test(gpt_layers_change_the_model EXIT 1 MATCH "worst tensor"
    COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/gpt_layers_ref.bin ${BL_CLI_OUT}/gpt_ref.bin
            1e-5 1e-4
    REQUIRES gpt_layers_ref gpt_ref)

# bl_gpt_layers_case(NAME RANKS MATCHES -- EXTRA_FLAGS...): trains with the
# layers on RANKS ranks, its log matching MATCHES as well, and compares both
# files with the one-process run's.
function(bl_gpt_layers_case name ranks)
    cmake_parse_arguments(C "" "" "MATCH;FLAGS" ${ARGN})
    bl_cli_test(gpt_layers_${name} EXIT 0 MATCH "^summary: steps=20 " ${C_MATCH}
        COMMAND env BALLAST_LOG=info ${BL_MPIRUN} ${ranks} --oversubscribe ${BL_CLI_TRAIN}
                ${bl_gpt_run} ${bl_gpt_layers} ${C_FLAGS}
                --save-model ${BL_CLI_OUT}/gpt_layers_${name}.bin
        REQUIRES cli_out SETUP gpt_layers_${name})
    bl_cli_test(gpt_layers_${name}_equals_one_process EXIT 0 MATCH "worst tensor"
        COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/gpt_layers_${name}.bin
                ${BL_CLI_OUT}/gpt_layers_ref.bin 1e-5 1e-4
        REQUIRES gpt_layers_ref gpt_layers_${name})
    bl_cli_test(gpt_layers_${name}_layers_equal EXIT 0 MATCH "736 parameters, 0 outside"
        COMMAND $<TARGET_FILE:compare_params> ${BL_CLI_OUT}/gpt_layers_${name}.bin.layers
                ${BL_CLI_OUT}/gpt_layers_ref.bin.layers 1e-5 1e-6
        REQUIRES gpt_layers_ref gpt_layers_${name})
    set_tests_properties(cli_gpt_layers_${name} cli_gpt_layers_${name}_equals_one_process
        cli_gpt_layers_${name}_layers_equal PROPERTIES LABELS "cli;mpi")
endfunction()

bl_gpt_layers_case(uneven2 2 FLAGS --shards 3,5)
bl_gpt_layers_case(pp2_m3 2 FLAGS --pp 2 --micro-batches 3)
bl_gpt_layers_case(pp4_units 4 FLAGS --pp 4 --micro-batches 2 --stages 0-0,1-1,2-2,3-3)
bl_gpt_layers_case(hybrid2x2 4 FLAGS --pp 2 --micro-batches 2 --shards 3,5)
# Block 2 moves to stage 0 with its three adapters (the log says so).
bl_gpt_layers_case(pp2_restage 2
    MATCH "restage: after step [0-9]+ the stages' units move from 0-1,2-3 to 0-2,3-3"
    FLAGS --pp 2 --micro-batches 2 --policy proportional --rebalance-every 2
          --emulate-slowdown 1:4)

bl_cli_test(gpt_layers_kill_resume EXIT 0
    MATCH "^gpt-checkpoint: killed at 1:9, resumed from step 8: equal bit for bit$"
    COMMAND sh ${bl_gpt_ckpt_script} kill ${bl_gpt_ckpt}/layers ${BL_CLI_OUT}/gpt_layers_uneven2.bin
            1:9 4 -- ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run}
            ${bl_gpt_layers} --shards 3,5
    REQUIRES gpt_layers_uneven2)

# A checkpoint of other user layers is refused, naming the layer: the same
# parameter count in another place would load onto the wrong layers.
bl_cli_test(gpt_layers_resume_other_layers EXIT 1
    MATCH "resume: .*ckpt-000000000020/lm.bin was saved with user layer 0 after unit 1 .decay 1, 256 parameters.; this run's is after unit 2"
    COMMAND sh -c "rm -rf \"$0\" && cp -r \"$1\" \"$0\" && shift && exec \"$@\""
            ${bl_gpt_ckpt}/layers-other ${bl_gpt_ckpt}/layers/ckpt ${BL_CLI_TRAIN} ${bl_gpt_run}
            --adapter 2:4 --token-shift 0 --adapter 2:3 --adapter 2:2 --adapter-inside 2:2
            --checkpoint-dir ${bl_gpt_ckpt}/layers-other --resume
    REQUIRES gpt_layers_kill_resume_done)
set_property(TEST cli_gpt_layers_kill_resume APPEND PROPERTY FIXTURES_SETUP
    gpt_layers_kill_resume_done)

# Bad layers, named.
bl_cli_test(gpt_layers_bad_unit EXIT 1
    MATCH "user layer 1 .adapter.: after = 3 must name a unit 0 .. L = 2"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --token-shift 0 --adapter 3:4)
bl_cli_test(gpt_layers_bad_spec EXIT 2 MATCH "--adapter: '2' is not UNIT:RANK"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --adapter 2)
bl_cli_test(gpt_layers_bad_rank EXIT 2 MATCH "--adapter"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --adapter 1:0)
bl_cli_test(gpt_layers_bad_shift EXIT 2 MATCH "--token-shift: '1:2' is not a unit number"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --token-shift 1:2)
bl_cli_test(gpt_layers_need_gpt2 EXIT 2 MATCH "--adapter needs --model gpt2"
    COMMAND ${BL_CLI_TRAIN} --adapter 1:4 --steps 1)
bl_cli_test(gpt_layers_inside_embedding EXIT 1
    MATCH "user layer 0 .adapter.: inside = 1 with after = 0: a layer inside a block needs"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --adapter-inside 0:2)
set_tests_properties(cli_gpt_layers_reference cli_gpt_layers_change_the_model
    cli_gpt_layers_kill_resume cli_gpt_layers_resume_other_layers cli_gpt_layers_bad_unit cli_gpt_layers_bad_spec
    cli_gpt_layers_bad_rank cli_gpt_layers_bad_shift cli_gpt_layers_need_gpt2
    cli_gpt_layers_inside_embedding
    PROPERTIES LABELS "cli;mpi")
