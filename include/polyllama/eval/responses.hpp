#pragma once
// The response-quality task of `polyllama eval --tasks responses` ("LLaMA Beyond English", Zhao et al. 2024): a
// model answers free-form instructions through its chat template (stage 1, every data-parallel group a block of
// them, as `generate --chat`), a judge model scores each answer 0-3 on accuracy, fluency, informativeness, logical
// coherence and harmlessness (stage 2, eval/judge.hpp, on world rank 0 only), and every answer is checked for
// code-switching (eval/code_switch.hpp). OUT/responses.jsonl holds one record per instruction; results.json and
// results.md (eval/results.hpp) hold the means per category. docs/eval.md, "Response quality", says how to run it.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "polyllama/data/chat_template.hpp"
#include "polyllama/eval/code_switch.hpp"
#include "polyllama/eval/engine.hpp"
#include "polyllama/eval/generate.hpp"
#include "polyllama/eval/judge.hpp"
#include "polyllama/parallel/parallel.hpp"

namespace polyllama {

// One instruction of the input file.
struct ResponseItem {
  std::string where;  // FILE:LINE, for messages
  std::string id, category, instruction;
  std::string input, reference;             // "" when the record has none
  bool has_input = false, has_reference = false;
  std::string language;                     // the record's, else the default (--cs-language)
};

// Reads JSONL instructions: {"id", "category", "instruction", "input"?, "reference"?, "language"?} per line (blank
// lines skipped; an id is a string or an integer). Fails (exit 1) naming FILE:LINE and what was expected on a
// line that is not such a record, a repeated id or a language the code-switching table does not know (cs: the
// --cs-* settings each language is checked with), and naming the file when it holds no record.
std::vector<ResponseItem> read_instructions(const std::string& path, const std::string& default_language,
                                            const CodeSwitchConfig& cs);

// The question the judge reads: the instruction, then a blank line and the input when there is one.
std::string judge_question(const ResponseItem& item);

// Stage 1's settings: how every answer is generated.
struct ResponsesGenConfig {
  GenerateConfig gen;         // sampling (greedy by default), max_new_tokens, batch_size, prefill_chunk
  std::string template_name;  // the chat template's name (recorded; the template itself is passed as such)
  std::string system;         // the system prompt ("": the template's)
  // The settings as the records and results.json show them.
  nlohmann::json to_json() const;
};

struct ResponseAnswer {
  std::string prompt;  // the text the template renders (BOS/EOS are ids, not spelled out)
  std::string text;    // the answer
  std::string finish_reason;
  int64_t prompt_tokens = 0, generated_tokens = 0;
  double seconds = 0;  // from the start of its batch until it finished
};

// Stage 1. Every rank calls it with the same items; each data-parallel group answers a contiguous block of them
// (block_share), instruction i with sampling stream i, so the answers do not depend on the number of ranks and
// equal `generate --chat` on the same records and settings. World rank 0 returns every answer in item order, the
// other ranks an empty vector; progress (rank 0): its own group's answers done and assigned; stats: summed over
// the groups, seconds the slowest group's.
std::vector<ResponseAnswer> answer_instructions(LlamaModel& model, const Tokenizer& tok, const ChatTemplate& tpl,
                                                const ResponsesGenConfig& cfg, const ParallelContext& par,
                                                const std::vector<ResponseItem>& items,
                                                const EvalProgressFn& progress = {}, GenStats* stats = nullptr);

// One instruction with its answer, verdicts and scores: a line of OUT/responses.jsonl.
struct ResponseRecord {
  ResponseItem item;
  ResponseAnswer answer;
  nlohmann::json generation = nlohmann::json::object();  // the settings it was generated with
  bool judged = false;                                    // sent to a judge (result below)
  JudgeResult judge;
  CodeSwitchVerdict code_switch;
};

// Everything the responses task reports.
struct ResponsesRun {
  std::string source;                                      // the instruction file (or --judge-only's answers)
  nlohmann::json generation = nlohmann::json::object();  // stage 1's settings (to_json), or the answers' own
  std::vector<ResponseRecord> records;                     // in input order
  bool judged = false;
  std::string judge_model, judge_url;  // judge_url without credentials
  JudgeStats judge_stats;
  CodeSwitchConfig code_switch;
};

// Reads an earlier run's OUT/responses.jsonl (for --judge-only): each line's item, answer and settings; earlier
// scores and verdicts are dropped (they are computed again). Fails (exit 1) naming FILE:LINE and the field.
std::vector<ResponseRecord> read_response_records(const std::string& path, const std::string& default_language,
                                                  const CodeSwitchConfig& cs);

// Stage 2 (world rank 0): judges every record (see judge_answers), sets run.judged, judge_model and judge_stats.
void judge_responses(const JudgeConfig& cfg, ResponsesRun& run);
// Code-switching of every answer, each against its own language with cfg's allowed scripts and run length.
void detect_response_code_switching(const CodeSwitchConfig& cfg, ResponsesRun& run);

// The record as its line of OUT/responses.jsonl (without the newline).
std::string response_record_line(const ResponseRecord& r, const std::string& judge_model);

// results.json's entries for the task: "results" ("responses" overall, "responses_<category>" each: the mean and
// standard error of ACC, F, INFO, LC, H and AVG over the scored answers, null when none (a standard error when
// fewer than two), scored / unscored counts, the code-switching rate; "responses" also holds "code_switching",
// per language and per (language, category) with up to 3 examples), "group_subtasks", "configs", "versions",
// "n-shot": merged by results_json.
nlohmann::json responses_results_json(const ResponsesRun& run);
// results.md's section: the study's table (categories and "overall" x ACC, F, INFO, LC, H, AVG, code-switched),
// then the code-switching rates per language and category with examples. res: responses_results_json(run).
std::string responses_markdown(const ResponsesRun& run, const nlohmann::json& res);

}  // namespace polyllama
