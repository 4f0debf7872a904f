#pragma once
// The generation loop: prompts (token ids) in batches of similar length, left-padded, prefilled in chunks into
// a KV cache, then one token per row per step until each row ends: EOS ("eos"), a stop string ("stop"), or
// max_new_tokens / the model's max_position_embeddings ("length").
//
// A prompt's completion depends only on the prompt, the weights and (seed, the prompt's stream): not on which
// prompts share its batch or on how a prompt file is split across ranks (each row attends to its own tokens
// only; the draw is counter-based, see eval/sampling.hpp).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "polyllama/eval/sampling.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"

namespace polyllama {

struct GenerateConfig {
  SamplingConfig sampling;
  int64_t max_new_tokens = 128;
  std::vector<std::string> stop;  // the completion ends before the first of these (not included in the text)
  bool ignore_eos = false;        // keep going after EOS (benchmarks)
  // The text of a completion as the continuation of its prompt ("The river" + " carries": the leading space
  // stays); false: decoded on its own, as Hugging Face decodes a chat answer (the dummy-prefix space goes).
  bool text_after_prompt = true;
  int64_t batch_size = 8;       // prompts per batch
  int64_t prefill_chunk = 128;  // prompt tokens per row per forward pass
  void validate() const;
};

struct GenRequest {
  std::vector<int32_t> ids;  // the prompt, BOS included when wanted
  uint64_t stream = 0;       // the prompt's own random stream (its index in the input)
};

struct GenOutput {
  std::vector<int32_t> tokens;  // every generated id, the final EOS included
  std::string text;             // the completion's text, cut before a stop string, without EOS
  std::string finish_reason;    // "eos", "stop" or "length"
  double seconds = 0;           // from the start of its batch until it finished
};

struct GenStats {
  int64_t prompt_tokens = 0, generated_tokens = 0, batches = 0;
  double prefill_seconds = 0, decode_seconds = 0, seconds = 0;
  size_t cache_bytes = 0, activation_bytes = 0;
};

// Text as it becomes final: (request index, new text). Text that could still turn into a stop string or an
// incomplete UTF-8 character is held back until it cannot.
using StreamFn = std::function<void(size_t request, const std::string& text)>;

// Runs every request; outputs are in request order. Fails (exit 1) naming the request when a prompt leaves no
// room under max_position_embeddings.
std::vector<GenOutput> generate(LlamaModel& model, const Tokenizer& tok, const GenerateConfig& cfg,
                                const std::vector<GenRequest>& requests, const StreamFn& on_text = nullptr,
                                GenStats* stats = nullptr);

}  // namespace polyllama
