#pragma once
// The parallel layout (DESIGN.md section 3): world = dp * tp, tensor-parallel ranks consecutive. ParallelDims is
// the layout as a value; ParallelContext owns the process groups and is passed by reference (no global group
// accessors). Collectives go through Communicator: MPI now (host memory), NCCL later (device memory) behind the
// same interface. Each collective counts the payload bytes it moved, for the benchmark.
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

// The process groups of one layout over `world` (any communicator: tests run layouts on part of the world).
// tp(): the tp consecutive ranks of this rank's model replica; dp(): the ranks holding the same tp shard.
class ParallelContext {
 public:
  ParallelContext(const ParallelDims& dims, MPI_Comm world);
  // One process, no parallelism (MPI_COMM_SELF).
  static std::unique_ptr<ParallelContext> single();
  const ParallelDims& dims() const { return dims_; }
  int rank() const { return world_->rank(); }
  int tp_rank() const { return tp_->rank(); }
  int dp_rank() const { return dp_->rank(); }
  Communicator& world() const { return *world_; }
  Communicator& tp() const { return *tp_; }
  Communicator& dp() const { return *dp_; }
  MPI_Comm world_comm() const { return world_->comm(); }
  // Bytes and calls of every collective over all three groups, as "all_reduce 12.3 MiB (40 calls), ...".
  std::string traffic_summary() const;
  uint64_t bytes(Collective c) const;
  void reset_counters();

 private:
  ParallelDims dims_;
  std::unique_ptr<MpiCommunicator> world_, tp_, dp_;
};

}  // namespace polyllama
