#pragma once
// Perplexity per language: how well a model predicts held-out text, the study's measure of gains in the target
// language and of forgetting in English. Per source (LABEL:PATH): token-level perplexity, and bits per character
// and per UTF-8 byte of the text, which compare models with different tokenizers (as they must after vocabulary
// extension: a model that needs fewer tokens for the same text has a higher per-token loss for the same
// information).
//
// Each document is BOS + its tokens, scored in windows of `seq` positions that advance by `stride`: every token
// after the first is predicted once, from the window in which it first appears beyond the previous window's end
// (so with stride < seq each prediction after the first window sees at least seq - stride tokens of context; with
// stride = seq the windows do not overlap). Documents go to the data-parallel groups longest first; each window is
// one forward on its own, so a document's loss does not depend on the split, and rank 0 sums in document order.
#include <cstdint>
#include <string>
#include <vector>

#include "polyllama/data/text_input.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/parallel/parallel.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"

namespace polyllama {

struct PplSource {
  std::string label;  // the language or any name ("zh", "en"); LABEL:PATH on the command line
  std::string path;   // a text or JSONL file (optionally .gz), or a `polyllama data` directory
};
// "zh:corpus.txt" -> {zh, corpus.txt}; a path alone is labelled by its file name. Fails (exit 1) on an empty part.
PplSource parse_ppl_source(const std::string& spec);

struct PplConfig {
  int64_t seq = 0;      // positions per window (at most max_position_embeddings); 0: the caller's default
  int64_t stride = 0;   // how far each window advances (1 .. seq); 0: the caller's default
  int64_t max_documents = 0;  // the first N documents of each source (0: all)
  TextInputOptions input;  // how text inputs split into documents (blank lines, JSONL's text field)
  void validate(const ModelConfig& m) const;
};

struct PplResult {
  PplSource source;
  int64_t documents = 0;
  int64_t tokens = 0;            // predicted tokens
  double nats = 0;               // their summed negative log-likelihood
  int64_t chars = 0, bytes = 0;  // of the documents' text (0 for datasets, which keep no text)
  double perplexity() const;     // exp(nats / tokens)
  double bits_per_token() const;
  double bits_per_char() const;  // -1 when there is no text
  double bits_per_byte() const;  // -1 when there is no text
};

// The model's activations must be allocated for (1, cfg.seq). Every rank calls it; world rank 0 returns the
// results (one per source), the other ranks theirs for their documents only.
std::vector<PplResult> evaluate_perplexity(LlamaModel& model, const Tokenizer& tok, const ParallelContext& par,
                                           const std::vector<PplSource>& sources, const PplConfig& cfg);

// The negative log-likelihood (nats) and predicted-token count of one token sequence (BOS first) under the
// window rule above: the model's (1, seq) forward on each window. Exposed for tests.
std::pair<double, int64_t> sequence_nll(LlamaModel& model, const std::vector<int32_t>& ids, int64_t stride);

}  // namespace polyllama
