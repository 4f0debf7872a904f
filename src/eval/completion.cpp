#include "completion.hpp"

#include <algorithm>

namespace polyllama {

namespace {
constexpr const char* kReplacement = "\xEF\xBF\xBD";  // what SentencePiece decodes an incomplete byte sequence to
constexpr size_t kContextTokens = 8;
}  // namespace

Completion::Completion(const Tokenizer& tok, const std::vector<int32_t>& prompt, int64_t limit,
                       bool text_after_prompt, const std::vector<std::string>& stop, bool ignore_eos)
    : tok_(tok), stop_(stop), ignore_eos_(ignore_eos), seen_(prompt), limit_(limit) {
  if (text_after_prompt)
    ctx_.assign(prompt.end() - static_cast<std::ptrdiff_t>(std::min(prompt.size(), kContextTokens)), prompt.end());
  ctx_.erase(std::remove_if(ctx_.begin(), ctx_.end(), [&](int32_t id) { return id >= tok.vocab_size(); }),
             ctx_.end());
  ctx_text_ = tok.decode(ctx_);
  decode_ids_ = ctx_;
}

std::string Completion::push(int32_t id) {
  out_.tokens.push_back(id);
  seen_.push_back(id);
  const bool eos = id == tok_.eos_id() && !ignore_eos_;
  if (!eos) decode_ids_.push_back(id);
  std::string t = text();
  const size_t cut = stop_at(t);
  if (cut != std::string::npos) {
    t.resize(cut);
    out_.finish_reason = "stop";
  } else if (eos) {
    out_.finish_reason = "eos";
  } else if (generated() >= limit_) {
    out_.finish_reason = "length";
  }
  done_ = !out_.finish_reason.empty();
  const size_t ready = done() ? t.size() : t.size() - held_back(t);
  std::string fresh;
  if (ready > emitted_ && t.size() >= emitted_) {
    fresh = t.substr(emitted_, ready - emitted_);
    emitted_ = ready;
  }
  if (done()) out_.text = std::move(t);
  return fresh;
}

std::string Completion::text() const {
  std::vector<int32_t> ids;
  ids.reserve(decode_ids_.size());
  for (int32_t id : decode_ids_)
    if (id < tok_.vocab_size()) ids.push_back(id);  // padded vocabularies: ids the tokenizer lacks are no text
  const std::string full = tok_.decode(ids);
  if (full.compare(0, ctx_text_.size(), ctx_text_) == 0) return full.substr(ctx_text_.size());
  std::vector<int32_t> own(ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), ctx_.size())), ids.end());
  return tok_.decode(own);
}

size_t Completion::stop_at(const std::string& text) const {
  size_t best = std::string::npos;
  for (const std::string& s : stop_) best = std::min(best, text.find(s));
  return best;
}

size_t Completion::held_back(const std::string& text) const {
  size_t hold = 0;
  for (const std::string& s : stop_)
    for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n)
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
  size_t rep = 0;  // the trailing run of replacement characters: bytes of a character still arriving
  while (rep + 3 <= text.size() && text.compare(text.size() - rep - 3, 3, kReplacement) == 0) rep += 3;
  return std::max(hold, rep);
}

}  // namespace polyllama
