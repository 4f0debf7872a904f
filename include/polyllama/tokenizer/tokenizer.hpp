#pragma once
// SentencePiece tokenizers: encode/decode, the serialized .model bytes (stored inside checkpoints) and
// training with LLaMA-compatible defaults.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace polyllama {

class Tokenizer {
 public:
  static Tokenizer from_file(const std::string& path);
  // `where` names the source (a checkpoint path) in errors.
  static Tokenizer from_bytes(const std::string& model_bytes, const std::string& where);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text to ids without BOS/EOS (SentencePiece adds its dummy-prefix space as LLaMA does).
  std::vector<int32_t> encode(const std::string& text) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  int64_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  const std::string& model_bytes() const { return bytes_; }
  // FNV-1a 64 of the .model bytes, hex: names a tokenizer in metadata and mismatch errors.
  std::string checksum() const;

 private:
  Tokenizer();
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string bytes_;
};

// SentencePiece trainer options as key -> value (SentencePiece's own flag names). Defaults are LLaMA's:
// model_type=bpe, byte_fallback, split_digits, identity normalization, unk/bos/eos/pad = 0/1/2/-1.
std::map<std::string, std::string> llama_trainer_defaults();
// Trains on `inputs` (comma-joined) and writes <model_prefix>.model; `overrides` replace defaults.
void train_sentencepiece(const std::vector<std::string>& inputs, const std::string& out_model, int64_t vocab_size,
                         const std::map<std::string, std::string>& overrides);

std::string fnv1a64_hex(const void* data, size_t n);

// The SentencePiece this build compiled and linked against, as pkg-config reported it at configure time
// ("0.1.97"; the library has no version call); "unknown" when pkg-config gave none.
std::string sentencepiece_version();

}  // namespace polyllama
