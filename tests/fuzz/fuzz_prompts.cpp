// libFuzzer target: the prompt files of `generate --input` and the evaluation stage's response generation
// (read_prompts): {"prompt": ...} lines, and with --chat also Alpaca records and conversations; chat prompts are
// then rendered through the template (encode_prompt, a byte-per-token encoder standing in for SentencePiece).
//
// Input: byte 0 picks the options (bit 0: chat, bits 1-2: built-in template, bit 3: a default system prompt), the
// rest is the file.
#include <vector>

#include "fuzz_support.hpp"
#include "polyllama/data/sft_data.hpp"
#include "polyllama/eval/prompts.hpp"

using namespace polyllama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static fuzz::MemFile file("fuzz-prompts.jsonl");
  file.set(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  fuzz::expect_clean([&] {
    PromptSource src;
    src.input = file.path();
    src.chat = (data[0] & 1) != 0;
    if (data[0] & 8) src.system = "You are a helpful assistant.";
    const std::vector<std::string> names = ChatTemplate::builtin_names();
    const ChatTemplate tpl = ChatTemplate::load(names[((data[0] >> 1) & 3) % names.size()]);
    const std::vector<Prompt> prompts = read_prompts(src, src.chat ? &tpl : nullptr);
    fuzz::require(!prompts.empty(), "a prompt file that reads holds prompts");
    const EncodeFn bytes = [](const std::string& text, std::vector<int32_t>& ids) {
      for (unsigned char c : text) ids.push_back(3 + c);
    };
    for (const Prompt& p : prompts) {
      fuzz::require(p.passthrough.is_object(), "passthrough is an object");
      if (src.chat) encode_prompt(p.conv, tpl, bytes, 1, 2);
    }
  });
  return 0;
}
