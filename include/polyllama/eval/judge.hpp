#pragma once
// The response judge of `polyllama eval --tasks responses`: each answer goes, with a rubric, to an OpenAI-compatible
// chat-completions endpoint (a hosted API or vLLM), which scores it 0-3 on five criteria. At most `concurrency`
// requests are in flight; rate limits (429), server errors (5xx), timeouts and connection errors are retried with
// exponential backoff and full jitter, honouring Retry-After; every reply is appended to an on-disk cache at once,
// so an interrupted run keeps what it paid for and a rerun sends nothing it already sent. A reply without five
// valid scores is asked once more for just the JSON; if that fails too the answer stays unscored, never 0.
// docs/judge.md says how to run it.
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace polyllama {

// The criteria, in the order of JudgeResult::scores.
enum JudgeCriterion : int {
  kJudgeAccuracy = 0,          // ACC
  kJudgeFluency = 1,           // F
  kJudgeInformativeness = 2,   // INFO
  kJudgeLogicalCoherence = 3,  // LC
  kJudgeHarmlessness = 4,      // H
};
constexpr int kJudgeCriteria = 5;
constexpr int kJudgeMaxScore = 3;  // each criterion scores 0..3
// The JSON keys the judge is asked for, and the abbreviations of the study's tables (accepted as keys too).
inline constexpr std::array<const char*, kJudgeCriteria> kJudgeCriterionNames = {
    "accuracy", "fluency", "informativeness", "logical_coherence", "harmlessness"};
inline constexpr std::array<const char*, kJudgeCriteria> kJudgeCriterionAbbrevs = {"ACC", "F", "INFO", "LC", "H"};

struct JudgeConfig {
  // A base ("http://127.0.0.1:8000/v1", "https://api.openai.com/v1") or the full ".../chat/completions".
  std::string url;
  std::string model;  // the judge model, as the endpoint names it
  // The environment variable holding the API key; unset or empty: no Authorization header (a local vLLM).
  // The key itself is never logged, written or put in an error message.
  std::string key_env = "OPENAI_API_KEY";
  int concurrency = 4;        // requests in flight at most
  double timeout_s = 120;     // per request, connection to last byte
  int max_retries = 5;        // retries per request after 429, 5xx, a timeout or a connection error
  double backoff_base_s = 1;  // retry k waits uniform(0, min(backoff_max_s, backoff_base_s * 2^(k-1)))
  double backoff_max_s = 60;  // ... unless the server sent Retry-After, which wins (up to 10 minutes)
  std::string cache_path;     // JSONL of (model, messages) -> reply; "" = no cache
  int64_t max_tokens = 512;   // of the judge's reply
  double temperature = 0;
  double progress_interval_s = 10;  // between progress lines on stderr
  void validate() const;
};

struct JudgeItem {
  std::string id;         // for messages and results files only
  std::string category;   // for the caller's tables only; not sent
  std::string question;   // the instruction plus its input
  std::string reference;  // a reference answer; may be empty
  std::string answer;     // the model's answer being judged
};

struct JudgeResult {
  bool scored = false;
  std::array<int, kJudgeCriteria> scores{-1, -1, -1, -1, -1};  // 0..3 when scored, else all -1
  std::string reason;                                          // the judge's short justification
  std::string reply;      // the judge's last reply, verbatim (for the samples file)
  bool repaired = false;  // the scores came from the one repair request
  double latency_s = 0;   // from the item's first request to its result, retries and waits included
  bool cached = false;    // every reply came from the cache (no request sent)
  int http_requests = 0;  // requests sent for this item, retries included
  std::string error;      // why it is unscored ("" when scored)
};

struct JudgeProgress {
  int64_t done = 0, total = 0, scored = 0, from_cache = 0, requests = 0, retries = 0;
  double elapsed_s = 0;
  double rate = 0;   // answers per second judged by requests (cache hits left out)
  double eta_s = 0;  // -1: not known yet
};
using JudgeProgressFn = std::function<void(const JudgeProgress&)>;

struct JudgeStats {
  int64_t items = 0, scored = 0, unscored = 0, from_cache = 0;
  int64_t requests = 0, retries = 0, repairs = 0;  // requests sent; of them retries; repair requests (sent or cached)
  double seconds = 0;
};

// Judges every item; results are in item order. Fails (exit 1) on a bad config or an unreadable cache; a failure
// of one item (an HTTP error, retries exhausted, an unusable reply) leaves that item unscored with the reason.
// on_progress is called after each item; a line with the rate and ETA goes to stderr every progress_interval_s.
std::vector<JudgeResult> judge_answers(const JudgeConfig& cfg, const std::vector<JudgeItem>& items,
                                       const JudgeProgressFn& on_progress = nullptr, JudgeStats* stats = nullptr);

// The messages sent for an item (system, then user with the rubric, question, reference and answer), as the JSON
// array of the request body: what the samples file records as the judge's prompt.
std::string judge_messages_json(const JudgeItem& item);

}  // namespace polyllama
