# Evaluation through the pipeline (label mpi; tests/test_pipe_eval.c): a
# pipelined job's bl_trainer_evaluate equals the one-process evaluation of
# the same parameters (the loss within 1e-6 relative, the accuracy exactly)
# before, during and after a run, without any rank using another stage's
# layers; a failed sample fails every rank and leaves the pipeline clean; a
# stalled stage gives its neighbour BL_ERR_TIMEOUT instead of a hang.
# Each case is "NAME|RANKS|ARGUMENTS...".
add_executable(test_pipe_eval ${CMAKE_CURRENT_SOURCE_DIR}/test_pipe_eval.c)
target_include_directories(test_pipe_eval PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(test_pipe_eval PRIVATE ballast PkgConfig::CMOCKA ${MATH_LIBRARY})
set(bl_pipe_eval_cases
    "pp2|2|2|cpu"
    # Stage 1 is layer 1 alone, a ReLU: a stage without parameters.
    "pp3_relu_stage|3|3|cpu|0,1,2"
    "hybrid_2x2|4|2|cpu"
    # Device stages: activations go through host twins of device buffers.
    "pp2_mirror|2|2|mirror"
    "hybrid_2x2_mixed|4|2|mixed"
    "pp3_relu_stage_mixed|3|3|mixed|0,1,2"
    "hang|2|hang")
foreach(case IN LISTS bl_pipe_eval_cases)
    string(REPLACE "|" ";" fields "${case}")
    list(POP_FRONT fields name ranks)
    add_test(NAME pipe_eval_${name}
        COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${ranks} --oversubscribe
                $<TARGET_FILE:test_pipe_eval> ${fields})
    set_tests_properties(pipe_eval_${name} PROPERTIES LABELS "mpi" TIMEOUT 120
        PASS_REGULAR_EXPRESSION "test_pipe_eval: ${ranks} ranks, 0 failures"
        ENVIRONMENT "${BALLAST_TEST_ENV}")
endforeach()
