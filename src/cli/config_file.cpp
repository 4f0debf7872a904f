// `VERB --config FILE`: the TOML file's keys become that verb's options, placed before the command line's own
// so that flags given on the command line win. Done here rather than by CLI11's per-subcommand config
// support, which (in the CLI11 Debian ships) does not read a subcommand's file.
#include <algorithm>

#include "polyllama/core/error.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

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
      fail_input(file + ": sections are not supported; put '" + item.fullname() + "' at the top level");
    std::string key = item.name;
    std::replace(key.begin(), key.end(), '_', '-');
    const std::string flag = "--" + key;
    const CLI::Option* opt = cmd->get_option_no_throw(flag);
    if (!opt || key == "config" || key == "help")
      fail_input(file + ": unknown key '" + item.name + "' for `" + cmd->get_name() + "` (see its --help)");
    if (given_on_command_line(flag)) continue;
    if (opt->get_expected_min() == 0) {  // a flag: true adds it, false leaves it out
      const std::string v = item.inputs.empty() ? "true" : item.inputs.front();
      if (v == "true" || v == "1") from_file.push_back(flag);
      else if (v != "false" && v != "0") fail_input(file + ": '" + item.name + "' wants true or false, got " + v);
      continue;
    }
    from_file.push_back(flag);
    for (const std::string& v : item.inputs) from_file.push_back(v);
  }
  args.insert(args.begin() + static_cast<std::ptrdiff_t>(verb_end), from_file.begin(), from_file.end());
  return args;
}

}  // namespace polyllama::cli
