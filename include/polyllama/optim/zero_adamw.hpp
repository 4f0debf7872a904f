#pragma once
// Data-parallel AdamW with ZeRO-1: gradients are summed over the dp ranks by bucketed reduce-scatters, each dp
// rank keeps the AdamW moments of, and updates, only its rows of every parameter, and the updated rows are
// all-gathered (bucketed) so every rank holds the whole (tp-local) parameters again. The gradient norm for
// clipping is the true global one: squares summed over each rank's own rows, over dp and tp (tensors replicated
// across tp counted once), then all-reduced. Without data parallelism (dp = 1) it is plain AdamW with the same
// arithmetic. Row ownership: a tensor's rows (dim 0; a vector's elements) split as evenly as they divide,
// rank d owning [R*d/dp, R*(d+1)/dp).
#include <cstdint>
#include <string>
#include <vector>

#include "polyllama/core/arena.hpp"
#include "polyllama/core/backend.hpp"
#include "polyllama/core/shard_spec.hpp"
#include "polyllama/optim/adamw.hpp"
#include "polyllama/parallel/parallel.hpp"

namespace polyllama {

struct ZeroSlot {
  ParamSlot slot;      // this tp rank's parameter and gradient
  ShardSpec tp_shard;  // where that sits in the full logical tensor (replica_id != 0: replicated across tp)
};

class ZeroAdamW {
 public:
  // bucket_bytes: gradient bytes per reduce-scatter / all-gather call (whole tensors, at least one per bucket).
  ZeroAdamW(const OptimConfig& cfg, Backend& backend, std::vector<ZeroSlot> slots, const ParallelContext& par,
            size_t bucket_bytes = size_t{16} << 20);
  // Sums the gradients over dp into this rank's own rows (the other rows are left as they were).
  void reduce_gradients();
  // Global L2 norm over every gradient of the model; arms the clipping of the next step(). Returns the norm.
  double clip_grad_norm();
  // Updates this rank's rows, then gathers every rank's rows of the parameters.
  void step(double lr);
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

 private:
  struct Bucket {
    size_t first, last;  // slots [first, last)
  };
  Tensor rows(Tensor t, size_t i) const;  // rows [row0, row1) of slot i's tensor, flat
  Tensor shaped(Tensor flat, size_t i) const;
  int64_t row_elems(size_t i) const;
  // Element counts of each dp rank's rows in a bucket.
  std::vector<int64_t> counts(const Bucket& b) const;
  OptimConfig cfg_;
  Backend& be_;
  std::vector<ZeroSlot> slots_;
  const ParallelContext& par_;
  int dp_, dp_rank_;
  std::vector<std::pair<int64_t, int64_t>> own_;
  std::vector<Bucket> buckets_;
  std::vector<char> send_, recv_;  // staging, sized once
  Arena m_, v_;
  std::vector<int> handles_;
  int64_t steps_ = 0;
  double clip_factor_ = 1.0;
};

}  // namespace polyllama
