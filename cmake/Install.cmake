# `cmake --install BUILD --prefix P` (INSTALL.md):
#   P/bin/polyllama
#   P/lib/libpolyllama_<area>.a, P/lib/cmake/polyllama/       find_package(polyllama): targets polyllama::<area>
#   P/include/polyllama/<area>/                                the areas' public headers
#   P/share/polyllama/                                         jobs/, the sample sets (share/), docs/, README, INSTALL
#   P/share/modulefiles/polyllama/<version>.lua                an Lmod modulefile for P
# The binary keeps the run path of libraries outside the system directories (CMAKE_INSTALL_RPATH_USE_LINK_PATH
# in CMakeLists.txt), so a build against modules or Spack runs from P without LD_LIBRARY_PATH.
include(CMakePackageConfigHelpers)
include(${CMAKE_CURRENT_LIST_DIR}/ModuleFile.cmake)

set(PL_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/polyllama)
set(PL_INSTALL_SHARE ${CMAKE_INSTALL_DATADIR}/polyllama)

# ---- the binary and the libraries ----
set(PL_EXPORTED polyllama_core polyllama_backend_cpu polyllama_backend polyllama_parallel polyllama_tokenizer
  polyllama_model polyllama_optim polyllama_data polyllama_ckpt polyllama_eval polyllama_train polyllama_serve
  polyllama_openblas)
set_target_properties(polyllama_openblas PROPERTIES EXPORT_NAME openblas)
if(POLYLLAMA_CUDA)
  list(APPEND PL_EXPORTED polyllama_backend_cuda polyllama_cuda_attention)
  set_target_properties(polyllama_cuda_attention PROPERTIES EXPORT_NAME cuda_attention)
endif()
install(TARGETS polyllama RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS ${PL_EXPORTED} EXPORT polyllamaTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT polyllamaTargets NAMESPACE polyllama:: DESTINATION ${PL_INSTALL_CMAKEDIR})

set(PL_CONFIG_CUDNN_LIBRARY "")
set(PL_CONFIG_NCCL_LIBRARY "")
if(POLYLLAMA_CUDA AND CUDNN_FOUND)
  set(PL_CONFIG_CUDNN_LIBRARY "${CUDNN_LIBRARY}")
endif()
if(POLYLLAMA_CUDA AND NCCL_FOUND)
  set(PL_CONFIG_NCCL_LIBRARY "${NCCL_LIBRARY}")
endif()
set(PL_CONFIG_HDF5_TARGETS FALSE)  # HDF5 linked through imported targets (its CMake package) rather than paths
foreach(_pl_lib IN LISTS HDF5_C_LIBRARIES)
  if(TARGET "${_pl_lib}")
    set(PL_CONFIG_HDF5_TARGETS TRUE)
  endif()
endforeach()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/polyllamaConfig.cmake.in
  ${PROJECT_BINARY_DIR}/polyllamaConfig.cmake INSTALL_DESTINATION ${PL_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/polyllamaConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)  # 0.x: a minor release may change the API
install(FILES ${PROJECT_BINARY_DIR}/polyllamaConfig.cmake ${PROJECT_BINARY_DIR}/polyllamaConfigVersion.cmake
  DESTINATION ${PL_INSTALL_CMAKEDIR})

# ---- headers: every area's include/polyllama/<area>/ (the CUDA backend's only in a CUDA build) ----
set(PL_HEADER_EXCLUDE "")
if(NOT POLYLLAMA_CUDA)
  set(PL_HEADER_EXCLUDE PATTERN cuda EXCLUDE)
endif()
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/polyllama DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp" ${PL_HEADER_EXCLUDE})

# ---- share/polyllama: job scripts, sample sets, example configs, documentation ----
install(DIRECTORY ${PROJECT_SOURCE_DIR}/jobs/ DESTINATION ${PL_INSTALL_SHARE}/jobs USE_SOURCE_PERMISSIONS)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/share/ DESTINATION ${PL_INSTALL_SHARE})
foreach(_pl_dir IN ITEMS configs examples)
  if(IS_DIRECTORY ${PROJECT_SOURCE_DIR}/${_pl_dir})
    install(DIRECTORY ${PROJECT_SOURCE_DIR}/${_pl_dir}/ DESTINATION ${PL_INSTALL_SHARE}/${_pl_dir})
  endif()
endforeach()
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION ${PL_INSTALL_SHARE}/docs)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/INSTALL.md DESTINATION ${PL_INSTALL_SHARE})

# ---- the Lmod modulefile ----
# The MPI, HDF5, CUDA, NCCL and cuDNN modules loaded when this build was first configured (LOADEDMODULES), which
# the modulefile loads first; cached, so a later reconfigure outside the module environment keeps them.
polyllama_build_modules(_pl_modules "$ENV{LOADEDMODULES}")
set(POLYLLAMA_MODULES "${_pl_modules}" CACHE STRING "modules the installed modulefile depends_on (default: those \
of LOADEDMODULES at the first configure that provide MPI, HDF5, CUDA, NCCL or cuDNN)")
message(STATUS "polyllama: modulefile depends on: ${POLYLLAMA_MODULES}")
set(PL_MODULE_SUMMARY "${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION}, MPI ${MPI_CXX_VERSION}, \
HDF5 ${HDF5_VERSION} (parallel), SentencePiece ${SENTENCEPIECE_VERSION}, CUDA ${POLYLLAMA_CUDA}")
if(POLYLLAMA_CUDA)
  string(APPEND PL_MODULE_SUMMARY " (${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES})")
endif()
set(PL_MODULE_ARGS TEMPLATE "${PROJECT_SOURCE_DIR}/modules/polyllama.lua.in" VERSION "${PROJECT_VERSION}"
  LIBDIR "${CMAKE_INSTALL_LIBDIR}" MODULES "${POLYLLAMA_MODULES}" SUMMARY "${PL_MODULE_SUMMARY}")
# For the configured prefix, to look at (BUILD/modules/polyllama/), ...
polyllama_write_modulefile(OUT ${PROJECT_BINARY_DIR}/modules/polyllama/${PROJECT_VERSION}.lua
  ROOT "${CMAKE_INSTALL_PREFIX}" ${PL_MODULE_ARGS})
# ... and at install time for the prefix installed to (cmake --install BUILD --prefix P).
set(PL_MODULE_REL ${CMAKE_INSTALL_DATADIR}/modulefiles/polyllama/${PROJECT_VERSION}.lua)
set(PL_MODULE_OUT "\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${PL_MODULE_REL}")
install(CODE "
  include(\"${PROJECT_SOURCE_DIR}/cmake/ModuleFile.cmake\")
  message(STATUS \"Installing: ${PL_MODULE_OUT}\")
  polyllama_write_modulefile(OUT \"${PL_MODULE_OUT}\" ROOT \"\${CMAKE_INSTALL_PREFIX}\"
    TEMPLATE \"${PROJECT_SOURCE_DIR}/modules/polyllama.lua.in\" VERSION \"${PROJECT_VERSION}\"
    LIBDIR \"${CMAKE_INSTALL_LIBDIR}\" MODULES \"${POLYLLAMA_MODULES}\" SUMMARY \"${PL_MODULE_SUMMARY}\")
  list(APPEND CMAKE_INSTALL_MANIFEST_FILES \"${PL_MODULE_OUT}\")
")
