#pragma once
// Instruction-tuning data (DESIGN.md section 5): records to conversations, conversations to token ids with a
// label mask, through the prompt template.
//
// Accepted records (JSON lines, or one JSON array of records; either may be gzip-compressed), per record:
//   Alpaca / BELLE        {"instruction": ..., "input": ... (optional), "output": ..., "system": ... (optional)}
//   ShareGPT / FastChat   {"conversations": [{"from": "system"|"human"|"user"|"gpt"|"assistant", "value": ...}]}
//   OpenAI messages       {"messages": [{"role": "system"|"user"|"assistant", "content": ...}]}
// Errors name FILE:LINE (JSON lines) or FILE: record N (arrays); with skip_invalid a bad record is counted
// and skipped instead.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "polyllama/data/chat_template.hpp"
#include "polyllama/data/shards.hpp"

namespace polyllama {

struct SftRecords {
  std::vector<Conversation> conversations;
  int64_t skipped = 0;
  std::vector<std::string> skip_examples;  // "FILE:LINE: reason" of the first few skips
};

// Appends the conversations of `path` to `out` (records that do not end in an answer are invalid: there is
// nothing to learn from them).
void read_sft_file(const std::string& path, const ChatTemplate& tpl, bool skip_invalid, SftRecords& out);
// The same for a file's bytes already in memory (`path` names it in messages; the fuzz target's entry point).
void read_sft_text(const std::string& data, const std::string& path, const ChatTemplate& tpl, bool skip_invalid,
                   SftRecords& out);

// One record of any shape above as a conversation: "" when valid, else what is wrong (the caller adds FILE:LINE).
// need_final_answer = false is `generate`'s reading: an Alpaca record's output is optional and a conversation
// may end in a user turn (the prompt to continue).
std::string conversation_from_record(const nlohmann::json& record, const ChatTemplate& tpl, bool need_final_answer,
                                     Conversation* out);

// The indices of the `keep` of `n` training examples an SFT size keeps (`sft --max-examples`), ascending: those
// whose counter-based key under `seed` is smallest. A subset is therefore a prefix of every larger one under the
// same seed (1K of a file inside its 5K), whatever the machine or standard library. keep >= n keeps all.
std::vector<size_t> sft_subset(size_t n, size_t keep, uint64_t seed);

// One tokenized conversation: ids[j] is trained (a label) when train[j] != 0.
struct SftExample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> train;
  int64_t positions() const { return static_cast<int64_t>(ids.size()) - 1; }  // inputs it fills when packed
};

enum class Truncation {
  cut,   // keep the first max_tokens tokens (the prompt first, then as much of the answer as fits)
  drop,  // skip examples longer than max_tokens
};
Truncation parse_truncation(const std::string& s);

struct SftTokenizeOptions {
  int64_t max_tokens = 0;  // seq_len + 1: an example of n tokens fills n - 1 input positions
  Truncation truncation = Truncation::cut;
  int32_t bos_id = 1, eos_id = 2;
  int threads = 1;
};

struct SftTokenStats {
  int64_t examples = 0, tokens = 0, trained_tokens = 0;
  int64_t truncated = 0, dropped = 0;  // dropped: too long under `drop`, or nothing left to train after `cut`
};

// Renders and encodes each conversation (segments are encoded one by one, each with SentencePiece's dummy
// prefix, exactly as `generate --chat` encodes a prompt). Output order is input order whatever the threads.
std::vector<SftExample> tokenize_conversations(const std::vector<Conversation>& convs, const ChatTemplate& tpl,
                                               const EncodeFn& encode, const SftTokenizeOptions& opts,
                                               SftTokenStats* stats);

// The prompt ids of a conversation that ends in a user turn (what the model continues when generating).
std::vector<int32_t> encode_prompt(const Conversation& c, const ChatTemplate& tpl, const EncodeFn& encode,
                                   int32_t bos_id, int32_t eos_id);

}  // namespace polyllama
