#include "polyllama/data/document_encoder.hpp"

#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/tokenizer/sp_model.hpp"

namespace polyllama {

DocumentEncoder::DocumentEncoder(const Tokenizer& tok, const std::string& choice, const std::string& tokenizer_path,
                                 int64_t checked_documents)
    : tok_(tok), why_("--encoder sentencepiece"), check_(checked_documents) {
  if (choice != "auto" && choice != "fast" && choice != "sentencepiece")
    fail_input("--encoder " + choice + ": expected auto, fast or sentencepiece");
  if (choice != "sentencepiece") fast_ = FastBpe::create(tok.model_bytes(), &why_);
  if (!fast_ && choice == "fast") fail_input(tokenizer_path + ": --encoder fast cannot encode it: " + why_);
  fast_ok_ = fast_ != nullptr;
  cutter_ = ChunkCutter::create(tok.model_bytes(), &cut_why_);
  if (cutter_) {
    const std::string later = SpModel::parse(tok.model_bytes(), tokenizer_path).without_dummy_prefix().serialize();
    later_tok_ = std::make_unique<Tokenizer>(Tokenizer::from_bytes(later, tokenizer_path + " (without dummy prefix)"));
    if (fast_) {
      std::string why;
      later_fast_ = FastBpe::create(later, &why);
      if (!later_fast_)  // the same model with one normaliser flag off: FastBpe reads both or neither
        fail_runtime("the fast BPE encoder reads " + tokenizer_path + " but not its copy without dummy prefix: " + why,
                     __FILE__, __LINE__);
    }
  }
}

std::string DocumentEncoder::description() const {
  const std::string chunks = cutter_ ? "; long documents in chunks of " + std::to_string(encode_chunk_bytes()) +
                                           " bytes cut where the ids cannot change"
                                     : "; documents encoded whole (" + cut_why_ + ")";
  return (fast_ ? "polyllama BPE (SentencePiece's ids, checked on each rank's first documents)"
                : "SentencePiece (" + why_ + ")") +
         chunks;
}

void DocumentEncoder::encode_with(const Tokenizer& sp, const FastBpe* fast, const std::string& text,
                                  std::vector<int32_t>& ids) {
  if (!fast || !fast_ok_.load(std::memory_order_relaxed)) {
    ids = sp.encode(text);
    return;
  }
  fast->encode(text, ids);
  if (checked_.fetch_add(1, std::memory_order_relaxed) >= check_) return;
  std::vector<int32_t> want = sp.encode(text);
  if (want == ids) return;
  if (fast_ok_.exchange(false))
    log_warn("the fast BPE encoder disagrees with SentencePiece on a text of " + std::to_string(text.size()) +
             " bytes; using SentencePiece for the rest (please report this)");
  ids = std::move(want);
}

void DocumentEncoder::encode(const std::string& text, std::vector<int32_t>& ids) {
  encode_with(tok_, fast_.get(), text, ids);
}

void DocumentEncoder::encode_chunk(const std::string& text, bool first, std::vector<int32_t>& ids) {
  if (first) return encode_with(tok_, fast_.get(), text, ids);
  if (!later_tok_) fail_runtime("encode_chunk: a later chunk, but this model cannot be cut", __FILE__, __LINE__);
  encode_with(*later_tok_, later_fast_.get(), text, ids);
}

ChunkedEncode DocumentEncoder::chunked() {
  ChunkedEncode c;
  c.encode = [this](const std::string& text, bool first, std::vector<int32_t>& ids) { encode_chunk(text, first, ids); };
  c.cutter = cutter_.get();
  c.chunk_bytes = encode_chunk_bytes();
  return c;
}

}  // namespace polyllama
