# The Lmod modulefile of an installed polyllama (modules/polyllama.lua.in), used by cmake/Install.cmake at
# install time and by tests/cli/test_install.sh.

# polyllama_build_modules(<out> <loaded>): of the modules in a LOADEDMODULES value (colon-separated, as Lmod and
# Environment Modules set it), those that provide MPI, HDF5, CUDA, NCCL or cuDNN, in load order, as a CMake list:
# the installed module loads them first (depends_on), so the libraries polyllama links are the ones loaded.
# A module matches by its name (the part before the first "/") on a word of its own: openmpi/4.1.5,
# cray-mpich/8.1, hdf5-parallel/1.14, mpi/openmpi-x86_64, intel-oneapi-mpi, cudatoolkit/12.2, nccl/2.18 and
# cudnn/8.9 do; compiler/gcc, gcc/12, cmake/3.27 and py-mpi4py/3.1 do not.
function(polyllama_build_modules out loaded)
  set(found "")
  string(REPLACE ":" ";" mods "${loaded}")
  foreach(m IN LISTS mods)
    string(REGEX REPLACE "/.*" "" name "${m}")
    string(TOLOWER "-${name}" name)
    if(name MATCHES "[-_.](mpi|openmpi|mpich|impi|mvapich2?|hdf5|cuda|cudatoolkit|nccl|cudnn)([-_.]|$)")
      list(APPEND found "${m}")
    endif()
  endforeach()
  set(${out} "${found}" PARENT_SCOPE)
endfunction()

# polyllama_write_modulefile(TEMPLATE <in> OUT <file> ROOT <prefix> VERSION <v> LIBDIR <dir> MODULES <list>
#                            SUMMARY <text>): modules/polyllama.lua.in for an install prefix.
function(polyllama_write_modulefile)
  cmake_parse_arguments(ARG "" "TEMPLATE;OUT;ROOT;VERSION;LIBDIR;SUMMARY" "MODULES" ${ARGN})
  get_filename_component(PL_MODULE_ROOT "${ARG_ROOT}" ABSOLUTE)
  set(PL_MODULE_VERSION "${ARG_VERSION}")
  set(PL_MODULE_LIBDIR "${ARG_LIBDIR}")
  set(PL_MODULE_SUMMARY "${ARG_SUMMARY}")
  set(PL_MODULE_DEPENDS "")
  foreach(m IN LISTS ARG_MODULES)
    string(APPEND PL_MODULE_DEPENDS "depends_on(\"${m}\")\n")
  endforeach()
  if(NOT PL_MODULE_DEPENDS)
    set(PL_MODULE_DEPENDS "-- (none: built outside a module environment)\n")
  endif()
  configure_file("${ARG_TEMPLATE}" "${ARG_OUT}" @ONLY)
endfunction()
