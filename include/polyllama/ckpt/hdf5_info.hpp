#pragma once
// What the HDF5 library of this build offers checkpoints, for `polyllama doctor`: its version and whether it is
// the parallel (MPI-IO) build that every-rank checkpoint writes need, and a checked write through that path.
#include <mpi.h>

#include <string>

namespace polyllama {

struct Hdf5Info {
  std::string version;        // the library loaded at run time (H5get_libversion), "1.10.8"
  std::string built_version;  // the headers this build compiled against
  bool parallel = false;      // built with parallel HDF5, and the loaded library accepts the MPI-IO driver
};

Hdf5Info hdf5_info();

// Every rank of `comm` writes its block of one small tensor into a scratch file under `dir` with the checkpoint
// writer (MPI-IO, collective), then every rank reads the whole tensor back and checks each value; the file is
// removed. Returns "" when that worked, else why (the same on every rank). Collective. `dir` should be on the
// file system the runs will write checkpoints to, which every node must see.
std::string check_parallel_write(const std::string& dir, MPI_Comm comm);

}  // namespace polyllama
