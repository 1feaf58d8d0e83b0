# The GPT-2 language model through ballast-train --model gpt2 (labels cli;
# mpi): data parallelism with uneven shards and with a policy moving them
# trains to the same model as one process (DESIGN invariant 1) after 20
# steps of AdamW with warm-up, cosine decay and clipping; and every bad
# input fails with a message naming it. The training text is the project's
# README, read byte by byte. Included after dp_tests.cmake (bl_cli_test,
# BL_MPIRUN, the out directory).

add_executable(compare_gpt2 ${CMAKE_CURRENT_SOURCE_DIR}/compare_gpt2.c)
target_link_libraries(compare_gpt2 PRIVATE ${MATH_LIBRARY})

set(bl_gpt_text ${PROJECT_SOURCE_DIR}/README.md)
set(bl_gpt_run --model gpt2 --text ${bl_gpt_text} --n-layer 2 --n-head 2 --n-embd 32
               --seq-len 16 --batch 8 --steps 20 --lr 3e-3 --lr-schedule cosine --warmup 5
               --lr-min 1e-4 --clip-grad-norm 0.5 --threads 1 --val-sequences 16 --quiet)

bl_cli_test(gpt_reference EXIT 0 MATCH "^summary: steps=20 tokens_per_s=[0-9.]+ train_loss="
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --save-model ${BL_CLI_OUT}/gpt_ref.bin
    REQUIRES cli_out SETUP gpt_ref)

# bl_gpt_case(NAME RANKS EXTRA_FLAGS...): trains on RANKS ranks into
# gpt_NAME.bin and compares it with the one-process model.
function(bl_gpt_case name ranks)
    bl_cli_test(gpt_${name} EXIT 0 MATCH "^summary: steps=20 "
        COMMAND ${BL_MPIRUN} ${ranks} --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} ${ARGN}
                --save-model ${BL_CLI_OUT}/gpt_${name}.bin
        REQUIRES cli_out SETUP gpt_${name})
    bl_cli_test(gpt_${name}_equals_one_process EXIT 0 MATCH "worst tensor"
        COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/gpt_${name}.bin
                ${BL_CLI_OUT}/gpt_ref.bin 1e-5 1e-4
        REQUIRES gpt_ref gpt_${name})
    set_tests_properties(cli_gpt_${name} cli_gpt_${name}_equals_one_process PROPERTIES
        LABELS "cli;mpi")
endfunction()

bl_gpt_case(even2 2)
bl_gpt_case(uneven2 2 --shards 3,5)
bl_gpt_case(uneven3 3 --shards 0,5,3)
# A policy under an emulated 3x slower rank 1: the telemetry's shards must
# take more than one value, so the equality is not vacuous.
bl_gpt_case(proportional2 2 --policy proportional --rebalance-every 2
    --emulate-slowdown 1:3 --telemetry ${BL_CLI_OUT}/gpt_proportional2.jsonl)
bl_cli_test(gpt_proportional2_moved EXIT 0 MATCH "^true$"
    COMMAND ${JQ} -s -e "[.[].shards] | unique | length > 1"
            ${BL_CLI_OUT}/gpt_proportional2.jsonl
    REQUIRES gpt_proportional2)
set_tests_properties(cli_gpt_proportional2_moved PROPERTIES LABELS "cli;mpi")

# The saved model starts a new run: --init-from reads it back (its shape
# wins), and one step more moves the loss.
bl_cli_test(gpt_init_from EXIT 0 MATCH "^summary: steps=1 "
    COMMAND ${BL_CLI_TRAIN} --model gpt2 --text ${bl_gpt_text} --init-from
            ${BL_CLI_OUT}/gpt_ref.bin --seq-len 16 --batch 4 --steps 1 --quiet --threads 1
            --val-sequences 4
    REQUIRES gpt_ref)

# Bad input: each fails with a message naming the flag, the file or the field.
bl_cli_test(gpt_no_text EXIT 2 MATCH "needs the training text: give --text FILE or --tokens"
    COMMAND ${BL_CLI_TRAIN} --model gpt2)
bl_cli_test(gpt_heads EXIT 2 MATCH "--n-head 3 does not divide --n-embd 32"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --n-head 3)
bl_cli_test(gpt_seq_len EXIT 2 MATCH "--seq-len 32 exceeds --max-seq-len 16"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --seq-len 32 --max-seq-len 16)
bl_cli_test(gpt_vocab EXIT 1 MATCH "training tokens: token [0-9]+ is [0-9]+, outside the model's vocabulary of 64"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --vocab 64)
bl_cli_test(gpt_missing_text EXIT 1 MATCH "/nonexistent/text"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --text /nonexistent/text)
bl_cli_test(gpt_missing_init EXIT 1 MATCH "/nonexistent/model.bin"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --init-from /nonexistent/model.bin)
bl_cli_test(gpt_init_seq_len EXIT 1 MATCH "T = 32, max_seq_len maxT = 16"
    COMMAND ${BL_CLI_TRAIN} --model gpt2 --text ${bl_gpt_text} --init-from
            ${BL_CLI_OUT}/gpt_ref.bin --seq-len 32 --steps 1 --quiet
    REQUIRES gpt_ref)
bl_cli_test(gpt_bad_tokens EXIT 1 MATCH "README.md"
    COMMAND ${BL_CLI_TRAIN} --model gpt2 --tokens ${bl_gpt_text} --steps 1 --quiet)
bl_cli_test(gpt_pp EXIT 2 MATCH "--pp does not apply to --model gpt2"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --pp 2)
bl_cli_test(gpt_flag_without_model EXIT 2 MATCH "--n-layer needs --model gpt2"
    COMMAND ${BL_CLI_TRAIN} --n-layer 2)
bl_cli_test(gpt_bad_schedule EXIT 2 MATCH "--lr-schedule: 'linear' is neither constant nor cosine"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --lr-schedule linear)
bl_cli_test(gpt_bad_model EXIT 2 MATCH "--model: 'bert' is neither mlp nor gpt2"
    COMMAND ${BL_CLI_TRAIN} --model bert)
bl_cli_test(gpt_too_few_sequences EXIT 1 MATCH "fewer than the batch of 100000"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --batch 100000)
bl_cli_test(gpt_bad_shards EXIT 2 MATCH "--shards: the sizes sum to 7 but --batch is 8"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --shards 3,4)
set_tests_properties(cli_gpt_bad_shards PROPERTIES LABELS "cli;mpi")
