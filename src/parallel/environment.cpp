// The MPI library, the launch and a checked collective, for `polyllama doctor` (parallel/environment.hpp).
#include "polyllama/parallel/environment.hpp"

#include <cstdlib>
#include <vector>

#include "polyllama/core/log.hpp"

namespace polyllama {

namespace {

bool has_env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

// How this process was started. mpirun's own markers come first: inside a Slurm allocation Open MPI's mpirun
// starts its daemons with srun, so its ranks also see SLURM_STEP_ID.
std::string launcher() {
  for (const char* v : {"OMPI_MCA_orte_hnp_uri", "PRTE_LAUNCHED", "HYDI_CONTROL_FD", "HYDRA_CONTROL_FD"})
    if (has_env(v)) return "mpirun";
  if (has_env("SLURM_STEP_ID") && has_env("SLURM_PROCID")) return "srun";
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (has_env(v)) return "mpirun";
  return "none";
}

// Read before main: MPI_Init of a singleton (Open MPI) starts its own daemon and sets mpirun's variables in this
// process's environment.
const std::string g_launcher_at_start = launcher();

}  // namespace

void prepare_singleton_mpi() {
  if (g_launcher_at_start != "none") return;
  setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
  // Isolated singletons all take the job id [0,1]: with session directories, one process's cleanup removes the
  // directory another is creating (MPI_Init fails, seen with two test processes at once). Only MPI-IO's
  // shared-memory file pointer would use one (it then complains on every parallel HDF5 file): the others serve.
  setenv("OMPI_MCA_orte_create_session_dirs", "0", 0);
  setenv("OMPI_MCA_sharedfp", "^sm", 0);
  setenv("OMPI_MCA_pml", "ob1", 0);
  setenv("OMPI_MCA_btl", "self", 0);
}

const char* mpi_thread_level_name(int level) {
  if (level == MPI_THREAD_SINGLE) return "MPI_THREAD_SINGLE";
  if (level == MPI_THREAD_FUNNELED) return "MPI_THREAD_FUNNELED";
  if (level == MPI_THREAD_SERIALIZED) return "MPI_THREAD_SERIALIZED";
  if (level == MPI_THREAD_MULTIPLE) return "MPI_THREAD_MULTIPLE";
  return "unknown";
}

MpiInfo mpi_info(MPI_Comm comm) {
  MpiInfo info;
  char lib[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int len = 0;
  MPI_Get_library_version(lib, &len);
  info.library.assign(lib, static_cast<size_t>(len > 0 ? len : 0));
  const size_t eol = info.library.find_first_of("\r\n");
  if (eol != std::string::npos) info.library.resize(eol);
  std::string collapsed;  // MPICH pads with tabs: "MPICH Version:\t4.0.2"
  for (char c : info.library) {
    if (c == '\0') break;
    const bool space = c == ' ' || c == '\t';
    if (!space || (!collapsed.empty() && collapsed.back() != ' ')) collapsed += space ? ' ' : c;
  }
  while (!collapsed.empty() && collapsed.back() == ' ') collapsed.pop_back();
  info.library = collapsed;
  MPI_Get_version(&info.standard_major, &info.standard_minor);
  MPI_Query_thread(&info.thread_level);
  MPI_Comm_size(comm, &info.world_size);

  MPI_Comm node = MPI_COMM_NULL;
  int node_rank = 0;
  MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &node_rank);
  MPI_Comm_size(node, &info.node_ranks);
  MPI_Comm_free(&node);
  int leader = node_rank == 0 ? 1 : 0;
  MPI_Allreduce(&leader, &info.nodes, 1, MPI_INT, MPI_SUM, comm);

  info.launcher = g_launcher_at_start;
  if (has_env("SLURM_JOB_ID")) {
    info.scheduler = "slurm";
    info.job_id = std::getenv("SLURM_JOB_ID");
  } else if (has_env("PBS_JOBID")) {
    info.scheduler = "pbs";
    info.job_id = std::getenv("PBS_JOBID");
  }
  return info;
}

std::string check_allreduce(MPI_Comm comm) {
  int world_rank = 0, world_size = 1;
  MPI_Comm_rank(comm, &world_rank);
  MPI_Comm_size(comm, &world_size);
  // Rank r contributes r + 1 + i at index i (exact in double): the sum is n (n + 1) / 2 + n i, the max n + i.
  constexpr int kN = 1024;
  std::vector<double> x(kN), sum(kN), max(kN);
  for (int i = 0; i < kN; ++i) x[static_cast<size_t>(i)] = world_rank + 1 + i;
  std::string why;
  int rc = MPI_Allreduce(x.data(), sum.data(), kN, MPI_DOUBLE, MPI_SUM, comm);
  if (rc == MPI_SUCCESS) rc = MPI_Allreduce(x.data(), max.data(), kN, MPI_DOUBLE, MPI_MAX, comm);
  if (rc != MPI_SUCCESS) why = fmt("rank %d: MPI_Allreduce failed with MPI error %d", world_rank, rc);
  const double n = world_size;
  for (int i = 0; why.empty() && i < kN; ++i) {
    const double want_sum = n * (n + 1) / 2 + n * i, want_max = n + i;
    const size_t k = static_cast<size_t>(i);
    if (sum[k] != want_sum || max[k] != want_max)
      why = fmt("rank %d: MPI_Allreduce over %d ranks gave sum %g and max %g at element %d, expected %g and %g",
                world_rank, world_size, sum[k], max[k], i, want_sum, want_max);
  }
  // Agree on the verdict: the lowest failing rank's message reaches every rank.
  int bad = why.empty() ? world_size : world_rank, first_bad = world_size;
  MPI_Allreduce(&bad, &first_bad, 1, MPI_INT, MPI_MIN, comm);
  if (first_bad == world_size) return "";
  std::vector<char> msg(512, '\0');
  if (world_rank == first_bad) why.copy(msg.data(), msg.size() - 1);
  MPI_Bcast(msg.data(), static_cast<int>(msg.size()), MPI_CHAR, first_bad, comm);
  return std::string(msg.data());
}

}  // namespace polyllama
