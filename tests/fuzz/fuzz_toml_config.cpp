// libFuzzer target: `VERB --config FILE` TOML files (cli/config_file.cpp's expand_config over CLI11's TOML reader),
// then CLI11's parse of the resulting command line, with the verbs registered exactly as main.cpp registers them.
// The cli area has no public headers (nothing may include it); this target, like main.cpp, is a client of
// polyllama_cli and reads its private verbs.hpp. A bad file must end as polyllama::Error (exit 1) or as a
// CLI::ParseError (which main turns into exit 1); any other exception is a finding.
//
// Input: byte 0 picks the verb, the rest is the TOML file.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <vector>

#include "fuzz_support.hpp"
#include "verbs.hpp"

using namespace polyllama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const std::vector<std::vector<std::string>> kVerbs = {
      {"pretrain"}, {"sft"},  {"data"},  {"init"},  {"convert"}, {"generate"}, {"eval"},  {"bench"},
      {"plan"},     {"serve"}, {"doctor"}, {"resize-vocab"}, {"tokenizer", "train"}, {"tokenizer", "extend"},
      {"tokenizer", "stats"}};
  static fuzz::MemFile file("fuzz-config.toml");
  file.set(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  // A fresh App per input, as main builds one per process: CLI11 keeps parse results in it.
  CLI::App app{"polyllama"};
  app.require_subcommand(1);
  namespace cli = polyllama::cli;
  const std::vector<cli::RunFn> verbs = {
      cli::add_tokenizer(app), cli::add_data(app),         cli::add_init(app), cli::add_convert(app),
      cli::add_pretrain(app),  cli::add_sft(app),          cli::add_generate(app), cli::add_resize_vocab(app),
      cli::add_eval(app),      cli::add_bench(app),        cli::add_plan(app), cli::add_serve(app),
      cli::add_doctor(app)};
  std::vector<std::string> args = kVerbs[data[0] % kVerbs.size()];
  args.push_back("--config");
  args.push_back(file.path());
  fuzz::expect_clean([&] {
    std::vector<std::string> expanded = cli::expand_config(app, args);
    std::reverse(expanded.begin(), expanded.end());  // CLI11 consumes a vector from the back
    try {
      app.parse(expanded);
    } catch (const CLI::ParseError&) {
    }
  });
  return 0;
}
