#pragma once
// One completion in flight, as generate() and the continuous batcher (serve) both track it: the ids seen so far
// (the repetition penalty's history), the text decoded after the prompt, where a stop string cuts it, what may be
// handed to a stream yet, and when it ends (EOS, a stop string, its token limit). Private to eval.
#include <cstdint>
#include <string>
#include <vector>

#include "polyllama/eval/generate.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"

namespace polyllama {

class Completion {
 public:
  // prompt: the request's ids; limit: new tokens allowed (>= 1); stop: the stop strings (outlive this object).
  // text_after_prompt: the text continues the prompt's last ids (a leading space stays); else it is decoded alone.
  Completion(const Tokenizer& tok, const std::vector<int32_t>& prompt, int64_t limit, bool text_after_prompt,
             const std::vector<std::string>& stop, bool ignore_eos);

  // Records the next sampled id. Returns the text that became final with it (empty when none: text that could
  // still turn into a stop string or an unfinished UTF-8 character waits). After the id that ends the completion,
  // done() is true and output() holds the whole text and finish_reason.
  std::string push(int32_t id);

  bool done() const { return done_; }  // stays true after output() was moved from
  const std::vector<int32_t>& seen() const { return seen_; }  // prompt and completion ids
  int64_t generated() const { return static_cast<int64_t>(out_.tokens.size()); }
  GenOutput& output() { return out_; }

 private:
  std::string text() const;  // the completion's text so far
  size_t stop_at(const std::string& text) const;
  size_t held_back(const std::string& text) const;

  const Tokenizer& tok_;
  const std::vector<std::string>& stop_;
  bool ignore_eos_ = false;
  std::vector<int32_t> seen_;
  std::vector<int32_t> ctx_;  // the prompt's last ids: decoding after them keeps the completion's leading space
  std::string ctx_text_;
  std::vector<int32_t> decode_ids_;  // ctx, then the completion's ids (without EOS)
  int64_t limit_ = 0;
  size_t emitted_ = 0;  // bytes of text handed out by push()
  bool done_ = false;
  GenOutput out_;
};

}  // namespace polyllama
