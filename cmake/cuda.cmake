# The CUDA backend's toolchain, at the top level because every target that
# links the backend (libballast, the tests) lives below it. BALLAST_CUDA:
# AUTO builds the backend when a working nvcc, the CUDA runtime and cuBLAS
# are found; ON fails the configure naming what is missing; OFF skips it.
# Sets BALLAST_HAVE_CUDA. nvcc is looked for on the PATH, in $CUDACXX, and
# at /usr/local/cuda/bin/nvcc (where the toolkit installs it).
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
if(missing)
    if(BALLAST_CUDA STREQUAL "ON")
        message(FATAL_ERROR "ballast: BALLAST_CUDA=ON but ${missing} was not found; "
                            "use BALLAST_CUDA=AUTO or OFF for a CPU-only build")
    endif()
    message(STATUS "ballast: ${missing} not found; building the CPU backend only")
    return()
endif()
set(BALLAST_HAVE_CUDA ON)
find_path(BALLAST_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
find_library(BALLAST_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
message(STATUS "ballast: CUDA backend on: CUDA ${CUDAToolkit_VERSION} (${CMAKE_CUDA_COMPILER}), "
               "architectures ${CMAKE_CUDA_ARCHITECTURES}; NCCL "
               "${BALLAST_NCCL_LIBRARY} (not used yet: the GPU path has no NCCL reduction yet)")
