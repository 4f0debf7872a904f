// The evaluation engine (eval/engine.cpp) on the Hugging Face fixture tests/fixtures/hf_tiny:
//  * the next-token log-probabilities equal those of the PyTorch reference of Hugging Face's LLaMA
//    (tests/reference/hf_letters_ref.py: float64, each prompt whole, no cache, no batch): fp64 within 1e-9 (the two
//    differ only in summation order, ~1e-15 per operation), fp32 within 1e-4 (log-probabilities of magnitude ~8
//    through two layers of fp32 products: ~1e-6 measured);
//  * computing a group's common prefix once and appending each prompt's suffix right-padded gives what each
//    prompt computed whole gives: fp64 within 1e-12, fp32 within 1e-5 (other shapes, other rounding only);
//  * other batch sizes and chunks move the results by rounding only (same tolerances), and a group's results do
//    not depend on the other groups computed with it or their order, bit for bit: what makes `eval` write the
//    same log-probabilities however its subjects are split over ranks (eval/runner.cpp assigns whole subjects);
//  * a label is read at the first id of its encoding alone (LLaMA 2's "A" -> "▁A", 319).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/ckpt/hf_folder.hpp"
#include "polyllama/eval/engine.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

struct RefCase {
  std::string group, text;
  std::vector<int32_t> ids;
  std::vector<double> logprobs;
};
struct Ref {
  std::vector<int32_t> read;
  std::vector<RefCase> cases;
};

// The committed fixture, or a freshly regenerated one (tests/reference/check_fixture_reference.sh).
Ref reference() {
  const char* fresh = std::getenv("POLYLLAMA_LETTERS_REF_FIXTURE");
  std::ifstream f(fresh && *fresh ? std::string(fresh) : test::fixture("hf_tiny/reference_letters.json"));
  EXPECT_TRUE(f.good());
  const nlohmann::json j = nlohmann::json::parse(f);
  Ref r;
  r.read = j.at("read").get<std::vector<int32_t>>();
  for (const auto& c : j.at("cases"))
    r.cases.push_back({c.at("group"), c.at("text"), c.at("prompt_ids").get<std::vector<int32_t>>(),
                       c.at("logprobs").get<std::vector<double>>()});
  return r;
}

struct Fixture {
  CpuBackend be;
  std::unique_ptr<LlamaModel> model;
  Tokenizer tok = Tokenizer::from_file(test::fixture("hf_tiny/tokenizer.model"));
  explicit Fixture(DType dt) {
    const HfFolderReader hf(test::fixture("hf_tiny"));
    model = std::make_unique<LlamaModel>(ModelConfig::from_hf_json(hf.config(), hf.config_path()), be, dt);
    for (size_t i = 0; i < model->params().size(); ++i) hf.read(model->params()[i].name, model->param(i));
  }
};

std::vector<NextTokenRequest> requests(const Ref& ref) {
  std::vector<NextTokenRequest> r;
  for (const RefCase& c : ref.cases) r.push_back({c.ids, ref.read, c.group, c.text});
  return r;
}

double worst(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
  double w = 0;
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    EXPECT_EQ(a[i].size(), b[i].size()) << i;
    for (size_t k = 0; k < a[i].size() && k < b[i].size(); ++k) w = std::max(w, std::fabs(a[i][k] - b[i][k]));
  }
  return w;
}

class HfLetters : public ::testing::TestWithParam<DType> {};

TEST_P(HfLetters, LogprobsEqualThePyTorchReference) {
  const Ref ref = reference();
  ASSERT_EQ(ref.cases.size(), 6u);
  Fixture fx(GetParam());
  for (const RefCase& c : ref.cases) {  // BOS and the prompt encoded whole, as the engine encodes a question
    std::vector<int32_t> ids = {fx.tok.bos_id()};
    for (int32_t id : fx.tok.encode(c.text)) ids.push_back(id);
    EXPECT_EQ(ids, c.ids) << c.text;
  }
  std::vector<std::vector<double>> want;
  for (const RefCase& c : ref.cases) want.push_back(c.logprobs);
  EngineConfig cfg;
  cfg.batch_size = 3, cfg.prefill_chunk = 7;  // several batches and chunks inside the shared group
  EngineStats st;
  const auto got = next_token_logprobs(*fx.model, cfg, requests(ref), {}, &st);
  const double tol = GetParam() == DType::f64 ? 1e-9 : 1e-4;
  const double err = worst(got, want);
  std::printf("[ letters ] %s: worst |log p - PyTorch| %.2e (tol %.0e); %lld positions computed for %zu prompts\n",
              dtype_name(GetParam()), err, tol, static_cast<long long>(st.computed_tokens), ref.cases.size());
  EXPECT_LT(err, tol);
  // The shared prefix was computed once: fewer positions than the prompts hold.
  int64_t total = 0;
  for (const RefCase& c : ref.cases) total += static_cast<int64_t>(c.ids.size());
  EXPECT_LT(st.computed_tokens, total);
}

TEST_P(HfLetters, PrefixReuseEqualsWholePromptsAndGroupsAreIndependent) {
  const Ref ref = reference();
  Fixture fx(GetParam());
  EngineConfig whole;
  whole.reuse_prefix = false, whole.batch_size = 1;
  const auto a = next_token_logprobs(*fx.model, whole, requests(ref));
  EngineConfig shared;
  shared.batch_size = 4;
  const auto b = next_token_logprobs(*fx.model, shared, requests(ref));
  EXPECT_LT(worst(a, b), GetParam() == DType::f64 ? 1e-12 : 1e-5);
  // Other batch sizes and chunks: other GEMM shapes, so rounding differences only.
  for (int64_t batch : {1, 2, 3}) {
    for (int64_t chunk : {1, 5, 64}) {
      EngineConfig c;
      c.batch_size = batch, c.prefill_chunk = chunk;
      EXPECT_LT(worst(next_token_logprobs(*fx.model, c, requests(ref)), b), GetParam() == DType::f64 ? 1e-12 : 1e-5)
          << "batch " << batch << " chunk " << chunk;
    }
  }
  // A group computed alone, or after the other groups, gives the same bits.
  std::vector<NextTokenRequest> reordered = requests(ref);
  std::reverse(reordered.begin(), reordered.end());
  auto r = next_token_logprobs(*fx.model, shared, reordered);
  std::reverse(r.begin(), r.end());
  EXPECT_EQ(r, b);
  std::vector<NextTokenRequest> shots;
  for (const NextTokenRequest& q : requests(ref))
    if (q.group == "shots") shots.push_back(q);
  const auto alone = next_token_logprobs(*fx.model, shared, shots);
  EXPECT_EQ(alone, std::vector<std::vector<double>>(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(alone.size())));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, HfLetters, ::testing::Values(DType::f32, DType::f64),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(EvalLabels, FirstIdOfTheLabelAlone) {
  const std::string path = test::shared_data("tokenizers/llama2-tokenizer.model");
  if (path.empty()) GTEST_SKIP() << "no ../shared/data/tokenizers/llama2-tokenizer.model";
  const Tokenizer tok = Tokenizer::from_file(path);
  // spm_encode --model llama2-tokenizer.model --output_format=id on "A" .. "D": 319, 350, 315, 360.
  EXPECT_EQ(label_token(tok, "A"), 319);
  EXPECT_EQ(label_token(tok, "B"), 350);
  EXPECT_EQ(label_token(tok, "C"), 315);
  EXPECT_EQ(label_token(tok, "D"), 360);
}

}  // namespace
