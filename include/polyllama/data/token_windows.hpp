#pragma once
// Pretraining samples from one in-memory token stream: documents packed back to back, separated by EOS,
// cut into non-overlapping windows of seq + 1 tokens. Sample i is a pure function of (seed, i): epoch
// i / windows is a seeded permutation of the windows, so a run resumed at any consumed-sample count sees
// exactly what an uninterrupted run would have seen. (Sharded on-disk data replaces the stream later; the
// sampling contract stays.)
#include <cstdint>
#include <string>
#include <vector>

#include "polyllama/data/sample_stream.hpp"

namespace polyllama {

class Tokenizer;

class TokenWindows final : public SampleStream {
 public:
  TokenWindows(std::vector<int32_t> tokens, int64_t seq, uint64_t seed, std::string what);
  int64_t windows() const override { return windows_; }
  int64_t tokens() const { return static_cast<int64_t>(tokens_.size()); }
  int64_t seq_len() const override { return seq_; }
  // inputs[t] = stream[s + t], targets[t] = stream[s + t + 1], t < seq.
  void sample(int64_t index, int32_t* inputs, int32_t* targets) const override;
  // Window w of epoch e, in order (for evaluation, which reads each window once).
  void window(int64_t w, int32_t* inputs, int32_t* targets) const override;

 private:
  int64_t permuted(int64_t epoch, int64_t j) const;
  std::vector<int32_t> tokens_;
  int64_t seq_, windows_;
  uint64_t seed_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> perm_;
};

struct TextCorpus {
  std::vector<int32_t> train, val;  // EOS-separated token streams
  int64_t documents = 0, train_documents = 0;
};

// Reads plain-text files; with blank_line_docs a blank line ends a document, else each file is one.
// Every val_every-th document (0: none) goes to the validation stream.
TextCorpus tokenize_text_files(const std::vector<std::string>& files, const Tokenizer& tok, bool blank_line_docs,
                               int64_t val_every);

}  // namespace polyllama
