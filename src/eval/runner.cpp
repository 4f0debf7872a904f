#include "polyllama/eval/runner.hpp"

#include <algorithm>
#include <map>
#include <numeric>

#include <nlohmann/json.hpp>

namespace polyllama {

std::vector<int> assign_longest_first(const std::vector<double>& cost, int parts) {
  std::vector<size_t> order(cost.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
  std::vector<double> load(static_cast<size_t>(parts), 0.0);
  std::vector<int> group(cost.size(), 0);
  for (size_t i : order) {
    const auto least = std::min_element(load.begin(), load.end());  // the first of equal loads
    group[i] = static_cast<int>(least - load.begin());
    *least += cost[i];
  }
  return group;
}

std::vector<Response> answer_distributed(LlamaModel& model, const Tokenizer& tok, const EngineConfig& cfg,
                                         const ParallelContext& par, const std::vector<Question>& qs,
                                         const EvalProgressFn& progress, EngineStats* stats) {
  // Units: (task, subject, scoring) in order of first appearance; cost: prompt bytes, and for generated answers
  // the tokens they may write.
  std::map<std::tuple<std::string, std::string, int>, size_t> unit_of;
  std::vector<std::vector<size_t>> units;
  std::vector<double> cost;
  for (size_t i = 0; i < qs.size(); ++i) {
    const auto key = std::make_tuple(qs[i].task, qs[i].subject, static_cast<int>(qs[i].scoring));
    auto [it, fresh] = unit_of.emplace(key, units.size());
    if (fresh) units.emplace_back(), cost.push_back(0.0);
    units[it->second].push_back(i);
    cost[it->second] += static_cast<double>(qs[i].prompt.size()) +
                        (qs[i].scoring == Scoring::generate ? 8.0 * static_cast<double>(qs[i].max_new_tokens) : 0.0);
  }
  const int dp = par.dims().dp;
  const std::vector<int> group = assign_longest_first(cost, dp);
  std::vector<size_t> mine;
  for (size_t u = 0; u < units.size(); ++u)
    if (group[u] == par.dp_rank()) mine.insert(mine.end(), units[u].begin(), units[u].end());
  std::sort(mine.begin(), mine.end());
  std::vector<Question> local;
  for (size_t i : mine) local.push_back(qs[i]);
  EngineStats st;
  const std::vector<Response> answers = answer_questions(model, tok, cfg, local, progress, &st);

  // Each group's tp rank 0 reports its answers: (question index, log-probabilities, text).
  nlohmann::json j = nlohmann::json::array();
  if (par.tp_rank() == 0)
    for (size_t k = 0; k < mine.size(); ++k) j.push_back({mine[k], answers[k].logprobs, answers[k].text});
  const nlohmann::json counts = {st.prompt_tokens, st.computed_tokens, st.generated_tokens};
  const std::vector<std::string> parts = gather_strings(
      nlohmann::json{{"answers", j}, {"counts", par.tp_rank() == 0 ? counts : nlohmann::json::array()}}.dump(-1, ' ',
                     false, nlohmann::json::error_handler_t::replace), par.world_comm());
  std::vector<Response> out;
  if (par.rank() != 0) return out;
  out.resize(qs.size());
  EngineStats total;
  total.questions = static_cast<int64_t>(qs.size());
  for (const std::string& p : parts) {
    const nlohmann::json r = nlohmann::json::parse(p);
    for (const auto& a : r.at("answers")) {
      Response& resp = out.at(a.at(0).get<size_t>());
      resp.logprobs = a.at(1).get<std::vector<double>>();
      resp.text = a.at(2).get<std::string>();
    }
    if (!r.at("counts").empty()) {
      total.prompt_tokens += r["counts"][0].get<int64_t>();
      total.computed_tokens += r["counts"][1].get<int64_t>();
      total.generated_tokens += r["counts"][2].get<int64_t>();
    }
  }
  total.seconds = st.seconds;
  if (stats) *stats = total;
  return out;
}

}  // namespace polyllama
