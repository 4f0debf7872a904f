// The planner's cuda memory model against what the model allocates on a GPU in bf16 mixed precision: f32
// parameters and gradients, the bf16 working copy, the optimizer's f32 moments, bf16 activations with f32 statistics
// and the flash-attention workspace, byte for byte. Skips without a GPU.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "polyllama/backend/backend_factory.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/train/plan.hpp"
#include "polyllama/optim/zero_adamw.hpp"
#include "polyllama/train/train_step.hpp"

namespace polyllama {
namespace {

TEST(CudaPlan, MatchesTheGpuArenas) {
  std::string why;
  if (!cuda_available(&why)) GTEST_SKIP() << "no GPU here: " << why;
  std::unique_ptr<Backend> gpu = make_backend("cuda");
  for (bool tied : {false, true}) {
    ModelConfig m = ModelConfig::preset("tiny");
    m.hidden_size = 192, m.intermediate_size = 520, m.num_attention_heads = 6, m.num_key_value_heads = 2;
    m.vocab_size = 1003 + (tied ? 0 : 7), m.num_hidden_layers = 3, m.tie_word_embeddings = tied;
    LlamaModel model(m, *gpu, DType::f32, /*mixed_precision=*/true);
    model.allocate_activations(3, 29);
    const auto one = ParallelContext::single();
    ZeroAdamW opt(OptimConfig{}, *gpu, zero_slots_of(model), *one);

    PlanConfig c;
    c.model = m, c.device = "cuda", c.micro_batch = 3, c.seq = 29, c.mem_bytes = int64_t{80} << 30;
    const Plan p = make_plan(c);
    EXPECT_EQ(p.mem.weights + p.mem.weights_bf16, static_cast<int64_t>(model.parameter_bytes())) << tied;
    EXPECT_EQ(p.mem.grads, p.mem.weights) << tied;
    EXPECT_EQ(p.mem.optimizer, static_cast<int64_t>(opt.state_bytes())) << tied;
    // The plan's buffers also count the context's cuBLASLt workspace and reduction buffer (64 MiB) and the
    // staged token ids (4 x N int32), which live outside the model's arenas.
    const int64_t outside = (int64_t{64} << 20) + 4 * 3 * 29 * 4;
    EXPECT_EQ(p.mem.activations + p.mem.buffers - outside, static_cast<int64_t>(model.activation_bytes())) << tied;
  }
}

}  // namespace
}  // namespace polyllama
