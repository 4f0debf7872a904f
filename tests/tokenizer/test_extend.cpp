// `tokenizer extend`: the .model wire format round-trips byte for byte; a merged model keeps every base piece
// (id, score, type), loads in SentencePiece and in Debian's spm_encode, leaves English tokenization untouched
// and decodes what it encodes; the options (ASCII filter, scores, cap, padding) do what they say. On LLaMA 2's
// tokenizer with pieces trained on the Chinese corpus (when ../shared/data has them) the Chinese token count
// falls by the ratio printed.
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "polyllama/tokenizer/extend.hpp"
#include "polyllama/tokenizer/sp_model.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"
#include "test_support.hpp"

namespace polyllama {
namespace {

using test::slurp;
using test::spit;

// Self-made Chinese text for a small model of new pieces (repeated so BPE finds multi-character pieces).
std::string chinese_text() {
  const char* lines[] = {"学而时习之，不亦说乎？有朋自远方来，不亦乐乎？",  "人不知而不愠，不亦君子乎？",
                         "温故而知新，可以为师矣。",                        "知之为知之，不知为不知，是知也。",
                         "三人行，必有我师焉。择其善者而从之，其不善者而改之。", "关关雎鸠，在河之洲。窈窕淑女，君子好逑。",
                         "中国的人民和中国的文化，今天我们学习中文。",       "2024年，我们在北京学习ABC和123。"};
  std::string s;
  for (int r = 0; r < 40; ++r)
    for (const char* l : lines) s += std::string(l) + "\n";
  return s;
}

std::unique_ptr<sentencepiece::SentencePieceProcessor> load(const std::string& bytes) {
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  EXPECT_TRUE(sp->LoadFromSerializedProto(bytes).ok());
  return sp;
}

// Base pieces unchanged (checked through SentencePiece's own API, not our parser).
void expect_base_kept(const std::string& base, const std::string& merged) {
  const auto bp = load(base), mp = load(merged);
  const auto &b = *bp, &m = *mp;
  ASSERT_GE(m.GetPieceSize(), b.GetPieceSize());
  for (int i = 0; i < b.GetPieceSize(); ++i) {
    ASSERT_EQ(m.IdToPiece(i), b.IdToPiece(i)) << i;
    ASSERT_EQ(m.GetScore(i), b.GetScore(i)) << i;
    ASSERT_EQ(m.IsControl(i), b.IsControl(i)) << i;
    ASSERT_EQ(m.IsUnknown(i), b.IsUnknown(i)) << i;
    ASSERT_EQ(m.IsByte(i), b.IsByte(i)) << i;
    ASSERT_EQ(m.IsUnused(i), b.IsUnused(i)) << i;
  }
}

// A small model trained on the Chinese text with the base's settings, as `extend --train-on` does.
std::string train_new(const std::string& dir, const std::string& base, int64_t vocab) {
  spit(dir + "/zh.txt", chinese_text());
  train_sentencepiece({dir + "/zh.txt"}, dir + "/zh.model", vocab, SpModel::parse(base, "base").segmentation_flags());
  return slurp(dir + "/zh.model");
}

TEST(SpModel, RoundTripsByteForByte) {
  for (const std::string& path :
       {test::fixture("hf_tiny/tokenizer.model"), test::shared_data("tokenizers/llama2-tokenizer.model")}) {
    if (path.empty()) continue;
    const std::string bytes = slurp(path);
    const SpModel m = SpModel::parse(bytes, path);
    EXPECT_EQ(m.serialize(), bytes) << path;
    SpModel n = m;
    n.set_trainer_vocab_size(m.trainer_vocab_size() + 5);
    const SpModel back = SpModel::parse(n.serialize(), path);
    EXPECT_EQ(back.trainer_vocab_size(), m.trainer_vocab_size() + 5);
    // Only trainer_spec changed; every other top-level field keeps its bytes.
    ASSERT_EQ(back.fields.size(), m.fields.size());
    for (size_t i = 0; i < m.fields.size(); ++i)
      if (m.fields[i].number != 2) EXPECT_EQ(back.fields[i].bytes, m.fields[i].bytes);
  }
  EXPECT_EQ(test::error_of([] { SpModel::parse("not a model", "x.model"); }).first, 1);
}

// Damaged bytes are refused saying what is wrong: exit 1 from parse, the reason from try_parse (which callers
// with a fallback use); a good model gives try_parse every piece with its type.
TEST(SpModel, RefusesDamagedBytesSayingWhy) {
  const std::string bytes = slurp(test::fixture("hf_tiny/tokenizer.model"));
  const auto [code, msg] = test::error_of([&] { SpModel::parse(bytes.substr(0, bytes.size() - 3), "cut.model"); });
  EXPECT_EQ(code, 1);
  EXPECT_NE(msg.find("cut.model: not a SentencePiece model ("), std::string::npos) << msg;
  const std::pair<std::string, std::string> cases[] = {
      {bytes.substr(0, bytes.size() - 3), "bytes, "},      // the last field's payload cut short
      {std::string("\x0a\xff", 2), "truncated length"},   // field 1's length varint cut short
      {std::string(11, '\xff'), "longer than 10 bytes"},  // a tag varint that never ends
      {"not a model", "unsupported wire type 6"},           // 'n' = field 13, wire type 6
      {std::string("\x00\x00", 2), "field number 0"},
      {"", "no pieces"}};
  for (const auto& [damaged, why_part] : cases) {
    std::string why;
    EXPECT_FALSE(SpModel::try_parse(damaged, &why)) << why_part;
    EXPECT_NE(why.find(why_part), std::string::npos) << why;
  }
  std::string why;
  const std::optional<SpModel> m = SpModel::try_parse(bytes, &why);
  ASSERT_TRUE(m) << why;
  EXPECT_EQ(static_cast<int64_t>(m->pieces.size()), Tokenizer::from_bytes(bytes, "tiny").vocab_size());
  EXPECT_EQ(m->pieces[0].piece, "<unk>");
  EXPECT_EQ(m->pieces[0].type, PieceType::unknown);
  EXPECT_EQ(m->pieces[1].type, PieceType::control);  // <s>
}

TEST(SpModel, SegmentationFlagsAreTheBasesOwn) {
  const auto f = SpModel::parse(slurp(test::fixture("hf_tiny/tokenizer.model")), "tiny").segmentation_flags();
  EXPECT_EQ(f.at("model_type"), "bpe");
  EXPECT_EQ(f.at("byte_fallback"), "true");
  const std::string llama = test::shared_data("tokenizers/llama2-tokenizer.model");
  if (llama.empty()) return;
  const auto l = SpModel::parse(slurp(llama), llama).segmentation_flags();
  EXPECT_EQ(l.at("model_type"), "bpe");
  EXPECT_EQ(l.at("split_digits"), "true");
  EXPECT_EQ(l.at("normalization_rule_name"), "identity");
  EXPECT_EQ(l.at("add_dummy_prefix"), "true");
  EXPECT_EQ(l.at("remove_extra_whitespaces"), "false");
  EXPECT_EQ(l.at("max_sentencepiece_length"), "16");
}

TEST(Extend, SmallModelOptions) {
  const std::string dir = test::temp_dir("extend");
  const std::string base = slurp(test::fixture("hf_tiny/tokenizer.model"));
  const std::string add = train_new(dir, base, 500);
  const SpModel other = SpModel::parse(add, "zh");

  ExtendOptions opt;
  opt.pad_to_multiple = 1;
  const ExtendResult r = extend_vocabulary(base, "base", add, "zh", opt);
  expect_base_kept(base, r.model_bytes);
  const SpModel m = SpModel::parse(r.model_bytes, "merged");
  EXPECT_EQ(static_cast<int64_t>(m.pieces.size()), r.base_pieces + r.added);
  EXPECT_EQ(m.trainer_vocab_size(), static_cast<int64_t>(m.pieces.size()));
  EXPECT_GT(r.added, 50);
  EXPECT_GT(r.skipped_ascii, 0);  // "2024", "ABC", "123" pieces
  float lowest = 0;
  for (int64_t i = 0; i < r.base_pieces; ++i)
    if (m.pieces[static_cast<size_t>(i)].type == PieceType::normal) lowest = std::min(lowest, m.pieces[static_cast<size_t>(i)].score);
  // New pieces: in the new model's order, strictly below every base score, no ASCII letters or digits.
  std::vector<std::string> order;
  for (const SpPiece& p : other.pieces)
    if (p.type == PieceType::normal) order.push_back(p.piece);
  size_t at = 0;
  for (int64_t i = r.base_pieces; i < static_cast<int64_t>(m.pieces.size()); ++i) {
    const SpPiece& p = m.pieces[static_cast<size_t>(i)];
    EXPECT_EQ(p.type, PieceType::normal);
    EXPECT_FALSE(piece_is_ascii_like(p.piece)) << p.piece;
    EXPECT_LT(p.score, i == r.base_pieces ? lowest : m.pieces[static_cast<size_t>(i - 1)].score);
    while (at < order.size() && order[at] != p.piece) ++at;
    EXPECT_LT(at, order.size()) << "out of the new model's order: " << p.piece;
  }
  // Chinese encodes in fewer tokens, everything round-trips, ASCII text is split exactly as before.
  const Tokenizer tb = Tokenizer::from_bytes(base, "base"), tm = Tokenizer::from_bytes(r.model_bytes, "merged");
  const std::string zh = chinese_text(), en = "Hello world, 2024 is a year; 123 + 456 = 579.\n  spaces  and\ttabs";
  EXPECT_LT(tm.encode(zh).size() * 2, tb.encode(zh).size());
  EXPECT_EQ(tm.decode(tm.encode(zh)), zh);
  EXPECT_EQ(tm.encode(en), tb.encode(en));
  EXPECT_EQ(tm.decode(tm.encode(en)), en);

  // zero scores, a cap, padding with unused pieces that never appear in an encoding
  opt.scores = NewPieceScores::zero;
  opt.max_new = 40;
  opt.pad_to_multiple = 64;
  const ExtendResult z = extend_vocabulary(base, "base", add, "zh", opt);
  expect_base_kept(base, z.model_bytes);
  const SpModel zm = SpModel::parse(z.model_bytes, "zero");
  EXPECT_EQ(z.added, 40);
  EXPECT_EQ(zm.pieces.size() % 64, 0u);
  EXPECT_EQ(z.padding, static_cast<int64_t>(zm.pieces.size()) - z.base_pieces - 40);
  for (int64_t i = z.base_pieces; i < z.base_pieces + 40; ++i) {
    EXPECT_EQ(zm.pieces[static_cast<size_t>(i)].score, 0.0f);
    EXPECT_EQ(zm.pieces[static_cast<size_t>(i)].piece, m.pieces[static_cast<size_t>(i)].piece);  // the same first 40
  }
  for (size_t i = static_cast<size_t>(z.base_pieces + 40); i < zm.pieces.size(); ++i)
    EXPECT_EQ(zm.pieces[i].type, PieceType::unused);
  const Tokenizer tz = Tokenizer::from_bytes(z.model_bytes, "zero");
  std::string with_names = zh + en;
  for (size_t i = static_cast<size_t>(z.base_pieces + 40); i < zm.pieces.size(); ++i) with_names += zm.pieces[i].piece;
  for (const int32_t id : tz.encode(with_names)) EXPECT_LT(id, z.base_pieces + 40);
  EXPECT_EQ(tz.decode(tz.encode(with_names)), with_names);

  opt.keep_ascii = true;
  opt.max_new = 0;
  EXPECT_GT(extend_vocabulary(base, "base", add, "zh", opt).added, r.added);
  opt.pad_to_multiple = 0;
  EXPECT_EQ(test::error_of([&] { extend_vocabulary(base, "base", add, "zh", opt); }).first, 1);
}

TEST(Extend, SubwordRecipesSpellTheNewPieces) {
  const std::string dir = test::temp_dir("recipes");
  const std::string base = slurp(test::fixture("hf_tiny/tokenizer.model"));
  const ExtendResult r = extend_vocabulary(base, "base", train_new(dir, base, 500), "zh", ExtendOptions{});
  const auto recipes = subword_recipes(base, r.model_bytes, r.base_pieces, "merged");
  const SpModel m = SpModel::parse(r.model_bytes, "merged");
  const Tokenizer tb = Tokenizer::from_bytes(base, "base");
  ASSERT_EQ(static_cast<int64_t>(recipes.size()), static_cast<int64_t>(m.pieces.size()) - r.base_pieces);
  int64_t with_space = 0;
  for (size_t k = 0; k < recipes.size(); ++k) {
    const SpPiece& p = m.pieces[static_cast<size_t>(r.base_pieces) + k];
    if (p.type == PieceType::unused) {
      EXPECT_TRUE(recipes[k].empty());
      continue;
    }
    ASSERT_FALSE(recipes[k].empty()) << p.piece;
    for (const int32_t id : recipes[k]) EXPECT_LT(id, r.base_pieces);
    // The base pieces spell exactly the new piece (byte pieces included).
    std::string spelled;
    for (const int32_t id : recipes[k]) spelled += m.pieces[static_cast<size_t>(id)].piece;
    std::string bytes_decoded = tb.decode(recipes[k]);
    const std::string sp = "\xE2\x96\x81";
    std::string want = p.piece;
    for (size_t at; (at = want.find(sp)) != std::string::npos;) want.replace(at, sp.size(), " ");
    // Decoding drops a leading space (SentencePiece removes the dummy prefix): compare without it.
    if (!want.empty() && want[0] == ' ') {
      ++with_space;
      EXPECT_EQ(" " + bytes_decoded, want);
      // Independently: SentencePiece's ordinary encode of the text after the space gives the same pieces.
      EXPECT_EQ(tb.encode(want.substr(1)), recipes[k]) << p.piece;
    } else {
      EXPECT_EQ(bytes_decoded, want);
    }
  }
  (void)with_space;
  // A tokenizer that is not an extension of the base is refused.
  const std::string other = slurp(dir + "/zh.model");
  EXPECT_EQ(test::error_of([&] { subword_recipes(base, other, 300, "zh.model"); }).first, 1);
}

TEST(Extend, Llama2WithChinesePieces) {
  const std::string llama = test::shared_data("tokenizers/llama2-tokenizer.model");
  const std::string lunyu = test::shared_data("corpora/zh/chinese-poetry_lunyu.txt");
  const std::string shijing = test::shared_data("corpora/zh/chinese-poetry_shijing.txt");
  const std::string en = test::shared_data("corpora/en/tinyshakespeare_input.txt");
  if (llama.empty() || lunyu.empty() || shijing.empty() || en.empty()) GTEST_SKIP() << "no ../shared/data";
  const std::string dir = test::temp_dir("extend_llama");
  const std::string base = slurp(llama);
  train_sentencepiece({lunyu, shijing}, dir + "/zh.model", 8000, SpModel::parse(base, llama).segmentation_flags());
  ExtendOptions opt;
  const ExtendResult r = extend_vocabulary(base, llama, slurp(dir + "/zh.model"), "zh.model", opt);
  EXPECT_EQ(r.base_pieces, 32000);
  expect_base_kept(base, r.model_bytes);
  spit(dir + "/merged.model", r.model_bytes);
  const Tokenizer tb = Tokenizer::from_bytes(base, llama), tm = Tokenizer::from_file(dir + "/merged.model");
  EXPECT_EQ(tm.vocab_size() % 64, 0);
  const std::string zh = slurp(lunyu) + slurp(shijing), english = slurp(en);
  EXPECT_EQ(tm.encode(english), tb.encode(english));
  EXPECT_EQ(tm.decode(tm.encode(english)), english);
  EXPECT_EQ(tm.decode(tm.encode(zh)), zh);
  const double ratio = static_cast<double>(tm.encode(zh).size()) / static_cast<double>(tb.encode(zh).size());
  std::printf("LLaMA 2 + %lld Chinese pieces: Chinese corpus %zu -> %zu tokens (%.3fx)\n",
              static_cast<long long>(r.added), tb.encode(zh).size(), tm.encode(zh).size(), ratio);
  RecordProperty("zh_token_ratio", std::to_string(ratio));
  EXPECT_LT(ratio, 0.6);
  // Debian's spm_encode loads the merged file and agrees with the library.
  if (std::system("command -v spm_encode >/dev/null 2>&1") != 0) GTEST_SKIP() << "no spm_encode";
  spit(dir + "/in.txt", "学而时习之，不亦说乎？\n");
  ASSERT_EQ(std::system(("spm_encode --model " + dir + "/merged.model --output_format=id < " + dir + "/in.txt > " +
                         dir + "/ids.txt").c_str()), 0);
  std::ifstream ids(dir + "/ids.txt");
  std::vector<int32_t> got;
  for (int32_t id; ids >> id;) got.push_back(id);
  EXPECT_EQ(got, tm.encode("学而时习之，不亦说乎？"));
}

}  // namespace
}  // namespace polyllama
