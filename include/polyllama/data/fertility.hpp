#pragma once
// Tokenizer fertility over text files (`tokenizer stats`, and `tokenizer extend`'s before/after report): the
// documents of each input (text or JSONL, as `polyllama data` reads them) through every tokenizer side by side,
// counted per script (tokenizer/stats.hpp).
#include <string>
#include <utility>
#include <vector>

#include "polyllama/data/text_input.hpp"
#include "polyllama/tokenizer/stats.hpp"

namespace polyllama {

struct StatsReport {
  std::vector<TokenizerInfo> infos;
  std::vector<TextStats> results;  // per input, then all inputs together when there are several
};

// models: (path, .model bytes) of each tokenizer; inputs: files read with in_opts. Skipped invalid lines are
// logged with the first of them.
StatsReport fertility(const std::vector<std::pair<std::string, std::string>>& models,
                      const std::vector<std::string>& inputs, const TextInputOptions& in_opts);

}  // namespace polyllama
