// The HDF5 library and a checked parallel write, for `polyllama doctor` (ckpt/hdf5_info.hpp).
#include "polyllama/ckpt/hdf5_info.hpp"

#include <unistd.h>

#include <cstdio>
#include <vector>

#include "h5_common.hpp"
#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/core/error.hpp"

namespace polyllama {

Hdf5Info hdf5_info() {
  Hdf5Info info;
  unsigned major = 0, minor = 0, release = 0;
  if (H5get_libversion(&major, &minor, &release) >= 0)
    info.version = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release);
  info.built_version =
      std::to_string(H5_VERS_MAJOR) + "." + std::to_string(H5_VERS_MINOR) + "." + std::to_string(H5_VERS_RELEASE);
#ifdef H5_HAVE_PARALLEL
  h5::quiet();
  h5::H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  info.parallel = fapl >= 0 && H5Pset_fapl_mpio(fapl, MPI_COMM_SELF, MPI_INFO_NULL) >= 0;
#endif
  return info;
}

std::string check_parallel_write(const std::string& dir, MPI_Comm comm) {
  int world_rank = 0, world_size = 1;
  MPI_Comm_rank(comm, &world_rank);
  MPI_Comm_size(comm, &world_size);
  long id = static_cast<long>(getpid());
  MPI_Bcast(&id, 1, MPI_LONG, 0, comm);  // one name for every rank: rank 0's process id
  const std::string path = dir + "/.polyllama-doctor-" + std::to_string(id) + ".h5";

  // Rank r's block of the (world_size, 4) tensor: row r, values 1000 r + c.
  constexpr int64_t kCols = 4;
  std::vector<float> mine(kCols);
  for (int64_t c = 0; c < kCols; ++c) mine[static_cast<size_t>(c)] = static_cast<float>(1000 * world_rank + c);
  std::string why;
  try {
    const ShardSpec shard = ShardSpec::split({world_size, kCols}, 0, world_size, world_rank);
    write_tensor_file(path, {{"doctor.ranks", Tensor(mine.data(), DType::f32, {1, kCols}), shard}}, nullptr, comm);
    MPI_Barrier(comm);  // every rank's block is in the file before any rank reads
    std::vector<float> all(static_cast<size_t>(world_size * kCols), -1.0f);
    read_tensor_file(path, {{"doctor.ranks", Tensor(all.data(), DType::f32, {world_size, kCols}), {}}});
    for (int64_t i = 0; why.empty() && i < world_size * kCols; ++i)
      if (all[static_cast<size_t>(i)] != static_cast<float>(1000 * (i / kCols) + i % kCols))
        why = "rank " + std::to_string(world_rank) + " read back a wrong value at element " + std::to_string(i);
  } catch (const Error& e) {
    why = e.what();
  }
  // Agree on the verdict (the lowest failing rank's message), then remove the file.
  int bad = why.empty() ? world_size : world_rank, first_bad = world_size;
  MPI_Allreduce(&bad, &first_bad, 1, MPI_INT, MPI_MIN, comm);
  if (world_rank == 0) std::remove(path.c_str());
  if (first_bad == world_size) return "";
  std::vector<char> msg(1024, '\0');
  if (world_rank == first_bad) why.copy(msg.data(), msg.size() - 1);
  MPI_Bcast(msg.data(), static_cast<int>(msg.size()), MPI_CHAR, first_bad, comm);
  return path + ": " + std::string(msg.data());
}

}  // namespace polyllama
