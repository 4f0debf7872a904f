#include "polyllama/eval/continuous_batcher.hpp"

#include <algorithm>

#include "completion.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/model/llama_decode.hpp"

namespace polyllama {

void BatcherLimits::validate() const {
  if (max_batch < 1) fail_input("--max-batch " + std::to_string(max_batch) + ": expected >= 1");
  if (max_context < 0) fail_input("--max-context " + std::to_string(max_context) + ": expected >= 0 (0: the model's)");
  if (prefill_chunk < 1) fail_input("--prefill-chunk " + std::to_string(prefill_chunk) + ": expected >= 1");
}

struct ContinuousBatcher::Slot {
  uint64_t key = 0;
  LiveRequest req;  // owns the stop strings the completion reads
  std::unique_ptr<Completion> completion;
  std::unique_ptr<Sampler> sampler;
  int32_t last = 0;  // the sampled id the next step feeds
  double t0 = 0;
};

ContinuousBatcher::ContinuousBatcher(LlamaModel& model, const Tokenizer& tok, const BatcherLimits& limits)
    : model_(model), tok_(tok), lim_(limits) {
  lim_.validate();
  const ModelConfig& mc = model.config();
  ctx_ = lim_.max_context > 0 ? std::min(lim_.max_context, mc.max_position_embeddings) : mc.max_position_embeddings;
  V_ = mc.vocab_size;
  DecodeLimits b;
  b.max_batch = lim_.max_batch, b.max_chunk = 1, b.max_cache = ctx_;
  batch_ = std::make_unique<LlamaDecoder>(model, b);
  DecodeLimits p;
  p.max_batch = 1, p.max_chunk = std::min(lim_.prefill_chunk, ctx_), p.max_cache = ctx_;
  prefill_ = std::make_unique<LlamaDecoder>(model, p);
  batch_->begin(lim_.max_batch, ctx_, {});
  for (int64_t r = 0; r < lim_.max_batch; ++r) batch_->retire(r);  // every row free
  slots_.resize(static_cast<size_t>(lim_.max_batch));
}

ContinuousBatcher::~ContinuousBatcher() = default;

size_t ContinuousBatcher::cache_bytes() const { return batch_->cache_bytes() + prefill_->cache_bytes(); }

std::string ContinuousBatcher::refuse(int64_t n) const {
  if (n <= 0) return "the prompt has no tokens";
  if (n >= ctx_)
    return "the prompt has " + std::to_string(n) + " tokens; the context is " + std::to_string(ctx_) +
           " positions (prompt + completion), which leaves no room to generate";
  return "";
}

void ContinuousBatcher::submit(uint64_t key, LiveRequest r) {
  const std::string why = refuse(static_cast<int64_t>(r.ids.size()));
  PL_CHECK(why.empty(), why);
  for (int32_t id : r.ids)
    PL_CHECK(id >= 0 && id < V_, "token id " + std::to_string(id) + " outside the vocabulary");
  r.sampling.validate();
  queue_.emplace_back(key, std::move(r));
}

void ContinuousBatcher::cancel(uint64_t key, const BatcherEvents& ev) {
  for (auto it = queue_.begin(); it != queue_.end(); ++it)
    if (it->first == key) {
      queue_.erase(it);
      GenOutput out;
      out.finish_reason = "cancelled";
      if (ev.done) ev.done(key, std::move(out));
      return;
    }
  for (size_t r = 0; r < slots_.size(); ++r)
    if (slots_[r] && slots_[r]->key == key) {
      slots_[r]->completion->output().finish_reason = "cancelled";
      finish(static_cast<int64_t>(r), ev);
      compact();
      return;
    }
}

void ContinuousBatcher::finish(int64_t row, const BatcherEvents& ev) {
  std::unique_ptr<Slot> s = std::move(slots_[static_cast<size_t>(row)]);
  if (batch_->live(row)) {
    batch_->retire(row);
    live_ -= 1;
  }
  GenOutput out = std::move(s->completion->output());
  out.seconds = now_seconds() - s->t0;
  if (ev.done) ev.done(s->key, std::move(out));
}

void ContinuousBatcher::admit(const BatcherEvents& ev) {
  while (!queue_.empty()) {
    const auto free = std::find(slots_.begin(), slots_.end(), nullptr);
    if (free == slots_.end()) return;
    const int64_t row = free - slots_.begin();
    auto s = std::make_unique<Slot>();
    s->key = queue_.front().first;
    s->req = std::move(queue_.front().second);
    queue_.pop_front();
    s->t0 = now_seconds();
    const std::vector<int32_t>& ids = s->req.ids;
    const int64_t n = static_cast<int64_t>(ids.size());
    const int64_t limit = std::min(s->req.max_new_tokens, ctx_ - n);
    s->completion = std::make_unique<Completion>(tok_, ids, std::max<int64_t>(limit, 1), s->req.text_after_prompt,
                                                 s->req.stop, s->req.ignore_eos);
    s->sampler = std::make_unique<Sampler>(s->req.sampling);

    const double t0 = now_seconds();
    prefill_->begin(1, n, {});
    prefill_->append(ids.data(), n, &logits_);
    stats_.prefill_seconds += now_seconds() - t0;
    stats_.prompt_tokens += n;
    stats_.admitted += 1;

    const int32_t id = s->sampler->next(logits_.data(), V_, s->completion->seen(), 0, 0);
    stats_.generated_tokens += 1;
    const std::string fresh = s->completion->push(id);
    if (ev.text && !fresh.empty()) ev.text(s->key, fresh);
    slots_[static_cast<size_t>(row)] = std::move(s);
    if (slots_[static_cast<size_t>(row)]->completion->done()) {
      finish(row, ev);
      continue;
    }
    // The batch's length must cover the prompt: a longer prompt moves the live rows later (or, in an empty batch,
    // only sets the length).
    if (batch_->length() < n) batch_->shift(n - batch_->length());
    batch_->admit(row, *prefill_, 0, n);
    slots_[static_cast<size_t>(row)]->last = id;
    live_ += 1;
  }
}

void ContinuousBatcher::compact() {
  if (live_ == 0) {
    if (batch_->length() > 0) batch_->shift(-batch_->length());
    return;
  }
  int64_t least = batch_->length();
  for (int64_t r = 0; r < lim_.max_batch; ++r)
    if (batch_->live(r)) least = std::min(least, batch_->padding(r));
  if (least > 0) batch_->shift(-least);
}

void ContinuousBatcher::step(const BatcherEvents& ev) {
  admit(ev);
  if (live_ == 0) return;
  feed_.assign(static_cast<size_t>(lim_.max_batch), 0);  // a free row's token: any valid id, nothing reads it
  for (int64_t r = 0; r < lim_.max_batch; ++r)
    if (batch_->live(r)) feed_[static_cast<size_t>(r)] = slots_[static_cast<size_t>(r)]->last;
  const double t0 = now_seconds();
  batch_->append(feed_.data(), 1, &logits_);
  stats_.decode_seconds += now_seconds() - t0;
  stats_.steps += 1;
  for (int64_t r = 0; r < lim_.max_batch; ++r) {
    if (!batch_->live(r)) continue;
    Slot& s = *slots_[static_cast<size_t>(r)];
    const auto step = static_cast<uint64_t>(s.completion->generated());
    const int32_t id = s.sampler->next(logits_.data() + r * V_, V_, s.completion->seen(), 0, step);
    stats_.generated_tokens += 1;
    const std::string fresh = s.completion->push(id);
    if (ev.text && !fresh.empty()) ev.text(s.key, fresh);
    if (s.completion->done())
      finish(r, ev);
    else
      s.last = id;
  }
  compact();
}

}  // namespace polyllama
