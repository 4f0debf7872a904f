#include "polyllama/optim/zero_adamw.hpp"

#include <algorithm>
#include <cmath>

namespace polyllama {

std::pair<int64_t, int64_t> zero_row_range(int64_t rows, int dp, int dp_rank) {
  return {rows * dp_rank / dp, rows * (dp_rank + 1) / dp};
}

int64_t ZeroAdamW::moment_elems(const std::vector<int64_t>& shape, int dp, int dp_rank) {
  int64_t row = 1;
  for (size_t d = 1; d < shape.size(); ++d) row *= shape[d];
  const auto [r0, r1] = zero_row_range(shape.at(0), dp, dp_rank);
  return std::max<int64_t>(1, (r1 - r0) * row);
}

ZeroAdamW::ZeroAdamW(const OptimConfig& cfg, Backend& backend, std::vector<ZeroSlot> slots, const ParallelContext& par,
                     size_t bucket_bytes)
    : cfg_(cfg),
      be_(backend),
      slots_(std::move(slots)),
      par_(par),
      dp_(par.dims().dp),
      dp_rank_(par.dp_rank()),
      m_("adam.exp_avg", slots_.empty() ? DType::f32 : slots_[0].slot.param.dtype, &backend),
      v_("adam.exp_avg_sq", slots_.empty() ? DType::f32 : slots_[0].slot.param.dtype, &backend) {
  cfg_.validate();
  PL_CHECK(!slots_.empty(), "optimizer without parameters");
  if (dp_ > 1 && comm().host_memory() != be_.host_memory())
    fail_input(std::string("data parallelism on the ") + be_.name() + " backend needs its collectives: call " +
               "ParallelContext::attach(backend) before building the optimizer");
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Tensor& p = slots_[i].slot.param;
    own_.push_back(zero_row_range(p.dim(0), dp_, dp_rank_));
    const int64_t n = moment_elems(std::vector<int64_t>(p.shape.begin(), p.shape.begin() + p.ndim), dp_, dp_rank_);
    handles_.push_back(m_.reserve({n}));  // m and v share one layout: one handle serves both
    v_.reserve({n});
  }
  // Buckets from the last slot backwards: backward finishes the LM head first and the embedding last.
  bucket_of_.assign(slots_.size(), 0);
  size_t bytes = 0;
  for (size_t i = slots_.size(); i-- > 0;) {
    if (buckets_.empty() || bytes >= bucket_bytes) {
      buckets_.push_back({i, i + 1, 0});
      bytes = 0;
    }
    buckets_.back().first = i;
    bucket_of_[i] = buckets_.size() - 1;
    bytes += slots_[i].slot.param.bytes();
  }
  int64_t max_piece = 0;
  for (Bucket& b : buckets_) {
    for (int r = 0; r < dp_; ++r) b.piece = std::max(b.piece, rank_elems(b, r));
    max_piece = std::max(max_piece, b.piece);
  }
  if (dp_ > 1) {
    const size_t es = dtype_size(slots_[0].slot.param.dtype);
    send_ = be_.device_alloc(static_cast<size_t>(max_piece * dp_) * es);
    recv_ = be_.device_alloc(static_cast<size_t>(max_piece) * es);
  }
  m_.allocate();
  v_.allocate();
}

ZeroAdamW::~ZeroAdamW() {
  be_.device_free(send_);
  be_.device_free(recv_);
}

int64_t ZeroAdamW::row_elems(size_t i) const {
  const Tensor& p = slots_[i].slot.param;
  return p.numel() / p.dim(0);
}

Tensor ZeroAdamW::rows(Tensor t, size_t i) const {
  const int64_t w = row_elems(i), r0 = own_[i].first, n = (own_[i].second - r0) * w;
  Tensor flat = t.view({t.numel()});
  flat.data = static_cast<char*>(t.data) + static_cast<size_t>(r0 * w) * dtype_size(t.dtype);
  flat.shape[0] = n;
  return flat;
}

Tensor ZeroAdamW::shaped(Tensor flat, size_t i) const {
  const int64_t n = own_[i].second - own_[i].first;
  Tensor t = flat;
  const Tensor& p = slots_[i].slot.param;
  if (p.ndim == 1)
    t.shape = {n, 0, 0, 0}, t.ndim = 1;
  else
    t.shape = {n, row_elems(i), 0, 0}, t.ndim = 2;
  return t;
}

ShardSpec ZeroAdamW::state_shard(size_t i) const {
  ShardSpec s = slots_[i].tp_shard;
  s.global_offset[0] += own_[i].first;
  s.local_shape[0] = own_[i].second - own_[i].first;
  return s;  // replica_id stays the tp one: the dp ranks' rows are disjoint
}

int64_t ZeroAdamW::rank_elems(const Bucket& b, int r) const {
  int64_t n = 0;
  for (size_t i = b.first; i < b.last; ++i) {
    const auto [r0, r1] = zero_row_range(slots_[i].slot.param.dim(0), dp_, r);
    n += (r1 - r0) * row_elems(i);
  }
  return n;
}

void ZeroAdamW::begin_reduction() {
  reducing_ = true;
  reduced_ = 0;
  for (Bucket& b : buckets_) b.pending = b.last - b.first, b.done = false;
  if (dp_ > 1) comm().begin_overlap();
}

void ZeroAdamW::grad_ready(size_t slot) {
  PL_CHECK(reducing_ && slot < slots_.size(), "grad_ready outside begin_reduction()/finish_reduction()");
  Bucket& b = buckets_[bucket_of_[slot]];
  PL_CHECK(b.pending > 0, "gradient of " + slots_[slot].slot.name + " announced twice");
  if (--b.pending == 0) reduce_bucket(b);
}

void ZeroAdamW::finish_reduction() {
  PL_CHECK(reducing_, "finish_reduction() without begin_reduction()");
  for (Bucket& b : buckets_) reduce_bucket(b);
  if (dp_ > 1) comm().end_overlap();
  reducing_ = false;
}

void ZeroAdamW::reduce_gradients() {
  begin_reduction();
  finish_reduction();
}

// Packs each dp rank's rows of the bucket's gradients into that rank's piece of the send buffer, reduce-scatters,
// and copies the summed piece back into this rank's rows. The copies are the communicator's, so they run in its
// order (on its stream beside the backward pass, on a GPU).
void ZeroAdamW::reduce_bucket(Bucket& b) {
  if (b.done) return;
  b.done = true;
  ++reduced_;
  if (dp_ == 1) return;
  const DType t = slots_[0].slot.grad.dtype;
  const size_t es = dtype_size(t);
  Communicator& c = comm();
  for (int r = 0; r < dp_; ++r) {
    char* out = static_cast<char*>(send_) + static_cast<size_t>(b.piece * r) * es;
    for (size_t i = b.first; i < b.last; ++i) {
      const Tensor& g = slots_[i].slot.grad;
      const int64_t w = row_elems(i);
      const auto [r0, r1] = zero_row_range(g.dim(0), dp_, r);
      const size_t n = static_cast<size_t>((r1 - r0) * w) * es;
      c.copy(out, static_cast<const char*>(g.data) + static_cast<size_t>(r0 * w) * es, n);
      out += n;
    }
  }
  c.reduce_scatter(send_, recv_, std::vector<int64_t>(static_cast<size_t>(dp_), b.piece), t);
  const char* in = static_cast<const char*>(recv_);
  for (size_t i = b.first; i < b.last; ++i) {
    const Tensor mine = rows(slots_[i].slot.grad, i);
    c.copy(mine.data, in, mine.bytes());
    in += mine.bytes();
  }
}

double ZeroAdamW::clip_grad_norm() {
  std::vector<Tensor> grads;
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].tp_shard.replica_id == 0) grads.push_back(rows(slots_[i].slot.grad, i));
  double sq = grads.empty() ? 0.0 : be_.sum_squares_all(grads);
  par_.world().all_reduce(&sq, 1, DType::f64, ReduceOp::sum);
  const double norm = std::sqrt(sq);
  clip_factor_ = cfg_.grad_clip > 0 && norm > cfg_.grad_clip ? cfg_.grad_clip / (norm + 1e-6) : 1.0;
  return norm;
}

void ZeroAdamW::step(double lr) {
  ++steps_;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (own_[i].second == own_[i].first) continue;
    const ParamSlot& s = slots_[i].slot;
    AdamWParams p{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, s.decay ? cfg_.weight_decay : 0.0, clip_factor_, steps_};
    Tensor m = m_.get(handles_[i]), v = v_.get(handles_[i]);
    const Tensor pr = rows(s.param, i);
    m.shape[0] = v.shape[0] = pr.numel();
    be_.adamw(pr, rows(s.grad, i), m, v, p);
  }
  clip_factor_ = 1.0;
  if (dp_ == 1) return;
  // Every rank's updated rows to every rank: this rank's piece packed at its offset, gathered in place.
  const DType t = slots_[0].slot.param.dtype;
  const size_t es = dtype_size(t);
  Communicator& c = comm();
  for (const Bucket& b : buckets_) {
    char* out = static_cast<char*>(send_) + static_cast<size_t>(b.piece * dp_rank_) * es;
    for (size_t i = b.first; i < b.last; ++i) {
      const Tensor mine = rows(slots_[i].slot.param, i);
      c.copy(out, mine.data, mine.bytes());
      out += mine.bytes();
    }
    c.all_gather(send_, std::vector<int64_t>(static_cast<size_t>(dp_), b.piece), t);
    for (int r = 0; r < dp_; ++r) {
      const char* in = static_cast<const char*>(send_) + static_cast<size_t>(b.piece * r) * es;
      for (size_t i = b.first; i < b.last; ++i) {
        const Tensor& p = slots_[i].slot.param;
        const int64_t w = row_elems(i);
        const auto [r0, r1] = zero_row_range(p.dim(0), dp_, r);
        const size_t n = static_cast<size_t>((r1 - r0) * w) * es;
        c.copy(static_cast<char*>(p.data) + static_cast<size_t>(r0 * w) * es, in, n);
        in += n;
      }
    }
  }
}

}  // namespace polyllama
