#pragma once
// What the training loop reads: numbered pretraining samples, and the windows of a validation split in order.
// Sample i must be a pure function of i (and the stream's seed and data), so that a resumed run, at any
// data-parallel size, sees what an uninterrupted one would have.
#include <algorithm>
#include <cstdint>

namespace polyllama {

class SampleStream {
 public:
  virtual ~SampleStream() = default;
  // inputs[t], targets[t] for t < seq_len of sample `index` of the (shuffled, possibly blended) stream.
  virtual void sample(int64_t index, int32_t* inputs, int32_t* targets) const = 0;
  // Every window once, in order (evaluation).
  virtual int64_t windows() const = 0;
  virtual void window(int64_t w, int32_t* inputs, int32_t* targets) const = 0;

  // The same with doc_start[t]: where position t's example begins in the row (LlamaModel::forward_backward).
  // Streams whose rows are one causal stream (pretraining packs documents that way) leave it all zero.
  virtual void sample_segments(int64_t index, int32_t* inputs, int32_t* targets, int32_t* doc_start) const {
    sample(index, inputs, targets);
    std::fill(doc_start, doc_start + seq_len(), 0);
  }
  virtual void window_segments(int64_t w, int32_t* inputs, int32_t* targets, int32_t* doc_start) const {
    window(w, inputs, targets);
    std::fill(doc_start, doc_start + seq_len(), 0);
  }
  virtual int64_t seq_len() const = 0;  // positions per row
};

}  // namespace polyllama
