# The CUDA backend module (cuda/backend.h, runtime/device/cuda_backend.c), on any
# machine (labels cli;mpi): libballast links no CUDA library and opens
# libballast_cuda.so only for GPU ranks, so a node without CUDA runs the
# same build. A module that is missing, does not load, is not a backend
# or comes from another build is named with the reason: --device cuda
# fails with it, --device auto computes on the CPU and says why (a module
# found but unusable is warned about). Included after device_tests.cmake
# (bl_dp_run, BL_MPIRUN, bl_cli_test).
set(bl_backend_run --data ${BL_CLI_DATA}/good --layers 32,16 --batch 32 --steps 2 --quiet)

# A build without the backend says so: --device cuda fails, auto computes
# on the CPU (these run in the sanitizer pass, whose build has no CUDA).
if(NOT BALLAST_HAVE_CUDA)
    set(built_without "this ballast was built without the CUDA backend \\(BALLAST_CUDA=OFF")
    bl_cli_test(cuda_backend_not_built_cuda EXIT 1
        MATCH "device cuda was asked for but ${built_without}" "!^summary: steps=[0-9]"
        COMMAND ${BL_CLI_TRAIN} ${bl_backend_run} --device cuda
        REQUIRES cli_data_good)
    bl_cli_test(cuda_backend_not_built_auto EXIT 0
        MATCH "debug: rank 0: device auto: no GPU \\(${built_without}" "^summary: steps=2 "
        COMMAND env BALLAST_LOG=debug ${BL_CLI_TRAIN} ${bl_backend_run} --device auto
        REQUIRES cli_data_good)
    return()
endif()

# libballast needs none of CUDA's libraries; the module needs them and
# exports its entry only.
if(BALLAST_SHARED)
    add_test(NAME cuda_backend_links
        COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cuda_backend_links.sh $<TARGET_FILE:ballast>
                $<TARGET_FILE:ballast_cuda_backend>)
    set_tests_properties(cuda_backend_links PROPERTIES LABELS unit TIMEOUT 30
        PASS_REGULAR_EXPRESSION "cuda_backend_links: ok")
endif()

add_library(fake_cuda_backend_stale MODULE fake_cuda_backend.c)
target_compile_definitions(fake_cuda_backend_stale PRIVATE FAKE_STALE)
add_library(fake_cuda_backend_none MODULE fake_cuda_backend.c)
foreach(fake fake_cuda_backend_stale fake_cuda_backend_none)
    target_include_directories(${fake} PRIVATE ${PROJECT_SOURCE_DIR}/cuda
        ${PROJECT_SOURCE_DIR}/kernels)
endforeach()

# bl_backend_case(NAME MODULE REASON LEVEL): --device cuda fails naming
# MODULE and REASON; --device auto trains on the CPU and says the same, at
# LEVEL (warn for a module found but unusable, debug when there is none);
# for a module found but unusable rank 0's device report also names rank
# 1 with its reason (rank 1's own log lines are not shown).
function(bl_backend_case name module reason level)
    set(report "!^ballast\\[0\\] info: device: rank 1: ")
    if(level STREQUAL "warn")
        set(report "^ballast\\[0\\] info: device: rank 1: computing on the CPU: ${reason}")
    endif()
    bl_cli_test(cuda_backend_${name}_cuda EXIT 1
        MATCH "device cuda was asked for but ${reason}; use --device cpu or auto"
              "!^summary: steps=[0-9]"
        COMMAND env BALLAST_CUDA_BACKEND=${module} ${BL_MPIRUN} 2 --oversubscribe
                ${BL_CLI_TRAIN} ${bl_backend_run} --device cuda
        REQUIRES cli_data_good)
    bl_cli_test(cuda_backend_${name}_auto EXIT 0
        MATCH "${level}: rank 0: device auto: no GPU \\(${reason}\\); computing on the CPU"
              "^summary: steps=2 " "${report}"
        COMMAND env BALLAST_CUDA_BACKEND=${module} BALLAST_LOG=debug ${BL_MPIRUN} 2
                --oversubscribe ${BL_CLI_TRAIN} ${bl_backend_run} --device auto
        REQUIRES cli_data_good)
    set_tests_properties(cli_cuda_backend_${name}_cuda cli_cuda_backend_${name}_auto
        PROPERTIES LABELS "cli;mpi")
endfunction()
bl_backend_case(missing /nonexistent/libballast_cuda.so
    "BALLAST_CUDA_BACKEND=/nonexistent/libballast_cuda.so: no such file" debug)
bl_backend_case(not_elf ${CMAKE_CURRENT_SOURCE_DIR}/fake_cuda_backend.c
    "the CUDA backend [^ ]*/fake_cuda_backend.c did not load: [^)]+" warn)
bl_backend_case(no_entry $<TARGET_FILE:fake_cuda_backend_none>
    "the CUDA backend [^ ]*fake_cuda_backend_none.so is not a ballast CUDA backend \\(no bl_cuda_backend_entry\\)"
    warn)
string(REPLACE "+" "\\+" bl_build_regex "${BALLAST_BACKEND_BUILD}")
bl_backend_case(stale $<TARGET_FILE:fake_cuda_backend_stale>
    "the CUDA backend [^ ]*fake_cuda_backend_stale.so is from another build \\(build 0.0.1\\+stale, backend ABI [0-9]+, table of [0-9]+ bytes; this libballast is build ${bl_build_regex}, ABI [0-9]+, [0-9]+ bytes\\)"
    warn)
