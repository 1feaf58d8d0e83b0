# The trainer's parameter file (bl_trainer_save_params, label mpi): pipelines
# of 2 and 3 stages, a hybrid 2 x 2 grid, data parallelism and one process
# write the bytes of bl_model_save_params for the whole model, before and
# after training and under stage-local memory, while every rank's parameters
# outside its own stage are poisoned; a missing directory, a path under a
# file, and a failed sizing or write fail every rank, naming the path, and
# leave the existing file intact (tests/test_params_file.c). Each case writes
# into its own directory, so the cases may run side by side.

add_executable(test_params_file ${CMAKE_CURRENT_SOURCE_DIR}/test_params_file.c)
target_include_directories(test_params_file PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(test_params_file PRIVATE ballast PkgConfig::CMOCKA ${MATH_LIBRARY})

# NAME|RANKS|STAGES
foreach(case "pp2|2|2" "pp3|3|3" "hybrid|4|2" "dp2|2|1" "one_process|1|1")
    string(REPLACE "|" ";" case ${case})
    list(GET case 0 name)
    list(GET case 1 ranks)
    list(GET case 2 stages)
    add_test(NAME params_file_${name}
        COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${ranks} --oversubscribe
                $<TARGET_FILE:test_params_file> ${stages}
                ${CMAKE_CURRENT_BINARY_DIR}/params_file/${name})
    set_tests_properties(params_file_${name} PROPERTIES LABELS "mpi" TIMEOUT 120
        ENVIRONMENT "${BALLAST_TEST_ENV}")
endforeach()
