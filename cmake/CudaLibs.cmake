# cuDNN and NCCL ship no CMake package: find them and wrap each in an imported target (polyllama::cudnn,
# polyllama::nccl). Where to look, first match wins:
#   1. CUDNN_ROOT / NCCL_ROOT, as CMake cache variables or environment variables (a prefix with include/ and lib/,
#      e.g. a Python wheel's site-packages/nvidia/cudnn);
#   2. beside the CUDA toolkit (CUDAToolkit_LIBRARY_DIR, its targets/<arch>/ layout, the toolkit root);
#   3. the system paths.
# Wheels ship only the versioned file (libcudnn.so.9, libnccl.so.2), so those names are searched too.
# Missing libraries are reported, not fatal: one GPU trains without NCCL (more ranks on `--device cuda` then fail
# with a message saying so).

function(polyllama_find_cuda_lib target_name var header)
  cmake_parse_arguments(ARG "" "" "NAMES" ${ARGN})
  set(hints)
  foreach(root IN ITEMS "${${var}_ROOT}" "$ENV{${var}_ROOT}")
    if(root)
      list(APPEND hints "${root}")
    endif()
  endforeach()
  get_filename_component(cuda_root "${CUDAToolkit_BIN_DIR}" DIRECTORY)
  list(APPEND hints "${CUDAToolkit_LIBRARY_ROOT}" "${cuda_root}" "${CUDAToolkit_LIBRARY_DIR}/.."
       "${cuda_root}/targets/${CMAKE_SYSTEM_PROCESSOR}-linux")
  find_path(${var}_INCLUDE_DIR ${header} HINTS ${hints} ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
  find_library(${var}_LIBRARY NAMES ${ARG_NAMES} NAMES_PER_DIR
    HINTS ${hints} ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64 lib/x64)
  if(${var}_INCLUDE_DIR AND ${var}_LIBRARY)
    add_library(${target_name} SHARED IMPORTED GLOBAL)
    set_target_properties(${target_name} PROPERTIES
      IMPORTED_LOCATION "${${var}_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${${var}_INCLUDE_DIR}")
    set(${var}_FOUND TRUE PARENT_SCOPE)
    message(STATUS "${var}: ${${var}_LIBRARY} (headers ${${var}_INCLUDE_DIR})")
  else()
    set(${var}_FOUND FALSE PARENT_SCOPE)
    message(STATUS "${var}: not found (set ${var}_ROOT to a prefix holding include/${header} and lib/)")
  endif()
endfunction()

polyllama_find_cuda_lib(polyllama::cudnn CUDNN cudnn.h NAMES cudnn libcudnn.so.9)
polyllama_find_cuda_lib(polyllama::nccl NCCL nccl.h NAMES nccl libnccl.so.2)
