#include "polyllama/data/document_encoder.hpp"

#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"

namespace polyllama {

DocumentEncoder::DocumentEncoder(const Tokenizer& tok, const std::string& choice, const std::string& tokenizer_path,
                                 int64_t checked_documents)
    : tok_(tok), why_("--encoder sentencepiece"), check_(checked_documents) {
  if (choice != "auto" && choice != "fast" && choice != "sentencepiece")
    fail_input("--encoder " + choice + ": expected auto, fast or sentencepiece");
  if (choice != "sentencepiece") fast_ = FastBpe::create(tok.model_bytes(), &why_);
  if (!fast_ && choice == "fast") fail_input(tokenizer_path + ": --encoder fast cannot encode it: " + why_);
  fast_ok_ = fast_ != nullptr;
}

std::string DocumentEncoder::description() const {
  return fast_ ? "polyllama BPE (SentencePiece's ids, checked on each rank's first documents)"
               : "SentencePiece (" + why_ + ")";
}

void DocumentEncoder::encode(const std::string& text, std::vector<int32_t>& ids) {
  if (!fast_ok_.load(std::memory_order_relaxed)) {
    ids = tok_.encode(text);
    return;
  }
  fast_->encode(text, ids);
  if (checked_.fetch_add(1, std::memory_order_relaxed) >= check_) return;
  std::vector<int32_t> want = tok_.encode(text);
  if (want == ids) return;
  if (fast_ok_.exchange(false))
    log_warn("the fast BPE encoder disagrees with SentencePiece on a document of " + std::to_string(text.size()) +
             " bytes; using SentencePiece for the rest (please report this)");
  ids = std::move(want);
}

}  // namespace polyllama
