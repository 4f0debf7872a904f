#include "polyllama/eval/generate.hpp"

#include <algorithm>
#include <numeric>

#include "completion.hpp"

#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/model/llama_decode.hpp"

namespace polyllama {

void GenerateConfig::validate() const {
  sampling.validate();
  if (max_new_tokens < 1) fail_input("--max-new-tokens " + std::to_string(max_new_tokens) + ": expected >= 1");
  if (batch_size < 1) fail_input("--batch-size " + std::to_string(batch_size) + ": expected >= 1");
  if (prefill_chunk < 1) fail_input("--prefill-chunk " + std::to_string(prefill_chunk) + ": expected >= 1");
  for (const std::string& s : stop)
    if (s.empty()) fail_input("--stop: an empty stop string would end every completion at once");
}

std::vector<GenOutput> generate(LlamaModel& model, const Tokenizer& tok, const GenerateConfig& cfg,
                                const std::vector<GenRequest>& requests, const StreamFn& on_text, GenStats* stats) {
  cfg.validate();
  const ModelConfig& mc = model.config();
  const int64_t max_pos = mc.max_position_embeddings, V = mc.vocab_size;
  std::vector<GenOutput> out(requests.size());
  if (requests.empty()) return out;
  for (size_t i = 0; i < requests.size(); ++i) {
    const int64_t n = static_cast<int64_t>(requests[i].ids.size());
    if (n == 0) fail_input("prompt " + std::to_string(i + 1) + " has no tokens (an empty prompt needs BOS)");
    if (n >= max_pos)
      fail_input("prompt " + std::to_string(i + 1) + " has " + std::to_string(n) +
                 " tokens: the model's max_position_embeddings " + std::to_string(max_pos) +
                 " leaves no room to generate (shorten it)");
  }
  auto limit_of = [&](size_t i) {
    return std::min(cfg.max_new_tokens, max_pos - static_cast<int64_t>(requests[i].ids.size()));
  };

  // Batches of similar length waste little on padding; the order inside and across batches changes no result.
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return requests[a].ids.size() < requests[b].ids.size(); });
  struct Batch {
    std::vector<size_t> reqs;
    int64_t L = 0, cap = 0;
  };
  std::vector<Batch> batches;
  DecodeLimits lim;
  lim.max_batch = std::min<int64_t>(cfg.batch_size, static_cast<int64_t>(requests.size()));
  lim.max_chunk = 1;
  for (size_t i0 = 0; i0 < order.size(); i0 += static_cast<size_t>(cfg.batch_size)) {
    Batch b;
    int64_t most_new = 0;
    for (size_t i = i0; i < std::min(order.size(), i0 + static_cast<size_t>(cfg.batch_size)); ++i) {
      b.reqs.push_back(order[i]);
      b.L = std::max(b.L, static_cast<int64_t>(requests[order[i]].ids.size()));
      most_new = std::max(most_new, limit_of(order[i]));
    }
    b.cap = b.L + most_new - 1;  // the last token sampled is never fed back
    lim.max_cache = std::max(lim.max_cache, b.cap);
    lim.max_chunk = std::max(lim.max_chunk, std::min(cfg.prefill_chunk, b.L));
    batches.push_back(std::move(b));
  }
  LlamaDecoder dec(model, lim);
  Sampler sampler(cfg.sampling);
  GenStats st;
  st.cache_bytes = dec.cache_bytes();
  st.activation_bytes = dec.activation_bytes();
  const double t_all = now_seconds();

  std::vector<double> logits;
  std::vector<int32_t> feed;
  for (const Batch& batch : batches) {
    const int64_t B = static_cast<int64_t>(batch.reqs.size()), L = batch.L;
    std::vector<Completion> rows;
    rows.reserve(static_cast<size_t>(B));
    std::vector<int32_t> pad(static_cast<size_t>(B));
    feed.assign(static_cast<size_t>(B * L), 0);  // padding id: any valid id, nothing real attends to it
    for (int64_t b = 0; b < B; ++b) {
      const size_t req = batch.reqs[static_cast<size_t>(b)];
      const std::vector<int32_t>& ids = requests[req].ids;
      const int64_t n = static_cast<int64_t>(ids.size());
      pad[static_cast<size_t>(b)] = static_cast<int32_t>(L - n);
      std::copy(ids.begin(), ids.end(), feed.begin() + b * L + (L - n));
      rows.emplace_back(tok, ids, limit_of(req), cfg.text_after_prompt, cfg.stop, cfg.ignore_eos);
      st.prompt_tokens += n;
    }
    const double t0 = now_seconds();
    dec.begin(B, batch.cap, pad);
    dec.append(feed.data(), L, &logits);
    st.prefill_seconds += now_seconds() - t0;

    int64_t active = B;
    for (uint64_t step = 0; active > 0; ++step) {
      feed.assign(static_cast<size_t>(B), 0);
      for (int64_t b = 0; b < B; ++b) {
        Completion& r = rows[static_cast<size_t>(b)];
        if (r.done()) continue;
        const size_t req = batch.reqs[static_cast<size_t>(b)];
        const int32_t id = sampler.next(logits.data() + b * V, V, r.seen(), requests[req].stream, step);
        st.generated_tokens += 1;
        const std::string fresh = r.push(id);
        if (on_text && !fresh.empty()) on_text(req, fresh);
        if (r.done()) {
          out[req] = std::move(r.output());
          out[req].seconds = now_seconds() - t0;
          active -= 1;
          dec.retire(b);
        } else {
          feed[static_cast<size_t>(b)] = id;
        }
      }
      if (active == 0) break;
      const double t1 = now_seconds();
      dec.append(feed.data(), 1, &logits);
      st.decode_seconds += now_seconds() - t1;
    }
    st.batches += 1;
  }
  st.seconds = now_seconds() - t_all;
  if (stats) *stats = st;
  return out;
}

}  // namespace polyllama
