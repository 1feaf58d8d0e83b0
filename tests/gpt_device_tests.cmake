# GPT-2 in a device's memory through ballast-train --model gpt2 --device
# (labels cli;mpi), on the mirror device, which computes with the CPU's
# kernels on memory of its own and moves its data as a GPU rank does
# (runtime/lm/lm_device.c): the model, its gradients, AdamW moments and
# activations live there, each step's tokens are uploaded, and the gradient
# sums are downloaded, all-reduced with MPI and uploaded again. The kernels
# and their order are the CPU's, so every run here equals its CPU twin BIT
# FOR BIT (the llm.c model file, the user layers' file and every printed
# val_loss): one process with two adapters, two mirror ranks with uneven
# shards, and a mixed job (rank 0 on the CPU, rank 1 on the mirror). The CPU
# twins of the two-rank jobs all-reduce (--node-reduce off), as any job with
# a device rank does (its log says so). A mixed job whose shard policy moves
# sequences (the telemetry shows it) equals one process within float32
# summation order, as the CPU jobs of gpt_tests.cmake do. Kill-and-resume on
# the mirror is bit for bit. What is not supported on a device is refused
# naming the rank and the device. Included after gpt_layers_tests.cmake
# (bl_gpt_run, compare_gpt2, gpt_checkpoint.sh).

set(bl_gpt_dev_script ${CMAKE_CURRENT_SOURCE_DIR}/gpt_device.sh)
set(bl_gpt_dev_layers --adapter 1:4 --adapter-inside 2:2)

# bl_gpt_device_run(NAME RANKS [MATCH REGEX...] [FLAGS FLAG...]): trains
# bl_gpt_run (evaluating at step 10 and at the end) on RANKS ranks into
# gpt_device_NAME.bin, its log kept in gpt_device_NAME.log.
function(bl_gpt_device_run name ranks)
    cmake_parse_arguments(C "" "" "MATCH;FLAGS" ${ARGN})
    bl_cli_test(gpt_device_${name} EXIT 0 MATCH "^summary: steps=20 " ${C_MATCH}
        COMMAND sh ${bl_gpt_dev_script} log ${BL_CLI_OUT}/gpt_device_${name}.log --
                env BALLAST_LOG=info ${BL_MPIRUN} ${ranks} --oversubscribe ${BL_CLI_TRAIN}
                ${bl_gpt_run} --val-every 10 ${C_FLAGS}
                --save-model ${BL_CLI_OUT}/gpt_device_${name}.bin
        REQUIRES cli_out SETUP gpt_device_${name})
    set_tests_properties(cli_gpt_device_${name} PROPERTIES LABELS "cli;mpi")
endfunction()

# bl_gpt_device_same(NAME TWIN [LAYERS]): gpt_device_NAME's model file (and
# with LAYERS its user layers' file) equals gpt_device_TWIN's byte for byte,
# and its log prints the same val_loss values.
function(bl_gpt_device_same name twin)
    set(files ${BL_CLI_OUT}/gpt_device_${name} ${BL_CLI_OUT}/gpt_device_${twin})
    list(TRANSFORM files APPEND .bin OUTPUT_VARIABLE models)
    list(TRANSFORM files APPEND .log OUTPUT_VARIABLE logs)
    bl_cli_test(gpt_device_${name}_model_same COMPARE same ${models}
        REQUIRES gpt_device_${name} gpt_device_${twin})
    bl_cli_test(gpt_device_${name}_val_loss_same EXIT 0
        MATCH "^val_loss: val_loss=[0-9.]+ val_loss=[0-9.]+ [|]"
        COMMAND sh ${bl_gpt_dev_script} same-val-loss ${logs}
        REQUIRES gpt_device_${name} gpt_device_${twin})
    set(tests cli_gpt_device_${name}_model_same cli_gpt_device_${name}_val_loss_same)
    if(LAYERS IN_LIST ARGN)
        list(TRANSFORM models APPEND .layers OUTPUT_VARIABLE layers)
        bl_cli_test(gpt_device_${name}_layers_same COMPARE same ${layers}
            REQUIRES gpt_device_${name} gpt_device_${twin})
        list(APPEND tests cli_gpt_device_${name}_layers_same)
    endif()
    set_tests_properties(${tests} PROPERTIES LABELS "cli;mpi")
endfunction()

# One process with two adapters (one inside block 2): the adapters run on
# the device (their scratch in its memory), and the log places the model on
# it, so that the equality is not vacuous.
bl_gpt_device_run(cpu1 1 FLAGS ${bl_gpt_dev_layers})
bl_gpt_device_run(mirror1 1
    MATCH "GPT-2: the model lives in a device's memory on 1 of 1 rank.s. .0 on GPUs, 1 on other devices; rank 0: mirror.$"
    FLAGS ${bl_gpt_dev_layers} --device mirror)
bl_gpt_device_same(mirror1 cpu1 LAYERS)

# Two ranks, uneven shards: both on the mirror, and rank 1 alone on it. The
# node-local reduction gives way to the all-reduce on a job with a device
# rank.
bl_gpt_device_run(cpu2 2 FLAGS --shards 3,5 --node-reduce off)
bl_gpt_device_run(mirror2 2
    MATCH "gradient reduction: MPI all-reduce .a model lives in a device's memory."
          "on 2 of 2 rank.s. .0 on GPUs, 2 on other devices; rank 0: mirror.; their gradient sums go to the MPI all-reduces through host memory"
    FLAGS --device mirror --shards 3,5)
bl_gpt_device_same(mirror2 cpu2)
bl_gpt_device_run(mixed2 2
    MATCH "gradient reduction: MPI all-reduce .a model lives in a device's memory."
          "on 1 of 2 rank.s. .0 on GPUs, 1 on other devices; rank 0: cpu."
    FLAGS --device cpu,mirror --shards 3,5)
bl_gpt_device_same(mixed2 cpu2)

# The mixed job under the proportional policy with the mirror rank emulated
# 3x slower: the telemetry's shards take more than one value (the policy
# moved sequences), and the model equals one process's within the
# tolerance of gpt_tests.cmake (a moved shard sums in another order).
bl_gpt_device_run(mixed2_policy 2
    FLAGS --device cpu,mirror --policy proportional --rebalance-every 2 --emulate-slowdown 1:3
          --telemetry ${BL_CLI_OUT}/gpt_device_mixed2_policy.jsonl)
bl_cli_test(gpt_device_mixed2_policy_moved EXIT 0 MATCH "^true$"
    COMMAND ${JQ} -s -e "[.[].shards] | unique | length > 1"
            ${BL_CLI_OUT}/gpt_device_mixed2_policy.jsonl
    REQUIRES gpt_device_mixed2_policy)
bl_cli_test(gpt_device_mixed2_policy_equals_one_process EXIT 0 MATCH "worst tensor"
    COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/gpt_device_mixed2_policy.bin
            ${BL_CLI_OUT}/gpt_ref.bin 1e-5 1e-4
    REQUIRES gpt_ref gpt_device_mixed2_policy)

# Kill-and-resume on the mirror (tests/gpt_checkpoint.sh): the checkpoint is
# written from the downloaded state and the resume uploads it; the resumed
# run ends with the uninterrupted CPU twin's files, bit for bit (the layers'
# file too).
bl_cli_test(gpt_device_kill_resume_mirror1 EXIT 0
    MATCH "^gpt-checkpoint: killed at 0:9, resumed from step 8: equal bit for bit$"
    COMMAND sh ${bl_gpt_ckpt_script} kill ${bl_gpt_ckpt}/device_mirror1
            ${BL_CLI_OUT}/gpt_device_cpu1.bin 0:9 4 -- ${BL_CLI_TRAIN} ${bl_gpt_run}
            ${bl_gpt_dev_layers} --device mirror
    REQUIRES gpt_device_cpu1)
bl_cli_test(gpt_device_kill_resume_mirror2 EXIT 0
    MATCH "^gpt-checkpoint: killed at 1:13, resumed from step 12: equal bit for bit$"
    COMMAND sh ${bl_gpt_ckpt_script} kill ${bl_gpt_ckpt}/device_mirror2
            ${BL_CLI_OUT}/gpt_device_cpu2.bin 1:13 4 -- ${BL_MPIRUN} 2 --oversubscribe
            ${BL_CLI_TRAIN} ${bl_gpt_run} --device mirror --shards 3,5
    REQUIRES gpt_device_cpu2)

# bf16 autocast (--precision bf16) on the mirror device, whose products
# round their operands to bf16 (kernels/bf16.c, the GPU's reference twin):
#   - one process with the two adapters: the log says that its products
#     take bf16 operands; the model stays within bf16's reach of the fp32
#     CPU twin's (3e-2 per tensor in relative norm, measured 7.7e-3 at
#     worst, on ln1b, whose values start at 0; the key bias within 1e-2) and
#     the val_loss values within 1e-3 relative (measured 6e-6), yet it is
#     NOT the fp32 model (the 1e-5 comparison fails: rounding happened);
#   - run twice, the same bits (bf16 stays deterministic);
#   - a mixed job, rank 0 on the CPU (fp32), rank 1 on the mirror (bf16):
#     the gradients are all-reduced in fp32 and the update is the CPU's on
#     both, so the replicas' parameters stay bit-equal (the trainer's check
#     at the end of the run fails the job otherwise) and the log says that
#     the CPU rank computes in fp32;
#   - kill-and-resume: the resumed bf16 run ends bit for bit as the
#     uninterrupted one (the checkpoint holds the fp32 master state).
bl_gpt_device_run(mirror1_bf16 1
    MATCH "precision bf16: 1 of 1 rank.s. run their products with bf16 operands and fp32 accumulation"
    FLAGS ${bl_gpt_dev_layers} --device mirror --precision bf16)
bl_cli_test(gpt_device_mirror1_bf16_close EXIT 0 MATCH "worst tensor"
    COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/gpt_device_mirror1_bf16.bin
            ${BL_CLI_OUT}/gpt_device_cpu1.bin 3e-2 1e-2
    REQUIRES gpt_device_mirror1_bf16 gpt_device_cpu1)
bl_cli_test(gpt_device_mirror1_bf16_not_fp32 EXIT 1 MATCH "worst tensor"
    COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/gpt_device_mirror1_bf16.bin
            ${BL_CLI_OUT}/gpt_device_cpu1.bin 1e-5 1e-4
    REQUIRES gpt_device_mirror1_bf16 gpt_device_cpu1)
bl_cli_test(gpt_device_mirror1_bf16_val_loss_close EXIT 0 MATCH "^val_loss: val_loss="
    COMMAND sh ${bl_gpt_dev_script} close-val-loss ${BL_CLI_OUT}/gpt_device_mirror1_bf16.log
            ${BL_CLI_OUT}/gpt_device_cpu1.log 1e-3
    REQUIRES gpt_device_mirror1_bf16 gpt_device_cpu1)
bl_gpt_device_run(mirror1_bf16_again 1 FLAGS ${bl_gpt_dev_layers} --device mirror --precision bf16)
bl_gpt_device_same(mirror1_bf16_again mirror1_bf16 LAYERS)
bl_gpt_device_run(mixed2_bf16 2
    MATCH "precision bf16: 1 of 2 rank.s. run their products with bf16 operands .*; the CPU ranks compute in fp32"
    FLAGS --device cpu,mirror --shards 3,5 --precision bf16)
bl_cli_test(gpt_device_mixed2_bf16_close EXIT 0 MATCH "worst tensor"
    COMMAND $<TARGET_FILE:compare_gpt2> ${BL_CLI_OUT}/gpt_device_mixed2_bf16.bin
            ${BL_CLI_OUT}/gpt_device_cpu2.bin 3e-2 1e-2
    REQUIRES gpt_device_mixed2_bf16 gpt_device_cpu2)
bl_cli_test(gpt_device_kill_resume_mirror1_bf16 EXIT 0
    MATCH "^gpt-checkpoint: killed at 0:9, resumed from step 8: equal bit for bit$"
    COMMAND sh ${bl_gpt_ckpt_script} kill ${bl_gpt_ckpt}/device_mirror1_bf16
            ${BL_CLI_OUT}/gpt_device_mirror1_bf16.bin 0:9 4 -- ${BL_CLI_TRAIN} ${bl_gpt_run}
            ${bl_gpt_dev_layers} --device mirror --precision bf16
    REQUIRES gpt_device_mirror1_bf16)
# bf16 asked for with no device rank: every rank computes in fp32, and the
# log warns. A precision other than fp32 or bf16, and --precision on the
# MLP, are refused naming the flag.
bl_cli_test(gpt_device_bf16_cpu_warns EXIT 0
    MATCH "warn: GPT-2: precision bf16: 0 of 1 rank.s. .*no rank computes on a device" "^summary"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --precision bf16 --steps 6)
bl_cli_test(gpt_device_precision_bad EXIT 2 MATCH "--precision: 'fp16' is neither fp32 nor bf16"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --precision fp16)
bl_cli_test(gpt_device_precision_mlp EXIT 2 MATCH "--precision needs --model gpt2"
    COMMAND ${BL_CLI_TRAIN} --precision bf16)
set_tests_properties(cli_gpt_device_mirror1_bf16_close cli_gpt_device_mirror1_bf16_not_fp32
    cli_gpt_device_mirror1_bf16_val_loss_close cli_gpt_device_mixed2_bf16_close
    cli_gpt_device_kill_resume_mirror1_bf16 PROPERTIES LABELS "cli;mpi")

# Refused, naming the rank and the device: pipelines with a device rank
# (for now), and a user layer that computes on host memory only (the token
# shift). --nccl and --data-on-device stay the MLP's.
bl_cli_test(gpt_device_pp_refused EXIT 1
    MATCH "rank 1: unsupported: rank 1 computes on mirror, but the language model's pipelines .2 stages. run on CPU ranks only for now"
          "!^summary"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --pp 2
            --device cpu,mirror)
bl_cli_test(gpt_device_host_layer_refused EXIT 1
    MATCH "user layer 0 .token_shift, after unit 0.: forward.. failed on mirror: unsupported"
          "!^summary"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --token-shift 0 --device mirror --steps 6)
bl_cli_test(gpt_device_nccl EXIT 2 MATCH "--nccl does not apply to --model gpt2"
    COMMAND ${BL_CLI_TRAIN} ${bl_gpt_run} --nccl off)
bl_cli_test(gpt_device_help EXIT 0
    MATCH "--device: a cuda or mirror rank trains the model in its device's"
    COMMAND ${BL_CLI_TRAIN} --help)
set_tests_properties(cli_gpt_device_mixed2_policy_moved
    cli_gpt_device_mixed2_policy_equals_one_process cli_gpt_device_kill_resume_mirror1
    cli_gpt_device_kill_resume_mirror2 cli_gpt_device_pp_refused PROPERTIES LABELS "cli;mpi")
