#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "polyllama/backend/cpu/cpu_backend.hpp"

extern "C" {
char* openblas_get_corename(void);
char* openblas_get_config(void);
}

namespace polyllama {

namespace {

// The OpenBLAS kernel family for this CPU, from its instruction sets (best first), or "" for none better than
// what OpenBLAS's own detection can find.
const char* best_coretype() {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  if (avx512 && __builtin_cpu_supports("avx512bf16")) return "Cooperlake";
  if (avx512) return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return "";
}

// Cores OpenBLAS falls back to when it does not recognise a CPU: SSE-only kernels.
bool is_fallback_core(const std::string& name) {
  for (const char* n : {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Northwood", "Katmai",
                        "Coppermine", "Banias", "Sandybridge"})
    if (name == n) return true;
  return false;
}

}  // namespace

void ensure_fast_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("POLYLLAMA_BLAS_REEXEC")) return;  // the user chose, or done
  const std::string core = openblas_get_corename();
  const char* best = best_coretype();
  if (!is_fallback_core(core) || !*best) return;
  // OpenBLAS chose its kernels when it was loaded, before main: the choice only changes in a new image.
  setenv("OPENBLAS_CORETYPE", best, 1);
  setenv("POLYLLAMA_BLAS_REEXEC", core.c_str(), 1);
  execv("/proc/self/exe", argv);
  unsetenv("OPENBLAS_CORETYPE");  // exec failed (no /proc): carry on with the slow kernels
}

std::string blas_description() {
  std::string s = std::string("OpenBLAS ") + openblas_get_corename();
  if (const char* was = std::getenv("POLYLLAMA_BLAS_REEXEC")) s += std::string(" (detected ") + was + ", overridden)";
  return s;
}

}  // namespace polyllama
