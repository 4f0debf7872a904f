#pragma once
// What the judge is asked (the rubric, the messages of a request and of the one repair request) and how its reply
// becomes five scores. Private to the eval area's response judge.
#include <array>
#include <nlohmann/json.hpp>
#include <string>

#include "polyllama/eval/judge.hpp"

namespace polyllama::judge {

// [system, user]: the rubric with each criterion's 0..3 levels, the question, the reference when there is one,
// the answer, and the JSON object to reply with.
nlohmann::json request_messages(const JudgeItem& item);
// messages + the judge's reply + a user turn asking for only the JSON object (problem: what was wrong).
nlohmann::json repair_messages(const nlohmann::json& messages, const std::string& reply, const std::string& problem);

struct ParsedScores {
  bool ok = false;
  std::array<int, kJudgeCriteria> scores{-1, -1, -1, -1, -1};
  std::string reason;
  std::string problem;  // why !ok, e.g. "missing harmlessness", "fluency: 4 is not an integer 0..3"
};
// Finds the scores in a reply: the whole reply as a JSON object, else every balanced {...} in it (code fences and
// prose around it do not matter) that parses; the last object with all five valid scores wins. Keys are matched
// without regard to case, spaces or dashes (accuracy/ACC, fluency/F, informativeness/INFO,
// logical_coherence/"logical coherence"/LC, harmlessness/H); a value is an integer 0..3, also as 2.0 or "2".
ParsedScores parse_scores(const std::string& reply);

// A JSON dump that never throws: bytes that are not UTF-8 (an answer cut mid-character) become U+FFFD, the same
// way in a request body, a cache key and a cache line.
std::string dump_json(const nlohmann::json& j);

}  // namespace polyllama::judge
