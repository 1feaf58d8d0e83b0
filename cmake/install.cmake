# cmake --install: the library and its headers (ballast.h, ballast_lm.h), the programs, a CMake package
# (find_package(ballast) gives ballast::ballast) and a pkg-config file
# (pkg-config --cflags --libs ballast). tests/install_test.sh builds a
# program against the installed tree both ways.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(BALLAST_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/ballast)
# Installed programs find the installed library wherever the prefix is.
set_target_properties(ballast-train ballast-sim PROPERTIES
    INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")

# The CUDA backend module, which libballast (shared or static) opens on GPU
# ranks from the library directory (runtime/device/cuda_backend.c).
if(BALLAST_HAVE_CUDA)
    install(TARGETS ballast_cuda_backend LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()
install(TARGETS ballast EXPORT ballastTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    PUBLIC_HEADER DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS ballast-train ballast-sim ballast-generate RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(script report bench)
    install(PROGRAMS ${PROJECT_SOURCE_DIR}/tools/ballast_${script}.sh
        DESTINATION ${CMAKE_INSTALL_BINDIR} RENAME ballast-${script})
endforeach()
install(EXPORT ballastTargets NAMESPACE ballast:: FILE ballastTargets.cmake
    DESTINATION ${BALLAST_CMAKE_DIR})

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/ballastConfig.cmake.in
    ${CMAKE_CURRENT_BINARY_DIR}/ballastConfig.cmake INSTALL_DESTINATION ${BALLAST_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/ballastConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ballastConfig.cmake
    ${CMAKE_CURRENT_BINARY_DIR}/ballastConfigVersion.cmake DESTINATION ${BALLAST_CMAKE_DIR})

# pkg-config: MPI is public (ballast.h includes mpi.h); the rest is private,
# needed only to link a static libballast. The prefix is found from the
# file's own place (${pcfiledir}), so `cmake --install --prefix` anywhere
# gives a working file.
file(RELATIVE_PATH BALLAST_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
# A static libballast needs its dependencies on every link, not only with
# pkg-config --static (which would also drag in their own static closure).
set(BALLAST_PC_REQUIRES "")
set(BALLAST_PC_LIBS "")
if(NOT BALLAST_SHARED)
    set(BALLAST_PC_REQUIRES " openblas hwloc zlib")
    set(BALLAST_PC_LIBS " -lm")
    if(CMAKE_DL_LIBS)
        set(BALLAST_PC_LIBS " -l${CMAKE_DL_LIBS} -lm") # dlopen of the CUDA backend
    endif()
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/ballast.pc.in ${CMAKE_CURRENT_BINARY_DIR}/ballast.pc
    @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ballast.pc
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
