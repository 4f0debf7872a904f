// Agreed failures and aborts for collective sections (parallel/agree.hpp).
#include "polyllama/parallel/agree.hpp"

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "polyllama/core/error.hpp"

namespace polyllama {

void run_agreed(MPI_Comm comm, const std::function<void()>& fn) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  int code = kExitOk;
  std::string why;
  try {
    fn();
  } catch (const Error& e) {
    code = e.code(), why = e.what();
  } catch (const std::exception& e) {
    code = kExitRuntime, why = e.what();
  }
  int first = code == kExitOk ? INT_MAX : rank;
  MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, comm);
  if (first == INT_MAX) return;
  // The first failing rank's code and message reach every rank, so all report the same error.
  long long head[2] = {code, static_cast<long long>(why.size())};
  MPI_Bcast(head, 2, MPI_LONG_LONG, first, comm);
  std::vector<char> msg(static_cast<size_t>(head[1]));
  if (rank == first) why.copy(msg.data(), msg.size());
  if (!msg.empty()) MPI_Bcast(msg.data(), static_cast<int>(msg.size()), MPI_CHAR, first, comm);
  throw Error(static_cast<ExitCode>(head[0]), std::string(msg.begin(), msg.end()));
}

void abort_collective(MPI_Comm comm, int code, const std::string& what) {
  int size = 1, rank = 0, world_rank = 0;
  MPI_Comm_size(comm, &size);
  if (size == 1) throw Error(static_cast<ExitCode>(code), what);
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  std::fprintf(stderr, "polyllama: error: %s (rank %d; the other ranks may be waiting inside the same collective "
               "operation, so the job is aborted)\n", what.c_str(), world_rank);
  std::fflush(stderr);
  MPI_Abort(comm, code);
  std::abort();  // MPI_Abort does not return
}

}  // namespace polyllama
