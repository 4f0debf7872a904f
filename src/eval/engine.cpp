#include "polyllama/eval/engine.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/eval/generate.hpp"
#include "polyllama/model/llama_decode.hpp"

namespace polyllama {

void EngineConfig::validate() const {
  if (batch_size < 1) fail_input("--batch-size " + std::to_string(batch_size) + ": expected >= 1");
  if (prefill_chunk < 1) fail_input("--prefill-chunk " + std::to_string(prefill_chunk) + ": expected >= 1");
  if (max_new_tokens < 0) fail_input("--max-new-tokens " + std::to_string(max_new_tokens) + ": expected >= 0");
}

int32_t label_token(const Tokenizer& tok, const std::string& label) {
  const std::vector<int32_t> ids = tok.encode(label);
  if (ids.empty()) fail_input("the option label '" + label + "' encodes to no token");
  return ids[0];
}

namespace {

// log(sum exp(row)) over the whole vocabulary, in double: log-softmax(row)[id] = row[id] - this.
double log_sum_exp(const double* row, int64_t V) {
  const double mx = *std::max_element(row, row + V);
  double sum = 0;
  for (int64_t j = 0; j < V; ++j) sum += std::exp(row[j] - mx);
  return mx + std::log(sum);
}

struct Progress {
  const EvalProgressFn& fn;
  int64_t done = 0, total = 0;
  void add(int64_t n) {
    done += n;
    if (fn) fn(done, total);
  }
};

}  // namespace

std::vector<std::vector<double>> next_token_logprobs(LlamaModel& model, const EngineConfig& cfg,
                                                     const std::vector<NextTokenRequest>& reqs,
                                                     const std::function<void(int64_t)>& done, EngineStats* stats) {
  std::vector<std::vector<double>> out(reqs.size());
  if (reqs.empty()) return out;
  const ModelConfig& mc = model.config();
  const int64_t V = mc.vocab_size;
  std::vector<std::string> order;  // groups in order of first appearance
  std::map<std::string, std::vector<size_t>> groups;
  int64_t longest = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const NextTokenRequest& r = reqs[i];
    if (r.ids.empty()) fail_input(r.where + ": an empty prompt");
    if (static_cast<int64_t>(r.ids.size()) > mc.max_position_embeddings)
      fail_input(r.where + ": the prompt has " + std::to_string(r.ids.size()) + " tokens (BOS included); the model's "
                 "max_position_embeddings is " + std::to_string(mc.max_position_embeddings) +
                 " (use fewer shots, --num-fewshot)");
    for (const int32_t id : r.read)
      if (id < 0 || id >= V) fail_input(r.where + ": token id " + std::to_string(id) + " outside the vocabulary");
    longest = std::max<int64_t>(longest, static_cast<int64_t>(r.ids.size()));
    if (!groups.count(r.group)) order.push_back(r.group);
    groups[r.group].push_back(i);
  }
  // Right padding is never read (it follows a row's last real token, and attention is causal); any id will do.
  const int32_t pad = reqs[0].ids[0];
  LlamaDecoder dec(model, {cfg.batch_size, cfg.prefill_chunk, longest, false});
  EngineStats st;
  std::vector<double> logits;
  for (const std::string& key : order) {
    std::vector<size_t> g = groups[key];
    // The prefix every prompt of the group starts with, leaving each at least its last token to compute.
    const std::vector<int32_t>& first = reqs[g[0]].ids;
    int64_t P = static_cast<int64_t>(first.size()) - 1;
    for (size_t i : g) {
      const std::vector<int32_t>& b = reqs[i].ids;
      int64_t k = 0;
      const int64_t most = std::min<int64_t>(P, static_cast<int64_t>(b.size()) - 1);
      while (k < most && first[static_cast<size_t>(k)] == b[static_cast<size_t>(k)]) ++k;
      P = std::min(P, k);
    }
    if (!cfg.reuse_prefix) P = 0;
    // Longest first, so a batch holds requests of similar length; ties in request order.
    std::stable_sort(g.begin(), g.end(),
                     [&](size_t x, size_t y) { return reqs[x].ids.size() > reqs[y].ids.size(); });
    // Batches of consecutive (similar) lengths, right-padded to the longest: a request joins the batch while the
    // padding stays under an eighth of the batch's positions (at batch_size 8 and the lengths of real benchmarks,
    // padding otherwise costs a quarter of the work).
    std::vector<std::pair<size_t, size_t>> batches;  // [first, last) of g
    for (size_t b0 = 0; b0 < g.size();) {
      const int64_t T = static_cast<int64_t>(reqs[g[b0]].ids.size()) - P;
      size_t b1 = b0 + 1;
      int64_t padding = 0;
      while (b1 < g.size() && b1 - b0 < static_cast<size_t>(cfg.batch_size)) {
        const int64_t more = T - (static_cast<int64_t>(reqs[g[b1]].ids.size()) - P);
        if (8 * (padding + more) > T * static_cast<int64_t>(b1 - b0 + 1)) break;
        padding += more, ++b1;
      }
      batches.push_back({b0, b1});
      b0 = b1;
    }
    size_t widest = 0;
    for (const auto& [b0, b1] : batches) widest = std::max(widest, b1 - b0);
    dec.begin(1, static_cast<int64_t>(reqs[g[0]].ids.size()), {});
    if (P > 0) dec.append(first.data(), P, nullptr);
    st.computed_tokens += P;
    dec.expand(static_cast<int64_t>(widest));
    for (const auto& [b0, b1] : batches) {
      const size_t n = b1 - b0;
      dec.rewind(P, static_cast<int64_t>(n));
      const int64_t T = static_cast<int64_t>(reqs[g[b0]].ids.size()) - P;  // the batch's longest suffix
      std::vector<int32_t> tokens(n * static_cast<size_t>(T), pad);
      std::vector<int64_t> at(n);
      for (size_t r = 0; r < n; ++r) {
        const std::vector<int32_t>& e = reqs[g[b0 + r]].ids;
        std::copy(e.begin() + P, e.end(), tokens.begin() + static_cast<std::ptrdiff_t>(r * static_cast<size_t>(T)));
        at[r] = static_cast<int64_t>(e.size()) - P - 1;
      }
      dec.append_at(tokens.data(), T, at, &logits);
      st.computed_tokens += static_cast<int64_t>(n) * T;
      for (size_t r = 0; r < n; ++r) {
        const double* row = logits.data() + static_cast<int64_t>(r) * V;
        const double lse = log_sum_exp(row, V);
        for (const int32_t id : reqs[g[b0 + r]].read) out[g[b0 + r]].push_back(row[id] - lse);
      }
      if (done) done(static_cast<int64_t>(n));
    }
  }
  if (stats) stats->computed_tokens += st.computed_tokens;
  return out;
}

namespace {

// Letters questions: BOS + the prompt encoded whole, grouped by subject, read at each label's first id.
void answer_letters(LlamaModel& model, const Tokenizer& tok, const EngineConfig& cfg,
                    const std::vector<Question>& qs, const std::vector<size_t>& which, std::vector<Response>& out,
                    Progress& progress, EngineStats& st) {
  std::map<std::string, int32_t> label_ids;
  std::vector<NextTokenRequest> reqs;
  for (size_t i : which) {
    NextTokenRequest r;
    r.ids = tok.encode(qs[i].prompt);
    r.ids.insert(r.ids.begin(), tok.bos_id());
    for (const std::string& l : qs[i].labels) {
      auto it = label_ids.find(l);
      r.read.push_back(it != label_ids.end() ? it->second : (label_ids[l] = label_token(tok, l)));
    }
    r.group = qs[i].task + "/" + qs[i].subject;
    r.where = qs[i].where;
    st.prompt_tokens += static_cast<int64_t>(r.ids.size());
    reqs.push_back(std::move(r));
  }
  std::vector<std::vector<double>> lp =
      next_token_logprobs(model, cfg, reqs, [&](int64_t n) { progress.add(n); }, &st);
  for (size_t k = 0; k < which.size(); ++k) out[which[k]].logprobs = std::move(lp[k]);
}

// Generate questions, greedy, one generate() call per subject and (max_new_tokens, stop strings): generate() forms
// its batches from the prompts it is given, so a subject's answers do not depend on the other subjects computed with
// it (the runner's unit of work).
void answer_generate(LlamaModel& model, const Tokenizer& tok, const EngineConfig& cfg,
                     const std::vector<Question>& qs, const std::vector<size_t>& which, std::vector<Response>& out,
                     Progress& progress, EngineStats& st) {
  std::map<std::tuple<std::string, std::string, int64_t, std::vector<std::string>>, std::vector<size_t>> groups;
  for (size_t i : which) {
    const int64_t m = cfg.max_new_tokens > 0 ? cfg.max_new_tokens : qs[i].max_new_tokens;
    if (m < 1) fail_input(qs[i].where + ": a generated answer needs max_new_tokens >= 1");
    groups[{qs[i].task, qs[i].subject, m, qs[i].stop}].push_back(i);
  }
  for (const auto& [key, g] : groups) {
    GenerateConfig gc;
    gc.max_new_tokens = std::get<2>(key);
    gc.stop = std::get<3>(key);
    gc.batch_size = cfg.batch_size;
    gc.prefill_chunk = cfg.prefill_chunk;
    gc.text_after_prompt = false;  // the completion decoded on its own, as Hugging Face decodes generated ids
    std::vector<GenRequest> reqs;
    for (size_t i : g) {
      GenRequest r;
      r.ids = tok.encode(qs[i].prompt);
      r.ids.insert(r.ids.begin(), tok.bos_id());
      r.stream = i;
      st.prompt_tokens += static_cast<int64_t>(r.ids.size());
      reqs.push_back(std::move(r));
    }
    GenStats gs;
    const std::vector<GenOutput> outs = generate(model, tok, gc, reqs, nullptr, &gs);
    for (size_t k = 0; k < g.size(); ++k) out[g[k]].text = outs[k].text;
    st.generated_tokens += gs.generated_tokens;
    st.computed_tokens += gs.prompt_tokens + gs.generated_tokens;
    progress.add(static_cast<int64_t>(g.size()));
  }
}

}  // namespace

std::vector<Response> answer_questions(LlamaModel& model, const Tokenizer& tok, const EngineConfig& cfg,
                                       const std::vector<Question>& questions, const EvalProgressFn& progress,
                                       EngineStats* stats) {
  cfg.validate();
  const double t0 = now_seconds();
  std::vector<Response> out(questions.size());
  std::vector<size_t> letters, gen;
  for (size_t i = 0; i < questions.size(); ++i)
    (questions[i].scoring == Scoring::letters ? letters : gen).push_back(i);
  EngineStats st;
  st.questions = static_cast<int64_t>(questions.size());
  Progress p{progress, 0, static_cast<int64_t>(questions.size())};
  answer_letters(model, tok, cfg, questions, letters, out, p, st);
  answer_generate(model, tok, cfg, questions, gen, out, p, st);
  st.seconds = now_seconds() - t0;
  if (stats) *stats = st;
  return out;
}

}  // namespace polyllama
