#include "polyllama/data/fertility.hpp"

#include "polyllama/core/log.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"

namespace polyllama {

StatsReport fertility(const std::vector<std::pair<std::string, std::string>>& models,
                      const std::vector<std::string>& inputs, const TextInputOptions& in_opts) {
  StatsReport r;
  std::vector<StatsTokenizer> toks;
  for (const auto& [path, bytes] : models) {
    toks.emplace_back(bytes, path);
    r.infos.push_back({path, fnv1a64_hex(bytes.data(), bytes.size()), toks.back().vocab_size(),
                       toks.back().byte_pieces()});
  }
  std::vector<const StatsTokenizer*> ptrs;
  for (const StatsTokenizer& t : toks) ptrs.push_back(&t);
  TextStats all;
  all.name = "all inputs";
  for (const InputFile& in : describe_inputs(inputs, in_opts)) {
    TextStats s;
    s.name = in.path;
    DocumentReader reader({in}, plan_pieces({in}, in_opts, 0, 1), in_opts);
    std::string text;
    int64_t file = 0;
    while (reader.next(text, file)) add_document_stats(text, ptrs, s);
    if (reader.counts()[0].skipped > 0)
      log_warn(fmt("%s: skipped %lld invalid lines, first: %s", in.path.c_str(),
                   static_cast<long long>(reader.counts()[0].skipped), reader.skip_examples().front().c_str()));
    all.merge(s);
    r.results.push_back(std::move(s));
  }
  if (r.results.size() > 1) r.results.push_back(all);
  return r;
}

}  // namespace polyllama
