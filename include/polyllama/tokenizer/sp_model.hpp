#pragma once
// A SentencePiece .model file (ModelProto) read and written through the protobuf wire format by hand: Debian's
// libsentencepiece bundles its own protobuf, so polyllama never links libprotobuf. Only what vocabulary
// extension edits is decoded (the pieces, trainer_spec.vocab_size, the trainer and normalizer settings);
// every other field keeps its bytes as read, so parse() then serialize() gives back the same file.
//
// Field numbers (sentencepiece_model.proto): ModelProto { pieces = 1 (SentencePiece { piece = 1, score = 2,
// type = 3 }), trainer_spec = 2, normalizer_spec = 3, self_test_data = 4, denormalizer_spec = 5 }.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace polyllama {

enum class PieceType : int { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

struct SpPiece {
  std::string piece;
  float score = 0;
  PieceType type = PieceType::normal;
  std::string raw;  // the SentencePiece message as read (written back unchanged); empty for a new piece
};

struct SpModel {
  std::vector<SpPiece> pieces;
  // The other top-level fields in file order, each as its full bytes (tag, length, payload).
  struct Field {
    uint32_t number;
    std::string bytes;
  };
  std::vector<Field> fields;

  // `where` names the file in errors (exit 1).
  static SpModel parse(const std::string& model_bytes, const std::string& where);
  // The same for callers with a fallback (FastBpe, `convert` naming special tokens): std::nullopt when the
  // bytes are not a readable model, with the reason in *why (unless null).
  static std::optional<SpModel> try_parse(const std::string& model_bytes, std::string* why);
  // Pieces first, then the other fields in their order, as SentencePiece itself writes a model.
  std::string serialize() const;

  // The payload of top-level message field `number` (2 trainer_spec, 3 normalizer_spec), empty when absent.
  std::string_view message(uint32_t number) const;
  // trainer_spec.vocab_size (0 when absent); the setter rewrites that one field in place.
  int64_t trainer_vocab_size() const;
  void set_trainer_vocab_size(int64_t n);
  // The SentencePiece trainer flags that decide how text is segmented, as the base was trained (model_type,
  // character_coverage, byte_fallback, split_*, whitespace and normalizer settings, special ids), with the
  // proto's defaults for fields the file leaves out: train a new model "with the base's own settings".
  std::map<std::string, std::string> segmentation_flags() const;
  // The NormalizerSpec facts segmentation_flags does not carry (they are not trainer flags): whether a
  // precompiled charsmap rewrites text (NFKC and the like; absent or empty for an identity normaliser) and
  // whether spaces are escaped as U+2581 (the proto's default, true, when the field is absent).
  struct NormalizerInfo {
    bool has_charsmap = false;
    bool escape_whitespaces = true;
  };
  NormalizerInfo normalizer_info() const;
  // Normalizer copy with add_dummy_prefix and remove_extra_whitespaces off: encodes a piece's text into the
  // pieces that span exactly it (no leading "▁" added, no spaces dropped).
  SpModel without_dummy_prefix() const;
};

// Whether SentencePiece's BPE could ever form `piece` by a merge: some split of it into two halves that are
// each a single character or a piece (is_piece). When no split has both, the piece never appears in an
// encoding (how `tokenizer extend` names its unused padding pieces, and why the fast encoder may ignore them).
bool bpe_can_form(std::string_view piece, const std::function<bool(std::string_view)>& is_piece);

}  // namespace polyllama
