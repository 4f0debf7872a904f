#pragma once
// The parallel layout (DESIGN.md section 3): world = dp * tp, tensor-parallel ranks consecutive. ParallelDims is
// the layout as a value; ParallelContext owns the process groups and is passed by reference (no global group
// accessors). Collectives go through Communicator: MPI for host memory, NCCL for a GPU backend's device memory,
// behind the same interface. Each collective counts the payload bytes it moved, for the benchmark.
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "polyllama/core/tensor.hpp"

namespace polyllama {

struct ParallelDims {
  int tp = 1, dp = 1;
  // Fails, naming the numbers, unless tp >= 1, dp >= 1 and tp * dp == world.
  void validate(int world) const;
  // dp = world / tp (fails when tp does not divide world).
  static ParallelDims from_tp(int tp, int world);
  // Ranks as plain integers (tp ranks consecutive): rank = dp_rank * tp + tp_rank.
  int tp_rank_of(int rank) const { return rank % tp; }
  int dp_rank_of(int rank) const { return rank / tp; }
};

enum class ReduceOp : int { sum, max };
enum class Collective : int { all_reduce, reduce_scatter, all_gather, broadcast, count };
const char* collective_name(Collective c);

// One process group. Element counts are int64; a call's counts are the same on every member (as MPI and NCCL
// require). Payload bytes counted per call: all_reduce and broadcast the buffer, reduce_scatter the whole send
// buffer, all_gather the whole gathered buffer.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // x = op over members of x (in place).
  virtual void all_reduce(void* x, int64_t n, DType t, ReduceOp op) = 0;
  // send holds every member's piece in rank order (counts[r] elements each); recv (counts[rank()]) = the sum of
  // this member's piece over members.
  virtual void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType t) = 0;
  // In place: buf holds every member's piece in rank order; on entry only this member's piece is valid, on exit
  // every piece is.
  virtual void all_gather(void* buf, const std::vector<int64_t>& counts, DType t) = 0;
  virtual void broadcast(void* x, int64_t n, DType t, int root) = 0;
  virtual void barrier() = 0;

  // Where the buffers live: host memory (MPI) or the device of the GPU backend the communicator serves (NCCL).
  virtual bool host_memory() const { return true; }
  // A copy in that memory, ordered with this communicator's collectives (a memcpy on the host; on a device, on
  // the communicator's stream, so packing a buffer for a collective overlaps like the collective itself).
  virtual void copy(void* dst, const void* src, size_t bytes);
  // Overlap with compute. By default a call is ordered as if it ran on the compute stream: it starts after every
  // op issued before it and the ops issued after it see its result. Between begin_overlap() and end_overlap()
  // (device communicators) calls still start after the ops issued before them, but run on the communicator's own
  // stream beside the ops issued after them, which wait for them only at end_overlap(); until then the caller
  // must leave their buffers alone. Host (MPI) calls complete before they return, so both are no-ops there.
  virtual void begin_overlap() {}
  virtual void end_overlap() {}

  void all_reduce(Tensor x, ReduceOp op = ReduceOp::sum) { all_reduce(x.data, x.numel(), x.dtype, op); }
  uint64_t bytes(Collective c) const { return bytes_[static_cast<size_t>(c)]; }
  uint64_t calls(Collective c) const { return calls_[static_cast<size_t>(c)]; }
  void reset_counters();

 protected:
  void count(Collective c, uint64_t b) {
    bytes_[static_cast<size_t>(c)] += b;
    calls_[static_cast<size_t>(c)] += 1;
  }

 private:
  uint64_t bytes_[static_cast<size_t>(Collective::count)] = {};
  uint64_t calls_[static_cast<size_t>(Collective::count)] = {};
};

// A Communicator over an MPI communicator it owns (freed on destruction; MPI_COMM_SELF/WORLD are not freed).
// Tensors must be in host memory.
class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm, bool owned);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MPI_Comm comm() const { return comm_; }
  void all_reduce(void* x, int64_t n, DType t, ReduceOp op) override;
  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType t) override;
  void all_gather(void* buf, const std::vector<int64_t>& counts, DType t) override;
  void broadcast(void* x, int64_t n, DType t, int root) override;
  void barrier() override;

 private:
  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
};

class Backend;

// The process groups of one layout over `world` (any communicator: tests run layouts on part of the world).
// tp(): the tp consecutive ranks of this rank's model replica; dp(): the ranks holding the same tp shard. These
// take host memory (MPI): scalars, token counts, host tensors. Tensors in the backend's memory go through
// tensor_tp() / tensor_dp(): the same groups over NCCL once a GPU backend is attached, else the MPI ones.
class ParallelContext {
 public:
  ParallelContext(const ParallelDims& dims, MPI_Comm world);
  ~ParallelContext();
  // One process, no parallelism (MPI_COMM_SELF).
  static std::unique_ptr<ParallelContext> single();
  const ParallelDims& dims() const { return dims_; }
  int rank() const { return world_->rank(); }
  int tp_rank() const { return tp_->rank(); }
  int dp_rank() const { return dp_->rank(); }
  Communicator& world() const { return *world_; }
  Communicator& tp() const { return *tp_; }
  Communicator& dp() const { return *dp_; }
  // For tensors in the attached backend's memory (see attach()).
  Communicator& tensor_tp() const { return dev_tp_ ? *dev_tp_ : *tp_; }
  Communicator& tensor_dp() const { return dev_dp_ ? *dev_dp_ : *dp_; }
  // Binds the groups to the backend whose tensors the model and optimizer hand to tensor_tp() / tensor_dp().
  // A host-memory backend needs nothing; a GPU backend gets NCCL communicators for tp and dp, bootstrapped over
  // the MPI groups (fails, saying so, in a build without NCCL). Collective: every rank calls it.
  void attach(Backend& backend);
  MPI_Comm world_comm() const { return world_->comm(); }
  // Bytes and calls of every collective over all three groups, as "all_reduce 12.3 MiB (40 calls), ...".
  std::string traffic_summary() const;
  uint64_t bytes(Collective c) const;
  void reset_counters();

 private:
  ParallelDims dims_;
  std::unique_ptr<MpiCommunicator> world_, tp_, dp_;
  std::unique_ptr<Communicator> dev_tp_, dev_dp_;
  std::vector<Communicator*> communicators() const;  // every group this context owns, for the counters
};

// Every member's string at member 0 of `comm`, in rank order (an empty vector on the other members): results of
// different sizes gathered for one writer (data's rank counts, generate's records, eval's answers).
std::vector<std::string> gather_strings(const std::string& mine, MPI_Comm comm);

// This process's rank among the ranks of `world` on its node (MPI_COMM_TYPE_SHARED): which GPU it drives.
int node_local_rank(MPI_Comm world);

// An NCCL communicator over the same members as `group` (its unique id broadcast over `group`) for tensors in
// `backend`'s device memory, ordered against the backend's compute stream by events. Fails in a build without
// NCCL or for a host-memory backend. A watchdog thread (parallel/watchdog.hpp) aborts the job, naming `label`
// and the collective, when one fails asynchronously or takes longer than POLYLLAMA_NCCL_TIMEOUT seconds.
std::unique_ptr<Communicator> make_nccl_communicator(const MpiCommunicator& group, Backend& backend,
                                                     const std::string& label = "nccl");
bool nccl_available();

}  // namespace polyllama
