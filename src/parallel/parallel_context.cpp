#include <cstring>
#include <limits>

#include "polyllama/core/backend.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/parallel/parallel.hpp"

namespace polyllama {

namespace {

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    default:
      fail_input(std::string("MPI collectives take f32 or f64 host tensors, not ") + dtype_name(t));
  }
}

int as_int(int64_t n) {
  PL_CHECK(n >= 0 && n <= std::numeric_limits<int>::max(),
           "collective of " + std::to_string(n) + " elements exceeds MPI's int counts");
  return static_cast<int>(n);
}

void mpi_check(int rc, const char* what) {
  if (rc != MPI_SUCCESS)
    fail_runtime(std::string(what) + " failed with MPI error " + std::to_string(rc), __FILE__, __LINE__);
}

}  // namespace

const char* collective_name(Collective c) {
  switch (c) {
    case Collective::all_reduce:
      return "all_reduce";
    case Collective::reduce_scatter:
      return "reduce_scatter";
    case Collective::all_gather:
      return "all_gather";
    case Collective::broadcast:
      return "broadcast";
    default:
      return "?";
  }
}

void Communicator::copy(void* dst, const void* src, size_t bytes) {
  if (bytes > 0 && dst != src) std::memcpy(dst, src, bytes);
}

void Communicator::reset_counters() {
  for (auto& b : bytes_) b = 0;
  for (auto& c : calls_) c = 0;
}

void ParallelDims::validate(int world) const {
  if (tp < 1 || dp < 1)
    fail_input("parallel layout: tp and dp must be >= 1, got tp=" + std::to_string(tp) + " dp=" + std::to_string(dp));
  if (tp * dp != world)
    fail_input("parallel layout: tp * dp = " + std::to_string(tp) + " * " + std::to_string(dp) + " = " +
               std::to_string(tp * dp) + ", but " + std::to_string(world) + " ranks were launched");
}

ParallelDims ParallelDims::from_tp(int tp, int world) {
  if (tp < 1 || world % tp != 0)
    fail_input("--tp " + std::to_string(tp) + " does not divide the " + std::to_string(world) +
               " launched ranks (dp = ranks / tp must be a whole number; launch a multiple of tp with mpirun -np)");
  ParallelDims d{tp, world / tp};
  d.validate(world);
  return d;
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owned_ && !finalized) MPI_Comm_free(&comm_);
}

void MpiCommunicator::all_reduce(void* x, int64_t n, DType t, ReduceOp op) {
  if (size_ == 1) return;  // nothing moves: not counted
  count(Collective::all_reduce, static_cast<uint64_t>(n) * dtype_size(t));
  mpi_check(MPI_Allreduce(MPI_IN_PLACE, x, as_int(n), mpi_type(t), op == ReduceOp::sum ? MPI_SUM : MPI_MAX, comm_),
            "MPI_Allreduce");
}

void MpiCommunicator::reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType t) {
  PL_CHECK(static_cast<int>(counts.size()) == size_, "reduce_scatter needs one count per member");
  std::vector<int> c;
  int64_t total = 0;
  for (int64_t n : counts) c.push_back(as_int(n)), total += n;
  if (size_ == 1) {
    std::memcpy(recv, send, static_cast<size_t>(total) * dtype_size(t));
    return;
  }
  count(Collective::reduce_scatter, static_cast<uint64_t>(total) * dtype_size(t));
  mpi_check(MPI_Reduce_scatter(send, recv, c.data(), mpi_type(t), MPI_SUM, comm_), "MPI_Reduce_scatter");
}

void MpiCommunicator::all_gather(void* buf, const std::vector<int64_t>& counts, DType t) {
  PL_CHECK(static_cast<int>(counts.size()) == size_, "all_gather needs one count per member");
  std::vector<int> c, displ;
  int64_t total = 0;
  for (int64_t n : counts) c.push_back(as_int(n)), displ.push_back(as_int(total)), total += n;
  if (size_ == 1) return;
  count(Collective::all_gather, static_cast<uint64_t>(total) * dtype_size(t));
  mpi_check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, c.data(), displ.data(), mpi_type(t), comm_),
            "MPI_Allgatherv");
}

void MpiCommunicator::broadcast(void* x, int64_t n, DType t, int root) {
  if (size_ == 1) return;
  count(Collective::broadcast, static_cast<uint64_t>(n) * dtype_size(t));
  mpi_check(MPI_Bcast(x, as_int(n), mpi_type(t), root, comm_), "MPI_Bcast");
}

void MpiCommunicator::barrier() {
  if (size_ > 1) MPI_Barrier(comm_);
}

ParallelContext::ParallelContext(const ParallelDims& dims, MPI_Comm world) : dims_(dims) {
  int rank = 0, size = 1;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  dims_.validate(size);
  MPI_Comm w = MPI_COMM_NULL, tp = MPI_COMM_NULL, dp = MPI_COMM_NULL;
  MPI_Comm_dup(world, &w);
  // Colour by replica (consecutive ranks share a model replica) and by shard; key by rank keeps the order.
  MPI_Comm_split(world, dims_.dp_rank_of(rank), rank, &tp);
  MPI_Comm_split(world, dims_.tp_rank_of(rank), rank, &dp);
  world_ = std::make_unique<MpiCommunicator>(w, true);
  tp_ = std::make_unique<MpiCommunicator>(tp, true);
  dp_ = std::make_unique<MpiCommunicator>(dp, true);
  PL_CHECK(tp_->rank() == dims_.tp_rank_of(rank) && dp_->rank() == dims_.dp_rank_of(rank), "bad group split");
}

ParallelContext::~ParallelContext() {
  dev_tp_.reset();  // before the MPI groups they were bootstrapped over
  dev_dp_.reset();
}

void ParallelContext::attach(Backend& backend) {
  if (backend.host_memory()) {
    dev_tp_.reset();
    dev_dp_.reset();
    return;
  }
  // A group of one calls nothing (the model and optimizer skip their collectives), so it needs no NCCL: one GPU
  // trains in a build without it.
  dev_tp_ = tp_->size() > 1 ? make_nccl_communicator(*tp_, backend, "tp group") : nullptr;
  dev_dp_ = dp_->size() > 1 ? make_nccl_communicator(*dp_, backend, "dp group") : nullptr;
}

int node_local_rank(MPI_Comm world) {
  MPI_Comm node = MPI_COMM_NULL;
  int r = 0;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &r);
  MPI_Comm_free(&node);
  return r;
}

std::unique_ptr<ParallelContext> ParallelContext::single() {
  return std::make_unique<ParallelContext>(ParallelDims{1, 1}, MPI_COMM_SELF);
}

std::vector<Communicator*> ParallelContext::communicators() const {
  std::vector<Communicator*> all = {world_.get(), tp_.get(), dp_.get()};
  for (Communicator* d : {dev_tp_.get(), dev_dp_.get()})
    if (d) all.push_back(d);
  return all;
}

uint64_t ParallelContext::bytes(Collective c) const {
  uint64_t b = 0;
  for (const Communicator* g : communicators()) b += g->bytes(c);
  return b;
}

void ParallelContext::reset_counters() {
  for (Communicator* g : communicators()) g->reset_counters();
}

std::string ParallelContext::traffic_summary() const {
  std::string s;
  for (int i = 0; i < static_cast<int>(Collective::count); ++i) {
    const auto c = static_cast<Collective>(i);
    uint64_t calls = 0;
    for (const Communicator* g : communicators()) calls += g->calls(c);
    if (calls == 0) continue;
    s += fmt("%s%s %.2f MiB (%llu calls)", s.empty() ? "" : ", ", collective_name(c),
             static_cast<double>(bytes(c)) / (1 << 20), static_cast<unsigned long long>(calls));
  }
  return s.empty() ? "no collectives" : s;
}

std::vector<std::string> gather_strings(const std::string& mine, MPI_Comm comm) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const int n = static_cast<int>(mine.size());
  std::vector<int> sizes(static_cast<size_t>(size)), displs(static_cast<size_t>(size), 0);
  MPI_Gather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, 0, comm);
  std::string all;
  if (rank == 0) {
    for (int r = 1; r < size; ++r)
      displs[static_cast<size_t>(r)] = displs[static_cast<size_t>(r - 1)] + sizes[static_cast<size_t>(r - 1)];
    all.resize(static_cast<size_t>(displs.back() + sizes.back()));
  }
  MPI_Gatherv(mine.data(), n, MPI_CHAR, all.data(), sizes.data(), displs.data(), MPI_CHAR, 0, comm);
  std::vector<std::string> out;
  if (rank == 0)
    for (int r = 0; r < size; ++r)
      out.push_back(all.substr(static_cast<size_t>(displs[static_cast<size_t>(r)]),
                               static_cast<size_t>(sizes[static_cast<size_t>(r)])));
  return out;
}

}  // namespace polyllama
