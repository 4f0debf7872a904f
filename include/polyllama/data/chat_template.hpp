#pragma once
// Prompt templates: how a conversation (system prompt, user and assistant turns) becomes text, and which parts
// of it the model is trained to produce. `sft` trains on exactly what `generate --chat` later feeds the model,
// because both render through this one template.
//
// A template file is JSON (every key optional; the defaults are the `plain` template):
//   {"system": "default system prompt",            // used when a conversation brings none
//    "system_format": "{system}\n\n",               // wraps the system prompt; dropped when it is empty
//    "user_format": "### Instruction:\n{content}\n\n### Response:\n",
//    "assistant_format": "{content}",
//    "input_format": "{instruction}\n\n{input}",    // Alpaca records with a non-empty `input`
//    "bos": true,                                   // BOS before the first turn (LLaMA's tokenizer convention)
//    "bos_each_turn": false,                        // and before every later user turn (LLaMA-2-chat)
//    "eos_after_assistant": true}                   // EOS closes every answer and is trained
// A `{system}` inside user_format puts the system block inside the first user turn (LLaMA-2-chat); otherwise
// it precedes that turn. Placeholders are {content}, {system}, and {instruction}/{input} in input_format.
#include <string>
#include <vector>

namespace polyllama {

enum class Role { system, user, assistant };
const char* role_name(Role r);

struct Message {
  Role role;
  std::string content;
};

// Turns alternate user, assistant, user, ... (checked by validate); system is optional.
struct Conversation {
  std::string system;  // empty: the template's default
  std::vector<Message> turns;
  // "" when fine, else what is wrong (the caller adds the file and line).
  std::string problem(bool need_final_answer) const;
};

// A stretch of rendered text: `train` marks text the model learns to produce (answers), the rest is prompt.
// bos/eos ask for those token ids around the text (special tokens are never spelled out in the text).
struct Segment {
  std::string text;
  bool train = false;
  bool bos = false;  // before the text
  bool eos = false;  // after the text
};

struct ChatTemplate {
  std::string name = "plain";
  std::string system;
  std::string system_format = "{system}\n\n";
  std::string user_format = "{content}\n";
  std::string assistant_format = "{content}";
  std::string input_format = "{instruction}\n\n{input}";
  bool bos = true, bos_each_turn = false, eos_after_assistant = true;

  // A built-in template by name (`ChatTemplate::builtin_names()`), or a JSON template file; anything else is
  // an error listing the built-ins.
  static ChatTemplate load(const std::string& name_or_file);
  static std::vector<std::string> builtin_names();
  // The template file's JSON (as stored in checkpoints); `where` names the source in errors.
  static ChatTemplate from_json(const std::string& json, const std::string& where);
  std::string to_json() const;

  // The segments of a conversation. Every user turn ends with the answer format's text before {content}, so
  // a conversation that ends in a user turn is exactly the prompt `generate --chat` continues.
  std::vector<Segment> render(const Conversation& c) const;
  // Alpaca/BELLE: the user turn's text for an instruction and an optional input.
  std::string user_text(const std::string& instruction, const std::string& input) const;
};

}  // namespace polyllama
