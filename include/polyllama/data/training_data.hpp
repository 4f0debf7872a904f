#pragma once
// What a training verb trains and validates on, built from its inputs: `pretrain`'s token datasets or text files,
// `sft`'s instruction files. The verbs only parse their flags into these configs.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "polyllama/data/chat_template.hpp"
#include "polyllama/data/sample_stream.hpp"
#include "polyllama/data/sft_data.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"

namespace polyllama {

struct TrainingData {
  std::unique_ptr<SampleStream> train;
  std::unique_ptr<SampleStream> val;  // null: no validation split (none asked for, or too short for one window)
};

struct PretrainDataConfig {
  // `polyllama data` directories, each optionally weighted as WEIGHT:DIR (blended by the sampler), or plain-text
  // files tokenized in memory; not both.
  std::vector<std::string> specs;
  int64_t seq_len = 256;
  uint64_t seed = 1234;
  int64_t val_every = 20;        // every Nth document is held out for validation (0: none)
  bool blank_line_docs = false;  // text files: a blank line ends a document (else one per file)
};
// Fails (exit 1) naming the input on a mix of kinds, a dataset tokenized with another tokenizer, or ids beyond
// the model's vocabulary. Logs what it read.
TrainingData load_pretrain_data(const PretrainDataConfig& cfg, const Tokenizer& tok, int64_t vocab_size);

struct SftDataConfig {
  std::vector<std::string> files;  // .json arrays or .jsonl, optionally .gz
  Truncation truncation = Truncation::cut;
  bool skip_invalid = false;  // count and skip malformed records instead of stopping
  int64_t seq_len = 256;
  uint64_t seed = 1234;
  int64_t val_every = 20;  // every Nth example is held out for validation (0: none)
  int64_t max_examples = 0;  // train on this many of the training examples, sft_subset under seed (0: all)
  int open_bins = 64;      // packing: rows kept open for first fit (1: next fit)
  bool pack = true;        // false: one example per row, padded
  int threads = 2;         // tokenization
};
// Reads, renders through the template, tokenizes (DocumentEncoder's "auto": FastBpe checked against
// SentencePiece) and packs the examples. Logs what it read, truncated and dropped.
TrainingData load_sft_data(const SftDataConfig& cfg, const ChatTemplate& tpl, const Tokenizer& tok);

}  // namespace polyllama
