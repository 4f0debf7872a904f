#include "polyllama/optim/zero_adamw.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace polyllama {

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
  if (dp_ > 1 && !be_.host_memory())
    fail_input(std::string("data parallelism runs on host-memory backends in this version (MPI collectives); the ") +
               be_.name() + " backend needs the NCCL collectives");
  size_t bucket_elems = 0, max_bucket = 0, max_own = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Tensor& p = slots_[i].slot.param;
    const int64_t R = p.dim(0);
    own_.push_back({R * dp_rank_ / dp_, R * (dp_rank_ + 1) / dp_});
    handles_.push_back(m_.reserve({std::max<int64_t>(1, (own_[i].second - own_[i].first) * row_elems(i))}));
    v_.reserve({std::max<int64_t>(1, (own_[i].second - own_[i].first) * row_elems(i))});
    const size_t bytes = p.bytes();
    if (buckets_.empty() || bucket_elems >= bucket_bytes) {
      buckets_.push_back({i, i});
      bucket_elems = 0;
    }
    buckets_.back().last = i + 1;
    bucket_elems += bytes;
  }
  for (const Bucket& b : buckets_) {
    size_t bytes = 0;
    for (size_t i = b.first; i < b.last; ++i) bytes += slots_[i].slot.param.bytes();
    max_bucket = std::max(max_bucket, bytes);
    max_own = std::max(max_own, static_cast<size_t>(counts(b)[static_cast<size_t>(dp_rank_)]) *
                                    dtype_size(slots_[0].slot.param.dtype));
  }
  if (dp_ > 1) send_.resize(max_bucket), recv_.resize(max_own);
  m_.allocate();
  v_.allocate();
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

std::vector<int64_t> ZeroAdamW::counts(const Bucket& b) const {
  std::vector<int64_t> c(static_cast<size_t>(dp_), 0);
  for (size_t i = b.first; i < b.last; ++i) {
    const int64_t R = slots_[i].slot.param.dim(0);
    for (int r = 0; r < dp_; ++r) c[static_cast<size_t>(r)] += (R * (r + 1) / dp_ - R * r / dp_) * row_elems(i);
  }
  return c;
}

void ZeroAdamW::reduce_gradients() {
  if (dp_ == 1) return;
  const DType t = slots_[0].slot.grad.dtype;
  const size_t es = dtype_size(t);
  for (const Bucket& b : buckets_) {
    // Pack each dp rank's rows of the bucket's tensors together, rank after rank, for the reduce-scatter.
    char* out = send_.data();
    for (int r = 0; r < dp_; ++r)
      for (size_t i = b.first; i < b.last; ++i) {
        const Tensor& g = slots_[i].slot.grad;
        const int64_t R = g.dim(0), w = row_elems(i), r0 = R * r / dp_, r1 = R * (r + 1) / dp_;
        const size_t n = static_cast<size_t>((r1 - r0) * w) * es;
        std::memcpy(out, static_cast<const char*>(g.data) + static_cast<size_t>(r0 * w) * es, n);
        out += n;
      }
    par_.dp().reduce_scatter(send_.data(), recv_.data(), counts(b), t);
    const char* in = recv_.data();
    for (size_t i = b.first; i < b.last; ++i) {
      const Tensor mine = rows(slots_[i].slot.grad, i);
      std::memcpy(mine.data, in, mine.bytes());
      in += mine.bytes();
    }
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
  const size_t es = dtype_size(slots_[0].slot.param.dtype);
  for (const Bucket& b : buckets_) {
    const std::vector<int64_t> c = counts(b);
    size_t mine_at = 0;
    for (int r = 0; r < dp_rank_; ++r) mine_at += static_cast<size_t>(c[static_cast<size_t>(r)]) * es;
    char* out = send_.data() + mine_at;
    for (size_t i = b.first; i < b.last; ++i) {
      const Tensor mine = rows(slots_[i].slot.param, i);
      std::memcpy(out, mine.data, mine.bytes());
      out += mine.bytes();
    }
    par_.dp().all_gather(send_.data(), c, slots_[0].slot.param.dtype);
    const char* in = send_.data();
    for (int r = 0; r < dp_; ++r)
      for (size_t i = b.first; i < b.last; ++i) {
        const Tensor& p = slots_[i].slot.param;
        const int64_t R = p.dim(0), w = row_elems(i), r0 = R * r / dp_, r1 = R * (r + 1) / dp_;
        const size_t n = static_cast<size_t>((r1 - r0) * w) * es;
        std::memcpy(static_cast<char*>(p.data) + static_cast<size_t>(r0 * w) * es, in, n);
        in += n;
      }
  }
}

}  // namespace polyllama
