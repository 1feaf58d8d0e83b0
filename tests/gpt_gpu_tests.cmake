# GPT-2 on a GPU through ballast-train --model gpt2 --device cuda (labels
# gpu;mpi): the model, its gradients, AdamW moments and activations in GPU
# memory, the transformer's CUDA kernels doing the passes, the norm and the
# update (runtime/lm/lm_device.c), against CPU twins of the same run:
#   one_rank     one GPU rank, against the one-process CPU model (gpt_ref);
#   one_layers   one GPU rank with two adapters (one inside block 2), against
#                gpt_device_cpu1: the llm.c file, the adapters' file and the
#                val_loss values;
#   mixed2       rank 0 on the CPU, rank 1 on the GPU, uneven shards, against
#                gpt_device_cpu2 (the file and the val_loss values): the
#                GPU's gradient sums go through host memory to the MPI
#                all-reduce and its parameters must stay the CPU rank's;
#   shared2      two GPU ranks on one GPU (a one-GPU machine cannot give each
#                rank its own), uneven shards, against gpt_device_cpu2;
#   one_bf16     one GPU rank with --precision bf16 and the two adapters,
#                against the mirror's bf16 run (gpt_device_mirror1_bf16);
#   mixed2_bf16  rank 0 on the CPU (fp32), rank 1 on the GPU (bf16), against
#                the mixed CPU + mirror bf16 run (gpt_device_mixed2_bf16);
#                the replicas must stay bit-equal (the run's end checks).
# Every run is bl_gpt_run (20 steps of AdamW with warm-up, cosine decay and
# clipping) evaluating at step 10 and at the end, so that its twins are the
# CPU runs that gpt_tests.cmake and gpt_device_tests.cmake already make.
# Where no GPU is visible every test prints "skipped: no GPU visible: REASON"
# and exits 77 (tests/gpu_or_skip.sh), which ctest reports as skipped.
# Included after gpu_tests.cmake (gpu_probe, bl_gpu_env, BL_GPU_RTOL and
# BL_GPU_ATOL), gpt_tests.cmake (bl_gpt_run, compare_gpt2, gpt_ref) and
# gpt_device_tests.cmake (gpt_device.sh, bl_gpt_dev_layers and the twins
# with their logs).
if(BALLAST_HAVE_CUDA)
    # Tolerances against the CPU twin. The CPU layouts of gpt_tests.cmake
    # hold 1e-5 per tensor in relative norm (measured within 2.3e-7): they
    # only reorder float32 sums. A GPU also rounds differently inside each
    # operation: cuBLAS blocks and orders the k-term sums of its GEMMs its
    # own way, with FMAs; the device's expf, tanhf and logf differ from
    # libm's by a few ulps; LayerNorm's statistics, the loss and the
    # gradient norm sum in other orders; and AdamW carries every step's
    # differences into the next 20. 1e-4 leaves an order of magnitude above
    # the CPU layouts' limit. A real fault lands far above it: one AdamW
    # step moves each weight by about lr (1e-3 at this schedule's peak)
    # against weights of about 0.02, some 5e-2 in relative norm, so a step
    # lost or doubled, a gradient left unscaled or unclipped, a stale upload
    # or a kernel off by a percent shows by orders of magnitude. The key
    # bias keeps the CPU tests' absolute 1e-4 (compare_gpt2 says why). The
    # val_loss values (means over 16 held-out sequences, printed with 6
    # decimals) are held to 1e-4 relative as well: parameters within 1e-4
    # move them less, and the faults above move their second or third digit.
    # The adapters' file (raw float32) is compared element by element with
    # the MLP GPU tests' |gpu - cpu| <= BL_GPU_ATOL + BL_GPU_RTOL·|cpu|.
    set(BL_GPT_GPU_RTOL 1e-4)
    set(BL_GPT_GPU_KEY_ATOL 1e-4)
    set(BL_GPT_GPU_VAL_RTOL 1e-4)

    # bf16 runs against their mirror twins: both round every operand to the
    # same bf16, but the fp32 sums inside the products run in other orders,
    # so now and then an activation lands on the other side of a bf16
    # rounding boundary and its product moves by 2^-8 relative; AdamW then
    # carries such differences through 20 steps. 1e-2 per tensor (relative
    # norm; the key bias 1e-2 absolute) and 1e-3 on the val_loss bound them
    # with room and still catch a lost, doubled or unscaled step (5e-2). The
    # operand rounding itself is checked kernel by kernel, far tighter, by
    # test_cuda_bf16.
    set(BL_GPT_GPU_BF16_RTOL 1e-2)
    set(BL_GPT_GPU_BF16_VAL_RTOL 1e-3)

    # bl_gpt_gpu_case(NAME RANKS TWIN [LAYERS] [LOG] [RTOL X] [KEY_ATOL X]
    # [VAL_RTOL X] [MATCH REGEX...] FLAGS FLAG...): trains bl_gpt_run --val-every 10 FLAGS on RANKS ranks into
    # gpt_gpu_NAME.bin (its log in gpt_gpu_NAME.log), wanting every MATCH
    # and a finite val_loss in its summary, then compares the file with
    # ${BL_CLI_OUT}/TWIN.bin (test cli_gpt_gpu_NAME_close), with LAYERS the
    # adapters' files too (cli_gpt_gpu_NAME_layers_close) and with LOG the
    # val_loss values of TWIN.log (cli_gpt_gpu_NAME_val_loss_close). The
    # twin's fixture is TWIN. RTOL, KEY_ATOL and VAL_RTOL replace the fp32
    # tolerances above. Every test skips (77) where no GPU is visible;
    # the comparisons ask the probe too, since a skipped run leaves no file.
    function(bl_gpt_gpu_case name ranks twin)
        cmake_parse_arguments(G "LAYERS;LOG" "RTOL;KEY_ATOL;VAL_RTOL" "MATCH;FLAGS" ${ARGN})
        foreach(tol RTOL KEY_ATOL VAL_RTOL)
            if(NOT DEFINED G_${tol})
                set(G_${tol} ${BL_GPT_GPU_${tol}})
            endif()
        endforeach()
        set(skip sh ${CMAKE_CURRENT_SOURCE_DIR}/gpu_or_skip.sh $<TARGET_FILE:gpu_probe> 1 --)
        set(run ${BL_CLI_OUT}/gpt_gpu_${name})
        set(ref ${BL_CLI_OUT}/${twin})
        bl_cli_test(gpt_gpu_${name} EXIT 0
            MATCH "^summary: steps=20 .* val_loss=[0-9]+[.][0-9]+" ${G_MATCH}
            COMMAND ${skip} sh ${bl_gpt_dev_script} log ${run}.log -- ${BL_MPIRUN} ${ranks}
                    --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} --val-every 10 ${G_FLAGS}
                    --save-model ${run}.bin
            REQUIRES cli_out SETUP gpt_gpu_${name})
        bl_cli_test(gpt_gpu_${name}_close EXIT 0 MATCH "worst tensor"
            COMMAND ${skip} $<TARGET_FILE:compare_gpt2> ${run}.bin ${ref}.bin ${G_RTOL}
                    ${G_KEY_ATOL}
            REQUIRES ${twin} gpt_gpu_${name})
        set(tests cli_gpt_gpu_${name} cli_gpt_gpu_${name}_close)
        if(G_LAYERS)
            bl_cli_test(gpt_gpu_${name}_layers_close EXIT 0 MATCH " 0 outside "
                COMMAND ${skip} $<TARGET_FILE:compare_params> ${run}.bin.layers
                        ${ref}.bin.layers ${BL_GPU_RTOL} ${BL_GPU_ATOL}
                REQUIRES ${twin} gpt_gpu_${name})
            list(APPEND tests cli_gpt_gpu_${name}_layers_close)
        endif()
        if(G_LOG)
            bl_cli_test(gpt_gpu_${name}_val_loss_close EXIT 0
                MATCH "^val_loss: val_loss=[0-9.]+ val_loss=[0-9.]+ [|]"
                      "^val_loss: largest relative difference "
                COMMAND ${skip} sh ${bl_gpt_dev_script} close-val-loss ${run}.log ${ref}.log
                        ${G_VAL_RTOL}
                REQUIRES ${twin} gpt_gpu_${name})
            list(APPEND tests cli_gpt_gpu_${name}_val_loss_close)
        endif()
        # GPU set-up takes seconds, more than the CPU runs' 60 s budget allows
        # for on a loaded machine.
        set_tests_properties(${tests} PROPERTIES LABELS "gpu;mpi" SKIP_RETURN_CODE 77
            TIMEOUT 180 ENVIRONMENT "${bl_gpu_env}")
    endfunction()

    # The log places the model on the GPU, so that no comparison is vacuous.
    bl_gpt_gpu_case(one_rank 1 gpt_ref
        MATCH "GPT-2: the model lives in a device's memory on 1 of 1 rank.s. .1 on GPUs, 0 on other devices. rank 0: cuda:0 "
        FLAGS --device cuda)
    bl_gpt_gpu_case(one_layers 1 gpt_device_cpu1 LAYERS LOG
        MATCH "GPT-2: the model lives in a device's memory on 1 of 1 rank.s. .1 on GPUs, 0 on other devices. rank 0: cuda:0 "
        FLAGS ${bl_gpt_dev_layers} --device cuda)
    bl_gpt_gpu_case(mixed2 2 gpt_device_cpu2 LOG
        MATCH "gradient reduction: MPI all-reduce .a model lives in a device's memory."
              "on 1 of 2 rank.s. .1 on GPUs, 0 on other devices. rank 0: cpu.. their gradient sums go to the MPI all-reduces through host memory"
        FLAGS --device cpu,cuda --shards 3,5)
    bl_gpt_gpu_case(shared2 2 gpt_device_cpu2 LOG
        MATCH "on 2 of 2 rank.s. .2 on GPUs, 0 on other devices. rank 0: cuda:0 "
        FLAGS --device cuda --shards 3,5)
    bl_gpt_gpu_case(one_bf16 1 gpt_device_mirror1_bf16 LOG RTOL ${BL_GPT_GPU_BF16_RTOL}
        KEY_ATOL ${BL_GPT_GPU_BF16_RTOL} VAL_RTOL ${BL_GPT_GPU_BF16_VAL_RTOL}
        MATCH "precision bf16: 1 of 1 rank.s. run their products with bf16 operands"
        FLAGS ${bl_gpt_dev_layers} --device cuda --precision bf16)
    bl_gpt_gpu_case(mixed2_bf16 2 gpt_device_mixed2_bf16 RTOL ${BL_GPT_GPU_BF16_RTOL}
        KEY_ATOL ${BL_GPT_GPU_BF16_RTOL}
        MATCH "precision bf16: 1 of 2 rank.s. run their products with bf16 operands .*; the CPU ranks compute in fp32"
        FLAGS --device cpu,cuda --shards 3,5 --precision bf16)
endif()
