#include "polyllama/data/token_windows.hpp"

#include <fstream>
#include <numeric>
#include <sstream>

#include "polyllama/core/error.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"

namespace polyllama {

TokenWindows::TokenWindows(std::vector<int32_t> tokens, int64_t seq, uint64_t seed, std::string what)
    : tokens_(std::move(tokens)), seq_(seq), seed_(seed) {
  windows_ = seq > 0 ? (static_cast<int64_t>(tokens_.size()) - 1) / seq : 0;
  if (windows_ < 1)
    fail_input(what + ": " + std::to_string(tokens_.size()) + " tokens is less than one window of seq_len + 1 = " +
               std::to_string(seq + 1) + " tokens; give more text or a shorter --seq-len");
}

int64_t TokenWindows::permuted(int64_t epoch, int64_t j) const {
  if (epoch != cached_epoch_) {  // Fisher-Yates driven by counter-based draws: a pure function of (seed, epoch)
    perm_.resize(static_cast<size_t>(windows_));
    std::iota(perm_.begin(), perm_.end(), int64_t{0});
    for (int64_t i = windows_ - 1; i > 0; --i) {
      const auto r = static_cast<int64_t>(random_bits(seed_, static_cast<uint64_t>(epoch), static_cast<uint64_t>(i)) %
                                          static_cast<uint64_t>(i + 1));
      std::swap(perm_[static_cast<size_t>(i)], perm_[static_cast<size_t>(r)]);
    }
    cached_epoch_ = epoch;
  }
  return perm_[static_cast<size_t>(j)];
}

void TokenWindows::window(int64_t w, int32_t* inputs, int32_t* targets) const {
  const size_t s = static_cast<size_t>(w * seq_);
  for (int64_t t = 0; t < seq_; ++t) {
    inputs[t] = tokens_[s + static_cast<size_t>(t)];
    targets[t] = tokens_[s + static_cast<size_t>(t) + 1];
  }
}

void TokenWindows::sample(int64_t index, int32_t* inputs, int32_t* targets) const {
  window(permuted(index / windows_, index % windows_), inputs, targets);
}

TextCorpus tokenize_text_files(const std::vector<std::string>& files, const Tokenizer& tok, bool blank_line_docs,
                               int64_t val_every) {
  TextCorpus c;
  auto add_doc = [&](const std::string& doc) {
    if (doc.find_first_not_of(" \t\r\n") == std::string::npos) return;
    const bool to_val = val_every > 0 && c.documents % val_every == val_every - 1;
    std::vector<int32_t>& out = to_val ? c.val : c.train;
    const std::vector<int32_t> ids = tok.encode(doc);
    out.insert(out.end(), ids.begin(), ids.end());
    out.push_back(tok.eos_id());
    ++c.documents;
    if (!to_val) ++c.train_documents;
  };
  for (const std::string& path : files) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail_input("cannot open text file " + path);
    if (!blank_line_docs) {
      std::stringstream ss;
      ss << f.rdbuf();
      add_doc(ss.str());
      continue;
    }
    std::string line, doc;
    while (std::getline(f, line)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) {
        add_doc(doc);
        doc.clear();
      } else {
        doc += line;
        doc += '\n';
      }
    }
    add_doc(doc);
  }
  if (c.documents == 0) fail_input("no text found in the --data files");
  return c;
}

}  // namespace polyllama
