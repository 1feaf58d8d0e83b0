# Device ranks without a GPU (labels cli;mpi): the mirror device computes
# with the CPU kernels but moves its data as a GPU rank does, so these jobs
# run the device path end to end — state uploaded, batches staged,
# gradient buckets downloaded for MPI and the sums uploaded again — in
# groups of device ranks alone and mixed with CPU ranks. The kernels are
# the CPU's, so the parameters must equal the one-process reference as
# every data-parallel case does. Included after dp_tests.cmake (bl_dp_case).

bl_dp_case(mirror1 1 --device mirror)
bl_dp_case(mirror2 2 --device mirror)
# Batches read on the host and uploaded (the training set not kept on the
# device): the same samples, so the same parameters.
bl_dp_case(mirror2_host_batches 2 --device mirror --data-on-device off)
bl_dp_case(mirror_pp2_host_batches 2 --pp 2 --micro-batches 3 --device mirror
           --data-on-device off)
bl_dp_case(mirror_mixed3 3 --device cpu,mirror,cpu --shards 0,20,12)
bl_dp_case(mirror_mixed3_buckets 3 --device mirror,cpu,mirror --shards 9,11,12
           --bucket-mb 0.000001)
# Rebalancing across a mixed group: the controller moves samples to the
# fast ranks and the math stays the reference's.
bl_dp_moves_case(mirror_mixed_policy 3 shards --device mirror,cpu,cpu --policy proportional
           --rebalance-every 5 --emulate-slowdown 2:4)
# With a device rank in the group the node-local reduction (host memory
# only) steps aside, whatever --node-reduce says.
bl_cli_test(dp_mirror_mixed_reduction EXIT 0
    MATCH "gradient reduction of rank 0's group: MPI through host memory \\(2 ranks: 0 on GPUs, 1 on other devices, 1 on CPUs\\)"
          "rank 0: the training set \\([0-9.]+ MB\\) is kept on mirror: batches are cut out there"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --device mirror,cpu
            --node-reduce on
    REQUIRES cli_data_good)
set_tests_properties(cli_dp_mirror_mixed_reduction PROPERTIES LABELS "cli;mpi"
    ENVIRONMENT "${BALLAST_TEST_ENV};BALLAST_LOG=info")

# A device without room for the training set (the mirror posing as a
# 1 MiB device: a tenth, at least 1 GiB, must stay free) reads each batch
# on the host and uploads it, says so, and trains to the same parameters.
bl_dp_case(mirror2_no_room 2 --device mirror)
set_property(TEST cli_dp_mirror2_no_room APPEND PROPERTY ENVIRONMENT BALLAST_MIRROR_MEMORY_MB=1)
# Said either way: posing as a 1 MiB device leaves no room; as a 2 GiB one
# it does, and the set is kept on the device.
function(bl_mirror_room_case mb said)
    bl_cli_test(dp_mirror_room_${mb}mb EXIT 0 MATCH "${said}"
        COMMAND env BALLAST_MIRROR_MEMORY_MB=${mb} ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN}
                ${bl_dp_run} --device mirror
        REQUIRES cli_data_good)
    set_tests_properties(cli_dp_mirror_room_${mb}mb PROPERTIES LABELS "cli;mpi"
        ENVIRONMENT "${BALLAST_TEST_ENV};BALLAST_LOG=info")
endfunction()
bl_mirror_room_case(1 "rank 0: no room on mirror for the training set \\([0-9.]+ MB, leaving a tenth of the device free\\): batches are read on the host and uploaded")
bl_mirror_room_case(2048 "rank 0: the training set \\([0-9.]+ MB\\) is kept on mirror")

# Bad --device values name the flag and what is wrong.
bl_cli_test(device_unknown EXIT 2 MATCH "--device: 'gpu' is not cpu, cuda, auto or mirror"
    COMMAND ${BL_CLI_TRAIN} --device cpu,gpu)
bl_cli_test(device_count_mismatch EXIT 2
    MATCH "--device: 3 devices given but the job has 2 ranks"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} --device cpu,cpu,mirror)
# Pipelines with device stages: activations and input gradients cross
# between stages through host twins of the device buffers; mixed with CPU
# stages, in the hybrid grid, and with layers migrating between stages
# (the device copies are downloaded for the move and uploaded after).
bl_dp_case(mirror_pp2_1f1b 2 --pp 2 --micro-batches 3 --device mirror)
bl_dp_case(mirror_pp3_mixed_gpipe 3 --pp 3 --schedule gpipe --micro-batches 4
           --device cpu,mirror,cpu)
bl_dp_case(mirror_hybrid_mixed 4 --dp 2 --pp 2 --shards 20,12 --micro-batches 3
           --device mirror,cpu,cpu,mirror)
bl_dp_case(mirror_hybrid_stage_groups 4 --dp 2 --pp 2 --shards 16,16 --micro-batches 2
           --device mirror,cpu,mirror,cpu)
bl_dp_moves_case(mirror_pp2_policy_moves 2 stage_first --pp 2 --micro-batches 2 --policy proportional
           --rebalance-every 3 --emulate-slowdown 1:8 --device cpu,mirror)
bl_dp_case(mirror_pp2_scripted_moves 2 --pp 2 --micro-batches 2 --stages 0-0,1-4
           --stages-at 8:0-2,3-4 --stages-at 16:0-3,4-4 --device mirror,cpu)
set_tests_properties(cli_device_count_mismatch PROPERTIES LABELS "cli;mpi")

# Groups of mirror ranks alone move device memory directly, as GPUs do over
# NCCL (the mirror's device communicator is MPI in NCCL's place, with
# NCCL's ordering and rendezvous sends): the cases above with --device
# mirror on every rank run there — gradient buckets all-reduced on the
# device, pipeline stages exchanging activations and gradients from
# device memory, one exchange group between two ops. Here: the hybrid
# grid (both at once, on one ordered queue per rank), GPipe over three
# stages, layers migrating, and --nccl off keeping such groups on host
# memory (staged buckets, host twins).
bl_dp_case(mirror_hybrid_direct 4 --dp 2 --pp 2 --shards 20,12 --micro-batches 3 --device mirror)
bl_dp_case(mirror_pp3_gpipe_direct 3 --pp 3 --schedule gpipe --micro-batches 4 --device mirror)
bl_dp_case(mirror_pp2_direct_moves 2 --pp 2 --micro-batches 2 --stages 0-0,1-4
           --stages-at 8:0-2,3-4 --stages-at 16:0-3,4-4 --device mirror)
bl_dp_case(mirror2_nccl_off 2 --device mirror --nccl off)
bl_dp_case(mirror_pp2_nccl_off 2 --pp 2 --micro-batches 3 --device mirror --nccl off)
bl_cli_test(dp_mirror_direct_paths EXIT 0
    MATCH "gradient reduction of rank 0's group: MPI in NCCL's place \\(mirror\\) \\(2 ranks: 0 on GPUs, 2 on other devices, 0 on CPUs\\)"
          "pipeline transfers of rank 0's pipeline: MPI in NCCL's place \\(mirror\\) \\(2 stages"
    COMMAND ${BL_MPIRUN} 4 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --dp 2 --pp 2
            --device mirror
    REQUIRES cli_data_good)
bl_cli_test(dp_mirror_nccl_off_paths EXIT 0
    MATCH "gradient reduction of rank 0's group: MPI through host memory \\(2 ranks"
          "pipeline transfers of rank 0's pipeline: MPI through host memory \\(2 stages"
    COMMAND ${BL_MPIRUN} 4 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --dp 2 --pp 2
            --device mirror --nccl off
    REQUIRES cli_data_good)
set_tests_properties(cli_dp_mirror_direct_paths cli_dp_mirror_nccl_off_paths PROPERTIES
    LABELS "cli;mpi" ENVIRONMENT "${BALLAST_TEST_ENV};BALLAST_LOG=info")

# Device communicators on the mirror: MPI in NCCL's place keeps NCCL's
# semantics (exact all-reduces, one group at a time, rendezvous sends: a
# send-first deadlock times out with two ranks).
bl_mpi_program(test_device_comm 1 2 3)
