#pragma once
// Shared by the tests: where the shared data and fixtures are, and small numeric helpers.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "polyllama/backend/backend_factory.hpp"
#include "polyllama/core/error.hpp"

namespace polyllama::test {

// ../shared/data/<rel> when present, else "" (the caller skips).
std::string shared_data(const std::string& rel);
std::string fixture(const std::string& rel);
std::string polyllama_binary();
// This process's rank in MPI_COMM_WORLD and the number of ranks launched.
int world_rank();
int world_size();
// A file's bytes ("" when it cannot be read) and a file written with exactly these bytes.
std::string slurp(const std::string& path);
void spit(const std::string& path, const std::string& bytes);
// A fresh empty directory under the build's temp area, removed at exit.
std::string temp_dir(const std::string& tag);

// max_i |a_i - b_i| / max(max_i |b_i|, floor): error relative to the reference's scale.
double max_rel_err(const double* a, const double* b, int64_t n, double floor = 1e-12);
double max_rel_err(const float* a, const float* b, int64_t n, double floor = 1e-12);
// The same over whole vectors; sizes must match (a mismatch returns infinity, so the comparison fails).
double max_rel_err(const std::vector<double>& a, const std::vector<double>& ref);

// The exit code and message of fn's polyllama::Error ({0, ""} when it did not throw).
template <typename Fn> std::pair<int, std::string> error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return {e.code(), e.what()};
  }
  return {0, ""};
}

}  // namespace polyllama::test

// Skips the current test, saying why, where no CUDA device can be used (no GPU, or a build without CUDA).
#define SKIP_WITHOUT_GPU()                                            \
  do {                                                                \
    std::string why_no_gpu;                                           \
    if (!::polyllama::cuda_available(&why_no_gpu))                    \
      GTEST_SKIP() << "no GPU here: " << why_no_gpu;                  \
  } while (0)
