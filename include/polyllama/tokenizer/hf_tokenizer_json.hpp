#pragma once
// tokenizer.json, the Hugging Face fast-tokenizer file (the `tokenizers` library's serialization), built from a
// SentencePiece .model the way transformers' LlamaConverter builds it (convert_slow_tokenizer.py, transformers
// 4.57, with `legacy: true` as the tokenizer_config.json of an export says). transformers, vLLM and TGI read it
// before tokenizer.model, so an exported folder loads without sentencepiece or protobuf.
//
// What it holds:
//   model        BPE: vocab piece -> id; merges from the vocabulary as SentencePieceExtractor derives them (every
//                split of a piece into two pieces, ordered by the merged piece's score, highest first, then by
//                the longer left part, the longer right part and the piece's id); unk_token the unknown piece,
//                fuse_unk, byte_fallback. Unigram: [piece, score] pairs, unk_id, byte_fallback.
//   normalizer   Prepend "▁" (SentencePiece's dummy prefix, when the model adds one), Replace " " -> "▁".
//   pre_tokenizer null: SentencePiece encodes a whole line as one problem.
//   post_processor TemplateProcessing with BOS (and EOS) as LlamaTokenizerFast sets them.
//   decoder      Replace "▁" -> " ", ByteFallback, Fuse, Strip one leading space (with a dummy prefix).
//   added_tokens the unknown and control pieces (special) and user-defined pieces (not special), normalized false.
//
// The tokenizers library then gives SentencePiece's ids for models of LLaMA's kind: identity normalization without
// removing extra whitespace, spaces escaped as "▁" in front, byte fallback. For anything else there is no exact
// tokenizers equivalent and hf_tokenizer_json says why instead. Known differences that remain, as with Meta's own
// tokenizer.json: the tokenizers library matches special and user-defined pieces in the text ("<s>" becomes id 1,
// where SentencePiece spells it out) and gives the text after a user-defined piece a "▁" of its own; and pieces
// that share a score can be merged in another order (HfTokenizerJson::caveat says when a model has them).
#include <optional>
#include <string>

namespace polyllama {

struct HfTokenizerJsonOptions {
  bool add_bos_token = true;   // the post-processor puts BOS before every sequence (LLaMA's setting)
  bool add_eos_token = false;  // and EOS after it
};

struct HfTokenizerJson {
  std::string text;  // tokenizer.json: UTF-8, indented, ending in a newline
  // Non-empty when a BPE model has pieces that share a score (other than runs of "▁"): SentencePiece merges the
  // leftmost of equally scored pairs, while tokenizers applies merges by rank, which no merge order can make
  // depend on position, so ids can differ where such pieces compete. Says how many and gives an example.
  std::string caveat;
};

// tokenizer.json for the SentencePiece model `model_bytes`; std::nullopt when the tokenizers library cannot
// reproduce that model's ids, with the reason in *why_not.
std::optional<HfTokenizerJson> hf_tokenizer_json(const std::string& model_bytes, const HfTokenizerJsonOptions& opts,
                                                 std::string* why_not);

}  // namespace polyllama
