// libFuzzer target: instruction-tuning records (`sft`): JSON lines or one JSON array of Alpaca/BELLE, ShareGPT and
// OpenAI-messages records (read_sft_text, what read_sft_file parses), optionally with a chat template file first
// (ChatTemplate::from_json, also what a checkpoint stores as its chat_template attribute); the conversations read
// are rendered and tokenized (a byte-per-token encoder stands in for SentencePiece) under both truncations, and
// as `generate --chat` prompts.
//
// Input: byte 0 picks the options (bits 0-1: built-in template, bit 2: skip invalid records, bit 3: the rest is
// "TEMPLATE JSON\n#####\nRECORDS" instead of records alone).
#include <vector>

#include "fuzz_support.hpp"
#include "polyllama/data/sft_data.hpp"

using namespace polyllama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const std::vector<std::string_view> parts = fuzz::split_parts(data + 1, size - 1, 2);
  fuzz::expect_clean([&] {
    ChatTemplate tpl;
    std::string records;
    if (mode & 8) {
      tpl = ChatTemplate::from_json(std::string(parts[0]), "fuzz-template.json");
      fuzz::require(ChatTemplate::from_json(tpl.to_json(), "round trip").to_json() == tpl.to_json(),
                    "a template's JSON reads back as the same template");
      records = std::string(parts[1]);
    } else {
      const std::vector<std::string> names = ChatTemplate::builtin_names();
      tpl = ChatTemplate::load(names[(mode & 3) % names.size()]);
      records = std::string(data + 1, data + size);
    }
    SftRecords out;
    read_sft_text(records, "fuzz.jsonl", tpl, (mode & 4) != 0, out);
    const EncodeFn bytes = [](const std::string& text, std::vector<int32_t>& ids) {
      for (unsigned char c : text) ids.push_back(3 + c);
    };
    for (Truncation t : {Truncation::cut, Truncation::drop}) {
      SftTokenizeOptions o;
      o.max_tokens = 64;
      o.truncation = t;
      SftTokenStats stats;
      const std::vector<SftExample> ex = tokenize_conversations(out.conversations, tpl, bytes, o, &stats);
      for (const SftExample& e : ex) {
        fuzz::require(e.ids.size() == e.train.size(), "one label flag per id");
        fuzz::require(static_cast<int64_t>(e.ids.size()) <= o.max_tokens, "examples fit max_tokens");
      }
    }
    for (Conversation c : out.conversations) {  // the prompt of each conversation without its last answer
      c.turns.pop_back();
      if (!c.turns.empty()) encode_prompt(c, tpl, bytes, 1, 2);
    }
  });
  return 0;
}
