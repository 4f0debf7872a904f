#include "polyllama/tokenizer/tokenizer.hpp"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "polyllama/core/error.hpp"

namespace polyllama {

Tokenizer::Tokenizer() : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    fail_input("tokenizer " + path + ": is a directory, expected a SentencePiece .model file");
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_input("cannot open tokenizer " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return from_bytes(ss.str(), path);
}

Tokenizer Tokenizer::from_bytes(const std::string& model_bytes, const std::string& where) {
  Tokenizer t;
  auto st = t.sp_->LoadFromSerializedProto(model_bytes);
  if (!st.ok()) fail_input(where + ": not a SentencePiece model (" + st.ToString() + ")");
  t.bytes_ = model_bytes;
  return t;
}

std::vector<int32_t> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  auto st = sp_->Encode(text, &ids);
  if (!st.ok()) fail_runtime("SentencePiece encode failed: " + st.ToString(), __FILE__, __LINE__);
  return {ids.begin(), ids.end()};
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  auto st = sp_->Decode(std::vector<int>(ids.begin(), ids.end()), &out);
  if (!st.ok()) fail_runtime("SentencePiece decode failed: " + st.ToString(), __FILE__, __LINE__);
  return out;
}

int64_t Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int32_t Tokenizer::bos_id() const { return sp_->bos_id(); }
int32_t Tokenizer::eos_id() const { return sp_->eos_id(); }
std::string Tokenizer::checksum() const { return fnv1a64_hex(bytes_.data(), bytes_.size()); }

std::string fnv1a64_hex(const void* data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::map<std::string, std::string> llama_trainer_defaults() {
  return {{"model_type", "bpe"},
          {"byte_fallback", "true"},
          {"split_digits", "true"},
          {"normalization_rule_name", "identity"},
          {"remove_extra_whitespaces", "false"},
          {"add_dummy_prefix", "true"},
          {"character_coverage", "0.9995"},
          {"allow_whitespace_only_pieces", "true"},
          {"max_sentence_length", "16384"},
          {"unk_id", "0"},
          {"bos_id", "1"},
          {"eos_id", "2"},
          {"pad_id", "-1"},
          {"num_threads", "2"},
          {"minloglevel", "1"}};
}

void train_sentencepiece(const std::vector<std::string>& inputs, const std::string& out_model, int64_t vocab_size,
                         const std::map<std::string, std::string>& overrides) {
  if (inputs.empty()) fail_input("tokenizer train: no --input files");
  std::string joined;
  for (const auto& in : inputs) {
    if (!std::filesystem::is_regular_file(in)) fail_input("tokenizer train: input file not found: " + in);
    joined += (joined.empty() ? "" : ",") + in;
  }
  const std::string suffix = ".model";
  if (out_model.size() <= suffix.size() || out_model.compare(out_model.size() - suffix.size(), suffix.size(), suffix))
    fail_input("tokenizer train: --out must end in .model, got " + out_model);
  std::unordered_map<std::string, std::string> kw;
  for (const auto& [k, v] : llama_trainer_defaults()) kw[k] = v;
  for (const auto& [k, v] : overrides) kw[k] = v;
  kw["input"] = joined;
  kw["model_prefix"] = out_model.substr(0, out_model.size() - suffix.size());
  kw["vocab_size"] = std::to_string(vocab_size);
  auto st = sentencepiece::SentencePieceTrainer::Train(kw);
  if (!st.ok()) fail_input("SentencePiece training failed: " + st.ToString());
}

std::string sentencepiece_version() {
#ifdef POLYLLAMA_SENTENCEPIECE_VERSION
  if (*POLYLLAMA_SENTENCEPIECE_VERSION) return POLYLLAMA_SENTENCEPIECE_VERSION;
#endif
  return "unknown";
}

}  // namespace polyllama
