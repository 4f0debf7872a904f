// Stage 1 of the responses task: the model's answers, through its chat template, over the data-parallel groups.
#include <algorithm>
#include <numeric>

#include "polyllama/core/log.hpp"
#include "polyllama/eval/prompts.hpp"
#include "polyllama/eval/responses.hpp"

namespace polyllama {

using json = nlohmann::json;

std::vector<ResponseAnswer> answer_instructions(LlamaModel& model, const Tokenizer& tok, const ChatTemplate& tpl,
                                                const ResponsesGenConfig& cfg, const ParallelContext& par,
                                                const std::vector<ResponseItem>& items, const EvalProgressFn& progress,
                                                GenStats* stats) {
  cfg.gen.validate();
  const int64_t max_pos = model.config().max_position_embeddings;
  // This group's block of the instructions, each a user turn as `generate --chat` reads an Alpaca record.
  const auto [lo, hi] = block_share(items.size(), par.dp_rank(), par.dims().dp);
  std::vector<GenRequest> reqs;
  std::vector<std::string> prompts;
  for (size_t i = lo; i < hi; ++i) {
    const ResponseItem& it = items[i];
    Prompt p{it.where, it.instruction, {}, json::object()};
    p.conv.system = cfg.system;
    p.conv.turns = {{Role::user, tpl.user_text(it.instruction, it.input)}};
    reqs.push_back(prompt_request(p, i, tok, &tpl, /*no_bos=*/false, max_pos));
    std::string text;
    for (const Segment& s : tpl.render(p.conv)) text += s.text;
    prompts.push_back(std::move(text));
  }

  // The batches generate() forms from the whole block (by prompt length, stable, batch_size each), one call each
  // so that progress is reported between them; a completion depends on its prompt, the weights and its stream
  // only, never on its batch.
  GenerateConfig gen = cfg.gen;
  gen.text_after_prompt = false;  // a chat answer reads on its own, without the space SentencePiece prefixed
  std::vector<size_t> order(reqs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return reqs[a].ids.size() < reqs[b].ids.size(); });
  std::vector<GenOutput> outs(reqs.size());
  GenStats st;
  const double t0 = now_seconds();
  const size_t B = static_cast<size_t>(gen.batch_size);
  for (size_t b0 = 0; b0 < order.size(); b0 += B) {
    std::vector<GenRequest> batch;
    for (size_t k = b0; k < std::min(order.size(), b0 + B); ++k) batch.push_back(reqs[order[k]]);
    GenStats bs;
    std::vector<GenOutput> got = generate(model, tok, gen, batch, nullptr, &bs);
    for (size_t k = 0; k < got.size(); ++k) outs[order[b0 + k]] = std::move(got[k]);
    st.prompt_tokens += bs.prompt_tokens, st.generated_tokens += bs.generated_tokens, st.batches += bs.batches;
    st.prefill_seconds += bs.prefill_seconds, st.decode_seconds += bs.decode_seconds;
    st.cache_bytes = std::max(st.cache_bytes, bs.cache_bytes);
    st.activation_bytes = std::max(st.activation_bytes, bs.activation_bytes);
    if (progress)
      progress(static_cast<int64_t>(std::min(order.size(), b0 + B)), static_cast<int64_t>(order.size()));
  }
  st.seconds = now_seconds() - t0;
  if (progress && order.empty()) progress(0, 0);

  // Each group's tp rank 0 reports its answers: (index, prompt, text, finish_reason, prompt tokens, generated
  // tokens, seconds).
  json mine = json::array();
  if (par.tp_rank() == 0)
    for (size_t k = 0; k < outs.size(); ++k)
      mine.push_back({lo + k, prompts[k], outs[k].text, outs[k].finish_reason, reqs[k].ids.size(),
                      outs[k].tokens.size(), outs[k].seconds});
  const json counts = par.tp_rank() == 0 ? json{st.prompt_tokens, st.generated_tokens, st.batches} : json::array();
  const std::vector<std::string> parts =
      gather_strings(json{{"answers", mine}, {"counts", counts}, {"seconds", st.seconds}}.dump(
                         -1, ' ', false, json::error_handler_t::replace),
                     par.world_comm());
  std::vector<ResponseAnswer> out;
  if (par.rank() != 0) return out;
  out.resize(items.size());
  GenStats total = st;
  total.prompt_tokens = total.generated_tokens = total.batches = 0;
  for (const std::string& part : parts) {
    const json r = json::parse(part);
    for (const json& a : r.at("answers")) {
      ResponseAnswer& ans = out.at(a.at(0).get<size_t>());
      ans.prompt = a.at(1).get<std::string>();
      ans.text = a.at(2).get<std::string>();
      ans.finish_reason = a.at(3).get<std::string>();
      ans.prompt_tokens = a.at(4).get<int64_t>();
      ans.generated_tokens = a.at(5).get<int64_t>();
      ans.seconds = a.at(6).get<double>();
    }
    if (!r.at("counts").empty()) {
      total.prompt_tokens += r["counts"][0].get<int64_t>();
      total.generated_tokens += r["counts"][1].get<int64_t>();
      total.batches += r["counts"][2].get<int64_t>();
    }
    total.seconds = std::max(total.seconds, r.at("seconds").get<double>());
  }
  if (stats) *stats = total;
  return out;
}

}  // namespace polyllama
