#pragma once
// What `generate` (and the evaluation stage after it) reads as prompts, and how a prompt becomes a generation
// request: a plain prompt after BOS, or a conversation through the chat template the model was tuned with.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "polyllama/data/chat_template.hpp"
#include "polyllama/eval/generate.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"

namespace polyllama {

// One prompt of the input, not yet tokenized.
struct Prompt {
  std::string where;                                   // FILE:LINE, or "--prompt"
  std::string text;                                    // the prompt as given (a conversation's last user message)
  Conversation conv;                                   // with chat
  nlohmann::json passthrough = nlohmann::json::object();  // "id", a record's reference answer and input
};

struct PromptSource {
  std::string prompt;  // one prompt given on the command line, or
  std::string input;   // a JSONL file: {"prompt": ...} per line; with chat also Alpaca records and conversations
  bool chat = false;
  std::string system;  // chat: the system prompt unless a record has its own
};
// Fails (exit 1) naming FILE:LINE for a line that is not a prompt, or the file when it holds none. tpl: the chat
// template (needed with chat, to read records).
std::vector<Prompt> read_prompts(const PromptSource& src, const ChatTemplate* tpl);

// The request of a prompt: through the template with chat, else BOS (unless no_bos) and the text. Fails (exit 1)
// naming the prompt when it is empty or leaves no room under max_positions.
GenRequest prompt_request(const Prompt& p, uint64_t stream, const Tokenizer& tok, const ChatTemplate* tpl,
                          bool no_bos, int64_t max_positions);

// The share of n items of part r of P (data-parallel groups): contiguous blocks, the first parts taking the
// larger ones.
std::pair<size_t, size_t> block_share(size_t n, int r, int P);

}  // namespace polyllama
