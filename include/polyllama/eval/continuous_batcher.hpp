#pragma once
// Continuous batching over the KV-cached decoder (what `serve` runs): requests join a running batch as they
// arrive and leave it when done, instead of waiting for a whole batch to finish.
//
// A new request's prompt is prefilled alone (a decoder of one row), its first token sampled from those logits, and
// its cache moved into a free row of the running batch as that row's last positions (LlamaDecoder::admit); the
// batch then decodes one token per live row per step. Rows of a batch share one cache length, so a prompt longer
// than the batch's length shifts the live rows later first, and the padding that finished rows leave is given
// back by shifting earlier (LlamaDecoder::shift): the length stays the longest live row's, and a cache of one
// context per row suffices however long the server runs.
//
// Each row attends to its own positions only and samples from its own request's settings with the draw of
// (seed, stream 0, step), so a request's completion is the one `generate` gives for that prompt alone with the
// same settings (and every tp rank, fed the same submissions in the same order, takes the same decisions).
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "polyllama/eval/generate.hpp"
#include "polyllama/eval/sampling.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"

namespace polyllama {

class LlamaDecoder;
class Completion;

struct BatcherLimits {
  int64_t max_batch = 8;       // rows decoding together
  int64_t max_context = 0;     // prompt + completion positions per row; 0: the model's max_position_embeddings
  int64_t prefill_chunk = 256;  // prompt tokens per forward pass while prefilling
  void validate() const;
};

// One request: its prompt ids (BOS and template already applied) and how to complete it.
struct LiveRequest {
  std::vector<int32_t> ids;
  SamplingConfig sampling;
  int64_t max_new_tokens = 16;  // capped so that prompt + completion fit the context
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool text_after_prompt = true;  // see GenerateConfig
};

struct BatcherEvents {
  std::function<void(uint64_t key, const std::string& text)> text;  // text that became final
  std::function<void(uint64_t key, GenOutput&& out)> done;          // finish_reason eos/stop/length/cancelled
};

struct BatcherStats {
  int64_t prompt_tokens = 0, generated_tokens = 0, steps = 0, admitted = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

class ContinuousBatcher {
 public:
  ContinuousBatcher(LlamaModel& model, const Tokenizer& tok, const BatcherLimits& limits);
  ~ContinuousBatcher();

  int64_t context() const { return ctx_; }
  // Why a prompt of n tokens cannot be served ("" when it can).
  std::string refuse(int64_t n) const;
  // Queues a request under `key` (admitted in arrival order as rows free up). refuse() must accept it.
  void submit(uint64_t key, LiveRequest r);
  // Ends a queued or running request (its done event comes with finish_reason "cancelled").
  void cancel(uint64_t key, const BatcherEvents& ev);
  // Admits queued requests into free rows, then decodes one token for every live row.
  void step(const BatcherEvents& ev);
  bool idle() const { return queue_.empty() && live_ == 0; }
  int64_t live() const { return live_; }
  size_t waiting() const { return queue_.size(); }
  const BatcherStats& stats() const { return stats_; }
  size_t cache_bytes() const;

 private:
  struct Slot;
  void admit(const BatcherEvents& ev);
  void finish(int64_t row, const BatcherEvents& ev);
  void compact();

  LlamaModel& model_;
  const Tokenizer& tok_;
  BatcherLimits lim_;
  int64_t ctx_ = 0, V_ = 0;
  std::unique_ptr<LlamaDecoder> batch_, prefill_;
  std::vector<std::unique_ptr<Slot>> slots_;  // one per row; empty: free
  std::deque<std::pair<uint64_t, LiveRequest>> queue_;
  int64_t live_ = 0;
  std::vector<double> logits_;
  std::vector<int32_t> feed_;
  BatcherStats stats_;
};

}  // namespace polyllama
