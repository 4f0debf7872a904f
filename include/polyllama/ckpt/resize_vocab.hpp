#pragma once
// Growing a checkpoint's vocabulary (`polyllama resize-vocab`), one tensor and one row block at a time, so a
// checkpoint of any size resizes without the whole model in memory. Every old row is copied bit for bit; new
// rows of the embedding and the LM head start from the chosen init; new optimizer-moment rows are zero.
#include <cstdint>
#include <string>
#include <vector>

#include "polyllama/ckpt/checkpoint.hpp"

namespace polyllama {

enum class VocabInit {
  subword_mean,  // the mean of the old rows of recipes[k] (the base tokenizer's pieces of new piece k's text)
  mean,          // the mean of all old rows
  normal,        // N(0, std), a pure function of (seed, tensor, row, column)
};

struct VocabResize {
  int64_t old_rows = 0, new_rows = 0;  // rows kept (the old tokenizer's pieces), rows after
  // Rows of the vocabulary tensors in the file (the config's vocab_size; 0: old_rows). A model padded beyond
  // its tokenizer has more: those padding rows belong to new pieces now and are initialised like them.
  int64_t file_rows = 0;
  VocabInit init = VocabInit::subword_mean;       // the embedding's new rows
  VocabInit head_init = VocabInit::subword_mean;  // an untied LM head's new rows
  // subword_mean (either init): per new row (new_rows - old_rows of them), the old rows to average; an empty entry takes the
  // mean of all old rows (pieces without a text: control, byte, unused padding).
  std::vector<std::vector<int32_t>> recipes;
  double std = 0.02;
  uint64_t seed = 1234;
  // Memory for the new rows' sums per pass over the old rows (more new rows than fit take more passes).
  int64_t budget_bytes = int64_t{256} << 20;
  void validate() const;
};

// Tensors with one row per token: the embedding and the LM head, and their optimizer moments
// (exp_avg.NAME, exp_avg_sq.NAME).
bool is_vocab_tensor(const std::string& name);

struct ResizeFileStats {
  int64_t tensors = 0, grown = 0, passes = 0;
};

// Copies every tensor of `in` into a new file `out`, vocabulary tensors grown to new_rows: new rows by
// `plan.init` (moments: zero_new_rows, zeros). `meta` (model.h5) is written with the tensors; the file is read
// back through its checksums before returning.
ResizeFileStats resize_tensor_file(const std::string& in, const std::string& out, const VocabResize& plan,
                                   bool zero_new_rows, const CheckpointMeta* meta);

}  // namespace polyllama
