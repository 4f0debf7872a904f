// `VERB --config FILE`: the TOML file's keys become that verb's options, placed before the command line's own
// so that flags given on the command line win. Done here rather than by CLI11's per-subcommand config
// support, which (in the CLI11 Debian ships) does not read a subcommand's file.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "polyllama/core/error.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// The line each top-level key is set on, after checking the file for what CLI11's reader takes without a word:
// a directory (read as an empty file), a table ([x]) or array of tables ([[x]]) (read as prefixes or
// dropped), an array over several lines (its lines read as keys), a '#' inside a string (read as a comment), a
// line that is not `key = value`. Tracks strings, so that a bracket inside one is text.
std::map<std::string, int> scan_config(const std::string& file) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec))
    fail_input("--config " + file + ": is a directory, expected a TOML file");
  if (!std::filesystem::exists(file, ec)) fail_input("--config " + file + ": no such file");
  std::ifstream f(file, std::ios::binary);
  if (!f) fail_input("--config " + file + ": cannot open it");
  std::map<std::string, int> keys;
  std::string raw;
  int depth = 0, n = 0;
  char quote = 0;  // the open string's quote character, across lines for multi-line strings
  while (std::getline(f, raw)) {
    ++n;
    const bool value_continues = depth > 0 || quote != 0;
    std::string line;
    for (size_t i = 0; i < raw.size(); ++i) {
      const char c = raw[i];
      if (quote) {
        if (c == '#')  // CLI11's reader starts a comment there, cutting the value short without a word
          fail_input(file + ":" + std::to_string(n) + ": '#' inside a quoted value is not supported (the TOML "
                     "reader takes it as a comment); rename the path or pass it on the command line");
        if (c == '\\' && quote == '"') ++i;
        else if (c == quote) quote = 0;
        continue;
      }
      if (c == '#') break;
      if (c == '"' || c == '\'') quote = c;
      else if (c == '[') ++depth;
      else if (c == ']') --depth;
      line.push_back(c);
    }
    const std::string t = trim(line);
    const std::string where = file + ":" + std::to_string(n) + ": ";
    if (depth > 0 && !value_continues)  // CLI11's reader takes each further line of such an array as a key
      fail_input(where + "an array spread over several lines is not supported; write it on one line");
    if (value_continues || t.empty()) continue;
    if (t[0] == '[')
      fail_input(where + "tables ([name]) and arrays of tables ([[name]]) are not supported; write `key = value` "
                 "lines at the top level");
    const auto eq = t.find('=');
    if (eq == std::string::npos) fail_input(where + "expected `key = value`, got '" + trim(raw) + "'");
    std::string key = trim(t.substr(0, eq));
    if (key.size() >= 2 && (key[0] == '"' || key[0] == '\'') && key.back() == key[0]) key = key.substr(1, key.size() - 2);
    keys.emplace(key, n);
  }
  return keys;
}

}  // namespace

void add_config_file(CLI::App* cmd) {
  cmd->add_option("--config", "TOML file of this verb's options: long flag names, '-' or '_' (seq_len = 256, "
                              "data = [\"a.txt\", \"b.txt\"], json = true); flags on the command line override it");
}

std::vector<std::string> expand_config(CLI::App& app, std::vector<std::string> args) {
  // The verb chain: leading words naming nested subcommands (e.g. "tokenizer train").
  CLI::App* cmd = &app;
  size_t verb_end = 0;
  while (verb_end < args.size()) {
    CLI::App* sub = nullptr;
    try {
      sub = cmd->get_subcommand(args[verb_end]);
    } catch (const CLI::OptionNotFound&) {
      break;
    }
    cmd = sub;
    ++verb_end;
  }
  std::string file;
  for (size_t i = verb_end; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      file = args[i + 1];
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i), args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      break;
    }
    if (args[i].rfind("--config=", 0) == 0) {
      file = args[i].substr(9);
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  }
  if (file.empty() || cmd == &app) return args;

  const std::map<std::string, int> key_lines = scan_config(file);
  auto at = [&](const std::string& key) {
    const auto it = key_lines.find(key);
    return file + (it == key_lines.end() ? "" : ":" + std::to_string(it->second)) + ": ";
  };
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_file(file);
  } catch (const CLI::Error& e) {
    fail_input("--config " + file + ": " + e.what());
  }
  auto given_on_command_line = [&](const std::string& flag) {
    return std::any_of(args.begin() + static_cast<std::ptrdiff_t>(verb_end), args.end(), [&](const std::string& a) {
      return a == flag || a.rfind(flag + "=", 0) == 0;
    });
  };
  std::vector<std::string> from_file;
  for (const CLI::ConfigItem& item : items) {
    if (item.name == "++" || item.name == "--") continue;  // section markers
    if (!item.parents.empty())
      fail_input(at(item.fullname()) + "sections and dotted keys are not supported; put '" + item.fullname() +
                 "' at the top level");
    std::string key = item.name;
    std::replace(key.begin(), key.end(), '_', '-');
    const std::string flag = "--" + key;
    const CLI::Option* opt = cmd->get_option_no_throw(flag);
    if (!opt || key == "config" || key == "help")
      fail_input(at(item.name) + "unknown key '" + item.name + "' for `" + cmd->get_name() + "` (see its --help)");
    if (given_on_command_line(flag)) continue;
    if (opt->get_expected_min() == 0) {  // a flag: true adds it, false leaves it out
      const std::string v = item.inputs.empty() ? "true" : item.inputs.front();
      if (v == "true" || v == "1") from_file.push_back(flag);
      else if (v != "false" && v != "0") fail_input(at(item.name) + "'" + item.name + "' wants true or false, got " + v);
      continue;
    }
    from_file.push_back(flag);
    for (const std::string& v : item.inputs) from_file.push_back(v);
  }
  args.insert(args.begin() + static_cast<std::ptrdiff_t>(verb_end), from_file.begin(), from_file.end());
  return args;
}

}  // namespace polyllama::cli
