// libFuzzer target: pretraining inputs (`polyllama data`, plain-text `pretrain`): JSONL records with a text field,
// and plain text with blank-line documents, plain or gzip-compressed (detected from the bytes), through
// describe_inputs, plan_pieces and DocumentReader.
//
// Besides crashes it checks the property the rank split promises (text_input.hpp): for 2 and 3 ranks, the ranks'
// documents concatenated in rank order equal the serial read's.
//
// Input: byte 0 picks the options (bit 0: JSONL or text, bit 1: blank-line documents, bit 2: skip invalid lines),
// the rest is the file.
#include <vector>

#include "fuzz_support.hpp"
#include "polyllama/data/text_input.hpp"

using namespace polyllama;

namespace {

std::vector<std::string> read_as_ranks(const std::vector<InputFile>& inputs, const TextInputOptions& opts, int world) {
  std::vector<std::string> docs;
  for (int r = 0; r < world; ++r) {
    DocumentReader reader(inputs, plan_pieces(inputs, opts, r, world), opts);
    std::string text;
    int64_t file = 0;
    while (reader.next(text, file)) docs.push_back(text);
  }
  return docs;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static fuzz::MemFile file("fuzz-input");
  file.set(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  TextInputOptions opts;
  opts.format = (data[0] & 1) ? "jsonl" : "text";
  opts.blank_line_docs = (data[0] & 2) != 0;
  opts.skip_invalid = (data[0] & 4) != 0;
  fuzz::expect_clean([&] {
    const std::vector<InputFile> inputs = describe_inputs({file.path()}, opts);
    const std::vector<std::string> serial = read_all_documents(inputs, opts);
    for (int world = 2; world <= 3; ++world)
      fuzz::require(read_as_ranks(inputs, opts, world) == serial, "ranks' documents equal the serial read");
  });
  return 0;
}
