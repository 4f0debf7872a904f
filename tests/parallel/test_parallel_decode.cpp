// Tensor-parallel decoding equals one process: at tp 2 and 4 (as the world allows) a KV-cached decoder over the
// ranks' shards of a GQA model (8 heads, 4 kv heads) gives, for two left-padded rows prefilled in chunks and then
// decoded one token at a time, the logits of the unsharded decoder at every position: within 1e-5 relative in
// fp32 (tp only reorders the o_proj / down_proj / embedding sums over ranks, ~1e-7 per rounding over at most a
// few hundred terms; the embedding sum adds exact zeros) and 1e-12 in fp64 (the algorithm itself is exact).
// The gathered rows are bitwise the same on every tp rank, which is what lets each rank sample the same token.
// The same logits also equal the training forward's (LlamaModel::forward_logits of the unsharded model over each
// row's unpadded sequence, the path tests/model/test_torch_reference.cpp checks against PyTorch): 2e-5 relative
// in fp32 and 1e-12 in fp64, as tests/model/test_decode.cpp argues for tp 1 (the paths differ in the shapes of
// their products and in the tp sums, so in rounding only).
// Skipped on one rank; run through ctest under mpirun -np 2 and 4.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <vector>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/model/llama_decode.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

using test::world_rank;
using test::world_size;

ModelConfig gqa_config(bool tied) {
  ModelConfig c;
  c.hidden_size = 64;  // head_dim 8
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.vocab_size = 128;
  c.max_position_embeddings = 40;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = tied;
  return c;
}

// The logits after the prompt and after each decoded token (B rows each, V): two rows left-padded by 3, a 7-token
// prompt each prefilled in chunks of 3, then 9 tokens decoded one at a time.
std::vector<double> decode_all(LlamaModel& model) {
  const int64_t V = model.config().vocab_size, B = 2, P = 7, steps = 9, pad = 3, cap = pad + P + steps;
  std::vector<int32_t> seq(static_cast<size_t>(B * (P + steps)));
  for (size_t i = 0; i < seq.size(); ++i) seq[i] = static_cast<int32_t>(random_bits(5, 3, i) % V);
  std::vector<int32_t> prompt(static_cast<size_t>(B * (pad + P)), 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < P; ++t)
      prompt[static_cast<size_t>(b * (pad + P) + pad + t)] = seq[static_cast<size_t>(b * (P + steps) + t)];
  LlamaDecoder dec(model, {B, 3, cap, false});  // prefill chunks of 3
  dec.begin(B, cap, {pad, pad});
  std::vector<double> out, logits;
  dec.append(prompt.data(), pad + P, &logits);
  out.insert(out.end(), logits.begin(), logits.end());
  for (int64_t t = P; t < P + steps; ++t) {
    const int32_t next[2] = {seq[static_cast<size_t>(t)], seq[static_cast<size_t>(P + steps + t)]};
    dec.append(next, 1, &logits);
    out.insert(out.end(), logits.begin(), logits.end());
  }
  return out;
}

// What the decoder's logits should be: the training forward of the unsharded model over each row's sequence
// (no padding), at the positions decode_all reports (the prompt's last, then each decoded token's), in its order.
std::vector<double> training_forward(LlamaModel& whole) {
  const int64_t V = whole.config().vocab_size, B = 2, P = 7, steps = 9, T = P + steps;
  std::vector<int32_t> seq(static_cast<size_t>(B * T));
  for (size_t i = 0; i < seq.size(); ++i) seq[i] = static_cast<int32_t>(random_bits(5, 3, i) % V);
  std::vector<double> rows(static_cast<size_t>(B * T * V)), out;
  for (int64_t b = 0; b < B; ++b) {
    double* dst = rows.data() + b * T * V;
    if (whole.dtype() == DType::f64) {
      whole.forward_logits(seq.data() + b * T, Tensor(dst, DType::f64, {T, V}));
    } else {
      std::vector<float> f(static_cast<size_t>(T * V));
      whole.forward_logits(seq.data() + b * T, Tensor(f.data(), DType::f32, {T, V}));
      std::copy(f.begin(), f.end(), dst);
    }
  }
  for (int64_t t = P - 1; t < T; ++t)
    for (int64_t b = 0; b < B; ++b)
      out.insert(out.end(), rows.begin() + (b * T + t) * V, rows.begin() + (b * T + t + 1) * V);
  return out;
}

}  // namespace

TEST(ParallelDecode, CachedLogitsEqualOneProcessAtEveryStep) {
  if (world_size() < 2) GTEST_SKIP() << "needs 2 or more ranks (mpirun -np 2)";
  for (int tp : {2, 4}) {
    if (tp > world_size()) continue;
    MPI_Comm comm = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, world_rank() < tp ? 0 : MPI_UNDEFINED, world_rank(), &comm);
    if (comm == MPI_COMM_NULL) continue;
    {
      ParallelContext pc(ParallelDims::from_tp(tp, tp), comm);
      for (DType dt : {DType::f32, DType::f64})
        for (bool tied : {false, true}) {
          const double tol = dt == DType::f32 ? 1e-5 : 1e-12;
          CpuBackend be(1);
          LlamaModel whole(gqa_config(tied), be, dt);
          whole.init_random(11, 0.3);  // init_random draws by index in the full tensor: both hold one model
          LlamaModel shard(gqa_config(tied), be, dt, false, &pc);
          shard.init_random(11, 0.3);
          const std::vector<double> ref = decode_all(whole), got = decode_all(shard);
          ASSERT_EQ(got.size(), ref.size());
          const double err = test::max_rel_err(got, ref);
          if (pc.rank() == 0)
            std::printf("[ tp decode ] tp %d %s%s: worst relative error of %zu logits vs one process: %.2e "
                        "(tol %.0e)\n", tp, dtype_name(dt), tied ? " tied" : "", got.size(), err, tol);
          EXPECT_LT(err, tol) << "tp " << tp << " " << dtype_name(dt) << (tied ? " tied" : "");
          whole.allocate_activations(1, 16);
          const double err_fwd = test::max_rel_err(got, training_forward(whole));
          const double tol_fwd = dt == DType::f32 ? 2e-5 : 1e-12;
          if (pc.rank() == 0)
            std::printf("[ tp decode ] tp %d %s%s: worst relative error vs the training forward: %.2e (tol %.0e)\n",
                        tp, dtype_name(dt), tied ? " tied" : "", err_fwd, tol_fwd);
          EXPECT_LT(err_fwd, tol_fwd) << "tp " << tp << " vs training forward";
          std::vector<double> first = got;  // tp rank 0's rows, on every rank
          pc.tp().broadcast(first.data(), static_cast<int64_t>(first.size()), DType::f64, 0);
          EXPECT_EQ(std::memcmp(first.data(), got.data(), got.size() * sizeof(double)), 0)
              << "tp rank " << pc.tp_rank() << " gathered other logits than tp rank 0";
        }
    }
    MPI_Comm_free(&comm);
  }
}
