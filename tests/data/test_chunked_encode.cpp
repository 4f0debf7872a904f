// Documents encoded in chunks (chunk_cutter.hpp) give exactly SentencePiece's ids for the whole document:
// LLaMA 2's tokenizer (when ../shared/data has it), unigram and BPE models trained here (one of them without
// split_by_whitespace, so pieces hold "▁" inside), an extended model, on English, Chinese without spaces, mixed
// text, whitespace runs, newlines and invalid bytes, with chunks small enough that nearly every possible cut is
// taken. Cutting anywhere else (a control) changes the ids, so the comparison can fail. Models whose normaliser
// makes cuts unsafe are refused with the reason.
#include <gtest/gtest.h>

#include <algorithm>

#include "polyllama/core/random.hpp"
#include "polyllama/data/chunk_cutter.hpp"
#include "polyllama/data/document_encoder.hpp"
#include "polyllama/tokenizer/extend.hpp"
#include "polyllama/tokenizer/sp_model.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "test_support.hpp"

namespace polyllama {
namespace {

using test::slurp;
using test::spit;

// Feeds `text` in parts of `part` bytes through DocumentChunks, as the `data` pipeline does.
std::vector<int32_t> chunked_ids(DocumentEncoder& enc, const std::string& text, size_t chunk, size_t part,
                                 int64_t* chunks_out) {
  DocumentChunks chunks(enc.cutter(), chunk);
  chunks.start();
  std::vector<int32_t> all, ids;
  std::string c;
  bool first = false;
  int64_t n = 0;
  for (size_t at = 0; at < text.size(); at += part) {
    const bool last = at + part >= text.size();
    chunks.add(std::string_view(text).substr(at, part));
    while (chunks.next(c, first, last)) {
      EXPECT_EQ(first, n == 0);
      enc.encode_chunk(c, first, ids);
      all.insert(all.end(), ids.begin(), ids.end());
      ++n;
    }
  }
  *chunks_out = n;
  return all;
}

::testing::AssertionResult same(const std::vector<int32_t>& got, const std::vector<int32_t>& want,
                                const std::string& what) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  return ::testing::AssertionFailure() << what << ": differs at id " << i << " (" << got.size() << " vs "
                                       << want.size() << " ids)";
}

std::string random_text(uint64_t seed, size_t bytes) {
  static const std::vector<std::string> atoms = {
      "the", " ", "  ", "    ", "\n", "\n\n", "\t", " a", "ing", "Hello", "world", ",", ".", "!", "'s", "0", "12",
      "2024", "中", "国", "的", "龘", "𠀀", "學而時習之", "，", "。", "こんにちは", "한국어", "Привет", "مرحبا", "é",
      "e\xCC\x81", "😀", "\xE2\x96\x81", "\xEF\xBF\xBD", "\xFF", "\xC0\x80", "\x80", "\xE4\xB8", "\xED\xA0\x80",
      "<s>", "<0x41>", "\r\n", "\xC2\xA0", "\xE3\x80\x80", "                                "};
  std::string s;
  for (uint64_t k = 0; s.size() < bytes; ++k) s += atoms[random_bits(seed, 7, k) % atoms.size()];
  return s;
}

std::string english() {
  const std::string en = test::shared_data("corpora/en/tinyshakespeare_input.txt");
  if (!en.empty()) return slurp(en).substr(0, 40000);
  std::string s;
  for (int i = 0; i < 300; ++i)
    s += "Line " + std::to_string(i) + " of the ledger: the mill ground sacks, and the weir held the river.\n";
  return s;
}

std::string chinese() {  // no spaces at all
  const std::string zh = test::shared_data("corpora/zh/chinese-poetry_lunyu.txt");
  std::string s = zh.empty() ? "" : slurp(zh).substr(0, 30000);
  s.erase(std::remove_if(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\n'; }), s.end());
  while (s.size() < 20000) s += "學而時習之，不亦說乎。有朋自遠方來，不亦樂乎。人不知而不慍，不亦君子乎。";
  return s.substr(0, s.rfind("。") + 3);  // end on a whole character
}

std::vector<std::pair<std::string, std::string>> texts() {
  std::vector<std::pair<std::string, std::string>> t;
  t.push_back({"english", english()});
  t.push_back({"chinese", chinese()});
  t.push_back({"mixed", english().substr(0, 8000) + chinese().substr(0, 6000) + " and 中文 mixed, 12345 " +
                            english().substr(8000, 4000)});
  t.push_back({"whitespace runs", "a" + std::string(300, ' ') + "b\n\n\n\n" + std::string(77, '\t') + "c " +
                                      std::string(1000, ' ') + english().substr(0, 2000) + std::string(50, '\n')});
  t.push_back({"leading and trailing spaces", "   " + english().substr(0, 3000) + "   "});
  t.push_back({"random atoms with invalid bytes", random_text(11, 20000)});
  return t;
}

// Every text at several chunk sizes and both encoders ("auto" is the fast BPE where it applies) equals the
// whole-document SentencePiece ids, with many cuts made.
void expect_exact(const Tokenizer& tok, const std::string& name) {
  for (const char* choice : {"sentencepiece", "auto"}) {
    DocumentEncoder enc(tok, choice, name);
    ASSERT_NE(enc.cutter(), nullptr) << name << ": " << enc.chunking_note();
    for (const auto& [what, text] : texts()) {
      const std::vector<int32_t> want = tok.encode(text);
      for (size_t chunk : {size_t{1}, size_t{5}, size_t{64}, size_t{1000}}) {
        int64_t n = 0;
        const std::vector<int32_t> got = chunked_ids(enc, text, chunk, std::max<size_t>(chunk, 3), &n);
        EXPECT_TRUE(same(got, want, name + " " + choice + " " + what + " chunk " + std::to_string(chunk)));
        if (chunk == 64 && what != "whitespace runs") EXPECT_GT(n, static_cast<int64_t>(text.size() / 1000)) << what;
      }
    }
  }
}

// The control: cutting every 64 bytes at any character boundary, encoded the same way, does change the ids,
// so the comparison above would catch a wrong cut.
void expect_naive_cuts_differ(const Tokenizer& tok, const std::string& text) {
  DocumentEncoder enc(tok, "sentencepiece", "control");
  std::vector<int32_t> all, ids;
  for (size_t at = 0; at < text.size();) {
    size_t end = std::min(text.size(), at + 64);
    while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
    enc.encode_chunk(text.substr(at, end - at), at == 0, ids);
    all.insert(all.end(), ids.begin(), ids.end());
    at = end;
  }
  EXPECT_NE(all, tok.encode(text));
}

std::string trained(const std::string& dir, const std::string& name, std::map<std::string, std::string> flags,
                    int64_t vocab) {
  spit(dir + "/corpus.txt", english() + "\n" + chinese() + "\n" + random_text(3, 20000));
  std::map<std::string, std::string> kw = llama_trainer_defaults();
  for (const auto& [k, v] : flags) kw[k] = v;
  train_sentencepiece({dir + "/corpus.txt"}, dir + "/" + name + ".model", vocab, kw);
  return dir + "/" + name + ".model";
}

TEST(ChunkedEncode, Llama2) {
  const std::string model = test::shared_data("tokenizers/llama2-tokenizer.model");
  if (model.empty()) GTEST_SKIP() << "no ../shared/data/tokenizers/llama2-tokenizer.model";
  const Tokenizer tok = Tokenizer::from_file(model);
  expect_exact(tok, "llama2");
  expect_naive_cuts_differ(tok, english());
}

TEST(ChunkedEncode, TrainedUnigramBpeAndNoWhitespaceSplit) {
  const std::string dir = test::temp_dir("chunked_trained");
  // Unigram models are not cut (chunk_cutter.cpp says why): one chunk per document, SentencePiece's ids.
  const Tokenizer uni = Tokenizer::from_file(trained(dir, "uni", {{"model_type", "unigram"}}, 2000));
  {
    DocumentEncoder enc(uni, "auto", "unigram");
    EXPECT_EQ(enc.cutter(), nullptr);
    EXPECT_NE(enc.chunking_note().find("unigram, not BPE"), std::string::npos) << enc.chunking_note();
    int64_t n = 0;
    const std::string text = english().substr(0, 5000);
    EXPECT_EQ(chunked_ids(enc, text, 16, 16, &n), uni.encode(text));
    EXPECT_EQ(n, 1);
  }
  const Tokenizer bpe = Tokenizer::from_file(trained(dir, "bpe", {{"model_type", "bpe"}}, 2000));
  expect_exact(bpe, "bpe");
  expect_naive_cuts_differ(bpe, english());
  // Pieces across words ("▁of▁the"): fewer places to cut, the same ids.
  const Tokenizer joined =
      Tokenizer::from_file(trained(dir, "joined", {{"model_type", "bpe"}, {"split_by_whitespace", "false"}}, 2000));
  bool inner_space = false;
  for (const SpPiece& p : SpModel::parse(joined.model_bytes(), "joined").pieces)
    inner_space = inner_space || p.piece.find("\xE2\x96\x81", 1) != std::string::npos;
  EXPECT_TRUE(inner_space) << "expected pieces with U+2581 inside";
  expect_exact(joined, "bpe without split_by_whitespace");
}

TEST(ChunkedEncode, ExtendedModel) {
  const std::string dir = test::temp_dir("chunked_extended");
  const std::string base = slurp(trained(dir, "base", {{"model_type", "bpe"}}, 1000));
  std::string lines = chinese();  // one sentence per line: SentencePiece's trainer skips lines over 16 KiB
  for (size_t at = 0; (at = lines.find("。", at)) != std::string::npos; at += 4) lines.insert(at + 3, "\n");
  spit(dir + "/zh.txt", lines);
  train_sentencepiece({dir + "/zh.txt"}, dir + "/zh.model", 2000, SpModel::parse(base, "base").segmentation_flags());
  ExtendOptions opt;
  const ExtendResult r = extend_vocabulary(base, "base.model", slurp(dir + "/zh.model"), "zh.model", opt);
  ASSERT_GT(r.added, 0);
  expect_exact(Tokenizer::from_bytes(r.model_bytes, "extended"), "extended");
}

TEST(ChunkedEncode, RefusesModelsWhoseNormaliserForbidsCuts) {
  const std::string dir = test::temp_dir("chunked_nfkc");
  const std::string path =
      trained(dir, "nfkc", {{"normalization_rule_name", "nmt_nfkc"}, {"remove_extra_whitespaces", "true"}}, 1000);
  std::string why;
  EXPECT_EQ(ChunkCutter::create(slurp(path), &why), nullptr);
  EXPECT_NE(why.find("remove_extra_whitespaces is on"), std::string::npos) << why;
  // The whole document is then one chunk, and the ids are SentencePiece's.
  const Tokenizer tok = Tokenizer::from_file(path);
  DocumentEncoder enc(tok, "sentencepiece", path);
  EXPECT_EQ(enc.cutter(), nullptr);
  int64_t n = 0;
  const std::string text = english().substr(0, 5000);
  EXPECT_EQ(chunked_ids(enc, text, 16, 16, &n), tok.encode(text));
  EXPECT_EQ(n, 1);
}

TEST(ChunkedEncode, CutsOnlyBetweenCompleteCharacters) {
  const std::string dir = test::temp_dir("chunked_cut");
  const Tokenizer bpe = Tokenizer::from_file(trained(dir, "bpe", {{"model_type", "bpe"}}, 1000));
  std::string why;
  const auto cutter = ChunkCutter::create(bpe.model_bytes(), &why);
  ASSERT_NE(cutter, nullptr) << why;
  const std::string text = random_text(5, 5000);
  for (size_t from = 0, cut; (cut = cutter->find_cut(text, from, from)) != 0; from = cut) {
    ASSERT_GT(cut, from);
    ASSERT_LT(cut, text.size());
    ASSERT_NE(static_cast<unsigned char>(text[cut]) & 0xC0, 0x80u) << "cut inside a character at " << cut;
  }
}

}  // namespace
}  // namespace polyllama
