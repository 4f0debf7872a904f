#include "polyllama/data/sft_stream.hpp"

#include <algorithm>
#include <deque>

#include "polyllama/core/error.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/data/sampler.hpp"

namespace polyllama {

namespace {
constexpr int32_t kIgnore = -100;  // LlamaModel::kIgnoreIndex (data does not include model)
constexpr uint64_t kSftSalt = 0x5f7a11c0ffee5eedULL;
}  // namespace

void SftPackingConfig::validate() const {
  if (seq_len < 1) fail_input("seq_len must be positive");
  if (open_bins < 1) fail_input("open_bins must be at least 1, got " + std::to_string(open_bins));
}

SftPackedStream::SftPackedStream(std::vector<SftExample> examples, SftPackingConfig cfg, std::string what)
    : examples_(std::move(examples)), cfg_(cfg), what_(std::move(what)) {
  cfg_.validate();
  if (examples_.empty()) fail_input(what_ + ": no examples");
  for (size_t i = 0; i < examples_.size(); ++i) {
    const SftExample& e = examples_[i];
    PL_CHECK(e.ids.size() == e.train.size() && e.positions() >= 1 && e.positions() <= cfg_.seq_len,
             what_ + ": example " + std::to_string(i) + " does not fit a row of " + std::to_string(cfg_.seq_len));
  }
}

std::shared_ptr<const SftPackedStream::Plan> SftPackedStream::build(int64_t epoch) const {
  auto p = std::make_shared<Plan>();
  p->epoch = epoch;
  const auto n = static_cast<int64_t>(examples_.size());
  const uint64_t key = random_bits(cfg_.seed ^ kSftSalt, 0, static_cast<uint64_t>(epoch));
  struct Open {
    int64_t row, used;
  };
  std::deque<Open> open;                    // oldest first
  std::vector<std::vector<int32_t>> rows;  // items per row, rows in creation order
  for (int64_t j = 0; j < n; ++j) {
    const auto e = static_cast<int32_t>(cfg_.shuffle ? feistel_permute(key, n, j) : j);
    const int64_t need = examples_[static_cast<size_t>(e)].positions();
    auto it = cfg_.pack ? std::find_if(open.begin(), open.end(),
                                       [&](const Open& o) { return o.used + need <= cfg_.seq_len; })
                        : open.end();
    if (it == open.end()) {
      if (!open.empty() && (!cfg_.pack || static_cast<int>(open.size()) == cfg_.open_bins)) open.pop_front();
      rows.emplace_back();
      open.push_back({static_cast<int64_t>(rows.size()) - 1, 0});
      it = open.end() - 1;
    }
    rows[static_cast<size_t>(it->row)].push_back(e);
    it->used += need;
    p->used += need;
    if (it->used == cfg_.seq_len) open.erase(it);  // full: stop scanning it
  }
  p->row_begin.reserve(rows.size() + 1);
  p->row_begin.push_back(0);
  for (const auto& r : rows) {
    p->items.insert(p->items.end(), r.begin(), r.end());
    p->row_begin.push_back(static_cast<int64_t>(p->items.size()));
  }
  return p;
}

std::shared_ptr<const SftPackedStream::Plan> SftPackedStream::plan(int64_t epoch) const {
  std::lock_guard<std::mutex> lock(mu_);
  return plan_locked(epoch);
}

// Epoch 0 (evaluation and the first pass) stays cached; later epochs are rebuilt when the run moves on.
std::shared_ptr<const SftPackedStream::Plan> SftPackedStream::plan_locked(int64_t epoch) const {
  if (epoch == 0) {
    if (!first_) first_ = build(0);
    return first_;
  }
  if (!cached_ || cached_->epoch != epoch) cached_ = build(epoch);
  return cached_;
}

int64_t SftPackedStream::rows(int64_t epoch) const {
  std::lock_guard<std::mutex> lock(mu_);
  while (static_cast<int64_t>(epoch_rows_.size()) <= epoch) {
    const auto p = plan_locked(static_cast<int64_t>(epoch_rows_.size()));
    epoch_rows_.push_back(static_cast<int64_t>(p->row_begin.size()) - 1);
  }
  return epoch_rows_[static_cast<size_t>(epoch)];
}

double SftPackedStream::fill(int64_t epoch) const {
  const auto p = plan(epoch);
  return static_cast<double>(p->used) / static_cast<double>(rows(epoch) * cfg_.seq_len);
}

void SftPackedStream::fill_row(const Plan& p, int64_t row, int32_t* inputs, int32_t* targets,
                               int32_t* doc_start) const {
  int64_t t = 0;
  for (int64_t k = p.row_begin[static_cast<size_t>(row)]; k < p.row_begin[static_cast<size_t>(row) + 1]; ++k) {
    const SftExample& e = examples_[static_cast<size_t>(p.items[static_cast<size_t>(k)])];
    const int64_t n = e.positions(), start = t;
    for (int64_t j = 0; j < n; ++j, ++t) {
      inputs[t] = e.ids[static_cast<size_t>(j)];
      targets[t] = e.train[static_cast<size_t>(j + 1)] ? e.ids[static_cast<size_t>(j + 1)] : kIgnore;
      doc_start[t] = static_cast<int32_t>(start);
    }
  }
  const int64_t pad = t;
  for (; t < cfg_.seq_len; ++t) {
    inputs[t] = cfg_.pad_id;
    targets[t] = kIgnore;
    doc_start[t] = static_cast<int32_t>(pad);
  }
}

void SftPackedStream::sample_segments(int64_t index, int32_t* inputs, int32_t* targets, int32_t* doc_start) const {
  PL_CHECK(index >= 0, "negative sample index");
  int64_t epoch = 0;
  for (int64_t r; index >= (r = rows(epoch)); ++epoch) index -= r;
  fill_row(*plan(epoch), index, inputs, targets, doc_start);
}

void SftPackedStream::sample(int64_t index, int32_t* inputs, int32_t* targets) const {
  std::vector<int32_t> ds(static_cast<size_t>(cfg_.seq_len));
  sample_segments(index, inputs, targets, ds.data());
}

int64_t SftPackedStream::windows() const { return rows(0); }

void SftPackedStream::window_segments(int64_t w, int32_t* inputs, int32_t* targets, int32_t* doc_start) const {
  PL_CHECK(w >= 0 && w < windows(), what_ + ": window " + std::to_string(w) + " out of range");
  fill_row(*plan(0), w, inputs, targets, doc_start);
}

void SftPackedStream::window(int64_t w, int32_t* inputs, int32_t* targets) const {
  std::vector<int32_t> ds(static_cast<size_t>(cfg_.seq_len));
  window_segments(w, inputs, targets, ds.data());
}

}  // namespace polyllama
