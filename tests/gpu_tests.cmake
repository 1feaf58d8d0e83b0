# Training on GPUs end to end (label gpu): data parallelism with the CUDA
# backend gives the CPU's parameters, through the library and through
# ballast-train. Built whenever the backend is; where no GPU is visible
# every test prints "skipped: no GPU visible: REASON" and exits 77, which
# ctest reports as skipped. Included after dp_tests.cmake: it reuses its
# one-process reference (fixture dp_ref, ${BL_CLI_OUT}/dp_ref.bin, made
# with ${bl_dp_run}), compare_params and ${BL_MPIRUN}, and bl_cli_test and
# the generated data from cli/cli_tests.cmake.
#
# Labels gpu;mpi, not cli: the sanitizer pass (ctest -L 'unit|cli') runs
# in a build without the backend, and nvcc's code is not instrumented.
if(BALLAST_HAVE_CUDA)
    # The library on one rank (tests/test_cuda_train.c): a built-in MLP and
    # one with a user layer of bl_math_* calls, each trained 20 steps on the
    # GPU and on the CPU, parameters, momentum, losses and accuracy compared;
    # a user layer without device passes refused by name.
    add_executable(test_cuda_train test_cuda_train.c)
    target_link_libraries(test_cuda_train PRIVATE ballast ${MATH_LIBRARY})
    add_test(NAME test_cuda_train
        COMMAND ${BL_MPIRUN} 1 --oversubscribe $<TARGET_FILE:test_cuda_train>)
    set_tests_properties(test_cuda_train PROPERTIES LABELS "gpu;mpi" TIMEOUT 180
        SKIP_RETURN_CODE 77 ENVIRONMENT "${BALLAST_TEST_ENV}")

    # ---- ballast-train on GPUs against the one-process CPU run --------------

    # gpu_probe makes a CUDA runtime as ballast-train would (tests/gpu_probe.c);
    # gpu_or_skip.sh runs it first and skips (77) where it cannot.
    add_executable(gpu_probe gpu_probe.c)
    target_link_libraries(gpu_probe PRIVATE ballast CUDA::cudart)

    # Tolerance against the CPU reference, |gpu - cpu| <= ATOL + RTOL·|cpu|
    # (compare_params A B RTOL ATOL). The CPU-only data-parallel cases hold
    # 1e-6 + 1e-5·|b|: their shard splits only reorder float32 sums, and 25
    # steps of this MLP end within 6e-8 of the reference. A GPU also rounds
    # differently: cuBLAS orders and blocks the k-term sums of its GEMMs its
    # own way, with FMAs, and the device's expf and logf differ from libm's
    # by a few ulps, so every step's values differ by up to ~k·2^-24 relative
    # (k <= 64 here) and the next steps carry that forward (lr 0.05, momentum
    # 0.9). RTOL 1e-3 leaves two orders of magnitude above that; ATOL 1e-5
    # covers parameters near zero. A real fault moves parameters by about
    # lr·|gradient| ~ 5e-4 or more (a step lost or doubled, a bucket left out
    # of the reduction, momentum not carried, a stale upload) and fails.
    set(BL_GPU_RTOL 1e-3)
    set(BL_GPU_ATOL 1e-5)

    # The device and reduction lines are info-level logs.
    set(bl_gpu_env ${BALLAST_TEST_ENV})
    list(FILTER bl_gpu_env EXCLUDE REGEX "^BALLAST_LOG=")
    list(APPEND bl_gpu_env BALLAST_LOG=info)

    # bl_gpu_case(NAME RANKS P GPUS G [MATCH REGEX...] FLAGS FLAG...): runs
    # mpirun -np P ballast-train ${bl_dp_run} FLAGS into gpu_NAME.bin, wanting
    # every MATCH in its output, then compares the file with the one-process
    # reference (test cli_gpu_NAME_equals_one_process). Both skip (77) where
    # fewer than G GPUs are visible; the comparison asks the probe too, since
    # a skipped run leaves no file to compare.
    function(bl_gpu_case name)
        cmake_parse_arguments(G "" "RANKS;GPUS" "MATCH;FLAGS" ${ARGN})
        set(skip sh ${CMAKE_CURRENT_SOURCE_DIR}/gpu_or_skip.sh $<TARGET_FILE:gpu_probe> ${G_GPUS}
                 --)
        bl_cli_test(gpu_${name} EXIT 0 MATCH "^summary: steps=25 " ${G_MATCH}
            COMMAND ${skip} ${BL_MPIRUN} ${G_RANKS} --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run}
                    ${G_FLAGS} --save-params ${BL_CLI_OUT}/gpu_${name}.bin
            REQUIRES cli_data_good cli_out SETUP gpu_${name})
        bl_cli_test(gpu_${name}_equals_one_process EXIT 0 MATCH " 0 outside "
            COMMAND ${skip} $<TARGET_FILE:compare_params> ${BL_CLI_OUT}/gpu_${name}.bin
                    ${BL_CLI_OUT}/dp_ref.bin ${BL_GPU_RTOL} ${BL_GPU_ATOL}
            REQUIRES dp_ref gpu_${name})
        # GPU and NCCL set-up take seconds, more than the CPU runs' 60 s budget
        # allows for on a loaded machine.
        set_tests_properties(cli_gpu_${name} cli_gpu_${name}_equals_one_process PROPERTIES
            LABELS "gpu;mpi" SKIP_RETURN_CODE 77 TIMEOUT 180 ENVIRONMENT "${bl_gpu_env}")
    endfunction()

    # (a) One GPU rank: device copies, CUDA kernels, no reduction.
    bl_gpu_case(one_rank RANKS 1 GPUS 1
        MATCH "device: rank 0: GPU 0 of "
        FLAGS --device cuda)
    # (b) A mixed group, one GPU and two CPU ranks, shards rebalanced by speed
    # every 5 steps: the GPU rank stages its gradient buckets through host
    # memory for MPI; the CPU ranks get no device line.
    bl_gpu_case(mixed RANKS 3 GPUS 1
        MATCH "device: rank 0: GPU 0 of "
              "gradient reduction of rank 0's group: MPI through host memory \
\\(3 ranks: 1 on GPUs, 0 on other devices, 2 on CPUs\\)"
              "!device: rank [12]:"
        FLAGS --device cuda,cpu,cpu --policy proportional --rebalance-every 5)
    # (c) Two GPU ranks with NCCL off: the staged MPI reduction of an all-GPU
    # group. NCCL needs one GPU per rank, so this is the two-rank all-GPU job
    # a one-GPU machine can run (both ranks share GPU 0 there).
    bl_gpu_case(two_ranks_mpi RANKS 2 GPUS 1
        MATCH "device: rank 0: GPU 0 of "
              "device: rank 1: GPU [01] of "
              "gradient reduction of rank 0's group: MPI through host memory \\(2 ranks: 2 on GPUs"
        FLAGS --device cuda --nccl off)
    # (d) Two GPU ranks, one GPU each, all-reducing with NCCL (the default);
    # skipped where fewer than two GPUs are visible.
    bl_gpu_case(two_ranks_nccl RANKS 2 GPUS 2
        MATCH "device: rank 0: GPU 0 of "
              "device: rank 1: GPU 1 of "
              "gradient reduction of rank 0's group: NCCL \\(2 ranks: 2 on GPUs"
        FLAGS --device cuda)
    # (e) Two GPU stages, one GPU each, passing activations and gradients
    # with NCCL send/receive groups (bl_pipe_exchanges), 1F1B and GPipe;
    # skipped where fewer than two GPUs are visible. (f) The same pipeline
    # with NCCL off goes through host memory and MPI, as it does wherever
    # two stages share a GPU (NCCL refuses two ranks on one GPU): the one
    # pipeline a one-GPU machine can run.
    bl_gpu_case(pp2_nccl RANKS 2 GPUS 2
        MATCH "pipeline transfers of rank 0's pipeline: NCCL \\(2 stages: 2 on GPUs"
        FLAGS --device cuda --pp 2 --micro-batches 3)
    bl_gpu_case(pp2_gpipe_nccl RANKS 2 GPUS 2
        MATCH "pipeline transfers of rank 0's pipeline: NCCL \\(2 stages: 2 on GPUs"
        FLAGS --device cuda --pp 2 --micro-batches 3 --schedule gpipe)
    bl_gpu_case(pp2_shared RANKS 2 GPUS 1
        MATCH "pipeline transfers of rank 0's pipeline: MPI through host memory \\(2 stages: 2 on GPUs"
        FLAGS --device cuda --pp 2 --micro-batches 3 --nccl off)
endif()
