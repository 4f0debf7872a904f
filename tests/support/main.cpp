// Test main: MPI must be up for parallel HDF5 and the collectives, even in single-rank tests.
#include <gtest/gtest.h>
#include <mpi.h>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/parallel/environment.hpp"

int main(int argc, char** argv) {
  polyllama::ensure_fast_blas_kernels(argv);
  polyllama::prepare_singleton_mpi();  // the test binary runs once per test: 0.3 s each without it
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  MPI_Finalize();
  return rc;
}
