// libFuzzer target: GAOKAO-Bench's objective-question JSON files and its Obj_Prompt.json through the task's load,
// then every question scored against a fuzzed response (the four question types' answer extraction, partial
// credit).
//
// Input: byte 0 picks the options (bits 0-1: the file keyword, one per question type, bit 2: skip invalid items),
// the rest is "QUESTIONS JSON\n#####\nRESPONSE\n#####\nOBJ_PROMPT JSON" (a fixed Obj_Prompt.json naming the four
// keywords when the last part is empty).
#include "eval_support.hpp"

using namespace polyllama;

namespace {

const char* const kKeywords[] = {"2010-2022_Math_II_MCQs", "2010-2022_Physics_MCQs", "2010-2022_Geography_MCQs",
                                 "2012-2022_English_Cloze_Test"};
constexpr const char* kObjPrompt = R"({"examples": [
 {"type": "single_choice", "keyword": "2010-2022_Math_II_MCQs", "prefix_prompt": "请你做一道数学选择题\n", "comment": ""},
 {"type": "multi_choice", "keyword": "2010-2022_Physics_MCQs", "prefix_prompt": "请你做一道物理选择题\n"},
 {"type": "multi_question_choice", "keyword": "2010-2022_Geography_MCQs", "prefix_prompt": "请你做一道地理选择题\n"},
 {"type": "five_out_of_seven", "keyword": "2012-2022_English_Cloze_Test", "prefix_prompt": "请回答下面的问题\n"}]})";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const fuzz::ScratchDir dir;
  const uint8_t mode = data[0];
  const std::vector<std::string_view> parts = fuzz::split_parts(data + 1, size - 1, 3);
  const std::string keyword = kKeywords[mode & 3];
  EvalOptions o;
  o.bench_dir = dir.path();
  o.subjects = {keyword};  // earlier inputs left other files in the directory
  o.skip_invalid = (mode & 4) != 0;
  dir.write("gaokao/" + keyword + ".json", parts[0]);
  dir.write("gaokao/Obj_Prompt.json", parts[2].empty() ? std::string_view(kObjPrompt) : parts[2]);
  fuzz::expect_clean([&] { fuzz::load_and_score(*make_task("gaokao"), o, parts[1]); });
  return 0;
}
