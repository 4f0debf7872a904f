// FastBpe gives exactly SentencePiece's ids: on real corpora (LLaMA 2's tokenizer when ../shared/data has
// it), on random text built from the awkward cases (space runs, newlines, every script, emoji, malformed UTF-8,
// NUL, a literal U+2581), and with a small tokenizer trained here; unsupported models are refused with a reason;
// a model made at a freed one's address gets none of its cached ids.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "polyllama/core/random.hpp"
#include "polyllama/tokenizer/extend.hpp"
#include "polyllama/tokenizer/fast_bpe.hpp"
#include "polyllama/tokenizer/sp_model.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "test_support.hpp"

namespace polyllama {
namespace {

using test::slurp;
using test::spit;

// Compares both encoders on `text`; returns false (with a message) on the first difference.
::testing::AssertionResult same_ids(const Tokenizer& tok, const FastBpe& fast, const std::string& text) {
  std::vector<int32_t> got;
  fast.encode(text, got);
  const std::vector<int32_t> want = tok.encode(text);
  if (got == want) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  return ::testing::AssertionFailure() << "differs at id " << i << " (fast " << got.size() << " ids, SentencePiece "
                                       << want.size() << ") for text of " << text.size() << " bytes: '"
                                       << text.substr(0, 200) << "'";
}

std::string random_text(uint64_t seed, uint64_t index) {
  static const std::vector<std::string> atoms = {
      "the", " ", "  ", "    ", "\n", "\n\n", "\t", " a", "ing", "Hello", "world", ",", ".", "!", "?", "'s", "0",
      "12", "2024", "中", "国", "的", "龘", "䶮", "𠀀", "學而時習之", "，", "。", "「", "」", "こんにちは", "カタカナ",
      "한국어", "Привет", "мир", "مرحبا", "नमस्ते", "ภาษาไทย", "Ελληνικά", "é", "e\xCC\x81", "😀", "🇨🇳",
      "\xE2\x96\x81", "\xEF\xBF\xBD", std::string(1, '\0'), "\xFF", "\xC0\x80", "\x80", "\xE4\xB8", "\xED\xA0\x80",
      "\xF4\x90\x80\x80", "<s>", "</s>", "<unk>", "<0x41>", "\r\n", "\xC2\xA0", "\xE3\x80\x80"};
  std::string s;
  const uint64_t n = random_bits(seed, 1, index) % 40;
  for (uint64_t k = 0; k < n; ++k) s += atoms[random_bits(seed, 2 + index, k) % atoms.size()];
  return s;
}

TEST(FastBpe, MatchesSentencePieceOnLlama2) {
  const std::string model = test::shared_data("tokenizers/llama2-tokenizer.model");
  if (model.empty()) GTEST_SKIP() << "no ../shared/data/tokenizers/llama2-tokenizer.model";
  const Tokenizer tok = Tokenizer::from_file(model);
  std::string why;
  const auto fast = FastBpe::create(tok.model_bytes(), &why);
  ASSERT_TRUE(fast) << why;
  EXPECT_EQ(fast->vocab_size(), tok.vocab_size());
  for (const char* rel : {"corpora/zh/chinese-poetry_lunyu.txt", "corpora/zh/chinese-poetry_shijing.txt",
                          "corpora/en/tinyshakespeare_input.txt"}) {
    const std::string path = test::shared_data(rel);
    if (path.empty()) continue;
    const std::string text = slurp(path);
    EXPECT_TRUE(same_ids(tok, *fast, text)) << rel << " as one document";
    std::istringstream lines(text);
    std::string line;
    int64_t n = 0;
    while (std::getline(lines, line) && n++ < 3000) ASSERT_TRUE(same_ids(tok, *fast, line)) << rel;
  }
  // Multi-script benchmark files, when present.
  const std::string bench = test::shared_data("bench");
  if (!bench.empty())
    for (const auto& e : std::filesystem::recursive_directory_iterator(bench))
      if (e.is_regular_file() && e.file_size() < 4'000'000)
        EXPECT_TRUE(same_ids(tok, *fast, slurp(e.path().string()))) << e.path();
  for (uint64_t i = 0; i < 20000; ++i) ASSERT_TRUE(same_ids(tok, *fast, random_text(7, i))) << "random text " << i;
  EXPECT_TRUE(same_ids(tok, *fast, ""));
  EXPECT_TRUE(same_ids(tok, *fast, std::string(5000, ' ')));
  EXPECT_TRUE(same_ids(tok, *fast, std::string(3000, 'a')));
}

TEST(FastBpe, MatchesSentencePieceOnATrainedModelAndRefusesUnigram) {
  const std::string dir = test::temp_dir("fast_bpe");
  {
    std::ofstream f(dir + "/text.txt");
    for (int i = 0; i < 300; ++i)
      f << "The river runs to the sea number " << i << ", 河水流向大海 " << i * 7 << "。\n"
        << "Every morning  the baker opens the door;\tthe town smells of bread. Привет, мир!\n";
  }
  train_sentencepiece({dir + "/text.txt"}, dir + "/bpe.model", 400, {});
  const Tokenizer tok = Tokenizer::from_file(dir + "/bpe.model");
  std::string why;
  const auto fast = FastBpe::create(tok.model_bytes(), &why);
  ASSERT_TRUE(fast) << why;
  EXPECT_TRUE(same_ids(tok, *fast, slurp(dir + "/text.txt")));
  for (uint64_t i = 0; i < 5000; ++i) ASSERT_TRUE(same_ids(tok, *fast, random_text(11, i))) << "random text " << i;

  train_sentencepiece({dir + "/text.txt"}, dir + "/uni.model", 400,
                      {{"model_type", "unigram"}, {"hard_vocab_limit", "false"}});
  const Tokenizer uni = Tokenizer::from_file(dir + "/uni.model");
  EXPECT_FALSE(FastBpe::create(uni.model_bytes(), &why));
  EXPECT_NE(why.find("not a BPE model"), std::string::npos) << why;
  EXPECT_FALSE(FastBpe::create("not a model", &why));
}

// Each thread caches chunk ids per model: a model made where a freed one was (the allocator reuses addresses)
// must not be handed the freed model's ids.
TEST(FastBpe, ANewModelNeverSeesAFreedModelsCache) {
  const std::string dir = test::temp_dir("fast_bpe_reuse");
  {
    std::ofstream f(dir + "/text.txt");
    for (int i = 0; i < 200; ++i) f << "The baker opens the door " << i << " and the town smells of bread.\n";
  }
  train_sentencepiece({dir + "/text.txt"}, dir + "/a.model", 300, {});
  const Tokenizer toks[2] = {Tokenizer::from_file(dir + "/a.model"),
                             Tokenizer::from_file(test::fixture("hf_tiny/tokenizer.model"))};
  const std::string text = "The baker opens the door and the town smells of bread.";
  ASSERT_NE(toks[0].encode(text), toks[1].encode(text));  // else a stale cache would go unnoticed
  for (int round = 0; round < 20; ++round) {
    const Tokenizer& tok = toks[round % 2];
    std::string why;
    const auto fast = FastBpe::create(tok.model_bytes(), &why);
    ASSERT_TRUE(fast) << why;
    ASSERT_TRUE(same_ids(tok, *fast, text)) << "round " << round;
  }
}

// An extended tokenizer (new pieces after the base's, unused padding) encodes exactly as SentencePiece, the
// padding pieces' own names included; an unused piece that a merge could form is refused.
TEST(FastBpe, MatchesSentencePieceOnAnExtendedModelWithPadding) {
  const std::string dir = test::temp_dir("fast_bpe_ext");
  {
    std::ofstream f(dir + "/zh.txt");
    for (int i = 0; i < 200; ++i) f << "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？关关雎鸠，在河之洲。\n";
  }
  const std::string base = slurp(test::fixture("hf_tiny/tokenizer.model"));
  train_sentencepiece({dir + "/zh.txt"}, dir + "/zh.model", 320, SpModel::parse(base, "b").segmentation_flags());
  ExtendOptions opt;
  opt.pad_to_multiple = 128;
  const std::string merged = extend_vocabulary(base, "base", slurp(dir + "/zh.model"), "zh", opt).model_bytes;
  const Tokenizer tok = Tokenizer::from_bytes(merged, "merged");
  std::string why;
  const auto fast = FastBpe::create(merged, &why);
  ASSERT_TRUE(fast) << why;
  std::string names = slurp(dir + "/zh.txt");
  const SpModel m = SpModel::parse(merged, "merged");
  for (const SpPiece& p : m.pieces)
    if (p.type == PieceType::unused) names += p.piece + " " + p.piece;
  EXPECT_TRUE(same_ids(tok, *fast, names));
  for (uint64_t i = 0; i < 3000; ++i) ASSERT_TRUE(same_ids(tok, *fast, random_text(13, i))) << "random text " << i;

  SpModel bad = SpModel::parse(base, "b");
  bad.pieces.push_back({"he", 0.0f, PieceType::unused, ""});  // 'h' + 'e': a merge can form it
  EXPECT_FALSE(FastBpe::create(bad.serialize(), &why));
  EXPECT_NE(why.find("could appear in an encoding"), std::string::npos) << why;
}

}  // namespace
}  // namespace polyllama
