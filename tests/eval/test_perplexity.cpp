// Perplexity (eval/perplexity.cpp) against its definition computed independently here: the windows of a
// document built from the rule (each token after BOS predicted once, in the first window whose end passes it), the
// full logits of each window from the training forward (LlamaModel::forward_logits), and -log softmax of each
// predicted token summed in double. fp64, so the two agree to rounding (1e-10 relative). Then the per-source
// totals: token perplexity exp(nats / tokens), bits per character and per byte of the text (counted here from the
// text itself).
#include <gtest/gtest.h>

#include <cmath>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/eval/perplexity.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

ModelConfig small(int64_t vocab) {
  ModelConfig c;
  c.hidden_size = 32, c.intermediate_size = 64, c.num_hidden_layers = 2, c.num_attention_heads = 4;
  c.num_key_value_heads = 2, c.vocab_size = vocab, c.max_position_embeddings = 64;
  return c;
}

// The definition: windows starting at 0, stride, 2 stride, ...; window s predicts targets (max scored, s + T].
double reference_nll(const ModelConfig& cfg, LlamaModel& src, const std::vector<int32_t>& ids, int64_t T,
                     int64_t stride, int64_t* count) {
  CpuBackend be(1);
  const int64_t n = static_cast<int64_t>(ids.size()), V = cfg.vocab_size;
  double nats = 0;
  int64_t scored = 0;
  *count = 0;
  for (int64_t s = 0; scored < n - 1; s += stride) {
    const int64_t len = std::min(T, n - s);  // the window's real tokens
    LlamaModel m(cfg, be, DType::f64);
    for (size_t i = 0; i < m.params().size(); ++i) be.copy(m.param(i), src.param(i));
    m.allocate_activations(1, len);
    std::vector<double> logits(static_cast<size_t>(len * V));
    m.forward_logits(ids.data() + s, Tensor(logits.data(), DType::f64, {len, V}));
    for (int64_t t = 0; t < len; ++t) {
      const int64_t target = s + t + 1;
      if (target >= n || target <= scored) continue;
      const double* row = logits.data() + t * V;
      double mx = row[0], sum = 0;
      for (int64_t j = 0; j < V; ++j) mx = std::max(mx, row[j]);
      for (int64_t j = 0; j < V; ++j) sum += std::exp(row[j] - mx);
      nats += mx + std::log(sum) - row[ids[static_cast<size_t>(target)]];
      ++*count;
    }
    scored = std::min(s + T, n - 1);
  }
  return nats;
}

}  // namespace

TEST(Perplexity, WindowsEqualTheirDefinition) {
  const ModelConfig cfg = small(97);
  CpuBackend be(1);
  LlamaModel model(cfg, be, DType::f64);
  model.init_random(3, 0.2);
  const int64_t T = 16;
  model.allocate_activations(1, T);
  for (int64_t n : {2, 9, 16, 17, 40, 61}) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 37 + 11) % 97);
    for (int64_t stride : {16, 8, 5, 1}) {
      int64_t want_count = 0;
      const double want = reference_nll(cfg, model, ids, T, stride, &want_count);
      const auto [got, count] = sequence_nll(model, ids, stride);
      EXPECT_EQ(count, n - 1) << "every token after BOS predicted once: n " << n << " stride " << stride;
      EXPECT_EQ(count, want_count);
      EXPECT_NEAR(got, want, 1e-10 * std::fabs(want)) << "n " << n << " stride " << stride;
    }
  }
}

TEST(Perplexity, PerSourceTotalsOfATextFile) {
  const std::string dir = test::temp_dir("ppl");
  const std::string text1 = "the river carries the grey cat", text2 = "a child remembers día 12 — 你好";
  test::spit(dir + "/t.txt", text1 + "\n\n" + text2 + "\n");
  const Tokenizer tok = Tokenizer::from_file(test::fixture("hf_tiny/tokenizer.model"));
  const ModelConfig cfg = small(320);
  CpuBackend be(1);
  LlamaModel model(cfg, be, DType::f64);
  model.init_random(5, 0.2);
  PplConfig pc;
  pc.seq = 32, pc.stride = 16, pc.input.blank_line_docs = true;
  pc.validate(cfg);
  model.allocate_activations(1, pc.seq);
  const auto par = ParallelContext::single();
  const std::vector<PplResult> r =
      evaluate_perplexity(model, tok, *par, {parse_ppl_source("xx:" + dir + "/t.txt")}, pc);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].source.label, "xx");
  EXPECT_EQ(r[0].documents, 2);
  // The documents as `polyllama data` reads them: a blank line ends one, each keeps its lines' line breaks. Counted
  // with Python: len(text) of the two is 30 + 1 and 29 + 1 code points, len(text.encode()) 30 + 1 and 36 + 1 bytes.
  const int64_t chars = 31 + 30, bytes = 31 + 37;
  EXPECT_EQ(r[0].chars, chars);
  EXPECT_EQ(r[0].bytes, bytes);
  double nats = 0;
  int64_t tokens = 0;
  for (const std::string& t : {text1 + "\n", text2 + "\n"}) {
    std::vector<int32_t> ids = {tok.bos_id()};
    for (int32_t id : tok.encode(t)) ids.push_back(id);
    const auto [n, c] = sequence_nll(model, ids, pc.stride);
    nats += n, tokens += c;
  }
  EXPECT_EQ(r[0].tokens, tokens);
  EXPECT_NEAR(r[0].nats, nats, 1e-12 * nats);
  EXPECT_NEAR(r[0].perplexity(), std::exp(nats / static_cast<double>(tokens)), 1e-12 * r[0].perplexity());
  EXPECT_NEAR(r[0].bits_per_char(), nats / std::log(2.0) / static_cast<double>(chars), 1e-12);
  EXPECT_NEAR(r[0].bits_per_byte(), nats / std::log(2.0) / static_cast<double>(bytes), 1e-12);
}

TEST(Perplexity, SourcesAndSettingsAreChecked) {
  EXPECT_EQ(parse_ppl_source("zh:/a/b.txt").label, "zh");
  EXPECT_EQ(parse_ppl_source("zh:/a/b.txt").path, "/a/b.txt");
  EXPECT_EQ(parse_ppl_source("/a/b.txt").label, "b.txt");
  EXPECT_EQ(test::error_of([] { parse_ppl_source(":x"); }).first, kExitBadInput);
  const ModelConfig cfg = small(97);
  PplConfig pc;
  pc.seq = 65, pc.stride = 8;
  EXPECT_EQ(test::error_of([&] { pc.validate(cfg); }).first, kExitBadInput);  // beyond max_position_embeddings
  pc.seq = 32, pc.stride = 33;
  EXPECT_EQ(test::error_of([&] { pc.validate(cfg); }).first, kExitBadInput);
}
