# The GPT-2 language model through ballast-train --model gpt2 (labels cli;
# mpi): data parallelism with uneven and moving shards, pipelines, block
# moves and the hybrid grid train to the same model as one process (DESIGN
# invariant 1) after 20 steps of AdamW with warm-up, cosine decay and
# clipping; checkpoints resume; and every bad input fails with a message
# naming it. The training text is the fortunes package's Linux quotes, read
# byte by byte (scripts/install-deps.sh installs them). A Debian file does
# not change between commits, unlike a file of this tree: AdamW amplifies
# summation-order rounding by amounts that depend on the data (on the
# README at one commit, 1.2e-5 in one tensor), and the margins here were
# measured on this file (worst 2e-7 against the 1e-5 limit). Included after
# dp_tests.cmake (bl_cli_test, BL_MPIRUN, the out directory).

add_executable(compare_gpt2 ${CMAKE_CURRENT_SOURCE_DIR}/compare_gpt2.c)
target_link_libraries(compare_gpt2 PRIVATE ${MATH_LIBRARY})

set(bl_gpt_text /usr/share/games/fortunes/linux)
set(bl_gpt_run --model gpt2 --text ${bl_gpt_text} --n-layer 2 --n-head 2 --n-embd 32
               --seq-len 16 --batch 8 --steps 20 --lr 1e-3 --lr-schedule cosine --warmup 5
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
# Every rank of these jobs is on one node, so the one-stage cases above (and
# the policy's below) sum their gradients and take AdamW's step through
# shared memory, each rank its slice (runtime/lm/lm_node.c, the default);
# the _mpi cases all-reduce instead (--node-reduce off), as jobs across nodes
# do. Every step of these runs clips: the gradient norm (1.2 and above on
# this text) exceeds --clip-grad-norm 0.5, which gpt_node3_clip checks.
bl_gpt_case(uneven2_mpi 2 --shards 3,5 --node-reduce off)
bl_gpt_case(uneven3_mpi 3 --shards 0,5,3 --node-reduce off)
# The node path ran (the info line says so, so that the equality is not
# vacuous), on 3 ranks with a zero shard, with every step's norm above the
# clip (no progress line shows a norm below 1).
set(bl_gpt_loud ${bl_gpt_run})
list(REMOVE_ITEM bl_gpt_loud --quiet)
bl_cli_test(gpt_node3_clip EXIT 0
    MATCH "gradient reduction: shared memory .3 ranks on one node"
          "^step 20/20 .* grad_norm [0-9.]+$" "!grad_norm 0[.]" "^summary: steps=20 "
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 3 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_loud}
            --progress 0 --shards 2,0,6 --save-model ${BL_CLI_OUT}/gpt_node3_clip.bin
    REQUIRES cli_out SETUP gpt_node3_clip)
bl_cli_test(gpt_node3_clip_equals_one_process EXIT 0 MATCH "worst tensor"
    COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/gpt_node3_clip.bin
            ${BL_CLI_OUT}/gpt_ref.bin 1e-5 1e-4
    REQUIRES gpt_ref gpt_node3_clip)
# --node-reduce off all-reduces, and says so; a job whose ranks disagree on
# it stops before step 0, naming the field.
bl_cli_test(gpt_node_reduce_off_logged EXIT 0
    MATCH "gradient reduction: MPI all-reduce .the node-local reduction is off."
          "^summary: steps=8 "
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run}
            --steps 8 --node-reduce off
    REQUIRES cli_out)
bl_cli_test(gpt_mismatch_node_reduce EXIT 1
    MATCH "rank 1 differs from rank 0 in node reduce" "!^summary:"
    COMMAND ${BL_MPIRUN} 1 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} :
            ${MPIEXEC_NUMPROC_FLAG} 1 ${BL_CLI_TRAIN} ${bl_gpt_run} --node-reduce off
    REQUIRES cli_out)
# A rank that stops arriving (the test hook sleeps rank 1 after step 7) ends
# the job under --timeout at the node's first barrier, naming it.
bl_cli_test(gpt_hang_node_reduce EXIT 1
    MATCH "rank [02]: timed out: step 8: the barrier before the node's gradient sum did not complete within 2 s: ranks that had not arrived: 1 "
    COMMAND env BALLAST_TEST_HANG_AT=1:7 ${BL_MPIRUN} 3 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_gpt_run} --timeout 2
    REQUIRES cli_out)
set_tests_properties(cli_gpt_node3_clip cli_gpt_node3_clip_equals_one_process
    cli_gpt_node_reduce_off_logged cli_gpt_mismatch_node_reduce cli_gpt_hang_node_reduce
    PROPERTIES LABELS "cli;mpi")
# The node path's slices of the parameter ranges (label unit).
bl_unit_test(test_lm_node)
# Pipelines over the units (0 the embedding, 1-2 the blocks, 3 the head):
# both schedules, micro-batches that do not divide the slice, every unit a
# stage of its own, and the hybrid grid with uneven pipelines. The tied
# embedding's gradient is summed between the first and last stages.
bl_gpt_case(pp2 2 --pp 2)
bl_gpt_case(pp2_1f1b_m3 2 --pp 2 --micro-batches 3)
bl_gpt_case(pp2_gpipe_m4 2 --pp 2 --micro-batches 4 --schedule gpipe)
bl_gpt_case(pp3_m2 3 --pp 3 --micro-batches 2)
bl_gpt_case(pp4_units 4 --pp 4 --micro-batches 3 --stages 0-0,1-1,2-2,3-3)
bl_gpt_case(hybrid2x2 4 --pp 2 --micro-batches 2 --shards 3,5)
# The proportional stage policy under an emulated 4x slower stage 1 moves a
# block to stage 0 with its parameters and AdamW moments (the log says so,
# so the equality is not vacuous), and the model still equals one
# process's.
bl_cli_test(gpt_pp2_restage EXIT 0
    MATCH "restage: after step [0-9]+ the stages' units move from 0-1,2-3 to 0-2,3-3"
          "^summary: steps=20 "
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run}
            --pp 2 --micro-batches 2 --policy proportional --rebalance-every 2
            --emulate-slowdown 1:4 --save-model ${BL_CLI_OUT}/gpt_pp2_restage.bin
    REQUIRES cli_out SETUP gpt_pp2_restage)
bl_cli_test(gpt_pp2_restage_equals_one_process EXIT 0 MATCH "worst tensor"
    COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/gpt_pp2_restage.bin
            ${BL_CLI_OUT}/gpt_ref.bin 1e-5 1e-4
    REQUIRES gpt_ref gpt_pp2_restage)
set_tests_properties(cli_gpt_pp2_restage cli_gpt_pp2_restage_equals_one_process PROPERTIES
    LABELS "cli;mpi")
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
bl_cli_test(gpt_bad_tokens EXIT 1 MATCH "fortunes/linux: magic"
    COMMAND ${BL_CLI_TRAIN} --model gpt2 --tokens ${bl_gpt_text} --steps 1 --quiet)
bl_cli_test(gpt_stages_at EXIT 2 MATCH "--stages-at does not apply to --model gpt2"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --pp 2 --stages-at 5:0-0,1-3)
bl_cli_test(gpt_pp_too_many EXIT 2 MATCH "--pp 5: the model has 4 units and every stage needs at least one"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --pp 5)

bl_cli_test(gpt_flag_without_model EXIT 2 MATCH "--n-layer needs --model gpt2"
    COMMAND ${BL_CLI_TRAIN} --n-layer 2)
bl_cli_test(gpt_bad_schedule EXIT 2 MATCH "--lr-schedule: 'linear' is neither constant nor cosine"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --lr-schedule linear)
bl_cli_test(gpt_optimizer_mismatch EXIT 2 MATCH "--optimizer sgd: --model gpt2 trains with adamw"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --optimizer sgd)
bl_cli_test(mlp_optimizer_mismatch EXIT 2 MATCH "--optimizer adamw: --model mlp trains with sgd"
    COMMAND ${BL_CLI_TRAIN} --optimizer adamw)
bl_cli_test(gpt_bad_optimizer EXIT 2 MATCH "--optimizer: 'adam' is neither sgd nor adamw"
    COMMAND ${BL_CLI_TRAIN} --optimizer adam)
bl_cli_test(gpt_bad_model EXIT 2 MATCH "--model: 'bert' is neither mlp nor gpt2"
    COMMAND ${BL_CLI_TRAIN} --model bert)
bl_cli_test(gpt_too_few_sequences EXIT 1 MATCH "fewer than the batch of 100000"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --batch 100000)
bl_cli_test(gpt_bad_shards EXIT 2 MATCH "--shards: the sizes sum to 7 but --batch is 8"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --shards 3,4)
set_tests_properties(cli_gpt_bad_shards PROPERTIES LABELS "cli;mpi")

# ---- Checkpoints and resume (tests/gpt_checkpoint.sh) ------------------------
# A run killed after a periodic checkpoint and resumed writes the same model
# file, bit for bit, as the uninterrupted run: on 2 ranks with uneven shards
# (gpt_uneven2.bin; both runs through the node-local reduction, the default)
# and on one process (gpt_ref.bin).
set(bl_gpt_ckpt ${BL_CLI_OUT}/gpt-ckpt)
set(bl_gpt_ckpt_script ${CMAKE_CURRENT_SOURCE_DIR}/gpt_checkpoint.sh)
bl_cli_test(gpt_kill_resume2 EXIT 0
    MATCH "^gpt-checkpoint: killed at 0:13, resumed from step 12: equal bit for bit$"
    COMMAND sh ${bl_gpt_ckpt_script} kill ${bl_gpt_ckpt}/kill2 ${BL_CLI_OUT}/gpt_uneven2.bin 0:13 4
            -- ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --shards 3,5
    REQUIRES gpt_uneven2)
bl_cli_test(gpt_kill_resume_pp2 EXIT 0
    MATCH "^gpt-checkpoint: killed at 1:13, resumed from step 12: equal bit for bit$"
    COMMAND sh ${bl_gpt_ckpt_script} kill ${bl_gpt_ckpt}/kill_pp2 ${BL_CLI_OUT}/gpt_pp2_1f1b_m3.bin
            1:13 4 -- ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --pp 2
            --micro-batches 3
    REQUIRES gpt_pp2_1f1b_m3 SETUP gpt_ckpt_kill_pp2)
# Two pipelines of 2 stages (each stage's first replica writes its stage
# file; the replicas are compared stage by stage, nothing made whole).
bl_cli_test(gpt_kill_resume_hybrid2x2 EXIT 0
    MATCH "^gpt-checkpoint: killed at 3:13, resumed from step 12: equal bit for bit$"
    COMMAND sh ${bl_gpt_ckpt_script} kill ${bl_gpt_ckpt}/kill_hybrid2x2
            ${BL_CLI_OUT}/gpt_hybrid2x2.bin 3:13 4 -- ${BL_MPIRUN} 4 --oversubscribe
            ${BL_CLI_TRAIN} ${bl_gpt_run} --pp 2 --micro-batches 2 --shards 3,5
    REQUIRES gpt_hybrid2x2)
set_tests_properties(cli_gpt_kill_resume_hybrid2x2 PROPERTIES LABELS "cli;mpi")
# The stage map and the stage policy's learned state travel in the
# checkpoint (its STAGES and CONTROL sections): gpt_pp2_restage's run, whose
# proportional stage policy moves a block to stage 0 after step 6, is killed
# after step 13 and resumed from its checkpoint of step 12. The resumed run
# starts on the saved map 0-2,3-3, not on the balanced 0-1,2-3 (its log says
# so, and its telemetry, which replaces the killed run's, shows step 12 ran
# it), its stage policy goes on from its saved state, and it ends with
# gpt_pp2_restage's model bit for bit.
set(bl_gpt_restage_kill ${bl_gpt_ckpt}/kill_pp2_restage)
bl_cli_test(gpt_kill_resume_pp2_restage EXIT 0
    MATCH "^gpt-checkpoint: killed at 1:13, resumed from step 12: equal bit for bit$"
    COMMAND sh ${bl_gpt_ckpt_script} kill ${bl_gpt_restage_kill} ${BL_CLI_OUT}/gpt_pp2_restage.bin
            1:13 4 -- ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --pp 2
            --micro-batches 2 --policy proportional --rebalance-every 2 --emulate-slowdown 1:4
            --telemetry ${bl_gpt_restage_kill}/telemetry.jsonl
    REQUIRES gpt_pp2_restage SETUP gpt_ckpt_kill_pp2_restage)
bl_cli_test(gpt_kill_resume_pp2_restage_map EXIT 0
    MATCH "resume: .*/ckpt-000000000012's stage map 0-2,3-3 is kept; the balanced map 0-1,2-3 is not used"
          "resume: the stage policy goes on from its saved state"
    COMMAND cat ${bl_gpt_restage_kill}/resumed.log
    REQUIRES gpt_ckpt_kill_pp2_restage)
bl_cli_test(gpt_kill_resume_pp2_restage_telemetry EXIT 0 MATCH "^true$"
    COMMAND ${JQ} -s -e ".[0].step == 12 and .[0].stage_first == [0,3,4]"
            ${bl_gpt_restage_kill}/telemetry.jsonl
    REQUIRES gpt_ckpt_kill_pp2_restage)
# Under another stage policy (bandit) the saved map is still kept, but the
# saved proportional state is not taken: the policy starts afresh, saying
# why (in a copy of the checkpoints, which the run's own final save joins).
bl_cli_test(gpt_resume_pp2_other_policy EXIT 0
    MATCH "resume: .*/ckpt-000000000020's stage map 0-2,3-3 is kept"
          "resume: the stage policy starts afresh: stage policy state: [0-9]+ bytes are not the state of this policy .bandit"
    COMMAND sh -c "rm -rf \"$0\" && cp -r \"$1\" \"$0\" && shift && exec \"$@\""
            ${bl_gpt_restage_kill}/other-policy ${bl_gpt_restage_kill}/ckpt env BALLAST_LOG=info
            ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --pp 2 --micro-batches 2
            --policy bandit --rebalance-every 2 --checkpoint-dir ${bl_gpt_restage_kill}/other-policy
            --resume
    REQUIRES gpt_ckpt_kill_pp2_restage)
bl_cli_test(gpt_kill_resume1 EXIT 0
    MATCH "^gpt-checkpoint: killed at 0:9, resumed from step 8: equal bit for bit$"
    COMMAND sh ${bl_gpt_ckpt_script} kill ${bl_gpt_ckpt}/kill1 ${BL_CLI_OUT}/gpt_ref.bin 0:9 4
            -- ${BL_CLI_TRAIN} ${bl_gpt_run}
    REQUIRES gpt_ref SETUP gpt_ckpt_kill1)

# SIGUSR1 to rank 1 after step 9 stops both ranks there with a checkpoint
# (exit 3); resumed on one process, the saved shards 3,5 no longer apply (an
# info line says so) and the model ends within the tolerance of one
# process's.
bl_cli_test(gpt_signal_stop EXIT 3
    MATCH "^stopped: after step 9 by a signal. checkpoint .*/ckpt-000000000010$"
    COMMAND env BALLAST_TEST_SIGNAL_AT=1:9 ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_gpt_run} --shards 3,5 --checkpoint-dir ${bl_gpt_ckpt}/signal2
    REQUIRES cli_out SETUP gpt_ckpt_signal2)
bl_cli_test(gpt_resume_np1 EXIT 0
    MATCH "resumed from .*/ckpt-000000000010 at step 10 .saved on 2 ranks."
          "shard plan 3,5 was saved on 2 ranks; this run has 1 rank, so the plan starts as 8"
          "^summary: steps=20 "
    COMMAND env BALLAST_LOG=info ${BL_CLI_TRAIN} ${bl_gpt_run}
            --checkpoint-dir ${bl_gpt_ckpt}/signal2 --resume
            --save-model ${BL_CLI_OUT}/gpt_resumed_np1.bin
    REQUIRES gpt_ckpt_signal2 SETUP gpt_ckpt_resumed_np1)
bl_cli_test(gpt_resume_np1_equals_one_process EXIT 0 MATCH "worst tensor"
    COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/gpt_resumed_np1.bin
            ${BL_CLI_OUT}/gpt_ref.bin 1e-5 1e-4
    REQUIRES gpt_ref gpt_ckpt_resumed_np1)

# A 2-stage pipeline's checkpoint (every stage's units, made whole before
# the save) resumes on one process and ends within the tolerance of one
# process's model: the optimizer state reshards onto the other layout, and
# the saved 2-stage map gives way to the one stage (an info line says so).
bl_cli_test(gpt_signal_stop_pp2 EXIT 3
    MATCH "^stopped: after step 9 by a signal. checkpoint .*/ckpt-000000000010$"
    COMMAND env BALLAST_TEST_SIGNAL_AT=1:9 ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_gpt_run} --pp 2 --micro-batches 3 --checkpoint-dir ${bl_gpt_ckpt}/signal_pp2
    REQUIRES cli_out SETUP gpt_ckpt_signal_pp2)
bl_cli_test(gpt_resume_pp2_np1 EXIT 0
    MATCH "resumed from .*/ckpt-000000000010 at step 10"
          "stage map 0-1,2-3 was saved for 2 stages. this run has 1, so the balanced map 0-3 is used"
          "^summary: steps=20 "
    COMMAND env BALLAST_LOG=info ${BL_CLI_TRAIN} ${bl_gpt_run}
            --checkpoint-dir ${bl_gpt_ckpt}/signal_pp2 --resume
            --save-model ${BL_CLI_OUT}/gpt_resumed_pp2_np1.bin
    REQUIRES gpt_ckpt_signal_pp2 SETUP gpt_ckpt_resumed_pp2_np1)
bl_cli_test(gpt_resume_pp2_np1_equals_one_process EXIT 0 MATCH "worst tensor"
    COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/gpt_resumed_pp2_np1.bin
            ${BL_CLI_OUT}/gpt_ref.bin 1e-5 1e-4
    REQUIRES gpt_ref gpt_ckpt_resumed_pp2_np1)
set_tests_properties(cli_gpt_signal_stop_pp2 PROPERTIES LABELS "cli;mpi")

# Checkpoints cross layouts: each stage file holds its stage's units, and a
# resume reads the units it holds from whichever files hold them. A
# checkpoint of 2 stages (gpt_signal_stop_pp2's), of 3, and of one process,
# each of step 10, resumes on other numbers of stages, under stage-local
# memory (the default) and whole, with 2 pipelines of 2 stages, and on one
# process, and each run ends within the tolerance of one process's model.
bl_cli_test(gpt_signal_stop_np1 EXIT 3
    MATCH "^stopped: after step 9 by a signal. checkpoint .*/ckpt-000000000010$"
    COMMAND env BALLAST_TEST_SIGNAL_AT=0:9 ${BL_CLI_TRAIN} ${bl_gpt_run}
            --checkpoint-dir ${bl_gpt_ckpt}/signal_np1
    REQUIRES cli_out SETUP gpt_ckpt_signal_np1)
bl_cli_test(gpt_signal_stop_pp3 EXIT 3
    MATCH "^stopped: after step 9 by a signal. checkpoint .*/ckpt-000000000010$"
    COMMAND env BALLAST_TEST_SIGNAL_AT=1:9 ${BL_MPIRUN} 3 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_gpt_run} --pp 3 --checkpoint-dir ${bl_gpt_ckpt}/signal_pp3
    REQUIRES cli_out SETUP gpt_ckpt_signal_pp3)
set_tests_properties(cli_gpt_signal_stop_np1 cli_gpt_signal_stop_pp3 PROPERTIES LABELS "cli;mpi")
# bl_gpt_resume_case(NAME FROM RANKS MATCH FLAGS...): resumes the step-10
# checkpoint of signal_FROM (copied alone) on RANKS ranks with FLAGS; the
# log must match MATCH, and the model one process's.
function(bl_gpt_resume_case name from ranks match)
    set(dir ${bl_gpt_ckpt}/resume_${name})
    bl_cli_test(gpt_resume_${name} EXIT 0
        MATCH "resumed from .*/ckpt-000000000010 at step 10" "${match}" "^summary: steps=20 "
        COMMAND sh -c "rm -rf \"$0\" && mkdir -p \"$0\" && cp -r \"$1\" \"$0\" && shift && exec \"$@\""
                ${dir} ${bl_gpt_ckpt}/signal_${from}/ckpt-000000000010 env BALLAST_LOG=info
                ${BL_MPIRUN} ${ranks} --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} ${ARGN}
                --checkpoint-dir ${dir} --resume --save-model ${BL_CLI_OUT}/gpt_resume_${name}.bin
        REQUIRES gpt_ckpt_signal_${from} SETUP gpt_resume_${name})
    bl_cli_test(gpt_resume_${name}_equals_one_process EXIT 0 MATCH "worst tensor"
        COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/gpt_resume_${name}.bin
                ${BL_CLI_OUT}/gpt_ref.bin 1e-5 1e-4
        REQUIRES gpt_ref gpt_resume_${name})
    set_tests_properties(cli_gpt_resume_${name} cli_gpt_resume_${name}_equals_one_process
        PROPERTIES LABELS "cli;mpi")
endfunction()
set(bl_gpt_other_stages "stage map .* was saved for [0-9] stages?. this run has [0-9]")
bl_gpt_resume_case(pp2_pp3 pp2 3 "${bl_gpt_other_stages}" --pp 3)
bl_gpt_resume_case(pp2_pp4 pp2 4 "${bl_gpt_other_stages}" --pp 4)
bl_gpt_resume_case(pp3_pp2_whole pp3 2 "${bl_gpt_other_stages}" --pp 2 --stage-memory whole)
bl_gpt_resume_case(pp3_np1 pp3 1 "${bl_gpt_other_stages}")
bl_gpt_resume_case(np1_pp2 np1 2 "saved on 1 ranks" --pp 2)
bl_gpt_resume_case(np1_pp3 np1 3 "saved on 1 ranks" --pp 3)
bl_gpt_resume_case(np1_pp2x2 np1 4 "saved on 1 ranks" --pp 2)

# The shard policy's learned state travels in the checkpoint: a bandit
# policy (rank 1 emulated 2x slower) goes on from it after a resume on the
# same ranks.
bl_cli_test(gpt_policy_state_save EXIT 0 MATCH "^summary: steps=12 "
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --steps 12
            --policy bandit --rebalance-every 3 --emulate-slowdown 1:2
            --checkpoint-dir ${bl_gpt_ckpt}/policy
    REQUIRES cli_out SETUP gpt_ckpt_policy)
bl_cli_test(gpt_policy_state_resume EXIT 0
    MATCH "resume: the shard policy goes on from its saved state" "^summary: steps=16 "
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run}
            --steps 16 --policy bandit --rebalance-every 3 --emulate-slowdown 1:2
            --checkpoint-dir ${bl_gpt_ckpt}/policy --resume
    REQUIRES gpt_ckpt_policy)

# A damaged newest checkpoint (truncated) and a damaged next one (a byte
# flipped) are skipped, each with a warning naming the file and the fault;
# the run resumes from the one before and still ends bit for bit.
bl_cli_test(gpt_resume_damaged EXIT 0
    MATCH "warn: resume: skipping .*/ckpt-000000000020: checkpoint file .*/lm.bin: .*more than the file holds"
          "warn: resume: skipping .*/ckpt-000000000016: checkpoint file .*/lm.bin: .*checksum mismatch"
          "resumed from .*/ckpt-000000000012 at step 12" "^summary: steps=20 "
    COMMAND sh ${bl_gpt_ckpt_script} damage ${bl_gpt_ckpt}/kill1/ckpt ${bl_gpt_ckpt}/damaged
            -- ${BL_CLI_TRAIN} ${bl_gpt_run}
    REQUIRES gpt_ckpt_kill1 SETUP gpt_ckpt_damaged)
bl_cli_test(gpt_resume_damaged_bitwise COMPARE same ${bl_gpt_ckpt}/damaged/final.bin
    ${BL_CLI_OUT}/gpt_ref.bin REQUIRES gpt_ckpt_damaged gpt_ref)

# A damaged stage file (a checkpoint of 2 stages: lm.bin, stage-0-of-2.bin
# and stage-1-of-2.bin, from gpt_kill_resume_pp2) makes the newest
# checkpoint skipped, with a warning naming the file and the fault, whether
# the file is missing, truncated, has a byte flipped, or does not match the
# manifest's record of it (a byte appended: its length; the previous
# checkpoint's file of the same stage, of the same length: its UNITS
# section, of another step); the run resumes from the one before and still
# ends bit for bit.
foreach(case "missing|cannot open it"
             "truncated|[0-9]+ bytes. the manifest .*/lm.bin records [0-9]+"
             "flipped|checksum mismatch"
             "grown|[0-9]+ bytes. the manifest .*/lm.bin records [0-9]+"
             "swapped|UNITS section: step 16, stage 1 of 2, units .2, 4.. the manifest .*/lm.bin records step 20")
    string(REPLACE "|" ";" fields "${case}")
    list(POP_FRONT fields how regex)
    bl_cli_test(gpt_resume_stage_file_${how} EXIT 0
        MATCH "warn: resume: skipping .*/ckpt-000000000020: checkpoint file .*/ckpt-000000000020/stage-1-of-2[.]bin: .*${regex}"
              "resumed from .*/ckpt-000000000016 at step 16" "^summary: steps=20 "
        COMMAND sh ${bl_gpt_ckpt_script} shard ${how} ${bl_gpt_ckpt}/kill_pp2/ckpt
                ${bl_gpt_ckpt}/stage_file_${how} -- ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN}
                ${bl_gpt_run} --pp 2 --micro-batches 3
        REQUIRES gpt_ckpt_kill_pp2 SETUP gpt_ckpt_stage_file_${how})
    bl_cli_test(gpt_resume_stage_file_${how}_bitwise COMPARE same
        ${bl_gpt_ckpt}/stage_file_${how}/final.bin ${BL_CLI_OUT}/gpt_pp2_1f1b_m3.bin
        REQUIRES gpt_ckpt_stage_file_${how} gpt_pp2_1f1b_m3)
    set_tests_properties(cli_gpt_resume_stage_file_${how} cli_gpt_resume_stage_file_${how}_bitwise
        PROPERTIES LABELS "cli;mpi")
endforeach()

# A checkpoint of another run is refused, naming the field and both values.
foreach(case "n_embd|channels C = 32. this run has channels C = 64|--n-embd|64"
             "seq_len|sequence length T = 16. this run has sequence length T = 8|--seq-len|8"
             "seed|seed 1. this run has seed 7|--seed|7"
             "shuffle|shuffle on. this run has shuffle off|--shuffle|off")
    string(REPLACE "|" ";" fields "${case}")
    list(POP_FRONT fields cname regex)
    bl_cli_test(gpt_resume_other_${cname} EXIT 1
        MATCH "mismatch.*resume: .*lm.bin was saved with ${regex}"
        "!^summary"
        COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} ${fields} --checkpoint-dir ${bl_gpt_ckpt}/kill1/ckpt
                --resume
        REQUIRES gpt_ckpt_kill1)
endforeach()

# The two trainers never take each other's checkpoints: GPT-2 refuses the
# MLP's (exit 1, naming it), and the MLP skips GPT-2's with a warning and
# starts from step 0 (in a copy, which its own checkpoint then joins: the
# pruning counts each trainer's checkpoints apart, so all 4 stay).
bl_cli_test(gpt_ckpt_mlp_save EXIT 0 MATCH "^summary: steps=2 "
    COMMAND ${BL_CLI_TRAIN} ${bl_dp_run} --steps 2 --checkpoint-dir ${bl_gpt_ckpt}/mlp
    REQUIRES cli_data_good cli_out SETUP gpt_ckpt_mlp)
bl_cli_test(gpt_resume_mlp_checkpoint EXIT 1
    MATCH "mismatch.*checkpoint .*/mlp/ckpt-000000000002 is the layer trainer's .manifest.bin., not the language-model trainer's"
          "!^summary"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --checkpoint-dir ${bl_gpt_ckpt}/mlp --resume
    REQUIRES gpt_ckpt_mlp)
bl_cli_test(mlp_resume_gpt_checkpoint EXIT 0
    MATCH "warn: resume: skipping .*/ckpt-000000000020: checkpoint .* holds the language-model trainer's state .lm.bin., not the layer trainer's"
          "resume: no checkpoint in .*; starting from step 0" "^summary: steps=2 "
    COMMAND sh -c "rm -rf \"$0\" && cp -r \"$1\" \"$0\" && shift && exec \"$@\""
            ${bl_gpt_ckpt}/gpt-for-mlp ${bl_gpt_ckpt}/kill1/ckpt env BALLAST_LOG=info
            ${BL_CLI_TRAIN} ${bl_dp_run} --steps 2 --checkpoint-dir ${bl_gpt_ckpt}/gpt-for-mlp
            --resume
    REQUIRES cli_data_good gpt_ckpt_kill1 SETUP gpt_ckpt_gpt_for_mlp)
bl_cli_test(mlp_checkpoint_beside_gpt EXIT 0
    MATCH "^ckpt-000000000002 ckpt-000000000012 ckpt-000000000016 ckpt-000000000020 $"
    COMMAND sh -c "cd \"$0\" && ls -d ckpt-* | tr '\\n' ' ' && echo" ${bl_gpt_ckpt}/gpt-for-mlp
    REQUIRES gpt_ckpt_gpt_for_mlp)

set_tests_properties(cli_gpt_kill_resume2 cli_gpt_kill_resume1 cli_gpt_signal_stop
    cli_gpt_kill_resume_pp2_restage cli_gpt_kill_resume_pp2_restage_map
    cli_gpt_kill_resume_pp2_restage_telemetry cli_gpt_resume_pp2_other_policy
    cli_gpt_resume_np1 cli_gpt_resume_np1_equals_one_process cli_gpt_resume_damaged
    cli_gpt_resume_damaged_bitwise cli_gpt_resume_other_n_embd cli_gpt_resume_other_seq_len
    cli_gpt_resume_other_seed cli_gpt_resume_other_shuffle cli_gpt_ckpt_mlp_save
    cli_gpt_resume_mlp_checkpoint cli_mlp_resume_gpt_checkpoint cli_mlp_checkpoint_beside_gpt
    cli_gpt_policy_state_save cli_gpt_policy_state_resume PROPERTIES LABELS "cli;mpi")

# The same in one process through the C API (label unit): a resumed trainer
# goes on bit for bit; every cut and bit flip of the newest file's first
# bytes (and a sample beyond) is skipped for the older checkpoint; another
# seed or shape, or a layer trainer's checkpoint, is BL_ERR_MISMATCH; a
# malformed STAGES section is skipped naming the entry, a file without one
# (format version 2) still resumes, and a map of another stage count is
# not taken.
bl_unit_test(test_lm_checkpoint)
target_link_libraries(test_lm_checkpoint PRIVATE ZLIB::ZLIB) # the rewritten files' CRC32s

# The node-then-network reduction for GPT-2 (runtime/lm/lm_node.c) on pretend
# nodes (BALLAST_PRETEND_NODES): shared memory within each, the slices
# all-reduced across them, the norm from every node's slices. Each equals one
# process, and the log shows the path ran.
function(bl_gpt_node_case name ranks nodes)
    math(EXPR per "${ranks} / ${nodes}")
    bl_cli_test(gpt_node_${name} EXIT 0
        MATCH "^summary: steps=20 "
              "gradient reduction: shared memory within ${nodes} pretend nodes of ${per} ranks, then MPI across nodes"
        COMMAND env BALLAST_PRETEND_NODES=${nodes} BALLAST_LOG=info ${BL_MPIRUN} ${ranks}
                --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} ${ARGN}
                --save-model ${BL_CLI_OUT}/gpt_node_${name}.bin
        REQUIRES cli_out SETUP gpt_node_${name})
    bl_cli_test(gpt_node_${name}_equals_one_process EXIT 0 MATCH "worst tensor"
        COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/gpt_node_${name}.bin
                ${BL_CLI_OUT}/gpt_ref.bin 1e-5 1e-4
        REQUIRES gpt_ref gpt_node_${name})
    set_tests_properties(cli_gpt_node_${name} cli_gpt_node_${name}_equals_one_process
        PROPERTIES LABELS "cli;mpi")
endfunction()

bl_gpt_node_case(np2_nodes2 2 2 --shards 3,5)
bl_gpt_node_case(np4_nodes2 4 2 --shards 1,3,0,4)
