// `polyllama doctor`: what this node and launch offer polyllama, one line each (MPI and the launch, parallel HDF5,
// OpenBLAS, SentencePiece, CUDA with cuBLASLt, cuDNN and NCCL, a checked collective across the launched ranks, and
// on request a parallel HDF5 write on the run's file system). Exit 0 when every rank can run polyllama, 1 with
// the reasons otherwise; warnings (slower but working setups) do not change the exit code. The probes belong to
// the areas that own each library: parallel/environment.hpp, ckpt/hdf5_info.hpp, BlasInfo in
// backend/cpu/cpu_backend.hpp, tokenizer.hpp, backend/backend_factory.hpp.
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>
#include <vector>

#include "polyllama/backend/backend_factory.hpp"
#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/ckpt/hdf5_info.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/core/version.hpp"
#include "polyllama/parallel/environment.hpp"
#include "polyllama/parallel/parallel.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

namespace {

using json = nlohmann::json;

struct Opts {
  std::string check_dir;
  bool json = false, require_cuda = false;
};

std::string host_name() {
  char h[256] = {};
  gethostname(h, sizeof h - 1);
  return h;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
  return s;
}

// Every rank's messages at rank 0 (empty elsewhere), each once with the ranks that reported it: "MESSAGE (rank 3
// on HOST)" or "MESSAGE (ranks 0, 1, 2, 3 of 4; rank 0 on HOST)". Collective.
std::vector<std::string> gather_messages(const std::vector<std::string>& mine, int world_rank) {
  std::string joined;
  for (const std::string& m : mine) joined += std::to_string(world_rank) + "\t" + host_name() + "\t" + m + "\n";
  std::vector<std::string> parts = gather_strings(joined, MPI_COMM_WORLD);
  std::vector<std::string> order;                                    // messages in first-seen order
  std::map<std::string, std::pair<std::string, std::vector<int>>> seen;  // message -> (first host, ranks)
  for (const std::string& part : parts) {
    std::istringstream in(part);
    for (std::string l; std::getline(in, l);) {
      const size_t a = l.find('\t'), b = l.find('\t', a + 1);
      const std::string msg = l.substr(b + 1);
      auto [it, fresh] = seen.try_emplace(msg, l.substr(a + 1, b - a - 1), std::vector<int>{});
      if (fresh) order.push_back(msg);
      it->second.second.push_back(std::stoi(l.substr(0, a)));
    }
  }
  std::vector<std::string> out;
  for (const std::string& msg : order) {
    const auto& [host, ranks] = seen[msg];
    if (ranks.size() == 1) {
      out.push_back(msg + " (rank " + std::to_string(ranks[0]) + " on " + host + ")");
      continue;
    }
    std::string list;
    for (size_t i = 0; i < ranks.size() && i < 8; ++i) list += (i ? ", " : "") + std::to_string(ranks[i]);
    if (ranks.size() > 8) list += ", ...";
    out.push_back(msg + " (ranks " + list + ": " + std::to_string(ranks.size()) + " of " +
                  std::to_string(parts.size()) + "; rank " + std::to_string(ranks[0]) + " on " + host + ")");
  }
  return out;
}

// What every rank found; the messages and verdict are complete at rank 0.
struct Report {
  MpiInfo mpi;
  Hdf5Info h5;
  BlasInfo blas;
  CudaInfo cuda;
  std::string nccl, collective, write;
  std::vector<std::string> problems, warnings;  // every rank's, at rank 0
  bool ready = true;                            // on every rank
};

// The probes, on every rank (collective).
Report probe(const Opts& o) {
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  Report r;
  std::vector<std::string> problems, warnings;  // this rank's
  r.mpi = mpi_info(MPI_COMM_WORLD);
  r.h5 = hdf5_info();
  if (!r.h5.parallel)
    problems.push_back("HDF5 " + r.h5.version +
                       " is not the parallel (MPI-IO) build checkpoints need: load a parallel HDF5 (Debian: "
                       "libhdf5-openmpi-dev) and rebuild polyllama against it");
  if (r.h5.version != r.h5.built_version)
    warnings.push_back("HDF5 " + r.h5.version + " is loaded, polyllama was built against " + r.h5.built_version);
  r.blas = blas_info();
  if (!r.blas.sgemm_check.empty()) problems.push_back("OpenBLAS: " + r.blas.sgemm_check);
  if (r.blas.threading != "OpenMP")
    warnings.push_back("OpenBLAS is the " + r.blas.threading +
                       " build: its threads compete with polyllama's OpenMP loops (Debian: libopenblas0-openmp)");
  if (r.blas.omp_threads > r.blas.cpus)
    warnings.push_back(fmt("OpenMP runs %d threads on %d CPU%s (this rank's binding): set OMP_NUM_THREADS=%d or "
                           "bind each rank to more cores",
                           r.blas.omp_threads, r.blas.cpus, r.blas.cpus == 1 ? "" : "s", r.blas.cpus));
  r.cuda = cuda_info();
  r.nccl = nccl_version();
  if (o.require_cuda && r.cuda.devices.empty())
    problems.push_back("--require-cuda: " + (r.cuda.error.empty() ? std::string("no CUDA device") : r.cuda.error));

  r.collective = "skipped (one rank; launch with mpirun -np 2 to check)";
  if (r.mpi.world_size > 1) {
    const std::string why = check_allreduce(MPI_COMM_WORLD);  // the same verdict on every rank
    r.collective = why.empty() ? "ok" : why;
    if (!why.empty() && world_rank == 0) problems.push_back("collective check: " + why);
  }
  r.write = "skipped (--check-dir DIR writes a test file on the run's file system)";
  if (!o.check_dir.empty()) {
    const std::string why = check_parallel_write(o.check_dir, MPI_COMM_WORLD);  // the same on every rank
    r.write = why.empty() ? "ok" : why;
    if (!why.empty() && world_rank == 0) problems.push_back("parallel HDF5 write: " + why);
  }

  int bad = problems.empty() ? 0 : 1, any_bad = 0;
  MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  r.ready = any_bad == 0;
  r.problems = gather_messages(problems, world_rank);
  r.warnings = gather_messages(warnings, world_rank);
  return r;
}

json to_json(const Report& r) {
  const MpiInfo& m = r.mpi;
  const BlasInfo& b = r.blas;
  const CudaInfo& c = r.cuda;
  return {{"version", version()},
          {"ready", r.ready},
          {"problems", r.problems},
          {"warnings", r.warnings},
          {"mpi",
           {{"library", m.library},
            {"standard", std::to_string(m.standard_major) + "." + std::to_string(m.standard_minor)},
            {"ranks", m.world_size},
            {"nodes", m.nodes},
            {"thread_level", mpi_thread_level_name(m.thread_level)},
            {"launcher", m.launcher},
            {"scheduler", m.scheduler},
            {"job_id", m.job_id}}},
          {"hdf5",
           {{"version", r.h5.version},
            {"built_version", r.h5.built_version},
            {"parallel", r.h5.parallel},
            {"write_check", r.write}}},
          {"openblas",
           {{"config", trimmed(b.config)},
            {"core", b.core},
            {"threading", b.threading},
            {"threads", b.threads},
            {"omp_threads", b.omp_threads},
            {"cpus", b.cpus},
            {"sgemm_check", b.sgemm_check.empty() ? "ok" : b.sgemm_check}}},
          {"sentencepiece", {{"version", sentencepiece_version()}}},
          {"cuda",
           {{"built", c.built},
            {"driver", c.driver},
            {"runtime", c.runtime},
            {"cublaslt", c.cublaslt},
            {"cudnn", c.cudnn},
            {"nccl", r.nccl},
            {"devices", c.devices},
            {"error", c.error}}},
          {"collective", {{"ranks", m.world_size}, {"result", r.collective}}}};
}

// "driver 12.4, runtime 12.4, ...; 1 device(s): NVIDIA H100 ..." or why there is none (information, not failure).
std::string cuda_line(const CudaInfo& cuda, const std::string& nccl) {
  if (!cuda.built) return "not in this build (CPU only)";
  auto or_else = [](const std::string& s, const char* none) { return s.empty() ? std::string(none) : s; };
  std::string s = "driver " + or_else(cuda.driver, "none") + ", runtime " + cuda.runtime + ", cuBLASLt " +
                  cuda.cublaslt + ", cuDNN " + or_else(cuda.cudnn, "not in this build") + ", NCCL " +
                  or_else(nccl, "not in this build") + "; ";
  if (cuda.devices.empty()) return s + "no CUDA device (" + cuda.error + ")";
  s += std::to_string(cuda.devices.size()) + " device(s) on rank 0's node: ";
  for (size_t i = 0; i < cuda.devices.size(); ++i) s += (i ? ", " : "") + cuda.devices[i];
  return s;
}

void print_lines(const Report& r) {
  auto line = [](const char* what, const std::string& text) { std::printf("%-14s %s\n", what, text.c_str()); };
  const MpiInfo& m = r.mpi;
  std::string launch = m.launcher == "none" ? "started without mpirun or srun" : "launched by " + m.launcher;
  if (m.scheduler.empty())
    launch += ", no batch system";
  else
    launch += std::string(" in ") + (m.scheduler == "slurm" ? "Slurm" : "PBS") + " job " + m.job_id;
  const std::string library = m.library.substr(0, m.library.find(", "));  // "Open MPI v4.1.4"
  line("polyllama", std::string(version()) + " on " + host_name());
  line("MPI", fmt("%s (MPI %d.%d, %s); %d rank%s on %d node%s, %s", library.c_str(), m.standard_major,
                  m.standard_minor, mpi_thread_level_name(m.thread_level), m.world_size, m.world_size == 1 ? "" : "s",
                  m.nodes, m.nodes == 1 ? "" : "s", launch.c_str()));
  line("HDF5", r.h5.version + (r.h5.parallel ? ", parallel (MPI-IO)" : ", NOT parallel") +
                   (r.h5.version == r.h5.built_version ? "" : " (built against " + r.h5.built_version + ")") +
                   "; parallel write: " + r.write);
  const BlasInfo& b = r.blas;
  std::istringstream words(b.config);  // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..."
  std::string name, blas_version;
  words >> name >> blas_version;
  line("OpenBLAS", fmt("%s, %s threading, core %s%s; %d BLAS / %d OpenMP thread%s on %d CPU%s; sgemm %s",
                       blas_version.c_str(), b.threading.c_str(), b.core.c_str(),
                       b.overridden ? " (chosen by polyllama)" : "", b.threads, b.omp_threads,
                       b.omp_threads == 1 ? "" : "s", b.cpus, b.cpus == 1 ? "" : "s",
                       b.sgemm_check.empty() ? "ok" : b.sgemm_check.c_str()));
  line("SentencePiece", sentencepiece_version());
  line("CUDA", cuda_line(r.cuda, r.nccl));
  line("collective",
       m.world_size > 1 ? fmt("MPI_Allreduce over %d ranks: %s", m.world_size, r.collective.c_str()) : r.collective);
  for (const std::string& w : r.warnings) line("warning", w);
  if (r.ready) line("ready", "this node can run polyllama");
  std::fflush(stdout);
  for (const std::string& p : r.problems) std::fprintf(stderr, "polyllama doctor: not ready: %s\n", p.c_str());
  std::fflush(stderr);
}

int run(const Opts& o) {
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  const Report r = probe(o);
  if (world_rank == 0) {
    if (o.json) {
      std::printf("%s\n", to_json(r).dump(-1, ' ', false, json::error_handler_t::replace).c_str());
      std::fflush(stdout);
    } else {
      print_lines(r);
    }
  }
  return r.ready ? kExitOk : kExitBadInput;
}

}  // namespace

RunFn add_doctor(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "doctor",
      "What this node offers polyllama, one line each: MPI (library, ranks, nodes, launcher, Slurm or PBS job), "
      "parallel HDF5, OpenBLAS (kernels, threads, a checked sgemm), SentencePiece, CUDA (devices, driver, runtime, "
      "cuBLASLt, cuDNN, NCCL), and an MPI_Allreduce checked across the ranks when launched on more than one. Exit 0 "
      "when every rank can run polyllama, 1 with the reasons otherwise. Examples: polyllama doctor | "
      "mpirun -np 2 polyllama doctor --check-dir /scratch/runs | srun -N 2 polyllama doctor --json");
  add_config_file(cmd);
  auto o = std::make_shared<Opts>();
  cmd->add_option("--check-dir", o->check_dir,
                  "also write and read back a small HDF5 file there with every rank through MPI-IO, as checkpoints "
                  "do (use the file system the runs write to)")
      ->check(CLI::ExistingDirectory);
  cmd->add_flag("--require-cuda", o->require_cuda, "exit 1 when no CUDA device is usable (for GPU nodes)");
  cmd->add_flag("--json", o->json, "print one JSON object instead of the lines");
  return [cmd, o]() { return cmd->parsed() ? run(*o) : 0; };
}

}  // namespace polyllama::cli
