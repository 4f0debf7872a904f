#pragma once
// Data-parallel AdamW with ZeRO-1: gradients are summed over the dp ranks by bucketed reduce-scatters, each dp
// rank keeps the AdamW moments of, and updates, only its rows of every parameter, and the updated rows are
// all-gathered (bucketed) so every rank holds the whole (tp-local) parameters again. The gradient norm for
// clipping is the true global one: squares summed over each rank's own rows, over dp and tp (tensors replicated
// across tp counted once), then all-reduced. Without data parallelism (dp = 1) it is plain AdamW with the same
// arithmetic. Row ownership: a tensor's rows (dim 0; a vector's elements) split as evenly as they divide,
// rank d owning [R*d/dp, R*(d+1)/dp).
// Overlap: buckets are cut from the last parameter backwards (the order backward finishes them); the backward
// pass announces each finished gradient (grad_ready) and a bucket is reduced as soon as all of its gradients
// are final, on the communicator's own stream beside the rest of the backward pass (NCCL), or at once (MPI).
// Every bucket's pieces are padded to one length so NCCL's even reduce-scatter / all-gather serve them.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "polyllama/core/arena.hpp"
#include "polyllama/core/backend.hpp"
#include "polyllama/core/shard_spec.hpp"
#include "polyllama/optim/optim_config.hpp"
#include "polyllama/parallel/parallel.hpp"

namespace polyllama {

// ZeRO-1's row ownership, the one formula: dp rank d of dp owns rows [R d / dp, R (d + 1) / dp) of a tensor of R
// rows (a vector's elements), as even as they divide.
std::pair<int64_t, int64_t> zero_row_range(int64_t rows, int dp, int dp_rank);

struct ZeroSlot {
  ParamSlot slot;      // this tp rank's parameter and gradient
  ShardSpec tp_shard;  // where that sits in the full logical tensor (replica_id != 0: replicated across tp)
};

class ZeroAdamW {
 public:
  // bucket_bytes: gradient bytes per reduce-scatter / all-gather call (whole tensors, at least one per bucket).
  ZeroAdamW(const OptimConfig& cfg, Backend& backend, std::vector<ZeroSlot> slots, const ParallelContext& par,
            size_t bucket_bytes = size_t{16} << 20);
  ~ZeroAdamW();
  ZeroAdamW(const ZeroAdamW&) = delete;
  ZeroAdamW& operator=(const ZeroAdamW&) = delete;
  // Sums the gradients over dp into this rank's own rows (the other rows are left as they were):
  // begin_reduction() then finish_reduction().
  void reduce_gradients();
  // Before the last backward pass of a step: the gradients it finishes are announced with grad_ready(slot), in the
  // same order on every dp rank, and each bucket is reduced once all its slots are final. finish_reduction()
  // reduces the buckets not yet reduced and orders the compute after every reduction.
  void begin_reduction();
  void grad_ready(size_t slot);
  void finish_reduction();
  // Buckets reduced so far in this reduction (for tests: how many ran before finish_reduction()).
  size_t buckets_reduced() const { return reduced_; }
  size_t buckets() const { return buckets_.size(); }
  // Global L2 norm over every gradient of the model; arms the clipping of the next step(). Returns the norm.
  double clip_grad_norm();
  // Updates this rank's rows, then gathers every rank's rows of the parameters.
  void step(double lr);
  // Instead of step(): drops the clipping armed by clip_grad_norm() and leaves the parameters, the moments and the
  // step count as they are (a step skipped for a non-finite loss or gradient norm; every rank must skip it).
  void discard_step() { clip_factor_ = 1.0; }
  int64_t steps_done() const { return steps_; }
  void set_steps_done(int64_t s) { steps_ = s; }
  const std::vector<ZeroSlot>& slots() const { return slots_; }
  // This rank's rows [row0, row1) of slot i, and its moments (shaped as those rows) with where they sit in the
  // full logical tensor (replica_id 0 when this rank writes them).
  int64_t row0(size_t i) const { return own_[i].first; }
  int64_t row1(size_t i) const { return own_[i].second; }
  Tensor exp_avg(size_t i) const { return shaped(m_.get(handles_[i]), i); }
  Tensor exp_avg_sq(size_t i) const { return shaped(v_.get(handles_[i]), i); }
  ShardSpec state_shard(size_t i) const;
  size_t state_bytes() const { return m_.bytes() + v_.bytes(); }
  // Elements of one moment (exp_avg or exp_avg_sq) that dp rank dp_rank keeps for a tensor of `shape` (at least
  // one, so every slot has a tensor): what the constructor reserves and `plan` counts.
  static int64_t moment_elems(const std::vector<int64_t>& shape, int dp, int dp_rank);

 private:
  struct Bucket {
    size_t first, last;  // slots [first, last)
    int64_t piece;       // elements per dp rank, padded to the largest rank's rows
    size_t pending = 0;  // slots not yet final in the current reduction
    bool done = false;
  };
  void reduce_bucket(Bucket& b);
  Communicator& comm() const { return par_.tensor_dp(); }
  Tensor rows(Tensor t, size_t i) const;  // rows [row0, row1) of slot i's tensor, flat
  Tensor shaped(Tensor flat, size_t i) const;
  int64_t row_elems(size_t i) const;
  // Element count of dp rank r's rows in a bucket (its piece holds them, then padding).
  int64_t rank_elems(const Bucket& b, int r) const;
  OptimConfig cfg_;
  Backend& be_;
  std::vector<ZeroSlot> slots_;
  const ParallelContext& par_;
  int dp_, dp_rank_;
  std::vector<std::pair<int64_t, int64_t>> own_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // per slot
  void* send_ = nullptr;           // staging in the backend's memory, sized once: dp pieces of the largest bucket
  void* recv_ = nullptr;           // one piece
  bool reducing_ = false;
  size_t reduced_ = 0;
  Arena m_, v_;
  std::vector<int> handles_;
  int64_t steps_ = 0;
  double clip_factor_ = 1.0;
};

}  // namespace polyllama
