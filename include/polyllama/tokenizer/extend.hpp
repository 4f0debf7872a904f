#pragma once
// Vocabulary extension (`polyllama tokenizer extend`): the pieces of a target-language SentencePiece model that
// a base model (LLaMA's) lacks are appended after the base's own; every base piece keeps its id, score and type,
// so a checkpoint trained with the base still means the same thing for every old id.
//
// And the other half (`resize-vocab`): what each new id's embedding row starts from.
#include <cstdint>
#include <string>
#include <vector>

namespace polyllama {

enum class NewPieceScores {
  below,  // under the base's lowest score, in the new model's order: base merges always apply first, so text
          // without new pieces tokenizes exactly as before, and the new pieces keep their learned order
  zero,   // 0 for every new piece, as Chinese-LLaMA's merge script does
};

struct ExtendOptions {
  bool keep_ascii = false;  // keep new pieces with ASCII letters or digits, or made of ASCII and "▁" only
  NewPieceScores scores = NewPieceScores::below;
  int64_t max_new = 0;          // add at most this many (the first in the new model's order); 0: all
  int64_t pad_to_multiple = 64;  // round the vocabulary up with unused pieces (1: no padding)
  void validate() const;
};

struct ExtendResult {
  std::string model_bytes;  // the merged .model
  int64_t base_pieces = 0, candidates = 0, added = 0, padding = 0;
  int64_t skipped_present = 0, skipped_ascii = 0, skipped_cap = 0;
};

// Merges `add` into `base` (.model bytes; names for errors).
ExtendResult extend_vocabulary(const std::string& base, const std::string& base_name, const std::string& add,
                               const std::string& add_name, const ExtendOptions& opt);

// Whether `piece` would be dropped by keep_ascii = false.
bool piece_is_ascii_like(const std::string& piece);

// For each id in [first_new, merged size): the base ids the base tokenizer splits that piece's text into,
// encoded as the piece itself (no dummy-prefix space added). Empty for pieces that are not normal or
// user-defined (control, byte, unused padding): those rows take the mean of all base rows. Fails when the
// base's pieces are not the first pieces of the merged model.
std::vector<std::vector<int32_t>> subword_recipes(const std::string& base, const std::string& merged,
                                                  int64_t first_new, const std::string& where);

}  // namespace polyllama
