# The CUDA backend's toolchain, at the top level because every target that
# links the backend (libballast, the tests) lives below it. BALLAST_CUDA:
# AUTO builds the backend when a working nvcc, the CUDA runtime, cuBLAS and
# NCCL (2.14 or newer) are found; ON fails the configure naming what is
# missing; OFF skips it. Sets BALLAST_HAVE_CUDA, and BALLAST_NCCL_INCLUDE_DIR
# and BALLAST_NCCL_LIBRARY (cache variables: point them at an NCCL outside
# the toolkit). nvcc is looked for on the PATH, in $CUDACXX, and at
# /usr/local/cuda/bin/nvcc (where the toolkit installs it).
set(BALLAST_HAVE_CUDA OFF)
if(BALLAST_CUDA STREQUAL "OFF")
    message(STATUS "ballast: CUDA backend off (BALLAST_CUDA=OFF)")
    return()
endif()
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(ENV{CUDACXX} /usr/local/cuda/bin/nvcc)
endif()
include(CheckLanguage)
check_language(CUDA) # compiles a test program: nvcc and its host compiler both work
set(missing "")
if(CMAKE_CUDA_COMPILER)
    # Turing (T4), Ampere (A100) and Hopper (H100/H200) as machine code,
    # plus Hopper's PTX for newer GPUs to compile at load time (sm_75 is
    # CUDA 13's oldest; bl_cuda_init refuses older devices by name).
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
        set(CMAKE_CUDA_ARCHITECTURES 75-real 80-real 90)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit)
    if(NOT CUDAToolkit_FOUND OR NOT TARGET CUDA::cublas)
        set(missing "the CUDA toolkit's runtime and cuBLAS")
    endif()
else()
    set(missing "a working nvcc (set CUDACXX or CMAKE_CUDA_COMPILER)")
endif()
# NCCL (the backend's all-reduce and point-to-point, cuda/nccl.cu): the
# toolkit's copy where it has one, else the system's (libnccl-dev). 2.14 is
# the first with non-blocking communicators and ncclCommFinalize.
if(NOT missing)
    find_path(BALLAST_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
    find_library(BALLAST_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
    set(BALLAST_NCCL_VERSION "")
    if(EXISTS "${BALLAST_NCCL_INCLUDE_DIR}/nccl.h")
        file(STRINGS ${BALLAST_NCCL_INCLUDE_DIR}/nccl.h nccl_version_lines
             REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) +[0-9]+")
        foreach(part MAJOR MINOR PATCH)
            string(REGEX REPLACE ".*#define NCCL_${part} +([0-9]+).*" "\\1" nccl_${part}
                   "${nccl_version_lines}")
        endforeach()
        set(BALLAST_NCCL_VERSION "${nccl_MAJOR}.${nccl_MINOR}.${nccl_PATCH}")
    endif()
    if(NOT EXISTS "${BALLAST_NCCL_INCLUDE_DIR}/nccl.h" OR NOT EXISTS "${BALLAST_NCCL_LIBRARY}")
        string(CONCAT missing "NCCL (nccl.h and libnccl: install libnccl-dev, or set "
                              "BALLAST_NCCL_INCLUDE_DIR and BALLAST_NCCL_LIBRARY)")
    elseif(NOT BALLAST_NCCL_VERSION MATCHES "^[0-9]+\\.[0-9]+\\.[0-9]+$"
           OR BALLAST_NCCL_VERSION VERSION_LESS 2.14)
        string(CONCAT missing "NCCL 2.14 or newer (${BALLAST_NCCL_INCLUDE_DIR}/nccl.h is "
                              "version '${BALLAST_NCCL_VERSION}')")
    endif()
endif()
if(missing)
    if(BALLAST_CUDA STREQUAL "ON")
        message(FATAL_ERROR "ballast: BALLAST_CUDA=ON but ${missing} was not found; "
                            "use BALLAST_CUDA=AUTO or OFF for a CPU-only build")
    endif()
    message(STATUS "ballast: CUDA backend off: ${missing} not found; "
                   "building the CPU backend only")
    return()
endif()
set(BALLAST_HAVE_CUDA ON)
message(STATUS "ballast: CUDA backend on: CUDA ${CUDAToolkit_VERSION} (${CMAKE_CUDA_COMPILER}), "
               "architectures ${CMAKE_CUDA_ARCHITECTURES}; NCCL ${BALLAST_NCCL_VERSION} "
               "(${BALLAST_NCCL_LIBRARY})")
