// libFuzzer target: `VERB --config FILE` TOML files (cli/config_file.cpp's expand_config over CLI11's TOML reader),
// then CLI11's parse of the resulting command line, with the verbs registered exactly as main.cpp registers them.
// The cli area has no public headers (nothing may include it); this target, like main.cpp, is a client of
// polyllama_cli and reads its private verbs.hpp. A bad file must end as polyllama::Error (exit 1) or as a
// CLI::ParseError (which main turns into exit 1); any other exception is a finding.
//
// Input: byte 0 picks the verb, the rest is the TOML file.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <memory>
#include <vector>

#include "fuzz_support.hpp"
#include "verbs.hpp"

using namespace polyllama;

namespace {

struct Verb {
  std::vector<std::string> words;        // the verb chain on the command line
  polyllama::cli::RunFn (*add)(CLI::App&);  // what main.cpp calls to register it
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  namespace cli = polyllama::cli;
  static const std::vector<Verb> kVerbs = {
      {{"pretrain"}, cli::add_pretrain}, {{"sft"}, cli::add_sft},           {{"data"}, cli::add_data},
      {{"init"}, cli::add_init},         {{"convert"}, cli::add_convert},   {{"generate"}, cli::add_generate},
      {{"eval"}, cli::add_eval},         {{"bench"}, cli::add_bench},       {{"plan"}, cli::add_plan},
      {{"serve"}, cli::add_serve},       {{"doctor"}, cli::add_doctor},     {{"resize-vocab"}, cli::add_resize_vocab},
      {{"tokenizer", "train"}, cli::add_tokenizer}, {{"tokenizer", "extend"}, cli::add_tokenizer},
      {{"tokenizer", "stats"}, cli::add_tokenizer}};
  static fuzz::MemFile file("fuzz-config.toml");
  file.set(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  // One App per verb, built at its first input and cleared before each parse (CLI11's App::clear, what its own
  // parse does to an App parsed before). main builds a fresh App per process, but building a verb's options
  // (CLI11's add_option checks every name against all earlier ones) took 35-45 % of this target's time, and the
  // parse depends on the options' definitions and the parse state clear() resets, not on the values earlier
  // inputs left in the verb's variables (the verbs' validators read only the value under test). The RunFn is
  // kept though never run: it owns the options' storage (the verb's shared Opts), which CLI11 writes into during
  // the parse; dropping it frees that storage first (a use after free ASan reported).
  struct Built {
    CLI::App app{"polyllama"};
    cli::RunFn run;
  };
  static std::vector<std::unique_ptr<Built>> built(kVerbs.size());
  const size_t which = data[0] % kVerbs.size();
  const Verb& verb = kVerbs[which];
  if (!built[which]) {
    built[which] = std::make_unique<Built>();
    built[which]->app.require_subcommand(1);
    built[which]->run = verb.add(built[which]->app);
  }
  CLI::App& app = built[which]->app;
  app.clear();
  std::vector<std::string> args = verb.words;
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
