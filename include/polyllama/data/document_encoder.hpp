#pragma once
// How documents become token ids (`polyllama data`, `sft`): polyllama's FastBpe where it can read the model
// (LLaMA-style BPE; the same ids as SentencePiece, tests/tokenizer/test_fast_bpe.cpp, several times faster),
// checked against SentencePiece on the first documents of each process and replaced by it for the rest on any
// disagreement; SentencePiece itself where FastBpe cannot encode the model or when asked for.
//
// Long documents are encoded in chunks cut where the ids cannot change (chunk_cutter.hpp): the first chunk with
// the model as it is, every later one with a copy whose add_dummy_prefix is off, so the ids are the whole
// document's.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "polyllama/data/chunk_cutter.hpp"
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
  // One chunk of a document: `first` for its first chunk (the only one given SentencePiece's dummy-prefix
  // "\u2581"); a later chunk must start at a cut that cutter() chose. Thread-safe.
  void encode_chunk(const std::string& text, bool first, std::vector<int32_t>& ids);
  // Where documents may be cut; null when the model's settings make every cut unsafe (documents are then
  // encoded whole, and chunking_note() says why).
  const ChunkCutter* cutter() const { return cutter_.get(); }
  const std::string& chunking_note() const { return cut_why_; }
  // This encoder as the `data` pipeline's chunked encoding (chunk size: encode_chunk_bytes()).
  ChunkedEncode chunked();
  // "fast-bpe" while FastBpe encodes (no disagreement seen), else "sentencepiece".
  const char* name() const { return fast_ok_ ? "fast-bpe" : "sentencepiece"; }
  // What was chosen and why, for the log.
  std::string description() const;

 private:
  void encode_with(const Tokenizer& sp, const FastBpe* fast, const std::string& text, std::vector<int32_t>& ids);

  const Tokenizer& tok_;
  std::unique_ptr<FastBpe> fast_;
  std::unique_ptr<ChunkCutter> cutter_;
  std::string cut_why_;
  std::unique_ptr<Tokenizer> later_tok_;   // the model without its dummy prefix, for chunks after the first
  std::unique_ptr<FastBpe> later_fast_;
  std::string why_;
  int64_t check_;
  std::atomic<int64_t> checked_{0};
  std::atomic<bool> fast_ok_{false};
};

}  // namespace polyllama
