// ZeRO-1 AdamW against plain AdamW on the summed gradient, written out below as PyTorch computes it
// (torch.nn.utils.clip_grad_norm_ over all tensors, then torch.optim.AdamW): tensors whose rows do not divide by dp
// (7 rows on 4 ranks, a 3-vector on 4 ranks leaves one rank without rows), buckets smaller than a tensor (one per
// tensor) and larger (several tensors), clipping active. fp64: the differences are the order of the gradient sum
// over ranks and the grouping of the update's products, so the parameters agree to 1e-12. Runs on one rank and,
// through ctest, under mpirun -np 2 and -np 4.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <vector>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/optim/zero_adamw.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {
const std::vector<std::vector<int64_t>> kShapes = {{7, 3}, {3}, {4, 2}, {5, 5}};

double grad_value(int rank, size_t t, int64_t i, int step) {
  return 0.01 * static_cast<double>((rank + 1) * (i % 5 + 1)) * (step % 2 ? -1.0 : 1.0) +
         0.003 * static_cast<double>(t);
}
double init_value(size_t t, int64_t i) { return 0.1 * static_cast<double>(t + 1) - 0.01 * static_cast<double>(i); }

struct Tensors {
  std::vector<std::vector<double>> p, g;
  std::vector<Tensor> pt, gt;
  Tensors() {
    for (size_t t = 0; t < kShapes.size(); ++t) {
      int64_t n = 1;
      for (int64_t d : kShapes[t]) n *= d;
      p.emplace_back(static_cast<size_t>(n));
      g.emplace_back(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) p[t][static_cast<size_t>(i)] = init_value(t, i);
    }
    for (size_t t = 0; t < kShapes.size(); ++t) {
      const auto& s = kShapes[t];
      pt.push_back(s.size() == 1 ? Tensor(p[t].data(), DType::f64, {s[0]})
                                 : Tensor(p[t].data(), DType::f64, {s[0], s[1]}));
      gt.push_back(s.size() == 1 ? Tensor(g[t].data(), DType::f64, {s[0]})
                                 : Tensor(g[t].data(), DType::f64, {s[0], s[1]}));
    }
  }
};
// Plain AdamW over whole tensors: the global gradient norm, clipping to grad_clip (factor grad_clip / (norm + 1e-6)
// as torch.nn.utils.clip_grad_norm_), then torch.optim.AdamW's update (decoupled decay; bias corrections).
struct ReferenceAdamW {
  OptimConfig c;
  std::vector<std::vector<double>> m, v;
  int64_t t = 0;
  double step(Tensors& x, const std::vector<bool>& decay, double lr) {
    if (m.empty())
      for (const auto& p : x.p) m.emplace_back(p.size(), 0.0), v.emplace_back(p.size(), 0.0);
    double sq = 0;
    for (const auto& g : x.g)
      for (double gi : g) sq += gi * gi;
    const double norm = std::sqrt(sq), f = norm > c.grad_clip ? c.grad_clip / (norm + 1e-6) : 1.0;
    ++t;
    const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(t));
    const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(t));
    for (size_t k = 0; k < x.p.size(); ++k)
      for (size_t i = 0; i < x.p[k].size(); ++i) {
        const double g = f * x.g[k][i];
        x.p[k][i] *= 1.0 - lr * (decay[k] ? c.weight_decay : 0.0);
        m[k][i] = c.beta1 * m[k][i] + (1.0 - c.beta1) * g;
        v[k][i] = c.beta2 * v[k][i] + (1.0 - c.beta2) * g * g;
        x.p[k][i] -= lr / bc1 * m[k][i] / (std::sqrt(v[k][i]) / std::sqrt(bc2) + c.eps);
      }
    return norm;
  }
};
}  // namespace

TEST(ZeroAdamW, EqualsAdamWOnTheSummedGradient) {
  const int rank = test::world_rank(), world = test::world_size();
  CpuBackend be(1);
  OptimConfig oc;
  oc.lr = 0.05;
  oc.warmup_steps = 0;
  oc.grad_clip = 0.05;  // the summed gradients' norm is larger: clipping is on
  for (size_t bucket : {size_t{8}, size_t{400}}) {
    Tensors ref, mine;
    std::vector<ZeroSlot> zslots;
    std::vector<bool> decay;
    for (size_t t = 0; t < kShapes.size(); ++t) {
      zslots.push_back({{"t" + std::to_string(t), mine.pt[t], mine.gt[t], t != 1}, ShardSpec::full(kShapes[t])});
      decay.push_back(t != 1);
    }
    ReferenceAdamW adam{oc, {}, {}, 0};
    ParallelContext pc(ParallelDims{1, world}, MPI_COMM_WORLD);
    ZeroAdamW zero(oc, be, zslots, pc, bucket);
    for (int step = 0; step < 3; ++step) {
      for (size_t t = 0; t < kShapes.size(); ++t)
        for (size_t i = 0; i < ref.g[t].size(); ++i) {
          double sum = 0;
          for (int r = 0; r < world; ++r) sum += grad_value(r, t, static_cast<int64_t>(i), step);
          ref.g[t][i] = sum;
          mine.g[t][i] = grad_value(rank, t, static_cast<int64_t>(i), step);
        }
      const double n_ref = adam.step(ref, decay, oc.lr);
      zero.reduce_gradients();
      const double n_zero = zero.clip_grad_norm();
      zero.step(oc.lr);
      EXPECT_NEAR(n_zero, n_ref, 1e-12 * n_ref) << "bucket " << bucket << " step " << step;
      ASSERT_GT(n_ref, oc.grad_clip);
    }
    for (size_t t = 0; t < kShapes.size(); ++t)
      EXPECT_LT(test::max_rel_err(mine.p[t].data(), ref.p[t].data(), static_cast<int64_t>(ref.p[t].size())), 1e-12)
          << "tensor " << t << " bucket " << bucket;
    // ZeRO-1 memory: this rank holds the moments of its rows only, about 1/dp of the elements (a row of rounding
    // per tensor); the arenas add their alignment, so bytes are compared with that allowance.
    int64_t own = 0, total = 0;
    for (size_t t = 0; t < kShapes.size(); ++t) {
      own += (zero.row1(t) - zero.row0(t)) * static_cast<int64_t>(mine.p[t].size()) / kShapes[t][0];
      total += static_cast<int64_t>(mine.p[t].size());
    }
    EXPECT_LE(own, total / world + static_cast<int64_t>(kShapes.size()) * 5);
    EXPECT_LE(zero.state_bytes(), static_cast<size_t>(2 * own) * sizeof(double) + 2 * kShapes.size() * 256);
    // The moments' blocks tile each tensor across the dp ranks.
    for (size_t t = 0; t < kShapes.size(); ++t) {
      const ShardSpec s = zero.state_shard(t);
      std::vector<int64_t> all(static_cast<size_t>(2 * world));
      int64_t mine_rows[2] = {s.global_offset[0], s.local_shape[0]};
      MPI_Allgather(mine_rows, 2, MPI_INT64_T, all.data(), 2, MPI_INT64_T, MPI_COMM_WORLD);
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        EXPECT_EQ(all[static_cast<size_t>(2 * r)], next);
        next += all[static_cast<size_t>(2 * r + 1)];
      }
      EXPECT_EQ(next, kShapes[t][0]);
    }
  }
}

// The overlap path: gradients announced as backward finishes them (last tensor first) are reduced bucket by
// bucket during the announcements, not at finish_reduction(), and give the same bits as reduce_gradients():
// the same collectives on the same data.
TEST(ZeroAdamW, AnnouncedGradientsAreReducedAsTheirBucketsComplete) {
  const int rank = test::world_rank(), world = test::world_size();
  CpuBackend be(1);
  OptimConfig oc;
  oc.warmup_steps = 0;
  ParallelContext pc(ParallelDims{1, world}, MPI_COMM_WORLD);
  Tensors a, b;
  std::vector<ZeroSlot> sa, sb;
  for (size_t t = 0; t < kShapes.size(); ++t) {
    sa.push_back({{"t" + std::to_string(t), a.pt[t], a.gt[t], true}, ShardSpec::full(kShapes[t])});
    sb.push_back({{"t" + std::to_string(t), b.pt[t], b.gt[t], true}, ShardSpec::full(kShapes[t])});
    for (size_t i = 0; i < a.g[t].size(); ++i)
      a.g[t][i] = b.g[t][i] = grad_value(rank, t, static_cast<int64_t>(i), 0);
  }
  // 8-byte buckets: one tensor each, cut from the last tensor backwards.
  ZeroAdamW whole(oc, be, sa, pc, 8), announced(oc, be, sb, pc, 8);
  ASSERT_EQ(announced.buckets(), kShapes.size());
  whole.reduce_gradients();
  announced.begin_reduction();
  for (size_t t = kShapes.size(); t-- > 0;) {
    announced.grad_ready(t);
    EXPECT_EQ(announced.buckets_reduced(), kShapes.size() - t) << "after announcing tensor " << t;
  }
  announced.finish_reduction();
  for (size_t t = 0; t < kShapes.size(); ++t)
    for (int64_t r = whole.row0(t); r < whole.row1(t); ++r)
      for (int64_t i = r * static_cast<int64_t>(a.g[t].size()) / kShapes[t][0];
           i < (r + 1) * static_cast<int64_t>(a.g[t].size()) / kShapes[t][0]; ++i)
        ASSERT_EQ(b.g[t][static_cast<size_t>(i)], a.g[t][static_cast<size_t>(i)]) << "tensor " << t << " elem " << i;
  // A gradient announced twice is a bug in the caller, reported as such.
  announced.begin_reduction();
  announced.grad_ready(0);
  EXPECT_THROW(announced.grad_ready(0), Error);
}
