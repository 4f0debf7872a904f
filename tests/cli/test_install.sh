#!/usr/bin/env bash
# `cmake --install` of this build into a scratch prefix P: the layout (bin, the area libraries with their CMake
# package, the headers, share/polyllama with the job scripts, sample sets and documentation, the modulefile
# written for P); the installed binary runs --help, --version and `doctor` (also under mpirun -np 2); a small CMake
# project written here finds the package with find_package(polyllama), links polyllama::model and polyllama::ckpt
# and runs; the modulefile through Lmod (Debian's lmod; that part skips, saying so, without it): `module load
# polyllama` puts the binary on PATH and sets POLYLLAMA_ROOT and CMAKE_PREFIX_PATH (the consumer is built through
# the module then), and a modulefile recording the MPI and HDF5 modules of a module environment loads them first.
# Usage: test_install.sh POLYLLAMA_BINARY BUILD_DIR SOURCE_DIR [CMAKE]
source "$(dirname "$0")/lib.sh" "$@"
build=${2:?usage: $0 POLYLLAMA_BINARY BUILD_DIR SOURCE_DIR [CMAKE]}
src=${3:?usage: $0 POLYLLAMA_BINARY BUILD_DIR SOURCE_DIR [CMAKE]}
cmake=${4:-cmake}
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMP_NUM_THREADS=1
P=$work/prefix
version=$("$bin" --version)
lmod_init=${LMOD_INIT:-/usr/share/lmod/lmod/init/bash}  # Debian's lmod; elsewhere LMOD_INIT=...

# ---- install and layout ----
"$cmake" --install "$build" --prefix "$P" > "$work/install.log" 2>&1 && ok "cmake --install --prefix P" \
  || { bad "cmake --install: $(tail -20 "$work/install.log")"; finish; exit 1; }
for f in bin/polyllama lib/libpolyllama_core.a lib/libpolyllama_model.a lib/libpolyllama_serve.a \
         lib/cmake/polyllama/polyllamaConfig.cmake lib/cmake/polyllama/polyllamaConfigVersion.cmake \
         lib/cmake/polyllama/polyllamaTargets.cmake include/polyllama/core/version.hpp \
         include/polyllama/model/config.hpp include/polyllama/parallel/environment.hpp \
         share/polyllama/jobs/pipeline.sh share/polyllama/responses/zh_instructions.jsonl share/polyllama/docs/data.md \
         share/polyllama/README.md share/polyllama/INSTALL.md "share/modulefiles/polyllama/$version.lua"; do
  [[ -f $P/$f ]] || bad "not installed: $f"
done
ok "layout: bin, lib (+ cmake/polyllama), include/polyllama, share/polyllama, share/modulefiles"
[[ -x $P/bin/polyllama && -x $P/share/polyllama/jobs/pipeline.sh ]] && ok "the binary and job scripts are executable" \
  || bad "executable bits lost"
mf=$P/share/modulefiles/polyllama/$version.lua
grep -q "local root = \"$P\"" "$mf" && ok "the modulefile names the prefix installed to" \
  || bad "modulefile root: $(grep 'local root' "$mf")"
grep -q "$P/share/modulefiles/polyllama/$version.lua" "$build/install_manifest.txt" \
  && ok "the modulefile is in install_manifest.txt" || bad "modulefile missing from the manifest"

# ---- the installed binary ----
(cd "$work" && "$P/bin/polyllama" --help > "$work/help.txt") && grep -q "doctor" "$work/help.txt" \
  && ok "installed polyllama --help (lists doctor)" || bad "installed --help"
[[ $("$P/bin/polyllama" --version) == "$version" ]] && ok "installed polyllama --version: $version" || bad "--version"
"$P/bin/polyllama" doctor > "$work/doctor.txt" 2>&1 && grep -q "^ready " "$work/doctor.txt" \
  && ok "installed polyllama doctor: ready" || bad "installed doctor: $(cat "$work/doctor.txt")"
mpirun --oversubscribe --bind-to none -np 2 "$P/bin/polyllama" doctor --json > "$work/doctor2.json" 2>&1 \
  && python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); sys.exit(not (d["ready"] and d["collective"]["result"] == "ok"))' \
     "$work/doctor2.json" && ok "installed doctor under mpirun -np 2: collective ok" \
  || bad "installed doctor -np 2: $(cat "$work/doctor2.json")"

# ---- a CMake project using the installed libraries ----
mkdir -p "$work/consumer"
cat > "$work/consumer/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.25)
project(consumer LANGUAGES CXX)
find_package(polyllama 0.1 REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE polyllama::model polyllama::ckpt)
EOF
cat > "$work/consumer/main.cpp" <<'EOF'
#include <mpi.h>

#include <cstdio>

#include "polyllama/ckpt/hdf5_info.hpp"
#include "polyllama/core/version.hpp"
#include "polyllama/model/config.hpp"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const polyllama::ModelConfig cfg = polyllama::ModelConfig::preset("llama2-7b");
  cfg.validate();
  std::printf("polyllama %s: llama2-7b has %lld parameters; HDF5 %s parallel %d\n", polyllama::version(),
              static_cast<long long>(cfg.total_params()), polyllama::hdf5_info().version.c_str(),
              polyllama::hdf5_info().parallel ? 1 : 0);
  MPI_Finalize();
  return 0;
}
EOF
# build_consumer DIR [cmake args]: configure, build and run the consumer.
build_consumer() {
  local dir=$1; shift
  "$cmake" -S "$work/consumer" -B "$dir" "$@" > "$dir.log" 2>&1 && "$cmake" --build "$dir" >> "$dir.log" 2>&1 \
    && "$dir/consumer" > "$dir.out" 2>&1
}
expected="polyllama $version: llama2-7b has 6738415616 parameters; HDF5 .* parallel 1"
check_consumer() {
  if [[ $1 -eq 0 && $(cat "$2.out") =~ $expected ]]; then ok "$3: $(cat "$2.out")"
  else bad "$3 (exit $1): $(tail -30 "$2.log") $(cat "$2.out" 2>/dev/null)"; fi
}

# ---- Lmod ----
if [[ ! -f $lmod_init ]]; then
  echo "skipped: the Lmod checks (no $lmod_init; Debian: apt-get install lmod)"
  build_consumer "$work/consumer-build" -DCMAKE_PREFIX_PATH="$P"
  check_consumer $? "$work/consumer-build" "find_package(polyllama) with CMAKE_PREFIX_PATH=P: builds, links, runs"
  finish; exit
fi
(
  passes=0 fails=0  # this subshell's, added to the totals below
  set +u  # Lmod's shell functions read unset variables
  # shellcheck disable=SC1090
  source "$lmod_init"
  unset POLYLLAMA_ROOT CMAKE_PREFIX_PATH
  module use "$P/share/modulefiles"
  module load polyllama 2> "$work/load.err" && ok "module load polyllama" || bad "module load: $(cat "$work/load.err")"
  [[ $(command -v polyllama) == "$P/bin/polyllama" ]] && ok "the module puts polyllama on PATH" \
    || bad "PATH: $(command -v polyllama)"
  [[ $POLYLLAMA_ROOT == "$P" ]] && ok "POLYLLAMA_ROOT=$P" || bad "POLYLLAMA_ROOT=$POLYLLAMA_ROOT"
  [[ :$CMAKE_PREFIX_PATH: == *":$P:"* && :$LD_LIBRARY_PATH: == *":$P/lib:"* ]] \
    && ok "CMAKE_PREFIX_PATH and LD_LIBRARY_PATH name the prefix" || bad "CMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH"
  [[ $(polyllama --version) == "$version" ]] && ok "polyllama --version through the module" || bad "--version via module"
  polyllama doctor > /dev/null && ok "polyllama doctor through the module" || bad "doctor via module"
  mpirun --oversubscribe --bind-to none -np 2 polyllama doctor > "$work/mod2.txt" 2>&1 \
    && grep -q "MPI_Allreduce over 2 ranks: ok" "$work/mod2.txt" && ok "mpirun -np 2 polyllama doctor through the module" \
    || bad "mpirun through the module: $(cat "$work/mod2.txt")"
  module whatis polyllama 2>&1 | grep -q "Version: $version" && ok "module whatis" || bad "module whatis"
  module help polyllama 2>&1 | grep -q "polyllama doctor" && ok "module help" || bad "module help"
  build_consumer "$work/consumer-build"
  check_consumer $? "$work/consumer-build" "find_package(polyllama) through the module's CMAKE_PREFIX_PATH: builds, links, runs"
  module unload polyllama
  [[ -z ${POLYLLAMA_ROOT:-} && $(command -v polyllama || true) != "$P/bin/polyllama" ]] && ok "module unload undoes it" \
    || bad "after unload: POLYLLAMA_ROOT=${POLYLLAMA_ROOT:-}"

  # A build inside a module environment: which loaded modules are recorded, and the modulefile loads them first.
  loaded="gcc/12.2.0:compiler/intel:openmpi/4.1.5:hdf5/1.14.3-parallel:cmake/3.27:py-mpi4py/3.1:cuda/12.4:cudnn/8.9.7:nccl/2.18"
  cat > "$work/modules.cmake" <<EOF
include("$src/cmake/ModuleFile.cmake")
polyllama_build_modules(mods "$loaded")
message("\${mods}")
polyllama_write_modulefile(TEMPLATE "$src/modules/polyllama.lua.in" OUT "$work/mods/polyllama/$version.lua"
  ROOT "$P" VERSION "$version" LIBDIR lib MODULES "openmpi/4.1.5;hdf5/1.14.3-parallel" SUMMARY "test")
EOF
  recorded=$("$cmake" -P "$work/modules.cmake" 2>&1)
  [[ $recorded == "openmpi/4.1.5;hdf5/1.14.3-parallel;cuda/12.4;cudnn/8.9.7;nccl/2.18" ]] \
    && ok "recorded from LOADEDMODULES: $recorded" || bad "recorded modules: $recorded"
  for m in openmpi/4.1.5 hdf5/1.14.3-parallel; do
    mkdir -p "$work/mods/${m%/*}"
    echo "setenv(\"FAKE_${m%/*}\", \"loaded\")" > "$work/mods/$m.lua"
  done
  module use "$work/mods"
  module load polyllama/"$version" 2> "$work/load2.err"
  [[ ${FAKE_openmpi:-} == loaded && ${FAKE_hdf5:-} == loaded ]] && module list 2>&1 | grep -q "openmpi/4.1.5" \
    && ok "a modulefile recording openmpi and hdf5 loads them with polyllama" \
    || bad "depends_on: $(cat "$work/load2.err"; module list 2>&1)"
  echo "RESULT $passes $fails" > "$work/lmod.result"
)
read -r _ p f < "$work/lmod.result" || { p=0; f=1; echo "FAIL: the Lmod checks stopped early"; }
passes=$((passes + p)) fails=$((fails + f))
finish
