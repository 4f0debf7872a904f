#include "test_support.hpp"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

namespace fs = std::filesystem;

namespace polyllama::test {

std::string shared_data(const std::string& rel) {
  const fs::path p = fs::path(PL_SHARED_DATA) / rel;
  return fs::exists(p) ? p.string() : std::string();
}

std::string fixture(const std::string& rel) { return (fs::path(PL_FIXTURES) / rel).string(); }

std::string polyllama_binary() { return PL_BINARY; }

std::string temp_dir(const std::string& tag) {
  const fs::path p = fs::temp_directory_path() / ("polyllama_test_" + tag + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

template <typename T> static double rel_err(const T* a, const T* b, int64_t n, double floor) {
  double num = 0, den = floor;
  for (int64_t i = 0; i < n; ++i) {
    num = std::max(num, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    den = std::max(den, std::fabs(static_cast<double>(b[i])));
  }
  return num / den;
}

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

double max_rel_err(const double* a, const double* b, int64_t n, double floor) { return rel_err(a, b, n, floor); }
double max_rel_err(const float* a, const float* b, int64_t n, double floor) { return rel_err(a, b, n, floor); }
double max_rel_err(const std::vector<double>& a, const std::vector<double>& ref) {
  if (a.size() != ref.size()) return std::numeric_limits<double>::infinity();
  return rel_err(a.data(), ref.data(), static_cast<int64_t>(a.size()), 1e-12);
}

}  // namespace polyllama::test
