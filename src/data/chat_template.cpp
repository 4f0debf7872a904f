#include "polyllama/data/chat_template.hpp"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "polyllama/core/error.hpp"

namespace polyllama {

namespace {

// Replaces each {key} of `vars` in `fmt`; other braces stay as written.
std::string expand(const std::string& fmt, const std::map<std::string, std::string>& vars) {
  std::string out;
  out.reserve(fmt.size() + 64);
  for (size_t i = 0; i < fmt.size();) {
    bool hit = false;
    if (fmt[i] == '{')
      for (const auto& [k, v] : vars)
        if (fmt.compare(i + 1, k.size(), k) == 0 && i + 1 + k.size() < fmt.size() && fmt[i + 1 + k.size()] == '}') {
          out += v;
          i += k.size() + 2;
          hit = true;
          break;
        }
    if (!hit) out += fmt[i++];
  }
  return out;
}

ChatTemplate builtin(const std::string& name) {
  ChatTemplate t;
  t.name = name;
  if (name == "plain") return t;
  if (name == "alpaca") {  // Stanford Alpaca's prompt (its no-input preamble for both cases)
    t.system = "Below is an instruction that describes a task. Write a response that appropriately completes the "
               "request.";
    t.user_format = "### Instruction:\n{content}\n\n### Response:\n";
    t.input_format = "{instruction}\n\n### Input:\n{input}";
    return t;
  }
  if (name == "llama2-chat" || name == "chinese-llama2") {  // Meta's [INST] format; BOS/EOS around every exchange
    t.system = name == "chinese-llama2" ? "You are a helpful assistant. 你是一个乐于助人的助手。" : "";
    t.system_format = "<<SYS>>\n{system}\n<</SYS>>\n\n";
    t.user_format = "[INST] {system}{content} [/INST]";
    t.bos_each_turn = true;
    return t;
  }
  if (name == "vicuna") {  // FastChat's vicuna_v1.1
    t.system = "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
               "helpful, detailed, and polite answers to the user's questions.";
    t.system_format = "{system} ";
    t.user_format = "USER: {content} ASSISTANT:";
    return t;
  }
  return {};
}

}  // namespace

const char* role_name(Role r) {
  switch (r) {
    case Role::system: return "system";
    case Role::user: return "user";
    case Role::assistant: return "assistant";
  }
  return "?";
}

std::string Conversation::problem(bool need_final_answer) const {
  if (turns.empty()) return "no turns";
  for (size_t i = 0; i < turns.size(); ++i) {
    const Role want = i % 2 == 0 ? Role::user : Role::assistant;
    if (turns[i].role != want)
      return "turn " + std::to_string(i + 1) + " is " + role_name(turns[i].role) + ", expected " + role_name(want) +
             " (turns alternate user, assistant, ...)";
  }
  if (need_final_answer && turns.back().role != Role::assistant) return "the last turn is not an answer";
  for (size_t i = 0; i < turns.size(); ++i)
    if (turns[i].role == Role::assistant && turns[i].content.empty())
      return "answer " + std::to_string(i / 2 + 1) + " is empty";
  return "";
}

std::vector<std::string> ChatTemplate::builtin_names() {
  return {"plain", "alpaca", "llama2-chat", "chinese-llama2", "vicuna"};
}

ChatTemplate ChatTemplate::load(const std::string& name_or_file) {
  for (const std::string& n : builtin_names())
    if (n == name_or_file) return builtin(n);
  if (!std::filesystem::is_regular_file(name_or_file)) {
    std::string names;
    for (const std::string& n : builtin_names()) names += (names.empty() ? "" : ", ") + n;
    fail_input("--template '" + name_or_file + "' is neither a built-in template (" + names + ") nor a file");
  }
  std::ifstream in(name_or_file);
  std::stringstream ss;
  ss << in.rdbuf();
  ChatTemplate t = from_json(ss.str(), name_or_file);
  if (t.name == "custom") t.name = std::filesystem::path(name_or_file).stem().string();
  return t;
}

ChatTemplate ChatTemplate::from_json(const std::string& text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number beyond double (1e400)
    fail_input(where + ": not JSON: " + e.what());
  }
  if (!j.is_object()) fail_input(where + ": a template is a JSON object");
  ChatTemplate t;
  t.name = "custom";
  const std::map<std::string, std::string*> strings = {{"system", &t.system},
                                                       {"system_format", &t.system_format},
                                                       {"user_format", &t.user_format},
                                                       {"assistant_format", &t.assistant_format},
                                                       {"input_format", &t.input_format},
                                                       {"name", &t.name}};
  const std::map<std::string, bool*> flags = {
      {"bos", &t.bos}, {"bos_each_turn", &t.bos_each_turn}, {"eos_after_assistant", &t.eos_after_assistant}};
  for (const auto& [key, value] : j.items()) {
    if (auto s = strings.find(key); s != strings.end()) {
      if (!value.is_string()) fail_input(where + ": \"" + key + "\" must be a string");
      *s->second = value.get<std::string>();
    } else if (auto f = flags.find(key); f != flags.end()) {
      if (!value.is_boolean()) fail_input(where + ": \"" + key + "\" must be true or false");
      *f->second = value.get<bool>();
    } else {
      fail_input(where + ": unknown key \"" + key +
                 "\" (known: system, system_format, user_format, assistant_format, input_format, bos, "
                 "bos_each_turn, eos_after_assistant, name)");
    }
  }
  if (t.user_format.find("{content}") == std::string::npos) fail_input(where + ": user_format has no {content}");
  if (t.assistant_format.find("{content}") == std::string::npos)
    fail_input(where + ": assistant_format has no {content}");
  return t;
}

std::string ChatTemplate::to_json() const {
  return nlohmann::json{{"name", name},
                        {"system", system},
                        {"system_format", system_format},
                        {"user_format", user_format},
                        {"assistant_format", assistant_format},
                        {"input_format", input_format},
                        {"bos", bos},
                        {"bos_each_turn", bos_each_turn},
                        {"eos_after_assistant", eos_after_assistant}}
      .dump();
}

std::string ChatTemplate::user_text(const std::string& instruction, const std::string& input) const {
  if (input.empty()) return instruction;
  return expand(input_format, {{"instruction", instruction}, {"input", input}});
}

std::vector<Segment> ChatTemplate::render(const Conversation& c) const {
  const std::string sys = c.system.empty() ? system : c.system;
  const std::string sys_block = sys.empty() ? "" : expand(system_format, {{"system", sys}});
  const bool sys_inside = user_format.find("{system}") != std::string::npos;
  // Text of the answer format before {content}: prompt, not trained (the model is given it when generating).
  const size_t cpos = assistant_format.find("{content}");
  const std::string answer_prefix = assistant_format.substr(0, cpos);
  const std::string answer_suffix = assistant_format.substr(cpos + 9);
  std::vector<Segment> out;
  for (size_t i = 0; i < c.turns.size(); ++i) {
    const Message& m = c.turns[i];
    if (m.role == Role::user) {
      const bool first = i == 0;
      std::string text = expand(user_format, {{"content", m.content}, {"system", first ? sys_block : ""}});
      if (first && !sys_inside) text = sys_block + text;
      out.push_back({text + answer_prefix, false, first ? bos : bos_each_turn, false});
    } else {
      out.push_back({m.content + answer_suffix, true, false, eos_after_assistant});
    }
  }
  return out;
}

}  // namespace polyllama
