# The language-model trainer's model file (bl_lm_trainer_save_model, label
# mpi; tests/test_lm_model_file.c): pipelines of 2 and 3 stages, a hybrid
# 2 x 2 grid and data parallelism write, before training, the bytes of a
# one-process trainer's llm.c file and user layers' file, and after a few
# steps those of the job's own model, while every rank's parameters that it
# must not read are poisoned; the pipelines do it again under stage-local
# memory. A missing directory, a file size limit on rank 0 and one on the
# last stage's writer fail every rank, naming the path and the failing rank,
# and leave the existing files intact. Each case writes into its own
# directory, so the cases may run side by side.
add_executable(test_lm_model_file ${CMAKE_CURRENT_SOURCE_DIR}/test_lm_model_file.c
    ${PROJECT_SOURCE_DIR}/tools/lm_layers.c)
target_include_directories(test_lm_model_file PRIVATE ${BALLAST_RUNTIME_PRIVATE_DIRS}
    ${PROJECT_SOURCE_DIR}/kernels ${PROJECT_SOURCE_DIR}/partition ${PROJECT_SOURCE_DIR}/tools
    ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(test_lm_model_file PRIVATE ballast PkgConfig::CMOCKA ${MATH_LIBRARY})

# NAME|RANKS|STAGES
foreach(case "pp2|2|2" "pp3|3|3" "hybrid|4|2" "dp2|2|1")
    string(REPLACE "|" ";" case ${case})
    list(GET case 0 name)
    list(GET case 1 ranks)
    list(GET case 2 stages)
    add_test(NAME lm_model_file_${name}
        COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${ranks} --oversubscribe
                $<TARGET_FILE:test_lm_model_file> ${stages}
                ${CMAKE_CURRENT_BINARY_DIR}/lm_model_file/${name})
    set_tests_properties(lm_model_file_${name} PROPERTIES LABELS "mpi" TIMEOUT 120
        PASS_REGULAR_EXPRESSION "lm_model_file: ${ranks} ranks, 0 failures"
        ENVIRONMENT "${BALLAST_TEST_ENV}")
endforeach()
# ballast-train's --save-model from pipelines writes the same bytes whether
# the stages hold the whole model's memory or their own units' only (the
# default, --stage-memory local; gpt_tests.cmake and gpt_layers_tests.cmake
# run those and compare them with one process within tolerance): pp2, pp3
# and pp2 with user layers, whose FILE.layers is compared too.
foreach(case "gpt_pp2|2|gpt_pp2|--pp;2" "gpt_pp3_m2|3|gpt_pp3_m2|--pp;3;--micro-batches;2"
        "gpt_layers_pp2_m3|2|gpt_layers_pp2_m3|${bl_gpt_layers};--pp;2;--micro-batches;3")
    string(REPLACE "|" ";" fields "${case}")
    list(POP_FRONT fields name ranks local)
    bl_cli_test(${name}_whole_memory EXIT 0 MATCH "^summary: steps=20 "
        COMMAND ${BL_MPIRUN} ${ranks} --oversubscribe ${BL_CLI_TRAIN} ${bl_gpt_run} ${fields}
                --stage-memory whole --save-model ${BL_CLI_OUT}/${name}_whole_memory.bin
        REQUIRES cli_out SETUP ${name}_whole_memory)
    bl_cli_test(${name}_whole_memory_same_file
        COMPARE same ${BL_CLI_OUT}/${name}_whole_memory.bin ${BL_CLI_OUT}/${local}.bin
        REQUIRES ${name}_whole_memory ${local})
    set_tests_properties(cli_${name}_whole_memory cli_${name}_whole_memory_same_file PROPERTIES
        LABELS "cli;mpi")
endforeach()
bl_cli_test(gpt_layers_pp2_m3_whole_memory_same_layers
    COMPARE same ${BL_CLI_OUT}/gpt_layers_pp2_m3_whole_memory.bin.layers
            ${BL_CLI_OUT}/gpt_layers_pp2_m3.bin.layers
    REQUIRES gpt_layers_pp2_m3_whole_memory gpt_layers_pp2_m3)
