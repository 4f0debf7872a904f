#pragma once
// What this node and launch offer the parallel area, for `polyllama doctor`: the MPI library, how the ranks were
// launched (mpirun, srun, a batch system), a checked collective, and the NCCL version this build links.
#include <mpi.h>

#include <string>

namespace polyllama {

struct MpiInfo {
  std::string library;        // MPI_Get_library_version's first line, blanks collapsed: "Open MPI v4.1.4, ..."
  int standard_major = 0;     // the MPI standard the library implements (MPI_Get_version)
  int standard_minor = 0;
  int world_size = 1;         // ranks of the communicator
  int nodes = 1;              // shared-memory nodes among them (MPI_COMM_TYPE_SHARED)
  int node_ranks = 1;         // ranks on this rank's node
  int thread_level = 0;       // MPI_Query_thread: MPI_THREAD_SINGLE ... MPI_THREAD_MULTIPLE
  std::string launcher;       // "mpirun", "srun" or "none" (started on its own: an MPI singleton)
  std::string scheduler;      // "slurm", "pbs" or "" (none)
  std::string job_id;         // SLURM_JOB_ID or PBS_JOBID; "" without a scheduler
};

// The library, the layout of `comm` and the launch environment (the launcher as the environment was when the
// program started, before MPI_Init added its own variables). Collective over `comm` (the node count).
MpiInfo mpi_info(MPI_Comm comm);
// "MPI_THREAD_FUNNELED" for a thread level.
const char* mpi_thread_level_name(int level);

// Whether collectives over `comm` deliver: an MPI_Allreduce (sum and max) of values every rank knows the answer
// to, checked on every rank, and the verdict agreed on by all. Returns "" when every rank got the right
// answers, else what the first wrong rank saw. Collective.
std::string check_allreduce(MPI_Comm comm);

// Call before MPI_Init. In a process started on its own (no launcher: a world of one) Open MPI would start a
// daemon for the singleton and probe every high-speed transport (Debian's PSM library alone calibrates for
// 0.2 s): a third of a second of every single-process verb. This says, through Open MPI's own variables and only
// where the user has not set them, that the singleton is isolated (no daemon, no session directory) and needs
// only the ob1 layer with its self transport. Other MPI libraries do not read them; launched ranks are left as
// they are. The variables stay in the environment (Open MPI reads some only when a framework first opens), so a
// child this process starts inherits them: fine for the polyllama singletons the tests start, wrong for an
// mpirun (polyllama starts none).
void prepare_singleton_mpi();

// The NCCL library this build links, "2.21.5"; "" in a build without NCCL.
std::string nccl_version();

}  // namespace polyllama
