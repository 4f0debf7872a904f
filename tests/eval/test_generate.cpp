// The generation loop (eval/generate.cpp) on the Hugging Face fixture tests/fixtures/hf_tiny:
//  * greedy tokens equal those of a PyTorch greedy loop over the reference of Hugging Face's LLaMA
//    (tests/reference/hf_generate_ref.py: float64, no KV cache, full recomputation per step), in fp32 and fp64,
//    batched with left padding and one prompt at a time; two prompts end at max_position_embeddings;
//  * a prompt's tokens do not depend on its batch, the prefill chunk or (when sampling) on anything but the
//    seed and the prompt's stream;
//  * stop strings, EOS and max_new_tokens end a completion with the right finish_reason and text, and the
//    streamed text adds up to the final text.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/ckpt/hf_folder.hpp"
#include "polyllama/eval/generate.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

struct RefCase {
  std::string text;
  std::vector<int32_t> prompt, tokens;
};

// The committed fixture, or a freshly regenerated one (tests/reference/check_fixture_reference.sh).
std::vector<RefCase> reference_cases() {
  const char* fresh = std::getenv("POLYLLAMA_GEN_REF_FIXTURE");
  std::ifstream f(fresh && *fresh ? std::string(fresh) : test::fixture("hf_tiny/reference_generate.json"));
  EXPECT_TRUE(f.good());
  const nlohmann::json j = nlohmann::json::parse(f);
  std::vector<RefCase> out;
  for (const auto& c : j.at("cases"))
    out.push_back(
        {c.at("text"), c.at("prompt_ids").get<std::vector<int32_t>>(), c.at("tokens").get<std::vector<int32_t>>()});
  return out;
}

struct Fixture {
  CpuBackend be;
  std::unique_ptr<LlamaModel> model;
  Tokenizer tok = Tokenizer::from_file(test::fixture("hf_tiny/tokenizer.model"));
  explicit Fixture(DType dt = DType::f32) {
    const HfFolderReader hf(test::fixture("hf_tiny"));
    model = std::make_unique<LlamaModel>(ModelConfig::from_hf_json(hf.config(), hf.config_path()), be, dt);
    for (size_t i = 0; i < model->params().size(); ++i) hf.read(model->params()[i].name, model->param(i));
  }
};

std::vector<GenRequest> requests_of(const std::vector<RefCase>& cases) {
  std::vector<GenRequest> r;
  for (size_t i = 0; i < cases.size(); ++i) r.push_back({cases[i].prompt, i});
  return r;
}

std::vector<std::vector<int32_t>> tokens_of(const std::vector<GenOutput>& outs) {
  std::vector<std::vector<int32_t>> t;
  for (const GenOutput& o : outs) t.push_back(o.tokens);
  return t;
}

class HfGreedy : public ::testing::TestWithParam<DType> {};

TEST_P(HfGreedy, TokensEqualThePyTorchReferenceGreedyLoop) {
  const std::vector<RefCase> cases = reference_cases();
  ASSERT_EQ(cases.size(), 4u);
  Fixture fx(GetParam());
  // LLaMA's prompt: BOS, then SentencePiece's ids with its dummy-prefix space.
  for (const RefCase& c : cases) {
    std::vector<int32_t> ids = {fx.tok.bos_id()};
    for (int32_t id : fx.tok.encode(c.text)) ids.push_back(id);
    EXPECT_EQ(ids, c.prompt) << c.text;
  }
  GenerateConfig cfg;
  cfg.max_new_tokens = 24;
  for (int64_t batch : {4, 1, 3}) {
    cfg.batch_size = batch;
    cfg.prefill_chunk = batch == 3 ? 7 : 128;
    const std::vector<GenOutput> outs = generate(*fx.model, fx.tok, cfg, requests_of(cases));
    for (size_t i = 0; i < cases.size(); ++i) {
      EXPECT_EQ(outs[i].tokens, cases[i].tokens) << "prompt " << i << " (" << cases[i].text << "), batch " << batch;
      // The reference stops at 24 new tokens or when the sequence fills max_position_embeddings (64).
      EXPECT_EQ(outs[i].finish_reason, "length");
    }
  }
  EXPECT_EQ(cases[1].prompt.size() + cases[1].tokens.size(), 64u);  // two prompts end at the position limit
  EXPECT_EQ(cases[3].prompt.size() + cases[3].tokens.size(), 64u);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, HfGreedy, ::testing::Values(DType::f32, DType::f64),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Generate, SampledTokensDependOnlyOnSeedAndStreamNotOnBatching) {
  const std::vector<RefCase> cases = reference_cases();
  Fixture fx;
  GenerateConfig cfg;
  cfg.max_new_tokens = 20;
  cfg.sampling.temperature = 0.9;
  cfg.sampling.top_p = 0.95;
  cfg.sampling.top_k = 50;
  cfg.sampling.repetition_penalty = 1.2;
  cfg.sampling.seed = 7;
  std::vector<GenRequest> reqs = requests_of(cases);
  reqs.push_back({cases[2].prompt, 4});  // the same prompt on another stream
  cfg.batch_size = 5;
  const auto all = tokens_of(generate(*fx.model, fx.tok, cfg, reqs));
  cfg.batch_size = 2;
  cfg.prefill_chunk = 5;
  EXPECT_EQ(tokens_of(generate(*fx.model, fx.tok, cfg, reqs)), all);
  for (size_t i = 0; i < reqs.size(); ++i) {  // each alone
    cfg.batch_size = 1;
    EXPECT_EQ(tokens_of(generate(*fx.model, fx.tok, cfg, {reqs[i]}))[0], all[i]) << "prompt " << i;
  }
  EXPECT_NE(all[4], all[2]) << "another stream should draw other tokens";
  cfg.sampling.seed = 8;
  EXPECT_NE(tokens_of(generate(*fx.model, fx.tok, cfg, reqs)), all) << "another seed should draw other tokens";
}

TEST(Generate, StopStringsEndTheCompletionBeforeThem) {
  Fixture fx;
  // Sampling from this tiny English tokenizer's pieces gives text with spaces; the plain run's text is cut at a
  // stop string taken from its own middle.
  GenerateConfig cfg;
  cfg.max_new_tokens = 40;
  cfg.sampling.temperature = 1.0;
  cfg.sampling.seed = 3;
  const std::vector<int32_t> prompt = {1, 259, 263, 259, 280, 264, 260, 271, 259, 275, 263, 262};
  const GenOutput plain = generate(*fx.model, fx.tok, cfg, {{prompt, 0}})[0];
  ASSERT_EQ(plain.finish_reason, "length");
  ASSERT_GE(plain.text.size(), 8u) << plain.text;
  const std::string stop = plain.text.substr(plain.text.size() / 2, 2);
  const size_t at = plain.text.find(stop);
  cfg.stop = {"\x01never", stop};
  std::string streamed;
  const GenOutput cut =
      generate(*fx.model, fx.tok, cfg, {{prompt, 0}}, [&](size_t, const std::string& t) { streamed += t; })[0];
  EXPECT_EQ(cut.finish_reason, "stop");
  EXPECT_EQ(cut.text, plain.text.substr(0, at));
  EXPECT_EQ(streamed, cut.text);
  ASSERT_LE(cut.tokens.size(), plain.tokens.size());
  EXPECT_TRUE(std::equal(cut.tokens.begin(), cut.tokens.end(), plain.tokens.begin()));
  // max_new_tokens
  cfg.stop.clear();
  cfg.max_new_tokens = 5;
  const GenOutput five = generate(*fx.model, fx.tok, cfg, {{prompt, 0}})[0];
  EXPECT_EQ(five.finish_reason, "length");
  EXPECT_EQ(five.tokens, std::vector<int32_t>(plain.tokens.begin(), plain.tokens.begin() + 5));
}

// This model samples SentencePiece byte pieces freely, so its text is full of characters whose bytes arrive over
// several tokens (decoded as U+FFFD until complete): what is streamed must never be taken back.
TEST(Generate, StreamedTextAddsUpToTheFinalText) {
  Fixture fx;
  const std::vector<RefCase> cases = reference_cases();
  GenerateConfig cfg;
  cfg.max_new_tokens = 30;
  cfg.sampling.temperature = 1.5;
  cfg.stop = {"ab", "\xE3\x80\x82"};
  cfg.batch_size = 4;
  int replacement_seen = 0;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    cfg.sampling.seed = seed;
    std::vector<std::string> streamed(cases.size());
    const std::vector<GenOutput> outs =
        generate(*fx.model, fx.tok, cfg, requests_of(cases), [&](size_t i, const std::string& t) { streamed[i] += t; });
    for (size_t i = 0; i < cases.size(); ++i) {
      EXPECT_EQ(streamed[i], outs[i].text) << "seed " << seed << " prompt " << i;
      replacement_seen += outs[i].text.find("\xEF\xBF\xBD") != std::string::npos;
    }
  }
  EXPECT_GT(replacement_seen, 0) << "the check should meet unfinished characters";
}

// Plain prompts: the completion's text continues the prompt's (SentencePiece's dummy-prefix space of its first
// piece stays); chat answers (text_after_prompt = false) read on their own, as tokenizer.decode(answer ids).
TEST(Generate, CompletionTextContinuesThePromptOrStandsAlone) {
  Fixture fx;
  GenerateConfig cfg;
  cfg.max_new_tokens = 12;
  const std::vector<int32_t> prompt = fx.tok.encode("The river");
  std::vector<int32_t> ids = {fx.tok.bos_id()};
  ids.insert(ids.end(), prompt.begin(), prompt.end());
  const GenOutput plain = generate(*fx.model, fx.tok, cfg, {{ids, 0}})[0];
  std::vector<int32_t> known;  // the tokenizer's ids among those generated
  for (int32_t id : plain.tokens)
    if (id < fx.tok.vocab_size()) known.push_back(id);
  std::vector<int32_t> both = ids;
  both.insert(both.end(), known.begin(), known.end());
  EXPECT_EQ(fx.tok.decode(ids) + plain.text, fx.tok.decode(both));
  cfg.text_after_prompt = false;
  const GenOutput alone = generate(*fx.model, fx.tok, cfg, {{ids, 0}})[0];
  EXPECT_EQ(alone.tokens, plain.tokens);
  EXPECT_EQ(alone.text, fx.tok.decode(known));
}

TEST(Generate, EosEndsTheCompletionUnlessIgnored) {
  Fixture fx;
  const std::vector<RefCase> cases = reference_cases();
  // Make EOS (id 2) the argmax where the reference's 3rd token (positive logit) was: its head row becomes 1.5x
  // that token's row, so EOS outscores it there (and wherever that token's logit is positive and largest).
  const int32_t eos = fx.tok.eos_id(), target = cases[0].tokens[2];
  Tensor head = fx.model->param(fx.model->param_index("lm_head.weight"));
  const int64_t C = head.cols();
  float* w = head.ptr<float>();
  for (int64_t c = 0; c < C; ++c) w[eos * C + c] = 1.5f * w[target * C + c];
  GenerateConfig cfg;
  cfg.max_new_tokens = 24;
  const GenOutput out = generate(*fx.model, fx.tok, cfg, {{cases[0].prompt, 0}})[0];
  EXPECT_EQ(out.finish_reason, "eos");
  ASSERT_FALSE(out.tokens.empty());
  EXPECT_EQ(out.tokens.back(), eos);
  EXPECT_LE(out.tokens.size(), 3u);
  // The text is the tokens before EOS: what the same run cut just before EOS by max_new_tokens gives.
  if (out.tokens.size() == 1) {
    EXPECT_EQ(out.text, "");
  } else {
    GenerateConfig before = cfg;
    before.max_new_tokens = static_cast<int64_t>(out.tokens.size()) - 1;
    EXPECT_EQ(out.text, generate(*fx.model, fx.tok, before, {{cases[0].prompt, 0}})[0].text);
  }
  cfg.ignore_eos = true;
  const GenOutput on = generate(*fx.model, fx.tok, cfg, {{cases[0].prompt, 0}})[0];
  EXPECT_EQ(on.finish_reason, "length");
  EXPECT_EQ(on.tokens.size(), 24u);
}

TEST(Generate, PromptsWithoutRoomAreRefused) {
  Fixture fx;
  GenerateConfig cfg;
  const auto [code, msg] = test::error_of([&] {
    generate(*fx.model, fx.tok, cfg, {{std::vector<int32_t>(64, 5), 0}});
  });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("max_position_embeddings 64"), std::string::npos) << msg;
}

}  // namespace
