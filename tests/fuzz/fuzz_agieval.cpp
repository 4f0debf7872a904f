// libFuzzer target: AGIEval's JSONL files (data/v1/TASK.jsonl) and its few_shot_prompts.csv through the task's
// load, then every question scored against a fuzzed response (single letters, letter sets, and the cloze/math
// answer parsing with its equivalence check).
//
// Input: byte 0 picks the options (bits 0-2: the task file, bit 3: generate instead of letters where both exist,
// bit 4: skip invalid lines, bits 5-7: few-shot count mod 6 when a few-shot CSV is given), the rest is
// "TASK JSONL\n#####\nRESPONSE\n#####\nFEW-SHOT CSV".
#include "eval_support.hpp"

using namespace polyllama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // One English and one Chinese multiple-choice task, the letter-set ones, and the cloze/math ones.
  static const char* const kStems[] = {"sat-math",        "logiqa-zh",      "lsat-ar",  "jec-qa-kd",
                                       "gaokao-physics", "gaokao-mathcloze", "math", "aqua-rat"};
  static const fuzz::ScratchDir dir;
  const uint8_t mode = data[0];
  const std::vector<std::string_view> parts = fuzz::split_parts(data + 1, size - 1, 3);
  const std::string stem = kStems[mode & 7];
  EvalOptions o;
  o.bench_dir = dir.path();
  o.subjects = {stem};  // earlier inputs left other task files in the directory
  o.method = (mode & 8) ? "generate" : "";
  o.skip_invalid = (mode & 16) != 0;
  o.num_fewshot = parts[2].empty() ? 0 : ((mode >> 5) & 7) % 6;
  dir.write("agieval/" + stem + ".jsonl", parts[0]);
  dir.write("agieval/few_shot_prompts.csv", parts[2]);
  fuzz::expect_clean([&] { fuzz::load_and_score(*make_task("agieval"), o, parts[1]); });
  return 0;
}
