#pragma once
// How documents become token ids (`polyllama data`, `sft`): polyllama's FastBpe where it can read the model
// (LLaMA-style BPE; the same ids as SentencePiece, tests/tokenizer/test_fast_bpe.cpp, several times faster),
// checked against SentencePiece on the first documents of each process and replaced by it for the rest on any
// disagreement; SentencePiece itself where FastBpe cannot encode the model or when asked for.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "polyllama/data/shards.hpp"
#include "polyllama/tokenizer/fast_bpe.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"

namespace polyllama {

class DocumentEncoder {
 public:
  // choice: "auto" (FastBpe when it can, else SentencePiece), "fast" (FastBpe or fail, exit 1, naming
  // `tokenizer_path` and why), "sentencepiece". The tokenizer must outlive the encoder.
  DocumentEncoder(const Tokenizer& tok, const std::string& choice, const std::string& tokenizer_path,
                  int64_t checked_documents = 256);
  // Thread-safe.
  void encode(const std::string& text, std::vector<int32_t>& ids);
  EncodeFn fn() {
    return [this](const std::string& text, std::vector<int32_t>& ids) { encode(text, ids); };
  }
  // "fast-bpe" while FastBpe encodes (no disagreement seen), else "sentencepiece".
  const char* name() const { return fast_ok_ ? "fast-bpe" : "sentencepiece"; }
  // What was chosen and why, for the log.
  std::string description() const;

 private:
  const Tokenizer& tok_;
  std::unique_ptr<FastBpe> fast_;
  std::string why_;
  int64_t check_;
  std::atomic<int64_t> checked_{0};
  std::atomic<bool> fast_ok_{false};
};

}  // namespace polyllama
