# Checkpoints end to end (labels cli;mpi): kill a random rank at a random
# step and resume, again and again, and end bit for bit where an
# uninterrupted run ends; SIGUSR1 to one rank stops every rank at one step
# with a checkpoint (exit 3) and the resumed run matches; a checkpoint
# saved with one layout resumes under another with identical parameters;
# bad checkpoint flags are refused. Included after pp_tests.cmake (bl_dp_run,
# dp_even2: the 25-step job on 2 ranks, the reference for bitwise
# comparisons; dp_ref: one process).

set(bl_ckpt ${BL_CLI_OUT}/ckpt)

# 5 trials of up to 2 kills each in the default suite; 20 more under slow.
bl_cli_test(kill_resume EXIT 0 MATCH "^kill-resume: 5 trials, [0-9]+ kills, 0 diverged$"
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/kill_resume.sh ${BL_CLI_TRAIN} ${BL_CLI_DATA}/good
            ${bl_ckpt}/kill ${BL_CLI_OUT}/dp_even2.bin 5 1 2
    REQUIRES dp_even2)
bl_cli_test(kill_resume_many EXIT 0 MATCH "^kill-resume: 20 trials, [0-9]+ kills, 0 diverged$"
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/kill_resume.sh ${BL_CLI_TRAIN} ${BL_CLI_DATA}/good
            ${bl_ckpt}/kill-many ${BL_CLI_OUT}/dp_even2.bin 20 101 3
    REQUIRES dp_even2)
set_tests_properties(cli_kill_resume PROPERTIES LABELS "cli;mpi" TIMEOUT 300)
set_tests_properties(cli_kill_resume_many PROPERTIES LABELS "cli;mpi;slow" TIMEOUT 900)

# SIGUSR1 to rank 1 after step 9: every rank stops there, the checkpoint is
# written, exit 3; the resumed run ends bit for bit as the uninterrupted one.
bl_cli_test(signal_stop EXIT 3
    MATCH "^stopped: after step 9 by a signal. checkpoint .*/ckpt-000000000010$"
    COMMAND env BALLAST_TEST_SIGNAL_AT=1:9 ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_dp_run} --checkpoint-dir ${bl_ckpt}/signal --checkpoint-every 4
    REQUIRES cli_data_good cli_out SETUP ckpt_signal)
bl_cli_test(signal_resume EXIT 0
    MATCH "resumed from .*/signal/ckpt-000000000010 at step 10" "^summary: steps=25 "
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run}
            --checkpoint-dir ${bl_ckpt}/signal --resume --save-params ${BL_CLI_OUT}/ckpt-signal.bin
    REQUIRES ckpt_signal SETUP ckpt_signal_resumed)
bl_cli_test(signal_resume_bitwise COMPARE same ${BL_CLI_OUT}/ckpt-signal.bin
    ${BL_CLI_OUT}/dp_even2.bin REQUIRES ckpt_signal_resumed dp_even2)
set_tests_properties(cli_signal_stop cli_signal_resume PROPERTIES LABELS "cli;mpi")

# A real full disk (a 40 KiB tmpfs; skipped where none can be mounted).
bl_cli_test(disk_full EXIT 0
    MATCH "disk-full: left behind: ckpt-000000000004$" "disk-full: the previous checkpoint resumes"
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/disk_full.sh ${BL_CLI_TRAIN} ${BL_CLI_DATA}/good
            ${bl_ckpt}/disk-full ${BL_CLI_OUT}/dp_even2.bin
    REQUIRES dp_even2)
set_tests_properties(cli_disk_full PROPERTIES LABELS "cli;mpi" SKIP_RETURN_CODE 77)

# The same signals sent to mpirun instead of a rank (tests/signal_mpirun.sh).
foreach(sig USR1 TERM)
    bl_cli_test(signal_mpirun_${sig} EXIT 0
        MATCH "SIG${sig}: stopped: after step [0-9]+" "SIG${sig}: resumed run equals the uninterrupted one"
        COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/signal_mpirun.sh ${BL_CLI_TRAIN} ${BL_CLI_DATA}/good
                ${bl_ckpt}/mpirun-${sig} ${BL_CLI_OUT}/dp_even2.bin ${sig}
        REQUIRES dp_even2)
    set_tests_properties(cli_signal_mpirun_${sig} PROPERTIES LABELS "cli;mpi" TIMEOUT 120)
endforeach()

# Resharding: checkpoints after 10 steps at np = 2 (data parallel) and at
# pp = 2 (stages 0-1, 2-4) load under np = 1, np = 3 and another stage map
# with identical parameters (no step runs after the load).
foreach(saved dp2 pp2)
    if(saved STREQUAL "dp2")
        set(layout)
    else()
        set(layout --pp 2 --stages 0-1,2-4 --micro-batches 2)
    endif()
    bl_cli_test(reshard_save_${saved} EXIT 0 MATCH "^summary: steps=10 "
        COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --steps 10 ${layout}
                --checkpoint-dir ${bl_ckpt}/reshard-${saved}
                --save-params ${BL_CLI_OUT}/ckpt-reshard-${saved}.bin
        REQUIRES cli_data_good cli_out SETUP reshard_${saved})
    set_tests_properties(cli_reshard_save_${saved} PROPERTIES LABELS "cli;mpi")
    foreach(target "np1|1|" "np3|3|" "pp2_other_map|2|--pp|2|--stages|0-2,3-4")
        string(REPLACE "|" ";" fields "${target}")
        list(POP_FRONT fields tname ranks)
        set(out ${BL_CLI_OUT}/ckpt-reshard-${saved}-to-${tname})
        # Each resumes from its own copy of the saved directory (a resumed
        # run writes its final checkpoint there).
        bl_cli_test(reshard_${saved}_to_${tname} EXIT 0
            MATCH "resumed from .*/ckpt-000000000010 at step 10" "^summary: steps=10 "
            COMMAND sh -c "rm -rf \"$0\" && cp -r \"$1\" \"$0\" && shift && exec \"$@\""
                    ${out}.d ${bl_ckpt}/reshard-${saved} env BALLAST_LOG=info ${BL_MPIRUN}
                    ${ranks} --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --steps 10 ${fields}
                    --checkpoint-dir ${out}.d --resume --save-params ${out}.bin
            REQUIRES reshard_${saved} SETUP reshard_${saved}_${tname})
        set_tests_properties(cli_reshard_${saved}_to_${tname} PROPERTIES LABELS "cli;mpi")
        bl_cli_test(reshard_${saved}_to_${tname}_identical COMPARE same ${out}.bin
            ${BL_CLI_OUT}/ckpt-reshard-${saved}.bin REQUIRES reshard_${saved}_${tname})
    endforeach()
endforeach()

# The policies' learned state travels in the checkpoint: a bandit shard
# policy (rank 1 emulated 2x slower) and a proportional stage policy go on
# from their saved state after a resume; after resharding to 3 ranks the
# saved 2-rank state does not fit, and the policy starts afresh, saying why.
bl_cli_test(policy_state_save_dp EXIT 0 MATCH "^summary: steps=12 "
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --steps 12
            --policy bandit --rebalance-every 3 --emulate-slowdown 1:2
            --checkpoint-dir ${bl_ckpt}/policy-dp
    REQUIRES cli_data_good cli_out SETUP ckpt_policy_dp)
bl_cli_test(policy_state_resume_dp EXIT 0
    MATCH "resume: the shard policy goes on from its saved state" "^summary: steps=20 "
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run}
            --steps 20 --policy bandit --rebalance-every 3 --checkpoint-dir ${bl_ckpt}/policy-dp
            --resume
    REQUIRES ckpt_policy_dp SETUP ckpt_policy_dp_resumed)
bl_cli_test(policy_state_reshard_np3 EXIT 0
    MATCH "resume: the shard policy starts afresh: policy state: [0-9]+ bytes are not the state of this policy .bandit, 3 ranks."
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 3 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run}
            --steps 24
            --policy bandit --rebalance-every 3 --checkpoint-dir ${bl_ckpt}/policy-dp --resume
    REQUIRES ckpt_policy_dp_resumed)
bl_cli_test(policy_state_save_pp EXIT 0 MATCH "^summary: steps=12 "
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} --steps 12 --pp 2
            --micro-batches 2 --policy proportional --emulate-slowdown 1:2
            --checkpoint-dir ${bl_ckpt}/policy-pp
    REQUIRES cli_data_good cli_out SETUP ckpt_policy_pp)
bl_cli_test(policy_state_resume_pp EXIT 0
    MATCH "resume: the stage policy goes on from its saved state" "^summary: steps=20 "
    COMMAND env BALLAST_LOG=info ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run}
            --steps 20 --pp 2 --micro-batches 2 --policy proportional
            --checkpoint-dir ${bl_ckpt}/policy-pp --resume
    REQUIRES ckpt_policy_pp)
set_tests_properties(cli_policy_state_save_dp cli_policy_state_resume_dp
    cli_policy_state_reshard_np3 cli_policy_state_save_pp cli_policy_state_resume_pp
    PROPERTIES LABELS "cli;mpi")

# A resume continues the saved plan (tests/resume_plan.sh): under each
# policy, with modelled step times so decisions repeat, stop-and-resume and
# kill-and-resume end bit for bit as the uninterrupted run, every step on
# its plan, although each run is given another starting plan (--shards, or
# --stages) on its command line. Data parallel: the shard policies; pipelines:
# the stage policies (static never moves layers: a scripted stage plan).
foreach(policy static proportional bandit rl)
    bl_cli_test(resume_plan_dp_${policy} EXIT 0
        MATCH "^resume-plan: ${policy}: [1-9][0-9]* plan changes \\([1-9][0-9]* of the shards, 0 of the stage map\\); stop-resume equal; kill-resume equal$"
        COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/resume_plan.sh ${BL_CLI_TRAIN} ${BL_CLI_DATA}/good
                ${bl_ckpt}/plan-dp-${policy} ${policy} --shards 20,12
        REQUIRES cli_data_good cli_out)
    if(policy STREQUAL "static")
        set(scripted --stages-at 5:0-1,2-6 --stages-at 20:0-4,5-6)
    else()
        set(scripted)
    endif()
    bl_cli_test(resume_plan_pp_${policy} EXIT 0
        MATCH "^resume-plan: ${policy}: [1-9][0-9]* plan changes \\(0 of the shards, [1-9][0-9]* of the stage map\\); stop-resume equal; kill-resume equal$"
        COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/resume_plan.sh ${BL_CLI_TRAIN} ${BL_CLI_DATA}/good
                ${bl_ckpt}/plan-pp-${policy} ${policy} --layers 32,32,32 --pp 2 --micro-batches 2
                --stages 0-3,4-6 ${scripted}
        REQUIRES cli_data_good cli_out)
    set_tests_properties(cli_resume_plan_dp_${policy} cli_resume_plan_pp_${policy} PROPERTIES
        LABELS "cli;mpi" TIMEOUT 180)
endforeach()

# The warm-up is not observed (tests/resume_warmup.sh): with measured
# times, neither the first steps of a run nor those after a resume move
# the plan or raise a straggler alert, under each adaptive policy, which
# does move the plan once the warm-up is over.
foreach(policy proportional bandit rl)
    bl_cli_test(resume_warmup_${policy} EXIT 0
        MATCH "^resume-warmup: ${policy}: no move and no alert in either warm-up; [1-9][0-9]* plan changes after it$"
        COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/resume_warmup.sh ${BL_CLI_TRAIN} ${BL_CLI_DATA}/good
                ${bl_ckpt}/warmup-${policy} ${policy}
        REQUIRES cli_data_good cli_out)
    set_tests_properties(cli_resume_warmup_${policy} PROPERTIES LABELS "cli;mpi" TIMEOUT 180)
endforeach()

# Slurm end to end on a local single-node Slurm started for the test
# (slurm/local-cluster.sh): srun equals mpirun bit for bit, an sbatch job
# completes with its summary, and a job signalled mid-run checkpoints,
# requeues itself, resumes and ends bit for bit as an uninterrupted run.
# Label slurm; skipped (exit 77, the reason printed) where no local Slurm
# can start (not root, slurm-wlm missing, a Slurm already on the ports).
add_test(NAME slurm_local
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/slurm_test.sh ${PROJECT_SOURCE_DIR} ${BL_CLI_TRAIN}
            ${BL_CLI_DATA}/good ${CMAKE_CURRENT_BINARY_DIR}/slurm-test
            ${BL_CLI_OUT}/dp_even2.bin)
set_tests_properties(slurm_local PROPERTIES LABELS slurm TIMEOUT 600 SKIP_RETURN_CODE 77
    FIXTURES_REQUIRED "dp_even2")

# Hang detection: one rank stops arriving after step 7 (the test hook sleeps
# it); with --timeout 2 the job ends within seconds with an error naming the
# step, the operation and the missing rank: a pipeline transfer's peer, or
# for a collective the rank that did not answer the roll call. (The ctest
# timeout, 60 s, is the bound on "ends".)
bl_cli_test(hang_gradient_allreduce EXIT 1
    MATCH "timed out: step 8: the gradient all-reduce did not complete within 2 s: ranks that had not arrived: 1 .no answer"
    COMMAND env BALLAST_TEST_HANG_AT=1:7 ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_dp_run} --timeout 2 --node-reduce off
    REQUIRES cli_data_good)
bl_cli_test(hang_gradient_allreduce_np3 EXIT 1
    MATCH "rank [02]: timed out: step 8: the gradient all-reduce did not complete within 2 s: ranks that had not arrived: 1 .no answer: computing, stopped or gone.$"
    COMMAND env BALLAST_TEST_HANG_AT=1:7 ${BL_MPIRUN} 3 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_dp_run} --timeout 2 --node-reduce off
    REQUIRES cli_data_good)
bl_cli_test(hang_node_reduce EXIT 1
    MATCH "rank [02]: timed out: step 8: the barrier before the node's gradient sum did not complete within 2 s: ranks that had not arrived: 1 .no answer: computing, stopped or gone.$"
    COMMAND env BALLAST_TEST_HANG_AT=1:7 ${BL_MPIRUN} 3 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_dp_run} --timeout 2
    REQUIRES cli_data_good)
bl_cli_test(hang_pipeline_transfer EXIT 1
    MATCH "rank 1: timed out: step 8: receiving activations of micro-batch 0 from stage 0 did not complete within 2 s: rank 0 had not arrived"
    COMMAND env BALLAST_TEST_HANG_AT=0:7 ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_dp_run} --pp 2 --timeout 2
    REQUIRES cli_data_good)
bl_cli_test(timeout_negative EXIT 2 MATCH "--timeout: -1 is outside"
    COMMAND ${BL_CLI_TRAIN} ${bl_dp_run} --timeout -1)
set_tests_properties(cli_hang_gradient_allreduce cli_hang_gradient_allreduce_np3
    cli_hang_node_reduce cli_hang_pipeline_transfer PROPERTIES LABELS "cli;mpi")

# The roll call names exactly the ranks that had not arrived: one waiting
# in another operation is named with it; one in the same is not.
add_executable(rollcall_mpi ${CMAKE_CURRENT_SOURCE_DIR}/rollcall_mpi.c)
target_include_directories(rollcall_mpi PRIVATE ${BALLAST_RUNTIME_PRIVATE_DIRS}
    ${PROJECT_SOURCE_DIR}/kernels ${PROJECT_SOURCE_DIR}/partition)
target_link_libraries(rollcall_mpi PRIVATE ballast)
add_test(NAME rollcall_mpi_names_missing
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 3 --oversubscribe
            $<TARGET_FILE:rollcall_mpi>)
set_tests_properties(rollcall_mpi_names_missing PROPERTIES LABELS "mpi" TIMEOUT 60
    PASS_REGULAR_EXPRESSION "ok: 0 failures" ENVIRONMENT "${BALLAST_TEST_ENV}")

# Hang detection on device communicators (the mirror's MPI in NCCL's
# place; NCCL's own timeout aborts the communicator, tests/test_cuda_nccl):
# the same bound, naming the step, the transfer and the missing rank.
bl_cli_test(hang_device_allreduce EXIT 1
    MATCH "rank [02]: timed out: step 8: the gradient all-reduce of [0-9]+ floats .mirror. did not complete within 2 s: ranks that had not arrived: 1 .no answer"
    COMMAND env BALLAST_TEST_HANG_AT=1:7 ${BL_MPIRUN} 3 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_dp_run} --timeout 2 --device mirror
    REQUIRES cli_data_good)
bl_cli_test(hang_device_pipeline EXIT 1
    MATCH "rank 1: timed out: step 8: the pipeline transfers .mirror: [0-9]+ floats from rank 0. did not complete within 2 s: rank 0 had not arrived"
    COMMAND env BALLAST_TEST_HANG_AT=0:7 ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_dp_run} --pp 2 --timeout 2 --device mirror
    REQUIRES cli_data_good)
set_tests_properties(cli_hang_device_allreduce cli_hang_device_pipeline PROPERTIES
    LABELS "cli;mpi")
