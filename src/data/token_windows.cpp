#include "polyllama/data/token_windows.hpp"

#include <filesystem>
#include <numeric>

#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/data/chunk_cutter.hpp"
#include "polyllama/data/document_encoder.hpp"
#include "polyllama/data/text_input.hpp"
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
  for (const std::string& path : files) {  // the messages of `pretrain --data`, which also takes datasets
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      fail_input("--data " + path + ": a directory without metadata.json, so neither a `polyllama data` dataset "
                 "nor a text file (tokenize the files inside it with `polyllama data --input ... --out DIR`)");
    if (!std::filesystem::exists(path, ec)) fail_input("cannot open text file " + path + ": no such file (--data)");
  }
  TextInputOptions in;
  in.format = "text";
  in.blank_line_docs = blank_line_docs;
  const std::vector<InputFile> inputs = describe_inputs(files, in, "--data");
  DocumentReader reader(inputs, plan_pieces(inputs, in, 0, 1), in);
  // Long documents stream through in chunks cut where the ids cannot change (chunk_cutter.hpp): memory holds
  // the token ids, not the text.
  DocumentEncoder encoder(tok, "auto", "the tokenizer");
  const size_t chunk_bytes = encode_chunk_bytes();
  DocumentChunks chunks(encoder.cutter(), chunk_bytes);
  TextCorpus c;
  std::string part_text, chunk;
  std::vector<int32_t> ids;
  DocumentReader::Part part;
  std::vector<int32_t>* out = &c.train;
  while (reader.next_part(part_text, part, chunk_bytes)) {
    if (part.first) {
      chunks.start();
      const bool to_val = val_every > 0 && c.documents % val_every == val_every - 1;
      out = to_val ? &c.val : &c.train;
      ++c.documents;
      if (!to_val) ++c.train_documents;
    }
    chunks.add(part_text);
    bool first = false;
    while (chunks.next(chunk, first, part.last)) {
      encoder.encode_chunk(chunk, first, ids);
      out->insert(out->end(), ids.begin(), ids.end());
    }
    if (part.last) out->push_back(tok.eos_id());
  }
  if (c.documents == 0) fail_input("no text found in the --data files");
  const DocumentReader::Utf8Counts& bad = reader.invalid_utf8();
  if (bad.bytes > 0)
    log_warn(fmt("data: %lld bytes on %lld lines of the --data text are not valid UTF-8 (the first at %s); they "
                 "were encoded as SentencePiece does, each as U+FFFD",
                 static_cast<long long>(bad.bytes), static_cast<long long>(bad.lines), bad.first.c_str()));
  return c;
}

}  // namespace polyllama
