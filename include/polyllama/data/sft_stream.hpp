#pragma once
// Packed instruction-tuning samples. Each row of seq_len positions holds whole examples back to back; an
// example of n tokens fills n - 1 positions (inputs ids[0..n-1), targets the labels of ids[1..n), prompt
// tokens ignored) and sees only itself: doc_start marks where it begins, so attention stops at its first token
// and RoPE positions restart at 0, exactly as if it were alone in a row. The rest of a row is padding (EOS
// inputs, no targets, a segment of its own).
//
// Order: epoch e visits the examples in a seeded pseudo-random permutation of (seed, e); they are packed by
// first fit into the oldest of up to open_bins partly filled rows (open_bins = 1 is next fit). Sample i is a
// pure function of (seed, i) and the examples, so a resumed run or another data-parallel size sees the same
// rows.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "polyllama/data/sample_stream.hpp"
#include "polyllama/data/sft_data.hpp"

namespace polyllama {

struct SftPackingConfig {
  int64_t seq_len = 0;
  uint64_t seed = 1234;
  int open_bins = 64;
  int32_t pad_id = 2;
  bool shuffle = true;  // false: epoch order is file order (validation)
  bool pack = true;     // false: one example per row (padding only)
  void validate() const;
};

class SftPackedStream final : public SampleStream {
 public:
  // Every example must fit a row (tokenize_conversations with max_tokens = seq_len + 1 ensures it).
  SftPackedStream(std::vector<SftExample> examples, SftPackingConfig cfg, std::string what);
  int64_t seq_len() const override { return cfg_.seq_len; }
  void sample(int64_t index, int32_t* inputs, int32_t* targets) const override;
  void sample_segments(int64_t index, int32_t* inputs, int32_t* targets, int32_t* doc_start) const override;
  // The rows of epoch 0, in order (evaluation).
  int64_t windows() const override;
  void window(int64_t w, int32_t* inputs, int32_t* targets) const override;
  void window_segments(int64_t w, int32_t* inputs, int32_t* targets, int32_t* doc_start) const override;

  int64_t examples() const { return static_cast<int64_t>(examples_.size()); }
  // Rows of epoch e and the share of their positions that examples fill (the rest is padding).
  int64_t rows(int64_t epoch) const;
  double fill(int64_t epoch) const;

 private:
  struct Plan {
    int64_t epoch = -1;
    std::vector<int64_t> row_begin;  // CSR over items: row r holds items[row_begin[r] .. row_begin[r + 1])
    std::vector<int32_t> items;      // example indices
    int64_t used = 0;                // positions filled by examples
  };
  std::shared_ptr<const Plan> plan(int64_t epoch) const;
  std::shared_ptr<const Plan> plan_locked(int64_t epoch) const;
  std::shared_ptr<const Plan> build(int64_t epoch) const;
  void fill_row(const Plan& p, int64_t row, int32_t* inputs, int32_t* targets, int32_t* doc_start) const;

  std::vector<SftExample> examples_;
  SftPackingConfig cfg_;
  std::string what_;
  mutable std::mutex mu_;
  mutable std::shared_ptr<const Plan> cached_, first_;
  mutable std::vector<int64_t> epoch_rows_;  // rows of epochs 0, 1, ... as far as they were planned
};

}  // namespace polyllama
