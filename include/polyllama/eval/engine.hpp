#pragma once
// The model side of evaluation: answers the tasks' questions (eval/task.hpp) with the KV-cached decoder over the
// model's own layers. Two kinds of request:
//   letters   the log-softmax over the whole vocabulary of the token after BOS + the prompt, read at each option
//             letter's id (the first id of the tokenizer's encoding of the letter alone, e.g. "▁A"), as C-Eval's
//             LLaMA evaluator and MMLU's code score; one forward per question.
//   generate  greedy decoding until max_new_tokens or a stop string (eval/generate.hpp).
// Questions of one subject share their few-shot examples: the common prefix of their token ids (each prompt is
// encoded whole, so SentencePiece's merges across the seam stay those of the whole prompt) is computed once and its
// KV cache copied to every row of a batch, so each question costs only its own suffix. Rows of a batch are the
// subject's questions of similar length, right-padded.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "polyllama/eval/task.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"

namespace polyllama {

struct EngineConfig {
  int64_t batch_size = 8;       // questions per forward (rows of the KV cache)
  int64_t prefill_chunk = 256;  // tokens per row per forward while appending
  int64_t max_new_tokens = 0;   // generate: overrides each question's own when > 0
  bool reuse_prefix = true;     // false: every prompt computed whole (for the test that the reuse changes nothing)
  void validate() const;
};

struct EngineStats {
  int64_t questions = 0;
  int64_t prompt_tokens = 0;     // BOS + prompt over all questions
  int64_t computed_tokens = 0;   // positions the model ran (shared prefixes once per batch group, suffixes, padding)
  int64_t generated_tokens = 0;
  double seconds = 0;
};

// Called as questions finish: (questions done so far, all of them).
using EvalProgressFn = std::function<void(int64_t done, int64_t total)>;

// The token id a label is read at: the first id of the tokenizer's encoding of the label alone. Fails (exit 1)
// when the label encodes to nothing.
int32_t label_token(const Tokenizer& tok, const std::string& label);

// The primitive under `letters`: for each request (token ids, BOS included, at most max_position_embeddings),
// the log-softmax over the whole vocabulary of the next token, read at `read` ids. Requests with the same group
// (a subject) share the common prefix of their ids (computed once, unless cfg.reuse_prefix is false).
struct NextTokenRequest {
  std::vector<int32_t> ids;
  std::vector<int32_t> read;
  std::string group;
  std::string where;  // for messages
};
std::vector<std::vector<double>> next_token_logprobs(LlamaModel& model, const EngineConfig& cfg,
                                                     const std::vector<NextTokenRequest>& requests,
                                                     const std::function<void(int64_t)>& done = {},
                                                     EngineStats* stats = nullptr);

// Responses in question order. Every tp rank of the model's group must call it with the same questions.
std::vector<Response> answer_questions(LlamaModel& model, const Tokenizer& tok, const EngineConfig& cfg,
                                       const std::vector<Question>& questions, const EvalProgressFn& progress = {},
                                       EngineStats* stats = nullptr);

}  // namespace polyllama
