#include "polyllama/eval/prompts.hpp"

#include <fstream>

#include "polyllama/core/error.hpp"
#include "polyllama/data/sft_data.hpp"

namespace polyllama {

using json = nlohmann::json;

std::vector<Prompt> read_prompts(const PromptSource& o, const ChatTemplate* tpl) {
  std::vector<Prompt> out;
  auto as_chat = [&](Prompt& p) {
    p.conv.system = o.system;
    p.conv.turns = {{Role::user, p.text}};
  };
  if (!o.prompt.empty()) {
    Prompt p{"--prompt", o.prompt, {}, json::object()};
    if (o.chat) as_chat(p);
    out.push_back(std::move(p));
    return out;
  }
  std::ifstream in(o.input);
  if (!in) fail_input(o.input + ": cannot open the prompt file (--input)");
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = o.input + ":" + std::to_string(line_no);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a number beyond double (1e400)
      fail_input(where + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) fail_input(where + ": a prompt line is a JSON object, e.g. {\"prompt\": \"...\"}");
    Prompt p{where, "", {}, json::object()};
    if (j.contains("id")) p.passthrough["id"] = j["id"];
    if (j.contains("prompt")) {
      if (!j["prompt"].is_string()) fail_input(where + ": \"prompt\" is not a string");
      p.text = j["prompt"].get<std::string>();
      if (o.chat) as_chat(p);
      if (o.chat && j.contains("system") && j["system"].is_string()) p.conv.system = j["system"].get<std::string>();
    } else if (o.chat) {
      const std::string why = conversation_from_record(j, *tpl, false, &p.conv);
      if (!why.empty()) fail_input(where + ": " + why);
      if (p.conv.turns.back().role == Role::assistant) {  // a training record: its answer is the reference
        p.passthrough["reference"] = p.conv.turns.back().content;
        p.conv.turns.pop_back();
      }
      if (o.system.size() && p.conv.system.empty()) p.conv.system = o.system;
      p.text = p.conv.turns.back().content;
      if (j.contains("instruction")) {  // the record's own fields rather than the template's rendering of them
        p.text = j["instruction"].get<std::string>();
        if (j.contains("input") && j["input"].is_string() && !j["input"].get<std::string>().empty())
          p.passthrough["input"] = j["input"];
      }
    } else {
      fail_input(where +
                 ": no \"prompt\" field (with --chat, Alpaca records and {\"messages\": [...]} "
                 "conversations are read too)");
    }
    out.push_back(std::move(p));
  }
  if (out.empty()) fail_input(o.input + ": no prompts");
  return out;
}

std::pair<size_t, size_t> block_share(size_t n, int r, int P) {
  auto at = [&](int k) { return (n * static_cast<size_t>(k) + static_cast<size_t>(P) - 1) / static_cast<size_t>(P); };
  return {at(r), at(r + 1)};
}

GenRequest prompt_request(const Prompt& p, uint64_t stream, const Tokenizer& tok, const ChatTemplate* tpl,
                          bool no_bos, int64_t max_positions) {
  const EncodeFn encode = [&](const std::string& text, std::vector<int32_t>& ids) {
    const std::vector<int32_t> e = tok.encode(text);
    ids.insert(ids.end(), e.begin(), e.end());
  };
  GenRequest r;
  r.stream = stream;
  if (tpl) {
    r.ids = encode_prompt(p.conv, *tpl, encode, tok.bos_id(), tok.eos_id());
  } else {
    if (!no_bos) r.ids.push_back(tok.bos_id());  // LLaMA's convention; SentencePiece adds the dummy prefix
    encode(p.text, r.ids);
  }
  if (r.ids.empty()) fail_input(p.where + ": the prompt is empty (and --no-bos leaves no token)");
  if (static_cast<int64_t>(r.ids.size()) >= max_positions)
    fail_input(p.where + ": the prompt has " + std::to_string(r.ids.size()) +
               " tokens; the model's max_position_embeddings is " + std::to_string(max_positions) +
               ", which leaves no room to generate (shorten the prompt)");
  return r;
}

}  // namespace polyllama
