// libFuzzer target: SentencePiece .model bytes (the ModelProto wire format read by hand, protobuf_wire and SpModel;
// a checkpoint stores these bytes as its tokenizer attribute) and the fast encoder built from them (FastBpe).
// Properties checked on a model that parses: serialize() is a fixed point (parse(serialize(m)) serializes to the
// same bytes), trainer_vocab_size survives set/serialize/parse, and the derived settings and encoder never crash.
#include <memory>
#include <vector>

#include "fuzz_support.hpp"
#include "polyllama/tokenizer/fast_bpe.hpp"
#include "polyllama/tokenizer/sp_model.hpp"

using namespace polyllama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  std::string why;
  const std::optional<SpModel> m = SpModel::try_parse(bytes, &why);
  fuzz::require(m.has_value() || !why.empty(), "a refused model says why");
  fuzz::expect_clean([&] {
    if (!m) {
      SpModel::parse(bytes, "fuzz.model");  // must fail as bad input, as try_parse did
      fuzz::require(false, "parse accepts what try_parse refused");
    }
    const std::string once = m->serialize();
    const SpModel again = SpModel::parse(once, "serialized");
    fuzz::require(again.serialize() == once, "serialize() is a fixed point");
    fuzz::require(again.pieces.size() == m->pieces.size(), "pieces survive serialize()");
    SpModel resized = again;
    resized.set_trainer_vocab_size(static_cast<int64_t>(m->pieces.size()) + 7);
    fuzz::require(SpModel::parse(resized.serialize(), "resized").trainer_vocab_size() ==
                      static_cast<int64_t>(m->pieces.size()) + 7,
                  "trainer_vocab_size reads back what was set");
    m->segmentation_flags();
    m->without_dummy_prefix().serialize();
    if (m->pieces.size() <= 4096) {  // the encoder on small vocabularies (the work grows with the pieces)
      if (std::unique_ptr<FastBpe> bpe = FastBpe::create(bytes, &why)) {
        std::vector<int32_t> ids;
        bpe->encode("Hello world, 你好世界 \xF0\x9F\x98\x80 \xFF\xFE tab\there", ids);
        for (int32_t id : ids) fuzz::require(id >= 0 && id < bpe->vocab_size(), "ids inside the vocabulary");
      }
    }
  });
  return 0;
}
