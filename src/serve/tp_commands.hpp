#pragma once
// What rank 0 tells the other ranks of a tensor-parallel server before each decode step: the requests that
// arrived (in order), those cancelled, and whether to stop. Every rank applies them to its own batcher, so the
// whole group takes the same decisions and decodes in step.
#include <mpi.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "polyllama/eval/continuous_batcher.hpp"

namespace polyllama {

struct TpCommands {
  std::vector<std::pair<uint64_t, LiveRequest>> submit;
  std::vector<uint64_t> cancel;
  bool stop = false;
  bool empty() const { return submit.empty() && cancel.empty(); }
};

// Sends cmd from rank 0 of comm to the others (which receive into cmd). The receivers wait by polling with short
// sleeps, so an idle server's other ranks do not spin a core each.
void broadcast_commands(TpCommands& cmd, MPI_Comm comm, bool root);

}  // namespace polyllama
